"""Integration with the official `mcp` SDK 1.x (`FastMCP` and the low-level `Server`).

mcp 1.x has no middleware. Every transport (stdio, SSE, streamable HTTP, in-memory) ends in
`Server.run(read_stream, write_stream, ...)`, and every JSON-RPC request of the session passes
through those two streams: the request in, exactly one response (result or error) out. That
includes what never reaches a handler: `initialize` (answered by `ServerSession`), unknown
methods and invalid params (answered by the session's request validation). So the hook is:

* `run` (wrapped on this server instance): the streams are wrapped; an incoming request opens a
  span record, the outgoing response with the same id closes it. Requests still in flight when
  the transport closes end as `cancelled`.
* `_handle_request` (wrapped on the instance): makes the request's span the current context
  while its handler runs (so app spans become children and exceptions can be attached).
* `request_handlers`: handler exceptions other than `McpError` (1.x answers them with code 0)
  become the span's `error.type` (class name) plus an `exception` event.
* `_make_error_result`: a tool that raised (turned into an `isError` result by the SDK) adds an
  `exception` event.

Nothing here changes what the server answers: every wrapper observes and passes through.
"""

from __future__ import annotations

import sys
from typing import Any, Mapping

from ._core import Observer, current_record, record_exception_on_current

_ATTR = "_mcp_obs_observer"


def _lowlevel(server: Any) -> Any:
    low = getattr(server, "_mcp_server", None)
    return low if low is not None else server


def is_mcp1_server(server: Any) -> bool:
    try:
        from mcp.server.lowlevel import Server
        from mcp.shared.session import RequestResponder  # noqa: F401  (1.x only)
    except Exception:
        return False
    low = _lowlevel(server)
    return isinstance(low, Server) and isinstance(getattr(low, "request_handlers", None), dict)


def install(server: Any, observer: Observer) -> str:
    low = _lowlevel(server)
    already = getattr(low, _ATTR, None) is not None
    setattr(low, _ATTR, observer)  # re-configuration swaps the observer the wrappers read
    if already:
        return "mcp1"
    _wrap_run(low)
    _wrap_handle_request(low)
    _wrap_handlers(low)
    _wrap_make_error_result(low)
    return "mcp1"


# --------------------------------------------------------------------------- per-session state
class _Session:
    """State of one `Server.run` call (one MCP session): in-flight spans by request id."""

    __slots__ = ("low", "pending", "client_info", "protocol_version")

    def __init__(self, low: Any) -> None:
        self.low = low
        self.pending: dict[Any, Any] = {}
        self.client_info: Any = None
        self.protocol_version: str | None = None

    @property
    def observer(self) -> Observer | None:
        return getattr(self.low, _ATTR, None)

    def incoming(self, message: Any) -> None:
        obs = self.observer
        if obs is None or obs.closed:
            return
        try:
            root = getattr(getattr(message, "message", None), "root", None)
            method = getattr(root, "method", None)
            if not isinstance(method, str) or not hasattr(root, "id") or hasattr(root, "result"):
                return  # notification, response or exception: not a request
            request_id = root.id
            params = root.params if isinstance(getattr(root, "params", None), Mapping) else None
            request = getattr(getattr(message, "metadata", None), "request_context", None)
            headers = None
            transport = "pipe"
            session_id = None
            access_token = None
            if request is not None and hasattr(request, "scope"):
                transport = "tcp"
                headers = request.headers
                session_id = headers.get("mcp-session-id")
                if session_id is None:
                    try:
                        session_id = request.query_params.get("session_id")  # SSE
                    except Exception:
                        session_id = None
                user = request.scope.get("user")
                access_token = getattr(user, "access_token", None)
            pv = self.protocol_version
            if pv is None and headers is not None:
                pv = headers.get("mcp-protocol-version")
            client_info = self.client_info
            if method == "initialize" and params:
                client_info = params.get("clientInfo")
                self.client_info = client_info
            rec = obs.begin(
                method,
                params,
                request_id,
                protocol_version=pv,
                transport=transport,
                session_id=session_id,
                client_info=client_info,
                access_token=access_token,
                headers=headers,
                raw=message,
            )
            if rec is not None:
                prev = self.pending.pop(request_id, None)
                if prev is not None:  # a client reusing an id in flight: close the older span
                    obs.cancelled((prev, None))
                self.pending[request_id] = rec
        except Exception as e:
            obs.hook_errors += 1
            obs.log(f"hook error: {e!r}")

    def outgoing(self, message: Any) -> None:
        if not self.pending:
            return
        obs = self.observer
        try:
            root = getattr(getattr(message, "message", None), "root", None)
            if root is None or hasattr(root, "method"):
                return  # a request or notification of the server's own
            rec = self.pending.pop(getattr(root, "id", None), None)
            if rec is None or obs is None:
                return
            error = getattr(root, "error", None)
            if error is None:
                result = getattr(root, "result", None)
                pv = None
                if rec.attributes.get("mcp.method.name") == "initialize" and isinstance(result, Mapping):
                    pv = result.get("protocolVersion")
                    if isinstance(pv, str):
                        self.protocol_version = pv
                obs.ok((rec, None), result, protocol_version=pv)
                return
            code = getattr(error, "code", None)
            msg = getattr(error, "message", None)
            if code == 0 and msg == "Request cancelled":
                obs.cancelled((rec, None))
            else:
                # a handler exception noted by _note_exception keeps its class name as error.type
                obs.jsonrpc_error((rec, None), code, msg, error_type=rec.attributes.get("error.type"))
        except Exception as e:
            if obs is not None:
                obs.hook_errors += 1
                obs.log(f"hook error: {e!r}")

    def close(self) -> None:
        obs = self.observer
        pending, self.pending = self.pending, {}
        for rec in pending.values():
            try:
                if obs is not None:
                    obs.cancelled((rec, None))
            except Exception:
                pass


