//! The one configuration: what `Settings::from_lookup` answers for the shared case table
//! (`roomcast_testkit::config_cases`), which every deployment's loader must answer alike.

#![allow(clippy::unwrap_used, reason = "tests")]

use roomcast_core::auth::VerifyKey;
use roomcast_core::config::{ConfigError, LogLevel, Settings, names};
use roomcast_core::lifecycle::LifecyclePolicy;
use roomcast_core::ratelimit::RatePolicy;
use roomcast_core::service::ServiceConfig;
use roomcast_testkit::config_cases::{CASES, EC_PUBLIC_KEY, SECRET, lookup};

fn settings(pairs: &[(&str, &str)]) -> Result<Settings, ConfigError> {
    Settings::from_lookup(lookup(pairs))
}

fn invalid(pairs: &[(&str, &str)]) -> &'static str {
    match settings(pairs) {
        Err(ConfigError::Invalid { name, .. } | ConfigError::BadKey { name, .. }) => name,
        other => panic!("{pairs:?}: expected an invalid setting, got {other:?}"),
    }
}

#[test]
fn defaults_are_api_gateways_and_the_services() {
    let s = settings(&[(names::JWT_SECRET, SECRET)]).unwrap();
    assert_eq!(s.auth.key, VerifyKey::Hs256(SECRET.as_bytes().to_vec()));
    assert_eq!(
        (s.auth.issuer, s.auth.audience, s.auth.leeway_secs),
        (None, None, 0)
    );
    assert_eq!(s.service, ServiceConfig::default());
    assert_eq!(s.lifecycle, LifecyclePolicy::default());
    assert_eq!(s.log, LogLevel::Info);
}

#[test]
fn a_short_or_empty_hs256_secret_is_refused() {
    let short = "a".repeat(31);
    assert_eq!(
        settings(&[(names::JWT_SECRET, &short)]),
        Err(ConfigError::WeakSecret { bytes: 31 })
    );
    assert!(settings(&[(names::JWT_SECRET, &"a".repeat(32))]).is_ok());
    // Empty is unset, never a key anyone can forge tokens with.
    assert_eq!(
        settings(&[(names::JWT_SECRET, "")]),
        Err(ConfigError::MissingKey)
    );
}

#[test]
fn the_key_decides_the_algorithm_unless_it_is_named() {
    assert_eq!(settings(&[]), Err(ConfigError::MissingKey));
    assert_eq!(
        settings(&[(names::JWT_SECRET, "  ")]),
        Err(ConfigError::MissingKey),
        "blank is unset"
    );
    assert_eq!(
        settings(&[
            (names::JWT_SECRET, SECRET),
            (names::JWT_PUBLIC_KEY, EC_PUBLIC_KEY)
        ]),
        Err(ConfigError::ConflictingKeys)
    );
    let es256 = settings(&[
        (names::JWT_PUBLIC_KEY, EC_PUBLIC_KEY),
        (names::JWT_ALG, "es256"),
    ]);
    assert!(matches!(es256.unwrap().auth.key, VerifyKey::Es256Pem(_)));
    // A public key alone means RS256 on every deployment; this EC key does not load as RSA.
    assert_eq!(
        invalid(&[(names::JWT_PUBLIC_KEY, EC_PUBLIC_KEY)]),
        names::JWT_PUBLIC_KEY
    );
    assert!(matches!(
        settings(&[(names::JWT_SECRET, SECRET), (names::JWT_ALG, "RS256")]),
        Err(ConfigError::KeyDoesNotMatchAlgorithm { .. })
    ));
    assert_eq!(
        invalid(&[(names::JWT_SECRET, SECRET), (names::JWT_ALG, "HS512")]),
        names::JWT_ALG
    );
}

#[test]
fn values_are_read_trimmed_and_checked() {
    let s = settings(&[
        (names::JWT_SECRET, SECRET),
        (names::JWT_ISSUER, "https://issuer"),
        (names::JWT_AUDIENCE, " chat "),
        (names::JWT_LEEWAY_SECS, "30"),
    ])
    .unwrap();
    assert_eq!(
        (
            s.auth.issuer.as_deref(),
            s.auth.audience.as_deref(),
            s.auth.leeway_secs
        ),
        (Some("https://issuer"), Some("chat"), 30)
    );
    let s = settings(&[
        (names::JWT_SECRET, SECRET),
        (names::RATE_PER_SEC, "50"),
        (names::RATE_BURST, "500"),
    ])
    .unwrap();
    assert_eq!(
        s.service.rate,
        RatePolicy {
            per_sec: 50,
            burst: 500,
            ..RatePolicy::default()
        }
    );
    let s = settings(&[
        (names::JWT_SECRET, SECRET),
        (names::IDLE_TIMEOUT_SECS, "2"),
        (names::MAX_CONNECTION_SECS, "4"),
    ])
    .unwrap();
    assert_eq!(
        s.lifecycle,
        LifecyclePolicy {
            idle_timeout_ms: 2_000,
            max_connection_ms: 4_000
        }
    );
    for (name, value) in [
        (names::JWT_LEEWAY_SECS, "-1"),
        (names::RATE_BURST, "-1"),
        (names::RATE_PER_SEC, "0"),
        (names::RATE_BURST, "99999999999"),
        (names::MAX_CONNECTIONS_PER_USER, "x"),
        (names::IDLE_TIMEOUT_SECS, "0"),
        (names::MAX_CONNECTION_SECS, "1.5"),
        (names::LOG, "verbose"),
    ] {
        assert_eq!(invalid(&[(names::JWT_SECRET, SECRET), (name, value)]), name);
    }
    let debug = settings(&[(names::JWT_SECRET, SECRET), (names::LOG, "DEBUG")]).unwrap();
    assert_eq!(debug.log, LogLevel::Debug);
}

#[test]
fn every_case_of_the_shared_table_is_answered() {
    // The table the deployments' parity tests use holds both accepted and refused settings.
    let accepted = CASES.iter().filter(|c| settings(c).is_ok()).count();
    assert!(
        accepted >= 5 && accepted < CASES.len(),
        "{accepted} of {}",
        CASES.len()
    );
}
