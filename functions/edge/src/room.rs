//! The `ChatRoom` Durable Object: one per (tenant, room), named `tenant/room`. A thin adapter:
//! it translates runtime events (upgrade, hibernatable WebSocket message/close/error, alarm,
//! HTTP) into the core's front door (`ChatService::connect`, `frame`, `disconnect`,
//! `roomcast_core::http::handle`) over [`SqlHistory`] (durable) and [`Sockets`] (live).
//!
//! - **Join is implicit.** A connection belongs to the room in its URL: the service is bound to
//!   the room (`ServiceConfig::bound_room`), so its `connect` joins it (others see its
//!   `presence`; the `joined` reply is not sent, a client asks for it with `join`, as
//!   everywhere) and refuses the upgrade when that join is refused; `join` of another room is
//!   refused with `INVALID`.
//! - **Hibernation.** Sockets are accepted with `acceptWebSocket` and tagged with the connection
//!   id; every connection change is written to the socket's attachment, with the connection's
//!   `ConnectionClock`; nothing uses timers.
//! - **Alarms** do what timers do elsewhere: one per object, at the earliest deadline of any
//!   socket's clock (token expiry 4001, idle and maximum-age closes 1001, forgetting sockets
//!   that never completed a close). The core's lifecycle computes every deadline. The alarm
//!   also dispatches the journal of integration events ([`crate::events`]): a change that
//!   journals an event sets it for now; and it sweeps uploads never attached (the core's
//!   `sweep_abandoned_uploads`): it is set for when the oldest unattached slot is a day old.
//! - **Attachments**: slots in the object's SQLite ([`SqlSlots`], quotas in the tenant's
//!   object), bytes in R2 ([`R2Blobs`]) behind the links the Worker serves.
//! - **Support desk**: the tenant-wide records (agents, blocks, visitors, the conversation list)
//!   are in the tenant's object ([`EdgeDesk`]); other rooms' objects have this one record a
//!   message (`/__relay/record`), offer its waiting conversation (`/__relay/offer`) or close a
//!   blocked visitor's sockets (`/__relay/eject`) through [`DurableRelay`].

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::sync::Arc;

use roomcast_core::ChatService;
use roomcast_core::http::{self, HttpReply, HttpRequest};
use roomcast_core::lifecycle::{ConnectionClock, LifecyclePolicy, Timeout};
use roomcast_core::limits::MAX_FRAME_BYTES;
use roomcast_core::protocol::close;
use roomcast_core::service::{Attachments, Inbound, ServiceConfig};
use roomcast_core::store::{NewMessage, RoomRef};
use worker::{
    DurableObject, Env, Method, Request, Response, Result, ScheduledTime, Socket, State, Url,
    WebSocket, WebSocketIncomingMessage, WebSocketPair, durable_object,
};

use crate::blobs::{R2Blobs, bucket};
use crate::config::EdgeConfig;
use crate::desk::EdgeDesk;
use crate::events::{RoomJournal, entropy, events};
use crate::history::{Rooms, SqlHistory};
use crate::now_ms;
use crate::outbox::Journaling;
use crate::relay::{DurableRelay, Eject, Offer};
use crate::routes::{EdgeRoute, edge_route};
use crate::socket::{
    UpgradeRequest, close_reason, connection_id, disconnect_code, reply_close_code,
};
use crate::sockets::{EdgeConnections, EdgeGateway, Sockets};
use crate::uploads::SqlSlots;

pub use class::ChatRoom;

/// The JSON reply of the core HTTP API as a Worker response.
pub fn json_reply(reply: &HttpReply) -> Result<Response> {
    Ok(Response::from_json(&reply.body)?.with_status(reply.status))
}

/// What the core HTTP API reads of a request that reached an object, owned;
/// [`ApiRequest::http`] lends it to `http::handle`.
pub struct ApiRequest {
    /// The request's URL.
    pub url: Url,
    method: Method,
    authorization: Option<String>,
    origin: Option<String>,
    /// `CF-Connecting-IP`: the client's address as Cloudflare's edge saw it (it replaces any
    /// value a client sent, and the Worker forwards the request with its headers).
    client_ip: Option<String>,
    body: Vec<u8>,
}

