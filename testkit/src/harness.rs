//! A driver for the core's `ChatService` ([`TestService`]: memory stores, a fake clock) and a
//! model of what every connection and client must observe. Used by the property tests
//! (`shared/tests/properties.rs`) and by the `service` fuzz target (`fuzz/`). Every operation
//! ends with [`Harness::check`], which panics on a broken invariant:
//!
//! - the store: per room, seqs are exactly `1..=head`, and `(sender, id)` is unique;
//! - acks: every ack of one `(room, sender, id)` carries the same seq, and from the second on
//!   `duplicate: true`; the stored message at that seq is that sender's id;
//! - each connection, per room, from its `joined` on: every message stored after the `head` it
//!   was told is delivered (or, for its own, acknowledged) exactly once, in seq order, equal to
//!   what is stored; nothing arrives for rooms it is not in; a replay after `join {since}` is
//!   exactly the stored messages after `since` (at most `MAX_REPLAY`, and no more than fit
//!   `MAX_PAGE_BYTES`), and `replayed` says where it stopped and whether more remain;
//! - each client (a device that reconnects and resumes with `join {since: last seq}` and pages
//!   `history {after}` while `more`), per room: the messages it has form exactly `1..=n` in
//!   order, with no duplicate, and `n == head` while it is connected and in the room;
//! - read cursors never move backward and never pass the head; `read` frames only move forward;
//! - the connections the store holds, and their rooms, are the ones the model expects;
//! - every frame sent is a valid server frame of at most `MAX_SERVER_FRAME_BYTES`.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use futures::executor::block_on;
use roomcast_core::auth::{Claims, Identity, Role};
use roomcast_core::limits::{
    MAX_HISTORY_LIMIT, MAX_PAGE_BYTES, MAX_REPLAY, MAX_SERVER_FRAME_BYTES,
};
use roomcast_core::protocol::{ClientFrame, MessageView, ServerFrame, parse_client_frame};
use roomcast_core::ratelimit::RatePolicy;
use roomcast_core::service::{Inbound, Publish, ServiceConfig, Upgrade};
use roomcast_core::store::{ConnectionStore, HistoryQuery, HistoryStore, RoomRef};
use serde_json::{Value, json};

use crate::service::TestService;

/// A user the harness can connect as.
#[derive(Debug, Clone, Copy)]
pub struct UserSpec {
    /// User id.
    pub user: &'static str,
    /// Tenant id.
    pub tenant: &'static str,
    /// Role.
    pub role: Role,
    /// Room grants.
    pub grants: &'static [&'static str],
}

/// The users: visitors, an agent and a service in `acme`, and a user of another tenant.
pub const USERS: &[UserSpec] = &[
    UserSpec {
        user: "alice",
        tenant: "acme",
        role: Role::User,
        grants: &["lobby", "room-*", "support-1"],
    },
    UserSpec {
        user: "bob",
        tenant: "acme",
        role: Role::User,
        grants: &["lobby", "room-1", "support-*"],
    },
    UserSpec {
        user: "ann",
        tenant: "acme",
        role: Role::Agent,
        grants: &["inbox", "support-*", "lobby"],
    },
    UserSpec {
        user: "svc",
        tenant: "acme",
        role: Role::Service,
        grants: &[],
    },
    UserSpec {
        user: "alice",
        tenant: "globex",
        role: Role::User,
        grants: &["*"],
    },
];

/// Room names the operations pick from (not every user may join every one).
pub const ROOMS: &[&str] = &["lobby", "room-1", "support-1", "inbox", "room-2"];

const TENANTS: &[&str] = &["acme", "globex"];

/// A client: one device of a user that follows the protocol's rules.
#[derive(Debug, Clone, Copy)]
pub struct ClientSpec {
    /// Index into [`USERS`].
    pub user: usize,
}

/// The clients of [`Harness::new`]: two devices of alice, bob, the agent ann, globex's alice.
pub const CLIENTS: &[ClientSpec] = &[
    ClientSpec { user: 0 },
    ClientSpec { user: 0 },
    ClientSpec { user: 1 },
    ClientSpec { user: 2 },
    ClientSpec { user: 4 },
];

/// Limits small enough for short inputs to reach them.
pub fn small_limits() -> ServiceConfig {
    ServiceConfig {
        rate: RatePolicy {
            burst: 20,
            per_sec: 5,
            max_strikes: 3,
        },
        max_connections_per_user: 4,
        max_rooms_per_connection: 3,
        ..ServiceConfig::default()
    }
}

/// Limits no client operation reaches (for the property tests' client model).
pub fn roomy_limits() -> ServiceConfig {
    ServiceConfig {
        rate: RatePolicy {
            burst: 1_000_000,
            per_sec: 1_000_000,
            max_strikes: 1_000_000,
        },
        ..ServiceConfig::default()
    }
}

