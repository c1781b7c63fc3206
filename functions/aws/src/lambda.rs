//! Lambda glue: configuration read once from the environment, SDK clients built once per cold
//! start, and the handlers the function binaries run. Handlers are plain async functions over
//! API Gateway events, so tests call them directly with event fixtures.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use aws_config::SdkConfig;
use roomcast_apigw::{WsEvent, WsRequestContext, WsResponse, handle_event};
use roomcast_core::attachments::{AttachmentPolicy, UploadQuota};
use roomcast_core::auth::TokenVerifier;
use roomcast_core::config::{ConfigError, EventsConfig, LogLevel, Lookup, Settings};
use roomcast_core::events::EndpointRules;
use roomcast_core::http::{self, HttpReply, HttpRequest};
use roomcast_core::service::{
    Attachments, ChatService, Entropy, Events, FrameOutcome, ServiceConfig, sync_operator_endpoint,
};
use roomcast_core::split::SplitPolicy;
use roomcast_core::store::StoreError;
use roomcast_webhook::{CheckedResolver, ClientError, WebhookClient};
use serde_json::json;

use crate::dynamo::{DEFAULT_TABLE, DynamoConfig, DynamoStore};
use crate::events::{AwsEvents, Deliverer, DeliveryQueue, EventsFunction};
use crate::fanout::{FanoutInvoker, FanoutSlice, LAMBDA_SPLIT};
use crate::management::{GatewayCounters, ManagementGateway};
use crate::s3::S3Blobs;

/// The settings the functions read from their environment: the core's [`names`](roomcast_core::config::names) (JWT key and
/// rules, rate, connection limits) and the AWS build's own (the deploy templates set them; a
/// consistency test checks that they do).
pub mod env {
    pub use roomcast_core::config::names::*;

