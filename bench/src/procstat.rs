//! CPU time and memory of a process, from `/proc/<pid>/stat` and `/proc/<pid>/status` (Linux).

use serde::Serialize;

/// Clock ticks per second of `utime`/`stime` (`sysconf(_SC_CLK_TCK)`, 100 on every Linux the
/// generator targets; `getconf CLK_TCK` confirms it).
const CLOCK_TICKS_PER_SEC: f64 = 100.0;

/// One reading of a process.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct ProcSample {
    /// User + system CPU time so far, seconds.
    pub cpu_secs: f64,
    /// Resident set size, KiB (`VmRSS`).
    pub rss_kib: u64,
    /// Peak resident set size, KiB (`VmHWM`).
    pub peak_rss_kib: u64,
    /// Threads.
    pub threads: u64,
}

/// Several processes taken as one server: their CPU times, memory and threads added.
impl std::iter::Sum for ProcSample {
    fn sum<I: Iterator<Item = Self>>(samples: I) -> Self {
        samples.fold(Self::default(), |total, s| Self {
            cpu_secs: total.cpu_secs + s.cpu_secs,
            rss_kib: total.rss_kib + s.rss_kib,
            peak_rss_kib: total.peak_rss_kib + s.peak_rss_kib,
            threads: total.threads + s.threads,
        })
    }
}

/// Which process to read.
#[derive(Debug, Clone, Copy)]
pub enum Pid {
    /// The generator itself.
    This,
    /// Another process (the server under test).
    Other(u32),
    /// The calling thread alone (`/proc/thread-self`): one side of a two-thread measurement.
    ThisThread,
}

impl Pid {
    fn dir(self) -> String {
        match self {
            Pid::This => "/proc/self".to_owned(),
            Pid::Other(pid) => format!("/proc/{pid}"),
            Pid::ThisThread => "/proc/thread-self".to_owned(),
        }
    }
}

/// Reads `pid` now; `None` when it is gone or `/proc` is missing.
pub fn sample(pid: Pid) -> Option<ProcSample> {
    let dir = pid.dir();
    let stat = std::fs::read_to_string(format!("{dir}/stat")).ok()?;
    let status = std::fs::read_to_string(format!("{dir}/status")).ok()?;
    let (ticks, threads) = parse_stat(&stat)?;
    Some(ProcSample {
        cpu_secs: ticks as f64 / CLOCK_TICKS_PER_SEC,
        rss_kib: status_kib(&status, "VmRSS:").unwrap_or(0),
        peak_rss_kib: status_kib(&status, "VmHWM:").unwrap_or(0),
        threads,
    })
}

/// `utime + stime` (ticks) and `num_threads` from a `/proc/<pid>/stat` line. The command name
/// (field 2) may hold spaces and parentheses, so fields are counted after its last `)`.
pub fn parse_stat(stat: &str) -> Option<(u64, u64)> {
    let after_name = &stat[stat.rfind(')')? + 1..];
    // Fields from 3 (state) on; utime is field 14, stime 15, num_threads 20.
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    let field = |n: usize| fields.get(n - 3)?.parse::<u64>().ok();
    Some((field(14)? + field(15)?, field(20)?))
}

/// A `Key:   123 kB` line of `/proc/<pid>/status`, in KiB.
pub fn status_kib(status: &str, key: &str) -> Option<u64> {
    status
        .lines()
        .find_map(|line| line.strip_prefix(key))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// Open file descriptors of process `pid` (the entries of `/proc/<pid>/fd`); `None` when the
/// directory cannot be read (the process is gone, or belongs to another user).
pub fn open_fds(pid: u32) -> Option<usize> {
    Some(std::fs::read_dir(format!("/proc/{pid}/fd")).ok()?.count())
}

/// Resident memory of process `pid` split as `/proc/<pid>/status` reports it, KiB.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Resident {
    /// Anonymous memory (heap, stacks): where a leak shows (`RssAnon`).
    pub anon_kib: u64,
    /// File-backed pages (the binary, mapped files: `RssFile`).
    pub file_kib: u64,
}

/// `RssAnon` and `RssFile` of process `pid`; `None` when it is gone.
pub fn resident(pid: u32) -> Option<Resident> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    Some(Resident {
        anon_kib: status_kib(&status, "RssAnon:").unwrap_or(0),
        file_kib: status_kib(&status, "RssFile:").unwrap_or(0),
    })
}

/// CPU use between two samples as a share of one core (1.0 = one core busy).
pub fn cpu_share(before: &ProcSample, after: &ProcSample, wall_secs: f64) -> f64 {
    if wall_secs <= 0.0 {
        return 0.0;
    }
    (after.cpu_secs - before.cpu_secs) / wall_secs
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_fields_are_counted_after_the_command_name() {
        let stat = "4242 (my (odd) name) S 1 4242 4242 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 7 0 \
                    12345 1000000 500 18446744073709551615";
        assert_eq!(parse_stat(stat), Some((300, 7)));
        assert_eq!(parse_stat("garbage"), None);
    }

    #[test]
    fn status_values_are_read_in_kib() {
        let status = "Name:\tx\nVmHWM:\t   2048 kB\nVmRSS:\t   1024 kB\nThreads:\t3\n";
        assert_eq!(status_kib(status, "VmRSS:"), Some(1024));
        assert_eq!(status_kib(status, "VmHWM:"), Some(2048));
        assert_eq!(status_kib(status, "VmSwap:"), None);
    }

    #[test]
    fn this_process_has_fds_and_anonymous_memory() {
        let pid = std::process::id();
        assert!(open_fds(pid).expect("own fds are readable") >= 3);
        let r = resident(pid).expect("own status is readable");
        assert!(r.anon_kib > 0);
        assert_eq!(open_fds(u32::MAX), None);
    }

    #[test]
    fn samples_of_several_processes_add_up() {
        let one = ProcSample {
            cpu_secs: 1.5,
            rss_kib: 100,
            peak_rss_kib: 200,
            threads: 3,
        };
        let both: ProcSample = [one, one].into_iter().sum();
        assert_eq!(
            both,
            ProcSample {
                cpu_secs: 3.0,
                rss_kib: 200,
                peak_rss_kib: 400,
                threads: 6
            }
        );
        let gone: Option<ProcSample> = [Some(one), None].into_iter().sum();
        assert_eq!(gone, None);
    }

    #[test]
    fn this_process_can_be_read() {
        let s = sample(Pid::This).expect("/proc/self is readable on Linux");
        assert!(s.rss_kib > 0);
        assert!(s.threads >= 1);
    }
}
