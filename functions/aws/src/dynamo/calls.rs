//! The request wrappers every operation goes through: strongly consistent reads that drop
//! expired items, writes that tell a failed condition from an error, batches that retry what
//! DynamoDB leaves unprocessed, and the recording of the capacity each request consumed.

use std::sync::PoisonError;

use aws_sdk_dynamodb::types::{
    ConsumedCapacity, KeysAndAttributes, ReturnConsumedCapacity, ReturnValue, WriteRequest,
};
use roomcast_core::store::StoreError;

use super::DynamoStore;
use super::codec::s;
use super::errors::{build_error, is_condition_failure, sdk_error};
use super::expiry::{is_live, now_secs};
use super::expr::Expr;
use super::retry::backoff;
use super::schema::{ATTR_PK, ATTR_SK, Item, key};

/// Attempts of a batch whose items DynamoDB left unprocessed (throttling) before `Unavailable`.
const BATCH_ATTEMPTS: u32 = 8;
/// Most items in one BatchWriteItem (DynamoDB's limit).
const BATCH_WRITE_MAX: usize = 25;
/// Most keys in one BatchGetItem (DynamoDB's limit).
const BATCH_GET_MAX: usize = 100;

/// The outcome of a conditional write.
pub(super) enum Written {
    /// Applied; the item's attributes when asked for (ALL_NEW / ALL_OLD).
    Done(Option<Item>),
    /// The condition did not hold; nothing was written.
    ConditionFailed,
}

/// Which sort keys of a partition a Query selects.
pub(super) enum SortRange {
    /// The whole partition.
    All,
    /// Sort keys that start with this.
    Prefix(String),
    /// Inclusive bounds.
    Between(String, String),
}

