//! The Lambda handlers, called directly with API Gateway event fixtures on a real DynamoDB (moto)
//! and a Management API that follows API Gateway's documented behaviour (see `common`).
#![allow(
    clippy::unwrap_used,
    reason = "test code: a failing call is a test failure"
)]

use std::collections::HashMap;

use roomcast_aws::lambda::{FunctionConfig, env, with_key_from_parameter};
use roomcast_core::auth::Role;
use roomcast_core::http::HttpRequest;
use roomcast_core::store::ConnectionStore;
use roomcast_testkit::aws::lambda::{World, fixture, now_ms, token, types, world, world_with};
use serde_json::{Value, json};

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

/// A world where alice (`a+1/x=`), bob (`b+2/y=`) and carol (`c+3/z=`) have joined `support-1`,
/// with what they received so far taken.
async fn three_in_support_1() -> World {
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
    w
}

#[tokio::test(flavor = "multi_thread")]
async fn message_is_acked_and_fanned_out_and_gone_recipients_are_removed() {
    let w = three_in_support_1().await;
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
    // A visitor's first message in a support room opens its conversation (a system message).
    let opened = |f: &Value| f["from"] == "$system" && f["meta"]["status"] == "waiting";
    let to_alice = w.received("a+1/x=");
    assert_eq!(types(&to_alice), ["ack", "presence", "message"]);
    assert_eq!(to_alice[0]["seq"], 1);
    assert!(is_offline(&to_alice[1]));
    assert!(opened(&to_alice[2]), "{to_alice:?}");
    let to_bob = w.received("b+2/y=");
    assert_eq!(types(&to_bob), ["message", "presence", "message"]);
    assert!(opened(&to_bob[2]), "{to_bob:?}");
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
        .handle_http(&HttpRequest {
            method: "GET",
            path: "/health",
            authorization: None,
            query: None,
            body: b"",
            origin: None,
            client_ip: None,
        })
        .await;
    assert_eq!(health.status, 200);
    let bot = format!("Bearer {}", token("bot", Role::Service));
    let body = json!({"id": "p1", "body": "Hello from the bot"}).to_string();
    let published = w
        .runtime
        .handle_http(&HttpRequest {
            method: "POST",
            path: "/rooms/support-9/messages",
            authorization: Some(&bot),
            query: None,
            body: body.as_bytes(),
            origin: None,
            client_ip: None,
        })
        .await;
    assert_eq!(
        (published.status, published.body["seq"].as_u64()),
        (201, Some(1))
    );
    let again = w
        .runtime
        .handle_http(&HttpRequest {
            method: "POST",
            path: "/rooms/support-9/messages",
            authorization: Some(&bot),
            query: None,
            body: body.as_bytes(),
            origin: None,
            client_ip: None,
        })
        .await;
    assert_eq!(
        (again.status, again.body["duplicate"].as_bool()),
        (200, Some(true))
    );
    let reader = format!("Bearer {}", token("alice", Role::User));
    let page = w
        .runtime
        .handle_http(&HttpRequest {
            method: "GET",
            path: "/rooms/support-9/messages",
            authorization: Some(&reader),
            query: Some("limit=10"),
            body: b"",
            origin: None,
            client_ip: None,
        })
        .await;
    assert_eq!(page.status, 200);
    assert_eq!(page.body["messages"][0]["body"], "Hello from the bot");
    let user_publish = w
        .runtime
        .handle_http(&HttpRequest {
            method: "POST",
            path: "/rooms/support-9/messages",
            authorization: Some(&reader),
            query: None,
            body: body.as_bytes(),
            origin: None,
            client_ip: None,
        })
        .await;
    assert_eq!(user_publish.status, 403);
    let nowhere = w
        .runtime
        .handle_http(&HttpRequest {
            method: "GET",
            path: "/nope",
            authorization: None,
            query: None,
            body: b"",
            origin: None,
            client_ip: None,
        })
        .await;
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

#[tokio::test(flavor = "multi_thread")]
async fn the_key_is_read_from_an_ssm_secure_string_at_cold_start() {
    let w = world().await;
    let sdk = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .region(aws_config::Region::new("us-east-1"))
        .endpoint_url(&w.dynamo.endpoint)
        .credentials_provider(aws_sdk_ssm::config::Credentials::new(
            "test", "test", None, None, "test",
        ))
        .load()
        .await;
    let ssm = aws_sdk_ssm::Client::new(&sdk);
    ssm.put_parameter()
        .name("/roomcast/test/jwt-key")
        .value("secret-from-ssm-0123456789abcdef0123")
        .r#type(aws_sdk_ssm::types::ParameterType::SecureString)
        .send()
        .await
        .unwrap();
    let environment = HashMap::from([
        (env::JWT_KEY_PARAMETER, "/roomcast/test/jwt-key".to_owned()),
        (env::TABLE, "unused".to_owned()),
    ]);
    let get = with_key_from_parameter(&ssm, |k| environment.get(k).cloned())
        .await
        .unwrap();
    assert_eq!(
        get(env::JWT_SECRET).as_deref(),
        Some("secret-from-ssm-0123456789abcdef0123")
    );
    assert_eq!(get(env::TABLE).as_deref(), Some("unused"));
    let config = FunctionConfig::from_env(get).unwrap();
    let verifier = roomcast_core::auth::TokenVerifier::new(&config.settings.auth).unwrap();
    let signed = roomcast_core::auth::TokenSigner::hs256(b"secret-from-ssm-0123456789abcdef0123")
        .sign(&roomcast_core::auth::Claims {
            sub: Some("alice".into()),
            tid: Some("acme".into()),
            rooms: vec!["r".into()],
            exp: Some(now_ms() / 1000 + 60),
            ..roomcast_core::auth::Claims::default()
        });
    assert!(verifier.verify(&signed, now_ms()).is_ok());

    // With RS256 the parameter holds the public key instead.
    let rs = HashMap::from([
        (env::JWT_KEY_PARAMETER, "/roomcast/test/jwt-key".to_owned()),
        (env::JWT_ALG, "RS256".to_owned()),
    ]);
    let get = with_key_from_parameter(&ssm, |k| rs.get(k).cloned())
        .await
        .unwrap();
    assert_eq!(get(env::JWT_SECRET), None);
    assert_eq!(
        get(env::JWT_PUBLIC_KEY).as_deref(),
        Some("secret-from-ssm-0123456789abcdef0123")
    );

    // A missing parameter or a second key source fails the cold start with the variable named.
    let missing = HashMap::from([(env::JWT_KEY_PARAMETER, "/roomcast/none".to_owned())]);
    let err = with_key_from_parameter(&ssm, |k| missing.get(k).cloned())
        .await
        .err()
        .unwrap();
    assert!(err.to_string().contains(env::JWT_KEY_PARAMETER), "{err}");
    let both = HashMap::from([
        (env::JWT_KEY_PARAMETER, "/roomcast/test/jwt-key".to_owned()),
        (env::JWT_SECRET, "plain".to_owned()),
    ]);
    assert!(
        with_key_from_parameter(&ssm, |k| both.get(k).cloned())
            .await
            .is_err()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_recipient_failing_with_500_does_not_stop_the_others_and_is_kept() {
    let w = three_in_support_1().await;
    // API Gateway fails every post to carol with a 500: an internal error, not a gone client.
    w.connections
        .lock()
        .unwrap()
        .failing
        .insert("c+3/z=".into());
    let message =
        |id: &str| json!({"action": "message", "room": "support-1", "id": id, "body": id});
    w.frame("a+1/x=", "message", message("m1")).await;
    let with_id = |frames: &[Value], id: &str| frames.iter().filter(|f| f["id"] == id).count();
    let to_alice = w.received("a+1/x=");
    assert!(
        to_alice
            .iter()
            .any(|f| f["type"] == "ack" && f["id"] == "m1" && f["seq"] == 1),
        "the sender is acknowledged: {to_alice:?}"
    );
    assert_eq!(with_id(&w.received("b+2/y="), "m1"), 1, "bob is served");
    assert_eq!(with_id(&w.received("c+3/z="), "m1"), 0);
    assert!(
        w.runtime
            .store()
            .connection("c+3/z=")
            .await
            .unwrap()
            .is_some(),
        "a 500 does not remove the connection (only a 410 does)"
    );
    // API Gateway recovers: carol is still a recipient, and gets what she missed on resume.
    w.connections.lock().unwrap().failing.clear();
    w.frame("a+1/x=", "message", message("m2")).await;
    assert_eq!(
        with_id(&w.received("c+3/z="), "m2"),
        1,
        "carol is served again"
    );
    w.frame(
        "c+3/z=",
        "$default",
        json!({"action": "join", "room": "support-1", "since": 0}),
    )
    .await;
    assert_eq!(
        with_id(&w.received("c+3/z="), "m1"),
        1,
        "the missed message is in her resume"
    );
}
