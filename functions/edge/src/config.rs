//! Configuration from the Worker's environment (`[vars]` in wrangler.toml, secrets, or `--var`
//! under `wrangler dev`), parsed once per Worker invocation or Durable Object instance.
//!
//! Every setting the deployments share is the core's [`Settings`] (one set of names, defaults
//! and errors: `roomcast_core::config::names`); only [`DEV_ROUTES`] is the edge build's own.

use roomcast_core::config::{ConfigError, Lookup, Settings};

/// `1` (or `true`) serves the dev-only routes under `/__dev/`, in a bundle built with the `dev`
/// feature. Set only by scripts/edge.sh.
pub const DEV_ROUTES: &str = "ROOMCAST_DEV_ROUTES";

/// Everything the Worker and the Durable Object read from the environment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EdgeConfig {
    /// The settings every deployment shares (`bound_room` is set per Durable Object).
    pub settings: Settings,
    /// Serve `/__dev/*`.
    pub dev_routes: bool,
}

impl EdgeConfig {
    /// Reads the configuration through `get` (an environment lookup).
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        Ok(Self {
            settings: Settings::from_lookup(&get)?,
            dev_routes: Lookup::new(get).flag(DEV_ROUTES)?,
        })
    }

    /// Reads the configuration from the Worker environment: a secret, else a variable.
    #[cfg(target_arch = "wasm32")]
    pub fn from_env(worker_env: &worker::Env) -> Result<Self, ConfigError> {
        Self::from_lookup(|name| {
            worker_env
                .secret(name)
                .map(|v| v.to_string())
                .or_else(|_| worker_env.var(name).map(|v| v.to_string()))
                .ok()
        })
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use roomcast_core::auth::VerifyKey;
    use roomcast_core::config::{LogLevel, names};
    use roomcast_core::lifecycle::LifecyclePolicy;
    use roomcast_core::ratelimit::RatePolicy;
    use roomcast_core::service::ServiceConfig;

    use super::*;

    /// A P-256 public key (generated for this test; no private key is kept).
    const EC_PUBLIC_KEY: &str = "-----BEGIN PUBLIC KEY-----
MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEx8T9XhREHK582FU9sw4T/1zC978d
sm9j/BwjKsNHHSNR95usFvSqGCSxekybYg4byHKQ3vnPs9WVrDNbSnlxtA==
-----END PUBLIC KEY-----";

    fn lookup(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> + use<> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        move |name| map.get(name).cloned()
    }

    fn config(pairs: &[(&str, &str)]) -> Result<EdgeConfig, ConfigError> {
        EdgeConfig::from_lookup(lookup(pairs))
    }

    #[test]
    fn defaults_are_the_other_builds() {
        let c = config(&[(names::JWT_SECRET, "s")]).unwrap();
        assert_eq!(c.settings.service, ServiceConfig::default());
        assert_eq!(c.settings.lifecycle, LifecyclePolicy::default());
        assert_eq!(c.settings.log, LogLevel::Info);
        assert!(!c.dev_routes);
    }

    #[test]
    fn values_and_the_dev_flag_are_read() {
        let c = config(&[
            (names::JWT_SECRET, "s"),
            (names::RATE_BURST, "500"),
            (names::IDLE_TIMEOUT_SECS, "2"),
            (DEV_ROUTES, "1"),
        ])
        .unwrap();
        assert_eq!(
            (
                c.settings.service.rate.burst,
                c.settings.lifecycle.idle_timeout_ms,
                c.dev_routes
            ),
            (500, 2000, true)
        );
        assert!(
            !config(&[(names::JWT_SECRET, "s"), (DEV_ROUTES, "0")])
                .unwrap()
                .dev_routes
        );
        let e = config(&[(names::JWT_SECRET, "s"), (DEV_ROUTES, "yes")]).unwrap_err();
        assert!(e.to_string().contains(DEV_ROUTES), "{e}");
    }

    /// The edge reads the shared settings exactly as the core does: same values, same errors.
    #[test]
    fn settings_are_the_cores() {
        let cases: &[&[(&str, &str)]] = &[
            &[],
            &[(names::JWT_SECRET, "s")],
            &[(names::JWT_SECRET, "  ")],
            &[
                (names::JWT_SECRET, "s"),
                (names::JWT_PUBLIC_KEY, EC_PUBLIC_KEY),
            ],
            &[(names::JWT_SECRET, "s"), (names::JWT_ALG, "HS512")],
            &[(names::JWT_SECRET, "s"), (names::JWT_ALG, "RS256")],
            &[
                (names::JWT_PUBLIC_KEY, EC_PUBLIC_KEY),
                (names::JWT_ALG, "es256"),
            ],
            &[
                (names::JWT_PUBLIC_KEY, EC_PUBLIC_KEY),
                (names::JWT_ALG, "HS256"),
            ],
            // No algorithm with a public key: RS256, which this EC key does not load as.
            &[(names::JWT_PUBLIC_KEY, EC_PUBLIC_KEY)],
            &[
                (names::JWT_PUBLIC_KEY, "not a key"),
                (names::JWT_ALG, "ES256"),
            ],
            &[
                (names::JWT_SECRET, "s"),
                (names::JWT_ISSUER, "https://issuer"),
                (names::JWT_AUDIENCE, " chat "),
                (names::JWT_LEEWAY_SECS, "30"),
            ],
            &[(names::JWT_SECRET, "s"), (names::JWT_LEEWAY_SECS, "-1")],
            &[
                (names::JWT_SECRET, "s"),
                (names::RATE_PER_SEC, "50"),
                (names::RATE_BURST, "500"),
            ],
            &[(names::JWT_SECRET, "s"), (names::RATE_BURST, "-1")],
            &[(names::JWT_SECRET, "s"), (names::RATE_PER_SEC, "0")],
            &[(names::JWT_SECRET, "s"), (names::RATE_BURST, "99999999999")],
            &[
                (names::JWT_SECRET, "s"),
                (names::MAX_CONNECTIONS_PER_USER, "3"),
            ],
            &[
                (names::JWT_SECRET, "s"),
                (names::MAX_CONNECTIONS_PER_USER, "x"),
            ],
            &[
                (names::JWT_SECRET, "s"),
                (names::IDLE_TIMEOUT_SECS, "2"),
                (names::MAX_CONNECTION_SECS, "4"),
            ],
            &[(names::JWT_SECRET, "s"), (names::IDLE_TIMEOUT_SECS, "0")],
            &[
                (names::JWT_SECRET, "s"),
                (names::MAX_CONNECTION_SECS, "1.5"),
            ],
            &[(names::JWT_SECRET, "s"), (names::LOG, "DEBUG")],
            &[(names::JWT_SECRET, "s"), (names::LOG, "verbose")],
            &[(names::JWT_SECRET, "s"), (DEV_ROUTES, "1")],
        ];
        for pairs in cases {
            assert_eq!(
                EdgeConfig::from_lookup(lookup(pairs)).map(|c| c.settings),
                Settings::from_lookup(lookup(pairs)),
                "{pairs:?}"
            );
        }
        // The table covers the outcomes that matter, not just errors.
        let es256 = config(&[
            (names::JWT_PUBLIC_KEY, EC_PUBLIC_KEY),
            (names::JWT_ALG, "ES256"),
        ])
        .unwrap();
        assert!(matches!(es256.settings.auth.key, VerifyKey::Es256Pem(_)));
        assert_eq!(
            config(&[(names::JWT_SECRET, "s"), (names::RATE_BURST, "500")])
                .unwrap()
                .settings
                .service
                .rate,
            RatePolicy {
                burst: 500,
                ..RatePolicy::default()
            }
        );
    }
}
