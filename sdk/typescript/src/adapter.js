// The hooks: a pass-through transport proxy (every request in, its one response out) and the
// server-side wrappers that attach exceptions to the request's span.
//
// Every transport of `@modelcontextprotocol/sdk` 1.x and `@modelcontextprotocol/server` 2.x
// (stdio, SSE, streamable HTTP, in-memory) reaches the server through `Protocol.connect(t)`,
// which sets `t.onmessage` and answers with `t.send`. The proxy sees each JSON-RPC request as it
// arrives (with `extra.authInfo` / `extra.requestInfo`) and the response with the same id as it
// leaves, so `initialize`, unknown methods, invalid params and handler errors are spans too, and
// the user is read per request. Nothing here changes a message, and nothing here throws.

import { ROOT_CONTEXT, context as otelContext, trace as otelTrace, TraceFlags } from '@opentelemetry/api';
import { newSpanId, newTraceId } from './export.js';

export const ADAPTER = Symbol.for('mcp-obs.adapter');
export const RECORD = Symbol.for('mcp-obs.record');

// ------------------------------------------------------------------ OpenTelemetry context
// Spans the application creates inside a handler become children of the MCP span when the
// application registered a context manager. Probing costs one `context.with`; re-probed every
// export tick, so a provider registered after `configureMCPTelemetry` is picked up.
const PROBE_KEY = Symbol('mcp-obs.probe');
let contextActive = false;
export function probeContextManager() {
  try {
    const probe = ROOT_CONTEXT.setValue(PROBE_KEY, true);
    contextActive = otelContext.with(probe, () => otelContext.active() === probe);
  } catch {
    contextActive = false;
  }
}

/** Per-transport (= per MCP session) state: in-flight span records by JSON-RPC id. */
class Session {
  constructor(observerRef, inner) {
    this.observerRef = observerRef; // { observer }: re-configuration swaps the observer
    this.inner = inner;
    this.pending = new Map();
    this.clientInfo = null;
    this.protocolVersion = null;
    this.viaProtocol = false; // true: hooked at the server's Protocol, false: a transport proxy
    this.shared = null; // the session-wide attributes, reused while they do not change
  }

  /** Attributes every span of the session carries; one object shared by their records. */
  sharedAttributes(transport, sessionId, pv, clientInfo) {
    const sh = this.shared;
    if (sh !== null && sh.transport === transport && sh.sessionId === sessionId && sh.pv === pv && sh.clientInfo === clientInfo) {
      return sh.attrs;
    }
    const attrs = {};
    if (pv) attrs['mcp.protocol.version'] = pv;
    attrs['network.transport'] = transport;
    if (sessionId) attrs['mcp.session.id'] = sessionId;
    if (clientInfo) {
      if (clientInfo.name) attrs['mcp.client.name'] = String(clientInfo.name);
      if (clientInfo.version) attrs['mcp.client.version'] = String(clientInfo.version);
    }
    this.shared = { transport, sessionId, pv, clientInfo, attrs };
    return attrs;
  }

  incoming(msg, extra) {
    const obs = this.observerRef.observer;
    if (obs === null || obs.closed) return null;
    try {
      const method = msg.method;
      if (typeof method !== 'string') return null; // a response to a server-initiated request
      const id = msg.id;
      if (id === undefined) {
        if (method === 'notifications/cancelled') this.cancel(msg.params && msg.params.requestId);
        return null;
      }
      const params = msg.params;
      let transport = 'pipe';
      let headers;
      let sessionId;
      // HTTP transports pass the request: 1.x `requestInfo` ({ headers }), 2.x `request` (a Request)
      const requestInfo = extra === undefined ? undefined : extra.requestInfo || extra.request;
      if (requestInfo) {
        transport = 'tcp';
        headers = requestInfo.headers;
        sessionId = this.inner.sessionId || (headers && headerValue(headers, 'mcp-session-id'));
      }
      let pv = this.protocolVersion;
      if (pv === null && headers) pv = headerValue(headers, 'mcp-protocol-version') || null;
      let clientInfo = this.clientInfo;
      if (method === 'initialize' && params && params.clientInfo) {
        clientInfo = this.clientInfo = params.clientInfo;
      }
      const rec = obs.begin(method, params, id, {
        shared: this.sharedAttributes(transport, sessionId, pv, clientInfo),
        sessionId,
        authInfo: extra && extra.authInfo,
        headers,
        raw: msg,
      });
      if (rec === null) return null;
      const prev = this.pending.get(id);
      if (prev !== undefined) obs.cancelled(prev); // a client reusing an id in flight
      this.pending.set(id, rec);
      return rec;
    } catch (e) {
      obs.hookError(e);
      return null;
    }
  }