    /// DynamoDB table name (default `roomcast`).
    pub const TABLE: &str = "ROOMCAST_TABLE";
    /// Name of an SSM Parameter Store parameter (a SecureString) holding the key: the HS256
    /// secret, or the PEM public key when [`JWT_ALG`] is `RS256` or `ES256`. Read once, at cold
    /// start, so the key is in neither the function's configuration nor the deploy's state.
    pub const JWT_KEY_PARAMETER: &str = "ROOMCAST_JWT_KEY_PARAMETER";
    /// Management API endpoint; default `https://{domainName}/{stage}` of each event. Required
    /// by the `http` function (HTTP API events do not name the WebSocket API).
    pub const MANAGEMENT_ENDPOINT: &str = "ROOMCAST_MANAGEMENT_ENDPOINT";
    /// Days messages are kept (default: forever).
    pub const MESSAGE_RETENTION_DAYS: &str = "ROOMCAST_MESSAGE_RETENTION_DAYS";
    /// URL of the SQS queue of webhook deliveries (one message per event and endpoint). Unset:
    /// integration events are off (the endpoints API answers 404).
    pub const DELIVERY_QUEUE_URL: &str = "ROOMCAST_DELIVERY_QUEUE_URL";
    /// Name of an SSM Parameter Store parameter (a SecureString) holding the operator-wide
    /// endpoint's `whsec_` secret ([`WEBHOOK_SECRET`] without putting it in the configuration).
    pub const WEBHOOK_SECRET_PARAMETER: &str = "ROOMCAST_WEBHOOK_SECRET_PARAMETER";
    /// The S3 bucket of attachment bytes. Unset: attachments are off (uploads answer 404).
    pub const ATTACHMENT_BUCKET: &str = "ROOMCAST_ATTACHMENT_BUCKET";
    /// Name (or ARN) of the `fanout` function, which the `message` and `http` functions invoke
    /// asynchronously with slices of a big room's broadcast ([`crate::fanout`]). Unset (or no
    /// [`MANAGEMENT_ENDPOINT`], which `fanout` posts through): every function posts its whole
    /// broadcast itself. Every function has it (one environment); only those two invoke.
    pub const FANOUT_FUNCTION: &str = "ROOMCAST_FANOUT_FUNCTION";
    /// The AWS build's own settings (the shared ones are [`ALL`]).
    pub const AWS: &[&str] = &[
        TABLE,
        JWT_KEY_PARAMETER,
        MANAGEMENT_ENDPOINT,
        MESSAGE_RETENTION_DAYS,
        DELIVERY_QUEUE_URL,
        WEBHOOK_SECRET_PARAMETER,
        ATTACHMENT_BUCKET,
        FANOUT_FUNCTION,
    ];
    /// The variables a deployment (Terraform, SAM) sets on every function: the key's parameter
    /// and the settings it configures, never a plain-text key.
    pub const DEPLOYED: &[&str] = &[
        TABLE,
        JWT_KEY_PARAMETER,
        JWT_ALG,
        JWT_JWKS,
        JWT_ISSUER,
        JWT_AUDIENCE,
        JWT_LEEWAY_SECS,
        MANAGEMENT_ENDPOINT,
        MESSAGE_RETENTION_DAYS,
        RATE_PER_SEC,
        RATE_BURST,
        MAX_CONNECTIONS_PER_USER,
        PRESENCE_MAX_CONNECTIONS,
        LOG,
        DELIVERY_QUEUE_URL,
        WEBHOOK_URL,
        WEBHOOK_TYPES,
        WEBHOOK_SECRET_PARAMETER,
        WEBHOOK_TIMEOUT_MS,
        WEBHOOK_FIRST_RETRY_MS,
        WEBHOOK_RETRY_FOR_SECS,
        ATTACHMENT_BUCKET,
        ATTACHMENT_MAX_BYTES,
        ATTACHMENT_TYPES,
        UPLOADS_PER_USER_DAY,
        UPLOAD_BYTES_PER_USER_DAY,
        UPLOADS_PER_TENANT_DAY,
        UPLOAD_BYTES_PER_TENANT_DAY,
        EMBED_KEYS,
        EMBED_TOKEN_SECS,
        FANOUT_FUNCTION,
    ];
    /// Plain-text keys: never set by a deployment.
    /// (The link secret signs the links of deployments that serve attachment bytes themselves;
    /// on AWS, S3 presigns them. Visitor tokens are signed with a key derived from the HS256
    /// token secret, which the functions read from SSM.)
    pub const PLAINTEXT_KEYS: &[&str] = &[
        JWT_SECRET,
        JWT_PUBLIC_KEY,
        WEBHOOK_SECRET,
        ATTACHMENT_LINK_SECRET,
        EMBED_SECRET,
    ];
    /// Development-only settings: never set by a deployment (endpoints at private addresses).
    pub const DEVELOPMENT_ONLY: &[&str] = &[WEBHOOK_ALLOW_PRIVATE];
    /// Shared settings API Gateway fixes on AWS (10 minutes idle, 2 hours in all): the
    /// functions parse them like every deployment but nothing of theirs applies them.
    pub const FIXED_BY_API_GATEWAY: &[&str] = &[IDLE_TIMEOUT_SECS, MAX_CONNECTION_SECS];
}

/// Everything a function needs, from the environment.
#[derive(Debug, Clone)]
pub struct FunctionConfig {
    /// Table name.
    pub table: String,
    /// The settings every deployment shares.
    pub settings: Settings,
    /// Store tunables.
    pub store: DynamoConfig,
    /// Fixed Management API endpoint.
    pub management_endpoint: Option<String>,
    /// The delivery queue; `None`: integration events are off.
    pub delivery_queue_url: Option<String>,
    /// The bucket of attachment bytes; `None`: attachments are off.
    pub attachment_bucket: Option<String>,
    /// The `fanout` function this function hands big rooms' slices to; `None`: it posts every
    /// delivery itself.
    pub fanout_function: Option<String>,
}

