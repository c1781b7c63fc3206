//! Turns the result files of `scripts/bench.sh` (`<scenario>-<server>.json`, each a serialized
//! [`RunReport`](crate::load::RunReport)) into markdown tables and SVG charts.
//!
//! Scenarios: `s1-seed`, `s2-max`, `s3-bigroom`, `s4-idle`, `s5-storm`. Servers: `socketio`,
//! `raw`, `roomcast-embedded`, `roomcast-memory`. Missing files are skipped.

use std::fmt::Write;
use std::path::Path;

use serde_json::Value;

use crate::svg::{Series, bar_chart, human, line_chart};

/// Servers in the order tables and charts list them, with their display names.
pub const SERVERS: [(&str, &str); 4] = [
    ("socketio", "Socket.IO 4.8"),
    ("raw", "raw axum ws"),
    ("roomcast-embedded", "roomcast durable"),
    ("roomcast-memory", "roomcast memory"),
];

/// The result files of one results directory.
pub struct Results {
    runs: Vec<(String, String, Value)>,
}

fn num(v: &Value, path: &[&str]) -> f64 {
    let mut v = v;
    for p in path {
        v = &v[*p];
    }
    v.as_f64().unwrap_or(f64::NAN)
}

fn display(server: &str) -> String {
    SERVERS
        .iter()
        .find(|(k, _)| *k == server)
        .map_or(server, |(_, d)| d)
        .to_owned()
}

impl Results {
    /// Reads every `<scenario>-<server>.json` in `dir`.
    pub fn load(dir: &Path) -> anyhow::Result<Self> {
        let mut runs = Vec::new();
        for entry in std::fs::read_dir(dir)? {
            let path = entry?.path();
            if path.extension().and_then(|e| e.to_str()) != Some("json") {
                continue;
            }
            let Some(stem) = path.file_stem().and_then(|s| s.to_str()) else {
                continue;
            };
            for (server, _) in SERVERS {
                if let Some(scenario) = stem.strip_suffix(&format!("-{server}")) {
                    let value: Value = serde_json::from_str(&std::fs::read_to_string(&path)?)?;
                    runs.push((scenario.to_owned(), server.to_owned(), value));
                    break;
                }
            }
        }
        Ok(Self { runs })
    }

    fn scenario(&self, scenario: &str) -> Vec<(&str, &Value)> {
        SERVERS
            .iter()
            .filter_map(|(server, _)| {
                self.runs
                    .iter()
                    .find(|(sc, sv, _)| sc == scenario && sv == server)
                    .map(|(_, sv, v)| (sv.as_str(), v))
            })
            .collect()
    }

    /// The phase a scenario's figures come from: the sustained one, else the last.
    fn main_phase(run: &Value) -> Option<&Value> {
        let phases = run["phases"].as_array()?;
        match run["sustained_phase"].as_u64() {
            Some(i) => phases.get(usize::try_from(i).ok()?),
            None => phases.last(),
        }
    }

