//! Integration events, the service's side: journaling member events, dispatching the journal
//! to the endpoints that want each event (with `message.created`'s offline members filled in),
//! the operator-wide endpoint from configuration, and the operations of the endpoints API
//! (role `service`, each tenant its own endpoints). Delivery itself (HTTP, the clock, retries)
//! is the deployment's, driven by [`crate::events::EndpointQueue`].

use std::collections::HashSet;
use std::future::Future;
use std::net::IpAddr;
use std::sync::Arc;

use serde::Deserialize;
use serde_json::{Value, json};

use super::{ChatService, unavailable};
use crate::MaybeSendSync;
use crate::auth::{Identity, Role};
use crate::config::EventsConfig;
use crate::events::endpoint::{EndpointRules, check_endpoint, parse_endpoint_url};
use crate::events::registry::{
    EndpointSecret, MAX_DESCRIPTION_BYTES, MAX_ENDPOINTS_PER_TENANT, MAX_URL_BYTES, endpoint_id,
};
use crate::events::{Endpoint, Event, EventData, EventType, WebhookSecret};
use crate::protocol::{ErrorCode, Rejection};
use crate::store::{
    ConnectionStore, EndpointRegistry, EventJournal, EventLog, HistoryStore, OutboxEntry, RoomRef,
    StoreError,
};

/// The id of the operator-wide endpoint ([`EventsConfig::operator`]).
pub const OPERATOR_ENDPOINT_ID: &str = "ep_operator";

/// Most members a `message.created` lists as offline (the most recently seen).
pub const MAX_OFFLINE_MEMBERS: usize = 1_000;

/// Resolves an endpoint's host to the addresses the SSRF check looks at.
#[cfg_attr(not(target_arch = "wasm32"), async_trait::async_trait)]
#[cfg_attr(target_arch = "wasm32", async_trait::async_trait(?Send))]
pub trait Resolver: MaybeSendSync {
    /// The addresses of `host` (a domain name).
    async fn resolve(&self, host: &str, port: u16) -> Result<Vec<IpAddr>, String>;
}

/// Random bytes for endpoint ids and secrets (the deployment's CSPRNG).
pub type Entropy = Arc<dyn Fn(&mut [u8]) + Send + Sync>;

/// What the service needs for integration events.
pub struct Events {
    /// Where member events go.
    pub log: Arc<dyn EventLog>,
    /// Endpoints, dead letters, attempt records: the endpoints API's. `None` where a service
    /// only produces events (an edge room object: its tenant's object serves the API).
    pub registry: Option<Arc<dyn EndpointRegistry>>,
    /// Endpoint host resolution for the SSRF check.
    pub resolver: Arc<dyn Resolver>,
    /// What endpoint URLs may be.
    pub rules: EndpointRules,
    /// The configuration's part.
    pub config: EventsConfig,
    /// Randomness.
    pub entropy: Entropy,
}

/// `POST /events/endpoints` and `PATCH /events/endpoints/{id}` bodies.
#[derive(Debug, Default, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct EndpointChange {
    /// Where to deliver.
    pub url: Option<String>,
    /// Event types (names); empty or absent on create: every type.
    pub types: Option<Vec<String>>,
    /// Whether new events are delivered.
    pub enabled: Option<bool>,
    /// Free text.
    pub description: Option<String>,
}

impl Events {
    /// The registry, for the endpoints API.
    fn registry(&self) -> Result<&dyn EndpointRegistry, Rejection> {
        self.registry.as_deref().ok_or_else(|| {
            Rejection::new(
                ErrorCode::NotFound,
                "the endpoints API is served by another object of this deployment",
            )
        })
    }
}

fn invalid(message: impl Into<String>) -> Rejection {
    Rejection::new(ErrorCode::Invalid, message)
}

fn no_endpoint() -> Rejection {
    Rejection::new(ErrorCode::NotFound, "no such endpoint")
}