impl FunctionConfig {
    /// Reads the configuration through `get` (the process environment in production).
    pub fn from_env(get: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let settings = Settings::from_lookup(&get)?;
        let lookup = Lookup::new(get);
        let retention_days: Option<u64> = lookup.optional(env::MESSAGE_RETENTION_DAYS)?;
        Ok(Self {
            table: lookup
                .string(env::TABLE)
                .unwrap_or_else(|| DEFAULT_TABLE.to_owned()),
            settings,
            store: DynamoConfig {
                message_retention: retention_days.map(|d| Duration::from_secs(d * 86_400)),
                ..DynamoConfig::default()
            },
            management_endpoint: lookup.string(env::MANAGEMENT_ENDPOINT),
            delivery_queue_url: lookup.string(env::DELIVERY_QUEUE_URL),
            attachment_bucket: lookup.string(env::ATTACHMENT_BUCKET),
            fanout_function: lookup.string(env::FANOUT_FUNCTION),
        })
    }
}

/// Clients and configuration shared by every invocation of a warm function.
pub struct Runtime {
    store: Arc<DynamoStore>,
    verifier: TokenVerifier,
    service: ServiceConfig,
    events_config: EventsConfig,
    /// Registry and queue, when integration events are on.
    events: Option<(Arc<AwsEvents>, DeliveryQueue)>,
    /// The bucket of attachment bytes, when attachments are on, and what may be uploaded.
    attachments: Option<(Arc<S3Blobs>, AttachmentPolicy, UploadQuota)>,
    sdk: SdkConfig,
    management_endpoint: Option<String>,
    management_clients: Mutex<HashMap<String, aws_sdk_apigatewaymanagement::Client>>,
    /// The `fanout` function's invoker and how to split, when this function splits.
    fanout: Option<(FanoutInvoker, SplitPolicy)>,
}

/// Randomness from the OS generator (event and attachment ids).
fn os_entropy() -> Entropy {
    Arc::new(|bytes: &mut [u8]| rand::RngCore::fill_bytes(&mut rand::rng(), bytes))
}

/// The wall clock, epoch milliseconds.
pub(crate) fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

impl Runtime {
    /// Builds the clients for `config` from the loaded SDK configuration.
    pub fn new(config: FunctionConfig, sdk: SdkConfig) -> Result<Self, ConfigError> {
        let dynamodb = aws_sdk_dynamodb::Client::new(&sdk);
        Self::with_dynamodb(config, dynamodb, sdk)
    }

    /// Like [`Runtime::new`] with a DynamoDB client of the caller's (tests add interceptors).
    pub fn with_dynamodb(
        config: FunctionConfig,
        dynamodb: aws_sdk_dynamodb::Client,
        sdk: SdkConfig,
    ) -> Result<Self, ConfigError> {
        let store = Arc::new(DynamoStore::new(dynamodb, config.table, config.store));
        let events = config.delivery_queue_url.map(|url| {
            let queue = DeliveryQueue::new(aws_sdk_sqs::Client::new(&sdk), url);
            let events = Arc::new(AwsEvents::new(store.clone(), queue.clone()));
            (events, queue)
        });
        let attachments = match config.attachment_bucket {
            None => None,
            Some(bucket) => {
                let credentials = sdk.credentials_provider().ok_or(ConfigError::Invalid {
                    name: env::ATTACHMENT_BUCKET,
                    problem: "no AWS credentials to sign uploads with".into(),
                })?;
                let blobs = S3Blobs::new(aws_sdk_s3::Client::new(&sdk), credentials, bucket);
                let settings = &config.settings.attachments;
                Some((Arc::new(blobs), settings.policy.clone(), settings.quota))
            }
        };
        // `fanout` posts through the configured endpoint: without one, nothing is handed off.
        let fanout = config
            .fanout_function
            .filter(|_| config.management_endpoint.is_some())
            .map(|function| {
                let client = aws_sdk_lambda::Client::new(&sdk);
                (FanoutInvoker::new(client, function), LAMBDA_SPLIT)
            });
        Ok(Self {
            fanout,
            store,
            attachments,
            verifier: config.settings.verifier()?,
            service: config.settings.service,
            events_config: config.settings.events,
            events,
            sdk,
            management_endpoint: config.management_endpoint,
            management_clients: Mutex::new(HashMap::new()),
        })
    }

