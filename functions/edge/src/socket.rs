//! One hibernatable WebSocket, the pure parts (unit-tested on the host): the connection id it is
//! tagged with, what its upgrade request carried for `$connect` (token, protocols, origin), and
//! the close codes and reasons that go on the wire.

use roomcast_core::service::Upgrade;

/// Longest close reason a WebSocket close frame carries (125 bytes minus the code).
const MAX_CLOSE_REASON_BYTES: usize = 123;

/// A connection id: 12 random bytes in hex (24 characters, safe as a socket tag).
pub fn connection_id(random: [u8; 12]) -> String {
    random.iter().map(|b| format!("{b:02x}")).collect()
}

/// What an upgrade request carried that `$connect` needs, owned (the Worker reads it to learn
/// the tenant, the Durable Object to connect); [`UpgradeRequest::upgrade`] lends it to the core.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UpgradeRequest {
    /// The `token` query parameter, decoded (the last one, when repeated).
    pub token_param: Option<String>,
    /// The `Sec-WebSocket-Protocol` header.
    pub protocols: Option<String>,
    /// The `Origin` header (a browser page's, for the tenant's embed allowlist).
    pub origin: Option<String>,
}

impl UpgradeRequest {
    /// The token parameter and the protocol and origin headers of `req`.
    #[cfg(target_arch = "wasm32")]
    pub fn from_request(req: &worker::Request) -> worker::Result<Self> {
        let token_param = req
            .url()?
            .query_pairs()
            .filter(|(name, _)| name == "token")
            .map(|(_, value)| value.into_owned())
            .last();
        Ok(Self {
            token_param,
            protocols: req.headers().get("Sec-WebSocket-Protocol")?,
            origin: req.headers().get("Origin")?,
        })
    }

    /// The request as the core's `connect` takes it.
    pub fn upgrade(&self) -> Upgrade<'_> {
        Upgrade {
            token_param: self.token_param.as_deref(),
            protocols: self.protocols.as_deref(),
            origin: self.origin.as_deref(),
        }
    }
}

/// `reason` cut to what a close frame carries, at a character boundary.
pub fn close_reason(reason: &str) -> &str {
    let mut end = reason.len().min(MAX_CLOSE_REASON_BYTES);
    while !reason.is_char_boundary(end) {
        end -= 1;
    }
    &reason[..end]
}

/// The code to answer a client's close with: its own, except the codes that must not be sent
/// (1005 no status, 1006 abnormal, 1015 TLS) and out-of-range ones, answered with 1000.
pub fn reply_close_code(code: usize) -> u16 {
    u16::try_from(code)
        .ok()
        .filter(|c| matches!(c, 1000..=1004 | 1007..=1014 | 3000..=4999))
        .unwrap_or(1000)
}

/// The close code a client sent, for the logs: none for the pseudo-codes the runtime reports
/// when no code was sent (1005), the connection dropped (1006) or TLS failed (1015).
pub fn disconnect_code(code: usize) -> Option<u16> {
    u16::try_from(code)
        .ok()
        .filter(|c| !matches!(c, 1005 | 1006 | 1015))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_fit_a_tag() {
        let id = connection_id([0xab; 12]);
        assert_eq!(id.len(), 24);
        assert!(id.bytes().all(|b| b.is_ascii_hexdigit()));
    }

    #[test]
    fn the_upgrade_lends_the_token_the_protocols_and_the_origin() {
        let request = UpgradeRequest {
            protocols: Some("roomcast.v1, aa.bb.cc".into()),
            origin: Some("https://shop.example".into()),
            ..UpgradeRequest::default()
        };
        let upgrade = request.upgrade();
        assert_eq!(
            (upgrade.token(), upgrade.subprotocol(), upgrade.origin),
            (
                Some("aa.bb.cc"),
                Some("roomcast.v1"),
                Some("https://shop.example")
            )
        );
        let request = UpgradeRequest {
            token_param: Some("q.t.k".into()),
            ..UpgradeRequest::default()
        };
        assert_eq!(request.upgrade().token(), Some("q.t.k"));
    }

    #[test]
    fn close_codes() {
        assert_eq!(reply_close_code(1005), 1000);
        assert_eq!(reply_close_code(4001), 4001);
        assert_eq!(reply_close_code(70_000), 1000);
        assert_eq!(disconnect_code(1000), Some(1000));
        assert_eq!(disconnect_code(1006), None);
    }

    #[test]
    fn close_reasons_fit_a_close_frame() {
        assert_eq!(close_reason("idle timeout"), "idle timeout");
        let long = "é".repeat(100);
        let cut = close_reason(&long);
        assert!(cut.len() <= MAX_CLOSE_REASON_BYTES && long.starts_with(cut));
    }
}
