//! Lambda event source mappings on moto (feature `aws-mappings`), so the functions can be run
//! locally under `cargo lambda watch` with the triggers the AWS build gives them:
//!
//! - [`StreamMapping`]: a DynamoDB stream → a function. It finds the table's stream
//!   (DescribeTable → `LatestStreamArn`), its shards (DescribeStream), reads each shard from
//!   `TRIM_HORIZON` (GetShardIterator, GetRecords), and invokes the function with the documented
//!   DynamoDB stream event (`{"Records": [...]}`, the shape `aws_lambda_events::dynamodb::Event`
//!   deserializes), in batches of up to [`StreamSettings::batch_size`] records of one shard, in
//!   order. Errors are handled as Lambda documents for DynamoDB streams with
//!   `ReportBatchItemFailures`, `BisectBatchOnFunctionError`, `MaximumRetryAttempts` and an SQS
//!   on-failure destination (see [`StreamSettings`]). With
//!   [`StreamSettings::filter_patterns`] (Lambda's `FilterCriteria`), records matching none of
//!   the patterns are dropped before batching, as Lambda's event filtering does: never sent,
//!   checkpointed past ([`FilterPattern`] says which part of the rules is emulated).
//! - [`QueueMapping`]: an SQS queue → a function. It polls with ReceiveMessage (short polls:
//!   `WaitTimeSeconds` 0, then a pause when the queue is empty, because the tests' moto serves
//!   one request at a time and a long poll would hold every other request), invokes the function
//!   with the documented SQS event (`aws_lambda_events::sqs::SqsEvent`), deletes the messages
//!   the function did not list in `batchItemFailures` (DeleteMessageBatch) and leaves the
//!   listed ones, and the whole batch on a function error, to come back when their visibility
//!   timeout ends. Several batches are in flight at once ([`QueueSettings::concurrency`], five
//!   by default as Lambda starts), so one slow batch does not hold the queue. Redrive to a
//!   dead-letter queue after `maxReceiveCount` receives is SQS's work: moto does it on
//!   ReceiveMessage, as SQS does (see [`create_queue`]).
//!
//! The function is reached through the Lambda Invoke API that `cargo lambda watch` serves
//! ([`Function`]): `POST {url}/2015-03-31/functions/{name}/invocations` with the event as the
//! body; the body of a 2xx answer is the function's result. A function error is a non-2xx status
//! (cargo lambda answers 500 when the function reports an error) or a 2xx with an
//! `X-Amz-Function-Error` header (the Lambda service's way); a failed or timed-out request
//! counts as a function error too.
//!
//! Each mapping runs on its own thread with its own Tokio runtime, so it works under any test
//! runtime (or none), and stops when dropped. Its [`MappingCounters`] say what it did; tests wait
//! on them with `wait_until`.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime};

use aws_sdk_dynamodbstreams as streams;
use aws_sdk_sqs as sqs;
use aws_smithy_types::date_time::{DateTime, Format};
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde_json::{Map, Value, json};

/// The account moto answers for (its default), used in the ARNs the mappings make up.
const MOTO_ACCOUNT: &str = "123456789012";

/// How often a [`StreamMapping`] looks for new shards.
const SHARD_DISCOVERY_INTERVAL: Duration = Duration::from_secs(1);

/// How often a failure record is offered to the destination before it is given up.
const DESTINATION_SEND_ATTEMPTS: u32 = 3;

/// An error setting up a mapping or talking to AWS (moto).
#[derive(Debug, Clone)]
pub struct MappingError(String);

impl MappingError {
    fn new(message: impl Into<String>) -> Self {
        Self(message.into())
    }
}

impl std::fmt::Display for MappingError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for MappingError {}

/// An SDK error with its whole cause chain, for messages.
fn sdk_error(operation: &str, error: impl std::error::Error) -> MappingError {
    MappingError::new(format!(
        "{operation}: {}",
        sqs::error::DisplayErrorContext(error)
    ))
}

/// Where the AWS APIs are and the region to sign for. moto serves every service (DynamoDB,
/// DynamoDB Streams, SQS) on one URL; the credentials are moto's dummy ones.
#[derive(Debug, Clone)]
pub struct AwsEndpoint {
    /// The endpoint URL (`http://127.0.0.1:PORT`).
    pub url: String,
    /// The region (`us-east-1` from [`AwsEndpoint::new`]).
    pub region: String,
}

impl AwsEndpoint {
    /// The services at `url` (moto), region `us-east-1`.
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            region: "us-east-1".to_owned(),
        }
    }

    /// A DynamoDB client for this endpoint.
    pub fn dynamodb(&self) -> aws_sdk_dynamodb::Client {
        use aws_sdk_dynamodb::config::{BehaviorVersion, Credentials, Region};
        aws_sdk_dynamodb::Client::from_conf(
            aws_sdk_dynamodb::Config::builder()
                .behavior_version(BehaviorVersion::latest())
                .region(Region::new(self.region.clone()))
                .endpoint_url(&self.url)
                .credentials_provider(Credentials::new("test", "test", None, None, "testkit"))
                .build(),
        )
    }

    /// An S3 client for this endpoint (path-style addressing: moto's S3 is one host).
    pub fn s3(&self) -> aws_sdk_s3::Client {
        use aws_sdk_s3::config::{BehaviorVersion, Credentials, Region};
        aws_sdk_s3::Client::from_conf(
            aws_sdk_s3::Config::builder()
                .behavior_version(BehaviorVersion::latest())
                .region(Region::new(self.region.clone()))
                .endpoint_url(&self.url)
                .force_path_style(true)
                .credentials_provider(Credentials::new("test", "test", None, None, "testkit"))
                .build(),
        )
    }

    /// A DynamoDB Streams client for this endpoint.
    pub fn streams(&self) -> streams::Client {
        use streams::config::{BehaviorVersion, Credentials, Region};
        streams::Client::from_conf(
            streams::Config::builder()
                .behavior_version(BehaviorVersion::latest())
                .region(Region::new(self.region.clone()))
                .endpoint_url(&self.url)
                .credentials_provider(Credentials::new("test", "test", None, None, "testkit"))
                .build(),
        )
    }

    /// An SQS client for this endpoint.
    pub fn sqs(&self) -> sqs::Client {
        use sqs::config::{BehaviorVersion, Credentials, Region};
        sqs::Client::from_conf(
            sqs::Config::builder()
                .behavior_version(BehaviorVersion::latest())
                .region(Region::new(self.region.clone()))
                .endpoint_url(&self.url)
                .credentials_provider(Credentials::new("test", "test", None, None, "testkit"))
                .build(),
        )
    }
}

/// The function a mapping invokes, through the Lambda Invoke API `cargo lambda watch` serves.
#[derive(Debug, Clone)]
pub struct Function {
    /// The Invoke API's base URL (`http://127.0.0.1:9000` for `cargo lambda watch`).
    pub invoke_url: String,
    /// The function's name (the binary's name under `cargo lambda watch`).
    pub name: String,
    /// How long an invocation may take before it counts as failed. `cargo lambda watch`
    /// compiles the function on its first invocation, so the default is generous (5 minutes).
    pub timeout: Duration,
}

impl Function {
    /// The function `name` behind the Invoke API at `invoke_url`.
    pub fn new(invoke_url: impl Into<String>, name: impl Into<String>) -> Self {
        Self {
            invoke_url: invoke_url.into(),
            name: name.into(),
            timeout: Duration::from_secs(300),
        }
    }

    /// The same function with another invocation timeout.
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    fn invocations_url(&self) -> String {
        format!(
            "{}/2015-03-31/functions/{}/invocations",
            self.invoke_url.trim_end_matches('/'),
            self.name
        )
    }

    /// The ARN Lambda would give the function (for failure records).
    fn arn(&self, region: &str) -> String {
        format!(
            "arn:aws:lambda:{region}:{MOTO_ACCOUNT}:function:{}",
            self.name
        )
    }
}

