//! A fault-injecting HTTP proxy in front of a DynamoDB endpoint, for tests (`roomcast-testkit`, feature `aws`):
//! the SDK talks to the proxy, the proxy to the emulator. While a [`Fault`] is set, the requests
//! it selects are answered as DynamoDB answers under that fault (a 500 `InternalServerError`, a
//! 400 `ThrottlingException`), delayed, dropped (the connection closed with no response), or
//! forwarded with their response lost;
//! every other request is forwarded unchanged. Counters say what it forwarded and injected.
//!
//! Error shapes follow DynamoDB's documented JSON protocol: status, `x-amzn-RequestId`,
//! `content-type: application/x-amz-json-1.0` and a body `{"__type": "com.amazonaws.dynamodb.
//! v20120810#<Code>", "message": …}`.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper::{Request, Response, StatusCode};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};

/// What the proxy does to a selected request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// HTTP 500 `InternalServerError`.
    ServerError,
    /// HTTP 400 `ThrottlingException`.
    Throttling,
    /// HTTP 400 `ProvisionedThroughputExceededException`.
    ThroughputExceeded,
    /// Forwarded after this delay.
    Latency(Duration),
    /// The connection is closed without a response; the request is not forwarded.
    Drop,
    /// The request is forwarded (DynamoDB does the work), then the connection is closed
    /// without the response: the caller cannot know the outcome.
    LoseResponse,
}

/// Which requests a fault applies to.
#[derive(Debug, Clone, Copy)]
struct Plan {
    fault: Fault,
    /// Every request whose number (counted from when the plan was set) is a multiple of this.
    one_in: u64,
    /// Only requests for this DynamoDB operation (`TransactWriteItems`, …), when set.
    operation: Option<&'static str>,
    seen: u64,
}

/// The counters, shared with the server task.
#[derive(Default)]
struct Counters {
    requests: AtomicU64,
    forwarded: AtomicU64,
    injected: AtomicU64,
}

struct State {
    upstream: String,
    client: Client<HttpConnector, Full<Bytes>>,
    plan: Mutex<Option<Plan>>,
    counters: Counters,
}

/// A running proxy.
pub struct FaultProxy {
    /// `http://127.0.0.1:PORT`: give this to the SDK as the endpoint.
    pub endpoint: String,
    state: Arc<State>,
}

/// The connection is to be dropped (a service error makes hyper close it without a response).
#[derive(Debug)]
struct Dropped;

impl std::fmt::Display for Dropped {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("fault: connection dropped")
    }
}

impl std::error::Error for Dropped {}

impl FaultProxy {
    /// Starts a proxy on a free loopback port in front of `upstream` (`http://host:port`).
    pub async fn start(upstream: &str) -> std::io::Result<Self> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let endpoint = format!("http://{}", listener.local_addr()?);
        let state = Arc::new(State {
            upstream: upstream.trim_end_matches('/').to_owned(),
            client: Client::builder(TokioExecutor::new()).build_http(),
            plan: Mutex::new(None),
            counters: Counters::default(),
        });
        let shared = state.clone();
        tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let state = shared.clone();
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |req| handle(state.clone(), req));
                    // A dropped request ends its connection with an error: that is the fault.
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(tcp), service)
                        .await;
                });
            }
        });
        Ok(Self { endpoint, state })
    }

    /// Applies `fault` to every request from now on.
    pub fn set(&self, fault: Fault) {
        self.set_one_in(fault, 1);
    }

    /// Applies `fault` to every `n`th request from now on (`n` ≥ 1).
    pub fn set_one_in(&self, fault: Fault, n: u64) {
        *self.plan() = Some(Plan {
            fault,
            one_in: n.max(1),
            operation: None,
            seen: 0,
        });
    }

    /// Applies `fault` to every request for the DynamoDB `operation` (`TransactWriteItems`, …:
    /// the `X-Amz-Target` after `DynamoDB_20120810.`) from now on.
    pub fn set_for(&self, fault: Fault, operation: &'static str) {
        *self.plan() = Some(Plan {
            fault,
            one_in: 1,
            operation: Some(operation),
            seen: 0,
        });
    }

    /// Forwards everything again.
    pub fn clear(&self) {
        *self.plan() = None;
    }

    /// Requests received so far.
    pub fn requests(&self) -> u64 {
        self.state.counters.requests.load(Ordering::Relaxed)
    }

    /// Requests forwarded to the upstream so far (including delayed ones).
    pub fn forwarded(&self) -> u64 {
        self.state.counters.forwarded.load(Ordering::Relaxed)
    }

    /// Faults injected so far (delays included).
    pub fn injected(&self) -> u64 {
        self.state.counters.injected.load(Ordering::Relaxed)
    }

    fn plan(&self) -> std::sync::MutexGuard<'_, Option<Plan>> {
        self.state
            .plan
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }
}

