//! SQLite in WAL mode with `synchronous=FULL` (the WAL is fsynced at every commit): one
//! transaction per group commit through cached prepared statements; the same tables as redb
//! (WITHOUT ROWID, keyed like redb's tuples). Reads use their own connection, which WAL lets
//! run beside the writer.

use std::path::Path;
use std::sync::{Arc, Mutex};

use anyhow::{Result, anyhow};
use rusqlite::{Connection, OptionalExtension, params};

use crate::store::{Appended, Engine, NewMessage, Reads, encode};

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS messages (room TEXT NOT NULL, seq INTEGER NOT NULL, value BLOB NOT NULL,
  PRIMARY KEY (room, seq)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS heads (room TEXT PRIMARY KEY, seq INTEGER NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS ids (room TEXT NOT NULL, sender TEXT NOT NULL, id TEXT NOT NULL,
  seq INTEGER NOT NULL, PRIMARY KEY (room, sender, id)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS journal (position INTEGER PRIMARY KEY, event BLOB NOT NULL);
";

struct Writer(Connection);
struct Reader(Mutex<Connection>);

fn connect(path: &Path) -> Result<Connection> {
    let conn = Connection::open(path)?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", "FULL")?;
    conn.busy_timeout(std::time::Duration::from_secs(10))?;
    Ok(conn)
}

pub fn open(dir: &Path) -> Result<(Box<dyn Engine>, Arc<dyn Reads>)> {
    let path = dir.join("roomcast.sqlite");
    let writer = connect(&path)?;
    writer.execute_batch(SCHEMA)?;
    let reader = connect(&path)?;
    Ok((
        Box::new(Writer(writer)),
        Arc::new(Reader(Mutex::new(reader))),
    ))
}

impl Engine for Writer {
    fn commit(&mut self, batch: &[NewMessage]) -> Result<Vec<Appended>> {
        let txn = self.0.transaction()?;
        let mut outcomes = Vec::with_capacity(batch.len());
        {
            let mut find =
                txn.prepare_cached("SELECT seq FROM ids WHERE room=?1 AND sender=?2 AND id=?3")?;
            let mut original =
                txn.prepare_cached("SELECT length(value) FROM messages WHERE room=?1 AND seq=?2")?;
            let mut head = txn.prepare_cached("SELECT seq FROM heads WHERE room=?1")?;
            let mut insert =
                txn.prepare_cached("INSERT INTO messages (room, seq, value) VALUES (?1, ?2, ?3)")?;
            let mut set_head =
                txn.prepare_cached("INSERT OR REPLACE INTO heads (room, seq) VALUES (?1, ?2)")?;
            let mut keep_id = txn.prepare_cached(
                "INSERT INTO ids (room, sender, id, seq) VALUES (?1, ?2, ?3, ?4)",
            )?;
            let mut journal = txn.prepare_cached("INSERT INTO journal (event) VALUES (?1)")?;
            for msg in batch {
                let known: Option<u64> = find
                    .query_row(params![msg.room, msg.from, msg.id], |row| row.get(0))
                    .optional()?;
                if let Some(seq) = known {
                    original
                        .query_row(params![msg.room, seq], |row| row.get::<_, i64>(0))
                        .optional()?
                        .ok_or_else(|| anyhow!("idempotency key without message"))?;
                    outcomes.push(Appended {
                        seq,
                        duplicate: true,
                    });
                    continue;
                }
                let seq = head
                    .query_row(params![msg.room], |row| row.get::<_, u64>(0))
                    .optional()?
                    .unwrap_or(0)
                    + 1;
                let (message, event) = encode(msg, seq)?;
                insert.execute(params![msg.room, seq, message])?;
                set_head.execute(params![msg.room, seq])?;
                keep_id.execute(params![msg.room, msg.from, msg.id, seq])?;
                journal.execute(params![event])?;
                outcomes.push(Appended {
                    seq,
                    duplicate: false,
                });
            }
        }
        txn.commit()?;
        Ok(outcomes)
    }
}

impl Reader {
    fn conn(&self) -> Result<std::sync::MutexGuard<'_, Connection>> {
        self.0.lock().map_err(|_| anyhow!("reader lock poisoned"))
    }
}

impl Reads for Reader {
    fn head(&self, room: &str) -> Result<u64> {
        let conn = self.conn()?;
        let mut head = conn.prepare_cached("SELECT seq FROM heads WHERE room=?1")?;
        Ok(head
            .query_row(params![room], |row| row.get(0))
            .optional()?
            .unwrap_or(0))
    }

    fn range(&self, room: &str, from: u64, to: u64) -> Result<Vec<Vec<u8>>> {
        let conn = self.conn()?;
        let mut range = conn.prepare_cached(
            "SELECT value FROM messages WHERE room=?1 AND seq BETWEEN ?2 AND ?3 ORDER BY seq",
        )?;
        let rows = range.query_map(params![room, from, to], |row| row.get(0))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    fn find(&self, room: &str, from: &str, id: &str) -> Result<Option<u64>> {
        let conn = self.conn()?;
        let mut find =
            conn.prepare_cached("SELECT seq FROM ids WHERE room=?1 AND sender=?2 AND id=?3")?;
        Ok(find
            .query_row(params![room, from, id], |row| row.get(0))
            .optional()?)
    }
}
