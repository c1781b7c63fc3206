//! # roomcast-apigw
//!
//! The API Gateway WebSocket contract as an adapter of the core service: the proxy event a route
//! integration receives ([`WsEvent`]), the response it returns ([`WsResponse`]), API Gateway's
//! route selection on `$request.body.action` ([`select_route`]), and [`handle_event`], which
//! translates one event into the core's typed front door (`connect`, `frame`, `disconnect`).
//!
//! The Lambda functions (`functions/aws`) receive these events from API Gateway; the local
//! server builds them only to emulate API Gateway in front of those functions
//! (`--lambda-endpoint`, [`emulated`]). The core service never sees an event.

use std::collections::HashMap;

use roomcast_core::service::{ChatService, FrameOutcome, Inbound, Upgrade};
use serde::{Deserialize, Serialize};

/// Routes with their own integration; every other action goes to `$default`.
pub const ROUTES: &[&str] = &["message", "typing"];

/// `requestContext.identity`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WsIdentity {
    /// Client address.
    #[serde(default)]
    pub source_ip: Option<String>,
    /// Client `User-Agent`.
    #[serde(default)]
    pub user_agent: Option<String>,
}

/// `requestContext` of a WebSocket proxy event.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WsRequestContext {
    /// `$connect`, `$disconnect`, `$default` or a custom route.
    pub route_key: String,
    /// `CONNECT`, `MESSAGE` or `DISCONNECT`.
    pub event_type: String,
    /// The connection id (URL-encode it in `@connections` paths).
    pub connection_id: String,
    /// When the connection opened, epoch milliseconds.
    pub connected_at: u64,
    /// When this request arrived, epoch milliseconds: the service's `now`.
    pub request_time_epoch: u64,
    /// Request id.
    #[serde(default)]
    pub request_id: String,
    /// Host the client connected to.
    #[serde(default)]
    pub domain_name: String,
    /// Stage name.
    #[serde(default)]
    pub stage: String,
    /// API id.
    #[serde(default)]
    pub api_id: String,
    /// Caller identity.
    #[serde(default)]
    pub identity: WsIdentity,
    /// Message id (MESSAGE events).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message_id: Option<String>,
    /// Close code (DISCONNECT events).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disconnect_status_code: Option<u16>,
    /// Close reason (DISCONNECT events).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disconnect_reason: Option<String>,
}

/// An API Gateway WebSocket proxy event (`ApiGatewayWebsocketProxyRequest`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WsEvent {
    /// Request context.
    pub request_context: WsRequestContext,
    /// Headers (CONNECT only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub headers: Option<HashMap<String, String>>,
    /// Query string (CONNECT only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub query_string_parameters: Option<HashMap<String, String>>,
    /// Frame text (MESSAGE only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body: Option<String>,
    /// True for binary frames.
    #[serde(default)]
    pub is_base64_encoded: bool,
}

/// What a route integration returns.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WsResponse {
    /// 200 accepts a `$connect`; anything else refuses the upgrade with that status.
    pub status_code: u16,
    /// Response headers (`Sec-WebSocket-Protocol` on `$connect`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub headers: Option<HashMap<String, String>>,
    /// Body (the refusal reason).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body: Option<String>,
}

impl WsResponse {
    /// A response with `status_code` and, optionally, a body (the refusal reason).
    pub fn status(status_code: u16, body: Option<String>) -> Self {
        Self {
            status_code,
            headers: None,
            body,
        }
    }
}

/// API Gateway's route selection on `$request.body.action`: the action when a route of that
/// name exists, else `$default` (also for frames that are not JSON objects).
pub fn select_route(body: &str) -> &'static str {
    #[derive(Deserialize)]
    struct Action<'a> {
        #[serde(borrow)]
        action: Option<std::borrow::Cow<'a, str>>,
    }
    // Only an object has `$request.body.action`: serde would also read a struct from an array
    // (`["message"]`), which API Gateway sends to `$default`.
    let object = body
        .trim_start_matches([' ', '\t', '\n', '\r'])
        .starts_with('{');
    object
        .then(|| serde_json::from_str::<Action<'_>>(body).ok())
        .flatten()
        .and_then(|a| a.action)
        .and_then(|a| ROUTES.iter().find(|r| **r == a).copied())
        .unwrap_or("$default")
}

