//! Login throttling, measured on tokio's paused clock: the only timer running is the throttle's
//! delay, so elapsed virtual time is exactly the delay imposed.

use serde_json::json;
use tokio::time::{Duration, Instant};

use crate::support::{Client, Harness, ADMIN_PASSWORD};

async fn timed_login(h: &Harness, username: &str, password: &str, ip: &str) -> (u16, Duration) {
    let req = h
        .request("POST", "/api/v1/session", &Client::anonymous())
        .remote_addr(ip.parse().unwrap())
        .json(&json!({ "username": username, "password": password }));
    let start = Instant::now();
    let status = h.send(req).await.status;
    (status, start.elapsed())
}

#[tokio::test(start_paused = true)]
async fn failed_logins_slow_down_exponentially() {
    let h = Harness::new();
    let ip = "198.51.100.1:1000";
    let mut delays = Vec::new();
    for _ in 0..5 {
        let (status, took) = timed_login(&h, "admin", "wrong", ip).await;
        assert_eq!(status, 401);
        delays.push(took.as_millis());
    }
    assert_eq!(delays, [0, 250, 500, 1000, 2000]);

    // The right password still works (slowed, not locked out) and clears the username's count.
    let (status, took) = timed_login(&h, "admin", ADMIN_PASSWORD, "203.0.113.9:1").await;
    assert_eq!((status, took.as_millis()), (200, 4000));
    let (status, took) = timed_login(&h, "admin", ADMIN_PASSWORD, "203.0.113.9:1").await;
    assert_eq!((status, took), (200, Duration::ZERO));

    // The IP that failed stays slowed, also for other usernames.
    let (status, took) = timed_login(&h, "someone", "wrong", ip).await;
    assert_eq!((status, took.as_millis()), (401, 4000));
    let (_, took) = timed_login(&h, "someone", "wrong", ip).await;
    assert_eq!(took.as_millis(), 5000, "capped at 5 s");
}

#[tokio::test(start_paused = true)]
async fn the_sign_in_page_shares_the_throttle() {
    let h = Harness::new();
    let ip = "198.51.100.2:1000";
    let mut delays = Vec::new();
    let token = h.login_token().await;
    for _ in 0..3 {
        let req = h
            .request("POST", "/login", &Client::anonymous())
            .remote_addr(ip.parse().unwrap())
            .header("cookie", format!("mcpobs_login_csrf={token}"))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(format!(
                "login_csrf={token}&username=admin&password=wrong&next=%2F"
            ));
        let start = Instant::now();
        let r = h.send_all(req).await;
        assert_eq!(r.status, 401);
        assert!(r.text.contains("invalid username or password"));
        delays.push(start.elapsed().as_millis());
    }
    assert_eq!(delays, [0, 250, 500]);
    // Failures on the page count for the JSON login too: one throttle per username and address.
    let (status, took) = timed_login(&h, "admin", "wrong", ip).await;
    assert_eq!((status, took.as_millis()), (401, 1000));
}
