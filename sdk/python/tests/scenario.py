"""Run sdk/conformance/scenario.json: build the server it describes, make its calls, check spans."""


import json
from pathlib import Path
from typing import Any

SCENARIO = json.loads((Path(__file__).resolve().parents[2] / "conformance" / "scenario.json").read_text())


async def run_steps(request: Any, scenario: dict = SCENARIO) -> list[tuple[dict, str]]:
    """Send every step (the client already did `initialize`) through `request(method, params)`
    (lines.connect). Returns (step, outcome) pairs."""
    from lines import RpcError

    outcomes = []
    for step in scenario["steps"]:
        req = step["request"]
        if req["method"] == "initialize":
            outcomes.append((step, "result"))
            continue
        try:
            res = await request(req["method"], req.get("params"))
            outcome = "result_is_error" if isinstance(res, dict) and res.get("isError") else "result"
        except RpcError:
            outcome = "error"
        outcomes.append((step, outcome))
    return outcomes


def _variant_step(step: dict, variant: str | None, scenario: dict = SCENARIO) -> dict:
    return scenario.get("library_variants", {}).get(variant or "", {}).get("steps", {}).get(step["id"]) or {}


def check_outcomes(outcomes: list[tuple[dict, str]], variant: str | None = None) -> None:
    for step, outcome in outcomes:
        want = _variant_step(step, variant).get("expect_response", step["expect_response"])
        want = want if isinstance(want, list) else [want]
        assert outcome in want, f"step {step['id']}: response {outcome}, expected {want}"


def _matches(value: Any, want: Any) -> bool:
    if isinstance(want, list):
        return value in want
    return value == want


def expected_span(step: dict, variant: str | None, scenario: dict = SCENARIO) -> dict:
    """The step's `expect_span`, with a library variant's overrides (scenario.json
    `library_variants`: what a given MCP library answers differently, recorded faithfully)."""
    exp = dict(step["expect_span"])
    over = _variant_step(step, variant, scenario)
    if over:
        for k, v in over.items():
            if k in ("expect_response", "comment"):
                continue  # the response is check_outcomes' business
            if isinstance(v, dict) and isinstance(exp.get(k), dict):
                exp[k] = {**exp[k], **v}
            else:
                exp[k] = v
    return exp


def check_spans(spans: list[dict], transport: str, scenario: dict = SCENARIO, variant: str | None = None) -> None:
    """Exactly one server span per step, in order, with the expected canonical fields."""
    steps = scenario["steps"]
    server_spans = sorted((s for s in spans if s["kind"] == "server"), key=lambda s: int(s["start_time_unix_nano"]))
    names = [s["name"] for s in server_spans]
    assert len(server_spans) == len(steps), f"{len(server_spans)} server spans for {len(steps)} steps: {names}"
    tcfg = scenario["transports"][transport]
    for step, span in zip(steps, server_spans):
        exp = expected_span(step, variant, scenario)
        sid = step["id"]
        assert span["name"] == exp["name"], f"{sid}: name {span['name']!r}"
        assert span["kind"] == exp["kind"], f"{sid}: kind {span['kind']}"
        assert span["status"]["code"] == exp["status"], f"{sid}: status {span['status']}"
        mcp = span["mcp"]
        for k, v in {**exp.get("mcp", {}), **tcfg.get("mcp_expect", {})}.items():
            assert _matches(mcp.get(k), v), f"{sid}: mcp.{k}={mcp.get(k)!r}, expected {v!r}"
        for k in exp.get("mcp_present", []) + tcfg.get("mcp_present", []):
            if k == "session_id" and step["request"]["method"] == "initialize":
                continue  # the session id is assigned by the initialize response
            assert mcp.get(k) not in (None, ""), f"{sid}: mcp.{k} missing"
        for k, v in exp.get("attributes", {}).items():
            assert span["attributes"].get(k) == v, f"{sid}: attribute {k}={span['attributes'].get(k)!r}"
        for k in exp.get("attributes_present", []):
            assert k in span["attributes"], f"{sid}: attribute {k} missing: {span['attributes']}"
        for k in exp.get("attributes_absent", []):
            assert k not in span["attributes"], f"{sid}: attribute {k} must not be recorded"
        for ev in exp.get("events_present", []):
            assert ev in [e["name"] for e in span["events"]], f"{sid}: event {ev} missing"
        if "trace_id" in exp:
            assert span["trace_id"] == exp["trace_id"], f"{sid}: trace_id {span['trace_id']}"
            assert span["parent_span_id"] == exp["parent_span_id"], f"{sid}: parent {span['parent_span_id']}"
        else:
            assert span["parent_span_id"] is None, f"{sid}: unexpected parent"
        assert 0 < span["sample_probability"] <= 1
