//! The soak run (issue 15): a bounded, loopback-only hour (or any length) of mixed traffic with
//! connection churn against one running server, sampling its memory and file descriptors.
//!
//! What runs, all on one thread (a current-thread tokio runtime with a `LocalSet`, as
//! [`load`](crate::load)):
//!
//! - **Slots.** `connections` client slots; slot `i` lives in room `r-<i % rooms>`. The first
//!   `stable_share` of each room's members are *stable*: one connection for the whole run. The
//!   others *churn*: now and then one stops sending, waits for its acks and disconnects (a close
//!   handshake, a bare FIN, or a RST), stays away 0.5–5 s, then comes back either as the same
//!   user resuming with `join {since: last contiguous seq}` (replay, then `history {after}` pages
//!   while `more`), or as a new user with a freshly signed token (`join` without `since`).
//! - **Traffic**, paced against the clock: messages round-robin over joined slots, `typing`
//!   start/stop, `presence` changes, `read` cursors, `history {before}` pages (checked: gap-free,
//!   ending just below `before`, ids where the generator sent them), and `GET
//!   /rooms/{room}/messages?after=` with service tokens (checked the same way).
//! - **Accounting.** Every slot keeps the set of seqs it has in its room (live deliveries, replay,
//!   resume pages and its own acks). A live seq seen twice on one connection is a duplicate; a
//!   stable slot missing any seq of its room at the end lost a live delivery; a churning slot
//!   missing one lost it across a resume. After the run, every room is read back over HTTP: each
//!   acknowledged message must be stored exactly once, at the seq its ack named, seqs gap-free.
//! - **Samples** every `sample_secs`: the server's RSS (and its anonymous and file-backed parts,
//!   peak), open fds, threads, CPU, its own connection count (`GET /health`), the data
//!   directory's size, and the traffic counters. Three *quiesced* samples anchor the verdict:
//!   at the end of the warm-up and at the end (churn and HTTP paused until every slot is joined,
//!   so the connection count is exact), and once all clients have left (compared with the one
//!   taken before any connected).
//!
//! The verdict fails on RSS growth after the warm-up above `max_rss_growth`, more fds at the end
//! than after the warm-up (or with no clients than before any), a server connection count that
//! does not match the generator's, any acknowledged message lost or duplicated, any message
//! unacknowledged, and any error (server `error` frames, closes the generator did not ask for,
//! failed connects or HTTP requests).

use std::borrow::Cow;
use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::io::Write as _;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::Context as _;
use futures::{SinkExt, StreamExt};
use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio::sync::{Semaphore, mpsc};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;

use crate::procstat::{self, Pid};
use crate::tracker::{LatencySummary, SeqVerdict, SeqWindow};

/// Highest latency the histograms hold, microseconds (10 minutes).
const MAX_LATENCY_US: u64 = 600_000_000;
/// Longest a leaving slot waits for its outstanding acks before it closes anyway.
const LEAVE_ACK_WAIT: Duration = Duration::from_secs(10);
/// Longest a quiesce (warm-up end) waits for every slot to be joined.
const QUIESCE_LIMIT: Duration = Duration::from_secs(60);
/// `history` page size when resuming (the protocol's maximum).
const RESUME_PAGE: u32 = 100;
/// Page size of the HTTP checks and the final read-back.
const HTTP_PAGE: u32 = 100;
/// HTTP checks in flight at most; more due are skipped (and counted).
const HTTP_IN_FLIGHT: usize = 4;
/// Service users the HTTP checks rotate over (each has its own request-rate bucket).
const HTTP_USERS: usize = 4;
/// Rooms read back at once after the run (each with its own service user; all from 127.0.0.1,
/// whose HTTP request rate the server also limits).
const READBACK_WORKERS: usize = 8;
/// Longest the read-back may take before 429s count as failures.
const READBACK_LIMIT: Duration = Duration::from_secs(900);
/// Connection attempts in flight at once.
const CONNECT_CONCURRENCY: usize = 32;

/// What a soak run does.
#[derive(Debug, Clone, Serialize)]
pub struct SoakConfig {
    /// Server address (loopback only).
    pub server: SocketAddr,
    /// Length of the traffic, seconds (the drain, read-back and teardown come after).
    pub duration_secs: f64,
    /// Warm-up, seconds: the baseline sample is taken at its end.
    pub warmup_secs: f64,
    /// Time between samples, seconds.
    pub sample_secs: f64,
    /// Client slots (one connection each at any time).
    pub connections: usize,
    /// Rooms; slot `i` is in room `r-<i % rooms>`.
    pub rooms: usize,
    /// Share of each room's members that never disconnect.
    pub stable_share: f64,
    /// Messages per second into the server, all rooms together.
    pub message_rate: f64,
    /// Disconnects (each followed by a reconnect) per second.
    pub churn_per_sec: f64,
    /// Share of reconnects that come back as a new user (new token, join without `since`).
    pub new_user_share: f64,
    /// Shortest time a churning slot stays away, milliseconds.
    pub offline_min_ms: u64,
    /// Longest time a churning slot stays away, milliseconds.
    pub offline_max_ms: u64,
    /// `typing` frames per second (start and stop alternate per slot).
    pub typing_per_sec: f64,
    /// `presence` changes per second.
    pub presence_per_sec: f64,
    /// `read` cursor moves per second.
    pub read_per_sec: f64,
    /// `history {before}` requests per second.
    pub history_per_sec: f64,
    /// `GET /rooms/{room}/messages` requests per second (service tokens).
    pub http_per_sec: f64,
    /// Message body size, bytes.
    pub body_bytes: usize,
    /// Loopback source addresses 127.0.0.1 ..= 127.0.0.<sources>.
    pub sources: u8,
    /// HS256 secret the tokens are signed with.
    #[serde(skip)]
    pub jwt_secret: String,
    /// Tenant (`tid`) of every token.
    pub tenant: String,
    /// The server's pid (memory, fds and CPU from `/proc`).
    pub server_pid: u32,
    /// The server's data directory, whose size is sampled (its store grows with history).
    pub data_dir: Option<PathBuf>,
    /// Where `timeseries.csv` and `summary.json` go.
    pub out_dir: PathBuf,
    /// Longest wait after the traffic for every ack and delivery, seconds.
    pub drain_secs: f64,
    /// Largest RSS growth from the warm-up's end to the end allowed (0.2: 20 %), beyond the
    /// store's index of the messages stored meanwhile.
    pub max_rss_growth: f64,
    /// Memory the store's index may take for each message acknowledged after the warm-up.
    pub index_bytes_per_message: u64,
    /// Fds the end may have above the warm-up (and the idle end above the idle start).
    pub fd_slack: u64,
    /// Seed of the generator's choices (slots, modes, offline times).
    pub seed: u64,
}

/// Cumulative traffic counters.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Counters {
    /// Messages written to a socket.
    pub sent: u64,
    /// Acks received (not duplicates).
    pub acked: u64,
    /// Acks flagged `duplicate` (the generator never resends, so every one is an error).
    pub duplicate_acks: u64,
    /// Messages assigned to a slot whose connection ended before writing them (not sent).
    pub sends_dropped: u64,
    /// Messages due while no slot was joined (not sent).
    pub sends_skipped: u64,
    /// `message` frames received outside a resume.
    pub delivered_live: u64,
    /// `message` frames received while resuming (replay), and messages of resume pages.
    pub delivered_resume: u64,
    /// Deliveries of a seq the slot already had through a replay, page or earlier connection
    /// (the protocol's join race; not an error).
    pub overlaps: u64,
    /// Live deliveries below a seq the connection already had live.
    pub out_of_order: u64,
    /// Connections opened (and joined).
    pub connects: u64,
    /// Connection attempts that failed.
    pub connect_failures: u64,
    /// Disconnects with a close handshake.
    pub closes_graceful: u64,
    /// Disconnects by dropping the TCP connection (FIN, no close frame).
    pub closes_fin: u64,
    /// Disconnects by TCP reset.
    pub closes_reset: u64,
    /// Connections the server ended without being asked.
    pub closes_by_server: u64,
    /// Reconnects as the same user with `join {since}`.
    pub resumes: u64,
    /// Reconnects as a new user.
    pub new_users: u64,
    /// Resume pages (`history {after}` after `replayed {more: true}`).
    pub resume_pages: u64,
    /// `typing` frames sent.
    pub typing_sent: u64,
    /// `typing` frames received.
    pub typing_received: u64,
    /// `presence` frames sent.
    pub presence_sent: u64,
    /// `presence` frames received.
    pub presence_received: u64,
    /// `read` frames sent.
    pub read_sent: u64,
    /// `read` frames received.
    pub read_received: u64,
    /// `history {before}` requests sent.
    pub history_requests: u64,
    /// `history {before}` pages that passed the check.
    pub history_ok: u64,
    /// HTTP `GET /rooms/{room}/messages` requests made during the traffic.
    pub http_requests: u64,
    /// Of those, answered 200 and checked.
    pub http_ok: u64,
    /// Of those, answered 429 (request rate; retried in the read-back, an error during traffic).
    pub http_rate_limited: u64,
    /// HTTP checks not started because enough were in flight.
    pub http_skipped: u64,
    /// `error` frames received.
    pub error_frames: u64,
}

/// One reading of the server and of the traffic.
#[derive(Debug, Clone, Serialize)]
pub struct Sample {
    /// Seconds since the traffic started (negative: before it).
    pub t_secs: f64,
    /// `run`, or a quiesced anchor: `idle-start`, `warm`, `end`, `idle-end`.
    pub label: String,
    /// `VmRSS`, KiB.
    pub rss_kib: u64,
    /// `RssAnon`, KiB.
    pub rss_anon_kib: u64,
    /// `RssFile`, KiB.
    pub rss_file_kib: u64,
    /// `VmHWM` (peak RSS so far), KiB.
    pub hwm_kib: u64,
    /// Open fds.
    pub fds: u64,
    /// Threads.
    pub threads: u64,
    /// Server CPU since the previous sample, share of one core.
    pub server_cpu: f64,
    /// Generator CPU since the previous sample, share of one core.
    pub generator_cpu: f64,
    /// Open WebSockets by the server's count (`GET /health`).
    pub server_connections: Option<u64>,
    /// Size of the data directory, KiB.
    pub data_kib: Option<u64>,
    /// Slots joined by the generator's count.
    pub joined: u64,
    /// Messages sent so far.
    pub sent: u64,
    /// Acks so far.
    pub acked: u64,
    /// Live deliveries so far.
    pub delivered_live: u64,
    /// Disconnects so far (all kinds).
    pub disconnects: u64,
    /// Errors so far (all kinds).
    pub errors: u64,
    /// Live delivery latency since the previous sample, median, ms.
    pub delivery_p50_ms: f64,
    /// Live delivery latency since the previous sample, 99th percentile, ms.
    pub delivery_p99_ms: f64,
}

