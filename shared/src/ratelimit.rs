//! Per-connection token bucket with strikes. Pure: `now_ms` is passed in, state is plain data
//! the store keeps with the connection.

use serde::{Deserialize, Serialize};

/// How fast a connection may send frames.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RatePolicy {
    /// Frames that may arrive at once after a quiet spell.
    pub burst: u32,
    /// Frames per second sustained.
    pub per_sec: u32,
    /// Rejections (each decaying after a second) that close the connection with 4008.
    pub max_strikes: u32,
}

impl Default for RatePolicy {
    fn default() -> Self {
        Self {
            burst: 30,
            per_sec: 10,
            max_strikes: 20,
        }
    }
}

/// What to do with a frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RateDecision {
    /// Process it.
    Allow,
    /// Drop it with a `RATE_LIMITED` error.
    Reject,
    /// Drop it and close the connection with 4008.
    Close,
}

/// Bucket state: tokens in thousandths, strikes, and when each was last updated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct RateState {
    /// Milli-tokens available; `None` means full (a new connection).
    pub millitokens: Option<u64>,
    /// When `millitokens` was computed.
    pub at_ms: u64,
    /// Recent rejections.
    pub strikes: u32,
    /// When `strikes` last decayed.
    pub strikes_at_ms: u64,
}

impl RateState {
    /// Takes one token at `now_ms` under `policy`.
    pub fn take(&mut self, policy: &RatePolicy, now_ms: u64) -> RateDecision {
        let cap = u64::from(policy.burst) * 1000;
        let elapsed = now_ms.saturating_sub(self.at_ms);
        let tokens = match self.millitokens {
            None => cap,
            Some(t) => t
                .saturating_add(elapsed.saturating_mul(u64::from(policy.per_sec)))
                .min(cap),
        };
        self.at_ms = now_ms.max(self.at_ms);
        let decayed = now_ms.saturating_sub(self.strikes_at_ms) / 1000;
        if decayed > 0 {
            self.strikes = self
                .strikes
                .saturating_sub(u32::try_from(decayed).unwrap_or(u32::MAX));
            self.strikes_at_ms = now_ms;
        }
        if tokens >= 1000 {
            self.millitokens = Some(tokens - 1000);
            RateDecision::Allow
        } else {
            self.millitokens = Some(tokens);
            self.strikes += 1;
            if self.strikes > policy.max_strikes {
                RateDecision::Close
            } else {
                RateDecision::Reject
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const P: RatePolicy = RatePolicy {
        burst: 5,
        per_sec: 10,
        max_strikes: 3,
    };

    #[test]
    fn burst_then_refill() {
        let mut s = RateState::default();
        for _ in 0..5 {
            assert_eq!(s.take(&P, 1_000), RateDecision::Allow);
        }
        assert_eq!(s.take(&P, 1_000), RateDecision::Reject);
        // 10/s: one token every 100 ms.
        assert_eq!(s.take(&P, 1_100), RateDecision::Allow);
        assert_eq!(s.take(&P, 1_150), RateDecision::Reject);
    }

    #[test]
    fn sustained_flood_closes_and_strikes_decay() {
        let mut s = RateState::default();
        for _ in 0..5 {
            s.take(&P, 0);
        }
        let results: Vec<_> = (0..4).map(|_| s.take(&P, 0)).collect();
        assert_eq!(
            results,
            [
                RateDecision::Reject,
                RateDecision::Reject,
                RateDecision::Reject,
                RateDecision::Close
            ]
        );
        // Slightly over the rate (11/s against 10/s): a rejection now and then, which decays
        // before the next one; never closed.
        let mut s = RateState::default();
        let mut t = 0;
        for _ in 0..220 {
            t += 91;
            assert_ne!(s.take(&P, t), RateDecision::Close);
        }
        // Twice the rate: closed within seconds.
        let mut s = RateState::default();
        let closed_at = (1..=200u64)
            .map(|i| i * 50)
            .find(|&t| s.take(&P, t) == RateDecision::Close);
        assert!(closed_at.is_some_and(|t| t < 3_000), "{closed_at:?}");
    }

    #[test]
    fn clock_going_backwards_is_harmless() {
        let mut s = RateState::default();
        assert_eq!(s.take(&P, 10_000), RateDecision::Allow);
        assert_eq!(s.take(&P, 5_000), RateDecision::Allow);
    }
}
