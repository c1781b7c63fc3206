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
//!   the WebSocket, HTTP, stream and queue handlers, EMF metrics; `src/bin/*` are one thin
//!   binary per function (`connect`, `disconnect`, `message`, `typing`, `default`, `http`,
//!   `events`, `deliver`, `fanout`).
//! - [`fanout`] (feature `lambda`): big rooms' broadcasts split across `fanout` invocations
//!   (asynchronous Invoke of slices of ~1,000 connections).
//! - [`events`] (feature `lambda`): integration events: the stream to the delivery queue
//!   (`events`), the queue to signed webhooks (`deliver`), the registry on the table.
//! - [`s3`] (feature `lambda`): attachment bytes on S3 (presigned POST uploads and GET
//!   downloads); their slots, claims and quotas are the table's (`dynamo`).
//!
//! Test gear (moto, the DynamoDB fault proxy, the capacity meter) is in `roomcast-testkit`
//! (feature `aws`), which no shipped build depends on.
//!
//! Native only: the SDK needs tokio and hyper, so this crate is never built for wasm32.

pub mod dynamo;
#[cfg(feature = "lambda")]
pub mod events;
#[cfg(feature = "lambda")]
pub mod fanout;
#[cfg(feature = "lambda")]
pub mod lambda;
#[cfg(feature = "lambda")]
pub mod management;
#[cfg(feature = "lambda")]
pub mod s3;

pub use dynamo::{Consumed, DynamoConfig, DynamoStore};
