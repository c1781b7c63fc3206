//! # roomcast-testkit
//!
//! Test support for every roomcast crate, kept out of the shipped ones: production builds (the
//! Lambda zips, the Worker bundle, the local server) never depend on it, which `scripts/test.sh`
//! checks.
//!
//! - [`conformance`]: the store conformance suites every `ConnectionStore` and `HistoryStore`
//!   backend runs (memory, embedded, DynamoDB, the Durable Object's SQLite), with fresh names
//!   from a [`conformance::Namer`] so runs can share one store.
//! - [`attachment_conformance`]: the suite every `AttachmentIndex` backend runs.
//! - [`desk_conformance`]: the suite every `DeskDirectory` backend runs.
//! - [`config_cases`]: the configurations every deployment's loader is checked against.
//! - [`gateway`]: [`gateway::RecordingGateway`], a `Gateway` that records frames and closes.
//! - [`service`]: [`service::TestService`], the service over memory stores with a fake clock.
//! - [`harness`]: a model-checking driver of the service over [`service::TestService`] (the
//!   property tests and the `service` fuzz target).
//! - `process` (feature `process`): server processes bound to the test process's life.
//! - `aws` (feature `aws`): moto, a DynamoDB fault proxy, the DynamoDB capacity meter.
//!
//! Without features it builds for wasm32 (the edge build runs the conformance suites inside a
//! Durable Object).

pub mod attachment_conformance;
pub mod config_cases;
pub mod conformance;
pub mod desk_conformance;
pub mod gateway;
pub mod harness;
pub mod service;

#[cfg(feature = "aws")]
pub mod aws;
#[cfg(feature = "process")]
pub mod process;
