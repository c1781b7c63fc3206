//! The embedded durable [`HistoryStore`], in the data directory: the message log (`history/`,
//! [`log`]) holds messages, their idempotency keys and the integration events' journal; one
//! redb file, `roomcast.redb`, holds everything else (read cursors, members, conversations, the
//! outbox's endpoints and deliveries, the attachments' slots, the desk's records).
//!
//! # Writes: one writer thread, group commit
//!
//! Every write ([`append`](HistoryStore::append), [`amend`](HistoryStore::amend),
//! [`advance_read`](HistoryStore::advance_read), [`touch_member`](HistoryStore::touch_member), …)
//! is sent over a channel to one dedicated writer thread. The thread blocks for one request, then
//! drains whatever else is queued (up to [`MAX_BATCH`]) and applies the whole batch in order:
//! log records are staged in a buffer, table changes in ONE redb write transaction. Then it
//! writes and `fdatasync`s the log's records once, commits the transaction, and only then
//! answers each request. A batch of messages alone (appends, edits, events) opens no
//! transaction: it pays for one sync and nothing else.
//!
//! Under load many writes share one sync: batches then start at most once per
//! [`COMMIT_INTERVAL`] ([`CommitPace`]), since a sync's cost is the kernel's I/O path, the same
//! for one record as for fifty. Alone, a write is started at once and costs one sync.
//!
//! Seq assignment and the idempotency check run in the writer against the log's index plus the
//! batch's own staged records, so seqs are gap-free and a resent `(room, from, id)` finds the
//! original even when both arrive in the same batch.
//!
//! # Durability
//!
//! A write is acknowledged only after its batch's records are synced and its transaction (if
//! any) committed with [`Durability::Immediate`], so an acknowledged message survives `kill -9`.
//! A message and its event are one log record: a crash keeps both or neither. If anything fails
//! while applying, nothing of the batch is written and every request gets an error. A request
//! whose own outcome is an error (amending a missing message) does not fail the rest of the
//! batch.
//!
//! # Reads
//!
//! Heads come from the log's index in memory. Messages and events are `pread`s, and redb reads
//! are blocking file I/O, so both run on [`tokio::task::spawn_blocking`] (redb reads each in its
//! own read transaction): they never stall the async runtime or wait for the writer.
//!
//! # Tables
//!
//! Keys start with [`RoomRef::key`] (`tenant/room`; names cannot contain `/`): read cursors
//! `(room, user) → seq`, members `(room, user) → last seen`, conversations `room →
//! Conversation`. The integration events' tables are in [`outbox`], which implements the
//! [`roomcast_core::store::Outbox`] port on the same file and writer; the attachments' slots
//! and quotas are in [`attachments`] ([`roomcast_core::store::AttachmentIndex`]), the support
//! desk's versioned records in [`desk`] ([`roomcast_core::store::DeskDirectory`]). Stores from
//! before the log kept messages in redb too; [`migrate`] moves them into the log on first open.

/// Inner errors of a request become its answer; storage errors fail the batch.
macro_rules! tri {
    ($e:expr) => {
        match $e {
            Ok(v) => v,
            Err(e) => return Ok(Err(e)),
        }
    };
}

mod attachments;
mod desk;
mod log;
mod outbox;

use std::fmt::Display;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use redb::{
    Database, Durability, ReadTransaction, ReadableDatabase, ReadableTable, Table, TableDefinition,
    WriteTransaction,
};
use roomcast_core::events::Event;
use roomcast_core::protocol::{Conversation, MessageView};
use roomcast_core::store::rules::{
    apply_amendment, check_conversation_version, page_range, sort_members, stored_message,
};
use roomcast_core::store::{
    Amendment, Appended, HistoryQuery, HistoryStore, Member, NewMessage, Page, RoomRef, StoreError,
};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::sync::{mpsc, oneshot};

use self::log::{LogWriter, MessageLog};

/// Most requests applied in one write transaction (bounds the latency of a batch's first request).
pub const MAX_BATCH: usize = 256;

/// Under load, the shortest time between the starts of two batches ([`CommitPace`]).
const COMMIT_INTERVAL: Duration = Duration::from_millis(5);

/// Requests queued for the writer before senders wait (backpressure without blocking a thread).
const QUEUE: usize = 4096;

/// Name of the database file inside the data directory.
const FILE_NAME: &str = "roomcast.redb";
/// Name of the message log's directory inside the data directory.
const LOG_DIR: &str = "history";

/// Where stores before the message log kept messages (and heads and idempotency keys, which
/// the log derives): copied into the log once by [`migrate`], then dropped.
const LEGACY_MESSAGES: TableDefinition<'_, (&str, u64), &[u8]> = TableDefinition::new("messages");
const LEGACY_HEADS: TableDefinition<'_, &str, u64> = TableDefinition::new("heads");
const LEGACY_IDS: TableDefinition<'_, (&str, &str, &str), u64> =
    TableDefinition::new("idempotency");
const CURSORS: TableDefinition<'_, (&str, &str), u64> = TableDefinition::new("read_cursors");
const MEMBERS: TableDefinition<'_, (&str, &str), u64> = TableDefinition::new("members");
const CONVERSATIONS: TableDefinition<'_, &str, &[u8]> = TableDefinition::new("conversations");

/// Durable history in a redb file, written through one group-committing writer thread.
pub struct EmbeddedHistory {
    db: Arc<Database>,
    log: Arc<MessageLog>,
    /// `None` only while dropping.
    sender: Option<mpsc::Sender<Request>>,
    writer: Option<JoinHandle<()>>,
    state: Arc<WriterState>,
}

/// What the writer thread publishes, in commit order.
#[derive(Default)]
struct WriterState {
    /// Batches that wrote anything.
    commits: AtomicU64,
    /// Batches that committed a redb transaction (the others wrote the log only).
    transactions: AtomicU64,
    /// Whether any integration endpoint exists. Without one nothing is journaled or pending, so
    /// the delivery task's turn after every frame (endpoints, due deliveries) reads nothing.
    has_endpoints: AtomicBool,
}

/// Memory redb may keep for pages it read or wrote. Its default is 1 GiB, which a busy server
/// fills with pages it wrote once and rarely reads again: the one-hour soak saw resident memory
/// climb by 4 MiB a minute with it.
///
/// Reads are mostly of the newest pages (a room's last messages, the upper levels of each
/// tree), which 4 MiB holds: under the soak's load at three times its message rate 99.8 % of
/// page reads hit it, with server CPU and delivery latency the same as with 8 MiB, where no
/// cache at all cost a fifth more CPU (docs/security.md, Soak, has the runs). A larger
/// cache costs more than its size once full: every commit writes new pages into it and evicts
/// old ones, and glibc's malloc (the server's allocator when this was measured; jemalloc
/// since) did not return the holes those buffers leave between other allocations. With 32 MiB the live heap stayed flat after the cache filled while the free
/// space inside malloc's arenas kept growing (3 → 11 MiB in 11 minutes at 450 messages/s),
/// and resident memory with it. With 4 MiB that churn, and the holes, stay small.
const CACHE_BYTES: usize = 4 * 1024 * 1024;

