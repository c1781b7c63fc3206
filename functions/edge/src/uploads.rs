//! Upload slots and quotas on the edge: [`SqlSlots`] is the core's [`AttachmentIndex`] in a
//! `ChatRoom`'s SQLite (the slots of its room and the claim of a message on them). Quotas count
//! per user and per tenant per UTC day, which one room cannot: [`SqlSlots::charge_upload`] asks
//! the tenant's `TenantEvents` object (`POST /__tenant/quota`), which applies the core's
//! [`UploadQuota::charge`] to its own counters in one statement ([`serve_charge`]). The bytes
//! are R2's ([`crate::blobs`]).
//!
//! Uploads never attached are swept by the room's alarm (`room.rs`, the core's
//! `sweep_abandoned_uploads`): R2's lifecycle rules expire objects by age and prefix only, and
//! cannot tell an upload a message carries from an abandoned one.
//!
//! As in `history.rs`, no SQLite call here awaits anything, so a read followed by a write cannot
//! interleave with another event of the object; the claim is one conditional `UPDATE` besides.

use roomcast_core::attachments::{
    ABANDONED_AFTER_MS, QuotaExceeded, Slot, UploadQuota, Usage, day_of,
};
use roomcast_core::store::{AttachmentIndex, RoomRef, StoreError};
use serde::{Deserialize, Serialize};
use worker::{Env, Method, Request, Response, SqlStorage, SqlStorageValue};

use crate::events::{ask_tenant, tenant_object};
use crate::history::{
    Rooms, Row, failed, get_opt_string, get_opt_u64, get_string, get_u64, int, rows, run, text,
};

const SCHEMA: &[&str] = &[
    "CREATE TABLE IF NOT EXISTS att_slots (
        rk TEXT NOT NULL, id TEXT NOT NULL, tenant TEXT NOT NULL, room TEXT NOT NULL,
        uploader TEXT NOT NULL, name TEXT NOT NULL, size INTEGER NOT NULL, type TEXT NOT NULL,
        created_at INTEGER NOT NULL, claimed_by TEXT,
        PRIMARY KEY (rk, id)) WITHOUT ROWID",
    // The sweep's order: unclaimed slots, oldest first.
    "CREATE INDEX IF NOT EXISTS att_slots_unclaimed ON att_slots (created_at)
        WHERE claimed_by IS NULL",
];

const SLOT_COLUMNS: &str = "id, tenant, room, uploader, name, size, type, created_at, claimed_by";

/// The tenant object's counters: one row per (UTC day, `u:{tenant}/{user}` or `t:{tenant}`).
const QUOTA_SCHEMA: &str = "CREATE TABLE IF NOT EXISTS quota_usage (
    day INTEGER NOT NULL, who TEXT NOT NULL, count INTEGER NOT NULL, bytes INTEGER NOT NULL,
    PRIMARY KEY (day, who)) WITHOUT ROWID";

/// The URL of a quota charge; only the path matters (a stub's fetch goes to its object).
const QUOTA_URL: &str = "https://tenant-events.internal/__tenant/quota";

fn slot_from(row: &Row) -> Result<Slot, StoreError> {
    Ok(Slot {
        id: get_string(row, 0)?,
        tenant: get_string(row, 1)?,
        room: get_string(row, 2)?,
        uploader: get_string(row, 3)?,
        name: get_string(row, 4)?,
        size: get_u64(row, 5)?,
        content_type: get_string(row, 6)?,
        created_at_ms: get_u64(row, 7)?,
        claimed_by: get_opt_string(row, 8)?,
    })
}

/// Upload slots in a Durable Object's SQLite; quotas in the tenant's object.
pub struct SqlSlots {
    sql: SqlStorage,
    rooms: Rooms,
    /// For the stubs of tenant objects.
    env: Env,
}

impl SqlSlots {
    /// Opens the store, creating its table when missing.
    pub fn open(sql: SqlStorage, rooms: Rooms, env: Env) -> Result<Self, StoreError> {
        for statement in SCHEMA {
            run(&sql, statement, Vec::new())?;
        }
        Ok(Self { sql, rooms, env })
    }

