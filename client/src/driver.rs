//! The task that owns the WebSocket: it sends the caller's requests, matches the server's
//! replies to them, passes the rest on as events, and on a drop reconnects, rejoins and resends
//! (the rules are in [`crate::resume`]).

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::ops::ControlFlow;
use std::time::{Duration, Instant};

use futures::{SinkExt, StreamExt};
use roomcast_core::protocol::{ClientFrame, ErrorCode, ServerFrame};
use roomcast_core::service::SUBPROTOCOL;
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::{self, Message};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use crate::codec;
use crate::resume::{AfterClose, Outbox, Outgoing, RoomLog, after_close, upgrade_retryable};
use crate::{Ack, ClientError, Config, Event, HistoryPage, HistoryQuery, Joined};

type Socket = WebSocketStream<MaybeTlsStream<TcpStream>>;
type Reply<T> = oneshot::Sender<Result<T, ClientError>>;

/// How long a gap in a room's live messages may stay open before it is filled from history:
/// concurrent senders' messages may arrive out of order (protocol.md §9), so briefly.
const GAP_WAIT: Duration = Duration::from_secs(1);

/// Largest page the resume asks for (`MAX_HISTORY_LIMIT`).
const RESUME_PAGE: u32 = roomcast_core::limits::MAX_HISTORY_LIMIT;

/// What the caller's handles ask of the task.
pub(crate) enum Command {
    Join {
        room: String,
        since: Option<u64>,
        reply: Reply<Joined>,
    },
    Leave {
        room: String,
        reply: Reply<()>,
    },
    Send {
        message: Outgoing,
        reply: Reply<Ack>,
    },
    History {
        room: String,
        query: HistoryQuery,
        reply: Reply<HistoryPage>,
    },
    /// A frame without a reply on success (`typing`, `read`, `presence`).
    Notify(ClientFrame),
    /// Stop; the sender is dropped once the task has.
    Close(oneshot::Sender<()>),
}

/// Opens a WebSocket to `config.url`, offering the token next to `roomcast.v1`.
pub(crate) async fn open(config: &Config) -> Result<Socket, ClientError> {
    let mut request = config
        .url
        .as_str()
        .into_client_request()
        .map_err(|e| ClientError::Connect(format!("bad URL {}: {e}", config.url)))?;
    let offer = HeaderValue::from_str(&format!("{SUBPROTOCOL}, {}", config.token))
        .map_err(|e| ClientError::Connect(format!("the token is not a header value: {e}")))?;
    request
        .headers_mut()
        .insert("Sec-WebSocket-Protocol", offer);
    match tokio_tungstenite::connect_async(request).await {
        Ok((socket, _)) => Ok(socket),
        Err(tungstenite::Error::Http(response)) => Err(ClientError::Refused {
            status: response.status().as_u16(),
            reason: response
                .body()
                .as_deref()
                .map(|b| String::from_utf8_lossy(b).into_owned())
                .unwrap_or_default(),
        }),
        Err(e) => Err(ClientError::Connect(e.to_string())),
    }
}

/// Requests whose replies name only their room (`joined`, `left`, `history`): a connection
/// answers in the order it was asked, so a room's replies go to its requests first come, first
/// served; an `error` names the request by its `ref`.
struct Pending<W> {
    by_room: HashMap<String, VecDeque<Request<W>>>,
}

struct Request<W> {
    reference: String,
    deadline: Instant,
    waiter: W,
}

impl<W> Pending<W> {
    fn new() -> Self {
        Self {
            by_room: HashMap::new(),
        }
    }

    fn push(&mut self, room: &str, request: Request<W>) {
        self.by_room
            .entry(room.to_owned())
            .or_default()
            .push_back(request);
    }

    fn answered(&mut self, room: &str) -> Option<W> {
        let queue = self.by_room.get_mut(room)?;
        let request = queue.pop_front();
        if queue.is_empty() {
            self.by_room.remove(room);
        }
        request.map(|r| r.waiter)
    }

    fn refused(&mut self, reference: &str) -> Option<(String, W)> {
        let (room, queue) = self
            .by_room
            .iter_mut()
            .find(|(_, q)| q.iter().any(|r| r.reference == reference))?;
        let room = room.clone();
        let at = queue.iter().position(|r| r.reference == reference)?;
        let request = queue.remove(at)?;
        if queue.is_empty() {
            self.by_room.remove(&room);
        }
        Some((room, request.waiter))
    }

