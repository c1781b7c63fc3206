//! Issue 15, findings 6, 9, 11 and 12, against the real `roomcast-local` binary: what the
//! server exposes and to whom. The Management API is not on the public port (the protocol
//! suite's `management_api_is_not_public` checks the paths); development tokens are signed with
//! a key of the process's own and never handed to a request forwarded by an untrusted proxy;
//! `X-Forwarded-For` counts only from `--trusted-proxy`; the HTTP API is rate limited per
//! client address; `/metrics` can be protected; the pages carry a CSP; the leeway applies to
//! the expiry close; the `token` command grants only the rooms asked for.
#![cfg(unix)]

mod process;

use std::process::Command;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context, ensure};
use base64::Engine;
use process::{Server, Target, runtime, upgrade_status};
use roomcast_protocol_tests::client::Client;
use roomcast_protocol_tests::deployment::Deployment;
use roomcast_protocol_tests::http::{Request, Response};
use roomcast_protocol_tests::scope::claims;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

/// A secret long enough for the `token` command.
const SECRET: &str = "roomcast-exposure-test-secret-0123456789";

fn base(port: u16) -> String {
    format!("http://127.0.0.1:{port}")
}

async fn get(port: u16, path: &str, headers: &[(&'static str, &str)]) -> anyhow::Result<Response> {
    let mut request = Request::new("GET", path);
    for (name, value) in headers {
        request.headers.push((name, (*value).to_owned()));
    }
    request.send(&base(port)).await
}

/// `GET /dev/token` for `user`, with `headers`: the status and the token when one was given.
async fn dev_token(
    port: u16,
    user: &str,
    headers: &[(&'static str, &str)],
) -> anyhow::Result<(u16, Option<String>)> {
    let path = format!("/dev/token?user={user}&rooms=lobby");
    let r = get(port, &path, headers).await?;
    let token = r
        .json()
        .ok()
        .and_then(|v| v["token"].as_str().map(str::to_owned));
    Ok((r.status, token))
}

/// The `kid` in a JWT's header.
fn kid(token: &str) -> anyhow::Result<Option<String>> {
    let header = token.split('.').next().context("no header")?;
    let json = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(header)?;
    let v: serde_json::Value = serde_json::from_slice(&json)?;
    Ok(v["kid"].as_str().map(str::to_owned))
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

#[test]
fn dev_tokens_are_signed_with_a_key_that_dies_with_the_process() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let mut server = Server::start(dir.path(), 0, &["--dev-tokens"])?;
    let port = server.port;
    let rt = runtime();
    let token = rt.block_on(async {
        let (status, token) = dev_token(port, "visitor", &[]).await?;
        ensure!(status == 200, "/dev/token answered {status}");
        let token = token.context("no token")?;
        ensure!(kid(&token)?.as_deref() == Some("roomcast-dev"), "{token}");
        let target = server.target();
        ensure!(upgrade_status(&target, &token).await? == 101);
        Ok(token)
    })?;
    // The same data directory (and secret), a new process: its development key is new.
    server.kill_9()?;
    let server = Server::start(dir.path(), port, &["--dev-tokens"])?;
    rt.block_on(async {
        let target = server.target();
        let status = upgrade_status(&target, &token).await?;
        ensure!(status == 401, "an old process's dev token got {status}");
        let by_secret = target.token("visitor", &["lobby"]);
        ensure!(upgrade_status(&target, &by_secret).await? == 101);
        Ok(())
    })
}

#[test]
fn dev_tokens_are_not_for_requests_a_proxy_forwarded() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let direct = Server::start(dir.path(), 0, &["--dev-tokens"])?;
    let dir2 = tempfile::tempdir()?;
    let behind_proxy = Server::start(
        dir2.path(),
        0,
        &["--dev-tokens", "--trusted-proxy", "127.0.0.1"],
    )?;
    runtime().block_on(async {
        // A same-host proxy makes every client a loopback peer; it says so in its headers.
        for (name, value) in [
            ("X-Forwarded-For", "203.0.113.9"),
            ("X-Forwarded-For", "127.0.0.1"),
            ("Forwarded", "for=203.0.113.9"),
            ("X-Real-IP", "203.0.113.9"),
        ] {
            let (status, _) = dev_token(direct.port, "v", &[(name, value)]).await?;
            ensure!(
                status == 403,
                "{name}: {value} from an untrusted proxy: {status}"
            );
        }
        ensure!(dev_token(direct.port, "v", &[]).await?.0 == 200);
        // From a trusted proxy, the client it names decides.
        let remote = [("X-Forwarded-For", "203.0.113.9")];
        ensure!(dev_token(behind_proxy.port, "v", &remote).await?.0 == 403);
        let local = [("X-Forwarded-For", "127.0.0.1")];
        ensure!(dev_token(behind_proxy.port, "v", &local).await?.0 == 200);
        Ok(())
    })
}

type WebSocket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// A WebSocket upgrade of `user` carrying `X-Forwarded-For: forwarded_for`: its status.
async fn upgrade_forwarded_for(
    target: &Target,
    user: &str,
    forwarded_for: &str,
) -> anyhow::Result<(u16, Option<WebSocket>)> {
    let url = format!(
        "{}?token={}",
        target.ws_url(),
        target.token(user, &["lobby"])
    );
    let mut request = url.into_client_request()?;
    request
        .headers_mut()
        .insert("x-forwarded-for", forwarded_for.parse()?);
    match tokio_tungstenite::connect_async(request).await {
        Ok((ws, _)) => Ok((101, Some(ws))),
        Err(tokio_tungstenite::tungstenite::Error::Http(r)) => Ok((r.status().as_u16(), None)),
        Err(e) => Err(e.into()),
    }
}

#[test]
fn per_address_caps_count_the_client_a_trusted_proxy_names() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let flags = [
        "--trusted-proxy",
        "127.0.0.1",
        "--max-connections-per-ip",
        "2",
    ];
    let server = Server::start(dir.path(), 0, &flags)?;
    let dir2 = tempfile::tempdir()?;
    let untrusted = Server::start(dir2.path(), 0, &["--max-connections-per-ip", "2"])?;
    runtime().block_on(async {
        let target = server.target();
        let mut held = Vec::new();
        for user in ["a", "b"] {
            let (status, ws) = upgrade_forwarded_for(&target, user, "198.51.100.1").await?;
            ensure!(status == 101, "{user}: {status}");
            held.push(ws);
        }
        let (third, _) = upgrade_forwarded_for(&target, "c", "198.51.100.1").await?;
        ensure!(third == 429, "a third from the same client: {third}");
        let (other, ws) = upgrade_forwarded_for(&target, "d", "198.51.100.2").await?;
        ensure!(other == 101, "another client behind the proxy: {other}");
        held.push(ws);
        // Without --trusted-proxy the header changes nothing: the peer is capped.
        let target = untrusted.target();
        for (i, addr) in ["198.51.100.1", "198.51.100.2"].iter().enumerate() {
            let (status, ws) = upgrade_forwarded_for(&target, &format!("u{i}"), addr).await?;
            ensure!(status == 101, "{addr}: {status}");
            held.push(ws);
        }
        let (spoofed, _) = upgrade_forwarded_for(&target, "u3", "198.51.100.3").await?;
        ensure!(spoofed == 429, "a spoofed header got a slot: {spoofed}");
        Ok(())
    })
}

#[test]
fn the_http_api_is_rate_limited_per_client_address() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    // Defaults: 10/s with a burst of 30 per user, five users' worth per address.
    let server = Server::start(dir.path(), 0, &[])?;
    runtime().block_on(async {
        let mut statuses = Vec::new();
        for _ in 0..400 {
            // No token: the address pays before any signature is checked.
            let r = get(server.port, "/rooms/lobby/messages", &[]).await?;
            statuses.push(r.status);
            if r.status == 429 {
                ensure!(r.json()?["code"] == "RATE_LIMITED", "{}", r.text());
                break;
            }
        }
        let unauthorized = statuses.iter().filter(|s| **s == 401).count();
        ensure!(
            statuses.last() == Some(&429),
            "400 requests, none refused: {statuses:?}"
        );
        ensure!(unauthorized >= 150, "refused after {unauthorized} requests");
        let health = get(server.port, "/health", &[]).await?;
        ensure!(health.status == 200, "/health is never rate limited");
        Ok(())
    })
}

#[test]
fn metrics_can_require_a_token() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let server = Server::start(dir.path(), 0, &["--metrics-token", "m3trics-t0ken"])?;
    runtime().block_on(async {
        let open = get(server.port, "/metrics", &[]).await?;
        ensure!(
            open.status == 401,
            "/metrics without the token: {}",
            open.status
        );
        let wrong = get(server.port, "/metrics", &[("Authorization", "Bearer nope")]).await?;
        ensure!(wrong.status == 401);
        let right = get(
            server.port,
            "/metrics",
            &[("Authorization", "Bearer m3trics-t0ken")],
        )
        .await?;
        ensure!(right.status == 200 && right.text().contains("roomcast_"));
        Ok(())
    })
}

