//! Client chaos against the real binary (issue 8, "Faults"): 1,000 clients in 50 rooms of 20,
//! each dropping its socket one to three times at random moments (abruptly, without a close
//! frame, or with one) and resuming with `join {since}` = the last seq it holds with nothing
//! missing before it, while two members of every room send. A sender whose socket went before
//! the ack resends the same client id after reconnecting. At the end every client makes a final
//! resume, and holds every message of its room exactly once under its seq, the seqs gap-free and
//! matching the acks; the server is healthy and holds exactly the connections left.
//!
//! Randomness is seeded: `ROOMCAST_CHAOS_SEED` replays a run (the seed is printed). Run with
//! `--nocapture` for the figures.
#![cfg(unix)]

mod process;

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail, ensure};
use process::{Server, Target, metric, runtime};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use roomcast_protocol_tests::client::{Client, frame_type};
use serde_json::{Value, json};
use tokio::time::Instant;

const CLIENTS: usize = 1_000;
const ROOMS: usize = 50;
/// Members of each room that also send.
const SENDERS_PER_ROOM: usize = 2;
const MESSAGES_PER_SENDER: usize = 6;
/// Each client drops its socket between 1 and this many times.
const MAX_DROPS: u32 = 3;
/// Connection attempts before a client gives up (a storm of 1,000 may meet a full backlog).
const CONNECT_ATTEMPTS: u32 = 8;

/// What one client saw.
struct Outcome {
    room: String,
    /// The current connection (none between a drop and the resume).
    client: Option<Client>,
    /// seq → client id, as received (live or replayed), de-duplicated by seq.
    log: BTreeMap<u64, String>,
    /// The highest seq with every seq below it in `log`.
    contiguous: u64,
    /// This client's own messages, with the seq their ack named.
    acked: Vec<(String, u64)>,
    drops: u32,
    resumes: u32,
    frames: u64,
    /// Messages received again with a seq already held (the client de-duplicates them).
    redelivered: u64,
}

impl Outcome {
    fn conn(&mut self) -> &mut Client {
        self.client.as_mut().expect("connected between resumes")
    }

    /// Takes in a `message` frame of the room.
    fn record(&mut self, frame: &Value) -> anyhow::Result<()> {
        self.frames += 1;
        if frame_type(frame) != "message" || frame["room"] != self.room.as_str() {
            return Ok(());
        }
        let seq = frame["seq"].as_u64().context("message seq")?;
        let id = frame["id"].as_str().context("message id")?.to_owned();
        match self.log.get(&seq) {
            Some(held) if *held != id => bail!("{}: seq {seq} is {held} and {id}", self.room),
            Some(_) => self.redelivered += 1,
            None => {
                self.log.insert(seq, id);
            }
        }
        while self.log.contains_key(&(self.contiguous + 1)) {
            self.contiguous += 1;
        }
        Ok(())
    }

    /// A new connection, joined with `since` = what is held contiguously.
    async fn resume(
        &mut self,
        target: &Target,
        user: &str,
        rng: &mut StdRng,
    ) -> anyhow::Result<()> {
        let mut attempt = 0;
        let client = loop {
            match target.connect(user).await {
                Ok(client) => break client,
                Err(_) if attempt + 1 < CONNECT_ATTEMPTS => {
                    attempt += 1;
                    let pause = rng.random_range(50..200u64) << attempt.min(4);
                    tokio::time::sleep(Duration::from_millis(pause)).await;
                }
                Err(e) => return Err(e.context(format!("{user}: connecting"))),
            }
        };
        let room = self.room.clone();
        let since = self.contiguous;
        let (_, replayed, _) = self.client.insert(client).join_since(&room, since).await?;
        for frame in &replayed {
            self.record(frame)?;
        }
        Ok(())
    }
}

