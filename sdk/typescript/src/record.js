// The request-path half: a tiny span record, sampling, and the bounded queue.
//
// Everything here runs on the MCP server's request path (the event loop that also answers the
// client), so it does as little as possible: read the clock, build one attribute object, decide
// sampling, push to an array. Ids are drawn, and the OpenTelemetry span objects built, later, on
// the export path (export.js).

const TRACEPARENT = /^00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})$/;
const ZERO_TRACE = '00000000000000000000000000000000';
const ZERO_SPAN = '0000000000000000';
const SENSITIVE_KEY = /pass(word)?|secret|token|api[_-]?key|authorization|cookie|credential/i;
const TIME_ORIGIN_MS = performance.timeOrigin;

/** Wall-clock milliseconds (fractional, microsecond resolution) for span timestamps. */
export function nowMs() {
  return TIME_ORIGIN_MS + performance.now();
}

/** Everything needed to build one OTLP span later, on the export path. */
export class SpanRecord {
  constructor(name, attributes, parent) {
    this.name = name;
    this.attributes = attributes;
    this.shared = null; // attributes shared by the spans of a session (merged at export)
    // parent: [traceId, parentSpanId, tracestate] from `_meta.traceparent`, or null
    this.traceId = parent === null ? '' : parent[0];
    this.parentSpanId = parent === null ? '' : parent[1];
    this.traceState = parent === null ? '' : parent[2];
    this.spanId = ''; // drawn lazily (export, or when the span becomes the active OTel context)
    this.start = nowMs();
    this.end = 0;
    this.error = false;
    this.message = '';
    this.events = null;
  }

  /** An `exception` event with the OpenTelemetry exception attributes. */
  recordException(err) {
    const e = err instanceof Error ? err : null;
    const attrs = {
      'exception.type': e ? errorType(e) : typeof err,
      'exception.message': cap(e ? String(e.message) : String(err), 1024),
    };
    if (e && typeof e.stack === 'string') attrs['exception.stacktrace'] = cap(e.stack, 4096);
    if (this.events === null) this.events = [];
    this.events.push({ name: 'exception', time: nowMs(), attributes: attrs });
  }
}

/** The error's class name (`TypeError`, `McpError`, ...), as Python's `type(exc).__qualname__`. */
export function errorType(err) {
  try {
    const n = err && err.constructor && err.constructor.name;
    if (typeof n === 'string' && n) return n;
    if (err && typeof err.name === 'string' && err.name) return err.name;
  } catch {
    // fall through
  }
  return 'Error';
}

/** [traceId, parentSpanId, tracestate] from a `_meta` object carrying W3C trace context. */
export function parseTraceparent(meta) {
  if (meta === null || typeof meta !== 'object') return null;
  const tp = meta.traceparent;
  if (typeof tp !== 'string') return null;
  const m = TRACEPARENT.exec(tp.trim().toLowerCase());
  if (m === null || m[1] === ZERO_TRACE || m[2] === ZERO_SPAN) return null;
  const ts = meta.tracestate;
  return [m[1], m[2], typeof ts === 'string' ? ts : ''];
}

export function cap(s, limitBytes) {
  if (s.length * 3 <= limitBytes) return s;
  const b = Buffer.from(s, 'utf8');
  if (b.length <= limitBytes) return s;
  // cut at a UTF-8 boundary: decoding drops a partial trailing character as U+FFFD, strip it
  return b.subarray(0, limitBytes).toString('utf8').replace(/\uFFFD$/, '') + '…';
}

/** Mask values under sensitive-looking keys (password, token, secret, api_key, ...). */
export function defaultRedact(value, depth = 0) {
  if (depth > 8) return '[TRUNCATED]';
  if (Array.isArray(value)) return value.map((v) => defaultRedact(v, depth + 1));
  if (value !== null && typeof value === 'object') {
    const out = {};
    for (const [k, v] of Object.entries(value)) {
      out[k] = SENSITIVE_KEY.test(k) ? '[REDACTED]' : defaultRedact(v, depth + 1);
    }
    return out;
  }
  return value;
}

/** Redact (built-in mask, then the user's `redact`), serialize to JSON, cap at `limit` bytes. */
export function captureValue(value, redact, limit) {
  try {
    let v = defaultRedact(value);
    if (redact) {
      v = redact(v);
      if (v === null || v === undefined) return null;
    }
    const s = typeof v === 'string' ? v : JSON.stringify(v);
    return typeof s === 'string' ? cap(s, limit) : null;
  } catch {
    return null;
  }
}

/** Sampling decision + bounded queue + counters; shared by the hooks and the exporter. */
export class Recorder {
  constructor({ queueMax, batchSize, slowThresholdMs, sampling }) {
    this.queue = [];
    this.queueMax = queueMax;
    this.batchSize = batchSize;
    this.slowThresholdMs = slowThresholdMs;
    this.localSampling = sampling; // null: the appliance's rate (remote config) applies
    this.sampling = sampling === null ? 1.0 : sampling;
    this.enabled = true;
    this.remoteCapture = false;
    this.onBatchReady = null; // set by the exporter
    this.recorded = 0;
    this.sampledOut = 0;
    this.droppedQueueFull = 0;
  }

  finish(rec) {
    const end = (rec.end = nowMs());
    let p = 1.0;
    if (!rec.error && end - rec.start < this.slowThresholdMs) {
      p = this.sampling;
      if (p < 1.0 && (p <= 0.0 || Math.random() >= p)) {
        this.sampledOut++;
        return;
      }
    }
    rec.attributes['mcpobs.sample.probability'] = p;
    const q = this.queue;
    if (q.length >= this.queueMax) {
      this.droppedQueueFull++;
      return;
    }
    q.push(rec);
    this.recorded++;
    if (q.length === this.batchSize && this.onBatchReady !== null) this.onBatchReady();
  }
}
