//! Which endpoint URLs deliveries may go to (SSRF): a pure check over the parsed URL and the
//! addresses its host resolved to, both supplied by the caller.
//!
//! Outside development mode an endpoint must not reach loopback, private, link-local,
//! unique-local or otherwise non-public addresses; never (in development mode neither) the
//! deployment's own origin, nor addresses no HTTP server can have (unspecified, multicast,
//! broadcast). Every resolved address must pass, and the delivery must then connect to one of
//! the addresses checked (not resolve again), or DNS rebinding walks around the check.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

pub use url::Url;

/// A kind of address deliveries may not reach.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AddressClass {
    /// `127.0.0.0/8`, `::1`.
    Loopback,
    /// `10/8`, `172.16/12`, `192.168/16`, and IPv6 site-local `fec0::/10`.
    Private,
    /// `169.254/16` (cloud metadata lives here), `fe80::/10`.
    LinkLocal,
    /// `fc00::/7`.
    UniqueLocal,
    /// Carrier-grade NAT, `100.64/10`.
    Shared,
    /// `0.0.0.0/8`, `::`.
    Unspecified,
    /// `224/4`, `ff00::/8`.
    Multicast,
    /// `255.255.255.255`.
    Broadcast,
    /// Documentation, benchmarking, IETF and future-use ranges.
    Reserved,
}

impl AddressClass {
    /// Whether development mode allows it (a bot on the developer's machine or network).
    pub fn allowed_in_development(self) -> bool {
        matches!(
            self,
            Self::Loopback | Self::Private | Self::LinkLocal | Self::UniqueLocal | Self::Shared
        )
    }
}

/// Why an endpoint URL was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EndpointError {
    /// Not a URL.
    #[error("not a URL: {0}")]
    Invalid(String),
    /// Only `https` (and `http`) are delivered to.
    #[error("scheme {0} is not http or https")]
    Scheme(String),
    /// `user:password@` in the URL (secrets belong in the signature, not the URL).
    #[error("credentials in the URL")]
    Credentials,
    /// No host.
    #[error("no host")]
    NoHost,
    /// The host resolved to nothing.
    #[error("the host resolved to no address")]
    Unresolved,
    /// The deployment's own origin.
    #[error("the endpoint is this deployment")]
    OwnOrigin,
    /// An address of a refused kind.
    #[error("{address} is a {class:?} address")]
    Address {
        /// The address.
        address: IpAddr,
        /// Its kind.
        class: AddressClass,
    },
}

/// What the check allows.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EndpointRules {
    /// Development mode: non-public addresses (loopback, private, link-local, unique-local,
    /// shared) are allowed.
    pub development: bool,
    /// The deployment's own origins, `(host, port)`, lower-case: never allowed.
    pub own_origins: Vec<(String, u16)>,
}

/// Parses an endpoint URL (WHATWG rules: `http://2130706433/` is `127.0.0.1`).
pub fn parse_endpoint_url(text: &str) -> Result<Url, EndpointError> {
    Url::parse(text).map_err(|e| EndpointError::Invalid(e.to_string()))
}

/// Checks `url` and the addresses its host resolved to (`resolved`; ignored when the host is
/// an address literal, which is checked itself).
pub fn check_endpoint(
    url: &Url,
    resolved: &[IpAddr],
    rules: &EndpointRules,
) -> Result<(), EndpointError> {
    if !matches!(url.scheme(), "https" | "http") {
        return Err(EndpointError::Scheme(url.scheme().into()));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(EndpointError::Credentials);
    }
    let host = url.host().ok_or(EndpointError::NoHost)?;
    let port = url.port_or_known_default().ok_or(EndpointError::NoHost)?;
    let host_text = host.to_string().to_ascii_lowercase();
    let host_text = host_text.trim_end_matches('.');
    if rules
        .own_origins
        .iter()
        .any(|(h, p)| h.trim_end_matches('.') == host_text && *p == port)
    {
        return Err(EndpointError::OwnOrigin);
    }
    let literal;
    let addresses = match host {
        url::Host::Ipv4(a) => {
            literal = [IpAddr::V4(a)];
            &literal[..]
        }
        url::Host::Ipv6(a) => {
            literal = [IpAddr::V6(a)];
            &literal[..]
        }
        url::Host::Domain(_) => resolved,
    };
    if addresses.is_empty() {
        return Err(EndpointError::Unresolved);
    }
    for &address in addresses {
        if let Some(class) = classify(address)
            && !(rules.development && class.allowed_in_development())
        {
            return Err(EndpointError::Address { address, class });
        }
    }
    Ok(())
}

