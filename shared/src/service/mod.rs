//! The chat service: what happens on connect, on each client frame, and on disconnect. Written
//! once against the [`ConnectionStore`], [`HistoryStore`] and [`Gateway`] ports; the local
//! server, the Lambda functions and the Durable Object only translate their transport into the
//! three calls of its front door: [`ChatService::connect`], [`ChatService::frame`] and
//! [`ChatService::disconnect`].
//!
//! One file per feature: [`rooms`](self) (join, leave), `messages` (message, edit, delete,
//! read, history), `presence` (typing, presence, departures), `desk` (the support desk),
//! `publish` (the HTTP API's operations), and `fanout` (delivery to connections). This file
//! holds the front door and the one dispatch from a parsed frame to its handler.
//!
//! Time is an argument (`now_ms`), never read here.

mod attachments;
mod desk;
mod embed;
mod events;
mod fanout;
mod messages;
mod pipeline;
mod presence;
mod publish;
mod rooms;

use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

pub use attachments::Attachments;
pub use embed::{DeskState, TokenRequest, VisitorToken, key_of};
pub use events::{
    EndpointChange, Entropy, Events, MAX_OFFLINE_MEMBERS, OPERATOR_ENDPOINT_ID, Resolver,
    route_events, sync_operator_endpoint,
};
pub use messages::fit_page;
pub use publish::Publish;

use crate::attachments::UploadRequest;
use crate::auth::{Role, TokenVerifier};
use crate::gateway::{Gateway, RoomRelay};
use crate::limits::{
    DEFAULT_MAX_CONNECTIONS_PER_USER, DEFAULT_PRESENCE_MAX_CONNECTIONS, MAX_ROOMS_PER_CONNECTION,
};
use crate::occupancy::{OccupancyBoard, OccupancyGate};
use crate::order::SeqOrder;
use crate::protocol::{
    ClientFrame, ErrorCode, Parsed, PresenceStatus, Rejection, ServerFrame, close,
    parse_client_frame,
};
use crate::ratelimit::{RateDecision, RatePolicy};
use crate::store::{
    Connection, ConnectionStore, DeskDirectory, HistoryStore, RateBucket, StoreError,
};
use crate::support::DEFAULT_SUPPORT_ROOM_PREFIX;
use crate::support::embed::EmbedConfig;

/// The subprotocol clients may offer next to their token.
pub const SUBPROTOCOL: &str = "roomcast.v1";

/// Tunables of the service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceConfig {
    /// The rate of each connection's frames, and of each user's HTTP API requests (per tenant);
    /// work beyond a frame's reply (replays, history pages, presence in many rooms) is charged
    /// on top ([`crate::ratelimit`]).
    pub rate: RatePolicy,
    /// Most live connections per user; more are refused with 429.
    pub max_connections_per_user: usize,
    /// Most rooms one connection may join.
    pub max_rooms_per_connection: usize,
    /// Rooms named with this prefix are support conversations (empty: none are).
    pub support_room_prefix: String,
    /// The one room every connection of this service belongs to, when the deployment binds each
    /// connection to a room (the edge build runs one service per Durable Object, that is per
    /// room, and the room is in the socket's URL). Connections are joined to it on connect, and
    /// `join` of another room is refused with `INVALID`. `None` (the default): connections join
    /// rooms freely.
    pub bound_room: Option<String>,
    /// Publishable keys and visitor tokens ([`crate::support::embed`]).
    pub embed: EmbedConfig,
    /// Most connections a room holds with the presence of individuals; a bigger room sends
    /// `occupancy` instead (protocol.md §17).
    pub presence_max_connections: usize,
}

impl Default for ServiceConfig {
    fn default() -> Self {
        Self {
            rate: RatePolicy::default(),
            max_connections_per_user: DEFAULT_MAX_CONNECTIONS_PER_USER,
            max_rooms_per_connection: MAX_ROOMS_PER_CONNECTION,
            support_room_prefix: DEFAULT_SUPPORT_ROOM_PREFIX.to_owned(),
            bound_room: None,
            embed: EmbedConfig::default(),
            presence_max_connections: DEFAULT_PRESENCE_MAX_CONNECTIONS,
        }
    }
}