    /// This runtime handing big rooms' slices to `fanout` (an invoker and how to split) or, with
    /// `None`, posting every delivery itself. Tests point the invoker at their Lambda API.
    #[must_use]
    pub fn with_fanout(mut self, fanout: Option<(FanoutInvoker, SplitPolicy)>) -> Self {
        self.fanout = fanout;
        self
    }

    /// The store (tests inspect it).
    pub fn store(&self) -> &DynamoStore {
        &self.store
    }

    fn management_endpoint(&self, ctx: Option<&WsRequestContext>) -> Option<String> {
        self.management_endpoint
            .clone()
            .or_else(|| ctx.map(|c| format!("https://{}/{}", c.domain_name, c.stage)))
    }

    fn gateway(&self, endpoint: &str) -> Arc<ManagementGateway> {
        let mut clients = self
            .management_clients
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let client = clients
            .entry(endpoint.to_owned())
            .or_insert_with(|| {
                let config = aws_sdk_apigatewaymanagement::config::Builder::from(&self.sdk)
                    .endpoint_url(endpoint)
                    .build();
                aws_sdk_apigatewaymanagement::Client::from_conf(config)
            })
            .clone();
        let gateway = ManagementGateway::new(client);
        Arc::new(match &self.fanout {
            Some((invoker, policy)) => gateway.with_hand_off(invoker.clone(), *policy),
            None => gateway,
        })
    }

    /// The service; `host`, the API's own host as a request named it, may not be an endpoint.
    fn service(&self, gateway: Arc<ManagementGateway>, host: Option<&str>) -> ChatService {
        let mut service = ChatService::new(
            self.verifier.clone(),
            self.store.clone(),
            self.store.clone(),
            gateway,
            self.service.clone(),
        )
        .with_desk(self.store.clone())
        // Each invocation's service is new: big rooms' announcements are coalesced in the table.
        .with_occupancy_gate(self.store.clone());
        if let Some((blobs, policy, quota)) = &self.attachments {
            service = service.with_attachments(Attachments {
                index: self.store.clone(),
                blobs: blobs.clone(),
                policy: policy.clone(),
                quota: *quota,
                entropy: os_entropy(),
            });
        }
        let Some((events, _)) = &self.events else {
            return service;
        };
        let mut rules = self.endpoint_rules();
        rules.own_origins.extend(host.and_then(origin_of_host));
        service.with_events(Events {
            log: events.clone(),
            registry: Some(events.clone()),
            resolver: Arc::new(CheckedResolver::new(rules.clone())),
            rules,
            config: self.events_config.clone(),
            entropy: os_entropy(),
        })
    }

    /// Endpoint URLs may not point at the deployment's own APIs (the Management API here; the
    /// HTTP API's host comes with each request).
    fn endpoint_rules(&self) -> EndpointRules {
        let own = self
            .management_endpoint
            .as_deref()
            .and_then(|e| url::Url::parse(e).ok())
            .and_then(|u| Some((u.host_str()?.to_owned(), u.port_or_known_default()?)));
        EndpointRules {
            development: self.events_config.allow_private,
            own_origins: own.into_iter().collect(),
        }
    }

    /// The events function's work, when integration events are on.
    pub fn events_function(&self) -> Option<EventsFunction> {
        let (_, queue) = self.events.as_ref()?;
        Some(EventsFunction {
            store: self.store.clone(),
            queue: queue.clone(),
        })
    }

    /// The deliver function's work, when integration events are on.
    pub fn deliverer(&self) -> Result<Option<Deliverer>, ClientError> {
        let Some((_, queue)) = &self.events else {
            return Ok(None);
        };
        let policy = self.events_config.retry;
        Ok(Some(Deliverer {
            store: self.store.clone(),
            queue: queue.clone(),
            client: WebhookClient::new(
                self.endpoint_rules(),
                Duration::from_millis(policy.attempt_timeout_ms),
            )?,
            policy,
        }))
    }

