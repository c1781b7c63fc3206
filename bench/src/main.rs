//! `roomcast-bench`: the load generator (`run`), the report renderer (`report`), the soak
//! run (`soak`, issue 15; `scripts/soak.sh` starts the server and runs it) and the write-loop
//! floor (`floor`, issue 20).
//!
//! ```sh
//! roomcast-bench run --protocol v1 --url ws://127.0.0.1:3001/ --jwt-secret S \
//!     --connections 10000 --rooms 1000 --rates 1000 --step-secs 20 --server-pid PID \
//!     --label s1-seed-roomcast --out bench/results/s1-seed-roomcast-embedded.json
//! roomcast-bench report --results bench/results --charts docs/img
//! roomcast-bench floor --stacks tcp,ws --batches 1,64 --connections 1000 --secs 5
//! ROOMCAST_JWT_SECRET=S roomcast-bench soak --url ws://127.0.0.1:3001/ --server-pid PID \
//!     --minutes 60 --out-dir /tmp/soak
//! ```

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use roomcast_bench::floor::{self, FloorConfig};
use roomcast_bench::load::{self, LoadConfig, Protocol};
use roomcast_bench::report::Results;
use roomcast_bench::soak::{self, SoakConfig};
use roomcast_bench::webhooks::WebhooksConfig;

/// Load generator for roomcast, its raw WebSocket limit and a Socket.IO peer.
#[derive(Debug, Parser)]
#[command(name = "roomcast-bench", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run load against one server and write the results as JSON.
    Run(RunArgs),
    /// Print markdown tables (and write SVG charts) from a results directory.
    Report(ReportArgs),
    /// Soak a running server: mixed traffic with churn for a bounded time, sampling its RSS
    /// and fds; exits with status 1 when the verdict fails.
    Soak(Box<SoakArgs>),
    /// Webhook delivery latency (store → endpoint) and events per second one endpoint
    /// receives, against a running roomcast server that delivers to loopback endpoints.
    Webhooks(WebhooksArgs),
    /// The floor of a delivery on this machine: writer CPU per frame of a minimal write loop
    /// over loopback (no server logic), per stack and batch size.
    Floor(FloorArgs),
}

#[derive(Debug, Args)]
struct FloorArgs {
    /// Write paths to measure (comma-separated).
    #[arg(long, value_enum, value_delimiter = ',', default_value = "tcp,ws")]
    stacks: Vec<floor::Stack>,
    /// Frames written to a connection before moving to the next (comma-separated); 1 is a
    /// fan-out, one syscall per frame.
    #[arg(long, value_delimiter = ',', default_value = "1,64")]
    batches: Vec<usize>,
    /// Loopback connections.
    #[arg(long, default_value_t = 1000)]
    connections: usize,
    /// Payload bytes per frame (a chat delivery is about 200).
    #[arg(long, default_value_t = 200)]
    frame_bytes: usize,
    /// Writing time per measurement, seconds.
    #[arg(long, default_value_t = 5.0)]
    secs: f64,
    /// Also write the results as JSON here.
    #[arg(long)]
    out: Option<PathBuf>,
}

#[derive(Debug, Args)]
struct WebhooksArgs {
    /// Server URL, loopback only.
    #[arg(long, default_value = "ws://127.0.0.1:3001/")]
    url: String,
    /// HS256 secret of the server, at least 32 bytes.
    #[arg(long, env = "ROOMCAST_JWT_SECRET", hide_env_values = true)]
    jwt_secret: String,
    /// Tenant of the run.
    #[arg(long, default_value = "bench")]
    tenant: String,
    /// Rooms, one sending connection each.
    #[arg(long, default_value_t = 10)]
    rooms: usize,
    /// Messages of the paced (latency) phase.
    #[arg(long, default_value_t = 2000)]
    messages: usize,
    /// Messages per second in the paced phase.
    #[arg(long, default_value_t = 200.0)]
    rate: f64,
    /// Messages of the throughput phase.
    #[arg(long, default_value_t = 5000)]
    burst: usize,
    /// Also write the report as JSON here.
    #[arg(long)]
    out: Option<std::path::PathBuf>,
}

