//! A purpose-built append-only log: numbered segment files of records
//! `[payload length u32 LE][CRC-32 of payload u32 LE][payload]`, one `write` plus one
//! `fdatasync` per group commit. Payloads: a message
//! `1, seq u64, room/from/id lengths u16 ×3, room, from, id, JSON` or an event
//! `2, position u64, JSON` (both little-endian).
//!
//! Everything that finds a record is in memory — room → seq → place, the idempotency keys, the
//! journal positions — and is rebuilt on open by scanning every segment; a torn or corrupt record
//! at the end of the last segment (a commit the crash cut short, never acknowledged) is cut off
//! there. Reads are `pread`s of the JSON bytes. Readers see a batch only after its fsync.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use anyhow::{Context, Result, anyhow, bail};

use crate::store::{Appended, BatchView, Engine, NewMessage, Reads, encode, id_key};

/// A segment is closed once it holds this much; the next batch starts a new file.
const SEGMENT_BYTES: u64 = 64 * 1024 * 1024;
const HEADER: usize = 8;
const MESSAGE: u8 = 1;
const EVENT: u8 = 2;

/// Where a record's JSON is.
#[derive(Clone, Copy)]
struct Place {
    segment: u32,
    offset: u64,
    len: u32,
}

#[derive(Default)]
struct Index {
    /// A room's places by seq − 1 (seqs are gap-free from 1).
    rooms: HashMap<String, Vec<Place>>,
    ids: HashMap<Vec<u8>, u64>,
    journal: Vec<Place>,
    segments: Vec<Arc<File>>,
}

struct Log {
    dir: PathBuf,
    index: RwLock<Index>,
}

struct Writer {
    log: Arc<Log>,
    file: Arc<File>,
    size: u64,
    buffer: Vec<u8>,
    view: BatchView,
    /// What the batch adds to the index once it is durable.
    added: Vec<(String, Vec<u8>, u64, Place)>,
    journaled: Vec<Place>,
}

fn segment_path(dir: &Path, n: usize) -> PathBuf {
    dir.join(format!("{n:08}.log"))
}

fn create_segment(dir: &Path, n: usize) -> Result<File> {
    let file = OpenOptions::new()
        .create_new(true)
        .read(true)
        .append(true)
        .open(segment_path(dir, n))?;
    // The new name must survive a crash too.
    File::open(dir)?.sync_all()?;
    Ok(file)
}

pub fn open(dir: &Path) -> Result<(Box<dyn Engine>, Arc<dyn Reads>)> {
    let dir = dir.join("log");
    std::fs::create_dir_all(&dir)?;
    let mut names: Vec<usize> = std::fs::read_dir(&dir)?
        .filter_map(|e| {
            e.ok()?
                .file_name()
                .to_str()?
                .strip_suffix(".log")?
                .parse()
                .ok()
        })
        .collect();
    names.sort_unstable();
    let mut index = Index::default();
    for (i, &n) in names.iter().enumerate() {
        if n != i {
            bail!("segment {i} is missing");
        }
        let path = segment_path(&dir, n);
        let bytes = std::fs::read(&path)?;
        let valid =
            scan(&bytes, n as u32, &mut index).with_context(|| format!("in {}", path.display()))?;
        let file = OpenOptions::new().read(true).append(true).open(&path)?;
        if valid < bytes.len() {
            if i + 1 < names.len() {
                bail!("{} is corrupt at byte {valid}", path.display());
            }
            file.set_len(valid as u64)?;
            file.sync_all()?;
        }
        index.segments.push(Arc::new(file));
    }
    if index.segments.is_empty() {
        index.segments.push(Arc::new(create_segment(&dir, 0)?));
    }
    let file = index.segments[index.segments.len() - 1].clone();
    let size = file.metadata()?.len();
    let log = Arc::new(Log {
        dir,
        index: RwLock::new(index),
    });
    let writer = Writer {
        log: log.clone(),
        file,
        size,
        buffer: Vec::new(),
        view: BatchView::default(),
        added: Vec::new(),
        journaled: Vec::new(),
    };
    Ok((Box::new(writer), log))
}