fn header<'a>(headers: Option<&'a HashMap<String, String>>, name: &str) -> Option<&'a str> {
    headers?
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

/// What a `CONNECT` event's request carried for the service: the `token` query parameter, the
/// `Sec-WebSocket-Protocol` header and the `Origin` header.
pub fn upgrade(event: &WsEvent) -> Upgrade<'_> {
    Upgrade {
        token_param: event
            .query_string_parameters
            .as_ref()
            .and_then(|q| q.get("token"))
            .map(String::as_str),
        protocols: header(event.headers.as_ref(), "sec-websocket-protocol"),
        origin: header(event.headers.as_ref(), "origin"),
    }
}

/// Runs one route event through the service, as a route integration does.
pub async fn handle_event(service: &ChatService, event: &WsEvent) -> Routed {
    let ctx = &event.request_context;
    let now = ctx.request_time_epoch;
    let response = |response| Routed {
        response,
        outcome: FrameOutcome::default(),
    };
    match ctx.event_type.as_str() {
        "CONNECT" => match service
            .connect(&ctx.connection_id, upgrade(event), now)
            .await
        {
            Ok(accepted) => response(WsResponse {
                status_code: 200,
                headers: accepted
                    .subprotocol
                    .map(|p| HashMap::from([("Sec-WebSocket-Protocol".to_owned(), p)])),
                body: None,
            }),
            Err(refusal) => response(WsResponse::status(refusal.status, Some(refusal.reason))),
        },
        "DISCONNECT" => {
            service.disconnect(&ctx.connection_id, now).await;
            response(WsResponse::status(200, None))
        }
        "MESSAGE" => {
            let inbound = if event.is_base64_encoded {
                Inbound::Binary
            } else {
                Inbound::Text(event.body.as_deref().unwrap_or(""))
            };
            Routed {
                response: WsResponse::status(200, None),
                outcome: service.frame(&ctx.connection_id, inbound, now).await,
            }
        }
        other => response(WsResponse::status(
            400,
            Some(format!("unknown eventType `{other}`")),
        )),
    }
}

/// What [`handle_event`] did: the integration response, and for a frame, its outcome (for
/// metrics and logs).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Routed {
    /// What the route integration returns to API Gateway.
    pub response: WsResponse,
    /// The frame's outcome (default for connect and disconnect).
    pub outcome: FrameOutcome,
}

/// Events as API Gateway would build them, for an emulator that sits where API Gateway does
/// (the local server in front of `cargo lambda watch`).
pub mod emulated {
    use std::collections::HashMap;

    use super::{WsEvent, WsIdentity, WsRequestContext, select_route};

    /// What an emulator knows of one connection.
    #[derive(Debug, Clone, Default)]
    pub struct Socket {
        /// The connection id.
        pub id: String,
        /// When it connected, epoch milliseconds.
        pub connected_at_ms: u64,
        /// `Host` of the upgrade request.
        pub domain: String,
        /// Stage name.
        pub stage: String,
        /// Client address.
        pub source_ip: String,
        /// Client `User-Agent`.
        pub user_agent: Option<String>,
    }

    impl Socket {
        fn context(
            &self,
            route_key: &str,
            event_type: &str,
            request_id: String,
            now_ms: u64,
        ) -> WsRequestContext {
            WsRequestContext {
                route_key: route_key.to_owned(),
                event_type: event_type.to_owned(),
                connection_id: self.id.clone(),
                connected_at: self.connected_at_ms,
                request_time_epoch: now_ms,
                request_id,
                domain_name: self.domain.clone(),
                stage: self.stage.clone(),
                api_id: "local".to_owned(),
                identity: WsIdentity {
                    source_ip: Some(self.source_ip.clone()),
                    user_agent: self.user_agent.clone(),
                },
                ..WsRequestContext::default()
            }
        }

