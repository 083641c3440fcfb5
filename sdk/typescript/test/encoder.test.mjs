// The OTLP encoder (src/otlp.js) against the official one: for the same records, the bytes must
// equal what @opentelemetry/otlp-transformer's protobuf serializer writes for the `ReadableSpan`s
// the records stand for (export.js `toReadableSpan`, the shape the SDK exported before).

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { ProtobufTraceSerializer } from '@opentelemetry/otlp-transformer';
import { resourceFromAttributes } from '@opentelemetry/resources';
import { toReadableSpan } from '../src/export.js';
import { OtlpEncoder } from '../src/otlp.js';
import { SpanRecord, TARGET_NONE, TARGET_PROMPT, TARGET_RESOURCE, TARGET_TOOL } from '../src/record.js';
import { decode, spansOf } from './otlp-decode.mjs';

const RESOURCE = resourceFromAttributes({
  'service.name': 'encoder-test',
  'telemetry.sdk.name': '@mcp-obs/server',
  'telemetry.sdk.language': 'nodejs',
  'telemetry.sdk.version': '0.1.0',
  'service.version': '1.2.3',
});
const SCOPE = { name: '@mcp-obs/server', version: '0.1.0' };
const SHARED = { 'mcp.protocol.version': '2025-11-25', 'network.transport': 'pipe', 'mcp.client.name': 'client', 'mcp.client.version': '1.0.0' };
const TP = '00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01';

function official(records, resource = RESOURCE, scope = SCOPE) {
  // toReadableSpan draws the ids the records lack (and keeps them on the records)
  const spans = records.map((r) => toReadableSpan(r, resource, scope));
  return Buffer.from(ProtobufTraceSerializer.serializeRequest(spans));
}

function same(encoder, records, resource, scope) {
  const want = official(records, resource, scope);
  const got = Buffer.from(encoder.encode(records));
  if (!got.equals(want)) {
    let i = 0;
    while (i < want.length && got[i] === want[i]) i++;
    assert.fail(`bytes differ at ${i} of ${want.length} (got ${got.length}): want ${want.subarray(i, i + 16).toString('hex')} got ${got.subarray(i, i + 16).toString('hex')}`);
  }
  return got;
}

function rec(method, kind, target, id, shared = SHARED, meta = undefined) {
  const r = new SpanRecord(method, kind, target, id, shared, meta);
  r.end = r.start + 0.5;
  return r;
}

test('ordinary spans: the same bytes as the official serializer', () => {
  const enc = new OtlpEncoder(RESOURCE, SCOPE);
  const records = [];
  for (let i = 0; i < 600; i++) {
    const kind = [TARGET_TOOL, TARGET_NONE, TARGET_PROMPT, TARGET_RESOURCE][i % 4];
    const method = ['tools/call', 'tools/list', 'prompts/get', 'resources/read'][i % 4];
    const target = kind === TARGET_RESOURCE ? `file:///tmp/${i}.txt` : kind === TARGET_NONE ? undefined : `name-${i % 9}`;
    const id = [i, `req-${i}`, undefined, null, 2 ** 40 + i, -i][i % 6];
    const r = rec(method, kind, target, id, i % 10 === 0 ? null : SHARED);
    r.end = r.start + i * 0.013;
    records.push(r);
  }
  same(enc, records);
  // the buffer is reused: a second, smaller batch and a third, larger one
  same(enc, records.slice(0, 3).map((r) => rec(r.method, r.kind, r.target, r.requestId)));
  same(enc, records.concat(records.map((r) => rec(r.method, r.kind, r.target, r.requestId))));
});

test('further attributes, errors, events, parents, sampling: the same bytes', () => {
  const enc = new OtlpEncoder(RESOURCE, SCOPE);
  const records = [];
  const big = 'x'.repeat(20000); // a span longer than 16 KiB: three-byte lengths
  for (let i = 0; i < 120; i++) {
    const meta = [undefined, { traceparent: TP, tracestate: 'a=b,c=d' }, { traceparent: TP.toUpperCase() }, { traceparent: 'garbage' }, { traceparent: TP, tracestate: '###' }, { traceparent: TP, tracestate: ' k1=v1 , k2=v2 ' }][i % 6];
    const r = rec('tools/call', TARGET_TOOL, i % 13 === 0 ? 42 : 'echo', i, SHARED, meta);
    if (i % 2 === 0) {
      r.set('enduser.id', `user-${i}`);
      r.set('enduser.scope', 'read write');
      r.set('enduser.tenant', 'ÄÖÜ – ünïcödé 🚀');
      r.set('enduser.n', [0, 1, -1, 127, 128, 2 ** 31, 2 ** 32, 2 ** 53 + 2, -(2 ** 40), 1.5, -0.25, NaN, Infinity, -0, 1e300][i % 15]);
      r.set('enduser.flag', i % 4 === 0);
    }
    if (i % 3 === 0) r.set('gen_ai.tool.call.arguments', JSON.stringify({ i, text: 'é'.repeat(i * 7) }));
    if (i % 17 === 0) r.set('gen_ai.tool.call.result', big.slice(0, i * 150));
    if (i % 5 === 0) {
      r.setErrorType(i % 10 === 0 ? 'TypeError' : '-32603');
      r.error = true;
      r.message = i % 20 === 0 ? '' : `failed: ${'ß'.repeat(i)}`;
      r.recordException(i % 10 === 0 ? new TypeError('bad input') : 'a thrown string');
      if (i % 15 === 0) r.recordException(Object.assign(new Error('x'), { stack: big }));
    }
    if (i % 7 === 0) r.probability = [0.25, 0.5, 1e-9][i % 3];
    if (i === 60) r.set('gen_ai.tool.call.result', big);
    records.push(r);
  }
  same(enc, records);
  same(enc, [records[60]]);
});

