//! In-memory [`ConnectionStore`] and [`HistoryStore`]: the reference backends for tests, and the
//! local server's live-state store (connections die with the process, so they need no disk).
//! [`MemoryHistory`] is also the reference [`super::Outbox`], journaling in the same lock as its
//! changes.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::sync::{Mutex, MutexGuard, PoisonError};

use super::outbox::{
    DeadLetter, DeliveryBacklog, EndpointRegistry, EventJournal, EventLog, Journaled, OutboxEntry,
};
use super::rules::{
    apply_amendment, check_conversation_version, page_range, sort_members, stored_message,
};
use super::{
    Amendment, Appended, Connection, ConnectionStore, Headcount, HistoryQuery, HistoryStore,
    JoinOutcome, Member, NewMessage, Page, RateBucket, RoomRef, StoreError, Subscriber,
};
use crate::events::registry::{AttemptRecord, Endpoint, MAX_ATTEMPT_RECORDS};
use crate::events::{DeadReason, Delivery, Event};
use crate::protocol::{Conversation, MessageView, PresenceStatus};
use crate::ratelimit::{RateDecision, RatePolicy, RateState};

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding the lock leaves plain maps behind; they stay usable.
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

fn user_key(tenant: &str, user: &str) -> String {
    format!("{tenant}/{user}")
}

#[derive(Default)]
struct Live {
    connections: HashMap<String, Connection>,
    /// room key → connection id → user
    rooms: HashMap<String, HashMap<String, String>>,
    /// tenant/user → connection ids
    users: HashMap<String, BTreeSet<String>>,
    /// tenant/user → chosen status
    status: HashMap<String, PresenceStatus>,
    /// tenant/user → the bucket of their HTTP API requests
    requests: HashMap<String, RateState>,
    /// Request buckets held when idle ones are next forgotten.
    requests_sweep_at: usize,
}

/// Request buckets held before idle ones are first forgotten; then twice as many as remained,
/// so forgetting costs O(1) per request however many users make requests.
const REQUESTS_SWEEP_MIN: usize = 1024;

impl Live {
    /// The request bucket of `tenant/user`, first forgetting idle buckets when many are held.
    fn request_bucket(&mut self, key: String, policy: &RatePolicy, now_ms: u64) -> &mut RateState {
        if self.requests.len() >= self.requests_sweep_at.max(REQUESTS_SWEEP_MIN) {
            self.requests.retain(|_, s| !s.is_idle(policy, now_ms));
            self.requests_sweep_at = self.requests.len() * 2;
        }
        self.requests.entry(key).or_default()
    }
}

/// Live state in memory.
#[derive(Default)]
pub struct MemoryConnections {
    live: Mutex<Live>,
}

impl MemoryConnections {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// Number of live connections (for metrics).
    pub fn connection_count(&self) -> usize {
        lock(&self.live).connections.len()
    }

    /// Number of rooms with at least one subscriber (for metrics).
    pub fn room_count(&self) -> usize {
        lock(&self.live).rooms.len()
    }
}

#[cfg_attr(not(target_arch = "wasm32"), async_trait::async_trait)]
#[cfg_attr(target_arch = "wasm32", async_trait::async_trait(?Send))]
impl ConnectionStore for MemoryConnections {
    async fn put_connection(&self, conn: &Connection) -> Result<(), StoreError> {
        let mut live = lock(&self.live);
        live.users
            .entry(user_key(&conn.tenant, &conn.user))
            .or_default()
            .insert(conn.id.clone());
        for room in &conn.rooms {
            let key = RoomRef::new(&conn.tenant, room).key();
            live.rooms
                .entry(key)
                .or_default()
                .insert(conn.id.clone(), conn.user.clone());
        }
        live.connections.insert(conn.id.clone(), conn.clone());
        Ok(())
    }

    async fn connection(&self, id: &str) -> Result<Option<Connection>, StoreError> {
        Ok(lock(&self.live).connections.get(id).cloned())
    }

