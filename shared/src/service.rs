//! The chat service: what happens on connect, on each client frame, and on disconnect. Written
//! once against the [`ConnectionStore`], [`HistoryStore`] and [`Gateway`] ports; the local
//! server, the Lambda functions and the Durable Object only adapt their transport to it.
//!
//! Time is an argument (`now_ms`), never read here.

use std::sync::Arc;

use futures::StreamExt;

use crate::auth::{Identity, Role, TokenVerifier, room_granted};
use crate::gateway::{Gateway, GatewayError, RoomRelay};
use crate::limits::{
    DEFAULT_HISTORY_LIMIT, DEFAULT_MAX_CONNECTIONS_PER_USER, FANOUT_CONCURRENCY, MAX_HISTORY_LIMIT,
    MAX_MEMBERS_LISTED, MAX_REPLAY, MAX_ROOMS_PER_CONNECTION, MAX_SERVER_FRAME_BYTES,
    TYPING_TTL_MS,
};
use crate::protocol::{
    ClientFrame, Conversation, ErrorCode, MemberView, MessageView, PresenceStatus, Rejection,
    ServerFrame, TypingState, VisibleStatus, close, parse_client_frame, validate_body,
    validate_client_id, validate_meta, validate_name,
};
use crate::ratelimit::{RateDecision, RatePolicy};
use crate::store::{
    Amendment, Appended, Connection, ConnectionStore, HistoryQuery, HistoryStore, JoinOutcome,
    NewMessage, Page, RoomRef, StoreError,
};
use crate::support::{
    DEFAULT_SUPPORT_ROOM_PREFIX, DeskRequest, INBOX_ROOM, Transition, inbox_event, is_support_room,
    room_event, transition,
};

/// Lost compare-and-set races one desk request re-reads and retries before answering
/// `UNAVAILABLE`. Each lost race means another request changed the conversation in between, and
/// after one re-read most requests become a no-op or a `CONFLICT`.
const MAX_DESK_RACES: u32 = 3;

/// Tunables of the service.
#[derive(Debug, Clone)]
pub struct ServiceConfig {
    /// Per-connection frame rate.
    pub rate: RatePolicy,
    /// Most live connections per user; more are refused with 429.
    pub max_connections_per_user: usize,
    /// Most rooms one connection may join.
    pub max_rooms_per_connection: usize,
    /// Rooms named with this prefix are support conversations (empty: none are).
    pub support_room_prefix: String,
    /// The one room every connection of this service belongs to, when the deployment binds each
    /// connection to a room (the edge build runs one service per Durable Object, that is per
    /// room, and the room is in the socket's URL). `join` of a granted room other than this one
    /// is refused with `INVALID`. `None` (the default): connections join rooms freely.
    pub bound_room: Option<String>,
}

impl Default for ServiceConfig {
    fn default() -> Self {
        Self {
            rate: RatePolicy::default(),
            max_connections_per_user: DEFAULT_MAX_CONNECTIONS_PER_USER,
            max_rooms_per_connection: MAX_ROOMS_PER_CONNECTION,
            support_room_prefix: DEFAULT_SUPPORT_ROOM_PREFIX.to_owned(),
            bound_room: None,
        }
    }
}

/// A refused `$connect`: the HTTP status the upgrade is answered with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectRefusal {
    /// 401 bad token, 403 valid but not allowed, 429 too many connections, 500 store failure.
    pub status: u16,
    /// Why.
    pub reason: String,
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

/// A server-side publish (HTTP, role `service`).
#[derive(Debug, Clone, PartialEq)]
pub struct Publish {
    /// Idempotency key.
    pub id: String,
    /// Text.
    pub body: String,
    /// Application data.
    pub meta: Option<serde_json::Value>,
    /// Sender shown to clients (a bot's user id); the token's `sub` when absent.
    pub from: Option<String>,
}

