//! Issue 16, "Production tokens": the backend examples customers copy
//! (`examples/tokens/node/mint.mjs` with jsonwebtoken, `examples/tokens/python/mint.py` with
//! PyJWT) mint tokens that the real `roomcast-local` binary accepts when it is configured as a
//! deployment is: a required issuer and audience, and an HS256 secret (made by `openssl rand
//! -base64 48` as docs/deploy.md says, and used as the string it is), an RS256 key pair (made by
//! `openssl genpkey`), or a rotation's next key chosen by `kid` (`--jwt-jwks`). Each token is
//! used for what a customer's visitor and agent do: connect with `?token=`, join, send, get the
//! `ack`, and see the message delivered to the other side.
//!
//! The examples' dependencies come from `scripts/test.sh` ("token examples"), which exports
//! `ROOMCAST_TOKENS_NODE_DIR` (`npm ci` done there) and `ROOMCAST_TOKENS_PYTHON` (a venv with
//! `examples/tokens/python/requirements.txt`). Without them these tests fail, saying so: an
//! example nobody runs is not tested.
#![cfg(unix)]

mod process;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{Context, anyhow, ensure};
use base64::Engine;
use process::{Server, Target, openssl, runtime, upgrade_status};
use roomcast_protocol_tests::client::{Client, frame_type};
use serde_json::Value;

const ISSUER: &str = "https://auth.example.com/";
const AUDIENCE: &str = "roomcast";
const TENANT: &str = "acme";
/// The conversation the visitor's token grants, and the agent's `support-*` covers.
const ROOM: &str = "support-42";

/// The checkout's root (this crate is `infra/local`).
fn checkout() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The value of `name`, or an error saying how to provide it.
fn required_env(name: &str) -> anyhow::Result<String> {
    std::env::var(name)
        .ok()
        .filter(|v| !v.trim().is_empty())
        .ok_or_else(|| {
            anyhow!(
                "{name} is not set: the token examples' dependencies are not installed. Run \
             `bash scripts/test.sh` (its step \"token examples\" installs them and exports \
             ROOMCAST_TOKENS_NODE_DIR and ROOMCAST_TOKENS_PYTHON), or by hand: \
             `(cd examples/tokens/node && npm ci)`, \
             `python3 -m venv /tmp/tokens && /tmp/tokens/bin/pip install -r \
             examples/tokens/python/requirements.txt`, then \
             `export ROOMCAST_TOKENS_NODE_DIR=$PWD/examples/tokens/node \
             ROOMCAST_TOKENS_PYTHON=/tmp/tokens/bin/python`"
            )
        })
}

/// One of the two backend examples, ready to run.
enum Example {
    /// `node mint.mjs` in this directory (with `node_modules` installed).
    Node(PathBuf),
    /// `mint.py` run by this interpreter (with PyJWT installed).
    Python(PathBuf),
}

impl Example {
    /// The Node example, from `ROOMCAST_TOKENS_NODE_DIR`.
    fn node() -> anyhow::Result<Self> {
        let dir = PathBuf::from(required_env("ROOMCAST_TOKENS_NODE_DIR")?);
        let installed = dir.join("node_modules/jsonwebtoken/package.json");
        ensure!(
            installed.is_file(),
            "{} is missing: run `npm ci` in {}",
            installed.display(),
            dir.display()
        );
        Ok(Self::Node(dir))
    }

    /// The Python example, run by `ROOMCAST_TOKENS_PYTHON`.
    fn python() -> anyhow::Result<Self> {
        let python = PathBuf::from(required_env("ROOMCAST_TOKENS_PYTHON")?);
        ensure!(
            python.is_file(),
            "ROOMCAST_TOKENS_PYTHON={} does not exist",
            python.display()
        );
        Ok(Self::Python(python))
    }

