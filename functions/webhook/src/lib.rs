//! The webhook sender every deployment with tokio uses (the local server's delivery task, the
//! AWS delivery function): one signed Standard Webhooks POST per [`WebhookClient::send`], over
//! HTTP/1 with TLS (rustls, the system's roots) or plain HTTP, through [`CheckedResolver`].
//! What to send and what an answer means are the core's ([`roomcast_core::events`]); this
//! crate only does the HTTP.
//!
//! Addresses are checked at delivery too: a host whose DNS later points at a private address is
//! refused then (outside development mode), and the connection goes to the addresses checked,
//! so rebinding between check and connect cannot walk around it. Redirects are not followed
//! (hyper's client never does).

use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::connect::dns::Name;
use hyper_util::rt::TokioExecutor;
use roomcast_core::events::delivery::parse_retry_after;
use roomcast_core::events::endpoint::{AddressClass, EndpointRules, classify};
use roomcast_core::events::signing::sign;
use roomcast_core::events::{AttemptResult, Endpoint, Event};
use roomcast_core::service::Resolver;

/// Response bytes read (and discarded) before the connection is dropped.
const MAX_RESPONSE_BYTES: usize = 64 * 1024;

/// The `user-agent` of every delivery.
pub const USER_AGENT: &str = concat!("roomcast-webhooks/", env!("CARGO_PKG_VERSION"));

/// The sender could not be built.
#[derive(Debug, thiserror::Error)]
#[error("webhook client: {0}")]
pub struct ClientError(String);

/// Resolves endpoint hosts with the system resolver and refuses addresses the rules forbid.
#[derive(Clone)]
pub struct CheckedResolver {
    rules: Arc<EndpointRules>,
}

impl CheckedResolver {
    /// A resolver under `rules`.
    pub fn new(rules: EndpointRules) -> Self {
        Self {
            rules: Arc::new(rules),
        }
    }

    fn allowed(&self, address: IpAddr) -> Result<(), String> {
        match classify(address) {
            Some(class)
                if !(self.rules.development && AddressClass::allowed_in_development(class)) =>
            {
                Err(format!("{address} is a {class:?} address"))
            }
            _ => Ok(()),
        }
    }
}

#[async_trait::async_trait]
impl Resolver for CheckedResolver {
    async fn resolve(&self, host: &str, port: u16) -> Result<Vec<IpAddr>, String> {
        let found = tokio::net::lookup_host((host, port))
            .await
            .map_err(|e| e.to_string())?;
        Ok(found.map(|a| a.ip()).collect())
    }
}

/// hyper's DNS hook: every address must pass, and only those are connected to.
impl tower_service::Service<Name> for CheckedResolver {
    type Response = std::vec::IntoIter<SocketAddr>;
    type Error = std::io::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, name: Name) -> Self::Future {
        let this = self.clone();
        Box::pin(async move {
            let found: Vec<SocketAddr> =
                tokio::net::lookup_host((name.as_str(), 0)).await?.collect();
            for address in &found {
                this.allowed(address.ip())
                    .map_err(|e| std::io::Error::new(std::io::ErrorKind::PermissionDenied, e))?;
            }
            Ok(found.into_iter())
        })
    }
}

type HttpsClient =
    Client<hyper_rustls::HttpsConnector<HttpConnector<CheckedResolver>>, Full<Bytes>>;

/// Sends deliveries; cheap to clone (one connection pool).
#[derive(Clone)]
pub struct WebhookClient {
    client: HttpsClient,
    timeout: Duration,
}

impl WebhookClient {
    /// A client whose connections go through a [`CheckedResolver`] under `rules`, each attempt
    /// given up after `timeout` (connecting included).
    pub fn new(rules: EndpointRules, timeout: Duration) -> Result<Self, ClientError> {
        let mut http = HttpConnector::new_with_resolver(CheckedResolver::new(rules));
        http.enforce_http(false);
        http.set_connect_timeout(Some(timeout));
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_provider_and_native_roots(rustls::crypto::ring::default_provider())
            .map_err(|e| ClientError(e.to_string()))?
            .https_or_http()
            .enable_http1()
            .wrap_connector(http);
        Ok(Self {
            client: Client::builder(TokioExecutor::new()).build(https),
            timeout,
        })
    }

    /// One attempt: `event` POSTed to `endpoint`, signed at `now_ms` with every secret the
    /// endpoint signs with then. Its status (and `Retry-After`), a timeout, or no connection.
    pub async fn send(&self, endpoint: &Endpoint, event: &Event, now_ms: u64) -> AttemptResult {
        let body = event.to_json();
        let headers = sign(
            &endpoint.signing_secrets(now_ms),
            &event.id,
            now_ms,
            body.as_bytes(),
        );
        let request = hyper::Request::post(endpoint.url.as_str())
            .header("content-type", "application/json")
            .header("user-agent", USER_AGENT);
        let request = headers
            .pairs()
            .into_iter()
            .fold(request, |r, (name, value)| r.header(name, value))
            .body(Full::new(Bytes::from(body)));
        match request {
            Ok(request) => self.post(request).await,
            // An endpoint URL that does not make a request (stored before a check existed)
            // cannot be delivered to: a final answer.
            Err(_) => AttemptResult::Status {
                code: 400,
                retry_after_ms: None,
            },
        }
    }

    async fn post(&self, request: hyper::Request<Full<Bytes>>) -> AttemptResult {
        let exchange = async {
            let response = self.client.request(request).await.map_err(|e| {
                tracing::debug!(error = %e, "webhook endpoint unreachable");
            })?;
            let code = response.status().as_u16();
            let retry_after_ms = response
                .headers()
                .get("retry-after")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| parse_retry_after(v, wall_clock_ms()));
            // Read a bounded part of the body so the connection can be reused; the rest is
            // dropped.
            let mut body = response.into_body();
            let mut read = 0;
            while read < MAX_RESPONSE_BYTES {
                match body.frame().await {
                    Some(Ok(frame)) => read += frame.data_ref().map_or(0, |d| d.len()),
                    _ => break,
                }
            }
            Ok::<_, ()>(AttemptResult::Status {
                code,
                retry_after_ms,
            })
        };
        match tokio::time::timeout(self.timeout, exchange).await {
            Err(_) => AttemptResult::Timeout,
            Ok(Err(())) => AttemptResult::Unreachable,
            Ok(Ok(result)) => result,
        }
    }
}

/// `Retry-After` as an HTTP date is relative to the wall clock when the answer arrives.
fn wall_clock_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}
