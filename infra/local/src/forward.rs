//! Forwarding mode: instead of running the chat service in-process, the server hands each route
//! event to a Lambda function through the Lambda Invoke API, as API Gateway's route integrations
//! do. `cargo lambda watch` serves that API on `127.0.0.1:9000`, so the real function binaries of
//! `functions/aws` run behind this emulator; they answer clients by posting to this server's
//! `@connections` endpoint. HTTP API requests go to the `http` function the same way, as API
//! Gateway's HTTP API passes them (payload format 2.0).

use std::collections::BTreeMap;

use axum::body::Bytes;
use base64::Engine as _;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use roomcast_apigw::{WsEvent, WsResponse};
use serde::Deserialize;
use serde_json::json;

/// Why an invocation failed.
#[derive(Debug, thiserror::Error)]
pub enum ForwardError {
    /// The invoke endpoint could not be reached or answered with a non-2xx status.
    #[error("invoke failed: {0}")]
    Invoke(String),
    /// The function raised an error (`X-Amz-Function-Error`).
    #[error("function error: {0}")]
    Function(String),
    /// The function returned something that is not a route response.
    #[error("bad function response: {0}")]
    BadResponse(String),
}

/// The function a route key invokes (one `[[bin]]` per route in `functions/aws`).
pub fn function_for_route(route_key: &str) -> &'static str {
    match route_key {
        "$connect" => "connect",
        "$disconnect" => "disconnect",
        "message" => "message",
        "typing" => "typing",
        _ => "default",
    }
}

/// Invokes functions at a Lambda Invoke API endpoint.
pub struct LambdaForwarder {
    endpoint: String,
    client: Client<HttpConnector, Full<Bytes>>,
}

impl LambdaForwarder {
    /// A forwarder to `endpoint` (e.g. `http://127.0.0.1:9000`).
    pub fn new(endpoint: &str) -> Self {
        Self {
            endpoint: endpoint.trim_end_matches('/').to_owned(),
            client: Client::builder(TokioExecutor::new()).build_http(),
        }
    }

    /// Invokes the route's function with `event` and returns its response.
    pub async fn invoke(&self, event: &WsEvent) -> Result<WsResponse, ForwardError> {
        let function = function_for_route(&event.request_context.route_key);
        let payload = serde_json::to_vec(event).map_err(|e| ForwardError::Invoke(e.to_string()))?;
        let body = self.invoke_function(function, payload).await?;
        serde_json::from_slice(&body).map_err(|e| {
            ForwardError::BadResponse(format!("{e}: {}", String::from_utf8_lossy(&body)))
        })
    }

    /// Invokes the `http` function with `request` as API Gateway's HTTP API passes it
    /// (payload format 2.0) and returns its response.
    pub async fn invoke_http(
        &self,
        request: &HttpApiRequest<'_>,
    ) -> Result<HttpApiResponse, ForwardError> {
        let (body, encoded) = match std::str::from_utf8(request.body) {
            Ok(text) => (text.to_owned(), false),
            Err(_) => (
                base64::engine::general_purpose::STANDARD.encode(request.body),
                true,
            ),
        };
        let event = json!({
            "version": "2.0",
            "routeKey": "$default",
            "rawPath": request.path,
            "rawQueryString": request.query.unwrap_or_default(),
            "headers": request.headers,
            "requestContext": {
                "accountId": "000000000000",
                "apiId": "local",
                "domainName": "localhost",
                "domainPrefix": "localhost",
                "http": {
                    "method": request.method,
                    "path": request.path,
                    "protocol": "HTTP/1.1",
                    "sourceIp": request.source_ip,
                    "userAgent": request.headers.get("user-agent").cloned().unwrap_or_default(),
                },
                "requestId": request.request_id,
                "routeKey": "$default",
                "stage": "$default",
                "time": "",
                "timeEpoch": request.now_ms,
            },
            "body": body,
            "isBase64Encoded": encoded,
        });
        let payload =
            serde_json::to_vec(&event).map_err(|e| ForwardError::Invoke(e.to_string()))?;
        let body = self.invoke_function("http", payload).await?;
        serde_json::from_slice(&body).map_err(|e| {
            ForwardError::BadResponse(format!("{e}: {}", String::from_utf8_lossy(&body)))
        })
    }

    /// One invocation of `function` with `payload`: the function's result.
    async fn invoke_function(
        &self,
        function: &str,
        payload: Vec<u8>,
    ) -> Result<Bytes, ForwardError> {
        let url = format!(
            "{}/2015-03-31/functions/{function}/invocations",
            self.endpoint
        );
        let request = hyper::Request::post(&url)
            .header("content-type", "application/json")
            .body(Full::new(Bytes::from(payload)))
            .map_err(|e| ForwardError::Invoke(e.to_string()))?;
        let response = self
            .client
            .request(request)
            .await
            .map_err(|e| ForwardError::Invoke(format!("{url}: {e}")))?;
        let status = response.status();
        let function_error = response.headers().get("x-amz-function-error").is_some();
        let body = response
            .into_body()
            .collect()
            .await
            .map_err(|e| ForwardError::Invoke(e.to_string()))?
            .to_bytes();
        let text = String::from_utf8_lossy(&body);
        if !status.is_success() {
            return Err(ForwardError::Invoke(format!(
                "{url}: HTTP {status}: {text}"
            )));
        }
        if function_error {
            return Err(ForwardError::Function(text.into_owned()));
        }
        Ok(body)
    }
}

/// An HTTP API request as the forwarder passes it on.
pub struct HttpApiRequest<'a> {
    /// `GET`, `POST`, …
    pub method: &'a str,
    /// The path.
    pub path: &'a str,
    /// The query string, without `?`.
    pub query: Option<&'a str>,
    /// Header names (lower case) and values.
    pub headers: BTreeMap<String, String>,
    /// The body.
    pub body: &'a [u8],
    /// The client's address.
    pub source_ip: String,
    /// A request id.
    pub request_id: String,
    /// When it arrived, epoch ms.
    pub now_ms: u64,
}

/// The `http` function's answer (payload format 2.0).
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HttpApiResponse {
    /// The status.
    pub status_code: u16,
    /// Response headers.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// The body (base64 when `is_base64_encoded`).
    #[serde(default)]
    pub body: String,
    /// Whether `body` is base64.
    #[serde(default)]
    pub is_base64_encoded: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_map_to_the_function_binaries() {
        assert_eq!(function_for_route("$connect"), "connect");
        assert_eq!(function_for_route("$disconnect"), "disconnect");
        assert_eq!(function_for_route("message"), "message");
        assert_eq!(function_for_route("typing"), "typing");
        assert_eq!(function_for_route("$default"), "default");
    }
}
