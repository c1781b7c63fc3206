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

use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::time::{Duration, Instant};

/// A moto server this test started; killed on drop.
pub struct Moto {
    /// The `sh` wrapper around moto.
    child: Child,
    /// Closing it (on drop, or when the test process exits) makes the wrapper kill moto.
    lifeline: Option<ChildStdin>,
}

impl Drop for Moto {
    fn drop(&mut self) {
        drop(self.lifeline.take());
        // Already exited is fine; there is nothing else to clean up.
        let _ = self.child.wait();
    }
}

/// Runs moto in the background and kills it when stdin closes: a `Dynamo` kept in a `static`
/// (never dropped) still takes its moto along when the test process exits, however it exits.
const LIFELINE: &str =
    r#""$@" & pid=$!; read -r _; kill -9 "$pid" 2>/dev/null; wait "$pid" 2>/dev/null"#;

/// Where the tests' DynamoDB is, and the moto process behind it when they started one.
pub struct Dynamo {
    /// The endpoint URL.
    pub endpoint: String,
    _moto: Option<Moto>,
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
    // A free port: bind, read it, release it for moto.
    let port = TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free loopback port")
        .port();
    let mut child = Command::new("sh")
        .args(["-c", LIFELINE, "sh"])
        .arg(&python)
        .args([
            "-c",
            SERIAL_MOTO,
            "-H",
            "127.0.0.1",
            "-p",
            &port.to_string(),
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {}: {e}; run scripts/test.sh", bin.display()));
    let lifeline = child.stdin.take();
    let mut moto = Moto { child, lifeline };
    let deadline = Instant::now() + Duration::from_secs(60);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        if let Some(status) = moto.child.try_wait().expect("waiting on a child process") {
            panic!("moto_server exited at startup ({status}); run scripts/test.sh");
        }
        assert!(
            Instant::now() < deadline,
            "moto_server did not listen within 60 s"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    Dynamo {
        endpoint: format!("http://127.0.0.1:{port}"),
        _moto: Some(moto),
    }
}
