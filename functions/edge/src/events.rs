//! API Gateway-shaped events for the core's `handle_event`, built from Durable Object events
//! (pure, unit-tested on the host). The edge build runs exactly the route code the Lambda
//! functions and the local server run.

use std::collections::HashMap;

use roomcast_core::event::{WsEvent, WsIdentity, WsRequestContext, select_route};
use roomcast_core::protocol::ErrorCode;

/// `requestContext.stage` and `apiId` of edge events.
pub const STAGE: &str = "edge";

/// What a connect request carried.
#[derive(Debug, Clone, Default)]
pub struct ConnectRequest {
    /// Headers, lower-case names.
    pub headers: HashMap<String, String>,
    /// Query parameters (decoded).
    pub query: HashMap<String, String>,
    /// `Host`.
    pub host: String,
    /// Client address (`CF-Connecting-IP`).
    pub source_ip: Option<String>,
}

fn context(
    event_type: &str,
    route_key: &str,
    conn_id: &str,
    connected_at: u64,
    now_ms: u64,
) -> WsRequestContext {
    WsRequestContext {
        route_key: route_key.to_owned(),
        event_type: event_type.to_owned(),
        connection_id: conn_id.to_owned(),
        connected_at,
        request_time_epoch: now_ms,
        stage: STAGE.to_owned(),
        api_id: STAGE.to_owned(),
        ..WsRequestContext::default()
    }
}

/// The `CONNECT` event of a new connection.
pub fn connect_event(conn_id: &str, now_ms: u64, request: ConnectRequest) -> WsEvent {
    let mut ctx = context("CONNECT", "$connect", conn_id, now_ms, now_ms);
    ctx.domain_name = request.host;
    ctx.identity = WsIdentity {
        source_ip: request.source_ip,
        user_agent: request.headers.get("user-agent").cloned(),
    };
    WsEvent {
        request_context: ctx,
        headers: Some(request.headers),
        query_string_parameters: Some(request.query),
        ..WsEvent::default()
    }
}

/// A `MESSAGE` event: a text frame, or (`text` `None`) a binary one.
pub fn message_event(conn_id: &str, connected_at: u64, now_ms: u64, text: Option<&str>) -> WsEvent {
    let route = text.map_or("$default", select_route);
    let mut ctx = context("MESSAGE", route, conn_id, connected_at, now_ms);
    ctx.message_id = Some(format!("{conn_id}-{now_ms}"));
    WsEvent {
        request_context: ctx,
        body: text.map(str::to_owned),
        is_base64_encoded: text.is_none(),
        ..WsEvent::default()
    }
}

/// The `DISCONNECT` event; `code` is the client's close code when the client closed.
pub fn disconnect_event(
    conn_id: &str,
    connected_at: u64,
    now_ms: u64,
    code: Option<u16>,
) -> WsEvent {
    let mut ctx = context("DISCONNECT", "$disconnect", conn_id, connected_at, now_ms);
    ctx.disconnect_status_code = code;
    WsEvent {
        request_context: ctx,
        ..WsEvent::default()
    }
}

/// A connection id: 12 random bytes in hex (24 characters, safe as a socket tag).
pub fn connection_id(random: [u8; 12]) -> String {
    random.iter().map(|b| format!("{b:02x}")).collect()
}

/// The HTTP status refusing an upgrade whose implicit join was rejected with `code`.
pub fn join_refusal_status(code: ErrorCode) -> u16 {
    match code {
        ErrorCode::Forbidden | ErrorCode::NotMember => 403,
        ErrorCode::RateLimited | ErrorCode::LimitExceeded => 429,
        ErrorCode::Unavailable => 503,
        ErrorCode::BadFrame
        | ErrorCode::UnknownAction
        | ErrorCode::Invalid
        | ErrorCode::TooLarge
        | ErrorCode::NotFound
        | ErrorCode::Conflict => 400,
    }
}

/// The code to answer a client's close with: its own, except the codes that must not be sent
/// (1005 no status, 1006 abnormal, 1015 TLS) and out-of-range ones, answered with 1000.
pub fn reply_close_code(code: usize) -> u16 {
    u16::try_from(code)
        .ok()
        .filter(|c| matches!(c, 1000..=1004 | 1007..=1014 | 3000..=4999))
        .unwrap_or(1000)
}

/// The client's close code as `disconnectStatusCode` (none for the pseudo-codes 1005/1006).
pub fn disconnect_code(code: usize) -> Option<u16> {
    u16::try_from(code)
        .ok()
        .filter(|c| !matches!(c, 1005 | 1006 | 1015))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_have_the_api_gateway_shape() {
        let request = ConnectRequest {
            headers: HashMap::from([("user-agent".to_owned(), "ua".to_owned())]),
            query: HashMap::from([("token".to_owned(), "a.b.c".to_owned())]),
            host: "127.0.0.1:8787".into(),
            source_ip: Some("127.0.0.1".into()),
        };
        let ev = connect_event("c1", 5, request);
        assert_eq!(
            roomcast_core::event::connect_credentials(&ev),
            (Some("a.b.c".into()), None)
        );
        assert_eq!(
            ev.request_context.identity.user_agent.as_deref(),
            Some("ua")
        );
        let ev = message_event("c1", 5, 9, Some(r#"{"action":"typing"}"#));
        assert_eq!(
            (
                ev.request_context.route_key.as_str(),
                ev.request_context.request_time_epoch
            ),
            ("typing", 9)
        );
        assert!(message_event("c1", 5, 9, None).is_base64_encoded);
        let ev = disconnect_event("c1", 5, 9, disconnect_code(1006));
        assert_eq!(ev.request_context.disconnect_status_code, None);
    }

    #[test]
    fn ids_and_codes() {
        assert_eq!(connection_id([0xab; 12]).len(), 24);
        assert_eq!(reply_close_code(1005), 1000);
        assert_eq!(reply_close_code(4001), 4001);
        assert_eq!(reply_close_code(70_000), 1000);
        assert_eq!(disconnect_code(1000), Some(1000));
        assert_eq!(join_refusal_status(ErrorCode::Forbidden), 403);
    }
}
