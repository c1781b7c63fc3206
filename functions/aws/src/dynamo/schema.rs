//! The table's names: key and attribute names, the sort-key layout of each partition, and the
//! builders of every key. The module doc of [`super`] shows the whole layout as a table.

use std::collections::HashMap;

use aws_sdk_dynamodb::types::AttributeValue;
use roomcast_core::store::{DeskKind, RoomRef};

/// An item (or a key) as the SDK sends and returns it.
pub(super) type Item = HashMap<String, AttributeValue>;

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
/// Request bucket (`Q#{tenant}#{user}`): the rate bucket of a user's HTTP API requests.
pub const REQUESTS_PK_PREFIX: &str = "Q#";
/// Request bucket: its one sort key.
pub const REQUESTS_SK: &str = "Q";
/// Room partition (`R#{tenant}/{room}`): subscriptions, messages, idempotency keys, and the
/// room's state (head, members with their read cursors, support conversation).
pub const ROOM_PK_PREFIX: &str = "R#";
/// Room partition: subscriptions, `S#{conn_id}`.
pub const SUBSCRIPTION_SK_PREFIX: &str = "S#";
/// Room partition: messages, `M#{seq:020}` (zero-padded so string order is seq order).
pub const MESSAGE_SK_PREFIX: &str = "M#";
/// Room partition: idempotency keys, `I#{from}#{client id}`.
pub const IDEMPOTENCY_SK_PREFIX: &str = "I#";
/// Room partition: the prefix of every item of the room's state (what a join reads), so one
/// Query reads them all: [`HEAD_SK`], [`CONVERSATION_SK`], [`MEMBER_SK_PREFIX`].
pub const ROOM_STATE_SK_PREFIX: &str = "ST#";
/// Room partition: the head (highest seq).
pub const HEAD_SK: &str = "ST#HEAD";
/// Room partition: the support conversation.
pub const CONVERSATION_SK: &str = "ST#CONV";
/// Room partition: members with their read cursors, `ST#MB#{user}`.
pub const MEMBER_SK_PREFIX: &str = "ST#MB#";

/// Room partition: a big room's occupancy announcements (protocol.md §17), shared by every
/// invocation: [`ATTR_LAST_ANNOUNCED`], [`ATTR_TRAILING_AT`].
pub const OCCUPANCY_SK: &str = "OC";
/// Occupancy: when the last announcement went out (N, epoch ms).
pub const ATTR_LAST_ANNOUNCED: &str = "last_announced";
/// Occupancy: the coalesced announcement an invocation holds is due then (N, epoch ms).
pub const ATTR_TRAILING_AT: &str = "trailing_at";
/// How long an occupancy item lives after its last write (it matters for a second).
pub const OCCUPANCY_TTL_SECS: u64 = 3_600;

/// Room partition: attachment upload slots, `UP#{attachment id}`.
pub const SLOT_SK_PREFIX: &str = "UP#";
/// Upload quota counters: a user's (`UQ#{tenant}#{user}`) and a tenant's (`UQ#{tenant}`), one
/// item per UTC day, `D#{day}` ([`roomcast_core::attachments::day_of`]).
pub const UPLOAD_QUOTA_PK_PREFIX: &str = "UQ#";
/// How long a day's quota counters are kept after the day began (the day and a margin: they
/// are never read after it).
pub const UPLOAD_QUOTA_TTL_SECS: u64 = 2 * 86_400;

/// Desk record partition (`DESK#{tenant}#{kind}`): one support desk record per item, its key
/// as the sort key, so a kind's records are one Query in key order.
pub const DESK_PK_PREFIX: &str = "DESK#";

/// Endpoint item (`EP#{id}`): the endpoint by its id.
pub const ENDPOINT_PK_PREFIX: &str = "EP#";
/// Endpoint item: its one sort key.
pub const ENDPOINT_SK: &str = "EP";
/// The endpoint directory: one partition listing every endpoint, `{tenant}#{id}` (operator-wide
/// ones under [`OPERATOR_TENANT`]), so a tenant's are one Query of a prefix.
pub const ENDPOINT_DIRECTORY_PK: &str = "EPS";
/// The directory's tenant of operator-wide endpoints (`*` is never in a tenant name).
pub const OPERATOR_TENANT: &str = "*";
/// Dead letters of an endpoint (`DL#{endpoint}`), `{at:020}#{event id}`: oldest first.
pub const DEAD_LETTER_PK_PREFIX: &str = "DL#";
/// Attempt records of an endpoint (`AT#{endpoint}`), `{at:020}#{event id}#{attempt:010}`.
pub const ATTEMPT_PK_PREFIX: &str = "AT#";
/// Member events (`EV#{tenant}/{room}`), `{event id}`: written for the stream to carry.
pub const MEMBER_EVENT_PK_PREFIX: &str = "EV#";
/// Endpoint, directory entry, dead letter, attempt record, member event: the value (S, JSON).
pub const ATTR_DATA: &str = "data";
/// Dead letter: its event's id (S).
pub const ATTR_EVENT: &str = "event";
/// How long attempt records are kept (the API lists the newest).
pub const ATTEMPT_TTL_SECS: u64 = 7 * 86_400;
/// How long dead letters are kept for listing and replay (as long as an SQS dead-letter queue
/// keeps messages at most).
pub const DEAD_LETTER_TTL_SECS: u64 = 14 * 86_400;
/// How long a member event item lives: only the stream reads it, within seconds.
pub const MEMBER_EVENT_TTL_SECS: u64 = 86_400;

