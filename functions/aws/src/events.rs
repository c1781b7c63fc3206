//! Integration events on AWS (docs/events.md, "AWS"): the table's stream is the journal, SQS
//! holds the deliveries, the table the registry.
//!
//! - The **events** function reads the stream ([`EventsFunction::handle_stream`]): each record
//!   becomes the event it stands for ([`event_of_stream_record`]), routed by the core
//!   ([`route_events`]) to the endpoints of its tenant and the operator's, each delivery one
//!   SQS message ([`DeliveryQueue`]). Records it could not queue are reported as batch item
//!   failures, so Lambda retries from the first of them: at least once, never lost.
//! - The **deliver** function takes the queue's messages ([`Deliverer::handle_messages`]): one
//!   signed POST each ([`WebhookClient`]), judged by the core's [`EndpointQueue`] with the
//!   receive count as the attempt number. A retry is the message made visible again when it
//!   is due (ChangeMessageVisibility) and reported as failed; the last one becomes a dead letter
//!   in the table. The queue's own dead-letter queue catches only messages that cannot be
//!   read.
//! - Every function's service keeps endpoints in the table and queues test events and replays
//!   through [`AwsEvents`], and writes member events where the stream carries them.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use aws_lambda_events::dynamodb::EventRecord;
use aws_lambda_events::sqs::{BatchItemFailure, SqsBatchResponse, SqsMessage};
use aws_lambda_events::streams::{DynamoDbBatchItemFailure, DynamoDbEventResponse};
use aws_sdk_sqs::types::SendMessageBatchRequestEntry;
use futures::future::join_all;
use roomcast_core::events::Event;
use roomcast_core::events::registry::AttemptRecord;
use roomcast_core::events::{DeadReason, Delivery, Endpoint, EndpointQueue, RetryPolicy, Verdict};
use roomcast_core::service::route_events;
use roomcast_core::store::{DeadLetter, EndpointRegistry, EventLog, OutboxEntry, StoreError};
use roomcast_webhook::WebhookClient;

use crate::dynamo::{DynamoStore, event_of_stream_record};

/// Most entries in one SendMessageBatch (SQS's limit).
const SEND_BATCH_MAX: usize = 10;
/// Longest delay SQS gives a new message (15 minutes).
const MAX_SEND_DELAY_SECS: u64 = 900;
/// Longest visibility timeout SQS allows (12 hours).
const MAX_VISIBILITY_SECS: u64 = 12 * 3_600;
/// How long a "some endpoint exists" is trusted by member events (after the last endpoint is
/// deleted, member events are written for this long more, for nobody). "None exists" is asked
/// again every time: a new endpoint gets the member events that follow its creation.
const ENDPOINTS_KNOWN_FOR: Duration = Duration::from_secs(10);

fn queue_error(operation: &str, e: impl std::fmt::Display) -> StoreError {
    StoreError::Unavailable(format!("SQS {operation}: {e}"))
}

/// The SQS queue of deliveries: one message per event and endpoint, its body the
/// [`OutboxEntry`] as JSON.
#[derive(Clone)]
pub struct DeliveryQueue {
    client: aws_sdk_sqs::Client,
    url: String,
}

impl DeliveryQueue {
    /// The queue at `url`.
    pub fn new(client: aws_sdk_sqs::Client, url: impl Into<String>) -> Self {
        Self {
            client,
            url: url.into(),
        }
    }

    /// Sends each entry as one message, delayed until it is due (at most 15 minutes, SQS's
    /// limit), ten to a request. Returns the indexes of the entries not sent.
    pub async fn send(&self, entries: &[OutboxEntry], now_ms: u64) -> Vec<usize> {
        let mut unsent = Vec::new();
        for (chunk_index, chunk) in entries.chunks(SEND_BATCH_MAX).enumerate() {
            let base = chunk_index * SEND_BATCH_MAX;
            let requests: Result<Vec<_>, _> = chunk
                .iter()
                .enumerate()
                .map(|(i, entry)| {
                    let delay = entry.delivery.next_at_ms.saturating_sub(now_ms) / 1000;
                    SendMessageBatchRequestEntry::builder()
                        .id(i.to_string())
                        .message_body(serde_json::to_string(entry).unwrap_or_default())
                        .delay_seconds(
                            i32::try_from(delay.min(MAX_SEND_DELAY_SECS)).unwrap_or_default(),
                        )
                        .build()
                })
                .collect();
            let sent = match requests {
                Ok(requests) => {
                    self.client
                        .send_message_batch()
                        .queue_url(&self.url)
                        .set_entries(Some(requests))
                        .send()
                        .await
                }
                Err(e) => {
                    tracing::error!(error = %e, "delivery message not built");
                    unsent.extend(base..base + chunk.len());
                    continue;
                }
            };
            match sent {
                Ok(out) => unsent.extend(
                    out.failed()
                        .iter()
                        .filter_map(|f| f.id().parse::<usize>().ok())
                        .map(|i| base + i),
                ),
                Err(e) => {
                    tracing::warn!(
                        error = %aws_sdk_sqs::error::DisplayErrorContext(e),
                        "SendMessageBatch failed"
                    );
                    unsent.extend(base..base + chunk.len());
                }
            }
        }
        unsent.sort_unstable();
        unsent
    }

