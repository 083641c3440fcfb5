"""The shared conformance scenario, for every server flavour of the installed line (lines.py),
over stdio, streamable HTTP, SSE, mounted in Starlette, and in-process, against the real appliance."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import anyio
import pytest

from appliance import free_port
from lines import Target, build_server, connect, flavours, scenario_variant
from scenario import SCENARIO, check_outcomes, check_spans, run_steps

HERE = Path(__file__).resolve().parent
SERVER = str(HERE / "scenario_server.py")
N_STEPS = len(SCENARIO["steps"])

pytestmark = pytest.mark.parametrize("flavour", flavours())


def server_env(appliance, key, **extra):
    env = dict(os.environ)
    env.update(
        MCPOBS_API_KEY=key,
        MCPOBS_ENDPOINT=appliance.base,
        MCPOBS_EXPORT_INTERVAL_MS="200",
        PYTHONUNBUFFERED="1",
    )
    env.update(extra)
    return env


def _run_scenario(target: Target, flavour: str):
    async def run():
        async with connect(target, flavour) as request:
            return await run_steps(request)

    return anyio.run(run)


def test_scenario_stdio(appliance, obs_server, flavour):
    server_id, key = obs_server
    target = Target(command=sys.executable, args=[SERVER, flavour, "stdio"], env=server_env(appliance, key))
    check_outcomes(_run_scenario(target, flavour), scenario_variant(flavour))
    spans = appliance.wait_spans(server_id, N_STEPS)
    check_spans(spans, "stdio", variant=scenario_variant(flavour))


def _start_http_server(appliance, key, port, flavour, mode="http", **extra):
    proc = subprocess.Popen(
        [sys.executable, SERVER, flavour, mode, str(port)],
        env=server_env(appliance, key, **extra),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    deadline = time.time() + 30
    while time.time() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return proc
        except OSError:
            if proc.poll() is not None:
                raise RuntimeError(proc.stderr.read().decode())
            time.sleep(0.1)
    proc.kill()
    raise RuntimeError("http server did not start")


def _stop(proc):
    proc.terminate()
    try:
        out, err = proc.communicate(timeout=15)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
    return out, err


@pytest.mark.parametrize(
    "mode,path,transport",
    [
        ("http", "/mcp", "streamable_http"),
        ("sse", "/sse", "sse"),
        ("mounted", "/app/mcp", "streamable_http"),
        ("flask", "/app/mcp", "streamable_http"),
    ],
)
def test_scenario_http(appliance, obs_server, flavour, mode, path, transport):
    """Streamable HTTP, SSE, streamable HTTP mounted inside a larger Starlette app, and the same
    served next to a Flask app (WSGI mount; every line pins Flask)."""
    server_id, key = obs_server
    port = free_port()
    proc = _start_http_server(appliance, key, port, flavour, mode)
    try:
        target = Target(url=f"http://127.0.0.1:{port}{path}", sse=mode == "sse")
        outcomes = _run_scenario(target, flavour)
        if mode in ("mounted", "flask"):  # the host app's own routes still work and are not MCP spans
            import urllib.request

            assert urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=5).read() == b"ok"
        if mode == "flask":
            assert urllib.request.urlopen(f"http://127.0.0.1:{port}/flask/hello", timeout=5).read() == b"hello from flask"
    finally:
        _, err = _stop(proc)
    check_outcomes(outcomes, scenario_variant(flavour))
    spans = appliance.wait_spans(server_id, N_STEPS)
    check_spans(spans, transport, variant=scenario_variant(flavour))
    sessions = {s["mcp"]["session_id"] for s in spans if s["mcp"]["method"] != "initialize"}
    assert len(sessions) == 1, sessions


def _stateless_scenario() -> dict:
    """The shared scenario with the expectations of stateless streamable HTTP: no MCP session (so
    no `mcp.session.id`), and every request after `initialize` stands alone, so the server never
    learns the client's name and version for it (mcp 1.x even runs a fresh `Server.run` per POST)."""
    steps = []
    for step in SCENARIO["steps"]:
        step = json.loads(json.dumps(step))
        if step["id"] != "initialize":
            exp = step["expect_span"]
            exp["mcp_present"] = [k for k in exp.get("mcp_present", []) if k not in ("client_name", "client_version")]
        steps.append(step)
    transports = dict(SCENARIO["transports"], streamable_http_stateless={
        "mcp_expect": {"transport": "tcp", "session_id": None}, "mcp_present": ["protocol_version"]})
    return dict(SCENARIO, steps=steps, transports=transports)


