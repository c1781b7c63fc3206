//! Embedding the widget without a backend (pure): a tenant's **publishable keys**, each with
//! the page origins allowed to use it and the desk's first-open profile (team, greeting, reply
//! time, avatars, office hours); the check of a browser's `Origin` against the tenant's
//! allowlist; and the claims of the short-lived **visitor tokens** `POST /embed/token` signs
//! for one `support-{visitor}` room.
//!
//! Configured with [`crate::config::names::EMBED_KEYS`], a JSON object by key:
//!
//! ```json
//! {"pk_acme_4f9a…": {"tenant": "acme", "origins": ["https://shop.example", "https://*.acme.io"],
//!   "team": "Acme support", "greeting": "Hi! How can we help?", "reply_time": "in a few minutes",
//!   "avatars": ["https://cdn.example/ann.png"],
//!   "office_hours": {"utc_offset_minutes": 60, "days": {"mon": "09:00-17:00", "sat": "10:00-12:00"}}}}
//! ```

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::auth::{Claims, Role};

/// The `kid` of visitor tokens: the verifier checks them with the embed key, not the
/// customer's.
pub const EMBED_KID: &str = "roomcast-embed";
/// How long a visitor token is accepted unless configured otherwise, seconds. The widget asks
/// for another before it runs out.
pub const DEFAULT_VISITOR_TOKEN_SECS: u64 = 3600;
/// Visitor ids the widget makes: 22 to 64 of `A-Z a-z 0-9 _ -` (the widget uses 128 random
/// bits). The id is the visitor's credential for their room, so it must be unguessable.
pub const MIN_VISITOR_ID: usize = 22;
/// See [`MIN_VISITOR_ID`].
pub const MAX_VISITOR_ID: usize = 64;

/// What the widget shows before the first message.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct DeskProfile {
    /// The team's name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub team: Option<String>,
    /// The greeting.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub greeting: Option<String>,
    /// The expected reply time, in words.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reply_time: Option<String>,
    /// Agents' avatar URLs (https only).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub avatars: Vec<String>,
    /// When the desk is staffed; outside them the widget says replies come by email.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub office_hours: Option<OfficeHours>,
}

/// Weekly opening hours at a fixed offset from UTC.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct OfficeHours {
    /// The offset of the desk's clock from UTC, minutes.
    #[serde(default)]
    pub utc_offset_minutes: i32,
    /// `mon`…`sun` → `"HH:MM-HH:MM"` (days not named are closed).
    #[serde(default)]
    pub days: BTreeMap<String, String>,
}

const DAYS: [&str; 7] = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];

impl OfficeHours {
    fn check(&self) -> Result<(), String> {
        if self.utc_offset_minutes.abs() > 14 * 60 {
            return Err("utc_offset_minutes must be within ±840".into());
        }
        for (day, span) in &self.days {
            if !DAYS.contains(&day.as_str()) {
                return Err(format!("`{day}` is not a day (mon…sun)"));
            }
            parse_span(span).ok_or_else(|| format!("`{span}` is not HH:MM-HH:MM"))?;
        }
        Ok(())
    }

    /// Whether the desk is open at `now_ms`.
    pub fn is_open(&self, now_ms: u64) -> bool {
        let local_min = (now_ms / 60_000) as i64 + i64::from(self.utc_offset_minutes);
        let day_index = (local_min.div_euclid(1440) + 3).rem_euclid(7); // 1970-01-01 was a Thursday.
        let minute = local_min.rem_euclid(1440) as u32;
        let day = DAYS[day_index as usize];
        self.days
            .get(day)
            .and_then(|span| parse_span(span))
            .is_some_and(|(from, to)| from <= minute && minute < to)
    }
}

/// `"HH:MM-HH:MM"` as minutes of the day, the end after the start (`24:00` allowed as an end).
fn parse_span(span: &str) -> Option<(u32, u32)> {
    let minutes = |t: &str| {
        let (h, m) = t.trim().split_once(':')?;
        let (h, m): (u32, u32) = (h.parse().ok()?, m.parse().ok()?);
        (m < 60 && h * 60 + m <= 1440).then_some(h * 60 + m)
    };
    let (from, to) = span.split_once('-')?;
    let (from, to) = (minutes(from)?, minutes(to)?);
    (from < to).then_some((from, to))
}

/// One publishable key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EmbedKey {
    /// The tenant it embeds.
    pub tenant: String,
    /// Page origins allowed to use it (`https://host[:port]`, or `https://*.domain` for its
    /// subdomains). Required: a key usable from anywhere would let any site chat as the tenant.
    pub origins: Vec<String>,
    /// The first-open profile.
    #[serde(flatten)]
    pub profile: DeskProfile,
}

