//! The gap-free, exactly-once append (the algorithm is in the module doc of [`super`]): read the
//! head, then one transaction that moves the head, puts the message and puts its idempotency key,
//! each under a condition; a lost race retries with the head the failure returned.

use std::time::Duration;

use aws_sdk_dynamodb::error::ProvideErrorMetadata;
use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use aws_sdk_dynamodb::types::{
    Put, ReturnConsumedCapacity, ReturnValuesOnConditionCheckFailure, TransactWriteItem, Update,
};
use roomcast_core::protocol::MessageView;
use roomcast_core::store::rules::stored_message;
use roomcast_core::store::{Appended, NewMessage, RoomRef, StoreError};

use super::DynamoStore;
use super::codec::{Fields, decode_head, decode_message, message_item, n};
use super::errors::{build_error, cancellation_codes, sdk_error};
use super::expiry::now_secs;
use super::expr::Expr;
use super::retry::sleep_up_to;
use super::schema::{
    ATTR_PK, ATTR_SEQ, ATTR_TTL, HEAD_SK, idempotency_sk, key, message_sk, room_pk,
};

/// Longest pause of an append after its first lost round (halved after each further loss).
const APPEND_FIRST_PAUSE: Duration = Duration::from_millis(40);
/// Shortest cap of an append's pause between lost rounds.
const APPEND_LAST_PAUSE: Duration = Duration::from_millis(2);

/// One round of an append.
enum AppendTry {
    /// The message is stored at the seq it was given.
    Committed,
    /// The idempotency key exists; the seq it holds, when the response returned the key.
    Duplicate(Option<u64>),
    /// The head moved (to the seq given, when the response returned the head) or a concurrent
    /// transaction held an item.
    Lost(Option<u64>),
}

impl DynamoStore {
    /// [`HistoryStore::append`](roomcast_core::store::HistoryStore::append): rounds of
    /// [`try_append`](Self::try_append) until one commits or finds the id stored, at most
    /// [`DynamoConfig::max_append_attempts`](super::DynamoConfig::max_append_attempts).
    pub(super) async fn append_message(
        &self,
        room: &RoomRef,
        msg: NewMessage,
    ) -> Result<Appended, StoreError> {
        let pk = room_pk(room);
        let idempotency_sk = idempotency_sk(&msg.from, &msg.id);
        let attempts = self.config.max_append_attempts.max(1);
        // The head as the last lost round reported it; read it when unknown.
        let mut known_head = None;
        for attempt in 0..attempts {
            let head = match known_head.take() {
                Some(head) => head,
                None => self.head_of(&pk).await?,
            };
            let message = stored_message(room, head + 1, msg.clone());
            match self
                .try_append(&pk, head, &message, &idempotency_sk)
                .await?
            {
                AppendTry::Committed => {
                    return Ok(Appended {
                        message,
                        duplicate: false,
                    });
                }
                AppendTry::Duplicate(seq) => {
                    if let Some(original) = self.original(room, &pk, &idempotency_sk, seq).await? {
                        return Ok(Appended {
                            message: original,
                            duplicate: true,
                        });
                    }
                    // The key expired between the transaction and the read: append afresh.
                }
                AppendTry::Lost(moved_to) => {
                    tracing::debug!(room = %pk, head, ?moved_to, attempt, "append lost the head race");
                    known_head = moved_to;
                    sleep_up_to(append_pause_cap(attempt)).await;
                }
            }
        }
        tracing::warn!(room = %pk, attempts, "append gave up: the head kept moving");
        Err(StoreError::Conflict(format!(
            "{pk}: the head kept moving for {attempts} attempts"
        )))
    }

    /// The highest seq of room partition `pk` (0 before the first message).
    pub(super) async fn head_of(&self, pk: &str) -> Result<u64, StoreError> {
        match self.get(pk, HEAD_SK).await? {
            Some(item) => decode_head(&item),
            None => Ok(0),
        }
    }

