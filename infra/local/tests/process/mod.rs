//! The real `roomcast-local` binary as a child process that a test controls directly: its pid
//! (for `kill -9`, SIGTERM and `/proc` figures) and its port, and a suite [`Deployment`] for
//! it. (`common/` runs servers for the protocol suite instead, behind a wrapper that cleans up
//! even when the test process dies, and hides the pid.)
#![allow(dead_code, reason = "each test file uses its own part")]

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, anyhow};
use roomcast_core::auth::{Claims, TokenSigner};
use roomcast_protocol_tests::client::Client;
use roomcast_protocol_tests::deployment::{Capabilities, Deployment};
use roomcast_protocol_tests::scope::claims;

/// The HS256 secret every server started here verifies with (but those of
/// [`Server::start_with_key`]).
#[allow(dead_code, reason = "not every test file needs it")]
pub const SECRET: &str = "roomcast-process-test-secret-0123456789";
/// The tenant of [`Target::token`].
const TENANT: &str = "acme";

/// The binary on one data directory.
pub struct Server {
    child: Child,
    /// The port it listens on.
    pub port: u16,
    /// The port its Management API listens on.
    pub management_port: u16,
}

impl Server {
    /// Starts the binary on `data_dir` and `port` (0: any free port) with `extra` flags, and
    /// waits for its "listening" line.
    pub fn start(data_dir: &Path, port: u16, extra: &[&str]) -> anyhow::Result<Self> {
        Self::spawn(
            Command::new(env!("CARGO_BIN_EXE_roomcast-local")),
            data_dir,
            port,
            &[&["--jwt-secret", SECRET], extra].concat(),
        )
    }

    /// Like [`Server::start`] on any port, with `env` set in the server's environment.
    #[allow(dead_code, reason = "not every test file needs it")]
    pub fn start_with_env(
        data_dir: &Path,
        extra: &[&str],
        env: &[(&str, &str)],
    ) -> anyhow::Result<Self> {
        let mut command = Command::new(env!("CARGO_BIN_EXE_roomcast-local"));
        command.envs(env.iter().copied());
        Self::spawn(
            command,
            data_dir,
            0,
            &[&["--jwt-secret", SECRET], extra].concat(),
        )
    }

    /// Like [`Server::start`] on any port, verifying tokens with the key `key_flags` give
    /// (`--jwt-public-key FILE`, `--jwt-secret S`, …) instead of [`SECRET`]; then
    /// [`Target::sign`] does not sign what it accepts.
    #[allow(dead_code, reason = "not every test file needs it")]
    pub fn start_with_key(data_dir: &Path, key_flags: &[&str]) -> anyhow::Result<Self> {
        Self::spawn(
            Command::new(env!("CARGO_BIN_EXE_roomcast-local")),
            data_dir,
            0,
            key_flags,
        )
    }

    /// Like [`Server::start`], with the process's open-file limit (`ulimit -n`) lowered to
    /// `limit`. (Through the shell: setting a child's limit from Rust takes `pre_exec`, which
    /// is unsafe.)
    pub fn start_with_open_files(
        data_dir: &Path,
        limit: u64,
        extra: &[&str],
    ) -> anyhow::Result<Self> {
        let mut shell = Command::new("sh");
        shell
            .arg("-c")
            .arg(format!("ulimit -n {limit} && exec \"$0\" \"$@\""))
            .arg(env!("CARGO_BIN_EXE_roomcast-local"));
        Self::spawn(
            shell,
            data_dir,
            0,
            &[&["--jwt-secret", SECRET], extra].concat(),
        )
    }

    /// Runs `command` with the server's arguments (`serve` and the rest) appended.
    fn spawn(
        mut command: Command,
        data_dir: &Path,
        port: u16,
        extra: &[&str],
    ) -> anyhow::Result<Self> {
        let mut child = command
            .args(["serve", "--host", "127.0.0.1", "--port", &port.to_string()])
            .args(["--management-listen", "127.0.0.1:0"])
            .env_remove("ROOMCAST_JWT_SECRET")
            .arg("--data-dir")
            .arg(data_dir)
            .args(extra)
            .env("RUST_LOG", "error")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .context("spawning roomcast-local")?;
        let stdout = child.stdout.take().context("stdout is piped")?;
        // The public address, then the Management API's.
        let mut lines = BufReader::new(stdout);
        let mut port_line = || -> anyhow::Result<u16> {
            let mut line = String::new();
            lines.read_line(&mut line)?;
            line.trim()
                .rsplit(':')
                .next()
                .and_then(|p| p.parse().ok())
                .ok_or_else(|| anyhow!("unexpected line {line:?}"))
        };
        let port = port_line()?;
        let management_port = port_line()?;
        Ok(Self {
            child,
            port,
            management_port,
        })
    }

