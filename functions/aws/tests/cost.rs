//! The cost model (docs/deploy.md §6, docs/benchmarks.md "AWS cost per message") held to the
//! code: the DynamoDB calls and Management API posts one chat message makes through the Lambda
//! handler, and the units DynamoDB bills for them by item size. A change that adds a call, a post
//! or a kilobyte per message fails here before the published costs drift from the code.
#![allow(
    clippy::unwrap_used,
    reason = "test code: a failing call is a test failure"
)]

use std::collections::BTreeMap;

/// The cost example itself, so the integration-event model tested is the one that prints the
/// published table.
#[allow(
    dead_code,
    clippy::all,
    reason = "the example's main and its other parts are not used here"
)]
#[path = "../examples/cost.rs"]
mod cost_example;

use roomcast_aws::dynamo::{ROOM_STATE_SK_PREFIX, emulator_client};
use roomcast_testkit::aws::capacity::{bill, tally};
use roomcast_testkit::aws::lambda::{World, member_token, types, world};
use serde_json::json;

/// The rooms are `chat-*`, not support rooms: a visitor's first message in a support room adds
/// the desk's work, and this measures plain chat.
///
/// Connects `k` members (distinct users) and joins them to `room`; their connection ids.
async fn online_room(w: &World, room: &str, k: usize) -> Vec<String> {
    let mut members = Vec::new();
    for i in 0..k {
        // API Gateway connection ids are 16 characters.
        let conn = format!("Cost{k:04}m{i:06}=");
        let user = format!("u{k}-{i}");
        assert_eq!(
            w.connect(&conn, &member_token(&user, &["chat-*"]))
                .await
                .status_code,
            200
        );
        w.frame(&conn, "$default", json!({"action": "join", "room": room}))
            .await;
        members.push(conn);
    }
    for conn in &members {
        w.received(conn);
    }
    members
}

#[tokio::test(flavor = "multi_thread")]
async fn a_message_costs_five_dynamodb_calls_and_one_post_per_online_member() {
    let w = world().await;
    let readback = emulator_client(&w.dynamo.endpoint).await;
    for k in [2, 7] {
        let room = format!("chat-{k}");
        let members = online_room(&w, &room, k).await;
        w.meter.take();
        let posts_before = w.connections.lock().unwrap().calls;
        let body = "x".repeat(200);
        w.frame(
            &members[0],
            "message",
            json!({"action": "message", "room": room, "id": "01J0000000000000000000001", "body": body}),
        )
        .await;
        let posts = w.connections.lock().unwrap().calls - posts_before;
        let calls = w.meter.take();
        let per_op = tally(&bill(&calls, &readback).await);
        let counts: BTreeMap<&str, u64> = per_op
            .iter()
            .map(|(op, t)| (op.as_str(), t.calls))
            .collect();
        // The connection and its rate token (admit_frame: one read, one conditional write), the
        // head, the append transaction, the room's subscriptions.
        assert_eq!(
            counts,
            BTreeMap::from([
                ("GetItem", 2),
                ("Query", 1),
                ("TransactWriteItems", 1),
                ("UpdateItem", 1),
            ]),
            "room of {k}"
        );
        assert_eq!(
            per_op["Query"].items, k as u64,
            "the fan-out reads the room's subscriptions"
        );
        assert_eq!(
            per_op["TransactWriteItems"].items, 3,
            "head, message, idempotency key"
        );
        // The sender's ack and one delivery per other member: k posts.
        assert_eq!(posts, k as u64, "room of {k}");
        assert_eq!(types(&w.received(&members[0])), ["ack"]);
        for other in &members[1..] {
            assert_eq!(types(&w.received(other)), ["message"]);
        }
        // DynamoDB's size-based units: two consistent reads of items under 4 KB and a Query
        // of k small subscriptions (1 RRU each), one update of a connection under 1 KB (1 WRU)
        // and a transaction of three items under 1 KB (2 WRU each).
        let read: f64 = per_op.values().map(|t| t.read).sum();
        let write: f64 = per_op.values().map(|t| t.write).sum();
        assert_eq!((read, write), (3.0, 7.0), "room of {k}: {per_op:?}");
    }
}

