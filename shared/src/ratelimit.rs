//! Token buckets with strikes: one per connection (its frames) and one per user of a tenant (its
//! HTTP API requests). Pure: `now_ms` is passed in, state is plain data the store keeps.
//!
//! A token pays for one frame or request and the ordinary reply to it. Work that sends more (a
//! replay, a history page, a presence change announced in many rooms) is charged afterwards with
//! [`RateState::charge`], which may leave the bucket in debt: nothing more is admitted until the
//! refill has repaid it, so sustained expensive work is throttled like sustained frames.

use serde::{Deserialize, Serialize};

/// How fast a connection may send frames (and a user make HTTP API requests).
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
    /// Milli-tokens available; `None` means full (a new bucket). Below zero: the debt charged
    /// work left ([`RateState::charge`]).
    pub millitokens: Option<i64>,
    /// When `millitokens` was computed.
    pub at_ms: u64,
    /// Recent rejections.
    pub strikes: u32,
    /// When `strikes` last decayed.
    pub strikes_at_ms: u64,
}

/// One token, in the bucket's unit.
const TOKEN: i64 = 1000;

impl RateState {
    /// Takes one token at `now_ms` under `policy`: allowed while the bucket holds a whole token,
    /// else a strike.
    pub fn take(&mut self, policy: &RatePolicy, now_ms: u64) -> RateDecision {
        let tokens = self.refill(policy, now_ms);
        let decayed = now_ms.saturating_sub(self.strikes_at_ms) / 1000;
        if decayed > 0 {
            self.strikes = self
                .strikes
                .saturating_sub(u32::try_from(decayed).unwrap_or(u32::MAX));
            self.strikes_at_ms = now_ms;
        }
        if tokens >= TOKEN {
            self.millitokens = Some(tokens - TOKEN);
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

    /// Charges `tokens` more at `now_ms` for work an admitted frame or request did beyond its
    /// own token. The work is done, so there is no decision and no strike: the bucket may go
    /// into debt, and [`RateState::take`] refuses until the refill has repaid it.
    pub fn charge(&mut self, policy: &RatePolicy, now_ms: u64, tokens: u32) {
        let available = self.refill(policy, now_ms);
        self.millitokens = Some(available.saturating_sub(i64::from(tokens) * TOKEN));
    }

    /// Whether the bucket is as a new one would be at `now_ms` (full, no strikes left), so a
    /// store may forget it.
    pub fn is_idle(&self, policy: &RatePolicy, now_ms: u64) -> bool {
        let mut probe = *self;
        let full = probe.refill(policy, now_ms) >= i64::from(policy.burst) * TOKEN;
        let strikes_left =
            u64::from(self.strikes) > now_ms.saturating_sub(self.strikes_at_ms) / 1000;
        full && !strikes_left
    }

    /// The milli-tokens available at `now_ms` (refilled since the last update, at most the
    /// burst; negative while in debt); records `now_ms` as the update time.
    fn refill(&mut self, policy: &RatePolicy, now_ms: u64) -> i64 {
        let cap = i64::from(policy.burst) * TOKEN;
        let elapsed = now_ms.saturating_sub(self.at_ms);
        let refilled =
            i64::try_from(elapsed.saturating_mul(u64::from(policy.per_sec))).unwrap_or(i64::MAX);
        let tokens = match self.millitokens {
            None => cap,
            Some(t) => t.saturating_add(refilled).min(cap),
        };
        self.at_ms = now_ms.max(self.at_ms);
        tokens
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
    fn charged_work_is_a_debt_repaid_before_the_next_frame() {
        let mut s = RateState::default();
        assert_eq!(s.take(&P, 1_000), RateDecision::Allow);
        // The frame's work cost 7 tokens more: 4 left, then a debt of 3.
        s.charge(&P, 1_000, 7);
        assert_eq!(s.millitokens, Some(-3_000));
        assert_eq!(s.take(&P, 1_000), RateDecision::Reject);
        // 10/s: the debt of 3 and one token take 400 ms.
        assert_eq!(s.take(&P, 1_390), RateDecision::Reject);
        assert_eq!(s.take(&P, 1_400), RateDecision::Allow);
        // A charge takes no strike, whatever the bucket holds.
        let strikes = s.strikes;
        s.charge(&P, 1_400, 100);
        assert_eq!(s.strikes, strikes);
    }

    #[test]
    fn a_bucket_is_idle_once_full_and_without_strikes() {
        let mut s = RateState::default();
        assert!(s.is_idle(&P, 0), "a new bucket");
        s.take(&P, 1_000);
        assert!(!s.is_idle(&P, 1_000));
        assert!(s.is_idle(&P, 1_100), "refilled");
        for _ in 0..6 {
            s.take(&P, 2_000);
        }
        assert_eq!(s.strikes, 1);
        assert!(!s.is_idle(&P, 2_500), "refilled but struck");
        assert!(s.is_idle(&P, 3_000));
        s.charge(&P, 3_000, 20);
        assert!(!s.is_idle(&P, 4_999), "in debt");
        assert!(s.is_idle(&P, 5_500));
    }

    #[test]
    fn clock_going_backwards_is_harmless() {
        let mut s = RateState::default();
        assert_eq!(s.take(&P, 10_000), RateDecision::Allow);
        assert_eq!(s.take(&P, 5_000), RateDecision::Allow);
    }
}
