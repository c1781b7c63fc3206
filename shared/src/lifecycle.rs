//! The connection lifecycle, sans-IO: when each connection's next deadline is, and what to do
//! when it passes. Three deadlines close a connection: its token's expiry (4001), idleness
//! (1001) and its maximum age (1001); once a close is asked for, the client has
//! [`CLOSE_GRACE_MS`] to complete it before the connection is forgotten anyway.
//!
//! Nothing here reads a clock or arms a timer. In the style of quinn-proto's
//! `poll_timeout`/`handle_timeout`: the adapter asks [`ConnectionClock::poll_timeout`] when to
//! wake, arms its own timer (a tokio sleep on the local server, the Durable Object's alarm on the
//! edge) and calls [`ConnectionClock::handle_timeout`] with the time when it fires. API Gateway
//! enforces idleness and age itself, and the service checks token expiry on every frame, so the
//! Lambda functions need no timers.

use serde::{Deserialize, Serialize};

use crate::limits::{DEFAULT_IDLE_TIMEOUT_MS, DEFAULT_MAX_CONNECTION_MS};
use crate::protocol::close;
use crate::store::Connection;

/// After the server asks a connection to close, how long the client has to complete the close
/// before the connection is forgotten anyway (a slow consumer may never read its close frame).
pub const CLOSE_GRACE_MS: u64 = 5_000;

/// How long connections may live and idle.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LifecyclePolicy {
    /// Close connections without inbound data for this long (1001).
    pub idle_timeout_ms: u64,
    /// Close every connection after this long (1001).
    pub max_connection_ms: u64,
}

impl Default for LifecyclePolicy {
    /// API Gateway's: 10 minutes idle, 2 hours in all.
    fn default() -> Self {
        Self {
            idle_timeout_ms: DEFAULT_IDLE_TIMEOUT_MS,
            max_connection_ms: DEFAULT_MAX_CONNECTION_MS,
        }
    }
}

/// What to do now that a deadline has passed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Timeout {
    /// Close the connection with this code and reason (the service's `close_with` sends the
    /// `closing` notice first).
    Close {
        /// Close code.
        code: u16,
        /// Close reason.
        reason: &'static str,
    },
    /// The close asked for earlier was not completed within [`CLOSE_GRACE_MS`]: drop the socket
    /// and disconnect the connection.
    Forget,
}

/// One connection's timers, as plain data (the edge keeps it in the socket's attachment, so it
/// survives hibernation).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConnectionClock {
    /// When the connection opened, epoch milliseconds.
    pub connected_at_ms: u64,
    /// When its token stops being valid (leeway included), epoch milliseconds.
    pub token_expires_at_ms: u64,
    /// Last inbound data (or the connect), epoch milliseconds.
    pub active_ms: u64,
    /// Set once a close was asked for: the code and when. The first close asked for wins.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub closing: Option<(u16, u64)>,
}

impl ConnectionClock {
    /// The timers of a connection the service just accepted.
    pub fn new(conn: &Connection) -> Self {
        Self {
            connected_at_ms: conn.connected_at_ms,
            token_expires_at_ms: conn.token_expires_at_ms,
            active_ms: conn.connected_at_ms,
            closing: None,
        }
    }

    /// Inbound data arrived at `now_ms`: the idle deadline moves.
    pub fn activity(&mut self, now_ms: u64) {
        self.active_ms = self.active_ms.max(now_ms);
    }

    /// A close with `code` was asked for at `now_ms` (by a deadline, the service, a slow
    /// consumer or the management API); the grace starts. Later requests change nothing.
    pub fn close_requested(&mut self, code: u16, now_ms: u64) {
        self.closing.get_or_insert((code, now_ms));
    }

    /// Whether a close was asked for: frames arriving afterwards are not routed.
    pub fn is_closing(&self) -> bool {
        self.closing.is_some()
    }