#[derive(Debug, Default)]
struct Sub {
    /// The head the `joined` frame reported.
    start: u64,
    /// Seqs delivered or acknowledged since.
    got: BTreeSet<u64>,
}

#[derive(Debug)]
struct Replay {
    room: String,
    last: u64,
    count: u32,
    /// What the replayed messages weigh in a page (JSON and a separator each).
    bytes: usize,
}

/// What `m` weighs in a page or replay (`MAX_PAGE_BYTES`).
fn page_bytes(m: &MessageView) -> usize {
    serde_json::to_string(m).map_or(usize::MAX, |s| s.len() + 1)
}

#[derive(Debug)]
struct Conn {
    id: String,
    user: usize,
    /// The model's view: the store still holds the connection.
    live: bool,
    /// Sends to it fail (API Gateway 410): the model stops checking what it receives.
    vanished: bool,
    subs: BTreeMap<String, Sub>,
    /// The join with `since` just sent, whose replay follows its `joined`.
    pending_replay: Option<(String, u64)>,
    replay: Option<Replay>,
    /// Last `read` seq received per (room, user).
    reads: HashMap<(String, String), u64>,
    /// `closing` received.
    closed: Option<u16>,
    /// The client using it; `None` for connections driven with raw frames.
    owner: Option<usize>,
}

#[derive(Debug, Default)]
struct Client {
    conn: Option<usize>,
    /// Rooms it wants to be in (resumed on reconnect).
    joined: BTreeSet<String>,
    /// Per room, the messages it has: exactly `1..=have`.
    have: BTreeMap<String, u64>,
    /// Messages it sent: (room, id, body).
    sent: Vec<(String, String, String)>,
}

/// Which frames a client takes messages from.
#[derive(Debug, Clone, Copy)]
enum Feed {
    /// Live and replayed `message`s, and acks of its own.
    Live,
    /// `history` pages it asked for.
    Pages,
}

/// What one step's frames were, for the caller that sent them.
#[derive(Debug, Default)]
pub struct Received {
    /// The frames, parsed.
    pub frames: Vec<ServerFrame>,
}

/// The service (with its stores and fake clock) and the model.
pub struct Harness {
    /// The service under test, its stores, gateway and clock.
    pub ts: TestService,
    config: ServiceConfig,
    conns: Vec<Conn>,
    clients: Vec<Client>,
    /// (tenant, room, user, id) → acknowledged seq.
    acks: HashMap<(String, String, String, String), u64>,
    /// (tenant, room, user) → read cursor last seen.
    cursors: HashMap<(String, String, String), u64>,
    next_publish: u64,
}

fn room_ref(user: usize, room: &str) -> RoomRef {
    RoomRef::new(USERS[user].tenant, room)
}

impl Harness {
    /// A service with `config` and the [`CLIENTS`], none connected yet.
    pub fn new(config: ServiceConfig) -> Self {
        Self {
            ts: TestService::new(config.clone()),
            config,
            conns: Vec::new(),
            clients: CLIENTS.iter().map(|_| Client::default()).collect(),
            acks: HashMap::new(),
            cursors: HashMap::new(),
            next_publish: 0,
        }
    }

    /// Moves the fake clock.
    pub fn advance(&mut self, ms: u64) {
        self.ts.advance(ms);
        self.check();
    }

    fn token(&self, user: usize, ttl_s: u64) -> String {
        let spec = USERS[user];
        self.ts.sign(&Claims {
            sub: Some(spec.user.into()),
            tid: Some(spec.tenant.into()),
            rooms: spec.grants.iter().map(|g| (*g).to_owned()).collect(),
            role: spec.role,
            exp: Some((self.ts.now() / 1000).saturating_add(ttl_s)),
            ..Claims::default()
        })
    }

    fn identity(&self, user: usize) -> Identity {
        self.ts
            .service
            .verifier()
            .verify(&self.token(user, 3_600), self.ts.now())
            .expect("own token verifies")
    }

    // ---- connections driven with raw frames (connection-level checks only) ----

    /// Number of connections opened so far (live or not).
    pub fn conn_count(&self) -> usize {
        self.conns.len()
    }

