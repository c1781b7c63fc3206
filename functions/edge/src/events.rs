//! Integration events on the edge (docs/events.md, "The edge"): one [`TenantEvents`] Durable
//! Object per tenant, named after the tenant, and the room objects' side of it, [`RoomJournal`].
//!
//! - A `ChatRoom` journals each change's event in its own SQLite, in the same synchronous turn
//!   as the change ([`crate::outbox::Journal`]), so a crash loses both or neither. Its alarm runs
//!   the core's `ChatService::dispatch_events` over a [`RoomJournal`]: the journal is the room's,
//!   the endpoints and deliveries are the tenant object's (two stub requests per batch), and
//!   the room forgets its journal only once the tenant object has stored the deliveries.
//! - A `TenantEvents` keeps the tenant's endpoints (and a copy of the operator's), pending
//!   deliveries, dead letters and attempt records in its SQLite (the outbox of a
//!   [`SqlHistory`] that holds no messages), serves the endpoints API
//!   (the core's `http::handle` over a `ChatService` with events), and delivers: one
//!   [`EndpointQueue`] per endpoint, each attempt a `fetch` in its own task, the outcome stored
//!   (acknowledged, rescheduled or dead-lettered, with an attempt record). Its alarm is set for
//!   the earliest queue deadline or pending delivery, so deliveries resume after a restart.
//!   It also keeps the tenant's per-day upload quotas, charged by its room objects
//!   (`uploads.rs`), and the tenant's support desk records (`desk.rs`), and answers
//!   `POST /embed/token` for the tenant's publishable keys (their rate limits are its own).

use std::cell::Cell;
use std::cell::RefCell;
use std::collections::HashMap;
use std::future::{Future, poll_fn};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::pin::pin;
use std::rc::Rc;
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;

use roomcast_core::ChatService;
use roomcast_core::config::{EventsConfig, Settings};
use roomcast_core::events::delivery::parse_retry_after;
use roomcast_core::events::registry::AttemptRecord;
use roomcast_core::events::signing::sign;
use roomcast_core::events::{
    AttemptResult, Endpoint, EndpointQueue, EndpointRules, Event, Outcome, Verdict,
};
use roomcast_core::http;
use roomcast_core::service::{Entropy, Events, Resolver};
use roomcast_core::store::{
    DeliveryBacklog, EndpointRegistry, EventJournal, EventLog, Journaled, OutboxEntry, StoreError,
};
use worker::wasm_bindgen::JsValue;
use worker::{
    AbortController, Delay, DurableObject, Env, Fetch, Headers, Method, Request, RequestInit,
    RequestRedirect, Response, Result, ScheduledTime, State, Stub, durable_object,
};

use crate::config::EdgeConfig;
use crate::desk::{SqlDesk, serve_desk};
use crate::history::{Rooms, SqlHistory};
use crate::now_ms;
use crate::outbox::Journaling;
use crate::room::{ApiRequest, json_reply};
use crate::routes::{EdgeRoute, edge_route};
use crate::sockets::{EdgeConnections, EdgeGateway, Sockets};
use crate::uploads::{create_quota_table, serve_charge};

pub use class::TenantEvents;

/// The tenant objects' namespace binding (wrangler.toml).
pub const EVENTS_BINDING: &str = "EVENTS";

/// The URLs of the room objects' requests to their tenant object; only the path matters.
const ENDPOINTS_URL: &str = "https://tenant-events.internal/__events/endpoints";
const DISPATCH_URL: &str = "https://tenant-events.internal/__events/dispatch";

/// Due deliveries loaded per endpoint per turn.
const LOAD_PER_ENDPOINT: usize = 64;
/// An endpoint's queue is not topped up beyond this.
const QUEUE_HIGH_WATER: usize = 256;

/// The stub of `tenant`'s events object.
pub fn tenant_object(env: &Env, tenant: &str) -> Result<Stub> {
    env.durable_object(EVENTS_BINDING)?
        .id_from_name(tenant)?
        .get_stub()
}