/// Adds the records of one segment to `index`; returns how many bytes hold whole, valid ones.
fn scan(bytes: &[u8], segment: u32, index: &mut Index) -> Result<usize> {
    let mut at = 0;
    while let Some(header) = bytes.get(at..at + HEADER) {
        let len = u32::from_le_bytes([header[0], header[1], header[2], header[3]]) as usize;
        let crc = u32::from_le_bytes([header[4], header[5], header[6], header[7]]);
        let Some(payload) = bytes.get(at + HEADER..at + HEADER + len) else {
            break;
        };
        if crc32fast::hash(payload) != crc {
            break;
        }
        let base = (at + HEADER) as u64;
        match parse(payload)? {
            Record::Message {
                seq,
                room,
                from,
                id,
                json,
            } => {
                let places = index.rooms.entry(room.to_owned()).or_default();
                if seq != places.len() as u64 + 1 {
                    bail!("room {room}: seq {seq} after {}", places.len());
                }
                places.push(Place {
                    segment,
                    offset: base + json.0 as u64,
                    len: json.1 as u32,
                });
                index.ids.insert(id_key(room, from, id), seq);
            }
            Record::Event { position, json } => {
                if position != index.journal.len() as u64 + 1 {
                    bail!("journal position {position} after {}", index.journal.len());
                }
                index.journal.push(Place {
                    segment,
                    offset: base + json.0 as u64,
                    len: json.1 as u32,
                });
            }
        }
        at += HEADER + len;
    }
    Ok(at)
}

enum Record<'a> {
    /// `json` is (offset in the payload, length).
    Message {
        seq: u64,
        room: &'a str,
        from: &'a str,
        id: &'a str,
        json: (usize, usize),
    },
    Event {
        position: u64,
        json: (usize, usize),
    },
}

fn parse(payload: &[u8]) -> Result<Record<'_>> {
    let number = |at: usize| -> Result<u64> {
        let bytes = payload
            .get(at..at + 8)
            .ok_or_else(|| anyhow!("short record"))?;
        Ok(u64::from_le_bytes(bytes.try_into()?))
    };
    let length = |at: usize| -> Result<usize> {
        let bytes = payload
            .get(at..at + 2)
            .ok_or_else(|| anyhow!("short record"))?;
        Ok(u16::from_le_bytes([bytes[0], bytes[1]]) as usize)
    };
    match payload.first() {
        Some(&MESSAGE) => {
            let seq = number(1)?;
            let (room_len, from_len, id_len) = (length(9)?, length(11)?, length(13)?);
            let text = |from: usize, len: usize| -> Result<&str> {
                let bytes = payload
                    .get(from..from + len)
                    .ok_or_else(|| anyhow!("short record"))?;
                Ok(std::str::from_utf8(bytes)?)
            };
            let room = text(15, room_len)?;
            let from = text(15 + room_len, from_len)?;
            let id = text(15 + room_len + from_len, id_len)?;
            let start = 15 + room_len + from_len + id_len;
            Ok(Record::Message {
                seq,
                room,
                from,
                id,
                json: (start, payload.len().saturating_sub(start)),
            })
        }
        Some(&EVENT) => Ok(Record::Event {
            position: number(1)?,
            json: (9, payload.len().saturating_sub(9)),
        }),
        _ => bail!("unknown record kind"),
    }
}

impl Writer {
    /// Appends one record to the batch's buffer; returns where its JSON will be in the segment.
    fn record(&mut self, head: &[&[u8]], json: &[u8]) -> Result<(u64, u32)> {
        let head_len: usize = head.iter().map(|h| h.len()).sum();
        let len = u32::try_from(head_len + json.len()).context("record too large")?;
        let start = self.buffer.len();
        self.buffer.extend_from_slice(&len.to_le_bytes());
        self.buffer.extend_from_slice(&[0; 4]);
        for part in head {
            self.buffer.extend_from_slice(part);
        }
        self.buffer.extend_from_slice(json);
        let crc = crc32fast::hash(&self.buffer[start + HEADER..]);
        self.buffer[start + 4..start + HEADER].copy_from_slice(&crc.to_le_bytes());
        let json_at = self.size + (start + HEADER + head_len) as u64;
        Ok((json_at, json.len() as u32))
    }

    fn roll(&mut self) -> Result<()> {
        let mut index = self.log.write()?;
        let n = index.segments.len();
        self.file = Arc::new(create_segment(&self.log.dir, n)?);
        index.segments.push(self.file.clone());
        self.size = 0;
        Ok(())
    }
}

