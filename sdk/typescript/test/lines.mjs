// The MCP library flavours the tests run against, behind one small interface.
//
// A *line* is one major version of the official TypeScript MCP SDK: `ts1` is
// `@modelcontextprotocol/sdk` 1.x, `ts2` is `@modelcontextprotocol/server` + `/client` 2.x (both
// installed side by side). A *flavour* is a server class of a line: `McpServer` (`ts1`, `ts2`) or
// the low-level `Server` (`ts1-lowlevel`, `ts2-lowlevel`). Every flavour builds the conformance
// server of scenario.json; `connect()` reaches it in-process, over stdio or streamable HTTP with
// the line's own client and sends raw JSON-RPC requests (one step = one request).

import * as z from 'zod';

export { z }; // the harness's zod (test/node_modules), for the benchmarks
import { recordException } from '../src/index.js';
import { SCENARIO } from './scenario.mjs';

export const FLAVOURS = ['ts1', 'ts1-lowlevel', 'ts2', 'ts2-lowlevel'];
export const lineOf = (flavour) => (flavour.startsWith('ts2') ? 'ts2' : 'ts1');

export const NODE_MAJOR = Number(process.versions.node.split('.')[0]);
/** `skip` option for the tests of `flavour` (a line or flavour): the 2.x packages declare
 * `engines: node >= 20`, so on Node 18 only the 1.x line runs. */
export const skipOn = (flavour) =>
  lineOf(flavour) === 'ts2' && NODE_MAJOR < 20 ? `@modelcontextprotocol/server 2.x needs Node 20 (running ${process.version})` : false;

/** Key into scenario.json `library_variants` (none needed so far for the TypeScript SDK). */
export function scenarioVariant(_flavour) {
  return null;
}

export class RpcError extends Error {
  constructor(code, message) {
    super(`${code}: ${message}`);
    this.code = code;
  }
}

async function sdk(line) {
  if (line === 'ts1') {
    const [server, mcp, types, inMemory, client, stdio, http, sse] = await Promise.all([
      import('@modelcontextprotocol/sdk/server/index.js'),
      import('@modelcontextprotocol/sdk/server/mcp.js'),
      import('@modelcontextprotocol/sdk/types.js'),
      import('@modelcontextprotocol/sdk/inMemory.js'),
      import('@modelcontextprotocol/sdk/client/index.js'),
      import('@modelcontextprotocol/sdk/client/stdio.js'),
      import('@modelcontextprotocol/sdk/client/streamableHttp.js'),
      import('@modelcontextprotocol/sdk/client/sse.js'),
    ]);
    return {
      Server: server.Server,
      McpServer: mcp.McpServer,
      InMemoryTransport: inMemory.InMemoryTransport,
      Client: client.Client,
      StdioClientTransport: stdio.StdioClientTransport,
      StreamableHTTPClientTransport: http.StreamableHTTPClientTransport,
      SSEClientTransport: sse.SSEClientTransport,
      McpError: types.McpError,
      notFound: (uri) => new types.McpError(-32002, `Resource not found: ${uri}`),
      invalidParams: (msg) => new types.McpError(types.ErrorCode.InvalidParams, msg),
      method: (schemaName, name) => types[schemaName] ?? name,
    };
  }
  const [server, client, stdio] = await Promise.all([
    import('@modelcontextprotocol/server'),
    import('@modelcontextprotocol/client'),
    import('@modelcontextprotocol/client/stdio'),
  ]);
  return {
    Server: server.Server,
    McpServer: server.McpServer,
    InMemoryTransport: server.InMemoryTransport,
    Client: client.Client,
    StdioClientTransport: stdio.StdioClientTransport,
    StreamableHTTPClientTransport: client.StreamableHTTPClientTransport,
    SSEClientTransport: client.SSEClientTransport,
    McpError: server.ProtocolError,
    notFound: (uri) => new server.ResourceNotFoundError(uri),
    invalidParams: (msg) => new server.ProtocolError(server.ProtocolErrorCode.InvalidParams, msg),
    method: (_schemaName, name) => name, // 2.x: handlers are keyed by method string
  };
}

const libs = {};
export async function lib(line) {
  libs[line] ??= await sdk(line);
  return libs[line];
}

// ------------------------------------------------------------------------------------- clients
const AnyResult = z.object({}).passthrough();

/** Target: { server } in-process | { command, args, env } stdio | { url, headers } streamable
 * HTTP | { sse: url } SSE.
 * Returns { request(method, params) -> result (throws RpcError), close() }; initialize done. */
