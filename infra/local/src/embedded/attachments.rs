//! The embedded store's [`AttachmentIndex`]: upload slots, their claims and the per-day upload
//! quotas in the same redb file as the history, written by the same writer thread, so a claim
//! is a compare-and-set inside one write transaction and both quota counters move together.
//!
//! Tables: slots `(room, id) → Slot` (JSON), the unclaimed ones by when they were granted
//! `(granted ms, room, id) → ()` (the sweep reads the oldest first without a scan), and usage
//! `(day, "u:{tenant}/{user}" | "t:{tenant}") → (count, bytes)`.

use redb::{ReadableTable, TableDefinition};
use roomcast_core::attachments::{QuotaExceeded, Slot, UploadQuota, Usage, day_of};
use roomcast_core::store::{AttachmentIndex, RoomRef, StoreError};

use super::{Applied, EmbeddedHistory, WriteTables, decode, encode, unavailable};

pub(super) const SLOTS: TableDefinition<'_, (&str, &str), &[u8]> =
    TableDefinition::new("attachment_slots");
pub(super) const UNCLAIMED: TableDefinition<'_, (u64, &str, &str), ()> =
    TableDefinition::new("attachment_unclaimed");
pub(super) const USAGE: TableDefinition<'_, (u64, &str), (u64, u64)> =
    TableDefinition::new("upload_usage");

impl WriteTables<'_> {
    fn usage(&self, day: u64, who: &str) -> Result<Usage, redb::Error> {
        Ok(self
            .upload_usage
            .get((day, who))?
            .map(|v| {
                let (count, bytes) = v.value();
                Usage { count, bytes }
            })
            .unwrap_or_default())
    }

    fn charge_upload(
        &mut self,
        tenant: &str,
        user: &str,
        bytes: u64,
        quota: &UploadQuota,
        now_ms: u64,
    ) -> Applied<Result<(), QuotaExceeded>> {
        let day = day_of(now_ms);
        let (user_key, tenant_key) = (format!("u:{tenant}/{user}"), format!("t:{tenant}"));
        let charged = quota.charge(
            self.usage(day, &user_key)?,
            self.usage(day, &tenant_key)?,
            bytes,
        );
        let (user_usage, tenant_usage) = match charged {
            Ok(usages) => usages,
            Err(exceeded) => return Ok(Ok(Err(exceeded))),
        };
        // Earlier days' counters are never read again.
        let stale: Vec<(u64, String)> = self
            .upload_usage
            .range(..(day, ""))?
            .map(|entry| entry.map(|(k, _)| (k.value().0, k.value().1.to_owned())))
            .collect::<Result<_, _>>()?;
        for (d, who) in &stale {
            self.upload_usage.remove((*d, who.as_str()))?;
        }
        self.upload_usage.insert(
            (day, user_key.as_str()),
            (user_usage.count, user_usage.bytes),
        )?;
        self.upload_usage.insert(
            (day, tenant_key.as_str()),
            (tenant_usage.count, tenant_usage.bytes),
        )?;
        Ok(Ok(Ok(())))
    }

    fn stored_slot(&self, room: &str, id: &str) -> Applied<Option<Slot>> {
        Ok(self
            .slots
            .get((room, id))?
            .map(|v| decode(v.value()))
            .transpose())
    }

    /// Writes `slot` over `previous` (its stored version, if any), keeping the index of
    /// unclaimed slots in step.
    fn write_slot(&mut self, previous: Option<&Slot>, slot: &Slot) -> Applied<()> {
        let room = slot.room_ref().key();
        let bytes = tri!(encode(slot));
        if let Some(previous) = previous.filter(|p| p.claimed_by.is_none()) {
            self.unclaimed
                .remove((previous.created_at_ms, room.as_str(), previous.id.as_str()))?;
        }
        self.slots
            .insert((room.as_str(), slot.id.as_str()), bytes.as_slice())?;
        if slot.claimed_by.is_none() {
            self.unclaimed
                .insert((slot.created_at_ms, room.as_str(), slot.id.as_str()), ())?;
        }
        Ok(Ok(()))
    }

    fn put_slot(&mut self, slot: &Slot) -> Applied<()> {
        let previous = tri!(self.stored_slot(&slot.room_ref().key(), &slot.id)?);
        self.write_slot(previous.as_ref(), slot)
    }

    fn claim_slot(&mut self, room: &RoomRef, id: &str, claimant: &str) -> Applied<Slot> {
        let Some(stored) = tri!(self.stored_slot(&room.key(), id)?) else {
            return Ok(Err(StoreError::NotFound));
        };
        match stored.claimed_by.as_deref() {
            Some(holder) if holder == claimant => Ok(Ok(stored)),
            Some(_) => Ok(Err(StoreError::Conflict(format!(
                "{id} is attached to another message"
            )))),
            None => {
                let claimed = Slot {
                    claimed_by: Some(claimant.to_owned()),
                    ..stored.clone()
                };
                tri!(self.write_slot(Some(&stored), &claimed)?);
                Ok(Ok(claimed))
            }
        }
    }

    fn release_slot(&mut self, room: &RoomRef, id: &str, claimant: &str) -> Applied<()> {
        match tri!(self.stored_slot(&room.key(), id)?) {
            Some(stored) if stored.claimed_by.as_deref() == Some(claimant) => {
                let released = Slot {
                    claimed_by: None,
                    ..stored.clone()
                };
                self.write_slot(Some(&stored), &released)
            }
            _ => Ok(Ok(())),
        }
    }

    fn remove_slot(&mut self, room: &RoomRef, id: &str) -> Applied<()> {
        let key = room.key();
        if let Some(stored) = tri!(self.stored_slot(&key, id)?) {
            self.slots.remove((key.as_str(), id))?;
            if stored.claimed_by.is_none() {
                self.unclaimed
                    .remove((stored.created_at_ms, key.as_str(), id))?;
            }
        }
        Ok(Ok(()))
    }
}

