//! Prometheus metrics, rendered by hand: a few atomics and small maps, no registry crate.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use roomcast_core::protocol::ACTIONS;

/// Upper bounds (seconds) of the frame-handling latency histogram.
const LATENCY_BUCKETS: [f64; 12] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0,
];

/// Server metrics.
#[derive(Default)]
pub struct Metrics {
    connections_total: AtomicU64,
    frames_out: AtomicU64,
    slow_consumers: AtomicU64,
    frames_in: [AtomicU64; ACTIONS.len()],
    labeled: Mutex<BTreeMap<(&'static str, String), u64>>,
    latency_buckets: [AtomicU64; LATENCY_BUCKETS.len()],
    latency_count: AtomicU64,
    latency_sum_ns: AtomicU64,
    webhook_seconds_count: AtomicU64,
    webhook_seconds_sum_ns: AtomicU64,
}

/// Gauges sampled when rendering.
pub struct Gauges {
    /// Open sockets.
    pub connections: usize,
    /// Rooms with subscribers, when the store can tell cheaply.
    pub rooms: Option<usize>,
}

impl Metrics {
    /// A connection was accepted.
    pub fn connection_opened(&self) {
        self.connections_total.fetch_add(1, Ordering::Relaxed);
    }

    /// A `$connect` was refused with `status`.
    pub fn connect_refused(&self, status: u16) {
        self.bump("roomcast_connect_refused_total", status.to_string());
    }

    /// A frame was queued to a socket.
    pub fn frame_out(&self) {
        self.frames_out.fetch_add(1, Ordering::Relaxed);
    }

    /// A socket was closed as a slow consumer.
    pub fn slow_consumer(&self) {
        self.slow_consumers.fetch_add(1, Ordering::Relaxed);
    }

    /// A client frame was handled.
    pub fn frame_in(&self, action: Option<&str>, rejected: Option<&str>, elapsed: Duration) {
        if let Some(i) = action.and_then(|a| ACTIONS.iter().position(|x| *x == a)) {
            self.frames_in[i].fetch_add(1, Ordering::Relaxed);
        }
        if let Some(code) = rejected {
            self.bump("roomcast_rejections_total", code.to_owned());
        }
        let secs = elapsed.as_secs_f64();
        if let Some(i) = LATENCY_BUCKETS.iter().position(|b| secs <= *b) {
            self.latency_buckets[i].fetch_add(1, Ordering::Relaxed);
        }
        self.latency_count.fetch_add(1, Ordering::Relaxed);
        let nanos = u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX);
        self.latency_sum_ns.fetch_add(nanos, Ordering::Relaxed);
    }

    /// A webhook attempt ended (`delivered`, `retry`, `dead_letter`) after `elapsed`.
    pub fn webhook_attempt(&self, outcome: &'static str, elapsed: Duration) {
        self.bump("roomcast_webhook_attempts_total", outcome.to_owned());
        self.webhook_seconds_count.fetch_add(1, Ordering::Relaxed);
        let nanos = u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX);
        self.webhook_seconds_sum_ns
            .fetch_add(nanos, Ordering::Relaxed);
    }

    /// A socket was closed by the server with `code`.
    pub fn closed(&self, code: u16) {
        self.bump("roomcast_server_closes_total", code.to_string());
    }

    fn bump(&self, name: &'static str, label: String) {
        *self
            .labeled
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .entry((name, label))
            .or_default() += 1;
    }

    /// The Prometheus text exposition.
    pub fn render(&self, gauges: &Gauges) -> String {
        let mut out = String::new();
        let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
        // Writing to a String cannot fail.
        let _ = writeln!(
            out,
            "# HELP roomcast_connections Open WebSocket connections.\n# TYPE roomcast_connections gauge\nroomcast_connections {}",
            gauges.connections
        );
        if let Some(rooms) = gauges.rooms {
            let _ = writeln!(
                out,
                "# HELP roomcast_rooms Rooms with at least one connection.\n# TYPE roomcast_rooms gauge\nroomcast_rooms {rooms}"
            );
        }
        let _ = writeln!(
            out,
            "# HELP roomcast_connections_total Connections accepted.\n# TYPE roomcast_connections_total counter\nroomcast_connections_total {}",
            load(&self.connections_total)
        );
        let _ = writeln!(
            out,
            "# HELP roomcast_frames_in_total Client frames handled, by action.\n# TYPE roomcast_frames_in_total counter"
        );
        for (i, action) in ACTIONS.iter().enumerate() {
            let _ = writeln!(
                out,
                "roomcast_frames_in_total{{action=\"{action}\"}} {}",
                load(&self.frames_in[i])
            );
        }
        let _ = writeln!(
            out,
            "# HELP roomcast_frames_out_total Frames queued to sockets (replies and fan-out).\n# TYPE roomcast_frames_out_total counter\nroomcast_frames_out_total {}",
            load(&self.frames_out)
        );
        let _ = writeln!(
            out,
            "# HELP roomcast_slow_consumers_total Sockets closed for not reading.\n# TYPE roomcast_slow_consumers_total counter\nroomcast_slow_consumers_total {}",
            load(&self.slow_consumers)
        );
        let labeled = self.labeled.lock().unwrap_or_else(PoisonError::into_inner);
        for (name, label_name, help) in [
            (
                "roomcast_rejections_total",
                "code",
                "Client frames rejected, by error code.",
            ),
            (
                "roomcast_connect_refused_total",
                "status",
                "Upgrades refused, by HTTP status.",
            ),
            (
                "roomcast_server_closes_total",
                "code",
                "Connections closed by the server, by close code.",
            ),
            (
                "roomcast_webhook_attempts_total",
                "outcome",
                "Webhook delivery attempts, by outcome (delivered, retry, dead_letter).",
            ),
        ] {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter");
            for ((n, label), value) in labeled.iter() {
                if *n == name {
                    let _ = writeln!(out, "{name}{{{label_name}=\"{label}\"}} {value}");
                }
            }
        }
        let name = "roomcast_webhook_attempt_seconds";
        let _ = writeln!(
            out,
            "# HELP {name} Time webhook attempts took, to the answer or the timeout.\n# TYPE {name} summary\n{name}_sum {}\n{name}_count {}",
            load(&self.webhook_seconds_sum_ns) as f64 / 1e9,
            load(&self.webhook_seconds_count)
        );
        let name = "roomcast_frame_handling_seconds";
        let _ = writeln!(
            out,
            "# HELP {name} Time from receiving a client frame to its replies and fan-out being queued (includes the durable write).\n# TYPE {name} histogram"
        );
        let mut cumulative = 0;
        for (i, bound) in LATENCY_BUCKETS.iter().enumerate() {
            cumulative += load(&self.latency_buckets[i]);
            let _ = writeln!(out, "{name}_bucket{{le=\"{bound}\"}} {cumulative}");
        }
        let count = load(&self.latency_count);
        let _ = writeln!(
            out,
            "{name}_bucket{{le=\"+Inf\"}} {count}\n{name}_sum {}\n{name}_count {count}",
            load(&self.latency_sum_ns) as f64 / 1e9
        );
        out
    }
}
