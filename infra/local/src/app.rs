//! [`App`]: the running server's shared state (the chat service over its stores, the socket
//! registry, metrics, the configuration), and the three calls the sockets make into the service:
//! in-process through the core's typed front door, or, in forwarding mode, as API Gateway events
//! to Lambda functions.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{SystemTime, UNIX_EPOCH};

use rand::RngCore;
use roomcast_apigw::emulated::Socket;
use roomcast_core::events::EndpointRules;
use roomcast_core::ratelimit::{RateDecision, RatePolicy, RateState};
use roomcast_core::service::{Attachments, Entropy, Events};
use roomcast_core::service::{ChatService, ConnectRefusal, FrameOutcome, Inbound, Upgrade};
use roomcast_core::store::memory::{MemoryConnections, MemoryHistory};
use roomcast_core::store::memory_attachments::MemoryAttachments;
use roomcast_core::store::{
    AttachmentIndex, Connection, ConnectionStore, DeskDirectory, HistoryStore, MemoryDesk, Outbox,
};
use serde_json::json;
use tokio::sync::Notify;

use crate::blobs::FileBlobs;
use crate::config::{ServerConfig, StoreKind};
use crate::embedded::EmbeddedHistory;
use crate::forward::LambdaForwarder;
use crate::gateway::{LocalGateway, Outbound};
use crate::metrics::Metrics;
use roomcast_webhook::CheckedResolver;

/// Epoch milliseconds: the adapter's clock, passed to the service as `now`.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// The running server's shared state.
pub struct App {
    pub(crate) service: ChatService,
    /// The store's outbox, when integration events are on (the webhook deliverer drains it).
    pub(crate) outbox: Option<Arc<dyn Outbox>>,
    /// Attachment bytes, when attachments are on (the signed-link routes use them).
    pub(crate) blobs: Option<Arc<FileBlobs>>,
    pub(crate) gateway: Arc<LocalGateway>,
    pub(crate) metrics: Arc<Metrics>,
    pub(crate) live: Option<Arc<MemoryConnections>>,
    forwarder: Option<LambdaForwarder>,
    pub(crate) config: ServerConfig,
    request_ids: AtomicU64,
    /// Live WebSocket connections (and upgrades in progress) per client address.
    pub(crate) per_ip: Mutex<HashMap<IpAddr, usize>>,
    /// HTTP API request rate per client address ([`App::admit_http`]).
    http_rates: Mutex<HashMap<IpAddr, RateState>>,
    /// Woken after every frame and HTTP request: the webhook deliverer looks at the journal.
    pub(crate) events_wake: Notify,
}

/// How many users' worth of HTTP API requests one client address may make: an office or a
/// carrier NAT puts several users behind one address, and each user has a rate of their own
/// besides.
pub const HTTP_USERS_PER_ADDRESS: u32 = 5;

/// Addresses whose HTTP rate is remembered before idle ones are forgotten.
const HTTP_RATES_PRUNE_AT: usize = 10_000;

/// A `$connect` the route accepted: the subprotocol to echo and, when the service ran
/// in-process, the connection (its token expiry is a lifecycle deadline; behind Lambda
/// functions, as behind API Gateway, the functions check expiry on each frame instead).
pub(crate) struct Connected {
    pub(crate) subprotocol: Option<String>,
    pub(crate) connection: Option<Connection>,
}

/// The stores of one mode.
struct Stores {
    connections: Arc<dyn ConnectionStore>,
    history: Arc<dyn HistoryStore>,
    /// The live connections, when they are in memory (gauges read them).
    live: Option<Arc<MemoryConnections>>,
    outbox: Option<Arc<dyn Outbox>>,
    attachments: Arc<dyn AttachmentIndex>,
    /// The support desk's records; `None` turns the desk's features off.
    desk: Option<Arc<dyn DeskDirectory>>,
}

impl Stores {
    /// The stores of a mode whose connections live in this process (embedded or memory).
    fn in_process(
        history: Arc<dyn HistoryStore>,
        outbox: Arc<dyn Outbox>,
        attachments: Arc<dyn AttachmentIndex>,
        desk: Arc<dyn DeskDirectory>,
    ) -> Self {
        let live = Arc::new(MemoryConnections::new());
        Self {
            connections: live.clone(),
            history,
            live: Some(live),
            outbox: Some(outbox),
            attachments,
            desk: Some(desk),
        }
    }
}

/// Uploads never attached are looked for this often.
const SWEEP_EVERY: std::time::Duration = std::time::Duration::from_secs(10 * 60);
/// Most abandoned uploads removed per store call.
const SWEEP_BATCH: usize = 500;

