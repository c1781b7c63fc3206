//! Integration events (docs/events.md): endpoints as data over the HTTP API, signed Standard
//! Webhooks deliveries checked by the official verifier, retries, dead letters, secret
//! rotation, and no event lost across a kill between the `ack` and the delivery.
//!
//! The deployment delivers to loopback (development mode) with short retry timings
//! ([`crate::Capabilities::webhooks`]).

use std::collections::HashMap;
use std::time::Duration;

use anyhow::{Context, ensure};
use serde_json::{Value, json};

use super::http_api::ensure_status;
use crate::deployment::Deployment;
use crate::http::Request;
use crate::scope::Scope;
use crate::webhook::{
    Answer, Receiver, accepted_events, assert_all_verify, verify_with_official_library,
};

/// How long an event may take to arrive when nothing fails.
const ARRIVAL: Duration = Duration::from_secs(10);

fn base(d: &dyn Deployment) -> anyhow::Result<String> {
    d.http_url().context("webhooks need the HTTP API")
}

/// An endpoint of the scope's tenant for `url`: its id and secret.
async fn create_endpoint(s: &Scope<'_>, body: Value) -> anyhow::Result<(String, String)> {
    let r = Request::new("POST", "/events/endpoints")
        .bearer(&s.service_token("ops"))
        .json(&body)
        .send(&base(s.d)?)
        .await?;
    ensure_status(&r, 201, "POST /events/endpoints")?;
    let v = r.json()?;
    let id = v["id"].as_str().context("an endpoint id")?.to_owned();
    let secret = v["secret"]
        .as_str()
        .context("the secret, shown once")?
        .to_owned();
    ensure!(secret.starts_with("whsec_"), "secret {secret}");
    Ok((id, secret))
}

async fn api(
    s: &Scope<'_>,
    method: &'static str,
    path: &str,
    body: Option<Value>,
) -> anyhow::Result<crate::http::Response> {
    let mut request = Request::new(method, path).bearer(&s.service_token("ops"));
    if let Some(body) = body {
        request = request.json(&body);
    }
    request.send(&base(s.d)?).await
}

/// The accepted events of `types`, de-duplicated, in arrival order.
fn of_types(events: &[Value], types: &[&str]) -> Vec<Value> {
    events
        .iter()
        .filter(|e| types.iter().any(|t| e["type"] == *t))
        .cloned()
        .collect()
}