    /// Markdown tables for every scenario with results.
    pub fn markdown(&self) -> String {
        let mut out = String::new();
        let pct = |v: f64| {
            if v.is_nan() {
                "–".to_owned()
            } else {
                format!("{:.0} %", v * 100.0)
            }
        };
        let mib = |kib: f64| {
            if kib.is_nan() {
                "–".to_owned()
            } else {
                format!("{:.0} MiB", kib / 1024.0)
            }
        };
        for (scenario, title) in [
            (
                "s1-seed",
                "Seed target: 10,000 connections, 1,000 rooms of 10, 1,000 messages/s in",
            ),
            ("s3-bigroom", "Big room: 1 room of 5,000, 10 messages/s in"),
        ] {
            let runs = self.scenario(scenario);
            if runs.is_empty() {
                continue;
            }
            let _ = writeln!(out, "\n#### {title}\n");
            out.push_str("| server | connected | in/s | delivered/s | lost | dup | out of order | p50 | p99 | p99.9 | max | server CPU | server RSS | generator CPU |\n|---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n");
            for (server, run) in runs {
                let Some(p) = Self::main_phase(run) else {
                    continue;
                };
                let _ = writeln!(
                    out,
                    "| {} | {} | {} | {} | {} | {} | {} | {:.2} ms | {:.2} ms | {:.2} ms | {:.1} ms | {} | {} | {}{} |",
                    display(server),
                    num(run, &["connect", "connected"]),
                    human(num(p, &["sent_per_sec"])),
                    human(num(p, &["delivered_per_sec"])),
                    num(p, &["lost"]),
                    num(p, &["duplicates"]),
                    num(p, &["out_of_order"]),
                    num(p, &["latency", "p50_ms"]),
                    num(p, &["latency", "p99_ms"]),
                    num(p, &["latency", "p999_ms"]),
                    num(p, &["latency", "max_ms"]),
                    pct(num(p, &["server_cpu"])),
                    mib(num(p, &["server_rss_kib"])),
                    pct(num(p, &["generator_cpu"])),
                    if p["generator_bound"].as_bool() == Some(true) {
                        " (generator-bound)"
                    } else {
                        ""
                    },
                );
            }
        }
        let runs = self.scenario("s2-max");
        if !runs.is_empty() {
            out.push_str("\n#### Max throughput: 10,000 connections in 1,000 rooms of 10, rate raised until p99 > 50 ms or loss\n\n");
            out.push_str("| server | sustained in/s | delivered/s | p99 there | server CPU there | next step (in/s) | why it failed |\n|---|---|---|---|---|---|---|\n");
            for (server, run) in &runs {
                let phases = run["phases"].as_array().cloned().unwrap_or_default();
                let sustained = run["sustained_phase"]
                    .as_u64()
                    .and_then(|i| phases.get(usize::try_from(i).ok()?));
                // The lowest failed rate: refining phases (`--refine-steps`) come after the
                // ladder's failure, at lower rates.
                let failed = phases
                    .iter()
                    .filter(|p| p["passed"].as_bool() == Some(false))
                    .min_by(|a, b| num(a, &["target_rate"]).total_cmp(&num(b, &["target_rate"])));
                let why = failed.map_or("– (all steps passed)".to_owned(), |p| {
                    let mut reasons = Vec::new();
                    if num(p, &["lost"]) > 0.0 {
                        reasons.push(format!("{} lost", num(p, &["lost"])));
                    }
                    if num(p, &["acked"]) < num(p, &["sent"]) {
                        reasons.push(format!(
                            "{} unacked",
                            num(p, &["sent"]) - num(p, &["acked"])
                        ));
                    }
                    if num(p, &["latency", "p99_ms"]) > 50.0 {
                        reasons.push(format!("p99 {:.0} ms", num(p, &["latency", "p99_ms"])));
                    }
                    if p["generator_bound"].as_bool() == Some(true) {
                        reasons.push("generator-bound".into());
                    }
                    reasons.join(", ")
                });
                let _ = writeln!(
                    out,
                    "| {} | {} | {} | {} | {} | {} | {} |",
                    display(server),
                    sustained.map_or("–".into(), |p| human(num(p, &["sent_per_sec"]))),
                    sustained.map_or("–".into(), |p| human(num(p, &["delivered_per_sec"]))),
                    sustained.map_or("–".into(), |p| format!(
                        "{:.1} ms",
                        num(p, &["latency", "p99_ms"])
                    )),
                    sustained.map_or("–".into(), |p| pct(num(p, &["server_cpu"]))),
                    failed.map_or("–".into(), |p| human(num(p, &["target_rate"]))),
                    why,
                );
            }
            let sustained = |key: &str| {
                runs.iter()
                    .find(|(s, _)| *s == key)
                    .and_then(|(_, r)| {
                        Self::main_phase(r).filter(|_| r["sustained_phase"].is_u64())
                    })
                    .map(|p| num(p, &["delivered_per_sec"]))
            };
            for ours in ["roomcast-embedded", "roomcast-memory"] {
                if let Some(r) = sustained(ours) {
                    let mut parts = Vec::new();
                    match sustained("socketio") {
                        Some(s) => parts.push(format!("{:.1}× Socket.IO", r / s)),
                        None => parts.push("Socket.IO sustained no step".to_owned()),
                    }
                    if let Some(raw) = sustained("raw") {
                        parts.push(format!("{:.0} % of the raw limit", 100.0 * r / raw));
                    }
                    let _ = writeln!(out, "\n{}: {}.", display(ours), parts.join(", "));
                }
            }
        }
        let runs = self.scenario("s4-idle");
        if !runs.is_empty() {
            out.push_str("\n#### Idle capacity\n\n| server | connections held | RSS before | RSS after | per connection |\n|---|---|---|---|---|\n");
            for (server, run) in runs {
                let _ = writeln!(
                    out,
                    "| {} | {} | {} | {} | {:.1} KB |",
                    display(server),
                    num(run, &["idle", "connections"]),
                    mib(num(run, &["idle", "rss_before_kib"])),
                    mib(num(run, &["idle", "rss_after_kib"])),
                    num(run, &["idle", "bytes_per_connection"]) / 1000.0,
                );
            }
        }
        let runs = self.scenario("s5-storm");
        if !runs.is_empty() {
            out.push_str("\n#### Connection storm\n\n| server | connected | failed | connects/s | connect p50 | connect p99 | server CPU | generator CPU | errors |\n|---|---|---|---|---|---|---|---|---|\n");
            for (server, run) in runs {
                let errors = run["errors"]
                    .as_object()
                    .map(|m| {
                        m.iter()
                            .map(|(k, v)| format!("{k}: {v}"))
                            .collect::<Vec<_>>()
                            .join("; ")
                    })
                    .filter(|s| !s.is_empty())
                    .unwrap_or_else(|| "none".into());
                let _ = writeln!(
                    out,
                    "| {} | {} | {} | {} | {:.1} ms | {:.1} ms | {} | {} | {} |",
                    display(server),
                    num(run, &["connect", "connected"]),
                    num(run, &["connect", "failed"]),
                    human(num(run, &["connect", "per_sec"])),
                    num(run, &["connect", "latency", "p50_ms"]),
                    num(run, &["connect", "latency", "p99_ms"]),
                    pct(num(run, &["connect", "server_cpu"])),
                    pct(num(run, &["connect", "generator_cpu"])),
                    errors,
                );
            }
        }
        out
    }

