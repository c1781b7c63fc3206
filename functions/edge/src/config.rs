//! Configuration from the Worker's environment (`[vars]` in wrangler.toml, secrets, or `--var`
//! under `wrangler dev`), parsed once per Worker invocation or Durable Object instance.
//!
//! The variable names are the AWS build's where they mean the same (`ROOMCAST_JWT_SECRET`,
//! `ROOMCAST_RATE_PER_SEC`, …), and the local server's flags otherwise.

use roomcast_core::ServiceConfig;
use roomcast_core::auth::{AuthConfig, TokenVerifier, VerifyKey};
use roomcast_core::limits::{
    DEFAULT_IDLE_TIMEOUT_MS, DEFAULT_MAX_CONNECTION_MS, DEFAULT_MAX_CONNECTIONS_PER_USER,
};
use roomcast_core::ratelimit::RatePolicy;

/// Environment variable names.
pub mod env {
    /// HS256 secret (a Worker secret).
    pub const JWT_SECRET: &str = "ROOMCAST_JWT_SECRET";
    /// PEM public key, instead of the secret.
    pub const JWT_PUBLIC_KEY: &str = "ROOMCAST_JWT_PUBLIC_KEY";
    /// `HS256` (the default), `RS256` or `ES256`.
    pub const JWT_ALG: &str = "ROOMCAST_JWT_ALG";
    /// Required `iss`.
    pub const JWT_ISSUER: &str = "ROOMCAST_JWT_ISSUER";
    /// Required `aud`.
    pub const JWT_AUDIENCE: &str = "ROOMCAST_JWT_AUDIENCE";
    /// Clock skew tolerated on `exp` / `nbf`, seconds (default 0).
    pub const JWT_LEEWAY_SECS: &str = "ROOMCAST_JWT_LEEWAY_SECS";
    /// Frames per second per connection.
    pub const RATE_PER_SEC: &str = "ROOMCAST_RATE_PER_SEC";
    /// Frame burst per connection.
    pub const RATE_BURST: &str = "ROOMCAST_RATE_BURST";
    /// Live connections per user (per room on this build: see docs/protocol.md §14).
    pub const MAX_CONNECTIONS_PER_USER: &str = "ROOMCAST_MAX_CONNECTIONS_PER_USER";
    /// Close connections without inbound data for this long (1001).
    pub const IDLE_TIMEOUT_SECS: &str = "ROOMCAST_IDLE_TIMEOUT_SECS";
    /// Close every connection after this long (1001).
    pub const MAX_CONNECTION_SECS: &str = "ROOMCAST_MAX_CONNECTION_SECS";
    /// `error`, `warn`, `info` (default), `debug` or `trace`.
    pub const LOG: &str = "ROOMCAST_LOG";
    /// `1` serves the dev-only routes under `/__dev/`.
    pub const DEV_ROUTES: &str = "ROOMCAST_DEV_ROUTES";
}

/// Everything the Worker and the Durable Object read from the environment.
#[derive(Clone)]
pub struct EdgeConfig {
    /// Token verification.
    pub auth: AuthConfig,
    /// The service's tunables (`bound_room` is set per Durable Object).
    pub service: ServiceConfig,
    /// Idle close, milliseconds.
    pub idle_timeout_ms: u64,
    /// Maximum connection age, milliseconds.
    pub max_connection_ms: u64,
    /// Serve `/__dev/*`.
    pub dev_routes: bool,
    /// Log level.
    pub log: tracing::Level,
}