/// Random bytes from the operating system's generator (seeding a thread-local CSPRNG).
fn os_entropy() -> Entropy {
    Arc::new(|bytes: &mut [u8]| rand::rng().fill_bytes(bytes))
}

impl App {
    /// Opens the store named by `config` and builds the service over it.
    pub async fn build(config: ServerConfig) -> anyhow::Result<Arc<Self>> {
        let metrics = Arc::new(Metrics::default());
        let gateway = Arc::new(LocalGateway::new(metrics.clone()));
        let Stores {
            connections,
            history,
            live,
            outbox,
            attachments,
            desk,
        } = open_stores(&config).await?;
        let mut service = ChatService::new(
            config.settings.verifier()?,
            connections,
            history,
            gateway.clone(),
            config.settings.service.clone(),
        )
        // Many tasks store and deliver at once here: each room's messages go out in seq order.
        .with_ordered_delivery();
        if let Some(desk) = desk {
            service = service.with_desk(desk);
        }
        let blobs = open_blobs(&config)?;
        if let Some(blobs) = &blobs {
            let settings = &config.settings.attachments;
            service = service.with_attachments(Attachments {
                index: attachments,
                blobs: blobs.clone(),
                policy: settings.policy.clone(),
                quota: settings.quota,
                entropy: os_entropy(),
            });
        }
        if let Some(outbox) = &outbox {
            let rules = endpoint_rules(&config);
            service = service.with_events(Events {
                log: outbox.clone(),
                registry: Some(outbox.clone()),
                resolver: Arc::new(CheckedResolver::new(rules.clone())),
                rules,
                config: config.settings.events.clone(),
                entropy: os_entropy(),
            });
        }
        let forwarder = config.lambda_endpoint.as_deref().map(LambdaForwarder::new);
        Ok(Arc::new(Self {
            service,
            outbox,
            blobs,
            gateway,
            metrics,
            live,
            forwarder,
            config,
            request_ids: AtomicU64::new(0),
            per_ip: Mutex::new(HashMap::new()),
            http_rates: Mutex::new(HashMap::new()),
            events_wake: Notify::new(),
        }))
    }

    /// Starts delivering integration events (when the store keeps an outbox).
    pub fn start_webhooks(self: &Arc<Self>) -> anyhow::Result<()> {
        crate::webhooks::spawn(self.clone(), endpoint_rules(&self.config))
    }

