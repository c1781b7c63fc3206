//! The Lambda handlers, called directly with API Gateway event fixtures (`fixtures/*.json`, with
//! `connectedAt` and `requestTimeEpoch`), on a real DynamoDB (moto) and a Management API that
//! follows API Gateway's documented behaviour: AWS itself cannot run here, so a small server
//! plays it (POST/DELETE `@connections/{id}`, 410 `GoneException`, 429
//! `LimitExceededException`, errors typed by `x-amzn-ErrorType`).
#![allow(
    clippy::unwrap_used,
    reason = "test code: a failing call is a test failure"
)]

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

use aws_config::{BehaviorVersion, Region};
use aws_sdk_dynamodb::config::Credentials;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use roomcast_aws::lambda::{FunctionConfig, Runtime, env};
use roomcast_aws::moto::{Dynamo, dynamo};
use roomcast_core::auth::{Claims, Role, TokenSigner};
use roomcast_core::event::WsEvent;
use roomcast_core::ports::ConnectionStore;
use serde_json::{Value, json};

const SECRET: &str = "handler-test-secret";

/// The Management API as API Gateway documents it.
#[derive(Default)]
struct Connections {
    live: HashSet<String>,
    /// 429s still to answer per connection before accepting.
    throttle: HashMap<String, u32>,
    received: HashMap<String, Vec<Value>>,
}

type Shared = Arc<Mutex<Connections>>;

fn management_error(status: StatusCode, error_type: &'static str) -> Response {
    (
        status,
        [("x-amzn-ErrorType", error_type)],
        axum::Json(json!({"message": null})),
    )
        .into_response()
}

async fn post_to_connection(
    State(s): State<Shared>,
    Path(id): Path<String>,
    body: Bytes,
) -> Response {
    let mut s = s.lock().unwrap();
    if !s.live.contains(&id) {
        return management_error(StatusCode::GONE, "GoneException");
    }
    if let Some(left) = s.throttle.get_mut(&id).filter(|n| **n > 0) {
        *left -= 1;
        return management_error(StatusCode::TOO_MANY_REQUESTS, "LimitExceededException");
    }
    s.received
        .entry(id)
        .or_default()
        .push(serde_json::from_slice(&body).unwrap());
    StatusCode::OK.into_response()
}

async fn delete_connection(State(s): State<Shared>, Path(id): Path<String>) -> Response {
    if s.lock().unwrap().live.remove(&id) {
        StatusCode::NO_CONTENT.into_response()
    } else {
        management_error(StatusCode::GONE, "GoneException")
    }
}

struct World {
    runtime: Runtime,
    connections: Shared,
    _dynamo: Dynamo,
}

async fn world() -> World {
    world_with(&[]).await
}

