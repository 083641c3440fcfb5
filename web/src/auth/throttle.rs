//! Login throttling: after failed logins for a username or from an IP address, the next attempt
//! is answered only after a delay that doubles per failure, up to 5 s. It slows guessing without
//! locking anyone out, and memory stays bounded by evicting the stalest entries.

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::Duration;

use parking_lot::Mutex;
use tokio::time::Instant;

/// Delay after the first failure; doubles with each further one.
pub const DELAY_BASE: Duration = Duration::from_millis(250);
pub const DELAY_MAX: Duration = Duration::from_secs(5);
/// Failures older than this are forgotten.
pub const FORGET_AFTER: Duration = Duration::from_secs(15 * 60);
/// Login names are truncated to this many bytes as keys, so long garbage cannot grow memory.
const LOGIN_KEY_BYTES_MAX: usize = 254;

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
enum Subject {
    Login(String),
    Ip(IpAddr),
}

struct Failures {
    count: u32,
    last: Instant,
}

pub struct LoginThrottle {
    entries: Mutex<HashMap<Subject, Failures>>,
    capacity: usize,
}

/// The delay owed after `failures` recent failures.
pub fn delay_after(failures: u32) -> Duration {
    if failures == 0 {
        return Duration::ZERO;
    }
    let factor = 1u32 << (failures - 1).min(16);
    DELAY_BASE.saturating_mul(factor).min(DELAY_MAX)
}

fn subjects(login: &str, ip: Option<IpAddr>) -> impl Iterator<Item = Subject> {
    let mut login = login.trim().to_ascii_lowercase();
    if login.len() > LOGIN_KEY_BYTES_MAX {
        let mut end = LOGIN_KEY_BYTES_MAX;
        while !login.is_char_boundary(end) {
            end -= 1;
        }
        login.truncate(end);
    }
    std::iter::once(Subject::Login(login)).chain(ip.map(|ip| Subject::Ip(network_of(ip))))
}

/// The address failures are counted under: an IPv6 client usually holds a whole /64 and could
/// take a fresh address for every guess, so IPv6 addresses count per /64 (IPv4-mapped ones as
/// IPv4).
fn network_of(ip: IpAddr) -> IpAddr {
    match ip.to_canonical() {
        IpAddr::V6(v6) => IpAddr::V6(std::net::Ipv6Addr::from(
            u128::from(v6) & !((1u128 << 64) - 1),
        )),
        v4 => v4,
    }
}

impl LoginThrottle {
    pub fn new(capacity: usize) -> LoginThrottle {
        LoginThrottle {
            entries: Mutex::new(HashMap::new()),
            capacity: capacity.max(2),
        }
    }

    /// How long to wait before checking this attempt: by the worse of the login's and the IP's
    /// recent failure counts.
    pub fn delay_for(&self, login: &str, ip: Option<IpAddr>) -> Duration {
        let now = Instant::now();
        let entries = self.entries.lock();
        let worst = subjects(login, ip)
            .filter_map(|s| entries.get(&s))
            .filter(|f| now.duration_since(f.last) < FORGET_AFTER)
            .map(|f| f.count)
            .max()
            .unwrap_or(0);
        delay_after(worst)
    }

    pub fn record_failure(&self, login: &str, ip: Option<IpAddr>) {
        let now = Instant::now();
        let mut entries = self.entries.lock();
        for s in subjects(login, ip) {
            if !entries.contains_key(&s) && entries.len() >= self.capacity {
                make_room(&mut entries, now);
            }
            let f = entries.entry(s).or_insert(Failures {
                count: 0,
                last: now,
            });
            if now.duration_since(f.last) >= FORGET_AFTER {
                f.count = 0;
            }
            f.count = f.count.saturating_add(1);
            f.last = now;
        }
    }

    /// A correct password clears the login's failures. The IP's stay: one valid account must
    /// not reset the counter for guesses at other accounts from the same address.
    pub fn record_success(&self, login: &str, ip: Option<IpAddr>) {
        let mut entries = self.entries.lock();
        for s in subjects(login, ip) {
            if matches!(s, Subject::Login(_)) {
                entries.remove(&s);
            }
        }
    }

    pub fn len(&self) -> usize {
        self.entries.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Drops forgotten entries; if none were, the least recently failed one.
fn make_room(entries: &mut HashMap<Subject, Failures>, now: Instant) {
    let before = entries.len();
    entries.retain(|_, f| now.duration_since(f.last) < FORGET_AFTER);
    if entries.len() < before {
        return;
    }
    let oldest = entries
        .iter()
        .min_by_key(|(_, f)| f.last)
        .map(|(s, _)| s.clone());
    if let Some(s) = oldest {
        entries.remove(&s);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delay_doubles_up_to_the_cap() {
        let ms: Vec<u128> = (0..8).map(|n| delay_after(n).as_millis()).collect();
        assert_eq!(ms, [0, 250, 500, 1000, 2000, 4000, 5000, 5000]);
        assert_eq!(delay_after(u32::MAX), DELAY_MAX);
    }

    #[tokio::test]
    async fn per_login_and_per_ip() {
        let t = LoginThrottle::new(100);
        let ip: IpAddr = "10.0.0.1".parse().unwrap();
        let other: IpAddr = "10.0.0.2".parse().unwrap();
        t.record_failure("Alice", Some(ip));
        t.record_failure("alice", Some(ip));
        assert_eq!(t.delay_for("ALICE", Some(other)), delay_after(2));
        assert_eq!(t.delay_for("bob", Some(ip)), delay_after(2));
        assert_eq!(t.delay_for("bob", Some(other)), Duration::ZERO);
        t.record_success("alice", Some(ip));
        assert_eq!(t.delay_for("alice", Some(other)), Duration::ZERO);
        assert_eq!(t.delay_for("alice", Some(ip)), delay_after(2));
    }

    #[tokio::test]
    async fn ipv6_addresses_count_per_64() {
        let t = LoginThrottle::new(100);
        let ip = |s: &str| -> Option<IpAddr> { Some(s.parse().unwrap()) };
        t.record_failure("a", ip("2001:db8:1:2::1"));
        t.record_failure("b", ip("2001:db8:1:2:ffff::7"));
        assert_eq!(t.delay_for("c", ip("2001:db8:1:2:abcd::9")), delay_after(2));
        assert_eq!(t.delay_for("c", ip("2001:db8:1:3::1")), Duration::ZERO);
        // IPv4, also written as mapped IPv6, counts per address.
        t.record_failure("d", ip("192.0.2.1"));
        assert_eq!(t.delay_for("e", ip("::ffff:192.0.2.1")), delay_after(1));
        assert_eq!(t.delay_for("e", ip("192.0.2.2")), Duration::ZERO);
    }

    #[tokio::test(start_paused = true)]
    async fn failures_are_forgotten() {
        let t = LoginThrottle::new(100);
        t.record_failure("a", None);
        assert_eq!(t.delay_for("a", None), DELAY_BASE);
        tokio::time::advance(FORGET_AFTER).await;
        assert_eq!(t.delay_for("a", None), Duration::ZERO);
        t.record_failure("a", None);
        assert_eq!(t.delay_for("a", None), DELAY_BASE);
    }

    #[tokio::test]
    async fn memory_is_bounded() {
        let t = LoginThrottle::new(50);
        for i in 0..1000 {
            t.record_failure(&format!("user{i}"), None);
        }
        assert!(t.len() <= 50);
        t.record_failure(&"x".repeat(10_000), None);
        assert!(t.len() <= 50);
    }
}
