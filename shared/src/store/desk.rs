//! The support desk's tenant-wide records: [`DeskDirectory`], one small document store per
//! tenant with compare-and-set, which holds each agent's availability and assigned rooms
//! ([`DeskKind::Agent`]), blocked visitors ([`DeskKind::Block`]), what visitors said about
//! themselves ([`DeskKind::Visitor`]) and the index of conversations agents list
//! ([`DeskKind::Conversation`]). The records' meaning and rules live in [`crate::support`]; a
//! backend only stores versioned JSON documents, so the same conformance suite
//! (`roomcast-testkit`'s `desk_conformance`) covers every kind.

use std::collections::BTreeMap;
use std::sync::{Mutex, PoisonError};

use serde::{Deserialize, Serialize};

use super::StoreError;
use crate::MaybeSendSync;

/// What a record is about. Each kind is its own key space within a tenant.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeskKind {
    /// An agent (key: user id): availability, capacity, assigned rooms.
    Agent,
    /// A blocked visitor (key: user id).
    Block,
    /// A visitor's name and email (key: user id).
    Visitor,
    /// A conversation in the agents' list (key: room).
    Conversation,
}

impl DeskKind {
    /// Every kind.
    pub const ALL: [DeskKind; 4] = [Self::Agent, Self::Block, Self::Visitor, Self::Conversation];

    /// The kind's storage name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Agent => "agent",
            Self::Block => "block",
            Self::Visitor => "visitor",
            Self::Conversation => "conversation",
        }
    }

    /// The kind a storage name stands for.
    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.as_str() == name)
    }
}

/// One versioned document. Versions start at 1 and grow by one with every write.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeskRecord {
    /// The key within its tenant and kind (a user id or a room name).
    pub key: String,
    /// 1 for a new record, the stored version + 1 for a replacement.
    pub version: u64,
    /// The document, JSON.
    pub doc: String,
}

/// Most records one [`DeskDirectory::desk_records`] call returns.
pub const MAX_DESK_RECORDS: usize = 1000;

/// Tenant-wide desk records with compare-and-set. Every backend runs the same conformance
/// suite (`roomcast-testkit`'s `desk_conformance`).
#[cfg_attr(not(target_arch = "wasm32"), async_trait::async_trait)]
#[cfg_attr(target_arch = "wasm32", async_trait::async_trait(?Send))]
pub trait DeskDirectory: MaybeSendSync {
    /// The record `key` of `kind` in `tenant`, if there is one.
    async fn desk_record(
        &self,
        tenant: &str,
        kind: DeskKind,
        key: &str,
    ) -> Result<Option<DeskRecord>, StoreError>;
    /// Up to `limit` (at most [`MAX_DESK_RECORDS`]) records of `kind` in `tenant`, by key.
    async fn desk_records(
        &self,
        tenant: &str,
        kind: DeskKind,
        limit: usize,
    ) -> Result<Vec<DeskRecord>, StoreError>;
    /// Stores `record` when the stored one is at `record.version - 1` (no record counts as 0);
    /// `Conflict` otherwise. Of two writers of the same version, one wins.
    async fn put_desk_record(
        &self,
        tenant: &str,
        kind: DeskKind,
        record: &DeskRecord,
    ) -> Result<(), StoreError>;
    /// Removes the record `key` when it is at `version`; `Conflict` when it is at another
    /// version, nothing when there is none.
    async fn remove_desk_record(
        &self,
        tenant: &str,
        kind: DeskKind,
        key: &str,
        version: u64,
    ) -> Result<(), StoreError>;
}

/// The compare-and-set rule every backend applies: `next` may replace `stored_version`.
pub fn check_desk_version(
    stored_version: Option<u64>,
    next: &DeskRecord,
) -> Result<(), StoreError> {
    let stored = stored_version.unwrap_or(0);
    if next.version == stored + 1 {
        Ok(())
    } else {
        Err(StoreError::Conflict(format!(
            "desk record {} is at version {stored}, not {}",
            next.key,
            next.version.saturating_sub(1)
        )))
    }
}

/// The removal rule every backend applies.
pub fn check_desk_removal(
    stored_version: Option<u64>,
    key: &str,
    version: u64,
) -> Result<bool, StoreError> {
    match stored_version {
        None => Ok(false),
        Some(v) if v == version => Ok(true),
        Some(v) => Err(StoreError::Conflict(format!(
            "desk record {key} is at version {v}, not {version}"
        ))),
    }
}

/// Desk records in memory: the reference backend.
#[derive(Default)]
pub struct MemoryDesk {
    records: Mutex<BTreeMap<(String, DeskKind, String), DeskRecord>>,
}

impl MemoryDesk {
    /// An empty directory.
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<(String, DeskKind, String), DeskRecord>> {
        // A panic while holding the lock leaves a plain map behind; it stays usable.
        self.records.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg_attr(not(target_arch = "wasm32"), async_trait::async_trait)]
#[cfg_attr(target_arch = "wasm32", async_trait::async_trait(?Send))]
impl DeskDirectory for MemoryDesk {
    async fn desk_record(
        &self,
        tenant: &str,
        kind: DeskKind,
        key: &str,
    ) -> Result<Option<DeskRecord>, StoreError> {
        Ok(self
            .lock()
            .get(&(tenant.to_owned(), kind, key.to_owned()))
            .cloned())
    }

    async fn desk_records(
        &self,
        tenant: &str,
        kind: DeskKind,
        limit: usize,
    ) -> Result<Vec<DeskRecord>, StoreError> {
        let from = (tenant.to_owned(), kind, String::new());
        Ok(self
            .lock()
            .range(from..)
            .take_while(|((t, k, _), _)| t == tenant && *k == kind)
            .take(limit.min(MAX_DESK_RECORDS))
            .map(|(_, r)| r.clone())
            .collect())
    }

    async fn put_desk_record(
        &self,
        tenant: &str,
        kind: DeskKind,
        record: &DeskRecord,
    ) -> Result<(), StoreError> {
        let mut records = self.lock();
        let key = (tenant.to_owned(), kind, record.key.clone());
        check_desk_version(records.get(&key).map(|r| r.version), record)?;
        records.insert(key, record.clone());
        Ok(())
    }

    async fn remove_desk_record(
        &self,
        tenant: &str,
        kind: DeskKind,
        key: &str,
        version: u64,
    ) -> Result<(), StoreError> {
        let mut records = self.lock();
        let k = (tenant.to_owned(), kind, key.to_owned());
        if check_desk_removal(records.get(&k).map(|r| r.version), key, version)? {
            records.remove(&k);
        }
        Ok(())
    }
}
