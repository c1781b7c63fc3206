//! The Lambda functions read the shared settings exactly as the core does (the same settings or
//! the same error for every case of `roomcast_testkit::config_cases`), and their own on top.

#![allow(clippy::unwrap_used, reason = "tests")]

use roomcast_aws::lambda::{FunctionConfig, env};
use roomcast_core::config::{ConfigError, Settings, names};
use roomcast_testkit::config_cases::{CASES, SECRET, lookup};

#[test]
fn shared_settings_parse_as_the_cores() {
    for pairs in CASES {
        assert_eq!(
            FunctionConfig::from_env(lookup(pairs)).map(|c| c.settings),
            Settings::from_lookup(lookup(pairs)),
            "{pairs:?}"
        );
    }
}

#[test]
fn the_aws_settings_read_with_the_same_rules() {
    let c = FunctionConfig::from_env(lookup(&[
        (names::JWT_SECRET, SECRET),
        (env::TABLE, " chat "),
        (env::MESSAGE_RETENTION_DAYS, "7"),
    ]))
    .unwrap();
    assert_eq!(c.table, "chat");
    assert_eq!(
        c.store.message_retention,
        Some(std::time::Duration::from_secs(7 * 86_400))
    );
    let bad = FunctionConfig::from_env(lookup(&[
        (names::JWT_SECRET, SECRET),
        (env::MESSAGE_RETENTION_DAYS, "a week"),
    ]));
    assert!(
        matches!(bad, Err(ConfigError::Invalid { name, .. }) if name == env::MESSAGE_RETENTION_DAYS)
    );
}