/// A failed request to the tenant object. Not `Unavailable`: the object may have written before
/// the answer was lost (its `dispatch` is idempotent, so the caller just tries again).
fn store_error(what: &str) -> impl Fn(worker::Error) -> StoreError + '_ {
    move |e| StoreError::Other(format!("{what}: {e}"))
}

/// A request to the tenant object; its JSON answer.
pub(crate) async fn ask_tenant<T: serde::de::DeserializeOwned>(
    stub: &Stub,
    url: &str,
    body: Option<String>,
) -> Result<T> {
    let mut init = RequestInit::new();
    match body {
        Some(body) => init
            .with_method(Method::Post)
            .with_body(Some(JsValue::from_str(&body))),
        None => init.with_method(Method::Get),
    };
    let mut response = stub
        .fetch_with_request(Request::new_with_init(url, &init)?)
        .await?;
    if response.status_code() != 200 {
        let reason = response.text().await.unwrap_or_default();
        return Err(worker::Error::RustError(format!(
            "the tenant's events object answered {}: {reason}",
            response.status_code()
        )));
    }
    response.json().await
}

/// A room object's journal: in the room's own SQLite, dispatched to the tenant's
/// [`TenantEvents`], which keeps endpoints and deliveries (and serves the endpoints API).
pub struct RoomJournal {
    local: Arc<SqlHistory>,
    tenant: Stub,
}

impl RoomJournal {
    /// The journal of a room object of `tenant`, in the room's `local` store.
    pub fn new(local: Arc<SqlHistory>, env: &Env, tenant: &str) -> Result<Self> {
        Ok(Self {
            local,
            tenant: tenant_object(env, tenant)?,
        })
    }

    /// Whether events wait in the journal (then the room's alarm dispatches them).
    pub fn has_journal(&self) -> std::result::Result<bool, StoreError> {
        self.local.has_journal()
    }

    /// The tenant's endpoints and the operator's (a room's events are its tenant's).
    pub async fn endpoints(&self) -> std::result::Result<Vec<Endpoint>, StoreError> {
        ask_tenant(&self.tenant, ENDPOINTS_URL, None)
            .await
            .map_err(store_error("the tenant's endpoints"))
    }
}

#[async_trait::async_trait(?Send)]
impl EventLog for RoomJournal {
    async fn record(&self, events: &[Event]) -> std::result::Result<bool, StoreError> {
        self.local.record(events).await
    }
}

#[async_trait::async_trait(?Send)]
impl EventJournal for RoomJournal {
    async fn journal(&self, limit: usize) -> std::result::Result<Vec<Journaled>, StoreError> {
        self.local.journal(limit).await
    }

    /// The entries go to the tenant object first; the journal is forgotten once it has them (a
    /// crash in between dispatches them again, and the tenant object skips those it holds).
    async fn dispatch(
        &self,
        through: u64,
        entries: &[OutboxEntry],
    ) -> std::result::Result<usize, StoreError> {
        let added = if entries.is_empty() {
            0
        } else {
            let body = serde_json::to_string(entries)
                .map_err(|e| StoreError::Other(format!("entries: {e}")))?;
            ask_tenant(&self.tenant, DISPATCH_URL, Some(body))
                .await
                .map_err(store_error("dispatch to the tenant"))?
        };
        self.local.forget_journal(through)?;
        Ok(added)
    }
}

/// Endpoint host resolution for the SSRF check. A Worker has no resolver of its own: `localhost`
/// names are loopback (RFC 6761); other names are looked up with DNS over HTTPS (Cloudflare's
/// resolver), so a name that points at a private address is refused like the address itself.
/// The delivery's `fetch` resolves again; what it can reach is the platform's (docs/events.md).
pub struct EdgeResolver;

const DOH_URL: &str = "https://cloudflare-dns.com/dns-query";