#[async_trait::async_trait]
impl AttachmentIndex for EmbeddedHistory {
    async fn charge_upload(
        &self,
        tenant: &str,
        user: &str,
        bytes: u64,
        quota: &UploadQuota,
        now_ms: u64,
    ) -> Result<Result<(), QuotaExceeded>, StoreError> {
        let (tenant, user, quota) = (tenant.to_owned(), user.to_owned(), *quota);
        self.run(move |t| t.charge_upload(&tenant, &user, bytes, &quota, now_ms))
            .await
    }

    async fn put_slot(&self, slot: &Slot) -> Result<(), StoreError> {
        let slot = slot.clone();
        self.run(move |t| t.put_slot(&slot)).await
    }

    async fn slot(&self, room: &RoomRef, id: &str) -> Result<Option<Slot>, StoreError> {
        let (key, id) = (room.key(), id.to_owned());
        self.read(move |txn| {
            let table = txn.open_table(SLOTS).map_err(unavailable)?;
            let stored = table
                .get((key.as_str(), id.as_str()))
                .map_err(unavailable)?;
            stored.map(|v| decode(v.value())).transpose()
        })
        .await
    }

    async fn claim_slot(
        &self,
        room: &RoomRef,
        id: &str,
        claimant: &str,
    ) -> Result<Slot, StoreError> {
        let (room, id, claimant) = (room.clone(), id.to_owned(), claimant.to_owned());
        self.run(move |t| t.claim_slot(&room, &id, &claimant)).await
    }

    async fn release_slot(
        &self,
        room: &RoomRef,
        id: &str,
        claimant: &str,
    ) -> Result<(), StoreError> {
        let (room, id, claimant) = (room.clone(), id.to_owned(), claimant.to_owned());
        self.run(move |t| t.release_slot(&room, &id, &claimant))
            .await
    }

    async fn remove_slot(&self, room: &RoomRef, id: &str) -> Result<(), StoreError> {
        let (room, id) = (room.clone(), id.to_owned());
        self.run(move |t| t.remove_slot(&room, &id)).await
    }

    async fn abandoned_slots(
        &self,
        granted_before_ms: u64,
        limit: usize,
    ) -> Result<Vec<Slot>, StoreError> {
        self.read(move |txn| {
            let unclaimed = txn.open_table(UNCLAIMED).map_err(unavailable)?;
            let slots = txn.open_table(SLOTS).map_err(unavailable)?;
            let mut out = Vec::new();
            // Keys start with the grant time: the oldest come first.
            for entry in unclaimed
                .range(..(granted_before_ms, "", ""))
                .map_err(unavailable)?
                .take(limit)
            {
                let (k, _) = entry.map_err(unavailable)?;
                let (_, room, id) = k.value();
                if let Some(v) = slots.get((room, id)).map_err(unavailable)? {
                    out.push(decode(v.value())?);
                }
            }
            Ok(out)
        })
        .await
    }
}
