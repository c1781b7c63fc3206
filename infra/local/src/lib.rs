//! # roomcast-local
//!
//! The local / self-hosted roomcast server: one process that speaks the API Gateway WebSocket
//! contract on localhost and runs the chat service from `roomcast-core` in-process.
//!
//! Layout:
//! - [`config`]: the command line, parsed once into [`config::ServerConfig`].
//! - [`server`]: the axum router: WebSocket upgrade → `$connect` route, frames → route events,
//!   close → `$disconnect`, the `@connections` management API, the HTTP API, shutdown.
//! - [`gateway`]: the socket registry implementing the core `Gateway` port, with bounded
//!   per-connection queues (slow consumers are closed, never buffered without bound).
//! - [`embedded`]: the durable `HistoryStore` (redb, group commit, fsync before ack).
//! - [`metrics`]: Prometheus text metrics.
//! - [`widget`]: the browser widget, JS SDK, demo page and agent console (embedded from
//!   `widget/dist/`), and the `--dev-tokens` development token endpoint.
//!
//! Live state (connections, rooms joined, presence) is kept in memory: sockets die with the
//! process, so it needs no disk. History, read cursors and members are durable.

pub mod config;
pub mod embedded;
pub mod forward;
pub mod gateway;
pub mod metrics;
pub mod server;
pub mod widget;
