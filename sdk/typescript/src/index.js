// @mcp-obs/server: one call instruments an MCP server and sends its spans to mcp-obs.
//
//   import { configureMCPTelemetry } from '@mcp-obs/server';
//   const telemetry = configureMCPTelemetry(server); // key/endpoint from MCPOBS_API_KEY / MCPOBS_ENDPOINT
//
// See README.md for the options. Mirrors the Python SDK (sdk/python) in camelCase.

import { ADAPTER, hookConnection, installServer, isSupportedServer, probeContextManager, protocolOf, recordOf, wrapTransport } from './adapter.js';
import { TelemetryHandle, VERSION, build, registerLive } from './core.js';

export { TelemetryHandle, VERSION as version };

function serverName(server) {
  try {
    const p = protocolOf(server);
    const info = p && (p._serverInfo || p.serverInfo);
    if (info && typeof info.name === 'string' && info.name) return info.name;
  } catch {
    // fall through
  }
  return 'mcp-server';
}

/** A pipeline (observer + exporter + handle) from options, or the one of an existing handle. */
function pipeline(options, defaultName, integration) {
  if (options instanceof TelemetryHandle) return { handle: options, observerRef: { observer: options._observer } };
  const { observer, exporter } = build(options, defaultName);
  exporter.onTick = probeContextManager;
  const handle = new TelemetryHandle(observer, exporter, integration);
  exporter.start();
  probeContextManager();
  registerLive(handle);
  return { handle, observerRef: { observer } };
}

function lineOf(server) {
  const p = protocolOf(server);
  // 2.x Protocol negotiates a wire codec per connection; 1.x has none
  return p && typeof p._negotiatedWireCodec === 'function' ? 'mcp-ts2' : 'mcp-ts1';
}

/**
 * Instrument `server` (`McpServer` or the low-level `Server`, of `@modelcontextprotocol/sdk` 1.x
 * or `@modelcontextprotocol/server` 2.x) so every incoming JSON-RPC request becomes one span in
 * mcp-obs. Call it before `server.connect(transport)`. `options` may also be the handle returned
 * by an earlier call: servers created per session or per request then share one exporter.
 *
 * Throws only for an unsupported `server` object (a programming error worth seeing at startup).
 */
export function configureMCPTelemetry(server, options = {}) {
  if (!isSupportedServer(server)) {
    throw new TypeError(
      '@mcp-obs/server: unsupported server object; supported: McpServer and Server of @modelcontextprotocol/sdk 1.x ' +
        'and @modelcontextprotocol/server 2.x',
    );
  }
  const { handle, observerRef } = pipeline(options, serverName(server), lineOf(server));
  const proto = protocolOf(server);
  const previous = proto[ADAPTER] && proto[ADAPTER].handle;
  installServer(server, observerRef);
  if (previous && previous !== handle) previous.shutdown(1000).catch(() => {});
  proto[ADAPTER].handle = handle;
  // Already connected (configured late): later requests of the current connection are seen too.
  try {
    const t = proto._transport;
    if (t && typeof t === 'object' && t[ADAPTER] === undefined) {
      const hooked = hookConnection(proto, t, observerRef, false);
      if (hooked !== t) proto._transport = hooked;
    }
  } catch (e) {
    observerRef.observer.hookError(e);
  }
  return handle;
}

/**
 * Wrap any MCP server transport (stdio, SSE, streamable HTTP, in-memory, your own) for servers
 * that manage their own: connect the server to the returned transport. `options` are those of
 * `configureMCPTelemetry`, or a handle to share its exporter. The handle is `transport.telemetry`
 * of the returned object.
 */
export function createTelemetryAdapter(transport, options = {}) {
  const { handle, observerRef } = pipeline(options, 'mcp-server', 'transport');
  const wrapped = wrapTransport(transport, observerRef);
  try {
    Object.defineProperty(transport, 'telemetry', { value: handle, configurable: true, enumerable: false });
  } catch {
    // a frozen transport: the handle is still returned through `telemetryOf`
  }
  adapterHandles.set(wrapped, handle);
  return wrapped;
}

const adapterHandles = new WeakMap();

/** The handle of a transport returned by `createTelemetryAdapter`. */
export function telemetryOf(transport) {
  return adapterHandles.get(transport) || (transport && transport.telemetry) || null;
}

/**
 * Attach an `exception` event to the span of the request a handler is serving, for errors a
 * handler catches itself (e.g. a low-level `Server` tool that answers `isError`). `extra` is the
 * handler's second argument (1.x `extra`, 2.x `ctx`). Never throws.
 */
export function recordException(error, extra) {
  try {
    const rec = recordOf(extra);
    if (rec !== undefined) rec.recordException(error);
    return rec !== undefined;
  } catch {
    return false;
  }
}

/** What `configureAllMCPFeatures` turned on. More features join here later. */
export class McpFeatures {
  constructor() {
    this.telemetry = null;
    this.auth = null;
    this.bearerAuth = null;
    this.extra = {};
  }
}

/**
 * The single entry point: telemetry plus the server's auth settings (and future features).
 *
 * `telemetry`: true (defaults, environment), false/null (off), or `configureMCPTelemetry`
 * options. `auth`: `{ verifier, requiredScopes?, resourceMetadataUrl? }` with the MCP SDK's own
 * `OAuthTokenVerifier` (`verifyAccessToken(token) -> AuthInfo`); it is kept on the returned
 * features as `auth`, and `bearerAuth` is the options object the SDK's `requireBearerAuth`
 * takes, so the HTTP entry point protects the server with the SDK's own middleware. Telemetry
 * attributes every request to the `authInfo` that middleware produced (never to set-up time).
 */
export function configureAllMCPFeatures(server, { telemetry = true, auth = null } = {}) {
  const features = new McpFeatures();
  if (auth) {
    const verifier = auth.verifier || auth.tokenVerifier;
    if (!verifier || typeof verifier.verifyAccessToken !== 'function') {
      throw new TypeError('@mcp-obs/server: auth.verifier must have verifyAccessToken(token)');
    }
    features.auth = auth;
    features.bearerAuth = {
      verifier,
      ...(auth.requiredScopes ? { requiredScopes: auth.requiredScopes } : {}),
      ...(auth.resourceMetadataUrl ? { resourceMetadataUrl: auth.resourceMetadataUrl } : {}),
    };
  }
  if (telemetry) {
    features.telemetry = configureMCPTelemetry(server, telemetry === true ? {} : telemetry);
  }
  return features;
}
