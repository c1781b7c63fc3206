//! The phases of one comparison run, and the recovery phase's child.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use hdrhistogram::Histogram;
use serde::Serialize;

use crate::Kind;
use crate::measure::{Sample, disk_usage};
use crate::store::{NewMessage, Store};

#[derive(clap::Args)]
pub struct CompareArgs {
    /// Tiny counts (CI): still checks that no acknowledged message is lost, on every engine.
    #[arg(long)]
    smoke: bool,
    /// Engines to run, in order.
    #[arg(
        long,
        value_enum,
        value_delimiter = ',',
        default_value = "redb,fjall,sqlite,log,memory"
    )]
    engines: Vec<Kind>,
    /// Where the stores are created (emptied per engine).
    #[arg(long)]
    data_dir: PathBuf,
    /// JSON results.
    #[arg(long)]
    out: PathBuf,
}

/// The sizes of one run.
#[derive(Clone, Copy, Serialize)]
struct Plan {
    rooms: usize,
    producers: usize,
    saturated_messages: u64,
    rates: [u64; 2],
    rate_secs: u64,
    range_rooms: usize,
    range_last: u64,
    recovery_messages: u64,
}

impl Plan {
    fn of(smoke: bool) -> Self {
        if smoke {
            Plan {
                rooms: 100,
                producers: 16,
                saturated_messages: 4_000,
                rates: [2_500, 5_000],
                rate_secs: 1,
                range_rooms: 100,
                range_last: 50,
                recovery_messages: 10_000,
            }
        } else {
            Plan {
                rooms: 1_000,
                producers: 64,
                saturated_messages: 200_000,
                rates: [2_500, 5_000],
                rate_secs: 10,
                range_rooms: 1_000,
                range_last: 50,
                recovery_messages: 1_000_000,
            }
        }
    }
}

/// Latency and cost of a batch of appends.
#[derive(Serialize)]
struct Appends {
    messages: u64,
    secs: f64,
    per_sec: f64,
    p50_ms: f64,
    p99_ms: f64,
    max_ms: f64,
    cpu_us_per_message: f64,
    written_bytes_per_message: f64,
    messages_per_commit: f64,
}

#[derive(Serialize)]
struct RangeReads {
    rooms: usize,
    last: u64,
    secs: f64,
    p99_ms: f64,
}

#[derive(Serialize)]
struct Recovery {
    acked: u64,
    fill_per_sec: f64,
    killed_mid_stream: bool,
    recovery_secs: f64,
    recovery_peak_rss_mb: f64,
    stored: u64,
    lost_acked: u64,
    idempotent_resends_checked: u64,
    disk_bytes: u64,
}

#[derive(Serialize)]
struct EngineResult {
    engine: Kind,
    saturated: Appends,
    open_loop: Vec<Appends>,
    range_reads: Option<RangeReads>,
    disk_bytes_per_message: f64,
    recovery: Option<Recovery>,
}

#[derive(Serialize)]
struct Report {
    plan: Plan,
    date: String,
    load_average: String,
    engines: Vec<EngineResult>,
}

/// The deterministic message `k` of producer `p`: any acknowledged one can be looked up again.
fn message(rooms: usize, p: usize, k: u64) -> NewMessage {
    const BODY: &str = "The quick brown fox jumps over the lazy dog while the room keeps chatting \
        about the release, the weather, lunch plans and everything else people write in a \
        support channel.";
    NewMessage {
        room: format!("bench/room-{}", (p as u64 + k * 64) % rooms as u64),
        from: format!("user-{p}"),
        id: format!("p{p}-m{k}"),
        body: BODY.to_owned(),
    }
}

fn histogram() -> Result<Histogram<u64>> {
    Ok(Histogram::new_with_bounds(1, 600_000_000, 3)?)
}

fn ms(h: &Histogram<u64>, q: f64) -> f64 {
    h.value_at_quantile(q) as f64 / 1000.0
}

