//! Start-up, first-start bootstrap, health endpoints, graceful shutdown and `--help`.

use std::time::Duration;

use prost::Message;
use rand::SeedableRng;

use crate::gen::{self, now_unix_nano};
use crate::harness::*;

#[test]
fn bootstrap_prints_a_password_once() {
    let dir = TempDir::new("bootstrap");
    let srv = Server::start_with(
        dir.path(),
        StartOptions {
            admin_password: None,
            config_toml: None,
        },
    );
    let log = srv.log();
    let line = log
        .lines()
        .find(|l| l.contains("with password "))
        .unwrap_or_else(|| panic!("no password line in:\n{log}"));
    let password = line
        .split("with password ")
        .nth(1)
        .unwrap()
        .split_whitespace()
        .next()
        .unwrap()
        .to_string();
    assert!(password.len() >= 16);
    assert!(login(&srv, "admin", &password).is_ok());
    let me = login(&srv, "admin", &password)
        .unwrap()
        .get(&srv, "/api/v1/session")
        .json();
    assert!(
        me.to_string().contains("default"),
        "admin belongs to org default: {me}"
    );
    assert_eq!(srv.terminate(), Some(0));

    // Second start: no new bootstrap, the password is not printed again, the old one still works.
    let srv = Server::start_with(
        dir.path(),
        StartOptions {
            admin_password: Some("ignored-now"),
            config_toml: None,
        },
    );
    assert!(!srv.log().contains(&password));
    assert!(!srv.log().contains("first start"));
    assert!(login(&srv, "admin", &password).is_ok());
    assert!(login(&srv, "admin", "ignored-now").is_err());
}

#[test]
fn health_and_graceful_shutdown() {
    let dir = TempDir::new("shutdown");
    let srv = Server::start(dir.path());
    assert_eq!(
        to_resp(agent().get(&srv.url("/healthz")).call()).status,
        200
    );
    let r = to_resp(agent().get(&srv.url("/readyz")).call());
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["ready"], true);
    assert_eq!(
        to_resp(agent().get(&srv.url("/no/such/route")).call()).status,
        404
    );

    let s = login(&srv, "admin", ADMIN_PASSWORD).unwrap();
    let (_, key) = s.create_server(&srv, "default", "graceful");
    let mut rng = rand::rngs::StdRng::seed_from_u64(5);
    let (req, exp) = gen::request(&mut rng, 50, now_unix_nano() - 1_000_000_000);
    assert_eq!(
        post_traces(
            &srv,
            Some(&key),
            "application/x-protobuf",
            false,
            &req.encode_to_vec()
        )
        .status,
        200
    );
    let log_before = srv.log();
    assert!(
        !log_before.contains(&key),
        "an API key must never be logged"
    );
    assert_eq!(srv.terminate(), Some(0));

    let srv = Server::start(dir.path());
    let s = login(&srv, "admin", ADMIN_PASSWORD).unwrap();
    for e in &exp {
        let r = s.get(
            &srv,
            &format!("/api/v1/orgs/default/traces/{}", hex::encode(e.trace_id)),
        );
        assert_eq!(r.status, 200);
    }
    // Usage counts were written at shutdown.
    let servers = s.get(&srv, "/api/v1/orgs/default/servers").json();
    let id = servers["servers"][0]["id"].as_u64().unwrap();
    let keys = s
        .get(&srv, &format!("/api/v1/orgs/default/servers/{id}/keys"))
        .json();
    assert!(
        keys.to_string().contains("\"spans\":50"),
        "usage not recorded: {keys}"
    );
}

#[test]
fn help_documents_settings() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_mcp-obs"))
        .arg("--help")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success());
    for s in [
        "--data",
        "--listen",
        "--config",
        "MCPOBS_DATA",
        "MCPOBS_ADMIN_PASSWORD",
        "body_bytes_max",
        "spans_per_request_max",
        "ingest_queue_requests_max",
    ] {
        assert!(text.contains(s), "--help lacks {s}");
    }
}