impl Engine for Writer {
    fn commit(&mut self, batch: &[NewMessage]) -> Result<Vec<Appended>> {
        if self.size >= SEGMENT_BYTES {
            self.roll()?;
        }
        let segment = (self.log.read()?.segments.len() - 1) as u32;
        self.buffer.clear();
        self.view.clear();
        self.added.clear();
        self.journaled.clear();
        let mut outcomes = Vec::with_capacity(batch.len());
        let mut position = self.log.read()?.journal.len() as u64;
        for msg in batch {
            let key = id_key(&msg.room, &msg.from, &msg.id);
            let known = match self.view.ids.get(&key) {
                Some(seq) => Some(*seq),
                None => self.log.read()?.ids.get(&key).copied(),
            };
            if let Some(seq) = known {
                outcomes.push(Appended {
                    seq,
                    duplicate: true,
                });
                continue;
            }
            let head = match self.view.heads.get(&msg.room) {
                Some(seq) => *seq,
                None => self
                    .log
                    .read()?
                    .rooms
                    .get(&msg.room)
                    .map_or(0, |p| p.len() as u64),
            };
            let seq = head + 1;
            let (message, event) = encode(msg, seq)?;
            let lengths = |s: &str| u16::try_from(s.len()).context("name too long");
            let (offset, len) = self.record(
                &[
                    &[MESSAGE],
                    &seq.to_le_bytes(),
                    &lengths(&msg.room)?.to_le_bytes(),
                    &lengths(&msg.from)?.to_le_bytes(),
                    &lengths(&msg.id)?.to_le_bytes(),
                    msg.room.as_bytes(),
                    msg.from.as_bytes(),
                    msg.id.as_bytes(),
                ],
                &message,
            )?;
            let place = Place {
                segment,
                offset,
                len,
            };
            self.added.push((msg.room.clone(), key.clone(), seq, place));
            position += 1;
            let (offset, len) = self.record(&[&[EVENT], &position.to_le_bytes()], &event)?;
            self.journaled.push(Place {
                segment,
                offset,
                len,
            });
            self.view.heads.insert(msg.room.clone(), seq);
            self.view.ids.insert(key, seq);
            outcomes.push(Appended {
                seq,
                duplicate: false,
            });
        }
        if !self.buffer.is_empty() {
            let written = (&*self.file)
                .write_all(&self.buffer)
                .and_then(|()| self.file.sync_data());
            if let Err(e) = written {
                // Whatever reached the file is cut back off, so the log stays whole.
                self.file.set_len(self.size)?;
                return Err(e.into());
            }
            self.size += self.buffer.len() as u64;
        }
        let mut index = self.log.write()?;
        for (room, key, seq, place) in self.added.drain(..) {
            index.rooms.entry(room).or_default().push(place);
            index.ids.insert(key, seq);
        }
        index.journal.append(&mut self.journaled);
        Ok(outcomes)
    }
}

impl Log {
    fn read(&self) -> Result<std::sync::RwLockReadGuard<'_, Index>> {
        self.index
            .read()
            .map_err(|_| anyhow!("index lock poisoned"))
    }

    fn write(&self) -> Result<std::sync::RwLockWriteGuard<'_, Index>> {
        self.index
            .write()
            .map_err(|_| anyhow!("index lock poisoned"))
    }
}

impl Reads for Log {
    fn head(&self, room: &str) -> Result<u64> {
        Ok(self.read()?.rooms.get(room).map_or(0, |p| p.len() as u64))
    }

    fn range(&self, room: &str, from: u64, to: u64) -> Result<Vec<Vec<u8>>> {
        let wanted: Vec<(Arc<File>, Place)> = {
            let index = self.read()?;
            let Some(places) = index.rooms.get(room) else {
                return Ok(Vec::new());
            };
            let from = from.max(1) as usize - 1;
            let to = (to as usize).min(places.len());
            places
                .get(from..to)
                .unwrap_or_default()
                .iter()
                .map(|p| (index.segments[p.segment as usize].clone(), *p))
                .collect()
        };
        wanted
            .into_iter()
            .map(|(file, place)| {
                let mut value = vec![0; place.len as usize];
                file.read_exact_at(&mut value, place.offset)?;
                Ok(value)
            })
            .collect()
    }

    fn find(&self, room: &str, from: &str, id: &str) -> Result<Option<u64>> {
        Ok(self.read()?.ids.get(&id_key(room, from, id)).copied())
    }
}
