// OTLP `ExportTraceServiceRequest` protobuf, written directly from span records (record.js).
//
// This is the export path's encoder: no OpenTelemetry span object, no transformer, one reused
// buffer per exporter. It writes exactly the fields, in exactly the order and with exactly the
// encodings, that the official serializer of @opentelemetry/otlp-transformer writes for the
// `ReadableSpan` the record stands for (test/encoder.test.mjs compares the bytes), so the
// appliance receives the same spans:
//
//   ExportTraceServiceRequest { resource_spans(1) { resource(1), scope_spans(2) { scope(1),
//     spans(2)... } } }
//   Span { trace_id 1, span_id 2, trace_state 3?, parent_span_id 4?, name 5, kind 6 (SERVER),
//     start 7, end 8, attributes 9..., dropped_attributes_count 10 (0), events 11...,
//     dropped_events_count 12 (0), dropped_links_count 14 (0), status 15, flags 16 }
//
// Numbers are int_value when integral (within int64), else double_value, as the official one.

import { randomFillSync } from 'node:crypto';
import { TraceState } from '@opentelemetry/core';
import { TARGET_PROMPT, TARGET_RESOURCE, TARGET_TOOL } from './record.js';

const MIN_64_BIT_INT = -(2 ** 63);
const MAX_64_BIT_INT = 2 ** 63;
const SHRINK_ABOVE = 4 << 20; // a scratch buffer grown past this is not kept
const hasOwn = Object.prototype.hasOwnProperty;
const CACHE_MAX = 256; // cached name/attribute prefixes per session attribute object
const UNCACHED = {}; // `prefix`: the fast path without a cache entry

// The keys `SpanRecord.attributesOut` sets itself: a record whose further attributes (or whose
// session attributes) use one of them takes the generic path, which builds that object.
const STANDARD_KEYS = new Set([
  'mcp.method.name',
  'gen_ai.operation.name',
  'gen_ai.tool.name',
  'gen_ai.prompt.name',
  'mcp.resource.uri',
  'jsonrpc.request.id',
  'mcpobs.sample.probability',
]);

// The buffer being written and the write position: module state, set by `encode` from its
// encoder (encoding is synchronous, so one encode runs at a time).
let B = Buffer.allocUnsafe(0);
let P = 0;

function ensure(n) {
  if (P + n <= B.length) return;
  let size = B.length * 2 || 4096;
  while (size < P + n) size *= 2;
  const nb = Buffer.allocUnsafe(size);
  B.copy(nb, 0, 0, P);
  B = nb;
}

/** Bytes of the varint of an unsigned 32-bit value. */
function vsize(v) {
  return v < 0x80 ? 1 : v < 0x4000 ? 2 : v < 0x200000 ? 3 : v < 0x10000000 ? 4 : 5;
}

/** Unsigned 32-bit varint (lengths, tags, small numbers); capacity already ensured. */
function varint32(v) {
  while (v > 0x7f) {
    B[P++] = (v & 0x7f) | 0x80;
    v >>>= 7;
  }
  B[P++] = v;
}

/** Any integral number as the official writer does (64-bit, negatives in two's complement). */
function varintAny(value) {
  ensure(10);
  if (value >= 0 && value <= 0xffffffff) {
    varint32(value >>> 0);
    return;
  }
  let low;
  let high;
  if (value >= 0) {
    low = value >>> 0;
    high = (value / 0x100000000) >>> 0;
  } else {
    const abs = Math.abs(value);
    low = abs >>> 0;
    high = (abs / 0x100000000) >>> 0;
    low = ~low >>> 0;
    high = ~high >>> 0;
    low = (low + 1) >>> 0;
    if (low === 0) high = (high + 1) >>> 0;
  }
  while (high > 0 || low > 0x7f) {
    B[P++] = (low & 0x7f) | 0x80;
    low = ((low >>> 7) | (high << 25)) >>> 0;
    high >>>= 7;
  }
  B[P++] = low & 0x7f;
}

/** UTF-8 length of a string (lone surrogates count as U+FFFD, as TextEncoder writes them). */
function strLen(s) {
  const n = s.length;
  if (n > 24) return Buffer.byteLength(s, 'utf8');
  for (let i = 0; i < n; i++) if (s.charCodeAt(i) > 0x7f) return Buffer.byteLength(s, 'utf8');
  return n;
}