/// What a WebSocket upgrade request carried that `$connect` needs: the `token` query parameter
/// and the `Sec-WebSocket-Protocol` header, as the client sent them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Upgrade<'a> {
    /// The `token` query parameter (decoded).
    pub token_param: Option<&'a str>,
    /// The `Sec-WebSocket-Protocol` header value (comma-separated protocols).
    pub protocols: Option<&'a str>,
    /// The `Origin` header: a browser page's, checked against the embed allowlist of the
    /// token's tenant.
    pub origin: Option<&'a str>,
}

impl<'a> Upgrade<'a> {
    /// The token, from `?token=` or else from a `Sec-WebSocket-Protocol` entry shaped like a JWT.
    pub fn token(&self) -> Option<&'a str> {
        self.token_param
            .or_else(|| self.offered().find(|p| is_jwt_shaped(p)))
    }

    /// The subprotocol to echo: `roomcast.v1` if offered, else the first offered (a browser
    /// fails the handshake unless one offered protocol is echoed); none when none was offered.
    pub fn subprotocol(&self) -> Option<&'a str> {
        if self.offered().any(|p| p == SUBPROTOCOL) {
            Some(SUBPROTOCOL)
        } else {
            self.offered().next()
        }
    }

    fn offered(&self) -> impl Iterator<Item = &'a str> {
        self.protocols
            .unwrap_or("")
            .split(',')
            .map(str::trim)
            .filter(|p| !p.is_empty())
    }
}

fn is_jwt_shaped(protocol: &str) -> bool {
    protocol.matches('.').count() == 2 && protocol != SUBPROTOCOL
}

/// An accepted `$connect`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Accepted {
    /// The connection as stored (its token expiry drives the lifecycle's timers).
    pub connection: Connection,
    /// The subprotocol to echo in the upgrade response.
    pub subprotocol: Option<String>,
}

/// A refused `$connect`: the HTTP status the upgrade is answered with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectRefusal {
    /// 401 bad token, 403 valid but not allowed, 429 too many connections, 500 store failure;
    /// on a bound service, the status of the refused join of its room.
    pub status: u16,
    /// Why.
    pub reason: String,
}

/// One client frame as the transport delivered it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Inbound<'a> {
    /// A text frame: protocol v1 JSON.
    Text(&'a str),
    /// A binary frame: not part of protocol v1 (closed with 1003).
    Binary,
}

/// What happened to one client frame, for metrics and logs.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FrameOutcome {
    /// The action, when the frame parsed.
    pub action: Option<&'static str>,
    /// The error code sent back, if any.
    pub rejected: Option<ErrorCode>,
    /// The close code, when the connection was closed.
    pub closed: Option<u16>,
    /// Frames fanned out to other connections.
    pub fanout: usize,
}