    async fn remove_connection(&self, id: &str) -> Result<Option<Connection>, StoreError> {
        let mut live = lock(&self.live);
        let Some(conn) = live.connections.remove(id) else {
            return Ok(None);
        };
        for room in &conn.rooms {
            let key = RoomRef::new(&conn.tenant, room).key();
            if let Some(subs) = live.rooms.get_mut(&key) {
                subs.remove(id);
                if subs.is_empty() {
                    live.rooms.remove(&key);
                }
            }
        }
        let ukey = user_key(&conn.tenant, &conn.user);
        if let Some(ids) = live.users.get_mut(&ukey) {
            ids.remove(id);
            if ids.is_empty() {
                live.users.remove(&ukey);
                live.status.remove(&ukey);
            }
        }
        Ok(Some(conn))
    }

    async fn join_room(
        &self,
        conn_id: &str,
        room: &str,
        max_rooms: usize,
    ) -> Result<JoinOutcome, StoreError> {
        let mut live = lock(&self.live);
        let conn = live
            .connections
            .get_mut(conn_id)
            .ok_or(StoreError::NotFound)?;
        if conn.in_room(room) {
            return Ok(JoinOutcome::AlreadyJoined);
        }
        if conn.rooms.len() >= max_rooms {
            return Ok(JoinOutcome::TooManyRooms);
        }
        conn.rooms.push(room.to_owned());
        let (key, user) = (RoomRef::new(&conn.tenant, room).key(), conn.user.clone());
        live.rooms
            .entry(key)
            .or_default()
            .insert(conn_id.to_owned(), user);
        Ok(JoinOutcome::Joined)
    }

    async fn leave_room(&self, conn_id: &str, room: &str) -> Result<bool, StoreError> {
        let mut live = lock(&self.live);
        let Some(conn) = live.connections.get_mut(conn_id) else {
            return Ok(false);
        };
        let before = conn.rooms.len();
        conn.rooms.retain(|r| r != room);
        if conn.rooms.len() == before {
            return Ok(false);
        }
        let key = RoomRef::new(&conn.tenant, room).key();
        if let Some(subs) = live.rooms.get_mut(&key) {
            subs.remove(conn_id);
            if subs.is_empty() {
                live.rooms.remove(&key);
            }
        }
        Ok(true)
    }

    async fn room_connections(&self, room: &RoomRef) -> Result<Vec<Subscriber>, StoreError> {
        let live = lock(&self.live);
        Ok(live
            .rooms
            .get(&room.key())
            .map(|subs| {
                subs.iter()
                    .map(|(conn_id, user)| Subscriber {
                        conn_id: conn_id.clone(),
                        user: user.clone(),
                    })
                    .collect()
            })
            .unwrap_or_default())
    }

    async fn room_headcount(
        &self,
        room: &RoomRef,
        user: &str,
        conn_id: &str,
    ) -> Result<Headcount, StoreError> {
        let live = lock(&self.live);
        let Some(subscribers) = live.rooms.get(&room.key()) else {
            return Ok(Headcount {
                connections: 0,
                user_elsewhere: false,
                listed: None,
            });
        };
        // The user's own connections are few: look each up instead of listing the room.
        let user_elsewhere = live
            .users
            .get(&user_key(&room.tenant, user))
            .is_some_and(|ids| {
                ids.iter()
                    .any(|id| id != conn_id && subscribers.contains_key(id))
            });
        Ok(Headcount {
            connections: subscribers.len(),
            user_elsewhere,
            listed: None,
        })
    }

    async fn user_connections(
        &self,
        tenant: &str,
        user: &str,
    ) -> Result<Vec<Connection>, StoreError> {
        let live = lock(&self.live);
        Ok(live
            .users
            .get(&user_key(tenant, user))
            .map(|ids| {
                ids.iter()
                    .filter_map(|id| live.connections.get(id).cloned())
                    .collect()
            })
            .unwrap_or_default())
    }

    async fn take_rate_token(
        &self,
        conn_id: &str,
        policy: &RatePolicy,
        now_ms: u64,
    ) -> Result<RateDecision, StoreError> {
        let mut live = lock(&self.live);
        let conn = live
            .connections
            .get_mut(conn_id)
            .ok_or(StoreError::NotFound)?;
        Ok(conn.rate.take(policy, now_ms))
    }

