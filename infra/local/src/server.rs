//! The HTTP/WebSocket front: the API Gateway WebSocket emulator (upgrade → `$connect`, frames →
//! route events, close → `$disconnect`, `@connections` management API), the HTTP API (history,
//! server-side publish, health, metrics), and graceful shutdown.

use std::collections::HashMap;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::body::Bytes;
use axum::extract::ws::{
    CloseFrame, Message, WebSocket, WebSocketUpgrade, rejection::WebSocketUpgradeRejection,
};
use axum::extract::{ConnectInfo, DefaultBodyLimit, Path, Query, RawQuery, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use axum::serve::ListenerExt;
use axum::{Json, Router};
use base64::Engine;
use futures::{SinkExt, StreamExt};
use roomcast_core::auth::TokenVerifier;
use roomcast_core::event::{
    Routed, WsEvent, WsIdentity, WsRequestContext, WsResponse, connect_credentials, handle_event,
    select_route,
};
use roomcast_core::http::{self, HttpReply};
use roomcast_core::limits::{MAX_FRAME_BYTES, MAX_WS_MESSAGE_BYTES};
use roomcast_core::protocol::{ErrorCode, close};
use roomcast_core::service::{ChatService, FrameOutcome};
use roomcast_core::store::memory::{MemoryConnections, MemoryHistory};
use roomcast_core::store::{ConnectionStore, HistoryStore};
use serde::Deserialize;
use serde_json::json;
use tokio::net::TcpListener;

use crate::config::{ServerConfig, StoreKind};
use crate::embedded::EmbeddedHistory;
use crate::forward::LambdaForwarder;
use crate::gateway::{ConnHandle, LocalGateway, Outbound};
use crate::metrics::{Gauges, Metrics};

/// How long a socket may take to accept its close frame before it is dropped.
const CLOSE_GRACE: Duration = Duration::from_secs(5);
/// How long a socket whose input can no longer be read stays open after its close frame was sent.
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
/// How long shutdown waits for sockets to take their 1001 close.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// Epoch milliseconds: the adapter's clock, passed to the service as `requestTimeEpoch`.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// The running server's shared state.
pub struct App {
    service: ChatService,
    gateway: Arc<LocalGateway>,
    metrics: Arc<Metrics>,
    live: Option<Arc<MemoryConnections>>,
    forwarder: Option<LambdaForwarder>,
    config: ServerConfig,
    request_ids: AtomicU64,
    /// Live WebSocket connections (and upgrades in progress) per client address.
    per_ip: Mutex<HashMap<IpAddr, usize>>,
}

/// One of an address's connection slots ([`ServerConfig::max_connections_per_ip`]), held from
/// the upgrade request until its socket ends (or the upgrade is refused or fails).
struct IpSlot {
    app: Arc<App>,
    ip: IpAddr,
}

impl IpSlot {
    /// Takes a slot for `ip`, or returns how many it holds already.
    fn take(app: &Arc<App>, ip: IpAddr) -> Result<Self, usize> {
        let mut per_ip = app.per_ip.lock().unwrap_or_else(PoisonError::into_inner);
        let held = per_ip.entry(ip).or_insert(0);
        if *held >= app.config.max_connections_per_ip {
            return Err(*held);
        }
        *held += 1;
        Ok(Self {
            app: app.clone(),
            ip,
        })
    }
}

impl Drop for IpSlot {
    fn drop(&mut self) {
        let mut per_ip = self
            .app
            .per_ip
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(held) = per_ip.get_mut(&self.ip) {
            *held = held.saturating_sub(1);
            if *held == 0 {
                per_ip.remove(&self.ip);
            }
        }
    }
}

impl App {
    /// Opens the store named by `config` and builds the service over it.
    pub async fn build(config: ServerConfig) -> anyhow::Result<Arc<Self>> {
        let metrics = Arc::new(Metrics::default());
        let gateway = Arc::new(LocalGateway::new(metrics.clone()));
        let (connections, history, live) = open_stores(&config).await?;
        let verifier = TokenVerifier::new(&config.auth)?;
        let service = ChatService::new(
            verifier,
            connections,
            history,
            gateway.clone(),
            config.service.clone(),
        );
        let forwarder = config.lambda_endpoint.as_deref().map(LambdaForwarder::new);
        Ok(Arc::new(Self {
            service,
            gateway,
            metrics,
            live,
            forwarder,
            config,
            request_ids: AtomicU64::new(0),
            per_ip: Mutex::new(HashMap::new()),
        }))
    }

    /// The resolved configuration.
    pub(crate) fn config(&self) -> &ServerConfig {
        &self.config
    }

    /// Runs one route event: in-process, or through the route's Lambda function.
    ///
    /// Boxed: the service's future is the largest part of a socket task's state (kilobytes),
    /// and inline every idle connection would carry it; boxed, only a frame being handled does.
    fn route<'a>(&'a self, event: &'a WsEvent) -> futures::future::BoxFuture<'a, Routed> {
        Box::pin(self.route_inline(event))
    }

    async fn route_inline(&self, event: &WsEvent) -> Routed {
        let Some(forwarder) = &self.forwarder else {
            return handle_event(&self.service, event).await;
        };
        let ctx = &event.request_context;
        let response = match forwarder.invoke(event).await {
            Ok(response) => response,
            Err(e) => {
                tracing::warn!(route = %ctx.route_key, error = %e, "route integration failed");
                if ctx.event_type == "MESSAGE" {
                    // What API Gateway sends a client whose route integration failed.
                    let frame = json!({
                        "message": "Internal server error",
                        "connectionId": ctx.connection_id,
                        "requestId": ctx.request_id,
                    });
                    let _ = self
                        .gateway
                        .enqueue(&ctx.connection_id, Outbound::Text(frame.to_string()));
                }
                WsResponse {
                    status_code: 500,
                    headers: None,
                    body: Some("Internal server error".into()),
                }
            }
        };
        Routed {
            response,
            outcome: FrameOutcome::default(),
        }
    }

    fn context(
        &self,
        route_key: &str,
        event_type: &str,
        conn: &SocketMeta,
        now: u64,
    ) -> WsRequestContext {
        WsRequestContext {
            route_key: route_key.to_owned(),
            event_type: event_type.to_owned(),
            connection_id: conn.id.clone(),
            connected_at: conn.connected_at_ms,
            request_time_epoch: now,
            request_id: format!("local-{}", self.request_ids.fetch_add(1, Ordering::Relaxed)),
            domain_name: conn.domain.clone(),
            stage: self.config.stage.clone(),
            api_id: "local".to_owned(),
            identity: WsIdentity {
                source_ip: Some(conn.source_ip.clone()),
                user_agent: conn.user_agent.clone(),
            },
            ..WsRequestContext::default()
        }
    }
}

type Stores = (
    Arc<dyn ConnectionStore>,
    Arc<dyn HistoryStore>,
    Option<Arc<MemoryConnections>>,
);

/// Live state in memory with history embedded or in memory; or everything in DynamoDB.
async fn open_stores(config: &ServerConfig) -> anyhow::Result<Stores> {
    if let Some((endpoint, table)) = &config.dynamodb {
        return dynamodb_stores(endpoint, table).await;
    }
    let live = Arc::new(MemoryConnections::new());
    let history: Arc<dyn HistoryStore> = match config.store {
        StoreKind::Embedded => Arc::new(EmbeddedHistory::open(&config.data_dir)?),
        StoreKind::Memory => Arc::new(MemoryHistory::new()),
    };
    Ok((live.clone(), history, Some(live)))
}

#[cfg(feature = "dynamodb")]
async fn dynamodb_stores(endpoint: &str, table: &str) -> anyhow::Result<Stores> {
    use anyhow::Context;
    use roomcast_aws::{DynamoConfig, DynamoStore};
    // Emulators accept any credentials; real DynamoDB gets the usual credential chain.
    let client = if std::env::var_os("AWS_ACCESS_KEY_ID").is_some()
        || std::env::var_os("AWS_PROFILE").is_some()
    {
        let sdk = aws_config::defaults(aws_config::BehaviorVersion::latest())
            .endpoint_url(endpoint)
            .load()
            .await;
        aws_sdk_dynamodb::Client::new(&sdk)
    } else {
        roomcast_aws::dynamo::emulator_client(endpoint).await
    };
    let store = Arc::new(DynamoStore::new(client, table, DynamoConfig::default()));
    store
        .ensure_table()
        .await
        .with_context(|| format!("creating table `{table}` at {endpoint}"))?;
    tracing::info!(endpoint, table, "store: DynamoDB");
    Ok((store.clone(), store, None))
}

#[cfg(not(feature = "dynamodb"))]
async fn dynamodb_stores(_endpoint: &str, _table: &str) -> anyhow::Result<Stores> {
    anyhow::bail!("this build has no DynamoDB support: rebuild with `--features dynamodb`")
}

/// What the socket task knows about its connection.
struct SocketMeta {
    id: String,
    connected_at_ms: u64,
    source_ip: String,
    user_agent: Option<String>,
    domain: String,
}

/// The router (exposed so tests and embedders can mount it).
pub fn router(app: Arc<App>) -> Router {
    crate::widget::routes(Router::new())
        .route("/", get(root))
        .route("/health", get(health))
        .route("/metrics", get(metrics))
        .route(
            "/rooms/{room}/messages",
            get(get_messages).post(post_message),
        )
        .route(
            "/@connections/{id}",
            get(get_connection)
                .post(post_connection)
                .delete(delete_connection),
        )
        // SDK clients built with API Gateway's `https://{domain}/{stage}` endpoint put the stage
        // first; any stage is accepted.
        .route(
            "/{stage}/@connections/{id}",
            get(get_connection)
                .post(post_connection)
                .delete(delete_connection),
        )
        .layer(DefaultBodyLimit::max(MAX_WS_MESSAGE_BYTES))
        .with_state(app)
}

/// Serves on `listener` until `shutdown` resolves, then closes every socket with 1001.
pub async fn serve(
    listener: TcpListener,
    app: Arc<App>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let gateway = app.gateway.clone();
    // Frames are small and written one by one: with Nagle's algorithm a frame written while an
    // earlier one is unacknowledged waits for the peer's delayed ACK (up to 40 ms on Linux),
    // which the benchmarks measured as a 40 ms p99 (docs/benchmarks.md).
    let listener = listener.tap_io(|tcp| {
        if let Err(e) = tcp.set_nodelay(true) {
            tracing::debug!(error = %e, "cannot set TCP_NODELAY");
        }
    });
    let service = axum::serve(
        listener,
        router(app).into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(async move {
        shutdown.await;
        tracing::info!("shutting down: closing sockets with 1001");
        gateway.close_all(close::GOING_AWAY, "server shutting down");
        let deadline = Instant::now() + SHUTDOWN_GRACE;
        while !gateway.is_empty() && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    });
    service.await
}

fn new_connection_id() -> String {
    use rand::RngCore;
    // API Gateway ids are 16 base64 characters ending in `=`, and may hold `+` and `/`, so
    // clients must URL-encode them; ours do too.
    let mut bytes = [0u8; 11];

    rand::rng().fill_bytes(&mut bytes);
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// Reads `exp` from a token the `$connect` route already accepted, for the expiry timer.
fn token_expiry_ms(token: &str) -> Option<u64> {
    let payload = token.split('.').nth(1)?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload.trim_end_matches('='))
        .ok()?;
    let claims: serde_json::Value = serde_json::from_slice(&bytes).ok()?;
    claims.get("exp")?.as_u64()?.checked_mul(1000)
}

async fn root(
    State(app): State<Arc<App>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Query(query): Query<HashMap<String, String>>,
    upgrade: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Response {
    let Ok(upgrade) = upgrade else {
        return Html(INFO_PAGE).into_response();
    };
    // Before the token is looked at: one host cannot take every socket, valid tokens or not.
    let slot = match IpSlot::take(&app, peer.ip()) {
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
    let meta = SocketMeta {
        id: new_connection_id(),
        connected_at_ms: now,
        source_ip: peer.ip().to_string(),
        user_agent: header_map.get("user-agent").cloned(),
        domain: header_map.get("host").cloned().unwrap_or_default(),
    };
    let event = WsEvent {
        request_context: app.context("$connect", "CONNECT", &meta, now),
        headers: Some(header_map),
        query_string_parameters: Some(query),
        ..WsEvent::default()
    };
    let response = app.route(&event).await.response;
    if response.status_code != 200 {
        app.metrics.connect_refused(response.status_code);
        let status = StatusCode::from_u16(response.status_code).unwrap_or(StatusCode::FORBIDDEN);
        return (status, response.body.unwrap_or_default()).into_response();
    }
    let token_expiry = connect_credentials(&event)
        .0
        .as_deref()
        .and_then(token_expiry_ms);
    let mut upgrade = upgrade
        .max_frame_size(MAX_FRAME_BYTES)
        .max_message_size(MAX_WS_MESSAGE_BYTES)
        // tungstenite zero-fills `read_buffer_size` bytes before every socket read (128 KiB by
        // default): that was the top of the server's profile under load and, once touched, 128
        // KiB of RSS per connection (docs/benchmarks.md). Frames are small; larger ones still
        // grow the buffer as needed.
        .read_buffer_size(READ_BUFFER_BYTES);
    if let Some(protocol) = response
        .headers
        .and_then(|mut h| h.remove("Sec-WebSocket-Protocol"))
    {
        upgrade = upgrade.protocols([protocol]);
    }
    let failed = (app.clone(), meta.id.clone());
    upgrade
        .on_failed_upgrade(move |e| {
            tracing::debug!(error = %e, "upgrade failed after $connect");
            let (app, id) = failed;
            tokio::spawn(async move { app.service.disconnect(&id, now_ms()).await });
        })
        .on_upgrade(move |socket| async move {
            run_socket(app, socket, meta, token_expiry).await;
            drop(slot);
        })
}

const INFO_PAGE: &str = "<!doctype html><title>roomcast</title><h1>roomcast local server</h1>\
<p>Connect a WebSocket to this URL with <code>?token=&lt;JWT&gt;</code> (mint one with \
<code>roomcast-local token --user alice</code>). See docs/protocol.md.</p>\
<p>Widget demo: <a href=\"/demo\">/demo</a>, agent console: <a href=\"/console\">/console</a> \
(with <code>--dev-tokens</code>; see docs/widget.md).</p>";

/// Starts the close grace once, however the close was asked for.
fn begin_closing(closing: &mut bool, deadline: std::pin::Pin<&mut tokio::time::Sleep>) {
    if !*closing {
        *closing = true;
        deadline.reset(tokio::time::Instant::now() + CLOSE_GRACE);
    }
}

/// What the read loop does next.
enum Step {
    Continue,
    Close(u16, &'static str),
    Closing,
    WriterDone,
    End(ReadEnd),
}

/// Why the read side of a socket stopped.
enum ReadEnd {
    /// The client closed or the connection dropped.
    Client(Option<u16>),
    /// The server closed it (the writer sent the close frame).
    Server,
}

async fn run_socket(
    app: Arc<App>,
    socket: WebSocket,
    meta: SocketMeta,
    token_expiry_ms: Option<u64>,
) {
    let handle = ConnHandle::new(
        meta.connected_at_ms,
        meta.source_ip.clone(),
        meta.user_agent.clone().unwrap_or_default(),
    );
    app.gateway.register(&meta.id, handle.clone());
    app.metrics.connection_opened();
    let (sink, stream) = socket.split();
    let writer = tokio::spawn(write_loop(sink, handle.clone(), app.metrics.clone()));
    let end = read_loop(&app, stream, &meta, &handle, writer, token_expiry_ms).await;
    app.gateway.unregister(&meta.id);
    let now = now_ms();
    let mut context = app.context("$disconnect", "DISCONNECT", &meta, now);
    if let ReadEnd::Client(code) = end {
        context.disconnect_status_code = code;
    }
    app.route(&WsEvent {
        request_context: context,
        ..WsEvent::default()
    })
    .await;
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
        Outbound::Text(t) => Message::Text(t.into()),
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

fn is_too_big(error: &axum::Error) -> bool {
    use std::error::Error;
    let mut source: Option<&(dyn Error + 'static)> = error.source();
    while let Some(e) = source {
        if let Some(tungstenite::Error::Capacity(_)) = e.downcast_ref::<tungstenite::Error>() {
            return true;
        }
        source = e.source();
    }
    false
}

async fn read_loop(
    app: &App,
    mut stream: futures::stream::SplitStream<WebSocket>,
    meta: &SocketMeta,
    handle: &ConnHandle,
    mut writer: tokio::task::JoinHandle<()>,
    token_expiry_ms: Option<u64>,
) -> ReadEnd {
    let idle_timeout = app.config.idle_timeout;
    let start = tokio::time::Instant::now();
    let idle = tokio::time::sleep(idle_timeout);
    let max_age = tokio::time::sleep(app.config.max_connection_age);
    let until_expiry = token_expiry_ms.map_or(Duration::MAX / 4, |exp| {
        Duration::from_millis(exp.saturating_sub(now_ms()))
    });
    let expiry = tokio::time::sleep_until(start + until_expiry);
    // Once a close is requested, the socket goes after CLOSE_GRACE even if the client never
    // reads the close frame (a slow consumer's writer may be stuck on a full TCP buffer).
    let close_deadline = tokio::time::sleep(Duration::MAX / 4);
    tokio::pin!(idle, max_age, expiry, close_deadline);
    let mut closing = false;
    let mut writer_done = false;
    // After a capacity error the frame decoder is mid-frame: nothing more can be read.
    let mut stream_broken = false;
    let end = loop {
        let step = tokio::select! {
            _ = &mut writer, if !writer_done => Step::WriterDone,
            message = stream.next(), if !stream_broken => match message {
                // Once closing, data frames are drained unread until the client's close arrives.
                Some(Ok(Message::Text(_))) if closing => Step::Continue,
                Some(Ok(Message::Text(text))) => {
                    let now = now_ms();
                    handle.touch(now);
                    idle.as_mut().reset(tokio::time::Instant::now() + idle_timeout);
                    let started = Instant::now();
                    let body = text.as_str();
                    let mut context = app.context(select_route(body), "MESSAGE", meta, now);
                    context.message_id = Some(context.request_id.clone());
                    // Boxed: held across the route's await, an inline event (416 bytes) would be
                    // part of every connection's task, idle or not.
                    let event = Box::new(WsEvent { request_context: context, body: Some(body.to_owned()), ..WsEvent::default() });
                    // Replies reach the client through the gateway, as on AWS; the outcome is
                    // for metrics.
                    let outcome = app.route(&event).await.outcome;
                    app.metrics.frame_in(outcome.action, outcome.rejected.map(ErrorCode::as_str), started.elapsed());
                    // A close the frame caused (4001, 4008, …) stops routing at once: frames
                    // already in flight must not trigger a second close notice.
                    if handle.is_closing() { Step::Closing } else { Step::Continue }
                }
                Some(Ok(Message::Binary(_))) => Step::Close(close::UNSUPPORTED_DATA, "binary frames are not supported"),
                Some(Ok(Message::Ping(_) | Message::Pong(_))) => {
                    handle.touch(now_ms());
                    idle.as_mut().reset(tokio::time::Instant::now() + idle_timeout);
                    Step::Continue
                }
                Some(Ok(Message::Close(frame))) => Step::End(ReadEnd::Client(frame.map(|f| f.code))),
                Some(Err(e)) if is_too_big(&e) => {
                    stream_broken = true;
                    Step::Close(close::TOO_BIG, "frame or message too large")
                }
                Some(Err(e)) => {
                    tracing::debug!(conn = %meta.id, error = %e, "socket read failed");
                    Step::End(ReadEnd::Client(None))
                }
                None => Step::End(ReadEnd::Client(None)),
            },
            _ = &mut idle, if !closing => Step::Close(close::GOING_AWAY, "idle timeout"),
            _ = &mut max_age, if !closing => Step::Close(close::GOING_AWAY, "maximum connection duration reached"),
            _ = &mut expiry, if !closing => Step::Close(close::TOKEN_EXPIRED, "token expired"),
            _ = &mut close_deadline, if closing => Step::End(ReadEnd::Server),
            // A close asked for by the service, the gateway (slow consumer) or @connections.
            _ = handle.close_requested(), if !closing => Step::Closing,
        };
        match step {
            Step::Continue => {}
            Step::Close(code, reason) => {
                handle.request_close(code, reason);
                begin_closing(&mut closing, close_deadline.as_mut());
            }
            Step::Closing => begin_closing(&mut closing, close_deadline.as_mut()),
            Step::WriterDone => {
                writer_done = true;
                if !closing {
                    // The socket failed under the writer: nothing more can be sent.
                    break ReadEnd::Server;
                }
                if stream_broken {
                    // Unread bytes make the kernel answer our close with a reset; give the
                    // client a moment to read the close frame first.
                    close_deadline
                        .as_mut()
                        .reset(tokio::time::Instant::now() + LINGER);
                }
            }
            Step::End(end) => break end,
        }
    };
    if !writer.is_finished() {
        writer.abort();
    }
    end
}

async fn health(State(app): State<Arc<App>>) -> Response {
    reply(http::health(Some(app.gateway.len())))
}

async fn metrics(State(app): State<Arc<App>>) -> Response {
    let gauges = Gauges {
        connections: app.gateway.len(),
        rooms: app.live.as_ref().map(|l| l.room_count()),
    };
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        app.metrics.render(&gauges),
    )
        .into_response()
}

fn reply(r: HttpReply) -> Response {
    let status = StatusCode::from_u16(r.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    (status, Json(r.body)).into_response()
}

fn authorization(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
}

async fn get_messages(
    State(app): State<Arc<App>>,
    Path(room): Path<String>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Response {
    let r = http::get_messages(
        &app.service,
        authorization(&headers),
        &room,
        query.as_deref(),
        now_ms(),
    );
    reply(r.await)
}

async fn post_message(
    State(app): State<Arc<App>>,
    Path(room): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    reply(
        http::post_message(
            &app.service,
            authorization(&headers),
            &room,
            &body,
            now_ms(),
        )
        .await,
    )
}

/// The management API is for backends on this machine (API Gateway requires IAM-signed calls).
#[allow(clippy::result_large_err)]
fn management_allowed(peer: &SocketAddr) -> Result<(), Response> {
    if peer.ip().is_loopback() {
        Ok(())
    } else {
        Err(management_error(
            StatusCode::FORBIDDEN,
            "ForbiddenException",
        ))
    }
}

/// A Management API error as API Gateway sends it: AWS SDKs read the error type from the
/// `x-amzn-ErrorType` header (a 410 is only a `GoneException` with it).
fn management_error(status: StatusCode, error_type: &'static str) -> Response {
    (
        status,
        [("x-amzn-ErrorType", error_type)],
        Json(json!({"message": error_type})),
    )
        .into_response()
}

/// `/@connections/{id}` or `/{stage}/@connections/{id}`: the stage is ignored.
#[derive(Deserialize)]
struct ConnectionPath {
    id: String,
}

fn gone() -> Response {
    management_error(StatusCode::GONE, "GoneException")
}

fn iso8601(ms: u64) -> String {
    let secs = ms / 1000;
    let (days, rem) = (secs / 86_400, secs % 86_400);
    // Civil-from-days (Howard Hinnant's algorithm), for UTC timestamps without a date crate.
    let z = i64::try_from(days).unwrap_or(0) + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        ms % 1000
    )
}

async fn get_connection(
    State(app): State<Arc<App>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Path(ConnectionPath { id }): Path<ConnectionPath>,
) -> Response {
    if let Err(r) = management_allowed(&peer) {
        return r;
    }
    let Some(h) = app.gateway.handle(&id) else {
        return gone();
    };
    Json(json!({
        "connectedAt": iso8601(h.connected_at_ms),
        "identity": {"sourceIp": h.source_ip, "userAgent": h.user_agent},
        "lastActiveAt": iso8601(h.last_active_ms()),
    }))
    .into_response()
}

async fn post_connection(
    State(app): State<Arc<App>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Path(ConnectionPath { id }): Path<ConnectionPath>,
    body: Result<Bytes, axum::extract::rejection::BytesRejection>,
) -> Response {
    if let Err(r) = management_allowed(&peer) {
        return r;
    }
    let Ok(body) = body else {
        // The body limit (MAX_WS_MESSAGE_BYTES) is what API Gateway's 128 KB is.
        return management_error(StatusCode::PAYLOAD_TOO_LARGE, "PayloadTooLargeException");
    };
    let frame = match String::from_utf8(body.to_vec()) {
        Ok(text) => Outbound::Text(text),
        Err(e) => Outbound::Binary(e.into_bytes()),
    };
    match app.gateway.enqueue(&id, frame) {
        Ok(()) => StatusCode::OK.into_response(),
        Err(_) => gone(),
    }
}

async fn delete_connection(
    State(app): State<Arc<App>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Path(ConnectionPath { id }): Path<ConnectionPath>,
) -> Response {
    if let Err(r) = management_allowed(&peer) {
        return r;
    }
    match app.gateway.handle(&id) {
        Some(h) => {
            h.request_close(close::NORMAL, "closed by @connections DELETE");
            StatusCode::NO_CONTENT.into_response()
        }
        None => gone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn iso8601_formats_utc() {
        assert_eq!(iso8601(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(iso8601(1_700_000_000_123), "2023-11-14T22:13:20.123Z");
        assert_eq!(iso8601(951_782_400_000), "2000-02-29T00:00:00.000Z");
    }

    #[test]
    fn expiry_is_read_from_the_payload() {
        let token =
            roomcast_core::auth::TokenSigner::hs256(b"k").sign(&roomcast_core::auth::Claims {
                exp: Some(1_900_000_000),
                ..Default::default()
            });
        assert_eq!(token_expiry_ms(&token), Some(1_900_000_000_000));
        assert_eq!(token_expiry_ms("garbage"), None);
    }
}
