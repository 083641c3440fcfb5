// A small schema-aware decoder of OTLP `ExportTraceServiceRequest` protobuf, for tests and the
// golden dump: every field as [name, value] in wire order (nothing merged, nothing defaulted), so
// two bodies decode alike exactly when they carry the same fields in the same order.

const KV = 'KeyValue';
const SCHEMA = {
  Request: { 1: ['resource_spans', 'ResourceSpans'] },
  ResourceSpans: { 1: ['resource', 'Resource'], 2: ['scope_spans', 'ScopeSpans'], 3: ['schema_url', 'string'] },
  Resource: { 1: ['attributes', KV], 2: ['dropped_attributes_count', 'varint'] },
  ScopeSpans: { 1: ['scope', 'Scope'], 2: ['spans', 'Span'], 3: ['schema_url', 'string'] },
  Scope: { 1: ['name', 'string'], 2: ['version', 'string'], 3: ['attributes', KV], 4: ['dropped_attributes_count', 'varint'] },
  Span: {
    1: ['trace_id', 'hex'],
    2: ['span_id', 'hex'],
    3: ['trace_state', 'string'],
    4: ['parent_span_id', 'hex'],
    5: ['name', 'string'],
    6: ['kind', 'varint'],
    7: ['start_time_unix_nano', 'fixed64'],
    8: ['end_time_unix_nano', 'fixed64'],
    9: ['attributes', KV],
    10: ['dropped_attributes_count', 'varint'],
    11: ['events', 'Event'],
    12: ['dropped_events_count', 'varint'],
    13: ['links', 'Link'],
    14: ['dropped_links_count', 'varint'],
    15: ['status', 'Status'],
    16: ['flags', 'fixed32'],
  },
  Event: { 1: ['time_unix_nano', 'fixed64'], 2: ['name', 'string'], 3: ['attributes', KV], 4: ['dropped_attributes_count', 'varint'] },
  Link: {
    1: ['trace_id', 'hex'],
    2: ['span_id', 'hex'],
    3: ['trace_state', 'string'],
    4: ['attributes', KV],
    5: ['dropped_attributes_count', 'varint'],
    6: ['flags', 'fixed32'],
  },
  Status: { 2: ['message', 'string'], 3: ['code', 'varint'] },
  KeyValue: { 1: ['key', 'string'], 2: ['value', 'AnyValue'] },
  AnyValue: {
    1: ['string_value', 'string'],
    2: ['bool_value', 'varint'],
    3: ['int_value', 'varint'],
    4: ['double_value', 'double'],
    5: ['array_value', 'ArrayValue'],
    6: ['kvlist_value', 'KeyValueList'],
    7: ['bytes_value', 'hex'],
  },
  ArrayValue: { 1: ['values', 'AnyValue'] },
  KeyValueList: { 1: ['values', KV] },
};
const WIRE = { varint: 0, fixed64: 1, double: 1, fixed32: 5 };

function varint(buf, p) {
  let v = 0n;
  let shift = 0n;
  for (;;) {
    if (p.i >= buf.length) throw new Error('truncated varint');
    const b = buf[p.i++];
    v |= BigInt(b & 0x7f) << shift;
    if ((b & 0x80) === 0) return v;
    shift += 7n;
    if (shift > 63n) throw new Error('varint too long');
  }
}

/** Decode `buf` as message `type`: an array of [fieldName, value]. */
export function decode(buf, type = 'Request') {
  const schema = SCHEMA[type];
  const out = [];
  const p = { i: 0 };
  const dv = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  while (p.i < buf.length) {
    const tag = Number(varint(buf, p));
    const field = tag >>> 3;
    const wire = tag & 7;
    const spec = schema[field];
    if (!spec) throw new Error(`${type}: unknown field ${field}`);
    const [name, kind] = spec;
    const want = WIRE[kind] ?? 2;
    if (wire !== want) throw new Error(`${type}.${name}: wire type ${wire}, expected ${want}`);
    let value;
    if (wire === 0) {
      const v = varint(buf, p);
      value = kind === 'varint' && v <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(v) : `${BigInt.asIntN(64, v)}n`;
    } else if (wire === 1) {
      value = kind === 'double' ? dv.getFloat64(p.i, true) : `${dv.getBigUint64(p.i, true)}n`;
      p.i += 8;
    } else if (wire === 5) {
      value = dv.getUint32(p.i, true);
      p.i += 4;
    } else {
      const len = Number(varint(buf, p));
      if (p.i + len > buf.length) throw new Error(`${type}.${name}: length past the end`);
      const sub = buf.subarray(p.i, p.i + len);
      p.i += len;
      if (kind === 'string') value = Buffer.from(sub).toString('utf8');
      else if (kind === 'hex') value = Buffer.from(sub).toString('hex');
      else value = decode(sub, kind);
    }
    out.push([name, value]);
  }
  return out;
}

/** The spans of a decoded request: [{resource, scope, span}] with `span` a field list. */
export function spansOf(decoded) {
  const out = [];
  for (const [, rs] of decoded.filter(([n]) => n === 'resource_spans')) {
    const resource = rs.find(([n]) => n === 'resource');
    for (const [, ss] of rs.filter(([n]) => n === 'scope_spans')) {
      const scope = ss.find(([n]) => n === 'scope');
      for (const [, span] of ss.filter(([n]) => n === 'spans')) out.push({ resource: resource && resource[1], scope: scope && scope[1], span });
    }
  }
  return out;
}