    fn expired(&mut self, now: Instant) -> Vec<W> {
        let mut expired = Vec::new();
        for queue in self.by_room.values_mut() {
            while queue.front().is_some_and(|r| r.deadline <= now) {
                expired.extend(queue.pop_front().map(|r| r.waiter));
            }
        }
        self.by_room.retain(|_, q| !q.is_empty());
        expired
    }

    fn next_deadline(&self) -> Option<Instant> {
        self.by_room
            .values()
            .filter_map(|q| q.front().map(|r| r.deadline))
            .min()
    }

    fn drain(&mut self) -> impl Iterator<Item = (String, W)> + '_ {
        self.by_room
            .drain()
            .flat_map(|(room, q)| q.into_iter().map(move |r| (room.clone(), r.waiter)))
    }
}

/// Who waits for a `history` page: a caller, or the resume paging through a long replay.
enum PageWaiter {
    Caller(Reply<HistoryPage>),
    Resume,
}

/// How a connection ended.
enum Ended {
    /// The caller closed the client (or dropped every handle).
    ByCaller,
    /// The connection dropped.
    Dropped { code: Option<u16>, reason: String },
}

pub(crate) struct Driver {
    config: Config,
    commands: mpsc::UnboundedReceiver<Command>,
    events: mpsc::UnboundedSender<Event>,
    /// The rooms joined, with what each delivered: rejoined on every new connection.
    rooms: BTreeMap<String, RoomLog>,
    outbox: Outbox,
    acks: HashMap<String, Reply<Ack>>,
    joins: Pending<Vec<Reply<Joined>>>,
    /// Callers waiting for a join made while disconnected (or lost to a drop): answered by the
    /// next connection's rejoin.
    queued_joins: HashMap<String, Vec<Reply<Joined>>>,
    leaves: Pending<Reply<()>>,
    pages: Pending<PageWaiter>,
    /// Rooms with a gap in their live messages, and when to fill it from history if the
    /// missing ones have not come by then.
    gaps: HashMap<String, Instant>,
    /// Frames for the current connection, sent before the task waits again.
    outgoing: Vec<String>,
    next_reference: u64,
    /// The code of the server's `closing` frame, which wins over the close frame's.
    closing: Option<u16>,
    /// Held until the task ends, when dropping it tells [`crate::Client::close`].
    closed_by: Option<oneshot::Sender<()>>,
}

impl Driver {
    pub(crate) fn new(
        config: Config,
        commands: mpsc::UnboundedReceiver<Command>,
        events: mpsc::UnboundedSender<Event>,
    ) -> Self {
        let outbox = Outbox::new(config.ack_timeout);
        Self {
            config,
            commands,
            events,
            rooms: BTreeMap::new(),
            outbox,
            acks: HashMap::new(),
            joins: Pending::new(),
            queued_joins: HashMap::new(),
            leaves: Pending::new(),
            pages: Pending::new(),
            gaps: HashMap::new(),
            outgoing: Vec::new(),
            next_reference: 1,
            closing: None,
            closed_by: None,
        }
    }

    /// Serves `socket`, then every connection after it, until the client stops.
    pub(crate) async fn run(mut self, socket: Socket) {
        let mut socket = Some(socket);
        loop {
            let current = match socket.take() {
                Some(s) => s,
                None => match self.reconnect().await {
                    Some(s) => s,
                    None => return,
                },
            };
            match self.serve(current).await {
                Ended::ByCaller => return self.stop("closed by the caller".into()),
                Ended::Dropped { code, reason } => {
                    self.dropped();
                    self.emit(Event::Disconnected {
                        code,
                        reason: reason.clone(),
                    });
                    match after_close(code) {
                        AfterClose::Stop => return self.stop(reason),
                        AfterClose::ReconnectAfter(pause) => {
                            if !self.wait_offline(pause).await {
                                return self.stop("closed by the caller".into());
                            }
                        }
                        AfterClose::RenewToken => {
                            if let Err(why) = self.renew_token(reason).await {
                                return self.stop(why);
                            }
                        }
                        AfterClose::Reconnect => {}
                    }
                }
            }
        }
    }

