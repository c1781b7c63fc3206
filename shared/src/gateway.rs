//! The outbound ports: [`Gateway`] (send a frame to a connection, close it) and [`RoomRelay`]
//! (record a message in a room another instance of the service owns).

use futures::StreamExt as _;

use crate::MaybeSendSync;
use crate::limits::FANOUT_CONCURRENCY;
use crate::split::SplitPolicy;
use crate::store::{Appended, NewMessage, RoomRef, StoreError};

/// Why a gateway send failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GatewayError {
    /// The connection no longer exists (API Gateway 410).
    #[error("connection gone")]
    Gone,
    /// The gateway is throttling (API Gateway 429) and retries ran out.
    #[error("throttled")]
    Throttled,
    /// Anything else.
    #[error("gateway failure: {0}")]
    Other(String),
}

/// Records a message in a room that another instance of the service owns, and has it delivered
/// there. The edge build runs one service per room (a Durable Object each), so the support
/// desk's notice in the tenant's inbox goes to the inbox's object this way. Deployments whose
/// service sees every room have none.
#[cfg_attr(not(target_arch = "wasm32"), async_trait::async_trait)]
#[cfg_attr(target_arch = "wasm32", async_trait::async_trait(?Send))]
pub trait RoomRelay: MaybeSendSync {
    /// What [`HistoryStore::append`] answers, once the owner has stored and delivered it.
    async fn record(&self, room: &RoomRef, message: NewMessage) -> Result<Appended, StoreError>;
    /// Has the owner of `room` offer its waiting conversation to an available agent
    /// ([`crate::service::ChatService::offer_conversation`]): capacity freed elsewhere.
    async fn offer(&self, room: &RoomRef, now_ms: u64) -> Result<(), StoreError>;
    /// Has the owner of `room` close `user`'s connections there
    /// ([`crate::service::ChatService::eject`]): the visitor was blocked elsewhere.
    async fn eject(&self, room: &RoomRef, user: &str) -> Result<(), StoreError>;
}

/// What [`Gateway::send_each`] did.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Posted {
    /// Frames delivered (queued for the connection, or accepted by the Management API).
    pub delivered: usize,
    /// Connections found gone.
    pub gone: Vec<String>,
}

impl Posted {
    /// Counts one recipient's outcome; a failure other than `Gone` is logged and dropped, as
    /// the recipient resumes from the history after reconnecting.
    pub fn record(&mut self, conn_id: String, result: Result<(), GatewayError>) {
        match result {
            Ok(()) => self.delivered += 1,
            Err(GatewayError::Gone) => self.gone.push(conn_id),
            Err(e) => tracing::warn!(conn = %conn_id, error = %e, "fan-out send failed"),
        }
    }
}

/// Outbound side: deliver frames to connections.
#[cfg_attr(not(target_arch = "wasm32"), async_trait::async_trait)]
#[cfg_attr(target_arch = "wasm32", async_trait::async_trait(?Send))]
pub trait Gateway: MaybeSendSync {
    /// Sends one text frame.
    async fn send(&self, conn_id: &str, frame: &str) -> Result<(), GatewayError>;
    /// Closes the connection with a close code.
    async fn close(&self, conn_id: &str, code: u16, reason: &str) -> Result<(), GatewayError>;
    /// Sends `frame` to each of `conn_ids`, [`Gateway::fanout_concurrency`] at a time. One
    /// failing recipient never stops the others. A gateway whose sends are queue pushes
    /// overrides it to queue one shared copy of the frame for every recipient.
    async fn send_each(&self, conn_ids: Vec<String>, frame: &str) -> Posted {
        let results: Vec<(String, Result<(), GatewayError>)> = futures::stream::iter(conn_ids)
            .map(|conn_id| async move {
                let result = self.send(&conn_id, frame).await;
                (conn_id, result)
            })
            .buffer_unordered(self.fanout_concurrency().max(1))
            .collect()
            .await;
        let mut posted = Posted::default();
        for (conn_id, result) in results {
            posted.record(conn_id, result);
        }
        posted
    }
    /// Sends one broadcast keeps in flight at once through this gateway. A gateway whose
    /// sends are network round trips (API Gateway's Management API) allows more than one whose
    /// sends are queue pushes.
    fn fanout_concurrency(&self) -> usize {
        FANOUT_CONCURRENCY
    }
    /// Whether and how this gateway splits a big broadcast across workers
    /// ([`crate::split`]). Default `None`: it posts every delivery itself (the local server
    /// and the edge, whose sends are queue pushes).
    fn fanout_split(&self) -> Option<SplitPolicy> {
        None
    }
    /// Hands the delivery of `frame` to `conn_ids` (one slice of [`Gateway::fanout_split`]) to
    /// another worker, which posts it and cleans up the recipients it finds gone. `Ok` once the
    /// worker has the slice. The default supports none: it answers `Other`, and the service
    /// posts the slice itself.
    async fn hand_off(&self, conn_ids: &[String], frame: &str) -> Result<(), GatewayError> {
        let _ = (conn_ids, frame);
        Err(GatewayError::Other("hand-off not supported".into()))
    }
}
