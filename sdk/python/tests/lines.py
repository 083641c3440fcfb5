"""The MCP library flavours the tests run against, behind one small interface.

A *line* is one venv (run-tests.sh: mcp2, mcp1, fastmcp); a line has one or more server
*flavours*. Every flavour builds the conformance server, serves it (stdio / streamable HTTP / SSE,
in a subprocess: scenario_server.py), and the tests talk to it with the installed `mcp` client
(1.x or 2.x API) through `connect()`, which sends raw JSON-RPC requests (one step = one request).
"""

from __future__ import annotations

import importlib.metadata
import os
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

from scenario import SCENARIO


def mcp_major() -> int:
    try:
        return int(importlib.metadata.version("mcp").split(".")[0])
    except Exception:
        return 0


def _has(dist: str) -> bool:
    try:
        importlib.metadata.version(dist)
        return True
    except Exception:
        return False


LINE_FLAVOURS = {"mcp2": ["mcp2", "mcp2-lowlevel"], "mcp1": ["mcp1-fastmcp", "mcp1-lowlevel"], "fastmcp": ["fastmcp"]}


def current_line() -> str:
    line = os.environ.get("MCPOBS_SDK_LINE")
    if line:
        return line
    if _has("fastmcp"):
        return "fastmcp"
    return "mcp1" if mcp_major() == 1 else "mcp2"


def flavours() -> list[str]:
    return LINE_FLAVOURS.get(current_line(), [])


def primary_flavour() -> str:
    return flavours()[0]