fn parse_types(names: &[String]) -> Result<Vec<EventType>, Rejection> {
    let mut types = Vec::new();
    for name in names {
        let t = EventType::parse(name).ok_or_else(|| {
            invalid(format!(
                "no event type `{name}` (one of: {})",
                EventType::ALL.map(|t| t.as_str()).join(", ")
            ))
        })?;
        if !types.contains(&t) {
            types.push(t);
        }
    }
    Ok(types)
}

impl ChatService {
    /// Adds integration events to the service.
    pub fn with_events(mut self, events: Events) -> Self {
        self.events = Some(events);
        self
    }

    /// Whether integration events are on.
    pub fn has_events(&self) -> bool {
        self.events.is_some()
    }

    /// The endpoint registry, when integration events are on and this service keeps one.
    pub fn endpoint_registry(&self) -> Option<&Arc<dyn EndpointRegistry>> {
        self.events.as_ref().and_then(|e| e.registry.as_ref())
    }

    /// Journals a member event; a failure is logged (a member event has no stored change to
    /// lose with it).
    pub(super) async fn record_event(&self, event: Event) {
        let Some(events) = &self.events else { return };
        if let Err(e) = events.log.record(std::slice::from_ref(&event)).await {
            tracing::warn!(event = event.event_type().as_str(), error = %e, "event not journaled");
        }
    }

    /// Installs, replaces or removes the operator-wide endpoint as the configuration says
    /// ([`sync_operator_endpoint`]), when this service keeps the registry.
    pub async fn sync_operator_endpoint(&self, now_ms: u64) -> Result<(), StoreError> {
        match &self.events {
            Some(Events {
                registry: Some(registry),
                config,
                ..
            }) => sync_operator_endpoint(registry.as_ref(), config, now_ms).await,
            _ => Ok(()),
        }
    }

    /// Moves up to `limit` events of `journal` to the deliveries of the endpoints that want
    /// them ([`ChatService::route_events`]). `endpoints` answers the endpoints as they stand;
    /// it is asked after the journal is read, so an endpoint disabled before an event was
    /// journaled never gets it. Returns how many events were taken from the journal (0: it is
    /// empty).
    pub async fn dispatch_events<F, Fut>(
        &self,
        journal: &dyn EventJournal,
        endpoints: F,
        now_ms: u64,
        limit: usize,
    ) -> Result<usize, StoreError>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<Vec<Endpoint>, StoreError>>,
    {
        let journaled = journal.journal(limit).await?;
        let Some(last) = journaled.last() else {
            return Ok(0);
        };
        let through = last.position;
        let taken = journaled.len();
        let endpoints = endpoints().await?;
        let events = journaled.into_iter().map(|j| j.event).collect();
        let entries = self.route_events(events, &endpoints, now_ms).await?;
        journal.dispatch(through, &entries).await?;
        Ok(taken)
    }

    /// The deliveries of `events` to `endpoints` ([`route_events`]).
    pub async fn route_events(
        &self,
        events: Vec<Event>,
        endpoints: &[Endpoint],
        now_ms: u64,
    ) -> Result<Vec<OutboxEntry>, StoreError> {
        route_events(
            self.history.as_ref(),
            self.connections.as_ref(),
            events,
            endpoints,
            now_ms,
        )
        .await
    }

    fn events_for(&self, identity: &Identity) -> Result<&Events, Rejection> {
        if identity.role != Role::Service {
            return Err(Rejection::new(
                ErrorCode::Forbidden,
                "managing webhook endpoints needs role `service`",
            ));
        }
        self.events.as_ref().ok_or_else(|| {
            Rejection::new(
                ErrorCode::NotFound,
                "integration events are not enabled on this deployment",
            )
        })
    }

    /// The tenant's endpoint `id` (never the operator's, never another tenant's).
    async fn own_endpoint(
        &self,
        events: &Events,
        identity: &Identity,
        id: &str,
    ) -> Result<Endpoint, Rejection> {
        match events.registry()?.endpoint(id).await.map_err(unavailable)? {
            Some(e) if e.tenant.as_deref() == Some(identity.tenant.as_str()) => Ok(e),
            _ => Err(no_endpoint()),
        }
    }

