//! Delivery accounting: every message the generator sends gets an index; the tracker knows how
//! many deliveries it expects for it (the room's other members), counts the ones that arrive,
//! and records the latency from the send timestamp to each receipt and to the sender's ack.
//!
//! A run is cut into phases (one per target rate); each message belongs to the phase it was sent
//! in, so a phase's loss, latency and counts only cover its own messages.
//!
//! Per receiver, a [`SeqWindow`] over the room's seq numbers tells a new delivery from a
//! duplicate (the same seq twice) and from an out-of-order one (a seq below one already seen).

use std::collections::BTreeMap;

use hdrhistogram::Histogram;
use serde::Serialize;

/// Highest latency the histograms hold, microseconds (2 minutes).
const MAX_LATENCY_US: u64 = 120_000_000;

/// What the tracker keeps per sent message.
#[derive(Debug, Clone, Copy)]
struct MessageRecord {
    expected: u32,
    received: u32,
    acked: bool,
    phase: u16,
}

/// How a receiver's seq compares with what it saw before.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SeqVerdict {
    /// Above everything seen so far (gaps are fine: the receiver's own messages never come back).
    New,
    /// Below the highest seen and not seen before.
    OutOfOrder,
    /// Seen before.
    Duplicate,
}

/// The seqs one receiver has seen in its room: the highest, and a bitmap of the 128 below it.
#[derive(Debug, Clone, Copy, Default)]
pub struct SeqWindow {
    highest: u64,
    below: u128,
}

impl SeqWindow {
    /// Records `seq` and says how it relates to the seqs seen before. A seq more than 128 below
    /// the highest cannot be checked for duplication and counts as out of order.
    pub fn observe(&mut self, seq: u64) -> SeqVerdict {
        if seq > self.highest {
            let shift = seq - self.highest;
            let had_any = self.highest > 0;
            self.below = if shift >= 128 { 0 } else { self.below << shift };
            if had_any && shift <= 128 {
                self.below |= 1u128 << (shift - 1);
            }
            self.highest = seq;
            return SeqVerdict::New;
        }
        if seq == self.highest {
            return SeqVerdict::Duplicate;
        }
        let distance = self.highest - seq;
        if distance > 128 {
            return SeqVerdict::OutOfOrder;
        }
        let bit = 1u128 << (distance - 1);
        if self.below & bit != 0 {
            SeqVerdict::Duplicate
        } else {
            self.below |= bit;
            SeqVerdict::OutOfOrder
        }
    }
}

/// Counters and histograms of one phase.
struct Phase {
    target_rate: f64,
    started_us: u64,
    send_ended_us: Option<u64>,
    first_message: u64,
    end_message: u64,
    deliveries: u64,
    duplicates: u64,
    out_of_order: u64,
    acked: u64,
    latency: Histogram<u64>,
    ack_latency: Histogram<u64>,
}

fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, MAX_LATENCY_US, 3).expect("static histogram bounds are valid")
}

/// Latency percentiles, milliseconds.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct LatencySummary {
    /// Samples.
    pub count: u64,
    /// Median.
    pub p50_ms: f64,
    /// 99th percentile.
    pub p99_ms: f64,
    /// 99.9th percentile.
    pub p999_ms: f64,
    /// Largest.
    pub max_ms: f64,
    /// Mean.
    pub mean_ms: f64,
}

impl LatencySummary {
    fn of(h: &Histogram<u64>) -> Self {
        let ms = |us: u64| us as f64 / 1000.0;
        Self {
            count: h.len(),
            p50_ms: ms(h.value_at_quantile(0.50)),
            p99_ms: ms(h.value_at_quantile(0.99)),
            p999_ms: ms(h.value_at_quantile(0.999)),
            max_ms: ms(h.max()),
            mean_ms: h.mean() / 1000.0,
        }
    }
}

/// The outcome of one phase.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct PhaseSummary {
    /// Messages per second the generator aimed at.
    pub target_rate: f64,
    /// How long it sent, seconds.
    pub send_secs: f64,
    /// Messages sent.
    pub sent: u64,
    /// Messages sent per second.
    pub sent_per_sec: f64,
    /// Messages the server acknowledged.
    pub acked: u64,
    /// Deliveries expected (each message times the room's other members).
    pub expected_deliveries: u64,
    /// Distinct deliveries received.
    pub deliveries: u64,
    /// Distinct deliveries per second of sending.
    pub delivered_per_sec: f64,
    /// Expected deliveries that never arrived (by the end of the drain).
    pub lost: u64,
    /// Deliveries of a seq the receiver already had.
    pub duplicates: u64,
    /// Deliveries below a seq the receiver already had.
    pub out_of_order: u64,
    /// Send to receipt at every other member.
    pub latency: LatencySummary,
    /// Send to the sender's ack.
    pub ack_latency: LatencySummary,
}