/// Connection: tenant id (S).
pub const ATTR_TENANT: &str = "tenant";
/// Connection, subscription: user id (S).
pub const ATTR_USER: &str = "user";
/// Connection, message: display name (S, optional).
pub const ATTR_NAME: &str = "name";
/// Connection, message: role (S, the protocol's snake_case name; optional on messages stored
/// before roles were recorded).
pub const ATTR_ROLE: &str = "role";
/// Connection: room grants from the token (L of S).
pub const ATTR_GRANTS: &str = "grants";
/// Connection: connect time (N, epoch ms).
pub const ATTR_CONNECTED_AT: &str = "connected_at";
/// Connection: token expiry (N, epoch ms).
pub const ATTR_TOKEN_EXPIRES_AT: &str = "token_expires_at";
/// Connection: rooms joined, in join order (L of S).
pub const ATTR_ROOMS: &str = "rooms";
/// Connection, request bucket: rate-limit bucket (S, JSON of `RateState`; compared whole in
/// conditional writes).
pub const ATTR_RATE: &str = "rate";
/// User status: the chosen status (S).
pub const ATTR_STATUS: &str = "status";
/// Head, message, idempotency key: a seq (N).
pub const ATTR_SEQ: &str = "seq";
/// Message: the client's id (S).
pub const ATTR_ID: &str = "id";
/// Message: sender's user id (S).
pub const ATTR_FROM: &str = "from";
/// Message: the service user that published it in `from`'s name (S; optional).
pub const ATTR_VIA: &str = "via";
/// Message: text (S; absent once deleted).
pub const ATTR_BODY: &str = "body";
/// Message: application data (S, JSON; optional).
pub const ATTR_META: &str = "meta";
/// Message: its attachments (S, JSON array; absent when none and once deleted).
pub const ATTR_ATTACHMENTS: &str = "att";
/// Message: the message it answers, as stored with it (S, JSON; optional).
pub const ATTR_REPLY_TO: &str = "reply_to";
/// Message: its reactions (S, JSON array; absent when none and once deleted). Changed by a
/// read and a write conditioned on the value read, so concurrent reactions never lose one.
pub const ATTR_REACTIONS: &str = "reactions";
/// Message: when its reactions last changed (N, epoch ms): the time of the reaction's event,
/// read from the change stream.
pub const ATTR_REACTED_TS: &str = "reacted_ts";
/// Message: store time (N, epoch ms).
pub const ATTR_TS: &str = "ts";
/// Message: last edit (N, epoch ms; optional).
pub const ATTR_EDITED_TS: &str = "edited_ts";
/// Message: tombstone flag (BOOL; present only when true).
pub const ATTR_DELETED: &str = "deleted";
/// Member: last seen in the room (N, epoch ms; absent while the user has only a read cursor
/// there, which does not make them a member).
pub const ATTR_LAST_SEEN: &str = "last_seen";
/// Member: the user's read cursor (N, a seq; absent until it first moves).
pub const ATTR_READ_SEQ: &str = "read_seq";
/// Conversation: its agent (S; optional).
pub const ATTR_AGENT: &str = "agent";
/// Conversation: the agent who had it when it was last closed (S; optional).
pub const ATTR_PREVIOUS_AGENT: &str = "previous_agent";
/// Conversation, desk record: its version (N), the compare-and-set guard.
pub const ATTR_VERSION: &str = "version";
/// Desk record: the document (S, the JSON as the core wrote it).
pub const ATTR_DOC: &str = "doc";
/// Conversation: when it last changed (N, epoch ms).
pub const ATTR_SINCE: &str = "since";
/// Slot: declared size (N, bytes).
pub const ATTR_SIZE: &str = "size";
/// Slot: declared content type (S).
pub const ATTR_TYPE: &str = "type";
/// Slot: when it was granted (N, epoch ms).
pub const ATTR_CREATED_AT: &str = "created_at";
/// Slot: the message that carries it, `{sender}/{client id}` (S; absent while unclaimed).
pub const ATTR_CLAIMED_BY: &str = "claimed_by";
/// Quota counter: slots granted that day (N).
pub const ATTR_COUNT: &str = "count";
/// Quota counter: declared bytes granted that day (N).
pub const ATTR_BYTES: &str = "bytes";

