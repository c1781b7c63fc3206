//! The HTTP API, translated: axum's request into the core's [`HttpRequest`], the core's
//! [`HttpReply`] back, after the client address's request rate ([`App::admit_http`]); and
//! `/metrics`, which only the local server has (behind `--metrics-token` when set).

use std::net::{IpAddr, SocketAddr};

use base64::Engine as _;
use std::sync::Arc;

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, Method, StatusCode, Uri, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use roomcast_core::http::{self, HttpReply, HttpRequest};
use roomcast_core::protocol::{ErrorCode, Rejection};

use crate::app::{App, now_ms};
use crate::client_ip::client_ip;
use crate::forward::{HttpApiRequest, LambdaForwarder};
use crate::metrics::Gauges;

/// CORS of the HTTP API and the byte routes (the paths the core's [`http::route`] knows), as
/// the core says ([`http::cors`]): `OPTIONS` answered 204 with the preflight headers, every
/// other answer given the response headers. Other paths (the socket, the widget's pages) are
/// left alone.
pub(crate) async fn cors(request: axum::extract::Request, next: Next) -> Response {
    if matches!(http::route(request.uri().path()), http::Route::NotFound) {
        return next.run(request).await;
    }
    if request.method() == Method::OPTIONS {
        let mut preflight = StatusCode::NO_CONTENT.into_response();
        add_headers(&mut preflight, http::cors::PREFLIGHT);
        return preflight;
    }
    let mut response = next.run(request).await;
    add_headers(&mut response, http::cors::RESPONSE);
    response
}

fn add_headers(response: &mut Response, headers: &[(&'static str, &'static str)]) {
    for (name, value) in headers {
        response.headers_mut().insert(
            header::HeaderName::from_static(name),
            header::HeaderValue::from_static(value),
        );
    }
}

/// Any request no other route takes: the core's HTTP API answers it.
pub(crate) async fn api(
    State(app): State<Arc<App>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    // The body limit layer refuses bodies over the core's limit before they are read.
    let Ok(body) = body else {
        return reply(http::payload_too_large());
    };
    let now = now_ms();
    let client = client_ip(peer.ip(), &headers, &app.config.trusted_proxies);
    // Load balancers' health checks are cheap and must not be refused.
    if uri.path() != "/health"
        && let Some(refused) = over_rate(&app, client, now)
    {
        return refused;
    }
    if let Some(forwarder) = app.forwarder() {
        return forward(&app, forwarder, &method, &uri, &headers, &body, client, now).await;
    }
    let request = HttpRequest {
        method: method.as_str(),
        path: uri.path(),
        query: uri.query(),
        authorization: headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok()),
        body: &body,
        origin: headers.get(header::ORIGIN).and_then(|v| v.to_str().ok()),
        client_ip: Some(&client.to_string()),
    };
    let answer = http::handle(&app.service, &request, Some(app.gateway.len()), now).await;
    app.wake_events();
    reply(answer)
}

/// Takes a token of the client address's HTTP request rate ([`App::admit_http`]); when there
/// is none, the 429 to answer.
pub(crate) fn over_rate(app: &App, client: IpAddr, now: u64) -> Option<Response> {
    (!app.admit_http(client, now)).then(|| {
        reply(HttpReply::rejection(Rejection::new(
            ErrorCode::RateLimited,
            "too many requests from this address: slow down",
        )))
    })
}

/// Forwarding mode: the request goes to the `http` function, as API Gateway's HTTP API
/// integration passes it; a failed invocation is API Gateway's 500.
#[allow(
    clippy::too_many_arguments,
    reason = "the request's parts as axum hands them over"
)]
async fn forward(
    app: &App,
    forwarder: &LambdaForwarder,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    body: &Bytes,
    client: IpAddr,
    now: u64,
) -> Response {
    let request = HttpApiRequest {
        method: method.as_str(),
        path: uri.path(),
        query: uri.query(),
        headers: headers
            .iter()
            .filter_map(|(name, value)| {
                Some((name.as_str().to_owned(), value.to_str().ok()?.to_owned()))
            })
            .collect(),
        body,
        source_ip: client.to_string(),
        request_id: app.request_id(),
        now_ms: now,
    };
    let answered = match forwarder.invoke_http(&request).await {
        Ok(answered) => answered,
        Err(e) => {
            tracing::warn!(route = "http", error = %e, "route integration failed");
            return (
                StatusCode::INTERNAL_SERVER_ERROR,
                Json(serde_json::json!({"message": "Internal Server Error"})),
            )
                .into_response();
        }
    };
    let body = if answered.is_base64_encoded {
        base64::engine::general_purpose::STANDARD
            .decode(&answered.body)
            .unwrap_or_default()
    } else {
        answered.body.into_bytes()
    };
    let mut response = (
        StatusCode::from_u16(answered.status_code).unwrap_or(StatusCode::BAD_GATEWAY),
        body,
    )
        .into_response();
    for (name, value) in answered.headers {
        if let (Ok(name), Ok(value)) = (
            header::HeaderName::try_from(name),
            header::HeaderValue::try_from(value),
        ) {
            response.headers_mut().insert(name, value);
        }
    }
    response
}

/// Whether `headers` carry `Authorization: Bearer {expected}`, compared in constant time.
fn bearer_is(headers: &HeaderMap, expected: &str) -> bool {
    let given = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or_default()
        .as_bytes();
    let expected = expected.as_bytes();
    given.len() == expected.len()
        && given
            .iter()
            .zip(expected)
            .fold(0u8, |diff, (a, b)| diff | (a ^ b))
            == 0
}

/// `GET /metrics`: Prometheus text; with `--metrics-token`, only for a bearer of it.
pub(crate) async fn metrics(State(app): State<Arc<App>>, headers: HeaderMap) -> Response {
    if let Some(token) = &app.config.metrics_token
        && !bearer_is(&headers, token)
    {
        return (
            StatusCode::UNAUTHORIZED,
            [(header::WWW_AUTHENTICATE, "Bearer")],
            "/metrics needs the metrics token",
        )
            .into_response();
    }
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

/// The core's reply as a response: its status, its JSON body.
pub(crate) fn reply(r: HttpReply) -> Response {
    let status = StatusCode::from_u16(r.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    (status, Json(r.body)).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_metrics_token_must_match_exactly() {
        let with = |v: &str| {
            let mut h = HeaderMap::new();
            h.insert(
                header::AUTHORIZATION,
                v.parse().unwrap_or_else(|_| unreachable!("ASCII")),
            );
            h
        };
        assert!(bearer_is(&with("Bearer s3cret"), "s3cret"));
        for wrong in [
            "Bearer s3cre",
            "Bearer s3cretx",
            "bearer s3cret",
            "s3cret",
            "Bearer ",
        ] {
            assert!(!bearer_is(&with(wrong), "s3cret"), "{wrong}");
        }
        assert!(!bearer_is(&HeaderMap::new(), "s3cret"));
    }
}
