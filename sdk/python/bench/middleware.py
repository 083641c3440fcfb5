#!/usr/bin/env python3
"""The mcp-obs middleware's own time per request, in place (mcp 2.x).

    sdk/python/.venv-mcp2/bin/python sdk/python/bench/middleware.py [--rounds 5] [--calls 20000]

Captures the real context object of one `tools/call` through `MCPServer` (in-memory), then awaits
`McpObsMiddleware(ctx, call_next)` in a loop against a pass-through middleware with the same
`call_next`, and times the pieces (`begin`, making the span the current OpenTelemetry context and
undoing it, `ok`) with `timeit`. `PYTHONPATH=<other>/src` measures another version of the SDK.
"""

from __future__ import annotations

import argparse
import time
import timeit

import anyio
from mcp import Client
from mcp.server.mcpserver import MCPServer

from mcp_obs_server import _core, configure_mcp_telemetry
from mcp_obs_server._mcp2 import McpObsMiddleware


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--calls", type=int, default=20000)
    args = ap.parse_args()

    server = MCPServer("bench")

    @server.tool()
    def echo(x: int) -> int:
        return x

    handle = configure_mcp_telemetry(server, api_key="k", endpoint="http://127.0.0.1:9")
    low = server._lowlevel_server
    mw = next(m for m in low.middleware if isinstance(m, McpObsMiddleware))
    captured: list = []

    async def capture(ctx, call_next):
        if ctx.method == "tools/call":
            captured.append(ctx)
        return await call_next(ctx)

    low.middleware.insert(0, capture)
    obs = handle._observer
    queue = obs.recorder.queue

    async def run() -> None:
        async with Client(server, mode="legacy") as c:
            await c.call_tool("echo", {"x": 1})
        ctx = captured[-1]
        result = {"content": [{"type": "text", "text": "1"}], "isError": False}

        async def call_next(ctx):
            return result

        async def passthrough(ctx, call_next):
            return await call_next(ctx)

        for _ in range(args.rounds):
            out = {}
            for name, fn in (("pass-through", passthrough), ("mcp-obs", mw)):
                t0 = time.perf_counter_ns()
                for _ in range(args.calls):
                    await fn(ctx, call_next)
                out[name] = (time.perf_counter_ns() - t0) / args.calls / 1000
                queue.clear()
            print(f"pass-through {out['pass-through']:.2f} us, mcp-obs {out['mcp-obs']:.2f} us: "
                  f"own time {out['mcp-obs'] - out['pass-through']:.2f} us per request")

    anyio.run(run)
    rec = obs.begin("tools/call", {"name": "echo", "arguments": {"x": 1}}, 1, transport="pipe")
    n = 100000
    for label, fn in (
        ("begin (record + attributes)", lambda: obs.begin("tools/call", {"name": "echo", "arguments": {"x": 1}}, 1, transport="pipe")),
        ("activate + detach (OTel context)", lambda: _core._detach(obs.activate(rec))),
        ("ok (finish + queue)", lambda: (obs.ok((rec, None), None), queue.clear())),
    ):
        best = min(timeit.repeat(fn, number=n, repeat=5))
        print(f"  {label:36s} {best / n * 1e6:.2f} us")
    handle.shutdown(0.1)


if __name__ == "__main__":
    main()