    /// Installs the operator-wide endpoint as configured (the events function, at cold start).
    pub async fn sync_operator_endpoint(&self) -> Result<(), StoreError> {
        match &self.events {
            Some((events, _)) => {
                sync_operator_endpoint(events.as_ref(), &self.events_config, now_ms()).await
            }
            None => Ok(()),
        }
    }

    /// A WebSocket route event (`$connect`, `$disconnect`, `message`, `typing`, `$default`).
    pub async fn handle_websocket(&self, event: WsEvent) -> WsResponse {
        let started = Instant::now();
        let endpoint = self
            .management_endpoint(Some(&event.request_context))
            .unwrap_or_default();
        let gateway = self.gateway(&endpoint);
        let routed = handle_event(&self.service(gateway.clone(), None), &event).await;
        emit_metrics(
            &event.request_context.route_key,
            &routed.outcome,
            &gateway.counters,
            started.elapsed(),
        );
        routed.response
    }

    /// A `fanout` invocation: posts the slice a `message` or `http` function handed off through
    /// the configured Management API endpoint and cleans up the connections found gone (the
    /// core's [`ChatService::deliver_handed_off`]). Returns frames delivered.
    pub async fn handle_fanout(&self, slice: FanoutSlice) -> Result<usize, ConfigError> {
        let started = Instant::now();
        let endpoint = self
            .management_endpoint(None)
            .ok_or_else(|| ConfigError::Invalid {
                name: env::MANAGEMENT_ENDPOINT,
                problem: "not set: the fanout function posts through it".into(),
            })?;
        let gateway = self.gateway(&endpoint);
        let service = self.service(gateway.clone(), None);
        let delivered = service
            .deliver_handed_off(slice.connections, slice.frame.get(), now_ms())
            .await;
        emit_metrics(
            "fanout",
            &FrameOutcome::default(),
            &gateway.counters,
            started.elapsed(),
        );
        Ok(delivered)
    }

    /// An HTTP API request (`GET|POST /rooms/{room}/messages`, `GET /health`): the core's HTTP
    /// API, with replies to sockets through the Management API.
    pub async fn handle_http(&self, request: &HttpRequest<'_>) -> HttpReply {
        self.handle_http_to(request, None).await
    }

    /// [`Runtime::handle_http`] of a request sent to `host` (its `Host` header).
    pub async fn handle_http_to(&self, request: &HttpRequest<'_>, host: Option<&str>) -> HttpReply {
        let Some(endpoint) = self.management_endpoint(None) else {
            return HttpReply::error(
                500,
                "UNAVAILABLE",
                "ROOMCAST_MANAGEMENT_ENDPOINT is not set",
            );
        };
        let service = self.service(self.gateway(&endpoint), host);
        http::handle(&service, request, None, now_ms()).await
    }
}

/// `host[:port]` as an origin (port 443 when absent: API Gateway serves HTTPS).
fn origin_of_host(host: &str) -> Option<(String, u16)> {
    let url = url::Url::parse(&format!("https://{host}")).ok()?;
    Some((url.host_str()?.to_owned(), url.port_or_known_default()?))
}

/// One EMF line per webhook attempt of the deliver function: `WebhookAttempts` by `Outcome`
/// (`delivered`, `retry`, `dead_letter`) and `WebhookMillis`.
pub(crate) fn emit_delivery_metrics(outcome: &str, latency_ms: u64) {
    let line = json!({
        "_aws": {
            "Timestamp": now_ms(),
            "CloudWatchMetrics": [{
                "Namespace": "roomcast",
                "Dimensions": [["Outcome"]],
                "Metrics": [
                    {"Name": "WebhookAttempts", "Unit": "Count"},
                    {"Name": "WebhookMillis", "Unit": "Milliseconds"},
                ],
            }],
        },
        "Outcome": outcome,
        "WebhookAttempts": 1,
        "WebhookMillis": latency_ms,
    });
    println!("{line}");
}

