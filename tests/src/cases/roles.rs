//! Who wrote a message (issue 17, bots): every stored message names its author's role, so a
//! client can show an agent's or a bot's message as such, and a bot can answer only visitors.

use std::collections::BTreeMap;

use anyhow::{Context, ensure};
use roomcast_core::auth::{Claims, Role};
use roomcast_core::protocol::SYSTEM_SENDER;
use serde_json::{Value, json};

use crate::cases::http_api::ensure_status;
use crate::client::frame_type;
use crate::deployment::Deployment;
use crate::http::Request;
use crate::scope::Scope;

/// The roles this case's authors must carry: a visitor, the desk's line opening the
/// conversation, an agent, and a bot published over HTTP.
fn expected_roles() -> BTreeMap<String, String> {
    [
        ("vic", "user"),
        (SYSTEM_SENDER, "service"),
        ("ann", "agent"),
        ("helpbot", "service"),
    ]
    .into_iter()
    .map(|(from, role)| (from.to_owned(), role.to_owned()))
    .collect()
}

/// `from` → `role` of the messages among `frames`, checking each author appears once.
fn roles_of<'f>(
    frames: impl IntoIterator<Item = &'f Value>,
) -> anyhow::Result<BTreeMap<String, String>> {
    let mut roles = BTreeMap::new();
    for m in frames {
        let from = m["from"].as_str().context("a message without `from`")?;
        let role = m["role"].as_str().unwrap_or("(absent)");
        ensure!(
            roles.insert(from.to_owned(), role.to_owned()).is_none(),
            "{from} wrote once: {m}"
        );
    }
    Ok(roles)
}

/// A visitor's (`user`), an agent's (`agent`) and a bot's (an HTTP publish, `service`) messages
/// in a support room, with the desk's `$system` line (`service`), carry their author's role
/// live, in `history`, in the HTTP history and in a `join {since}` replay.
pub async fn messages_carry_their_authors_role(d: &dyn Deployment) -> anyhow::Result<()> {
    let s = Scope::new(d, "roles");
    let base = d
        .http_url()
        .context("the deployment reports http_api but gives no http_url")?;
    let room = "support-roles";
    let (mut watcher, _) = s.member("watcher", room).await?;
    let (mut visitor, _) = s.member("vic", room).await?;
    let agent_token = d.sign(&Claims {
        role: Role::Agent,
        ..s.claims("ann", &["support-*"])
    });
    let mut agent = s.connect_in(room, "ann", &agent_token).await?;
    agent.join(room).await?;

    visitor
        .message(room, &s.id("vic"), "where is my order?")
        .await?;
    agent.message(room, &s.id("ann"), "ann here").await?;
    let published = Request::new("POST", &format!("/rooms/{room}/messages"))
        .bearer(&s.service_token("backend"))
        .json(&json!({"id": s.id("bot"), "body": "it ships today", "from": "helpbot"}))
        .send(&base)
        .await?;
    ensure_status(&published, 201, "the bot's publish")?;

    let expected = expected_roles();
    let mut live = Vec::new();
    while live.len() < expected.len() {
        live.push(watcher.expect_message(room).await?);
    }
    ensure!(roles_of(&live)? == expected, "live: {live:?}");

    let page = watcher.history(room, json!({})).await?;
    let stored = page["messages"].as_array().context("history.messages")?;
    ensure!(roles_of(stored)? == expected, "history: {page}");

    let r = Request::new("GET", &format!("/rooms/{room}/messages"))
        .bearer(&s.token("watcher", &[room]))
        .send(&base)
        .await?;
    ensure_status(&r, 200, "HTTP history")?;
    let body = r.json()?;
    let stored = body["messages"].as_array().context("messages")?;
    ensure!(roles_of(stored)? == expected, "HTTP history: {body}");

    let mut late = s
        .connect_in(room, "watcher", &s.token("watcher", &[room]))
        .await?;
    let (_, replayed, _) = late.join_since(room, 0).await?;
    ensure!(
        replayed.iter().all(|f| frame_type(f) == "message"),
        "{replayed:?}"
    );
    ensure!(roles_of(&replayed)? == expected, "replay: {replayed:?}");
    Ok(())
}