    /// When the oldest unclaimed slot here is abandoned: when the sweep has work next.
    pub fn next_abandoned_at(&self) -> Result<Option<u64>, StoreError> {
        let rows = rows(
            &self.sql,
            "SELECT MIN(created_at) FROM att_slots WHERE claimed_by IS NULL",
            Vec::new(),
        )?;
        let oldest = rows
            .first()
            .map(|row| get_opt_u64(row, 0))
            .transpose()?
            .flatten();
        Ok(oldest.map(|t| t.saturating_add(ABANDONED_AFTER_MS)))
    }

    fn find(&self, rk: SqlStorageValue, id: &str) -> Result<Option<Slot>, StoreError> {
        rows(
            &self.sql,
            &format!("SELECT {SLOT_COLUMNS} FROM att_slots WHERE rk = ? AND id = ?"),
            vec![rk, text(id)],
        )?
        .first()
        .map(slot_from)
        .transpose()
    }
}

#[async_trait::async_trait(?Send)]
impl AttachmentIndex for SqlSlots {
    async fn charge_upload(
        &self,
        tenant: &str,
        user: &str,
        bytes: u64,
        quota: &UploadQuota,
        now_ms: u64,
    ) -> Result<Result<(), QuotaExceeded>, StoreError> {
        let charge = Charge {
            tenant: tenant.to_owned(),
            user: user.to_owned(),
            bytes,
            now_ms,
            user_count: quota.user_count,
            user_bytes: quota.user_bytes,
            tenant_count: quota.tenant_count,
            tenant_bytes: quota.tenant_bytes,
        };
        let body = serde_json::to_string(&charge)
            .map_err(|e| StoreError::Other(format!("quota charge: {e}")))?;
        // Not `Unavailable`: the tenant object may have counted it before the answer was lost.
        let unanswered = |e: worker::Error| StoreError::Other(format!("the tenant's quota: {e}"));
        let stub = tenant_object(&self.env, tenant).map_err(unanswered)?;
        let charged: Charged = ask_tenant(&stub, QUOTA_URL, Some(body))
            .await
            .map_err(unanswered)?;
        Ok(match charged.exceeded {
            None => Ok(()),
            Some(Refused::User) => Err(QuotaExceeded::User),
            Some(Refused::Tenant) => Err(QuotaExceeded::Tenant),
        })
    }

    async fn put_slot(&self, slot: &Slot) -> Result<(), StoreError> {
        let rk = self.rooms.key(&slot.room_ref())?;
        run(
            &self.sql,
            &format!(
                "INSERT INTO att_slots (rk, {SLOT_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
                 ON CONFLICT (rk, id) DO NOTHING"
            ),
            vec![
                rk,
                text(&slot.id),
                text(&slot.tenant),
                text(&slot.room),
                text(&slot.uploader),
                text(&slot.name),
                int(slot.size),
                text(&slot.content_type),
                int(slot.created_at_ms),
                slot.claimed_by
                    .as_deref()
                    .map_or(SqlStorageValue::Null, text),
            ],
        )
    }

    async fn slot(&self, room: &RoomRef, id: &str) -> Result<Option<Slot>, StoreError> {
        self.find(self.rooms.key(room)?, id)
    }

    async fn claim_slot(
        &self,
        room: &RoomRef,
        id: &str,
        claimant: &str,
    ) -> Result<Slot, StoreError> {
        let rk = self.rooms.key(room)?;
        // Claim-once: only an unclaimed slot, or one this claimant holds (a resent message).
        let claimed = rows(
            &self.sql,
            &format!(
                "UPDATE att_slots SET claimed_by = ?3
                 WHERE rk = ?1 AND id = ?2 AND (claimed_by IS NULL OR claimed_by = ?3)
                 RETURNING {SLOT_COLUMNS}"
            ),
            vec![rk.clone(), text(id), text(claimant)],
        )?;
        if let Some(row) = claimed.first() {
            return slot_from(row);
        }
        match self.find(rk, id)? {
            Some(_) => Err(StoreError::Conflict(format!(
                "{id} is attached to another message"
            ))),
            None => Err(StoreError::NotFound),
        }
    }

    async fn release_slot(
        &self,
        room: &RoomRef,
        id: &str,
        claimant: &str,
    ) -> Result<(), StoreError> {
        run(
            &self.sql,
            "UPDATE att_slots SET claimed_by = NULL WHERE rk = ? AND id = ? AND claimed_by = ?",
            vec![self.rooms.key(room)?, text(id), text(claimant)],
        )
    }

