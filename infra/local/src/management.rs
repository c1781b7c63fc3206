//! The API Gateway Management API (`POST|GET|DELETE /@connections/{id}`), as API Gateway
//! answers it, for the Lambda functions behind the emulator and for backends. It has a router
//! of its own, served only on `--management-listen`: API Gateway requires IAM-signed calls,
//! and here the listener's address is what keeps clients out (behind a proxy on the same host
//! every client is a loopback peer, so the peer address cannot).

use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use roomcast_core::http::MAX_BODY_BYTES;
use roomcast_core::protocol::close;
use serde::Deserialize;
use serde_json::json;

use crate::app::App;
use crate::gateway::Outbound;

/// The Management API's routes: `/@connections/{id}`, and `/{stage}/@connections/{id}` for SDK
/// clients built with API Gateway's `https://{domain}/{stage}` endpoint (any stage).
pub fn router(app: Arc<App>) -> Router {
    let connection = || {
        get(get_connection)
            .post(post_connection)
            .delete(delete_connection)
    };
    Router::new()
        .route("/@connections/{id}", connection())
        .route("/{stage}/@connections/{id}", connection())
        .fallback(|| async { error(StatusCode::NOT_FOUND, "NotFoundException") })
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(app)
}

/// A Management API error as API Gateway sends it: AWS SDKs read the error type from the
/// `x-amzn-ErrorType` header (a 410 is only a `GoneException` with it).
fn error(status: StatusCode, error_type: &'static str) -> Response {
    (
        status,
        [("x-amzn-ErrorType", error_type)],
        Json(json!({"message": error_type})),
    )
        .into_response()
}

fn gone() -> Response {
    error(StatusCode::GONE, "GoneException")
}

/// `/@connections/{id}` or `/{stage}/@connections/{id}`: the stage is ignored.
#[derive(Deserialize)]
struct ConnectionPath {
    id: String,
}

/// An ISO 8601 UTC timestamp with milliseconds, as `GetConnection` reports times.
fn iso8601(ms: u64) -> String {
    humantime::format_rfc3339_millis(UNIX_EPOCH + Duration::from_millis(ms)).to_string()
}

/// `GET @connections/{id}`: when it connected, its address and agent, its last activity.
async fn get_connection(
    State(app): State<Arc<App>>,
    Path(ConnectionPath { id }): Path<ConnectionPath>,
) -> Response {
    let Some(h) = app.gateway.handle(&id) else {
        return gone();
    };
    Json(json!({
        "connectedAt": iso8601(h.connected_at_ms),
        "identity": {"sourceIp": h.source_ip, "userAgent": h.user_agent},
        "lastActiveAt": iso8601(h.last_active_ms()),
    }))
    .into_response()
}

/// `POST @connections/{id}`: sends the body as one frame (text when it is UTF-8).
async fn post_connection(
    State(app): State<Arc<App>>,
    Path(ConnectionPath { id }): Path<ConnectionPath>,
    body: Result<Bytes, axum::extract::rejection::BytesRejection>,
) -> Response {
    let Ok(body) = body else {
        // The body limit (the core's 128 KB) is what API Gateway's 128 KB is.
        return error(StatusCode::PAYLOAD_TOO_LARGE, "PayloadTooLargeException");
    };
    let frame = match String::from_utf8(body.to_vec()) {
        Ok(text) => Outbound::Text(text.into()),
        Err(e) => Outbound::Binary(e.into_bytes()),
    };
    match app.gateway.enqueue(&id, frame) {
        Ok(()) => StatusCode::OK.into_response(),
        Err(_) => gone(),
    }
}

/// `DELETE @connections/{id}`: closes the connection (1000).
async fn delete_connection(
    State(app): State<Arc<App>>,
    Path(ConnectionPath { id }): Path<ConnectionPath>,
) -> Response {
    match app.gateway.handle(&id) {
        Some(h) => {
            h.request_close(close::NORMAL, "closed by @connections DELETE");
            StatusCode::NO_CONTENT.into_response()
        }
        None => gone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn iso8601_formats_utc_with_milliseconds() {
        assert_eq!(iso8601(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(iso8601(1_700_000_000_123), "2023-11-14T22:13:20.123Z");
        assert_eq!(iso8601(951_782_400_000), "2000-02-29T00:00:00.000Z");
    }
}
