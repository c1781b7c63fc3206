//! The outbox ports: the durable side of integration events, in four parts ([`EventLog`],
//! [`EventJournal`], [`EndpointRegistry`], [`DeliveryBacklog`]; [`Outbox`] is all four in one
//! store). What they keep:
//!
//! - **The journal**: events of stored changes, in the order they were stored, waiting to be
//!   dispatched. A backend that implements both [`super::HistoryStore`] and [`Outbox`] (memory,
//!   the embedded store, the edge's SQLite) writes the event of each `append` and `amend`
//!   ([`Event::of_append`], [`Event::of_amend`]) **in the change's own transaction**, whenever
//!   at least one endpoint exists, so a crash loses both or neither and never the event of an
//!   acknowledged change. A backend with a change stream (DynamoDB Streams) uses the stream as
//!   its journal instead. Member events, which follow live connections rather than a stored
//!   change, are recorded with [`EventLog::record`].
//! - **Endpoints**: who receives what ([`Endpoint`]).
//! - **Deliveries**: one entry per event and endpoint, moved out of the journal in one step
//!   ([`EventJournal::dispatch`]), kept until acknowledged, rescheduled or dead-lettered. An endpoint
//!   created after a change does not receive its event.
//!
//! **Per endpoint.** [`DeliveryBacklog::pending`] answers at most a bounded number per endpoint, so a
//! dead endpoint's backlog never crowds out another endpoint's deliveries.
//!
//! **At least once.** An entry stays pending until acknowledged, rescheduled or dead-lettered;
//! a drain that restarts finds it again (the [`crate::events::EndpointQueue`] it feeds ignores
//! entries it already holds). Every call is idempotent.

use serde::{Deserialize, Serialize};

use super::StoreError;
use crate::MaybeSendSync;
use crate::events::registry::{AttemptRecord, Endpoint};
use crate::events::{DeadReason, Delivery, Event};

/// An event in the journal.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Journaled {
    /// Its position: increasing in the order events were journaled.
    pub position: u64,
    /// The event (`message.created` without its offline members).
    pub event: Event,
}

/// One event waiting for one endpoint.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OutboxEntry {
    /// The endpoint's id (unique in the deployment, tenants' endpoints included).
    pub endpoint: String,
    /// The event exactly as produced; delivered byte for byte as [`Event::to_json`] gives it.
    pub event: Event,
    /// Attempts so far and when the next is due.
    pub delivery: Delivery,
}

impl OutboxEntry {
    /// A new entry for `endpoint`, due at `now_ms`.
    pub fn new(endpoint: impl Into<String>, event: Event, now_ms: u64) -> Self {
        let delivery = Delivery::new(event.id.clone(), now_ms);
        Self {
            endpoint: endpoint.into(),
            event,
            delivery,
        }
    }
}

/// A delivery given up on, kept for listing and replay.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeadLetter {
    /// The entry as it stood at its last attempt.
    pub entry: OutboxEntry,
    /// Why it was given up.
    pub reason: DeadReason,
    /// When, epoch milliseconds.
    pub at_ms: u64,
}

/// Where events without a stored change go: member events (`member.*`), which follow live
/// connections. Journaled like the events of changes (memory, the embedded store, a room
/// object's SQLite) or written where the change stream carries them (DynamoDB).
#[cfg_attr(not(target_arch = "wasm32"), async_trait::async_trait)]
#[cfg_attr(target_arch = "wasm32", async_trait::async_trait(?Send))]
pub trait EventLog: MaybeSendSync {
    /// Records `events` when at least one endpoint exists (like the journaling of changes).
    /// Returns whether they were recorded.
    async fn record(&self, events: &[Event]) -> Result<bool, StoreError>;
}

/// A journal read by polling (a backend without a change stream).
#[cfg_attr(not(target_arch = "wasm32"), async_trait::async_trait)]
#[cfg_attr(target_arch = "wasm32", async_trait::async_trait(?Send))]
pub trait EventJournal: EventLog {
    /// Up to `limit` journaled events, oldest first.
    async fn journal(&self, limit: usize) -> Result<Vec<Journaled>, StoreError>;
    /// In one step: forgets the journal through `through` and records `entries` (an entry whose
    /// `(endpoint, event id)` is pending or dead-lettered already is skipped). Returns how many
    /// entries were new.
    async fn dispatch(&self, through: u64, entries: &[OutboxEntry]) -> Result<usize, StoreError>;
}

