//! Tenant isolation.

use anyhow::ensure;
use serde_json::json;

use super::rooms::member_statuses;
use crate::deployment::Deployment;
use crate::scope::Scope;

/// Two tenants with the same room and user names share nothing: not messages, not presence,
/// not members, not seqs, not history.
pub async fn tenants_are_isolated(d: &dyn Deployment) -> anyhow::Result<()> {
    let a = Scope::new(d, "tenant_a");
    let b = Scope::new(d, "tenant_b");
    let (mut b_alice, _) = b.member("alice", "lobby").await?;
    let (mut a_alice, _) = a.member("alice", "lobby").await?;
    let (mut a_bob, joined) = a.member("bob", "lobby").await?;
    let names: Vec<String> = member_statuses(&joined)?
        .into_iter()
        .map(|(u, _)| u)
        .collect();
    ensure!(
        names == ["alice", "bob"],
        "tenant a lists only its own members: {joined}"
    );

    let a_ack = a_alice.message("lobby", &a.id("m"), "for tenant a").await?;
    let seen = a_bob.expect_message("lobby").await?;
    ensure!(
        seen["seq"] == a_ack["seq"],
        "tenant a delivers to its member: {seen}"
    );
    let b_ack = b_alice.message("lobby", &b.id("m"), "for tenant b").await?;
    ensure!(
        a_ack["seq"] == 1 && b_ack["seq"] == 1,
        "each tenant's room has its own seqs: a {a_ack}, b {b_ack}"
    );
    let leaked = b_alice.sync().await?;
    ensure!(
        leaked.is_empty(),
        "tenant b got frames caused by tenant a (message or presence): {leaked:?}"
    );

    let b_page = b_alice.history("lobby", json!({})).await?;
    let a_page = a_bob.history("lobby", json!({})).await?;
    ensure!(
        b_page["messages"].as_array().map(Vec::len) == Some(1)
            && b_page["messages"][0]["body"] == "for tenant b",
        "tenant b's history: {b_page}"
    );
    ensure!(
        a_page["messages"].as_array().map(Vec::len) == Some(1)
            && a_page["messages"][0]["body"] == "for tenant a",
        "tenant a's history: {a_page}"
    );
    Ok(())
}
