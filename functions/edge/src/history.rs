//! [`SqlHistory`]: the [`HistoryStore`] on a Durable Object's SQLite storage.
//!
//! Every table is keyed by the room key (`tenant/room`) first, so the same code serves the
//! conformance suite's many rooms; a `ChatRoom` opens it with [`Rooms::One`] and refuses every
//! other room, because another room's history lives in another Durable Object.
//!
//! Atomicity: a Durable Object runs one event at a time, and no method here awaits anything
//! (SQLite calls are synchronous), so a read followed by a write cannot interleave with another
//! request. Every write is one SQL statement besides. Durability: the runtime's output gate holds
//! every outgoing message (the `ack` included) until the writes before it are durable.

use roomcast_core::auth::Role;
use roomcast_core::events::Event;
use roomcast_core::protocol::{Conversation, MessageView};
use roomcast_core::store::rules::{apply_amendment, check_conversation_version, page_range};
use roomcast_core::store::{
    Amendment, Appended, HistoryQuery, HistoryStore, Member, NewMessage, Page, RoomRef, StoreError,
};
use serde::Serialize;
use serde::de::DeserializeOwned;
use worker::{SqlStorage, SqlStorageValue};

use crate::outbox::{Journaling, create_tables};

/// Which rooms a store may hold.
#[derive(Debug, Clone)]
pub enum Rooms {
    /// Only this one (a `ChatRoom`: one Durable Object per room).
    One(RoomRef),
    /// Any (the conformance run).
    Any,
}

impl Rooms {
    /// The key of `room` (`tenant/room`), once it is known to live here.
    pub(crate) fn key(&self, room: &RoomRef) -> Result<SqlStorageValue, StoreError> {
        match self {
            Self::One(own) if own != room => Err(StoreError::Other(format!(
                "room `{}` lives in another Durable Object than `{}`",
                room.key(),
                own.key()
            ))),
            _ => Ok(text(&room.key())),
        }
    }
}

/// Largest integer a JavaScript number holds exactly; seqs and times stay far below it, so a
/// larger seq from a client names nothing.
const MAX_SAFE_INTEGER: u64 = (1 << 53) - 1;

const SCHEMA: &[&str] = &[
    // The message itself, in columns; `sender` + `cid` is the idempotency key.
    "CREATE TABLE IF NOT EXISTS messages (
        rk TEXT NOT NULL, seq INTEGER NOT NULL, cid TEXT NOT NULL, sender TEXT NOT NULL,
        name TEXT, body TEXT, meta TEXT, ts INTEGER NOT NULL, edited_ts INTEGER,
        deleted INTEGER NOT NULL DEFAULT 0, via TEXT, role TEXT, attachments TEXT,
        reply_to TEXT, reactions TEXT,
        PRIMARY KEY (rk, seq), UNIQUE (rk, sender, cid)) WITHOUT ROWID",
    "CREATE TABLE IF NOT EXISTS read_cursors (
        rk TEXT NOT NULL, user TEXT NOT NULL, seq INTEGER NOT NULL,
        PRIMARY KEY (rk, user)) WITHOUT ROWID",
    "CREATE TABLE IF NOT EXISTS members (
        rk TEXT NOT NULL, user TEXT NOT NULL, last_seen INTEGER NOT NULL,
        PRIMARY KEY (rk, user)) WITHOUT ROWID",
    "CREATE INDEX IF NOT EXISTS members_by_last_seen ON members (rk, last_seen DESC, user)",
    "CREATE TABLE IF NOT EXISTS conversations (
        rk TEXT NOT NULL PRIMARY KEY, version INTEGER NOT NULL, conversation TEXT NOT NULL)
        WITHOUT ROWID",
];

/// Columns `messages` gained after objects had stored messages, each with the statement that
/// adds it to such an object's older table (SQLite has no `ADD COLUMN IF NOT EXISTS`, so
/// [`SqlHistory::open`] reads the table's columns first). Added columns are nullable: old rows
/// read as `NULL`, which is what they hold.
const ADDED_MESSAGE_COLUMNS: &[(&str, &str)] = &[
    ("via", "ALTER TABLE messages ADD COLUMN via TEXT"),
    // The author's role, by its protocol name; `NULL` on messages stored before it.
    ("role", "ALTER TABLE messages ADD COLUMN role TEXT"),
    // The message's attachments as a JSON array; `NULL` when it has none (and once deleted).
    (
        "attachments",
        "ALTER TABLE messages ADD COLUMN attachments TEXT",
    ),
    // Protocol 1.1: the message a reply answers, as stored with it (JSON); `NULL` for none.
    ("reply_to", "ALTER TABLE messages ADD COLUMN reply_to TEXT"),
    // Protocol 1.1: the reactions as a JSON array; `NULL` when none (and once deleted).
    (
        "reactions",
        "ALTER TABLE messages ADD COLUMN reactions TEXT",
    ),
];

