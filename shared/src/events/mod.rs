//! Integration events (issue 17): what leaves roomcast besides WebSocket frames, for bots, CRMs
//! and notifiers, delivered as Standard Webhooks. Pure, like the rest of the core: no I/O, no
//! clock (time and randomness are passed in).
//!
//! - [`model`]: the catalogue ([`EventType`]), the [`Event`] and its `data` shapes (the
//!   protocol frames'), stable ids derived from what was stored.
//! - [`signing`]: `webhook-id`/`webhook-timestamp`/`webhook-signature` with `whsec_` secrets.
//! - [`delivery`]: the retry policy and one [`EndpointQueue`] per endpoint, sans-IO.
//! - [`endpoint`]: which endpoint URLs may be delivered to (SSRF).
//! - [`registry`]: endpoints as data (filters, secrets and their rotation, attempt records).
//!
//! The durable side is the [`crate::store::Outbox`] port. The catalogue, the payloads and the
//! retry schedule are docs/events.md.

pub mod delivery;
pub mod endpoint;
pub mod model;
pub mod registry;
pub mod signing;

pub use delivery::{
    Attempt, AttemptResult, DeadReason, Delivery, EndpointQueue, Outcome, RetryPolicy, Verdict,
};
pub use endpoint::{EndpointError, EndpointRules, check_endpoint};
pub use model::{Event, EventData, EventType};
pub use registry::{AttemptRecord, Endpoint, EndpointSecret};
pub use signing::{SignedHeaders, WebhookSecret, sign, verify};
