//! fjall (an LSM tree with a write-ahead journal): one keyspace per roomcast table, one write
//! batch per group commit, persisted with `PersistMode::SyncData` before the answers. Keys are
//! byte strings ordered like redb's tuples: `room \0 seq(BE)`, `room`, `room \0 from \0 id`,
//! `position(BE)`. The batch is invisible until committed, so the batch's own heads and keys
//! are looked up in a [`BatchView`] first.

use std::path::Path;
use std::sync::Arc;

use anyhow::{Context, Result};
use fjall::{Database, Keyspace, KeyspaceCreateOptions, PersistMode};

use crate::store::{Appended, BatchView, Engine, NewMessage, Reads, encode, id_key};

#[derive(Clone)]
struct Spaces {
    db: Database,
    messages: Keyspace,
    heads: Keyspace,
    ids: Keyspace,
    journal: Keyspace,
}

struct Writer {
    spaces: Spaces,
    position: u64,
    view: BatchView,
}

pub fn open(dir: &Path) -> Result<(Box<dyn Engine>, Arc<dyn Reads>)> {
    let db = Database::builder(dir.join("fjall"))
        .open()
        .context("cannot open fjall")?;
    let spaces = Spaces {
        messages: db.keyspace("messages", KeyspaceCreateOptions::default)?,
        heads: db.keyspace("heads", KeyspaceCreateOptions::default)?,
        ids: db.keyspace("ids", KeyspaceCreateOptions::default)?,
        journal: db.keyspace("journal", KeyspaceCreateOptions::default)?,
        db,
    };
    let position = match spaces.journal.last_key_value() {
        None => 0,
        Some(last) => u64_of(&last.key()?)?,
    };
    let writer = Writer {
        spaces: spaces.clone(),
        position,
        view: BatchView::default(),
    };
    Ok((Box::new(writer), Arc::new(spaces)))
}

fn message_key(room: &str, seq: u64) -> Vec<u8> {
    let mut key = Vec::with_capacity(room.len() + 9);
    key.extend_from_slice(room.as_bytes());
    key.push(0);
    key.extend_from_slice(&seq.to_be_bytes());
    key
}

fn u64_of(bytes: &[u8]) -> Result<u64> {
    Ok(u64::from_be_bytes(
        bytes.try_into().context("stored number is not 8 bytes")?,
    ))
}

impl Engine for Writer {
    fn commit(&mut self, batch: &[NewMessage]) -> Result<Vec<Appended>> {
        let s = &self.spaces;
        let mut write = s.db.batch().durability(Some(PersistMode::SyncData));
        let mut outcomes = Vec::with_capacity(batch.len());
        self.view.clear();
        for msg in batch {
            let key = id_key(&msg.room, &msg.from, &msg.id);
            let known = match self.view.ids.get(&key) {
                Some(seq) => Some(*seq),
                None => s.ids.get(&key)?.map(|v| u64_of(&v)).transpose()?,
            };
            if let Some(seq) = known {
                if !self.view.ids.contains_key(&key) {
                    s.messages
                        .get(message_key(&msg.room, seq))?
                        .context("idempotency key without message")?;
                }
                outcomes.push(Appended {
                    seq,
                    duplicate: true,
                });
                continue;
            }
            let head = match self.view.heads.get(&msg.room) {
                Some(seq) => *seq,
                None => s
                    .heads
                    .get(&msg.room)?
                    .map(|v| u64_of(&v))
                    .transpose()?
                    .unwrap_or(0),
            };
            let seq = head + 1;
            let (message, event) = encode(msg, seq)?;
            write.insert(&s.messages, message_key(&msg.room, seq), message);
            write.insert(&s.heads, msg.room.as_bytes(), seq.to_be_bytes());
            write.insert(&s.ids, key.clone(), seq.to_be_bytes());
            self.position += 1;
            write.insert(&s.journal, self.position.to_be_bytes(), event);
            self.view.heads.insert(msg.room.clone(), seq);
            self.view.ids.insert(key, seq);
            outcomes.push(Appended {
                seq,
                duplicate: false,
            });
        }
        if let Err(e) = write.commit() {
            // Nothing of the batch is acknowledged; the next batch starts from what is stored.
            self.position = match s.journal.last_key_value() {
                None => 0,
                Some(last) => u64_of(&last.key()?)?,
            };
            return Err(e.into());
        }
        Ok(outcomes)
    }
}

impl Reads for Spaces {
    fn head(&self, room: &str) -> Result<u64> {
        Ok(self
            .heads
            .get(room)?
            .map(|v| u64_of(&v))
            .transpose()?
            .unwrap_or(0))
    }

    fn range(&self, room: &str, from: u64, to: u64) -> Result<Vec<Vec<u8>>> {
        let mut values = Vec::new();
        for entry in self
            .messages
            .range(message_key(room, from)..=message_key(room, to))
        {
            values.push(entry.value()?.to_vec());
        }
        Ok(values)
    }

    fn find(&self, room: &str, from: &str, id: &str) -> Result<Option<u64>> {
        self.ids
            .get(id_key(room, from, id))?
            .map(|v| u64_of(&v))
            .transpose()
    }
}