    /// Runs the example's command line with `args`, the HS256 secret (when given) in
    /// `ROOMCAST_JWT_SECRET` as a backend's environment holds it; returns the token it prints.
    fn mint(&self, secret: Option<&str>, args: &[&str]) -> anyhow::Result<String> {
        let mut command = match self {
            Self::Node(dir) => {
                let mut c = Command::new("node");
                c.arg(dir.join("mint.mjs"));
                c
            }
            Self::Python(python) => {
                let mut c = Command::new(python);
                c.arg(checkout().join("examples/tokens/python/mint.py"));
                c
            }
        };
        command.args(args);
        // Only what the test passes: none of the examples' environment fallbacks.
        for name in [
            "ROOMCAST_JWT_SECRET",
            "ROOMCAST_JWT_ISSUER",
            "ROOMCAST_JWT_AUDIENCE",
            "ROOMCAST_JWT_PRIVATE_KEY_FILE",
        ] {
            command.env_remove(name);
        }
        if let Some(secret) = secret {
            command.env("ROOMCAST_JWT_SECRET", secret);
        }
        let out = command
            .output()
            .with_context(|| format!("running the {} example", self.name()))?;
        ensure!(
            out.status.success(),
            "the {} example {args:?} failed: {}",
            self.name(),
            String::from_utf8_lossy(&out.stderr)
        );
        let token = String::from_utf8(out.stdout)?.trim().to_owned();
        ensure!(
            token.split('.').count() == 3,
            "the {} example printed {token:?}, not a JWT",
            self.name()
        );
        Ok(token)
    }

    fn name(&self) -> &'static str {
        match self {
            Self::Node(_) => "Node",
            Self::Python(_) => "Python",
        }
    }
}

