//! The delivery policy, sans-IO in the style of quinn-proto: an [`EndpointQueue`] per endpoint
//! holds that endpoint's deliveries and decides what to send next ([`EndpointQueue::poll_attempt`]),
//! when to be woken ([`EndpointQueue::poll_timeout`]) and what an answer means
//! ([`EndpointQueue::handle_result`], [`EndpointQueue::handle_timeout`]). The caller does the
//! HTTP, owns the clock and the random numbers, and passes `now` and jitter in.
//!
//! Retries: a timeout, a connection failure, 408, 429 and 5xx are retried with exponential
//! backoff and jitter until [`RetryPolicy::give_up_after_ms`] after the first attempt, honouring
//! `Retry-After`; any other status outside 2xx (redirects are not followed) is final. A delivery
//! that is final or out of time is dead-lettered. Each endpoint has its own queue and its own
//! in-flight limit, so a slow or dead endpoint never delays another.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

/// How deliveries are retried.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Backoff after the first failure; doubles after each further one.
    pub first_delay_ms: u64,
    /// Backoff never exceeds this.
    pub max_delay_ms: u64,
    /// No attempt starts later than this after the first attempt; then the delivery is
    /// dead-lettered.
    pub give_up_after_ms: u64,
    /// An attempt with no answer within this is a timeout.
    pub attempt_timeout_ms: u64,
    /// Attempts in flight at once to one endpoint.
    pub max_in_flight: usize,
}

impl Default for RetryPolicy {
    /// 5 s doubling to at most 2 h, for 24 h; 15 s per attempt; 4 in flight per endpoint.
    fn default() -> Self {
        Self {
            first_delay_ms: 5_000,
            max_delay_ms: 2 * 3_600_000,
            give_up_after_ms: 24 * 3_600_000,
            attempt_timeout_ms: 15_000,
            max_in_flight: 4,
        }
    }
}

impl RetryPolicy {
    /// The backoff before attempt `failures + 1` after `failures` failures, before jitter.
    pub fn nominal_delay_ms(&self, failures: u32) -> u64 {
        let doublings = failures.saturating_sub(1).min(63);
        self.first_delay_ms
            .saturating_mul(1u64 << doublings)
            .min(self.max_delay_ms)
    }

    /// The jittered backoff: uniformly in `[nominal / 2, nominal]`, picked by `jitter` (any
    /// random number).
    pub fn delay_ms(&self, failures: u32, jitter: u64) -> u64 {
        let nominal = self.nominal_delay_ms(failures);
        let half = nominal / 2;
        nominal - half + jitter % (half + 1)
    }
}

/// One event's delivery to one endpoint, as the outbox keeps it between attempts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Delivery {
    /// The event id (`webhook-id`).
    pub event_id: String,
    /// When it was first due, epoch milliseconds: the retry window starts here.
    pub first_due_ms: u64,
    /// Attempts made so far.
    pub attempts: u32,
    /// When the next attempt is due, epoch milliseconds.
    pub next_at_ms: u64,
}

impl Delivery {
    /// A new delivery, due at `now_ms`.
    pub fn new(event_id: impl Into<String>, now_ms: u64) -> Self {
        Self {
            event_id: event_id.into(),
            first_due_ms: now_ms,
            attempts: 0,
            next_at_ms: now_ms,
        }
    }
}

/// What came of one attempt, as the caller's HTTP client saw it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttemptResult {
    /// An HTTP answer.
    Status {
        /// The status code.
        code: u16,
        /// `Retry-After` as a delay from now ([`parse_retry_after`]), when present.
        retry_after_ms: Option<u64>,
    },
    /// No answer within [`RetryPolicy::attempt_timeout_ms`].
    Timeout,
    /// No connection (DNS, TCP, TLS).
    Unreachable,
}

/// Why a delivery was dead-lettered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "reason", rename_all = "snake_case")]
pub enum DeadReason {
    /// The endpoint answered a status that is not retried (a 4xx other than 408/429, a 3xx).
    Refused {
        /// The status.
        code: u16,
    },
    /// The retry window ([`RetryPolicy::give_up_after_ms`]) is over.
    Expired,
}

/// What the queue decided about a delivery.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// 2xx: acknowledge it in the outbox.
    Delivered,
    /// Try again at this time (store it in the outbox).
    RetryAt(u64),
    /// Move it to the dead-letter list.
    DeadLetter(DeadReason),
}

