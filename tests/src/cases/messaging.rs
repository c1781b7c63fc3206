//! Messages, idempotent resend, edit/delete, typing, read cursors, ping.

use anyhow::ensure;
use serde_json::{Value, json};

use super::{ensure_delivered, send_messages};
use crate::client::{frame_type, u64_field};
use crate::deployment::Deployment;
use crate::scope::{Scope, message_seqs, now_ms, seqs};

/// The sender gets `ack {id, room, seq, ts}`; every other connection in the room (the sender's
/// other device included) gets the `message` with the same seq, ts and meta; the sending
/// connection does not get its own message back.
pub async fn message_acked_then_delivered_to_others_and_own_devices(
    d: &dyn Deployment,
) -> anyhow::Result<()> {
    let s = Scope::new(d, "deliver");
    let (mut a1, _) = s.member("alice", "lobby").await?;
    let (mut a2, _) = s.member("alice", "lobby").await?;
    let (mut bob, _) = s.member("bob", "lobby").await?;
    let id = s.id("hello");
    a1.send_json(
        &json!({"action": "message", "room": "lobby", "id": id, "body": "hello", "meta": {"k": 1}}),
    )
    .await?;
    let ack = a1.expect_ack(&id).await?;
    ensure!(
        ack["room"] == "lobby"
            && ack["seq"] == 1
            && ack.get("duplicate").is_none_or(|v| *v == false),
        "first message of a room: seq 1, not a duplicate: {ack}"
    );
    u64_field(&ack, "ts")?;
    for rx in [&mut a2, &mut bob] {
        let m = rx.expect_message("lobby").await?;
        ensure_delivered(&m, &ack, "alice", "hello")?;
        ensure!(
            m["meta"] == json!({"k": 1}),
            "{}: meta delivered as sent: {m}",
            rx.label()
        );
    }
    let reply = bob.message("lobby", &s.id("reply"), "hi alice").await?;
    ensure!(reply["seq"] == 2, "seqs are gap-free: {reply}");
    let first_seen = a1.expect_message("lobby").await?;
    ensure!(
        first_seen["seq"] == reply["seq"],
        "the sending connection must not get its own message back; its first message was {first_seen}"
    );
    Ok(())
}

/// Resending an id returns the original seq with `duplicate: true`, stores nothing and
/// delivers nothing new; the next message takes the next seq.
pub async fn resend_same_id_returns_original_seq(d: &dyn Deployment) -> anyhow::Result<()> {
    let s = Scope::new(d, "resend");
    let (mut alice, _) = s.member("alice", "lobby").await?;
    let (mut bob, _) = s.member("bob", "lobby").await?;
    let x = s.id("x");
    let first = alice.message("lobby", &x, "first").await?;
    let second = alice.message("lobby", &s.id("y"), "second").await?;
    alice
        .send_json(&json!({"action": "message", "room": "lobby", "id": x, "body": "first, resent"}))
        .await?;
    let dup = alice.expect_ack(&x).await?;
    ensure!(
        dup["seq"] == first["seq"] && dup["duplicate"] == true && dup["ts"] == first["ts"],
        "a resend returns the original seq and ts with duplicate: true; first {first}, resend {dup}"
    );
    let third = alice.message("lobby", &s.id("z"), "third").await?;
    ensure!(
        u64_field(&third, "seq")? == u64_field(&second, "seq")? + 1,
        "a duplicate takes no seq: second {second}, third {third}"
    );
    let (before, _) = bob
        .take_until("the third message", |f| {
            frame_type(f) == "message" && f["seq"] == third["seq"]
        })
        .await?;
    ensure!(
        message_seqs(&before) == [1, 2],
        "bob gets each message once, the resend not at all: {before:?}"
    );
    let page = alice.history("lobby", json!({})).await?;
    let messages = page["messages"].as_array().cloned().unwrap_or_default();
    ensure!(
        seqs(&messages) == [1, 2, 3] && messages[0]["body"] == "first",
        "history holds one copy with the original body: {page}"
    );
    Ok(())
}

fn edit(seq: &Value, body: &str) -> Value {
    json!({"action": "edit", "room": "lobby", "seq": seq, "body": body})
}

fn delete(seq: &Value) -> Value {
    json!({"action": "delete", "room": "lobby", "seq": seq})
}