/// What the service needs to embed: the keys, the key visitor tokens are signed with, their
/// lifetime, and the `iss`/`aud` the verifier requires.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EmbedConfig {
    /// The publishable keys (none: embedding by key is off; allowlists are not checked).
    pub keys: EmbedKeys,
    /// The HS256 key of visitor tokens ([`EMBED_KID`]); `None` when there is none.
    pub signing_key: Option<Vec<u8>>,
    /// Visitor token lifetime, seconds.
    pub token_secs: u64,
    /// `iss` of visitor tokens (the verifier's required issuer).
    pub issuer: Option<String>,
    /// `aud` of visitor tokens (the verifier's required audience).
    pub audience: Option<String>,
}

impl Default for EmbedConfig {
    fn default() -> Self {
        Self {
            keys: EmbedKeys::default(),
            signing_key: None,
            token_secs: DEFAULT_VISITOR_TOKEN_SECS,
            issuer: None,
            audience: None,
        }
    }
}

/// The configured publishable keys.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct EmbedKeys {
    keys: BTreeMap<String, EmbedKey>,
}

impl EmbedKeys {
    /// Parses [`crate::config::names::EMBED_KEYS`]; the error says what is wrong.
    pub fn parse(json: &str) -> Result<Self, String> {
        let keys: BTreeMap<String, EmbedKey> =
            serde_json::from_str(json).map_err(|e| format!("not a JSON object of keys: {e}"))?;
        for (key, k) in &keys {
            if !key.starts_with("pk_")
                || key.len() < 12
                || !key.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
            {
                return Err(format!(
                    "`{key}`: publishable keys are `pk_` and at least 9 letters, digits or `_`"
                ));
            }
            crate::protocol::validate_name("tenant", &k.tenant)
                .map_err(|e| format!("`{key}`: {}", e.message))?;
            if k.origins.is_empty() {
                return Err(format!(
                    "`{key}`: `origins` must list the pages allowed to embed"
                ));
            }
            for origin in &k.origins {
                check_origin_pattern(origin).map_err(|e| format!("`{key}`: {e}"))?;
            }
            if let Some(hours) = &k.profile.office_hours {
                hours
                    .check()
                    .map_err(|e| format!("`{key}`: office_hours: {e}"))?;
            }
            if let Some(bad) = k
                .profile
                .avatars
                .iter()
                .find(|a| !a.starts_with("https://"))
            {
                return Err(format!("`{key}`: avatar `{bad}` is not an https URL"));
            }
        }
        Ok(Self { keys })
    }

    /// Whether no key is configured.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// The key `key`, if configured.
    pub fn get(&self, key: &str) -> Option<&EmbedKey> {
        self.keys.get(key)
    }

    /// Whether a browser page at `origin` may connect as `tenant`: yes when the tenant has no
    /// publishable key (no allowlist configured) or no `Origin` was sent (not a browser);
    /// otherwise the origin must match one of its keys' origins.
    pub fn origin_allowed(&self, tenant: &str, origin: Option<&str>) -> bool {
        let Some(origin) = origin else { return true };
        let mut patterns = self
            .keys
            .values()
            .filter(|k| k.tenant == tenant)
            .flat_map(|k| k.origins.iter())
            .peekable();
        if patterns.peek().is_none() {
            return true;
        }
        patterns.any(|p| origin_matches(p, origin))
    }
}

fn check_origin_pattern(pattern: &str) -> Result<(), String> {
    let rest = pattern
        .strip_prefix("https://")
        .or_else(|| pattern.strip_prefix("http://"))
        .ok_or_else(|| format!("origin `{pattern}` must start with https:// or http://"))?;
    let host = rest.strip_prefix("*.").unwrap_or(rest);
    let ok = !host.is_empty()
        && !host.contains('*')
        && host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-.:[]".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "origin `{pattern}` is not scheme://host[:port] (no path)"
        ))
    }
}

/// Whether `origin` (as a browser sends it: `scheme://host[:port]`) matches `pattern`.
pub fn origin_matches(pattern: &str, origin: &str) -> bool {
    let (pattern, origin) = (pattern.to_ascii_lowercase(), origin.to_ascii_lowercase());
    match pattern.split_once("://*.") {
        Some((scheme, domain)) => origin
            .strip_prefix(scheme)
            .and_then(|o| o.strip_prefix("://"))
            .is_some_and(|host| host.ends_with(&format!(".{domain}"))),
        None => pattern.trim_end_matches('/') == origin,
    }
}

