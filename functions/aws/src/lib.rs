//! # roomcast-aws
//!
//! roomcast on AWS serverless: API Gateway WebSocket routes invoke Lambda functions that run the
//! core chat service (`roomcast-core`) on DynamoDB.
//!
//! Layout:
//! - [`dynamo`]: [`DynamoStore`], the `ConnectionStore` and `HistoryStore` on one DynamoDB table
//!   (key design, TTLs, transactional gap-free appends, capacity accounting). Also used by the
//!   local server's `--dynamodb-endpoint` mode.
//! - [`management`] (feature `lambda`): the API Gateway Management API as the core `Gateway`
//!   port (410 → `Gone`, 429 → backoff with jitter).
//! - [`lambda`] (feature `lambda`): configuration from the environment, clients built once,
//!   the WebSocket and HTTP handlers, EMF metrics; `src/bin/*` are one thin binary per function
//!   (`connect`, `disconnect`, `message`, `typing`, `default`, `http`).
//! - `moto` (feature `testing`): starts a moto DynamoDB server for tests.
//! - `capacity` (feature `testing`): an SDK interceptor recording every DynamoDB call with the
//!   units it consumed, and DynamoDB's size-based billing of those calls (cost tests, benchmark).
//! - `fault_proxy` (feature `testing`): an HTTP proxy in front of the emulator that injects
//!   DynamoDB's 5xx and throttling errors, latency and dropped connections (fault tests).
//!
//! Native only: the SDK needs tokio and hyper, so this crate is never built for wasm32.

#[cfg(feature = "testing")]
pub mod capacity;
pub mod dynamo;
#[cfg(feature = "testing")]
pub mod fault_proxy;
#[cfg(feature = "lambda")]
pub mod lambda;
#[cfg(feature = "lambda")]
pub mod management;
#[cfg(any(test, feature = "testing"))]
pub mod moto;

pub use dynamo::{Consumed, DynamoConfig, DynamoStore};
