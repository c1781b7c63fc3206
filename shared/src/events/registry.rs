//! Endpoints as data: what a tenant (or the operator) subscribed, where to, with which secrets.
//! Pure: ids, secrets and the time come from the caller.
//!
//! **Secret rotation.** Rotating keeps the previous secret valid for [`ROTATION_OVERLAP_MS`]:
//! deliveries in that window carry one signature per secret (Standard Webhooks allows several,
//! space-separated), so a receiver that still has the old secret, or already has the new one,
//! accepts them.

use serde::{Deserialize, Serialize};

use super::delivery::{AttemptResult, Outcome};
use super::model::{Event, EventType};
use super::signing::WebhookSecret;

/// How long a rotated-out secret keeps signing deliveries next to the new one.
pub const ROTATION_OVERLAP_MS: u64 = 24 * 3_600_000;

/// Most endpoints one tenant may have.
pub const MAX_ENDPOINTS_PER_TENANT: usize = 20;

/// Longest endpoint URL accepted.
pub const MAX_URL_BYTES: usize = 2048;

/// Longest description accepted.
pub const MAX_DESCRIPTION_BYTES: usize = 256;

/// One signing secret of an endpoint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EndpointSecret {
    /// `whsec_…`.
    pub secret: String,
    /// Stops signing at this time (epoch ms); `None` for the current secret.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<u64>,
}

/// A webhook endpoint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Endpoint {
    /// `ep_` and 24 hex digits; unique in the deployment.
    pub id: String,
    /// The tenant whose events it receives; `None` for an operator-wide endpoint (every
    /// tenant's events), which only configuration creates.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tenant: Option<String>,
    /// Where deliveries are POSTed.
    pub url: String,
    /// The event types it receives; empty for every type.
    #[serde(default)]
    pub types: Vec<EventType>,
    /// Disabled endpoints receive no new events (their pending deliveries still go out).
    pub enabled: bool,
    /// Free text for the operator.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// The current secret first, then rotated-out ones still signing.
    pub secrets: Vec<EndpointSecret>,
    /// When it was created, epoch ms.
    pub created_at: u64,
}

impl Endpoint {
    /// Whether it receives `event` (enabled, same tenant, type in the filter, and not older than
    /// the endpoint: a deployment that routes events a while after their change, as a stream
    /// reader does, gives a new endpoint no event of a change made before it existed).
    pub fn wants(&self, event: &Event) -> bool {
        self.enabled
            && event.occurred_at >= self.created_at
            && self.tenant.as_deref().is_none_or(|t| t == event.tenant)
            && event.event_type() != EventType::EndpointTest
            && (self.types.is_empty() || self.types.contains(&event.event_type()))
    }

    /// The secrets that sign a delivery at `now_ms`: the current one and any rotated-out one
    /// not yet expired. Secrets that do not parse (never stored by this module) are skipped.
    pub fn signing_secrets(&self, now_ms: u64) -> Vec<WebhookSecret> {
        self.secrets
            .iter()
            .filter(|s| s.expires_at.is_none_or(|at| at > now_ms))
            .filter_map(|s| WebhookSecret::parse(&s.secret).ok())
            .collect()
    }

    /// Makes `secret` the current one; the previous current secret keeps signing until
    /// [`ROTATION_OVERLAP_MS`] from `now_ms`, and secrets already expired are dropped.
    pub fn rotate(&mut self, secret: &WebhookSecret, now_ms: u64) {
        let overlap_until = now_ms.saturating_add(ROTATION_OVERLAP_MS);
        for old in &mut self.secrets {
            old.expires_at = Some(
                old.expires_at
                    .map_or(overlap_until, |at| at.min(overlap_until)),
            );
        }
        self.secrets
            .retain(|s| s.expires_at.is_some_and(|at| at > now_ms));
        self.secrets.insert(
            0,
            EndpointSecret {
                secret: secret.expose(),
                expires_at: None,
            },
        );
    }

    /// The endpoint as the HTTP API shows it: without secrets.
    pub fn public_view(&self) -> serde_json::Value {
        serde_json::json!({
            "id": self.id,
            "tenant": self.tenant,
            "url": self.url,
            "types": self.types,
            "enabled": self.enabled,
            "description": self.description,
            "created_at": self.created_at,
        })
    }
}

/// A new endpoint id from 12 random bytes.
pub fn endpoint_id(random: [u8; 12]) -> String {
    let mut id = String::with_capacity(3 + 24);
    id.push_str("ep_");
    for byte in random {
        id.push_str(&format!("{byte:02x}"));
    }
    id
}

