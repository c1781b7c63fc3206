//! [`DynamoStore`]: the [`ConnectionStore`] and the [`HistoryStore`] on ONE DynamoDB table.
//!
//! # Table
//!
//! Partition key [`ATTR_PK`] (`pk`, S), sort key [`ATTR_SK`] (`sk`, S), on-demand billing, TTL on
//! [`ATTR_TTL`] (`ttl`, N, epoch **seconds**). [`DynamoStore::ensure_table`] creates exactly this.
//! Names (tenant, user, room) cannot contain `/` or `#` (protocol validation), so the keys below
//! are unambiguous; a client message id may contain `#`, and is therefore always last.
//!
//! | item | `pk` | `sk` | other attributes | `ttl` |
//! | --- | --- | --- | --- | --- |
//! | connection | `C#{conn_id}` | `C` | tenant, user, name, role, grants (L), connected_at, token_expires_at (ms), rooms (L), rate (JSON) | connection |
//! | user's connection index | `U#{tenant}#{user}` | `C#{conn_id}` | | connection |
//! | user status | `U#{tenant}#{user}` | `S` | status | connection, from `set_status` |
//! | room subscription | `R#{tenant}/{room}` | `S#{conn_id}` | user | connection |
//! | room head | `R#{tenant}/{room}` | `HEAD` | seq | never |
//! | message | `R#{tenant}/{room}` | `M#{seq:020}` | seq, id, from, name, body, meta (JSON), ts, edited_ts, deleted | retention, if set |
//! | idempotency key | `R#{tenant}/{room}` | `I#{from}#{id}` | seq | retention, if set |
//! | read cursor | `R#{tenant}/{room}` | `RC#{user}` | seq | never |
//! | member | `R#{tenant}/{room}` | `MB#{user}` | last_seen (ms) | never |
//! | support conversation | `R#{tenant}/{room}` | `CONV` | status, agent, version, since (ms) | never |
//!
//! The connection TTL is [`CONNECTION_TTL_SECS`] (API Gateway's 2-hour maximum plus a margin)
//! after the connection was made: `$disconnect` is best effort, the TTL collects what it misses.
//! The head never expires, even when messages do: a seq is never reused, so a resuming client
//! can never mistake a new message for one it has.
//!
//! # Access patterns (no Scan anywhere; nothing grows with the number of connections or rooms)
//!
//! - Fan-out, `room_connections`: Query `pk = R#…` and `begins_with(sk, "S#")`. No other sort key
//!   in a room partition starts with `S#`, and history ranges (`M#` + 20 digits) never include
//!   `MB#` members (`B` sorts after every digit).
//! - `user_connections`: Query of the `U#` partition's `C#` index items, then one BatchGetItem of
//!   the connection items. The index items carry no copy of the connection, because copies would
//!   have to be rewritten on every join, leave and — per frame — rate-limit token, doubling the
//!   hottest writes; reading a user's few connections (on connect, disconnect, presence change)
//!   costs 1 RCU per connection instead.
//! - `presence`: one Query of each asked user's `U#` partition (bounded concurrency).
//! - History pages: the head (GetItem), then Query `sk BETWEEN M#lo AND M#hi` from
//!   [`page_range`].
//! - Members: Query `begins_with(sk, "MB#")`: grows with the room's members only.
//!
//! Every read is strongly consistent: a subscription written by `join` must be seen by the next
//! message's fan-out, and history reads must see every acknowledged append.
//!
//! # Expired items
//!
//! DynamoDB deletes expired items lazily (within days), so every read treats an item whose `ttl`
//! is not in the future as absent, every conditional write that expects an item requires a live
//! `ttl`, and an expired idempotency key may be overwritten.
//!
//! # Appends: gap-free and exactly once across processes
//!
//! 1. GetItem the head (consistent): `h`.
//! 2. TransactWriteItems: Update head `seq = h + 1` if `seq = h` (or absent when `h = 0`); Put the
//!    message at `M#{h+1}` if absent; Put the idempotency key `I#{from}#{id} → h+1` if absent.
//! 3. Cancelled because the idempotency key exists: read the message at the seq the cancelled
//!    key returned (ReturnValuesOnConditionCheckFailure ALL_OLD), answer `duplicate = true`.
//!    Cancelled because the head moved: the failure returns the new head, so retry with it
//!    without a read (after a concurrent transaction: read it again), after a random pause that
//!    shrinks as the writer keeps losing, so the longest waiters go first. At most
//!    [`DynamoConfig::max_append_attempts`] rounds, then [`StoreError::Conflict`].
//!
//! The SDK gives every TransactWriteItems a client request token, so its own retries of a request
//! whose answer was lost are idempotent for ten minutes instead of looking like a duplicate.
//!
//! # Cost per message (on-demand units; small message ≤ 1 KB)
//!
//! A new message: 1 RCU (consistent head read) + 6 WCU (transactional writes cost 2 per item per
//! KB: head, message, idempotency key). A resent id: 1 RCU for the head, the cancelled
//! transaction (its error response reports no capacity; DynamoDB still bills the attempted
//! writes), then 1 RCU to read the original message. Each lost race adds one cancelled
//! transaction. Every request records what the backend reports in [`DynamoStore::consumed`];
//! moto reports flat placeholders (0.5 per GetItem, nothing for TransactWriteItems), not
//! DynamoDB's billing.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::config::{BehaviorVersion, Credentials, Region};
use aws_sdk_dynamodb::error::{BuildError, DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use aws_sdk_dynamodb::types::error::TransactionCanceledException;
use aws_sdk_dynamodb::types::{
    AttributeDefinition, AttributeValue, BillingMode, ConsumedCapacity, DeleteRequest,
    KeySchemaElement, KeyType, KeysAndAttributes, Put, PutRequest, ReturnConsumedCapacity,
    ReturnValue, ReturnValuesOnConditionCheckFailure, ScalarAttributeType, TableStatus,
    TimeToLiveSpecification, TimeToLiveStatus, TransactWriteItem, Update, WriteRequest,
};
use futures::StreamExt;
use rand::Rng;
use roomcast_core::limits::DEFAULT_MAX_CONNECTION_MS;
use roomcast_core::protocol::{Conversation, MessageView, PresenceStatus};
use roomcast_core::ratelimit::{RateDecision, RatePolicy, RateState};
use roomcast_core::store::rules::{apply_amendment, page_range, sort_members, stored_message};
use roomcast_core::store::{
    Amendment, Appended, Connection, ConnectionStore, HistoryQuery, HistoryStore, JoinOutcome,
    Member, NewMessage, Page, RoomRef, StoreError, Subscriber,
};
use serde::Serialize;
use serde::de::DeserializeOwned;

/// Default table name (the local server's `--table` default, Terraform's and SAM's).
pub const DEFAULT_TABLE: &str = "roomcast";

/// Partition key attribute (S).
pub const ATTR_PK: &str = "pk";
/// Sort key attribute (S).
pub const ATTR_SK: &str = "sk";
/// TTL attribute (N, epoch seconds); the table's TimeToLiveSpecification names it.
pub const ATTR_TTL: &str = "ttl";

/// Connection item: `pk` prefix, followed by the connection id.
pub const CONNECTION_PK_PREFIX: &str = "C#";
/// Connection item: its one sort key.
pub const CONNECTION_SK: &str = "C";
/// User partition (`U#{tenant}#{user}`): connection index and status.
pub const USER_PK_PREFIX: &str = "U#";
/// User partition: connection index items, `C#{conn_id}`.
pub const USER_CONNECTION_SK_PREFIX: &str = "C#";
/// User partition: the chosen presence status.
pub const USER_STATUS_SK: &str = "S";
/// Room partition (`R#{tenant}/{room}`): subscriptions, head, messages, idempotency keys, read
/// cursors, members.
pub const ROOM_PK_PREFIX: &str = "R#";
/// Room partition: subscriptions, `S#{conn_id}`.
pub const SUBSCRIPTION_SK_PREFIX: &str = "S#";
/// Room partition: the head (highest seq).
pub const HEAD_SK: &str = "HEAD";
/// Room partition: messages, `M#{seq:020}` (zero-padded so string order is seq order).
pub const MESSAGE_SK_PREFIX: &str = "M#";
/// Room partition: idempotency keys, `I#{from}#{client id}`.
pub const IDEMPOTENCY_SK_PREFIX: &str = "I#";
/// Room partition: read cursors, `RC#{user}`.
pub const READ_CURSOR_SK_PREFIX: &str = "RC#";
/// Room partition: members, `MB#{user}`.
pub const MEMBER_SK_PREFIX: &str = "MB#";
/// Room partition: the support conversation.
pub const CONVERSATION_SK: &str = "CONV";

/// Connection: tenant id (S).
pub const ATTR_TENANT: &str = "tenant";
/// Connection, subscription: user id (S).
pub const ATTR_USER: &str = "user";
/// Connection, message: display name (S, optional).
pub const ATTR_NAME: &str = "name";
/// Connection: role (S, the protocol's snake_case name).
pub const ATTR_ROLE: &str = "role";
/// Connection: room grants from the token (L of S).
pub const ATTR_GRANTS: &str = "grants";
/// Connection: connect time (N, epoch ms).
pub const ATTR_CONNECTED_AT: &str = "connected_at";
/// Connection: token expiry (N, epoch ms).
pub const ATTR_TOKEN_EXPIRES_AT: &str = "token_expires_at";
/// Connection: rooms joined, in join order (L of S).
pub const ATTR_ROOMS: &str = "rooms";
/// Connection: rate-limit bucket (S, JSON of `RateState`; compared whole in conditional writes).
pub const ATTR_RATE: &str = "rate";
/// User status: the chosen status (S).
pub const ATTR_STATUS: &str = "status";
/// Head, message, idempotency key, read cursor: a seq (N).
pub const ATTR_SEQ: &str = "seq";
/// Message: the client's id (S).
pub const ATTR_ID: &str = "id";
/// Message: sender's user id (S).
pub const ATTR_FROM: &str = "from";
/// Message: text (S; absent once deleted).
pub const ATTR_BODY: &str = "body";
/// Message: application data (S, JSON; optional).
pub const ATTR_META: &str = "meta";
/// Message: store time (N, epoch ms).
pub const ATTR_TS: &str = "ts";
/// Message: last edit (N, epoch ms; optional).
pub const ATTR_EDITED_TS: &str = "edited_ts";
/// Message: tombstone flag (BOOL; present only when true).
pub const ATTR_DELETED: &str = "deleted";
/// Member: last seen in the room (N, epoch ms).
pub const ATTR_LAST_SEEN: &str = "last_seen";
/// Conversation: its agent (S; optional).
pub const ATTR_AGENT: &str = "agent";
/// Conversation: its version (N), the compare-and-set guard.
pub const ATTR_VERSION: &str = "version";
/// Conversation: when it last changed (N, epoch ms).
pub const ATTR_SINCE: &str = "since";

/// Margin on top of API Gateway's maximum connection duration before a connection's items
/// expire: covers clock skew and a `$disconnect` that arrives late.
pub const CONNECTION_TTL_MARGIN_SECS: u64 = 10 * 60;
/// Lifetime of connection, index, subscription and status items: 2 h + 10 min.
pub const CONNECTION_TTL_SECS: u64 = DEFAULT_MAX_CONNECTION_MS / 1000 + CONNECTION_TTL_MARGIN_SECS;

/// Attempts of an optimistic read-modify-write (rate token, leave, join) before `Conflict`.
const OPTIMISTIC_ATTEMPTS: u32 = 8;
/// Attempts of a batch whose items DynamoDB left unprocessed (throttling) before `Unavailable`.
const BATCH_ATTEMPTS: u32 = 8;
/// Most items in one BatchWriteItem / BatchGetItem (DynamoDB's limits).
const BATCH_WRITE_MAX: usize = 25;
const BATCH_GET_MAX: usize = 100;
/// Longest pause of an append after its first lost round (halved after each further loss).
const APPEND_FIRST_PAUSE: Duration = Duration::from_millis(40);
/// Shortest cap of an append's pause between lost rounds.
const APPEND_LAST_PAUSE: Duration = Duration::from_millis(2);
/// Users whose presence is queried at once.
const PRESENCE_CONCURRENCY: usize = 8;
/// How long `ensure_table` waits for a new table to become ACTIVE.
const TABLE_ACTIVE_TIMEOUT: Duration = Duration::from_secs(120);

/// What the store does beyond the fixed key design.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DynamoConfig {
    /// How long messages and their idempotency keys are kept; `None` keeps them forever.
    pub message_retention: Option<Duration>,
    /// Rounds an append may lose the race for the room head before giving up with
    /// [`StoreError::Conflict`].
    pub max_append_attempts: u32,
}

