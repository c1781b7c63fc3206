//! The client's bookkeeping, without I/O or a clock: which seqs a room has delivered (dedupe and
//! where to resume), which messages await their ack (what to resend), how long to wait before
//! reconnecting, and whether a close allows it. Times are passed in, so tests drive them.

use std::collections::{BTreeSet, VecDeque};
use std::time::{Duration, Instant};

use roomcast_core::limits::MAX_FRAME_BYTES;
use roomcast_core::protocol::{
    ClientFrame, ErrorCode, Rejection, close, validate_client_id, validate_message_body,
    validate_meta, validate_name,
};
use serde_json::Value;

/// The seqs one room has delivered: every seq up to `contiguous`, and the ones in `above`
/// (arrived out of order, past a gap). Live messages of concurrent senders may arrive out of
/// seq order, and a replay may repeat a live message, so a seq is delivered once whatever the
/// order (protocol.md §9).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoomLog {
    contiguous: u64,
    above: BTreeSet<u64>,
    /// Whether `contiguous` is known: the client gave a `since`, or a `joined` told the head.
    anchored: bool,
}

impl RoomLog {
    /// A room joined with `since` (the last seq the caller has), or without one (live from the
    /// head the `joined` reply will tell).
    pub fn new(since: Option<u64>) -> Self {
        Self {
            contiguous: since.unwrap_or(0),
            above: BTreeSet::new(),
            anchored: since.is_some(),
        }
    }

    /// The `since` of the next `join`: the last seq before the first one not delivered, so a
    /// replay fills every gap; `None` before the room's position is known.
    pub fn resume_since(&self) -> Option<u64> {
        self.anchored.then_some(self.contiguous)
    }

    /// The room's `joined` reply: a room joined without `since` starts at its head (what was
    /// stored before is history, not news).
    pub fn joined(&mut self, head: u64) {
        if !self.anchored {
            self.anchored = true;
            self.contiguous = self.contiguous.max(head);
            self.above.retain(|&seq| seq > head);
            self.compact();
        }
    }

    /// The seq after which one is missing while later ones arrived: where a `history {after}`
    /// fills the gap, if it stays open (protocol.md §9).
    pub fn gap_after(&self) -> Option<u64> {
        (self.anchored && !self.above.is_empty()).then_some(self.contiguous)
    }

    /// Records `seq` as delivered; true when it was not delivered before.
    pub fn record(&mut self, seq: u64) -> bool {
        if seq <= self.contiguous || !self.above.insert(seq) {
            return false;
        }
        self.compact();
        true
    }

    fn compact(&mut self) {
        while self.above.remove(&(self.contiguous + 1)) {
            self.contiguous += 1;
        }
    }
}

/// A message the caller asked to send.
#[derive(Debug, Clone, PartialEq)]
pub struct Outgoing {
    /// Room name.
    pub room: String,
    /// The client id: the server's idempotency key, so a resend is stored once.
    pub id: String,
    /// Text.
    pub body: String,
    /// Application data.
    pub meta: Option<Value>,
    /// The seq of the room's message it answers (protocol 1.1).
    pub reply_to: Option<u64>,
}

impl Outgoing {
    /// The `message` frame.
    pub fn frame(&self) -> ClientFrame {
        ClientFrame::Message {
            room: self.room.clone(),
            id: self.id.clone(),
            body: self.body.clone(),
            meta: self.meta.clone(),
            attachments: Vec::new(),
            reply_to: self.reply_to,
        }
    }

    /// Refuses, before anything is sent, a message the server would refuse as it stands, and
    /// one whose frame is over [`MAX_FRAME_BYTES`] (JSON escapes can take a body within its
    /// limit past it): the server closes a connection for such a frame (1009), so resending it
    /// would close every new connection too.
    pub fn check(&self) -> Result<(), Rejection> {
        validate_name("room", &self.room)?;
        validate_client_id(&self.id)?;
        validate_message_body(&self.body, false)?;
        validate_meta(self.meta.as_ref())?;
        let size = serde_json::to_vec(&self.frame()).map_or(usize::MAX, |text| text.len());
        if size > MAX_FRAME_BYTES {
            return Err(Rejection::new(
                ErrorCode::TooLarge,
                format!("the message's frame is {size} bytes; a frame may have {MAX_FRAME_BYTES}"),
            ));
        }
        Ok(())
    }
}

