//! A protocol v1 test client over a real WebSocket (tokio-tungstenite).
//!
//! Well-formed traffic goes through the typed frames and codec users get
//! ([`roomcast_client::codec`]): the helpers send [`ClientFrame`]s, and every frame the server
//! sends must decode as a [`ServerFrame`](roomcast_core::protocol::ServerFrame) (a frame the
//! typed client cannot read fails the case).
//! Cases keep a raw path for what no typed client would send ([`Client::send_json`],
//! [`Client::send_text`], [`Client::send_binary`]: malformed, forged or oversized frames), and
//! read frames as JSON values, which show exactly what the server wrote.
//!
//! Every wait is bounded by [`wait_timeout`]. Frames skipped while waiting for another frame
//! are kept, in order, and handed out by later calls, so a case never loses a frame it did not
//! ask for yet.

use std::collections::VecDeque;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use anyhow::{Context, anyhow, bail};
use futures::{SinkExt, StreamExt};
use roomcast_client::codec;
use roomcast_core::protocol::ClientFrame;
use serde_json::Value;
use tokio::net::TcpStream;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::{self, Message};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use crate::deployment::Deployment;

/// The subprotocol a client offers next to its token.
pub const SUBPROTOCOL: &str = roomcast_core::service::SUBPROTOCOL;

/// The least [`wait_timeout`] this process allows, in ms ([`raise_wait_timeout`]).
static WAIT_FLOOR_MS: AtomicU64 = AtomicU64::new(0);

/// How long any single wait may take: `ROOMCAST_TEST_TIMEOUT_MS`, else 5 s, and never less
/// than [`raise_wait_timeout`] asked for. Raise it for deployments with cold starts; a case
/// never waits longer than this for one event.
pub fn wait_timeout() -> Duration {
    let configured = std::env::var("ROOMCAST_TEST_TIMEOUT_MS")
        .ok()
        .and_then(|v| v.parse().ok())
        .map_or(Duration::from_secs(5), Duration::from_millis);
    configured.max(Duration::from_millis(WAIT_FLOOR_MS.load(Ordering::Relaxed)))
}

/// Makes [`wait_timeout`] at least `floor` for the rest of the process: for a deployment whose
/// every answer takes a chain of slow calls (the Lambda stack on moto, which serves one
/// request at a time), called when it starts, before any case waits.
pub fn raise_wait_timeout(floor: Duration) {
    let ms = u64::try_from(floor.as_millis()).unwrap_or(u64::MAX);
    WAIT_FLOOR_MS.fetch_max(ms, Ordering::Relaxed);
}

/// How a client presents its token on connect.
#[derive(Debug, Clone, Copy)]
pub enum Credentials<'a> {
    /// No token at all.
    None,
    /// `?token=<jwt>` (what browsers use).
    Query(&'a str),
    /// `Sec-WebSocket-Protocol: roomcast.v1, <jwt>`.
    Subprotocol(&'a str),
}

/// Why a connection attempt failed.
#[derive(Debug)]
pub enum ConnectError {
    /// The server answered the upgrade with this HTTP status (and body).
    Refused {
        /// HTTP status.
        status: u16,
        /// Response body, lossily decoded.
        body: String,
    },
    /// Anything else: unreachable, timed out, bad handshake.
    Failed(anyhow::Error),
}

impl fmt::Display for ConnectError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Refused { status, body } => {
                write!(f, "upgrade refused with HTTP {status}: {body}")
            }
            Self::Failed(e) => write!(f, "connect failed: {e:#}"),
        }
    }
}

impl std::error::Error for ConnectError {}

/// The `type` of a server frame ("" when absent).
pub fn frame_type(frame: &Value) -> &str {
    frame.get("type").and_then(Value::as_str).unwrap_or("")
}

/// A u64 field of a frame, or an error naming the frame.
pub fn u64_field(frame: &Value, field: &str) -> anyhow::Result<u64> {
    frame
        .get(field)
        .and_then(Value::as_u64)
        .ok_or_else(|| anyhow!("frame has no integer `{field}`: {frame}"))
}

