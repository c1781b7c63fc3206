//! Dev-only routes: compiled only with the `dev` feature (the bundle scripts/edge.sh tests), and
//! served only with `ROOMCAST_DEV_ROUTES=1` (set by scripts/edge.sh; never in a deployment).
//!
//! `POST /__dev/conformance` runs, inside a fresh `ChatRoom` object (named
//! `#dev/conformance-…`: `#` is never in a tenant name, so it shares nothing with real rooms):
//!
//! - the migration of a `messages` table made before it had the `via`, `role` and
//!   `attachments` columns: an old message reads back without them, and a new one keeps its
//!   `via` and `role` (and `history_conformance` its attachments, on the migrated table);
//! - the testkit's `history_conformance` against [`SqlHistory`] on that object's SQLite storage
//!   (every case: the store holds any room in this mode), on the migrated table; then
//!   `journal_conformance` and `outbox_conformance` against the same store, which is also the
//!   edge's outbox ports (`outbox.rs`);
//! - the testkit's `attachment_conformance` against [`SqlSlots`] on the same SQLite storage,
//!   its quota charges going to the named tenants' `TenantEvents` objects as a room's do;
//! - the testkit's `desk_conformance` against [`EdgeDesk`]: every call a request to the named
//!   tenant's `TenantEvents` object, as a room's are, so the suite covers its `/__tenant/desk`
//!   route and the compare-and-set on its SQLite (the concurrent writers are concurrent
//!   requests);
//! - the testkit's `connection_conformance` against [`EdgeConnections`] without sockets (the
//!   in-memory indexes and the write-through path; there are no sockets to write to);
//! - a hibernation round trip: connections on real accepted sockets, written to their
//!   attachments, read back by a second [`Sockets`] as a woken-up object would, must be equal.
//!
//! A failing case panics (the suites assert); the runtime turns that into an error response,
//! and the worker's panic recovery resets the module.
//!
//! `POST /__dev/fault?room={room}&kind={kind}` (bearer token: the tenant) injects a fault into
//! that room's object, for the fault tests of tests/tests/edge.rs:
//!
//! - `abort-after-sends&sends={n}`: the object lets `n` more frames out (the next message's
//!   `ack` and the first of its fan-out), waits until its writes are durable (so those frames
//!   leave the output gate), and aborts itself (`ctx.abort`) in the middle of the fan-out: the
//!   runtime resets it and drops every socket ([`FaultyGateway`]);
//! - `fail-appends` / `heal-appends`: installs / removes a SQLite trigger that aborts every
//!   insert into `messages` after its row (and seq) was written: a real storage error from
//!   inside the append's statement;
//! - `alarm-twice` (served by `room.rs`): the object's alarm handler runs twice in a row;
//! - `age-uploads`: every upload slot of the object is made a day (and a second) older, so the
//!   next alarm's sweep treats the unattached ones as abandoned.

use std::cell::Cell;
use std::rc::Rc;
use std::time::Duration;

use roomcast_core::attachments::ABANDONED_AFTER_MS;
use roomcast_core::auth::{Identity, Role, TokenVerifier};
use roomcast_core::gateway::{Gateway, GatewayError};
use roomcast_core::http;
use roomcast_core::lifecycle::ConnectionClock;
use roomcast_core::protocol::PresenceStatus;
use roomcast_core::ratelimit::RatePolicy;
use roomcast_core::store::{Connection, ConnectionStore, HistoryStore, NewMessage, RoomRef};
use roomcast_testkit::attachment_conformance::attachment_conformance;
use roomcast_testkit::conformance::{
    Namer, connection_conformance, history_conformance, journal_conformance, outbox_conformance,
};
use roomcast_testkit::desk_conformance::desk_conformance;
use worker::wasm_bindgen::{JsCast, JsValue};
use worker::{Delay, Env, Request, Response, Result, State, WebSocketPair, js_sys};

use crate::desk::EdgeDesk;
use crate::history::{Rooms, SqlHistory};
use crate::now_ms;
use crate::outbox::Journaling;
use crate::relay::room_object;
use crate::room::json_reply;
use crate::sockets::{EdgeConnections, EdgeGateway, Sockets};
use crate::uploads::SqlSlots;

/// The Worker's side: forwards the request to a fresh object, so every run starts empty.
pub async fn forward(req: Request, env: &Env) -> Result<Response> {
    // `#` is not allowed in tenant names: no real room's object has this name.
    let name = format!("#dev/conformance-{}", now_ms());
    room_object(env, &name)?.fetch_with_request(req).await
}

