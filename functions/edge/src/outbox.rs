//! The core's [`roomcast_core::store::Outbox`] ports on a Durable Object's SQLite storage,
//! implemented by [`SqlHistory`] itself: its appends and amendments journal their events in the same
//! synchronous turn as the change (so the runtime commits the change and its event together),
//! as the port asks of a backend that keeps history and outbox in one transaction domain.
//!
//! Two objects use it (docs/events.md, "The edge"):
//! - a `ChatRoom` journals the events of its room's changes ([`Journaling::Always`]: the
//!   tenant's endpoints live in another object, so the room cannot tell cheaply whether any
//!   exists; its dispatch drops events no endpoint wants) and hands them to its tenant's
//!   [`crate::events::TenantEvents`];
//! - a `TenantEvents` keeps the tenant's endpoints, deliveries, dead letters and attempt
//!   records here.
//!
//! The store conformance run (`dev.rs`) uses one with [`Journaling::WhenEndpoints`], the port's
//! rule.
//!
//! Rows hold the core's types as JSON next to the columns queries need. As in `history.rs`, no
//! method awaits anything, so a read followed by a write cannot interleave with another event.

use roomcast_core::events::registry::{AttemptRecord, MAX_ATTEMPT_RECORDS};
use roomcast_core::events::{DeadReason, Delivery, Endpoint, Event};
use roomcast_core::store::{
    DeadLetter, DeliveryBacklog, EndpointRegistry, EventJournal, EventLog, Journaled, OutboxEntry,
    StoreError,
};
use serde::Serialize;
use serde::de::DeserializeOwned;
use worker::{SqlStorage, SqlStorageValue};

use crate::history::{Row, SqlHistory, failed, get_string, get_u64, int, rows, run, text};

const SCHEMA: &[&str] = &[
    // A counter per name: journal positions and the order of entries.
    "CREATE TABLE IF NOT EXISTS ob_counters (name TEXT NOT NULL PRIMARY KEY, value INTEGER NOT NULL)
        WITHOUT ROWID",
    "CREATE TABLE IF NOT EXISTS ob_journal (position INTEGER NOT NULL PRIMARY KEY, event TEXT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS ob_endpoints (
        id TEXT NOT NULL PRIMARY KEY, tenant TEXT, endpoint TEXT NOT NULL) WITHOUT ROWID",
    "CREATE TABLE IF NOT EXISTS ob_pending (
        endpoint TEXT NOT NULL, event_id TEXT NOT NULL, ord INTEGER NOT NULL,
        next_at INTEGER NOT NULL, entry TEXT NOT NULL,
        PRIMARY KEY (endpoint, event_id)) WITHOUT ROWID",
    "CREATE INDEX IF NOT EXISTS ob_pending_due ON ob_pending (endpoint, next_at, ord)",
    "CREATE TABLE IF NOT EXISTS ob_dead (
        endpoint TEXT NOT NULL, event_id TEXT NOT NULL, ord INTEGER NOT NULL,
        at_ms INTEGER NOT NULL, letter TEXT NOT NULL,
        PRIMARY KEY (endpoint, event_id)) WITHOUT ROWID",
    "CREATE TABLE IF NOT EXISTS ob_attempts (
        endpoint TEXT NOT NULL, ord INTEGER NOT NULL, record TEXT NOT NULL,
        PRIMARY KEY (endpoint, ord)) WITHOUT ROWID",
];

/// When changes are journaled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Journaling {
    /// Every change (a room object: the endpoints are its tenant object's).
    Always,
    /// While this store holds at least one endpoint (the port's rule).
    WhenEndpoints,
}

fn to_json(value: &impl Serialize) -> Result<String, StoreError> {
    serde_json::to_string(value).map_err(|e| StoreError::Other(format!("encoding: {e}")))
}

fn from_json<T: DeserializeOwned>(row: &Row, i: usize) -> Result<T, StoreError> {
    let json = get_string(row, i)?;
    serde_json::from_str(&json).map_err(|e| StoreError::Other(format!("stored JSON: {e}")))
}

/// Creates the outbox's tables.
pub(crate) fn create_tables(sql: &SqlStorage) -> Result<(), StoreError> {
    for statement in SCHEMA {
        sql.exec(statement, None).map_err(failed)?;
    }
    Ok(())
}

