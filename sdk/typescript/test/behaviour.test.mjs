// Sampling, argument capture, attribution via identify, the adapter and shared handles, and
// resilience (appliance answering 503, unreachable, stopped and restarted). In-process servers of
// both SDK lines; the appliance is the real binary except in the 503 test (a local fake).

import assert from 'node:assert/strict';
import http from 'node:http';
import { after, before, describe, test } from 'node:test';
import { configureMCPTelemetry, createTelemetryAdapter, recordException, telemetryOf } from '../src/index.js';
import { EXPORTS_IN_FLIGHT_MAX } from '../src/export.js';
import { Appliance, freePort, newObsServer, sleep } from './appliance.mjs';
import { addTool, buildServer, connect, lib, skipOn } from './lines.mjs';
import * as z from 'zod';

let app;
before(async () => {
  app = await new Appliance().start();
});
after(async () => {
  await app.stop();
});

/** n tools/call over one in-memory session (its own initialize first). */
async function calls(server, flavour, n, { name = 'get_weather', args = { city: 'X' }, latencies } = {}) {
  const conn = await connect({ server }, flavour);
  try {
    for (let i = 0; i < n; i++) {
      const t = performance.now();
      await conn.request('tools/call', { name, arguments: args });
      if (latencies) latencies.push(performance.now() - t);
    }
  } finally {
    await conn.close();
  }
}

async function medianLatency(server, flavour, n = 400) {
  const lat = [];
  await calls(server, flavour, n, { latencies: lat });
  const xs = lat.slice(50).sort((a, b) => a - b);
  return xs[xs.length >> 1];
}

/** Run `fn` with MCPOBS_* settings in the environment (read when telemetry is configured). */
async function withEnv(vars, fn) {
  const old = {};
  for (const [k, v] of Object.entries(vars)) {
    old[k] = process.env[k];
    process.env[k] = v;
  }
  try {
    return await fn();
  } finally {
    for (const [k, v] of Object.entries(old)) {
      if (v === undefined) delete process.env[k];
      else process.env[k] = v;
    }
  }
}

const FAST_BREAKER = {
  MCPOBS_EXPORT_INTERVAL_MS: '50',
  MCPOBS_BATCH_SIZE: '16',
  MCPOBS_BREAKER_THRESHOLD: '2',
  MCPOBS_BREAKER_BASE_MS: '200',
  MCPOBS_BREAKER_MAX_MS: '1500',
  MCPOBS_MAX_RETRIES: '100',
};

