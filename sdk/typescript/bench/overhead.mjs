#!/usr/bin/env node
// Overhead of mcp-obs telemetry on a trivial `tools/call` over the in-memory transport.
//
//   node sdk/typescript/bench/overhead.mjs [--calls 5000] [--rounds 5] [--line ts1|ts2|both]
//
// Four servers per SDK line in one process, measured in interleaved rounds:
//   baseline     stock McpServer
//   baseline2    a second, identical stock McpServer (the noise floor: baseline vs baseline)
//   reachable    + configureMCPTelemetry exporting to the REAL appliance (MCPOBS_BINARY, default
//                target/release/mcp-obs)
//   unreachable  + configureMCPTelemetry pointed at a closed port
// Reports the median per-call latency, the time added at the median, and the process CPU time
// (user + system, all threads: client, server, exporter, gzip, GC) per call of each variant's
// rounds, so work moved off the timed request path (the export of the spans) is counted too. Targets: <= 3% and
// <= 50 us added with the appliance reachable; no added latency while it is unreachable.

import os from 'node:os';
import { parseArgs } from 'node:util';
import { configureMCPTelemetry } from '../src/index.js';
import { Appliance, freePort } from '../test/appliance.mjs';
import { addTool, lib, z } from '../test/lines.mjs';

const { values } = parseArgs({
  options: {
    calls: { type: 'string', default: '5000' },
    rounds: { type: 'string', default: '5' },
    line: { type: 'string', default: 'both' },
  },
});
const CALLS = Number(values.calls);
const ROUNDS = Number(values.rounds);
const LINES = values.line === 'both' ? ['ts1', 'ts2'] : [values.line];

async function makeServer(line) {
  const L = await lib(line);
  const s = new L.McpServer({ name: 'bench', version: '1.0.0' });
  addTool(s, line, 'echo', { x: z.number() }, ({ x }) => ({ content: [{ type: 'text', text: String(x) }] }));
  return s;
}

/** One connected client per server, kept across rounds (as a long-lived session is). */
async function connectClient(line, server) {
  const L = await lib(line);
  const [clientSide, serverSide] = L.InMemoryTransport.createLinkedPair();
  await server.connect(serverSide);
  const client = new L.Client({ name: 'bench-client', version: '1.0.0' });
  await client.connect(clientSide);
  return client;
}

// The in-memory transport is promise-only: a loop of awaited calls never lets the event loop run
// timers or I/O, which a real server does between requests. Yield every YIELD_EVERY calls (not
// timed, the same for every variant) so the exporter can send, as it would in production.
const YIELD_EVERY = 50;
const WARMUP = 300;
const yieldToLoop = () => new Promise((r) => setImmediate(r));

async function measure(client, calls) {
  const out = new Float64Array(calls);
  for (let i = 0; i < WARMUP; i++) await client.callTool({ name: 'echo', arguments: { x: 1 } }); // warm-up
  for (let i = 0; i < calls; i++) {
    if (i % YIELD_EVERY === 0) await yieldToLoop();
    const t = process.hrtime.bigint();
    await client.callTool({ name: 'echo', arguments: { x: 1 } });
    out[i] = Number(process.hrtime.bigint() - t);
  }
  return out;
}

const median = (xs) => {
  const s = Float64Array.from(xs).sort();
  return s[s.length >> 1];
};

const app = await new Appliance().start();
try {
  const [, key] = await app.createServer('bench');
  const closed = `http://127.0.0.1:${await freePort()}`;
  console.log(`load average ${os.loadavg().map((x) => x.toFixed(2)).join(' ')}`);
  console.log(
    `mcp-obs telemetry overhead, tools/call over the in-memory transport, ${ROUNDS} rounds x ${CALLS} calls, ` +
      `node ${process.version}, ${os.cpus().length} cpus`,
  );
  for (const line of LINES) {
    const servers = {
      baseline: await makeServer(line),
      baseline2: await makeServer(line),
      reachable: await makeServer(line),
      unreachable: await makeServer(line),
    };
    const handles = {
      reachable: configureMCPTelemetry(servers.reachable, { apiKey: key, endpoint: app.base }),
      unreachable: configureMCPTelemetry(servers.unreachable, { apiKey: key, endpoint: closed }),
    };
    const clients = {};
    for (const [k, s] of Object.entries(servers)) clients[k] = await connectClient(line, s);
    const samples = { baseline: [], baseline2: [], reachable: [], unreachable: [] };
    const cpu = { baseline: 0, baseline2: 0, reachable: 0, unreachable: 0 };
    // one untimed round each first: JIT warm-up is not counted against whichever variant runs first
    for (const k of Object.keys(servers)) await measure(clients[k], 1000);
    for (let r = 0; r < ROUNDS; r++) {
      const order = r % 2 === 0 ? Object.keys(servers) : Object.keys(servers).reverse();
      for (const k of order) {
        const c0 = process.cpuUsage();
        samples[k].push(...(await measure(clients[k], CALLS)));
        const c = process.cpuUsage(c0);
        cpu[k] += c.user + c.system;
      }
    }
    const c0 = process.cpuUsage();
    await handles.reachable.flush(10000); // what was still queued: its export is counted too
    const c = process.cpuUsage(c0);
    cpu.reachable += c.user + c.system;
    const med = Object.fromEntries(Object.entries(samples).map(([k, v]) => [k, median(v) / 1000]));
    const base = med.baseline;
    const pkg = line === 'ts1' ? '@modelcontextprotocol/sdk 1.x' : '@modelcontextprotocol/server 2.x';
    console.log(`${pkg}:`);
    const perCall = ROUNDS * (CALLS + WARMUP);
    for (const k of Object.keys(servers)) {
      const added = med[k] - base;
      const sign = added >= 0 ? '+' : '';
      console.log(
        `  ${k.padEnd(12)} median ${med[k].toFixed(2).padStart(7)} us   added ${sign}${added.toFixed(2)} us (${sign}${((added / base) * 100).toFixed(1)}%)` +
          `   cpu ${(cpu[k] / perCall).toFixed(2).padStart(6)} us/call`,
      );
    }
    let st = handles.reachable.stats();
    console.log(`  reachable: exported ${st.spansExported} spans, dropped ${st.spansDropped}, circuit ${st.circuitState}`);
    st = handles.unreachable.stats();
    console.log(
      `  unreachable: dropped ${st.spansDropped} spans (queue full), failed exports ${st.failedExports}, circuit ${st.circuitState}`,
    );
    for (const c of Object.values(clients)) await c.close();
    for (const h of Object.values(handles)) await h.shutdown(1000);
  }
} finally {
  await app.stop();
}
