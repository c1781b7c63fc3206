//! `raw-broadcast`: the benchmarks' "raw limit". A minimal room broadcast server on the same
//! WebSocket stack as roomcast's local server (axum's `ws` over tokio, one writer task per
//! socket draining a bounded queue of 1024 frames and writing every frame already queued, up to
//! 64, before one flush, as roomcast's writer does), with none of roomcast's work: no token, no
//! route events, no store, no rate limit, no presence. It speaks the subset of protocol v1 the
//! load generator uses:
//!
//! - `{"action":"join","room":R}` → `{"type":"joined","room":R,"head":N,"read_seq":0,
//!   "unread":N,"members":[]}`
//! - `{"action":"message","room":R,"id":I,"body":B}` → the room's next seq; `ack {id, room, seq,
//!   ts}` to the sender, `message {room, seq, id, from, body, ts}` to the room's other sockets
//! - `{"action":"ping"}` → `pong`
//!
//! ```sh
//! raw-broadcast --port 3003
//! raw-broadcast --port 3003 --write-batch 1   # a flush per frame (the A/B in docs/benchmarks.md)
//! ```

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::extract::State;
use axum::extract::ws::{Message, Utf8Bytes, WebSocket, WebSocketUpgrade};
use axum::response::Response;
use axum::routing::get;
use axum::serve::ListenerExt;
use clap::Parser;
use futures::{SinkExt, StreamExt};
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;

/// Frames queued per socket before it is dropped as a slow consumer (roomcast's limit too).
const OUTBOUND_QUEUE_FRAMES: usize = 1024;

/// Bytes read from a socket at a time.
const READ_BUFFER_BYTES: usize = 4096;

/// Most queued frames written to a socket before one flush, by default (roomcast's
/// `WRITE_BATCH_FRAMES`): a burst for one socket is one `write` syscall, so "% of raw"
/// compares with the best this stack does, not with one syscall per frame.
const WRITE_BATCH_FRAMES: u16 = 64;

/// Minimal WebSocket room broadcast server (the benchmarks' raw limit).
#[derive(Debug, Parser)]
#[command(name = "raw-broadcast", version, about)]
struct Cli {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1")]
    host: IpAddr,
    /// Port to listen on (0: any free port; the bound address is printed).
    #[arg(long, default_value_t = 3003)]
    port: u16,
    /// Leave Nagle's algorithm on for accepted sockets (axum's default; for the A/B comparison
    /// in docs/benchmarks.md). Without it every socket gets TCP_NODELAY.
    #[arg(long)]
    nagle: bool,
    /// Most queued frames written to a socket before one flush (1: a flush per frame, as
    /// before issue 20; for the A/B comparison in docs/benchmarks.md).
    #[arg(long, default_value_t = WRITE_BATCH_FRAMES, value_parser = clap::value_parser!(u16).range(1..))]
    write_batch: u16,
}

/// A room: its seq counter and its sockets.
#[derive(Default)]
struct Room {
    seq: u64,
    members: Vec<(u64, mpsc::Sender<Message>)>,
}

/// Every room.
#[derive(Default)]
struct Hub {
    rooms: Mutex<HashMap<String, Room>>,
    next_id: AtomicU64,
    /// Most frames written to a socket before one flush.
    write_batch: usize,
}

impl Hub {
    fn rooms(&self) -> std::sync::MutexGuard<'_, HashMap<String, Room>> {
        self.rooms.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The client frames this server knows.
#[derive(Deserialize)]
struct ClientFrame {
    action: String,
    #[serde(default)]
    room: Option<String>,
    #[serde(default)]
    id: Option<String>,
    #[serde(default)]
    body: Option<String>,
}

/// The server frames, fields in protocol v1's order (`type` first).
#[derive(Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum ServerFrame<'a> {
    /// Complete, so typed clients read it: nothing read, nobody's presence.
    Joined {
        room: &'a str,
        head: u64,
        read_seq: u64,
        unread: u64,
        members: [(); 0],
    },
    Ack {
        id: &'a str,
        room: &'a str,
        seq: u64,
        ts: u64,
    },
    Message {
        room: &'a str,
        seq: u64,
        id: &'a str,
        from: &'a str,
        body: &'a str,
        ts: u64,
    },
    Pong {
        ts: u64,
    },
    Error {
        code: &'static str,
        message: &'static str,
    },
}

