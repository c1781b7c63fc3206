//! The message log: the embedded store's messages, their idempotency keys and the integration
//! events' journal, as append-only segment files in `history/` beside the redb file.
//!
//! # Why a log
//!
//! Messages are appended and read by ranges, never updated in place (an edit or delete is a new
//! record that supersedes the old one). In redb every commit rewrote the B-tree pages of the
//! messages, heads, idempotency and journal tables: 16–29 KB written per 300-byte message and
//! twice the log's CPU (docs/benchmarks.md, "Store engines"). Here a batch of writes is one
//! `write` of its records and one `fdatasync`.
//!
//! # Format
//!
//! Segments `00000000.seg`, `00000001.seg`, … are closed once they hold [`SEGMENT_BYTES`]. A
//! record is `[payload length u32][CRC-32 of the payload u32][payload]`, little-endian:
//!
//! - message: `1, seq u64, room/from/id lengths u16 ×3, view length u32, event position u64
//!   (0: none), room, from, id, view JSON, event JSON`. The first record of a seq appends it;
//!   a later one (an edit, a delete) supersedes it. A message and its `message.*` event are one
//!   record, so a crash keeps both or neither.
//! - event: `2, position u64, event JSON`, an event of no message (`member.*`, …).
//!
//! A segment's file runs ahead of its records with zeros, [`ZEROED_AHEAD`] at a time, so most
//! syncs write the records' pages and the disk's cache flush only. A sync of a file that grew
//! also writes its inode (ext4 without a journal waits for that write, with one, commits the
//! journal): a second I/O in every sync. The records end at the first header of zeros.
//!
//! # Index and recovery
//!
//! Everything that finds a record is in memory: room → seq → place, the idempotency keys as
//! 64-bit hashes of `(from, id)` per room (a hit is checked against the record's own `from` and
//! `id`; keys whose hash another key of the room already has are kept whole), and the journal's
//! positions not yet dispatched. Opening scans every segment to rebuild it (about 2 s per million
//! messages, page cache warm). A torn or corrupt record at the end of the last segment is a
//! batch the crash cut short, never acknowledged: it is cut off. Damage anywhere else refuses to
//! open rather than serve a history with a hole.
//!
//! # Writes
//!
//! Only the store's writer thread writes, through [`LogWriter`]: a batch's records are staged in
//! a buffer (the batch reads its own writes from it), written and synced at once by
//! [`LogWriter::flush`], and only then added to the index by [`LogWriter::publish`]: readers see
//! what is durable. A failed write or sync stops the log: after a failed `fdatasync` the kernel
//! may have dropped the pages, so retrying could acknowledge what is not on disk.

use std::collections::hash_map::Entry;
use std::collections::{BTreeMap, HashMap};
use std::fs::{File, OpenOptions};
use std::hash::{DefaultHasher, Hash, Hasher};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};

use roomcast_core::store::StoreError;

/// A segment is closed once it holds this much; the next batch starts a new file.
const SEGMENT_BYTES: u64 = 64 * 1024 * 1024;
/// How far a segment's zeros reach past its records once a batch has passed the old ones.
const ZEROED_AHEAD: u64 = 1024 * 1024;
/// Payload length and CRC.
const HEADER: usize = 8;
const MESSAGE: u8 = 1;
const EVENT: u8 = 2;
/// Kind, seq, three name lengths, view length, event position.
const MESSAGE_FIXED: usize = 1 + 8 + 2 * 3 + 4 + 8;
const EVENT_FIXED: usize = 1 + 8;
const SUFFIX: &str = ".seg";

/// Where a record's payload is: 12 bytes, one per stored message in the index. A segment is
/// closed at 64 MiB plus one batch, far below the 4 GiB an offset can name.
#[derive(Clone, Copy, Debug)]
struct Place {
    segment: u32,
    offset: u32,
    len: u32,
}

/// One room's messages.
#[derive(Default)]
struct RoomLog {
    /// By seq − 1: seqs are gap-free from 1.
    places: Vec<Place>,
    /// Hash of `(from, id)` → seq.
    keys: HashMap<u64, u64>,
}

