//! What the suite needs to know about a deployment under test.

use roomcast_core::auth::Claims;

/// Optional abilities of a deployment. A case that needs one runs only where it is set; the
/// suite prints every case it did not run, so a missing capability never passes silently.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Capabilities {
    /// [`Deployment::restart`] kills the server with SIGKILL and starts it again on the same
    /// address with the same data.
    pub restart: bool,
    /// The HTTP API (`GET /health`, `GET|POST /rooms/{room}/messages`) is served at
    /// [`Deployment::http_url`].
    pub http_api: bool,
    /// The API Gateway Management API (`POST|GET|DELETE /@connections/{id}`) is served at
    /// [`Deployment::management_url`].
    pub management_api: bool,
    /// Each connection may join only one room (the edge build routes a socket to one Durable
    /// Object). Cases that join several rooms on one connection are then not applicable.
    pub one_room_per_connection: bool,
    /// Integration events: the endpoints API (`/events/endpoints`) at
    /// [`Deployment::http_url`], deliveries to loopback endpoints (development mode), the
    /// first retry within 500 ms and attempts timed out within 2 s.
    pub webhooks: bool,
    /// Attachments: upload slots and download links at [`Deployment::http_url`], upload
    /// targets reachable from the test (the deployment's own signed routes, or S3 on loopback),
    /// and the default size limit and types.
    pub attachments: bool,
    /// Embedding with a publishable key (docs/protocol.md §15): the deployment was started
    /// with [`EMBED_KEYS`] in `ROOMCAST_EMBED_KEYS`, so `POST /embed/token` at
    /// [`Deployment::http_url`] answers for the tenant [`EMBED_TENANT`] and upgrades of that
    /// tenant are checked against [`EMBED_ORIGIN`].
    pub embed: bool,
}

/// The tenant of the suite's publishable key ([`Capabilities::embed`]).
pub const EMBED_TENANT: &str = "embedtest";
/// The suite's publishable key.
pub const EMBED_KEY: &str = "pk_embedtest_0123456789";
/// The one origin the suite's key allows.
pub const EMBED_ORIGIN: &str = "http://allowed.example";
/// `ROOMCAST_PRESENCE_MAX_CONNECTIONS` of the suite's deployments: a room of more connections
/// is big (protocol.md §17). Above every other case's rooms, low enough that a case makes a big
/// room with a handful of connections.
pub const PRESENCE_MAX_CONNECTIONS: &str = "8";

/// `ROOMCAST_EMBED_KEYS` for a deployment with [`Capabilities::embed`]: [`EMBED_KEY`] of
/// [`EMBED_TENANT`], allowing [`EMBED_ORIGIN`].
pub const EMBED_KEYS: &str = r#"{"pk_embedtest_0123456789":{"tenant":"embedtest","origins":["http://allowed.example"],"team":"Embed test"}}"#;

/// A capability a case may need (see [`Capabilities`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Capability {
    /// [`Capabilities::restart`].
    Restart,
    /// [`Capabilities::http_api`].
    HttpApi,
    /// [`Capabilities::management_api`].
    ManagementApi,
    /// Several rooms on one connection: the opposite of
    /// [`Capabilities::one_room_per_connection`].
    ManyRoomsPerConnection,
    /// [`Capabilities::webhooks`].
    Webhooks,
    /// [`Capabilities::attachments`].
    Attachments,
    /// [`Capabilities::embed`].
    Embed,
}

impl Capability {
    /// Whether `caps` has this capability.
    pub fn in_(self, caps: &Capabilities) -> bool {
        match self {
            Self::Restart => caps.restart,
            Self::HttpApi => caps.http_api,
            Self::ManagementApi => caps.management_api,
            Self::ManyRoomsPerConnection => !caps.one_room_per_connection,
            Self::Webhooks => caps.webhooks,
            Self::Attachments => caps.attachments,
            Self::Embed => caps.embed,
        }
    }

    /// The capability's name as printed.
    pub fn name(self) -> &'static str {
        match self {
            Self::Restart => "restart",
            Self::HttpApi => "http_api",
            Self::ManagementApi => "management_api",
            Self::ManyRoomsPerConnection => "many rooms per connection",
            Self::Webhooks => "webhooks",
            Self::Attachments => "attachments",
            Self::Embed => "embed (a publishable key in ROOMCAST_EMBED_KEYS)",
        }
    }
}

/// A running roomcast deployment, reachable over real sockets.
///
/// The suite assumes the deployment's per-connection rate limit allows bursts of a few hundred
/// frames (cases send up to ~110 frames back to back); the rate-limit case runs separately
/// against a deployment with the default limits (see [`crate::limits_suite!`]).
#[async_trait::async_trait]
pub trait Deployment: Send + Sync {
    /// The WebSocket endpoint, e.g. `ws://127.0.0.1:3001/`; clients append `?token=…`.
    fn ws_url(&self) -> String;

    /// The endpoint for a connection that will use `room`: [`Deployment::ws_url`], except on
    /// a deployment that binds each connection to the room its URL names
    /// ([`Capabilities::one_room_per_connection`]).
    fn room_ws_url(&self, room: &str) -> String {
        let _ = room;
        self.ws_url()
    }

    /// The HTTP base URL (`http://host:port`, no trailing slash needed), when HTTP is served.
    fn http_url(&self) -> Option<String>;

    /// The Management API's base URL, when the deployment serves one (clients never reach
    /// it: it is not under [`Deployment::http_url`]).
    fn management_url(&self) -> Option<String> {
        None
    }

    /// Signs `claims` with the key the deployment verifies (HS256 with its secret).
    fn sign(&self, claims: &Claims) -> String;

    /// Which optional cases apply.
    fn capabilities(&self) -> Capabilities;

    /// Why the deployment cannot run at all here (its build was not made for this run, say):
    /// every case then prints `NOT APPLICABLE` with the reason instead of running. `None`: it
    /// runs.
    fn unavailable(&self) -> Option<String> {
        None
    }

    /// Kills the server with SIGKILL and starts it again on the same address with the same
    /// data; returns once it accepts connections. Called only when
    /// [`Capabilities::restart`] is set, and never while another case runs.
    async fn restart(&self) -> anyhow::Result<()> {
        anyhow::bail!("this deployment cannot restart")
    }
}

/// A deployment's connections to one room ([`Deployment::room_ws_url`]), for cases that use
/// several rooms at once.
pub struct InRoom<'d> {
    d: &'d dyn Deployment,
    room: &'d str,
}

impl<'d> InRoom<'d> {
    /// `d`, connecting for `room`.
    pub fn new(d: &'d dyn Deployment, room: &'d str) -> Self {
        Self { d, room }
    }
}

#[async_trait::async_trait]
impl Deployment for InRoom<'_> {
    fn ws_url(&self) -> String {
        self.d.room_ws_url(self.room)
    }

    fn room_ws_url(&self, room: &str) -> String {
        self.d.room_ws_url(room)
    }

    fn http_url(&self) -> Option<String> {
        self.d.http_url()
    }

    fn sign(&self, claims: &Claims) -> String {
        self.d.sign(claims)
    }

    fn capabilities(&self) -> Capabilities {
        self.d.capabilities()
    }

    fn unavailable(&self) -> Option<String> {
        self.d.unavailable()
    }

    async fn restart(&self) -> anyhow::Result<()> {
        self.d.restart().await
    }
}
