//! The harness of the Lambda handler tests and the AWS cost model (feature `aws-lambda`): the
//! functions' runtime on a real DynamoDB (moto), a Management API that follows API Gateway's
//! documented behaviour (AWS itself cannot run here, so a small server plays it: POST/DELETE
//! `@connections/{id}`, 410 `GoneException`, 429 `LimitExceededException`, errors typed by
//! `x-amzn-ErrorType`; optionally API Gateway's answer times and account throttle,
//! [`PostTiming`]), API Gateway event fixtures (`testkit/fixtures/apigw/*.json`, with
//! `connectedAt` and `requestTimeEpoch`), and a record of every DynamoDB operation the runtime
//! calls.
#![allow(
    clippy::unwrap_used,
    missing_docs,
    reason = "test support: a failing call is a test failure; the fields are the harness's state"
)]

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::fault_proxy::FaultProxy;
use super::moto::{Dynamo, dynamo};
use aws_config::{BehaviorVersion, Region};
use aws_sdk_dynamodb::config::interceptors::BeforeTransmitInterceptorContextRef;
use aws_sdk_dynamodb::config::{ConfigBag, Credentials, Intercept, RuntimeComponents};
use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use roomcast_apigw::{WsEvent, WsResponse};
use roomcast_aws::fanout::{FanoutInvoker, LAMBDA_SPLIT};
use roomcast_aws::lambda::{FunctionConfig, Runtime, env};
use roomcast_core::auth::{Claims, Role, TokenSigner};
use roomcast_core::ratelimit::{RateDecision, RatePolicy, RateState};
use roomcast_core::split::SplitPolicy;
use serde_json::{Value, json};

pub const SECRET: &str = "handler-test-secret-0123456789abcdef";

/// Names of the environment variables that set the fake's [`PostTiming`] (unset: off).
pub mod timing_env {
    /// Milliseconds every Management API request takes before its answer.
    pub const LATENCY_MS: &str = "ROOMCAST_SIM_POST_LATENCY_MS";
    /// Up to this many milliseconds more, spread evenly (deterministic per request).
    pub const JITTER_MS: &str = "ROOMCAST_SIM_POST_JITTER_MS";
    /// API Gateway's account throttle as `PER_SEC/BURST` (`10000/5000`), or `aws` for the
    /// documented default.
    pub const THROTTLE: &str = "ROOMCAST_SIM_THROTTLE";
}

/// How long API Gateway takes to answer a Management API request, and when it throttles.
/// Default: at once, never throttled.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PostTiming {
    /// Time every request takes.
    pub latency: Duration,
    /// Up to this much more, spread evenly over requests.
    pub jitter: Duration,
    /// The account's token bucket: a request finding it empty is answered 429
    /// `LimitExceededException`, as PostToConnection is documented to be.
    pub throttle: Option<RatePolicy>,
}

impl PostTiming {
    /// API Gateway's default account-level throttle, shared by every REST, HTTP and WebSocket API
    /// and the WebSocket callback (Management) API of an account in a Region: 10,000 requests
    /// per second, a token bucket of 5,000 (docs.aws.amazon.com/apigateway/latest/developerguide/
    /// limits.html).
    pub const API_GATEWAY_THROTTLE: RatePolicy = RatePolicy {
        per_sec: 10_000,
        burst: 5_000,
        max_strikes: u32::MAX,
    };

    /// The timing [`timing_env`] sets through `get`.
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<Self, String> {
        let millis = |name: &str| -> Result<Duration, String> {
            get(name).map_or(Ok(Duration::ZERO), |v| {
                v.trim()
                    .parse()
                    .map(Duration::from_millis)
                    .map_err(|e| format!("{name}={v}: {e}"))
            })
        };
        let throttle = match get(timing_env::THROTTLE).as_deref().map(str::trim) {
            None | Some("") => None,
            Some("aws") => Some(Self::API_GATEWAY_THROTTLE),
            Some(v) => {
                let number = |n: &str| {
                    n.trim()
                        .parse::<u32>()
                        .map_err(|e| format!("{}={v}: {e}", timing_env::THROTTLE))
                };
                let (per_sec, burst) = v
                    .split_once('/')
                    .ok_or_else(|| format!("{}={v}: want PER_SEC/BURST", timing_env::THROTTLE))?;
                Some(RatePolicy {
                    per_sec: number(per_sec)?,
                    burst: number(burst)?,
                    max_strikes: u32::MAX,
                })
            }
        };
        Ok(Self {
            latency: millis(timing_env::LATENCY_MS)?,
            jitter: millis(timing_env::JITTER_MS)?,
            throttle,
        })
    }