impl Verdict {
    /// Its name in attempt records and metrics: `delivered`, `retry`, `dead_letter`.
    pub fn label(&self) -> &'static str {
        match self {
            Self::Delivered => "delivered",
            Self::RetryAt(_) => "retry",
            Self::DeadLetter(_) => "dead_letter",
        }
    }
}

/// A decision with the delivery as it now stands (attempts counted), for the outbox.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    /// The delivery.
    pub delivery: Delivery,
    /// What to do with it.
    pub verdict: Verdict,
    /// The attempt's HTTP status, if it got one (for the attempt log).
    pub status: Option<u16>,
}

/// One attempt to make now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attempt {
    /// The event to send.
    pub event_id: String,
    /// 1 for the first attempt.
    pub number: u32,
    /// Abandon the request at this time (then [`EndpointQueue::handle_timeout`] counts it).
    pub deadline_ms: u64,
}

/// What a status means for the delivery.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum StatusClass {
    /// 2xx.
    Delivered,
    /// 408, 429, 5xx.
    Retry,
    /// Anything else: 1xx, 3xx (redirects are not followed), other 4xx.
    Final,
}

fn classify(code: u16) -> StatusClass {
    match code {
        200..=299 => StatusClass::Delivered,
        408 | 429 | 500..=599 => StatusClass::Retry,
        _ => StatusClass::Final,
    }
}

/// One endpoint's deliveries: waiting ones by due time, and those in flight.
#[derive(Debug, Clone)]
pub struct EndpointQueue {
    policy: RetryPolicy,
    /// (due, arrival order) → delivery.
    waiting: BTreeMap<(u64, u64), Delivery>,
    /// The event ids in `waiting`.
    waiting_ids: BTreeSet<String>,
    /// event id → (delivery, attempt deadline).
    in_flight: BTreeMap<String, (Delivery, u64)>,
    /// Nothing is sent before this (the endpoint's `Retry-After` on 429).
    paused_until_ms: u64,
    arrivals: u64,
}

impl EndpointQueue {
    /// An empty queue under `policy`.
    pub fn new(policy: RetryPolicy) -> Self {
        Self {
            policy,
            waiting: BTreeMap::new(),
            waiting_ids: BTreeSet::new(),
            in_flight: BTreeMap::new(),
            paused_until_ms: 0,
            arrivals: 0,
        }
    }

    /// Adds a delivery (new, or resumed from the outbox after a restart). A delivery of an
    /// event already queued or in flight is ignored: returns whether it was added.
    pub fn push(&mut self, delivery: Delivery) -> bool {
        if self.contains(&delivery.event_id) {
            return false;
        }
        self.arrivals += 1;
        self.waiting_ids.insert(delivery.event_id.clone());
        self.waiting
            .insert((delivery.next_at_ms, self.arrivals), delivery);
        true
    }

    /// Whether the event is queued or in flight.
    pub fn contains(&self, event_id: &str) -> bool {
        self.in_flight.contains_key(event_id) || self.waiting_ids.contains(event_id)
    }

    /// The number of the attempt in flight for `event_id`, if one is (so a caller can tell a
    /// late answer of an earlier attempt from the current one's).
    pub fn attempt_in_flight(&self, event_id: &str) -> Option<u32> {
        self.in_flight.get(event_id).map(|(d, _)| d.attempts)
    }

    /// Deliveries waiting or in flight.
    pub fn len(&self) -> usize {
        self.waiting.len() + self.in_flight.len()
    }

    /// Whether nothing is waiting or in flight.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The next attempt to make at `now_ms`, if one is due and the in-flight limit allows.
    /// Waiting deliveries go out in due order (then arrival order, which is seq order for one
    /// room's events).
    pub fn poll_attempt(&mut self, now_ms: u64) -> Option<Attempt> {
        if self.in_flight.len() >= self.policy.max_in_flight || now_ms < self.paused_until_ms {
            return None;
        }
        let key = *self.waiting.keys().next()?;
        if key.0 > now_ms {
            return None;
        }
        let mut delivery = self.waiting.remove(&key)?;
        self.waiting_ids.remove(&delivery.event_id);
        delivery.attempts += 1;
        let attempt = Attempt {
            event_id: delivery.event_id.clone(),
            number: delivery.attempts,
            deadline_ms: now_ms.saturating_add(self.policy.attempt_timeout_ms),
        };
        self.in_flight
            .insert(delivery.event_id.clone(), (delivery, attempt.deadline_ms));
        Some(attempt)
    }

