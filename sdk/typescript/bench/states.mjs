#!/usr/bin/env node
// One server's calls over time, in blocks: is the per-call time one distribution, or does the
// process move between states? A stock (or instrumented) server, a trivial `tools/call` over the
// in-memory transport as in paired.mjs, no other variant in the process.
//
//   node sdk/typescript/bench/states.mjs [--line ts1|ts2] [--instrument] [--blocks 50] [--block 1000]
//
// Per block: the median call, wall and process CPU (user, system) per call, the main thread's GC
// pauses per call and the GC kinds seen (1 scavenge, 4 mark-compact, 8 weak callbacks), minor
// page faults and context switches (voluntary: waits, e.g. for GC helper threads; involuntary:
// preempted), and the time of a fixed pure-CPU loop run after the block: if the loop's time holds
// while the median moves, the CPU was not slower (frequency, steal), the calls did more or
// slower (memory-bound) work.

import { PerformanceObserver } from 'node:perf_hooks';
import { parseArgs } from 'node:util';
import { configureMCPTelemetry } from '../src/index.js';
import { freePort } from '../test/appliance.mjs';
import { addTool, lib, z } from '../test/lines.mjs';

const { values } = parseArgs({
  options: {
    line: { type: 'string', default: 'ts2' },
    instrument: { type: 'boolean', default: false },
    blocks: { type: 'string', default: '50' },
    block: { type: 'string', default: '1000' },
  },
});
const line = values.line;
const BLOCK = Number(values.block);
const L = await lib(line);
const server = new L.McpServer({ name: 'bench', version: '1.0.0' });
addTool(server, line, 'echo', { x: z.number() }, ({ x }) => ({ content: [{ type: 'text', text: String(x) }] }));
const handle = values.instrument ? configureMCPTelemetry(server, { apiKey: 'bench', endpoint: `http://127.0.0.1:${await freePort()}` }) : null;
const [clientSide, serverSide] = L.InMemoryTransport.createLinkedPair();
await server.connect(serverSide);
const client = new L.Client({ name: 'bench-client', version: '1.0.0' });
await client.connect(clientSide);
const args = { name: 'echo', arguments: { x: 1 } };

let gcs = [];
new PerformanceObserver((list) => {
  for (const e of list.getEntries()) gcs.push(e);
}).observe({ entryTypes: ['gc'] });

// a fixed integer loop: no allocation, no memory traffic
function spin(n) {
  let x = 0;
  for (let i = 0; i < n; i++) x = (x * 31 + i) | 0;
  return x;
}
let sink = 0;
for (let i = 0; i < 20; i++) sink += spin(1e6);

const times = new Float64Array(BLOCK);
console.log(`${line}${values.instrument ? ' instrumented' : ' stock'}; node ${process.version}; blocks of ${BLOCK} calls`);
for (let b = 0; b < Number(values.blocks); b++) {
  gcs = [];
  const r0 = process.resourceUsage();
  const t0 = performance.now();
  for (let i = 0; i < BLOCK; i++) {
    if (i % 50 === 0) await new Promise((r) => setImmediate(r));
    const t = process.hrtime.bigint();
    await client.callTool(args);
    times[i] = Number(process.hrtime.bigint() - t);
  }
  const wallUs = (performance.now() - t0) * 1000;
  const r1 = process.resourceUsage();
  const s0 = process.hrtime.bigint();
  sink += spin(1e6);
  const spinMs = Number(process.hrtime.bigint() - s0) / 1e6;
  await new Promise((r) => setImmediate(r)); // GC entries are delivered asynchronously
  const med = Float64Array.from(times).sort()[BLOCK >> 1] / 1000;
  const gcUs = gcs.reduce((a, e) => a + e.duration, 0) * 1000;
  console.log(
    `block ${String(b).padStart(3)}: median ${med.toFixed(2)} us; per call wall ${(wallUs / BLOCK).toFixed(1)}, ` +
      `cpu user ${((r1.userCPUTime - r0.userCPUTime) / BLOCK).toFixed(1)} sys ${((r1.systemCPUTime - r0.systemCPUTime) / BLOCK).toFixed(1)}, ` +
      `gc ${(gcUs / BLOCK).toFixed(1)} us [${gcs.map((e) => e.detail.kind).join('')}]; ` +
      `faults ${r1.minorPageFault - r0.minorPageFault}, csw ${r1.voluntaryContextSwitches - r0.voluntaryContextSwitches}/${r1.involuntaryContextSwitches - r0.involuntaryContextSwitches}; spin ${spinMs.toFixed(2)} ms`,
  );
}
if (sink === 0.5) console.log(sink); // keep the loop's result alive
await client.close();
if (handle) await handle.shutdown(100);
process.exit(0);
