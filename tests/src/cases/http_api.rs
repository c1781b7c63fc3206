//! The HTTP API: health, history, server-side publish.

use anyhow::{Context, ensure};
use roomcast_core::auth::{Claims, TokenSigner};
use roomcast_core::limits::{MAX_BODY_BYTES, MAX_SERVER_FRAME_BYTES};
use serde_json::json;

use super::history::page_seqs;
use super::{ensure_delivered, send_messages};
use crate::client::frame_type;
use crate::deployment::Deployment;
use crate::http::{Request, Response};
use crate::scope::{Failures, Scope, now_secs};

fn base(d: &dyn Deployment) -> anyhow::Result<String> {
    d.http_url()
        .context("the deployment reports http_api but gives no http_url")
}

/// Fails unless `r` has HTTP `status`, showing the body.
pub(crate) fn ensure_status(r: &Response, status: u16, what: &str) -> anyhow::Result<()> {
    ensure!(
        r.status == status,
        "{what}: expected HTTP {status}, got {} `{}`",
        r.status,
        r.text()
    );
    Ok(())
}

/// Tokens that must be refused with 401: wrongly signed and expired.
fn bad_tokens(s: &Scope<'_>, claims: &Claims) -> [(&'static str, String); 2] {
    [
        (
            "signed with another key",
            TokenSigner::hs256(b"not-the-deployment-secret").sign(claims),
        ),
        (
            "expired",
            s.d.sign(&Claims {
                exp: Some(now_secs() - 600),
                ..claims.clone()
            }),
        ),
    ]
}

/// `GET /health` answers 200.
pub async fn http_health_ok(d: &dyn Deployment) -> anyhow::Result<()> {
    let r = Request::new("GET", "/health").send(&base(d)?).await?;
    ensure_status(&r, 200, "GET /health")
}

