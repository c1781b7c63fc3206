//! Frames that arrive together on one connection (`ChatService::frames`), as the local server
//! hands them over when a client sends without waiting for acks: answered in frame order, seqs
//! in frame order, and nothing handled after a frame that closed the connection.

#![allow(
    clippy::unwrap_used,
    reason = "tests: a failing store call or a missing frame is a test failure"
)]

use futures::executor::block_on;
use roomcast_core::auth::Claims;
use roomcast_core::protocol::{ErrorCode, close};
use roomcast_core::ratelimit::RatePolicy;
use roomcast_core::service::{Inbound, ServiceConfig};
use roomcast_core::store::{HistoryStore, RoomRef};
use roomcast_testkit::service::TestService;
use serde_json::{Value, json};

const TENANT: &str = "acme";

fn service(rate: RatePolicy) -> TestService {
    TestService::new(ServiceConfig {
        rate,
        ..ServiceConfig::default()
    })
}

/// `user`'s connection, joined to every room of `joins` (among `grants`); frames so far taken.
fn member(ts: &TestService, user: &str, grants: &[&str], joins: &[&str]) -> String {
    let claims = Claims {
        sub: Some(user.into()),
        tid: Some(TENANT.into()),
        rooms: grants.iter().map(|g| (*g).to_owned()).collect(),
        exp: Some(ts.now() / 1000 + 3_600),
        ..Claims::default()
    };
    let id = format!("{user}-conn");
    let token = ts.sign(&claims);
    let upgrade = roomcast_core::service::Upgrade {
        token_param: Some(&token),
        protocols: None,
        origin: None,
    };
    block_on(ts.service.connect(&id, upgrade, ts.now())).unwrap();
    for room in joins {
        let join = json!({"action": "join", "room": room}).to_string();
        block_on(ts.service.frame(&id, Inbound::Text(&join), ts.now()));
    }
    ts.gateway.take(&id);
    id
}

fn message(room: &str, id: &str, body: &str) -> String {
    json!({"action": "message", "room": room, "id": id, "body": body}).to_string()
}

/// What each frame sent to `conn` is, in order: `ack <id> <seq>[ dup]`, `error <code>`,
/// `message <id> <seq>`, or its type.
fn summary(frames: &[Value]) -> Vec<String> {
    frames
        .iter()
        .map(|f| match f["type"].as_str().unwrap_or_default() {
            "ack" if f["duplicate"] == true => format!("ack {} {} dup", f["id"], f["seq"]),
            "ack" => format!("ack {} {}", f["id"], f["seq"]),
            "message" => format!("message {} {}", f["id"], f["seq"]),
            "error" => format!("error {}", f["code"]),
            other => other.to_owned(),
        })
        .collect()
}

#[test]
fn frames_sent_together_are_answered_and_stored_in_order() {
    let ts = service(RatePolicy {
        burst: 1_000,
        per_sec: 1_000,
        max_strikes: 10,
    });
    let alice = member(&ts, "alice", &["lobby", "other"], &["lobby"]);
    let bob = member(&ts, "bob", &["lobby"], &["lobby"]);
    ts.gateway.take(&alice); // Bob's arrival.
    let texts = [
        message("lobby", "m1", "one"),
        message("lobby", "m2", "two"),
        json!({"action": "typing", "room": "lobby", "state": "start"}).to_string(),
        // Granted but not joined: refused between the acks around it.
        json!({"action": "message", "room": "other", "id": "x", "body": "?", "ref": "r5"})
            .to_string(),
        "not json".to_owned(),
        message("lobby", "m3", "three"),
        // A resend of the first: the original seq, stored once.
        message("lobby", "m1", "one again"),
    ];
    let inbound: Vec<Inbound<'_>> = texts.iter().map(|t| Inbound::Text(t)).collect();
    let outcomes = block_on(ts.service.frames(&alice, &inbound, ts.now()));

    let actions: Vec<_> = outcomes.iter().map(|o| o.action).collect();
    assert_eq!(
        actions,
        [
            Some("message"),
            Some("message"),
            Some("typing"),
            Some("message"),
            None,
            Some("message"),
            Some("message")
        ]
    );
    let rejected: Vec<_> = outcomes.iter().map(|o| o.rejected).collect();
    assert_eq!(
        rejected,
        [
            None,
            None,
            None,
            Some(ErrorCode::NotMember),
            Some(ErrorCode::BadFrame),
            None,
            None
        ]
    );
    assert_eq!(
        summary(&ts.gateway.take(&alice)),
        [
            r#"ack "m1" 1"#,
            r#"ack "m2" 2"#,
            r#"error "NOT_MEMBER""#,
            r#"error "BAD_FRAME""#,
            r#"ack "m3" 3"#,
            r#"ack "m1" 1 dup"#,
        ]
    );
    assert_eq!(
        summary(&ts.gateway.take(&bob)),
        [
            r#"message "m1" 1"#,
            r#"message "m2" 2"#,
            "typing",
            r#"message "m3" 3"#,
        ]
    );
    let lobby = RoomRef::new(TENANT, "lobby");
    assert_eq!(block_on(ts.history.head(&lobby)).unwrap(), 3);
}

#[test]
fn nothing_is_handled_after_a_frame_that_closed_the_connection() {
    // Two frames within the rate, then strikes until the connection closes.
    let ts = service(RatePolicy {
        burst: 2,
        per_sec: 1,
        max_strikes: 1,
    });
    let alice = member(&ts, "alice", &["lobby"], &[]);
    let join = json!({"action": "join", "room": "lobby"}).to_string();
    let texts: Vec<String> = std::iter::once(join)
        .chain((1..=6).map(|i| message("lobby", &format!("m{i}"), "hi")))
        .collect();
    let inbound: Vec<Inbound<'_>> = texts.iter().map(|t| Inbound::Text(t)).collect();
    let outcomes = block_on(ts.service.frames(&alice, &inbound, ts.now()));

    let closed_at = outcomes
        .iter()
        .position(|o| o.closed.is_some())
        .expect("the rate limit closes the connection");
    assert_eq!(outcomes[closed_at].closed, Some(close::RATE_LIMITED));
    assert!(
        outcomes[closed_at + 1..]
            .iter()
            .all(|o| *o == Default::default()),
        "{outcomes:?}"
    );
    let stored = outcomes
        .iter()
        .filter(|o| o.action == Some("message") && o.rejected.is_none())
        .count() as u64;
    let lobby = RoomRef::new(TENANT, "lobby");
    assert_eq!(block_on(ts.history.head(&lobby)).unwrap(), stored);
    let sent = summary(&ts.gateway.take(&alice));
    assert_eq!(sent.last().map(String::as_str), Some("closing"), "{sent:?}");
}
