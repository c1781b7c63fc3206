//! Tests of the core's `ChatService` through its typed front door, over the memory stores and a
//! `RecordingGateway` with a fake clock (`roomcast_testkit::service::TestService`): every call
//! gets `now_ms` from the [`World`], which only moves when a test says so.

#![allow(
    clippy::unwrap_used,
    reason = "tests: a failing store call or a missing frame is a test failure"
)]

use std::cell::RefCell;
use std::ops::Deref;
use std::sync::{Arc, Mutex};

use futures::executor::block_on;
use roomcast_core::auth::{Claims, Identity, Role};
use roomcast_core::gateway::{Gateway, GatewayError, RoomRelay};
use roomcast_core::http::{HttpReply, HttpRequest};
use roomcast_core::limits::{
    MAX_BODY_BYTES, MAX_META_BYTES, MAX_REPLAY, MAX_SERVER_FRAME_BYTES, OCCUPANCY_INTERVAL_MS,
    TYPING_TTL_MS,
};
use roomcast_core::protocol::{
    Conversation, ConversationStatus, ErrorCode, MessageView, SYSTEM_SENDER, close,
};
use roomcast_core::ratelimit::RatePolicy;
use roomcast_core::service::{
    ConnectRefusal, FrameOutcome, Inbound, Publish, ServiceConfig, Upgrade, fit_page,
};
use roomcast_core::store::memory::MemoryHistory;
use roomcast_core::store::{
    Appended, ConnectionStore, HistoryQuery, HistoryStore, NewMessage, Page, RoomRef, StoreError,
};
use roomcast_testkit::gateway::RecordingGateway;
use roomcast_testkit::service::{T0, TestService};
use serde_json::{Value, json};
const TENANT: &str = "acme";
const OTHER_TENANT: &str = "globex";
const TOKEN_LIFETIME_SECS: u64 = 3_600;

/// A rate policy no test reaches unless it means to.
fn roomy() -> RatePolicy {
    RatePolicy {
        burst: 10_000,
        per_sec: 10_000,
        max_strikes: 100,
    }
}

/// The [`TestService`] with the helpers these tests share.
struct World {
    ts: TestService,
    /// Every connection accepted so far, for [`World::settle`].
    opened: RefCell<Vec<String>>,
}

impl Deref for World {
    type Target = TestService;

    fn deref(&self) -> &TestService {
        &self.ts
    }
}

impl World {
    fn new() -> Self {
        Self::with_config(ServiceConfig {
            rate: roomy(),
            ..ServiceConfig::default()
        })
    }

    fn with_config(config: ServiceConfig) -> Self {
        Self::of(TestService::new(config))
    }

    fn of(ts: TestService) -> Self {
        Self {
            ts,
            opened: RefCell::new(Vec::new()),
        }
    }

    /// Claims for `user` of [`TENANT`] granting `grants`, valid for an hour from now.
    fn claims(&self, user: &str, grants: &[&str]) -> Claims {
        Claims {
            sub: Some(user.into()),
            tid: Some(TENANT.into()),
            rooms: grants.iter().map(|g| (*g).to_owned()).collect(),
            exp: Some(self.now() / 1000 + TOKEN_LIFETIME_SECS),
            ..Claims::default()
        }
    }

    fn token(&self, claims: &Claims) -> String {
        self.sign(claims)
    }

    fn identity(&self, claims: &Claims) -> Identity {
        self.service
            .verifier()
            .verify(&self.token(claims), self.now())
            .unwrap()
    }

    /// Connects with a token for `claims` under a fresh connection id.
    fn try_connect(&self, claims: &Claims) -> Result<String, ConnectRefusal> {
        let user = claims.sub.as_deref().unwrap_or("anon");
        let id = format!("{user}-{}", self.opened.borrow().len() + 1);
        let token = self.token(claims);
        block_on(self.service.connect(&id, query_token(&token), self.now()))?;
        self.opened.borrow_mut().push(id.clone());
        Ok(id)
    }

    fn connect(&self, user: &str, grants: &[&str]) -> String {
        self.try_connect(&self.claims(user, grants))
            .expect("connect accepted")
    }

    /// Sends `join` and returns the frames the joiner got.
    fn join(&self, conn: &str, room: &str) -> Vec<Value> {
        self.send(conn, json!({"action": "join", "room": room}));
        self.frames(conn)
    }

    /// A connection of `claims`' user that has joined every room it grants; all frames so far
    /// are drained.
    fn member_with(&self, claims: &Claims) -> String {
        let conn = self.try_connect(claims).expect("connect accepted");
        for room in &claims.rooms {
            let joined = self.join(&conn, room);
            assert_eq!(joined[0]["type"], "joined", "{joined:?}");
        }
        self.settle();
        conn
    }

    fn member(&self, user: &str, rooms: &[&str]) -> String {
        self.member_with(&self.claims(user, rooms))
    }

    fn send(&self, conn: &str, frame: Value) -> FrameOutcome {
        self.send_text(conn, &frame.to_string())
    }

    fn send_text(&self, conn: &str, text: &str) -> FrameOutcome {
        block_on(self.service.frame(conn, Inbound::Text(text), self.now()))
    }

    /// Takes the frames sent to `conn` since the last look.
    fn frames(&self, conn: &str) -> Vec<Value> {
        self.gateway.take(conn)
    }

    /// Forgets every frame sent so far.
    fn settle(&self) {
        for conn in self.opened.borrow().iter() {
            self.gateway.take(conn);
        }
    }

    /// Sends a message and returns the seq its ack carries.
    fn say(&self, conn: &str, room: &str, id: &str, body: &str) -> u64 {
        let outcome = self.send(
            conn,
            json!({"action": "message", "room": room, "id": id, "body": body}),
        );
        assert_eq!(outcome.rejected, None, "{outcome:?}");
        let frames = self.frames(conn);
        let ack = frames.iter().find(|f| f["type"] == "ack").expect("an ack");
        ack["seq"].as_u64().unwrap()
    }

    /// `history` for `room` with extra `query` fields: the seqs returned and `more`.
    fn page(&self, conn: &str, room: &str, query: Value) -> (Vec<u64>, bool) {
        let mut frame = json!({"action": "history", "room": room});
        for (k, v) in query.as_object().unwrap() {
            frame[k] = v.clone();
        }
        assert_eq!(self.send(conn, frame), handled("history", 0));
        let frames = self.frames(conn);
        assert_eq!(frames.len(), 1, "{frames:?}");
        assert_eq!(frames[0]["type"], "history");
        assert_eq!(frames[0]["room"], room);
        let seqs = frames[0]["messages"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["seq"].as_u64().unwrap())
            .collect();
        (seqs, frames[0]["more"].as_bool().unwrap())
    }

    fn disconnect(&self, conn: &str) {
        block_on(self.service.disconnect(conn, self.now()));
    }

    fn head_in(&self, tenant: &str, room: &str) -> u64 {
        block_on(self.history.head(&RoomRef::new(tenant, room))).unwrap()
    }

    fn head(&self, room: &str) -> u64 {
        self.head_in(TENANT, room)
    }

    fn stored(&self, room: &str, seq: u64) -> Option<MessageView> {
        block_on(self.history.message(&RoomRef::new(TENANT, room), seq)).unwrap()
    }

    /// Connection ids subscribed to `room` of [`TENANT`], sorted.
    fn subscribers(&self, room: &str) -> Vec<String> {
        let mut ids: Vec<String> = block_on(
            self.connections
                .room_connections(&RoomRef::new(TENANT, room)),
        )
        .unwrap()
        .into_iter()
        .map(|s| s.conn_id)
        .collect();
        ids.sort();
        ids
    }

    fn is_live(&self, conn: &str) -> bool {
        block_on(self.connections.connection(conn))
            .unwrap()
            .is_some()
    }
}

/// An upgrade carrying `token` as `?token=`.
fn query_token(token: &str) -> Upgrade<'_> {
    Upgrade {
        token_param: Some(token),
        ..Upgrade::default()
    }
}

fn handled(action: &'static str, fanout: usize) -> FrameOutcome {
    FrameOutcome {
        action: Some(action),
        fanout,
        ..FrameOutcome::default()
    }
}

fn refused(action: Option<&'static str>, code: ErrorCode) -> FrameOutcome {
    FrameOutcome {
        action,
        rejected: Some(code),
        ..FrameOutcome::default()
    }
}

fn closed_with(code: u16) -> FrameOutcome {
    FrameOutcome {
        closed: Some(code),
        ..FrameOutcome::default()
    }
}

/// Exactly one `error` frame with `code` and `reference`, and a reason for people.
fn assert_error(frames: &[Value], code: ErrorCode, reference: Option<&str>) {
    assert_eq!(frames.len(), 1, "{frames:?}");
    let f = &frames[0];
    assert_eq!(f["type"], "error", "{f}");
    assert_eq!(f["code"], code.as_str(), "{f}");
    assert_eq!(f["ref"], json!(reference), "{f}");
    assert!(f["message"].as_str().is_some_and(|m| !m.is_empty()), "{f}");
    assert_eq!(f.as_object().unwrap().len(), 4, "no other fields: {f}");
}

/// A `message` frame from a user as clients see it (no name, meta, edit or tombstone).
fn message_json(room: &str, seq: u64, id: &str, from: &str, body: &str, ts: u64) -> Value {
    json!({"type": "message", "room": room, "seq": seq, "id": id, "from": from, "role": "user",
           "body": body, "ts": ts})
}

fn presence_json(user: &str, status: &str, last_seen: u64) -> Value {
    json!({"type": "presence", "user": user, "status": status, "last_seen": last_seen})
}

fn member_of<'a>(joined: &'a Value, user: &str) -> &'a Value {
    joined["members"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["user"] == user)
        .unwrap_or_else(|| panic!("{user} listed in {joined}"))
}

// ---------------------------------------------------------------------------------------------
// connect

#[test]
fn connect_accepts_a_good_token_and_registers_the_connection() {
    let w = World::new();
    let claims = Claims {
        name: Some("Alice".into()),
        ..w.claims("alice", &["support-*", "lobby"])
    };
    let token = w.token(&claims);
    let conn = block_on(w.service.connect("c-1", query_token(&token), w.now()))
        .unwrap()
        .connection;
    assert_eq!(conn.id, "c-1");
    assert_eq!(conn.tenant, TENANT);
    assert_eq!(conn.user, "alice");
    assert_eq!(conn.name.as_deref(), Some("Alice"));
    assert_eq!(conn.role, Role::User);
    assert_eq!(conn.grants, vec!["support-*", "lobby"]);
    assert_eq!(conn.connected_at_ms, w.now());
    assert_eq!(
        conn.token_expires_at_ms,
        w.now() + TOKEN_LIFETIME_SECS * 1000
    );
    assert!(conn.rooms.is_empty());
    assert_eq!(
        block_on(w.connections.connection("c-1")).unwrap(),
        Some(conn)
    );
    assert_eq!(
        block_on(w.connections.presence(TENANT, &["alice".into()])).unwrap(),
        vec![Some(roomcast_core::protocol::PresenceStatus::Online)]
    );
    assert!(w.frames("c-1").is_empty(), "connect sends no frame");
}

#[test]
fn connect_refuses_missing_bad_and_expired_tokens_with_401() {
    let w = World::new();
    let good = w.claims("alice", &["lobby"]);
    let expired = Claims {
        exp: Some(w.now() / 1000),
        ..good.clone()
    };
    let no_exp = Claims {
        exp: None,
        ..good.clone()
    };
    let cases: Vec<(&str, Option<String>)> = vec![
        ("missing", None),
        ("empty", Some(String::new())),
        ("garbage", Some("not-a-jwt".into())),
        (
            "other secret",
            Some(roomcast_core::auth::TokenSigner::hs256(b"someone-else").sign(&good)),
        ),
        ("expired", Some(w.token(&expired))),
        ("no exp", Some(w.token(&no_exp))),
    ];
    for (what, token) in cases {
        let refusal = block_on(w.service.connect(
            "c-x",
            Upgrade {
                token_param: token.as_deref(),
                ..Upgrade::default()
            },
            w.now(),
        ))
        .expect_err(what);
        assert_eq!(refusal.status, 401, "{what}: {refusal:?}");
        assert!(!refusal.reason.is_empty(), "{what}");
        assert!(!w.is_live("c-x"), "{what}: nothing stored");
    }
    // The same claims, well signed and in date, are fine.
    assert!(w.try_connect(&good).is_ok());
}

#[test]
fn connect_refuses_a_user_token_without_rooms_with_403_but_not_a_service() {
    let w = World::new();
    let refusal = w.try_connect(&w.claims("alice", &[])).unwrap_err();
    assert_eq!(refusal.status, 403, "{refusal:?}");
    assert!(w.opened.borrow().is_empty());
    let service = Claims {
        role: Role::Service,
        ..w.claims("backend", &[])
    };
    assert!(w.try_connect(&service).is_ok(), "a service needs no grants");
}

