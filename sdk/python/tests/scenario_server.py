"""The conformance server as a process: `python scenario_server.py FLAVOUR MODE [PORT]`.

FLAVOUR: mcp2 | mcp2-lowlevel | mcp1-fastmcp | mcp1-lowlevel | fastmcp (see lines.py).
MODE: stdio | http (streamable HTTP at /mcp) | stateless (the same, stateless) | sse (/sse + /messages/) |
      mounted (streamable HTTP inside a Starlette app at /app/mcp, next to /health) |
      flask (the mounted app plus a Flask app at /flask, through Starlette's WSGI middleware).
Telemetry settings come from the environment (MCPOBS_API_KEY, MCPOBS_ENDPOINT, MCPOBS_*).
SCENARIO_AUTH=1 turns on the MCP library's own bearer-token auth with the tokens from scenario.json.
SCENARIO_DEBUG=1 passes debug=True (telemetry logs go to stderr, never stdout).
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from lines import build_server  # noqa: E402
from scenario import SCENARIO  # noqa: E402

from mcp_obs_server import configure_all_mcp_features  # noqa: E402


def _token(token: str, cls):
    for t in SCENARIO["auth"]["tokens"]:
        if t["token"] == token:
            return cls(token=token, client_id=t["client_id"], scopes=t["scopes"], subject=t["subject"])
    return None


class ScenarioTokenVerifier:
    """The MCP SDK's TokenVerifier protocol."""

    async def verify_token(self, token: str):
        from mcp.server.auth.provider import AccessToken

        return _token(token, AccessToken)


def _fastmcp_verifier():
    from fastmcp.server.auth import AccessToken, TokenVerifier

    class ScenarioFastMCPVerifier(TokenVerifier):
        async def verify_token(self, token: str):
            return _token(token, AccessToken)

    return ScenarioFastMCPVerifier()


def _auth(flavour: str, port: str):
    if os.environ.get("SCENARIO_AUTH") != "1":
        return None
    if flavour == "fastmcp":
        return {"token_verifier": _fastmcp_verifier()}
    if flavour == "mcp1-lowlevel":
        return None  # installed as Starlette middleware in _lowlevel_app (the low-level Server has no auth settings)
    if flavour == "mcp2-lowlevel":  # configure_all_mcp_features makes them streamable_http_app()'s defaults
        from mcp.server.auth.settings import AuthSettings

        return {
            "settings": AuthSettings(
                issuer_url="http://127.0.0.1:1/issuer", resource_server_url=f"http://127.0.0.1:{port}/mcp"
            ),
            "token_verifier": ScenarioTokenVerifier(),
        }
    from mcp.server.auth.settings import AuthSettings

    return {
        "settings": AuthSettings(
            issuer_url="http://127.0.0.1:1/issuer", resource_server_url=f"http://127.0.0.1:{port}/mcp"
        ),
        "token_verifier": ScenarioTokenVerifier(),
    }


def _lowlevel_app(server, sse: bool, stateless: bool = False):
    """mcp 1.x low-level Server over HTTP, wired by hand as its docs show (for SSE, also the mcp
    2.x low-level Server, which builds only a streamable HTTP app itself)."""
    import contextlib

    from starlette.applications import Starlette
    from starlette.middleware import Middleware
    from starlette.routing import Mount, Route

    middleware = []
    if os.environ.get("SCENARIO_AUTH") == "1":
        from mcp.server.auth.middleware.auth_context import AuthContextMiddleware
        from mcp.server.auth.middleware.bearer_auth import BearerAuthBackend
        from starlette.middleware.authentication import AuthenticationMiddleware

        middleware = [
            Middleware(AuthenticationMiddleware, backend=BearerAuthBackend(ScenarioTokenVerifier())),
            Middleware(AuthContextMiddleware),
        ]
    if sse:
        from mcp.server.sse import SseServerTransport
        from starlette.responses import Response

        transport = SseServerTransport("/messages/")

        async def handle_sse(request):
            async with transport.connect_sse(request.scope, request.receive, request._send) as streams:
                await server.run(streams[0], streams[1], server.create_initialization_options())
            return Response()

        return Starlette(
            routes=[Route("/sse", endpoint=handle_sse, methods=["GET"]), Mount("/messages/", app=transport.handle_post_message)],
            middleware=middleware,
        )
    from mcp.server.streamable_http_manager import StreamableHTTPSessionManager

    manager = StreamableHTTPSessionManager(app=server, stateless=stateless)

    async def handle(scope, receive, send):
        await manager.handle_request(scope, receive, send)

    @contextlib.asynccontextmanager
    async def lifespan(app):
        async with manager.run():
            yield

    return Starlette(routes=[Mount("/mcp", app=handle)], middleware=middleware, lifespan=lifespan)


