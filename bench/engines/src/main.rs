//! Store engine comparison for issue 20 ("durable as fast as memory"): roomcast's append-heavy
//! workload (append with idempotency key, head, last-N range reads, one journaled event per
//! append) against redb in roomcast's layout, fjall, SQLite in WAL mode and an append-only log,
//! each behind the same group-commit writer thread. `bash scripts/engines.sh [--smoke]`.

mod fjall_engine;
mod log_engine;
mod measure;
mod memory_engine;
mod redb_engine;
mod sqlite_engine;
mod store;
mod workload;

use std::path::PathBuf;

use anyhow::Result;
use clap::{Parser, Subcommand, ValueEnum};

#[derive(Parser)]
#[command(
    name = "engine-bench",
    about = "Compare store engines on roomcast's append workload"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Runs every phase on every engine, prints a markdown table and writes JSON.
    Compare(workload::CompareArgs),
    /// Appends until killed, printing acknowledged counts (the recovery phase's child).
    Fill {
        #[arg(long, value_enum)]
        engine: Kind,
        #[arg(long)]
        dir: PathBuf,
        #[arg(long)]
        rooms: usize,
        #[arg(long)]
        producers: usize,
        /// Stops after this many even if nobody kills it.
        #[arg(long)]
        cap: u64,
    },
    /// Reopens a store left by `fill` and reads every room's head (the recovery phase's timing).
    Recover {
        #[arg(long, value_enum)]
        engine: Kind,
        #[arg(long)]
        dir: PathBuf,
        #[arg(long)]
        rooms: usize,
    },
}

/// The engines compared.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    Redb,
    Fjall,
    Sqlite,
    Log,
    /// Nothing durable: the harness's own cost (no recovery phase, no range reads).
    Memory,
}

impl Kind {
    /// Whether what it stores survives closing (every engine but the memory floor).
    pub fn durable(self) -> bool {
        self != Kind::Memory
    }

    /// Opens (or recovers) the engine's store in `dir` behind a writer thread.
    pub fn open(self, dir: &std::path::Path) -> Result<store::Store> {
        let (engine, reads) = self.engine(dir)?;
        store::Store::start(engine, reads)
    }

    /// Opens (or recovers) the engine's store in `dir`, without a writer thread.
    fn engine(
        self,
        dir: &std::path::Path,
    ) -> Result<(Box<dyn store::Engine>, std::sync::Arc<dyn store::Reads>)> {
        std::fs::create_dir_all(dir)?;
        match self {
            Kind::Redb => redb_engine::open(dir),
            Kind::Fjall => fjall_engine::open(dir),
            Kind::Sqlite => sqlite_engine::open(dir),
            Kind::Log => log_engine::open(dir),
            Kind::Memory => Ok(memory_engine::open()),
        }
    }
}

fn main() -> Result<()> {
    match Cli::parse().command {
        Command::Compare(args) => workload::compare(&args),
        Command::Fill {
            engine,
            dir,
            rooms,
            producers,
            cap,
        } => workload::fill(engine, &dir, rooms, producers, cap),
        Command::Recover { engine, dir, rooms } => workload::recover(engine, &dir, rooms),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{Appended, NewMessage};

    const KINDS: [Kind; 5] = [
        Kind::Redb,
        Kind::Fjall,
        Kind::Sqlite,
        Kind::Log,
        Kind::Memory,
    ];

    fn msg(room: &str, id: &str) -> NewMessage {
        NewMessage {
            room: room.into(),
            from: "ann".into(),
            id: id.into(),
            body: format!("body of {id}"),
        }
    }

    fn fresh(
        kind: Kind,
        dir: &tempfile::TempDir,
    ) -> (Box<dyn store::Engine>, std::sync::Arc<dyn store::Reads>) {
        match kind.engine(dir.path()) {
            Ok(opened) => opened,
            Err(e) => panic!("{kind:?}: {e:#}"),
        }
    }

    fn appended(seq: u64, duplicate: bool) -> Appended {
        Appended { seq, duplicate }
    }

    /// Seqs per room from 1 without gaps; a resent key, in the same batch or a later one, gets
    /// its first seq back and stores nothing; reads see the committed values in order.
    #[test]
    fn every_engine_appends_idempotently() -> Result<()> {
        for kind in KINDS {
            let dir = tempfile::tempdir()?;
            let (mut engine, reads) = fresh(kind, &dir);
            let first = engine.commit(&[
                msg("t/a", "1"),
                msg("t/b", "1"),
                msg("t/a", "2"),
                msg("t/a", "1"),
            ])?;
            assert_eq!(
                first,
                [
                    appended(1, false),
                    appended(1, false),
                    appended(2, false),
                    appended(1, true)
                ],
                "{kind:?}"
            );
            let second = engine.commit(&[msg("t/a", "2"), msg("t/a", "3")])?;
            assert_eq!(second, [appended(2, true), appended(3, false)], "{kind:?}");
            assert_eq!(reads.head("t/a")?, 3, "{kind:?}");
            assert_eq!(reads.head("t/c")?, 0, "{kind:?}");
            assert_eq!(reads.find("t/a", "ann", "3")?, Some(3), "{kind:?}");
            assert_eq!(reads.find("t/a", "bob", "3")?, None, "{kind:?}");
            let ids: Vec<serde_json::Value> = reads
                .range("t/a", 2, 3)?
                .iter()
                .map(|v| serde_json::from_slice::<serde_json::Value>(v).map(|m| m["id"].clone()))
                .collect::<Result<_, _>>()?;
            assert_eq!(ids, ["2", "3"], "{kind:?}");
        }
        Ok(())
    }

    /// What was committed is there after reopening, and keys stay known.
    #[test]
    fn every_engine_keeps_commits_across_reopen() -> Result<()> {
        for kind in KINDS.into_iter().filter(|k| k.durable()) {
            let dir = tempfile::tempdir()?;
            {
                let (mut engine, _) = fresh(kind, &dir);
                engine.commit(&[msg("t/a", "1"), msg("t/a", "2")])?;
            }
            let (mut engine, reads) = fresh(kind, &dir);
            assert_eq!(reads.head("t/a")?, 2, "{kind:?}");
            let again = engine.commit(&[msg("t/a", "1"), msg("t/a", "3")])?;
            assert_eq!(again, [appended(1, true), appended(3, false)], "{kind:?}");
        }
        Ok(())
    }

    /// A commit cut short by a crash (a torn record at the log's end) is dropped on open, and
    /// appends continue after the last whole record.
    #[test]
    fn the_log_drops_a_torn_tail() -> Result<()> {
        use std::io::Write;
        let dir = tempfile::tempdir()?;
        {
            let (mut engine, _) = fresh(Kind::Log, &dir);
            engine.commit(&[msg("t/a", "1")])?;
        }
        let segment = dir.path().join("log/00000000.log");
        let whole = std::fs::metadata(&segment)?.len();
        // A header promising 100 bytes, and 3 of them.
        std::fs::OpenOptions::new()
            .append(true)
            .open(&segment)?
            .write_all(&[100, 0, 0, 0, 1, 2, 3, 4, 1, 2, 3])?;
        let (mut engine, reads) = fresh(Kind::Log, &dir);
        assert_eq!(std::fs::metadata(&segment)?.len(), whole);
        assert_eq!(engine.commit(&[msg("t/a", "2")])?, [appended(2, false)]);
        assert_eq!(reads.range("t/a", 1, 2)?.len(), 2);
        Ok(())
    }
}
