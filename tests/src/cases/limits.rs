//! Frame limits, the rate limit, idle timeout and maximum connection age: the close codes.

use std::time::Duration;

use anyhow::{Context, bail, ensure};
use roomcast_core::limits::MAX_FRAME_BYTES;
use serde_json::json;
use tokio::time::Instant;

use crate::client::{frame_type, wait_timeout};
use crate::deployment::Deployment;
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