/// Every change of a room becomes one event, signed (the official `standardwebhooks`
/// verifier accepts every delivery), with a stable unique id, the tenant, the room, the seq,
/// and `data` in the protocol frame's shape (reactions included); `message.created` names the members who had no
/// connection (`offline_members`); `member.joined` / `member.left` follow a user's first
/// connection and their last one leaving.
pub async fn events_are_delivered_signed_with_every_change(
    d: &dyn Deployment,
) -> anyhow::Result<()> {
    let s = Scope::new(d, "events_signed");
    let receiver = Receiver::start().await?;
    let (_, secret) = create_endpoint(&s, json!({"url": receiver.url()})).await?;
    let room = "general";

    let (mut bob, _) = s.member("bob", room).await?;
    let (mut alice, _) = s.member("alice", room).await?;
    bob.expect_type("presence").await?;
    bob.close().await?;
    alice.expect_type("presence").await?;
    let mut acks = Vec::new();
    for (i, body) in ["hello", "second", "third"].iter().enumerate() {
        acks.push(alice.message(room, &format!("m{i}"), body).await?);
    }
    let seq = |i: usize| acks[i]["seq"].as_u64().unwrap_or_default();
    alice
        .send_json(&json!({"action": "edit", "room": room, "seq": seq(0), "body": "hello, edited"}))
        .await?;
    alice.expect_type("edited").await?;
    alice
        .send_json(&json!({"action": "delete", "room": room, "seq": seq(1)}))
        .await?;
    alice.expect_type("deleted").await?;
    for action in ["react", "unreact"] {
        alice
            .send_json(&json!({"action": action, "room": room, "seq": seq(2), "emoji": "👍"}))
            .await?;
        alice.expect_type("reaction").await?;
    }

    let want = |e: &[Value]| {
        of_types(e, &["message.created"]).len() == 3
            && of_types(e, &["message.edited", "message.deleted"]).len() == 2
            && of_types(e, &["message.reaction_added", "message.reaction_removed"]).len() == 2
            && of_types(e, &["member.left"]).len() == 1
            && of_types(e, &["member.joined"]).len() == 2
    };
    let deliveries = receiver
        .wait_for(ARRIVAL, "every change's event", |r| {
            accepted_events(r).is_ok_and(|e| want(&e))
        })
        .await?;
    assert_all_verify(&secret, &deliveries).await?;

    let events = receiver.events()?;
    for e in &events {
        ensure!(e["tenant"] == s.tenant.as_str(), "tenant of {e}");
        ensure!(e["room"] == room, "room of {e}");
        let id = e["id"].as_str().unwrap_or_default();
        ensure!(id.starts_with("evt_"), "event id {id}");
        ensure!(e["occurred_at"].as_u64().is_some(), "occurred_at of {e}");
    }
    for d in &deliveries {
        let event = d.event()?;
        ensure!(
            d.header("webhook-id") == event["id"].as_str(),
            "webhook-id is the event id"
        );
        ensure!(d.header("content-type") == Some("application/json"));
    }
    // Concurrent attempts may reorder arrivals: consumers order by seq (docs/events.md).
    let mut created = of_types(&events, &["message.created"]);
    created.sort_by_key(|e| e["seq"].as_u64());
    for (i, e) in created.iter().enumerate() {
        ensure!(e["seq"] == seq(i), "one created event per message: {e}");
        let m = &e["data"];
        ensure!(
            m["seq"] == seq(i) && m["from"] == "alice" && m["id"] == format!("m{i}"),
            "data is the stored message: {e}"
        );
        ensure!(
            e["data"]["offline_members"] == json!(["bob"]),
            "bob had no connection: {e}"
        );
    }
    let edited = &of_types(&events, &["message.edited"])[0];
    ensure!(
        edited["data"]
            == json!({"room": room, "seq": seq(0), "body": "hello, edited", "by": "alice", "edited_ts": edited["data"]["edited_ts"]}),
        "edited data is the `edited` frame: {edited}"
    );
    let deleted = &of_types(&events, &["message.deleted"])[0];
    ensure!(
        deleted["data"] == json!({"room": room, "seq": seq(1), "by": "alice"}),
        "deleted data is the `deleted` frame: {deleted}"
    );
    for (event_type, added, users) in [
        ("message.reaction_added", true, json!(["alice"])),
        ("message.reaction_removed", false, json!([])),
    ] {
        let reaction = &of_types(&events, &[event_type])[0];
        ensure!(
            reaction["seq"] == seq(2)
                && reaction["data"]
                    == json!({"room": room, "seq": seq(2), "emoji": "👍", "by": "alice",
                              "added": added, "count": users.as_array().map_or(0, Vec::len),
                              "users": users}),
            "reaction data is the `reaction` frame's: {reaction}"
        );
    }
    let joined: Vec<&Value> = events
        .iter()
        .filter(|e| e["type"] == "member.joined")
        .collect();
    ensure!(
        joined.iter().any(|e| e["data"]["user"] == "bob")
            && joined.iter().any(|e| e["data"]["user"] == "alice"),
        "both joined: {joined:?}"
    );
    let left = &of_types(&events, &["member.left"])[0];
    ensure!(
        left["data"] == json!({"room": room, "user": "bob"}),
        "{left}"
    );
    ensure!(left.get("seq").is_none(), "member events have no seq");
    Ok(())
}