        /// The `$connect` event of the upgrade request with these headers and query.
        pub fn connect(
            &self,
            request_id: String,
            now_ms: u64,
            headers: HashMap<String, String>,
            query: HashMap<String, String>,
        ) -> WsEvent {
            WsEvent {
                request_context: self.context("$connect", "CONNECT", request_id, now_ms),
                headers: Some(headers),
                query_string_parameters: Some(query),
                ..WsEvent::default()
            }
        }

        /// The event of a text frame, on the route API Gateway would select.
        pub fn message(&self, request_id: String, now_ms: u64, body: &str) -> WsEvent {
            let mut context =
                self.context(select_route(body), "MESSAGE", request_id.clone(), now_ms);
            context.message_id = Some(request_id);
            WsEvent {
                request_context: context,
                body: Some(body.to_owned()),
                ..WsEvent::default()
            }
        }

        /// The `$disconnect` event; `code` is the client's close code when the client closed.
        pub fn disconnect(&self, request_id: String, now_ms: u64, code: Option<u16>) -> WsEvent {
            let mut context = self.context("$disconnect", "DISCONNECT", request_id, now_ms);
            context.disconnect_status_code = code;
            WsEvent {
                request_context: context,
                ..WsEvent::default()
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn route_selection() {
        assert_eq!(
            select_route(r#"{"action":"message","room":"r"}"#),
            "message"
        );
        assert_eq!(select_route(r#"{"action":"typing"}"#), "typing");
        assert_eq!(select_route(r#"{"action":"join"}"#), "$default");
        assert_eq!(select_route("not json"), "$default");
        assert_eq!(select_route(r#"{"room":"r"}"#), "$default");
        assert_eq!(select_route(" \n{\"action\":\"typing\"}"), "typing");
        // Found by the `frame` fuzz target: serde reads a struct from an array too.
        assert_eq!(select_route(r#"["message"]"#), "$default");
        assert_eq!(select_route(r#"[{"action":"message"}]"#), "$default");
    }

    fn connect_event(header: Option<(&str, &str)>, token: Option<&str>) -> WsEvent {
        WsEvent {
            headers: header.map(|(k, v)| HashMap::from([(k.to_owned(), v.to_owned())])),
            query_string_parameters: token
                .map(|t| HashMap::from([("token".to_owned(), t.to_owned())])),
            ..WsEvent::default()
        }
    }

    #[test]
    fn upgrade_from_query_and_any_case_of_the_protocol_header() {
        let ev = connect_event(None, Some("q.t.k"));
        assert_eq!(upgrade(&ev).token(), Some("q.t.k"));
        let ev = connect_event(
            Some(("sec-websocket-protocol", "roomcast.v1, aa.bb.cc")),
            None,
        );
        assert_eq!(
            (upgrade(&ev).token(), upgrade(&ev).subprotocol()),
            (Some("aa.bb.cc"), Some("roomcast.v1"))
        );
        let ev = connect_event(Some(("Sec-WebSocket-Protocol", "aa.bb.cc")), None);
        assert_eq!(upgrade(&ev).token(), Some("aa.bb.cc"));
    }

    #[test]
    fn event_json_matches_api_gateway() {
        let json = r#"{"requestContext":{"routeKey":"$connect","eventType":"CONNECT","connectionId":"abc=",
            "connectedAt":1700000000000,"requestTimeEpoch":1700000000123,"domainName":"x.execute-api.eu-west-1.amazonaws.com",
            "stage":"prod","apiId":"x","requestId":"r","identity":{"sourceIp":"1.2.3.4","userAgent":"ua"},
            "extendedRequestId":"e","messageDirection":"IN"},
            "headers":{"Host":"x"},"queryStringParameters":{"token":"t"},"isBase64Encoded":false}"#;
        let ev: WsEvent = serde_json::from_str(json).unwrap();
        assert_eq!(ev.request_context.connected_at, 1_700_000_000_000);
        assert_eq!(ev.request_context.request_time_epoch, 1_700_000_000_123);
        assert_eq!(
            ev.request_context.identity.source_ip.as_deref(),
            Some("1.2.3.4")
        );
        let back = serde_json::to_value(&ev).unwrap();
        assert_eq!(back["requestContext"]["connectionId"], "abc=");
    }
}
