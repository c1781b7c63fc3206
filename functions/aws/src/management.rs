//! The API Gateway Management API as the core `Gateway` port: `PostToConnection` to send,
//! `DeleteConnection` to close. 410 Gone is reported as [`GatewayError::Gone`] (the service then
//! forgets the connection); 429 is retried with exponential backoff and full jitter.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use aws_sdk_apigatewaymanagement::Client;
use aws_sdk_apigatewaymanagement::error::SdkError;
use aws_sdk_apigatewaymanagement::primitives::Blob;
use roomcast_core::gateway::{Gateway, GatewayError};
use roomcast_core::split::SplitPolicy;

use crate::fanout::FanoutInvoker;

/// Attempts for one post while API Gateway answers 429.
pub const MAX_THROTTLED_ATTEMPTS: u32 = 4;
/// First backoff after a 429; doubles each attempt (full jitter).
pub const THROTTLE_BACKOFF: Duration = Duration::from_millis(50);
/// Posts one broadcast keeps in flight. Each post is an HTTPS round trip of tens of
/// milliseconds, so 32 at a time (the core's default) takes ~8 s for a room of 10,000; 400 on
/// the client's keep-alive pool takes ~0.6 s at 25 ms a post (docs/benchmarks.md, "AWS fan-out
/// at scale"). 400 sockets stay well inside Lambda's 1,024 file descriptors, and 400 posts per
/// 25 ms (16,000/s) drain API Gateway's account burst of 5,000 (refilled at 10,000/s) only
/// after ~13,000 posts, so one broadcast to 10,000 is not throttled.
pub const MANAGEMENT_FANOUT_CONCURRENCY: usize = 400;

/// What one invocation's fan-out did, for metrics.
#[derive(Debug, Default)]
pub struct GatewayCounters {
    /// Frames delivered.
    pub sent: AtomicU64,
    /// Recipients found gone (410).
    pub gone: AtomicU64,
    /// 429 answers (each retried or, at the end, given up).
    pub throttled: AtomicU64,
    /// Other failures.
    pub failed: AtomicU64,
}

impl GatewayCounters {
    fn bump(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// Reads a counter.
    pub fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }
}

/// The Management API client for one endpoint (`https://{domain}/{stage}`, or configured).
pub struct ManagementGateway {
    client: Client,
    concurrency: usize,
    /// Where big broadcasts' slices go, and how they are cut ([`crate::fanout`]).
    hand_off: Option<(FanoutInvoker, SplitPolicy)>,
    /// What this gateway did.
    pub counters: GatewayCounters,
}

impl ManagementGateway {
    /// A gateway over `client` (built once per endpoint, so its connections are kept alive
    /// across invocations), [`MANAGEMENT_FANOUT_CONCURRENCY`] posts at a time.
    pub fn new(client: Client) -> Self {
        Self::with_concurrency(client, MANAGEMENT_FANOUT_CONCURRENCY)
    }

    /// A gateway keeping `concurrency` posts of a broadcast in flight (the fan-out benchmark
    /// compares settings).
    pub fn with_concurrency(client: Client, concurrency: usize) -> Self {
        Self {
            client,
            concurrency,
            hand_off: None,
            counters: GatewayCounters::default(),
        }
    }

    /// This gateway, splitting broadcasts by `policy` and handing slices to `invoker`.
    #[must_use]
    pub fn with_hand_off(mut self, invoker: FanoutInvoker, policy: SplitPolicy) -> Self {
        self.hand_off = Some((invoker, policy));
        self
    }
}

fn jitter(attempt: u32) -> Duration {
    use rand::Rng;
    let cap = THROTTLE_BACKOFF.saturating_mul(1 << attempt.min(10));
    let millis = u64::try_from(cap.as_millis()).unwrap_or(u64::MAX);
    Duration::from_millis(rand::rng().random_range(0..=millis))
}

#[async_trait::async_trait]
impl Gateway for ManagementGateway {
    async fn send(&self, conn_id: &str, frame: &str) -> Result<(), GatewayError> {
        let mut attempt = 0;
        loop {
            let result = self
                .client
                .post_to_connection()
                .connection_id(conn_id)
                .data(Blob::new(frame.as_bytes()))
                .send()
                .await;
            let error = match result {
                Ok(_) => {
                    GatewayCounters::bump(&self.counters.sent);
                    return Ok(());
                }
                Err(SdkError::ServiceError(e)) => e.into_err(),
                Err(other) => {
                    GatewayCounters::bump(&self.counters.failed);
                    return Err(GatewayError::Other(other.to_string()));
                }
            };
            if error.is_gone_exception() {
                GatewayCounters::bump(&self.counters.gone);
                return Err(GatewayError::Gone);
            }
            if error.is_limit_exceeded_exception() {
                GatewayCounters::bump(&self.counters.throttled);
                attempt += 1;
                if attempt >= MAX_THROTTLED_ATTEMPTS {
                    return Err(GatewayError::Throttled);
                }
                tokio::time::sleep(jitter(attempt)).await;
                continue;
            }
            GatewayCounters::bump(&self.counters.failed);
            return Err(GatewayError::Other(error.to_string()));
        }
    }

    fn fanout_concurrency(&self) -> usize {
        self.concurrency
    }

    fn fanout_split(&self) -> Option<SplitPolicy> {
        self.hand_off.as_ref().map(|(_, policy)| *policy)
    }

    /// An asynchronous invocation of the `fanout` function with the slice. When it fails the
    /// core posts the slice itself, so a failed Invoke loses no delivery.
    async fn hand_off(&self, conn_ids: &[String], frame: &str) -> Result<(), GatewayError> {
        match &self.hand_off {
            Some((invoker, _)) => invoker.invoke(conn_ids, frame).await,
            None => Err(GatewayError::Other("no fanout function".into())),
        }
    }

    async fn close(&self, conn_id: &str, _code: u16, _reason: &str) -> Result<(), GatewayError> {
        // The Management API cannot set a close code: API Gateway closes with 1000. Clients read
        // the reason from the error frame the service sent before closing.
        match self
            .client
            .delete_connection()
            .connection_id(conn_id)
            .send()
            .await
        {
            Ok(_) => Ok(()),
            Err(SdkError::ServiceError(e)) if e.err().is_gone_exception() => {
                Err(GatewayError::Gone)
            }
            Err(e) => Err(GatewayError::Other(e.to_string())),
        }
    }
}
