//! The Worker: verifies the token (the same rules as everywhere, pure-Rust crypto) to learn the
//! tenant, and routes each request to the `ChatRoom` object of (tenant, room), named
//! `tenant/room`. Every chat decision is the object's, through the core service; the Worker only
//! refuses what it cannot route (no valid token, no valid room name), with the core's replies.
//! The endpoints API (`/events/endpoints…`) goes to the tenant's `TenantEvents` object, and so
//! does `POST /embed/token`, to the object of the publishable key's tenant. The Worker itself
//! serves attachment bytes behind signed links (`PUT /uploads/{token}`,
//! `GET /files/{token}`, [`crate::blobs`]).

use roomcast_core::auth::TokenVerifier;
use roomcast_core::http::{self, HttpReply, Route};
use roomcast_core::protocol::validate_name;
use roomcast_core::store::RoomRef;
use worker::{Context, Env, Headers, Method, Request, Response, Result, event};

use crate::config::EdgeConfig;
use crate::events::tenant_object;
use crate::relay::room_object;
use crate::room::json_reply;
use crate::routes::{EdgeRoute, edge_route};
use crate::socket::UpgradeRequest;
use crate::{log, now_ms};

#[event(fetch)]
async fn fetch(req: Request, env: Env, _ctx: Context) -> Result<Response> {
    let config = match EdgeConfig::from_env(&env) {
        Ok(config) => config,
        Err(e) => {
            worker::console_error!("roomcast: not configured: {e}");
            return Response::error(format!("not configured: {e}"), 500);
        }
    };
    log::init(config.settings.log);
    let path = req.path();
    match edge_route(&path) {
        Some(EdgeRoute::Socket(room)) => socket(req, &env, &config, &room).await,
        Some(EdgeRoute::BadSocketRoom) => json_reply(&http::bad_room()),
        #[cfg(feature = "dev")]
        Some(EdgeRoute::DevConformance) if config.dev_routes => {
            crate::dev::forward(req, &env).await
        }
        #[cfg(feature = "dev")]
        Some(EdgeRoute::DevFault) if config.dev_routes => {
            crate::dev::forward_fault(req, &env, &verifier(&config)?).await
        }
        // Relayed records and the events objects' internal paths come from objects through
        // stubs, never from clients.
        Some(
            EdgeRoute::DevConformance
            | EdgeRoute::DevFault
            | EdgeRoute::Relay
            | EdgeRoute::RelayOffer
            | EdgeRoute::RelayEject
            | EdgeRoute::EventsEndpoints
            | EdgeRoute::EventsDispatch
            | EdgeRoute::TenantQuota
            | EdgeRoute::TenantDesk,
        ) => json_reply(&http::not_found()),
        None if req.method() == Method::Options => preflight(),
        None => with_cors(api(req, &env, &config, &path).await?),
    }
}

/// The HTTP API and the signed byte routes.
async fn api(req: Request, env: &Env, config: &EdgeConfig, path: &str) -> Result<Response> {
    match http::route(path) {
        // Answered here: the Worker needs no object (and no room) for it.
        Route::Health if req.method() == Method::Get => json_reply(&http::health(None)),
        Route::Health => json_reply(&http::method_not_allowed()),
        Route::Messages(room) | Route::Uploads(room) | Route::Attachment(room, _) => {
            room_api(req, env, config, &room).await
        }
        // The bytes behind signed links: the Worker's, with no object.
        Route::Blob(route) => crate::blobs::serve(req, env, config, route).await,
        Route::BadRoom => json_reply(&http::bad_room()),
        Route::Endpoints(_) => endpoints(req, env, config).await,
        Route::EmbedToken => embed_token(req, env, config).await,
        Route::NotFound => json_reply(&http::not_found()),
    }
}

/// The CORS preflight of the HTTP API and the byte routes ([`http::cors`]).
fn preflight() -> Result<Response> {
    let headers = Headers::new();
    for (name, value) in http::cors::PREFLIGHT {
        headers.set(name, value)?;
    }
    Ok(Response::empty()?.with_status(204).with_headers(headers))
}

