//! Dev-only routes: compiled only with the `dev` feature (the bundle scripts/edge.sh tests), and
//! served only with `ROOMCAST_DEV_ROUTES=1` (set by scripts/edge.sh; never in a deployment).
//!
//! `POST /__dev/conformance` runs, inside a fresh `ChatRoom` object (named
//! `#dev/conformance-…`: `#` is never in a tenant name, so it shares nothing with real rooms):
//!
//! - the migration of a `messages` table made before it had the `via` column: an old message
//!   reads back, and a new one keeps its `via`;
//! - the testkit's `history_conformance` against [`SqlHistory`] on that object's SQLite storage
//!   (every case: the store holds any room in this mode), on the migrated table;
//! - the testkit's `connection_conformance` against [`EdgeConnections`] without sockets (the
//!   in-memory indexes and the write-through path; there are no sockets to write to);
//! - a hibernation round trip: connections on real accepted sockets, written to their
//!   attachments, read back by a second [`Sockets`] as a woken-up object would, must be equal.
//!
//! A failing case panics (the suites assert); the runtime turns that into an error response,
//! and the worker's panic recovery resets the module.

use std::rc::Rc;

use roomcast_core::auth::{Identity, Role};
use roomcast_core::lifecycle::ConnectionClock;
use roomcast_core::protocol::PresenceStatus;
use roomcast_core::ratelimit::RatePolicy;
use roomcast_core::store::{Connection, ConnectionStore, HistoryStore, NewMessage, RoomRef};
use roomcast_testkit::conformance::{Namer, connection_conformance, history_conformance};
use worker::{Env, Request, Response, Result, State, WebSocketPair};

use crate::history::{Rooms, SqlHistory};
use crate::now_ms;
use crate::relay::room_object;
use crate::sockets::{EdgeConnections, Sockets};

/// The Worker's side: forwards the request to a fresh object, so every run starts empty.
pub async fn forward(req: Request, env: &Env) -> Result<Response> {
    // `#` is not allowed in tenant names: no real room's object has this name.
    let name = format!("#dev/conformance-{}", now_ms());
    room_object(env, &name)?.fetch_with_request(req).await
}

/// The `messages` table as objects made before the `via` column have it, with one message.
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
pub async fn conformance(state: &Rc<State>) -> Result<Response> {
    let prefix = format!("edge{}", now_ms());
    for statement in MESSAGES_BEFORE_VIA {
        state.storage().sql().exec(statement, None)?;
    }
    let history = SqlHistory::open(state.storage().sql(), Rooms::Any)
        .map_err(|e| worker::Error::RustError(e.to_string()))?;
    migrated_table_keeps_old_messages(&history).await?;
    history_conformance(&history, &Namer::new(format!("{prefix}h"))).await;
    let detached = EdgeConnections(Rc::new(Sockets::detached()));
    connection_conformance(&detached, &Namer::new(format!("{prefix}c"))).await;
    let restored = hibernation_round_trip(state).await?;
    Response::ok(format!(
        "ok: messages table migrated, history_conformance, connection_conformance, hibernation round trip of {restored} connections\n"
    ))
}

/// After [`MESSAGES_BEFORE_VIA`] and [`SqlHistory::open`]: the old message reads back without
/// `via`, and a message appended to the migrated table keeps its `via`.
async fn migrated_table_keeps_old_messages(history: &SqlHistory) -> Result<()> {
    let fail = |what: String| worker::Error::RustError(format!("migration: {what}"));
    let room = RoomRef::new("#legacy", "r");
    let old = history
        .message(&room, 1)
        .await
        .map_err(|e| fail(e.to_string()))?;
    match old {
        Some(m) if m.body.as_deref() == Some("before via") && m.via.is_none() => {}
        other => return Err(fail(format!("the old message reads {other:?}"))),
    }
    let published = NewMessage {
        id: "new".into(),
        from: "bob".into(),
        name: None,
        via: Some("backend".into()),
        body: "after via".into(),
        meta: None,
        ts: 2,
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
        Some(m) if m.via.as_deref() == Some("backend") => Ok(()),
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