    /// Writes `bench-*.svg` into `dir`; returns the files written.
    pub fn charts(&self, dir: &Path) -> anyhow::Result<Vec<String>> {
        std::fs::create_dir_all(dir)?;
        let mut written = Vec::new();
        let mut write = |name: &str, svg: String| -> anyhow::Result<()> {
            std::fs::write(dir.join(name), svg)?;
            written.push(name.to_owned());
            Ok(())
        };
        for (scenario, file, title) in [
            (
                "s1-seed",
                "bench-seed-latency.svg",
                "Seed target (10k conns, 1k msg/s in): delivery latency",
            ),
            (
                "s3-bigroom",
                "bench-bigroom-latency.svg",
                "Big room (5,000 members, 10 msg/s in): fan-out latency",
            ),
        ] {
            let runs = self.scenario(scenario);
            if runs.is_empty() {
                continue;
            }
            let categories: Vec<String> = runs.iter().map(|(s, _)| display(s)).collect();
            let series: Vec<Series> = [("p50", "p50_ms"), ("p99", "p99_ms"), ("p99.9", "p999_ms")]
                .iter()
                .map(|(name, key)| Series {
                    name: (*name).to_owned(),
                    values: runs
                        .iter()
                        .map(|(_, r)| {
                            Self::main_phase(r).map_or(f64::NAN, |p| num(p, &["latency", key]))
                        })
                        .collect(),
                    xs: Vec::new(),
                })
                .collect();
            write(file, bar_chart(title, "milliseconds", &categories, &series))?;
        }
        let runs = self.scenario("s2-max");
        if !runs.is_empty() {
            let categories: Vec<String> = runs.iter().map(|(s, _)| display(s)).collect();
            let values = runs
                .iter()
                .map(|(_, r)| {
                    if r["sustained_phase"].is_u64() {
                        Self::main_phase(r).map_or(0.0, |p| num(p, &["delivered_per_sec"]))
                    } else {
                        0.0
                    }
                })
                .collect();
            write(
                "bench-max-throughput.svg",
                bar_chart(
                    "Max sustained deliveries/s (p99 ≤ 50 ms, no loss), rooms of 10",
                    "delivered messages/s",
                    &categories,
                    &[Series {
                        name: "delivered/s".into(),
                        values,
                        xs: Vec::new(),
                    }],
                ),
            )?;
            let series = runs
                .iter()
                .map(|(s, r)| {
                    let mut phases = r["phases"].as_array().cloned().unwrap_or_default();
                    // In rate order: refining phases run after the ladder's failure.
                    phases.sort_by(|a, b| {
                        num(a, &["target_rate"]).total_cmp(&num(b, &["target_rate"]))
                    });
                    Series {
                        name: display(s),
                        xs: phases
                            .iter()
                            .map(|p| num(p, &["delivered_per_sec"]))
                            .collect(),
                        values: phases
                            .iter()
                            .map(|p| num(p, &["latency", "p99_ms"]))
                            .collect(),
                    }
                })
                .collect::<Vec<_>>();
            write(
                "bench-latency-vs-throughput.svg",
                line_chart(
                    "p99 delivery latency as the rate rises (rooms of 10)",
                    "delivered messages/s",
                    "p99 latency, ms",
                    &series,
                ),
            )?;
        }
        let runs = self.scenario("s4-idle");
        if !runs.is_empty() {
            let categories: Vec<String> = runs.iter().map(|(s, _)| display(s)).collect();
            let values = runs
                .iter()
                .map(|(_, r)| num(r, &["idle", "bytes_per_connection"]) / 1000.0)
                .collect();
            write(
                "bench-idle-memory.svg",
                bar_chart(
                    "Server memory per idle authenticated connection",
                    "KB of RSS per connection",
                    &categories,
                    &[Series {
                        name: "KB/conn".into(),
                        values,
                        xs: Vec::new(),
                    }],
                ),
            )?;
        }
        let runs = self.scenario("s5-storm");
        if !runs.is_empty() {
            let categories: Vec<String> = runs.iter().map(|(s, _)| display(s)).collect();
            let values = runs
                .iter()
                .map(|(_, r)| num(r, &["connect", "per_sec"]))
                .collect();
            write(
                "bench-connect-storm.svg",
                bar_chart(
                    "Connection storm: connects/s (JWT verified; raw: no auth)",
                    "connections/s",
                    &categories,
                    &[Series {
                        name: "connects/s".into(),
                        values,
                        xs: Vec::new(),
                    }],
                ),
            )?;
        }
        Ok(written)
    }
}