#[derive(Debug, Args)]
struct RunArgs {
    /// Protocol: `v1` (roomcast, raw-broadcast) or `socket-io`.
    #[arg(long, value_enum, default_value = "v1")]
    protocol: Protocol,
    /// Server URL, loopback only: ws://127.0.0.1:3001/ (Socket.IO: the path defaults to
    /// /socket.io/?EIO=4&transport=websocket). `{room}` in the path becomes each connection's
    /// room, for servers that bind a socket to a room by URL (the edge build:
    /// ws://127.0.0.1:8787/rooms/{room}/ws).
    #[arg(long, default_value = "ws://127.0.0.1:3001/")]
    url: String,
    /// Connections.
    #[arg(long, default_value_t = 100)]
    connections: usize,
    /// Rooms (connection i joins room i % rooms).
    #[arg(long, default_value_t = 10)]
    rooms: usize,
    /// Connect only, do not join (connection storm).
    #[arg(long)]
    no_join: bool,
    /// Messages/s into the server, one phase per value (comma-separated); none: idle.
    #[arg(long, value_delimiter = ',')]
    rates: Vec<f64>,
    /// Sending time per phase, seconds.
    #[arg(long, default_value_t = 10.0)]
    step_secs: f64,
    /// Longest drain after each phase, seconds.
    #[arg(long, default_value_t = 3.0)]
    drain_secs: f64,
    /// A phase fails (and stepping stops) when its delivery p99 is above this, ms.
    #[arg(long, default_value_t = 50.0)]
    stop_p99_ms: f64,
    /// After the first failed phase, up to this many phases at the midpoint between the highest
    /// passed and the lowest failed rate (rounded to 250/s), while they are over 5 % apart.
    #[arg(long, default_value_t = 0)]
    refine_steps: u32,
    /// Message body size, bytes.
    #[arg(long, default_value_t = 64)]
    body_bytes: usize,
    /// Loopback source addresses 127.0.0.1..=127.0.0.N.
    #[arg(long, default_value_t = 8)]
    sources: u8,
    /// Connection attempts in flight.
    #[arg(long, default_value_t = 256)]
    connect_concurrency: usize,
    /// Longest wait for every connection, seconds.
    #[arg(long, default_value_t = 120.0)]
    connect_timeout_secs: f64,
    /// Hold the connections this long at the end (idle capacity), seconds.
    #[arg(long, default_value_t = 0.0)]
    hold_secs: f64,
    /// HS256 secret to sign tokens with (each connection is its own user).
    #[arg(long, env = "ROOMCAST_JWT_SECRET", hide_env_values = true)]
    jwt_secret: Option<String>,
    /// Tenant of the tokens.
    #[arg(long, default_value = "bench")]
    tenant: String,
    /// The server's pid (CPU and RSS from /proc); several, comma-separated, are added up as
    /// one server (wrangler dev's workerd processes).
    #[arg(long, value_delimiter = ',')]
    server_pid: Vec<u32>,
    /// Name of the run in the results.
    #[arg(long, default_value = "run")]
    label: String,
    /// Write the results here (JSON); stdout otherwise.
    #[arg(long)]
    out: Option<PathBuf>,
    /// Exit with status 1 when anything was lost, duplicated, out of order, unacknowledged or
    /// refused.
    #[arg(long)]
    fail_on_loss: bool,
}

#[derive(Debug, Args)]
struct SoakArgs {
    /// Server URL, loopback only.
    #[arg(long, default_value = "ws://127.0.0.1:3001/")]
    url: String,
    /// The server's pid (RSS, fds, CPU from /proc).
    #[arg(long)]
    server_pid: u32,
    /// HS256 secret of the server, at least 32 bytes.
    #[arg(long, env = "ROOMCAST_JWT_SECRET", hide_env_values = true)]
    jwt_secret: String,
    /// Traffic time, minutes.
    #[arg(long, default_value_t = 60.0)]
    minutes: f64,
    /// Warm-up, minutes (at most a quarter of the run): the baseline is taken at its end.
    #[arg(long, default_value_t = 5.0)]
    warmup_minutes: f64,
    /// Time between samples, seconds.
    #[arg(long, default_value_t = 30.0)]
    sample_secs: f64,
    /// Client slots (one connection each at a time).
    #[arg(long, default_value_t = 400)]
    connections: usize,
    /// Rooms.
    #[arg(long, default_value_t = 40)]
    rooms: usize,
    /// Share of each room's members that never disconnect.
    #[arg(long, default_value_t = 0.5)]
    stable_share: f64,
    /// Messages per second, all rooms together.
    #[arg(long, default_value_t = 150.0)]
    rate: f64,
    /// Disconnects (each followed by a reconnect) per second.
    #[arg(long, default_value_t = 2.0)]
    churn_per_sec: f64,
    /// Share of reconnects that come back as a new user.
    #[arg(long, default_value_t = 0.25)]
    new_user_share: f64,
    /// Shortest time away after a disconnect, ms.
    #[arg(long, default_value_t = 500)]
    offline_min_ms: u64,
    /// Longest time away after a disconnect, ms.
    #[arg(long, default_value_t = 5000)]
    offline_max_ms: u64,
    /// `typing` frames per second.
    #[arg(long, default_value_t = 20.0)]
    typing_per_sec: f64,
    /// `presence` changes per second.
    #[arg(long, default_value_t = 2.0)]
    presence_per_sec: f64,
    /// `read` cursor moves per second.
    #[arg(long, default_value_t = 5.0)]
    read_per_sec: f64,
    /// `history` requests per second.
    #[arg(long, default_value_t = 2.0)]
    history_per_sec: f64,
    /// HTTP `GET /rooms/{room}/messages` requests per second (service tokens).
    #[arg(long, default_value_t = 1.0)]
    http_per_sec: f64,
    /// Message body size, bytes.
    #[arg(long, default_value_t = 64)]
    body_bytes: usize,
    /// Loopback source addresses 127.0.0.1..=127.0.0.N.
    #[arg(long, default_value_t = 4)]
    sources: u8,
    /// Tenant of the tokens.
    #[arg(long, default_value = "soak")]
    tenant: String,
    /// The server's data directory (its size is sampled).
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Where timeseries.csv and summary.json go.
    #[arg(long)]
    out_dir: PathBuf,
    /// Longest wait after the traffic for every ack and delivery, seconds.
    #[arg(long, default_value_t = 60.0)]
    drain_secs: f64,
    /// Fail when RSS grows by more than this after the warm-up, percent.
    #[arg(long, default_value_t = 20.0)]
    max_rss_growth_pct: f64,
    /// Memory the store may keep for each message acknowledged after the warm-up, bytes, on
    /// top of the growth bound: the embedded store's message log indexes every stored message
    /// in memory (about 50 bytes each at rest, up to twice that while its vectors and tables
    /// grow by doubling: docs/benchmarks.md "The switch"). 0 for a store that keeps nothing
    /// per message in memory.
    #[arg(long, default_value_t = 96)]
    index_bytes_per_message: u64,
    /// Fds the end may have above the warm-up's end (and the idle end above the idle start).
    #[arg(long, default_value_t = 0)]
    fd_slack: u64,
    /// Seed of the generator's random choices.
    #[arg(long, default_value_t = 1)]
    seed: u64,
}