/// The endpoints API: role `service` only; each tenant sees and changes only its own
/// endpoints; the type filter and `enabled` decide what is delivered; a deleted endpoint is
/// gone; endpoint URLs to the deployment itself or with credentials or another scheme are
/// refused `INVALID`.
pub async fn endpoints_are_per_tenant_and_filtered(d: &dyn Deployment) -> anyhow::Result<()> {
    let s = Scope::new(d, "events_api");
    let other = Scope::new(d, "events_api_other");
    let base = base(d)?;
    let receiver = Receiver::start().await?;

    let as_user = Request::new("POST", "/events/endpoints")
        .bearer(&s.token("alice", &["*"]))
        .json(&json!({"url": receiver.url()}))
        .send(&base)
        .await?;
    ensure_status(&as_user, 403, "a user token creating an endpoint")?;
    let anonymous = Request::new("GET", "/events/endpoints").send(&base).await?;
    ensure_status(&anonymous, 401, "no token")?;

    let (id, _) = create_endpoint(
        &s,
        json!({"url": receiver.url(), "types": ["message.created"], "description": "bot"}),
    )
    .await?;
    let listed = api(&s, "GET", "/events/endpoints", None).await?;
    ensure_status(&listed, 200, "list")?;
    let listed = listed.json()?;
    ensure!(
        listed["endpoints"].as_array().map(Vec::len) == Some(1),
        "{listed}"
    );
    ensure!(
        !listed.to_string().contains("whsec_"),
        "secrets are never listed"
    );
    let one = api(&s, "GET", &format!("/events/endpoints/{id}"), None).await?;
    ensure_status(&one, 200, "get")?;
    ensure!(one.json()?["types"] == json!(["message.created"]));

    for (path, method) in [
        (format!("/events/endpoints/{id}"), "GET"),
        (format!("/events/endpoints/{id}"), "DELETE"),
        (format!("/events/endpoints/{id}/rotate"), "POST"),
    ] {
        let r = api(&other, method, &path, None).await?;
        ensure_status(&r, 404, "another tenant's endpoint")?;
    }
    let theirs = api(&other, "GET", "/events/endpoints", None).await?;
    ensure!(
        theirs.json()?["endpoints"] == json!([]),
        "another tenant lists none"
    );

    for (url, why) in [
        (format!("{base}/hooks"), "the deployment itself"),
        ("ftp://127.0.0.1/x".to_owned(), "not http(s)"),
        (
            format!("http://user:pw@127.0.0.1:{}/", receiver.port()),
            "credentials",
        ),
        ("not a url".to_owned(), "not a URL"),
    ] {
        let r = api(&s, "POST", "/events/endpoints", Some(json!({"url": url}))).await?;
        ensure_status(&r, 400, why)?;
        ensure!(r.json()?["code"] == "INVALID", "{why}: {}", r.text());
    }
    let bad_type = api(
        &s,
        "POST",
        "/events/endpoints",
        Some(json!({"url": receiver.url(), "types": ["message.exploded"]})),
    )
    .await?;
    ensure_status(&bad_type, 400, "an unknown event type")?;

    // Filtered to message.created: the joins are not delivered, the message is.
    let (mut alice, _) = s.member("alice", "filtered").await?;
    alice.message("filtered", "f1", "one").await?;
    receiver
        .wait_for(ARRIVAL, "the message", |r| !r.is_empty())
        .await?;
    // Disabled: nothing new.
    let patched = api(
        &s,
        "PATCH",
        &format!("/events/endpoints/{id}"),
        Some(json!({"enabled": false})),
    )
    .await?;
    ensure_status(&patched, 200, "disable")?;
    ensure!(patched.json()?["enabled"] == false);
    alice.message("filtered", "f2", "two").await?;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let types: Vec<Value> = receiver
        .events()?
        .iter()
        .map(|e| e["type"].clone())
        .collect();
    ensure!(
        types == vec![json!("message.created")],
        "only the filtered type, only while enabled: {types:?}"
    );

    let deleted = api(&s, "DELETE", &format!("/events/endpoints/{id}"), None).await?;
    ensure_status(&deleted, 200, "delete")?;
    let gone = api(&s, "GET", &format!("/events/endpoints/{id}"), None).await?;
    ensure_status(&gone, 404, "a deleted endpoint")?;
    Ok(())
}

/// Timeouts, dropped connections, 5xx and 429 are retried (429's `Retry-After` honoured) until
/// the endpoint accepts; each attempt is listed with its status and latency.
pub async fn failed_deliveries_are_retried_until_accepted(
    d: &dyn Deployment,
) -> anyhow::Result<()> {
    let s = Scope::new(d, "events_retry");
    let receiver = Receiver::start().await?;
    receiver.script(
        [
            Answer::Status(500, None),
            Answer::Drop,
            Answer::Status(429, Some("1".into())),
            Answer::Status(503, None),
        ],
        Answer::Accept,
    );
    let (id, secret) = create_endpoint(
        &s,
        json!({"url": receiver.url(), "types": ["message.created"]}),
    )
    .await?;
    let (mut alice, _) = s.member("alice", "retry").await?;
    alice.message("retry", "r1", "try me").await?;
    let deliveries = receiver
        .wait_for(
            Duration::from_secs(30),
            "acceptance after four failures",
            |r| r.iter().any(|d| d.accepted()),
        )
        .await?;
    ensure!(deliveries.len() == 5, "{} attempts", deliveries.len());
    let ids: Vec<Option<&str>> = deliveries.iter().map(|d| d.header("webhook-id")).collect();
    ensure!(
        ids.windows(2).all(|w| w[0] == w[1]),
        "one event id throughout: {ids:?}"
    );
    let after_429 = deliveries[3].at.duration_since(deliveries[2].at);
    ensure!(
        after_429 >= Duration::from_millis(950),
        "Retry-After: 1 honoured (next attempt after {after_429:?})"
    );
    assert_all_verify(&secret, &deliveries).await?;

    let attempts = api(&s, "GET", &format!("/events/endpoints/{id}/attempts"), None).await?;
    ensure_status(&attempts, 200, "attempts")?;
    let attempts = attempts.json()?;
    let list = attempts["attempts"].as_array().context("attempts")?;
    let outcomes: Vec<(Value, Value)> = list
        .iter()
        .rev()
        .map(|a| (a["outcome"].clone(), a["status"].clone()))
        .collect();
    ensure!(
        outcomes
            == vec![
                (json!("retry"), json!(500)),
                (json!("retry"), Value::Null),
                (json!("retry"), json!(429)),
                (json!("retry"), json!(503)),
                (json!("delivered"), json!(200)),
            ],
        "attempt records, oldest first: {outcomes:?}"
    );
    ensure!(list.iter().all(|a| a["latency_ms"].as_u64().is_some()));
    Ok(())
}