/// `pk` of a connection item.
pub(super) fn connection_pk(conn_id: &str) -> String {
    format!("{CONNECTION_PK_PREFIX}{conn_id}")
}

/// `pk` of a user's partition (connection index, status).
pub(super) fn user_pk(tenant: &str, user: &str) -> String {
    format!("{USER_PK_PREFIX}{tenant}#{user}")
}

/// `sk` of a connection's index item in its user's partition.
pub(super) fn user_connection_sk(conn_id: &str) -> String {
    format!("{USER_CONNECTION_SK_PREFIX}{conn_id}")
}

/// `pk` of a user's request bucket.
pub(super) fn requests_pk(tenant: &str, user: &str) -> String {
    format!("{REQUESTS_PK_PREFIX}{tenant}#{user}")
}

/// `pk` of a room's partition.
pub(super) fn room_pk(room: &RoomRef) -> String {
    format!("{ROOM_PK_PREFIX}{}", room.key())
}

/// `sk` of the message at `seq`.
pub(super) fn message_sk(seq: u64) -> String {
    format!("{MESSAGE_SK_PREFIX}{seq:020}")
}

/// `sk` of the idempotency key of `(from, id)`; the id goes last because it may contain `#`.
pub(super) fn idempotency_sk(from: &str, id: &str) -> String {
    format!("{IDEMPOTENCY_SK_PREFIX}{from}#{id}")
}

/// `sk` of a user's member item (which holds their read cursor too).
pub(super) fn member_sk(user: &str) -> String {
    format!("{MEMBER_SK_PREFIX}{user}")
}

/// `sk` of attachment `id`'s upload slot in its room's partition.
pub(super) fn slot_sk(id: &str) -> String {
    format!("{SLOT_SK_PREFIX}{id}")
}

/// (pk, sk) of `user`'s upload counter on `day` (`None`: the tenant's).
pub(super) fn upload_quota_key(tenant: &str, user: Option<&str>, day: u64) -> (String, String) {
    let pk = match user {
        Some(user) => format!("{UPLOAD_QUOTA_PK_PREFIX}{tenant}#{user}"),
        None => format!("{UPLOAD_QUOTA_PK_PREFIX}{tenant}"),
    };
    (pk, format!("D#{day}"))
}

/// `pk` of a tenant's desk records of `kind`. Tenant names cannot contain `#`, so the kind
/// after it is unambiguous.
pub(super) fn desk_pk(tenant: &str, kind: DeskKind) -> String {
    format!("{DESK_PK_PREFIX}{tenant}#{}", kind.as_str())
}

/// The key attributes of the item at (pk, sk).
pub(super) fn key(pk: &str, sk: &str) -> Item {
    HashMap::from([
        (ATTR_PK.to_owned(), AttributeValue::S(pk.to_owned())),
        (ATTR_SK.to_owned(), AttributeValue::S(sk.to_owned())),
    ])
}

/// (pk, sk) of a connection's subscription to a room of its tenant.
pub(super) fn subscription_pk_sk(tenant: &str, room: &str, conn_id: &str) -> (String, String) {
    (
        room_pk(&RoomRef::new(tenant, room)),
        format!("{SUBSCRIPTION_SK_PREFIX}{conn_id}"),
    )
}

/// The key of a connection's subscription to a room of its tenant.
pub(super) fn subscription_key(tenant: &str, room: &str, conn_id: &str) -> Item {
    let (pk, sk) = subscription_pk_sk(tenant, room, conn_id);
    key(&pk, &sk)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// No prefix of `sks` starts another.
    fn prefix_free(sks: &[&str]) {
        for a in sks {
            for b in sks {
                if a != b {
                    assert!(!b.starts_with(a), "{b} starts with {a}");
                }
            }
        }
    }

    #[test]
    fn sort_key_prefixes_do_not_overlap() {
        // Each room Query (fan-out `S#`, history `M#`, the state `ST#`) and each idempotency key
        // selects its kind only.
        prefix_free(&[
            SUBSCRIPTION_SK_PREFIX,
            MESSAGE_SK_PREFIX,
            IDEMPOTENCY_SK_PREFIX,
            ROOM_STATE_SK_PREFIX,
            SLOT_SK_PREFIX,
        ]);
        let state = [HEAD_SK, CONVERSATION_SK, MEMBER_SK_PREFIX];
        prefix_free(&state);
        // A history range never reaches a state key.
        let (lo, hi) = (message_sk(0), message_sk(u64::MAX));
        for sk in state.iter().copied().chain([member_sk("alice").as_str()]) {
            assert!(sk.starts_with(ROOM_STATE_SK_PREFIX), "{sk}");
            assert!(!(lo.as_str()..=hi.as_str()).contains(&sk), "{sk}");
        }
        assert!(message_sk(9) < message_sk(10));
        prefix_free(&[USER_STATUS_SK, USER_CONNECTION_SK_PREFIX]);
    }
}
