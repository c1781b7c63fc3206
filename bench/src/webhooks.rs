//! Webhook delivery figures (issue 17): how long an event takes from the store to an endpoint,
//! and how many events per second one endpoint receives. Loopback only, bounded in count.
//!
//! A receiver (axum, on 127.0.0.1) records when each `message.created` arrives; a service
//! token creates the endpoint over the HTTP API (`POST /events/endpoints`); then
//! 1. **latency**: `rooms` connections, one per room, send `messages` messages in all at `rate`
//!    per second, each after its `ack`; an event's latency is its arrival (wall clock) minus
//!    its `occurred_at` (the store time, the server's wall clock; same machine), so it covers
//!    the journal, the dispatch, the delivery task and the HTTP request, with 1 ms resolution;
//! 2. **throughput**: the same connections send `burst` more messages as fast as the server
//!    acknowledges them (up to 16 unacknowledged each); events per second is `burst` over the
//!    time from the first of them stored to the last received.
//!
//! The signatures are not checked here (the tests check them with the official verifier).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::body::Bytes;
use axum::routing::post;
use futures::{SinkExt, StreamExt};
use hdrhistogram::Histogram;
use serde::Serialize;
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

use crate::soak::http_request;
use crate::token::sign_hs256;

/// What to run.
#[derive(Debug, Clone)]
pub struct WebhooksConfig {
    /// The server (`host:port`, loopback).
    pub server: SocketAddr,
    /// The HS256 secret its tokens verify with.
    pub jwt_secret: String,
    /// Tenant of the run.
    pub tenant: String,
    /// Rooms, one sending connection each.
    pub rooms: usize,
    /// Messages of the latency phase.
    pub messages: usize,
    /// Messages per second in the latency phase, all rooms together.
    pub rate: f64,
    /// Messages of the throughput phase.
    pub burst: usize,
}

/// Latency figures, milliseconds.
#[derive(Debug, Clone, Serialize)]
pub struct Latency {
    /// Events measured.
    pub count: u64,
    /// Median.
    pub p50_ms: u64,
    /// 99th percentile.
    pub p99_ms: u64,
    /// Largest.
    pub max_ms: u64,
}

/// What a run measured.
#[derive(Debug, Clone, Serialize)]
pub struct WebhooksReport {
    /// Store → webhook received, in the paced phase.
    pub latency: Latency,
    /// Messages the throughput phase stored per second (acks).
    pub stored_per_sec: f64,
    /// Events the endpoint received per second in the throughput phase.
    pub events_per_sec: f64,
    /// Deliveries received more than once (same id).
    pub duplicates: u64,
}

impl WebhooksReport {
    /// A markdown table.
    pub fn markdown(&self) -> String {
        format!(
            "| events | p50 | p99 | max | stored/s (burst) | events/s received | duplicates |\n|---|---|---|---|---|---|---|\n| {} | {} ms | {} ms | {} ms | {:.0} | {:.0} | {} |\n",
            self.latency.count,
            self.latency.p50_ms,
            self.latency.p99_ms,
            self.latency.max_ms,
            self.stored_per_sec,
            self.events_per_sec,
            self.duplicates
        )
    }
}

/// Arrivals by event id: (arrival epoch µs, occurred_at ms, times received).
type Arrivals = Arc<Mutex<HashMap<String, (u64, u64, u64)>>>;

fn now_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX))
}

/// Runs both phases against `config.server`.
pub fn run(config: WebhooksConfig) -> anyhow::Result<WebhooksReport> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?
        .block_on(drive(config))
}