    /// Opens a new connection, with backoff between attempts; `None` when the client stopped.
    /// A token that expired while disconnected (the upgrade refused with 401) is renewed from
    /// the caller's source once, as a 4001 close would be; a fresh token refused too stops it.
    async fn reconnect(&mut self) -> Option<Socket> {
        let mut attempt = 0;
        let mut renewed = false;
        loop {
            let delay = self.config.backoff.delay(attempt, rand::random());
            if !self.wait_offline(delay).await {
                self.stop("closed by the caller".into());
                return None;
            }
            match open(&self.config).await {
                Ok(socket) => {
                    self.emit(Event::Reconnected);
                    return Some(socket);
                }
                Err(ClientError::Refused {
                    status: 401,
                    reason,
                }) if !renewed && self.config.token_source.is_some() => {
                    if let Err(why) = self.renew_token(format!("HTTP 401: {reason}")).await {
                        self.stop(why);
                        return None;
                    }
                    renewed = true;
                }
                Err(ClientError::Refused { status, reason }) if !upgrade_retryable(status) => {
                    self.stop(format!("reconnecting was refused: HTTP {status}: {reason}"));
                    return None;
                }
                Err(e) => {
                    tracing::debug!(attempt, "reconnecting failed: {e}");
                    attempt = attempt.saturating_add(1);
                }
            }
        }
    }

    /// Replaces the expired token (closed with `reason`) with a fresh one from the caller's
    /// source, handling commands meanwhile; `Err` with why the client stops when there is none.
    async fn renew_token(&mut self, reason: String) -> Result<(), String> {
        let Some(source) = &self.config.token_source else {
            return Err(reason);
        };
        let fresh = source.fetch();
        tokio::pin!(fresh);
        loop {
            tokio::select! {
                token = &mut fresh => {
                    return match token {
                        Ok(token) => {
                            self.config.token = token;
                            Ok(())
                        }
                        Err(e) => Err(format!("the token expired and no fresh one came: {e}")),
                    };
                }
                command = self.commands.recv() => {
                    if self.command(command, false, Instant::now()).is_break() {
                        return Err("closed by the caller".into());
                    }
                }
            }
        }
    }

    /// Handles commands while disconnected for `delay`; false when the caller closed.
    async fn wait_offline(&mut self, delay: Duration) -> bool {
        let pause = tokio::time::sleep(delay);
        tokio::pin!(pause);
        loop {
            tokio::select! {
                () = &mut pause => return true,
                command = self.commands.recv() => {
                    if self.command(command, false, Instant::now()).is_break() {
                        return false;
                    }
                }
            }
        }
    }

    /// One connection: rejoin, resend, then serve until it ends.
    async fn serve(&mut self, mut socket: Socket) -> Ended {
        self.closing = None;
        self.rejoin();
        self.outbox.reconnected();
        self.send_due(Instant::now());
        let mut last_sent = Instant::now();
        loop {
            if !self.outgoing.is_empty() {
                last_sent = Instant::now();
            }
            for text in self.outgoing.drain(..) {
                if let Err(e) = socket.feed(Message::text(text)).await {
                    return Ended::Dropped {
                        code: None,
                        reason: e.to_string(),
                    };
                }
            }
            if let Err(e) = socket.flush().await {
                return Ended::Dropped {
                    code: None,
                    reason: e.to_string(),
                };
            }
            let keepalive_at = last_sent + self.config.keepalive;
            let wake = self
                .next_deadline()
                .map_or(keepalive_at, |deadline| deadline.min(keepalive_at));
            tokio::select! {
                received = socket.next() => match received {
                    Some(Ok(Message::Text(text))) => self.frame(&text, Instant::now()),
                    Some(Ok(Message::Close(close))) => {
                        let (code, reason) = close.map_or((None, "closed without a code".into()), |c| {
                            (Some(u16::from(c.code)), c.reason.to_string())
                        });
                        return Ended::Dropped { code: self.closing.or(code), reason };
                    }
                    // Pings are answered by the socket itself; the protocol sends no binary.
                    Some(Ok(_)) => {}
                    Some(Err(e)) => return Ended::Dropped { code: self.closing, reason: e.to_string() },
                    None => return Ended::Dropped { code: self.closing, reason: "the connection ended".into() },
                },
                command = self.commands.recv() => {
                    if self.command(command, true, Instant::now()).is_break() {
                        // Best effort: the client stops whether or not the close handshake ends.
                        let _ = socket.close(None).await;
                        return Ended::ByCaller;
                    }
                }
                () = tokio::time::sleep_until(tokio::time::Instant::from_std(wake)) => {
                    let now = Instant::now();
                    if now >= keepalive_at {
                        // The server closes a connection that sent nothing for 10 minutes.
                        self.queue(&ClientFrame::Ping, None);
                    }
                    self.expire(now);
                }
            }
        }
    }