    async fn checked_url(&self, events: &Events, text: &str) -> Result<String, Rejection> {
        if text.len() > MAX_URL_BYTES {
            return Err(invalid(format!("url over {MAX_URL_BYTES} bytes")));
        }
        let url = parse_endpoint_url(text).map_err(|e| invalid(e.to_string()))?;
        let resolved = match url.host() {
            Some(url::Host::Domain(host)) => {
                let port = url.port_or_known_default().unwrap_or(443);
                events
                    .resolver
                    .resolve(host, port)
                    .await
                    .map_err(|e| invalid(format!("cannot resolve {host}: {e}")))?
            }
            _ => Vec::new(),
        };
        check_endpoint(&url, &resolved, &events.rules)
            .map_err(|e| invalid(format!("endpoint refused: {e}")))?;
        Ok(url.to_string())
    }

    fn new_secret(events: &Events) -> WebhookSecret {
        let mut key = vec![0u8; 32];
        (events.entropy)(&mut key);
        // Invariant: 32 bytes is within the secret's bounds.
        WebhookSecret::from_bytes(key).expect("32-byte secrets are valid")
    }

    /// `POST /events/endpoints`: the endpoint, with its secret (shown once).
    pub async fn create_endpoint(
        &self,
        identity: &Identity,
        change: EndpointChange,
        now_ms: u64,
    ) -> Result<Value, Rejection> {
        let events = self.events_for(identity)?;
        let url = change
            .url
            .as_deref()
            .ok_or_else(|| invalid("`url` is required"))?;
        let url = self.checked_url(events, url).await?;
        let description = checked_description(change.description)?;
        let existing = events
            .registry()?
            .endpoints(Some(&identity.tenant))
            .await
            .map_err(unavailable)?;
        if existing.len() >= MAX_ENDPOINTS_PER_TENANT {
            return Err(Rejection::new(
                ErrorCode::LimitExceeded,
                format!("a tenant has at most {MAX_ENDPOINTS_PER_TENANT} endpoints"),
            ));
        }
        let mut random = [0u8; 12];
        (events.entropy)(&mut random);
        let secret = Self::new_secret(events);
        let endpoint = Endpoint {
            id: endpoint_id(random),
            tenant: Some(identity.tenant.clone()),
            url,
            types: parse_types(change.types.as_deref().unwrap_or_default())?,
            enabled: change.enabled.unwrap_or(true),
            description,
            secrets: vec![EndpointSecret {
                secret: secret.expose(),
                expires_at: None,
            }],
            created_at: now_ms,
        };
        events
            .registry()?
            .put_endpoint(&endpoint)
            .await
            .map_err(unavailable)?;
        let mut view = endpoint.public_view();
        view["secret"] = json!(secret.expose());
        Ok(view)
    }

    /// `GET /events/endpoints`.
    pub async fn list_endpoints(&self, identity: &Identity) -> Result<Value, Rejection> {
        let events = self.events_for(identity)?;
        let endpoints = events
            .registry()?
            .endpoints(Some(&identity.tenant))
            .await
            .map_err(unavailable)?;
        Ok(json!({"endpoints": endpoints.iter().map(Endpoint::public_view).collect::<Vec<_>>()}))
    }

    /// `GET /events/endpoints/{id}`.
    pub async fn get_endpoint(&self, identity: &Identity, id: &str) -> Result<Value, Rejection> {
        let events = self.events_for(identity)?;
        Ok(self.own_endpoint(events, identity, id).await?.public_view())
    }

    /// `PATCH /events/endpoints/{id}`.
    pub async fn update_endpoint(
        &self,
        identity: &Identity,
        id: &str,
        change: EndpointChange,
    ) -> Result<Value, Rejection> {
        let events = self.events_for(identity)?;
        let mut endpoint = self.own_endpoint(events, identity, id).await?;
        if let Some(url) = &change.url {
            endpoint.url = self.checked_url(events, url).await?;
        }
        if let Some(types) = &change.types {
            endpoint.types = parse_types(types)?;
        }
        if let Some(enabled) = change.enabled {
            endpoint.enabled = enabled;
        }
        if change.description.is_some() {
            endpoint.description = checked_description(change.description)?;
        }
        events
            .registry()?
            .put_endpoint(&endpoint)
            .await
            .map_err(unavailable)?;
        Ok(endpoint.public_view())
    }

