//! Live state of one `ChatRoom`: its hibernatable WebSockets. [`Sockets`] keeps the
//! connections in the core's [`MemoryConnections`] (indexes by room and user, presence, rate
//! buckets) and writes each connection through to its socket's attachment, which the runtime
//! keeps while the object hibernates. When the object wakes up, a new instance rebuilds the
//! memory store from the attachments ([`Sockets::load`]), so nothing live is lost.
//!
//! [`EdgeConnections`] is the [`ConnectionStore`] and [`EdgeGateway`] the [`Gateway`] the core
//! service runs on; both are views of one [`Sockets`].

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::rc::Rc;

use roomcast_core::gateway::{Gateway, GatewayError};
use roomcast_core::lifecycle::{ConnectionClock, LifecyclePolicy, Timeout};
use roomcast_core::protocol::PresenceStatus;
use roomcast_core::ratelimit::{RateDecision, RatePolicy};
use roomcast_core::store::memory::MemoryConnections;
use roomcast_core::store::{
    Connection, ConnectionStore, Headcount, JoinOutcome, RateBucket, RoomRef, StoreError,
    Subscriber,
};
use worker::{State, WebSocket};

use crate::attachment::Attachment;
use crate::now_ms;
use crate::socket::close_reason;

/// An accepted socket and its connection's timers.
struct Open {
    ws: WebSocket,
    /// `None` while the service connects it: the timers start with the connection.
    clock: Option<ConnectionClock>,
}

/// The sockets of one Durable Object and the connections on them.
pub struct Sockets {
    /// `None` for a store without sockets (the conformance run).
    state: Option<Rc<State>>,
    mem: MemoryConnections,
    open: RefCell<HashMap<String, Open>>,
    loaded: Cell<bool>,
}

impl Sockets {
    /// The sockets of the object with `state`.
    pub fn new(state: Rc<State>) -> Self {
        Self::with_state(Some(state))
    }

    /// A store with no sockets: connections live in memory only.
    pub fn detached() -> Self {
        Self::with_state(None)
    }

    fn with_state(state: Option<Rc<State>>) -> Self {
        Self {
            state,
            mem: MemoryConnections::new(),
            open: RefCell::new(HashMap::new()),
            loaded: Cell::new(false),
        }
    }

    /// Rebuilds the connections from the socket attachments once per object instance (after a
    /// wake-up from hibernation, the runtime hands a new instance the sockets it kept). Returns
    /// the sockets that had no usable attachment, for the caller to close.
    pub async fn load(&self) -> Vec<WebSocket> {
        if self.loaded.replace(true) {
            return Vec::new();
        }
        let Some(state) = &self.state else {
            return Vec::new();
        };
        let mut orphans = Vec::new();
        // The raw calls report failures where the `State` wrappers panic.
        let raw = state.as_raw();
        let sockets = raw.get_websockets().unwrap_or_else(|e| {
            tracing::error!(error = ?e, "cannot list the object's sockets");
            Vec::new()
        });
        for ws in sockets.into_iter().map(WebSocket::from) {
            let id = raw
                .get_tags(ws.as_ref())
                .ok()
                .and_then(|tags| tags.into_iter().next());
            let attachment = ws
                .deserialize_attachment::<String>()
                .ok()
                .flatten()
                .map(|json| Attachment::decode(&json));
            match (id, attachment) {
                (Some(id), Some(Ok(a))) if a.conn.id == id => {
                    // Memory stores cannot fail.
                    let _ = self.mem.put_connection(&a.conn).await;
                    let _ = self
                        .mem
                        .set_status(&a.conn.tenant, &a.conn.user, a.status)
                        .await;
                    self.open.borrow_mut().insert(
                        id,
                        Open {
                            ws,
                            clock: Some(a.clock),
                        },
                    );
                }
                (id, attachment) => {
                    tracing::warn!(?id, ?attachment, "socket without connection state");
                    orphans.push(ws);
                }
            }
        }
        tracing::debug!(connections = self.open.borrow().len(), "sockets loaded");
        orphans
    }

    /// Registers the accepted socket of connection `id` before the service connects it: the
    /// connect joins the room, and from then on the room's frames reach the connection (a
    /// connection without a socket would count as gone and be disconnected).
    pub fn accepted(&self, id: &str, ws: WebSocket) {
        self.open
            .borrow_mut()
            .insert(id.to_owned(), Open { ws, clock: None });
    }