/// Why a frame was not admitted ([`ChatService::admit`]).
enum Refusal {
    /// The connection closes with this code and reason.
    Close(u16, &'static str),
    /// The frame gets this error (with the frame's `ref`, when it had one).
    Reject(Rejection, Option<String>),
}

/// The chat service.
pub struct ChatService {
    verifier: TokenVerifier,
    connections: Arc<dyn ConnectionStore>,
    history: Arc<dyn HistoryStore>,
    gateway: Arc<dyn Gateway>,
    /// Where rooms other than `config.bound_room` are recorded, when the service is bound.
    relay: Option<Arc<dyn RoomRelay>>,
    /// Integration events, when the deployment delivers them.
    events: Option<Events>,
    /// Attachments, when the deployment stores them.
    attachments: Option<Attachments>,
    /// The support desk's tenant-wide records (agents, blocks, visitors, the conversation
    /// list), when the deployment keeps them.
    desk: Option<Arc<dyn DeskDirectory>>,
    /// When big rooms announce their occupancy: this process's board (its announcements due
    /// at [`ChatService::poll_timeout`]) unless the deployment shares one
    /// ([`ChatService::with_occupancy_gate`]).
    occupancy: Arc<dyn OccupancyGate>,
    /// Each room's messages delivered in seq order, on a deployment where one process stores
    /// and delivers many at once ([`ChatService::with_ordered_delivery`]).
    order: Option<Mutex<SeqOrder<fanout::Delivery>>>,
    config: ServiceConfig,
}

/// The lock of plain data no `await` is held across; a panic while holding it leaves the data
/// usable.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The rejection a failed store call turns into.
fn unavailable(e: StoreError) -> Rejection {
    tracing::warn!(error = %e, "store operation failed");
    match e {
        StoreError::NotFound => Rejection::new(ErrorCode::NotFound, "not found"),
        other => Rejection::new(
            ErrorCode::Unavailable,
            format!("storage unavailable, retry: {other}"),
        ),
    }
}

/// The HTTP status an error code maps to: the HTTP API's, and the upgrade refusal of a bound
/// service whose room join was rejected.
pub fn http_status(code: ErrorCode) -> u16 {
    match code {
        ErrorCode::BadFrame | ErrorCode::UnknownAction | ErrorCode::Invalid => 400,
        ErrorCode::TooLarge => 413,
        ErrorCode::Forbidden | ErrorCode::NotMember => 403,
        ErrorCode::NotFound => 404,
        ErrorCode::Conflict => 409,
        ErrorCode::RateLimited | ErrorCode::LimitExceeded => 429,
        ErrorCode::Unavailable => 503,
    }
}

impl ChatService {
    /// A service over the given ports.
    pub fn new(
        verifier: TokenVerifier,
        connections: Arc<dyn ConnectionStore>,
        history: Arc<dyn HistoryStore>,
        gateway: Arc<dyn Gateway>,
        config: ServiceConfig,
    ) -> Self {
        Self {
            verifier,
            connections,
            history,
            gateway,
            relay: None,
            events: None,
            attachments: None,
            desk: None,
            occupancy: Arc::new(Mutex::new(OccupancyBoard::new())),
            order: None,
            config,
        }
    }

    /// Delivers each room's messages in seq order ([`crate::order`]): for a process that
    /// stores and delivers many messages at once (the local server), whose tasks would
    /// otherwise race to deliver after their commits. Not for a process that sees only some
    /// of a room's messages (a Lambda function): it would hold each for the ones it never sees.
    #[must_use]
    pub fn with_ordered_delivery(mut self) -> Self {
        self.order = Some(Mutex::new(SeqOrder::default()));
        self
    }

    /// Decides big rooms' occupancy announcements with `gate` instead of this process's board:
    /// for a deployment whose processes live for one event each (a Lambda function), whose
    /// boards would be empty every time.
    #[must_use]
    pub fn with_occupancy_gate(mut self, gate: Arc<dyn OccupancyGate>) -> Self {
        self.occupancy = gate;
        self
    }

    /// Keeps the support desk's tenant-wide records in `desk`: agents' availability and
    /// auto-assignment, blocked visitors, visitors' names and the conversation list need it.
    #[must_use]
    pub fn with_desk(mut self, desk: Arc<dyn DeskDirectory>) -> Self {
        self.desk = Some(desk);
        self
    }

    /// Records messages for rooms other than [`ServiceConfig::bound_room`] through `relay` (the
    /// support desk's inbox notices, on a deployment with one service per room).
    #[must_use]
    pub fn with_relay(mut self, relay: Arc<dyn RoomRelay>) -> Self {
        self.relay = Some(relay);
        self
    }

    /// The token verifier (HTTP endpoints authenticate with it too).
    pub fn verifier(&self) -> &TokenVerifier {
        &self.verifier
    }

