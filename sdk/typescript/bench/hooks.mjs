#!/usr/bin/env node
// The request path's hooks alone, hot: the `_onrequest` wrapper, the handler wrapper and the
// `send` wrapper around a fake `Protocol` (no MCP library, no zod, no promises), for copies of
// the SDK side by side, so the cost of the hooks' own code (clock reads, the record, its filing)
// can be compared without the ~12 µs of a real call around it. A real call runs them with cold
// caches: expect the paired benchmark's figures to be a few times these.
//
//   node sdk/typescript/bench/hooks.mjs DIR [DIR...]      (each DIR holds a copy's src/index.js)
//
// N requests per variant per round (N, default 20000), ROUNDS rounds (default 80), variants
// interleaved within each round. Prints per variant the median over rounds of its time per
// request minus the first variant's in the same round, and its best round.

import path from 'node:path';
import { pathToFileURL } from 'node:url';

const dirs = process.argv.slice(2);
if (dirs.length === 0) {
  console.error('usage: hooks.mjs DIR [DIR...]');
  process.exit(2);
}
const N = Number(process.env.N || 20000);
const ROUNDS = Number(process.env.ROUNDS || 80);
const mods = await Promise.all(dirs.map((d) => import(pathToFileURL(path.resolve(d, 'src/index.js')).href)));

/** A minimal server with the shape installServer hooks (1.x `Protocol`), and its transport. */
function make(mod) {
  class FakeTransport {
    constructor() {
      this.onmessage = undefined;
      this.last = null;
    }
    async start() {}
    send(msg) {
      this.last = msg;
    }
  }
  class FakeProtocol {
    constructor() {
      this._requestHandlers = new Map();
      this._transport = undefined;
    }
    connect(t) {
      this._transport = t;
    }
    _onrequest(req, extra) {
      return this._requestHandlers.get(req.method)(req, extra);
    }
    _onnotification() {}
    _onclose() {}
    setRequestHandler(method, h) {
      this._requestHandlers.set(method, h);
    }
  }
  const p = new FakeProtocol();
  p.setRequestHandler('tools/call', () => ({ content: [{ type: 'text', text: '1' }] }));
  const handle = mod.configureMCPTelemetry(p, { apiKey: 'bench', endpoint: 'http://127.0.0.1:9' });
  const t = new FakeTransport();
  p.connect(t);
  return { p, t, handle };
}

const variants = mods.map(make);
const diffs = variants.map(() => []);
const best = variants.map(() => Infinity);
for (let r = 0; r < ROUNDS; r++) {
  const ns = [];
  for (let v = 0; v < variants.length; v++) {
    const { p, t } = variants[v];
    const t0 = process.hrtime.bigint();
    for (let i = 0; i < N; i++) {
      const req = { jsonrpc: '2.0', id: i, method: 'tools/call', params: { name: 'echo', arguments: { x: 1 } } };
      const result = p._onrequest(req, { signal: undefined, requestId: i, authInfo: undefined });
      t.send({ jsonrpc: '2.0', id: i, result });
    }
    ns[v] = Number(process.hrtime.bigint() - t0) / N;
    if (r > 0) best[v] = Math.min(best[v], ns[v]);
  }
  if (r > 2) for (let v = 0; v < variants.length; v++) diffs[v].push(ns[v] - ns[0]); // first rounds: warm-up
}
const median = (xs) => xs.sort((a, b) => a - b)[xs.length >> 1];
for (let v = 0; v < variants.length; v++) {
  console.log(`${dirs[v]}: ${median(diffs[v]) >= 0 ? '+' : ''}${median(diffs[v]).toFixed(1)} ns per request vs ${dirs[0]}; best round ${best[v].toFixed(1)} ns`);
}
for (const v of variants) await v.handle.shutdown(10);
