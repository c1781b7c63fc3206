//! Webhook delivery: the local server's driver of the core's event pipeline, one task.
//!
//! Each turn it dispatches the journal ([`ChatService::dispatch_events`]), loads due deliveries
//! from the outbox into one [`EndpointQueue`] per endpoint, starts the attempts the queues ask
//! for (each a signed Standard Webhooks POST in its own task, so a slow endpoint never delays
//! another, nor chat), and stores each outcome: acknowledged, rescheduled, or dead-lettered,
//! with an attempt record. It sleeps until a frame or request may have journaled something
//! ([`App::wake_events`]), an answer comes back, or the earliest queue deadline.
//!
//! Addresses are checked at delivery too ([`CheckedResolver`]): a host whose DNS later points
//! at a private address is refused then (outside development mode), and the connection goes to
//! the addresses checked, so rebinding between check and connect cannot walk around it.

use std::collections::HashMap;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::connect::dns::Name;
use hyper_util::rt::TokioExecutor;
use rand::Rng;
use roomcast_core::events::delivery::parse_retry_after;
use roomcast_core::events::endpoint::{AddressClass, EndpointRules, classify};
use roomcast_core::events::registry::AttemptRecord;
use roomcast_core::events::signing::sign;
use roomcast_core::events::{
    AttemptResult, Endpoint, EndpointQueue, Event, Outcome, RetryPolicy, Verdict,
};
use roomcast_core::service::Resolver;
use roomcast_core::store::{Outbox, StoreError};
use tokio::sync::mpsc;

use crate::app::{App, now_ms};

/// Journal events dispatched per store call.
const DISPATCH_BATCH: usize = 256;
/// Due deliveries loaded per endpoint per turn.
const LOAD_PER_ENDPOINT: usize = 64;
/// An endpoint's queue is not topped up beyond this.
const QUEUE_HIGH_WATER: usize = 256;
/// Longest sleep without a wake-up: the outbox is re-read at least this often (deliveries
/// replayed over the API, retries due).
const IDLE_POLL: Duration = Duration::from_millis(500);
/// Response bytes read (and discarded) before the connection is dropped.
const MAX_RESPONSE_BYTES: usize = 64 * 1024;

/// Resolves endpoint hosts with the system resolver and refuses addresses the rules forbid.
#[derive(Clone)]
pub struct CheckedResolver {
    rules: Arc<EndpointRules>,
}

impl CheckedResolver {
    /// A resolver under `rules`.
    pub fn new(rules: EndpointRules) -> Self {
        Self {
            rules: Arc::new(rules),
        }
    }

    fn allowed(&self, address: IpAddr) -> Result<(), String> {
        match classify(address) {
            Some(class)
                if !(self.rules.development && AddressClass::allowed_in_development(class)) =>
            {
                Err(format!("{address} is a {class:?} address"))
            }
            _ => Ok(()),
        }
    }
}

#[async_trait::async_trait]
impl Resolver for CheckedResolver {
    async fn resolve(&self, host: &str, port: u16) -> Result<Vec<IpAddr>, String> {
        let found = tokio::net::lookup_host((host, port))
            .await
            .map_err(|e| e.to_string())?;
        Ok(found.map(|a| a.ip()).collect())
    }
}

/// hyper's DNS hook: every address must pass, and only those are connected to.
impl tower_service::Service<Name> for CheckedResolver {
    type Response = std::vec::IntoIter<SocketAddr>;
    type Error = std::io::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, name: Name) -> Self::Future {
        let this = self.clone();
        Box::pin(async move {
            let found: Vec<SocketAddr> =
                tokio::net::lookup_host((name.as_str(), 0)).await?.collect();
            for address in &found {
                this.allowed(address.ip())
                    .map_err(|e| std::io::Error::new(std::io::ErrorKind::PermissionDenied, e))?;
            }
            Ok(found.into_iter())
        })
    }
}

