//! The harness that runs the real `roomcast-local` binary as a suite deployment: a child process
//! on a free port, in a fresh data directory.
//!
//! Each server runs under a [`Lifeline`]: it is stopped and its data directory removed when this
//! test process exits, however it exits (statics are never dropped). `restart` SIGKILLs the
//! server but keeps the data, then starts a new one on the same port. Unix only.

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Mutex, PoisonError, mpsc};
use std::time::{Duration, Instant};

use anyhow::{Context, anyhow, bail};
use roomcast_core::auth::{Claims, TokenSigner};
use roomcast_protocol_tests::deployment::EMBED_KEYS;
use roomcast_protocol_tests::{Capabilities, Deployment};
use roomcast_testkit::process::Lifeline;

const BINARY: &str = env!("CARGO_BIN_EXE_roomcast-local");
const SECRET: &str = "roomcast-protocol-suite-secret-0123456789";
const READY_LINE: &str = "roomcast-local listening on http://";
const MANAGEMENT_LINE: &str = "roomcast-local Management API on http://";
/// How long a start (or the wrapper's exit) may take.
const START_TIMEOUT: Duration = Duration::from_secs(30);

/// One running server process.
struct Running {
    port: u16,
    /// Where its Management API listens (each start picks a free port).
    management_port: u16,
    lifeline: Lifeline,
}

/// A `roomcast-local` server the suite drives.
struct LocalServer {
    root: PathBuf,
    flags: Vec<String>,
    /// Environment variables set for the server (on top of this process's).
    env: Vec<(String, String)>,
    running: Mutex<Running>,
}

impl LocalServer {
    /// Starts the binary with `flags` and `env` on a free port, in a fresh directory.
    fn start(flags: &[&str], env: &[(&str, &str)]) -> anyhow::Result<Self> {
        static SERVERS: AtomicU32 = AtomicU32::new(0);
        let root = std::env::temp_dir().join(format!(
            "roomcast-protocol-{}-{}",
            std::process::id(),
            SERVERS.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&root).with_context(|| format!("creating {}", root.display()))?;
        let flags: Vec<String> = flags.iter().map(|f| (*f).to_owned()).collect();
        let env: Vec<(String, String)> = env
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        let running = spawn(&root, &flags, &env, 0)?;
        Ok(Self {
            root,
            flags,
            env,
            running: Mutex::new(running),
        })
    }

    fn port(&self) -> u16 {
        self.running
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .port
    }

    fn management_port(&self) -> u16 {
        self.running
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .management_port
    }

    /// SIGKILL, then start again on the same port with the same data.
    fn restart(&self) -> anyhow::Result<()> {
        let mut running = self.running.lock().unwrap_or_else(PoisonError::into_inner);
        let port = running.port;
        running
            .lifeline
            .kill_keeping_data()
            .context("killing the server")?;
        // The port may take a moment to be free again after SIGKILL; retry within the bound.
        let deadline = Instant::now() + START_TIMEOUT;
        *running = loop {
            match spawn(&self.root, &self.flags, &self.env, port) {
                Ok(r) => break r,
                Err(e) if Instant::now() >= deadline => return Err(e.context("restarting")),
                Err(_) => std::thread::sleep(Duration::from_millis(100)),
            }
        };
        Ok(())
    }
}

/// Starts the server under a lifeline; returns once it printed its address.
fn spawn(
    root: &Path,
    flags: &[String],
    env: &[(String, String)],
    port: u16,
) -> anyhow::Result<Running> {
    let log_path = root.join("server.log");
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log_path)
        .with_context(|| format!("opening {}", log_path.display()))?;
    let data = data_of(root);
    let port_text = port.to_string();
    let mut command = Lifeline::command(Some(root), BINARY);
    command
        .args([
            "serve",
            "--host",
            "127.0.0.1",
            "--port",
            &port_text,
            "--jwt-secret",
            SECRET,
            "--management-listen",
            "127.0.0.1:0",
        ])
        .arg("--data-dir")
        .arg(&data)
        .args(flags)
        .env(
            "RUST_LOG",
            std::env::var("RUST_LOG").unwrap_or_else(|_| "warn".into()),
        )
        .envs(env.iter().map(|(k, v)| (k, v)))
        .stdout(Stdio::piped())
        .stderr(log);
    let mut lifeline = Lifeline::spawn(command).context("starting the server")?;
    let stdout = lifeline.stdout().context("server stdout")?;
    let (ready_tx, ready_rx) = mpsc::channel();
    // Reads both addresses, then keeps draining stdout so the server never blocks on it.
    std::thread::spawn(move || {
        let mut lines = BufReader::new(stdout).lines();
        let mut public = None;
        for line in lines.by_ref().map_while(Result::ok) {
            if let Some(addr) = line.strip_prefix(READY_LINE) {
                public = Some(addr.trim().to_owned());
            } else if let Some(addr) = line.strip_prefix(MANAGEMENT_LINE) {
                if let Some(public) = public.take() {
                    let _ = ready_tx.send((public, addr.trim().to_owned()));
                }
                break;
            }
        }
        for _ in lines {}
    });
    let (addr, management) = match ready_rx.recv_timeout(START_TIMEOUT) {
        Ok(addrs) => addrs,
        Err(e) => {
            let _ = lifeline.stop();
            let mut log = String::new();
            let _ = std::fs::File::open(&log_path).and_then(|mut f| f.read_to_string(&mut log));
            bail!("roomcast-local did not print `{READY_LINE}…` ({e}); its log:\n{log}");
        }
    };
    let bound = port_of(&addr)?;
    anyhow::ensure!(
        port == 0 || bound == port,
        "asked for port {port}, got {bound}"
    );
    Ok(Running {
        port: bound,
        management_port: port_of(&management)?,
        lifeline,
    })
}

