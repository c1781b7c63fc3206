//! Who a request comes from: its peer address, or, when the peer is a trusted reverse proxy
//! (`--trusted-proxy`), the address the proxy says it forwarded for. Anyone can write an
//! `X-Forwarded-For` header, so it is believed only from the proxies configured.

use std::net::IpAddr;

use axum::http::HeaderMap;

/// The client's address: `peer`, unless `peer` is one of `trusted`; then the right-most entry of
/// `X-Forwarded-For` that is not itself a trusted proxy (each proxy appends the address it
/// received from, so entries left of it could have been written by the client). Without a
/// usable header, `peer`.
pub fn client_ip(peer: IpAddr, headers: &HeaderMap, trusted: &[IpAddr]) -> IpAddr {
    let peer = peer.to_canonical();
    if !trusted.contains(&peer) {
        return peer;
    }
    let hops = headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .collect::<Vec<_>>();
    for hop in hops.into_iter().rev() {
        let Ok(ip) = hop.parse::<IpAddr>() else {
            // Not an address: nothing left of it can be trusted either.
            return peer;
        };
        let ip = ip.to_canonical();
        if !trusted.contains(&ip) {
            return ip;
        }
    }
    peer
}

/// Whether the request says a proxy forwarded it (`Forwarded`, `X-Forwarded-For`,
/// `X-Real-IP`): behind an untrusted proxy the peer address is the proxy's, not the client's.
pub fn says_forwarded(headers: &HeaderMap) -> bool {
    ["forwarded", "x-forwarded-for", "x-real-ip"]
        .iter()
        .any(|h| headers.contains_key(*h))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse()
            .unwrap_or_else(|_| unreachable!("test addresses parse"))
    }

    fn xff(values: &[&str]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for v in values {
            h.append(
                "x-forwarded-for",
                v.parse().unwrap_or_else(|_| unreachable!("ASCII")),
            );
        }
        h
    }

    #[test]
    fn the_header_counts_only_from_a_trusted_proxy() {
        let proxy = ip("127.0.0.1");
        let header = xff(&["203.0.113.9"]);
        assert_eq!(client_ip(proxy, &header, &[]), proxy);
        assert_eq!(client_ip(proxy, &header, &[proxy]), ip("203.0.113.9"));
        assert_eq!(client_ip(ip("10.0.0.7"), &header, &[proxy]), ip("10.0.0.7"));
    }

    #[test]
    fn the_right_most_untrusted_hop_is_the_client() {
        let proxy = ip("127.0.0.1");
        let inner = ip("10.0.0.2");
        // The client wrote "1.2.3.4" itself; the proxies appended the rest.
        let header = xff(&["1.2.3.4, 198.51.100.7", "10.0.0.2"]);
        assert_eq!(
            client_ip(proxy, &header, &[proxy, inner]),
            ip("198.51.100.7")
        );
        // Only trusted hops: the peer.
        assert_eq!(
            client_ip(proxy, &xff(&["10.0.0.2"]), &[proxy, inner]),
            proxy
        );
        // Garbage stops the walk.
        assert_eq!(
            client_ip(proxy, &xff(&["1.2.3.4, nonsense"]), &[proxy]),
            proxy
        );
        // IPv4-mapped IPv6 peers match their IPv4 form.
        assert_eq!(
            client_ip(ip("::ffff:127.0.0.1"), &xff(&["203.0.113.9"]), &[proxy]),
            ip("203.0.113.9")
        );
    }

    #[test]
    fn forwarding_headers_are_noticed() {
        assert!(!says_forwarded(&HeaderMap::new()));
        assert!(says_forwarded(&xff(&["1.2.3.4"])));
        let mut h = HeaderMap::new();
        h.insert(
            "forwarded",
            "for=1.2.3.4"
                .parse()
                .unwrap_or_else(|_| unreachable!("ASCII")),
        );
        assert!(says_forwarded(&h));
    }
}