def test_scenario_stateless_http(appliance, obs_server, flavour):
    """Stateless streamable HTTP (a transport per request): the same one span per request."""
    server_id, key = obs_server
    port = free_port()
    proc = _start_http_server(appliance, key, port, flavour, "stateless")
    try:
        outcomes = _run_scenario(Target(url=f"http://127.0.0.1:{port}/mcp"), flavour)
    finally:
        _stop(proc)
    check_outcomes(outcomes, scenario_variant(flavour))
    spans = appliance.wait_spans(server_id, N_STEPS)
    check_spans(spans, "streamable_http_stateless", scenario=_stateless_scenario(), variant=scenario_variant(flavour))


def test_user_attribution_bearer_auth(appliance, obs_server, flavour):
    """The MCP library's own bearer-token auth (its token verifier) decides the span's user."""
    server_id, key = obs_server
    port = free_port()
    proc = _start_http_server(appliance, key, port, flavour, SCENARIO_AUTH="1", SCENARIO_DEBUG="1")
    tokens = SCENARIO["auth"]["tokens"]
    try:

        async def run():
            for t in tokens:
                target = Target(url=f"http://127.0.0.1:{port}/mcp", headers={"Authorization": f"Bearer {t['token']}"})
                async with connect(target, flavour) as request:
                    await request("tools/call", {"name": "get_weather", "arguments": {"city": t["token"]}})

        anyio.run(run)
    finally:
        out, err = _stop(proc)
    spans = appliance.wait_spans(server_id, len(tokens), method="tools/call")
    assert len(spans) == len(tokens), err.decode()[-3000:]
    for t in tokens:
        mine = appliance.spans(server_id, user=t["expect_user_id"])
        assert {s["mcp"]["method"] for s in mine} == {"initialize", "tools/call"}, mine
        call = next(s for s in mine if s["mcp"]["method"] == "tools/call")
        assert call["attributes"]["enduser.scope"] == " ".join(t["scopes"])
        assert call["attributes"]["mcp.auth.client_id"] == t["client_id"]


def test_auth_installed_by_configure_all_features_is_enforced(appliance, obs_server, flavour):
    """`configure_all_mcp_features(auth=...)` really protects the server: no token, or a token the
    verifier rejects, gets 401 from the MCP library's own bearer middleware, and never reaches the
    MCP layer (no span). A server with no auth settings of its own refuses `auth=` loudly."""
    if flavour == "mcp1-lowlevel":
        from mcp_obs_server import configure_all_mcp_features

        with pytest.raises(TypeError, match="cannot install auth"):
            configure_all_mcp_features(build_server(flavour), telemetry=False, auth={"token_verifier": object()})
        return
    import urllib.error
    import urllib.request

    server_id, key = obs_server
    port = free_port()
    proc = _start_http_server(appliance, key, port, flavour, SCENARIO_AUTH="1")
    body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
        "protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "raw", "version": "1"}}}).encode()
    statuses = []
    try:
        for auth in (None, "Bearer token-nobody"):
            req = urllib.request.Request(f"http://127.0.0.1:{port}/mcp", data=body, method="POST", headers={
                "Content-Type": "application/json", "Accept": "application/json, text/event-stream",
                **({"Authorization": auth} if auth else {})})
            try:
                statuses.append(urllib.request.urlopen(req, timeout=10).status)
            except urllib.error.HTTPError as e:
                statuses.append(e.code)
        # a valid token still works
        target = Target(url=f"http://127.0.0.1:{port}/mcp", headers={"Authorization": "Bearer token-alice"})

        async def ok():
            async with connect(target, flavour) as request:
                await request("ping")

        anyio.run(ok)
    finally:
        _stop(proc)
    assert statuses == [401, 401], statuses
    spans = appliance.wait_spans(server_id, 2)
    assert sorted(s["mcp"]["method"] for s in spans) == ["initialize", "ping"], [s["name"] for s in spans]
    assert {s["mcp"]["user_id"] for s in spans} == {"alice"}, spans


