//! What a hibernatable socket carries through hibernation: its [`Attachment`] (pure data, so it
//! is unit-tested on the host).

use roomcast_core::store::{Connection, StoreError};
use roomcast_core::protocol::PresenceStatus;
use serde::{Deserialize, Serialize};

/// Largest attachment JSON written. workerd refuses attachments over 16 KiB once serialized
/// (measured with workerd 2026-11-17; older documentation said 2 KiB); the margin covers the
/// serialization header. A connection's record is well below it: a token, which carries the
/// grants and the name, is at most `MAX_TOKEN_BYTES` (8 KiB).
pub const MAX_ATTACHMENT_BYTES: usize = 16 * 1024 - 256;

/// Longest close reason a WebSocket close frame carries (125 bytes minus the code).
const MAX_CLOSE_REASON_BYTES: usize = 123;

/// What a socket's attachment holds: the connection as the core stores it, the user's chosen
/// status, and what the adapter needs for housekeeping.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Attachment {
    /// The connection (user, grants, rooms, token expiry, rate bucket).
    pub conn: Connection,
    /// The user's chosen status.
    pub status: PresenceStatus,
    /// Adapter state.
    #[serde(flatten)]
    pub socket: SocketState,
}

/// Per-socket state the adapter keeps besides the connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct SocketState {
    /// Last inbound frame (or the connect), epoch milliseconds: for the idle close.
    pub active_ms: u64,
    /// Set once the server asked to close: the code and when. Frames arriving afterwards are
    /// not routed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub closing: Option<(u16, u64)>,
}

impl Attachment {
    /// The attachment as stored: JSON text, at most [`MAX_ATTACHMENT_BYTES`].
    pub fn encode(&self) -> Result<String, StoreError> {
        let json = serde_json::to_string(self)
            .map_err(|e| StoreError::Other(format!("attachment: {e}")))?;
        if json.len() > MAX_ATTACHMENT_BYTES {
            return Err(StoreError::Other(format!(
                "connection record of {} bytes exceeds the {MAX_ATTACHMENT_BYTES}-byte socket \
                 attachment limit (token grants or name too long)",
                json.len()
            )));
        }
        Ok(json)
    }

    /// Parses a stored attachment.
    pub fn decode(json: &str) -> Result<Self, String> {
        serde_json::from_str(json).map_err(|e| format!("attachment: {e}"))
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

#[cfg(test)]
mod tests {
    use roomcast_core::auth::{Identity, Role};

    use super::*;

    #[test]
    fn attachment_round_trips_and_is_bounded() {
        let identity = Identity {
            tenant: "acme".into(),
            user: "alice".into(),
            name: Some("Alice".into()),
            role: Role::User,
            rooms: vec!["support-*".into()],
            expires_at_ms: 1_800_000_000_000,
        };
        let mut conn = Connection::new("0123456789abcdef01234567", &identity, 1_700_000_000_000);
        conn.rooms.push("support-42".into());
        let a = Attachment {
            conn: conn.clone(),
            status: PresenceStatus::Away,
            socket: SocketState {
                active_ms: 1_700_000_000_500,
                closing: Some((4001, 1_700_000_001_000)),
            },
        };
        let json = a.encode().unwrap();
        assert_eq!(Attachment::decode(&json).unwrap(), a);
        conn.grants = (0..2000).map(|i| format!("room-{i:04}")).collect();
        let big = Attachment { conn, ..a };
        assert!(
            big.encode()
                .unwrap_err()
                .to_string()
                .contains("attachment limit")
        );
    }

    #[test]
    fn close_reasons_fit_a_close_frame() {
        assert_eq!(close_reason("idle timeout"), "idle timeout");
        let long = "é".repeat(100);
        let cut = close_reason(&long);
        assert!(cut.len() <= MAX_CLOSE_REASON_BYTES && long.starts_with(cut));
    }
}
