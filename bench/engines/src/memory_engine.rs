//! No engine: the batch goes into maps in memory, nothing is durable. The floor under the
//! others: what the writer thread, the channel, the encoding and the producers cost alone.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use anyhow::{Result, anyhow};

use crate::store::{Appended, Engine, NewMessage, Reads, encode, id_key};

#[derive(Default)]
struct Maps {
    /// A room's values by seq − 1.
    rooms: HashMap<String, Vec<Vec<u8>>>,
    ids: HashMap<Vec<u8>, u64>,
    journal: Vec<Vec<u8>>,
}

#[derive(Default)]
struct Memory(RwLock<Maps>);

pub fn open() -> (Box<dyn Engine>, Arc<dyn Reads>) {
    let memory = Arc::new(Memory::default());
    (Box::new(memory.clone()), memory)
}

impl Memory {
    fn read(&self) -> Result<std::sync::RwLockReadGuard<'_, Maps>> {
        self.0.read().map_err(|_| anyhow!("lock poisoned"))
    }
}

impl Engine for Arc<Memory> {
    fn commit(&mut self, batch: &[NewMessage]) -> Result<Vec<Appended>> {
        let mut maps = self.0.write().map_err(|_| anyhow!("lock poisoned"))?;
        let mut outcomes = Vec::with_capacity(batch.len());
        for msg in batch {
            let key = id_key(&msg.room, &msg.from, &msg.id);
            if let Some(&seq) = maps.ids.get(&key) {
                outcomes.push(Appended {
                    seq,
                    duplicate: true,
                });
                continue;
            }
            let values = maps.rooms.entry(msg.room.clone()).or_default();
            let seq = values.len() as u64 + 1;
            let (message, event) = encode(msg, seq)?;
            values.push(message);
            maps.ids.insert(key, seq);
            maps.journal.push(event);
            outcomes.push(Appended {
                seq,
                duplicate: false,
            });
        }
        Ok(outcomes)
    }
}

impl Reads for Memory {
    fn head(&self, room: &str) -> Result<u64> {
        Ok(self.read()?.rooms.get(room).map_or(0, |v| v.len() as u64))
    }

    fn range(&self, room: &str, from: u64, to: u64) -> Result<Vec<Vec<u8>>> {
        let maps = self.read()?;
        let Some(values) = maps.rooms.get(room) else {
            return Ok(Vec::new());
        };
        let from = from.max(1) as usize - 1;
        let to = (to as usize).min(values.len());
        Ok(values.get(from..to).unwrap_or_default().to_vec())
    }

    fn find(&self, room: &str, from: &str, id: &str) -> Result<Option<u64>> {
        Ok(self.read()?.ids.get(&id_key(room, from, id)).copied())
    }
}
