//! [`DynamoStore`]: the [`ConnectionStore`], the [`HistoryStore`] and the other store ports on ONE
//! DynamoDB table.
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
//! | request bucket | `Q#{tenant}#{user}` | `Q` | rate (JSON): the user's HTTP API request rate | an hour after the last request |
//! | room subscription | `R#{tenant}/{room}` | `S#{conn_id}` | user | connection |
//! | message | `R#{tenant}/{room}` | `M#{seq:020}` | seq, id, from, name, role, via, body, meta (JSON), ts, edited_ts, deleted | retention, if set |
//! | idempotency key | `R#{tenant}/{room}` | `I#{from}#{id}` | seq | retention, if set |
//! | room head | `R#{tenant}/{room}` | `ST#HEAD` | seq | never |
//! | support conversation | `R#{tenant}/{room}` | `ST#CONV` | status, agent, version, since (ms), previous_agent | never |
//! | member and read cursor | `R#{tenant}/{room}` | `ST#MB#{user}` | last_seen (ms; once the user joined), read_seq (once their cursor moved) | never |
//! | big room's occupancy announcements | `R#{tenant}/{room}` | `OC` | last_announced (ms), trailing_at (ms, while an invocation holds the coalesced announcement) | an hour after the last write |
//! | attachment upload slot | `R#{tenant}/{room}` | `UP#{attachment id}` | user (uploader), name, size, type, created_at (ms), claimed_by (once a message carries it) | a day after the grant while unclaimed; none once claimed |
//! | support desk record | `DESK#{tenant}#{kind}` | the record's key (user id or room) | version, doc (the JSON document) | never |
//! | upload quota counter | `UQ#{tenant}#{user}` (user), `UQ#{tenant}` (tenant) | `D#{day}` | count, bytes | two days after the day began |
//!
//! The items a join reads, the room's state, share the sort-key prefix `ST#`
//! ([`ROOM_STATE_SK_PREFIX`]). A user's read cursor lives on their member item; a member item
//! without `last_seen` (a cursor moved in a room the user never joined) is not a member.
//!
//! The connection TTL is [`CONNECTION_TTL_SECS`] (API Gateway's 2-hour maximum plus a margin)
//! after the connection was made: `$disconnect` is best effort, the TTL collects what it misses.
//! The head never expires, even when messages do: a seq is never reused, so a resuming client
//! can never mistake a new message for one it has.
//!
//! # Access patterns (no Scan anywhere; nothing grows with the number of connections or rooms)
//!
//! - Fan-out, `room_connections`: Query `pk = R#…` and `begins_with(sk, "S#")`. No other sort key
//!   in a room partition starts with `S#` (the state's `ST#` does not), and history ranges
//!   (`M#` + 20 digits) never reach a state item.
//! - `user_connections`: Query of the `U#` partition's `C#` index items, then one BatchGetItem of
//!   the connection items. The index items carry no copy of the connection, because copies would
//!   have to be rewritten on every join, leave and — per frame — rate-limit token, doubling the
//!   hottest writes; reading a user's few connections (on connect, disconnect, presence change)
//!   costs 1 RCU per connection instead.
//! - `presence`: one Query of each asked user's `U#` partition (bounded concurrency).
//! - History pages: the head (GetItem), then Query `sk BETWEEN M#lo AND M#hi` from
//!   [`page_range`].
//! - Join, `room_state`: one Query `begins_with(sk, "ST#")`, every page of it: the head, the
//!   conversation, and each member item (members, and the joining user's read cursor). Grows
//!   with the room's members only; 1 RCU per 4 KB (about 60 members).
//! - Rate buckets: a frame's token is taken in `admit_frame` (below); an HTTP API request's is a
//!   GetItem and a conditional UpdateItem of the user's request bucket; work charged after a
//!   replay, a page over 16 KB or a presence change in several rooms is one more of each.
//! - Desk records: GetItem; a tenant's records of one kind are a Query of their partition, in
//!   key order, up to the asked limit (at most 1000); writes and removals are conditional on
//!   the stored `version`.
//! - Members: Query `begins_with(sk, "ST#MB#")`. The head alone (appends, history pages), a read
//!   cursor, the conversation: GetItem.
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
//! Every client frame is admitted first (`admit_frame`): one consistent read of the connection
//! item answers both the connection and its rate bucket, and one conditional UpdateItem takes
//! the token: 1 RCU + 1 WCU (a concurrent frame that took a token in between costs one more of
//! each).
//!
//! The append of a new message: 1 RCU (consistent head read) + 6 WCU (transactional writes cost
//! 2 per item per KB: head, message, idempotency key). A resent id: 1 RCU for the head, the
//! cancelled transaction (its error response reports no capacity; DynamoDB still bills the
//! attempted writes), then 1 RCU to read the original message. Each lost race adds one
//! cancelled transaction. Every request records what the backend reports in [`DynamoStore::consumed`];
//! moto reports flat placeholders (0.5 per GetItem, nothing for TransactWriteItems), not
//! DynamoDB's billing.
//!
//! # Code
//!
//! - `mod.rs`: [`DynamoStore`], [`DynamoConfig`], [`Consumed`], [`emulator_client`].
//! - `schema.rs`: key and attribute names, key builders (re-exported here).
//! - `admin.rs`: [`DynamoStore::ensure_table`].
//! - `calls.rs`: the request wrappers (consistent reads without expired items, conditional
//!   writes, batches) and capacity recording.
//! - `errors.rs`: SDK errors → [`StoreError`], transaction cancellation reasons.
//! - `retry.rs`: pauses between retries.
//! - `expiry.rs`: connection TTLs and what counts as expired.
//! - `codec.rs`: items ⇄ core types. `expr.rs`: expression placeholders, amendment updates.
//! - `append.rs`: the gap-free append.
//! - `connections.rs`: the [`ConnectionStore`]. `history.rs`: the [`HistoryStore`].
//! - `attachments.rs`: the [`AttachmentIndex`]: upload slots in the room's partition, claims,
//!   per-day quotas in one transaction; abandoned slots expire by TTL (and their bytes by the
//!   bucket's lifecycle rule), so there is nothing to sweep.
//! - `desk.rs`: the [`DeskDirectory`]: the support desk's versioned records.
//! - `occupancy.rs`: the [`OccupancyGate`] of invocations that share only the table: big
//!   rooms' occupancy announcements coalesced across them by conditional writes.
//!
//! [`ConnectionStore`]: roomcast_core::store::ConnectionStore
//! [`HistoryStore`]: roomcast_core::store::HistoryStore
//! [`AttachmentIndex`]: roomcast_core::store::AttachmentIndex
//! [`DeskDirectory`]: roomcast_core::store::DeskDirectory
//! [`OccupancyGate`]: roomcast_core::occupancy::OccupancyGate
//! [`StoreError`]: roomcast_core::store::StoreError
//! [`StoreError::Conflict`]: roomcast_core::store::StoreError::Conflict
//! [`page_range`]: roomcast_core::store::rules::page_range

mod admin;
mod append;
mod attachments;
mod calls;
mod codec;
mod connections;
mod desk;
mod errors;
mod events;
mod expiry;
mod expr;
mod history;
mod occupancy;
mod retry;
mod schema;

use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::config::{BehaviorVersion, Credentials, Region};

pub use events::{STREAM_FILTER_PATTERNS, event_of_stream_record};
pub use expiry::{CONNECTION_TTL_MARGIN_SECS, CONNECTION_TTL_SECS};
// Every public name of the schema (the key design) is part of this module's API.
pub use schema::*;

/// What the store does beyond the fixed key design.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DynamoConfig {
    /// How long messages and their idempotency keys are kept; `None` keeps them forever.
    pub message_retention: Option<Duration>,
    /// Rounds an append may lose the race for the room head before giving up with
    /// [`StoreError::Conflict`](roomcast_core::store::StoreError::Conflict).
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
    /// The SDK client every request goes through.
    client: Client,
    /// The table name.
    table: String,
    /// Retention and append attempts.
    config: DynamoConfig,
    /// What the successful requests so far consumed ([`DynamoStore::consumed`]).
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
}