/// Outcome of the delivery and storage checks.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Integrity {
    /// Messages sent that were never acknowledged.
    pub unacked: u64,
    /// Seqs a stable slot (one connection all along) never received.
    pub live_lost: u64,
    /// Seqs a churning slot did not have at the end despite resuming.
    pub resume_lost: u64,
    /// The same seq delivered twice live on one connection.
    pub live_duplicates: u64,
    /// Slots without a joined connection at the end.
    pub slots_not_joined: u64,
    /// Acknowledged messages missing from the read-back (or at another seq).
    pub acked_lost: u64,
    /// Messages stored more than once.
    pub stored_duplicates: u64,
    /// Seqs missing in a room's read-back (1..=head must all be there).
    pub store_gaps: u64,
    /// Stored messages the generator did not send (or cannot place).
    pub stored_foreign: u64,
    /// Messages read back: every room's head together.
    pub stored: u64,
    /// `history` pages that failed their check.
    pub history_mismatches: u64,
    /// HTTP pages that failed their check.
    pub http_mismatches: u64,
    /// Requests the read-back repeated after a 429.
    pub readback_retries: u64,
}

/// RSS over the run, KiB.
#[derive(Debug, Clone, Default, Serialize)]
pub struct RssSummary {
    /// Before any client connected.
    pub idle_start_kib: u64,
    /// At the end of the warm-up (quiesced).
    pub warm_kib: u64,
    /// At the end of the traffic (quiesced).
    pub end_kib: u64,
    /// After every client left.
    pub idle_end_kib: u64,
    /// Largest sample after the warm-up.
    pub max_after_warmup_kib: u64,
    /// `VmHWM` at the end.
    pub peak_kib: u64,
    /// (end − warm) / warm, percent.
    pub growth_pct: f64,
    /// Least-squares slope of the samples from the warm-up's end on, KiB per hour.
    pub slope_kib_per_hour: f64,
    /// The same for `RssAnon`.
    pub anon_slope_kib_per_hour: f64,
    /// The data directory at the end of the warm-up, KiB (the embedded store's file; redb keeps
    /// the pages it writes in its cache, up to 1 GiB by default, so RSS follows it).
    pub data_warm_kib: u64,
    /// The data directory at the end, KiB.
    pub data_end_kib: u64,
    /// RSS growth after the warm-up less the data directory's growth, percent of the warm RSS.
    pub growth_beyond_data_pct: f64,
    /// Messages acknowledged after the warm-up.
    pub acked_after_warm: u64,
    /// What the store's index may take for them, KiB (`index_bytes_per_message` each).
    pub index_allowance_kib: u64,
    /// RSS growth after the warm-up less that allowance, percent of the warm RSS: what the
    /// verdict bounds.
    pub growth_beyond_index_pct: f64,
}

/// Open fds over the run.
#[derive(Debug, Clone, Default, Serialize)]
pub struct FdSummary {
    /// Before any client connected.
    pub idle_start: u64,
    /// At the end of the warm-up (quiesced).
    pub warm: u64,
    /// At the end of the traffic (quiesced).
    pub end: u64,
    /// After every client left.
    pub idle_end: u64,
    /// Largest sample.
    pub max: u64,
    /// Least-squares slope of the samples from the warm-up's end on, fds per hour.
    pub slope_per_hour: f64,
}

/// The whole run.
#[derive(Debug, Clone, Serialize)]
pub struct SoakReport {
    /// What was run.
    pub config: SoakConfig,
    /// Wall-clock start, Unix seconds.
    pub started_unix: u64,
    /// Traffic time actually run, seconds.
    pub traffic_secs: f64,
    /// Every sample, in order.
    pub samples: Vec<Sample>,
    /// RSS figures.
    pub rss: RssSummary,
    /// Fd figures.
    pub fds: FdSummary,
    /// Traffic counters.
    pub counters: Counters,
    /// Delivery and storage checks.
    pub integrity: Integrity,
    /// Live delivery latency (send to receipt), whole run.
    pub delivery_latency: LatencySummary,
    /// Send to ack, whole run.
    pub ack_latency: LatencySummary,
    /// Errors by kind.
    pub errors: BTreeMap<String, u64>,
    /// Why the run failed; empty when it passed.
    pub failures: Vec<String>,
    /// No failure.
    pub passed: bool,
}

/// A small deterministic generator (xorshift64*): the choices are reproducible from the seed.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// A generator from `seed` (0 is replaced, xorshift needs a nonzero state).
    pub fn new(seed: u64) -> Self {
        Self(if seed == 0 {
            0x9E37_79B9_7F4A_7C15
        } else {
            seed
        })
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Uniform in `0..n` (`n` > 0; 0 when `n` is 0).
    pub fn below(&mut self, n: u64) -> u64 {
        if n == 0 { 0 } else { self.next_u64() % n }
    }

    /// Uniform in `[0, 1)`.
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// The seqs a slot has in its room: everything up to `contiguous`, and the ones above it.
#[derive(Debug, Clone, Default)]
pub struct View {
    contiguous: u64,
    ahead: BTreeSet<u64>,
}

impl View {
    /// Records `seq`; false when the view already had it.
    pub fn add(&mut self, seq: u64) -> bool {
        if seq <= self.contiguous || self.ahead.contains(&seq) {
            return false;
        }
        if seq == self.contiguous + 1 {
            self.contiguous = seq;
            while self.ahead.remove(&(self.contiguous + 1)) {
                self.contiguous += 1;
            }
        } else {
            self.ahead.insert(seq);
        }
        true
    }

    /// Counts everything up to `head` as had (a new user does not need what came before it).
    pub fn raise_floor(&mut self, head: u64) {
        if head <= self.contiguous {
            return;
        }
        self.contiguous = head;
        self.ahead = self.ahead.split_off(&(head + 1));
        while self.ahead.remove(&(self.contiguous + 1)) {
            self.contiguous += 1;
        }
    }

    /// The last seq below which nothing is missing (what `join {since}` resumes from).
    pub fn contiguous(&self) -> u64 {
        self.contiguous
    }

    /// Seqs in `1..=head` the view does not have.
    pub fn missing_through(&self, head: u64) -> u64 {
        if head <= self.contiguous {
            return 0;
        }
        let had_above = self.ahead.range(..=head).count() as u64;
        (head - self.contiguous).saturating_sub(had_above)
    }
}

/// Least-squares slope of `y` over `x` (0 with fewer than two distinct `x`).
pub fn slope(points: &[(f64, f64)]) -> f64 {
    let n = points.len() as f64;
    if points.len() < 2 {
        return 0.0;
    }
    let mean_x = points.iter().map(|p| p.0).sum::<f64>() / n;
    let mean_y = points.iter().map(|p| p.1).sum::<f64>() / n;
    let (mut num, mut den) = (0.0, 0.0);
    for (x, y) in points {
        num += (x - mean_x) * (y - mean_y);
        den += (x - mean_x) * (x - mean_x);
    }
    if den == 0.0 { 0.0 } else { num / den }
}

/// How a churning slot disconnects.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum CloseMode {
    /// Close frame, then wait for the server's.
    Graceful,
    /// Drop the TCP connection: FIN, no close frame.
    Fin,
    /// SO_LINGER 0: RST.
    Reset,
}

/// What a slot's connection is asked to do.
enum Cmd {
    Send,
    Typing(bool),
    Presence(&'static str),
    Read(u64),
    History { before: u64, limit: u32 },
    Leave { mode: CloseMode, offline: Duration },
    Stop,
}

/// Why a `history` reply was requested (replies come in request order).
#[derive(Debug, Clone, Copy)]
enum HistoryPurpose {
    /// A check: the newest `limit` below `before`.
    Check { before: u64 },
    /// Resuming: the page after a replay that had `more`.
    Resume,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SlotPhase {
    Offline,
    Connecting,
    Joined,
    Leaving,
    Done,
}

struct Slot {
    room: usize,
    stable: bool,
    generation: u32,
    /// The next connection comes back as a new user (or it is the first).
    fresh: bool,
    phase: SlotPhase,
    tx: Option<mpsc::UnboundedSender<Cmd>>,
    view: View,
    /// Live seqs of this connection.
    window: SeqWindow,
    /// Between `join {since}` and the last resume page.
    resuming: bool,
    /// What each `history` request in flight is for, oldest first.
    history_purposes: VecDeque<HistoryPurpose>,
    pending_acks: u32,
    typing: bool,
}

impl Slot {
    fn user(&self, index: usize) -> String {
        if self.generation == 0 {
            format!("u{index}")
        } else {
            format!("u{index}-g{}", self.generation)
        }
    }
}

/// A message the generator sent.
#[derive(Debug, Clone, Copy)]
struct Sent {
    room: u32,
    sent_us: u64,
    /// The seq its ack named; 0 until acked.
    seq: u64,
    /// Times the read-back found it.
    stored: u8,
}

struct State {
    config: Rc<SoakConfig>,
    base: Instant,
    rng: Rng,
    slots: Vec<Slot>,
    sent: Vec<Sent>,
    /// Highest acknowledged seq per room.
    heads: Vec<u64>,
    counters: Counters,
    integrity: Integrity,
    errors: BTreeMap<String, u64>,
    delivery: Histogram<u64>,
    delivery_window: Histogram<u64>,
    ack: Histogram<u64>,
    http_in_flight: usize,
    /// No new connections (the run is over).
    stopping: bool,
}

type StateRef = Rc<RefCell<State>>;

impl State {
    fn now_us(&self) -> u64 {
        u64::try_from(self.base.elapsed().as_micros()).unwrap_or(u64::MAX)
    }