impl EmbeddedHistory {
    /// Opens (or creates) `dir/roomcast.redb`, creating `dir` if needed, and starts the writer
    /// thread. Fails when another process has the file open.
    pub fn open(dir: &Path) -> Result<Self, StoreError> {
        crate::config::private_dir(dir)
            .map_err(|e| StoreError::Other(format!("cannot create {}: {e}", dir.display())))?;
        let path = dir.join(FILE_NAME);
        let db = Database::builder()
            .set_cache_size(CACHE_BYTES)
            .create(&path)
            .map_err(|e| StoreError::Other(format!("cannot open {}: {e}", path.display())))?;
        // Every tenant's history is in this file: only the server's user may read it.
        crate::config::owner_only(&path)
            .map_err(|e| StoreError::Other(format!("cannot restrict {}: {e}", path.display())))?;
        let dispatched = outbox::dispatched_through(&db)?;
        let (log, mut log_writer) = MessageLog::open(&dir.join(LOG_DIR), dispatched)?;
        // Create every table up front so read transactions never meet a missing one.
        let mut create = || -> Result<(), redb::Error> {
            let txn = db.begin_write()?;
            WriteTables::open(&txn, &mut log_writer, false)?;
            txn.commit()?;
            Ok(())
        };
        create()
            .map_err(|e| StoreError::Other(format!("cannot initialise {}: {e}", path.display())))?;
        migrate(&db, &mut log_writer)?;

        let db = Arc::new(db);
        let state = Arc::new(WriterState::default());
        state
            .has_endpoints
            .store(outbox::any_endpoint(&db)?, Ordering::Release);
        let (sender, receiver) = mpsc::channel(QUEUE);
        let writer = std::thread::Builder::new()
            .name("roomcast-history-writer".into())
            .spawn({
                let (db, state) = (db.clone(), state.clone());
                move || run_writer(&db, log_writer, receiver, &state)
            })
            .map_err(|e| StoreError::Other(format!("cannot start the history writer: {e}")))?;
        Ok(Self {
            db,
            log,
            sender: Some(sender),
            writer: Some(writer),
            state,
        })
    }

    /// Batches written so far (each may carry many requests, and costs one sync of the log
    /// and at most one commit of the tables).
    pub fn commits(&self) -> u64 {
        self.state.commits.load(Ordering::Relaxed)
    }

    /// Batches that committed a redb transaction: those with a write of the tables (cursors,
    /// members, the outbox, …), not those of messages alone.
    pub fn transactions(&self) -> u64 {
        self.state.transactions.load(Ordering::Relaxed)
    }

    /// Whether any integration endpoint exists (kept by the writer; no I/O).
    fn has_endpoints(&self) -> bool {
        self.state.has_endpoints.load(Ordering::Acquire)
    }

    /// Sends a request to the writer and waits for its answer, which comes after the commit.
    async fn write<T>(&self, request: impl FnOnce(Reply<T>) -> Request) -> Result<T, StoreError> {
        let sender = self.sender.as_ref().ok_or_else(writer_gone)?;
        let (reply, answer) = oneshot::channel();
        sender
            .send(request(reply))
            .await
            .map_err(|_| writer_gone())?;
        // A dropped reply means the writer died mid-batch: nothing was acknowledged.
        answer.await.map_err(|_| writer_gone())?
    }

    /// Applies `work`, which writes redb tables, in the writer's next batch.
    async fn run<T: Send + 'static>(
        &self,
        work: impl FnOnce(&mut WriteTables<'_>) -> Applied<T> + Send + 'static,
    ) -> Result<T, StoreError> {
        self.write(|reply| {
            Request::Tables(Box::new(move |tables| match tables {
                Some(tables) => applied(reply, work(tables)),
                None => (completion(reply, aborted()), None),
            }))
        })
        .await
    }

    /// Applies `work`, which writes the message log only, in the writer's next batch.
    async fn run_on_log<T: Send + 'static>(
        &self,
        work: impl FnOnce(&mut LogBatch<'_>) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        self.write(|reply| {
            Request::Log(Box::new(move |batch| {
                completion(reply, batch.map_or_else(aborted, work))
            }))
        })
        .await
    }

    /// Runs `read` in a fresh read transaction on the blocking pool.
    async fn read<T: Send + 'static>(
        &self,
        read: impl FnOnce(&ReadTransaction) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let db = self.db.clone();
        tokio::task::spawn_blocking(move || read(&db.begin_read().map_err(unavailable)?))
            .await
            .map_err(|e| StoreError::Other(format!("history read task failed: {e}")))?
    }
}

impl Drop for EmbeddedHistory {
    /// Closes the queue and waits for the writer to finish its batch, so the file is closed (and
    /// can be reopened) once the store is gone.
    fn drop(&mut self) {
        drop(self.sender.take());
        if let Some(writer) = self.writer.take()
            && writer.join().is_err()
        {
            tracing::error!("the history writer thread had panicked");
        }
    }
}

#[async_trait::async_trait]
impl HistoryStore for EmbeddedHistory {
    async fn append(&self, room: &RoomRef, msg: NewMessage) -> Result<Appended, StoreError> {
        let room = room.clone();
        self.run_on_log(move |batch| batch.append(&room, msg)).await
    }

    /// One writer request for them all: the messages share a commit.
    async fn append_all(
        &self,
        messages: Vec<(RoomRef, NewMessage)>,
    ) -> Vec<Result<Appended, StoreError>> {
        let count = messages.len();
        let stored = self
            .run_on_log(move |batch| {
                Ok(messages
                    .into_iter()
                    .map(|(room, msg)| batch.append(&room, msg))
                    .collect())
            })
            .await;
        match stored {
            Ok(results) => results,
            // The batch failed: none of them was stored.
            Err(e) => vec![Err(e); count],
        }
    }

    /// From the log's index in memory: no I/O.
    async fn head(&self, room: &RoomRef) -> Result<u64, StoreError> {
        Ok(self.log.head(&room.key()))
    }