#[test]
fn connect_refuses_more_than_max_connections_per_user_with_429() {
    let w = World::with_config(ServiceConfig {
        rate: roomy(),
        max_connections_per_user: 2,
        ..ServiceConfig::default()
    });
    let first = w.connect("alice", &["lobby"]);
    w.connect("alice", &["lobby"]);
    let refusal = w.try_connect(&w.claims("alice", &["lobby"])).unwrap_err();
    assert_eq!(refusal.status, 429, "{refusal:?}");
    // Per user and per tenant: bob, and an alice of another tenant, are not affected.
    w.connect("bob", &["lobby"]);
    let other_alice = Claims {
        tid: Some(OTHER_TENANT.into()),
        ..w.claims("alice", &["lobby"])
    };
    assert!(w.try_connect(&other_alice).is_ok());
    // A slot frees up when a connection goes.
    w.disconnect(&first);
    assert!(w.try_connect(&w.claims("alice", &["lobby"])).is_ok());
}

// ---------------------------------------------------------------------------------------------
// join

#[test]
fn joined_reports_head_read_cursor_unread_and_members_with_presence() {
    let w = World::new();
    let a1 = w.member("alice", &["lobby"]);
    w.advance(10);
    let b1 = w.member("bob", &["lobby"]);
    w.advance(10);
    let c1 = w.member("carol", &["lobby"]);
    w.advance(10);
    w.disconnect(&c1);
    for i in 1..=3 {
        w.say(&a1, "lobby", &format!("m{i}"), "hi");
    }
    w.send(&b1, json!({"action": "read", "room": "lobby", "seq": 1}));
    w.send(&a1, json!({"action": "presence", "status": "away"}));
    w.settle();
    w.advance(70);
    let b2 = w.connect("bob", &["lobby"]);
    let joined = w.join(&b2, "lobby");
    assert_eq!(
        joined,
        vec![json!({
            "type": "joined",
            "room": "lobby",
            "head": 3,
            "read_seq": 1,
            "unread": 2,
            "members": [
                {"user": "bob", "status": "online", "last_seen": T0 + 100},
                {"user": "carol", "status": "offline", "last_seen": T0 + 30},
                {"user": "alice", "status": "away", "last_seen": T0},
            ],
        })]
    );
}

#[test]
fn joining_a_room_the_token_does_not_grant_is_forbidden() {
    let w = World::new();
    let a1 = w.connect("alice", &["support-*"]);
    let outcome = w.send(
        &a1,
        json!({"action": "join", "room": "sales", "ref": "j-1"}),
    );
    assert_eq!(outcome, refused(Some("join"), ErrorCode::Forbidden));
    assert_error(&w.frames(&a1), ErrorCode::Forbidden, Some("j-1"));
    assert!(w.subscribers("sales").is_empty());
    // The prefix grant covers `support-42`, and only rooms with that prefix.
    assert_eq!(w.join(&a1, "support-42")[0]["type"], "joined");
    assert_eq!(w.subscribers("support-42"), vec![a1.clone()]);
    w.send(
        &a1,
        json!({"action": "join", "room": "support", "ref": "j-2"}),
    );
    assert_error(&w.frames(&a1), ErrorCode::Forbidden, Some("j-2"));
}

#[test]
fn joining_more_rooms_than_allowed_is_limit_exceeded() {
    let w = World::with_config(ServiceConfig {
        rate: roomy(),
        max_rooms_per_connection: 2,
        ..ServiceConfig::default()
    });
    let a1 = w.connect("alice", &["*"]);
    w.join(&a1, "r1");
    w.join(&a1, "r2");
    let outcome = w.send(&a1, json!({"action": "join", "room": "r3", "ref": "j-3"}));
    assert_eq!(outcome, refused(Some("join"), ErrorCode::LimitExceeded));
    assert_error(&w.frames(&a1), ErrorCode::LimitExceeded, Some("j-3"));
    assert!(w.subscribers("r3").is_empty());
    // Leaving one makes room.
    w.send(&a1, json!({"action": "leave", "room": "r1"}));
    assert_eq!(w.frames(&a1), vec![json!({"type": "left", "room": "r1"})]);
    assert_eq!(w.join(&a1, "r3")[0]["type"], "joined");
}

#[test]
fn a_service_bound_to_one_room_refuses_joining_another_with_invalid() {
    let w = World::with_config(ServiceConfig {
        rate: roomy(),
        bound_room: Some("lobby".into()),
        ..ServiceConfig::default()
    });
    let a1 = w.connect("alice", &["lobby", "sales"]);
    assert_eq!(w.join(&a1, "lobby")[0]["type"], "joined");
    let outcome = w.send(
        &a1,
        json!({"action": "join", "room": "sales", "ref": "j-1"}),
    );
    assert_eq!(outcome, refused(Some("join"), ErrorCode::Invalid));
    let frames = w.frames(&a1);
    assert_error(&frames, ErrorCode::Invalid, Some("j-1"));
    assert!(
        frames[0]["message"]
            .as_str()
            .is_some_and(|m| m.contains("belongs to room `lobby`")),
        "{frames:?}"
    );
    assert!(w.subscribers("sales").is_empty());
    // A room the token does not grant is still FORBIDDEN, as on every deployment.
    let outcome = w.send(&a1, json!({"action": "join", "room": "secret"}));
    assert_eq!(outcome, refused(Some("join"), ErrorCode::Forbidden));
}

#[test]
fn join_since_replays_exactly_the_later_messages_in_order() {
    let w = World::new();
    let a1 = w.member("alice", &["lobby"]);
    for i in 1..=5u64 {
        w.advance(1);
        assert_eq!(
            w.say(&a1, "lobby", &format!("m{i}"), &format!("body {i}")),
            i
        );
    }
    let b1 = w.connect("bob", &["lobby"]);
    w.send(&b1, json!({"action": "join", "room": "lobby", "since": 2}));
    let frames = w.frames(&b1);
    assert_eq!(frames[0]["type"], "joined");
    assert_eq!(frames[0]["head"], 5);
    assert_eq!(
        frames[1..],
        [
            message_json("lobby", 3, "m3", "alice", "body 3", T0 + 3),
            message_json("lobby", 4, "m4", "alice", "body 4", T0 + 4),
            message_json("lobby", 5, "m5", "alice", "body 5", T0 + 5),
            json!({"type": "replayed", "room": "lobby", "through": 5, "more": false}),
        ]
    );
    // Up to date: nothing replayed, `through` is `since`.
    let b2 = w.connect("bob", &["lobby"]);
    w.send(&b2, json!({"action": "join", "room": "lobby", "since": 5}));
    let frames = w.frames(&b2);
    assert_eq!(frames.len(), 2, "{frames:?}");
    assert_eq!(
        frames[1],
        json!({"type": "replayed", "room": "lobby", "through": 5, "more": false})
    );
    // Without `since` there is no replay at all.
    let b3 = w.connect("bob", &["lobby"]);
    let frames = w.join(&b3, "lobby");
    assert_eq!(frames.len(), 1, "{frames:?}");
}

#[test]
fn join_replay_is_bounded_by_max_replay_then_pages_with_history() {
    let w = World::new();
    let a1 = w.member("alice", &["lobby"]);
    let total = u64::from(MAX_REPLAY) + 5;
    for i in 1..=total {
        w.say(&a1, "lobby", &format!("m{i}"), "x");
    }
    let b1 = w.connect("bob", &["lobby"]);
    w.send(&b1, json!({"action": "join", "room": "lobby", "since": 0}));
    let frames = w.frames(&b1);
    assert_eq!(
        frames.len(),
        MAX_REPLAY as usize + 2,
        "joined + replay + replayed"
    );
    assert_eq!(frames[0]["type"], "joined");
    let replayed: Vec<u64> = frames[1..=MAX_REPLAY as usize]
        .iter()
        .map(|f| {
            assert_eq!(f["type"], "message");
            f["seq"].as_u64().unwrap()
        })
        .collect();
    assert_eq!(replayed, (1..=u64::from(MAX_REPLAY)).collect::<Vec<_>>());
    assert_eq!(
        frames.last().unwrap(),
        &json!({"type": "replayed", "room": "lobby", "through": MAX_REPLAY, "more": true})
    );
    let rest = w.page(&b1, "lobby", json!({"after": MAX_REPLAY, "limit": 100}));
    assert_eq!(rest, ((u64::from(MAX_REPLAY) + 1..=total).collect(), false));
}

#[test]
fn joining_announces_presence_to_others_once_per_user() {
    let w = World::new();
    let a1 = w.member("alice", &["lobby"]);
    w.advance(5);
    let b1 = w.connect("bob", &["lobby"]);
    let joined = w.join(&b1, "lobby");
    assert_eq!(joined.len(), 1, "no presence about oneself: {joined:?}");
    assert_eq!(w.frames(&a1), vec![presence_json("bob", "online", T0 + 5)]);
    // Bob's second device: already announced.
    w.advance(5);
    let b2 = w.connect("bob", &["lobby"]);
    assert_eq!(w.join(&b2, "lobby").len(), 1);
    assert!(w.frames(&a1).is_empty());
    assert!(w.frames(&b1).is_empty());
    // Joining again on the same connection announces nothing either.
    assert_eq!(w.join(&b1, "lobby").len(), 1);
    assert!(w.frames(&a1).is_empty());
    // A user who chose a status before joining is announced with it.
    let c1 = w.connect("carol", &["lobby"]);
    assert_eq!(
        w.send(&c1, json!({"action": "presence", "status": "busy"})),
        handled("presence", 0)
    );
    w.join(&c1, "lobby");
    let busy = presence_json("carol", "busy", T0 + 10);
    assert_eq!(w.frames(&a1), vec![busy.clone()]);
    assert_eq!(w.frames(&b1), vec![busy.clone()]);
    assert_eq!(w.frames(&b2), vec![busy]);
}

// ---------------------------------------------------------------------------------------------
// message

#[test]
fn message_is_acked_to_the_sender_and_fanned_out_to_the_room_only() {
    let w = World::new();
    let alice = Claims {
        name: Some("Alice".into()),
        ..w.claims("alice", &["lobby"])
    };
    let a1 = w.member_with(&alice);
    let a2 = w.member_with(&alice);
    let b1 = w.member("bob", &["lobby"]);
    let c1 = w.member("carol", &["other"]);
    let e1 = w.member_with(&Claims {
        tid: Some(OTHER_TENANT.into()),
        ..w.claims("eve", &["lobby"])
    });
    w.advance(7);
    let outcome = w.send(
        &a1,
        json!({"action": "message", "room": "lobby", "id": "m-1", "body": "hello", "meta": {"k": 1}}),
    );
    assert_eq!(outcome, handled("message", 2));
    let now = T0 + 7;
    assert_eq!(
        w.frames(&a1),
        vec![json!({"type": "ack", "id": "m-1", "room": "lobby", "seq": 1, "ts": now})]
    );
    let delivered = json!({
        "type": "message", "room": "lobby", "seq": 1, "id": "m-1", "from": "alice",
        "name": "Alice", "role": "user", "body": "hello", "meta": {"k": 1}, "ts": now,
    });
    assert_eq!(
        w.frames(&a2),
        vec![delivered.clone()],
        "the sender's other device"
    );
    assert_eq!(w.frames(&b1), vec![delivered]);
    assert!(w.frames(&c1).is_empty(), "another room");
    assert!(
        w.frames(&e1).is_empty(),
        "another tenant's room of the same name"
    );
    assert_eq!(w.head("lobby"), 1);
    assert_eq!(w.head_in(OTHER_TENANT, "lobby"), 0);
    let stored = w.stored("lobby", 1).unwrap();
    assert_eq!(
        (
            stored.id.as_str(),
            stored.from.as_str(),
            stored.body.as_deref()
        ),
        ("m-1", "alice", Some("hello"))
    );
    assert_eq!(stored.meta, Some(json!({"k": 1})));
}

/// Checks, when an `ack` goes out, that its message is already in the history store.
struct AckAudit {
    inner: Arc<RecordingGateway>,
    history: Arc<MemoryHistory>,
    /// (seq, stored when acked)
    acks: Mutex<Vec<(u64, bool)>>,
}

#[async_trait::async_trait]
impl Gateway for AckAudit {
    async fn send(&self, conn_id: &str, frame: &str) -> Result<(), GatewayError> {
        let v: Value = serde_json::from_str(frame).unwrap();
        if v["type"] == "ack" {
            let room = RoomRef::new(TENANT, v["room"].as_str().unwrap());
            let seq = v["seq"].as_u64().unwrap();
            let stored = self
                .history
                .message(&room, seq)
                .await
                .unwrap()
                .is_some_and(|m| m.id == v["id"]);
            self.acks.lock().unwrap().push((seq, stored));
        }
        self.inner.send(conn_id, frame).await
    }

    async fn close(&self, conn_id: &str, code: u16, reason: &str) -> Result<(), GatewayError> {
        self.inner.close(conn_id, code, reason).await
    }
}

