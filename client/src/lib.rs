//! A client for roomcast's protocol v1 (docs/protocol.md) over a WebSocket, with the core's
//! typed frames ([`roomcast_core::protocol`]).
//!
//! - [`Client::connect`] opens a connection with a token (offered in `Sec-WebSocket-Protocol`
//!   next to `roomcast.v1`) and hands back the client and its [`Events`].
//! - [`Client::join`], [`Client::send`] (awaits the message's durable `ack`),
//!   [`Client::history`], and the notices [`Client::typing`], [`Client::read`] and
//!   [`Client::presence`]. A refusal is a [`ClientError::Rejected`] with the protocol's stable
//!   [`ErrorCode`].
//! - [`Events::next`] yields what others do: messages (each seq once, whether it came live or in
//!   a replay), edits, deletions, typing, read cursors, presence, and the connection's own ups
//!   and downs.
//!
//! **Nothing lost, nothing twice.** When the connection drops, the client reconnects with
//! backoff, rejoins every room with `join {since}` from the last seq it delivered without a gap
//! (paging with `history {after}` while the replay says `more`), and sends again every message
//! not yet acknowledged, by its id: the server stores an id once and acknowledges a repeat with
//! the original seq. A [`Client::send`] therefore resolves once the message is stored, however
//! many connections that took. The bookkeeping behind this is in [`resume`], free of I/O.
//!
//! ```no_run
//! # async fn run(token: String) -> Result<(), roomcast_client::ClientError> {
//! use roomcast_client::{Client, Config};
//! use roomcast_core::protocol::ServerFrame;
//!
//! let (client, mut events) = Client::connect(Config::new("ws://127.0.0.1:3001/", token)).await?;
//! client.join("support-1").await?;
//! let ack = client.send("support-1", "hello").await?;
//! println!("stored as seq {}", ack.seq);
//! while let Some(event) = events.next().await {
//!     if let Some(ServerFrame::Message(message)) = event.frame() {
//!         println!("{}: {}", message.from, message.body.unwrap_or_default());
//!     }
//! }
//! # Ok(())
//! # }
//! ```
//!
//! `examples/echo_bot/` is a bot built on it.

pub mod codec;
mod driver;
pub mod resume;

use std::fmt::Display;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use roomcast_core::protocol::{
    ClientFrame, Conversation, ErrorCode, MemberView, MessageView, PresenceStatus, Rejection,
    ServerFrame, TypingState,
};
use serde_json::Value;
use tokio::sync::{mpsc, oneshot};

use crate::driver::{Command, Driver};
pub use crate::resume::{Backoff, Outgoing};

/// Where and how to connect.
#[derive(Clone)]
pub struct Config {
    /// The WebSocket URL, e.g. `ws://127.0.0.1:3001/`.
    pub url: String,
    /// The JWT (protocol.md §3).
    pub token: String,
    /// Delays between reconnect attempts.
    pub backoff: Backoff,
    /// How long a sent message may wait for its ack before it is sent again (by its id, so it
    /// is stored once).
    pub ack_timeout: Duration,
    /// How long `join`, `leave` and `history` wait for their reply.
    pub request_timeout: Duration,
    /// After this long without sending, the client sends a `ping`, so the server's idle
    /// timeout (10 minutes by default) does not close a quiet connection.
    pub keepalive: Duration,
    /// Where a fresh token comes from when the server closes with 4001 (the token expired) or
    /// refuses a reconnect with 401; without one, either stops the client.
    pub token_source: Option<TokenSource>,
}

/// The result of asking a [`TokenSource`]: a token, or why there is none.
pub type TokenFuture = Pin<Box<dyn Future<Output = Result<String, String>> + Send>>;

/// The caller's way to get a fresh token (from its backend, say), asked once per 4001 close.
#[derive(Clone)]
pub struct TokenSource(Arc<dyn Fn() -> TokenFuture + Send + Sync>);

impl TokenSource {
    /// A source that calls `fetch` for each fresh token.
    pub fn new<F, Fut, E>(fetch: F) -> Self
    where
        F: Fn() -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<String, E>> + Send + 'static,
        E: Display,
    {
        Self(Arc::new(move || {
            let fresh = fetch();
            Box::pin(async move { fresh.await.map_err(|e| e.to_string()) })
        }))
    }

    /// Asks for a fresh token.
    pub fn fetch(&self) -> TokenFuture {
        (self.0)()
    }
}

impl std::fmt::Debug for TokenSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TokenSource")
    }
}

