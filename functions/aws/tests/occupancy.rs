//! Big rooms' occupancy on AWS (protocol.md §17): every invocation builds a fresh service, so the
//! announcements are coalesced through the table ([`OccupancyGate`] on the `DynamoStore`), on a
//! real DynamoDB (moto) and the handlers called with event fixtures.
#![allow(
    clippy::unwrap_used,
    reason = "test code: a failing call is a test failure"
)]

use std::time::Instant;

use futures::future::join_all;
use roomcast_aws::lambda::env;
use roomcast_core::limits::OCCUPANCY_INTERVAL_MS;
use roomcast_core::occupancy::{OccupancyGate, Turn};
use roomcast_core::store::RoomRef;
use roomcast_testkit::aws::lambda::{World, member_token, now_ms, world, world_with};
use serde_json::{Value, json};

const ROOM: &str = "hall";
/// The presence threshold of these tests: the room is big from its fourth connection.
const THRESHOLD: usize = 3;

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
