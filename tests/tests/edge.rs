//! The protocol suite against the edge build (`functions/edge`: a Worker and one `ChatRoom`
//! Durable Object per room) under `wrangler dev`, which runs workerd locally.
//!
//! `scripts/edge.sh` builds the bundle and runs this file with `ROOMCAST_EDGE_DIR` (the crate
//! directory, holding `wrangler.toml` and `build/`) and `ROOMCAST_WRANGLER` (the wrangler
//! binary, with a Node 22 first on `PATH`). Without `ROOMCAST_EDGE_DIR` every test prints
//! `NOT APPLICABLE` and passes: the workspace test run has no edge bundle.
//!
//! Three `wrangler dev` processes per test process, each in its own persist directory:
//! - the main one, rate limit raised, for the suite's cases that apply to the edge build and
//!   the edge-only cases below; it can be SIGKILLed and restarted on the same data;
//! - one for the fault case that resets a Durable Object mid-fan-out (`ctx.abort`), so no other
//!   case shares its runtime;
//! - a strict one with the default rate limit and 2 s idle / 4 s maximum connection age (the
//!   alarms that close connections), for the limits cases.
//!
//! The edge build binds a connection to the room in its URL, so a deployment here has a room:
//! [`EDGE_ROOM`] (`lobby`, the room the suite's cases use) unless a case needs another.
#![cfg(unix)]
#![allow(
    clippy::unwrap_used,
    reason = "test harness: a failing setup step is a test failure"
)]

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock, PoisonError};
use std::time::{Duration, Instant};

use anyhow::{Context, bail, ensure};
use roomcast_core::auth::{Claims, TokenSigner};
use roomcast_protocol_tests::client::{Client, ConnectError, Credentials, frame_type, u64_field};
use roomcast_protocol_tests::http::{Request, Response};
use roomcast_protocol_tests::scope::{Scope, message_seqs, now_ms, seqs};
use roomcast_protocol_tests::{Capabilities, Deployment};
use roomcast_testkit::process::{Lifeline, free_port};
use serde_json::{Value, json};

const SECRET: &str = "roomcast-protocol-suite-secret-0123456789";
/// The room of the default deployment: the one the suite's cases use.
const EDGE_ROOM: &str = "lobby";
/// How long `wrangler dev` may take to serve `/health`.
const START_TIMEOUT: Duration = Duration::from_secs(90);
const IDLE: Duration = Duration::from_secs(2);
const MAX_AGE: Duration = Duration::from_secs(4);

