//! Issue 15 against the real `roomcast-local` binary: connections that never finish a request
//! (slowloris), too many connections from one address or in total, and WebSocket frames that
//! break the protocol. Clients write raw bytes (`raw/`); ordinary clients from another loopback
//! address check that the server keeps serving everyone else meanwhile.
#![cfg(target_os = "linux")]

mod process;
mod raw;

use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use anyhow::{Context, ensure};
use futures::future::join_all;
use process::{Server, Target, runtime};
use raw::{Fate, RawSocket, connect_from, fate, frame, health_from, opcode};
use roomcast_local::listener::{DEFAULT_HEADER_READ_TIMEOUT, PER_IP_HTTP_ALLOWANCE};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

/// Where ordinary clients connect from (the protocol suite's client and `/health` checks).
const GOOD: Ipv4Addr = Ipv4Addr::LOCALHOST;
/// Where the attacker connects from: another client address on this host.
const ATTACKER: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 2);
/// How long a refused connection may take to be closed, and an accepted one must stay open to
/// count as accepted.
const SETTLE: Duration = Duration::from_secs(1);

/// Opens `n` connections from `source` that send nothing.
async fn idle_sockets(source: Ipv4Addr, port: u16, n: usize) -> anyhow::Result<Vec<TcpStream>> {
    let mut sockets = Vec::with_capacity(n);
    for _ in 0..n {
        sockets.push(connect_from(source, port).await?);
    }
    Ok(sockets)
}

/// Each socket's fate within `within`, watched concurrently.
async fn fates(sockets: &mut [TcpStream], within: Duration) -> Vec<Fate> {
    join_all(sockets.iter_mut().map(|s| fate(s, within))).await
}

fn count(fates: &[Fate], pred: impl Fn(&Fate) -> bool) -> usize {
    fates.iter().filter(|f| pred(f)).count()
}

/// An ordinary client still gets everything done: `/health`, a WebSocket, a message delivered
/// to another member of the room and acknowledged.
async fn others_are_served(target: &Target, label: &str) -> anyhow::Result<()> {
    let status = health_from(GOOD, target.port, Duration::from_secs(5)).await?;
    ensure!(status == 200, "{label}: /health answered {status}");
    let mut alice = target.connect(&format!("{label}-alice")).await?;
    alice.join("lobby").await?;
    let mut bob = target.connect(&format!("{label}-bob")).await?;
    bob.join("lobby").await?;
    alice.message("lobby", label, "still here").await?;
    let m = bob.expect_message("lobby").await?;
    ensure!(m["id"] == label, "{label}: {m}");
    alice.close().await?;
    bob.close().await?;
    Ok(())
}

/// Slowloris, part 1: an address may not hold more connections than its cap
/// (`--max-connections-per-ip` plus the HTTP allowance). The excess is closed as soon as it is
/// accepted, before any HTTP is read, while other addresses are served as usual; and a closed
/// connection frees its place.
#[test]
fn connections_over_an_address_cap_are_closed_when_accepted() -> anyhow::Result<()> {
    const WEBSOCKETS_PER_IP: usize = 10;
    const CAP: usize = WEBSOCKETS_PER_IP + PER_IP_HTTP_ALLOWANCE;
    const OVER: usize = 26;
    let dir = tempfile::tempdir()?;
    let server = Server::start(
        dir.path(),
        0,
        &["--max-connections-per-ip", &WEBSOCKETS_PER_IP.to_string()],
    )?;
    let target = server.target();
    runtime().block_on(async {
        let mut sockets = idle_sockets(ATTACKER, target.port, CAP + OVER).await?;
        let seen = fates(&mut sockets, SETTLE).await;
        let closed = count(&seen, |f| matches!(f, Fate::Closed(0)));
        let open = count(&seen, |f| *f == Fate::Open);
        eprintln!(
            "hardening: {} idle sockets from one address: {open} held, {closed} closed at accept",
            CAP + OVER
        );
        ensure!(
            open == CAP && closed == OVER,
            "want {CAP} held and {OVER} closed unanswered, got {seen:?}"
        );
        // The cap is per address: others are served as usual, the attacker not even for HTTP.
        others_are_served(&target, "per-ip").await?;
        ensure!(
            health_from(ATTACKER, target.port, SETTLE).await.is_err(),
            "the capped address was served"
        );
        // Its closed connections free their places.
        sockets.truncate(CAP - 5);
        tokio::time::sleep(Duration::from_millis(200)).await;
        let status = health_from(ATTACKER, target.port, Duration::from_secs(5)).await?;
        ensure!(
            status == 200,
            "after closing some: /health answered {status}"
        );
        anyhow::Ok(())
    })
}

