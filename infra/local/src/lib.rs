//! # roomcast-local
//!
//! The local / self-hosted roomcast server: one process that speaks the API Gateway WebSocket
//! contract on localhost and runs the chat service from `roomcast-core` in-process. It only
//! translates: sockets and HTTP requests into the core's typed calls, the core's replies back.
//!
//! Layout (`router` imports the route modules; they import `app`; nothing imports back):
//! - [`config`]: the command line, resolved once into [`config::ServerConfig`] (the shared
//!   settings through the core's `config::Settings`).
//! - [`app`]: [`app::App`], the shared state, and the connect / frame / disconnect calls into
//!   the service (in-process, or as API Gateway events to Lambda functions: [`forward`]).
//! - [`router`]: every public route and the module serving it; [`router::serve`],
//!   [`router::serve_management`] and shutdown.
//! - [`listener`]: the accept loop: connection caps (server-wide, below the open-file limit,
//!   and per address) before any HTTP is read, then HTTP/1 with a request-head deadline and
//!   size bound.
//! - [`deadlines`]: the one task driving the service's own deadlines (big rooms' occupancy).
//! - [`sockets`]: the upgrade and one task per socket (reader driving the core's lifecycle
//!   deadlines, writer draining the outbound queue).
//! - [`http`]: the core HTTP API behind axum, and `/metrics`.
//! - [`management`]: the `@connections` Management API, on its own listener
//!   (`--management-listen`).
//! - [`client_ip`]: the client's address (`X-Forwarded-For` from `--trusted-proxy` only).
//! - [`assets`]: the widget, SDK, demo page and console (`widget/dist/`, embedded).
//! - [`dev_token`]: development tokens (`token` subcommand, `GET /dev/token`).
//! - [`gateway`]: the socket registry implementing the core `Gateway` port, with bounded
//!   per-connection queues (slow consumers are closed, never buffered without bound).
//! - [`embedded`]: the durable `HistoryStore` (redb, group commit, fsync before ack), with
//!   the outbox and the attachments' `AttachmentIndex` in the same file.
//! - [`blobs`]: attachment bytes as files under the data directory (`BlobStore`).
//! - [`transfers`]: the signed-link routes that take and serve those bytes
//!   (`PUT /uploads/{token}`, `GET /files/{token}`).
//! - [`metrics`]: Prometheus text metrics.
//! - [`webhooks`]: integration events delivered as signed webhooks (the core dispatches and
//!   decides retries; this task does the HTTP).
//!
//! Live state (connections, rooms joined, presence) is kept in memory: sockets die with the
//! process, so it needs no disk. History, read cursors and members are durable.

pub mod app;
pub mod assets;
pub mod blobs;
pub mod client_ip;
pub mod config;
pub mod deadlines;
pub mod dev_token;
pub mod embedded;
pub mod forward;
pub mod gateway;
pub mod http;
pub mod listener;
pub mod management;
pub mod metrics;
pub mod router;
pub mod sockets;
pub mod transfers;
pub mod webhooks;