/// Messages awaiting their ack, in the order they were asked for. A message leaves only when
/// acknowledged or refused for good; until then it is sent again on every new connection and
/// whenever its ack is overdue (a frame dropped by the rate limiter gets an error without the
/// message's id, so only the missing ack tells).
#[derive(Debug)]
pub struct Outbox {
    waiting: VecDeque<Waiting>,
    ack_timeout: Duration,
}

#[derive(Debug)]
struct Waiting {
    message: Outgoing,
    /// When it was last sent on the current connection; `None`: not on this one yet.
    sent_at: Option<Instant>,
}

impl Outbox {
    /// An empty outbox that resends a message when its ack is `ack_timeout` overdue.
    pub fn new(ack_timeout: Duration) -> Self {
        Self {
            waiting: VecDeque::new(),
            ack_timeout,
        }
    }

    /// Whether a message with `id` awaits its ack (ids must be unique among those waiting: an
    /// error names the message by id alone).
    pub fn holds(&self, id: &str) -> bool {
        self.waiting.iter().any(|w| w.message.id == id)
    }

    /// Queues `message`; it goes out with the next [`Outbox::due`].
    pub fn push(&mut self, message: Outgoing) {
        self.waiting.push_back(Waiting {
            message,
            sent_at: None,
        });
    }

    /// The messages to send now, oldest first: those not sent on this connection, and those
    /// whose ack is overdue. They count as sent at `now`.
    pub fn due(&mut self, now: Instant) -> Vec<Outgoing> {
        let ack_timeout = self.ack_timeout;
        self.waiting
            .iter_mut()
            .filter(|w| w.sent_at.is_none_or(|at| now >= at + ack_timeout))
            .map(|w| {
                w.sent_at = Some(now);
                w.message.clone()
            })
            .collect()
    }

    /// When the next ack falls overdue, if any message is out.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.waiting
            .iter()
            .filter_map(|w| w.sent_at)
            .min()
            .map(|at| at + self.ack_timeout)
    }

    /// A new connection: every waiting message is sent again (the server answers one it
    /// already stored with its original seq and `duplicate: true`).
    pub fn reconnected(&mut self) {
        for w in &mut self.waiting {
            w.sent_at = None;
        }
    }

    /// The message `id` was acknowledged or refused for good: it leaves the outbox.
    pub fn settle(&mut self, id: &str) -> Option<Outgoing> {
        let at = self.waiting.iter().position(|w| w.message.id == id)?;
        self.waiting.remove(at).map(|w| w.message)
    }

    /// The message `id` failed in a way a resend can fix (`UNAVAILABLE`): it goes out again
    /// once its ack is overdue, counted from `now`.
    pub fn retry_later(&mut self, id: &str, now: Instant) {
        if let Some(w) = self.waiting.iter_mut().find(|w| w.message.id == id) {
            w.sent_at = Some(now);
        }
    }

    /// Every waiting message, oldest first (when the client stops for good).
    pub fn drain(&mut self) -> impl Iterator<Item = Outgoing> + '_ {
        self.waiting.drain(..).map(|w| w.message)
    }
}

/// Reconnect delays: exponential from `first`, capped at `max`, each drawn in its upper half
/// (by a `jitter` in `0..=1` the caller draws) so clients dropped together do not return
/// together.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    /// The delay before the first retry (before jitter).
    pub first: Duration,
    /// The longest delay.
    pub max: Duration,
}

impl Backoff {
    /// The delay before attempt `attempt` (0 for the first retry after a drop).
    pub fn delay(&self, attempt: u32, jitter: f64) -> Duration {
        let full = self
            .first
            .saturating_mul(2u32.saturating_pow(attempt.min(31)))
            .min(self.max);
        // NaN is no fraction: it counts as 0.
        let jitter = if jitter.is_nan() {
            0.0
        } else {
            jitter.clamp(0.0, 1.0)
        };
        full.mul_f64(0.5 + 0.5 * jitter)
    }
}

