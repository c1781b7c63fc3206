//! The support desk through the service's front door (issue 19), over the memory stores with a
//! fake clock: auto-assignment round-robin under capacity, transfer and unassign, the previous
//! agent of a reopened conversation, the conversation list, identify, rating, moderation,
//! blocks, and embedding with a publishable key.

#![allow(
    clippy::unwrap_used,
    reason = "tests: a failing store call or a missing frame is a test failure"
)]

use futures::executor::block_on;
use roomcast_core::auth::{Claims, Role};
use roomcast_core::http::{self, HttpRequest};
use roomcast_core::protocol::{SYSTEM_SENDER, close};
use roomcast_core::ratelimit::RatePolicy;
use roomcast_core::service::{Inbound, ServiceConfig, Upgrade};
use roomcast_core::store::{HistoryStore, RoomRef};
use roomcast_core::support::embed::{EMBED_KID, EmbedConfig, EmbedKeys};
use roomcast_testkit::service::TestService;
use serde_json::{Value, json};

const TENANT: &str = "acme";
const EMBED_SECRET: &[u8] = b"embed-secret-for-tests-0123456789abcdef";
const KEY: &str = "pk_acme_0123456789";
const SHOP: &str = "https://shop.example";

struct Desk {
    ts: TestService,
    opened: std::cell::Cell<usize>,
}

impl Desk {
    fn new() -> Self {
        Self::with(ServiceConfig {
            rate: RatePolicy {
                burst: 10_000,
                per_sec: 10_000,
                max_strikes: 100,
            },
            ..ServiceConfig::default()
        })
    }

    fn with(config: ServiceConfig) -> Self {
        Self {
            ts: TestService::new(config),
            opened: std::cell::Cell::new(0),
        }
    }

    fn now(&self) -> u64 {
        self.ts.now()
    }

    fn claims(&self, user: &str, role: Role, grants: &[&str]) -> Claims {
        Claims {
            sub: Some(user.into()),
            tid: Some(TENANT.into()),
            rooms: grants.iter().map(|g| (*g).to_owned()).collect(),
            exp: Some(self.now() / 1000 + 3600),
            role,
            ..Claims::default()
        }
    }

    fn connect_token(&self, user: &str, token: &str, origin: Option<&str>) -> Result<String, u16> {
        self.opened.set(self.opened.get() + 1);
        let id = format!("{user}-{}", self.opened.get());
        let upgrade = Upgrade {
            token_param: Some(token),
            origin,
            ..Upgrade::default()
        };
        block_on(self.ts.service.connect(&id, upgrade, self.now()))
            .map(|_| id)
            .map_err(|r| r.status)
    }

    fn connect(&self, user: &str, role: Role, grants: &[&str]) -> String {
        let token = self.ts.sign(&self.claims(user, role, grants));
        self.connect_token(user, &token, None)
            .expect("connect accepted")
    }

    /// An agent in the inbox, online with `capacity`.
    fn agent(&self, user: &str, capacity: u32) -> String {
        let conn = self.connect(user, Role::Agent, &["inbox", "support-*"]);
        self.send(&conn, json!({"action": "join", "room": "inbox"}));
        let reply = self.ask(
            &conn,
            json!({"action": "availability", "status": "online", "capacity": capacity}),
        );
        assert_eq!(reply["type"], "agent", "{reply}");
        conn
    }

    /// A visitor in their support room.
    fn visitor(&self, user: &str) -> String {
        let room = format!("support-{user}");
        let conn = self.connect(user, Role::User, &[&room]);
        self.send(&conn, json!({"action": "join", "room": room}));
        self.ts.gateway.take(&conn);
        conn
    }

    fn send(&self, conn: &str, frame: Value) {
        block_on(
            self.ts
                .service
                .frame(conn, Inbound::Text(&frame.to_string()), self.now()),
        );
    }

    /// Sends `frame` with a ref and returns the reply carrying it.
    fn ask(&self, conn: &str, mut frame: Value) -> Value {
        frame["ref"] = json!("r");
        self.ts.gateway.take(conn);
        self.send(conn, frame);
        self.ts
            .gateway
            .take(conn)
            .into_iter()
            .find(|f| f["ref"] == "r" || f["type"] == "ack")
            .unwrap_or_else(|| panic!("no reply"))
    }

    fn say(&self, conn: &str, room: &str, body: &str) {
        let id = format!("m{}", self.now());
        self.send(
            conn,
            json!({"action": "message", "room": room, "id": id, "body": body}),
        );
        self.ts.advance(1000);
    }