#[derive(Default)]
struct Index {
    rooms: HashMap<String, RoomLog>,
    /// `(room, from, id)` keys whose hash another key of the room had first (rare).
    collided: HashMap<(String, String, String), u64>,
    /// Journal positions not yet dispatched.
    journal: BTreeMap<u64, Place>,
    /// The last position ever given (dispatched or not).
    last_position: u64,
    segments: Vec<Arc<File>>,
}

/// A message record, parsed.
struct MessageRecord<'a> {
    seq: u64,
    room: &'a str,
    from: &'a str,
    id: &'a str,
    view: &'a [u8],
    event: Option<(u64, &'a [u8])>,
}

enum Record<'a> {
    Message(MessageRecord<'a>),
    Event { position: u64, json: &'a [u8] },
}

/// The log's index and files, shared by the writer and every reader.
pub(super) struct MessageLog {
    dir: PathBuf,
    index: RwLock<Index>,
}

/// What readers get: a record's payload and the file to read it from.
pub(super) struct Located {
    file: Arc<File>,
    place: Place,
}

impl Located {
    /// The message's view JSON (blocking `pread`).
    pub(super) fn read_view(&self) -> Result<Vec<u8>, StoreError> {
        let payload = read_payload(&self.file, self.place)?;
        match parse(&payload)? {
            Record::Message(m) => Ok(m.view.to_vec()),
            Record::Event { .. } => Err(corrupt("a message's place holds an event")),
        }
    }

    /// The event's JSON (blocking `pread`).
    pub(super) fn read_event(&self) -> Result<Vec<u8>, StoreError> {
        let payload = read_payload(&self.file, self.place)?;
        match parse(&payload)? {
            Record::Message(m) => m
                .event
                .map(|(_, json)| json.to_vec())
                .ok_or_else(|| corrupt("a journal place holds no event")),
            Record::Event { json, .. } => Ok(json.to_vec()),
        }
    }
}

impl MessageLog {
    /// Opens (or creates) the log in `dir`, rebuilding the index; journal positions up to
    /// `dispatched` are done and not indexed. Returns the log and its only writer.
    pub(super) fn open(dir: &Path, dispatched: u64) -> Result<(Arc<Self>, LogWriter), StoreError> {
        crate::config::private_dir(dir)
            .map_err(|e| StoreError::Other(format!("cannot create {}: {e}", dir.display())))?;
        let mut numbers: Vec<u32> = std::fs::read_dir(dir)
            .map_err(|e| io_error("cannot list", dir, e))?
            .filter_map(|entry| {
                entry
                    .ok()?
                    .file_name()
                    .to_str()?
                    .strip_suffix(SUFFIX)?
                    .parse()
                    .ok()
            })
            .collect();
        numbers.sort_unstable();
        let mut index = Index {
            last_position: dispatched,
            ..Index::default()
        };
        let mut end = 0;
        for (i, &n) in numbers.iter().enumerate() {
            let path = segment_path(dir, n);
            if n as usize != i {
                return Err(StoreError::Other(format!(
                    "message log: segment {i} is missing before {}",
                    path.display()
                )));
            }
            let bytes = std::fs::read(&path).map_err(|e| io_error("cannot read", &path, e))?;
            let file = OpenOptions::new()
                .read(true)
                .write(true)
                .open(&path)
                .map_err(|e| io_error("cannot open", &path, e))?;
            let file = Arc::new(file);
            index.segments.push(file.clone());
            let valid = index.scan(&bytes, n, dispatched)?;
            let torn = bytes[valid..].iter().any(|&b| b != 0);
            let last = i + 1 == numbers.len();
            if torn && !last {
                return Err(StoreError::Other(format!(
                    "message log: {} is damaged at byte {valid} and is not the last segment",
                    path.display()
                )));
            }
            if torn {
                tracing::warn!(
                    segment = %path.display(),
                    kept = valid,
                    cut = bytes.len() - valid,
                    "message log: cutting off a torn batch (never acknowledged)"
                );
            }
            if last && valid < bytes.len() {
                // The torn batch, or zeros ahead: the writer's next batch writes zeros ahead again.
                file.set_len(valid as u64)
                    .and_then(|()| file.sync_all())
                    .map_err(|e| io_error("cannot truncate", &path, e))?;
            }
            end = valid as u64;
        }
        if index.segments.is_empty() {
            index.segments.push(Arc::new(create_segment(dir, 0)?));
        }
        let segment = (index.segments.len() - 1) as u32;
        let file = index.segments[segment as usize].clone();
        let log = Arc::new(Self {
            dir: dir.to_owned(),
            index: RwLock::new(index),
        });
        let writer = LogWriter {
            log: log.clone(),
            file,
            segment,
            size: end,
            zeroed: end,
            failed: None,
            staged: Staged::default(),
        };
        Ok((log, writer))
    }

    fn index(&self) -> RwLockReadGuard<'_, Index> {
        // A panic while holding the lock cannot leave the index half-updated in a way readers
        // could misread (publish only pushes whole entries), so a poisoned lock is still usable.
        self.index.read().unwrap_or_else(|e| e.into_inner())
    }

    fn index_mut(&self) -> RwLockWriteGuard<'_, Index> {
        self.index.write().unwrap_or_else(|e| e.into_inner())
    }

    /// The room's last seq (0 when it has none).
    pub(super) fn head(&self, room: &str) -> u64 {
        self.index()
            .rooms
            .get(room)
            .map_or(0, |r| r.places.len() as u64)
    }

    /// Where seqs `lo..=hi` of `room` are (those that exist), in order.
    pub(super) fn locate(&self, room: &str, lo: u64, hi: u64) -> Vec<Located> {
        let index = self.index();
        let Some(log) = index.rooms.get(room) else {
            return Vec::new();
        };
        let from = lo.max(1) as usize - 1;
        let to = (hi.min(log.places.len() as u64)) as usize;
        log.places
            .get(from..to)
            .unwrap_or_default()
            .iter()
            .map(|place| index.located(*place))
            .collect()
    }

    /// The first `limit` journal entries not yet dispatched, in order.
    pub(super) fn journal(&self, limit: usize) -> Vec<(u64, Located)> {
        let index = self.index();
        index
            .journal
            .iter()
            .take(limit)
            .map(|(position, place)| (*position, index.located(*place)))
            .collect()
    }
}

