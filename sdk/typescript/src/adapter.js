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

// ------------------------------------------------------------------ in-flight records
// Every record between its request and its response, in one list, so `recordException(error,
// extra)` finds the record of a handler's `extra` without anything being written to `extra` (an
// object of the MCP library) on the request path. Linking is a few field writes; the list is
// bounded (the oldest entries fall out of it: they only stop being found by recordException).
const INFLIGHT_MAX = 10000;
let inflightHead = null; // oldest
let inflightTail = null;
let inflightCount = 0;

function link(rec) {
  if (inflightCount >= INFLIGHT_MAX) unlink(inflightHead);
  rec.prev = inflightTail;
  rec.next = null;
  if (inflightTail === null) inflightHead = rec;
  else inflightTail.next = rec;
  inflightTail = rec;
  rec.linked = true;
  inflightCount++;
}

function unlink(rec) {
  if (!rec.linked) return;
  rec.linked = false;
  const { prev, next } = rec;
  if (prev === null) inflightHead = next;
  else prev.next = next;
  if (next === null) inflightTail = prev;
  else next.prev = prev;
  rec.prev = rec.next = null;
  rec.extra = undefined;
  inflightCount--;
}

/** Per-transport (= per MCP session) state: in-flight span records by JSON-RPC id. One request
 * at a time (the common case) lives in a slot; more go to a Map. */
class Session {
  constructor(observerRef, inner) {
    this.observerRef = observerRef; // { observer }: re-configuration swaps the observer
    this.inner = inner;
    this.slotId = undefined;
    this.slotRec = undefined;
    this.more = null; // Map id -> record, for concurrent requests
    this.size = 0;
    this.clientInfo = null;
    this.protocolVersion = null;
    this.viaProtocol = false; // true: hooked at the server's Protocol, false: a transport proxy
    // true: requests are seen by the transport's own `onmessage`, which the server's `connect`
    // (a body this module knows) calls first for every message (see `observeMessages`)
    this.preHooked = false;
    this.pending = null; // preHooked, with a context manager: the record `_onrequest` runs in
    this.shared = null; // the session-wide attributes, reused while they do not change
  }

  /** The in-flight record of request `id`, or undefined. */
  get(id) {
    if (this.size === 0) return undefined;
    if (this.slotRec !== undefined && this.slotId === id) return this.slotRec;
    return this.more === null ? undefined : this.more.get(id);
  }

  put(id, rec) {
    if (this.slotRec === undefined) {
      this.slotId = id;
      this.slotRec = rec;
    } else {
      if (this.more === null) this.more = new Map();
      this.more.set(id, rec);
    }
    this.size++;
    link(rec);
  }

