//! One configuration for every deployment: the settings the chat service, token verification
//! and the connection lifecycle need, parsed once from a lookup function with one set of names,
//! defaults and errors.
//!
//! Each deployment only supplies the lookup: the Lambda functions their environment (with the
//! key read from SSM), the Worker its `[vars]` and secrets, the local server its command line
//! (every flag maps to one of the [`names`]) over its environment. A value that is empty or only
//! white space counts as unset, because deploy templates cannot always leave a variable out.
//! Settings only one deployment has (the DynamoDB table, the local data directory) are parsed by
//! that deployment with the same [`Lookup`], so their errors read the same.

use std::fmt;
use std::str::FromStr;

use crate::attachments::link::MIN_KEY_BYTES as MIN_LINK_KEY_BYTES;
use crate::attachments::{AttachmentPolicy, LinkSigner, UploadQuota};
use crate::auth::{AuthConfig, TokenVerifier, VerifyKey};
use crate::events::{EventType, RetryPolicy, WebhookSecret};
use crate::lifecycle::LifecyclePolicy;
use crate::limits::{
    DEFAULT_IDLE_TIMEOUT_MS, DEFAULT_MAX_CONNECTION_MS, DEFAULT_MAX_CONNECTIONS_PER_USER,
    DEFAULT_PRESENCE_MAX_CONNECTIONS,
};
use crate::ratelimit::RatePolicy;
use crate::service::ServiceConfig;
use crate::support::embed::{DEFAULT_VISITOR_TOKEN_SECS, EMBED_KID, EmbedConfig, EmbedKeys};

/// The names of the settings, as environment variables, wrangler vars and the local server's
/// environment fallbacks for its flags.
pub mod names {
    /// HS256 secret.
    pub const JWT_SECRET: &str = "ROOMCAST_JWT_SECRET";
    /// PEM public key (RS256 or ES256), instead of the secret.
    pub const JWT_PUBLIC_KEY: &str = "ROOMCAST_JWT_PUBLIC_KEY";
    /// `HS256`, `RS256` or `ES256`; by default HS256 with a secret, RS256 with a public key.
    pub const JWT_ALG: &str = "ROOMCAST_JWT_ALG";
    /// Further verification keys, chosen by a token's `kid` header: a JWKS document (RFC 7517
    /// §5, `{"keys": [...]}`) of `oct` (HS256), `RSA` (RS256) and `EC` P-256 (ES256) keys, each
    /// with its `kid`. Keys rotate by adding the next one here, signing with it, then retiring
    /// the old.
    pub const JWT_JWKS: &str = "ROOMCAST_JWT_JWKS";
    /// Required `iss`.
    pub const JWT_ISSUER: &str = "ROOMCAST_JWT_ISSUER";
    /// Required `aud`.
    pub const JWT_AUDIENCE: &str = "ROOMCAST_JWT_AUDIENCE";
    /// Clock skew tolerated on `exp` / `nbf`, seconds (default 0).
    pub const JWT_LEEWAY_SECS: &str = "ROOMCAST_JWT_LEEWAY_SECS";
    /// Frames per second per connection, sustained.
    pub const RATE_PER_SEC: &str = "ROOMCAST_RATE_PER_SEC";
    /// Frames per connection in a burst.
    pub const RATE_BURST: &str = "ROOMCAST_RATE_BURST";
    /// Live connections per user (more are refused with 429).
    pub const MAX_CONNECTIONS_PER_USER: &str = "ROOMCAST_MAX_CONNECTIONS_PER_USER";
    /// Most connections a room holds with the presence of individuals (100); a bigger room
    /// announces its occupancy instead (protocol.md §17).
    pub const PRESENCE_MAX_CONNECTIONS: &str = "ROOMCAST_PRESENCE_MAX_CONNECTIONS";
    /// Close connections without inbound data for this long, seconds (1001).
    pub const IDLE_TIMEOUT_SECS: &str = "ROOMCAST_IDLE_TIMEOUT_SECS";
    /// Close every connection after this long, seconds (1001).
    pub const MAX_CONNECTION_SECS: &str = "ROOMCAST_MAX_CONNECTION_SECS";
    /// Log level: `error`, `warn`, `info` (default), `debug` or `trace`.
    pub const LOG: &str = "ROOMCAST_LOG";
    /// An operator-wide webhook endpoint: every tenant's integration events are POSTed here.
    pub const WEBHOOK_URL: &str = "ROOMCAST_WEBHOOK_URL";
    /// Its `whsec_` secret (required with the URL).
    pub const WEBHOOK_SECRET: &str = "ROOMCAST_WEBHOOK_SECRET";
    /// Its event types, comma-separated (default: every type).
    pub const WEBHOOK_TYPES: &str = "ROOMCAST_WEBHOOK_TYPES";
    /// Development mode for webhook endpoints: allow loopback and private addresses (never in
    /// production: a tenant could reach the deployment's network).
    pub const WEBHOOK_ALLOW_PRIVATE: &str = "ROOMCAST_WEBHOOK_ALLOW_PRIVATE";
    /// A webhook attempt without an answer within this is a timeout, milliseconds (15000).
    pub const WEBHOOK_TIMEOUT_MS: &str = "ROOMCAST_WEBHOOK_TIMEOUT_MS";
    /// Backoff after a delivery's first failure, milliseconds (5000); it doubles after each
    /// further one, to at most two hours.
    pub const WEBHOOK_FIRST_RETRY_MS: &str = "ROOMCAST_WEBHOOK_FIRST_RETRY_MS";
    /// How long a delivery is retried before it is dead-lettered, seconds (86400).
    pub const WEBHOOK_RETRY_FOR_SECS: &str = "ROOMCAST_WEBHOOK_RETRY_FOR_SECS";

