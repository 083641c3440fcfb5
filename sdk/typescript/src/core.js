// Options, the public handle, and the library-neutral request observer used by every hook.

import { resourceFromAttributes } from '@opentelemetry/resources';
import { CircuitBreaker, EXPORTS_IN_FLIGHT_MAX, Exporter } from './export.js';
import { Recorder, SpanRecord, TARGET_NONE, TARGET_PROMPT, TARGET_RESOURCE, TARGET_TOOL, captureValue, errorType } from './record.js';

export const VERSION = '0.1.0';
export const SDK_NAME = 'mcp-obs-server-typescript';
export const SCOPE_NAME = '@mcp-obs/server';

function envNumber(name, dflt) {
  const v = process.env[name];
  if (v === undefined || v === '') return dflt;
  const n = Number(v);
  return Number.isFinite(n) ? n : dflt;
}

/** Logs to stderr only, only with `debug`; never throws. */
export function makeLogger(debug) {
  if (!debug) return () => {};
  return (msg) => {
    try {
      process.stderr.write(`[mcp-obs] ${msg}\n`);
    } catch {
      // nothing: telemetry never fails the server
    }
  };
}

/** Turns MCP requests into span records. Hooks call `begin` then `ok` / `jsonrpcError` / ... */
export class Observer {
  constructor(recorder, { captureArguments, redact, identify, skipMethods, captureMaxBytes, log }) {
    this.recorder = recorder;
    this.captureArguments = captureArguments;
    this.redact = redact || null;
    this.identify = identify || null;
    this.skipMethods = new Set(skipMethods || []);
    this.captureMaxBytes = captureMaxBytes;
    this.log = log;
    this.closed = false;
    this.hookErrors = 0;
  }

  get capturing() {
    return this.captureArguments || this.recorder.remoteCapture;
  }

  hookError(e) {
    this.hookErrors++;
    this.log(`hook error: ${e && e.stack ? e.stack : e}`);
  }

  /** Open a span record for one incoming request, or null (skipped, disabled, closed).
   * `shared`: the session's attributes (one object for all its spans). `info` (headers,
   * sessionId, raw) is only read by `identify`. */
  begin(method, params, requestId, shared, authInfo, info) {
    if (this.closed || !this.recorder.enabled || (this.skipMethods.size !== 0 && this.skipMethods.has(method))) return null;
    let kind = TARGET_NONE;
    let target;
    let meta;
    if (params !== undefined && params !== null && typeof params === 'object') {
      if (method === 'tools/call') {
        kind = TARGET_TOOL;
        target = params.name;
      } else if (method === 'prompts/get') {
        kind = TARGET_PROMPT;
        target = params.name;
      } else if (method === 'resources/read' || method === 'resources/subscribe' || method === 'resources/unsubscribe') {
        // not in the span name: URIs are high-cardinality
        kind = TARGET_RESOURCE;
        target = params.uri;
      }
      meta = params._meta;
    }
    const rec = new SpanRecord(method, kind, target, requestId, shared || null, meta);
    if (authInfo) attributeUser(rec, authInfo);
    if (this.identify !== null) this.runIdentify(rec, method, params, authInfo, info);
    if (params && this.capturing && params.arguments !== undefined) {
      const s = captureValue(params.arguments, this.redact, this.captureMaxBytes);
      if (s !== null) rec.set(method === 'tools/call' ? 'gen_ai.tool.call.arguments' : 'mcp.request.arguments', s);
    }
    return rec;
  }

  runIdentify(rec, method, params, auth, info) {
    try {
      const who = this.identify({
        method,
        params,
        headers: info ? info.headers : undefined,
        authInfo: auth,
        sessionId: info ? info.sessionId : undefined,
        raw: info ? info.raw : undefined,
      });
      if (typeof who === 'string' && who) rec.set('enduser.id', who);
      else if (who && typeof who === 'object') {
        if (who.id) rec.set('enduser.id', String(who.id));
        if (Array.isArray(who.scopes) && who.scopes.length) rec.set('enduser.scope', who.scopes.join(' '));
        for (const [k, v] of Object.entries(who)) {
          if (k !== 'id' && k !== 'scopes' && ['string', 'number', 'boolean'].includes(typeof v)) {
            rec.set(`enduser.${k}`, v);
          }
        }
      }
    } catch (e) {
      this.hookErrors++;
      this.log(`identify() raised ${e}`);
    }
  }

