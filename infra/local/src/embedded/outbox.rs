//! The embedded store's [`roomcast_core::store::Outbox`]: endpoints, deliveries, dead letters and
//! attempt records in the same redb file as the history's other tables, written by the same
//! writer thread. The journal is in the message log ([`super::log`]): the event of an `append`
//! or `amend` is part of the message's own record (see [`WriteTables::journaled`]), so a
//! `kill -9` loses both or neither; what has been dispatched is the position kept here.
//!
//! Tables: endpoints `id → Endpoint`, pending
//! `(endpoint, event id) → (order, OutboxEntry)` with its index by due time `(endpoint, due,
//! order) → event id`, dead letters `(endpoint, event id) → (order, DeadLetter)`, attempts
//! `(endpoint, n) → AttemptRecord`, and counters `name → u64` (the journal position dispatched
//! through, append order and attempt number). Values are JSON.

use redb::{
    Database, ReadTransaction, ReadableDatabase, ReadableTable, TableDefinition, WriteTransaction,
};
use roomcast_core::events::registry::{AttemptRecord, Endpoint, MAX_ATTEMPT_RECORDS};
use roomcast_core::events::{DeadReason, Delivery, Event};
use roomcast_core::store::{
    DeadLetter, DeliveryBacklog, EndpointRegistry, EventJournal, EventLog, Journaled, OutboxEntry,
    StoreError,
};
use serde::{Deserialize, Serialize};

use super::{Applied, EmbeddedHistory, LogBatch, WriteTables, decode, encode, unavailable};

/// Where stores before the message log journaled events (see [`legacy_journal`]).
const LEGACY_JOURNAL: TableDefinition<'_, u64, &[u8]> = TableDefinition::new("event_journal");
pub(super) const ENDPOINTS: TableDefinition<'_, &str, &[u8]> =
    TableDefinition::new("event_endpoints");
pub(super) const PENDING: TableDefinition<'_, (&str, &str), &[u8]> =
    TableDefinition::new("event_pending");
pub(super) const DEAD: TableDefinition<'_, (&str, &str), &[u8]> =
    TableDefinition::new("event_dead_letters");
pub(super) const ATTEMPTS: TableDefinition<'_, (&str, u64), &[u8]> =
    TableDefinition::new("event_attempts");
pub(super) const COUNTERS: TableDefinition<'_, &str, u64> = TableDefinition::new("event_counters");
/// The pending entries by when they are due: `(endpoint, next attempt ms, order) → event id`,
/// so `pending` reads only what is due (a dead endpoint's backlog costs nothing per turn).
pub(super) const DUE: TableDefinition<'_, (&str, u64, u64), &str> =
    TableDefinition::new("event_due");

/// The stores before the message log counted journal positions here.
const LEGACY_NEXT_POSITION: &str = "journal_position";
const DISPATCHED: &str = "journal_dispatched";
const NEXT_ORDER: &str = "order";
const NEXT_ATTEMPT: &str = "attempt";

/// A pending entry or dead letter with the order it was stored in.
#[derive(Serialize, Deserialize)]
struct Ordered<T> {
    order: u64,
    value: T,
}

impl LogBatch<'_> {
    /// The change's event as the journal stores it, when an endpoint exists to hear it (else
    /// the event is not even built): the write that made the change stages it with its own
    /// record.
    pub(super) fn journaled(
        &self,
        event: impl FnOnce() -> Option<Event>,
    ) -> Result<Option<Vec<u8>>, StoreError> {
        if !self.endpoints_exist {
            return Ok(None);
        }
        event().map(|e| encode(&e)).transpose()
    }

    fn record(&mut self, events: Vec<Event>) -> Result<bool, StoreError> {
        let mut recorded = false;
        for event in events {
            if let Some(bytes) = self.journaled(|| Some(event))? {
                self.log.stage_event(&bytes)?;
                recorded = true;
            }
        }
        Ok(recorded)
    }
}

