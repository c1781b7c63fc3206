//! The load run: open N WebSocket connections over M rooms from several loopback source
//! addresses, join, send at target rates (one phase per rate), drain, and account for every
//! delivery; or only connect and hold (idle capacity), or only connect as fast as possible
//! (connection storm).
//!
//! Everything runs on one thread (a current-thread tokio runtime with a `LocalSet`): the
//! generator is pinned to one core in the benchmarks, state is shared through `Rc<RefCell<_>>`
//! without locks, and its own CPU use is measured from `/proc/self/stat` to flag runs where the
//! generator, not the server, was the limit.
//!
//! Protocol v1 frames are the core's typed frames through `roomcast_client::codec`, the client's
//! own; frames the run does not measure are skipped by their type alone, unparsed.

use std::borrow::Cow;
use std::cell::RefCell;
use std::net::{Ipv4Addr, SocketAddr};
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use futures::{SinkExt, StreamExt};
use hdrhistogram::Histogram;
use roomcast_client::codec;
use roomcast_core::protocol::{ClientFrame, ServerFrame};
use serde::{Deserialize, Serialize};
use tokio::net::{TcpSocket, TcpStream};
use tokio::sync::{Semaphore, mpsc};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::{self, Message};

use crate::engineio::{self, EnginePacket, SocketPacket};
use crate::procstat::{self, Pid, ProcSample};
use crate::tracker::{LatencySummary, PhaseSummary, Tracker};

/// Which server protocol to speak.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum Protocol {
    /// roomcast protocol v1 (also spoken by `raw-broadcast`, which ignores the token).
    V1,
    /// Socket.IO v4 over its websocket transport (Engine.IO v4 framing).
    SocketIo,
}

/// What a run does.
#[derive(Debug, Clone, Serialize)]
pub struct LoadConfig {
    /// Protocol.
    pub protocol: Protocol,
    /// Server address (loopback only).
    pub server: SocketAddr,
    /// Request path of the WebSocket upgrade; [`ROOM_PLACEHOLDER`] in it becomes the
    /// connection's room (the edge build binds a socket to the room in its URL:
    /// `/rooms/{room}/ws`).
    pub path: String,
    /// Connections to open.
    pub connections: usize,
    /// Rooms; connection `i` joins room `i % rooms`.
    pub rooms: usize,
    /// Whether connections join their room (false: connect only, as in the storm).
    pub join: bool,
    /// Messages per second into the server, one phase per rate, in order.
    pub rates: Vec<f64>,
    /// Sending time of each phase, seconds.
    pub step_secs: f64,
    /// Longest wait after a phase for its deliveries, seconds.
    pub drain_secs: f64,
    /// Stop stepping once a phase's delivery p99 is above this, milliseconds.
    pub stop_p99_ms: f64,
    /// After the first failed phase, phases at the midpoint between the highest passed rate
    /// and the lowest failed one, at most this many ([`refined_rate`]).
    pub refine_steps: u32,
    /// Message body size, bytes.
    pub body_bytes: usize,
    /// Source addresses 127.0.0.1 ..= 127.0.0.<sources>, round-robin over connections.
    pub sources: u8,
    /// Connection attempts in flight at once.
    pub connect_concurrency: usize,
    /// Longest wait for all connections, seconds.
    pub connect_timeout_secs: f64,
    /// Hold the connections this long after connecting (and after the phases), seconds.
    pub hold_secs: f64,
    /// HS256 secret to sign tokens with (none: no token is sent).
    #[serde(skip)]
    pub jwt_secret: Option<String>,
    /// Tenant (`tid`) of the tokens.
    pub tenant: String,
    /// The server's pids, to read its CPU and memory from `/proc`, summed over them (one
    /// process, or several: `wrangler dev` serves from two workerd processes).
    pub server_pids: Vec<u32>,
}

/// Stands for the connection's room (`r<i % rooms>`) in [`LoadConfig::path`].
pub const ROOM_PLACEHOLDER: &str = "{room}";

/// The upgrade path of a connection to room number `room`.
pub fn room_path(template: &str, room: usize) -> Cow<'_, str> {
    if template.contains(ROOM_PLACEHOLDER) {
        Cow::Owned(template.replace(ROOM_PLACEHOLDER, &format!("r{room}")))
    } else {
        Cow::Borrowed(template)
    }
}