  ok(rec, result, protocolVersion) {
    try {
      if (protocolVersion) rec.set('mcp.protocol.version', protocolVersion); // overrides the shared one
      if (result !== null && typeof result === 'object' && result.isError === true) {
        if (rec.errorType === undefined) rec.setErrorType('tool_error');
        rec.error = true;
        rec.message = firstText(result);
      }
      if (result !== undefined && rec.method === 'tools/call' && this.capturing) {
        const s = captureValue(result, this.redact, this.captureMaxBytes);
        if (s !== null) rec.set('gen_ai.tool.call.result', s);
      }
    } catch (e) {
      this.hookError(e);
    }
    this.recorder.finish(rec);
  }

  jsonrpcError(rec, code, message) {
    // a handler exception noted by the hooks keeps its class name as error.type
    if (rec.errorType === undefined) rec.setErrorType(String(code));
    rec.set('rpc.response.status_code', String(code));
    rec.error = true;
    rec.message = String(message || '').slice(0, 1024);
    this.recorder.finish(rec);
  }

  /** A handler threw something that is not a JSON-RPC error: class name + `exception` event. */
  noteException(rec, err) {
    try {
      rec.setErrorType(errorType(err));
      rec.error = true;
      rec.message = String(err && err.message !== undefined ? err.message : err).slice(0, 1024);
      rec.recordException(err);
    } catch (e) {
      this.hookError(e);
    }
  }

  cancelled(rec) {
    rec.setErrorType('cancelled');
    rec.error = true;
    rec.message = 'request cancelled';
    this.recorder.finish(rec);
  }
}

/** enduser.id (the token's subject, else its client id), enduser.scope, mcp.auth.client_id. */
function attributeUser(rec, auth) {
  const extra = auth.extra && typeof auth.extra === 'object' ? auth.extra : null;
  const subject = extra ? extra.sub || extra.subject : undefined;
  const user = subject || auth.clientId;
  if (user) rec.set('enduser.id', String(user));
  if (auth.clientId) rec.set('mcp.auth.client_id', String(auth.clientId));
  if (Array.isArray(auth.scopes) && auth.scopes.length) rec.set('enduser.scope', auth.scopes.join(' '));
}

function firstText(result) {
  try {
    for (const c of result.content || []) {
      if (c && typeof c.text === 'string') return c.text.slice(0, 256);
    }
  } catch {
    // fall through
  }
  return '';
}

/** Returned by `configureMCPTelemetry`: `flush()`, `shutdown()`, `stats()`. */
export class TelemetryHandle {
  constructor(observer, exporter, integration) {
    this._observer = observer;
    this._exporter = exporter;
    this.integration = integration;
    this._closed = false;
  }

  /** Send every queued span now. Resolves true when the queue was fully exported. */
  async flush(timeoutMs = 5000) {
    try {
      return await this._exporter.flush(timeoutMs);
    } catch {
      return false;
    }
  }

  /** Flush (bounded by `timeoutMs`), then stop recording and stop the timers. */
  async shutdown(timeoutMs = 5000) {
    if (this._closed) return true;
    this._closed = true;
    this._observer.closed = true;
    live.delete(this);
    try {
      return await this._exporter.shutdown(timeoutMs);
    } catch {
      return false;
    }
  }

  stats() {
    const rec = this._observer.recorder;
    const exp = this._exporter;
    return {
      integration: this.integration,
      spansRecorded: rec.recorded,
      spansExported: exp.exported,
      spansSampledOut: rec.sampledOut,
      spansDropped: rec.droppedQueueFull + exp.droppedExport,
      spansDroppedQueueFull: rec.droppedQueueFull,
      spansDroppedExport: exp.droppedExport,
      queueSize: rec.queue.length + exp.pendingSpans,
      failedExports: exp.failedExports,
      exportRetries: exp.retries,
      circuitState: exp.breaker.state,
      circuitOpens: exp.breaker.opens,
      samplingRate: rec.sampling,
      telemetryEnabled: rec.enabled,
      remoteConfig: exp.remoteConfig,
      hookErrors: this._observer.hookErrors,
    };
  }
}

// ------------------------------------------------------------------------ process exit
const live = new Set();
let exitHooksInstalled = false;

/** Flush when the event loop runs dry (`beforeExit`) and on SIGTERM when nobody else handles it:
 * flush (bounded), then re-raise so the process ends exactly as it would have. Disable with
 * MCPOBS_SIGTERM_FLUSH=0. */