#[test]
fn ack_goes_out_only_once_the_message_is_stored() {
    let history = Arc::new(MemoryHistory::new());
    let recording = Arc::new(RecordingGateway::new());
    let audit = Arc::new(AckAudit {
        inner: recording.clone(),
        history: history.clone(),
        acks: Mutex::new(Vec::new()),
    });
    let config = ServiceConfig {
        rate: roomy(),
        ..ServiceConfig::default()
    };
    let w = World::of(TestService::with_parts(
        config,
        history,
        recording,
        audit.clone(),
    ));
    let a1 = w.member("alice", &["lobby"]);
    w.say(&a1, "lobby", "m-1", "one");
    w.say(&a1, "lobby", "m-2", "two");
    w.say(&a1, "lobby", "m-1", "one again");
    assert_eq!(
        *audit.acks.lock().unwrap(),
        vec![(1, true), (2, true), (1, true)]
    );
}

#[test]
fn resending_an_id_acks_the_original_seq_as_duplicate_and_stores_nothing() {
    let w = World::new();
    let a1 = w.member("alice", &["lobby"]);
    let a2 = w.member("alice", &["lobby"]);
    let b1 = w.member("bob", &["lobby"]);
    assert_eq!(w.say(&a1, "lobby", "m-1", "first"), 1);
    w.settle();
    w.advance(50);
    // Resent after a reconnect, from the other device, with another body.
    let outcome = w.send(
        &a2,
        json!({"action": "message", "room": "lobby", "id": "m-1", "body": "changed"}),
    );
    assert_eq!(outcome, handled("message", 0));
    assert_eq!(
        w.frames(&a2),
        vec![
            json!({"type": "ack", "id": "m-1", "room": "lobby", "seq": 1, "ts": T0, "duplicate": true})
        ]
    );
    assert!(w.frames(&a1).is_empty());
    assert!(w.frames(&b1).is_empty());
    assert_eq!(w.head("lobby"), 1);
    assert_eq!(w.stored("lobby", 1).unwrap().body.as_deref(), Some("first"));
    // Ids are the sender's: bob may use the same one.
    assert_eq!(w.say(&b1, "lobby", "m-1", "bob's"), 2);
    assert_eq!(
        w.frames(&a1),
        vec![message_json("lobby", 2, "m-1", "bob", "bob's", T0 + 50)]
    );
}

#[test]
fn acting_on_a_room_not_joined_is_not_member() {
    let w = World::new();
    let a1 = w.member("alice", &["lobby"]);
    let b1 = w.member("bob", &["lobby"]);
    w.say(&a1, "lobby", "m-1", "hi");
    w.settle();
    let a2 = w.connect("alice", &["lobby"]);
    let cases = [
        json!({"action": "message", "room": "lobby", "id": "x-1", "body": "hi"}),
        json!({"action": "edit", "room": "lobby", "seq": 1, "body": "x", "ref": "x-2"}),
        json!({"action": "delete", "room": "lobby", "seq": 1, "ref": "x-3"}),
        json!({"action": "typing", "room": "lobby", "state": "start", "ref": "x-4"}),
        json!({"action": "read", "room": "lobby", "seq": 1, "ref": "x-5"}),
        json!({"action": "history", "room": "lobby", "ref": "x-6"}),
    ];
    for (i, frame) in cases.into_iter().enumerate() {
        let action = frame["action"].as_str().unwrap().to_owned();
        let outcome = w.send(&a2, frame);
        assert_eq!(outcome.rejected, Some(ErrorCode::NotMember), "{action}");
        assert_eq!(outcome.action.unwrap(), action);
        assert_error(
            &w.frames(&a2),
            ErrorCode::NotMember,
            Some(&format!("x-{}", i + 1)),
        );
    }
    assert_eq!(w.head("lobby"), 1);
    assert_eq!(w.stored("lobby", 1).unwrap().body.as_deref(), Some("hi"));
    assert!(w.frames(&b1).is_empty());
    // After `leave`, the room is off limits again and its traffic stops.
    assert_eq!(
        w.send(&a1, json!({"action": "leave", "room": "lobby"})),
        handled("leave", 0)
    );
    assert_eq!(
        w.frames(&a1),
        vec![json!({"type": "left", "room": "lobby"})]
    );
    assert_eq!(w.subscribers("lobby"), vec![b1.clone()]);
    w.say(&b1, "lobby", "m-2", "anyone?");
    assert!(w.frames(&a1).is_empty());
    w.send(
        &a1,
        json!({"action": "message", "room": "lobby", "id": "m-3", "body": "x"}),
    );
    assert_error(&w.frames(&a1), ErrorCode::NotMember, Some("m-3"));
}

#[test]
fn seqs_are_gap_free_across_senders() {
    let w = World::new();
    let senders = [
        w.member("alice", &["lobby"]),
        w.member("bob", &["lobby"]),
        w.member("carol", &["lobby"]),
    ];
    let mut acked = Vec::new();
    for round in 0..4 {
        for (i, conn) in senders.iter().enumerate() {
            w.advance(1);
            acked.push(w.say(conn, "lobby", &format!("r{round}-{i}"), "x"));
        }
    }
    assert_eq!(acked, (1..=12).collect::<Vec<_>>());
    assert_eq!(w.head("lobby"), 12);
    w.settle();
    let (seqs, more) = w.page(&senders[0], "lobby", json!({"after": 0, "limit": 100}));
    assert_eq!((seqs, more), ((1..=12).collect(), false));
    let froms: Vec<String> = (1..=12)
        .map(|s| w.stored("lobby", s).unwrap().from)
        .collect();
    assert_eq!(froms[..3], ["alice", "bob", "carol"]);
    assert_eq!(froms[9..], ["alice", "bob", "carol"]);
}

// ---------------------------------------------------------------------------------------------
// edit and delete

#[test]
fn the_author_edits_and_the_whole_room_hears_it() {
    let w = World::new();
    let a1 = w.member("alice", &["lobby"]);
    let b1 = w.member("bob", &["lobby"]);
    w.say(&a1, "lobby", "m-1", "frist");
    w.settle();
    w.advance(100);
    let outcome = w.send(
        &a1,
        json!({"action": "edit", "room": "lobby", "seq": 1, "body": "first"}),
    );
    assert_eq!(outcome, handled("edit", 2));
    let edited = json!({"type": "edited", "room": "lobby", "seq": 1, "body": "first", "by": "alice", "edited_ts": T0 + 100});
    assert_eq!(w.frames(&a1), vec![edited.clone()]);
    assert_eq!(w.frames(&b1), vec![edited]);
    let stored = w.stored("lobby", 1).unwrap();
    assert_eq!(stored.body.as_deref(), Some("first"));
    assert_eq!(stored.edited_ts, Some(T0 + 100));
    assert_eq!(w.head("lobby"), 1, "an edit is not a new message");
}

#[test]
fn the_author_deletes_leaving_a_tombstone_and_the_room_hears_it() {
    let w = World::new();
    let a1 = w.member("alice", &["lobby"]);
    let b1 = w.member("bob", &["lobby"]);
    w.say(&a1, "lobby", "m-1", "oops");
    w.say(&a1, "lobby", "m-2", "fine");
    w.settle();
    w.advance(9);
    let outcome = w.send(&a1, json!({"action": "delete", "room": "lobby", "seq": 1}));
    assert_eq!(outcome, handled("delete", 2));
    let deleted = json!({"type": "deleted", "room": "lobby", "seq": 1, "by": "alice"});
    assert_eq!(w.frames(&a1), vec![deleted.clone()]);
    assert_eq!(w.frames(&b1), vec![deleted]);
    assert_eq!(w.head("lobby"), 2, "the seq stays");
    let b2 = w.connect("bob", &["lobby"]);
    w.send(&b2, json!({"action": "join", "room": "lobby", "since": 0}));
    let frames = w.frames(&b2);
    assert_eq!(
        frames[1],
        json!({"type": "message", "room": "lobby", "seq": 1, "id": "m-1", "from": "alice",
               "role": "user", "ts": T0, "edited_ts": T0 + 9, "deleted": true})
    );
    assert_eq!(
        frames[2],
        message_json("lobby", 2, "m-2", "alice", "fine", T0)
    );
}

// reactions and replies (protocol 1.1)

#[test]
fn reactions_are_told_to_the_room_once_and_repeats_only_acknowledged() {
    let w = World::new();
    let a1 = w.member("alice", &["lobby"]);
    let b1 = w.member("bob", &["lobby"]);
    w.say(&a1, "lobby", "m-1", "lunch?");
    w.settle();
    let react = |action: &str, r: &str| json!({"action": action, "room": "lobby", "seq": 1, "emoji": "👍", "ref": r});
    assert_eq!(w.send(&b1, react("react", "r-1")), handled("react", 1));
    let told = json!({"type": "reaction", "room": "lobby", "seq": 1, "emoji": "👍", "by": "bob",
                      "added": true, "count": 1, "users": ["bob"]});
    let mut reply = told.clone();
    reply["ref"] = json!("r-1");
    assert_eq!(w.frames(&b1), vec![reply]);
    assert_eq!(w.frames(&a1), vec![told]);
    // The same reaction again: acknowledged as a duplicate, told to nobody.
    assert_eq!(w.send(&b1, react("react", "r-2")), handled("react", 0));
    let frames = w.frames(&b1);
    assert_eq!(
        (frames[0]["duplicate"].clone(), frames[0]["count"].clone()),
        (json!(true), json!(1))
    );
    assert!(w.frames(&a1).is_empty());
    assert_eq!(w.send(&a1, react("react", "r-3")), handled("react", 1));
    w.settle();
    // History carries the aggregate.
    w.send(&a1, json!({"action": "history", "room": "lobby"}));
    let page = w.frames(&a1);
    assert_eq!(
        page[0]["messages"][0]["reactions"],
        json!([{"emoji": "👍", "count": 2, "users": ["bob", "alice"]}])
    );
    assert_eq!(w.send(&b1, react("unreact", "u-1")), handled("unreact", 1));
    let frames = w.frames(&a1);
    assert_eq!(
        (frames[0]["added"].clone(), frames[0]["users"].clone()),
        (json!(false), json!(["alice"]))
    );
    w.settle();
    assert_eq!(w.send(&b1, react("unreact", "u-2")), handled("unreact", 0));
    assert_eq!(w.frames(&b1)[0]["duplicate"], json!(true));
    assert_eq!(w.send(&a1, react("unreact", "u-3")), handled("unreact", 1));
    w.settle();
    let stored = w.stored("lobby", 1).unwrap();
    assert!(stored.reactions.is_empty());
    let shown = serde_json::to_value(&stored).unwrap();
    assert!(shown.get("reactions").is_none(), "no reactions, no field");
}

#[test]
fn reacting_to_a_missing_or_deleted_message_or_with_a_bad_emoji_is_refused() {
    let w = World::new();
    let a1 = w.member("alice", &["lobby"]);
    let b1 = w.member("bob", &["lobby"]);
    w.say(&a1, "lobby", "m-1", "soon gone");
    assert_eq!(
        w.send(&a1, json!({"action": "delete", "room": "lobby", "seq": 1})),
        handled("delete", 2)
    );
    w.settle();
    for (seq, emoji, code) in [
        (1, "👍", ErrorCode::NotFound),
        (7, "👍", ErrorCode::NotFound),
        (1, "a b", ErrorCode::Invalid),
        (1, "", ErrorCode::Invalid),
    ] {
        let frame =
            json!({"action": "react", "room": "lobby", "seq": seq, "emoji": emoji, "ref": "x"});
        assert_eq!(w.send(&b1, frame).rejected, Some(code), "{seq} {emoji:?}");
        assert_error(&w.frames(&b1), code, Some("x"));
    }
    let frame = json!({"action": "react", "room": "elsewhere", "seq": 1, "emoji": "👍"});
    assert_eq!(w.send(&b1, frame).rejected, Some(ErrorCode::NotMember));
    assert!(w.frames(&a1).is_empty(), "nothing broadcast");
}

#[test]
fn a_user_has_at_most_twenty_emoji_on_a_message() {
    let w = World::new();
    let a1 = w.member("alice", &["lobby"]);
    w.say(&a1, "lobby", "m-1", "vote");
    for i in 0..20 {
        let frame = json!({"action": "react", "room": "lobby", "seq": 1, "emoji": format!("e{i}")});
        assert_eq!(w.send(&a1, frame).rejected, None);
    }
    let frame = json!({"action": "react", "room": "lobby", "seq": 1, "emoji": "e20"});
    assert_eq!(w.send(&a1, frame).rejected, Some(ErrorCode::LimitExceeded));
    assert_eq!(w.stored("lobby", 1).unwrap().reactions.len(), 20);
}

