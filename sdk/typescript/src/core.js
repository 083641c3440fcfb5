// Options, the public handle, and the library-neutral request observer used by every hook.

import { resourceFromAttributes } from '@opentelemetry/resources';
import { CircuitBreaker, Exporter } from './export.js';
import { Recorder, SpanRecord, captureValue, errorType, parseTraceparent } from './record.js';

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

const RESOURCE_METHODS = new Set(['resources/read', 'resources/subscribe', 'resources/unsubscribe']);

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

  /** Open a span record for one incoming request, or null (skipped, disabled, closed). */
  begin(method, params, requestId, info) {
    if (this.closed || !this.recorder.enabled || this.skipMethods.has(method)) return null;
    const attrs = { 'mcp.method.name': method };
    let target;
    let meta;
    if (params !== undefined && params !== null && typeof params === 'object') {
      if (method === 'tools/call') {
        target = params.name;
        attrs['gen_ai.operation.name'] = 'execute_tool';
        if (typeof target === 'string') attrs['gen_ai.tool.name'] = target;
      } else if (method === 'prompts/get') {
        target = params.name;
        if (typeof target === 'string') attrs['gen_ai.prompt.name'] = target;
      } else if (RESOURCE_METHODS.has(method)) {
        // not in the span name: URIs are high-cardinality
        if (typeof params.uri === 'string') attrs['mcp.resource.uri'] = params.uri;
      }
      meta = params._meta;
    }
    if (requestId !== undefined && requestId !== null) attrs['jsonrpc.request.id'] = String(requestId);
    const auth = info.authInfo;
    if (auth) attributeUser(attrs, auth);
    if (this.identify !== null) {
      try {
        const who = this.identify({
          method,
          params,
          headers: info.headers,
          authInfo: auth,
          sessionId: info.sessionId,
          raw: info.raw,
        });
        if (typeof who === 'string' && who) attrs['enduser.id'] = who;
        else if (who && typeof who === 'object') {
          if (who.id) attrs['enduser.id'] = String(who.id);
          if (Array.isArray(who.scopes) && who.scopes.length) attrs['enduser.scope'] = who.scopes.join(' ');
          for (const [k, v] of Object.entries(who)) {
            if (k !== 'id' && k !== 'scopes' && ['string', 'number', 'boolean'].includes(typeof v)) {
              attrs[`enduser.${k}`] = v;
            }
          }
        }
      } catch (e) {
        this.hookErrors++;
        this.log(`identify() raised ${e}`);
      }
    }
    if (params && this.capturing && params.arguments !== undefined) {
      const s = captureValue(params.arguments, this.redact, this.captureMaxBytes);
      if (s !== null) attrs[method === 'tools/call' ? 'gen_ai.tool.call.arguments' : 'mcp.request.arguments'] = s;
    }
    const rec = new SpanRecord(typeof target === 'string' ? `${method} ${target}` : method, attrs, parseTraceparent(meta));
    // session-wide attributes (transport, session, protocol version, client): one shared object
    if (info.shared) rec.shared = info.shared;
    return rec;
  }

  ok(rec, result, protocolVersion) {
    try {
      if (protocolVersion) rec.attributes['mcp.protocol.version'] = protocolVersion; // overrides the shared one
      if (result !== null && typeof result === 'object' && result.isError === true) {
        if (rec.attributes['error.type'] === undefined) rec.attributes['error.type'] = 'tool_error';
        rec.error = true;
        rec.message = firstText(result);
      }
      if (this.capturing && result !== undefined && rec.attributes['mcp.method.name'] === 'tools/call') {
        const s = captureValue(result, this.redact, this.captureMaxBytes);
        if (s !== null) rec.attributes['gen_ai.tool.call.result'] = s;
      }
    } catch (e) {
      this.hookError(e);
    }
    this.recorder.finish(rec);
  }

  jsonrpcError(rec, code, message) {
    // a handler exception noted by the hooks keeps its class name as error.type
    if (rec.attributes['error.type'] === undefined) rec.attributes['error.type'] = String(code);
    rec.attributes['rpc.response.status_code'] = String(code);
    rec.error = true;
    rec.message = String(message || '').slice(0, 1024);
    this.recorder.finish(rec);
  }

  /** A handler threw something that is not a JSON-RPC error: class name + `exception` event. */
  noteException(rec, err) {
    try {
      rec.attributes['error.type'] = errorType(err);
      rec.error = true;
      rec.message = String(err && err.message !== undefined ? err.message : err).slice(0, 1024);
      rec.recordException(err);
    } catch (e) {
      this.hookError(e);
    }
  }

  cancelled(rec) {
    rec.attributes['error.type'] = 'cancelled';
    rec.error = true;
    rec.message = 'request cancelled';
    this.recorder.finish(rec);
  }
}

/** enduser.id (the token's subject, else its client id), enduser.scope, mcp.auth.client_id. */
function attributeUser(attrs, auth) {
  const extra = auth.extra && typeof auth.extra === 'object' ? auth.extra : null;
  const subject = extra ? extra.sub || extra.subject : undefined;
  const user = subject || auth.clientId;
  if (user) attrs['enduser.id'] = String(user);
  if (auth.clientId) attrs['mcp.auth.client_id'] = String(auth.clientId);
  if (Array.isArray(auth.scopes) && auth.scopes.length) attrs['enduser.scope'] = auth.scopes.join(' ');
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
      queueSize: rec.queue.length + (exp.pending ? exp.pending.length : 0),
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
    const pending = [...live].some((h) => h._exporter.recorder.queue.length || h._exporter.pending);
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
    maxRetries: envNumber('MCPOBS_MAX_RETRIES', 3),
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