/// A string field of a frame, or an error naming the frame.
pub fn str_field<'v>(frame: &'v Value, field: &str) -> anyhow::Result<&'v str> {
    frame
        .get(field)
        .and_then(Value::as_str)
        .ok_or_else(|| anyhow!("frame has no string `{field}`: {frame}"))
}

/// What the socket produced.
enum Incoming {
    Frame(Value),
    Closed(u16, String),
}

type Socket = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// A connected protocol v1 client.
pub struct Client {
    label: String,
    ws: Socket,
    stash: VecDeque<Value>,
    protocol: Option<String>,
    closed: Option<(u16, String)>,
    timeout: Duration,
}

impl fmt::Debug for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Client")
            .field("label", &self.label)
            .finish_non_exhaustive()
    }
}

fn with_token(url: &str, token: &str) -> String {
    let sep = if url.contains('?') { '&' } else { '?' };
    format!("{url}{sep}token={token}")
}

impl Client {
    /// Connects with `credentials`; `label` names the client in failure messages.
    pub async fn try_connect(
        d: &dyn Deployment,
        credentials: Credentials<'_>,
        label: &str,
    ) -> Result<Self, ConnectError> {
        Self::try_connect_from(d, credentials, None, label).await
    }

    /// Connects with `credentials`, the upgrade carrying `Origin: origin` when given (as a
    /// browser page's does); `label` names the client in failure messages.
    pub async fn try_connect_from(
        d: &dyn Deployment,
        credentials: Credentials<'_>,
        origin: Option<&str>,
        label: &str,
    ) -> Result<Self, ConnectError> {
        let base = d.ws_url();
        let url = match credentials {
            Credentials::Query(token) => with_token(&base, token),
            Credentials::None | Credentials::Subprotocol(_) => base,
        };
        let mut request = url
            .as_str()
            .into_client_request()
            .map_err(|e| ConnectError::Failed(anyhow!("bad URL {url}: {e}")))?;
        if let Credentials::Subprotocol(token) = credentials {
            let value = HeaderValue::from_str(&format!("{SUBPROTOCOL}, {token}"))
                .map_err(|e| ConnectError::Failed(anyhow!("token is not a header value: {e}")))?;
            request
                .headers_mut()
                .insert("Sec-WebSocket-Protocol", value);
        }
        if let Some(origin) = origin {
            let value = HeaderValue::from_str(origin)
                .map_err(|e| ConnectError::Failed(anyhow!("origin is not a header value: {e}")))?;
            request.headers_mut().insert("Origin", value);
        }
        let timeout = wait_timeout();
        let connected = tokio::time::timeout(timeout, tokio_tungstenite::connect_async(request))
            .await
            .map_err(|_| {
                ConnectError::Failed(anyhow!("{label}: no upgrade response within {timeout:?}"))
            })?;
        match connected {
            Ok((ws, response)) => {
                let protocol = response
                    .headers()
                    .get("Sec-WebSocket-Protocol")
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_owned);
                Ok(Self {
                    label: label.to_owned(),
                    ws,
                    stash: VecDeque::new(),
                    protocol,
                    closed: None,
                    timeout,
                })
            }
            Err(tungstenite::Error::Http(response)) => Err(ConnectError::Refused {
                status: response.status().as_u16(),
                body: response
                    .body()
                    .as_deref()
                    .map(|b| String::from_utf8_lossy(b).into_owned())
                    .unwrap_or_default(),
            }),
            Err(e) => Err(ConnectError::Failed(anyhow!("{label}: {e}"))),
        }
    }

    /// Connects with `?token=`; fails the case when refused.
    pub async fn connect(d: &dyn Deployment, token: &str, label: &str) -> anyhow::Result<Self> {
        Self::try_connect(d, Credentials::Query(token), label)
            .await
            .map_err(|e| anyhow!("{label}: {e}"))
    }

    /// Makes every later wait of this client last up to `timeout` (default [`wait_timeout`]):
    /// for a step whose answer comes after a bounded chain of retries.
    pub fn set_timeout(&mut self, timeout: Duration) {
        self.timeout = timeout;
    }

    /// The subprotocol the server echoed, if any.
    pub fn protocol(&self) -> Option<&str> {
        self.protocol.as_deref()
    }

    /// The client's label.
    pub fn label(&self) -> &str {
        &self.label
    }

    /// Sends `frame` as the typed client encodes it, with `ref: reference` when given.
    pub async fn send_frame(
        &mut self,
        frame: &ClientFrame,
        reference: Option<&str>,
    ) -> anyhow::Result<()> {
        self.send(Message::text(codec::encode(frame, reference)))
            .await
    }

    /// Sends a JSON frame as is (the raw path: any JSON, well-formed or not).
    pub async fn send_json(&mut self, frame: &Value) -> anyhow::Result<()> {
        self.send(Message::text(frame.to_string())).await
    }

    /// Sends a text frame as is (the raw path).
    pub async fn send_text(&mut self, text: impl Into<String>) -> anyhow::Result<()> {
        self.send(Message::text(text.into())).await
    }

    /// Sends a binary frame.
    pub async fn send_binary(&mut self, data: Vec<u8>) -> anyhow::Result<()> {
        self.send(Message::binary(data)).await
    }

    async fn send(&mut self, message: Message) -> anyhow::Result<()> {
        tokio::time::timeout(self.timeout, self.ws.send(message))
            .await
            .map_err(|_| anyhow!("{}: send blocked for {:?}", self.label, self.timeout))?
            .with_context(|| format!("{}: send failed", self.label))
    }

    /// Reads the socket until `deadline`; `None` on timeout. Pings, pongs are skipped.
    async fn read_socket(&mut self, deadline: Instant) -> anyhow::Result<Option<Incoming>> {
        if let Some((code, reason)) = &self.closed {
            return Ok(Some(Incoming::Closed(*code, reason.clone())));
        }
        loop {
            let next = match tokio::time::timeout_at(deadline, self.ws.next()).await {
                Err(_) => return Ok(None),
                Ok(next) => next,
            };
            let message = match next {
                Some(Ok(m)) => m,
                Some(Err(
                    tungstenite::Error::ConnectionClosed | tungstenite::Error::AlreadyClosed,
                ))
                | None => bail!("{}: connection ended without a close frame", self.label),
                Some(Err(e)) => bail!("{}: connection failed: {e}", self.label),
            };
            match message {
                Message::Text(text) => {
                    codec::decode(text.as_str()).with_context(|| {
                        format!(
                            "{}: the typed client cannot read the server's frame {text}",
                            self.label
                        )
                    })?;
                    // Invariant: it decoded as a server frame, which is JSON.
                    let frame: Value = serde_json::from_str(text.as_str())
                        .expect("a decoded server frame is JSON");
                    return Ok(Some(Incoming::Frame(frame)));
                }
                Message::Binary(data) => {
                    bail!(
                        "{}: server sent a binary frame of {} bytes",
                        self.label,
                        data.len()
                    )
                }
                Message::Close(frame) => {
                    let (code, reason) = frame.map_or((1005, String::new()), |f| {
                        (u16::from(f.code), f.reason.as_str().to_owned())
                    });
                    self.closed = Some((code, reason.clone()));
                    return Ok(Some(Incoming::Closed(code, reason)));
                }
                Message::Ping(_) | Message::Pong(_) | Message::Frame(_) => {}
            }
        }
    }

    /// The next frame (stashed ones first) before `deadline`; `None` on timeout; an error when
    /// the connection closed.
    async fn next_before(&mut self, deadline: Instant) -> anyhow::Result<Option<Value>> {
        if let Some(frame) = self.stash.pop_front() {
            return Ok(Some(frame));
        }
        match self.read_socket(deadline).await? {
            None => Ok(None),
            Some(Incoming::Frame(f)) => Ok(Some(f)),
            Some(Incoming::Closed(code, reason)) => {
                bail!(
                    "{}: connection closed by the server with {code} `{reason}`",
                    self.label
                )
            }
        }
    }

    /// The next frame (stashed ones first) if one comes before `deadline`; an error when the
    /// connection closed.
    pub async fn recv_before(&mut self, deadline: Instant) -> anyhow::Result<Option<Value>> {
        self.next_before(deadline).await
    }

    /// The next frame, waiting at most [`wait_timeout`].
    pub async fn recv(&mut self) -> anyhow::Result<Value> {
        let deadline = Instant::now() + self.timeout;
        self.next_before(deadline)
            .await?
            .ok_or_else(|| anyhow!("{}: no frame within {:?}", self.label, self.timeout))
    }

    /// The first frame matching `pred` (described by `what`). Frames before it are kept for
    /// later calls, except that an unexpected `error` frame fails at once.
    pub async fn expect(
        &mut self,
        what: &str,
        pred: impl Fn(&Value) -> bool,
    ) -> anyhow::Result<Value> {
        let deadline = Instant::now() + self.timeout;
        let mut skipped = Vec::new();
        // Stashed frames first, without reordering those that do not match.
        let mut index = 0;
        while index < self.stash.len() {
            if pred(&self.stash[index]) {
                return Ok(self.stash.remove(index).unwrap_or_default());
            }
            index += 1;
        }
        loop {
            let incoming = self.read_socket(deadline).await?;
            match incoming {
                Some(Incoming::Frame(frame)) if pred(&frame) => {
                    self.stash.extend(skipped);
                    return Ok(frame);
                }
                Some(Incoming::Frame(frame)) if frame_type(&frame) == "error" => {
                    bail!("{}: got {frame} while waiting for {what}", self.label)
                }
                Some(Incoming::Frame(frame)) => skipped.push(frame),
                Some(Incoming::Closed(code, reason)) => bail!(
                    "{}: closed with {code} `{reason}` while waiting for {what}; frames before: {}",
                    self.label,
                    show(&skipped)
                ),
                None => bail!(
                    "{}: no {what} within {:?}; got instead: {}",
                    self.label,
                    self.timeout,
                    show(self.stash.iter().chain(&skipped))
                ),
            }
        }
    }

    /// The first frame of type `ty`; see [`Client::expect`].
    pub async fn expect_type(&mut self, ty: &str) -> anyhow::Result<Value> {
        self.expect(&format!("a `{ty}` frame"), |f| frame_type(f) == ty)
            .await
    }

    /// The first `error` frame; it must carry `code`.
    pub async fn expect_error(&mut self, code: &str) -> anyhow::Result<Value> {
        let frame = self
            .expect(&format!("error {code}"), |f| frame_type(f) == "error")
            .await?;
        anyhow::ensure!(
            frame["code"] == code,
            "{}: expected error {code}, got {frame}",
            self.label
        );
        Ok(frame)
    }

    /// Consumes frames (stashed ones first) up to and including the first matching `pred`;
    /// returns the frames before it and the match. Nothing is kept back: use it to check order.
    pub async fn take_until(
        &mut self,
        what: &str,
        pred: impl Fn(&Value) -> bool,
    ) -> anyhow::Result<(Vec<Value>, Value)> {
        let deadline = Instant::now() + self.timeout;
        let mut before = Vec::new();
        loop {
            match self.next_before(deadline).await {
                Ok(Some(frame)) if pred(&frame) => return Ok((before, frame)),
                Ok(Some(frame)) => before.push(frame),
                Ok(None) => bail!(
                    "{}: no {what} within {:?}; got instead: {}",
                    self.label,
                    self.timeout,
                    show(&before)
                ),
                Err(e) => {
                    return Err(e.context(format!(
                        "waiting for {what}; frames before: {}",
                        show(&before)
                    )));
                }
            }
        }
    }

    /// Waits for the server's close frame, skipping other frames; returns (code, reason).
    pub async fn expect_close(&mut self) -> anyhow::Result<(u16, String)> {
        let (_, code, reason) = self.expect_close_within(self.timeout).await?;
        Ok((code, reason))
    }

    /// Waits at most `limit` for the server's close frame; returns the frames before it (stashed
    /// ones included) and (code, reason).
    pub async fn expect_close_within(
        &mut self,
        limit: Duration,
    ) -> anyhow::Result<(Vec<Value>, u16, String)> {
        match self.close_within(limit).await? {
            Some(closed) => Ok(closed),
            None => bail!(
                "{}: not closed within {limit:?}; frames: {}",
                self.label,
                show(&self.stash)
            ),
        }
    }

    /// Like [`Client::expect_close_within`], but `None` when the connection is still open after
    /// `limit` (the frames read meanwhile are kept).
    pub async fn close_within(
        &mut self,
        limit: Duration,
    ) -> anyhow::Result<Option<(Vec<Value>, u16, String)>> {
        let deadline = Instant::now() + limit;
        loop {
            match self.read_socket(deadline).await? {
                Some(Incoming::Frame(f)) => self.stash.push_back(f),
                Some(Incoming::Closed(code, reason)) => {
                    let frames = self.stash.drain(..).collect();
                    return Ok(Some((frames, code, reason)));
                }
                None => return Ok(None),
            }
        }
    }

    /// Asserts that no frame matching `pred` arrives within `window` (nor is stashed). Other
    /// frames are kept. Only for asserting absence where the protocol offers no causal fence.
    pub async fn assert_none(
        &mut self,
        what: &str,
        window: Duration,
        pred: impl Fn(&Value) -> bool,
    ) -> anyhow::Result<()> {
        if let Some(f) = self.stash.iter().find(|f| pred(f)) {
            bail!("{}: unexpected {what}: {f}", self.label);
        }
        let deadline = Instant::now() + window;
        loop {
            match self.read_socket(deadline).await? {
                None => return Ok(()),
                Some(Incoming::Frame(f)) if pred(&f) => {
                    bail!("{}: unexpected {what}: {f}", self.label)
                }
                Some(Incoming::Frame(f)) => self.stash.push_back(f),
                Some(Incoming::Closed(code, reason)) => {
                    bail!(
                        "{}: closed with {code} `{reason}` (expected to stay open)",
                        self.label
                    )
                }
            }
        }
    }

    /// Asserts that no frame at all arrives within `window` and the connection stays open.
    pub async fn assert_silent(&mut self, window: Duration) -> anyhow::Result<()> {
        self.assert_none("frame", window, |_| true).await
    }

    /// Closes the connection with 1000 and waits (bounded) for the server's side of the close
    /// handshake. The server may still be processing the disconnect when this returns.
    pub async fn close(mut self) -> anyhow::Result<()> {
        let frame = CloseFrame {
            code: CloseCode::Normal,
            reason: "".into(),
        };
        let deadline = Instant::now() + self.timeout;
        // A server that already closed makes this fail; that is fine.
        let _ = tokio::time::timeout_at(deadline, self.ws.close(Some(frame))).await;
        loop {
            match tokio::time::timeout_at(deadline, self.ws.next()).await {
                Err(_) => bail!(
                    "{}: server did not complete the close handshake",
                    self.label
                ),
                Ok(None | Some(Err(_))) => return Ok(()),
                Ok(Some(Ok(_))) => {}
            }
        }
    }

    /// Drops the connection with a TCP reset (`SO_LINGER` 0): no close frame and no orderly
    /// FIN, as when a client's process or network dies. (Dropping a `Client` sends a FIN.)
    pub fn reset(self) -> anyhow::Result<()> {
        if let MaybeTlsStream::Plain(stream) = self.ws.get_ref() {
            stream
                .set_zero_linger()
                .with_context(|| format!("{}: setting SO_LINGER 0", self.label))?;
        }
        Ok(())
    }

    // ---- protocol helpers -------------------------------------------------------------

    /// `join {room}` and its `joined` reply.
    pub async fn join(&mut self, room: &str) -> anyhow::Result<Value> {
        let join = ClientFrame::Join {
            room: room.to_owned(),
            since: None,
        };
        self.send_frame(&join, None).await?;
        self.expect(&format!("`joined` for {room}"), |f| {
            frame_type(f) == "joined" && f["room"] == room
        })
        .await
    }

    /// `join {room, since}`: returns `joined`, the frames replayed before `replayed` (in the
    /// order received), and `replayed`.
    pub async fn join_since(
        &mut self,
        room: &str,
        since: u64,
    ) -> anyhow::Result<(Value, Vec<Value>, Value)> {
        let join = ClientFrame::Join {
            room: room.to_owned(),
            since: Some(since),
        };
        self.send_frame(&join, None).await?;
        let joined = self
            .expect(&format!("`joined` for {room}"), |f| {
                frame_type(f) == "joined" && f["room"] == room
            })
            .await?;
        let (before, replayed) = self
            .take_until(&format!("`replayed` for {room}"), |f| {
                frame_type(f) == "replayed" && f["room"] == room
            })
            .await?;
        // Presence frames of other users may interleave; replayed messages are what counts.
        let messages = before
            .into_iter()
            .filter(|f| frame_type(f) == "message" && f["room"] == room)
            .collect();
        Ok((joined, messages, replayed))
    }

    /// Sends `message {room, id, body}` and returns its `ack`.
    pub async fn message(&mut self, room: &str, id: &str, body: &str) -> anyhow::Result<Value> {
        let message = ClientFrame::Message {
            room: room.to_owned(),
            id: id.to_owned(),
            body: body.to_owned(),
            meta: None,
            attachments: Vec::new(),
            reply_to: None,
        };
        self.send_frame(&message, None).await?;
        self.expect_ack(id).await
    }

    /// The `ack` for client id `id`.
    pub async fn expect_ack(&mut self, id: &str) -> anyhow::Result<Value> {
        self.expect(&format!("`ack` for {id}"), |f| {
            frame_type(f) == "ack" && f["id"] == id
        })
        .await
    }

    /// The next delivered `message` frame in `room` (others kept for later).
    pub async fn expect_message(&mut self, room: &str) -> anyhow::Result<Value> {
        self.expect(&format!("a `message` in {room}"), |f| {
            frame_type(f) == "message" && f["room"] == room
        })
        .await
    }

    /// `ping` → `pong`: proves the connection is alive and that the server has processed every
    /// frame this client sent before.
    pub async fn ping(&mut self) -> anyhow::Result<Value> {
        self.send_frame(&ClientFrame::Ping, None).await?;
        self.expect_type("pong").await
    }

    /// `ping`, then every frame received before its `pong` (consumed, in order). On a server
    /// that handles a connection's frames in order, that is everything sent to this connection
    /// before the ping was handled.
    pub async fn sync(&mut self) -> anyhow::Result<Vec<Value>> {
        self.send_frame(&ClientFrame::Ping, None).await?;
        let (before, _) = self
            .take_until("`pong`", |f| frame_type(f) == "pong")
            .await?;
        Ok(before)
    }

    /// `history {room, ...params}` → `history` frame; `params` holds any of `before`, `after`
    /// and `limit`.
    pub async fn history(&mut self, room: &str, params: Value) -> anyhow::Result<Value> {
        let page = history_frame(room, &params)?;
        self.send_frame(&page, None).await?;
        self.expect(&format!("`history` for {room}"), |f| {
            frame_type(f) == "history" && f["room"] == room
        })
        .await
    }
}

