//! The support desk: a visitor's message opens a conversation, agents see it in the inbox, one
//! agent takes it, and closes it.

use anyhow::ensure;
use roomcast_core::auth::{Claims, Role};
use roomcast_core::protocol::SYSTEM_SENDER;
use serde_json::{Value, json};

use crate::client::{Client, frame_type};
use crate::deployment::Deployment;
use crate::scope::Scope;

/// The next system message (a conversation change) in `room`, checked for `status`.
async fn expect_status_message(c: &mut Client, room: &str, status: &str) -> anyhow::Result<Value> {
    let m = c
        .expect(&format!("a `{status}` system message in {room}"), |f| {
            frame_type(f) == "message" && f["room"] == room && f["from"] == SYSTEM_SENDER
        })
        .await?;
    ensure!(
        m["meta"]["kind"] == "status" && m["meta"]["status"] == status,
        "a {status} status change: {m}"
    );
    Ok(m)
}

/// Sends `assign`/`close` for `room` with a ref; returns the `status` reply or the `error`.
async fn desk(c: &mut Client, action: &str, room: &str) -> anyhow::Result<Value> {
    c.send_json(&json!({"action": action, "room": room, "ref": action}))
        .await?;
    c.expect(&format!("the answer to `{action}`"), |f| {
        matches!(frame_type(f), "status" | "error") && f["ref"] == action
    })
    .await
}

/// Waiting → assigned → closed, each change stored in the room and listed in the inbox; a
/// second agent cannot take an assigned conversation and visitors cannot act as agents. Each
/// connection is opened for the room it uses (the edge build binds it to that room, and the
/// inbox is another Durable Object there).
pub async fn support_conversation_through_the_inbox(d: &dyn Deployment) -> anyhow::Result<()> {
    let s = Scope::new(d, "desk");
    let room = "support-visit";
    let agent_token = |user: &str| {
        d.sign(&Claims {
            role: Role::Agent,
            ..s.claims(user, &["inbox", "support-*"])
        })
    };
    let mut inbox = s.connect_in("inbox", "ann", &agent_token("ann")).await?;
    inbox.join("inbox").await?;
    let mut visitor = s.connect_in(room, "vic", &s.token("vic", &[room])).await?;
    visitor.join(room).await?;

    let ack = visitor.message(room, &s.id("hello"), "hello?").await?;
    let opened = expect_status_message(&mut visitor, room, "waiting").await?;
    ensure!(
        opened["seq"].as_u64() == ack["seq"].as_u64().map(|s| s + 1),
        "the opening follows the first message: {ack} {opened}"
    );
    let listed = expect_status_message(&mut inbox, "inbox", "waiting").await?;
    ensure!(
        listed["meta"]["room"] == room,
        "the inbox names the room: {listed}"
    );

    let mut ann = s.connect_in(room, "ann", &agent_token("ann")).await?;
    let joined = ann.join(room).await?;
    ensure!(
        joined["conversation"]["status"] == "waiting",
        "joined shows the conversation: {joined}"
    );
    let taken = desk(&mut ann, "assign", room).await?;
    ensure!(
        frame_type(&taken) == "status" && taken["status"] == "assigned" && taken["agent"] == "ann",
        "ann takes it: {taken}"
    );
    let assigned = expect_status_message(&mut visitor, room, "assigned").await?;
    ensure!(
        Some(assigned["seq"].as_u64()) == Some(taken["seq"].as_u64()),
        "the reply names the stored change: {taken} {assigned}"
    );
    expect_status_message(&mut inbox, "inbox", "assigned").await?;

    let mut bo = s.connect_in(room, "bo", &agent_token("bo")).await?;
    let refused = desk(&mut bo, "assign", room).await?;
    ensure!(
        refused["code"] == "CONFLICT",
        "a taken conversation: {refused}"
    );
    let refused = desk(&mut visitor, "close", room).await?;
    ensure!(
        refused["code"] == "FORBIDDEN",
        "visitors are not agents: {refused}"
    );

    let closed = desk(&mut ann, "close", room).await?;
    ensure!(closed["status"] == "closed", "ann closes it: {closed}");
    expect_status_message(&mut visitor, room, "closed").await?;
    expect_status_message(&mut inbox, "inbox", "closed").await?;
    Ok(())
}