/// One `wrangler dev` and how to start it again.
struct Wrangler {
    root: PathBuf,
    port: u16,
    vars: Vec<(&'static str, String)>,
    running: Mutex<Lifeline>,
}

impl Wrangler {
    fn start(name: &str, vars: &[(&'static str, String)]) -> anyhow::Result<Self> {
        let root = std::env::temp_dir().join(format!(
            "roomcast-edge-{name}-{}-{}",
            std::process::id(),
            now_ms()
        ));
        std::fs::create_dir_all(&root)?;
        let port = free_port();
        let vars = vars.to_vec();
        let running = spawn(&root, port, &vars)?;
        Ok(Self {
            root,
            port,
            vars,
            running: Mutex::new(running),
        })
    }

    /// SIGKILL wrangler and workerd, then start again on the same port and data.
    fn restart(&self) -> anyhow::Result<()> {
        let mut running = self.running.lock().unwrap_or_else(PoisonError::into_inner);
        running
            .kill_keeping_data()
            .context("killing wrangler dev")?;
        let deadline = Instant::now() + START_TIMEOUT;
        *running = loop {
            match spawn(&self.root, self.port, &self.vars) {
                Ok(r) => break r,
                Err(e) if Instant::now() >= deadline => return Err(e.context("restarting")),
                Err(_) => std::thread::sleep(Duration::from_millis(200)),
            }
        };
        Ok(())
    }
}

/// `GET /health` over a plain socket: the status code.
fn health(port: u16) -> Option<u16> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    s.write_all(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
        .ok()?;
    let mut head = [0u8; 12];
    s.read_exact(&mut head).ok()?;
    std::str::from_utf8(&head[9..12]).ok()?.parse().ok()
}

fn spawn(root: &Path, port: u16, vars: &[(&'static str, String)]) -> anyhow::Result<Lifeline> {
    let edge_dir =
        PathBuf::from(std::env::var_os("ROOMCAST_EDGE_DIR").context("ROOMCAST_EDGE_DIR")?);
    let wrangler = std::env::var_os("ROOMCAST_WRANGLER").context("ROOMCAST_WRANGLER is not set")?;
    anyhow::ensure!(
        edge_dir.join("build/index.js").exists(),
        "{} has no build/index.js: run scripts/edge.sh",
        edge_dir.display()
    );
    let log_path = root.join("wrangler.log");
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log_path)?;
    let mut command = Lifeline::command(Some(root), &wrangler);
    command
        .arg("dev")
        .arg("--config")
        .arg(edge_dir.join("wrangler.toml"))
        .args(["--ip", "127.0.0.1", "--port", &port.to_string()])
        .args(["--inspector-port", &free_port().to_string()])
        .arg("--persist-to")
        .arg(root.join("state"))
        .args(["--show-interactive-dev-session=false", "--log-level", "log"]);
    let secret = ("ROOMCAST_JWT_SECRET", SECRET.to_owned());
    let dev = ("ROOMCAST_DEV_ROUTES", "1".to_owned());
    for (name, value) in vars.iter().chain([&secret, &dev]) {
        command.args(["--var", &format!("{name}:{value}")]);
    }
    command
        .current_dir(&edge_dir)
        .env("WRANGLER_SEND_METRICS", "false")
        .env("XDG_CONFIG_HOME", root.join("config"))
        .env("CI", "true")
        .stdout(log.try_clone()?)
        .stderr(log);
    let mut lifeline = Lifeline::spawn(command).context("starting wrangler dev")?;
    let deadline = Instant::now() + START_TIMEOUT;
    loop {
        if health(port) == Some(200) {
            return Ok(lifeline);
        }
        if Instant::now() >= deadline || lifeline.exited() {
            let _ = lifeline.kill_keeping_data();
            let mut text = String::new();
            let _ = std::fs::File::open(&log_path).and_then(|mut f| f.read_to_string(&mut text));
            let tail: String = text
                .chars()
                .rev()
                .take(4000)
                .collect::<Vec<_>>()
                .into_iter()
                .rev()
                .collect();
            bail!("wrangler dev did not serve /health on port {port}; its log ends:\n{tail}");
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// The edge build as a suite deployment, its sockets bound to one room: a running `wrangler dev`,
/// or, when this run built no bundle, a deployment every case reports NOT APPLICABLE for.
struct Edge {
    server: Option<&'static Wrangler>,
    room: &'static str,
    /// Started with webhooks to loopback receivers and short retry timings.
    webhooks: bool,
    /// Started with the suite's publishable key (`ROOMCAST_EMBED_KEYS`).
    embed: bool,
}

impl Edge {
    fn server(&self) -> &'static Wrangler {
        // Invariant: the suite asks `unavailable` first and runs nothing against an edge with
        // no server.
        self.server
            .expect("cases run only against a running edge build")
    }
}

#[async_trait::async_trait]
impl Deployment for Edge {
    fn ws_url(&self) -> String {
        self.room_ws_url(self.room)
    }

    fn room_ws_url(&self, room: &str) -> String {
        format!("ws://127.0.0.1:{}/rooms/{room}/ws", self.server().port)
    }

    fn http_url(&self) -> Option<String> {
        Some(format!("http://127.0.0.1:{}", self.server().port))
    }

    fn sign(&self, claims: &Claims) -> String {
        TokenSigner::hs256(SECRET.as_bytes()).sign(claims)
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            restart: true,
            http_api: true,
            management_api: false,
            one_room_per_connection: true,
            webhooks: self.webhooks,
            attachments: true,
            embed: self.embed,
        }
    }

    fn unavailable(&self) -> Option<String> {
        self.server
            .is_none()
            .then(|| "no edge bundle (scripts/edge.sh builds it and runs this file)".to_owned())
    }

    async fn restart(&self) -> anyhow::Result<()> {
        self.server().restart()
    }
}

/// Whether the edge bundle was built for this run.
fn built() -> bool {
    std::env::var_os("ROOMCAST_EDGE_DIR").is_some()
}

/// The `wrangler dev` in `slot`, started on first use with `vars`, when a bundle was built.
fn server(
    slot: &'static OnceLock<Result<Wrangler, String>>,
    name: &str,
    vars: &[(&'static str, String)],
) -> Option<&'static Wrangler> {
    if !built() {
        return None;
    }
    match slot.get_or_init(|| Wrangler::start(name, vars).map_err(|e| format!("{e:#}"))) {
        Ok(w) => Some(w),
        Err(e) => panic!("the {name} wrangler dev could not start: {e}"),
    }
}

/// The main deployment: rate limit raised (cases send bursts); webhooks to loopback receivers
/// (development mode), retried after 200 ms, timed out after 1 s; the suite's publishable key.
fn main_edge() -> Edge {
    static SERVER: OnceLock<Result<Wrangler, String>> = OnceLock::new();
    Edge {
        server: server(
            &SERVER,
            "main",
            &[
                ("ROOMCAST_RATE_PER_SEC", "1000".into()),
                ("ROOMCAST_RATE_BURST", "1000".into()),
                ("ROOMCAST_WEBHOOK_ALLOW_PRIVATE", "true".into()),
                ("ROOMCAST_WEBHOOK_FIRST_RETRY_MS", "200".into()),
                ("ROOMCAST_WEBHOOK_TIMEOUT_MS", "1000".into()),
                (
                    "ROOMCAST_EMBED_KEYS",
                    roomcast_protocol_tests::deployment::EMBED_KEYS.into(),
                ),
                (
                    "ROOMCAST_PRESENCE_MAX_CONNECTIONS",
                    roomcast_protocol_tests::deployment::PRESENCE_MAX_CONNECTIONS.into(),
                ),
            ],
        ),
        room: EDGE_ROOM,
        webhooks: true,
        embed: true,
    }
}

/// The deployment whose objects the fault cases reset, apart so no other case runs there.
fn fault_edge() -> Edge {
    static SERVER: OnceLock<Result<Wrangler, String>> = OnceLock::new();
    Edge {
        server: server(
            &SERVER,
            "faults",
            &[
                ("ROOMCAST_RATE_PER_SEC", "1000".into()),
                ("ROOMCAST_RATE_BURST", "1000".into()),
            ],
        ),
        room: EDGE_ROOM,
        webhooks: false,
        embed: false,
    }
}

/// The strict deployment: default rate limit, short idle and maximum-age timeouts.
fn limits_edge() -> Edge {
    static SERVER: OnceLock<Result<Wrangler, String>> = OnceLock::new();
    Edge {
        server: server(
            &SERVER,
            "limits",
            &[
                ("ROOMCAST_IDLE_TIMEOUT_SECS", IDLE.as_secs().to_string()),
                (
                    "ROOMCAST_MAX_CONNECTION_SECS",
                    MAX_AGE.as_secs().to_string(),
                ),
            ],
        ),
        room: EDGE_ROOM,
        webhooks: false,
        embed: false,
    }
}

// Every case of the protocol suite, as on every deployment; those needing a capability the
// edge build lacks (several rooms on one connection, the Management API) say NOT APPLICABLE.
roomcast_protocol_tests::protocol_suite!(Box::new(main_edge()));
roomcast_protocol_tests::limits_suite!(Box::new(limits_edge()), idle: IDLE, max_age: MAX_AGE);

// ---- edge-only cases ---------------------------------------------------------------------------

/// Writes past the test harness's output capture, so a figure shows for a passing test.
fn note(text: &str) {
    let _ = writeln!(std::io::stderr().lock(), "{text}");
}

roomcast_protocol_tests::protocol_test!(store_conformance_inside_a_durable_object,
    Box::new(main_edge()), [HttpApi], d => store_conformance(d));
roomcast_protocol_tests::protocol_test!(edge_join_is_implicit_and_bound_to_the_url_room,
    Box::new(main_edge()), [], d => join_is_implicit_and_bound(d));
roomcast_protocol_tests::protocol_test!(edge_restart_under_load_loses_no_acked_message,
    Box::new(main_edge()), [Restart], d => restart_under_load(d));
roomcast_protocol_tests::protocol_test!(edge_latency_of_acks_and_fanout,
    Box::new(main_edge()), [], d => latency(d));
roomcast_protocol_tests::protocol_test!(edge_latency_of_webhook_deliveries,
    Box::new(main_edge()), [HttpApi, Webhooks], d => webhook_latency(d));
roomcast_protocol_tests::protocol_test!(edge_relay_route_is_not_served_to_clients,
    Box::new(main_edge()), [HttpApi], d => relay_route_not_public(d));
roomcast_protocol_tests::protocol_test!(edge_departure_during_a_connect_reaches_the_new_connection,
    Box::new(main_edge()), [], d => departure_during_connect(d));
roomcast_protocol_tests::protocol_test!(edge_fault_object_reset_mid_fanout_loses_nothing,
    Box::new(fault_edge()), [HttpApi], d => reset_mid_fanout(d));
roomcast_protocol_tests::protocol_test!(edge_fault_storage_error_in_an_append_leaves_no_gap,
    Box::new(main_edge()), [HttpApi], d => storage_error_in_append(d));
roomcast_protocol_tests::protocol_test!(edge_fault_alarm_fired_twice_closes_once,
    Box::new(limits_edge()), [HttpApi], d => alarm_fired_twice(d));
roomcast_protocol_tests::protocol_test!(edge_alarm_sweeps_abandoned_uploads,
    Box::new(main_edge()), [HttpApi, Attachments], d => alarm_sweeps_abandoned_uploads(d));

/// `/__relay/record` is how one room's object records in another's (the desk's inbox notices),
/// `/__relay/offer` how it has another offer its conversation, `/__relay/eject` how it has
/// another close a blocked visitor's sockets, `/__tenant/desk` how it writes
/// the tenant's desk records; the Worker never forwards them, whatever the path's form.
async fn relay_route_not_public(d: &dyn Deployment) -> anyhow::Result<()> {
    let base = d.http_url().context("http_url")?;
    let message = br#"{"id":"x","from":"$system","name":null,"body":"forged","meta":null,"ts":1}"#;
    for path in [
        "/__relay/record",
        "//__relay/record",
        "/rooms/inbox/../../__relay/record",
        "/__relay/offer",
        "/__relay/eject",
        "/__tenant/desk",
    ] {
        let r = Request::new("POST", path)
            .body(message.to_vec())
            .send(&base)
            .await?;
        ensure!(
            r.status == 404,
            "POST {path}: HTTP {} `{}`",
            r.status,
            r.text()
        );
    }
    Ok(())
}

/// `POST /__dev/conformance`: the core's store conformance suites run inside a fresh
/// `ChatRoom` on its SQLite storage and sockets, plus a hibernation round trip.
async fn store_conformance(d: &dyn Deployment) -> anyhow::Result<()> {
    let base = d.http_url().context("http_url")?;
    let r = Request::new("POST", "/__dev/conformance")
        .send(&base)
        .await?;
    ensure!(
        r.status == 200 && r.text().starts_with("ok"),
        "conformance inside the Durable Object: HTTP {} `{}`",
        r.status,
        r.text()
    );
    // Each suite names itself once it passed: one left out of the route fails here.
    for suite in [
        "history_conformance",
        "journal_conformance",
        "outbox_conformance",
        "attachment_conformance",
        "desk_conformance",
        "connection_conformance",
        "hibernation round trip",
    ] {
        ensure!(
            r.text().contains(suite),
            "conformance inside the Durable Object did not run {suite}: `{}`",
            r.text()
        );
    }
    note(&format!("edge store conformance: {}", r.text().trim()));
    Ok(())
}

/// The URL's room is joined at connect: the connection gets the room's frames and may act in
/// it without `join`; others see its presence. `join` of that room answers `joined` (with a
/// replay for `since`); `join` of another granted room is `INVALID`, of a room not granted
/// `FORBIDDEN`; a token not granting the URL's room is refused with 403; `*` grants work.
async fn join_is_implicit_and_bound(d: &dyn Deployment) -> anyhow::Result<()> {
    let s = Scope::new(d, "edge_join");
    let mut alice = s
        .connect_with("alice", &s.token("alice", &["lobby", "elsewhere"]))
        .await?;
    // No `join`: bob's arrival and message reach alice anyway.
    let mut bob = s.connect("bob").await?;
    let presence = alice
        .expect("bob's presence", |f| {
            frame_type(f) == "presence" && f["user"] == "bob"
        })
        .await?;
    ensure!(
        presence["status"] == "online",
        "bob announced at connect: {presence}"
    );
    let ack = bob.message("lobby", &s.id("m"), "no join needed").await?;
    let seen = alice.expect_message("lobby").await?;
    ensure!(
        seen["seq"] == ack["seq"],
        "delivered without a join: {seen}"
    );
    let (joined, replay, replayed) = alice.join_since("lobby", 0).await?;
    ensure!(
        joined["head"] == 1 && seqs(&replay) == [1] && replayed["through"] == 1,
        "join of the URL's room re-synchronises: {joined} {replay:?} {replayed}"
    );
    let names: Vec<&str> = joined["members"]
        .as_array()
        .map(|m| m.iter().filter_map(|m| m["user"].as_str()).collect())
        .unwrap_or_default();
    ensure!(
        names.contains(&"alice") && names.contains(&"bob"),
        "members: {joined}"
    );

    alice
        .send_json(&json!({"action": "join", "room": "elsewhere", "ref": "j1"}))
        .await?;
    let error = alice.expect_error("INVALID").await?;
    ensure!(
        error["ref"] == "j1"
            && error["message"]
                .as_str()
                .is_some_and(|m| m.contains("belongs to room `lobby`")),
        "a granted other room is refused clearly: {error}"
    );
    alice
        .send_json(&json!({"action": "join", "room": "secret", "ref": "j2"}))
        .await?;
    alice.expect_error("FORBIDDEN").await?;
    alice
        .send_json(&json!({"action": "message", "room": "elsewhere", "id": s.id("x"), "body": "b"}))
        .await?;
    alice.expect_error("NOT_MEMBER").await?;
    alice.ping().await.context("the connection lives on")?;

    let support = roomcast_protocol_tests::InRoom::new(d, "support-42");
    let token = s.token("dave", &["support-*"]);
    match Client::try_connect(d, Credentials::Query(&token), "dave#lobby").await {
        Err(ConnectError::Refused { status: 403, .. }) => {}
        Err(e) => bail!("a token without the URL's room: expected 403, got {e}"),
        Ok(_) => bail!("a token without the URL's room was accepted"),
    }
    // The refusal explains itself (read with a plain HTTP client: the WebSocket client may
    // return before the body arrives).
    let mut upgrade = Request::new("GET", "");
    let path = format!("/rooms/lobby/ws?token={token}");
    upgrade.path = &path;
    upgrade.headers.extend([
        ("Upgrade", "websocket".to_owned()),
        ("Connection", "Upgrade".to_owned()),
        ("Sec-WebSocket-Version", "13".to_owned()),
        ("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ==".to_owned()),
    ]);
    let refused = upgrade.send(&d.http_url().context("http_url")?).await?;
    ensure!(
        refused.status == 403 && refused.text().contains("does not grant room `lobby`"),
        "403 names the room: HTTP {} `{}`",
        refused.status,
        refused.text()
    );
    let mut dave = Client::connect(&support, &token, "dave#support").await?;
    let joined = dave
        .join("support-42")
        .await
        .context("`support-*` covers the URL's room")?;
    ensure!(joined["head"] == 0, "{joined}");
    let _ = bob.sync().await?;
    Ok(())
}

/// The connect joins the URL's room before the upgrade is answered, so the new connection must
/// have its socket by then: here the connect's `presence` finds another connection gone (the
/// server closed it; its client never answers, so a send to it fails), the room is told that
/// user is offline while the new connection is being joined, and that frame must reach the new
/// connection rather than count it gone too.
async fn departure_during_connect(d: &dyn Deployment) -> anyhow::Result<()> {
    let s = Scope::new(d, "edge_departure_in_connect");
    let mut alice = s.connect("alice").await?;
    // Closed with 1003; alice's client does not read again, so it never answers the close.
    alice.send_binary(b"x".to_vec()).await?;
    // No frame tells others that the object has handled it: give it ample time.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut bob = s.connect("bob").await?;
    let departure = bob
        .expect("alice's departure", |f| {
            frame_type(f) == "presence" && f["user"] == "alice"
        })
        .await?;
    ensure!(departure["status"] == "offline", "alice left: {departure}");
    bob.join(EDGE_ROOM)
        .await
        .context("bob is still connected")?;
    drop(alice);
    Ok(())
}

/// Senders pipeline messages while `wrangler dev` is SIGKILLed (a deploy sends every socket
/// away likewise). Every message acknowledged before the kill is there after the restart, with
/// its seq, when a client resumes with `since`; seqs are gap-free and each id is stored once.
async fn restart_under_load(d: &dyn Deployment) -> anyhow::Result<()> {
    const SENDERS: usize = 3;
    let s = Scope::new(d, "edge_restart_load");
    let mut clients = Vec::new();
    for i in 0..SENDERS {
        clients.push(s.connect(&format!("sender{i}")).await?);
    }
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut tasks = Vec::new();
    for (i, mut c) in clients.into_iter().enumerate() {
        let stop = stop.clone();
        let tag = format!("s{i}");
        tasks.push(tokio::spawn(async move {
            let mut acked: Vec<Value> = Vec::new();
            let mut n = 0u64;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let id = format!("{tag}-{n}");
                n += 1;
                let frame = json!({"action": "message", "room": "lobby", "id": id, "body": id});
                if c.send_json(&frame).await.is_err() {
                    break;
                }
                match c.expect_ack(&id).await {
                    Ok(ack) => acked.push(ack),
                    Err(_) => break, // the server died under this send
                }
            }
            acked
        }));
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    d.restart().await.context("restarting wrangler dev")?;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let mut acked = Vec::new();
    for t in tasks {
        acked.extend(t.await?);
    }
    ensure!(
        acked.len() >= SENDERS,
        "too few messages acked before the kill: {}",
        acked.len()
    );

    let mut reader = s
        .connect("reader")
        .await
        .context("reconnecting after the restart")?;
    let mut stored: Vec<Value> = Vec::new();
    let (joined, replay, mut replayed) = reader.join_since("lobby", 0).await?;
    stored.extend(replay);
    while replayed["more"] == true {
        let after = u64_field(&replayed, "through")?;
        let page = reader
            .history("lobby", json!({"after": after, "limit": 100}))
            .await?;
        let messages = page["messages"].as_array().cloned().unwrap_or_default();
        let last = messages
            .last()
            .map(|m| m["seq"].clone())
            .unwrap_or(json!(after));
        stored.extend(messages);
        replayed = json!({"through": last, "more": page["more"]});
    }
    let head = u64_field(&joined, "head")?;
    ensure!(
        seqs(&stored) == (1..=head).collect::<Vec<_>>(),
        "gap-free seqs 1..={head}: {:?}",
        seqs(&stored)
    );
    let mut ids: Vec<&str> = stored.iter().filter_map(|m| m["id"].as_str()).collect();
    ids.sort_unstable();
    let before = ids.len();
    ids.dedup();
    ensure!(ids.len() == before, "an id was stored twice");
    for ack in &acked {
        let seq = u64_field(ack, "seq")?;
        let found = stored.iter().find(|m| m["seq"] == seq);
        ensure!(
            found.is_some_and(|m| m["id"] == ack["id"] && m["ts"] == ack["ts"]),
            "acked {ack} is not stored as acknowledged: {found:?}"
        );
    }
    note(&format!(
        "edge restart under load: {} acked before SIGKILL, {head} stored, none lost",
        acked.len()
    ));
    Ok(())
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let rank = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[rank.min(sorted.len() - 1)]
}

/// Per-message latency under `wrangler dev` (not an assertion beyond sanity): the `ack` round
/// trip of sequential sends, the same for pipelined sends, and send → delivery to another
/// connection. Printed for docs/architecture.md.
async fn latency(d: &dyn Deployment) -> anyhow::Result<()> {
    const N: usize = 200;
    let s = Scope::new(d, "edge_latency");
    let mut alice = s.connect("alice").await?;
    let mut bob = s.connect("bob").await?;
    alice.ping().await?;
    let mut rtt = Vec::with_capacity(N);
    let mut fanout = Vec::with_capacity(N);
    for i in 0..N {
        let id = format!("seq-{i}");
        let start = Instant::now();
        alice
            .send_json(&json!({"action": "message", "room": "lobby", "id": id, "body": "x"}))
            .await?;
        alice.expect_ack(&id).await?;
        rtt.push(start.elapsed());
        bob.expect_message("lobby").await?;
        fanout.push(start.elapsed());
    }
    let start = Instant::now();
    let mut sent_at = Vec::with_capacity(N);
    for i in 0..N {
        let id = format!("pipe-{i}");
        sent_at.push(Instant::now());
        alice
            .send_json(&json!({"action": "message", "room": "lobby", "id": id, "body": "x"}))
            .await?;
    }
    let mut pipelined = Vec::with_capacity(N);
    for (i, at) in sent_at.iter().enumerate() {
        alice.expect_ack(&format!("pipe-{i}")).await?;
        pipelined.push(at.elapsed());
    }
    let total = start.elapsed();
    let delivered = bob.sync().await?;
    ensure!(
        message_seqs(&delivered).len() == N,
        "bob got every pipelined message"
    );
    for v in [&mut rtt, &mut fanout, &mut pipelined] {
        v.sort();
    }
    let show = |v: &[Duration]| {
        format!(
            "p50 {:.2} ms, p99 {:.2} ms",
            percentile(v, 0.50).as_secs_f64() * 1e3,
            percentile(v, 0.99).as_secs_f64() * 1e3
        )
    };
    note(&format!(
        "edge latency under wrangler dev, {N} messages each: sequential ack round trip {}; \
         send → delivered to another connection {}; pipelined ack {} ({:.0} messages/s)",
        show(&rtt),
        show(&fanout),
        show(&pipelined),
        N as f64 / total.as_secs_f64()
    ));
    ensure!(
        percentile(&rtt, 0.5) < Duration::from_secs(1),
        "ack round trips are sane"
    );
    Ok(())
}

/// Event delivery latency under `wrangler dev` (not an assertion beyond sanity): a loopback
/// endpoint for `message.created`, [`N`] messages sent one after another, paced; for each, the
/// time from sending the message (before the store) and from its `ack` (stored) to the first
/// arrival of its event at the endpoint. Printed for docs/benchmarks.md.
async fn webhook_latency(d: &dyn Deployment) -> anyhow::Result<()> {
    const N: usize = 200;
    const PACE: Duration = Duration::from_millis(25);
    let s = Scope::new(d, "edge_hook_latency");
    let base = d.http_url().context("http_url")?;
    let receiver = roomcast_protocol_tests::webhook::Receiver::start().await?;
    let created = Request::new("POST", "/events/endpoints")
        .bearer(&s.service_token("ops"))
        .json(&json!({"url": receiver.url(), "types": ["message.created"]}))
        .send(&base)
        .await?;
    ensure!(created.status == 201, "endpoint: {}", created.text());
    let mut alice = s.connect("alice").await?;
    let mut sent = std::collections::HashMap::new();
    let mut acked = std::collections::HashMap::new();
    for i in 0..N {
        let id = format!("hook-{i}");
        sent.insert(id.clone(), Instant::now());
        alice
            .send_json(&json!({"action": "message", "room": EDGE_ROOM, "id": id, "body": "x"}))
            .await?;
        alice.expect_ack(&id).await?;
        acked.insert(id, Instant::now());
        tokio::time::sleep(PACE).await;
    }
    let deliveries = receiver
        .wait_for(Duration::from_secs(60), "every message's event", |r| {
            roomcast_protocol_tests::webhook::accepted_events(r).is_ok_and(|e| e.len() == N)
        })
        .await?;
    let mut from_send = Vec::with_capacity(N);
    let mut from_ack = Vec::with_capacity(N);
    let mut seen = std::collections::HashSet::new();
    for delivery in &deliveries {
        let event = delivery.event()?;
        let id = event["data"]["id"].as_str().unwrap_or_default().to_owned();
        if !seen.insert(id.clone()) {
            continue;
        }
        let (Some(s), Some(a)) = (sent.get(&id), acked.get(&id)) else {
            bail!("an event for a message not sent: {event}");
        };
        from_send.push(delivery.at.saturating_duration_since(*s));
        from_ack.push(delivery.at.saturating_duration_since(*a));
    }
    ensure!(from_send.len() == N, "{} of {N} events", from_send.len());
    for v in [&mut from_send, &mut from_ack] {
        v.sort();
    }
    let show = |v: &[Duration]| {
        format!(
            "p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
            percentile(v, 0.50).as_secs_f64() * 1e3,
            percentile(v, 0.99).as_secs_f64() * 1e3,
            v.last().map_or(0.0, |d| d.as_secs_f64() * 1e3)
        )
    };
    note(&format!(
        "edge webhook latency under wrangler dev, {N} messages {} ms apart: send → event received {}; \
         ack → event received {}",
        PACE.as_millis(),
        show(&from_send),
        show(&from_ack)
    ));
    ensure!(
        percentile(&from_ack, 0.5) < Duration::from_secs(5),
        "deliveries are sane"
    );
    Ok(())
}

// ---- faults (the dev build's `POST /__dev/fault`, functions/edge/src/dev.rs) ------------------

/// Arms the fault `kind` (a query string tail) in the object of this scope's [`EDGE_ROOM`].
async fn inject(s: &Scope<'_>, kind: &str) -> anyhow::Result<()> {
    let base = s.d.http_url().context("http_url")?;
    let path = format!("/__dev/fault?room={EDGE_ROOM}&kind={kind}");
    let r = Request::new("POST", &path)
        .bearer(&s.token("tester", &["*"]))
        .send(&base)
        .await?;
    ensure!(
        r.status == 200,
        "fault {kind}: HTTP {} `{}`",
        r.status,
        r.text()
    );
    Ok(())
}

/// Every frame `c` receives until its connection ends (closed or dropped).
async fn until_dropped(c: &mut Client, limit: Duration) -> anyhow::Result<Vec<Value>> {
    let deadline = tokio::time::Instant::now() + limit;
    let mut frames = Vec::new();
    loop {
        match c.recv_before(deadline).await {
            Ok(Some(f)) => frames.push(f),
            Ok(None) => bail!("{}: still connected after {limit:?}", c.label()),
            Err(_) => return Ok(frames),
        }
    }
}

/// The `message` frames of [`EDGE_ROOM`] among `frames`.
fn messages_in(frames: &[Value]) -> Vec<Value> {
    frames
        .iter()
        .filter(|f| frame_type(f) == "message" && f["room"] == EDGE_ROOM)
        .cloned()
        .collect()
}

/// A client resuming: `join {since}` on a new connection of `user`; returns the new client, the
/// room's head and the replayed messages (every page).
async fn resume(
    s: &Scope<'_>,
    user: &str,
    since: u64,
) -> anyhow::Result<(Client, u64, Vec<Value>)> {
    let mut c = s.connect(user).await.context("reconnecting")?;
    let (joined, mut replay, mut replayed) = c.join_since(EDGE_ROOM, since).await?;
    while replayed["more"] == true {
        let after = u64_field(&replayed, "through")?;
        let page = c
            .history(EDGE_ROOM, json!({"after": after, "limit": 100}))
            .await?;
        let messages = page["messages"].as_array().cloned().unwrap_or_default();
        let last = messages.last().map_or(json!(after), |m| m["seq"].clone());
        replay.extend(messages);
        replayed = json!({"through": last, "more": page["more"]});
    }
    Ok((c, u64_field(&joined, "head")?, replay))
}

/// What a client saw live before its connection ended, then replayed after `join {since}` with
/// the last seq it saw, is every message `1..=head` exactly once.
fn exactly_once(who: &str, live: &[Value], replay: &[Value], head: u64) -> anyhow::Result<()> {
    let mut all = message_seqs(live);
    let since = all.last().copied().unwrap_or(0);
    let replayed = seqs(replay);
    ensure!(
        replayed == (since + 1..=head).collect::<Vec<_>>(),
        "{who}: saw {all:?} live, resumed since {since}, replayed {replayed:?} (head {head})"
    );
    all.extend(replayed);
    ensure!(
        all == (1..=head).collect::<Vec<_>>(),
        "{who}: every message exactly once: {all:?}"
    );
    Ok(())
}

/// The room's whole history as a new client reads it: seqs gap-free, every id once.
async fn whole_history(s: &Scope<'_>) -> anyhow::Result<Vec<Value>> {
    let (_, head, stored) = resume(s, "auditor", 0).await?;
    ensure!(
        seqs(&stored) == (1..=head).collect::<Vec<_>>(),
        "gap-free seqs 1..={head}: {:?}",
        seqs(&stored)
    );
    let mut ids: Vec<&str> = stored.iter().filter_map(|m| m["id"].as_str()).collect();
    ids.sort_unstable();
    let count = ids.len();
    ids.dedup();
    ensure!(ids.len() == count, "an id was stored twice: {stored:?}");
    Ok(stored)
}

/// (a) The object is reset (`ctx.abort`) in the middle of a fan-out, after its write is durable:
/// the sender has its `ack`, two of four receivers have the message, two never get it live,
/// and every socket is dropped. Each receiver resumes with `join {since}` its last seq and gets
/// exactly what it missed; the acknowledged message is stored once with its acknowledged seq;
/// a resend of it is a duplicate; the reset object fans out again.
async fn reset_mid_fanout(d: &dyn Deployment) -> anyhow::Result<()> {
    const RECEIVERS: usize = 4;
    let s = Scope::new(d, "edge_fault_fanout");
    let mut receivers = Vec::new();
    for i in 0..RECEIVERS {
        receivers.push(s.connect(&format!("r{i}")).await?);
    }
    let mut sender = s.connect("sender").await?;
    for n in 1..=2 {
        sender
            .message(EDGE_ROOM, &format!("m{n}"), "before")
            .await?;
    }
    for r in &mut receivers {
        r.ping().await?;
    }
    // The ack and two receivers' frames go out; then the object is reset.
    inject(&s, "abort-after-sends&sends=3").await?;
    sender
        .send_json(&json!({"action": "message", "room": EDGE_ROOM, "id": "m3", "body": "cut"}))
        .await?;
    let limit = Duration::from_secs(20);
    let sender_frames = until_dropped(&mut sender, limit).await?;
    let ack = sender_frames
        .iter()
        .find(|f| frame_type(f) == "ack" && f["id"] == "m3")
        .cloned()
        .context("the ack left before the reset")?;
    let mut live = Vec::new();
    for r in &mut receivers {
        live.push(messages_in(&until_dropped(r, limit).await?));
    }
    let got = live.iter().filter(|m| message_seqs(m).contains(&3)).count();
    ensure!(
        got == 2,
        "the reset came after two of {RECEIVERS} deliveries, {got} got m3: {live:?}"
    );

    for (i, seen) in live.iter().enumerate() {
        let since = message_seqs(seen).last().copied().unwrap_or(0);
        let (_, head, replay) = resume(&s, &format!("r{i}"), since).await?;
        exactly_once(&format!("r{i}"), seen, &replay, head)?;
        ensure!(head == 3, "head after the reset: {head}");
    }
    let (mut sender, _, _) = resume(&s, "sender", 3).await?;
    let again = sender.message(EDGE_ROOM, "m3", "cut").await?;
    ensure!(
        again["duplicate"] == true && again["seq"] == ack["seq"],
        "the resent m3 is the stored one: {again} vs {ack}"
    );
    let (mut watcher, _, _) = resume(&s, "r0", 3).await?;
    let m4 = sender.message(EDGE_ROOM, "m4", "after").await?;
    let seen = watcher.expect_message(EDGE_ROOM).await?;
    ensure!(
        m4["seq"] == 4 && seen["seq"] == 4,
        "fan-out after the reset: {m4} {seen}"
    );
    let stored = whole_history(&s).await?;
    let m3 = stored.iter().find(|m| m["id"] == "m3");
    ensure!(
        m3.is_some_and(|m| m["seq"] == ack["seq"] && m["ts"] == ack["ts"]),
        "acknowledged m3 {ack} stored as {m3:?}"
    );
    note(&format!(
        "edge fault, reset mid-fan-out: {got} of {RECEIVERS} got m3 live, all resumed exactly"
    ));
    Ok(())
}

/// (b) A storage error inside an append, after SQLite wrote the row and took its seq (a trigger
/// fails the `INSERT`): the sender gets `UNAVAILABLE` and nobody the message; resent once the
/// storage is healthy it takes that same seq (no gap), is no duplicate, and reaches the room
/// once; a client resuming with `join {since}` gets exactly the messages after `since`.
async fn storage_error_in_append(d: &dyn Deployment) -> anyhow::Result<()> {
    let s = Scope::new(d, "edge_fault_append");
    let mut bob = s.connect("bob").await?;
    let mut alice = s.connect("alice").await?;
    alice.message(EDGE_ROOM, "m1", "fine").await?;
    inject(&s, "fail-appends").await?;
    alice
        .send_json(&json!({"action": "message", "room": EDGE_ROOM, "id": "m2", "body": "x"}))
        .await?;
    let error = alice.expect_error("UNAVAILABLE").await?;
    alice
        .assert_none(
            "an ack for the failed m2",
            Duration::from_millis(300),
            |f| frame_type(f) == "ack",
        )
        .await?;
    inject(&s, "heal-appends").await?;
    let ack = alice.message(EDGE_ROOM, "m2", "x").await?;
    ensure!(
        ack["seq"] == 2 && ack["duplicate"] != true,
        "after {error}, the resent m2 is new with the next seq: {ack}"
    );
    alice.message(EDGE_ROOM, "m3", "fine").await?;
    let live = messages_in(&bob.sync().await?);
    ensure!(
        message_seqs(&live) == [1, 2, 3],
        "bob got each message once: {live:?}"
    );
    let (_, head, replay) = resume(&s, "carol", 1).await?;
    ensure!(
        head == 3 && seqs(&replay) == [2, 3],
        "resumed since 1: head {head}, {replay:?}"
    );
    whole_history(&s).await?;
    Ok(())
}

/// (c) The alarm handler runs twice (a dev request runs it twice in a row, repeated around the
/// idle deadline, besides the runtime's own alarm): the idle connection gets one `closing` and
/// one 1001 close, the room one `offline` for it; it resumes with `join {since}` and gets
/// exactly the messages sent while it was away; every acknowledged message is stored once.
async fn alarm_fired_twice(d: &dyn Deployment) -> anyhow::Result<()> {
    let s = Scope::new(d, "edge_fault_alarm");
    let start = Instant::now();
    let mut alice = s.connect("alice").await?;
    // Bob stays active, so only alice is due at her idle deadline.
    tokio::time::sleep(IDLE / 2).await;
    let mut bob = s.connect("bob").await?;
    for n in 1..=2 {
        bob.message(EDGE_ROOM, &format!("m{n}"), "before").await?;
    }
    let mut seen = vec![
        alice.expect_message(EDGE_ROOM).await?,
        alice.expect_message(EDGE_ROOM).await?,
    ];
    tokio::time::sleep((IDLE - Duration::from_millis(200)).saturating_sub(start.elapsed())).await;
    let mut runs = 0;
    let (frames, code, _) = loop {
        inject(&s, "alarm-twice").await?;
        runs += 2;
        if let Some(closed) = alice.close_within(Duration::from_millis(100)).await? {
            break closed;
        }
        ensure!(start.elapsed() < IDLE * 3, "alice not closed for idleness");
    };
    inject(&s, "alarm-twice").await?;
    runs += 2;
    let closing = frames.iter().filter(|f| frame_type(f) == "closing").count();
    ensure!(
        code == 1001 && closing == 1,
        "one close for idleness after {runs} alarm runs: {code}, {frames:?}"
    );
    seen.extend(messages_in(&frames));
    for n in 3..=4 {
        bob.message(EDGE_ROOM, &format!("m{n}"), "while away")
            .await?;
    }
    let (_alice, head, replay) = resume(
        &s,
        "alice",
        message_seqs(&seen).last().copied().unwrap_or(0),
    )
    .await?;
    exactly_once("alice", &seen, &replay, head)?;
    let offline = bob
        .sync()
        .await?
        .iter()
        .filter(|f| frame_type(f) == "presence" && f["user"] == "alice" && f["status"] == "offline")
        .count();
    ensure!(offline == 1, "the room was told alice left {offline} times");
    whole_history(&s).await?;
    note(&format!(
        "edge fault, alarm fired twice: {runs} runs around the idle deadline, one close"
    ));
    Ok(())
}

/// A slot `alice` uploads `bytes` to in [`EDGE_ROOM`]: its id and her own download link.
async fn uploaded_pdf(
    s: &Scope<'_>,
    token: &str,
    bytes: &[u8],
) -> anyhow::Result<(String, String)> {
    let base = s.d.http_url().context("http_url")?;
    let slot = Request::new("POST", &format!("/rooms/{EDGE_ROOM}/uploads"))
        .bearer(token)
        .json(&json!({"name": "a.pdf", "size": bytes.len(), "type": "application/pdf"}))
        .send(&base)
        .await?;
    ensure!(
        slot.status == 201,
        "slot: HTTP {} `{}`",
        slot.status,
        slot.text()
    );
    let grant = slot.json()?;
    let url = grant["upload"]["url"].as_str().context("upload url")?;
    let put = Request::new("PUT", url)
        .body(bytes.to_vec())
        .send(&base)
        .await?;
    ensure!(
        put.status == 204,
        "upload: HTTP {} `{}`",
        put.status,
        put.text()
    );
    let id = grant["id"].as_str().context("id")?.to_owned();
    let link = attachment_link(s, token, &id).await?;
    ensure!(link.status == 200, "link: HTTP {}", link.status);
    let download = link.json()?["url"].as_str().context("url")?.to_owned();
    Ok((id, download))
}

async fn attachment_link(s: &Scope<'_>, token: &str, id: &str) -> anyhow::Result<Response> {
    let base = s.d.http_url().context("http_url")?;
    Request::new("GET", &format!("/rooms/{EDGE_ROOM}/attachments/{id}"))
        .bearer(token)
        .send(&base)
        .await
}

/// Uploads no message carried are removed by the room object's alarm a day after their slot
/// was granted (a dev request ages the slots by a day, then runs the alarm): the slot and its
/// bytes go; an upload a message carries stays.
async fn alarm_sweeps_abandoned_uploads(d: &dyn Deployment) -> anyhow::Result<()> {
    let s = Scope::new(d, "edge_sweep");
    let base = d.http_url().context("http_url")?;
    let token = s.token("alice", &[EDGE_ROOM]);
    let pdf = |tag: &str| {
        let mut bytes = format!("%PDF-1.7\n%{tag}\n").into_bytes();
        bytes.resize(600, b'x');
        bytes
    };
    let (abandoned, abandoned_url) = uploaded_pdf(&s, &token, &pdf("abandoned")).await?;
    let (kept, kept_url) = uploaded_pdf(&s, &token, &pdf("kept")).await?;
    let mut alice = s.connect("alice").await?;
    let id = s.id("carried");
    alice
        .send_json(
            &json!({"action": "message", "room": EDGE_ROOM, "id": id, "body": "",
            "attachments": [{"id": kept}]}),
        )
        .await?;
    alice.expect_ack(&id).await?;
    inject(&s, "age-uploads").await?;
    inject(&s, "alarm-twice").await?;
    let gone = attachment_link(&s, &token, &abandoned).await?;
    ensure!(
        gone.status == 404,
        "the abandoned slot: HTTP {}",
        gone.status
    );
    let bytes = Request::new("GET", &abandoned_url).send(&base).await?;
    ensure!(
        bytes.status == 404,
        "the abandoned bytes: HTTP {}",
        bytes.status
    );
    let still = attachment_link(&s, &token, &kept).await?;
    ensure!(
        still.status == 200,
        "the carried slot: HTTP {}",
        still.status
    );
    let bytes = Request::new("GET", &kept_url).send(&base).await?;
    ensure!(
        bytes.status == 200 && bytes.body == pdf("kept"),
        "the carried bytes: HTTP {}",
        bytes.status
    );
    Ok(())
}
