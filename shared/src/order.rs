//! Messages delivered in seq order per room, in one process where several tasks store and
//! deliver at once (the local server). The store gives seqs in commit order, but the tasks
//! that wait for their commits wake on different threads, and the one holding seq 6 may
//! deliver before the one holding seq 5: its recipients would see 6 before 5. [`SeqOrder`]
//! holds a message until the one before it was delivered, so each room's deliveries go out
//! one at a time in seq order.
//!
//! A task says when its write begins ([`SeqOrder::begin`]) and then either hands its stored
//! message in ([`SeqOrder::ready`]) or gives up ([`SeqOrder::abandon`]: its future was dropped,
//! or the write failed or was a duplicate). So a gap in the seqs is waited for exactly as long
//! as a write that could fill it is on its way, however slow an overloaded machine makes it,
//! and skipped as soon as none is: the seq was written by a task that gave up, or outside the
//! order.
//!
//! Pure: no I/O, no clock. What [`SeqOrder::abandon`] and [`SeqOrder::interrupted`] free goes
//! out at the next [`SeqOrder::handle_timeout`], which [`SeqOrder::poll_timeout`] asks for at
//! once; [`STALL_MS`] bounds the wait on a task that neither finishes nor gives up.

use std::collections::{BTreeMap, HashMap};

/// Longest a message waits for a write or a delivery before it that is still on its way:
/// only a task stuck that long (neither finished nor dropped) is skipped.
pub const STALL_MS: u64 = 5_000;
/// A room with nothing held, on its way or being delivered is forgotten after this long:
/// every message stored before it was delivered long ago, so the next one starts the room's
/// order afresh.
pub const FORGET_MS: u64 = 10_000;

/// One room's place in its seq order.
struct RoomOrder<T> {
    /// The seq whose delivery is awaited next (0: none yet, the first ready one is).
    next: u64,
    /// When the seq being delivered started (`None`: none is).
    delivering_since: Option<u64>,
    /// Writes begun and neither ready nor abandoned yet.
    in_flight: usize,
    /// Messages waiting for their turn, with when each arrived.
    held: BTreeMap<u64, (T, u64)>,
    /// Last change, for [`FORGET_MS`].
    touched_ms: u64,
}

impl<T> RoomOrder<T> {
    fn new(now_ms: u64) -> Self {
        Self {
            next: 0,
            delivering_since: None,
            in_flight: 0,
            held: BTreeMap::new(),
            touched_ms: now_ms,
        }
    }

    /// Whether the first held message may go now: nothing is being delivered, and it is
    /// the next seq or no write that could fill the gap before it is on its way.
    fn first_held_may_go(&self) -> bool {
        self.delivering_since.is_none()
            && self
                .held
                .first_key_value()
                .is_some_and(|(seq, _)| *seq == self.next || self.in_flight == 0)
    }

    /// Hands out the first held message if it may go, and marks it as being delivered.
    fn next_due(&mut self, now_ms: u64) -> Option<(u64, T)> {
        if !self.first_held_may_go() {
            return None;
        }
        let (seq, (item, _)) = self.held.pop_first()?;
        self.next = seq;
        self.delivering_since = Some(now_ms);
        Some((seq, item))
    }

    /// The earliest moment something held must move.
    fn deadline(&self) -> Option<u64> {
        let first_held = self.held.values().map(|(_, at)| *at).min()?;
        if self.first_held_may_go() {
            return Some(first_held);
        }
        Some(first_held.max(self.delivering_since.unwrap_or(0)) + STALL_MS)
    }
}

/// The delivery order of every room (see the module's documentation). `T` is what the caller
/// delivers for one message.
pub struct SeqOrder<T> {
    rooms: HashMap<String, RoomOrder<T>>,
}

impl<T> Default for SeqOrder<T> {
    fn default() -> Self {
        Self {
            rooms: HashMap::new(),
        }
    }
}

