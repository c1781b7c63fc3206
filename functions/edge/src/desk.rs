//! The support desk's tenant-wide records on the edge (the core's [`DeskDirectory`]). A room is
//! its own object, and the records (agents, blocks, visitors, the conversation list) are the
//! whole tenant's, so they live in one object per tenant: the tenant's `TenantEvents`, in the
//! `desk_records` table of its SQLite ([`SqlDesk`]). Room objects reach them with [`EdgeDesk`],
//! one `POST /__tenant/desk` per call ([`serve_desk`]).
//!
//! The compare-and-set is the core's `check_desk_version` / `check_desk_removal` between a read
//! and a write with no `await` in between: the object runs one event at a time, so no other
//! writer interleaves (as for the quota counters in `uploads.rs`).

use roomcast_core::store::desk::{MAX_DESK_RECORDS, check_desk_removal, check_desk_version};
use roomcast_core::store::{DeskDirectory, DeskKind, DeskRecord, StoreError};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use worker::{Env, Method, Request, Response, SqlStorage};

use crate::events::{ask_tenant, tenant_object};
use crate::history::{Row, get_string, get_u64, int, rows, run, text};

const SCHEMA: &str = "CREATE TABLE IF NOT EXISTS desk_records (
    tenant TEXT NOT NULL, kind TEXT NOT NULL, key TEXT NOT NULL, version INTEGER NOT NULL,
    doc TEXT NOT NULL,
    PRIMARY KEY (tenant, kind, key)) WITHOUT ROWID";

/// The URL of a desk call; only the path matters (a stub's fetch goes to its object).
const DESK_URL: &str = "https://tenant-events.internal/__tenant/desk";

fn record_from(row: &Row) -> Result<DeskRecord, StoreError> {
    Ok(DeskRecord {
        key: get_string(row, 0)?,
        version: get_u64(row, 1)?,
        doc: get_string(row, 2)?,
    })
}

/// The desk records in the tenant object's SQLite. No method awaits anything, so each runs
/// whole within one event of the object.
pub struct SqlDesk {
    sql: SqlStorage,
}

impl SqlDesk {
    /// Opens the store, creating its table when missing.
    pub fn open(sql: SqlStorage) -> Result<Self, StoreError> {
        run(&sql, SCHEMA, Vec::new())?;
        Ok(Self { sql })
    }

    fn version(&self, tenant: &str, kind: DeskKind, key: &str) -> Result<Option<u64>, StoreError> {
        rows(
            &self.sql,
            "SELECT version FROM desk_records WHERE tenant = ? AND kind = ? AND key = ?",
            vec![text(tenant), text(kind.as_str()), text(key)],
        )?
        .first()
        .map(|row| get_u64(row, 0))
        .transpose()
    }
}

#[async_trait::async_trait(?Send)]
impl DeskDirectory for SqlDesk {
    async fn desk_record(
        &self,
        tenant: &str,
        kind: DeskKind,
        key: &str,
    ) -> Result<Option<DeskRecord>, StoreError> {
        rows(
            &self.sql,
            "SELECT key, version, doc FROM desk_records WHERE tenant = ? AND kind = ? AND key = ?",
            vec![text(tenant), text(kind.as_str()), text(key)],
        )?
        .first()
        .map(record_from)
        .transpose()
    }

    async fn desk_records(
        &self,
        tenant: &str,
        kind: DeskKind,
        limit: usize,
    ) -> Result<Vec<DeskRecord>, StoreError> {
        // SQLite's default collation compares bytes: the order of Rust's `str`, as in memory.
        rows(
            &self.sql,
            "SELECT key, version, doc FROM desk_records WHERE tenant = ? AND kind = ?
             ORDER BY key LIMIT ?",
            vec![
                text(tenant),
                text(kind.as_str()),
                int(limit.min(MAX_DESK_RECORDS) as u64),
            ],
        )?
        .iter()
        .map(record_from)
        .collect()
    }

    async fn put_desk_record(
        &self,
        tenant: &str,
        kind: DeskKind,
        record: &DeskRecord,
    ) -> Result<(), StoreError> {
        check_desk_version(self.version(tenant, kind, &record.key)?, record)?;
        run(
            &self.sql,
            "INSERT INTO desk_records (tenant, kind, key, version, doc) VALUES (?, ?, ?, ?, ?)
             ON CONFLICT (tenant, kind, key)
             DO UPDATE SET version = excluded.version, doc = excluded.doc",
            vec![
                text(tenant),
                text(kind.as_str()),
                text(&record.key),
                int(record.version),
                text(&record.doc),
            ],
        )
    }

    async fn remove_desk_record(
        &self,
        tenant: &str,
        kind: DeskKind,
        key: &str,
        version: u64,
    ) -> Result<(), StoreError> {
        if !check_desk_removal(self.version(tenant, kind, key)?, key, version)? {
            return Ok(());
        }
        run(
            &self.sql,
            "DELETE FROM desk_records WHERE tenant = ? AND kind = ? AND key = ?",
            vec![text(tenant), text(kind.as_str()), text(key)],
        )
    }
}