impl WriteTables<'_> {
    fn next(&mut self, counter: &str) -> Result<u64, redb::Error> {
        let n = self.counters.get(counter)?.map_or(0, |v| v.value()) + 1;
        self.counters.insert(counter, n)?;
        Ok(n)
    }

    /// The batch's log learns whether an endpoint is left after a change of the endpoints.
    fn endpoints_changed(&mut self) -> Result<(), redb::Error> {
        self.endpoints_changed = true;
        self.batch.endpoints_exist = self.endpoints.first()?.is_some();
        Ok(())
    }

    fn known(&self, endpoint: &str, event_id: &str) -> Result<bool, redb::Error> {
        Ok(self.pending.get((endpoint, event_id))?.is_some()
            || self.dead.get((endpoint, event_id))?.is_some())
    }

    fn add_pending(&mut self, entry: &OutboxEntry) -> Applied<()> {
        let order = self.next(NEXT_ORDER)?;
        let bytes = tri!(encode(&Ordered {
            order,
            value: entry.clone(),
        }));
        self.pending.insert(
            (entry.endpoint.as_str(), entry.event.id.as_str()),
            bytes.as_slice(),
        )?;
        self.due.insert(
            (entry.endpoint.as_str(), entry.delivery.next_at_ms, order),
            entry.event.id.as_str(),
        )?;
        Ok(Ok(()))
    }

    fn dispatch(&mut self, through: u64, entries: Vec<OutboxEntry>) -> Applied<usize> {
        let before = self.counters.get(DISPATCHED)?.map_or(0, |v| v.value());
        if through > before {
            self.counters.insert(DISPATCHED, through)?;
            self.batch.log.dispatched(through);
        }
        let mut added = 0;
        for entry in &entries {
            if self.known(&entry.endpoint, &entry.event.id)? {
                continue;
            }
            tri!(self.add_pending(entry)?);
            added += 1;
        }
        Ok(Ok(added))
    }

    fn take_pending(&mut self, endpoint: &str, event_id: &str) -> Applied<Option<OutboxEntry>> {
        let Some(bytes) = self.pending.remove((endpoint, event_id))? else {
            return Ok(Ok(None));
        };
        let stored: Ordered<OutboxEntry> = tri!(decode(bytes.value()));
        drop(bytes);
        self.due
            .remove((endpoint, stored.value.delivery.next_at_ms, stored.order))?;
        Ok(Ok(Some(stored.value)))
    }

    fn reschedule(&mut self, endpoint: &str, delivery: Delivery) -> Applied<()> {
        let key = (endpoint, delivery.event_id.as_str());
        let Some(bytes) = self.pending.get(key)?.map(|v| v.value().to_vec()) else {
            return Ok(Err(StoreError::NotFound));
        };
        let mut stored: Ordered<OutboxEntry> = tri!(decode(&bytes));
        self.due
            .remove((endpoint, stored.value.delivery.next_at_ms, stored.order))?;
        self.due
            .insert((endpoint, delivery.next_at_ms, stored.order), key.1)?;
        stored.value.delivery = delivery.clone();
        let bytes = tri!(encode(&stored));
        self.pending.insert(key, bytes.as_slice())?;
        Ok(Ok(()))
    }

    fn dead_letter(
        &mut self,
        endpoint: &str,
        event_id: &str,
        reason: DeadReason,
        at_ms: u64,
    ) -> Applied<bool> {
        let Some(entry) = tri!(self.take_pending(endpoint, event_id)?) else {
            return Ok(Ok(false));
        };
        let order = self.next(NEXT_ORDER)?;
        let bytes = tri!(encode(&Ordered {
            order,
            value: DeadLetter {
                entry,
                reason,
                at_ms,
            },
        }));
        self.dead.insert((endpoint, event_id), bytes.as_slice())?;
        Ok(Ok(true))
    }

    fn replay(&mut self, endpoint: &str, event_id: &str, now_ms: u64) -> Applied<bool> {
        let Some(bytes) = self.dead.remove((endpoint, event_id))? else {
            return Ok(Ok(false));
        };
        let dead: Ordered<DeadLetter> = tri!(decode(bytes.value()));
        drop(bytes);
        let entry = OutboxEntry {
            delivery: Delivery::new(event_id, now_ms),
            ..dead.value.entry
        };
        tri!(self.add_pending(&entry)?);
        Ok(Ok(true))
    }

    /// Removes every `(endpoint, …)` key of a table keyed by endpoint first.
    fn clear_endpoint(&mut self, endpoint: &str) -> Result<(), redb::Error> {
        let keys = ids_under(&self.pending, endpoint)?;
        for id in keys {
            self.pending.remove((endpoint, id.as_str()))?;
        }
        let keys = ids_under(&self.dead, endpoint)?;
        for id in keys {
            self.dead.remove((endpoint, id.as_str()))?;
        }
        let numbers: Vec<u64> = self
            .attempts
            .range((endpoint, 0)..=(endpoint, u64::MAX))?
            .map(|e| e.map(|(k, _)| k.value().1))
            .collect::<Result<_, _>>()?;
        for n in numbers {
            self.attempts.remove((endpoint, n))?;
        }
        let due: Vec<(u64, u64)> = self
            .due
            .range((endpoint, 0, 0)..=(endpoint, u64::MAX, u64::MAX))?
            .map(|e| e.map(|(k, _)| (k.value().1, k.value().2)))
            .collect::<Result<_, _>>()?;
        for (at, order) in due {
            self.due.remove((endpoint, at, order))?;
        }
        Ok(())
    }

    fn put_endpoint(&mut self, endpoint: &Endpoint) -> Applied<()> {
        let bytes = tri!(encode(endpoint));
        self.endpoints
            .insert(endpoint.id.as_str(), bytes.as_slice())?;
        self.endpoints_changed()?;
        Ok(Ok(()))
    }

    fn delete_endpoint(&mut self, id: &str) -> Applied<bool> {
        self.clear_endpoint(id)?;
        let removed = self.endpoints.remove(id)?.is_some();
        self.endpoints_changed()?;
        Ok(Ok(removed))
    }

    fn record_attempt(&mut self, endpoint: &str, attempt: &AttemptRecord) -> Applied<()> {
        let bytes = tri!(encode(attempt));
        let n = self.next(NEXT_ATTEMPT)?;
        self.attempts.insert((endpoint, n), bytes.as_slice())?;
        let numbers: Vec<u64> = self
            .attempts
            .range((endpoint, 0)..=(endpoint, u64::MAX))?
            .map(|e| e.map(|(k, _)| k.value().1))
            .collect::<Result<_, _>>()?;
        let excess = numbers.len().saturating_sub(MAX_ATTEMPT_RECORDS);
        for old in &numbers[..excess] {
            self.attempts.remove((endpoint, *old))?;
        }
        Ok(Ok(()))
    }
}