/// Starts `instances` instances of `function` before a test needs them (as provisioned
/// concurrency would): that many concurrent invocations with an empty batch (`{"Records":
/// []}`), waited for. `cargo lambda watch` starts an instance per concurrent invocation, and a
/// first start (a `cargo run`) takes seconds, longer than a delivery may.
pub fn warm(function: &Function, instances: usize) -> Result<(), MappingError> {
    let function = function.clone();
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| MappingError::new(format!("no runtime: {e}")))?;
        runtime.block_on(async {
            let invoker = Invoker::new(function);
            let event = json!({"Records": []});
            let answers =
                futures::future::join_all((0..instances).map(|_| invoker.invoke(&event))).await;
            for answer in answers {
                if let Invocation::Failed { detail, .. } = answer {
                    return Err(MappingError::new(format!(
                        "warming {}: {detail}",
                        invoker.function.name
                    )));
                }
            }
            Ok(())
        })
    })
    .join()
    .map_err(|_| MappingError::new("warming panicked"))?
}

/// What an invocation came to.
enum Invocation {
    /// A 2xx without `X-Amz-Function-Error`: the function's result.
    Returned(Bytes),
    /// A function error, an error status, or a failed request.
    Failed {
        /// The HTTP status, when there was an answer.
        status: Option<u16>,
        /// What went wrong, for the error log.
        detail: String,
    },
}

/// Invokes functions through the Invoke API.
struct Invoker {
    client: Client<HttpConnector, Full<Bytes>>,
    function: Function,
}

impl Invoker {
    fn new(function: Function) -> Self {
        Self {
            client: Client::builder(TokioExecutor::new()).build_http(),
            function,
        }
    }

    async fn invoke(&self, event: &Value) -> Invocation {
        let request = hyper::Request::post(self.function.invocations_url())
            .header("content-type", "application/json")
            .header("x-amz-invocation-type", "RequestResponse")
            .body(Full::new(Bytes::from(event.to_string())));
        let request = match request {
            Ok(request) => request,
            Err(e) => {
                return Invocation::Failed {
                    status: None,
                    detail: format!("bad invoke request: {e}"),
                };
            }
        };
        let answer = tokio::time::timeout(self.function.timeout, async {
            let response = self
                .client
                .request(request)
                .await
                .map_err(|e| e.to_string())?;
            let (parts, body) = response.into_parts();
            let body = body.collect().await.map_err(|e| e.to_string())?.to_bytes();
            Ok::<_, String>((parts, body))
        })
        .await;
        let (parts, body) = match answer {
            Err(_) => {
                return Invocation::Failed {
                    status: None,
                    detail: format!("no answer within {:?}", self.function.timeout),
                };
            }
            Ok(Err(e)) => {
                return Invocation::Failed {
                    status: None,
                    detail: format!("invoke request failed: {e}"),
                };
            }
            Ok(Ok(answer)) => answer,
        };
        let function_error = parts
            .headers
            .get("x-amz-function-error")
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned());
        if parts.status.is_success() && function_error.is_none() {
            return Invocation::Returned(body);
        }
        Invocation::Failed {
            status: Some(parts.status.as_u16()),
            detail: format!(
                "function error (status {}{}): {}",
                parts.status.as_u16(),
                function_error.map_or_else(String::new, |t| format!(", {t}")),
                String::from_utf8_lossy(&body)
            ),
        }
    }
}

/// What a function's result says about its batch (with `ReportBatchItemFailures`), by Lambda's
/// documented rules.
#[derive(Debug, PartialEq, Eq)]
enum BatchResponse {
    /// Empty or null result, no `batchItemFailures`, or an empty or null list.
    AllSucceeded,
    /// The identifiers listed as failed (each one in the batch).
    Failed(Vec<String>),
    /// Not JSON, not an object, or an identifier that is empty, null, misnamed or not in the
    /// batch: Lambda counts the whole batch as failed.
    Invalid(String),
}

fn batch_response(body: &[u8], identifiers: &[&str]) -> BatchResponse {
    if body.iter().all(u8::is_ascii_whitespace) {
        return BatchResponse::AllSucceeded;
    }
    let value: Value = match serde_json::from_slice(body) {
        Ok(value) => value,
        Err(e) => return BatchResponse::Invalid(format!("result is not JSON: {e}")),
    };
    let failures = match &value {
        Value::Null => return BatchResponse::AllSucceeded,
        Value::Object(object) => match object.get("batchItemFailures") {
            None | Some(Value::Null) => return BatchResponse::AllSucceeded,
            Some(Value::Array(failures)) => failures,
            Some(other) => {
                return BatchResponse::Invalid(format!("batchItemFailures is not a list: {other}"));
            }
        },
        other => return BatchResponse::Invalid(format!("result is not an object: {other}")),
    };
    let mut failed = Vec::with_capacity(failures.len());
    for failure in failures {
        match failure.get("itemIdentifier").and_then(Value::as_str) {
            Some(id) if !id.is_empty() && identifiers.contains(&id) => failed.push(id.to_owned()),
            _ => {
                return BatchResponse::Invalid(format!(
                    "batch item failure {failure} does not name an item of the batch"
                ));
            }
        }
    }
    if failed.is_empty() {
        BatchResponse::AllSucceeded
    } else {
        BatchResponse::Failed(failed)
    }
}

/// What a mapping has done so far (a snapshot; repeats of retried records are counted again).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MappingCounters {
    /// Invocations made, retries included.
    pub batches_invoked: u64,
    /// Records (stream records, SQS messages) sent in those invocations.
    pub records_delivered: u64,
    /// Records done: checkpointed after a success (stream) or deleted from the queue (SQS).
    pub records_succeeded: u64,
    /// Records the function listed in `batchItemFailures`.
    pub records_reported_failed: u64,
    /// Invocations that failed: a function error, an error status, no answer, or (with
    /// `ReportBatchItemFailures`) an invalid batch response.
    pub invocation_errors: u64,
    /// Failed batches split in two (stream).
    pub batches_bisected: u64,
    /// Records given up after their retries (stream).
    pub records_discarded: u64,
    /// Records that matched none of [`StreamSettings::filter_patterns`]: never sent, and
    /// checkpointed past (stream).
    pub records_filtered: u64,
    /// Failure records sent to the on-failure destination (stream).
    pub failures_sent: u64,
    /// Errors from AWS itself (reading the stream, receiving, deleting, sending), retried.
    pub aws_errors: u64,
}

#[derive(Default)]
struct Counters {
    batches_invoked: AtomicU64,
    records_delivered: AtomicU64,
    records_succeeded: AtomicU64,
    records_reported_failed: AtomicU64,
    invocation_errors: AtomicU64,
    batches_bisected: AtomicU64,
    records_discarded: AtomicU64,
    records_filtered: AtomicU64,
    failures_sent: AtomicU64,
    aws_errors: AtomicU64,
}

/// Counters and the last error, shared between a mapping and its thread.
#[derive(Default)]
struct Shared {
    counters: Counters,
    last_error: Mutex<Option<String>>,
}

fn add(counter: &AtomicU64, n: usize) {
    counter.fetch_add(u64::try_from(n).unwrap_or(u64::MAX), Ordering::Relaxed);
}

impl Shared {
    fn snapshot(&self) -> MappingCounters {
        let c = &self.counters;
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        MappingCounters {
            batches_invoked: get(&c.batches_invoked),
            records_delivered: get(&c.records_delivered),
            records_succeeded: get(&c.records_succeeded),
            records_reported_failed: get(&c.records_reported_failed),
            invocation_errors: get(&c.invocation_errors),
            batches_bisected: get(&c.batches_bisected),
            records_discarded: get(&c.records_discarded),
            records_filtered: get(&c.records_filtered),
            failures_sent: get(&c.failures_sent),
            aws_errors: get(&c.aws_errors),
        }
    }

    fn error(&self, error: impl std::fmt::Display) {
        *self
            .last_error
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Some(error.to_string());
    }

    fn aws_error(&self, error: &MappingError) {
        add(&self.counters.aws_errors, 1);
        self.error(error);
    }

