//! API Gateway route events through [`handle_event`] onto the core service
//! (`roomcast_testkit::service::TestService`: memory stores, a recording gateway, a fake clock):
//! the proxy event fields the service reads, and the integration response it returns.

#![allow(
    clippy::unwrap_used,
    reason = "tests: a failing store call or a missing frame is a test failure"
)]

use std::collections::HashMap;

use futures::executor::block_on;
use roomcast_apigw::{WsEvent, WsRequestContext, WsResponse, handle_event};
use roomcast_core::auth::Claims;
use roomcast_core::protocol::close;
use roomcast_core::ratelimit::RatePolicy;
use roomcast_core::service::{SUBPROTOCOL, ServiceConfig};
use roomcast_core::store::ConnectionStore;
use roomcast_testkit::service::{T0, TestService};
use serde_json::json;

const TENANT: &str = "acme";

/// The service with room to send, and event helpers.
struct World(TestService);

impl World {
    fn new() -> Self {
        Self(TestService::new(ServiceConfig {
            rate: RatePolicy {
                burst: 10_000,
                per_sec: 10_000,
                max_strikes: 100,
            },
            ..ServiceConfig::default()
        }))
    }

    fn claims(&self, user: &str, grants: &[&str]) -> Claims {
        Claims {
            sub: Some(user.into()),
            tid: Some(TENANT.into()),
            rooms: grants.iter().map(|g| (*g).to_owned()).collect(),
            exp: Some(self.0.now() / 1000 + 3_600),
            ..Claims::default()
        }
    }

    fn token(&self, claims: &Claims) -> String {
        self.0.sign(claims)
    }

    /// An API Gateway event of `event_type` for `conn`, arriving now.
    fn event(&self, event_type: &str, conn: &str) -> WsEvent {
        let route_key = match event_type {
            "CONNECT" => "$connect",
            "DISCONNECT" => "$disconnect",
            _ => "$default",
        };
        WsEvent {
            request_context: WsRequestContext {
                route_key: route_key.into(),
                event_type: event_type.into(),
                connection_id: conn.into(),
                connected_at: self.0.now(),
                request_time_epoch: self.0.now(),
                ..WsRequestContext::default()
            },
            ..WsEvent::default()
        }
    }

    fn handle(&self, event: &WsEvent) -> WsResponse {
        block_on(handle_event(&self.0.service, event)).response
    }

    fn is_live(&self, conn: &str) -> bool {
        block_on(self.0.connections.connection(conn))
            .unwrap()
            .is_some()
    }

    /// A connection of `user` accepted through a `CONNECT` event and joined to `room`.
    fn member(&self, user: &str, room: &str) -> String {
        let conn = format!("{user}=");
        let mut ev = self.event("CONNECT", &conn);
        let token = self.token(&self.claims(user, &[room]));
        ev.query_string_parameters = Some(HashMap::from([("token".to_owned(), token)]));
        assert_eq!(self.handle(&ev).status_code, 200);
        let mut ev = self.event("MESSAGE", &conn);
        ev.body = Some(json!({"action": "join", "room": room}).to_string());
        assert_eq!(self.handle(&ev).status_code, 200);
        self.0.gateway.take(&conn);
        conn
    }

    fn frames(&self, conn: &str) -> Vec<serde_json::Value> {
        self.0.gateway.take(conn)
    }
}