    async fn messages(&self, room: &RoomRef, query: HistoryQuery) -> Result<Page, StoreError> {
        let key = room.key();
        let Some((lo, hi, more)) = page_range(query, self.log.head(&key)) else {
            return Ok(Page::default());
        };
        let places = self.log.locate(&key, lo, hi);
        let messages = read_views(places).await?;
        Ok(Page { messages, more })
    }

    async fn message(&self, room: &RoomRef, seq: u64) -> Result<Option<MessageView>, StoreError> {
        let places = self.log.locate(&room.key(), seq, seq);
        Ok(read_views(places).await?.pop())
    }

    async fn amend(
        &self,
        room: &RoomRef,
        seq: u64,
        change: Amendment,
    ) -> Result<MessageView, StoreError> {
        let room = room.clone();
        self.run_on_log(move |batch| batch.amend(&room, seq, change))
            .await
    }

    async fn advance_read(
        &self,
        room: &RoomRef,
        user: &str,
        seq: u64,
    ) -> Result<(u64, bool), StoreError> {
        let (room, user) = (room.clone(), user.to_owned());
        self.run(move |tables| tables.advance_read(&room, &user, seq))
            .await
    }

    async fn read_cursor(&self, room: &RoomRef, user: &str) -> Result<u64, StoreError> {
        let (key, user) = (room.key(), user.to_owned());
        self.read(move |txn| {
            let table = txn.open_table(CURSORS).map_err(unavailable)?;
            let cursor = table
                .get((key.as_str(), user.as_str()))
                .map_err(unavailable)?;
            Ok(cursor.map_or(0, |v| v.value()))
        })
        .await
    }

    async fn touch_member(&self, room: &RoomRef, user: &str, at_ms: u64) -> Result<(), StoreError> {
        let (room, user) = (room.clone(), user.to_owned());
        self.run(move |tables| tables.touch_member(&room, &user, at_ms))
            .await
    }

    async fn members(&self, room: &RoomRef, limit: usize) -> Result<Vec<Member>, StoreError> {
        let key = room.key();
        self.read(move |txn| {
            let table = txn.open_table(MEMBERS).map_err(unavailable)?;
            let mut members = Vec::new();
            // Keys are ordered by room first, so the room's members are one contiguous run.
            for entry in table.range((key.as_str(), "")..).map_err(unavailable)? {
                let (k, v) = entry.map_err(unavailable)?;
                let (member_room, user) = k.value();
                if member_room != key {
                    break;
                }
                members.push(Member {
                    user: user.to_owned(),
                    last_seen: v.value(),
                });
            }
            sort_members(&mut members);
            members.truncate(limit);
            Ok(members)
        })
        .await
    }

    async fn conversation(&self, room: &RoomRef) -> Result<Option<Conversation>, StoreError> {
        let key = room.key();
        self.read(move |txn| {
            let table = txn.open_table(CONVERSATIONS).map_err(unavailable)?;
            let stored = table.get(key.as_str()).map_err(unavailable)?;
            stored.map(|v| decode(v.value())).transpose()
        })
        .await
    }

    async fn put_conversation(
        &self,
        room: &RoomRef,
        next: &Conversation,
    ) -> Result<(), StoreError> {
        let (room, next) = (room.clone(), next.clone());
        self.run(move |tables| tables.put_conversation(&room, &next))
            .await
    }
}

/// Where the writer sends a request's answer.
type Reply<T> = oneshot::Sender<Result<T, StoreError>>;

/// A write, queued for the writer thread: a closure, so every request is one pointer in the
/// queue, whatever it carries.
enum Request {
    /// A write of the tables ([`EmbeddedHistory::run`]): given the tables to apply it, or
    /// `None` to abandon it.
    Tables(Job),
    /// A write of the log only ([`EmbeddedHistory::run_on_log`]): given the batch's log to
    /// apply it, or `None` to abandon it.
    Log(LogJob),
}

/// A write as a closure over the batch's tables.
type Job =
    Box<dyn FnOnce(Option<&mut WriteTables<'_>>) -> (Completion, Option<redb::Error>) + Send>;

/// A write as a closure over the batch's log (it cannot fail the batch).
type LogJob = Box<dyn FnOnce(Option<&mut LogBatch<'_>>) -> Completion + Send>;

fn aborted<T>() -> Result<T, StoreError> {
    Err(StoreError::Unavailable("batch aborted".into()))
}

/// A request's answer, held back until its batch's commit is decided: called with `None` when
/// the batch committed, with the batch's error otherwise.
type Completion = Box<dyn FnOnce(Option<StoreError>) + Send>;

fn completion<T: Send + 'static>(reply: Reply<T>, result: Result<T, StoreError>) -> Completion {
    Box::new(move |failure| {
        // The caller may have gone away (its future dropped); nobody is left to tell.
        let _ = reply.send(failure.map_or(result, Err));
    })
}

/// The outcome of applying one request: its completion, and the storage error that dooms the
/// whole transaction, if any.
fn applied<T: Send + 'static>(
    reply: Reply<T>,
    outcome: Result<Result<T, StoreError>, redb::Error>,
) -> (Completion, Option<redb::Error>) {
    match outcome {
        Ok(result) => (completion(reply, result), None),
        // The batch's failure replaces this placeholder.
        Err(e) => (completion(reply, Err(unavailable(&e))), Some(e)),
    }
}

impl Request {
    /// Applies the request in the batch's transaction.
    fn apply(self, tables: &mut WriteTables<'_>) -> (Completion, Option<redb::Error>) {
        match self {
            Request::Tables(job) => job(Some(tables)),
            Request::Log(job) => (job(Some(&mut tables.batch)), None),
        }
    }

    /// Leaves the request unapplied; its batch is failing (the batch's error replaces this one).
    fn abandon(self) -> Completion {
        match self {
            Request::Tables(job) => job(None).0,
            Request::Log(job) => job(None),
        }
    }
}

/// The writer thread: one batch, one log sync and at most one transaction at a time, until
/// every sender is gone.
fn run_writer(
    db: &Database,
    mut log: LogWriter,
    mut requests: mpsc::Receiver<Request>,
    state: &WriterState,
) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    let mut pace = CommitPace::default();
    while let Some(first) = requests.blocking_recv() {
        if let Some(wait) = pace.wait(Instant::now()) {
            // Under load: let more requests join this batch rather than sync a few at a time.
            std::thread::sleep(wait);
        }
        batch.push(first);
        while batch.len() < MAX_BATCH {
            match requests.try_recv() {
                Ok(request) => batch.push(request),
                Err(_) => break,
            }
        }
        pace.started(Instant::now(), batch.len());
        commit_batch(db, &mut log, &mut batch, state);
    }
}

