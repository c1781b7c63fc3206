//! Pauses between retries, with full jitter so that writers that collided spread out instead of
//! colliding again.

use std::time::Duration;

use rand::Rng;

/// Sleeps before retry number `attempt + 1` of an optimistic write or of a batch's unprocessed
/// items: up to 10 ms, doubling, capped at 500 ms.
pub(super) async fn backoff(attempt: u32) {
    let cap = Duration::from_millis(10u64 << attempt.min(6)).min(Duration::from_millis(500));
    sleep_up_to(cap).await;
}

/// Sleeps a random time up to `cap` ("full jitter").
pub(super) async fn sleep_up_to(cap: Duration) {
    let cap_ms = u64::try_from(cap.as_millis()).unwrap_or(u64::MAX);
    // The generator is not Send: draw before awaiting.
    let ms = rand::rng().random_range(0..=cap_ms);
    tokio::time::sleep(Duration::from_millis(ms)).await;
}
