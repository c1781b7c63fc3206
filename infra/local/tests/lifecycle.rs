//! Process lifecycle of the real `roomcast-local` binary: SIGTERM closes every socket with 1001
//! and exits cleanly; `kill -9` in the middle of pipelined concurrent sends loses no
//! acknowledged message and leaves no gap in the seqs; WebSocket pings do not keep an idle
//! connection open.
#![cfg(unix)]

mod process;
mod raw;

use std::collections::BTreeMap;
use std::process::Command;
use std::time::{Duration, Instant};

use process::{Server, Target, metric, runtime};
use roomcast_protocol_tests::client::{Client, frame_type, str_field, u64_field};
use serde_json::{Value, json};

/// The rate limit is not what these tests are about: lifted.
const NO_RATE_LIMIT: [&str; 4] = ["--rate-per-sec", "100000", "--rate-burst", "100000"];

async fn joined_client(target: &Target, user: &str, room: &str) -> anyhow::Result<Client> {
    let mut client = Client::connect(target, &target.token(user, &[room]), user).await?;
    client.join(room).await?;
    Ok(client)
}

#[test]
fn sigterm_closes_sockets_with_1001_and_exits_cleanly() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let mut server = Server::start(dir.path(), 0, &NO_RATE_LIMIT)?;
    let target = server.target();
    runtime().block_on(async {
        let mut a = joined_client(&target, "alice", "lobby").await?;
        let mut b = joined_client(&target, "bob", "lobby").await?;
        let status = Command::new("kill")
            .args(["-TERM", &server.pid().to_string()])
            .status()?;
        anyhow::ensure!(status.success(), "kill -TERM failed");
        for client in [&mut a, &mut b] {
            let (code, reason) = client.expect_close().await?;
            anyhow::ensure!(code == 1001, "close {code} {reason:?}, want 1001");
        }
        anyhow::Ok(())
    })?;
    let status = server.wait_exit(Duration::from_secs(10))?;
    anyhow::ensure!(status.success(), "exit status {status}");
    Ok(())
}

/// Each sender pipelines its messages without waiting, and records every ack it gets before
/// the connection dies.
async fn pipelined_sender(
    target: &Target,
    user: String,
    room: &str,
    count: usize,
) -> anyhow::Result<Vec<(String, u64)>> {
    let mut client = joined_client(target, &user, room).await?;
    for i in 0..count {
        let frame = json!({"action": "message", "room": room, "id": format!("{user}-{i}"), "body": format!("m{i}")});
        if client.send_json(&frame).await.is_err() {
            break;
        }
    }
    let mut acked = Vec::new();
    while let Ok(frame) = client.recv().await {
        if frame_type(&frame) == "ack" {
            acked.push((
                str_field(&frame, "id")?.to_owned(),
                u64_field(&frame, "seq")?,
            ));
        }
    }
    Ok(acked)
}

#[test]
fn kill_9_under_concurrent_load_loses_no_acknowledged_message() -> anyhow::Result<()> {
    const SENDERS: usize = 4;
    const EACH: usize = 400;
    let dir = tempfile::tempdir()?;
    let mut server = Server::start(dir.path(), 0, &NO_RATE_LIMIT)?;
    let port = server.port;
    let rt = runtime();
    let acked: Vec<(String, u64)> = rt.block_on(async {
        let target = std::sync::Arc::new(Target {
            port,
            management_port: None,
        });
        let senders: Vec<_> = (0..SENDERS)
            .map(|k| {
                let target = target.clone();
                tokio::spawn(async move {
                    pipelined_sender(&target, format!("user{k}"), "load", EACH).await
                })
            })
            .collect();
        // Let acks flow, then kill mid-stream.
        tokio::time::sleep(Duration::from_millis(300)).await;
        server.kill_9()?;
        let mut all = Vec::new();
        for s in senders {
            all.extend(s.await??);
        }
        anyhow::Ok(all)
    })?;
    anyhow::ensure!(
        !acked.is_empty(),
        "no message was acknowledged before the kill: the test proves nothing"
    );
    let restarted = Server::start(dir.path(), port, &NO_RATE_LIMIT)?;
    let stored: BTreeMap<u64, String> = rt.block_on(async {
        let target = restarted.target();
        let mut reader = joined_client(&target, "auditor", "load").await?;
        let mut stored = BTreeMap::new();
        let mut after = 0;
        loop {
            let page: Value = reader
                .history("load", json!({"after": after, "limit": 100}))
                .await?;
            let messages = page["messages"].as_array().cloned().unwrap_or_default();
            for m in &messages {
                stored.insert(u64_field(m, "seq")?, str_field(m, "id")?.to_owned());
            }
            after = stored.keys().next_back().copied().unwrap_or(0);
            if page["more"] != json!(true) {
                break;
            }
        }
        anyhow::Ok(stored)
    })?;
    let head = stored.keys().next_back().copied().unwrap_or(0);
    anyhow::ensure!(
        stored.keys().copied().eq(1..=head),
        "seqs are not gap-free 1..={head}"
    );
    for (id, seq) in &acked {
        anyhow::ensure!(
            stored.get(seq) == Some(id),
            "acked {id} at seq {seq} is missing after kill -9 (found {:?})",
            stored.get(seq)
        );
    }
    eprintln!(
        "kill -9 under load: {} acked before the kill, {} stored after restart, all acked present",
        acked.len(),
        stored.len()
    );
    Ok(())
}

