//! Store engine comparison for issue 20 ("durable as fast as memory"): roomcast's append-heavy
//! workload (append with idempotency key, head, last-N range reads, one journaled event per
//! append) against redb in roomcast's layout, fjall, SQLite in WAL mode and an append-only log,
//! each behind the same group-commit writer thread. `bash scripts/engines.sh [--smoke]`.

mod fjall_engine;
mod log_engine;
mod measure;
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
}

impl Kind {
    /// Opens (or recovers) the engine's store in `dir` behind a writer thread.
    pub fn open(self, dir: &std::path::Path) -> Result<store::Store> {
        std::fs::create_dir_all(dir)?;
        let (engine, reads) = match self {
            Kind::Redb => redb_engine::open(dir)?,
            Kind::Fjall => fjall_engine::open(dir)?,
            Kind::Sqlite => sqlite_engine::open(dir)?,
            Kind::Log => log_engine::open(dir)?,
        };
        store::Store::start(engine, reads)
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
