"""The conformance server as a process: `python scenario_server.py stdio|http PORT`.

Telemetry settings come from the environment (MCPOBS_API_KEY, MCPOBS_ENDPOINT, MCPOBS_*).
SCENARIO_AUTH=1 turns on the MCP SDK's bearer-token auth with the tokens from scenario.json.
SCENARIO_DEBUG=1 passes debug=True (telemetry logs go to stderr, never stdout).
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from scenario import SCENARIO, build_mcp2_server  # noqa: E402

from mcp_obs_server import configure_all_mcp_features  # noqa: E402


class ScenarioTokenVerifier:
    async def verify_token(self, token: str):
        from mcp.server.auth.provider import AccessToken

        for t in SCENARIO["auth"]["tokens"]:
            if t["token"] == token:
                return AccessToken(token=token, client_id=t["client_id"], scopes=t["scopes"], subject=t["subject"])
        return None


def main() -> None:
    mode = sys.argv[1]
    server = build_mcp2_server()
    auth = None
    if os.environ.get("SCENARIO_AUTH") == "1":
        from mcp.server.auth.settings import AuthSettings

        port = sys.argv[2]
        auth = {
            "settings": AuthSettings(
                issuer_url="http://127.0.0.1:1/issuer", resource_server_url=f"http://127.0.0.1:{port}/mcp"
            ),
            "token_verifier": ScenarioTokenVerifier(),
        }
    configure_all_mcp_features(
        server,
        telemetry={"debug": os.environ.get("SCENARIO_DEBUG") == "1", "service_version": "test"},
        auth=auth,
    )
    if mode == "stdio":
        server.run("stdio")
    else:
        import uvicorn

        app = server.streamable_http_app()
        uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[2]), log_level="warning")


if __name__ == "__main__":
    main()
