//! Webhook delivery: the local server's driver of the core's event pipeline, one task.
//!
//! Each turn it dispatches the journal ([`ChatService::dispatch_events`]), loads due deliveries
//! from the outbox into one [`EndpointQueue`] per endpoint, starts the attempts the queues ask
//! for (each a signed Standard Webhooks POST in its own task, so a slow endpoint never delays
//! another, nor chat), and stores each outcome: acknowledged, rescheduled, or dead-lettered,
//! with an attempt record. It sleeps until a frame or request may have journaled something
//! ([`App::wake_events`]), an answer comes back, or the earliest queue deadline.
//!
//! The POSTs are [`WebhookClient`]'s, which checks addresses again at delivery (SSRF).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rand::Rng;
use roomcast_core::events::endpoint::EndpointRules;
use roomcast_core::events::registry::AttemptRecord;
use roomcast_core::events::{
    AttemptResult, Endpoint, EndpointQueue, Event, Outcome, RetryPolicy, Verdict,
};
use roomcast_core::store::{Outbox, StoreError};
use roomcast_webhook::WebhookClient;
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
    client: WebhookClient,
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
    let client = WebhookClient::new(rules, Duration::from_millis(policy.attempt_timeout_ms))?;
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
        let outbox = self.outbox.as_ref();
        while self
            .app
            .service
            .dispatch_events(outbox, || outbox.endpoints(None), now, DISPATCH_BATCH)
            .await?
            > 0
        {}
        self.endpoints = outbox
            .endpoints(None)
            .await?
            .into_iter()
            .map(|e| (e.id.clone(), e))
            .collect();
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
                let (endpoint, event) = (endpoint.clone(), event.clone());
                let client = self.client.clone();
                let answers = self.answers.0.clone();
                let number = attempt.number;
                tokio::spawn(async move {
                    let started = Instant::now();
                    let result = client.send(&endpoint, &event, now).await;
                    // The loop is gone only when the server is stopping.
                    let _ = answers.send(Answer {
                        endpoint: endpoint.id,
                        event_id: event.id,
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
        let label = outcome.verdict.label();
        if !matches!(outcome.verdict, Verdict::RetryAt(_)) {
            self.events
                .remove(&(endpoint.clone(), outcome.delivery.event_id.clone()));
        }
        self.app.metrics.webhook_attempt(label, elapsed);
        let latency_ms = u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX);
        let record = AttemptRecord::of(&outcome, result, started_ms, latency_ms);
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
