//! The black-box protocol suite (crate `roomcast-protocol-tests`) against the real
//! `roomcast-local` binary with its embedded store.
//!
//! Two servers per test process, shared by the cases (each case works in its own tenant):
//! - the main one, with the rate limit raised (the suite sends bursts), for `protocol_suite!`;
//! - a strict one with the default rate limit and 2 s idle / 4 s maximum connection age, for
//!   `limits_suite!`.
#![cfg(unix)]

mod common;

use std::sync::OnceLock;
use std::time::Duration;

use common::{Local, start, start_with_env};
use roomcast_protocol_tests::deployment::{EMBED_KEYS, PRESENCE_MAX_CONNECTIONS};

/// The server for the main suite: rate limit raised so cases can send bursts; webhooks to
/// loopback receivers, retried after 200 ms, timed out after 1 s; the suite's publishable key.
fn main_server() -> &'static Local {
    static SERVER: OnceLock<Local> = OnceLock::new();
    SERVER.get_or_init(|| {
        start_with_env(
            &[
                "--rate-per-sec",
                "1000",
                "--rate-burst",
                "1000",
                "--webhook-allow-private",
                "--webhook-first-retry-ms",
                "200",
                "--webhook-timeout-ms",
                "1000",
            ],
            &[
                ("ROOMCAST_EMBED_KEYS", EMBED_KEYS),
                (
                    "ROOMCAST_PRESENCE_MAX_CONNECTIONS",
                    PRESENCE_MAX_CONNECTIONS,
                ),
            ],
        )
    })
}

const IDLE: Duration = Duration::from_secs(2);
const MAX_AGE: Duration = Duration::from_secs(4);

/// The server for the limits cases: default rate limit, short timeouts.
fn limits_server() -> &'static Local {
    static SERVER: OnceLock<Local> = OnceLock::new();
    SERVER.get_or_init(|| {
        start(&[
            "--idle-timeout-secs",
            &IDLE.as_secs().to_string(),
            "--max-connection-secs",
            &MAX_AGE.as_secs().to_string(),
        ])
    })
}

roomcast_protocol_tests::protocol_suite!(main_server());
roomcast_protocol_tests::limits_suite!(limits_server(), idle: IDLE, max_age: MAX_AGE);