/// The next value of counter `name` (from 1), in one statement.
fn next(sql: &SqlStorage, name: &str) -> Result<u64, StoreError> {
    let found = rows(
        sql,
        "INSERT INTO ob_counters (name, value) VALUES (?, 1)
         ON CONFLICT (name) DO UPDATE SET value = value + 1 RETURNING value",
        vec![text(name)],
    )?;
    found
        .first()
        .ok_or_else(|| StoreError::Other("counter returned no value".into()))
        .and_then(|row| get_u64(row, 0))
}

impl SqlHistory {
    /// Journals `event` (if any) when [`Journaling`] says so; returns whether it did.
    pub(crate) fn journal_write(&self, event: Option<Event>) -> Result<bool, StoreError> {
        let Some(event) = event else {
            return Ok(false);
        };
        if self.journaling() == Journaling::WhenEndpoints
            && rows(self.sql(), "SELECT 1 FROM ob_endpoints LIMIT 1", Vec::new())?.is_empty()
        {
            return Ok(false);
        }
        let position = next(self.sql(), "journal")?;
        run(
            self.sql(),
            "INSERT INTO ob_journal (position, event) VALUES (?, ?)",
            vec![int(position), text(&to_json(&event)?)],
        )?;
        Ok(true)
    }

    /// Whether events wait in the journal.
    pub fn has_journal(&self) -> Result<bool, StoreError> {
        Ok(!rows(self.sql(), "SELECT 1 FROM ob_journal LIMIT 1", Vec::new())?.is_empty())
    }

    /// When the earliest pending delivery is due, epoch ms (the object's alarm goes there).
    pub fn next_due(&self) -> Result<Option<u64>, StoreError> {
        let found = rows(
            self.sql(),
            "SELECT MIN(next_at) FROM ob_pending",
            Vec::new(),
        )?;
        match found.first() {
            Some(row) if !matches!(row.first(), Some(SqlStorageValue::Null) | None) => {
                get_u64(row, 0).map(Some)
            }
            _ => Ok(None),
        }
    }

    /// Forgets the journal through `through`.
    pub fn forget_journal(&self, through: u64) -> Result<(), StoreError> {
        run(
            self.sql(),
            "DELETE FROM ob_journal WHERE position <= ?",
            vec![int(through)],
        )
    }

    fn known(&self, table: &str, endpoint: &str, event_id: &str) -> Result<bool, StoreError> {
        Ok(!rows(
            self.sql(),
            &format!("SELECT 1 FROM {table} WHERE endpoint = ? AND event_id = ?"),
            vec![text(endpoint), text(event_id)],
        )?
        .is_empty())
    }

    /// Adds the entries not pending or dead-lettered already; returns how many.
    fn insert_new(&self, entries: &[OutboxEntry]) -> Result<usize, StoreError> {
        let mut added = 0;
        for entry in entries {
            let id = &entry.event.id;
            if self.known("ob_pending", &entry.endpoint, id)?
                || self.known("ob_dead", &entry.endpoint, id)?
            {
                continue;
            }
            self.insert_pending(entry)?;
            added += 1;
        }
        Ok(added)
    }

    fn insert_pending(&self, entry: &OutboxEntry) -> Result<(), StoreError> {
        let ord = next(self.sql(), "order")?;
        run(
            self.sql(),
            "INSERT INTO ob_pending (endpoint, event_id, ord, next_at, entry) VALUES (?, ?, ?, ?, ?)",
            vec![
                text(&entry.endpoint),
                text(&entry.event.id),
                int(ord),
                int(entry.delivery.next_at_ms),
                text(&to_json(entry)?),
            ],
        )
    }

    fn take_pending(
        &self,
        endpoint: &str,
        event_id: &str,
    ) -> Result<Option<OutboxEntry>, StoreError> {
        let found = rows(
            self.sql(),
            "DELETE FROM ob_pending WHERE endpoint = ? AND event_id = ? RETURNING entry",
            vec![text(endpoint), text(event_id)],
        )?;
        found.first().map(|row| from_json(row, 0)).transpose()
    }
}