/// Every message of the run and every phase.
#[derive(Default)]
pub struct Tracker {
    messages: Vec<MessageRecord>,
    receivers: Vec<SeqWindow>,
    phases: Vec<Phase>,
    errors: BTreeMap<String, u64>,
    /// Deliveries of messages the tracker never sent (another run's, or garbage).
    pub foreign: u64,
}

impl Tracker {
    /// A tracker for `receivers` connections.
    pub fn new(receivers: usize) -> Self {
        Self {
            receivers: vec![SeqWindow::default(); receivers],
            ..Self::default()
        }
    }

    /// Starts a phase sending at `target_rate`; returns its number.
    pub fn begin_phase(&mut self, target_rate: f64, now_us: u64) -> usize {
        if let Some(last) = self.phases.last_mut() {
            last.send_ended_us.get_or_insert(now_us);
        }
        let first = self.messages.len() as u64;
        self.phases.push(Phase {
            target_rate,
            started_us: now_us,
            send_ended_us: None,
            first_message: first,
            end_message: first,
            deliveries: 0,
            duplicates: 0,
            out_of_order: 0,
            acked: 0,
            latency: histogram(),
            ack_latency: histogram(),
        });
        self.phases.len() - 1
    }

    /// Ends the current phase's sending (its drain follows).
    pub fn end_sending(&mut self, now_us: u64) {
        if let Some(last) = self.phases.last_mut() {
            last.send_ended_us.get_or_insert(now_us);
        }
    }

    /// Registers a message about to be sent to a room where `expected` other members listen;
    /// returns its index.
    pub fn register_send(&mut self, expected: u32) -> u64 {
        let phase = self.phases.len().saturating_sub(1);
        let index = self.messages.len() as u64;
        self.messages.push(MessageRecord {
            expected,
            received: 0,
            acked: false,
            phase: u16::try_from(phase).unwrap_or(u16::MAX),
        });
        if let Some(p) = self.phases.last_mut() {
            p.end_message = index + 1;
        }
        index
    }

    /// The sender's ack for message `index`, sent at `sent_us`.
    pub fn acked(&mut self, index: u64, sent_us: u64, now_us: u64) {
        let Some(record) = usize::try_from(index)
            .ok()
            .and_then(|i| self.messages.get_mut(i))
        else {
            self.foreign += 1;
            return;
        };
        if record.acked {
            return;
        }
        record.acked = true;
        let phase = &mut self.phases[usize::from(record.phase)];
        phase.acked += 1;
        phase
            .ack_latency
            .saturating_record(now_us.saturating_sub(sent_us).max(1));
    }

    /// Message `index` (room seq `seq`, sent at `sent_us`) arrived at connection `receiver`.
    pub fn delivered(&mut self, receiver: usize, seq: u64, index: u64, sent_us: u64, now_us: u64) {
        let Some(record) = usize::try_from(index)
            .ok()
            .and_then(|i| self.messages.get_mut(i))
        else {
            self.foreign += 1;
            return;
        };
        let phase = &mut self.phases[usize::from(record.phase)];
        let verdict = self
            .receivers
            .get_mut(receiver)
            .map_or(SeqVerdict::New, |w| w.observe(seq));
        match verdict {
            SeqVerdict::Duplicate => {
                phase.duplicates += 1;
                return;
            }
            SeqVerdict::OutOfOrder => phase.out_of_order += 1,
            SeqVerdict::New => {}
        }
        record.received += 1;
        phase.deliveries += 1;
        phase
            .latency
            .saturating_record(now_us.saturating_sub(sent_us).max(1));
    }

    /// Counts an error of `kind` (a server error code, a close, a connect failure).
    pub fn error(&mut self, kind: impl Into<String>) {
        *self.errors.entry(kind.into()).or_insert(0) += 1;
    }

    /// Errors by kind.
    pub fn errors(&self) -> &BTreeMap<String, u64> {
        &self.errors
    }

    /// Deliveries and acks of `phase` still missing.
    pub fn outstanding(&self, phase: usize) -> u64 {
        let Some(p) = self.phases.get(phase) else {
            return 0;
        };
        self.phase_records(p)
            .map(|m| u64::from(m.expected.saturating_sub(m.received)) + u64::from(!m.acked))
            .sum()
    }

    /// Deliveries and acknowledgements still due, over every phase so far.
    pub fn outstanding_all(&self) -> u64 {
        (0..self.phases.len()).map(|p| self.outstanding(p)).sum()
    }

