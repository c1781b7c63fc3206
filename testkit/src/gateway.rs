//! [`RecordingGateway`]: a [`Gateway`] that records what the service sends, for tests of the
//! service without sockets.

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;

use roomcast_core::gateway::{Gateway, GatewayError};

/// A [`Gateway`] that records frames and closes, and can play a vanished connection (410).
#[derive(Default)]
pub struct RecordingGateway {
    frames: Mutex<HashMap<String, Vec<String>>>,
    closed: Mutex<HashMap<String, u16>>,
    gone: Mutex<HashSet<String>>,
}

impl RecordingGateway {
    /// An empty gateway.
    pub fn new() -> Self {
        Self::default()
    }

    /// Takes the frames sent to `conn_id` so far, as sent.
    pub fn take_raw(&self, conn_id: &str) -> Vec<String> {
        self.frames
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .remove(conn_id)
            .unwrap_or_default()
    }

    /// Takes the frames sent to `conn_id` so far, parsed.
    pub fn take(&self, conn_id: &str) -> Vec<serde_json::Value> {
        self.take_raw(conn_id)
            .iter()
            .map(|f| serde_json::from_str(f).expect("the service sends JSON"))
            .collect()
    }

    /// The close code sent to `conn_id`, if any.
    pub fn closed(&self, conn_id: &str) -> Option<u16> {
        self.closed
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(conn_id)
            .copied()
    }

    /// From now on sends to `conn_id` fail with [`GatewayError::Gone`].
    pub fn vanish(&self, conn_id: &str) {
        self.gone
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(conn_id.to_owned());
    }
}

#[cfg_attr(not(target_arch = "wasm32"), async_trait::async_trait)]
#[cfg_attr(target_arch = "wasm32", async_trait::async_trait(?Send))]
impl Gateway for RecordingGateway {
    async fn send(&self, conn_id: &str, frame: &str) -> Result<(), GatewayError> {
        if self
            .gone
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .contains(conn_id)
        {
            return Err(GatewayError::Gone);
        }
        let mut frames = self
            .frames
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        frames
            .entry(conn_id.to_owned())
            .or_default()
            .push(frame.to_owned());
        Ok(())
    }

    async fn close(&self, conn_id: &str, code: u16, _reason: &str) -> Result<(), GatewayError> {
        self.closed
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(conn_id.to_owned(), code);
        Ok(())
    }
}
