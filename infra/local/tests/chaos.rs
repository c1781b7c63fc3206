//! Client chaos against the real binary (issue 8), under the server's **default** rate limit
//! (10 frames/s per connection, burst 30; the senders pace themselves below it).
//!
//! 1,000 clients (distinct users) in 50 rooms of 20. Four members of every room send 30
//! messages each, up to three in flight. Meanwhile every client drops its socket one to three
//! times at random moments, in one of three ways (a close frame; a FIN without a close frame; a
//! TCP reset), pauses briefly, reconnects and resumes with `join {since}` = the last seq it holds
//! with nothing missing before it. Senders also drop right after sending, before the ack: they
//! resend every unacknowledged client id on the new connection, and sometimes re-send an id
//! that was acknowledged, which must be answered `duplicate` with the original seq. One member
//! per room stays away until the senders are done, so its resume replays more than the 100
//! messages `join` replays and it pages on with `history {after}`.
//!
//! At the end every client resumes once more on a fresh connection and must hold every message
//! of its room exactly once: seqs gap-free 1..=N with N the number of distinct client ids sent
//! to the room, the final replay in seq order, every acknowledged (id, seq) present, and the
//! same log as every other member. The server must have rejected no frame, refused no upgrade,
//! closed no socket itself, and its connection gauge must follow the clients (1,000, then 0).
//!
//! Randomness is seeded (the seed is printed; `ROOMCAST_CHAOS_SEED` replays the schedule: which
//! clients drop when, how, and for how long; the interleaving with the server still varies).
//! Run with `--nocapture` for the figures.
#![cfg(unix)]

mod process;

use std::collections::{BTreeMap, HashSet, VecDeque};
use std::ops::Range;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use anyhow::{Context, bail, ensure};
use process::{Server, Target, metric, runtime};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use roomcast_protocol_tests::client::{Client, frame_type, str_field, u64_field};
use roomcast_protocol_tests::http::Request;
use serde_json::{Value, json};
use tokio::time::Instant;

const CLIENTS: usize = 1_000;
const ROOMS: usize = 50;
const ROOM_SIZE: usize = CLIENTS / ROOMS;
const SENDERS_PER_ROOM: usize = 4;
const MESSAGES_PER_SENDER: usize = 30;
/// Distinct client ids sent to each room: what its head must be at the end.
const PER_ROOM: u64 = (SENDERS_PER_ROOM * MESSAGES_PER_SENDER) as u64;
/// A sender's messages in flight (sent, not yet acknowledged) at most.
const WINDOW: usize = 3;
/// Pause between a sender's messages: at most 8.3 frames/s, under the default 10/s.
const SEND_GAP_MS: Range<u64> = 120..200;
/// Chance that a sender drops its socket right after a send, before the ack can arrive.
const MID_SEND_DROP: f64 = 0.08;
/// Chance that a sender, after a resume, re-sends an id already acknowledged.
const PROBE: f64 = 0.3;
/// Each client drops its socket between 1 and this many times at scheduled moments.
const MAX_DROPS: usize = 3;
/// When the scheduled drops happen, after a client's first join.
const DROP_AT_MS: Range<u64> = 200..5_000;
/// When a room's sleeper drops: early, so that more than a replay's 100 messages pile up.
const SLEEPER_DROP_AT_MS: Range<u64> = 100..800;
/// How long a dropped client stays away (the room's sleeper excepted).
const PAUSE_MS: Range<u64> = 10..300;
/// First connects are spread over this long: a storm, not one burst.
const FIRST_CONNECT_MS: Range<u64> = 0..1_500;
/// Connection attempts before a client gives up (a storm may meet a full accept backlog).
const CONNECT_ATTEMPTS: u32 = 8;
/// How long a sender may wait for an ack before the test fails.
const ACK_STALL: Duration = Duration::from_secs(10);
/// The whole test, start to figures.
const TEST_LIMIT: Duration = Duration::from_secs(120);

/// How a client lets go of its socket.
#[derive(Clone, Copy)]
enum Disconnect {
    /// A close frame (1000), waiting for the server's close.
    Close,
    /// The TCP connection ends with a FIN, no close frame.
    Fin,
    /// The TCP connection ends with a reset.
    Reset,
}