/// The kind of a non-public address; `None` for a public one.
pub fn classify(address: IpAddr) -> Option<AddressClass> {
    match address {
        IpAddr::V4(a) => classify_v4(a),
        IpAddr::V6(a) => classify_v6(a),
    }
}

fn classify_v4(a: Ipv4Addr) -> Option<AddressClass> {
    let [b0, b1, b2, _] = a.octets();
    let class = match (b0, b1, b2) {
        (0, _, _) => AddressClass::Unspecified,
        (127, _, _) => AddressClass::Loopback,
        (10, _, _) | (192, 168, _) => AddressClass::Private,
        (172, 16..=31, _) => AddressClass::Private,
        (169, 254, _) => AddressClass::LinkLocal,
        (100, 64..=127, _) => AddressClass::Shared,
        _ if a.is_broadcast() => AddressClass::Broadcast,
        (224..=239, _, _) => AddressClass::Multicast,
        (240..=255, _, _) => AddressClass::Reserved,
        (192, 0, 0) | (192, 0, 2) | (198, 51, 100) | (203, 0, 113) | (198, 18..=19, _) => {
            AddressClass::Reserved
        }
        _ => return None,
    };
    Some(class)
}

fn classify_v6(a: Ipv6Addr) -> Option<AddressClass> {
    if let Some(v4) = embedded_v4(a) {
        return classify_v4(v4);
    }
    let s = a.segments();
    let class = if a.is_unspecified() {
        AddressClass::Unspecified
    } else if a.is_loopback() {
        AddressClass::Loopback
    } else if s[0] & 0xffc0 == 0xfe80 {
        AddressClass::LinkLocal
    } else if s[0] & 0xffc0 == 0xfec0 {
        AddressClass::Private
    } else if s[0] & 0xfe00 == 0xfc00 {
        AddressClass::UniqueLocal
    } else if s[0] & 0xff00 == 0xff00 {
        AddressClass::Multicast
    } else if (s[0], s[1]) == (0x2001, 0x0db8) || s[0] & 0xe000 != 0x2000 {
        // Documentation, and everything outside global unicast 2000::/3.
        AddressClass::Reserved
    } else {
        return None;
    };
    Some(class)
}