    /// `DELETE /events/endpoints/{id}`: with its pending deliveries and dead letters.
    pub async fn delete_endpoint(&self, identity: &Identity, id: &str) -> Result<Value, Rejection> {
        let events = self.events_for(identity)?;
        self.own_endpoint(events, identity, id).await?;
        events
            .registry()?
            .delete_endpoint(id)
            .await
            .map_err(unavailable)?;
        Ok(json!({"id": id, "deleted": true}))
    }

    /// `POST /events/endpoints/{id}/rotate`: a new secret (shown once); the old one signs
    /// alongside it for a day.
    pub async fn rotate_endpoint_secret(
        &self,
        identity: &Identity,
        id: &str,
        now_ms: u64,
    ) -> Result<Value, Rejection> {
        let events = self.events_for(identity)?;
        let mut endpoint = self.own_endpoint(events, identity, id).await?;
        let secret = Self::new_secret(events);
        endpoint.rotate(&secret, now_ms);
        events
            .registry()?
            .put_endpoint(&endpoint)
            .await
            .map_err(unavailable)?;
        let previous_expires_at = endpoint.secrets.get(1).and_then(|s| s.expires_at);
        Ok(json!({"id": id, "secret": secret.expose(), "previous_expires_at": previous_expires_at}))
    }

    /// `POST /events/endpoints/{id}/test`: an `endpoint.test` event queued for this endpoint
    /// only (delivered even when it is disabled).
    pub async fn test_endpoint(
        &self,
        identity: &Identity,
        id: &str,
        now_ms: u64,
    ) -> Result<Value, Rejection> {
        let events = self.events_for(identity)?;
        self.own_endpoint(events, identity, id).await?;
        let mut nonce = [0u8; 8];
        (events.entropy)(&mut nonce);
        let event = Event::endpoint_test(&identity.tenant, id, now_ms, u64::from_le_bytes(nonce));
        let entry = OutboxEntry::new(id, event.clone(), now_ms);
        events
            .registry()?
            .enqueue(&[entry])
            .await
            .map_err(unavailable)?;
        Ok(json!({"id": id, "event_id": event.id}))
    }

    /// `GET /events/endpoints/{id}/attempts`: the newest first.
    pub async fn endpoint_attempts(
        &self,
        identity: &Identity,
        id: &str,
        limit: usize,
    ) -> Result<Value, Rejection> {
        let events = self.events_for(identity)?;
        self.own_endpoint(events, identity, id).await?;
        let attempts = events
            .registry()?
            .attempts(id, limit)
            .await
            .map_err(unavailable)?;
        Ok(json!({"id": id, "attempts": attempts}))
    }

    /// `GET /events/endpoints/{id}/dead-letters`: the oldest first.
    pub async fn endpoint_dead_letters(
        &self,
        identity: &Identity,
        id: &str,
        limit: usize,
    ) -> Result<Value, Rejection> {
        let events = self.events_for(identity)?;
        self.own_endpoint(events, identity, id).await?;
        let dead = events
            .registry()?
            .dead_letters(id, limit)
            .await
            .map_err(unavailable)?;
        let listed: Vec<Value> = dead
            .into_iter()
            .map(|d| {
                json!({
                    "event": d.entry.event,
                    "attempts": d.entry.delivery.attempts,
                    "reason": d.reason,
                    "at": d.at_ms,
                })
            })
            .collect();
        Ok(json!({"id": id, "dead_letters": listed}))
    }

