//! roomcast benchmarks (issue 7; method and figures in docs/benchmarks.md).
//!
//! Layout:
//!
//! - [`load`]: the load run. Opens N WebSocket connections over M rooms from several loopback
//!   source addresses, joins, sends at target rates (one phase per rate) with a timestamp in
//!   every message, drains, and reports delivered messages/s, loss, duplicates, out-of-order
//!   deliveries, latency percentiles, connect rate, and the server's and its own CPU and memory.
//!   It speaks roomcast protocol v1 and Socket.IO v4 (websocket transport).
//! - [`tracker`]: delivery accounting (per-message expected/received counts, per-receiver seq
//!   windows, HDR histograms per phase).
//! - [`engineio`]: Engine.IO v4 / Socket.IO v5 packet parsing and encoding.
//! - [`procstat`]: CPU time and RSS from `/proc`.
//! - [`report`] and [`svg`]: markdown tables and SVG charts from the JSON results.
//! - [`soak`]: the soak run (issue 15): an hour of mixed traffic with connection churn, sampling
//!   the server's RSS and open fds; `scripts/soak.sh` runs it against the local server.
//! - [`webhooks`]: webhook delivery latency and events per second one endpoint receives
//!   (issue 17); `scripts/bench-webhooks.sh` runs it against the local server.
//! - [`token`]: the HS256 tokens the generators present.
//! - [`floor`]: the physical floor of a delivery (issue 20): writer CPU per frame of a minimal
//!   write loop over loopback TCP or WebSocket, with and without batching.
//!
//! Binaries: `roomcast-bench` (the generator: `run`, `report`, `soak`, `webhooks`, `floor`) and `raw-broadcast` (a minimal
//! broadcast server on the same WebSocket stack as roomcast, the "raw limit"). The Socket.IO peer
//! is `bench/socketio/server.js`; `scripts/bench.sh` runs every scenario.

pub mod engineio;
pub mod floor;
pub mod load;
pub mod procstat;
pub mod report;
pub mod soak;
pub mod svg;
pub mod token;
pub mod tracker;
pub mod webhooks;
