#!/usr/bin/env python3
"""Overhead of mcp-obs telemetry on a trivial `tools/call` over the in-memory transport.

    sdk/python/.venv-mcp2/bin/python sdk/python/bench/overhead.py [--blocks 400] [--block 50] [--mode legacy|auto]

Three servers in one process, one client session each, measured in interleaved blocks (every
block runs `--block` calls on each server, in a fresh random order), so slow drifts of machine
load hit all three alike:
  baseline     stock MCPServer (its built-in OpenTelemetry middleware, no global provider)
  reachable    + configure_mcp_telemetry exporting to the REAL appliance (target/release/mcp-obs)
  unreachable  + configure_mcp_telemetry pointed at a closed port
Reports per server the median latency over all calls and the added time at the median; the
paired per-block difference against the baseline (median and interquartile range: the spread);
p90 / p99; the median CPU time of the main thread per call (blind to time spent waiting for the
GIL); for the reachable server the POSTs sent and the CPU the export thread and the appliance
spent per exported span. Targets: <= 3% and <= 50 us added with the appliance reachable; no added
latency while it is unreachable.
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import statistics
import sys
import tempfile
import time
from contextlib import AsyncExitStack
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


async def measure(servers: dict, blocks: int, block: int, mode: str, seed: int) -> tuple[dict, dict, dict]:
    """One client session per server, all open at once; `blocks` times, every server runs `block`
    calls, in a fresh random order each time, so all servers share the same moments of machine
    noise. Per server: wall-clock ns per call, CPU ns of this thread per call (server and client
    both run on it), and the median of each block."""
    from mcp import Client

    rng = random.Random(seed)
    wall: dict[str, list[int]] = {k: [] for k in servers}
    cpu: dict[str, list[int]] = {k: [] for k in servers}
    block_med: dict[str, list[float]] = {k: [] for k in servers}
    async with AsyncExitStack() as stack:
        clients = {k: await stack.enter_async_context(Client(s, mode=mode)) for k, s in servers.items()}
        for c in clients.values():
            for _ in range(200):  # warm-up
                await c.call_tool("echo", {"x": 1})
        names = list(servers)
        for _ in range(blocks):
            rng.shuffle(names)
            for k in names:
                c = clients[k]
                w: list[int] = []
                for _ in range(block):
                    c0 = time.thread_time_ns()
                    t0 = time.perf_counter_ns()
                    await c.call_tool("echo", {"x": 1})
                    w.append(time.perf_counter_ns() - t0)
                    cpu[k].append(time.thread_time_ns() - c0)
                wall[k] += w
                block_med[k].append(statistics.median(w))
    return wall, cpu, block_med


def _cpu_s(stat_path: str) -> float:
    """user + system CPU seconds of a thread or process (Linux /proc), NaN elsewhere."""
    try:
        with open(stat_path) as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except Exception:
        return float("nan")


def _pct(values: list[float], q: float) -> float:
    v = sorted(values)
    return v[min(len(v) - 1, int(q * len(v)))]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--blocks", type=int, default=400)
    ap.add_argument("--block", type=int, default=50, help="calls per server per block")
    ap.add_argument("--seed", type=int, default=1)
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
        load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
        wall, cpu, block_med = anyio.run(measure, servers, args.blocks, args.block, args.mode, args.seed)
        load = max(load, os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan"))
        handles["reachable"].flush(10)
        med = {k: statistics.median(v) / 1000 for k, v in wall.items()}
        med_cpu = {k: statistics.median(v) / 1000 for k, v in cpu.items()}
        base = med["baseline"]
        print(f"mcp-obs telemetry overhead, tools/call over in-memory transport (mode={args.mode}), "
              f"{args.blocks} blocks x {args.block} calls per server in random order, python "
              f"{sys.version.split()[0]}, {os.cpu_count()} cpus, load average up to {load:.1f}")
        for k in servers:
            added = med[k] - base
            # paired: each block's median against the baseline's median in the same block
            paired = sorted((a - b) / 1000 for a, b in zip(block_med[k], block_med["baseline"]))
            p90, p99 = _pct(wall[k], 0.90) / 1000, _pct(wall[k], 0.99) / 1000
            print(f"  {k:12s} median {med[k]:7.1f} us  added {added:+6.1f} us ({added / base * 100:+5.1f}%)"
                  f"  paired per block {statistics.median(paired):+.1f} us (IQR {_pct(paired, 0.25):+.1f}.."
                  f"{_pct(paired, 0.75):+.1f})  p90 {p90:.0f} us  p99 {p99:.0f} us"
                  f"  main-thread cpu {med_cpu[k]:.1f} us ({med_cpu[k] - med_cpu['baseline']:+.1f})")
        st = handles["reachable"].stats()
        n = max(1, st["spans_exported"])
        exporter_cpu = _cpu_s(f"/proc/self/task/{handles['reachable']._exporter._thread.native_id}/stat")
        appliance_cpu = _cpu_s(f"/proc/{app.proc.pid}/stat")
        print(f"  reachable: exported {st['spans_exported']} spans in {st.get('export_requests', '?')} POSTs, "
              f"dropped {st['spans_dropped']}, circuit {st['circuit_state']}; CPU per exported span: "
              f"export thread {exporter_cpu / n * 1e6:.1f} us, appliance {appliance_cpu / n * 1e6:.1f} us")
        st = handles["unreachable"].stats()
        print(f"  unreachable: dropped {st['spans_dropped']} spans (queue full), failed exports "
              f"{st['failed_exports']}, circuit {st['circuit_state']}")
        for h in handles.values():
            h.shutdown(timeout=1)
    finally:
        app.stop()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