    fn conversation(&self, room: &str) -> (String, Value) {
        let c = block_on(self.ts.history.conversation(&RoomRef::new(TENANT, room)))
            .unwrap()
            .expect("a conversation");
        (c.status.as_str().to_owned(), json!(c.agent))
    }

    fn list(&self, agent: &str, extra: Value) -> Value {
        let mut frame = json!({"action": "conversations"});
        for (k, v) in extra.as_object().unwrap() {
            frame[k] = v.clone();
        }
        let reply = self.ask(agent, frame);
        assert_eq!(reply["type"], "conversations", "{reply}");
        reply
    }

    fn rooms(list: &Value) -> Vec<(String, String)> {
        list["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| {
                (
                    i["room"].as_str().unwrap().to_owned(),
                    i["status"].as_str().unwrap().to_owned(),
                )
            })
            .collect()
    }
}

fn pair(room: &str, status: &str) -> (String, String) {
    (room.to_owned(), status.to_owned())
}

#[test]
fn round_robin_under_capacity_the_third_waits_until_capacity_frees() {
    let d = Desk::new();
    let ann = d.agent("ann", 1);
    let _bo = d.agent("bo", 1);
    let (v1, v2, v3) = (d.visitor("v1"), d.visitor("v2"), d.visitor("v3"));
    d.say(&v1, "support-v1", "hi");
    d.say(&v2, "support-v2", "hello");
    d.say(&v3, "support-v3", "anyone?");
    let first = d.conversation("support-v1");
    let second = d.conversation("support-v2");
    assert_eq!(first, ("assigned".into(), json!("ann")));
    assert_eq!(second, ("assigned".into(), json!("bo")), "round-robin");
    assert_eq!(
        d.conversation("support-v3"),
        ("waiting".into(), json!(null))
    );
    let list = d.list(&ann, json!({}));
    assert_eq!(
        Desk::rooms(&list),
        [
            pair("support-v3", "waiting"),
            pair("support-v1", "assigned"),
            pair("support-v2", "assigned")
        ]
    );
    let loads: Vec<_> = list["agents"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| (a["user"].clone(), a["load"].clone()))
        .collect();
    assert_eq!(loads, [(json!("ann"), json!(1)), (json!("bo"), json!(1))]);
    // Closing frees ann's place: the waiting one is hers now.
    let closed = d.ask(&ann, json!({"action": "close", "room": "support-v1"}));
    assert_eq!(closed["status"], "closed");
    assert_eq!(
        d.conversation("support-v3"),
        ("assigned".into(), json!("ann"))
    );
    // The visitor saw the agent join as a system line.
    let seen = d.ts.gateway.take(&v3);
    assert!(
        seen.iter()
            .any(|f| f["from"] == SYSTEM_SENDER && f["meta"]["status"] == "assigned"),
        "{seen:?}"
    );
}

#[test]
fn nobody_online_means_it_waits_until_an_agent_comes_online() {
    let d = Desk::new();
    let v = d.visitor("v1");
    d.say(&v, "support-v1", "hi");
    assert_eq!(d.conversation("support-v1").0, "waiting");
    let _cy = d.agent("cy", 2);
    assert_eq!(
        d.conversation("support-v1"),
        ("assigned".into(), json!("cy"))
    );
}

#[test]
fn an_agent_whose_console_closes_takes_no_new_conversations() {
    let d = Desk::new();
    let ann = d.agent("ann", 3);
    let other_tab = d.connect("ann", Role::Agent, &["support-*"]);
    block_on(d.ts.service.disconnect(&ann, d.now()));
    let v = d.visitor("v1");
    d.say(&v, "support-v1", "hi");
    assert_eq!(
        d.conversation("support-v1").0,
        "waiting",
        "ann's console is gone"
    );
    let list = d.list(&d.connect("bo", Role::Agent, &["support-*"]), json!({}));
    assert_eq!(list["agents"][0]["status"], "offline");
    let _ = other_tab;
}

#[test]
fn away_agents_and_manual_accept_beyond_capacity() {
    let d = Desk::new();
    let ann = d.agent("ann", 1);
    let away = d.ask(&ann, json!({"action": "availability", "status": "away"}));
    assert_eq!(away["agent"]["status"], "away");
    let (v1, v2) = (d.visitor("v1"), d.visitor("v2"));
    d.say(&v1, "support-v1", "hi");
    assert_eq!(d.conversation("support-v1").0, "waiting", "away takes none");
    d.ask(&ann, json!({"action": "assign", "room": "support-v1"}));
    d.say(&v2, "support-v2", "hi");
    let taken = d.ask(&ann, json!({"action": "assign", "room": "support-v2"}));
    assert_eq!(
        taken["status"], "assigned",
        "manual accept ignores capacity"
    );
    let list = d.list(&ann, json!({}));
    assert_eq!(list["agents"][0]["load"], 2);
}

