//! Starts the real `mcp-obs` binary on 127.0.0.1:0 with its own data directory, and talks to it.

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

pub const ADMIN_PASSWORD: &str = "correct-horse-battery-staple";

/// A fresh, unique directory under the system temp dir, removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        use std::sync::atomic::{AtomicUsize, Ordering};
        static N: AtomicUsize = AtomicUsize::new(0);
        let p = std::env::temp_dir().join(format!(
            "mcpobs-it-{tag}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).unwrap();
        TempDir(p)
    }
    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A running appliance process.
pub struct Server {
    child: Child,
    pub base: String,
    pub stderr: Arc<Mutex<String>>,
}

pub struct StartOptions<'a> {
    pub admin_password: Option<&'a str>,
    pub config_toml: Option<&'a str>,
}

impl Default for StartOptions<'_> {
    fn default() -> Self {
        StartOptions {
            admin_password: Some(ADMIN_PASSWORD),
            config_toml: None,
        }
    }
}

impl Server {
    pub fn start(data: &Path) -> Server {
        Server::start_with(data, StartOptions::default())
    }

    pub fn start_with(data: &Path, opts: StartOptions) -> Server {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_mcp-obs"));
        cmd.arg("serve")
            .arg("--data")
            .arg(data.join("data"))
            .arg("--listen")
            .arg("127.0.0.1:0")
            .env_remove("MCPOBS_ADMIN_PASSWORD")
            .env_remove("MCPOBS_CONFIG")
            .env("MCPOBS_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        if let Some(pw) = opts.admin_password {
            cmd.env("MCPOBS_ADMIN_PASSWORD", pw);
        }
        if let Some(toml) = opts.config_toml {
            let path = data.join("config.toml");
            std::fs::write(&path, toml).unwrap();
            cmd.arg("--config").arg(path);
        }
        let mut child = cmd.spawn().expect("spawn mcp-obs");
        let stderr = child.stderr.take().unwrap();
        let log = Arc::new(Mutex::new(String::new()));
        let (tx, rx) = std::sync::mpsc::channel();
        let log2 = Arc::clone(&log);
        std::thread::spawn(move || {
            let mut reader = BufReader::new(stderr);
            let mut line = String::new();
            let mut tx = Some(tx);
            loop {
                line.clear();
                match reader.read_line(&mut line) {
                    Ok(0) | Err(_) => break,
                    Ok(_) => {
                        log2.lock().unwrap().push_str(&line);
                        if let Some(rest) = line.trim().strip_prefix("mcp-obs listening on ") {
                            if let Some(tx) = tx.take() {
                                let _ = tx.send(rest.to_string());
                            }
                        }
                    }
                }
            }
            // Drain anything left so the child never blocks on a full pipe.
            let _ = reader.read_to_end(&mut Vec::new());
        });
        let base = match rx.recv_timeout(Duration::from_secs(60)) {
            Ok(b) => b,
            Err(_) => {
                let _ = child.kill();
                panic!("mcp-obs did not start; stderr:\n{}", log.lock().unwrap());
            }
        };
        // The start-up announcement ends with the `log in:` line; wait for all of it.
        let deadline = Instant::now() + Duration::from_secs(10);
        while !log.lock().unwrap().contains("  log in: ") && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
        Server {
            child,
            base,
            stderr: log,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    pub fn log(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    /// The log once it holds `needle`: stderr reaches it through a pipe and a reader thread, so a
    /// line the server wrote before answering may arrive after the answer. Panics after 10 s.
    pub fn log_with(&self, needle: &str) -> String {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        loop {
            let log = self.log();
            if log.contains(needle) {
                return log;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "no {needle:?} in the log within 10 s: {log}"
            );
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    }

    /// kill -9: no chance to flush or clean up.
    pub fn kill9(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGTERM and wait; returns the exit code.
    pub fn terminate(mut self) -> Option<i32> {
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status();
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status.code();
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                panic!(
                    "mcp-obs did not exit after SIGTERM; stderr:\n{}",
                    self.log()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn agent() -> ureq::Agent {
    ureq::AgentBuilder::new()
        .timeout(Duration::from_secs(60))
        .build()
}

/// A response as (status, headers we care about, body bytes), whatever the status.
pub struct Resp {
    pub status: u16,
    pub content_type: String,
    pub retry_after: Option<String>,
    pub set_cookie: Vec<String>,
    pub body: Vec<u8>,
}

impl std::fmt::Debug for Resp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.status, self.text())
    }
}

impl Resp {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "not JSON ({e}): status {} body {}",
                self.status,
                String::from_utf8_lossy(&self.body)
            )
        })
    }
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

pub fn to_resp(r: Result<ureq::Response, ureq::Error>) -> Resp {
    let r = match r {
        Ok(r) => r,
        Err(ureq::Error::Status(_, r)) => r,
        Err(e) => panic!("transport error: {e}"),
    };
    let status = r.status();
    let content_type = r.header("content-type").unwrap_or("").to_string();
    let retry_after = r.header("retry-after").map(String::from);
    let set_cookie = r.all("set-cookie").into_iter().map(String::from).collect();
    let mut body = Vec::new();
    r.into_reader().read_to_end(&mut body).unwrap();
    Resp {
        status,
        content_type,
        retry_after,
        set_cookie,
        body,
    }
}

/// A logged-in dashboard/API user: session cookie plus CSRF token.
pub struct Session {
    pub cookie: String,
    pub csrf: String,
}

pub fn login(srv: &Server, username: &str, password: &str) -> Result<Session, Resp> {
    login_forwarded(srv, username, password, None)
}

/// [`login`] with an `X-Forwarded-For` header, as a reverse proxy (or a client) would send it.
pub fn login_forwarded(
    srv: &Server,
    username: &str,
    password: &str,
    forwarded_for: Option<&str>,
) -> Result<Session, Resp> {
    let mut req = agent().post(&srv.url("/api/v1/session"));
    if let Some(xff) = forwarded_for {
        req = req.set("X-Forwarded-For", xff);
    }
    let r = to_resp(req.send_json(json!({ "username": username, "password": password })));
    if r.status != 200 {
        return Err(r);
    }
    let cookie = r
        .set_cookie
        .iter()
        .find(|c| c.starts_with("mcpobs_session="))
        .expect("session cookie")
        .split(';')
        .next()
        .unwrap()
        .to_string();
    let csrf = r.json()["csrf_token"]
        .as_str()
        .expect("csrf_token")
        .to_string();
    Ok(Session { cookie, csrf })
}

impl Session {
    pub fn get(&self, srv: &Server, path: &str) -> Resp {
        to_resp(
            agent()
                .get(&srv.url(path))
                .set("cookie", &self.cookie)
                .call(),
        )
    }
    pub fn send(&self, srv: &Server, method: &str, path: &str, body: Value) -> Resp {
        to_resp(
            agent()
                .request(method, &srv.url(path))
                .set("cookie", &self.cookie)
                .set("x-csrf-token", &self.csrf)
                .send_json(body),
        )
    }
    /// A state-changing request without the CSRF header.
    pub fn send_without_csrf(&self, srv: &Server, method: &str, path: &str, body: Value) -> Resp {
        to_resp(
            agent()
                .request(method, &srv.url(path))
                .set("cookie", &self.cookie)
                .send_json(body),
        )
    }

    /// Creates a server with telemetry on; returns (server id, API key).
    pub fn create_server(&self, srv: &Server, org: &str, name: &str) -> (u64, String) {
        let r = self.send(
            srv,
            "POST",
            &format!("/api/v1/orgs/{org}/servers"),
            json!({ "name": name, "telemetry_enabled": true, "sampling_rate": 1.0 }),
        );
        assert_eq!(r.status, 201, "create server: {}", r.text());
        let v = r.json();
        let id = v["server"]["id"].as_u64().expect("server id");
        let key = v["api_key"]["key"].as_str().expect("api key").to_string();
        (id, key)
    }
}

/// POSTs an OTLP body to /v1/traces.
pub fn post_traces(
    srv: &Server,
    key: Option<&str>,
    content_type: &str,
    gzip: bool,
    body: &[u8],
) -> Resp {
    let mut req = agent()
        .post(&srv.url("/v1/traces"))
        .set("content-type", content_type);
    if let Some(k) = key {
        req = req.set("authorization", &format!("Bearer {k}"));
    }
    if gzip {
        req = req.set("content-encoding", "gzip");
    }
    to_resp(req.send_bytes(body))
}