/// Slowloris, part 2: a connection that does not finish its request head within the header
/// timeout is closed, whether it sends nothing or trickles a header byte by byte; meanwhile,
/// with the attacker's address over its cap, everyone else is served.
#[test]
fn connections_without_a_request_head_are_closed_after_the_header_timeout() -> anyhow::Result<()> {
    const WEBSOCKETS_PER_IP: usize = 10;
    const CAP: usize = WEBSOCKETS_PER_IP + PER_IP_HTTP_ALLOWANCE;
    const TRICKLING: usize = 10;
    let dir = tempfile::tempdir()?;
    let server = Server::start(
        dir.path(),
        0,
        &["--max-connections-per-ip", &WEBSOCKETS_PER_IP.to_string()],
    )?;
    let target = server.target();
    runtime().block_on(async {
        let started = Instant::now();
        let mut trickling = idle_sockets(ATTACKER, target.port, TRICKLING).await?;
        for s in &mut trickling {
            s.write_all(b"GET / HTTP/1.1\r\nHost: localhost\r\nX-Slow: ").await?;
        }
        // Past the address's cap: the excess is closed at once.
        let mut idle = idle_sockets(ATTACKER, target.port, CAP).await?;
        let trickler = tokio::spawn(async move {
            // One byte a second from each: hyper's deadline is for the whole head.
            loop {
                for s in &mut trickling {
                    if s.write_all(b"a").await.is_err() {
                        return trickling;
                    }
                }
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        });
        others_are_served(&target, "slowloris").await?;
        let timeout = DEFAULT_HEADER_READ_TIMEOUT;
        // Well before the timeout the held ones are open; all of them are closed soon after it.
        let early = fates(&mut idle, timeout.saturating_sub(started.elapsed() + SETTLE)).await;
        let held = count(&early, |f| *f == Fate::Open);
        ensure!(
            held == CAP - TRICKLING,
            "want {} idle sockets held until the timeout, got {early:?}",
            CAP - TRICKLING
        );
        let late = fates(&mut idle, 3 * SETTLE).await;
        ensure!(
            late.iter().all(|f| *f != Fate::Open),
            "idle sockets still open {:?} after connecting: {late:?}",
            started.elapsed()
        );
        let mut trickling = tokio::time::timeout(3 * SETTLE, trickler)
            .await
            .context("the trickling connections were not closed")??;
        let trickled = fates(&mut trickling, SETTLE).await;
        ensure!(
            trickled.iter().all(|f| *f != Fate::Open),
            "trickling connections still open: {trickled:?}"
        );
        eprintln!(
            "hardening: {CAP} idle and {TRICKLING} trickling connections closed {:?} after they opened (header timeout {timeout:?})",
            started.elapsed()
        );
        // Their places are free again.
        let status = health_from(ATTACKER, target.port, Duration::from_secs(5)).await?;
        ensure!(status == 200, "after the timeout: /health answered {status}");
        anyhow::Ok(())
    })
}

/// Slowloris, part 3: however many addresses take part, the server holds at most its
/// connection cap, which defaults to below its open-file limit: past it new connections are
/// closed when accepted, while those already open keep working, and the descriptors the server
/// needs for itself stay free. (Before the cap, 1,100 idle sockets exhausted a 1,024-file
/// limit: accepts failed and real clients timed out.)
#[test]
fn the_connection_cap_stays_below_the_open_file_limit() -> anyhow::Result<()> {
    const OPEN_FILES: u64 = 256;
    // The default cap: the limit less an eighth of it, at least 64 (listener.rs).
    const CAP: usize = (OPEN_FILES - 64) as usize;
    const ATTACKERS: [Ipv4Addr; 3] = [
        Ipv4Addr::new(127, 0, 0, 2),
        Ipv4Addr::new(127, 0, 0, 3),
        Ipv4Addr::new(127, 0, 0, 4),
    ];
    const EACH: usize = 85;
    let dir = tempfile::tempdir()?;
    let server = Server::start_with_open_files(dir.path(), OPEN_FILES, &[])?;
    let target = server.target();
    runtime().block_on(async {
        let mut alice = target.connect("alice").await?;
        alice.join("lobby").await?;
        let mut bob = target.connect("bob").await?;
        bob.join("lobby").await?;
        let mut sockets = Vec::new();
        for attacker in ATTACKERS {
            sockets.extend(idle_sockets(attacker, target.port, EACH).await?);
        }
        let seen = fates(&mut sockets, SETTLE).await;
        let held = count(&seen, |f| *f == Fate::Open);
        let closed = count(&seen, |f| matches!(f, Fate::Closed(0)));
        eprintln!(
            "hardening: open-file limit {OPEN_FILES}: {} idle sockets from {} addresses, {held} held, {closed} closed at accept",
            sockets.len(),
            ATTACKERS.len()
        );
        ensure!(
            held == CAP - 2 && closed == sockets.len() - held,
            "want {} held (the cap of {CAP} less the 2 WebSockets) and the rest closed, got {seen:?}",
            CAP - 2
        );
        // The sockets already open keep working; new connections, from anyone, are refused.
        alice.message("lobby", "at-cap", "still here").await?;
        let m = bob.expect_message("lobby").await?;
        ensure!(m["id"] == "at-cap", "{m}");
        ensure!(
            health_from(GOOD, target.port, SETTLE).await.is_err(),
            "served a new connection past the cap"
        );
        // Room again once some close.
        sockets.truncate(held / 2);
        let deadline = Instant::now() + Duration::from_secs(5);
        while health_from(GOOD, target.port, SETTLE).await.is_err() {
            ensure!(Instant::now() < deadline, "no room after closing half the idle sockets");
        }
        others_are_served(&target, "after-cap").await?;
        alice.close().await?;
        bob.close().await?;
        anyhow::Ok(())
    })
}

/// Opens a socket for `user`, sends `bytes` on it, and returns the close code the server sent
/// before the connection ended.
async fn close_code_after(target: &Target, user: &str, bytes: &[u8]) -> anyhow::Result<u16> {
    let mut socket = RawSocket::connect(GOOD, target.port, &target.token(user, &["*"])).await?;
    socket.send(bytes).await?;
    let (code, _) = socket
        .expect_close(Duration::from_secs(5))
        .await
        .with_context(|| format!("{user}: after {bytes:02x?}"))?;
    Ok(code)
}

/// A text frame that is not UTF-8 gets close 1007 (invalid frame payload data) before the
/// socket ends, whether in one frame or across fragments.
#[test]
fn text_that_is_not_utf8_is_closed_with_1007() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let server = Server::start(dir.path(), 0, &[])?;
    let target = server.target();
    runtime().block_on(async {
        let whole = frame(true, opcode::TEXT, b"{\"action\":\"ping\xff\xfe\"}", true);
        let cut_short = frame(true, opcode::TEXT, b"caf\xc3", true);
        let mut fragmented = frame(false, opcode::TEXT, b"{\"action\":", true);
        fragmented.extend(frame(
            true,
            opcode::CONTINUATION,
            b"\"\xed\xa0\x80\"}",
            true,
        ));
        for (name, bytes) in [
            ("one-frame", whole),
            ("truncated", cut_short),
            ("fragmented", fragmented),
        ] {
            let code = close_code_after(&target, name, &bytes).await?;
            ensure!(code == 1007, "{name}: closed {code}, want 1007");
        }
        others_are_served(&target, "utf8").await
    })
}

