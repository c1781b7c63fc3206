//! The `ChatRoom` Durable Object: one per (tenant, room), named `tenant/room`. A thin adapter:
//! it turns runtime events (upgrade, hibernatable WebSocket message/close/error, alarm, HTTP)
//! into the core's API Gateway-shaped events and runs the one `ChatService` over
//! [`SqlHistory`] (durable) and [`Sockets`] (live).
//!
//! - **Join is implicit.** A connection belongs to the room in its URL: the upgrade runs the
//!   core `join` for it (others see its `presence`; the `joined` reply is not sent, a client
//!   asks for it with `join`, as everywhere). The service is bound to the room
//!   (`ServiceConfig::bound_room`), so a `join` of another room is refused with `INVALID`.
//! - **Hibernation.** Sockets are accepted with `acceptWebSocket` and tagged with the connection
//!   id; every connection change is written to the socket's attachment; nothing uses timers.
//! - **Alarms** do the housekeeping timers would do elsewhere: token expiry (4001), idle and
//!   maximum-age closes (1001), and forgetting sockets that never completed a close.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::rc::Rc;
use std::sync::Arc;

use roomcast_core::event::handle_event;
use roomcast_core::http::{self as core_http, HttpReply};
use roomcast_core::limits::{MAX_FRAME_BYTES, MAX_WS_MESSAGE_BYTES};
use roomcast_core::store::{NewMessage, RoomRef};
use roomcast_core::protocol::close;
use roomcast_core::{ChatService, ServiceConfig};
use worker::{
    DurableObject, Env, Method, Request, Response, Result, ScheduledTime, Socket, State, WebSocket,
    WebSocketIncomingMessage, WebSocketPair, durable_object,
};

use crate::attachment::close_reason;
use crate::config::EdgeConfig;
use crate::events::{
    ConnectRequest, connect_event, connection_id, disconnect_code, disconnect_event,
    join_refusal_status, message_event, reply_close_code,
};
use crate::history::{Rooms, SqlHistory};
use crate::relay::DurableRelay;
use crate::routes::{Route, route};
use crate::sockets::{EdgeConnections, EdgeGateway, Sockets};
use crate::{dev, now_ms};

/// After the server asks a socket to close, how long the client has to answer before the
/// connection is forgotten anyway (the local server's `CLOSE_GRACE`).
pub const CLOSE_GRACE_MS: u64 = 5_000;

/// The JSON reply of the core HTTP API as a Worker response.
pub fn json_reply(reply: &HttpReply) -> Result<Response> {
    Ok(Response::from_json(&reply.body)?.with_status(reply.status))
}

/// One chat room.
#[durable_object]
pub struct ChatRoom {
    state: Rc<State>,
    env: Env,
    core: RefCell<Option<Rc<Core>>>,
}

/// What the object runs, built on first use (it needs the environment and the object's name).
struct Core {
    room: RoomRef,
    config: EdgeConfig,
    service: ChatService,
    sockets: Rc<Sockets>,
    /// The alarm known to be set, if known.
    alarm: Cell<AlarmKnown>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum AlarmKnown {
    /// Not looked up since the object started.
    Unknown,
    /// None is set.
    Unset,
    /// Set for this time, epoch milliseconds.
    At(u64),
}

impl ChatRoom {
    fn core(&self) -> std::result::Result<Rc<Core>, String> {
        if let Some(core) = self.core.borrow().as_ref() {
            return Ok(core.clone());
        }
        let core = Rc::new(Core::build(&self.state, &self.env)?);
        *self.core.borrow_mut() = Some(core.clone());
        Ok(core)
    }

    /// The core, with the sockets loaded; orphaned sockets are closed.
    async fn ready(&self) -> std::result::Result<Rc<Core>, String> {
        let core = self.core()?;
        for ws in core.sockets.load().await {
            let _ = ws.close(
                Some(close::GOING_AWAY),
                Some("connection state lost; reconnect"),
            );
        }
        Ok(core)
    }

