//! The local server reads the shared settings exactly as the core does (the same settings or
//! the same error for every case of `roomcast_testkit::config_cases`), from its environment
//! and, flag for flag, from its command line.

#![allow(clippy::unwrap_used, reason = "tests")]

use clap::Parser;
use roomcast_core::config::{Settings, names};
use roomcast_local::config::{Cli, ServeArgs};
use roomcast_testkit::config_cases::{CASES, lookup};

fn serve_args(argv: &[&str]) -> ServeArgs {
    let cli =
        Cli::try_parse_from(std::iter::once("roomcast-local").chain(argv.iter().copied())).unwrap();
    cli.serve
}

/// The flag of each shared setting (`--jwt-public-key` names a file, so it is left out).
const FLAGS: &[(&str, &str)] = &[
    (names::JWT_SECRET, "--jwt-secret"),
    (names::JWT_ALG, "--jwt-alg"),
    (names::JWT_ISSUER, "--jwt-issuer"),
    (names::JWT_AUDIENCE, "--jwt-audience"),
    (names::JWT_LEEWAY_SECS, "--jwt-leeway-secs"),
    (names::RATE_PER_SEC, "--rate-per-sec"),
    (names::RATE_BURST, "--rate-burst"),
    (
        names::MAX_CONNECTIONS_PER_USER,
        "--max-connections-per-user",
    ),
    (
        names::PRESENCE_MAX_CONNECTIONS,
        "--presence-max-connections",
    ),
    (names::IDLE_TIMEOUT_SECS, "--idle-timeout-secs"),
    (names::MAX_CONNECTION_SECS, "--max-connection-secs"),
    (names::LOG, "--log-level"),
];

/// The local loader, with a data directory that cannot supply a dev secret: a case without a
/// key must fail as it does everywhere, not fall back to a generated one.
fn local(
    args: &ServeArgs,
    env: &dyn Fn(&str) -> Option<String>,
) -> Option<Result<Settings, String>> {
    let keyless = [names::JWT_SECRET, names::JWT_PUBLIC_KEY]
        .iter()
        .all(|n| env(n).is_none_or(|v| v.trim().is_empty()));
    if keyless {
        // The local server alone generates a dev secret then; that case is tested below.
        return None;
    }
    Some(
        args.settings(env)
            .map(|(s, _)| s)
            .map_err(|e| e.to_string()),
    )
}

#[test]
fn environment_settings_parse_as_the_cores() {
    let args = serve_args(&[]);
    for pairs in CASES {
        let env = lookup(pairs);
        let Some(got) = local(&args, &env) else {
            continue;
        };
        let want = Settings::from_lookup(lookup(pairs)).map_err(|e| e.to_string());
        assert_eq!(got, want, "{pairs:?}");
    }
}

#[test]
fn each_flag_is_its_setting() {
    for pairs in CASES {
        if pairs.iter().any(|(n, _)| *n == names::JWT_PUBLIC_KEY) || pairs.is_empty() {
            continue;
        }
        let mut argv = Vec::new();
        for (name, value) in *pairs {
            let (_, flag) = FLAGS.iter().find(|(n, _)| n == name).unwrap();
            argv.push(format!("{flag}={value}"));
        }
        let argv: Vec<&str> = argv.iter().map(String::as_str).collect();
        let from_flags = serve_args(&argv);
        let none = |_: &str| None;
        let Some(got) = local(&from_flags, &lookup(pairs)) else {
            continue;
        };
        let flags_only = from_flags
            .settings(&none)
            .map(|(s, _)| s)
            .map_err(|e| e.to_string());
        assert_eq!(flags_only, got, "{argv:?}");
    }
}

#[test]
fn flags_win_over_the_environment() {
    let flag = "a-secret-given-by-flag-0123456789";
    let args = serve_args(&[&format!("--jwt-secret={flag}"), "--rate-burst=7"]);
    let env = lookup(&[
        (names::JWT_SECRET, "a-secret-from-the-environment-012345"),
        (names::RATE_BURST, "9"),
        (names::RATE_PER_SEC, "3"),
    ]);
    let (s, generated) = args.settings(&env).unwrap();
    assert!(!generated);
    assert_eq!(
        s.auth.key,
        roomcast_core::auth::VerifyKey::Hs256(flag.as_bytes().to_vec())
    );
    assert_eq!((s.service.rate.burst, s.service.rate.per_sec), (7, 3));
}

#[test]
fn without_a_key_a_dev_secret_is_generated_once_in_the_data_directory() {
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().join("data");
    let args = serve_args(&["--data-dir", data_dir.to_str().unwrap()]);
    let none = |_: &str| None;
    let (first, generated) = args.settings(&none).unwrap();
    assert!(generated);
    let (again, generated) = args.settings(&none).unwrap();
    assert!(!generated);
    assert_eq!(first, again);
}