impl ApiRequest {
    /// Reads `req`, body included.
    pub async fn read(mut req: Request) -> Result<Self> {
        let headers = req.headers();
        Ok(Self {
            authorization: headers.get("Authorization")?,
            origin: headers.get("Origin")?,
            client_ip: headers.get("CF-Connecting-IP")?,
            url: req.url()?,
            method: req.method(),
            body: req.bytes().await?,
        })
    }

    /// The request as the core takes it.
    pub fn http(&self) -> HttpRequest<'_> {
        HttpRequest {
            method: self.method.as_ref(),
            path: self.url.path(),
            query: self.url.query(),
            authorization: self.authorization.as_deref(),
            body: &self.body,
            origin: self.origin.as_deref(),
            client_ip: self.client_ip.as_deref(),
        }
    }
}

/// The class the runtime instantiates, alone in a module: the `durable_object` macro generates
/// its JavaScript bindings (constructor, `fetch`, `alarm`, `webSocket*`), which have no docs.
mod class {
    #![allow(
        missing_docs,
        reason = "the durable_object macro's generated bindings are undocumented"
    )]

    use super::{Core, Env, Rc, RefCell, State, durable_object};

    /// One chat room.
    #[durable_object]
    pub struct ChatRoom {
        pub(super) state: Rc<State>,
        pub(super) env: Env,
        pub(super) core: RefCell<Option<Rc<Core>>>,
    }
}

/// What the object runs, built on first use (it needs the environment and the object's name).
struct Core {
    room: RoomRef,
    lifecycle: LifecyclePolicy,
    service: ChatService,
    sockets: Rc<Sockets>,
    /// The journal of integration events (dispatched to the tenant's events object).
    journal: Arc<RoomJournal>,
    /// Upload slots (for the sweep's deadline).
    slots: Arc<SqlSlots>,
    /// The alarm known to be set, if known.
    alarm: Cell<AlarmKnown>,
    /// The faults `POST /__dev/fault` armed (dev build only).
    #[cfg(feature = "dev")]
    faults: Rc<crate::dev::Faults>,
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

    /// `POST /__dev/fault` (dev build only): arms the fault the request names on this object,
    /// or runs the alarm handler twice.
    #[cfg(feature = "dev")]
    async fn dev_fault(&self, core: &Core, req: &Request) -> Result<Response> {
        use crate::dev::Fault;
        match Fault::of(req)? {
            Err(e) => Response::error(e, 400),
            Ok(Fault::AlarmTwice) => {
                for _ in 0..2 {
                    self.alarm().await?;
                }
                Response::ok("the alarm handler ran twice\n")
            }
            Ok(fault) => crate::dev::inject(&self.state, &core.faults, fault),
        }
    }

    fn conn_id(&self, ws: &WebSocket) -> Option<String> {
        let tags = self.state.as_raw().get_tags(ws.as_ref()).ok()?;
        tags.into_iter().next()
    }
}

