//! Forwarding mode: instead of running the chat service in-process, the server hands each route
//! event to a Lambda function through the Lambda Invoke API, as API Gateway's route integrations
//! do. `cargo lambda watch` serves that API on `127.0.0.1:9000`, so the real function binaries of
//! `functions/aws` run behind this emulator; they answer clients by posting to this server's
//! `@connections` endpoint.

use axum::body::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use roomcast_apigw::{WsEvent, WsResponse};

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
        let url = format!(
            "{}/2015-03-31/functions/{function}/invocations",
            self.endpoint
        );
        let payload = serde_json::to_vec(event).map_err(|e| ForwardError::Invoke(e.to_string()))?;
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
        serde_json::from_slice(&body).map_err(|e| ForwardError::BadResponse(format!("{e}: {text}")))
    }
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