impl Index {
    fn located(&self, place: Place) -> Located {
        Located {
            file: self.segments[place.segment as usize].clone(),
            place,
        }
    }

    /// Adds one segment's records; returns how many bytes hold whole, valid records.
    fn scan(&mut self, bytes: &[u8], segment: u32, dispatched: u64) -> Result<usize, StoreError> {
        let mut at = 0;
        while let Some(header) = bytes.get(at..at + HEADER) {
            let len = u32_at(header, 0) as usize;
            let crc = u32_at(header, 4);
            let Some(payload) = bytes.get(at + HEADER..at + HEADER + len) else {
                break;
            };
            if crc32fast::hash(payload) != crc {
                break;
            }
            let Ok(record) = parse(payload) else {
                break;
            };
            let Ok(offset) = u32::try_from(at + HEADER) else {
                return Err(corrupt("a segment over 4 GiB"));
            };
            let place = Place {
                segment,
                offset,
                len: len as u32,
            };
            match record {
                Record::Message(m) => {
                    let event = m.event.map(|(position, _)| position);
                    self.add_message(&m, place)?;
                    if let Some(position) = event {
                        self.add_event(position, place, dispatched);
                    }
                }
                Record::Event { position, .. } => self.add_event(position, place, dispatched),
            }
            at += HEADER + len;
        }
        Ok(at)
    }

    fn add_event(&mut self, position: u64, place: Place, dispatched: u64) {
        self.last_position = self.last_position.max(position);
        if position > dispatched {
            self.journal.insert(position, place);
        }
    }