    async fn take_request_token(
        &self,
        tenant: &str,
        user: &str,
        policy: &RatePolicy,
        now_ms: u64,
    ) -> Result<RateDecision, StoreError> {
        let mut live = lock(&self.live);
        let bucket = live.request_bucket(user_key(tenant, user), policy, now_ms);
        Ok(bucket.take(policy, now_ms))
    }

    async fn charge_rate(
        &self,
        bucket: RateBucket<'_>,
        tokens: u32,
        policy: &RatePolicy,
        now_ms: u64,
    ) -> Result<(), StoreError> {
        let mut live = lock(&self.live);
        let state = match bucket {
            RateBucket::Connection(id) => {
                &mut live
                    .connections
                    .get_mut(id)
                    .ok_or(StoreError::NotFound)?
                    .rate
            }
            RateBucket::Requests { tenant, user } => {
                live.request_bucket(user_key(tenant, user), policy, now_ms)
            }
        };
        state.charge(policy, now_ms, tokens);
        Ok(())
    }

    async fn set_status(
        &self,
        tenant: &str,
        user: &str,
        status: PresenceStatus,
    ) -> Result<(), StoreError> {
        lock(&self.live)
            .status
            .insert(user_key(tenant, user), status);
        Ok(())
    }

    async fn presence(
        &self,
        tenant: &str,
        users: &[String],
    ) -> Result<Vec<Option<PresenceStatus>>, StoreError> {
        let live = lock(&self.live);
        Ok(users
            .iter()
            .map(|u| {
                let key = user_key(tenant, u);
                live.users
                    .contains_key(&key)
                    .then(|| live.status.get(&key).copied().unwrap_or_default())
            })
            .collect())
    }
}

#[derive(Default)]
struct RoomLog {
    /// Message with seq n at index n - 1.
    messages: Vec<MessageView>,
    /// (from, client id) → seq
    ids: HashMap<(String, String), u64>,
    cursors: HashMap<String, u64>,
    members: HashMap<String, u64>,
    conversation: Option<Conversation>,
}

/// History in memory, with its [`super::Outbox`]. Not durable: for tests and `--store memory`.
#[derive(Default)]
pub struct MemoryHistory {
    rooms: Mutex<HashMap<String, RoomLog>>,
    /// Locked after `rooms` when both are (an append journals its event), never before.
    events: Mutex<Events>,
}

impl MemoryHistory {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }
}

#[cfg_attr(not(target_arch = "wasm32"), async_trait::async_trait)]
#[cfg_attr(target_arch = "wasm32", async_trait::async_trait(?Send))]
impl HistoryStore for MemoryHistory {
    async fn append(&self, room: &RoomRef, msg: NewMessage) -> Result<Appended, StoreError> {
        let mut rooms = lock(&self.rooms);
        let log = rooms.entry(room.key()).or_default();
        let idem = (msg.from.clone(), msg.id.clone());
        if let Some(&seq) = log.ids.get(&idem) {
            let message = log.messages[usize::try_from(seq - 1).unwrap_or(usize::MAX)].clone();
            return Ok(Appended {
                message,
                duplicate: true,
            });
        }
        let seq = log.messages.len() as u64 + 1;
        let message = stored_message(room, seq, msg);
        lock(&self.events).journal(Event::of_append(room, &message));
        log.messages.push(message.clone());
        log.ids.insert(idem, seq);
        Ok(Appended {
            message,
            duplicate: false,
        })
    }

    async fn head(&self, room: &RoomRef) -> Result<u64, StoreError> {
        Ok(lock(&self.rooms)
            .get(&room.key())
            .map_or(0, |l| l.messages.len() as u64))
    }

    async fn messages(&self, room: &RoomRef, query: HistoryQuery) -> Result<Page, StoreError> {
        let rooms = lock(&self.rooms);
        let Some(log) = rooms.get(&room.key()) else {
            return Ok(Page::default());
        };
        let Some((lo, hi, more)) = page_range(query, log.messages.len() as u64) else {
            return Ok(Page::default());
        };
        let range = usize::try_from(lo - 1).unwrap_or(usize::MAX)
            ..usize::try_from(hi).unwrap_or(usize::MAX);
        Ok(Page {
            messages: log.messages[range].to_vec(),
            more,
        })
    }