#[test]
fn a_reply_shows_the_original_as_it_is_now() {
    let w = World::new();
    let a1 = w.member("alice", &["lobby"]);
    let b1 = w.member("bob", &["lobby"]);
    let long = "x".repeat(150);
    w.say(&a1, "lobby", "m-1", &long);
    w.settle();
    let reply =
        json!({"action": "message", "room": "lobby", "id": "r-1", "body": "yes", "reply_to": 1});
    assert_eq!(w.send(&b1, reply), handled("message", 1));
    let preview = format!("{}…", "x".repeat(100));
    let frames = w.frames(&a1);
    assert_eq!(
        frames[0]["reply_to"],
        json!({"seq": 1, "from": "alice", "preview": preview})
    );
    w.settle();
    for (seq, r) in [(9, "f-9"), (0, "f-0")] {
        let frame =
            json!({"action": "message", "room": "lobby", "id": r, "body": "?", "reply_to": seq});
        assert_eq!(w.send(&b1, frame).rejected, Some(ErrorCode::NotFound));
        assert_error(&w.frames(&b1), ErrorCode::NotFound, Some(r));
    }
    assert_eq!(w.head("lobby"), 2, "a refused reply is not stored");
    // The original is deleted later: history and replays show it deleted.
    w.send(&a1, json!({"action": "delete", "room": "lobby", "seq": 1}));
    w.settle();
    w.send(
        &b1,
        json!({"action": "history", "room": "lobby", "after": 1}),
    );
    let page = w.frames(&b1);
    assert_eq!(
        page[0]["messages"][0]["reply_to"],
        json!({"seq": 1, "from": "alice", "deleted": true})
    );
    let b2 = w.connect("bob", &["lobby"]);
    w.send(&b2, json!({"action": "join", "room": "lobby", "since": 1}));
    let replayed = w.frames(&b2);
    assert_eq!(replayed[1]["reply_to"]["deleted"], json!(true));
}

#[test]
fn only_the_author_may_edit_or_delete() {
    let w = World::new();
    let a1 = w.member("alice", &["lobby"]);
    let b1 = w.member("bob", &["lobby"]);
    w.say(&a1, "lobby", "m-1", "mine");
    w.settle();
    let outcome = w.send(
        &b1,
        json!({"action": "edit", "room": "lobby", "seq": 1, "body": "yours now", "ref": "e-1"}),
    );
    assert_eq!(outcome, refused(Some("edit"), ErrorCode::Forbidden));
    assert_error(&w.frames(&b1), ErrorCode::Forbidden, Some("e-1"));
    let outcome = w.send(
        &b1,
        json!({"action": "delete", "room": "lobby", "seq": 1, "ref": "d-1"}),
    );
    assert_eq!(outcome, refused(Some("delete"), ErrorCode::Forbidden));
    assert_error(&w.frames(&b1), ErrorCode::Forbidden, Some("d-1"));
    let stored = w.stored("lobby", 1).unwrap();
    assert_eq!(
        (stored.body.as_deref(), stored.deleted),
        (Some("mine"), false)
    );
    assert!(w.frames(&a1).is_empty());
}

#[test]
fn editing_or_deleting_a_missing_or_deleted_message_is_not_found() {
    let w = World::new();
    let a1 = w.member("alice", &["lobby"]);
    let b1 = w.member("bob", &["lobby"]);
    w.say(&a1, "lobby", "m-1", "soon gone");
    let edit = |seq: u64, r: &str| json!({"action": "edit", "room": "lobby", "seq": seq, "body": "x", "ref": r});
    let delete =
        |seq: u64, r: &str| json!({"action": "delete", "room": "lobby", "seq": seq, "ref": r});
    for (frame, r) in [(edit(9, "e-9"), "e-9"), (delete(0, "d-0"), "d-0")] {
        assert_eq!(w.send(&a1, frame).rejected, Some(ErrorCode::NotFound));
        assert_error(&w.frames(&a1), ErrorCode::NotFound, Some(r));
    }
    assert_eq!(w.send(&a1, delete(1, "d-1")), handled("delete", 2));
    w.settle();
    for (frame, r) in [(edit(1, "e-1"), "e-1"), (delete(1, "d-2"), "d-2")] {
        assert_eq!(w.send(&a1, frame).rejected, Some(ErrorCode::NotFound));
        assert_error(&w.frames(&a1), ErrorCode::NotFound, Some(r));
    }
    assert!(w.frames(&b1).is_empty(), "nothing broadcast");
    let stored = w.stored("lobby", 1).unwrap();
    assert_eq!(
        (stored.body, stored.deleted),
        (None, true),
        "a tombstone stays one"
    );
}

// ---------------------------------------------------------------------------------------------
// typing

#[test]
fn typing_reaches_other_users_with_a_ttl_and_is_never_stored() {
    let w = World::new();
    let a1 = w.member("alice", &["lobby"]);
    let a2 = w.member("alice", &["lobby"]);
    let b1 = w.member("bob", &["lobby"]);
    let c1 = w.member("carol", &["other"]);
    let outcome = w.send(
        &a1,
        json!({"action": "typing", "room": "lobby", "state": "start"}),
    );
    assert_eq!(outcome, handled("typing", 1));
    assert_eq!(
        w.frames(&b1),
        vec![
            json!({"type": "typing", "room": "lobby", "user": "alice", "state": "start", "ttl_ms": TYPING_TTL_MS})
        ]
    );
    assert!(w.frames(&a1).is_empty(), "not echoed");
    assert!(
        w.frames(&a2).is_empty(),
        "not to the typist's other devices"
    );
    assert!(w.frames(&c1).is_empty());
    assert_eq!(
        w.send(
            &a2,
            json!({"action": "typing", "room": "lobby", "state": "stop"})
        ),
        handled("typing", 1)
    );
    assert_eq!(
        w.frames(&b1),
        vec![
            json!({"type": "typing", "room": "lobby", "user": "alice", "state": "stop", "ttl_ms": 0})
        ]
    );
    assert_eq!(w.head("lobby"), 0, "typing is never stored");
    assert_eq!(w.page(&b1, "lobby", json!({})), (vec![], false));
}

// ---------------------------------------------------------------------------------------------
// read cursors

#[test]
fn read_cursor_moves_only_forward_clamped_to_head_and_shows_in_joined() {
    let w = World::new();
    let a1 = w.member("alice", &["lobby"]);
    let b1 = w.member("bob", &["lobby"]);
    let b2 = w.member("bob", &["lobby"]);
    for i in 1..=5 {
        w.say(&a1, "lobby", &format!("m{i}"), "x");
    }
    w.settle();
    let read = |seq: u64| json!({"action": "read", "room": "lobby", "seq": seq});
    assert_eq!(w.send(&b1, read(3)), handled("read", 2));
    let moved_to_3 = json!({"type": "read", "room": "lobby", "user": "bob", "seq": 3});
    assert_eq!(w.frames(&a1), vec![moved_to_3.clone()]);
    assert_eq!(w.frames(&b2), vec![moved_to_3], "the reader's other device");
    assert!(w.frames(&b1).is_empty(), "not echoed");
    // Backwards or in place: nothing moves, nobody hears.
    assert_eq!(w.send(&b1, read(2)), handled("read", 0));
    assert_eq!(w.send(&b2, read(3)), handled("read", 0));
    for conn in [&a1, &b1, &b2] {
        assert!(w.frames(conn).is_empty());
    }
    // Past the head: clamped.
    assert_eq!(w.send(&b2, read(99)), handled("read", 2));
    let moved_to_5 = json!({"type": "read", "room": "lobby", "user": "bob", "seq": 5});
    assert_eq!(w.frames(&a1), vec![moved_to_5.clone()]);
    assert_eq!(w.frames(&b1), vec![moved_to_5]);
    assert_eq!(w.send(&b1, read(99)), handled("read", 0));
    // Joins show the cursor.
    let b3 = w.connect("bob", &["lobby"]);
    let joined = &w.join(&b3, "lobby")[0];
    assert_eq!(
        (&joined["head"], &joined["read_seq"], &joined["unread"]),
        (&json!(5), &json!(5), &json!(0))
    );
    w.say(&a1, "lobby", "m6", "x");
    w.say(&a1, "lobby", "m7", "x");
    let b4 = w.connect("bob", &["lobby"]);
    let joined = &w.join(&b4, "lobby")[0];
    assert_eq!(
        (&joined["head"], &joined["read_seq"], &joined["unread"]),
        (&json!(7), &json!(5), &json!(2))
    );
    let a2 = w.connect("alice", &["lobby"]);
    let joined = &w.join(&a2, "lobby")[0];
    assert_eq!(
        (&joined["read_seq"], &joined["unread"]),
        (&json!(0), &json!(7)),
        "cursors are per user"
    );
}

// ---------------------------------------------------------------------------------------------
// presence

#[test]
fn offline_is_announced_only_when_the_users_last_connection_goes() {
    let w = World::new();
    let a1 = w.member("alice", &["lobby"]);
    let a2 = w.member("alice", &["lobby", "other"]);
    let b1 = w.member("bob", &["lobby"]);
    let c1 = w.member("carol", &["other"]);
    w.advance(100);
    w.disconnect(&a1);
    assert!(!w.is_live(&a1));
    for conn in [&a2, &b1, &c1] {
        assert!(w.frames(conn).is_empty(), "alice is still online");
    }
    w.advance(100);
    w.disconnect(&a2);
    let offline = presence_json("alice", "offline", T0 + 200);
    assert_eq!(w.frames(&b1), vec![offline.clone()]);
    assert_eq!(w.frames(&c1), vec![offline]);
    // Members show her offline, last seen when she went.
    let d1 = w.connect("dave", &["lobby"]);
    let joined = &w.join(&d1, "lobby")[0];
    assert_eq!(
        member_of(joined, "alice"),
        &json!({"user": "alice", "status": "offline", "last_seen": T0 + 200})
    );
    w.settle();
    // A disconnect of an unknown or already removed connection is a no-op.
    w.disconnect(&a2);
    w.disconnect("ghost");
    assert!(w.frames(&b1).is_empty());
}

#[test]
fn a_chosen_status_reaches_the_rooms_of_all_the_users_connections() {
    let w = World::new();
    let a1 = w.member("alice", &["lobby"]);
    let a2 = w.member("alice", &["other"]);
    let b1 = w.member("bob", &["lobby"]);
    let c1 = w.member("carol", &["other"]);
    let d1 = w.member("dave", &["elsewhere"]);
    w.advance(5);
    let outcome = w.send(&a1, json!({"action": "presence", "status": "away"}));
    assert_eq!(outcome, handled("presence", 4));
    let away = presence_json("alice", "away", T0 + 5);
    for conn in [&a1, &a2, &b1, &c1] {
        assert_eq!(w.frames(conn), vec![away.clone()], "{conn}");
    }
    assert!(w.frames(&d1).is_empty());
    let e1 = w.connect("erin", &["lobby"]);
    let joined = &w.join(&e1, "lobby")[0];
    assert_eq!(member_of(joined, "alice")["status"], "away");
    // A user coming back starts online again.
    w.disconnect(&a1);
    w.disconnect(&a2);
    w.settle();
    w.advance(5);
    let a3 = w.connect("alice", &["lobby"]);
    w.join(&a3, "lobby");
    assert_eq!(
        w.frames(&b1),
        vec![presence_json("alice", "online", T0 + 10)]
    );
}

// ---------------------------------------------------------------------------------------------
// history

#[test]
fn history_pages_with_before_after_and_limit() {
    let w = World::new();
    let a1 = w.member("alice", &["lobby"]);
    for i in 1..=12u64 {
        w.advance(1);
        w.say(&a1, "lobby", &format!("m{i}"), &format!("b{i}"));
    }
    assert_eq!(
        w.page(&a1, "lobby", json!({"limit": 5})),
        ((8..=12).collect(), true)
    );
    assert_eq!(
        w.page(&a1, "lobby", json!({"before": 8, "limit": 5})),
        ((3..=7).collect(), true)
    );
    assert_eq!(
        w.page(&a1, "lobby", json!({"before": 3, "limit": 5})),
        (vec![1, 2], false)
    );
    assert_eq!(
        w.page(&a1, "lobby", json!({"after": 10})),
        (vec![11, 12], false)
    );
    assert_eq!(
        w.page(&a1, "lobby", json!({"after": 2, "before": 6, "limit": 100})),
        (vec![3, 4, 5], false)
    );
    assert_eq!(
        w.page(&a1, "lobby", json!({})),
        ((1..=12).collect(), false),
        "default limit 50"
    );
    // The frame itself, exactly.
    w.send(
        &a1,
        json!({"action": "history", "room": "lobby", "after": 10, "limit": 1}),
    );
    assert_eq!(
        w.frames(&a1),
        vec![json!({
            "type": "history", "room": "lobby",
            "messages": [{"room": "lobby", "seq": 11, "id": "m11", "from": "alice", "role": "user",
                          "body": "b11", "ts": T0 + 11}],
            "more": true,
        })]
    );
}

#[test]
fn history_of_a_room_not_joined_is_not_member() {
    let w = World::new();
    let a1 = w.member("alice", &["lobby"]);
    w.say(&a1, "lobby", "m-1", "x");
    let b1 = w.connect("bob", &["lobby"]);
    let outcome = w.send(
        &b1,
        json!({"action": "history", "room": "lobby", "ref": "h-1"}),
    );
    assert_eq!(outcome, refused(Some("history"), ErrorCode::NotMember));
    assert_error(&w.frames(&b1), ErrorCode::NotMember, Some("h-1"));
}

