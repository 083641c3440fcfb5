"""Integration with the official `mcp` SDK 2.x (`MCPServer` and the low-level `Server`).

`Server.middleware` wraps every inbound message (initialize, unknown methods, params validation,
the handler call), so one context-tier middleware sees every request. The SDK ships
`OpenTelemetryMiddleware` in that list by default; we put ours in its place so there is exactly
one SERVER span per request, with the same attributes plus what mcp-obs needs.
"""

from __future__ import annotations

from typing import Any, Mapping

from ._core import Observer, record_exception_on_current

_HTTP_KINDS = ("streamable-http", "sse", "http")


def _lowlevel(server: Any) -> Any:
    low = getattr(server, "_lowlevel_server", None)
    return low if low is not None else server


def is_mcp2_server(server: Any) -> bool:
    try:
        from mcp.server.context import ServerMiddleware  # noqa: F401  (2.x only)
    except Exception:
        return False
    return isinstance(getattr(_lowlevel(server), "middleware", None), list)


class McpObsMiddleware:
    """`ServerMiddleware` that records one mcp-obs span per inbound JSON-RPC request."""

    def __init__(self, observer: Observer) -> None:
        self.observer = observer
        from mcp.shared.exceptions import MCPError
        from pydantic import ValidationError

        self._mcp_error = MCPError
        self._validation_error = ValidationError

    async def __call__(self, ctx: Any, call_next: Any) -> Any:
        obs = self.observer
        if ctx.request_id is None:  # a notification, not a request
            return await call_next(ctx)
        try:
            started = self._start(ctx)
        except Exception as e:
            obs.hook_errors += 1
            obs.log(f"hook error: {e!r}")
            started = None
        if started is None:
            return await call_next(ctx)
        try:
            result = await call_next(ctx)
        except self._mcp_error as e:
            _safe(obs, obs.jsonrpc_error, started, e.error.code, e.error.message)
            raise
        except self._validation_error:
            _safe(obs, obs.jsonrpc_error, started, -32602, "Invalid request parameters")
            raise
        except Exception as e:
            _safe(obs, obs.exception, started, e, status_code=_unhandled_error_code(ctx))
            raise
        except BaseException:
            _safe(obs, obs.cancelled, started)
            raise
        pv = None
        if ctx.method == "initialize" and isinstance(result, Mapping):
            pv = result.get("protocolVersion")
        _safe(obs, obs.ok, started, result, protocol_version=pv)
        return result

    def _start(self, ctx: Any) -> Any:
        method = ctx.method
        params = ctx.params
        session = ctx.session
        conn = getattr(session, "_connection", None)
        request = ctx.request
        headers = None
        transport = None
        access_token = None
        session_id = getattr(conn, "session_id", None)
        dctx = getattr(session, "_request_outbound", None)
        tctx = getattr(dctx, "transport", None) if dctx is not None else None
        kind = getattr(tctx, "kind", None)
        if request is not None and hasattr(request, "scope"):
            transport = "tcp"
            headers = request.headers
            user = request.scope.get("user")
            access_token = getattr(user, "access_token", None)
        elif kind in _HTTP_KINDS:
            transport = "tcp"
            headers = getattr(tctx, "headers", None)
        elif kind == "jsonrpc":
            transport = "pipe"
        if access_token is None and transport == "tcp":
            access_token = _contextvar_token()
        if session_id is None and headers is not None:
            session_id = headers.get("mcp-session-id")
        if session_id is None and request is not None:
            try:
                session_id = request.query_params.get("session_id")  # SSE: POST /messages/?session_id=
            except Exception:
                session_id = None
        if method == "initialize" and params:
            client_info = params.get("clientInfo")
        else:
            cp = getattr(conn, "client_params", None)
            client_info = getattr(cp, "client_info", None)
        obs = self.observer
        rec = obs.begin(
            method,
            params,
            ctx.request_id,
            meta=ctx.meta,
            protocol_version=ctx.protocol_version,
            transport=transport,
            session_id=session_id,
            client_info=client_info,
            access_token=access_token,
            headers=headers,
            raw=ctx,
        )
        return None if rec is None else (rec, obs.activate(rec))


def _unhandled_error_code(ctx: Any) -> int | None:
    """The JSON-RPC code mcp 2.x answers a handler exception that is not an `MCPError` with:
    0 on the handshake-era dispatcher (kept for 1.x compatibility), -32603 (internal error) on the
    modern per-request era (`handler_exception_to_error_data` / `modern_error_data`)."""
    try:
        from mcp_types.version import MODERN_PROTOCOL_VERSIONS

        return -32603 if ctx.protocol_version in MODERN_PROTOCOL_VERSIONS else 0
    except Exception:
        return None


def _contextvar_token() -> Any:
    try:
        from mcp.server.auth.middleware.auth_context import get_access_token

        return get_access_token()
    except Exception:
        return None


def _safe(obs: Observer, fn: Any, *args: Any, **kw: Any) -> None:
    try:
        fn(*args, **kw)
    except Exception as e:
        obs.hook_errors += 1
        obs.log(f"hook error: {e!r}")


def install(server: Any, observer: Observer) -> str:
    """Replace the SDK's OpenTelemetryMiddleware (or prepend) with ours. Idempotent per server."""
    low = _lowlevel(server)
    chain: list = low.middleware
    try:
        from mcp.server._otel import OpenTelemetryMiddleware
    except Exception:  # pragma: no cover - moved in a later 2.x
        OpenTelemetryMiddleware = ()  # type: ignore[assignment]
    _wrap_tool_calls(server)
    mw = McpObsMiddleware(observer)
    for i, m in enumerate(chain):
        if isinstance(m, McpObsMiddleware):
            chain[i] = mw  # re-configuration replaces the previous instance
            return "mcp2"
    native = [i for i, m in enumerate(chain) if OpenTelemetryMiddleware and isinstance(m, OpenTelemetryMiddleware)]
    if native:
        chain[native[0]] = mw
        for i in reversed(native[1:]):
            del chain[i]
    else:
        chain.insert(0, mw)
    return "mcp2"


def _wrap_tool_calls(server: Any) -> None:
    """MCPServer turns a raising tool into an `isError` result; record the exception as a span event.

    Wraps this instance's `call_tool` only (observes and re-raises unchanged).
    """
    orig = getattr(server, "call_tool", None)
    tm = getattr(server, "_tool_manager", None)
    if orig is None or tm is None or getattr(orig, "_mcp_obs_wrapped", False):
        return

    async def call_tool(name: str, *args: Any, **kwargs: Any) -> Any:
        try:
            return await orig(name, *args, **kwargs)
        except Exception as exc:
            try:
                if tm.get_tool(name) is not None:
                    cause = exc.__cause__ if isinstance(exc.__cause__, Exception) else exc
                    record_exception_on_current(cause)
            except Exception:
                pass
            raise

    call_tool._mcp_obs_wrapped = True  # type: ignore[attr-defined]
    try:
        server.call_tool = call_tool
    except Exception:
        pass