/// Any other violation of RFC 6455 gets close 1002 (protocol error) before the socket ends.
#[test]
fn protocol_violations_are_closed_with_1002() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let server = Server::start(dir.path(), 0, &[])?;
    let target = server.target();
    let ping = br#"{"action":"ping"}"#;
    let mut reserved_bit = frame(true, opcode::TEXT, ping, true);
    reserved_bit[0] |= 0x40;
    let mut interrupted = frame(false, opcode::TEXT, b"{\"action\":", true);
    interrupted.extend(frame(true, opcode::TEXT, ping, true));
    let cases: [(&str, Vec<u8>); 8] = [
        ("reserved-bit", reserved_bit),
        ("unmasked", frame(true, opcode::TEXT, ping, false)),
        ("fragmented-ping", frame(false, opcode::PING, b"p", true)),
        ("long-ping", frame(true, opcode::PING, &[b'p'; 126], true)),
        (
            "orphan-continuation",
            frame(true, opcode::CONTINUATION, ping, true),
        ),
        ("interrupted-message", interrupted),
        ("unknown-opcode", frame(true, 0x3, ping, true)),
        ("one-byte-close", frame(true, opcode::CLOSE, &[3], true)),
    ];
    runtime().block_on(async {
        for (name, bytes) in &cases {
            let code = close_code_after(&target, name, bytes).await?;
            ensure!(code == 1002, "{name}: closed {code}, want 1002");
        }
        others_are_served(&target, "violations").await
    })
}

/// The close handshake: a client's close frame is answered with the server's before the
/// connection ends (RFC 6455 §5.5.1), echoing its code, or 1002 for a code no endpoint may send.
#[test]
fn a_client_close_is_answered_with_a_close_frame() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let server = Server::start(dir.path(), 0, &[])?;
    let target = server.target();
    runtime().block_on(async {
        // 1005 means "no code" and must never be sent (RFC 6455 §7.4.1).
        for (sent, answered) in [(1000u16, 1000u16), (4000, 4000), (1005, 1002)] {
            let code = close_code_after(
                &target,
                &format!("closer-{sent}"),
                &frame(true, opcode::CLOSE, &sent.to_be_bytes(), true),
            )
            .await?;
            ensure!(
                code == answered,
                "closed with {sent}: answered {code}, want {answered}"
            );
        }
        anyhow::Ok(())
    })
}
