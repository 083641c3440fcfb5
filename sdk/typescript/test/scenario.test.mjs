// The shared conformance scenario for every server flavour (lines.mjs) over stdio, streamable HTTP
// and in-process, against the real appliance; user attribution with the SDK's bearer auth; stdout
// staying clean on stdio.

import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import net from 'node:net';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { configureMCPTelemetry } from '../src/index.js';
import { Appliance, freePort, newObsServer, sleep } from './appliance.mjs';
import { FLAVOURS, buildServer, connect, scenarioVariant, skipOn } from './lines.mjs';
import { N_STEPS, SCENARIO, checkOutcomes, checkSpans, runSteps } from './scenario.mjs';

const HERE = path.dirname(fileURLToPath(import.meta.url));
const SERVER = path.join(HERE, 'scenario-server.mjs');

let app;
before(async () => {
  app = await new Appliance().start();
});
after(async () => {
  await app.stop();
});

/** The scenario as a stateless streamable HTTP server can meet it: the same steps and spans,
 * but the client's name only on `initialize` and no session id (checked by the test). */
const STATELESS = {
  ...SCENARIO,
  steps: SCENARIO.steps.map((step) =>
    step.request.method === 'initialize'
      ? step
      : {
          ...step,
          expect_span: {
            ...step.expect_span,
            mcp_present: (step.expect_span.mcp_present || []).filter((k) => k !== 'client_name' && k !== 'client_version'),
          },
        },
  ),
  transports: { ...SCENARIO.transports, stateless: { mcp_expect: { transport: 'tcp' } } },
};

function serverEnv(key, extra = {}) {
  return { ...process.env, MCPOBS_API_KEY: key, MCPOBS_ENDPOINT: app.base, MCPOBS_EXPORT_INTERVAL_MS: '200', ...extra };
}

async function runScenario(target, flavour) {
  const conn = await connect(target, flavour);
  try {
    return await runSteps(conn);
  } finally {
    await conn.close();
  }
}