#[async_trait::async_trait(?Send)]
impl EventLog for SqlHistory {
    async fn record(&self, events: &[Event]) -> Result<bool, StoreError> {
        let mut recorded = false;
        for event in events {
            recorded |= self.journal_write(Some(event.clone()))?;
        }
        Ok(recorded)
    }
}

#[async_trait::async_trait(?Send)]
impl EventJournal for SqlHistory {
    async fn journal(&self, limit: usize) -> Result<Vec<Journaled>, StoreError> {
        rows(
            self.sql(),
            "SELECT position, event FROM ob_journal ORDER BY position LIMIT ?",
            vec![int(limit as u64)],
        )?
        .iter()
        .map(|row| {
            Ok(Journaled {
                position: get_u64(row, 0)?,
                event: from_json(row, 1)?,
            })
        })
        .collect()
    }

    async fn dispatch(&self, through: u64, entries: &[OutboxEntry]) -> Result<usize, StoreError> {
        self.forget_journal(through)?;
        self.insert_new(entries)
    }
}

#[async_trait::async_trait(?Send)]
impl EndpointRegistry for SqlHistory {
    async fn put_endpoint(&self, endpoint: &Endpoint) -> Result<(), StoreError> {
        run(
            self.sql(),
            "INSERT INTO ob_endpoints (id, tenant, endpoint) VALUES (?, ?, ?)
             ON CONFLICT (id) DO UPDATE SET tenant = excluded.tenant, endpoint = excluded.endpoint",
            vec![
                text(&endpoint.id),
                endpoint
                    .tenant
                    .as_deref()
                    .map_or(SqlStorageValue::Null, text),
                text(&to_json(endpoint)?),
            ],
        )
    }

    async fn endpoint(&self, id: &str) -> Result<Option<Endpoint>, StoreError> {
        rows(
            self.sql(),
            "SELECT endpoint FROM ob_endpoints WHERE id = ?",
            vec![text(id)],
        )?
        .first()
        .map(|row| from_json(row, 0))
        .transpose()
    }

    async fn endpoints(&self, tenant: Option<&str>) -> Result<Vec<Endpoint>, StoreError> {
        let found = match tenant {
            None => rows(
                self.sql(),
                "SELECT endpoint FROM ob_endpoints ORDER BY id",
                Vec::new(),
            )?,
            Some(tenant) => rows(
                self.sql(),
                "SELECT endpoint FROM ob_endpoints WHERE tenant = ? ORDER BY id",
                vec![text(tenant)],
            )?,
        };
        found.iter().map(|row| from_json(row, 0)).collect()
    }

    async fn delete_endpoint(&self, id: &str) -> Result<bool, StoreError> {
        for table in ["ob_pending", "ob_dead", "ob_attempts"] {
            run(
                self.sql(),
                &format!("DELETE FROM {table} WHERE endpoint = ?"),
                vec![text(id)],
            )?;
        }
        Ok(!rows(
            self.sql(),
            "DELETE FROM ob_endpoints WHERE id = ? RETURNING id",
            vec![text(id)],
        )?
        .is_empty())
    }

