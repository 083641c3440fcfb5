// cost of the export path per span: toReadableSpan, protobuf encode, gzip
import zlib from 'node:zlib';
import { ProtobufTraceSerializer } from '@opentelemetry/otlp-transformer';
import { resourceFromAttributes } from '@opentelemetry/resources';
import { toReadableSpan } from '../src/export.js';
import { SpanRecord, TARGET_TOOL } from '../src/record.js';
const shared = { 'mcp.protocol.version': '2025-11-25', 'network.transport': 'pipe', 'mcp.client.name': 'bench-client', 'mcp.client.version': '1.0.0' };
const resource = resourceFromAttributes({ 'service.name': 'bench', 'telemetry.sdk.name': 'x', 'telemetry.sdk.language': 'nodejs', 'telemetry.sdk.version': '0.1.0' });
const scope = { name: '@mcp-obs/server', version: '0.1.0' };
const B = Number(process.argv[2] || 256);
function batch() { const out = []; for (let i = 0; i < B; i++) { const r = new SpanRecord('tools/call', TARGET_TOOL, 'echo', i, shared, undefined); r.end = r.start + 0.01; out.push(r); } return out; }
for (let round = 0; round < 4; round++) {
  let tConv = 0, tEnc = 0, tGz = 0, bytes = 0, gzBytes = 0; const N = 40;
  for (let k = 0; k < N; k++) {
    const recs = batch();
    let t = performance.now(); const spans = recs.map((r) => toReadableSpan(r, resource, scope)); tConv += performance.now() - t;
    t = performance.now(); const buf = ProtobufTraceSerializer.serializeRequest(spans); tEnc += performance.now() - t;
    t = performance.now(); const gz = zlib.gzipSync(buf); tGz += performance.now() - t; bytes += buf.length; gzBytes += gz.length;
  }
  const per = (x) => ((x * 1000) / (N * B)).toFixed(2);
  console.log(`batch ${B}: per span convert ${per(tConv)} us, encode ${per(tEnc)} us, gzip ${per(tGz)} us; ${(bytes / N / B).toFixed(0)} B/span raw, ${(gzBytes / N / B).toFixed(0)} gz`);
}