    /// Opens a connection for `USERS[user]` with a token valid `ttl_s` seconds. Returns its
    /// slot when accepted.
    pub fn connect(&mut self, user: usize, ttl_s: u64) -> Option<usize> {
        let user = user % USERS.len();
        let slot = self.conns.len();
        let id = format!("c{slot}");
        let before = block_on(
            self.ts
                .connections
                .user_connections(USERS[user].tenant, USERS[user].user),
        )
        .expect("memory store")
        .len();
        let token = self.token(user, ttl_s);
        let result = block_on(self.ts.service.connect(
            &id,
            Upgrade {
                token_param: Some(&token),
                protocols: None,
                origin: None,
            },
            self.ts.now(),
        ));
        let accepted = match result {
            Ok(_) => true,
            Err(refusal) => {
                let want = if ttl_s == 0 {
                    401
                } else if USERS[user].role == Role::User && USERS[user].grants.is_empty() {
                    403
                } else {
                    assert!(
                        before >= self.config.max_connections_per_user,
                        "{refusal:?}"
                    );
                    429
                };
                assert_eq!(refusal.status, want, "{refusal:?}");
                false
            }
        };
        assert!(accepted || before >= self.config.max_connections_per_user || ttl_s == 0);
        let conn = Conn {
            id,
            user,
            live: accepted,
            vanished: false,
            subs: BTreeMap::new(),
            pending_replay: None,
            replay: None,
            reads: HashMap::new(),
            closed: None,
            owner: None,
        };
        self.conns.push(conn);
        self.check();
        accepted.then_some(slot)
    }

    /// The `n`-th (modulo their number) connection driven with raw frames, if any.
    fn raw_slot(&self, n: usize) -> Option<usize> {
        let raw: Vec<usize> = (0..self.conns.len())
            .filter(|s| self.conns[*s].owner.is_none())
            .collect();
        (!raw.is_empty()).then(|| raw[n % raw.len()])
    }

    /// Sends `text` on the `slot`-th raw connection (see [`Harness::connect`]).
    pub fn frame(&mut self, slot: usize, text: &str) -> Received {
        match self.raw_slot(slot) {
            Some(slot) => self.send_frame(slot, text),
            None => Received::default(),
        }
    }

    fn send_frame(&mut self, slot: usize, text: &str) -> Received {
        if let Ok(parsed) = parse_client_frame(text)
            && let ClientFrame::Join {
                room,
                since: Some(since),
            } = parsed.frame
        {
            self.conns[slot].pending_replay = Some((room, since));
        }
        let id = self.conns[slot].id.clone();
        let outcome = block_on(
            self.ts
                .service
                .frame(&id, Inbound::Text(text), self.ts.now()),
        );
        let received = self.absorb_all(slot);
        self.conns[slot].pending_replay = None;
        assert!(
            self.conns[slot].replay.is_none(),
            "a replay without `replayed`"
        );
        if outcome.closed.is_some() {
            // The transport closes the socket; `$disconnect` follows.
            block_on(self.ts.service.disconnect(&id, self.ts.now()));
            let _ = self.absorb_all(slot);
        }
        self.check();
        received
    }

    /// The `slot`-th raw connection's socket closes: `$disconnect`.
    pub fn disconnect_raw(&mut self, slot: usize) {
        if let Some(slot) = self.raw_slot(slot) {
            self.disconnect(slot);
        }
    }

    /// The `slot`-th raw connection's socket vanishes (see [`Harness::vanish`]).
    pub fn vanish_raw(&mut self, slot: usize) {
        if let Some(slot) = self.raw_slot(slot) {
            self.vanish(slot);
        }
    }

    /// The socket of `slot` closes: `$disconnect`.
    fn disconnect(&mut self, slot: usize) {
        let id = self.conns[slot].id.clone();
        block_on(self.ts.service.disconnect(&id, self.ts.now()));
        let _ = self.absorb_all(slot);
        self.check();
    }

    /// The socket of `slot` vanishes without a `$disconnect`: sends to it fail with 410 from now
    /// on, and the service cleans it up when it notices.
    fn vanish(&mut self, slot: usize) {
        let _ = self.absorb_all(slot);
        self.conns[slot].vanished = true;
        self.ts.gateway.vanish(&self.conns[slot].id);
        self.check();
    }

    /// A server-side publish (HTTP, role `service`) of `body` into `room` with an id from a
    /// small set (so some are resends).
    pub fn publish(&mut self, room: usize, id: u8, body: &str, from: Option<&str>) {
        let room = ROOMS[room % ROOMS.len()];
        let identity = self.identity(3);
        let publish = Publish {
            id: format!("pub-{}", id % 8),
            body: body.to_owned(),
            meta: None,
            from: from.map(str::to_owned),
            attachments: Vec::new(),
            reply_to: None,
        };
        let result = block_on(self.ts.service.publish(
            &identity,
            room,
            publish.clone(),
            self.ts.now(),
        ));
        self.next_publish += 1;
        if let Ok(appended) = &result {
            let from = publish.from.clone().unwrap_or_else(|| "svc".to_owned());
            let key = (
                "acme".to_owned(),
                room.to_owned(),
                from.clone(),
                publish.id.clone(),
            );
            let m = &appended.message;
            assert_eq!(
                (m.id.as_str(), m.from.as_str()),
                (publish.id.as_str(), from.as_str())
            );
            match self.acks.get(&key) {
                Some(seq) => {
                    assert!(appended.duplicate, "publish of a stored id stored again");
                    assert_eq!(*seq, m.seq, "publish resend got another seq");
                }
                None => {
                    if !appended.duplicate {
                        self.acks.insert(key, m.seq);
                    }
                }
            }
        }
        for slot in 0..self.conns.len() {
            let _ = self.absorb_all(slot);
        }
        self.check();
    }

