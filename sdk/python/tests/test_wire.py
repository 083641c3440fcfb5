"""Our direct OTLP encoding parses to the same message the official OpenTelemetry encoder produces."""

from google.protobuf.json_format import MessageToDict
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from mcp_obs_server._core import build
from mcp_obs_server._wire import encode_request


def test_wire_matches_official_encoder():
    obs, exp = build(api_key=None, endpoint=None, service_name="svc", service_version="1.2", sampling=None,
                     capture_arguments=True, redact=None, identify=None, skip_methods=(), debug=False,
                     default_service_name="x")
    meta = {"traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01", "tracestate": "k=v"}
    st = obs.start("tools/call", {"name": "t", "arguments": {"a": 1, "pw": "x"}, "_meta": meta}, 7,
                   protocol_version="2025-11-25", transport="pipe", client_info={"name": "c", "version": "1"})
    obs.exception(st, RuntimeError("boom ü"))
    st = obs.start("resources/read", {"uri": "config://app"}, "abc")
    obs.ok(st, {"contents": []})
    recs = list(obs.recorder.queue)
    for r in recs:
        r.attributes.update({"i": -5, "b": True, "f": 0.5})
    ours = ExportTraceServiceRequest.FromString(encode_request(exp._resource_field, exp._scope_field, recs))
    official = encode_spans(exp._to_readable(recs))
    a, b = MessageToDict(ours), MessageToDict(official)
    for rs in (a, b):  # the official encoder's flags omit the sampled bit; ours sets it
        for s in rs["resourceSpans"][0]["scopeSpans"][0]["spans"]:
            s.pop("flags", None)
            if s.get("status") == {}:  # an UNSET status: encoded empty by them, omitted by us
                del s["status"]
    assert a == b



def test_wire_attribute_cache_keeps_types_apart():
    """Encoded attributes are cached by (key, value); 1.0, True and 1 compare equal in Python but
    are different OTLP values, and a cached span must encode exactly like a fresh one."""
    obs, exp = build(api_key=None, endpoint=None, service_name="svc", service_version=None, sampling=None,
                     capture_arguments=False, redact=None, identify=None, skip_methods=(), debug=False,
                     default_service_name="x")
    values = [1.0, True, 1, 0.5, -0.0, 0.0, "1", 1.0, True, "1"]
    for v in values:
        obs.ok(obs.start("ping", None, 1), None)
        obs.recorder.queue[-1].attributes["x"] = v
    recs = list(obs.recorder.queue)
    for _ in range(2):  # the second pass is served from the caches
        ours = ExportTraceServiceRequest.FromString(encode_request(exp._resource_field, exp._scope_field, recs))
        got = [next(a for a in MessageToDict(s)["attributes"] if a["key"] == "x")["value"]
               for s in ours.resource_spans[0].scope_spans[0].spans]
        want = [MessageToDict(s)["attributes"] for s in
                encode_spans(exp._to_readable(recs)).resource_spans[0].scope_spans[0].spans]
        want = [next(a for a in w if a["key"] == "x")["value"] for w in want]
        assert got == want, (got, want)
        assert [list(v)[0] for v in got] == ["doubleValue", "boolValue", "intValue", "doubleValue",
                                              "doubleValue", "doubleValue", "stringValue", "doubleValue",
                                              "boolValue", "stringValue"], got