    /// Starts removing uploads never attached ([`ChatService::sweep_abandoned_uploads`]) every
    /// [`SWEEP_EVERY`], first right away (the server may have been down when some expired).
    pub fn start_sweeping(self: &Arc<Self>) {
        if self.blobs.is_none() {
            return;
        }
        // Weak: the task must not keep the app (and a scratch directory) alive at shutdown.
        let app = Arc::downgrade(self);
        tokio::spawn(async move {
            let mut every = tokio::time::interval(SWEEP_EVERY);
            every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                every.tick().await;
                let Some(app) = app.upgrade() else { return };
                // A full batch may mean more are waiting: take them now, not in ten minutes.
                loop {
                    let removed = app
                        .service
                        .sweep_abandoned_uploads(now_ms(), SWEEP_BATCH)
                        .await;
                    if removed > 0 {
                        tracing::info!(removed, "abandoned uploads removed");
                    }
                    if removed < SWEEP_BATCH {
                        break;
                    }
                }
            }
        });
    }

    /// A frame or request was handled: it may have journaled an event.
    pub(crate) fn wake_events(&self) {
        self.events_wake.notify_one();
    }

    /// The resolved configuration.
    pub fn config(&self) -> &ServerConfig {
        &self.config
    }

    pub(crate) fn request_id(&self) -> String {
        format!("local-{}", self.request_ids.fetch_add(1, Ordering::Relaxed))
    }

    /// `$connect` for a socket whose upgrade request carried `headers` and `query`.
    pub(crate) async fn connect(
        &self,
        socket: &Socket,
        headers: HashMap<String, String>,
        query: HashMap<String, String>,
        now: u64,
    ) -> Result<Connected, ConnectRefusal> {
        let Some(forwarder) = &self.forwarder else {
            let upgrade = Upgrade {
                token_param: query.get("token").map(String::as_str),
                protocols: headers.get("sec-websocket-protocol").map(String::as_str),
                origin: headers.get("origin").map(String::as_str),
            };
            let accepted = self.service.connect(&socket.id, upgrade, now).await?;
            return Ok(Connected {
                subprotocol: accepted.subprotocol,
                connection: Some(accepted.connection),
            });
        };
        let event = socket.connect(self.request_id(), now, headers, query);
        let response = match forwarder.invoke(&event).await {
            Ok(response) => response,
            Err(e) => {
                tracing::warn!(route = "$connect", error = %e, "route integration failed");
                return Err(ConnectRefusal {
                    status: 500,
                    reason: "Internal server error".into(),
                });
            }
        };
        if response.status_code != 200 {
            return Err(ConnectRefusal {
                status: response.status_code,
                reason: response.body.unwrap_or_default(),
            });
        }
        Ok(Connected {
            subprotocol: response
                .headers
                .and_then(|mut h| h.remove("Sec-WebSocket-Protocol")),
            connection: None,
        })
    }

    /// Text frames that arrived together on a socket, in order; one outcome each. In process
    /// the service handles them together ([`ChatService::frames`]: messages sent without
    /// waiting share a commit); behind Lambda functions each is its own route event, as API
    /// Gateway makes it.
    ///
    /// Boxed: the service's future is the largest part of a socket task's state (kilobytes),
    /// and inline every idle connection would carry it; boxed, only frames being handled do.
    pub(crate) fn frames<'a>(
        &'a self,
        socket: &'a Socket,
        texts: &'a [&'a str],
        now: u64,
    ) -> futures::future::BoxFuture<'a, Vec<FrameOutcome>> {
        Box::pin(async move {
            let Some(forwarder) = &self.forwarder else {
                let inbound: Vec<Inbound<'_>> = texts.iter().map(|t| Inbound::Text(t)).collect();
                let outcomes = self.service.frames(&socket.id, &inbound, now).await;
                self.wake_events();
                return outcomes;
            };
            for text in texts {
                let event = socket.message(self.request_id(), now, text);
                if let Err(e) = forwarder.invoke(&event).await {
                    tracing::warn!(route = %event.request_context.route_key, error = %e, "route integration failed");
                    // What API Gateway sends a client whose route integration failed.
                    let frame = json!({
                        "message": "Internal server error",
                        "connectionId": socket.id,
                        "requestId": event.request_context.request_id,
                    });
                    let _ = self
                        .gateway
                        .enqueue(&socket.id, Outbound::Text(frame.to_string().into()));
                }
            }
            vec![FrameOutcome::default(); texts.len()]
        })
    }

    /// `$disconnect`; `code` is the client's close code when the client closed.
    pub(crate) async fn disconnect(&self, socket: &Socket, code: Option<u16>, now: u64) {
        let Some(forwarder) = &self.forwarder else {
            self.service.disconnect(&socket.id, now).await;
            self.wake_events();
            return;
        };
        let event = socket.disconnect(self.request_id(), now, code);
        if let Err(e) = forwarder.invoke(&event).await {
            tracing::warn!(route = "$disconnect", error = %e, "route integration failed");
        }
    }

    /// The Lambda forwarder, in forwarding mode.
    pub(crate) fn forwarder(&self) -> Option<&LambdaForwarder> {
        self.forwarder.as_ref()
    }

    /// Takes a token for an HTTP API request from `ip`: [`HTTP_USERS_PER_ADDRESS`] times the
    /// configured rate, with its burst, before the token in the request is even looked at (so
    /// an address cannot make the server verify signatures without bound either). False:
    /// answer 429.
    pub(crate) fn admit_http(&self, ip: IpAddr, now_ms: u64) -> bool {
        let rate = self.config.settings.service.rate;
        let policy = RatePolicy {
            burst: rate.burst.saturating_mul(HTTP_USERS_PER_ADDRESS),
            per_sec: rate.per_sec.saturating_mul(HTTP_USERS_PER_ADDRESS),
            // No connection to close: every refusal is a 429.
            max_strikes: u32::MAX,
        };
        let mut rates = self
            .http_rates
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if rates.len() >= HTTP_RATES_PRUNE_AT {
            rates.retain(|_, state| !state.is_idle(&policy, now_ms));
        }
        let state = rates.entry(ip).or_default();
        state.take(&policy, now_ms) == RateDecision::Allow
    }

    /// Takes one of `ip`'s connection slots ([`ServerConfig::max_connections_per_ip`]), or
    /// returns how many it holds already.
    pub(crate) fn take_ip_slot(self: &Arc<Self>, ip: IpAddr) -> Result<IpSlot, usize> {
        let mut per_ip = self.per_ip.lock().unwrap_or_else(PoisonError::into_inner);
        let held = per_ip.entry(ip).or_insert(0);
        if *held >= self.config.max_connections_per_ip {
            return Err(*held);
        }
        *held += 1;
        Ok(IpSlot {
            app: self.clone(),
            ip,
        })
    }
}

/// One of an address's connection slots, held from the upgrade request until its socket ends
/// (or the upgrade is refused or fails).
pub(crate) struct IpSlot {
    app: Arc<App>,
    ip: IpAddr,
}