#[test]
fn pages_carry_a_csp_and_only_scripts_are_shared_across_origins() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let server = Server::start(dir.path(), 0, &[])?;
    runtime().block_on(async {
        for page in ["/demo", "/console"] {
            let r = get(server.port, page, &[]).await?;
            ensure!(r.status == 200, "{page}: {}", r.status);
            let csp = r.header("content-security-policy").unwrap_or_default();
            ensure!(
                csp.contains("frame-ancestors 'none'") && csp.contains("script-src 'self'"),
                "{page}: CSP `{csp}`"
            );
            ensure!(r.header("x-frame-options") == Some("DENY"), "{page}");
            ensure!(
                r.header("access-control-allow-origin").is_none(),
                "{page} is shared with every origin"
            );
        }
        for script in ["/widget.js", "/sdk.js", "/console.js"] {
            let r = get(server.port, script, &[]).await?;
            ensure!(
                r.header("access-control-allow-origin") == Some("*"),
                "{script}"
            );
        }
        Ok(())
    })
}

#[test]
fn the_expiry_close_applies_the_leeway() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let server = Server::start(dir.path(), 0, &["--jwt-leeway-secs", "30"])?;
    let target = server.target();
    runtime().block_on(async {
        // Five seconds past `exp`, within the leeway: it connects and stays.
        let late = target.sign(&roomcast_core::auth::Claims {
            exp: Some(now_secs() - 5),
            ..claims("acme", "late", &["lobby"])
        });
        let mut client = Client::connect(&target, &late, "late").await?;
        client.join("lobby").await?;
        tokio::time::sleep(Duration::from_secs(2)).await;
        client.ping().await.context("closed within the leeway")?;
        client.close().await?;
        // Past the leeway: refused.
        let expired = target.sign(&roomcast_core::auth::Claims {
            exp: Some(now_secs() - 31),
            ..claims("acme", "expired", &["lobby"])
        });
        ensure!(upgrade_status(&target, &expired).await? == 401);
        Ok(())
    })
}

#[test]
fn the_token_command_grants_only_the_rooms_asked_for() -> anyhow::Result<()> {
    let bare = Command::new(env!("CARGO_BIN_EXE_roomcast-local"))
        .args(["token", "--user", "alice", "--jwt-secret", SECRET])
        .output()?;
    ensure!(!bare.status.success(), "a token without --rooms was minted");
    let stderr = String::from_utf8_lossy(&bare.stderr);
    ensure!(stderr.contains("--rooms"), "{stderr}");
    let granted = Command::new(env!("CARGO_BIN_EXE_roomcast-local"))
        .args(["token", "--user", "alice", "--rooms", "support-*"])
        .args(["--jwt-secret", SECRET])
        .output()?;
    ensure!(granted.status.success());
    let token = String::from_utf8(granted.stdout)?;
    let payload = token.trim().split('.').nth(1).context("no payload")?;
    let json = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(payload)?;
    let claims: serde_json::Value = serde_json::from_slice(&json)?;
    ensure!(
        claims["rooms"] == serde_json::json!(["support-*"]),
        "{claims}"
    );
    Ok(())
}
