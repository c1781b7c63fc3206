//! Durability across a SIGKILL of the server.

use anyhow::{Context, ensure};
use serde_json::{Value, json};

use super::{ensure_delivered, send_messages};
use crate::deployment::Deployment;
use crate::scope::{Scope, seqs};

const BURST: usize = 20;

/// Every acknowledged message survives `kill -9` — including a burst acked just before the
/// kill — with its seq, id, body and ts; seqs continue gap-free; a resend of an old id is still
/// recognised; the read cursor does not move back.
pub async fn acked_messages_survive_restart(d: &dyn Deployment) -> anyhow::Result<()> {
    let s = Scope::new(d, "restart");
    let (mut alice, _) = s.member("alice", "lobby").await?;
    let mut expected: Vec<(Value, String)> = send_messages(&mut alice, &s, "lobby", "before", 3)
        .await?
        .into_iter()
        .enumerate()
        .map(|(i, ack)| (ack, format!("before {i}")))
        .collect();
    let ids: Vec<String> = (0..BURST).map(|_| s.id("burst")).collect();
    for (i, id) in ids.iter().enumerate() {
        alice
            .send_json(&json!({"action": "message", "room": "lobby", "id": id, "body": format!("burst {i}")}))
            .await?;
    }
    for (i, id) in ids.iter().enumerate() {
        expected.push((alice.expect_ack(id).await?, format!("burst {i}")));
    }
    alice
        .send_json(&json!({"action": "read", "room": "lobby", "seq": 2}))
        .await?;
    alice.sync().await?;

    d.restart().await.context("restarting the deployment")?;
    drop(alice);

    let total = expected.len() as u64;
    let mut alice = s
        .connect("alice")
        .await
        .context("reconnecting after the restart")?;
    let (joined, replay, replayed) = alice.join_since("lobby", 0).await?;
    ensure!(
        joined["head"] == total && joined["read_seq"] == 2,
        "head and read cursor survive: {joined}"
    );
    ensure!(
        seqs(&replay) == (1..=total).collect::<Vec<_>>() && replayed["more"] == false,
        "every acked message is replayed: {:?} then {replayed}",
        seqs(&replay)
    );
    for (m, (ack, body)) in replay.iter().zip(&expected) {
        ensure_delivered(m, ack, "alice", body)?;
    }
    let next = alice.message("lobby", &s.id("after"), "after").await?;
    ensure!(next["seq"] == total + 1, "seqs continue gap-free: {next}");
    let (old_ack, _) = &expected[BURST / 2];
    alice
        .send_json(
            &json!({"action": "message", "room": "lobby", "id": old_ack["id"], "body": "resent"}),
        )
        .await?;
    let dup = alice
        .expect_ack(old_ack["id"].as_str().unwrap_or_default())
        .await?;
    ensure!(
        dup["seq"] == old_ack["seq"] && dup["duplicate"] == true,
        "the idempotency key survives: original {old_ack}, resend {dup}"
    );
    Ok(())
}