    /// Starts the timers of connection `id` once the service has connected it, and writes the
    /// socket's attachment.
    pub async fn connected(&self, id: &str, clock: ConnectionClock) -> Result<(), StoreError> {
        if let Some(open) = self.open.borrow_mut().get_mut(id) {
            open.clock = Some(clock);
        }
        self.persist(id).await
    }

    /// Forgets a socket (it closed).
    pub fn unregister(&self, id: &str) {
        self.open.borrow_mut().remove(id);
    }

    /// The timers of connection `id`'s socket, once connected and while open.
    pub fn clock(&self, id: &str) -> Option<ConnectionClock> {
        self.open.borrow().get(id).and_then(|o| o.clock)
    }

    /// Records inbound activity (written with the next store write: every routed frame takes a
    /// rate token, which persists the connection).
    pub fn activity(&self, id: &str, now_ms: u64) {
        self.with_clock(id, |clock| clock.activity(now_ms));
    }

    /// What is due on connection `id`'s socket at `now_ms` (see
    /// [`ConnectionClock::handle_timeout`]). A close it answers counts as requested from now
    /// on; the gateway's close that follows writes that to the attachment.
    pub fn handle_timeout(
        &self,
        id: &str,
        policy: &LifecyclePolicy,
        now_ms: u64,
    ) -> Option<Timeout> {
        self.with_clock(id, |clock| clock.handle_timeout(policy, now_ms))
            .flatten()
    }

    /// The connection ids of every connected socket.
    pub fn ids(&self) -> Vec<String> {
        self.open
            .borrow()
            .iter()
            .filter(|(_, o)| o.clock.is_some())
            .map(|(id, _)| id.clone())
            .collect()
    }

    /// The earliest deadline of any connected socket, epoch milliseconds: when the alarm is due.
    pub fn next_timeout(&self, policy: &LifecyclePolicy) -> Option<u64> {
        self.open
            .borrow()
            .values()
            .filter_map(|o| o.clock)
            .map(|clock| clock.poll_timeout(policy))
            .min()
    }

    /// Connection `id` as the store holds it (on a socket, or not yet).
    pub async fn connection(&self, id: &str) -> Option<Connection> {
        self.mem.connection(id).await.ok().flatten()
    }

    /// Writes connection `id` through to its socket's attachment (nothing when it has no socket,
    /// or is not connected yet; when the connection is gone, the attachment is cleared).
    async fn persist(&self, id: &str) -> Result<(), StoreError> {
        let conn = self.mem.connection(id).await?;
        let status = match &conn {
            Some(c) => self
                .mem
                .presence(&c.tenant, std::slice::from_ref(&c.user))
                .await?
                .first()
                .copied()
                .flatten()
                .unwrap_or_default(),
            None => PresenceStatus::default(),
        };
        let open = self.open.borrow();
        let Some((ws, Some(clock))) = open.get(id).map(|o| (&o.ws, o.clock)) else {
            return Ok(());
        };
        let stored = match conn {
            Some(conn) => Some(
                Attachment {
                    conn,
                    status,
                    clock,
                }
                .encode()?,
            ),
            None => None,
        };
        ws.serialize_attachment(stored)
            .map_err(|e| StoreError::Other(format!("socket attachment: {e}")))
    }

    fn ws(&self, id: &str) -> Option<WebSocket> {
        self.open.borrow().get(id).map(|o| o.ws.clone())
    }

    /// Applies `f` to the timers of connection `id`'s socket, once connected.
    fn with_clock<T>(&self, id: &str, f: impl FnOnce(&mut ConnectionClock) -> T) -> Option<T> {
        self.open.borrow_mut().get_mut(id)?.clock.as_mut().map(f)
    }
}

/// The [`ConnectionStore`] over [`Sockets`].
pub struct EdgeConnections(pub Rc<Sockets>);

#[async_trait::async_trait(?Send)]
impl ConnectionStore for EdgeConnections {
    async fn put_connection(&self, conn: &Connection) -> Result<(), StoreError> {
        self.0.mem.put_connection(conn).await?;
        self.0.persist(&conn.id).await
    }

    async fn connection(&self, id: &str) -> Result<Option<Connection>, StoreError> {
        self.0.mem.connection(id).await
    }

    async fn remove_connection(&self, id: &str) -> Result<Option<Connection>, StoreError> {
        let removed = self.0.mem.remove_connection(id).await?;
        self.0.persist(id).await?;
        Ok(removed)
    }

