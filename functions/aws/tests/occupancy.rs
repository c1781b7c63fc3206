//! Big rooms' occupancy on AWS (protocol.md §17): every invocation builds a fresh service, so the
//! announcements are coalesced through the table ([`OccupancyGate`] on the `DynamoStore`), on a
//! real DynamoDB (moto) and the handlers called with event fixtures.
#![allow(
    clippy::unwrap_used,
    reason = "test code: a failing call is a test failure"
)]

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use futures::future::join_all;
use futures::stream::StreamExt;
use roomcast_aws::dynamo::emulator_client;
use roomcast_aws::lambda::{FunctionConfig, env};
use roomcast_aws::{DynamoConfig, DynamoStore};
use roomcast_core::limits::OCCUPANCY_INTERVAL_MS;
use roomcast_core::occupancy::{OccupancyGate, Turn};
use roomcast_core::service::{ChatService, Inbound, Upgrade};
use roomcast_core::store::{ConnectionStore, RoomRef};
use roomcast_testkit::aws::lambda::{SECRET, World, member_token, now_ms, world, world_with};
use roomcast_testkit::aws::moto::dynamo;
use roomcast_testkit::gateway::RecordingGateway;
use serde_json::{Value, json};

const ROOM: &str = "hall";
/// The presence threshold of these tests: the room is big from its fourth connection.
const THRESHOLD: usize = 3;
/// Joins in flight in the measurement.
const JOINS_IN_FLIGHT: usize = 32;

fn occupancies(frames: &[Value]) -> Vec<u64> {
    frames
        .iter()
        .filter(|f| f["type"] == "occupancy")
        .map(|f| f["connections"].as_u64().unwrap())
        .collect()
}

fn conn_id(i: usize) -> String {
    format!("m{i:04}=")
}

/// `n` connections, the first [`THRESHOLD`] of them joined to [`ROOM`] and what they received
/// taken.
async fn members(n: usize) -> World {
    let threshold = THRESHOLD.to_string();
    let w = world_with(&[(env::PRESENCE_MAX_CONNECTIONS, &threshold)]).await;
    for i in 0..n {
        let token = member_token(&format!("u{i:04}"), &[ROOM]);
        assert_eq!(w.connect(&conn_id(i), &token).await.status_code, 200);
    }
    for i in 0..THRESHOLD {
        join(&w, i).await;
    }
    for i in 0..THRESHOLD {
        w.received(&conn_id(i));
    }
    w
}