/// Which subscribers a broadcast leaves out.
#[derive(Clone, Copy)]
enum Skip<'a> {
    Nobody,
    Connection(&'a str),
    User(&'a str),
}

/// The chat service.
pub struct ChatService {
    verifier: TokenVerifier,
    connections: Arc<dyn ConnectionStore>,
    history: Arc<dyn HistoryStore>,
    gateway: Arc<dyn Gateway>,
    /// Where rooms other than `config.bound_room` are recorded, when the service is bound.
    relay: Option<Arc<dyn RoomRelay>>,
    config: ServiceConfig,
}

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
            config,
        }
    }

    /// Records messages for rooms other than [`ServiceConfig::bound_room`] through `relay` (the
    /// support desk's inbox notices, on a deployment with one service per room).
    #[must_use]
    pub fn with_relay(mut self, relay: Arc<dyn RoomRelay>) -> Self {
        self.relay = Some(relay);
        self
    }

    /// Stores a message the service itself writes (a server-side publish, a desk event) and
    /// delivers it to the room unless it was already stored. Rooms this service is not bound to
    /// go through the relay, which delivers them where they live. Returns what was stored and the
    /// frames delivered here.
    pub async fn record(
        &self,
        room: &RoomRef,
        message: NewMessage,
        now_ms: u64,
    ) -> Result<(Appended, usize), Rejection> {
        let elsewhere = self
            .config
            .bound_room
            .as_ref()
            .is_some_and(|bound| *bound != room.room);
        if let (true, Some(relay)) = (elsewhere, &self.relay) {
            let appended = relay.record(room, message).await.map_err(unavailable)?;
            return Ok((appended, 0));
        }
        let appended = self
            .history
            .append(room, message)
            .await
            .map_err(unavailable)?;
        let delivered = if appended.duplicate {
            0
        } else {
            self.deliver(
                room,
                &ServerFrame::Message(appended.message.clone()),
                Skip::Nobody,
                now_ms,
            )
            .await
        };
        Ok((appended, delivered))
    }

    /// The token verifier (HTTP endpoints authenticate with it too).
    pub fn verifier(&self) -> &TokenVerifier {
        &self.verifier
    }

    /// `$connect`: verifies the token and registers the connection.
    pub async fn connect(
        &self,
        conn_id: &str,
        token: Option<&str>,
        now_ms: u64,
    ) -> Result<Connection, ConnectRefusal> {
        let refuse = |status, reason: String| ConnectRefusal { status, reason };
        let identity = self
            .verifier
            .verify(token.unwrap_or(""), now_ms)
            .map_err(|e| refuse(401, e.to_string()))?;
        if identity.role == Role::User && identity.rooms.is_empty() {
            return Err(refuse(403, "the token grants no rooms".into()));
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
        let conn = Connection::new(conn_id, &identity, now_ms);
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
        tracing::debug!(conn = conn_id, tenant = %conn.tenant, user = %conn.user, "connected");
        Ok(conn)
    }

    /// `$disconnect` (or a connection found gone): forgets it and, when it was the user's last,
    /// tells its rooms the user is offline.
    pub async fn disconnect(&self, conn_id: &str, now_ms: u64) {
        let mut pending = vec![conn_id.to_owned()];
        while let Some(id) = pending.pop() {
            pending.extend(self.disconnect_one(&id, now_ms).await);
        }
    }

    /// Returns connections found gone while announcing this one's departure.
    async fn disconnect_one(&self, conn_id: &str, now_ms: u64) -> Vec<String> {
        let conn = match self.connections.remove_connection(conn_id).await {
            Ok(Some(conn)) => conn,
            Ok(None) => return Vec::new(),
            Err(e) => {
                tracing::warn!(conn = conn_id, error = %e, "could not remove connection");
                return Vec::new();
            }
        };
        for room in &conn.rooms {
            let r = RoomRef::new(&conn.tenant, room);
            if let Err(e) = self.history.touch_member(&r, &conn.user, now_ms).await {
                tracing::warn!(error = %e, "could not record last seen");
            }
        }
        let still_online = match self
            .connections
            .user_connections(&conn.tenant, &conn.user)
            .await
        {
            Ok(rest) => !rest.is_empty(),
            Err(_) => true,
        };
        let mut gone = Vec::new();
        if !still_online {
            let frame = ServerFrame::Presence {
                user: conn.user.clone(),
                status: VisibleStatus::Offline,
                last_seen: now_ms,
            };
            for room in &conn.rooms {
                let (_, g) = self
                    .broadcast(&RoomRef::new(&conn.tenant, room), &frame, Skip::Nobody)
                    .await;
                gone.extend(g);
            }
        }
        tracing::debug!(conn = conn_id, user = %conn.user, still_online, "disconnected");
        gone
    }

    /// One client text frame on a connection.
    pub async fn frame(&self, conn_id: &str, text: &str, now_ms: u64) -> FrameOutcome {
        let mut outcome = FrameOutcome::default();
        let conn = match self.connections.connection(conn_id).await {
            Ok(Some(c)) => c,
            Ok(None) => {
                // The connection was cleaned up (TTL, 410) while its socket lived on.
                self.close_with(conn_id, close::GOING_AWAY, "connection unknown; reconnect")
                    .await;
                outcome.closed = Some(close::GOING_AWAY);
                return outcome;
            }
            Err(e) => {
                self.reply(conn_id, &ServerFrame::error(unavailable(e), None))
                    .await;
                outcome.rejected = Some(ErrorCode::Unavailable);
                return outcome;
            }
        };
        if now_ms >= conn.token_expires_at_ms {
            self.close_with(conn_id, close::TOKEN_EXPIRED, "token expired")
                .await;
            outcome.closed = Some(close::TOKEN_EXPIRED);
            return outcome;
        }
        match self
            .connections
            .take_rate_token(conn_id, &self.config.rate, now_ms)
            .await
        {
            Ok(RateDecision::Allow) | Err(_) => {}
            Ok(RateDecision::Reject) => {
                let r = Rejection::new(ErrorCode::RateLimited, "slow down: frame dropped");
                self.reply(conn_id, &ServerFrame::error(r, None)).await;
                outcome.rejected = Some(ErrorCode::RateLimited);
                return outcome;
            }
            Ok(RateDecision::Close) => {
                self.close_with(conn_id, close::RATE_LIMITED, "rate limit exceeded")
                    .await;
                outcome.closed = Some(close::RATE_LIMITED);
                return outcome;
            }
        }
        let parsed = match parse_client_frame(text) {
            Ok(p) => p,
            Err(failure) => {
                outcome.rejected = Some(failure.rejection.code);
                self.reply(
                    conn_id,
                    &ServerFrame::error(failure.rejection, failure.reference),
                )
                .await;
                return outcome;
            }
        };
        outcome.action = Some(parsed.frame.action());
        match self
            .dispatch(&conn, parsed.frame, parsed.reference.clone(), now_ms)
            .await
        {
            Ok(fanout) => outcome.fanout = fanout,
            Err(rejection) => {
                outcome.rejected = Some(rejection.code);
                self.reply(conn_id, &ServerFrame::error(rejection, parsed.reference))
                    .await;
            }
        }
        outcome
    }

    async fn dispatch(
        &self,
        conn: &Connection,
        frame: ClientFrame,
        reference: Option<String>,
        now_ms: u64,
    ) -> Result<usize, Rejection> {
        match frame {
            ClientFrame::Join { room, since } => self.join(conn, &room, since, now_ms).await,
            ClientFrame::Leave { room } => {
                self.connections
                    .leave_room(&conn.id, &room)
                    .await
                    .map_err(unavailable)?;
                self.reply(&conn.id, &ServerFrame::Left { room }).await;
                Ok(0)
            }
            ClientFrame::Message {
                room,
                id,
                body,
                meta,
            } => {
                let r = self.member_room(conn, &room)?;
                if room == INBOX_ROOM {
                    return Err(Rejection::new(
                        ErrorCode::Forbidden,
                        "only the service writes in the inbox",
                    ));
                }
                let msg = NewMessage {
                    id,
                    from: conn.user.clone(),
                    name: conn.name.clone(),
                    body,
                    meta,
                    ts: now_ms,
                };
                let appended = self.history.append(&r, msg).await.map_err(unavailable)?;
                let m = &appended.message;
                let ack = ServerFrame::Ack {
                    id: m.id.clone(),
                    room: room.clone(),
                    seq: m.seq,
                    ts: m.ts,
                    duplicate: appended.duplicate,
                };
                self.reply(&conn.id, &ack).await;
                if appended.duplicate {
                    return Ok(0);
                }
                let mut fanout = self
                    .deliver(
                        &r,
                        &ServerFrame::Message(appended.message),
                        Skip::Connection(&conn.id),
                        now_ms,
                    )
                    .await;
                if conn.role == Role::User && self.is_support_room(&room) {
                    // The message is stored and acknowledged whatever happens to the desk.
                    match self.desk(&r, DeskRequest::Open, None, now_ms).await {
                        Ok((_, _, delivered)) => fanout += delivered,
                        Err(rejection) => {
                            tracing::warn!(room = %r.key(), error = %rejection.message, "conversation not opened");
                        }
                    }
                }
                Ok(fanout)
            }
            ClientFrame::Edit { room, seq, body } => {
                let r = self.member_room(conn, &room)?;
                let edited = self
                    .amend_own(
                        conn,
                        &r,
                        seq,
                        Amendment::Edit {
                            body,
                            at_ms: now_ms,
                        },
                    )
                    .await?;
                let frame = ServerFrame::Edited {
                    room,
                    seq,
                    body: edited.body.unwrap_or_default(),
                    by: conn.user.clone(),
                    edited_ts: now_ms,
                };
                Ok(self.deliver(&r, &frame, Skip::Nobody, now_ms).await)
            }
            ClientFrame::Delete { room, seq } => {
                let r = self.member_room(conn, &room)?;
                self.amend_own(conn, &r, seq, Amendment::Delete { at_ms: now_ms })
                    .await?;
                let frame = ServerFrame::Deleted {
                    room,
                    seq,
                    by: conn.user.clone(),
                };
                Ok(self.deliver(&r, &frame, Skip::Nobody, now_ms).await)
            }
            ClientFrame::Typing { room, state } => {
                let r = self.member_room(conn, &room)?;
                let frame = ServerFrame::Typing {
                    room,
                    user: conn.user.clone(),
                    state,
                    ttl_ms: typing_ttl(state),
                };
                Ok(self
                    .deliver(&r, &frame, Skip::User(&conn.user), now_ms)
                    .await)
            }
            ClientFrame::Read { room, seq } => {
                let r = self.member_room(conn, &room)?;
                let head = self.history.head(&r).await.map_err(unavailable)?;
                let (cursor, moved) = self
                    .history
                    .advance_read(&r, &conn.user, seq.min(head))
                    .await
                    .map_err(unavailable)?;
                if !moved {
                    return Ok(0);
                }
                let frame = ServerFrame::Read {
                    room,
                    user: conn.user.clone(),
                    seq: cursor,
                };
                Ok(self
                    .deliver(&r, &frame, Skip::Connection(&conn.id), now_ms)
                    .await)
            }
            ClientFrame::Presence { status } => {
                self.connections
                    .set_status(&conn.tenant, &conn.user, status)
                    .await
                    .map_err(unavailable)?;
                let mut rooms: Vec<String> = self
                    .connections
                    .user_connections(&conn.tenant, &conn.user)
                    .await
                    .map_err(unavailable)?
                    .into_iter()
                    .flat_map(|c| c.rooms)
                    .collect();
                rooms.sort_unstable();
                rooms.dedup();
                let frame = ServerFrame::Presence {
                    user: conn.user.clone(),
                    status: status.into(),
                    last_seen: now_ms,
                };
                let mut fanout = 0;
                for room in rooms {
                    fanout += self
                        .deliver(
                            &RoomRef::new(&conn.tenant, room),
                            &frame,
                            Skip::Nobody,
                            now_ms,
                        )
                        .await;
                }
                Ok(fanout)
            }
            ClientFrame::History {
                room,
                before,
                after,
                limit,
            } => {
                let r = self.member_room(conn, &room)?;
                let query = HistoryQuery {
                    after,
                    before,
                    limit: limit.unwrap_or(DEFAULT_HISTORY_LIMIT),
                };
                let page = self
                    .history
                    .messages(&r, query)
                    .await
                    .map_err(unavailable)?;
                let page = fit_page(page, after.is_some());
                self.reply(
                    &conn.id,
                    &ServerFrame::History {
                        room,
                        messages: page.messages,
                        more: page.more,
                    },
                )
                .await;
                Ok(0)
            }
            ClientFrame::Assign { room } => {
                let request = DeskRequest::Assign { agent: &conn.user };
                self.desk_action(conn, &room, request, reference, now_ms)
                    .await
            }
            ClientFrame::Close { room } => {
                self.desk_action(conn, &room, DeskRequest::Close, reference, now_ms)
                    .await
            }
            ClientFrame::Ping => {
                self.reply(&conn.id, &ServerFrame::Pong { ts: now_ms })
                    .await;
                Ok(0)
            }
        }
    }

    fn is_support_room(&self, room: &str) -> bool {
        is_support_room(&self.config.support_room_prefix, room)
    }

    /// `assign` / `close` from an agent: checks, applies, answers with `status`.
    async fn desk_action(
        &self,
        conn: &Connection,
        room: &str,
        request: DeskRequest<'_>,
        reference: Option<String>,
        now_ms: u64,
    ) -> Result<usize, Rejection> {
        if conn.role != Role::Agent {
            return Err(Rejection::new(
                ErrorCode::Forbidden,
                "assigning and closing conversations needs role `agent`",
            ));
        }
        if !room_granted(&conn.grants, room) {
            return Err(Rejection::new(
                ErrorCode::Forbidden,
                format!("the token does not grant room `{room}`"),
            ));
        }
        if !self.is_support_room(room) {
            return Err(Rejection::new(
                ErrorCode::Invalid,
                format!(
                    "`{room}` is not a support conversation (its name must start with `{}`)",
                    self.config.support_room_prefix
                ),
            ));
        }
        let r = RoomRef::new(&conn.tenant, room);
        let (conversation, seq, fanout) = self.desk(&r, request, Some(&conn.user), now_ms).await?;
        let frame = ServerFrame::Status {
            room: room.to_owned(),
            status: conversation.status,
            agent: conversation.agent,
            version: conversation.version,
            seq,
            reference,
        };
        self.reply(&conn.id, &frame).await;
        Ok(fanout)
    }

    /// Applies a desk request to the room's conversation (compare-and-set, re-read on a lost
    /// race), then records the version that stands in the room and the inbox. Recording is
    /// idempotent per version, so a retry after a failed recording completes it. Returns the
    /// conversation, the seq of its system message, and frames delivered.
    async fn desk(
        &self,
        room: &RoomRef,
        request: DeskRequest<'_>,
        by: Option<&str>,
        now_ms: u64,
    ) -> Result<(Conversation, u64, usize), Rejection> {
        let mut races = 0;
        let conversation = loop {
            let current = self.history.conversation(room).await.map_err(unavailable)?;
            match transition(current.as_ref(), request, now_ms)? {
                Transition::Keep(c) => break c,
                Transition::Change(next) => {
                    match self.history.put_conversation(room, &next).await {
                        Ok(()) => break next,
                        Err(StoreError::Conflict(_)) if races < MAX_DESK_RACES => races += 1,
                        Err(e) => return Err(unavailable(e)),
                    }
                }
            }
        };
        let (recorded, in_room) = self
            .record(room, room_event(&conversation, by), now_ms)
            .await?;
        let inbox = RoomRef::new(&room.tenant, INBOX_ROOM);
        let (_, in_inbox) = self
            .record(&inbox, inbox_event(&room.room, &conversation), now_ms)
            .await?;
        Ok((conversation, recorded.message.seq, in_room + in_inbox))
    }

    async fn join(
        &self,
        conn: &Connection,
        room: &str,
        since: Option<u64>,
        now_ms: u64,
    ) -> Result<usize, Rejection> {
        if !(conn.role == Role::Service || room_granted(&conn.grants, room)) {
            return Err(Rejection::new(
                ErrorCode::Forbidden,
                format!("the token does not grant room `{room}`"),
            ));
        }
        if room == INBOX_ROOM && conn.role == Role::User {
            return Err(Rejection::new(
                ErrorCode::Forbidden,
                "the inbox is for agents",
            ));
        }
        if let Some(bound) = &self.config.bound_room
            && bound != room
        {
            return Err(Rejection::new(
                ErrorCode::Invalid,
                format!(
                    "this connection belongs to room `{bound}` (one room per connection on this \
                     deployment); open another connection to join `{room}`"
                ),
            ));
        }
        let r = RoomRef::new(&conn.tenant, room);
        let joined = self
            .connections
            .join_room(&conn.id, room, self.config.max_rooms_per_connection)
            .await
            .map_err(unavailable)?;
        if joined == JoinOutcome::TooManyRooms {
            return Err(Rejection::new(
                ErrorCode::LimitExceeded,
                format!(
                    "a connection may join {} rooms; leave one first",
                    self.config.max_rooms_per_connection
                ),
            ));
        }
        self.history
            .touch_member(&r, &conn.user, now_ms)
            .await
            .map_err(unavailable)?;
        let head = self.history.head(&r).await.map_err(unavailable)?;
        let read_seq = self
            .history
            .read_cursor(&r, &conn.user)
            .await
            .map_err(unavailable)?;
        let members = self
            .history
            .members(&r, MAX_MEMBERS_LISTED)
            .await
            .map_err(unavailable)?;
        let users: Vec<String> = members.iter().map(|m| m.user.clone()).collect();
        let statuses = self
            .connections
            .presence(&conn.tenant, &users)
            .await
            .map_err(unavailable)?;
        let members = members
            .into_iter()
            .zip(statuses)
            .map(|(m, s)| MemberView {
                user: m.user,
                status: s.map_or(VisibleStatus::Offline, Into::into),
                last_seen: m.last_seen,
            })
            .collect();
        let conversation = if self.is_support_room(room) {
            self.history.conversation(&r).await.map_err(unavailable)?
        } else {
            None
        };
        let joined_frame = ServerFrame::Joined {
            room: room.to_owned(),
            head,
            read_seq,
            unread: head.saturating_sub(read_seq),
            members,
            conversation,
        };
        self.reply(&conn.id, &joined_frame).await;
        if let Some(since) = since {
            let query = HistoryQuery {
                after: Some(since),
                before: None,
                limit: MAX_REPLAY,
            };
            let page = self
                .history
                .messages(&r, query)
                .await
                .map_err(unavailable)?;
            let through = page.messages.last().map_or(since, |m| m.seq);
            for m in page.messages {
                self.reply(&conn.id, &ServerFrame::Message(m)).await;
            }
            self.reply(
                &conn.id,
                &ServerFrame::Replayed {
                    room: room.to_owned(),
                    through,
                    more: page.more,
                },
            )
            .await;
        }
        if joined != JoinOutcome::Joined {
            return Ok(0);
        }
        // Announce the user to the room unless another of their connections is there already.
        let subscribers = self
            .connections
            .room_connections(&r)
            .await
            .map_err(unavailable)?;
        if subscribers
            .iter()
            .any(|s| s.user == conn.user && s.conn_id != conn.id)
        {
            return Ok(0);
        }
        let status = self
            .connections
            .presence(&conn.tenant, std::slice::from_ref(&conn.user))
            .await
            .map_err(unavailable)?
            .first()
            .copied()
            .flatten()
            .unwrap_or_default();
        let frame = ServerFrame::Presence {
            user: conn.user.clone(),
            status: status.into(),
            last_seen: now_ms,
        };
        Ok(self
            .deliver(&r, &frame, Skip::Connection(&conn.id), now_ms)
            .await)
    }

    fn member_room(&self, conn: &Connection, room: &str) -> Result<RoomRef, Rejection> {
        if conn.in_room(room) {
            Ok(RoomRef::new(&conn.tenant, room))
        } else {
            Err(Rejection::new(
                ErrorCode::NotMember,
                format!("join room `{room}` first"),
            ))
        }
    }

    async fn amend_own(
        &self,
        conn: &Connection,
        r: &RoomRef,
        seq: u64,
        change: Amendment,
    ) -> Result<MessageView, Rejection> {
        let original = self.history.message(r, seq).await.map_err(unavailable)?;
        let Some(original) = original.filter(|m| !m.deleted) else {
            return Err(Rejection::new(
                ErrorCode::NotFound,
                format!("no message {seq}"),
            ));
        };
        if original.from != conn.user {
            return Err(Rejection::new(
                ErrorCode::Forbidden,
                "only the author may change a message",
            ));
        }
        self.history
            .amend(r, seq, change)
            .await
            .map_err(unavailable)
    }

    /// Server-side publish (HTTP, role `service`): stores and fans out to every connection.
    pub async fn publish(
        &self,
        identity: &Identity,
        room: &str,
        publish: Publish,
        now_ms: u64,
    ) -> Result<Appended, Rejection> {
        if identity.role != Role::Service {
            return Err(Rejection::new(
                ErrorCode::Forbidden,
                "publishing needs role `service`",
            ));
        }
        validate_name("room", room)?;
        if room == INBOX_ROOM {
            // The desk's queue: only the service's own status notices may appear there.
            return Err(Rejection::new(
                ErrorCode::Forbidden,
                "only the service writes in the inbox",
            ));
        }
        validate_client_id(&publish.id)?;
        validate_body(&publish.body)?;
        validate_meta(publish.meta.as_ref())?;
        // A bot named in `from` is not the service token's holder: do not show its name.
        let (from, name) = match publish.from {
            Some(from) => (from, None),
            None => (identity.user.clone(), identity.name.clone()),
        };
        validate_name("from", &from)?;
        let r = RoomRef::new(&identity.tenant, room);
        let msg = NewMessage {
            id: publish.id,
            from,
            name,
            body: publish.body,
            meta: publish.meta,
            ts: now_ms,
        };
        self.record(&r, msg, now_ms)
            .await
            .map(|(appended, _)| appended)
    }

    /// History over HTTP: any room the token grants (every room of the tenant for `service`).
    pub async fn history_page(
        &self,
        identity: &Identity,
        room: &str,
        query: HistoryQuery,
    ) -> Result<Page, Rejection> {
        validate_name("room", room)?;
        if query.limit == 0 || query.limit > MAX_HISTORY_LIMIT {
            return Err(Rejection::new(
                ErrorCode::Invalid,
                format!("limit must be 1..={MAX_HISTORY_LIMIT}"),
            ));
        }
        if !(identity.role == Role::Service || identity.may_join(room)) {
            return Err(Rejection::new(
                ErrorCode::Forbidden,
                format!("the token does not grant room `{room}`"),
            ));
        }
        let r = RoomRef::new(&identity.tenant, room);
        self.history.messages(&r, query).await.map_err(unavailable)
    }

    /// Broadcasts and cleans up recipients found gone. Returns frames delivered.
    async fn deliver(
        &self,
        room: &RoomRef,
        frame: &ServerFrame,
        skip: Skip<'_>,
        now_ms: u64,
    ) -> usize {
        let (delivered, gone) = self.broadcast(room, frame, skip).await;
        for id in gone {
            self.disconnect(&id, now_ms).await;
        }
        delivered
    }

    /// Sends `frame` to the room's subscribers with bounded concurrency. One failing recipient
    /// never stops the others. Returns (delivered, connections found gone).
    async fn broadcast(
        &self,
        room: &RoomRef,
        frame: &ServerFrame,
        skip: Skip<'_>,
    ) -> (usize, Vec<String>) {
        let subscribers = match self.connections.room_connections(room).await {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(room = %room.key(), error = %e, "fan-out skipped: cannot list subscribers");
                return (0, Vec::new());
            }
        };
        let text = frame.to_json();
        let targets = subscribers.into_iter().filter(|s| match skip {
            Skip::Nobody => true,
            Skip::Connection(id) => s.conn_id != id,
            Skip::User(user) => s.user != user,
        });
        let results: Vec<(String, Result<(), GatewayError>)> = futures::stream::iter(targets)
            .map(|s| {
                let text = &text;
                async move {
                    let r = self.gateway.send(&s.conn_id, text).await;
                    (s.conn_id, r)
                }
            })
            .buffer_unordered(FANOUT_CONCURRENCY)
            .collect()
            .await;
        let mut delivered = 0;
        let mut gone = Vec::new();
        for (conn_id, result) in results {
            match result {
                Ok(()) => delivered += 1,
                Err(GatewayError::Gone) => gone.push(conn_id),
                Err(e) => tracing::warn!(conn = %conn_id, error = %e, "fan-out send failed"),
            }
        }
        (delivered, gone)
    }

    async fn reply(&self, conn_id: &str, frame: &ServerFrame) {
        if let Err(e) = self.gateway.send(conn_id, &frame.to_json()).await {
            tracing::debug!(conn = conn_id, error = %e, "reply not delivered");
        }
    }

    /// Closes a connection through the gateway, logging a failure.
    /// A `closing` frame goes first: API Gateway's Management API cannot set a close code, so
    /// that frame is how clients there learn why (4001, 4008, …).
    pub async fn close_with(&self, conn_id: &str, code: u16, reason: &str) {
        let notice = ServerFrame::Closing {
            code,
            reason: reason.to_owned(),
        };
        self.reply(conn_id, &notice).await;
        if let Err(e) = self.gateway.close(conn_id, code, reason).await {
            tracing::debug!(conn = conn_id, error = %e, "close not delivered");
        }
    }
}

