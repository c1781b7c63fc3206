//! The [`AttachmentIndex`]: upload slots in their room's partition (`UP#{id}`), the claim of a
//! message on them (one conditional UpdateItem), and the per-day upload quotas (a user's and a
//! tenant's counter, both or neither in one TransactWriteItems).
//!
//! An unclaimed slot carries a `ttl` a day after its grant, so DynamoDB expires abandoned slots
//! itself, as the bucket's lifecycle rule expires their bytes (tagged `roomcast=pending` until
//! attached): [`AttachmentIndex::abandoned_slots`] answers none and nothing sweeps. A claim
//! removes the `ttl`; a released claim puts it back.

use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use aws_sdk_dynamodb::types::{ReturnConsumedCapacity, TransactWriteItem, Update};
use roomcast_core::attachments::{
    ABANDONED_AFTER_MS, QuotaExceeded, Slot, UploadQuota, Usage, day_of,
};
use roomcast_core::store::{AttachmentIndex, RoomRef, StoreError};

use super::DynamoStore;
use super::calls::Written;
use super::codec::{Fields, n, s};
use super::errors::{build_error, cancellation_codes, sdk_error};
use super::expiry::{live_condition, now_secs};
use super::expr::Expr;
use super::retry::backoff;
use super::schema::{
    ATTR_BYTES, ATTR_CLAIMED_BY, ATTR_COUNT, ATTR_CREATED_AT, ATTR_NAME, ATTR_SIZE, ATTR_TTL,
    ATTR_TYPE, ATTR_USER, Item, UPLOAD_QUOTA_TTL_SECS, key, room_pk, slot_sk, upload_quota_key,
};

/// Rounds of a charge that lost a race on a counter (another charge of the same tenant in
/// flight) before `Unavailable`.
const CHARGE_ATTEMPTS: u32 = 8;

/// When an unclaimed slot granted at `created_at_ms` expires: a day after the grant. The later
/// of the grant and our clock anchors it, so a skewed (or synthetic) grant time never expires a
/// slot before its day is up; the core refuses an abandoned slot by its grant time anyway.
fn unclaimed_ttl(created_at_ms: u64) -> u64 {
    (created_at_ms / 1000).max(now_secs()) + ABANDONED_AFTER_MS / 1000
}

/// When the counters of `day` expire: [`UPLOAD_QUOTA_TTL_SECS`] after the day began, and never
/// sooner than a day from now by our clock (a skewed or synthetic day).
fn quota_ttl(day: u64) -> u64 {
    (day.saturating_mul(86_400) + UPLOAD_QUOTA_TTL_SECS).max(now_secs() + 86_400)
}

fn slot_item(slot: &Slot) -> Item {
    let mut item = key(&room_pk(&slot.room_ref()), &slot_sk(&slot.id));
    item.insert(ATTR_USER.into(), s(slot.uploader.as_str()));
    item.insert(ATTR_NAME.into(), s(slot.name.as_str()));
    item.insert(ATTR_SIZE.into(), n(slot.size));
    item.insert(ATTR_TYPE.into(), s(slot.content_type.as_str()));
    item.insert(ATTR_CREATED_AT.into(), n(slot.created_at_ms));
    match &slot.claimed_by {
        Some(claimant) => {
            item.insert(ATTR_CLAIMED_BY.into(), s(claimant.as_str()));
        }
        None => {
            item.insert(ATTR_TTL.into(), n(unclaimed_ttl(slot.created_at_ms)));
        }
    }
    item
}

fn decode_slot(room: &RoomRef, id: &str, item: &Item) -> Result<Slot, StoreError> {
    let f = Fields(item);
    Ok(Slot {
        id: id.to_owned(),
        tenant: room.tenant.clone(),
        room: room.room.clone(),
        uploader: f.s(ATTR_USER)?,
        name: f.s(ATTR_NAME)?,
        size: f.u64(ATTR_SIZE)?,
        content_type: f.s(ATTR_TYPE)?,
        created_at_ms: f.u64(ATTR_CREATED_AT)?,
        claimed_by: f.opt_s(ATTR_CLAIMED_BY)?,
    })
}

fn decode_usage(item: Option<&Item>) -> Result<Usage, StoreError> {
    let Some(item) = item else {
        return Ok(Usage::default());
    };
    let f = Fields(item);
    Ok(Usage {
        count: f.opt_u64(ATTR_COUNT)?.unwrap_or(0),
        bytes: f.opt_u64(ATTR_BYTES)?.unwrap_or(0),
    })
}

