//! The local [`Gateway`]: a registry of live sockets, each with an outbound queue bounded in
//! frames ([`OUTBOUND_QUEUE_FRAMES`]) and bytes ([`OUTBOUND_QUEUE_BYTES`]). The
//! `@connections` management endpoint and the chat service both deliver through it, as they
//! both do through the Management API on AWS.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use axum::extract::ws::Utf8Bytes;
use roomcast_core::gateway::{Gateway, GatewayError, Posted};
use roomcast_core::limits::{OUTBOUND_QUEUE_BYTES, OUTBOUND_QUEUE_FRAMES};
use roomcast_core::protocol::close;
use tokio::sync::Notify;

use crate::metrics::Metrics;

/// A frame on its way to a socket.
#[derive(Debug)]
pub enum Outbound {
    /// A text frame; a broadcast's recipients share one copy.
    Text(Utf8Bytes),
    /// A binary frame (only `@connections` posts of non-UTF-8 data).
    Binary(Vec<u8>),
}

impl Outbound {
    /// Payload bytes.
    pub fn len(&self) -> usize {
        match self {
            Self::Text(t) => t.len(),
            Self::Binary(b) => b.len(),
        }
    }

    /// Whether the payload is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Frames waiting for a socket's writer. A plain deque rather than a bounded channel: it
/// allocates nothing until a frame is queued, where a channel allocates its first block (about
/// 1.5 KiB) for every connection, most of which are idle (docs/benchmarks.md, idle capacity).
#[derive(Default)]
struct OutboundQueue {
    frames: VecDeque<Outbound>,
    /// Payload bytes in `frames`.
    bytes: usize,
    /// The writer has stopped: nothing will take frames any more.
    writer_gone: bool,
}

/// Why a frame was not queued.
enum Refused {
    /// The queue is at one of its bounds.
    Full,
    /// The socket's writer has stopped.
    WriterGone,
}

/// What the registry knows about one socket.
pub struct ConnHandle {
    outbound: Mutex<OutboundQueue>,
    /// Signalled when a frame is queued (a permit is kept if the writer is busy).
    frames_queued: Notify,
    close_request: Mutex<Option<(u16, String)>>,
    close_notify: Notify,
    /// When it connected, epoch milliseconds.
    pub connected_at_ms: u64,
    /// Client address.
    pub source_ip: String,
    /// Client `User-Agent`.
    pub user_agent: String,
    last_active_ms: AtomicU64,
}

impl ConnHandle {
    /// A handle with an empty outbound queue.
    pub fn new(connected_at_ms: u64, source_ip: String, user_agent: String) -> Arc<Self> {
        Arc::new(Self {
            outbound: Mutex::new(OutboundQueue::default()),
            frames_queued: Notify::new(),
            close_request: Mutex::new(None),
            close_notify: Notify::new(),
            connected_at_ms,
            source_ip,
            user_agent,
            last_active_ms: AtomicU64::new(connected_at_ms),
        })
    }

    fn outbound(&self) -> MutexGuard<'_, OutboundQueue> {
        self.outbound.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Queues `frame` unless that would pass a bound or the writer has stopped.
    fn push(&self, frame: Outbound) -> Result<(), Refused> {
        let mut queue = self.outbound();
        if queue.writer_gone {
            return Err(Refused::WriterGone);
        }
        let bytes = queue.bytes + frame.len();
        if queue.frames.len() >= OUTBOUND_QUEUE_FRAMES || bytes > OUTBOUND_QUEUE_BYTES {
            return Err(Refused::Full);
        }
        queue.bytes = bytes;
        queue.frames.push_back(frame);
        drop(queue);
        self.frames_queued.notify_one();
        Ok(())
    }

    /// Waits until a frame is queued.
    pub async fn frames_queued(&self) {
        loop {
            // Created before the check: `notify_one` between the two leaves a permit for it.
            let notified = self.frames_queued.notified();
            if !self.outbound().frames.is_empty() {
                return;
            }
            notified.await;
        }
    }

    /// Takes the oldest queued frame.
    pub fn take_frame(&self) -> Option<Outbound> {
        let mut queue = self.outbound();
        let frame = queue.frames.pop_front()?;
        queue.bytes -= frame.len();
        Some(frame)
    }

    /// The writer has stopped: drops what is queued and refuses further frames (`Gone`).
    pub fn writer_stopped(&self) {
        let mut queue = self.outbound();
        queue.writer_gone = true;
        queue.frames = VecDeque::new();
        queue.bytes = 0;
    }

