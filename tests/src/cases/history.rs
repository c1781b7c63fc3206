//! `history` paging.

use anyhow::ensure;
use serde_json::{Value, json};

use super::{ensure_delivered, send_messages};
use crate::deployment::Deployment;
use crate::scope::{Failures, Scope, seqs};

/// The seqs of a `history` page (or HTTP page) and its `more` flag.
pub(crate) fn page_seqs(page: &Value) -> (Vec<u64>, bool) {
    let messages = page["messages"].as_array().cloned().unwrap_or_default();
    (seqs(&messages), page["more"] == true)
}

/// `history` pages oldest-first: the newest page by default, `before`/`after` bounds
/// (exclusive), `limit` with `more` telling whether messages remain beyond the page; limits
/// outside 1..=100 are `INVALID`; a room not joined is `NOT_MEMBER`.
pub async fn history_pages_before_after_limit(d: &dyn Deployment) -> anyhow::Result<()> {
    let s = Scope::new(d, "history");
    let (mut alice, _) = s.member("alice", "lobby").await?;
    let empty = alice.history("lobby", json!({})).await?;
    ensure!(
        page_seqs(&empty) == (vec![], false),
        "an empty room: {empty}"
    );
    let acks = send_messages(&mut alice, &s, "lobby", "h", 7).await?;

    let full = alice.history("lobby", json!({})).await?;
    let messages = full["messages"].as_array().cloned().unwrap_or_default();
    ensure!(
        messages.len() == acks.len(),
        "default page holds all 7: {full}"
    );
    for (i, (m, ack)) in messages.iter().zip(&acks).enumerate() {
        ensure_delivered(m, ack, "alice", &format!("h {i}"))?;
    }

    let rows = [
        (json!({"limit": 3}), vec![5, 6, 7], true),
        (json!({"before": 5, "limit": 3}), vec![2, 3, 4], true),
        (json!({"before": 2, "limit": 3}), vec![1], false),
        (json!({"after": 4, "limit": 2}), vec![5, 6], true),
        (json!({"after": 6}), vec![7], false),
        (json!({"after": 2, "before": 6}), vec![3, 4, 5], false),
        (json!({"after": 7}), vec![], false),
    ];
    let mut f = Failures::default();
    for (params, want, more) in rows {
        let page = alice.history("lobby", params.clone()).await?;
        let got = page_seqs(&page);
        f.check(
            &params.to_string(),
            if got == (want.clone(), more) {
                Ok(())
            } else {
                Err(anyhow::anyhow!(
                    "expected seqs {want:?} more {more}, got {got:?}"
                ))
            },
        );
    }
    f.finish()?;
    for limit in [0, 101] {
        alice
            .send_json(&json!({"action": "history", "room": "lobby", "limit": limit}))
            .await?;
        alice.expect_error("INVALID").await?;
    }
    alice
        .send_json(&json!({"action": "history", "room": "elsewhere"}))
        .await?;
    alice.expect_error("NOT_MEMBER").await?;
    Ok(())
}