    fn error(&mut self, kind: impl Into<String>) {
        *self.errors.entry(kind.into()).or_insert(0) += 1;
    }

    fn errors_total(&self) -> u64 {
        self.errors.values().sum()
    }

    fn joined(&self) -> u64 {
        self.slots
            .iter()
            .filter(|s| s.phase == SlotPhase::Joined)
            .count() as u64
    }

    /// Every slot joined, none resuming, no HTTP check in flight: the connection count is exact.
    fn settled(&self) -> bool {
        self.http_in_flight == 0
            && self
                .slots
                .iter()
                .all(|s| s.phase == SlotPhase::Joined && !s.resuming)
    }

    /// Settled, every ack in, every slot has every acknowledged seq of its room.
    fn drained(&self) -> bool {
        self.settled()
            && self
                .slots
                .iter()
                .all(|s| s.pending_acks == 0 && s.view.missing_through(self.heads[s.room]) == 0)
    }

    /// A random slot in `Joined` that `accept`s, or none after a few tries.
    fn pick(&mut self, accept: impl Fn(&Slot) -> bool) -> Option<usize> {
        let n = self.slots.len() as u64;
        for _ in 0..16 {
            let i = usize::try_from(self.rng.below(n)).unwrap_or(0);
            let slot = &self.slots[i];
            if slot.phase == SlotPhase::Joined && slot.tx.is_some() && accept(slot) {
                return Some(i);
            }
        }
        None
    }

    fn command(&mut self, i: usize, cmd: Cmd) {
        if let Some(tx) = &self.slots[i].tx {
            // A closed channel means the connection just ended; the command is moot.
            let _ = tx.send(cmd);
        }
    }
}

fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, MAX_LATENCY_US, 3).expect("static histogram bounds are valid")
}

fn latency_of(h: &Histogram<u64>) -> LatencySummary {
    let ms = |us: u64| us as f64 / 1000.0;
    LatencySummary {
        count: h.len(),
        p50_ms: ms(h.value_at_quantile(0.5)),
        p99_ms: ms(h.value_at_quantile(0.99)),
        p999_ms: ms(h.value_at_quantile(0.999)),
        max_ms: ms(h.max()),
        mean_ms: h.mean() / 1000.0,
    }
}

fn sign(config: &SoakConfig, user: &str, rooms: Vec<String>, role: &'static str) -> String {
    crate::token::sign_hs256(&config.jwt_secret, &config.tenant, user, rooms, role)
}

fn room_name(room: usize) -> String {
    format!("r-{room}")
}

/// Room index from `r-<k>`.
fn room_index(name: &str) -> Option<usize> {
    name.strip_prefix("r-")?.parse().ok()
}

/// `<index>:<sent_us>:<padding>` → (index, sent_us).
fn parse_body(body: &str) -> Option<(u64, u64)> {
    let mut parts = body.splitn(3, ':');
    Some((parts.next()?.parse().ok()?, parts.next()?.parse().ok()?))
}

/// `m<index>.<sent_us>` → index.
fn parse_id(id: &str) -> Option<u64> {
    id.strip_prefix('m')?.split_once('.')?.0.parse().ok()
}

/// Runs the soak described by `config` to the end and writes its files into `config.out_dir`.
pub fn run(config: SoakConfig) -> anyhow::Result<SoakReport> {
    anyhow::ensure!(
        config.server.ip().is_loopback(),
        "only loopback servers may be loaded (got {})",
        config.server
    );
    anyhow::ensure!(config.rooms > 0 && config.connections > 0, "nothing to run");
    anyhow::ensure!(
        config.jwt_secret.len() >= 32,
        "the JWT secret must have at least 32 bytes"
    );
    std::fs::create_dir_all(&config.out_dir)
        .with_context(|| format!("creating {}", config.out_dir.display()))?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let local = tokio::task::LocalSet::new();
    local.block_on(&runtime, drive(config))
}

/// Paces one activity at `rate` per second of traffic time.
struct Pacer {
    rate: f64,
    done: u64,
}

impl Pacer {
    fn new(rate: f64) -> Self {
        Self { rate, done: 0 }
    }

    /// How many are due at `t` seconds; while `paused`, none, and no backlog builds up.
    fn due(&mut self, t: f64, paused: bool) -> u64 {
        let target = (self.rate.max(0.0) * t) as u64;
        if paused {
            self.done = target;
            return 0;
        }
        let n = target.saturating_sub(self.done);
        self.done = target;
        n
    }
}

/// Stages of the traffic loop.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Stage {
    Warmup,
    Quiesce(Instant),
    Run,
    Drain(Instant),
}

/// Sampling state: the previous CPU readings, the CSV file.
struct Sampler {
    pid: u32,
    data_dir: Option<PathBuf>,
    server: SocketAddr,
    last: Option<(Instant, f64, f64)>,
    csv: std::fs::File,
    samples: Vec<Sample>,
}

const CSV_HEADER: &str = "t_secs,label,rss_kib,rss_anon_kib,rss_file_kib,hwm_kib,fds,threads,\
server_cpu_pct,generator_cpu_pct,server_connections,data_kib,joined,sent,acked,delivered_live,\
disconnects,errors,delivery_p50_ms,delivery_p99_ms";

impl Sampler {
    async fn take(&mut self, state: &StateRef, t_secs: f64, label: &str) -> anyhow::Result<Sample> {
        // Fds first: the /health request below holds one of the server's for a moment.
        let fds = procstat::open_fds(self.pid).context("the server is gone")? as u64;
        let proc = procstat::sample(Pid::Other(self.pid)).context("the server is gone")?;
        let resident = procstat::resident(self.pid).unwrap_or_default();
        let own = procstat::sample(Pid::This).unwrap_or_default();
        let now = Instant::now();
        let (server_cpu, generator_cpu) = match self.last {
            Some((at, server, generator)) => {
                let wall = now.duration_since(at).as_secs_f64().max(1e-6);
                (
                    (proc.cpu_secs - server) / wall,
                    (own.cpu_secs - generator) / wall,
                )
            }
            None => (0.0, 0.0),
        };
        self.last = Some((now, proc.cpu_secs, own.cpu_secs));
        let server_connections = health_connections(self.server).await;
        let data_kib = self.data_dir.as_deref().map(|d| dir_bytes(d) / 1024);
        let sample = {
            let mut s = state.borrow_mut();
            let (p50, p99) = if s.delivery_window.is_empty() {
                (0.0, 0.0)
            } else {
                (
                    s.delivery_window.value_at_quantile(0.5) as f64 / 1000.0,
                    s.delivery_window.value_at_quantile(0.99) as f64 / 1000.0,
                )
            };
            s.delivery_window.reset();
            let c = &s.counters;
            Sample {
                t_secs,
                label: label.to_owned(),
                rss_kib: proc.rss_kib,
                rss_anon_kib: resident.anon_kib,
                rss_file_kib: resident.file_kib,
                hwm_kib: proc.peak_rss_kib,
                fds,
                threads: proc.threads,
                server_cpu,
                generator_cpu,
                server_connections,
                data_kib,
                joined: s.joined(),
                sent: c.sent,
                acked: c.acked,
                delivered_live: c.delivered_live,
                disconnects: c.closes_graceful + c.closes_fin + c.closes_reset + c.closes_by_server,
                errors: s.errors_total(),
                delivery_p50_ms: p50,
                delivery_p99_ms: p99,
            }
        };
        let opt = |v: Option<u64>| v.map_or(String::new(), |v| v.to_string());
        writeln!(
            self.csv,
            "{:.1},{},{},{},{},{},{},{},{:.1},{:.1},{},{},{},{},{},{},{},{},{:.2},{:.2}",
            sample.t_secs,
            sample.label,
            sample.rss_kib,
            sample.rss_anon_kib,
            sample.rss_file_kib,
            sample.hwm_kib,
            sample.fds,
            sample.threads,
            sample.server_cpu * 100.0,
            sample.generator_cpu * 100.0,
            opt(sample.server_connections),
            opt(sample.data_kib),
            sample.joined,
            sample.sent,
            sample.acked,
            sample.delivered_live,
            sample.disconnects,
            sample.errors,
            sample.delivery_p50_ms,
            sample.delivery_p99_ms,
        )?;
        self.csv.flush()?;
        eprintln!(
            "[soak {:>7.1} s {:<10}] rss {:>7.1} MiB (anon {:.1}), fds {:>4}, server conns {:>4}, \
             joined {:>4}, cpu {:>3.0} %, sent {}, acked {}, delivered {}, disconnects {}, \
             errors {}, p99 {:.1} ms",
            sample.t_secs,
            sample.label,
            sample.rss_kib as f64 / 1024.0,
            sample.rss_anon_kib as f64 / 1024.0,
            sample.fds,
            opt(sample.server_connections),
            sample.joined,
            sample.server_cpu * 100.0,
            sample.sent,
            sample.acked,
            sample.delivered_live,
            sample.disconnects,
            sample.errors,
            sample.delivery_p99_ms,
        );
        self.samples.push(sample.clone());
        Ok(sample)
    }
}

/// Total size of the files under `dir`, bytes.
fn dir_bytes(dir: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .map(|e| match e.metadata() {
            Ok(m) if m.is_dir() => dir_bytes(&e.path()),
            Ok(m) => m.len(),
            Err(_) => 0,
        })
        .sum()
}