pub fn compare(args: &CompareArgs) -> Result<()> {
    let plan = Plan::of(args.smoke);
    let mut results = Vec::new();
    for &kind in &args.engines {
        eprintln!("== {kind:?}");
        let dir = args.data_dir.join(format!("{kind:?}").to_lowercase());
        let _ = std::fs::remove_dir_all(&dir);
        let result = run_engine(kind, &dir, plan);
        std::fs::remove_dir_all(&dir)
            .with_context(|| format!("cannot remove {}", dir.display()))?;
        results.push(result?);
    }
    let report = Report {
        plan,
        date: String::from_utf8_lossy(&Command::new("date").arg("-u").output()?.stdout)
            .trim()
            .to_owned(),
        load_average: std::fs::read_to_string("/proc/loadavg")?.trim().to_owned(),
        engines: results,
    };
    if let Some(parent) = args.out.parent() {
        std::fs::create_dir_all(parent)?;
    }
    std::fs::write(&args.out, serde_json::to_vec_pretty(&report)?)?;
    print_table(&report);
    let lost: u64 = report
        .engines
        .iter()
        .filter_map(|e| e.recovery.as_ref())
        .map(|r| r.lost_acked)
        .sum();
    if lost > 0 {
        bail!("{lost} acknowledged messages were lost (see the table)");
    }
    Ok(())
}

fn run_engine(kind: Kind, dir: &Path, plan: Plan) -> Result<EngineResult> {
    let history = dir.join("history");
    let saturated = saturated(kind, &history, plan)?;
    eprintln!(
        "   saturated: {:.0} msg/s, p99 {:.2} ms",
        saturated.per_sec, saturated.p99_ms
    );
    // The memory floor starts empty at every open: nothing to read back or recover.
    let range_reads = match kind.durable() {
        true => Some(range_reads(kind, &history, plan)?),
        false => None,
    };
    let mut open_loop = Vec::new();
    for (i, &rate) in plan.rates.iter().enumerate() {
        let appends = open_loop_at(kind, &history, plan, rate, i)?;
        eprintln!(
            "   {rate}/s: p50 {:.2} ms, p99 {:.2} ms",
            appends.p50_ms, appends.p99_ms
        );
        open_loop.push(appends);
    }
    let appended = saturated.messages + open_loop.iter().map(|a| a.messages).sum::<u64>();
    let disk_bytes_per_message = disk_usage(&history)? as f64 / appended as f64;
    let recovery = match kind.durable() {
        true => Some(recovery(kind, &dir.join("recovery"), plan)?),
        false => None,
    };
    if let Some(r) = &recovery {
        eprintln!(
            "   recovery: {:.2} s for {} acked, {} lost",
            r.recovery_secs, r.acked, r.lost_acked
        );
    }
    Ok(EngineResult {
        engine: kind,
        saturated,
        open_loop,
        range_reads,
        disk_bytes_per_message,
        recovery,
    })
}

/// Times appends from just after the store is open to just after it is closed.
fn measured(
    kind: Kind,
    dir: &Path,
    messages: u64,
    run: impl FnOnce(&Store) -> Result<Histogram<u64>>,
) -> Result<Appends> {
    let store = kind.open(dir)?;
    let start = Sample::now()?;
    let latencies = run(&store)?;
    let commits = store.commits();
    drop(store);
    let cost = Sample::now()?.since(start);
    let n = messages as f64;
    Ok(Appends {
        messages,
        secs: cost.secs,
        per_sec: n / cost.secs,
        p50_ms: ms(&latencies, 0.5),
        p99_ms: ms(&latencies, 0.99),
        max_ms: latencies.max() as f64 / 1000.0,
        cpu_us_per_message: cost.cpu_us as f64 / n,
        written_bytes_per_message: cost.write_bytes as f64 / n,
        messages_per_commit: n / commits.max(1) as f64,
    })
}

