//! `tracing` output to the Workers console (`wrangler dev` prints it; `wrangler tail` and
//! Workers Logs collect it in a deployment). The core crate logs through `tracing`.

use std::io;
use std::sync::Once;

use roomcast_core::config::LogLevel;
use tracing_subscriber::fmt::MakeWriter;

/// One log line, written to the console when dropped.
pub struct ConsoleLine(Vec<u8>);

impl io::Write for ConsoleLine {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Drop for ConsoleLine {
    fn drop(&mut self) {
        if !self.0.is_empty() {
            worker::console_log!("{}", String::from_utf8_lossy(&self.0).trim_end());
        }
    }
}

struct Console;

impl<'a> MakeWriter<'a> for Console {
    type Writer = ConsoleLine;

    fn make_writer(&'a self) -> Self::Writer {
        ConsoleLine(Vec::new())
    }
}

/// Installs the console subscriber at `level` (once per isolate; later calls do nothing).
pub fn init(level: LogLevel) {
    let level = match level {
        LogLevel::Error => tracing::Level::ERROR,
        LogLevel::Warn => tracing::Level::WARN,
        LogLevel::Info => tracing::Level::INFO,
        LogLevel::Debug => tracing::Level::DEBUG,
        LogLevel::Trace => tracing::Level::TRACE,
    };
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        // Fails only when a subscriber is set already, which `Once` rules out.
        let _ = tracing_subscriber::fmt()
            .with_writer(Console)
            .with_max_level(level)
            .without_time()
            .with_ansi(false)
            .with_target(false)
            .try_init();
    });
}