impl DynamoStore {
    /// Adds what DynamoDB reported. TOTAL always has `capacity_units`; the read/write split is
    /// filled in by some operations only, so the operation's kind (`write`) decides otherwise.
    pub(super) fn record<'a>(
        &self,
        reported: impl IntoIterator<Item = &'a ConsumedCapacity>,
        write: bool,
    ) {
        let mut total = self.consumed.lock().unwrap_or_else(PoisonError::into_inner);
        for c in reported {
            match (c.read_capacity_units(), c.write_capacity_units()) {
                (None, None) if write => total.write_units += c.capacity_units().unwrap_or(0.0),
                (None, None) => total.read_units += c.capacity_units().unwrap_or(0.0),
                (read, written) => {
                    total.read_units += read.unwrap_or(0.0);
                    total.write_units += written.unwrap_or(0.0);
                }
            }
        }
    }

    /// The live item at (pk, sk), strongly consistent.
    pub(super) async fn get(&self, pk: &str, sk: &str) -> Result<Option<Item>, StoreError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .set_key(Some(key(pk, sk)))
            .consistent_read(true)
            .return_consumed_capacity(ReturnConsumedCapacity::Total)
            .send()
            .await
            .map_err(|e| sdk_error("GetItem", e))?;
        self.record(out.consumed_capacity(), false);
        Ok(out.item.filter(|item| is_live(item, now_secs())))
    }

    /// Every live item of partition `pk` whose sort key matches, in sort-key order, strongly
    /// consistent, across pages.
    pub(super) async fn query(&self, pk: &str, range: SortRange) -> Result<Vec<Item>, StoreError> {
        let mut x = Expr::default();
        let mut condition = format!("{} = {}", x.name(ATTR_PK), x.value(s(pk)));
        match range {
            SortRange::All => {}
            SortRange::Prefix(prefix) => {
                let (sk, p) = (x.name(ATTR_SK), x.value(s(prefix)));
                condition.push_str(&format!(" AND begins_with({sk}, {p})"));
            }
            SortRange::Between(lo, hi) => {
                let (sk, lo, hi) = (x.name(ATTR_SK), x.value(s(lo)), x.value(s(hi)));
                condition.push_str(&format!(" AND {sk} BETWEEN {lo} AND {hi}"));
            }
        }
        self.pages(&condition, &x, true, None).await
    }

    /// Up to `limit` live items of partition `pk`, first or (`forward` false) last in sort-key
    /// order, strongly consistent; reads on when a page ends (at 1 MB) before `limit` (expired
    /// items count against `limit`).
    pub(super) async fn query_page(
        &self,
        pk: &str,
        forward: bool,
        limit: usize,
    ) -> Result<Vec<Item>, StoreError> {
        let mut x = Expr::default();
        let condition = format!("{} = {}", x.name(ATTR_PK), x.value(s(pk)));
        self.pages(&condition, &x, forward, Some(limit.max(1)))
            .await
    }

    /// The live items a key condition selects, in sort-key order (`forward`) or reversed,
    /// strongly consistent, reading on across pages (a page ends at 1 MB) until there are no
    /// more or, with a `limit`, that many were read (expired items count against it).
    async fn pages(
        &self,
        condition: &str,
        x: &Expr,
        forward: bool,
        limit: Option<usize>,
    ) -> Result<Vec<Item>, StoreError> {
        let now = now_secs();
        let mut items = Vec::new();
        let mut left = limit;
        let mut start = None;
        loop {
            let out = self
                .client
                .query()
                .table_name(&self.table)
                .key_condition_expression(condition)
                .set_expression_attribute_names(x.names())
                .set_expression_attribute_values(x.values())
                .consistent_read(true)
                .scan_index_forward(forward)
                .set_limit(left.map(|l| i32::try_from(l).unwrap_or(i32::MAX)))
                .set_exclusive_start_key(start)
                .return_consumed_capacity(ReturnConsumedCapacity::Total)
                .send()
                .await
                .map_err(|e| sdk_error("Query", e))?;
            self.record(out.consumed_capacity(), false);
            let page = out.items.unwrap_or_default();
            left = left.map(|l| l.saturating_sub(page.len()));
            items.extend(page.into_iter().filter(|item| is_live(item, now)));
            match out.last_evaluated_key {
                Some(next) if !next.is_empty() && left != Some(0) => start = Some(next),
                _ => return Ok(items),
            }
        }
    }

    /// PutItem, optionally conditional.
    pub(super) async fn put(
        &self,
        item: Item,
        condition: Option<(String, Expr)>,
    ) -> Result<Written, StoreError> {
        let (condition, x) = condition.map_or((None, Expr::default()), |(c, x)| (Some(c), x));
        let sent = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item))
            .set_condition_expression(condition)
            .set_expression_attribute_names(x.names())
            .set_expression_attribute_values(x.values())
            .return_consumed_capacity(ReturnConsumedCapacity::Total)
            .send()
            .await;
        match sent {
            Ok(out) => {
                self.record(out.consumed_capacity(), true);
                Ok(Written::Done(None))
            }
            Err(e) if is_condition_failure(&e) => Ok(Written::ConditionFailed),
            Err(e) => Err(sdk_error("PutItem", e)),
        }
    }

    /// UpdateItem; `new` returns the item after the update.
    pub(super) async fn update(
        &self,
        pk: &str,
        sk: &str,
        update: &str,
        condition: Option<&str>,
        x: Expr,
        new: bool,
    ) -> Result<Written, StoreError> {
        let sent = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(key(pk, sk)))
            .update_expression(update)
            .set_condition_expression(condition.map(str::to_owned))
            .set_expression_attribute_names(x.names())
            .set_expression_attribute_values(x.values())
            .return_values(if new {
                ReturnValue::AllNew
            } else {
                ReturnValue::None
            })
            .return_consumed_capacity(ReturnConsumedCapacity::Total)
            .send()
            .await;
        match sent {
            Ok(out) => {
                self.record(out.consumed_capacity(), true);
                Ok(Written::Done(out.attributes))
            }
            Err(e) if is_condition_failure(&e) => Ok(Written::ConditionFailed),
            Err(e) => Err(sdk_error("UpdateItem", e)),
        }
    }

    /// DeleteItem; returns the deleted item (expired or not).
    pub(super) async fn delete(&self, pk: &str, sk: &str) -> Result<Option<Item>, StoreError> {
        match self.delete_where(pk, sk, None).await? {
            Written::Done(item) => Ok(item),
            Written::ConditionFailed => Err(StoreError::Other(
                "DeleteItem without a condition failed one".into(),
            )),
        }
    }

    /// DeleteItem, optionally conditional; `Done` holds the deleted item (expired or not), if
    /// there was one.
    pub(super) async fn delete_where(
        &self,
        pk: &str,
        sk: &str,
        condition: Option<(String, Expr)>,
    ) -> Result<Written, StoreError> {
        let (condition, x) = condition.map_or((None, Expr::default()), |(c, x)| (Some(c), x));
        let sent = self
            .client
            .delete_item()
            .table_name(&self.table)
            .set_key(Some(key(pk, sk)))
            .set_condition_expression(condition)
            .set_expression_attribute_names(x.names())
            .set_expression_attribute_values(x.values())
            .return_values(ReturnValue::AllOld)
            .return_consumed_capacity(ReturnConsumedCapacity::Total)
            .send()
            .await;
        match sent {
            Ok(out) => {
                self.record(out.consumed_capacity(), true);
                Ok(Written::Done(
                    out.attributes.filter(|item| !item.is_empty()),
                ))
            }
            Err(e) if is_condition_failure(&e) => Ok(Written::ConditionFailed),
            Err(e) => Err(sdk_error("DeleteItem", e)),
        }
    }

    /// Puts and deletes in batches of 25, retrying what DynamoDB leaves unprocessed.
    pub(super) async fn batch_write(&self, requests: Vec<WriteRequest>) -> Result<(), StoreError> {
        for chunk in requests.chunks(BATCH_WRITE_MAX) {
            let mut pending = chunk.to_vec();
            for attempt in 0.. {
                let out = self
                    .client
                    .batch_write_item()
                    .request_items(&self.table, pending)
                    .return_consumed_capacity(ReturnConsumedCapacity::Total)
                    .send()
                    .await
                    .map_err(|e| sdk_error("BatchWriteItem", e))?;
                self.record(out.consumed_capacity(), true);
                pending = out
                    .unprocessed_items
                    .and_then(|mut left| left.remove(&self.table))
                    .unwrap_or_default();
                if pending.is_empty() {
                    break;
                }
                if attempt + 1 >= BATCH_ATTEMPTS {
                    return Err(StoreError::Unavailable(format!(
                        "BatchWriteItem left {} items unprocessed",
                        pending.len()
                    )));
                }
                backoff(attempt).await;
            }
        }
        Ok(())
    }

    /// The live items with these keys (any order), strongly consistent, in batches of 100.
    pub(super) async fn batch_get(&self, keys: Vec<Item>) -> Result<Vec<Item>, StoreError> {
        let now = now_secs();
        let mut items = Vec::new();
        for chunk in keys.chunks(BATCH_GET_MAX) {
            let mut pending = chunk.to_vec();
            for attempt in 0.. {
                let request = KeysAndAttributes::builder()
                    .set_keys(Some(pending))
                    .consistent_read(true)
                    .build()
                    .map_err(build_error)?;
                let out = self
                    .client
                    .batch_get_item()
                    .request_items(&self.table, request)
                    .return_consumed_capacity(ReturnConsumedCapacity::Total)
                    .send()
                    .await
                    .map_err(|e| sdk_error("BatchGetItem", e))?;
                self.record(out.consumed_capacity(), false);
                if let Some(found) = out.responses.and_then(|mut r| r.remove(&self.table)) {
                    items.extend(found.into_iter().filter(|item| is_live(item, now)));
                }
                pending = out
                    .unprocessed_keys
                    .and_then(|mut left| left.remove(&self.table))
                    .map(|k| k.keys)
                    .unwrap_or_default();
                if pending.is_empty() {
                    break;
                }
                if attempt + 1 >= BATCH_ATTEMPTS {
                    return Err(StoreError::Unavailable(format!(
                        "BatchGetItem left {} keys unprocessed",
                        pending.len()
                    )));
                }
                backoff(attempt).await;
            }
        }
        Ok(items)
    }
}