    /// Its process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Its resident memory (`VmRSS`), bytes.
    pub fn rss(&self) -> anyhow::Result<u64> {
        rss_of(self.pid())
    }

    /// `kill -9`, and reaps it.
    pub fn kill_9(&mut self) -> anyhow::Result<()> {
        self.child.kill()?;
        self.child.wait()?;
        Ok(())
    }

    /// Waits for it to exit by itself.
    pub fn wait_exit(&mut self, within: Duration) -> anyhow::Result<ExitStatus> {
        let deadline = Instant::now() + within;
        loop {
            if let Some(status) = self.child.try_wait()? {
                return Ok(status);
            }
            anyhow::ensure!(
                Instant::now() < deadline,
                "server still running after {within:?}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// A suite deployment pointing at it.
    pub fn target(&self) -> Target {
        Target {
            port: self.port,
            management_port: Some(self.management_port),
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `VmRSS` of `pid`, bytes.
pub fn rss_of(pid: u32) -> anyhow::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .context("no VmRSS")?;
    Ok(kb * 1024)
}

/// A server on a port (it keeps its port across a restart on the same data directory).
pub struct Target {
    /// The port.
    pub port: u16,
    /// The port of its Management API, when known.
    pub management_port: Option<u16>,
}

#[async_trait::async_trait]
impl Deployment for Target {
    fn ws_url(&self) -> String {
        format!("ws://127.0.0.1:{}/", self.port)
    }
    fn http_url(&self) -> Option<String> {
        Some(format!("http://127.0.0.1:{}", self.port))
    }
    fn management_url(&self) -> Option<String> {
        self.management_port
            .map(|p| format!("http://127.0.0.1:{p}"))
    }
    fn sign(&self, claims: &Claims) -> String {
        TokenSigner::hs256(SECRET.as_bytes()).sign(claims)
    }
    fn capabilities(&self) -> Capabilities {
        Capabilities {
            http_api: true,
            management_api: self.management_port.is_some(),
            ..Capabilities::default()
        }
    }
}

impl Target {
    /// A token for `user` of the test tenant, granting `rooms`.
    pub fn token(&self, user: &str, rooms: &[&str]) -> String {
        self.sign(&claims(TENANT, user, rooms))
    }

    /// A connection of `user`, granted every room.
    pub async fn connect(&self, user: &str) -> anyhow::Result<Client> {
        Client::connect(self, &self.token(user, &["*"]), user).await
    }
}

/// A two-thread runtime for a test's clients.
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a tokio runtime")
}

/// The value of the unlabelled metric `name` on the server's `/metrics`.
pub async fn metric(port: u16, name: &str) -> anyhow::Result<u64> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port)).await?;
    stream
        .write_all(b"GET /metrics HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .await?;
    let mut text = String::new();
    stream.read_to_string(&mut text).await?;
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
        .ok_or_else(|| anyhow!("no metric {name}"))
}

/// The value of metric `name` with the label set `labels` (as rendered, e.g.
/// `outcome="delivered"`) on the server's `/metrics`.
#[allow(dead_code, reason = "not every test file needs it")]
pub async fn metric_labeled(port: u16, name: &str, labels: &str) -> anyhow::Result<u64> {
    metric(port, &format!("{name}{{{labels}}}")).await
}

/// The HTTP status a WebSocket upgrade with `token` gets (101 when it connects).
#[allow(dead_code, reason = "not every test file needs it")]
pub async fn upgrade_status(target: &Target, token: &str) -> anyhow::Result<u16> {
    use roomcast_protocol_tests::client::{ConnectError, Credentials};
    match Client::try_connect(target, Credentials::Query(token), "probe").await {
        Ok(client) => {
            client.close().await?;
            Ok(101)
        }
        Err(ConnectError::Refused { status, .. }) => Ok(status),
        Err(e) => Err(anyhow!("{e}")),
    }
}

/// Runs `openssl` with `args`; its standard output. (Captured: key generation draws progress
/// dots on stderr.)
#[allow(dead_code, reason = "not every test file needs it")]
pub fn openssl(args: &[&str]) -> anyhow::Result<String> {
    let out = Command::new("openssl")
        .args(args)
        .output()
        .context("running openssl")?;
    anyhow::ensure!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(String::from_utf8(out.stdout)?)
}