const MESSAGE_COLUMNS: &str = "seq, cid, sender, name, body, meta, ts, edited_ts, deleted, via, role, \
     attachments, reply_to, reactions";

/// Runs `query` and collects its rows.
pub(crate) fn rows(
    sql: &SqlStorage,
    query: &str,
    bindings: Vec<SqlStorageValue>,
) -> Result<Vec<Row>, StoreError> {
    sql.exec(query, bindings)
        .map_err(failed)?
        .raw()
        .collect::<worker::Result<Vec<Row>>>()
        .map_err(failed)
}

/// Runs a statement whose rows are not needed.
pub(crate) fn run(
    sql: &SqlStorage,
    query: &str,
    bindings: Vec<SqlStorageValue>,
) -> Result<(), StoreError> {
    sql.exec(query, bindings).map_err(failed).map(drop)
}

/// History in the Durable Object's SQLite database.
pub struct SqlHistory {
    sql: SqlStorage,
    rooms: Rooms,
    /// When appends and amendments journal their events ([`crate::outbox`]).
    journaling: Journaling,
}

/// One result row.
pub(crate) type Row = Vec<SqlStorageValue>;

pub(crate) fn failed(e: worker::Error) -> StoreError {
    // A failed statement wrote nothing (SQLite statements are atomic), but a full database or
    // an internal error is not worth retrying at once: report it as a failure.
    StoreError::Other(format!("sqlite: {e}"))
}

pub(crate) fn int(v: u64) -> SqlStorageValue {
    SqlStorageValue::Integer(i64::try_from(v.min(MAX_SAFE_INTEGER)).unwrap_or(i64::MAX))
}

pub(crate) fn text(v: &str) -> SqlStorageValue {
    SqlStorageValue::String(v.to_owned())
}

pub(crate) fn opt_text(v: Option<&str>) -> SqlStorageValue {
    v.map_or(SqlStorageValue::Null, text)
}

pub(crate) fn get_u64(row: &Row, i: usize) -> Result<u64, StoreError> {
    match row.get(i) {
        Some(SqlStorageValue::Integer(n)) => {
            u64::try_from(*n).map_err(|_| StoreError::Other(format!("negative integer {n}")))
        }
        // Whole numbers beyond 2^53 arrive as floats; none are stored.
        other => Err(StoreError::Other(format!(
            "column {i}: expected an integer, got {other:?}"
        ))),
    }
}

pub(crate) fn get_opt_u64(row: &Row, i: usize) -> Result<Option<u64>, StoreError> {
    match row.get(i) {
        Some(SqlStorageValue::Null) | None => Ok(None),
        _ => get_u64(row, i).map(Some),
    }
}

pub(crate) fn get_opt_string(row: &Row, i: usize) -> Result<Option<String>, StoreError> {
    match row.get(i) {
        Some(SqlStorageValue::Null) | None => Ok(None),
        Some(SqlStorageValue::String(s)) => Ok(Some(s.clone())),
        other => Err(StoreError::Other(format!(
            "column {i}: expected text, got {other:?}"
        ))),
    }
}

/// A role stored by its protocol name (`user`, `agent`, `service`); `NULL` is `None`.
fn get_opt_role(row: &Row, i: usize) -> Result<Option<Role>, StoreError> {
    get_opt_string(row, i)?
        .map(|name| {
            serde_json::from_value(serde_json::Value::String(name))
                .map_err(|e| StoreError::Other(format!("column {i}: {e}")))
        })
        .transpose()
}

pub(crate) fn get_string(row: &Row, i: usize) -> Result<String, StoreError> {
    get_opt_string(row, i)?.ok_or_else(|| StoreError::Other(format!("column {i} is null")))
}