impl<T> SeqOrder<T> {
    /// A write of a message to `room` begins; [`SeqOrder::ready`] or [`SeqOrder::abandon`]
    /// follows, exactly once.
    pub fn begin(&mut self, room: &str, now_ms: u64) {
        let order = self
            .rooms
            .entry(room.to_owned())
            .or_insert_with(|| RoomOrder::new(now_ms));
        order.in_flight += 1;
        order.touched_ms = now_ms;
    }

    /// A write begun with [`SeqOrder::begin`] will not be handed in (its task gave up).
    pub fn abandon(&mut self, room: &str, now_ms: u64) {
        if let Some(order) = self.rooms.get_mut(room) {
            order.in_flight = order.in_flight.saturating_sub(1);
            order.touched_ms = now_ms;
        }
    }

    /// Message `seq` of `room`, whose write was begun with [`SeqOrder::begin`], was stored and
    /// is ready to deliver: `Some((seq, item))` is the message to deliver now (this one, or one
    /// held that this made free to go), then to report with [`SeqOrder::delivered`]; `None`
    /// when it is held for its turn.
    pub fn ready(&mut self, room: &str, seq: u64, item: T, now_ms: u64) -> Option<(u64, T)> {
        let order = self
            .rooms
            .entry(room.to_owned())
            .or_insert_with(|| RoomOrder::new(now_ms));
        order.in_flight = order.in_flight.saturating_sub(1);
        order.touched_ms = now_ms;
        if order.next == 0 {
            order.next = seq;
        }
        if seq < order.next {
            // Its turn was skipped (it was stuck past [`STALL_MS`]): nothing to wait for.
            return Some((seq, item));
        }
        order.held.insert(seq, (item, now_ms));
        order.next_due(now_ms)
    }

    /// Message `seq` of `room`, handed out by [`SeqOrder::ready`] (or by this call or
    /// [`SeqOrder::handle_timeout`]), was delivered: the next one, if it may go, is handed out
    /// to deliver now (and to report here in turn).
    pub fn delivered(&mut self, room: &str, seq: u64, now_ms: u64) -> Option<(u64, T)> {
        let order = self.rooms.get_mut(room)?;
        order.touched_ms = now_ms;
        if seq < order.next {
            return None; // A late one, delivered outside the order.
        }
        order.next = seq + 1;
        order.delivering_since = None;
        order.next_due(now_ms)
    }

    /// The delivery of `seq`, handed out here, stopped part way (its task was dropped): the
    /// room's order moves past it, and what that frees goes out at the next
    /// [`SeqOrder::handle_timeout`].
    pub fn interrupted(&mut self, room: &str, seq: u64, now_ms: u64) {
        if let Some(order) = self.rooms.get_mut(room)
            && seq >= order.next
        {
            order.next = seq + 1;
            order.delivering_since = None;
            order.touched_ms = now_ms;
        }
    }

    /// When [`SeqOrder::handle_timeout`] has work: the earliest moment a held message may go.
    pub fn poll_timeout(&self) -> Option<u64> {
        self.rooms.values().filter_map(RoomOrder::deadline).min()
    }

