//! Issue 16: tokens as a deployment configures them, against the real `roomcast-local` binary.
//! The `token` command signs what a server requiring `iss` and `aud` accepts, with HS256 or
//! with an RS256 / ES256 private key (made here by `openssl`); and keys rotate by `kid`
//! (`--jwt-jwks`) with no connection refused: old and new tokens both connect meanwhile.
#![cfg(unix)]

mod process;

use std::path::Path;
use std::process::Command;

use anyhow::ensure;
use base64::Engine;
use process::{Server, openssl, runtime, upgrade_status};

const SECRET: &str = "roomcast-token-test-secret-0123456789abcdef";
const NEXT_SECRET: &str = "roomcast-token-test-next-secret-0123456789";
const ISSUER: &str = "https://auth.example.com/";
const AUDIENCE: &str = "roomcast";

/// `roomcast-local token --user alice --tenant acme --rooms lobby` with `extra` flags.
fn token(extra: &[&str]) -> anyhow::Result<String> {
    let out = Command::new(env!("CARGO_BIN_EXE_roomcast-local"))
        .args([
            "token", "--user", "alice", "--tenant", "acme", "--rooms", "lobby",
        ])
        .args(extra)
        .env_remove("ROOMCAST_JWT_SECRET")
        .output()?;
    ensure!(
        out.status.success(),
        "token {extra:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(String::from_utf8(out.stdout)?.trim().to_owned())
}

/// A fresh key pair in `dir`: `{name}.key` (private, PKCS#8 PEM) and `{name}.pub`.
fn key_pair(dir: &Path, name: &str, algorithm: &[&str]) -> anyhow::Result<(String, String)> {
    let private = dir.join(format!("{name}.key")).display().to_string();
    let public = dir.join(format!("{name}.pub")).display().to_string();
    let mut args = vec!["genpkey"];
    args.extend_from_slice(algorithm);
    args.extend_from_slice(&["-out", &private]);
    openssl(&args)?;
    openssl(&["pkey", "-in", &private, "-pubout", "-out", &public])?;
    Ok((private, public))
}

#[test]
fn issuer_and_audience_are_signed_when_the_server_requires_them() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let server = Server::start(
        dir.path(),
        0,
        &["--jwt-issuer", ISSUER, "--jwt-audience", AUDIENCE],
    )?;
    let target = server.target();
    // `Server` verifies its own secret; the command must sign with the same one.
    let with = token(&[
        "--jwt-secret",
        process::SECRET,
        "--issuer",
        ISSUER,
        "--audience",
        AUDIENCE,
    ])?;
    let without = token(&["--jwt-secret", process::SECRET])?;
    runtime().block_on(async {
        ensure!(upgrade_status(&target, &with).await? == 101);
        ensure!(upgrade_status(&target, &without).await? == 401);
        Ok(())
    })
}

#[test]
fn rs256_and_es256_tokens_signed_with_a_private_key_connect() -> anyhow::Result<()> {
    let keys = tempfile::tempdir()?;
    let rsa = key_pair(
        keys.path(),
        "rsa",
        &["-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048"],
    )?;
    let ec = key_pair(
        keys.path(),
        "ec",
        &["-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256"],
    )?;
    for (alg, (private, public), other) in [("RS256", &rsa, &ec), ("ES256", &ec, &rsa)] {
        let dir = tempfile::tempdir()?;
        let server =
            Server::start_with_key(dir.path(), &["--jwt-public-key", public, "--jwt-alg", alg])?;
        let target = server.target();
        let good = token(&["--alg", alg, "--private-key", private])?;
        let other_alg = if alg == "RS256" { "ES256" } else { "RS256" };
        let wrong = token(&["--alg", other_alg, "--private-key", &other.0])?;
        runtime().block_on(async {
            ensure!(upgrade_status(&target, &good).await? == 101, "{alg}");
            ensure!(
                upgrade_status(&target, &wrong).await? == 401,
                "{alg}: {other_alg}"
            );
            Ok(())
        })?;
    }
    Ok(())
}

#[test]
fn keys_rotate_by_kid_with_no_connection_refused() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let k = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(NEXT_SECRET);
    let jwks = dir.path().join("jwks.json");
    std::fs::write(
        &jwks,
        serde_json::json!({"keys": [{"kty": "oct", "kid": "2026-12", "k": k}]}).to_string(),
    )?;
    let jwks = jwks.display().to_string();
    let data = dir.path().join("data");
    let server = Server::start_with_key(&data, &["--jwt-secret", SECRET, "--jwt-jwks", &jwks])?;
    let target = server.target();
    let old = token(&["--jwt-secret", SECRET])?;
    let next = token(&["--jwt-secret", NEXT_SECRET, "--kid", "2026-12"])?;
    let next_without_kid = token(&["--jwt-secret", NEXT_SECRET])?;
    runtime().block_on(async {
        ensure!(upgrade_status(&target, &old).await? == 101, "the old key");
        ensure!(upgrade_status(&target, &next).await? == 101, "the next key");
        ensure!(
            upgrade_status(&target, &next_without_kid).await? == 401,
            "the next key without its kid"
        );
        Ok(())
    })
}