/// (a) Closed loop: every producer appends its share, one at a time, as fast as answered.
fn saturated(kind: Kind, dir: &Path, plan: Plan) -> Result<Appends> {
    let per_producer = plan.saturated_messages / plan.producers as u64;
    let messages = per_producer * plan.producers as u64;
    measured(kind, dir, messages, |store| {
        let latencies = std::thread::scope(|scope| {
            let producers: Vec<_> = (0..plan.producers)
                .map(|p| {
                    scope.spawn(move || -> Result<Histogram<u64>> {
                        let mut h = histogram()?;
                        for k in 0..per_producer {
                            let sent = Instant::now();
                            store.append(message(plan.rooms, p, k))?;
                            h.record(sent.elapsed().as_micros() as u64)?;
                        }
                        Ok(h)
                    })
                })
                .collect();
            let mut all = histogram()?;
            for producer in producers {
                all.add(
                    producer
                        .join()
                        .map_err(|_| anyhow!("producer panicked"))??,
                )?;
            }
            Ok::<_, anyhow::Error>(all)
        })?;
        Ok(latencies)
    })
}

/// (b) Open loop at `rate`: appends are sent on schedule whatever the answers do; latency counts
/// from the scheduled moment, so a stalled store is not hidden by a waiting sender.
fn open_loop_at(kind: Kind, dir: &Path, plan: Plan, rate: u64, run: usize) -> Result<Appends> {
    let messages = rate * plan.rate_secs;
    measured(kind, dir, messages, |store| {
        let latencies = Arc::new(Mutex::new(histogram()?));
        let answered = Arc::new(AtomicU64::new(0));
        let failed = Arc::new(AtomicU64::new(0));
        let start = Instant::now();
        for i in 0..messages {
            let due = start + Duration::from_secs_f64(i as f64 / rate as f64);
            if let Some(wait) = due.checked_duration_since(Instant::now()) {
                std::thread::sleep(wait);
            }
            // Producer numbers past the closed loop's keep the keys apart.
            let msg = message(plan.rooms, plan.producers + run, i);
            let (latencies, answered, failed) =
                (latencies.clone(), answered.clone(), failed.clone());
            store.submit(
                msg,
                Box::new(move |result| {
                    let micros = due.elapsed().as_micros() as u64;
                    if result.is_err() {
                        failed.fetch_add(1, Ordering::Relaxed);
                    } else if let Ok(mut h) = latencies.lock() {
                        // Beyond the histogram's 10-minute bound cannot happen in a bounded run.
                        let _ = h.record(micros);
                    }
                    answered.fetch_add(1, Ordering::Release);
                }),
            )?;
        }
        while answered.load(Ordering::Acquire) < messages {
            std::thread::sleep(Duration::from_millis(1));
        }
        if failed.load(Ordering::Relaxed) > 0 {
            bail!("{} appends failed", failed.load(Ordering::Relaxed));
        }
        let h = latencies
            .lock()
            .map_err(|_| anyhow!("histogram lock poisoned"))?;
        Ok(h.clone())
    })
}

/// (f) The last `range_last` messages of `range_rooms` rooms (a fixed pseudo-random order),
/// each read as roomcast's history page does: head, then the seq range.
fn range_reads(kind: Kind, dir: &Path, plan: Plan) -> Result<RangeReads> {
    let store = kind.open(dir)?;
    let mut h = histogram()?;
    let start = Instant::now();
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    for _ in 0..plan.range_rooms {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let room = format!("bench/room-{}", x % plan.rooms as u64);
        let read = Instant::now();
        let head = store.reads().head(&room)?;
        let from = head.saturating_sub(plan.range_last - 1).max(1);
        let page = store.reads().range(&room, from, head)?;
        if head > 0 && page.len() as u64 != head - from + 1 {
            bail!("{room}: read {} of seqs {from}..={head}", page.len());
        }
        h.record(read.elapsed().as_micros() as u64)?;
    }
    Ok(RangeReads {
        rooms: plan.range_rooms,
        last: plan.range_last,
        secs: start.elapsed().as_secs_f64(),
        p99_ms: ms(&h, 0.99),
    })
}

