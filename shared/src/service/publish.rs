//! What the service does for its HTTP API and for itself: `admit_request` (each user's request
//! rate), a server-side `publish` (role `service`), a `history_page` for a granted room, and
//! `record`, which stores and delivers the messages the service writes itself (publishes, desk
//! notices), through the relay when their room lives elsewhere.

use super::fanout::Skip;
use super::messages::work_tokens;
use super::{ChatService, unavailable};
use crate::attachments::{AttachmentRef, claimant};
use crate::auth::{Identity, Role};
use crate::limits::MAX_HISTORY_LIMIT;
use crate::protocol::{
    ErrorCode, Rejection, validate_attachment_refs, validate_client_id, validate_message_body,
    validate_meta, validate_name,
};
use crate::ratelimit::RateDecision;
use crate::store::{Appended, HistoryQuery, NewMessage, Page, RateBucket, RoomRef, StoreError};
use crate::support::INBOX_ROOM;

/// A server-side publish (HTTP, role `service`).
#[derive(Debug, Clone, PartialEq)]
pub struct Publish {
    /// Idempotency key.
    pub id: String,
    /// Text.
    pub body: String,
    /// Application data.
    pub meta: Option<serde_json::Value>,
    /// Sender shown to clients (a bot's user id); the token's `sub` when absent.
    pub from: Option<String>,
    /// Files uploaded by the token's holder in this room.
    pub attachments: Vec<AttachmentRef>,
    /// The seq of the message of the room it answers (protocol 1.1).
    pub reply_to: Option<u64>,
}

/// The rule of [`ChatService::admit_request`] once the store answered.
pub(super) fn request_admission(
    user: &str,
    decision: Result<RateDecision, StoreError>,
) -> Result<(), Rejection> {
    match decision {
        Ok(RateDecision::Allow) => Ok(()),
        // No connection to close: every refusal is an answer.
        Ok(RateDecision::Reject | RateDecision::Close) | Err(StoreError::Conflict(_)) => Err(
            Rejection::new(ErrorCode::RateLimited, "too many requests: slow down"),
        ),
        Err(e) => {
            tracing::warn!(user, error = %e, "request rate token not taken; request let through");
            Ok(())
        }
    }
}

impl ChatService {
    /// Takes the rate token of an HTTP API request by `identity`: one bucket per user and
    /// tenant under [`super::ServiceConfig::rate`], kept by the connection store (HTTP requests
    /// of one user may reach any instance). `RATE_LIMITED` when it is empty, and when the
    /// user's concurrent requests kept changing it (`Conflict`: a backend with optimistic
    /// writes would otherwise let a flood of parallel requests through); any other store
    /// failure lets the request through, as frames are.
    pub async fn admit_request(&self, identity: &Identity, now_ms: u64) -> Result<(), Rejection> {
        let decision = self
            .connections
            .take_request_token(&identity.tenant, &identity.user, &self.config.rate, now_ms)
            .await;
        request_admission(&identity.user, decision)?;
        if identity.role == crate::auth::Role::User
            && self
                .is_blocked(&identity.tenant, &identity.user)
                .await
                .map_err(unavailable)?
        {
            return Err(Rejection::new(
                ErrorCode::Forbidden,
                "blocked by the support team",
            ));
        }
        Ok(())
    }

    /// Stores a message the service itself writes (a server-side publish, a desk event) and
    /// delivers it to the room unless it was already stored. Rooms this service is not bound to
    /// go through the relay, which delivers them where they live. Returns what was stored and the
    /// frames delivered here.
    pub async fn record(
        &self,
        room: &RoomRef,
        message: NewMessage,
        now_ms: u64,
    ) -> Result<(Appended, usize), Rejection> {
        let elsewhere = self
            .config
            .bound_room
            .as_ref()
            .is_some_and(|bound| *bound != room.room);
        if let (true, Some(relay)) = (elsewhere, &self.relay) {
            let appended = relay.record(room, message).await.map_err(unavailable)?;
            return Ok((appended, 0));
        }
        let in_flight = self.in_flight(room, now_ms);
        let appended = self
            .history
            .append(room, message)
            .await
            .map_err(unavailable)?;
        let delivered = if appended.duplicate {
            0
        } else {
            self.deliver_message(
                in_flight,
                room,
                appended.message.clone(),
                Skip::Nobody,
                now_ms,
            )
            .await
        };
        Ok((appended, delivered))
    }