def http_app(flavour: str, server, mode: str):
    sse = mode == "sse"
    stateless = mode == "stateless"
    if flavour == "mcp1-lowlevel":
        return _lowlevel_app(server, sse, stateless)
    if flavour == "fastmcp":
        return server.http_app(path="/sse" if sse else "/mcp", transport="sse" if sse else "http",
                               stateless_http=stateless)
    if sse:
        return _lowlevel_app(server, sse) if flavour == "mcp2-lowlevel" else server.sse_app()
    if stateless:
        if flavour == "mcp1-fastmcp":
            server.settings.stateless_http = True
            return server.streamable_http_app()
        return server.streamable_http_app(stateless_http=True)
    return server.streamable_http_app()


def mounted_app(flavour: str, server):
    """The MCP app mounted inside a bigger Starlette app (the FastAPI / Starlette pattern)."""
    from starlette.applications import Starlette
    from starlette.responses import PlainTextResponse
    from starlette.routing import Mount, Route

    inner = http_app(flavour, server, "http")

    async def health(request):
        return PlainTextResponse("ok")

    return Starlette(
        routes=[Route("/health", health), Mount("/app", app=inner)],
        lifespan=lambda app: inner.router.lifespan_context(inner),  # mounted apps' lifespans do not run by themselves
    )


def flask_app(flavour: str, server):
    """A Flask (WSGI) app and the MCP app served side by side by one ASGI server: Flask at /flask,
    MCP at /app/mcp (the usual way to add MCP to a Flask deployment)."""
    from flask import Flask
    from starlette.middleware.wsgi import WSGIMiddleware
    from starlette.routing import Mount

    flask = Flask("legacy")

    @flask.route("/hello")
    def hello():
        return "hello from flask"

    app = mounted_app(flavour, server)
    app.router.routes.insert(0, Mount("/flask", app=WSGIMiddleware(flask)))
    return app


def run_stdio(flavour: str, server) -> None:
    if flavour in ("mcp1-lowlevel", "mcp2-lowlevel"):
        import anyio
        from mcp.server.stdio import stdio_server

        async def main():
            async with stdio_server() as (r, w):
                await server.run(r, w, server.create_initialization_options())

        anyio.run(main)
    elif flavour == "fastmcp":
        server.run("stdio", show_banner=False)
    else:
        server.run("stdio")


def main() -> None:
    flavour, mode = sys.argv[1], sys.argv[2]
    port = sys.argv[3] if len(sys.argv) > 3 else "0"
    server = build_server(flavour)
    configure_all_mcp_features(
        server,
        telemetry={"debug": os.environ.get("SCENARIO_DEBUG") == "1", "service_version": "test"},
        auth=_auth(flavour, port),
    )
    if mode == "stdio":
        run_stdio(flavour, server)
        return
    import uvicorn

    if mode == "mounted":
        app = mounted_app(flavour, server)
    elif mode == "flask":
        app = flask_app(flavour, server)
    else:
        app = http_app(flavour, server, mode)
    uvicorn.run(app, host="127.0.0.1", port=int(port), log_level="warning")


if __name__ == "__main__":
    main()