    async fn message(&self, room: &RoomRef, seq: u64) -> Result<Option<MessageView>, StoreError> {
        let rooms = lock(&self.rooms);
        let index = usize::try_from(seq.wrapping_sub(1)).unwrap_or(usize::MAX);
        Ok(rooms
            .get(&room.key())
            .and_then(|l| l.messages.get(index))
            .cloned())
    }

    async fn amend(
        &self,
        room: &RoomRef,
        seq: u64,
        change: Amendment,
    ) -> Result<MessageView, StoreError> {
        let mut rooms = lock(&self.rooms);
        let index = usize::try_from(seq.wrapping_sub(1)).unwrap_or(usize::MAX);
        let message = rooms
            .get_mut(&room.key())
            .and_then(|l| l.messages.get_mut(index))
            .ok_or(StoreError::NotFound)?;
        if apply_amendment(message, change.clone()) {
            lock(&self.events).journal(Some(Event::of_amend(room, message, &change)));
        }
        Ok(message.clone())
    }

    async fn advance_read(
        &self,
        room: &RoomRef,
        user: &str,
        seq: u64,
    ) -> Result<(u64, bool), StoreError> {
        let mut rooms = lock(&self.rooms);
        let cursor = rooms
            .entry(room.key())
            .or_default()
            .cursors
            .entry(user.to_owned())
            .or_insert(0);
        if seq > *cursor {
            *cursor = seq;
            Ok((seq, true))
        } else {
            Ok((*cursor, false))
        }
    }

    async fn read_cursor(&self, room: &RoomRef, user: &str) -> Result<u64, StoreError> {
        Ok(lock(&self.rooms)
            .get(&room.key())
            .and_then(|l| l.cursors.get(user).copied())
            .unwrap_or(0))
    }

    async fn touch_member(&self, room: &RoomRef, user: &str, at_ms: u64) -> Result<(), StoreError> {
        let mut rooms = lock(&self.rooms);
        let seen = rooms
            .entry(room.key())
            .or_default()
            .members
            .entry(user.to_owned())
            .or_insert(0);
        *seen = (*seen).max(at_ms);
        Ok(())
    }

    async fn members(&self, room: &RoomRef, limit: usize) -> Result<Vec<Member>, StoreError> {
        let rooms = lock(&self.rooms);
        let Some(log) = rooms.get(&room.key()) else {
            return Ok(Vec::new());
        };
        let mut members: Vec<Member> = log
            .members
            .iter()
            .map(|(u, &t)| Member {
                user: u.clone(),
                last_seen: t,
            })
            .collect();
        sort_members(&mut members);
        members.truncate(limit);
        Ok(members)
    }

    async fn conversation(&self, room: &RoomRef) -> Result<Option<Conversation>, StoreError> {
        Ok(lock(&self.rooms)
            .get(&room.key())
            .and_then(|l| l.conversation.clone()))
    }

    async fn put_conversation(
        &self,
        room: &RoomRef,
        next: &Conversation,
    ) -> Result<(), StoreError> {
        let mut rooms = lock(&self.rooms);
        let log = rooms.entry(room.key()).or_default();
        check_conversation_version(log.conversation.as_ref(), next)?;
        log.conversation = Some(next.clone());
        Ok(())
    }
}

/// The outbox's state: journal, endpoints, deliveries, dead letters, attempt records.
#[derive(Default)]
struct Events {
    journal: VecDeque<Journaled>,
    next_position: u64,
    endpoints: BTreeMap<String, Endpoint>,
    /// endpoint → event id → (append order, entry)
    pending: BTreeMap<String, BTreeMap<String, (u64, OutboxEntry)>>,
    /// endpoint → event id → (dead-letter order, dead letter)
    dead: BTreeMap<String, BTreeMap<String, (u64, DeadLetter)>>,
    /// endpoint → newest first
    attempts: BTreeMap<String, VecDeque<AttemptRecord>>,
    order: u64,
}