    /// When the queue next needs the caller: the earliest in-flight deadline or, when an
    /// attempt may start, the earliest due time (never before a `Retry-After` pause ends).
    /// `None`: nothing to do until a result arrives or a delivery is pushed.
    pub fn poll_timeout(&self) -> Option<u64> {
        let deadline = self.in_flight.values().map(|(_, at)| *at).min();
        let due = if self.in_flight.len() < self.policy.max_in_flight {
            self.waiting
                .keys()
                .next()
                .map(|(due, _)| (*due).max(self.paused_until_ms))
        } else {
            None
        };
        match (deadline, due) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Counts every in-flight attempt whose deadline has passed as a timeout. A result that
    /// arrives for one later is ignored.
    pub fn handle_timeout(&mut self, now_ms: u64, jitter: &mut dyn FnMut() -> u64) -> Vec<Outcome> {
        let expired: Vec<String> = self
            .in_flight
            .iter()
            .filter(|(_, (_, deadline))| *deadline <= now_ms)
            .map(|(id, _)| id.clone())
            .collect();
        expired
            .into_iter()
            .filter_map(|id| self.handle_result(&id, AttemptResult::Timeout, now_ms, jitter()))
            .collect()
    }

    /// The result of the attempt in flight for `event_id` (`None` when there is none: a late
    /// answer after a timeout). `jitter` is any random number.
    pub fn handle_result(
        &mut self,
        event_id: &str,
        result: AttemptResult,
        now_ms: u64,
        jitter: u64,
    ) -> Option<Outcome> {
        let (delivery, _) = self.in_flight.remove(event_id)?;
        let (status, retry_after_ms) = match result {
            AttemptResult::Status {
                code,
                retry_after_ms,
            } => (Some(code), retry_after_ms),
            AttemptResult::Timeout | AttemptResult::Unreachable => (None, None),
        };
        let class = status.map_or(StatusClass::Retry, classify);
        let verdict = match (class, status) {
            (StatusClass::Delivered, _) => Verdict::Delivered,
            (StatusClass::Final, Some(code)) => Verdict::DeadLetter(DeadReason::Refused { code }),
            (StatusClass::Retry, _) | (StatusClass::Final, None) => {
                let backoff = self.policy.delay_ms(delivery.attempts, jitter);
                let delay = backoff.max(retry_after_ms.unwrap_or(0));
                let at = now_ms.saturating_add(delay);
                if status == Some(429)
                    && let Some(pause) = retry_after_ms
                {
                    // The endpoint asked everyone to wait, not just this delivery.
                    self.paused_until_ms = self.paused_until_ms.max(now_ms.saturating_add(pause));
                }
                if at
                    > delivery
                        .first_due_ms
                        .saturating_add(self.policy.give_up_after_ms)
                {
                    Verdict::DeadLetter(DeadReason::Expired)
                } else {
                    Verdict::RetryAt(at)
                }
            }
        };
        let mut delivery = delivery;
        if let Verdict::RetryAt(at) = verdict {
            delivery.next_at_ms = at;
            self.push(delivery.clone());
        }
        Some(Outcome {
            delivery,
            verdict,
            status,
        })
    }
}

/// `Retry-After` as a delay from `now_ms` in milliseconds: delay-seconds or an HTTP date
/// (IMF-fixdate, `Sun, 06 Nov 1994 08:49:37 GMT`); a date in the past is no delay. `None` for
/// anything else.
pub fn parse_retry_after(value: &str, now_ms: u64) -> Option<u64> {
    let value = value.trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(seconds.saturating_mul(1000));
    }
    let at_s = parse_imf_fixdate(value)?;
    Some((at_s.saturating_mul(1000)).saturating_sub(now_ms))
}