    fn conn_id(&self, ws: &WebSocket) -> Option<String> {
        let tags = self.state.as_raw().get_tags(ws.as_ref()).ok()?;
        tags.into_iter().next()
    }
}

impl Core {
    fn build(state: &Rc<State>, env: &Env) -> std::result::Result<Self, String> {
        let config = EdgeConfig::from_env(env)?;
        crate::log::init(config.log);
        let name = state
            .id()
            .name()
            .ok_or("the object was not created with id_from_name(\"tenant/room\")")?;
        let (tenant, room) = name
            .split_once('/')
            .ok_or_else(|| format!("object name `{name}` is not `tenant/room`"))?;
        let room = RoomRef::new(tenant, room);
        let history = SqlHistory::open(state.storage().sql(), Rooms::One(room.clone()))
            .map_err(|e| e.to_string())?;
        let sockets = Rc::new(Sockets::new(state.clone()));
        let service_config = ServiceConfig {
            bound_room: Some(room.room.clone()),
            ..config.service.clone()
        };
        #[allow(
            clippy::arc_with_non_send_sync,
            reason = "ChatService holds its ports in Arcs; on wasm32 they are !Send (JS handles) and one thread runs everything"
        )]
        let service = ChatService::new(
            config.verifier()?,
            Arc::new(EdgeConnections(sockets.clone())),
            Arc::new(history),
            Arc::new(EdgeGateway(sockets.clone())),
            service_config,
        )
        .with_relay(Arc::new(DurableRelay::new(env.clone())));
        Ok(Self {
            room,
            config,
            service,
            sockets,
            alarm: Cell::new(AlarmKnown::Unknown),
        })
    }

    /// `GET /rooms/{room}/ws`: `$connect` through the core, then accept the socket for
    /// hibernation and join it to the room.
    async fn connect(&self, state: &State, req: &Request, room: &str) -> Result<Response> {
        if room != self.room.room {
            tracing::error!(room, own = %self.room.key(), "request routed to the wrong object");
            return Response::error("routed to the wrong room", 500);
        }
        let now = now_ms();
        let mut random = [0u8; 12];
        getrandom::fill(&mut random).map_err(|e| worker::Error::RustError(e.to_string()))?;
        let conn_id = connection_id(random);
        let routed = handle_event(
            &self.service,
            &connect_event(&conn_id, now, connect_request(req)?),
        )
        .await;
        let response = routed.response;
        if response.status_code != 200 {
            let reason = response.body.unwrap_or_else(|| "refused".into());
            tracing::info!(status = response.status_code, %reason, "connect refused");
            return Response::error(reason, response.status_code);
        }
        let pair = match WebSocketPair::new() {
            Ok(pair) => pair,
            Err(e) => {
                self.service.disconnect(&conn_id, now).await;
                return Err(e);
            }
        };
        // The raw call reports failure (too many sockets on the object) where the wrapper panics.
        let tags = vec![worker::wasm_bindgen::JsValue::from_str(&conn_id)];
        if let Err(e) = state
            .as_raw()
            .accept_websocket_with_tags(pair.server.as_ref(), tags)
        {
            let reason = format!("socket not accepted: {e:?}");
            return self.refuse(&conn_id, &pair.server, now, 503, reason).await;
        }
        if let Err(e) = self
            .sockets
            .register(&conn_id, pair.server.clone(), now)
            .await
        {
            return self
                .refuse(&conn_id, &pair.server, now, 500, e.to_string())
                .await;
        }
        // The implicit join: the core `join`, its reply held back (the client asks with `join`).
        let join = serde_json::json!({"action": "join", "room": room}).to_string();
        let (joined, replies) = self
            .sockets
            .muted(
                &conn_id,
                handle_event(
                    &self.service,
                    &message_event(&conn_id, now, now, Some(&join)),
                ),
            )
            .await;
        if let Some(code) = joined.outcome.rejected {
            let reason = replies
                .iter()
                .filter_map(|f| serde_json::from_str::<serde_json::Value>(f).ok())
                .find_map(|f| f["message"].as_str().map(str::to_owned))
                .unwrap_or_else(|| code.as_str().to_owned());
            let status = join_refusal_status(code);
            return self
                .refuse(&conn_id, &pair.server, now, status, reason)
                .await;
        }
        if let Some(code) = joined.outcome.closed {
            let reason = format!("closed with {code} while joining");
            return self.refuse(&conn_id, &pair.server, now, 500, reason).await;
        }
        let conn = self.sockets.connection(&conn_id).await;
        let deadline = conn.map_or(now, |c| {
            c.token_expires_at_ms
                .min(now.saturating_add(self.config.idle_timeout_ms))
                .min(now.saturating_add(self.config.max_connection_ms))
        });
        self.schedule(state, deadline).await;
        let mut accepted = Response::from_websocket(pair.client)?;
        for (name, value) in response.headers.unwrap_or_default() {
            accepted.headers_mut().set(&name, &value)?;
        }
        tracing::debug!(conn = %conn_id, room = %self.room.key(), "connected");
        Ok(accepted)
    }

    /// Undoes an accepted connection and answers the upgrade with `status`.
    async fn refuse(
        &self,
        conn_id: &str,
        server: &WebSocket,
        now: u64,
        status: u16,
        reason: String,
    ) -> Result<Response> {
        self.service.disconnect(conn_id, now).await;
        let _ = server.close(Some(close::NORMAL), Some(close_reason(&reason)));
        self.sockets.unregister(conn_id);
        tracing::info!(status, %reason, "connect refused");
        Response::error(reason, status)
    }

    /// `GET|POST /rooms/{room}/messages`: the core HTTP API.
    async fn http(&self, mut req: Request, room: &str) -> Result<Response> {
        let now = now_ms();
        let authorization = req.headers().get("Authorization")?;
        let reply = match req.method() {
            Method::Get => {
                let url = req.url()?;
                core_http::get_messages(
                    &self.service,
                    authorization.as_deref(),
                    room,
                    url.query(),
                    now,
                )
                .await
            }
            Method::Post => {
                let body = req.bytes().await?;
                if body.len() > MAX_WS_MESSAGE_BYTES {
                    return Response::error("request body over 131072 bytes", 413);
                }
                core_http::post_message(&self.service, authorization.as_deref(), room, &body, now)
                    .await
            }
            _ => HttpReply::error(405, "BAD_FRAME", "use GET or POST"),
        };
        json_reply(&reply)
    }

    /// `POST /__relay/record` from another room's object (see [`crate::relay`]): the message is
    /// recorded in this room and delivered to its sockets.
    async fn relayed(&self, mut req: Request) -> Result<Response> {
        if req.method() != Method::Post {
            return Response::error("use POST", 405);
        }
        let message: NewMessage = match req.json().await {
            Ok(message) => message,
            Err(e) => return Response::error(format!("not a message: {e}"), 400),
        };
        match self.service.record(&self.room, message, now_ms()).await {
            Ok((appended, _)) => Response::from_json(&appended),
            Err(rejection) => Response::error(rejection.message, 503),
        }
    }

    /// A frame on a socket.
    async fn message(&self, state: &State, conn_id: &str, message: WebSocketIncomingMessage) {
        let now = now_ms();
        let Some(socket) = self.sockets.socket_state(conn_id) else {
            return;
        };
        if socket.closing.is_some() {
            return; // a close was requested: frames in flight are not routed
        }
        self.sockets.touch(conn_id, now);
        let connected_at = self
            .sockets
            .connection(conn_id)
            .await
            .map_or(now, |c| c.connected_at_ms);
        let event = match &message {
            WebSocketIncomingMessage::String(text) if text.len() > MAX_FRAME_BYTES => {
                // The runtime hands over whole messages; a message over the frame limit
                // contains a frame over it, or is a fragmented one (see protocol.md §14).
                self.service
                    .close_with(conn_id, close::TOO_BIG, "frame too big")
                    .await;
                self.schedule(state, now + CLOSE_GRACE_MS).await;
                return;
            }
            WebSocketIncomingMessage::String(text) => {
                message_event(conn_id, connected_at, now, Some(text))
            }
            WebSocketIncomingMessage::Binary(_) => message_event(conn_id, connected_at, now, None),
        };
        let routed = handle_event(&self.service, &event).await;
        let outcome = routed.outcome;
        tracing::debug!(
            conn = conn_id,
            action = outcome.action,
            rejected = outcome.rejected.map(|c| c.as_str()),
            closed = outcome.closed,
            fanout = outcome.fanout,
            "frame"
        );
        if outcome.closed.is_some() {
            self.schedule(state, now + CLOSE_GRACE_MS).await;
        }
    }

    /// The socket of `conn_id` is gone (closed by either side, or failed).
    async fn gone(&self, conn_id: &str, code: Option<u16>) {
        let now = now_ms();
        let connected_at = self
            .sockets
            .connection(conn_id)
            .await
            .map_or(now, |c| c.connected_at_ms);
        handle_event(
            &self.service,
            &disconnect_event(conn_id, connected_at, now, code),
        )
        .await;
        self.sockets.unregister(conn_id);
        tracing::debug!(conn = conn_id, ?code, "disconnected");
    }

    /// The timers of every connection: token expiry (4001), idle and maximum age (1001), and
    /// the grace of a requested close. Schedules the next alarm.
    async fn housekeeping(&self, state: &State) {
        let now = now_ms();
        let mut next: Option<u64> = None;
        let mut due = |at: u64| next = Some(next.map_or(at, |n| n.min(at)));
        for (id, socket) in self.sockets.all() {
            let conn = self.sockets.connection(&id).await;
            match (conn, socket.closing) {
                (_, Some((_, since))) if now >= since.saturating_add(CLOSE_GRACE_MS) => {
                    tracing::debug!(conn = %id, "close not completed within the grace");
                    self.gone(&id, None).await;
                }
                (_, Some((_, since))) => due(since + CLOSE_GRACE_MS),
                (None, None) => {
                    self.service
                        .close_with(&id, close::GOING_AWAY, "connection unknown; reconnect")
                        .await;
                    due(now + CLOSE_GRACE_MS);
                }
                (Some(c), None) => {
                    let timers = [
                        (c.token_expires_at_ms, close::TOKEN_EXPIRED, "token expired"),
                        (
                            socket.active_ms.saturating_add(self.config.idle_timeout_ms),
                            close::GOING_AWAY,
                            "idle timeout",
                        ),
                        (
                            c.connected_at_ms
                                .saturating_add(self.config.max_connection_ms),
                            close::GOING_AWAY,
                            "maximum connection duration reached",
                        ),
                    ];
                    match timers.iter().filter(|t| t.0 <= now).min_by_key(|t| t.0) {
                        Some(&(_, code, reason)) => {
                            tracing::debug!(conn = %id, code, reason, "closing");
                            self.service.close_with(&id, code, reason).await;
                            due(now + CLOSE_GRACE_MS);
                        }
                        None => {
                            if let Some(at) = timers.iter().map(|t| t.0).min() {
                                due(at);
                            }
                        }
                    }
                }
            }
        }
        if let Some(at) = next {
            self.schedule(state, at).await;
        }
    }

    /// Makes sure an alarm fires at `at` or earlier.
    async fn schedule(&self, state: &State, at: u64) {
        let storage = state.storage();
        if self.alarm.get() == AlarmKnown::Unknown {
            let known = match storage.get_alarm().await {
                Ok(Some(t)) => AlarmKnown::At(u64::try_from(t).unwrap_or(0)),
                Ok(None) => AlarmKnown::Unset,
                Err(e) => {
                    tracing::warn!(error = %e, "alarm lookup failed");
                    AlarmKnown::Unset
                }
            };
            self.alarm.set(known);
        }
        if matches!(self.alarm.get(), AlarmKnown::At(t) if t <= at) {
            return;
        }
        let when = worker::js_sys::Date::new(&worker::wasm_bindgen::JsValue::from_f64(at as f64));
        match storage.set_alarm(ScheduledTime::new(when)).await {
            Ok(()) => self.alarm.set(AlarmKnown::At(at)),
            Err(e) => tracing::error!(error = %e, "alarm not set: timers will not fire"),
        }
    }
}

