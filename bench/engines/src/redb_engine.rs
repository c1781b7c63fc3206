//! redb with roomcast's layout (infra/local/src/embedded.rs and embedded/outbox.rs): messages
//! `(room, seq) → JSON`, heads `room → seq`, idempotency `(room, from, id) → seq`, the event
//! journal `position → JSON` with its position counter; 4 MiB cache; one write transaction per
//! batch, `Durability::Immediate`.

use std::path::Path;
use std::sync::Arc;

use anyhow::{Context, Result};
use redb::{Database, Durability, ReadableDatabase, ReadableTable, TableDefinition};

use crate::store::{Appended, Engine, NewMessage, Reads, encode};

const MESSAGES: TableDefinition<'_, (&str, u64), &[u8]> = TableDefinition::new("messages");
const HEADS: TableDefinition<'_, &str, u64> = TableDefinition::new("heads");
const IDS: TableDefinition<'_, (&str, &str, &str), u64> = TableDefinition::new("idempotency");
const JOURNAL: TableDefinition<'_, u64, &[u8]> = TableDefinition::new("event_journal");
const COUNTERS: TableDefinition<'_, &str, u64> = TableDefinition::new("event_counters");
const NEXT_POSITION: &str = "journal_position";

/// roomcast's `CACHE_BYTES`.
const CACHE_BYTES: usize = 4 * 1024 * 1024;

struct Writer(Arc<Database>);
struct Reader(Arc<Database>);

pub fn open(dir: &Path) -> Result<(Box<dyn Engine>, Arc<dyn Reads>)> {
    let path = dir.join("roomcast.redb");
    let db = Database::builder()
        .set_cache_size(CACHE_BYTES)
        .create(&path)
        .with_context(|| format!("cannot open {}", path.display()))?;
    let txn = db.begin_write()?;
    {
        txn.open_table(MESSAGES)?;
        txn.open_table(HEADS)?;
        txn.open_table(IDS)?;
        txn.open_table(JOURNAL)?;
        txn.open_table(COUNTERS)?;
    }
    txn.commit()?;
    let db = Arc::new(db);
    Ok((Box::new(Writer(db.clone())), Arc::new(Reader(db))))
}

impl Engine for Writer {
    fn commit(&mut self, batch: &[NewMessage]) -> Result<Vec<Appended>> {
        let mut txn = self.0.begin_write()?;
        txn.set_durability(Durability::Immediate)?;
        let mut outcomes = Vec::with_capacity(batch.len());
        {
            let mut messages = txn.open_table(MESSAGES)?;
            let mut heads = txn.open_table(HEADS)?;
            let mut ids = txn.open_table(IDS)?;
            let mut journal = txn.open_table(JOURNAL)?;
            let mut counters = txn.open_table(COUNTERS)?;
            for msg in batch {
                let room = msg.room.as_str();
                let key = (room, msg.from.as_str(), msg.id.as_str());
                if let Some(seq) = ids.get(key)?.map(|v| v.value()) {
                    // roomcast reads the original back to answer the duplicate.
                    messages
                        .get((room, seq))?
                        .context("idempotency key without message")?;
                    outcomes.push(Appended {
                        seq,
                        duplicate: true,
                    });
                    continue;
                }
                let seq = heads.get(room)?.map_or(0, |v| v.value()) + 1;
                let (message, event) = encode(msg, seq)?;
                messages.insert((room, seq), message.as_slice())?;
                heads.insert(room, seq)?;
                ids.insert(key, seq)?;
                let position = counters.get(NEXT_POSITION)?.map_or(0, |v| v.value()) + 1;
                counters.insert(NEXT_POSITION, position)?;
                journal.insert(position, event.as_slice())?;
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

impl Reads for Reader {
    fn head(&self, room: &str) -> Result<u64> {
        let txn = self.0.begin_read()?;
        let heads = txn.open_table(HEADS)?;
        Ok(heads.get(room)?.map_or(0, |v| v.value()))
    }

    fn range(&self, room: &str, from: u64, to: u64) -> Result<Vec<Vec<u8>>> {
        let txn = self.0.begin_read()?;
        let messages = txn.open_table(MESSAGES)?;
        let mut values = Vec::new();
        for entry in messages.range((room, from)..=(room, to))? {
            values.push(entry?.1.value().to_vec());
        }
        Ok(values)
    }

    fn find(&self, room: &str, from: &str, id: &str) -> Result<Option<u64>> {
        let txn = self.0.begin_read()?;
        let ids = txn.open_table(IDS)?;
        Ok(ids.get((room, from, id))?.map(|v| v.value()))
    }
}
