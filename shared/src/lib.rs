//! # roomcast-core
//!
//! The chat service of roomcast, written once and run by every deployment: the local server
//! (`infra/local`), the AWS Lambda functions (`functions/aws`) and the Cloudflare Durable Object
//! (`functions/edge`).
//!
//! Layout:
//! - [`attachments`]: files in chat: the upload policy, safe file names, content sniffing
//!   (pure).
//! - [`protocol`]: protocol v1 frames, error and close codes, validation (pure).
//! - [`config`]: the one configuration every deployment parses from its own lookup.
//! - [`lifecycle`]: each connection's deadlines (token expiry, idle, maximum age), sans-IO.
//! - [`occupancy`]: when big rooms announce their connection count (coalesced), sans-IO.
//! - [`limits`]: every named limit (API Gateway's, so all deployments agree).
//! - [`auth`]: JWT verification with a pinned algorithm and room grants (pure, time passed in).
//! - [`ratelimit`]: the per-connection token bucket (pure).
//! - [`store`]: the store contract (`ConnectionStore`, `HistoryStore`, their types and errors),
//!   the rules every backend shares, and the in-memory backend.
//! - [`gateway`]: the outbound ports (`Gateway`, `RoomRelay`).
//! - [`split`]: when a big room's broadcast is split across workers, and into which slices
//!   (pure).
//! - [`service`]: the chat logic over those ports.
//! - [`support`]: the support desk's conversation rules (pure).
//! - [`events`]: integration events, Standard Webhooks signing, the delivery policy and the
//!   endpoint (SSRF) check (pure).
//! - [`text`]: characters that hide or reorder text, and text that shows nothing (pure).
//! - [`http`]: the HTTP API (history, publish, health) for every deployment's HTTP layer.
//!
//! Nothing here reads a clock or does I/O of its own; it compiles for `wasm32-unknown-unknown`.

pub mod attachments;
pub mod auth;
pub mod config;
pub mod events;
pub mod gateway;
pub mod http;
pub mod lifecycle;
pub mod limits;
pub mod occupancy;
pub mod order;
pub mod protocol;
pub mod ratelimit;
pub mod service;
#[cfg(feature = "schema")]
pub mod spec;
pub mod split;
pub mod store;
pub mod support;
pub mod text;

pub use gateway::{Gateway, GatewayError, RoomRelay};
pub use service::{ChatService, ServiceConfig};
pub use store::{ConnectionStore, HistoryStore, RoomRef, StoreError};

/// `Send + Sync` on native targets, nothing on wasm32.
#[cfg(not(target_arch = "wasm32"))]
pub trait MaybeSendSync: Send + Sync {}
#[cfg(not(target_arch = "wasm32"))]
impl<T: Send + Sync + ?Sized> MaybeSendSync for T {}
/// `Send + Sync` on native targets, nothing on wasm32.
#[cfg(target_arch = "wasm32")]
pub trait MaybeSendSync {}
#[cfg(target_arch = "wasm32")]
impl<T: ?Sized> MaybeSendSync for T {}