#[test]
fn transfer_and_unassign_by_the_assigned_agent_only() {
    let d = Desk::new();
    let ann = d.agent("ann", 2);
    let bo = d.agent("bo", 1);
    let v = d.visitor("v1");
    d.say(&v, "support-v1", "hi");
    assert_eq!(d.conversation("support-v1").1, json!("ann"));
    let refused = d.ask(&bo, json!({"action": "unassign", "room": "support-v1"}));
    assert_eq!(refused["code"], "CONFLICT");
    let moved = d.ask(
        &ann,
        json!({"action": "transfer", "room": "support-v1", "to": "bo"}),
    );
    assert_eq!(
        (moved["status"].clone(), moved["agent"].clone()),
        (json!("assigned"), json!("bo"))
    );
    let list = d.list(&ann, json!({}));
    let loads: Vec<_> = list["agents"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["load"].clone())
        .collect();
    assert_eq!(
        loads,
        [json!(0), json!(1)],
        "the room moved between the records"
    );
    let back = d.ask(&bo, json!({"action": "unassign", "room": "support-v1"}));
    assert_eq!(back["status"], "waiting");
    let list = d.list(&bo, json!({"filter": "waiting"}));
    assert_eq!(Desk::rooms(&list), [pair("support-v1", "waiting")]);
}

#[test]
fn a_reopened_conversation_goes_back_to_its_previous_agent() {
    let d = Desk::new();
    let ann = d.agent("ann", 3);
    let _bo = d.agent("bo", 3);
    let v = d.visitor("v1");
    d.say(&v, "support-v1", "hi");
    assert_eq!(d.conversation("support-v1").1, json!("ann"));
    // bo is next in turn, but the visitor comes back to ann.
    d.ask(&ann, json!({"action": "close", "room": "support-v1"}));
    d.say(&v, "support-v1", "one more thing");
    assert_eq!(
        d.conversation("support-v1"),
        ("assigned".into(), json!("ann"))
    );
}

#[test]
fn the_list_shows_identity_preview_unread_and_searches() {
    let d = Desk::new();
    let ann = d.connect("ann", Role::Agent, &["inbox", "support-*"]);
    let v1 = d.visitor("v1");
    let v2 = d.visitor("v2");
    let named = d.ask(
        &v1,
        json!({"action": "identify", "name": " Zoë \u{202e}Lee", "email": "Zoe@Example.COM"}),
    );
    assert_eq!(
        named,
        json!({"type": "identified", "name": "Zoë Lee", "email": "Zoe@example.com", "ref": "r"})
    );
    d.say(&v1, "support-v1", "my order\nis late");
    d.say(&v1, "support-v1", "hello?");
    d.say(&v2, "support-v2", "hi");
    let list = d.list(&ann, json!({}));
    let first = &list["items"][0];
    assert_eq!(first["room"], "support-v1", "oldest waiting first: {list}");
    assert_eq!(
        (first["name"].clone(), first["email"].clone()),
        (json!("Zoë Lee"), json!("Zoe@example.com"))
    );
    assert_eq!(
        (first["last"]["body"].clone(), first["unread"].clone()),
        (json!("hello?"), json!(2))
    );
    let found = d.list(&ann, json!({"query": "example.com"}));
    assert_eq!(Desk::rooms(&found), [pair("support-v1", "waiting")]);
    // Identifying later updates the listed conversation.
    d.ask(&v2, json!({"action": "identify", "name": "Bob"}));
    let found = d.list(&ann, json!({"query": "bob"}));
    assert_eq!(Desk::rooms(&found), [pair("support-v2", "waiting")]);
    // An agent's answer resets the unread count.
    d.ask(&ann, json!({"action": "assign", "room": "support-v1"}));
    d.send(&ann, json!({"action": "join", "room": "support-v1"}));
    d.say(&ann, "support-v1", "on it");
    let list = d.list(&ann, json!({"filter": "assigned"}));
    assert_eq!(list["items"][0]["unread"], 0);
    // Only agents list; visitors identify, agents do not.
    assert_eq!(
        d.ask(&v1, json!({"action": "conversations"}))["code"],
        "FORBIDDEN"
    );
    assert_eq!(
        d.ask(&ann, json!({"action": "identify", "name": "x"}))["code"],
        "FORBIDDEN"
    );
    assert_eq!(
        d.ask(&v1, json!({"action": "identify", "email": "nope"}))["code"],
        "INVALID"
    );
}

