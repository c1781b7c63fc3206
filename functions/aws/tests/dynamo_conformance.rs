//! [`DynamoStore`] against a real local DynamoDB implementation: moto server.
//!
//! Each test gets its DynamoDB from [`roomcast_testkit::aws::moto::dynamo`]: `ROOMCAST_DYNAMODB_ENDPOINT`
//! when set, else a moto server of its own (see that module for why moto runs serially).

#![allow(
    clippy::unwrap_used,
    reason = "test code: a failing call is a test failure"
)]

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::types::AttributeValue;
use roomcast_aws::dynamo::{
    ATTR_LAST_SEEN, ATTR_PK, ATTR_SK, ATTR_TTL, ATTR_USER, CONNECTION_PK_PREFIX, CONNECTION_SK,
    IDEMPOTENCY_SK_PREFIX, MEMBER_SK_PREFIX, MESSAGE_SK_PREFIX, ROOM_PK_PREFIX, SLOT_SK_PREFIX,
    SUBSCRIPTION_SK_PREFIX, USER_CONNECTION_SK_PREFIX, USER_PK_PREFIX, USER_STATUS_SK,
    emulator_client,
};
use roomcast_aws::{Consumed, DynamoConfig, DynamoStore};
use roomcast_core::auth::{Identity, Role};
use roomcast_core::protocol::{Conversation, ConversationStatus, PresenceStatus};
use roomcast_core::ratelimit::{RateDecision, RatePolicy};
use roomcast_core::store::desk::MAX_DESK_RECORDS;
use roomcast_core::store::{
    Admitted, Amendment, Connection, ConnectionStore, DeskDirectory, DeskKind, DeskRecord,
    HistoryQuery, HistoryStore, NewMessage, RoomRef, RoomState, StoreError, Subscriber,
};
use roomcast_testkit::attachment_conformance::{attachment_conformance, slot_for};
use roomcast_testkit::aws::capacity::Meter;
use roomcast_testkit::aws::moto::{Dynamo, dynamo};
use roomcast_testkit::conformance::{Namer, connection_conformance, history_conformance};
use roomcast_testkit::desk_conformance::desk_conformance;

fn unique(what: &str) -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("{what}-{nanos}")
}

/// A store on a fresh table.
async fn fresh_store(dynamo: &Dynamo, config: DynamoConfig) -> DynamoStore {
    let store = DynamoStore::new(
        emulator_client(&dynamo.endpoint).await,
        unique("roomcast-test"),
        config,
    );
    store.ensure_table().await.unwrap();
    // Idempotent: a second call (another process starting) is fine.
    store.ensure_table().await.unwrap();
    store
}

/// A store on a fresh table whose every request the meter records.
async fn metered_store(dynamo: &Dynamo) -> (DynamoStore, Meter) {
    let meter = Meter::default();
    let client = emulator_client(&dynamo.endpoint).await;
    let client = Client::from_conf(
        client
            .config()
            .to_builder()
            .interceptor(meter.clone())
            .build(),
    );
    let store = DynamoStore::new(client, unique("roomcast-test"), DynamoConfig::default());
    store.ensure_table().await.unwrap();
    meter.take();
    (store, meter)
}

