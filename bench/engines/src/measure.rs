//! Process counters: CPU time (getrusage) and bytes sent to storage (/proc/self/io), and the
//! size of a data directory.

use std::path::Path;
use std::time::Instant;

use anyhow::{Context, Result};

/// The counters at one moment.
#[derive(Clone, Copy)]
pub struct Sample {
    at: Instant,
    cpu_us: u64,
    write_bytes: u64,
}

/// Cost of what happened between two samples.
pub struct Delta {
    pub secs: f64,
    pub cpu_us: u64,
    pub write_bytes: u64,
}

impl Sample {
    pub fn now() -> Result<Self> {
        Ok(Self {
            at: Instant::now(),
            cpu_us: cpu_us()?,
            write_bytes: write_bytes()?,
        })
    }

    pub fn since(self, start: Sample) -> Delta {
        Delta {
            secs: self.at.duration_since(start.at).as_secs_f64(),
            cpu_us: self.cpu_us.saturating_sub(start.cpu_us),
            write_bytes: self.write_bytes.saturating_sub(start.write_bytes),
        }
    }
}

/// User + system CPU of the whole process (every thread, the engines' own included).
fn cpu_us() -> Result<u64> {
    let mut usage = std::mem::MaybeUninit::<libc::rusage>::zeroed();
    // SAFETY: getrusage fills the struct it is given; RUSAGE_SELF is always valid.
    #[allow(unsafe_code)]
    let usage = unsafe {
        if libc::getrusage(libc::RUSAGE_SELF, usage.as_mut_ptr()) != 0 {
            return Err(std::io::Error::last_os_error()).context("getrusage");
        }
        usage.assume_init()
    };
    let micros = |t: libc::timeval| t.tv_sec as u64 * 1_000_000 + t.tv_usec as u64;
    Ok(micros(usage.ru_utime) + micros(usage.ru_stime))
}

/// Bytes this process caused to be sent to the storage layer.
fn write_bytes() -> Result<u64> {
    let io = std::fs::read_to_string("/proc/self/io").context("/proc/self/io")?;
    io.lines()
        .find_map(|l| l.strip_prefix("write_bytes: "))
        .context("no write_bytes in /proc/self/io")?
        .trim()
        .parse()
        .context("write_bytes")
}

/// Disk space the files under `dir` take (allocated blocks).
pub fn disk_usage(dir: &Path) -> Result<u64> {
    use std::os::unix::fs::MetadataExt;
    let mut total = 0;
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let meta = entry.metadata()?;
        total += if meta.is_dir() {
            disk_usage(&entry.path())?
        } else {
            meta.blocks() * 512
        };
    }
    Ok(total)
}
