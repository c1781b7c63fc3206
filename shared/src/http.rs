//! The HTTP API (history, server-side publish, health), framework-free: each deployment's HTTP
//! layer (axum locally, lambda_http on AWS, the Worker on the edge) passes the authorization
//! header, path and raw query or body here and writes back the [`HttpReply`].

use serde::Deserialize;
use serde_json::{Value, json};

use crate::auth::{Identity, TokenVerifier};
use crate::limits::DEFAULT_HISTORY_LIMIT;
use crate::protocol::{ErrorCode, Rejection};
use crate::service::{ChatService, Publish};
use crate::store::HistoryQuery;

/// A status and a JSON body.
#[derive(Debug, Clone, PartialEq)]
pub struct HttpReply {
    /// HTTP status.
    pub status: u16,
    /// JSON body.
    pub body: Value,
}

impl HttpReply {
    /// `{code, message}` with `status`.
    pub fn error(status: u16, code: &str, message: &str) -> Self {
        Self {
            status,
            body: json!({"code": code, "message": message}),
        }
    }

    fn rejection(r: Rejection) -> Self {
        let status = match r.code {
            ErrorCode::BadFrame | ErrorCode::UnknownAction | ErrorCode::Invalid => 400,
            ErrorCode::TooLarge => 413,
            ErrorCode::Forbidden | ErrorCode::NotMember => 403,
            ErrorCode::NotFound => 404,
            ErrorCode::Conflict => 409,
            ErrorCode::RateLimited | ErrorCode::LimitExceeded => 429,
            ErrorCode::Unavailable => 503,
        };
        Self::error(status, r.code.as_str(), &r.message)
    }
}

fn authenticate(
    service: &ChatService,
    authorization: Option<&str>,
    now_ms: u64,
) -> Result<Identity, HttpReply> {
    bearer_identity(service.verifier(), authorization, now_ms)
}

/// The identity of an `Authorization: Bearer <JWT>` header, or the 401 reply every endpoint
/// gives. For HTTP layers that must know the tenant before they can route a request (the edge
/// Worker picks the Durable Object by tenant and room); the endpoints below check it themselves.
pub fn bearer_identity(
    verifier: &TokenVerifier,
    authorization: Option<&str>,
    now_ms: u64,
) -> Result<Identity, HttpReply> {
    let token = authorization
        .and_then(|v| v.strip_prefix("Bearer "))
        .ok_or_else(|| {
            HttpReply::error(401, "UNAUTHORIZED", "missing `Authorization: Bearer` token")
        })?;
    verifier
        .verify(token.trim(), now_ms)
        .map_err(|e| HttpReply::error(401, "UNAUTHORIZED", &e.to_string()))
}

/// Parses `before`, `after` and `limit` from a raw query string (other parameters are ignored).
fn history_query(raw: Option<&str>) -> Result<HistoryQuery, HttpReply> {
    let mut query = HistoryQuery {
        after: None,
        before: None,
        limit: DEFAULT_HISTORY_LIMIT,
    };
    let bad = || {
        HttpReply::error(
            400,
            "INVALID",
            "before, after and limit must be non-negative integers",
        )
    };
    for pair in raw.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        match key {
            "before" => query.before = Some(value.parse().map_err(|_| bad())?),
            "after" => query.after = Some(value.parse().map_err(|_| bad())?),
            "limit" => query.limit = value.parse().map_err(|_| bad())?,
            _ => {}
        }
    }
    Ok(query)
}

/// `GET /rooms/{room}/messages?before&after&limit`: a page of history for a room the token grants.
pub async fn get_messages(
    service: &ChatService,
    authorization: Option<&str>,
    room: &str,
    raw_query: Option<&str>,
    now_ms: u64,
) -> HttpReply {
    let identity = match authenticate(service, authorization, now_ms) {
        Ok(i) => i,
        Err(reply) => return reply,
    };
    let query = match history_query(raw_query) {
        Ok(q) => q,
        Err(reply) => return reply,
    };
    match service.history_page(&identity, room, query).await {
        Ok(page) => HttpReply {
            status: 200,
            body: json!({"room": room, "messages": page.messages, "more": page.more}),
        },
        Err(r) => HttpReply::rejection(r),
    }
}

#[derive(Deserialize)]
struct PublishBody {
    id: String,
    body: String,
    #[serde(default)]
    meta: Option<Value>,
    #[serde(default)]
    from: Option<String>,
}

/// `POST /rooms/{room}/messages` (role `service`): 201 when stored, 200 for a resent `id`.
pub async fn post_message(
    service: &ChatService,
    authorization: Option<&str>,
    room: &str,
    body: &[u8],
    now_ms: u64,
) -> HttpReply {
    let identity = match authenticate(service, authorization, now_ms) {
        Ok(i) => i,
        Err(reply) => return reply,
    };
    let publish: PublishBody = match serde_json::from_slice(body) {
        Ok(p) => p,
        Err(e) => {
            return HttpReply::error(
                400,
                "BAD_FRAME",
                &format!("expected {{id, body, meta?, from?}}: {e}"),
            );
        }
    };
    let request = Publish {
        id: publish.id,
        body: publish.body,
        meta: publish.meta,
        from: publish.from,
    };
    match service.publish(&identity, room, request, now_ms).await {
        Ok(appended) => {
            let m = &appended.message;
            HttpReply {
                status: if appended.duplicate { 200 } else { 201 },
                body: json!({"room": room, "seq": m.seq, "id": m.id, "ts": m.ts, "duplicate": appended.duplicate}),
            }
        }
        Err(r) => HttpReply::rejection(r),
    }
}

/// `GET /health`.
pub fn health(connections: Option<usize>) -> HttpReply {
    let mut body = json!({"status": "ok"});
    if let Some(n) = connections {
        body["connections"] = json!(n);
    }
    HttpReply { status: 200, body }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn history_query_parsing() {
        let q = history_query(Some("before=10&limit=5&x=y")).unwrap();
        assert_eq!((q.before, q.after, q.limit), (Some(10), None, 5));
        let q = history_query(None).unwrap();
        assert_eq!(
            (q.before, q.after, q.limit),
            (None, None, DEFAULT_HISTORY_LIMIT)
        );
        assert_eq!(history_query(Some("after=-1")).unwrap_err().status, 400);
        assert_eq!(history_query(Some("limit=abc")).unwrap_err().status, 400);
    }
}