    /// Largest attachment, bytes (10 MB).
    pub const ATTACHMENT_MAX_BYTES: &str = "ROOMCAST_ATTACHMENT_MAX_BYTES";
    /// Allowed attachment types, comma-separated MIME types (default: raster images, PDF,
    /// text, CSV, SVG as a download, the office formats).
    pub const ATTACHMENT_TYPES: &str = "ROOMCAST_ATTACHMENT_TYPES";
    /// Upload slots per user per UTC day (200).
    pub const UPLOADS_PER_USER_DAY: &str = "ROOMCAST_UPLOADS_PER_USER_DAY";
    /// Declared upload bytes per user per UTC day (500 MB).
    pub const UPLOAD_BYTES_PER_USER_DAY: &str = "ROOMCAST_UPLOAD_BYTES_PER_USER_DAY";
    /// Upload slots per tenant per UTC day (20,000).
    pub const UPLOADS_PER_TENANT_DAY: &str = "ROOMCAST_UPLOADS_PER_TENANT_DAY";
    /// Declared upload bytes per tenant per UTC day (20 GB).
    pub const UPLOAD_BYTES_PER_TENANT_DAY: &str = "ROOMCAST_UPLOAD_BYTES_PER_TENANT_DAY";
    /// The key upload and download links are signed with where the deployment serves the bytes
    /// itself (the local server, the edge), at least 32 bytes; by default derived from the
    /// HS256 token secret.
    pub const ATTACHMENT_LINK_SECRET: &str = "ROOMCAST_ATTACHMENT_LINK_SECRET";

    /// Publishable keys for embedding the widget without a backend: a JSON object by key
    /// (`pk_…`) of `{"tenant", "origins": [...], "team"?, "greeting"?, "reply_time"?,
    /// "avatars"?, "office_hours"?}` ([`crate::support::embed`]).
    pub const EMBED_KEYS: &str = "ROOMCAST_EMBED_KEYS";
    /// The key visitor tokens are signed with (HS256, at least 32 bytes); by default derived
    /// from the HS256 token secret.
    pub const EMBED_SECRET: &str = "ROOMCAST_EMBED_SECRET";
    /// Visitor token lifetime, seconds (3600).
    pub const EMBED_TOKEN_SECS: &str = "ROOMCAST_EMBED_TOKEN_SECS";

    /// Every name [`super::Settings::from_lookup`] reads.
    pub const ALL: &[&str] = &[
        JWT_SECRET,
        JWT_PUBLIC_KEY,
        JWT_ALG,
        JWT_JWKS,
        JWT_ISSUER,
        JWT_AUDIENCE,
        JWT_LEEWAY_SECS,
        RATE_PER_SEC,
        RATE_BURST,
        MAX_CONNECTIONS_PER_USER,
        PRESENCE_MAX_CONNECTIONS,
        IDLE_TIMEOUT_SECS,
        MAX_CONNECTION_SECS,
        LOG,
        WEBHOOK_URL,
        WEBHOOK_SECRET,
        WEBHOOK_TYPES,
        WEBHOOK_ALLOW_PRIVATE,
        WEBHOOK_TIMEOUT_MS,
        WEBHOOK_FIRST_RETRY_MS,
        WEBHOOK_RETRY_FOR_SECS,
        ATTACHMENT_MAX_BYTES,
        ATTACHMENT_TYPES,
        UPLOADS_PER_USER_DAY,
        UPLOAD_BYTES_PER_USER_DAY,
        UPLOADS_PER_TENANT_DAY,
        UPLOAD_BYTES_PER_TENANT_DAY,
        ATTACHMENT_LINK_SECRET,
        EMBED_KEYS,
        EMBED_SECRET,
        EMBED_TOKEN_SECS,
    ];
}