    /// The deadlines of an open connection, earliest first among equals: token expiry, idle,
    /// maximum age.
    fn deadlines(&self, policy: &LifecyclePolicy) -> [(u64, u16, &'static str); 3] {
        [
            (
                self.token_expires_at_ms,
                close::TOKEN_EXPIRED,
                "token expired",
            ),
            (
                self.active_ms.saturating_add(policy.idle_timeout_ms),
                close::GOING_AWAY,
                "idle timeout",
            ),
            (
                self.connected_at_ms
                    .saturating_add(policy.max_connection_ms),
                close::GOING_AWAY,
                "maximum connection duration reached",
            ),
        ]
    }

    /// When [`ConnectionClock::handle_timeout`] should next be called, epoch milliseconds.
    /// Activity only moves deadlines later, so waking early is harmless: the call then does
    /// nothing and this answers the new deadline.
    pub fn poll_timeout(&self, policy: &LifecyclePolicy) -> u64 {
        match self.closing {
            Some((_, since)) => since.saturating_add(CLOSE_GRACE_MS),
            None => self
                .deadlines(policy)
                .iter()
                .map(|d| d.0)
                .min()
                .unwrap_or(u64::MAX),
        }
    }

    /// What is due at `now_ms`, if anything. A close it answers counts as asked for (the grace
    /// starts), so the next call answers [`Timeout::Forget`] once the grace is over.
    pub fn handle_timeout(&mut self, policy: &LifecyclePolicy, now_ms: u64) -> Option<Timeout> {
        if let Some((_, since)) = self.closing {
            return (now_ms >= since.saturating_add(CLOSE_GRACE_MS)).then_some(Timeout::Forget);
        }
        let (_, code, reason) = self
            .deadlines(policy)
            .into_iter()
            .filter(|d| d.0 <= now_ms)
            .min_by_key(|d| d.0)?;
        self.close_requested(code, now_ms);
        Some(Timeout::Close { code, reason })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::{Identity, Role};

    const T0: u64 = 1_800_000_000_000;
    const POLICY: LifecyclePolicy = LifecyclePolicy {
        idle_timeout_ms: 10_000,
        max_connection_ms: 60_000,
    };

    fn clock(token_ttl_ms: u64) -> ConnectionClock {
        let identity = Identity {
            tenant: "acme".into(),
            user: "alice".into(),
            name: None,
            role: Role::User,
            rooms: vec!["lobby".into()],
            expires_at_ms: T0 + token_ttl_ms,
        };
        ConnectionClock::new(&Connection::new("c1", &identity, T0))
    }

    #[test]
    fn idle_deadline_moves_with_activity_and_closes_1001() {
        let mut c = clock(3_600_000);
        assert_eq!(c.poll_timeout(&POLICY), T0 + 10_000);
        assert_eq!(c.handle_timeout(&POLICY, T0 + 9_999), None);
        c.activity(T0 + 5_000);
        assert_eq!(c.poll_timeout(&POLICY), T0 + 15_000);
        // Woken at the old deadline: nothing to do.
        assert_eq!(c.handle_timeout(&POLICY, T0 + 10_000), None);
        assert_eq!(
            c.handle_timeout(&POLICY, T0 + 15_000),
            Some(Timeout::Close {
                code: close::GOING_AWAY,
                reason: "idle timeout"
            })
        );
    }

    #[test]
    fn token_expiry_closes_4001_before_idleness() {
        let mut c = clock(3_000);
        assert_eq!(c.poll_timeout(&POLICY), T0 + 3_000);
        assert_eq!(
            c.handle_timeout(&POLICY, T0 + 20_000),
            Some(Timeout::Close {
                code: close::TOKEN_EXPIRED,
                reason: "token expired"
            })
        );
    }

    #[test]
    fn maximum_age_closes_whatever_the_activity() {
        let mut c = clock(3_600_000);
        for t in (0..60_000).step_by(5_000) {
            c.activity(T0 + t);
            assert_eq!(c.handle_timeout(&POLICY, T0 + t), None);
        }
        assert_eq!(c.poll_timeout(&POLICY), T0 + 60_000);
        assert_eq!(
            c.handle_timeout(&POLICY, T0 + 60_000),
            Some(Timeout::Close {
                code: close::GOING_AWAY,
                reason: "maximum connection duration reached"
            })
        );
    }

    #[test]
    fn a_close_is_forgotten_after_the_grace() {
        let mut c = clock(3_600_000);
        c.close_requested(close::SLOW_CONSUMER, T0 + 1_000);
        // The first close asked for wins.
        c.close_requested(close::NORMAL, T0 + 2_000);
        assert_eq!(c.closing, Some((close::SLOW_CONSUMER, T0 + 1_000)));
        assert_eq!(c.poll_timeout(&POLICY), T0 + 1_000 + CLOSE_GRACE_MS);
        assert_eq!(c.handle_timeout(&POLICY, T0 + 5_999), None);
        assert_eq!(c.handle_timeout(&POLICY, T0 + 6_000), Some(Timeout::Forget));
    }

    #[test]
    fn a_deadline_close_starts_the_grace() {
        let mut c = clock(1_000);
        assert!(matches!(
            c.handle_timeout(&POLICY, T0 + 1_000),
            Some(Timeout::Close { .. })
        ));
        assert!(c.is_closing());
        assert_eq!(c.poll_timeout(&POLICY), T0 + 1_000 + CLOSE_GRACE_MS);
        assert_eq!(
            c.handle_timeout(&POLICY, T0 + 1_000 + CLOSE_GRACE_MS),
            Some(Timeout::Forget)
        );
    }
}
