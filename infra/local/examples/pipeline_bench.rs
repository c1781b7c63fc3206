//! One client sending as fast as the server lets it, on the local server (issue 20, goal 2).
//! A bot or a backend does not wait for each `ack` before its next message; the server
//! handles the frames that arrived together as one run whose messages share a commit, so the
//! client is not held to one fsync per message. Measured in one run, durable (embedded store,
//! fsync on every commit) and memory:
//!
//! - **one at a time**: send, wait for the `ack`, send the next (what any client got before);
//! - **pipelined**: up to [`WINDOW`] messages unacknowledged; every ack must come in send
//!   order with consecutive seqs, and a second member must receive every message in order;
//! - **HTTP publish**: `POST /rooms/{room}/messages` from one backend with
//!   [`HTTP_CONCURRENCY`] requests in flight, against one request at a time.
//!
//! ```text
//! cargo run --release -p roomcast-local --example pipeline_bench [-- MESSAGES]
//! ```

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail, ensure};
use futures::{SinkExt, StreamExt};
use roomcast_core::auth::{Claims, Role, TokenSigner};
use roomcast_protocol_tests::http::Request;
use roomcast_protocol_tests::scope::claims;
use serde_json::{Value, json};
use tokio::sync::Semaphore;
use tokio_tungstenite::tungstenite::Message;

use common::{Socket, next_of, percentile, runs, start_server};

const SECRET: &str = "roomcast-pipeline-bench-secret-0123456789";
const TENANT: &str = "bench";
/// Most messages a pipelining client leaves unacknowledged.
const WINDOW: usize = 512;
/// HTTP publishes one backend keeps in flight.
const HTTP_CONCURRENCY: usize = 32;

fn token(claims: &Claims) -> String {
    TokenSigner::hs256(SECRET.as_bytes()).sign(claims)
}

async fn member(port: u16, user: &str) -> anyhow::Result<Socket> {
    let url = format!(
        "ws://127.0.0.1:{port}/?token={}",
        token(&claims(TENANT, user, &["lobby"]))
    );
    let (mut socket, _) = tokio_tungstenite::connect_async(url).await?;
    let join = json!({"action": "join", "room": "lobby"}).to_string();
    socket.send(Message::text(join)).await?;
    next_of(&mut socket, |f| f["type"] == "joined").await?;
    Ok(socket)
}

fn message(run: &str, i: usize) -> Message {
    let frame = json!({"action": "message", "room": "lobby", "id": format!("{run}-{i}"), "body": "x".repeat(64)});
    Message::text(frame.to_string())
}

/// Messages/s of `count` messages sent one at a time, each after the previous ack.
async fn one_at_a_time(sender: &mut Socket, run: &str, count: usize) -> anyhow::Result<f64> {
    let started = Instant::now();
    for i in 0..count {
        sender.send(message(run, i)).await?;
        next_of(sender, |f| f["type"] == "ack").await?;
    }
    Ok(count as f64 / started.elapsed().as_secs_f64())
}

/// Messages/s of `count` messages with up to [`WINDOW`] unacknowledged, and the acks' latency
/// (ms, p50 and p99). Fails unless every ack comes in send order with consecutive seqs and
/// `receiver` gets every message in order.
async fn pipelined(
    sender: Socket,
    receiver: &mut Socket,
    run: &str,
    count: usize,
) -> anyhow::Result<(f64, f64, f64, Socket)> {
    let (mut sink, mut stream) = sender.split();
    let window = Arc::new(Semaphore::new(WINDOW));
    let sent_at = Arc::new(std::sync::Mutex::new(Vec::with_capacity(count)));
    let started = Instant::now();
    let writer = {
        let (window, sent_at, run) = (window.clone(), sent_at.clone(), run.to_owned());
        tokio::spawn(async move {
            for i in 0..count {
                window.acquire().await?.forget();
                // Invariant: nothing panics while holding the lock.
                sent_at.lock().expect("unpoisoned").push(Instant::now());
                sink.send(message(&run, i)).await?;
            }
            anyhow::Ok(sink)
        })
    };
    let mut latencies = Vec::with_capacity(count);
    let mut first_seq = None;
    for i in 0..count {
        let ack = tokio::time::timeout(Duration::from_secs(30), async {
            loop {
                let Some(frame) = stream.next().await else {
                    bail!("the socket closed");
                };
                if let Message::Text(text) = frame? {
                    let frame: Value = serde_json::from_str(&text)?;
                    match frame["type"].as_str() {
                        Some("ack") => return Ok(frame),
                        Some("error") => bail!("error frame: {frame}"),
                        _ => {}
                    }
                }
            }
        })
        .await
        .context("no ack within 30 s")??;
        let now = Instant::now();
        ensure!(
            ack["id"] == format!("{run}-{i}").as_str(),
            "ack {i} out of order: {ack}"
        );
        let seq = ack["seq"].as_u64().context("ack seq")?;
        let first = *first_seq.get_or_insert(seq);
        ensure!(seq == first + i as u64, "seq {seq} is not consecutive");
        let sent = sent_at.lock().expect("unpoisoned")[i];
        latencies.push(now.duration_since(sent).as_secs_f64() * 1e3);
        window.add_permits(1);
    }
    let rate = count as f64 / started.elapsed().as_secs_f64();
    let sink = writer.await??;
    let sender = sink
        .reunite(stream)
        .map_err(|_| anyhow::anyhow!("the halves of one socket"))?;
    for i in 0..count {
        let got = next_of(receiver, |f| f["type"] == "message").await?;
        ensure!(
            got["id"] == format!("{run}-{i}").as_str(),
            "delivery {i} out of order: {got}"
        );
    }
    Ok((
        rate,
        percentile(&latencies, 0.5),
        percentile(&latencies, 0.99),
        sender,
    ))
}