  outgoing(msg) {
    if (this.pending.size === 0 || msg === null || typeof msg !== 'object') return;
    const obs = this.observerRef.observer;
    try {
      if (msg.method !== undefined) return; // the server's own request or notification
      const rec = this.pending.get(msg.id);
      if (rec === undefined) return;
      this.pending.delete(msg.id);
      if (obs === null) return;
      const error = msg.error;
      if (error === undefined) {
        const result = msg.result;
        let pv;
        if (rec.attributes['mcp.method.name'] === 'initialize' && result && typeof result.protocolVersion === 'string') {
          pv = this.protocolVersion = result.protocolVersion;
        }
        obs.ok(rec, result, pv);
      } else {
        obs.jsonrpcError(rec, error && error.code, error && error.message);
      }
    } catch (e) {
      if (obs !== null) obs.hookError(e);
    }
  }

  cancel(requestId) {
    const rec = this.pending.get(requestId);
    if (rec === undefined) return;
    this.pending.delete(requestId);
    const obs = this.observerRef.observer;
    if (obs !== null) obs.cancelled(rec);
  }

  /** The transport closed: requests still in flight end as `cancelled`. */
  close() {
    const pending = this.pending;
    this.pending = new Map();
    const obs = this.observerRef.observer;
    if (obs === null) return;
    for (const rec of pending.values()) {
      try {
        obs.cancelled(rec);
      } catch {
        // nothing
      }
    }
  }
}

function headerValue(headers, name) {
  if (typeof headers.get === 'function') return headers.get(name) || undefined;
  const v = headers[name];
  return Array.isArray(v) ? v[0] : v;
}

/** Wrap `transport` so every request through it becomes a span. Returns a proxy of it: the
 * server connects to the proxy; the application keeps using the original (e.g. `handleRequest`). */
export function wrapTransport(transport, observerRef) {
  if (transport === null || typeof transport !== 'object') return transport;
  if (transport[ADAPTER] !== undefined) {
    transport[ADAPTER].observerRef.observer = observerRef.observer;
    return transport;
  }
  const session = new Session(observerRef, transport);
  let handler = transport.onmessage; // what the server set on the proxy
  const intercept = (msg, extra) => {
    const rec = msg !== null && typeof msg === 'object' && !Array.isArray(msg) ? session.incoming(msg, extra) : null;
    if (handler === undefined || handler === null) return undefined;
    if (rec !== null && contextActive) return runInSpanContext(rec, handler, msg, extra);
    return handler(msg, extra);
  };
  const send = (msg, options) => {
    session.outgoing(msg);
    return transport.send(msg, options);
  };
  let onclose = transport.onclose;
  const closed = () => {
    session.close();
    if (typeof onclose === 'function') return onclose();
    return undefined;
  };
  transport.onmessage = intercept;
  transport.onclose = closed;
  const bound = new Map();
  return new Proxy(transport, {
    get(target, prop) {
      if (prop === 'send') return send;
      if (prop === 'onmessage') return handler;
      if (prop === 'onclose') return onclose;
      if (prop === ADAPTER) return session;
      const v = Reflect.get(target, prop, target);
      if (typeof v !== 'function') return v;
      let b = bound.get(prop);
      if (b === undefined || b.fn !== v) {
        b = { fn: v, bound: v.bind(target) };
        bound.set(prop, b);
      }
      return b.bound;
    },
    set(target, prop, value) {
      if (prop === 'onmessage') handler = value;
      else if (prop === 'onclose') onclose = value;
      else return Reflect.set(target, prop, value, target);
      return true;
    },
    has(target, prop) {
      return prop === ADAPTER || Reflect.has(target, prop);
    },
  });
}