/** Write a string of `n` UTF-8 bytes (from strLen); capacity already ensured. */
function writeStr(s, n) {
  if (n === s.length) {
    if (n <= 24) {
      for (let i = 0; i < n; i++) B[P++] = s.charCodeAt(i);
      return;
    }
    B.write(s, P, n, 'latin1');
  } else {
    B.write(s, P, n, 'utf8');
  }
  P += n;
}

/** tag + length + string. */
function field(tagByte, s) {
  const n = strLen(s);
  ensure(6 + n);
  B[P++] = tagByte;
  varint32(n);
  writeStr(s, n);
}

/** Start a length-delimited field whose length is not known yet: reserve `reserve` bytes. */
function open(reserve) {
  ensure(reserve);
  const at = P;
  P += reserve;
  return at;
}

/** Write the length of the field opened at `at`, moving its content when the varint is longer
 * or shorter than reserved (the result is the minimal varint, as the official writer's). */
function close(at, reserve) {
  const start = at + reserve;
  const len = P - start;
  const need = vsize(len);
  if (need !== reserve) {
    ensure(need);
    B.copyWithin(at + need, start, P);
    P += need - reserve;
  }
  let w = at;
  let v = len;
  while (v > 0x7f) {
    B[w++] = (v & 0x7f) | 0x80;
    v >>>= 7;
  }
  B[w] = v;
}

/** Random non-zero id bytes, straight into the buffer (ids the record has not drawn yet). */
let pool = Buffer.allocUnsafe(0);
let poolAt = 0;
function randomId(n) {
  for (;;) {
    if (poolAt + n > pool.length) {
      if (pool.length === 0) pool = Buffer.allocUnsafe(4096);
      randomFillSync(pool);
      poolAt = 0;
    }
    let nonzero = false;
    for (let i = 0; i < n; i++) {
      const b = pool[poolAt + i];
      B[P + i] = b;
      if (b !== 0) nonzero = true;
    }
    poolAt += n;
    if (nonzero) {
      P += n;
      return;
    }
  }
}

function hexNibble(c) {
  if (c >= 48 && c <= 57) return c - 48;
  if (c >= 97 && c <= 102) return c - 87;
  return c - 55; // A-F, as the official hexToBinary
}

/** A hex id as bytes (capacity ensured; `hex` has 2n digits). */
function hexId(hex) {
  for (let i = 0; i < hex.length; i += 2) B[P++] = (hexNibble(hex.charCodeAt(i)) << 4) | hexNibble(hex.charCodeAt(i + 1));
}

/** Milliseconds since the epoch (fractional) as fixed64 nanoseconds, exactly as the official
 * writer turns the SDK's HrTime ([seconds, nanoseconds], from `hrTime` below) into one. */
function fixed64Time(ms) {
  const seconds = Math.floor(ms / 1000);
  const nanos = Math.round((ms - seconds * 1000) * 1e6);
  const lo16 = seconds & 0xffff;
  const hiBits = (seconds / 0x10000) >>> 0;
  const fromLo = lo16 * 1000000000;
  const fromHi = hiBits * 1000000000;
  const loLow = fromLo >>> 0;
  const loHigh = Math.floor(fromLo / 0x100000000);
  const hiLow = ((fromHi & 0xffff) * 0x10000) >>> 0;
  const hiHigh = (fromHi / 0x10000) >>> 0;
  const low = loLow + hiLow + nanos;
  const l = low >>> 0;
  const h = (loHigh + hiHigh + Math.floor(low / 0x100000000)) >>> 0;
  B[P++] = l & 0xff;
  B[P++] = (l >>> 8) & 0xff;
  B[P++] = (l >>> 16) & 0xff;
  B[P++] = l >>> 24;
  B[P++] = h & 0xff;
  B[P++] = (h >>> 8) & 0xff;
  B[P++] = (h >>> 16) & 0xff;
  B[P++] = h >>> 24;
}

