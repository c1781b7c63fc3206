//! Servers a test starts as child processes, bound to the test process's life: each runs in its
//! own session (so it and the processes it starts form one process group) under a small `sh`
//! lifeline that ends the group when its stdin closes — when the [`Lifeline`] is dropped, or when
//! the test process exits however it exits (a server kept in a `static` is never dropped). The
//! lifeline can also SIGKILL the group while keeping the server's directory, for tests that
//! restart a server on the same data after `kill -9`.

use std::ffi::OsStr;
use std::io::Write;
use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::time::{Duration, Instant};

/// `$1` is a directory to remove at the end (may be empty); the rest is the command. A line
/// `keep` on stdin SIGKILLs the group and keeps the directory; EOF asks the group to stop
/// (SIGTERM), SIGKILLs it after a second, and removes the directory.
const WRAPPER: &str = r#"
dir=$1; shift
setsid "$@" &
pid=$!
read -r cmd
if [ "$cmd" = keep ]; then
  kill -KILL "-$pid" 2>/dev/null
else
  kill -TERM "-$pid" 2>/dev/null
  n=0
  while kill -0 "$pid" 2>/dev/null && [ "$n" -lt 10 ]; do sleep 0.1; n=$((n + 1)); done
  kill -KILL "-$pid" 2>/dev/null
fi
wait "$pid" 2>/dev/null
[ "$cmd" = keep ] || [ -z "$dir" ] || rm -rf "$dir"
"#;

/// How long the lifeline may take to end its server.
const STOP_TIMEOUT: Duration = Duration::from_secs(30);

/// A server process bound to the test process's life (see the module doc).
pub struct Lifeline {
    wrapper: Child,
    control: Option<ChildStdin>,
}

impl Lifeline {
    /// The command that runs `program` under a lifeline, removing `dir` (when given) at the end.
    /// Add the program's arguments, environment and stdout/stderr, then [`Lifeline::spawn`] it.
    pub fn command(dir: Option<&Path>, program: impl AsRef<OsStr>) -> Command {
        let mut command = Command::new("sh");
        command
            .arg("-c")
            .arg(WRAPPER)
            .arg("roomcast-lifeline")
            .arg(dir.map_or(OsStr::new(""), Path::as_os_str))
            .arg(program);
        command
    }

    /// Starts a command made by [`Lifeline::command`].
    pub fn spawn(mut command: Command) -> std::io::Result<Self> {
        let mut wrapper = command.stdin(Stdio::piped()).spawn()?;
        let control = wrapper.stdin.take();
        Ok(Self { wrapper, control })
    }

    /// The server's stdout, when it was piped (once).
    pub fn stdout(&mut self) -> Option<ChildStdout> {
        self.wrapper.stdout.take()
    }

    /// Whether the server (with its lifeline) has exited.
    pub fn exited(&mut self) -> bool {
        !matches!(self.wrapper.try_wait(), Ok(None))
    }

    /// SIGKILLs the server's process group, keeps its directory, and waits for the lifeline to
    /// exit.
    pub fn kill_keeping_data(&mut self) -> std::io::Result<()> {
        if let Some(control) = self.control.as_mut() {
            control.write_all(b"keep\n")?;
        }
        self.control = None;
        self.wait()
    }

    /// Stops the server (SIGTERM, then SIGKILL) and removes its directory.
    pub fn stop(&mut self) -> std::io::Result<()> {
        self.control = None;
        self.wait()
    }

    fn wait(&mut self) -> std::io::Result<()> {
        let deadline = Instant::now() + STOP_TIMEOUT;
        while self.wrapper.try_wait()?.is_none() {
            if Instant::now() >= deadline {
                self.wrapper.kill()?;
                return Err(std::io::Error::other(format!(
                    "the lifeline did not exit within {STOP_TIMEOUT:?}"
                )));
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        Ok(())
    }
}

impl Drop for Lifeline {
    fn drop(&mut self) {
        // Already stopped is fine; a lifeline that cannot stop is reported by `stop` callers.
        let _ = self.stop();
    }
}

/// A loopback port nothing listens on (bound, read, released for the server).
pub fn free_port() -> u16 {
    // Invariant: binding port 0 on loopback only fails when the machine has no free port.
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free loopback port")
        .port()
}

/// Waits until something accepts TCP connections on `port`, up to `within`; `exited` is asked
/// in between, so a server that died at startup fails fast.
pub fn wait_listening(
    port: u16,
    within: Duration,
    mut exited: impl FnMut() -> bool,
) -> Result<(), String> {
    let deadline = Instant::now() + within;
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        if exited() {
            return Err(format!("the server exited before listening on {port}"));
        }
        if Instant::now() >= deadline {
            return Err(format!("nothing listened on {port} within {within:?}"));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Ok(())
}