test('attributes that override or reorder: the generic path, the same bytes', () => {
  const enc = new OtlpEncoder(RESOURCE, SCOPE);
  const a = rec('initialize', TARGET_NONE, undefined, 0);
  a.set('mcp.protocol.version', '2025-06-18'); // overrides the shared one, keeps its place
  const b = rec('tools/call', TARGET_TOOL, 'echo', 1);
  b.set('mcp.method.name', 'other'); // a key attributesOut sets itself
  const c = rec('tools/call', TARGET_TOOL, 'echo', 2);
  c.set('7', 'integer-like keys come first in an object');
  c.set('enduser.id', 'u');
  const clashing = { 'network.transport': 'tcp', 'mcpobs.sample.probability': 'session says' };
  const d = rec('tools/call', TARGET_TOOL, 'echo', 3, clashing);
  const e = rec('tools/call', TARGET_TOOL, 'echo', 4, { 'network.transport': 'tcp', 'mcp.session.id': 'abc' });
  e.set('mcp.session.id', 'def');
  same(enc, [a, b, c, d, e, rec('tools/call', TARGET_TOOL, 'echo', 5)]);
});

test('many tool names in one session (past the cache), tiny spans, times at a second boundary', () => {
  const enc = new OtlpEncoder(RESOURCE, SCOPE);
  const records = [];
  for (let i = 0; i < 700; i++) records.push(rec('tools/call', TARGET_TOOL, `tool-${i}`, i));
  same(enc, records);
  same(enc, records.slice(500)); // cached and uncached alike
  const tiny = [];
  for (let i = 0; i < 5; i++) {
    const r = new SpanRecord('x', TARGET_NONE, undefined, undefined, null, undefined);
    // start just below / at / above a whole second of wall time
    const origin = performance.timeOrigin;
    const nextSecond = Math.ceil(origin / 1000) * 1000 + 1000 * (i + 1);
    r.start = nextSecond - origin + [-1e-7, 0, 1e-7, -0.0004999, 0.0004999][i];
    r.end = r.start + i;
    tiny.push(r);
  }
  same(enc, tiny);
});

test('resource and scope: other attributes, schema URLs', () => {
  const resource = { attributes: { 'service.name': 'x', n: 3, ok: true }, schemaUrl: 'https://opentelemetry.io/schemas/1.30.0' };
  const scope = { name: 'scope', schemaUrl: 'https://example.com/s' };
  same(new OtlpEncoder(resource, scope), [rec('tools/call', TARGET_TOOL, 'echo', 1), rec('ping', TARGET_NONE, undefined, 2)], resource, scope);
});

test('ids the records have not drawn are random, valid and distinct', () => {
  const enc = new OtlpEncoder(RESOURCE, SCOPE);
  const records = [];
  for (let i = 0; i < 200; i++) records.push(rec('tools/call', TARGET_TOOL, 'echo', i, SHARED, i === 0 ? { traceparent: TP } : undefined));
  const spans = spansOf(decode(Buffer.from(enc.encode(records))));
  assert.equal(spans.length, 200);
  const traces = new Set();
  const ids = new Set();
  for (const { span } of spans) {
    const f = Object.fromEntries(span.filter(([n]) => n !== 'attributes'));
    assert.match(f.trace_id, /^[0-9a-f]{32}$/);
    assert.match(f.span_id, /^[0-9a-f]{16}$/);
    assert.notEqual(f.trace_id, '0'.repeat(32));
    assert.notEqual(f.span_id, '0'.repeat(16));
    traces.add(f.trace_id);
    ids.add(f.span_id);
  }
  assert.equal(traces.size, 200);
  assert.equal(ids.size, 200);
  assert.equal(Object.fromEntries(spans[0].span).trace_id, '0af7651916cd43dd8448eb211c80319c');
  assert.equal(Object.fromEntries(spans[0].span).parent_span_id, 'b7ad6b7169203331');
});
