#!/usr/bin/env node
// The request path's cost, paired: a stock server and instrumented servers of one SDK line in one
// process, their calls interleaved in blocks of 50 (the order rotating every block), so the
// drift of a loaded machine (other processes, frequency, GC phases) falls on all variants alike.
//
//   node sdk/typescript/bench/paired.mjs [--line ts1|ts2] [--calls 100000] [--reps 3] [--reachable [--no-unreachable]] [--against DIR]... [--sdk DIR] [--window 10]
//
// Variants: baseline (stock), baseline2 (a second stock server: the noise floor), unreachable
// (instrumented, the appliance a closed port: the request path alone, nothing is encoded or sent)
// and, with --reachable, reachable (instrumented, exporting to the REAL appliance, MCPOBS_BINARY:
// the request path plus the export running between the calls). Prints the median per call and
// the difference to baseline, per repetition, and the reachable server's export counters.
// --against DIR adds `against`: the same as unreachable, instrumented by the copy of the SDK in
// DIR (its src/index.js, e.g. a checkout of an older commit), for a before/after comparison
// inside one process. Repeat it for more copies (`against2`, `against3`, ...): two copies of the
// same commit show the floor between identical instrumented servers. With --reachable, each
// --against copy also gets a server exporting to the same appliance (`reachable-against`,
// `reachable-against2`, ...): before and after with export running, side by side.
// --sdk DIR instruments `unreachable` and `reachable` with the copy in DIR instead of this one:
// runs alternating with and without it compare two copies in separate processes, where each
// process holds one SDK copy only (with two copies in one process the MCP library's own call
// sites see both copies' hooks, which can flatter or penalise either).
//
// Besides the median of each repetition's calls, every line also prints `windowed`: the calls
// are cut into windows of --window rotations (default 10: 500 calls per variant, tens of ms),
// each variant's median taken per window and compared with the baseline's of the SAME window,
// and the median of those per-window differences (and ratios) reported. Why: a 2.x call's time
// is not one distribution over a repetition. The process switches, for 0.05-1 s at a time, between
// a fast state (~24 us per call) and slow ones (~40 and ~60 us: every function and the GC slower
// alike, no deoptimization, a pure-CPU loop timed alongside unchanged), so a repetition's calls
// are a mixture of modes, and when the median of the mixture falls between two modes a few
// tenths of a percent more slow-mode calls in one variant move its median by microseconds. The
// windows are short against those states, so every window compares the variants in one state,
// and the median over windows does not depend on how much of the repetition each state took.
// It is also split into fast and slow windows (the baseline within 1.25 times the fastest tenth
// of the repetition's windows, or not): where there were enough slow windows to tell, the share
// added was about the same in both, the difference in us was not. (The whole-repetition medians
// are still printed; the ratio is the one to read against a % target, the difference against an
// absolute one.) See docs/benchmarks.md, "Issue 5, 2.x: why its overhead reads unsteady".

import os from 'node:os';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';
import { configureMCPTelemetry } from '../src/index.js';
import { Appliance, freePort } from '../test/appliance.mjs';
import { addTool, lib, z } from '../test/lines.mjs';

const { values } = parseArgs({
  options: {
    calls: { type: 'string', default: '100000' },
    reps: { type: 'string', default: '3' },
    line: { type: 'string', default: 'ts1' },
    reachable: { type: 'boolean', default: false },
    against: { type: 'string', multiple: true },
    sdk: { type: 'string' },
    window: { type: 'string', default: '10' },
    'no-unreachable': { type: 'boolean', default: false },
  },
});
const CALLS = Number(values.calls);
const REPS = Number(values.reps);
const line = values.line;
const BLOCK = 50;
const WINDOW_CALLS = Number(values.window) * BLOCK; // calls per variant in one window

async function makeClient(instrument, endpoint, extraOpts = {}, apiKey = 'bench', configure = configureMCPTelemetry) {
  const L = await lib(line);
  const s = new L.McpServer({ name: 'bench', version: '1.0.0' });
  addTool(s, line, 'echo', { x: z.number() }, ({ x }) => ({ content: [{ type: 'text', text: String(x) }] }));
  const handle = instrument ? configure(s, { apiKey, endpoint, ...extraOpts }) : null;
  const [clientSide, serverSide] = L.InMemoryTransport.createLinkedPair();
  await s.connect(serverSide);
  const client = new L.Client({ name: 'bench-client', version: '1.0.0' });
  await client.connect(clientSide);
  return { client, handle };
}