/// The event ids under `endpoint` in a table keyed `(endpoint, event id)`.
fn ids_under(
    table: &impl ReadableTable<(&'static str, &'static str), &'static [u8]>,
    endpoint: &str,
) -> Result<Vec<String>, redb::Error> {
    let mut ids = Vec::new();
    for entry in table.range((endpoint, "")..)? {
        let (k, _) = entry?;
        let (ep, id) = k.value();
        if ep != endpoint {
            break;
        }
        ids.push(id.to_owned());
    }
    Ok(ids)
}

/// The journal position dispatched through (0 on a new store).
pub(super) fn dispatched_through(db: &Database) -> Result<u64, StoreError> {
    let txn = db.begin_read().map_err(unavailable)?;
    let counters = match txn.open_table(COUNTERS) {
        Ok(table) => table,
        // A new file: its tables are created next.
        Err(redb::TableError::TableDoesNotExist(_)) => return Ok(0),
        Err(e) => return Err(unavailable(e)),
    };
    let through = counters.get(DISPATCHED).map_err(unavailable)?;
    Ok(through.map_or(0, |v| v.value()))
}

/// Whether the file holds any endpoint.
pub(super) fn any_endpoint(db: &Database) -> Result<bool, StoreError> {
    let txn = db.begin_read().map_err(unavailable)?;
    let endpoints = txn.open_table(ENDPOINTS).map_err(unavailable)?;
    Ok(endpoints.first().map_err(unavailable)?.is_some())
}

/// The events a store from before the message log had not dispatched yet, in order.
pub(super) fn legacy_journal(txn: &ReadTransaction) -> Result<Vec<Vec<u8>>, StoreError> {
    let table = match txn.open_table(LEGACY_JOURNAL) {
        Ok(table) => table,
        Err(redb::TableError::TableDoesNotExist(_)) => return Ok(Vec::new()),
        Err(e) => return Err(unavailable(e)),
    };
    table
        .iter()
        .map_err(unavailable)?
        .map(|entry| entry.map(|(_, v)| v.value().to_vec()).map_err(unavailable))
        .collect()
}

