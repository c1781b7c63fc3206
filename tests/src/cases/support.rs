//! The support desk (docs/protocol.md §15): a visitor's message opens a conversation, agents
//! see it in the inbox, one agent takes it, and closes it; routing to agents under capacity,
//! transfer and unassign, the conversation list, identify, rating, moderation, blocks, and
//! embedding with a publishable key (issue 19; the same behaviours as `shared/tests/desk.rs`,
//! over real sockets).
//!
//! Every connection is opened for the room it uses ([`Scope::connect_in`]): the edge build
//! binds a connection to the room in its URL, and an agent's console is its connection in
//! `inbox` (an agent with none is offline).

use anyhow::{Context, bail, ensure};
use roomcast_core::auth::{Claims, Role};
use roomcast_core::protocol::SYSTEM_SENDER;
use serde_json::{Value, json};

use std::time::Duration;

use tokio::time::Instant;

use crate::client::{Client, ConnectError, Credentials, frame_type, wait_timeout};
use crate::deployment::{Deployment, EMBED_KEY, EMBED_ORIGIN, EMBED_TENANT};
use crate::http::Request;
use crate::scope::{Scope, claims, unique};

/// The next system message (a conversation change) in `room`, checked for `status`.
async fn expect_status_message(c: &mut Client, room: &str, status: &str) -> anyhow::Result<Value> {
    let m = c
        .expect(&format!("a `{status}` system message in {room}"), |f| {
            frame_type(f) == "message" && f["room"] == room && f["from"] == SYSTEM_SENDER
        })
        .await?;
    ensure!(
        m["meta"]["kind"] == "status" && m["meta"]["status"] == status,
        "a {status} status change: {m}"
    );
    Ok(m)
}

/// Sends `assign`/`close` for `room` with a ref; returns the `status` reply or the `error`.
async fn desk(c: &mut Client, action: &str, room: &str) -> anyhow::Result<Value> {
    c.send_json(&json!({"action": action, "room": room, "ref": action}))
        .await?;
    c.expect(&format!("the answer to `{action}`"), |f| {
        matches!(frame_type(f), "status" | "error") && f["ref"] == action
    })
    .await
}

/// Waiting → assigned → closed, each change stored in the room and listed in the inbox; a
/// second agent cannot take an assigned conversation and visitors cannot act as agents. Each
/// connection is opened for the room it uses (the edge build binds it to that room, and the
/// inbox is another Durable Object there).
pub async fn support_conversation_through_the_inbox(d: &dyn Deployment) -> anyhow::Result<()> {
    let s = Scope::new(d, "desk");
    let room = "support-visit";
    let agent_token = |user: &str| {
        d.sign(&Claims {
            role: Role::Agent,
            ..s.claims(user, &["inbox", "support-*"])
        })
    };
    let mut inbox = s.connect_in("inbox", "ann", &agent_token("ann")).await?;
    inbox.join("inbox").await?;
    let mut visitor = s.connect_in(room, "vic", &s.token("vic", &[room])).await?;
    visitor.join(room).await?;

    let ack = visitor.message(room, &s.id("hello"), "hello?").await?;
    let opened = expect_status_message(&mut visitor, room, "waiting").await?;
    ensure!(
        opened["seq"].as_u64() == ack["seq"].as_u64().map(|s| s + 1),
        "the opening follows the first message: {ack} {opened}"
    );
    let listed = expect_status_message(&mut inbox, "inbox", "waiting").await?;
    ensure!(
        listed["meta"]["room"] == room,
        "the inbox names the room: {listed}"
    );

    let mut ann = s.connect_in(room, "ann", &agent_token("ann")).await?;
    let joined = ann.join(room).await?;
    ensure!(
        joined["conversation"]["status"] == "waiting",
        "joined shows the conversation: {joined}"
    );
    let taken = desk(&mut ann, "assign", room).await?;
    ensure!(
        frame_type(&taken) == "status" && taken["status"] == "assigned" && taken["agent"] == "ann",
        "ann takes it: {taken}"
    );
    let assigned = expect_status_message(&mut visitor, room, "assigned").await?;
    ensure!(
        Some(assigned["seq"].as_u64()) == Some(taken["seq"].as_u64()),
        "the reply names the stored change: {taken} {assigned}"
    );
    expect_status_message(&mut inbox, "inbox", "assigned").await?;

    let mut bo = s.connect_in(room, "bo", &agent_token("bo")).await?;
    let refused = desk(&mut bo, "assign", room).await?;
    ensure!(
        refused["code"] == "CONFLICT",
        "a taken conversation: {refused}"
    );
    let refused = desk(&mut visitor, "close", room).await?;
    ensure!(
        refused["code"] == "FORBIDDEN",
        "visitors are not agents: {refused}"
    );

    let closed = desk(&mut ann, "close", room).await?;
    ensure!(closed["status"] == "closed", "ann closes it: {closed}");
    expect_status_message(&mut visitor, room, "closed").await?;
    expect_status_message(&mut inbox, "inbox", "closed").await?;
    Ok(())
}