#[async_trait::async_trait(?Send)]
impl Resolver for EdgeResolver {
    async fn resolve(&self, host: &str, _port: u16) -> std::result::Result<Vec<IpAddr>, String> {
        let host = host.trim_end_matches('.').to_ascii_lowercase();
        if host == "localhost" || host.ends_with(".localhost") {
            return Ok(vec![
                IpAddr::V4(Ipv4Addr::LOCALHOST),
                IpAddr::V6(Ipv6Addr::LOCALHOST),
            ]);
        }
        let mut found = Vec::new();
        for kind in ["A", "AAAA"] {
            let headers = Headers::new();
            headers
                .set("accept", "application/dns-json")
                .map_err(|e| e.to_string())?;
            let mut init = RequestInit::new();
            init.with_method(Method::Get).with_headers(headers);
            let url = format!("{DOH_URL}?name={host}&type={kind}");
            let request = Request::new_with_init(&url, &init).map_err(|e| e.to_string())?;
            let mut response = Fetch::Request(request)
                .send()
                .await
                .map_err(|e| e.to_string())?;
            let answer: serde_json::Value = response.json().await.map_err(|e| e.to_string())?;
            let records = answer["Answer"].as_array().cloned().unwrap_or_default();
            found.extend(
                records
                    .iter()
                    .filter_map(|r| r["data"].as_str()?.parse::<IpAddr>().ok()),
            );
        }
        Ok(found)
    }
}

/// What a `ChatService` needs for integration events on the edge: where member events go
/// (`log`), the endpoint registry where it is kept (the tenant object), the configuration's
/// part, endpoint URLs checked with [`EdgeResolver`] (`own_origins` refused), the runtime's
/// randomness.
pub fn events(
    log: Arc<dyn EventLog>,
    registry: Option<Arc<dyn EndpointRegistry>>,
    config: &EventsConfig,
    own_origins: Vec<(String, u16)>,
) -> Events {
    Events {
        log,
        registry,
        resolver: Arc::new(EdgeResolver),
        rules: EndpointRules {
            development: config.allow_private,
            own_origins,
        },
        config: config.clone(),
        entropy: entropy(),
    }
}

/// The runtime's randomness, for ids and secrets.
pub fn entropy() -> Entropy {
    Arc::new(|bytes: &mut [u8]| {
        // Invariant: the runtime's crypto.getRandomValues does not fail for 32 bytes.
        getrandom::fill(bytes).expect("the Workers runtime provides randomness");
    })
}

/// The class the runtime instantiates (see `room.rs` for why it is alone in a module).
mod class {
    #![allow(
        missing_docs,
        reason = "the durable_object macro's generated bindings are undocumented"
    )]

    use super::{Hub, Rc, RefCell, State, durable_object};
    use worker::Env;

    /// One tenant's integration events.
    #[durable_object]
    pub struct TenantEvents {
        pub(super) state: Rc<State>,
        pub(super) env: Env,
        pub(super) hub: RefCell<Option<Rc<Hub>>>,
    }
}

/// What a tenant object runs, built on first use.
pub struct Hub {
    state: Rc<State>,
    settings: Settings,
    outbox: Arc<SqlHistory>,
    /// The tenant's support desk records.
    desk: Arc<SqlDesk>,
    sockets: Rc<Sockets>,
    driver: RefCell<Driver>,
    /// Whether the operator's endpoint was installed since the object started.
    operator_synced: Cell<bool>,
}

/// The deliveries in memory: a queue per endpoint, and the event of each queued delivery.
#[derive(Default)]
struct Driver {
    queues: HashMap<String, EndpointQueue>,
    events: HashMap<(String, String), Event>,
    endpoints: HashMap<String, Endpoint>,
}

/// One attempt to make.
struct Planned {
    endpoint: Endpoint,
    event: Event,
    number: u32,
}

