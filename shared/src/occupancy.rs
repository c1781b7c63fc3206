//! Occupancy of big rooms (protocol.md §17), pure: when a room above the presence threshold
//! announces its connection count. The first change after a quiet interval goes out at once;
//! further changes within [`OCCUPANCY_INTERVAL_MS`] of it are coalesced into one announcement
//! at the interval's end. The board asks for no timer of its own: like
//! [`crate::lifecycle::ConnectionClock`], it says when its next deadline is
//! ([`OccupancyBoard::poll_timeout`]) and what is due then ([`OccupancyBoard::handle_timeout`]),
//! and the deployment drives it with the timer it already has.
//!
//! A deployment with no process alive between events (AWS Lambda: every invocation starts a
//! fresh service) keeps each room's [`AnnouncementRecord`] in its store instead, and the invocation
//! that changed the count decides from that record ([`AnnouncementRecord::turn`]) whether it
//! announces now, holds the coalesced announcement (and waits for its time), or leaves it to
//! the invocation that already holds it. The service asks an [`OccupancyGate`]; the board is
//! the in-process one.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};

use crate::MaybeSendSync;
use crate::limits::OCCUPANCY_INTERVAL_MS;
use crate::store::{RoomRef, StoreError};

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

/// What the process that changed a room's count does about it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Turn {
    /// Announce the count now.
    Now,
    /// This process holds the coalesced announcement: at `at_ms`, take it
    /// ([`OccupancyGate::take_trailing`]) and announce the count as it is then.
    Trailing {
        /// The end of the room's interval.
        at_ms: u64,
    },
    /// An announcement still to come (now or held) will carry this change.
    Nothing,
}

/// One room's announcements as a store shared by many processes records them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AnnouncementRecord {
    /// When the last one went out: the start of the room's interval.
    pub last_ms: u64,
    /// A process holds the coalesced announcement due then.
    pub trailing_at_ms: Option<u64>,
}

impl AnnouncementRecord {
    /// The count changed at `now_ms` and the room's record is `record` (`None`: no
    /// announcement recently): this process's turn, and the record it writes for it (only if
    /// the record is still `record`: of two processes that read one record, one writes and
    /// the other's change is carried by the writer's announcement, which lists the room after
    /// its write). No record to write: nothing to do.
    pub fn turn(record: Option<Self>, now_ms: u64) -> (Turn, Option<Self>) {
        let now = Self {
            last_ms: now_ms,
            trailing_at_ms: None,
        };
        let Some(a) = record else {
            return (Turn::Now, Some(now));
        };
        if Self::ended_by(now_ms).is_some_and(|ended| a.last_ms <= ended) {
            return (Turn::Now, Some(now));
        }
        let end = a.last_ms.saturating_add(OCCUPANCY_INTERVAL_MS);
        // A held announcement is always this interval's: a change after the interval overwrites
        // it (above), so one whose holder died delays the count only until the next change.
        match a.trailing_at_ms {
            Some(_) => (Turn::Nothing, None),
            None => (
                Turn::Trailing { at_ms: end },
                Some(Self {
                    trailing_at_ms: Some(end),
                    ..a
                }),
            ),
        }
    }

    /// The latest `last_ms` of a record that lets a change at `now_ms` announce at once (its
    /// interval has ended): a store's conditional write checks it. `None` before the first
    /// interval could end.
    pub fn ended_by(now_ms: u64) -> Option<u64> {
        now_ms.checked_sub(OCCUPANCY_INTERVAL_MS)
    }
}

/// Decides when big rooms announce their occupancy: the in-process [`OccupancyBoard`] (its
/// deployment's timer drives [`OccupancyGate::poll_timeout`]), or a deployment's store of
/// [`AnnouncementRecord`] shared by processes that keep no timer (they wait for a held
/// announcement themselves, in [`OccupancyGate::take_trailing`]).
#[cfg_attr(not(target_arch = "wasm32"), async_trait::async_trait)]
#[cfg_attr(target_arch = "wasm32", async_trait::async_trait(?Send))]
pub trait OccupancyGate: MaybeSendSync {
    /// `room`'s count changed at `now_ms`: this process's [`Turn`].
    async fn changed(&self, room: &RoomRef, now_ms: u64) -> Result<Turn, StoreError>;