/// (e) A child appends with every producer until the parent has seen `recovery_messages`
/// acknowledged, then gets SIGKILL with appends in flight. Timed: reopening until every room's
/// head is answered. Checked: every acknowledged message is there, and resending one is a
/// duplicate with its original seq.
fn recovery(kind: Kind, dir: &Path, plan: Plan) -> Result<Recovery> {
    let mut child = Command::new(std::env::current_exe()?)
        .args([
            "fill",
            "--engine",
            &format!("{kind:?}").to_lowercase(),
            "--dir",
        ])
        .arg(dir)
        .args(["--rooms", &plan.rooms.to_string()])
        .args(["--producers", &plan.producers.to_string()])
        .args(["--cap", &(plan.recovery_messages * 2).to_string()])
        .stdout(Stdio::piped())
        .spawn()
        .context("cannot start the fill child")?;
    let started = Instant::now();
    let stdout = child.stdout.take().context("no child stdout")?;
    let mut acked_per_producer = Vec::new();
    let mut acked = 0;
    for line in BufReader::new(stdout).lines() {
        let counts: Vec<u64> = line?
            .split_whitespace()
            .map(str::parse)
            .collect::<Result<_, _>>()?;
        acked = counts.iter().sum();
        acked_per_producer = counts;
        if acked >= plan.recovery_messages {
            break;
        }
    }
    let fill_secs = started.elapsed().as_secs_f64();
    let killed_mid_stream = child.try_wait()?.is_none();
    // SIGKILL: nothing of the child runs after this, as in a crash.
    child.kill()?;
    child.wait()?;
    if acked < plan.recovery_messages {
        bail!("the fill child stopped at {acked} acknowledged");
    }

    // Timed in a fresh process, as a restart is: its peak memory is the engine's own.
    let timed = Command::new(std::env::current_exe()?)
        .args([
            "recover",
            "--engine",
            &format!("{kind:?}").to_lowercase(),
            "--dir",
        ])
        .arg(dir)
        .args(["--rooms", &plan.rooms.to_string()])
        .output()
        .context("cannot start the recover child")?;
    if !timed.status.success() {
        bail!("recover: {}", String::from_utf8_lossy(&timed.stderr));
    }
    let timed: Reopened = serde_json::from_slice(&timed.stdout).context("recover's answer")?;

    let store = kind.open(dir)?;
    let mut lost_acked = 0;
    let mut resent = 0;
    for (p, &count) in acked_per_producer.iter().enumerate() {
        for k in 0..count {
            let msg = message(plan.rooms, p, k);
            let Some(seq) = store.reads().find(&msg.room, &msg.from, &msg.id)? else {
                lost_acked += 1;
                continue;
            };
            // Every 1,000th: the value itself, and a resend after the restart.
            if k % 1_000 == 0 {
                let page = store.reads().range(&msg.room, seq, seq)?;
                let stored: serde_json::Value =
                    serde_json::from_slice(page.first().context("seq indexed but no message")?)?;
                if stored["id"] != msg.id.as_str() || stored["seq"] != seq {
                    bail!("{}: seq {seq} holds {stored}", msg.room);
                }
                let again = store.append(msg)?;
                if !again.duplicate || again.seq != seq {
                    bail!("resend after restart got {again:?}, stored seq {seq}");
                }
                resent += 1;
            }
        }
    }
    drop(store);
    Ok(Recovery {
        acked,
        fill_per_sec: acked as f64 / fill_secs,
        killed_mid_stream,
        recovery_secs: timed.secs,
        recovery_peak_rss_mb: timed.peak_rss_kb as f64 / 1024.0,
        stored: timed.stored,
        lost_acked,
        idempotent_resends_checked: resent,
        disk_bytes: disk_usage(dir)?,
    })
}

/// What the recover child answers.
#[derive(Serialize, serde::Deserialize)]
struct Reopened {
    secs: f64,
    stored: u64,
    peak_rss_kb: u64,
}