    /// `$connect`: verifies the token and registers the connection; a bound service also joins
    /// it to its room (refusing the upgrade when that join is refused).
    pub async fn connect(
        &self,
        conn_id: &str,
        upgrade: Upgrade<'_>,
        now_ms: u64,
    ) -> Result<Accepted, ConnectRefusal> {
        let refuse = |status, reason: String| ConnectRefusal { status, reason };
        let identity = self
            .verifier
            .verify(upgrade.token().unwrap_or(""), now_ms)
            .map_err(|e| refuse(401, e.to_string()))?;
        if identity.role == Role::User && identity.rooms.is_empty() {
            return Err(refuse(403, "the token grants no rooms".into()));
        }
        if !self
            .config
            .embed
            .keys
            .origin_allowed(&identity.tenant, upgrade.origin)
        {
            return Err(refuse(
                403,
                format!(
                    "origin {} is not allowed to embed tenant {}",
                    upgrade.origin.unwrap_or_default(),
                    identity.tenant
                ),
            ));
        }
        if identity.role == Role::User
            && self
                .is_blocked(&identity.tenant, &identity.user)
                .await
                .map_err(|e| refuse(500, e.to_string()))?
        {
            return Err(refuse(403, "blocked by the support team".into()));
        }
        let existing = self
            .connections
            .user_connections(&identity.tenant, &identity.user)
            .await
            .map_err(|e| refuse(500, e.to_string()))?;
        if existing.len() >= self.config.max_connections_per_user {
            return Err(refuse(
                429,
                format!("user has {} connections already", existing.len()),
            ));
        }
        let mut conn = Connection::new(conn_id, &identity, now_ms);
        self.connections
            .put_connection(&conn)
            .await
            .map_err(|e| refuse(500, e.to_string()))?;
        if existing.is_empty() {
            // A user coming back starts online, whatever they chose in an earlier session.
            let _ = self
                .connections
                .set_status(&conn.tenant, &conn.user, PresenceStatus::Online)
                .await;
        }
        if let Some(room) = &self.config.bound_room {
            // The room is the socket's: join it as the client's own `join` would, without the
            // `joined` reply (the client asks for it with `join`, as on every deployment).
            if let Err(rejection) = self.enter(&conn, room, None, false, now_ms).await {
                self.disconnect(conn_id, now_ms).await;
                return Err(refuse(http_status(rejection.code), rejection.message));
            }
            conn.rooms.push(room.clone());
        }
        tracing::debug!(conn = conn_id, tenant = %conn.tenant, user = %conn.user, "connected");
        Ok(Accepted {
            connection: conn,
            subprotocol: upgrade.subprotocol().map(str::to_owned),
        })
    }

    /// `$disconnect` (or a connection found gone): forgets it and, when it was the user's last,
    /// tells its rooms the user is offline.
    pub async fn disconnect(&self, conn_id: &str, now_ms: u64) {
        let mut pending = vec![conn_id.to_owned()];
        while let Some(id) = pending.pop() {
            pending.extend(self.depart(&id, now_ms).await);
        }
    }

    /// When [`ChatService::handle_timeout`] has work next: the end of a big room's interval
    /// with a change not announced yet, or the end of a held message's wait for its turn. The deployment arms its one timer for the earliest of
    /// this and its connections' deadlines.
    pub fn poll_timeout(&self) -> Option<u64> {
        let order = self.order.as_ref().and_then(|o| lock(o).poll_timeout());
        let occupancy = self.occupancy.poll_timeout();
        order.into_iter().chain(occupancy).min()
    }

    /// Delivers the held messages whose wait for their turn ended by `now_ms`, and announces
    /// the occupancy of the big rooms whose interval ended by then with a change not announced
    /// yet. Early or repeated calls do nothing.
    pub async fn handle_timeout(&self, now_ms: u64) {
        if let Some(order) = &self.order {
            let due = lock(order).handle_timeout(now_ms);
            for (key, seq, delivery) in due {
                self.deliver_in_turn(order, &key, seq, delivery, now_ms)
                    .await;
            }
        }
        let due = self.occupancy.handle_timeout(now_ms);
        for r in due {
            let (_, gone) = self.announce_occupancy(&r).await;
            for id in gone {
                self.disconnect(&id, now_ms).await;
            }
        }
    }

    /// One client frame on a connection.
    pub async fn frame(&self, conn_id: &str, inbound: Inbound<'_>, now_ms: u64) -> FrameOutcome {
        let mut outcome = FrameOutcome::default();
        let (conn, parsed) = match self.admit(conn_id, inbound, now_ms).await {
            Ok(admitted) => admitted,
            Err(refusal) => {
                self.refuse(conn_id, refusal, &mut outcome).await;
                return outcome;
            }
        };
        self.run(&conn, parsed, now_ms, &mut outcome).await;
        outcome
    }

