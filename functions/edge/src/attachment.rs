//! What a hibernatable socket carries through hibernation: its [`Attachment`] (pure data, so it
//! is unit-tested on the host).

use roomcast_core::lifecycle::ConnectionClock;
use roomcast_core::protocol::PresenceStatus;
use roomcast_core::store::{Connection, StoreError};
use serde::{Deserialize, Serialize};

/// Largest attachment JSON written. workerd refuses attachments over 16 KiB once serialized
/// (measured with workerd 2026-11-17; older documentation said 2 KiB); the margin covers the
/// serialization header. A connection's record is well below it: a token, which carries the
/// grants and the name, is at most `MAX_TOKEN_BYTES` (8 KiB).
pub const MAX_ATTACHMENT_BYTES: usize = 16 * 1024 - 256;

/// What a socket's attachment holds: the connection as the core stores it, the user's chosen
/// status, and the connection's timers (the alarm's deadlines survive hibernation with it).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Attachment {
    /// The connection (user, grants, rooms, token expiry, rate bucket).
    pub conn: Connection,
    /// The user's chosen status.
    pub status: PresenceStatus,
    /// Last activity and a requested close, for the lifecycle's deadlines.
    pub clock: ConnectionClock,
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
        let mut clock = ConnectionClock::new(&conn);
        clock.activity(1_700_000_000_500);
        clock.close_requested(4001, 1_700_000_001_000);
        let a = Attachment {
            conn: conn.clone(),
            status: PresenceStatus::Away,
            clock,
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
}
