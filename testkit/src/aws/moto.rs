//! A real DynamoDB implementation for tests: moto server, started on a free loopback port.
//!
//! The endpoint comes from `ROOMCAST_DYNAMODB_ENDPOINT` when set (a running moto or DynamoDB
//! Local). Otherwise [`dynamo`] starts `moto_server` from `ROOMCAST_MOTO_BIN` (default: the venv
//! `scripts/test.sh` installs, `~/.cache/roomcast/moto-venv`) and kills it on drop. Without
//! either, tests FAIL: a store test that silently skips proves nothing.
//!
//! moto's server is threaded and its DynamoDB backend takes no lock: two concurrent
//! TransactWriteItems interleave item by item, and a cancelled one rolls the table back to a copy
//! taken before the other committed, erasing it. Real DynamoDB isolates transactions, so moto
//! runs with one request at a time ([`SERIAL_MOTO`]): every request is then atomic, as in
//! DynamoDB, and concurrent writers still race between their requests.
#![allow(
    clippy::panic,
    reason = "test support: a missing emulator is a test failure"
)]

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use crate::process::{Lifeline, free_port, wait_listening};

/// Where the tests' DynamoDB is, and the moto process behind it when they started one (stopped
/// on drop, or with the test process).
pub struct Dynamo {
    /// The endpoint URL.
    pub endpoint: String,
    _moto: Option<Lifeline>,
}

/// Runs `moto.server.main` with werkzeug's server single-threaded (`python -c SERIAL_MOTO -H
/// HOST -p PORT`).
pub const SERIAL_MOTO: &str = "import sys, werkzeug.serving as s\n\
run = s.run_simple\n\
s.run_simple = lambda *a, **k: run(*a, **{**k, 'threaded': False})\n\
from moto.server import main\n\
main(sys.argv[1:])\n";

fn moto_bin() -> PathBuf {
    std::env::var_os("ROOMCAST_MOTO_BIN").map_or_else(
        || {
            let cache = std::env::var_os("XDG_CACHE_HOME")
                .map(PathBuf::from)
                .unwrap_or_else(|| {
                    PathBuf::from(std::env::var_os("HOME").unwrap_or_default()).join(".cache")
                });
            cache.join("roomcast/moto-venv/bin/moto_server")
        },
        PathBuf::from,
    )
}

/// A DynamoDB for a test (see the module doc).
pub fn dynamo() -> Dynamo {
    if let Ok(endpoint) = std::env::var("ROOMCAST_DYNAMODB_ENDPOINT") {
        return Dynamo {
            endpoint,
            _moto: None,
        };
    }
    let bin = moto_bin();
    assert!(
        bin.exists(),
        "no DynamoDB for the store tests: {} does not exist and ROOMCAST_DYNAMODB_ENDPOINT is \
         unset. Run scripts/test.sh (it installs moto into ~/.cache/roomcast/moto-venv), or set \
         ROOMCAST_MOTO_BIN / ROOMCAST_DYNAMODB_ENDPOINT.",
        bin.display()
    );
    // The venv's interpreter, which has moto, sits beside its moto_server script.
    let python = bin.with_file_name("python");
    assert!(
        python.exists(),
        "{} has no python beside it; run scripts/test.sh",
        bin.display()
    );
    let port = free_port();
    let mut command = Lifeline::command(None, &python);
    command
        .args([
            "-c",
            SERIAL_MOTO,
            "-H",
            "127.0.0.1",
            "-p",
            &port.to_string(),
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let mut moto = Lifeline::spawn(command)
        .unwrap_or_else(|e| panic!("cannot start {}: {e}; run scripts/test.sh", bin.display()));
    if let Err(e) = wait_listening(port, Duration::from_secs(60), || moto.exited()) {
        panic!("moto_server did not start: {e}; run scripts/test.sh");
    }
    Dynamo {
        endpoint: format!("http://127.0.0.1:{port}"),
        _moto: Some(moto),
    }
}