// ---------------------------------------------------------------------------------------------
// client errors

#[test]
fn bad_frames_get_stable_codes_with_their_ref_and_the_connection_stays() {
    let w = World::new();
    let a1 = w.member("alice", &["lobby"]);
    let big_body = "x".repeat(MAX_BODY_BYTES + 1);
    let big_meta = "y".repeat(MAX_META_BYTES);
    let cases: Vec<(String, ErrorCode, Option<&str>)> = vec![
        ("this is not json".into(), ErrorCode::BadFrame, None),
        ("[1,2,3]".into(), ErrorCode::BadFrame, None),
        (r#"{"room":"lobby","ref":"b-1"}"#.into(), ErrorCode::BadFrame, Some("b-1")),
        (r#"{"action":"join","ref":"b-2"}"#.into(), ErrorCode::BadFrame, Some("b-2")),
        (r#"{"action":"read","room":"lobby","seq":-1,"ref":7}"#.into(), ErrorCode::BadFrame, Some("7")),
        (r#"{"action":"typing","room":"lobby","state":"maybe","ref":"b-3"}"#.into(), ErrorCode::BadFrame, Some("b-3")),
        (r#"{"action":"dance","ref":"u-1"}"#.into(), ErrorCode::UnknownAction, Some("u-1")),
        (
            json!({"action": "message", "room": "lobby", "id": "big-1", "body": big_body}).to_string(),
            ErrorCode::TooLarge,
            Some("big-1"),
        ),
        (
            json!({"action": "message", "room": "lobby", "id": "big-2", "body": "b", "meta": {"k": big_meta}}).to_string(),
            ErrorCode::TooLarge,
            Some("big-2"),
        ),
        (r#"{"action":"join","room":"no/slash","ref":"i-1"}"#.into(), ErrorCode::Invalid, Some("i-1")),
        (r#"{"action":"history","room":"lobby","limit":0,"ref":"i-2"}"#.into(), ErrorCode::Invalid, Some("i-2")),
        (r#"{"action":"history","room":"lobby","limit":101,"ref":"i-3"}"#.into(), ErrorCode::Invalid, Some("i-3")),
        (r#"{"action":"message","room":"lobby","id":"i-4","body":""}"#.into(), ErrorCode::Invalid, Some("i-4")),
        (r#"{"action":"message","room":"lobby","id":"i-5","body":"b","meta":3}"#.into(), ErrorCode::Invalid, Some("i-5")),
    ];
    for (text, code, reference) in cases {
        let shown: String = text.chars().take(60).collect();
        assert_eq!(w.send_text(&a1, &text), refused(None, code), "{shown}");
        assert_error(&w.frames(&a1), code, reference);
        assert_eq!(w.gateway.closed(&a1), None, "{shown}");
        assert_eq!(w.send(&a1, json!({"action": "ping"})), handled("ping", 0));
        assert_eq!(
            w.frames(&a1),
            vec![json!({"type": "pong", "ts": T0})],
            "{shown}"
        );
    }
    assert_eq!(w.head("lobby"), 0, "nothing stored");
}

#[test]
fn a_frame_on_an_unknown_connection_closes_it_going_away() {
    let w = World::new();
    assert_eq!(
        w.send("ghost", json!({"action": "ping"})),
        closed_with(close::GOING_AWAY)
    );
    assert_eq!(w.gateway.closed("ghost"), Some(close::GOING_AWAY));
    assert_eq!(
        w.frames("ghost"),
        vec![closing(close::GOING_AWAY, "connection unknown; reconnect")]
    );
}

// ---------------------------------------------------------------------------------------------
// rate limit

fn tight_world() -> World {
    World::with_config(ServiceConfig {
        rate: RatePolicy {
            burst: 3,
            per_sec: 1,
            max_strikes: 2,
        },
        ..ServiceConfig::default()
    })
}

#[test]
fn frames_over_the_burst_are_dropped_with_rate_limited() {
    let w = tight_world();
    let a1 = w.connect("alice", &["lobby"]);
    w.join(&a1, "lobby");
    w.send(&a1, json!({"action": "ping"}));
    w.send(&a1, json!({"action": "ping"}));
    assert_eq!(w.frames(&a1).len(), 2, "burst of 3: join and two pings");
    let outcome = w.send(
        &a1,
        json!({"action": "message", "room": "lobby", "id": "m-1", "body": "x"}),
    );
    assert_eq!(outcome, refused(None, ErrorCode::RateLimited));
    // Dropped before parsing, so there is no reference to echo.
    assert_error(&w.frames(&a1), ErrorCode::RateLimited, None);
    assert_eq!(w.head("lobby"), 0, "the dropped message was not stored");
    assert_eq!(w.gateway.closed(&a1), None, "one rejection does not close");
    assert!(w.is_live(&a1));
}

#[test]
fn a_sustained_flood_closes_with_4008() {
    let w = tight_world();
    let a1 = w.connect("alice", &["lobby"]);
    let outcomes: Vec<FrameOutcome> = (0..6)
        .map(|_| w.send(&a1, json!({"action": "ping"})))
        .collect();
    let rejected = refused(None, ErrorCode::RateLimited);
    assert_eq!(
        outcomes,
        vec![
            handled("ping", 0),
            handled("ping", 0),
            handled("ping", 0),
            rejected.clone(),
            rejected,
            closed_with(close::RATE_LIMITED),
        ]
    );
    assert_eq!(w.gateway.closed(&a1), Some(close::RATE_LIMITED));
    let frames = w.frames(&a1);
    let types: Vec<&str> = frames.iter().map(|f| f["type"].as_str().unwrap()).collect();
    assert_eq!(
        types,
        ["pong", "pong", "pong", "error", "error", "closing"],
        "no frame for the close"
    );
}

#[test]
fn the_bucket_refills_as_fake_time_passes() {
    let w = tight_world();
    let a1 = w.connect("alice", &["lobby"]);
    let ping = || w.send(&a1, json!({"action": "ping"}));
    for _ in 0..3 {
        assert_eq!(ping(), handled("ping", 0));
    }
    w.advance(999);
    assert_eq!(
        ping(),
        refused(None, ErrorCode::RateLimited),
        "not quite a token yet"
    );
    w.advance(1);
    assert_eq!(ping(), handled("ping", 0), "one token per second");
    assert_eq!(ping(), refused(None, ErrorCode::RateLimited));
    // A long pause refills up to the burst, no further, and strikes decay.
    w.advance(60_000);
    for _ in 0..3 {
        assert_eq!(ping(), handled("ping", 0));
    }
    assert_eq!(ping(), refused(None, ErrorCode::RateLimited));
    assert_eq!(ping(), refused(None, ErrorCode::RateLimited));
    assert_eq!(w.gateway.closed(&a1), None);
}

// ---------------------------------------------------------------------------------------------
// token expiry

#[test]
fn a_frame_after_the_tokens_exp_closes_with_4001() {
    let w = World::new();
    let claims = Claims {
        exp: Some(T0 / 1000 + 60),
        ..w.claims("alice", &["lobby"])
    };
    let a1 = w.try_connect(&claims).unwrap();
    w.advance(59_999);
    assert_eq!(w.send(&a1, json!({"action": "ping"})), handled("ping", 0));
    assert_eq!(
        w.frames(&a1),
        vec![json!({"type": "pong", "ts": T0 + 59_999})]
    );
    assert_eq!(w.gateway.closed(&a1), None);
    w.advance(1);
    assert_eq!(
        w.send(&a1, json!({"action": "ping"})),
        closed_with(close::TOKEN_EXPIRED)
    );
    assert_eq!(w.gateway.closed(&a1), Some(close::TOKEN_EXPIRED));
    assert_eq!(
        w.frames(&a1),
        vec![closing(close::TOKEN_EXPIRED, "token expired")],
        "the frame was not processed; only the close notice went out"
    );
}

// ---------------------------------------------------------------------------------------------
// recipients found gone

#[test]
fn a_vanished_recipient_is_removed_and_the_others_still_get_the_message() {
    let w = World::new();
    let a1 = w.member("alice", &["lobby"]);
    let b1 = w.member("bob", &["lobby"]);
    let c1 = w.member("carol", &["lobby"]);
    w.gateway.vanish(&b1);
    w.advance(3);
    let outcome = w.send(
        &a1,
        json!({"action": "message", "room": "lobby", "id": "m-1", "body": "hi"}),
    );
    assert_eq!(
        outcome,
        handled("message", 1),
        "only carol's delivery counts"
    );
    let bob_gone = presence_json("bob", "offline", T0 + 3);
    assert_eq!(
        w.frames(&a1),
        vec![
            json!({"type": "ack", "id": "m-1", "room": "lobby", "seq": 1, "ts": T0 + 3}),
            bob_gone.clone(),
        ]
    );
    assert_eq!(
        w.frames(&c1),
        vec![
            message_json("lobby", 1, "m-1", "alice", "hi", T0 + 3),
            bob_gone
        ]
    );
    assert!(!w.is_live(&b1));
    assert_eq!(w.subscribers("lobby"), vec![a1.clone(), c1.clone()]);
    // Later broadcasts no longer try it.
    assert_eq!(w.say(&a1, "lobby", "m-2", "again"), 2);
    assert_eq!(w.frames(&c1).len(), 1);
}

// ---------------------------------------------------------------------------------------------
// server-side publish and HTTP history

fn publish(id: &str, body: &str, from: Option<&str>) -> Publish {
    Publish {
        reply_to: None,
        id: id.into(),
        body: body.into(),
        meta: None,
        from: from.map(Into::into),
        attachments: Vec::new(),
    }
}

#[test]
fn publish_needs_role_service_and_valid_input() {
    let w = World::new();
    let user = w.identity(&w.claims("alice", &["*"]));
    let agent = w.identity(&Claims {
        role: Role::Agent,
        ..w.claims("agent", &["*"])
    });
    let service = w.identity(&Claims {
        role: Role::Service,
        ..w.claims("backend", &[])
    });
    for who in [&user, &agent] {
        let err = block_on(
            w.service
                .publish(who, "lobby", publish("p-1", "x", None), w.now()),
        )
        .unwrap_err();
        assert_eq!(err.code, ErrorCode::Forbidden, "{:?}", who.role);
    }
    let too_big = "x".repeat(MAX_BODY_BYTES + 1);
    let cases: Vec<(&str, Publish, ErrorCode)> = vec![
        ("a/b", publish("p-1", "x", None), ErrorCode::Invalid),
        ("lobby", publish("", "x", None), ErrorCode::Invalid),
        ("lobby", publish("p-1", "", None), ErrorCode::Invalid),
        ("lobby", publish("p-1", &too_big, None), ErrorCode::TooLarge),
        (
            "lobby",
            publish("p-1", "x", Some("x/y")),
            ErrorCode::Invalid,
        ),
        (
            "lobby",
            Publish {
                meta: Some(json!([1])),
                ..publish("p-1", "x", None)
            },
            ErrorCode::Invalid,
        ),
    ];
    for (room, p, code) in cases {
        let err = block_on(w.service.publish(&service, room, p.clone(), w.now())).unwrap_err();
        assert_eq!(err.code, code, "{room} {p:?}");
    }
    assert_eq!(w.head("lobby"), 0, "nothing stored");
}

#[test]
fn a_publish_may_reply_to_a_message_of_the_room() {
    let w = World::new();
    let a1 = w.member("alice", &["lobby"]);
    w.say(&a1, "lobby", "m-1", "is the shop open?");
    let service = w.identity(&Claims {
        role: Role::Service,
        ..w.claims("backend", &[])
    });
    let answer = Publish {
        reply_to: Some(1),
        ..publish("p-1", "until 6", Some("bot"))
    };
    let appended = block_on(w.service.publish(&service, "lobby", answer, w.now())).unwrap();
    let reference = appended.message.reply_to.expect("a reply");
    assert_eq!(
        (
            reference.seq,
            reference.from.as_str(),
            reference.preview.as_deref()
        ),
        (1, "alice", Some("is the shop open?"))
    );
    let unknown = Publish {
        reply_to: Some(7),
        ..publish("p-2", "?", Some("bot"))
    };
    let err = block_on(w.service.publish(&service, "lobby", unknown, w.now())).unwrap_err();
    assert_eq!(err.code, ErrorCode::NotFound);
    assert_eq!(w.head("lobby"), 2);
}

#[test]
fn publish_stores_and_fans_out_to_the_tenants_room_once() {
    let w = World::new();
    let a1 = w.member("alice", &["lobby"]);
    let e1 = w.member_with(&Claims {
        tid: Some(OTHER_TENANT.into()),
        ..w.claims("eve", &["lobby"])
    });
    let service = w.identity(&Claims {
        role: Role::Service,
        ..w.claims("backend", &[])
    });
    w.advance(4);
    let p = Publish {
        meta: Some(json!({"kind": "notice"})),
        ..publish("p-1", "maintenance at 5", Some("bot"))
    };
    let appended = block_on(w.service.publish(&service, "lobby", p.clone(), w.now())).unwrap();
    assert!(!appended.duplicate);
    let expected = MessageView {
        reactions: Vec::new(),
        reply_to: None,
        room: "lobby".into(),
        seq: 1,
        id: "p-1".into(),
        from: "bot".into(),
        name: None,
        role: Some(Role::Service),
        via: Some("backend".into()),
        body: Some("maintenance at 5".into()),
        meta: Some(json!({"kind": "notice"})),
        ts: T0 + 4,
        edited_ts: None,
        deleted: false,
        attachments: Vec::new(),
    };
    assert_eq!(appended.message, expected);
    assert_eq!(
        w.frames(&a1),
        vec![
            json!({"type": "message", "room": "lobby", "seq": 1, "id": "p-1", "from": "bot",
                    "role": "service", "via": "backend", "body": "maintenance at 5",
                    "meta": {"kind": "notice"}, "ts": T0 + 4})
        ]
    );
    assert!(w.frames(&e1).is_empty(), "another tenant");
    assert_eq!(w.head_in(OTHER_TENANT, "lobby"), 0);
    // Published again: the original, nothing stored or sent.
    w.advance(4);
    let again = block_on(w.service.publish(&service, "lobby", p, w.now())).unwrap();
    assert!(again.duplicate);
    assert_eq!(again.message, expected);
    assert!(w.frames(&a1).is_empty());
    assert_eq!(w.head("lobby"), 1);
    // Without `from`, the sender is the token's subject.
    let own = block_on(
        w.service
            .publish(&service, "lobby", publish("p-1", "x", None), w.now()),
    )
    .unwrap();
    assert_eq!(
        (own.message.seq, own.message.from.as_str(), own.duplicate),
        (2, "backend", false)
    );
    assert_eq!(w.frames(&a1).len(), 1);
}

#[test]
fn history_page_needs_a_grant_except_for_services_and_stays_in_the_tenant() {
    let w = World::new();
    let service = w.identity(&Claims {
        role: Role::Service,
        ..w.claims("backend", &[])
    });
    for (room, n) in [("support-1", 3), ("lobby", 2)] {
        for i in 1..=n {
            block_on(w.service.publish(
                &service,
                room,
                publish(&format!("p{i}"), "x", None),
                w.now(),
            ))
            .unwrap();
        }
    }
    let q = |after, before, limit| HistoryQuery {
        after,
        before,
        limit,
    };
    let seqs = |p: Page| (p.messages.iter().map(|m| m.seq).collect::<Vec<_>>(), p.more);
    let user = w.identity(&w.claims("alice", &["support-*"]));
    let page = block_on(
        w.service
            .history_page(&user, "support-1", q(None, None, 2), w.now()),
    )
    .unwrap();
    assert_eq!(seqs(page), (vec![2, 3], true));
    let page = block_on(
        w.service
            .history_page(&user, "support-1", q(Some(1), None, 10), w.now()),
    )
    .unwrap();
    assert_eq!(seqs(page), (vec![2, 3], false));
    let err = block_on(
        w.service
            .history_page(&user, "lobby", q(None, None, 10), w.now()),
    )
    .unwrap_err();
    assert_eq!(err.code, ErrorCode::Forbidden);
    let err = block_on(
        w.service
            .history_page(&user, "support/1", q(None, None, 10), w.now()),
    )
    .unwrap_err();
    assert_eq!(err.code, ErrorCode::Invalid);
    let page = block_on(
        w.service
            .history_page(&service, "lobby", q(None, None, 10), w.now()),
    )
    .unwrap();
    assert_eq!(
        seqs(page),
        (vec![1, 2], false),
        "a service reads any room of its tenant"
    );
    let outsider = w.identity(&Claims {
        tid: Some(OTHER_TENANT.into()),
        ..w.claims("eve", &["*"])
    });
    let page = block_on(
        w.service
            .history_page(&outsider, "lobby", q(None, None, 10), w.now()),
    )
    .unwrap();
    assert_eq!(
        seqs(page),
        (vec![], false),
        "another tenant's room of the same name"
    );
}

fn big_page(count: u64) -> Page {
    let body = "x".repeat(MAX_BODY_BYTES);
    let messages = (1..=count)
        .map(|seq| MessageView {
            reactions: Vec::new(),
            reply_to: None,
            room: "r".into(),
            seq,
            id: format!("m{seq}"),
            from: "alice".into(),
            name: None,
            role: Some(Role::User),
            via: None,
            body: Some(body.clone()),
            meta: None,
            ts: seq,
            edited_ts: None,
            deleted: false,
            attachments: Vec::new(),
        })
        .collect();
    Page {
        messages,
        more: false,
    }
}

#[test]
fn history_pages_are_cut_to_one_server_frame_next_to_their_anchor() {
    use roomcast_core::limits::MAX_SERVER_FRAME_BYTES;
    let seqs = |p: &Page| p.messages.iter().map(|m| m.seq).collect::<Vec<_>>();
    let newest = fit_page(big_page(20), false);
    assert!(newest.more, "the cut-off messages remain to be paged");
    assert_eq!(
        seqs(&newest).last(),
        Some(&20),
        "paging back keeps the newest"
    );
    let forward = fit_page(big_page(20), true);
    assert!(forward.more);
    assert_eq!(
        seqs(&forward).first(),
        Some(&1),
        "paging forward keeps the oldest"
    );
    for page in [newest, forward] {
        let frame = roomcast_core::protocol::ServerFrame::History {
            room: "r".into(),
            messages: page.messages,
            more: true,
        };
        assert!(frame.to_json().len() <= MAX_SERVER_FRAME_BYTES);
    }
    let small = fit_page(big_page(3), false);
    assert_eq!(
        (seqs(&small), small.more),
        (vec![1, 2, 3], false),
        "a page that fits is untouched"
    );
}

/// The notice the service sends before closing a connection.
fn closing(code: u16, reason: &str) -> Value {
    json!({"type": "closing", "code": code, "reason": reason})
}

// ---------------------------------------------------------------------------------------------
// support desk

const CONVERSATION: &str = "support-17";

impl World {
    /// A connection of agent `user`, granted the inbox and every support room, that has joined
    /// the inbox.
    fn agent(&self, user: &str) -> String {
        let conn = self.agent_conn(user, &["inbox", "support-*"]);
        assert_eq!(self.join(&conn, "inbox")[0]["type"], "joined");
        self.settle();
        conn
    }

    /// A connection of agent `user` granted `grants`, in no room.
    fn agent_conn(&self, user: &str, grants: &[&str]) -> String {
        self.try_connect(&Claims {
            role: Role::Agent,
            ..self.claims(user, grants)
        })
        .expect("connect accepted")
    }

    /// Sends `assign`/`close` with a ref and returns what the sender got.
    fn desk(&self, conn: &str, action: &str, room: &str) -> Vec<Value> {
        self.send(
            conn,
            json!({"action": action, "room": room, "ref": format!("{action}-ref")}),
        );
        self.frames(conn)
    }
}

/// The system messages (support-desk status changes) among `frames`: (seq, status, agent).
fn status_messages(frames: &[Value]) -> Vec<(u64, String, Value)> {
    frames
        .iter()
        .filter(|f| f["type"] == "message" && f["from"] == SYSTEM_SENDER)
        .map(|f| {
            assert_eq!(f["meta"]["kind"], "status", "{f}");
            (
                f["seq"].as_u64().unwrap(),
                f["meta"]["status"].as_str().unwrap().to_owned(),
                f["meta"]["agent"].clone(),
            )
        })
        .collect()
}

fn status_reply(frames: &[Value]) -> &Value {
    frames
        .iter()
        .find(|f| f["type"] == "status")
        .unwrap_or_else(|| panic!("a status reply in {frames:?}"))
}

#[test]
fn a_visitors_first_message_opens_the_conversation_and_lists_it_in_the_inbox() {
    let w = World::new();
    let inbox = w.agent("ann");
    let visitor = w.member("vic", &[CONVERSATION]);
    assert_eq!(w.say(&visitor, CONVERSATION, "m1", "hello?"), 1);
    // The sender got its ack (taken by `say`); the opening is a stored system message after it.
    let opened = w.stored(CONVERSATION, 2).expect("the opening is stored");
    assert_eq!(opened.from, SYSTEM_SENDER);
    assert_eq!(opened.id, "status-1");
    assert_eq!(opened.meta.as_ref().unwrap()["status"], "waiting");
    let listed = status_messages(&w.frames(&inbox));
    assert_eq!(listed, vec![(1, "waiting".into(), Value::Null)]);
    // Later messages of an open conversation change nothing.
    w.say(&visitor, CONVERSATION, "m2", "anyone?");
    assert_eq!(w.head(CONVERSATION), 3);
    assert!(w.frames(&inbox).is_empty());
    assert_eq!(w.head("inbox"), 1);
    // Joining shows where the conversation stands.
    let late = w.connect("vic", &[CONVERSATION]);
    let joined = w.join(&late, CONVERSATION);
    assert_eq!(joined[0]["conversation"]["status"], "waiting", "{joined:?}");
    assert_eq!(joined[0]["conversation"]["version"], 1);
}

#[test]
fn every_message_carries_its_authors_role_and_the_desk_writes_as_the_service() {
    let w = World::new();
    let visitor = w.member("vic", &[CONVERSATION]);
    let agent = w.agent_conn("ann", &[CONVERSATION]);
    assert_eq!(w.join(&agent, CONVERSATION)[0]["type"], "joined");
    let service = w.member_with(&Claims {
        role: Role::Service,
        ..w.claims("backend", &[CONVERSATION])
    });
    w.settle();
    w.say(&visitor, CONVERSATION, "m1", "hello?"); // seq 1, then the opening at 2
    w.say(&agent, CONVERSATION, "m2", "hi, ann here"); // 3
    w.say(&service, CONVERSATION, "m3", "from the backend's socket"); // 4
    let bot = w.identity(&Claims {
        role: Role::Service,
        ..w.claims("backend", &[])
    });
    block_on(w.service.publish(
        &bot,
        CONVERSATION,
        publish("m4", "a bot's answer", Some("helpbot")),
        w.now(),
    ))
    .unwrap(); // 5
    let roles: Vec<(String, Option<Role>)> = (1..=5)
        .map(|seq| {
            let m = w.stored(CONVERSATION, seq).unwrap();
            (m.from, m.role)
        })
        .collect();
    assert_eq!(
        roles,
        [
            ("vic".to_owned(), Some(Role::User)),
            (SYSTEM_SENDER.to_owned(), Some(Role::Service)),
            ("ann".to_owned(), Some(Role::Agent)),
            ("backend".to_owned(), Some(Role::Service)),
            ("helpbot".to_owned(), Some(Role::Service)),
        ]
    );
    // Live, the visitor sees the same roles on the wire (`say` took what came with its ack).
    let seen: Vec<(Value, Value)> = w
        .frames(&visitor)
        .iter()
        .filter(|f| f["type"] == "message")
        .map(|f| (f["seq"].clone(), f["role"].clone()))
        .collect();
    assert_eq!(
        seen,
        [
            (json!(3), json!("agent")),
            (json!(4), json!("service")),
            (json!(5), json!("service")),
        ]
    );
}

#[test]
fn an_agent_assigns_and_closes_and_the_visitor_reopens() {
    let w = World::new();
    let inbox = w.agent("ann");
    let visitor = w.member("vic", &[CONVERSATION]);
    w.say(&visitor, CONVERSATION, "m1", "hello?");
    w.settle();
    let ann = w.agent_conn("ann", &["support-*"]);
    let got = w.desk(&ann, "assign", CONVERSATION);
    let reply = status_reply(&got);
    assert_eq!(reply["status"], "assigned");
    assert_eq!(reply["agent"], "ann");
    assert_eq!(reply["version"], 2);
    assert_eq!(reply["seq"], 3);
    assert_eq!(reply["ref"], "assign-ref");
    assert_eq!(
        status_messages(&w.frames(&visitor)),
        vec![(3, "assigned".into(), json!("ann"))]
    );
    assert_eq!(
        status_messages(&w.frames(&inbox)),
        vec![(2, "assigned".into(), json!("ann"))]
    );
    // Assigning again is answered with the same state and records nothing new.
    let again = w.desk(&ann, "assign", CONVERSATION);
    assert_eq!(status_reply(&again)["seq"], 3);
    assert_eq!(w.head(CONVERSATION), 3);
    // Another agent cannot take it.
    let bo = w.agent_conn("bo", &["support-*"]);
    assert_error(
        &w.desk(&bo, "assign", CONVERSATION),
        ErrorCode::Conflict,
        Some("assign-ref"),
    );
    let closed = w.desk(&ann, "close", CONVERSATION);
    assert_eq!(status_reply(&closed)["status"], "closed");
    assert_eq!(status_reply(&closed)["agent"], "ann");
    assert_error(
        &w.desk(&bo, "assign", CONVERSATION),
        ErrorCode::Conflict,
        Some("assign-ref"),
    );
    w.settle();
    // The visitor writes again: a new waiting conversation.
    assert_eq!(w.say(&visitor, CONVERSATION, "m2", "one more thing"), 5);
    let reopened = w.stored(CONVERSATION, 6).expect("the reopening is stored");
    assert_eq!(reopened.meta.as_ref().unwrap()["status"], "waiting");
    assert_eq!(reopened.meta.as_ref().unwrap()["version"], 4);
    assert_eq!(
        status_messages(&w.frames(&inbox)),
        vec![(4, "waiting".into(), Value::Null)]
    );
}

#[test]
fn only_granted_agents_act_and_only_on_open_support_rooms() {
    let w = World::new();
    let visitor = w.member("vic", &[CONVERSATION, "team"]);
    w.say(&visitor, CONVERSATION, "m1", "hello?");
    assert_error(
        &w.desk(&visitor, "assign", CONVERSATION),
        ErrorCode::Forbidden,
        Some("assign-ref"),
    );
    let ungranted = w.agent_conn("ann", &["support-2*"]);
    assert_error(
        &w.desk(&ungranted, "close", CONVERSATION),
        ErrorCode::Forbidden,
        Some("close-ref"),
    );
    let ann = w.agent_conn("ann", &["*"]);
    assert_error(
        &w.desk(&ann, "assign", "team"),
        ErrorCode::Invalid,
        Some("assign-ref"),
    );
    assert_error(
        &w.desk(&ann, "assign", "support-unopened"),
        ErrorCode::NotFound,
        Some("assign-ref"),
    );
    // An agent's own message neither opens nor reopens a conversation.
    w.send(&ann, json!({"action": "join", "room": "support-quiet"}));
    w.say(&ann, "support-quiet", "a1", "hi, how can I help?");
    assert_eq!(w.head("support-quiet"), 1);
}

#[test]
fn the_inbox_is_for_agents_and_nobody_writes_in_it() {
    let w = World::new();
    let visitor = w.connect("vic", &["*"]);
    w.send(
        &visitor,
        json!({"action": "join", "room": "inbox", "ref": "j"}),
    );
    assert_error(&w.frames(&visitor), ErrorCode::Forbidden, Some("j"));
    let ann = w.agent("ann");
    w.send(
        &ann,
        json!({"action": "message", "room": "inbox", "id": "x", "body": "hi"}),
    );
    assert_error(&w.frames(&ann), ErrorCode::Forbidden, Some("x"));
    assert_eq!(w.head("inbox"), 0);
}

#[test]
fn a_change_stored_without_its_system_message_is_recorded_when_retried() {
    let w = World::new();
    let room = RoomRef::new(TENANT, CONVERSATION);
    let visitor = w.member("vic", &[CONVERSATION]);
    w.say(&visitor, CONVERSATION, "m1", "hello?");
    // As if the store took version 2 and the process died before recording it.
    let assigned = Conversation {
        status: ConversationStatus::Assigned,
        agent: Some("ann".into()),
        version: 2,
        since: w.now(),
        previous_agent: None,
    };
    block_on(w.history.put_conversation(&room, &assigned)).unwrap();
    w.settle();
    let ann = w.agent_conn("ann", &["support-*"]);
    let reply = w.desk(&ann, "assign", CONVERSATION);
    assert_eq!(status_reply(&reply)["seq"], 3);
    assert_eq!(
        status_messages(&w.frames(&visitor)),
        vec![(3, "assigned".into(), json!("ann"))]
    );
}

/// Stands in for a Durable Object stub: the owning room's service records the message at the
/// message's own time.
struct ServiceRelay(Arc<roomcast_core::ChatService>);

#[async_trait::async_trait]
impl RoomRelay for ServiceRelay {
    async fn record(&self, room: &RoomRef, message: NewMessage) -> Result<Appended, StoreError> {
        let now = message.ts;
        self.0
            .record(room, message, now)
            .await
            .map(|(appended, _)| appended)
            .map_err(|rejection| StoreError::Other(rejection.message))
    }

    async fn offer(&self, room: &RoomRef, now_ms: u64) -> Result<(), StoreError> {
        self.0
            .offer_conversation(room, now_ms)
            .await
            .map_err(|rejection| StoreError::Other(rejection.message))
    }

    async fn eject(&self, room: &RoomRef, user: &str) -> Result<(), StoreError> {
        self.0
            .eject(&room.tenant, user)
            .await
            .map_err(|rejection| StoreError::Other(rejection.message))
    }
}

impl World {
    /// One room's service, as on the edge build (one per Durable Object).
    fn bound_to(room: &str) -> Self {
        Self::with_config(ServiceConfig {
            rate: roomy(),
            bound_room: Some(room.into()),
            ..ServiceConfig::default()
        })
    }

    /// This world with its rooms other than the bound one recorded by `owner`'s service.
    fn relaying_to(self, owner: &World) -> Self {
        let relay = Arc::new(ServiceRelay(owner.service.clone()));
        Self {
            ts: self.ts.with_relay(relay),
            opened: self.opened,
        }
    }
}

#[test]
fn a_service_bound_to_a_support_room_lists_it_in_the_inbox_through_the_relay() {
    let inbox_object = World::bound_to("inbox");
    let room_object = World::bound_to(CONVERSATION).relaying_to(&inbox_object);
    let inbox = inbox_object.agent("ann");
    let visitor = room_object.member("vic", &[CONVERSATION]);
    assert_eq!(room_object.say(&visitor, CONVERSATION, "m1", "hello?"), 1);
    assert_eq!(
        status_messages(&inbox_object.frames(&inbox)),
        vec![(1, "waiting".into(), Value::Null)]
    );
    assert_eq!(inbox_object.head("inbox"), 1);
    // The room's own store holds its conversation, never the inbox.
    assert_eq!(room_object.head(CONVERSATION), 2);
    assert_eq!(room_object.head("inbox"), 0);
    room_object.settle();
    let ann = room_object.agent_conn("ann", &["support-*"]);
    let reply = room_object.desk(&ann, "assign", CONVERSATION);
    assert_eq!(status_reply(&reply)["version"], 2);
    assert_eq!(
        status_messages(&room_object.frames(&visitor)),
        vec![(3, "assigned".into(), json!("ann"))]
    );
    assert_eq!(
        status_messages(&inbox_object.frames(&inbox)),
        vec![(2, "assigned".into(), json!("ann"))]
    );
}

// ---------------------------------------------------------------------------------------------
// forgery: reserved meta keys, messages published in another user's name

#[test]
fn users_and_agents_cannot_send_meta_the_service_reserves() {
    let w = World::new();
    let inbox = w.agent("ann");
    let visitor = w.member("vic", &[CONVERSATION]);
    let agent = w.member_with(&Claims {
        role: Role::Agent,
        ..w.claims("bo", &[CONVERSATION])
    });
    // What a forged desk line looked like: a visitor closing the conversation in the console.
    let forged = json!({"kind": "status", "status": "closed", "room": CONVERSATION, "version": 99});
    for (conn, id) in [(&visitor, "f-1"), (&agent, "f-2")] {
        let outcome = w.send(
            conn,
            json!({"action": "message", "room": CONVERSATION, "id": id, "body": "Re-enter your card at …", "meta": forged}),
        );
        assert_eq!(outcome, refused(Some("message"), ErrorCode::Invalid));
        let frames = w.frames(conn);
        assert_error(&frames, ErrorCode::Invalid, Some(id));
        assert!(
            frames[0]["message"].as_str().unwrap().contains("`kind`"),
            "the refusal names the key: {}",
            frames[0]
        );
    }
    assert_eq!(
        w.head(CONVERSATION),
        0,
        "nothing stored, no conversation opened"
    );
    assert!(w.frames(&inbox).is_empty());
    // Other keys are the application's, `status` included.
    let app_meta = json!({"status": "urgent", "order": "A-17"});
    w.send(
        &visitor,
        json!({"action": "message", "room": CONVERSATION, "id": "ok-1", "body": "hi", "meta": app_meta}),
    );
    assert_eq!(w.stored(CONVERSATION, 1).unwrap().meta, Some(app_meta));
    // A service writes what it likes, over the WebSocket as over HTTP.
    let service = w.member_with(&Claims {
        role: Role::Service,
        ..w.claims("backend", &[])
    });
    w.join(&service, CONVERSATION);
    let outcome = w.send(
        &service,
        json!({"action": "message", "room": CONVERSATION, "id": "s-1", "body": "note", "meta": {"kind": "note"}}),
    );
    assert_eq!(outcome.rejected, None, "{outcome:?}");
}

#[test]
fn messages_a_service_published_for_a_user_cannot_be_changed_by_anyone() {
    let w = World::new();
    let b1 = w.member("bob", &["lobby"]);
    let backend = w.identity(&Claims {
        role: Role::Service,
        ..w.claims("backend", &[])
    });
    let p = publish("p-1", "bob agrees to the terms", Some("bob"));
    let appended = block_on(w.service.publish(&backend, "lobby", p, w.now())).unwrap();
    assert_eq!(appended.message.via.as_deref(), Some("backend"));
    let delivered = w.frames(&b1);
    assert_eq!(delivered[0]["from"], "bob");
    assert_eq!(
        delivered[0]["via"], "backend",
        "clients can tell: {delivered:?}"
    );
    // Neither the user named in `from` nor the service's own connection may change it.
    let service_conn = w.member_with(&Claims {
        role: Role::Service,
        ..w.claims("backend", &[])
    });
    w.join(&service_conn, "lobby");
    w.settle();
    for conn in [&b1, &service_conn] {
        for (action, frame) in [
            (
                "edit",
                json!({"action": "edit", "room": "lobby", "seq": 1, "body": "no", "ref": "x"}),
            ),
            (
                "delete",
                json!({"action": "delete", "room": "lobby", "seq": 1, "ref": "x"}),
            ),
        ] {
            assert_eq!(
                w.send(conn, frame),
                refused(Some(action), ErrorCode::Forbidden),
                "{conn} {action}"
            );
            assert_error(&w.frames(conn), ErrorCode::Forbidden, Some("x"));
        }
    }
    assert_eq!(w.stored("lobby", 1).unwrap(), appended.message);
    // Bob's own messages stay his to change.
    let seq = w.say(&b1, "lobby", "own-1", "mine");
    let outcome = w.send(
        &b1,
        json!({"action": "edit", "room": "lobby", "seq": seq, "body": "still mine"}),
    );
    assert_eq!(outcome.rejected, None, "{outcome:?}");
}

// ---------------------------------------------------------------------------------------------
// rate limit by work: replays, pages, HTTP requests, presence

/// The default rate policy: burst 30, 10 tokens a second.
fn default_rate_world() -> World {
    World::with_config(ServiceConfig::default())
}

/// Stores `count` messages of the largest body in `room`, straight into the store.
fn store_big_messages(w: &World, room: &str, count: u64) {
    let body = "x".repeat(MAX_BODY_BYTES);
    for i in 1..=count {
        let m = NewMessage {
            reply_to: None,
            id: format!("big-{i}"),
            from: "alice".into(),
            name: None,
            role: Role::User,
            via: None,
            body: body.clone(),
            meta: None,
            attachments: Vec::new(),
            ts: w.now(),
        };
        block_on(w.history.append(&RoomRef::new(TENANT, room), m)).unwrap();
    }
}

/// Sends `frame` until it is refused with `RATE_LIMITED`; returns how many were served.
fn served_until_limited(w: &World, conn: &str, frame: &Value) -> usize {
    for served in 0..1_000 {
        let outcome = w.send(conn, frame.clone());
        w.frames(conn);
        if outcome.rejected == Some(ErrorCode::RateLimited) {
            return served;
        }
    }
    panic!("never rate-limited");
}

#[test]
fn a_join_replay_is_cut_to_a_page_and_charged_by_its_size() {
    let w = default_rate_world();
    store_big_messages(&w, "lobby", 20);
    let b1 = w.connect("bob", &["lobby"]);
    let rejoin = json!({"action": "join", "room": "lobby", "since": 0});
    w.send(&b1, rejoin.clone());
    let frames = w.frames(&b1);
    // 7 messages of 16 KB fill a page; the 8th would pass 128 KB.
    let replayed_seqs: Vec<u64> = frames
        .iter()
        .filter(|f| f["type"] == "message")
        .map(|f| f["seq"].as_u64().unwrap())
        .collect();
    assert_eq!(replayed_seqs, (1..=7).collect::<Vec<_>>());
    assert_eq!(
        frames.last().unwrap(),
        &json!({"type": "replayed", "room": "lobby", "through": 7, "more": true})
    );
    let replayed: usize = frames[1..frames.len() - 1]
        .iter()
        .map(|f| f.to_string().len())
        .sum();
    assert!(
        replayed <= MAX_SERVER_FRAME_BYTES,
        "{replayed} bytes replayed"
    );
    // Each replay costs 8 tokens (one per 16 KB started): of the 30, the first took 8; three
    // more are served (the last into debt), then frames wait for the refill.
    assert_eq!(served_until_limited(&w, &b1, &rejoin), 3);
    // A second buys 10 tokens: the debt of 2 and one replay, not two.
    w.advance(1_000);
    assert_eq!(served_until_limited(&w, &b1, &rejoin), 1);
}

#[test]
fn history_pages_are_charged_by_their_size_over_the_websocket() {
    let w = default_rate_world();
    store_big_messages(&w, "lobby", 20);
    let b1 = w.member("bob", &["lobby"]);
    let page = json!({"action": "history", "room": "lobby", "after": 0, "limit": 100});
    // The join took one token; each page of 7 big messages costs 8.
    assert_eq!(served_until_limited(&w, &b1, &page), 4);
    // Small pages cost one token, as any frame.
    let w = default_rate_world();
    let a1 = w.member("alice", &["lobby"]);
    w.say(&a1, "lobby", "m1", "hi");
    let small = json!({"action": "history", "room": "lobby", "limit": 100});
    assert_eq!(served_until_limited(&w, &a1, &small), 28);
}

/// An HTTP request through the core's HTTP API; `target` is the path and query.
fn http(w: &World, method: &str, target: &str, token: &str, body: &Value) -> HttpReply {
    let authorization = format!("Bearer {token}");
    let body = body.to_string();
    let (path, query) = target
        .split_once('?')
        .map_or((target, None), |(p, q)| (p, Some(q)));
    let request = HttpRequest {
        method,
        path,
        query,
        authorization: Some(&authorization),
        body: body.as_bytes(),
        origin: None,
        client_ip: None,
    };
    block_on(roomcast_core::http::handle(
        &w.service,
        &request,
        None,
        w.now(),
    ))
}

#[test]
fn http_requests_are_rate_limited_per_user_of_a_tenant() {
    let w = default_rate_world();
    let alice = w.token(&w.claims("alice", &["lobby"]));
    let get = |token: &str| http(&w, "GET", "/rooms/lobby/messages", token, &Value::Null);
    for i in 0..30 {
        assert_eq!(get(&alice).status, 200, "request {i} of the burst");
    }
    let limited = get(&alice);
    assert_eq!(
        (limited.status, limited.body["code"].as_str()),
        (429, Some("RATE_LIMITED"))
    );
    // Another user, and the same user of another tenant, have their own buckets.
    let bob = w.token(&w.claims("bob", &["lobby"]));
    assert_eq!(get(&bob).status, 200);
    let other_alice = w.token(&Claims {
        tid: Some(OTHER_TENANT.into()),
        ..w.claims("alice", &["lobby"])
    });
    assert_eq!(get(&other_alice).status, 200);
    // A new token of the same user shares the bucket; the refill brings one token a 100 ms.
    let alice_again = w.token(&w.claims("alice", &["*"]));
    assert_eq!(get(&alice_again).status, 429);
    w.advance(100);
    assert_eq!(get(&alice).status, 200);
    assert_eq!(get(&alice).status, 429);
    // Publishing takes from the same kind of bucket.
    let backend = w.token(&Claims {
        role: Role::Service,
        ..w.claims("backend", &[])
    });
    let statuses: Vec<u16> = (0..31)
        .map(|i| {
            let body = json!({"id": format!("p-{i}"), "body": "x"});
            http(&w, "POST", "/rooms/lobby/messages", &backend, &body).status
        })
        .collect();
    assert_eq!(statuses[..30], [201; 30]);
    assert_eq!(statuses[30], 429);
    assert_eq!(w.head("lobby"), 30, "the refused publish stored nothing");
}

#[test]
fn http_history_pages_are_cut_to_one_frame_and_charged_by_their_size() {
    let w = default_rate_world();
    store_big_messages(&w, "lobby", 20);
    let alice = w.token(&w.claims("alice", &["lobby"]));
    let page = |query: &str| {
        let path = format!("/rooms/lobby/messages{query}");
        http(&w, "GET", &path, &alice, &Value::Null)
    };
    let seqs = |r: &HttpReply| -> Vec<u64> {
        r.body["messages"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["seq"].as_u64().unwrap())
            .collect()
    };
    let newest = page("?limit=100");
    assert_eq!(newest.status, 200);
    assert_eq!(
        seqs(&newest),
        (14..=20).collect::<Vec<_>>(),
        "the newest that fit"
    );
    assert_eq!(newest.body["more"], true);
    assert!(newest.body.to_string().len() <= MAX_SERVER_FRAME_BYTES);
    let oldest = page("?after=0&limit=100");
    assert_eq!(
        seqs(&oldest),
        (1..=7).collect::<Vec<_>>(),
        "the oldest that fit"
    );
    assert_eq!(oldest.body["more"], true);
    // 8 tokens a page (one and 7 for its size): after the two above, two more are served (the
    // second into debt), then 429.
    let statuses: Vec<u16> = (0..3).map(|_| page("?limit=100").status).collect();
    assert_eq!(statuses, [200, 200, 429]);
}

#[test]
fn a_repeated_status_is_answered_to_the_sender_alone() {
    let w = World::new();
    let a1 = w.member("alice", &["lobby"]);
    let a2 = w.member("alice", &["other"]);
    let b1 = w.member("bob", &["lobby"]);
    let online = presence_json("alice", "online", T0);
    assert_eq!(
        w.send(&a1, json!({"action": "presence", "status": "online"})),
        handled("presence", 0)
    );
    assert_eq!(w.frames(&a1), vec![online]);
    assert!(w.frames(&a2).is_empty() && w.frames(&b1).is_empty());
    // A change is announced; the same change again is not.
    assert_eq!(
        w.send(&a2, json!({"action": "presence", "status": "away"})),
        handled("presence", 3)
    );
    w.settle();
    assert_eq!(
        w.send(&a1, json!({"action": "presence", "status": "away"})),
        handled("presence", 0)
    );
    assert!(w.frames(&b1).is_empty());
}

#[test]
fn a_status_change_costs_a_token_for_each_further_room_it_is_announced_in() {
    let w = World::with_config(ServiceConfig {
        rate: RatePolicy {
            burst: 10,
            per_sec: 1,
            max_strikes: 100,
        },
        ..ServiceConfig::default()
    });
    let rooms = ["r1", "r2", "r3", "r4", "r5"];
    // Five joins take five tokens.
    let a1 = w.member("alice", &rooms);
    let away = json!({"action": "presence", "status": "away"});
    assert_eq!(w.send(&a1, away), handled("presence", rooms.len()));
    // One token for the frame and one for each of the four further rooms: the bucket is empty.
    let ping = json!({"action": "ping"});
    assert_eq!(
        w.send(&a1, ping.clone()),
        refused(None, ErrorCode::RateLimited)
    );
    w.advance(1_000);
    assert_eq!(w.send(&a1, ping), handled("ping", 0));
}

// ---------------------------------------------------------------------------------------------
// big rooms: occupancy instead of presence (protocol.md §17)

/// A world whose rooms hold the presence of individuals up to `max` connections.
fn world_with_presence_max(max: usize) -> World {
    World::with_config(ServiceConfig {
        rate: roomy(),
        presence_max_connections: max,
        ..ServiceConfig::default()
    })
}

fn occupancy(room: &str, connections: u64) -> Value {
    json!({"type": "occupancy", "room": room, "connections": connections})
}

#[test]
fn a_room_above_the_presence_threshold_announces_its_occupancy_at_most_once_per_interval() {
    let w = world_with_presence_max(2);
    let a = w.member("alice", &["hall"]);
    w.member("bob", &["hall"]);
    assert!(w.frames(&a).is_empty(), "settled");
    // The third connection takes the room over the threshold: its `joined` carries the count
    // and no members, and everyone hears the count, at once (the room's first change).
    let c = w.connect("carol", &["hall"]);
    let t_carol = w.now();
    let joined = w.join(&c, "hall");
    assert_eq!(joined[0]["type"], "joined");
    assert_eq!(joined[0]["occupancy"], 3);
    assert_eq!(joined[0]["members"], json!([]));
    assert_eq!(joined[1..], [occupancy("hall", 3)]);
    assert_eq!(w.frames(&a), vec![occupancy("hall", 3)]);
    // Further changes within the interval are held: no presence, no count yet.
    w.advance(10);
    let d = w.member("dave", &["hall"]);
    w.advance(10);
    w.disconnect(&d);
    let e = w.member("erin", &["hall"]);
    assert!(w.frames(&a).is_empty());
    assert_eq!(
        w.service.poll_timeout(),
        Some(t_carol + OCCUPANCY_INTERVAL_MS)
    );
    // Early: nothing.
    block_on(
        w.service
            .handle_timeout(t_carol + OCCUPANCY_INTERVAL_MS - 1),
    );
    assert!(w.frames(&a).is_empty());
    // At the deadline: one count for all the changes, to every connection.
    w.advance(OCCUPANCY_INTERVAL_MS);
    block_on(w.service.handle_timeout(w.now()));
    for conn in [&a, &c, &e] {
        assert_eq!(w.frames(conn), vec![occupancy("hall", 4)], "{conn}");
    }
    assert_eq!(w.service.poll_timeout(), None);
    block_on(
        w.service
            .handle_timeout(w.now() + 10 * OCCUPANCY_INTERVAL_MS),
    );
    assert!(w.frames(&a).is_empty(), "nothing changed since");
}

#[test]
fn a_big_rooms_members_hear_no_individual_presence() {
    let w = world_with_presence_max(2);
    let a = w.member("alice", &["hall", "den"]);
    let b = w.member("bob", &["hall", "den"]);
    w.member("carol", &["hall"]);
    w.advance(OCCUPANCY_INTERVAL_MS);
    block_on(w.service.handle_timeout(w.now()));
    w.settle();
    // bob's status reaches the small room's members (den), not the big one's.
    w.send(&b, json!({"action": "presence", "status": "away"}));
    let at = w.now();
    assert_eq!(w.frames(&a), vec![presence_json("bob", "away", at)]);
    w.send(&a, json!({"action": "leave", "room": "den"}));
    w.settle();
    // alice is only in the big room now: the change is confirmed to her alone.
    w.send(&a, json!({"action": "presence", "status": "busy"}));
    assert_eq!(w.frames(&a), vec![presence_json("alice", "busy", at)]);
    assert!(w.frames(&b).is_empty());
    // Leaving a big room changes its count (announced at once: the interval has passed).
    w.advance(OCCUPANCY_INTERVAL_MS);
    w.send(&a, json!({"action": "leave", "room": "hall"}));
    assert_eq!(w.frames(&b), vec![occupancy("hall", 2)]);
    // Within the threshold again: departures are presence as before.
    w.advance(OCCUPANCY_INTERVAL_MS);
    w.disconnect(&a);
    assert!(
        w.frames(&b).is_empty(),
        "alice had left hall; den holds bob alone"
    );
}

#[test]
fn members_pages_list_connected_users_in_id_order_with_a_cursor() {
    let w = world_with_presence_max(2);
    let conns: Vec<String> = ["dora", "abe", "cy", "bo", "eve"]
        .iter()
        .map(|u| w.member(u, &["hall"]))
        .collect();
    // A second connection of one user lists them once.
    w.member("cy", &["hall"]);
    w.send(&conns[1], json!({"action": "presence", "status": "away"}));
    w.settle();
    let page = |cursor: Option<&str>| {
        let mut frame = json!({"action": "members", "room": "hall", "limit": 2, "ref": "p"});
        if let Some(c) = cursor {
            frame["cursor"] = json!(c);
        }
        assert_eq!(w.send(&conns[0], frame), handled("members", 0));
        let frames = w.frames(&conns[0]);
        assert_eq!(frames.len(), 1, "{frames:?}");
        frames[0].clone()
    };
    assert_eq!(
        page(None),
        json!({"type": "members", "room": "hall", "ref": "p", "next": "bo", "members": [
            {"user": "abe", "status": "away"}, {"user": "bo", "status": "online"}]})
    );
    assert_eq!(
        page(Some("bo")),
        json!({"type": "members", "room": "hall", "ref": "p", "next": "dora", "members": [
            {"user": "cy", "status": "online"}, {"user": "dora", "status": "online"}]})
    );
    assert_eq!(
        page(Some("dora")),
        json!({"type": "members", "room": "hall", "ref": "p", "members": [
            {"user": "eve", "status": "online"}]})
    );
    let outsider = w.connect("zed", &["hall"]);
    w.send(
        &outsider,
        json!({"action": "members", "room": "hall", "ref": "x"}),
    );
    assert_error(&w.frames(&outsider), ErrorCode::NotMember, Some("x"));
    w.send(
        &conns[0],
        json!({"action": "members", "room": "hall", "limit": 101}),
    );
    assert_error(&w.frames(&conns[0]), ErrorCode::Invalid, None);
}