/// One CloudWatch Embedded Metric Format line per invocation (CloudWatch Logs turns it into
/// metrics; no API call, no extra latency).
fn emit_metrics(
    route: &str,
    outcome: &FrameOutcome,
    counters: &GatewayCounters,
    elapsed: Duration,
) {
    let get = GatewayCounters::get;
    let line = json!({
        "_aws": {
            "Timestamp": now_ms(),
            "CloudWatchMetrics": [{
                "Namespace": "roomcast",
                "Dimensions": [["Route"]],
                "Metrics": [
                    {"Name": "Messages", "Unit": "Count"},
                    {"Name": "Rejections", "Unit": "Count"},
                    {"Name": "FanoutSize", "Unit": "Count"},
                    {"Name": "FanoutGone", "Unit": "Count"},
                    {"Name": "FanoutThrottled", "Unit": "Count"},
                    {"Name": "FanoutFailed", "Unit": "Count"},
                    {"Name": "HandlerMillis", "Unit": "Milliseconds"},
                ],
            }],
        },
        "Route": route,
        "Action": outcome.action,
        "Messages": u64::from(outcome.action == Some("message") && outcome.rejected.is_none()),
        "Rejections": u64::from(outcome.rejected.is_some()),
        "RejectionCode": outcome.rejected.map(|c| c.as_str()),
        "FanoutSize": get(&counters.sent),
        "FanoutGone": get(&counters.gone),
        "FanoutThrottled": get(&counters.throttled),
        "FanoutFailed": get(&counters.failed),
        "HandlerMillis": elapsed.as_secs_f64() * 1000.0,
    });
    println!("{line}");
}

/// Entry point of the WebSocket route functions: clients built once, then events until the
/// runtime stops. `route` is the API Gateway route key the function serves (logged at cold
/// start; functions/aws/tests/deploy.rs holds the deploy templates to it).
pub async fn run_websocket_function(route: &'static str) -> Result<(), lambda_runtime::Error> {
    init_logs();
    // Of the routes, only `message` hands big rooms' slices to `fanout` (its IAM alone may).
    let function = if route == "message" {
        Function::Splitting
    } else {
        Function::Api
    };
    let runtime = Arc::new(load(function).await?);
    tracing::info!(route, "cold start complete");
    lambda_runtime::run(lambda_runtime::service_fn(
        move |event: lambda_runtime::LambdaEvent<WsEvent>| {
            let runtime = runtime.clone();
            async move {
                Ok::<WsResponse, lambda_runtime::Error>(
                    runtime.handle_websocket(event.payload).await,
                )
            }
        },
    ))
    .await
}

/// The caller's address as API Gateway saw it (`requestContext.http.sourceIp`).
fn source_ip(request: &lambda_http::Request) -> Option<String> {
    use lambda_http::RequestExt;
    use lambda_http::request::RequestContext;
    match request.request_context_ref()? {
        RequestContext::ApiGatewayV2(ctx) => ctx.http.source_ip.clone(),
        #[allow(
            unreachable_patterns,
            reason = "other event sources, by lambda_http's features"
        )]
        _ => None,
    }
}

/// Entry point of the HTTP API function.
pub async fn run_http_function() -> Result<(), lambda_http::Error> {
    init_logs();
    let runtime = Arc::new(load(Function::Splitting).await?);
    lambda_http::run(lambda_http::service_fn(
        move |request: lambda_http::Request| {
            let runtime = runtime.clone();
            async move {
                let authorization = request
                    .headers()
                    .get("authorization")
                    .and_then(|v| v.to_str().ok());
                let host = request.headers().get("host").and_then(|v| v.to_str().ok());
                let origin = request
                    .headers()
                    .get("origin")
                    .and_then(|v| v.to_str().ok());
                let client_ip = source_ip(&request);
                let http_request = HttpRequest {
                    method: request.method().as_str(),
                    path: request.uri().path(),
                    query: request.uri().query(),
                    authorization,
                    body: request.body(),
                    origin,
                    client_ip: client_ip.as_deref(),
                };
                let reply = runtime.handle_http_to(&http_request, host).await;
                lambda_http::Response::builder()
                    .status(reply.status)
                    .header("content-type", "application/json")
                    .body(lambda_http::Body::from(reply.body.to_string()))
                    .map_err(lambda_http::Error::from)
            }
        },
    ))
    .await
}