    /// Takes and checks every frame sent to every connection, and hands them to the clients.
    /// Returns `slot`'s.
    fn absorb_all(&mut self, slot: usize) -> Received {
        let mut all = HashMap::new();
        for s in 0..self.conns.len() {
            all.insert(s, self.absorb(s));
        }
        self.feed_clients(&all);
        Received {
            frames: all.remove(&slot).unwrap_or_default(),
        }
    }

    fn absorb(&mut self, slot: usize) -> Vec<ServerFrame> {
        let raw = self.ts.gateway.take_raw(&self.conns[slot].id);
        let mut out = Vec::with_capacity(raw.len());
        for text in raw {
            assert!(
                text.len() <= MAX_SERVER_FRAME_BYTES,
                "a {} byte frame for {}",
                text.len(),
                self.conns[slot].id
            );
            let frame: ServerFrame = serde_json::from_str(&text)
                .unwrap_or_else(|e| panic!("not a server frame ({e}): {text}"));
            assert_eq!(frame.to_json(), text, "server frames round-trip");
            self.observe(slot, &frame);
            out.push(frame);
        }
        out
    }

    fn stored(&self, user: usize, room: &str, seq: u64) -> Option<MessageView> {
        block_on(self.ts.history.message(&room_ref(user, room), seq)).expect("memory store")
    }

    fn head(&self, user: usize, room: &str) -> u64 {
        block_on(self.ts.history.head(&room_ref(user, room))).expect("memory store")
    }