/// A token of `user` with role `agent`, granting the inbox and every support room.
fn agent_token(s: &Scope<'_>, user: &str) -> String {
    s.d.sign(&Claims {
        role: Role::Agent,
        ..s.claims(user, &["inbox", "support-*"])
    })
}

/// Sends `frame` with the ref `tag`; returns the reply carrying it (an `error` included), or
/// the `ack` of a rating (the answer to `rate`).
async fn ask(c: &mut Client, tag: &str, mut frame: Value) -> anyhow::Result<Value> {
    frame["ref"] = json!(tag);
    c.send_json(&frame).await?;
    c.expect(&format!("the answer to {frame}"), |f| {
        f["ref"] == tag
            || (frame_type(f) == "ack"
                && f["id"].as_str().is_some_and(|id| id.starts_with("rating-")))
    })
    .await
}

/// An agent's console: `user`'s connection in `inbox`, joined, `availability online` with
/// `capacity`.
async fn online_agent(s: &Scope<'_>, user: &str, capacity: u32) -> anyhow::Result<Client> {
    let mut console = console(s, user).await?;
    let reply = ask(
        &mut console,
        "online",
        json!({"action": "availability", "status": "online", "capacity": capacity}),
    )
    .await?;
    ensure!(
        frame_type(&reply) == "agent"
            && reply["agent"]["user"] == user
            && reply["agent"]["status"] == "online"
            && reply["agent"]["capacity"] == capacity,
        "{user} online with capacity {capacity}: {reply}"
    );
    Ok(console)
}

/// `user`'s connection in `inbox`, joined, with no availability said (offline).
async fn console(s: &Scope<'_>, user: &str) -> anyhow::Result<Client> {
    let mut console = s.connect_in("inbox", user, &agent_token(s, user)).await?;
    console.join("inbox").await?;
    Ok(console)
}

/// Agent `user`'s connection to the support room `room`, joined.
async fn agent_in(s: &Scope<'_>, user: &str, room: &str) -> anyhow::Result<Client> {
    let mut c = s.connect_in(room, user, &agent_token(s, user)).await?;
    c.join(room).await?;
    Ok(c)
}

/// Visitor `user` (role `user`, granted their room `support-{user}` alone) in their room,
/// joined; returns the client and the room.
async fn visitor(s: &Scope<'_>, user: &str) -> anyhow::Result<(Client, String)> {
    let room = format!("support-{user}");
    let mut c = s.connect_in(&room, user, &s.token(user, &[&room])).await?;
    c.join(&room).await?;
    Ok((c, room))
}

/// The visitor writes `body` in their room: the `ack`, then the opening (`waiting`).
async fn opens(
    s: &Scope<'_>,
    c: &mut Client,
    room: &str,
    body: &str,
) -> anyhow::Result<(Value, Value)> {
    let ack = c.message(room, &s.id("visit"), body).await?;
    let opened = expect_status_message(c, room, "waiting").await?;
    Ok((ack, opened))
}

/// The visitor sees their conversation assigned (by the desk or an agent) to `agent`.
async fn expect_assigned_to(c: &mut Client, room: &str, agent: &str) -> anyhow::Result<()> {
    let m = expect_status_message(c, room, "assigned").await?;
    ensure!(m["meta"]["agent"] == agent, "assigned to {agent}: {m}");
    Ok(())
}