impl Core {
    fn build(state: &Rc<State>, env: &Env) -> std::result::Result<Self, String> {
        let EdgeConfig { settings, .. } = EdgeConfig::from_env(env).map_err(|e| e.to_string())?;
        crate::log::init(settings.log);
        let name = state
            .id()
            .name()
            .ok_or("the object was not created with id_from_name(\"tenant/room\")")?;
        let (tenant, room) = name
            .split_once('/')
            .ok_or_else(|| format!("object name `{name}` is not `tenant/room`"))?;
        let room = RoomRef::new(tenant, room);
        #[allow(
            clippy::arc_with_non_send_sync,
            reason = "the service's ports are Arcs; on wasm32 they are !Send (JS handles)"
        )]
        let history = Arc::new(
            SqlHistory::open(
                state.storage().sql(),
                Rooms::One(room.clone()),
                Journaling::Always,
            )
            .map_err(|e| e.to_string())?,
        );
        #[allow(
            clippy::arc_with_non_send_sync,
            reason = "the service's ports are Arcs; on wasm32 they are !Send (JS handles)"
        )]
        let journal =
            Arc::new(RoomJournal::new(history.clone(), env, tenant).map_err(|e| e.to_string())?);
        #[allow(
            clippy::arc_with_non_send_sync,
            reason = "the service's ports are Arcs; on wasm32 they are !Send (JS handles)"
        )]
        let slots = Arc::new(
            SqlSlots::open(state.storage().sql(), Rooms::One(room.clone()), env.clone())
                .map_err(|e| e.to_string())?,
        );
        let signer = settings
            .attachments
            .link_signer()
            .map_err(|e| e.to_string())?;
        #[allow(
            clippy::arc_with_non_send_sync,
            reason = "the service's ports are Arcs; on wasm32 they are !Send (JS handles)"
        )]
        let blobs = Arc::new(R2Blobs::new(
            bucket(env).map_err(|e| format!("the R2 bucket: {e}"))?,
            signer,
        ));
        let attachments = Attachments {
            index: slots.clone(),
            blobs,
            policy: settings.attachments.policy.clone(),
            quota: settings.attachments.quota,
            entropy: entropy(),
        };
        let sockets = Rc::new(Sockets::new(state.clone()));
        let gateway = EdgeGateway(sockets.clone());
        #[cfg(feature = "dev")]
        let faults = Rc::new(crate::dev::Faults::default());
        #[cfg(feature = "dev")]
        let gateway = crate::dev::FaultyGateway::new(gateway, state.clone(), faults.clone());
        let verifier = settings.verifier().map_err(|e| e.to_string())?;
        let service_config = ServiceConfig {
            bound_room: Some(room.room.clone()),
            ..settings.service
        };
        #[allow(
            clippy::arc_with_non_send_sync,
            reason = "ChatService holds its ports in Arcs; on wasm32 they are !Send (JS handles) and one thread runs everything"
        )]
        let service = ChatService::new(
            verifier,
            Arc::new(EdgeConnections(sockets.clone())),
            history,
            Arc::new(gateway),
            service_config,
        )
        .with_relay(Arc::new(DurableRelay::new(env.clone())))
        .with_desk(Arc::new(EdgeDesk::new(env.clone())))
        .with_events(events(journal.clone(), None, &settings.events, Vec::new()))
        .with_attachments(attachments);
        Ok(Self {
            room,
            lifecycle: settings.lifecycle,
            service,
            sockets,
            journal,
            slots,
            alarm: Cell::new(AlarmKnown::Unknown),
            #[cfg(feature = "dev")]
            faults,
        })
    }

    /// `GET /rooms/{room}/ws`: the socket accepted for hibernation, `connect` through the core
    /// (which joins the room), then the connection's clock started and the alarm armed.
    async fn connect(&self, state: &State, req: &Request, room: &str) -> Result<Response> {
        if room != self.room.room {
            tracing::error!(room, own = %self.room.key(), "request routed to the wrong object");
            return Response::error("routed to the wrong room", 500);
        }
        let now = now_ms();
        let mut random = [0u8; 12];
        getrandom::fill(&mut random).map_err(|e| worker::Error::RustError(e.to_string()))?;
        let conn_id = connection_id(random);
        let upgrade = UpgradeRequest::from_request(req)?;
        // The socket first: the connect's join makes the connection one of the room's, and the
        // room's frames (another connection's departure, say) must find its socket.
        let pair = WebSocketPair::new()?;
        // The raw call reports failure (too many sockets on the object) where the wrapper panics.
        let tags = vec![worker::wasm_bindgen::JsValue::from_str(&conn_id)];
        if let Err(e) = state
            .as_raw()
            .accept_websocket_with_tags(pair.server.as_ref(), tags)
        {
            tracing::warn!(error = ?e, "socket not accepted");
            return Response::error(format!("socket not accepted: {e:?}"), 503);
        }
        self.sockets.accepted(&conn_id, pair.server.clone());
        let accepted = match self.service.connect(&conn_id, upgrade.upgrade(), now).await {
            Ok(accepted) => accepted,
            Err(refusal) => {
                return self
                    .refuse(&conn_id, &pair.server, refusal.status, refusal.reason)
                    .await;
            }
        };
        let clock = ConnectionClock::new(&accepted.connection);
        if let Err(e) = self.sockets.connected(&conn_id, clock).await {
            self.service.disconnect(&conn_id, now).await;
            return self
                .refuse(&conn_id, &pair.server, 500, e.to_string())
                .await;
        }
        self.schedule(state, clock.poll_timeout(&self.lifecycle))
            .await;
        let mut response = Response::from_websocket(pair.client)?;
        if let Some(protocol) = accepted.subprotocol {
            response
                .headers_mut()
                .set("Sec-WebSocket-Protocol", &protocol)?;
        }
        tracing::debug!(conn = %conn_id, room = %self.room.key(), "connected");
        Ok(response)
    }

    /// Closes the socket of a connection that is not (or no longer) connected, and answers the
    /// upgrade with `status`.
    async fn refuse(
        &self,
        conn_id: &str,
        server: &WebSocket,
        status: u16,
        reason: String,
    ) -> Result<Response> {
        let _ = server.close(Some(close::NORMAL), Some(close_reason(&reason)));
        self.sockets.unregister(conn_id);
        tracing::info!(status, %reason, "connect refused");
        Response::error(reason, status)
    }

    /// `GET|POST /rooms/{room}/messages`, `POST /rooms/{room}/uploads`,
    /// `GET /rooms/{room}/attachments/{id}`, and any path no route claims: the core HTTP API.
    async fn http(&self, req: Request) -> Result<Response> {
        let now = now_ms();
        let request = ApiRequest::read(req).await?;
        // `/health` is the Worker's: objects do not count the connections of other rooms.
        json_reply(&http::handle(&self.service, &request.http(), None, now).await)
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

    /// `POST /__relay/offer` from another room's object (see [`crate::relay`]): capacity was
    /// freed, and this room's conversation, if it waits, is offered to an available agent.
    async fn offered(&self, mut req: Request) -> Result<Response> {
        if req.method() != Method::Post {
            return Response::error("use POST", 405);
        }
        let offer: Offer = match req.json().await {
            Ok(offer) => offer,
            Err(e) => return Response::error(format!("not an offer: {e}"), 400),
        };
        match self
            .service
            .offer_conversation(&self.room, offer.now_ms)
            .await
        {
            Ok(()) => Response::ok(""),
            Err(rejection) => json_reply(&HttpReply::rejection(rejection)),
        }
    }

    /// `POST /__relay/eject` from another room's object (see [`crate::relay`]): a visitor was
    /// blocked, and their sockets here close with 4003.
    async fn ejected(&self, mut req: Request) -> Result<Response> {
        if req.method() != Method::Post {
            return Response::error("use POST", 405);
        }
        let eject: Eject = match req.json().await {
            Ok(eject) => eject,
            Err(e) => return Response::error(format!("not an ejection: {e}"), 400),
        };
        match self.service.eject(&self.room.tenant, &eject.user).await {
            Ok(()) => Response::ok(""),
            Err(rejection) => json_reply(&HttpReply::rejection(rejection)),
        }
    }

    /// A frame on a socket.
    async fn message(&self, state: &State, conn_id: &str, message: WebSocketIncomingMessage) {
        let now = now_ms();
        match self.sockets.clock(conn_id) {
            None => return,
            // A close was requested: frames still in flight are not routed.
            Some(clock) if clock.is_closing() => return,
            Some(_) => self.sockets.activity(conn_id, now),
        }
        let inbound = match &message {
            WebSocketIncomingMessage::String(text) if text.len() > MAX_FRAME_BYTES => {
                // The runtime hands over whole messages; a message over the frame limit
                // contains a frame over it, or is a fragmented one (see protocol.md §14).
                self.service
                    .close_with(conn_id, close::TOO_BIG, "frame too big")
                    .await;
                self.arm(state, conn_id).await;
                return;
            }
            WebSocketIncomingMessage::String(text) => Inbound::Text(text),
            WebSocketIncomingMessage::Binary(_) => Inbound::Binary,
        };
        let outcome = self.service.frame(conn_id, inbound, now).await;
        tracing::debug!(
            conn = conn_id,
            action = outcome.action,
            rejected = outcome.rejected.map(|c| c.as_str()),
            closed = outcome.closed,
            fanout = outcome.fanout,
            "frame"
        );
        if outcome.closed.is_some() {
            self.arm(state, conn_id).await;
        }
    }

    /// The socket of `conn_id` is gone (closed by either side, failed, or forgotten after a
    /// close the client never completed); `client_code` is the client's close code, if it sent
    /// one.
    async fn gone(&self, conn_id: &str, client_code: Option<u16>) {
        self.service.disconnect(conn_id, now_ms()).await;
        self.sockets.unregister(conn_id);
        tracing::debug!(conn = conn_id, ?client_code, "disconnected");
    }

    /// Runs every socket's due timeouts (closes, and forgetting sockets whose close was never
    /// completed), then sets the alarm for the next deadline.
    async fn housekeeping(&self, state: &State) {
        let now = now_ms();
        for id in self.sockets.ids() {
            let closing = self.sockets.clock(&id).is_some_and(|c| c.is_closing());
            let timeout = if !closing && self.sockets.connection(&id).await.is_none() {
                // A socket whose connection the store no longer holds: it cannot be served.
                Some(Timeout::Close {
                    code: close::GOING_AWAY,
                    reason: "connection unknown; reconnect",
                })
            } else {
                self.sockets.handle_timeout(&id, &self.lifecycle, now)
            };
            match timeout {
                Some(Timeout::Close { code, reason }) => {
                    tracing::debug!(conn = %id, code, reason, "closing");
                    self.service.close_with(&id, code, reason).await;
                }
                Some(Timeout::Forget) => {
                    tracing::debug!(conn = %id, "close not completed within the grace");
                    self.gone(&id, None).await;
                }
                None => {}
            }
        }
        if let Some(at) = self.sockets.next_timeout(&self.lifecycle) {
            self.schedule(state, at).await;
        }
    }

    /// Makes sure the alarm fires by the next deadline of `conn_id`'s socket.
    async fn arm(&self, state: &State, conn_id: &str) {
        if let Some(clock) = self.sockets.clock(conn_id) {
            self.schedule(state, clock.poll_timeout(&self.lifecycle))
                .await;
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

impl Core {
    /// After a change: when events wait in the journal, the alarm fires now to dispatch them;
    /// when unattached uploads wait, by the time the oldest is abandoned; when the room's
    /// occupancy changed within its interval, at the interval's end.
    async fn work_due(&self, state: &State) {
        match self.journal.has_journal() {
            Ok(true) => self.schedule(state, now_ms()).await,
            Ok(false) => {}
            Err(e) => tracing::warn!(error = %e, "events journal unreadable"),
        }
        self.sweep_due(state, now_ms()).await;
        if let Some(at) = self.service.poll_timeout() {
            self.schedule(state, at).await;
        }
    }

    /// The service's own deadlines (a big room's coalesced occupancy): what is due now, then
    /// the alarm for the next.
    async fn service_deadlines(&self, state: &State) {
        self.service.handle_timeout(now_ms()).await;
        if let Some(at) = self.service.poll_timeout() {
            self.schedule(state, at).await;
        }
    }

    /// Makes sure the alarm fires when the oldest unattached upload is abandoned (not before
    /// `earliest`).
    async fn sweep_due(&self, state: &State, earliest: u64) {
        match self.slots.next_abandoned_at() {
            Ok(Some(at)) => self.schedule(state, at.max(earliest)).await,
            Ok(None) => {}
            Err(e) => tracing::warn!(error = %e, "upload slots unreadable"),
        }
    }

    /// Removes abandoned uploads (the core's sweep), a batch per alarm; the alarm comes back at
    /// once while full batches are removed, else when the next one is due (a minute at the
    /// earliest, so bytes R2 failed to delete are not retried in a loop).
    async fn sweep(&self, state: &State) {
        let now = now_ms();
        let removed = self.service.sweep_abandoned_uploads(now, SWEEP_BATCH).await;
        if removed > 0 {
            tracing::info!(removed, room = %self.room.key(), "abandoned uploads removed");
        }
        if removed == SWEEP_BATCH {
            self.schedule(state, now).await;
        } else {
            self.sweep_due(state, now.saturating_add(SWEEP_RETRY_MS))
                .await;
        }
    }

    /// Hands the journal to the tenant's events object (the core's `dispatch_events`); on a
    /// failure the alarm tries again in a second.
    async fn dispatch_events(&self, state: &State) {
        loop {
            let dispatched = self
                .service
                .dispatch_events(
                    self.journal.as_ref(),
                    || self.journal.endpoints(),
                    now_ms(),
                    DISPATCH_BATCH,
                )
                .await;
            match dispatched {
                Ok(0) => return,
                Ok(_) => {}
                Err(e) => {
                    tracing::warn!(error = %e, "events not dispatched; retrying");
                    self.schedule(state, now_ms().saturating_add(DISPATCH_RETRY_MS))
                        .await;
                    return;
                }
            }
        }
    }
}

/// Journal events dispatched per batch.
const DISPATCH_BATCH: usize = 128;
/// The next try after a failed dispatch.
const DISPATCH_RETRY_MS: u64 = 1_000;
/// Abandoned uploads removed per alarm.
const SWEEP_BATCH: usize = 100;
/// The sweep's next look at uploads it could not remove.
const SWEEP_RETRY_MS: u64 = 60_000;

impl DurableObject for ChatRoom {
    fn new(state: State, env: Env) -> Self {
        Self {
            state: Rc::new(state),
            env,
            core: RefCell::new(None),
        }
    }

    async fn fetch(&self, req: Request) -> Result<Response> {
        let route = edge_route(&req.path());
        #[cfg(feature = "dev")]
        if route == Some(EdgeRoute::DevConformance) {
            return crate::dev::conformance(&self.state, &self.env).await;
        }
        let core = match self.ready().await {
            Ok(core) => core,
            Err(e) => {
                worker::console_error!("roomcast: ChatRoom not configured: {e}");
                return Response::error(format!("not configured: {e}"), 500);
            }
        };
        #[cfg(feature = "dev")]
        if route == Some(EdgeRoute::DevFault) {
            return self.dev_fault(&core, &req).await;
        }
        let response = match route {
            Some(EdgeRoute::Socket(room)) => core.connect(&self.state, &req, &room).await,
            Some(EdgeRoute::Relay) => core.relayed(req).await,
            Some(EdgeRoute::RelayOffer) => core.offered(req).await,
            Some(EdgeRoute::RelayEject) => core.ejected(req).await,
            // The HTTP API's paths, and 404 for everything else (no object serves the dev
            // routes without the `dev` feature, nor the events objects' paths).
            Some(
                EdgeRoute::BadSocketRoom
                | EdgeRoute::DevConformance
                | EdgeRoute::DevFault
                | EdgeRoute::EventsEndpoints
                | EdgeRoute::EventsDispatch
                | EdgeRoute::TenantQuota
                | EdgeRoute::TenantDesk,
            )
            | None => core.http(req).await,
        };
        core.work_due(&self.state).await;
        response
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
        core.work_due(&self.state).await;
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
            // After a close the server asked for, the code is the client's answer, not its own.
            let closing = core.sockets.clock(&conn_id).is_some_and(|c| c.is_closing());
            let client_code = disconnect_code(code).filter(|_| !closing);
            core.gone(&conn_id, client_code).await;
            core.work_due(&self.state).await;
        }
        Ok(())
    }

    async fn websocket_error(&self, ws: WebSocket, error: worker::Error) -> Result<()> {
        tracing::debug!(%error, "socket failed");
        if let (Ok(core), Some(conn_id)) = (self.ready().await, self.conn_id(&ws)) {
            core.gone(&conn_id, None).await;
            core.work_due(&self.state).await;
        }
        Ok(())
    }

    async fn alarm(&self) -> Result<Response> {
        match self.ready().await {
            Ok(core) => {
                core.alarm.set(AlarmKnown::Unset);
                core.housekeeping(&self.state).await;
                core.service_deadlines(&self.state).await;
                core.dispatch_events(&self.state).await;
                core.sweep(&self.state).await;
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
