//! Per-case names and tokens: every case works in its own tenant, so cases can run
//! concurrently against one shared server without seeing each other.

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::bail;
use roomcast_core::auth::{Claims, Role};
use serde_json::Value;
use tokio::time::Instant;

use crate::client::{Client, frame_type, wait_timeout};
use crate::deployment::{Deployment, InRoom};

/// How long a case listens to assert that something does *not* arrive, where the protocol
/// offers no later frame to fence on.
pub const SILENCE: Duration = Duration::from_millis(500);

/// Epoch milliseconds of this machine's clock.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// Epoch seconds of this machine's clock.
pub fn now_secs() -> u64 {
    now_ms() / 1000
}

/// A name no other case (in this or any concurrent run) uses: `prefix` plus a suffix from the
/// clock, the process id and a counter.
pub fn unique(prefix: &str) -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    format!(
        "{prefix}-{:x}{:x}{nanos:x}{n:x}",
        now_secs(),
        std::process::id()
    )
}

/// Claims of a `user` token for `tenant` granting `rooms`, valid for an hour.
pub fn claims(tenant: &str, user: &str, rooms: &[&str]) -> Claims {
    Claims {
        sub: Some(user.to_owned()),
        tid: Some(tenant.to_owned()),
        rooms: rooms.iter().map(|r| (*r).to_owned()).collect(),
        exp: Some(now_secs() + 3600),
        iat: Some(now_secs()),
        ..Claims::default()
    }
}

/// One case's tenant on one deployment.
pub struct Scope<'d> {
    /// The deployment.
    pub d: &'d dyn Deployment,
    /// The tenant id, unique to this case run.
    pub tenant: String,
    devices: AtomicU64,
}

impl<'d> Scope<'d> {
    /// A fresh tenant for `case`.
    pub fn new(d: &'d dyn Deployment, case: &str) -> Self {
        Self {
            d,
            tenant: unique(case),
            devices: AtomicU64::new(0),
        }
    }

    /// Claims of `user` in this tenant granting `rooms`.
    pub fn claims(&self, user: &str, rooms: &[&str]) -> Claims {
        claims(&self.tenant, user, rooms)
    }

    /// A signed token of `user` granting `rooms`.
    pub fn token(&self, user: &str, rooms: &[&str]) -> String {
        self.d.sign(&self.claims(user, rooms))
    }

    /// A signed token of `user` with role `service` (server-side publish).
    pub fn service_token(&self, user: &str) -> String {
        self.d.sign(&Claims {
            role: Role::Service,
            ..self.claims(user, &[])
        })
    }

    /// Connects `user` with a token granting every room of the tenant.
    pub async fn connect(&self, user: &str) -> anyhow::Result<Client> {
        self.connect_with(user, &self.token(user, &["*"])).await
    }

    /// Connects `user` with `token`.
    pub async fn connect_with(&self, user: &str, token: &str) -> anyhow::Result<Client> {
        let device = self.devices.fetch_add(1, Ordering::Relaxed);
        Client::connect(self.d, token, &format!("{user}#{device}")).await
    }

    /// Connects `user` with `token` for use of `room` ([`Deployment::room_ws_url`]).
    pub async fn connect_in(&self, room: &str, user: &str, token: &str) -> anyhow::Result<Client> {
        let device = self.devices.fetch_add(1, Ordering::Relaxed);
        let label = format!("{user}#{device}@{room}");
        Client::connect(&InRoom::new(self.d, room), token, &label).await
    }

    /// Connects `user` for use of `room` and joins it; returns the client and its `joined`
    /// frame.
    pub async fn member(&self, user: &str, room: &str) -> anyhow::Result<(Client, Value)> {
        let mut client = self
            .connect_in(room, user, &self.token(user, &["*"]))
            .await?;
        let joined = client.join(room).await?;
        Ok((client, joined))
    }

    /// A client message id unique to this case run.
    pub fn id(&self, tag: &str) -> String {
        let device = self.devices.fetch_add(1, Ordering::Relaxed);
        format!("{tag}-{device}")
    }
}

/// The `seq` of every frame, in order.
pub fn seqs(frames: &[Value]) -> Vec<u64> {
    frames.iter().filter_map(|f| f["seq"].as_u64()).collect()
}

/// The `seq` of every `message` frame among `frames`, in order.
pub fn message_seqs(frames: &[Value]) -> Vec<u64> {
    frames
        .iter()
        .filter(|f| frame_type(f) == "message")
        .filter_map(|f| f["seq"].as_u64())
        .collect()
}

/// Runs `check` until it succeeds or [`wait_timeout`] passes, pausing `interval` between tries;
/// returns the last error on timeout. For server state the protocol has no event for (e.g. a
/// disconnect having been processed).
pub async fn eventually<T, F, Fut>(interval: Duration, mut check: F) -> anyhow::Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = anyhow::Result<T>>,
{
    let deadline = Instant::now() + wait_timeout();
    loop {
        match check().await {
            Ok(v) => return Ok(v),
            Err(e) if Instant::now() + interval >= deadline => {
                bail!("still failing after {:?}: {e:#}", wait_timeout())
            }
            Err(_) => tokio::time::sleep(interval).await,
        }
    }
}

/// Collects the failures of table-driven checks, to report every failing row at once.
#[derive(Debug, Default)]
pub struct Failures(Vec<String>);

impl Failures {
    /// Records `result` under `label` when it failed.
    pub fn check(&mut self, label: &str, result: anyhow::Result<()>) {
        if let Err(e) = result {
            self.0.push(format!("{label}: {e:#}"));
        }
    }

    /// Fails with every recorded failure, if any.
    pub fn finish(self) -> anyhow::Result<()> {
        if self.0.is_empty() {
            Ok(())
        } else {
            bail!(
                "{} failing row(s):\n  - {}",
                self.0.len(),
                self.0.join("\n  - ")
            )
        }
    }
}