impl Config {
    /// `url` and `token` with the default timings: reconnects from 100 ms doubling to 5 s,
    /// resends after 10 s without an ack, replies within 10 s, a keepalive after 4 quiet
    /// minutes.
    pub fn new(url: impl Into<String>, token: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            token: token.into(),
            backoff: Backoff {
                first: Duration::from_millis(100),
                max: Duration::from_secs(5),
            },
            ack_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(10),
            keepalive: Duration::from_secs(240),
            token_source: None,
        }
    }

    /// When the server closes with 4001 (the token expired), or refuses a reconnect with 401
    /// (it expired while disconnected), the client asks `fetch` for a fresh token and
    /// reconnects with it, resuming as after any drop; if `fetch` fails, the client stops.
    pub fn with_token_source<F, Fut, E>(mut self, fetch: F) -> Self
    where
        F: Fn() -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<String, E>> + Send + 'static,
        E: Display,
    {
        self.token_source = Some(TokenSource::new(fetch));
        self
    }
}

impl std::fmt::Debug for Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The token is a credential: never in logs.
        f.debug_struct("Config")
            .field("url", &self.url)
            .field("backoff", &self.backoff)
            .field("ack_timeout", &self.ack_timeout)
            .field("request_timeout", &self.request_timeout)
            .field("keepalive", &self.keepalive)
            .field("token_source", &self.token_source)
            .finish_non_exhaustive()
    }
}

/// Why a request failed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ClientError {
    /// The server refused the upgrade (401 bad token, 403 nothing granted, 429, 5xx).
    #[error("the server refused the connection: HTTP {status}: {reason}")]
    Refused {
        /// The HTTP status.
        status: u16,
        /// The server's plain-text reason.
        reason: String,
    },
    /// The WebSocket could not be opened (bad URL, nothing listening, …).
    #[error("could not connect: {0}")]
    Connect(String),
    /// The server answered with an `error` frame, or the client refused a message the server
    /// would refuse (with the code the server would give) before sending it.
    #[error("{}: {message}", code.as_str())]
    Rejected {
        /// The protocol's stable code.
        code: ErrorCode,
        /// Why, for people.
        message: String,
    },
    /// The connection dropped before the reply; the request was not repeated (a `history`).
    #[error("the connection dropped before the reply")]
    Disconnected,
    /// No reply within [`Config::request_timeout`].
    #[error("no reply within {0:?}")]
    Timeout(Duration),
    /// A message with this id is already waiting for its ack.
    #[error("a message with id `{0}` is already waiting for its ack")]
    IdInUse(String),
    /// The client stopped: closed by the caller, or the server ended the session in a way
    /// reconnecting cannot mend (a 1000 or 4003 close, a 4001 close without a fresh token, or a
    /// refused reconnect).
    #[error("the client stopped: {0}")]
    Stopped(String),
}

impl From<Rejection> for ClientError {
    fn from(refused: Rejection) -> Self {
        Self::Rejected {
            code: refused.code,
            message: refused.message,
        }
    }
}

/// The server's `joined` reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Joined {
    /// Room name.
    pub room: String,
    /// Highest seq stored in the room.
    pub head: u64,
    /// The user's read cursor.
    pub read_seq: u64,
    /// `head - read_seq`.
    pub unread: u64,
    /// Members with presence (empty in a big room).
    pub members: Vec<MemberView>,
    /// Connections in a big room.
    pub occupancy: Option<u64>,
    /// The room's support conversation, when it is a support room that has one.
    pub conversation: Option<Conversation>,
}

impl TryFrom<ServerFrame> for Joined {
    /// Any other frame, handed back as it was.
    type Error = ServerFrame;

    fn try_from(frame: ServerFrame) -> Result<Self, ServerFrame> {
        match frame {
            ServerFrame::Joined {
                room,
                head,
                read_seq,
                unread,
                members,
                occupancy,
                conversation,
            } => Ok(Self {
                room,
                head,
                read_seq,
                unread,
                members,
                occupancy,
                conversation,
            }),
            other => Err(other),
        }
    }
}

/// A message stored: the server's `ack`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ack {
    /// The client id.
    pub id: String,
    /// Room name.
    pub room: String,
    /// Its seq.
    pub seq: u64,
    /// When it was stored, epoch milliseconds.
    pub ts: u64,
    /// The server had stored this id already (a resend after a lost ack).
    pub duplicate: bool,
}

/// Which page of a room's history to read (protocol.md §4, `history`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct HistoryQuery {
    /// Only seqs below this one (the newest page when neither bound is given).
    pub before: Option<u64>,
    /// Only seqs above this one, oldest first.
    pub after: Option<u64>,
    /// Page size, 1..=100 (the server's default 50 when absent).
    pub limit: Option<u32>,
}

/// A page of history, oldest first.
#[derive(Debug, Clone, PartialEq)]
pub struct HistoryPage {
    /// The messages.
    pub messages: Vec<MessageView>,
    /// More exist beyond this page in the direction paged.
    pub more: bool,
}