    /// Makes a received message visible again in `delay_ms` (at most 12 hours, SQS's limit).
    pub async fn retry_in(&self, receipt_handle: &str, delay_ms: u64) -> Result<(), StoreError> {
        let seconds = delay_ms.div_ceil(1000).min(MAX_VISIBILITY_SECS);
        self.client
            .change_message_visibility()
            .queue_url(&self.url)
            .receipt_handle(receipt_handle)
            .visibility_timeout(i32::try_from(seconds).unwrap_or(i32::MAX))
            .send()
            .await
            .map_err(|e| {
                queue_error(
                    "ChangeMessageVisibility",
                    aws_sdk_sqs::error::DisplayErrorContext(e),
                )
            })?;
        Ok(())
    }
}

/// The AWS build's [`EventLog`] and [`EndpointRegistry`]: the table and the delivery queue.
pub struct AwsEvents {
    store: Arc<DynamoStore>,
    queue: DeliveryQueue,
    /// When "some endpoint exists" was last answered.
    endpoints_known: Mutex<Option<Instant>>,
}

impl AwsEvents {
    /// Events over `store` and `queue`.
    pub fn new(store: Arc<DynamoStore>, queue: DeliveryQueue) -> Self {
        Self {
            store,
            queue,
            endpoints_known: Mutex::new(None),
        }
    }

    async fn any_endpoint(&self) -> Result<bool, StoreError> {
        let known = *self
            .endpoints_known
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if known.is_some_and(|at| at.elapsed() < ENDPOINTS_KNOWN_FOR) {
            return Ok(true);
        }
        let answer = self.store.any_endpoint().await?;
        if answer {
            *self
                .endpoints_known
                .lock()
                .unwrap_or_else(PoisonError::into_inner) = Some(Instant::now());
        }
        Ok(answer)
    }

    async fn send_all(&self, entries: &[OutboxEntry], now_ms: u64) -> Result<(), StoreError> {
        let unsent = self.queue.send(entries, now_ms).await;
        if unsent.is_empty() {
            Ok(())
        } else {
            Err(queue_error(
                "SendMessageBatch",
                format!(
                    "{} of {} deliveries not queued",
                    unsent.len(),
                    entries.len()
                ),
            ))
        }
    }
}

#[async_trait::async_trait]
impl EventLog for AwsEvents {
    async fn record(&self, events: &[Event]) -> Result<bool, StoreError> {
        if events.is_empty() || !self.any_endpoint().await? {
            return Ok(false);
        }
        self.store.put_member_events(events).await?;
        Ok(true)
    }
}

#[async_trait::async_trait]
impl EndpointRegistry for AwsEvents {
    async fn put_endpoint(&self, endpoint: &Endpoint) -> Result<(), StoreError> {
        self.store.put_endpoint(endpoint).await
    }

    async fn endpoint(&self, id: &str) -> Result<Option<Endpoint>, StoreError> {
        self.store.endpoint(id).await
    }

    async fn endpoints(&self, tenant: Option<&str>) -> Result<Vec<Endpoint>, StoreError> {
        self.store.endpoints(tenant).await
    }

    async fn delete_endpoint(&self, id: &str) -> Result<bool, StoreError> {
        self.store.delete_endpoint(id).await
    }

    async fn record_attempt(
        &self,
        endpoint: &str,
        attempt: &AttemptRecord,
    ) -> Result<(), StoreError> {
        self.store.record_attempt(endpoint, attempt).await
    }

    async fn attempts(
        &self,
        endpoint: &str,
        limit: usize,
    ) -> Result<Vec<AttemptRecord>, StoreError> {
        self.store.attempts(endpoint, limit).await
    }

    /// Queued as they are: SQS does not know what it holds, so an entry queued twice is
    /// delivered twice (with the same `webhook-id`).
    async fn enqueue(&self, entries: &[OutboxEntry]) -> Result<usize, StoreError> {
        let now_ms = entries
            .iter()
            .map(|e| e.delivery.next_at_ms)
            .min()
            .unwrap_or_default();
        self.send_all(entries, now_ms).await?;
        Ok(entries.len())
    }