/// Only the author edits or deletes (others: `FORBIDDEN`); everyone in the room (author
/// included) gets `edited`/`deleted`; a deleted message stays as a tombstone so seqs stay
/// gap-free; acting on a deleted or unknown seq is `NOT_FOUND`.
pub async fn edit_and_delete_author_only(d: &dyn Deployment) -> anyhow::Result<()> {
    let s = Scope::new(d, "edit");
    let (mut alice, _) = s.member("alice", "lobby").await?;
    let (mut bob, _) = s.member("bob", "lobby").await?;
    let ack = alice.message("lobby", &s.id("m"), "tpyo").await?;
    let seq = ack["seq"].clone();
    bob.expect_message("lobby").await?;
    for frame in [edit(&seq, "hijacked"), delete(&seq)] {
        bob.send_json(&frame).await?;
        bob.expect_error("FORBIDDEN").await?;
    }

    alice.send_json(&edit(&seq, "typo")).await?;
    for rx in [&mut alice, &mut bob] {
        let e = rx.expect_type("edited").await?;
        ensure!(
            e["room"] == "lobby" && e["seq"] == seq && e["body"] == "typo" && e["by"] == "alice",
            "{}: edited frame: {e}",
            rx.label()
        );
        u64_field(&e, "edited_ts")?;
    }
    let page = bob.history("lobby", json!({})).await?;
    let stored = &page["messages"][0];
    ensure!(
        stored["body"] == "typo" && stored["edited_ts"].is_u64(),
        "history has the edit: {page}"
    );

    alice.send_json(&delete(&seq)).await?;
    for rx in [&mut alice, &mut bob] {
        let del = rx.expect_type("deleted").await?;
        ensure!(
            del["room"] == "lobby" && del["seq"] == seq && del["by"] == "alice",
            "{}: deleted frame: {del}",
            rx.label()
        );
    }
    let page = bob.history("lobby", json!({})).await?;
    let stored = &page["messages"][0];
    ensure!(
        stored["seq"] == seq && stored["deleted"] == true && stored["body"].is_null(),
        "a deleted message is a tombstone without body: {page}"
    );
    for frame in [
        edit(&seq, "again"),
        delete(&seq),
        edit(&json!(999), "nothing there"),
    ] {
        alice.send_json(&frame).await?;
        alice.expect_error("NOT_FOUND").await?;
    }
    let next = alice.message("lobby", &s.id("n"), "next").await?;
    ensure!(next["seq"] == 2, "the tombstone keeps its seq: {next}");
    Ok(())
}

/// `typing` reaches the other members with a ttl and is never stored.
pub async fn typing_is_delivered_not_stored(d: &dyn Deployment) -> anyhow::Result<()> {
    let s = Scope::new(d, "typing");
    let (mut alice, _) = s.member("alice", "lobby").await?;
    let (mut bob, _) = s.member("bob", "lobby").await?;
    for state in ["start", "stop"] {
        alice
            .send_json(&json!({"action": "typing", "room": "lobby", "state": state}))
            .await?;
        let t = bob.expect_type("typing").await?;
        ensure!(
            t["room"] == "lobby" && t["user"] == "alice" && t["state"] == state,
            "typing {state}: {t}"
        );
        let ttl = u64_field(&t, "ttl_ms")?;
        ensure!(
            state == "stop" || ttl > 0,
            "a `start` holds for a stated time: {t}"
        );
    }
    let (_carol, joined) = s.member("carol", "lobby").await?;
    ensure!(joined["head"] == 0, "typing stores nothing: {joined}");
    let page = bob.history("lobby", json!({})).await?;
    ensure!(
        page["messages"] == json!([]),
        "typing stores nothing: {page}"
    );
    let ack = alice.message("lobby", &s.id("m"), "done typing").await?;
    ensure!(ack["seq"] == 1, "typing takes no seq: {ack}");
    Ok(())
}

/// `read` moves the user's cursor forward only (never back, never past head), tells the room,
/// and shows in `joined` as `read_seq`/`unread` on every device of the user.
pub async fn read_cursor_moves_forward_only(d: &dyn Deployment) -> anyhow::Result<()> {
    let s = Scope::new(d, "read");
    let (mut alice, _) = s.member("alice", "lobby").await?;
    let (mut bob, _) = s.member("bob", "lobby").await?;
    send_messages(&mut alice, &s, "lobby", "m", 3).await?;
    let read = |seq: u64| json!({"action": "read", "room": "lobby", "seq": seq});
    let reads_of_bob = |f: &Value| frame_type(f) == "read" && f["user"] == "bob";

    bob.send_json(&read(2)).await?;
    let r = alice.expect("bob's read", reads_of_bob).await?;
    ensure!(r["room"] == "lobby" && r["seq"] == 2, "read frame: {r}");
    let (_, joined) = s.member("bob", "lobby").await?;
    ensure!(
        joined["read_seq"] == 2 && joined["unread"] == 1,
        "another device of bob sees the cursor: {joined}"
    );

    bob.send_json(&read(1)).await?;
    bob.send_json(&read(3)).await?;
    let r = alice.expect("bob's read", reads_of_bob).await?;
    ensure!(
        r["seq"] == 3,
        "moving back is ignored, so the next read seen is 3: {r}"
    );
    bob.send_json(&read(99)).await?;
    bob.sync().await?;
    let (_, joined) = s.member("bob", "lobby").await?;
    ensure!(
        joined["head"] == 3 && joined["read_seq"] == 3 && joined["unread"] == 0,
        "the cursor never passes head: {joined}"
    );
    Ok(())
}

/// `ping` is answered with `pong {ts}` (server time, epoch ms), before any join.
pub async fn ping_answered_with_pong(d: &dyn Deployment) -> anyhow::Result<()> {
    let s = Scope::new(d, "ping");
    let mut c = s.connect("alice").await?;
    let pong = c.ping().await?;
    let ts = u64_field(&pong, "ts")?;
    ensure!(
        ts.abs_diff(now_ms()) < 10 * 60 * 1000,
        "pong ts {ts} is not epoch milliseconds near now ({})",
        now_ms()
    );
    Ok(())
}