/// Why a configuration cannot work. Every deployment refuses to start with one (the Lambda
/// init fails, the Worker answers 500 and logs it, the local server exits).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// Neither a secret nor a public key is set.
    #[error(
        "no token key: set {} (HS256) or {} (RS256/ES256)",
        names::JWT_SECRET,
        names::JWT_PUBLIC_KEY
    )]
    MissingKey,
    /// Both a secret and a public key are set.
    #[error("set {} or {}, not both", names::JWT_SECRET, names::JWT_PUBLIC_KEY)]
    ConflictingKeys,
    /// An HS256 secret shorter than the hash: anyone could guess it and forge tokens, the
    /// `service` role's included (RFC 7518 §3.2 requires at least 256 bits).
    #[error(
        "{}: an HS256 secret needs at least {MIN_HS256_SECRET_BYTES} bytes, this one has {bytes} \
         (generate one with `openssl rand -base64 48`)",
        names::JWT_SECRET
    )]
    WeakSecret {
        /// The secret's length, bytes.
        bytes: usize,
    },
    /// The algorithm does not go with the key that is set.
    #[error("{}={alg} needs {needs}", names::JWT_ALG)]
    KeyDoesNotMatchAlgorithm {
        /// The algorithm asked for.
        alg: String,
        /// The setting it needs.
        needs: &'static str,
    },
    /// The key does not load.
    #[error("{name}: {problem}")]
    BadKey {
        /// The setting holding the key.
        name: &'static str,
        /// Why it does not load.
        problem: String,
    },
    /// A value does not parse or is out of range.
    #[error("{name}: {problem}")]
    Invalid {
        /// The setting.
        name: &'static str,
        /// What is wrong with its value.
        problem: String,
    },
}

/// The shortest HS256 secret accepted, bytes: the hash's output size (RFC 7518 §3.2).
pub const MIN_HS256_SECRET_BYTES: usize = 32;

/// Refuses an HS256 secret shorter than [`MIN_HS256_SECRET_BYTES`].
pub fn check_hs256_secret(secret: &[u8]) -> Result<(), ConfigError> {
    if secret.len() < MIN_HS256_SECRET_BYTES {
        return Err(ConfigError::WeakSecret {
            bytes: secret.len(),
        });
    }
    Ok(())
}

/// How much to log.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LogLevel {
    /// Errors only.
    Error,
    /// Warnings and errors.
    Warn,
    /// The default.
    #[default]
    Info,
    /// Per-frame detail.
    Debug,
    /// Everything.
    Trace,
}

impl LogLevel {
    /// The level's name, as `tracing` filters spell it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Error => "error",
            Self::Warn => "warn",
            Self::Info => "info",
            Self::Debug => "debug",
            Self::Trace => "trace",
        }
    }
}

impl FromStr for LogLevel {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "error" => Ok(Self::Error),
            "warn" => Ok(Self::Warn),
            "info" => Ok(Self::Info),
            "debug" => Ok(Self::Debug),
            "trace" => Ok(Self::Trace),
            _ => Err("must be error, warn, info, debug or trace".to_owned()),
        }
    }
}

/// Everything every deployment configures the same way.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// Token verification.
    pub auth: AuthConfig,
    /// The chat service's tunables.
    pub service: ServiceConfig,
    /// When connections are closed for idleness, age and token expiry.
    pub lifecycle: LifecyclePolicy,
    /// Log level.
    pub log: LogLevel,
    /// Integration events.
    pub events: EventsConfig,
    /// Attachments.
    pub attachments: AttachmentsConfig,
}