for (const flavour of ['ts1', 'ts2']) {
  describe(`behaviour ${flavour}`, { skip: skipOn(flavour) }, () => {
    test('sampling: local rate, errors always kept, probability recorded', async () => {
      const [serverId, key] = await newObsServer(app, `sampling-${flavour}`);
      const server = await buildServer(flavour);
      const h = configureMCPTelemetry(server, { apiKey: key, endpoint: app.base, sampling: 0.25 });
      await calls(server, flavour, 400);
      await calls(server, flavour, 20, { name: 'soft_fail', args: {} });
      assert.ok(await h.flush(10000));
      await h.shutdown();
      const st = h.stats();
      const ok = await app.spans(serverId, { tool: 'get_weather' });
      const errors = await app.spans(serverId, { tool: 'soft_fail' });
      assert.equal(errors.length, 20);
      assert.ok(errors.every((s) => s.sample_probability === 1.0));
      assert.ok(ok.length >= 40 && ok.length <= 170, `${ok.length}`); // binomial(400, 0.25): mean 100, sd 8.7
      assert.ok(ok.every((s) => s.sample_probability === 0.25));
      // + the two `initialize` requests, ordinary successes sampled like the rest
      const seen = st.spansSampledOut + ok.length;
      assert.ok(seen >= 400 && seen <= 402, `${seen}`);
      const weighted = ok.reduce((a, s) => a + 1 / s.sample_probability, 0);
      assert.ok(weighted >= 200 && weighted <= 680, `${weighted}`);
    });

    test('sampling rate from the appliance (GET /v1/config)', async () => {
      const [serverId, key] = await app.createServer(`remote-sampling-${flavour}-${process.pid}`, { sampling_rate: 0.5 });
      const server = await buildServer(flavour);
      const h = configureMCPTelemetry(server, { apiKey: key, endpoint: app.base }); // no local rate
      const deadline = Date.now() + 10000;
      while (h.stats().remoteConfig === null && Date.now() < deadline) await sleep(20);
      assert.equal(h.stats().samplingRate, 0.5);
      await calls(server, flavour, 200);
      assert.ok(await h.flush(10000));
      await h.shutdown();
      const ok = await app.spans(serverId, { tool: 'get_weather' });
      assert.ok(ok.length > 0 && ok.every((s) => s.sample_probability === 0.5));
      assert.ok(ok.length >= 50 && ok.length <= 150, `${ok.length}`);
    });

    test('slow calls are always kept', async () => {
      const [serverId, key] = await newObsServer(app, `slow-${flavour}`);
      const server = await buildServer(flavour);
      addTool(server, flavour, 'slow', {}, async () => {
        await sleep(50);
        return { content: [{ type: 'text', text: 'done' }] };
      });
      const h = await withEnv({ MCPOBS_SLOW_THRESHOLD_MS: '30' }, () =>
        configureMCPTelemetry(server, { apiKey: key, endpoint: app.base, sampling: 0 }),
      );
      await calls(server, flavour, 5, { name: 'slow', args: {} });
      await calls(server, flavour, 20);
      assert.ok(await h.flush(10000));
      await h.shutdown();
      const spans = await app.spans(serverId);
      const slow = spans.filter((s) => s.mcp.tool === 'slow');
      assert.equal(slow.length, 5);
      assert.ok(slow.every((s) => s.sample_probability === 1.0));
      // sampling 0 drops every ordinary success; only a call that itself took >= 30 ms may remain
      assert.ok(spans.every((s) => s.duration_ms >= 30), JSON.stringify(spans.map((s) => [s.name, s.duration_ms])));
    });

    test('bodies without gzip (MCPOBS_COMPRESSION=none, and small batches by default) arrive whole', async () => {
      const [serverId, key] = await newObsServer(app, `identity-${flavour}`);
      const server = await buildServer(flavour);
      const h = await withEnv({ MCPOBS_COMPRESSION: 'none' }, () => configureMCPTelemetry(server, { apiKey: key, endpoint: app.base }));
      await calls(server, flavour, 300); // full batches of 256: ~100 KB bodies, uncompressed
      assert.ok(await h.flush(10000));
      await h.shutdown();
      assert.equal((await app.spans(serverId, { tool: 'get_weather' })).length, 300);
      // default compression: one span is a body under 1 KiB, sent as it is
      const [serverId2, key2] = await newObsServer(app, `small-${flavour}`);
      const server2 = await buildServer(flavour);
      const h2 = configureMCPTelemetry(server2, { apiKey: key2, endpoint: app.base });
      await calls(server2, flavour, 1);
      assert.ok(await h2.flush(10000));
      await h2.shutdown();
      assert.equal(h2.stats().failedExports, 0);
      assert.equal((await app.spans(serverId2, { tool: 'get_weather' })).length, 1);
    });

    test('argument capture with redaction (off by default)', async () => {
      const [serverId, key] = await newObsServer(app, `capture-${flavour}`);
      const server = await buildServer(flavour);
      addTool(server, flavour, 'login', { user: z.string(), password: z.string(), note: z.string() }, ({ user }) => ({
        content: [{ type: 'text', text: `hello ${user}` }],
      }));
      const redact = (v) => (v && typeof v === 'object' && 'note' in v ? { ...v, note: '[user-redacted]' } : v);
      const h = configureMCPTelemetry(server, { apiKey: key, endpoint: app.base, captureArguments: true, redact });
      await calls(server, flavour, 1, { name: 'login', args: { user: 'ada', password: 'hunter2', note: 'x'.repeat(50) } });
      assert.ok(await h.flush(10000));
      await h.shutdown();
      const [span] = await app.spans(serverId, { tool: 'login' });
      const args = span.attributes['gen_ai.tool.call.arguments'];
      assert.ok(!args.includes('hunter2') && args.includes('[REDACTED]') && args.includes('[user-redacted]') && args.includes('ada'), args);
      assert.ok(span.attributes['gen_ai.tool.call.result'].includes('hello ada'));
      const [init] = await app.spans(serverId, { method: 'initialize' });
      assert.ok(!('mcp.request.arguments' in init.attributes));
    });

    test('a tool\'s exception (thrown, or handed to recordException) is its span\'s event, whatever executeToolHandler the server has', async () => {
      // the stock McpServer.executeToolHandler (1.x: known, replaced by the same body with a
      // catch, McpServer's `tools/call` handler left unwrapped; 2.x: wrapped, the handler too),
      // then one this SDK does not know (another version's or a subclass's: wrapped, the handler
      // too)
      for (const custom of [false, true]) {
        const [serverId, key] = await newObsServer(app, `tool-exception-${flavour}-${custom}`);
        const server = await buildServer(flavour);
        if (custom) {
          const orig = server.executeToolHandler;
          server.executeToolHandler = async function executeToolHandler(tool, args, extra) {
            return orig.call(this, tool, args, extra);
          };
        }
        addTool(server, flavour, 'boom', {}, () => {
          throw new TypeError('boom on purpose');
        });
        addTool(server, flavour, 'boom_later', {}, async () => {
          await sleep(1);
          throw new RangeError('later boom on purpose');
        });
        // a tool that answers its own error and hands the exception over with its `extra`
        server.registerTool('caught', { inputSchema: flavour === 'ts2' ? z.object({}) : {} }, async (_args, extra) => {
          const found = recordException(new SyntaxError('caught on purpose'), extra);
          return { content: [{ type: 'text', text: `found ${found}` }], isError: true };
        });
        const h = configureMCPTelemetry(server, { apiKey: key, endpoint: app.base });
        assert.equal(server.executeToolHandler.name, 'executeToolHandler');
        const toolsCall = server.server._requestHandlers.get('tools/call');
        assert.equal(toolsCall[Symbol.for('mcp-obs.adapter')] === true, custom || flavour === 'ts2', `tools/call handler wrapped (custom ${custom})`);
        if (flavour === 'ts2') {
          // the stock 2.x body is recognised: the executor's own promise comes back (an unknown
          // body runs the original, an async function: another promise), and an executor that
          // throws synchronously still gives a rejected promise, as the async original does
          const own = Promise.resolve({ content: [] });
          assert.equal(server.executeToolHandler({ executor: () => own }, {}, {}) === own, !custom, `custom ${custom}`);
          const sync = new Error('sync throw');
          const r = server.executeToolHandler({ executor: () => { throw sync; } }, {}, {});
          assert.ok(r instanceof Promise);
          await assert.rejects(r, (e) => e === sync);
        }
        const conn = await connect({ server }, flavour);
        try {
          const res = await conn.request('tools/call', { name: 'caught', arguments: {} });
          assert.equal(res.content[0].text, 'found true');
          for (const name of ['boom', 'boom_later', 'get_weather']) {
            const res = await conn.request('tools/call', { name, arguments: name === 'get_weather' ? { city: 'X' } : {} });
            assert.equal(res.isError === true, name !== 'get_weather', `${name}: ${JSON.stringify(res)}`);
          }
        } finally {
          await conn.close();
        }
        assert.ok(await h.flush(10000));
        await h.shutdown();
        for (const [name, type, message] of [
          ['boom', 'TypeError', 'boom on purpose'],
          ['boom_later', 'RangeError', 'later boom on purpose'],
          ['caught', 'SyntaxError', 'caught on purpose'],
        ]) {
          const spans = await app.spans(serverId, { tool: name });
          assert.equal(spans.length, 1, `${name} (custom ${custom})`);
          assert.equal(spans[0].mcp.error_type, 'tool_error');
          const events = spans[0].events.filter((e) => e.name === 'exception');
          assert.equal(events.length, 1, `${name} (custom ${custom}): ${JSON.stringify(spans[0].events)}`);
          assert.ok(JSON.stringify(events[0]).includes(type), JSON.stringify(events[0]));
          assert.ok(JSON.stringify(events[0]).includes(message), JSON.stringify(events[0]));
        }
        const [ok] = await app.spans(serverId, { tool: 'get_weather' });
        assert.deepEqual(ok.events, []);
      }
    });

    test('every request is a span whatever connect the server has (stock: seen by the transport\'s onmessage, no _onrequest wrapper)', async () => {
      // the stock connect (1.x and 2.x: a body this SDK knows, which calls the transport's own
      // onmessage first), then one this SDK does not know (another version's or a subclass's):
      // requests are then seen by an `_onrequest` wrapper, as before
      for (const custom of [false, true]) {
        const [serverId, key] = await newObsServer(app, `connect-${flavour}-${custom}`);
        const server = await buildServer(flavour);
        const proto = server.server; // McpServer's low-level Server
        if (custom) {
          const orig = proto.connect;
          proto.connect = async function connect(transport) {
            return orig.call(this, transport);
          };
        }
        addTool(server, flavour, 'slow', {}, async () => {
          await sleep(400);
          return { content: [{ type: 'text', text: 'late' }] };
        });
        const h = configureMCPTelemetry(server, { apiKey: key, endpoint: app.base });
        const conn = await connect({ server }, flavour);
        try {
          await conn.request('tools/call', { name: 'get_weather', arguments: { city: 'X' } });
          await assert.rejects(conn.request('no/such/method'), (e) => e.code === -32601);
          await conn.request('ping');
          // cancelled by the client: notifications/cancelled ends the span
          const ac = new AbortController();
          const pending = conn.client.request({ method: 'tools/call', params: { name: 'slow', arguments: {} } }, z.object({}).passthrough(), {
            signal: ac.signal,
          });
          await sleep(50);
          ac.abort('changed my mind');
          await assert.rejects(pending);
          await sleep(450); // the handler finishes; nothing is answered for a cancelled request
          // ended by the notification, not by the connection closing below
          assert.equal(h.stats().spansRecorded, 5, `custom ${custom}`);
        } finally {
          await conn.close();
        }
        // which hook saw the requests
        assert.equal(Object.hasOwn(proto, '_onrequest'), custom, `custom ${custom}`);
        assert.ok(await h.flush(10000));
        await h.shutdown();
        assert.equal(h.stats().hookErrors, 0);
        const all = await app.spans(serverId);
        assert.equal(all.length, 5, `custom ${custom}: ${all.map((s) => s.name).join(', ')}`);
        assert.equal((await app.spans(serverId, { method: 'initialize' })).length, 1);
        assert.equal((await app.spans(serverId, { method: 'ping' })).length, 1);
        const [weather] = await app.spans(serverId, { tool: 'get_weather' });
        assert.equal(weather.mcp.error_type, null, JSON.stringify(weather.mcp));
        const [unknown] = await app.spans(serverId, { method: 'no/such/method' });
        assert.equal(unknown.mcp.error_type, '-32601');
        const [slow] = await app.spans(serverId, { tool: 'slow' });
        assert.equal(slow.mcp.error_type, 'cancelled');
      }
    });

    test('identify callback per request; hook errors never reach the server; skipMethods', async () => {
      const [serverId, key] = await newObsServer(app, `identify-${flavour}`);
      const server = await buildServer(flavour);
      let n = 0;
      const identify = (info) => {
        n += 1;
        if (n % 2 === 0) throw new Error('identify bug');
        assert.equal(typeof info.method, 'string');
        return { id: 'bob@example.com', scopes: ['a', 'b'], tenant: 'acme' };
      };
      const h = configureMCPTelemetry(server, { apiKey: key, endpoint: app.base, identify, skipMethods: ['ping'] });
      const conn = await connect({ server }, flavour);
      for (let i = 0; i < 4; i++) await conn.request('tools/call', { name: 'get_weather', arguments: { city: 'X' } });
      await conn.request('ping');
      await conn.close();
      assert.ok(await h.flush(10000));
      await h.shutdown();
      assert.ok(h.stats().hookErrors >= 2);
      const bob = await app.spans(serverId, { user: 'bob@example.com' });
      assert.ok(bob.length >= 2);
      assert.equal(bob[0].attributes['enduser.scope'], 'a b');
      assert.equal(bob[0].attributes['enduser.tenant'], 'acme');
      assert.equal((await app.spans(serverId, { method: 'ping' })).length, 0);
      assert.equal((await app.spans(serverId)).length, 5); // initialize + 4 calls
    });

    test('createTelemetryAdapter wraps a transport; a handle is shared by servers per session', async () => {
      const [serverId, key] = await newObsServer(app, `adapter-${flavour}`);
      const L = await lib(flavour);
      const server = await buildServer(flavour); // not configured: the transport carries telemetry
      const [clientSide, serverSide] = L.InMemoryTransport.createLinkedPair();
      const wrapped = createTelemetryAdapter(serverSide, { apiKey: key, endpoint: app.base, serviceName: 'adapted' });
      const h = telemetryOf(wrapped);
      assert.ok(h);
      await server.connect(wrapped);
      const client = new L.Client({ name: 'adapter-client', version: '2' });
      await client.connect(clientSide);
      await client.callTool({ name: 'get_weather', arguments: { city: 'Rome' } });
      await client.close();
      // a second server (a new session) reuses the handle: one exporter, one set of stats
      const server2 = await buildServer(flavour);
      assert.equal(configureMCPTelemetry(server2, h), h);
      await calls(server2, flavour, 2);
      assert.ok(await h.flush(10000));
      await h.shutdown();
      const spans = await app.spans(serverId);
      assert.equal(spans.length, 2 + 3, spans.map((s) => s.name).join(','));
      assert.ok(spans.every((s) => s.service_name === 'adapted'));
      assert.equal(h.stats().spansExported, 5);
    });
  });
}

