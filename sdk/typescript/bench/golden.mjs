// Dump every span the appliance would receive for the conformance scenario plus extras: the
// OTLP protobuf bodies as sent (before gzip), decoded field by field in wire order, with the
// random ids, times and session ids normalized. Diff the output before/after a change.
import { configureMCPTelemetry } from '../src/index.js';
import { FLAVOURS, buildServer, connect } from '../test/lines.mjs';
import { runSteps } from '../test/scenario.mjs';
import { decode, spansOf } from '../test/otlp-decode.mjs';

const PROPAGATED_TRACE = '0af7651916cd43dd8448eb211c80319c';
const now = BigInt(Date.now()) * 1000000n;
const okTime = (v) => typeof v === 'string' && Math.abs(Number(BigInt(v.slice(0, -1)) - now)) < 120e9;
function normalize(fields, ctx) {
  return fields.map(([name, value]) => {
    if (name === 'trace_id') return [name, value === PROPAGATED_TRACE ? value : /^[0-9a-f]{32}$/.test(value) && !/^0+$/.test(value) ? '<random>' : `BAD ${value}`];
    if (name === 'span_id') return [name, /^[0-9a-f]{16}$/.test(value) && !/^0+$/.test(value) ? '<random>' : `BAD ${value}`];
    if (name.endsWith('time_unix_nano')) {
      ctx.times.push(value);
      return [name, okTime(value) ? '<time>' : `BAD ${value}`];
    }
    if (name === 'key') ctx.key = value;
    if (name === 'string_value' && ctx.key === 'mcp.session.id') return [name, '<sid>'];
    if (name === 'string_value' && ctx.key === 'exception.stacktrace') return [name, value.split('\n')[0]];
    return [name, Array.isArray(value) ? normalize(value, ctx) : value];
  });
}

const out = [];
for (const flavour of FLAVOURS) {
  for (const variant of ['plain', 'capture']) {
    const server = await buildServer(flavour);
    const opts = { apiKey: 'k', endpoint: 'http://127.0.0.1:9' };
    if (variant === 'capture') Object.assign(opts, { captureArguments: true, identify: (i) => (i.method === 'tools/call' ? { id: 'u1', scopes: ['a', 'b'], tenant: 'acme', n: 3 } : null) });
    const h = configureMCPTelemetry(server, opts);
    const bodies = [];
    const ex = h._exporter;
    const transport = ex.transport || ex.observer; // the HTTP leg: send(protobuf bytes)
    transport.send = async (data) => {
      bodies.push(Buffer.from(data));
      return (transport.last = { status: 'success', code: 200, data: Buffer.alloc(0) });
    };
    ex.breaker.allow = () => true;
    const conn = await connect({ server }, flavour);
    await runSteps(conn);
    // traceparent propagation
    try { await conn.request('tools/list', { _meta: { traceparent: '00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01', tracestate: 'a=b' } }); } catch {}
    try { await conn.request('ping'); } catch {}
    await conn.close();
    await h.flush(5000);
    for (const body of bodies) {
      for (const { resource, scope, span } of spansOf(decode(body))) {
        const ctx = { times: [], key: null };
        const fields = normalize(span, ctx);
        const t = ctx.times.map((v) => BigInt(v.slice(0, -1)));
        out.push({ flavour, variant, span: fields, endNotBeforeStart: t[1] >= t[0], resource, scope });
      }
    }
    await h.shutdown(100);
  }
}
console.log(JSON.stringify(out, null, 1));
process.exit(0);
