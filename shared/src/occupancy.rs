//! Occupancy of big rooms (protocol.md §17), pure: when a room above the presence threshold
//! announces its connection count. The first change after a quiet interval goes out at once;
//! further changes within [`OCCUPANCY_INTERVAL_MS`] of it are coalesced into one announcement
//! at the interval's end. The board asks for no timer of its own: like
//! [`crate::lifecycle::ConnectionClock`], it says when its next deadline is
//! ([`OccupancyBoard::poll_timeout`]) and what is due then ([`OccupancyBoard::handle_timeout`]),
//! and the deployment drives it with the timer it already has.

use std::collections::HashMap;

use crate::limits::OCCUPANCY_INTERVAL_MS;
use crate::store::RoomRef;

/// One room's announcements.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Announcements {
    /// When the last one went out.
    last_ms: u64,
    /// A change not announced yet is due then.
    due_ms: Option<u64>,
}

/// The rooms whose occupancy changed recently, keyed by [`RoomRef::key`].
#[derive(Debug, Default)]
pub struct OccupancyBoard {
    rooms: HashMap<String, (RoomRef, Announcements)>,
}

impl OccupancyBoard {
    /// An empty board.
    pub fn new() -> Self {
        Self::default()
    }

    /// `room`'s count changed at `now_ms`: whether to announce it now (else it is due at the
    /// end of the room's interval, and [`Self::poll_timeout`] says when).
    pub fn changed(&mut self, room: &RoomRef, now_ms: u64) -> bool {
        let key = room.key();
        match self.rooms.get_mut(&key) {
            Some((_, a)) if now_ms < a.last_ms.saturating_add(OCCUPANCY_INTERVAL_MS) => {
                a.due_ms
                    .get_or_insert(a.last_ms.saturating_add(OCCUPANCY_INTERVAL_MS));
                false
            }
            _ => {
                let announcements = Announcements {
                    last_ms: now_ms,
                    due_ms: None,
                };
                self.rooms.insert(key, (room.clone(), announcements));
                true
            }
        }
    }

    /// The earliest time a coalesced announcement is due.
    pub fn poll_timeout(&self) -> Option<u64> {
        self.rooms.values().filter_map(|(_, a)| a.due_ms).min()
    }

    /// The rooms whose announcement is due at `now_ms` (their interval starts again now), and
    /// the rooms quiet for a whole interval forgotten, so the board holds only recent changes.
    pub fn handle_timeout(&mut self, now_ms: u64) -> Vec<RoomRef> {
        let mut due = Vec::new();
        self.rooms.retain(|_, (room, a)| match a.due_ms {
            Some(at) if at <= now_ms => {
                *a = Announcements {
                    last_ms: now_ms,
                    due_ms: None,
                };
                due.push(room.clone());
                true
            }
            Some(_) => true,
            None => now_ms < a.last_ms.saturating_add(OCCUPANCY_INTERVAL_MS),
        });
        due
    }

    /// Rooms on the board (recently announced or with an announcement due).
    pub fn len(&self) -> usize {
        self.rooms.len()
    }

    /// Whether no room is on the board.
    pub fn is_empty(&self) -> bool {
        self.rooms.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const I: u64 = OCCUPANCY_INTERVAL_MS;

    #[test]
    fn first_change_goes_out_at_once_and_the_rest_of_the_interval_is_coalesced() {
        let mut board = OccupancyBoard::new();
        let r = RoomRef::new("t", "big");
        assert!(board.changed(&r, 10_000));
        assert_eq!(board.poll_timeout(), None);
        for at in [10_001, 10_400, 10_999] {
            assert!(!board.changed(&r, at), "{at}");
        }
        assert_eq!(board.poll_timeout(), Some(10_000 + I));
        assert!(board.handle_timeout(10_000 + I - 1).is_empty());
        assert_eq!(board.handle_timeout(10_000 + I), vec![r.clone()]);
        assert_eq!(board.poll_timeout(), None);
        // The announcement just made starts a new interval.
        assert!(!board.changed(&r, 10_000 + I + 5));
        assert_eq!(board.poll_timeout(), Some(10_000 + 2 * I));
    }

    #[test]
    fn rooms_are_independent_and_quiet_ones_are_forgotten() {
        let mut board = OccupancyBoard::new();
        let (a, b) = (RoomRef::new("t", "a"), RoomRef::new("t", "b"));
        assert!(board.changed(&a, 0));
        assert!(board.changed(&b, 300));
        assert!(!board.changed(&b, 400));
        assert_eq!(board.poll_timeout(), Some(300 + I));
        assert!(board.handle_timeout(I).is_empty());
        assert_eq!(board.len(), 1, "a was quiet for its whole interval");
        assert_eq!(board.handle_timeout(300 + I), vec![b.clone()]);
        assert!(board.handle_timeout(300 + 2 * I).is_empty());
        assert!(board.is_empty());
        assert!(
            board.changed(&a, 300 + 2 * I),
            "a quiet room announces at once"
        );
    }

    #[test]
    fn a_late_timer_announces_once_and_never_early() {
        let mut board = OccupancyBoard::new();
        let r = RoomRef::new("t", "big");
        assert!(board.changed(&r, 0));
        assert!(!board.changed(&r, 1));
        // The deployment's timer fired late: one announcement, then a full interval again.
        assert_eq!(board.handle_timeout(5 * I), vec![r.clone()]);
        assert!(!board.changed(&r, 5 * I + 1));
        assert_eq!(board.poll_timeout(), Some(6 * I));
    }
}