/// When the writer starts its next batch. A sync costs the same for one record as for fifty
/// (its CPU is the kernel's I/O path and the wake-ups around it), so under load batches start
/// at most once per [`COMMIT_INTERVAL`]; the requests that arrive meanwhile share the next
/// sync. A writer that is not under load (its last batch held one request: a lone client
/// waiting for each ack) starts at once, so it pays no delay.
#[derive(Default)]
struct CommitPace {
    /// When the last batch started, if it held more than one request.
    loaded_since: Option<Instant>,
}

impl CommitPace {
    /// How long to wait before starting a batch at `now`.
    fn wait(&self, now: Instant) -> Option<Duration> {
        let since = now.saturating_duration_since(self.loaded_since?);
        COMMIT_INTERVAL.checked_sub(since).filter(|d| !d.is_zero())
    }

    fn started(&mut self, now: Instant, requests: usize) {
        self.loaded_since = (requests > 1).then_some(now);
    }
}

/// Applies `batch` (emptying it), makes it durable, then answers every request.
fn commit_batch(db: &Database, log: &mut LogWriter, batch: &mut Vec<Request>, state: &WriterState) {
    let mut completions: Vec<Completion> = Vec::with_capacity(batch.len());
    let endpoints_exist = state.has_endpoints.load(Ordering::Acquire);
    let outcome = if batch.iter().all(|r| matches!(r, Request::Log(_))) {
        // Messages alone: beginning a redb transaction would cost more than the batch.
        apply_to_log(log, endpoints_exist, batch.drain(..), &mut completions)
    } else {
        match db.begin_write() {
            Err(e) => {
                // Typically after a failed commit: redb refuses writes until reopened.
                completions.extend(batch.drain(..).map(Request::abandon));
                Err(unavailable(e))
            }
            Ok(txn) => apply_all(txn, log, endpoints_exist, batch.drain(..), &mut completions),
        }
    };
    let failure = match outcome {
        Ok(written) => {
            if written.anything {
                state.commits.fetch_add(1, Ordering::Relaxed);
            }
            if written.transaction {
                state.transactions.fetch_add(1, Ordering::Relaxed);
            }
            if let Some(has) = written.has_endpoints {
                // Before answering: whoever added an endpoint finds it from then on.
                state.has_endpoints.store(has, Ordering::Release);
            }
            None
        }
        Err(e) => {
            tracing::error!(error = %e, requests = completions.len(), "history batch failed");
            Some(e)
        }
    };
    for complete in completions {
        complete(failure.clone());
    }
}

/// What a batch wrote.
struct Written {
    anything: bool,
    /// Whether it committed a redb transaction.
    transaction: bool,
    /// Whether an endpoint exists after it, when it changed the endpoints.
    has_endpoints: Option<bool>,
}

/// Applies a batch of requests that write the log only, then syncs their records.
fn apply_to_log(
    log: &mut LogWriter,
    endpoints_exist: bool,
    batch: impl Iterator<Item = Request>,
    completions: &mut Vec<Completion>,
) -> Result<Written, StoreError> {
    let mut on_log = LogBatch {
        log,
        endpoints_exist,
    };
    completions.extend(batch.map(|request| match request {
        Request::Log(job) => job(Some(&mut on_log)),
        // Not reached: the caller checked the batch holds writes of the log only.
        tables => tables.abandon(),
    }));
    let logged = log.flush()?;
    log.publish(false);
    Ok(Written {
        anything: logged,
        transaction: false,
        has_endpoints: None,
    })
}

/// Applies every request, then syncs the log's records and commits the tables' changes, the
/// log first. On a storage error while applying, nothing
/// is written (the transaction is dropped, the staged records discarded) and the remaining
/// requests are abandoned.
fn apply_all(
    mut txn: WriteTransaction,
    log: &mut LogWriter,
    endpoints_exist: bool,
    batch: impl Iterator<Item = Request>,
    completions: &mut Vec<Completion>,
) -> Result<Written, StoreError> {
    // redb's default, stated because the ack depends on it: commit returns after fsync.
    if let Err(e) = txn.set_durability(Durability::Immediate) {
        completions.extend(batch.map(Request::abandon));
        return Err(unavailable(e));
    }
    let mut fatal = None;
    let mut has_endpoints = None;
    match WriteTables::open(&txn, log, endpoints_exist) {
        Err(e) => {
            completions.extend(batch.map(Request::abandon));
            fatal = Some(e);
        }
        Ok(mut tables) => {
            for request in batch {
                if fatal.is_some() {
                    completions.push(request.abandon());
                    continue;
                }
                let (complete, error) = request.apply(&mut tables);
                completions.push(complete);
                fatal = error;
            }
            if tables.endpoints_changed {
                has_endpoints = Some(tables.batch.endpoints_exist);
            }
        }
    }
    if let Some(e) = fatal {
        log.discard();
        return Err(unavailable(e));
    }
    // The log first: no table change refers to a record, but a dispatch's position must not
    // get ahead of the events it dispatched.
    log.flush()?;
    // A failed commit may or may not have reached the disk (redb applies it atomically, fully
    // or not at all): not `Unavailable`, which promises nothing was written. Retrying is safe,
    // since every write is idempotent.
    let committed = txn
        .commit()
        .map_err(|e| StoreError::Other(format!("history commit failed, outcome unknown: {e}")));
    // The records are on disk, so readers may see them, whatever the tables' commit did: a
    // restart would show them too.
    log.publish(committed.is_ok());
    committed?;
    Ok(Written {
        anything: true,
        transaction: true,
        has_endpoints,
    })
}

/// The message log's side of a batch: messages, their edits and events. A batch of nothing
/// else opens no redb transaction.
struct LogBatch<'a> {
    log: &'a mut LogWriter,
    /// Whether an integration endpoint exists, so whether changes are journaled: the writer's
    /// own record, kept exact by the batches that change the endpoints.
    endpoints_exist: bool,
}

/// The tables, open in one write transaction, and the batch's log.
struct WriteTables<'txn> {
    batch: LogBatch<'txn>,
    /// Set by a write of the endpoints table.
    endpoints_changed: bool,
    cursors: Table<'txn, (&'static str, &'static str), u64>,
    members: Table<'txn, (&'static str, &'static str), u64>,
    conversations: Table<'txn, &'static str, &'static [u8]>,
    endpoints: Table<'txn, &'static str, &'static [u8]>,
    pending: Table<'txn, (&'static str, &'static str), &'static [u8]>,
    dead: Table<'txn, (&'static str, &'static str), &'static [u8]>,
    attempts: Table<'txn, (&'static str, u64), &'static [u8]>,
    counters: Table<'txn, &'static str, u64>,
    due: Table<'txn, (&'static str, u64, u64), &'static str>,
    slots: Table<'txn, (&'static str, &'static str), &'static [u8]>,
    unclaimed: Table<'txn, (u64, &'static str, &'static str), ()>,
    upload_usage: Table<'txn, (u64, &'static str), (u64, u64)>,
    desk: Table<'txn, (&'static str, &'static str, &'static str), (u64, &'static str)>,
}