    /// Indexes a message record: the next seq of its room, or a newer version of an old one.
    /// Every segment up to the record's own is in `segments` (scanned in order).
    fn add_message(&mut self, m: &MessageRecord<'_>, place: Place) -> Result<(), StoreError> {
        let segments = &self.segments;
        let log = self.rooms.entry(m.room.to_owned()).or_default();
        let head = log.places.len() as u64;
        if m.seq <= head && m.seq > 0 {
            // A superseding version: same message, same key.
            log.places[(m.seq - 1) as usize] = place;
            return Ok(());
        }
        if m.seq != head + 1 {
            return Err(corrupt(&format!(
                "room {}: seq {} after {head}",
                m.room, m.seq
            )));
        }
        log.places.push(place);
        let hash = key_hash(m.from, m.id);
        match log.keys.get(&hash) {
            None => {
                log.keys.insert(hash, m.seq);
            }
            Some(&other) => {
                // Keep the first; this key is kept whole unless it is the same key (which an
                // append never writes twice).
                let other_place = log.places[(other - 1) as usize];
                let other_file = segments
                    .get(other_place.segment as usize)
                    .ok_or_else(|| corrupt("a key points past the segments"))?;
                let payload = read_payload(other_file, other_place)?;
                if let Record::Message(o) = parse(&payload)?
                    && (o.from, o.id) != (m.from, m.id)
                {
                    self.collided.insert(
                        (m.room.to_owned(), m.from.to_owned(), m.id.to_owned()),
                        m.seq,
                    );
                }
            }
        }
        Ok(())
    }
}

/// A batch's writes, not yet durable.
#[derive(Default)]
struct Staged {
    buffer: Vec<u8>,
    /// New heads of the rooms the batch appended to.
    heads: HashMap<String, u64>,
    /// Places of the batch's message records, for its own reads.
    messages: HashMap<(String, u64), Place>,
    /// The batch's new keys, whole.
    keys: HashMap<(String, String, String), u64>,
    /// Message records in order (room, seq, place, from, id), for the index.
    records: Vec<(String, u64, Place, String, String)>,
    events: Vec<(u64, Place)>,
    last_position: Option<u64>,
    /// Journal positions dispatched by this batch.
    dispatched: Option<u64>,
}

/// Buffer capacity kept between batches: a batch of large messages does not pin its buffer.
const KEPT_BUFFER_BYTES: usize = 1 << 20;

impl Staged {
    /// Empties it for the next batch, keeping the allocations (one batch after another would
    /// otherwise allocate and free them all each time).
    fn clear(&mut self) {
        self.buffer.clear();
        self.buffer.shrink_to(KEPT_BUFFER_BYTES);
        self.heads.clear();
        self.messages.clear();
        self.keys.clear();
        self.records.clear();
        self.events.clear();
        self.last_position = None;
        self.dispatched = None;
    }
}

/// The writer thread's end of the log.
pub(super) struct LogWriter {
    log: Arc<MessageLog>,
    file: Arc<File>,
    segment: u32,
    /// Bytes of records in the current segment.
    size: u64,
    /// The segment file's length: its records, then zeros.
    zeroed: u64,
    /// Why the log stopped taking writes, once it has.
    failed: Option<String>,
    staged: Staged,
}

impl LogWriter {
    /// The seq `room` is at, with this batch's appends.
    pub(super) fn head(&self, room: &str) -> u64 {
        self.staged
            .heads
            .get(room)
            .copied()
            .unwrap_or_else(|| self.log.head(room))
    }

    /// The seq stored under `(room, from, id)`, with this batch's appends.
    pub(super) fn find(&self, room: &str, from: &str, id: &str) -> Result<Option<u64>, StoreError> {
        let whole = (room.to_owned(), from.to_owned(), id.to_owned());
        if let Some(seq) = self.staged.keys.get(&whole) {
            return Ok(Some(*seq));
        }
        let candidate = {
            let index = self.log.index();
            if let Some(seq) = index.collided.get(&whole) {
                return Ok(Some(*seq));
            }
            let Some(log) = index.rooms.get(room) else {
                return Ok(None);
            };
            let Some(&seq) = log.keys.get(&key_hash(from, id)) else {
                return Ok(None);
            };
            (seq, index.located(log.places[(seq - 1) as usize]))
        };
        let (seq, located) = candidate;
        let payload = read_payload(&located.file, located.place)?;
        match parse(&payload)? {
            Record::Message(m) if (m.from, m.id) == (from, id) => Ok(Some(seq)),
            _ => Ok(None),
        }
    }