/// Drops the old journal (its events are in the log now) and its position counter.
pub(super) fn drop_legacy_journal(txn: &WriteTransaction) -> Result<(), StoreError> {
    txn.delete_table(LEGACY_JOURNAL).map_err(unavailable)?;
    let mut counters = txn.open_table(COUNTERS).map_err(unavailable)?;
    counters.remove(LEGACY_NEXT_POSITION).map_err(unavailable)?;
    Ok(())
}

#[async_trait::async_trait]
impl EventLog for EmbeddedHistory {
    async fn record(&self, events: &[Event]) -> Result<bool, StoreError> {
        let events = events.to_vec();
        self.run_on_log(move |t| t.record(events)).await
    }
}

#[async_trait::async_trait]
impl EventJournal for EmbeddedHistory {
    async fn journal(&self, limit: usize) -> Result<Vec<Journaled>, StoreError> {
        let places = self.log.journal(limit);
        if places.is_empty() {
            return Ok(Vec::new());
        }
        tokio::task::spawn_blocking(move || {
            places
                .into_iter()
                .map(|(position, place)| {
                    Ok(Journaled {
                        position,
                        event: decode(&place.read_event()?)?,
                    })
                })
                .collect()
        })
        .await
        .map_err(|e| StoreError::Other(format!("journal read task failed: {e}")))?
    }

    async fn dispatch(&self, through: u64, entries: &[OutboxEntry]) -> Result<usize, StoreError> {
        let entries = entries.to_vec();
        self.run(move |t| t.dispatch(through, entries)).await
    }
}

#[async_trait::async_trait]
impl EndpointRegistry for EmbeddedHistory {
    async fn put_endpoint(&self, endpoint: &Endpoint) -> Result<(), StoreError> {
        let endpoint = endpoint.clone();
        self.run(move |t| t.put_endpoint(&endpoint)).await
    }

    async fn endpoint(&self, id: &str) -> Result<Option<Endpoint>, StoreError> {
        if !self.has_endpoints() {
            return Ok(None);
        }
        let id = id.to_owned();
        self.read(move |txn| {
            let table = txn.open_table(ENDPOINTS).map_err(unavailable)?;
            let stored = table.get(id.as_str()).map_err(unavailable)?;
            stored.map(|v| decode(v.value())).transpose()
        })
        .await
    }

    async fn endpoints(&self, tenant: Option<&str>) -> Result<Vec<Endpoint>, StoreError> {
        if !self.has_endpoints() {
            return Ok(Vec::new());
        }
        let tenant = tenant.map(str::to_owned);
        self.read(move |txn| {
            let table = txn.open_table(ENDPOINTS).map_err(unavailable)?;
            let mut out = Vec::new();
            for entry in table.iter().map_err(unavailable)? {
                let (_, v) = entry.map_err(unavailable)?;
                let endpoint: Endpoint = decode(v.value())?;
                if tenant.is_none() || endpoint.tenant == tenant {
                    out.push(endpoint);
                }
            }
            Ok(out)
        })
        .await
    }

    async fn delete_endpoint(&self, id: &str) -> Result<bool, StoreError> {
        let id = id.to_owned();
        self.run(move |t| t.delete_endpoint(&id)).await
    }

    async fn record_attempt(
        &self,
        endpoint: &str,
        attempt: &AttemptRecord,
    ) -> Result<(), StoreError> {
        let (endpoint, attempt) = (endpoint.to_owned(), attempt.clone());
        self.run(move |t| t.record_attempt(&endpoint, &attempt))
            .await
    }

    async fn attempts(
        &self,
        endpoint: &str,
        limit: usize,
    ) -> Result<Vec<AttemptRecord>, StoreError> {
        let endpoint = endpoint.to_owned();
        self.read(move |txn| {
            let table = txn.open_table(ATTEMPTS).map_err(unavailable)?;
            let mut out = Vec::new();
            let range = table
                .range((endpoint.as_str(), 0)..=(endpoint.as_str(), u64::MAX))
                .map_err(unavailable)?;
            for entry in range.rev().take(limit) {
                let (_, v) = entry.map_err(unavailable)?;
                out.push(decode(v.value())?);
            }
            Ok(out)
        })
        .await
    }