    /// Connection-level checks of one frame, in the order received.
    fn observe(&mut self, slot: usize, frame: &ServerFrame) {
        let user = self.conns[slot].user;
        let me = USERS[user].user;
        match frame {
            ServerFrame::Joined {
                room,
                head,
                read_seq,
                unread,
                ..
            } => {
                assert_eq!(*head, self.head(user, room));
                assert!(
                    *read_seq <= *head && *unread == head - read_seq,
                    "{frame:?}"
                );
                let conn = &mut self.conns[slot];
                conn.subs.entry(room.clone()).or_insert_with(|| Sub {
                    start: *head,
                    got: BTreeSet::new(),
                });
                if let Some((r, since)) = &conn.pending_replay
                    && r == room
                {
                    conn.replay = Some(Replay {
                        room: room.clone(),
                        last: *since,
                        count: 0,
                        bytes: 0,
                    });
                }
            }
            ServerFrame::Replayed {
                room,
                through,
                more,
            } => {
                let head = self.head(user, room);
                let replay = self.conns[slot]
                    .replay
                    .take()
                    .expect("`replayed` ends a replay");
                assert_eq!(&replay.room, room);
                assert_eq!(*through, replay.last, "replayed.through");
                assert_eq!(*more, *through < head, "replayed.more at head {head}");
                if *more && replay.count < MAX_REPLAY {
                    let next = self
                        .stored(user, room, *through + 1)
                        .expect("`more` names a stored message");
                    assert!(
                        replay.bytes + page_bytes(&next) > MAX_PAGE_BYTES,
                        "a replay cut short of {MAX_REPLAY} messages with room left: {frame:?}"
                    );
                }
            }
            ServerFrame::Message(m) => {
                let stored = self.stored(user, &m.room, m.seq);
                assert_eq!(
                    stored.as_ref(),
                    Some(m),
                    "a message frame differs from the store"
                );
                let conn = &mut self.conns[slot];
                match &mut conn.replay {
                    Some(replay) if replay.room == m.room => {
                        assert_eq!(m.seq, replay.last + 1, "replay is contiguous");
                        replay.last = m.seq;
                        replay.count += 1;
                        replay.bytes += page_bytes(m);
                        assert!(replay.count <= MAX_REPLAY);
                    }
                    _ => {
                        let sub = conn.subs.get_mut(&m.room).unwrap_or_else(|| {
                            panic!("{} got a message of `{}` it is not in", conn.id, m.room)
                        });
                        assert!(
                            m.seq > sub.start,
                            "delivered {} joined at {}",
                            m.seq,
                            sub.start
                        );
                        assert!(
                            sub.got.last().is_none_or(|l| *l < m.seq),
                            "out of order: {} after {:?}",
                            m.seq,
                            sub.got.last()
                        );
                        sub.got.insert(m.seq);
                    }
                }
            }
            ServerFrame::Ack {
                id,
                room,
                seq,
                duplicate,
                ..
            } => {
                let stored = self
                    .stored(user, room, *seq)
                    .expect("an ack names a stored message");
                assert_eq!(
                    (stored.id.as_str(), stored.from.as_str()),
                    (id.as_str(), me)
                );
                let key = (
                    USERS[user].tenant.to_owned(),
                    room.clone(),
                    me.to_owned(),
                    id.clone(),
                );
                match self.acks.get(&key) {
                    Some(first) => {
                        assert_eq!(first, seq, "a resent id got another seq");
                        assert!(*duplicate, "a resent id was not marked duplicate");
                    }
                    None => {
                        // A duplicate with no ack seen: the first ack went to a vanished socket.
                        self.acks.insert(key, *seq);
                    }
                }
                if !duplicate {
                    let conn = &mut self.conns[slot];
                    let sub = conn.subs.get_mut(room).expect("only members send");
                    assert!(sub.got.last().is_none_or(|l| l < seq));
                    sub.got.insert(*seq);
                }
            }
            ServerFrame::History {
                room,
                messages,
                more,
            } => {
                let head = self.head(user, room);
                for pair in messages.windows(2) {
                    assert_eq!(pair[1].seq, pair[0].seq + 1, "history pages are contiguous");
                }
                for m in messages {
                    assert_eq!(self.stored(user, room, m.seq).as_ref(), Some(m));
                }
                assert!(messages.len() <= MAX_HISTORY_LIMIT as usize);
                if messages.last().is_some_and(|m| m.seq == head)
                    && messages.first().is_some_and(|m| m.seq == 1)
                {
                    assert!(!more, "`more` with the whole room on the page");
                }
            }
            ServerFrame::Read {
                room,
                user: who,
                seq,
            } => {
                assert!(*seq <= self.head(user, room));
                let conn = &mut self.conns[slot];
                assert!(conn.subs.contains_key(room), "read of a room not joined");
                let last = conn.reads.entry((room.clone(), who.clone())).or_insert(0);
                assert!(*seq > *last, "read cursor frame went from {last} to {seq}");
                *last = *seq;
            }
            ServerFrame::Edited { room, seq, .. }
            | ServerFrame::Deleted { room, seq, .. }
            | ServerFrame::Reaction { room, seq, .. } => {
                assert!(*seq >= 1 && *seq <= self.head(user, room));
                assert!(
                    self.conns[slot].subs.contains_key(room),
                    "{frame:?} outside the room"
                );
            }
            ServerFrame::Typing {
                room, user: who, ..
            } => {
                assert_ne!(who, me, "own typing echoed");
                assert!(
                    self.conns[slot].subs.contains_key(room),
                    "{frame:?} outside the room"
                );
            }
            ServerFrame::Left { room } => {
                self.conns[slot].subs.remove(room);
            }
            ServerFrame::Occupancy { room, .. } | ServerFrame::Members { room, .. } => {
                assert!(
                    self.conns[slot].subs.contains_key(room),
                    "{frame:?} outside the room"
                );
            }
            ServerFrame::Closing { code, .. } => {
                self.conns[slot].closed = Some(*code);
            }
            ServerFrame::Presence { .. }
            | ServerFrame::Status { .. }
            | ServerFrame::Pong { .. }
            | ServerFrame::Upload { .. }
            | ServerFrame::Identified { .. }
            | ServerFrame::Conversations { .. }
            | ServerFrame::Agent { .. }
            | ServerFrame::Blocked { .. }
            | ServerFrame::Error { .. } => {}
        }
    }

    // ---- clients (client-level checks on top) ----

    /// Number of clients.
    pub fn client_count(&self) -> usize {
        self.clients.len()
    }

    fn client_user(c: usize) -> usize {
        CLIENTS[c].user
    }

    /// Client `c` (re)connects: a new connection, and every room it was in resumed with
    /// `join {since: last seq it has}`, paging `history {after}` while `more`.
    pub fn reconnect(&mut self, c: usize) {
        let c = c % self.clients.len();
        self.drop_client(c);
        let Some(slot) = self.connect(Self::client_user(c), 86_400) else {
            return;
        };
        self.clients[c].conn = Some(slot);
        self.conns[slot].owner = Some(c);
        let rooms: Vec<String> = self.clients[c].joined.iter().cloned().collect();
        self.clients[c].joined.clear();
        for room in rooms {
            self.client_join_room(c, &room);
        }
    }