/// The recover child: opens the store left by the killed fill child and reads every room's head;
/// prints how long that took, the messages the heads count, and the process's peak memory.
pub fn recover(kind: Kind, dir: &Path, rooms: usize) -> Result<()> {
    let start = Instant::now();
    let store = kind.open(dir)?;
    let mut stored = 0;
    for r in 0..rooms {
        stored += store.reads().head(&format!("bench/room-{r}"))?;
    }
    let secs = start.elapsed().as_secs_f64();
    let status = std::fs::read_to_string("/proc/self/status")?;
    let peak_rss_kb = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .context("no VmHWM in /proc/self/status")?;
    drop(store);
    println!(
        "{}",
        serde_json::to_string(&Reopened {
            secs,
            stored,
            peak_rss_kb
        })?
    );
    Ok(())
}

/// The child: `producers` threads append their deterministic messages until `cap`; every 20 ms
/// a line of per-producer acknowledged counts (each count only ever under-states).
pub fn fill(kind: Kind, dir: &Path, rooms: usize, producers: usize, cap: u64) -> Result<()> {
    let store = kind.open(dir)?;
    let acked: Vec<AtomicU64> = (0..producers).map(|_| AtomicU64::new(0)).collect();
    let done = AtomicU64::new(0);
    let per_producer = cap / producers as u64;
    std::thread::scope(|scope| {
        let store = &store;
        let done = &done;
        for (p, acked) in acked.iter().enumerate() {
            scope.spawn(move || {
                for k in 0..per_producer {
                    if let Err(e) = store.append(message(rooms, p, k)) {
                        eprintln!("fill: {e:#}");
                        break;
                    }
                    acked.store(k + 1, Ordering::Release);
                }
                done.fetch_add(1, Ordering::Relaxed);
            });
        }
        let mut out = std::io::stdout().lock();
        while done.load(Ordering::Relaxed) < producers as u64 {
            std::thread::sleep(Duration::from_millis(20));
            let line: Vec<String> = acked
                .iter()
                .map(|a| a.load(Ordering::Acquire).to_string())
                .collect();
            if writeln!(out, "{}", line.join(" "))
                .and_then(|()| out.flush())
                .is_err()
            {
                // The parent is gone.
                std::process::exit(1);
            }
        }
    });
    Ok(())
}

fn print_table(report: &Report) {
    let plan = report.plan;
    println!(
        "| engine | saturated msg/s | saturated p99 | {} /s p50 / p99 | {} /s p50 / p99 | CPU µs/msg saturated / {} /s | written B/msg saturated / {} /s | disk B/msg | last {} of {} rooms | recovery ({} acked) | its peak RSS | acked lost |",
        plan.rates[0],
        plan.rates[1],
        plan.rates[0],
        plan.rates[0],
        plan.range_last,
        plan.range_rooms,
        plan.recovery_messages
    );
    println!("|---|---|---|---|---|---|---|---|---|---|---|---|");
    for e in &report.engines {
        let [low, high] = [&e.open_loop[0], &e.open_loop[1]];
        let (reads, recovery, rss, lost) = match (&e.range_reads, &e.recovery) {
            (Some(reads), Some(r)) => (
                format!("{:.3} s", reads.secs),
                format!("{:.2} s", r.recovery_secs),
                format!("{:.0} MB", r.recovery_peak_rss_mb),
                r.lost_acked.to_string(),
            ),
            _ => ("–".into(), "–".into(), "–".into(), "–".into()),
        };
        println!(
            "| {:?} | {:.0} | {:.1} ms | {:.2} / {:.2} ms | {:.2} / {:.2} ms | {:.0} / {:.0} | {:.0} / {:.0} | {:.0} | {reads} | {recovery} | {rss} | {lost} |",
            e.engine,
            e.saturated.per_sec,
            e.saturated.p99_ms,
            low.p50_ms,
            low.p99_ms,
            high.p50_ms,
            high.p99_ms,
            e.saturated.cpu_us_per_message,
            low.cpu_us_per_message,
            e.saturated.written_bytes_per_message,
            low.written_bytes_per_message,
            e.disk_bytes_per_message,
        );
    }
    println!(
        "\n{} (load average {}); recovery rows: every engine killed mid-stream: {}",
        report.date,
        report.load_average,
        report
            .engines
            .iter()
            .filter_map(|e| e.recovery.as_ref())
            .all(|r| r.killed_mid_stream)
    );
}
