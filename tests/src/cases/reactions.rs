//! Protocol 1.1: reactions (`react`, `unreact`, the `reaction` frame, counts in history) and
//! replies (`reply_to` with the original's preview, shown deleted once it is).

use anyhow::ensure;
use serde_json::{Value, json};

use crate::client::{Client, frame_type};
use crate::deployment::Deployment;
use crate::scope::Scope;

fn reaction(action: &str, seq: &Value, emoji: &str, reference: &str) -> Value {
    json!({"action": action, "room": "lobby", "seq": seq, "emoji": emoji, "ref": reference})
}

/// The reply to `react`/`unreact` `reference`: the `reaction` frame carrying its `ref`.
async fn reacted(rx: &mut Client, reference: &str) -> anyhow::Result<Value> {
    rx.expect(&format!("`reaction` for {reference}"), |f| {
        frame_type(f) == "reaction" && f["ref"] == reference
    })
    .await
}

/// Two users react to a message: each change reaches the other member with the emoji's new
/// count and users, the asker gets it as the reply; repeating a reaction (or removing one that
/// is not there) is acknowledged as a duplicate and tells nobody; history carries the counts;
/// a bad emoji is `INVALID`, an unknown or deleted message `NOT_FOUND`.
pub async fn reactions_are_counted_and_told_to_the_room(d: &dyn Deployment) -> anyhow::Result<()> {
    let s = Scope::new(d, "react");
    let (mut alice, _) = s.member("alice", "lobby").await?;
    let (mut bob, _) = s.member("bob", "lobby").await?;
    let ack = alice.message("lobby", &s.id("m"), "lunch?").await?;
    let seq = ack["seq"].clone();
    bob.expect_message("lobby").await?;

    bob.send_json(&reaction("react", &seq, "👍", "b1")).await?;
    let reply = reacted(&mut bob, "b1").await?;
    ensure!(
        reply["count"] == 1 && reply["users"] == json!(["bob"]) && reply.get("duplicate").is_none(),
        "the reply carries the new aggregate: {reply}"
    );
    let told = alice.expect_type("reaction").await?;
    ensure!(
        told["by"] == "bob"
            && told["added"] == true
            && told["emoji"] == "👍"
            && told["seq"] == seq
            && told["count"] == 1
            && told.get("ref").is_none(),
        "the other member is told: {told}"
    );

    bob.send_json(&reaction("react", &seq, "👍", "b2")).await?;
    let again = reacted(&mut bob, "b2").await?;
    ensure!(
        again["duplicate"] == true && again["count"] == 1,
        "a repeat changes nothing: {again}"
    );
    alice
        .send_json(&reaction("react", &seq, "👍", "a1"))
        .await?;
    reacted(&mut alice, "a1").await?;
    let told = bob.expect_type("reaction").await?;
    ensure!(
        told["by"] == "alice" && told["count"] == 2 && told["users"] == json!(["bob", "alice"]),
        "bob's repeat told alice nothing, her own reaction is counted: {told}"
    );
    let before = alice.sync().await?;
    ensure!(
        before.iter().all(|f| frame_type(f) != "reaction"),
        "alice got no frame for bob's repeat: {before:?}"
    );

    let page = bob.history("lobby", json!({})).await?;
    ensure!(
        page["messages"][0]["reactions"]
            == json!([{"emoji": "👍", "count": 2, "users": ["bob", "alice"]}]),
        "history carries the counts: {page}"
    );

    bob.send_json(&reaction("unreact", &seq, "👍", "b3"))
        .await?;
    let removed = reacted(&mut bob, "b3").await?;
    ensure!(
        removed["added"] == false && removed["count"] == 1 && removed["users"] == json!(["alice"]),
        "{removed}"
    );
    let told = alice.expect_type("reaction").await?;
    ensure!(told["added"] == false && told["count"] == 1, "{told}");
    bob.send_json(&reaction("unreact", &seq, "👍", "b4"))
        .await?;
    ensure!(
        reacted(&mut bob, "b4").await?["duplicate"] == true,
        "removing an absent reaction changes nothing"
    );
    alice
        .send_json(&reaction("unreact", &seq, "👍", "a2"))
        .await?;
    reacted(&mut alice, "a2").await?;
    let page = bob.history("lobby", json!({})).await?;
    ensure!(
        page["messages"][0].get("reactions").is_none(),
        "no reactions, no field: {page}"
    );

    for (emoji, code) in [
        ("a b", "INVALID"),
        ("", "INVALID"),
        ("123456789", "INVALID"),
    ] {
        bob.send_json(&reaction("react", &seq, emoji, "bad"))
            .await?;
        bob.expect_error(code).await?;
    }
    bob.send_json(&reaction("react", &json!(999), "👍", "far"))
        .await?;
    bob.expect_error("NOT_FOUND").await?;
    alice
        .send_json(&json!({"action": "delete", "room": "lobby", "seq": seq}))
        .await?;
    bob.expect_type("deleted").await?;
    bob.send_json(&reaction("react", &seq, "👍", "gone"))
        .await?;
    bob.expect_error("NOT_FOUND").await?;
    Ok(())
}

/// A reply carries the original's sender and the start of its text, live and in history; an
/// original deleted later shows as deleted (no preview); an unknown seq is `NOT_FOUND` and
/// stores nothing.
pub async fn replies_show_the_original_as_it_is_now(d: &dyn Deployment) -> anyhow::Result<()> {
    let s = Scope::new(d, "reply");
    let (mut alice, _) = s.member("alice", "lobby").await?;
    let (mut bob, _) = s.member("bob", "lobby").await?;
    let long = "x".repeat(150);
    let original = alice.message("lobby", &s.id("q"), &long).await?;
    let seq = original["seq"].clone();
    bob.expect_message("lobby").await?;

    let id = s.id("r");
    bob.send_json(
        &json!({"action": "message", "room": "lobby", "id": id, "body": "yes", "reply_to": seq}),
    )
    .await?;
    let ack = bob.expect_ack(&id).await?;
    let preview = format!("{}…", "x".repeat(100));
    let live = alice.expect_message("lobby").await?;
    ensure!(
        live["seq"] == ack["seq"]
            && live["reply_to"] == json!({"seq": seq, "from": "alice", "preview": preview}),
        "the live reply carries the preview: {live}"
    );

    for bad in [json!(999), json!(0)] {
        let id = s.id("bad");
        bob.send_json(
            &json!({"action": "message", "room": "lobby", "id": id, "body": "?", "reply_to": bad}),
        )
        .await?;
        bob.expect_error("NOT_FOUND").await?;
    }

    alice
        .send_json(&json!({"action": "delete", "room": "lobby", "seq": seq}))
        .await?;
    bob.expect_type("deleted").await?;
    let page = bob.history("lobby", json!({})).await?;
    let messages = page["messages"].as_array().cloned().unwrap_or_default();
    ensure!(messages.len() == 2, "a refused reply is not stored: {page}");
    ensure!(
        messages[1]["reply_to"] == json!({"seq": seq, "from": "alice", "deleted": true}),
        "an original deleted later shows as deleted: {page}"
    );
    Ok(())
}