/// `history {room, ...params}` as a typed frame.
fn history_frame(room: &str, params: &Value) -> anyhow::Result<ClientFrame> {
    let fields = params
        .as_object()
        .ok_or_else(|| anyhow!("history's params are an object: {params}"))?;
    let bound = |name: &str| -> anyhow::Result<Option<u64>> {
        fields
            .get(name)
            .map(|v| {
                v.as_u64()
                    .ok_or_else(|| anyhow!("history's `{name}` is a seq: {params}"))
            })
            .transpose()
    };
    if let Some(unknown) = fields
        .keys()
        .find(|k| !matches!(k.as_str(), "before" | "after" | "limit"))
    {
        bail!("history has no `{unknown}` (send odd frames with send_json): {params}");
    }
    let limit = bound("limit")?
        .map(u32::try_from)
        .transpose()
        .with_context(|| format!("history's `limit` is a page size: {params}"))?;
    Ok(ClientFrame::History {
        room: room.to_owned(),
        before: bound("before")?,
        after: bound("after")?,
        limit,
    })
}

/// Frames for a failure message, shortened.
fn show<'a>(frames: impl IntoIterator<Item = &'a Value>) -> String {
    let all: Vec<String> = frames.into_iter().map(Value::to_string).collect();
    if all.is_empty() {
        return "nothing".into();
    }
    let mut text = all.join(", ");
    if text.len() > 2000 {
        let mut end = 2000;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
        text.push_str(" …");
    }
    text
}