/// One client's life: connect, then rounds of (read, and send if it is a sender) until a random
/// moment, drop the socket, pause, resume; after its drops it stays until its messages are
/// acknowledged.
async fn client_life(
    target: Arc<Target>,
    index: usize,
    seed: u64,
) -> anyhow::Result<(String, Outcome)> {
    let mut rng = StdRng::seed_from_u64(seed ^ (index as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15));
    let user = format!("u{index}");
    let room = format!("r{}", index % ROOMS);
    let mut to_send: VecDeque<String> = if index / ROOMS < SENDERS_PER_ROOM {
        (0..MESSAGES_PER_SENDER)
            .map(|n| format!("{user}-m{n}"))
            .collect()
    } else {
        VecDeque::new()
    };
    // Spread the first connects over 2 s: a storm, not a single burst.
    tokio::time::sleep(Duration::from_millis(rng.random_range(0..2_000))).await;
    let mut first = target.connect(&user).await;
    for attempt in 1..CONNECT_ATTEMPTS {
        if first.is_ok() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100 << attempt.min(4))).await;
        first = target.connect(&user).await;
    }
    let mut outcome = Outcome {
        room: room.clone(),
        client: Some(first.with_context(|| format!("{user}: first connect"))?),
        log: BTreeMap::new(),
        contiguous: 0,
        acked: Vec::new(),
        drops: 0,
        resumes: 0,
        frames: 0,
        redelivered: 0,
    };
    let (_, replayed, _) = outcome.conn().join_since(&room, 0).await?;
    for frame in &replayed {
        outcome.record(frame)?;
    }
    let drops = rng.random_range(1..=MAX_DROPS);
    loop {
        let churning = outcome.drops < drops;
        let until = Instant::now() + Duration::from_millis(rng.random_range(50..700));
        // Sent in this connection and not yet acknowledged.
        let mut awaiting: Option<String> = None;
        loop {
            if awaiting.is_none()
                && let Some(id) = to_send.front()
            {
                outcome
                    .conn()
                    .send_json(&json!({"action": "message", "room": room, "id": id, "body": id}))
                    .await?;
                awaiting = Some(id.clone());
            }
            let done_here = churning && Instant::now() >= until;
            let idle_and_done = !churning && to_send.is_empty();
            if done_here || idle_and_done {
                break;
            }
            let deadline = if churning {
                until
            } else {
                Instant::now() + Duration::from_secs(10)
            };
            let Some(frame) = outcome.conn().recv_before(deadline).await? else {
                ensure!(churning, "{user}: no ack within 10 s for {awaiting:?}");
                break;
            };
            if frame_type(&frame) == "ack" && awaiting.as_deref() == frame["id"].as_str() {
                let seq = frame["seq"].as_u64().context("ack seq")?;
                let id = to_send.pop_front().context("an ack for a sent message")?;
                outcome.acked.push((id, seq));
                awaiting = None;
            } else if frame_type(&frame) == "error" {
                bail!("{user}: {frame}");
            } else {
                outcome.record(&frame)?;
            }
        }
        if !churning {
            return Ok((user, outcome));
        }
        // Drop the socket: abruptly (the TCP connection just goes) or with a close frame.
        let socket = outcome.client.take().expect("connected");
        if rng.random_bool(0.5) {
            drop(socket);
        } else {
            let _ = socket.close().await;
        }
        outcome.drops += 1;
        tokio::time::sleep(Duration::from_millis(rng.random_range(10..300))).await;
        outcome.resume(&target, &user, &mut rng).await?;
        outcome.resumes += 1;
    }
}

#[test]
fn a_thousand_clients_dropping_and_resuming_each_end_with_every_message_once() -> anyhow::Result<()>
{
    let seed = std::env::var("ROOMCAST_CHAOS_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| rand::rng().random());
    eprintln!("client chaos: seed {seed} (ROOMCAST_CHAOS_SEED={seed} replays it)");
    let dir = tempfile::tempdir()?;
    let server = Server::start(
        dir.path(),
        0,
        &["--rate-per-sec", "1000", "--rate-burst", "1000"],
    )?;
    let target = Arc::new(server.target());
    let started = std::time::Instant::now();
    runtime().block_on(async {
        let lives: Vec<_> = (0..CLIENTS)
            .map(|i| tokio::spawn(client_life(target.clone(), i, seed)))
            .collect();
        let mut outcomes = Vec::with_capacity(CLIENTS);
        for life in lives {
            outcomes.push(life.await??);
        }
        let churned = started.elapsed();
        // The authoritative log per room: what the senders' acks said.
        let mut rooms: HashMap<String, BTreeMap<u64, String>> = HashMap::new();
        for (_, o) in &outcomes {
            let room = rooms.entry(o.room.clone()).or_default();
            for (id, seq) in &o.acked {
                if let Some(other) = room.insert(*seq, id.clone()) {
                    bail!("{}: seq {seq} acknowledged for {other} and {id}", o.room);
                }
            }
        }
        for (room, log) in &rooms {
            let seqs: Vec<u64> = log.keys().copied().collect();
            ensure!(
                seqs == (1..=seqs.len() as u64).collect::<Vec<_>>(),
                "{room}: acknowledged seqs have a gap: {seqs:?}"
            );
            ensure!(
                log.len() == SENDERS_PER_ROOM * MESSAGES_PER_SENDER,
                "{room}: {} messages acknowledged",
                log.len()
            );
        }
        // Dropped sockets are released as the server notices them: wait a little.
        let mut open = 0;
        for _ in 0..50 {
            open = metric(target.port, "roomcast_connections").await?;
            if open == CLIENTS as u64 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        ensure!(
            open == CLIENTS as u64,
            "the server holds {open} connections, {CLIENTS} clients are connected"
        );
        // The final resume, then every client must hold its room's log exactly.
        let (mut drops, mut resumes, mut frames, mut redelivered) = (0, 0, 0, 0);
        let mut checked = 0;
        for (user, mut o) in outcomes {
            o.client.take().expect("connected").close().await?;
            let mut rng = StdRng::seed_from_u64(seed);
            o.resume(&target, &user, &mut rng).await?;
            o.client.take().expect("resumed").close().await?;
            let want = &rooms[&o.room];
            ensure!(
                &o.log == want,
                "{user} in {}: holds {:?}, the room has {:?}",
                o.room,
                o.log,
                want
            );
            drops += o.drops;
            resumes += o.resumes + 1;
            frames += o.frames;
            redelivered += o.redelivered;
            checked += o.log.len();
        }
        eprintln!(
            "client chaos: {CLIENTS} clients in {ROOMS} rooms, {} messages sent and acknowledged, \
             {drops} socket drops, {resumes} resumes, {frames} frames received, {checked} \
             messages checked (exactly once, gap-free), {redelivered} redeliveries de-duplicated \
             by seq; churn took {churned:.1?}, all {:.1?}",
            ROOMS * SENDERS_PER_ROOM * MESSAGES_PER_SENDER,
            started.elapsed()
        );
        anyhow::Ok(())
    })
}