async fn world_with(extra: &[(&'static str, &str)]) -> World {
    let dynamo = dynamo();
    let connections = Shared::default();
    let app = Router::new()
        .route(
            "/@connections/{id}",
            post(post_to_connection).delete(delete_connection),
        )
        .with_state(connections.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let management = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    let table = format!("handlers-{}", std::process::id());
    let mut vars = HashMap::from([
        (env::JWT_SECRET, SECRET.to_owned()),
        (env::TABLE, table),
        (env::MANAGEMENT_ENDPOINT, management),
    ]);
    vars.extend(extra.iter().map(|(k, v)| (*k, (*v).to_owned())));
    let config = FunctionConfig::from_env(|k| vars.get(k).cloned()).unwrap();
    let sdk = aws_config::defaults(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .endpoint_url(&dynamo.endpoint)
        .credentials_provider(Credentials::new("test", "test", None, None, "test"))
        .load()
        .await;
    let runtime = Runtime::new(config, sdk).unwrap();
    runtime.store().ensure_table().await.unwrap();
    World {
        runtime,
        connections,
        _dynamo: dynamo,
    }
}

fn fixture(name: &str) -> WsEvent {
    let path = format!("{}/tests/fixtures/{name}.json", env!("CARGO_MANIFEST_DIR"));
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn token(user: &str, role: Role) -> String {
    let exp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 3600;
    let claims = Claims {
        sub: Some(user.into()),
        tid: Some("acme".into()),
        rooms: vec!["support-*".into()],
        role,
        exp: Some(exp),
        ..Claims::default()
    };
    TokenSigner::hs256(SECRET.as_bytes()).sign(&claims)
}

fn now_ms() -> u64 {
    u64::try_from(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis(),
    )
    .unwrap()
}

impl World {
    /// Runs the connect fixture for `conn` with `token` in the subprotocol header.
    async fn connect(&self, conn: &str, token: &str) -> roomcast_core::event::WsResponse {
        let mut ev = fixture("connect");
        ev.request_context.connection_id = conn.into();
        ev.request_context.request_time_epoch = now_ms();
        let headers = ev.headers.as_mut().unwrap();
        headers.insert(
            "Sec-WebSocket-Protocol".into(),
            format!("roomcast.v1, {token}"),
        );
        let response = self.runtime.handle_websocket(ev).await;
        if response.status_code == 200 {
            self.connections.lock().unwrap().live.insert(conn.into());
        }
        response
    }

    async fn frame(&self, conn: &str, route: &str, body: Value) {
        let mut ev = fixture("message");
        ev.request_context.connection_id = conn.into();
        ev.request_context.route_key = route.into();
        ev.request_context.request_time_epoch = now_ms();
        ev.body = Some(body.to_string());
        assert_eq!(self.runtime.handle_websocket(ev).await.status_code, 200);
    }

    fn received(&self, conn: &str) -> Vec<Value> {
        self.connections
            .lock()
            .unwrap()
            .received
            .remove(conn)
            .unwrap_or_default()
    }
}

fn types(frames: &[Value]) -> Vec<&str> {
    frames.iter().map(|f| f["type"].as_str().unwrap()).collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn connect_fixture_accepts_a_token_and_echoes_the_subprotocol() {
    let w = world().await;
    let ok = w
        .connect("Zr4mWdnYDoECFYg=", &token("alice", Role::User))
        .await;
    assert_eq!(ok.status_code, 200);
    assert_eq!(ok.headers.unwrap()["Sec-WebSocket-Protocol"], "roomcast.v1");
    assert!(
        w.runtime
            .store()
            .connection("Zr4mWdnYDoECFYg=")
            .await
            .unwrap()
            .is_some()
    );
    let refused = w.connect("other=", "not.a.token").await;
    assert_eq!(refused.status_code, 401);
    assert!(
        w.runtime
            .store()
            .connection("other=")
            .await
            .unwrap()
            .is_none()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn message_is_acked_and_fanned_out_and_gone_recipients_are_removed() {
    let w = world().await;
    for (conn, user) in [("a+1/x=", "alice"), ("b+2/y=", "bob"), ("c+3/z=", "carol")] {
        assert_eq!(
            w.connect(conn, &token(user, Role::User)).await.status_code,
            200
        );
        w.frame(
            conn,
            "$default",
            json!({"action": "join", "room": "support-1"}),
        )
        .await;
    }
    for conn in ["a+1/x=", "b+2/y=", "c+3/z="] {
        w.received(conn);
    }
    // Carol's client vanished without a $disconnect: API Gateway answers 410 for her.
    w.connections.lock().unwrap().live.remove("c+3/z=");
    // Alice's own ack meets two 429s first: the gateway backs off and retries.
    w.connections
        .lock()
        .unwrap()
        .throttle
        .insert("a+1/x=".into(), 2);
    w.frame(
        "a+1/x=",
        "message",
        json!({"action": "message", "room": "support-1", "id": "m1", "body": "hi"}),
    )
    .await;
    // The 410 removed carol's connection, and the room heard that she is offline.
    let offline = json!({"type": "presence", "user": "carol", "status": "offline"});
    let is_offline = |f: &Value| {
        f["type"] == offline["type"]
            && f["user"] == offline["user"]
            && f["status"] == offline["status"]
    };
    let to_alice = w.received("a+1/x=");
    assert_eq!(types(&to_alice), ["ack", "presence"]);
    assert_eq!(to_alice[0]["seq"], 1);
    assert!(is_offline(&to_alice[1]));
    let to_bob = w.received("b+2/y=");
    assert_eq!(types(&to_bob), ["message", "presence"]);
    assert_eq!(
        (to_bob[0]["body"].as_str(), to_bob[0]["from"].as_str()),
        (Some("hi"), Some("alice"))
    );
    assert!(is_offline(&to_bob[1]));
    assert!(
        w.runtime
            .store()
            .connection("c+3/z=")
            .await
            .unwrap()
            .is_none(),
        "a 410 removes the connection"
    );
    w.frame(
        "a+1/x=",
        "message",
        json!({"action": "message", "room": "support-1", "id": "m2", "body": "again"}),
    )
    .await;
    let to_bob = w.received("b+2/y=");
    assert_eq!(
        types(&to_bob),
        ["message"],
        "carol is no longer a recipient, so no further 410s"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn disconnect_fixture_forgets_the_connection() {
    let w = world().await;
    assert_eq!(
        w.connect("Zr4mWdnYDoECFYg=", &token("alice", Role::User))
            .await
            .status_code,
        200
    );
    let mut ev = fixture("disconnect");
    ev.request_context.request_time_epoch = now_ms();
    assert_eq!(w.runtime.handle_websocket(ev).await.status_code, 200);
    assert!(
        w.runtime
            .store()
            .connection("Zr4mWdnYDoECFYg=")
            .await
            .unwrap()
            .is_none()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn rate_limit_close_sends_a_closing_notice_then_deletes_the_connection() {
    // A tight policy, so the flood outruns the refill even at the emulator's pace.
    let w = world_with(&[(env::RATE_BURST, "5"), (env::RATE_PER_SEC, "1")]).await;
    assert_eq!(
        w.connect("flood=", &token("mallory", Role::User))
            .await
            .status_code,
        200
    );
    for _ in 0..40 {
        w.frame("flood=", "$default", json!({"action": "ping"}))
            .await;
    }
    let frames = w.received("flood=");
    let closing = frames
        .iter()
        .find(|f| f["type"] == "closing")
        .expect("a closing notice");
    assert_eq!(closing["code"], 4008);
    assert!(
        !w.connections.lock().unwrap().live.contains("flood="),
        "DeleteConnection was called"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn http_function_serves_health_publish_and_history() {
    let w = world().await;
    let health = w
        .runtime
        .handle_http("GET", "/health", None, None, b"")
        .await;
    assert_eq!(health.status, 200);
    let bot = format!("Bearer {}", token("bot", Role::Service));
    let body = json!({"id": "p1", "body": "Hello from the bot"}).to_string();
    let published = w
        .runtime
        .handle_http(
            "POST",
            "/rooms/support-9/messages",
            Some(&bot),
            None,
            body.as_bytes(),
        )
        .await;
    assert_eq!(
        (published.status, published.body["seq"].as_u64()),
        (201, Some(1))
    );
    let again = w
        .runtime
        .handle_http(
            "POST",
            "/rooms/support-9/messages",
            Some(&bot),
            None,
            body.as_bytes(),
        )
        .await;
    assert_eq!(
        (again.status, again.body["duplicate"].as_bool()),
        (200, Some(true))
    );
    let reader = format!("Bearer {}", token("alice", Role::User));
    let page = w
        .runtime
        .handle_http(
            "GET",
            "/rooms/support-9/messages",
            Some(&reader),
            Some("limit=10"),
            b"",
        )
        .await;
    assert_eq!(page.status, 200);
    assert_eq!(page.body["messages"][0]["body"], "Hello from the bot");
    let user_publish = w
        .runtime
        .handle_http(
            "POST",
            "/rooms/support-9/messages",
            Some(&reader),
            None,
            body.as_bytes(),
        )
        .await;
    assert_eq!(user_publish.status, 403);
    let nowhere = w.runtime.handle_http("GET", "/nope", None, None, b"").await;
    assert_eq!(nowhere.status, 404);
}

#[test]
fn configuration_needs_exactly_one_key() {
    assert!(FunctionConfig::from_env(|_| None).is_err());
    let both = HashMap::from([
        (env::JWT_SECRET, "s".to_owned()),
        (env::JWT_PUBLIC_KEY, "pem".to_owned()),
    ]);
    assert!(FunctionConfig::from_env(|k| both.get(k).cloned()).is_err());
    let bad_rate = HashMap::from([
        (env::JWT_SECRET, "s".to_owned()),
        (env::RATE_PER_SEC, "fast".to_owned()),
    ]);
    assert!(FunctionConfig::from_env(|k| bad_rate.get(k).cloned()).is_err());
}
