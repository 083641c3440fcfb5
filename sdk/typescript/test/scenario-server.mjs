// The conformance server as a process: `node scenario-server.mjs FLAVOUR MODE [PORT]`.
//
// FLAVOUR: ts1 | ts1-lowlevel | ts2 | ts2-lowlevel (lines.mjs).
// MODE: stdio | http (streamable HTTP at /mcp, one session = one server + transport, as the SDK
// docs show; 1.x on Express with the SDK's `createMcpExpressApp`, 2.x on node:http with
// `NodeStreamableHTTPServerTransport`) | http-stateless (streamable HTTP without sessions,
// `sessionIdGenerator: undefined`: a new server + transport per HTTP request, as the SDK docs
// show) | sse (1.x only: the SDK's `SSEServerTransport`, GET /sse + POST /messages; 2.x ships
// no SSE server transport).
// Telemetry settings come from the environment (MCPOBS_API_KEY, MCPOBS_ENDPOINT, MCPOBS_*).
// SCENARIO_AUTH=1 turns on the MCP SDK's own bearer-token auth with the tokens of scenario.json.
// SCENARIO_DEBUG=1 passes debug: true (telemetry logs go to stderr, never stdout).
// SCENARIO_ADAPTER=1 (http): each session's transport is wrapped with createTelemetryAdapter
// (the first session's handle is shared by the others); the servers are configured with that
// handle too, so exceptions inside them are seen, and each request must still be one span.
// Prints nothing on stdout except what the MCP transport writes.

import { randomUUID, webcrypto } from 'node:crypto';
import http from 'node:http';
import { configureAllMCPFeatures, configureMCPTelemetry, createTelemetryAdapter, telemetryOf } from '../src/index.js';
import { buildServer, lineOf } from './lines.mjs';
import { SCENARIO } from './scenario.mjs';

// @modelcontextprotocol/sdk 1.x's streamable HTTP server calls the global `crypto` (Node 19 and
// newer; Node 18 has it only with --experimental-global-webcrypto): on Node 18 the application
// provides it, as here.
if (globalThis.crypto === undefined) globalThis.crypto = webcrypto;

const [flavour, mode, portArg] = process.argv.slice(2);
const line = lineOf(flavour);
const telemetryOptions = { debug: process.env.SCENARIO_DEBUG === '1', serviceVersion: 'test' };

/** The MCP SDK's token verifier interface (`verifyAccessToken(token) -> AuthInfo`). */
const verifier = {
  async verifyAccessToken(token) {
    const t = SCENARIO.auth.tokens.find((x) => x.token === token);
    if (!t) {
      if (line === 'ts1') {
        const { InvalidTokenError } = await import('@modelcontextprotocol/sdk/server/auth/errors.js');
        throw new InvalidTokenError('unknown token');
      }
      const { OAuthError, OAuthErrorCode } = await import('@modelcontextprotocol/server');
      throw new OAuthError(OAuthErrorCode.InvalidToken, 'unknown token');
    }
    return {
      token,
      clientId: t.client_id,
      scopes: t.scopes,
      expiresAt: Math.floor(Date.now() / 1000) + 3600,
      ...(t.subject ? { extra: { sub: t.subject } } : {}),
    };
  },
};
const auth = process.env.SCENARIO_AUTH === '1' ? { verifier } : null;

let shared = null; // the first session's handle; later sessions share its exporter
let bearerAuth = null;
const useAdapter = process.env.SCENARIO_ADAPTER === '1';
async function newServer() {
  const server = await buildServer(flavour);
  if (useAdapter) {
    configureMCPTelemetry(server, shared); // the adapter's handle: hooks only, requests are the adapter's
    return server;
  }
  if (shared === null) {
    const features = configureAllMCPFeatures(server, { telemetry: telemetryOptions, auth });
    shared = features.telemetry;
    bearerAuth = features.bearerAuth;
  } else {
    configureMCPTelemetry(server, shared);
  }
  return server;
}

/** The transport the server connects to: itself, or (SCENARIO_ADAPTER) its telemetry adapter. */
function hook(transport) {
  if (!useAdapter) return transport;
  const wrapped = createTelemetryAdapter(transport, shared ?? telemetryOptions);
  shared ??= telemetryOf(wrapped);
  return wrapped;
}

async function stdio() {
  if (line === 'ts1') {
    const { StdioServerTransport } = await import('@modelcontextprotocol/sdk/server/stdio.js');
    const server = await newServer();
    await server.connect(new StdioServerTransport());
  } else {
    const { serveStdio } = await import('@modelcontextprotocol/server/stdio');
    const first = await newServer();
    let used = false;
    serveStdio(async () => {
      if (!used) {
        used = true;
        return first;
      }
      return newServer();
    });
  }
}

async function http1(port) {
  const { StreamableHTTPServerTransport } = await import('@modelcontextprotocol/sdk/server/streamableHttp.js');
  const { createMcpExpressApp } = await import('@modelcontextprotocol/sdk/server/express.js');
  const { requireBearerAuth } = await import('@modelcontextprotocol/sdk/server/auth/middleware/bearerAuth.js');
  const { isInitializeRequest } = await import('@modelcontextprotocol/sdk/types.js');
  if (!useAdapter) await newServer().then((s) => pool.push(s)); // set-up (and bearerAuth) before the first request
  const app = createMcpExpressApp();
  const transports = new Map();
  const guard = auth ? [requireBearerAuth(bearerAuth)] : [];
  app.all('/mcp', ...guard, async (req, res) => {
    const sid = req.headers['mcp-session-id'];
    let transport = sid ? transports.get(sid) : undefined;
    if (!transport) {
      if (req.method !== 'POST' || !isInitializeRequest(req.body)) {
        res.status(400).json({ jsonrpc: '2.0', error: { code: -32000, message: 'No valid session' }, id: null });
        return;
      }
      transport = new StreamableHTTPServerTransport({
        sessionIdGenerator: randomUUID,
        onsessioninitialized: (id) => transports.set(id, transport),
      });
      const hooked = hook(transport);
      const server = pool.pop() || (await newServer());
      await server.connect(hooked);
    }
    await transport.handleRequest(req, res, req.body);
  });
  app.listen(port, '127.0.0.1');
}
const pool = [];

