//! The browser widget, JS SDK, demo page and agent console (`widget/dist/`, built by
//! `widget/build.mjs` and committed, embedded here at compile time so the server needs no Node),
//! and `GET /dev/token`, the development token endpoint the demo and the console use when the
//! server runs with `--dev-tokens` (off by default; loopback callers and loopback `Host` only).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use axum::Json;
use axum::Router;
use axum::extract::{ConnectInfo, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use roomcast_core::auth::{Claims, Role, TokenSigner, VerifyKey};
use roomcast_core::protocol::validate_name;
use serde::Deserialize;
use serde_json::json;

use crate::server::App;

const JS: &str = "text/javascript; charset=utf-8";
const HTML: &str = "text/html; charset=utf-8";

/// `(path, content type, body)` of every embedded asset.
pub const ASSETS: &[(&str, &str, &str)] = &[
    (
        "/widget.js",
        JS,
        include_str!("../../../widget/dist/widget.js"),
    ),
    ("/sdk.js", JS, include_str!("../../../widget/dist/sdk.js")),
    (
        "/console.js",
        JS,
        include_str!("../../../widget/dist/console.js"),
    ),
    (
        "/demo",
        HTML,
        include_str!("../../../widget/dist/demo.html"),
    ),
    (
        "/console",
        HTML,
        include_str!("../../../widget/dist/console.html"),
    ),
];

/// Longest lifetime of a development token, seconds.
const MAX_DEV_TTL_SECS: u64 = 24 * 3600;

/// Adds the asset routes and `/dev/token` to `router`.
pub fn routes(mut router: Router<Arc<App>>) -> Router<Arc<App>> {
    for &(path, content_type, body) in ASSETS {
        router = router.route(
            path,
            get(move || async move {
                (
                    [
                        (header::CONTENT_TYPE, content_type),
                        (header::CACHE_CONTROL, "no-cache"),
                        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
                        // Scripts may be embedded, or imported as modules, from any origin.
                        (header::ACCESS_CONTROL_ALLOW_ORIGIN, "*"),
                    ],
                    body,
                )
            }),
        );
    }
    router.route("/dev/token", get(dev_token))
}

/// `GET /dev/token` query.
#[derive(Deserialize)]
struct DevTokenQuery {
    user: String,
    #[serde(default)]
    tenant: Option<String>,
    #[serde(default)]
    rooms: Option<String>,
    #[serde(default)]
    role: Option<String>,
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    ttl: Option<u64>,
}

fn refuse(status: StatusCode, code: &str, message: impl Into<String>) -> Response {
    (
        status,
        Json(json!({"code": code, "message": message.into()})),
    )
        .into_response()
}

/// Whether the `Host` header names this machine (a DNS-rebinding page would send its own name).
fn loopback_host(headers: &HeaderMap) -> bool {
    let Some(host) = headers.get(header::HOST).and_then(|v| v.to_str().ok()) else {
        return false;
    };
    let name = match host.strip_prefix('[') {
        Some(rest) => rest.split(']').next().unwrap_or_default(),
        None => host.split(':').next().unwrap_or_default(),
    };
    name == "localhost"
        || name
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

async fn dev_token(
    State(app): State<Arc<App>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    query: Result<Query<DevTokenQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let config = app.config();
    if !config.dev_tokens {
        return refuse(
            StatusCode::NOT_FOUND,
            "NOT_FOUND",
            "development tokens are off (start the server with --dev-tokens)",
        );
    }
    let VerifyKey::Hs256(secret) = &config.auth.key else {
        return refuse(
            StatusCode::NOT_FOUND,
            "NOT_FOUND",
            "development tokens need an HS256 secret",
        );
    };
    let cross_site = headers
        .get("sec-fetch-site")
        .is_some_and(|v| v.as_bytes() == b"cross-site");
    if !peer.ip().is_loopback() || !loopback_host(&headers) || cross_site {
        return refuse(
            StatusCode::FORBIDDEN,
            "FORBIDDEN",
            "development tokens are for this machine only",
        );
    }
    let Ok(Query(q)) = query else {
        return refuse(StatusCode::BAD_REQUEST, "INVALID", "`user` is required");
    };
    let role = match q.role.as_deref().unwrap_or("user") {
        "user" => Role::User,
        "agent" => Role::Agent,
        _ => {
            return refuse(
                StatusCode::BAD_REQUEST,
                "INVALID",
                "role must be user or agent",
            );
        }
    };
    let tenant = q.tenant.unwrap_or_else(|| "demo".to_owned());
    let rooms: Vec<String> = q
        .rooms
        .as_deref()
        .unwrap_or_default()
        .split(',')
        .filter(|r| !r.is_empty())
        .map(str::to_owned)
        .collect();
    let names = [("user", q.user.as_str()), ("tenant", tenant.as_str())];
    let grants = rooms
        .iter()
        .map(|r| ("rooms", r.strip_suffix('*').unwrap_or(r)))
        .filter(|(_, r)| !r.is_empty());
    for (what, name) in names.into_iter().chain(grants) {
        if let Err(e) = validate_name(what, name) {
            return refuse(StatusCode::BAD_REQUEST, "INVALID", e.message);
        }
    }
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let exp = now + q.ttl.unwrap_or(3600).clamp(1, MAX_DEV_TTL_SECS);
    let claims = Claims {
        sub: Some(q.user),
        tid: Some(tenant),
        rooms,
        name: q.name,
        role,
        exp: Some(exp),
        iat: Some(now),
        ..Claims::default()
    };
    let token = TokenSigner::hs256(secret).sign(&claims);
    (
        [(header::CACHE_CONTROL, "no-store")],
        Json(json!({"token": token, "exp": exp})),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn host(h: &str) -> HeaderMap {
        let mut m = HeaderMap::new();
        m.insert(header::HOST, h.parse().unwrap_or_else(|_| unreachable!()));
        m
    }

    #[test]
    fn only_loopback_host_names_pass() {
        for ok in [
            "127.0.0.1:3001",
            "localhost:3001",
            "[::1]:3001",
            "127.0.0.1",
        ] {
            assert!(loopback_host(&host(ok)), "{ok}");
        }
        for bad in [
            "evil.example:3001",
            "10.0.0.1:3001",
            "localhost.evil.example",
        ] {
            assert!(!loopback_host(&host(bad)), "{bad}");
        }
        assert!(!loopback_host(&HeaderMap::new()));
    }
}
