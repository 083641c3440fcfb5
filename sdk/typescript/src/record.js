// The request-path half: a tiny span record, sampling, and the bounded queue.
//
// Everything here runs on the MCP server's request path (the event loop that also answers the
// client), so it does as little as possible: read the clock, fill one fixed-shape record with the
// raw fields (method, tool/prompt name, resource URI, request id, the session's shared attributes,
// the raw traceparent), decide sampling, push to an array. No attribute object is built and no
// object of the MCP library is written to. The span name, the attribute object, the parent
// context and the ids are built later, on the export path (`SpanRecord.attributesOut`,
// export.js).

const TRACEPARENT = /^00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})$/;
const ZERO_TRACE = '00000000000000000000000000000000';
const ZERO_SPAN = '0000000000000000';
const SENSITIVE_KEY = /pass(word)?|secret|token|api[_-]?key|authorization|cookie|credential/i;
const TIME_ORIGIN_MS = performance.timeOrigin;

// The request path reads the clock twice per request, and a clock read is the largest single
// cost left on it (~85-100 ns from JavaScript on a VM). `process.hrtime()` is what
// `performance.now()` calls, minus a brand check and a call: read it directly, shifted once onto
// the `performance.now()` scale (milliseconds since `performance.timeOrigin`), so `start`/`end`
// keep their meaning.
const hrtime = process.hrtime;
const hrMs = () => {
  const t = hrtime();
  return t[0] * 1e3 + t[1] * 1e-6;
};
const HR_SHIFT_MS = hrMs() - performance.now();

/** Monotonic milliseconds since `performance.timeOrigin` (as `performance.now()`). */
export function clockMs() {
  const t = hrtime();
  return t[0] * 1e3 + t[1] * 1e-6 - HR_SHIFT_MS;
}

/** Wall-clock milliseconds (fractional, microsecond resolution) for span timestamps. */
export function nowMs() {
  return TIME_ORIGIN_MS + clockMs();
}

// what kind of target the method names (decided once per record from the method string)
export const TARGET_NONE = 0;
export const TARGET_TOOL = 1;
export const TARGET_PROMPT = 2;
export const TARGET_RESOURCE = 3;

/** Everything needed to build one OTLP span later, on the export path. */
export class SpanRecord {
  constructor(method, kind, target, requestId, shared, meta) {
    this.method = method;
    this.kind = kind; // TARGET_*
    this.target = target; // tool / prompt name, resource URI (a string), or undefined
    this.requestId = requestId; // JSON-RPC id (string or number), or undefined
    this.shared = shared; // attributes shared by the spans of a session (merged at export), or null
    this.attrs = null; // further attributes (user, captured values, errors), in the order set
    // `_meta.traceparent` / `tracestate` as sent; parsed on the export path (or when the span
    // becomes the active OpenTelemetry context)
    let tp;
    let ts;
    if (meta !== undefined && meta !== null && typeof meta === 'object') {
      tp = meta.traceparent;
      ts = meta.tracestate;
    }
    this.rawTraceparent = typeof tp === 'string' ? tp : null;
    this.rawTracestate = typeof ts === 'string' ? ts : '';
    this.traceId = '';
    this.parentSpanId = '';
    this.traceState = '';
    this.spanId = ''; // drawn lazily (export, or when the span becomes the active OTel context)
    this.start = clockMs(); // ms since TIME_ORIGIN_MS (see startMs / endMs)
    this.end = 0;
    this.error = false;
    this.errorType = undefined; // error.type, once set (kept in attrs too, for the order)
    this.message = '';
    this.events = null;
    this.probability = 1.0;
    this.extra = undefined; // the handler's `extra` / `ctx`, for recordException(error, extra)
    this.prev = null; // in-flight list (adapter.js), for recordException
    this.next = null;
    this.linked = false;
  }

  get startMs() {
    return TIME_ORIGIN_MS + this.start;
  }

  get endMs() {
    return TIME_ORIGIN_MS + this.end;
  }

  /** Set one further attribute (after the standard ones, in the order set). */
  set(key, value) {
    if (this.attrs === null) this.attrs = {};
    this.attrs[key] = value;
  }

  setErrorType(value) {
    this.errorType = value;
    this.set('error.type', value);
  }

  /** Parse the raw traceparent once: the parent's trace id / span id / tracestate, if valid. */
  resolveParent() {
    const tp = this.rawTraceparent;
    if (tp === null) return;
    this.rawTraceparent = null;
    const parent = parseTraceparent({ traceparent: tp, tracestate: this.rawTracestate });
    if (parent === null) return;
    if (this.traceId === '') this.traceId = parent[0];
    this.parentSpanId = parent[1];
    this.traceState = parent[2];
  }

  /** The span name: `{method} {tool|prompt}` (resource URIs stay out of it). */
  spanName() {
    const k = this.kind;
    return (k === TARGET_TOOL || k === TARGET_PROMPT) && typeof this.target === 'string'
      ? `${this.method} ${this.target}`
      : this.method;
  }

  /** The span's attributes: the session's, the request's, the further ones, the probability. */
  attributesOut() {
    const out = this.shared === null ? {} : Object.assign({}, this.shared);
    out['mcp.method.name'] = this.method;
    const k = this.kind;
    const target = this.target;
    if (k === TARGET_TOOL) {
      out['gen_ai.operation.name'] = 'execute_tool';
      if (typeof target === 'string') out['gen_ai.tool.name'] = target;
    } else if (k === TARGET_PROMPT) {
      if (typeof target === 'string') out['gen_ai.prompt.name'] = target;
    } else if (k === TARGET_RESOURCE) {
      if (typeof target === 'string') out['mcp.resource.uri'] = target;
    }
    if (this.requestId !== undefined && this.requestId !== null) out['jsonrpc.request.id'] = String(this.requestId);
    if (this.attrs !== null) Object.assign(out, this.attrs);
    out['mcpobs.sample.probability'] = this.probability;
    return out;
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
    const end = (rec.end = clockMs());
    let p = 1.0;
    if (!rec.error && end - rec.start < this.slowThresholdMs) {
      p = this.sampling;
      if (p < 1.0 && (p <= 0.0 || Math.random() >= p)) {
        this.sampledOut++;
        return;
      }
    }
    rec.probability = p;
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
