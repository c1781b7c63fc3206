//! Clients that write raw bytes, for what a well-behaved client library will not send: TCP
//! connections from a chosen loopback address that never send a request, or send an endless
//! one; WebSocket frames that break the protocol; pings by the thousand with nobody reading the
//! pongs. The server's frames are read back as they are, its close frame included.
#![allow(dead_code, reason = "each test file uses its own part")]

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use anyhow::{Context, bail, ensure};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

/// The WebSocket opcodes these tests send or read.
pub mod opcode {
    /// Continuation frame.
    pub const CONTINUATION: u8 = 0x0;
    /// Text frame.
    pub const TEXT: u8 = 0x1;
    /// Close frame.
    pub const CLOSE: u8 = 0x8;
    /// Ping frame.
    pub const PING: u8 = 0x9;
    /// Pong frame.
    pub const PONG: u8 = 0xA;
}

/// Opens a TCP connection to the server on `port` from the loopback address `source` (all of
/// 127.0.0.0/8 is this host, so each is a separate client address to the server).
pub async fn connect_from(source: Ipv4Addr, port: u16) -> anyhow::Result<TcpStream> {
    let socket = TcpSocket::new_v4()?;
    socket.bind(SocketAddr::new(IpAddr::V4(source), 0))?;
    let stream = socket
        .connect(SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), port))
        .await
        .with_context(|| format!("connecting from {source}"))?;
    Ok(stream)
}

/// `GET /health` from `source`: the response's status, or an error when the connection is
/// closed (or `within` passes) before one arrives.
pub async fn health_from(source: Ipv4Addr, port: u16, within: Duration) -> anyhow::Result<u16> {
    let exchange = async {
        let mut stream = connect_from(source, port).await?;
        stream
            .write_all(b"GET /health HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
            .await?;
        let mut response = Vec::new();
        stream.read_to_end(&mut response).await?;
        let status = std::str::from_utf8(response.get(9..12).unwrap_or_default())
            .ok()
            .and_then(|s| s.parse().ok());
        status.with_context(|| {
            format!(
                "no HTTP response from {source}: {:?}",
                String::from_utf8_lossy(&response)
            )
        })
    };
    tokio::time::timeout(within, exchange)
        .await
        .with_context(|| format!("GET /health from {source}: no answer within {within:?}"))?
}

/// What a socket that sent nothing (or an unfinished request) sees within `within`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fate {
    /// Still open.
    Open,
    /// The server closed it (an orderly close or a reset) after sending these many bytes.
    Closed(usize),
}

/// Reads from `stream` until the server closes it or `within` passes; what it sent is dropped.
pub async fn fate(stream: &mut TcpStream, within: Duration) -> Fate {
    let deadline = tokio::time::Instant::now() + within;
    let mut received = 0;
    let mut buf = [0u8; 4096];
    loop {
        match tokio::time::timeout_at(deadline, stream.read(&mut buf)).await {
            Err(_) => return Fate::Open,
            Ok(Ok(0) | Err(_)) => return Fate::Closed(received),
            Ok(Ok(n)) => received += n,
        }
    }
}