/// What a client does after its connection ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AfterClose {
    /// Reconnect (after the backoff) and resume.
    Reconnect,
    /// Reconnect only after at least this long (the rate limiter closed it).
    ReconnectAfter(Duration),
    /// The token expired (4001): reconnect with a fresh one, when the caller gave a way to get
    /// it ([`crate::Config::with_token_source`]); else stop.
    RenewToken,
    /// Stop: reconnecting cannot help, or a backend ended the session.
    Stop,
}

/// The least wait after a 4008 close (protocol.md §7: at least 10 s).
pub const RATE_LIMITED_PAUSE: Duration = Duration::from_secs(10);

/// The protocol's advice for a close with `code` (`None`: no close frame, e.g. the network or
/// the server process died). protocol.md §7.
pub fn after_close(code: Option<u16>) -> AfterClose {
    match code {
        Some(close::NORMAL | close::FORBIDDEN) => AfterClose::Stop,
        Some(close::TOKEN_EXPIRED) => AfterClose::RenewToken,
        Some(close::RATE_LIMITED) => AfterClose::ReconnectAfter(RATE_LIMITED_PAUSE),
        _ => AfterClose::Reconnect,
    }
}

/// Whether an upgrade refused with HTTP `status` is worth retrying with the same token
/// (protocol.md §2: 401 and 403 are not, 429 and 5xx are).
pub fn upgrade_retryable(status: u16) -> bool {
    status == 429 || status >= 500
}

#[cfg(test)]
mod tests {
    use super::*;

    fn outgoing(id: &str) -> Outgoing {
        Outgoing {
            room: "r".into(),
            id: id.into(),
            body: format!("body {id}"),
            meta: None,
            reply_to: None,
        }
    }

    fn ids(messages: &[Outgoing]) -> Vec<&str> {
        messages.iter().map(|m| m.id.as_str()).collect()
    }

    #[test]
    fn a_message_the_server_would_refuse_is_refused_before_it_is_sent() {
        let code = |message: &Outgoing| message.check().map_err(|r| r.code);
        let mut message = outgoing("a");
        assert_eq!(code(&message), Ok(()));
        message.id = "has space".into();
        assert_eq!(code(&message), Err(ErrorCode::Invalid));
        message.id = "a".into();
        // 10,000 bytes of body, 35,000 once each U+0001 is escaped as \u0001.
        message.body = "a\u{1}".repeat(5000);
        assert_eq!(code(&message), Err(ErrorCode::TooLarge));
        message.body = "x".repeat(16_385);
        assert_eq!(code(&message), Err(ErrorCode::TooLarge));
    }

    #[test]
    fn a_seq_is_delivered_once_whatever_the_order() {
        let mut log = RoomLog::new(Some(4));
        assert!(!log.record(3), "at or below since was delivered before");
        assert!(log.record(6), "past a gap");
        assert!(!log.record(6), "again");
        assert_eq!(log.resume_since(), Some(4), "the gap at 5 is replayed");
        assert_eq!(log.gap_after(), Some(4));
        assert!(log.record(5));
        assert_eq!(log.resume_since(), Some(6), "the gap closed");
        assert_eq!(log.gap_after(), None);
        assert!(!log.record(5));
    }

    #[test]
    fn a_room_joined_without_since_starts_at_its_head() {
        let mut log = RoomLog::new(None);
        assert_eq!(log.resume_since(), None);
        // Live frames may come before `joined`.
        assert!(log.record(9));
        assert!(log.record(12));
        assert_eq!(log.gap_after(), None, "no position yet");
        log.joined(10);
        assert_eq!(log.gap_after(), Some(10));
        assert_eq!(log.resume_since(), Some(10));
        assert!(!log.record(9));
        assert!(log.record(11));
        assert_eq!(log.resume_since(), Some(12));
        // A rejoin's `joined` moves nothing: the replay fills from `since`.
        log.joined(40);
        assert_eq!(log.resume_since(), Some(12));
    }

