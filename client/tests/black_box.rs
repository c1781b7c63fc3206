//! The client against the real `roomcast-local` binary: requests and their typed refusals, the
//! events others cause, resume paging, a server killed mid-stream (nothing lost, nothing
//! twice), and the echo bot example.

mod common;
#[path = "../examples/echo_bot/echo.rs"]
mod echo;

use std::collections::{BTreeSet, HashSet};
use std::convert::Infallible;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use anyhow::{Context, ensure};
use common::{CuttableProxy, Server, next_picked};
use futures::future::try_join_all;
use roomcast_client::{Client, ClientError, Config, Event, Events, HistoryQuery};
use roomcast_core::auth::Role;
use roomcast_core::protocol::{
    ErrorCode, MessageView, PresenceStatus, ServerFrame, TypingState, VisibleStatus, close,
};

const ROOM: &str = "r-1";
/// Room for the pipelined and resent messages of these tests, not for the rate limiter.
const UNLIMITED: &[&str] = &["--rate-burst", "100000", "--rate-per-sec", "100000"];

async fn connect(server: &Server, user: &str, role: Role) -> anyhow::Result<(Client, Events)> {
    let config = Config::new(server.url(), server.token(user, role));
    Ok(Client::connect(config).await?)
}

fn message(event: Event) -> Option<MessageView> {
    match event.frame()? {
        ServerFrame::Message(m) => Some(m),
        _ => None,
    }
}

