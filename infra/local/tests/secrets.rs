//! The server refuses to run with a key anyone could guess (issue 15: an empty `--jwt-secret`,
//! `ROOMCAST_JWT_SECRET=` or an empty `jwt-secret` file once started a server whose tokens anyone
//! could forge), and keeps what it writes readable by its own user only.
#![cfg(unix)]
#![allow(clippy::unwrap_used, reason = "tests")]

use std::io::{BufRead, BufReader};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Output, Stdio};

const BINARY: &str = env!("CARGO_BIN_EXE_roomcast-local");

/// Runs the server with `args` on `data_dir` and port 0, expecting it to refuse to start.
fn refused(data_dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    let output = Command::new(BINARY)
        .args(["serve", "--port", "0", "--data-dir"])
        .arg(data_dir)
        .args(args)
        .env_remove("ROOMCAST_JWT_SECRET")
        .envs(env.iter().copied())
        .output()
        .unwrap();
    assert!(
        !output.status.success(),
        "{args:?} {env:?} started: {}",
        String::from_utf8_lossy(&output.stdout)
    );
    output
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn a_short_secret_is_refused_by_flag_environment_and_token_command() {
    let dir = tempfile::tempdir().unwrap();
    let short = "only-thirty-one-bytes-long-0000";
    assert_eq!(short.len(), 31);
    let by_flag = refused(dir.path(), &["--jwt-secret", short], &[]);
    assert!(
        stderr(&by_flag).contains("at least 32 bytes"),
        "{}",
        stderr(&by_flag)
    );
    let by_env = refused(dir.path(), &[], &[("ROOMCAST_JWT_SECRET", short)]);
    assert!(
        stderr(&by_env).contains("at least 32 bytes"),
        "{}",
        stderr(&by_env)
    );
    let token = Command::new(BINARY)
        .args([
            "token",
            "--user",
            "alice",
            "--rooms",
            "lobby",
            "--jwt-secret",
            short,
        ])
        .output()
        .unwrap();
    assert!(
        !token.status.success(),
        "a token was minted with a short secret"
    );
}

#[test]
fn an_empty_secret_file_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("jwt-secret"), "\n").unwrap();
    let o = refused(dir.path(), &[], &[]);
    assert!(stderr(&o).contains("is empty"), "{}", stderr(&o));
}

/// An empty flag or variable is unset: the server generates a random secret in its data
/// directory (printed once), never one that is empty.
#[test]
fn an_empty_secret_is_unset_and_a_random_one_is_generated_private() {
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().join("data");
    let mut child = Command::new(BINARY)
        .args(["serve", "--port", "0", "--jwt-secret", "", "--data-dir"])
        .arg(&data_dir)
        .env("ROOMCAST_JWT_SECRET", "")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert!(line.contains("listening on"), "{line}");
    let _ = child.kill();
    let _ = child.wait();
    let secret = std::fs::read_to_string(data_dir.join("jwt-secret")).unwrap();
    assert!(secret.trim().len() >= 32, "generated secret {secret:?}");
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&data_dir), 0o700, "data directory");
    assert_eq!(mode(&data_dir.join("jwt-secret")), 0o600, "secret file");
    assert_eq!(mode(&data_dir.join("roomcast.redb")), 0o600, "history file");
}