/// One [`DeskDirectory`] call, as a room object sends it to its tenant object.
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
enum DeskCall {
    /// Answered with an `Option<DeskRecord>`.
    Get {
        tenant: String,
        kind: DeskKind,
        key: String,
    },
    /// Answered with a `Vec<DeskRecord>`.
    List {
        tenant: String,
        kind: DeskKind,
        limit: usize,
    },
    /// Answered with [`Written`].
    Put {
        tenant: String,
        kind: DeskKind,
        record: DeskRecord,
    },
    /// Answered with [`Written`].
    Remove {
        tenant: String,
        kind: DeskKind,
        key: String,
        version: u64,
    },
}

/// The answer to a put or a removal: a conflict is an answer (200), so the caller can tell it
/// from a failed request.
#[derive(Debug, Serialize, Deserialize)]
struct Written {
    /// Why the compare-and-set refused the write, if it did.
    conflict: Option<String>,
}

impl Written {
    fn of(outcome: Result<(), StoreError>) -> Result<Self, StoreError> {
        match outcome {
            Ok(()) => Ok(Self { conflict: None }),
            Err(StoreError::Conflict(why)) => Ok(Self {
                conflict: Some(why),
            }),
            Err(e) => Err(e),
        }
    }

    fn outcome(self) -> Result<(), StoreError> {
        self.conflict
            .map_or(Ok(()), |why| Err(StoreError::Conflict(why)))
    }
}

/// `POST /__tenant/desk` in the tenant object, from its room objects: runs the call on `desk`;
/// 200 with its answer, 503 when the storage failed.
pub async fn serve_desk(desk: &SqlDesk, mut req: Request) -> worker::Result<Response> {
    if req.method() != Method::Post {
        return Response::error("use POST", 405);
    }
    let call: DeskCall = match req.json().await {
        Ok(call) => call,
        Err(e) => return Response::error(format!("not a desk call: {e}"), 400),
    };
    // From here on nothing awaits the runtime (`SqlDesk` never does): the call is atomic.
    match call {
        DeskCall::Get { tenant, kind, key } => answer(desk.desk_record(&tenant, kind, &key).await),
        DeskCall::List {
            tenant,
            kind,
            limit,
        } => answer(desk.desk_records(&tenant, kind, limit).await),
        DeskCall::Put {
            tenant,
            kind,
            record,
        } => answer(Written::of(
            desk.put_desk_record(&tenant, kind, &record).await,
        )),
        DeskCall::Remove {
            tenant,
            kind,
            key,
            version,
        } => answer(Written::of(
            desk.remove_desk_record(&tenant, kind, &key, version).await,
        )),
    }
}

fn answer(outcome: Result<impl Serialize, StoreError>) -> worker::Result<Response> {
    match outcome {
        Ok(answer) => Response::from_json(&answer),
        Err(e) => Response::error(e.to_string(), 503),
    }
}

/// The desk records of any tenant, in that tenant's `TenantEvents` object: what room objects
/// use.
pub struct EdgeDesk {
    /// For the stubs of tenant objects.
    env: Env,
}

impl EdgeDesk {
    /// The records through the `EVENTS` namespace of `env`.
    pub fn new(env: Env) -> Self {
        Self { env }
    }

    /// `call` in `tenant`'s object; its answer. A failed request (no answer, or the object's
    /// storage failed) is `Unavailable`: retrying is safe, as a write that did happen shows as a
    /// version conflict to its retry.
    async fn ask<T: DeserializeOwned>(
        &self,
        tenant: &str,
        call: &DeskCall,
    ) -> Result<T, StoreError> {
        let body = serde_json::to_string(call)
            .map_err(|e| StoreError::Other(format!("desk call: {e}")))?;
        let unavailable =
            |e: worker::Error| StoreError::Unavailable(format!("the tenant's desk: {e}"));
        let stub = tenant_object(&self.env, tenant).map_err(unavailable)?;
        ask_tenant(&stub, DESK_URL, Some(body))
            .await
            .map_err(unavailable)
    }
}

#[async_trait::async_trait(?Send)]
impl DeskDirectory for EdgeDesk {
    async fn desk_record(
        &self,
        tenant: &str,
        kind: DeskKind,
        key: &str,
    ) -> Result<Option<DeskRecord>, StoreError> {
        let call = DeskCall::Get {
            tenant: tenant.to_owned(),
            kind,
            key: key.to_owned(),
        };
        self.ask(tenant, &call).await
    }

    async fn desk_records(
        &self,
        tenant: &str,
        kind: DeskKind,
        limit: usize,
    ) -> Result<Vec<DeskRecord>, StoreError> {
        let call = DeskCall::List {
            tenant: tenant.to_owned(),
            kind,
            limit,
        };
        self.ask(tenant, &call).await
    }

    async fn put_desk_record(
        &self,
        tenant: &str,
        kind: DeskKind,
        record: &DeskRecord,
    ) -> Result<(), StoreError> {
        let call = DeskCall::Put {
            tenant: tenant.to_owned(),
            kind,
            record: record.clone(),
        };
        self.ask::<Written>(tenant, &call).await?.outcome()
    }

    async fn remove_desk_record(
        &self,
        tenant: &str,
        kind: DeskKind,
        key: &str,
        version: u64,
    ) -> Result<(), StoreError> {
        let call = DeskCall::Remove {
            tenant: tenant.to_owned(),
            kind,
            key: key.to_owned(),
            version,
        };
        self.ask::<Written>(tenant, &call).await?.outcome()
    }
}