#[derive(Default)]
struct Figures {
    /// By kind: close frame, FIN, reset.
    drops: [u64; 3],
    /// Drops right after a send, before its ack.
    mid_send_drops: u64,
    resumes: u64,
    /// Sends of an id already sent on an earlier connection without an ack.
    resends: u64,
    /// Acks flagged `duplicate` for a resend whose first copy had been stored.
    duplicate_acks: u64,
    /// Re-sends of acknowledged ids answered with the original seq.
    probes: u64,
    acks: u64,
    sent: u64,
    connect_retries: u64,
    history_pages: u64,
    /// `message` frames, `history` entries and acks checked against the log.
    frames_checked: u64,
    /// Messages received again under a seq already held (the client de-duplicates by seq).
    redelivered: u64,
}

impl Figures {
    fn add(&mut self, o: &Self) {
        for (a, b) in self.drops.iter_mut().zip(o.drops) {
            *a += b;
        }
        self.mid_send_drops += o.mid_send_drops;
        self.resumes += o.resumes;
        self.resends += o.resends;
        self.duplicate_acks += o.duplicate_acks;
        self.probes += o.probes;
        self.acks += o.acks;
        self.sent += o.sent;
        self.connect_retries += o.connect_retries;
        self.history_pages += o.history_pages;
        self.frames_checked += o.frames_checked;
        self.redelivered += o.redelivered;
    }
}

/// What every client task shares.
struct Shared {
    target: Target,
    /// Senders with messages not yet acknowledged.
    senders_left: AtomicUsize,
}

/// One client: its connection and everything it saw.
struct Member {
    user: String,
    room: String,
    rng: StdRng,
    client: Option<Client>,
    /// seq → client id of the room, as received (live, replayed, paged, or acked to it).
    log: BTreeMap<u64, String>,
    /// The highest seq with every seq up to it in `log`: the `since` of a resume.
    contiguous: u64,
    /// Own messages not sent on the current connection, in order.
    unsent: VecDeque<String>,
    /// Own messages sent on the current connection, not yet acknowledged, in order.
    in_flight: VecDeque<String>,
    /// Own messages acknowledged: id → seq.
    acked: BTreeMap<String, u64>,
    /// An acknowledged id re-sent on purpose, awaiting its duplicate ack.
    probe: Option<String>,
    /// When the last ack came (or the first send after it): an ack overdue fails the test.
    last_progress: Instant,
    figures: Figures,
}

impl Member {
    fn conn(&mut self) -> &mut Client {
        self.client
            .as_mut()
            .expect("connected between a drop and its resume")
    }

    /// Takes in the message `id` at `seq`; a seq already held must hold the same id.
    fn record(&mut self, seq: u64, id: &str) -> anyhow::Result<()> {
        self.figures.frames_checked += 1;
        match self.log.get(&seq) {
            Some(held) if held != id => {
                bail!(
                    "{} in {}: seq {seq} is both {held} and {id}",
                    self.user,
                    self.room
                )
            }
            Some(_) => self.figures.redelivered += 1,
            None => {
                self.log.insert(seq, id.to_owned());
            }
        }
        while self.log.contains_key(&(self.contiguous + 1)) {
            self.contiguous += 1;
        }
        Ok(())
    }

    fn handle(&mut self, frame: &Value) -> anyhow::Result<()> {
        match frame_type(frame) {
            "message" if frame["room"] == self.room.as_str() => {
                self.record(u64_field(frame, "seq")?, str_field(frame, "id")?)
            }
            "ack" => self.take_ack(frame),
            "error" => bail!("{}: {frame}", self.user),
            // joined, replayed, presence: nothing to check here.
            _ => Ok(()),
        }
    }

