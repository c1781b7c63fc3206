//! The router: every route of the server and the module serving it, and [`serve`], which runs
//! it until shutdown and then closes every socket with 1001.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::routing::get;
use axum::serve::ListenerExt;
use roomcast_core::http::MAX_BODY_BYTES;
use roomcast_core::protocol::close;
use tokio::net::TcpListener;

use crate::app::App;
use crate::{assets, dev_token, http, management, sockets};

/// How long shutdown waits for sockets to take their 1001 close.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// The router (exposed so tests and embedders can mount it).
pub fn router(app: Arc<App>) -> Router {
    assets::routes(Router::new())
        .route("/", get(sockets::upgrade))
        .route("/metrics", get(http::metrics))
        .route("/dev/token", get(dev_token::issue))
        .route(
            "/@connections/{id}",
            get(management::get_connection)
                .post(management::post_connection)
                .delete(management::delete_connection),
        )
        // SDK clients built with API Gateway's `https://{domain}/{stage}` endpoint put the stage
        // first; any stage is accepted.
        .route(
            "/{stage}/@connections/{id}",
            get(management::get_connection)
                .post(management::post_connection)
                .delete(management::delete_connection),
        )
        // Everything else is the core's HTTP API (`/health`, `/rooms/{room}/messages`), which
        // routes, decodes and answers it the same way on every deployment.
        .fallback(http::api)
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(app)
}

/// Serves on `listener` until `shutdown` resolves, then closes every socket with 1001.
pub async fn serve(
    listener: TcpListener,
    app: Arc<App>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let gateway = app.gateway.clone();
    // Frames are small and written one by one: with Nagle's algorithm a frame written while an
    // earlier one is unacknowledged waits for the peer's delayed ACK (up to 40 ms on Linux),
    // which the benchmarks measured as a 40 ms p99 (docs/benchmarks.md).
    let listener = listener.tap_io(|tcp| {
        if let Err(e) = tcp.set_nodelay(true) {
            tracing::debug!(error = %e, "cannot set TCP_NODELAY");
        }
    });
    let service = axum::serve(
        listener,
        router(app).into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(async move {
        shutdown.await;
        tracing::info!("shutting down: closing sockets with 1001");
        gateway.close_all(close::GOING_AWAY, "server shutting down");
        let deadline = Instant::now() + SHUTDOWN_GRACE;
        while !gateway.is_empty() && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    });
    service.await
}