/// Token claims (protocol.md §3).
#[derive(Serialize)]
struct Claims<'a> {
    sub: String,
    tid: &'a str,
    rooms: Vec<String>,
    role: &'static str,
    exp: u64,
    iat: u64,
}

/// The outcome of connecting.
#[derive(Debug, Clone, Serialize)]
pub struct ConnectSummary {
    /// Connections attempted.
    pub attempted: usize,
    /// Connections open (and joined, when joining).
    pub connected: usize,
    /// Attempts that failed.
    pub failed: usize,
    /// From the first attempt to the last success, seconds.
    pub secs: f64,
    /// Successful connections per second.
    pub per_sec: f64,
    /// From attempt to open (and joined), per connection.
    pub latency: LatencySummary,
    /// Generator CPU use while connecting, share of one core.
    pub generator_cpu: f64,
    /// Server CPU use while connecting, share of one core.
    pub server_cpu: Option<f64>,
}

/// One phase with the processes' figures.
#[derive(Debug, Clone, Serialize)]
pub struct PhaseReport {
    /// Deliveries, loss, latency.
    #[serde(flatten)]
    pub summary: PhaseSummary,
    /// Server CPU while sending, share of one core.
    pub server_cpu: Option<f64>,
    /// Server resident memory at the end of the phase, KiB.
    pub server_rss_kib: Option<u64>,
    /// Generator CPU while sending, share of one core.
    pub generator_cpu: f64,
    /// The generator used ≥ 90 % of its core: the figures measure it, not the server.
    pub generator_bound: bool,
    /// No loss, every message acknowledged, no duplicate, p99 within the limit.
    pub passed: bool,
}

/// Server memory held by idle connections.
#[derive(Debug, Clone, Serialize)]
pub struct IdleReport {
    /// Before connecting, KiB.
    pub rss_before_kib: u64,
    /// After connecting and holding, KiB.
    pub rss_after_kib: u64,
    /// Connections held.
    pub connections: usize,
    /// (after − before) / connections, bytes.
    pub bytes_per_connection: f64,
}

/// The whole run.
#[derive(Debug, Clone, Serialize)]
pub struct RunReport {
    /// A name for the run (the server and scenario).
    pub label: String,
    /// What was run.
    pub config: LoadConfig,
    /// Connecting.
    pub connect: ConnectSummary,
    /// One entry per rate.
    pub phases: Vec<PhaseReport>,
    /// The last phase that passed, if any (the sustained rate).
    pub sustained_phase: Option<usize>,
    /// Memory per connection (when the server pid is known).
    pub idle: Option<IdleReport>,
    /// Errors by kind (server error codes, closes, connect failures).
    pub errors: std::collections::BTreeMap<String, u64>,
    /// Deliveries the tracker could not place.
    pub foreign_deliveries: u64,
    /// Any phase was generator-bound.
    pub generator_bound: bool,
    /// Server RSS at the end, KiB.
    pub server_rss_end_kib: Option<u64>,
    /// Server peak RSS, KiB.
    pub server_peak_rss_kib: Option<u64>,
}

impl RunReport {
    /// Whether the run saw loss, duplicates, missing acks, errors or failed connections.
    pub fn has_failures(&self) -> bool {
        self.connect.failed > 0
            || !self.errors.is_empty()
            || self.phases.iter().any(|p| {
                p.summary.lost > 0
                    || p.summary.duplicates > 0
                    || p.summary.out_of_order > 0
                    || p.summary.acked < p.summary.sent
            })
    }
}

enum Command {
    Send(u64),
}

/// State every connection task shares (one thread: no locks).
struct Shared {
    base: Instant,
    tracker: Tracker,
    senders: Vec<Option<mpsc::UnboundedSender<Command>>>,
    room_members: Vec<u32>,
    connected: usize,
    failed: usize,
    last_connected_us: u64,
    connect_latency: Histogram<u64>,
}

impl Shared {
    fn now_us(&self) -> u64 {
        u64::try_from(self.base.elapsed().as_micros()).unwrap_or(u64::MAX)
    }
}

type SharedRef = Rc<RefCell<Shared>>;

fn now_us(shared: &SharedRef) -> u64 {
    shared.borrow().now_us()
}

/// Runs the load described by `config` to the end.
pub fn run(config: LoadConfig, label: String) -> anyhow::Result<RunReport> {
    anyhow::ensure!(
        config.server.ip().is_loopback(),
        "only loopback servers may be loaded (got {})",
        config.server
    );
    anyhow::ensure!(config.rooms > 0 && config.connections > 0, "nothing to run");
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let local = tokio::task::LocalSet::new();
    local.block_on(&runtime, drive(config, label))
}

