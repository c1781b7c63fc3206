//! Lambda's `Invoke` API for the handler tests and the fan-out benchmark (feature `aws-lambda`):
//! nothing here can run a Lambda function (moto's Lambda runs functions in Docker containers,
//! which this machine does not have), so a small server plays the API as AWS documents it
//! (docs.aws.amazon.com/lambda/latest/api/API_Invoke.html) and hands each payload to the
//! `fanout` handler in-process:
//!
//! - `POST /2015-03-31/functions/{FunctionName}/invocations` with `X-Amz-Invocation-Type:
//!   Event` queues the event and answers 202 with an empty body; the handler runs after the
//!   answer, as Lambda's asynchronous invocation does;
//! - a payload over 256 KB is answered 413 `RequestTooLargeException`; an invocation type
//!   other than `Event` 400 `InvalidParameterValueException` (the functions only queue);
//! - [`Invocations::refuse`] answers the next invocations 429 `TooManyRequestsException`
//!   (Lambda's throttle), errors typed by `x-amzn-ErrorType` as the SDK reads them.
#![allow(
    clippy::unwrap_used,
    missing_docs,
    reason = "test support: a failing call is a test failure; the fields are the fake's state"
)]

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use roomcast_aws::fanout::{ASYNC_PAYLOAD_LIMIT, FanoutSlice};
use roomcast_aws::lambda::Runtime;
use serde_json::{Value, json};

/// One accepted invocation.
#[derive(Debug, Clone)]
pub struct Invocation {
    /// The function it named.
    pub function: String,
    /// Its payload, parsed.
    pub payload: Value,
    /// When it arrived (the fan-out benchmark starts its slice from here).
    pub at: Instant,
}

/// What the fake Lambda API saw and does.
#[derive(Default)]
pub struct Invocations {
    /// Every accepted (202) invocation, in arrival order.
    pub accepted: Vec<Invocation>,
    /// Invocations answered with an error.
    pub refused: u64,
    /// Answer this many more invocations 429 `TooManyRequestsException`.
    pub refuse: u32,
    /// Accepted invocations whose handler has not returned yet.
    pub running: u64,
    /// The `fanout` function's runtime, which runs each accepted payload; `None`: payloads are
    /// only recorded.
    pub handler: Option<Arc<Runtime>>,
}

pub type Shared = Arc<Mutex<Invocations>>;

fn lambda_error(status: StatusCode, error_type: &'static str, message: &str) -> Response {
    (
        status,
        [("x-amzn-ErrorType", error_type)],
        axum::Json(json!({"Type": "User", "message": message})),
    )
        .into_response()
}

async fn invoke(
    State(shared): State<Shared>,
    Path(function): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let kind = headers
        .get("x-amz-invocation-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("RequestResponse");
    let mut s = shared.lock().unwrap();
    if s.refuse > 0 {
        s.refuse -= 1;
        s.refused += 1;
        return lambda_error(
            StatusCode::TOO_MANY_REQUESTS,
            "TooManyRequestsException",
            "Rate Exceeded.",
        );
    }
    if body.len() > ASYNC_PAYLOAD_LIMIT {
        s.refused += 1;
        return lambda_error(
            StatusCode::PAYLOAD_TOO_LARGE,
            "RequestTooLargeException",
            "Request must be smaller than 262144 bytes for the InvokeAsync operation",
        );
    }
    if kind != "Event" {
        s.refused += 1;
        return lambda_error(
            StatusCode::BAD_REQUEST,
            "InvalidParameterValueException",
            "the fake runs only asynchronous (Event) invocations",
        );
    }
    let payload: Value = serde_json::from_slice(&body).unwrap();
    s.accepted.push(Invocation {
        function,
        payload,
        at: Instant::now(),
    });
    if let Some(runtime) = s.handler.clone() {
        s.running += 1;
        let shared = shared.clone();
        tokio::spawn(async move {
            let slice: FanoutSlice = serde_json::from_slice(&body).unwrap();
            runtime.handle_fanout(slice).await.unwrap();
            shared.lock().unwrap().running -= 1;
        });
    }
    StatusCode::ACCEPTED.into_response()
}

/// Starts the fake Lambda API on a loopback port: its endpoint and state.
pub async fn lambda_api() -> (String, Shared) {
    let shared = Shared::default();
    let app = Router::new()
        .route("/2015-03-31/functions/{name}/invocations", post(invoke))
        .with_state(shared.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let endpoint = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (endpoint, shared)
}

/// Waits until every accepted invocation's handler has returned (at most 30 s).
pub async fn settled(shared: &Shared) {
    for _ in 0..3_000 {
        if shared.lock().unwrap().running == 0 {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("fanout invocations still running after 30 s");
}