type HttpsClient =
    Client<hyper_rustls::HttpsConnector<HttpConnector<CheckedResolver>>, Full<Bytes>>;

/// The delivery client: HTTP/1 over TLS (system roots) or plain HTTP, through the checked
/// resolver. Redirects are not followed (hyper's client never does).
fn client(resolver: CheckedResolver, timeout: Duration) -> anyhow::Result<HttpsClient> {
    let mut http = HttpConnector::new_with_resolver(resolver);
    http.enforce_http(false);
    http.set_connect_timeout(Some(timeout));
    let https = hyper_rustls::HttpsConnectorBuilder::new()
        .with_provider_and_native_roots(rustls::crypto::ring::default_provider())?
        .https_or_http()
        .enable_http1()
        .wrap_connector(http);
    Ok(Client::builder(TokioExecutor::new()).build(https))
}

/// An attempt's answer, back from its task.
struct Answer {
    endpoint: String,
    event_id: String,
    number: u32,
    started_ms: u64,
    elapsed: Duration,
    result: AttemptResult,
}

/// The delivery loop's state.
struct Deliverer {
    app: Arc<App>,
    outbox: Arc<dyn Outbox>,
    client: HttpsClient,
    policy: RetryPolicy,
    queues: HashMap<String, EndpointQueue>,
    /// The event of every delivery held in a queue, by (endpoint, event id).
    events: HashMap<(String, String), Event>,
    endpoints: HashMap<String, Endpoint>,
    answers: (
        mpsc::UnboundedSender<Answer>,
        mpsc::UnboundedReceiver<Answer>,
    ),
}

/// Starts the delivery task (a no-op loop when the store has no outbox).
pub fn spawn(app: Arc<App>, rules: EndpointRules) -> anyhow::Result<()> {
    let Some(outbox) = app.outbox.clone() else {
        return Ok(());
    };
    let policy = app.config.settings.events.retry;
    let client = client(
        CheckedResolver::new(rules),
        Duration::from_millis(policy.attempt_timeout_ms),
    )?;
    let deliverer = Deliverer {
        app,
        outbox,
        client,
        policy,
        queues: HashMap::new(),
        events: HashMap::new(),
        endpoints: HashMap::new(),
        answers: mpsc::unbounded_channel(),
    };
    tokio::spawn(deliverer.run());
    Ok(())
}

impl Deliverer {
    async fn run(mut self) {
        if let Err(e) = self.app.service.sync_operator_endpoint(now_ms()).await {
            tracing::error!(error = %e, "operator webhook endpoint not installed");
        }
        loop {
            if let Err(e) = self.turn().await {
                tracing::warn!(error = %e, "webhook delivery turn failed; retrying");
            }
            let deadline = self
                .queues
                .values()
                .filter_map(EndpointQueue::poll_timeout)
                .min()
                .map(|at| Duration::from_millis(at.saturating_sub(now_ms())))
                .unwrap_or(IDLE_POLL)
                .min(IDLE_POLL);
            tokio::select! {
                () = self.app.events_wake.notified() => {}
                Some(answer) = self.answers.1.recv() => {
                    // Every answer in hand at once: their writes share the store's commits.
                    let mut answers = vec![answer];
                    while let Ok(more) = self.answers.1.try_recv() {
                        answers.push(more);
                    }
                    let now = now_ms();
                    let settled: Vec<Settled> =
                        answers.into_iter().filter_map(|a| self.settle(a, now)).collect();
                    self.start_attempts(now);
                    self.persist(settled).await;
                }
                () = tokio::time::sleep(deadline) => {}
            }
        }
    }