/// The `messages` table as objects made before the `via` and `role` columns have it, with one
/// message.
const MESSAGES_BEFORE_VIA: &[&str] = &[
    "CREATE TABLE messages (
        rk TEXT NOT NULL, seq INTEGER NOT NULL, cid TEXT NOT NULL, sender TEXT NOT NULL,
        name TEXT, body TEXT, meta TEXT, ts INTEGER NOT NULL, edited_ts INTEGER,
        deleted INTEGER NOT NULL DEFAULT 0,
        PRIMARY KEY (rk, seq), UNIQUE (rk, sender, cid)) WITHOUT ROWID",
    "INSERT INTO messages (rk, seq, cid, sender, body, ts)
        VALUES ('#legacy/r', 1, 'old', 'alice', 'before via', 1)",
];

/// The object's side: runs the conformance suites in this object; 200 with a summary when all
/// pass.
pub async fn conformance(state: &Rc<State>, env: &Env) -> Result<Response> {
    let prefix = format!("edge{}", now_ms());
    for statement in MESSAGES_BEFORE_VIA {
        state.storage().sql().exec(statement, None)?;
    }
    let history = SqlHistory::open(state.storage().sql(), Rooms::Any, Journaling::WhenEndpoints)
        .map_err(|e| worker::Error::RustError(e.to_string()))?;
    migrated_table_keeps_old_messages(&history).await?;
    history_conformance(&history, &Namer::new(format!("{prefix}h"))).await;
    journal_conformance(&history, &Namer::new(format!("{prefix}j"))).await;
    outbox_conformance(&history, &Namer::new(format!("{prefix}o"))).await;
    let slots = SqlSlots::open(state.storage().sql(), Rooms::Any, env.clone())
        .map_err(|e| worker::Error::RustError(e.to_string()))?;
    attachment_conformance(&slots, &Namer::new(format!("{prefix}a")), true).await;
    desk_conformance(
        &EdgeDesk::new(env.clone()),
        &Namer::new(format!("{prefix}d")),
    )
    .await;
    let detached = EdgeConnections(Rc::new(Sockets::detached()));
    connection_conformance(&detached, &Namer::new(format!("{prefix}c"))).await;
    let restored = hibernation_round_trip(state).await?;
    Response::ok(format!(
        "ok: messages table migrated, history_conformance, journal_conformance, outbox_conformance, attachment_conformance, desk_conformance, connection_conformance, hibernation round trip of {restored} connections\n"
    ))
}

/// After [`MESSAGES_BEFORE_VIA`] and [`SqlHistory::open`]: the old message reads back without
/// `via` and `role`, and a message appended to the migrated table keeps its `via` and `role`.
async fn migrated_table_keeps_old_messages(history: &SqlHistory) -> Result<()> {
    let fail = |what: String| worker::Error::RustError(format!("migration: {what}"));
    let room = RoomRef::new("#legacy", "r");
    let old = history
        .message(&room, 1)
        .await
        .map_err(|e| fail(e.to_string()))?;
    match old {
        Some(m)
            if m.body.as_deref() == Some("before via") && m.via.is_none() && m.role.is_none() => {}
        other => return Err(fail(format!("the old message reads {other:?}"))),
    }
    let published = NewMessage {
        reply_to: None,
        id: "new".into(),
        from: "bob".into(),
        name: None,
        role: Role::Service,
        via: Some("backend".into()),
        body: "after via".into(),
        meta: None,
        ts: 2,
        attachments: Vec::new(),
    };
    history
        .append(&room, published)
        .await
        .map_err(|e| fail(e.to_string()))?;
    let new = history
        .message(&room, 2)
        .await
        .map_err(|e| fail(e.to_string()))?;
    match new {
        Some(m) if m.via.as_deref() == Some("backend") && m.role == Some(Role::Service) => Ok(()),
        other => Err(fail(format!("the new message reads {other:?}"))),
    }
}