export function registerLive(handle) {
  live.add(handle);
  if (exitHooksInstalled) return;
  exitHooksInstalled = true;
  const timeoutMs = envNumber('MCPOBS_EXIT_FLUSH_TIMEOUT_S', 3) * 1000;
  let flushedAtExit = false;
  process.on('beforeExit', () => {
    // runs again after the flush's own work drains; flush once
    if (flushedAtExit) return;
    const pending = [...live].some((h) => !h._exporter.idle);
    if (!pending) return;
    flushedAtExit = true;
    for (const h of live) h.flush(timeoutMs).catch(() => {});
  });
  for (const sig of ['SIGTERM']) {
    if (process.env.MCPOBS_SIGTERM_FLUSH === '0' || process.listenerCount(sig) > 0) continue;
    const onSignal = () => {
      const others = process.listenerCount(sig) > 1; // someone else decides what the signal does
      process.removeListener(sig, onSignal);
      Promise.allSettled([...live].map((h) => h.flush(timeoutMs))).then(() => {
        if (!others) process.kill(process.pid, sig);
      });
    };
    process.on(sig, onSignal);
  }
}

/** Build the observer and the exporter from the options (and the MCPOBS_* environment). */
export function build(options, defaultServiceName) {
  const o = options || {};
  const log = makeLogger(!!o.debug);
  const apiKey = o.apiKey || process.env.MCPOBS_API_KEY || null;
  const endpoint = o.endpoint || process.env.MCPOBS_ENDPOINT || 'http://127.0.0.1:4318';
  let sampling = o.sampling === undefined ? null : o.sampling;
  if (sampling === null && process.env.MCPOBS_SAMPLING) sampling = envNumber('MCPOBS_SAMPLING', 1.0);
  if (sampling !== null) sampling = Math.min(1, Math.max(0, Number(sampling)));
  if (Number.isNaN(sampling)) sampling = 1.0;
  const recorder = new Recorder({
    queueMax: envNumber('MCPOBS_QUEUE_MAX', 2048),
    batchSize: Math.max(1, envNumber('MCPOBS_BATCH_SIZE', 256)),
    slowThresholdMs: envNumber('MCPOBS_SLOW_THRESHOLD_MS', 1000),
    sampling,
  });
  const observer = new Observer(recorder, {
    captureArguments: !!o.captureArguments,
    redact: o.redact,
    identify: o.identify,
    skipMethods: o.skipMethods,
    captureMaxBytes: envNumber('MCPOBS_CAPTURE_MAX_BYTES', 4096),
    log,
  });
  const attrs = {
    'service.name': o.serviceName || process.env.OTEL_SERVICE_NAME || defaultServiceName || 'mcp-server',
    'telemetry.sdk.name': SDK_NAME,
    'telemetry.sdk.language': 'nodejs',
    'telemetry.sdk.version': VERSION,
  };
  if (o.serviceVersion) attrs['service.version'] = o.serviceVersion;
  const refresh = process.env.MCPOBS_CONFIG_REFRESH_S;
  const exporter = new Exporter(recorder, {
    endpoint,
    apiKey,
    resource: resourceFromAttributes(attrs),
    scope: { name: SCOPE_NAME, version: VERSION },
    exportIntervalMs: Math.max(1, envNumber('MCPOBS_EXPORT_INTERVAL_MS', 1000)),
    timeoutMs: envNumber('MCPOBS_EXPORT_TIMEOUT_MS', 5000),
    compression: process.env.MCPOBS_COMPRESSION === 'none' ? 'none' : 'gzip',
    maxRetries: envNumber('MCPOBS_MAX_RETRIES', 3),
    exportsInFlightMax: envNumber('MCPOBS_EXPORTS_IN_FLIGHT', EXPORTS_IN_FLIGHT_MAX),
    breaker: new CircuitBreaker({
      threshold: envNumber('MCPOBS_BREAKER_THRESHOLD', 3),
      baseMs: envNumber('MCPOBS_BREAKER_BASE_MS', 1000),
      maxMs: envNumber('MCPOBS_BREAKER_MAX_MS', 60000),
    }),
    configRefreshMs: refresh ? Number(refresh) * 1000 : null,
    log,
    userAgent: `${SDK_NAME}/${VERSION}`,
  });
  if (!apiKey) log('no API key (apiKey or MCPOBS_API_KEY): spans are recorded but not sent');
  return { observer, exporter };
}