/// Column `i` holding JSON (`what` names it in errors); `NULL` is `None`.
fn get_json<T: DeserializeOwned>(row: &Row, i: usize, what: &str) -> Result<Option<T>, StoreError> {
    get_opt_string(row, i)?
        .map(|json| serde_json::from_str(&json))
        .transpose()
        .map_err(|e| StoreError::Other(format!("stored {what}: {e}")))
}

fn message_from(room: &RoomRef, row: &Row) -> Result<MessageView, StoreError> {
    Ok(MessageView {
        room: room.room.clone(),
        seq: get_u64(row, 0)?,
        id: get_string(row, 1)?,
        from: get_string(row, 2)?,
        name: get_opt_string(row, 3)?,
        role: get_opt_role(row, 10)?,
        via: get_opt_string(row, 9)?,
        body: get_opt_string(row, 4)?,
        meta: get_json(row, 5, "meta")?,
        ts: get_u64(row, 6)?,
        edited_ts: get_opt_u64(row, 7)?,
        deleted: get_u64(row, 8)? != 0,
        attachments: get_json(row, 11, "attachments")?.unwrap_or_default(),
        reply_to: get_json(row, 12, "reply_to")?,
        reactions: get_json(row, 13, "reactions")?.unwrap_or_default(),
    })
}

/// A JSON column's value: `value` as JSON, or `NULL` when there is none (`None`, or an empty
/// list: a message's attachments and reactions).
fn json_column<T: Serialize + ?Sized>(
    what: &str,
    value: Option<&T>,
) -> Result<SqlStorageValue, StoreError> {
    let Some(value) = value else {
        return Ok(SqlStorageValue::Null);
    };
    serde_json::to_string(value)
        .map(SqlStorageValue::String)
        .map_err(|e| StoreError::Other(format!("{what}: {e}")))
}

/// A list for [`json_column`]: `None` when empty.
fn listed<T>(items: &[T]) -> Option<&[T]> {
    (!items.is_empty()).then_some(items)
}

impl SqlHistory {
    /// Opens the store, creating its tables when missing and adding the columns an older
    /// object's table lacks, and the outbox's tables ([`crate::outbox`]). Each append and
    /// amendment journals its event as `journaling` says, in the same synchronous turn as the
    /// change.
    pub fn open(sql: SqlStorage, rooms: Rooms, journaling: Journaling) -> Result<Self, StoreError> {
        for statement in SCHEMA {
            sql.exec(statement, None).map_err(failed)?;
        }
        create_tables(&sql)?;
        let store = Self {
            sql,
            rooms,
            journaling,
        };
        // `table_info` rows: (cid, name, type, notnull, dflt_value, pk).
        let columns: Vec<String> = store
            .rows("PRAGMA table_info(messages)", Vec::new())?
            .iter()
            .map(|row| get_string(row, 1))
            .collect::<Result<_, _>>()?;
        for (column, statement) in ADDED_MESSAGE_COLUMNS {
            if !columns.iter().any(|c| c == column) {
                store.run(statement, Vec::new())?;
            }
        }
        Ok(store)
    }

    /// The database.
    pub(crate) fn sql(&self) -> &SqlStorage {
        &self.sql
    }

    /// When changes are journaled.
    pub(crate) fn journaling(&self) -> Journaling {
        self.journaling
    }

    fn rows(&self, query: &str, bindings: Vec<SqlStorageValue>) -> Result<Vec<Row>, StoreError> {
        rows(&self.sql, query, bindings)
    }

    fn run(&self, query: &str, bindings: Vec<SqlStorageValue>) -> Result<(), StoreError> {
        run(&self.sql, query, bindings)
    }

    /// Journals the event of a change just written by `undo`-able statements: no `await` lies
    /// between the change and this call, so the runtime commits both in one implicit
    /// transaction. A failed journal write is a failed change: `undo` takes the change back
    /// (both or neither), and the error is reported.
    fn journal_change(
        &self,
        event: Option<Event>,
        undo: impl FnOnce() -> Result<(), StoreError>,
    ) -> Result<(), StoreError> {
        match self.journal_write(event) {
            Ok(_) => Ok(()),
            Err(e) => {
                if let Err(undo_error) = undo() {
                    tracing::error!(error = %undo_error, "a change without its event could not be taken back");
                }
                Err(e)
            }
        }
    }

    /// The room key, once the room is known to live here.
    fn key(&self, room: &RoomRef) -> Result<SqlStorageValue, StoreError> {
        self.rooms.key(room)
    }

