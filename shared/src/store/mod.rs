//! The store contract: [`ConnectionStore`] (who is connected and where; ephemeral) and
//! [`HistoryStore`] (messages, sequence, idempotency, read cursors, members; durable), their
//! data types and errors, the [`rules`] every backend shares so they behave identically, and the
//! in-memory backend ([`memory`]), which runs the same conformance suites as every other backend
//! (`roomcast-testkit`). [`outbox`] is the port integration events wait in for delivery
//! ([`Outbox`]).
//!
//! The split lets the local server keep live state in memory and history on disk, while the
//! DynamoDB backend implements both on one table. Futures are `Send` on native targets and not on
//! wasm32, where Durable Object handles are `!Send`.

pub mod attachments;
pub mod desk;
pub mod memory;
pub mod memory_attachments;
pub mod outbox;
pub mod rules;

pub use attachments::{AttachmentIndex, BlobHead, BlobStore, LinkedBytes};
pub use desk::{DeskDirectory, DeskKind, DeskRecord, MemoryDesk};
pub use outbox::{
    DeadLetter, DeliveryBacklog, EndpointRegistry, EventJournal, EventLog, Journaled, Outbox,
    OutboxEntry,
};

use serde::{Deserialize, Serialize};

use crate::MaybeSendSync;
use crate::attachments::AttachmentView;
use crate::auth::{Identity, Role};
use crate::protocol::{Conversation, MessageView, PresenceStatus, ReplyView};
use crate::ratelimit::{RateDecision, RatePolicy, RateState};

/// Errors of every store backend.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StoreError {
    /// The item does not exist (or has expired).
    #[error("not found")]
    NotFound,
    /// A concurrent writer won; the operation may be retried.
    #[error("conflict: {0}")]
    Conflict(String),
    /// The backend is throttling or unreachable; nothing was written. Retryable.
    #[error("store unavailable: {0}")]
    Unavailable(String),
    /// Anything else (corrupt data, misconfiguration).
    #[error("store failure: {0}")]
    Other(String),
}

/// A room within its tenant. Tenants never share rooms.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct RoomRef {
    /// Tenant id.
    pub tenant: String,
    /// Room name within the tenant.
    pub room: String,
}

impl RoomRef {
    /// `tenant`'s `room`.
    pub fn new(tenant: impl Into<String>, room: impl Into<String>) -> Self {
        Self {
            tenant: tenant.into(),
            room: room.into(),
        }
    }

    /// `tenant/room`: a storage key (names cannot contain `/`).
    pub fn key(&self) -> String {
        format!("{}/{}", self.tenant, self.room)
    }
}

/// A live connection.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Connection {
    /// Gateway connection id.
    pub id: String,
    /// Tenant id.
    pub tenant: String,
    /// User id.
    pub user: String,
    /// Display name.
    pub name: Option<String>,
    /// Role.
    pub role: Role,
    /// Room grants from the token.
    pub grants: Vec<String>,
    /// When it connected, epoch milliseconds.
    pub connected_at_ms: u64,
    /// When its token expires, epoch milliseconds.
    pub token_expires_at_ms: u64,
    /// Rooms joined, in join order.
    pub rooms: Vec<String>,
    /// Rate-limit bucket.
    pub rate: RateState,
}

impl Connection {
    /// A fresh connection for `identity`.
    pub fn new(id: impl Into<String>, identity: &Identity, now_ms: u64) -> Self {
        Self {
            id: id.into(),
            tenant: identity.tenant.clone(),
            user: identity.user.clone(),
            name: identity.name.clone(),
            role: identity.role,
            grants: identity.rooms.clone(),
            connected_at_ms: now_ms,
            token_expires_at_ms: identity.expires_at_ms,
            rooms: Vec::new(),
            rate: RateState::default(),
        }
    }

    /// Whether this connection has joined `room`.
    pub fn in_room(&self, room: &str) -> bool {
        self.rooms.iter().any(|r| r == room)
    }
}

/// One connection subscribed to a room.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Subscriber {
    /// Connection id.
    pub conn_id: String,
    /// Its user.
    pub user: String,
}

