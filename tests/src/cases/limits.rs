//! Frame limits, the rate limit (of frames, of the work they cause, of HTTP requests), idle
//! timeout and maximum connection age: the close codes.

use std::time::Duration;

use anyhow::{Context, bail, ensure};
use roomcast_core::limits::{MAX_BODY_BYTES, MAX_FRAME_BYTES};
use serde_json::{Value, json};
use tokio::time::Instant;

use crate::client::{Client, frame_type, wait_timeout};
use crate::deployment::Deployment;
use crate::http::Request;
use crate::scope::Scope;

/// How early (clock granularity) a timed close may come.
const EARLY: Duration = Duration::from_millis(100);

/// A text frame over 32 KiB closes the connection with 1009 and stores nothing.
pub async fn oversized_frame_closed_1009(d: &dyn Deployment) -> anyhow::Result<()> {
    let s = Scope::new(d, "frame_limit");
    let (mut c, _) = s.member("alice", "lobby").await?;
    let body = "x".repeat(MAX_FRAME_BYTES + 1024);
    c.send_json(&json!({"action": "message", "room": "lobby", "id": s.id("big"), "body": body}))
        .await?;
    let (code, reason) = c.expect_close().await?;
    ensure!(code == 1009, "expected close 1009, got {code} `{reason}`");
    let (_, joined) = s.member("bob", "lobby").await?;
    ensure!(joined["head"] == 0, "nothing stored: {joined}");
    Ok(())
}

