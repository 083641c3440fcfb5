// Cost of the export path per span: the OTLP encoder (otlp.js) against the official route
// (ReadableSpan + the official protobuf serializer), then gzip at several levels.
// Usage: node bench/encode.mjs [batch]
import zlib from 'node:zlib';
import { ProtobufTraceSerializer } from '@opentelemetry/otlp-transformer';
import { resourceFromAttributes } from '@opentelemetry/resources';
import { toReadableSpan } from '../src/export.js';
import { OtlpEncoder } from '../src/otlp.js';
import { SpanRecord, TARGET_TOOL } from '../src/record.js';
const shared = { 'mcp.protocol.version': '2025-11-25', 'network.transport': 'pipe', 'mcp.client.name': 'bench-client', 'mcp.client.version': '1.0.0' };
const resource = resourceFromAttributes({ 'service.name': 'bench', 'telemetry.sdk.name': 'x', 'telemetry.sdk.language': 'nodejs', 'telemetry.sdk.version': '0.1.0' });
const scope = { name: '@mcp-obs/server', version: '0.1.0' };
const B = Number(process.argv[2] || 256);
const encoder = new OtlpEncoder(resource, scope);
function batch() { const out = []; for (let i = 0; i < B; i++) { const r = new SpanRecord('tools/call', TARGET_TOOL, 'echo', i, shared, undefined); r.end = r.start + 0.01; out.push(r); } return out; }
const us = (x, n) => ((x * 1000) / n).toFixed(2);
for (let round = 0; round < 5; round++) {
  let tConv = 0, tEnc = 0, tNew = 0, bytes = 0; const N = 40; const gz = { 1: 0, 6: 0 }; const gzBytes = { 1: 0, 6: 0 };
  for (let k = 0; k < N; k++) {
    const recs = batch();
    let t = performance.now(); const spans = recs.map((r) => toReadableSpan(r, resource, scope)); tConv += performance.now() - t;
    t = performance.now(); const buf = ProtobufTraceSerializer.serializeRequest(spans); tEnc += performance.now() - t;
    t = performance.now(); const mine = encoder.encode(recs); tNew += performance.now() - t;
    bytes += mine.length;
    for (const level of [1, 6]) { t = performance.now(); const z = zlib.gzipSync(mine, { level }); gz[level] += performance.now() - t; gzBytes[level] += z.length; }
    if (!Buffer.from(buf).equals(mine)) throw new Error('encodings differ');
  }
  const n = N * B;
  console.log(`batch ${B}, per span: official convert ${us(tConv, n)} + encode ${us(tEnc, n)} us; otlp.js ${us(tNew, n)} us; gzip level 6 ${us(gz[6], n)} us, level 1 ${us(gz[1], n)} us; ${(bytes / n).toFixed(0)} B/span raw, ${(gzBytes[6] / n).toFixed(0)} / ${(gzBytes[1] / n).toFixed(0)} gz`);
}
