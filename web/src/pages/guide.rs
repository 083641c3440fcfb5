//! The integration guide: copy-ready Python and TypeScript snippets with this appliance's endpoint
//! and the server's key filled in, plus the plain OpenTelemetry exporter settings for any other
//! language. Shown right after a server is created (with the key) and on its own page (with a
//! placeholder, since the key cannot be shown again).

use maud::{html, Markup};
use mcp_obs_storage::meta::Role;

use super::layout::Nav;
use super::{Ctx, PageResult};

/// What stands in for the key when it is not being shown.
pub const KEY_PLACEHOLDER: &str = "<your API key>";

/// The Python snippet: a complete MCP server that sends its calls here (tested end to end).
pub fn python(endpoint: &str, key: &str, server_name: &str) -> String {
    format!(
        r#"# pip install mcp ./sdk/python   (the mcp-obs-server package)
from mcp.server.mcpserver import MCPServer
from mcp_obs_server import configure_mcp_telemetry

mcp = MCPServer("{name}")


@mcp.tool()
def add(a: int, b: int) -> int:
    """Adds two numbers."""
    return a + b


telemetry = configure_mcp_telemetry(
    mcp,
    api_key="{key}",
    endpoint="{endpoint}",
)

if __name__ == "__main__":
    mcp.run("stdio")
"#,
        name = py_str(server_name),
    )
}

/// The TypeScript snippet, same shape as the Python one.
pub fn typescript(endpoint: &str, key: &str, server_name: &str) -> String {
    format!(
        r#"// npm install @modelcontextprotocol/sdk ./sdk/typescript   (the @mcp-obs/server package)
import {{ McpServer }} from '@modelcontextprotocol/sdk/server/mcp.js';
import {{ StdioServerTransport }} from '@modelcontextprotocol/sdk/server/stdio.js';
import {{ configureMCPTelemetry }} from '@mcp-obs/server';

const server = new McpServer({{ name: '{name}', version: '1.0.0' }});
const telemetry = configureMCPTelemetry(server, {{
  apiKey: '{key}',
  endpoint: '{endpoint}',
}});

await server.connect(new StdioServerTransport());
"#,
        name = server_name.replace(['\'', '\\'], ""),
    )
}

/// Plain OpenTelemetry exporter settings for any language's OTLP/HTTP exporter.
pub fn otel_env(endpoint: &str, key: &str) -> String {
    format!(
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT={endpoint}/v1/traces\n\
         OTEL_EXPORTER_OTLP_TRACES_PROTOCOL=http/protobuf\n\
         OTEL_EXPORTER_OTLP_TRACES_HEADERS=Authorization=Bearer {key}\n"
    )
}

fn py_str(s: &str) -> String {
    s.replace(['"', '\\'], "")
}

/// The three snippets with copy buttons. `key` is the real key right after creation.
pub fn snippets(endpoint: &str, key: &str, server_name: &str) -> Markup {
    let block = |id: &str, lang: &str, code: String| {
        html! {
            div.snippet {
                div.snippet-head {
                    span { (lang) }
                    button.copy type="button" data-copy={ "#" (id) } { "Copy" }
                }
                pre { code id=(id) { (code) } }
            }
        }
    };
    html! {
        section.card.guide {
            h2 { "Integration guide" }
            p { "Add these lines to your MCP server. Every request it handles becomes one span here: method, tool, duration, status, user and client. Tool arguments and results are only recorded when argument capture is on in the server's settings." }
            h3 { "Python" }
            (block("snippet-python", "Python", python(endpoint, key, server_name)))
            h3 { "TypeScript" }
            (block("snippet-typescript", "TypeScript", typescript(endpoint, key, server_name)))
            h3 { "Any other language (OpenTelemetry)" }
            p { "Point an OTLP/HTTP trace exporter (protobuf or JSON) at this appliance:" }
            (block("snippet-otel", "Environment", otel_env(endpoint, key)))
        }
    }
}

pub fn page(ctx: &Ctx<'_>, slug: &str, id: u32) -> PageResult {
    ctx.org(slug, Role::Member)?;
    let server = crate::api::servers::server_of(ctx.state, &ctx.p, slug, id)?;
    let body = html! {
        div.page-head {
            h1 { "Connect " (server.name) }
            a.button href={ "/orgs/" (slug) "/servers/" (id) } { "Analytics" }
        }
        @if !server.telemetry_enabled {
            p.alert role="status" { "OpenTelemetry is turned off for this server: spans sent with its keys are refused until it is turned on in the settings." }
        }
        p { "The key was shown once, when it was created. Replace " code { (KEY_PLACEHOLDER) } " with it, or generate a new key in the " a href={ "/orgs/" (slug) "/servers/" (id) "/settings" } { "settings" } "." }
        (snippets(&ctx.base_url(), KEY_PLACEHOLDER, &server.name))
    };
    Ok(ctx.page(
        Some(slug),
        Nav::Overview,
        &format!("Connect {}", server.name),
        body,
    ))
}