fn rejected_with<T>(result: Result<T, ClientError>, code: ErrorCode) -> bool {
    matches!(result, Err(ClientError::Rejected { code: c, .. }) if c == code)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_carry_the_protocols_codes() -> anyhow::Result<()> {
    let server = Server::start(&[])?;
    let refused = Client::connect(Config::new(server.url(), "not.a.token")).await;
    ensure!(
        matches!(refused, Err(ClientError::Refused { status: 401, .. })),
        "{refused:?}"
    );

    let (alice, mut events) = connect(&server, "alice", Role::User).await?;
    ensure!(rejected_with(
        alice.join("other-1").await,
        ErrorCode::Forbidden
    ));
    ensure!(rejected_with(
        alice.send(ROOM, "hi").await,
        ErrorCode::NotMember
    ));
    let page = alice.history(ROOM, HistoryQuery::default()).await;
    ensure!(rejected_with(page, ErrorCode::NotMember));
    alice.join(ROOM).await?;
    ensure!(rejected_with(
        alice.send(ROOM, " ").await,
        ErrorCode::Invalid
    ));
    let first = alice.send(ROOM, "hi").await?;
    ensure!(first.seq == 1 && !first.duplicate, "{first:?}");

    // A notice has no reply: its refusal comes as an event naming it.
    alice.typing("r-2", TypingState::Start)?;
    let refusal = next_picked(&mut events, |e| match e.frame()? {
        ServerFrame::Error {
            code, reference, ..
        } => Some((code, reference)),
        _ => None,
    })
    .await?;
    ensure!(
        refusal.0 == ErrorCode::NotMember && refusal.1.is_some(),
        "{refusal:?}"
    );
    alice.close().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn typing_read_presence_and_history_reach_the_others() -> anyhow::Result<()> {
    let server = Server::start(&[])?;
    let (alice, _alice_events) = connect(&server, "alice", Role::User).await?;
    let (bob, mut bob_events) = connect(&server, "bob", Role::User).await?;
    alice.join(ROOM).await?;
    let joined = bob.join(ROOM).await?;
    ensure!(joined.head == 0 && joined.members.len() == 2, "{joined:?}");
    for text in ["one", "two", "three"] {
        alice.send(ROOM, text).await?;
    }
    let mut seen = Vec::new();
    while seen.len() < 3 {
        let m = next_picked(&mut bob_events, message).await?;
        seen.push(m.body.unwrap_or_default());
    }
    ensure!(seen == ["one", "two", "three"], "{seen:?}");

    alice.typing(ROOM, TypingState::Start)?;
    let typing = next_picked(&mut bob_events, |e| match e.frame()? {
        ServerFrame::Typing { user, state, .. } => Some((user, state)),
        _ => None,
    })
    .await?;
    ensure!(typing == ("alice".into(), TypingState::Start), "{typing:?}");

    alice.read(ROOM, 2)?;
    let read = next_picked(&mut bob_events, |e| match e.frame()? {
        ServerFrame::Read { user, seq, .. } => Some((user, seq)),
        _ => None,
    })
    .await?;
    ensure!(read == ("alice".into(), 2), "{read:?}");

    alice.presence(PresenceStatus::Away)?;
    let presence = next_picked(&mut bob_events, |e| match e.frame()? {
        ServerFrame::Presence { user, status, .. } if user == "alice" => Some(status),
        _ => None,
    })
    .await?;
    ensure!(presence == VisibleStatus::Away, "{presence:?}");

    let newest = bob
        .history(
            ROOM,
            HistoryQuery {
                limit: Some(2),
                ..HistoryQuery::default()
            },
        )
        .await?;
    let seqs: Vec<u64> = newest.messages.iter().map(|m| m.seq).collect();
    ensure!(
        seqs == [2, 3] && newest.more,
        "{seqs:?} more={}",
        newest.more
    );
    let older = bob
        .history(
            ROOM,
            HistoryQuery {
                before: Some(2),
                ..HistoryQuery::default()
            },
        )
        .await?;
    let seqs: Vec<u64> = older.messages.iter().map(|m| m.seq).collect();
    ensure!(seqs == [1] && !older.more, "{seqs:?} more={}", older.more);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reactions_and_replies_reach_the_room() -> anyhow::Result<()> {
    let server = Server::start(&[])?;
    let (alice, mut alice_events) = connect(&server, "alice", Role::User).await?;
    let (bob, mut bob_events) = connect(&server, "bob", Role::User).await?;
    alice.join(ROOM).await?;
    bob.join(ROOM).await?;
    let asked = alice.send(ROOM, "lunch?").await?;
    next_picked(&mut bob_events, message).await?;

    bob.react(ROOM, asked.seq, "👍")?;
    let told = next_picked(&mut alice_events, |e| match e.frame()? {
        ServerFrame::Reaction {
            by, added, count, ..
        } => Some((by, added, count)),
        _ => None,
    })
    .await?;
    ensure!(told == ("bob".into(), true, 1), "{told:?}");
    bob.unreact(ROOM, asked.seq, "👍")?;
    let told = next_picked(&mut alice_events, |e| match e.frame()? {
        ServerFrame::Reaction { added, count, .. } => Some((added, count)),
        _ => None,
    })
    .await?;
    ensure!(told == (false, 0), "{told:?}");

    let answer = bob.reply(ROOM, asked.seq, "yes").await?;
    let reply = next_picked(&mut alice_events, message).await?;
    ensure!(reply.seq == answer.seq, "{reply:?}");
    let reference = reply.reply_to.context("a reply carries its original")?;
    ensure!(
        (
            reference.seq,
            reference.from.as_str(),
            reference.preview.as_deref()
        ) == (asked.seq, "alice", Some("lunch?")),
        "{reference:?}"
    );
    ensure!(rejected_with(
        bob.reply(ROOM, 99, "to nothing").await,
        ErrorCode::NotFound
    ));
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_join_from_an_old_seq_pages_past_the_replay_limit() -> anyhow::Result<()> {
    const SENT: u64 = 150;
    const SINCE: u64 = 20;
    let server = Server::start(UNLIMITED)?;
    let (alice, _alice_events) = connect(&server, "alice", Role::User).await?;
    alice.join(ROOM).await?;
    try_join_all((0..SENT).map(|i| {
        let alice = alice.clone();
        async move { alice.send(ROOM, &format!("m{i}")).await }
    }))
    .await?;

    let (bob, mut bob_events) = connect(&server, "bob", Role::User).await?;
    bob.join_since(ROOM, SINCE).await?;
    let mut seqs = Vec::new();
    while seqs.len() < usize::try_from(SENT - SINCE)? {
        seqs.push(next_picked(&mut bob_events, message).await?.seq);
    }
    let expected: Vec<u64> = (SINCE + 1..=SENT).collect();
    ensure!(seqs == expected, "replayed {seqs:?}");
    Ok(())
}

/// What [`stream_through`] saw.
struct Streamed {
    /// Acks that answered a resend of a message the server had stored already.
    duplicate_acks: usize,
    /// Whether Bob's connection dropped on the way.
    bob_dropped: bool,
    /// From the start of the disruption to the last ack.
    settled_in: Duration,
}

/// Alice sends `total` messages to Bob in `ROOM`, one a millisecond, each awaiting its own ack,
/// and `disrupt` runs once Bob has the first. Then every message must be acknowledged with its
/// own seq, delivered to Bob once, and stored once.
async fn stream_through(
    alice: &Client,
    bob: &Client,
    mut bob_events: Events,
    total: usize,
    disrupt: impl Future<Output = anyhow::Result<()>>,
) -> anyhow::Result<Streamed> {
    // Bob reads everything that reaches him, and whether his connection dropped.
    let (first_seen, seen_some) = tokio::sync::oneshot::channel();
    let reader = tokio::spawn(async move {
        let mut first_seen = Some(first_seen);
        let mut messages = Vec::new();
        let mut dropped = false;
        while messages.len() < total {
            match next_picked(&mut bob_events, Some).await? {
                Event::Frame(frame) => {
                    if let ServerFrame::Message(m) = *frame {
                        messages.push(m);
                        if let Some(tell) = first_seen.take() {
                            let _ = tell.send(());
                        }
                    }
                }
                Event::Disconnected { .. } => dropped = true,
                _ => {}
            }
        }
        // Anything more would be a duplicate.
        let extra = tokio::time::timeout(Duration::from_secs(1), async {
            while let Some(event) = bob_events.next().await {
                if let Some(m) = message(event) {
                    return Some(m);
                }
            }
            None
        })
        .await;
        anyhow::Ok((messages, dropped, extra.ok().flatten()))
    });

    let sender = tokio::spawn({
        let alice = alice.clone();
        async move {
            let mut sends = Vec::new();
            for i in 0..total {
                let alice = alice.clone();
                sends.push(tokio::spawn(async move {
                    alice.send(ROOM, &format!("m{i}")).await
                }));
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
            sends
        }
    });
    seen_some.await.context("bob's reader ended")?;
    let disrupted = std::time::Instant::now();
    disrupt.await?;

    let mut acks = Vec::new();
    for sent in sender.await? {
        acks.push(sent.await??);
    }
    let settled_in = disrupted.elapsed();
    let acked: BTreeSet<u64> = acks.iter().map(|a| a.seq).collect();
    let expected: BTreeSet<u64> = (1..=u64::try_from(total)?).collect();
    ensure!(acked == expected, "acked seqs {acked:?}");

    let (messages, bob_dropped, extra) = reader.await??;
    ensure!(extra.is_none(), "a message came twice: {extra:?}");
    let delivered: BTreeSet<u64> = messages.iter().map(|m| m.seq).collect();
    ensure!(delivered == expected, "bob got seqs {delivered:?}");
    let sent_ids: HashSet<&str> = acks.iter().map(|a| a.id.as_str()).collect();
    let got_ids: HashSet<&str> = messages.iter().map(|m| m.id.as_str()).collect();
    ensure!(sent_ids == got_ids, "bob's ids differ from alice's");

    // The store agrees: every message once.
    let stored = bob
        .history(
            ROOM,
            HistoryQuery {
                limit: Some(100),
                ..HistoryQuery::default()
            },
        )
        .await?;
    ensure!(stored.messages.len() == total && !stored.more);
    Ok(Streamed {
        duplicate_acks: acks.iter().filter(|a| a.duplicate).count(),
        bob_dropped,
        settled_in,
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_killed_mid_stream_loses_and_repeats_nothing() -> anyhow::Result<()> {
    const TOTAL: usize = 80;
    let server = Server::start(UNLIMITED)?;
    let (alice, _alice_events) = connect(&server, "alice", Role::User).await?;
    let (bob, bob_events) = connect(&server, "bob", Role::User).await?;
    let server = Arc::new(Mutex::new(server));
    alice.join(ROOM).await?;
    bob.join(ROOM).await?;
    let restarting = Arc::clone(&server);
    // Lazy, as async blocks are: the kill comes once Bob has the first message.
    let kill_and_restart = async move {
        tokio::task::spawn_blocking(move || {
            restarting
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .restart()
        })
        .await?
    };
    let streamed = stream_through(&alice, &bob, bob_events, TOTAL, kill_and_restart).await?;
    ensure!(streamed.bob_dropped, "bob's connection did not drop");
    println!(
        "{} of {TOTAL} acks answered a resend the server had stored already; the last ack came \
         {:?} after the kill",
        streamed.duplicate_acks, streamed.settled_in
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sockets_dropped_mid_stream_lose_and_repeat_nothing() -> anyhow::Result<()> {
    const TOTAL: usize = 80;
    let server = Server::start(UNLIMITED)?;
    let proxy = CuttableProxy::start(server.port()).await?;
    let through_proxy = |user| Config::new(proxy.url(), server.token(user, Role::User));
    let (alice, _alice_events) = Client::connect(through_proxy("alice")).await?;
    let (bob, bob_events) = Client::connect(through_proxy("bob")).await?;
    alice.join(ROOM).await?;
    bob.join(ROOM).await?;
    let cut = async {
        proxy.cut();
        Ok(())
    };
    let streamed = stream_through(&alice, &bob, bob_events, TOTAL, cut).await?;
    ensure!(streamed.bob_dropped, "bob's connection did not drop");
    println!(
        "{} of {TOTAL} acks answered a resend the server had stored already; the last ack came \
         {:?} after the cut",
        streamed.duplicate_acks, streamed.settled_in
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_resent_before_their_ack_are_stored_once() -> anyhow::Result<()> {
    const TOTAL: usize = 60;
    let server = Server::start(UNLIMITED)?;
    // Every ack is overdue at once: each message goes out again and again until acknowledged.
    let impatient = Config {
        ack_timeout: Duration::from_millis(1),
        ..Config::new(server.url(), server.token("alice", Role::User))
    };
    let (alice, _alice_events) = Client::connect(impatient).await?;
    let (bob, bob_events) = connect(&server, "bob", Role::User).await?;
    alice.join(ROOM).await?;
    bob.join(ROOM).await?;
    let streamed = stream_through(&alice, &bob, bob_events, TOTAL, async { Ok(()) }).await?;
    ensure!(!streamed.bob_dropped);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_keepalive_holds_a_quiet_connection_open() -> anyhow::Result<()> {
    let server = Server::start(&["--idle-timeout-secs", "1"])?;
    let chatty = Config {
        keepalive: Duration::from_millis(300),
        ..Config::new(server.url(), server.token("alice", Role::User))
    };
    let (alice, mut alice_events) = Client::connect(chatty).await?;
    let (bob, mut bob_events) = connect(&server, "bob", Role::User).await?;
    alice.join(ROOM).await?;
    bob.join(ROOM).await?;
    // Bob's keepalive (minutes) is too slow for this server: it closes him, and he returns.
    let code = next_picked(&mut bob_events, |e| match e {
        Event::Disconnected { code, .. } => Some(code),
        _ => None,
    })
    .await?;
    ensure!(code == Some(close::GOING_AWAY), "{code:?}");
    next_picked(&mut bob_events, |e| {
        matches!(e, Event::Reconnected).then_some(())
    })
    .await?;
    // His room is rejoined, and its state comes as an event.
    let rejoined = next_picked(&mut bob_events, |e| match e.frame()? {
        ServerFrame::Joined { room, members, .. } => Some((room, members.len())),
        _ => None,
    })
    .await?;
    ensure!(rejoined == (ROOM.to_owned(), 2), "{rejoined:?}");
    // Alice, as quiet but for her keepalive, stayed connected all along.
    let alice_dropped = tokio::time::timeout(
        Duration::from_millis(500),
        next_picked(&mut alice_events, |e| {
            matches!(e, Event::Disconnected { .. }).then_some(())
        }),
    )
    .await;
    ensure!(alice_dropped.is_err(), "alice's connection dropped");
    Ok(())
}

/// Alice's config for `url` with a token valid for `secs`, and a token source that hands out a
/// fresh one, counting how often it is asked.
fn renewing(server: &Server, url: String, secs: u64) -> (Config, Arc<AtomicUsize>) {
    let fresh = server.token("alice", Role::User);
    let asked = Arc::new(AtomicUsize::new(0));
    let config = Config::new(url, server.token_valid_for("alice", Role::User, secs))
        .with_token_source({
            let asked = asked.clone();
            move || {
                asked.fetch_add(1, Ordering::Relaxed);
                let fresh = fresh.clone();
                async move { Ok::<_, Infallible>(fresh) }
            }
        });
    (config, asked)
}

/// Alice came back with the fresh token (reconnected, not stopped), her room rejoined (her
/// first message is stored), and the source was asked once.
async fn back_with_a_fresh_token(
    alice: &Client,
    events: &mut Events,
    asked: &AtomicUsize,
) -> anyhow::Result<()> {
    let next = next_picked(events, |e| match e {
        Event::Reconnected => Some(Ok(())),
        Event::Closed { reason } => Some(Err(reason)),
        _ => None,
    })
    .await?;
    ensure!(next.is_ok(), "alice stopped instead of renewing: {next:?}");
    let ack = alice.send(ROOM, "with a fresh token").await?;
    ensure!(ack.seq == 1, "{ack:?}");
    ensure!(
        asked.load(Ordering::Relaxed) == 1,
        "the source is asked once"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_token_is_renewed_from_the_callers_source() -> anyhow::Result<()> {
    let server = Server::start(&[])?;
    let (renewing, asked) = renewing(&server, server.url(), 2);
    let failing = Config::new(server.url(), server.token_valid_for("bob", Role::User, 2))
        .with_token_source(|| async { Err::<String, _>("the backend is down") });
    let (alice, mut alice_events) = Client::connect(renewing).await?;
    let (bob, mut bob_events) = Client::connect(failing).await?;
    alice.join(ROOM).await?;
    bob.join(ROOM).await?;

    // Both tokens expire: the server closes both with 4001.
    for events in [&mut alice_events, &mut bob_events] {
        let code = next_picked(events, |e| match e {
            Event::Disconnected { code, .. } => Some(code),
            _ => None,
        })
        .await?;
        ensure!(code == Some(close::TOKEN_EXPIRED), "{code:?}");
    }
    back_with_a_fresh_token(&alice, &mut alice_events, &asked).await?;
    // Bob's source has none: his client stops, saying why.
    let reason = next_picked(&mut bob_events, |e| match e {
        Event::Closed { reason } => Some(reason),
        _ => None,
    })
    .await?;
    ensure!(reason.contains("the backend is down"), "{reason}");
    ensure!(
        matches!(bob.send(ROOM, "late").await, Err(ClientError::Stopped(_))),
        "bob's client stopped"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_that_expired_while_disconnected_is_renewed_on_reconnect() -> anyhow::Result<()> {
    let server = Server::start(&[])?;
    let proxy = CuttableProxy::start(server.port()).await?;
    let (mut config, asked) = renewing(&server, proxy.url(), 1);
    // The first retry comes 2–4 s after the drop (jitter halves at most): past the 1 s token.
    config.backoff.first = Duration::from_secs(4);
    let (alice, mut events) = Client::connect(config).await?;
    alice.join(ROOM).await?;
    proxy.cut();
    let code = next_picked(&mut events, |e| match e {
        Event::Disconnected { code, .. } => Some(code),
        _ => None,
    })
    .await?;
    ensure!(code.is_none(), "a cut has no close frame: {code:?}");
    // The upgrade is refused with 401; the source's token gets her back in.
    back_with_a_fresh_token(&alice, &mut events, &asked).await
}

#[test]
fn the_echo_bot_answers_people_only() {
    let mut message = MessageView {
        reactions: Vec::new(),
        reply_to: None,
        room: ROOM.into(),
        seq: 7,
        id: "m7".into(),
        from: "alice".into(),
        name: None,
        role: Some(Role::User),
        via: None,
        body: Some(" hello ".into()),
        meta: None,
        ts: 1,
        edited_ts: None,
        deleted: false,
        attachments: Vec::new(),
    };
    let answer = echo::answer_to(&message).map(|a| (a.id, a.body));
    assert_eq!(answer, Some(("echo-7".into(), "echo: hello".into())));
    message.role = None;
    assert!(
        echo::answer_to(&message).is_some(),
        "old messages are people's"
    );
    for role in [Role::Service, Role::Agent] {
        message.role = Some(role);
        assert!(echo::answer_to(&message).is_none(), "{role:?}");
    }
    message.role = Some(Role::User);
    message.body = None;
    message.deleted = true;
    assert!(echo::answer_to(&message).is_none(), "a tombstone");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_echo_bot_answers_in_the_room() -> anyhow::Result<()> {
    let server = Server::start(&[])?;
    let (alice, mut alice_events) = connect(&server, "alice", Role::User).await?;
    alice.join(ROOM).await?;
    let (bot, mut bot_events) = connect(&server, "echo-bot", Role::Service).await?;
    let (answered, mut answers) = tokio::sync::mpsc::unbounded_channel();
    let serving = tokio::spawn(async move {
        echo::serve(&bot, &mut bot_events, ROOM, |ack| {
            let _ = answered.send(ack);
        })
        .await
    });
    // The bot's presence says it joined: from then on it hears the room.
    next_picked(&mut alice_events, |e| match e.frame()? {
        ServerFrame::Presence { user, .. } => (user == "echo-bot").then_some(()),
        _ => None,
    })
    .await?;
    let question = roomcast_client::Outgoing {
        room: ROOM.into(),
        id: "q1".into(),
        body: "hello bot".into(),
        meta: None,
        reply_to: None,
    };
    let asked = alice.send_message(question).await?;
    let reply = next_picked(&mut alice_events, message).await?;
    ensure!(reply.from == "echo-bot", "{reply:?}");
    ensure!(
        reply.body.as_deref() == Some("echo: hello bot"),
        "{reply:?}"
    );
    ensure!(
        reply.meta == Some(serde_json::json!({ "reply_to": asked.seq })),
        "{reply:?}"
    );
    let ack = answers.recv().await.context("the bot stopped")?;
    ensure!(ack.seq == reply.seq);
    alice.close().await;
    serving.abort();
    Ok(())
}
