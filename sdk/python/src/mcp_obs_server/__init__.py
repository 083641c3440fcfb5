"""mcp-obs server SDK: one call instruments an MCP server and sends its spans to mcp-obs.

    from mcp_obs_server import configure_mcp_telemetry
    telemetry = configure_mcp_telemetry(server)   # key/endpoint from MCPOBS_API_KEY / MCPOBS_ENDPOINT

See README.md for the options.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Mapping

from ._core import RequestInfo, TelemetryHandle, __version__, _install_sigterm_flush, _live_handles, build

__all__ = [
    "configure_mcp_telemetry",
    "configure_all_mcp_features",
    "TelemetryHandle",
    "McpFeatures",
    "RequestInfo",
    "__version__",
]


def _server_name(server: Any) -> str:
    for attr in ("name",):
        try:
            v = getattr(server, attr, None)
            if isinstance(v, str) and v:
                return v
        except Exception:
            pass
    low = getattr(server, "_mcp_server", None) or getattr(server, "_lowlevel_server", None)
    v = getattr(low, "name", None)
    return v if isinstance(v, str) and v else "mcp-server"


def _install(server: Any, observer: Any) -> str:
    # Order matters: standalone fastmcp wraps an mcp server; mcp 2.x has middleware; 1.x does not.
    from . import _fastmcp, _mcp1, _mcp2

    if _fastmcp.is_fastmcp_server(server):
        return _fastmcp.install(server, observer)
    if _mcp2.is_mcp2_server(server):
        return _mcp2.install(server, observer)
    if _mcp1.is_mcp1_server(server):
        return _mcp1.install(server, observer)
    raise TypeError(
        f"mcp_obs_server: unsupported server object {type(server).__module__}.{type(server).__qualname__}; "
        "supported: mcp 2.x MCPServer / Server, mcp 1.x FastMCP / Server, fastmcp 4.x FastMCP"
    )


def configure_mcp_telemetry(
    server: Any,
    *,
    api_key: str | None = None,
    endpoint: str | None = None,
    service_name: str | None = None,
    service_version: str | None = None,
    sampling: float | None = None,
    capture_arguments: bool = False,
    redact: Callable[[Any], Any] | None = None,
    identify: Callable[[RequestInfo], Any] | None = None,
    skip_methods: Iterable[str] = (),
    debug: bool = False,
) -> TelemetryHandle:
    """Instrument `server` so every incoming JSON-RPC request becomes one span in mcp-obs.

    Never raises into the caller for telemetry problems except an unsupported `server` object
    (a programming error worth seeing at startup).
    """
    observer, exporter = build(
        api_key=api_key,
        endpoint=endpoint,
        service_name=service_name,
        service_version=service_version,
        sampling=sampling,
        capture_arguments=capture_arguments,
        redact=redact,
        identify=identify,
        skip_methods=skip_methods,
        debug=debug,
        default_service_name=_server_name(server),
    )
    integration = _install(server, observer)
    handle = TelemetryHandle(observer, exporter, integration)
    previous = getattr(server, "_mcp_obs_handle", None)
    if isinstance(previous, TelemetryHandle):
        previous.shutdown(timeout=1.0)
    try:
        server._mcp_obs_handle = handle
    except Exception:
        pass
    exporter.start()
    _install_sigterm_flush()
    _live_handles.add(handle)
    _keepalive.append(handle)
    return handle


_keepalive: list[TelemetryHandle] = []  # handles live for the process (atexit flush uses a WeakSet)


def _install_auth(server: Any, settings: Any, verifier: Any) -> None:
    """Put the MCP SDK's own auth settings / token verifier where the server's HTTP app reads them.

    Raises TypeError when this kind of server has no such place: silently leaving a server
    unprotected after being asked for auth would be worse than failing at startup.
    """
    if settings is None and verifier is None:
        return
    s = getattr(server, "settings", None)
    if s is not None and hasattr(s, "auth") and (hasattr(server, "_token_verifier") or verifier is None):
        # mcp 2.x MCPServer, mcp 1.x FastMCP: read by their streamable_http_app() / sse_app()
        if settings is not None:
            s.auth = settings
        if verifier is not None:
            server._token_verifier = verifier
        return
    if verifier is not None and hasattr(server, "auth") and hasattr(server, "_mcp_server"):
        server.auth = verifier  # standalone fastmcp: an auth provider object
        return
    low_app = getattr(server, "streamable_http_app", None)
    if callable(low_app) and isinstance(getattr(server, "middleware", None), list):
        # mcp 2.x low-level Server: auth is an argument of streamable_http_app(); make the
        # configured settings its defaults (arguments the caller passes still win)
        if getattr(low_app, "_mcp_obs_auth", False):
            low_app = low_app.__wrapped__

        def streamable_http_app(*args: Any, **kwargs: Any) -> Any:
            if settings is not None:
                kwargs.setdefault("auth", settings)
            if verifier is not None:
                kwargs.setdefault("token_verifier", verifier)
            return low_app(*args, **kwargs)

        streamable_http_app._mcp_obs_auth = True  # type: ignore[attr-defined]
        streamable_http_app.__wrapped__ = low_app  # type: ignore[attr-defined]
        server.streamable_http_app = streamable_http_app
        return
    raise TypeError(
        f"mcp_obs_server: cannot install auth on {type(server).__module__}.{type(server).__qualname__}: "
        "it has no auth settings of its own (mcp 1.x low-level Server: add the MCP SDK's "
        "AuthenticationMiddleware(BearerAuthBackend(verifier)) and AuthContextMiddleware to your "
        "Starlette app; telemetry then attributes requests to the token)"
    )


@dataclass
class McpFeatures:
    """What `configure_all_mcp_features` turned on. More features join here later."""

    telemetry: TelemetryHandle | None = None
    auth: Any = None
    extra: dict[str, Any] = field(default_factory=dict)


def configure_all_mcp_features(server: Any, *, telemetry: Any = True, auth: Any = None) -> McpFeatures:
    """Single entry point: the server's auth settings plus telemetry (and future features).

    `telemetry`: True (defaults, env vars), False/None (off), or a mapping of
    `configure_mcp_telemetry` keyword arguments.
    `auth`: None (leave the server's auth as is), or a mapping / object with `settings`
    (the SDK's `AuthSettings`) and `token_verifier` (its `TokenVerifier`). They are installed on
    the server (mcp 2.x `MCPServer` / mcp 1.x `FastMCP`: their settings; mcp 2.x low-level
    `Server`: defaults of its `streamable_http_app()`; standalone fastmcp: `token_verifier` as
    its auth provider) so the MCP SDK's own bearer-token middleware protects the HTTP
    transports, and telemetry attributes each request to the token's subject / client id.
    Raises TypeError for a server with no auth settings of its own (mcp 1.x low-level Server).
    """
    features = McpFeatures()
    if auth is not None:
        settings = auth.get("settings") if isinstance(auth, Mapping) else getattr(auth, "settings", None)
        verifier = (
            auth.get("token_verifier") if isinstance(auth, Mapping) else getattr(auth, "token_verifier", None)
        )
        _install_auth(server, settings, verifier)
        features.auth = auth
    if telemetry:
        kwargs = dict(telemetry) if isinstance(telemetry, Mapping) else {}
        features.telemetry = configure_mcp_telemetry(server, **kwargs)
    return features