/// A binary frame closes the connection with 1003.
pub async fn binary_frame_closed_1003(d: &dyn Deployment) -> anyhow::Result<()> {
    let s = Scope::new(d, "binary");
    let mut c = s.connect("alice").await?;
    c.send_binary(br#"{"action":"ping"}"#.to_vec()).await?;
    let (code, reason) = c.expect_close().await?;
    ensure!(code == 1003, "expected close 1003, got {code} `{reason}`");
    Ok(())
}

/// Frames sent faster than the rate limit get `RATE_LIMITED` errors (the frame dropped), and
/// sustained flooding closes the connection with 4008. Needs the default limit (burst 30).
pub async fn rate_limited_then_closed_4008(d: &dyn Deployment) -> anyhow::Result<()> {
    const FLOOD: usize = 300;
    let s = Scope::new(d, "flood");
    let mut c = s.connect("alice").await?;
    let mut sent = 0;
    for _ in 0..FLOOD {
        if c.send_json(&json!({"action": "ping"})).await.is_err() {
            break; // closed under us: the close frame is waiting to be read
        }
        sent += 1;
    }
    let (frames, code, reason) = c.expect_close_within(wait_timeout()).await?;
    let pongs = frames.iter().filter(|f| frame_type(f) == "pong").count();
    let limited = frames
        .iter()
        .filter(|f| frame_type(f) == "error" && f["code"] == "RATE_LIMITED")
        .count();
    let Some((notice, earlier)) = frames.split_last() else {
        bail!("no frame before the close");
    };
    ensure!(
        frame_type(notice) == "closing" && notice["code"] == 4008,
        "the last frame announces the close (gateways that cannot send close codes rely on it): {notice}"
    );
    let other: Vec<_> = earlier
        .iter()
        .filter(|f| {
            frame_type(f) != "pong" && !(frame_type(f) == "error" && f["code"] == "RATE_LIMITED")
        })
        .collect();
    ensure!(
        code == 4008,
        "expected close 4008 after flooding, got {code} `{reason}`"
    );
    ensure!(
        pongs > 0 && pongs < sent,
        "the burst is served, then frames are dropped: {pongs} pongs of {sent} pings"
    );
    ensure!(
        limited > 0,
        "RATE_LIMITED errors come before the close; got {pongs} pongs and {other:?}"
    );
    ensure!(
        other.is_empty(),
        "only pongs and RATE_LIMITED errors expected: {other:?}"
    );
    Ok(())
}

/// A connection with no inbound data for `idle` is closed with 1001 — not before.
pub async fn idle_connection_closed(d: &dyn Deployment, idle: Duration) -> anyhow::Result<()> {
    let s = Scope::new(d, "idle");
    let start = Instant::now();
    let mut c = s.connect("alice").await?;
    let (_, code, reason) = c
        .expect_close_within(idle + wait_timeout())
        .await
        .context("an idle connection must be closed")?;
    let elapsed = start.elapsed();
    ensure!(
        code == 1001,
        "expected close 1001 for idleness, got {code} `{reason}`"
    );
    ensure!(
        elapsed + EARLY >= idle,
        "closed after {elapsed:?}, before the idle timeout {idle:?}"
    );
    Ok(())
}

/// A connection is closed with 1001 after `max_age` even while active (a ping every 400 ms,
/// which also keeps the idle timeout from firing) — not before.
pub async fn max_age_connection_closed(
    d: &dyn Deployment,
    max_age: Duration,
) -> anyhow::Result<()> {
    let s = Scope::new(d, "max_age");
    let start = Instant::now();
    let mut c = s.connect("alice").await?;
    let deadline = start + max_age + wait_timeout();
    let (code, reason) = loop {
        ensure!(
            Instant::now() < deadline,
            "still open {:?} after max_age {max_age:?}",
            start.elapsed()
        );
        // Activity is the point here: the ping keeps the idle timer from closing first.
        if c.send_json(&json!({"action": "ping"})).await.is_err() {
            break c.expect_close().await?;
        }
        if let Some((_, code, reason)) = c.close_within(Duration::from_millis(400)).await? {
            break (code, reason);
        }
    };
    let elapsed = start.elapsed();
    ensure!(
        code == 1001,
        "expected close 1001 at the maximum age, got {code} `{reason}`"
    );
    ensure!(
        elapsed + EARLY >= max_age,
        "closed after {elapsed:?}, before max_age {max_age:?}"
    );
    Ok(())
}

/// Sends `frame` one at a time, each after the answer to the last, until one is refused with
/// `RATE_LIMITED`; returns the answers served before (whose type is `answer`).
async fn served_in_a_row(
    c: &mut Client,
    frame: &Value,
    answer: &str,
) -> anyhow::Result<Vec<Value>> {
    const MOST: usize = 200;
    let mut served = Vec::new();
    while served.len() < MOST {
        c.send_json(frame).await?;
        let (_, reply) = c
            .take_until(&format!("`{answer}` or an error"), |f| {
                frame_type(f) == answer || frame_type(f) == "error"
            })
            .await?;
        if frame_type(&reply) == "error" {
            ensure!(reply["code"] == "RATE_LIMITED", "{reply}");
            return Ok(served);
        }
        served.push(reply);
    }
    bail!("{MOST} frames `{frame}` in a row were never rate-limited")
}

/// Sends `message {room, id, body}`, resending it after `RATE_LIMITED` (as clients do, a
/// second later) until it is acknowledged.
async fn message_despite_the_limit(
    c: &mut Client,
    room: &str,
    id: &str,
    body: &str,
) -> anyhow::Result<()> {
    loop {
        c.send_json(&json!({"action": "message", "room": room, "id": id, "body": body}))
            .await?;
        let (_, reply) = c
            .take_until(&format!("`ack` for {id} or an error"), |f| {
                (frame_type(f) == "ack" && f["id"] == id) || frame_type(f) == "error"
            })
            .await?;
        if frame_type(&reply) == "ack" {
            return Ok(());
        }
        ensure!(reply["code"] == "RATE_LIMITED", "{reply}");
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// A replay costs rate-limit tokens by its size (one per 16 KB started, 8 for a replay cut to a
/// page of 128 KB): a connection rejoining a room of big messages with `since: 0` is served a
/// third of the frames in a row a fresh connection gets served, or fewer (4 replays of 30
/// under the default limit).
pub async fn replays_rate_limited_by_size(d: &dyn Deployment) -> anyhow::Result<()> {
    let s = Scope::new(d, "replay_cost");
    let body = "x".repeat(MAX_BODY_BYTES);
    // Two of alice's devices, each within a burst of 5 (a join and 4 messages): a deployment
    // with a tight limit and a short maximum connection age still sends them at once.
    for _ in 0..2 {
        let (mut alice, _) = s.member("alice", "big").await?;
        for _ in 0..4 {
            message_despite_the_limit(&mut alice, "big", &s.id("big"), &body).await?;
        }
    }
    let mut carol = s
        .connect_in("big", "carol", &s.token("carol", &["big"]))
        .await?;
    let pings = served_in_a_row(&mut carol, &json!({"action": "ping"}), "pong")
        .await?
        .len();
    let mut bob = s
        .connect_in("big", "bob", &s.token("bob", &["big"]))
        .await?;
    let rejoin = json!({"action": "join", "room": "big", "since": 0});
    let replays = served_in_a_row(&mut bob, &rejoin, "replayed").await?;
    for replayed in &replays {
        ensure!(
            replayed["through"] == 7 && replayed["more"] == true,
            "a replay is cut to a page of 7 big messages: {replayed}"
        );
    }
    ensure!(
        !replays.is_empty() && replays.len() * 3 <= pings,
        "{} replays in a row, against {pings} pings",
        replays.len()
    );
    Ok(())
}

/// HTTP API requests take tokens from one bucket per user (as a connection's frames do: burst
/// 30 by default): 40 requests at once with one user's token get some `429 RATE_LIMITED`, while
/// another user's request is served.
pub async fn http_requests_rate_limited_per_user(d: &dyn Deployment) -> anyhow::Result<()> {
    const BURST: usize = 40;
    let s = Scope::new(d, "http_rate");
    let base = d
        .http_url()
        .context("the deployment reports http_api but gives no http_url")?;
    let alice = s.token("alice", &["lobby"]);
    let requests = (0..BURST).map(|_| {
        Request::new("GET", "/rooms/lobby/messages")
            .bearer(&alice)
            .send(&base)
    });
    let responses = futures::future::join_all(requests).await;
    let mut served = 0;
    let mut limited = 0;
    for r in responses {
        let r = r?;
        match r.status {
            200 => served += 1,
            429 => {
                let body = r.json()?;
                ensure!(body["code"] == "RATE_LIMITED", "429 body: {body}");
                limited += 1;
            }
            other => bail!("unexpected HTTP {other} `{}`", r.text()),
        }
    }
    ensure!(
        served > 0 && limited > 0,
        "{served} served and {limited} limited of {BURST}"
    );
    let bob = s.token("bob", &["lobby"]);
    let r = Request::new("GET", "/rooms/lobby/messages")
        .bearer(&bob)
        .send(&base)
        .await?;
    ensure!(
        r.status == 200,
        "another user has a bucket of his own: HTTP {} `{}`",
        r.status,
        r.text()
    );
    Ok(())
}
