// The background half: OTLP/HTTP protobuf export with retries, a circuit breaker, remote config.
//
// Each batch of span records is written as OTLP protobuf directly (otlp.js: the bytes the
// official serializer would write for the same spans, without building OpenTelemetry span
// objects), compressed (gzip level 1; small bodies go uncompressed) and POSTed once (with
// `Authorization: Bearer`, the status kept). Around it, as the Python SDK does around its
// exporter: batches drained from the recorder's bounded queue on an unref'd timer, at most
// EXPORTS_IN_FLIGHT_MAX of them in flight (one after a failure), retries only of what OTLP allows (429/502/503/504 and network errors) honouring
// `Retry-After`, and a circuit breaker with exponential backoff and jitter. Nothing here runs on
// the MCP request path, and no timer here keeps the process alive.

import http from 'node:http';
import https from 'node:https';
import { promisify } from 'node:util';
import zlib from 'node:zlib';
import { TraceState } from '@opentelemetry/core';
import { RandomIdGenerator } from '@opentelemetry/sdk-trace-base';
import { SpanKind, SpanStatusCode, TraceFlags } from '@opentelemetry/api';
import { OtlpEncoder } from './otlp.js';
import { applyConfig, fetchConfig } from './remote.js';

const ids = new RandomIdGenerator();
export const newTraceId = () => ids.generateTraceId();
export const newSpanId = () => ids.generateSpanId();

/** closed -> (N consecutive failures) -> open -> (backoff elapsed) -> half_open -> closed | open.
 *
 * The backoff doubles with every failure past the threshold, capped, with jitter (50-100%), and
 * is never shorter than a server-sent Retry-After. */
export class CircuitBreaker {
  constructor({ threshold, baseMs, maxMs }) {
    this.threshold = Math.max(1, threshold);
    this.baseMs = baseMs;
    this.maxMs = maxMs;
    this.state = 'closed';
    this.failures = 0;
    this.opens = 0;
    this.notBefore = 0;
  }

  allow(now) {
    if (now < this.notBefore) return false;
    if (this.state === 'open') this.state = 'half_open';
    return true;
  }

  success() {
    this.state = 'closed';
    this.failures = 0;
    this.notBefore = 0;
  }

  failure(now, retryAfterMs) {
    this.failures++;
    let delay;
    if (this.state === 'half_open' || this.failures >= this.threshold) {
      if (this.state !== 'open') this.opens++;
      this.state = 'open';
      const exp = Math.min(Math.max(0, this.failures - this.threshold), 30);
      delay = Math.min(this.maxMs, this.baseMs * 2 ** exp);
    } else {
      delay = Math.min(this.maxMs, this.baseMs * 0.25 * 2 ** (this.failures - 1)); // short, still closed
    }
    delay *= 0.5 + Math.random() * 0.5;
    if (retryAfterMs !== undefined && retryAfterMs !== null) {
      delay = Math.max(delay, Math.min(retryAfterMs, this.maxMs));
    }
    this.notBefore = now + delay;
  }
}

/** Milliseconds from a Retry-After header (delta-seconds or HTTP date), or undefined. */
export function parseRetryAfter(value) {
  if (typeof value !== 'string' || value.trim() === '') return undefined;
  const v = value.trim();
  if (/^\d+(\.\d+)?$/.test(v)) return Math.max(0, parseFloat(v) * 1000);
  const t = Date.parse(v);
  return Number.isNaN(t) ? undefined : Math.max(0, t - Date.now());
}

const RETRYABLE = new Set([429, 502, 503, 504]);

/** Batches sent concurrently at most (default; `MCPOBS_EXPORTS_IN_FLIGHT`, 1..8). With one, a
 * burst above roughly one batch per POST round trip fills the queue while the exporter waits for
 * the appliance's answer; two overlap the round trips. A second batch is started only while the
 * last answers were successes (breaker closed, no failure counted): while retrying, probing
 * (half-open) or honouring a Retry-After, one batch at a time. */
export const EXPORTS_IN_FLIGHT_MAX = 2;
const EXPORTS_IN_FLIGHT_LIMIT = 8; // the most the option may ask for

/** One export lane: a batch (sent or being retried), its encoded body and its own encoder (a
 * body is a view of its encoder's buffer, kept for retries until the batch is done). */
class Lane {
  constructor(encoder) {
    this.encoder = encoder;
    this.batch = null;
    this.body = null;
    this.attempts = 0;
    this.promise = null; // the send in progress
  }
}
const gzip = promisify(zlib.gzip);
// gzip level 1 (not the default 6): a third of the CPU for spans, whose bodies compress about as
// well either way (~10:1); bodies smaller than this go uncompressed (gzip is optional in OTLP)
const GZIP_OPTIONS = { level: 1 };
const GZIP_MIN_BYTES = 1024;