    async fn dead_letters(
        &self,
        endpoint: &str,
        limit: usize,
    ) -> Result<Vec<DeadLetter>, StoreError> {
        self.store.dead_letters(endpoint, limit).await
    }

    /// Queued first, forgotten after: a failure in between replays it twice, never not at all.
    async fn replay(
        &self,
        endpoint: &str,
        event_id: &str,
        now_ms: u64,
    ) -> Result<bool, StoreError> {
        let Some((sk, dead)) = self.store.dead_letter(endpoint, event_id).await? else {
            return Ok(false);
        };
        let entry = OutboxEntry {
            delivery: Delivery::new(event_id, now_ms),
            ..dead.entry
        };
        self.send_all(std::slice::from_ref(&entry), now_ms).await?;
        self.store.delete_dead_letter(endpoint, &sk).await?;
        Ok(true)
    }
}

/// The events function's work: stream records to queued deliveries.
pub struct EventsFunction {
    /// Members and connections (for offline members), endpoints.
    pub store: Arc<DynamoStore>,
    /// Where deliveries go.
    pub queue: DeliveryQueue,
}

impl EventsFunction {
    /// One batch of stream records, in order. The answer lists the first record whose
    /// deliveries could not all be queued (Lambda retries the batch from it; deliveries of the
    /// records after it that were queued go out twice, with the same id); a record that does
    /// not decode is logged and skipped, as retrying cannot change it.
    pub async fn handle_stream(
        &self,
        records: &[EventRecord],
        now_ms: u64,
    ) -> DynamoDbEventResponse {
        let mut response = DynamoDbEventResponse::default();
        let events: Vec<(usize, Event)> = records
            .iter()
            .enumerate()
            .filter_map(|(i, record)| {
                let change = &record.change;
                let decoded = event_of_stream_record(
                    &change.keys.clone().into(),
                    &change.old_image.clone().into(),
                    &change.new_image.clone().into(),
                );
                match decoded {
                    Ok(event) => event.map(|e| (i, e)),
                    Err(e) => {
                        tracing::error!(error = %e, record = %record.event_id, "stream record skipped");
                        None
                    }
                }
            })
            .collect();
        match self.queue_events(events, now_ms).await {
            Ok(()) => {}
            Err(first_failed) => {
                let mut failure = DynamoDbBatchItemFailure::default();
                failure.item_identifier = records[first_failed].change.sequence_number.clone();
                response.batch_item_failures.push(failure);
            }
        }
        response
    }

    /// Routes and queues the events; `Err` holds the index of the first record not queued.
    async fn queue_events(&self, events: Vec<(usize, Event)>, now_ms: u64) -> Result<(), usize> {
        let mut endpoints: HashMap<String, Vec<Endpoint>> = HashMap::new();
        // Deliveries with the record each comes from, in record order.
        let mut entries: Vec<(usize, OutboxEntry)> = Vec::new();
        for (record, event) in events {
            if !endpoints.contains_key(&event.tenant) {
                match self
                    .store
                    .tenant_and_operator_endpoints(&event.tenant)
                    .await
                {
                    Ok(found) => endpoints.insert(event.tenant.clone(), found),
                    Err(e) => {
                        tracing::warn!(error = %e, "endpoints not read");
                        return Err(entries.first().map_or(record, |(r, _)| *r).min(record));
                    }
                };
            }
            let targets = endpoints.get(&event.tenant).map_or(&[][..], Vec::as_slice);
            let routed = route_events(
                self.store.as_ref(),
                self.store.as_ref(),
                vec![event],
                targets,
                now_ms,
            )
            .await;
            match routed {
                Ok(routed) => entries.extend(routed.into_iter().map(|e| (record, e))),
                Err(e) => {
                    tracing::warn!(error = %e, "event not routed");
                    return self.send(entries, now_ms).await.and(Err(record));
                }
            }
        }
        self.send(entries, now_ms).await
    }

    async fn send(&self, entries: Vec<(usize, OutboxEntry)>, now_ms: u64) -> Result<(), usize> {
        let (records, entries): (Vec<usize>, Vec<OutboxEntry>) = entries.into_iter().unzip();
        match self.queue.send(&entries, now_ms).await.first() {
            None => Ok(()),
            Some(&unsent) => Err(records[unsent]),
        }
    }
}

/// The deliver function's work: queued deliveries to signed POSTs.
pub struct Deliverer {
    /// Endpoints, attempt records, dead letters.
    pub store: Arc<DynamoStore>,
    /// Where retries wait.
    pub queue: DeliveryQueue,
    /// The POSTs.
    pub client: WebhookClient,
    /// Backoff and the retry window.
    pub policy: RetryPolicy,
}