/// `conversations {…extra}` as `agent`: the `conversations` reply.
async fn list(agent: &mut Client, extra: Value) -> anyhow::Result<Value> {
    let mut frame = json!({"action": "conversations"});
    if let (Some(f), Some(extra)) = (frame.as_object_mut(), extra.as_object()) {
        f.extend(extra.clone());
    }
    let reply = ask(agent, "list", frame).await?;
    ensure!(
        frame_type(&reply) == "conversations",
        "a conversation list: {reply}"
    );
    Ok(reply)
}

/// `conversations {…extra}` as `agent`, asked again until `pred` holds of the reply (within
/// [`wait_timeout`]): the list entry follows the conversation's change (the stored system
/// message the clients see) a moment later.
async fn list_until(
    agent: &mut Client,
    extra: Value,
    what: &str,
    pred: impl Fn(&Value) -> bool,
) -> anyhow::Result<Value> {
    let deadline = Instant::now() + wait_timeout();
    loop {
        let reply = list(agent, extra.clone()).await?;
        if pred(&reply) {
            return Ok(reply);
        }
        if Instant::now() >= deadline {
            bail!("{what}: still {reply} after {:?}", wait_timeout());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The `(room, status, agent)` of every listed conversation, in order.
fn listed(list: &Value) -> Vec<(String, String, Value)> {
    list["items"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default()
        .iter()
        .map(|i| {
            (
                i["room"].as_str().unwrap_or_default().to_owned(),
                i["status"].as_str().unwrap_or_default().to_owned(),
                i["agent"].clone(),
            )
        })
        .collect()
}

/// The `(user, load)` of every agent in a list reply, in order.
fn loads(list: &Value) -> Vec<(Value, Value)> {
    list["agents"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default()
        .iter()
        .map(|a| (a["user"].clone(), a["load"].clone()))
        .collect()
}

fn row(room: &str, status: &str, agent: Value) -> (String, String, Value) {
    (room.to_owned(), status.to_owned(), agent)
}

/// Two agents online with capacity 1: the first conversation goes to one, the second to the
/// other (round-robin), the third waits (listed first, as the oldest waiting); closing the
/// first frees its agent's place and the third is assigned to them.
pub async fn desk_round_robin_under_capacity_then_the_freed_place(
    d: &dyn Deployment,
) -> anyhow::Result<()> {
    let s = Scope::new(d, "desk_rr");
    let mut ann = online_agent(&s, "ann", 1).await?;
    let _bo = online_agent(&s, "bo", 1).await?;
    let (mut v1, r1) = visitor(&s, "v1").await?;
    let (mut v2, r2) = visitor(&s, "v2").await?;
    let (mut v3, r3) = visitor(&s, "v3").await?;

    opens(&s, &mut v1, &r1, "hi").await?;
    expect_assigned_to(&mut v1, &r1, "ann").await?;
    opens(&s, &mut v2, &r2, "hello").await?;
    expect_assigned_to(&mut v2, &r2, "bo")
        .await
        .context("round-robin: the second goes to the other agent")?;
    opens(&s, &mut v3, &r3, "anyone?").await?;

    let expected = [
        row(&r3, "waiting", Value::Null),
        row(&r1, "assigned", json!("ann")),
        row(&r2, "assigned", json!("bo")),
    ];
    let open = list_until(&mut ann, json!({}), "the third waits, listed first", |l| {
        listed(l) == expected
    })
    .await?;
    ensure!(
        loads(&open) == [(json!("ann"), json!(1)), (json!("bo"), json!(1))],
        "both agents full: {open}"
    );

    let mut ann_v1 = agent_in(&s, "ann", &r1).await?;
    let closed = ask(&mut ann_v1, "close", json!({"action": "close", "room": r1})).await?;
    ensure!(
        frame_type(&closed) == "status" && closed["status"] == "closed",
        "ann closes the first: {closed}"
    );
    expect_status_message(&mut v1, &r1, "closed").await?;
    expect_assigned_to(&mut v3, &r3, "ann")
        .await
        .context("the freed place takes the waiting conversation")?;
    Ok(())
}

/// Only the assigned agent transfers or unassigns (another agent's attempt is `CONFLICT`); a
/// transfer moves the conversation and the agents' loads, an unassign puts it back `waiting`.
pub async fn desk_transfer_and_unassign_by_the_assigned_agent_only(
    d: &dyn Deployment,
) -> anyhow::Result<()> {
    let s = Scope::new(d, "desk_transfer");
    let mut ann_console = online_agent(&s, "ann", 2).await?;
    let _bo_console = online_agent(&s, "bo", 1).await?;
    let (mut v, room) = visitor(&s, "v1").await?;
    opens(&s, &mut v, &room, "hi").await?;
    expect_assigned_to(&mut v, &room, "ann").await?;

    let mut ann = agent_in(&s, "ann", &room).await?;
    let mut bo = agent_in(&s, "bo", &room).await?;
    let refused = ask(
        &mut bo,
        "unassign",
        json!({"action": "unassign", "room": room}),
    )
    .await?;
    ensure!(
        refused["code"] == "CONFLICT",
        "bo unassigns ann's: {refused}"
    );
    let refused = ask(
        &mut bo,
        "grab",
        json!({"action": "transfer", "room": room, "to": "bo"}),
    )
    .await?;
    ensure!(
        refused["code"] == "CONFLICT",
        "bo transfers ann's: {refused}"
    );

    let moved = ask(
        &mut ann,
        "transfer",
        json!({"action": "transfer", "room": room, "to": "bo"}),
    )
    .await?;
    ensure!(
        frame_type(&moved) == "status" && moved["status"] == "assigned" && moved["agent"] == "bo",
        "ann transfers it to bo: {moved}"
    );
    expect_assigned_to(&mut v, &room, "bo").await?;
    let again = ask(
        &mut ann,
        "again",
        json!({"action": "transfer", "room": room, "to": "ann"}),
    )
    .await?;
    ensure!(
        again["code"] == "CONFLICT",
        "no longer ann's to transfer: {again}"
    );
    list_until(
        &mut ann_console,
        json!({}),
        "the room moved between the agents",
        |l| {
            listed(l) == [row(&room, "assigned", json!("bo"))]
                && loads(l) == [(json!("ann"), json!(0)), (json!("bo"), json!(1))]
        },
    )
    .await?;

    let back = ask(
        &mut bo,
        "unassign",
        json!({"action": "unassign", "room": room}),
    )
    .await?;
    ensure!(
        frame_type(&back) == "status" && back["status"] == "waiting",
        "bo puts it back: {back}"
    );
    expect_status_message(&mut v, &room, "waiting").await?;
    list_until(
        &mut ann_console,
        json!({"filter": "waiting"}),
        "back in the queue",
        |l| listed(l) == [row(&room, "waiting", Value::Null)],
    )
    .await?;
    Ok(())
}

/// `identify` names the visitor on their conversation's list entry; `query` finds it by name
/// or email; visitors cannot list, agents cannot identify.
pub async fn desk_identified_visitors_are_listed_and_found(
    d: &dyn Deployment,
) -> anyhow::Result<()> {
    let s = Scope::new(d, "desk_identify");
    let mut ann = console(&s, "ann").await?;
    let (mut v1, r1) = visitor(&s, "v1").await?;
    let (mut v2, r2) = visitor(&s, "v2").await?;
    let named = ask(
        &mut v1,
        "identify",
        json!({"action": "identify", "name": " Zoë Lee ", "email": "Zoe@Example.COM"}),
    )
    .await?;
    ensure!(
        named
            == json!({"type": "identified", "name": "Zoë Lee", "email": "Zoe@example.com", "ref": "identify"}),
        "identified, trimmed, the domain lower-cased: {named}"
    );
    opens(&s, &mut v1, &r1, "my order is late").await?;
    opens(&s, &mut v2, &r2, "hi").await?;

    let open = list_until(
        &mut ann,
        json!({}),
        "both listed, oldest waiting first",
        |l| {
            listed(l)
                == [
                    row(&r1, "waiting", Value::Null),
                    row(&r2, "waiting", Value::Null),
                ]
        },
    )
    .await?;
    let first = &open["items"][0];
    ensure!(
        first["name"] == "Zoë Lee"
            && first["email"] == "Zoe@example.com"
            && first["visitor"] == "v1"
            && first["last"]["body"] == "my order is late",
        "the entry shows who and what: {first}"
    );
    for query in ["example.COM", "zoë", "LEE"] {
        let found = list(&mut ann, json!({"query": query})).await?;
        ensure!(
            listed(&found) == [row(&r1, "waiting", Value::Null)],
            "query {query:?} finds v1 alone: {found}"
        );
    }
    let refused = ask(&mut v1, "list", json!({"action": "conversations"})).await?;
    ensure!(
        refused["code"] == "FORBIDDEN",
        "visitors do not list: {refused}"
    );
    let refused = ask(
        &mut ann,
        "identify",
        json!({"action": "identify", "name": "x"}),
    )
    .await?;
    ensure!(
        refused["code"] == "FORBIDDEN",
        "agents do not identify: {refused}"
    );
    Ok(())
}

/// `rate` before the close is `CONFLICT`; after it, an `ack` and a system message
/// (`meta.kind` `rating`) in the room; a repeat is answered with the first's `ack`
/// (`duplicate`); the closed list shows the score.
pub async fn desk_rating_after_close_is_a_system_message(d: &dyn Deployment) -> anyhow::Result<()> {
    let s = Scope::new(d, "desk_rating");
    let mut ann_console = online_agent(&s, "ann", 1).await?;
    let (mut v, room) = visitor(&s, "v1").await?;
    opens(&s, &mut v, &room, "hi").await?;
    expect_assigned_to(&mut v, &room, "ann").await?;
    let rate = |score: u8| json!({"action": "rate", "room": room, "score": score, "comment": "quick, thanks"});

    let early = ask(&mut v, "early", rate(5)).await?;
    ensure!(early["code"] == "CONFLICT", "not closed yet: {early}");

    let mut ann = agent_in(&s, "ann", &room).await?;
    let closed = ask(&mut ann, "close", json!({"action": "close", "room": room})).await?;
    ensure!(closed["status"] == "closed", "ann closes it: {closed}");
    expect_status_message(&mut v, &room, "closed").await?;

    let ack = ask(&mut v, "rate", rate(4)).await?;
    ensure!(
        frame_type(&ack) == "ack" && ack["room"] == room && ack.get("duplicate").is_none(),
        "a rating is acknowledged: {ack}"
    );
    let rating = ann
        .expect("the rating in the room", |f| {
            frame_type(f) == "message" && f["room"] == room && f["meta"]["kind"] == "rating"
        })
        .await?;
    ensure!(
        rating["from"] == SYSTEM_SENDER
            && rating["seq"] == ack["seq"]
            && rating["meta"]["score"] == 4
            && rating["meta"]["comment"] == "quick, thanks"
            && rating["meta"]["by"] == "v1",
        "the rating is a system message: {rating} (ack {ack})"
    );
    let again = ask(&mut v, "again", rate(1)).await?;
    ensure!(
        frame_type(&again) == "ack" && again["seq"] == ack["seq"] && again["duplicate"] == true,
        "one rating per closed conversation: {again}"
    );
    list_until(
        &mut ann_console,
        json!({"filter": "closed"}),
        "the closed list shows the score",
        |l| listed(l) == [row(&room, "closed", json!("ann"))] && l["items"][0]["rating"] == 4,
    )
    .await?;
    Ok(())
}

/// `block` from an agent's console (their connection in `inbox`, where the console sends it):
/// the visitor's live connection in their support room closes with 4003, announced by a
/// `closing` frame (the only place of the code on AWS, where the close itself is 1000).
pub async fn desk_block_closes_the_visitors_socket_4003(d: &dyn Deployment) -> anyhow::Result<()> {
    let s = Scope::new(d, "desk_block_close");
    let mut ann = console(&s, "ann").await?;
    let (mut v, room) = visitor(&s, "v1").await?;
    opens(&s, &mut v, &room, "spam").await?;
    let blocked = ask(&mut ann, "block", json!({"action": "block", "user": "v1"})).await?;
    ensure!(
        frame_type(&blocked) == "blocked" && blocked["user"] == "v1" && blocked["blocked"] == true,
        "ann blocks v1: {blocked}"
    );
    let (frames, code, reason) = v.expect_close_within(wait_timeout()).await?;
    let notice = frames.last().cloned().unwrap_or_default();
    ensure!(
        frame_type(&notice) == "closing" && notice["code"] == 4003,
        "the last frame announces the close with 4003: {notice} (close {code} `{reason}`)"
    );
    // On the wire 4003, except behind API Gateway, whose `DeleteConnection` closes with 1000:
    // the `closing` frame carries the code there (docs/protocol.md §14).
    ensure!(
        code == 4003 || code == 1000,
        "the visitor's socket closes with 4003, not {code} `{reason}`"
    );
    Ok(())
}

/// A blocked visitor's token is refused (upgrade 403; HTTP 403 where the HTTP API is served)
/// until `unblock`; then it connects and writes again.
pub async fn desk_blocked_visitor_refused_until_unblocked(
    d: &dyn Deployment,
) -> anyhow::Result<()> {
    let s = Scope::new(d, "desk_block");
    let mut ann = console(&s, "ann").await?;
    let (mut v, room) = visitor(&s, "v1").await?;
    opens(&s, &mut v, &room, "spam").await?;
    drop(v);
    let token = s.token("v1", &[&room]);

    let blocked = ask(&mut ann, "block", json!({"action": "block", "user": "v1"})).await?;
    ensure!(
        frame_type(&blocked) == "blocked" && blocked["user"] == "v1" && blocked["blocked"] == true,
        "ann blocks v1: {blocked}"
    );
    match Client::try_connect(
        &crate::deployment::InRoom::new(d, &room),
        Credentials::Query(&token),
        "v1 again",
    )
    .await
    {
        Err(ConnectError::Refused { status: 403, .. }) => {}
        Err(e) => bail!("a blocked visitor's upgrade: expected HTTP 403, got {e}"),
        Ok(_) => bail!("a blocked visitor's upgrade: expected HTTP 403, but it was accepted"),
    }
    if d.capabilities().http_api {
        let base = d.http_url().context("http_url")?;
        let r = Request::new("GET", &format!("/rooms/{room}/messages"))
            .bearer(&token)
            .send(&base)
            .await?;
        ensure!(
            r.status == 403,
            "a blocked visitor's history: HTTP {} `{}`",
            r.status,
            r.text()
        );
    }

    let unblocked = ask(
        &mut ann,
        "unblock",
        json!({"action": "unblock", "user": "v1"}),
    )
    .await?;
    ensure!(
        frame_type(&unblocked) == "blocked" && unblocked["blocked"] == false,
        "ann unblocks v1: {unblocked}"
    );
    let mut back = s.connect_in(&room, "v1", &token).await?;
    back.join(&room).await?;
    back.message(&room, &s.id("back"), "sorry").await?;
    Ok(())
}

/// The agent a conversation is assigned to deletes the visitor's message (`deleted` with `by`
/// naming the agent, seen by the visitor too); another agent cannot (`FORBIDDEN`).
pub async fn desk_assigned_agent_moderates_the_conversation(
    d: &dyn Deployment,
) -> anyhow::Result<()> {
    let s = Scope::new(d, "desk_moderation");
    let _ann_console = online_agent(&s, "ann", 1).await?;
    let (mut v, room) = visitor(&s, "v1").await?;
    let (ack, _) = opens(&s, &mut v, &room, "spam spam").await?;
    expect_assigned_to(&mut v, &room, "ann").await?;
    let seq = ack["seq"].clone();

    let mut bo = agent_in(&s, "bo", &room).await?;
    let refused = ask(
        &mut bo,
        "delete",
        json!({"action": "delete", "room": room, "seq": seq}),
    )
    .await?;
    ensure!(
        refused["code"] == "FORBIDDEN",
        "bo does not handle it: {refused}"
    );

    let mut ann = agent_in(&s, "ann", &room).await?;
    ann.send_json(&json!({"action": "delete", "room": room, "seq": seq}))
        .await?;
    for c in [&mut ann, &mut v] {
        let deleted = c
            .expect("`deleted`", |f| {
                frame_type(f) == "deleted" && f["room"] == room
            })
            .await?;
        ensure!(
            deleted["seq"] == seq && deleted["by"] == "ann",
            "{}: ann deleted it: {deleted}",
            c.label()
        );
    }
    Ok(())
}

/// `POST /embed/token` with the suite's publishable key ([`EMBED_KEY`], tenant
/// [`EMBED_TENANT`]): from the allowed origin, a visitor token for `support-{visitor}` that
/// connects from that origin; from another origin 403 (on the POST and on the upgrade, for any
/// token of the tenant); without `Origin` or with an unknown key 403; a malformed visitor id 400.
pub async fn desk_embed_visitor_token_from_an_allowed_origin_only(
    d: &dyn Deployment,
) -> anyhow::Result<()> {
    const EVIL: &str = "http://evil.example";
    let base = d.http_url().context("http_url")?;
    let visitor = unique("visitor_embed").replace('-', "_");
    let post = |body: Value, origin: Option<&'static str>| {
        let mut request = Request::new("POST", "/embed/token").json(&body);
        if let Some(origin) = origin {
            request.headers.push(("Origin", origin.to_owned()));
        }
        let base = base.clone();
        async move { request.send(&base).await }
    };

    let r = post(
        json!({"key": EMBED_KEY, "visitor": visitor}),
        Some(EMBED_ORIGIN),
    )
    .await?;
    ensure!(
        r.status == 200,
        "a token for the allowed origin: HTTP {} `{}`",
        r.status,
        r.text()
    );
    let answer = r.json()?;
    let room = format!("support-{visitor}");
    ensure!(
        answer["visitor"] == visitor.as_str()
            && answer["room"] == room.as_str()
            && answer["desk"]["team"] == "Embed test"
            && answer["expires_at"].is_u64(),
        "the answer names the visitor's room and the desk: {answer}"
    );
    let token = answer["token"].as_str().context("a token")?.to_owned();

    let in_room = crate::deployment::InRoom::new(d, &room);
    let mut c = Client::try_connect_from(
        &in_room,
        Credentials::Query(&token),
        Some(EMBED_ORIGIN),
        "visitor",
    )
    .await
    .map_err(|e| anyhow::anyhow!("the visitor token from the allowed origin: {e}"))?;
    c.join(&room).await?;
    c.message(&room, "embed-hello", "hello from the widget")
        .await?;

    // A token the suite signs for the same tenant: Origin decides, whatever the token.
    let signed = d.sign(&claims(EMBED_TENANT, &visitor, &[&room]));
    for (what, token) in [("the visitor token", &token), ("a signed token", &signed)] {
        match Client::try_connect_from(&in_room, Credentials::Query(token), Some(EVIL), what).await
        {
            Err(ConnectError::Refused { status: 403, .. }) => {}
            Err(e) => bail!("{what} from another origin: expected HTTP 403, got {e}"),
            Ok(_) => bail!("{what} from another origin: expected HTTP 403, but it was accepted"),
        }
    }
    Client::try_connect_from(&in_room, Credentials::Query(&signed), None, "no origin")
        .await
        .map_err(|e| anyhow::anyhow!("an upgrade without Origin is not checked: {e}"))?;

    for (what, body, origin, status) in [
        (
            "another origin",
            json!({"key": EMBED_KEY, "visitor": visitor}),
            Some(EVIL),
            403,
        ),
        (
            "no origin",
            json!({"key": EMBED_KEY, "visitor": visitor}),
            None,
            403,
        ),
        (
            "an unknown key",
            json!({"key": "pk_embedtest_unknown00", "visitor": visitor}),
            Some(EMBED_ORIGIN),
            403,
        ),
        (
            "a short visitor id",
            json!({"key": EMBED_KEY, "visitor": "short"}),
            Some(EMBED_ORIGIN),
            400,
        ),
        (
            "a visitor id with a bad character",
            json!({"key": EMBED_KEY, "visitor": format!("{visitor}/x")}),
            Some(EMBED_ORIGIN),
            400,
        ),
    ] {
        let r = post(body, origin).await?;
        ensure!(
            r.status == status,
            "{what}: expected HTTP {status}, got {} `{}`",
            r.status,
            r.text()
        );
    }
    Ok(())
}