    /// Runs an admitted frame's action, answering a rejection with its error.
    async fn run(
        &self,
        conn: &Connection,
        parsed: Parsed,
        now_ms: u64,
        outcome: &mut FrameOutcome,
    ) {
        outcome.action = Some(parsed.frame.action());
        match self
            .dispatch(conn, parsed.frame, parsed.reference.clone(), now_ms)
            .await
        {
            Ok(fanout) => outcome.fanout = fanout,
            Err(rejection) => {
                self.reject(&conn.id, rejection, parsed.reference, outcome)
                    .await;
            }
        }
    }

    /// Answers a frame with `rejection` (and its `ref`), as its outcome says.
    async fn reject(
        &self,
        conn_id: &str,
        rejection: Rejection,
        reference: Option<String>,
        outcome: &mut FrameOutcome,
    ) {
        outcome.rejected = Some(rejection.code);
        self.reply(conn_id, &ServerFrame::error(rejection, reference))
            .await;
    }

    /// Admits a frame on `conn_id` (the connection is known, its token valid, the frame within
    /// its rate) and parses it. Sends nothing: a refusal is answered by
    /// [`ChatService::refuse`], so a caller handling several frames keeps the answers in order.
    async fn admit(
        &self,
        conn_id: &str,
        inbound: Inbound<'_>,
        now_ms: u64,
    ) -> Result<(Connection, Parsed), Refusal> {
        let Inbound::Text(text) = inbound else {
            return Err(Refusal::Close(
                close::UNSUPPORTED_DATA,
                "binary frames are not supported",
            ));
        };
        let admitted = match self
            .connections
            .admit_frame(conn_id, &self.config.rate, now_ms)
            .await
        {
            Ok(Some(admitted)) => admitted,
            // The connection was cleaned up (TTL, 410) while its socket lived on.
            Ok(None) => {
                return Err(Refusal::Close(
                    close::GOING_AWAY,
                    "connection unknown; reconnect",
                ));
            }
            Err(e) => return Err(Refusal::Reject(unavailable(e), None)),
        };
        if now_ms >= admitted.connection.token_expires_at_ms {
            return Err(Refusal::Close(close::TOKEN_EXPIRED, "token expired"));
        }
        match admitted.rate {
            RateDecision::Allow => {}
            RateDecision::Reject => {
                let r = Rejection::new(ErrorCode::RateLimited, "slow down: frame dropped");
                return Err(Refusal::Reject(r, None));
            }
            RateDecision::Close => {
                return Err(Refusal::Close(close::RATE_LIMITED, "rate limit exceeded"));
            }
        }
        match parse_client_frame(text) {
            Ok(parsed) => Ok((admitted.connection, parsed)),
            Err(failure) => Err(Refusal::Reject(failure.rejection, failure.reference)),
        }
    }

    /// Answers a frame [`ChatService::admit`] refused.
    async fn refuse(&self, conn_id: &str, refusal: Refusal, outcome: &mut FrameOutcome) {
        match refusal {
            Refusal::Close(code, reason) => {
                self.close_with(conn_id, code, reason).await;
                outcome.closed = Some(code);
            }
            Refusal::Reject(rejection, reference) => {
                self.reject(conn_id, rejection, reference, outcome).await;
            }
        }
    }

    /// Charges `bucket` the `tokens` the work of an admitted frame or request cost beyond its
    /// own token. Never refuses (the work is done); a store failure is logged and forgiven, as
    /// in admission: rate limiting protects the service, it must not take it down with the
    /// store.
    pub(super) async fn charge(&self, bucket: RateBucket<'_>, tokens: u32, now_ms: u64) {
        if tokens == 0 {
            return;
        }
        if let Err(e) = self
            .connections
            .charge_rate(bucket, tokens, &self.config.rate, now_ms)
            .await
        {
            tracing::warn!(?bucket, tokens, error = %e, "work not charged to the rate limit");
        }
    }

