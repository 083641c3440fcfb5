#!/usr/bin/env node
// What one server variant costs the garbage collector per call, in figures that do not depend on
// a quiet machine: one variant per process (so no other variant's garbage is collected on its
// time), a trivial `tools/call` over the in-memory transport, as in paired.mjs.
//
//   node sdk/typescript/bench/gc.mjs [--line ts1|ts2] [--variant baseline|unreachable] [--calls 20000] [--sdk DIR]
//
// Prints, per call: bytes allocated (V8's sampling heap profiler, every object), bytes that
// outlived at least one scavenge (the same profiler, objects freed by a scavenge left out: what
// the scavenger copies and promotes, and the old generation later collects), the share of both
// allocated by this SDK's own functions (src/, their own frames, callees not included), the number of scavenges and mark-compacts and
// their main-thread pause total (PerformanceObserver 'gc'; the pause time depends on the machine,
// the counts and bytes do not), and the live heap after a full GC at the start and the end
// (--expose-gc is not needed: the profiler's own collection is used). `unreachable`: the
// instrumented server with the appliance a closed port, as in paired.mjs. Needs Node 20 or newer
// (node:inspector/promises; the 2.x line needs Node 20 anyway).

import path from 'node:path';
import { Session } from 'node:inspector/promises';
import { PerformanceObserver } from 'node:perf_hooks';
import { pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';
import { configureMCPTelemetry } from '../src/index.js';
import { freePort } from '../test/appliance.mjs';
import { addTool, lib, z } from '../test/lines.mjs';

const { values } = parseArgs({
  options: {
    line: { type: 'string', default: 'ts2' },
    variant: { type: 'string', default: 'baseline' },
    calls: { type: 'string', default: '20000' },
    sdk: { type: 'string' },
  },
});
const line = values.line;
const CALLS = Number(values.calls);
const SAMPLING_INTERVAL_BYTES = 512;
const configure = values.sdk
  ? (await import(pathToFileURL(path.resolve(values.sdk, 'src/index.js')).href)).configureMCPTelemetry
  : configureMCPTelemetry;
const ownDir = values.sdk ? path.resolve(values.sdk, 'src') : path.resolve(import.meta.dirname ?? path.dirname(new URL(import.meta.url).pathname), '../src');

const L = await lib(line);
const server = new L.McpServer({ name: 'bench', version: '1.0.0' });
addTool(server, line, 'echo', { x: z.number() }, ({ x }) => ({ content: [{ type: 'text', text: String(x) }] }));
const handle = values.variant === 'unreachable' ? configure(server, { apiKey: 'bench', endpoint: `http://127.0.0.1:${await freePort()}` }) : null;
const [clientSide, serverSide] = L.InMemoryTransport.createLinkedPair();
await server.connect(serverSide);
const client = new L.Client({ name: 'bench-client', version: '1.0.0' });
await client.connect(clientSide);
const args = { name: 'echo', arguments: { x: 1 } };

async function calls(n) {
  for (let i = 0; i < n; i++) {
    if (i % 50 === 0) await new Promise((r) => setImmediate(r)); // as paired.mjs: the loop yields every 50 calls
    await client.callTool(args);
  }
}

const session = new Session();
session.connect();
await session.post('HeapProfiler.enable');
const liveHeapBytes = async () => {
  await session.post('HeapProfiler.collectGarbage');
  return process.memoryUsage().heapUsed;
};

await calls(10000); // warm-up
const heapStart = await liveHeapBytes();

// pass 1: GC events, no profiler running
const gcs = [];
const obs = new PerformanceObserver((list) => {
  for (const e of list.getEntries()) gcs.push(e);
});
obs.observe({ entryTypes: ['gc'] });
await calls(CALLS);
await new Promise((r) => setImmediate(r));
obs.disconnect();
const MINOR = 1; // perf_hooks.constants.NODE_PERFORMANCE_GC_MINOR
const MAJOR = 4; // NODE_PERFORMANCE_GC_MAJOR
const count = (k) => gcs.filter((e) => e.detail.kind === k).length;
const pauseUs = gcs.reduce((a, e) => a + e.duration, 0) * 1000;

// passes 2 and 3: sampled allocation, all objects / those that outlived a scavenge
async function sampled(includeMinor) {
  await session.post('HeapProfiler.startSampling', {
    samplingInterval: SAMPLING_INTERVAL_BYTES,
    includeObjectsCollectedByMajorGC: true,
    includeObjectsCollectedByMinorGC: includeMinor,
  });
  await calls(CALLS);
  const { profile } = await session.post('HeapProfiler.stopSampling');
  let total = 0;
  let own = 0;
  (function walk(node) {
    total += node.selfSize;
    if (node.callFrame.url.includes(ownDir)) own += node.selfSize; // the SDK's functions themselves
    for (const c of node.children) walk(c);
  })(profile.head);
  return { total: total / CALLS, own: own / CALLS };
}
const all = await sampled(true);
const survived = await sampled(false);
const heapEnd = await liveHeapBytes();

console.log(
  `${line} ${values.variant}${values.sdk ? ` (sdk ${values.sdk})` : ''}, ${CALLS} calls per pass, node ${process.version}: ` +
    `allocated ${all.total.toFixed(0)} B/call (SDK frames ${all.own.toFixed(0)}), ` +
    `outlived a scavenge ${survived.total.toFixed(0)} B/call (SDK frames ${survived.own.toFixed(0)}), ` +
    `per 10,000 calls ${((count(MINOR) * 10000) / CALLS).toFixed(1)} scavenges + ${((count(MAJOR) * 10000) / CALLS).toFixed(1)} mark-compacts, ` +
    `GC pauses ${(pauseUs / CALLS).toFixed(2)} us/call; live heap ${(heapStart / 1e6).toFixed(1)} -> ${(heapEnd / 1e6).toFixed(1)} MB`,
);
await client.close();
if (handle) await handle.shutdown(100);
process.exit(0);