/// Cuts a history page to fit one server frame ([`MAX_SERVER_FRAME_BYTES`]), keeping the messages
/// next to the page's anchor: the oldest when paging forward (`after`), else the newest. What is
/// cut is still there for the next page, so `more` becomes true.
pub(crate) fn fit_page(mut page: Page, forward: bool) -> Page {
    // Room for the frame's own fields around the messages.
    const ENVELOPE_BYTES: usize = 512;
    let budget = MAX_SERVER_FRAME_BYTES - ENVELOPE_BYTES;
    let size = |m: &MessageView| serde_json::to_string(m).map_or(usize::MAX, |s| s.len() + 1);
    let mut used = 0;
    let keep = if forward {
        page.messages
            .iter()
            .take_while(|m| {
                used += size(m);
                used <= budget
            })
            .count()
    } else {
        page.messages
            .iter()
            .rev()
            .take_while(|m| {
                used += size(m);
                used <= budget
            })
            .count()
    };
    let cut = page.messages.len() - keep;
    if cut > 0 {
        if forward {
            page.messages.truncate(keep);
        } else {
            page.messages.drain(..cut);
        }
        page.more = true;
    }
    page
}

fn typing_ttl(state: TypingState) -> u64 {
    match state {
        TypingState::Start => TYPING_TTL_MS,
        TypingState::Stop => 0,
    }
}

#[cfg(test)]
#[path = "service_tests.rs"]
mod tests;
