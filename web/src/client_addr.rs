//! Which address a request comes from: the connection's peer, or, when that peer is a reverse
//! proxy listed in `trusted_proxies`, the client the proxies name in `X-Forwarded-For`.
//!
//! Only the login throttle uses it. Trusting the header from anyone would let a client pick a fresh
//! address for every guess, so it is read only from configured proxies, and walked from the right
//! (the entries our own proxies appended) to the first address that is not a trusted proxy.

use std::net::{IpAddr, SocketAddr};

use ipnet::IpNet;
use serde::de::{self, Deserializer};
use serde::ser::{SerializeSeq, Serializer};
use serde::{Deserialize, Serialize};
use warp::http::HeaderMap;

/// Most `X-Forwarded-For` entries examined, from the right; a chain of trusted proxies longer than
/// this ends at the last entry examined.
pub const FORWARDED_HOPS_MAX: usize = 16;

/// Most networks in `trusted_proxies` (each request's peer is checked against all of them).
pub const TRUSTED_PROXIES_MAX: usize = 256;

/// Networks whose connections may name the client in `X-Forwarded-For`. In the config file a list
/// of addresses (`"127.0.0.1"`) and networks (`"10.0.0.0/8"`, `"fd00::/8"`); empty by default, so
/// the header is ignored.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TrustedProxies(Vec<IpNet>);

impl TrustedProxies {
    /// Parses each entry as an address or a network; the error names the entry.
    pub fn parse<'a>(entries: impl IntoIterator<Item = &'a str>) -> Result<Self, String> {
        let mut nets = Vec::new();
        for e in entries {
            if nets.len() == TRUSTED_PROXIES_MAX {
                return Err(format!(
                    "trusted_proxies: more than {TRUSTED_PROXIES_MAX} entries"
                ));
            }
            let e = e.trim();
            let net = match (e.parse::<IpNet>(), e.parse::<IpAddr>()) {
                (Ok(net), _) => canonical_net(net.trunc()),
                (_, Ok(ip)) => IpNet::from(ip.to_canonical()),
                _ => {
                    return Err(format!(
                    "trusted_proxies: {e:?} is neither an IP address nor a network like 10.0.0.0/8"
                ))
                }
            };
            nets.push(net);
        }
        Ok(TrustedProxies(nets))
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        self.0.iter().any(|n| n.contains(&ip))
    }
}

/// Peers and entries are compared as plain IPv4 when they are IPv4-mapped IPv6, so a network
/// written that way (`::ffff:10.0.0.0/104`) becomes the IPv4 network it means (`10.0.0.0/8`).
fn canonical_net(net: IpNet) -> IpNet {
    match net {
        IpNet::V6(n) if n.prefix_len() >= 96 => match n.addr().to_ipv4_mapped() {
            Some(v4) => ipnet::Ipv4Net::new(v4, n.prefix_len() - 96).map_or(net, IpNet::V4),
            None => net,
        },
        _ => net,
    }
}

/// The client's address for a request that arrived from `peer`. Without a peer (no connection
/// information) there is no address.
pub fn client_ip(
    peer: Option<SocketAddr>,
    headers: &HeaderMap,
    trusted: &TrustedProxies,
) -> Option<IpAddr> {
    let mut client = peer?.ip().to_canonical();
    if !trusted.contains(client) {
        return Some(client);
    }
    // Header lines in order form one comma-separated list; the last entry was appended by the
    // proxy that connected to us, the one before it by the proxy before that, and so on.
    // Split as bytes: a proxy appends its entry to the client's line, so the client's own bytes
    // (not even UTF-8, maybe) must not make the proxy's entry unreadable too.
    let lines: Vec<_> = headers.get_all("x-forwarded-for").iter().collect();
    let entries = lines
        .iter()
        .rev()
        .flat_map(|v| v.as_bytes().rsplit(|&b| b == b','));
    for entry in entries.take(FORWARDED_HOPS_MAX) {
        // An entry a trusted proxy wrote but nobody can read: the proxy is the best we know.
        let Some(ip) = std::str::from_utf8(entry).ok().and_then(parse_hop) else {
            break;
        };
        client = ip;
        if !trusted.contains(ip) {
            break;
        }
    }
    Some(client)
}

/// One `X-Forwarded-For` entry: `203.0.113.5`, `203.0.113.5:4711`, `2001:db8::1`,
/// `[2001:db8::1]` or `[2001:db8::1]:4711`.
fn parse_hop(entry: &str) -> Option<IpAddr> {
    let e = entry.trim();
    let ip = e
        .parse::<IpAddr>()
        .ok()
        .or_else(|| e.parse::<SocketAddr>().ok().map(|s| s.ip()))
        .or_else(|| e.strip_prefix('[')?.strip_suffix(']')?.parse().ok())?;
    Some(ip.to_canonical())
}

impl Serialize for TrustedProxies {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut seq = s.serialize_seq(Some(self.0.len()))?;
        for net in &self.0 {
            seq.serialize_element(&net.to_string())?;
        }
        seq.end()
    }
}