/** AnyValue content (no tag/length of its own), as the official `writeAnyValue`. */
function anyValue(value) {
  const t = typeof value;
  if (t === 'string') {
    field(0x0a, value);
  } else if (t === 'boolean') {
    ensure(2);
    B[P++] = 0x10;
    B[P++] = value ? 1 : 0;
  } else if (t === 'number') {
    if (Number.isInteger(value) && value >= MIN_64_BIT_INT && value < MAX_64_BIT_INT) {
      ensure(1);
      B[P++] = 0x18;
      varintAny(value);
    } else {
      ensure(9);
      B[P++] = 0x21;
      B.writeDoubleLE(value, P);
      P += 8;
    }
  } else if (value instanceof Uint8Array) {
    ensure(6 + value.length);
    B[P++] = 0x3a;
    varint32(value.length);
    B.set(value, P);
    P += value.length;
  } else if (Array.isArray(value)) {
    ensure(1);
    B[P++] = 0x2a;
    const arr = open(1);
    for (const item of value) {
      ensure(1);
      B[P++] = 0x0a;
      const at = open(1);
      anyValue(item);
      close(at, 1);
    }
    close(arr, 1);
  } else if (t === 'object' && value !== null) {
    ensure(1);
    B[P++] = 0x32;
    const list = open(1);
    for (const k in value) {
      if (!hasOwn.call(value, k)) continue;
      ensure(1);
      B[P++] = 0x0a;
      const at = open(1);
      keyValueBody(k, value[k]);
      close(at, 1);
    }
    close(list, 1);
  }
  // anything else: an empty AnyValue, as the official writer
}

/** KeyValue content: key (1), value (2). */
function keyValueBody(key, value) {
  field(0x0a, key);
  ensure(1);
  B[P++] = 0x12;
  const at = open(1);
  anyValue(value);
  close(at, 1);
}

/** One attribute as a repeated KeyValue field (`tagByte` = its field's tag). */
function attribute(tagByte, key, value) {
  if (typeof value === 'string') {
    // the common case, every length known in advance
    const kl = strLen(key);
    const vl = strLen(value);
    const any = 1 + vsize(vl) + vl;
    const kv = 1 + vsize(kl) + kl + 1 + vsize(any) + any;
    ensure(6 + kv);
    B[P++] = tagByte;
    varint32(kv);
    B[P++] = 0x0a;
    varint32(kl);
    writeStr(key, kl);
    B[P++] = 0x12;
    varint32(any);
    B[P++] = 0x0a;
    varint32(vl);
    writeStr(value, vl);
    return;
  }
  ensure(1);
  B[P++] = tagByte;
  const at = open(1);
  keyValueBody(key, value);
  close(at, 1);
}

/** Every own enumerable attribute of `attrs`, in its order (the official `writeAttributes`). */
function attributes(tagByte, attrs) {
  for (const key in attrs) {
    if (hasOwn.call(attrs, key)) attribute(tagByte, key, attrs[key]);
  }
}

/** Encode in a scratch buffer and return a copy of the bytes. */
function standalone(write) {
  const saveB = B;
  const saveP = P;
  B = Buffer.allocUnsafe(256);
  P = 0;
  try {
    write();
    return Buffer.from(B.subarray(0, P));
  } finally {
    B = saveB;
    P = saveP;
  }
}

function safeTraceState(s) {
  try {
    return new TraceState(s).serialize();
  } catch {
    return '';
  }
}

/** Encodes batches of span records for one resource and instrumentation scope. */
export class OtlpEncoder {
  /** `resource`: an OpenTelemetry `Resource` (or `{attributes, schemaUrl?}`); `scope`: `{name,
   * version?, schemaUrl?}`. Both are encoded once, here. */
  constructor(resource, scope) {
    this.buf = Buffer.allocUnsafe(1 << 16);
    const resourceBody = standalone(() => {
      if (resource.attributes) attributes(0x0a, resource.attributes);
      ensure(2);
      B[P++] = 0x10; // dropped_attributes_count
      B[P++] = 0;
    });
    this.resourceBlock = standalone(() => {
      ensure(6 + resourceBody.length);
      B[P++] = 0x0a;
      varint32(resourceBody.length);
      B.set(resourceBody, P);
      P += resourceBody.length;
    });
    this.resourceTrailer = resource.schemaUrl ? standalone(() => field(0x1a, resource.schemaUrl)) : null;
    const scopeBody = standalone(() => {
      field(0x0a, scope.name);
      if (scope.version) field(0x12, scope.version);
      if (scope.attributes) attributes(0x1a, scope.attributes);
      if (scope.droppedAttributesCount) {
        ensure(1);
        B[P++] = 0x20;
        varintAny(scope.droppedAttributesCount);
      }
    });
    this.scopeBlock = standalone(() => {
      ensure(6 + scopeBody.length);
      B[P++] = 0x0a;
      varint32(scopeBody.length);
      B.set(scopeBody, P);
      P += scopeBody.length;
    });
    this.scopeTrailer = scope.schemaUrl ? standalone(() => field(0x1a, scope.schemaUrl)) : null;
    // room for the two enclosing tags and lengths in front of the spans
    this.headerRoom = this.resourceBlock.length + this.scopeBlock.length + 12;
    // session attribute objects (shared by their records) -> their encoded attributes and the
    // cached name / leading attributes per method and target (see `prefix`)
    this.sharedCache = new WeakMap();
    this.noShared = { bytes: Buffer.alloc(0), methods: new Map(), count: 0 };
  }

