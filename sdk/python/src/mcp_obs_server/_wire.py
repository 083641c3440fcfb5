"""Direct OTLP protobuf encoding of span records (ExportTraceServiceRequest wire format).

The generic `opentelemetry-exporter-otlp-proto-common` encoder costs ~40 us per span in CPython
(it walks SDK span objects and builds a message per attribute). The exporter thread shares the
GIL with the MCP server, so that cost shows up as request latency under load. Our spans have a
fixed, small shape, so we write the wire format directly (~5x cheaper). The resource and scope
are encoded once with the official proto classes; `tests/test_wire.py` checks the output against
the official encoder byte-for-byte after a parse round trip.
"""

from __future__ import annotations

import struct
from typing import Any, Iterable

from opentelemetry.proto.common.v1.common_pb2 import AnyValue, InstrumentationScope, KeyValue
from opentelemetry.proto.resource.v1.resource_pb2 import Resource as PbResource

from ._record import SpanRecord

_pack_q = struct.Struct("<Q").pack
_pack_d = struct.Struct("<d").pack
_pack_I = struct.Struct("<I").pack
_SERVER = 2  # SpanKind.SPAN_KIND_SERVER
_STATUS_ERROR = 2


def _varint(n: int) -> bytes:
    if n < 0x80:
        return bytes((n,))
    out = bytearray()
    while n >= 0x80:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def _ld(field: int, payload: bytes) -> bytes:
    return _varint((field << 3) | 2) + _varint(len(payload)) + payload


_key_cache: dict[str, bytes] = {}


def _anyvalue(v: Any) -> bytes:
    if isinstance(v, str):
        b = v.encode("utf-8")
        return b"\x0a" + _varint(len(b)) + b
    if isinstance(v, bool):
        return b"\x10" + (b"\x01" if v else b"\x00")
    if isinstance(v, int):
        return b"\x18" + _varint(v & 0xFFFFFFFFFFFFFFFF)
    if isinstance(v, float):
        return b"\x21" + _pack_d(v)
    if isinstance(v, bytes):
        return b"\x3a" + _varint(len(v)) + v
    b = str(v).encode("utf-8")
    return b"\x0a" + _varint(len(b)) + b


def _kv(field: int, key: str, value: Any) -> bytes:
    k = _key_cache.get(key)
    if k is None:
        kb = key.encode("utf-8")
        k = _key_cache[key] = b"\x0a" + _varint(len(kb)) + kb
        if len(_key_cache) > 4096:  # attribute keys are few; never grow without bound
            _key_cache.clear()
    av = _anyvalue(value)
    body = k + b"\x12" + _varint(len(av)) + av
    return _varint((field << 3) | 2) + _varint(len(body)) + body


_kv_cache: dict[tuple[str, Any], bytes] = {}
_name_cache: dict[str, bytes] = {}
_NO_CACHE = frozenset({"jsonrpc.request.id", "mcp.session.id", "gen_ai.tool.call.arguments",
                       "gen_ai.tool.call.result", "mcp.request.arguments", "mcp.resource.uri"})
_CACHE_LIMIT = 8192  # entries; the caches are cleared when they reach it, so they never grow unbounded


def _attr(key: str, v: Any) -> bytes:
    """Span attribute field; low-cardinality string and positive float attributes (the sampling
    probability) are encoded once and reused. Bools and ints are never cached: True == 1 == 1.0
    would share a cache entry."""
    cls = v.__class__
    if (cls is str and len(v) < 128 or cls is float and v > 0.0) and key not in _NO_CACHE:
        ck = (key, v)
        b = _kv_cache.get(ck)
        if b is None:
            if len(_kv_cache) >= _CACHE_LIMIT:
                _kv_cache.clear()
            b = _kv_cache[ck] = _kv(9, key, v)
        return b
    return _kv(9, key, v)


def _name_field(name: str) -> bytes:
    """Span name + kind fields; names are few (method + tool/prompt), short ones are cached."""
    b = _name_cache.get(name)
    if b is None:
        b = _ld(5, name.encode("utf-8")) + b"\x30\x02"  # name, kind = SERVER
        if len(name) < 160:  # a client can send any tool name: never keep long ones
            if len(_name_cache) >= _CACHE_LIMIT:
                _name_cache.clear()
            _name_cache[name] = b
    return b


def encode_span(r: SpanRecord) -> bytes:
    parts = [b"\x0a\x10" + r.trace_id.to_bytes(16, "big") + b"\x12\x08" + r.span_id.to_bytes(8, "big")]
    if r.trace_state:
        parts.append(_ld(3, r.trace_state.encode("utf-8")))
    if r.parent_span_id:
        parts.append(b"\x22\x08" + r.parent_span_id.to_bytes(8, "big"))
    parts.append(_name_field(r.name) + b"\x39" + _pack_q(r.start_ns) + b"\x41" + _pack_q(r.end_ns))
    cache, no_cache, append = _kv_cache, _NO_CACHE, parts.append
    for k, v in r.attributes.items():  # _attr, inlined: this loop is most of the encoding time
        cls = v.__class__
        if (cls is str and len(v) < 128 or cls is float and v > 0.0) and k not in no_cache:
            b = cache.get((k, v))
            append(b if b is not None else _attr(k, v))
        else:
            append(_kv(9, k, v))
    if r.events:
        for name, t, attrs in r.events:
            ev = [b"\x09" + _pack_q(t), _ld(2, name.encode("utf-8"))]
            for k, v in attrs.items():
                ev.append(_kv(3, k, v))
            parts.append(_ld(11, b"".join(ev)))
    if r.status_error:
        st = (_ld(2, r.status_message.encode("utf-8")) if r.status_message else b"") + b"\x18\x02"
        parts.append(_ld(15, st))
    # flags: W3C sampled + "parent-is-remote known" (0x100), remote parent (0x200)
    parts.append(_FLAGS_REMOTE if r.parent_span_id else _FLAGS_LOCAL)
    return b"".join(parts)


_FLAGS_REMOTE = b"\x85\x01" + _pack_I(0x301)
_FLAGS_LOCAL = b"\x85\x01" + _pack_I(0x101)


def encode_header(resource_attrs: dict[str, Any], scope_name: str, scope_version: str) -> tuple[bytes, bytes]:
    """The pre-encoded Resource and InstrumentationScope fields (built with the official classes)."""
    res = PbResource(attributes=[KeyValue(key=k, value=_pb_any(v)) for k, v in resource_attrs.items()])
    scope = InstrumentationScope(name=scope_name, version=scope_version)
    return _ld(1, res.SerializeToString()), _ld(1, scope.SerializeToString())


def _pb_any(v: Any) -> AnyValue:
    if isinstance(v, bool):
        return AnyValue(bool_value=v)
    if isinstance(v, int):
        return AnyValue(int_value=v)
    if isinstance(v, float):
        return AnyValue(double_value=v)
    return AnyValue(string_value=str(v))


def encode_request(resource_field: bytes, scope_field: bytes, spans: Iterable[SpanRecord]) -> bytes:
    span_fields = b"".join(_ld(2, encode_span(r)) for r in spans)
    scope_spans = _ld(2, scope_field + span_fields)
    resource_spans = resource_field + scope_spans
    return _ld(1, resource_spans)
