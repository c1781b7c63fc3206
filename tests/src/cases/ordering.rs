//! Sequencing under concurrent senders.

use anyhow::{Context, ensure};
use serde_json::{Value, json};

use super::ensure_delivered;
use crate::client::frame_type;
use crate::deployment::Deployment;
use crate::scope::{Scope, message_seqs, seqs};

const SENDERS: usize = 4;
const PER_SENDER: usize = 25;

/// Several connections send at once (each waiting for its acks, as an ordering client does):
/// the acks take exactly the seqs 1..=N, each sender's in its sending order; a receiver gets
/// every message exactly once; history agrees.
pub async fn concurrent_senders_gap_free_exactly_once(d: &dyn Deployment) -> anyhow::Result<()> {
    let s = Scope::new(d, "concurrent");
    let total = SENDERS * PER_SENDER;
    let (mut rx, _) = s.member("receiver", "lobby").await?;
    let mut tasks = Vec::new();
    for i in 0..SENDERS {
        let user = format!("sender{i}");
        let (mut c, _) = s.member(&user, "lobby").await?;
        let ids: Vec<String> = (0..PER_SENDER).map(|_| s.id(&user)).collect();
        tasks.push(tokio::spawn(async move {
            let mut acks = Vec::new();
            for (n, id) in ids.iter().enumerate() {
                acks.push(c.message("lobby", id, &format!("{user} {n}")).await?);
            }
            anyhow::Ok((c, user, acks))
        }));
    }
    let mut senders = Vec::new();
    let mut acks: Vec<(String, usize, Value)> = Vec::new();
    for task in tasks {
        let (c, user, sent) = task.await.context("sender task panicked")??;
        let order = seqs(&sent);
        ensure!(
            order.windows(2).all(|w| w[0] < w[1]),
            "{user}'s messages got seqs in sending order: {order:?}"
        );
        acks.extend(
            sent.into_iter()
                .enumerate()
                .map(|(n, ack)| (user.clone(), n, ack)),
        );
        senders.push(c);
    }
    acks.sort_by_key(|(_, _, ack)| ack["seq"].as_u64());
    let acked: Vec<u64> = acks
        .iter()
        .filter_map(|(_, _, a)| a["seq"].as_u64())
        .collect();
    ensure!(
        acked == (1..=total as u64).collect::<Vec<_>>(),
        "acks must take exactly 1..={total}: {acked:?}"
    );

    let mut received = Vec::new();
    while received.len() < total {
        received.push(rx.expect_message("lobby").await?);
    }
    received.sort_by_key(|m| m["seq"].as_u64());
    ensure!(
        seqs(&received) == acked,
        "the receiver gets each seq exactly once: {:?}",
        seqs(&received)
    );
    for (m, (user, n, ack)) in received.iter().zip(&acks) {
        ensure_delivered(m, ack, user, &format!("{user} {n}"))?;
    }
    if let Some(last_sender) = senders.first_mut() {
        let fence = last_sender
            .message("lobby", &s.id("fence"), "fence")
            .await?;
        let (extra, _) = rx
            .take_until("the fence message", |f| {
                frame_type(f) == "message" && f["seq"] == fence["seq"]
            })
            .await?;
        ensure!(
            message_seqs(&extra).is_empty(),
            "no message delivered twice: {extra:?}"
        );
    }
    let page = rx
        .history("lobby", json!({"after": 0, "limit": total}))
        .await?;
    let stored = page["messages"].as_array().cloned().unwrap_or_default();
    ensure!(
        seqs(&stored) == acked,
        "history holds 1..={total} in order: {page}"
    );
    for (m, (user, n, ack)) in stored.iter().zip(&acks) {
        ensure_delivered(m, ack, user, &format!("{user} {n}"))?;
    }
    Ok(())
}
