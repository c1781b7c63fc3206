//! Presence across a user's devices.

use anyhow::ensure;
use serde_json::{Value, json};

use super::rooms::member_statuses;
use crate::client::{frame_type, u64_field};
use crate::deployment::Deployment;
use crate::scope::{SILENCE, Scope};

fn of_alice(f: &Value) -> bool {
    frame_type(f) == "presence" && f["user"] == "alice"
}

/// Presence is per user, not per connection: a chosen status reaches the room, closing one of
/// two devices changes nothing, closing the last one announces `offline` with `last_seen`, and
/// later joiners see the user offline with that `last_seen`.
pub async fn presence_aggregates_devices_with_last_seen(d: &dyn Deployment) -> anyhow::Result<()> {
    let s = Scope::new(d, "presence");
    let (mut bob, _) = s.member("bob", "lobby").await?;
    let (a1, _) = s.member("alice", "lobby").await?;
    let online = bob.expect("alice's presence", of_alice).await?;
    ensure!(
        online["status"] == "online",
        "joining announces online: {online}"
    );

    let (mut a2, _) = s.member("alice", "lobby").await?;
    a2.send_json(&json!({"action": "presence", "status": "away"}))
        .await?;
    let away = bob.expect("alice's presence", of_alice).await?;
    ensure!(
        away["status"] == "away",
        "a second device joining announces nothing; the chosen status is next: {away}"
    );

    a1.close().await?;
    bob.assert_none("`offline` while alice has a device left", SILENCE, |f| {
        of_alice(f) && f["status"] == "offline"
    })
    .await?;

    a2.close().await?;
    let offline = bob.expect("alice's presence", of_alice).await?;
    ensure!(
        offline["status"] == "offline",
        "the last device closing announces offline: {offline}"
    );
    let last_seen = u64_field(&offline, "last_seen")?;
    ensure!(
        last_seen >= u64_field(&away, "last_seen")?,
        "last_seen moves forward: away {away}, offline {offline}"
    );

    let (_, joined) = s.member("carol", "lobby").await?;
    let statuses = member_statuses(&joined)?;
    ensure!(
        statuses
            == [
                ("alice".to_owned(), "offline".to_owned()),
                ("bob".to_owned(), "online".to_owned()),
                ("carol".to_owned(), "online".to_owned()),
            ],
        "a later joiner sees alice offline: {joined}"
    );
    let alice = joined["members"]
        .as_array()
        .and_then(|m| m.iter().find(|m| m["user"] == "alice"))
        .cloned()
        .unwrap_or_default();
    ensure!(
        u64_field(&alice, "last_seen")? > 0,
        "alice's last_seen is kept: {joined}"
    );
    Ok(())
}

/// Choosing the status one has already is answered to the sender alone: the room hears the
/// change once, and next the status after it.
pub async fn repeated_presence_status_not_announced(d: &dyn Deployment) -> anyhow::Result<()> {
    let s = Scope::new(d, "presence_repeat");
    let (mut bob, _) = s.member("bob", "lobby").await?;
    let (mut alice, _) = s.member("alice", "lobby").await?;
    bob.expect("alice's arrival", of_alice).await?;
    for status in ["away", "away", "busy"] {
        alice
            .send_json(&json!({"action": "presence", "status": status}))
            .await?;
        let own = alice.expect("alice's own presence", of_alice).await?;
        ensure!(own["status"] == status, "answered to the sender: {own}");
    }
    let mut heard = Vec::new();
    while heard.last().is_none_or(|s: &String| s != "busy") {
        let f = bob.expect("alice's presence", of_alice).await?;
        heard.push(f["status"].as_str().unwrap_or_default().to_owned());
    }
    ensure!(
        heard == ["away", "busy"],
        "the room hears each change once: {heard:?}"
    );
    Ok(())
}