impl ServerFrame<'_> {
    fn text(&self) -> String {
        serde_json::to_string(self).expect("server frames always serialize")
    }
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let hub = Hub {
        write_batch: usize::from(cli.write_batch),
        ..Hub::default()
    };
    let app = Router::new()
        .route("/", get(upgrade))
        .with_state(Arc::new(hub));
    let listener = tokio::net::TcpListener::bind(SocketAddr::new(cli.host, cli.port)).await?;
    println!(
        "raw-broadcast listening on http://{}",
        listener.local_addr()?
    );
    let nodelay = !cli.nagle;
    let listener = listener.tap_io(move |tcp| {
        if nodelay {
            let _ = tcp.set_nodelay(true);
        }
    });
    axum::serve(listener, app).await?;
    Ok(())
}

async fn upgrade(State(hub): State<Arc<Hub>>, ws: WebSocketUpgrade) -> Response {
    // As roomcast's server: 4 KiB reads instead of tungstenite's zero-filled 128 KiB.
    ws.read_buffer_size(READ_BUFFER_BYTES)
        .on_upgrade(move |socket| run_socket(hub, socket))
}

async fn run_socket(hub: Arc<Hub>, socket: WebSocket) {
    let id = hub.next_id.fetch_add(1, Ordering::Relaxed);
    let (mut sink, mut stream) = socket.split();
    let (queue, mut outbound) = mpsc::channel::<Message>(OUTBOUND_QUEUE_FRAMES);
    let batch = hub.write_batch;
    let writer = tokio::spawn(async move {
        while let Some(first) = outbound.recv().await {
            if write_batch(&mut sink, first, &mut outbound, batch)
                .await
                .is_err()
            {
                return;
            }
        }
    });
    let mut joined: Vec<String> = Vec::new();
    while let Some(Ok(frame)) = stream.next().await {
        let Message::Text(text) = frame else {
            if matches!(frame, Message::Close(_)) {
                break;
            }
            continue;
        };
        let Ok(frame) = serde_json::from_str::<ClientFrame>(text.as_str()) else {
            continue;
        };
        let reply = match (frame.action.as_str(), frame.room) {
            ("join", Some(room)) => {
                let head = {
                    let mut rooms = hub.rooms();
                    let r = rooms.entry(room.clone()).or_default();
                    if !joined.contains(&room) {
                        r.members.push((id, queue.clone()));
                    }
                    r.seq
                };
                let reply = ServerFrame::Joined {
                    room: &room,
                    head,
                    read_seq: 0,
                    unread: head,
                    members: [],
                }
                .text();
                if !joined.contains(&room) {
                    joined.push(room);
                }
                reply
            }
            ("message", Some(room)) if joined.contains(&room) => {
                let ts = now_ms();
                let msg_id = frame.id.unwrap_or_default();
                let mut rooms = hub.rooms();
                let Some(r) = rooms.get_mut(&room) else {
                    continue;
                };
                r.seq += 1;
                let seq = r.seq;
                let out = ServerFrame::Message {
                    room: &room,
                    seq,
                    id: &msg_id,
                    from: &format!("c{id}"),
                    body: frame.body.as_deref().unwrap_or_default(),
                    ts,
                };
                let out = Message::Text(Utf8Bytes::from(out.text()));
                // Fan out under the lock, so every socket sees the room's seqs in order.
                r.members.retain(|(member, tx)| {
                    *member == id
                        || match tx.try_send(out.clone()) {
                            Ok(()) => true,
                            Err(mpsc::error::TrySendError::Full(_)) => true,
                            Err(mpsc::error::TrySendError::Closed(_)) => false,
                        }
                });
                drop(rooms);
                ServerFrame::Ack {
                    id: &msg_id,
                    room: &room,
                    seq,
                    ts,
                }
                .text()
            }
            ("ping", _) => ServerFrame::Pong { ts: now_ms() }.text(),
            _ => ServerFrame::Error {
                code: "BAD_FRAME",
                message: "not a frame this server knows",
            }
            .text(),
        };
        if queue.try_send(Message::Text(reply.into())).is_err() {
            break;
        }
    }
    {
        let mut rooms = hub.rooms();
        for room in &joined {
            if let Some(r) = rooms.get_mut(room) {
                r.members.retain(|(member, _)| *member != id);
            }
        }
    }
    drop(queue);
    let _ = writer.await;
}

/// Writes `first` and every frame already queued behind it (at most `batch` in all), then
/// flushes once, as roomcast's `write_queued` does.
async fn write_batch(
    sink: &mut futures::stream::SplitSink<WebSocket, Message>,
    first: Message,
    outbound: &mut mpsc::Receiver<Message>,
    batch: usize,
) -> Result<(), axum::Error> {
    sink.feed(first).await?;
    for _ in 1..batch {
        let Ok(frame) = outbound.try_recv() else {
            break;
        };
        sink.feed(frame).await?;
    }
    sink.flush().await
}
