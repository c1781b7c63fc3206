//! The [`OccupancyGate`] of invocations that share nothing but the table (AWS Lambda): each big
//! room's [`AnnouncementRecord`] is one item in its partition (`OC`), and the core's rule
//! ([`AnnouncementRecord::turn`]) is applied with conditional UpdateItems, so of the invocations
//! that read one record exactly one writes it:
//!
//! 1. A change tries to announce now: `last_announced` set to now if the item is absent (or
//!    expired) or its interval has ended ([`AnnouncementRecord::ended_by`]). The failed
//!    condition returns the record (ReturnValuesOnConditionCheckFailure), so no read is needed.
//! 2. Else, if the core gives it the coalesced announcement, it holds it: `trailing_at` set if
//!    the record is still the one it read. Else nothing: the holder announces.
//! 3. The holder sleeps until `trailing_at` (under a second), then takes it: `last_announced`
//!    set to now and `trailing_at` removed if the item still holds it, then announces the count
//!    as it is then.
//!
//! Every write is followed by an announcement that lists the room after it, so a change whose
//! write lost is carried by the winner's. A change costs one UpdateItem (1 WCU), a held
//! announcement two more; every function that handles joins and departures may already call
//! UpdateItem. The holder's invocation lasts until the interval ends (up to a second of billed
//! duration per big room and interval); if it dies, the count is stale until the next change.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_sdk_dynamodb::operation::update_item::UpdateItemError;
use aws_sdk_dynamodb::types::{ReturnConsumedCapacity, ReturnValuesOnConditionCheckFailure};
use roomcast_core::occupancy::{AnnouncementRecord, OccupancyGate, Turn};
use roomcast_core::store::{RoomRef, StoreError};

use super::DynamoStore;
use super::codec::{Fields, n};
use super::errors::sdk_error;
use super::expiry::now_secs;
use super::expr::Expr;
use super::schema::{
    ATTR_LAST_ANNOUNCED, ATTR_PK, ATTR_TRAILING_AT, ATTR_TTL, Item, OCCUPANCY_SK,
    OCCUPANCY_TTL_SECS, key, room_pk,
};

/// The wall clock, epoch milliseconds.
fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

fn decode_record(item: &Item) -> Result<AnnouncementRecord, StoreError> {
    let f = Fields(item);
    Ok(AnnouncementRecord {
        last_ms: f.u64(ATTR_LAST_ANNOUNCED)?,
        trailing_at_ms: f.opt_u64(ATTR_TRAILING_AT)?,
    })
}

/// An UpdateItem's outcome: applied, or the condition failed with the item as it was.
enum Updated {
    Applied,
    Refused(Option<Item>),
}

impl DynamoStore {
    /// UpdateItem of `room`'s occupancy item, conditional; a refusal returns the item.
    async fn update_occupancy(
        &self,
        room: &RoomRef,
        update: &str,
        condition: &str,
        x: Expr,
    ) -> Result<Updated, StoreError> {
        let sent = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(key(&room_pk(room), OCCUPANCY_SK)))
            .update_expression(update)
            .condition_expression(condition)
            .set_expression_attribute_names(x.names())
            .set_expression_attribute_values(x.values())
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
            .return_consumed_capacity(ReturnConsumedCapacity::Total)
            .send()
            .await;
        match sent {
            Ok(out) => {
                self.record(out.consumed_capacity(), true);
                Ok(Updated::Applied)
            }
            Err(e) => match e.as_service_error() {
                Some(UpdateItemError::ConditionalCheckFailedException(refused)) => {
                    Ok(Updated::Refused(refused.item.clone()))
                }
                _ => Err(sdk_error("UpdateItem", e)),
            },
        }
    }
}

#[async_trait::async_trait]
impl OccupancyGate for DynamoStore {
    async fn changed(&self, room: &RoomRef, now_ms: u64) -> Result<Turn, StoreError> {
        let mut x = Expr::default();
        let (last, trailing, ttl, pk) = (
            x.name(ATTR_LAST_ANNOUNCED),
            x.name(ATTR_TRAILING_AT),
            x.name(ATTR_TTL),
            x.name(ATTR_PK),
        );
        let now_secs = now_secs();
        let update = format!(
            "SET {last} = {}, {ttl} = {} REMOVE {trailing}",
            x.value(n(now_ms)),
            x.value(n(now_secs + OCCUPANCY_TTL_SECS))
        );
        let mut condition = format!(
            "attribute_not_exists({pk}) OR {ttl} <= {}",
            x.value(n(now_secs))
        );
        if let Some(ended) = AnnouncementRecord::ended_by(now_ms) {
            condition.push_str(&format!(" OR {last} <= {}", x.value(n(ended))));
        }
        let read = match self.update_occupancy(room, &update, &condition, x).await? {
            Updated::Applied => return Ok(Turn::Now),
            Updated::Refused(item) => item.as_ref().map(decode_record).transpose()?,
        };
        let (Some(read), (Turn::Trailing { at_ms }, Some(_))) =
            (read, AnnouncementRecord::turn(read, now_ms))
        else {
            return Ok(Turn::Nothing);
        };
        let mut x = Expr::default();
        let (last, trailing) = (x.name(ATTR_LAST_ANNOUNCED), x.name(ATTR_TRAILING_AT));
        let update = format!("SET {trailing} = {}", x.value(n(at_ms)));
        let condition = format!(
            "{last} = {} AND attribute_not_exists({trailing})",
            x.value(n(read.last_ms))
        );
        Ok(
            match self.update_occupancy(room, &update, &condition, x).await? {
                Updated::Applied => Turn::Trailing { at_ms },
                Updated::Refused(_) => Turn::Nothing,
            },
        )
    }

    async fn take_trailing(&self, room: &RoomRef, at_ms: u64) -> Result<bool, StoreError> {
        tokio::time::sleep(Duration::from_millis(at_ms.saturating_sub(now_ms()))).await;
        let mut x = Expr::default();
        let (last, trailing) = (x.name(ATTR_LAST_ANNOUNCED), x.name(ATTR_TRAILING_AT));
        let update = format!("SET {last} = {} REMOVE {trailing}", x.value(n(now_ms())));
        let condition = format!("{trailing} = {}", x.value(n(at_ms)));
        Ok(matches!(
            self.update_occupancy(room, &update, &condition, x).await?,
            Updated::Applied
        ))
    }
}
