//! # roomcast-core
//!
//! The chat service of roomcast, written once and run by every deployment: the local server
//! (`infra/local`), the AWS Lambda functions (`functions/aws`) and the Cloudflare Durable Object
//! (`functions/edge`).
//!
//! Layout:
//! - [`protocol`]: protocol v1 frames, error and close codes, validation (pure).
//! - [`limits`]: every named limit (API Gateway's, so all deployments agree).
//! - [`auth`]: JWT verification with a pinned algorithm and room grants (pure, time passed in).
//! - [`ratelimit`]: the per-connection token bucket (pure).
//! - [`ports`]: the `ConnectionStore`, `HistoryStore` and `Gateway` traits the service needs.
//! - [`service`]: the chat logic over those ports.
//! - [`support`]: the support desk's conversation rules (pure).
//! - [`event`]: API Gateway WebSocket events, route selection, and `handle_event`.
//! - [`http`]: the HTTP API (history, publish, health) for every deployment's HTTP layer.
//! - [`memory`]: in-memory backends.
//! - `testing` (feature `testing`): the store conformance suites every backend must pass and a
//!   recording gateway.
//!
//! Nothing here reads a clock or does I/O of its own; it compiles for `wasm32-unknown-unknown`.

pub mod auth;
pub mod event;
pub mod http;
pub mod limits;
pub mod memory;
pub mod ports;
pub mod protocol;
pub mod ratelimit;
pub mod service;
pub mod support;
#[cfg(any(test, feature = "testing"))]
pub mod testing;

pub use ports::{
    ConnectionStore, Gateway, GatewayError, HistoryStore, RoomRef, RoomRelay, StoreError,
};
pub use service::{ChatService, ServiceConfig};