/// The operations of the calls the meter recorded since the last take.
fn operations(meter: &Meter) -> Vec<String> {
    meter.take().into_iter().map(|c| c.operation).collect()
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

fn identity(tenant: &str, user: &str) -> Identity {
    Identity {
        tenant: tenant.into(),
        user: user.into(),
        name: Some(user.to_uppercase()),
        role: Role::User,
        rooms: vec!["*".into()],
        expires_at_ms: u64::MAX / 2,
    }
}

fn msg(id: &str, from: &str, body: &str) -> NewMessage {
    roomcast_testkit::conformance::new_message(id, from, body, 1)
}

#[tokio::test(flavor = "multi_thread")]
async fn connection_store_conformance() {
    let dynamo = dynamo();
    let store = fresh_store(&dynamo, DynamoConfig::default()).await;
    connection_conformance(&store, &Namer::new(unique("conn"))).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn history_store_conformance() {
    let dynamo = dynamo();
    let store = fresh_store(&dynamo, DynamoConfig::default()).await;
    history_conformance(&store, &Namer::new(unique("hist"))).await;
    // With retention set, messages carry a ttl and behave the same. A table of its own keeps
    // moto fast: it copies the whole table for every transaction.
    let retained = fresh_store(
        &dynamo,
        DynamoConfig {
            message_retention: Some(Duration::from_secs(3600)),
            ..DynamoConfig::default()
        },
    )
    .await;
    history_conformance(&retained, &Namer::new(unique("kept"))).await;
}

/// Slots, claims and quotas; no sweep: the TTL (and the bucket's lifecycle rule) expire
/// abandoned uploads.
#[tokio::test(flavor = "multi_thread")]
async fn attachment_index_conformance() {
    let dynamo = dynamo();
    let store = fresh_store(&dynamo, DynamoConfig::default()).await;
    attachment_conformance(&store, &Namer::new(unique("att")), false).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn desk_directory_conformance() {
    let dynamo = dynamo();
    let store = fresh_store(&dynamo, DynamoConfig::default()).await;
    desk_conformance(&store, &Namer::new(unique("desk"))).await;
}

/// A kind's records past one Query page (1 MB): listing reads on until the limit, and stops
/// there.
#[tokio::test(flavor = "multi_thread")]
async fn desk_records_follow_pages_up_to_the_limit() {
    let dynamo = dynamo();
    let (store, meter) = metered_store(&dynamo).await;
    let tenant = unique("t");
    // 300 KB documents (DynamoDB allows 400 KB items): five of them are 1.5 MB, two pages.
    let doc = format!("\"{}\"", "x".repeat(300_000));
    let keys = ["a", "b", "c", "d", "e"];
    for key in keys.iter().rev() {
        let record = DeskRecord {
            key: (*key).to_owned(),
            version: 1,
            doc: doc.clone(),
        };
        store
            .put_desk_record(&tenant, DeskKind::Visitor, &record)
            .await
            .unwrap();
    }
    meter.take();
    let listed = |limit| {
        let tenant = tenant.clone();
        let store = &store;
        async move {
            store
                .desk_records(&tenant, DeskKind::Visitor, limit)
                .await
                .unwrap()
                .into_iter()
                .map(|r| {
                    assert_eq!(r.doc.len(), 300_002);
                    r.key
                })
                .collect::<Vec<_>>()
        }
    };
    assert_eq!(listed(MAX_DESK_RECORDS + 1).await, keys);
    assert_eq!(
        operations(&meter),
        ["Query", "Query"],
        "one request per 1 MB page"
    );
    assert_eq!(listed(2).await, ["a", "b"]);
    assert_eq!(operations(&meter), ["Query"], "the limit is the Query's");
    assert!(listed(0).await.is_empty());
    assert!(operations(&meter).is_empty(), "nothing to ask for");
}

/// The agent a closed conversation had is kept with it.
#[tokio::test(flavor = "multi_thread")]
async fn conversations_keep_their_previous_agent() {
    let dynamo = dynamo();
    let store = fresh_store(&dynamo, DynamoConfig::default()).await;
    let room = RoomRef::new(unique("t"), "support-1");
    let closed = Conversation {
        status: ConversationStatus::Closed,
        agent: Some("ann".into()),
        version: 1,
        since: 5,
        previous_agent: Some("ann".into()),
    };
    store.put_conversation(&room, &closed).await.unwrap();
    assert_eq!(store.conversation(&room).await.unwrap(), Some(closed));
}

/// An unclaimed slot carries a `ttl` a day out, so DynamoDB expires it when no message takes
/// it; a claim removes it, a release puts it back, and an expired slot is gone for every call.
#[tokio::test(flavor = "multi_thread")]
async fn unclaimed_slots_expire_by_ttl() {
    use roomcast_core::attachments::claimant;
    use roomcast_core::store::AttachmentIndex;
    let dynamo = dynamo();
    let store = fresh_store(&dynamo, DynamoConfig::default()).await;
    let client = emulator_client(&dynamo.endpoint).await;
    let names = Namer::new(unique("ttl"));
    let room = names.room();
    let slot = slot_for(&names, &room, "alice", now_ms());
    store.put_slot(&slot).await.unwrap();
    let pk = format!("{ROOM_PK_PREFIX}{}", room.key());
    let sk = format!("{SLOT_SK_PREFIX}{}", slot.id);
    let ttl_of = async || {
        let item = client
            .get_item()
            .table_name(store.table())
            .key(ATTR_PK, AttributeValue::S(pk.clone()))
            .key(ATTR_SK, AttributeValue::S(sk.clone()))
            .send()
            .await
            .unwrap()
            .item
            .unwrap();
        item.get(ATTR_TTL)
            .map(|t| t.as_n().unwrap().parse::<u64>().unwrap())
    };
    let day = ttl_of().await.unwrap() - slot.created_at_ms / 1000;
    assert!((86_399..=86_401).contains(&day), "{day}");
    let claim = claimant("alice", "m1");
    store.claim_slot(&room, &slot.id, &claim).await.unwrap();
    assert_eq!(ttl_of().await, None, "a claimed slot never expires");
    store.release_slot(&room, &slot.id, &claim).await.unwrap();
    assert!(ttl_of().await.is_some(), "released: it expires again");
    expire(&client, store.table(), &pk, &sk).await;
    assert_eq!(store.slot(&room, &slot.id).await.unwrap(), None);
    assert!(matches!(
        store.claim_slot(&room, &slot.id, &claim).await,
        Err(StoreError::NotFound)
    ));
}

/// Separate SDK clients stand in for many Lambdas: each appends its own messages while all of
/// them resend the same ids at once. Seqs stay exactly 1..=n and every id is stored once.
#[tokio::test(flavor = "multi_thread")]
async fn concurrent_appends_from_many_clients_are_gap_free_and_exactly_once() {
    const CLIENTS: usize = 4;
    const OWN: usize = 6;
    const SHARED: usize = 4;
    let dynamo = dynamo();
    let first = fresh_store(&dynamo, DynamoConfig::default()).await;
    let mut stores = vec![Arc::new(first)];
    for _ in 1..CLIENTS {
        let client = emulator_client(&dynamo.endpoint).await;
        stores.push(Arc::new(DynamoStore::new(
            client,
            stores[0].table(),
            DynamoConfig::default(),
        )));
    }
    let room = RoomRef::new(unique("t"), "busy");
    let tasks: Vec<_> = stores
        .iter()
        .enumerate()
        .map(|(c, store)| {
            let (store, room) = (store.clone(), room.clone());
            tokio::spawn(async move {
                let mut results = Vec::new();
                for i in 0..OWN.max(SHARED) {
                    if i < OWN {
                        let id = format!("c{c}-{i}");
                        results.push((
                            id.clone(),
                            store.append(&room, msg(&id, "alice", "own")).await.unwrap(),
                        ));
                    }
                    if i < SHARED {
                        // Every client sends this id: one stores it, the rest get the original.
                        let id = format!("shared-{i}");
                        results.push((
                            id.clone(),
                            store
                                .append(&room, msg(&id, "alice", "shared"))
                                .await
                                .unwrap(),
                        ));
                    }
                }
                results
            })
        })
        .collect();
    let mut by_id: BTreeMap<String, Vec<(u64, bool)>> = BTreeMap::new();
    for task in tasks {
        for (id, appended) in task.await.unwrap() {
            assert_eq!(appended.message.id, id);
            by_id
                .entry(id)
                .or_default()
                .push((appended.message.seq, appended.duplicate));
        }
    }
    let n = (CLIENTS * OWN + SHARED) as u64;
    assert_eq!(by_id.len() as u64, n);
    for (id, results) in &by_id {
        let stored = results.iter().filter(|(_, duplicate)| !duplicate).count();
        assert_eq!(stored, 1, "{id} stored {stored} times: {results:?}");
        let seqs: BTreeSet<u64> = results.iter().map(|(seq, _)| *seq).collect();
        assert_eq!(seqs.len(), 1, "{id} got different seqs: {results:?}");
    }
    let seqs: BTreeSet<u64> = by_id.values().map(|r| r[0].0).collect();
    assert_eq!(seqs, (1..=n).collect(), "seqs are exactly 1..={n}");
    assert_eq!(stores[1].head(&room).await.unwrap(), n);
    let page = stores[2]
        .messages(
            &room,
            HistoryQuery {
                after: Some(0),
                before: None,
                limit: 1000,
            },
        )
        .await
        .unwrap();
    let stored: Vec<(u64, String)> = page
        .messages
        .iter()
        .map(|m| (m.seq, m.id.clone()))
        .collect();
    assert_eq!(stored.len() as u64, n, "history holds each message once");
    assert!(stored.iter().map(|(seq, _)| *seq).eq(1..=n));
    assert_eq!(
        stored
            .iter()
            .map(|(_, id)| id)
            .collect::<BTreeSet<_>>()
            .len() as u64,
        n
    );
}

/// Sets an item's `ttl` to a moment long past, as DynamoDB leaves it until its lazy delete.
async fn expire(client: &Client, table: &str, pk: &str, sk: &str) {
    client
        .update_item()
        .table_name(table)
        .key(ATTR_PK, AttributeValue::S(pk.into()))
        .key(ATTR_SK, AttributeValue::S(sk.into()))
        .update_expression("SET #ttl = :past")
        .condition_expression("attribute_exists(#pk)")
        .expression_attribute_names("#ttl", ATTR_TTL)
        .expression_attribute_names("#pk", ATTR_PK)
        .expression_attribute_values(":past", AttributeValue::N("1000".into()))
        .send()
        .await
        .unwrap_or_else(|e| panic!("cannot expire {pk} / {sk}: {e:?}"));
}

/// Items whose `ttl` has passed but that DynamoDB has not deleted yet are absent on every read
/// path.
#[tokio::test(flavor = "multi_thread")]
async fn expired_items_are_absent_everywhere() {
    let dynamo = dynamo();
    let store = fresh_store(&dynamo, DynamoConfig::default()).await;
    let raw = emulator_client(&dynamo.endpoint).await;
    let table = store.table().to_owned();
    let tenant = unique("t");
    let room = RoomRef::new(&tenant, "r");
    let identity = identity(&tenant, "alice");
    let now_ms = now_ms();

    // A live connection in the room with a chosen status, then every item of it expired.
    let conn = Connection::new("c-old", &identity, now_ms);
    store.put_connection(&conn).await.unwrap();
    store.join_room("c-old", "r", 10).await.unwrap();
    store
        .set_status(&tenant, "alice", PresenceStatus::Busy)
        .await
        .unwrap();
    let user_pk = format!("{USER_PK_PREFIX}{tenant}#alice");
    let room_pk = format!("{ROOM_PK_PREFIX}{}", room.key());
    expire(
        &raw,
        &table,
        &format!("{CONNECTION_PK_PREFIX}c-old"),
        CONNECTION_SK,
    )
    .await;
    expire(
        &raw,
        &table,
        &user_pk,
        &format!("{USER_CONNECTION_SK_PREFIX}c-old"),
    )
    .await;
    expire(&raw, &table, &user_pk, USER_STATUS_SK).await;
    expire(
        &raw,
        &table,
        &room_pk,
        &format!("{SUBSCRIPTION_SK_PREFIX}c-old"),
    )
    .await;
    // And a stale subscription written whole, as a lost `$disconnect` leaves it.
    raw.put_item()
        .table_name(&table)
        .item(ATTR_PK, AttributeValue::S(room_pk.clone()))
        .item(
            ATTR_SK,
            AttributeValue::S(format!("{SUBSCRIPTION_SK_PREFIX}ghost")),
        )
        .item(ATTR_USER, AttributeValue::S("bob".into()))
        .item(ATTR_TTL, AttributeValue::N("1000".into()))
        .send()
        .await
        .unwrap();

    assert_eq!(store.connection("c-old").await.unwrap(), None);
    assert!(
        store
            .user_connections(&tenant, "alice")
            .await
            .unwrap()
            .is_empty()
    );
    assert!(store.room_connections(&room).await.unwrap().is_empty());
    let users = ["alice".to_owned()];
    assert_eq!(store.presence(&tenant, &users).await.unwrap(), vec![None]);
    assert_eq!(
        store
            .take_rate_token("c-old", &RatePolicy::default(), now_ms)
            .await,
        Err(StoreError::NotFound)
    );
    assert_eq!(
        store.join_room("c-old", "other", 10).await,
        Err(StoreError::NotFound)
    );
    assert!(!store.leave_room("c-old", "r").await.unwrap());
    assert_eq!(store.remove_connection("c-old").await.unwrap(), None);

    // A new device: online, not the expired "busy".
    store
        .put_connection(&Connection::new("c-new", &identity, now_ms))
        .await
        .unwrap();
    assert_eq!(
        store.presence(&tenant, &users).await.unwrap(),
        vec![Some(PresenceStatus::Online)]
    );

    // History: an expired message and idempotency key (retention ran out for them).
    store
        .append(&room, msg("m1", "alice", "old"))
        .await
        .unwrap();
    store
        .append(&room, msg("m2", "alice", "kept"))
        .await
        .unwrap();
    expire(
        &raw,
        &table,
        &room_pk,
        &format!("{MESSAGE_SK_PREFIX}{:020}", 1),
    )
    .await;
    expire(
        &raw,
        &table,
        &room_pk,
        &format!("{IDEMPOTENCY_SK_PREFIX}alice#m1"),
    )
    .await;
    assert_eq!(store.message(&room, 1).await.unwrap(), None);
    let page = store
        .messages(
            &room,
            HistoryQuery {
                after: Some(0),
                before: None,
                limit: 10,
            },
        )
        .await
        .unwrap();
    let seqs: Vec<u64> = page.messages.iter().map(|m| m.seq).collect();
    assert_eq!(seqs, vec![2]);
    assert_eq!(
        store
            .amend(
                &room,
                1,
                Amendment::Delete {
                    at_ms: now_ms,
                    moderator: None
                }
            )
            .await,
        Err(StoreError::NotFound)
    );
    // The expired key no longer makes a resend a duplicate: it is a new message, seq 3.
    let again = store
        .append(&room, msg("m1", "alice", "new"))
        .await
        .unwrap();
    assert!(!again.duplicate);
    assert_eq!(again.message.seq, 3);
    assert_eq!(store.head(&room).await.unwrap(), 3);
}

/// What one message costs, as DynamoDB (here: moto) reports it through ReturnConsumedCapacity.
#[tokio::test(flavor = "multi_thread")]
async fn capacity_of_one_message() {
    let dynamo = dynamo();
    let store = fresh_store(&dynamo, DynamoConfig::default()).await;
    let room = RoomRef::new(unique("t"), "r");
    // The room's first message creates the head; measure a typical one after it.
    store
        .append(&room, msg("warm", "alice", "x"))
        .await
        .unwrap();

    let delta = |before: Consumed, after: Consumed| Consumed {
        read_units: after.read_units - before.read_units,
        write_units: after.write_units - before.write_units,
    };
    let before = store.consumed();
    let body = "hello ".repeat(100); // ~600 bytes: one write unit per item.
    let first = store.append(&room, msg("m", "alice", &body)).await.unwrap();
    let new_message = delta(before, store.consumed());
    assert!(!first.duplicate);

    let before = store.consumed();
    let resent = store.append(&room, msg("m", "alice", &body)).await.unwrap();
    let resend = delta(before, store.consumed());
    assert!(resent.duplicate);

    // The unit of comparison: one strongly consistent GetItem of a small item (the head).
    let before = store.consumed();
    store.head(&room).await.unwrap();
    let one_read = delta(before, store.consumed()).read_units;

    println!(
        "one new message: {:.1} RCU, {:.1} WCU; a resent id: {:.1} RCU, {:.1} WCU \
         (one consistent GetItem reported as {one_read:.1} RCU)",
        new_message.read_units, new_message.write_units, resend.read_units, resend.write_units
    );
    // DynamoDB bills 1 RCU per consistent read of up to 4 KB; moto reports a flat 0.5 for
    // every GetItem. Either way: a new message reads the head once; a resend reads the head,
    // then the original message at the seq the cancelled transaction returned (ALL_OLD).
    assert!(one_read > 0.0, "the backend reports no read capacity");
    assert_eq!(new_message.read_units, one_read);
    assert_eq!(resend.read_units, 2.0 * one_read);
    // TransactWriteItems: DynamoDB reports 2 WCU per item of up to 1 KB (head, message,
    // idempotency key); moto reports an empty ConsumedCapacity list.
    assert!(
        [0.0, 6.0].contains(&new_message.write_units),
        "{} WCU",
        new_message.write_units
    );
    // A cancelled transaction is an error response: it carries no ConsumedCapacity.
    assert_eq!(resend.write_units, 0.0);
}

/// `admit_frame` answers what the default implementation (`connection`, then
/// `take_rate_token`) answers on the same data, from one read and one conditional write: two
/// connections with the same state, one admitted by the override, its twin by the
/// fine-grained calls, frame after frame until the bucket is empty.
#[tokio::test(flavor = "multi_thread")]
async fn admit_frame_is_the_default_answer_from_one_read() {
    let dynamo = dynamo();
    let (store, meter) = metered_store(&dynamo).await;
    let tenant = unique("t");
    let now = now_ms();
    let policy = RatePolicy {
        burst: 2,
        per_sec: 1,
        max_strikes: 1,
    };
    for id in ["c-override", "c-default"] {
        let mut conn = Connection::new(id, &identity(&tenant, "alice"), now);
        conn.rooms = vec!["r".into()];
        store.put_connection(&conn).await.unwrap();
    }
    meter.take();

    let mut decisions = Vec::new();
    for frame in 0..4 {
        let at = now + frame;
        let admitted = store
            .admit_frame("c-override", &policy, at)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            operations(&meter),
            ["GetItem", "UpdateItem"],
            "frame {frame}: one read of the connection, one conditional write of its bucket"
        );

        let connection = store.connection("c-default").await.unwrap().unwrap();
        let rate = store
            .take_rate_token("c-default", &policy, at)
            .await
            .unwrap();
        assert_eq!(operations(&meter), ["GetItem", "GetItem", "UpdateItem"]);
        let expected = Admitted {
            connection: Connection {
                id: "c-override".into(),
                ..connection
            },
            rate,
        };
        assert_eq!(admitted, expected, "frame {frame}");
        decisions.push(admitted.rate);
    }
    assert_eq!(
        decisions,
        [
            RateDecision::Allow,
            RateDecision::Allow,
            RateDecision::Reject,
            RateDecision::Close
        ]
    );

    // Gone (or never there): `None`, like the default, after the one read.
    assert_eq!(store.admit_frame("c-gone", &policy, now).await, Ok(None));
    assert_eq!(operations(&meter), ["GetItem"]);
    store.remove_connection("c-override").await.unwrap();
    assert_eq!(
        store.admit_frame("c-override", &policy, now).await,
        Ok(None)
    );
}

/// What the default `room_state` answers: the fine-grained calls, one after the other.
async fn default_room_state(
    store: &DynamoStore,
    room: &RoomRef,
    user: &str,
    members_limit: usize,
    with_conversation: bool,
) -> RoomState {
    RoomState {
        head: store.head(room).await.unwrap(),
        read_seq: store.read_cursor(room, user).await.unwrap(),
        members: store.members(room, members_limit).await.unwrap(),
        conversation: if with_conversation {
            store.conversation(room).await.unwrap()
        } else {
            None
        },
    }
}

/// Every `room_state` a join can ask of `room` equals the default's answer, each from exactly
/// `queries` Query requests and nothing else.
async fn assert_room_state_is_the_default(
    store: &DynamoStore,
    meter: &Meter,
    room: &RoomRef,
    queries: usize,
) {
    for user in ["alice", "dave", "erin"] {
        for limit in [0, 2, 100] {
            for with_conversation in [false, true] {
                meter.take();
                let state = store
                    .room_state(room, user, limit, with_conversation)
                    .await
                    .unwrap();
                assert_eq!(
                    operations(meter),
                    vec!["Query"; queries],
                    "{user}, {limit}, {with_conversation}"
                );
                let expected =
                    default_room_state(store, room, user, limit, with_conversation).await;
                assert_eq!(state, expected, "{user}, {limit}, {with_conversation}");
            }
        }
    }
}

/// `room_state` answers what the default (head, read cursor, members, conversation: up to four
/// requests) answers, from one Query of the room's state items; the other room queries (fan-out,
/// history) still see only their own items.
#[tokio::test(flavor = "multi_thread")]
async fn room_state_is_the_default_answer_from_one_query() {
    let dynamo = dynamo();
    let (store, meter) = metered_store(&dynamo).await;
    let tenant = unique("t");
    let room = RoomRef::new(&tenant, "support-1");

    // Empty: nothing stored yet.
    assert_eq!(
        store.room_state(&room, "alice", 10, true).await.unwrap(),
        RoomState::default()
    );
    assert_eq!(operations(&meter), ["Query"]);

    for (i, from) in ["alice", "bob", "alice"].into_iter().enumerate() {
        store
            .append(&room, msg(&format!("m{i}"), from, "hi"))
            .await
            .unwrap();
    }
    for (user, at) in [("alice", 300), ("bob", 100), ("carol", 300), ("bob", 200)] {
        store.touch_member(&room, user, at).await.unwrap();
    }
    store.advance_read(&room, "alice", 2).await.unwrap();
    // A cursor without a membership: not listed as a member.
    store.advance_read(&room, "dave", 3).await.unwrap();
    let conn = Connection::new("c-1", &identity(&tenant, "alice"), now_ms());
    store.put_connection(&conn).await.unwrap();
    store.join_room("c-1", &room.room, 10).await.unwrap();

    let state = store.room_state(&room, "alice", 100, true).await.unwrap();
    assert_eq!(
        (state.head, state.read_seq, state.members.len()),
        (3, 2, 3),
        "{state:?}"
    );
    assert_eq!(state.conversation, None);
    assert_room_state_is_the_default(&store, &meter, &room, 1).await;

    store
        .put_conversation(
            &room,
            &Conversation {
                status: ConversationStatus::Waiting,
                agent: None,
                version: 1,
                since: 5,
                previous_agent: None,
            },
        )
        .await
        .unwrap();
    assert!(
        store
            .room_state(&room, "bob", 1, true)
            .await
            .unwrap()
            .conversation
            .is_some()
    );
    assert_room_state_is_the_default(&store, &meter, &room, 1).await;

    // The state items share the partition with subscriptions and messages; the fan-out and
    // history queries still select exactly theirs.
    assert_eq!(
        store.room_connections(&room).await.unwrap(),
        vec![Subscriber {
            conn_id: "c-1".into(),
            user: "alice".into()
        }]
    );
    let page = store
        .messages(
            &room,
            HistoryQuery {
                after: Some(0),
                before: None,
                limit: 100,
            },
        )
        .await
        .unwrap();
    let ids: Vec<&str> = page.messages.iter().map(|m| m.id.as_str()).collect();
    assert_eq!(ids, ["m0", "m1", "m2"]);
}

/// A room whose state items exceed one Query page (1 MB): `room_state` reads every page, and
/// still answers what the default answers.
#[tokio::test(flavor = "multi_thread")]
async fn room_state_reads_every_page() {
    let dynamo = dynamo();
    let (store, meter) = metered_store(&dynamo).await;
    let raw = emulator_client(&dynamo.endpoint).await;
    let room = RoomRef::new(unique("t"), "big");
    store.append(&room, msg("m", "alice", "hi")).await.unwrap();
    store.touch_member(&room, "alice", 1).await.unwrap();
    store.advance_read(&room, "alice", 1).await.unwrap();
    // Members that only padding makes big (300 KB each, DynamoDB allows 400 KB): five of them
    // are 1.5 MB, two pages.
    let padding = "x".repeat(300_000);
    for (i, user) in ["bob", "carol", "dave", "erin", "frank"]
        .into_iter()
        .enumerate()
    {
        raw.put_item()
            .table_name(store.table())
            .item(
                ATTR_PK,
                AttributeValue::S(format!("{ROOM_PK_PREFIX}{}", room.key())),
            )
            .item(
                ATTR_SK,
                AttributeValue::S(format!("{MEMBER_SK_PREFIX}{user}")),
            )
            .item(ATTR_LAST_SEEN, AttributeValue::N((10 + i).to_string()))
            .item("padding", AttributeValue::S(padding.clone()))
            .send()
            .await
            .unwrap();
    }
    meter.take();
    let state = store.room_state(&room, "alice", 100, true).await.unwrap();
    let queries = operations(&meter);
    assert_eq!(queries, ["Query", "Query"], "one request per 1 MB page");
    assert_eq!((state.head, state.read_seq), (1, 1));
    let users: Vec<&str> = state.members.iter().map(|m| m.user.as_str()).collect();
    assert_eq!(users, ["frank", "erin", "dave", "carol", "bob", "alice"]);
    assert_room_state_is_the_default(&store, &meter, &room, 2).await;
}
