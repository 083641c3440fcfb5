"""Integration with the standalone `fastmcp` package (4.x, built on `mcp` 2.x).

fastmcp 4.x runs on the mcp 2.x low-level `Server` (`FastMCP._mcp_server`): it removes the SDK's
`OpenTelemetryMiddleware` and opens its own SERVER span per request at its middleware seam
(`fastmcp.server.telemetry.seam_span`, enriched by `server_span`). We *replace* that span:

* our mcp 2.x `McpObsMiddleware` goes first in the low-level server's middleware list, so it sees
  every inbound request (initialize, unknown methods, auth rejections, handler errors);
* inside it, the request runs under `suppress_fastmcp_telemetry()`, which turns fastmcp's native
  spans into propagation only for that request (no second SERVER span in any backend the app's
  global tracer provider exports to; `_meta` trace context and child spans still work: our span
  is the current one);
* a fastmcp middleware records the exception behind a tool's `isError` result as a span event.
"""

from __future__ import annotations

from contextlib import nullcontext
from typing import Any

from ._core import Observer, record_exception_on_current
from ._mcp2 import McpObsMiddleware


def is_fastmcp_server(server: Any) -> bool:
    try:
        from fastmcp import FastMCP
    except Exception:
        return False
    return isinstance(server, FastMCP) and isinstance(getattr(server._mcp_server, "middleware", None), list)


def _suppress() -> Any:
    try:
        from fastmcp.telemetry import suppress_fastmcp_telemetry

        return suppress_fastmcp_telemetry()
    except Exception:
        return nullcontext()


class FastMCPObsMiddleware(McpObsMiddleware):
    async def __call__(self, ctx: Any, call_next: Any) -> Any:
        if ctx.request_id is None:
            return await call_next(ctx)

        async def suppressed(c: Any) -> Any:
            try:
                cm = _suppress()
                cm.__enter__()
            except Exception:
                cm = None
            try:
                return await call_next(c)
            finally:
                if cm is not None:
                    try:
                        cm.__exit__(None, None, None)
                    except Exception:
                        pass

        return await super().__call__(ctx, suppressed)


def _tool_exception_middleware() -> Any:
    from fastmcp.server.middleware import Middleware

    class McpObsToolErrors(Middleware):
        """Adds the exception behind an `isError` tool result to the current mcp-obs span."""

        async def on_call_tool(self, context: Any, call_next: Any) -> Any:
            try:
                return await call_next(context)
            except Exception as exc:
                cause = exc.__cause__ if isinstance(exc.__cause__, Exception) else None
                if cause is not None:  # a tool that raised (fastmcp wraps it in ToolError)
                    record_exception_on_current(cause)
                raise

    return McpObsToolErrors()


def install(server: Any, observer: Observer) -> str:
    chain: list = server._mcp_server.middleware
    mw = FastMCPObsMiddleware(observer)
    for i, m in enumerate(chain):
        if isinstance(m, McpObsMiddleware):
            chain[i] = mw
            break
    else:
        chain.insert(0, mw)
        try:
            server.add_middleware(_tool_exception_middleware())
        except Exception:
            pass
    return "fastmcp"