/// The most a counter may hold for one more slot of `bytes` to fit: [`Usage::plus`] read
/// backwards (`count + 1 <= max_count`, `bytes_used + bytes <= max_bytes`). `None` when even an
/// unused counter cannot take it.
fn headroom(bytes: u64, max_count: u64, max_bytes: u64) -> Option<Usage> {
    Usage::default().plus(bytes, max_count, max_bytes)?;
    Some(Usage {
        count: max_count - 1,
        bytes: max_bytes - bytes,
    })
}

impl DynamoStore {
    /// The conditional increment of one counter by a slot of `bytes`, within `room`.
    fn counter_update(
        &self,
        (pk, sk): (String, String),
        bytes: u64,
        room: Usage,
        ttl: u64,
    ) -> Result<TransactWriteItem, StoreError> {
        let mut x = Expr::default();
        let (count, used) = (x.name(ATTR_COUNT), x.name(ATTR_BYTES));
        let zero = x.value(n(0));
        let update = format!(
            "SET {count} = if_not_exists({count}, {zero}) + {}, {used} = if_not_exists({used}, {zero}) + {}, {} = {}",
            x.value(n(1)),
            x.value(n(bytes)),
            x.name(ATTR_TTL),
            x.value(n(ttl)),
        );
        let condition = format!(
            "attribute_not_exists({count}) OR ({count} <= {} AND {used} <= {})",
            x.value(n(room.count)),
            x.value(n(room.bytes)),
        );
        let update = Update::builder()
            .table_name(&self.table)
            .set_key(Some(key(&pk, &sk)))
            .update_expression(update)
            .condition_expression(condition)
            .set_expression_attribute_names(x.names())
            .set_expression_attribute_values(x.values())
            .build()
            .map_err(build_error)?;
        Ok(TransactWriteItem::builder().update(update).build())
    }

    /// Which quota a refused charge would exceed, by [`UploadQuota::charge`] on the counters as
    /// they are now; `None` when they have moved and the charge fits after all.
    async fn exceeded(
        &self,
        keys: [&(String, String); 2],
        bytes: u64,
        quota: &UploadQuota,
    ) -> Result<Option<QuotaExceeded>, StoreError> {
        let [user, tenant] = keys;
        let user = decode_usage(self.get(&user.0, &user.1).await?.as_ref())?;
        let tenant = decode_usage(self.get(&tenant.0, &tenant.1).await?.as_ref())?;
        Ok(quota.charge(user, tenant, bytes).err())
    }

    /// The slot's item key.
    fn slot_key(room: &RoomRef, id: &str) -> (String, String) {
        (room_pk(room), slot_sk(id))
    }
}

#[async_trait::async_trait]
impl AttachmentIndex for DynamoStore {
    async fn charge_upload(
        &self,
        tenant: &str,
        user: &str,
        bytes: u64,
        quota: &UploadQuota,
        now_ms: u64,
    ) -> Result<Result<(), QuotaExceeded>, StoreError> {
        let (Some(user_room), Some(tenant_room)) = (
            headroom(bytes, quota.user_count, quota.user_bytes),
            headroom(bytes, quota.tenant_count, quota.tenant_bytes),
        ) else {
            // Over a limit with nothing used: refused without a write, as `charge` refuses it.
            return Ok(quota
                .charge(Usage::default(), Usage::default(), bytes)
                .map(|_| ()));
        };
        let day = day_of(now_ms);
        let ttl = quota_ttl(day);
        let user_key = upload_quota_key(tenant, Some(user), day);
        let tenant_key = upload_quota_key(tenant, None, day);
        for attempt in 0..CHARGE_ATTEMPTS {
            // Order matters: cancellation reasons come back in this order.
            let sent = self
                .client
                .transact_write_items()
                .transact_items(self.counter_update(user_key.clone(), bytes, user_room, ttl)?)
                .transact_items(self.counter_update(tenant_key.clone(), bytes, tenant_room, ttl)?)
                .return_consumed_capacity(ReturnConsumedCapacity::Total)
                .send()
                .await;
            let error = match sent {
                Ok(out) => {
                    self.record(out.consumed_capacity(), true);
                    return Ok(Ok(()));
                }
                Err(e) => e,
            };
            let codes = match error.as_service_error() {
                Some(TransactWriteItemsError::TransactionCanceledException(c)) => {
                    cancellation_codes(c)
                }
                _ => return Err(sdk_error("TransactWriteItems", error)),
            };
            if codes.iter().any(|c| c == "ConditionalCheckFailed") {
                if let Some(exceeded) = self
                    .exceeded([&user_key, &tenant_key], bytes, quota)
                    .await?
                {
                    return Ok(Err(exceeded));
                }
            } else if !codes.iter().any(|c| c == "TransactionConflict") {
                return Err(StoreError::Unavailable(format!(
                    "upload quota charge cancelled: {codes:?}"
                )));
            }
            backoff(attempt).await;
        }
        Err(StoreError::Unavailable(format!(
            "upload quota of {tenant}/{user}: the counters kept changing for {CHARGE_ATTEMPTS} attempts"
        )))
    }

