//! The HTTP API (history, server-side publish, webhook endpoints, health), framework-free and whole: routing with
//! percent-decoding, request parsing, authentication, the error codes and their statuses. Each
//! deployment's HTTP layer (axum locally, lambda_http on AWS, the Worker and its Durable Object
//! on the edge) only copies the method, path, query, `Authorization` header and body into an
//! [`HttpRequest`], calls [`handle`], and writes back the [`HttpReply`].

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::attachments::{AttachmentRef, UploadRequest};
use crate::auth::{Identity, TokenVerifier};
use crate::limits::{DEFAULT_HISTORY_LIMIT, MAX_WS_MESSAGE_BYTES};
use crate::protocol::{MessageView, Rejection};
use crate::service::{ChatService, EndpointChange, Publish, TokenRequest, http_status, key_of};
use crate::store::HistoryQuery;
use crate::support::embed::EmbedKeys;

/// Largest request body accepted (the WebSocket message limit, so a publish over HTTP and one
/// over a socket carry the same).
pub const MAX_BODY_BYTES: usize = MAX_WS_MESSAGE_BYTES;

/// CORS for the HTTP API and the signed byte routes. The API authenticates with bearer tokens,
/// never cookies, and a signed route with its link, so any origin may call them: the widget
/// runs on customers' pages. Each HTTP layer answers `OPTIONS` with [`cors::PREFLIGHT`] and adds
/// [`cors::RESPONSE`] to every other answer of these routes (on AWS, API Gateway's CORS
/// configuration says the same).
pub mod cors {
    /// Headers of a preflight's answer (204).
    pub const PREFLIGHT: &[(&str, &str)] = &[
        ("access-control-allow-origin", "*"),
        (
            "access-control-allow-methods",
            "GET, POST, PUT, PATCH, DELETE",
        ),
        (
            "access-control-allow-headers",
            "authorization, content-type",
        ),
        ("access-control-max-age", "600"),
    ];
    /// Headers of every other answer.
    pub const RESPONSE: &[(&str, &str)] = &[
        ("access-control-allow-origin", "*"),
        (
            "access-control-expose-headers",
            "content-disposition, content-length",
        ),
    ];
}

/// What a request path names in the HTTP API.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    /// `/health`.
    Health,
    /// `/rooms/{room}/messages`, the room percent-decoded.
    Messages(String),
    /// `/rooms/{room}/uploads`: upload slots (POST).
    Uploads(String),
    /// `/rooms/{room}/attachments/{id}`: a download link (GET).
    Attachment(String, String),
    /// `/uploads/{token}` (PUT) and `/files/{token}` (GET): the bytes behind signed links, on
    /// the deployments that serve them themselves. Their HTTP layer streams the bytes; [`handle`]
    /// answers 404.
    Blob(BlobRoute),
    /// A room path whose room segment is not valid percent-encoded UTF-8.
    BadRoom,
    /// `/events/endpoints…`: the webhook endpoints API.
    Endpoints(EndpointsRoute),
    /// `/embed/token`: a visitor token for a publishable key (POST).
    EmbedToken,
    /// Not an endpoint of the HTTP API.
    NotFound,
}

/// A signed link's route ([`crate::attachments::link`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BlobRoute {
    /// `PUT /uploads/{token}`.
    Upload(String),
    /// `GET /files/{token}`.
    Download(String),
}

/// What an `/events/endpoints…` path names. Ids are taken as sent: endpoint and event ids are
/// plain ASCII (`ep_…`, `evt_…`) and need no decoding.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EndpointsRoute {
    /// `/events/endpoints`: list (GET), create (POST).
    Collection,
    /// `/events/endpoints/{id}`: read (GET), change (PATCH), delete (DELETE).
    One(String),
    /// `/events/endpoints/{id}/rotate` (POST).
    Rotate(String),
    /// `/events/endpoints/{id}/test` (POST).
    Test(String),
    /// `/events/endpoints/{id}/attempts` (GET).
    Attempts(String),
    /// `/events/endpoints/{id}/dead-letters` (GET).
    DeadLetters(String),
    /// `/events/endpoints/{id}/dead-letters/{event}/replay` (POST).
    Replay(String, String),
}