/// What happens on the connection that is not a reply to this client's own requests, in the
/// order it arrived: concurrent senders' messages may arrive out of seq order (protocol.md §9),
/// so order a room's messages by `seq` where it matters.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// A server frame: `message` (each seq once, live or replayed), `edited`, `deleted`,
    /// `typing`, `read`, `presence`, `occupancy`, `closing`, the `joined` of each room rejoined
    /// after a reconnect (members, presence and read cursor as they stand then), and `error`s
    /// that answer no pending request (a `typing` refused, or `RATE_LIMITED`, which names no
    /// frame).
    Frame(Box<ServerFrame>),
    /// The connection dropped (`code`: its close code, `None` without a close frame); the
    /// client reconnects unless an [`Event::Closed`] follows.
    Disconnected {
        /// The close code (from `closing` when the server sent one).
        code: Option<u16>,
        /// Why.
        reason: String,
    },
    /// A new connection is open; every room is being rejoined and replayed from where it was.
    Reconnected,
    /// The client stopped for good; no event follows.
    Closed {
        /// Why.
        reason: String,
    },
}

impl Event {
    /// The server frame, when the event is one.
    pub fn frame(self) -> Option<ServerFrame> {
        match self {
            Self::Frame(frame) => Some(*frame),
            _ => None,
        }
    }
}

/// The events of one client, in the order they happened. They wait, unbounded, until taken:
/// read them as they come (a client that does not want them drops its `Events`).
#[derive(Debug)]
pub struct Events(mpsc::UnboundedReceiver<Event>);

impl Events {
    /// The next event; `None` once the client stopped and every event was taken.
    pub async fn next(&mut self) -> Option<Event> {
        self.0.recv().await
    }
}

/// A connected client. Cheap to clone: every clone drives the same connection, which lives
/// until [`Client::close`] or until the last clone is dropped.
#[derive(Debug, Clone)]
pub struct Client {
    commands: mpsc::UnboundedSender<Command>,
    ids: Arc<IdSource>,
}

#[derive(Debug)]
struct IdSource {
    prefix: String,
    next: AtomicU64,
}

impl Client {
    /// Connects with `config` and starts the task that keeps the connection (it runs on the
    /// current tokio runtime). Fails when the first connection cannot be opened.
    pub async fn connect(config: Config) -> Result<(Self, Events), ClientError> {
        let socket = driver::open(&config).await?;
        let (commands, command_rx) = mpsc::unbounded_channel();
        let (event_tx, events) = mpsc::unbounded_channel();
        tokio::spawn(Driver::new(config, command_rx, event_tx).run(socket));
        let ids = IdSource {
            prefix: format!("{:016x}", rand::random::<u64>()),
            next: AtomicU64::new(1),
        };
        Ok((
            Self {
                commands,
                ids: Arc::new(ids),
            },
            Events(events),
        ))
    }

    /// A fresh message id, unique to this client: a random prefix and a counter.
    pub fn new_id(&self) -> String {
        let n = self.ids.next.fetch_add(1, Ordering::Relaxed);
        format!("{}-{n}", self.ids.prefix)
    }

    /// Joins `room`, live from now: messages stored before are history.
    pub async fn join(&self, room: &str) -> Result<Joined, ClientError> {
        self.join_with(room, None).await
    }

    /// Joins `room` and replays every message after `since` (the last seq the caller has) as
    /// [`Event::Frame`]s, then goes on live.
    pub async fn join_since(&self, room: &str, since: u64) -> Result<Joined, ClientError> {
        self.join_with(room, Some(since)).await
    }

    async fn join_with(&self, room: &str, since: Option<u64>) -> Result<Joined, ClientError> {
        self.request(|reply| Command::Join {
            room: room.to_owned(),
            since,
            reply,
        })
        .await
    }

    /// Leaves `room`: no more of its frames, and it is not rejoined on reconnect.
    pub async fn leave(&self, room: &str) -> Result<(), ClientError> {
        self.request(|reply| Command::Leave {
            room: room.to_owned(),
            reply,
        })
        .await
    }

    /// Sends `body` to `room` with a fresh id; resolves once the server stored it.
    pub async fn send(&self, room: &str, body: &str) -> Result<Ack, ClientError> {
        self.send_message(Outgoing {
            room: room.to_owned(),
            id: self.new_id(),
            body: body.to_owned(),
            meta: None,
            reply_to: None,
        })
        .await
    }

    /// Sends `body` to `room` as a reply to its message `seq`, with a fresh id; resolves once
    /// the server stored it (`NOT_FOUND` when the room has no message `seq`).
    pub async fn reply(&self, room: &str, seq: u64, body: &str) -> Result<Ack, ClientError> {
        self.send_message(Outgoing {
            room: room.to_owned(),
            id: self.new_id(),
            body: body.to_owned(),
            meta: None,
            reply_to: Some(seq),
        })
        .await
    }