/// What [`ConnectionStore::room_headcount`] answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Headcount {
    /// Connections subscribed to the room.
    pub connections: usize,
    /// The user asked about has a connection there other than the one named.
    pub user_elsewhere: bool,
    /// The room's subscribers, when the store listed them to count: a caller about to
    /// broadcast to the room uses them instead of listing it again (a Query on DynamoDB).
    pub listed: Option<Vec<Subscriber>>,
}

/// What [`ConnectionStore::admit_frame`] answers for a live connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Admitted {
    /// The connection the frame came on.
    pub connection: Connection,
    /// Whether the frame is within the connection's rate.
    pub rate: RateDecision,
}

/// A rate bucket work is charged to ([`ConnectionStore::charge_rate`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RateBucket<'a> {
    /// A live connection's, which its frames take tokens from.
    Connection(&'a str),
    /// A user's HTTP API requests ([`ConnectionStore::take_request_token`]).
    Requests {
        /// Tenant id.
        tenant: &'a str,
        /// User id.
        user: &'a str,
    },
}

/// Result of [`ConnectionStore::join_room`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JoinOutcome {
    /// Newly joined.
    Joined,
    /// Was already in the room.
    AlreadyJoined,
    /// The connection is in [`crate::limits::MAX_ROOMS_PER_CONNECTION`] rooms already.
    TooManyRooms,
}

/// Live state: connections, their rooms, presence status, rate buckets.
#[cfg_attr(not(target_arch = "wasm32"), async_trait::async_trait)]
#[cfg_attr(target_arch = "wasm32", async_trait::async_trait(?Send))]
pub trait ConnectionStore: MaybeSendSync {
    /// Stores a new connection (replacing one with the same id).
    async fn put_connection(&self, conn: &Connection) -> Result<(), StoreError>;
    /// The connection, if live.
    async fn connection(&self, id: &str) -> Result<Option<Connection>, StoreError>;
    /// Removes a connection and its room subscriptions; returns what was removed.
    async fn remove_connection(&self, id: &str) -> Result<Option<Connection>, StoreError>;
    /// Subscribes a connection to a room of its tenant. `NotFound` when the connection is gone.
    async fn join_room(
        &self,
        conn_id: &str,
        room: &str,
        max_rooms: usize,
    ) -> Result<JoinOutcome, StoreError>;
    /// Unsubscribes; returns whether it was subscribed.
    async fn leave_room(&self, conn_id: &str, room: &str) -> Result<bool, StoreError>;
    /// Every connection subscribed to the room.
    async fn room_connections(&self, room: &RoomRef) -> Result<Vec<Subscriber>, StoreError>;
    /// How many connections the room has, and whether `user` has one there other than
    /// `conn_id`: what an arrival or a departure needs to know, on every one of them. The
    /// default lists the room; a backend that can count answers without listing.
    async fn room_headcount(
        &self,
        room: &RoomRef,
        user: &str,
        conn_id: &str,
    ) -> Result<Headcount, StoreError> {
        let subscribers = self.room_connections(room).await?;
        Ok(Headcount {
            connections: subscribers.len(),
            user_elsewhere: subscribers
                .iter()
                .any(|s| s.user == user && s.conn_id != conn_id),
            listed: Some(subscribers),
        })
    }
    /// Every live connection of a user.
    async fn user_connections(
        &self,
        tenant: &str,
        user: &str,
    ) -> Result<Vec<Connection>, StoreError>;
    /// Takes a rate token for the connection. `NotFound` when the connection is gone.
    async fn take_rate_token(
        &self,
        conn_id: &str,
        policy: &RatePolicy,
        now_ms: u64,
    ) -> Result<RateDecision, StoreError>;
    /// Takes a rate token for an HTTP API request of `user` of `tenant`: one bucket per user
    /// and tenant, shared by every request whatever answers it, new (full) on first use; a
    /// backend may forget it once idle ([`RateState::is_idle`]).
    async fn take_request_token(
        &self,
        tenant: &str,
        user: &str,
        policy: &RatePolicy,
        now_ms: u64,
    ) -> Result<RateDecision, StoreError>;
    /// Charges `tokens` more to `bucket` for the work an admitted frame or request did beyond
    /// its own token ([`RateState::charge`]: no decision, the bucket may go into debt).
    /// `NotFound` when a connection's bucket is charged and the connection is gone.
    async fn charge_rate(
        &self,
        bucket: RateBucket<'_>,
        tokens: u32,
        policy: &RatePolicy,
        now_ms: u64,
    ) -> Result<(), StoreError>;
    /// A client frame arrived on the connection: the connection (`None` when it is gone) and
    /// the rate decision for the frame. A backend that reads the connection to take the token
    /// answers both from that one read; [`rules::admission`] is the rule for the answer.
    async fn admit_frame(
        &self,
        conn_id: &str,
        policy: &RatePolicy,
        now_ms: u64,
    ) -> Result<Option<Admitted>, StoreError> {
        let Some(connection) = self.connection(conn_id).await? else {
            return Ok(None);
        };
        let token = self.take_rate_token(conn_id, policy, now_ms).await;
        Ok(rules::admission(conn_id, connection, token))
    }
    /// Records the status a user chose.
    async fn set_status(
        &self,
        tenant: &str,
        user: &str,
        status: PresenceStatus,
    ) -> Result<(), StoreError>;
    /// For each user: their chosen status when they have a live connection, `None` when offline.
    async fn presence(
        &self,
        tenant: &str,
        users: &[String],
    ) -> Result<Vec<Option<PresenceStatus>>, StoreError>;
}