/// Epoch seconds of an IMF-fixdate.
fn parse_imf_fixdate(value: &str) -> Option<u64> {
    let parts: Vec<&str> = value.split(' ').collect();
    let [_weekday, day, month, year, time, "GMT"] = parts.as_slice() else {
        return None;
    };
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let month = MONTHS.iter().position(|m| m == month)? as u64 + 1;
    let day: u64 = day.parse().ok()?;
    let year: u64 = year.parse().ok()?;
    let hms: Vec<u64> = time
        .split(':')
        .map(|p| p.parse().ok())
        .collect::<Option<_>>()?;
    let [h, m, s] = hms.as_slice() else {
        return None;
    };
    if !(1..=31).contains(&day) || year < 1970 || *h > 23 || *m > 59 || *s > 60 {
        return None;
    }
    // Days from civil (Howard Hinnant's algorithm), for years from 1970.
    let y = if month <= 2 { year - 1 } else { year };
    let era = y / 400;
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = (era * 146_097 + doe).checked_sub(719_468)?;
    Some(days * 86_400 + h * 3600 + m * 60 + s)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]

    use super::*;

    const HOUR: u64 = 3_600_000;

    fn status(code: u16) -> AttemptResult {
        AttemptResult::Status {
            code,
            retry_after_ms: None,
        }
    }

    #[test]
    fn backoff_doubles_to_the_cap_with_jitter_in_the_upper_half() {
        let p = RetryPolicy::default();
        assert_eq!(p.nominal_delay_ms(1), 5_000);
        assert_eq!(p.nominal_delay_ms(2), 10_000);
        assert_eq!(p.nominal_delay_ms(12), 2 * HOUR);
        assert_eq!(p.nominal_delay_ms(100), 2 * HOUR);
        assert_eq!(p.delay_ms(1, 0), 2_500);
        assert_eq!(p.delay_ms(1, 2_500), 5_000);
        for jitter in [1, 77, u64::MAX] {
            let d = p.delay_ms(3, jitter);
            assert!((10_000..=20_000).contains(&d), "{d}");
        }
    }

    #[test]
    fn statuses_are_delivered_retried_or_final() {
        use StatusClass::{Delivered, Final, Retry};
        for (code, expected) in [
            (200, Delivered),
            (204, Delivered),
            (101, Final),
            (301, Final),
            (400, Final),
            (401, Final),
            (404, Final),
            (410, Final),
            (408, Retry),
            (429, Retry),
            (500, Retry),
            (503, Retry),
        ] {
            assert_eq!(classify(code), expected, "{code}");
        }
    }

    #[test]
    fn a_delivery_is_retried_until_delivered() {
        let mut q = EndpointQueue::new(RetryPolicy::default());
        assert!(q.push(Delivery::new("e1", 0)));
        assert!(!q.push(Delivery::new("e1", 0)), "one delivery per event");
        assert_eq!(q.poll_timeout(), Some(0));
        let a = q.poll_attempt(0).unwrap();
        assert_eq!(
            (a.event_id.as_str(), a.number, a.deadline_ms),
            ("e1", 1, 15_000)
        );
        assert_eq!(q.poll_timeout(), Some(15_000));

        let out = q.handle_result("e1", status(503), 100, 0).unwrap();
        assert_eq!(out.verdict, Verdict::RetryAt(2_600));
        assert_eq!(out.delivery.attempts, 1);
        assert_eq!(out.status, Some(503));
        assert_eq!(q.poll_attempt(2_599), None);
        assert_eq!(q.poll_timeout(), Some(2_600));
        let a = q.poll_attempt(2_600).unwrap();
        assert_eq!(a.number, 2);
        let out = q.handle_result("e1", status(200), 2_700, 0).unwrap();
        assert_eq!(out.verdict, Verdict::Delivered);
        assert!(q.is_empty());
        assert_eq!(q.poll_timeout(), None);
    }

    #[test]
    fn other_4xx_is_final() {
        let mut q = EndpointQueue::new(RetryPolicy::default());
        q.push(Delivery::new("e1", 0));
        q.poll_attempt(0).unwrap();
        let out = q.handle_result("e1", status(400), 10, 0).unwrap();
        assert_eq!(
            out.verdict,
            Verdict::DeadLetter(DeadReason::Refused { code: 400 })
        );
        assert!(q.is_empty());
    }

    #[test]
    fn timeouts_are_retried_and_late_answers_ignored() {
        let mut q = EndpointQueue::new(RetryPolicy::default());
        q.push(Delivery::new("e1", 0));
        q.poll_attempt(0).unwrap();
        assert!(q.handle_timeout(14_999, &mut || 0).is_empty());
        let outs = q.handle_timeout(15_000, &mut || 0);
        assert_eq!(outs.len(), 1);
        assert_eq!(outs[0].verdict, Verdict::RetryAt(17_500));
        assert_eq!(outs[0].status, None);
        assert_eq!(q.handle_result("e1", status(200), 15_001, 0), None);
        assert_eq!(q.len(), 1);
    }

    #[test]
    fn retry_after_is_honoured_for_the_whole_endpoint() {
        let mut q = EndpointQueue::new(RetryPolicy::default());
        q.push(Delivery::new("e1", 0));
        q.push(Delivery::new("e2", 0));
        q.poll_attempt(0).unwrap();
        let out = q
            .handle_result(
                "e1",
                AttemptResult::Status {
                    code: 429,
                    retry_after_ms: Some(60_000),
                },
                0,
                0,
            )
            .unwrap();
        assert_eq!(out.verdict, Verdict::RetryAt(60_000));
        // e2 was due at 0, but the endpoint asked to wait.
        assert_eq!(q.poll_attempt(1), None);
        assert_eq!(q.poll_timeout(), Some(60_000));
        assert_eq!(q.poll_attempt(60_000).unwrap().event_id, "e2");
    }

    #[test]
    fn gives_up_after_the_window_with_a_dead_letter() {
        let p = RetryPolicy::default();
        let mut q = EndpointQueue::new(p);
        q.push(Delivery::new("e1", 0));
        let mut now = 0;
        let mut attempts = 0;
        loop {
            let a = q.poll_attempt(now).unwrap();
            attempts += 1;
            assert_eq!(a.number, attempts);
            // Jitter that picks the nominal delay: the schedule docs/events.md tabulates.
            let jitter = p.nominal_delay_ms(attempts) / 2;
            let out = q
                .handle_result("e1", AttemptResult::Unreachable, now, jitter)
                .unwrap();
            match out.verdict {
                Verdict::RetryAt(at) => {
                    assert!(at <= 24 * HOUR);
                    now = at;
                }
                Verdict::DeadLetter(reason) => {
                    assert_eq!(reason, DeadReason::Expired);
                    assert!(now > 22 * HOUR, "{now}");
                    break;
                }
                Verdict::Delivered => unreachable!(),
            }
        }
        // 5 s doubling to 2 h over 24 h: 12 steps to the cap, then 2-hourly.
        assert_eq!(attempts, 22);
        assert!(q.is_empty());
    }

    #[test]
    fn in_flight_is_limited_per_endpoint_and_endpoints_are_independent() {
        let policy = RetryPolicy {
            max_in_flight: 2,
            ..RetryPolicy::default()
        };
        let mut slow = EndpointQueue::new(policy);
        let mut fast = EndpointQueue::new(policy);
        for i in 0..5 {
            slow.push(Delivery::new(format!("e{i}"), 0));
            fast.push(Delivery::new(format!("e{i}"), 0));
        }
        assert_eq!(slow.poll_attempt(0).unwrap().event_id, "e0");
        assert_eq!(slow.poll_attempt(0).unwrap().event_id, "e1");
        assert_eq!(slow.poll_attempt(0), None, "two in flight");
        // The slow endpoint never answers; the fast one delivers everything meanwhile.
        let mut delivered = 0;
        while let Some(a) = fast.poll_attempt(1) {
            let out = fast.handle_result(&a.event_id, status(204), 2, 0).unwrap();
            assert_eq!(out.verdict, Verdict::Delivered);
            delivered += 1;
        }
        assert_eq!(delivered, 5);
        assert_eq!(slow.poll_timeout(), Some(15_000));
    }

    #[test]
    fn retry_after_parses_seconds_and_http_dates() {
        assert_eq!(parse_retry_after("120", 0), Some(120_000));
        assert_eq!(parse_retry_after(" 0 ", 0), Some(0));
        // 784111777 = Sun, 06 Nov 1994 08:49:37 GMT (RFC 9110's example).
        let at = 784_111_777_000;
        assert_eq!(
            parse_retry_after("Sun, 06 Nov 1994 08:49:37 GMT", at - 5_000),
            Some(5_000)
        );
        assert_eq!(
            parse_retry_after("Sun, 06 Nov 1994 08:49:37 GMT", at + 5_000),
            Some(0)
        );
        assert_eq!(parse_imf_fixdate("Thu, 01 Jan 1970 00:00:00 GMT"), Some(0));
        assert_eq!(
            parse_imf_fixdate("Tue, 29 Feb 2028 12:00:00 GMT"),
            Some(1_835_438_400)
        );
        for junk in [
            "soon",
            "-1",
            "Sun, 06 Nov 1994 08:49:37 UTC",
            "Sun, 06 Foo 1994 08:49:37 GMT",
        ] {
            assert_eq!(parse_retry_after(junk, 0), None, "{junk}");
        }
    }
}