#[derive(Debug, Args)]
struct ReportArgs {
    /// Directory of `<scenario>-<server>.json` files.
    #[arg(long, default_value = "bench/results")]
    results: PathBuf,
    /// Also write SVG charts into this directory.
    #[arg(long)]
    charts: Option<PathBuf>,
}

/// `ws://host:port/path` → (address, path).
fn parse_url(url: &str, protocol: Protocol) -> anyhow::Result<(SocketAddr, String)> {
    let rest = url
        .strip_prefix("ws://")
        .context("the URL must start with ws://")?;
    let (host, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    let addr: SocketAddr = host
        .parse()
        .with_context(|| format!("`{host}` is not an IP:port"))?;
    anyhow::ensure!(addr.ip().is_loopback(), "only loopback targets are allowed");
    let path = match (protocol, path) {
        (Protocol::SocketIo, "" | "/") => "/socket.io/?EIO=4&transport=websocket".to_owned(),
        (_, "") => "/".to_owned(),
        (_, p) => p.to_owned(),
    };
    Ok((addr, path))
}

fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::Run(args) => run(args),
        Command::Soak(args) => soak(*args),
        Command::Webhooks(args) => {
            let (server, _) = parse_url(&args.url, Protocol::V1)?;
            let report = roomcast_bench::webhooks::run(WebhooksConfig {
                server,
                jwt_secret: args.jwt_secret,
                tenant: args.tenant,
                rooms: args.rooms.max(1),
                messages: args.messages,
                rate: args.rate,
                burst: args.burst,
            })?;
            print!("{}", report.markdown());
            if let Some(out) = args.out {
                std::fs::write(&out, serde_json::to_string_pretty(&report)?)
                    .with_context(|| format!("writing {}", out.display()))?;
            }
            Ok(())
        }
        Command::Floor(args) => {
            let mut results = Vec::new();
            for &stack in &args.stacks {
                for &batch in &args.batches {
                    let result = floor::measure(FloorConfig {
                        stack,
                        batch,
                        connections: args.connections,
                        frame_bytes: args.frame_bytes,
                        secs: args.secs,
                    })?;
                    eprintln!(
                        "{stack:?} batch {batch}: {:.2} µs per frame ({:.0} frames/s, writer {:.0} %)",
                        result.writer_us_per_frame,
                        result.frames_per_sec,
                        result.writer_cpu * 100.0
                    );
                    results.push(result);
                }
            }
            print!("{}", floor::markdown(&results));
            if let Some(out) = args.out {
                std::fs::write(&out, serde_json::to_string_pretty(&results)? + "\n")
                    .with_context(|| format!("writing {}", out.display()))?;
            }
            Ok(())
        }
        Command::Report(args) => {
            let results = Results::load(&args.results)
                .with_context(|| format!("reading {}", args.results.display()))?;
            println!("{}", results.markdown());
            if let Some(dir) = args.charts {
                for file in results.charts(&dir)? {
                    eprintln!("wrote {}", dir.join(file).display());
                }
            }
            Ok(())
        }
    }
}