/// The login throttle counts failures per client address as well as per username, so it must
/// see the connection's peer: after failed logins for four usernames from this address, a fifth
/// username's first attempt waits for the address's failures (`delay_after(4)`, 2 s). Without
/// the peer address only the username would count, and that attempt would be answered at once.
/// Each attempt claims another address in `X-Forwarded-For`: with no trusted proxy configured the
/// header must not count, or a client could pick a fresh address for every guess.
#[test]
fn failed_logins_from_one_address_slow_down_other_usernames() {
    let dir = TempDir::new("throttle");
    let srv = Server::start(dir.path());
    for i in 1..=4 {
        let xff = format!("203.0.113.{i}");
        let r = login_forwarded(&srv, &format!("guess-{i}"), "wrong-password", Some(&xff))
            .err()
            .unwrap();
        assert_eq!(r.status, 401);
    }
    let waited = timed_failed_login(&srv, "guess-5", Some("203.0.113.5"));
    // A lower bound only: the throttle sleeps 2,000 ms before it answers.
    assert!(
        waited >= Duration::from_millis(1_900),
        "a new username from a throttled address answered after {waited:?}"
    );
    // Slowed, not locked out: the right password still signs in.
    login(&srv, "admin", ADMIN_PASSWORD).expect("admin can still sign in");
    // Each failure is logged with the name tried and the peer, never the password.
    let log = srv.log_with("username=\"guess-5\"");
    let failed: Vec<&str> = log.lines().filter(|l| l.contains("login failed")).collect();
    assert_eq!(failed.len(), 5, "{log}");
    assert!(failed
        .iter()
        .all(|l| l.contains("client_ip=127.0.0.1") && l.contains("username=\"guess-")));
    assert!(
        !log.contains("wrong-password"),
        "a password reached the log"
    );
}

/// Behind a reverse proxy every connection comes from the proxy. With it in `trusted_proxies`,
/// the throttle counts the client the proxy names in `X-Forwarded-For`: one client's failures
/// slow that client's next attempt, not another client's behind the same proxy.
#[test]
fn behind_a_trusted_proxy_the_throttle_counts_each_forwarded_client() {
    let dir = TempDir::new("throttle-proxy");
    let srv = Server::start_with(
        dir.path(),
        StartOptions {
            config_toml: Some("[web]\ntrusted_proxies = [\"127.0.0.1\"]\n"),
            ..StartOptions::default()
        },
    );
    // The client put an address of its own choosing first; the proxy appended the one it saw.
    let guesser = "198.51.100.1, 203.0.113.7";
    for i in 1..=4 {
        let r = login_forwarded(&srv, &format!("guess-{i}"), "wrong-password", Some(guesser))
            .err()
            .unwrap();
        assert_eq!(r.status, 401);
    }
    // Another client behind the proxy is not slowed by the guesser's failures (its attempt costs
    // only the password check); were the header ignored, it would wait the proxy's 2 s.
    let other = timed_failed_login(&srv, "someone", Some("203.0.113.8"));
    assert!(
        other < Duration::from_millis(1_900),
        "another forwarded client waited {other:?} for the guesser's failures"
    );
    // The guesser is, whatever it writes first in the header.
    let waited = timed_failed_login(&srv, "guess-5", Some("198.51.100.2, 203.0.113.7"));
    assert!(
        waited >= Duration::from_millis(1_900),
        "the forwarded guesser's fifth username answered after {waited:?}"
    );
    // The log names the forwarded client, not the proxy.
    let log = srv.log_with("username=\"guess-5\"");
    assert!(
        log.lines()
            .any(|l| l.contains("login failed") && l.contains("client_ip=203.0.113.8")),
        "{log}"
    );
    assert!(!log
        .lines()
        .any(|l| l.contains("login failed") && l.contains("client_ip=127.0.0.1")));
}

/// A wrong current password on a password change counts as a failed login (the throttle) and is
/// logged like one, so a stolen session guessing the password shows where the operator looks.
#[test]
fn a_wrong_current_password_is_logged_like_a_failed_login() {
    let dir = TempDir::new("password-log");
    let srv = Server::start(dir.path());
    let me = login(&srv, "admin", ADMIN_PASSWORD).expect("admin signs in");
    let r = me.send(
        &srv,
        "POST",
        "/api/v1/session/password",
        serde_json::json!({
            "current_password": "a-wrong-guess",
            "new_password": "a brand new password",
        }),
    );
    assert_eq!(r.status, 400, "{}", r.text());
    let log = srv.log_with("password change failed");
    let failed: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("password change failed"))
        .collect();
    assert_eq!(failed.len(), 1, "{log}");
    assert!(
        failed[0].contains("WARN")
            && failed[0].contains("username=\"admin\"")
            && failed[0].contains("client_ip=127.0.0.1"),
        "{log}"
    );
    for secret in ["a-wrong-guess", "a brand new password"] {
        assert!(!log.contains(secret), "a password reached the log: {log}");
    }
    // The right password still changes it, and that is logged without the warning.
    let r = me.send(
        &srv,
        "POST",
        "/api/v1/session/password",
        serde_json::json!({
            "current_password": ADMIN_PASSWORD,
            "new_password": "a brand new password",
        }),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let log = srv.log_with("password changed");
    assert_eq!(log.matches("password change failed").count(), 1, "{log}");
}

fn timed_failed_login(srv: &Server, username: &str, forwarded_for: Option<&str>) -> Duration {
    let started = std::time::Instant::now();
    let r = login_forwarded(srv, username, "wrong-password", forwarded_for)
        .err()
        .unwrap();
    assert_eq!(r.status, 401);
    started.elapsed()
}
