//! The embedded store's [`DeskDirectory`]: the support desk's versioned records in the same
//! redb file as the history, written by the same writer thread, so a compare-and-set is a read
//! and a write inside one write transaction: of two writers of one version, the second sees
//! the first's record and gets `Conflict`.
//!
//! Table: records `(tenant, kind, key) → (version, doc)`. Tuple keys compare element by
//! element, so one tenant's records of one kind are one contiguous run, ordered by key, and a
//! listing is a range scan.

use redb::{ReadableTable, TableDefinition};
use roomcast_core::store::desk::{MAX_DESK_RECORDS, check_desk_removal, check_desk_version};
use roomcast_core::store::{DeskDirectory, DeskKind, DeskRecord, StoreError};

use super::{Applied, EmbeddedHistory, WriteTables, unavailable};

pub(super) const RECORDS: TableDefinition<'_, (&str, &str, &str), (u64, &str)> =
    TableDefinition::new("desk_records");

/// A stored `(version, doc)` as the record `key`.
fn record(key: &str, (version, doc): (u64, &str)) -> DeskRecord {
    DeskRecord {
        key: key.to_owned(),
        version,
        doc: doc.to_owned(),
    }
}

impl WriteTables<'_> {
    fn desk_version(
        &self,
        tenant: &str,
        kind: DeskKind,
        key: &str,
    ) -> Result<Option<u64>, redb::Error> {
        Ok(self
            .desk
            .get((tenant, kind.as_str(), key))?
            .map(|v| v.value().0))
    }

    fn put_desk_record(&mut self, tenant: &str, kind: DeskKind, next: &DeskRecord) -> Applied<()> {
        let stored = self.desk_version(tenant, kind, &next.key)?;
        tri!(check_desk_version(stored, next));
        self.desk.insert(
            (tenant, kind.as_str(), next.key.as_str()),
            (next.version, next.doc.as_str()),
        )?;
        Ok(Ok(()))
    }

    fn remove_desk_record(
        &mut self,
        tenant: &str,
        kind: DeskKind,
        key: &str,
        version: u64,
    ) -> Applied<()> {
        let stored = self.desk_version(tenant, kind, key)?;
        if tri!(check_desk_removal(stored, key, version)) {
            self.desk.remove((tenant, kind.as_str(), key))?;
        }
        Ok(Ok(()))
    }
}

#[async_trait::async_trait]
impl DeskDirectory for EmbeddedHistory {
    async fn desk_record(
        &self,
        tenant: &str,
        kind: DeskKind,
        key: &str,
    ) -> Result<Option<DeskRecord>, StoreError> {
        let (tenant, key) = (tenant.to_owned(), key.to_owned());
        self.read(move |txn| {
            let table = txn.open_table(RECORDS).map_err(unavailable)?;
            let stored = table
                .get((tenant.as_str(), kind.as_str(), key.as_str()))
                .map_err(unavailable)?;
            Ok(stored.map(|v| record(&key, v.value())))
        })
        .await
    }

    async fn desk_records(
        &self,
        tenant: &str,
        kind: DeskKind,
        limit: usize,
    ) -> Result<Vec<DeskRecord>, StoreError> {
        let tenant = tenant.to_owned();
        self.read(move |txn| {
            let table = txn.open_table(RECORDS).map_err(unavailable)?;
            let mut records = Vec::new();
            // `""` sorts before every key: the run starts at the tenant's first record of `kind`.
            for entry in table
                .range((tenant.as_str(), kind.as_str(), "")..)
                .map_err(unavailable)?
                .take(limit.min(MAX_DESK_RECORDS))
            {
                let (k, v) = entry.map_err(unavailable)?;
                let (t, k_kind, key) = k.value();
                if t != tenant || k_kind != kind.as_str() {
                    break;
                }
                records.push(record(key, v.value()));
            }
            Ok(records)
        })
        .await
    }

    async fn put_desk_record(
        &self,
        tenant: &str,
        kind: DeskKind,
        record: &DeskRecord,
    ) -> Result<(), StoreError> {
        let (tenant, record) = (tenant.to_owned(), record.clone());
        self.run(move |t| t.put_desk_record(&tenant, kind, &record))
            .await
    }

    async fn remove_desk_record(
        &self,
        tenant: &str,
        kind: DeskKind,
        key: &str,
        version: u64,
    ) -> Result<(), StoreError> {
        let (tenant, key) = (tenant.to_owned(), key.to_owned());
        self.run(move |t| t.remove_desk_record(&tenant, kind, &key, version))
            .await
    }
}