/// Entry point of the function on the table's stream: at cold start, the operator-wide
/// endpoint as configured; then batches of stream records until the runtime stops.
pub async fn run_events_function() -> Result<(), lambda_runtime::Error> {
    init_logs();
    let runtime = load(Function::Events).await?;
    runtime.sync_operator_endpoint().await?;
    let function = Arc::new(runtime.events_function().ok_or(EVENTS_OFF)?);
    tracing::info!("cold start complete");
    lambda_runtime::run(lambda_runtime::service_fn(
        move |event: lambda_runtime::LambdaEvent<aws_lambda_events::dynamodb::Event>| {
            let function = function.clone();
            async move {
                Ok::<_, lambda_runtime::Error>(
                    function
                        .handle_stream(&event.payload.records, now_ms())
                        .await,
                )
            }
        },
    ))
    .await
}

/// Entry point of the function on the delivery queue.
pub async fn run_deliver_function() -> Result<(), lambda_runtime::Error> {
    init_logs();
    let runtime = load(Function::Deliver).await?;
    let deliverer = Arc::new(runtime.deliverer()?.ok_or(EVENTS_OFF)?);
    tracing::info!("cold start complete");
    lambda_runtime::run(lambda_runtime::service_fn(
        move |event: lambda_runtime::LambdaEvent<aws_lambda_events::sqs::SqsEvent>| {
            let deliverer = deliverer.clone();
            async move {
                Ok::<_, lambda_runtime::Error>(
                    deliverer.handle_messages(&event.payload.records).await,
                )
            }
        },
    ))
    .await
}

/// Entry point of the `fanout` function: slices of big rooms' broadcasts, invoked
/// asynchronously by the `message` and `http` functions ([`crate::fanout`]). A failed
/// invocation (an error returned here) is retried by Lambda twice; clients deduplicate a
/// frame delivered twice by its `seq`.
pub async fn run_fanout_function() -> Result<(), lambda_runtime::Error> {
    init_logs();
    let runtime = Arc::new(load(Function::Api).await?);
    tracing::info!("cold start complete");
    lambda_runtime::run(lambda_runtime::service_fn(
        move |event: lambda_runtime::LambdaEvent<FanoutSlice>| {
            let runtime = runtime.clone();
            async move {
                let delivered = runtime.handle_fanout(event.payload).await?;
                Ok::<_, lambda_runtime::Error>(json!({ "delivered": delivered }))
            }
        },
    ))
    .await
}

const EVENTS_OFF: &str = "ROOMCAST_DELIVERY_QUEUE_URL is not set: integration events are off";

/// Which function is starting.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Function {
    /// A WebSocket route or `fanout`: posts every delivery itself.
    Api,
    /// `message` or the HTTP API: hands big rooms' slices to `fanout` when it is configured.
    Splitting,
    /// The stream's: it installs the operator-wide endpoint, so only it reads that secret.
    Events,
    /// The queue's.
    Deliver,
}

async fn load(function: Function) -> Result<Runtime, ConfigError> {
    let sdk = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
    // An empty variable is an unset one: templates cannot always leave a variable out.
    let environment = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
    let ssm = aws_sdk_ssm::Client::new(&sdk);
    let get = with_key_from_parameter(&ssm, environment).await?;
    let get = with_webhook_secret(&ssm, get, function == Function::Events).await?;
    let mut config = FunctionConfig::from_env(get)?;
    if function != Function::Splitting {
        config.fanout_function = None;
    }
    Runtime::new(config, sdk)
}