/// What uploads are allowed and how links are signed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttachmentsConfig {
    /// Size limit and type allowlist.
    pub policy: AttachmentPolicy,
    /// Per-day quotas.
    pub quota: UploadQuota,
    /// The key of signed links ([`names::ATTACHMENT_LINK_SECRET`], or derived from the HS256
    /// token secret); `None` when neither is set.
    pub link_key: Option<Vec<u8>>,
}

impl AttachmentsConfig {
    /// The link signer of a deployment that serves the bytes itself; an error naming the
    /// setting when there is no key.
    pub fn link_signer(&self) -> Result<LinkSigner, ConfigError> {
        self.link_key
            .as_deref()
            .and_then(LinkSigner::new)
            .ok_or(ConfigError::Invalid {
                name: names::ATTACHMENT_LINK_SECRET,
                problem: format!(
                    "required (at least {MIN_LINK_KEY_BYTES} bytes) with an RS256 or ES256 token key"
                ),
            })
    }
}

fn attachments_config(
    lookup: &Lookup<impl Fn(&str) -> Option<String>>,
    auth: &AuthConfig,
) -> Result<AttachmentsConfig, ConfigError> {
    let defaults = AttachmentPolicy::default();
    let types = match lookup.string(names::ATTACHMENT_TYPES) {
        None => defaults.types,
        Some(list) => list
            .split(',')
            .map(|t| t.trim().to_ascii_lowercase())
            .filter(|t| !t.is_empty())
            .map(|t| {
                if t.contains('/') && !t.contains(';') {
                    Ok(t)
                } else {
                    Err(ConfigError::Invalid {
                        name: names::ATTACHMENT_TYPES,
                        problem: format!("`{t}` is not a MIME type"),
                    })
                }
            })
            .collect::<Result<_, _>>()?,
    };
    let policy = AttachmentPolicy {
        max_bytes: lookup.positive(names::ATTACHMENT_MAX_BYTES, defaults.max_bytes)?,
        types,
    };
    let q = UploadQuota::default();
    let quota = UploadQuota {
        user_count: lookup.positive(names::UPLOADS_PER_USER_DAY, q.user_count)?,
        user_bytes: lookup.positive(names::UPLOAD_BYTES_PER_USER_DAY, q.user_bytes)?,
        tenant_count: lookup.positive(names::UPLOADS_PER_TENANT_DAY, q.tenant_count)?,
        tenant_bytes: lookup.positive(names::UPLOAD_BYTES_PER_TENANT_DAY, q.tenant_bytes)?,
    };
    let link_key = match lookup.string(names::ATTACHMENT_LINK_SECRET) {
        Some(secret) if secret.len() < MIN_LINK_KEY_BYTES => {
            return Err(ConfigError::Invalid {
                name: names::ATTACHMENT_LINK_SECRET,
                problem: format!("needs at least {MIN_LINK_KEY_BYTES} bytes"),
            });
        }
        Some(secret) => Some(secret.into_bytes()),
        None => match &auth.key {
            // A key of its own, derived: a leaked link key must not sign tokens.
            VerifyKey::Hs256(secret) => Some(derive_link_key(secret)),
            _ => None,
        },
    };
    Ok(AttachmentsConfig {
        policy,
        quota,
        link_key,
    })
}

/// HMAC-SHA256 of a fixed label under the token secret.
fn derive_link_key(secret: &[u8]) -> Vec<u8> {
    derive_key(secret, b"roomcast attachment links v1")
}

/// A key of its own for `label`, derived from the token secret: a leaked derived key signs
/// nothing else.
fn derive_key(secret: &[u8], label: &[u8]) -> Vec<u8> {
    use hmac::{Hmac, Mac};
    // Invariant: HMAC takes keys of any length.
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(secret).expect("HMAC accepts any key");
    mac.update(label);
    mac.finalize().into_bytes().to_vec()
}