    fn reference(&mut self) -> String {
        let reference = format!("r{}", self.next_reference);
        self.next_reference += 1;
        reference
    }

    /// Queues `frame` with `ref: reference`, so an `error` names it.
    fn queue(&mut self, frame: &ClientFrame, reference: Option<&str>) {
        self.outgoing.push(codec::encode(frame, reference));
    }

    /// One command from the caller's handles (`None`: every handle is gone), on a connection
    /// (`online`) or between two; `Break` when the client is to stop.
    fn command(&mut self, command: Option<Command>, online: bool, now: Instant) -> ControlFlow<()> {
        let Some(command) = command else {
            return ControlFlow::Break(());
        };
        match command {
            Command::Join { room, since, reply } => {
                self.rooms
                    .entry(room.clone())
                    .or_insert_with(|| RoomLog::new(since));
                if online {
                    self.send_join(&room, vec![reply], now);
                } else {
                    self.queued_joins.entry(room).or_default().push(reply);
                }
            }
            Command::Leave { room, reply } => {
                self.rooms.remove(&room);
                self.queued_joins.remove(&room);
                if online {
                    let reference = self.reference();
                    self.queue(&ClientFrame::Leave { room: room.clone() }, Some(&reference));
                    let deadline = now + self.config.request_timeout;
                    self.leaves.push(
                        &room,
                        Request {
                            reference,
                            deadline,
                            waiter: reply,
                        },
                    );
                } else {
                    // Not subscribed on any connection, and not rejoined on the next.
                    let _ = reply.send(Ok(()));
                }
            }
            Command::Send { message, reply } => {
                if let Err(refused) = message.check() {
                    let _ = reply.send(Err(refused.into()));
                    return ControlFlow::Continue(());
                }
                if self.outbox.holds(&message.id) {
                    let _ = reply.send(Err(ClientError::IdInUse(message.id)));
                    return ControlFlow::Continue(());
                }
                self.acks.insert(message.id.clone(), reply);
                self.outbox.push(message);
                if online {
                    self.send_due(now);
                }
            }
            Command::History { room, query, reply } => {
                if online {
                    self.send_page(&room, query, PageWaiter::Caller(reply), now);
                } else {
                    let _ = reply.send(Err(ClientError::Disconnected));
                }
            }
            Command::Notify(frame) => {
                if online {
                    let reference = self.reference();
                    self.queue(&frame, Some(&reference));
                }
            }
            Command::Close(done) => {
                self.closed_by = Some(done);
                return ControlFlow::Break(());
            }
        }
        ControlFlow::Continue(())
    }

    fn send_join(&mut self, room: &str, waiters: Vec<Reply<Joined>>, now: Instant) {
        let since = self.rooms.get(room).and_then(RoomLog::resume_since);
        let reference = self.reference();
        self.queue(
            &ClientFrame::Join {
                room: room.to_owned(),
                since,
            },
            Some(&reference),
        );
        let deadline = now + self.config.request_timeout;
        self.joins.push(
            room,
            Request {
                reference,
                deadline,
                waiter: waiters,
            },
        );
    }

    fn send_page(&mut self, room: &str, query: HistoryQuery, waiter: PageWaiter, now: Instant) {
        let reference = self.reference();
        self.queue(
            &ClientFrame::History {
                room: room.to_owned(),
                before: query.before,
                after: query.after,
                limit: query.limit,
            },
            Some(&reference),
        );
        let deadline = now + self.config.request_timeout;
        self.pages.push(
            room,
            Request {
                reference,
                deadline,
                waiter,
            },
        );
    }