/// What became of one message.
enum Handled {
    /// Done with it (delivered, dead-lettered, or its endpoint is gone): SQS deletes it.
    Done,
    /// It comes back (a retry when due, or a failure to record the outcome).
    Again,
}

impl Deliverer {
    /// One batch of queued deliveries, all at once (each to its own endpoint's timeout). The
    /// answer lists the messages SQS keeps: retries, whose visibility now says when they are
    /// due, and messages whose outcome could not be stored.
    pub async fn handle_messages(&self, messages: &[SqsMessage]) -> SqsBatchResponse {
        let mut endpoints: BTreeMap<String, Option<Endpoint>> = BTreeMap::new();
        for message in messages {
            if let Some(entry) = entry_of(message)
                && !endpoints.contains_key(&entry.endpoint)
            {
                // A failed read is retried with the message.
                if let Ok(found) = self.store.endpoint(&entry.endpoint).await {
                    endpoints.insert(entry.endpoint, found);
                }
            }
        }
        let handled = join_all(
            messages
                .iter()
                .map(|message| self.handle_message(message, &endpoints)),
        )
        .await;
        let mut response = SqsBatchResponse::default();
        for (message, handled) in messages.iter().zip(handled) {
            if let (Handled::Again, Some(id)) = (handled, &message.message_id) {
                let mut failure = BatchItemFailure::default();
                failure.item_identifier = id.clone();
                response.batch_item_failures.push(failure);
            }
        }
        response
    }

    async fn handle_message(
        &self,
        message: &SqsMessage,
        endpoints: &BTreeMap<String, Option<Endpoint>>,
    ) -> Handled {
        let Some(entry) = entry_of(message) else {
            // Unreadable: left to the queue's redrive, which moves it to the dead-letter queue
            // (and its alarm) after the receive limit.
            tracing::error!(message = ?message.message_id, "delivery message unreadable");
            return Handled::Again;
        };
        let Some(found) = endpoints.get(&entry.endpoint) else {
            return Handled::Again;
        };
        let Some(endpoint) = found else {
            // Deleted with its deliveries.
            return Handled::Done;
        };
        let receives: u32 = message
            .attributes
            .get("ApproximateReceiveCount")
            .and_then(|c| c.parse().ok())
            .unwrap_or(1);
        let now_ms = crate::lambda::now_ms();
        let mut delivery = entry.delivery.clone();
        delivery.attempts = receives.saturating_sub(1);
        delivery.next_at_ms = now_ms;
        let mut queue = EndpointQueue::new(self.policy);
        queue.push(delivery);
        let Some(attempt) = queue.poll_attempt(now_ms) else {
            return Handled::Again;
        };
        let started = Instant::now();
        let result = self.client.send(endpoint, &entry.event, now_ms).await;
        let latency_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
        let answered_ms = now_ms.saturating_add(latency_ms);
        let Some(outcome) =
            queue.handle_result(&attempt.event_id, result, answered_ms, rand::random())
        else {
            return Handled::Again;
        };
        let record = AttemptRecord::of(&outcome, result, now_ms, latency_ms);
        crate::lambda::emit_delivery_metrics(outcome.verdict.label(), latency_ms);
        if let Err(e) = self.store.record_attempt(&endpoint.id, &record).await {
            tracing::warn!(error = %e, "attempt record not stored");
        }
        let stored = match outcome.verdict {
            Verdict::Delivered => Ok(Handled::Done),
            Verdict::RetryAt(at) => {
                let receipt = message.receipt_handle.as_deref().unwrap_or_default();
                self.queue
                    .retry_in(receipt, at.saturating_sub(answered_ms))
                    .await
                    .map(|()| Handled::Again)
            }
            Verdict::DeadLetter(reason) => self
                .dead_letter(entry, outcome.delivery, reason, answered_ms)
                .await
                .map(|()| Handled::Done),
        };
        stored.unwrap_or_else(|e| {
            tracing::warn!(error = %e, "delivery outcome not stored; the message comes back");
            Handled::Again
        })
    }

    async fn dead_letter(
        &self,
        entry: OutboxEntry,
        delivery: Delivery,
        reason: DeadReason,
        at_ms: u64,
    ) -> Result<(), StoreError> {
        let dead = DeadLetter {
            entry: OutboxEntry { delivery, ..entry },
            reason,
            at_ms,
        };
        self.store.put_dead_letter(&dead).await
    }
}

fn entry_of(message: &SqsMessage) -> Option<OutboxEntry> {
    serde_json::from_str(message.body.as_deref()?).ok()
}