    /// Asks the socket's writer to close with `code`; the first request wins.
    /// Returns whether this was the first request.
    pub fn request_close(&self, code: u16, reason: &str) -> bool {
        let mut slot = self
            .close_request
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let first = slot.is_none();
        if first {
            *slot = Some((code, reason.to_owned()));
        }
        drop(slot);
        // Both the socket's reader and its writer wait for this.
        self.close_notify.notify_waiters();
        first
    }

    /// Whether a close has been requested.
    pub fn is_closing(&self) -> bool {
        self.close_code().is_some()
    }

    /// The code of the close requested, if one was.
    pub fn close_code(&self) -> Option<u16> {
        self.close_request
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .as_ref()
            .map(|(code, _)| *code)
    }

    /// Waits for a close request.
    pub async fn close_requested(&self) -> (u16, String) {
        loop {
            // Registered before the check, so a request made in between still wakes us.
            let notified = self.close_notify.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if let Some(req) = self
                .close_request
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .clone()
            {
                return req;
            }
            notified.await;
        }
    }

    /// Payload bytes queued and not yet taken by the writer.
    pub fn queued_bytes(&self) -> usize {
        self.outbound().bytes
    }

    /// Records inbound activity.
    pub fn touch(&self, now_ms: u64) {
        self.last_active_ms.store(now_ms, Ordering::Relaxed);
    }

    /// Last inbound activity, epoch milliseconds.
    pub fn last_active_ms(&self) -> u64 {
        self.last_active_ms.load(Ordering::Relaxed)
    }
}

/// The socket registry.
pub struct LocalGateway {
    conns: Mutex<HashMap<String, Arc<ConnHandle>>>,
    metrics: Arc<Metrics>,
}

impl LocalGateway {
    /// An empty registry.
    pub fn new(metrics: Arc<Metrics>) -> Self {
        Self {
            conns: Mutex::new(HashMap::new()),
            metrics,
        }
    }

    fn conns(&self) -> MutexGuard<'_, HashMap<String, Arc<ConnHandle>>> {
        self.conns.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Adds a socket.
    pub fn register(&self, conn_id: &str, handle: Arc<ConnHandle>) {
        self.conns().insert(conn_id.to_owned(), handle);
    }

    /// Removes a socket.
    pub fn unregister(&self, conn_id: &str) {
        self.conns().remove(conn_id);
    }

    /// A socket's handle.
    pub fn handle(&self, conn_id: &str) -> Option<Arc<ConnHandle>> {
        self.conns().get(conn_id).cloned()
    }

    /// Live sockets.
    pub fn len(&self) -> usize {
        self.conns().len()
    }

    /// Whether no socket is live.
    pub fn is_empty(&self) -> bool {
        self.conns().is_empty()
    }

    /// Asks every socket to close (shutdown).
    pub fn close_all(&self, code: u16, reason: &str) {
        for handle in self.conns().values() {
            handle.request_close(code, reason);
        }
    }

    /// Queues a frame; a full queue (in frames or bytes) closes the socket as a slow consumer
    /// instead of growing.
    pub fn enqueue(&self, conn_id: &str, frame: Outbound) -> Result<(), GatewayError> {
        let handle = self.handle(conn_id).ok_or(GatewayError::Gone)?;
        match handle.push(frame) {
            Ok(()) => {
                self.metrics.frame_out();
                Ok(())
            }
            Err(Refused::Full) => Err(self.slow_consumer(&handle)),
            Err(Refused::WriterGone) => Err(GatewayError::Gone),
        }
    }

    /// Closes a socket whose queue is full with 4009 (counted once).
    fn slow_consumer(&self, handle: &ConnHandle) -> GatewayError {
        if handle.request_close(close::SLOW_CONSUMER, "slow consumer: reconnect and resume") {
            self.metrics.slow_consumer();
        }
        GatewayError::Other("slow consumer closed".into())
    }
}

#[async_trait::async_trait]
impl Gateway for LocalGateway {
    async fn send(&self, conn_id: &str, frame: &str) -> Result<(), GatewayError> {
        self.enqueue(conn_id, Outbound::Text(frame.to_owned().into()))
    }

