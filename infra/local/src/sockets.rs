//! The WebSocket side of the emulator: the upgrade (`$connect` before the socket is accepted),
//! then one task per socket. Its reader routes each text frame to the service and drives the
//! connection's deadlines from the core's [`ConnectionClock`] with one tokio timer; its writer
//! drains the connection's bounded outbound queue into the socket.
//!
//! Whatever a client sends, a connection's memory stays bounded: frames and messages by their
//! size limits (1009), frames queued for it by the gateway's bounds (4009), and tungstenite's
//! write buffer by [`MAX_WRITE_BUFFER_BYTES`]. Control frames are rate limited like data frames
//! (4008), but are not activity: only data frames keep a connection from its idle timeout, as on
//! API Gateway. A frame that breaks the protocol gets its close code (1007 for a text frame that
//! is not UTF-8, 1002 for any other violation) before the socket ends.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::ws::{
    CloseFrame, Message, Utf8Bytes, WebSocket, WebSocketUpgrade,
    rejection::WebSocketUpgradeRejection,
};
use axum::extract::{ConnectInfo, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use base64::Engine;
use futures::{FutureExt, SinkExt, StreamExt};
use roomcast_apigw::emulated::Socket;
use roomcast_core::lifecycle::{ConnectionClock, LifecyclePolicy, Timeout};
use roomcast_core::limits::{MAX_FRAME_BYTES, MAX_SERVER_FRAME_BYTES, MAX_WS_MESSAGE_BYTES};
use roomcast_core::protocol::{ErrorCode, close};
use roomcast_core::ratelimit::{RateDecision, RatePolicy, RateState};
use roomcast_core::store::Connection;
use tungstenite::error::ProtocolError;

use crate::app::{App, IpSlot, now_ms};
use crate::client_ip::client_ip;
use crate::gateway::{ConnHandle, Outbound};
use crate::metrics::Metrics;

/// How long a socket stays open once its close handshake is as complete as it will get: after
/// our close frame when its input can no longer be read, or after the client's close frame while
/// the echo goes out.
const LINGER: Duration = Duration::from_millis(250);
/// How long a closing socket may spend sending the frames queued before its close frame.
const CLOSE_DRAIN: Duration = Duration::from_secs(1);
/// Bytes read from a socket at a time (and zero-filled before each read by tungstenite). Every
/// connection holds this much for its lifetime, so it is sized for chat frames (a few hundred
/// bytes): 2 KiB instead of 4 KiB took 2 KB off every idle connection (docs/benchmarks.md);
/// a larger frame grows the buffer as it arrives.
const READ_BUFFER_BYTES: usize = 2048;
/// Most queued frames written to a socket before one flush: enough to make a burst one
/// syscall, few enough that one connection's backlog does not hold its writer for long.
const WRITE_BATCH_FRAMES: usize = 64;
/// Bytes tungstenite buffers before writing them to the socket (its default, made explicit
/// because [`MAX_WRITE_BUFFER_BYTES`] is reckoned from it). A flush writes everything anyway.
const WRITE_BUFFER_BYTES: usize = 128 * 1024;
/// Most bytes tungstenite may hold for a socket whose peer is not reading. Without a bound it
/// grows without limit: tungstenite answers every ping by moving a pong into this buffer, and a
/// client that pings without reading its pongs took the server past a gigabyte in seconds
/// (issue 15). At the bound the pending pong waits in tungstenite's one-frame slot, where each
/// newer pong replaces it, so at most one unsent pong is kept. The writer never needs more
/// than one buffer's worth and its largest frame: it waits for the socket whenever a write
/// would block, so only a peer that stops reading reaches the bound (and its next data frame
/// fails the writer: the socket ends, as a slow consumer's would).
const MAX_WRITE_BUFFER_BYTES: usize = WRITE_BUFFER_BYTES + MAX_SERVER_FRAME_BYTES + 4 * 1024;
/// RFC 6455 §7.4.1: a frame broke the protocol (reserved bits, an unmasked frame, a fragmented
/// or oversized control frame, an unknown opcode, a continuation with nothing to continue, …).
const PROTOCOL_ERROR: u16 = 1002;
/// RFC 6455 §7.4.1: a text frame (or close reason) that is not UTF-8.
const INVALID_PAYLOAD: u16 = 1007;

const INFO_PAGE: &str = "<!doctype html><title>roomcast</title><h1>roomcast local server</h1>\
<p>Connect a WebSocket to this URL with <code>?token=&lt;JWT&gt;</code> (mint one with \
<code>roomcast-local token --user alice --rooms lobby</code>). See docs/protocol.md.</p>\
<p>Widget demo: <a href=\"/demo\">/demo</a>, agent console: <a href=\"/console\">/console</a> \
(with <code>--dev-tokens</code>; see docs/widget.md).</p>";

fn new_connection_id() -> String {
    use rand::RngCore;
    // API Gateway ids are 16 base64 characters ending in `=`, and may hold `+` and `/`, so
    // clients must URL-encode them; ours do too.
    let mut bytes = [0u8; 11];
    rand::rng().fill_bytes(&mut bytes);
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// `GET /`: a WebSocket upgrade runs `$connect` before it is answered; anything else gets a
/// short info page.
pub(crate) async fn upgrade(
    State(app): State<Arc<App>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Query(query): Query<HashMap<String, String>>,
    upgrade: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Response {
    let Ok(upgrade) = upgrade else {
        return Html(INFO_PAGE).into_response();
    };
    let client = client_ip(peer.ip(), &headers, &app.config.trusted_proxies);
    // Before the token is looked at: one host cannot take every socket, valid tokens or not.
    let slot = match app.take_ip_slot(client) {
        Ok(slot) => slot,
        Err(held) => {
            app.metrics.connect_refused(429);
            return (
                StatusCode::TOO_MANY_REQUESTS,
                format!("address has {held} connections already"),
            )
                .into_response();
        }
    };
    let now = now_ms();
    let header_map: HashMap<String, String> = headers
        .iter()
        .filter_map(|(k, v)| Some((k.as_str().to_owned(), v.to_str().ok()?.to_owned())))
        .collect();
    let socket = Socket {
        id: new_connection_id(),
        connected_at_ms: now,
        domain: header_map.get("host").cloned().unwrap_or_default(),
        stage: app.config.stage.clone(),
        source_ip: client.to_string(),
        user_agent: header_map.get("user-agent").cloned(),
    };
    let connected = match Box::pin(app.connect(&socket, header_map, query, now)).await {
        Ok(connected) => connected,
        Err(refusal) => {
            app.metrics.connect_refused(refusal.status);
            let status = StatusCode::from_u16(refusal.status).unwrap_or(StatusCode::FORBIDDEN);
            return (status, refusal.reason).into_response();
        }
    };
    let mut upgrade = upgrade
        .max_frame_size(MAX_FRAME_BYTES)
        .max_message_size(MAX_WS_MESSAGE_BYTES)
        // tungstenite zero-fills `read_buffer_size` bytes before every socket read (128 KiB by
        // default): that was the top of the server's profile under load and, once touched, 128
        // KiB of RSS per connection (docs/benchmarks.md). Frames are small; larger ones still
        // grow the buffer as needed.
        .read_buffer_size(READ_BUFFER_BYTES)
        .write_buffer_size(WRITE_BUFFER_BYTES)
        .max_write_buffer_size(MAX_WRITE_BUFFER_BYTES);
    if let Some(protocol) = connected.subprotocol {
        upgrade = upgrade.protocols([protocol]);
    }
    let clock = clock_for(&socket, connected.connection.as_ref());
    let failed = (app.clone(), socket.clone());
    upgrade
        .on_failed_upgrade(move |e| {
            tracing::debug!(error = %e, "upgrade failed after $connect");
            let (app, socket) = failed;
            tokio::spawn(async move { app.disconnect(&socket, None, now_ms()).await });
        })
        .on_upgrade(move |ws| run(app, ws, socket, clock, slot))
}

/// The connection's deadlines. Behind Lambda functions the emulator, like API Gateway, knows no
/// token: only idleness and age close the socket, and the functions refuse expired tokens.
fn clock_for(socket: &Socket, connection: Option<&Connection>) -> ConnectionClock {
    connection.map_or(
        ConnectionClock {
            connected_at_ms: socket.connected_at_ms,
            token_expires_at_ms: u64::MAX,
            active_ms: socket.connected_at_ms,
            closing: None,
        },
        ConnectionClock::new,
    )
}

/// What the read loop does next.
enum Step {
    Continue,
    /// Ask the writer to close with this code and reason.
    Close(u16, &'static str),
    /// A close was asked for elsewhere (the service, the gateway, `@connections`).
    Closing,
    WriterDone,
    /// The client's close frame arrived, with this code.
    ClientClosed(Option<u16>),
    End(ReadEnd),
}

/// Why the read side of a socket stopped.
#[derive(Clone, Copy)]
enum ReadEnd {
    /// The client closed or the connection dropped.
    Client(Option<u16>),
    /// The server closed it (the writer sent the close frame, or the grace ran out).
    Server,
}

async fn run(app: Arc<App>, ws: WebSocket, socket: Socket, clock: ConnectionClock, slot: IpSlot) {
    let handle = ConnHandle::new(
        socket.connected_at_ms,
        socket.source_ip.clone(),
        socket.user_agent.clone().unwrap_or_default(),
    );
    app.gateway.register(&socket.id, handle.clone());
    app.metrics.connection_opened();
    let (sink, stream) = ws.split();
    let writer = tokio::spawn(write_loop(sink, handle.clone(), app.metrics.clone()));
    let end = read_loop(&app, stream, &socket, &handle, writer, clock).await;
    app.gateway.unregister(&socket.id);
    let code = match end {
        ReadEnd::Client(code) => code,
        ReadEnd::Server => None,
    };
    Box::pin(app.disconnect(&socket, code, now_ms())).await;
    drop(slot);
}

async fn write_loop(
    mut sink: futures::stream::SplitSink<WebSocket, Message>,
    handle: Arc<ConnHandle>,
    metrics: Arc<Metrics>,
) {
    loop {
        tokio::select! {
            biased;
            (code, reason) = handle.close_requested() => {
                metrics.closed(code);
                // Frames queued before the close (the error explaining it, say) go out first,
                // within CLOSE_DRAIN: a slow consumer's backlog must not delay its close.
                let _ = tokio::time::timeout(CLOSE_DRAIN, async {
                    while write_queued(&mut sink, &handle).await.is_ok_and(|n| n > 0) {}
                })
                .await;
                let frame = CloseFrame { code, reason: reason.into() };
                let _ = sink.send(Message::Close(Some(frame))).await;
                break;
            }
            () = handle.frames_queued() => {
                if write_queued(&mut sink, &handle).await.is_err() {
                    break;
                }
            }
        }
    }
    handle.writer_stopped();
}

fn message(frame: Outbound) -> Message {
    match frame {
        Outbound::Text(t) => Message::Text(t),
        Outbound::Binary(b) => Message::Binary(b.into()),
    }
}

/// Writes the frames queued for the socket (at most [`WRITE_BATCH_FRAMES`]), then flushes once:
/// a burst for one connection costs one `write` syscall instead of one per frame. Returns how
/// many it wrote.
async fn write_queued(
    sink: &mut futures::stream::SplitSink<WebSocket, Message>,
    handle: &ConnHandle,
) -> Result<usize, axum::Error> {
    let mut written = 0;
    while written < WRITE_BATCH_FRAMES {
        let Some(frame) = handle.take_frame() else {
            break;
        };
        sink.feed(message(frame)).await?;
        written += 1;
    }
    if written > 0 {
        sink.flush().await?;
    }
    Ok(written)
}

/// What a failed read means. After any of them nothing more can be read: tokio-tungstenite
/// ends the stream at its first error, and after a size error the decoder is mid-frame.
enum ReadFailure {
    /// A frame or message over the size limits: close 1009.
    TooBig,
    /// A text frame (or close reason) that is not UTF-8: close 1007.
    InvalidUtf8,
    /// Any other protocol violation: close 1002.
    ProtocolViolation,
    /// The connection is gone (reset, closed without a close frame): nothing to send.
    Gone,
}

impl ReadFailure {
    /// Finds tungstenite's error under axum's.
    fn of(error: &axum::Error) -> Self {
        use std::error::Error;
        let mut source: Option<&(dyn Error + 'static)> = error.source();
        while let Some(e) = source {
            if let Some(e) = e.downcast_ref::<tungstenite::Error>() {
                return match e {
                    tungstenite::Error::Capacity(_) => Self::TooBig,
                    tungstenite::Error::Utf8(_) => Self::InvalidUtf8,
                    // The peer went away mid-conversation: there is no one to tell.
                    tungstenite::Error::Protocol(ProtocolError::ResetWithoutClosingHandshake) => {
                        Self::Gone
                    }
                    tungstenite::Error::Protocol(_) => Self::ProtocolViolation,
                    _ => Self::Gone,
                };
            }
            source = e.source();
        }
        Self::Gone
    }

    /// The close to send, unless the connection is gone.
    fn close(&self) -> Option<(u16, &'static str)> {
        match self {
            Self::TooBig => Some((close::TOO_BIG, "frame or message too large")),
            Self::InvalidUtf8 => Some((INVALID_PAYLOAD, "text frame is not valid UTF-8")),
            Self::ProtocolViolation => Some((PROTOCOL_ERROR, "WebSocket protocol violation")),
            Self::Gone => None,
        }
    }
}

/// The tokio instant of an epoch-milliseconds deadline.
fn instant_of(deadline_ms: u64) -> tokio::time::Instant {
    let wait = Duration::from_millis(deadline_ms.saturating_sub(now_ms()));
    // Far deadlines (a token valid for years, `u64::MAX` behind Lambda) are capped: the timer
    // re-arms from the clock whenever it fires.
    tokio::time::Instant::now() + wait.min(Duration::from_secs(86_400))
}

/// What a socket's stream gives: a message, a read error, or (`None`) its end.
type StreamItem = Option<Result<Message, axum::Error>>;

/// Most text frames handled together ([`gather_texts`]): a run of messages shares a commit,
/// and the run is short enough that its first ack does not wait long for its last.
const MAX_FRAMES_TOGETHER: usize = 64;

/// `first` and the text frames already read after it (none is waited for), up to
/// [`MAX_FRAMES_TOGETHER`]: a client sending without waiting for acks has its frames handled
/// together ([`App::frames`]). Returns them and whatever else the stream gave after them (a
/// control frame, an error, its end), to be handled next.
fn gather_texts(
    first: Utf8Bytes,
    stream: &mut futures::stream::SplitStream<WebSocket>,
) -> (Vec<Utf8Bytes>, Option<StreamItem>) {
    let mut texts = vec![first];
    while texts.len() < MAX_FRAMES_TOGETHER {
        match stream.next().now_or_never() {
            Some(Some(Ok(Message::Text(text)))) => texts.push(text),
            Some(other) => return (texts, Some(other)),
            None => break,
        }
    }
    (texts, None)
}

/// The stream's next item: the one [`gather_texts`] read ahead, if any.
async fn next_message(
    peeked: &mut Option<StreamItem>,
    stream: &mut futures::stream::SplitStream<WebSocket>,
) -> StreamItem {
    match peeked.take() {
        Some(item) => item,
        None => stream.next().await,
    }
}

async fn read_loop(
    app: &App,
    mut stream: futures::stream::SplitStream<WebSocket>,
    socket: &Socket,
    handle: &ConnHandle,
    mut writer: tokio::task::JoinHandle<()>,
    mut clock: ConnectionClock,
) -> ReadEnd {
    let policy: LifecyclePolicy = app.config.settings.lifecycle;
    // Control frames never reach the service (as on API Gateway, which answers pings itself),
    // so they are metered here, under the service's frame rate policy: a local bucket costs no
    // store call per ping (DynamoDB would pay a write for each) and works as well in forwarding
    // mode, where the service's buckets live behind the Lambda functions. A client may thus
    // send its rate in control frames besides its rate in data frames; each costs at most a
    // pong of 125 bytes, and the pongs in flight are bounded by MAX_WRITE_BUFFER_BYTES.
    let control_rate: RatePolicy = app.config.settings.service.rate;
    let mut control_bucket = RateState::default();
    let deadline = tokio::time::sleep_until(instant_of(clock.poll_timeout(&policy)));
    tokio::pin!(deadline);
    let mut writer_done = false;
    // After a read error nothing more can be read (see ReadFailure).
    let mut stream_broken = false;
    // The socket is ending, as this, once the deadline (LINGER) passes or the stream ends: our
    // close frame is out but unread input remains, or the client's close frame is in and
    // tungstenite is sending its echo.
    let mut winding_down: Option<ReadEnd> = None;
    // What the stream gave after the text frames gathered last time ([`gather_texts`]).
    let mut peeked: Option<StreamItem> = None;
    let end = loop {
        // From a close request until the writer has sent the close frame, nothing is read:
        // tungstenite answers every ping it reads, and pongs queued then could fill the write
        // buffer before the close frame (which would not fit, and be lost). Once the close frame
        // is out tungstenite answers no more pings, and reading resumes, for the client's close.
        let reading = !stream_broken && (writer_done || !clock.is_closing());
        let step = tokio::select! {
            _ = &mut writer, if !writer_done => Step::WriterDone,
            message = next_message(&mut peeked, &mut stream), if reading => match message {
                // Once closing, data frames are drained unread until the client's close arrives.
                Some(Ok(Message::Text(_))) if clock.is_closing() => Step::Continue,
                Some(Ok(Message::Text(text))) => {
                    let now = now_ms();
                    handle.touch(now);
                    clock.activity(now);
                    let started = Instant::now();
                    let (texts, next) = gather_texts(text, &mut stream);
                    peeked = next;
                    let texts: Vec<&str> = texts.iter().map(|t| t.as_str()).collect();
                    // Replies reach the client through the gateway, as on AWS; the outcomes are
                    // for metrics.
                    // Boxed: the service's future is large, and inline it would be part of every
                    // socket's task, idle ones too (s4 measures that memory per connection).
                    let outcomes = Box::pin(app.frames(socket, &texts, now)).await;
                    for outcome in outcomes {
                        app.metrics.frame_in(outcome.action, outcome.rejected.map(ErrorCode::as_str), started.elapsed());
                    }
                    // A close the frames caused (4001, 4008, …) stops routing at once: frames
                    // already in flight must not trigger a second close notice.
                    Step::Closing
                }
                Some(Ok(Message::Binary(_))) => Step::Close(close::UNSUPPORTED_DATA, "binary frames are not supported"),
                // Pings and unsolicited pongs are not activity: only data frames hold off the
                // idle timeout, as on API Gateway, and the SDK's keep-alive is the `ping`
                // action, a data frame. tungstenite has queued the pong already (coalesced with
                // any unsent one); over the rate the ping costs a strike, as a frame would.
                Some(Ok(Message::Ping(_) | Message::Pong(_))) if clock.is_closing() => Step::Continue,
                Some(Ok(Message::Ping(_) | Message::Pong(_))) => match control_bucket.take(&control_rate, now_ms()) {
                    RateDecision::Allow | RateDecision::Reject => Step::Continue,
                    RateDecision::Close => Step::Close(close::RATE_LIMITED, "rate limit exceeded"),
                },
                Some(Ok(Message::Close(frame))) => Step::ClientClosed(frame.map(|f| f.code)),
                // After the client's close frame the stream ends once the echo is out.
                None | Some(Err(_)) if winding_down.is_some() => Step::End(winding_down.unwrap_or(ReadEnd::Client(None))),
                Some(Err(e)) => {
                    tracing::debug!(conn = %socket.id, error = %e, "socket read failed");
                    stream_broken = true;
                    match ReadFailure::of(&e).close() {
                        Some((code, reason)) => Step::Close(code, reason),
                        None => Step::End(ReadEnd::Client(None)),
                    }
                }
                None => Step::End(ReadEnd::Client(None)),
            },
            () = &mut deadline => match winding_down {
                Some(end) => Step::End(end),
                None => match clock.handle_timeout(&policy, now_ms()) {
                    Some(Timeout::Close { code, reason }) => Step::Close(code, reason),
                    Some(Timeout::Forget) => Step::End(ReadEnd::Server),
                    None => Step::Continue,
                },
            },
            // A close asked for by the service, the gateway (slow consumer) or @connections.
            _ = handle.close_requested(), if !clock.is_closing() => Step::Closing,
        };
        match step {
            Step::Continue => {}
            Step::Closing => {
                if let Some(code) = handle.close_code() {
                    clock.close_requested(code, now_ms());
                }
            }
            Step::Close(code, reason) => {
                clock.close_requested(code, now_ms());
                handle.request_close(code, reason);
            }
            Step::WriterDone => {
                writer_done = true;
                if !clock.is_closing() && winding_down.is_none() {
                    // The socket failed under the writer: nothing more can be sent.
                    break ReadEnd::Server;
                }
            }
            Step::ClientClosed(code) => {
                // tungstenite has queued the echo the close handshake needs (RFC 6455 §5.5.1):
                // the next read sends it, then ends the stream. Ending now would drop the
                // connection without it, and the client would see 1006 instead of its code.
                winding_down = Some(ReadEnd::Client(code));
                deadline
                    .as_mut()
                    .reset(tokio::time::Instant::now() + LINGER);
            }
            Step::End(end) => break end,
        }
        if stream_broken && writer_done && winding_down.is_none() {
            // The close frame is out and nothing more will be read. Unread bytes make the
            // kernel answer our close with a reset; give the client a moment to read the close
            // frame first.
            winding_down = Some(ReadEnd::Server);
            deadline
                .as_mut()
                .reset(tokio::time::Instant::now() + LINGER);
        }
        if winding_down.is_none() {
            deadline
                .as_mut()
                .reset(instant_of(clock.poll_timeout(&policy)));
        }
    };
    if !writer.is_finished() {
        writer.abort();
    }
    end
}
