//! Abuse of the real `roomcast-local` binary (issue 8, "Attacks"; issue 15): floods closed with
//! 4008, connection limits per user and per address, oversized and binary frames, slow readers,
//! thousands of joins, ping floods whose pongs nobody reads, and request heads that never end —
//! each run while the server's resident memory (`VmRSS` of `/proc/<pid>/status`) is sampled,
//! asserting that it stays bounded during the pattern and returns near its baseline after. The
//! figures are printed (`--nocapture` shows them).
#![cfg(target_os = "linux")]

mod process;
mod raw;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail, ensure};
use futures::future::join_all;
use process::{Server, Target, metric, rss_of, runtime};
use roomcast_core::limits::{
    DEFAULT_MAX_CONNECTIONS_PER_USER, MAX_BODY_BYTES, MAX_FRAME_BYTES, MAX_ROOMS_PER_CONNECTION,
    OUTBOUND_QUEUE_BYTES,
};
use roomcast_core::ratelimit::RatePolicy;
use roomcast_protocol_tests::client::{Client, ConnectError, Credentials, frame_type};
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const MIB: u64 = 1024 * 1024;
/// How much a pattern may leave behind once its connections are gone (allocator slack, store
/// caches): far below what any of them would leak if something grew without bound.
const MAX_GROWTH_AFTER: u64 = 48 * MIB;

/// Waits until the server holds `n` connections (closed sockets are released asynchronously).
async fn connections_drop_to(port: u16, n: u64) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let now = metric(port, "roomcast_connections").await?;
        if now <= n {
            return Ok(());
        }
        ensure!(
            Instant::now() < deadline,
            "still {now} connections, want {n}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Samples a process's RSS every 20 ms; the peak since it started.
struct PeakSampler {
    peak: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl PeakSampler {
    fn start(pid: u32) -> Self {
        let peak = Arc::new(AtomicU64::new(rss_of(pid).unwrap_or(0)));
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let (peak, stop) = (peak.clone(), stop.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    if let Ok(rss) = rss_of(pid) {
                        peak.fetch_max(rss, Ordering::Relaxed);
                    }
                    std::thread::sleep(Duration::from_millis(20));
                }
            })
        };
        Self {
            peak,
            stop,
            thread: Some(thread),
        }
    }

    fn finish(mut self) -> u64 {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        self.peak.load(Ordering::Relaxed)
    }
}

/// One pattern's memory figures.
struct Figures {
    pattern: &'static str,
    before: u64,
    peak: u64,
    after: u64,
}

impl Figures {
    fn print(&self) {
        let mb = |b: u64| b as f64 / MIB as f64;
        eprintln!(
            "abuse: {:<44} RSS before {:>6.1} MB, peak {:>6.1} MB (+{:>5.1}), after {:>6.1} MB (+{:>5.1})",
            self.pattern,
            mb(self.before),
            mb(self.peak),
            mb(self.peak.saturating_sub(self.before)),
            mb(self.after),
            mb(self.after.saturating_sub(self.before)),
        );
    }
}

/// Runs `pattern` against `server`, sampling its RSS; asserts the peak grew at most
/// `max_peak_growth` and that, once the pattern's connections are gone, at most
/// [`MAX_GROWTH_AFTER`] is left.
async fn measured<F, Fut>(
    server: &Server,
    name: &'static str,
    max_peak_growth: u64,
    pattern: F,
) -> anyhow::Result<Figures>
where
    F: FnOnce() -> Fut,
    Fut: Future<Output = anyhow::Result<()>>,
{
    let before = server.rss()?;
    let sampler = PeakSampler::start(server.pid());
    let result = pattern().await;
    connections_drop_to(server.port, 0).await?;
    // Let the server finish disconnect processing before the reading.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let peak = sampler.finish();
    let after = server.rss()?;
    let figures = Figures {
        pattern: name,
        before,
        peak,
        after,
    };
    figures.print();
    result.with_context(|| format!("pattern `{name}`"))?;
    ensure!(
        peak.saturating_sub(before) <= max_peak_growth,
        "{name}: RSS peaked {} MB above its start (bound {} MB)",
        peak.saturating_sub(before) / MIB,
        max_peak_growth / MIB
    );
    ensure!(
        after.saturating_sub(before) <= MAX_GROWTH_AFTER,
        "{name}: {} MB more RSS after the pattern (bound {} MB)",
        after.saturating_sub(before) / MIB,
        MAX_GROWTH_AFTER / MIB
    );
    Ok(figures)
}

