//! The physical floor of a delivery on this machine (issue 20): the CPU a minimal write loop
//! spends per frame delivered over loopback, with no server logic at all. One writer thread
//! holds N loopback connections and writes fixed-size frames (the size of a chat delivery) to
//! them round-robin as fast as the sockets take them; one reader thread drains them. Each
//! thread reads its own CPU time from `/proc/thread-self/stat`, the way the load generator reads
//! a server's from `/proc/<pid>/stat`, so "µs of writer CPU per frame" compares directly with a
//! server's CPU per delivery.
//!
//! Two stacks:
//! - `tcp`: bare `write` calls of the frame bytes (the least a delivery can cost: one syscall
//!   into loopback TCP, whose receive path also runs on the writing core);
//! - `ws`: tokio-tungstenite WebSocket text frames (roomcast's and raw-broadcast's framing and
//!   write path, without axum, tasks or queues): `feed` each frame, `flush` after the batch.
//!
//! and a batch size: frames written to one connection before moving to the next (`tcp`: one
//! `write` of the batch; `ws`: one flush). Batch 1 is a fan-out (each frame to another socket,
//! one syscall each); larger batches are the best case of a writer draining a socket's queue.

use std::cell::Cell;
use std::net::{Ipv4Addr, SocketAddr};
use std::rc::Rc;
use std::time::{Duration, Instant};

use anyhow::Context;
use futures::SinkExt;
use serde::Serialize;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::{Message, Utf8Bytes};

use crate::procstat::{self, Pid};

/// How frames are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum Stack {
    /// Plain TCP `write`s.
    Tcp,
    /// tokio-tungstenite WebSocket text frames.
    Ws,
}

/// One measurement.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct FloorConfig {
    /// Write path.
    pub stack: Stack,
    /// Frames written to a connection before the next one.
    pub batch: usize,
    /// Loopback connections.
    pub connections: usize,
    /// Payload bytes per frame.
    pub frame_bytes: usize,
    /// Writing time.
    pub secs: f64,
}

/// What one measurement found.
#[derive(Debug, Clone, Serialize)]
pub struct FloorResult {
    /// What was measured.
    #[serde(flatten)]
    pub config: FloorConfig,
    /// Frames written (and, by the end, read: checked).
    pub frames: u64,
    /// Frames per second over the writing time.
    pub frames_per_sec: f64,
    /// Writer thread CPU while writing, share of one core.
    pub writer_cpu: f64,
    /// Reader thread CPU while the writer wrote, share of one core.
    pub reader_cpu: f64,
    /// Writer CPU per frame, µs.
    pub writer_us_per_frame: f64,
    /// Frames one fully busy writer core would deliver per second (1 / CPU per frame).
    pub frames_per_core_sec: f64,
}

impl FloorResult {
    fn new(config: FloorConfig, frames: u64, wall: f64, writer_cpu: f64, reader_cpu: f64) -> Self {
        let per_frame = per_frame_us(writer_cpu, wall, frames);
        Self {
            config,
            frames,
            frames_per_sec: if wall > 0.0 {
                frames as f64 / wall
            } else {
                0.0
            },
            writer_cpu,
            reader_cpu,
            writer_us_per_frame: per_frame,
            frames_per_core_sec: if per_frame > 0.0 {
                1e6 / per_frame
            } else {
                0.0
            },
        }
    }
}

/// CPU µs per frame from a CPU share over `wall` seconds.
pub fn per_frame_us(cpu_share: f64, wall_secs: f64, frames: u64) -> f64 {
    if frames == 0 {
        return 0.0;
    }
    cpu_share * wall_secs * 1e6 / frames as f64
}

/// Bytes a server-to-client WebSocket frame of `payload` bytes takes on the wire (RFC 6455
/// §5.2: unmasked, 2-byte header, plus 2 or 8 bytes of extended length).
pub fn ws_wire_bytes(payload: usize) -> usize {
    match payload {
        0..=125 => 2 + payload,
        126..=65_535 => 4 + payload,
        _ => 10 + payload,
    }
}

