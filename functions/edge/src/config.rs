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
    use roomcast_core::config::{LogLevel, names};
    use roomcast_core::lifecycle::LifecyclePolicy;
    use roomcast_core::service::ServiceConfig;
    use roomcast_testkit::config_cases::{CASES, SECRET, lookup};

    use super::*;

    fn config(pairs: &[(&str, &str)]) -> Result<EdgeConfig, ConfigError> {
        EdgeConfig::from_lookup(lookup(pairs))
    }

    #[test]
    fn defaults_are_the_other_builds() {
        let c = config(&[(names::JWT_SECRET, SECRET)]).unwrap();
        assert_eq!(c.settings.service, ServiceConfig::default());
        assert_eq!(c.settings.lifecycle, LifecyclePolicy::default());
        assert_eq!(c.settings.log, LogLevel::Info);
        assert!(!c.dev_routes);
    }

    #[test]
    fn the_dev_flag_is_read_with_the_same_rules() {
        let with = |value| config(&[(names::JWT_SECRET, SECRET), (DEV_ROUTES, value)]);
        assert!(with("1").unwrap().dev_routes);
        assert!(!with("0").unwrap().dev_routes);
        let e = with("yes").unwrap_err();
        assert!(
            matches!(e, ConfigError::Invalid { name, .. } if name == DEV_ROUTES),
            "{e}"
        );
    }

    /// The edge reads the shared settings exactly as the core does: the same settings, or the
    /// same error, for every case of the table all deployments are checked against.
    #[test]
    fn shared_settings_parse_as_the_cores() {
        for pairs in CASES {
            assert_eq!(
                config(pairs).map(|c| c.settings),
                Settings::from_lookup(lookup(pairs)),
                "{pairs:?}"
            );
            let with_dev_routes = [*pairs, &[(DEV_ROUTES, "1")]].concat();
            assert_eq!(
                config(&with_dev_routes).map(|c| c.settings),
                Settings::from_lookup(lookup(pairs)),
                "{pairs:?} with {DEV_ROUTES}"
            );
        }
    }
}