class RpcError(Exception):
    def __init__(self, code: int, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code


@dataclass
class Target:
    """How to reach a server: in-process object, stdio command, or an HTTP URL."""

    server: Any = None
    command: str | None = None
    args: list[str] = field(default_factory=list)
    env: dict[str, str] | None = None
    url: str | None = None
    sse: bool = False
    headers: dict[str, str] | None = None


# ------------------------------------------------------------------------------------- clients
@asynccontextmanager
async def connect(target: Target, flavour: str):
    """Yields `request(method, params) -> dict` (raises RpcError). `initialize` is already done."""
    if mcp_major() >= 2:
        async with _connect2(target, flavour) as req:
            yield req
    else:
        async with _connect1(target) as req:
            yield req


@asynccontextmanager
async def _connect2(target: Target, flavour: str):
    from mcp import Client
    from mcp.shared.exceptions import MCPError

    if target.server is not None:
        server = target.server._mcp_server if flavour == "fastmcp" else target.server
        src: Any = server
    elif target.command:
        from mcp.client.stdio import StdioServerParameters

        src = StdioServerParameters(command=target.command, args=target.args, env=target.env)
    elif target.sse:
        from mcp.client.sse import sse_client

        src = sse_client(target.url, headers=target.headers or {})
    else:
        import httpx2
        from mcp.client.streamable_http import streamable_http_client

        http = httpx2.AsyncClient(headers=target.headers or {}, timeout=30)
        src = streamable_http_client(target.url, http_client=http)
    async with Client(src, mode="legacy") as client:
        d = client.session._dispatcher

        async def request(method: str, params: dict | None = None) -> Any:
            try:
                return await d.send_raw_request(method, params, None)
            except MCPError as e:
                raise RpcError(e.error.code, e.error.message) from None

        yield request


@asynccontextmanager
async def _connect1(target: Target):
    from mcp import ClientSession
    from mcp.shared.exceptions import McpError
    from pydantic import BaseModel, ConfigDict

    class Raw(BaseModel):
        method: str
        params: dict | None = None

    class AnyResult(BaseModel):
        model_config = ConfigDict(extra="allow")

    def requester(session: Any):
        async def request(method: str, params: dict | None = None) -> Any:
            try:
                res = await session.send_request(Raw(method=method, params=params), AnyResult)
            except McpError as e:
                raise RpcError(e.error.code, e.error.message) from None
            return res.model_dump()

        return request

    if target.server is not None:
        from mcp.shared.memory import create_connected_server_and_client_session

        async with create_connected_server_and_client_session(target.server) as session:
            yield requester(session)
        return
    if target.command:
        from mcp.client.stdio import StdioServerParameters, stdio_client

        cm: Any = stdio_client(StdioServerParameters(command=target.command, args=target.args, env=target.env))
    elif target.sse:
        from mcp.client.sse import sse_client

        cm = sse_client(target.url, headers=target.headers or {})
    else:
        import httpx
        from mcp.client.streamable_http import streamable_http_client

        cm = streamable_http_client(target.url, http_client=httpx.AsyncClient(headers=target.headers or {}, timeout=30))
    async with cm as streams:
        async with ClientSession(streams[0], streams[1]) as session:
            await session.initialize()
            yield requester(session)


# ------------------------------------------------------------------------------------- servers
def build_server(flavour: str, scenario: dict = SCENARIO, **kwargs: Any) -> Any:
    spec = scenario["server"]
    if flavour == "mcp1-lowlevel":
        return _build_lowlevel1(spec)
    if flavour == "mcp2-lowlevel":
        return _build_lowlevel2(spec, **kwargs)
    if flavour == "mcp2":
        from mcp.server.mcpserver import MCPServer

        server = MCPServer(spec["name"], **kwargs)
    elif flavour == "mcp1-fastmcp":
        from mcp.server.fastmcp import FastMCP

        server = FastMCP(spec["name"], **kwargs)
    elif flavour == "fastmcp":
        from fastmcp import FastMCP as FastMCP4

        server = FastMCP4(spec["name"], **kwargs)
    else:
        raise ValueError(flavour)
    for tool in spec["tools"]:
        add_tool(server, _tool_fn(tool, flavour), tool["name"])
    for res in spec["resources"]:
        server.resource(res["uri"])(_const(res["text"]))
    for prompt in spec["prompts"]:
        server.prompt(name=prompt["name"])(_prompt(prompt["text"]))
    return server


def add_tool(server: Any, fn: Any, name: str | None = None) -> None:
    server.tool(name=name or fn.__name__)(fn)


def _prompt(text: str):
    def greet(name: str) -> str:
        return text.format(name=name)

    return greet


def _const(text: str):
    def read() -> str:
        return text

    return read


def _error_result(text: str, flavour: str) -> Any:
    if flavour == "mcp2":
        from mcp_types import CallToolResult, TextContent

        return CallToolResult(content=[TextContent(type="text", text=text)], is_error=True)
    from mcp.types import CallToolResult, TextContent

    return CallToolResult(content=[TextContent(type="text", text=text)], isError=True)


def _tool_fn(tool: dict, flavour: str):
    behavior = tool["behavior"]
    if behavior == "ok":
        result_text = tool["result_text"]

        def ok(city: str) -> str:
            return result_text.format(city=city)

        return ok
    if behavior == "is_error":
        text = tool["result_text"]
        if flavour == "fastmcp":
            from mcp_types import CallToolResult, TextContent

            def soft4():
                return CallToolResult(content=[TextContent(type="text", text=text)], is_error=True)

            soft4.__annotations__["return"] = CallToolResult  # a real class: this module defers annotations
            return soft4

        result = _error_result(text, flavour)

        def soft() -> Any:
            return result

        soft.__annotations__["return"] = type(result)
        return soft
    msg = tool["error_message"]

    def boom() -> str:
        raise RuntimeError(msg)

    return boom


def _build_lowlevel1(spec: dict) -> Any:
    """The conformance server on the mcp 1.x low-level `Server` (handlers by hand)."""
    import mcp.types as t
    from mcp.server.lowlevel import Server
    from mcp.shared.exceptions import McpError

    server = Server(spec["name"])
    tools = {tool["name"]: tool for tool in spec["tools"]}

    @server.list_tools()
    async def list_tools() -> list[t.Tool]:
        out = []
        for tool in spec["tools"]:
            props = {k: {"type": v} for k, v in tool["input"].items()}
            out.append(t.Tool(name=tool["name"], inputSchema={"type": "object", "properties": props}))
        return out

    @server.call_tool()
    async def call_tool(name: str, arguments: dict) -> Any:
        tool = tools.get(name)
        if tool is None:
            raise ValueError(f"Unknown tool: {name}")
        if tool["behavior"] == "ok":
            return [t.TextContent(type="text", text=tool["result_text"].format(**arguments))]
        if tool["behavior"] == "is_error":
            return t.CallToolResult(content=[t.TextContent(type="text", text=tool["result_text"])], isError=True)
        raise RuntimeError(tool["error_message"])

    @server.list_resources()
    async def list_resources() -> list[t.Resource]:
        return [t.Resource(uri=r["uri"], name=r["uri"]) for r in spec["resources"]]

    @server.read_resource()
    async def read_resource(uri: Any) -> str:
        for r in spec["resources"]:
            if r["uri"] == str(uri):
                return r["text"]
        raise McpError(t.ErrorData(code=-32002, message=f"Resource not found: {uri}"))

    @server.list_prompts()
    async def list_prompts() -> list[t.Prompt]:
        return [
            t.Prompt(name=p["name"], arguments=[t.PromptArgument(name=a) for a in p["arguments"]])
            for p in spec["prompts"]
        ]

    @server.get_prompt()
    async def get_prompt(name: str, arguments: dict | None) -> t.GetPromptResult:
        for p in spec["prompts"]:
            if p["name"] == name:
                text = p["text"].format(**(arguments or {}))
                return t.GetPromptResult(
                    messages=[t.PromptMessage(role="user", content=t.TextContent(type="text", text=text))]
                )
        raise McpError(t.ErrorData(code=-32602, message=f"Unknown prompt: {name}"))

    return server


def _build_lowlevel2(spec: dict, **kwargs: Any) -> Any:
    """The conformance server on the mcp 2.x low-level `Server` (`on_*` handlers, no MCPServer).

    The tool with behaviour `raise` raises out of `on_call_tool`, as a low-level handler does:
    mcp 2.x answers that with a JSON-RPC error (see the `python-mcp2-lowlevel` variant)."""
    import mcp_types as t
    from mcp.server.lowlevel import Server
    from mcp.shared.exceptions import MCPError

    tools = {tool["name"]: tool for tool in spec["tools"]}

    async def list_tools(ctx: Any, params: Any) -> t.ListToolsResult:
        return t.ListToolsResult(tools=[
            t.Tool(name=tool["name"], input_schema={
                "type": "object", "properties": {k: {"type": v} for k, v in tool["input"].items()}})
            for tool in spec["tools"]
        ])

    async def call_tool(ctx: Any, params: t.CallToolRequestParams) -> t.CallToolResult:
        tool = tools.get(params.name)
        if tool is None:
            raise MCPError(code=t.INVALID_PARAMS, message=f"Unknown tool: {params.name}")
        if tool["behavior"] == "ok":
            text = tool["result_text"].format(**(params.arguments or {}))
            return t.CallToolResult(content=[t.TextContent(type="text", text=text)])
        if tool["behavior"] == "is_error":
            return t.CallToolResult(content=[t.TextContent(type="text", text=tool["result_text"])], is_error=True)
        raise RuntimeError(tool["error_message"])

    async def list_resources(ctx: Any, params: Any) -> t.ListResourcesResult:
        return t.ListResourcesResult(resources=[t.Resource(uri=r["uri"], name=r["uri"]) for r in spec["resources"]])

    async def read_resource(ctx: Any, params: t.ReadResourceRequestParams) -> t.ReadResourceResult:
        for r in spec["resources"]:
            if r["uri"] == str(params.uri):
                return t.ReadResourceResult(contents=[t.TextResourceContents(uri=r["uri"], text=r["text"])])
        raise MCPError(code=-32002, message=f"Resource not found: {params.uri}")

    async def list_prompts(ctx: Any, params: Any) -> t.ListPromptsResult:
        return t.ListPromptsResult(prompts=[
            t.Prompt(name=p["name"], arguments=[t.PromptArgument(name=a) for a in p["arguments"]])
            for p in spec["prompts"]
        ])

    async def get_prompt(ctx: Any, params: t.GetPromptRequestParams) -> t.GetPromptResult:
        for p in spec["prompts"]:
            if p["name"] == params.name:
                text = p["text"].format(**(params.arguments or {}))
                return t.GetPromptResult(
                    messages=[t.PromptMessage(role="user", content=t.TextContent(type="text", text=text))]
                )
        raise MCPError(code=t.INVALID_PARAMS, message=f"Unknown prompt: {params.name}")

    return Server(
        spec["name"],
        on_list_tools=list_tools,
        on_call_tool=call_tool,
        on_list_resources=list_resources,
        on_read_resource=read_resource,
        on_list_prompts=list_prompts,
        on_get_prompt=get_prompt,
        **kwargs,
    )


def scenario_variant(flavour: str) -> str | None:
    """Key into scenario.json `library_variants` (library behaviour the SDK records faithfully)."""
    return {
        "mcp1-fastmcp": "python-mcp1-fastmcp",
        "mcp1-lowlevel": "python-mcp1",
        "mcp2-lowlevel": "python-mcp2-lowlevel",
    }.get(flavour)
