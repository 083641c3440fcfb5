#!/usr/bin/env python3
"""Overhead of mcp-obs telemetry on a trivial `tools/call` over the in-memory transport.

    sdk/python/.venv-mcp2/bin/python sdk/python/bench/overhead.py [--calls 3000] [--rounds 5] [--mode legacy|auto]

Three servers in one process, measured in interleaved rounds:
  baseline     stock MCPServer (its built-in OpenTelemetry middleware, no global provider)
  reachable    + configure_mcp_telemetry exporting to the REAL appliance (target/release/mcp-obs)
  unreachable  + configure_mcp_telemetry pointed at a closed port
Reports the median per-call latency and the added time at the median. Targets: <= 3% and <= 50 us
added with the appliance reachable; no added latency while it is unreachable.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import anyio

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests"))

from appliance import Appliance, free_port  # noqa: E402


def make_server():
    from mcp.server.mcpserver import MCPServer

    s = MCPServer("bench")

    @s.tool()
    def echo(x: int) -> int:
        return x

    return s


async def measure(server, calls: int, mode: str) -> list[float]:
    from mcp import Client

    out = []
    async with Client(server, mode=mode) as client:
        for _ in range(200):  # warm-up
            await client.call_tool("echo", {"x": 1})
        for _ in range(calls):
            t = time.perf_counter_ns()
            await client.call_tool("echo", {"x": 1})
            out.append(time.perf_counter_ns() - t)
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--calls", type=int, default=3000)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--mode", default="legacy", help="legacy = InMemoryTransport + JSON-RPC; auto = direct dispatcher")
    args = ap.parse_args()
    from mcp_obs_server import configure_mcp_telemetry

    tmp = Path(tempfile.mkdtemp(prefix="mcpobs-bench-"))
    app = Appliance(tmp / "data").start()
    try:
        _, key = app.create_server("bench")
        servers = {"baseline": make_server(), "reachable": make_server(), "unreachable": make_server()}
        handles = {
            "reachable": configure_mcp_telemetry(servers["reachable"], api_key=key, endpoint=app.base),
            "unreachable": configure_mcp_telemetry(
                servers["unreachable"], api_key=key, endpoint=f"http://127.0.0.1:{free_port()}"
            ),
        }
        samples: dict[str, list[float]] = {k: [] for k in servers}
        for r in range(args.rounds):
            order = list(servers) if r % 2 == 0 else list(reversed(servers))
            for name in order:
                samples[name] += anyio.run(measure, servers[name], args.calls, args.mode)
        handles["reachable"].flush(10)
        med = {k: statistics.median(v) / 1000 for k, v in samples.items()}
        base = med["baseline"]
        print(f"mcp-obs telemetry overhead, tools/call over in-memory transport (mode={args.mode}), "
              f"{args.rounds} rounds x {args.calls} calls, python {sys.version.split()[0]}, {os.cpu_count()} cpus")
        for k in servers:
            added = med[k] - base
            print(f"  {k:12s} median {med[k]:8.1f} us   added {added:+7.1f} us  ({added / base * 100:+5.1f}%)")
        st = handles["reachable"].stats()
        print(f"  reachable: exported {st['spans_exported']} spans, dropped {st['spans_dropped']}, "
              f"circuit {st['circuit_state']}")
        st = handles["unreachable"].stats()
        print(f"  unreachable: dropped {st['spans_dropped']} spans (queue full), failed exports "
              f"{st['failed_exports']}, circuit {st['circuit_state']}")
        for h in handles.values():
            h.shutdown(timeout=1)
    finally:
        app.stop()


if __name__ == "__main__":
    main()
