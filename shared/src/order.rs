//! Messages delivered in seq order per room, in one process where several tasks store and
//! deliver at once (the local server). The store gives seqs in commit order, but the tasks
//! that wait for their commits wake on different threads, and the one holding seq 6 may
//! deliver before the one holding seq 5: its recipients would see 6 before 5. [`SeqOrder`]
//! holds a message until the one before it was delivered, so each room's deliveries go out
//! one at a time in seq order.
//!
//! Pure: no I/O, no clock. A held message waits at most [`HOLD_MS`]: past it (the message
//! before was never delivered, say its task was dropped) the gap is skipped; the adapter asks
//! [`SeqOrder::poll_timeout`] when to call [`SeqOrder::handle_timeout`].

use std::collections::{BTreeMap, HashMap};

/// Longest a message waits for the one before it.
pub const HOLD_MS: u64 = 50;
/// A room with nothing held or being delivered is forgotten after this long: every message
/// stored before it was delivered long ago, so the next one starts the room's order afresh.
pub const FORGET_MS: u64 = 10_000;

/// One room's place in its seq order.
struct RoomOrder<T> {
    /// The seq whose delivery is awaited next.
    next: u64,
    /// When the seq being delivered started (`None`: none is).
    delivering_since: Option<u64>,
    /// Messages waiting for their turn, with when each arrived.
    held: BTreeMap<u64, (T, u64)>,
    /// Last change, for [`FORGET_MS`].
    touched_ms: u64,
}