    #[test]
    fn waiting_messages_go_out_once_per_connection_and_again_when_overdue() {
        let start = Instant::now();
        let timeout = Duration::from_secs(10);
        let mut outbox = Outbox::new(timeout);
        outbox.push(outgoing("a"));
        outbox.push(outgoing("b"));
        assert_eq!(ids(&outbox.due(start)), ["a", "b"]);
        assert!(outbox.due(start + Duration::from_secs(1)).is_empty());
        assert_eq!(outbox.next_deadline(), Some(start + timeout));

        outbox.push(outgoing("c"));
        let later = start + Duration::from_secs(2);
        assert_eq!(ids(&outbox.due(later)), ["c"]);
        assert_eq!(outbox.settle("a").map(|m| m.id), Some("a".into()));
        assert_eq!(outbox.settle("a"), None, "settled once");

        assert_eq!(
            ids(&outbox.due(start + timeout)),
            ["b"],
            "b's ack is overdue"
        );
        assert_eq!(outbox.next_deadline(), Some(later + timeout));
    }

    #[test]
    fn a_new_connection_resends_every_unacknowledged_message_in_order() {
        let now = Instant::now();
        let mut outbox = Outbox::new(Duration::from_secs(10));
        for id in ["a", "b", "c"] {
            outbox.push(outgoing(id));
        }
        assert_eq!(outbox.due(now).len(), 3);
        outbox.settle("b");
        outbox.reconnected();
        assert_eq!(ids(&outbox.due(now)), ["a", "c"]);
        assert!(outbox.holds("c"));
        assert!(!outbox.holds("b"));
    }

    #[test]
    fn an_unavailable_store_is_retried_after_the_ack_timeout() {
        let start = Instant::now();
        let timeout = Duration::from_secs(5);
        let mut outbox = Outbox::new(timeout);
        outbox.push(outgoing("a"));
        outbox.due(start);
        let failed = start + Duration::from_secs(3);
        outbox.retry_later("a", failed);
        assert!(outbox.due(start + timeout).is_empty());
        assert_eq!(ids(&outbox.due(failed + timeout)), ["a"]);
        assert_eq!(ids(&outbox.drain().collect::<Vec<_>>()), ["a"]);
        assert_eq!(outbox.next_deadline(), None);
    }

    #[test]
    fn backoff_doubles_up_to_its_cap_with_jitter_in_the_upper_half() {
        let backoff = Backoff {
            first: Duration::from_millis(100),
            max: Duration::from_secs(2),
        };
        assert_eq!(backoff.delay(0, 1.0), Duration::from_millis(100));
        assert_eq!(backoff.delay(0, 0.0), Duration::from_millis(50));
        assert_eq!(backoff.delay(3, 1.0), Duration::from_millis(800));
        assert_eq!(backoff.delay(5, 1.0), Duration::from_secs(2), "capped");
        assert_eq!(backoff.delay(u32::MAX, 0.0), Duration::from_secs(1));
        assert_eq!(backoff.delay(1, 7.0), Duration::from_millis(200), "clamped");
        assert_eq!(backoff.delay(1, f64::NAN), Duration::from_millis(100));
    }

    #[test]
    fn closes_follow_the_protocols_advice() {
        assert_eq!(after_close(None), AfterClose::Reconnect);
        assert_eq!(after_close(Some(close::GOING_AWAY)), AfterClose::Reconnect);
        assert_eq!(
            after_close(Some(close::SLOW_CONSUMER)),
            AfterClose::Reconnect
        );
        assert_eq!(
            after_close(Some(close::RATE_LIMITED)),
            AfterClose::ReconnectAfter(RATE_LIMITED_PAUSE)
        );
        assert_eq!(
            after_close(Some(close::TOKEN_EXPIRED)),
            AfterClose::RenewToken
        );
        for stop in [close::NORMAL, close::FORBIDDEN] {
            assert_eq!(after_close(Some(stop)), AfterClose::Stop, "{stop}");
        }
        assert!(upgrade_retryable(429) && upgrade_retryable(503));
        assert!(!upgrade_retryable(401) && !upgrade_retryable(403));
    }
}