#[test]
fn connect_event_with_query_token_is_accepted_and_echoes_the_subprotocol() {
    let w = World::new();
    let token = w.token(&w.claims("alice", &["lobby"]));
    let mut ev = w.event("CONNECT", "abc=");
    ev.query_string_parameters = Some(HashMap::from([("token".to_owned(), token.clone())]));
    ev.headers = Some(HashMap::from([(
        "Sec-WebSocket-Protocol".to_owned(),
        format!("chat, {SUBPROTOCOL}"),
    )]));
    assert_eq!(
        w.handle(&ev),
        WsResponse {
            status_code: 200,
            headers: Some(HashMap::from([(
                "Sec-WebSocket-Protocol".to_owned(),
                SUBPROTOCOL.to_owned()
            )])),
            body: None,
        }
    );
    let conn = block_on(w.0.connections.connection("abc="))
        .unwrap()
        .unwrap();
    assert_eq!(
        (conn.tenant.as_str(), conn.user.as_str()),
        (TENANT, "alice")
    );
    // No protocols offered: none echoed.
    let mut ev = w.event("CONNECT", "def=");
    ev.query_string_parameters = Some(HashMap::from([("token".to_owned(), token.clone())]));
    assert_eq!(
        w.handle(&ev),
        WsResponse {
            status_code: 200,
            headers: None,
            body: None
        }
    );
    // The token as a subprotocol entry next to roomcast.v1.
    let mut ev = w.event("CONNECT", "ghi=");
    ev.headers = Some(HashMap::from([(
        "sec-websocket-protocol".to_owned(),
        format!("{SUBPROTOCOL}, {token}"),
    )]));
    let resp = w.handle(&ev);
    assert_eq!(resp.status_code, 200);
    assert_eq!(resp.headers.unwrap()["Sec-WebSocket-Protocol"], SUBPROTOCOL);
    assert!(w.is_live("ghi="));
}

#[test]
fn connect_event_with_a_bad_token_is_refused() {
    let w = World::new();
    let mut ev = w.event("CONNECT", "abc=");
    ev.query_string_parameters = Some(HashMap::from([("token".to_owned(), "x.y.z".to_owned())]));
    let resp = w.handle(&ev);
    assert_eq!(resp.status_code, 401);
    assert!(resp.body.is_some_and(|b| !b.is_empty()));
    assert!(!w.is_live("abc="));
    let ev = w.event("CONNECT", "def=");
    assert_eq!(w.handle(&ev).status_code, 401, "no token at all");
    let mut ev = w.event("CONNECT", "ghi=");
    let no_rooms = w.token(&w.claims("alice", &[]));
    ev.query_string_parameters = Some(HashMap::from([("token".to_owned(), no_rooms)]));
    assert_eq!(w.handle(&ev).status_code, 403);
    assert!(!w.is_live("ghi="));
}

#[test]
fn message_events_run_text_frames_and_close_binary_ones_with_1003() {
    let w = World::new();
    let a1 = w.member("alice", "lobby");
    let mut ev = w.event("MESSAGE", &a1);
    ev.body = Some(r#"{"action":"ping"}"#.into());
    assert_eq!(w.handle(&ev).status_code, 200);
    assert_eq!(w.frames(&a1), vec![json!({"type": "pong", "ts": T0})]);
    assert_eq!(w.0.gateway.closed(&a1), None);
    ev.is_base64_encoded = true;
    assert_eq!(w.handle(&ev).status_code, 200);
    assert_eq!(w.0.gateway.closed(&a1), Some(close::UNSUPPORTED_DATA));
    assert_eq!(
        w.frames(&a1),
        vec![json!({
            "type": "closing",
            "code": close::UNSUPPORTED_DATA,
            "reason": "binary frames are not supported"
        })],
        "the binary frame was not processed"
    );
}

#[test]
fn disconnect_event_removes_the_connection() {
    let w = World::new();
    let a1 = w.member("alice", "lobby");
    let b1 = w.member("bob", "lobby");
    w.0.advance(8);
    let resp = w.handle(&w.event("DISCONNECT", &a1));
    assert_eq!(resp.status_code, 200);
    assert!(!w.is_live(&a1));
    assert_eq!(
        w.frames(&b1),
        vec![
            json!({"type": "presence", "user": "alice", "status": "offline", "last_seen": T0 + 8})
        ]
    );
    assert_eq!(
        w.handle(&w.event("UPGRADE", &b1)).status_code,
        400,
        "unknown event type"
    );
}