impl Default for DynamoConfig {
    fn default() -> Self {
        Self {
            message_retention: None,
            max_append_attempts: 50,
        }
    }
}

/// Capacity units DynamoDB reported as consumed (ReturnConsumedCapacity TOTAL).
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Consumed {
    /// Read capacity units.
    pub read_units: f64,
    /// Write capacity units.
    pub write_units: f64,
}

/// Connections, rooms, presence and history on one DynamoDB table (see the module doc).
pub struct DynamoStore {
    client: Client,
    table: String,
    config: DynamoConfig,
    consumed: Mutex<Consumed>,
}

/// An SDK client for a local DynamoDB implementation (moto, DynamoDB Local) at `endpoint_url`:
/// region `us-east-1` and static dummy credentials, which emulators accept and sign-check only
/// for shape. Never use it against AWS; there, load the environment's configuration.
pub async fn emulator_client(endpoint_url: &str) -> Client {
    let config = aws_config::defaults(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .endpoint_url(endpoint_url)
        .credentials_provider(Credentials::new(
            "roomcast-local",
            "roomcast-local",
            None,
            None,
            "roomcast-emulator",
        ))
        .load()
        .await;
    Client::new(&config)
}

type Item = HashMap<String, AttributeValue>;

/// The outcome of a conditional write.
enum Written {
    /// Applied; the item's attributes when asked for (ALL_NEW / ALL_OLD).
    Done(Option<Item>),
    /// The condition did not hold; nothing was written.
    ConditionFailed,
}

/// One round of an append.
enum AppendTry {
    Committed,
    /// The idempotency key exists; the seq it holds, when the response returned the key.
    Duplicate(Option<u64>),
    /// The head moved (to the seq given, when the response returned the head) or a concurrent
    /// transaction held an item.
    Lost(Option<u64>),
}

impl DynamoStore {
    /// A store on `table` through `client`. Call [`ensure_table`](Self::ensure_table) first
    /// where the table may not exist yet (local runs); deployments create it in Terraform/SAM.
    pub fn new(client: Client, table: impl Into<String>, config: DynamoConfig) -> Self {
        Self {
            client,
            table: table.into(),
            config,
            consumed: Mutex::new(Consumed::default()),
        }
    }

    /// The table name.
    pub fn table(&self) -> &str {
        &self.table
    }

    /// Capacity consumed by this store's successful requests so far, as DynamoDB reported it.
    /// Take the difference around an operation to see what it cost.
    pub fn consumed(&self) -> Consumed {
        *self.consumed.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Creates the table (on-demand, `pk`/`sk` strings) unless it exists, waits until it is
    /// ACTIVE, and enables TTL on [`ATTR_TTL`]. Idempotent, safe to run from several processes.
    pub async fn ensure_table(&self) -> Result<(), StoreError> {
        let key = |name: &str, key_type| {
            KeySchemaElement::builder()
                .attribute_name(name)
                .key_type(key_type)
                .build()
                .map_err(build_error)
        };
        let string_attr = |name: &str| {
            AttributeDefinition::builder()
                .attribute_name(name)
                .attribute_type(ScalarAttributeType::S)
                .build()
                .map_err(build_error)
        };
        let created = self
            .client
            .create_table()
            .table_name(&self.table)
            .billing_mode(BillingMode::PayPerRequest)
            .attribute_definitions(string_attr(ATTR_PK)?)
            .attribute_definitions(string_attr(ATTR_SK)?)
            .key_schema(key(ATTR_PK, KeyType::Hash)?)
            .key_schema(key(ATTR_SK, KeyType::Range)?)
            .send()
            .await;
        match created {
            Ok(_) => tracing::info!(table = %self.table, "created table"),
            Err(e) if error_code(&e) == Some("ResourceInUseException") => {}
            Err(e) => return Err(sdk_error("CreateTable", e)),
        }
        self.wait_until_active().await?;
        self.enable_ttl().await
    }

    async fn wait_until_active(&self) -> Result<(), StoreError> {
        let deadline = tokio::time::Instant::now() + TABLE_ACTIVE_TIMEOUT;
        loop {
            let described = self
                .client
                .describe_table()
                .table_name(&self.table)
                .send()
                .await
                .map_err(|e| sdk_error("DescribeTable", e))?;
            let status = described.table().and_then(|t| t.table_status());
            if status == Some(&TableStatus::Active) {
                return Ok(());
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(StoreError::Unavailable(format!(
                    "table {} is not ACTIVE after {TABLE_ACTIVE_TIMEOUT:?} ({status:?})",
                    self.table
                )));
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }

    async fn enable_ttl(&self) -> Result<(), StoreError> {
        let described = self
            .client
            .describe_time_to_live()
            .table_name(&self.table)
            .send()
            .await
            .map_err(|e| sdk_error("DescribeTimeToLive", e))?;
        if let Some(ttl) = described.time_to_live_description() {
            let on = matches!(
                ttl.time_to_live_status(),
                Some(TimeToLiveStatus::Enabled | TimeToLiveStatus::Enabling)
            );
            match ttl.attribute_name() {
                Some(ATTR_TTL) if on => return Ok(()),
                Some(other) if on => {
                    return Err(StoreError::Other(format!(
                        "table {} has TTL on attribute {other:?}, roomcast needs {ATTR_TTL:?}",
                        self.table
                    )));
                }
                _ => {}
            }
        }
        let spec = TimeToLiveSpecification::builder()
            .enabled(true)
            .attribute_name(ATTR_TTL)
            .build()
            .map_err(build_error)?;
        match self
            .client
            .update_time_to_live()
            .table_name(&self.table)
            .time_to_live_specification(spec)
            .send()
            .await
        {
            Ok(_) => Ok(()),
            // Another process enabled it between our describe and update.
            Err(e) if format!("{}", DisplayErrorContext(&e)).contains("already enabled") => Ok(()),
            Err(e) => Err(sdk_error("UpdateTimeToLive", e)),
        }
    }

    /// Adds what DynamoDB reported. TOTAL always has `capacity_units`; the read/write split is
    /// filled in by some operations only, so the operation's kind (`write`) decides otherwise.
    fn record<'a>(&self, reported: impl IntoIterator<Item = &'a ConsumedCapacity>, write: bool) {
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
    async fn get(&self, pk: &str, sk: &str) -> Result<Option<Item>, StoreError> {
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
    async fn query(&self, pk: &str, range: SortRange) -> Result<Vec<Item>, StoreError> {
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
        let now = now_secs();
        let mut items = Vec::new();
        let mut start = None;
        loop {
            let out = self
                .client
                .query()
                .table_name(&self.table)
                .key_condition_expression(&condition)
                .set_expression_attribute_names(x.names())
                .set_expression_attribute_values(x.values())
                .consistent_read(true)
                .set_exclusive_start_key(start)
                .return_consumed_capacity(ReturnConsumedCapacity::Total)
                .send()
                .await
                .map_err(|e| sdk_error("Query", e))?;
            self.record(out.consumed_capacity(), false);
            items.extend(
                out.items
                    .unwrap_or_default()
                    .into_iter()
                    .filter(|item| is_live(item, now)),
            );
            match out.last_evaluated_key {
                Some(next) if !next.is_empty() => start = Some(next),
                _ => return Ok(items),
            }
        }
    }

    /// PutItem, optionally conditional.
    async fn put(
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
    async fn update(
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
    async fn delete(&self, pk: &str, sk: &str) -> Result<Option<Item>, StoreError> {
        let out = self
            .client
            .delete_item()
            .table_name(&self.table)
            .set_key(Some(key(pk, sk)))
            .return_values(ReturnValue::AllOld)
            .return_consumed_capacity(ReturnConsumedCapacity::Total)
            .send()
            .await
            .map_err(|e| sdk_error("DeleteItem", e))?;
        self.record(out.consumed_capacity(), true);
        Ok(out.attributes.filter(|item| !item.is_empty()))
    }

    /// Puts and deletes in batches of 25, retrying what DynamoDB leaves unprocessed.
    async fn batch_write(&self, requests: Vec<WriteRequest>) -> Result<(), StoreError> {
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
    async fn batch_get(&self, keys: Vec<Item>) -> Result<Vec<Item>, StoreError> {
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

    /// Writes a subscription item (idempotent: a join that failed half-way heals on retry).
    async fn put_subscription(
        &self,
        conn: &Connection,
        room: &str,
        ttl: u64,
    ) -> Result<(), StoreError> {
        let item = subscription_item(conn, room, ttl);
        self.put(item, None).await.map(|_| ())
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

    /// One user's presence: their chosen status (default online) while a connection lives.
    async fn user_presence(
        &self,
        tenant: &str,
        user: &str,
    ) -> Result<Option<PresenceStatus>, StoreError> {
        let items = self.query(&user_pk(tenant, user), SortRange::All).await?;
        let connected = items
            .iter()
            .any(|item| string_of(item, ATTR_SK).starts_with(USER_CONNECTION_SK_PREFIX));
        if !connected {
            return Ok(None);
        }
        let chosen = items
            .iter()
            .find(|item| string_of(item, ATTR_SK) == USER_STATUS_SK)
            .map(|item| Fields(item).enum_value(ATTR_STATUS))
            .transpose()?;
        Ok(Some(chosen.unwrap_or_default()))
    }

    async fn head_of(&self, pk: &str) -> Result<u64, StoreError> {
        match self.get(pk, HEAD_SK).await? {
            Some(item) => Fields(&item).u64(ATTR_SEQ),
            None => Ok(0),
        }
    }
}

#[async_trait::async_trait]
impl ConnectionStore for DynamoStore {
    async fn put_connection(&self, conn: &Connection) -> Result<(), StoreError> {
        let ttl = connection_ttl(conn.connected_at_ms);
        let mut items = vec![connection_item(conn, ttl)?];
        let mut index = key(
            &user_pk(&conn.tenant, &conn.user),
            &format!("{USER_CONNECTION_SK_PREFIX}{}", conn.id),
        );
        index.insert(ATTR_TTL.into(), n(ttl));
        items.push(index);
        items.extend(
            conn.rooms
                .iter()
                .map(|room| subscription_item(conn, room, ttl)),
        );
        let puts = items
            .into_iter()
            .map(|item| {
                PutRequest::builder()
                    .set_item(Some(item))
                    .build()
                    .map(|put| WriteRequest::builder().put_request(put).build())
                    .map_err(build_error)
            })
            .collect::<Result<Vec<_>, _>>()?;
        self.batch_write(puts).await
    }

    async fn connection(&self, id: &str) -> Result<Option<Connection>, StoreError> {
        self.get(&connection_pk(id), CONNECTION_SK)
            .await?
            .map(|item| decode_connection(&item))
            .transpose()
    }

    async fn remove_connection(&self, id: &str) -> Result<Option<Connection>, StoreError> {
        let Some(item) = self.delete(&connection_pk(id), CONNECTION_SK).await? else {
            return Ok(None);
        };
        let conn = decode_connection(&item)?;
        // Clean up after an expired connection too, but report it as absent.
        let mut keys = vec![key(
            &user_pk(&conn.tenant, &conn.user),
            &format!("{USER_CONNECTION_SK_PREFIX}{id}"),
        )];
        keys.extend(
            conn.rooms
                .iter()
                .map(|room| subscription_key(&conn.tenant, room, id)),
        );
        let deletes = keys
            .into_iter()
            .map(|k| {
                DeleteRequest::builder()
                    .set_key(Some(k))
                    .build()
                    .map(|d| WriteRequest::builder().delete_request(d).build())
                    .map_err(build_error)
            })
            .collect::<Result<Vec<_>, _>>()?;
        self.batch_write(deletes).await?;
        Ok(is_live(&item, now_secs()).then_some(conn))
    }

    async fn join_room(
        &self,
        conn_id: &str,
        room: &str,
        max_rooms: usize,
    ) -> Result<JoinOutcome, StoreError> {
        let pk = connection_pk(conn_id);
        for attempt in 0..OPTIMISTIC_ATTEMPTS {
            let mut x = Expr::default();
            let rooms = x.name(ATTR_ROOMS);
            let update = format!(
                "SET {rooms} = list_append({rooms}, {})",
                x.value(AttributeValue::L(vec![s(room)]))
            );
            let condition = format!(
                "{} AND size({rooms}) < {} AND NOT contains({rooms}, {})",
                live_condition(&mut x, now_secs()),
                x.value(n(max_rooms as u64)),
                x.value(s(room))
            );
            match self
                .update(&pk, CONNECTION_SK, &update, Some(&condition), x, true)
                .await?
            {
                Written::Done(item) => {
                    let item = item.ok_or_else(|| {
                        StoreError::Other("UpdateItem ALL_NEW returned nothing".into())
                    })?;
                    let conn = decode_connection(&item)?;
                    let ttl = Fields(&item).u64(ATTR_TTL)?;
                    self.put_subscription(&conn, room, ttl).await?;
                    return Ok(JoinOutcome::Joined);
                }
                Written::ConditionFailed => {
                    // Which part failed? Read the connection to tell.
                    let Some(item) = self.get(&pk, CONNECTION_SK).await? else {
                        return Err(StoreError::NotFound);
                    };
                    let conn = decode_connection(&item)?;
                    if conn.in_room(room) {
                        let ttl = Fields(&item).u64(ATTR_TTL)?;
                        self.put_subscription(&conn, room, ttl).await?;
                        return Ok(JoinOutcome::AlreadyJoined);
                    }
                    if conn.rooms.len() >= max_rooms {
                        return Ok(JoinOutcome::TooManyRooms);
                    }
                    // A concurrent leave or join changed the list in between: try again.
                    backoff(attempt).await;
                }
            }
        }
        Err(StoreError::Conflict(format!(
            "join {conn_id} to {room}: the connection kept changing"
        )))
    }

    async fn leave_room(&self, conn_id: &str, room: &str) -> Result<bool, StoreError> {
        let pk = connection_pk(conn_id);
        for attempt in 0..OPTIMISTIC_ATTEMPTS {
            let Some(item) = self.get(&pk, CONNECTION_SK).await? else {
                return Ok(false);
            };
            let conn = decode_connection(&item)?;
            let Some(index) = conn.rooms.iter().position(|r| r == room) else {
                return Ok(false);
            };
            // Lists can only be edited by index: remove it only if it still holds this room.
            let mut x = Expr::default();
            let element = format!("{}[{index}]", x.name(ATTR_ROOMS));
            let condition = format!("{element} = {}", x.value(s(room)));
            let update = format!("REMOVE {element}");
            match self
                .update(&pk, CONNECTION_SK, &update, Some(&condition), x, false)
                .await?
            {
                Written::Done(_) => {
                    let (pk, sk) = subscription_pk_sk(&conn.tenant, room, conn_id);
                    self.delete(&pk, &sk).await?;
                    return Ok(true);
                }
                Written::ConditionFailed => backoff(attempt).await,
            }
        }
        Err(StoreError::Conflict(format!(
            "leave {conn_id} from {room}: the connection kept changing"
        )))
    }

    async fn room_connections(&self, room: &RoomRef) -> Result<Vec<Subscriber>, StoreError> {
        self.query(&room_pk(room), SortRange::Prefix(SUBSCRIPTION_SK_PREFIX))
            .await?
            .iter()
            .map(|item| {
                let f = Fields(item);
                Ok(Subscriber {
                    conn_id: f.suffix(ATTR_SK, SUBSCRIPTION_SK_PREFIX)?,
                    user: f.s(ATTR_USER)?,
                })
            })
            .collect()
    }

    async fn user_connections(
        &self,
        tenant: &str,
        user: &str,
    ) -> Result<Vec<Connection>, StoreError> {
        let index = self
            .query(
                &user_pk(tenant, user),
                SortRange::Prefix(USER_CONNECTION_SK_PREFIX),
            )
            .await?;
        if index.is_empty() {
            return Ok(Vec::new());
        }
        let keys = index
            .iter()
            .map(|item| {
                let id = Fields(item).suffix(ATTR_SK, USER_CONNECTION_SK_PREFIX)?;
                Ok(key(&connection_pk(&id), CONNECTION_SK))
            })
            .collect::<Result<Vec<_>, StoreError>>()?;
        let mut conns = self
            .batch_get(keys)
            .await?
            .iter()
            .map(decode_connection)
            .collect::<Result<Vec<_>, _>>()?;
        conns.sort_by(|a, b| a.id.cmp(&b.id));
        Ok(conns)
    }

    async fn take_rate_token(
        &self,
        conn_id: &str,
        policy: &RatePolicy,
        now_ms: u64,
    ) -> Result<RateDecision, StoreError> {
        let pk = connection_pk(conn_id);
        for attempt in 0..OPTIMISTIC_ATTEMPTS {
            let item = self
                .get(&pk, CONNECTION_SK)
                .await?
                .ok_or(StoreError::NotFound)?;
            let previous = item
                .get(ATTR_RATE)
                .cloned()
                .unwrap_or(AttributeValue::Null(true));
            let mut state: RateState = Fields(&item).json(ATTR_RATE)?.unwrap_or_default();
            let decision = state.take(policy, now_ms);
            // Optimistic: write back only if nobody else took a token since we read.
            let mut x = Expr::default();
            let rate = x.name(ATTR_RATE);
            let update = format!("SET {rate} = {}", x.value(json_attr(&state)?));
            let condition = format!("{rate} = {}", x.value(previous));
            match self
                .update(&pk, CONNECTION_SK, &update, Some(&condition), x, false)
                .await?
            {
                Written::Done(_) => return Ok(decision),
                Written::ConditionFailed => backoff(attempt).await,
            }
        }
        Err(StoreError::Conflict(format!(
            "rate bucket of {conn_id} kept changing"
        )))
    }

    async fn set_status(
        &self,
        tenant: &str,
        user: &str,
        status: PresenceStatus,
    ) -> Result<(), StoreError> {
        let mut item = key(&user_pk(tenant, user), USER_STATUS_SK);
        item.insert(ATTR_STATUS.into(), enum_attr(&status)?);
        // Outlives every connection the user has now; a status only shows while one lives.
        item.insert(ATTR_TTL.into(), n(now_secs() + CONNECTION_TTL_SECS));
        self.put(item, None).await.map(|_| ())
    }

    async fn presence(
        &self,
        tenant: &str,
        users: &[String],
    ) -> Result<Vec<Option<PresenceStatus>>, StoreError> {
        // Owned names: a closure over borrowed ones trips the compiler's higher-ranked lifetime
        // inference inside async_trait futures.
        let lookups = users
            .iter()
            .cloned()
            .map(|user| async move { self.user_presence(tenant, &user).await });
        let statuses: Vec<Result<Option<PresenceStatus>, StoreError>> =
            futures::stream::iter(lookups)
                .buffered(PRESENCE_CONCURRENCY)
                .collect()
                .await;
        statuses.into_iter().collect()
    }
}

#[async_trait::async_trait]
impl HistoryStore for DynamoStore {
    async fn append(&self, room: &RoomRef, msg: NewMessage) -> Result<Appended, StoreError> {
        let pk = room_pk(room);
        let idempotency_sk = format!("{IDEMPOTENCY_SK_PREFIX}{}#{}", msg.from, msg.id);
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

    async fn head(&self, room: &RoomRef) -> Result<u64, StoreError> {
        self.head_of(&room_pk(room)).await
    }

    async fn messages(&self, room: &RoomRef, query: HistoryQuery) -> Result<Page, StoreError> {
        let pk = room_pk(room);
        let head = self.head_of(&pk).await?;
        let Some((lo, hi, more)) = page_range(query, head) else {
            return Ok(Page::default());
        };
        let messages = self
            .query(&pk, SortRange::Between(message_sk(lo), message_sk(hi)))
            .await?
            .iter()
            .map(|item| decode_message(room, item))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Page { messages, more })
    }

    async fn message(&self, room: &RoomRef, seq: u64) -> Result<Option<MessageView>, StoreError> {
        if seq == 0 {
            return Ok(None);
        }
        self.get(&room_pk(room), &message_sk(seq))
            .await?
            .map(|item| decode_message(room, &item))
            .transpose()
    }

    async fn amend(
        &self,
        room: &RoomRef,
        seq: u64,
        change: Amendment,
    ) -> Result<MessageView, StoreError> {
        let (update, mut x) = amendment_update(change)?;
        let condition = live_condition(&mut x, now_secs());
        match self
            .update(
                &room_pk(room),
                &message_sk(seq),
                &update,
                Some(&condition),
                x,
                true,
            )
            .await?
        {
            Written::Done(Some(item)) => decode_message(room, &item),
            Written::Done(None) => Err(StoreError::Other(
                "UpdateItem ALL_NEW returned nothing".into(),
            )),
            Written::ConditionFailed => Err(StoreError::NotFound),
        }
    }

    async fn advance_read(
        &self,
        room: &RoomRef,
        user: &str,
        seq: u64,
    ) -> Result<(u64, bool), StoreError> {
        if seq == 0 {
            // Never an advance; without this a missing cursor would be "moved" to 0.
            return Ok((self.read_cursor(room, user).await?, false));
        }
        let mut x = Expr::default();
        let (cursor, to) = (x.name(ATTR_SEQ), x.value(n(seq)));
        let update = format!("SET {cursor} = {to}");
        let condition = format!("attribute_not_exists({cursor}) OR {cursor} < {to}");
        let sk = format!("{READ_CURSOR_SK_PREFIX}{user}");
        match self
            .update(&room_pk(room), &sk, &update, Some(&condition), x, false)
            .await?
        {
            Written::Done(_) => Ok((seq, true)),
            Written::ConditionFailed => Ok((self.read_cursor(room, user).await?, false)),
        }
    }

    async fn read_cursor(&self, room: &RoomRef, user: &str) -> Result<u64, StoreError> {
        let sk = format!("{READ_CURSOR_SK_PREFIX}{user}");
        match self.get(&room_pk(room), &sk).await? {
            Some(item) => Fields(&item).u64(ATTR_SEQ),
            None => Ok(0),
        }
    }

    async fn touch_member(&self, room: &RoomRef, user: &str, at_ms: u64) -> Result<(), StoreError> {
        let mut x = Expr::default();
        let (seen, at) = (x.name(ATTR_LAST_SEEN), x.value(n(at_ms)));
        let update = format!("SET {seen} = {at}");
        // Last seen never goes back; a failed condition means it is already later.
        let condition = format!("attribute_not_exists({seen}) OR {seen} < {at}");
        let sk = format!("{MEMBER_SK_PREFIX}{user}");
        self.update(&room_pk(room), &sk, &update, Some(&condition), x, false)
            .await
            .map(|_| ())
    }

    async fn members(&self, room: &RoomRef, limit: usize) -> Result<Vec<Member>, StoreError> {
        let mut members = self
            .query(&room_pk(room), SortRange::Prefix(MEMBER_SK_PREFIX))
            .await?
            .iter()
            .map(|item| {
                let f = Fields(item);
                Ok(Member {
                    user: f.suffix(ATTR_SK, MEMBER_SK_PREFIX)?,
                    last_seen: f.u64(ATTR_LAST_SEEN)?,
                })
            })
            .collect::<Result<Vec<_>, StoreError>>()?;
        sort_members(&mut members);
        members.truncate(limit);
        Ok(members)
    }

    async fn conversation(&self, room: &RoomRef) -> Result<Option<Conversation>, StoreError> {
        let Some(item) = self.get(&room_pk(room), CONVERSATION_SK).await? else {
            return Ok(None);
        };
        let f = Fields(&item);
        Ok(Some(Conversation {
            status: f.enum_value(ATTR_STATUS)?,
            agent: f.opt_s(ATTR_AGENT)?,
            version: f.u64(ATTR_VERSION)?,
            since: f.u64(ATTR_SINCE)?,
        }))
    }

    async fn put_conversation(
        &self,
        room: &RoomRef,
        next: &Conversation,
    ) -> Result<(), StoreError> {
        let mut item = key(&room_pk(room), CONVERSATION_SK);
        item.insert(ATTR_STATUS.into(), enum_attr(&next.status)?);
        if let Some(agent) = &next.agent {
            item.insert(ATTR_AGENT.into(), s(agent));
        }
        item.insert(ATTR_VERSION.into(), n(next.version));
        item.insert(ATTR_SINCE.into(), n(next.since));
        let mut x = Expr::default();
        let condition = match next.version {
            0 => return Err(StoreError::Conflict("versions start at 1".into())),
            1 => format!("attribute_not_exists({})", x.name(ATTR_PK)),
            v => format!("{} = {}", x.name(ATTR_VERSION), x.value(n(v - 1))),
        };
        match self.put(item, Some((condition, x))).await? {
            Written::Done(_) => Ok(()),
            Written::ConditionFailed => Err(StoreError::Conflict(format!(
                "conversation {} is not at version {}",
                room.key(),
                next.version.saturating_sub(1)
            ))),
        }
    }
}

// ---- keys ----

fn connection_pk(conn_id: &str) -> String {
    format!("{CONNECTION_PK_PREFIX}{conn_id}")
}

fn user_pk(tenant: &str, user: &str) -> String {
    format!("{USER_PK_PREFIX}{tenant}#{user}")
}

fn room_pk(room: &RoomRef) -> String {
    format!("{ROOM_PK_PREFIX}{}", room.key())
}

fn message_sk(seq: u64) -> String {
    format!("{MESSAGE_SK_PREFIX}{seq:020}")
}

fn key(pk: &str, sk: &str) -> Item {
    HashMap::from([(ATTR_PK.to_owned(), s(pk)), (ATTR_SK.to_owned(), s(sk))])
}

/// (pk, sk) of a connection's subscription to a room of its tenant.
fn subscription_pk_sk(tenant: &str, room: &str, conn_id: &str) -> (String, String) {
    (
        room_pk(&RoomRef::new(tenant, room)),
        format!("{SUBSCRIPTION_SK_PREFIX}{conn_id}"),
    )
}

fn subscription_key(tenant: &str, room: &str, conn_id: &str) -> Item {
    let (pk, sk) = subscription_pk_sk(tenant, room, conn_id);
    key(&pk, &sk)
}

/// Which sort keys of a partition a Query selects.
enum SortRange {
    All,
    Prefix(&'static str),
    /// Inclusive bounds.
    Between(String, String),
}

// ---- time and TTL ----

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// A connection's items expire [`CONNECTION_TTL_SECS`] after it was made. The later of its
/// `connected_at` and our clock anchors it, so a skewed (or synthetic) `connected_at` can never
/// expire a live connection early; the price is at most the skew in extra retention.
fn connection_ttl(connected_at_ms: u64) -> u64 {
    (connected_at_ms / 1000).max(now_secs()) + CONNECTION_TTL_SECS
}

/// Whether DynamoDB would still keep the item: no `ttl`, a `ttl` in the future, or one that is
/// not a number (DynamoDB ignores those too).
fn is_live(item: &Item, now: u64) -> bool {
    match item.get(ATTR_TTL) {
        Some(AttributeValue::N(ttl)) => ttl.parse::<u64>().map_or(true, |ttl| ttl > now),
        _ => true,
    }
}

/// Condition: the item exists and has not expired.
fn live_condition(x: &mut Expr, now: u64) -> String {
    let ttl = x.name(ATTR_TTL);
    format!(
        "attribute_exists({}) AND (attribute_not_exists({ttl}) OR {ttl} > {})",
        x.name(ATTR_PK),
        x.value(n(now))
    )
}

// ---- expressions ----

/// Placeholders of one expression set: `#attr` for names (every attribute goes through one, so
/// reserved words like `ttl`, `from` and `name` need no care) and `:vN` for values.
#[derive(Default)]
struct Expr {
    names: HashMap<String, String>,
    values: HashMap<String, AttributeValue>,
}

impl Expr {
    fn name(&mut self, attr: &str) -> String {
        let placeholder = format!("#{attr}");
        self.names.insert(placeholder.clone(), attr.to_owned());
        placeholder
    }

    fn value(&mut self, value: AttributeValue) -> String {
        let placeholder = format!(":v{}", self.values.len());
        self.values.insert(placeholder.clone(), value);
        placeholder
    }

    /// DynamoDB rejects empty maps, so an unused one is not sent.
    fn names(&self) -> Option<HashMap<String, String>> {
        (!self.names.is_empty()).then(|| self.names.clone())
    }

    fn values(&self) -> Option<HashMap<String, AttributeValue>> {
        (!self.values.is_empty()).then(|| self.values.clone())
    }
}

/// The UpdateItem for an amendment, derived from [`apply_amendment`] so that edits and
/// tombstones mean the same here as in every other backend: it is applied to two messages that
/// differ in every amendable attribute. An attribute that comes out equal in both no longer
/// depends on its old value, so the amendment sets it (or removes it, when absent); one that still
/// differs is kept as stored.
fn amendment_update(change: Amendment) -> Result<(String, Expr), StoreError> {
    let probe = |body: Option<&str>, meta, edited_ts, deleted| MessageView {
        room: String::new(),
        seq: 1,
        id: String::new(),
        from: String::new(),
        name: None,
        body: body.map(str::to_owned),
        meta,
        ts: 0,
        edited_ts,
        deleted,
    };
    let mut a = probe(Some("a"), Some(serde_json::json!(1)), Some(1), false);
    let mut b = probe(None, None, Some(2), true);
    let (before_a, before_b) = (message_attributes(&a)?, message_attributes(&b)?);
    apply_amendment(&mut a, change.clone());
    apply_amendment(&mut b, change);
    let (after_a, after_b) = (message_attributes(&a)?, message_attributes(&b)?);

    let mut amendable: Vec<&String> = before_a
        .keys()
        .chain(before_b.keys())
        .filter(|attr| before_a.get(*attr) != before_b.get(*attr))
        .collect();
    amendable.sort();
    amendable.dedup();

    let mut x = Expr::default();
    let (mut set, mut remove) = (Vec::new(), Vec::new());
    for attr in amendable {
        if after_a.get(attr) != after_b.get(attr) {
            continue;
        }
        match after_a.get(attr) {
            Some(value) => set.push(format!("{} = {}", x.name(attr), x.value(value.clone()))),
            None => remove.push(x.name(attr)),
        }
    }
    let mut update = String::new();
    if !set.is_empty() {
        update = format!("SET {}", set.join(", "));
    }
    if !remove.is_empty() {
        update = format!("{update} REMOVE {}", remove.join(", "));
    }
    if update.is_empty() {
        return Err(StoreError::Other("the amendment changes nothing".into()));
    }
    Ok((update.trim().to_owned(), x))
}

// ---- attribute conversion ----

fn s(value: impl Into<String>) -> AttributeValue {
    AttributeValue::S(value.into())
}

fn n(value: u64) -> AttributeValue {
    AttributeValue::N(value.to_string())
}

fn strings(values: &[String]) -> AttributeValue {
    AttributeValue::L(values.iter().map(|v| s(v.as_str())).collect())
}

/// A value as a JSON string attribute.
fn json_attr<T: Serialize + ?Sized>(value: &T) -> Result<AttributeValue, StoreError> {
    serde_json::to_string(value)
        .map(AttributeValue::S)
        .map_err(|e| StoreError::Other(format!("cannot encode attribute: {e}")))
}

/// A unit enum as its serde (protocol) name.
fn enum_attr<T: Serialize>(value: &T) -> Result<AttributeValue, StoreError> {
    match serde_json::to_value(value) {
        Ok(serde_json::Value::String(name)) => Ok(s(name)),
        other => Err(StoreError::Other(format!(
            "cannot encode {other:?} as a string attribute"
        ))),
    }
}

/// A string attribute, or "" (for attributes whose presence is already known).
fn string_of(item: &Item, attr: &str) -> String {
    match item.get(attr) {
        Some(AttributeValue::S(v)) => v.clone(),
        _ => String::new(),
    }
}

/// Typed reads of an item's attributes; errors name the attribute.
struct Fields<'a>(&'a Item);

impl Fields<'_> {
    fn corrupt(attr: &str, want: &str) -> StoreError {
        StoreError::Other(format!("stored item: attribute {attr:?} is not {want}"))
    }

    fn opt_s(&self, attr: &str) -> Result<Option<String>, StoreError> {
        match self.0.get(attr) {
            None | Some(AttributeValue::Null(_)) => Ok(None),
            Some(AttributeValue::S(v)) => Ok(Some(v.clone())),
            Some(_) => Err(Self::corrupt(attr, "a string")),
        }
    }

    fn s(&self, attr: &str) -> Result<String, StoreError> {
        self.opt_s(attr)?
            .ok_or_else(|| Self::corrupt(attr, "present"))
    }

    /// A string attribute with `prefix` removed (ids inside sort keys).
    fn suffix(&self, attr: &str, prefix: &str) -> Result<String, StoreError> {
        let value = self.s(attr)?;
        value
            .strip_prefix(prefix)
            .map(str::to_owned)
            .ok_or_else(|| Self::corrupt(attr, &format!("prefixed {prefix:?}")))
    }

    fn opt_u64(&self, attr: &str) -> Result<Option<u64>, StoreError> {
        match self.0.get(attr) {
            None | Some(AttributeValue::Null(_)) => Ok(None),
            Some(AttributeValue::N(v)) => v
                .parse()
                .map(Some)
                .map_err(|_| Self::corrupt(attr, "an unsigned integer")),
            Some(_) => Err(Self::corrupt(attr, "a number")),
        }
    }

    fn u64(&self, attr: &str) -> Result<u64, StoreError> {
        self.opt_u64(attr)?
            .ok_or_else(|| Self::corrupt(attr, "present"))
    }

    /// A list of strings; absent is empty.
    fn strings(&self, attr: &str) -> Result<Vec<String>, StoreError> {
        match self.0.get(attr) {
            None => Ok(Vec::new()),
            Some(AttributeValue::L(values)) => values
                .iter()
                .map(|v| match v {
                    AttributeValue::S(v) => Ok(v.clone()),
                    _ => Err(Self::corrupt(attr, "a list of strings")),
                })
                .collect(),
            Some(_) => Err(Self::corrupt(attr, "a list")),
        }
    }

    /// A boolean; absent is false.
    fn flag(&self, attr: &str) -> Result<bool, StoreError> {
        match self.0.get(attr) {
            None => Ok(false),
            Some(AttributeValue::Bool(v)) => Ok(*v),
            Some(_) => Err(Self::corrupt(attr, "a boolean")),
        }
    }

    /// A JSON string attribute, decoded.
    fn json<T: DeserializeOwned>(&self, attr: &str) -> Result<Option<T>, StoreError> {
        self.opt_s(attr)?
            .map(|v| serde_json::from_str(&v).map_err(|_| Self::corrupt(attr, "valid JSON")))
            .transpose()
    }

    /// A unit enum stored by its serde name.
    fn enum_value<T: DeserializeOwned>(&self, attr: &str) -> Result<T, StoreError> {
        serde_json::from_value(serde_json::Value::String(self.s(attr)?))
            .map_err(|_| Self::corrupt(attr, "a known name"))
    }
}

fn connection_item(conn: &Connection, ttl: u64) -> Result<Item, StoreError> {
    let mut item = key(&connection_pk(&conn.id), CONNECTION_SK);
    item.extend([
        (ATTR_TENANT.to_owned(), s(conn.tenant.as_str())),
        (ATTR_USER.to_owned(), s(conn.user.as_str())),
        (ATTR_ROLE.to_owned(), enum_attr(&conn.role)?),
        (ATTR_GRANTS.to_owned(), strings(&conn.grants)),
        (ATTR_CONNECTED_AT.to_owned(), n(conn.connected_at_ms)),
        (
            ATTR_TOKEN_EXPIRES_AT.to_owned(),
            n(conn.token_expires_at_ms),
        ),
        (ATTR_ROOMS.to_owned(), strings(&conn.rooms)),
        (ATTR_RATE.to_owned(), json_attr(&conn.rate)?),
        (ATTR_TTL.to_owned(), n(ttl)),
    ]);
    if let Some(name) = &conn.name {
        item.insert(ATTR_NAME.into(), s(name.as_str()));
    }
    Ok(item)
}

fn decode_connection(item: &Item) -> Result<Connection, StoreError> {
    let f = Fields(item);
    Ok(Connection {
        id: f.suffix(ATTR_PK, CONNECTION_PK_PREFIX)?,
        tenant: f.s(ATTR_TENANT)?,
        user: f.s(ATTR_USER)?,
        name: f.opt_s(ATTR_NAME)?,
        role: f.enum_value(ATTR_ROLE)?,
        grants: f.strings(ATTR_GRANTS)?,
        connected_at_ms: f.u64(ATTR_CONNECTED_AT)?,
        token_expires_at_ms: f.u64(ATTR_TOKEN_EXPIRES_AT)?,
        rooms: f.strings(ATTR_ROOMS)?,
        rate: f.json(ATTR_RATE)?.unwrap_or_default(),
    })
}

fn subscription_item(conn: &Connection, room: &str, ttl: u64) -> Item {
    let mut item = subscription_key(&conn.tenant, room, &conn.id);
    item.insert(ATTR_USER.into(), s(conn.user.as_str()));
    item.insert(ATTR_TTL.into(), n(ttl));
    item
}

/// A message's own attributes (no key, no ttl).
fn message_attributes(m: &MessageView) -> Result<Item, StoreError> {
    let mut item = Item::from([
        (ATTR_SEQ.to_owned(), n(m.seq)),
        (ATTR_ID.to_owned(), s(m.id.as_str())),
        (ATTR_FROM.to_owned(), s(m.from.as_str())),
        (ATTR_TS.to_owned(), n(m.ts)),
    ]);
    if let Some(name) = &m.name {
        item.insert(ATTR_NAME.into(), s(name.as_str()));
    }
    if let Some(body) = &m.body {
        item.insert(ATTR_BODY.into(), s(body.as_str()));
    }
    if let Some(meta) = &m.meta {
        item.insert(ATTR_META.into(), json_attr(meta)?);
    }
    if let Some(edited) = m.edited_ts {
        item.insert(ATTR_EDITED_TS.into(), n(edited));
    }
    if m.deleted {
        item.insert(ATTR_DELETED.into(), AttributeValue::Bool(true));
    }
    Ok(item)
}

fn message_item(pk: &str, m: &MessageView, ttl: Option<u64>) -> Result<Item, StoreError> {
    let mut item = message_attributes(m)?;
    item.extend(key(pk, &message_sk(m.seq)));
    if let Some(ttl) = ttl {
        item.insert(ATTR_TTL.into(), n(ttl));
    }
    Ok(item)
}

fn decode_message(room: &RoomRef, item: &Item) -> Result<MessageView, StoreError> {
    let f = Fields(item);
    Ok(MessageView {
        room: room.room.clone(),
        seq: f.u64(ATTR_SEQ)?,
        id: f.s(ATTR_ID)?,
        from: f.s(ATTR_FROM)?,
        name: f.opt_s(ATTR_NAME)?,
        body: f.opt_s(ATTR_BODY)?,
        meta: f.json(ATTR_META)?,
        ts: f.u64(ATTR_TS)?,
        edited_ts: f.opt_u64(ATTR_EDITED_TS)?,
        deleted: f.flag(ATTR_DELETED)?,
    })
}

// ---- errors and retries ----

fn error_code<E: ProvideErrorMetadata, R>(e: &SdkError<E, R>) -> Option<&str> {
    e.as_service_error().and_then(ProvideErrorMetadata::code)
}

fn is_condition_failure<E: ProvideErrorMetadata, R>(e: &SdkError<E, R>) -> bool {
    error_code(e) == Some("ConditionalCheckFailedException")
}

/// Throttling, 5xx, timeouts and unreachable endpoints are `Unavailable` (retryable; the SDK
/// has already retried them). A write that timed out may still have landed: retrying is safe
/// because every write here is idempotent or conditional. Anything else is `Other`.
fn sdk_error<E>(
    operation: &str,
    e: SdkError<E, aws_sdk_dynamodb::config::http::HttpResponse>,
) -> StoreError
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
{
    const RETRYABLE: [&str; 6] = [
        "ThrottlingException",
        "ProvisionedThroughputExceededException",
        "RequestLimitExceeded",
        "InternalServerError",
        "ServiceUnavailable",
        "TransactionInProgressException",
    ];
    let server_side = e
        .raw_response()
        .is_some_and(|r| r.status().is_server_error());
    let retryable = server_side
        || matches!(e, SdkError::TimeoutError(_) | SdkError::DispatchFailure(_))
        || error_code(&e).is_some_and(|code| RETRYABLE.contains(&code));
    let message = format!("DynamoDB {operation}: {}", DisplayErrorContext(&e));
    if retryable {
        tracing::warn!(%message, "DynamoDB unavailable");
        StoreError::Unavailable(message)
    } else {
        StoreError::Other(message)
    }
}

fn build_error(e: BuildError) -> StoreError {
    StoreError::Other(format!("invalid DynamoDB request: {e}"))
}

/// The cancellation reason codes, in the order of the transaction's items. Taken from the
/// structured reasons; when a response carries none, from the message, which lists them as
/// `[ConditionalCheckFailed, None, None]`.
fn cancellation_codes(e: &TransactionCanceledException) -> Vec<String> {
    let structured: Vec<String> = e
        .cancellation_reasons()
        .iter()
        .map(|r| r.code().unwrap_or("None").to_owned())
        .collect();
    if !structured.is_empty() {
        return structured;
    }
    codes_from_message(e.message().unwrap_or_default())
}

fn codes_from_message(message: &str) -> Vec<String> {
    let Some((_, listed)) = message.rsplit_once('[') else {
        return Vec::new();
    };
    listed
        .trim_end_matches(']')
        .split(',')
        .map(|code| code.trim().to_owned())
        .collect()
}

/// Sleeps before retry number `attempt + 1` of an optimistic write: up to 10 ms, doubling,
/// capped at 500 ms.
async fn backoff(attempt: u32) {
    let cap = Duration::from_millis(10u64 << attempt.min(6)).min(Duration::from_millis(500));
    sleep_up_to(cap).await;
}

/// The longest pause before an append's next round: 40 ms after the first lost round, halving
/// with each further loss down to 2 ms. The writers that have lost longest retry soonest, which
/// keeps a hot room fair: with exponential backoff instead, one of 8 writers hammering one room
/// (the conformance suite) needed about 70 rounds for one message; with this, about 15, and fewer
/// wasted transactions than retrying at once.
fn append_pause_cap(attempt: u32) -> Duration {
    (APPEND_FIRST_PAUSE / (1 << attempt.min(8))).max(APPEND_LAST_PAUSE)
}

/// Sleeps a random time up to `cap` ("full jitter"), so writers that collided spread out
/// instead of colliding again.
async fn sleep_up_to(cap: Duration) {
    let cap_ms = u64::try_from(cap.as_millis()).unwrap_or(u64::MAX);
    // The generator is not Send: draw before awaiting.
    let ms = rand::rng().random_range(0..=cap_ms);
    tokio::time::sleep(Duration::from_millis(ms)).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sort_key_prefixes_do_not_overlap() {
        let room_sks = [
            SUBSCRIPTION_SK_PREFIX,
            HEAD_SK,
            MESSAGE_SK_PREFIX,
            IDEMPOTENCY_SK_PREFIX,
            READ_CURSOR_SK_PREFIX,
            MEMBER_SK_PREFIX,
        ];
        for a in room_sks {
            for b in room_sks {
                if a != b {
                    assert!(!b.starts_with(a), "{b} starts with {a}");
                }
            }
        }
        // A history range never reaches a member key.
        let (lo, hi) = (message_sk(0), message_sk(u64::MAX));
        let member = format!("{MEMBER_SK_PREFIX}alice");
        assert!(!(lo.as_str()..=hi.as_str()).contains(&member.as_str()));
        assert!(message_sk(9) < message_sk(10));
        assert!(!USER_STATUS_SK.starts_with(USER_CONNECTION_SK_PREFIX));
    }

    #[test]
    fn amendments_follow_apply_amendment() {
        let (edit, x) = amendment_update(Amendment::Edit {
            body: "new".into(),
            at_ms: 7,
        })
        .unwrap();
        assert_eq!(edit, "SET #body = :v0, #edited_ts = :v1");
        assert_eq!(x.values[":v0"], s("new"));
        assert_eq!(x.values[":v1"], n(7));
        let (delete, x) = amendment_update(Amendment::Delete { at_ms: 9 }).unwrap();
        assert_eq!(
            delete,
            "SET #deleted = :v0, #edited_ts = :v1 REMOVE #body, #meta"
        );
        assert_eq!(x.values[":v0"], AttributeValue::Bool(true));
    }

    #[test]
    fn cancellation_codes_from_the_message() {
        assert_eq!(
            codes_from_message(
                "Transaction cancelled, please refer cancellation reasons for specific reasons [None, None, ConditionalCheckFailed]"
            ),
            vec!["None", "None", "ConditionalCheckFailed"]
        );
        assert!(codes_from_message("no list").is_empty());
    }

    #[test]
    fn expired_items_are_not_live() {
        let mut item = key("p", "s");
        assert!(is_live(&item, 100));
        item.insert(ATTR_TTL.into(), n(100));
        assert!(!is_live(&item, 100));
        assert!(is_live(&item, 99));
    }

    #[test]
    fn messages_round_trip() {
        let room = RoomRef::new("t", "r");
        let mut m = stored_message(
            &room,
            3,
            NewMessage {
                id: "a#b".into(),
                from: "alice".into(),
                name: Some("Alice".into()),
                body: "hi".into(),
                meta: Some(serde_json::json!({"k": [1, null]})),
                ts: 5,
            },
        );
        let item = message_item("R#t/r", &m, Some(10)).unwrap();
        assert_eq!(decode_message(&room, &item).unwrap(), m);
        apply_amendment(&mut m, Amendment::Delete { at_ms: 6 });
        let item = message_item("R#t/r", &m, None).unwrap();
        assert_eq!(decode_message(&room, &item).unwrap(), m);
    }
}