/// `--user … --tenant acme` with the deployment's issuer and audience, then `extra`.
fn args<'a>(user: &'a str, rooms: &'a str, role: &'a str, extra: &[&'a str]) -> Vec<&'a str> {
    let mut args = vec![
        "--user",
        user,
        "--tenant",
        TENANT,
        "--rooms",
        rooms,
        "--role",
        role,
        "--issuer",
        ISSUER,
        "--audience",
        AUDIENCE,
    ];
    args.extend_from_slice(extra);
    args
}

/// A visitor's token (room [`ROOM`]) and an agent's (`support-*`), minted by `example`.
fn visitor_and_agent(
    example: &Example,
    secret: Option<&str>,
    extra: &[&str],
) -> anyhow::Result<(String, String)> {
    let visitor = example.mint(secret, &args("visitor-1", ROOM, "user", extra))?;
    let mut agent_extra = vec!["--name", "Ann"];
    agent_extra.extend_from_slice(extra);
    let agent = example.mint(secret, &args("ann", "support-*", "agent", &agent_extra))?;
    Ok((visitor, agent))
}

/// The claims of `token`, unverified.
fn payload(token: &str) -> anyhow::Result<Value> {
    let part = token.split('.').nth(1).context("no payload")?;
    let json = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(part)?;
    Ok(serde_json::from_slice(&json)?)
}

/// The visitor and the agent connect with `?token=` and join [`ROOM`]; the visitor's message
/// is acknowledged and delivered to the agent.
async fn round_trip(target: &Target, visitor: &str, agent: &str, what: &str) -> anyhow::Result<()> {
    let mut v = Client::connect(target, visitor, &format!("{what}: visitor")).await?;
    let mut a = Client::connect(target, agent, &format!("{what}: agent")).await?;
    v.join(ROOM).await?;
    a.join(ROOM).await?;
    let id = "01JH0000000000000000000001";
    let ack = v.message(ROOM, id, "my order is late").await?;
    let got = a
        .expect(&format!("{what}: the visitor's message"), |f| {
            frame_type(f) == "message" && f["id"] == id
        })
        .await?;
    ensure!(
        got["body"] == "my order is late" && got["from"] == "visitor-1" && got["seq"] == ack["seq"],
        "{what}: delivered {got}, acknowledged {ack}"
    );
    v.close().await?;
    a.close().await?;
    Ok(())
}

/// Everything one example must do: HS256 (with the claims checked and a wrong audience
/// refused), RS256 with a private key, and the next key of a rotation by `kid`.
fn example_tokens_connect(example: &Example) -> anyhow::Result<()> {
    let name = example.name();
    let dir = tempfile::tempdir()?;
    let iss_aud = ["--jwt-issuer", ISSUER, "--jwt-audience", AUDIENCE];

    // HS256, the secret as docs/deploy.md makes it (with its trailing newline, as a backend
    // reading it from a file or `$(…)` may hold it): both sides use the string's bytes.
    let secret = openssl(&["rand", "-base64", "48"])?;
    let server = Server::start_with_key(
        &dir.path().join("hs256"),
        &[&["--jwt-secret", secret.as_str()][..], &iss_aud].concat(),
    )?;
    let target = server.target();
    let (visitor, agent) = visitor_and_agent(example, Some(&secret), &[])?;
    let claims = payload(&visitor)?;
    let now = SystemTime::now().duration_since(UNIX_EPOCH)?.as_secs();
    let iat = claims["iat"].as_u64().context("iat")?;
    ensure!(
        iat.abs_diff(now) < 60 && claims["exp"].as_u64() == Some(iat + 3600),
        "{name}: iat/exp {claims}"
    );
    ensure!(
        claims["sub"] == "visitor-1"
            && claims["tid"] == TENANT
            && claims["rooms"] == serde_json::json!([ROOM])
            && claims["role"] == "user"
            && claims["iss"] == ISSUER
            && claims["aud"] == AUDIENCE
            && claims.get("nbf").is_none(),
        "{name}: claims {claims}"
    );
    ensure!(payload(&agent)?["name"] == "Ann", "{name}: agent's name");
    let wrong_audience = example.mint(
        Some(&secret),
        &[
            "--user",
            "visitor-1",
            "--tenant",
            TENANT,
            "--rooms",
            ROOM,
            "--issuer",
            ISSUER,
            "--audience",
            "someone-else",
        ],
    )?;
    runtime().block_on(async {
        round_trip(&target, &visitor, &agent, &format!("{name} HS256")).await?;
        let status = upgrade_status(&target, &wrong_audience).await?;
        ensure!(status == 401, "{name}: a wrong audience got {status}");
        Ok::<_, anyhow::Error>(())
    })?;
    drop(server);

    // RS256 with a private key made by `openssl genpkey`; the server holds the public key.
    let private = dir.path().join("rsa.key").display().to_string();
    let public = dir.path().join("rsa.pub").display().to_string();
    openssl(&[
        "genpkey",
        "-algorithm",
        "RSA",
        "-pkeyopt",
        "rsa_keygen_bits:2048",
        "-out",
        &private,
    ])?;
    openssl(&["pkey", "-in", &private, "-pubout", "-out", &public])?;
    let server = Server::start_with_key(
        &dir.path().join("rs256"),
        &[
            &["--jwt-public-key", public.as_str(), "--jwt-alg", "RS256"][..],
            &iss_aud,
        ]
        .concat(),
    )?;
    let target = server.target();
    let (visitor, agent) = visitor_and_agent(example, None, &["--private-key", &private])?;
    runtime().block_on(round_trip(
        &target,
        &visitor,
        &agent,
        &format!("{name} RS256"),
    ))?;
    drop(server);

    // Rotation: the server verifies the current secret and, for tokens naming `kid`
    // 2026-12, the next one (a JWKS `oct` key is base64url, as JWKS requires; the secret
    // itself stays the string).
    let next = openssl(&["rand", "-base64", "48"])?;
    let next = next.trim();
    let jwks = dir.path().join("jwks.json");
    let k = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(next);
    std::fs::write(
        &jwks,
        serde_json::json!({"keys": [{"kty": "oct", "kid": "2026-12", "k": k}]}).to_string(),
    )?;
    let jwks = jwks.display().to_string();
    let server = Server::start_with_key(
        &dir.path().join("rotation"),
        &[
            &["--jwt-secret", secret.as_str(), "--jwt-jwks", jwks.as_str()][..],
            &iss_aud,
        ]
        .concat(),
    )?;
    let target = server.target();
    let (visitor, agent) = visitor_and_agent(example, Some(next), &["--kid", "2026-12"])?;
    let old = example.mint(Some(&secret), &args("visitor-1", ROOM, "user", &[]))?;
    runtime().block_on(async {
        round_trip(
            &target,
            &visitor,
            &agent,
            &format!("{name} next key by kid"),
        )
        .await?;
        let status = upgrade_status(&target, &old).await?;
        ensure!(status == 101, "{name}: the current key got {status}");
        Ok(())
    })
}

#[test]
fn node_example_tokens_connect_and_round_trip() -> anyhow::Result<()> {
    example_tokens_connect(&Example::node()?)
}

#[test]
fn python_example_tokens_connect_and_round_trip() -> anyhow::Result<()> {
    example_tokens_connect(&Example::python()?)
}