export async function connect(target, flavour, clientInfo = { name: 'conformance-client', version: '1.0.0' }) {
  const L = await lib(lineOf(flavour));
  const client = new L.Client(clientInfo, { capabilities: {} });
  let transport;
  if (target.server) {
    const [clientSide, serverSide] = L.InMemoryTransport.createLinkedPair();
    await target.server.connect(serverSide);
    transport = clientSide;
  } else if (target.command) {
    transport = new L.StdioClientTransport({ command: target.command, args: target.args, env: target.env, stderr: 'pipe' });
  } else if (target.sse) {
    transport = new L.SSEClientTransport(new URL(target.sse));
  } else {
    transport = new L.StreamableHTTPClientTransport(new URL(target.url), { requestInit: { headers: target.headers || {} } });
  }
  await client.connect(transport);
  const stderr = transport.stderr;
  const errChunks = [];
  if (stderr) stderr.on('data', (c) => errChunks.push(c));
  return {
    client,
    stderr: () => Buffer.concat(errChunks).toString('utf8'),
    async request(method, params) {
      try {
        return await client.request(params === undefined ? { method } : { method, params }, AnyResult);
      } catch (e) {
        if (e && Number.isSafeInteger(e.code)) throw new RpcError(e.code, e.message);
        throw e;
      }
    },
    close: () => client.close(),
  };
}

// ------------------------------------------------------------------------------------- servers
/** The conformance server of `flavour` (scenario.json `server`). */
export async function buildServer(flavour, spec = SCENARIO.server) {
  const L = await lib(lineOf(flavour));
  if (flavour.endsWith('-lowlevel')) return buildLowLevel(L, spec);
  const v2 = lineOf(flavour) === 'ts2';
  const server = new L.McpServer({ name: spec.name, version: '1.0.0' });
  for (const tool of spec.tools) {
    const shape = Object.fromEntries(Object.keys(tool.input).map((k) => [k, z.string()]));
    addTool(server, flavour, tool.name, shape, toolFn(tool));
  }
  for (const res of spec.resources) {
    server.registerResource(res.uri, res.uri, {}, async (uri) => ({ contents: [{ uri: uri.href, text: res.text }] }));
  }
  for (const p of spec.prompts) {
    const shape = Object.fromEntries(p.arguments.map((a) => [a, z.string()]));
    server.registerPrompt(p.name, { argsSchema: v2 ? z.object(shape) : shape }, (args) => ({
      messages: [{ role: 'user', content: { type: 'text', text: fill(p.text, args) } }],
    }));
  }
  return server;
}

/** Register a tool on an McpServer of either line (`shape`: zod fields of the input). */
export function addTool(server, flavour, name, shape, fn) {
  const inputSchema = lineOf(flavour) === 'ts2' ? z.object(shape) : shape;
  server.registerTool(name, { inputSchema }, async (args) => fn(args));
}

const fill = (text, args) => text.replace(/\{(\w+)\}/g, (_, k) => String((args || {})[k]));

function toolFn(tool) {
  if (tool.behavior === 'ok') return (args) => ({ content: [{ type: 'text', text: fill(tool.result_text, args) }] });
  if (tool.behavior === 'is_error') return () => ({ content: [{ type: 'text', text: tool.result_text }], isError: true });
  return () => {
    throw new Error(tool.error_message);
  };
}

/** The conformance server on the low-level `Server` (handlers by hand, as its docs show). A tool
 * that throws is answered as an `isError` result by the handler itself (the low-level Server has
 * no tool layer to do it), which hands the exception to the span with `recordException`. */
function buildLowLevel(L, spec) {
  const server = new L.Server(
    { name: spec.name, version: '1.0.0' },
    { capabilities: { tools: {}, resources: {}, prompts: {} } },
  );
  const tools = new Map(spec.tools.map((t) => [t.name, t]));
  const on = (schemaName, method, fn) => server.setRequestHandler(L.method(schemaName, method), fn);
  on('ListToolsRequestSchema', 'tools/list', () => ({
    tools: spec.tools.map((t) => ({
      name: t.name,
      inputSchema: { type: 'object', properties: Object.fromEntries(Object.entries(t.input).map(([k, v]) => [k, { type: v }])) },
    })),
  }));
  on('CallToolRequestSchema', 'tools/call', async (request, extra) => {
    const tool = tools.get(request.params.name);
    if (!tool) throw L.invalidParams(`Unknown tool: ${request.params.name}`);
    try {
      return toolFn(tool)(request.params.arguments || {});
    } catch (err) {
      recordException(err, extra);
      return { content: [{ type: 'text', text: String(err.message) }], isError: true };
    }
  });
  on('ListResourcesRequestSchema', 'resources/list', () => ({
    resources: spec.resources.map((r) => ({ uri: r.uri, name: r.uri })),
  }));
  on('ReadResourceRequestSchema', 'resources/read', (request) => {
    const r = spec.resources.find((x) => x.uri === request.params.uri);
    if (!r) throw L.notFound(request.params.uri);
    return { contents: [{ uri: r.uri, text: r.text }] };
  });
  on('ListPromptsRequestSchema', 'prompts/list', () => ({
    prompts: spec.prompts.map((p) => ({ name: p.name, arguments: p.arguments.map((a) => ({ name: a })) })),
  }));
  on('GetPromptRequestSchema', 'prompts/get', (request) => {
    const p = spec.prompts.find((x) => x.name === request.params.name);
    if (!p) throw L.invalidParams(`Unknown prompt: ${request.params.name}`);
    return { messages: [{ role: 'user', content: { type: 'text', text: fill(p.text, request.params.arguments) } }] };
  });
  return server;
}