fn random_u64() -> u64 {
    let mut bytes = [0u8; 8];
    // A failed read leaves zeros: the jitter is then the lower bound, still a valid delay.
    let _ = getrandom::fill(&mut bytes);
    u64::from_le_bytes(bytes)
}

impl TenantEvents {
    fn hub(&self) -> std::result::Result<Rc<Hub>, String> {
        if let Some(hub) = self.hub.borrow().as_ref() {
            return Ok(hub.clone());
        }
        let hub = Rc::new(Hub::build(&self.state, &self.env)?);
        *self.hub.borrow_mut() = Some(hub.clone());
        Ok(hub)
    }
}

impl Hub {
    fn build(state: &Rc<State>, env: &Env) -> std::result::Result<Self, String> {
        let EdgeConfig { settings, .. } = EdgeConfig::from_env(env).map_err(|e| e.to_string())?;
        crate::log::init(settings.log);
        let outbox = SqlHistory::open(state.storage().sql(), Rooms::Any, Journaling::WhenEndpoints)
            .map_err(|e| e.to_string())?;
        create_quota_table(outbox.sql()).map_err(|e| e.to_string())?;
        let desk = SqlDesk::open(state.storage().sql()).map_err(|e| e.to_string())?;
        #[allow(
            clippy::arc_with_non_send_sync,
            reason = "the service's ports are Arcs; on wasm32 they are !Send (JS handles)"
        )]
        let desk = Arc::new(desk);
        Ok(Self {
            state: state.clone(),
            settings,
            outbox: Arc::new(outbox),
            desk,
            sockets: Rc::new(Sockets::new(state.clone())),
            driver: RefCell::new(Driver::default()),
            operator_synced: Cell::new(false),
        })
    }

    /// A service for one request: the endpoints API over this object's outbox, the request's
    /// own origin refused as an endpoint; visitor tokens (`POST /embed/token`) with the tenant's
    /// desk records. The tenant object serves only these: its store holds no messages.
    fn service(
        &self,
        own_origin: Option<(String, u16)>,
    ) -> std::result::Result<ChatService, String> {
        let verifier = self.settings.verifier().map_err(|e| e.to_string())?;
        #[allow(
            clippy::arc_with_non_send_sync,
            reason = "ChatService holds its ports in Arcs; on wasm32 they are !Send (JS handles) and one thread runs everything"
        )]
        let service = ChatService::new(
            verifier,
            Arc::new(EdgeConnections(self.sockets.clone())),
            self.outbox.clone(),
            Arc::new(EdgeGateway(self.sockets.clone())),
            self.settings.service.clone(),
        )
        .with_events(events(
            self.outbox.clone(),
            Some(self.outbox.clone()),
            &self.settings.events,
            own_origin.into_iter().collect(),
        ))
        .with_desk(self.desk.clone());
        Ok(service)
    }

    /// The operator's endpoint as the configuration says (every tenant object holds a copy).
    async fn sync_operator(&self) -> std::result::Result<(), String> {
        if self.operator_synced.get() {
            return Ok(());
        }
        self.service(None)?
            .sync_operator_endpoint(now_ms())
            .await
            .map_err(|e| e.to_string())?;
        self.operator_synced.set(true);
        Ok(())
    }

    /// `GET /__events/endpoints` and `POST /__events/dispatch` from the tenant's room objects.
    async fn internal(self: &Rc<Self>, mut req: Request, route: &EdgeRoute) -> Result<Response> {
        match route {
            EdgeRoute::EventsEndpoints => match self.outbox.endpoints(None).await {
                Ok(endpoints) => Response::from_json(&endpoints),
                Err(e) => Response::error(e.to_string(), 503),
            },
            _ => {
                if req.method() != Method::Post {
                    return Response::error("use POST", 405);
                }
                let entries: Vec<OutboxEntry> = match req.json().await {
                    Ok(entries) => entries,
                    Err(e) => return Response::error(format!("not outbox entries: {e}"), 400),
                };
                match self.outbox.dispatch(0, &entries).await {
                    Ok(added) => {
                        self.pump().await;
                        Response::from_json(&added)
                    }
                    Err(e) => Response::error(e.to_string(), 503),
                }
            }
        }
    }

    /// The endpoints API (`/events/endpoints…`) and `POST /embed/token`, then a turn of
    /// deliveries (a test event or a replay is due at once).
    async fn api(self: &Rc<Self>, req: Request) -> Result<Response> {
        let now = now_ms();
        let request = ApiRequest::read(req).await?;
        let url = &request.url;
        let own_origin = url
            .host_str()
            .zip(url.port_or_known_default())
            .map(|(host, port)| (host.to_ascii_lowercase(), port));
        let service = match self.service(own_origin) {
            Ok(service) => service,
            Err(e) => return Response::error(format!("not configured: {e}"), 500),
        };
        let reply = http::handle(&service, &request.http(), None, now).await;
        self.pump().await;
        json_reply(&reply)
    }

    /// One turn: loads due deliveries into the queues, stores the outcomes of attempts past
    /// their deadline, starts the attempts the queues allow (each in its own task), and sets
    /// the alarm for the next deadline. Failures are logged; the alarm retries.
    async fn pump(self: &Rc<Self>) {
        if let Err(e) = self.turn().await {
            tracing::warn!(error = %e, "webhook delivery turn failed; retrying");
            self.arm(Some(now_ms().saturating_add(1_000))).await;
        }
    }

    async fn turn(self: &Rc<Self>) -> std::result::Result<(), StoreError> {
        let now = now_ms();
        let endpoints = self.outbox.endpoints(None).await?;
        let pending = self.outbox.pending(now, LOAD_PER_ENDPOINT).await?;
        let policy = self.settings.events.retry;
        let timed_out = {
            let mut driver = self.driver.borrow_mut();
            let driver = &mut *driver;
            driver.endpoints = endpoints.into_iter().map(|e| (e.id.clone(), e)).collect();
            let known = &driver.endpoints;
            driver.queues.retain(|id, _| known.contains_key(id));
            driver.events.retain(|(ep, _), _| known.contains_key(ep));
            for entry in pending {
                let queue = driver
                    .queues
                    .entry(entry.endpoint.clone())
                    .or_insert_with(|| EndpointQueue::new(policy));
                if queue.len() >= QUEUE_HIGH_WATER {
                    continue;
                }
                let key = (entry.endpoint.clone(), entry.event.id.clone());
                if queue.push(entry.delivery) {
                    driver.events.insert(key, entry.event);
                }
            }
            let mut timed_out = Vec::new();
            for (endpoint, queue) in &mut driver.queues {
                for outcome in queue.handle_timeout(now, &mut random_u64) {
                    timed_out.push((endpoint.clone(), outcome));
                }
            }
            timed_out
        };
        for (endpoint, outcome) in timed_out {
            let elapsed = policy.attempt_timeout_ms;
            self.store_outcome(&endpoint, outcome, AttemptResult::Timeout, now, elapsed)
                .await?;
        }
        for planned in self.plan(now) {
            let hub = self.clone();
            worker::wasm_bindgen_futures::spawn_local(async move { hub.attempt(planned).await });
        }
        let next = self.next_deadline()?;
        self.arm(next).await;
        Ok(())
    }

    /// The attempts the queues allow now.
    fn plan(&self, now: u64) -> Vec<Planned> {
        let mut driver = self.driver.borrow_mut();
        let driver = &mut *driver;
        let mut planned = Vec::new();
        for (endpoint_id, queue) in &mut driver.queues {
            let Some(endpoint) = driver.endpoints.get(endpoint_id) else {
                continue;
            };
            while let Some(attempt) = queue.poll_attempt(now) {
                let key = (endpoint_id.clone(), attempt.event_id.clone());
                if let Some(event) = driver.events.get(&key) {
                    planned.push(Planned {
                        endpoint: endpoint.clone(),
                        event: event.clone(),
                        number: attempt.number,
                    });
                }
            }
        }
        planned
    }

    /// The earliest queue deadline or pending delivery.
    fn next_deadline(&self) -> std::result::Result<Option<u64>, StoreError> {
        let queued = self
            .driver
            .borrow()
            .queues
            .values()
            .filter_map(EndpointQueue::poll_timeout)
            .min();
        let stored = self.outbox.next_due()?;
        Ok(queued.into_iter().chain(stored).min())
    }

    /// Sets the alarm for `at` (now at the earliest), or removes it when nothing is due.
    async fn arm(&self, at: Option<u64>) {
        let storage = self.state.storage();
        let result = match at {
            Some(at) => {
                let at = at.max(now_ms());
                let when = worker::js_sys::Date::new(&JsValue::from_f64(at as f64));
                storage.set_alarm(ScheduledTime::new(when)).await
            }
            None => storage.delete_alarm().await,
        };
        if let Err(e) = result {
            tracing::error!(error = %e, "events alarm not set: deliveries wait for the next request");
        }
    }

    /// One attempt: the signed POST, its outcome stored, then another turn.
    async fn attempt(self: Rc<Self>, planned: Planned) {
        let started = now_ms();
        let timeout = self.settings.events.retry.attempt_timeout_ms;
        let result = post(&planned.endpoint, &planned.event, started, timeout).await;
        let elapsed = now_ms().saturating_sub(started);
        if let Err(e) = self.settle(&planned, result, started, elapsed).await {
            tracing::warn!(error = %e, "delivery outcome not stored; it will be retried");
        }
        self.pump().await;
    }

    /// An attempt's answer: the queue's verdict, stored.
    async fn settle(
        &self,
        planned: &Planned,
        result: AttemptResult,
        started: u64,
        elapsed: u64,
    ) -> std::result::Result<(), StoreError> {
        let outcome = {
            let mut driver = self.driver.borrow_mut();
            let Some(queue) = driver.queues.get_mut(&planned.endpoint.id) else {
                return Ok(());
            };
            if queue.attempt_in_flight(&planned.event.id) != Some(planned.number) {
                // Late: counted as a timeout already.
                return Ok(());
            }
            queue.handle_result(&planned.event.id, result, now_ms(), random_u64())
        };
        match outcome {
            Some(outcome) => {
                self.store_outcome(&planned.endpoint.id, outcome, result, started, elapsed)
                    .await
            }
            None => Ok(()),
        }
    }

    /// Stores a verdict in the outbox, with its attempt record.
    async fn store_outcome(
        &self,
        endpoint: &str,
        outcome: Outcome,
        result: AttemptResult,
        started: u64,
        elapsed: u64,
    ) -> std::result::Result<(), StoreError> {
        let event_id = outcome.delivery.event_id.clone();
        let label = match outcome.verdict {
            Verdict::Delivered => {
                self.outbox.ack(endpoint, &event_id).await?;
                "delivered"
            }
            Verdict::RetryAt(_) => {
                self.outbox.reschedule(endpoint, &outcome.delivery).await?;
                "retry"
            }
            Verdict::DeadLetter(reason) => {
                self.outbox
                    .dead_letter(endpoint, &event_id, reason, now_ms())
                    .await?;
                "dead_letter"
            }
        };
        if !matches!(outcome.verdict, Verdict::RetryAt(_)) {
            self.driver
                .borrow_mut()
                .events
                .remove(&(endpoint.to_owned(), event_id.clone()));
        }
        tracing::debug!(endpoint, event = %event_id, outcome = label, latency_ms = elapsed, "webhook attempt");
        let record = AttemptRecord {
            event_id,
            attempt: outcome.delivery.attempts,
            at: started,
            outcome: label.to_owned(),
            status: outcome.status,
            error: match result {
                AttemptResult::Timeout => Some("timeout".into()),
                AttemptResult::Unreachable => Some("unreachable".into()),
                AttemptResult::Status { .. } => None,
            },
            latency_ms: elapsed,
        };
        self.outbox.record_attempt(endpoint, &record).await
    }
}