impl<'de> Deserialize<'de> for TrustedProxies {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let entries = Vec::<String>::deserialize(d)?;
        TrustedProxies::parse(entries.iter().map(String::as_str)).map_err(de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use warp::http::HeaderValue;

    fn trusted(list: &[&str]) -> TrustedProxies {
        TrustedProxies::parse(list.iter().copied()).unwrap()
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn resolve(peer: &str, xff: &[&str], list: &[&str]) -> IpAddr {
        let mut h = HeaderMap::new();
        for v in xff {
            h.append("x-forwarded-for", HeaderValue::from_str(v).unwrap());
        }
        let peer = SocketAddr::new(ip(peer), 40_000);
        client_ip(Some(peer), &h, &trusted(list)).unwrap()
    }

    #[test]
    fn an_untrusted_peer_is_the_client_whatever_it_sends() {
        assert_eq!(
            resolve("198.51.100.7", &["203.0.113.5"], &[]),
            ip("198.51.100.7")
        );
        assert_eq!(
            resolve(
                "198.51.100.7",
                &["203.0.113.5"],
                &["10.0.0.0/8", "127.0.0.1"]
            ),
            ip("198.51.100.7")
        );
    }

    #[test]
    fn a_trusted_proxy_names_the_client() {
        assert_eq!(
            resolve("127.0.0.1", &["203.0.113.5"], &["127.0.0.1"]),
            ip("203.0.113.5")
        );
        // No header: the proxy itself.
        assert_eq!(resolve("10.1.2.3", &[], &["10.0.0.0/8"]), ip("10.1.2.3"));
    }

    #[test]
    fn entries_a_client_sent_itself_are_not_believed() {
        // The client put 1.1.1.1 in the header; our proxy appended the address it saw.
        assert_eq!(
            resolve("10.0.0.2", &["1.1.1.1, 203.0.113.5"], &["10.0.0.0/8"]),
            ip("203.0.113.5")
        );
        // Two trusted proxies in a row, the list split over two header lines.
        assert_eq!(
            resolve(
                "10.0.0.2",
                &["1.1.1.1, 203.0.113.5", "10.0.0.9"],
                &["10.0.0.0/8"]
            ),
            ip("203.0.113.5")
        );
    }

    #[test]
    fn all_trusted_ends_at_the_leftmost_and_a_long_chain_at_the_limit() {
        assert_eq!(
            resolve("10.0.0.2", &["10.0.0.7, 10.0.0.8"], &["10.0.0.0/8"]),
            ip("10.0.0.7")
        );
        let chain: Vec<String> = (0..40).map(|i| format!("10.0.1.{i}")).collect();
        let chain = chain.join(", ");
        assert_eq!(
            resolve("10.0.0.2", &[&chain], &["10.0.0.0/8"]),
            ip(&format!("10.0.1.{}", 40 - FORWARDED_HOPS_MAX))
        );
    }

    #[test]
    fn bytes_a_client_sent_do_not_hide_the_entry_its_proxy_appended() {
        // nginx's `$proxy_add_x_forwarded_for` appends to the client's own line.
        let mut h = HeaderMap::new();
        h.append(
            "x-forwarded-for",
            HeaderValue::from_bytes(b"\xff\xfe, 203.0.113.5").unwrap(),
        );
        let peer = SocketAddr::new(ip("10.0.0.2"), 40_000);
        assert_eq!(
            client_ip(Some(peer), &h, &trusted(&["10.0.0.0/8"])),
            Some(ip("203.0.113.5"))
        );
    }

    #[test]
    fn mapped_networks_match_ipv4_peers() {
        let t = trusted(&["::ffff:10.0.0.0/104", "::ffff:192.0.2.1"]);
        assert!(t.contains(ip("10.1.2.3")));
        assert!(t.contains(ip("::ffff:10.1.2.3")));
        assert!(t.contains(ip("192.0.2.1")));
        assert!(!t.contains(ip("11.0.0.1")));
    }

    #[test]
    fn unreadable_entries_stop_at_the_proxy_that_wrote_them() {
        assert_eq!(
            resolve("10.0.0.2", &["unknown"], &["10.0.0.0/8"]),
            ip("10.0.0.2")
        );
        assert_eq!(
            resolve("10.0.0.2", &["203.0.113.5, , 10.0.0.3"], &["10.0.0.0/8"]),
            ip("10.0.0.3")
        );
    }

    #[test]
    fn ports_brackets_and_mapped_addresses() {
        let list = &["10.0.0.0/8", "::1"];
        assert_eq!(
            resolve("::1", &["203.0.113.5:4711"], list),
            ip("203.0.113.5")
        );
        assert_eq!(
            resolve("::1", &["[2001:db8::1]:4711"], list),
            ip("2001:db8::1")
        );
        assert_eq!(resolve("::1", &["[2001:db8::1]"], list), ip("2001:db8::1"));
        // An IPv4 proxy seen on a dual-stack socket, and an IPv4 client written as mapped IPv6.
        assert_eq!(
            resolve("::ffff:10.0.0.2", &["::ffff:203.0.113.5"], list),
            ip("203.0.113.5")
        );
    }

    #[test]
    fn config_entries_parse_or_name_the_bad_one() {
        let t: TrustedProxies =
            serde_json::from_str(r#"["127.0.0.1", "10.0.0.0/8", "fd00::/8", "192.168.1.7/24"]"#)
                .unwrap();
        assert!(t.contains(ip("192.168.1.200")));
        assert!(t.contains(ip("fd00::5")));
        assert!(!t.contains(ip("127.0.0.2")));
        assert_eq!(
            serde_json::to_string(&t).unwrap(),
            r#"["127.0.0.1/32","10.0.0.0/8","fd00::/8","192.168.1.0/24"]"#
        );
        let err = serde_json::from_str::<TrustedProxies>(r#"["10.0.0.0/8", "proxy.local"]"#)
            .unwrap_err()
            .to_string();
        assert!(err.contains("\"proxy.local\""), "{err}");
        let too_many: Vec<String> = (0..=TRUSTED_PROXIES_MAX)
            .map(|i| format!("10.0.{}.{}", i / 256, i % 256))
            .collect();
        assert!(
            serde_json::from_str::<TrustedProxies>(&serde_json::to_string(&too_many).unwrap())
                .is_err()
        );
    }
}