/** The HTTP leg: one POST, no retry loop of its own (ours sees every failure), the whole body
 * with a Content-Length (an appliance that refuses the key before reading the body then still
 * gets its answer read), and the exact status kept. */
class AnsweringTransport {
  constructor(url, headers, timeoutMs, gzipBodies = true) {
    this.url = new URL(url);
    this.gzipBodies = gzipBodies;
    this.headers = headers;
    this.timeoutMs = timeoutMs;
    this.mod = this.url.protocol === 'https:' ? https : http;
    this.agent = new this.mod.Agent({ keepAlive: true, maxSockets: EXPORTS_IN_FLIGHT_LIMIT });
    this.last = null;
  }

  /** POST one protobuf body (a view of the encoder's buffer, not kept past this call). */
  async send(data, timeoutMillis) {
    this.last = null;
    let body;
    let encoding = null;
    if (this.gzipBodies && data.length >= GZIP_MIN_BYTES) {
      try {
        body = await gzip(data, GZIP_OPTIONS);
        encoding = 'gzip';
      } catch (error) {
        return (this.last = { status: 'failure', error });
      }
    } else {
      body = Buffer.from(data); // a copy: the socket may still hold it when the answer came first
    }
    const res = await new Promise((resolve) => {
      const headers = { ...this.headers, 'Content-Length': body.length };
      if (encoding !== null) headers['Content-Encoding'] = encoding;
      const req = this.mod.request(this.url, { method: 'POST', headers, agent: this.agent }, (r) => {
        const chunks = [];
        r.on('data', (c) => chunks.push(c));
        r.on('error', (error) => resolve({ status: 'retryable', error }));
        r.on('end', () => {
          const code = r.statusCode || 0;
          const data = Buffer.concat(chunks);
          if (code >= 200 && code < 300) resolve({ status: 'success', data, code });
          else if (RETRYABLE.has(code)) {
            resolve({ status: 'retryable', code, retryInMillis: parseRetryAfter(r.headers['retry-after']) });
          } else resolve({ status: 'failure', code, error: httpError(code, data) });
        });
      });
      req.setTimeout(timeoutMillis || this.timeoutMs, () => req.destroy(new Error('request timed out')));
      req.on('error', (error) => resolve({ status: 'retryable', error }));
      req.end(body);
    });
    this.last = res;
    return res;
  }

  shutdown() {
    this.agent.destroy();
  }
}

function httpError(code, data) {
  const e = new Error(`HTTP ${code}`);
  e.code = code;
  e.data = data.subarray(0, 512).toString('utf8');
  return e;
}

function hrTime(ms) {
  const sec = Math.floor(ms / 1000);
  return [sec, Math.round((ms - sec * 1000) * 1e6)];
}

const SAMPLED_REMOTE = TraceFlags.SAMPLED;

/** An SDK `ReadableSpan` for one record (the shape the official OTLP serializer reads): not used
 * by the export any more, kept as the reference `OtlpEncoder` is tested against (the bytes of
 * the official serializer for these spans). */
export function toReadableSpan(r, resource, scope) {
  r.resolveParent();
  if (r.traceId === '') r.traceId = newTraceId();
  if (r.spanId === '') r.spanId = newSpanId();
  const traceState = r.traceState ? safeTraceState(r.traceState) : undefined;
  const ctx = { traceId: r.traceId, spanId: r.spanId, traceFlags: SAMPLED_REMOTE, isRemote: false, traceState };
  const parent = r.parentSpanId
    ? { traceId: r.traceId, spanId: r.parentSpanId, traceFlags: SAMPLED_REMOTE, isRemote: true, traceState }
    : undefined;
  const startMs = r.startMs;
  const endMs = r.endMs;
  return {
    name: r.spanName(),
    kind: SpanKind.SERVER,
    spanContext: () => ctx,
    parentSpanContext: parent,
    startTime: hrTime(startMs),
    endTime: hrTime(endMs),
    duration: hrTime(r.end - r.start),
    status: r.error ? { code: SpanStatusCode.ERROR, message: r.message || undefined } : { code: SpanStatusCode.UNSET },
    attributes: r.attributesOut(),
    links: [],
    events: r.events ? r.events.map((e) => ({ name: e.name, time: hrTime(e.time), attributes: e.attributes })) : [],
    ended: true,
    resource,
    instrumentationScope: scope,
    droppedAttributesCount: 0,
    droppedEventsCount: 0,
    droppedLinksCount: 0,
  };
}
function safeTraceState(s) {
  try {
    return new TraceState(s);
  } catch {
    return undefined;
  }
}