    async fn record_attempt(
        &self,
        endpoint: &str,
        attempt: &AttemptRecord,
    ) -> Result<(), StoreError> {
        let ord = next(self.sql(), "attempt")?;
        run(
            self.sql(),
            "INSERT INTO ob_attempts (endpoint, ord, record) VALUES (?, ?, ?)",
            vec![text(endpoint), int(ord), text(&to_json(attempt)?)],
        )?;
        // Keep the newest MAX_ATTEMPT_RECORDS.
        run(
            self.sql(),
            "DELETE FROM ob_attempts WHERE endpoint = ?1 AND ord <= (
                SELECT ord FROM ob_attempts WHERE endpoint = ?1 ORDER BY ord DESC
                LIMIT 1 OFFSET ?2)",
            vec![text(endpoint), int(MAX_ATTEMPT_RECORDS as u64)],
        )
    }

    async fn attempts(
        &self,
        endpoint: &str,
        limit: usize,
    ) -> Result<Vec<AttemptRecord>, StoreError> {
        rows(
            self.sql(),
            "SELECT record FROM ob_attempts WHERE endpoint = ? ORDER BY ord DESC LIMIT ?",
            vec![text(endpoint), int(limit as u64)],
        )?
        .iter()
        .map(|row| from_json(row, 0))
        .collect()
    }

    async fn enqueue(&self, entries: &[OutboxEntry]) -> Result<usize, StoreError> {
        self.insert_new(entries)
    }

    async fn dead_letters(
        &self,
        endpoint: &str,
        limit: usize,
    ) -> Result<Vec<DeadLetter>, StoreError> {
        rows(
            self.sql(),
            "SELECT letter FROM ob_dead WHERE endpoint = ? ORDER BY at_ms, ord LIMIT ?",
            vec![text(endpoint), int(limit as u64)],
        )?
        .iter()
        .map(|row| from_json(row, 0))
        .collect()
    }

    async fn replay(
        &self,
        endpoint: &str,
        event_id: &str,
        now_ms: u64,
    ) -> Result<bool, StoreError> {
        let found = rows(
            self.sql(),
            "DELETE FROM ob_dead WHERE endpoint = ? AND event_id = ? RETURNING letter",
            vec![text(endpoint), text(event_id)],
        )?;
        let Some(letter) = found
            .first()
            .map(|row| from_json::<DeadLetter>(row, 0))
            .transpose()?
        else {
            return Ok(false);
        };
        self.insert_pending(&OutboxEntry {
            delivery: Delivery::new(event_id, now_ms),
            ..letter.entry
        })?;
        Ok(true)
    }
}

#[async_trait::async_trait(?Send)]
impl DeliveryBacklog for SqlHistory {
    async fn pending(
        &self,
        now_ms: u64,
        per_endpoint: usize,
    ) -> Result<Vec<OutboxEntry>, StoreError> {
        // Per endpoint: its first `per_endpoint` due entries by (due, order).
        rows(
            self.sql(),
            "SELECT entry FROM (
                SELECT entry, endpoint, next_at, ord, ROW_NUMBER() OVER (
                    PARTITION BY endpoint ORDER BY next_at, ord) AS n
                FROM ob_pending WHERE next_at <= ?)
             WHERE n <= ? ORDER BY endpoint, next_at, ord",
            vec![int(now_ms), int(per_endpoint as u64)],
        )?
        .iter()
        .map(|row| from_json(row, 0))
        .collect()
    }

    async fn reschedule(&self, endpoint: &str, delivery: &Delivery) -> Result<(), StoreError> {
        let found = rows(
            self.sql(),
            "SELECT entry FROM ob_pending WHERE endpoint = ? AND event_id = ?",
            vec![text(endpoint), text(&delivery.event_id)],
        )?;
        let mut entry: OutboxEntry = found
            .first()
            .map(|row| from_json(row, 0))
            .transpose()?
            .ok_or(StoreError::NotFound)?;
        entry.delivery = delivery.clone();
        run(
            self.sql(),
            "UPDATE ob_pending SET next_at = ?, entry = ? WHERE endpoint = ? AND event_id = ?",
            vec![
                int(delivery.next_at_ms),
                text(&to_json(&entry)?),
                text(endpoint),
                text(&delivery.event_id),
            ],
        )
    }

    async fn ack(&self, endpoint: &str, event_id: &str) -> Result<bool, StoreError> {
        Ok(self.take_pending(endpoint, event_id)?.is_some())
    }

    async fn dead_letter(
        &self,
        endpoint: &str,
        event_id: &str,
        reason: DeadReason,
        at_ms: u64,
    ) -> Result<bool, StoreError> {
        let Some(entry) = self.take_pending(endpoint, event_id)? else {
            return Ok(false);
        };
        let ord = next(self.sql(), "order")?;
        let letter = DeadLetter {
            entry,
            reason,
            at_ms,
        };
        run(
            self.sql(),
            "INSERT INTO ob_dead (endpoint, event_id, ord, at_ms, letter) VALUES (?, ?, ?, ?, ?)
             ON CONFLICT (endpoint, event_id) DO UPDATE SET ord = excluded.ord,
             at_ms = excluded.at_ms, letter = excluded.letter",
            vec![
                text(endpoint),
                text(event_id),
                int(ord),
                int(at_ms),
                text(&to_json(&letter)?),
            ],
        )?;
        Ok(true)
    }
}