/// Endpoints, what they are owed and what became of it: the endpoints API's side.
#[cfg_attr(not(target_arch = "wasm32"), async_trait::async_trait)]
#[cfg_attr(target_arch = "wasm32", async_trait::async_trait(?Send))]
pub trait EndpointRegistry: MaybeSendSync {
    /// Creates or replaces an endpoint.
    async fn put_endpoint(&self, endpoint: &Endpoint) -> Result<(), StoreError>;
    /// The endpoint with this id.
    async fn endpoint(&self, id: &str) -> Result<Option<Endpoint>, StoreError>;
    /// Every endpoint (`tenant: None`), or one tenant's (operator-wide ones not included),
    /// by id.
    async fn endpoints(&self, tenant: Option<&str>) -> Result<Vec<Endpoint>, StoreError>;
    /// Removes an endpoint with its pending deliveries, dead letters and attempt records.
    /// Returns whether it existed.
    async fn delete_endpoint(&self, id: &str) -> Result<bool, StoreError>;
    /// Keeps an attempt record for the endpoint (the newest
    /// [`crate::events::registry::MAX_ATTEMPT_RECORDS`]).
    async fn record_attempt(
        &self,
        endpoint: &str,
        attempt: &AttemptRecord,
    ) -> Result<(), StoreError>;
    /// The endpoint's attempt records, newest first.
    async fn attempts(
        &self,
        endpoint: &str,
        limit: usize,
    ) -> Result<Vec<AttemptRecord>, StoreError>;
    /// Queues deliveries that no journal carries (an `endpoint.test`): like
    /// [`EventJournal::dispatch`] with nothing to forget. Returns how many were new.
    async fn enqueue(&self, entries: &[OutboxEntry]) -> Result<usize, StoreError>;
    /// Up to `limit` of the endpoint's dead letters, oldest first.
    async fn dead_letters(
        &self,
        endpoint: &str,
        limit: usize,
    ) -> Result<Vec<DeadLetter>, StoreError>;
    /// Queues a dead letter again as a new delivery due at `now_ms` (attempts from 0, a fresh
    /// retry window) and forgets it. Returns whether there was one.
    async fn replay(&self, endpoint: &str, event_id: &str, now_ms: u64)
    -> Result<bool, StoreError>;
}

/// Deliveries kept in the store and polled by a delivery loop (the local server, the edge's
/// tenant object); a deployment with a queue service (SQS) keeps them there instead.
#[cfg_attr(not(target_arch = "wasm32"), async_trait::async_trait)]
#[cfg_attr(target_arch = "wasm32", async_trait::async_trait(?Send))]
pub trait DeliveryBacklog: MaybeSendSync {
    /// Entries due at `now_ms`: for each endpoint, up to `per_endpoint` of its due entries,
    /// earliest due first, then in the order they were appended (so one room's events keep
    /// their seq order).
    async fn pending(
        &self,
        now_ms: u64,
        per_endpoint: usize,
    ) -> Result<Vec<OutboxEntry>, StoreError>;
    /// Stores a failed attempt: the delivery's attempts and next due time. `NotFound` when the
    /// entry is no longer pending.
    async fn reschedule(&self, endpoint: &str, delivery: &Delivery) -> Result<(), StoreError>;
    /// Delivered: forgets the entry. Returns whether it was pending.
    async fn ack(&self, endpoint: &str, event_id: &str) -> Result<bool, StoreError>;
    /// Given up: moves the entry to the dead-letter list. Returns whether it was pending.
    async fn dead_letter(
        &self,
        endpoint: &str,
        event_id: &str,
        reason: DeadReason,
        at_ms: u64,
    ) -> Result<bool, StoreError>;
}

/// All of it in one store, in one transaction domain (memory, the embedded store, the edge's
/// SQLite): what the conformance suite runs against.
pub trait Outbox: EventJournal + EndpointRegistry + DeliveryBacklog {}

impl<T: EventJournal + EndpointRegistry + DeliveryBacklog> Outbox for T {}