describe('export resilience', () => {
  test('appliance answers 503 + Retry-After: server keeps its speed, circuit opens then closes', async () => {
    const baseline = await medianLatency(await buildServer('ts1'), 'ts1');
    const fake = await fakeCollector('1');
    try {
      const server = await buildServer('ts1');
      const h = await withEnv(FAST_BREAKER, () => configureMCPTelemetry(server, { apiKey: 'mcpobs_live_test', endpoint: fake.url }));
      const lat = await medianLatency(server, 'ts1');
      await sleep(2500);
      let st = h.stats();
      assert.ok(st.failedExports >= 2 && st.circuitOpens >= 1, JSON.stringify(st));
      assert.ok(['open', 'half_open'].includes(st.circuitState), JSON.stringify(st));
      // Retry-After: 1 is honoured: no two attempts closer than the jittered floor once it was
      // seen (the first EXPORTS_IN_FLIGHT_MAX attempts may go together: nothing was answered yet;
      // after a failure the exporter sends one batch at a time)
      const gaps = fake.hits.slice(1).map((t, i) => t.at - fake.hits[i].at).slice(EXPORTS_IN_FLIGHT_MAX - 1);
      assert.ok(gaps.length && Math.min(...gaps) >= 450, JSON.stringify(gaps));
      assert.ok(lat < baseline * 3 + 2, `${lat} vs ${baseline}`); // keeps answering at normal speed
      fake.mode = '200';
      const deadline = Date.now() + 10000;
      while (Date.now() < deadline && (h.stats().circuitState !== 'closed' || h.stats().queueSize)) await sleep(100);
      assert.ok(await h.flush(5000));
      st = h.stats();
      assert.equal(st.circuitState, 'closed');
      assert.ok(st.spansExported > 0, JSON.stringify(st));
      assert.equal(st.spansExported + st.spansDropped, st.spansRecorded, JSON.stringify(st));
      assert.ok(fake.hits.some((hit) => hit.auth === 'Bearer mcpobs_live_test' && hit.gzip));
      await h.shutdown();
    } finally {
      await fake.close();
    }
  });

  test('appliance unreachable: no added latency, bounded queue, bounded shutdown', async () => {
    const line = skipOn('ts2') ? 'ts1' : 'ts2'; // 2.x needs Node 20
    const baseline = await medianLatency(await buildServer(line), line);
    const server = await buildServer(line);
    const port = await freePort();
    const h = await withEnv({ ...FAST_BREAKER, MCPOBS_QUEUE_MAX: '50' }, () =>
      configureMCPTelemetry(server, { apiKey: 'mcpobs_live_x', endpoint: `http://127.0.0.1:${port}` }),
    );
    const lat = await medianLatency(server, line);
    await sleep(300);
    const st = h.stats();
    assert.ok(lat < baseline * 3 + 2, `${lat} vs ${baseline}`);
    assert.ok(st.queueSize <= 50 + 16 && st.spansDroppedQueueFull > 0, JSON.stringify(st));
    assert.ok(st.circuitOpens >= 1, JSON.stringify(st));
    const t = Date.now();
    await h.shutdown(1000); // bounded even when the appliance is gone
    assert.ok(Date.now() - t < 2000);
  });

  test('appliance stopped and restarted: spans recorded meanwhile arrive', async () => {
    const port = await freePort();
    const own = await new Appliance(undefined, `127.0.0.1:${port}`).start();
    try {
      const [serverId, key] = await own.createServer('restart');
      const server = await buildServer('ts1');
      const h = await withEnv(FAST_BREAKER, () => configureMCPTelemetry(server, { apiKey: key, endpoint: own.base }));
      await calls(server, 'ts1', 5);
      assert.ok(await h.flush(10000));
      await own.stop();
      await calls(server, 'ts1', 50);
      await sleep(1000);
      assert.ok(h.stats().circuitOpens >= 1, JSON.stringify(h.stats()));
      await own.start();
      await calls(server, 'ts1', 5);
      const deadline = Date.now() + 15000;
      while (Date.now() < deadline && (h.stats().circuitState !== 'closed' || h.stats().queueSize)) await sleep(100);
      assert.ok(await h.flush(10000), JSON.stringify(h.stats()));
      const spans = await own.spans(serverId);
      assert.ok(spans.length >= 10 + 3, `${spans.length}`);
      await h.shutdown();
    } finally {
      await own.stop();
    }
  });

  test('no API key: nothing sent, nothing thrown, server unchanged', async () => {
    const server = await buildServer('ts1');
    const h = await withEnv({ MCPOBS_API_KEY: '' }, () => configureMCPTelemetry(server, {}));
    await calls(server, 'ts1', 3);
    assert.ok(await h.flush(1000));
    const st = h.stats();
    assert.equal(st.spansRecorded, 4);
    assert.equal(st.spansExported, 0);
    assert.equal(st.spansDroppedExport, 4);
    await h.shutdown();
  });
});

/** A local OTLP endpoint that answers 503 + Retry-After until told to recover. */
async function fakeCollector(retryAfter) {
  const fake = { mode: '503', hits: [] };
  const srv = http.createServer((req, res) => {
    const chunks = [];
    req.on('data', (c) => chunks.push(c));
    req.on('end', () => {
      if (req.method === 'GET') {
        res.writeHead(200, { 'content-type': 'application/json' });
        res.end(JSON.stringify({ telemetry_enabled: true, sampling_rate: 1.0, refresh_interval_secs: 60 }));
        return;
      }
      fake.hits.push({ at: performance.now(), mode: fake.mode, auth: req.headers.authorization, gzip: req.headers['content-encoding'] === 'gzip' });
      if (fake.mode === '503') res.writeHead(503, { 'retry-after': retryAfter, 'content-length': 0 });
      else res.writeHead(200, { 'content-type': 'application/x-protobuf', 'content-length': 0 });
      res.end();
    });
  });
  await new Promise((r) => srv.listen(0, '127.0.0.1', r));
  fake.url = `http://127.0.0.1:${srv.address().port}`;
  fake.close = () =>
    new Promise((r) => {
      srv.closeAllConnections();
      srv.close(r);
    });
  return fake;
}