async fn expect_refused(target: &Target, token: &str, status: u16) -> anyhow::Result<()> {
    match Client::try_connect(target, Credentials::Query(token), "refused").await {
        Err(ConnectError::Refused { status: got, body }) => {
            ensure!(got == status, "expected HTTP {status}, got {got} `{body}`");
            Ok(())
        }
        Err(ConnectError::Failed(e)) => Err(e.context(format!("expected HTTP {status}"))),
        Ok(_) => bail!("expected HTTP {status}, but the upgrade succeeded"),
    }
}

/// Floods at the default rate limit: every flooder is rate limited, then closed with 4008. And
/// the connection limits: per user (429 over 20) and per address (429 over
/// `--max-connections-per-ip`, before the token is looked at; a closed connection frees its
/// slot).
#[test]
fn floods_and_connection_limits_keep_memory_bounded() -> anyhow::Result<()> {
    const FLOODERS: usize = 40;
    const PER_IP: usize = 60;
    let dir = tempfile::tempdir()?;
    let server = Server::start(
        dir.path(),
        0,
        &["--max-connections-per-ip", &PER_IP.to_string()],
    )?;
    let target = server.target();
    runtime().block_on(async {
        // Warm up the allocator and the store, so the baseline is a running server's.
        let mut warm = target.connect("warm").await?;
        warm.join("warm").await?;
        warm.message("warm", "w1", "warm up").await?;
        warm.close().await?;
        connections_drop_to(target.port, 0).await?;

        measured(
            &server,
            "flood: 40 connections at full speed",
            32 * MIB,
            || async {
                let mut flooders = Vec::new();
                for i in 0..FLOODERS {
                    let mut c = target.connect(&format!("flooder-{i}")).await?;
                    c.join("flooded").await?;
                    flooders.push(c);
                }
                let tasks: Vec<_> = flooders
                    .into_iter()
                    .map(|mut c| {
                        tokio::spawn(async move {
                            let ping = json!({"action": "ping"});
                            for _ in 0..400 {
                                if c.send_json(&ping).await.is_err() {
                                    break;
                                }
                            }
                            let (frames, code, _) =
                                c.expect_close_within(Duration::from_secs(10)).await?;
                            let limited = frames
                                .iter()
                                .filter(|f| frame_type(f) == "error" && f["code"] == "RATE_LIMITED")
                                .count();
                            ensure!(
                                code == 4008 && limited > 0,
                                "closed {code} after {limited} RATE_LIMITED"
                            );
                            anyhow::Ok(())
                        })
                    })
                    .collect();
                for t in tasks {
                    t.await??;
                }
                Ok(())
            },
        )
        .await?;

        measured(
            &server,
            "connection limits: per user and per address",
            32 * MIB,
            || async {
                let token = target.token("alice", &["*"]);
                let mut held = Vec::new();
                for _ in 0..DEFAULT_MAX_CONNECTIONS_PER_USER {
                    held.push(Client::connect(&target, &token, "alice").await?);
                }
                expect_refused(&target, &token, 429)
                    .await
                    .context("one connection over the per-user limit")?;
                let mut n = 0;
                while held.len() < PER_IP {
                    held.push(target.connect(&format!("user-{n}")).await?);
                    n += 1;
                }
                expect_refused(&target, &target.token("newcomer", &["*"]), 429)
                    .await
                    .context("a valid token over the per-address limit")?;
                expect_refused(&target, "not.a.jwt", 429)
                    .await
                    .context("the address limit is checked before the token")?;
                // Hammering the limit holds nothing.
                for _ in 0..200 {
                    expect_refused(&target, &token, 429).await?;
                }
                if let Some(c) = held.pop() {
                    c.close().await?;
                }
                let deadline = Instant::now() + Duration::from_secs(10);
                let again = loop {
                    match Client::try_connect(
                        &target,
                        Credentials::Query(&target.token("newcomer", &["*"])),
                        "newcomer",
                    )
                    .await
                    {
                        Ok(c) => break c,
                        Err(_) if Instant::now() < deadline => {
                            tokio::time::sleep(Duration::from_millis(50)).await;
                        }
                        Err(e) => bail!("a closed connection must free its address slot: {e}"),
                    }
                };
                drop(again);
                drop(held);
                Ok(())
            },
        )
        .await?;
        anyhow::Ok(())
    })
}