/// One delivery attempt, as the HTTP API and the metrics show it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AttemptRecord {
    /// The event.
    pub event_id: String,
    /// 1 for the first attempt.
    pub attempt: u32,
    /// When it started, epoch ms.
    pub at: u64,
    /// `delivered`, `retry`, `dead_letter`.
    pub outcome: String,
    /// The HTTP status, when one came back.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
    /// `timeout` or `unreachable` when no status came back.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Time to the answer (or to giving up), ms.
    pub latency_ms: u64,
}

impl AttemptRecord {
    /// The record of an attempt that started at `started_ms`, took `latency_ms`, and came to
    /// `result`, which the queue judged as `outcome`.
    pub fn of(outcome: &Outcome, result: AttemptResult, started_ms: u64, latency_ms: u64) -> Self {
        Self {
            event_id: outcome.delivery.event_id.clone(),
            attempt: outcome.delivery.attempts,
            at: started_ms,
            outcome: outcome.verdict.label().to_owned(),
            status: outcome.status,
            error: match result {
                AttemptResult::Timeout => Some("timeout".into()),
                AttemptResult::Unreachable => Some("unreachable".into()),
                AttemptResult::Status { .. } => None,
            },
            latency_ms,
        }
    }
}

/// Most attempt records kept per endpoint (the newest).
pub const MAX_ATTEMPT_RECORDS: usize = 100;

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]

    use super::*;
    use crate::events::Event;
    use crate::store::RoomRef;

    fn endpoint(tenant: Option<&str>, types: Vec<EventType>) -> Endpoint {
        Endpoint {
            id: endpoint_id([7; 12]),
            tenant: tenant.map(Into::into),
            url: "https://bot.example/hook".into(),
            types,
            enabled: true,
            description: None,
            secrets: vec![EndpointSecret {
                secret: WebhookSecret::from_bytes(vec![1; 32]).unwrap().expose(),
                expires_at: None,
            }],
            created_at: 1,
        }
    }

    #[test]
    fn filters_by_tenant_type_and_enabled() {
        let event = Event::member_joined(&RoomRef::new("acme", "lobby"), "bob", 5);
        assert!(endpoint(Some("acme"), vec![]).wants(&event));
        assert!(endpoint(None, vec![]).wants(&event), "operator-wide");
        assert!(!endpoint(Some("other"), vec![]).wants(&event));
        assert!(endpoint(Some("acme"), vec![EventType::MemberJoined]).wants(&event));
        assert!(!endpoint(Some("acme"), vec![EventType::MessageCreated]).wants(&event));
        let mut disabled = endpoint(Some("acme"), vec![]);
        disabled.enabled = false;
        assert!(!disabled.wants(&event));
        let test = Event::endpoint_test("acme", "ep_x", 5, 1);
        assert!(
            !endpoint(Some("acme"), vec![]).wants(&test),
            "tests go to one endpoint"
        );
        let mut newer = endpoint(Some("acme"), vec![]);
        newer.created_at = 6;
        assert!(!newer.wants(&event), "an event older than the endpoint");
        assert_eq!(endpoint_id([0xab; 12]).len(), 27);
    }

    #[test]
    fn rotation_keeps_the_old_secret_for_a_day() {
        let mut e = endpoint(Some("acme"), vec![]);
        let first = e.signing_secrets(0);
        assert_eq!(first.len(), 1);
        let new = WebhookSecret::from_bytes(vec![2; 32]).unwrap();
        e.rotate(&new, 1_000);
        let both = e.signing_secrets(1_000);
        assert_eq!(both.len(), 2);
        assert_eq!(both[0].expose(), new.expose(), "the new secret is current");
        assert_eq!(both[1].expose(), first[0].expose());
        assert_eq!(e.signing_secrets(1_000 + ROTATION_OVERLAP_MS).len(), 1);
        // A second rotation within the overlap keeps both old secrets until the first expiry
        // at the latest; a rotation after it drops the expired one.
        e.rotate(&WebhookSecret::from_bytes(vec![3; 32]).unwrap(), 2_000);
        assert_eq!(e.secrets.len(), 3);
        e.rotate(
            &WebhookSecret::from_bytes(vec![4; 32]).unwrap(),
            3_000 + ROTATION_OVERLAP_MS,
        );
        assert_eq!(e.secrets.len(), 2, "expired secrets are dropped");
        assert!(!e.public_view().to_string().contains("whsec_"));
    }
}
