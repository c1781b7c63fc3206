//! What a restart costs with the message log (issue 20, goal 1): fills an embedded store with
//! MESSAGES messages (about 300 bytes of view each, in 1,000 rooms, 256 to a batch as a busy
//! writer takes them), closes it, then opens it again and reports how long the open took (the
//! segments are scanned to rebuild the index) and how much the index holds in memory (resident
//! memory after the open, less before). Then it checks the history is whole: every room's head,
//! and one message in a hundred read back and, resent, found as a duplicate.
//!
//! ```text
//! cargo run --release -p roomcast-local --example log_recovery [-- MESSAGES]
//! ```
//!
//! The page cache is warm (the files were just written): a cold start after a reboot also reads
//! them from the disk.

use std::time::Instant;

use anyhow::{Context, ensure};
use roomcast_core::store::{HistoryStore, NewMessage, RoomRef};
use roomcast_local::embedded::EmbeddedHistory;

const ROOMS: u64 = 1_000;
const BATCH: u64 = 256;

fn message(n: u64) -> (RoomRef, NewMessage) {
    let room = RoomRef::new("bench", format!("room-{}", n % ROOMS));
    let body = format!("message {n}: {}", "lorem ipsum dolor sit amet ".repeat(8));
    let msg = roomcast_testkit::conformance::new_message(
        &format!("m-{n}"),
        &format!("user-{}", n % 97),
        &body,
        1_700_000_000_000 + n,
    );
    (room, msg)
}

/// Resident memory of this process, bytes (from `/proc/self/statm`).
fn resident() -> anyhow::Result<u64> {
    let statm = std::fs::read_to_string("/proc/self/statm")?;
    let pages: u64 = statm
        .split_whitespace()
        .nth(1)
        .context("statm has no resident field")?
        .parse()?;
    Ok(pages * 4096)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let total: u64 = std::env::args()
        .nth(1)
        .map(|a| a.parse())
        .transpose()?
        .unwrap_or(1_000_000);
    let dir = tempfile::tempdir()?;
    let filled = Instant::now();
    {
        let store = EmbeddedHistory::open(dir.path())?;
        for start in (0..total).step_by(BATCH as usize) {
            let batch = (start..(start + BATCH).min(total)).map(message).collect();
            for result in store.append_all(batch).await {
                result?;
            }
        }
    }
    let fill_secs = filled.elapsed().as_secs_f64();
    let bytes: u64 = std::fs::read_dir(dir.path().join("history"))?
        .map(|e| Ok(e?.metadata()?.len()))
        .sum::<anyhow::Result<u64>>()?;

    let before = resident()?;
    let opened = Instant::now();
    let store = EmbeddedHistory::open(dir.path())?;
    let open_secs = opened.elapsed().as_secs_f64();
    let index = resident()?.saturating_sub(before);

    for r in 0..ROOMS {
        let room = RoomRef::new("bench", format!("room-{r}"));
        let expected = total / ROOMS + u64::from(r < total % ROOMS);
        ensure!(
            store.head(&room).await? == expected,
            "room-{r} lost messages"
        );
    }
    for n in (0..total).step_by(100) {
        let (room, msg) = message(n);
        let again = store.append(&room, msg.clone()).await?;
        ensure!(again.duplicate, "message {n} was not found by its key");
        ensure!(
            again.message.body.as_deref() == Some(msg.body.as_str()),
            "message {n} changed"
        );
    }
    println!(
        "{total} messages, {:.0} MB of log, filled in {fill_secs:.1} s ({:.0}/s); \
         reopened in {open_secs:.2} s; index {:.0} MB ({:.0} B a message); all found",
        bytes as f64 / 1e6,
        total as f64 / fill_secs,
        index as f64 / 1e6,
        index as f64 / total as f64,
    );
    Ok(())
}