fn soak(args: SoakArgs) -> anyhow::Result<()> {
    let (server, _) = parse_url(&args.url, Protocol::V1)?;
    anyhow::ensure!(args.minutes > 0.0, "--minutes must be positive");
    let duration_secs = args.minutes * 60.0;
    let config = SoakConfig {
        server,
        duration_secs,
        warmup_secs: (args.warmup_minutes * 60.0).min(duration_secs / 4.0),
        sample_secs: args.sample_secs.max(1.0),
        connections: args.connections,
        rooms: args.rooms,
        stable_share: args.stable_share,
        message_rate: args.rate,
        churn_per_sec: args.churn_per_sec,
        new_user_share: args.new_user_share,
        offline_min_ms: args.offline_min_ms,
        offline_max_ms: args.offline_max_ms.max(args.offline_min_ms),
        typing_per_sec: args.typing_per_sec,
        presence_per_sec: args.presence_per_sec,
        read_per_sec: args.read_per_sec,
        history_per_sec: args.history_per_sec,
        http_per_sec: args.http_per_sec,
        body_bytes: args.body_bytes,
        sources: args.sources,
        jwt_secret: args.jwt_secret,
        tenant: args.tenant,
        server_pid: args.server_pid,
        data_dir: args.data_dir,
        out_dir: args.out_dir,
        drain_secs: args.drain_secs,
        max_rss_growth: args.max_rss_growth_pct / 100.0,
        index_bytes_per_message: args.index_bytes_per_message,
        fd_slack: args.fd_slack,
        seed: args.seed,
    };
    let out_dir = config.out_dir.clone();
    let report = soak::run(config)?;
    let markdown = report.markdown();
    std::fs::write(out_dir.join("summary.md"), &markdown)
        .with_context(|| format!("writing {}", out_dir.join("summary.md").display()))?;
    println!("{markdown}");
    if !report.passed {
        std::process::exit(1);
    }
    Ok(())
}

fn run(args: RunArgs) -> anyhow::Result<()> {
    let (server, path) = parse_url(&args.url, args.protocol)?;
    let config = LoadConfig {
        protocol: args.protocol,
        server,
        path,
        connections: args.connections,
        rooms: args.rooms,
        join: !args.no_join,
        rates: args.rates,
        step_secs: args.step_secs,
        drain_secs: args.drain_secs,
        stop_p99_ms: args.stop_p99_ms,
        refine_steps: args.refine_steps,
        body_bytes: args.body_bytes,
        sources: args.sources,
        connect_concurrency: args.connect_concurrency,
        connect_timeout_secs: args.connect_timeout_secs,
        hold_secs: args.hold_secs,
        jwt_secret: args.jwt_secret,
        tenant: args.tenant,
        server_pids: args.server_pid,
    };
    let report = load::run(config, args.label)?;
    let json = serde_json::to_string_pretty(&report)?;
    match &args.out {
        Some(path) => {
            if let Some(dir) = path.parent() {
                std::fs::create_dir_all(dir)?;
            }
            std::fs::write(path, json + "\n")
                .with_context(|| format!("writing {}", path.display()))?;
        }
        None => println!("{json}"),
    }
    if report.generator_bound {
        eprintln!(
            "[{}] generator-bound: the generator used ≥ 90 % of its core",
            report.label
        );
    }
    if args.fail_on_loss && report.has_failures() {
        eprintln!(
            "[{}] FAILED: connect failures {}, errors {:?}, phases {:?}",
            report.label,
            report.connect.failed,
            report.errors,
            report
                .phases
                .iter()
                .map(|p| (
                    p.summary.lost,
                    p.summary.duplicates,
                    p.summary.sent - p.summary.acked
                ))
                .collect::<Vec<_>>()
        );
        std::process::exit(1);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_must_be_loopback_and_get_a_path() {
        let (addr, path) = parse_url("ws://127.0.0.1:3002", Protocol::SocketIo).expect("valid");
        assert_eq!(addr.port(), 3002);
        assert_eq!(path, "/socket.io/?EIO=4&transport=websocket");
        let (_, path) = parse_url("ws://127.0.0.1:3001/", Protocol::V1).expect("valid");
        assert_eq!(path, "/");
        let (_, path) =
            parse_url("ws://127.0.0.1:8787/rooms/{room}/ws", Protocol::V1).expect("valid");
        assert_eq!(path, "/rooms/{room}/ws");
        assert!(parse_url("ws://10.0.0.1:3001/", Protocol::V1).is_err());
        assert!(parse_url("http://127.0.0.1:3001/", Protocol::V1).is_err());
    }
}