#[test]
fn slow_consumer_is_closed_and_the_sender_is_unaffected() -> anyhow::Result<()> {
    // Enough 4 KB messages to fill the outbound queue (1024 frames) past the loopback socket
    // buffers of a reader that never reads.
    const MESSAGES: usize = 6000;
    let dir = tempfile::tempdir()?;
    // The store plays no part in this; in memory, one connection's frames are not paced by fsync.
    let mut flags = NO_RATE_LIMIT.to_vec();
    flags.extend(["--store", "memory"]);
    let server = Server::start(dir.path(), 0, &flags)?;
    let target = server.target();
    runtime().block_on(async {
        let _stalled = joined_client(&target, "stalled", "flood").await?;
        let mut sender = joined_client(&target, "sender", "flood").await?;
        let body = "x".repeat(4096);
        // The sender reads its acks as it goes (in windows well under the queue bound), so it
        // is a fast consumer: only the stalled reader may be closed.
        const WINDOW: usize = 200;
        for window in (0..MESSAGES).step_by(WINDOW) {
            for i in window..(window + WINDOW).min(MESSAGES) {
                let frame = json!({"action": "message", "room": "flood", "id": format!("f{i}"), "body": body});
                sender.send_json(&frame).await?;
            }
            let mut acks = 0;
            while acks < WINDOW.min(MESSAGES - window) {
                if frame_type(&sender.recv().await?) == "ack" {
                    acks += 1;
                }
            }
        }
        let closed = metric(target.port, "roomcast_slow_consumers_total").await?;
        anyhow::ensure!(closed == 1, "slow consumers closed: {closed}, want 1");
        let deadline = Instant::now() + Duration::from_secs(10);
        while metric(target.port, "roomcast_connections").await? != 1 {
            anyhow::ensure!(Instant::now() < deadline, "the stalled socket was never dropped");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        anyhow::Ok(())
    })
}

/// Only data frames are activity (as on API Gateway, where the idle timeout counts messages):
/// a client that sends nothing but WebSocket pings gets its pongs, and is closed 1001 when the
/// idle timeout passes. (The SDK keeps connections alive with the `ping` action, a data frame.)
#[test]
fn pings_do_not_hold_off_the_idle_timeout() -> anyhow::Result<()> {
    const IDLE: Duration = Duration::from_secs(2);
    let dir = tempfile::tempdir()?;
    let server = Server::start(
        dir.path(),
        0,
        &["--idle-timeout-secs", &IDLE.as_secs().to_string()],
    )?;
    let target = server.target();
    runtime().block_on(async {
        let token = target.token("pinger", &["*"]);
        // Before the upgrade: the server's idle clock starts after it.
        let started = Instant::now();
        let mut socket =
            raw::RawSocket::connect(std::net::Ipv4Addr::LOCALHOST, target.port, &token).await?;
        let ping = raw::frame(true, raw::opcode::PING, b"still here", true);
        let mut pongs = 0;
        let code = 'pinging: loop {
            anyhow::ensure!(
                started.elapsed() < 4 * IDLE,
                "still open after {:?} of pings ({pongs} pongs)",
                started.elapsed()
            );
            socket.send(&ping).await?;
            let next_ping = Instant::now() + IDLE / 5;
            while let Some(frame) = socket.next_frame(next_ping).await? {
                match frame.opcode {
                    raw::opcode::PONG => pongs += 1,
                    raw::opcode::CLOSE => break 'pinging frame.close_code(),
                    _ => {}
                }
            }
        };
        let after = started.elapsed();
        anyhow::ensure!(
            // (Less a few milliseconds: the server's clock counts whole ones.)
            code == Some(1001) && after + Duration::from_millis(20) >= IDLE && pongs >= 3,
            "closed {code:?} after {after:?} and {pongs} pongs: want 1001 once the idle timeout ({IDLE:?}) passed"
        );
        anyhow::Ok(())
    })
}