/// `GET /rooms/{room}/messages` pages history (`before`, `after`, `limit`) for a Bearer token
/// granting the room: 200 `{room, messages, more}`; 401 without a valid token; 403 when the
/// token does not grant the room.
pub async fn http_history_needs_a_granted_token(d: &dyn Deployment) -> anyhow::Result<()> {
    let s = Scope::new(d, "http_history");
    let base = base(d)?;
    let (mut alice, _) = s.member("alice", "orders-1").await?;
    let acks = send_messages(&mut alice, &s, "orders-1", "m", 5).await?;
    let claims = s.claims("alice", &["orders-*"]);
    let token = d.sign(&claims);
    let get = |query: &str| format!("/rooms/orders-1/messages{query}");

    let r = Request::new("GET", &get(""))
        .bearer(&token)
        .send(&base)
        .await?;
    ensure_status(&r, 200, "history with a granting token")?;
    let page = r.json()?;
    ensure!(
        page["room"] == "orders-1" && page_seqs(&page) == (vec![1, 2, 3, 4, 5], false),
        "the whole page: {page}"
    );
    for (i, (m, ack)) in page["messages"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .zip(&acks)
        .enumerate()
    {
        ensure_delivered(m, ack, "alice", &format!("m {i}"))?;
    }

    let mut f = Failures::default();
    for (query, want, more) in [
        ("?limit=2", vec![4, 5], true),
        ("?before=4&limit=2", vec![2, 3], true),
        ("?after=3", vec![4, 5], false),
    ] {
        let result = async {
            let r = Request::new("GET", &get(query))
                .bearer(&token)
                .send(&base)
                .await?;
            ensure_status(&r, 200, query)?;
            let page = r.json()?;
            ensure!(
                page_seqs(&page) == (want.clone(), more),
                "expected {want:?} more {more}: {page}"
            );
            Ok(())
        };
        f.check(query, result.await);
    }
    let r = Request::new("GET", &get("")).send(&base).await?;
    f.check("no Authorization", ensure_status(&r, 401, "no token"));
    for (what, bad) in bad_tokens(&s, &claims) {
        let r = Request::new("GET", &get(""))
            .bearer(&bad)
            .send(&base)
            .await?;
        f.check(what, ensure_status(&r, 401, what));
    }
    let other = s.token("alice", &["sales-*"]);
    let r = Request::new("GET", &get(""))
        .bearer(&other)
        .send(&base)
        .await?;
    f.check(
        "room not granted",
        ensure_status(&r, 403, "room not granted"),
    );
    f.finish()
}

/// `POST /rooms/{room}/messages` with a role `service` token stores and delivers live: 201
/// `{room, seq, id, ts, duplicate: false}`; the same id again is 200 with the original seq and
/// `duplicate: true` and delivers nothing; role `user` is 403; a bad token 401.
pub async fn http_publish_needs_service_role(d: &dyn Deployment) -> anyhow::Result<()> {
    let s = Scope::new(d, "http_publish");
    let base = base(d)?;
    let (mut bob, _) = s.member("bob", "lobby").await?;
    let service = s.service_token("backend");
    let path = "/rooms/lobby/messages";
    let id = s.id("svc");
    let publish = json!({"id": id, "body": "from the backend"});

    let r = Request::new("POST", path)
        .bearer(&service)
        .json(&publish)
        .send(&base)
        .await?;
    ensure_status(&r, 201, "publish as service")?;
    let created = r.json()?;
    ensure!(
        created["room"] == "lobby"
            && created["seq"] == 1
            && created["id"] == id.as_str()
            && created["duplicate"] == false,
        "201 body: {created}"
    );
    let m = bob.expect_message("lobby").await?;
    ensure_delivered(&m, &created, "backend", "from the backend")?;

    let r = Request::new("POST", path)
        .bearer(&service)
        .json(&publish)
        .send(&base)
        .await?;
    ensure_status(&r, 200, "the same id again")?;
    let again = r.json()?;
    ensure!(
        again["seq"] == created["seq"] && again["duplicate"] == true,
        "a duplicate returns the original seq: {again}"
    );

    let mut f = Failures::default();
    let user = s.token("alice", &["*"]);
    let r = Request::new("POST", path)
        .bearer(&user)
        .json(&json!({"id": s.id("u"), "body": "x"}))
        .send(&base)
        .await?;
    f.check("role user", ensure_status(&r, 403, "role user"));
    for (what, bad) in bad_tokens(
        &s,
        &Claims {
            role: roomcast_core::auth::Role::Service,
            ..s.claims("backend", &[])
        },
    ) {
        let r = Request::new("POST", path)
            .bearer(&bad)
            .json(&json!({"id": s.id("b"), "body": "x"}))
            .send(&base)
            .await?;
        f.check(what, ensure_status(&r, 401, what));
    }
    f.finish()?;

    let r = Request::new("POST", path)
        .bearer(&service)
        .json(&json!({"id": s.id("svc"), "body": "second"}))
        .send(&base)
        .await?;
    ensure_status(&r, 201, "a second publish")?;
    let second = r.json()?;
    ensure!(
        second["seq"] == 2,
        "refused publishes store nothing; seqs stay gap-free: {second}"
    );
    let (before, next) = bob
        .take_until("the second publish", |f| frame_type(f) == "message")
        .await?;
    ensure!(
        next["seq"] == 2,
        "nothing delivered for the duplicate or refused publishes; got {next} after {before:?}"
    );
    Ok(())
}

/// `GET /rooms/{room}/messages` is cut like a `history` frame: at most 128 KB of messages
/// (`MAX_PAGE_BYTES`), keeping those next to the anchor, with `more: true`.
pub async fn http_history_page_capped_at_128_kb(d: &dyn Deployment) -> anyhow::Result<()> {
    let s = Scope::new(d, "http_page_cap");
    let base = base(d)?;
    let (mut alice, _) = s.member("alice", "big").await?;
    let body = "x".repeat(MAX_BODY_BYTES);
    for _ in 0..10 {
        alice.message("big", &s.id("big"), &body).await?;
    }
    let token = s.token("alice", &["big"]);
    let mut f = Failures::default();
    for (query, first, last) in [("?limit=100", 4, 10), ("?after=0&limit=100", 1, 7)] {
        let result = async {
            let r = Request::new("GET", &format!("/rooms/big/messages{query}"))
                .bearer(&token)
                .send(&base)
                .await?;
            ensure_status(&r, 200, query)?;
            ensure!(
                r.body.len() <= MAX_SERVER_FRAME_BYTES,
                "a page of {} bytes",
                r.body.len()
            );
            let page = r.json()?;
            ensure!(
                page_seqs(&page) == ((first..=last).collect(), true),
                "seqs {first}..={last} that fit, and more: {:?}",
                page_seqs(&page)
            );
            Ok(())
        };
        f.check(query, result.await);
    }
    f.finish()
}

/// The HTTP API answers CORS for any origin (bearer tokens, no cookies): a preflight of a
/// cross-origin request with `Authorization` gets 204 with the methods and headers allowed,
/// and answers carry `Access-Control-Allow-Origin`.
pub async fn http_api_answers_cors(d: &dyn Deployment) -> anyhow::Result<()> {
    let s = Scope::new(d, "http_cors");
    let base = base(d)?;
    let mut preflight = Request::new("OPTIONS", "/rooms/lobby/messages");
    preflight
        .headers
        .push(("Origin", "https://shop.example".into()));
    preflight
        .headers
        .push(("Access-Control-Request-Method", "GET".into()));
    preflight
        .headers
        .push(("Access-Control-Request-Headers", "authorization".into()));
    let r = preflight.send(&base).await?;
    ensure!(
        (200..300).contains(&r.status),
        "preflight: HTTP {} `{}`",
        r.status,
        r.text()
    );
    let allowed_headers = r
        .header("access-control-allow-headers")
        .unwrap_or_default()
        .to_ascii_lowercase();
    ensure!(
        r.header("access-control-allow-origin").is_some()
            && allowed_headers.contains("authorization"),
        "preflight headers: {:?}",
        r.headers
    );
    let mut get =
        Request::new("GET", "/rooms/lobby/messages").bearer(&s.token("alice", &["lobby"]));
    get.headers.push(("Origin", "https://shop.example".into()));
    let r = get.send(&base).await?;
    ensure_status(&r, 200, "a cross-origin history read")?;
    ensure!(
        r.header("access-control-allow-origin").is_some(),
        "no Access-Control-Allow-Origin: {:?}",
        r.headers
    );
    Ok(())
}