    /// Runs a parsed frame's action; returns the frames fanned out to other connections.
    async fn dispatch(
        &self,
        conn: &Connection,
        frame: ClientFrame,
        reference: Option<String>,
        now_ms: u64,
    ) -> Result<usize, Rejection> {
        match frame {
            ClientFrame::Join { room, since } => self.join(conn, &room, since, now_ms).await,
            ClientFrame::Leave { room } => self.leave(conn, room, now_ms).await,
            ClientFrame::Message {
                room,
                id,
                body,
                meta,
                attachments,
                reply_to,
            } => {
                let draft = messages::Draft {
                    id,
                    body,
                    meta,
                    attachments,
                    reply_to,
                };
                self.message(conn, room, draft, now_ms).await
            }
            ClientFrame::Upload {
                room,
                name,
                size,
                content_type,
            } => {
                let r = self.member_room(conn, &room)?;
                let request = UploadRequest {
                    name,
                    size,
                    content_type,
                };
                let grant = self.grant_upload(&r, &conn.user, request, now_ms).await?;
                let frame = ServerFrame::Upload { grant, reference };
                self.reply(&conn.id, &frame).await;
                Ok(0)
            }
            ClientFrame::Edit { room, seq, body } => self.edit(conn, room, seq, body, now_ms).await,
            ClientFrame::Delete { room, seq } => self.delete(conn, room, seq, now_ms).await,
            ClientFrame::React { room, seq, emoji } => {
                let reaction = messages::ReactionRequest {
                    seq,
                    emoji,
                    add: true,
                };
                self.react(conn, room, reaction, reference, now_ms).await
            }
            ClientFrame::Unreact { room, seq, emoji } => {
                let reaction = messages::ReactionRequest {
                    seq,
                    emoji,
                    add: false,
                };
                self.react(conn, room, reaction, reference, now_ms).await
            }
            ClientFrame::Typing { room, state } => self.typing(conn, room, state, now_ms).await,
            ClientFrame::Read { room, seq } => self.read(conn, room, seq, now_ms).await,
            ClientFrame::Presence { status } => self.presence(conn, status, now_ms).await,
            ClientFrame::History {
                room,
                before,
                after,
                limit,
            } => self.history(conn, room, before, after, limit, now_ms).await,
            ClientFrame::Members {
                room,
                cursor,
                limit,
            } => self.members(conn, room, cursor, limit, reference).await,
            ClientFrame::Assign { room } => self.assign(conn, &room, reference, now_ms).await,
            ClientFrame::Close { room } => self.close(conn, &room, reference, now_ms).await,
            ClientFrame::Transfer { room, to } => {
                self.transfer(conn, &room, &to, reference, now_ms).await
            }
            ClientFrame::Unassign { room } => self.unassign(conn, &room, reference, now_ms).await,
            ClientFrame::Identify { name, email } => {
                self.identify(conn, name, email, reference).await
            }
            ClientFrame::Rate {
                room,
                score,
                comment,
            } => self.rate(conn, &room, score, comment, now_ms).await,
            ClientFrame::Availability {
                status,
                capacity,
                muted,
            } => {
                self.availability(conn, status, capacity, muted, reference, now_ms)
                    .await
            }
            ClientFrame::Conversations { filter, query } => {
                self.conversations(conn, filter, query, reference, now_ms)
                    .await
            }
            ClientFrame::Block { user } => self.block(conn, &user, true, reference, now_ms).await,
            ClientFrame::Unblock { user } => {
                self.block(conn, &user, false, reference, now_ms).await
            }
            ClientFrame::Ping => {
                self.reply(&conn.id, &ServerFrame::Pong { ts: now_ms })
                    .await;
                Ok(0)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_from_query_or_subprotocol() {
        let query = Upgrade {
            token_param: Some("q.t.k"),
            protocols: None,
            origin: None,
        };
        assert_eq!((query.token(), query.subprotocol()), (Some("q.t.k"), None));
        let offered = Upgrade {
            token_param: None,
            protocols: Some("roomcast.v1, aa.bb.cc"),
            origin: None,
        };
        assert_eq!(
            (offered.token(), offered.subprotocol()),
            (Some("aa.bb.cc"), Some(SUBPROTOCOL))
        );
        let token_only = Upgrade {
            token_param: None,
            protocols: Some("aa.bb.cc"),
            origin: None,
        };
        assert_eq!(
            (token_only.token(), token_only.subprotocol()),
            (Some("aa.bb.cc"), Some("aa.bb.cc"))
        );
        let both = Upgrade {
            token_param: Some("q.t.k"),
            protocols: Some("roomcast.v1, aa.bb.cc"),
            origin: None,
        };
        assert_eq!(both.token(), Some("q.t.k"));
    }
}