async fn join(w: &World, i: usize) {
    w.frame(
        &conn_id(i),
        "$default",
        json!({"action": "join", "room": ROOM}),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn joins_into_a_big_room_announce_at_most_twice_an_interval_and_end_on_the_final_count() {
    let n = 50;
    let w = members(n).await;
    let started = Instant::now();
    // Each join is its own invocation, as API Gateway runs them: all at once.
    join_all((THRESHOLD..n).map(|i| join(&w, i))).await;
    let elapsed_ms = u64::try_from(started.elapsed().as_millis()).unwrap();
    // A leading announcement, then at most one per interval (the held one restarts it).
    let most = 2 + elapsed_ms / OCCUPANCY_INTERVAL_MS;
    let mut total = 0;
    for i in 0..n {
        let frames = w.received(&conn_id(i));
        let joined = frames.iter().find(|f| f["type"] == "joined");
        let counts = occupancies(&frames);
        total += counts.len();
        // Each member's last word on the count is the final one, from its `joined` or a frame.
        let last = counts
            .last()
            .copied()
            .or_else(|| joined.and_then(|j| j["occupancy"].as_u64()));
        assert_eq!(last, Some(n as u64), "member {i}: {frames:?}");
        assert!(
            counts.len() as u64 <= most,
            "member {i} got {} occupancy frames in {elapsed_ms} ms: {counts:?}",
            counts.len()
        );
    }
    println!(
        "{} joins into a big room in {elapsed_ms} ms: {total} occupancy frames, {:.2} per member",
        n - THRESHOLD,
        total as f64 / n as f64
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_departure_from_a_quiet_big_room_is_announced_within_an_interval() {
    let w = members(6).await;
    for i in THRESHOLD..6 {
        join(&w, i).await;
    }
    for i in 0..6 {
        w.received(&conn_id(i));
    }
    let mut ev = roomcast_testkit::aws::lambda::fixture("disconnect");
    ev.request_context.connection_id = conn_id(5);
    ev.request_context.request_time_epoch = now_ms();
    w.runtime.handle_websocket(ev).await;
    // The last join announced less than an interval ago: the departure is held, and the
    // invocation that holds it announces it when the interval ends, before it returns.
    for i in 0..5 {
        assert_eq!(occupancies(&w.received(&conn_id(i))), [5], "member {i}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn of_concurrent_invocations_exactly_one_announces_and_one_holds_the_rest() {
    let w = world().await;
    let store = w.runtime.store();
    let room = RoomRef::new("acme", "hall");
    let other = RoomRef::new("acme", "lobby");
    let t = now_ms();
    let room = &room;
    let turns = |at: u64| async move {
        let turns = join_all((0..16).map(|_| store.changed(room, at))).await;
        turns.into_iter().map(Result::unwrap).collect::<Vec<Turn>>()
    };
    // Sixteen changes at once, then sixteen more within the interval: one announces, one (of
    // either batch: the first's losers read the winner's record) holds the rest.
    let mut all = turns(t).await;
    all.extend(turns(t + 10).await);
    let end = t + OCCUPANCY_INTERVAL_MS;
    let count = |wanted: Turn| all.iter().filter(|turn| **turn == wanted).count();
    assert_eq!(count(Turn::Now), 1, "{all:?}");
    assert_eq!(
        all[16..].iter().filter(|turn| **turn == Turn::Now).count(),
        0
    );
    assert_eq!(count(Turn::Trailing { at_ms: end }), 1, "{all:?}");
    assert_eq!(count(Turn::Nothing), 30, "{all:?}");
    assert_eq!(
        store.changed(&other, t + 10).await.unwrap(),
        Turn::Now,
        "rooms are independent"
    );
    // Two takers (a retried invocation): one announces.
    let taken = join_all((0..2).map(|_| store.take_trailing(room, end))).await;
    let taken: Vec<bool> = taken.into_iter().map(Result::unwrap).collect();
    assert_eq!(taken.iter().filter(|t| **t).count(), 1, "{taken:?}");
    assert!(now_ms() >= end, "the holder waits for the interval's end");
    // Taking it started a new interval.
    let now = now_ms();
    assert!(matches!(
        store.changed(room, now).await.unwrap(),
        Turn::Trailing { .. }
    ));
    assert_eq!(
        store
            .changed(room, now + OCCUPANCY_INTERVAL_MS + 1)
            .await
            .unwrap(),
        Turn::Now
    );
}

/// Occupancy frames per member while `n` members join a big room, each join a fresh service as
/// each Lambda invocation builds one, sharing `table` on `endpoint`: with the table's gate
/// (`shared`) or with only each service's own board (AWS before the gate). Returns (frames per
/// member, the members whose last count heard is not the room's final one, with what they got).
async fn frames_per_member(
    endpoint: &str,
    table: &str,
    n: usize,
    shared: bool,
) -> (f64, Vec<String>) {
    let threshold = THRESHOLD.to_string();
    let vars = HashMap::from([
        (env::JWT_SECRET, SECRET.to_owned()),
        (env::PRESENCE_MAX_CONNECTIONS, threshold),
    ]);
    let config = FunctionConfig::from_env(|k| vars.get(k).cloned()).unwrap();
    let verifier = config.settings.verifier().unwrap();
    let store = Arc::new(DynamoStore::new(
        emulator_client(endpoint).await,
        table,
        DynamoConfig::default(),
    ));
    store.ensure_table().await.unwrap();
    let gateway = Arc::new(RecordingGateway::new());
    let invocation = || {
        let service = ChatService::new(
            verifier.clone(),
            store.clone(),
            store.clone(),
            gateway.clone(),
            config.settings.service.clone(),
        );
        if shared {
            service.with_occupancy_gate(store.clone())
        } else {
            service
        }
    };
    let ids: Vec<String> = (0..n).map(conn_id).collect();
    for (i, id) in ids.iter().enumerate() {
        let token = member_token(&format!("u{i:04}"), &[ROOM]);
        let upgrade = Upgrade {
            token_param: Some(&token),
            protocols: None,
            origin: None,
        };
        assert!(invocation().connect(id, upgrade, now_ms()).await.is_ok());
    }
    let join = json!({"action": "join", "room": ROOM}).to_string();
    // As many in flight as a single-threaded moto serves without refusing connections.
    futures::stream::iter(ids.iter().map(|id| {
        let (service, join) = (invocation(), &join);
        async move { service.frame(id, Inbound::Text(join), now_ms()).await }
    }))
    .buffer_unordered(JOINS_IN_FLIGHT)
    .collect::<Vec<_>>()
    .await;
    // The count every member should hear last: the room's connections now.
    let room = RoomRef::new("acme", ROOM);
    let present = store.room_connections(&room).await.unwrap().len() as u64;
    let mut frames = 0;
    let mut stale = Vec::new();
    for id in &ids {
        let received = gateway.take(id);
        let counts = occupancies(&received);
        frames += counts.len();
        let joined = received.iter().find(|f| f["type"] == "joined");
        let last = counts
            .last()
            .copied()
            .or_else(|| joined.and_then(|j| j["occupancy"].as_u64()));
        if last != Some(present) && present > THRESHOLD as u64 {
            let types: Vec<&str> = received.iter().filter_map(|f| f["type"].as_str()).collect();
            stale.push(format!("{id}: {counts:?} {types:?}"));
        }
    }
    (frames as f64 / n as f64, stale)
}

/// The measurement of docs/benchmarks.md ("Big rooms (issue 20)", "On AWS"): occupancy frames
/// per member while `ROOMCAST_OCCUPANCY_MEMBERS` (default 50) members join a big room at once (32
/// in flight),
/// before (each invocation's own board) and after (the table's gate), in one run.
#[tokio::test(flavor = "multi_thread")]
async fn occupancy_frames_per_member_before_and_after_the_shared_gate() {
    let n: usize = std::env::var("ROOMCAST_OCCUPANCY_MEMBERS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(50);
    let moto = dynamo();
    let table = format!("occupancy-{}", std::process::id());
    let (before, _) = frames_per_member(&moto.endpoint, &format!("{table}-before"), n, false).await;
    let started = Instant::now();
    let (after, stale) =
        frames_per_member(&moto.endpoint, &format!("{table}-after"), n, true).await;
    let seconds = started.elapsed().as_secs_f64();
    println!(
        "{n} members joining a big room at once: {before:.1} occupancy frames per member \
         before, {after:.2} after ({:.0}x fewer; the joins took {seconds:.1} s)",
        before / after
    );
    assert!(stale.is_empty(), "not the final count: {stale:?}");
    assert!(after * 4.0 < before, "before {before}, after {after}");
}