    /// A new connection: every room joined again from where it was, before any resend (the
    /// server handles a connection's frames in order, so the messages find their rooms joined).
    fn rejoin(&mut self) {
        let now = Instant::now();
        let rooms: Vec<String> = self.rooms.keys().cloned().collect();
        for room in rooms {
            let waiters = self.queued_joins.remove(&room).unwrap_or_default();
            self.send_join(&room, waiters, now);
        }
    }

    fn send_due(&mut self, now: Instant) {
        for message in self.outbox.due(now) {
            self.queue(&message.frame(), None);
        }
    }

    fn next_deadline(&self) -> Option<Instant> {
        [
            self.outbox.next_deadline(),
            self.joins.next_deadline(),
            self.leaves.next_deadline(),
            self.pages.next_deadline(),
            self.gaps.values().min().copied(),
        ]
        .into_iter()
        .flatten()
        .min()
    }

    /// Overdue acks are resent; overdue replies fail their callers.
    fn expire(&mut self, now: Instant) {
        self.send_due(now);
        let overdue: Vec<String> = self
            .gaps
            .iter()
            .filter(|&(_, &at)| at <= now)
            .map(|(room, _)| room.clone())
            .collect();
        for room in overdue {
            self.gaps.remove(&room);
            if let Some(after) = self.rooms.get(&room).and_then(RoomLog::gap_after) {
                self.page_on(&room, after, now);
            }
        }
        let timeout = ClientError::Timeout(self.config.request_timeout);
        for waiters in self.joins.expired(now) {
            fail_all(waiters, &timeout);
        }
        for waiter in self.leaves.expired(now) {
            let _ = waiter.send(Err(timeout.clone()));
        }
        for waiter in self.pages.expired(now) {
            if let PageWaiter::Caller(reply) = waiter {
                let _ = reply.send(Err(timeout.clone()));
            }
        }
    }

    /// One text frame from the server.
    fn frame(&mut self, text: &str, now: Instant) {
        let Ok(frame) = codec::decode(text) else {
            // Later protocol versions may add frames: clients ignore what they do not know.
            tracing::debug!("ignoring a frame this client does not know: {text:.200}");
            return;
        };
        match frame {
            joined @ ServerFrame::Joined { .. } => self.joined(joined),
            ServerFrame::Replayed {
                room,
                through,
                more,
            } => {
                if more && self.rooms.contains_key(&room) {
                    self.page_on(&room, through, now);
                }
            }
            ServerFrame::History {
                room,
                messages,
                more,
            } => match self.pages.answered(&room) {
                Some(PageWaiter::Caller(reply)) => {
                    let _ = reply.send(Ok(HistoryPage { messages, more }));
                }
                Some(PageWaiter::Resume) => {
                    let last = messages.last().map(|m| m.seq);
                    for message in messages {
                        self.deliver(message, now);
                    }
                    if let (true, Some(last)) = (more, last) {
                        self.page_on(&room, last, now);
                    }
                }
                None => {}
            },
            ServerFrame::Message(message) => self.deliver(message, now),
            ServerFrame::Ack {
                id,
                room,
                seq,
                ts,
                duplicate,
            } => {
                // Our own message: the server sends it to our other connections, not this
                // one, so a later replay must not deliver it either.
                if let Some(log) = self.rooms.get_mut(&room) {
                    log.record(seq);
                }
                self.outbox.settle(&id);
                if let Some(waiter) = self.acks.remove(&id) {
                    let _ = waiter.send(Ok(Ack {
                        id,
                        room,
                        seq,
                        ts,
                        duplicate,
                    }));
                }
            }
            ServerFrame::Left { room } => {
                if let Some(waiter) = self.leaves.answered(&room) {
                    let _ = waiter.send(Ok(()));
                }
            }
            // The answer to a keepalive.
            ServerFrame::Pong { .. } => {}
            ServerFrame::Closing { code, .. } => {
                self.closing = Some(code);
                self.emit(Event::Frame(Box::new(frame)));
            }
            ServerFrame::Error {
                code,
                message,
                reference,
            } => self.error(code, message, reference, now),
            other => self.emit(Event::Frame(Box::new(other))),
        }
    }