    async fn remove_slot(&self, room: &RoomRef, id: &str) -> Result<(), StoreError> {
        run(
            &self.sql,
            "DELETE FROM att_slots WHERE rk = ? AND id = ?",
            vec![self.rooms.key(room)?, text(id)],
        )
    }

    async fn abandoned_slots(
        &self,
        granted_before_ms: u64,
        limit: usize,
    ) -> Result<Vec<Slot>, StoreError> {
        rows(
            &self.sql,
            &format!(
                "SELECT {SLOT_COLUMNS} FROM att_slots
                 WHERE claimed_by IS NULL AND created_at < ? ORDER BY created_at, id LIMIT ?"
            ),
            vec![int(granted_before_ms), int(limit as u64)],
        )?
        .iter()
        .map(slot_from)
        .collect()
    }
}

/// A quota charge, as a room object sends it to its tenant object.
#[derive(Debug, Serialize, Deserialize)]
struct Charge {
    tenant: String,
    user: String,
    bytes: u64,
    now_ms: u64,
    user_count: u64,
    user_bytes: u64,
    tenant_count: u64,
    tenant_bytes: u64,
}

/// The tenant object's answer.
#[derive(Debug, Serialize, Deserialize)]
struct Charged {
    /// The quota that refused the slot, if one did.
    exceeded: Option<Refused>,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
enum Refused {
    User,
    Tenant,
}

/// Creates the tenant object's quota counters.
pub fn create_quota_table(sql: &SqlStorage) -> Result<(), StoreError> {
    sql.exec(QUOTA_SCHEMA, None).map_err(failed).map(drop)
}

/// One day's usage of `who`.
fn usage(sql: &SqlStorage, day: u64, who: &str) -> Result<Usage, StoreError> {
    let rows = rows(
        sql,
        "SELECT count, bytes FROM quota_usage WHERE day = ? AND who = ?",
        vec![int(day), text(who)],
    )?;
    rows.first().map_or(Ok(Usage::default()), |row| {
        Ok(Usage {
            count: get_u64(row, 0)?,
            bytes: get_u64(row, 1)?,
        })
    })
}

/// The core's rule over the tenant object's counters: both read, and both written in one
/// statement (or neither), with no `await` in between, so no other charge interleaves.
fn charge(sql: &SqlStorage, c: &Charge) -> Result<Result<(), QuotaExceeded>, StoreError> {
    let quota = UploadQuota {
        user_count: c.user_count,
        user_bytes: c.user_bytes,
        tenant_count: c.tenant_count,
        tenant_bytes: c.tenant_bytes,
    };
    let day = day_of(c.now_ms);
    let user_key = format!("u:{}/{}", c.tenant, c.user);
    let tenant_key = format!("t:{}", c.tenant);
    let used = (usage(sql, day, &user_key)?, usage(sql, day, &tenant_key)?);
    let (user, tenant) = match quota.charge(used.0, used.1, c.bytes) {
        Ok(usages) => usages,
        Err(exceeded) => return Ok(Err(exceeded)),
    };
    run(
        sql,
        "INSERT INTO quota_usage (day, who, count, bytes) VALUES (?1, ?2, ?3, ?4), (?1, ?5, ?6, ?7)
         ON CONFLICT (day, who) DO UPDATE SET count = excluded.count, bytes = excluded.bytes",
        vec![
            int(day),
            text(&user_key),
            int(user.count),
            int(user.bytes),
            text(&tenant_key),
            int(tenant.count),
            int(tenant.bytes),
        ],
    )?;
    // Earlier days are never read again.
    run(sql, "DELETE FROM quota_usage WHERE day < ?", vec![int(day)])?;
    Ok(Ok(()))
}

/// `POST /__tenant/quota` in the tenant object, from its room objects: charges the slot, 200
/// with which quota refused it (if one did).
pub async fn serve_charge(sql: &SqlStorage, mut req: Request) -> worker::Result<Response> {
    if req.method() != Method::Post {
        return Response::error("use POST", 405);
    }
    let request: Charge = match req.json().await {
        Ok(request) => request,
        Err(e) => return Response::error(format!("not a quota charge: {e}"), 400),
    };
    match charge(sql, &request) {
        Ok(outcome) => Response::from_json(&Charged {
            exceeded: outcome.err().map(|e| match e {
                QuotaExceeded::User => Refused::User,
                QuotaExceeded::Tenant => Refused::Tenant,
            }),
        }),
        Err(e) => Response::error(e.to_string(), 503),
    }
}
