//! # roomcast-protocol-tests
//!
//! The black-box suite for protocol v1 (docs/protocol.md). It speaks to a deployment only over
//! real sockets — WebSocket for the chat protocol, plain HTTP/1.1 for the HTTP and Management
//! APIs — and never calls the service in-process, so every build (the local server, the Lambda
//! functions behind a local emulator, the edge build under `wrangler dev`) runs the same cases.
//!
//! ## Plugging in a deployment
//!
//! 1. Implement [`Deployment`] for a handle to the running server: its WebSocket URL, its HTTP
//!    base URL (if any), how to sign tokens it accepts (HS256 with its secret), its
//!    [`Capabilities`], and, if it can, [`Deployment::restart`] (SIGKILL, then start again on
//!    the same address with the same data).
//! 2. In an integration test file of the deployment's crate, start the server (once per test
//!    process is enough: every case uses its own tenant, so cases run concurrently against one
//!    server) and expand the suite:
//!
//! ```text
//! roomcast_protocol_tests::protocol_suite!(my_harness::shared_server());
//! roomcast_protocol_tests::limits_suite!(
//!     my_harness::strict_server(),
//!     idle: std::time::Duration::from_secs(2),
//!     max_age: std::time::Duration::from_secs(4),
//! );
//! ```
//!
//! [`protocol_suite!`] expects generous rate limits (a burst of a few hundred frames per
//! connection); [`limits_suite!`] expects a server started with the default rate limit (10
//! frames/s, burst 30) or a stricter one, and the short idle and maximum-connection timeouts it
//! is given.
//!
//! Each case becomes one `#[test]`. A case needing a capability the deployment lacks prints
//! `NOT APPLICABLE: …` to stderr and runs nothing; the capability-gated cases are few (restart,
//! HTTP API, Management API, several rooms per connection, webhooks, attachments, a
//! publishable key for embedding). A case that restarts the server runs
//! alone: the suite holds every other case back meanwhile.
//!
//! ## Writing a case
//!
//! A case is `pub async fn name(d: &dyn Deployment) -> anyhow::Result<()>` in [`cases`], listed
//! in [`protocol_suite!`]. It creates a [`Scope`] (a fresh tenant), connects [`Client`]s and
//! asserts with `anyhow::ensure!`. Every wait is bounded by [`client::wait_timeout`]
//! (`ROOMCAST_TEST_TIMEOUT_MS`, default 5 s), and the whole case by [`suite::case_limit`].
//! Order and absence are checked with causal fences (a later frame that must arrive after the
//! one asserted absent) wherever the protocol offers one; a short silence window
//! ([`Client::assert_none`]) only where it does not.

pub mod cases;
pub mod client;
pub mod deployment;
pub mod http;
pub mod scope;
pub mod suite;
pub mod webhook;

pub use client::{Client, ConnectError, Credentials};
pub use deployment::{Capabilities, Capability, Deployment, InRoom};
pub use scope::{Scope, claims};
