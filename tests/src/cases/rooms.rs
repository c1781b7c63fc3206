//! Joining and leaving rooms.

use anyhow::{Context, ensure};
use roomcast_core::limits::MAX_ROOMS_PER_CONNECTION;
use serde_json::{Value, json};

use crate::client::{frame_type, u64_field};
use crate::deployment::Deployment;
use crate::scope::{Scope, message_seqs};

/// `(user, status)` of every member a `joined` frame lists, sorted; each must have a
/// `last_seen`.
pub(crate) fn member_statuses(joined: &Value) -> anyhow::Result<Vec<(String, String)>> {
    let members = joined["members"]
        .as_array()
        .with_context(|| format!("`joined` without a `members` array: {joined}"))?;
    let mut out = Vec::new();
    for m in members {
        u64_field(m, "last_seen")?;
        out.push((
            m["user"].as_str().unwrap_or_default().to_owned(),
            m["status"].as_str().unwrap_or_default().to_owned(),
        ));
    }
    out.sort();
    Ok(out)
}

fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
    list.iter()
        .map(|(u, s)| ((*u).to_owned(), (*s).to_owned()))
        .collect()
}

/// `joined` carries head, read cursor, unread and members with presence; joining announces the
/// user to the room; `*` suffix grants work as prefixes.
pub async fn join_reports_head_members_and_presence(d: &dyn Deployment) -> anyhow::Result<()> {
    let s = Scope::new(d, "join");
    let (mut alice, joined) = s.member("alice", "lobby").await?;
    ensure!(
        (
            joined["head"].clone(),
            joined["read_seq"].clone(),
            joined["unread"].clone()
        ) == (json!(0), json!(0), json!(0)),
        "a new room has head 0, read_seq 0, unread 0: {joined}"
    );
    ensure!(
        member_statuses(&joined)? == pairs(&[("alice", "online")]),
        "the joiner is listed online: {joined}"
    );
    let (_bob, joined) = s.member("bob", "lobby").await?;
    ensure!(
        member_statuses(&joined)? == pairs(&[("alice", "online"), ("bob", "online")]),
        "both members listed online: {joined}"
    );
    let presence = alice
        .expect("presence of bob", |f| {
            frame_type(f) == "presence" && f["user"] == "bob"
        })
        .await?;
    ensure!(
        presence["status"] == "online",
        "bob announced online: {presence}"
    );
    u64_field(&presence, "last_seen")?;

    alice.message("lobby", &s.id("m"), "hello").await?;
    let (_carol, joined) = s.member("carol", "lobby").await?;
    ensure!(
        (
            joined["head"].clone(),
            joined["read_seq"].clone(),
            joined["unread"].clone()
        ) == (json!(1), json!(0), json!(1)),
        "after one message a newcomer sees head 1, unread 1: {joined}"
    );

    let mut dave = s
        .connect_with("dave", &s.token("dave", &["support-*"]))
        .await?;
    dave.join("support-42")
        .await
        .context("a `support-*` grant covers `support-42`")?;
    Ok(())
}

/// After `leave` (answered with `left`) the connection gets nothing from the room and may not
/// act in it.
pub async fn leave_stops_delivery(d: &dyn Deployment) -> anyhow::Result<()> {
    let s = Scope::new(d, "leave");
    let (mut alice, _) = s.member("alice", "lobby").await?;
    let (mut bob, _) = s.member("bob", "lobby").await?;
    let (mut carol, _) = s.member("carol", "lobby").await?;
    bob.send_json(&json!({"action": "leave", "room": "lobby"}))
        .await?;
    let left = bob.expect_type("left").await?;
    ensure!(left["room"] == "lobby", "`left` names the room: {left}");

    let ack = alice.message("lobby", &s.id("m"), "after bob left").await?;
    let seen = carol.expect_message("lobby").await?;
    ensure!(
        seen["seq"] == ack["seq"],
        "carol, still a member, gets it: {seen}"
    );
    let before = bob.sync().await?;
    ensure!(
        message_seqs(&before).is_empty(),
        "bob left, yet got: {before:?}"
    );
    bob.send_json(&json!({"action": "message", "room": "lobby", "id": s.id("x"), "body": "hi"}))
        .await?;
    bob.expect_error("NOT_MEMBER").await?;
    Ok(())
}

/// A connection may join `MAX_ROOMS_PER_CONNECTION` rooms; one more is `LIMIT_EXCEEDED` until
/// it leaves one.
pub async fn join_limit_exceeded(d: &dyn Deployment) -> anyhow::Result<()> {
    let s = Scope::new(d, "join_limit");
    let mut c = s.connect("alice").await?;
    for i in 0..MAX_ROOMS_PER_CONNECTION {
        c.join(&format!("room-{i}")).await?;
    }
    c.send_json(&json!({"action": "join", "room": "one-too-many"}))
        .await?;
    c.expect_error("LIMIT_EXCEEDED").await?;
    c.send_json(&json!({"action": "leave", "room": "room-0"}))
        .await?;
    c.expect_type("left").await?;
    c.join("one-too-many")
        .await
        .context("a slot was freed by `leave`")?;
    Ok(())
}