/// Connections on accepted sockets survive a new object instance (what waking from
/// hibernation is): same connection, rooms, status, rate bucket and timers. Returns how many.
async fn hibernation_round_trip(state: &Rc<State>) -> Result<usize> {
    let fail = |what: String| worker::Error::RustError(format!("hibernation round trip: {what}"));
    let now = now_ms();
    let before = Rc::new(Sockets::new(state.clone()));
    before.load().await;
    let store = EdgeConnections(before.clone());
    let room = RoomRef::new("dev", "lobby");
    let mut pairs = Vec::new();
    let mut expected = Vec::new();
    for (i, user) in ["alice", "alice", "bob"].into_iter().enumerate() {
        let identity = Identity {
            tenant: room.tenant.clone(),
            user: user.into(),
            name: Some(format!("{user} #{i}")),
            role: Role::User,
            rooms: vec!["lobby".into()],
            expires_at_ms: now + 3_600_000,
        };
        let id = format!("dev{now}x{i}");
        let pair = WebSocketPair::new()?;
        state.accept_websocket_with_tags(&pair.server, &[id.as_str()]);
        before.accepted(&id, pair.server.clone());
        let conn = Connection::new(&id, &identity, now);
        store
            .put_connection(&conn)
            .await
            .map_err(|e| fail(e.to_string()))?;
        before
            .connected(&id, ConnectionClock::new(&conn))
            .await
            .map_err(|e| fail(e.to_string()))?;
        store
            .join_room(&id, &room.room, 1)
            .await
            .map_err(|e| fail(e.to_string()))?;
        store
            .take_rate_token(&id, &RatePolicy::default(), now)
            .await
            .map_err(|e| fail(e.to_string()))?;
        expected.push(id);
        pairs.push(pair);
    }
    store
        .set_status(&room.tenant, "alice", PresenceStatus::Busy)
        .await
        .map_err(|e| fail(e.to_string()))?;

    let after = Rc::new(Sockets::new(state.clone()));
    let orphans = after.load().await;
    let woken = EdgeConnections(after.clone());
    let mut restored = 0;
    for id in &expected {
        let was = store
            .connection(id)
            .await
            .map_err(|e| fail(e.to_string()))?;
        let is = woken
            .connection(id)
            .await
            .map_err(|e| fail(e.to_string()))?;
        if was.is_none() || was != is {
            return Err(fail(format!("connection {id}: {was:?} became {is:?}")));
        }
        let (was, is) = (before.clock(id), after.clock(id));
        if was.is_none() || was != is {
            return Err(fail(format!("clock of {id}: {was:?} became {is:?}")));
        }
        restored += 1;
    }
    let users = ["alice".to_owned(), "bob".to_owned()];
    let statuses = woken
        .presence(&room.tenant, &users)
        .await
        .map_err(|e| fail(e.to_string()))?;
    if statuses != [Some(PresenceStatus::Busy), Some(PresenceStatus::Online)] {
        return Err(fail(format!("presence became {statuses:?}")));
    }
    let mut subscribers: Vec<String> = woken
        .room_connections(&room)
        .await
        .map_err(|e| fail(e.to_string()))?
        .into_iter()
        .map(|s| s.conn_id)
        .collect();
    subscribers.sort();
    if subscribers != expected || !orphans.is_empty() {
        return Err(fail(format!(
            "subscribers {subscribers:?}, orphans {}",
            orphans.len()
        )));
    }
    for (id, pair) in expected.iter().zip(&pairs) {
        woken
            .remove_connection(id)
            .await
            .map_err(|e| fail(e.to_string()))?;
        let _ = pair.server.close(Some(1000), Some("dev round trip done"));
    }
    Ok(restored)
}

/// The Worker's side of `POST /__dev/fault`: forwards to the object of the bearer token's tenant
/// and the `room` parameter.
pub async fn forward_fault(req: Request, env: &Env, verifier: &TokenVerifier) -> Result<Response> {
    let authorization = req.headers().get("Authorization")?;
    let identity = match http::bearer_identity(verifier, authorization.as_deref(), now_ms()) {
        Ok(identity) => identity,
        Err(reply) => return json_reply(&reply),
    };
    let Some(room) = param(&req, "room")? else {
        return Response::error("missing `room`", 400);
    };
    let name = RoomRef::new(identity.tenant, room).key();
    room_object(env, &name)?.fetch_with_request(req).await
}

fn param(req: &Request, name: &str) -> Result<Option<String>> {
    Ok(req
        .url()?
        .query_pairs()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v.into_owned()))
}

/// A fault `POST /__dev/fault` asks for (see the module documentation).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// Let this many more frames out, then abort the object.
    AbortAfterSends(usize),
    /// Every append fails inside its statement, after its seq was taken.
    FailAppends,
    /// Appends work again.
    HealAppends,
    /// The alarm handler runs twice.
    AlarmTwice,
    /// Every upload slot becomes a day older.
    AgeUploads,
}

impl Fault {
    /// The fault `req` names, or what is wrong with it.
    pub fn of(req: &Request) -> Result<std::result::Result<Self, String>> {
        let kind = param(req, "kind")?.unwrap_or_default();
        Ok(match kind.as_str() {
            "abort-after-sends" => match param(req, "sends")?.map(|n| n.parse()) {
                Some(Ok(n)) => Ok(Self::AbortAfterSends(n)),
                _ => Err("`sends` must be a count".to_owned()),
            },
            "fail-appends" => Ok(Self::FailAppends),
            "heal-appends" => Ok(Self::HealAppends),
            "alarm-twice" => Ok(Self::AlarmTwice),
            "age-uploads" => Ok(Self::AgeUploads),
            other => Err(format!("unknown fault `{other}`")),
        })
    }
}