/// A status that is not retried (4xx other than 408/429) dead-letters the delivery at once; the
/// dead letter is listed with its reason, and a replay delivers it with the same id.
pub async fn refused_deliveries_are_dead_lettered_and_replayed(
    d: &dyn Deployment,
) -> anyhow::Result<()> {
    let s = Scope::new(d, "events_dead");
    let receiver = Receiver::start().await?;
    receiver.script([], Answer::Status(401, None));
    let (id, _) = create_endpoint(
        &s,
        json!({"url": receiver.url(), "types": ["message.created"]}),
    )
    .await?;
    let (mut alice, _) = s.member("alice", "dead").await?;
    alice.message("dead", "d1", "refused").await?;
    receiver
        .wait_for(ARRIVAL, "one attempt", |r| !r.is_empty())
        .await?;
    let path = format!("/events/endpoints/{id}/dead-letters");
    let mut dead = Value::Null;
    for _ in 0..50 {
        dead = api(&s, "GET", &path, None).await?.json()?;
        if dead["dead_letters"]
            .as_array()
            .is_some_and(|d| !d.is_empty())
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let letters = dead["dead_letters"].as_array().context("dead letters")?;
    ensure!(letters.len() == 1, "{dead}");
    ensure!(
        letters[0]["reason"] == json!({"reason": "refused", "code": 401}),
        "{dead}"
    );
    let event_id = letters[0]["event"]["id"]
        .as_str()
        .context("event id")?
        .to_owned();
    tokio::time::sleep(Duration::from_millis(500)).await;
    ensure!(
        receiver.received().len() == 1,
        "a refused delivery is not retried"
    );

    receiver.script([], Answer::Accept);
    let replay = api(&s, "POST", &format!("{path}/{event_id}/replay"), None).await?;
    ensure_status(&replay, 200, "replay")?;
    let again = api(&s, "POST", &format!("{path}/{event_id}/replay"), None).await?;
    ensure_status(&again, 404, "a dead letter replays once")?;
    receiver
        .wait_for(ARRIVAL, "the replayed event", |r| {
            r.iter().any(|d| d.accepted())
        })
        .await?;
    let events = receiver.events()?;
    ensure!(events.len() == 1 && events[0]["id"] == event_id.as_str());
    let listed = api(&s, "GET", &path, None).await?.json()?;
    ensure!(listed["dead_letters"] == json!([]), "{listed}");
    Ok(())
}

/// Rotating the secret: the new one is returned once; for the overlap, deliveries carry a
/// signature under each secret, so receivers holding either verify them; a test event goes
/// to the one endpoint on request.
pub async fn secret_rotation_signs_with_both_secrets(d: &dyn Deployment) -> anyhow::Result<()> {
    let s = Scope::new(d, "events_rotate");
    let receiver = Receiver::start().await?;
    let (id, old) = create_endpoint(&s, json!({"url": receiver.url()})).await?;
    let rotated = api(&s, "POST", &format!("/events/endpoints/{id}/rotate"), None).await?;
    ensure_status(&rotated, 200, "rotate")?;
    let rotated = rotated.json()?;
    let new = rotated["secret"]
        .as_str()
        .context("the new secret")?
        .to_owned();
    ensure!(new != old && new.starts_with("whsec_"));
    ensure!(
        rotated["previous_expires_at"].as_u64().is_some(),
        "{rotated}"
    );

    let test = api(&s, "POST", &format!("/events/endpoints/{id}/test"), None).await?;
    ensure_status(&test, 201, "test event")?;
    let deliveries = receiver
        .wait_for(ARRIVAL, "the test event", |r| !r.is_empty())
        .await?;
    let event = deliveries[0].event()?;
    ensure!(
        event["type"] == "endpoint.test" && event["data"]["endpoint"] == id.as_str(),
        "{event}"
    );
    let signatures = deliveries[0]
        .header("webhook-signature")
        .unwrap_or_default();
    ensure!(
        signatures.split(' ').count() == 2,
        "two signatures: {signatures}"
    );
    assert_all_verify(&old, &deliveries).await?;
    assert_all_verify(&new, &deliveries).await?;
    let verdicts =
        verify_with_official_library("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", &deliveries).await?;
    ensure!(verdicts[0] != "ok", "a third secret does not verify");
    Ok(())
}

/// A slow endpoint (answers after the attempt timeout) delays neither another endpoint nor
/// chat: the fast endpoint has every event within 3 s, while the slow one's first attempts
/// are still timing out, and 20 acks take about as long as 20 acks in a room no endpoint
/// wants.
pub async fn slow_endpoint_delays_nobody(d: &dyn Deployment) -> anyhow::Result<()> {
    let s = Scope::new(d, "events_slow");
    let (mut alice, _) = s.member("alice", "slow").await?;
    let twenty_acks = async |alice: &mut crate::client::Client, tag: &str| {
        let started = std::time::Instant::now();
        for i in 0..20 {
            alice.message("slow", &format!("{tag}{i}"), "x").await?;
        }
        anyhow::Ok(started.elapsed())
    };
    let baseline = twenty_acks(&mut alice, "b").await?;
    let slow = Receiver::start().await?;
    slow.script([], Answer::Late(Duration::from_secs(20)));
    let fast = Receiver::start().await?;
    let types = json!(["message.created"]);
    create_endpoint(&s, json!({"url": slow.url(), "types": types})).await?;
    create_endpoint(&s, json!({"url": fast.url(), "types": types})).await?;
    let chat = twenty_acks(&mut alice, "s").await?;
    fast.wait_for(
        Duration::from_secs(3),
        "the fast endpoint's 20 events",
        |r| accepted_events(r).is_ok_and(|e| e.len() == 20),
    )
    .await?;
    ensure!(
        chat < baseline * 2 + Duration::from_secs(1),
        "20 acks took {chat:?}, against {baseline:?} with no endpoint"
    );
    Ok(())
}

/// Kill -9 after the `ack`, before the event could be delivered (the endpoint refuses until
/// then): after the restart the event arrives, exactly the message as stored.
pub async fn events_survive_kill_between_ack_and_delivery(
    d: &dyn Deployment,
) -> anyhow::Result<()> {
    let s = Scope::new(d, "events_restart");
    let receiver = Receiver::start().await?;
    receiver.script([], Answer::Status(503, None));
    create_endpoint(
        &s,
        json!({"url": receiver.url(), "types": ["message.created"]}),
    )
    .await?;
    let (mut alice, _) = s.member("alice", "durable").await?;
    let ack = alice
        .message("durable", "k1", "kept through a crash")
        .await?;
    receiver
        .wait_for(ARRIVAL, "a refused attempt", |r| !r.is_empty())
        .await?;
    drop(alice);
    d.restart().await?;
    receiver.script([], Answer::Accept);
    receiver
        .wait_for(
            Duration::from_secs(30),
            "the event after the restart",
            |r| r.iter().any(|d| d.accepted()),
        )
        .await?;
    let events = receiver.events()?;
    ensure!(events.len() == 1, "{events:?}");
    let history = Request::new("GET", "/rooms/durable/messages")
        .bearer(&s.token("alice", &["*"]))
        .send(&base(d)?)
        .await?
        .json()?;
    let stored = &history["messages"][0];
    ensure!(stored["seq"] == ack["seq"], "{history}");
    let mut data = events[0]["data"].clone();
    let offline = data
        .as_object_mut()
        .and_then(|d| d.remove("offline_members"));
    ensure!(
        offline.is_some(),
        "message.created lists offline members: {data}"
    );
    ensure!(
        data == *stored,
        "the event carries the message exactly as stored: {data} vs {stored}"
    );
    let by_id: HashMap<String, usize> =
        receiver.received().iter().fold(HashMap::new(), |mut m, d| {
            *m.entry(d.header("webhook-id").unwrap_or_default().to_owned())
                .or_default() += 1;
            m
        });
    ensure!(by_id.len() == 1, "retries reuse the id: {by_id:?}");
    Ok(())
}
