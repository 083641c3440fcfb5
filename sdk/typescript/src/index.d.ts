// Type declarations of @mcp-obs/server (hand-written; the package is plain ESM JavaScript).
// MCP types are structural so the package works with @modelcontextprotocol/sdk 1.x and
// @modelcontextprotocol/server 2.x without depending on either.

/** The verified token of a request, as the MCP SDK's bearer auth produces it (`extra.authInfo`). */
export interface AuthInfoLike {
  token?: string;
  clientId?: string;
  scopes?: string[];
  expiresAt?: number;
  /** `extra.sub` (or `extra.subject`) is the user; without it the client id is. */
  extra?: Record<string, unknown>;
}

/** What an `identify` callback receives for each request. */
export interface RequestInfo {
  method: string;
  params: Record<string, unknown> | undefined;
  /** HTTP request headers (a plain object in 1.x, a `Headers` in 2.x); undefined on stdio. */
  headers: Record<string, string | string[] | undefined> | { get(name: string): string | null } | undefined;
  authInfo: AuthInfoLike | undefined;
  sessionId: string | undefined;
  /** The JSON-RPC request message. */
  raw: unknown;
}

/** A user: `enduser.id`, or an object with `id`, `scopes` and other scalar fields (`enduser.<k>`). */
export type Identity = string | ({ id?: string; scopes?: string[] } & Record<string, unknown>) | null | undefined;

export interface TelemetryOptions {
  /** Appliance API key; default `MCPOBS_API_KEY`. Without a key nothing is sent. */
  apiKey?: string;
  /** Appliance base URL; default `MCPOBS_ENDPOINT`, then `http://127.0.0.1:4318`. */
  endpoint?: string;
  /** `service.name`; default `OTEL_SERVICE_NAME`, then the server's name. */
  serviceName?: string;
  serviceVersion?: string;
  /** Probability (0..1) of keeping an ordinary successful request; errors and slow calls are
   * always kept. Default: the appliance's `sampling_rate` (`GET /v1/config`), else 1. */
  sampling?: number;
  /** Record tool arguments and results (redacted, capped at 4 KiB). Default false. */
  captureArguments?: boolean;
  /** Applied to captured arguments/results after the built-in masking; return null to drop. */
  redact?: (value: unknown) => unknown;
  /** The user of a request; overrides the bearer token's. Runs per request. */
  identify?: (info: RequestInfo) => Identity;
  /** JSON-RPC methods not to record, e.g. `['ping']`. */
  skipMethods?: Iterable<string>;
  /** Log telemetry problems to stderr (never stdout). Default false: silent. */
  debug?: boolean;
}

export interface TelemetryStats {
  integration: string;
  spansRecorded: number;
  spansExported: number;
  spansSampledOut: number;
  spansDropped: number;
  spansDroppedQueueFull: number;
  spansDroppedExport: number;
  queueSize: number;
  failedExports: number;
  exportRetries: number;
  circuitState: 'closed' | 'open' | 'half_open';
  circuitOpens: number;
  samplingRate: number;
  telemetryEnabled: boolean;
  remoteConfig: Record<string, unknown> | null;
  hookErrors: number;
}

export declare class TelemetryHandle {
  private constructor();
  /** `mcp-ts1`, `mcp-ts2` or `transport`. */
  readonly integration: string;
  /** Send every queued span now. Resolves true when the queue was fully exported in time. */
  flush(timeoutMs?: number): Promise<boolean>;
  /** Flush (bounded), then stop recording and stop the timers. */
  shutdown(timeoutMs?: number): Promise<boolean>;
  stats(): TelemetryStats;
}

/** An MCP server: `McpServer` or the low-level `Server` of either SDK line. */
export interface McpServerLike {
  connect(transport: any): Promise<void>;
}

/** An MCP transport (stdio, SSE, streamable HTTP, in-memory, your own). */
export interface TransportLike {
  start(): Promise<void>;
  send(message: any, options?: any): Promise<void>;
  close(): Promise<void>;
  onmessage?: (message: any, extra?: any) => void;
  onclose?: () => void;
  onerror?: (error: Error) => void;
  sessionId?: string;
}

/**
 * Instrument `server` so every incoming JSON-RPC request becomes one span in mcp-obs. Call it
 * before `server.connect(transport)`. Pass the handle of an earlier call as `options` to share
 * one exporter between servers created per session or per request.
 */
export declare function configureMCPTelemetry(server: McpServerLike, options?: TelemetryOptions | TelemetryHandle): TelemetryHandle;

/** Wrap a transport: connect the server to the returned transport. */
export declare function createTelemetryAdapter<T extends TransportLike>(transport: T, options?: TelemetryOptions | TelemetryHandle): T;

/** The handle of a transport returned by `createTelemetryAdapter`. */
export declare function telemetryOf(transport: TransportLike): TelemetryHandle | null;

/** Attach an `exception` event to the span of the request whose handler got `extra` (1.x
 * `extra`, 2.x `ctx`). Returns whether a span was found. Never throws. */
export declare function recordException(error: unknown, extra: unknown): boolean;

/** The MCP SDK's token verifier (`OAuthTokenVerifier`). */
export interface TokenVerifierLike {
  verifyAccessToken(token: string): Promise<AuthInfoLike>;
}

export interface AuthFeature {
  verifier: TokenVerifierLike;
  requiredScopes?: string[];
  resourceMetadataUrl?: string;
}

export declare class McpFeatures {
  telemetry: TelemetryHandle | null;
  auth: AuthFeature | null;
  /** The options of the SDK's `requireBearerAuth` / `verifyBearerToken` for your HTTP entry point. */
  bearerAuth: { verifier: TokenVerifierLike; requiredScopes?: string[]; resourceMetadataUrl?: string } | null;
  extra: Record<string, unknown>;
}

/** Telemetry plus the server's auth settings (and future features) in one call. */
export declare function configureAllMCPFeatures(
  server: McpServerLike,
  features?: { telemetry?: boolean | TelemetryOptions | TelemetryHandle | null; auth?: AuthFeature | null },
): McpFeatures;

export declare const version: string;