/// Whether `visitor` is an id the widget could have made.
pub fn is_visitor_id(visitor: &str) -> bool {
    (MIN_VISITOR_ID..=MAX_VISITOR_ID).contains(&visitor.len())
        && visitor
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// The visitor's room under `prefix`.
pub fn visitor_room(prefix: &str, visitor: &str) -> String {
    format!("{prefix}{visitor}")
}

/// The claims of a visitor token under `config`: role `user` of the key's tenant, granted
/// their room alone, for `config.token_secs`.
pub fn visitor_claims(
    config: &EmbedConfig,
    tenant: &str,
    visitor: &str,
    room: &str,
    name: Option<&str>,
    now_ms: u64,
) -> Claims {
    let now_s = now_ms / 1000;
    Claims {
        sub: Some(visitor.to_owned()),
        tid: Some(tenant.to_owned()),
        rooms: vec![room.to_owned()],
        name: name.map(str::to_owned),
        role: Role::User,
        exp: Some(now_s + config.token_secs),
        nbf: None,
        iat: Some(now_s),
        iss: config.issuer.clone(),
        aud: config.audience.clone().map(serde_json::Value::String),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CONFIG: &str = r#"{"pk_acme_0123456789": {"tenant": "acme",
        "origins": ["https://shop.example", "https://*.acme.io", "http://127.0.0.1:8080"],
        "team": "Acme", "office_hours": {"utc_offset_minutes": 60, "days": {"mon": "09:00-17:00"}}}}"#;

    #[test]
    fn keys_parse_and_origins_are_checked_per_tenant() {
        let keys = EmbedKeys::parse(CONFIG).unwrap();
        let k = keys.get("pk_acme_0123456789").unwrap();
        assert_eq!(
            (k.tenant.as_str(), k.profile.team.as_deref()),
            ("acme", Some("Acme"))
        );
        assert!(keys.origin_allowed("acme", Some("https://shop.example")));
        assert!(keys.origin_allowed("acme", Some("HTTPS://Shop.Example")));
        assert!(keys.origin_allowed("acme", Some("https://help.acme.io")));
        assert!(keys.origin_allowed("acme", Some("http://127.0.0.1:8080")));
        assert!(!keys.origin_allowed("acme", Some("https://acme.io.evil.example")));
        assert!(!keys.origin_allowed("acme", Some("http://shop.example")));
        assert!(!keys.origin_allowed("acme", Some("https://shop.example:444")));
        assert!(!keys.origin_allowed("acme", Some("null")));
        assert!(keys.origin_allowed("acme", None), "not a browser");
        assert!(
            keys.origin_allowed("other", Some("https://evil.example")),
            "no allowlist"
        );
    }

    #[test]
    fn bad_configurations_say_why() {
        for (json, says) in [
            ("[]", "JSON object"),
            (
                r#"{"sk_x_0123456789": {"tenant": "a", "origins": ["https://a.io"]}}"#,
                "pk_",
            ),
            (
                r#"{"pk_a_0123456789": {"tenant": "a", "origins": []}}"#,
                "origins",
            ),
            (
                r#"{"pk_a_0123456789": {"tenant": "a", "origins": ["a.io"]}}"#,
                "https://",
            ),
            (
                r#"{"pk_a_0123456789": {"tenant": "a", "origins": ["https://a.io/path"]}}"#,
                "no path",
            ),
            (
                r#"{"pk_a_0123456789": {"tenant": "a b", "origins": ["https://a.io"]}}"#,
                "tenant",
            ),
            (
                r#"{"pk_a_0123456789": {"tenant": "a", "origins": ["https://a.io"], "avatars": ["http://x"]}}"#,
                "https",
            ),
            (
                r#"{"pk_a_0123456789": {"tenant": "a", "origins": ["https://a.io"], "office_hours": {"days": {"mo": "09:00-17:00"}}}}"#,
                "not a day",
            ),
            (
                r#"{"pk_a_0123456789": {"tenant": "a", "origins": ["https://a.io"], "office_hours": {"days": {"mon": "17:00-09:00"}}}}"#,
                "HH:MM",
            ),
        ] {
            let e = EmbedKeys::parse(json).unwrap_err();
            assert!(e.contains(says), "{json}: {e}");
        }
    }

    #[test]
    fn office_hours_at_an_offset() {
        let hours = EmbedKeys::parse(CONFIG)
            .unwrap()
            .get("pk_acme_0123456789")
            .unwrap()
            .profile
            .office_hours
            .clone()
            .unwrap();
        // 2026-12-07 is a Monday. 08:30 UTC is 09:30 at +01:00.
        let monday_0830_utc = 1_796_601_600_000 + 8 * 3_600_000 + 30 * 60_000;
        assert!(hours.is_open(monday_0830_utc));
        assert!(
            !hours.is_open(monday_0830_utc - 3_600_000),
            "07:30 UTC is 08:30 there"
        );
        assert!(
            !hours.is_open(monday_0830_utc + 24 * 3_600_000),
            "Tuesday is closed"
        );
    }

    #[test]
    fn visitor_ids_and_claims() {
        assert!(is_visitor_id("v_0123456789abcdefghijkl"));
        assert!(!is_visitor_id("short"));
        assert!(!is_visitor_id("v_0123456789abcdefghijkl/"));
        let config = EmbedConfig {
            token_secs: 60,
            issuer: Some("iss".into()),
            ..EmbedConfig::default()
        };
        let c = visitor_claims(&config, "acme", "v_x", "support-v_x", Some("Zoë"), 5_000);
        assert_eq!(
            (c.rooms, c.exp, c.role),
            (vec!["support-v_x".to_owned()], Some(65), Role::User)
        );
    }
}
