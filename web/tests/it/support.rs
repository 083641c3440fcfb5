//! Test harness: a real `MetaStore` in a temporary directory, the real `AppState` and
//! `api::routes`, driven in-process with `warp::test::request()`.

use std::path::PathBuf;
use std::sync::Arc;

use mcp_obs_storage::meta::{HashCost, MetaOptions, META_FILE_NAME};
use mcp_obs_storage::MetaStore;
use mcp_obs_web::state::AppState;
use mcp_obs_web::WebConfig;
use serde_json::Value;
use warp::filters::BoxedFilter;
use warp::http::{HeaderMap, HeaderValue};
use warp::reply::Response;

pub const ADMIN_PASSWORD: &str = "admin-password-1";
pub const PASSWORD: &str = "password-123";

/// A unique directory under the system temp dir, removed on drop.
pub struct TempDir(PathBuf);

impl TempDir {
    pub fn new() -> TempDir {
        let dir = std::env::temp_dir().join(format!(
            "mcpobs-web-it-{}-{}",
            std::process::id(),
            mcp_obs_storage::meta::secret::random_base62(12)
        ));
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

pub struct Harness {
    pub state: Arc<AppState>,
    pub routes: BoxedFilter<(Response,)>,
    /// Every route of the appliance (`server::routes`): ingest, API, dashboard pages, headers.
    pub all_routes: BoxedFilter<(Response,)>,
    _dir: TempDir,
}

/// How a request authenticates.
#[derive(Clone, Debug, Default)]
pub struct Client {
    pub cookie: Option<String>,
    pub csrf: Option<String>,
    pub bearer: Option<String>,
}

impl Client {
    pub fn anonymous() -> Client {
        Client::default()
    }
    pub fn token(token: &str) -> Client {
        Client {
            bearer: Some(token.to_string()),
            ..Client::default()
        }
    }
    /// The same session without its CSRF token.
    pub fn without_csrf(&self) -> Client {
        Client {
            csrf: None,
            ..self.clone()
        }
    }
}

pub struct Resp {
    pub status: u16,
    pub headers: HeaderMap,
    pub json: Value,
    pub text: String,
}

impl Harness {
    pub fn new() -> Harness {
        Harness::with_config(WebConfig::default())
    }

    /// Bootstraps `default`/`admin` with [`ADMIN_PASSWORD`]. Hashing uses argon2id with low
    /// cost so the suite runs in seconds in debug builds; verification is the production code.
    pub fn with_config(config: WebConfig) -> Harness {
        let dir = TempDir::new();
        let meta = MetaStore::open_with(
            dir.0.join(META_FILE_NAME),
            MetaOptions {
                hash_cost: HashCost::Low,
            },
        )
        .unwrap();
        meta.bootstrap(Some(ADMIN_PASSWORD)).unwrap().unwrap();
        let spans = Arc::new(
            mcp_obs_storage::spans::SpanStore::open(
                &dir.0.join("spans"),
                mcp_obs_storage::spans::SpanStoreOptions::default(),
            )
            .unwrap(),
        );
        let (ingest, _writer) = mcp_obs_web::ingest::queue::IngestQueue::start(
            Arc::clone(&spans),
            16,
            10_000,
            10_000,
            None,
        )
        .unwrap();
        let state = Arc::new(AppState::new(Arc::new(meta), spans, ingest, config));
        let routes = mcp_obs_web::api::routes(Arc::clone(&state));
        let all_routes = mcp_obs_web::server::routes(Arc::clone(&state));
        Harness {
            state,
            routes,
            all_routes,
            _dir: dir,
        }
    }

    pub fn request(&self, method: &str, path: &str, client: &Client) -> warp::test::RequestBuilder {
        let mut req = warp::test::request()
            .method(method)
            .path(path)
            .remote_addr("192.0.2.7:5555".parse().unwrap());
        if let Some(c) = &client.cookie {
            req = req.header("cookie", format!("mcpobs_session={c}"));
        }
        if let Some(t) = &client.csrf {
            req = req.header("x-csrf-token", t);
        }
        if let Some(b) = &client.bearer {
            req = req.header("authorization", format!("Bearer {b}"));
        }
        req
    }

    pub async fn send(&self, req: warp::test::RequestBuilder) -> Resp {
        Self::into_resp(req.reply(&self.routes).await)
    }

    /// Sends through every route of the appliance (pages, ingest, API), as a browser would reach it.
    pub async fn send_all(&self, req: warp::test::RequestBuilder) -> Resp {
        Self::into_resp(req.reply(&self.all_routes).await)
    }

    fn into_resp(resp: warp::http::Response<bytes::Bytes>) -> Resp {
        let text = String::from_utf8_lossy(resp.body()).into_owned();
        Resp {
            status: resp.status().as_u16(),
            headers: resp.headers().clone(),
            json: serde_json::from_str(&text).unwrap_or(Value::Null),
            text,
        }
    }

    pub async fn call(
        &self,
        method: &str,
        path: &str,
        client: &Client,
        body: Option<Value>,
    ) -> Resp {
        let mut req = self.request(method, path, client);
        if let Some(b) = body {
            req = req.json(&b);
        }
        self.send(req).await
    }

    pub async fn get(&self, path: &str, client: &Client) -> Resp {
        self.call("GET", path, client, None).await
    }
    pub async fn post(&self, path: &str, client: &Client, body: Value) -> Resp {
        self.call("POST", path, client, Some(body)).await
    }
    pub async fn patch(&self, path: &str, client: &Client, body: Value) -> Resp {
        self.call("PATCH", path, client, Some(body)).await
    }
    pub async fn delete(&self, path: &str, client: &Client) -> Resp {
        self.call("DELETE", path, client, None).await
    }

    /// Renders the sign-in page as a browser would and returns its pre-session token: the value
    /// of both the `mcpobs_login_csrf` cookie and the form's `login_csrf` field.
    pub async fn login_token(&self) -> String {
        let r = self
            .send_all(self.request("GET", "/login", &Client::anonymous()))
            .await;
        assert_eq!(r.status, 200);
        let token = cookie_set(&r, "mcpobs_login_csrf");
        assert!(r
            .text
            .contains(&format!(r#"name="login_csrf" value="{token}""#)));
        token
    }

    /// Logs in and returns a session client (cookie + CSRF token).
    pub async fn login(&self, username: &str, password: &str) -> Client {
        let r = self
            .post(
                "/api/v1/session",
                &Client::anonymous(),
                serde_json::json!({ "username": username, "password": password }),
            )
            .await;
        assert_eq!(r.status, 200, "login {username}: {}", r.text);
        Client {
            cookie: Some(cookie_set(&r, "mcpobs_session")),
            csrf: Some(r.json["csrf_token"].as_str().unwrap().to_string()),
            bearer: None,
        }
    }

    pub async fn admin(&self) -> Client {
        self.login("admin", ADMIN_PASSWORD).await
    }

    /// Creates user `name` (as admin) and logs them in.
    pub async fn user(&self, admin: &Client, name: &str) -> (u32, Client) {
        let r = self
            .post(
                "/api/v1/users",
                admin,
                serde_json::json!({ "username": name, "password": PASSWORD }),
            )
            .await;
        assert_eq!(r.status, 201, "{}", r.text);
        let id = r.json["user"]["id"].as_u64().unwrap() as u32;
        (id, self.login(name, PASSWORD).await)
    }

    /// Creates a server in `org` as `client`; returns (server id, first key if any).
    pub async fn server(
        &self,
        client: &Client,
        org: &str,
        name: &str,
        telemetry: bool,
    ) -> (u32, Option<String>) {
        let r = self
            .post(
                &format!("/api/v1/orgs/{org}/servers"),
                client,
                serde_json::json!({ "name": name, "telemetry_enabled": telemetry }),
            )
            .await;
        assert_eq!(r.status, 201, "{}", r.text);
        let id = r.json["server"]["id"].as_u64().unwrap() as u32;
        (id, r.json["api_key"]["key"].as_str().map(str::to_string))
    }
}

/// Headers carrying an API key as ingest clients send it.
pub fn key_headers(key: &str) -> HeaderMap {
    let mut h = HeaderMap::new();
    h.insert(
        "authorization",
        HeaderValue::from_str(&format!("Bearer {key}")).unwrap(),
    );
    h
}

/// The value of cookie `name` in the response's `Set-Cookie`.
pub fn cookie_set(r: &Resp, name: &str) -> String {
    let set_cookie = r.headers["set-cookie"].to_str().unwrap();
    set_cookie
        .strip_prefix(name)
        .and_then(|rest| rest.strip_prefix('='))
        .and_then(|rest| rest.split(';').next())
        .unwrap()
        .to_string()
}