class _ReadStream:
    """Pass-through proxy of the server's read stream that reports incoming requests."""

    def __init__(self, inner: Any, session: _Session) -> None:
        self._inner = inner
        self._mcp_obs_session = session

    async def receive(self) -> Any:
        item = await self._inner.receive()
        self._mcp_obs_session.incoming(item)
        return item

    def __aiter__(self) -> "_ReadStream":
        return self

    async def __anext__(self) -> Any:
        from anyio import EndOfStream

        try:
            return await self.receive()
        except EndOfStream:
            raise StopAsyncIteration from None

    async def __aenter__(self) -> "_ReadStream":
        await self._inner.__aenter__()
        return self

    async def __aexit__(self, *exc: Any) -> Any:
        return await self._inner.__aexit__(*exc)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


class _WriteStream:
    """Pass-through proxy of the server's write stream that closes spans on responses."""

    def __init__(self, inner: Any, session: _Session) -> None:
        self._inner = inner
        self._mcp_obs_session = session

    async def send(self, item: Any) -> None:
        self._mcp_obs_session.outgoing(item)  # before sending: the client may return right after
        await self._inner.send(item)

    def send_nowait(self, item: Any) -> None:
        self._mcp_obs_session.outgoing(item)
        self._inner.send_nowait(item)

    async def __aenter__(self) -> "_WriteStream":
        await self._inner.__aenter__()
        return self

    async def __aexit__(self, *exc: Any) -> Any:
        return await self._inner.__aexit__(*exc)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


# --------------------------------------------------------------------------- instance wrappers
def _wrap_run(low: Any) -> None:
    orig = low.run

    async def run(read_stream: Any, write_stream: Any, *args: Any, **kwargs: Any) -> Any:
        session = None
        try:
            if getattr(low, _ATTR, None) is not None:
                session = _Session(low)
                read_stream = _ReadStream(read_stream, session)
                write_stream = _WriteStream(write_stream, session)
        except Exception:
            session = None
        try:
            return await orig(read_stream, write_stream, *args, **kwargs)
        finally:
            if session is not None:
                session.close()

    run._mcp_obs_wrapped = True  # type: ignore[attr-defined]
    low.run = run


def _session_state(session: Any) -> _Session | None:
    return getattr(getattr(session, "_read_stream", None), "_mcp_obs_session", None)


def _wrap_handle_request(low: Any) -> None:
    orig = low._handle_request

    async def _handle_request(message: Any, req: Any, session: Any, *args: Any, **kwargs: Any) -> Any:
        tokens = None
        obs = None
        try:
            state = _session_state(session)
            rec = state.pending.get(message.request_id) if state is not None else None
            if rec is not None:
                obs = state.observer
                tokens = obs.activate(rec) if obs is not None else None
        except Exception:
            tokens = None
        try:
            return await orig(message, req, session, *args, **kwargs)
        finally:
            if tokens is not None:
                obs.deactivate(tokens)  # type: ignore[union-attr]

    low._handle_request = _handle_request


class _ObservedHandlers(dict):
    """`request_handlers` whose handlers note non-MCP exceptions on the current span."""

    def get(self, key: Any, default: Any = None) -> Any:
        handler = super().get(key, default)
        if handler is None or handler is default:
            return handler
        return _observed(handler)


def _observed(handler: Any) -> Any:
    async def observed(req: Any) -> Any:
        try:
            return await handler(req)
        except Exception as exc:
            _note_exception(exc)
            raise

    return observed


def _note_exception(exc: BaseException) -> None:
    try:
        from mcp.shared.exceptions import McpError

        if isinstance(exc, McpError):
            return  # answered with its own JSON-RPC code
        rec = current_record.get()
        if rec is None:
            return
        rec.attributes["error.type"] = type(exc).__qualname__
        rec.status_error = True
        rec.status_message = str(exc)[:1024]
        rec.record_exception(exc)
    except Exception:
        pass


def _wrap_handlers(low: Any) -> None:
    try:
        low.request_handlers = _ObservedHandlers(low.request_handlers)
    except Exception:
        pass


def _wrap_make_error_result(low: Any) -> None:
    """The SDK turns a raising tool into an `isError` result inside an `except` block."""
    orig = getattr(low, "_make_error_result", None)
    if orig is None:
        return

    def _make_error_result(*args: Any, **kwargs: Any) -> Any:
        try:
            exc = sys.exc_info()[1]
            if exc is not None:
                cause = exc.__cause__ if isinstance(exc.__cause__, Exception) else None
                if cause is not None:  # FastMCP: ToolError raised from the tool's exception
                    record_exception_on_current(cause)
                elif type(exc).__name__ != "ToolError":  # not FastMCP's "Unknown tool" and the like
                    record_exception_on_current(exc)
        except Exception:
            pass
        return orig(*args, **kwargs)

    low._make_error_result = _make_error_result