    /// `POST /events/endpoints/{id}/dead-letters/{event}/replay`: the dead letter is pending
    /// again, with a fresh retry window.
    pub async fn replay_dead_letter(
        &self,
        identity: &Identity,
        id: &str,
        event_id: &str,
        now_ms: u64,
    ) -> Result<Value, Rejection> {
        let events = self.events_for(identity)?;
        self.own_endpoint(events, identity, id).await?;
        if !events
            .registry()?
            .replay(id, event_id, now_ms)
            .await
            .map_err(unavailable)?
        {
            return Err(Rejection::new(
                ErrorCode::NotFound,
                "no such dead letter for this endpoint",
            ));
        }
        Ok(json!({"id": id, "event_id": event_id, "replayed": true}))
    }
}

/// Installs, replaces or removes the operator-wide endpoint in `registry` as `config` says.
pub async fn sync_operator_endpoint(
    registry: &dyn EndpointRegistry,
    config: &EventsConfig,
    now_ms: u64,
) -> Result<(), StoreError> {
    let Some(operator) = &config.operator else {
        registry.delete_endpoint(OPERATOR_ENDPOINT_ID).await?;
        return Ok(());
    };
    let endpoint = Endpoint {
        id: OPERATOR_ENDPOINT_ID.into(),
        tenant: None,
        url: operator.url.clone(),
        types: operator.types.clone(),
        enabled: true,
        description: Some("operator-wide, from the configuration".into()),
        secrets: vec![EndpointSecret {
            secret: operator.secret.clone(),
            expires_at: None,
        }],
        created_at: now_ms,
    };
    let stored = registry.endpoint(OPERATOR_ENDPOINT_ID).await?;
    if stored.as_ref().is_some_and(|s| {
        Endpoint {
            created_at: s.created_at,
            ..endpoint.clone()
        } == *s
    }) {
        return Ok(());
    }
    registry.put_endpoint(&endpoint).await
}

/// The deliveries of `events`: one per endpoint of `endpoints` that wants the event, due at
/// `now_ms`; `message.created` with its offline members (members of the room in `history` not
/// connected now in `connections`, which is within moments of the store), looked up only when
/// some endpoint wants it.
pub async fn route_events(
    history: &dyn HistoryStore,
    connections: &dyn ConnectionStore,
    events: Vec<Event>,
    endpoints: &[Endpoint],
    now_ms: u64,
) -> Result<Vec<OutboxEntry>, StoreError> {
    let mut entries = Vec::new();
    for mut event in events {
        let targets: Vec<&Endpoint> = endpoints.iter().filter(|e| e.wants(&event)).collect();
        if targets.is_empty() {
            continue;
        }
        if let EventData::MessageCreated(created) = &event.data {
            let room = RoomRef::new(&event.tenant, &event.room);
            let offline =
                offline_members(history, connections, &room, &created.message.from).await?;
            event.set_offline_members(offline);
        }
        entries.extend(
            targets
                .into_iter()
                .map(|t| OutboxEntry::new(t.id.clone(), event.clone(), now_ms)),
        );
    }
    Ok(entries)
}

/// Members of `room` with no connection in it, the author aside.
async fn offline_members(
    history: &dyn HistoryStore,
    connections: &dyn ConnectionStore,
    room: &RoomRef,
    author: &str,
) -> Result<Vec<String>, StoreError> {
    let members = history.members(room, MAX_OFFLINE_MEMBERS).await?;
    let connected: HashSet<String> = connections
        .room_connections(room)
        .await?
        .into_iter()
        .map(|s| s.user)
        .collect();
    Ok(members
        .into_iter()
        .map(|m| m.user)
        .filter(|u| u != author && !connected.contains(u))
        .collect())
}

fn checked_description(description: Option<String>) -> Result<Option<String>, Rejection> {
    match description {
        Some(d) if d.len() > MAX_DESCRIPTION_BYTES => Err(invalid(format!(
            "description over {MAX_DESCRIPTION_BYTES} bytes"
        ))),
        Some(d) if d.chars().any(char::is_control) => {
            Err(invalid("description has control characters"))
        }
        other => Ok(other),
    }
}