impl State {
    /// The fault for the next request, for `operation`, if it is selected.
    fn next_fault(&self, operation: Option<&str>) -> Option<Fault> {
        let mut plan = self.plan.lock().unwrap_or_else(PoisonError::into_inner);
        let plan = plan.as_mut()?;
        if plan.operation.is_some() && plan.operation != operation {
            return None;
        }
        plan.seen += 1;
        (plan.seen % plan.one_in == 0).then_some(plan.fault)
    }
}

async fn handle(
    state: Arc<State>,
    req: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, Box<dyn std::error::Error + Send + Sync>> {
    let n = state.counters.requests.fetch_add(1, Ordering::Relaxed);
    let operation = req
        .headers()
        .get("x-amz-target")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("DynamoDB_20120810."));
    let fault = state.next_fault(operation);
    if fault.is_some() {
        state.counters.injected.fetch_add(1, Ordering::Relaxed);
    }
    let error = |status: StatusCode, code: &str, message: &str| {
        let body = serde_json::json!({
            "__type": format!("com.amazonaws.dynamodb.v20120810#{code}"),
            "message": message,
        });
        Response::builder()
            .status(status)
            .header("content-type", "application/x-amz-json-1.0")
            .header("x-amzn-RequestId", format!("FAULTPROXY{n:016}"))
            .body(Full::new(Bytes::from(body.to_string())))
    };
    match fault {
        Some(Fault::Drop) => return Err(Box::new(Dropped)),
        Some(Fault::ServerError) => {
            return Ok(error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "InternalServerError",
                "Internal server error",
            )?);
        }
        Some(Fault::Throttling) => {
            return Ok(error(
                StatusCode::BAD_REQUEST,
                "ThrottlingException",
                "Rate of requests exceeds the allowed throughput.",
            )?);
        }
        Some(Fault::ThroughputExceeded) => {
            return Ok(error(
                StatusCode::BAD_REQUEST,
                "ProvisionedThroughputExceededException",
                "The level of configured provisioned throughput for the table was exceeded.",
            )?);
        }
        Some(Fault::Latency(delay)) => tokio::time::sleep(delay).await,
        Some(Fault::LoseResponse) | None => {}
    }
    let (parts, body) = req.into_parts();
    let body = body.collect().await?.to_bytes();
    let path = parts.uri.path_and_query().map_or("/", |p| p.as_str());
    let mut forward = Request::builder()
        .method(parts.method)
        .uri(format!("{}{path}", state.upstream));
    for (name, value) in &parts.headers {
        forward = forward.header(name, value);
    }
    let response = state.client.request(forward.body(Full::new(body))?).await?;
    state.counters.forwarded.fetch_add(1, Ordering::Relaxed);
    if fault == Some(Fault::LoseResponse) {
        return Err(Box::new(Dropped));
    }
    let (parts, body) = response.into_parts();
    let body = body.collect().await?.to_bytes();
    Ok(Response::from_parts(parts, Full::new(body)))
}