impl Events {
    fn next_order(&mut self) -> u64 {
        self.order += 1;
        self.order
    }

    /// Journals `event` when any endpoint exists (see [`super::Outbox`]).
    fn journal(&mut self, event: Option<Event>) -> bool {
        let Some(event) = event else { return false };
        if self.endpoints.is_empty() {
            return false;
        }
        self.next_position += 1;
        self.journal.push_back(Journaled {
            position: self.next_position,
            event,
        });
        true
    }

    /// Adds the entries not pending or dead-lettered already; returns how many.
    fn enqueue(&mut self, entries: &[OutboxEntry]) -> usize {
        let mut added = 0;
        for entry in entries {
            let id = &entry.event.id;
            let known = self
                .pending
                .get(&entry.endpoint)
                .is_some_and(|e| e.contains_key(id))
                || self
                    .dead
                    .get(&entry.endpoint)
                    .is_some_and(|e| e.contains_key(id));
            if known {
                continue;
            }
            let order = self.next_order();
            self.pending
                .entry(entry.endpoint.clone())
                .or_default()
                .insert(id.clone(), (order, entry.clone()));
            added += 1;
        }
        added
    }

    fn take_pending(&mut self, endpoint: &str, event_id: &str) -> Option<OutboxEntry> {
        let entries = self.pending.get_mut(endpoint)?;
        let (_, entry) = entries.remove(event_id)?;
        if entries.is_empty() {
            self.pending.remove(endpoint);
        }
        Some(entry)
    }
}

#[cfg_attr(not(target_arch = "wasm32"), async_trait::async_trait)]
#[cfg_attr(target_arch = "wasm32", async_trait::async_trait(?Send))]
impl EventLog for MemoryHistory {
    async fn record(&self, events: &[Event]) -> Result<bool, StoreError> {
        let mut state = lock(&self.events);
        let mut recorded = false;
        for event in events {
            recorded |= state.journal(Some(event.clone()));
        }
        Ok(recorded)
    }
}

#[cfg_attr(not(target_arch = "wasm32"), async_trait::async_trait)]
#[cfg_attr(target_arch = "wasm32", async_trait::async_trait(?Send))]
impl EventJournal for MemoryHistory {
    async fn journal(&self, limit: usize) -> Result<Vec<Journaled>, StoreError> {
        Ok(lock(&self.events)
            .journal
            .iter()
            .take(limit)
            .cloned()
            .collect())
    }

    async fn dispatch(&self, through: u64, entries: &[OutboxEntry]) -> Result<usize, StoreError> {
        let mut state = lock(&self.events);
        while state.journal.front().is_some_and(|j| j.position <= through) {
            state.journal.pop_front();
        }
        Ok(state.enqueue(entries))
    }
}

#[cfg_attr(not(target_arch = "wasm32"), async_trait::async_trait)]
#[cfg_attr(target_arch = "wasm32", async_trait::async_trait(?Send))]
impl EndpointRegistry for MemoryHistory {
    async fn put_endpoint(&self, endpoint: &Endpoint) -> Result<(), StoreError> {
        lock(&self.events)
            .endpoints
            .insert(endpoint.id.clone(), endpoint.clone());
        Ok(())
    }

    async fn endpoint(&self, id: &str) -> Result<Option<Endpoint>, StoreError> {
        Ok(lock(&self.events).endpoints.get(id).cloned())
    }

    async fn endpoints(&self, tenant: Option<&str>) -> Result<Vec<Endpoint>, StoreError> {
        Ok(lock(&self.events)
            .endpoints
            .values()
            .filter(|e| tenant.is_none() || e.tenant.as_deref() == tenant)
            .cloned()
            .collect())
    }

    async fn delete_endpoint(&self, id: &str) -> Result<bool, StoreError> {
        let mut state = lock(&self.events);
        state.pending.remove(id);
        state.dead.remove(id);
        state.attempts.remove(id);
        Ok(state.endpoints.remove(id).is_some())
    }

