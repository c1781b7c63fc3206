//! The service's own deadlines (a big room's coalesced occupancy announcement, the end of a
//! held message's wait for the one before it,
//! [`ChatService::poll_timeout`](roomcast_core::ChatService::poll_timeout)): one task for the
//! whole server sleeps until the earliest and calls `handle_timeout`, as each socket's task does
//! for its connection's lifecycle deadlines.

use std::sync::{Arc, Weak};
use std::time::Duration;

use roomcast_core::limits::OCCUPANCY_INTERVAL_MS;

use crate::app::{App, now_ms};

/// How long the task sleeps while no deadline is pending. Deadlines are armed while frames and
/// departures are handled, which this task does not see: it looks again this often, so an
/// announcement, or a message whose predecessor never went out, is at most this late (never
/// early; an announcement is still one per interval).
const IDLE_LOOK_MS: u64 = OCCUPANCY_INTERVAL_MS / 4;

/// Starts the task; it ends with the app.
pub fn start(app: &Arc<App>) {
    // Weak: the task must not keep the app (and a scratch directory) alive at shutdown.
    let app = Arc::downgrade(app);
    tokio::spawn(async move {
        while let Some(wait) = next_wait(&app) {
            tokio::time::sleep(wait).await;
            let Some(app) = app.upgrade() else { return };
            app.service.handle_timeout(now_ms()).await;
        }
    });
}

/// The time until the service's next deadline (or [`IDLE_LOOK_MS`] without one); `None` once
/// the app is gone.
fn next_wait(app: &Weak<App>) -> Option<Duration> {
    let app = app.upgrade()?;
    let now = now_ms();
    let wait_ms = app
        .service
        .poll_timeout()
        .map_or(IDLE_LOOK_MS, |at| at.saturating_sub(now).min(IDLE_LOOK_MS));
    Some(Duration::from_millis(wait_ms))
}
