"""The shared conformance scenario over stdio, streamable HTTP and in-process, against the real appliance."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import anyio
import pytest

from appliance import free_port
from scenario import SCENARIO, build_mcp2_server, check_outcomes, check_spans, run_steps

pytest.importorskip("mcp.server.mcpserver")

HERE = Path(__file__).resolve().parent
SERVER = str(HERE / "scenario_server.py")


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


def test_scenario_stdio(appliance, obs_server):
    from mcp import Client
    from mcp.client.stdio import StdioServerParameters

    server_id, key = obs_server
    params = StdioServerParameters(command=sys.executable, args=[SERVER, "stdio"], env=server_env(appliance, key))

    async def run():
        async with Client(params, mode="legacy") as client:
            return await run_steps(client)

    outcomes = anyio.run(run)
    check_outcomes(outcomes)
    spans = appliance.wait_spans(server_id, len(SCENARIO["steps"]))
    check_spans(spans, "stdio")


def _start_http_server(appliance, key, port, **extra):
    proc = subprocess.Popen(
        [sys.executable, SERVER, "http", str(port)],
        env=server_env(appliance, key, **extra),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    import socket

    deadline = time.time() + 20
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


def _http_client(url, headers=None):
    import httpx2
    from mcp import Client
    from mcp.client.streamable_http import streamable_http_client

    http = httpx2.AsyncClient(headers=headers or {}, timeout=30)
    return Client(streamable_http_client(url, http_client=http), mode="legacy")


def test_scenario_streamable_http(appliance, obs_server):
    server_id, key = obs_server
    port = free_port()
    proc = _start_http_server(appliance, key, port)
    try:

        async def run():
            async with _http_client(f"http://127.0.0.1:{port}/mcp") as client:
                return await run_steps(client)

        outcomes = anyio.run(run)
    finally:
        _stop(proc)
    check_outcomes(outcomes)
    spans = appliance.wait_spans(server_id, len(SCENARIO["steps"]))
    check_spans(spans, "streamable_http")
    sessions = {s["mcp"]["session_id"] for s in spans if s["mcp"]["method"] != "initialize"}
    assert len(sessions) == 1, sessions


def test_user_attribution_bearer_auth(appliance, obs_server):
    """The MCP SDK's own bearer-token auth (TokenVerifier) decides the span's user."""
    server_id, key = obs_server
    port = free_port()
    proc = _start_http_server(appliance, key, port, SCENARIO_AUTH="1", SCENARIO_DEBUG="1")
    tokens = SCENARIO["auth"]["tokens"]
    try:

        async def run():
            for t in tokens:
                async with _http_client(
                    f"http://127.0.0.1:{port}/mcp", {"Authorization": f"Bearer {t['token']}"}
                ) as client:
                    await client.session._dispatcher.send_raw_request(
                        "tools/call", {"name": "get_weather", "arguments": {"city": t["token"]}}, None
                    )

        anyio.run(run)
    finally:
        out, err = _stop(proc)
    spans = appliance.wait_spans(server_id, len(tokens), method="tools/call")
    print(err.decode()[-3000:])
    assert len(spans) == len(tokens)
    for t in tokens:
        mine = appliance.spans(server_id, user=t["expect_user_id"])
        assert {s["mcp"]["method"] for s in mine} == {"initialize", "tools/call"}, mine
        call = next(s for s in mine if s["mcp"]["method"] == "tools/call")
        assert call["attributes"]["enduser.scope"] == " ".join(t["scopes"])
        assert call["attributes"]["mcp.auth.client_id"] == t["client_id"]


def test_scenario_in_process_and_native_otel_replaced(appliance, obs_server):
    """In-process (memory streams): same spans; the SDK's OpenTelemetryMiddleware is gone."""
    from mcp import Client
    from mcp.server._otel import OpenTelemetryMiddleware

    from mcp_obs_server import configure_mcp_telemetry

    server_id, key = obs_server
    server = build_mcp2_server()
    h = configure_mcp_telemetry(server, api_key=key, endpoint=appliance.base)
    assert not any(isinstance(m, OpenTelemetryMiddleware) for m in server.middleware)

    async def run():
        async with Client(server, mode="legacy") as client:
            return await run_steps(client)

    check_outcomes(anyio.run(run))
    assert h.flush(10)
    h.shutdown()
    spans = appliance.wait_spans(server_id, len(SCENARIO["steps"]))
    # in-memory streams are pipe-like JSON-RPC; the transport check is the stdio one
    check_spans(spans, "stdio")
    assert h.stats()["spans_exported"] == len(SCENARIO["steps"])


def test_stdout_stays_clean_on_stdio(appliance, obs_server, tmp_path):
    """Raw JSON-RPC over the server's pipes, debug on, appliance answering errors: stdout is only JSON-RPC."""
    import json

    server_id, key = obs_server
    env = server_env(appliance, "mcpobs_live_wrongkeywrongkey", SCENARIO_DEBUG="1")
    proc = subprocess.Popen(
        [sys.executable, SERVER, "stdio"], env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    msgs = [
        {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {"protocolVersion": "2025-11-25",
         "capabilities": {}, "clientInfo": {"name": "raw", "version": "1"}}},
        {"jsonrpc": "2.0", "method": "notifications/initialized"},
        {"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": {"name": "get_weather", "arguments": {"city": "X"}}},
        {"jsonrpc": "2.0", "id": 3, "method": "tools/call", "params": {"name": "fail_tool", "arguments": {}}},
        {"jsonrpc": "2.0", "id": 4, "method": "nope/nope"},
    ]
    payload = "".join(json.dumps(m) + "\n" for m in msgs).encode()
    proc.stdin.write(payload)
    proc.stdin.flush()
    time.sleep(2.0)  # let the exporter try (401) and log on stderr
    out, err = proc.communicate(timeout=20)
    lines = [line for line in out.decode().splitlines() if line.strip()]
    assert len(lines) == 4, lines
    for line in lines:
        msg = json.loads(line)
        assert msg["jsonrpc"] == "2.0" and msg["id"] in (1, 2, 3, 4)
    assert b"[mcp-obs]" in err  # debug logging went to stderr