/// The `--data-dir` of the server under `root`.
fn data_of(root: &Path) -> PathBuf {
    root.join("data")
}

/// The port of a printed `host:port` address.
fn port_of(addr: &str) -> anyhow::Result<u16> {
    addr.rsplit(':')
        .next()
        .and_then(|p| p.trim_end_matches('/').parse().ok())
        .ok_or_else(|| anyhow!("no port in `{addr}`"))
}

/// The local server as a suite deployment.
pub struct Local(Result<LocalServer, String>);

impl Local {
    /// The server's port (it keeps it across restarts).
    #[allow(dead_code, reason = "not every test file needs it")]
    pub fn port(&self) -> u16 {
        self.server().port()
    }

    /// The port of the server's Management API (`--management-listen`; it changes on restart).
    #[allow(dead_code, reason = "not every test file needs it")]
    pub fn management_port(&self) -> u16 {
        self.server().management_port()
    }

    /// The server's `--data-dir` (it keeps it across restarts).
    #[allow(dead_code, reason = "not every test file needs it")]
    pub fn data_dir(&self) -> PathBuf {
        data_of(&self.server().root)
    }

    /// The key the server signs attachment links with (derived from its token secret, as
    /// the server derives it).
    #[allow(dead_code, reason = "not every test file needs it")]
    pub fn link_signer(&self) -> roomcast_core::attachments::LinkSigner {
        let settings = roomcast_core::config::Settings::from_lookup(|name| {
            (name == roomcast_core::config::names::JWT_SECRET).then(|| SECRET.to_owned())
        })
        .unwrap_or_else(|e| panic!("the suite's secret is a valid setting: {e}"));
        settings
            .attachments
            .link_signer()
            .unwrap_or_else(|e| panic!("an HS256 secret derives a link key: {e}"))
    }

    fn server(&self) -> &LocalServer {
        match &self.0 {
            Ok(s) => s,
            Err(e) => panic!("the local server did not start: {e}"),
        }
    }
}

#[async_trait::async_trait]
impl Deployment for Local {
    fn ws_url(&self) -> String {
        format!("ws://127.0.0.1:{}/", self.server().port())
    }

    fn http_url(&self) -> Option<String> {
        Some(format!("http://127.0.0.1:{}", self.server().port()))
    }

    fn management_url(&self) -> Option<String> {
        Some(format!(
            "http://127.0.0.1:{}",
            self.server().management_port()
        ))
    }

    fn sign(&self, claims: &Claims) -> String {
        TokenSigner::hs256(SECRET.as_bytes()).sign(claims)
    }

    fn capabilities(&self) -> Capabilities {
        let flags = self
            .0
            .as_ref()
            .map(|s| s.flags.as_slice())
            .unwrap_or_default();
        let env = self
            .0
            .as_ref()
            .map(|s| s.env.as_slice())
            .unwrap_or_default();
        let forwarding = flags.iter().any(|f| f == "--lambda-endpoint");
        Capabilities {
            restart: true,
            http_api: true,
            management_api: true,
            one_room_per_connection: false,
            // Delivered in-process (not behind Lambda functions), to loopback receivers.
            webhooks: flags.iter().any(|f| f == "--webhook-allow-private") && !forwarding,
            // Files under the data directory behind the server's own signed routes; behind
            // Lambda functions the functions' attachments (S3) apply instead.
            attachments: !forwarding,
            // The suite's publishable key, in-process; behind Lambda functions, theirs.
            embed: !forwarding
                && env
                    .iter()
                    .any(|(k, v)| k == "ROOMCAST_EMBED_KEYS" && v == EMBED_KEYS),
        }
    }

    async fn restart(&self) -> anyhow::Result<()> {
        let server = self.server();
        tokio::task::block_in_place(|| server.restart())
    }
}

pub fn start(flags: &[&str]) -> Local {
    start_with_env(flags, &[])
}

/// [`start`] with environment variables `env` set for the server (settings that have no flag,
/// such as `ROOMCAST_EMBED_KEYS`).
pub fn start_with_env(flags: &[&str], env: &[(&str, &str)]) -> Local {
    Local(LocalServer::start(flags, env).map_err(|e| format!("{e:#}")))
}