fn embed_config(
    lookup: &Lookup<impl Fn(&str) -> Option<String>>,
    auth: &AuthConfig,
) -> Result<EmbedConfig, ConfigError> {
    let keys = match lookup.string(names::EMBED_KEYS) {
        None => EmbedKeys::default(),
        Some(json) => EmbedKeys::parse(&json).map_err(|problem| ConfigError::Invalid {
            name: names::EMBED_KEYS,
            problem,
        })?,
    };
    let signing_key = match lookup.string(names::EMBED_SECRET) {
        Some(secret) if secret.len() < MIN_LINK_KEY_BYTES => {
            return Err(ConfigError::Invalid {
                name: names::EMBED_SECRET,
                problem: format!("needs at least {MIN_LINK_KEY_BYTES} bytes"),
            });
        }
        Some(secret) => Some(secret.into_bytes()),
        None if keys.is_empty() => None,
        None => match &auth.key {
            VerifyKey::Hs256(secret) => Some(derive_key(secret, b"roomcast visitor tokens v1")),
            _ => None,
        },
    };
    if !keys.is_empty() && signing_key.is_none() {
        return Err(ConfigError::Invalid {
            name: names::EMBED_SECRET,
            problem: format!(
                "required with {} when tokens are verified with a public key",
                names::EMBED_KEYS
            ),
        });
    }
    Ok(EmbedConfig {
        keys,
        signing_key,
        token_secs: lookup.positive(names::EMBED_TOKEN_SECS, DEFAULT_VISITOR_TOKEN_SECS)?,
        issuer: auth.issuer.clone(),
        audience: auth.audience.clone(),
    })
}

/// What integration events the deployment's configuration sets up (tenants add endpoints over
/// the HTTP API).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventsConfig {
    /// The operator-wide endpoint, when [`names::WEBHOOK_URL`] is set.
    pub operator: Option<OperatorEndpoint>,
    /// [`names::WEBHOOK_ALLOW_PRIVATE`].
    pub allow_private: bool,
    /// How deliveries are retried.
    pub retry: RetryPolicy,
}

/// The operator-wide endpoint of [`EventsConfig`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OperatorEndpoint {
    /// Where deliveries go.
    pub url: String,
    /// `whsec_…`.
    pub secret: String,
    /// Event types (empty: every type).
    pub types: Vec<EventType>,
}

fn events_config(
    lookup: &Lookup<impl Fn(&str) -> Option<String>>,
) -> Result<EventsConfig, ConfigError> {
    let allow_private = lookup.flag(names::WEBHOOK_ALLOW_PRIVATE)?;
    let defaults = RetryPolicy::default();
    let retry = RetryPolicy {
        attempt_timeout_ms: lookup
            .positive(names::WEBHOOK_TIMEOUT_MS, defaults.attempt_timeout_ms)?,
        first_delay_ms: lookup.positive(names::WEBHOOK_FIRST_RETRY_MS, defaults.first_delay_ms)?,
        give_up_after_ms: lookup
            .positive(
                names::WEBHOOK_RETRY_FOR_SECS,
                defaults.give_up_after_ms / 1000,
            )?
            .saturating_mul(1000),
        ..defaults
    };
    let Some(url) = lookup.string(names::WEBHOOK_URL) else {
        return Ok(EventsConfig {
            operator: None,
            allow_private,
            retry,
        });
    };
    let invalid = |name, problem: String| ConfigError::Invalid { name, problem };
    crate::events::endpoint::parse_endpoint_url(&url)
        .map_err(|e| invalid(names::WEBHOOK_URL, e.to_string()))?;
    let secret = lookup.string(names::WEBHOOK_SECRET).ok_or_else(|| {
        invalid(
            names::WEBHOOK_SECRET,
            format!("required with {}", names::WEBHOOK_URL),
        )
    })?;
    WebhookSecret::parse(&secret).map_err(|e| invalid(names::WEBHOOK_SECRET, e.to_string()))?;
    let types = match lookup.string(names::WEBHOOK_TYPES) {
        None => Vec::new(),
        Some(list) => list
            .split(',')
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .map(|t| {
                EventType::parse(t)
                    .ok_or_else(|| invalid(names::WEBHOOK_TYPES, format!("no event type `{t}`")))
            })
            .collect::<Result<_, _>>()?,
    };
    Ok(EventsConfig {
        operator: Some(OperatorEndpoint { url, secret, types }),
        allow_private,
        retry,
    })
}

/// A lookup of setting values by name, treating empty values as unset, with typed parsing that
/// reports errors one way.
pub struct Lookup<F> {
    get: F,
}

impl<F: Fn(&str) -> Option<String>> Lookup<F> {
    /// Wraps `get` (an environment, wrangler vars, a command line mapped to [`names`]).
    pub fn new(get: F) -> Self {
        Self { get }
    }

    /// The value of `name`, trimmed; `None` when unset or blank.
    pub fn string(&self, name: &str) -> Option<String> {
        (self.get)(name)
            .map(|v| v.trim().to_owned())
            .filter(|v| !v.is_empty())
    }