#[test]
fn rating_after_close_is_a_system_message_once() {
    let d = Desk::new();
    let ann = d.agent("ann", 1);
    let v = d.visitor("v1");
    d.say(&v, "support-v1", "hi");
    let early = d.ask(
        &v,
        json!({"action": "rate", "room": "support-v1", "score": 5}),
    );
    assert_eq!(early["code"], "CONFLICT", "not closed yet");
    d.ask(&ann, json!({"action": "close", "room": "support-v1"}));
    let ack = d.ask(
        &v,
        json!({"action": "rate", "room": "support-v1", "score": 4, "comment": "quick, thanks"}),
    );
    assert_eq!(
        (ack["type"].clone(), ack["duplicate"].clone()),
        (json!("ack"), Value::Null)
    );
    let seq = ack["seq"].as_u64().unwrap();
    let stored = block_on(
        d.ts.history
            .message(&RoomRef::new(TENANT, "support-v1"), seq),
    )
    .unwrap()
    .unwrap();
    assert_eq!(stored.from, SYSTEM_SENDER);
    assert_eq!(stored.meta.unwrap()["score"], 4);
    let again = d.ask(
        &v,
        json!({"action": "rate", "room": "support-v1", "score": 1}),
    );
    assert_eq!(
        (again["seq"].clone(), again["duplicate"].clone()),
        (json!(seq), json!(true))
    );
    let list = d.list(&ann, json!({"filter": "closed"}));
    assert_eq!(list["items"][0]["rating"], 4);
}

#[test]
fn the_handling_agent_deletes_any_message_and_is_recorded() {
    let d = Desk::new();
    let ann = d.agent("ann", 1);
    let bo = d.connect("bo", Role::Agent, &["support-*"]);
    let v = d.visitor("v1");
    d.say(&v, "support-v1", "spam spam");
    d.send(&ann, json!({"action": "join", "room": "support-v1"}));
    d.send(&bo, json!({"action": "join", "room": "support-v1"}));
    let not_theirs = d.ask(
        &bo,
        json!({"action": "delete", "room": "support-v1", "seq": 1}),
    );
    assert_eq!(not_theirs["code"], "FORBIDDEN", "bo does not handle it");
    d.ts.gateway.take(&ann);
    d.send(
        &ann,
        json!({"action": "delete", "room": "support-v1", "seq": 1}),
    );
    let frames = d.ts.gateway.take(&ann);
    let deleted = frames
        .iter()
        .find(|f| f["type"] == "deleted")
        .expect("deleted");
    assert_eq!(deleted["by"], "ann");
    let stored = block_on(d.ts.history.message(&RoomRef::new(TENANT, "support-v1"), 1))
        .unwrap()
        .unwrap();
    assert!(stored.deleted);
    assert_eq!(stored.meta, Some(json!({"deleted_by": "ann"})));
}

#[test]
fn a_blocked_visitor_is_closed_with_4003_and_refused_until_unblocked() {
    let d = Desk::new();
    let ann = d.agent("ann", 1);
    let v = d.visitor("v1");
    let blocked = d.ask(&ann, json!({"action": "block", "user": "v1"}));
    assert_eq!(
        (blocked["type"].clone(), blocked["blocked"].clone()),
        (json!("blocked"), json!(true))
    );
    assert_eq!(d.ts.gateway.closed(&v), Some(close::FORBIDDEN));
    let token = d.ts.sign(&d.claims("v1", Role::User, &["support-v1"]));
    assert_eq!(d.connect_token("v1", &token, None), Err(403));
    let reply = block_on(http::handle(
        &d.ts.service,
        &HttpRequest {
            method: "GET",
            path: "/rooms/support-v1/messages",
            query: None,
            authorization: Some(&format!("Bearer {token}")),
            body: b"",
            origin: None,
            client_ip: None,
        },
        None,
        d.now(),
    ));
    assert_eq!(reply.status, 403);
    d.ask(&ann, json!({"action": "unblock", "user": "v1"}));
    assert!(d.connect_token("v1", &token, None).is_ok());
}