impl Drop for IpSlot {
    fn drop(&mut self) {
        let mut per_ip = self
            .app
            .per_ip
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(held) = per_ip.get_mut(&self.ip) {
            *held = held.saturating_sub(1);
            if *held == 0 {
                per_ip.remove(&self.ip);
            }
        }
    }
}

/// Live state in memory with history and attachment slots embedded or in memory; or
/// everything in DynamoDB.
async fn open_stores(config: &ServerConfig) -> anyhow::Result<Stores> {
    if let Some((endpoint, table)) = &config.dynamodb {
        return dynamodb_stores(endpoint, table).await;
    }
    Ok(match config.store {
        StoreKind::Embedded => {
            let store = Arc::new(EmbeddedHistory::open(&config.data_dir)?);
            Stores::in_process(store.clone(), store.clone(), store.clone(), store)
        }
        StoreKind::Memory => {
            let store = Arc::new(MemoryHistory::new());
            Stores::in_process(
                store.clone(),
                store,
                Arc::new(MemoryAttachments::new()),
                Arc::new(MemoryDesk::new()),
            )
        }
    })
}

/// Where attachment bytes go: `{data-dir}/attachments/`, or with `--store memory` (which
/// keeps nothing) a scratch directory removed on exit. `None`, with a warning, when there is
/// no key to sign links with (RS256/ES256 tokens and no `ROOMCAST_ATTACHMENT_LINK_SECRET`).
fn open_blobs(config: &ServerConfig) -> anyhow::Result<Option<Arc<FileBlobs>>> {
    let signer = match config.settings.attachments.link_signer() {
        Ok(signer) => signer,
        Err(e) => {
            tracing::warn!(error = %e, "attachments are off");
            return Ok(None);
        }
    };
    let blobs = if config.store == StoreKind::Memory && config.dynamodb.is_none() {
        FileBlobs::scratch(signer)
    } else {
        let root = config.data_dir.join("attachments");
        FileBlobs::open(&root, signer)
    }
    .map_err(|e| anyhow::anyhow!("opening the attachment files: {e}"))?;
    Ok(Some(Arc::new(blobs)))
}

/// An address as a URL host (IPv6 in brackets).
fn host_text(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(v4) => v4.to_string(),
        IpAddr::V6(v6) => format!("[{v6}]"),
    }
}

/// What webhook endpoint URLs may be: public addresses (all kinds with
/// `--webhook-allow-private`), never this server's listeners (the Management API included).
fn endpoint_rules(config: &ServerConfig) -> EndpointRules {
    let mut own_origins = Vec::new();
    for at in std::iter::once(config.listen).chain(config.management_listen) {
        let port = at.port();
        own_origins.push((host_text(at.ip()), port));
        if at.ip().is_unspecified() || at.ip().is_loopback() {
            own_origins.extend(
                ["localhost", "127.0.0.1", "[::1]"]
                    .into_iter()
                    .map(|h| (h.to_owned(), port)),
            );
        }
    }
    EndpointRules {
        development: config.settings.events.allow_private,
        own_origins,
    }
}

#[cfg(feature = "dynamodb")]
async fn dynamodb_stores(endpoint: &str, table: &str) -> anyhow::Result<Stores> {
    use anyhow::Context;
    use roomcast_aws::{DynamoConfig, DynamoStore};
    // Emulators accept any credentials; real DynamoDB gets the usual credential chain.
    let client = if std::env::var_os("AWS_ACCESS_KEY_ID").is_some()
        || std::env::var_os("AWS_PROFILE").is_some()
    {
        let sdk = aws_config::defaults(aws_config::BehaviorVersion::latest())
            .endpoint_url(endpoint)
            .load()
            .await;
        aws_sdk_dynamodb::Client::new(&sdk)
    } else {
        roomcast_aws::dynamo::emulator_client(endpoint).await
    };
    let store = Arc::new(DynamoStore::new(client, table, DynamoConfig::default()));
    store
        .ensure_table()
        .await
        .with_context(|| format!("creating table `{table}` at {endpoint}"))?;
    tracing::info!(endpoint, table, "store: DynamoDB");
    // On AWS the table's stream carries events (the events function); this mode delivers none.
    // Attachment slots are in the table as on AWS; their bytes are files here, and an
    // abandoned upload's file stays (the table expires its slot by TTL, so the sweep never
    // lists it).
    Ok(Stores {
        connections: store.clone(),
        history: store.clone(),
        live: None,
        outbox: None,
        attachments: store.clone(),
        desk: Some(store),
    })
}

#[cfg(not(feature = "dynamodb"))]
async fn dynamodb_stores(_endpoint: &str, _table: &str) -> anyhow::Result<Stores> {
    anyhow::bail!("this build has no DynamoDB support: rebuild with `--features dynamodb`")
}