/// The markdown table of some results.
pub fn markdown(results: &[FloorResult]) -> String {
    let mut out = String::from(
        "| stack | batch | connections | frame | frames/s | writer CPU | µs per frame | frames per core-second | reader CPU |\n\
         |---|---|---|---|---|---|---|---|---|\n",
    );
    for r in results {
        out.push_str(&format!(
            "| {} | {} | {} | {} B | {:.0} | {:.0} % | {:.2} | {:.0} | {:.0} % |\n",
            match r.config.stack {
                Stack::Tcp => "tcp",
                Stack::Ws => "ws",
            },
            r.config.batch,
            r.config.connections,
            r.config.frame_bytes,
            r.frames_per_sec,
            r.writer_cpu * 100.0,
            r.writer_us_per_frame,
            r.frames_per_core_sec,
            r.reader_cpu * 100.0,
        ));
    }
    out
}

/// Runs one measurement: a reader thread connects and drains, this thread writes.
pub fn measure(config: FloorConfig) -> anyhow::Result<FloorResult> {
    anyhow::ensure!(
        config.connections > 0 && config.batch > 0 && config.frame_bytes > 0,
        "nothing to measure"
    );
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let listener = runtime.block_on(TcpListener::bind((Ipv4Addr::LOCALHOST, 0)))?;
    let addr = listener.local_addr()?;
    // The reader reports its CPU while the writer writes: the writer tells it when it starts
    // and stops.
    let (window_tx, window_rx) = std::sync::mpsc::channel::<()>();
    let reader = std::thread::spawn(move || read_all(config, addr, &window_rx));
    let written = runtime.block_on(write_all(config, listener, &window_tx));
    drop(window_tx);
    let (bytes, reader_cpu) = reader
        .join()
        .map_err(|_| anyhow::anyhow!("the reader thread panicked"))??;
    let (frames, wall, writer_cpu) = written?;
    let wire = match config.stack {
        Stack::Tcp => config.frame_bytes,
        Stack::Ws => ws_wire_bytes(config.frame_bytes),
    } as u64;
    anyhow::ensure!(
        bytes == frames * wire,
        "the reader got {bytes} bytes for {frames} frames of {wire}"
    );
    Ok(FloorResult::new(
        config, frames, wall, writer_cpu, reader_cpu,
    ))
}

enum Conn {
    Tcp(TcpStream),
    Ws(Box<WebSocketStream<TcpStream>>),
}

/// Accepts every connection, then writes for `secs`; returns (frames, wall seconds, CPU share).
async fn write_all(
    config: FloorConfig,
    listener: TcpListener,
    window: &std::sync::mpsc::Sender<()>,
) -> anyhow::Result<(u64, f64, f64)> {
    let mut conns = Vec::with_capacity(config.connections);
    while conns.len() < config.connections {
        let (stream, _) = tokio::time::timeout(Duration::from_secs(60), listener.accept())
            .await
            .context("the reader did not connect")??;
        stream.set_nodelay(true)?;
        conns.push(match config.stack {
            Stack::Tcp => Conn::Tcp(stream),
            Stack::Ws => {
                let ws_config = WebSocketConfig::default().read_buffer_size(4096);
                Conn::Ws(Box::new(
                    tokio_tungstenite::accept_async_with_config(stream, Some(ws_config)).await?,
                ))
            }
        });
    }
    let payload = "x".repeat(config.frame_bytes);
    let batch_bytes = payload.repeat(config.batch).into_bytes();
    let text = Utf8Bytes::from(payload);
    let duration = Duration::from_secs_f64(config.secs);
    let before = procstat::sample(Pid::ThisThread).context("/proc/thread-self")?;
    let _ = window.send(());
    let started = Instant::now();
    let mut frames = 0u64;
    while started.elapsed() < duration {
        for conn in &mut conns {
            match conn {
                Conn::Tcp(stream) => stream.write_all(&batch_bytes).await?,
                Conn::Ws(ws) => {
                    for _ in 0..config.batch {
                        ws.feed(Message::Text(text.clone())).await?;
                    }
                    ws.flush().await?;
                }
            }
            frames += config.batch as u64;
        }
    }
    let wall = started.elapsed().as_secs_f64();
    let after = procstat::sample(Pid::ThisThread).context("/proc/thread-self")?;
    let _ = window.send(());
    // Dropping the sockets ends them (FIN): the reader reads to the end of each.
    drop(conns);
    Ok((frames, wall, procstat::cpu_share(&before, &after, wall)))
}

