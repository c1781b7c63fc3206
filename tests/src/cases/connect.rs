//! Connecting: token checks answered as the upgrade's HTTP status, the subprotocol carrier,
//! expiry during a connection, the per-user connection limit.

use std::time::Duration;

use anyhow::{Context, bail, ensure};
use roomcast_core::auth::{Claims, TokenSigner};
use roomcast_core::limits::DEFAULT_MAX_CONNECTIONS_PER_USER;
use tokio::time::Instant;

use crate::client::{Client, ConnectError, Credentials, SUBPROTOCOL, frame_type, wait_timeout};
use crate::deployment::Deployment;
use crate::scope::{Failures, Scope, eventually, now_ms, now_secs};

/// Connecting with `credentials` must be refused with HTTP `status`.
async fn expect_refused(
    d: &dyn Deployment,
    credentials: Credentials<'_>,
    status: u16,
) -> anyhow::Result<()> {
    match Client::try_connect(d, credentials, "refused").await {
        Err(ConnectError::Refused { status: got, body }) => {
            ensure!(got == status, "expected HTTP {status}, got {got} `{body}`");
            Ok(())
        }
        Err(ConnectError::Failed(e)) => Err(e.context(format!("expected HTTP {status}"))),
        Ok(_) => bail!("expected HTTP {status}, but the upgrade succeeded"),
    }
}

/// A missing, malformed, wrongly signed, expired or exp-less token is refused with 401, in
/// `?token=` and in `Sec-WebSocket-Protocol` alike; the same claims correctly signed connect.
pub async fn bad_tokens_refused_401(d: &dyn Deployment) -> anyhow::Result<()> {
    let s = Scope::new(d, "bad_tokens");
    let good = s.claims("alice", &["*"]);
    let wrong_key = TokenSigner::hs256(b"not-the-deployment-secret").sign(&good);
    let expired = d.sign(&Claims {
        exp: Some(now_secs() - 600),
        ..good.clone()
    });
    let no_exp = d.sign(&Claims {
        exp: None,
        ..good.clone()
    });
    let mut f = Failures::default();
    f.check("no token", expect_refused(d, Credentials::None, 401).await);
    let bad = [
        ("signed with another key", wrong_key.as_str()),
        ("expired", expired.as_str()),
        ("without exp", no_exp.as_str()),
        ("not a JWT", "not.a.jwt"),
    ];
    for (what, token) in bad {
        f.check(
            &format!("{what}, in ?token="),
            expect_refused(d, Credentials::Query(token), 401).await,
        );
        f.check(
            &format!("{what}, in Sec-WebSocket-Protocol"),
            expect_refused(d, Credentials::Subprotocol(token), 401).await,
        );
    }
    f.check(
        "control: the same claims correctly signed",
        s.connect_with("alice", &d.sign(&good)).await.map(drop),
    );
    f.finish()
}

/// A valid `user` token that grants no room is refused with 403.
pub async fn token_granting_no_rooms_refused_403(d: &dyn Deployment) -> anyhow::Result<()> {
    let s = Scope::new(d, "no_rooms");
    let token = s.token("alice", &[]);
    let mut f = Failures::default();
    f.check(
        "in ?token=",
        expect_refused(d, Credentials::Query(&token), 403).await,
    );
    f.check(
        "in Sec-WebSocket-Protocol",
        expect_refused(d, Credentials::Subprotocol(&token), 403).await,
    );
    f.finish()
}

/// `Sec-WebSocket-Protocol: roomcast.v1, <jwt>` connects and `roomcast.v1` is echoed; a
/// `?token=` connection gets no subprotocol.
pub async fn subprotocol_token_accepted_and_echoed(d: &dyn Deployment) -> anyhow::Result<()> {
    let s = Scope::new(d, "subprotocol");
    let token = s.token("alice", &["lobby"]);
    let mut c =
        Client::try_connect(d, Credentials::Subprotocol(&token), "alice#subprotocol").await?;
    ensure!(
        c.protocol() == Some(SUBPROTOCOL),
        "expected `{SUBPROTOCOL}` echoed, got {:?}",
        c.protocol()
    );
    let joined = c.join("lobby").await?;
    ensure!(joined["head"] == 0, "fresh room must have head 0: {joined}");
    let q = s.connect_with("alice", &token).await?;
    ensure!(
        q.protocol().is_none(),
        "no subprotocol was offered, yet {:?} was echoed",
        q.protocol()
    );
    Ok(())
}

/// A connection outliving its token is closed with 4001: at once, or at its next frame at the
/// latest; never is a frame answered after expiry.
pub async fn token_expiry_closes_4001(d: &dyn Deployment) -> anyhow::Result<()> {
    let s = Scope::new(d, "token_expiry");
    let exp = now_secs() + 3;
    let token = d.sign(&Claims {
        exp: Some(exp),
        ..s.claims("alice", &["*"])
    });
    let mut c = s.connect_with("alice", &token).await?;
    let expiry = Instant::now() + Duration::from_millis((exp * 1000).saturating_sub(now_ms()));
    c.join("lobby").await?;
    // Time is what is tested: shortly before expiry the connection still works...
    tokio::time::sleep_until(expiry - Duration::from_millis(800)).await;
    c.ping()
        .await
        .context("the connection must work until the token expires")?;
    // ...and after it, it is closed.
    tokio::time::sleep_until(expiry + Duration::from_millis(300)).await;
    let _ = c.send_json(&serde_json::json!({"action": "ping"})).await;
    let (frames, code, reason) = c.expect_close_within(wait_timeout()).await?;
    ensure!(code == 4001, "expected close 4001, got {code} `{reason}`");
    ensure!(
        !frames.iter().any(|f| frame_type(f) == "pong"),
        "a frame was answered after the token expired: {frames:?}"
    );
    Ok(())
}

/// The per-user connection limit refuses one connection over it with 429, counts only live
/// connections, and is per user.
pub async fn too_many_connections_refused_429(d: &dyn Deployment) -> anyhow::Result<()> {
    let s = Scope::new(d, "conn_limit");
    let token = s.token("alice", &["*"]);
    let mut devices = Vec::new();
    for _ in 0..DEFAULT_MAX_CONNECTIONS_PER_USER {
        devices.push(s.connect_with("alice", &token).await?);
    }
    expect_refused(d, Credentials::Query(&token), 429)
        .await
        .context("one connection over the per-user limit")?;
    s.connect("bob")
        .await
        .context("another user is not limited")?;
    if let Some(device) = devices.pop() {
        device.close().await?;
    }
    // The disconnect is processed after the close handshake; retry until it has been.
    eventually(Duration::from_millis(50), || {
        Client::connect(d, &token, "alice#again")
    })
    .await
    .context("a closed connection must free its slot")?;
    Ok(())
}