/// The trigger [`Fault::FailAppends`] installs: SQLite runs it inside the append's `INSERT`,
/// after the row and its seq are written, and `RAISE(ABORT)` fails that statement.
const FAIL_APPENDS: &str = "CREATE TRIGGER IF NOT EXISTS dev_fail_appends AFTER INSERT ON messages
    BEGIN SELECT RAISE(ABORT, 'dev fault: storage failed after the seq was taken'); END";
const HEAL_APPENDS: &str = "DROP TRIGGER IF EXISTS dev_fail_appends";

/// Arms `fault` on the object with `state` (all but [`Fault::AlarmTwice`], which `room.rs` runs).
pub fn inject(state: &State, faults: &Faults, fault: Fault) -> Result<Response> {
    match fault {
        Fault::AbortAfterSends(n) => faults.abort.set(Abort::After(n)),
        Fault::FailAppends => drop(state.storage().sql().exec(FAIL_APPENDS, None)?),
        Fault::HealAppends => drop(state.storage().sql().exec(HEAL_APPENDS, None)?),
        Fault::AgeUploads => {
            let older = ABANDONED_AFTER_MS + 1_000;
            let statement = format!("UPDATE att_slots SET created_at = created_at - {older}");
            drop(state.storage().sql().exec(&statement, None)?);
        }
        Fault::AlarmTwice => return Response::error("the object runs the alarm itself", 500),
    }
    Response::ok(format!("armed: {fault:?}\n"))
}

/// Where an armed abort stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
enum Abort {
    #[default]
    Off,
    /// This many more frames go out first.
    After(usize),
    /// Under way: no frame goes out any more.
    Aborting,
}

/// The faults armed on one object instance (an abort resets them with the instance).
#[derive(Debug, Default)]
pub struct Faults {
    abort: Cell<Abort>,
}

/// The object's [`Gateway`] in the dev build: [`EdgeGateway`], and the armed abort.
pub struct FaultyGateway {
    inner: EdgeGateway,
    state: Rc<State>,
    faults: Rc<Faults>,
}

impl FaultyGateway {
    /// `inner`, aborting the object with `state` when `faults` says so.
    pub fn new(inner: EdgeGateway, state: Rc<State>, faults: Rc<Faults>) -> Self {
        Self {
            inner,
            state,
            faults,
        }
    }

    /// Makes the frames sent so far durable and delivered, then resets the object. Returns only
    /// if the runtime did not reset it.
    async fn abort(&self) -> GatewayError {
        if let Err(e) = self.state.storage().sync().await {
            return GatewayError::Other(format!("dev abort: storage sync failed: {e}"));
        }
        // The frames the output gate released are on their way to the clients.
        Delay::from(Duration::from_millis(200)).await;
        // `abort` throws an exception nothing can catch: called from here it would unwind
        // through this wasm task and leave the module's executor mid-poll (every later request
        // of the isolate hangs). A timer calls it from the event loop instead; this task waits.
        let raw: &JsValue = self.state.as_raw().as_ref();
        let global = js_sys::global();
        let scheduled = js_sys::Reflect::get(raw, &JsValue::from_str("abort"))
            .and_then(|f| f.dyn_into::<js_sys::Function>())
            .and_then(|abort| {
                let abort = abort.bind1(raw, &JsValue::from_str("dev fault: abort mid-fan-out"));
                js_sys::Reflect::get(&global, &JsValue::from_str("setTimeout"))?
                    .dyn_into::<js_sys::Function>()?
                    .call2(&global, &abort, &JsValue::from_f64(0.0))
            });
        if let Err(e) = scheduled {
            return GatewayError::Other(format!("dev abort: not scheduled: {e:?}"));
        }
        Delay::from(Duration::from_secs(5)).await;
        GatewayError::Other("dev abort: the object was not reset".to_owned())
    }
}

#[async_trait::async_trait(?Send)]
impl Gateway for FaultyGateway {
    async fn send(&self, conn_id: &str, frame: &str) -> std::result::Result<(), GatewayError> {
        match self.faults.abort.get() {
            Abort::Off => {}
            Abort::After(n) if n > 0 => self.faults.abort.set(Abort::After(n - 1)),
            Abort::After(_) => {
                self.faults.abort.set(Abort::Aborting);
                let failed = self.abort().await;
                self.faults.abort.set(Abort::Off);
                return Err(failed);
            }
            // The rest of the fan-out waits for the reset that drops it.
            Abort::Aborting => std::future::pending().await,
        }
        self.inner.send(conn_id, frame).await
    }

    async fn close(
        &self,
        conn_id: &str,
        code: u16,
        reason: &str,
    ) -> std::result::Result<(), GatewayError> {
        self.inner.close(conn_id, code, reason).await
    }
}