/// What the connect event needs from the upgrade request.
fn connect_request(req: &Request) -> Result<ConnectRequest> {
    let headers: HashMap<String, String> = req
        .headers()
        .entries()
        .map(|(k, v)| (k.to_ascii_lowercase(), v))
        .collect();
    let url = req.url()?;
    let query = url
        .query_pairs()
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    Ok(ConnectRequest {
        host: headers.get("host").cloned().unwrap_or_default(),
        source_ip: headers.get("cf-connecting-ip").cloned(),
        headers,
        query,
    })
}

impl DurableObject for ChatRoom {
    fn new(state: State, env: Env) -> Self {
        Self {
            state: Rc::new(state),
            env,
            core: RefCell::new(None),
        }
    }

    async fn fetch(&self, req: Request) -> Result<Response> {
        let path = req.path();
        if route(&path) == Route::DevConformance {
            return dev::conformance(&self.state).await;
        }
        let core = match self.ready().await {
            Ok(core) => core,
            Err(e) => {
                worker::console_error!("roomcast: ChatRoom not configured: {e}");
                return Response::error(format!("not configured: {e}"), 500);
            }
        };
        match route(&path) {
            Route::Socket(room) => core.connect(&self.state, &req, &room).await,
            Route::Messages(room) => core.http(req, &room).await,
            Route::Relay => core.relayed(req).await,
            _ => Response::error("not found", 404),
        }
    }