/// The route of `path` (the URL path as sent, still percent-encoded).
pub fn route(path: &str) -> Route {
    let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let id = |s: &&str| (*s).to_owned();
    match segments.as_slice() {
        ["health"] => Route::Health,
        ["rooms", room, "messages"] => percent_decode(room).map_or(Route::BadRoom, Route::Messages),
        ["rooms", room, "uploads"] => percent_decode(room).map_or(Route::BadRoom, Route::Uploads),
        ["rooms", room, "attachments", a] => {
            percent_decode(room).map_or(Route::BadRoom, |room| Route::Attachment(room, id(a)))
        }
        ["uploads", token] => Route::Blob(BlobRoute::Upload(id(token))),
        ["files", token] => Route::Blob(BlobRoute::Download(id(token))),
        ["embed", "token"] => Route::EmbedToken,
        ["events", "endpoints"] => Route::Endpoints(EndpointsRoute::Collection),
        ["events", "endpoints", e] => Route::Endpoints(EndpointsRoute::One(id(e))),
        ["events", "endpoints", e, "rotate"] => Route::Endpoints(EndpointsRoute::Rotate(id(e))),
        ["events", "endpoints", e, "test"] => Route::Endpoints(EndpointsRoute::Test(id(e))),
        ["events", "endpoints", e, "attempts"] => Route::Endpoints(EndpointsRoute::Attempts(id(e))),
        ["events", "endpoints", e, "dead-letters"] => {
            Route::Endpoints(EndpointsRoute::DeadLetters(id(e)))
        }
        ["events", "endpoints", e, "dead-letters", event, "replay"] => {
            Route::Endpoints(EndpointsRoute::Replay(id(e), id(event)))
        }
        _ => Route::NotFound,
    }
}

/// Decodes `%XX` escapes; `None` for a malformed escape or a result that is not UTF-8.
pub fn percent_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// One HTTP request, as the deployment's HTTP layer received it.
#[derive(Debug, Clone, Copy)]
pub struct HttpRequest<'a> {
    /// Method, upper case.
    pub method: &'a str,
    /// URL path, still percent-encoded.
    pub path: &'a str,
    /// Raw query string, without `?`.
    pub query: Option<&'a str>,
    /// The `Authorization` header.
    pub authorization: Option<&'a str>,
    /// The body.
    pub body: &'a [u8],
    /// The `Origin` header, when the request came from a browser page.
    pub origin: Option<&'a str>,
    /// The client's address, as the deployment learned it (the socket's peer, or the header a
    /// trusted proxy sets), for per-address rate limits.
    pub client_ip: Option<&'a str>,
}

/// Answers `request` at `now_ms`. `live_connections` is what `/health` reports, where the
/// deployment knows it cheaply (the local server does; a Lambda function does not).
pub async fn handle(
    service: &ChatService,
    request: &HttpRequest<'_>,
    live_connections: Option<usize>,
    now_ms: u64,
) -> HttpReply {
    match route(request.path) {
        Route::Health if request.method == "GET" => health(live_connections),
        Route::Messages(room) => match request.method {
            "GET" => {
                get_messages(service, request.authorization, &room, request.query, now_ms).await
            }
            "POST" => {
                post_message(service, request.authorization, &room, request.body, now_ms).await
            }
            _ => method_not_allowed(),
        },
        Route::Uploads(room) if request.method == "POST" => {
            post_upload(service, request.authorization, &room, request.body, now_ms).await
        }
        Route::Attachment(room, id) if request.method == "GET" => {
            get_attachment(service, request.authorization, &room, &id, now_ms).await
        }
        Route::Health | Route::Uploads(_) | Route::Attachment(..) => method_not_allowed(),
        Route::Blob(_) => not_found(),
        Route::Endpoints(route) => endpoints(service, request, route, now_ms).await,
        Route::EmbedToken if request.method == "POST" => {
            embed_token(service, request, now_ms).await
        }
        Route::EmbedToken => method_not_allowed(),
        Route::BadRoom => bad_room(),
        Route::NotFound => not_found(),
    }
}

/// 404 for a path that is no endpoint.
pub fn not_found() -> HttpReply {
    HttpReply::error(404, "NOT_FOUND", "no such endpoint")
}

/// 405 for a method an endpoint does not serve.
pub fn method_not_allowed() -> HttpReply {
    HttpReply::error(
        405,
        "INVALID",
        "method not allowed: use GET, or POST to publish",
    )
}

/// 400 for a room segment that does not decode.
pub fn bad_room() -> HttpReply {
    HttpReply::error(400, "INVALID", "room is not valid percent-encoded UTF-8")
}