    /// Server-side publish (HTTP, role `service`): stores and fans out to every connection. The
    /// message names the service in `via`, so nobody (`from` included) can change it over the
    /// WebSocket.
    pub async fn publish(
        &self,
        identity: &Identity,
        room: &str,
        publish: Publish,
        now_ms: u64,
    ) -> Result<Appended, Rejection> {
        if identity.role != Role::Service {
            return Err(Rejection::new(
                ErrorCode::Forbidden,
                "publishing needs role `service`",
            ));
        }
        validate_name("room", room)?;
        if room == INBOX_ROOM {
            // The desk's queue: only the service's own status notices may appear there.
            return Err(Rejection::new(
                ErrorCode::Forbidden,
                "only the service writes in the inbox",
            ));
        }
        validate_client_id(&publish.id)?;
        validate_attachment_refs(&publish.attachments)?;
        validate_message_body(&publish.body, !publish.attachments.is_empty())?;
        validate_meta(publish.meta.as_ref())?;
        // A bot named in `from` is not the service token's holder: do not show its name.
        let (from, name) = match publish.from {
            Some(from) => (from, None),
            None => (identity.user.clone(), identity.name.clone()),
        };
        validate_name("from", &from)?;
        let r = RoomRef::new(&identity.tenant, room);
        let reply_to = self.reply_reference(&r, publish.reply_to).await?;
        let claim = claimant(&from, &publish.id);
        let attachments = self
            .attach(&r, &identity.user, &claim, &publish.attachments, now_ms)
            .await?;
        let msg = NewMessage {
            id: publish.id,
            from,
            name,
            role: Role::Service,
            via: Some(identity.user.clone()),
            body: publish.body,
            meta: publish.meta,
            attachments,
            reply_to,
            ts: now_ms,
        };
        self.record(&r, msg, now_ms)
            .await
            .map(|(appended, _)| appended)
    }

    /// History over HTTP: any room the token grants (every room of the tenant for `service`).
    /// The page is cut as a `history` frame's is ([`fit_page`]), and its size charged to the
    /// user's request rate.
    pub async fn history_page(
        &self,
        identity: &Identity,
        room: &str,
        query: HistoryQuery,
        now_ms: u64,
    ) -> Result<Page, Rejection> {
        validate_name("room", room)?;
        if query.limit == 0 || query.limit > MAX_HISTORY_LIMIT {
            return Err(Rejection::new(
                ErrorCode::Invalid,
                format!("limit must be 1..={MAX_HISTORY_LIMIT}"),
            ));
        }
        let r = self.granted_room(identity, room)?;
        let page = self.client_page(&r, query).await?;
        let bucket = RateBucket::Requests {
            tenant: &identity.tenant,
            user: &identity.user,
        };
        self.charge(bucket, work_tokens(&page.messages), now_ms)
            .await;
        Ok(page)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_are_refused_when_limited_or_contended_and_let_through_on_failures() {
        let limited = Err(Rejection::new(
            ErrorCode::RateLimited,
            "too many requests: slow down",
        ));
        assert_eq!(request_admission("u", Ok(RateDecision::Allow)), Ok(()));
        assert_eq!(request_admission("u", Ok(RateDecision::Reject)), limited);
        assert_eq!(request_admission("u", Ok(RateDecision::Close)), limited);
        // Parallel requests kept changing the bucket: a flood, not a failure.
        let contended = Err(StoreError::Conflict("kept changing".into()));
        assert_eq!(request_admission("u", contended), limited);
        let down = Err(StoreError::Unavailable("throttled".into()));
        assert_eq!(request_admission("u", down), Ok(()));
    }
}
