//! Passing for someone else (issue 15): a client cannot write the `meta` the service reserves
//! for its own messages, and a message a service published in a user's name says so (`via`) and
//! cannot be changed by that user.

use anyhow::{Context, ensure};
use roomcast_core::protocol::RESERVED_META_KEYS;
use serde_json::json;

use crate::cases::http_api::ensure_status;
use crate::client::frame_type;
use crate::deployment::Deployment;
use crate::http::Request;
use crate::scope::Scope;

/// A `message` whose `meta` names a reserved key (`kind`, what the desk's status lines carry)
/// is refused with `INVALID` naming the key, and reaches nobody; other keys are the
/// application's.
pub async fn reserved_meta_keys_refused_invalid(d: &dyn Deployment) -> anyhow::Result<()> {
    let s = Scope::new(d, "reserved_meta");
    let room = "support-forged";
    let (mut mallory, _) = s.member("mallory", room).await?;
    let (mut agent, _) = s.member("ann", room).await?;
    for key in RESERVED_META_KEYS {
        let id = s.id("forged");
        let mut meta = json!({"status": "closed", "room": room});
        meta[*key] = json!("status");
        let forged = json!({
            "action": "message", "room": room, "id": id, "body": "Re-enter your card at …",
            "meta": meta,
        });
        mallory.send_json(&forged).await?;
        let refused = mallory.expect_error("INVALID").await?;
        ensure!(
            refused["ref"] == id.as_str(),
            "the refusal names the message: {refused}"
        );
        let reason = refused["message"].as_str().unwrap_or_default();
        ensure!(
            reason.contains(&format!("`{key}`")),
            "the refusal names the key `{key}`: {refused}"
        );
    }
    // The next message is delivered first: nothing forged came before it.
    let id = s.id("plain");
    mallory
        .send_json(&json!({"action": "message", "room": room, "id": id, "body": "hello", "meta": {"status": "urgent"}}))
        .await?;
    mallory.expect_ack(&id).await?;
    let (before, delivered) = agent
        .take_until("mallory's message", |f| {
            frame_type(f) == "message" && f["from"] == "mallory"
        })
        .await?;
    ensure!(
        delivered["id"] == id.as_str() && delivered["meta"]["status"] == "urgent",
        "other meta keys are the application's: {delivered}"
    );
    ensure!(
        !before.iter().any(|f| frame_type(f) == "message"),
        "nothing forged was delivered: {before:?}"
    );
    Ok(())
}

/// `POST /rooms/{room}/messages` with `from: "bob"` delivers a message carrying
/// `via: <the service's sub>`, and bob can neither edit nor delete it (`FORBIDDEN`).
pub async fn service_published_messages_carry_via_and_stay_unchanged(
    d: &dyn Deployment,
) -> anyhow::Result<()> {
    let s = Scope::new(d, "via");
    let base = d
        .http_url()
        .context("the deployment reports http_api but gives no http_url")?;
    let (mut bob, _) = s.member("bob", "lobby").await?;
    let r = Request::new("POST", "/rooms/lobby/messages")
        .bearer(&s.service_token("backend"))
        .json(&json!({"id": s.id("bot"), "body": "bob accepts the terms", "from": "bob"}))
        .send(&base)
        .await?;
    ensure_status(&r, 201, "publish as bob")?;
    let published = bob.expect_message("lobby").await?;
    ensure!(
        published["from"] == "bob" && published["via"] == "backend",
        "the message names the service that published it: {published}"
    );
    let seq = published["seq"].clone();
    for (action, frame) in [
        (
            "edit",
            json!({"action": "edit", "room": "lobby", "seq": seq, "body": "bob refuses", "ref": "e"}),
        ),
        (
            "delete",
            json!({"action": "delete", "room": "lobby", "seq": seq, "ref": "d"}),
        ),
    ] {
        bob.send_json(&frame).await?;
        let refused = bob
            .expect_error("FORBIDDEN")
            .await
            .with_context(|| format!("bob's {action} of the published message"))?;
        ensure!(refused["ref"] == frame["ref"], "{action}: {refused}");
    }
    let page = bob.history("lobby", json!({})).await?;
    ensure!(
        page["messages"][0]["body"] == "bob accepts the terms"
            && page["messages"][0]["via"] == "backend",
        "stored unchanged, with `via`: {page}"
    );
    Ok(())
}
