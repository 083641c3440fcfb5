"""Runs the dashboard's Python snippet as shown (module code, configure_mcp_telemetry included),
calls its tool in process with the MCP client, and flushes telemetry to the appliance.

Usage: python drive_snippet.py SNIPPET.py CALLS
"""

import asyncio
import runpy
import sys

# Not "__main__": the snippet's `mcp.run("stdio")` stays unstarted; everything above it runs.
ns = runpy.run_path(sys.argv[1], run_name="mcp_obs_snippet")
server, telemetry = ns["mcp"], ns["telemetry"]


async def main(calls: int) -> None:
    from mcp import Client

    async with Client(server, mode="legacy") as client:
        for i in range(calls):
            await client.call_tool("add", {"a": i, "b": 1})


asyncio.run(main(int(sys.argv[2])))
if not telemetry.flush(10):
    sys.exit("telemetry did not flush")
stats = telemetry.stats()
print(f"exported {stats['spans_exported']} spans")
if stats["spans_exported"] < int(sys.argv[2]):
    sys.exit(f"expected at least {sys.argv[2]} spans exported: {stats}")