async fn drive(config: SoakConfig) -> anyhow::Result<SoakReport> {
    let config = Rc::new(config);
    let started_unix = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let slots = (0..config.connections)
        .map(|i| {
            let member = i / config.rooms;
            let members = config.connections.div_ceil(config.rooms);
            Slot {
                room: i % config.rooms,
                stable: (member as f64) < config.stable_share * members as f64,
                generation: 0,
                fresh: true,
                phase: SlotPhase::Offline,
                tx: None,
                view: View::default(),
                window: SeqWindow::default(),
                resuming: false,
                history_purposes: VecDeque::new(),
                pending_acks: 0,
                typing: false,
            }
        })
        .collect();
    let state: StateRef = Rc::new(RefCell::new(State {
        config: config.clone(),
        base: Instant::now(),
        rng: Rng::new(config.seed),
        slots,
        sent: Vec::new(),
        heads: vec![0; config.rooms],
        counters: Counters::default(),
        integrity: Integrity::default(),
        errors: BTreeMap::new(),
        delivery: histogram(),
        delivery_window: histogram(),
        ack: histogram(),
        http_in_flight: 0,
        stopping: false,
    }));
    let csv_path = config.out_dir.join("timeseries.csv");
    let mut csv = std::fs::File::create(&csv_path)
        .with_context(|| format!("creating {}", csv_path.display()))?;
    writeln!(csv, "{CSV_HEADER}")?;
    let mut sampler = Sampler {
        pid: config.server_pid,
        data_dir: config.data_dir.clone(),
        server: config.server,
        last: None,
        csv,
        samples: Vec::new(),
    };
    let idle_start = sampler.take(&state, 0.0, "idle-start").await?;

    // Connect every slot.
    let permits = Arc::new(Semaphore::new(CONNECT_CONCURRENCY));
    let mut tasks = Vec::new();
    for i in 0..config.connections {
        tasks.push(tokio::task::spawn_local(slot_task(
            i,
            state.clone(),
            permits.clone(),
        )));
    }
    let connect_deadline = Instant::now() + Duration::from_secs(120);
    while !state.borrow().settled() {
        anyhow::ensure!(
            Instant::now() < connect_deadline,
            "only {} of {} slots joined within 120 s",
            state.borrow().joined(),
            config.connections
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    eprintln!(
        "[soak] {} connections joined in {} rooms; traffic for {:.0} s",
        config.connections, config.rooms, config.duration_secs
    );

    // Traffic.
    let start = Instant::now();
    let mut messages = Pacer::new(config.message_rate);
    let mut churn = Pacer::new(config.churn_per_sec);
    let mut typing = Pacer::new(config.typing_per_sec);
    let mut presence = Pacer::new(config.presence_per_sec);
    let mut reads = Pacer::new(config.read_per_sec);
    let mut history = Pacer::new(config.history_per_sec);
    let mut http = Pacer::new(config.http_per_sec);
    let mut stage = Stage::Warmup;
    let mut warm: Option<Sample> = None;
    let mut next_sample = config.sample_secs;
    let mut next_sender = 0usize;
    let mut http_users = 0usize;
    let http_tokens: Rc<Vec<String>> = Rc::new(
        (0..HTTP_USERS)
            .map(|k| sign(&config, &format!("svc-check-{k}"), Vec::new(), "service"))
            .collect(),
    );
    let mut ticker = tokio::time::interval(Duration::from_millis(5));
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let traffic_secs;
    loop {
        ticker.tick().await;
        let t = start.elapsed().as_secs_f64();
        match stage {
            Stage::Warmup if t >= config.warmup_secs => stage = Stage::Quiesce(Instant::now()),
            Stage::Warmup | Stage::Run if t >= config.duration_secs => {
                stage = Stage::Drain(Instant::now());
            }
            Stage::Quiesce(since) => {
                let settled = state.borrow().settled();
                if settled || since.elapsed() >= QUIESCE_LIMIT {
                    if !settled {
                        state
                            .borrow_mut()
                            .error("warm-up quiesce: slots not all joined");
                    }
                    warm = Some(sampler.take(&state, t, "warm").await?);
                    stage = Stage::Run;
                }
            }
            Stage::Drain(since) => {
                let drained = state.borrow().drained();
                if drained || since.elapsed().as_secs_f64() >= config.drain_secs {
                    traffic_secs = config.duration_secs.min(t);
                    break;
                }
            }
            Stage::Warmup | Stage::Run => {}
        }
        let draining = matches!(stage, Stage::Drain(_));
        let quiet = draining || matches!(stage, Stage::Quiesce(_));
        {
            let mut s = state.borrow_mut();
            for _ in 0..messages.due(t, draining) {
                let n = s.slots.len();
                let mut tries = 0;
                while tries < n
                    && !(s.slots[next_sender].phase == SlotPhase::Joined
                        && s.slots[next_sender].tx.is_some())
                {
                    next_sender = (next_sender + 1) % n;
                    tries += 1;
                }
                if tries == n {
                    s.counters.sends_skipped += 1;
                    continue;
                }
                s.slots[next_sender].pending_acks += 1;
                s.command(next_sender, Cmd::Send);
                next_sender = (next_sender + 1) % n;
            }
            for _ in 0..churn.due(t, quiet) {
                let Some(i) = s.pick(|slot| !slot.stable && !slot.resuming) else {
                    continue;
                };
                let mode = match s.rng.below(4) {
                    0 | 1 => CloseMode::Graceful,
                    2 => CloseMode::Fin,
                    _ => CloseMode::Reset,
                };
                let span = config.offline_max_ms.saturating_sub(config.offline_min_ms);
                let offline = config.offline_min_ms + s.rng.below(span + 1);
                let new_user = s.rng.unit() < config.new_user_share;
                let slot = &mut s.slots[i];
                slot.phase = SlotPhase::Leaving;
                if new_user {
                    slot.generation += 1;
                    slot.fresh = true;
                }
                s.command(
                    i,
                    Cmd::Leave {
                        mode,
                        offline: Duration::from_millis(offline),
                    },
                );
            }
            for _ in 0..typing.due(t, draining) {
                if let Some(i) = s.pick(|_| true) {
                    let start = !s.slots[i].typing;
                    s.slots[i].typing = start;
                    s.counters.typing_sent += 1;
                    s.command(i, Cmd::Typing(start));
                }
            }
            for _ in 0..presence.due(t, draining) {
                if let Some(i) = s.pick(|_| true) {
                    let status =
                        ["online", "away", "busy"][usize::try_from(s.rng.below(3)).unwrap_or(0)];
                    s.counters.presence_sent += 1;
                    s.command(i, Cmd::Presence(status));
                }
            }
            for _ in 0..reads.due(t, draining) {
                if let Some(i) = s.pick(|slot| slot.view.contiguous() > 0) {
                    let seq = s.slots[i].view.contiguous();
                    s.counters.read_sent += 1;
                    s.command(i, Cmd::Read(seq));
                }
            }
            for _ in 0..history.due(t, draining) {
                if let Some(i) = s.pick(|_| true) {
                    let head = s.heads[s.slots[i].room];
                    if head < 2 {
                        continue;
                    }
                    let before = 2 + s.rng.below(head);
                    let limit = 10 + u32::try_from(s.rng.below(41)).unwrap_or(0);
                    s.counters.history_requests += 1;
                    s.command(i, Cmd::History { before, limit });
                }
            }
        }
        for _ in 0..http.due(t, quiet) {
            let (room, after) = {
                let mut s = state.borrow_mut();
                if s.http_in_flight >= HTTP_IN_FLIGHT {
                    s.counters.http_skipped += 1;
                    continue;
                }
                let room = usize::try_from(s.rng.below(config.rooms as u64)).unwrap_or(0);
                let head = s.heads[room];
                let after = s.rng.below(head + 1);
                s.http_in_flight += 1;
                s.counters.http_requests += 1;
                (room, after)
            };
            let token = http_tokens.clone();
            let user = http_users % HTTP_USERS;
            http_users += 1;
            let state = state.clone();
            tokio::task::spawn_local(async move {
                http_check(&state, room, after, &token[user]).await;
                state.borrow_mut().http_in_flight -= 1;
            });
        }
        if t >= next_sample && !matches!(stage, Stage::Drain(_)) {
            sampler.take(&state, t, "run").await?;
            next_sample += config.sample_secs;
        }
    }
    let t_end = start.elapsed().as_secs_f64();
    let drained = state.borrow().drained();
    if !drained {
        state
            .borrow_mut()
            .error("drain: not every ack and delivery arrived in time");
    }
    let end = sampler.take(&state, t_end, "end").await?;
    {
        let mut s = state.borrow_mut();
        s.integrity.slots_not_joined = s
            .slots
            .iter()
            .filter(|slot| slot.phase != SlotPhase::Joined)
            .count() as u64;
    }
    eprintln!("[soak] traffic over; reading every room back");

    read_back(&state, &config).await;

    // Everyone leaves; the server should return to its idle state.
    {
        let mut s = state.borrow_mut();
        s.stopping = true;
        for i in 0..s.slots.len() {
            s.command(i, Cmd::Stop);
        }
    }
    let leave_deadline = Instant::now() + Duration::from_secs(30);
    while tasks.iter().any(|t| !t.is_finished()) && Instant::now() < leave_deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    for t in &tasks {
        t.abort();
    }
    let idle_deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let fds = procstat::open_fds(config.server_pid).unwrap_or(0) as u64;
        let conns = health_connections(config.server).await;
        if (conns == Some(0) && fds <= idle_start.fds) || Instant::now() >= idle_deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let idle_end = sampler
        .take(&state, start.elapsed().as_secs_f64(), "idle-end")
        .await?;

    let report = finish(
        &state,
        &config,
        started_unix,
        traffic_secs,
        sampler.samples,
        [&idle_start, warm.as_ref().unwrap_or(&end), &end, &idle_end],
    );
    let json = serde_json::to_string_pretty(&report)?;
    std::fs::write(config.out_dir.join("summary.json"), json + "\n")?;
    Ok(report)
}

/// Figures and verdict. `anchors`: idle start, warm, end, idle end.
fn finish(
    state: &StateRef,
    config: &SoakConfig,
    started_unix: u64,
    traffic_secs: f64,
    samples: Vec<Sample>,
    anchors: [&Sample; 4],
) -> SoakReport {
    let [idle_start, warm, end, idle_end] = anchors;
    let mut s = state.borrow_mut();
    // Deliveries each slot is missing.
    let (mut live_lost, mut resume_lost) = (0, 0);
    for slot in &s.slots {
        let missing = slot.view.missing_through(s.heads[slot.room]);
        if slot.stable {
            live_lost += missing;
        } else {
            resume_lost += missing;
        }
    }
    let unacked = s.sent.iter().filter(|m| m.seq == 0).count() as u64;
    let integrity = Integrity {
        unacked,
        live_lost,
        resume_lost,
        ..s.integrity.clone()
    };

    let after_warm: Vec<&Sample> = samples
        .iter()
        .filter(|x| x.t_secs >= warm.t_secs && x.label != "idle-end")
        .collect();
    let per_hour = |f: &dyn Fn(&Sample) -> u64| {
        let points: Vec<(f64, f64)> = after_warm
            .iter()
            .map(|x| (x.t_secs / 3600.0, f(x) as f64))
            .collect();
        slope(&points)
    };
    let acked_after_warm = end.acked.saturating_sub(warm.acked);
    let index_allowance_kib = acked_after_warm * config.index_bytes_per_message / 1024;
    let rss = RssSummary {
        acked_after_warm,
        index_allowance_kib,
        growth_beyond_index_pct: if warm.rss_kib > 0 {
            (end.rss_kib as f64 - warm.rss_kib as f64 - index_allowance_kib as f64) * 100.0
                / warm.rss_kib as f64
        } else {
            0.0
        },
        idle_start_kib: idle_start.rss_kib,
        warm_kib: warm.rss_kib,
        end_kib: end.rss_kib,
        idle_end_kib: idle_end.rss_kib,
        max_after_warmup_kib: after_warm.iter().map(|x| x.rss_kib).max().unwrap_or(0),
        peak_kib: idle_end.hwm_kib,
        growth_pct: if warm.rss_kib > 0 {
            (end.rss_kib as f64 - warm.rss_kib as f64) * 100.0 / warm.rss_kib as f64
        } else {
            0.0
        },
        slope_kib_per_hour: per_hour(&|x| x.rss_kib),
        anon_slope_kib_per_hour: per_hour(&|x| x.rss_anon_kib),
        data_warm_kib: warm.data_kib.unwrap_or(0),
        data_end_kib: end.data_kib.unwrap_or(0),
        growth_beyond_data_pct: if warm.rss_kib > 0 {
            let rss = end.rss_kib as f64 - warm.rss_kib as f64;
            let data = end.data_kib.unwrap_or(0) as f64 - warm.data_kib.unwrap_or(0) as f64;
            (rss - data) * 100.0 / warm.rss_kib as f64
        } else {
            0.0
        },
    };
    let fds = FdSummary {
        idle_start: idle_start.fds,
        warm: warm.fds,
        end: end.fds,
        idle_end: idle_end.fds,
        max: samples.iter().map(|x| x.fds).max().unwrap_or(0),
        slope_per_hour: per_hour(&|x| x.fds),
    };

    let mut failures = Vec::new();
    let bound = config.max_rss_growth * 100.0;
    if rss.growth_beyond_index_pct > bound {
        failures.push(format!(
            "RSS grew {:.1} % after the warm-up ({} → {} KiB) beyond {} KiB for the index of \
             {} messages stored, bound {bound:.0} %",
            rss.growth_beyond_index_pct,
            rss.warm_kib,
            rss.end_kib,
            rss.index_allowance_kib,
            rss.acked_after_warm
        ));
    }
    if fds.end > fds.warm + config.fd_slack {
        failures.push(format!(
            "fds grew after the warm-up: {} → {} (slack {})",
            fds.warm, fds.end, config.fd_slack
        ));
    }
    if fds.idle_end > fds.idle_start + config.fd_slack {
        failures.push(format!(
            "fds with no clients: {} before, {} after (slack {})",
            fds.idle_start, fds.idle_end, config.fd_slack
        ));
    }
    let slots = config.connections as u64;
    if warm.fds < slots {
        failures.push(format!(
            "the sampled process (pid {}) held {} fds with {slots} clients connected: it is \
             not the server",
            config.server_pid, warm.fds
        ));
    }
    for (name, sample, expected) in [
        ("warm", warm, slots),
        ("end", end, slots),
        ("idle-end", idle_end, 0),
    ] {
        if sample.server_connections != Some(expected) {
            failures.push(format!(
                "server counted {:?} connections at {name}, the generator {expected}",
                sample.server_connections
            ));
        }
    }
    let checks = [
        ("messages never acknowledged", integrity.unacked),
        (
            "acknowledged messages lost from the store",
            integrity.acked_lost,
        ),
        ("messages stored twice", integrity.stored_duplicates),
        ("seq gaps in the store", integrity.store_gaps),
        ("stored messages nobody sent", integrity.stored_foreign),
        (
            "live deliveries lost on stable connections",
            integrity.live_lost,
        ),
        ("messages missing after resume", integrity.resume_lost),
        ("duplicate live deliveries", integrity.live_duplicates),
        ("slots not joined at the end", integrity.slots_not_joined),
        (
            "history pages failing their check",
            integrity.history_mismatches,
        ),
        ("HTTP pages failing their check", integrity.http_mismatches),
    ];
    for (what, n) in checks {
        if n > 0 {
            failures.push(format!("{what}: {n}"));
        }
    }
    if !s.errors.is_empty() {
        failures.push(format!("errors: {:?}", s.errors));
    }
    let passed = failures.is_empty();
    s.integrity = integrity.clone();
    SoakReport {
        config: config.clone(),
        started_unix,
        traffic_secs,
        samples,
        rss,
        fds,
        counters: s.counters.clone(),
        integrity,
        delivery_latency: latency_of(&s.delivery),
        ack_latency: latency_of(&s.ack),
        errors: s.errors.clone(),
        failures,
        passed,
    }
}

impl SoakReport {
    /// A markdown summary of the run.
    pub fn markdown(&self) -> String {
        let c = &self.config;
        let k = &self.counters;
        let i = &self.integrity;
        let mib = |kib: u64| kib as f64 / 1024.0;
        let mut out = String::new();
        out.push_str(&format!(
            "# Soak: {:.0} min of traffic, {}\n\n",
            self.traffic_secs / 60.0,
            if self.passed { "PASSED" } else { "FAILED" }
        ));
        out.push_str(&format!(
            "Load: {} connections in {} rooms ({:.0} % stable), {:.0} messages/s, churn {:.1} \
             disconnects/s ({:.0} % new users, away {}–{} ms), typing {:.0}/s, presence {:.0}/s, \
             read {:.0}/s, history {:.0}/s, HTTP GET {:.1}/s; warm-up {:.0} s, samples every \
             {:.0} s.\n\n",
            c.connections,
            c.rooms,
            c.stable_share * 100.0,
            c.message_rate,
            c.churn_per_sec,
            c.new_user_share * 100.0,
            c.offline_min_ms,
            c.offline_max_ms,
            c.typing_per_sec,
            c.presence_per_sec,
            c.read_per_sec,
            c.history_per_sec,
            c.http_per_sec,
            c.warmup_secs,
            c.sample_secs,
        ));
        out.push_str("| | idle start | warm-up end | end | max after warm-up | no clients |\n");
        out.push_str("|---|---|---|---|---|---|\n");
        out.push_str(&format!(
            "| RSS (MiB) | {:.1} | {:.1} | {:.1} | {:.1} | {:.1} |\n",
            mib(self.rss.idle_start_kib),
            mib(self.rss.warm_kib),
            mib(self.rss.end_kib),
            mib(self.rss.max_after_warmup_kib),
            mib(self.rss.idle_end_kib),
        ));
        out.push_str(&format!(
            "| open fds | {} | {} | {} | {} | {} |\n\n",
            self.fds.idle_start, self.fds.warm, self.fds.end, self.fds.max, self.fds.idle_end
        ));
        out.push_str(&format!(
            "RSS growth after warm-up {:+.1} %, {:+.1} % beyond {:.1} MiB for the index of {} \
             messages stored (bound {:.0} %), slope {:+.1} MiB/h (anonymous {:+.1} MiB/h), peak \
             {:.1} MiB; fd slope {:+.1}/h. Data directory {:.1} → {:.1} MiB; RSS growth beyond \
             it {:+.1} %.\n\n",
            self.rss.growth_pct,
            self.rss.growth_beyond_index_pct,
            mib(self.rss.index_allowance_kib),
            self.rss.acked_after_warm,
            c.max_rss_growth * 100.0,
            self.rss.slope_kib_per_hour / 1024.0,
            self.rss.anon_slope_kib_per_hour / 1024.0,
            mib(self.rss.peak_kib),
            self.fds.slope_per_hour,
            mib(self.rss.data_warm_kib),
            mib(self.rss.data_end_kib),
            self.rss.growth_beyond_data_pct,
        ));
        out.push_str(&format!(
            "Messages: sent {}, acked {} (unacked {}), stored {}; delivered live {}, by resume \
             {}; delivery p50 {:.2} ms, p99 {:.2} ms, max {:.1} ms; ack p99 {:.2} ms.\n\n",
            k.sent,
            k.acked,
            i.unacked,
            i.stored,
            k.delivered_live,
            k.delivered_resume,
            self.delivery_latency.p50_ms,
            self.delivery_latency.p99_ms,
            self.delivery_latency.max_ms,
            self.ack_latency.p99_ms,
        ));
        out.push_str(&format!(
            "Churn: {} connects ({} failed); disconnects {} graceful, {} FIN, {} RST, {} by the \
             server; {} resumes ({} extra pages), {} new users.\n\n",
            k.connects,
            k.connect_failures,
            k.closes_graceful,
            k.closes_fin,
            k.closes_reset,
            k.closes_by_server,
            k.resumes,
            k.resume_pages,
            k.new_users,
        ));
        out.push_str(&format!(
            "Other: typing {} sent / {} received, presence {} / {}, read {} / {}, history {} \
             ({} checked ok), HTTP {} ({} ok, {} 429), read-back retries {}.\n\n",
            k.typing_sent,
            k.typing_received,
            k.presence_sent,
            k.presence_received,
            k.read_sent,
            k.read_received,
            k.history_requests,
            k.history_ok,
            k.http_requests,
            k.http_ok,
            k.http_rate_limited,
            i.readback_retries,
        ));
        out.push_str(&format!(
            "Integrity: acked lost {}, stored twice {}, store gaps {}, live lost {}, missing \
             after resume {}, live duplicates {}, join-race overlaps {} (allowed), out of order \
             {}; errors {:?}.\n\n",
            i.acked_lost,
            i.stored_duplicates,
            i.store_gaps,
            i.live_lost,
            i.resume_lost,
            i.live_duplicates,
            k.overlaps,
            k.out_of_order,
            self.errors,
        ));
        if self.passed {
            out.push_str("Verdict: PASSED.\n");
        } else {
            out.push_str("Verdict: FAILED:\n");
            for f in &self.failures {
                out.push_str(&format!("- {f}\n"));
            }
        }
        out
    }
}

type Ws = WebSocketStream<TcpStream>;

async fn open_ws(index: usize, config: &SoakConfig, token: &str) -> Result<Ws, String> {
    let socket = TcpSocket::new_v4().map_err(|e| format!("connect: {:?}", e.kind()))?;
    let last = u8::try_from(index % usize::from(config.sources.max(1))).unwrap_or(0) + 1;
    socket
        .bind(SocketAddr::from((Ipv4Addr::new(127, 0, 0, last), 0)))
        .map_err(|e| format!("connect: bind {:?}", e.kind()))?;
    let stream = socket
        .connect(config.server)
        .await
        .map_err(|e| format!("connect: {:?}", e.kind()))?;
    stream
        .set_nodelay(true)
        .map_err(|e| format!("connect: {:?}", e.kind()))?;
    let url = format!("ws://{}/?token={token}", config.server);
    let ws_config = WebSocketConfig::default().read_buffer_size(4096);
    let (ws, _) = tokio_tungstenite::client_async_with_config(url, stream, Some(ws_config))
        .await
        .map_err(|e| match e {
            tokio_tungstenite::tungstenite::Error::Http(r) => {
                format!("connect: HTTP {}", r.status())
            }
            other => format!("connect: {other}"),
        })?;
    Ok(ws)
}

/// How a connection ended.
enum SessionEnd {
    /// The generator left; come back after this long.
    Left(Duration),
    /// Lost (server close, socket error): reconnect soon and resume.
    Lost,
    /// The run is over.
    Stop,
}

/// One client slot from the first connect to the end of the run.
async fn slot_task(index: usize, state: StateRef, permits: Arc<Semaphore>) {
    let config = state.borrow().config.clone();
    let mut away: Option<Duration> = None;
    loop {
        if let Some(d) = away.take() {
            tokio::time::sleep(d).await;
        }
        let (token, room, since) = {
            let mut s = state.borrow_mut();
            if s.stopping {
                break;
            }
            let slot = &mut s.slots[index];
            slot.phase = SlotPhase::Connecting;
            let user = slot.user(index);
            let room = slot.room;
            let since = if slot.fresh {
                None
            } else {
                Some(slot.view.contiguous())
            };
            (
                sign(&config, &user, vec![room_name(room)], "user"),
                room,
                since,
            )
        };
        let opened = {
            // The semaphore is never closed, so acquiring only waits.
            let _permit = permits.acquire().await;
            open_ws(index, &config, &token).await
        };
        let ws = match opened {
            Ok(ws) => ws,
            Err(kind) => {
                let mut s = state.borrow_mut();
                s.counters.connect_failures += 1;
                s.error(kind);
                s.slots[index].phase = SlotPhase::Offline;
                away = Some(Duration::from_secs(1));
                continue;
            }
        };
        match session(index, room, since, ws, &state).await {
            SessionEnd::Left(d) => away = Some(d),
            SessionEnd::Lost => away = Some(Duration::from_millis(500)),
            SessionEnd::Stop => break,
        }
    }
    state.borrow_mut().slots[index].phase = SlotPhase::Done;
}

/// One connection of a slot: join (resuming when `since`), then traffic until it ends.
async fn session(
    index: usize,
    room: usize,
    since: Option<u64>,
    mut ws: Ws,
    state: &StateRef,
) -> SessionEnd {
    let (tx, mut rx) = mpsc::unbounded_channel();
    let body_pad = {
        let mut s = state.borrow_mut();
        let pad = "x".repeat(s.config.body_bytes.saturating_sub(24));
        s.counters.connects += 1;
        let slot = &mut s.slots[index];
        slot.tx = Some(tx);
        slot.window = SeqWindow::default();
        slot.history_purposes.clear();
        slot.resuming = since.is_some();
        if slot.fresh {
            slot.view = View::default();
        }
        let stopping = s.stopping;
        match since {
            Some(_) => s.counters.resumes += 1,
            None if s.slots[index].generation > 0 => s.counters.new_users += 1,
            None => {}
        }
        (pad, stopping)
    };
    let (body_pad, stopping) = body_pad;
    let join = match since {
        Some(since) => {
            format!(
                r#"{{"action":"join","room":"{}","since":{since}}}"#,
                room_name(room)
            )
        }
        None => format!(r#"{{"action":"join","room":"{}"}}"#, room_name(room)),
    };
    // A connection that opens after the run ended leaves at once.
    let mut leaving: Option<(CloseMode, Duration, Instant)> =
        stopping.then(|| (CloseMode::Graceful, Duration::ZERO, Instant::now()));
    let mut stop = stopping;
    let mut check = tokio::time::interval(Duration::from_millis(20));
    let end = if ws.send(Message::text(join)).await.is_err() {
        Err("socket write failed".to_owned())
    } else {
        loop {
            tokio::select! {
                frame = ws.next() => match frame {
                    Some(Ok(Message::Text(text))) => {
                        let replies = on_frame(index, text.as_str(), state);
                        let mut failed = false;
                        for reply in replies {
                            if ws.send(Message::text(reply)).await.is_err() {
                                failed = true;
                                break;
                            }
                        }
                        if failed {
                            break Err("socket write failed".to_owned());
                        }
                    }
                    Some(Ok(Message::Close(frame))) => {
                        break Err(format!(
                            "closed by server: {}",
                            frame.map_or(0, |f| u16::from(f.code))
                        ));
                    }
                    Some(Ok(_)) => {}
                    Some(Err(e)) => break Err(format!("socket error: {e}")),
                    None => break Err("socket ended".to_owned()),
                },
                cmd = rx.recv() => {
                    let Some(cmd) = cmd else { break Ok(()) };
                    let frame = match cmd {
                        Cmd::Send => {
                            let mut s = state.borrow_mut();
                            let now = s.now_us();
                            let id = s.sent.len() as u64;
                            s.sent.push(Sent {
                                room: u32::try_from(room).unwrap_or(u32::MAX),
                                sent_us: now,
                                seq: 0,
                                stored: 0,
                            });
                            s.counters.sent += 1;
                            format!(
                                r#"{{"action":"message","room":"{}","id":"m{id}.{now}","body":"{id}:{now}:{body_pad}"}}"#,
                                room_name(room)
                            )
                        }
                        Cmd::Typing(start) => format!(
                            r#"{{"action":"typing","room":"{}","state":"{}"}}"#,
                            room_name(room),
                            if start { "start" } else { "stop" }
                        ),
                        Cmd::Presence(status) => {
                            format!(r#"{{"action":"presence","status":"{status}"}}"#)
                        }
                        Cmd::Read(seq) => format!(
                            r#"{{"action":"read","room":"{}","seq":{seq}}}"#,
                            room_name(room)
                        ),
                        Cmd::History { before, limit } => {
                            state.borrow_mut().slots[index]
                                .history_purposes
                                .push_back(HistoryPurpose::Check { before });
                            format!(
                                r#"{{"action":"history","room":"{}","before":{before},"limit":{limit}}}"#,
                                room_name(room)
                            )
                        }
                        Cmd::Leave { mode, offline } => {
                            leaving = Some((mode, offline, Instant::now() + LEAVE_ACK_WAIT));
                            continue;
                        }
                        Cmd::Stop => {
                            stop = true;
                            leaving = Some((CloseMode::Graceful, Duration::ZERO, Instant::now()));
                            continue;
                        }
                    };
                    if ws.send(Message::text(frame)).await.is_err() {
                        break Err("socket write failed".to_owned());
                    }
                }
                _ = check.tick(), if leaving.is_some() => {
                    if let Some((_, _, deadline)) = leaving {
                        let pending = state.borrow().slots[index].pending_acks;
                        if pending == 0 || stop || Instant::now() >= deadline {
                            if pending > 0 && !stop {
                                state.borrow_mut().error("leave: acks still missing after 10 s");
                            }
                            break Ok(());
                        }
                    }
                }
            }
        }
    };
    // Commands that never reached the socket.
    rx.close();
    let mut dropped = 0;
    while let Ok(cmd) = rx.try_recv() {
        if matches!(cmd, Cmd::Send) {
            dropped += 1;
        }
    }
    let outcome = match (end, leaving) {
        (Ok(()), Some((mode, offline, _))) => {
            match mode {
                CloseMode::Graceful => {
                    let closing = async {
                        let _ = ws.close(None).await;
                        while let Some(Ok(_)) = ws.next().await {}
                    };
                    let _ = tokio::time::timeout(Duration::from_secs(5), closing).await;
                }
                CloseMode::Fin => drop(ws),
                CloseMode::Reset => {
                    // Best effort: without it the drop is a FIN, still a disconnect.
                    let _ = ws.get_ref().set_zero_linger();
                    drop(ws);
                }
            }
            let mut s = state.borrow_mut();
            if !stop {
                match mode {
                    CloseMode::Graceful => s.counters.closes_graceful += 1,
                    CloseMode::Fin => s.counters.closes_fin += 1,
                    CloseMode::Reset => s.counters.closes_reset += 1,
                }
            }
            if stop {
                SessionEnd::Stop
            } else {
                SessionEnd::Left(offline)
            }
        }
        (Ok(()), None) => SessionEnd::Stop,
        (Err(why), _) => {
            let mut s = state.borrow_mut();
            s.counters.closes_by_server += 1;
            s.error(why);
            SessionEnd::Lost
        }
    };
    let mut s = state.borrow_mut();
    s.counters.sends_dropped += dropped;
    let slot = &mut s.slots[index];
    slot.pending_acks = slot
        .pending_acks
        .saturating_sub(u32::try_from(dropped).unwrap_or(u32::MAX));
    let unanswered = slot.pending_acks;
    slot.pending_acks = 0;
    slot.tx = None;
    slot.resuming = false;
    slot.history_purposes.clear();
    slot.phase = SlotPhase::Offline;
    if unanswered > 0 {
        s.error("connection ended with acks outstanding");
    }
    outcome
}

/// The fields of a server frame the soak reads.
#[derive(Deserialize)]
struct Frame<'a> {
    #[serde(rename = "type", borrow, default)]
    kind: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    room: Option<Cow<'a, str>>,
    #[serde(default)]
    seq: u64,
    #[serde(default)]
    head: u64,
    #[serde(default)]
    through: u64,
    #[serde(default)]
    more: bool,
    #[serde(default)]
    duplicate: bool,
    #[serde(borrow, default)]
    id: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    body: Option<Cow<'a, str>>,
    #[serde(default)]
    code: Option<serde_json::Value>,
    #[serde(borrow, default)]
    messages: Vec<PageMessage<'a>>,
}

/// A message in a `history` page or an HTTP page.
#[derive(Deserialize)]
struct PageMessage<'a> {
    seq: u64,
    #[serde(borrow)]
    id: Cow<'a, str>,
}

/// Handles one server frame of slot `index`; returns frames to send back.
fn on_frame(index: usize, text: &str, state: &StateRef) -> Vec<String> {
    let mut guard = state.borrow_mut();
    // A plain `&mut State`, so fields can be borrowed apart.
    let s = &mut *guard;
    let frame = match serde_json::from_str::<Frame<'_>>(text) {
        Ok(f) => f,
        Err(_) => {
            s.error("unparsable frame");
            return Vec::new();
        }
    };
    let room = s.slots[index].room;
    let now = s.now_us();
    if let Some(name) = frame.room.as_deref()
        && room_index(name) != Some(room)
    {
        s.error("frame for another room");
        return Vec::new();
    }
    match frame.kind.as_deref().unwrap_or("") {
        "message" => {
            let Some((id, sent_us)) = frame.body.as_deref().and_then(parse_body) else {
                s.error("message the generator did not send");
                return Vec::new();
            };
            let misplaced = usize::try_from(id)
                .ok()
                .and_then(|i| s.sent.get(i))
                .is_some_and(|m| m.room as usize != room || (m.seq != 0 && m.seq != frame.seq));
            if misplaced {
                s.error("message at another seq than its ack");
            }
            let resuming = s.slots[index].resuming;
            let stable = s.slots[index].stable;
            if resuming {
                s.counters.delivered_resume += 1;
                if !s.slots[index].view.add(frame.seq) {
                    s.counters.overlaps += 1;
                }
                return Vec::new();
            }
            let latency = now.saturating_sub(sent_us).max(1);
            s.delivery.saturating_record(latency);
            s.delivery_window.saturating_record(latency);
            s.counters.delivered_live += 1;
            match s.slots[index].window.observe(frame.seq) {
                SeqVerdict::Duplicate => {
                    s.integrity.live_duplicates += 1;
                    return Vec::new();
                }
                SeqVerdict::OutOfOrder => s.counters.out_of_order += 1,
                SeqVerdict::New => {}
            }
            if !s.slots[index].view.add(frame.seq) {
                if stable {
                    // A stable connection never resumes: the second copy is a duplicate.
                    s.integrity.live_duplicates += 1;
                } else {
                    s.counters.overlaps += 1;
                }
            }
        }
        "ack" => {
            let Some(id) = frame.id.as_deref().and_then(parse_id) else {
                s.error("ack for an unknown id");
                return Vec::new();
            };
            if frame.duplicate {
                s.counters.duplicate_acks += 1;
                s.error("ack marked duplicate");
            }
            let Some(i) = usize::try_from(id).ok().filter(|&i| i < s.sent.len()) else {
                s.error("ack for an unknown id");
                return Vec::new();
            };
            if s.sent[i].seq != 0 {
                s.error("second ack for a message");
                return Vec::new();
            }
            s.sent[i].seq = frame.seq;
            let sent_us = s.sent[i].sent_us;
            s.counters.acked += 1;
            s.ack.saturating_record(now.saturating_sub(sent_us).max(1));
            if frame.seq > s.heads[room] {
                s.heads[room] = frame.seq;
            }
            let slot = &mut s.slots[index];
            slot.pending_acks = slot.pending_acks.saturating_sub(1);
            slot.view.add(frame.seq);
        }
        "joined" => {
            let slot = &mut s.slots[index];
            if slot.fresh {
                slot.view.raise_floor(frame.head);
                slot.fresh = false;
            }
            if slot.phase == SlotPhase::Connecting {
                slot.phase = SlotPhase::Joined;
            }
            if frame.head > s.heads[room] {
                s.heads[room] = frame.head;
            }
        }
        "replayed" => {
            if frame.more {
                s.counters.resume_pages += 1;
                s.slots[index]
                    .history_purposes
                    .push_back(HistoryPurpose::Resume);
                return vec![format!(
                    r#"{{"action":"history","room":"{}","after":{},"limit":{RESUME_PAGE}}}"#,
                    room_name(room),
                    frame.through
                )];
            }
            s.slots[index].resuming = false;
        }
        "history" => {
            let Some(purpose) = s.slots[index].history_purposes.pop_front() else {
                s.error("history reply nobody asked for");
                return Vec::new();
            };
            match purpose {
                HistoryPurpose::Resume => {
                    for m in &frame.messages {
                        s.counters.delivered_resume += 1;
                        if !s.slots[index].view.add(m.seq) {
                            s.counters.overlaps += 1;
                        }
                    }
                    match frame.messages.last() {
                        Some(last) if frame.more => {
                            s.counters.resume_pages += 1;
                            s.slots[index]
                                .history_purposes
                                .push_back(HistoryPurpose::Resume);
                            return vec![format!(
                                r#"{{"action":"history","room":"{}","after":{},"limit":{RESUME_PAGE}}}"#,
                                room_name(room),
                                last.seq
                            )];
                        }
                        _ => s.slots[index].resuming = false,
                    }
                }
                HistoryPurpose::Check { before } => {
                    let ok = check_page(&s.sent, room, &frame.messages, PageAnchor::Before(before));
                    if ok {
                        s.counters.history_ok += 1;
                    } else {
                        s.integrity.history_mismatches += 1;
                    }
                }
            }
        }
        "typing" => s.counters.typing_received += 1,
        "presence" => s.counters.presence_received += 1,
        "read" => s.counters.read_received += 1,
        "error" => {
            s.counters.error_frames += 1;
            let code = code_text(frame.code.as_ref());
            s.error(format!("error {code}"));
        }
        "closing" => {
            let code = code_text(frame.code.as_ref());
            s.error(format!("closing {code}"));
        }
        _ => {}
    }
    Vec::new()
}

/// An `error` code (a string) or a `closing` code (a number) as text.
fn code_text(code: Option<&serde_json::Value>) -> String {
    match code {
        Some(serde_json::Value::String(c)) => c.clone(),
        Some(other) => other.to_string(),
        None => "?".to_owned(),
    }
}

/// Where a checked page is anchored.
#[derive(Debug, Clone, Copy)]
enum PageAnchor {
    /// The newest messages below this seq: the page must end at `before − 1`.
    Before(u64),
    /// The oldest messages above this seq: the page must start at `after + 1`.
    After(u64),
}

/// A page is gap-free, anchored where asked, in the room, and each message the generator sent
/// sits at the seq its ack named.
fn check_page(sent: &[Sent], room: usize, page: &[PageMessage<'_>], anchor: PageAnchor) -> bool {
    let consecutive = page.windows(2).all(|w| w[1].seq == w[0].seq + 1);
    let anchored = match (anchor, page.first(), page.last()) {
        (PageAnchor::Before(before), _, Some(last)) => last.seq + 1 == before,
        (PageAnchor::Before(before), _, None) => before <= 1,
        (PageAnchor::After(after), Some(first), _) => first.seq == after + 1,
        // An empty page after `after` is fine when nothing newer is stored; the caller knows.
        (PageAnchor::After(_), None, _) => true,
    };
    let placed = page.iter().all(|m| {
        match parse_id(&m.id)
            .and_then(|i| usize::try_from(i).ok())
            .and_then(|i| sent.get(i))
        {
            Some(s) => s.room as usize == room && (s.seq == 0 || s.seq == m.seq),
            None => false,
        }
    });
    consecutive && anchored && placed
}

/// `GET /rooms/r-<room>/messages?after=<after>` with a service token, checked.
async fn http_check(state: &StateRef, room: usize, after: u64, token: &str) {
    let server = state.borrow().config.server;
    let path = format!(
        "/rooms/{}/messages?after={after}&limit={HTTP_PAGE}",
        room_name(room)
    );
    let result = http_get(server, &path, Some(token)).await;
    let mut s = state.borrow_mut();
    match result {
        Ok((200, body)) => match serde_json::from_slice::<Frame<'_>>(&body) {
            Ok(page) => {
                let nonempty_expected = after < s.heads[room];
                let ok = check_page(&s.sent, room, &page.messages, PageAnchor::After(after))
                    && (!nonempty_expected || !page.messages.is_empty());
                if ok {
                    s.counters.http_ok += 1;
                } else {
                    s.integrity.http_mismatches += 1;
                }
            }
            Err(_) => s.error("http: unparsable page"),
        },
        Ok((429, _)) => {
            s.counters.http_rate_limited += 1;
            s.error("http: 429");
        }
        Ok((status, _)) => s.error(format!("http: {status}")),
        Err(e) => s.error(e),
    }
}

/// Reads every room back over HTTP (one service user per room, in parallel) and checks that
/// each acknowledged message is stored once, at its seq, and that seqs are gap-free.
async fn read_back(state: &StateRef, config: &Rc<SoakConfig>) {
    let deadline = Instant::now() + READBACK_LIMIT;
    let tasks: Vec<_> = (0..READBACK_WORKERS.min(config.rooms))
        .map(|worker| {
            let (state, config) = (state.clone(), config.clone());
            tokio::task::spawn_local(async move {
                for room in (worker..config.rooms).step_by(READBACK_WORKERS) {
                    let token = sign(
                        &config,
                        &format!("svc-readback-{room}"),
                        Vec::new(),
                        "service",
                    );
                    read_back_room(&state, &config, room, &token, deadline).await;
                }
            })
        })
        .collect();
    for t in tasks {
        if t.await.is_err() {
            state.borrow_mut().error("read-back task failed");
        }
    }
    let mut s = state.borrow_mut();
    let mut lost = 0;
    let mut twice = 0;
    for m in &s.sent {
        if m.seq != 0 && m.stored == 0 {
            lost += 1;
        }
        if m.stored > 1 {
            twice += 1;
        }
    }
    s.integrity.acked_lost += lost;
    s.integrity.stored_duplicates += twice;
}

async fn read_back_room(
    state: &StateRef,
    config: &SoakConfig,
    room: usize,
    token: &str,
    deadline: Instant,
) {
    let mut after = 0u64;
    loop {
        let path = format!(
            "/rooms/{}/messages?after={after}&limit={HTTP_PAGE}",
            room_name(room)
        );
        let (status, body) = match http_get(config.server, &path, Some(token)).await {
            Ok(r) => r,
            Err(e) => {
                state.borrow_mut().error(format!("read-back: {e}"));
                return;
            }
        };
        // The server's request rates (per user and per client address) pace the read-back.
        if status == 429 && Instant::now() < deadline {
            state.borrow_mut().integrity.readback_retries += 1;
            tokio::time::sleep(Duration::from_millis(250)).await;
            continue;
        }
        if status != 200 {
            state
                .borrow_mut()
                .error(format!("read-back: HTTP {status}"));
            return;
        }
        let Ok(page) = serde_json::from_slice::<Frame<'_>>(&body) else {
            state.borrow_mut().error("read-back: unparsable page");
            return;
        };
        let mut guard = state.borrow_mut();
        let s = &mut *guard;
        for m in &page.messages {
            if m.seq != after + 1 {
                s.integrity.store_gaps += m.seq.saturating_sub(after + 1);
            }
            after = after.max(m.seq);
            s.integrity.stored += 1;
            let slot = parse_id(&m.id)
                .and_then(|i| usize::try_from(i).ok())
                .filter(|&i| i < s.sent.len());
            match slot {
                Some(i) => {
                    let sent = &mut s.sent[i];
                    if sent.room as usize != room || (sent.seq != 0 && sent.seq != m.seq) {
                        s.integrity.acked_lost += 1;
                    } else {
                        sent.stored = sent.stored.saturating_add(1);
                    }
                }
                None => s.integrity.stored_foreign += 1,
            }
        }
        if !page.more || page.messages.is_empty() {
            break;
        }
    }
    let head = state.borrow().heads[room];
    if after < head {
        let mut s = state.borrow_mut();
        s.integrity.store_gaps += head - after;
    }
}