  /** `ExportTraceServiceRequest` bytes for `records` (draws the ids a record has not drawn).
   * The result is a view of this encoder's buffer, valid until its next `encode`. */
  encode(records) {
    if (records.length === 0) return Buffer.alloc(0);
    B = this.buf;
    P = this.headerRoom;
    try {
      for (let i = 0; i < records.length; i++) this.span(records[i]);
      if (this.scopeTrailer !== null) {
        ensure(this.scopeTrailer.length);
        B.set(this.scopeTrailer, P);
        P += this.scopeTrailer.length;
      }
      const ssLen = this.scopeBlock.length + (P - this.headerRoom);
      const rsLen = this.resourceBlock.length + 1 + vsize(ssLen) + ssLen + (this.resourceTrailer === null ? 0 : this.resourceTrailer.length);
      if (this.resourceTrailer !== null) {
        ensure(this.resourceTrailer.length);
        B.set(this.resourceTrailer, P);
        P += this.resourceTrailer.length;
      }
      const end = P;
      const start = this.headerRoom - (1 + vsize(rsLen) + this.resourceBlock.length + 1 + vsize(ssLen) + this.scopeBlock.length);
      P = start;
      B[P++] = 0x0a; // resource_spans
      varint32(rsLen);
      B.set(this.resourceBlock, P);
      P += this.resourceBlock.length;
      B[P++] = 0x12; // scope_spans
      varint32(ssLen);
      B.set(this.scopeBlock, P);
      P += this.scopeBlock.length;
      return B.subarray(start, end);
    } finally {
      this.buf = B.length > SHRINK_ABOVE ? Buffer.allocUnsafe(1 << 16) : B;
      B = Buffer.allocUnsafe(0);
    }
  }

  /** The cached bytes of a span's name and leading attributes (the session's, the method, the
   * tool or prompt), per session object, method and target; null when the record's attributes
   * need the generic path. A session's cache holds at most CACHE_MAX entries (then records go
   * the uncached way). */
  prefix(r) {
    const sh = r.shared;
    let session = sh === null ? this.noShared : this.sharedCache.get(sh);
    if (session === undefined) {
      let clash = false;
      for (const k in sh) if (STANDARD_KEYS.has(k)) clash = true;
      session = { bytes: clash ? null : standalone(() => attributes(0x4a, sh)), methods: new Map(), count: 0 };
      this.sharedCache.set(sh, session);
    }
    if (session.bytes === null) return null;
    const more = r.attrs;
    if (more !== null) {
      for (const k in more) {
        // a key set before, or an integer-like one (which objects order first)
        const c = k.charCodeAt(0);
        if (STANDARD_KEYS.has(k) || (sh !== null && hasOwn.call(sh, k)) || (c >= 48 && c <= 57)) return null;
      }
    }
    const method = r.method;
    if (typeof method !== 'string') return null;
    const kind = r.kind;
    const target = r.target;
    const key = (kind === TARGET_TOOL || kind === TARGET_PROMPT) && typeof target === 'string' ? target : kind;
    let byTarget = session.methods.get(method);
    let entry;
    if (byTarget !== undefined) {
      entry = byTarget.get(key);
      if (entry !== undefined) return entry;
    }
    if (session.count >= CACHE_MAX) return UNCACHED;
    if (byTarget === undefined) {
      byTarget = new Map();
      session.methods.set(method, byTarget);
    }
    const sharedBytes = session.bytes;
    entry = {
      name: standalone(() => field(0x2a, r.spanName())),
      attrs: standalone(() => {
        ensure(sharedBytes.length);
        B.set(sharedBytes, P);
        P += sharedBytes.length;
        leadingAttributes(r);
      }),
    };
    byTarget.set(key, entry);
    session.count++;
    return entry;
  }