/// Inner `Result`: the request's own outcome. Outer: a storage error that fails the batch.
type Applied<T> = Result<Result<T, StoreError>, redb::Error>;

impl<'txn> WriteTables<'txn> {
    fn open(
        txn: &'txn WriteTransaction,
        log: &'txn mut LogWriter,
        endpoints_exist: bool,
    ) -> Result<Self, redb::Error> {
        Ok(Self {
            batch: LogBatch {
                log,
                endpoints_exist,
            },
            endpoints_changed: false,
            cursors: txn.open_table(CURSORS)?,
            members: txn.open_table(MEMBERS)?,
            conversations: txn.open_table(CONVERSATIONS)?,
            endpoints: txn.open_table(outbox::ENDPOINTS)?,
            pending: txn.open_table(outbox::PENDING)?,
            dead: txn.open_table(outbox::DEAD)?,
            attempts: txn.open_table(outbox::ATTEMPTS)?,
            counters: txn.open_table(outbox::COUNTERS)?,
            due: txn.open_table(outbox::DUE)?,
            slots: txn.open_table(attachments::SLOTS)?,
            unclaimed: txn.open_table(attachments::UNCLAIMED)?,
            upload_usage: txn.open_table(attachments::USAGE)?,
            desk: txn.open_table(desk::RECORDS)?,
        })
    }

    fn advance_read(&mut self, room: &RoomRef, user: &str, seq: u64) -> Applied<(u64, bool)> {
        let key = room.key();
        let cursor = self
            .cursors
            .get((key.as_str(), user))?
            .map_or(0, |v| v.value());
        if seq <= cursor {
            return Ok(Ok((cursor, false)));
        }
        self.cursors.insert((key.as_str(), user), seq)?;
        Ok(Ok((seq, true)))
    }

    fn touch_member(&mut self, room: &RoomRef, user: &str, at_ms: u64) -> Applied<()> {
        let key = room.key();
        let seen = self.members.get((key.as_str(), user))?.map(|v| v.value());
        // Last seen never goes back.
        if seen.is_none_or(|seen| at_ms > seen) {
            self.members.insert((key.as_str(), user), at_ms)?;
        }
        Ok(Ok(()))
    }

    fn put_conversation(&mut self, room: &RoomRef, next: &Conversation) -> Applied<()> {
        let key = room.key();
        let stored: Option<Conversation> = match self.conversations.get(key.as_str())? {
            None => None,
            Some(bytes) => match decode(bytes.value()) {
                Ok(c) => Some(c),
                Err(e) => return Ok(Err(e)),
            },
        };
        if let Err(e) = check_conversation_version(stored.as_ref(), next) {
            return Ok(Err(e));
        }
        let bytes = match encode(next) {
            Ok(bytes) => bytes,
            Err(e) => return Ok(Err(e)),
        };
        self.conversations.insert(key.as_str(), bytes.as_slice())?;
        Ok(Ok(()))
    }
}

impl LogBatch<'_> {
    fn append(&mut self, room: &RoomRef, msg: NewMessage) -> Result<Appended, StoreError> {
        let key = room.key();
        if let Some(seq) = self.log.find(&key, &msg.from, &msg.id)? {
            let Some(stored) = self.log.view(&key, seq)? else {
                return Err(StoreError::Other(format!(
                    "idempotency key of {key} points at missing seq {seq}"
                )));
            };
            return Ok(Appended {
                message: decode(&stored)?,
                duplicate: true,
            });
        }
        let seq = self.log.head(&key) + 1;
        let message = stored_message(room, seq, msg);
        let event = self.journaled(|| Event::of_append(room, &message))?;
        self.stage_view(&key, &message, event)?;
        Ok(Appended {
            message,
            duplicate: false,
        })
    }

    fn amend(
        &mut self,
        room: &RoomRef,
        seq: u64,
        change: Amendment,
    ) -> Result<MessageView, StoreError> {
        let key = room.key();
        let Some(stored) = self.log.view(&key, seq)? else {
            return Err(StoreError::NotFound);
        };
        let mut message: MessageView = decode(&stored)?;
        if !apply_amendment(&mut message, change.clone()) {
            return Ok(message);
        }
        let event = self.journaled(|| Some(Event::of_amend(room, &message, &change)))?;
        self.stage_view(&key, &message, event)?;
        Ok(message)
    }

    /// Stages `message` in the log at its seq (appended, or superseding the stored version),
    /// with its journaled event if any.
    fn stage_view(
        &mut self,
        key: &str,
        message: &MessageView,
        event: Option<Vec<u8>>,
    ) -> Result<(), StoreError> {
        let bytes = encode(message)?;
        let key_of_message = (message.from.as_str(), message.id.as_str());
        self.log
            .stage_message(key, message.seq, key_of_message, &bytes, event.as_deref())
    }
}

/// Reads and decodes stored views on the blocking pool (`pread`s may wait for the disk).
async fn read_views(places: Vec<log::Located>) -> Result<Vec<MessageView>, StoreError> {
    if places.is_empty() {
        return Ok(Vec::new());
    }
    tokio::task::spawn_blocking(move || {
        places
            .iter()
            .map(|place| decode(&place.read_view()?))
            .collect()
    })
    .await
    .map_err(|e| StoreError::Other(format!("history read task failed: {e}")))?
}

/// Copies the messages and undispatched events of a store from before the message log into
/// the log, then drops their tables. Idempotent: a crash part way leaves the tables, and the
/// next open copies only what the log does not have yet.
fn migrate(db: &Database, log: &mut LogWriter) -> Result<(), StoreError> {
    let failed = |e: &dyn Display| StoreError::Other(format!("cannot move old messages: {e}"));
    let txn = db.begin_read().map_err(|e| failed(&e))?;
    let messages = match txn.open_table(LEGACY_MESSAGES) {
        Ok(table) => table,
        Err(redb::TableError::TableDoesNotExist(_)) => return Ok(()),
        Err(e) => return Err(failed(&e)),
    };
    let mut moved = 0u64;
    for entry in messages.iter().map_err(|e| failed(&e))? {
        let (key, value) = entry.map_err(|e| failed(&e))?;
        let (room, seq) = key.value();
        if seq <= log.head(room) {
            continue;
        }
        let view: MessageView = decode(value.value())?;
        log.stage_message(room, seq, (&view.from, &view.id), value.value(), None)?;
        moved += 1;
    }
    let events = outbox::legacy_journal(&txn)?;
    let undispatched = events.len();
    for event in events {
        log.stage_event(&event)?;
    }
    drop(txn);
    log.flush()?;
    log.publish(false);
    let txn = db.begin_write().map_err(|e| failed(&e))?;
    txn.delete_table(LEGACY_MESSAGES).map_err(|e| failed(&e))?;
    txn.delete_table(LEGACY_HEADS).map_err(|e| failed(&e))?;
    txn.delete_table(LEGACY_IDS).map_err(|e| failed(&e))?;
    outbox::drop_legacy_journal(&txn)?;
    txn.commit().map_err(|e| failed(&e))?;
    tracing::info!(
        moved,
        undispatched,
        "moved the history into the message log"
    );
    Ok(())
}