function runInSpanContext(rec, handler, msg, extra, thisArg) {
  let ctx;
  try {
    if (rec.traceId === '') rec.traceId = newTraceId();
    rec.spanId = newSpanId();
    const sc = { traceId: rec.traceId, spanId: rec.spanId, traceFlags: TraceFlags.SAMPLED, isRemote: false };
    ctx = otelTrace.setSpanContext(ROOT_CONTEXT, sc);
  } catch {
    return handler.call(thisArg, msg, extra);
  }
  return otelContext.with(ctx, handler, thisArg, msg, extra);
}

// ------------------------------------------------------------------ server hooks
/** The low-level Server (Protocol) behind an McpServer, or the object itself. */
export function protocolOf(server) {
  if (server && server.server && typeof server.server.connect === 'function' && server.server._requestHandlers) {
    return server.server;
  }
  return server;
}

export function isSupportedServer(server) {
  const p = protocolOf(server);
  return !!p && typeof p.connect === 'function' && typeof p._onrequest === 'function' && p._requestHandlers instanceof Map;
}

/** The span record of the request a handler is serving (its `extra` / `ctx`), if any. */
export function recordOf(extra) {
  return extra !== null && typeof extra === 'object' ? extra[RECORD] : undefined;
}

function requestIdOf(extra) {
  if (!extra) return undefined;
  if (extra.requestId !== undefined) return extra.requestId; // 1.x RequestHandlerExtra
  return extra.mcpReq ? extra.mcpReq.id : undefined; // 2.x ServerContext
}

/** Hook a transport the server connects to: its session state, and `send` (each response
 * closes its request's span). In place, so the application and the SDK keep the same object. */
export function attachSession(transport, observerRef) {
  const existing = transport[ADAPTER];
  if (existing !== undefined) {
    existing.observerRef.observer = observerRef.observer; // re-configured, or a proxy's session
    return transport;
  }
  const session = new Session(observerRef, transport);
  session.viaProtocol = true;
  const origSend = transport.send;
  try {
    Object.defineProperty(transport, ADAPTER, { value: session, configurable: true, enumerable: false });
    transport.send = function send(msg, options) {
      session.outgoing(msg);
      return origSend.call(this, msg, options);
    };
    return transport;
  } catch {
    // a frozen or exotic transport: hook it through a proxy instead
    return wrapTransport(transport, observerRef);
  }
}

/** Install on `server` (McpServer or low-level Server, 1.x or 2.x). Idempotent: re-configuration
 * swaps the observer the hooks read.
 *
 * Requests are seen where the server's Protocol receives them (`_onrequest(request, extra)`, with
 * `extra.authInfo` and the HTTP request), whatever answers them later; responses where the
 * connected transport sends them. Both exist, with these signatures, in 1.x and 2.x. */