    fn last_error(&self) -> Option<String> {
        self.last_error
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    async fn wait_until(
        &self,
        within: Duration,
        mut done: impl FnMut(&MappingCounters) -> bool,
    ) -> Result<MappingCounters, MappingError> {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let counters = self.snapshot();
            if done(&counters) {
                return Ok(counters);
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(MappingError::new(format!(
                    "not reached within {within:?}: {counters:?}, last error: {:?}",
                    self.last_error()
                )));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// A mapping's thread: stopped (its loop abandoned at the next await) and joined on drop.
struct Worker {
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Worker {
    /// Runs `setup` on a new thread with its own runtime; when it succeeds, runs the loop it
    /// returns until stopped. Returns once setup is done.
    fn start<S, Setup, Run>(name: &str, setup: S) -> Result<Self, MappingError>
    where
        S: FnOnce() -> Setup + Send + 'static,
        Setup: Future<Output = Result<Run, MappingError>>,
        Run: Future<Output = ()>,
    {
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::Builder::new()
            .name(name.to_owned())
            .spawn(move || {
                let runtime = match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(runtime) => runtime,
                    Err(e) => {
                        let _ = ready_tx.send(Err(MappingError::new(format!("no runtime: {e}"))));
                        return;
                    }
                };
                runtime.block_on(async move {
                    let run = match setup().await {
                        Ok(run) => {
                            let _ = ready_tx.send(Ok(()));
                            run
                        }
                        Err(e) => {
                            let _ = ready_tx.send(Err(e));
                            return;
                        }
                    };
                    tokio::select! {
                        _ = stop_rx => {}
                        () = run => {}
                    }
                });
            })
            .map_err(|e| MappingError::new(format!("cannot start the {name} thread: {e}")))?;
        let mut worker = Self {
            stop: Some(stop_tx),
            thread: Some(thread),
        };
        match ready_rx.recv() {
            Ok(Ok(())) => Ok(worker),
            Ok(Err(e)) => Err(e),
            Err(_) => {
                worker.stop = None;
                Err(MappingError::new(format!(
                    "the {name} thread ended during setup"
                )))
            }
        }
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            // The loop may have ended on its own: nothing to stop then.
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            // A panicking mapping thread has already reported through the test's output.
            let _ = thread.join();
        }
    }
}

/// A DynamoDB stream mapping's settings: Lambda's event source mapping parameters that apply.
#[derive(Debug, Clone)]
pub struct StreamSettings {
    /// Records per invocation, at most (Lambda's `BatchSize`; default 100).
    pub batch_size: usize,
    /// `FunctionResponseTypes: [ReportBatchItemFailures]` (default on): a result listing
    /// `batchItemFailures` checkpoints before the lowest listed sequence number and retries the
    /// batch from it; an invalid list fails the whole batch. Off, results are ignored.
    pub report_batch_item_failures: bool,
    /// `BisectBatchOnFunctionError` (default on): a failed batch is split in two and the halves
    /// retried one after the other. Splitting uses no retry attempt (this emulation's choice);
    /// a batch of one record that fails uses them.
    pub bisect_batch_on_function_error: bool,
    /// `MaximumRetryAttempts` (default 3; `None` is Lambda's -1, retry until the record
    /// expires): a record whose batch has failed this many times more than once is given up
    /// with the rest of that batch, and a failure record describing the batch goes to
    /// [`StreamSettings::on_failure_queue_url`]. A retry after a partial failure starting at the
    /// same record counts as an attempt.
    pub maximum_retry_attempts: Option<u32>,
    /// The on-failure destination, an SQS queue URL (`DestinationConfig.OnFailure`).
    pub on_failure_queue_url: Option<String>,
    /// The pause when the stream has nothing new.
    pub poll_interval: Duration,
    /// The pause before retrying a failed batch.
    pub retry_delay: Duration,
    /// `FilterCriteria`: the filters' patterns, parsed (default none: every record is sent).
    /// A record is sent when it matches any of them (see [`FilterPattern`]); the others are
    /// dropped before batching and counted in [`MappingCounters::records_filtered`]. A pattern
    /// outside the emulated rules fails [`StreamMapping::start`].
    pub filter_patterns: Vec<Value>,
}

impl Default for StreamSettings {
    fn default() -> Self {
        Self {
            batch_size: 100,
            report_batch_item_failures: true,
            bisect_batch_on_function_error: true,
            maximum_retry_attempts: Some(3),
            on_failure_queue_url: None,
            poll_interval: Duration::from_millis(100),
            retry_delay: Duration::from_millis(50),
            filter_patterns: Vec::new(),
        }
    }
}

/// A DynamoDB stream → function mapping, running until dropped (see the module doc).
pub struct StreamMapping {
    /// The stream's ARN (the events' `eventSourceARN`).
    pub stream_arn: String,
    shared: Arc<Shared>,
    _worker: Worker,
}

impl StreamMapping {
    /// Starts delivering the stream of `table` (which must have one) at `aws` to `function`.
    /// Blocks until the stream is found (a few requests), then delivers in the background. An
    /// invalid or unsupported filter pattern is an error here, before anything is read.
    pub fn start(
        aws: &AwsEndpoint,
        table: &str,
        function: Function,
        settings: StreamSettings,
    ) -> Result<Self, MappingError> {
        let shared = Arc::new(Shared::default());
        let (arn_tx, arn_rx) = std::sync::mpsc::channel();
        let (aws, table, thread_shared) = (aws.clone(), table.to_owned(), shared.clone());
        let worker = Worker::start(&format!("stream-mapping-{table}"), move || async move {
            let reader = StreamReader::new(aws, &table, function, settings, thread_shared).await?;
            let _ = arn_tx.send(reader.stream_arn.clone());
            Ok(reader.run())
        })?;
        let stream_arn = arn_rx
            .recv()
            .map_err(|_| MappingError::new("the stream mapping did not report its stream"))?;
        Ok(Self {
            stream_arn,
            shared,
            _worker: worker,
        })
    }

    /// What the mapping has done so far.
    pub fn counters(&self) -> MappingCounters {
        self.shared.snapshot()
    }

    /// The last error the mapping met (an AWS error or a failed invocation), if any.
    pub fn last_error(&self) -> Option<String> {
        self.shared.last_error()
    }

    /// Waits until `done` holds for the counters, up to `within`; the error says where the
    /// counters stopped and the last error.
    pub async fn wait_until(
        &self,
        within: Duration,
        done: impl FnMut(&MappingCounters) -> bool,
    ) -> Result<MappingCounters, MappingError> {
        self.shared.wait_until(within, done).await
    }
}

/// A stream record as the event carries it.
struct PendingRecord {
    event: Value,
    sequence_number: String,
    /// Seconds since the epoch.
    created: Option<f64>,
}

/// A shard's reading and delivery state.
struct ShardState {
    id: String,
    parent: Option<String>,
    /// The next GetRecords iterator; `None` before the shard starts or once it is closed.
    iterator: Option<String>,
    started: bool,
    closed: bool,
    /// The last sequence number read (to renew an expired iterator).
    last_read: Option<String>,
    /// Records read and not yet checkpointed, oldest first.
    pending: VecDeque<PendingRecord>,
    /// The current batch size limit (smaller while a bisected batch is retried).
    limit: usize,
    /// How many records at the head of `pending` belong to a bisected batch.
    bisected: usize,
    /// Failed attempts of the batch at the head of `pending`.
    attempts: u32,
    /// Invocations that included the head record (for failure records).
    invocations: u32,
    not_before: Option<tokio::time::Instant>,
}

impl ShardState {
    fn done(&self) -> bool {
        self.closed && self.pending.is_empty()
    }

    /// Removes `n` records from the head (checkpointed or given up).
    fn advance(&mut self, n: usize, batch_size: usize) {
        self.pending.drain(..n.min(self.pending.len()));
        self.bisected = self.bisected.saturating_sub(n);
        if self.bisected == 0 {
            self.limit = batch_size;
        }
        self.attempts = 0;
        self.invocations = 0;
    }
}

struct StreamReader {
    aws: AwsEndpoint,
    client: streams::Client,
    sqs: sqs::Client,
    stream_arn: String,
    invoker: Invoker,
    settings: StreamSettings,
    shared: Arc<Shared>,
    shards: Vec<ShardState>,
    discovered: Option<tokio::time::Instant>,
    failure_records: u64,
    /// The compiled [`StreamSettings::filter_patterns`] (empty: no filtering).
    filters: Vec<FilterPattern>,
}

impl StreamReader {
    async fn new(
        aws: AwsEndpoint,
        table: &str,
        function: Function,
        mut settings: StreamSettings,
        shared: Arc<Shared>,
    ) -> Result<Self, MappingError> {
        settings.batch_size = settings.batch_size.max(1);
        let filters = settings
            .filter_patterns
            .iter()
            .enumerate()
            .map(|(i, pattern)| {
                FilterPattern::new(pattern).map_err(|e| {
                    MappingError::new(format!("filter pattern {} ({pattern}): {e}", i + 1))
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        let described = aws
            .dynamodb()
            .describe_table()
            .table_name(table)
            .send()
            .await
            .map_err(|e| sdk_error("DescribeTable", e))?;
        let stream_arn = described
            .table()
            .and_then(|t| t.latest_stream_arn())
            .ok_or_else(|| {
                MappingError::new(format!(
                    "table {table} has no stream (create it with a StreamSpecification)"
                ))
            })?
            .to_owned();
        let mut reader = Self {
            client: aws.streams(),
            sqs: aws.sqs(),
            aws,
            stream_arn,
            invoker: Invoker::new(function),
            settings,
            shared,
            shards: Vec::new(),
            discovered: None,
            failure_records: 0,
            filters,
        };
        reader.discover().await?;
        Ok(reader)
    }

    async fn run(mut self) {
        loop {
            if self
                .discovered
                .is_none_or(|at| at.elapsed() >= SHARD_DISCOVERY_INTERVAL)
                && let Err(e) = self.discover().await
            {
                self.shared.aws_error(&e);
            }
            let mut worked = false;
            for index in 0..self.shards.len() {
                worked |= self.step(index).await;
            }
            if !worked {
                tokio::time::sleep(self.settings.poll_interval).await;
            }
        }
    }

    /// DescribeStream (all pages): adds shards not seen yet.
    async fn discover(&mut self) -> Result<(), MappingError> {
        self.discovered = Some(tokio::time::Instant::now());
        let mut start: Option<String> = None;
        loop {
            let page = self
                .client
                .describe_stream()
                .stream_arn(&self.stream_arn)
                .set_exclusive_start_shard_id(start.clone())
                .send()
                .await
                .map_err(|e| sdk_error("DescribeStream", e))?;
            let Some(description) = page.stream_description() else {
                return Ok(());
            };
            for shard in description.shards() {
                let Some(id) = shard.shard_id() else { continue };
                if self.shards.iter().any(|s| s.id == id) {
                    continue;
                }
                self.shards.push(ShardState {
                    id: id.to_owned(),
                    parent: shard.parent_shard_id().map(str::to_owned),
                    iterator: None,
                    started: false,
                    closed: false,
                    last_read: None,
                    pending: VecDeque::new(),
                    limit: self.settings.batch_size,
                    bisected: 0,
                    attempts: 0,
                    invocations: 0,
                    not_before: None,
                });
            }
            match description.last_evaluated_shard_id() {
                Some(last) => start = Some(last.to_owned()),
                None => return Ok(()),
            }
        }
    }

    /// One read or one invocation on shard `index`; whether it did something.
    async fn step(&mut self, index: usize) -> bool {
        let now = tokio::time::Instant::now();
        if self.shards[index].not_before.is_some_and(|t| now < t) || self.shards[index].done() {
            return false;
        }
        if !self.shards[index].started {
            // A child shard waits until its parent (when still known) is finished.
            let parent_busy = self.shards[index]
                .parent
                .as_ref()
                .is_some_and(|parent| self.shards.iter().any(|s| &s.id == parent && !s.done()));
            if parent_busy {
                return false;
            }
            let after = self.shards[index].last_read.clone();
            let kind = if after.is_some() {
                "AFTER_SEQUENCE_NUMBER"
            } else {
                "TRIM_HORIZON"
            };
            return self.start_shard(index, kind, after).await;
        }
        if self.shards[index].pending.is_empty() {
            return self.read(index).await;
        }
        self.deliver(index).await;
        true
    }

    async fn start_shard(&mut self, index: usize, kind: &str, after: Option<String>) -> bool {
        let shard = &self.shards[index];
        let got = self
            .client
            .get_shard_iterator()
            .stream_arn(&self.stream_arn)
            .shard_id(&shard.id)
            .shard_iterator_type(streams::types::ShardIteratorType::from(kind))
            .set_sequence_number(after)
            .send()
            .await;
        match got {
            Ok(got) => {
                let shard = &mut self.shards[index];
                shard.started = true;
                shard.iterator = got.shard_iterator().map(str::to_owned);
                shard.closed = shard.iterator.is_none();
                true
            }
            Err(e) => {
                self.shared.aws_error(&sdk_error("GetShardIterator", e));
                self.shards[index].not_before =
                    Some(tokio::time::Instant::now() + self.settings.poll_interval);
                false
            }
        }
    }

    /// GetRecords once; whether records came.
    async fn read(&mut self, index: usize) -> bool {
        let Some(iterator) = self.shards[index].iterator.clone() else {
            self.shards[index].closed = true;
            return false;
        };
        let limit = i32::try_from(self.settings.batch_size.min(1000)).unwrap_or(1000);
        let got = self
            .client
            .get_records()
            .shard_iterator(iterator)
            .limit(limit)
            .send()
            .await;
        let output = match got {
            Ok(output) => output,
            Err(e) => {
                let expired = matches!(
                    e.as_service_error(),
                    Some(
                        streams::operation::get_records::GetRecordsError::ExpiredIteratorException(
                            _
                        )
                    )
                );
                self.shared.aws_error(&sdk_error("GetRecords", e));
                if expired {
                    let after = self.shards[index].last_read.clone();
                    let kind = if after.is_some() {
                        "AFTER_SEQUENCE_NUMBER"
                    } else {
                        "TRIM_HORIZON"
                    };
                    return self.start_shard(index, kind, after).await;
                }
                self.shards[index].not_before =
                    Some(tokio::time::Instant::now() + self.settings.poll_interval);
                return false;
            }
        };
        let mut records: Vec<PendingRecord> = output
            .records()
            .iter()
            .filter_map(|r| self.event_record(r))
            .collect();
        let last = records.last().map(|r| r.sequence_number.clone());
        let any = !records.is_empty();
        if !self.filters.is_empty() {
            // Lambda filters before batching: a dropped record is never sent, and the
            // checkpoint (`last_read`) moves past it with the others.
            let read = records.len();
            records.retain(|r| self.filters.iter().any(|f| f.matches(&r.event)));
            add(&self.shared.counters.records_filtered, read - records.len());
        }
        let shard = &mut self.shards[index];
        shard.iterator = output.next_shard_iterator().map(str::to_owned);
        if shard.iterator.is_none() {
            shard.closed = true;
        }
        if let Some(last) = last {
            shard.last_read = Some(last);
        }
        if !any && !shard.closed {
            // Caught up: the next read starts from a fresh iterator after the last record.
            // moto swaps a table's stream shard for a copy when it rolls back a cancelled
            // transaction, and an iterator of the old shard would never see another record;
            // DynamoDB gives the same records either way.
            shard.started = false;
        }
        shard.pending.extend(records);
        any
    }

    /// The event's form of a stream record (`None` for a record without a sequence number,
    /// which DynamoDB never sends).
    fn event_record(&self, record: &streams::types::Record) -> Option<PendingRecord> {
        let change = record.dynamodb()?;
        let sequence_number = change.sequence_number()?.to_owned();
        let created = change
            .approximate_creation_date_time()
            .map(DateTime::as_secs_f64);
        let mut dynamodb = Map::new();
        if let Some(at) = change.approximate_creation_date_time() {
            dynamodb.insert("ApproximateCreationDateTime".into(), json!(at.secs()));
        }
        if let Some(keys) = change.keys() {
            dynamodb.insert("Keys".into(), item_json(keys));
        }
        if let Some(image) = change.new_image() {
            dynamodb.insert("NewImage".into(), item_json(image));
        }
        if let Some(image) = change.old_image() {
            dynamodb.insert("OldImage".into(), item_json(image));
        }
        dynamodb.insert("SequenceNumber".into(), json!(sequence_number));
        dynamodb.insert("SizeBytes".into(), json!(change.size_bytes().unwrap_or(0)));
        if let Some(view) = change.stream_view_type() {
            dynamodb.insert("StreamViewType".into(), json!(view.as_str()));
        }
        let event = json!({
            "eventID": record.event_id().unwrap_or_default(),
            "eventName": record.event_name().map(|n| n.as_str()).unwrap_or_default(),
            "eventVersion": "1.1",
            "eventSource": "aws:dynamodb",
            "awsRegion": record.aws_region().unwrap_or(self.aws.region.as_str()),
            "dynamodb": dynamodb,
            "eventSourceARN": self.stream_arn,
        });
        Some(PendingRecord {
            event,
            sequence_number,
            created,
        })
    }

    /// Invokes the function with the next batch of shard `index` and acts on the outcome.
    async fn deliver(&mut self, index: usize) {
        let batch_size = self.settings.batch_size;
        let (event, sequence_numbers) = {
            let shard = &self.shards[index];
            let n = shard.limit.min(shard.pending.len());
            let records: Vec<&PendingRecord> = shard.pending.iter().take(n).collect();
            let event = json!({"Records": records.iter().map(|r| &r.event).collect::<Vec<_>>()});
            let sequence_numbers: Vec<String> =
                records.iter().map(|r| r.sequence_number.clone()).collect();
            (event, sequence_numbers)
        };
        let n = sequence_numbers.len();
        let shared = self.shared.clone();
        let counters = &shared.counters;
        add(&counters.batches_invoked, 1);
        add(&counters.records_delivered, n);
        self.shards[index].invocations += 1;
        let outcome = self.invoker.invoke(&event).await;
        let (failure, status) = match outcome {
            Invocation::Returned(body) => {
                if !self.settings.report_batch_item_failures {
                    self.succeeded(index, n);
                    return;
                }
                let ids: Vec<&str> = sequence_numbers.iter().map(String::as_str).collect();
                match batch_response(&body, &ids) {
                    BatchResponse::AllSucceeded => {
                        self.succeeded(index, n);
                        return;
                    }
                    BatchResponse::Failed(failed) => {
                        add(&counters.records_reported_failed, failed.len());
                        // Lambda checkpoints before the lowest failed sequence number.
                        let first = sequence_numbers
                            .iter()
                            .position(|s| failed.contains(s))
                            .unwrap_or(0);
                        self.partial_failure(index, first, n).await;
                        return;
                    }
                    BatchResponse::Invalid(why) => (why, Some(200)),
                }
            }
            Invocation::Failed { status, detail } => (detail, status),
        };
        add(&counters.invocation_errors, 1);
        self.shared.error(format!(
            "{} (shard {}, batch of {n} from {})",
            failure,
            self.shards[index].id,
            sequence_numbers.first().map_or("", String::as_str)
        ));
        let shard = &mut self.shards[index];
        if self.settings.bisect_batch_on_function_error && n > 1 {
            add(&counters.batches_bisected, 1);
            shard.limit = n.div_ceil(2);
            shard.bisected = shard.bisected.max(n);
            shard.not_before = Some(tokio::time::Instant::now() + self.settings.retry_delay);
            return;
        }
        shard.attempts += 1;
        if self.exhausted(index) {
            self.give_up(index, n, status, true).await;
            self.shards[index].advance(n, batch_size);
        } else {
            self.shards[index].not_before =
                Some(tokio::time::Instant::now() + self.settings.retry_delay);
        }
    }

    fn succeeded(&mut self, index: usize, n: usize) {
        add(&self.shared.counters.records_succeeded, n);
        self.shards[index].advance(n, self.settings.batch_size);
    }

    /// The records before `first` succeeded; the batch is retried from `first`.
    async fn partial_failure(&mut self, index: usize, first: usize, n: usize) {
        let batch_size = self.settings.batch_size;
        if first > 0 {
            add(&self.shared.counters.records_succeeded, first);
            self.shards[index].advance(first, batch_size);
        }
        let left = n - first;
        let shard = &mut self.shards[index];
        if self.settings.bisect_batch_on_function_error {
            // "The batch is bisected at the returned sequence number and Lambda retries only
            // the remaining records."
            shard.limit = left;
            shard.bisected = shard.bisected.max(left);
        }
        shard.attempts += 1;
        if self.exhausted(index) {
            self.give_up(index, left, Some(200), false).await;
            self.shards[index].advance(left, batch_size);
        } else {
            self.shards[index].not_before =
                Some(tokio::time::Instant::now() + self.settings.retry_delay);
        }
    }

    fn exhausted(&self, index: usize) -> bool {
        self.settings
            .maximum_retry_attempts
            .is_some_and(|max| self.shards[index].attempts > max)
    }

    /// Gives up the first `n` pending records of shard `index`: a failure record to the
    /// destination, when there is one.
    async fn give_up(&mut self, index: usize, n: usize, status: Option<u16>, function_error: bool) {
        add(&self.shared.counters.records_discarded, n);
        let Some(queue_url) = self.settings.on_failure_queue_url.clone() else {
            return;
        };
        let shard = &self.shards[index];
        let records: Vec<&PendingRecord> = shard.pending.iter().take(n).collect();
        let (Some(first), Some(last)) = (records.first(), records.last()) else {
            return;
        };
        self.failure_records += 1;
        let mut response_context = json!({
            "statusCode": status.unwrap_or(0),
            "executedVersion": "$LATEST",
        });
        if function_error {
            response_context["functionError"] = json!("Unhandled");
        }
        let arrival = |at: Option<f64>| {
            at.map(|secs| DateTime::from_secs_f64(secs).fmt(Format::DateTime).ok())
        };
        let record = json!({
            "requestContext": {
                "requestId": request_id(self.failure_records),
                "functionArn": self.invoker.function.arn(&self.aws.region),
                "condition": "RetryAttemptsExhausted",
                "approximateInvokeCount": shard.invocations,
            },
            "responseContext": response_context,
            "version": "1.0",
            "timestamp": now_iso8601(),
            "DDBStreamBatchInfo": {
                "shardId": shard.id,
                "startSequenceNumber": first.sequence_number,
                "endSequenceNumber": last.sequence_number,
                "approximateArrivalOfFirstRecord": arrival(first.created),
                "approximateArrivalOfLastRecord": arrival(last.created),
                "batchSize": records.len(),
                "streamArn": self.stream_arn,
            },
        });
        for attempt in 1..=DESTINATION_SEND_ATTEMPTS {
            let sent = self
                .sqs
                .send_message()
                .queue_url(&queue_url)
                .message_body(record.to_string())
                .send()
                .await;
            match sent {
                Ok(_) => {
                    add(&self.shared.counters.failures_sent, 1);
                    return;
                }
                Err(e) => {
                    self.shared.aws_error(&sdk_error(
                        &format!("SendMessage to the on-failure destination (attempt {attempt})"),
                        e,
                    ));
                    tokio::time::sleep(self.settings.retry_delay).await;
                }
            }
        }
    }
}

/// A filter pattern of Lambda's event filtering (`FilterCriteria.Filters[].Pattern`, parsed),
/// the part of the documented rules that the deployments' patterns use:
///
/// - a pattern is a JSON object; each key names a field of the record, and its value is either
///   an object (a pattern for the nested field) or an array of matchers (a leaf);
/// - a record matches when every leaf's field exists and its value matches ANY of the leaf's
///   matchers (an array value: when any of its elements does);
/// - matchers: an exact string, an exact number (compared as numbers, and only with JSON
///   numbers: DynamoDB's `{"N": "7"}` is a string), and `{"prefix": "..."}` on strings.
///
/// For DynamoDB streams Lambda filters on the record's `dynamodb` key only, so a pattern must
/// have that one top-level key. Anything else (`anything-but`, `numeric`, `exists`, `null`,
/// booleans, an empty leaf or object) is refused rather than emulated wrongly.
#[derive(Debug, Clone, PartialEq)]
pub enum FilterPattern {
    /// Fields and the patterns their values must match, every one.
    Object(Vec<(String, FilterPattern)>),
    /// Matchers, any one of which the value must match.
    Leaf(Vec<FilterMatcher>),
}

/// One matcher of a [`FilterPattern`] leaf.
#[derive(Debug, Clone, PartialEq)]
pub enum FilterMatcher {
    /// The string itself.
    String(String),
    /// The number itself.
    Number(f64),
    /// `{"prefix": "..."}`: a string starting with it.
    Prefix(String),
}

impl FilterPattern {
    /// A stream mapping's pattern, checked against the rules above.
    pub fn new(pattern: &Value) -> Result<Self, String> {
        let Value::Object(top) = pattern else {
            return Err("a pattern must be a JSON object".into());
        };
        if let Some(key) = top.keys().find(|k| *k != "dynamodb") {
            return Err(format!(
                "DynamoDB stream filters may only filter on the `dynamodb` key, not `{key}`"
            ));
        }
        Self::of(pattern, "")
    }

    fn of(pattern: &Value, path: &str) -> Result<Self, String> {
        let at = |key: &str| {
            if path.is_empty() {
                key.to_owned()
            } else {
                format!("{path}.{key}")
            }
        };
        match pattern {
            Value::Object(fields) if !fields.is_empty() => fields
                .iter()
                .map(|(key, value)| Ok((key.clone(), Self::of(value, &at(key))?)))
                .collect::<Result<_, String>>()
                .map(Self::Object),
            Value::Array(matchers) if !matchers.is_empty() => matchers
                .iter()
                .map(|m| FilterMatcher::new(m).map_err(|e| format!("at `{path}`: {e}")))
                .collect::<Result<_, String>>()
                .map(Self::Leaf),
            Value::Object(_) | Value::Array(_) => Err(format!(
                "at `{path}`: an empty object or array matches nothing"
            )),
            other => Err(format!(
                "at `{path}`: {other} is neither a nested pattern (an object) nor a list of \
                 matchers (an array)"
            )),
        }
    }

    /// Whether `record` (a stream record as the function's event carries it) matches.
    pub fn matches(&self, record: &Value) -> bool {
        match self {
            Self::Object(fields) => fields
                .iter()
                .all(|(key, pattern)| record.get(key).is_some_and(|value| pattern.matches(value))),
            Self::Leaf(matchers) => {
                let one = |v: &Value| matchers.iter().any(|m| m.matches(v));
                match record {
                    Value::Array(values) => values.iter().any(one),
                    value => one(value),
                }
            }
        }
    }
}

impl FilterMatcher {
    fn new(matcher: &Value) -> Result<Self, String> {
        match matcher {
            Value::String(s) => Ok(Self::String(s.clone())),
            Value::Number(n) => n
                .as_f64()
                .map(Self::Number)
                .ok_or_else(|| format!("the number {n} is out of range")),
            Value::Object(rule) => match (rule.len(), rule.get("prefix")) {
                (1, Some(Value::String(prefix))) => Ok(Self::Prefix(prefix.clone())),
                _ => Err(format!(
                    "the matcher {matcher} is not emulated (exact strings and numbers and \
                     {{\"prefix\": \"...\"}} are)"
                )),
            },
            other => Err(format!(
                "the matcher {other} is not emulated (exact strings and numbers and \
                 {{\"prefix\": \"...\"}} are)"
            )),
        }
    }

    fn matches(&self, value: &Value) -> bool {
        match (self, value) {
            (Self::String(want), Value::String(got)) => want == got,
            (Self::Number(want), Value::Number(got)) => got.as_f64() == Some(*want),
            (Self::Prefix(prefix), Value::String(got)) => got.starts_with(prefix.as_str()),
            _ => false,
        }
    }
}

/// A DynamoDB Streams attribute value as DynamoDB JSON (`{"S": "x"}`, binary as base64).
fn attribute_json(value: &streams::types::AttributeValue) -> Value {
    use streams::types::AttributeValue as A;
    match value {
        A::S(s) => json!({"S": s}),
        A::N(n) => json!({"N": n}),
        A::B(b) => json!({"B": aws_smithy_types::base64::encode(b.as_ref())}),
        A::Ss(ss) => json!({"SS": ss}),
        A::Ns(ns) => json!({"NS": ns}),
        A::Bs(bs) => json!({
            "BS": bs.iter().map(|b| aws_smithy_types::base64::encode(b.as_ref())).collect::<Vec<_>>()
        }),
        A::M(m) => json!({"M": item_json(m)}),
        A::L(l) => json!({"L": l.iter().map(attribute_json).collect::<Vec<_>>()}),
        A::Null(n) => json!({"NULL": n}),
        A::Bool(b) => json!({"BOOL": b}),
        // A type newer than this SDK: nothing to say about it.
        _ => json!({}),
    }
}

fn item_json(item: &HashMap<String, streams::types::AttributeValue>) -> Value {
    Value::Object(
        item.iter()
            .map(|(k, v)| (k.clone(), attribute_json(v)))
            .collect(),
    )
}

fn now_iso8601() -> String {
    DateTime::from(SystemTime::now())
        .fmt(Format::DateTime)
        .unwrap_or_default()
}

/// A request id for failure records: unique within the process.
fn request_id(n: u64) -> String {
    let nanos = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    format!(
        "{:08x}-{:04x}-{:04x}-{:012x}",
        std::process::id(),
        n & 0xffff,
        (nanos >> 48) & 0xffff,
        nanos & 0xffff_ffff_ffff
    )
}

/// An SQS mapping's settings: Lambda's event source mapping parameters that apply.
#[derive(Debug, Clone)]
pub struct QueueSettings {
    /// Messages per invocation, at most (1 to 10: one ReceiveMessage; default 10).
    pub batch_size: i32,
    /// `FunctionResponseTypes: [ReportBatchItemFailures]` (default on): the messages listed in
    /// `batchItemFailures` stay in the queue, the others are deleted; an invalid list keeps the
    /// whole batch. Off, a successful invocation deletes the whole batch.
    pub report_batch_item_failures: bool,
    /// How often an idle queue is polled: short polls, see the module doc (each of the
    /// `concurrency` pollers pauses that many times as long after an empty receive).
    pub empty_poll_delay: Duration,
    /// The visibility timeout asked for on receive (seconds); `None` keeps the queue's.
    pub visibility_timeout: Option<i32>,
    /// Batches in flight at once (default 5: Lambda's pollers start with five concurrent
    /// batches on a standard queue).
    pub concurrency: usize,
}

impl Default for QueueSettings {
    fn default() -> Self {
        Self {
            batch_size: 10,
            report_batch_item_failures: true,
            empty_poll_delay: Duration::from_millis(75),
            visibility_timeout: None,
            concurrency: 5,
        }
    }
}

/// An SQS queue → function mapping, running until dropped (see the module doc).
pub struct QueueMapping {
    /// The queue's ARN (the events' `eventSourceARN`).
    pub queue_arn: String,
    shared: Arc<Shared>,
    _worker: Worker,
}

impl QueueMapping {
    /// Starts delivering the queue at `queue_url` to `function`. Blocks until the queue is
    /// found (GetQueueAttributes), then polls in the background.
    pub fn start(
        aws: &AwsEndpoint,
        queue_url: &str,
        function: Function,
        settings: QueueSettings,
    ) -> Result<Self, MappingError> {
        let shared = Arc::new(Shared::default());
        let (arn_tx, arn_rx) = std::sync::mpsc::channel();
        let (aws, queue_url, thread_shared) = (aws.clone(), queue_url.to_owned(), shared.clone());
        let name = format!(
            "queue-mapping-{}",
            queue_url.rsplit('/').next().unwrap_or_default()
        );
        let worker = Worker::start(&name, move || async move {
            let poller =
                QueuePoller::new(aws, queue_url, function, settings, thread_shared).await?;
            let _ = arn_tx.send(poller.queue_arn.clone());
            Ok(poller.run())
        })?;
        let queue_arn = arn_rx
            .recv()
            .map_err(|_| MappingError::new("the queue mapping did not report its queue"))?;
        Ok(Self {
            queue_arn,
            shared,
            _worker: worker,
        })
    }

    /// What the mapping has done so far.
    pub fn counters(&self) -> MappingCounters {
        self.shared.snapshot()
    }

    /// The last error the mapping met (an AWS error or a failed invocation), if any.
    pub fn last_error(&self) -> Option<String> {
        self.shared.last_error()
    }

    /// Waits until `done` holds for the counters, up to `within`; the error says where the
    /// counters stopped and the last error.
    pub async fn wait_until(
        &self,
        within: Duration,
        done: impl FnMut(&MappingCounters) -> bool,
    ) -> Result<MappingCounters, MappingError> {
        self.shared.wait_until(within, done).await
    }
}

struct QueuePoller {
    aws: AwsEndpoint,
    client: sqs::Client,
    queue_url: String,
    queue_arn: String,
    invoker: Invoker,
    settings: QueueSettings,
    shared: Arc<Shared>,
}

impl QueuePoller {
    async fn new(
        aws: AwsEndpoint,
        queue_url: String,
        function: Function,
        mut settings: QueueSettings,
        shared: Arc<Shared>,
    ) -> Result<Self, MappingError> {
        settings.batch_size = settings.batch_size.clamp(1, 10);
        let client = aws.sqs();
        let queue_arn = queue_arn(&client, &queue_url).await?;
        Ok(Self {
            aws,
            client,
            queue_url,
            queue_arn,
            invoker: Invoker::new(function),
            settings,
            shared,
        })
    }

    async fn run(self) {
        // Staggered, and each pausing `concurrency` times as long after an empty receive: an
        // idle queue gets one receive per `empty_poll_delay` in all.
        let pollers = self.settings.concurrency.max(1);
        let idle = self.settings.empty_poll_delay * u32::try_from(pollers).unwrap_or(u32::MAX);
        let this = &self;
        let pollers = (0..pollers).map(|i| async move {
            tokio::time::sleep(this.settings.empty_poll_delay * u32::try_from(i).unwrap_or(0))
                .await;
            loop {
                if !this.poll().await {
                    tokio::time::sleep(idle).await;
                }
            }
        });
        futures::future::join_all(pollers).await;
    }

    /// One receive and, when messages came, one invocation; whether messages came.
    async fn poll(&self) -> bool {
        let received = self
            .client
            .receive_message()
            .queue_url(&self.queue_url)
            .max_number_of_messages(self.settings.batch_size)
            .message_system_attribute_names(sqs::types::MessageSystemAttributeName::All)
            .message_attribute_names("All")
            .wait_time_seconds(0)
            .set_visibility_timeout(self.settings.visibility_timeout)
            .send()
            .await;
        let messages = match received {
            Ok(output) => output.messages.unwrap_or_default(),
            Err(e) => {
                self.shared.aws_error(&sdk_error("ReceiveMessage", e));
                return false;
            }
        };
        if messages.is_empty() {
            return false;
        }
        let n = messages.len();
        let event = json!({
            "Records": messages.iter().map(|m| self.event_record(m)).collect::<Vec<_>>()
        });
        let counters = &self.shared.counters;
        add(&counters.batches_invoked, 1);
        add(&counters.records_delivered, n);
        let done: Vec<&sqs::types::Message> = match self.invoker.invoke(&event).await {
            Invocation::Returned(_) if !self.settings.report_batch_item_failures => {
                messages.iter().collect()
            }
            Invocation::Returned(body) => {
                let ids: Vec<&str> = messages
                    .iter()
                    .map(|m| m.message_id().unwrap_or_default())
                    .collect();
                match batch_response(&body, &ids) {
                    BatchResponse::AllSucceeded => messages.iter().collect(),
                    BatchResponse::Failed(failed) => {
                        add(&counters.records_reported_failed, failed.len());
                        messages
                            .iter()
                            .filter(|m| !failed.iter().any(|f| Some(f.as_str()) == m.message_id()))
                            .collect()
                    }
                    BatchResponse::Invalid(why) => {
                        add(&counters.invocation_errors, 1);
                        self.shared.error(why);
                        Vec::new()
                    }
                }
            }
            Invocation::Failed { detail, .. } => {
                add(&counters.invocation_errors, 1);
                self.shared.error(detail);
                Vec::new()
            }
        };
        self.delete(&done).await;
        true
    }

    /// DeleteMessageBatch for `messages` (at most 10, one receive's worth).
    async fn delete(&self, messages: &[&sqs::types::Message]) {
        if messages.is_empty() {
            return;
        }
        let entries: Result<Vec<_>, _> = messages
            .iter()
            .enumerate()
            .map(|(i, m)| {
                sqs::types::DeleteMessageBatchRequestEntry::builder()
                    .id(i.to_string())
                    .set_receipt_handle(m.receipt_handle().map(str::to_owned))
                    .build()
            })
            .collect();
        let entries = match entries {
            Ok(entries) => entries,
            Err(e) => {
                self.shared
                    .aws_error(&MappingError::new(format!("DeleteMessageBatch entry: {e}")));
                return;
            }
        };
        let deleted = self
            .client
            .delete_message_batch()
            .queue_url(&self.queue_url)
            .set_entries(Some(entries))
            .send()
            .await;
        match deleted {
            Ok(output) => {
                add(
                    &self.shared.counters.records_succeeded,
                    output.successful().len(),
                );
                if let Some(failed) = output.failed().first() {
                    self.shared.aws_error(&MappingError::new(format!(
                        "DeleteMessageBatch: {} of {} not deleted, first: {} {}",
                        output.failed().len(),
                        messages.len(),
                        failed.code(),
                        failed.message().unwrap_or_default()
                    )));
                }
            }
            Err(e) => self.shared.aws_error(&sdk_error("DeleteMessageBatch", e)),
        }
    }

    /// The event's form of a message.
    fn event_record(&self, message: &sqs::types::Message) -> Value {
        let attributes: Map<String, Value> = message
            .attributes()
            .into_iter()
            .flatten()
            .map(|(name, value)| (name.as_str().to_owned(), json!(value)))
            .collect();
        let message_attributes: Map<String, Value> = message
            .message_attributes()
            .into_iter()
            .flatten()
            .map(|(name, value)| {
                let base64 = |b: &aws_smithy_types::Blob| aws_smithy_types::base64::encode(b.as_ref());
                let mut attribute = json!({
                    "stringListValues": value.string_list_values(),
                    "binaryListValues": value.binary_list_values().iter().map(base64).collect::<Vec<_>>(),
                    "dataType": value.data_type(),
                });
                if let Some(s) = value.string_value() {
                    attribute["stringValue"] = json!(s);
                }
                if let Some(b) = value.binary_value() {
                    attribute["binaryValue"] = json!(base64(b));
                }
                (name.clone(), attribute)
            })
            .collect();
        let mut record = json!({
            "messageId": message.message_id().unwrap_or_default(),
            "receiptHandle": message.receipt_handle().unwrap_or_default(),
            "body": message.body().unwrap_or_default(),
            "attributes": attributes,
            "messageAttributes": message_attributes,
            "md5OfBody": message.md5_of_body().unwrap_or_default(),
            "eventSource": "aws:sqs",
            "eventSourceARN": self.queue_arn,
            "awsRegion": self.aws.region,
        });
        if let Some(md5) = message.md5_of_message_attributes() {
            record["md5OfMessageAttributes"] = json!(md5);
        }
        record
    }
}

/// A queue: its URL (for the API) and ARN (for redrive policies and events).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Queue {
    /// The queue URL.
    pub url: String,
    /// The queue ARN.
    pub arn: String,
}

/// A redrive policy: after `max_receive_count` receives, SQS moves a message to the
/// dead-letter queue.
#[derive(Debug, Clone)]
pub struct Redrive {
    /// The dead-letter queue's ARN.
    pub dead_letter_target_arn: String,
    /// Receives before the move.
    pub max_receive_count: u32,
}

async fn queue_arn(client: &sqs::Client, queue_url: &str) -> Result<String, MappingError> {
    let attributes = client
        .get_queue_attributes()
        .queue_url(queue_url)
        .attribute_names(sqs::types::QueueAttributeName::QueueArn)
        .send()
        .await
        .map_err(|e| sdk_error("GetQueueAttributes", e))?;
    attributes
        .attributes()
        .and_then(|a| a.get(&sqs::types::QueueAttributeName::QueueArn))
        .cloned()
        .ok_or_else(|| MappingError::new(format!("queue {queue_url} has no QueueArn")))
}

/// Creates (or finds: CreateQueue is idempotent for the same attributes) the standard queue
/// `name` with a visibility timeout of `visibility_timeout_secs` and, when given, a redrive
/// policy (the dead-letter queue must exist).
///
/// moto implements the redrive policy as SQS does: a ReceiveMessage that meets a visible
/// message already received `maxReceiveCount` times moves it to the dead-letter queue instead
/// of returning it.
pub async fn create_queue(
    client: &sqs::Client,
    name: &str,
    visibility_timeout_secs: u32,
    redrive: Option<&Redrive>,
) -> Result<Queue, MappingError> {
    use sqs::types::QueueAttributeName;
    let mut request = client.create_queue().queue_name(name).attributes(
        QueueAttributeName::VisibilityTimeout,
        visibility_timeout_secs.to_string(),
    );
    if let Some(redrive) = redrive {
        request = request.attributes(
            QueueAttributeName::RedrivePolicy,
            json!({
                "deadLetterTargetArn": redrive.dead_letter_target_arn,
                "maxReceiveCount": redrive.max_receive_count.to_string(),
            })
            .to_string(),
        );
    }
    let created = request
        .send()
        .await
        .map_err(|e| sdk_error("CreateQueue", e))?;
    let url = created
        .queue_url()
        .ok_or_else(|| MappingError::new(format!("CreateQueue {name}: no queue URL")))?
        .to_owned();
    let arn = queue_arn(client, &url).await?;
    Ok(Queue { url, arn })
}

/// Creates the queue `name` and its dead-letter queue `{name}-dlq` (same visibility timeout):
/// messages received `max_receive_count` times go to the dead-letter queue. Returns (queue,
/// dead-letter queue).
pub async fn create_queue_with_dlq(
    client: &sqs::Client,
    name: &str,
    visibility_timeout_secs: u32,
    max_receive_count: u32,
) -> Result<(Queue, Queue), MappingError> {
    let dlq = create_queue(
        client,
        &format!("{name}-dlq"),
        visibility_timeout_secs,
        None,
    )
    .await?;
    let redrive = Redrive {
        dead_letter_target_arn: dlq.arn.clone(),
        max_receive_count,
    };
    let queue = create_queue(client, name, visibility_timeout_secs, Some(&redrive)).await?;
    Ok((queue, dlq))
}

/// Receives (and deletes) every message of the queue at `queue_url` that is visible now, up to
/// `max` (short polls, as the mappings do). For tests reading a destination or a dead-letter
/// queue.
pub async fn drain_queue(
    client: &sqs::Client,
    queue_url: &str,
    max: usize,
) -> Result<Vec<sqs::types::Message>, MappingError> {
    let mut drained = Vec::new();
    while drained.len() < max {
        let received = client
            .receive_message()
            .queue_url(queue_url)
            .max_number_of_messages(10)
            .message_system_attribute_names(sqs::types::MessageSystemAttributeName::All)
            .wait_time_seconds(0)
            .send()
            .await
            .map_err(|e| sdk_error("ReceiveMessage", e))?;
        let messages = received.messages.unwrap_or_default();
        if messages.is_empty() {
            break;
        }
        for message in &messages {
            if let Some(handle) = message.receipt_handle() {
                client
                    .delete_message()
                    .queue_url(queue_url)
                    .receipt_handle(handle)
                    .send()
                    .await
                    .map_err(|e| sdk_error("DeleteMessage", e))?;
            }
        }
        drained.extend(messages);
    }
    Ok(drained)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batch_responses_follow_lambda_rules() {
        let ids = ["1", "2", "3"];
        assert_eq!(batch_response(b"", &ids), BatchResponse::AllSucceeded);
        assert_eq!(batch_response(b"null", &ids), BatchResponse::AllSucceeded);
        assert_eq!(batch_response(b"{}", &ids), BatchResponse::AllSucceeded);
        assert_eq!(
            batch_response(br#"{"batchItemFailures":null}"#, &ids),
            BatchResponse::AllSucceeded
        );
        assert_eq!(
            batch_response(br#"{"batchItemFailures":[]}"#, &ids),
            BatchResponse::AllSucceeded
        );
        assert_eq!(
            batch_response(
                br#"{"batchItemFailures":[{"itemIdentifier":"3"},{"itemIdentifier":"2"}]}"#,
                &ids
            ),
            BatchResponse::Failed(vec!["3".into(), "2".into()])
        );
        for invalid in [
            &br#"{"batchItemFailures":[{"itemIdentifier":""}]}"#[..],
            br#"{"batchItemFailures":[{"itemIdentifier":null}]}"#,
            br#"{"batchItemFailures":[{"itemId":"1"}]}"#,
            br#"{"batchItemFailures":[{"itemIdentifier":"9"}]}"#,
            br#"{"batchItemFailures":"1"}"#,
            b"not json",
            br#""ok""#,
        ] {
            assert!(
                matches!(batch_response(invalid, &ids), BatchResponse::Invalid(_)),
                "{}",
                String::from_utf8_lossy(invalid)
            );
        }
    }

    #[test]
    fn filter_patterns_match_by_lambda_rules() {
        let message = FilterPattern::new(&json!({"dynamodb": {"Keys": {
            "pk": {"S": [{"prefix": "R#"}]},
            "sk": {"S": [{"prefix": "M#"}, "HEAD"]},
        }}}))
        .unwrap();
        let record = |pk: &str, sk: &str| {
            json!({"eventName": "INSERT", "dynamodb": {
                "Keys": {"pk": {"S": pk}, "sk": {"S": sk}},
                "NewImage": {"pk": {"S": pk}, "sk": {"S": sk}, "n": {"N": "7"}},
            }})
        };
        assert!(message.matches(&record("R#t/r", "M#0001")));
        assert!(message.matches(&record("R#t/r", "HEAD")));
        // Every leaf must hold; an exact value is the whole value.
        assert!(!message.matches(&record("EPS", "M#e1")));
        assert!(!message.matches(&record("R#t/r", "S#c1")));
        assert!(!message.matches(&record("R#t/r", "HEADS")));
        // A missing field, or one of another type, matches nothing.
        assert!(!message.matches(&json!({"dynamodb": {"Keys": {"pk": {"S": "R#t/r"}}}})));
        assert!(!message.matches(&json!({"dynamodb": {"Keys": {
            "pk": {"S": "R#t/r"}, "sk": {"N": "1"},
        }}})));
        assert!(!message.matches(&json!({"eventName": "INSERT"})));

        let numbers = FilterPattern::new(&json!({"dynamodb": {"SizeBytes": [26, 27.5]}})).unwrap();
        assert!(numbers.matches(&json!({"dynamodb": {"SizeBytes": 26}})));
        assert!(numbers.matches(&json!({"dynamodb": {"SizeBytes": 26.0}})));
        assert!(numbers.matches(&json!({"dynamodb": {"SizeBytes": [1, 27.5]}})));
        assert!(!numbers.matches(&json!({"dynamodb": {"SizeBytes": "26"}})));
        assert!(!numbers.matches(&json!({"dynamodb": {"SizeBytes": 25}})));
    }

    #[test]
    fn filter_patterns_outside_the_emulated_rules_are_refused() {
        for (pattern, says) in [
            (json!(["x"]), "JSON object"),
            (
                json!({"eventName": ["INSERT"]}),
                "only filter on the `dynamodb` key",
            ),
            (json!({"dynamodb": {}}), "empty"),
            (json!({"dynamodb": {"Keys": []}}), "empty"),
            (json!({"dynamodb": {"Keys": "x"}}), "neither"),
            (
                json!({"dynamodb": {"SizeBytes": [{"numeric": [">", 5]}]}}),
                "not emulated",
            ),
            (
                json!({"dynamodb": {"Keys": {"pk": {"S": [{"anything-but": ["x"]}]}}}}),
                "not emulated",
            ),
            (
                json!({"dynamodb": {"Keys": {"pk": {"S": [{"prefix": 5}]}}}}),
                "not emulated",
            ),
            (
                json!({"dynamodb": {"Keys": {"pk": {"S": [{"prefix": "a", "x": 1}]}}}}),
                "not emulated",
            ),
            (
                json!({"dynamodb": {"NewImage": {"on": {"BOOL": [true]}}}}),
                "not emulated",
            ),
            (
                json!({"dynamodb": {"NewImage": {"x": [null]}}}),
                "not emulated",
            ),
        ] {
            let error = FilterPattern::new(&pattern).unwrap_err();
            assert!(error.contains(says), "{pattern}: {error}");
        }
    }

    #[test]
    fn attributes_are_dynamodb_json() {
        use streams::types::AttributeValue as A;
        let item = HashMap::from([
            ("s".to_owned(), A::S("x".into())),
            ("n".to_owned(), A::N("7".into())),
            (
                "b".to_owned(),
                A::B(aws_smithy_types::Blob::new(vec![0, 1, 2])),
            ),
            ("l".to_owned(), A::L(vec![A::Bool(true), A::Null(true)])),
            (
                "m".to_owned(),
                A::M(HashMap::from([("ss".to_owned(), A::Ss(vec!["a".into()]))])),
            ),
        ]);
        assert_eq!(
            item_json(&item),
            json!({
                "s": {"S": "x"},
                "n": {"N": "7"},
                "b": {"B": "AAEC"},
                "l": {"L": [{"BOOL": true}, {"NULL": true}]},
                "m": {"M": {"ss": {"SS": ["a"]}}},
            })
        );
    }
}
