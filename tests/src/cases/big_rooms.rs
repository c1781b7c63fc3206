//! Big rooms (protocol.md §17): above the presence threshold a room announces its occupancy
//! instead of each member's presence, and `members` pages who is there. The suite's deployments
//! run with [`PRESENCE_MAX_CONNECTIONS`] so a handful of connections make a big room.

use anyhow::{Context, ensure};
use serde_json::{Value, json};

use crate::client::{Client, frame_type, u64_field};
use crate::deployment::{Deployment, PRESENCE_MAX_CONNECTIONS};
use crate::scope::{SILENCE, Scope};

fn occupancy_of(f: &Value, connections: usize) -> bool {
    frame_type(f) == "occupancy" && f["connections"].as_u64() == u64::try_from(connections).ok()
}

fn presence_of(f: &Value, user: &str) -> bool {
    frame_type(f) == "presence" && f["user"] == user
}

/// Every user `members` lists in `room` with their status, paging `limit` at a time from
/// `client`.
async fn list_members(
    client: &mut Client,
    room: &str,
    limit: u64,
) -> anyhow::Result<Vec<(String, String)>> {
    let mut users = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let mut request = json!({"action": "members", "room": room, "limit": limit, "ref": "m"});
        if let Some(c) = &cursor {
            request["cursor"] = json!(c);
        }
        client.send_json(&request).await?;
        let page = client.expect_type("members").await?;
        let listed = page["members"].as_array().context("members")?;
        ensure!(
            listed.len() <= usize::try_from(limit)? && page["ref"] == "m",
            "a page holds at most `limit` members and echoes the ref: {page}"
        );
        for m in listed {
            let field = |name| m[name].as_str().context(name).map(str::to_owned);
            users.push((field("user")?, field("status")?));
        }
        match page["next"].as_str() {
            Some(next) => cursor = Some(next.to_owned()),
            None => return Ok(users),
        }
    }
}

/// Joining a room over the threshold answers `joined` with `occupancy` and no members; the
/// room's connections hear `occupancy` (the latest count, coalesced) and no individual
/// presence, arrivals, status changes or departures; `members` pages every connected user once,
/// in id order; bad pages get `INVALID`.
pub async fn big_room_announces_occupancy_not_presence(d: &dyn Deployment) -> anyhow::Result<()> {
    let max: usize = PRESENCE_MAX_CONNECTIONS.parse()?;
    let s = Scope::new(d, "big_room");
    let room = "hall";
    let (mut first, _) = s.member("u00", room).await?;
    let mut others = Vec::new();
    for i in 1..max {
        others.push(s.member(&format!("u{i:02}"), room).await?.0);
    }
    first
        .expect("the last arrival within the threshold", |f| {
            presence_of(f, &format!("u{:02}", max - 1))
        })
        .await?;
    // One over: the room is big.
    let over = format!("u{max:02}");
    let (mut newcomer, joined) = s.member(&over, room).await?;
    ensure!(
        u64_field(&joined, "occupancy")? == u64::try_from(max + 1)?
            && joined["members"].as_array().is_some_and(Vec::is_empty),
        "a big room's `joined` carries the count, not the members: {joined}"
    );
    first
        .expect("occupancy over the threshold", |f| occupancy_of(f, max + 1))
        .await?;
    let last = format!("u{:02}", max + 1);
    let (late, _) = s.member(&last, room).await?;
    for client in [&mut first, &mut newcomer] {
        client
            .expect("the coalesced occupancy", |f| occupancy_of(f, max + 2))
            .await?;
    }
    newcomer
        .send_json(&json!({"action": "presence", "status": "away"}))
        .await?;
    let own = newcomer
        .expect("the sender's own status", |f| presence_of(f, &over))
        .await?;
    ensure!(own["status"] == "away", "confirmed to the sender: {own}");

    let expected: Vec<(String, String)> = (0..=max + 1)
        .map(|i| format!("u{i:02}"))
        .map(|user| {
            let status = if user == over { "away" } else { "online" };
            (user, status.to_owned())
        })
        .collect();
    let listed = list_members(&mut first, room, 3).await?;
    ensure!(
        listed == expected,
        "members pages list each connected user once, in order, with their status: {listed:?}"
    );

    late.close().await?;
    first
        .expect("occupancy after a departure", |f| occupancy_of(f, max + 1))
        .await?;
    first
        .assert_none("individual presence in a big room", SILENCE, |f| {
            presence_of(f, &over) || presence_of(f, &last)
        })
        .await?;

    first
        .send_json(&json!({"action": "members", "room": room, "limit": 0}))
        .await?;
    first.expect_error("INVALID").await?;
    first
        .send_json(&json!({"action": "members", "room": "elsewhere"}))
        .await?;
    first.expect_error("NOT_MEMBER").await?;
    drop(others);
    Ok(())
}