export function installServer(server, observerRef) {
  const proto = protocolOf(server);
  const state = proto[ADAPTER];
  if (state !== undefined) {
    state.observerRef.observer = observerRef.observer;
    return state.observerRef;
  }
  Object.defineProperty(proto, ADAPTER, { value: { observerRef }, enumerable: false });

  const origConnect = proto.connect;
  proto.connect = function connect(transport, ...rest) {
    let t = transport;
    try {
      t = attachSession(transport, observerRef);
    } catch (e) {
      if (observerRef.observer) observerRef.observer.hookError(e);
    }
    return origConnect.call(this, t, ...rest);
  };

  const origOnRequest = proto._onrequest;
  proto._onrequest = function _onrequest(request, extra) {
    const t = this._transport;
    const session = t === undefined || t === null ? undefined : t[ADAPTER];
    // a transport proxy (createTelemetryAdapter) records its own requests
    const rec = session !== undefined && session.viaProtocol ? session.incoming(request, extra) : null;
    if (rec !== null && contextActive) return runInSpanContext(rec, origOnRequest, request, extra, this);
    return origOnRequest.call(this, request, extra);
  };

  const origOnNotification = proto._onnotification;
  proto._onnotification = function _onnotification(notification, ...rest) {
    try {
      if (notification && notification.method === 'notifications/cancelled') {
        const session = this._transport && this._transport[ADAPTER];
        if (session !== undefined && session.viaProtocol) session.cancel(notification.params && notification.params.requestId);
      }
    } catch (e) {
      if (observerRef.observer) observerRef.observer.hookError(e);
    }
    return origOnNotification.call(this, notification, ...rest);
  };

  const origOnClose = proto._onclose;
  proto._onclose = function _onclose(...args) {
    try {
      const session = this._transport && this._transport[ADAPTER];
      if (session !== undefined && session.viaProtocol) session.close();
    } catch (e) {
      if (observerRef.observer) observerRef.observer.hookError(e);
    }
    return origOnClose.apply(this, args);
  };

  // Handlers: hand the record to the handler's extra (for recordException and the tool hook) and
  // note exceptions the library turns into a JSON-RPC error (no numeric `code`: -32603).
  const handlers = proto._requestHandlers;
  for (const [method, h] of handlers) handlers.set(method, observedHandler(proto, h));
  const origSet = proto.setRequestHandler;
  proto.setRequestHandler = function setRequestHandler(...args) {
    const before = new Map(handlers);
    const r = origSet.apply(this, args);
    try {
      for (const [method, h] of handlers) {
        if (before.get(method) !== h && !h[ADAPTER]) handlers.set(method, observedHandler(proto, h));
      }
    } catch (e) {
      if (observerRef.observer) observerRef.observer.hookError(e);
    }
    return r;
  };

  // McpServer turns a throwing tool into an `isError` result: keep the exception as an event.
  if (server !== proto && typeof server.executeToolHandler === 'function') {
    const origExec = server.executeToolHandler;
    server.executeToolHandler = function executeToolHandler(tool, args, extra) {
      const p = origExec.call(this, tool, args, extra);
      const rec = recordOf(extra);
      if (rec !== undefined && p && typeof p.then === 'function') {
        p.then(undefined, (err) => {
          try {
            rec.recordException(err);
          } catch {
            // nothing
          }
        });
      }
      return p;
    };
  }
  return observerRef;
}

function observedHandler(proto, h) {
  const wrapped = function observed(request, extra) {
    let rec;
    try {
      const t = proto._transport;
      const session = t === undefined || t === null ? undefined : t[ADAPTER];
      rec = session !== undefined ? session.pending.get(request.id !== undefined ? request.id : requestIdOf(extra)) : undefined;
      if (rec !== undefined && extra && typeof extra === 'object') extra[RECORD] = rec;
    } catch {
      rec = undefined;
    }
    const p = h(request, extra);
    if (rec !== undefined && p && typeof p.then === 'function') {
      p.then(undefined, (err) => {
        try {
          if (!(err && Number.isSafeInteger(err.code))) {
            const obs = observerOf(proto);
            if (obs !== null) obs.noteException(rec, err);
          }
        } catch {
          // nothing
        }
      });
    }
    return p;
  };
  wrapped[ADAPTER] = true;
  return wrapped;
}

function observerOf(proto) {
  const s = proto[ADAPTER];
  return s ? s.observerRef.observer : null;
}