    /// The time request number `n` takes: the latency and a share of the jitter spread evenly
    /// by a hash of `n` (the same run twice takes the same times).
    fn delay(&self, n: u64) -> Duration {
        let jitter = u64::try_from(self.jitter.as_micros()).unwrap_or(u64::MAX);
        let spread = if jitter == 0 {
            0
        } else {
            splitmix64(n) % (jitter + 1)
        };
        self.latency + Duration::from_micros(spread)
    }
}

/// SplitMix64: an even spread of `n` over u64.
fn splitmix64(n: u64) -> u64 {
    let mut z = n.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// The Management API as API Gateway documents it.
#[derive(Default)]
pub struct Connections {
    /// Answer times and throttle ([`PostTiming::default`]: at once, never).
    pub timing: PostTiming,
    /// The account's token bucket under `timing.throttle`.
    pub bucket: RateState,
    /// When the fake started: the bucket's clock counts from here.
    pub started: Option<Instant>,
    /// Posts answered 429 by the account throttle.
    pub throttled: u64,
    /// Posts delivered, and when the last delivery was answered.
    pub delivered: u64,
    pub last_delivery: Option<Instant>,
    /// Keep delivered frames in `received` (the fan-out benchmark only counts them).
    pub discard_frames: bool,
    pub live: HashSet<String>,
    /// 429s still to answer per connection before accepting.
    pub throttle: HashMap<String, u32>,
    /// Connections whose posts API Gateway fails with a 500 (an internal error: the
    /// connection is not gone).
    pub failing: HashSet<String>,
    pub received: HashMap<String, Vec<Value>>,
    /// Management API requests answered so far (any status).
    pub calls: u64,
}

pub type Shared = Arc<Mutex<Connections>>;

fn management_error(status: StatusCode, error_type: &'static str) -> Response {
    (
        status,
        [("x-amzn-ErrorType", error_type)],
        axum::Json(json!({"message": null})),
    )
        .into_response()
}

/// Whether the account's bucket has a token for a request now; its time.
fn admit(s: &mut Connections) -> (bool, Duration) {
    s.calls += 1;
    let delay = s.timing.delay(s.calls);
    let Some(policy) = s.timing.throttle else {
        return (true, delay);
    };
    let started = *s.started.get_or_insert_with(Instant::now);
    let now_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
    let admitted = s.bucket.take(&policy, now_ms) == RateDecision::Allow;
    if !admitted {
        s.throttled += 1;
    }
    (admitted, delay)
}

async fn post_to_connection(
    State(shared): State<Shared>,
    Path(id): Path<String>,
    body: Bytes,
) -> Response {
    let (admitted, delay) = admit(&mut shared.lock().unwrap());
    tokio::time::sleep(delay).await;
    if !admitted {
        return management_error(StatusCode::TOO_MANY_REQUESTS, "LimitExceededException");
    }
    let mut s = shared.lock().unwrap();
    if !s.live.contains(&id) {
        return management_error(StatusCode::GONE, "GoneException");
    }
    if s.failing.contains(&id) {
        return (
            StatusCode::INTERNAL_SERVER_ERROR,
            axum::Json(json!({"message": "Internal server error"})),
        )
            .into_response();
    }
    if let Some(left) = s.throttle.get_mut(&id).filter(|n| **n > 0) {
        *left -= 1;
        return management_error(StatusCode::TOO_MANY_REQUESTS, "LimitExceededException");
    }
    s.delivered += 1;
    s.last_delivery = Some(Instant::now());
    if !s.discard_frames {
        s.received
            .entry(id)
            .or_default()
            .push(serde_json::from_slice(&body).unwrap());
    }
    StatusCode::OK.into_response()
}

async fn delete_connection(State(shared): State<Shared>, Path(id): Path<String>) -> Response {
    let (admitted, delay) = admit(&mut shared.lock().unwrap());
    tokio::time::sleep(delay).await;
    if !admitted {
        return management_error(StatusCode::TOO_MANY_REQUESTS, "LimitExceededException");
    }
    let mut s = shared.lock().unwrap();
    if s.live.remove(&id) {
        StatusCode::NO_CONTENT.into_response()
    } else {
        management_error(StatusCode::GONE, "GoneException")
    }
}

/// Records the DynamoDB operation (`GetItem`, `Query`, …) of every request sent.
#[derive(Debug, Default, Clone)]
pub struct Operations(Arc<Mutex<BTreeSet<String>>>);

impl Operations {
    /// Every operation since the last take.
    pub fn take(&self) -> BTreeSet<String> {
        std::mem::take(&mut *self.0.lock().unwrap())
    }
}

impl Intercept for Operations {
    fn name(&self) -> &'static str {
        "RecordOperations"
    }

    fn read_before_transmit(
        &self,
        context: &BeforeTransmitInterceptorContextRef<'_>,
        _components: &RuntimeComponents,
        _cfg: &mut ConfigBag,
    ) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
        // DynamoDB's JSON protocol names the operation in `X-Amz-Target: DynamoDB_20120810.Op`.
        if let Some(op) = context
            .request()
            .headers()
            .get("x-amz-target")
            .and_then(|t| t.split('.').nth(1))
        {
            self.0.lock().unwrap().insert(op.to_owned());
        }
        Ok(())
    }
}

