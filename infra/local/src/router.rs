//! The router: every route of the server and the module serving it, and [`serve`], which runs
//! it behind the accept loop ([`crate::listener`]) until shutdown and then closes every socket
//! with 1001.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::routing::{get, put};
use roomcast_core::http::MAX_BODY_BYTES;
use roomcast_core::protocol::close;
use tokio::net::TcpListener;

use crate::app::App;
use crate::listener::{ConnectionLimits, Connections, DEFAULT_HEADER_READ_TIMEOUT};
use crate::{assets, dev_token, http, management, sockets, transfers};

/// How long shutdown waits for sockets to take their 1001 close.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// The router (exposed so tests and embedders can mount it).
pub fn router(app: Arc<App>) -> Router {
    assets::routes(Router::new())
        .route("/", get(sockets::upgrade))
        .route("/metrics", get(http::metrics))
        .route("/dev/token", get(dev_token::issue))
        // Attachment bytes behind signed links: streamed, each held to its slot's size (up to
        // 10 MB) by the route itself, not by the API's body limit.
        .route("/uploads/{token}", put(transfers::upload))
        .route("/files/{token}", get(transfers::download))
        // `@connections` is not here: it is served only on its own listener
        // (`--management-listen`, [`serve_management`]).
        // Everything else is the core's HTTP API (`/health`, `/rooms/{room}/messages`), which
        // routes, decodes and answers it the same way on every deployment.
        .fallback(http::api)
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(axum::middleware::from_fn(http::cors))
        .with_state(app)
}

/// The default [`ConnectionLimits`] for `app`: the open-file limit's cap,
/// `--max-connections-per-ip` (trusted proxies exempt), [`DEFAULT_HEADER_READ_TIMEOUT`].
pub fn default_limits(app: &App) -> std::io::Result<ConnectionLimits> {
    let mut limits = ConnectionLimits::new(
        None,
        app.config.max_connections_per_ip,
        DEFAULT_HEADER_READ_TIMEOUT,
    )
    .map_err(std::io::Error::other)?;
    limits.per_ip_exempt.clone_from(&app.config.trusted_proxies);
    Ok(limits)
}

/// Serves on `listener` until `shutdown` resolves, under the [`default_limits`]; then closes
/// every socket with 1001.
pub async fn serve(
    listener: TcpListener,
    app: Arc<App>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let limits = default_limits(&app)?;
    serve_with(listener, app, limits, shutdown).await;
    Ok(())
}

/// Serves the Management API ([`management::router`]) on `listener` until `shutdown`
/// resolves, under the [`default_limits`].
pub async fn serve_management(
    listener: TcpListener,
    app: Arc<App>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let connections = Connections::new(default_limits(&app)?);
    connections
        .accept_until(listener, management::router(app), shutdown)
        .await;
    connections.finish(SHUTDOWN_GRACE).await;
    Ok(())
}

/// Serves on `listener` under `limits` until `shutdown` resolves. Then it stops accepting,
/// closes every socket with 1001 and waits for them up to [`SHUTDOWN_GRACE`], and lets the HTTP
/// requests in flight finish within as long again.
pub async fn serve_with(
    listener: TcpListener,
    app: Arc<App>,
    limits: ConnectionLimits,
    shutdown: impl Future<Output = ()> + Send + 'static,
) {
    let gateway = app.gateway.clone();
    let connections = Connections::new(limits);
    connections
        .accept_until(listener, router(app), shutdown)
        .await;
    tracing::info!("shutting down: closing sockets with 1001");
    gateway.close_all(close::GOING_AWAY, "server shutting down");
    let deadline = Instant::now() + SHUTDOWN_GRACE;
    while !gateway.is_empty() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    connections.finish(SHUTDOWN_GRACE).await;
}
