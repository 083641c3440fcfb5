// Dump every span (as handed to the OTLP exporter) for the conformance scenario plus extras, normalized.
import { configureMCPTelemetry } from '../src/index.js';
import { FLAVOURS, buildServer, connect } from '../test/lines.mjs';
import { runSteps } from '../test/scenario.mjs';
const out = [];
for (const flavour of FLAVOURS) {
  for (const variant of ['plain', 'capture']) {
    const server = await buildServer(flavour);
    const opts = { apiKey: 'k', endpoint: 'http://127.0.0.1:9' };
    if (variant === 'capture') Object.assign(opts, { captureArguments: true, identify: (i) => (i.method === 'tools/call' ? { id: 'u1', scopes: ['a', 'b'], tenant: 'acme', n: 3 } : null) });
    const h = configureMCPTelemetry(server, opts);
    const captured = [];
    h._exporter.otlp.export = (spans, cb) => { captured.push(...spans); cb({ code: 0 }); };
    h._exporter.breaker.allow = () => true;
    const conn = await connect({ server }, flavour);
    await runSteps(conn);
    // traceparent propagation
    try { await conn.request('tools/list', { _meta: { traceparent: '00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01', tracestate: 'a=b' } }); } catch {}
    try { await conn.request('ping'); } catch {}
    await conn.close();
    await h.flush(5000);
    for (const s of captured) {
      const ctx = s.spanContext();
      out.push({
        flavour, variant, name: s.name, kind: s.kind, status: s.status,
        attributes: Object.entries(s.attributes).map(([k, v]) => [k, k === 'mcp.session.id' ? '<sid>' : v]),
        events: s.events.map((e) => ({ name: e.name, attributes: Object.entries(e.attributes).map(([k, v]) => [k, k === 'exception.stacktrace' ? String(v).split('\n')[0] : v]) })),
        parent: s.parentSpanContext ? { traceId: s.parentSpanContext.traceId, spanId: s.parentSpanContext.spanId, ts: s.parentSpanContext.traceState && s.parentSpanContext.traceState.serialize(), remote: s.parentSpanContext.isRemote } : null,
        traceIdFromParent: s.parentSpanContext ? ctx.traceId === s.parentSpanContext.traceId : null,
        idsOk: /^[0-9a-f]{32}$/.test(ctx.traceId) && /^[0-9a-f]{16}$/.test(ctx.spanId), flags: ctx.traceFlags, ctxts: ctx.traceState && ctx.traceState.serialize(),
        durOk: s.duration[0] >= 0 && s.duration[1] >= 0 && (s.endTime[0] * 1e9 + s.endTime[1]) >= (s.startTime[0] * 1e9 + s.startTime[1]) && Math.abs(s.startTime[0] - Date.now() / 1000) < 120,
        links: s.links, ended: s.ended, resource: s.resource.attributes, scope: s.instrumentationScope, dropped: [s.droppedAttributesCount, s.droppedEventsCount, s.droppedLinksCount],
      });
    }
    await h.shutdown(100);
  }
}
console.log(JSON.stringify(out, null, 1));
process.exit(0);
