//! The local [`Gateway`]: a registry of live sockets, each with an outbound queue bounded in
//! frames ([`OUTBOUND_QUEUE_FRAMES`]) and bytes ([`OUTBOUND_QUEUE_BYTES`]). The
//! `@connections` management endpoint and the chat service both deliver through it, as they
//! both do through the Management API on AWS.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use roomcast_core::limits::{OUTBOUND_QUEUE_BYTES, OUTBOUND_QUEUE_FRAMES};
use roomcast_core::ports::{Gateway, GatewayError};
use roomcast_core::protocol::close;
use tokio::sync::{Notify, mpsc};

use crate::metrics::Metrics;

/// A frame on its way to a socket.
#[derive(Debug)]
pub enum Outbound {
    /// A text frame.
    Text(String),
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

/// What the registry knows about one socket.
pub struct ConnHandle {
    queue: mpsc::Sender<Outbound>,
    /// Payload bytes in `queue`.
    queued_bytes: AtomicUsize,
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
    /// A handle and the receiving end of its outbound queue.
    pub fn new(
        connected_at_ms: u64,
        source_ip: String,
        user_agent: String,
    ) -> (Arc<Self>, mpsc::Receiver<Outbound>) {
        let (queue, rx) = mpsc::channel(OUTBOUND_QUEUE_FRAMES);
        let handle = Arc::new(Self {
            queue,
            queued_bytes: AtomicUsize::new(0),
            close_request: Mutex::new(None),
            close_notify: Notify::new(),
            connected_at_ms,
            source_ip,
            user_agent,
            last_active_ms: AtomicU64::new(connected_at_ms),
        });
        (handle, rx)
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
        self.close_request
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .is_some()
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

    /// The socket's writer took `frame` off the queue.
    pub fn dequeued(&self, frame: &Outbound) {
        self.queued_bytes.fetch_sub(frame.len(), Ordering::AcqRel);
    }

    /// Payload bytes queued and not yet taken by the writer.
    pub fn queued_bytes(&self) -> usize {
        self.queued_bytes.load(Ordering::Acquire)
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
        let len = frame.len();
        // Reserved before the send, so concurrent senders cannot overshoot the bound together.
        let queued = handle.queued_bytes.fetch_add(len, Ordering::AcqRel) + len;
        if queued > OUTBOUND_QUEUE_BYTES {
            handle.queued_bytes.fetch_sub(len, Ordering::AcqRel);
            return Err(self.slow_consumer(&handle));
        }
        match handle.queue.try_send(frame) {
            Ok(()) => {
                self.metrics.frame_out();
                Ok(())
            }
            Err(mpsc::error::TrySendError::Full(_)) => {
                handle.queued_bytes.fetch_sub(len, Ordering::AcqRel);
                Err(self.slow_consumer(&handle))
            }
            Err(mpsc::error::TrySendError::Closed(_)) => {
                handle.queued_bytes.fetch_sub(len, Ordering::AcqRel);
                Err(GatewayError::Gone)
            }
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
        self.enqueue(conn_id, Outbound::Text(frame.to_owned()))
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
        let (handle, mut rx) = ConnHandle::new(0, "127.0.0.1".into(), String::new());
        gateway.register("c", handle.clone());
        let frame = || Outbound::Text("x".repeat(1024 * 1024));
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
        let taken = rx.try_recv().unwrap();
        handle.dequeued(&taken);
        assert_eq!(handle.queued_bytes(), (fit - 1) * 1024 * 1024);
    }
}