/// A message to append.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NewMessage {
    /// The client's id (idempotency key, scoped to room and sender).
    pub id: String,
    /// Sender's user id.
    pub from: String,
    /// Sender's display name.
    pub name: Option<String>,
    /// The author's role ([`MessageView::role`]): the connection's, `service` for an HTTP
    /// publish and for the desk's `$system` lines.
    pub role: Role,
    /// The service user publishing it in `from`'s name ([`MessageView::via`]).
    pub via: Option<String>,
    /// Text.
    pub body: String,
    /// Application data.
    pub meta: Option<serde_json::Value>,
    /// Files, checked and claimed by the service.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub attachments: Vec<AttachmentView>,
    /// The message it answers, as it stood when this one was sent (the service brings it up to
    /// date whenever it reads the reply: [`MessageView::reply_to`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reply_to: Option<Box<ReplyView>>,
    /// Timestamp to store, epoch milliseconds.
    pub ts: u64,
}

/// Result of [`HistoryStore::append`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Appended {
    /// The stored message (the original one for a duplicate).
    pub message: MessageView,
    /// The id was already stored; nothing new was written.
    pub duplicate: bool,
}

/// A page request. With `after`: the oldest messages after it (up to `before`). Without: the
/// newest messages before `before` (or the head). Pages are always oldest first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct HistoryQuery {
    /// Exclusive lower bound.
    pub after: Option<u64>,
    /// Exclusive upper bound.
    pub before: Option<u64>,
    /// Page size.
    pub limit: u32,
}

/// A page of messages, oldest first.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Page {
    /// The messages.
    pub messages: Vec<MessageView>,
    /// More messages lie beyond the page in the direction paged.
    pub more: bool,
}

/// A change to a stored message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Amendment {
    /// Replace the body.
    Edit {
        /// New text.
        body: String,
        /// When, epoch milliseconds.
        at_ms: u64,
    },
    /// Tombstone it: the body, meta, files, reactions and reply reference go, the seq stays.
    Delete {
        /// When, epoch milliseconds.
        at_ms: u64,
        /// The agent who deleted another's message in a conversation they handle; the
        /// tombstone's meta keeps it (`deleted_by`).
        moderator: Option<String>,
    },
    /// Add or remove `user`'s `emoji` reaction ([`rules::react`]): no change when the user
    /// has it already (adding) or has none (removing), when the message is deleted, or when
    /// it would pass the limits.
    React {
        /// Who reacts.
        user: String,
        /// The emoji (validated).
        emoji: String,
        /// Add (`react`) or remove (`unreact`).
        add: bool,
        /// When, epoch milliseconds.
        at_ms: u64,
    },
}