/** Drains the recorder in batches to `{endpoint}/v1/traces`; refreshes `{endpoint}/v1/config`. */
export class Exporter {
  constructor(recorder, opts) {
    this.recorder = recorder;
    this.endpoint = opts.endpoint.replace(/\/+$/, '');
    this.apiKey = opts.apiKey;
    this.resource = opts.resource;
    this.scope = opts.scope;
    this.intervalMs = opts.exportIntervalMs;
    this.timeoutMs = opts.timeoutMs;
    this.maxRetries = opts.maxRetries;
    this.breaker = opts.breaker;
    this.configRefreshMs = opts.configRefreshMs; // null: the appliance's refresh_interval_secs
    this.log = opts.log;
    this.userAgent = opts.userAgent;
    this.onTick = opts.onTick || null;
    this.exported = 0;
    this.failedExports = 0;
    this.droppedExport = 0;
    this.retries = 0;
    this.remoteConfig = null;
    this.configError = null;
    this.started = false;
    this.stopped = false;
    this.timer = null;
    this.configTimer = null;
    this.immediate = null;
    this.transport = null;
    const lanes = Math.min(EXPORTS_IN_FLIGHT_LIMIT, Math.max(1, Math.floor(opts.exportsInFlightMax || EXPORTS_IN_FLIGHT_MAX)));
    this.lanes = [];
    for (let i = 0; i < lanes; i++) this.lanes.push(new Lane(this.apiKey ? new OtlpEncoder(this.resource, this.scope) : null));
    this.maxConcurrent = 0; // the most batches seen in flight at once (stats, tests)
    if (this.apiKey) {
      const url = `${this.endpoint}/v1/traces`;
      const headers = { Authorization: `Bearer ${this.apiKey}`, 'User-Agent': this.userAgent, 'Content-Type': 'application/x-protobuf' };
      this.transport = new AnsweringTransport(url, headers, this.timeoutMs, opts.compression !== 'none');
    }
    recorder.onBatchReady = () => this.wake();
  }

  /** Spans taken from the queue and not finished with yet (being sent or waiting for a retry). */
  get pendingSpans() {
    let n = 0;
    for (const lane of this.lanes) if (lane.batch !== null) n += lane.batch.length;
    return n;
  }

  /** Batches being sent right now. */
  get inFlightCount() {
    let n = 0;
    for (const lane of this.lanes) if (lane.promise !== null) n++;
    return n;
  }

  /** Nothing queued, nothing pending, nothing in flight. */
  get idle() {
    return this.recorder.queue.length === 0 && this.pendingSpans === 0 && this.inFlightCount === 0;
  }

  start() {
    if (this.started) return;
    this.started = true;
    this.timer = setInterval(() => {
      if (this.onTick !== null) this.onTick();
      this.drain();
    }, this.intervalMs);
    this.timer.unref();
    if (this.apiKey) this.fetchConfig();
  }

  /** A full batch is waiting: send it soon, outside the request that filled it. */
  wake() {
    if (this.immediate !== null || !this.started || this.stopped) return;
    this.immediate = setImmediate(() => {
      this.immediate = null;
      this.drain();
    });
  }

  /** Start sending batches (a pending retry first, then new ones from the queue) on every free
   * lane, while the breaker allows: a second lane only while it is closed. Returns a promise that
   * settles when one of the sends in flight settles, or null when none is. */
  drain() {
    if (this.stopped) return this.anyInFlight();
    const q = this.recorder.queue;
    for (const lane of this.lanes) {
      if (lane.promise !== null) continue;
      if (lane.batch === null && q.length === 0) continue;
      const busy = this.inFlightCount;
      // a second batch only while the appliance answers: after a failure (retrying, half-open
      // probe, Retry-After) one at a time, as with a single lane
      if (busy > 0 && (this.breaker.state !== 'closed' || this.breaker.failures !== 0)) break;
      if (!this.breaker.allow(Date.now())) break;
      if (lane.batch === null) {
        lane.batch = q.length <= this.recorder.batchSize ? q.splice(0) : q.splice(0, this.recorder.batchSize);
        lane.attempts = 0;
      }
      if (busy + 1 > this.maxConcurrent) this.maxConcurrent = busy + 1;
      lane.promise = this.send(lane)
        .catch((e) => {
          this.log(`exporter error: ${e && e.message}`);
          return false; // the batch stays in its lane: retried by a later drain
        })
        .then((done) => {
          lane.promise = null;
          // more to send and the appliance is answering: go on, one event-loop turn later
          if (done && (this.recorder.queue.length >= this.recorder.batchSize || this.flushing)) this.wake();
        });
    }
    return this.anyInFlight();
  }

  anyInFlight() {
    let first = null;
    let many = false;
    for (const lane of this.lanes) {
      if (lane.promise === null) continue;
      if (first === null) first = lane.promise;
      else many = true;
    }
    if (!many) return first;
    return Promise.race(this.lanes.filter((l) => l.promise !== null).map((l) => l.promise));
  }

