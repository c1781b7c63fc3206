//! The URL paths only the edge build serves (pure, unit-tested on the host). The HTTP API's
//! paths (`/health`, `/rooms/{room}/messages`, `/uploads/{token}`, …) are the core's
//! `http::route`.

use roomcast_core::http::percent_decode;

/// A path of the edge build's own.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EdgeRoute {
    /// `GET /rooms/{room}/ws`: a WebSocket bound to the room (percent-decoded).
    Socket(String),
    /// A socket path whose room segment is not valid percent-encoded UTF-8.
    BadSocketRoom,
    /// `POST /__dev/conformance`: the store conformance suites inside a Durable Object.
    DevConformance,
    /// `POST /__dev/fault?room={room}&kind={kind}`: a fault injected into the object of the
    /// bearer token's tenant and `room` (see `dev.rs`).
    DevFault,
    /// `POST /__relay/record`: a message another room's object records here (the support
    /// desk's inbox notices). Objects serve it; the Worker never forwards it.
    Relay,
    /// `POST /__relay/offer`: another room's object freed an agent's capacity, and this room's
    /// waiting conversation is to be offered (the core's `RoomRelay::offer`). Objects serve it;
    /// the Worker never forwards it.
    RelayOffer,
    /// `POST /__relay/eject`: a visitor was blocked, and their sockets in this room's object are
    /// to be closed (the core's `RoomRelay::eject`). Objects serve it; the Worker never
    /// forwards it.
    RelayEject,
    /// `GET /__events/endpoints`: a tenant's endpoints (and the operator's), asked of the
    /// tenant's events object by its room objects. Never forwarded by the Worker.
    EventsEndpoints,
    /// `POST /__events/dispatch`: deliveries a room object hands to its tenant's events
    /// object. Never forwarded by the Worker.
    EventsDispatch,
    /// `POST /__tenant/quota`: an upload slot a room object charges against its tenant's
    /// per-day quotas, in the tenant's events object (`uploads.rs`). Never forwarded by the
    /// Worker.
    TenantQuota,
    /// `POST /__tenant/desk`: a read or compare-and-set of the tenant's support desk records,
    /// which a room object asks of its tenant's events object (`desk.rs`). Never forwarded by
    /// the Worker.
    TenantDesk,
}

/// The edge route of `path` (the URL path, still percent-encoded); `None` for any other path,
/// which is the HTTP API's to answer.
pub fn edge_route(path: &str) -> Option<EdgeRoute> {
    let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    match segments.as_slice() {
        ["rooms", room, "ws"] => {
            Some(percent_decode(room).map_or(EdgeRoute::BadSocketRoom, EdgeRoute::Socket))
        }
        ["__dev", "conformance"] => Some(EdgeRoute::DevConformance),
        ["__dev", "fault"] => Some(EdgeRoute::DevFault),
        ["__relay", "record"] => Some(EdgeRoute::Relay),
        ["__relay", "offer"] => Some(EdgeRoute::RelayOffer),
        ["__relay", "eject"] => Some(EdgeRoute::RelayEject),
        ["__events", "endpoints"] => Some(EdgeRoute::EventsEndpoints),
        ["__events", "dispatch"] => Some(EdgeRoute::EventsDispatch),
        ["__tenant", "quota"] => Some(EdgeRoute::TenantQuota),
        ["__tenant", "desk"] => Some(EdgeRoute::TenantDesk),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths() {
        assert_eq!(
            edge_route("/rooms/lobby/ws"),
            Some(EdgeRoute::Socket("lobby".into()))
        );
        assert_eq!(
            edge_route("/rooms/a%3Ab%40c/ws"),
            Some(EdgeRoute::Socket("a:b@c".into()))
        );
        assert_eq!(edge_route("/rooms/%zz/ws"), Some(EdgeRoute::BadSocketRoom));
        assert_eq!(edge_route("/rooms/%ff/ws"), Some(EdgeRoute::BadSocketRoom));
        assert_eq!(
            edge_route("/__dev/conformance"),
            Some(EdgeRoute::DevConformance)
        );
        assert_eq!(edge_route("/__dev/fault"), Some(EdgeRoute::DevFault));
        assert_eq!(edge_route("/__relay/record"), Some(EdgeRoute::Relay));
        assert_eq!(edge_route("/__relay/offer"), Some(EdgeRoute::RelayOffer));
        assert_eq!(edge_route("/__relay/eject"), Some(EdgeRoute::RelayEject));
        assert_eq!(
            edge_route("/__events/endpoints"),
            Some(EdgeRoute::EventsEndpoints)
        );
        assert_eq!(
            edge_route("/__events/dispatch"),
            Some(EdgeRoute::EventsDispatch)
        );
        assert_eq!(edge_route("/__tenant/quota"), Some(EdgeRoute::TenantQuota));
        assert_eq!(edge_route("/__tenant/desk"), Some(EdgeRoute::TenantDesk));
        for api in [
            "/health",
            "/rooms/lobby/messages",
            "/rooms/a/b/ws",
            "/rooms/lobby",
            "/events/endpoints",
            "/rooms/lobby/uploads",
            "/uploads/abc.def",
            "/files/abc.def",
            "/",
        ] {
            assert_eq!(edge_route(api), None, "{api}");
        }
    }
}