  /** One Span (field 2 of ScopeSpans). */
  span(r) {
    r.resolveParent();
    const traceState = r.traceState === '' ? '' : safeTraceState(r.traceState);
    const pre = this.prefix(r);
    ensure(64);
    B[P++] = 0x12;
    const at = open(2);
    B[P++] = 0x0a; // trace_id
    B[P++] = 16;
    if (r.traceId === '') randomId(16);
    else hexId(r.traceId);
    B[P++] = 0x12; // span_id
    B[P++] = 8;
    if (r.spanId === '') randomId(8);
    else hexId(r.spanId);
    if (traceState !== '') field(0x1a, traceState);
    const parent = r.parentSpanId !== '';
    if (parent) {
      ensure(10);
      B[P++] = 0x22;
      B[P++] = 8;
      hexId(r.parentSpanId);
    }
    if (pre !== null && pre !== UNCACHED) {
      ensure(pre.name.length);
      B.set(pre.name, P);
      P += pre.name.length;
    } else {
      field(0x2a, r.spanName());
    }
    ensure(20);
    B[P++] = 0x30; // kind: SERVER (API 1, + 1)
    B[P++] = 2;
    B[P++] = 0x39; // start_time_unix_nano
    fixed64Time(r.startMs);
    B[P++] = 0x41; // end_time_unix_nano
    fixed64Time(r.endMs);
    if (pre === null) {
      attributes(0x4a, r.attributesOut()); // the generic way: build the object, write it
    } else {
      if (pre === UNCACHED) {
        if (r.shared !== null) attributes(0x4a, r.shared);
        leadingAttributes(r);
      } else {
        ensure(pre.attrs.length);
        B.set(pre.attrs, P);
        P += pre.attrs.length;
      }
      trailingAttributes(r);
    }
    ensure(2);
    B[P++] = 0x50; // dropped_attributes_count
    B[P++] = 0;
    if (r.events !== null) {
      for (const e of r.events) {
        ensure(10);
        B[P++] = 0x5a;
        const ev = open(1);
        B[P++] = 0x09; // time_unix_nano
        fixed64Time(e.time);
        field(0x12, e.name);
        if (e.attributes) attributes(0x1a, e.attributes);
        ensure(2);
        B[P++] = 0x20;
        B[P++] = 0;
        close(ev, 1);
      }
    }
    // dropped_events_count, dropped_links_count (no links)
    ensure(4);
    B[P++] = 0x60;
    B[P++] = 0;
    B[P++] = 0x70;
    B[P++] = 0;
    // status: message (2) when set, code (3)
    const msg = r.error ? r.message : '';
    if (msg) {
      const ml = strLen(msg);
      const body = 1 + vsize(ml) + ml + 2;
      ensure(12 + body);
      B[P++] = 0x7a;
      varint32(body);
      B[P++] = 0x12;
      varint32(ml);
      writeStr(msg, ml);
    } else {
      ensure(8);
      B[P++] = 0x7a;
      B[P++] = 2;
    }
    B[P++] = 0x18;
    B[P++] = r.error ? 2 : 0;
    // flags (16, fixed32): SAMPLED | CONTEXT_HAS_IS_REMOTE [| CONTEXT_IS_REMOTE for a parent]
    B[P++] = 0x85;
    B[P++] = 0x01;
    B[P++] = 0x01;
    B[P++] = parent ? 0x03 : 0x01;
    B[P++] = 0;
    B[P++] = 0;
    close(at, 2);
  }
}

/** The attributes `SpanRecord.attributesOut` sets after the session's, up to the request id. */
function leadingAttributes(r) {
  attribute(0x4a, 'mcp.method.name', r.method);
  const k = r.kind;
  const target = r.target;
  if (k === TARGET_TOOL) {
    attribute(0x4a, 'gen_ai.operation.name', 'execute_tool');
    if (typeof target === 'string') attribute(0x4a, 'gen_ai.tool.name', target);
  } else if (k === TARGET_PROMPT) {
    if (typeof target === 'string') attribute(0x4a, 'gen_ai.prompt.name', target);
  }
}

const PROBABILITY_ONE = standalone(() => attribute(0x4a, 'mcpobs.sample.probability', 1));

/** The rest, in the order of `SpanRecord.attributesOut`: resource URI, request id, the further
 * attributes, the sampling probability. */
function trailingAttributes(r) {
  if (r.kind === TARGET_RESOURCE && typeof r.target === 'string') attribute(0x4a, 'mcp.resource.uri', r.target);
  if (r.requestId !== undefined && r.requestId !== null) attribute(0x4a, 'jsonrpc.request.id', String(r.requestId));
  if (r.attrs !== null) attributes(0x4a, r.attrs);
  if (r.probability === 1) {
    ensure(PROBABILITY_ONE.length);
    B.set(PROBABILITY_ONE, P);
    P += PROBABILITY_ONE.length;
  } else {
    attribute(0x4a, 'mcpobs.sample.probability', r.probability);
  }
}