    /// Client `c`'s socket closes (`$disconnect`).
    pub fn drop_client(&mut self, c: usize) {
        let c = c % self.clients.len();
        if let Some(slot) = self.clients[c].conn.take() {
            self.disconnect(slot);
        }
    }

    /// Client `c`'s socket vanishes (no `$disconnect`; the service finds out on a later send).
    pub fn vanish_client(&mut self, c: usize) {
        let c = c % self.clients.len();
        if let Some(slot) = self.clients[c].conn.take() {
            self.vanish(slot);
        }
    }

    /// Client `c` joins `ROOMS[room]`, resuming after the last seq it has.
    pub fn join(&mut self, c: usize, room: usize) {
        let c = c % self.clients.len();
        self.client_join_room(c, ROOMS[room % ROOMS.len()]);
    }

    fn client_join_room(&mut self, c: usize, room: &str) {
        let since = self.clients[c].have.get(room).copied().unwrap_or(0);
        let again = self.clients[c].joined.contains(room);
        let text = json!({"action": "join", "room": room, "since": since}).to_string();
        let Some(frames) = self.client_request(c, &text) else {
            return;
        };
        let mut ok = false;
        let mut more = None;
        for f in &frames {
            match f {
                ServerFrame::Joined { room: r, .. } if r == room => ok = true,
                ServerFrame::Replayed {
                    room: r,
                    through,
                    more: m,
                } if r == room => {
                    more = Some((*through, *m));
                }
                _ => {}
            }
        }
        if !ok {
            return;
        }
        if again {
            assert_eq!(
                more,
                Some((since, false)),
                "a rejoin replayed what the client had"
            );
        } else {
            self.take_messages(c, room, &frames, Feed::Live);
        }
        // In the room only once it has caught up (the checks between pages expect no more).
        while let Some((through, true)) = more {
            let text = json!({"action": "history", "room": room, "after": through, "limit": MAX_HISTORY_LIMIT}).to_string();
            let Some(frames) = self.client_request(c, &text) else {
                self.clients[c].joined.insert(room.to_owned());
                return;
            };
            more = None;
            for f in &frames {
                if let ServerFrame::History {
                    room: r,
                    messages,
                    more: m,
                } = f
                    && r == room
                {
                    let last = messages.last().map_or(through, |m| m.seq);
                    assert!(last > through || !m, "a page that does not advance");
                    more = Some((last, *m));
                }
            }
            assert!(more.is_some(), "no history page: {frames:?}");
            self.take_messages(c, room, &frames, Feed::Pages);
        }
        self.clients[c].joined.insert(room.to_owned());
        self.check_clients();
    }

    /// Feeds the messages in `frames` of `room` to client `c`: each must be the next seq.
    fn take_messages(&mut self, c: usize, room: &str, frames: &[ServerFrame], feed: Feed) {
        let client = &mut self.clients[c];
        let have = client.have.entry(room.to_owned()).or_insert(0);
        for f in frames {
            let seqs: Vec<u64> = match (f, feed) {
                (ServerFrame::Message(m), Feed::Live) if m.room == room => vec![m.seq],
                (
                    ServerFrame::Ack {
                        room: r,
                        seq,
                        duplicate: false,
                        ..
                    },
                    Feed::Live,
                ) if r == room => {
                    vec![*seq]
                }
                (
                    ServerFrame::History {
                        room: r, messages, ..
                    },
                    Feed::Pages,
                ) if r == room => messages.iter().map(|m| m.seq).collect(),
                _ => vec![],
            };
            for seq in seqs {
                assert_eq!(
                    seq,
                    *have + 1,
                    "client {c} in `{room}` has 1..={have} and got {seq}"
                );
                *have = seq;
            }
        }
    }

    /// Live frames an operation caused reach every connected client.
    fn feed_clients(&mut self, frames: &HashMap<usize, Vec<ServerFrame>>) {
        for c in 0..self.clients.len() {
            let Some(slot) = self.clients[c].conn else {
                continue;
            };
            let Some(fs) = frames.get(&slot) else {
                continue;
            };
            let rooms: Vec<String> = self.clients[c].joined.iter().cloned().collect();
            for room in rooms {
                self.take_messages(c, &room, fs, Feed::Live);
            }
        }
    }