/// Slow readers, oversized and binary frames, and thousands of joins, on a server with the rate
/// limit raised (so the patterns go at full speed).
#[test]
fn slow_readers_bad_frames_and_join_churn_keep_memory_bounded() -> anyhow::Result<()> {
    const HOGS: usize = 4;
    const STALLED: usize = 4;
    let dir = tempfile::tempdir()?;
    let server = Server::start(
        dir.path(),
        0,
        &["--rate-per-sec", "100000", "--rate-burst", "100000"],
    )?;
    let target = server.target();
    let queue = OUTBOUND_QUEUE_BYTES as u64;
    runtime().block_on(async {
        // A room of 100 maximum-size messages: each `history` page of it is ~128 KB.
        let mut writer = target.connect("writer").await?;
        writer.join("big").await?;
        let body = "x".repeat(MAX_BODY_BYTES);
        for i in 0..100 {
            writer.message("big", &format!("big-{i}"), &body).await?;
        }
        writer.close().await?;
        connections_drop_to(target.port, 0).await?;

        // Readers that never read, each asking for 128 KB history pages: without a byte bound on
        // the outbound queue each could hold 1024 × 128 KB = 128 MB; with it, 8 MB each.
        let slow_before = metric(target.port, "roomcast_slow_consumers_total").await?;
        measured(&server, "slow readers: 4 never-reading history hogs", HOGS as u64 * queue + 48 * MIB, || async {
            let mut hogs = Vec::new();
            for i in 0..HOGS {
                let mut c = target.connect(&format!("hog-{i}")).await?;
                c.join("big").await?;
                hogs.push(c);
            }
            let request = json!({"action": "history", "room": "big", "limit": 100});
            for c in &mut hogs {
                // Far past what the socket buffers and the queue can hold; the server closes
                // the socket (4009) and the sends start failing.
                for _ in 0..600 {
                    if c.send_json(&request).await.is_err() {
                        break;
                    }
                }
            }
            // Each request is a 128 KB page read and serialized (slow in a debug build, on a
            // loaded machine): generous.
            let deadline = Instant::now() + Duration::from_secs(120);
            while metric(target.port, "roomcast_slow_consumers_total").await? < slow_before + HOGS as u64 {
                ensure!(Instant::now() < deadline, "the hogs were not all closed as slow consumers");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            drop(hogs);
            Ok(())
        })
        .await?;

        // Stalled members of a busy room: each is closed at its bound, while a member who reads
        // gets every message.
        let slow_before = metric(target.port, "roomcast_slow_consumers_total").await?;
        measured(&server, "slow readers: 4 stalled members of a busy room", STALLED as u64 * queue + 48 * MIB, || async {
            let mut stalled = Vec::new();
            for i in 0..STALLED {
                let mut c = target.connect(&format!("stalled-{i}")).await?;
                c.join("busy").await?;
                stalled.push(c);
            }
            let mut reader = target.connect("reader").await?;
            reader.join("busy").await?;
            let mut sender = target.connect("sender").await?;
            sender.join("busy").await?;
            let big = "y".repeat(MAX_BODY_BYTES);
            let mut sent = 0;
            let deadline = Instant::now() + Duration::from_secs(120);
            while metric(target.port, "roomcast_slow_consumers_total").await? < slow_before + STALLED as u64 {
                ensure!(Instant::now() < deadline, "the stalled members were not all closed");
                for _ in 0..50 {
                    sender.message("busy", &format!("b-{sent}"), &big).await?;
                    sent += 1;
                    let m = reader.expect_message("busy").await?;
                    ensure!(m["id"] == format!("b-{}", sent - 1), "the reader gets every message in order: {m}");
                }
            }
            eprintln!("abuse: {sent} messages of {MAX_BODY_BYTES} bytes closed {STALLED} stalled members");
            drop(stalled);
            Ok(())
        })
        .await?;

        measured(&server, "oversized (1009) and binary (1003) frames", 32 * MIB, || async {
            let oversized = "z".repeat(MAX_FRAME_BYTES + 1);
            for i in 0..100 {
                let mut c = target.connect(&format!("big-frame-{i}")).await?;
                c.send_text(format!(r#"{{"action":"ping","pad":"{oversized}"}}"#)).await?;
                let (code, _) = c.expect_close().await?;
                ensure!(code == 1009, "oversized frame: closed {code}");
                let mut c = target.connect(&format!("binary-{i}")).await?;
                c.send_binary(vec![0u8; 1024]).await?;
                let (code, _) = c.expect_close().await?;
                ensure!(code == 1003, "binary frame: closed {code}");
            }
            Ok(())
        })
        .await?;

        measured(&server, "joins: 2000 join/leave of one room, 1000 rooms", 32 * MIB, || async {
            let mut c = target.connect("churner").await?;
            for i in 0..2000 {
                c.send_json(&json!({"action": "join", "room": "churn"})).await?;
                c.send_json(&json!({"action": "leave", "room": "churn"})).await?;
                if i % 100 == 99 {
                    c.sync().await?;
                }
            }
            c.sync().await?;
            let mut wide = target.connect("wanderer").await?;
            for round in 0..10 {
                for r in 0..MAX_ROOMS_PER_CONNECTION {
                    wide.send_json(&json!({"action": "join", "room": format!("r{round}-{r}")})).await?;
                }
                wide.send_json(&json!({"action": "join", "room": "one-too-many", "ref": "over"})).await?;
                let error = wide.expect_error("LIMIT_EXCEEDED").await?;
                ensure!(error["ref"] == "over", "{error}");
                for r in 0..MAX_ROOMS_PER_CONNECTION {
                    wide.send_json(&json!({"action": "leave", "room": format!("r{round}-{r}")})).await?;
                }
                wide.sync().await?;
            }
            let rooms = metric(target.port, "roomcast_rooms").await?;
            ensure!(rooms == 0, "every room was left, yet {rooms} have subscribers");
            Ok(())
        })
        .await?;
        anyhow::Ok(())
    })
}

/// How long each ping flooder floods.
const FLOOD: Duration = Duration::from_secs(3);
/// RSS growth at which a flood stops early: far past any bound below, well short of what an
/// unbounded server would reach (gigabytes in seconds, issue 15), so a regression fails without
/// taking the machine's memory.
const FLOOD_ABORT_GROWTH: u64 = 512 * MIB;

/// `n` authenticated raw sockets.
async fn raw_sockets(
    target: &Target,
    label: &str,
    n: usize,
) -> anyhow::Result<Vec<raw::RawSocket>> {
    let mut sockets = Vec::with_capacity(n);
    for i in 0..n {
        let token = target.token(&format!("{label}-{i}"), &["*"]);
        sockets.push(
            raw::RawSocket::connect(std::net::Ipv4Addr::LOCALHOST, target.port, &token).await?,
        );
    }
    Ok(sockets)
}

/// Writes 125-byte pings on `socket` as fast as the server takes them, never reading, for
/// [`FLOOD`] or until the server's RSS has grown [`FLOOD_ABORT_GROWTH`] past `baseline`, or
/// the server stops taking them. Returns how many it wrote.
async fn flood_pings(
    socket: &mut raw::RawSocket,
    pid: u32,
    baseline: u64,
) -> anyhow::Result<usize> {
    const PER_WRITE: usize = 1000;
    let ping = raw::frame(true, raw::opcode::PING, &[b'p'; 125], true);
    let batch = ping.repeat(PER_WRITE);
    let started = Instant::now();
    let mut sent = 0;
    while started.elapsed() < FLOOD {
        if process::rss_of(pid)?.saturating_sub(baseline) > FLOOD_ABORT_GROWTH {
            break;
        }
        if !socket
            .send_within(&batch, Duration::from_millis(500))
            .await
            .unwrap_or(false)
        {
            break;
        }
        sent += PER_WRITE;
    }
    Ok(sent)
}

/// While `flooding` runs, an ordinary client keeps messaging another and `/health` keeps
/// answering; returns the slowest round trip seen.
async fn served_meanwhile<F: Future<Output = anyhow::Result<()>>>(
    target: &Target,
    flooding: F,
) -> anyhow::Result<Duration> {
    let mut alice = target.connect("bystander-alice").await?;
    alice.join("bystanders").await?;
    let mut bob = target.connect("bystander-bob").await?;
    bob.join("bystanders").await?;
    let (flooded, slowest) = tokio::join!(flooding, async {
        let mut slowest = Duration::ZERO;
        for i in 0..10 {
            let started = Instant::now();
            let id = format!("b-{i}");
            alice.message("bystanders", &id, "still here").await?;
            let m = bob.expect_message("bystanders").await?;
            ensure!(m["id"] == id, "{m}");
            let status = raw::health_from(
                std::net::Ipv4Addr::LOCALHOST,
                target.port,
                Duration::from_secs(5),
            )
            .await?;
            ensure!(status == 200, "/health answered {status}");
            slowest = slowest.max(started.elapsed());
            tokio::time::sleep(FLOOD / 10).await;
        }
        anyhow::Ok(slowest)
    });
    flooded?;
    let slowest = slowest?;
    alice.close().await?;
    bob.close().await?;
    Ok(slowest)
}

/// Issue 15: pings are frames for the rate limit. Four connections that ping as fast as they
/// can without reading get at most a rate limit's worth of pongs (the burst and the strikes),
/// then close 4008; memory stays flat and everyone else is served meanwhile.
#[test]
fn ping_floods_are_closed_with_4008() -> anyhow::Result<()> {
    const FLOODERS: usize = 4;
    let dir = tempfile::tempdir()?;
    // The default rate limit (`--rate-*` unset): the core's RatePolicy.
    let server = Server::start(dir.path(), 0, &[])?;
    let policy = RatePolicy::default();
    let most_pongs = (policy.burst + policy.max_strikes + 1) as usize;
    let target = server.target();
    let pid = server.pid();
    runtime().block_on(async {
        let baseline = server.rss()?;
        measured(&server, "ping flood: 4 connections, default rate", 16 * MIB, || async {
            let flooders = raw_sockets(&target, "pinger", FLOODERS).await?;
            let floods = flooders.into_iter().map(|mut socket| {
                tokio::spawn(async move {
                    let sent = flood_pings(&mut socket, pid, baseline).await?;
                    let (code, before) = socket.expect_close(Duration::from_secs(10)).await?;
                    let pongs = before.iter().filter(|f| f.opcode == raw::opcode::PONG).count();
                    ensure!(code == 4008, "closed {code} after {sent} pings and {pongs} pongs");
                    ensure!(
                        pongs <= most_pongs,
                        "{pongs} pongs for {sent} pings: more than the rate limit allows ({most_pongs})"
                    );
                    anyhow::Ok((sent, pongs))
                })
            });
            let slowest = served_meanwhile(&target, async {
                for flood in join_all(floods).await {
                    let (sent, pongs) = flood??;
                    eprintln!("abuse: ping flooder wrote {sent} pings, got {pongs} pongs, then 4008");
                }
                Ok(())
            })
            .await?;
            eprintln!("abuse: slowest bystander round trip (message + /health) during the ping flood: {slowest:?}");
            Ok(())
        })
        .await?;
        anyhow::Ok(())
    })
}

/// Issue 15: with the rate limit out of the way, what bounds a ping flood is tungstenite's
/// write buffer. Four connections pinging at full speed without reading for three seconds:
/// the server's memory stays flat (it reached gigabytes before the bound) and everyone else is
/// served meanwhile.
#[test]
fn unread_pongs_do_not_grow_memory() -> anyhow::Result<()> {
    const FLOODERS: usize = 4;
    let dir = tempfile::tempdir()?;
    let server = Server::start(
        dir.path(),
        0,
        &["--rate-per-sec", "1000000000", "--rate-burst", "1000000000"],
    )?;
    let target = server.target();
    let pid = server.pid();
    runtime().block_on(async {
        let baseline = server.rss()?;
        measured(&server, "ping flood: 4 connections, no rate limit", 16 * MIB, || async {
            let flooders = raw_sockets(&target, "pinger", FLOODERS).await?;
            let floods = flooders.into_iter().map(|mut socket| {
                tokio::spawn(async move {
                    let sent = flood_pings(&mut socket, pid, baseline).await?;
                    anyhow::Ok((sent, socket))
                })
            });
            let slowest = served_meanwhile(&target, async {
                for flood in join_all(floods).await {
                    let (sent, _socket) = flood??;
                    eprintln!("abuse: unlimited ping flooder wrote {sent} pings without reading");
                }
                Ok(())
            })
            .await?;
            eprintln!("abuse: slowest bystander round trip (message + /health) during the ping flood: {slowest:?}");
            Ok(())
        })
        .await?;
        anyhow::Ok(())
    })
}

/// Issue 15: a request head is read up to 16 KiB. Five hundred connections each sending 384 KB
/// of headers that never end are refused (431, or closed) instead of each buffering it all.
#[test]
fn endless_request_heads_are_refused_at_their_bound() -> anyhow::Result<()> {
    const SOCKETS: usize = 500;
    const HEAD_BYTES: usize = 384 * 1024;
    let dir = tempfile::tempdir()?;
    let server = Server::start(dir.path(), 0, &[])?;
    let target = server.target();
    runtime().block_on(async {
        measured(&server, "500 endless 384 KB request heads", 32 * MIB, || async {
            let line = format!("X-Pad: {}\r\n", "a".repeat(1016));
            let mut sockets = Vec::with_capacity(SOCKETS);
            for _ in 0..SOCKETS {
                let mut socket = raw::connect_from(std::net::Ipv4Addr::LOCALHOST, target.port).await?;
                socket.write_all(b"GET / HTTP/1.1\r\nHost: localhost\r\n").await?;
                sockets.push(socket);
            }
            let outcomes = join_all(sockets.into_iter().map(|mut socket| {
                let line = line.clone();
                async move {
                    let mut sent = 0;
                    while sent < HEAD_BYTES {
                        match tokio::time::timeout(Duration::from_secs(2), socket.write_all(line.as_bytes())).await {
                            Ok(Ok(())) => sent += line.len(),
                            // Refused: the server closed the connection under the writes.
                            Ok(Err(_)) => break,
                            Err(_) => bail!("the server stopped reading after {sent} bytes without closing"),
                        }
                    }
                    let mut response = Vec::new();
                    let read = tokio::time::timeout(Duration::from_secs(5), socket.read_to_end(&mut response)).await;
                    ensure!(read.is_ok(), "still open after {sent} bytes of request head");
                    anyhow::Ok(response.starts_with(b"HTTP/1.1 431"))
                }
            }))
            .await;
            let mut answered_431 = 0;
            for outcome in outcomes {
                answered_431 += usize::from(outcome?);
            }
            eprintln!("abuse: {SOCKETS} endless request heads: {answered_431} answered 431, the rest closed");
            Ok(())
        })
        .await?;
        anyhow::Ok(())
    })
}