    fn find(
        &self,
        room: &RoomRef,
        rk: SqlStorageValue,
        seq: u64,
    ) -> Result<Option<MessageView>, StoreError> {
        if seq == 0 || seq > MAX_SAFE_INTEGER {
            return Ok(None);
        }
        let rows = self.rows(
            &format!("SELECT {MESSAGE_COLUMNS} FROM messages WHERE rk = ? AND seq = ?"),
            vec![rk, int(seq)],
        )?;
        rows.first().map(|row| message_from(room, row)).transpose()
    }

    /// Stores a message's amendable columns as `message` has them.
    fn write_amended(&self, rk: &SqlStorageValue, message: &MessageView) -> Result<(), StoreError> {
        self.run(
            "UPDATE messages SET body = ?, meta = ?, edited_ts = ?, deleted = ?, attachments = ?,
             reactions = ?, reply_to = ? WHERE rk = ? AND seq = ?",
            vec![
                opt_text(message.body.as_deref()),
                opt_text(
                    message
                        .meta
                        .as_ref()
                        .map(serde_json::Value::to_string)
                        .as_deref(),
                ),
                message.edited_ts.map_or(SqlStorageValue::Null, int),
                SqlStorageValue::Integer(i64::from(message.deleted)),
                json_column("attachments", listed(&message.attachments))?,
                json_column("reactions", listed(&message.reactions))?,
                json_column("reply_to", message.reply_to.as_deref())?,
                rk.clone(),
                int(message.seq),
            ],
        )
    }

    fn head_of(&self, rk: SqlStorageValue) -> Result<u64, StoreError> {
        let rows = self.rows(
            "SELECT COALESCE(MAX(seq), 0) FROM messages WHERE rk = ?",
            vec![rk],
        )?;
        rows.first().map_or(Ok(0), |row| get_u64(row, 0))
    }
}

#[async_trait::async_trait(?Send)]
impl HistoryStore for SqlHistory {
    async fn append(&self, room: &RoomRef, msg: NewMessage) -> Result<Appended, StoreError> {
        let rk = self.key(room)?;
        let existing = self.rows(
            &format!(
                "SELECT {MESSAGE_COLUMNS} FROM messages WHERE rk = ? AND sender = ? AND cid = ?"
            ),
            vec![rk.clone(), text(&msg.from), text(&msg.id)],
        )?;
        if let Some(row) = existing.first() {
            return Ok(Appended {
                message: message_from(room, row)?,
                duplicate: true,
            });
        }
        let meta = msg
            .meta
            .as_ref()
            .map(serde_json::to_string)
            .transpose()
            .map_err(|e| StoreError::Other(format!("meta: {e}")))?;
        // One statement: the next seq is computed where it is inserted.
        let rows = self.rows(
            "INSERT INTO messages
             (rk, seq, cid, sender, name, body, meta, ts, via, role, attachments, reply_to)
             SELECT ?1, COALESCE(MAX(seq), 0) + 1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11
             FROM messages
             WHERE rk = ?1
             RETURNING seq",
            vec![
                rk,
                text(&msg.id),
                text(&msg.from),
                opt_text(msg.name.as_deref()),
                text(&msg.body),
                opt_text(meta.as_deref()),
                int(msg.ts),
                opt_text(msg.via.as_deref()),
                text(msg.role.as_str()),
                json_column("attachments", listed(&msg.attachments))?,
                json_column("reply_to", msg.reply_to.as_deref())?,
            ],
        )?;
        let seq = rows
            .first()
            .ok_or_else(|| StoreError::Other("insert returned no seq".into()))
            .and_then(|row| get_u64(row, 0))?;
        let message = roomcast_core::store::rules::stored_message(room, seq, msg);
        self.journal_change(Event::of_append(room, &message), || {
            self.run(
                "DELETE FROM messages WHERE rk = ? AND seq = ?",
                vec![text(&room.key()), int(seq)],
            )
        })?;
        Ok(Appended {
            message,
            duplicate: false,
        })
    }

    async fn head(&self, room: &RoomRef) -> Result<u64, StoreError> {
        let rk = self.key(room)?;
        self.head_of(rk)
    }

