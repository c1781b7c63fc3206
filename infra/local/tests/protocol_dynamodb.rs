//! The black-box protocol suite against the real `roomcast-local` binary keeping everything in
//! DynamoDB (`--dynamodb-endpoint`): the store the Lambda functions use, on a real local
//! DynamoDB implementation (moto, see `roomcast_testkit::aws::moto`). Same cases as `protocol.rs`.
#![cfg(all(unix, feature = "dynamodb"))]

mod common;

use std::sync::OnceLock;
use std::time::Duration;

use common::{Local, start};
use roomcast_protocol_tests::deployment::PRESENCE_MAX_CONNECTIONS;
use roomcast_testkit::aws::moto::{Dynamo, dynamo};

/// One moto for the process; it goes when the process does (see `roomcast_testkit::aws::moto`).
fn moto() -> &'static Dynamo {
    static MOTO: OnceLock<Dynamo> = OnceLock::new();
    MOTO.get_or_init(dynamo)
}

fn on_dynamodb(table: &str, extra: &[&str]) -> Local {
    let endpoint = moto().endpoint.clone();
    let table = format!("{table}-{}", std::process::id());
    let mut flags = vec!["--dynamodb-endpoint", &endpoint, "--table", &table];
    flags.extend_from_slice(extra);
    start(&flags)
}

/// The server for the main suite: rate limit raised so cases can send bursts, and the suite's
/// presence threshold (a handful of connections make a big room).
fn main_server() -> &'static Local {
    static SERVER: OnceLock<Local> = OnceLock::new();
    SERVER.get_or_init(|| {
        on_dynamodb(
            "suite",
            &[
                "--rate-per-sec",
                "1000",
                "--rate-burst",
                "1000",
                "--presence-max-connections",
                PRESENCE_MAX_CONNECTIONS,
            ],
        )
    })
}

const IDLE: Duration = Duration::from_secs(2);
const MAX_AGE: Duration = Duration::from_secs(4);

/// The server for the limits cases: short timeouts, and a tight rate limit. On the emulator each
/// frame costs ~80 ms of serial moto requests, so a flood arrives at ~12 frames/s: barely over
/// the default 10/s refill. One frame per second with a burst of 5 keeps the flood a flood.
fn limits_server() -> &'static Local {
    static SERVER: OnceLock<Local> = OnceLock::new();
    SERVER.get_or_init(|| {
        let (idle, max_age) = (IDLE.as_secs().to_string(), MAX_AGE.as_secs().to_string());
        on_dynamodb(
            "limits",
            &[
                "--idle-timeout-secs",
                &idle,
                "--max-connection-secs",
                &max_age,
                "--rate-per-sec",
                "1",
                "--rate-burst",
                "5",
            ],
        )
    })
}

roomcast_protocol_tests::protocol_suite!(main_server());
roomcast_protocol_tests::limits_suite!(limits_server(), idle: IDLE, max_age: MAX_AGE);