async function http2(port) {
  const { NodeStreamableHTTPServerTransport } = await import('@modelcontextprotocol/node');
  const { isInitializeRequest, verifyBearerToken, bearerAuthChallengeResponse } = await import('@modelcontextprotocol/server');
  if (!useAdapter) await newServer().then((s) => pool.push(s));
  const transports = new Map();
  const readBody = (req) =>
    new Promise((resolve, reject) => {
      const chunks = [];
      req.on('data', (c) => chunks.push(c));
      req.on('end', () => resolve(chunks.length ? JSON.parse(Buffer.concat(chunks).toString('utf8')) : undefined));
      req.on('error', reject);
    });
  http
    .createServer(async (req, res) => {
      try {
        if (!req.url.startsWith('/mcp')) {
          res.writeHead(404).end();
          return;
        }
        if (auth) {
          try {
            req.auth = await verifyBearerToken(req.headers.authorization, bearerAuth); // the SDK's own check
          } catch (err) {
            const r = bearerAuthChallengeResponse(err);
            res.writeHead(r.status, Object.fromEntries(r.headers)).end(await r.text());
            return;
          }
        }
        const body = req.method === 'POST' ? await readBody(req) : undefined;
        const sid = req.headers['mcp-session-id'];
        let transport = sid ? transports.get(sid) : undefined;
        if (!transport) {
          if (req.method !== 'POST' || !isInitializeRequest(body)) {
            res.writeHead(400, { 'content-type': 'application/json' });
            res.end(JSON.stringify({ jsonrpc: '2.0', error: { code: -32000, message: 'No valid session' }, id: null }));
            return;
          }
          transport = new NodeStreamableHTTPServerTransport({
            sessionIdGenerator: randomUUID,
            onsessioninitialized: (id) => transports.set(id, transport),
          });
          const hooked = hook(transport);
          const server = pool.pop() || (await newServer());
          await server.connect(hooked);
        }
        await transport.handleRequest(req, res, body);
      } catch (err) {
        process.stderr.write(`scenario-server: ${err && err.stack}\n`);
        if (!res.headersSent) res.writeHead(500).end();
      }
    })
    .listen(port, '127.0.0.1');
}

/** Streamable HTTP without sessions: every POST gets its own server and transport. */
async function httpStateless(port) {
  const Transport =
    line === 'ts1'
      ? (await import('@modelcontextprotocol/sdk/server/streamableHttp.js')).StreamableHTTPServerTransport
      : (await import('@modelcontextprotocol/node')).NodeStreamableHTTPServerTransport;
  const readBody = (req) =>
    new Promise((resolve, reject) => {
      const chunks = [];
      req.on('data', (c) => chunks.push(c));
      req.on('end', () => resolve(chunks.length ? JSON.parse(Buffer.concat(chunks).toString('utf8')) : undefined));
      req.on('error', reject);
    });
  http
    .createServer(async (req, res) => {
      try {
        if (!req.url.startsWith('/mcp') || req.method !== 'POST') {
          res.writeHead(405, { 'content-type': 'application/json' });
          res.end(JSON.stringify({ jsonrpc: '2.0', error: { code: -32000, message: 'Method not allowed.' }, id: null }));
          return;
        }
        const body = await readBody(req);
        const server = await newServer();
        const transport = new Transport({ sessionIdGenerator: undefined });
        res.on('close', () => {
          transport.close();
          server.close();
        });
        await server.connect(hook(transport));
        await transport.handleRequest(req, res, body);
      } catch (err) {
        process.stderr.write(`scenario-server: ${err && err.stack}\n`);
        if (!res.headersSent) res.writeHead(500).end();
      }
    })
    .listen(port, '127.0.0.1');
}

/** 1.x SSE: one GET /sse stream per session, its messages POSTed to /messages?sessionId=. */
async function sse1(port) {
  const { SSEServerTransport } = await import('@modelcontextprotocol/sdk/server/sse.js');
  const { createMcpExpressApp } = await import('@modelcontextprotocol/sdk/server/express.js');
  const app = createMcpExpressApp();
  const transports = new Map();
  app.get('/sse', async (req, res) => {
    const transport = new SSEServerTransport('/messages', res);
    transports.set(transport.sessionId, transport);
    res.on('close', () => transports.delete(transport.sessionId));
    const server = await newServer();
    await server.connect(hook(transport));
  });
  app.post('/messages', async (req, res) => {
    const transport = transports.get(String(req.query.sessionId));
    if (!transport) {
      res.status(400).send('No transport found for sessionId');
      return;
    }
    await transport.handlePostMessage(req, res, req.body);
  });
  app.listen(port, '127.0.0.1');
}

if (mode === 'stdio') await stdio();
else if (mode === 'sse') await sse1(Number(portArg));
else if (mode === 'http-stateless') await httpStateless(Number(portArg));
else if (line === 'ts1') await http1(Number(portArg));
else await http2(Number(portArg));
