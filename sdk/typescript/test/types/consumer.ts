// Compiled (never run) by types.test.mjs: the declarations fit real code of both SDK lines.
import { McpServer as McpServer1 } from '@modelcontextprotocol/sdk/server/mcp.js';
import { Server as Server1 } from '@modelcontextprotocol/sdk/server/index.js';
import { StdioServerTransport } from '@modelcontextprotocol/sdk/server/stdio.js';
import { McpServer as McpServer2, InMemoryTransport } from '@modelcontextprotocol/server';
import {
  configureAllMCPFeatures,
  configureMCPTelemetry,
  createTelemetryAdapter,
  recordException,
  telemetryOf,
  type TelemetryHandle,
  type TelemetryStats,
} from '@mcp-obs/server';

const s1 = new McpServer1({ name: 'a', version: '1' });
const handle: TelemetryHandle = configureMCPTelemetry(s1, {
  apiKey: 'mcpobs_live_x',
  endpoint: 'http://127.0.0.1:4318',
  serviceName: 'svc',
  serviceVersion: '1.0.0',
  sampling: 0.5,
  captureArguments: true,
  redact: (v) => v,
  identify: (info) => (info.authInfo?.clientId ? { id: info.authInfo.clientId, scopes: ['a'], tenant: 't' } : info.method),
  skipMethods: ['ping'],
  debug: false,
});
configureMCPTelemetry(new Server1({ name: 'b', version: '1' }, { capabilities: {} }), handle);
configureMCPTelemetry(new McpServer2({ name: 'c', version: '1' }));
const stats: TelemetryStats = handle.stats();
const open: boolean = stats.circuitState === 'open';
const t: StdioServerTransport = createTelemetryAdapter(new StdioServerTransport(), handle);
const [, serverSide] = InMemoryTransport.createLinkedPair();
const t2: InMemoryTransport = createTelemetryAdapter(serverSide, { apiKey: 'k' });
telemetryOf(t2)?.flush(1000);
const features = configureAllMCPFeatures(s1, {
  telemetry: { debug: true },
  auth: { verifier: { verifyAccessToken: async (token) => ({ token, clientId: 'c', scopes: [], extra: { sub: 'u' } }) } },
});
const ok: Promise<boolean> = features.telemetry!.shutdown(500);
recordException(new Error('x'), {});
export { open, t, ok };
