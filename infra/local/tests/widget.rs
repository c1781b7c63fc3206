//! The widget routes of the local server: the embedded assets are the committed `widget/dist/`
//! files, served with the right content types; `GET /dev/token` is off unless `--dev-tokens`,
//! and then signs tokens the server accepts, for loopback callers only.

use std::net::SocketAddr;
use std::path::Path;

use anyhow::Context;
use clap::Parser;
use roomcast_core::auth::{AuthConfig, Role, TokenVerifier, VerifyKey};
use roomcast_local::app::App;
use roomcast_local::assets::ASSETS;
use roomcast_local::config::{Cli, ServerConfig};
use roomcast_local::router::serve;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const SECRET: &str = "widget-route-test-secret-0123456789abcdef";

/// A server in this process, stopped when the returned sender is dropped.
async fn server(flags: &[&str]) -> anyhow::Result<(SocketAddr, tokio::sync::oneshot::Sender<()>)> {
    let (addr, stop, _) = server_with_config(flags).await?;
    Ok((addr, stop))
}

/// [`server`], and the configuration it runs with.
async fn server_with_config(
    flags: &[&str],
) -> anyhow::Result<(SocketAddr, tokio::sync::oneshot::Sender<()>, ServerConfig)> {
    let mut argv = vec![
        "roomcast-local",
        "--store",
        "memory",
        "--jwt-secret",
        SECRET,
    ];
    argv.extend_from_slice(flags);
    let cli = Cli::try_parse_from(argv)?;
    let (config, _) = cli.serve.resolve()?;
    let app = App::build(config.clone()).await?;
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(serve(listener, app, async {
        let _ = stopped.await;
    }));
    Ok((addr, stop, config))
}

struct Reply {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Reply {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// One HTTP/1.1 GET with `Connection: close`.
async fn get(addr: SocketAddr, path: &str, host: &str) -> anyhow::Result<Reply> {
    let mut stream = TcpStream::connect(addr).await?;
    let request = format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await?;
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).await?;
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .context("no end of headers")?;
    let head = String::from_utf8(raw[..split].to_vec())?;
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .context("no status line")?
        .parse()?;
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
        .collect::<Vec<_>>();
    let mut body = raw[split + 4..].to_vec();
    if headers
        .iter()
        .any(|(k, v)| k.eq_ignore_ascii_case("transfer-encoding") && v == "chunked")
    {
        body = dechunk(&body)?;
    }
    Ok(Reply {
        status,
        headers,
        body,
    })
}

fn dechunk(mut data: &[u8]) -> anyhow::Result<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        let line_end = data
            .windows(2)
            .position(|w| w == b"\r\n")
            .context("bad chunk")?;
        let size = usize::from_str_radix(std::str::from_utf8(&data[..line_end])?.trim(), 16)?;
        data = &data[line_end + 2..];
        if size == 0 {
            return Ok(out);
        }
        out.extend_from_slice(data.get(..size).context("short chunk")?);
        data = data.get(size + 2..).context("short chunk")?;
    }
}

#[tokio::test]
async fn assets_are_the_committed_build_with_content_types() -> anyhow::Result<()> {
    let (addr, _stop) = server(&[]).await?;
    let dist = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../widget/dist");
    let expected = [
        ("/widget.js", "widget.js", "text/javascript; charset=utf-8"),
        ("/sdk.js", "sdk.js", "text/javascript; charset=utf-8"),
        (
            "/console.js",
            "console.js",
            "text/javascript; charset=utf-8",
        ),
        ("/demo", "demo.html", "text/html; charset=utf-8"),
        ("/console", "console.html", "text/html; charset=utf-8"),
    ];
    assert_eq!(ASSETS.len(), expected.len());
    for (path, file, content_type) in expected {
        let reply = get(addr, path, "127.0.0.1").await?;
        assert_eq!(reply.status, 200, "{path}");
        assert_eq!(reply.header("content-type"), Some(content_type), "{path}");
        assert_eq!(
            reply.header("x-content-type-options"),
            Some("nosniff"),
            "{path}"
        );
        let on_disk = std::fs::read(dist.join(file))?;
        assert!(reply.body == on_disk, "{path} is not widget/dist/{file}");
    }
    // `/` still upgrades WebSockets and, without an upgrade, is the info page linking the demo.
    let info = get(addr, "/", "127.0.0.1").await?;
    assert_eq!(info.status, 200);
    assert!(String::from_utf8(info.body)?.contains("/demo"));
    Ok(())
}

#[tokio::test]
async fn dev_tokens_are_off_by_default() -> anyhow::Result<()> {
    let (addr, _stop) = server(&[]).await?;
    let reply = get(addr, "/dev/token?user=v1&rooms=support-1", "127.0.0.1").await?;
    assert_eq!(reply.status, 404);
    Ok(())
}

#[tokio::test]
async fn dev_tokens_sign_what_the_server_accepts_for_loopback_only() -> anyhow::Result<()> {
    let (addr, _stop, config) = server_with_config(&["--dev-tokens"]).await?;
    let host = addr.to_string();
    let reply = get(
        addr,
        "/dev/token?user=ann&role=agent&rooms=support-*,inbox&name=Ann&ttl=60",
        &host,
    )
    .await?;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.header("cache-control"), Some("no-store"));
    let body: serde_json::Value = serde_json::from_slice(&reply.body)?;
    let token = body["token"].as_str().context("token")?;
    // Not with the server's secret: with the process's development key.
    let by_secret = TokenVerifier::new(&AuthConfig {
        key: VerifyKey::Hs256(SECRET.as_bytes().to_vec()),
        keys_by_kid: Vec::new(),
        issuer: None,
        audience: None,
        leeway_secs: 0,
    })?;
    let now = roomcast_local::app::now_ms();
    assert!(
        by_secret.verify(token, now).is_err(),
        "signed with the secret"
    );
    let id = config.settings.verifier()?.verify(token, now)?;
    assert_eq!(
        (id.user.as_str(), id.tenant.as_str(), id.role),
        ("ann", "demo", Role::Agent)
    );
    assert_eq!(id.rooms, ["support-*", "inbox"]);
    assert_eq!(id.name.as_deref(), Some("Ann"));
    assert!(id.expires_at_ms <= now + 61_000);

    for (path, status) in [
        ("/dev/token?user=x&role=service", 400),
        ("/dev/token?user=bad/name", 400),
        ("/dev/token?user=x&rooms=a/b", 400),
        ("/dev/token?rooms=a", 400),
    ] {
        assert_eq!(get(addr, path, &host).await?.status, status, "{path}");
    }
    // A page on another name resolving to 127.0.0.1 (DNS rebinding) gets nothing.
    let rebound = get(addr, "/dev/token?user=x", "evil.example:80").await?;
    assert_eq!(rebound.status, 403);
    Ok(())
}