    /// Hands out, per room, the first held message that may go: nothing before it is on its
    /// way any more, or what is on its way has been stuck for [`STALL_MS`] (report each with
    /// [`SeqOrder::delivered`]). Forgets rooms idle for [`FORGET_MS`].
    pub fn handle_timeout(&mut self, now_ms: u64) -> Vec<(String, u64, T)> {
        let mut due = Vec::new();
        for (room, order) in &mut self.rooms {
            if order.deadline().is_none_or(|at| at > now_ms) {
                continue;
            }
            let Some((seq, (item, _))) = order.held.pop_first() else {
                continue;
            };
            order.next = seq;
            order.delivering_since = Some(now_ms);
            order.touched_ms = now_ms;
            due.push((room.clone(), seq, item));
        }
        self.rooms.retain(|_, order| {
            !order.held.is_empty()
                || order.in_flight > 0
                || order
                    .delivering_since
                    .is_some_and(|since| since + FORGET_MS > now_ms)
                || order.touched_ms + FORGET_MS > now_ms
        });
        due
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `begin` then `ready`, as a task does.
    fn stored<T>(o: &mut SeqOrder<T>, seq: u64, item: T, now: u64) -> Option<(u64, T)> {
        o.begin("r", now);
        o.ready("r", seq, item, now)
    }

    #[test]
    fn in_order_goes_straight_through() {
        let mut o = SeqOrder::default();
        assert_eq!(stored(&mut o, 1, "m1", 0), Some((1, "m1")));
        assert_eq!(o.delivered("r", 1, 0), None);
        assert_eq!(stored(&mut o, 2, "m2", 1), Some((2, "m2")));
        assert_eq!(o.delivered("r", 2, 1), None);
        assert_eq!(o.poll_timeout(), None);
    }

    #[test]
    fn a_message_waits_for_the_one_before() {
        let mut o = SeqOrder::default();
        assert_eq!(stored(&mut o, 5, "m5", 0), Some((5, "m5")));
        // 7 and 6 are stored while 5 is being delivered, and 7's task is first.
        o.begin("r", 1);
        assert_eq!(stored(&mut o, 7, "m7", 1), None);
        assert_eq!(o.ready("r", 6, "m6", 1), None);
        assert_eq!(o.poll_timeout(), Some(1 + STALL_MS));
        assert_eq!(o.delivered("r", 5, 2), Some((6, "m6")));
        assert_eq!(o.delivered("r", 6, 2), Some((7, "m7")));
        assert_eq!(o.delivered("r", 7, 2), None);
        // 8 comes after all of them: its turn, straight away.
        assert_eq!(stored(&mut o, 8, "m8", 3), Some((8, "m8")));
    }

    #[test]
    fn a_gap_is_waited_for_while_its_write_is_on_its_way_however_long() {
        let mut o = SeqOrder::default();
        assert_eq!(stored(&mut o, 1, "m1", 0), Some((1, "m1")));
        assert_eq!(o.delivered("r", 1, 0), None);
        // 2's task is slow to wake (an overloaded machine); 3 is ready first.
        o.begin("r", 1);
        assert_eq!(stored(&mut o, 3, "m3", 2), None);
        assert!(
            o.handle_timeout(2 + STALL_MS - 1).is_empty(),
            "still waiting"
        );
        assert_eq!(o.ready("r", 2, "m2", 2 + STALL_MS - 1), Some((2, "m2")));
        assert_eq!(o.delivered("r", 2, STALL_MS), Some((3, "m3")));
        assert_eq!(o.delivered("r", 3, STALL_MS), None);
    }

    #[test]
    fn a_gap_nobody_is_writing_is_skipped_at_once() {
        let mut o = SeqOrder::default();
        assert_eq!(stored(&mut o, 1, "m1", 0), Some((1, "m1")));
        assert_eq!(o.delivered("r", 1, 0), None);
        // 2 was stored outside the order (or by a task that gave up before beginning here).
        assert_eq!(stored(&mut o, 3, "m3", 10), Some((3, "m3")));
        assert_eq!(o.delivered("r", 3, 10), None);
    }

    #[test]
    fn an_abandoned_write_frees_the_ones_after_it_at_the_next_timeout() {
        let mut o = SeqOrder::default();
        assert_eq!(stored(&mut o, 1, "m1", 0), Some((1, "m1")));
        assert_eq!(o.delivered("r", 1, 0), None);
        o.begin("r", 1); // 2's task, dropped after its write.
        assert_eq!(stored(&mut o, 3, "m3", 10), None);
        assert_eq!(stored(&mut o, 4, "m4", 20), None);
        assert_eq!(o.poll_timeout(), Some(10 + STALL_MS));
        o.abandon("r", 30);
        assert_eq!(o.poll_timeout(), Some(10), "due at once");
        assert_eq!(o.handle_timeout(30), [("r".to_owned(), 3, "m3")]);
        assert_eq!(o.delivered("r", 3, 31), Some((4, "m4")));
        assert_eq!(o.delivered("r", 4, 31), None);
        // 2 turns up after all (it was stuck, not dropped): delivered at once, late.
        o.begin("r", 40);
        assert_eq!(o.ready("r", 2, "m2", 40), Some((2, "m2")));
        assert_eq!(o.delivered("r", 2, 40), None);
        assert_eq!(stored(&mut o, 5, "m5", 41), Some((5, "m5")));
    }

    #[test]
    fn a_stuck_write_is_skipped_after_the_stall_bound() {
        let mut o = SeqOrder::default();
        assert_eq!(stored(&mut o, 1, "m1", 0), Some((1, "m1")));
        assert_eq!(o.delivered("r", 1, 0), None);
        o.begin("r", 1); // 2's task never finishes nor gives up.
        assert_eq!(stored(&mut o, 3, "m3", 10), None);
        assert_eq!(o.handle_timeout(10 + STALL_MS), [("r".to_owned(), 3, "m3")]);
    }

    #[test]
    fn one_delivery_at_a_time_per_room_and_rooms_apart() {
        let mut o = SeqOrder::default();
        o.begin("a", 0);
        assert_eq!(o.ready("a", 1, "a1", 0), Some((1, "a1")));
        o.begin("b", 0);
        assert_eq!(o.ready("b", 9, "b9", 0), Some((9, "b9")));
        assert_eq!(o.delivered("a", 1, 0), None);
        // 2 is next, but 1 of b is not a's business; a's 2 may go.
        o.begin("a", 0);
        assert_eq!(o.ready("a", 2, "a2", 0), Some((2, "a2")));
        // b's 10 waits while 9 is still being delivered.
        o.begin("b", 0);
        assert_eq!(o.ready("b", 10, "b10", 0), None);
        assert_eq!(o.delivered("b", 9, 1), Some((10, "b10")));
    }

    #[test]
    fn an_interrupted_delivery_frees_the_next_at_the_next_timeout() {
        let mut o = SeqOrder::default();
        assert_eq!(stored(&mut o, 1, "m1", 0), Some((1, "m1")));
        assert_eq!(stored(&mut o, 2, "m2", 5), None);
        o.interrupted("r", 1, 6);
        assert_eq!(o.poll_timeout(), Some(5), "due at once");
        assert_eq!(o.handle_timeout(6), [("r".to_owned(), 2, "m2")]);
    }

    #[test]
    fn a_delivery_that_never_reports_stops_holding_the_room_after_the_stall_bound() {
        let mut o = SeqOrder::default();
        assert_eq!(stored(&mut o, 1, "m1", 0), Some((1, "m1")));
        assert_eq!(stored(&mut o, 2, "m2", 5), None);
        assert_eq!(o.poll_timeout(), Some(5 + STALL_MS));
        assert_eq!(o.handle_timeout(5 + STALL_MS), [("r".to_owned(), 2, "m2")]);
    }

    #[test]
    fn idle_rooms_are_forgotten_but_not_while_a_write_is_on_its_way() {
        let mut o = SeqOrder::default();
        assert_eq!(stored(&mut o, 1, "m1", 0), Some((1, "m1")));
        assert_eq!(o.delivered("r", 1, 0), None);
        o.begin("r", 0);
        assert!(o.handle_timeout(FORGET_MS).is_empty());
        assert_eq!(o.rooms.len(), 1, "2's write is on its way");
        o.abandon("r", FORGET_MS);
        assert!(o.handle_timeout(2 * FORGET_MS - 1).is_empty());
        assert_eq!(o.rooms.len(), 1);
        assert!(o.handle_timeout(2 * FORGET_MS).is_empty());
        assert!(o.rooms.is_empty());
        // Afresh: whatever seq comes first goes first.
        assert_eq!(
            stored(&mut o, 40, "m40", 2 * FORGET_MS + 1),
            Some((40, "m40"))
        );
    }
}