    /// Waits until `at_ms`, then takes the announcement held for then ([`Turn::Trailing`]):
    /// whether it is still this process's to make (the record still holds it). Taking it
    /// starts the room's interval again: the record becomes `{last_ms: now, trailing_at_ms:
    /// None}`.
    async fn take_trailing(&self, room: &RoomRef, at_ms: u64) -> Result<bool, StoreError>;

    /// The earliest time an announcement the gate holds itself is due.
    fn poll_timeout(&self) -> Option<u64> {
        None
    }

    /// The rooms whose announcement the gate held is due at `now_ms`.
    fn handle_timeout(&self, now_ms: u64) -> Vec<RoomRef> {
        let _ = now_ms;
        Vec::new()
    }
}

/// The board of one process, which holds coalesced announcements itself: never
/// [`Turn::Trailing`].
#[cfg_attr(not(target_arch = "wasm32"), async_trait::async_trait)]
#[cfg_attr(target_arch = "wasm32", async_trait::async_trait(?Send))]
impl OccupancyGate for Mutex<OccupancyBoard> {
    async fn changed(&self, room: &RoomRef, now_ms: u64) -> Result<Turn, StoreError> {
        let now = board(self).changed(room, now_ms);
        Ok(if now { Turn::Now } else { Turn::Nothing })
    }

    async fn take_trailing(&self, _room: &RoomRef, _at_ms: u64) -> Result<bool, StoreError> {
        Ok(false)
    }

    fn poll_timeout(&self) -> Option<u64> {
        board(self).poll_timeout()
    }

    fn handle_timeout(&self, now_ms: u64) -> Vec<RoomRef> {
        board(self).handle_timeout(now_ms)
    }
}

/// The board, held across no `await`; a panic while holding it leaves it usable.
fn board(m: &Mutex<OccupancyBoard>) -> std::sync::MutexGuard<'_, OccupancyBoard> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
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

    /// Takes the announcement held for `at_ms` at `now_ms`, as a store's conditional write
    /// would ([`OccupancyGate::take_trailing`]).
    fn take(record: &mut Option<AnnouncementRecord>, at_ms: u64, now_ms: u64) -> bool {
        let holds = record.is_some_and(|a| a.trailing_at_ms == Some(at_ms));
        if holds {
            *record = Some(AnnouncementRecord {
                last_ms: now_ms,
                trailing_at_ms: None,
            });
        }
        holds
    }

    /// Writes `turn`'s record, as a store's compare-and-set would, and returns the turn.
    fn change(record: &mut Option<AnnouncementRecord>, now_ms: u64) -> Turn {
        let (turn, write) = AnnouncementRecord::turn(*record, now_ms);
        if write.is_some() {
            *record = write;
        }
        turn
    }

    #[test]
    fn a_shared_record_lets_one_change_announce_and_one_hold_the_rest_of_the_interval() {
        let mut record = None;
        assert_eq!(change(&mut record, 10_000), Turn::Now);
        assert_eq!(
            change(&mut record, 10_001),
            Turn::Trailing { at_ms: 10_000 + I }
        );
        for at in [10_002, 10_500, 10_000 + I - 1] {
            assert_eq!(change(&mut record, at), Turn::Nothing, "{at}");
        }
        // The holder takes it (a little late); the interval starts again then.
        assert!(take(&mut record, 10_000 + I, 10_000 + I + 3));
        assert_eq!(
            change(&mut record, 10_000 + I + 4),
            Turn::Trailing {
                at_ms: 10_000 + 2 * I + 3
            }
        );
        assert_eq!(change(&mut record, 10_000 + 3 * I + 3), Turn::Now);
    }

    #[test]
    fn a_held_announcement_made_moot_is_not_taken() {
        let mut record = None;
        assert_eq!(change(&mut record, 0), Turn::Now);
        assert_eq!(change(&mut record, 1), Turn::Trailing { at_ms: I });
        // A change after the interval (the holder late, or gone) announces at once: the held
        // one is moot.
        assert_eq!(change(&mut record, I), Turn::Now);
        assert!(!take(&mut record, I, I + 1));
        assert_eq!(change(&mut record, I + 1), Turn::Trailing { at_ms: 2 * I });
        assert!(!take(&mut record, I, 2 * I), "another interval's");
        assert!(take(&mut record, 2 * I, 2 * I));
        assert!(!take(&mut record, 2 * I, 2 * I), "taken once");
        assert_eq!(AnnouncementRecord::ended_by(I - 1), None);
        assert_eq!(AnnouncementRecord::turn(None, 5).0, Turn::Now);
    }
}