    /// Sends `message` (the caller's own id, `meta`); resolves once the server stored it,
    /// across reconnects. Sends may be pipelined: each resolves with its own ack.
    pub async fn send_message(&self, message: Outgoing) -> Result<Ack, ClientError> {
        self.request(|reply| Command::Send { message, reply }).await
    }

    /// Sends `body` to `room` with `meta` (application data) and a fresh id.
    pub async fn send_with_meta(
        &self,
        room: &str,
        body: &str,
        meta: Value,
    ) -> Result<Ack, ClientError> {
        self.send_message(Outgoing {
            room: room.to_owned(),
            id: self.new_id(),
            body: body.to_owned(),
            meta: Some(meta),
            reply_to: None,
        })
        .await
    }

    /// A page of `room`'s history.
    pub async fn history(
        &self,
        room: &str,
        query: HistoryQuery,
    ) -> Result<HistoryPage, ClientError> {
        self.request(|reply| Command::History {
            room: room.to_owned(),
            query,
            reply,
        })
        .await
    }

    /// Tells the room the user started or stopped typing. Not stored and not repeated: while
    /// disconnected it is dropped. A refusal comes as an `error` [`Event::Frame`].
    pub fn typing(&self, room: &str, state: TypingState) -> Result<(), ClientError> {
        self.notify(ClientFrame::Typing {
            room: room.to_owned(),
            state,
        })
    }

    /// Adds the user's `emoji` reaction to message `seq` of `room` (as [`Client::typing`]: the
    /// server's answer, a `reaction` frame or an `error`, comes as an [`Event::Frame`]; the
    /// room's other connections get the `reaction` frame too).
    pub fn react(&self, room: &str, seq: u64, emoji: &str) -> Result<(), ClientError> {
        self.notify(ClientFrame::React {
            room: room.to_owned(),
            seq,
            emoji: emoji.to_owned(),
        })
    }

    /// Removes the user's `emoji` reaction from message `seq` of `room` (as [`Client::react`]).
    pub fn unreact(&self, room: &str, seq: u64, emoji: &str) -> Result<(), ClientError> {
        self.notify(ClientFrame::Unreact {
            room: room.to_owned(),
            seq,
            emoji: emoji.to_owned(),
        })
    }

    /// Moves the user's read cursor in `room` to `seq` (as [`Client::typing`], no reply).
    pub fn read(&self, room: &str, seq: u64) -> Result<(), ClientError> {
        self.notify(ClientFrame::Read {
            room: room.to_owned(),
            seq,
        })
    }

    /// Chooses the user's presence status (as [`Client::typing`]; the server echoes the
    /// change as a `presence` frame).
    pub fn presence(&self, status: PresenceStatus) -> Result<(), ClientError> {
        self.notify(ClientFrame::Presence { status })
    }

    /// Closes the connection and stops the client; messages still waiting for their ack fail
    /// with [`ClientError::Stopped`].
    pub async fn close(self) {
        let (done, finished) = oneshot::channel();
        if self.commands.send(Command::Close(done)).is_ok() {
            // The task drops `done` when it has stopped: either outcome means it is done.
            let _ = finished.await;
        }
    }

    fn notify(&self, frame: ClientFrame) -> Result<(), ClientError> {
        self.commands
            .send(Command::Notify(frame))
            .map_err(|_| stopped())
    }

    async fn request<T>(
        &self,
        command: impl FnOnce(oneshot::Sender<Result<T, ClientError>>) -> Command,
    ) -> Result<T, ClientError> {
        let (reply, answer) = oneshot::channel();
        self.commands.send(command(reply)).map_err(|_| stopped())?;
        answer.await.unwrap_or_else(|_| Err(stopped()))
    }
}

fn stopped() -> ClientError {
    ClientError::Stopped("the client's task has ended".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_joined_frame_becomes_the_callers_joined_whole_and_other_frames_come_back() {
        let frame = ServerFrame::Joined {
            room: "r-1".into(),
            head: 9,
            read_seq: 4,
            unread: 5,
            members: Vec::new(),
            occupancy: Some(3),
            conversation: None,
        };
        assert_eq!(
            Joined::try_from(frame),
            Ok(Joined {
                room: "r-1".into(),
                head: 9,
                read_seq: 4,
                unread: 5,
                members: Vec::new(),
                occupancy: Some(3),
                conversation: None,
            })
        );
        let left = ServerFrame::Left { room: "r-1".into() };
        assert_eq!(Joined::try_from(left.clone()), Err(left));
    }
}