def test_scenario_in_process_and_native_spans_replaced(appliance, obs_server, flavour, monkeypatch):
    """In-process (memory streams): same spans, and the library's own SERVER spans are not produced
    (mcp 2.x OpenTelemetryMiddleware removed; fastmcp's seam span suppressed)."""
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    from mcp_obs_server import configure_mcp_telemetry

    mem = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(mem))
    if flavour == "fastmcp":  # fastmcp's native spans use its get_tracer(): point it at a recording provider
        import fastmcp.server.telemetry as fst

        monkeypatch.setattr(fst, "get_tracer", lambda *a, **k: provider.get_tracer("fastmcp"))
    if flavour in ("mcp2", "mcp2-lowlevel"):  # mcp 2.x's OpenTelemetryMiddleware: record its spans (server side only)
        from contextlib import contextmanager

        import mcp.server._otel as server_otel

        tracer = provider.get_tracer("mcp-python-sdk")

        @contextmanager
        def recording_span(name, *, kind, attributes=None, context=None, **kw):
            with tracer.start_as_current_span(name, kind=kind, attributes=attributes, context=context, **kw) as span:
                yield span

        monkeypatch.setattr(server_otel, "otel_span", recording_span)

    server_id, key = obs_server
    server = build_server(flavour)
    h = configure_mcp_telemetry(server, api_key=key, endpoint=appliance.base)
    if flavour in ("mcp2", "mcp2-lowlevel"):
        from mcp.server._otel import OpenTelemetryMiddleware

        assert not any(isinstance(m, OpenTelemetryMiddleware) for m in server.middleware)
    check_outcomes(_run_scenario(Target(server=server), flavour), scenario_variant(flavour))
    assert h.flush(10)
    h.shutdown()
    spans = appliance.wait_spans(server_id, N_STEPS)
    # in-memory streams are pipe-like JSON-RPC; the transport check is the stdio one
    check_spans(spans, "stdio", variant=scenario_variant(flavour))
    assert h.stats()["spans_exported"] == N_STEPS
    native_server = [s.name for s in mem.get_finished_spans() if s.kind.name == "SERVER"]
    assert native_server == [], native_server


def test_stdout_stays_clean_on_stdio(appliance, obs_server, flavour):
    """Raw JSON-RPC over the server's pipes, debug on, appliance answering errors: stdout is only JSON-RPC."""
    server_id, key = obs_server
    env = server_env(appliance, "mcpobs_live_wrongkeywrongkey", SCENARIO_DEBUG="1")
    proc = subprocess.Popen(
        [sys.executable, SERVER, flavour, "stdio"],
        env=env,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    msgs = [
        {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {"protocolVersion": "2025-06-18",
         "capabilities": {}, "clientInfo": {"name": "raw", "version": "1"}}},
        {"jsonrpc": "2.0", "method": "notifications/initialized"},
        {"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": {"name": "get_weather", "arguments": {"city": "X"}}},
        {"jsonrpc": "2.0", "id": 3, "method": "tools/call", "params": {"name": "fail_tool", "arguments": {}}},
        {"jsonrpc": "2.0", "id": 4, "method": "nope/nope"},
    ]
    lines: list[str] = []
    try:
        proc.stdin.write(json.dumps(msgs[0]).encode() + b"\n")
        proc.stdin.flush()
        lines.append(proc.stdout.readline().decode())  # initialize answered before the rest is sent
        proc.stdin.write("".join(json.dumps(m) + "\n" for m in msgs[1:]).encode())
        proc.stdin.flush()
        for _ in range(3):  # every answer before stdin closes (EOF ends the session, cancelling in-flight work)
            lines.append(proc.stdout.readline().decode())
        time.sleep(1.5)  # let the exporter try (401) and log on stderr
    finally:
        out, err = proc.communicate(timeout=20)
    lines += out.decode().splitlines()
    lines = [line for line in lines if line.strip()]
    assert len(lines) == 4, lines
    for line in lines:
        msg = json.loads(line)
        assert msg["jsonrpc"] == "2.0" and msg["id"] in (1, 2, 3, 4)
    assert b"[mcp-obs]" in err  # debug logging went to stderr
