//! The Worker: verifies the token (the same rules as everywhere, pure-Rust crypto) to learn the
//! tenant, and routes each request to the `ChatRoom` object of (tenant, room), named
//! `tenant/room`. Every chat decision is the object's, through the core service; the Worker only
//! refuses what it cannot route (no valid token, no valid room name).

use roomcast_core::event::connect_credentials;
use roomcast_core::http::{self as core_http, HttpReply};
use roomcast_core::limits::MAX_WS_MESSAGE_BYTES;
use roomcast_core::store::RoomRef;
use roomcast_core::protocol::validate_name;
use worker::{Context, Env, Request, Response, Result, event};

use crate::config::EdgeConfig;
use crate::events::{ConnectRequest, connect_event};
use crate::relay::room_object as object;
use crate::room::json_reply;
use crate::routes::{Route, route};
use crate::{log, now_ms};

fn not_found() -> Result<Response> {
    json_reply(&HttpReply::error(404, "NOT_FOUND", "no such endpoint"))
}

#[event(fetch)]
async fn fetch(req: Request, env: Env, _ctx: Context) -> Result<Response> {
    let config = match EdgeConfig::from_env(&env) {
        Ok(config) => config,
        Err(e) => {
            worker::console_error!("roomcast: not configured: {e}");
            return Response::error(format!("not configured: {e}"), 500);
        }
    };
    log::init(config.log);
    match route(&req.path()) {
        Route::Health => json_reply(&core_http::health(None)),
        Route::Socket(room) => socket(req, &env, &config, &room).await,
        Route::Messages(room) => messages(req, &env, &config, &room).await,
        Route::DevConformance if config.dev_routes => {
            // `#` is not allowed in tenant names: no real room's object has this name.
            let name = format!("#dev/conformance-{}", now_ms());
            object(&env, &name)?.fetch_with_request(req).await
        }
        Route::BadRoom => json_reply(&HttpReply::error(
            400,
            "INVALID",
            "room is not valid percent-encoded UTF-8",
        )),
        // Relayed records come from objects through stubs, never from clients.
        Route::DevConformance | Route::Relay | Route::NotFound => not_found(),
    }
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
    // The same token extraction the core's `$connect` uses (`?token=` or a subprotocol entry).
    let mut request = ConnectRequest::default();
    for (name, value) in req.headers().entries() {
        request.headers.insert(name.to_ascii_lowercase(), value);
    }
    request.query = req
        .url()?
        .query_pairs()
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    let (token, _) = connect_credentials(&connect_event("", 0, request));
    let verifier = config.verifier().map_err(worker::Error::RustError)?;
    let identity = match verifier.verify(token.as_deref().unwrap_or(""), now_ms()) {
        Ok(identity) => identity,
        Err(e) => return Response::error(e.to_string(), 401),
    };
    let name = RoomRef::new(identity.tenant, room).key();
    object(env, &name)?.fetch_with_request(req).await
}

/// `GET|POST /rooms/{room}/messages`.
async fn messages(req: Request, env: &Env, config: &EdgeConfig, room: &str) -> Result<Response> {
    if let Err(r) = validate_name("room", room) {
        return json_reply(&HttpReply::error(400, r.code.as_str(), &r.message));
    }
    let too_big = req
        .headers()
        .get("Content-Length")?
        .and_then(|n| n.parse::<usize>().ok())
        .is_some_and(|n| n > MAX_WS_MESSAGE_BYTES);
    if too_big {
        return Response::error("request body over 131072 bytes", 413);
    }
    let verifier = config.verifier().map_err(worker::Error::RustError)?;
    let authorization = req.headers().get("Authorization")?;
    let identity = match core_http::bearer_identity(&verifier, authorization.as_deref(), now_ms()) {
        Ok(identity) => identity,
        Err(reply) => return json_reply(&reply),
    };
    let name = RoomRef::new(identity.tenant, room).key();
    object(env, &name)?.fetch_with_request(req).await
}