fn encode<T: Serialize>(value: &T) -> Result<Vec<u8>, StoreError> {
    serde_json::to_vec(value).map_err(|e| StoreError::Other(format!("cannot encode: {e}")))
}

fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, StoreError> {
    serde_json::from_slice(bytes)
        .map_err(|e| StoreError::Other(format!("corrupt stored value: {e}")))
}

fn unavailable(e: impl Display) -> StoreError {
    StoreError::Unavailable(format!("embedded store: {e}"))
}

fn writer_gone() -> StoreError {
    StoreError::Unavailable("the history writer has stopped".into())
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use roomcast_core::store::{DeskDirectory, DeskKind, DeskRecord, EventJournal};
    use roomcast_testkit::attachment_conformance::attachment_conformance;
    use roomcast_testkit::conformance::{
        Namer, history_conformance, journal_conformance, outbox_conformance,
    };
    use roomcast_testkit::desk_conformance::desk_conformance;

    use super::*;

    fn msg(id: &str, from: &str, body: &str) -> NewMessage {
        roomcast_testkit::conformance::new_message(id, from, body, 1)
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn conformance() {
        let dir = tempfile::tempdir().unwrap();
        let store = EmbeddedHistory::open(dir.path()).unwrap();
        history_conformance(&store, &Namer::new("emb")).await;
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn attachment_conformance_on_disk() {
        let dir = tempfile::tempdir().unwrap();
        let store = EmbeddedHistory::open(dir.path()).unwrap();
        attachment_conformance(&store, &Namer::new("emb"), true).await;
    }

    /// The suite on a fresh file, then on the same file reopened: the records written before
    /// are still there, at their versions, and compare-and-set goes on from them.
    #[tokio::test(flavor = "multi_thread")]
    async fn desk_conformance_on_disk_and_after_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let kept = DeskRecord {
            key: "ann".into(),
            version: 1,
            doc: r#"{"status":"online"}"#.into(),
        };
        {
            let store = EmbeddedHistory::open(dir.path()).unwrap();
            desk_conformance(&store, &Namer::new("emb")).await;
            store
                .put_desk_record("kept", DeskKind::Agent, &kept)
                .await
                .unwrap();
        }
        let store = EmbeddedHistory::open(dir.path()).unwrap();
        assert_eq!(
            store
                .desk_records("kept", DeskKind::Agent, 10)
                .await
                .unwrap(),
            vec![kept.clone()]
        );
        assert!(matches!(
            store.put_desk_record("kept", DeskKind::Agent, &kept).await,
            Err(StoreError::Conflict(_))
        ));
        let next = DeskRecord { version: 2, ..kept };
        store
            .put_desk_record("kept", DeskKind::Agent, &next)
            .await
            .unwrap();
        desk_conformance(&store, &Namer::new("reopened")).await;
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn outbox_conformance_on_disk() {
        let dir = tempfile::tempdir().unwrap();
        let store = EmbeddedHistory::open(dir.path()).unwrap();
        let names = Namer::new("emb");
        journal_conformance(&store, &names).await;
        outbox_conformance(&store, &names).await;
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn survives_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let room = RoomRef::new("t", "r");
        let first = {
            let store = EmbeddedHistory::open(dir.path()).unwrap();
            let first = store.append(&room, msg("a", "alice", "one")).await.unwrap();
            store.append(&room, msg("b", "alice", "two")).await.unwrap();
            store
                .amend(
                    &room,
                    2,
                    Amendment::Edit {
                        body: "2".into(),
                        at_ms: 9,
                    },
                )
                .await
                .unwrap();
            store.advance_read(&room, "bob", 2).await.unwrap();
            store.touch_member(&room, "alice", 10).await.unwrap();
            store.touch_member(&room, "bob", 20).await.unwrap();
            first.message
        };
        let store = EmbeddedHistory::open(dir.path()).unwrap();
        assert_eq!(store.head(&room).await.unwrap(), 2);
        assert_eq!(store.message(&room, 1).await.unwrap(), Some(first.clone()));
        let again = store
            .append(&room, msg("a", "alice", "resent"))
            .await
            .unwrap();
        assert!(again.duplicate);
        assert_eq!(again.message, first);
        let page = store
            .messages(
                &room,
                HistoryQuery {
                    after: Some(0),
                    before: None,
                    limit: 10,
                },
            )
            .await
            .unwrap();
        let bodies: Vec<_> = page.messages.iter().map(|m| m.body.clone()).collect();
        assert_eq!(bodies, vec![Some("one".into()), Some("2".into())]);
        assert_eq!(store.read_cursor(&room, "bob").await.unwrap(), 2);
        let members: Vec<_> = store
            .members(&room, 10)
            .await
            .unwrap()
            .into_iter()
            .map(|m| (m.user, m.last_seen))
            .collect();
        assert_eq!(members, vec![("bob".into(), 20), ("alice".into(), 10)]);
        let next = store
            .append(&room, msg("c", "alice", "three"))
            .await
            .unwrap();
        assert_eq!(next.message.seq, 3);
    }

    /// 500 appends from 50 tasks: seqs exactly 1..=500, and they shared commits.
    #[tokio::test(flavor = "multi_thread")]
    async fn concurrent_appends_are_gap_free_and_batched() {
        const TASKS: usize = 50;
        const EACH: usize = 10;
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(EmbeddedHistory::open(dir.path()).unwrap());
        let room = RoomRef::new("t", "busy");
        let before = store.commits();
        let tasks: Vec<_> = (0..TASKS)
            .map(|t| {
                let (store, room) = (store.clone(), room.clone());
                tokio::spawn(async move {
                    let mut seqs = Vec::new();
                    for i in 0..EACH {
                        let a = store
                            .append(&room, msg(&format!("{t}-{i}"), "alice", "x"))
                            .await
                            .unwrap();
                        assert!(!a.duplicate);
                        seqs.push(a.message.seq);
                    }
                    seqs
                })
            })
            .collect();
        let mut seqs = BTreeSet::new();
        for task in tasks {
            seqs.extend(task.await.unwrap());
        }
        let n = (TASKS * EACH) as u64;
        assert_eq!(seqs, (1..=n).collect());
        assert_eq!(store.head(&room).await.unwrap(), n);
        let commits = store.commits() - before;
        assert!(
            commits < n,
            "{commits} commits for {n} appends: no batching"
        );
    }

    /// Two appends of one id in the same batch: stored once, the second is the duplicate; one
    /// sync for the batch.
    #[tokio::test(flavor = "multi_thread")]
    async fn duplicate_within_one_batch() {
        let dir = tempfile::tempdir().unwrap();
        let store = EmbeddedHistory::open(dir.path()).unwrap();
        let room = RoomRef::new("t", "r");
        let before = store.commits();
        let results = store
            .append_all(vec![
                (room.clone(), msg("same", "alice", "first")),
                (room.clone(), msg("same", "alice", "second")),
                (room.clone(), msg("other", "alice", "third")),
            ])
            .await;
        assert_eq!(store.commits() - before, 1);
        let [a, b, c] = [0, 1, 2].map(|i| results[i].clone().unwrap());
        assert!(!a.duplicate && b.duplicate && !c.duplicate);
        assert_eq!((a.message.seq, b.message), (1, a.message.clone()));
        assert_eq!(c.message.seq, 2);
        assert_eq!(
            store
                .amend(
                    &room,
                    7,
                    Amendment::Delete {
                        at_ms: 1,
                        moderator: None,
                    },
                )
                .await,
            Err(StoreError::NotFound)
        );
        assert_eq!(store.head(&room).await.unwrap(), 2);
    }

    fn segment(dir: &Path) -> std::path::PathBuf {
        dir.join(LOG_DIR).join("00000000.seg")
    }

    /// A batch cut short by a crash (a torn last record) was never acknowledged: reopening cuts
    /// it off, keeps everything before it, and the next append takes its seq.
    #[tokio::test(flavor = "multi_thread")]
    async fn a_torn_last_batch_is_cut_off() {
        let dir = tempfile::tempdir().unwrap();
        let room = RoomRef::new("t", "r");
        {
            let store = EmbeddedHistory::open(dir.path()).unwrap();
            store.append(&room, msg("a", "alice", "one")).await.unwrap();
            store.append(&room, msg("b", "alice", "two")).await.unwrap();
        }
        let whole = {
            // Opening drops the zeros ahead of the records: the file ends at the second one.
            let store = EmbeddedHistory::open(dir.path()).unwrap();
            let whole = std::fs::metadata(segment(dir.path())).unwrap().len();
            store
                .append(&room, msg("c", "alice", "three"))
                .await
                .unwrap();
            whole
        };
        // Tear the third record: its last bytes (the view's JSON) never reached the disk.
        let mut bytes = std::fs::read(segment(dir.path())).unwrap();
        let records_end = bytes.iter().rposition(|&b| b != 0).unwrap() + 1;
        assert!(
            records_end as u64 > whole,
            "the third record is after the second"
        );
        bytes[records_end - 3..records_end].fill(0);
        std::fs::write(segment(dir.path()), &bytes).unwrap();
        let store = EmbeddedHistory::open(dir.path()).unwrap();
        assert_eq!(store.head(&room).await.unwrap(), 2);
        assert_eq!(std::fs::metadata(segment(dir.path())).unwrap().len(), whole);
        let again = store
            .append(&room, msg("c", "alice", "three"))
            .await
            .unwrap();
        assert_eq!((again.message.seq, again.duplicate), (3, false));
        let resent = store.append(&room, msg("a", "alice", "one")).await.unwrap();
        assert_eq!((resent.message.seq, resent.duplicate), (1, true));
    }

    /// A segment's file runs ahead of its records with zeros, so batches after the first sync
    /// without growing it; a closed segment's zeros are its end, not damage.
    #[tokio::test(flavor = "multi_thread")]
    async fn segments_are_zeroed_ahead_and_end_at_their_zeros() {
        let dir = tempfile::tempdir().unwrap();
        let room = RoomRef::new("t", "r");
        {
            let store = EmbeddedHistory::open(dir.path()).unwrap();
            store.append(&room, msg("a", "alice", "one")).await.unwrap();
            let first = std::fs::metadata(segment(dir.path())).unwrap().len();
            assert!(first > 1024 * 1024, "zeroed ahead: {first} bytes");
            store.append(&room, msg("b", "alice", "two")).await.unwrap();
            let second = std::fs::metadata(segment(dir.path())).unwrap().len();
            assert_eq!(second, first, "the second batch wrote into the zeros");
        }
        // Segment 0 is closed now, its zeros still after its records.
        std::fs::write(dir.path().join(LOG_DIR).join("00000001.seg"), b"").unwrap();
        let store = EmbeddedHistory::open(dir.path()).unwrap();
        assert_eq!(store.head(&room).await.unwrap(), 2);
        let next = store
            .append(&room, msg("c", "alice", "three"))
            .await
            .unwrap();
        assert_eq!(next.message.seq, 3);
        let everything = HistoryQuery {
            limit: 10,
            ..HistoryQuery::default()
        };
        let page = store.messages(&room, everything).await.unwrap();
        let seqs: Vec<u64> = page.messages.iter().map(|m| m.seq).collect();
        assert_eq!(seqs, [1, 2, 3]);
    }

    /// Damage before the last segment's end is not a torn batch: the store refuses to open
    /// rather than serve a history with a hole.
    #[tokio::test(flavor = "multi_thread")]
    async fn damage_inside_the_log_refuses_to_open() {
        let dir = tempfile::tempdir().unwrap();
        let room = RoomRef::new("t", "r");
        {
            let store = EmbeddedHistory::open(dir.path()).unwrap();
            store.append(&room, msg("a", "alice", "one")).await.unwrap();
            store.append(&room, msg("b", "alice", "two")).await.unwrap();
        }
        let mut bytes = std::fs::read(segment(dir.path())).unwrap();
        bytes[20] ^= 0xff;
        std::fs::write(segment(dir.path()), &bytes).unwrap();
        std::fs::write(dir.path().join(LOG_DIR).join("00000001.seg"), b"").unwrap();
        assert!(matches!(
            EmbeddedHistory::open(dir.path()),
            Err(StoreError::Other(e)) if e.contains("damaged")
        ));
    }

    /// A store written before the message log (messages, heads, keys and the journal in redb)
    /// opens with its history and undispatched events moved into the log, once.
    #[tokio::test(flavor = "multi_thread")]
    async fn a_store_from_before_the_log_is_moved_into_it() {
        let dir = tempfile::tempdir().unwrap();
        let room = RoomRef::new("t", "old");
        let old: Vec<MessageView> = (1..=3)
            .map(|seq| stored_message(&room, seq, msg(&format!("m{seq}"), "alice", "hi")))
            .collect();
        let event = Event::of_append(&room, &old[2]).expect("a user's message has an event");
        {
            let db = Database::create(dir.path().join(FILE_NAME)).unwrap();
            let txn = db.begin_write().unwrap();
            {
                let mut messages = txn.open_table(LEGACY_MESSAGES).unwrap();
                let mut ids = txn.open_table(LEGACY_IDS).unwrap();
                for m in &old {
                    let bytes = encode(m).unwrap();
                    messages
                        .insert((room.key().as_str(), m.seq), bytes.as_slice())
                        .unwrap();
                    ids.insert((room.key().as_str(), "alice", m.id.as_str()), m.seq)
                        .unwrap();
                }
                let mut heads = txn.open_table(LEGACY_HEADS).unwrap();
                heads.insert(room.key().as_str(), 3).unwrap();
                let mut journal = txn
                    .open_table(TableDefinition::<u64, &[u8]>::new("event_journal"))
                    .unwrap();
                journal
                    .insert(7, encode(&event).unwrap().as_slice())
                    .unwrap();
            }
            txn.commit().unwrap();
        }
        for _ in 0..2 {
            let store = EmbeddedHistory::open(dir.path()).unwrap();
            assert_eq!(store.head(&room).await.unwrap(), 3);
            assert_eq!(store.message(&room, 2).await.unwrap(), Some(old[1].clone()));
            let journal = store.journal(10).await.unwrap();
            assert_eq!(journal.len(), 1);
            assert_eq!(journal[0].event, event);
            let resent = store.append(&room, msg("m1", "alice", "hi")).await.unwrap();
            assert!(resent.duplicate);
        }
        let store = EmbeddedHistory::open(dir.path()).unwrap();
        let next = store
            .append(&room, msg("m4", "alice", "new"))
            .await
            .unwrap();
        assert_eq!(next.message.seq, 4);
        let txn = store.db.begin_read().unwrap();
        assert!(matches!(
            txn.open_table(LEGACY_MESSAGES),
            Err(redb::TableError::TableDoesNotExist(_))
        ));
    }

    /// Journaled events survive a reopen until dispatched, and a dispatch survives it too.
    #[tokio::test(flavor = "multi_thread")]
    async fn the_journal_and_its_dispatch_survive_reopen() {
        use roomcast_core::store::EndpointRegistry;
        let dir = tempfile::tempdir().unwrap();
        let room = RoomRef::new("t", "r");
        {
            let store = EmbeddedHistory::open(dir.path()).unwrap();
            let endpoint = roomcast_testkit::conformance::endpoint_for("ep1", Some("t"));
            store.put_endpoint(&endpoint).await.unwrap();
            for id in ["a", "b", "c"] {
                store.append(&room, msg(id, "alice", "x")).await.unwrap();
            }
            let journal = store.journal(10).await.unwrap();
            assert_eq!(journal.len(), 3);
            store.dispatch(journal[1].position, &[]).await.unwrap();
        }
        let store = EmbeddedHistory::open(dir.path()).unwrap();
        let journal = store.journal(10).await.unwrap();
        assert_eq!(journal.len(), 1);
        assert_eq!(journal[0].event.seq, Some(3));
        store.append(&room, msg("d", "alice", "x")).await.unwrap();
        let positions: Vec<u64> = store
            .journal(10)
            .await
            .unwrap()
            .iter()
            .map(|j| j.position)
            .collect();
        assert_eq!(positions.len(), 2);
        assert!(positions[0] < positions[1]);
    }

    #[test]
    fn batches_under_load_start_at_most_once_per_interval() {
        let start = Instant::now();
        let ms = |n| start + Duration::from_millis(n);
        let mut pace = CommitPace::default();
        assert_eq!(pace.wait(start), None, "the first batch starts at once");
        pace.started(start, 1);
        assert_eq!(
            pace.wait(ms(1)),
            None,
            "a lone request did not load the writer"
        );
        pace.started(ms(1), 7);
        assert_eq!(
            pace.wait(ms(2)),
            Some(COMMIT_INTERVAL - Duration::from_millis(1)),
            "after a batch of many, the next waits out the interval"
        );
        assert_eq!(pace.wait(ms(1) + COMMIT_INTERVAL), None);
        pace.started(ms(10), 1);
        assert_eq!(
            pace.wait(ms(10)),
            None,
            "the load is gone once a batch holds one"
        );
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn a_batch_of_messages_opens_no_transaction_and_a_mixed_one_commits() {
        let dir = tempfile::tempdir().unwrap();
        let store = EmbeddedHistory::open(dir.path()).unwrap();
        let room = RoomRef::new("t", "r");
        let (commits, transactions) = (store.commits(), store.transactions());
        store.append(&room, msg("a", "ann", "hi")).await.unwrap();
        let edit = Amendment::Edit {
            body: "hello".into(),
            at_ms: 2,
        };
        store.amend(&room, 1, edit).await.unwrap();
        assert_eq!(store.commits() - commits, 2, "two batches, both synced");
        assert_eq!(
            store.transactions(),
            transactions,
            "messages and edits write the log only"
        );
        store.advance_read(&room, "bob", 1).await.unwrap();
        assert_eq!(store.transactions() - transactions, 1);
        assert_eq!(store.read_cursor(&room, "bob").await.unwrap(), 1);
        let page = store
            .messages(&room, HistoryQuery::default())
            .await
            .unwrap();
        assert_eq!(page.messages[0].body.as_deref(), Some("hello"));
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn writes_fail_cleanly_without_a_writer() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = EmbeddedHistory::open(dir.path()).unwrap();
        let room = RoomRef::new("t", "r");
        store.append(&room, msg("a", "alice", "x")).await.unwrap();
        // Stand in for a dead writer: a queue nobody receives from.
        let (sender, receiver) = mpsc::channel(1);
        drop(receiver);
        store.sender = Some(sender);
        assert!(matches!(
            store.append(&room, msg("b", "alice", "x")).await,
            Err(StoreError::Unavailable(_))
        ));
        assert!(matches!(
            store.touch_member(&room, "alice", 1).await,
            Err(StoreError::Unavailable(_))
        ));
        assert_eq!(store.head(&room).await.unwrap(), 1, "reads still work");
    }
}