async function startHttpServer(flavour, key, extra = {}, mode = 'http') {
  const port = await freePort();
  const proc = spawn(process.execPath, [SERVER, flavour, mode, String(port)], {
    env: serverEnv(key, extra),
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const out = [];
  const err = [];
  proc.stdout.on('data', (c) => out.push(c));
  proc.stderr.on('data', (c) => err.push(c));
  const deadline = Date.now() + 20000;
  while (Date.now() < deadline) {
    if (proc.exitCode !== null) throw new Error(`http server exited: ${Buffer.concat(err)}`);
    const ok = await new Promise((resolve) => {
      const s = net.connect(port, '127.0.0.1', () => {
        s.destroy();
        resolve(true);
      });
      s.on('error', () => resolve(false));
    });
    if (ok) {
      return {
        port,
        proc,
        stderr: () => Buffer.concat(err).toString('utf8'),
        stop: async () => {
          const done = new Promise((r) => (proc.exitCode !== null ? r() : proc.once('exit', r)));
          proc.kill('SIGTERM');
          await done;
        },
      };
    }
    await sleep(100);
  }
  proc.kill('SIGKILL');
  throw new Error('http server did not start');
}

for (const flavour of FLAVOURS) {
  describe(`scenario ${flavour}`, { skip: skipOn(flavour) }, () => {
    test('stdio (spans flushed at exit)', async () => {
      const [serverId, key] = await newObsServer(app, `stdio-${flavour}`);
      // no export tick during the session: the spans arrive through the flush at exit (the client
      // ends the server by closing stdin, then SIGTERM)
      const env = serverEnv(key, { MCPOBS_EXPORT_INTERVAL_MS: '600000' });
      const target = { command: process.execPath, args: [SERVER, flavour, 'stdio'], env };
      checkOutcomes(await runScenario(target, flavour));
      const spans = await app.waitSpans(serverId, N_STEPS);
      checkSpans(spans, 'stdio', { variant: scenarioVariant(flavour) });
    });

    test('streamable HTTP', async () => {
      const [serverId, key] = await newObsServer(app, `http-${flavour}`);
      const srv = await startHttpServer(flavour, key);
      let outcomes;
      try {
        outcomes = await runScenario({ url: `http://127.0.0.1:${srv.port}/mcp` }, flavour);
      } finally {
        await srv.stop();
      }
      checkOutcomes(outcomes);
      const spans = await app.waitSpans(serverId, N_STEPS);
      checkSpans(spans, 'streamable_http', { variant: scenarioVariant(flavour) });
      const sessions = new Set(spans.filter((s) => s.mcp.method !== 'initialize').map((s) => s.mcp.session_id));
      assert.equal(sessions.size, 1, [...sessions].join(','));
    });

    test('streamable HTTP, transports wrapped with createTelemetryAdapter (+ server hooks): one span each', async () => {
      const [serverId, key] = await newObsServer(app, `adapter-${flavour}`);
      const srv = await startHttpServer(flavour, key, { SCENARIO_ADAPTER: '1' });
      let outcomes;
      try {
        outcomes = await runScenario({ url: `http://127.0.0.1:${srv.port}/mcp` }, flavour);
      } finally {
        await srv.stop();
      }
      checkOutcomes(outcomes);
      const spans = await app.waitSpans(serverId, N_STEPS);
      checkSpans(spans, 'streamable_http', { variant: scenarioVariant(flavour) });
    });

    test('streamable HTTP, stateless (sessionIdGenerator: undefined, a server per request)', async () => {
      const [serverId, key] = await newObsServer(app, `stateless-${flavour}`);
      const srv = await startHttpServer(flavour, key, {}, 'http-stateless');
      let outcomes;
      try {
        outcomes = await runScenario({ url: `http://127.0.0.1:${srv.port}/mcp` }, flavour);
      } finally {
        await srv.stop();
      }
      checkOutcomes(outcomes);
      const spans = await app.waitSpans(serverId, N_STEPS);
      // without sessions every request after `initialize` reaches a fresh server that never saw
      // the client's name, and there is no session id: the rest of each span is the scenario's
      checkSpans(spans, 'stateless', { scenario: STATELESS, variant: scenarioVariant(flavour) });
      for (const s of spans) assert.equal(s.mcp.session_id ?? null, null, `${s.name}: session id without sessions`);
    });

    if (flavour.startsWith('ts1')) {
      // 2.x ships no SSE server transport (its client still speaks SSE)
      test('SSE (SSEServerTransport, SSEClientTransport)', async () => {
        const [serverId, key] = await newObsServer(app, `sse-${flavour}`);
        const srv = await startHttpServer(flavour, key, {}, 'sse');
        let outcomes;
        try {
          outcomes = await runScenario({ sse: `http://127.0.0.1:${srv.port}/sse` }, flavour);
        } finally {
          await srv.stop();
        }
        checkOutcomes(outcomes);
        const spans = await app.waitSpans(serverId, N_STEPS);
        checkSpans(spans, 'sse', { variant: scenarioVariant(flavour) });
        const sessions = new Set(spans.filter((s) => s.mcp.method !== 'initialize').map((s) => s.mcp.session_id));
        assert.equal(sessions.size, 1, [...sessions].join(','));
      });
    }

    test('in-process (in-memory transport)', async () => {
      const [serverId, key] = await newObsServer(app, `mem-${flavour}`);
      const server = await buildServer(flavour);
      const h = configureMCPTelemetry(server, { apiKey: key, endpoint: app.base });
      checkOutcomes(await runScenario({ server }, flavour));
      assert.ok(await h.flush(10000), JSON.stringify(h.stats()));
      await h.shutdown();
      const spans = await app.waitSpans(serverId, N_STEPS);
      // in-memory links are pipe-like JSON-RPC; the transport check is the stdio one
      checkSpans(spans, 'stdio', { variant: scenarioVariant(flavour) });
      assert.equal(h.stats().spansExported, N_STEPS);
      assert.equal(h.stats().hookErrors, 0);
    });

    test('user attribution with the SDK bearer auth', async () => {
      const [serverId, key] = await newObsServer(app, `auth-${flavour}`);
      const srv = await startHttpServer(flavour, key, { SCENARIO_AUTH: '1', SCENARIO_DEBUG: '1' });
      const tokens = SCENARIO.auth.tokens;
      try {
        for (const t of tokens) {
          const conn = await connect(
            { url: `http://127.0.0.1:${srv.port}/mcp`, headers: { Authorization: `Bearer ${t.token}` } },
            flavour,
          );
          await conn.request('tools/call', { name: 'get_weather', arguments: { city: t.token } });
          await conn.close();
        }
        // without a token the SDK's own middleware refuses the request: no span, no session
        await assert.rejects(connect({ url: `http://127.0.0.1:${srv.port}/mcp` }, flavour));
      } finally {
        await srv.stop();
      }
      const calls = await app.waitSpans(serverId, tokens.length, { method: 'tools/call' });
      assert.equal(calls.length, tokens.length, srv.stderr().slice(-3000));
      for (const t of tokens) {
        const mine = await app.spans(serverId, { user: t.expect_user_id });
        assert.deepEqual(new Set(mine.map((s) => s.mcp.method)), new Set(['initialize', 'tools/call']));
        const call = mine.find((s) => s.mcp.method === 'tools/call');
        assert.equal(call.attributes['enduser.scope'], t.scopes.join(' '));
        assert.equal(call.attributes['mcp.auth.client_id'], t.client_id);
      }
      assert.equal((await app.spans(serverId)).length, tokens.length * 2);
    });

    test('stdout stays clean on stdio (debug on, appliance refusing the key)', async () => {
      const env = serverEnv('mcpobs_live_wrongkeywrongkey', { SCENARIO_DEBUG: '1' });
      const proc = spawn(process.execPath, [SERVER, flavour, 'stdio'], { env, stdio: ['pipe', 'pipe', 'pipe'] });
      let out = '';
      let err = '';
      proc.stdout.on('data', (c) => (out += c));
      proc.stderr.on('data', (c) => (err += c));
      const lines = () => out.split('\n').filter((l) => l.trim());
      const waitLines = async (n) => {
        const deadline = Date.now() + 15000;
        while (lines().length < n && Date.now() < deadline) await sleep(20);
      };
      const msgs = [
        { jsonrpc: '2.0', id: 1, method: 'initialize', params: { protocolVersion: '2025-06-18', capabilities: {}, clientInfo: { name: 'raw', version: '1' } } },
        { jsonrpc: '2.0', method: 'notifications/initialized' },
        { jsonrpc: '2.0', id: 2, method: 'tools/call', params: { name: 'get_weather', arguments: { city: 'X' } } },
        { jsonrpc: '2.0', id: 3, method: 'tools/call', params: { name: 'fail_tool', arguments: {} } },
        { jsonrpc: '2.0', id: 4, method: 'nope/nope' },
      ];
      proc.stdin.write(`${JSON.stringify(msgs[0])}\n`);
      await waitLines(1);
      proc.stdin.write(msgs.slice(1).map((m) => `${JSON.stringify(m)}\n`).join(''));
      await waitLines(4);
      await sleep(1500); // let the exporter try (401) and log on stderr
      const exited = new Promise((r) => proc.once('exit', r));
      proc.stdin.end();
      proc.kill('SIGTERM');
      await exited;
      const got = lines();
      assert.equal(got.length, 4, got.join('\n'));
      for (const l of got) {
        const msg = JSON.parse(l);
        assert.equal(msg.jsonrpc, '2.0');
        assert.ok([1, 2, 3, 4].includes(msg.id), l);
      }
      assert.match(err, /\[mcp-obs\]/); // debug logging went to stderr
      assert.match(err, /rejected with 401/);
    });
  });
}