/// 413 for a body over [`MAX_BODY_BYTES`].
pub fn payload_too_large() -> HttpReply {
    HttpReply::error(
        413,
        "TOO_LARGE",
        &format!("request body over {MAX_BODY_BYTES} bytes"),
    )
}

/// The body of every error answer.
#[derive(Debug, Serialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct ErrorBody<'a> {
    /// Stable code: an `error` frame's codes, and `UNAUTHORIZED`.
    pub code: &'a str,
    /// Why, for people.
    pub message: &'a str,
}

/// The body of a `GET /rooms/{room}/messages` answer.
#[derive(Debug, Serialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct HistoryPage<'a> {
    /// Room name.
    pub room: &'a str,
    /// The messages, oldest first.
    pub messages: &'a [MessageView],
    /// More messages lie beyond the page in the direction paged.
    pub more: bool,
}

/// The body of a `POST /rooms/{room}/messages` answer.
#[derive(Debug, Serialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct Published<'a> {
    /// Room name.
    pub room: &'a str,
    /// The message's seq (the original one for a duplicate).
    pub seq: u64,
    /// Its id.
    pub id: &'a str,
    /// When it was stored, epoch milliseconds.
    pub ts: u64,
    /// This (room, from, id) was stored before: nothing new was stored.
    pub duplicate: bool,
}

/// The body of a `GET /health` answer.
#[derive(Debug, Serialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct Health {
    /// Always `ok`.
    pub status: &'static str,
    /// Open WebSockets, where the deployment knows it without a query (the local server).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub connections: Option<usize>,
}

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
            body: json!(ErrorBody { code, message }),
        }
    }

    /// A rejection with the status its code maps to.
    pub fn rejection(r: Rejection) -> Self {
        Self::error(http_status(r.code), r.code.as_str(), &r.message)
    }
}

/// The identity of a request's bearer token, once its request-rate token is taken: 401 for a
/// bad token, 429 past the rate.
async fn admitted_identity(
    service: &ChatService,
    authorization: Option<&str>,
    now_ms: u64,
) -> Result<Identity, HttpReply> {
    let identity = authenticate(service, authorization, now_ms)?;
    service
        .admit_request(&identity, now_ms)
        .await
        .map_err(HttpReply::rejection)?;
    Ok(identity)
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
async fn get_messages(
    service: &ChatService,
    authorization: Option<&str>,
    room: &str,
    raw_query: Option<&str>,
    now_ms: u64,
) -> HttpReply {
    let identity = match admitted_identity(service, authorization, now_ms).await {
        Ok(i) => i,
        Err(reply) => return reply,
    };
    let query = match history_query(raw_query) {
        Ok(q) => q,
        Err(reply) => return reply,
    };
    match service.history_page(&identity, room, query, now_ms).await {
        Ok(page) => HttpReply {
            status: 200,
            body: json!(HistoryPage {
                room,
                messages: &page.messages,
                more: page.more,
            }),
        },
        Err(r) => HttpReply::rejection(r),
    }
}

/// The body of a `POST /rooms/{room}/messages` request.
#[derive(Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct PublishBody {
    /// Idempotency key, scoped to (room, `from`, id): 1-64 printable ASCII characters.
    id: String,
    /// Text, 1-16384 bytes; may be empty when the message carries attachments.
    #[serde(default)]
    body: String,
    /// Application data, an object of at most 2048 bytes.
    #[serde(default)]
    meta: Option<Value>,
    /// The sender shown to clients (a bot's user id); default: the token's `sub`.
    #[serde(default)]
    from: Option<String>,
    /// Files the service token's user uploaded to this room.
    #[serde(default)]
    attachments: Vec<AttachmentRef>,
    /// Protocol 1.1: the seq of the message of the room it answers.
    #[serde(default)]
    reply_to: Option<u64>,
}

/// The `POST /embed/token` body, or the 400 reply every deployment gives.
fn token_request(body: &[u8]) -> Result<TokenRequest, HttpReply> {
    serde_json::from_slice(body).map_err(|e| {
        HttpReply::error(
            400,
            "BAD_FRAME",
            &format!("expected {{key, visitor, name?}}: {e}"),
        )
    })
}

/// The tenant a `POST /embed/token` body's key embeds, or the 400/403 reply every deployment
/// gives. For HTTP layers that must know the tenant before they can route the request (the edge
/// Worker picks the tenant's object); [`handle`] checks it itself.
pub fn embed_tenant(keys: &EmbedKeys, body: &[u8]) -> Result<String, HttpReply> {
    let asked = token_request(body)?;
    key_of(keys, &asked.key)
        .map(|k| k.tenant.clone())
        .map_err(HttpReply::rejection)
}