/// One signed POST of `event` to `endpoint`: its status (and `Retry-After`), a timeout, or no
/// connection. Redirects are not followed.
async fn post(endpoint: &Endpoint, event: &Event, now: u64, timeout_ms: u64) -> AttemptResult {
    let body = event.to_json();
    let signed = sign(
        &endpoint.signing_secrets(now),
        &event.id,
        now,
        body.as_bytes(),
    );
    let request = (|| {
        let headers = Headers::new();
        headers.set("content-type", "application/json")?;
        headers.set(
            "user-agent",
            concat!("roomcast-webhooks/", env!("CARGO_PKG_VERSION")),
        )?;
        for (name, value) in signed.pairs() {
            headers.set(name, value)?;
        }
        let mut init = RequestInit::new();
        init.with_method(Method::Post)
            .with_headers(headers)
            .with_redirect(RequestRedirect::Manual)
            .with_body(Some(JsValue::from_str(&body)));
        Request::new_with_init(&endpoint.url, &init)
    })();
    let Ok(request) = request else {
        // An endpoint URL that makes no request cannot be delivered to: a final answer.
        return AttemptResult::Status {
            code: 400,
            retry_after_ms: None,
        };
    };
    let controller = AbortController::default();
    let signal = controller.signal();
    let fetch = Fetch::Request(request);
    let mut sent = pin!(fetch.send_with_signal(&signal));
    let mut timer = pin!(Delay::from(Duration::from_millis(timeout_ms)));
    let answer = poll_fn(|cx| {
        if let Poll::Ready(answer) = sent.as_mut().poll(cx) {
            return Poll::Ready(Some(answer));
        }
        if timer.as_mut().poll(cx).is_ready() {
            return Poll::Ready(None);
        }
        Poll::Pending
    })
    .await;
    match answer {
        None => {
            controller.abort();
            AttemptResult::Timeout
        }
        Some(Err(e)) => {
            tracing::debug!(error = %e, "webhook endpoint unreachable");
            AttemptResult::Unreachable
        }
        Some(Ok(response)) => {
            let retry_after_ms = response
                .headers()
                .get("retry-after")
                .ok()
                .flatten()
                .and_then(|v| parse_retry_after(&v, now_ms()));
            AttemptResult::Status {
                code: response.status_code(),
                retry_after_ms,
            }
        }
    }
}