    async fn record_attempt(
        &self,
        endpoint: &str,
        attempt: &AttemptRecord,
    ) -> Result<(), StoreError> {
        let mut state = lock(&self.events);
        let records = state.attempts.entry(endpoint.to_owned()).or_default();
        records.push_front(attempt.clone());
        records.truncate(MAX_ATTEMPT_RECORDS);
        Ok(())
    }

    async fn attempts(
        &self,
        endpoint: &str,
        limit: usize,
    ) -> Result<Vec<AttemptRecord>, StoreError> {
        Ok(lock(&self.events)
            .attempts
            .get(endpoint)
            .map(|r| r.iter().take(limit).cloned().collect())
            .unwrap_or_default())
    }

    async fn enqueue(&self, entries: &[OutboxEntry]) -> Result<usize, StoreError> {
        Ok(lock(&self.events).enqueue(entries))
    }

    async fn dead_letters(
        &self,
        endpoint: &str,
        limit: usize,
    ) -> Result<Vec<DeadLetter>, StoreError> {
        let state = lock(&self.events);
        let mut dead: Vec<&(u64, DeadLetter)> = state
            .dead
            .get(endpoint)
            .map(|d| d.values().collect())
            .unwrap_or_default();
        dead.sort_by_key(|(order, d)| (d.at_ms, *order));
        Ok(dead
            .into_iter()
            .take(limit)
            .map(|(_, d)| d.clone())
            .collect())
    }

    async fn replay(
        &self,
        endpoint: &str,
        event_id: &str,
        now_ms: u64,
    ) -> Result<bool, StoreError> {
        let mut state = lock(&self.events);
        let Some((_, dead)) = state
            .dead
            .get_mut(endpoint)
            .and_then(|d| d.remove(event_id))
        else {
            return Ok(false);
        };
        if state.dead.get(endpoint).is_some_and(BTreeMap::is_empty) {
            state.dead.remove(endpoint);
        }
        let entry = OutboxEntry {
            delivery: Delivery::new(event_id, now_ms),
            ..dead.entry
        };
        let order = state.next_order();
        state
            .pending
            .entry(endpoint.into())
            .or_default()
            .insert(event_id.into(), (order, entry));
        Ok(true)
    }
}

#[cfg_attr(not(target_arch = "wasm32"), async_trait::async_trait)]
#[cfg_attr(target_arch = "wasm32", async_trait::async_trait(?Send))]
impl DeliveryBacklog for MemoryHistory {
    async fn pending(
        &self,
        now_ms: u64,
        per_endpoint: usize,
    ) -> Result<Vec<OutboxEntry>, StoreError> {
        let state = lock(&self.events);
        let mut out = Vec::new();
        for entries in state.pending.values() {
            let mut due: Vec<&(u64, OutboxEntry)> = entries
                .values()
                .filter(|(_, e)| e.delivery.next_at_ms <= now_ms)
                .collect();
            due.sort_by_key(|(order, e)| (e.delivery.next_at_ms, *order));
            out.extend(due.into_iter().take(per_endpoint).map(|(_, e)| e.clone()));
        }
        Ok(out)
    }

    async fn reschedule(&self, endpoint: &str, delivery: &Delivery) -> Result<(), StoreError> {
        let mut state = lock(&self.events);
        let (_, entry) = state
            .pending
            .get_mut(endpoint)
            .and_then(|e| e.get_mut(&delivery.event_id))
            .ok_or(StoreError::NotFound)?;
        entry.delivery = delivery.clone();
        Ok(())
    }

    async fn ack(&self, endpoint: &str, event_id: &str) -> Result<bool, StoreError> {
        Ok(lock(&self.events)
            .take_pending(endpoint, event_id)
            .is_some())
    }

    async fn dead_letter(
        &self,
        endpoint: &str,
        event_id: &str,
        reason: DeadReason,
        at_ms: u64,
    ) -> Result<bool, StoreError> {
        let mut state = lock(&self.events);
        let Some(entry) = state.take_pending(endpoint, event_id) else {
            return Ok(false);
        };
        let order = state.next_order();
        state.dead.entry(endpoint.into()).or_default().insert(
            event_id.into(),
            (
                order,
                DeadLetter {
                    entry,
                    reason,
                    at_ms,
                },
            ),
        );
        Ok(true)
    }
}