/// `POST /embed/token` `{key, visitor, name?}` from a page whose `Origin` the key allows: 200
/// with a visitor token and the desk's first-open state.
async fn embed_token(service: &ChatService, request: &HttpRequest<'_>, now_ms: u64) -> HttpReply {
    if request.body.len() > MAX_BODY_BYTES {
        return payload_too_large();
    }
    let asked = match token_request(request.body) {
        Ok(asked) => asked,
        Err(reply) => return reply,
    };
    match service
        .embed_token(asked, request.origin, request.client_ip, now_ms)
        .await
    {
        Ok(token) => HttpReply {
            status: 200,
            body: json!(token),
        },
        Err(r) => HttpReply::rejection(r),
    }
}

/// `POST /rooms/{room}/uploads` `{name, size, type}`: 201 with the slot and its upload target.
async fn post_upload(
    service: &ChatService,
    authorization: Option<&str>,
    room: &str,
    body: &[u8],
    now_ms: u64,
) -> HttpReply {
    if body.len() > MAX_BODY_BYTES {
        return payload_too_large();
    }
    let identity = match admitted_identity(service, authorization, now_ms).await {
        Ok(i) => i,
        Err(reply) => return reply,
    };
    let request: UploadRequest = match serde_json::from_slice(body) {
        Ok(r) => r,
        Err(e) => {
            return HttpReply::error(
                400,
                "BAD_FRAME",
                &format!("expected {{name, size, type}}: {e}"),
            );
        }
    };
    match service.upload_slot(&identity, room, request, now_ms).await {
        Ok(grant) => HttpReply {
            status: 201,
            body: json!(grant),
        },
        Err(r) => HttpReply::rejection(r),
    }
}

/// `GET /rooms/{room}/attachments/{id}`: a short-lived link to the bytes, for members.
async fn get_attachment(
    service: &ChatService,
    authorization: Option<&str>,
    room: &str,
    id: &str,
    now_ms: u64,
) -> HttpReply {
    let identity = match admitted_identity(service, authorization, now_ms).await {
        Ok(i) => i,
        Err(reply) => return reply,
    };
    match service.download_link(&identity, room, id, now_ms).await {
        Ok(link) => HttpReply {
            status: 200,
            body: json!(link),
        },
        Err(r) => HttpReply::rejection(r),
    }
}

/// `POST /rooms/{room}/messages` (role `service`): 201 when stored, 200 for a resent `id`.
async fn post_message(
    service: &ChatService,
    authorization: Option<&str>,
    room: &str,
    body: &[u8],
    now_ms: u64,
) -> HttpReply {
    if body.len() > MAX_BODY_BYTES {
        return payload_too_large();
    }
    let identity = match admitted_identity(service, authorization, now_ms).await {
        Ok(i) => i,
        Err(reply) => return reply,
    };
    let publish: PublishBody = match serde_json::from_slice(body) {
        Ok(p) => p,
        Err(e) => {
            return HttpReply::error(
                400,
                "BAD_FRAME",
                &format!("expected {{id, body, meta?, from?, reply_to?}}: {e}"),
            );
        }
    };
    let request = Publish {
        id: publish.id,
        body: publish.body,
        meta: publish.meta,
        from: publish.from,
        attachments: publish.attachments,
        reply_to: publish.reply_to,
    };
    match service.publish(&identity, room, request, now_ms).await {
        Ok(appended) => {
            let m = &appended.message;
            HttpReply {
                status: if appended.duplicate { 200 } else { 201 },
                body: json!(Published {
                    room,
                    seq: m.seq,
                    id: &m.id,
                    ts: m.ts,
                    duplicate: appended.duplicate,
                }),
            }
        }
        Err(r) => HttpReply::rejection(r),
    }
}

/// Most attempt records or dead letters one request lists.
pub const MAX_LISTED: usize = 100;