    /// Sends `text` on client `c`'s connection and hands every connection's frames to the
    /// clients. Returns `c`'s frames; `None` when it is not connected (or was closed).
    fn client_op(&mut self, c: usize, text: &str) -> Option<Vec<ServerFrame>> {
        let slot = self.clients[c].conn?;
        if let Ok(parsed) = parse_client_frame(text)
            && let ClientFrame::Join {
                room,
                since: Some(since),
            } = parsed.frame
        {
            self.conns[slot].pending_replay = Some((room, since));
        }
        let id = self.conns[slot].id.clone();
        let outcome = block_on(
            self.ts
                .service
                .frame(&id, Inbound::Text(text), self.ts.now()),
        );
        let mine = self.absorb_all(slot).frames;
        self.conns[slot].pending_replay = None;
        assert!(
            self.conns[slot].replay.is_none(),
            "a replay without `replayed`"
        );
        if outcome.closed.is_some() {
            self.clients[c].conn = None;
            block_on(self.ts.service.disconnect(&id, self.ts.now()));
            let _ = self.absorb_all(slot);
            self.check();
            return None;
        }
        self.check();
        Some(mine)
    }

    /// [`Harness::client_op`], retried a second later while rate-limited (as a client backs off).
    fn client_request(&mut self, c: usize, text: &str) -> Option<Vec<ServerFrame>> {
        for _ in 0..8 {
            let frames = self.client_op(c, text)?;
            let limited = frames.iter().any(|f| {
                matches!(
                    f,
                    ServerFrame::Error {
                        code: roomcast_core::protocol::ErrorCode::RateLimited,
                        ..
                    }
                )
            });
            if !limited {
                return Some(frames);
            }
            self.ts.advance(1_000);
        }
        panic!("still rate-limited after 8 s of backing off");
    }

    /// Client `c` leaves `ROOMS[room]`.
    pub fn leave(&mut self, c: usize, room: usize) {
        let c = c % self.clients.len();
        let room = ROOMS[room % ROOMS.len()];
        let text = json!({"action": "leave", "room": room}).to_string();
        let frames = self.client_op(c, &text).unwrap_or_default();
        if frames
            .iter()
            .any(|f| matches!(f, ServerFrame::Left { room: r } if r == room))
        {
            self.clients[c].joined.remove(room);
        }
    }

    /// Client `c` sends a new message (a fresh id) in `ROOMS[room]`.
    pub fn send(&mut self, c: usize, room: usize, body: &str) {
        let c = c % self.clients.len();
        let room = ROOMS[room % ROOMS.len()];
        let id = format!("m{c}-{}", self.clients[c].sent.len());
        self.clients[c]
            .sent
            .push((room.to_owned(), id.clone(), body.to_owned()));
        let text = json!({"action": "message", "room": room, "id": id, "body": body}).to_string();
        self.client_op(c, &text);
    }

    /// Client `c` resends its `k`-th message (same id and body, as after a lost ack).
    pub fn resend(&mut self, c: usize, k: usize) {
        let c = c % self.clients.len();
        if self.clients[c].sent.is_empty() {
            return;
        }
        let (room, id, body) = self.clients[c].sent[k % self.clients[c].sent.len()].clone();
        let text = json!({"action": "message", "room": room, "id": id, "body": body}).to_string();
        self.client_op(c, &text);
    }

    /// Client `c` marks `ROOMS[room]` read up to `seq` (clamped by the service to the head).
    pub fn read(&mut self, c: usize, room: usize, seq: u64) {
        let c = c % self.clients.len();
        let room = ROOMS[room % ROOMS.len()];
        let user = Self::client_user(c);
        let r = room_ref(user, room);
        let cursor = |h: &Self| {
            block_on(h.ts.history.read_cursor(&r, USERS[user].user)).expect("memory store")
        };
        let (before, head) = (cursor(self), self.head(user, room));
        let member = self.clients[c].conn.is_some() && self.clients[c].joined.contains(room);
        let text = json!({"action": "read", "room": room, "seq": seq}).to_string();
        let frames = self.client_op(c, &text).unwrap_or_default();
        if member && frames.is_empty() {
            // Accepted (a `read` has no reply): the cursor is where it was, or moved up to `seq`.
            assert_eq!(
                cursor(self),
                before.max(seq.min(head)),
                "read {seq} with cursor {before}, head {head}"
            );
        }
    }

    /// Client `c` edits (or deletes) its `k`-th message, found by the seq its ack carried.
    pub fn amend(&mut self, c: usize, k: usize, delete: bool) {
        let c = c % self.clients.len();
        if self.clients[c].sent.is_empty() {
            return;
        }
        let (room, id, _) = self.clients[c].sent[k % self.clients[c].sent.len()].clone();
        let user = USERS[Self::client_user(c)];
        let key = (
            user.tenant.to_owned(),
            room.clone(),
            user.user.to_owned(),
            id,
        );
        let Some(&seq) = self.acks.get(&key) else {
            return;
        };
        let text = if delete {
            json!({"action": "delete", "room": room, "seq": seq})
        } else {
            json!({"action": "edit", "room": room, "seq": seq, "body": "edited"})
        };
        self.client_op(c, &text.to_string());
    }