    /// Dispatch, load, time out, start attempts.
    async fn turn(&mut self) -> Result<(), StoreError> {
        let now = now_ms();
        let endpoints = self.outbox.endpoints(None).await?;
        while self
            .app
            .service
            .dispatch_events(self.outbox.as_ref(), &endpoints, now, DISPATCH_BATCH)
            .await?
            > 0
        {}
        self.endpoints = endpoints.into_iter().map(|e| (e.id.clone(), e)).collect();
        // Queues of deleted endpoints go with them.
        self.queues.retain(|id, _| self.endpoints.contains_key(id));
        self.events
            .retain(|(ep, _), _| self.endpoints.contains_key(ep));
        for entry in self.outbox.pending(now, LOAD_PER_ENDPOINT).await? {
            let queue = self
                .queues
                .entry(entry.endpoint.clone())
                .or_insert_with(|| EndpointQueue::new(self.policy));
            if queue.len() >= QUEUE_HIGH_WATER {
                continue;
            }
            let key = (entry.endpoint.clone(), entry.event.id.clone());
            if queue.push(entry.delivery) {
                self.events.insert(key, entry.event);
            }
        }
        let mut timed_out = Vec::new();
        for (endpoint, queue) in &mut self.queues {
            let mut jitter = || rand::rng().random::<u64>();
            for outcome in queue.handle_timeout(now, &mut jitter) {
                timed_out.push((endpoint.clone(), outcome));
            }
        }
        let timeout = Duration::from_millis(self.policy.attempt_timeout_ms);
        let settled: Vec<Settled> = timed_out
            .into_iter()
            .map(|(endpoint, outcome)| {
                self.settled(endpoint, outcome, AttemptResult::Timeout, (now, timeout))
            })
            .collect();
        self.start_attempts(now);
        self.persist(settled).await;
        Ok(())
    }

    fn start_attempts(&mut self, now: u64) {
        for (endpoint_id, queue) in &mut self.queues {
            let Some(endpoint) = self.endpoints.get(endpoint_id) else {
                continue;
            };
            while let Some(attempt) = queue.poll_attempt(now) {
                let key = (endpoint_id.clone(), attempt.event_id.clone());
                let Some(event) = self.events.get(&key) else {
                    continue;
                };
                let body = event.to_json();
                let headers = sign(
                    &endpoint.signing_secrets(now),
                    &event.id,
                    now,
                    body.as_bytes(),
                );
                let request = hyper::Request::post(endpoint.url.as_str())
                    .header("content-type", "application/json")
                    .header(
                        "user-agent",
                        concat!("roomcast-webhooks/", env!("CARGO_PKG_VERSION")),
                    );
                let request = headers
                    .pairs()
                    .into_iter()
                    .fold(request, |r, (name, value)| r.header(name, value))
                    .body(Full::new(Bytes::from(body)));
                let client = self.client.clone();
                let answers = self.answers.0.clone();
                let timeout = Duration::from_millis(self.policy.attempt_timeout_ms);
                let (endpoint, event_id, number) = (
                    endpoint_id.clone(),
                    attempt.event_id.clone(),
                    attempt.number,
                );
                tokio::spawn(async move {
                    let started = Instant::now();
                    let result = match request {
                        Ok(request) => post(&client, request, timeout).await,
                        // An endpoint URL that does not make a request (stored before a
                        // check existed) cannot be delivered to: a final answer.
                        Err(_) => AttemptResult::Status {
                            code: 400,
                            retry_after_ms: None,
                        },
                    };
                    // The loop is gone only when the server is stopping.
                    let _ = answers.send(Answer {
                        endpoint,
                        event_id,
                        number,
                        started_ms: now,
                        elapsed: started.elapsed(),
                        result,
                    });
                });
            }
        }
    }

    /// An attempt's answer: the queue's verdict, to be stored (`None` for a late answer, counted
    /// as a timeout already while another attempt may be in flight).
    fn settle(&mut self, answer: Answer, now: u64) -> Option<Settled> {
        let queue = self.queues.get_mut(&answer.endpoint)?;
        if queue.attempt_in_flight(&answer.event_id) != Some(answer.number) {
            return None;
        }
        let jitter = rand::rng().random::<u64>();
        let outcome = queue.handle_result(&answer.event_id, answer.result, now, jitter)?;
        Some(self.settled(
            answer.endpoint,
            outcome,
            answer.result,
            (answer.started_ms, answer.elapsed),
        ))
    }

