//! Attachments on the local server, measured: a 5 MB image uploaded through the signed
//! `PUT /uploads/{token}` route (throughput, MB/s) and the time from starting that upload to
//! the other member of the room receiving the `message` frame that carries it.
//!
//! Starts the server in this process exactly as `roomcast-local serve` would (embedded store
//! in a fresh temporary data directory, fsync on every commit and upload) and drives it over
//! loopback sockets. Run it optimised:
//!
//! ```text
//! cargo run --release -p roomcast-local --example attachment_bench [-- RUNS]
//! ```

mod common;

use std::time::Instant;

use anyhow::{Context, ensure};
use futures::SinkExt;
use roomcast_core::auth::TokenSigner;
use roomcast_protocol_tests::http::Request;
use roomcast_protocol_tests::scope::claims;
use serde_json::json;
use tokio_tungstenite::tungstenite::Message;

use common::{Socket, next_of, percentile, runs, start_server};

const SECRET: &str = "roomcast-attachment-bench-secret-0123456789";
const IMAGE_BYTES: usize = 5 * 1024 * 1024;
const ROOM: &str = "files";
const TENANT: &str = "bench";

/// A PNG header, then filler up to `len` bytes.
fn png(len: usize) -> Vec<u8> {
    let mut bytes = b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR".to_vec();
    bytes.extend_from_slice(&1920u32.to_be_bytes());
    bytes.extend_from_slice(&1080u32.to_be_bytes());
    let start = bytes.len();
    bytes.extend((start..len).map(|i| (i % 251) as u8));
    bytes
}

fn token(user: &str) -> String {
    TokenSigner::hs256(SECRET.as_bytes()).sign(&claims(TENANT, user, &[ROOM]))
}

async fn join(port: u16, user: &str) -> anyhow::Result<Socket> {
    let url = format!("ws://127.0.0.1:{port}/?token={}", token(user));
    let (mut socket, _) = tokio_tungstenite::connect_async(url).await?;
    socket
        .send(Message::text(
            json!({"action": "join", "room": ROOM}).to_string(),
        ))
        .await?;
    next_of(&mut socket, |f| f["type"] == "joined").await?;
    Ok(socket)
}

/// One run: (upload seconds, seconds from the upload's start to bob's `message`).
async fn run(
    port: u16,
    n: usize,
    alice: &mut Socket,
    bob: &mut Socket,
) -> anyhow::Result<(f64, f64)> {
    let base = format!("http://127.0.0.1:{port}");
    let image = png(IMAGE_BYTES);
    let slot = Request::new("POST", &format!("/rooms/{ROOM}/uploads"))
        .bearer(&token("alice"))
        .json(&json!({"name": "photo.png", "size": image.len(), "type": "image/png"}))
        .send(&base)
        .await?;
    ensure!(
        slot.status == 201,
        "slot: HTTP {} {}",
        slot.status,
        slot.text()
    );
    let grant = slot.json()?;
    let url = grant["upload"]["url"].as_str().context("upload url")?;
    let id = grant["id"].as_str().context("id")?;
    let mut put = Request::new("PUT", url).body(image);
    put.headers.push(("Content-Type", "image/png".into()));

    let started = Instant::now();
    let stored = put.send(&base).await?;
    let uploaded = started.elapsed();
    ensure!(
        stored.status == 204,
        "upload: HTTP {} {}",
        stored.status,
        stored.text()
    );
    let msg_id = format!("m{n}");
    alice
        .send(Message::text(
            json!({"action": "message", "room": ROOM, "id": msg_id, "body": "", "attachments": [{"id": id}]})
                .to_string(),
        ))
        .await?;
    next_of(bob, |f| {
        f["type"] == "message" && f["attachments"][0]["id"] == id
    })
    .await?;
    let visible = started.elapsed();
    next_of(alice, |f| f["type"] == "ack" && f["id"] == msg_id).await?;
    Ok((uploaded.as_secs_f64(), visible.as_secs_f64()))
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let runs = runs(20)?;
    let (port, _data) = start_server(SECRET, &[]).await?;

    let mut alice = join(port, "alice").await?;
    let mut bob = join(port, "bob").await?;
    // One unmeasured run warms the caches, the store and the connections.
    run(port, 0, &mut alice, &mut bob).await?;
    let (mut uploads, mut visible) = (Vec::new(), Vec::new());
    for n in 1..=runs {
        let (up, seen) = run(port, n, &mut alice, &mut bob).await?;
        uploads.push(up);
        visible.push(seen);
    }
    let mb = IMAGE_BYTES as f64 / 1e6;
    let best = uploads.iter().copied().fold(f64::INFINITY, f64::min);
    println!("{runs} runs of a {mb:.2} MB PNG, embedded store, fsync on");
    println!(
        "upload throughput: median {:.0} MB/s (best {:.0} MB/s); upload median {:.1} ms",
        mb / percentile(&uploads, 0.5),
        mb / best,
        percentile(&uploads, 0.5) * 1e3
    );
    println!(
        "time to visible (upload start → the other member's `message`): median {:.1} ms, max {:.1} ms",
        percentile(&visible, 0.5) * 1e3,
        visible.iter().copied().fold(0.0, f64::max) * 1e3
    );
    Ok(())
}