const HANDSHAKE: &[u8] = b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n\
Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n";

/// Connects every connection and counts the bytes read until each ends; returns (frame bytes
/// read, CPU share while the writer wrote).
fn read_all(
    config: FloorConfig,
    addr: SocketAddr,
    window: &std::sync::mpsc::Receiver<()>,
) -> anyhow::Result<(u64, f64)> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let local = tokio::task::LocalSet::new();
    local.block_on(&runtime, async {
        let bytes = Rc::new(Cell::new(0u64));
        let mut readers = Vec::with_capacity(config.connections);
        for _ in 0..config.connections {
            let mut stream = TcpStream::connect(addr).await?;
            if config.stack == Stack::Ws {
                stream.write_all(HANDSHAKE).await?;
                let extra = read_response_head(&mut stream).await?;
                bytes.set(bytes.get() + extra);
            }
            let bytes = bytes.clone();
            readers.push(tokio::task::spawn_local(async move {
                let mut buf = vec![0u8; 64 * 1024];
                loop {
                    match stream.read(&mut buf).await {
                        Ok(0) | Err(_) => break,
                        Ok(n) => bytes.set(bytes.get() + n as u64),
                    }
                }
            }));
        }
        // The CPU window: from the writer's start to its end, while the reads go on.
        let (mut before, mut cpu) = (None, 0.0);
        let mut started = Instant::now();
        let watch = async {
            loop {
                match window.try_recv() {
                    Ok(()) if before.is_none() => {
                        before = procstat::sample(Pid::ThisThread);
                        started = Instant::now();
                    }
                    Ok(()) => {
                        if let (Some(b), Some(a)) = (before, procstat::sample(Pid::ThisThread)) {
                            cpu = procstat::cpu_share(&b, &a, started.elapsed().as_secs_f64());
                        }
                        return;
                    }
                    Err(std::sync::mpsc::TryRecvError::Empty) => {
                        tokio::time::sleep(Duration::from_millis(5)).await;
                    }
                    Err(std::sync::mpsc::TryRecvError::Disconnected) => return,
                }
            }
        };
        watch.await;
        for reader in readers {
            reader.await?;
        }
        Ok((bytes.get(), cpu))
    })
}

/// Reads the `101` response's head; returns how many frame bytes came with it.
async fn read_response_head(stream: &mut TcpStream) -> anyhow::Result<u64> {
    let mut head = Vec::new();
    let mut buf = [0u8; 1024];
    loop {
        let n = stream.read(&mut buf).await?;
        anyhow::ensure!(n > 0, "the server closed during the handshake");
        head.extend_from_slice(&buf[..n]);
        if let Some(end) = head.windows(4).position(|w| w == b"\r\n\r\n") {
            anyhow::ensure!(
                head.starts_with(b"HTTP/1.1 101"),
                "handshake refused: {}",
                String::from_utf8_lossy(&head)
            );
            return Ok((head.len() - end - 4) as u64);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_sizes_follow_rfc_6455_length_encoding() {
        assert_eq!(ws_wire_bytes(125), 127);
        assert_eq!(ws_wire_bytes(200), 204);
        assert_eq!(ws_wire_bytes(70_000), 70_010);
    }

    #[test]
    fn cpu_per_frame_is_cpu_time_over_frames() {
        assert!((per_frame_us(0.5, 2.0, 100_000) - 10.0).abs() < 1e-9);
        assert_eq!(per_frame_us(0.5, 2.0, 0), 0.0);
    }

    /// A short real run over loopback: every frame written is read, on both stacks.
    #[test]
    fn every_frame_written_is_read() {
        for stack in [Stack::Tcp, Stack::Ws] {
            let r = measure(FloorConfig {
                stack,
                batch: 4,
                connections: 8,
                frame_bytes: 200,
                secs: 0.2,
            })
            .expect("a loopback measurement");
            assert!(
                r.frames > 0 && r.frames.is_multiple_of(4),
                "{stack:?}: {r:?}"
            );
        }
    }
}
