//! Resuming with `join {since}`.

use anyhow::ensure;
use roomcast_core::limits::MAX_REPLAY;
use serde_json::json;

use super::history::page_seqs;
use super::{ensure_delivered, send_messages};
use crate::deployment::Deployment;
use crate::scope::{Scope, seqs};

/// A client that disconnects and comes back with `join {since: last seq seen}` gets exactly
/// the messages it missed, in order, then `replayed {through, more: false}`, then live
/// messages without repeats; resuming from the head replays nothing.
pub async fn resume_replays_exactly_the_missed_messages(d: &dyn Deployment) -> anyhow::Result<()> {
    let s = Scope::new(d, "resume");
    let (mut alice, _) = s.member("alice", "lobby").await?;
    let (mut bob, _) = s.member("bob", "lobby").await?;
    send_messages(&mut alice, &s, "lobby", "early", 2).await?;
    let mut last_seen = 0;
    for _ in 0..2 {
        last_seen = bob.expect_message("lobby").await?["seq"]
            .as_u64()
            .unwrap_or(0);
    }
    ensure!(last_seen == 2, "bob saw seqs 1 and 2 live");
    bob.close().await?;

    let missed = send_messages(&mut alice, &s, "lobby", "missed", 3).await?;
    let mut bob = s.connect("bob").await?;
    let (joined, replay, replayed) = bob.join_since("lobby", last_seen).await?;
    ensure!(joined["head"] == 5, "head after 5 messages: {joined}");
    ensure!(
        seqs(&replay) == [3, 4, 5],
        "exactly the missed messages, in order: {replay:?}"
    );
    for (i, (m, ack)) in replay.iter().zip(&missed).enumerate() {
        ensure_delivered(m, ack, "alice", &format!("missed {i}"))?;
    }
    ensure!(
        replayed["through"] == 5 && replayed["more"] == false,
        "replay complete: {replayed}"
    );

    let live = alice.message("lobby", &s.id("live"), "live").await?;
    let next = bob.expect_message("lobby").await?;
    ensure!(
        next["seq"] == live["seq"],
        "live delivery follows the replay without repeats: {next}"
    );

    let mut bob2 = s.connect("bob").await?;
    let (_, replay, replayed) = bob2.join_since("lobby", 6).await?;
    ensure!(
        replay.is_empty() && replayed["through"] == 6 && replayed["more"] == false,
        "resuming from head replays nothing: {replay:?} {replayed}"
    );
    Ok(())
}

/// Replay after `join {since}` is bounded: at most `MAX_REPLAY` messages, then
/// `replayed {more: true}`; the client pages the rest with `history {after: through}`.
pub async fn resume_replay_is_bounded_then_paged(d: &dyn Deployment) -> anyhow::Result<()> {
    let s = Scope::new(d, "replay_bound");
    let max = u64::from(MAX_REPLAY);
    let (mut alice, _) = s.member("alice", "lobby").await?;
    send_messages(&mut alice, &s, "lobby", "m", MAX_REPLAY as usize + 5).await?;
    let mut bob = s.connect("bob").await?;
    let (_, replay, replayed) = bob.join_since("lobby", 0).await?;
    ensure!(
        seqs(&replay) == (1..=max).collect::<Vec<_>>(),
        "the first {max} messages are replayed in order, got {:?}",
        seqs(&replay)
    );
    ensure!(
        replayed["through"] == max && replayed["more"] == true,
        "replayed says more remain: {replayed}"
    );
    let rest = bob.history("lobby", json!({"after": max})).await?;
    ensure!(
        page_seqs(&rest) == ((max + 1..=max + 5).collect::<Vec<_>>(), false),
        "history after `through` has the rest: {rest}"
    );
    Ok(())
}