/// `GET /health` → `connections`.
async fn health_connections(server: SocketAddr) -> Option<u64> {
    let (status, body) = http_get(server, "/health", None).await.ok()?;
    if status != 200 {
        return None;
    }
    serde_json::from_slice::<serde_json::Value>(&body)
        .ok()?
        .get("connections")?
        .as_u64()
}

/// One HTTP/1.1 GET with `Connection: close`: (status, body). Loopback only.
pub async fn http_get(
    server: SocketAddr,
    path: &str,
    token: Option<&str>,
) -> Result<(u16, Vec<u8>), String> {
    http_request(server, "GET", path, token, None).await
}

/// One HTTP/1.1 request with `Connection: close` and an optional JSON body: (status, body).
/// Loopback only.
pub async fn http_request(
    server: SocketAddr,
    method: &str,
    path: &str,
    token: Option<&str>,
    json: Option<&str>,
) -> Result<(u16, Vec<u8>), String> {
    let exchange = async {
        let mut stream = TcpStream::connect(server)
            .await
            .map_err(|e| format!("http: connect {:?}", e.kind()))?;
        let auth = token.map_or_else(String::new, |t| format!("Authorization: Bearer {t}\r\n"));
        let body = json.map_or_else(String::new, |b| {
            format!(
                "Content-Type: application/json\r\nContent-Length: {}\r\n",
                b.len()
            )
        });
        let request = format!(
            "{method} {path} HTTP/1.1\r\nHost: {server}\r\n{auth}{body}Connection: close\r\n\r\n{}",
            json.unwrap_or_default()
        );
        stream
            .write_all(request.as_bytes())
            .await
            .map_err(|e| format!("http: write {:?}", e.kind()))?;
        let mut raw = Vec::new();
        stream
            .read_to_end(&mut raw)
            .await
            .map_err(|e| format!("http: read {:?}", e.kind()))?;
        parse_response(&raw)
    };
    tokio::time::timeout(Duration::from_secs(30), exchange)
        .await
        .map_err(|_| "http: timed out".to_owned())?
}