impl DurableObject for TenantEvents {
    fn new(state: State, env: Env) -> Self {
        Self {
            state: Rc::new(state),
            env,
            hub: RefCell::new(None),
        }
    }

    async fn fetch(&self, req: Request) -> Result<Response> {
        let hub = match self.hub() {
            Ok(hub) => hub,
            Err(e) => {
                worker::console_error!("roomcast: TenantEvents not configured: {e}");
                return Response::error(format!("not configured: {e}"), 500);
            }
        };
        if let Err(e) = hub.sync_operator().await {
            tracing::error!(error = %e, "operator webhook endpoint not installed");
        }
        match edge_route(&req.path()) {
            Some(route @ (EdgeRoute::EventsEndpoints | EdgeRoute::EventsDispatch)) => {
                hub.internal(req, &route).await
            }
            Some(EdgeRoute::TenantQuota) => serve_charge(hub.outbox.sql(), req).await,
            Some(EdgeRoute::TenantDesk) => serve_desk(&hub.desk, req).await,
            _ => hub.api(req).await,
        }
    }

    async fn alarm(&self) -> Result<Response> {
        match self.hub() {
            Ok(hub) => hub.pump().await,
            Err(e) => worker::console_error!("roomcast: events alarm without configuration: {e}"),
        }
        Response::ok("")
    }
}
