//! # roomcast-edge
//!
//! roomcast on Cloudflare Workers: the [`front`] Worker verifies tokens and routes each
//! connection and HTTP request to the [`room::ChatRoom`] Durable Object of its (tenant, room),
//! which runs the core `ChatService` over its SQLite storage ([`history::SqlHistory`]) and its
//! hibernatable WebSockets ([`sockets::Sockets`]); integration events, upload quotas and the
//! support desk's records ([`desk`]) go through one [`events::TenantEvents`] object per tenant;
//! attachment bytes are in R2 ([`blobs`], slots in [`uploads`]). docs/architecture.md ("The
//! edge build") has the design; docs/protocol.md §14 the differences clients see.
//!
//! Pure modules ([`attachment`], [`config`], [`routes`], [`socket`]) build and are unit-tested
//! on the host; the rest is wasm32-only (JavaScript handles are `!Send`, as the core's ports
//! are on wasm32). The `dev` feature adds the dev-only conformance route (`dev`).

pub mod attachment;
pub mod config;
pub mod routes;
pub mod socket;

#[cfg(target_arch = "wasm32")]
pub mod blobs;
#[cfg(target_arch = "wasm32")]
pub mod desk;
#[cfg(all(target_arch = "wasm32", feature = "dev"))]
mod dev;
#[cfg(target_arch = "wasm32")]
pub mod events;
#[cfg(target_arch = "wasm32")]
pub mod front;
#[cfg(target_arch = "wasm32")]
pub mod history;
#[cfg(target_arch = "wasm32")]
mod log;
#[cfg(target_arch = "wasm32")]
pub mod outbox;
#[cfg(target_arch = "wasm32")]
pub mod relay;
#[cfg(target_arch = "wasm32")]
pub mod room;
#[cfg(target_arch = "wasm32")]
pub mod sockets;
#[cfg(target_arch = "wasm32")]
pub mod uploads;

#[cfg(target_arch = "wasm32")]
pub use events::TenantEvents;
#[cfg(target_arch = "wasm32")]
pub use room::ChatRoom;

/// The Worker's clock, epoch milliseconds (the core never reads a clock: it is passed in).
#[cfg(target_arch = "wasm32")]
pub fn now_ms() -> u64 {
    worker::Date::now().as_millis()
}
