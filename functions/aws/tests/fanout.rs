//! A big room's fan-out split across `fanout` invocations (issue 20), through the handlers with
//! event fixtures: the `message` function posts the first slice and hands each further slice to
//! Lambda's Invoke API (the testkit's, which runs the `fanout` handler in-process on a runtime
//! of its own), and every member gets the message once. Small rooms stand for big ones: the
//! split policy here cuts above 4 recipients into slices of 3.
#![allow(
    clippy::unwrap_used,
    reason = "test code: a failing call is a test failure"
)]

use std::collections::BTreeSet;

use roomcast_core::split::SplitPolicy;
use roomcast_core::store::ConnectionStore;
use roomcast_testkit::aws::invoke::settled;
use roomcast_testkit::aws::lambda::{FANOUT_FUNCTION, World, member_token, world_splitting};
use serde_json::{Value, json};

const SPLIT: SplitPolicy = SplitPolicy {
    threshold: 4,
    slice_len: 3,
    max_hand_off_bytes: 256 * 1024,
};

/// `c00` … `c10`, each a distinct user, joined to `chat-1`; what they received so far taken.
async fn room_of_eleven() -> (World, Vec<String>) {
    let w = world_splitting(SPLIT).await;
    let members: Vec<String> = (0..11).map(|i| format!("c{i:02}=")).collect();
    for (i, conn) in members.iter().enumerate() {
        let token = member_token(&format!("user{i}"), &["chat-*"]);
        assert_eq!(w.connect(conn, &token).await.status_code, 200);
        w.frame(
            conn,
            "$default",
            json!({"action": "join", "room": "chat-1"}),
        )
        .await;
    }
    for conn in &members {
        w.received(conn);
    }
    // The joins' presence broadcasts were split too (the test world's runtime serves every
    // route); only the message's invocations count below.
    settled(&w.lambda).await;
    w.lambda.lock().unwrap().accepted.clear();
    (w, members)
}

/// The `message` frames `conn` received with `body`.
fn messages(w: &World, conn: &str, body: &str) -> usize {
    w.received(conn)
        .iter()
        .filter(|f| f["type"] == "message" && f["body"] == body)
        .count()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_big_room_is_split_into_fanout_invocations_and_everyone_gets_the_message_once() {
    let (w, members) = room_of_eleven().await;
    // c10's client vanished: the fanout invocation that posts to it gets a 410 and removes it.
    w.vanish("c10=");
    w.frame(
        "c00=",
        "message",
        json!({"action": "message", "room": "chat-1", "id": "m1", "body": "to all"}),
    )
    .await;
    settled(&w.lambda).await;

    let invocations = w.lambda.lock().unwrap().accepted.clone();
    // 10 recipients: the function posts 3 itself and hands off 3, 3 and 1.
    let mut sizes: Vec<usize> = invocations
        .iter()
        .map(|i| i.payload["connections"].as_array().unwrap().len())
        .collect();
    sizes.sort_unstable();
    assert_eq!(sizes, [1, 3, 3], "{invocations:?}");
    let mut handed = BTreeSet::new();
    for i in &invocations {
        assert_eq!(i.function, FANOUT_FUNCTION);
        let frame = &i.payload["frame"];
        assert_eq!(
            (&frame["type"], &frame["body"], &frame["seq"]),
            (&json!("message"), &json!("to all"), &json!(1)),
            "the payload carries the frame as posted"
        );
        for id in i.payload["connections"].as_array().unwrap() {
            assert!(
                handed.insert(id.as_str().unwrap().to_owned()),
                "{id} in two slices"
            );
        }
    }
    assert!(
        !handed.contains("c00=") && handed.len() == 7,
        "the sender is not a recipient; 3 of the 10 stay with the function: {handed:?}"
    );
    assert!(
        handed.contains("c10="),
        "the vanished member was handed off"
    );

    for conn in &members[1..10] {
        assert_eq!(messages(&w, conn, "to all"), 1, "{conn} once");
    }
    let to_sender: Vec<Value> = w.received("c00=");
    assert!(
        to_sender
            .iter()
            .any(|f| f["type"] == "ack" && f["seq"] == 1)
    );
    assert!(!to_sender.iter().any(|f| f["type"] == "message"));
    assert!(
        w.runtime
            .store()
            .connection("c10=")
            .await
            .unwrap()
            .is_none(),
        "the fanout invocation's 410 removed the connection"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_failed_invoke_falls_back_to_posting_the_slice_in_the_function() {
    let (w, members) = room_of_eleven().await;
    // Lambda throttles every Invoke (429 TooManyRequestsException, after the SDK's retries).
    w.lambda.lock().unwrap().refuse = u32::MAX;
    w.frame(
        "c00=",
        "message",
        json!({"action": "message", "room": "chat-1", "id": "m1", "body": "still to all"}),
    )
    .await;
    settled(&w.lambda).await;
    let (accepted, refused) = {
        let l = w.lambda.lock().unwrap();
        (l.accepted.len(), l.refused)
    };
    assert_eq!(accepted, 0);
    assert!(refused >= 3, "each of the 3 slices was refused: {refused}");
    for conn in &members[1..] {
        assert_eq!(messages(&w, conn, "still to all"), 1, "{conn} once");
    }

    // Lambda recovers: the next message is handed off again.
    w.lambda.lock().unwrap().refuse = 0;
    w.frame(
        "c00=",
        "message",
        json!({"action": "message", "room": "chat-1", "id": "m2", "body": "again"}),
    )
    .await;
    settled(&w.lambda).await;
    assert_eq!(w.lambda.lock().unwrap().accepted.len(), 3);
    for conn in &members[1..] {
        assert_eq!(messages(&w, conn, "again"), 1, "{conn} once");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_room_within_the_threshold_is_not_split() {
    let w = world_splitting(SPLIT).await;
    for (i, conn) in ["s0=", "s1=", "s2=", "s3=", "s4="].iter().enumerate() {
        let token = member_token(&format!("small{i}"), &["chat-*"]);
        assert_eq!(w.connect(conn, &token).await.status_code, 200);
        w.frame(
            conn,
            "$default",
            json!({"action": "join", "room": "chat-1"}),
        )
        .await;
        w.received(conn);
    }
    w.frame(
        "s0=",
        "message",
        json!({"action": "message", "room": "chat-1", "id": "m1", "body": "few"}),
    )
    .await;
    assert!(w.lambda.lock().unwrap().accepted.is_empty());
    for conn in ["s1=", "s2=", "s3=", "s4="] {
        assert_eq!(messages(&w, conn, "few"), 1);
    }
}