pub struct World {
    pub runtime: Runtime,
    pub connections: Shared,
    pub operations: Operations,
    /// Every DynamoDB call with its units (the cost tests and benchmark).
    pub meter: super::capacity::Meter,
    pub dynamo: Dynamo,
    /// Between the functions and DynamoDB, when the world was made with [`world_with_faults`].
    pub faults: Option<FaultProxy>,
    /// Lambda's Invoke API: the runtime hands big rooms' slices to `fanout` there, which runs
    /// them on a runtime of its own over the same table and Management API.
    pub lambda: super::invoke::Shared,
}

/// The `fanout` function's name in the test worlds.
pub const FANOUT_FUNCTION: &str = "roomcast-fanout";

pub async fn world() -> World {
    world_with(&[]).await
}

pub async fn world_with(extra: &[(&'static str, &str)]) -> World {
    let dynamo = dynamo();
    let endpoint = dynamo.endpoint.clone();
    build(dynamo, endpoint, None, extra, LAMBDA_SPLIT).await
}

/// A world whose runtime splits broadcasts by `split` (small rooms stand for big ones).
pub async fn world_splitting(split: SplitPolicy) -> World {
    let dynamo = dynamo();
    let endpoint = dynamo.endpoint.clone();
    build(dynamo, endpoint, None, &[], split).await
}

/// A world whose functions reach DynamoDB through a [`FaultProxy`] (`world.faults`).
pub async fn world_with_faults() -> World {
    let dynamo = dynamo();
    let proxy = FaultProxy::start(&dynamo.endpoint).await.unwrap();
    let endpoint = proxy.endpoint.clone();
    build(dynamo, endpoint, Some(proxy), &[], LAMBDA_SPLIT).await
}

async fn build(
    dynamo: Dynamo,
    endpoint: String,
    faults: Option<FaultProxy>,
    extra: &[(&'static str, &str)],
    split: SplitPolicy,
) -> World {
    let timing = PostTiming::from_lookup(|name| std::env::var(name).ok()).unwrap();
    let (management, connections) = management_api(timing).await;
    let table = format!("handlers-{}", std::process::id());
    let mut vars = HashMap::from([
        (env::JWT_SECRET, SECRET.to_owned()),
        (env::TABLE, table),
        (env::MANAGEMENT_ENDPOINT, management),
    ]);
    vars.extend(extra.iter().map(|(k, v)| (*k, (*v).to_owned())));
    let config = FunctionConfig::from_env(|k| vars.get(k).cloned()).unwrap();
    let sdk = aws_config::defaults(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .endpoint_url(&endpoint)
        .credentials_provider(Credentials::new("test", "test", None, None, "test"))
        .load()
        .await;
    let operations = Operations::default();
    let meter = super::capacity::Meter::default();
    let dynamodb = aws_sdk_dynamodb::Client::from_conf(
        aws_sdk_dynamodb::config::Builder::from(&sdk)
            .interceptor(operations.clone())
            .interceptor(meter.clone())
            .build(),
    );
    let (lambda_endpoint, lambda) = super::invoke::lambda_api().await;
    let fanout = Runtime::with_dynamodb(config.clone(), dynamodb.clone(), sdk.clone()).unwrap();
    lambda.lock().unwrap().handler = Some(Arc::new(fanout.with_fanout(None)));
    let lambda_client = aws_sdk_lambda::Client::from_conf(
        aws_sdk_lambda::config::Builder::from(&sdk)
            .endpoint_url(&lambda_endpoint)
            .build(),
    );
    let invoker = FanoutInvoker::new(lambda_client, FANOUT_FUNCTION.to_owned());
    let runtime = Runtime::with_dynamodb(config, dynamodb, sdk)
        .unwrap()
        .with_fanout(Some((invoker, split)));
    runtime.store().ensure_table().await.unwrap();
    operations.take();
    meter.take();
    World {
        runtime,
        connections,
        operations,
        meter,
        dynamo,
        faults,
        lambda,
    }
}

/// Starts the fake Management API on a loopback port with `timing`: its endpoint and state.
pub async fn management_api(timing: PostTiming) -> (String, Shared) {
    let connections = Shared::new(Mutex::new(Connections {
        timing,
        ..Connections::default()
    }));
    let app = Router::new()
        .route(
            "/@connections/{id}",
            post(post_to_connection).delete(delete_connection),
        )
        .with_state(connections.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let endpoint = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (endpoint, connections)
}

pub fn fixture(name: &str) -> WsEvent {
    let path = format!("{}/fixtures/apigw/{name}.json", env!("CARGO_MANIFEST_DIR"));
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

pub fn token(user: &str, role: Role) -> String {
    let exp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 3600;
    let claims = Claims {
        sub: Some(user.into()),
        tid: Some("acme".into()),
        rooms: vec!["support-*".into()],
        role,
        exp: Some(exp),
        ..Claims::default()
    };
    TokenSigner::hs256(SECRET.as_bytes()).sign(&claims)
}

/// A `user` token of tenant `acme` granting `rooms`, named `Member {user}`, valid for four
/// hours (long enough for the cost benchmark's runs).
pub fn member_token(user: &str, rooms: &[&str]) -> String {
    TokenSigner::hs256(SECRET.as_bytes()).sign(&Claims {
        sub: Some(user.into()),
        tid: Some("acme".into()),
        name: Some(format!("Member {user}")),
        rooms: rooms.iter().map(|r| (*r).to_owned()).collect(),
        role: Role::User,
        exp: Some(now_ms() / 1000 + 4 * 3600),
        ..Claims::default()
    })
}

pub fn now_ms() -> u64 {
    u64::try_from(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis(),
    )
    .unwrap()
}

impl World {
    /// Runs the connect fixture for `conn` with `token` in the subprotocol header.
    pub async fn connect(&self, conn: &str, token: &str) -> WsResponse {
        let mut ev = fixture("connect");
        ev.request_context.connection_id = conn.into();
        ev.request_context.request_time_epoch = now_ms();
        let headers = ev.headers.as_mut().unwrap();
        headers.insert(
            "Sec-WebSocket-Protocol".into(),
            format!("roomcast.v1, {token}"),
        );
        let response = self.runtime.handle_websocket(ev).await;
        if response.status_code == 200 {
            self.connections.lock().unwrap().live.insert(conn.into());
        }
        response
    }

    pub async fn frame(&self, conn: &str, route: &str, body: Value) {
        let mut ev = fixture("message");
        ev.request_context.connection_id = conn.into();
        ev.request_context.route_key = route.into();
        ev.request_context.request_time_epoch = now_ms();
        ev.body = Some(body.to_string());
        assert_eq!(self.runtime.handle_websocket(ev).await.status_code, 200);
    }

    /// Runs the disconnect fixture for `conn`.
    pub async fn disconnect(&self, conn: &str) {
        let mut ev = fixture("disconnect");
        ev.request_context.connection_id = conn.into();
        ev.request_context.request_time_epoch = now_ms();
        assert_eq!(self.runtime.handle_websocket(ev).await.status_code, 200);
    }

    /// The client of `conn` vanishes without a `$disconnect`: API Gateway answers 410 for it.
    pub fn vanish(&self, conn: &str) {
        self.connections.lock().unwrap().live.remove(conn);
    }

    pub fn received(&self, conn: &str) -> Vec<Value> {
        self.connections
            .lock()
            .unwrap()
            .received
            .remove(conn)
            .unwrap_or_default()
    }
}

/// Sends `bytes` to an upload target (`{method: "POST", url, fields}`, an S3 presigned POST) as a
/// browser's form does: `multipart/form-data`, the fields in order, then the file as `file`.
/// The status.
pub async fn post_upload(target: &Value, bytes: &[u8]) -> u16 {
    use http_body_util::Full;
    use hyper::body::Bytes;
    assert_eq!(target["method"], "POST", "{target}");
    let boundary = "roomcast-test-boundary-7d1f";
    let mut body = Vec::new();
    let fields: Vec<(String, String)> = serde_json::from_value(target["fields"].clone()).unwrap();
    for (name, value) in fields {
        body.extend_from_slice(
            format!(
                "--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"\r\n\r\n{value}\r\n"
            )
            .as_bytes(),
        );
    }
    body.extend_from_slice(
        format!(
            "--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"upload\"\r\n\
             Content-Type: application/octet-stream\r\n\r\n"
        )
        .as_bytes(),
    );
    body.extend_from_slice(bytes);
    body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    let request = hyper::Request::post(target["url"].as_str().unwrap())
        .header(
            "content-type",
            format!("multipart/form-data; boundary={boundary}"),
        )
        .body(Full::new(Bytes::from(body)))
        .unwrap();
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http();
    client.request(request).await.unwrap().status().as_u16()
}

pub fn types(frames: &[Value]) -> Vec<&str> {
    frames.iter().map(|f| f["type"].as_str().unwrap()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timing_is_off_unless_set_and_reads_the_documented_throttle() {
        assert_eq!(PostTiming::from_lookup(|_| None), Ok(PostTiming::default()));
        let vars = HashMap::from([
            (timing_env::LATENCY_MS, "20"),
            (timing_env::JITTER_MS, "10"),
            (timing_env::THROTTLE, "aws"),
        ]);
        let timing = PostTiming::from_lookup(|k| vars.get(k).map(|v| (*v).to_owned())).unwrap();
        assert_eq!(timing.latency, Duration::from_millis(20));
        assert_eq!(timing.throttle, Some(PostTiming::API_GATEWAY_THROTTLE));
        let delays: Vec<Duration> = (0..1000).map(|n| timing.delay(n)).collect();
        assert!(delays.iter().all(|d| (20..=30).contains(&d.as_millis())));
        assert!(
            delays.iter().any(|d| d.as_millis() < 22) && delays.iter().any(|d| d.as_millis() >= 28)
        );
        let custom = PostTiming::from_lookup(|k| (k == timing_env::THROTTLE).then(|| "7/3".into()));
        assert_eq!(
            custom.unwrap().throttle.map(|p| (p.per_sec, p.burst)),
            Some((7, 3))
        );
        assert!(
            PostTiming::from_lookup(|k| (k == timing_env::THROTTLE).then(|| "7".into())).is_err()
        );
    }

    #[test]
    fn the_throttle_admits_the_burst_then_answers_no() {
        let mut s = Connections {
            timing: PostTiming {
                throttle: Some(RatePolicy {
                    per_sec: 1,
                    burst: 3,
                    max_strikes: u32::MAX,
                }),
                ..PostTiming::default()
            },
            ..Connections::default()
        };
        let admitted: Vec<bool> = (0..5).map(|_| admit(&mut s).0).collect();
        assert_eq!(admitted, [true, true, true, false, false]);
        assert_eq!((s.calls, s.throttled), (5, 2));
    }
}