/// The decrypted value of SSM parameter `name`, which `variable` named.
async fn read_parameter(
    ssm: &aws_sdk_ssm::Client,
    variable: &'static str,
    name: &str,
) -> Result<String, ConfigError> {
    let invalid = |problem: String| ConfigError::Invalid {
        name: variable,
        problem,
    };
    let read = ssm
        .get_parameter()
        .name(name)
        .with_decryption(true)
        .send()
        .await
        .map_err(|e| {
            invalid(format!(
                "cannot read SSM parameter `{name}`: {}",
                aws_sdk_ssm::error::DisplayErrorContext(e)
            ))
        })?;
    read.parameter
        .and_then(|p| p.value)
        .filter(|v| !v.trim().is_empty())
        .ok_or_else(|| invalid(format!("SSM parameter `{name}` is empty")))
}

/// The operator-wide endpoint's settings as a function should see them: the events function
/// (`installs`) gets [`env::WEBHOOK_SECRET`] from the SSM parameter
/// [`env::WEBHOOK_SECRET_PARAMETER`] names; every other function sees no operator endpoint
/// (it neither installs it nor may read its secret).
pub async fn with_webhook_secret(
    ssm: &aws_sdk_ssm::Client,
    get: impl Fn(&str) -> Option<String>,
    installs: bool,
) -> Result<impl Fn(&str) -> Option<String>, ConfigError> {
    let parameter = Lookup::new(&get).string(env::WEBHOOK_SECRET_PARAMETER);
    let secret = match parameter {
        Some(name) if installs => {
            Some(read_parameter(ssm, env::WEBHOOK_SECRET_PARAMETER, &name).await?)
        }
        _ => None,
    };
    Ok(move |name: &str| match name {
        env::WEBHOOK_SECRET if secret.is_some() => secret.clone(),
        env::WEBHOOK_URL | env::WEBHOOK_TYPES | env::WEBHOOK_SECRET if !installs => None,
        _ => get(name),
    })
}

/// When [`env::JWT_KEY_PARAMETER`] is set, reads that SSM parameter (decrypted) and returns a
/// lookup that answers [`env::JWT_SECRET`] (or, for `RS256`/`ES256`, [`env::JWT_PUBLIC_KEY`]) with
/// its value and every other name from `get`. Without it, `get` as it is.
pub async fn with_key_from_parameter(
    ssm: &aws_sdk_ssm::Client,
    get: impl Fn(&str) -> Option<String>,
) -> Result<impl Fn(&str) -> Option<String>, ConfigError> {
    let invalid = |problem: String| ConfigError::Invalid {
        name: env::JWT_KEY_PARAMETER,
        problem,
    };
    let lookup = Lookup::new(&get);
    let fetched = match lookup.string(env::JWT_KEY_PARAMETER) {
        None => None,
        Some(name) => {
            if lookup.string(env::JWT_SECRET).is_some()
                || lookup.string(env::JWT_PUBLIC_KEY).is_some()
            {
                return Err(invalid(format!(
                    "set it or {}/{}, not both",
                    env::JWT_SECRET,
                    env::JWT_PUBLIC_KEY
                )));
            }
            let value = read_parameter(ssm, env::JWT_KEY_PARAMETER, &name).await?;
            let alg = lookup.string(env::JWT_ALG).map(|a| a.to_ascii_uppercase());
            let holds = match alg.as_deref() {
                None | Some("HS256") => env::JWT_SECRET,
                Some(_) => env::JWT_PUBLIC_KEY,
            };
            Some((holds, value))
        }
    };
    Ok(move |name: &str| match &fetched {
        Some((holds, value)) if *holds == name => Some(value.clone()),
        _ => get(name),
    })
}

/// Structured JSON logs to stdout (CloudWatch Logs) at [`env::LOG`]'s level (`RUST_LOG`, when
/// set, filters instead). Set up before the configuration is read, so its errors are logged;
/// a bad level is reported by that read.
fn init_logs() {
    let level = Lookup::new(|name: &str| std::env::var(name).ok())
        .parsed(env::LOG, LogLevel::Info)
        .unwrap_or_default();
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| level.as_str().into());
    let _ = tracing_subscriber::fmt()
        .json()
        .with_env_filter(filter)
        .with_target(false)
        .without_time()
        .try_init();
}