    /// The value of `name` parsed as `T`, or `default` when unset.
    pub fn parsed<T: FromStr>(&self, name: &'static str, default: T) -> Result<T, ConfigError>
    where
        T::Err: fmt::Display,
    {
        self.optional(name).map(|v| v.unwrap_or(default))
    }

    /// The value of `name` parsed as `T`, when set.
    pub fn optional<T: FromStr>(&self, name: &'static str) -> Result<Option<T>, ConfigError>
    where
        T::Err: fmt::Display,
    {
        self.string(name)
            .map(|v| {
                v.parse().map_err(|e| ConfigError::Invalid {
                    name,
                    problem: format!("cannot use `{v}`: {e}"),
                })
            })
            .transpose()
    }

    /// A whole number of at least 1, or `default` when unset.
    pub fn positive<T>(&self, name: &'static str, default: T) -> Result<T, ConfigError>
    where
        T: FromStr + PartialOrd + From<u8> + Copy,
        T::Err: fmt::Display,
    {
        let value = self.parsed(name, default)?;
        if value < T::from(1) {
            return Err(ConfigError::Invalid {
                name,
                problem: "must be at least 1".to_owned(),
            });
        }
        Ok(value)
    }

    /// `true` for `1`/`true`, `false` for `0`/`false` or when unset.
    pub fn flag(&self, name: &'static str) -> Result<bool, ConfigError> {
        match self.string(name).as_deref().map(str::to_ascii_lowercase) {
            None => Ok(false),
            Some(v) if v == "1" || v == "true" => Ok(true),
            Some(v) if v == "0" || v == "false" => Ok(false),
            Some(v) => Err(ConfigError::Invalid {
                name,
                problem: format!("`{v}` is not 1, 0, true or false"),
            }),
        }
    }
}

impl Settings {
    /// Parses every setting through `get`.
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let lookup = Lookup::new(get);
        let auth = AuthConfig {
            key: verify_key(&lookup)?,
            keys_by_kid: keys_by_kid(&lookup)?,
            issuer: lookup.string(names::JWT_ISSUER),
            audience: lookup.string(names::JWT_AUDIENCE),
            leeway_secs: lookup.parsed(names::JWT_LEEWAY_SECS, 0)?,
        };
        // Load the key now, so a bad one stops the deployment from starting rather than
        // refusing every connection.
        TokenVerifier::new(&auth).map_err(|e| ConfigError::BadKey {
            name: match auth.key {
                _ if !auth.keys_by_kid.is_empty() => names::JWT_JWKS,
                VerifyKey::Hs256(_) => names::JWT_SECRET,
                _ => names::JWT_PUBLIC_KEY,
            },
            problem: e.to_string(),
        })?;
        let mut auth = auth;
        let embed = embed_config(&lookup, &auth)?;
        if let (false, Some(key)) = (embed.keys.is_empty(), &embed.signing_key) {
            // Visitor tokens name their key, so they verify next to the customer's.
            auth.keys_by_kid
                .push((EMBED_KID.to_owned(), VerifyKey::Hs256(key.clone())));
        }
        let defaults = RatePolicy::default();
        let rate = RatePolicy {
            per_sec: lookup.positive(names::RATE_PER_SEC, defaults.per_sec)?,
            burst: lookup.positive(names::RATE_BURST, defaults.burst)?,
            ..defaults
        };
        let seconds = |name, default_ms: u64| -> Result<u64, ConfigError> {
            Ok(lookup
                .positive(name, default_ms / 1000)?
                .saturating_mul(1000))
        };
        Ok(Self {
            service: ServiceConfig {
                rate,
                max_connections_per_user: lookup.positive(
                    names::MAX_CONNECTIONS_PER_USER,
                    DEFAULT_MAX_CONNECTIONS_PER_USER,
                )?,
                presence_max_connections: lookup.positive(
                    names::PRESENCE_MAX_CONNECTIONS,
                    DEFAULT_PRESENCE_MAX_CONNECTIONS,
                )?,
                embed,
                ..ServiceConfig::default()
            },
            lifecycle: LifecyclePolicy {
                idle_timeout_ms: seconds(names::IDLE_TIMEOUT_SECS, DEFAULT_IDLE_TIMEOUT_MS)?,
                max_connection_ms: seconds(names::MAX_CONNECTION_SECS, DEFAULT_MAX_CONNECTION_MS)?,
            },
            log: lookup.parsed(names::LOG, LogLevel::Info)?,
            events: events_config(&lookup)?,
            attachments: attachments_config(&lookup, &auth)?,
            auth,
        })
    }

    /// The token verifier for [`Settings::auth`] (it loaded when the settings were parsed).
    pub fn verifier(&self) -> Result<TokenVerifier, ConfigError> {
        TokenVerifier::new(&self.auth).map_err(|e| ConfigError::BadKey {
            name: names::JWT_PUBLIC_KEY,
            problem: e.to_string(),
        })
    }
}

/// The key and, with it, the one algorithm accepted.
/// The keys of [`names::JWT_JWKS`], by `kid`: each key must name its `kid` (once), `oct` keys
/// are HS256 secrets held to [`MIN_HS256_SECRET_BYTES`], and each must load.
fn keys_by_kid<F: Fn(&str) -> Option<String>>(
    lookup: &Lookup<F>,
) -> Result<Vec<(String, VerifyKey)>, ConfigError> {
    use base64::Engine;
    use jsonwebtoken::jwk::{AlgorithmParameters, JwkSet};
    let Some(text) = lookup.string(names::JWT_JWKS) else {
        return Ok(Vec::new());
    };
    let bad = |problem: String| ConfigError::BadKey {
        name: names::JWT_JWKS,
        problem,
    };
    let set: JwkSet = serde_json::from_str(&text)
        .map_err(|e| bad(format!("not a JWKS document ({{\"keys\": [...]}}): {e}")))?;
    let mut keys: Vec<(String, VerifyKey)> = Vec::with_capacity(set.keys.len());
    for jwk in set.keys {
        let kid = jwk
            .common
            .key_id
            .clone()
            .filter(|k| !k.is_empty())
            .ok_or_else(|| bad("every key needs its `kid`".into()))?;
        if keys.iter().any(|(k, _)| *k == kid) {
            return Err(bad(format!("`kid` {kid} is there twice")));
        }
        let key = match &jwk.algorithm {
            AlgorithmParameters::OctetKey(oct) => {
                let secret = base64::engine::general_purpose::URL_SAFE_NO_PAD
                    .decode(oct.value.trim_end_matches('='))
                    .map_err(|e| bad(format!("`kid` {kid}: `k` is not base64url: {e}")))?;
                if secret.len() < MIN_HS256_SECRET_BYTES {
                    return Err(bad(format!(
                        "`kid` {kid}: an HS256 secret needs at least {MIN_HS256_SECRET_BYTES} \
                         bytes, this one has {}",
                        secret.len()
                    )));
                }
                VerifyKey::Hs256(secret)
            }
            _ => VerifyKey::Jwk(Box::new(jwk)),
        };
        keys.push((kid, key));
    }
    Ok(keys)
}

fn verify_key<F: Fn(&str) -> Option<String>>(lookup: &Lookup<F>) -> Result<VerifyKey, ConfigError> {
    let secret = lookup.string(names::JWT_SECRET);
    let pem = lookup.string(names::JWT_PUBLIC_KEY);
    let alg = lookup
        .string(names::JWT_ALG)
        .map(|a| a.to_ascii_uppercase());
    let mismatch = |alg: &str, needs| ConfigError::KeyDoesNotMatchAlgorithm {
        alg: alg.to_owned(),
        needs,
    };
    match (secret, pem, alg.as_deref()) {
        (Some(_), Some(_), _) => Err(ConfigError::ConflictingKeys),
        (None, None, _) => Err(ConfigError::MissingKey),
        (Some(secret), None, None | Some("HS256")) => {
            check_hs256_secret(secret.as_bytes())?;
            Ok(VerifyKey::Hs256(secret.into_bytes()))
        }
        (None, Some(pem), None | Some("RS256")) => Ok(VerifyKey::Rs256Pem(pem.into_bytes())),
        (None, Some(pem), Some("ES256")) => Ok(VerifyKey::Es256Pem(pem.into_bytes())),
        (Some(_), None, Some(alg @ ("RS256" | "ES256"))) => {
            Err(mismatch(alg, names::JWT_PUBLIC_KEY))
        }
        (None, Some(_), Some("HS256")) => Err(mismatch("HS256", names::JWT_SECRET)),
        (_, _, Some(other)) => Err(ConfigError::Invalid {
            name: names::JWT_ALG,
            problem: format!("`{other}` is not HS256, RS256 or ES256"),
        }),
    }
}