    /// Position 0 precedes every journaled event: nothing is forgotten.
    async fn enqueue(&self, entries: &[OutboxEntry]) -> Result<usize, StoreError> {
        let entries = entries.to_vec();
        self.run(move |t| t.dispatch(0, entries)).await
    }

    async fn dead_letters(
        &self,
        endpoint: &str,
        limit: usize,
    ) -> Result<Vec<DeadLetter>, StoreError> {
        let endpoint = endpoint.to_owned();
        self.read(move |txn| {
            let table = txn.open_table(DEAD).map_err(unavailable)?;
            let mut dead: Vec<Ordered<DeadLetter>> = Vec::new();
            for entry in table
                .range((endpoint.as_str(), "")..)
                .map_err(unavailable)?
            {
                let (k, v) = entry.map_err(unavailable)?;
                if k.value().0 != endpoint {
                    break;
                }
                dead.push(decode(v.value())?);
            }
            dead.sort_by_key(|d| (d.value.at_ms, d.order));
            Ok(dead.into_iter().take(limit).map(|d| d.value).collect())
        })
        .await
    }

    async fn replay(
        &self,
        endpoint: &str,
        event_id: &str,
        now_ms: u64,
    ) -> Result<bool, StoreError> {
        let (endpoint, event_id) = (endpoint.to_owned(), event_id.to_owned());
        self.run(move |t| t.replay(&endpoint, &event_id, now_ms))
            .await
    }
}

#[async_trait::async_trait]
impl DeliveryBacklog for EmbeddedHistory {
    async fn pending(
        &self,
        now_ms: u64,
        per_endpoint: usize,
    ) -> Result<Vec<OutboxEntry>, StoreError> {
        // Deleting an endpoint deletes its deliveries: without endpoints none is pending.
        if !self.has_endpoints() {
            return Ok(Vec::new());
        }
        self.read(move |txn| {
            let due = txn.open_table(DUE).map_err(unavailable)?;
            let pending = txn.open_table(PENDING).map_err(unavailable)?;
            let mut out = Vec::new();
            // One range per endpoint: its due entries in (due, order) order; then skip to the
            // next endpoint's first key.
            let mut next = due
                .first()
                .map_err(unavailable)?
                .map(|(k, _)| k.value().0.to_owned());
            while let Some(endpoint) = next.take() {
                let ep = endpoint.as_str();
                for entry in due
                    .range((ep, 0, 0)..=(ep, now_ms, u64::MAX))
                    .map_err(unavailable)?
                    .take(per_endpoint)
                {
                    let (_, id) = entry.map_err(unavailable)?;
                    if let Some(bytes) = pending.get((ep, id.value())).map_err(unavailable)? {
                        let stored: Ordered<OutboxEntry> = decode(bytes.value())?;
                        out.push(stored.value);
                    }
                }
                next = due
                    .range((ep, u64::MAX, u64::MAX)..)
                    .map_err(unavailable)?
                    .map(|e| e.map(|(k, _)| k.value().0.to_owned()))
                    .find(|k| k.as_deref().map_or(true, |k| k != ep))
                    .transpose()
                    .map_err(unavailable)?;
            }
            Ok(out)
        })
        .await
    }

    async fn reschedule(&self, endpoint: &str, delivery: &Delivery) -> Result<(), StoreError> {
        let (endpoint, delivery) = (endpoint.to_owned(), delivery.clone());
        self.run(move |t| t.reschedule(&endpoint, delivery)).await
    }

    async fn ack(&self, endpoint: &str, event_id: &str) -> Result<bool, StoreError> {
        let (endpoint, event_id) = (endpoint.to_owned(), event_id.to_owned());
        self.run(move |t| {
            t.take_pending(&endpoint, &event_id)
                .map(|r| r.map(|e| e.is_some()))
        })
        .await
    }

    async fn dead_letter(
        &self,
        endpoint: &str,
        event_id: &str,
        reason: DeadReason,
        at_ms: u64,
    ) -> Result<bool, StoreError> {
        let (endpoint, event_id) = (endpoint.to_owned(), event_id.to_owned());
        self.run(move |t| t.dead_letter(&endpoint, &event_id, reason, at_ms))
            .await
    }
}
