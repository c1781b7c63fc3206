//! The HTTP API, translated: axum's request into the core's [`HttpRequest`], the core's
//! [`HttpReply`] back; and `/metrics`, which only the local server has.

use std::sync::Arc;

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use axum::http::{HeaderMap, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use roomcast_core::http::{self, HttpReply, HttpRequest};

use crate::app::{App, now_ms};
use crate::metrics::Gauges;

/// Any request no other route takes: the core's HTTP API answers it.
pub(crate) async fn api(
    State(app): State<Arc<App>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    // The body limit layer refuses bodies over the core's limit before they are read.
    let Ok(body) = body else {
        return reply(http::payload_too_large());
    };
    let request = HttpRequest {
        method: method.as_str(),
        path: uri.path(),
        query: uri.query(),
        authorization: headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok()),
        body: &body,
    };
    reply(http::handle(&app.service, &request, Some(app.gateway.len()), now_ms()).await)
}

/// `GET /metrics`: Prometheus text.
pub(crate) async fn metrics(State(app): State<Arc<App>>) -> Response {
    let gauges = Gauges {
        connections: app.gateway.len(),
        rooms: app.live.as_ref().map(|l| l.room_count()),
    };
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        app.metrics.render(&gauges),
    )
        .into_response()
}

fn reply(r: HttpReply) -> Response {
    let status = StatusCode::from_u16(r.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    (status, Json(r.body)).into_response()
}