    /// The stored view of `(room, seq)`, with this batch's writes.
    pub(super) fn view(&self, room: &str, seq: u64) -> Result<Option<Vec<u8>>, StoreError> {
        if let Some(place) = self.staged.messages.get(&(room.to_owned(), seq)) {
            let start = (u64::from(place.offset) - self.size) as usize;
            let payload = &self.staged.buffer[start..start + place.len as usize];
            return match parse(payload)? {
                Record::Message(m) => Ok(Some(m.view.to_vec())),
                Record::Event { .. } => Err(corrupt("a message's place holds an event")),
            };
        }
        match self.log.locate(room, seq, seq).pop() {
            None => Ok(None),
            Some(located) => located.read_view().map(Some),
        }
    }

    /// Stages a message record: seq `head + 1` appends, a lower one supersedes. `event`, when
    /// given, is journaled with it.
    pub(super) fn stage_message(
        &mut self,
        room: &str,
        seq: u64,
        key: (&str, &str),
        view: &[u8],
        event: Option<&[u8]>,
    ) -> Result<(), StoreError> {
        let (from, id) = key;
        let head = self.head(room);
        if seq == 0 || seq > head + 1 {
            return Err(StoreError::Other(format!(
                "message log: seq {seq} of {room} would leave a gap after {head}"
            )));
        }
        let appends = seq == head + 1;
        let position = event.map(|_| self.next_position());
        let length = |n: usize| {
            u16::try_from(n).map_err(|_| {
                StoreError::Other("message log: a name is longer than 65,535 bytes".into())
            })
        };
        let (room_len, from_len, id_len) =
            (length(room.len())?, length(from.len())?, length(id.len())?);
        let view_len = u32::try_from(view.len())
            .map_err(|_| StoreError::Other("message log: a message view over 4 GiB".into()))?;
        let place = self.stage(&[
            &[MESSAGE],
            &seq.to_le_bytes(),
            &room_len.to_le_bytes(),
            &from_len.to_le_bytes(),
            &id_len.to_le_bytes(),
            &view_len.to_le_bytes(),
            &position.unwrap_or(0).to_le_bytes(),
            room.as_bytes(),
            from.as_bytes(),
            id.as_bytes(),
            view,
            event.unwrap_or_default(),
        ])?;
        if appends {
            self.staged.heads.insert(room.to_owned(), seq);
            self.staged
                .keys
                .insert((room.to_owned(), from.to_owned(), id.to_owned()), seq);
        }
        self.staged.messages.insert((room.to_owned(), seq), place);
        self.staged
            .records
            .push((room.to_owned(), seq, place, from.to_owned(), id.to_owned()));
        if let Some(position) = position {
            self.staged.last_position = Some(position);
            self.staged.events.push((position, place));
        }
        Ok(())
    }

    /// Stages an event of no message, at the journal's next position.
    pub(super) fn stage_event(&mut self, json: &[u8]) -> Result<(), StoreError> {
        let position = self.next_position();
        let place = self.stage(&[&[EVENT], &position.to_le_bytes(), json])?;
        self.staged.last_position = Some(position);
        self.staged.events.push((position, place));
        Ok(())
    }

    /// Journal positions through `through` are dispatched once this batch is.
    pub(super) fn dispatched(&mut self, through: u64) {
        let before = self.staged.dispatched.unwrap_or(0);
        self.staged.dispatched = Some(before.max(through));
    }

    /// The position the batch's next event takes (taken once its record is staged).
    fn next_position(&self) -> u64 {
        let last = self
            .staged
            .last_position
            .unwrap_or_else(|| self.log.index().last_position);
        last + 1
    }