  /** Send one lane's batch. Resolves true when the batch is done (sent or given up), false to
   * retry it. */
  async send(lane) {
    const batch = lane.batch;
    if (!this.recorder.enabled || this.transport === null) {
      this.droppedExport += batch.length;
      this.done(lane);
      return true;
    }
    // encoded once per batch (a retry sends the same bytes); the lane's encoder buffer is reused
    // for its next batch only after this one is done
    if (lane.body === null) {
      try {
        lane.body = lane.encoder.encode(batch);
      } catch (e) {
        this.log(`encode failed, dropping ${batch.length} spans: ${e && e.message}`);
        this.droppedExport += batch.length;
        this.done(lane);
        return true;
      }
    }
    let result;
    try {
      result = await this.transport.send(lane.body, this.timeoutMs);
    } catch (error) {
      result = { status: 'failure', error };
    }
    if (result.status === 'success') {
      this.log(`exported ${batch.length} spans`);
      this.exported += batch.length;
      this.breaker.success();
      this.done(lane);
      return true;
    }
    this.failedExports++;
    const { retryable, status, retryAfterMs } = classify(result);
    if (retryable) {
      this.breaker.failure(Date.now(), retryAfterMs);
      lane.attempts++;
      this.log(
        `export got ${status || 'no response'}; retry_after=${retryAfterMs === undefined ? 'none' : retryAfterMs / 1000}` +
          ` circuit=${this.breaker.state}`,
      );
      if (lane.attempts > this.maxRetries) {
        this.droppedExport += batch.length;
        this.done(lane);
      } else {
        this.retries++;
      }
      return false;
    }
    // Not retryable (400, 401, 403, 413, ...): drop the batch. The appliance is up, so the
    // breaker counts this as a success.
    this.log(`export rejected with ${status}; dropping ${batch.length} spans`);
    this.breaker.success();
    this.droppedExport += batch.length;
    this.done(lane);
    if (status === 403) this.recorder.enabled = false; // telemetry disabled; config refresh re-enables
    return true;
  }

  /** The lane's batch is finished with (sent or given up). */
  done(lane) {
    lane.batch = null;
    lane.body = null;
  }

  /** Send everything queued now; resolves true when the queue was fully exported in time. */
  async flush(timeoutMs = 5000) {
    if (!this.started) return false;
    const deadline = Date.now() + timeoutMs;
    this.flushing = true;
    try {
      while (Date.now() < deadline) {
        if (this.idle) return true;
        if (this.breaker.state === 'open' && Date.now() < this.breaker.notBefore) return false;
        const p = this.drain();
        await waitFor(p, p ? Math.max(1, deadline - Date.now()) : 10);
      }
      return this.idle;
    } finally {
      this.flushing = false;
    }
  }

  async shutdown(timeoutMs = 5000) {
    const ok = await this.flush(timeoutMs);
    this.log(`shutdown: flushed=${ok} queued=${this.recorder.queue.length} exported=${this.exported}`);
    this.stopped = true;
    clearInterval(this.timer);
    clearTimeout(this.configTimer);
    if (this.immediate !== null) clearImmediate(this.immediate);
    this.immediate = null;
    if (this.transport !== null) this.transport.shutdown();
    return ok;
  }

  fetchConfig() {
    fetchConfig(this);
  }

  applyConfig(cfg) {
    applyConfig(this.recorder, cfg);
    this.remoteConfig = cfg;
  }
}

/** Retryable or not, from the transport's answer: what OTLP allows to retry (429/502/503/504,
 * network errors, a failure before sending), not other HTTP errors (400, 401, 403, 413, ...). */
function classify(res) {
  if (res.status === 'retryable') {
    const what = res.code || (res.error && (res.error.code || res.error.message));
    return { retryable: true, status: what, retryAfterMs: res.retryInMillis };
  }
  if (res.code >= 400) return { retryable: false, status: res.code };
  const err = res.error;
  const code = err && typeof err.code === 'number' ? err.code : 0;
  if (code >= 400 && !RETRYABLE.has(code)) return { retryable: false, status: code };
  return { retryable: true, status: code || (err && err.message) };
}

/** Wait for `p` (or nothing), at most `ms`. The timer is cleared as soon as `p` settles, and it
 * keeps the process alive meanwhile: an explicit flush is awaited by its caller. */
function waitFor(p, ms) {
  return new Promise((resolve) => {
    const t = setTimeout(resolve, ms);
    if (p) {
      p.then(
        () => {
          clearTimeout(t);
          resolve();
        },
        () => {
          clearTimeout(t);
          resolve();
        },
      );
    }
  });
}