fn sign_tokens(config: &LoadConfig) -> anyhow::Result<Vec<Option<String>>> {
    let Some(secret) = &config.jwt_secret else {
        return Ok(vec![None; config.connections]);
    };
    let key = jsonwebtoken::EncodingKey::from_secret(secret.as_bytes());
    let header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256);
    let now = SystemTime::now().duration_since(UNIX_EPOCH)?.as_secs();
    (0..config.connections)
        .map(|i| {
            let claims = Claims {
                sub: format!("u{i}"),
                tid: &config.tenant,
                rooms: vec![format!("r{}", i % config.rooms)],
                role: "user",
                exp: now + 24 * 3600,
                iat: now,
            };
            Ok(Some(jsonwebtoken::encode(&header, &claims, &key)?))
        })
        .collect()
}

fn server_sample(config: &LoadConfig) -> Option<ProcSample> {
    if config.server_pids.is_empty() {
        return None;
    }
    config
        .server_pids
        .iter()
        .map(|&p| procstat::sample(Pid::Other(p)))
        .sum()
}

async fn drive(config: LoadConfig, label: String) -> anyhow::Result<RunReport> {
    let config = Rc::new(config);
    let tokens = sign_tokens(&config)?;
    let shared: SharedRef = Rc::new(RefCell::new(Shared {
        base: Instant::now(),
        tracker: Tracker::new(config.connections),
        senders: (0..config.connections).map(|_| None).collect(),
        room_members: vec![0; config.rooms],
        connected: 0,
        failed: 0,
        last_connected_us: 0,
        connect_latency: Histogram::new_with_bounds(1, 600_000_000, 3)
            .expect("static histogram bounds are valid"),
    }));
    // Give a fresh server a moment to settle before its baseline memory is read.
    let rss_before = server_sample(&config).map(|s| s.rss_kib);

    // Connect.
    let gen_before = procstat::sample(Pid::This).unwrap_or_default();
    let server_before = server_sample(&config);
    let wall = Instant::now();
    let permits = Arc::new(Semaphore::new(config.connect_concurrency.max(1)));
    let connect_started_us = now_us(&shared);
    for (index, token) in tokens.into_iter().enumerate() {
        let permit = permits.clone().acquire_owned().await?;
        let (config, shared) = (config.clone(), shared.clone());
        tokio::task::spawn_local(async move {
            connection(index, token, config, shared, permit).await;
        });
    }
    let deadline = Instant::now() + Duration::from_secs_f64(config.connect_timeout_secs);
    loop {
        let settled = {
            let s = shared.borrow();
            s.connected + s.failed >= config.connections
        };
        if settled || Instant::now() >= deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let connect_wall = wall.elapsed().as_secs_f64();
    let gen_after = procstat::sample(Pid::This).unwrap_or_default();
    let server_after = server_sample(&config);
    let connect = {
        let s = shared.borrow();
        let secs = s.last_connected_us.saturating_sub(connect_started_us) as f64 / 1e6;
        ConnectSummary {
            attempted: config.connections,
            connected: s.connected,
            failed: config.connections - s.connected,
            secs,
            per_sec: if secs > 0.0 {
                s.connected as f64 / secs
            } else {
                0.0
            },
            latency: latency_of(&s.connect_latency),
            generator_cpu: procstat::cpu_share(&gen_before, &gen_after, connect_wall),
            server_cpu: server_before
                .zip(server_after)
                .map(|(b, a)| procstat::cpu_share(&b, &a, connect_wall)),
        }
    };
    eprintln!(
        "[{label}] connected {}/{} in {:.1} s ({:.0}/s), {} failed",
        connect.connected, connect.attempted, connect.secs, connect.per_sec, connect.failed
    );

    // Phases.
    let mut phases = Vec::new();
    let mut sustained_phase = None;
    for &rate in &config.rates {
        let report = phase(&config, &shared, rate).await;
        log_phase(&label, rate, &report);
        let passed = report.passed;
        phases.push(report);
        if !passed {
            break;
        }
        sustained_phase = Some(phases.len() - 1);
    }
    let mut highest_passed = sustained_phase.map_or(0.0, |i| phases[i].summary.target_rate);
    let mut lowest_failed = phases
        .last()
        .filter(|p| !p.passed)
        .map(|p| p.summary.target_rate);
    for _ in 0..config.refine_steps {
        let Some(rate) = lowest_failed.and_then(|failed| refined_rate(highest_passed, failed))
        else {
            break;
        };
        settle(&shared, config.drain_secs).await;
        let report = phase(&config, &shared, rate).await;
        log_phase(&label, rate, &report);
        if report.passed {
            highest_passed = rate;
            sustained_phase = Some(phases.len());
        } else {
            lowest_failed = Some(rate);
        }
        phases.push(report);
    }

    if config.hold_secs > 0.0 {
        tokio::time::sleep(Duration::from_secs_f64(config.hold_secs)).await;
    }
    let end = server_sample(&config);
    let idle = rss_before.zip(end).map(|(before, after)| {
        let connections = shared.borrow().connected;
        IdleReport {
            rss_before_kib: before,
            rss_after_kib: after.rss_kib,
            connections,
            bytes_per_connection: if connections > 0 {
                (after.rss_kib.saturating_sub(before) * 1024) as f64 / connections as f64
            } else {
                0.0
            },
        }
    });
    let s = shared.borrow();
    Ok(RunReport {
        label,
        config: (*config).clone(),
        connect,
        generator_bound: phases.iter().any(|p| p.generator_bound),
        phases,
        sustained_phase,
        idle,
        errors: s.tracker.errors().clone(),
        foreign_deliveries: s.tracker.foreign,
        server_rss_end_kib: end.map(|e| e.rss_kib),
        server_peak_rss_kib: end.map(|e| e.peak_rss_kib),
    })
}

/// The midpoint between the highest passed rate and the lowest failed one, rounded to 250/s,
/// when it lies strictly between them and they are more than 5 % apart: a ladder's steps can be
/// coarser than the difference a comparison asks about (1,000 apart at 7,000 is 14 %).
pub fn refined_rate(passed: f64, failed: f64) -> Option<f64> {
    let mid = ((passed + failed) / 2.0 / 250.0).round() * 250.0;
    (failed - passed > passed * 0.05 && mid > passed && mid < failed).then_some(mid)
}

/// Waits until every earlier phase's messages are delivered and acknowledged (at most
/// `longest` seconds), then two seconds more: a refining phase follows a failed one, whose
/// backlog would otherwise count against it.
async fn settle(shared: &SharedRef, longest: f64) {
    let deadline = Instant::now() + Duration::from_secs_f64(longest);
    while Instant::now() < deadline && shared.borrow().tracker.outstanding_all() > 0 {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
}

fn log_phase(label: &str, rate: f64, report: &PhaseReport) {
    eprintln!(
        "[{label}] rate {:>7.0}/s: sent {:.0}/s, delivered {:.0}/s, lost {}, dup {}, ooo {}, \
         p50 {:.2} ms, p99 {:.2} ms, p99.9 {:.2} ms; server cpu {}, gen cpu {:.0} %{}",
        rate,
        report.summary.sent_per_sec,
        report.summary.delivered_per_sec,
        report.summary.lost,
        report.summary.duplicates,
        report.summary.out_of_order,
        report.summary.latency.p50_ms,
        report.summary.latency.p99_ms,
        report.summary.latency.p999_ms,
        report
            .server_cpu
            .map_or("?".to_owned(), |c| format!("{:.0} %", c * 100.0)),
        report.generator_cpu * 100.0,
        if report.generator_bound {
            " (generator-bound)"
        } else {
            ""
        },
    );
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

/// Sends at `rate` for `step_secs`, then drains.
async fn phase(config: &LoadConfig, shared: &SharedRef, rate: f64) -> PhaseReport {
    let phase = {
        let mut s = shared.borrow_mut();
        let now = s.now_us();
        s.tracker.begin_phase(rate, now)
    };
    let gen_before = procstat::sample(Pid::This).unwrap_or_default();
    let server_before = server_sample(config);
    let started = Instant::now();
    let duration = Duration::from_secs_f64(config.step_secs);
    let mut ticker = tokio::time::interval(Duration::from_millis(1));
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut sent = 0u64;
    let mut next_sender = 0usize;
    loop {
        ticker.tick().await;
        let elapsed = started.elapsed();
        if elapsed >= duration {
            break;
        }
        let due = (rate * elapsed.as_secs_f64()) as u64;
        let mut s = shared.borrow_mut();
        let connections = s.senders.len();
        while sent < due {
            // Round-robin over live connections; consecutive connections are in different rooms.
            let mut tries = 0;
            while s.senders[next_sender].is_none() && tries < connections {
                next_sender = (next_sender + 1) % connections;
                tries += 1;
            }
            if tries == connections {
                break;
            }
            let room = next_sender % config.rooms;
            let expected = s.room_members[room].saturating_sub(1);
            let index = s.tracker.register_send(expected);
            if let Some(tx) = &s.senders[next_sender] {
                let _ = tx.send(Command::Send(index));
            }
            next_sender = (next_sender + 1) % connections;
            sent += 1;
        }
    }
    let send_wall = started.elapsed().as_secs_f64();
    let gen_after = procstat::sample(Pid::This).unwrap_or_default();
    let server_after = server_sample(config);
    {
        let mut s = shared.borrow_mut();
        let now = s.now_us();
        s.tracker.end_sending(now);
    }
    let drain_deadline = Instant::now() + Duration::from_secs_f64(config.drain_secs);
    while Instant::now() < drain_deadline && shared.borrow().tracker.outstanding(phase) > 0 {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let s = shared.borrow();
    let summary = s
        .tracker
        .summary(phase, s.now_us())
        .expect("the phase was just begun");
    let generator_cpu = procstat::cpu_share(&gen_before, &gen_after, send_wall);
    let passed = summary.lost == 0
        && summary.duplicates == 0
        && summary.out_of_order == 0
        && summary.acked == summary.sent
        && summary.sent > 0
        && summary.latency.p99_ms <= config.stop_p99_ms;
    PhaseReport {
        server_cpu: server_before
            .zip(server_after)
            .map(|(b, a)| procstat::cpu_share(&b, &a, send_wall)),
        server_rss_kib: server_after.map(|a| a.rss_kib),
        generator_cpu,
        generator_bound: generator_cpu >= 0.9,
        passed,
        summary,
    }
}

type Ws = WebSocketStream<TcpStream>;

async fn open_socket(index: usize, config: &LoadConfig) -> Result<TcpStream, std::io::Error> {
    let socket = TcpSocket::new_v4()?;
    // 127.0.0.1, .2, …: each source address has its own ephemeral port range.
    let last = u8::try_from(index % usize::from(config.sources.max(1))).unwrap_or(0) + 1;
    socket.bind(SocketAddr::from((Ipv4Addr::new(127, 0, 0, last), 0)))?;
    let stream = socket.connect(config.server).await?;
    stream.set_nodelay(true)?;
    Ok(stream)
}

fn connect_error(e: &tungstenite::Error) -> String {
    match e {
        tungstenite::Error::Http(response) => format!("connect: HTTP {}", response.status()),
        tungstenite::Error::Io(io) => format!("connect: {:?}", io.kind()),
        other => format!("connect: {other}"),
    }
}

/// One connection from start to end.
async fn connection(
    index: usize,
    token: Option<String>,
    config: Rc<LoadConfig>,
    shared: SharedRef,
    permit: tokio::sync::OwnedSemaphorePermit,
) {
    let started = now_us(&shared);
    let room = index % config.rooms;
    let opened = async {
        let stream = open_socket(index, &config)
            .await
            .map_err(|e| format!("connect: {:?}", e.kind()))?;
        let mut url = format!("ws://{}{}", config.server, room_path(&config.path, room));
        if config.protocol == Protocol::V1
            && let Some(t) = &token
        {
            url.push_str(if url.contains('?') {
                "&token="
            } else {
                "?token="
            });
            url.push_str(t);
        }
        // tungstenite zero-fills its read buffer before every read: keep it small (the default
        // 128 KiB costs a memset per read and 128 KiB of memory per connection).
        let ws_config = WebSocketConfig::default().read_buffer_size(4096);
        let (mut ws, _) = tokio_tungstenite::client_async_with_config(url, stream, Some(ws_config))
            .await
            .map_err(|e| connect_error(&e))?;
        handshake(&mut ws, &config, token.as_deref(), room).await?;
        Ok::<Ws, String>(ws)
    }
    .await;
    drop(permit);
    let mut ws = match opened {
        Ok(ws) => ws,
        Err(kind) => {
            let mut s = shared.borrow_mut();
            s.failed += 1;
            s.tracker.error(kind);
            return;
        }
    };
    let (tx, mut rx) = mpsc::unbounded_channel();
    {
        let mut s = shared.borrow_mut();
        let now = s.now_us();
        s.connected += 1;
        s.last_connected_us = now;
        s.connect_latency
            .saturating_record(now.saturating_sub(started).max(1));
        if config.join {
            s.room_members[room] += 1;
        }
        s.senders[index] = Some(tx);
    }
    let body_pad = "x".repeat(config.body_bytes.saturating_sub(24));
    let end: Option<String> = loop {
        tokio::select! {
            frame = ws.next() => match frame {
                Some(Ok(Message::Text(text))) => {
                    match on_frame(config.protocol, index, text.as_str(), &shared) {
                        Reaction::None => {}
                        Reaction::Reply(reply) => {
                            if ws.send(Message::text(reply)).await.is_err() {
                                break Some("socket write failed".to_owned());
                            }
                        }
                        Reaction::Closed(why) => break Some(why),
                    }
                }
                Some(Ok(Message::Close(frame))) => {
                    break Some(format!("closed by server: {}", frame.map_or(0, |f| u16::from(f.code))));
                }
                Some(Ok(_)) => {}
                Some(Err(e)) => break Some(format!("socket error: {e}")),
                None => break Some("socket ended".to_owned()),
            },
            command = rx.recv() => match command {
                Some(Command::Send(message)) => {
                    let sent_us = now_us(&shared);
                    let frame = message_frame(config.protocol, room, message, sent_us, &body_pad);
                    if ws.send(Message::text(frame)).await.is_err() {
                        break Some("socket write failed".to_owned());
                    }
                }
                None => break None,
            },
        }
    };
    let mut s = shared.borrow_mut();
    s.senders[index] = None;
    if config.join {
        s.room_members[room] = s.room_members[room].saturating_sub(1);
    }
    if let Some(why) = end {
        s.tracker.error(why);
    }
}

/// Protocol handshake and join, before the connection counts as connected.
async fn handshake(
    ws: &mut Ws,
    config: &LoadConfig,
    token: Option<&str>,
    room: usize,
) -> Result<(), String> {
    match config.protocol {
        Protocol::V1 => {
            if !config.join {
                return Ok(());
            }
            let join = ClientFrame::Join {
                room: format!("r{room}"),
                since: None,
            };
            ws.send(Message::text(codec::encode(&join, None)))
                .await
                .map_err(|e| format!("join: {e}"))?;
            wait_for(ws, |text| match codec::decode(text) {
                Ok(ServerFrame::Joined { .. }) => Some(Ok(())),
                Ok(ServerFrame::Error { code, .. }) => {
                    Some(Err(format!("join refused: {}", code.as_str())))
                }
                _ => None,
            })
            .await
        }
        Protocol::SocketIo => {
            wait_for(ws, |text| {
                matches!(engineio::parse_engine(text), Ok(EnginePacket::Open(_))).then_some(Ok(()))
            })
            .await?;
            let auth = serde_json::json!({ "token": token }).to_string();
            ws.send(Message::text(engineio::connect_frame(&auth)))
                .await
                .map_err(|e| format!("socket.io connect: {e}"))?;
            wait_for(ws, |text| match engineio::parse_engine(text) {
                Ok(EnginePacket::Message(p)) => match engineio::parse_socket(p) {
                    Ok(SocketPacket::Connect(_)) => Some(Ok(())),
                    Ok(SocketPacket::ConnectError(e)) => Some(Err(format!("connect refused: {e}"))),
                    _ => None,
                },
                _ => None,
            })
            .await?;
            if !config.join {
                return Ok(());
            }
            let join = engineio::event_frame(Some(0), &format!(r#"["join","r{room}"]"#));
            ws.send(Message::text(join))
                .await
                .map_err(|e| format!("join: {e}"))?;
            wait_for(ws, |text| match engineio::parse_engine(text) {
                Ok(EnginePacket::Message(p)) => match engineio::parse_socket(p) {
                    Ok(SocketPacket::Ack { ack_id: 0, payload }) if payload.contains("error") => {
                        Some(Err(format!("join refused: {payload}")))
                    }
                    Ok(SocketPacket::Ack { ack_id: 0, .. }) => Some(Ok(())),
                    _ => None,
                },
                _ => None,
            })
            .await
        }
    }
}

/// Reads frames until `done` decides; answers Engine.IO pings meanwhile.
async fn wait_for(
    ws: &mut Ws,
    mut done: impl FnMut(&str) -> Option<Result<(), String>>,
) -> Result<(), String> {
    let read = async {
        loop {
            match ws.next().await {
                Some(Ok(Message::Text(text))) => {
                    if text.as_str() == "2" {
                        ws.send(Message::text(engineio::PONG))
                            .await
                            .map_err(|e| format!("pong: {e}"))?;
                        continue;
                    }
                    if let Some(result) = done(text.as_str()) {
                        return result;
                    }
                }
                Some(Ok(Message::Close(f))) => {
                    return Err(format!(
                        "closed during handshake: {}",
                        f.map_or(0, |f| u16::from(f.code))
                    ));
                }
                Some(Ok(_)) => {}
                Some(Err(e)) => return Err(format!("handshake: {e}")),
                None => return Err("handshake: socket ended".to_owned()),
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(60), read)
        .await
        .map_err(|_| "handshake timed out".to_owned())?
}

/// The frame sending message `index` (room `room`) at `sent_us`: the id carries the index and
/// the send time (for the ack), and so does the body (for every receiver).
pub fn message_frame(
    protocol: Protocol,
    room: usize,
    index: u64,
    sent_us: u64,
    pad: &str,
) -> String {
    match protocol {
        Protocol::V1 => codec::encode(
            &ClientFrame::Message {
                room: format!("r{room}"),
                id: format!("m{index}.{sent_us}"),
                body: format!("{index}:{sent_us}:{pad}"),
                meta: None,
                attachments: Vec::new(),
                reply_to: None,
            },
            None,
        ),
        Protocol::SocketIo => engineio::event_frame(
            Some(index + 1),
            &format!(
                r#"["message",{{"room":"r{room}","id":"m{index}.{sent_us}","body":"{index}:{sent_us}:{pad}"}}]"#
            ),
        ),
    }
}

/// `m<index>.<sent_us>` → (index, sent_us).
pub fn parse_message_id(id: &str) -> Option<(u64, u64)> {
    let (index, sent) = id.strip_prefix('m')?.split_once('.')?;
    Some((index.parse().ok()?, sent.parse().ok()?))
}

/// `<index>:<sent_us>:<padding>` → (index, sent_us).
pub fn parse_body(body: &str) -> Option<(u64, u64)> {
    let mut parts = body.splitn(3, ':');
    Some((parts.next()?.parse().ok()?, parts.next()?.parse().ok()?))
}

/// The fields of the Socket.IO peer's `message` event and acks the generator reads (protocol
/// v1's names, in Engine.IO packets).
#[derive(Deserialize)]
struct SocketIoFields<'a> {
    #[serde(default)]
    seq: u64,
    #[serde(borrow, default)]
    id: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    body: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    error: Option<Cow<'a, str>>,
}

enum Reaction {
    None,
    Reply(&'static str),
    Closed(String),
}

fn on_frame(protocol: Protocol, receiver: usize, text: &str, shared: &SharedRef) -> Reaction {
    match protocol {
        Protocol::V1 => {
            // Presence, typing, read and joined frames are not measured: skip them unparsed.
            if !matches!(
                codec::frame_type(text),
                Some("message" | "ack" | "error" | "closing")
            ) {
                return Reaction::None;
            }
            match codec::decode(text) {
                Ok(ServerFrame::Message(message)) => {
                    delivered(receiver, message.seq, message.body.as_deref(), shared);
                }
                Ok(ServerFrame::Ack { id, .. }) => acked(&id, shared),
                Ok(ServerFrame::Error { code, .. }) => {
                    let code = code.as_str();
                    shared.borrow_mut().tracker.error(format!("error {code}"));
                }
                Ok(ServerFrame::Closing { code, reason }) => {
                    return Reaction::Closed(format!("closing: {code} {reason}"));
                }
                Ok(_) => {}
                Err(_) => shared.borrow_mut().tracker.error("unparsable frame"),
            }
            Reaction::None
        }
        Protocol::SocketIo => match engineio::parse_engine(text) {
            Ok(EnginePacket::Ping) => Reaction::Reply(engineio::PONG),
            Ok(EnginePacket::Close) => Reaction::Closed("engine.io close".to_owned()),
            Ok(EnginePacket::Message(p)) => match engineio::parse_socket(p) {
                Ok(SocketPacket::Event { payload, .. }) => {
                    match serde_json::from_str::<(Cow<'_, str>, SocketIoFields<'_>)>(payload) {
                        Ok((name, frame)) if name == "message" => {
                            delivered(receiver, frame.seq, frame.body.as_deref(), shared);
                        }
                        Ok(_) => {}
                        Err(_) => shared.borrow_mut().tracker.error("unparsable event"),
                    }
                    Reaction::None
                }
                Ok(SocketPacket::Ack { payload, .. }) => {
                    match serde_json::from_str::<(SocketIoFields<'_>,)>(payload) {
                        Ok((frame,)) if frame.error.is_some() => {
                            let code = frame.error.as_deref().unwrap_or("?");
                            shared.borrow_mut().tracker.error(format!("error {code}"));
                        }
                        Ok((frame,)) => acked(frame.id.as_deref().unwrap_or_default(), shared),
                        Err(_) => shared.borrow_mut().tracker.error("unparsable ack"),
                    }
                    Reaction::None
                }
                Ok(SocketPacket::Disconnect) => Reaction::Closed("socket.io disconnect".to_owned()),
                _ => Reaction::None,
            },
            Ok(_) => Reaction::None,
            Err(_) => {
                shared
                    .borrow_mut()
                    .tracker
                    .error("unparsable engine.io packet");
                Reaction::None
            }
        },
    }
}

/// A message with `seq` and `body` reached connection `receiver`.
fn delivered(receiver: usize, seq: u64, body: Option<&str>, shared: &SharedRef) {
    let mut s = shared.borrow_mut();
    let now = s.now_us();
    match body.and_then(parse_body) {
        Some((index, sent_us)) => s.tracker.delivered(receiver, seq, index, sent_us, now),
        None => s.tracker.foreign += 1,
    }
}

/// The message with client id `id` was acknowledged.
fn acked(id: &str, shared: &SharedRef) {
    let mut s = shared.borrow_mut();
    let now = s.now_us();
    match parse_message_id(id) {
        Some((index, sent_us)) => s.tracker.acked(index, sent_us, now),
        None => s.tracker.foreign += 1,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refining_halves_the_gap_in_steps_of_250_until_it_is_within_5_percent() {
        assert_eq!(refined_rate(7000.0, 8000.0), Some(7500.0));
        assert_eq!(refined_rate(7500.0, 8000.0), Some(7750.0));
        // 7,750 to 8,000 is 3 %: fine enough.
        assert_eq!(refined_rate(7750.0, 8000.0), None);
        assert_eq!(refined_rate(1000.0, 2000.0), Some(1500.0));
        // Nothing passed: the midpoint below the first step.
        assert_eq!(refined_rate(0.0, 250.0), None);
        assert_eq!(refined_rate(0.0, 1000.0), Some(500.0));
    }

    #[test]
    fn a_room_placeholder_in_the_path_becomes_the_connections_room() {
        assert_eq!(room_path("/rooms/{room}/ws", 7), "/rooms/r7/ws");
        assert_eq!(room_path("/", 7), "/");
    }

    #[test]
    fn message_frames_round_trip_their_index_and_time() {
        let v1 = message_frame(Protocol::V1, 7, 42, 123_456, "xx");
        let parsed: serde_json::Value = serde_json::from_str(&v1).expect("valid JSON");
        assert_eq!(parsed["action"], "message");
        assert_eq!(parsed["room"], "r7");
        let id = parsed["id"].as_str().expect("id");
        assert_eq!(parse_message_id(id), Some((42, 123_456)));
        let body = parsed["body"].as_str().expect("body");
        assert_eq!(parse_body(body), Some((42, 123_456)));

        let sio = message_frame(Protocol::SocketIo, 7, 42, 123_456, "xx");
        let Ok(EnginePacket::Message(p)) = engineio::parse_engine(&sio) else {
            panic!("not an engine.io message: {sio}");
        };
        let Ok(SocketPacket::Event {
            ack_id: Some(43),
            payload,
        }) = engineio::parse_socket(p)
        else {
            panic!("not an event with ack id 43: {p}");
        };
        let (name, frame): (String, serde_json::Value) =
            serde_json::from_str(payload).expect("event payload");
        assert_eq!(name, "message");
        assert_eq!(frame["room"], "r7");
        assert_eq!(parse_body("garbage"), None);
        assert_eq!(parse_message_id("x1.2"), None);
    }
}