/// Publishes/s of `count` HTTP publishes with `concurrency` in flight.
async fn publish(port: u16, run: &str, count: usize, concurrency: usize) -> anyhow::Result<f64> {
    let service = token(&Claims {
        role: Role::Service,
        ..claims(TENANT, "backend", &["lobby"])
    });
    let base = format!("http://127.0.0.1:{port}");
    let started = Instant::now();
    let results: Vec<anyhow::Result<()>> = futures::stream::iter(0..count)
        .map(|i| {
            let (service, base) = (&service, &base);
            async move {
                let body = json!({"id": format!("{run}-{i}"), "body": "x".repeat(64)});
                let response = Request::new("POST", "/rooms/lobby/messages")
                    .bearer(service)
                    .json(&body)
                    .send(base)
                    .await?;
                ensure!(
                    response.status == 200 || response.status == 201,
                    "publish {i}: {} {}",
                    response.status,
                    response.text()
                );
                Ok(())
            }
        })
        .buffer_unordered(concurrency)
        .collect()
        .await;
    results.into_iter().collect::<anyhow::Result<Vec<()>>>()?;
    Ok(count as f64 / started.elapsed().as_secs_f64())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let count = runs(20_000)?;
    // Frames and HTTP requests share the rate policy.
    let limits = ["--rate-per-sec", "1000000", "--rate-burst", "1000000"];
    println!("one client, {count} messages of 64 bytes in a room of 2 (messages/s)");
    println!(
        "| store | one at a time | pipelined (window {WINDOW}) | ack p50 / p99 ms | HTTP, 1 in flight | HTTP, {HTTP_CONCURRENCY} in flight |"
    );
    println!("|---|---|---|---|---|---|");
    for (store, flags) in [("durable", &[][..]), ("memory", &["--store", "memory"][..])] {
        let mut args = limits.to_vec();
        args.extend_from_slice(flags);
        let (port, _data) = start_server(SECRET, &args).await?;
        let mut sender = member(port, "alice").await?;
        let mut receiver = member(port, "bob").await?;
        // Warm up: the store, the connections.
        one_at_a_time(&mut sender, "warm", 50).await?;
        for _ in 0..50 {
            next_of(&mut receiver, |f| f["type"] == "message").await?;
        }
        // One at a time is fsync-bound: a tenth of the count says as much.
        let serial = one_at_a_time(&mut sender, "serial", (count / 10).max(1)).await?;
        for _ in 0..(count / 10).max(1) {
            next_of(&mut receiver, |f| f["type"] == "message").await?;
        }
        let (piped, p50, p99, _sender) = pipelined(sender, &mut receiver, "piped", count).await?;
        let http_count = (count / 10).max(1);
        let http_one = publish(port, "http1", http_count / 4, 1).await?;
        let http_many = publish(port, "httpn", http_count, HTTP_CONCURRENCY).await?;
        println!(
            "| {store} | {serial:.0} | {piped:.0} ({:.0}× one at a time) | {p50:.1} / {p99:.1} | {http_one:.0} | {http_many:.0} |",
            piped / serial
        );
    }
    Ok(())
}