/// A third member joins a room of two: the room's state (head, read cursor, members,
/// conversation) is one Query of its `ST#` items.
#[tokio::test(flavor = "multi_thread")]
async fn a_join_reads_the_room_state_with_one_query() {
    let w = world().await;
    let readback = emulator_client(&w.dynamo.endpoint).await;
    let room = "chat-join";
    online_room(&w, room, 2).await;
    let conn = "CostJoinNew0001=";
    assert_eq!(
        w.connect(conn, &member_token("newcomer", &["chat-*"]))
            .await
            .status_code,
        200
    );
    w.meter.take();
    w.frame(conn, "$default", json!({"action": "join", "room": room}))
        .await;
    assert_eq!(types(&w.received(conn)), ["joined"]);
    let calls = w.meter.take();
    let state_queries = calls
        .iter()
        .filter(|c| c.operation == "Query" && c.request.to_string().contains(ROOM_STATE_SK_PREFIX))
        .count();
    assert_eq!(state_queries, 1, "the room's state: one Query");
    let per_op = tally(&bill(&calls, &readback).await);
    let counts: BTreeMap<&str, u64> = per_op
        .iter()
        .map(|(op, t)| (op.as_str(), t.calls))
        .collect();
    // The connection and its rate token (admit_frame); the connection's rooms (UpdateItem) and
    // the subscription (PutItem); the member's last seen (UpdateItem); the room's state (Query);
    // the listed members' presence (3 Queries); the room's subscriptions (also the fan-out's
    // recipients) and the newcomer's presence (2 Queries).
    assert_eq!(
        counts,
        BTreeMap::from([
            ("GetItem", 1),
            ("PutItem", 1),
            ("Query", 6),
            ("UpdateItem", 3),
        ])
    );
    // Every read and write is of small items: 1 unit each.
    let read: f64 = per_op.values().map(|t| t.read).sum();
    let write: f64 = per_op.values().map(|t| t.write).sum();
    assert_eq!((read, write), (7.0, 4.0), "{per_op:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_meter_asks_for_consumed_capacity_when_the_caller_does_not() {
    let w = world().await;
    let client = aws_sdk_dynamodb::Client::from_conf(
        aws_sdk_dynamodb::config::Builder::from(
            &aws_config::defaults(aws_config::BehaviorVersion::latest())
                .region(aws_config::Region::new("us-east-1"))
                .endpoint_url(&w.dynamo.endpoint)
                .credentials_provider(aws_sdk_dynamodb::config::Credentials::new(
                    "test", "test", None, None, "test",
                ))
                .load()
                .await,
        )
        .interceptor(w.meter.clone())
        .build(),
    );
    assert_eq!(
        w.connect("Zr4mWdnYDoECFYg=", &member_token("alice", &["chat-*"]))
            .await
            .status_code,
        200
    );
    w.meter.take();
    let scanned = client
        .scan()
        .table_name(w.runtime.store().table())
        .send()
        .await
        .unwrap();
    assert!(
        scanned.consumed_capacity().is_some(),
        "the interceptor added ReturnConsumedCapacity"
    );
    let calls = w.meter.take();
    assert_eq!(calls.len(), 1);
    assert_eq!(calls[0].operation, "Scan");
    assert_eq!(calls[0].request["ReturnConsumedCapacity"], "TOTAL");
    let billed = bill(&calls, &client).await;
    // What $connect wrote (the connection, its user index item, the user's status): well under
    // 4 KB, eventually consistent.
    assert_eq!((billed[0].items, billed[0].read), (3, 0.5));
}

/// Integration events: what `events` and `deliver` do for messages of a room with 1 and then 3
/// endpoints (measured through their handlers, as the cost example does), and the model's
/// structure: the cost comes from the measured units and requests, and grows with endpoints.
#[tokio::test(flavor = "multi_thread")]
async fn integration_events_cost_comes_from_measured_units_and_grows_with_endpoints() {
    use cost_example::{EventsModel, EventsRig, events_cost, measure_events};
    let w = world().await;
    let room = "chat-events";
    let members = online_room(&w, room, 3).await;
    let mut rig = EventsRig::start(&w).await;
    let (batch, batches) = (4, 2);
    let one = measure_events(&w, &mut rig, room, &members, 1, batch, batches).await;
    let three = measure_events(&w, &mut rig, room, &members, 3, batch, batches).await;
    let model = EventsModel::DEFAULT;
    for m in [&one, &three] {
        let e = m.endpoints;
        let calls = |ops: &BTreeMap<String, roomcast_testkit::aws::capacity::Tally>, op: &str| {
            ops.get(op).map_or(0, |t| t.calls)
        };
        assert_eq!(m.messages, batch * batches);
        // Per batch: the tenant's and the operator's endpoints (2 Queries); per message.created:
        // the room's members and connections (2 Queries). Nothing else, no writes.
        assert_eq!(
            m.events_ops.keys().collect::<Vec<_>>(),
            ["Query"],
            "{:?}",
            m.events_ops
        );
        assert_eq!(
            calls(&m.events_ops, "Query"),
            (2 * batches + 2 * m.messages) as u64
        );
        // One queued delivery, one POST and one attempt record per message and endpoint.
        assert_eq!(m.deliveries, m.messages * e);
        assert_eq!(m.posts, m.deliveries as u64);
        assert_eq!(calls(&m.deliver_ops, "PutItem"), m.deliveries as u64);
        // Each deliver batch reads each of its endpoints once.
        let gets = calls(&m.deliver_ops, "GetItem");
        let deliver_batches = m.deliver_ms.len() as u64;
        assert!(
            (deliver_batches..=deliver_batches * e as u64).contains(&gets),
            "{gets} GetItem for {deliver_batches} batches of {e} endpoints"
        );
        // SQS: at least a SendMessageBatch, a receive and a delete per 10 deliveries.
        let tens = m.deliveries.div_ceil(10) as f64;
        assert!(m.sqs_send >= (m.deliveries as f64 / 10.0).ceil().min(tens));
        assert!(m.sqs_receive >= tens && m.sqs_delete >= tens);
        assert_eq!(m.events_ms.len(), batches);

        // The cost is computed from what was measured: one more RRU per message in `events`
        // adds exactly its price, and no units cost nothing.
        let base = events_cost(m, &model);
        let mut more = m.clone();
        more.events_ops.get_mut("Query").unwrap().read += m.messages as f64;
        let delta = events_cost(&more, &model).events_dynamodb - base.events_dynamodb;
        assert!(
            (delta - 0.125).abs() < 1e-9,
            "1 RRU per message is $0.125 per million: {delta}"
        );
        let mut none = m.clone();
        none.events_ops.clear();
        none.deliver_ops.clear();
        let free = events_cost(&none, &model);
        assert_eq!((free.events_dynamodb, free.deliver_dynamodb), (0.0, 0.0));
        assert_eq!(base.stream_reads, 0.0, "Lambda reads the stream for free");
        assert!(base.total() > 0.0);
        // The POST's wait is billed to `deliver`: a slower endpoint costs more.
        let slow = EventsModel {
            post_ms: model.post_ms * 2.0,
            ..model
        };
        assert!(events_cost(m, &slow).deliver_lambda > base.deliver_lambda);
    }
    // More endpoints: more deliveries, requests, attempt records and bytes out; the `events`
    // reads per message stay about the same (the endpoints are one Query per batch).
    let (c1, c3) = (events_cost(&one, &model), events_cost(&three, &model));
    assert!(c3.total() > c1.total(), "{c1:?} vs {c3:?}");
    assert!(c3.sqs > c1.sqs && c3.deliver_dynamodb > c1.deliver_dynamodb);
    assert!(c3.deliver_lambda > c1.deliver_lambda && c3.transfer > c1.transfer);
}