    /// Counts an outcome and says what to store for it.
    fn settled(
        &mut self,
        endpoint: String,
        outcome: Outcome,
        result: AttemptResult,
        (started_ms, elapsed): (u64, Duration),
    ) -> Settled {
        let label = match outcome.verdict {
            Verdict::Delivered => "delivered",
            Verdict::RetryAt(_) => "retry",
            Verdict::DeadLetter(_) => "dead_letter",
        };
        if !matches!(outcome.verdict, Verdict::RetryAt(_)) {
            self.events
                .remove(&(endpoint.clone(), outcome.delivery.event_id.clone()));
        }
        self.app.metrics.webhook_attempt(label, elapsed);
        let record = AttemptRecord {
            event_id: outcome.delivery.event_id.clone(),
            attempt: outcome.delivery.attempts,
            at: started_ms,
            outcome: label.to_owned(),
            status: outcome.status,
            error: match result {
                AttemptResult::Timeout => Some("timeout".into()),
                AttemptResult::Unreachable => Some("unreachable".into()),
                AttemptResult::Status { .. } => None,
            },
            latency_ms: u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX),
        };
        Settled {
            endpoint,
            outcome,
            record,
        }
    }

    /// Stores outcomes, all at once. A write that fails leaves the entry pending as it was, so
    /// the delivery is made again (at least once).
    async fn persist(&self, settled: Vec<Settled>) {
        let writes = settled.into_iter().map(|s| {
            let outbox = self.outbox.clone();
            async move {
                let Settled {
                    endpoint,
                    outcome,
                    record,
                } = s;
                let event_id = &outcome.delivery.event_id;
                let verdict = async {
                    match outcome.verdict {
                        Verdict::Delivered => outbox.ack(&endpoint, event_id).await.map(drop),
                        Verdict::RetryAt(_) => {
                            outbox.reschedule(&endpoint, &outcome.delivery).await
                        }
                        Verdict::DeadLetter(reason) => outbox
                            .dead_letter(&endpoint, event_id, reason, now_ms())
                            .await
                            .map(drop),
                    }
                };
                let (stored, recorded) =
                    futures::join!(verdict, outbox.record_attempt(&endpoint, &record));
                stored.and(recorded)
            }
        });
        for result in futures::future::join_all(writes).await {
            if let Err(e) = result {
                tracing::warn!(error = %e, "delivery outcome not stored; it will be retried");
            }
        }
    }
}

/// What to store for one attempt's outcome.
struct Settled {
    endpoint: String,
    outcome: Outcome,
    record: AttemptRecord,
}

/// One POST: its status (and `Retry-After`), a timeout, or no connection.
async fn post(
    client: &HttpsClient,
    request: hyper::Request<Full<Bytes>>,
    timeout: Duration,
) -> AttemptResult {
    let exchange = async {
        let response = client.request(request).await.map_err(|e| {
            tracing::debug!(error = %e, "webhook endpoint unreachable");
        })?;
        let code = response.status().as_u16();
        let retry_after_ms = response
            .headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| parse_retry_after(v, now_ms()));
        // Read a bounded part of the body so the connection can be reused; the rest is dropped.
        let mut body = response.into_body();
        let mut read = 0;
        while read < MAX_RESPONSE_BYTES {
            match body.frame().await {
                Some(Ok(frame)) => read += frame.data_ref().map_or(0, |d| d.len()),
                _ => break,
            }
        }
        Ok::<_, ()>(AttemptResult::Status {
            code,
            retry_after_ms,
        })
    };
    match tokio::time::timeout(timeout, exchange).await {
        Err(_) => AttemptResult::Timeout,
        Ok(Err(())) => AttemptResult::Unreachable,
        Ok(Ok(result)) => result,
    }
}
