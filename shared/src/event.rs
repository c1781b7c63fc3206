//! The API Gateway WebSocket contract: route selection on `$request.body.action`, the proxy event
//! a route integration receives, the response it returns, and [`handle_event`], which runs a
//! route against the [`ChatService`]. The local server builds these events for every socket
//! event, and the Lambda functions receive them from API Gateway, so both run the same code path.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use crate::protocol::close;
use crate::service::{ChatService, FrameOutcome};

/// The subprotocol clients may offer next to their token.
pub const SUBPROTOCOL: &str = "roomcast.v1";

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
    fn status(status_code: u16, body: Option<String>) -> Self {
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

/// The connect token and the subprotocol to echo. The token comes from `?token=` or from a
/// `Sec-WebSocket-Protocol` entry shaped like a JWT; when protocols were offered, the response
/// echoes `roomcast.v1` if offered, else the token entry (a browser fails the handshake unless
/// one offered protocol is echoed).
pub fn connect_credentials(event: &WsEvent) -> (Option<String>, Option<String>) {
    let offered: Vec<&str> = header(event.headers.as_ref(), "sec-websocket-protocol")
        .map(|v| {
            v.split(',')
                .map(str::trim)
                .filter(|p| !p.is_empty())
                .collect()
        })
        .unwrap_or_default();
    let protocol_token = offered
        .iter()
        .find(|p| p.matches('.').count() == 2 && **p != SUBPROTOCOL)
        .copied();
    let query_token = event
        .query_string_parameters
        .as_ref()
        .and_then(|q| q.get("token"))
        .map(String::as_str);
    let token = query_token.or(protocol_token).map(str::to_owned);
    let echo = if offered.contains(&SUBPROTOCOL) {
        Some(SUBPROTOCOL.to_owned())
    } else {
        offered.first().map(|p| (*p).to_owned())
    };
    (token, echo)
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
        "CONNECT" => {
            let (token, echo) = connect_credentials(event);
            match service
                .connect(&ctx.connection_id, token.as_deref(), now)
                .await
            {
                Ok(_) => response(WsResponse {
                    status_code: 200,
                    headers: echo
                        .map(|p| HashMap::from([("Sec-WebSocket-Protocol".to_owned(), p)])),
                    body: None,
                }),
                Err(refusal) => response(WsResponse::status(refusal.status, Some(refusal.reason))),
            }
        }
        "DISCONNECT" => {
            service.disconnect(&ctx.connection_id, now).await;
            response(WsResponse::status(200, None))
        }
        "MESSAGE" => {
            if event.is_base64_encoded {
                service.close_unsupported(&ctx.connection_id).await;
                return Routed {
                    response: WsResponse::status(200, None),
                    outcome: FrameOutcome {
                        closed: Some(close::UNSUPPORTED_DATA),
                        ..FrameOutcome::default()
                    },
                };
            }
            let outcome = service
                .frame(&ctx.connection_id, event.body.as_deref().unwrap_or(""), now)
                .await;
            Routed {
                response: WsResponse::status(200, None),
                outcome,
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

impl ChatService {
    /// Binary frames are not part of protocol v1: close with 1003.
    pub async fn close_unsupported(&self, conn_id: &str) {
        self.close_with(
            conn_id,
            close::UNSUPPORTED_DATA,
            "binary frames are not supported",
        )
        .await;
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
    fn credentials_from_query_or_subprotocol() {
        let ev = connect_event(None, Some("q.t.k"));
        assert_eq!(connect_credentials(&ev), (Some("q.t.k".into()), None));
        let ev = connect_event(
            Some(("Sec-WebSocket-Protocol", "roomcast.v1, aa.bb.cc")),
            None,
        );
        assert_eq!(
            connect_credentials(&ev),
            (Some("aa.bb.cc".into()), Some("roomcast.v1".into()))
        );
        let ev = connect_event(Some(("sec-websocket-protocol", "aa.bb.cc")), None);
        assert_eq!(
            connect_credentials(&ev),
            (Some("aa.bb.cc".into()), Some("aa.bb.cc".into()))
        );
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