    async fn join_room(
        &self,
        conn_id: &str,
        room: &str,
        max_rooms: usize,
    ) -> Result<JoinOutcome, StoreError> {
        let outcome = self.0.mem.join_room(conn_id, room, max_rooms).await?;
        if outcome == JoinOutcome::Joined {
            self.0.persist(conn_id).await?;
        }
        Ok(outcome)
    }

    async fn leave_room(&self, conn_id: &str, room: &str) -> Result<bool, StoreError> {
        let left = self.0.mem.leave_room(conn_id, room).await?;
        if left {
            self.0.persist(conn_id).await?;
        }
        Ok(left)
    }

    async fn room_connections(&self, room: &RoomRef) -> Result<Vec<Subscriber>, StoreError> {
        self.0.mem.room_connections(room).await
    }

    async fn room_headcount(
        &self,
        room: &RoomRef,
        user: &str,
        conn_id: &str,
    ) -> Result<Headcount, StoreError> {
        self.0.mem.room_headcount(room, user, conn_id).await
    }

    async fn user_connections(
        &self,
        tenant: &str,
        user: &str,
    ) -> Result<Vec<Connection>, StoreError> {
        self.0.mem.user_connections(tenant, user).await
    }

    async fn take_rate_token(
        &self,
        conn_id: &str,
        policy: &RatePolicy,
        now_ms: u64,
    ) -> Result<RateDecision, StoreError> {
        let decision = self.0.mem.take_rate_token(conn_id, policy, now_ms).await?;
        self.0.persist(conn_id).await?;
        Ok(decision)
    }

    /// In memory only: HTTP API requests reach the object of the room they name, so the bucket
    /// is per user and room here, and starts full again after the object is evicted.
    async fn take_request_token(
        &self,
        tenant: &str,
        user: &str,
        policy: &RatePolicy,
        now_ms: u64,
    ) -> Result<RateDecision, StoreError> {
        self.0
            .mem
            .take_request_token(tenant, user, policy, now_ms)
            .await
    }

    async fn charge_rate(
        &self,
        bucket: RateBucket<'_>,
        tokens: u32,
        policy: &RatePolicy,
        now_ms: u64,
    ) -> Result<(), StoreError> {
        self.0
            .mem
            .charge_rate(bucket, tokens, policy, now_ms)
            .await?;
        if let RateBucket::Connection(conn_id) = bucket {
            self.0.persist(conn_id).await?;
        }
        Ok(())
    }

    async fn set_status(
        &self,
        tenant: &str,
        user: &str,
        status: PresenceStatus,
    ) -> Result<(), StoreError> {
        self.0.mem.set_status(tenant, user, status).await?;
        for conn in self.0.mem.user_connections(tenant, user).await? {
            self.0.persist(&conn.id).await?;
        }
        Ok(())
    }

    async fn presence(
        &self,
        tenant: &str,
        users: &[String],
    ) -> Result<Vec<Option<PresenceStatus>>, StoreError> {
        self.0.mem.presence(tenant, users).await
    }
}

/// The [`Gateway`] over [`Sockets`]: sends on the hibernatable WebSocket itself.
pub struct EdgeGateway(pub Rc<Sockets>);

#[async_trait::async_trait(?Send)]
impl Gateway for EdgeGateway {
    async fn send(&self, conn_id: &str, frame: &str) -> Result<(), GatewayError> {
        let ws = self.0.ws(conn_id).ok_or(GatewayError::Gone)?;
        // The runtime buffers outbound frames; a send fails only on a socket that is closed.
        ws.send_with_str(frame).map_err(|e| {
            tracing::debug!(conn = conn_id, error = %e, "send failed: socket closed");
            GatewayError::Gone
        })
    }

    async fn close(&self, conn_id: &str, code: u16, reason: &str) -> Result<(), GatewayError> {
        let ws = self.0.ws(conn_id).ok_or(GatewayError::Gone)?;
        // Frames still in flight from the client are not routed from now on, and the alarm
        // forgets the socket if the client never completes the close.
        self.0
            .with_clock(conn_id, |clock| clock.close_requested(code, now_ms()));
        if let Err(e) = self.0.persist(conn_id).await {
            tracing::warn!(conn = conn_id, error = %e, "closing state not persisted");
        }
        ws.close(Some(code), Some(close_reason(reason)))
            .map_err(|e| GatewayError::Other(format!("close: {e}")))
    }
}