fn embedding() -> Desk {
    let keys = EmbedKeys::parse(&format!(
        r#"{{"{KEY}": {{"tenant": "{TENANT}", "origins": ["{SHOP}"], "team": "Acme", "greeting": "Hi!",
            "office_hours": {{"days": {{"mon": "00:00-24:00"}}}}}}}}"#
    ))
    .unwrap();
    Desk::with(ServiceConfig {
        embed: EmbedConfig {
            keys,
            signing_key: Some(EMBED_SECRET.to_vec()),
            ..EmbedConfig::default()
        },
        ..ServiceConfig::default()
    })
}

fn token_request(d: &Desk, body: Value, origin: Option<&str>, ip: &str) -> http::HttpReply {
    block_on(http::handle(
        &d.ts.service,
        &HttpRequest {
            method: "POST",
            path: "/embed/token",
            query: None,
            authorization: None,
            body: body.to_string().as_bytes(),
            origin,
            client_ip: Some(ip),
        },
        None,
        d.now(),
    ))
}

#[test]
fn a_publishable_key_gets_a_visitor_token_from_an_allowed_origin_only() {
    let d = embedding();
    let visitor = "v_0123456789abcdefghijkl";
    let ok = token_request(
        &d,
        json!({"key": KEY, "visitor": visitor}),
        Some(SHOP),
        "10.0.0.1",
    );
    assert_eq!(ok.status, 200, "{:?}", ok.body);
    assert_eq!(ok.body["room"], format!("support-{visitor}"));
    assert_eq!(ok.body["desk"]["team"], "Acme");
    assert_eq!(ok.body["desk"]["agents_online"], 0);
    assert!(ok.body["desk"]["open"].is_boolean());
    let token = ok.body["token"].as_str().unwrap();
    // The token is the service's own (kid) and grants the visitor's room alone.
    let header: Value =
        serde_json::from_slice(&base64_url(token.split('.').next().unwrap())).unwrap();
    assert_eq!(header["kid"], EMBED_KID);
    let conn = d
        .connect_token(visitor, token, Some(SHOP))
        .expect("accepted from the shop");
    d.send(
        &conn,
        json!({"action": "join", "room": format!("support-{visitor}")}),
    );
    assert_eq!(d.ts.gateway.take(&conn)[0]["type"], "joined");
    // Another origin, no origin, another key, a bad visitor id.
    assert_eq!(
        d.connect_token(visitor, token, Some("https://evil.example")),
        Err(403)
    );
    for (body, origin, status) in [
        (
            json!({"key": KEY, "visitor": visitor}),
            Some("https://evil.example"),
            403,
        ),
        (json!({"key": KEY, "visitor": visitor}), None, 403),
        (
            json!({"key": "pk_acme_nope000000", "visitor": visitor}),
            Some(SHOP),
            403,
        ),
        (json!({"key": KEY, "visitor": "short"}), Some(SHOP), 400),
        (json!({"key": KEY}), Some(SHOP), 400),
    ] {
        let reply = token_request(&d, body.clone(), origin, "10.0.0.2");
        assert_eq!(
            reply.status, status,
            "{body} from {origin:?}: {:?}",
            reply.body
        );
    }
}

#[test]
fn visitor_tokens_are_rate_limited_per_address() {
    let d = embedding();
    let visitor = "v_0123456789abcdefghijkl";
    let statuses: Vec<u16> = (0..25)
        .map(|_| {
            token_request(
                &d,
                json!({"key": KEY, "visitor": visitor}),
                Some(SHOP),
                "10.0.0.9",
            )
            .status
        })
        .collect();
    assert_eq!(
        statuses.iter().filter(|s| **s == 200).count(),
        20,
        "{statuses:?}"
    );
    assert_eq!(statuses[24], 429);
    let other = token_request(
        &d,
        json!({"key": KEY, "visitor": visitor}),
        Some(SHOP),
        "10.0.0.10",
    );
    assert_eq!(other.status, 200, "another address has its own bucket");
}

/// Decodes unpadded base64url (a JWT segment).
fn base64_url(text: &str) -> Vec<u8> {
    let alphabet = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut bits = 0u32;
    let mut count = 0;
    let mut out = Vec::new();
    for c in text.bytes() {
        let v = alphabet.iter().position(|a| *a == c).unwrap() as u32;
        bits = (bits << 6) | v;
        count += 6;
        if count >= 8 {
            count -= 8;
            out.push((bits >> count) as u8);
            bits &= (1 << count) - 1;
        }
    }
    out
}