    fn phase_records(&self, p: &Phase) -> impl Iterator<Item = &MessageRecord> {
        let range = usize::try_from(p.first_message).unwrap_or(usize::MAX)
            ..usize::try_from(p.end_message).unwrap_or(usize::MAX);
        self.messages[range].iter()
    }

    /// The outcome of `phase` so far.
    pub fn summary(&self, phase: usize, now_us: u64) -> Option<PhaseSummary> {
        let p = self.phases.get(phase)?;
        let send_secs = (p
            .send_ended_us
            .unwrap_or(now_us)
            .saturating_sub(p.started_us)) as f64
            / 1e6;
        let per_sec = |n: u64| {
            if send_secs > 0.0 {
                n as f64 / send_secs
            } else {
                0.0
            }
        };
        let (mut expected, mut lost) = (0u64, 0u64);
        for m in self.phase_records(p) {
            expected += u64::from(m.expected);
            lost += u64::from(m.expected.saturating_sub(m.received));
        }
        let sent = p.end_message - p.first_message;
        Some(PhaseSummary {
            target_rate: p.target_rate,
            send_secs,
            sent,
            sent_per_sec: per_sec(sent),
            acked: p.acked,
            expected_deliveries: expected,
            deliveries: p.deliveries,
            delivered_per_sec: per_sec(p.deliveries),
            lost,
            duplicates: p.duplicates,
            out_of_order: p.out_of_order,
            latency: LatencySummary::of(&p.latency),
            ack_latency: LatencySummary::of(&p.ack_latency),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seq_window_tells_new_duplicate_and_out_of_order_apart() {
        let mut w = SeqWindow::default();
        assert_eq!(w.observe(5), SeqVerdict::New);
        assert_eq!(w.observe(7), SeqVerdict::New); // 6 was this receiver's own message
        assert_eq!(w.observe(7), SeqVerdict::Duplicate);
        assert_eq!(w.observe(5), SeqVerdict::Duplicate);
        assert_eq!(w.observe(6), SeqVerdict::OutOfOrder);
        assert_eq!(w.observe(6), SeqVerdict::Duplicate);
        assert_eq!(w.observe(500), SeqVerdict::New);
        assert_eq!(w.observe(499), SeqVerdict::OutOfOrder);
        assert_eq!(w.observe(100), SeqVerdict::OutOfOrder); // beyond the window
        assert_eq!(w.observe(372), SeqVerdict::OutOfOrder); // exactly 128 below
        assert_eq!(w.observe(372), SeqVerdict::Duplicate);
    }

    #[test]
    fn loss_duplicates_and_latency_are_counted_per_phase() {
        let mut t = Tracker::new(3);
        let phase = t.begin_phase(100.0, 0);
        // Two messages from connection 0 to a room where connections 1 and 2 listen.
        let a = t.register_send(2);
        let b = t.register_send(2);
        t.acked(a, 0, 1_000);
        t.delivered(1, 1, a, 0, 2_000);
        t.delivered(2, 1, a, 0, 4_000);
        t.delivered(2, 1, a, 0, 5_000); // duplicate
        t.delivered(1, 2, b, 0, 3_000); // b never reaches 2, and is never acked
        t.end_sending(1_000_000);
        assert_eq!(t.outstanding(phase), 2);
        let s = t.summary(phase, 2_000_000).expect("phase exists");
        assert_eq!(s.sent, 2);
        assert_eq!(s.acked, 1);
        assert_eq!(s.expected_deliveries, 4);
        assert_eq!(s.deliveries, 3);
        assert_eq!(s.lost, 1);
        assert_eq!(s.duplicates, 1);
        assert_eq!(s.out_of_order, 0);
        assert!((s.send_secs - 1.0).abs() < 1e-9);
        assert!((s.delivered_per_sec - 3.0).abs() < 1e-9);
        assert_eq!(s.latency.count, 3);
        assert!((s.latency.max_ms - 4.0).abs() < 0.01);
        assert!((s.ack_latency.p50_ms - 1.0).abs() < 0.01);

        // A later phase starts clean; late deliveries still count for their own phase.
        let next = t.begin_phase(200.0, 2_000_000);
        let c = t.register_send(1);
        t.delivered(2, 2, b, 0, 2_100_000);
        t.delivered(1, 3, c, 2_000_000, 2_000_500);
        t.acked(c, 2_000_000, 2_000_100);
        assert_eq!(t.outstanding(phase), 1); // b's ack
        assert_eq!(t.outstanding(next), 0);
        let s = t.summary(next, 3_000_000).expect("phase exists");
        assert_eq!((s.sent, s.deliveries, s.lost), (1, 1, 0));
        t.delivered(0, 1, 99, 0, 1);
        assert_eq!(t.foreign, 1);
    }
}