impl EdgeConfig {
    /// Reads the configuration through `get` (an environment lookup).
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<Self, String> {
        let get = |name: &str| get(name).filter(|v| !v.trim().is_empty());
        let number = |name: &str, default: u64| -> Result<u64, String> {
            get(name).map_or(Ok(default), |v| {
                v.trim()
                    .parse()
                    .map_err(|_| format!("{name} must be a non-negative integer, not `{v}`"))
            })
        };
        let alg = get(env::JWT_ALG).unwrap_or_else(|| "HS256".to_owned());
        let key = match (
            alg.to_ascii_uppercase().as_str(),
            get(env::JWT_SECRET),
            get(env::JWT_PUBLIC_KEY),
        ) {
            ("HS256", Some(secret), _) => VerifyKey::Hs256(secret.into_bytes()),
            ("RS256", _, Some(pem)) => VerifyKey::Rs256Pem(pem.into_bytes()),
            ("ES256", _, Some(pem)) => VerifyKey::Es256Pem(pem.into_bytes()),
            ("HS256", None, _) => return Err(format!("{} is not set", env::JWT_SECRET)),
            ("RS256" | "ES256", _, None) => {
                return Err(format!("{} is not set", env::JWT_PUBLIC_KEY));
            }
            (other, _, _) => {
                return Err(format!(
                    "{} must be HS256, RS256 or ES256, not `{other}`",
                    env::JWT_ALG
                ));
            }
        };
        let defaults = RatePolicy::default();
        let rate = RatePolicy {
            per_sec: small(
                env::RATE_PER_SEC,
                number(env::RATE_PER_SEC, defaults.per_sec.into())?,
            )?,
            burst: small(
                env::RATE_BURST,
                number(env::RATE_BURST, defaults.burst.into())?,
            )?,
            ..defaults
        };
        let max_connections_per_user = usize::try_from(number(
            env::MAX_CONNECTIONS_PER_USER,
            DEFAULT_MAX_CONNECTIONS_PER_USER as u64,
        )?)
        .map_err(|e| format!("{}: {e}", env::MAX_CONNECTIONS_PER_USER))?;
        let log = match get(env::LOG).as_deref().map(str::trim) {
            None | Some("info") => tracing::Level::INFO,
            Some("error") => tracing::Level::ERROR,
            Some("warn") => tracing::Level::WARN,
            Some("debug") => tracing::Level::DEBUG,
            Some("trace") => tracing::Level::TRACE,
            Some(other) => return Err(format!("{} cannot be `{other}`", env::LOG)),
        };
        Ok(Self {
            auth: AuthConfig {
                key,
                issuer: get(env::JWT_ISSUER),
                audience: get(env::JWT_AUDIENCE),
                leeway_secs: number(env::JWT_LEEWAY_SECS, 0)?,
            },
            service: ServiceConfig {
                rate,
                max_connections_per_user,
                ..ServiceConfig::default()
            },
            idle_timeout_ms: number(env::IDLE_TIMEOUT_SECS, DEFAULT_IDLE_TIMEOUT_MS / 1000)?
                .saturating_mul(1000),
            max_connection_ms: number(env::MAX_CONNECTION_SECS, DEFAULT_MAX_CONNECTION_MS / 1000)?
                .saturating_mul(1000),
            dev_routes: get(env::DEV_ROUTES).is_some_and(|v| v.trim() == "1"),
            log,
        })
    }

    /// Reads the configuration from the Worker environment.
    #[cfg(target_arch = "wasm32")]
    pub fn from_env(worker_env: &worker::Env) -> Result<Self, String> {
        Self::from_lookup(|name| {
            worker_env
                .secret(name)
                .map(|v| v.to_string())
                .or_else(|_| worker_env.var(name).map(|v| v.to_string()))
                .ok()
        })
    }

    /// The token verifier for [`EdgeConfig::auth`].
    pub fn verifier(&self) -> Result<TokenVerifier, String> {
        TokenVerifier::new(&self.auth).map_err(|e| format!("JWT key: {e}"))
    }
}

fn small(name: &str, value: u64) -> Result<u32, String> {
    u32::try_from(value).map_err(|_| format!("{name} is too large: {value}"))
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn config(pairs: &[(&str, &str)]) -> Result<EdgeConfig, String> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        EdgeConfig::from_lookup(|name| map.get(name).cloned())
    }

    #[test]
    fn defaults_are_the_other_builds() {
        let c = config(&[(env::JWT_SECRET, "s")]).unwrap();
        assert_eq!(c.service.rate, RatePolicy::default());
        assert_eq!(c.idle_timeout_ms, DEFAULT_IDLE_TIMEOUT_MS);
        assert_eq!(c.max_connection_ms, DEFAULT_MAX_CONNECTION_MS);
        assert_eq!(
            c.service.max_connections_per_user,
            DEFAULT_MAX_CONNECTIONS_PER_USER
        );
        assert!(!c.dev_routes);
        assert_eq!(
            c.service.support_room_prefix,
            ServiceConfig::default().support_room_prefix
        );
    }

    #[test]
    fn bad_values_are_reported_not_defaulted() {
        assert!(config(&[]).err().unwrap().contains(env::JWT_SECRET));
        let e = config(&[(env::JWT_SECRET, "s"), (env::RATE_BURST, "-1")])
            .err()
            .unwrap();
        assert!(e.contains(env::RATE_BURST), "{e}");
        let e = config(&[(env::JWT_SECRET, "s"), (env::JWT_ALG, "HS512")])
            .err()
            .unwrap();
        assert!(e.contains("HS512"), "{e}");
        let c = config(&[
            (env::JWT_SECRET, "s"),
            (env::RATE_BURST, "500"),
            (env::IDLE_TIMEOUT_SECS, "2"),
            (env::DEV_ROUTES, "1"),
        ])
        .unwrap();
        assert_eq!(
            (c.service.rate.burst, c.idle_timeout_ms, c.dev_routes),
            (500, 2000, true)
        );
    }
}
