//! `POST /embed/token`: a page holding a tenant's publishable key gets a short-lived visitor
//! token for one `support-{visitor}` room, and what the widget shows before the first message
//! (team, greeting, reply time, avatars, whether the desk is open and how many agents are
//! online). The page's `Origin` must be on the key's allowlist; requests are rate-limited per
//! key and per client address. The rules are in [`crate::support::embed`].

use serde::Serialize;

use super::ChatService;
use super::publish::request_admission;
use crate::auth::TokenSigner;
use crate::protocol::{ErrorCode, Rejection};
use crate::ratelimit::RatePolicy;
use crate::store::DeskKind;
use crate::support::embed::{
    DeskProfile, EMBED_KID, EmbedKey, EmbedKeys, is_visitor_id, origin_matches, visitor_claims,
    visitor_room,
};
use crate::support::parse_doc;
use crate::support::roster::{AgentState, Availability};

/// Token requests per publishable key: a busy site's page loads.
const PER_KEY: RatePolicy = RatePolicy {
    burst: 200,
    per_sec: 50,
    max_strikes: 0,
};
/// Token requests per client address: a visitor needs one an hour; a burst covers reloads and
/// several tabs.
const PER_ADDRESS: RatePolicy = RatePolicy {
    burst: 20,
    per_sec: 1,
    max_strikes: 0,
};

/// What `POST /embed/token` asks.
#[derive(Debug, Clone, serde::Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct TokenRequest {
    /// The publishable key.
    pub key: String,
    /// The visitor's id, made and kept by the widget.
    pub visitor: String,
    /// A name the page knows (a signed-in user's), shown to agents until the visitor gives one.
    #[serde(default)]
    pub name: Option<String>,
}

/// What it answers.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct VisitorToken {
    /// The token (HS256, `kid` [`EMBED_KID`]).
    pub token: String,
    /// The visitor's id.
    pub visitor: String,
    /// Their room.
    pub room: String,
    /// When the token stops being accepted, epoch milliseconds.
    pub expires_at: u64,
    /// The first-open state.
    pub desk: DeskState,
}

/// What the widget shows before the first message.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct DeskState {
    /// The key's profile.
    #[serde(flatten)]
    pub profile: DeskProfile,
    /// Within office hours (always, without any).
    pub open: bool,
    /// Agents online now.
    pub agents_online: usize,
}

/// The configured key `key`; `FORBIDDEN` for an unknown one.
pub fn key_of<'a>(keys: &'a EmbedKeys, key: &str) -> Result<&'a EmbedKey, Rejection> {
    keys.get(key)
        .ok_or_else(|| Rejection::new(ErrorCode::Forbidden, "unknown publishable key"))
}

impl ChatService {
    /// Answers a visitor token request from a page at `origin` (its `Origin` header) and
    /// `client` (its address).
    pub async fn embed_token(
        &self,
        request: TokenRequest,
        origin: Option<&str>,
        client: Option<&str>,
        now_ms: u64,
    ) -> Result<VisitorToken, Rejection> {
        let embed = &self.config.embed;
        let forbidden = |message: &str| Rejection::new(ErrorCode::Forbidden, message);
        let key = key_of(&embed.keys, &request.key)?;
        let origin = origin
            .ok_or_else(|| forbidden("publishable keys are for browser pages (no Origin)"))?;
        if !key.origins.iter().any(|p| origin_matches(p, origin)) {
            return Err(forbidden(
                "this page's origin is not allowed to use the key",
            ));
        }
        let bucket = |name: String, policy| async move {
            let decision = self
                .connections
                .take_request_token(&key.tenant, &name, &policy, now_ms)
                .await;
            request_admission(&name, decision)
        };
        // `$` cannot start a user id, so these buckets are nobody's.
        bucket(format!("$embed-key:{}", request.key), PER_KEY).await?;
        if let Some(client) = client {
            bucket(format!("$embed-ip:{client}"), PER_ADDRESS).await?;
        }
        if !is_visitor_id(&request.visitor) {
            return Err(Rejection::new(
                ErrorCode::Invalid,
                "visitor must be 22-64 letters, digits, `_` or `-` (128 random bits)",
            ));
        }
        if self
            .is_blocked(&key.tenant, &request.visitor)
            .await
            .map_err(super::unavailable)?
        {
            return Err(forbidden("blocked by the support team"));
        }
        let signing_key = embed.signing_key.as_deref().ok_or_else(|| {
            Rejection::new(ErrorCode::Unavailable, "visitor tokens are not configured")
        })?;
        let room = visitor_room(&self.config.support_room_prefix, &request.visitor);
        let name = request
            .name
            .as_deref()
            .map(|n| crate::support::visitor::checked_identity(Some(n), None))
            .transpose()?
            .and_then(|v| v.name);
        let claims = visitor_claims(
            embed,
            &key.tenant,
            &request.visitor,
            &room,
            name.as_deref(),
            now_ms,
        );
        let token = TokenSigner::hs256(signing_key)
            .with_kid(EMBED_KID)
            .sign(&claims);
        let agents_online = match &self.desk {
            Some(desk) => desk
                .desk_records(
                    &key.tenant,
                    DeskKind::Agent,
                    crate::store::desk::MAX_DESK_RECORDS,
                )
                .await
                .map_err(super::unavailable)?
                .iter()
                .filter_map(|r| parse_doc::<AgentState>(&r.doc).ok())
                .filter(|a| a.status == Availability::Online)
                .count(),
            None => 0,
        };
        let open = key
            .profile
            .office_hours
            .as_ref()
            .is_none_or(|hours| hours.is_open(now_ms));
        Ok(VisitorToken {
            token,
            visitor: request.visitor,
            room,
            expires_at: (now_ms / 1000 + embed.token_secs) * 1000,
            desk: DeskState {
                profile: key.profile.clone(),
                open,
                agents_online,
            },
        })
    }
}