impl<T> RoomOrder<T> {
    /// The earliest moment something held must move.
    fn deadline(&self) -> Option<u64> {
        let held = self.held.values().map(|(_, at)| at + HOLD_MS).min()?;
        Some(match self.delivering_since {
            Some(since) => held.max(since + HOLD_MS),
            None => held,
        })
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
    /// Message `seq` of `room` was stored and is ready to deliver: `Some(item)` to deliver now
    /// (then call [`SeqOrder::delivered`]), or `None` when it is held for its turn.
    pub fn ready(&mut self, room: &str, seq: u64, item: T, now_ms: u64) -> Option<T> {
        let Some(order) = self.rooms.get_mut(room) else {
            self.rooms.insert(
                room.to_owned(),
                RoomOrder {
                    next: seq,
                    delivering_since: Some(now_ms),
                    held: BTreeMap::new(),
                    touched_ms: now_ms,
                },
            );
            return Some(item);
        };
        order.touched_ms = now_ms;
        if seq < order.next {
            // Its turn was skipped (it came later than [`HOLD_MS`]): nothing to wait for.
            return Some(item);
        }
        if seq == order.next && order.delivering_since.is_none() {
            order.delivering_since = Some(now_ms);
            return Some(item);
        }
        order.held.insert(seq, (item, now_ms));
        None
    }

    /// Message `seq` of `room`, handed out by [`SeqOrder::ready`] (or by this call or
    /// [`SeqOrder::handle_timeout`]), was delivered: the next one, if it is held, is handed out
    /// to deliver now (and to report here in turn).
    pub fn delivered(&mut self, room: &str, seq: u64, now_ms: u64) -> Option<(u64, T)> {
        let order = self.rooms.get_mut(room)?;
        order.touched_ms = now_ms;
        if seq < order.next {
            return None; // A late one, delivered outside the order.
        }
        order.next = seq + 1;
        order.delivering_since = None;
        let (item, _) = order.held.remove(&order.next)?;
        order.delivering_since = Some(now_ms);
        Some((order.next, item))
    }

    /// When [`SeqOrder::handle_timeout`] has work: the earliest moment a held message stops
    /// waiting.
    pub fn poll_timeout(&self) -> Option<u64> {
        self.rooms.values().filter_map(RoomOrder::deadline).min()
    }

    /// Skips the gaps held messages waited on for [`HOLD_MS`]: per room, the first held message
    /// is handed out to deliver now (report it with [`SeqOrder::delivered`]). Forgets rooms
    /// idle for [`FORGET_MS`].
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

    #[test]
    fn in_order_goes_straight_through() {
        let mut o = SeqOrder::default();
        assert_eq!(o.ready("r", 1, "m1", 0), Some("m1"));
        assert_eq!(o.delivered("r", 1, 0), None);
        assert_eq!(o.ready("r", 2, "m2", 1), Some("m2"));
        assert_eq!(o.delivered("r", 2, 1), None);
        assert_eq!(o.poll_timeout(), None);
    }

    #[test]
    fn a_message_waits_for_the_one_before() {
        let mut o = SeqOrder::default();
        assert_eq!(o.ready("r", 5, "m5", 0), Some("m5"));
        // 7 and 6 are stored while 5 is being delivered, and 7's task is first.
        assert_eq!(o.ready("r", 7, "m7", 1), None);
        assert_eq!(o.ready("r", 6, "m6", 1), None);
        assert_eq!(o.poll_timeout(), Some(1 + HOLD_MS));
        assert_eq!(o.delivered("r", 5, 2), Some((6, "m6")));
        assert_eq!(o.delivered("r", 6, 2), Some((7, "m7")));
        assert_eq!(o.delivered("r", 7, 2), None);
        // 8 comes after all of them: its turn, straight away.
        assert_eq!(o.ready("r", 8, "m8", 3), Some("m8"));
    }

    #[test]
    fn one_delivery_at_a_time_per_room_and_rooms_apart() {
        let mut o = SeqOrder::default();
        assert_eq!(o.ready("a", 1, "a1", 0), Some("a1"));
        assert_eq!(o.ready("b", 9, "b9", 0), Some("b9"));
        assert_eq!(o.delivered("a", 1, 0), None);
        // 2 is next, but 1 of b is not a's business; a's 2 may go.
        assert_eq!(o.ready("a", 2, "a2", 0), Some("a2"));
        // b's 10 waits while 9 is still being delivered.
        assert_eq!(o.ready("b", 10, "b10", 0), None);
        assert_eq!(o.delivered("b", 9, 1), Some((10, "b10")));
    }

    #[test]
    fn a_gap_is_skipped_after_the_hold() {
        let mut o = SeqOrder::default();
        assert_eq!(o.ready("r", 1, "m1", 0), Some("m1"));
        assert_eq!(o.delivered("r", 1, 0), None);
        // 2 is never delivered (its task was dropped); 3 and 4 wait for it.
        assert_eq!(o.ready("r", 3, "m3", 10), None);
        assert_eq!(o.ready("r", 4, "m4", 20), None);
        assert_eq!(o.poll_timeout(), Some(10 + HOLD_MS));
        assert!(o.handle_timeout(10 + HOLD_MS - 1).is_empty());
        assert_eq!(o.handle_timeout(10 + HOLD_MS), [("r".to_owned(), 3, "m3")]);
        assert_eq!(o.delivered("r", 3, 61), Some((4, "m4")));
        assert_eq!(o.delivered("r", 4, 61), None);
        // 2 turns up after all: delivered at once, out of the order it lost.
        assert_eq!(o.ready("r", 2, "m2", 70), Some("m2"));
        assert_eq!(o.delivered("r", 2, 70), None);
        assert_eq!(o.ready("r", 5, "m5", 71), Some("m5"));
    }

    #[test]
    fn a_delivery_that_never_reports_stops_holding_the_room() {
        let mut o = SeqOrder::default();
        assert_eq!(o.ready("r", 1, "m1", 0), Some("m1"));
        // 1's delivery never reports back; 2 waits no longer than the hold.
        assert_eq!(o.ready("r", 2, "m2", 5), None);
        assert_eq!(o.poll_timeout(), Some(5 + HOLD_MS));
        assert_eq!(o.handle_timeout(5 + HOLD_MS), [("r".to_owned(), 2, "m2")]);
    }

    #[test]
    fn idle_rooms_are_forgotten() {
        let mut o = SeqOrder::default();
        assert_eq!(o.ready("r", 1, "m1", 0), Some("m1"));
        assert_eq!(o.delivered("r", 1, 0), None);
        assert!(o.handle_timeout(FORGET_MS - 1).is_empty());
        assert_eq!(o.rooms.len(), 1);
        assert!(o.handle_timeout(FORGET_MS).is_empty());
        assert!(o.rooms.is_empty());
        // Afresh: whatever seq comes first goes first.
        assert_eq!(o.ready("r", 40, "m40", FORGET_MS + 1), Some("m40"));
    }
}