    /// Appends one record to the buffer; returns where its payload will be.
    fn stage(&mut self, parts: &[&[u8]]) -> Result<Place, StoreError> {
        let len: usize = parts.iter().map(|p| p.len()).sum();
        let len32 = u32::try_from(len)
            .map_err(|_| StoreError::Other("message log: a record over 4 GiB".into()))?;
        let start = self.staged.buffer.len();
        // Checked before anything is staged: a refused record leaves the batch as it was.
        let offset = u32::try_from(self.size + (start + HEADER) as u64).map_err(|_| {
            StoreError::Unavailable(
                "message log: the segment reached 4 GiB (no new segment could be created)".into(),
            )
        })?;
        let buffer = &mut self.staged.buffer;
        buffer.extend_from_slice(&len32.to_le_bytes());
        buffer.extend_from_slice(&[0; 4]);
        for part in parts {
            buffer.extend_from_slice(part);
        }
        let crc = crc32fast::hash(&buffer[start + HEADER..]);
        buffer[start + 4..start + HEADER].copy_from_slice(&crc.to_le_bytes());
        Ok(Place {
            segment: self.segment,
            offset,
            len: len32,
        })
    }

    /// Forgets what the batch staged: it failed before it was written.
    pub(super) fn discard(&mut self) {
        self.staged.clear();
    }

    /// Writes and syncs the batch's records; returns whether there were any. After this
    /// succeeds they survive a crash.
    pub(super) fn flush(&mut self) -> Result<bool, StoreError> {
        if let Some(why) = self.failed.clone() {
            self.discard();
            return Err(StoreError::Unavailable(format!(
                "the message log stopped after a failed write ({why}); restart the server"
            )));
        }
        if self.staged.buffer.is_empty() {
            return Ok(false);
        }
        let end = self.size + self.staged.buffer.len() as u64;
        let zeros = (end > self.zeroed).then(|| vec![0; ZEROED_AHEAD as usize]);
        let written = self
            .file
            .write_all_at(&self.staged.buffer, self.size)
            .and_then(|()| match &zeros {
                Some(zeros) => self.file.write_all_at(zeros, end),
                None => Ok(()),
            })
            .and_then(|()| self.file.sync_data());
        if let Err(e) = written {
            self.failed = Some(e.to_string());
            self.discard();
            return Err(StoreError::Other(format!(
                "message log write failed, outcome unknown: {e}"
            )));
        }
        self.size = end;
        if zeros.is_some() {
            self.zeroed = end + ZEROED_AHEAD;
        }
        Ok(true)
    }

    /// Makes the flushed batch's records visible to readers and, when `dispatch_committed`
    /// (the tables that keep the dispatched position were committed), forgets the dispatched
    /// journal entries. Then starts a new segment if this one is full (before the next batch
    /// stages, so its places name the right file); a segment that cannot be created is tried
    /// again after the next batch, which meanwhile grows this one.
    pub(super) fn publish(&mut self, dispatch_committed: bool) {
        let mut staged = std::mem::take(&mut self.staged);
        {
            let mut index = self.log.index_mut();
            let index = &mut *index;
            for (room, seq, place, from, id) in staged.records.drain(..) {
                let log = index.rooms.entry(room.clone()).or_default();
                if seq <= log.places.len() as u64 {
                    log.places[(seq - 1) as usize] = place;
                    continue;
                }
                log.places.push(place);
                let hash = key_hash(&from, &id);
                // `find` checked the key was new, so a taken hash belongs to another key.
                match log.keys.entry(hash) {
                    Entry::Occupied(_) => {
                        index.collided.insert((room, from, id), seq);
                    }
                    Entry::Vacant(slot) => {
                        slot.insert(seq);
                    }
                }
            }
            for (position, place) in staged.events.drain(..) {
                index.journal.insert(position, place);
            }
            if let Some(last) = staged.last_position {
                index.last_position = index.last_position.max(last);
            }
            if let Some(through) = staged.dispatched.filter(|_| dispatch_committed) {
                index.journal = index.journal.split_off(&(through + 1));
            }
        }
        staged.clear();
        self.staged = staged;
        if self.size >= SEGMENT_BYTES {
            let next = self.segment + 1;
            match create_segment(&self.log.dir, next) {
                Ok(file) => {
                    let file = Arc::new(file);
                    self.log.index_mut().segments.push(file.clone());
                    (self.file, self.segment, self.size, self.zeroed) = (file, next, 0, 0);
                }
                Err(e) => tracing::warn!(error = %e, "message log: cannot start a new segment"),
            }
        }
    }
}

