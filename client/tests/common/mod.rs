//! The real `roomcast-local` binary as a child process, for the client's black-box tests: on a
//! free port, in a fresh data directory, bound to the test process's life (a [`Lifeline`]).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, anyhow, bail};
use roomcast_client::{Event, Events};
use roomcast_core::auth::{Claims, Role, TokenSigner};
use roomcast_testkit::process::{Lifeline, free_port, wait_listening};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

const SECRET: &str = "roomcast-client-tests-secret-0123456789";
/// The tenant every test token names.
pub const TENANT: &str = "acme";
/// How long a start may take.
const START_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a test waits for any one event.
pub const WAIT: Duration = Duration::from_secs(15);

/// The server binary: the workspace's build of `roomcast-local` next to this test's own
/// directory (`cargo test --workspace` builds it), else one built here into a target directory
/// of its own (the cargo running this test may still hold the lock on the shared one).
fn binary() -> anyhow::Result<&'static Path> {
    static BINARY: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    BINARY
        .get_or_init(|| locate_or_build().map_err(|e| format!("{e:#}")))
        .as_deref()
        .map_err(|e| anyhow!("{e}"))
}

fn locate_or_build() -> anyhow::Result<PathBuf> {
    let exe = std::env::current_exe().context("this test's path")?;
    // target/<profile>/deps/<test> → target/<profile>/roomcast-local
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .context("this test runs from target/<profile>/deps")?;
    let name = format!("roomcast-local{}", std::env::consts::EXE_SUFFIX);
    let built = profile_dir.join(&name);
    if built.exists() {
        return Ok(built);
    }
    let own_target = profile_dir.join("roomcast-client-server");
    let status = Command::new(env!("CARGO"))
        .args(["build", "-p", "roomcast-local", "--bin", "roomcast-local"])
        .arg("--target-dir")
        .arg(&own_target)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .status()
        .context("running cargo build -p roomcast-local")?;
    if !status.success() {
        bail!("cargo build -p roomcast-local failed: {status}");
    }
    Ok(own_target.join("debug").join(name))
}

/// A running `roomcast-local`.
pub struct Server {
    root: PathBuf,
    port: u16,
    flags: Vec<String>,
    lifeline: Lifeline,
}

impl Server {
    /// Starts the server with `flags` (on top of the port, secret and data directory).
    pub fn start(flags: &[&str]) -> anyhow::Result<Self> {
        // Before the directory, which only a started server's lifeline removes.
        binary()?;
        let root = tempfile_root()?;
        let flags: Vec<String> = flags.iter().map(|f| (*f).to_owned()).collect();
        let port = free_port();
        let lifeline = spawn(&root, port, &flags).inspect_err(|_| {
            // Nothing else removes it when no server started.
            let _ = std::fs::remove_dir_all(&root);
        })?;
        Ok(Self {
            root,
            port,
            flags,
            lifeline,
        })
    }

    /// The WebSocket URL.
    pub fn url(&self) -> String {
        format!("ws://127.0.0.1:{}/", self.port)
    }

    /// The port it listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// A token for `user` of [`TENANT`] granting every room, valid for an hour.
    pub fn token(&self, user: &str, role: Role) -> String {
        self.token_valid_for(user, role, 3600)
    }

    /// A token for `user` of [`TENANT`] granting every room, valid for `secs` seconds.
    pub fn token_valid_for(&self, user: &str, role: Role, secs: u64) -> String {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        TokenSigner::hs256(SECRET.as_bytes()).sign(&Claims {
            sub: Some(user.to_owned()),
            tid: Some(TENANT.to_owned()),
            rooms: vec!["r-*".to_owned()],
            role,
            exp: Some(now + secs),
            ..Claims::default()
        })
    }

    /// SIGKILLs the server (no close frames: its sockets just end) and starts it again on the
    /// same port and data.
    pub fn restart(&mut self) -> anyhow::Result<()> {
        self.lifeline
            .kill_keeping_data()
            .context("killing the server")?;
        // The port may take a moment to be free again after SIGKILL.
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            match spawn(&self.root, self.port, &self.flags) {
                Ok(lifeline) => {
                    self.lifeline = lifeline;
                    return Ok(());
                }
                Err(e) if Instant::now() >= deadline => return Err(e.context("restarting")),
                Err(_) => std::thread::sleep(Duration::from_millis(100)),
            }
        }
    }
}

fn tempfile_root() -> anyhow::Result<PathBuf> {
    static SERVERS: AtomicU32 = AtomicU32::new(0);
    let root = std::env::temp_dir().join(format!(
        "roomcast-client-{}-{}",
        std::process::id(),
        SERVERS.fetch_add(1, Ordering::Relaxed)
    ));
    std::fs::create_dir_all(&root).with_context(|| format!("creating {}", root.display()))?;
    Ok(root)
}

fn spawn(root: &Path, port: u16, flags: &[String]) -> anyhow::Result<Lifeline> {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(root.join("server.log"))
        .context("opening the server's log")?;
    let mut command = Lifeline::command(Some(root), binary()?);
    command
        .args(["serve", "--host", "127.0.0.1", "--port", &port.to_string()])
        .args(["--jwt-secret", SECRET])
        .arg("--data-dir")
        .arg(root.join("data"))
        .args(flags)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(log);
    let mut lifeline = Lifeline::spawn(command).context("starting the server")?;
    if let Err(e) = wait_listening(port, START_TIMEOUT, || lifeline.exited()) {
        // Dropping the lifeline would remove the data a restart retries on.
        let _ = lifeline.kill_keeping_data();
        bail!("{e}");
    }
    Ok(lifeline)
}

/// A TCP forwarder to a server whose connections can all be cut at once, as a network drop
/// would (the server lives on, and so do the messages it stored whose acks the cut lost).
pub struct CuttableProxy {
    port: u16,
    cuts: Arc<watch::Sender<u64>>,
}

impl CuttableProxy {
    /// Forwards a loopback port of its own to `target`.
    pub async fn start(target: u16) -> anyhow::Result<Self> {
        let listener = TcpListener::bind(("127.0.0.1", 0)).await?;
        let port = listener.local_addr()?.port();
        let cuts = Arc::new(watch::channel(0).0);
        let accepting = Arc::clone(&cuts);
        tokio::spawn(async move {
            while let Ok((mut client, _)) = listener.accept().await {
                // Subscribed now: only cuts after this connection opened end it.
                let mut cut = accepting.subscribe();
                tokio::spawn(async move {
                    let Ok(mut server) = TcpStream::connect(("127.0.0.1", target)).await else {
                        return;
                    };
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut client, &mut server) => {}
                        _ = cut.changed() => {}
                    }
                });
            }
        });
        Ok(Self { port, cuts })
    }

    /// The WebSocket URL through the proxy.
    pub fn url(&self) -> String {
        format!("ws://127.0.0.1:{}/", self.port)
    }

    /// Ends every connection open now (both sides see the socket close, without a close frame).
    pub fn cut(&self) {
        self.cuts.send_modify(|n| *n += 1);
    }
}

/// The next event `pick` takes, skipping the others; fails after [`WAIT`] without one.
pub async fn next_picked<T>(
    events: &mut Events,
    mut pick: impl FnMut(Event) -> Option<T>,
) -> anyhow::Result<T> {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let event = tokio::time::timeout_at(deadline, events.next())
            .await
            .map_err(|_| anyhow!("no such event within {WAIT:?}"))?
            .context("the client stopped")?;
        if let Some(picked) = pick(event) {
            return Ok(picked);
        }
    }
}