/// A client frame: FIN set unless `fin` is false, the given opcode and payload, masked with a
/// fixed key unless `masked` is false (clients must mask: RFC 6455 §5.3).
pub fn frame(fin: bool, opcode: u8, payload: &[u8], masked: bool) -> Vec<u8> {
    const KEY: [u8; 4] = [0x37, 0xfa, 0x21, 0x3d];
    let mut out = Vec::with_capacity(payload.len() + 14);
    out.push(if fin { 0x80 } else { 0 } | (opcode & 0x0f));
    let mask_bit = if masked { 0x80 } else { 0 };
    match payload.len() {
        n @ 0..=125 => out.push(mask_bit | u8::try_from(n).unwrap_or(125)),
        n @ 126..=0xffff => {
            out.push(mask_bit | 126);
            out.extend_from_slice(&u16::try_from(n).unwrap_or(u16::MAX).to_be_bytes());
        }
        n => {
            out.push(mask_bit | 127);
            out.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    if masked {
        out.extend_from_slice(&KEY);
        out.extend(payload.iter().enumerate().map(|(i, b)| b ^ KEY[i % 4]));
    } else {
        out.extend_from_slice(payload);
    }
    out
}

/// A frame the server sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerFrame {
    /// Its opcode.
    pub opcode: u8,
    /// Its payload.
    pub payload: Vec<u8>,
}

impl ServerFrame {
    /// A close frame's code (`None` for another frame, or a close without a code).
    pub fn close_code(&self) -> Option<u16> {
        (self.opcode == opcode::CLOSE && self.payload.len() >= 2)
            .then(|| u16::from_be_bytes([self.payload[0], self.payload[1]]))
    }
}

/// A WebSocket connection driven byte by byte.
pub struct RawSocket {
    stream: TcpStream,
    /// Bytes read and not yet parsed into frames.
    buffered: Vec<u8>,
}

impl RawSocket {
    /// Upgrades a connection from `source` to the server on `port` with `token`.
    pub async fn connect(source: Ipv4Addr, port: u16, token: &str) -> anyhow::Result<Self> {
        let mut stream = connect_from(source, port).await?;
        let request = format!(
            "GET /?token={token} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n\
             Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
             Sec-WebSocket-Version: 13\r\n\r\n"
        );
        stream.write_all(request.as_bytes()).await?;
        let mut head = Vec::new();
        let mut buf = [0u8; 1024];
        let end = loop {
            let n = tokio::time::timeout(Duration::from_secs(10), stream.read(&mut buf))
                .await
                .context("no upgrade response")??;
            ensure!(n > 0, "closed during the upgrade: {head:?}");
            head.extend_from_slice(&buf[..n]);
            if let Some(at) = head.windows(4).position(|w| w == b"\r\n\r\n") {
                break at + 4;
            }
        };
        let status = String::from_utf8_lossy(&head[..end]);
        ensure!(
            status.starts_with("HTTP/1.1 101"),
            "upgrade refused: {status}"
        );
        Ok(Self {
            stream,
            buffered: head[end..].to_vec(),
        })
    }

    /// Writes `bytes` as they are.
    pub async fn send(&mut self, bytes: &[u8]) -> anyhow::Result<()> {
        self.stream.write_all(bytes).await?;
        Ok(())
    }

    /// Writes `bytes` unless that takes longer than `within` (the server stopped reading):
    /// whether it was written.
    pub async fn send_within(&mut self, bytes: &[u8], within: Duration) -> anyhow::Result<bool> {
        match tokio::time::timeout(within, self.stream.write_all(bytes)).await {
            Err(_) => Ok(false),
            Ok(written) => written.map(|()| true).map_err(Into::into),
        }
    }

    /// The next frame the server sent, `None` when the connection ended (or `deadline` passed)
    /// first.
    pub async fn next_frame(&mut self, deadline: Instant) -> anyhow::Result<Option<ServerFrame>> {
        loop {
            if let Some(frame) = self.parse()? {
                return Ok(Some(frame));
            }
            let mut buf = [0u8; 16 * 1024];
            let read = tokio::time::timeout_at(deadline.into(), self.stream.read(&mut buf)).await;
            match read {
                Err(_) | Ok(Ok(0) | Err(_)) => return Ok(None),
                Ok(Ok(n)) => self.buffered.extend_from_slice(&buf[..n]),
            }
        }
    }

    /// Reads frames until the server's close frame: its code, and the frames before it.
    /// Fails when the connection ends (or `within` passes) without one.
    pub async fn expect_close(
        &mut self,
        within: Duration,
    ) -> anyhow::Result<(u16, Vec<ServerFrame>)> {
        let deadline = Instant::now() + within;
        let mut before = Vec::new();
        loop {
            match self.next_frame(deadline).await? {
                Some(frame) if frame.opcode == opcode::CLOSE => {
                    let code = frame.close_code().context("a close frame without a code")?;
                    return Ok((code, before));
                }
                Some(frame) => before.push(frame),
                None => bail!(
                    "the connection ended without a close frame (after {} frames)",
                    before.len()
                ),
            }
        }
    }

    /// One whole frame from the bytes read so far.
    fn parse(&mut self) -> anyhow::Result<Option<ServerFrame>> {
        let b = &self.buffered;
        if b.len() < 2 {
            return Ok(None);
        }
        ensure!(b[1] & 0x80 == 0, "the server masked a frame");
        let (len, at) = match b[1] & 0x7f {
            126 if b.len() >= 4 => (usize::from(u16::from_be_bytes([b[2], b[3]])), 4),
            127 if b.len() >= 10 => {
                let mut n = [0u8; 8];
                n.copy_from_slice(&b[2..10]);
                (usize::try_from(u64::from_be_bytes(n))?, 10)
            }
            126 | 127 => return Ok(None),
            n => (usize::from(n), 2),
        };
        if b.len() < at + len {
            return Ok(None);
        }
        let frame = ServerFrame {
            opcode: b[0] & 0x0f,
            payload: b[at..at + len].to_vec(),
        };
        self.buffered.drain(..at + len);
        Ok(Some(frame))
    }
}