/// The idempotency key's hash within its room. `DefaultHasher::new()` has fixed keys, and the
/// index lives in memory only, so nothing depends on it across versions.
fn key_hash(from: &str, id: &str) -> u64 {
    let mut hasher = DefaultHasher::new();
    (from, id).hash(&mut hasher);
    hasher.finish()
}

fn segment_path(dir: &Path, n: u32) -> PathBuf {
    dir.join(format!("{n:08}{SUFFIX}"))
}

fn create_segment(dir: &Path, n: u32) -> Result<File, StoreError> {
    let path = segment_path(dir, n);
    // Not `create_new`: a try that failed after creating the file is retried with it (still
    // empty: nothing is written before a segment is created whole).
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .read(true)
        .write(true)
        .open(&path)
        .map_err(|e| io_error("cannot create", &path, e))?;
    crate::config::owner_only(&path).map_err(|e| io_error("cannot restrict", &path, e))?;
    // The new name must survive a crash too.
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| io_error("cannot sync", dir, e))?;
    Ok(file)
}

fn read_payload(file: &File, place: Place) -> Result<Vec<u8>, StoreError> {
    let mut payload = vec![0; place.len as usize];
    file.read_exact_at(&mut payload, u64::from(place.offset))
        .map_err(|e| StoreError::Unavailable(format!("message log read failed: {e}")))?;
    Ok(payload)
}

fn parse(payload: &[u8]) -> Result<Record<'_>, StoreError> {
    let short = || corrupt("short record");
    let number = |at: usize| -> Result<u64, StoreError> {
        let bytes = payload.get(at..at + 8).ok_or_else(short)?;
        let mut n = [0; 8];
        n.copy_from_slice(bytes);
        Ok(u64::from_le_bytes(n))
    };
    let length = |at: usize| -> Result<usize, StoreError> {
        let bytes = payload.get(at..at + 2).ok_or_else(short)?;
        Ok(u16::from_le_bytes([bytes[0], bytes[1]]) as usize)
    };
    match payload.first() {
        Some(&MESSAGE) => {
            let seq = number(1)?;
            let (room_len, from_len, id_len) = (length(9)?, length(11)?, length(13)?);
            let view_len = payload
                .get(15..19)
                .map(|b| u32_at(b, 0))
                .ok_or_else(short)? as usize;
            let position = number(19)?;
            let mut at = MESSAGE_FIXED;
            let mut take = |len: usize| -> Result<&[u8], StoreError> {
                let bytes = payload.get(at..at + len).ok_or_else(short)?;
                at += len;
                Ok(bytes)
            };
            let room = text(take(room_len)?)?;
            let from = text(take(from_len)?)?;
            let id = text(take(id_len)?)?;
            let view = take(view_len)?;
            let event = &payload[at..];
            Ok(Record::Message(MessageRecord {
                seq,
                room,
                from,
                id,
                view,
                event: (position != 0).then_some((position, event)),
            }))
        }
        Some(&EVENT) => Ok(Record::Event {
            position: number(1)?,
            json: payload.get(EVENT_FIXED..).ok_or_else(short)?,
        }),
        _ => Err(corrupt("unknown record kind")),
    }
}

/// The little-endian u32 at `at` of a slice known to hold it.
fn u32_at(bytes: &[u8], at: usize) -> u32 {
    let mut n = [0; 4];
    n.copy_from_slice(&bytes[at..at + 4]);
    u32::from_le_bytes(n)
}

fn text(bytes: &[u8]) -> Result<&str, StoreError> {
    std::str::from_utf8(bytes).map_err(|_| corrupt("a name is not UTF-8"))
}

fn corrupt(what: &str) -> StoreError {
    StoreError::Other(format!("message log is corrupt: {what}"))
}

fn io_error(what: &str, path: &Path, e: std::io::Error) -> StoreError {
    StoreError::Other(format!("message log: {what} {}: {e}", path.display()))
}