    /// Queues one copy of `frame`, shared by every recipient, without a future per recipient:
    /// a push never waits.
    async fn send_each(&self, conn_ids: Vec<String>, frame: &str) -> Posted {
        let shared = Utf8Bytes::from(frame.to_owned());
        let mut posted = Posted::default();
        for conn_id in conn_ids {
            let result = self.enqueue(&conn_id, Outbound::Text(shared.clone()));
            posted.record(conn_id, result);
        }
        posted
    }

    async fn close(&self, conn_id: &str, code: u16, reason: &str) -> Result<(), GatewayError> {
        let handle = self.handle(conn_id).ok_or(GatewayError::Gone)?;
        handle.request_close(code, reason);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_connection_that_does_not_read_is_closed_at_the_byte_bound() {
        let gateway = LocalGateway::new(Arc::new(Metrics::default()));
        let handle = ConnHandle::new(0, "127.0.0.1".into(), String::new());
        gateway.register("c", handle.clone());
        let frame = || Outbound::Text("x".repeat(1024 * 1024).into());
        let fit = OUTBOUND_QUEUE_BYTES / (1024 * 1024);
        assert!(
            fit < OUTBOUND_QUEUE_FRAMES,
            "the byte bound is the one reached here"
        );
        for i in 0..fit {
            assert!(gateway.enqueue("c", frame()).is_ok(), "frame {i} fits");
        }
        assert_eq!(handle.queued_bytes(), fit * 1024 * 1024);
        assert!(!handle.is_closing());
        assert!(
            gateway.enqueue("c", frame()).is_err(),
            "one more MB does not"
        );
        assert!(
            handle.is_closing(),
            "the connection is closed as a slow consumer"
        );
        assert_eq!(
            handle.close_request.lock().unwrap().as_ref().map(|r| r.0),
            Some(close::SLOW_CONSUMER)
        );
        assert_eq!(
            handle.queued_bytes(),
            fit * 1024 * 1024,
            "the refused frame is not counted"
        );
        assert!(handle.take_frame().is_some());
        assert_eq!(handle.queued_bytes(), (fit - 1) * 1024 * 1024);
        handle.writer_stopped();
        assert!(
            matches!(gateway.enqueue("c", frame()), Err(GatewayError::Gone)),
            "nothing is queued for a stopped writer"
        );
        assert_eq!(handle.queued_bytes(), 0);
    }

    #[test]
    fn a_connection_that_does_not_read_is_closed_at_the_frame_bound() {
        let gateway = LocalGateway::new(Arc::new(Metrics::default()));
        let handle = ConnHandle::new(0, "127.0.0.1".into(), String::new());
        gateway.register("c", handle.clone());
        for i in 0..OUTBOUND_QUEUE_FRAMES {
            assert!(
                gateway.enqueue("c", Outbound::Text("x".into())).is_ok(),
                "frame {i} fits"
            );
        }
        assert!(!handle.is_closing());
        assert!(gateway.enqueue("c", Outbound::Text("x".into())).is_err());
        assert!(handle.is_closing(), "closed as a slow consumer");
        let order: Vec<_> = std::iter::from_fn(|| handle.take_frame()).collect();
        assert_eq!(order.len(), OUTBOUND_QUEUE_FRAMES, "the queued frames stay");
    }

    #[tokio::test]
    async fn a_broadcast_queues_one_shared_copy_and_reports_the_gone() {
        let gateway = LocalGateway::new(Arc::new(Metrics::default()));
        let (a, b) = (
            ConnHandle::new(0, "127.0.0.1".into(), String::new()),
            ConnHandle::new(0, "127.0.0.1".into(), String::new()),
        );
        gateway.register("a", a.clone());
        gateway.register("b", b.clone());
        let ids = ["a", "gone", "b"].map(String::from).to_vec();
        let posted = gateway.send_each(ids, "{\"type\":\"message\"}").await;
        assert_eq!(posted.delivered, 2);
        assert_eq!(posted.gone, ["gone"]);
        let text = |handle: &ConnHandle| match handle.take_frame() {
            Some(Outbound::Text(t)) => t,
            other => panic!("expected one text frame, got {other:?}"),
        };
        let (to_a, to_b) = (text(&a), text(&b));
        assert_eq!(to_a.as_str(), "{\"type\":\"message\"}");
        assert_eq!(
            to_a.as_str().as_ptr(),
            to_b.as_str().as_ptr(),
            "both queues hold the same bytes"
        );
        assert_eq!(a.queued_bytes() + b.queued_bytes(), 0);
    }
}