/// `response` with the CORS headers every answer of the API carries. A response an object
/// answered has immutable headers, so they are copied.
fn with_cors(response: Response) -> Result<Response> {
    let headers = Headers::new();
    for (name, value) in response.headers().entries() {
        headers.set(&name, &value)?;
    }
    for (name, value) in http::cors::RESPONSE {
        headers.set(name, value)?;
    }
    Ok(response.with_headers(headers))
}

/// The token verifier of the configuration, or the 500 the Worker answers without one.
fn verifier(config: &EdgeConfig) -> Result<TokenVerifier> {
    config
        .settings
        .verifier()
        .map_err(|e| worker::Error::RustError(e.to_string()))
}

/// `GET /rooms/{room}/ws`.
async fn socket(req: Request, env: &Env, config: &EdgeConfig, room: &str) -> Result<Response> {
    let upgrade = req.headers().get("Upgrade")?.unwrap_or_default();
    if !upgrade.eq_ignore_ascii_case("websocket") {
        return Response::error("expected a WebSocket upgrade", 426);
    }
    if let Err(r) = validate_name("room", room) {
        return Response::error(r.message, 400);
    }
    // The token `connect` will verify again in the object: here only to learn the tenant.
    let request = UpgradeRequest::from_request(&req)?;
    let token = request.upgrade().token().unwrap_or("");
    let identity = match verifier(config)?.verify(token, now_ms()) {
        Ok(identity) => identity,
        Err(e) => return Response::error(e.to_string(), 401),
    };
    let name = RoomRef::new(identity.tenant, room).key();
    room_object(env, &name)?.fetch_with_request(req).await
}

/// Whether `req` says its body is over the API's limit (the object reading it checks again).
fn too_big(req: &Request) -> Result<bool> {
    Ok(req
        .headers()
        .get("Content-Length")?
        .and_then(|n| n.parse::<usize>().ok())
        .is_some_and(|n| n > http::MAX_BODY_BYTES))
}

/// `GET|POST /rooms/{room}/messages`, `POST /rooms/{room}/uploads`,
/// `GET /rooms/{room}/attachments/{id}`: to the room's object.
async fn room_api(req: Request, env: &Env, config: &EdgeConfig, room: &str) -> Result<Response> {
    if let Err(r) = validate_name("room", room) {
        return json_reply(&HttpReply::rejection(r));
    }
    if too_big(&req)? {
        return json_reply(&http::payload_too_large());
    }
    let authorization = req.headers().get("Authorization")?;
    let identity =
        match http::bearer_identity(&verifier(config)?, authorization.as_deref(), now_ms()) {
            Ok(identity) => identity,
            Err(reply) => return json_reply(&reply),
        };
    let name = RoomRef::new(identity.tenant, room).key();
    room_object(env, &name)?.fetch_with_request(req).await
}

/// `/events/endpoints…`: to the events object of the bearer token's tenant, which answers with
/// the core's endpoints API (role `service` only).
async fn endpoints(req: Request, env: &Env, config: &EdgeConfig) -> Result<Response> {
    let authorization = req.headers().get("Authorization")?;
    let identity =
        match http::bearer_identity(&verifier(config)?, authorization.as_deref(), now_ms()) {
            Ok(identity) => identity,
            Err(reply) => return json_reply(&reply),
        };
    tenant_object(env, &identity.tenant)?
        .fetch_with_request(req)
        .await
}

/// `POST /embed/token`: to the events object of the publishable key's tenant, whose service
/// answers it (the key's and the address's rate limits, the tenant's blocks and agents are that
/// object's). The Worker reads the key to find the object, and answers alone only what it cannot
/// route: a body that is no token request, or an unknown key.
async fn embed_token(req: Request, env: &Env, config: &EdgeConfig) -> Result<Response> {
    if req.method() != Method::Post {
        return json_reply(&http::method_not_allowed());
    }
    if too_big(&req)? {
        return json_reply(&http::payload_too_large());
    }
    // A copy of the body is read; the request goes on with its own.
    let body = req.clone()?.bytes().await?;
    let tenant = match http::embed_tenant(&config.settings.service.embed.keys, &body) {
        Ok(tenant) => tenant,
        Err(reply) => return json_reply(&reply),
    };
    tenant_object(env, &tenant)?.fetch_with_request(req).await
}