const own = values.sdk ? (await import(pathToFileURL(path.resolve(values.sdk, 'src/index.js')).href)).configureMCPTelemetry : configureMCPTelemetry;
const closed = `http://127.0.0.1:${await freePort()}`;
const app = values.reachable ? await new Appliance().start() : null;
const variants = {
  baseline: await makeClient(false),
  baseline2: await makeClient(false),
};
// --no-unreachable (with --reachable): the exporting server is the process's only instrumented
// one, as in a deployment of one server per process. Two instrumented servers in one process
// make the SDK's own call sites see two sessions' hooks and read ~1.5 points higher each.
if (!(values['no-unreachable'] && values.reachable)) {
  variants.unreachable = await makeClient(true, closed, {}, 'bench', own);
}
const others = [];
for (const [i, dir] of (values.against || []).entries()) {
  const other = await import(pathToFileURL(path.resolve(dir, 'src/index.js')).href);
  const name = i === 0 ? 'against' : `against${i + 1}`;
  others.push([name, other]);
  variants[name] = await makeClient(true, closed, {}, 'bench', other.configureMCPTelemetry);
}
if (app !== null) {
  const [, key] = await app.createServer('bench');
  variants.reachable = await makeClient(true, app.base, {}, key, own);
  for (const [name, other] of others) {
    const [, otherKey] = await app.createServer(`bench-${name}`);
    variants[`reachable-${name}`] = await makeClient(true, app.base, {}, otherKey, other.configureMCPTelemetry);
  }
}
const names = Object.keys(variants);
const args = { name: 'echo', arguments: { x: 1 } };
console.log(`load average ${os.loadavg().map((x) => x.toFixed(2)).join(' ')}; node ${process.version}; ${line}; ${CALLS} calls per variant, blocks of ${BLOCK}${values.sdk ? `; sdk ${values.sdk}` : ''}`);
for (let rep = 0; rep <= REPS; rep++) {
  const samples = Object.fromEntries(names.map((k) => [k, new Float64Array(CALLS)]));
  const n = rep === 0 ? Math.min(CALLS, 20000) : CALLS; // rep 0: warm-up, not printed
  for (let b = 0; b < n / BLOCK; b++) {
    await new Promise((r) => setImmediate(r));
    for (let j = 0; j < names.length; j++) {
      const k = names[(b + j) % names.length];
      const { client } = variants[k];
      const out = samples[k];
      for (let i = b * BLOCK; i < (b + 1) * BLOCK; i++) {
        const t = process.hrtime.bigint();
        await client.callTool(args);
        out[i] = Number(process.hrtime.bigint() - t);
      }
    }
  }
  if (rep === 0) continue;
  const med = Object.fromEntries(names.map((k) => [k, median(samples[k].subarray(0, n)) / 1000]));
  const base = med.baseline;
  const parts = names.map((k) => {
    const d = med[k] - base;
    return `${k} ${med[k].toFixed(3)} us (${d >= 0 ? '+' : ''}${d.toFixed(3)} us, ${d >= 0 ? '+' : ''}${((d / base) * 100).toFixed(2)}%)`;
  });
  console.log(`rep ${rep}: ${parts.join('  ')}  load ${os.loadavg()[0].toFixed(2)}`);
  const win = windowed(samples, n);
  const wparts = names.filter((k) => k !== 'baseline').map((k) => {
    const { d, r, fast, slow, nFast, nSlow } = win[k];
    const pct = (x) => (Number.isNaN(x) ? '-' : `${x >= 0 ? '+' : ''}${(x * 100).toFixed(2)}%`);
    return `${k} ${d >= 0 ? '+' : ''}${d.toFixed(3)} us (${pct(r)}; fast windows ${nFast}: ${pct(fast)}, slow ${nSlow}: ${pct(slow)})`;
  });
  console.log(`  windowed (${win.count} windows of ${WINDOW_CALLS} calls, baseline ${win.baseline.lo.toFixed(1)}-${win.baseline.hi.toFixed(1)} us, median ${win.baseline.med.toFixed(3)} us): ${wparts.join('  ')}`);
}
for (const k of names.filter((n) => n.startsWith('reachable'))) {
  const h = variants[k].handle;
  await h.flush(10000);
  const st = h.stats();
  console.log(`${k}: recorded ${st.spansRecorded}, exported ${st.spansExported}, dropped ${st.spansDropped} (queue full ${st.spansDroppedQueueFull})`);
}
for (const v of Object.values(variants)) {
  await v.client.close();
  if (v.handle) await v.handle.shutdown(100);
}
if (app !== null) await app.stop();

function median(xs) {
  const s = Float64Array.from(xs).sort();
  return s[s.length >> 1];
}

/** Per window of WINDOW_CALLS consecutive calls per variant (the same rotations for all): each
 * variant's median minus the baseline's of that window (d, us) and over it (r), the median of
 * each over the windows, and of r over the fast and the slow windows; and the range of the
 * baseline's window medians. */
function windowed(samples, n) {
  const count = Math.max(1, Math.floor(n / WINDOW_CALLS));
  const len = Math.floor(n / count);
  const baseMed = new Float64Array(count);
  for (let w = 0; w < count; w++) baseMed[w] = median(samples.baseline.subarray(w * len, (w + 1) * len)) / 1000;
  const out = { count, baseline: { lo: Math.min(...baseMed), hi: Math.max(...baseMed), med: median(baseMed) } };
  // the windows split by the baseline's state: fast (baseline median within 1.25 times the
  // repetition's fastest tenth of windows) or slow; the share added should not depend on it
  const fastMax = Float64Array.from(baseMed).sort()[Math.floor(count / 10)] * 1.25;
  for (const k of Object.keys(samples)) {
    if (k === 'baseline') continue;
    const d = new Float64Array(count);
    const r = new Float64Array(count);
    for (let w = 0; w < count; w++) {
      const m = median(samples[k].subarray(w * len, (w + 1) * len)) / 1000;
      d[w] = m - baseMed[w];
      r[w] = d[w] / baseMed[w];
    }
    const rf = r.filter((_, w) => baseMed[w] <= fastMax);
    const rs = r.filter((_, w) => baseMed[w] > fastMax);
    out[k] = { d: median(d), r: median(r), fast: rf.length ? median(rf) : NaN, slow: rs.length ? median(rs) : NaN, nFast: rf.length, nSlow: rs.length };
  }
  return out;
}