    /// One round of an append against head `head`.
    async fn try_append(
        &self,
        pk: &str,
        head: u64,
        message: &MessageView,
        idempotency_sk: &str,
    ) -> Result<AppendTry, StoreError> {
        let now = now_secs();
        let expires = self
            .config
            .message_retention
            .map(|keep| now.saturating_add(keep.as_secs()));

        let mut hx = Expr::default();
        let seq = hx.name(ATTR_SEQ);
        let set_head = format!("SET {seq} = {}", hx.value(n(message.seq)));
        let head_condition = if head == 0 {
            format!("attribute_not_exists({seq})")
        } else {
            format!("{seq} = {}", hx.value(n(head)))
        };
        let head_update = Update::builder()
            .table_name(&self.table)
            .set_key(Some(key(pk, HEAD_SK)))
            .update_expression(set_head)
            .condition_expression(head_condition)
            .set_expression_attribute_names(hx.names())
            .set_expression_attribute_values(hx.values())
            // A loser learns the new head from the failure and needs no read to retry.
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
            .build()
            .map_err(build_error)?;

        let mut mx = Expr::default();
        let message_put = Put::builder()
            .table_name(&self.table)
            .set_item(Some(message_item(pk, message, expires)?))
            .condition_expression(format!("attribute_not_exists({})", mx.name(ATTR_PK)))
            .set_expression_attribute_names(mx.names())
            .build()
            .map_err(build_error)?;

        let mut ix = Expr::default();
        let mut idempotency = key(pk, idempotency_sk);
        idempotency.insert(ATTR_SEQ.into(), n(message.seq));
        if let Some(ttl) = expires {
            idempotency.insert(ATTR_TTL.into(), n(ttl));
        }
        // An expired key that DynamoDB has not deleted yet no longer counts.
        let idempotency_condition = format!(
            "attribute_not_exists({}) OR {} <= {}",
            ix.name(ATTR_PK),
            ix.name(ATTR_TTL),
            ix.value(n(now))
        );
        let idempotency_put = Put::builder()
            .table_name(&self.table)
            .set_item(Some(idempotency))
            .condition_expression(idempotency_condition)
            .set_expression_attribute_names(ix.names())
            .set_expression_attribute_values(ix.values())
            // A resend learns the original seq from the failure.
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
            .build()
            .map_err(build_error)?;

        // Order matters: cancellation reasons come back in this order.
        let sent = self
            .client
            .transact_write_items()
            .transact_items(TransactWriteItem::builder().update(head_update).build())
            .transact_items(TransactWriteItem::builder().put(message_put).build())
            .transact_items(TransactWriteItem::builder().put(idempotency_put).build())
            .return_consumed_capacity(ReturnConsumedCapacity::Total)
            .send()
            .await;
        let error = match sent {
            Ok(out) => {
                self.record(out.consumed_capacity(), true);
                return Ok(AppendTry::Committed);
            }
            Err(e) => e,
        };
        let cancelled = match error.as_service_error() {
            Some(TransactWriteItemsError::TransactionCanceledException(c)) => c,
            // Same client token still in flight (an SDK retry): settle it by reading the head.
            Some(e) if e.code() == Some("TransactionInProgressException") => {
                return Ok(AppendTry::Lost(None));
            }
            _ => return Err(sdk_error("TransactWriteItems", error)),
        };
        let codes = cancellation_codes(cancelled);
        let code = |i: usize| codes.get(i).map_or("None", String::as_str);
        // The seq in the old item a failed condition returned (ALL_OLD), if any.
        let returned_seq = |i: usize| {
            let item = cancelled.cancellation_reasons().get(i)?.item()?;
            Fields(item).opt_u64(ATTR_SEQ).ok().flatten()
        };
        const FAILED: &str = "ConditionalCheckFailed";
        if code(2) == FAILED {
            return Ok(AppendTry::Duplicate(returned_seq(2)));
        }
        if code(0) == FAILED {
            return Ok(AppendTry::Lost(returned_seq(0)));
        }
        if codes.iter().any(|c| c == "TransactionConflict") {
            return Ok(AppendTry::Lost(None));
        }
        if code(1) == FAILED {
            return Err(StoreError::Other(format!(
                "{pk}: message {} exists beyond the head {head}",
                message.seq
            )));
        }
        if codes
            .iter()
            .any(|c| c.contains("Throughput") || c.contains("Throttl"))
        {
            return Err(StoreError::Unavailable(format!(
                "append throttled: {codes:?}"
            )));
        }
        Err(StoreError::Other(format!("append cancelled: {codes:?}")))
    }

    /// The message a live idempotency key points at (its seq `known` when the failed
    /// transaction returned the key); `None` when the key is gone.
    async fn original(
        &self,
        room: &RoomRef,
        pk: &str,
        idempotency_sk: &str,
        known: Option<u64>,
    ) -> Result<Option<MessageView>, StoreError> {
        let seq = match known {
            Some(seq) => seq,
            None => match self.get(pk, idempotency_sk).await? {
                Some(key_item) => Fields(&key_item).u64(ATTR_SEQ)?,
                None => return Ok(None),
            },
        };
        match self.get(pk, &message_sk(seq)).await? {
            Some(item) => decode_message(room, &item).map(Some),
            // Both carry the same ttl, so they expire together; anything else is damage.
            None => Err(StoreError::Other(format!(
                "{pk}: idempotency key {idempotency_sk} points at missing seq {seq}"
            ))),
        }
    }
}

/// The longest pause before an append's next round: 40 ms after the first lost round, halving
/// with each further loss down to 2 ms. The writers that have lost longest retry soonest, which
/// keeps a hot room fair: with exponential backoff instead, one of 8 writers hammering one room
/// (the conformance suite) needed about 70 rounds for one message; with this, about 15, and fewer
/// wasted transactions than retrying at once.
fn append_pause_cap(attempt: u32) -> Duration {
    (APPEND_FIRST_PAUSE / (1 << attempt.min(8))).max(APPEND_LAST_PAUSE)
}