/// An HTTP/1.1 response → (status, body), decoding a chunked body.
pub fn parse_response(raw: &[u8]) -> Result<(u16, Vec<u8>), String> {
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or("http: no end of headers")?;
    let head = std::str::from_utf8(&raw[..split]).map_err(|_| "http: headers not UTF-8")?;
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or("http: no status")?;
    let chunked = head.lines().any(|l| {
        let l = l.to_ascii_lowercase();
        l.starts_with("transfer-encoding:") && l.contains("chunked")
    });
    let body = &raw[split + 4..];
    let body = if chunked {
        dechunk(body)?
    } else {
        body.to_vec()
    };
    Ok((status, body))
}

fn dechunk(mut body: &[u8]) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    loop {
        let line_end = body
            .windows(2)
            .position(|w| w == b"\r\n")
            .ok_or("http: bad chunk")?;
        let size_text = std::str::from_utf8(&body[..line_end]).map_err(|_| "http: bad chunk")?;
        let size_text = size_text.split(';').next().unwrap_or("").trim();
        let size = usize::from_str_radix(size_text, 16).map_err(|_| "http: bad chunk size")?;
        body = &body[line_end + 2..];
        if size == 0 {
            return Ok(out);
        }
        if body.len() < size + 2 {
            return Err("http: truncated chunk".to_owned());
        }
        out.extend_from_slice(&body[..size]);
        body = &body[size + 2..];
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn views_count_what_is_missing() {
        let mut v = View::default();
        assert!(v.add(1));
        assert!(v.add(3));
        assert!(!v.add(3));
        assert_eq!(v.contiguous(), 1);
        assert_eq!(v.missing_through(5), 3); // 2, 4, 5
        assert!(v.add(2));
        assert_eq!(v.contiguous(), 3);
        assert!(!v.add(2));
        v.add(7);
        v.raise_floor(5);
        assert_eq!(v.contiguous(), 5);
        assert!(v.add(6));
        assert_eq!(v.contiguous(), 7);
        assert_eq!(v.missing_through(7), 0);
        assert_eq!(v.missing_through(3), 0);
    }

    #[test]
    fn slopes_and_pacers() {
        assert!((slope(&[(0.0, 1.0), (1.0, 3.0), (2.0, 5.0)]) - 2.0).abs() < 1e-9);
        assert_eq!(slope(&[(1.0, 1.0)]), 0.0);
        let mut p = Pacer::new(100.0);
        assert_eq!(p.due(0.5, false), 50);
        assert_eq!(p.due(1.0, true), 0);
        assert_eq!(p.due(1.2, false), 20);
    }

    #[test]
    fn http_responses_are_parsed_plain_and_chunked() {
        let plain = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n{}";
        assert_eq!(parse_response(plain), Ok((200, b"{}".to_vec())));
        let chunked =
            b"HTTP/1.1 429 Too Many Requests\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n";
        assert_eq!(parse_response(chunked), Ok((429, b"abcde".to_vec())));
        assert!(parse_response(b"HTTP/1.1 200 OK\r\n").is_err());
    }

    #[test]
    fn pages_are_checked_against_what_was_acknowledged() {
        let sent = vec![
            Sent {
                room: 0,
                sent_us: 0,
                seq: 1,
                stored: 0,
            },
            Sent {
                room: 0,
                sent_us: 0,
                seq: 2,
                stored: 0,
            },
            Sent {
                room: 1,
                sent_us: 0,
                seq: 1,
                stored: 0,
            },
        ];
        let page = |ids: &[(u64, &'static str)]| -> Vec<PageMessage<'static>> {
            ids.iter()
                .map(|&(seq, id)| PageMessage {
                    seq,
                    id: Cow::Borrowed(id),
                })
                .collect()
        };
        let good = page(&[(1, "m0.5"), (2, "m1.6")]);
        assert!(check_page(&sent, 0, &good, PageAnchor::Before(3)));
        assert!(check_page(&sent, 0, &good, PageAnchor::After(0)));
        assert!(!check_page(&sent, 0, &good, PageAnchor::Before(4)));
        assert!(!check_page(
            &sent,
            0,
            &page(&[(1, "m1.6")]),
            PageAnchor::After(0)
        ));
        assert!(!check_page(
            &sent,
            0,
            &page(&[(1, "m2.1")]),
            PageAnchor::After(0)
        ));
        assert!(!check_page(
            &sent,
            0,
            &page(&[(1, "m0.1"), (3, "x")]),
            PageAnchor::After(0)
        ));
        assert!(check_page(&sent, 0, &[], PageAnchor::Before(1)));
    }

    #[test]
    fn the_rng_is_reproducible_and_in_range() {
        let (mut a, mut b) = (Rng::new(7), Rng::new(7));
        for _ in 0..100 {
            assert_eq!(a.next_u64(), b.next_u64());
            assert!(a.below(10) < 10);
            let u = a.unit();
            assert!((0.0..1.0).contains(&u));
            b.below(10);
            b.unit();
        }
    }
}