    fn take_ack(&mut self, frame: &Value) -> anyhow::Result<()> {
        let id = str_field(frame, "id")?;
        let seq = u64_field(frame, "seq")?;
        let duplicate = frame["duplicate"] == true;
        self.figures.acks += 1;
        if self.probe.as_deref() == Some(id) {
            // The first ack named the seq; a re-send must name the same one and store nothing.
            let original = *self.acked.get(id).context("a probe re-sends an acked id")?;
            ensure!(
                duplicate && seq == original,
                "{}: re-sent {id} (acked at seq {original}) was answered {frame}",
                self.user
            );
            self.probe = None;
            self.figures.probes += 1;
            return Ok(());
        }
        // A connection's frames are handled in order, so its acks come in send order.
        ensure!(
            self.in_flight.front().map(String::as_str) == Some(id),
            "{}: ack {frame} out of order; in flight: {:?}",
            self.user,
            self.in_flight
        );
        self.in_flight.pop_front();
        if duplicate {
            self.figures.duplicate_acks += 1;
        }
        ensure!(
            self.acked.insert(id.to_owned(), seq).is_none(),
            "{}: {id} acknowledged twice",
            self.user
        );
        self.last_progress = Instant::now();
        self.record(seq, id)
    }

    /// Connects (retrying a refused or failed attempt with a growing pause) and joins the room
    /// with `since` = what is held contiguously; takes in the replay, and pages on with
    /// `history` while the server says there is more. Returns the messages replayed and paged,
    /// in the order received.
    async fn resume(&mut self, target: &Target) -> anyhow::Result<Vec<(u64, String)>> {
        let mut attempt = 0;
        let client = loop {
            match target.connect(&self.user).await {
                Ok(client) => break client,
                Err(_) if attempt + 1 < CONNECT_ATTEMPTS => {
                    attempt += 1;
                    self.figures.connect_retries += 1;
                    let pause = self.rng.random_range(50..150u64) << attempt.min(4);
                    tokio::time::sleep(Duration::from_millis(pause)).await;
                }
                Err(e) => return Err(e.context(format!("{}: connecting", self.user))),
            }
        };
        let room = self.room.clone();
        let since = self.contiguous;
        let (_, replayed, end) = self.client.insert(client).join_since(&room, since).await?;
        let mut received = Vec::new();
        for frame in &replayed {
            received.push((u64_field(frame, "seq")?, str_field(frame, "id")?.to_owned()));
        }
        let mut more = end["more"] == true;
        let mut after = u64_field(&end, "through")?;
        while more {
            let page = self
                .conn()
                .history(&room, json!({"after": after, "limit": 100}))
                .await?;
            self.figures.history_pages += 1;
            let messages = page["messages"].as_array().context("history messages")?;
            for m in messages {
                received.push((u64_field(m, "seq")?, str_field(m, "id")?.to_owned()));
            }
            more = page["more"] == true;
            let last = received.last().map_or(after, |(seq, _)| *seq);
            ensure!(
                !more || last > after,
                "{}: history after {after} says more but holds nothing",
                self.user
            );
            after = last;
        }
        for (seq, id) in &received {
            self.record(*seq, id)?;
        }
        self.figures.resumes += 1;
        Ok(received)
    }

    /// Lets go of the socket in `how`; what was in flight is sent again after the resume.
    async fn drop_socket(&mut self, how: Disconnect) -> anyhow::Result<()> {
        let client = self.client.take().expect("connected when dropping");
        match how {
            Disconnect::Close => {
                // The server may be mid-reply; the handshake's outcome does not matter here.
                let _ = client.close().await;
            }
            Disconnect::Fin => drop(client),
            Disconnect::Reset => client.reset()?,
        }
        self.figures.drops[how as usize] += 1;
        self.figures.resends += self.in_flight.len() as u64;
        while let Some(id) = self.in_flight.pop_back() {
            self.unsent.push_front(id);
        }
        // A probe lost with the socket proves nothing either way.
        self.probe = None;
        Ok(())
    }

    async fn send_message(&mut self, id: String) -> anyhow::Result<()> {
        let frame = json!({"action": "message", "room": self.room, "id": id, "body": id});
        self.conn().send_json(&frame).await?;
        if self.in_flight.is_empty() {
            self.last_progress = Instant::now();
        }
        self.in_flight.push_back(id);
        self.figures.sent += 1;
        Ok(())
    }