    async fn websocket_message(
        &self,
        ws: WebSocket,
        message: WebSocketIncomingMessage,
    ) -> Result<()> {
        let (Ok(core), Some(conn_id)) = (self.ready().await, self.conn_id(&ws)) else {
            let _ = ws.close(
                Some(close::GOING_AWAY),
                Some("connection state lost; reconnect"),
            );
            return Ok(());
        };
        core.message(&self.state, &conn_id, message).await;
        Ok(())
    }

    async fn websocket_close(
        &self,
        ws: WebSocket,
        code: usize,
        reason: String,
        _was_clean: bool,
    ) -> Result<()> {
        // Answer the client's close frame (fails harmlessly when the server closed first).
        let _ = ws.close(Some(reply_close_code(code)), Some(close_reason(&reason)));
        if let (Ok(core), Some(conn_id)) = (self.ready().await, self.conn_id(&ws)) {
            let closing = core.sockets.socket_state(&conn_id).and_then(|s| s.closing);
            let code = if closing.is_some() {
                None
            } else {
                disconnect_code(code)
            };
            core.gone(&conn_id, code).await;
        }
        Ok(())
    }

    async fn websocket_error(&self, ws: WebSocket, error: worker::Error) -> Result<()> {
        tracing::debug!(%error, "socket failed");
        if let (Ok(core), Some(conn_id)) = (self.ready().await, self.conn_id(&ws)) {
            core.gone(&conn_id, None).await;
        }
        Ok(())
    }

    async fn alarm(&self) -> Result<Response> {
        match self.ready().await {
            Ok(core) => {
                core.alarm.set(AlarmKnown::Unset);
                core.housekeeping(&self.state).await;
            }
            Err(e) => worker::console_error!("roomcast: alarm without configuration: {e}"),
        }
        Response::ok("")
    }

    async fn connect(&self, _socket: Socket) -> Result<()> {
        Err(worker::Error::RustError(
            "ChatRoom serves no TCP connections".into(),
        ))
    }
}
