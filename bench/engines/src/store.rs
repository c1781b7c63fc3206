//! What every engine implements, and the one group-commit writer thread they all run behind.
//!
//! The writer is roomcast's (infra/local/src/embedded.rs): block for one request, drain up to
//! [`MAX_BATCH`] queued, apply the whole batch in one commit, and only then answer each request.
//! Only the [`Engine`] behind it changes between runs.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::thread::JoinHandle;
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, anyhow};
use serde::Serialize;

/// Most appends applied in one commit (roomcast's `MAX_BATCH`).
pub const MAX_BATCH: usize = 256;

/// Requests queued for the writer before senders wait (roomcast's `QUEUE`).
const QUEUE: usize = 4096;

/// A message to append; `(room, from, id)` is its idempotency key.
#[derive(Clone, Debug)]
pub struct NewMessage {
    pub room: String,
    pub from: String,
    pub id: String,
    pub body: String,
}

/// The outcome of one append: its seq, and whether the key was already stored.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Appended {
    pub seq: u64,
    pub duplicate: bool,
}

/// The write side of an engine, owned by the writer thread.
pub trait Engine: Send {
    /// Applies `batch` in order in one atomic, durable commit (fsynced before it returns).
    /// A key seen earlier, in the store or earlier in the same batch, gets its first seq back.
    fn commit(&mut self, batch: &[NewMessage]) -> Result<Vec<Appended>>;
}

/// The read side, shared with every caller; it sees committed appends only.
pub trait Reads: Send + Sync {
    /// Highest seq of `room`, 0 when empty.
    fn head(&self, room: &str) -> Result<u64>;
    /// The stored values of seqs `from..=to` of `room`, in order.
    fn range(&self, room: &str, from: u64, to: u64) -> Result<Vec<Vec<u8>>>;
    /// The seq stored under an idempotency key.
    fn find(&self, room: &str, from: &str, id: &str) -> Result<Option<u64>>;
}

/// The stored form of a message: roomcast's `MessageView` as JSON (about 300 bytes here).
#[derive(Serialize)]
struct MessageView<'a> {
    room: &'a str,
    seq: u64,
    id: &'a str,
    from: &'a str,
    name: &'a str,
    role: &'static str,
    body: &'a str,
    ts: u64,
}

/// The integration event journaled with each append: roomcast's `message.created` (about 400 B).
#[derive(Serialize)]
struct Event<'a> {
    id: String,
    #[serde(rename = "type")]
    kind: &'static str,
    tenant: &'static str,
    ts: u64,
    data: MessageView<'a>,
}

/// Encodes the message and its event, as roomcast does inside the write.
pub fn encode(msg: &NewMessage, seq: u64) -> Result<(Vec<u8>, Vec<u8>)> {
    let ts = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    let view = MessageView {
        room: &msg.room,
        seq,
        id: &msg.id,
        from: &msg.from,
        name: &msg.from,
        role: "user",
        body: &msg.body,
        ts,
    };
    let message = serde_json::to_vec(&view)?;
    let event = Event {
        id: format!("evt_{}_{seq}_{ts}", msg.room),
        kind: "message.created",
        tenant: "bench",
        ts,
        data: view,
    };
    Ok((message, serde_json::to_vec(&event)?))
}

/// The idempotency key as bytes: `room \0 from \0 id` (names contain no NUL).
pub fn id_key(room: &str, from: &str, id: &str) -> Vec<u8> {
    [room.as_bytes(), from.as_bytes(), id.as_bytes()].join(&0)
}

/// Appends that share one commit, so reads inside it must see the batch's own writes
/// (for engines whose batch is invisible until committed).
#[derive(Default)]
pub struct BatchView {
    pub heads: std::collections::HashMap<String, u64>,
    pub ids: std::collections::HashMap<Vec<u8>, u64>,
}

impl BatchView {
    pub fn clear(&mut self) {
        self.heads.clear();
        self.ids.clear();
    }
}

/// The answer callback of a request, called after its batch's commit is decided.
pub type Reply = Box<dyn FnOnce(Result<Appended, String>) + Send>;

struct Request {
    msg: NewMessage,
    reply: Reply,
}

/// An engine behind the group-commit writer thread.
pub struct Store {
    sender: Option<SyncSender<Request>>,
    writer: Option<JoinHandle<()>>,
    reads: Arc<dyn Reads>,
    commits: Arc<AtomicU64>,
}

impl Store {
    pub fn start(engine: Box<dyn Engine>, reads: Arc<dyn Reads>) -> Result<Self> {
        let (sender, receiver) = sync_channel(QUEUE);
        let commits = Arc::new(AtomicU64::new(0));
        let writer = std::thread::Builder::new()
            .name("engine-writer".into())
            .spawn({
                let commits = commits.clone();
                move || run_writer(engine, &receiver, &commits)
            })
            .context("cannot start the writer thread")?;
        Ok(Self {
            sender: Some(sender),
            writer: Some(writer),
            reads,
            commits,
        })
    }

    /// Queues an append; `reply` gets its outcome once its batch is durable (or failed).
    pub fn submit(&self, msg: NewMessage, reply: Reply) -> Result<()> {
        let sender = self
            .sender
            .as_ref()
            .ok_or_else(|| anyhow!("store closed"))?;
        sender
            .send(Request { msg, reply })
            .map_err(|_| anyhow!("the writer has stopped"))
    }

    /// Appends and waits for the durable answer.
    pub fn append(&self, msg: NewMessage) -> Result<Appended> {
        let (tx, rx) = sync_channel(1);
        self.submit(
            msg,
            Box::new(move |result| {
                // The caller waits on `rx` until this is sent.
                let _ = tx.send(result);
            }),
        )?;
        rx.recv()
            .map_err(|_| anyhow!("the writer dropped the request"))?
            .map_err(|e| anyhow!(e))
    }

    pub fn reads(&self) -> &dyn Reads {
        self.reads.as_ref()
    }

    pub fn commits(&self) -> u64 {
        self.commits.load(Ordering::Relaxed)
    }
}

impl Drop for Store {
    /// Closes the queue and waits for the writer's last batch.
    fn drop(&mut self) {
        drop(self.sender.take());
        if let Some(writer) = self.writer.take()
            && writer.join().is_err()
        {
            eprintln!("the writer thread panicked");
        }
    }
}

fn run_writer(mut engine: Box<dyn Engine>, requests: &Receiver<Request>, commits: &AtomicU64) {
    let mut messages = Vec::with_capacity(MAX_BATCH);
    let mut replies = Vec::with_capacity(MAX_BATCH);
    while let Ok(first) = requests.recv() {
        let mut next = Some(first);
        while let Some(Request { msg, reply }) = next {
            messages.push(msg);
            replies.push(reply);
            next = if messages.len() < MAX_BATCH {
                requests.try_recv().ok()
            } else {
                None
            };
        }
        match engine.commit(&messages) {
            Ok(outcomes) => {
                commits.fetch_add(1, Ordering::Relaxed);
                for (reply, outcome) in replies.drain(..).zip(outcomes) {
                    reply(Ok(outcome));
                }
            }
            Err(e) => {
                let e = format!("{e:#}");
                for reply in replies.drain(..) {
                    reply(Err(e.clone()));
                }
            }
        }
        messages.clear();
    }
}