    /// Drop, pause, resume; a sender sometimes re-sends an id already acknowledged. (What was
    /// in flight is back at the front of `unsent`: the send loop re-sends it first, in order.)
    async fn churn(&mut self, shared: &Shared, sleeper: bool) -> anyhow::Result<()> {
        let how = match self.rng.random_range(0..3) {
            0 => Disconnect::Close,
            1 => Disconnect::Fin,
            _ => Disconnect::Reset,
        };
        self.drop_socket(how).await?;
        if sleeper {
            while shared.senders_left.load(Ordering::Acquire) > 0 {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        } else {
            let pause = self.rng.random_range(PAUSE_MS);
            tokio::time::sleep(Duration::from_millis(pause)).await;
        }
        self.resume(&shared.target).await?;
        if !self.acked.is_empty() && self.rng.random_bool(PROBE) {
            let pick = self.rng.random_range(0..self.acked.len());
            let id = self.acked.keys().nth(pick).expect("in range").clone();
            let frame = json!({"action": "message", "room": self.room, "id": id, "body": id});
            self.conn().send_json(&frame).await?;
            self.figures.sent += 1;
            self.last_progress = Instant::now();
            self.probe = Some(id);
        }
        Ok(())
    }
}

/// One client's chaos: connect, join, then read (and send, for a sender) until its scheduled
/// drops are done and every sender is done. Returns with the connection open.
async fn life(shared: Arc<Shared>, index: usize, seed: u64) -> anyhow::Result<Member> {
    let mut rng = StdRng::seed_from_u64(seed ^ (index as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15));
    // Client `index` is member `index / ROOMS` of room `index % ROOMS`; the first few send.
    let sender = index / ROOMS < SENDERS_PER_ROOM;
    // The last member of every room is its sleeper: away from its first drop until the end.
    let sleeper = index / ROOMS == ROOM_SIZE - 1;
    let user = format!("u{index}");
    let unsent = if sender {
        (0..MESSAGES_PER_SENDER)
            .map(|n| format!("{user}-m{n}"))
            .collect()
    } else {
        VecDeque::new()
    };
    tokio::time::sleep(Duration::from_millis(rng.random_range(FIRST_CONNECT_MS))).await;
    let drops = if sleeper {
        1
    } else {
        rng.random_range(1..=MAX_DROPS)
    };
    let mut member = Member {
        user,
        room: format!("r{}", index % ROOMS),
        rng,
        client: None,
        log: BTreeMap::new(),
        contiguous: 0,
        unsent,
        in_flight: VecDeque::new(),
        acked: BTreeMap::new(),
        probe: None,
        last_progress: Instant::now(),
        figures: Figures::default(),
    };
    member.resume(&shared.target).await?;
    let joined_at = Instant::now();
    let window = if sleeper {
        SLEEPER_DROP_AT_MS
    } else {
        DROP_AT_MS
    };
    let mut drop_at: Vec<Instant> = (0..drops)
        .map(|_| joined_at + Duration::from_millis(member.rng.random_range(window.clone())))
        .collect();
    drop_at.sort();
    let mut drop_at = VecDeque::from(drop_at);
    let mut next_send = Instant::now();
    let mut done_sending = !sender;
    loop {
        let now = Instant::now();
        if !done_sending && member.unsent.is_empty() && member.in_flight.is_empty() {
            done_sending = true;
            shared.senders_left.fetch_sub(1, Ordering::AcqRel);
        }
        if drop_at.is_empty()
            && member.probe.is_none()
            && shared.senders_left.load(Ordering::Acquire) == 0
        {
            return Ok(member);
        }
        if drop_at.front().is_some_and(|at| now >= *at) {
            drop_at.pop_front();
            member.churn(&shared, sleeper).await?;
            continue;
        }
        let may_send = member.in_flight.len() < WINDOW && !member.unsent.is_empty();
        if may_send && now >= next_send {
            let id = member.unsent.pop_front().expect("not empty");
            member.send_message(id).await?;
            next_send = now + Duration::from_millis(member.rng.random_range(SEND_GAP_MS));
            if member.rng.random_bool(MID_SEND_DROP) {
                member.figures.mid_send_drops += 1;
                member.churn(&shared, false).await?;
            }
            continue;
        }
        ensure!(
            (member.in_flight.is_empty() && member.probe.is_none())
                || member.last_progress.elapsed() < ACK_STALL,
            "{}: no ack within {ACK_STALL:?}; in flight: {:?}, re-sent: {:?}",
            member.user,
            member.in_flight,
            member.probe
        );
        let mut until = now + Duration::from_millis(100);
        if let Some(at) = drop_at.front() {
            until = until.min(*at);
        }
        if may_send {
            until = until.min(next_send);
        }
        if let Some(frame) = member.conn().recv_before(until).await? {
            member.handle(&frame)?;
        }
    }
}

/// The last resume, on a fresh connection once nothing is sent any more: the replay (and the
/// pages after it) must be exactly the seqs after `since`, in order, up to the room's head.
async fn final_resume(target: Arc<Target>, mut member: Member) -> anyhow::Result<Member> {
    let pause = member.rng.random_range(FIRST_CONNECT_MS);
    tokio::time::sleep(Duration::from_millis(pause)).await;
    member
        .client
        .take()
        .expect("connected at the end of the chaos")
        .close()
        .await?;
    let since = member.contiguous;
    let received = member.resume(&target).await?;
    let seqs: Vec<u64> = received.iter().map(|(seq, _)| *seq).collect();
    ensure!(
        seqs.iter().copied().eq(since + 1..=PER_ROOM),
        "{} in {}: the final resume from {since} replayed seqs {seqs:?}, want {}..={PER_ROOM} in order",
        member.user,
        member.room,
        since + 1
    );
    Ok(member)
}

/// `/metrics` as text.
async fn scrape(target: &Target) -> anyhow::Result<String> {
    let base = format!("http://127.0.0.1:{}", target.port);
    let response = Request::new("GET", "/metrics").send(&base).await?;
    ensure!(response.status == 200, "/metrics: HTTP {}", response.status);
    Ok(response.text())
}

/// Waits (bounded) until the server's connection gauge reads `want`: sockets dropped without a
/// close are released as the server notices them.
async fn await_connections(target: &Target, want: u64) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let open = metric(target.port, "roomcast_connections").await?;
        if open == want {
            return Ok(());
        }
        ensure!(
            Instant::now() < deadline,
            "the server holds {open} connections, want {want}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn seed() -> u64 {
    std::env::var("ROOMCAST_CHAOS_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| rand::rng().random())
}

#[test]
fn clients_dropping_mid_send_and_resuming_end_with_every_message_exactly_once() -> anyhow::Result<()>
{
    let seed = seed();
    eprintln!("chaos: seed {seed} (ROOMCAST_CHAOS_SEED={seed} replays the schedule)");
    let dir = tempfile::tempdir()?;
    // Default limits: the rate limit (10/s, burst 30), 20 connections per user, 2000 per address.
    let server = Server::start(dir.path(), 0, &[])?;
    let started = std::time::Instant::now();
    runtime()
        .block_on(async {
            let work = chaos(server.target(), seed, started);
            tokio::time::timeout(TEST_LIMIT, work)
                .await
                .with_context(|| {
                    format!("chaos did not finish within {TEST_LIMIT:?} (seed {seed})")
                })?
        })
        .with_context(|| format!("seed {seed}"))
}

async fn chaos(target: Target, seed: u64, started: std::time::Instant) -> anyhow::Result<()> {
    let shared = Arc::new(Shared {
        target,
        senders_left: AtomicUsize::new(ROOMS * SENDERS_PER_ROOM),
    });
    let lives = (0..CLIENTS).map(|i| {
        let shared = shared.clone();
        async move {
            tokio::spawn(life(shared, i, seed))
                .await
                .context("a client task panicked")?
        }
    });
    // The first failure ends the test at once (the other clients would wait for it forever).
    let members = futures::future::try_join_all(lives).await?;
    let churned = started.elapsed();
    let target = Arc::new(Target {
        port: shared.target.port,
        management_port: None,
    });
    // Every client is connected again, and the server holds exactly those connections.
    await_connections(&target, CLIENTS as u64).await?;
    let finals = members.into_iter().map(|m| {
        let target = target.clone();
        async move {
            tokio::spawn(final_resume(target, m))
                .await
                .context("a client task panicked")?
        }
    });
    let members = futures::future::try_join_all(finals).await?;
    await_connections(&target, CLIENTS as u64).await?;

    let mut figures = Figures::default();
    let mut rooms: BTreeMap<&str, &BTreeMap<u64, String>> = BTreeMap::new();
    for m in &members {
        figures.add(&m.figures);
        // Exactly once: gap-free seqs 1..=N, N the distinct ids sent, no id under two seqs.
        ensure!(
            m.log.keys().copied().eq(1..=PER_ROOM),
            "{} in {}: holds seqs {:?}, want 1..={PER_ROOM}",
            m.user,
            m.room,
            m.log.keys().collect::<Vec<_>>()
        );
        let ids: HashSet<&String> = m.log.values().collect();
        ensure!(
            ids.len() == m.log.len(),
            "{} in {}: some id is stored under two seqs: {:?}",
            m.user,
            m.room,
            m.log
        );
        // Every member of a room holds the same log.
        let first = *rooms.entry(&m.room).or_insert(&m.log);
        ensure!(
            first == &m.log,
            "{} in {}: holds {:?}, another member {:?}",
            m.user,
            m.room,
            m.log,
            first
        );
    }
    for m in &members {
        ensure!(
            m.unsent.is_empty() && m.in_flight.is_empty(),
            "{}: messages never acknowledged",
            m.user
        );
        // Every acknowledged message is where its ack said.
        let log = rooms[m.room.as_str()];
        for (id, seq) in &m.acked {
            ensure!(
                log.get(seq) == Some(id),
                "{} in {}: {id} was acknowledged at seq {seq}, which holds {:?}",
                m.user,
                m.room,
                log.get(seq)
            );
        }
    }
    ensure!(rooms.len() == ROOMS, "{} rooms checked", rooms.len());

    // The server is healthy, rejected nothing and closed nobody, and lets every socket go.
    let base = format!("http://127.0.0.1:{}", target.port);
    let health = Request::new("GET", "/health").send(&base).await?;
    ensure!(
        health.status == 200 && health.json()?["status"] == "ok",
        "/health: HTTP {} {}",
        health.status,
        health.text()
    );
    let text = scrape(&target).await?;
    for family in [
        "roomcast_rejections_total{",
        "roomcast_connect_refused_total{",
        "roomcast_server_closes_total{",
    ] {
        let lines: Vec<&str> = text.lines().filter(|l| l.starts_with(family)).collect();
        ensure!(lines.is_empty(), "the server counted {lines:?}");
    }
    let accepted = metric(target.port, "roomcast_connections_total").await?;
    for m in members {
        m.client
            .expect("connected after the final resume")
            .close()
            .await?;
    }
    await_connections(&target, 0).await?;

    let f = figures;
    eprintln!(
        "chaos: {CLIENTS} clients in {ROOMS} rooms of {ROOM_SIZE}, {} senders; {} messages \
         (distinct ids) stored, {} message frames sent ({} resends after a drop before the ack, \
         {} of them answered `duplicate`; {} acknowledged ids re-sent on purpose and answered \
         with the original seq), {} acks; {} disconnects injected ({} close frame, {} FIN, {} \
         reset; {} of them mid-send), {} resumes ({} history pages), {} connect retries, {} \
         connections accepted; {} frames checked ({} redeliveries de-duplicated by seq); chaos \
         took {churned:.1?}, all {:.1?}",
        ROOMS * SENDERS_PER_ROOM,
        ROOMS as u64 * PER_ROOM,
        f.sent,
        f.resends,
        f.duplicate_acks,
        f.probes,
        f.acks,
        f.drops.iter().sum::<u64>(),
        f.drops[0],
        f.drops[1],
        f.drops[2],
        f.mid_send_drops,
        f.resumes,
        f.history_pages,
        f.connect_retries,
        accepted,
        f.frames_checked,
        f.redelivered,
        started.elapsed()
    );
    Ok(())
}