/// A room member (anyone who has joined it).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Member {
    /// User id.
    pub user: String,
    /// Last time seen in the room, epoch milliseconds.
    pub last_seen: u64,
}

/// A room's state as a joining user sees it ([`HistoryStore::room_state`]).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RoomState {
    /// Highest seq.
    pub head: u64,
    /// The user's read cursor.
    pub read_seq: u64,
    /// Members, most recently seen first.
    pub members: Vec<Member>,
    /// The support conversation, when asked for and there is one.
    pub conversation: Option<Conversation>,
}

/// Durable state: messages with their gap-free per-room seq, idempotency keys, read cursors,
/// members and the room's support conversation.
#[cfg_attr(not(target_arch = "wasm32"), async_trait::async_trait)]
#[cfg_attr(target_arch = "wasm32", async_trait::async_trait(?Send))]
pub trait HistoryStore: MaybeSendSync {
    /// Appends with the next seq, durably, unless `(room, from, id)` is stored already.
    async fn append(&self, room: &RoomRef, msg: NewMessage) -> Result<Appended, StoreError>;
    /// [`HistoryStore::append`]s each of `messages` in order, with one result each: seqs in a
    /// room follow the order of the list. A backend that commits in batches stores them all
    /// with one commit, so messages sent together wait for one fsync, not one each.
    async fn append_all(
        &self,
        messages: Vec<(RoomRef, NewMessage)>,
    ) -> Vec<Result<Appended, StoreError>> {
        let mut results = Vec::with_capacity(messages.len());
        for (room, msg) in messages {
            results.push(self.append(&room, msg).await);
        }
        results
    }
    /// Highest seq in the room (0 when empty).
    async fn head(&self, room: &RoomRef) -> Result<u64, StoreError>;
    /// A page of messages.
    async fn messages(&self, room: &RoomRef, query: HistoryQuery) -> Result<Page, StoreError>;
    /// One message.
    async fn message(&self, room: &RoomRef, seq: u64) -> Result<Option<MessageView>, StoreError>;
    /// Edits or deletes a message; `NotFound` when there is none.
    async fn amend(
        &self,
        room: &RoomRef,
        seq: u64,
        change: Amendment,
    ) -> Result<MessageView, StoreError>;
    /// Moves a user's read cursor forward to `seq`; returns the cursor after the call and
    /// whether it moved. Never moves it back.
    async fn advance_read(
        &self,
        room: &RoomRef,
        user: &str,
        seq: u64,
    ) -> Result<(u64, bool), StoreError>;
    /// A user's read cursor (0 when none).
    async fn read_cursor(&self, room: &RoomRef, user: &str) -> Result<u64, StoreError>;
    /// Records that `user` is (or was last) in the room at `at_ms`.
    async fn touch_member(&self, room: &RoomRef, user: &str, at_ms: u64) -> Result<(), StoreError>;
    /// Up to `limit` members, most recently seen first.
    async fn members(&self, room: &RoomRef, limit: usize) -> Result<Vec<Member>, StoreError>;
    /// What a `joined` frame tells `user`: the head, their read cursor, up to `members_limit`
    /// members, and (when `with_conversation`) the support conversation. A backend that keeps
    /// a room's state together answers it with one read.
    async fn room_state(
        &self,
        room: &RoomRef,
        user: &str,
        members_limit: usize,
        with_conversation: bool,
    ) -> Result<RoomState, StoreError> {
        Ok(RoomState {
            head: self.head(room).await?,
            read_seq: self.read_cursor(room, user).await?,
            // A big room lists none: skip the read of every member (and its sort).
            members: if members_limit == 0 {
                Vec::new()
            } else {
                self.members(room, members_limit).await?
            },
            conversation: if with_conversation {
                self.conversation(room).await?
            } else {
                None
            },
        })
    }
    /// The room's support conversation, if it ever had one.
    async fn conversation(&self, room: &RoomRef) -> Result<Option<Conversation>, StoreError>;
    /// Stores `next` only over version `next.version - 1` (over nothing when that is 0), else
    /// `Conflict`: concurrent changes (two agents accepting at once) cannot both win.
    async fn put_conversation(&self, room: &RoomRef, next: &Conversation)
    -> Result<(), StoreError>;
}