async fn drive(config: WebhooksConfig) -> anyhow::Result<WebhooksReport> {
    anyhow::ensure!(config.server.ip().is_loopback(), "loopback servers only");
    let arrivals: Arrivals = Arc::default();
    let receiver = tokio::net::TcpListener::bind(("127.0.0.1", 0)).await?;
    let hook = format!("http://{}/hook", receiver.local_addr()?);
    let app = Router::new().route(
        "/hook",
        post({
            let arrivals = arrivals.clone();
            move |body: Bytes| async move {
                let at = now_us();
                if let Ok(event) = serde_json::from_slice::<Value>(&body) {
                    let id = event["id"].as_str().unwrap_or_default().to_owned();
                    let occurred = event["occurred_at"].as_u64().unwrap_or_default();
                    let mut a = arrivals.lock().unwrap_or_else(PoisonError::into_inner);
                    a.entry(id).or_insert((at, occurred, 0)).2 += 1;
                }
                "ok"
            }
        }),
    );
    tokio::spawn(async move {
        // Ends with the process.
        let _ = axum::serve(receiver, app).await;
    });

    let service = sign_hs256(
        &config.jwt_secret,
        &config.tenant,
        "bench-ops",
        vec![],
        "service",
    );
    let body = json!({"url": hook, "types": ["message.created"]}).to_string();
    let (status, answer) = http_request(
        config.server,
        "POST",
        "/events/endpoints",
        Some(&service),
        Some(&body),
    )
    .await
    .map_err(anyhow::Error::msg)?;
    anyhow::ensure!(
        status == 201,
        "creating the endpoint: HTTP {status} {}",
        String::from_utf8_lossy(&answer)
    );

    let mut senders = Vec::new();
    for r in 0..config.rooms {
        let token = sign_hs256(
            &config.jwt_secret,
            &config.tenant,
            &format!("sender-{r}"),
            vec!["*".into()],
            "user",
        );
        let url = format!("ws://{}/?token={token}", config.server);
        let (mut ws, _) = tokio_tungstenite::connect_async(url).await?;
        let room = format!("hooks-{r}");
        ws.send(Message::text(
            json!({"action": "join", "room": room}).to_string(),
        ))
        .await?;
        wait_for(&mut ws, |f| f["type"] == "joined").await?;
        senders.push((ws, room));
    }

    // Phase 1: paced.
    let per_room = config.messages / config.rooms.max(1);
    let interval = Duration::from_secs_f64(config.rooms as f64 / config.rate.max(0.1));
    let paced = futures::future::try_join_all(senders.iter_mut().enumerate().map(
        |(r, (ws, room))| async move {
            let mut tick = tokio::time::interval(interval);
            for i in 0..per_room {
                tick.tick().await;
                let id = format!("p{r}-{i}");
                ws.send(Message::text(
                    json!({"action": "message", "room": room, "id": id, "body": "x"}).to_string(),
                ))
                .await?;
                wait_for(ws, |f| f["type"] == "ack" && f["id"] == id.as_str()).await?;
            }
            anyhow::Ok(())
        },
    ));
    paced.await?;
    let paced_total = per_room * config.rooms;
    await_count(&arrivals, paced_total, Duration::from_secs(120)).await?;
    let mut histogram = Histogram::<u64>::new_with_bounds(1, 600_000, 3)?;
    for (at, occurred, _) in arrivals
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .values()
    {
        histogram.record((at / 1000).saturating_sub(*occurred).max(1))?;
    }

    // Phase 2: as fast as acknowledged, 16 in flight per connection.
    let per_room_burst = config.burst / config.rooms.max(1);
    let started = Instant::now();
    let started_us = now_us();
    let burst = futures::future::try_join_all(senders.iter_mut().enumerate().map(
        |(r, (ws, room))| async move {
            let (mut sent, mut acked) = (0, 0);
            while acked < per_room_burst {
                while sent < per_room_burst && sent - acked < 16 {
                    let id = format!("b{r}-{sent}");
                    ws.send(Message::text(
                        json!({"action": "message", "room": room, "id": id, "body": "x"})
                            .to_string(),
                    ))
                    .await?;
                    sent += 1;
                }
                wait_for(ws, |f| f["type"] == "ack").await?;
                acked += 1;
            }
            anyhow::Ok(())
        },
    ));
    burst.await?;
    let stored_secs = started.elapsed().as_secs_f64();
    let burst_total = per_room_burst * config.rooms;
    await_count(
        &arrivals,
        paced_total + burst_total,
        Duration::from_secs(300),
    )
    .await?;
    let (last, duplicates) = {
        let a = arrivals.lock().unwrap_or_else(PoisonError::into_inner);
        let last = a.values().map(|(at, _, _)| *at).max().unwrap_or(started_us);
        let duplicates = a.values().map(|(_, _, n)| n.saturating_sub(1)).sum();
        (last, duplicates)
    };
    let received_secs = (last.saturating_sub(started_us) as f64 / 1e6).max(1e-3);
    Ok(WebhooksReport {
        latency: Latency {
            count: histogram.len(),
            p50_ms: histogram.value_at_quantile(0.5),
            p99_ms: histogram.value_at_quantile(0.99),
            max_ms: histogram.max(),
        },
        stored_per_sec: burst_total as f64 / stored_secs,
        events_per_sec: burst_total as f64 / received_secs,
        duplicates,
    })
}

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// Reads frames until one satisfies `done` (others, e.g. presence, are skipped).
async fn wait_for(ws: &mut Ws, done: impl Fn(&Value) -> bool) -> anyhow::Result<()> {
    let deadline = Duration::from_secs(30);
    loop {
        let frame = tokio::time::timeout(deadline, ws.next())
            .await
            .map_err(|_| anyhow::anyhow!("no answer within {deadline:?}"))?
            .ok_or_else(|| anyhow::anyhow!("the server closed the socket"))??;
        if let Message::Text(text) = frame {
            let value: Value = serde_json::from_str(&text)?;
            anyhow::ensure!(
                value["type"] != "error",
                "the server refused a frame: {value}"
            );
            if done(&value) {
                return Ok(());
            }
        }
    }
}

/// Waits until `count` distinct events arrived.
async fn await_count(arrivals: &Arrivals, count: usize, within: Duration) -> anyhow::Result<()> {
    let deadline = Instant::now() + within;
    loop {
        let have = arrivals
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len();
        if have >= count {
            return Ok(());
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "{have} of {count} events arrived within {within:?}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}
