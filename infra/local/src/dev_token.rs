//! Development tokens, minted in one place: the `token` subcommand prints one (signed with the
//! server's secret: whoever runs it holds that), and `GET /dev/token` (with `--dev-tokens`;
//! loopback callers, a loopback `Host`, nothing forwarded by an untrusted proxy) serves them to
//! the widget demo page and the agent console, signed with the process's development key
//! ([`crate::config::DEV_TOKEN_KID`]): a leaked one dies with the process.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Json;
use axum::extract::{ConnectInfo, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use roomcast_core::auth::{Claims, Role, TokenSigner};
use roomcast_core::protocol::validate_name;
use serde::Deserialize;
use serde_json::json;

use crate::app::{App, now_ms};
use crate::client_ip::{client_ip, says_forwarded};
use crate::config::DEV_TOKEN_KID;

/// Longest lifetime of a token `/dev/token` serves, seconds.
const MAX_DEV_TTL_SECS: u64 = 24 * 3600;

/// What a development token says.
#[derive(Debug, Clone)]
pub struct DevToken {
    /// User id (`sub`).
    pub user: String,
    /// Tenant id (`tid`).
    pub tenant: String,
    /// Room grants; `prefix-*` grants a prefix.
    pub rooms: Vec<String>,
    /// Display name.
    pub name: Option<String>,
    /// Role.
    pub role: Role,
    /// Lifetime, seconds.
    pub ttl_secs: u64,
    /// `iss`, when the server requires one.
    pub issuer: Option<String>,
    /// `aud`, when the server requires one.
    pub audience: Option<String>,
}

impl DevToken {
    /// Checks the names, then signs the token with `signer` at `now_secs`; returns it and its
    /// expiry (epoch seconds).
    pub fn mint(self, signer: &TokenSigner, now_secs: u64) -> Result<(String, u64), String> {
        let names = [
            ("user", self.user.as_str()),
            ("tenant", self.tenant.as_str()),
        ];
        let grants = self
            .rooms
            .iter()
            .map(|r| ("rooms", r.strip_suffix('*').unwrap_or(r)))
            .filter(|(_, r)| !r.is_empty());
        for (what, name) in names.into_iter().chain(grants) {
            validate_name(what, name).map_err(|e| e.message)?;
        }
        let exp = now_secs.saturating_add(self.ttl_secs);
        let claims = Claims {
            sub: Some(self.user),
            tid: Some(self.tenant),
            rooms: self.rooms,
            name: self.name,
            role: self.role,
            exp: Some(exp),
            iat: Some(now_secs),
            iss: self.issuer,
            aud: self.audience.map(serde_json::Value::String),
            ..Claims::default()
        };
        Ok((signer.sign(&claims), exp))
    }
}

/// `GET /dev/token` query.
#[derive(Deserialize)]
pub(crate) struct DevTokenQuery {
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

/// `GET /dev/token?user&tenant&rooms&role&name&ttl`: a development token (never role
/// `service`).
pub(crate) async fn issue(
    State(app): State<Arc<App>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    query: Result<Query<DevTokenQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let config = app.config();
    let Some(key) = &config.dev_token_key else {
        return refuse(
            StatusCode::NOT_FOUND,
            "NOT_FOUND",
            "development tokens are off (start the server with --dev-tokens)",
        );
    };
    let cross_site = headers
        .get("sec-fetch-site")
        .is_some_and(|v| v.as_bytes() == b"cross-site");
    let trusted = &config.trusted_proxies;
    let from_proxy = trusted.contains(&peer.ip().to_canonical());
    // Behind a proxy on this host every peer is loopback: a request that says it was forwarded
    // counts as this machine's only when a trusted proxy says the client is.
    let untrusted_forward = !from_proxy && says_forwarded(&headers);
    let client = client_ip(peer.ip(), &headers, trusted);
    if !client.is_loopback() || untrusted_forward || !loopback_host(&headers) || cross_site {
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
    let request = DevToken {
        user: q.user,
        tenant: q.tenant.unwrap_or_else(|| "demo".to_owned()),
        rooms: q
            .rooms
            .as_deref()
            .unwrap_or_default()
            .split(',')
            .filter(|r| !r.is_empty())
            .map(str::to_owned)
            .collect(),
        name: q.name,
        role,
        ttl_secs: q.ttl.unwrap_or(3600).clamp(1, MAX_DEV_TTL_SECS),
        // What the server requires, so its own development tokens pass.
        issuer: config.settings.auth.issuer.clone(),
        audience: config.settings.auth.audience.clone(),
    };
    let signer = TokenSigner::hs256(key).with_kid(DEV_TOKEN_KID);
    match request.mint(&signer, now_ms() / 1000) {
        Ok((token, exp)) => (
            [(header::CACHE_CONTROL, "no-store")],
            Json(json!({"token": token, "exp": exp})),
        )
            .into_response(),
        Err(message) => refuse(StatusCode::BAD_REQUEST, "INVALID", message),
    }
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