/// The IPv4 address inside an IPv4-mapped (`::ffff:a.b.c.d`), NAT64 (`64:ff9b::/96`) or 6to4
/// (`2002::/16`) address: reaching it reaches that IPv4 address.
fn embedded_v4(a: Ipv6Addr) -> Option<Ipv4Addr> {
    let s = a.segments();
    let from = |hi: u16, lo: u16| {
        let [a, b] = hi.to_be_bytes();
        let [c, d] = lo.to_be_bytes();
        Ipv4Addr::new(a, b, c, d)
    };
    if let Some(v4) = a.to_ipv4_mapped() {
        Some(v4)
    } else if s[..6] == [0x64, 0xff9b, 0, 0, 0, 0] {
        Some(from(s[6], s[7]))
    } else if s[0] == 0x2002 {
        Some(from(s[1], s[2]))
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]

    use super::*;

    fn check(url: &str, resolved: &[&str], development: bool) -> Result<(), EndpointError> {
        let rules = EndpointRules {
            development,
            own_origins: vec![("chat.example.com".into(), 443), ("localhost".into(), 8080)],
        };
        let resolved: Vec<IpAddr> = resolved.iter().map(|a| a.parse().unwrap()).collect();
        check_endpoint(&parse_endpoint_url(url)?, &resolved, &rules)
    }

    fn class_of(result: Result<(), EndpointError>) -> Option<AddressClass> {
        match result {
            Err(EndpointError::Address { class, .. }) => Some(class),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn public_endpoints_pass() {
        check("https://bot.example.net/hook", &["93.184.215.14"], false).unwrap();
        check(
            "https://bot.example.net/hook",
            &["2606:2800:21f:cb07::1"],
            false,
        )
        .unwrap();
        check("http://93.184.215.14:8443/", &[], false).unwrap();
    }

    #[test]
    fn non_public_addresses_are_refused_outside_development() {
        for (address, class) in [
            ("127.0.0.1", AddressClass::Loopback),
            ("10.1.2.3", AddressClass::Private),
            ("172.20.0.1", AddressClass::Private),
            ("192.168.1.1", AddressClass::Private),
            ("169.254.169.254", AddressClass::LinkLocal),
            ("100.100.1.1", AddressClass::Shared),
            ("0.0.0.0", AddressClass::Unspecified),
            ("224.0.0.1", AddressClass::Multicast),
            ("255.255.255.255", AddressClass::Broadcast),
            ("198.18.0.1", AddressClass::Reserved),
            ("::1", AddressClass::Loopback),
            ("::", AddressClass::Unspecified),
            ("fe80::1", AddressClass::LinkLocal),
            ("fd00::1", AddressClass::UniqueLocal),
            ("ff02::1", AddressClass::Multicast),
            ("::ffff:127.0.0.1", AddressClass::Loopback),
            ("64:ff9b::a9fe:a9fe", AddressClass::LinkLocal),
            ("2002:c0a8:0101::1", AddressClass::Private),
            ("2001:db8::1", AddressClass::Reserved),
        ] {
            let got = class_of(check("https://bot.example.net/", &[address], false));
            assert_eq!(got, Some(class), "{address}");
        }
    }

    #[test]
    fn every_resolved_address_must_pass() {
        let got = check(
            "https://bot.example.net/",
            &["93.184.215.14", "10.0.0.1"],
            false,
        );
        assert_eq!(class_of(got), Some(AddressClass::Private));
        assert_eq!(
            check("https://bot.example.net/", &[], false),
            Err(EndpointError::Unresolved)
        );
    }

    #[test]
    fn literal_and_obfuscated_hosts_are_checked_themselves() {
        // Whatever the resolver said: the host is an address.
        for url in [
            "http://127.0.0.1/",
            "http://2130706433/",
            "http://0x7f.1/",
            "http://[::ffff:7f00:1]/",
        ] {
            let got = check(url, &["93.184.215.14"], false);
            assert_eq!(class_of(got), Some(AddressClass::Loopback), "{url}");
        }
    }

    #[test]
    fn development_allows_local_addresses_but_never_the_deployment_itself() {
        check("http://localhost:9000/hook", &["127.0.0.1"], true).unwrap();
        check("http://192.168.1.20/hook", &[], true).unwrap();
        assert_eq!(
            check("http://LOCALHOST:8080/hook", &["127.0.0.1"], true),
            Err(EndpointError::OwnOrigin)
        );
        assert_eq!(
            check("https://chat.example.com./x", &["93.184.215.14"], false),
            Err(EndpointError::OwnOrigin)
        );
        let got = check("http://0.0.0.0:9000/", &[], true);
        assert_eq!(class_of(got), Some(AddressClass::Unspecified));
    }

    #[test]
    fn other_schemes_credentials_and_garbage_are_refused() {
        assert_eq!(
            check("ftp://bot.example.net/", &["93.184.215.14"], false),
            Err(EndpointError::Scheme("ftp".into()))
        );
        assert_eq!(
            check("https://u:p@bot.example.net/", &["93.184.215.14"], false),
            Err(EndpointError::Credentials)
        );
        assert!(matches!(
            check("not a url", &[], false),
            Err(EndpointError::Invalid(_))
        ));
        assert_eq!(
            check("file:///etc/passwd", &[], false),
            Err(EndpointError::Scheme("file".into()))
        );
    }
}