    /// A `joined` frame: the answer to the room's oldest join, or a rejoin's.
    fn joined(&mut self, frame: ServerFrame) {
        let ServerFrame::Joined { room, head, .. } = &frame else {
            return;
        };
        if let Some(log) = self.rooms.get_mut(room) {
            log.joined(*head);
        }
        let waiters = self.joins.answered(room).unwrap_or_default();
        if waiters.is_empty() {
            // A rejoin on a new connection: the members, their presence and the read cursor
            // as they stand now, which the caller's view may have missed.
            self.emit(Event::Frame(Box::new(frame)));
            return;
        }
        if let Ok(joined) = Joined::try_from(frame) {
            for waiter in waiters {
                let _ = waiter.send(Ok(joined.clone()));
            }
        }
    }

    fn page_on(&mut self, room: &str, after: u64, now: Instant) {
        let query = HistoryQuery {
            before: None,
            after: Some(after),
            limit: Some(RESUME_PAGE),
        };
        self.send_page(room, query, PageWaiter::Resume, now);
    }

    /// A message, live or replayed: passed on once per seq of a room joined. A gap it leaves
    /// open is filled from history after [`GAP_WAIT`].
    fn deliver(&mut self, message: roomcast_core::protocol::MessageView, now: Instant) {
        let Some(log) = self.rooms.get_mut(&message.room) else {
            return;
        };
        if !log.record(message.seq) {
            return;
        }
        if log.gap_after().is_some() {
            self.gaps
                .entry(message.room.clone())
                .or_insert(now + GAP_WAIT);
        }
        self.emit(Event::Frame(Box::new(ServerFrame::Message(message))));
    }

    fn error(&mut self, code: ErrorCode, message: String, reference: Option<String>, now: Instant) {
        let rejected = ClientError::Rejected {
            code,
            message: message.clone(),
        };
        if let Some(reference) = reference.as_deref() {
            if let Some((room, waiters)) = self.joins.refused(reference) {
                // Not joined: not rejoined on the next connection either.
                self.rooms.remove(&room);
                return fail_all(waiters, &rejected);
            }
            if let Some((_, waiter)) = self.leaves.refused(reference) {
                let _ = waiter.send(Err(rejected));
                return;
            }
            if let Some((_, waiter)) = self.pages.refused(reference) {
                if let PageWaiter::Caller(reply) = waiter {
                    let _ = reply.send(Err(rejected));
                }
                return;
            }
            if self.outbox.holds(reference) {
                if matches!(code, ErrorCode::Unavailable | ErrorCode::RateLimited) {
                    // The outcome is unknown or the frame was dropped: the same id again.
                    self.outbox.retry_later(reference, now);
                } else {
                    self.outbox.settle(reference);
                    if let Some(waiter) = self.acks.remove(reference) {
                        let _ = waiter.send(Err(rejected));
                    }
                }
                return;
            }
        }
        self.emit(Event::Frame(Box::new(ServerFrame::Error {
            code,
            message,
            reference,
        })));
    }

    /// The connection dropped: replies it owed will not come.
    fn dropped(&mut self) {
        self.outgoing.clear();
        // The rejoin's replay fills every gap.
        self.gaps.clear();
        let joins: Vec<_> = self.joins.drain().collect();
        for (room, waiters) in joins {
            if self.rooms.contains_key(&room) {
                self.queued_joins.entry(room).or_default().extend(waiters);
            }
        }
        // A leave's point, not being subscribed, holds once the connection is gone.
        for (_, waiter) in self.leaves.drain() {
            let _ = waiter.send(Ok(()));
        }
        for (_, waiter) in self.pages.drain() {
            if let PageWaiter::Caller(reply) = waiter {
                let _ = reply.send(Err(ClientError::Disconnected));
            }
        }
    }

    /// Stops for good: every waiting caller fails, the events end with [`Event::Closed`].
    fn stop(&mut self, reason: String) {
        self.dropped();
        let stopped = ClientError::Stopped(reason.clone());
        for (_, waiters) in self.queued_joins.drain() {
            fail_all(waiters, &stopped);
        }
        for message in self.outbox.drain() {
            if let Some(waiter) = self.acks.remove(&message.id) {
                let _ = waiter.send(Err(stopped.clone()));
            }
        }
        self.emit(Event::Closed { reason });
    }

    fn emit(&self, event: Event) {
        // A caller that dropped its `Events` does not want them.
        let _ = self.events.send(event);
    }
}

fn fail_all<T>(waiters: Vec<Reply<T>>, error: &ClientError) {
    for waiter in waiters {
        let _ = waiter.send(Err(error.clone()));
    }
}
