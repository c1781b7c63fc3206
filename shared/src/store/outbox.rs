//! The outbox port: integration events waiting for delivery, one entry per event and endpoint.
//!
//! **Same transaction.** An event is only as reliable as the write that records it: a backend
//! that keeps an outbox writes a change's entries in the same transaction as the change (the
//! embedded store: the same redb write transaction as the append; the edge: the same SQLite
//! transaction), so a crash loses both or neither and never an event of a change that was
//! acknowledged. A backend with a change stream (DynamoDB Streams) may use the stream as its
//! outbox and call [`Outbox::append`] from the stream's consumer instead. Either way nothing
//! is delivered before the change is durable, and the delivery adds nothing to the `ack`.
//!
//! **Per endpoint.** Entries are keyed by `(endpoint, event id)`; [`Outbox::pending`] answers
//! at most a bounded number per endpoint, so a dead endpoint's backlog never crowds out another
//! endpoint's deliveries. Entries are resolved against the endpoints that exist when the change
//! is stored: an endpoint created later does not receive earlier events.
//!
//! **At least once.** An entry stays pending until acknowledged, rescheduled or dead-lettered;
//! a drain that restarts finds it again (the [`crate::events::EndpointQueue`] it feeds ignores
//! entries it already holds). Every call is idempotent.

use serde::{Deserialize, Serialize};

use super::StoreError;
use crate::MaybeSendSync;
use crate::events::{DeadReason, Delivery, Event};

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

/// Integration events waiting for delivery, and the dead-letter list.
#[cfg_attr(not(target_arch = "wasm32"), async_trait::async_trait)]
#[cfg_attr(target_arch = "wasm32", async_trait::async_trait(?Send))]
pub trait Outbox: MaybeSendSync {
    /// Records entries (in the change's own transaction where the backend can; see the module
    /// doc). An entry whose `(endpoint, event id)` is pending or dead-lettered already is
    /// skipped: returns how many were new.
    async fn append(&self, entries: &[OutboxEntry]) -> Result<usize, StoreError>;
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
    /// Up to `limit` of the endpoint's dead letters, oldest first.
    async fn dead_letters(
        &self,
        endpoint: &str,
        limit: usize,
    ) -> Result<Vec<DeadLetter>, StoreError>;
    /// Moves a dead letter back to pending as a new delivery due at `now_ms` (attempts from 0,
    /// a fresh retry window). Returns whether there was one.
    async fn replay(&self, endpoint: &str, event_id: &str, now_ms: u64)
    -> Result<bool, StoreError>;
}