    async fn messages(&self, room: &RoomRef, query: HistoryQuery) -> Result<Page, StoreError> {
        let rk = self.key(room)?;
        let head = self.head_of(rk.clone())?;
        let Some((lo, hi, more)) = page_range(query, head) else {
            return Ok(Page::default());
        };
        let rows = self.rows(
            &format!(
                "SELECT {MESSAGE_COLUMNS} FROM messages WHERE rk = ? AND seq BETWEEN ? AND ? ORDER BY seq"
            ),
            vec![rk, int(lo), int(hi)],
        )?;
        let messages = rows
            .iter()
            .map(|row| message_from(room, row))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Page { messages, more })
    }

    async fn message(&self, room: &RoomRef, seq: u64) -> Result<Option<MessageView>, StoreError> {
        let rk = self.key(room)?;
        self.find(room, rk, seq)
    }

    async fn amend(
        &self,
        room: &RoomRef,
        seq: u64,
        change: Amendment,
    ) -> Result<MessageView, StoreError> {
        let rk = self.key(room)?;
        let before = self
            .find(room, rk.clone(), seq)?
            .ok_or(StoreError::NotFound)?;
        let mut message = before.clone();
        if !apply_amendment(&mut message, change.clone()) {
            return Ok(message);
        }
        self.write_amended(&rk, &message)?;
        self.journal_change(Some(Event::of_amend(room, &message, &change)), || {
            self.write_amended(&rk, &before)
        })?;
        Ok(message)
    }

    async fn advance_read(
        &self,
        room: &RoomRef,
        user: &str,
        seq: u64,
    ) -> Result<(u64, bool), StoreError> {
        let current = self.read_cursor(room, user).await?;
        if seq <= current {
            return Ok((current, false));
        }
        self.run(
            "INSERT INTO read_cursors (rk, user, seq) VALUES (?, ?, ?)
             ON CONFLICT (rk, user) DO UPDATE SET seq = MAX(seq, excluded.seq)",
            vec![self.key(room)?, text(user), int(seq)],
        )?;
        Ok((seq, true))
    }

    async fn read_cursor(&self, room: &RoomRef, user: &str) -> Result<u64, StoreError> {
        let rows = self.rows(
            "SELECT seq FROM read_cursors WHERE rk = ? AND user = ?",
            vec![self.key(room)?, text(user)],
        )?;
        rows.first().map_or(Ok(0), |row| get_u64(row, 0))
    }

    async fn touch_member(&self, room: &RoomRef, user: &str, at_ms: u64) -> Result<(), StoreError> {
        self.run(
            "INSERT INTO members (rk, user, last_seen) VALUES (?, ?, ?)
             ON CONFLICT (rk, user) DO UPDATE SET last_seen = MAX(last_seen, excluded.last_seen)",
            vec![self.key(room)?, text(user), int(at_ms)],
        )
    }

    async fn members(&self, room: &RoomRef, limit: usize) -> Result<Vec<Member>, StoreError> {
        // The order of `rules::sort_members`: most recently seen first, then by user id
        // (SQLite compares text bytewise, as Rust compares strings).
        let rows = self.rows(
            "SELECT user, last_seen FROM members WHERE rk = ?
             ORDER BY last_seen DESC, user ASC LIMIT ?",
            vec![self.key(room)?, int(limit as u64)],
        )?;
        rows.iter()
            .map(|row| {
                Ok(Member {
                    user: get_string(row, 0)?,
                    last_seen: get_u64(row, 1)?,
                })
            })
            .collect()
    }

    async fn conversation(&self, room: &RoomRef) -> Result<Option<Conversation>, StoreError> {
        let rows = self.rows(
            "SELECT conversation FROM conversations WHERE rk = ?",
            vec![self.key(room)?],
        )?;
        rows.first()
            .map(|row| {
                serde_json::from_str(&get_string(row, 0)?)
                    .map_err(|e| StoreError::Other(format!("stored conversation: {e}")))
            })
            .transpose()
    }

    async fn put_conversation(
        &self,
        room: &RoomRef,
        next: &Conversation,
    ) -> Result<(), StoreError> {
        let stored = self.conversation(room).await?;
        check_conversation_version(stored.as_ref(), next)?;
        let json = serde_json::to_string(next)
            .map_err(|e| StoreError::Other(format!("conversation: {e}")))?;
        self.run(
            "INSERT INTO conversations (rk, version, conversation) VALUES (?, ?, ?)
             ON CONFLICT (rk) DO UPDATE SET version = excluded.version,
             conversation = excluded.conversation",
            vec![self.key(room)?, int(next.version), text(&json)],
        )
    }
}