  /** Remove and return the in-flight record of request `id`, or undefined. */
  take(id) {
    if (this.size === 0) return undefined;
    let rec;
    if (this.slotRec !== undefined && this.slotId === id) {
      rec = this.slotRec;
      this.slotRec = undefined;
      this.slotId = undefined;
    } else if (this.more !== null) {
      rec = this.more.get(id);
      if (rec === undefined) return undefined;
      this.more.delete(id);
    } else {
      return undefined;
    }
    this.size--;
    unlink(rec);
    return rec;
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
      let authInfo;
      if (extra !== undefined && extra !== null) {
        authInfo = extra.authInfo;
        // HTTP transports pass the request: 1.x `requestInfo` ({ headers }), 2.x `request` (a Request)
        const requestInfo = extra.requestInfo || extra.request;
        if (requestInfo) {
          transport = 'tcp';
          headers = requestInfo.headers;
          sessionId = this.inner.sessionId || (headers && headerValue(headers, 'mcp-session-id'));
        }
      }
      let pv = this.protocolVersion;
      if (pv === null && headers) pv = headerValue(headers, 'mcp-protocol-version') || null;
      let clientInfo = this.clientInfo;
      if (method === 'initialize' && params && params.clientInfo) {
        clientInfo = this.clientInfo = params.clientInfo;
      }
      const shared = this.sharedAttributes(transport, sessionId, pv, clientInfo);
      const info = obs.identify === null ? null : { headers, sessionId, raw: msg };
      const rec = obs.begin(method, params, id, shared, authInfo, info);
      if (rec === null) return null;
      const prev = this.take(id);
      if (prev !== undefined) obs.cancelled(prev); // a client reusing an id in flight
      this.put(id, rec);
      return rec;
    } catch (e) {
      obs.hookError(e);
      return null;
    }
  }

  outgoing(msg) {
    if (this.size === 0 || msg === null || typeof msg !== 'object') return;
    const obs = this.observerRef.observer;
    try {
      if (msg.method !== undefined) return; // the server's own request or notification
      const rec = this.take(msg.id);
      if (rec === undefined) return;
      if (obs === null) return;
      const error = msg.error;
      if (error === undefined) {
        const result = msg.result;
        let pv;
        if (rec.method === 'initialize' && result && typeof result.protocolVersion === 'string') {
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
    const rec = this.take(requestId);
    if (rec === undefined) return;
    const obs = this.observerRef.observer;
    if (obs !== null) obs.cancelled(rec);
  }

  /** The transport closed: requests still in flight end as `cancelled`. */
  close() {
    const recs = [];
    if (this.slotRec !== undefined) recs.push(this.slotRec);
    if (this.more !== null) recs.push(...this.more.values());
    this.slotRec = this.slotId = undefined;
    this.more = null;
    this.size = 0;
    for (const rec of recs) unlink(rec);
    const obs = this.observerRef.observer;
    if (obs === null) return;
    for (const rec of recs) {
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
    rec.resolveParent();
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
  if (extra === null || typeof extra !== 'object') return undefined;
  // newest first: a handler asks about its own, usually recent, request. A copy of the handler's
  // `extra` / `ctx` (2.x copies it for request state) carries the request's own abort signal.
  const signal = signalOf(extra);
  for (let r = inflightTail; r !== null; r = r.prev) {
    if (r.extra === extra || (signal !== undefined && r.extra !== undefined && signalOf(r.extra) === signal)) return r;
  }
  return undefined;
}

function signalOf(extra) {
  try {
    const s = extra.signal !== undefined ? extra.signal : extra.mcpReq ? extra.mcpReq.signal : undefined;
    return s !== null && typeof s === 'object' ? s : undefined;
  } catch {
    return undefined;
  }
}

function requestIdOf(extra) {
  if (!extra) return undefined;
  if (extra.requestId !== undefined) return extra.requestId; // 1.x RequestHandlerExtra
  return extra.mcpReq ? extra.mcpReq.id : undefined; // 2.x ServerContext
}

/** Hook a transport the server connects to: its session state, and `send` (each response
 * closes its request's span). In place, so the application and the SDK keep the same object.
 * `proto`: the server about to connect with a `connect` body this module knows (see
 * `isKnownConnect`), or null; then the transport's own `onmessage` (unset: the server chains it)
 * sees the requests too, and the server needs no `_onrequest` wrapper for this connection. */
export function attachSession(transport, observerRef, proto = null) {
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
    if (proto !== null && (transport.onmessage === undefined || transport.onmessage === null)) {
      transport.onmessage = observeMessages(session, proto);
      session.preHooked = true;
    }
    return transport;
  } catch {
    // a frozen or exotic transport: hook it through a proxy instead
    return wrapTransport(transport, observerRef);
  }
}

// `Protocol.connect` of `@modelcontextprotocol/sdk` 1.x as this module knows it (1.32; comments
// and whitespace removed): it keeps the transport's own `onmessage` and calls it first, with the
// message and `extra`, for every message, then hands a request to `this._onrequest(message,
// extra)`. Any other body (another version, a subclass's own) keeps the `_onrequest` wrapper.
const CONNECT_1X =
  'asyncconnect(transport){if(this._transport){thrownewError(\'Alreadyconnectedtoatransport.Callclose()beforeconnectingtoanewtransport,' +
  "oruseaseparateProtocolinstanceperconnection.');}this._transport=transport;const_onclose=this.transport?.onclose;" +
  'this._transport.onclose=()=>{_onclose?.();this._onclose();};const_onerror=this.transport?.onerror;' +
  'this._transport.onerror=(error)=>{_onerror?.(error);this._onerror(error);};const_onmessage=this._transport?.onmessage;' +
  'this._transport.onmessage=(message,extra)=>{_onmessage?.(message,extra);' +
  'if(isJSONRPCResultResponse(message)||isJSONRPCErrorResponse(message)){this._onresponse(message);}' +
  'elseif(isJSONRPCRequest(message)){this._onrequest(message,extra);}' +
  'elseif(isJSONRPCNotification(message)){this._onnotification(message);}' +
  'else{this._onerror(newError(`Unknownmessagetype:${JSON.stringify(message)}`));}};awaitthis._transport.start();}';

// The same for `@modelcontextprotocol/server` 2.x (2.4): `Protocol.connect` chains the
// transport's own `onmessage` the same way (first, with the message and `extra`, then
// `this._onrequest(message, extra)` for a request), and `Server.connect`, the one a server
// instance finds, checks the connection state and calls `super.connect(transport)` with the
// transport unchanged. Both bodies must match, the second being the connect of the prototype
// after the one holding the first (what `super` resolves to).
const CONNECT_2X =
  'asyncconnect(transport){this._transport=transport;const_onclose=this.transport?.onclose;' +
  'this._transport.onclose=()=>{try{_onclose?.();}finally{this._onclose();}};const_onerror=this.transport?.onerror;' +
  'this._transport.onerror=(error)=>{_onerror?.(error);this._onerror(error);};const_onmessage=this._transport?.onmessage;' +
  'this._transport.onmessage=(message,extra)=>{_onmessage?.(message,extra);' +
  'if(isJSONRPCResultResponse(message)||isJSONRPCErrorResponse(message))this._onresponse(message);' +
  'elseif(isJSONRPCRequest(message))this._onrequest(message,extra);' +
  'elseif(isJSONRPCNotification(message))this._onnotification(message,extra);' +
  'elsethis._onerror(newError(`Unknownmessagetype:${JSON.stringify(message)}`));};' +
  'transport.setSupportedProtocolVersions?.(this._supportedProtocolVersions);awaitthis._transport.start();}';
const SERVER_CONNECT_2X =
  'asyncconnect(transport){if(this.transport!==void0)thrownewSdkError(SdkErrorCode.AlreadyConnected,' +
  '"UseaseparateServerinstanceperconnection:thisinstanceisalreadyconnectedtoatransport.Toconnectittoanewtransport,callclose()first.");' +
  'if(this._boundFromTransport){this._boundFromTransport=false;this._negotiatedProtocolVersion=void0;}' +
  'constrevision=perRequestClassificationOf(transport)?.revision;' +
  'if(revision!==void0&&!this._servedModernEra()&&SUPPORTED_MODERN_PROTOCOL_VERSIONS.includes(revision)&&' +
  'modernProtocolVersions(this._supportedProtocolVersions).includes(revision)){this._negotiatedProtocolVersion=revision;this._boundFromTransport=true;}' +
  'awaitsuper.connect(transport);}';

/** Whether `connect`, the connect `proto` finds, is a body this module knows to call the
 * transport's own `onmessage` first for every message (`CONNECT_1X`, or `SERVER_CONNECT_2X` over
 * `CONNECT_2X`). Anything else, or anything that cannot be read, is not. */
function isKnownConnect(proto, connect) {
  try {
    const shape = sourceShape(connect);
    if (shape === CONNECT_1X || shape === CONNECT_2X) return true;
    if (shape !== SERVER_CONNECT_2X) return false;
    // `super.connect`: the connect of the prototype after the one that holds this body
    let holder = proto;
    while (holder !== null && holder !== undefined) {
      const d = Object.getOwnPropertyDescriptor(holder, 'connect');
      if (d !== undefined) {
        if (d.value !== connect) return false; // an accessor, or another body in between
        break;
      }
      holder = Object.getPrototypeOf(holder);
    }
    if (holder === null || holder === undefined) return false;
    const above = Object.getPrototypeOf(holder);
    if (above === null) return false;
    const d = Object.getOwnPropertyDescriptor(above, 'connect');
    return d !== undefined && typeof d.value === 'function' && sourceShape(d.value) === CONNECT_2X;
  } catch {
    return false;
  }
}

/** The transport's `onmessage` for a server whose `connect` chains it (`isKnownConnect`): every
 * message passes here first, as through a transport proxy (`wrapTransport`), with the `extra`
 * `_onrequest` receives next. With a context manager the request's handler must run inside its
 * span's context, which only a wrapper around `_onrequest` can do: then the record is left in
 * `session.pending` for that wrapper, installed here on first need. */
function observeMessages(session, proto) {
  return function onmessage(msg, extra) {
    if (msg === null || typeof msg !== 'object' || Array.isArray(msg)) return;
    const rec = session.incoming(msg, extra); // never throws
    if (contextActive) {
      session.pending = rec;
      try {
        ensureRequestHook(proto);
      } catch (e) {
        // a frozen server: its handlers run outside the span's context, nothing else changes
        const obs = session.observerRef.observer;
        if (obs !== null) obs.hookError(e);
      }
    }
  };
}

/** Hook one connection of `proto` (from its `connect` wrapper, or when configured after
 * connecting, `preHook` false); an `_onrequest` wrapper when its requests need one. Returns the
 * transport the server is to use. */
export function hookConnection(proto, transport, observerRef, preHook) {
  const t = attachSession(transport, observerRef, preHook ? proto : null);
  const session = t !== null && typeof t === 'object' ? t[ADAPTER] : undefined;
  // a transport proxy (createTelemetryAdapter, viaProtocol false) records its own requests
  if (session !== undefined && session.viaProtocol && !session.preHooked) ensureRequestHook(proto);
  return t;
}

/** The `_onrequest` wrapper: sees each request (unless the transport's `onmessage` did) and runs
 * its handler in the span's OpenTelemetry context when a context manager is registered. */
function ensureRequestHook(proto) {
  const state = proto[ADAPTER];
  if (state === undefined || state.requestHooked) return;
  state.requestHooked = true;
  const origOnRequest = proto._onrequest;
  proto._onrequest = function _onrequest(request, extra) {
    const t = this._transport;
    const session = t === undefined || t === null ? undefined : t[ADAPTER];
    let rec = null;
    if (session !== undefined && session.viaProtocol) {
      if (session.preHooked) {
        rec = session.pending; // recorded by the transport's onmessage a moment ago
        session.pending = null;
        if (rec !== null && rec.requestId !== request.id) rec = null;
      } else {
        rec = session.incoming(request, extra);
      }
    }
    if (rec !== null && contextActive) return runInSpanContext(rec, origOnRequest, request, extra, this);
    return origOnRequest.call(this, request, extra);
  };
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
  Object.defineProperty(proto, ADAPTER, { value: { observerRef, requestHooked: false }, enumerable: false });

  // Requests are seen by the transport's `onmessage` when the server's `connect` is a body this
  // module knows (it calls that first, with the same arguments as `_onrequest`): one wrapper less
  // on every request. Otherwise, and for connections that cannot be hooked that way, by an
  // `_onrequest` wrapper (installed on first need).
  const origConnect = proto.connect;
  const knownConnect = isKnownConnect(proto, origConnect);
  proto.connect = function connect(transport, ...rest) {
    let t = transport;
    try {
      t = hookConnection(this, transport, observerRef, knownConnect && !this._transport);
    } catch (e) {
      if (observerRef.observer) observerRef.observer.hookError(e);
    }
    return origConnect.call(this, t, ...rest);
  };

  if (!knownConnect) ensureRequestHook(proto);

  const origOnNotification = proto._onnotification;
  proto._onnotification = function _onnotification(notification, ...rest) {
    try {
      if (notification && notification.method === 'notifications/cancelled') {
        const session = this._transport && this._transport[ADAPTER];
        // a preHooked session saw it in `onmessage` already
        if (session !== undefined && session.viaProtocol && !session.preHooked) {
          session.cancel(notification.params && notification.params.requestId);
        }
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
  //
  // McpServer's own `tools/call` handler (1.x and 2.x) answers every exception of a tool with an
  // `isError` result (the tool hook below records it) and rethrows only JSON-RPC errors, which
  // have a numeric `code`: watching its promise would cost a promise reaction per call and never
  // note anything, so it is not watched. It is recognised as the handler McpServer installed:
  // the `tools/call` handler present when its tool handlers are already initialized, or the one
  // set while `setToolRequestHandlers` runs.
  //
  // McpServer turns a throwing tool into an `isError` result: `executeToolHandler` keeps the
  // exception as an event. The 1.x body this module knows also hands the record to the tool's
  // `extra` itself, and then McpServer's own `tools/call` handler is left unwrapped: one call
  // layer less per tool call (on 2.x that measured slower: see `toolExecutor`).
  let toolsLinked = false;
  if (server !== proto && typeof server.executeToolHandler === 'function') {
    const exec = toolExecutor(server.executeToolHandler, proto);
    server.executeToolHandler = exec.fn;
    toolsLinked = exec.links;
  }
  const observe = (h, mcpTools) => (mcpTools && toolsLinked ? h : observedHandler(proto, h, mcpTools));
  const handlers = proto._requestHandlers;
  const mcp = server !== proto && typeof server.setToolRequestHandlers === 'function';
  const mcpToolCall = mcp && server._toolHandlersInitialized === true ? handlers.get('tools/call') : undefined;
  for (const [method, h] of handlers) handlers.set(method, observe(h, h === mcpToolCall));
  let settingToolHandlers = false;
  if (mcp) {
    const origSetTools = server.setToolRequestHandlers;
    server.setToolRequestHandlers = function setToolRequestHandlers(...args) {
      settingToolHandlers = true;
      try {
        return origSetTools.apply(this, args);
      } finally {
        settingToolHandlers = false;
      }
    };
  }
  const origSet = proto.setRequestHandler;
  proto.setRequestHandler = function setRequestHandler(...args) {
    const before = new Map(handlers);
    const r = origSet.apply(this, args);
    try {
      for (const [method, h] of handlers) {
        if (before.get(method) !== h && !h[ADAPTER]) {
          handlers.set(method, observe(h, settingToolHandlers && method === 'tools/call'));
        }
      }
    } catch (e) {
      if (observerRef.observer) observerRef.observer.hookError(e);
    }
    return r;
  };

  return observerRef;
}

/** The exception of a throwing tool, as an event on its request's record (still in flight: the
 * tool's request is answered only after this). */
function noteToolException(err, extra) {
  try {
    const rec = recordOf(extra);
    if (rec !== undefined) rec.recordException(err);
  } catch {
    // nothing
  }
}

// `McpServer.executeToolHandler` of `@modelcontextprotocol/sdk` 1.x as this module knows it (1.32;
// comments and whitespace removed).
const EXEC_TOOL_1X =
  "asyncexecuteToolHandler(tool,args,extra){consthandler=tool.handler;constisTaskHandler='createTask'inhandler;" +
  "if(isTaskHandler){if(!extra.taskStore){thrownewError('Notaskstoreprovided.');}consttaskExtra={...extra,taskStore:extra.taskStore};" +
  'if(tool.inputSchema){consttypedHandler=handler;returnawaitPromise.resolve(typedHandler.createTask(args,taskExtra));}' +
  'else{consttypedHandler=handler;returnawaitPromise.resolve(typedHandler.createTask(taskExtra));}}' +
  'if(tool.inputSchema){consttypedHandler=handler;returnawaitPromise.resolve(typedHandler(args,extra));}' +
  'else{consttypedHandler=handler;returnawaitPromise.resolve(typedHandler(extra));}}';

// The same of `@modelcontextprotocol/server` 2.x (2.4): an async function returning the tool's
// executor's promise (so the caller's `await` waits for a promise resolved with a promise: two
// more microtasks and one more promise than awaiting the executor's own).
const EXEC_TOOL_2X = 'asyncexecuteToolHandler(tool,args,ctx){returntool.executor(args,ctx);}';

function sourceShape(fn) {
  try {
    return Function.prototype.toString.call(fn).replace(/\/\/[^\n]*|\/\*[\s\S]*?\*\//g, '').replace(/\s+/g, '');
  } catch {
    return '';
  }
}

/** `executeToolHandler` that also records a tool's exception: `{ fn, links }`.
 *
 * For the 2.x body this module knows (`EXEC_TOOL_2X`), a plain function calling the tool's
 * executor itself and watching the executor's own promise: one async frame, one promise and two
 * microtasks less per tool call than the original plus a watcher. It does not hand the record to
 * `ctx` (`links` false): McpServer's `tools/call` handler keeps its wrapper on 2.x, as leaving it
 * unwrapped (the record handed over here instead) measured slower (docs/benchmarks.md).
 *
 * For the 1.x body this module knows, the same body with a `try`/`catch` around it: the tool's
 * promise is awaited once, as by the original, so watching it costs no promise reaction per call
 * (a reaction on every tool call's promise was the largest single removable cost on the 1.x
 * request path, see docs/benchmarks.md). It also hands the request's record to the tool's
 * `extra` (`links`: McpServer's `tools/call` handler then needs no wrapper). Task handlers
 * (`createTask`) still go through the original. Any other body (another version, a
 * subclass's own) is wrapped: the original runs unchanged and a rejection handler notes its
 * exception. */
function toolExecutor(origExec, proto) {
  const shape = sourceShape(origExec);
  if (shape === EXEC_TOOL_1X) {
    const fn = async function executeToolHandler(tool, args, extra) {
      linkExtra(proto, extra);
      try {
        const handler = tool.handler;
        if ('createTask' in handler) return await origExec.call(this, tool, args, extra);
        return await Promise.resolve(tool.inputSchema ? handler(args, extra) : handler(extra));
      } catch (err) {
        noteToolException(err, extra);
        throw err;
      }
    };
    return { fn, links: true };
  }
  if (shape === EXEC_TOOL_2X) {
    // Not async: the executor's own promise is returned (a native promise, as the original's),
    // with the exception watcher registered before the caller's `await`, so it runs before
    // McpServer answers the request. The watcher's reaction replaces the one the async original
    // spent adopting the executor's promise.
    const fn = function executeToolHandler(tool, args, ctx) {
      let p;
      try {
        p = Promise.resolve(tool.executor(args, ctx));
      } catch (err) {
        noteToolException(err, ctx);
        return Promise.reject(err);
      }
      p.then(undefined, (err) => noteToolException(err, ctx));
      return p;
    };
    return { fn, links: false };
  }
  const fn = function executeToolHandler(tool, args, extra) {
    const p = origExec.call(this, tool, args, extra);
    // the record is looked up only when the tool threw (it is still in flight then: this
    // reaction runs before McpServer's own, which answers the request)
    if (p && typeof p.then === 'function') p.then(undefined, (err) => noteToolException(err, extra));
    return p;
  };
  return { fn, links: false };
}

/** The in-flight record of the request `extra` belongs to learns it, for recordOf(extra): what
 * the handler wrapper does for every other handler. */
function linkExtra(proto, extra) {
  try {
    if (extra === null || typeof extra !== 'object') return;
    const t = proto._transport;
    const session = t === undefined || t === null ? undefined : t[ADAPTER];
    if (session === undefined) return;
    const rec = session.get(requestIdOf(extra));
    if (rec !== undefined) rec.extra = extra;
  } catch {
    // nothing: telemetry never fails the server
  }
}

/** `h` wrapped: its request's record learns the handler's `extra` (for recordOf), and a
 * rejection without a numeric `code` is noted, unless `codedOnly` (a handler known to reject only
 * with JSON-RPC errors, whose code the response carries). */
function observedHandler(proto, h, codedOnly = false) {
  const wrapped = function observed(request, extra) {
    let rec;
    try {
      const t = proto._transport;
      const session = t === undefined || t === null ? undefined : t[ADAPTER];
      rec = session !== undefined ? session.get(request.id !== undefined ? request.id : requestIdOf(extra)) : undefined;
      if (rec !== undefined && extra && typeof extra === 'object') rec.extra = extra; // for recordOf(extra)
    } catch {
      rec = undefined;
    }
    const p = h(request, extra);
    if (rec !== undefined && !codedOnly && p && typeof p.then === 'function') {
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