/// The webhook endpoints API (role `service`; each tenant sees only its own endpoints).
async fn endpoints(
    service: &ChatService,
    request: &HttpRequest<'_>,
    route: EndpointsRoute,
    now_ms: u64,
) -> HttpReply {
    if request.body.len() > MAX_BODY_BYTES {
        return payload_too_large();
    }
    let identity = match admitted_identity(service, request.authorization, now_ms).await {
        Ok(i) => i,
        Err(reply) => return reply,
    };
    let limit = match list_limit(request.query) {
        Ok(limit) => limit,
        Err(reply) => return reply,
    };
    let change = || -> Result<EndpointChange, HttpReply> {
        serde_json::from_slice(request.body).map_err(|e| {
            HttpReply::error(
                400,
                "BAD_FRAME",
                &format!("expected {{url?, types?, enabled?, description?}}: {e}"),
            )
        })
    };
    let i = &identity;
    let (created, result) = match (request.method, route) {
        (method, EndpointsRoute::Collection) => match method {
            "GET" => (false, service.list_endpoints(i).await),
            "POST" => match change() {
                Ok(c) => (true, service.create_endpoint(i, c, now_ms).await),
                Err(reply) => return reply,
            },
            _ => return not_allowed("GET or POST"),
        },
        (method, EndpointsRoute::One(id)) => match method {
            "GET" => (false, service.get_endpoint(i, &id).await),
            "PATCH" => match change() {
                Ok(c) => (false, service.update_endpoint(i, &id, c).await),
                Err(reply) => return reply,
            },
            "DELETE" => (false, service.delete_endpoint(i, &id).await),
            _ => return not_allowed("GET, PATCH or DELETE"),
        },
        ("POST", EndpointsRoute::Rotate(id)) => {
            (false, service.rotate_endpoint_secret(i, &id, now_ms).await)
        }
        ("POST", EndpointsRoute::Test(id)) => (true, service.test_endpoint(i, &id, now_ms).await),
        ("GET", EndpointsRoute::Attempts(id)) => {
            (false, service.endpoint_attempts(i, &id, limit).await)
        }
        ("GET", EndpointsRoute::DeadLetters(id)) => {
            (false, service.endpoint_dead_letters(i, &id, limit).await)
        }
        ("POST", EndpointsRoute::Replay(id, event)) => (
            false,
            service.replay_dead_letter(i, &id, &event, now_ms).await,
        ),
        (_, EndpointsRoute::Attempts(_) | EndpointsRoute::DeadLetters(_)) => {
            return not_allowed("GET");
        }
        (_, EndpointsRoute::Rotate(_) | EndpointsRoute::Test(_) | EndpointsRoute::Replay(..)) => {
            return not_allowed("POST");
        }
    };
    match result {
        Ok(body) => HttpReply {
            status: if created { 201 } else { 200 },
            body,
        },
        Err(r) => HttpReply::rejection(r),
    }
}

fn not_allowed(methods: &str) -> HttpReply {
    HttpReply::error(
        405,
        "INVALID",
        &format!("method not allowed: use {methods}"),
    )
}

/// `limit` of a listing (default and maximum [`MAX_LISTED`]).
fn list_limit(raw: Option<&str>) -> Result<usize, HttpReply> {
    for pair in raw.unwrap_or("").split('&') {
        if let Some(value) = pair.strip_prefix("limit=") {
            return value
                .parse::<usize>()
                .map(|l| l.clamp(1, MAX_LISTED))
                .map_err(|_| HttpReply::error(400, "INVALID", "limit must be a positive integer"));
        }
    }
    Ok(MAX_LISTED)
}

/// `GET /health`. Public for HTTP layers that answer it without a service (the edge Worker,
/// which has no object to ask).
pub fn health(connections: Option<usize>) -> HttpReply {
    HttpReply {
        status: 200,
        body: json!(Health {
            status: "ok",
            connections,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_decode_the_room() {
        assert_eq!(route("/health"), Route::Health);
        assert_eq!(
            route("/rooms/a%3Ab%40c/messages"),
            Route::Messages("a:b@c".into())
        );
        assert_eq!(route("/rooms/%zz/messages"), Route::BadRoom);
        assert_eq!(route("/rooms/%ff/messages"), Route::BadRoom);
        assert_eq!(route("/rooms/lobby"), Route::NotFound);
        assert_eq!(route("/rooms/a/b/messages"), Route::NotFound);
        assert_eq!(route("/"), Route::NotFound);
    }

    #[test]
    fn percent_decoding() {
        assert_eq!(percent_decode("a%2Fb").as_deref(), Some("a/b"));
        assert_eq!(percent_decode("%"), None);
        assert_eq!(percent_decode("%4"), None);
        assert_eq!(percent_decode("plain").as_deref(), Some("plain"));
    }

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