    /// Client `c` sends any other frame (typing, presence, history, assign, close, ping).
    pub fn other(&mut self, c: usize, frame: &Value) {
        let c = c % self.clients.len();
        let action = frame.get("action").and_then(Value::as_str);
        assert!(
            !matches!(action, Some("join" | "leave" | "message")),
            "use the client operations for {action:?}"
        );
        self.client_op(c, &frame.to_string());
    }

    // ---- invariants ----

    /// Every invariant of the module documentation; panics on the first broken one.
    pub fn check(&mut self) {
        self.check_store();
        self.check_connections();
        self.check_clients();
    }

    fn check_store(&mut self) {
        for tenant in TENANTS {
            for room in ROOMS {
                let r = RoomRef::new(*tenant, *room);
                let head = block_on(self.ts.history.head(&r)).expect("memory store");
                let mut ids = HashSet::new();
                let mut after = 0;
                loop {
                    let page = block_on(self.ts.history.messages(
                        &r,
                        HistoryQuery {
                            after: Some(after),
                            before: None,
                            limit: MAX_HISTORY_LIMIT,
                        },
                    ))
                    .expect("memory store");
                    for m in &page.messages {
                        assert_eq!(m.seq, after + 1, "gap in `{}`", r.key());
                        after = m.seq;
                        assert!(
                            ids.insert((m.from.clone(), m.id.clone())),
                            "({}, {}) stored twice in `{}`",
                            m.from,
                            m.id,
                            r.key()
                        );
                    }
                    if !page.more {
                        break;
                    }
                }
                assert_eq!(after, head, "`{}` pages end at the head", r.key());
                for spec in USERS.iter().filter(|u| u.tenant == *tenant) {
                    let cursor =
                        block_on(self.ts.history.read_cursor(&r, spec.user)).expect("memory store");
                    let key = (tenant.to_string(), room.to_string(), spec.user.to_owned());
                    let last = self.cursors.entry(key).or_insert(0);
                    assert!(
                        cursor >= *last,
                        "read cursor of {} in `{}` moved back from {last} to {cursor}",
                        spec.user,
                        r.key()
                    );
                    assert!(cursor <= head, "read cursor {cursor} past the head {head}");
                    *last = cursor;
                }
            }
        }
    }

    fn check_connections(&mut self) {
        let mut per_user: HashMap<usize, usize> = HashMap::new();
        for slot in 0..self.conns.len() {
            let stored = block_on(self.ts.connections.connection(&self.conns[slot].id))
                .expect("memory store");
            let conn = &mut self.conns[slot];
            match stored {
                None => {
                    conn.live = false;
                    conn.subs.clear();
                }
                Some(stored) => {
                    assert!(conn.live, "{} is back from the dead", conn.id);
                    *per_user.entry(conn.user).or_default() += 1;
                    let rooms: BTreeSet<&String> = stored.rooms.iter().collect();
                    assert_eq!(rooms.len(), stored.rooms.len(), "a room joined twice");
                    assert!(rooms.len() <= self.config.max_rooms_per_connection);
                    if conn.vanished {
                        continue;
                    }
                    let model: BTreeSet<&String> = conn.subs.keys().collect();
                    assert_eq!(rooms, model, "rooms of {}", conn.id);
                }
            }
        }
        for (user, n) in per_user {
            assert!(
                n <= self.config.max_connections_per_user,
                "{} has {n} connections",
                USERS[user].user
            );
        }
        for slot in 0..self.conns.len() {
            let conn = &self.conns[slot];
            if !conn.live || conn.vanished {
                continue;
            }
            for (room, sub) in &conn.subs {
                let head = self.head(conn.user, room);
                let want: Vec<u64> = (sub.start + 1..=head).collect();
                let got: Vec<u64> = sub.got.iter().copied().collect();
                assert_eq!(
                    got, want,
                    "{} in `{room}` since {}: delivered exactly once",
                    conn.id, sub.start
                );
            }
        }
    }

    fn check_clients(&mut self) {
        for c in 0..self.clients.len() {
            let user = Self::client_user(c);
            let client = &self.clients[c];
            let Some(slot) = client.conn else {
                for (room, have) in &client.have {
                    assert!(*have <= self.head(user, room));
                }
                continue;
            };
            assert!(self.conns[slot].live, "client {c}'s connection is gone");
            for room in &client.joined {
                let have = client.have.get(room).copied().unwrap_or(0);
                assert_eq!(
                    have,
                    self.head(user, room),
                    "client {c} in `{room}` is behind"
                );
            }
        }
    }
}