    async fn put_slot(&self, slot: &Slot) -> Result<(), StoreError> {
        self.put(slot_item(slot), None).await.map(|_| ())
    }

    async fn slot(&self, room: &RoomRef, id: &str) -> Result<Option<Slot>, StoreError> {
        let (pk, sk) = Self::slot_key(room, id);
        self.get(&pk, &sk)
            .await?
            .map(|item| decode_slot(room, id, &item))
            .transpose()
    }

    async fn claim_slot(
        &self,
        room: &RoomRef,
        id: &str,
        claimant: &str,
    ) -> Result<Slot, StoreError> {
        let (pk, sk) = Self::slot_key(room, id);
        let mut x = Expr::default();
        let (by, me) = (x.name(ATTR_CLAIMED_BY), x.value(s(claimant)));
        let update = format!("SET {by} = {me} REMOVE {}", x.name(ATTR_TTL));
        let live = live_condition(&mut x, now_secs());
        let condition = format!("{live} AND (attribute_not_exists({by}) OR {by} = {me})");
        match self
            .update(&pk, &sk, &update, Some(&condition), x, true)
            .await?
        {
            Written::Done(Some(item)) => decode_slot(room, id, &item),
            Written::Done(None) => Err(StoreError::Other(
                "UpdateItem ALL_NEW returned nothing".into(),
            )),
            Written::ConditionFailed => match self.get(&pk, &sk).await? {
                Some(_) => Err(StoreError::Conflict(format!(
                    "{id} is attached to another message"
                ))),
                None => Err(StoreError::NotFound),
            },
        }
    }

    async fn release_slot(
        &self,
        room: &RoomRef,
        id: &str,
        claimant: &str,
    ) -> Result<(), StoreError> {
        let Some(slot) = self.slot(room, id).await? else {
            return Ok(());
        };
        if slot.claimed_by.as_deref() != Some(claimant) {
            return Ok(());
        }
        let (pk, sk) = Self::slot_key(room, id);
        let mut x = Expr::default();
        let by = x.name(ATTR_CLAIMED_BY);
        let update = format!(
            "SET {} = {} REMOVE {by}",
            x.name(ATTR_TTL),
            x.value(n(unclaimed_ttl(slot.created_at_ms)))
        );
        // Another message may have claimed it since it was read: theirs stays.
        let condition = format!("{by} = {}", x.value(s(claimant)));
        self.update(&pk, &sk, &update, Some(&condition), x, false)
            .await
            .map(|_| ())
    }

    async fn remove_slot(&self, room: &RoomRef, id: &str) -> Result<(), StoreError> {
        let (pk, sk) = Self::slot_key(room, id);
        self.delete(&pk, &sk).await.map(|_| ())
    }

    /// None: an unclaimed slot expires by its `ttl` and its bytes by the bucket's lifecycle
    /// rule, so nothing here sweeps (and nothing Scans the table for them).
    async fn abandoned_slots(
        &self,
        _granted_before_ms: u64,
        _limit: usize,
    ) -> Result<Vec<Slot>, StoreError> {
        Ok(Vec::new())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headroom_reads_usage_plus_backwards() {
        let quota = UploadQuota {
            user_count: 2,
            user_bytes: 100,
            tenant_count: 3,
            tenant_bytes: 1_000,
        };
        let room = headroom(40, quota.user_count, quota.user_bytes).expect("fits");
        assert_eq!(
            room,
            Usage {
                count: 1,
                bytes: 60
            }
        );
        // At the headroom a charge fits; one past it, `charge` refuses.
        assert!(quota.charge(room, Usage::default(), 40).is_ok());
        let over = Usage {
            count: 1,
            bytes: 61,
        };
        assert_eq!(
            quota.charge(over, Usage::default(), 40),
            Err(QuotaExceeded::User)
        );
        assert_eq!(headroom(101, 2, 100), None);
        assert_eq!(headroom(1, 0, 100), None);
    }

    #[test]
    fn unclaimed_slots_expire_a_day_after_the_grant_not_before() {
        let now = now_secs();
        assert_eq!(unclaimed_ttl(now * 1000), now + 86_400);
        assert!(
            unclaimed_ttl(0) >= now + 86_400,
            "a synthetic old grant lives a day"
        );
        assert!(quota_ttl(day_of(now * 1000)) > now + 86_400 - 1);
    }
}
