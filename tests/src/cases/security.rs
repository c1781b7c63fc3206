//! Attacks (issue 8): forged and invalid tokens over the wire, actions in rooms the connection
//! may not act in, changing another user's messages, and crossing tenants on every path
//! (WebSocket frames, typing, read receipts, presence, HTTP history, HTTP publish). Every
//! refusal has its documented code, and a refused frame never costs the connection.

use anyhow::{Context, ensure};
use base64::Engine as _;
use roomcast_core::auth::{Claims, Role, TokenSigner};
use roomcast_core::limits::MAX_TOKEN_BYTES;
use serde_json::{Value, json};

use crate::cases::http_api::ensure_status;
use crate::client::{Client, ConnectError, Credentials, frame_type};
use crate::deployment::Deployment;
use crate::http::{Request, Response};
use crate::scope::{Failures, Scope, now_secs};

/// Unpadded base64url, as JWT segments are.
fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// The three segments of a token.
fn segments(token: &str) -> anyhow::Result<(&str, &str, &str)> {
    let mut it = token.splitn(3, '.');
    match (it.next(), it.next(), it.next()) {
        (Some(h), Some(p), Some(s)) => Ok((h, p, s)),
        _ => anyhow::bail!("not a JWT: {token}"),
    }
}

/// `token` with its header replaced by `header` (the signature kept).
fn with_header(token: &str, header: &Value) -> anyhow::Result<String> {
    let (_, payload, signature) = segments(token)?;
    Ok(format!(
        "{}.{payload}.{signature}",
        b64(header.to_string().as_bytes())
    ))
}

/// `token` with its claims replaced by `claims` (the signature kept).
fn with_claims(token: &str, claims: &Claims) -> anyhow::Result<String> {
    let (header, _, signature) = segments(token)?;
    let payload = serde_json::to_vec(claims)?;
    Ok(format!("{header}.{}.{signature}", b64(&payload)))
}

/// An unsigned `alg: none` token carrying `claims`.
fn alg_none(claims: &Claims) -> anyhow::Result<String> {
    Ok(format!(
        "{}.{}.",
        b64(br#"{"alg":"none","typ":"JWT"}"#),
        b64(&serde_json::to_vec(claims)?)
    ))
}

/// Tokens a deployment verifying HS256 with its own key must refuse with 401, built from the
/// `good` claims (which it accepts): forgeries, other algorithms, and the claim checks.
fn forged_tokens(d: &dyn Deployment, good: &Claims) -> anyhow::Result<Vec<(String, String)>> {
    let signed = d.sign(good);
    let escalated = Claims {
        role: Role::Service,
        rooms: vec!["*".into()],
        sub: Some("mallory".into()),
        ..good.clone()
    };
    let other_tenant = Claims {
        tid: Some(format!("{}-other", good.tid.clone().unwrap_or_default())),
        ..good.clone()
    };
    let (header, payload, signature) = segments(&signed)?;
    let changed = |c: Claims| d.sign(&c);
    let mut out: Vec<(&str, String)> = vec![
        ("alg none, unsigned", alg_none(good)?),
        (
            "alg none, escalated claims (service, every room)",
            alg_none(&escalated)?,
        ),
        (
            "alg none with the deployment's own valid signature",
            with_header(&signed, &json!({"alg": "none", "typ": "JWT"}))?,
        ),
        (
            "alg None with the valid signature",
            with_header(&signed, &json!({"alg": "None"}))?,
        ),
        (
            "alg HS512 in the header (HS256 signature)",
            with_header(&signed, &json!({"alg": "HS512", "typ": "JWT"}))?,
        ),
        (
            "alg RS256 in the header (key confusion)",
            with_header(&signed, &json!({"alg": "RS256", "typ": "JWT"}))?,
        ),
        (
            "alg ES256 in the header (key confusion)",
            with_header(&signed, &json!({"alg": "ES256", "typ": "JWT"}))?,
        ),
        (
            "signed with another key",
            TokenSigner::hs256(b"an-attacker-secret").sign(good),
        ),
        (
            "claims escalated after signing",
            with_claims(&signed, &escalated)?,
        ),
        (
            "tenant changed after signing",
            with_claims(&signed, &other_tenant)?,
        ),
        ("signature removed", format!("{header}.{payload}.")),
        (
            "signature of another token",
            format!(
                "{header}.{payload}.{}",
                segments(&changed(Claims {
                    sub: Some("bob".into()),
                    ..good.clone()
                }))?
                .2
            ),
        ),
        (
            "signature truncated",
            format!(
                "{header}.{payload}.{}",
                &signature[..signature.len() / 8 * 4]
            ),
        ),
        (
            "expired",
            changed(Claims {
                exp: Some(now_secs() - 60),
                ..good.clone()
            }),
        ),
        (
            "nbf an hour in the future",
            changed(Claims {
                nbf: Some(now_secs() + 3600),
                ..good.clone()
            }),
        ),
        (
            "without exp",
            changed(Claims {
                exp: None,
                ..good.clone()
            }),
        ),
        (
            "without sub",
            changed(Claims {
                sub: None,
                ..good.clone()
            }),
        ),
        (
            "without tid",
            changed(Claims {
                tid: None,
                ..good.clone()
            }),
        ),
        (
            "sub with the key separator",
            changed(Claims {
                sub: Some("alice/x".into()),
                ..good.clone()
            }),
        ),
        (
            "tid with the key separator",
            changed(Claims {
                tid: Some("acme/lobby".into()),
                ..good.clone()
            }),
        ),
        (
            "an invalid room grant",
            changed(Claims {
                rooms: vec!["lobby/../x".into()],
                ..good.clone()
            }),
        ),
    ];
    let (_, over) = around_the_limit(|n| {
        d.sign(&Claims {
            name: Some("x".repeat(n)),
            ..good.clone()
        })
    });
    out.push(("validly signed, over the size limit", over));
    Ok(out
        .into_iter()
        .map(|(label, token)| (label.to_owned(), token))
        .collect())
}

/// The largest token `make(n)` yields within [`MAX_TOKEN_BYTES`] and the smallest over it.
fn around_the_limit(make: impl Fn(usize) -> String) -> (String, String) {
    let (mut lo, mut hi) = (0, MAX_TOKEN_BYTES);
    while hi - lo > 1 {
        let mid = lo + (hi - lo) / 2;
        if make(mid).len() > MAX_TOKEN_BYTES {
            hi = mid;
        } else {
            lo = mid;
        }
    }
    (make(lo), make(hi))
}

/// Connecting with `credentials` must be refused with HTTP 401.
async fn refused_401(d: &dyn Deployment, credentials: Credentials<'_>) -> anyhow::Result<()> {
    match Client::try_connect(d, credentials, "attacker").await {
        Err(ConnectError::Refused { status: 401, .. }) => Ok(()),
        Err(ConnectError::Refused { status, body }) => {
            anyhow::bail!("expected HTTP 401, got {status} `{body}`")
        }
        Err(ConnectError::Failed(e)) => Err(e.context("expected HTTP 401")),
        Ok(_) => anyhow::bail!("expected HTTP 401, but the upgrade succeeded"),
    }
}

/// The JWT matrix over the wire: `alg: none` (unsigned, escalated, or with a valid signature),
/// other algorithms named in the header (HS/RS/ES confusion), other keys, claims or headers
/// changed after signing, a removed or foreign signature, expired, `nbf` in the future, missing
/// `exp`/`sub`/`tid`, invalid names, and a validly signed token over 8 KB: each upgrade is
/// refused with 401, in `?token=` and in `Sec-WebSocket-Protocol`. Controls: the good claims
/// connect, and so does a validly signed token just within the size limit.
pub async fn jwt_attacks_refused_401(d: &dyn Deployment) -> anyhow::Result<()> {
    let s = Scope::new(d, "jwt_attacks");
    let good = s.claims("alice", &["*"]);
    let mut f = Failures::default();
    for (what, token) in forged_tokens(d, &good)? {
        f.check(
            &format!("{what}, in ?token="),
            refused_401(d, Credentials::Query(&token)).await,
        );
        f.check(
            &format!("{what}, in Sec-WebSocket-Protocol"),
            refused_401(d, Credentials::Subprotocol(&token)).await,
        );
    }
    f.check(
        "control: the good claims, correctly signed",
        s.connect_with("alice", &d.sign(&good)).await.map(drop),
    );
    let (fits, _) = around_the_limit(|n| {
        d.sign(&Claims {
            name: Some("x".repeat(n)),
            ..good.clone()
        })
    });
    f.check(
        "control: a validly signed token at the size limit",
        s.connect_with("alice", &fits).await.map(drop),
    );
    f.finish()
}

/// Sends `frame`; the reply must be `error {code}` carrying `reference`, and the connection must
/// still answer a ping.
async fn refused(c: &mut Client, frame: &Value, code: &str, reference: &str) -> anyhow::Result<()> {
    c.send_json(frame).await?;
    let error = c.expect_error(code).await?;
    ensure!(
        error["ref"] == reference,
        "expected ref {reference}: {error}"
    );
    c.ping()
        .await
        .context("the connection must survive a refused frame")?;
    Ok(())
}

/// Every action on `room` that needs membership, each with its own `ref` (`{tag}-{action}`).
fn member_actions(room: &str, seq: u64, tag: &str) -> Vec<(&'static str, Value, String)> {
    let r = |action: &str| format!("{tag}-{action}");
    vec![
        (
            "message",
            json!({"action": "message", "room": room, "id": r("message"), "body": "intrusion"}),
            r("message"),
        ),
        (
            "edit",
            json!({"action": "edit", "room": room, "seq": seq, "body": "defaced", "ref": r("edit")}),
            r("edit"),
        ),
        (
            "delete",
            json!({"action": "delete", "room": room, "seq": seq, "ref": r("delete")}),
            r("delete"),
        ),
        (
            "typing",
            json!({"action": "typing", "room": room, "state": "start", "ref": r("typing")}),
            r("typing"),
        ),
        (
            "read",
            json!({"action": "read", "room": room, "seq": seq, "ref": r("read")}),
            r("read"),
        ),
        (
            "history",
            json!({"action": "history", "room": room, "ref": r("history")}),
            r("history"),
        ),
        (
            "history after 0",
            json!({"action": "history", "room": room, "after": 0, "ref": r("page")}),
            r("page"),
        ),
    ]
}

/// Authorization on every action: in room `secret`, where alice has written, a user whose token
/// does not grant it (mallory), a user whose token grants it but who has not joined (bob), a user
/// who joined and left (carol), and a user with look-alike grants (`secret-*`, `Secret`, …: dave)
/// each try `join` (`FORBIDDEN` unless granted, also with `since`) and `message`, `edit`,
/// `delete`, `typing`, `read`, `history` (`NOT_MEMBER`); `presence` of theirs never reaches the
/// room. Every connection survives every refusal; alice's room receives nothing from them, her
/// message is unchanged, and nothing written there reaches them.
pub async fn non_members_cannot_act_in_a_room(d: &dyn Deployment) -> anyhow::Result<()> {
    const ROOM: &str = "secret";
    const OTHER: &str = "lobby";
    let s = Scope::new(d, "authz");
    let mut alice = s
        .connect_in(ROOM, "alice", &s.token("alice", &[ROOM]))
        .await?;
    alice.join(ROOM).await?;
    let ack = alice.message(ROOM, &s.id("m"), "for members only").await?;
    let seq = ack["seq"].as_u64().context("ack seq")?;

    let mut f = Failures::default();
    let mut outsiders = Vec::new();
    for (user, grants, granted) in [
        ("mallory", vec![OTHER], false),
        ("bob", vec![OTHER, ROOM], true),
        (
            "dave",
            vec![OTHER, "secret-*", "secretx", "Secret", "secre", "secret2*"],
            false,
        ),
    ] {
        let mut c = s.connect_in(OTHER, user, &s.token(user, &grants)).await?;
        c.join(OTHER).await?;
        if !granted {
            for (label, frame, reference) in [
                (
                    "join",
                    json!({"action": "join", "room": ROOM, "ref": "j1"}),
                    "j1",
                ),
                (
                    "join with since 0",
                    json!({"action": "join", "room": ROOM, "since": 0, "ref": "j2"}),
                    "j2",
                ),
            ] {
                f.check(
                    &format!("{user}: {label} → FORBIDDEN"),
                    refused(&mut c, &frame, "FORBIDDEN", reference).await,
                );
            }
        }
        for (action, frame, reference) in member_actions(ROOM, seq, user) {
            f.check(
                &format!("{user}: {action} → NOT_MEMBER"),
                refused(&mut c, &frame, "NOT_MEMBER", &reference).await,
            );
        }
        c.send_json(&json!({"action": "presence", "status": "busy"}))
            .await?;
        outsiders.push(c);
    }

    let mut carol = s
        .connect_in(ROOM, "carol", &s.token("carol", &[ROOM]))
        .await?;
    carol.join(ROOM).await?;
    carol
        .send_json(&json!({"action": "leave", "room": ROOM}))
        .await?;
    carol.expect_type("left").await?;
    for (action, frame, reference) in member_actions(ROOM, seq, "carol") {
        f.check(
            &format!("carol, after leaving: {action} → NOT_MEMBER"),
            refused(&mut carol, &frame, "NOT_MEMBER", &reference).await,
        );
    }
    f.finish()?;

    // Everything the outsiders did is processed (each answered a ping after it); any fan-out it
    // caused would be queued to alice before her own ping is answered.
    let seen = alice.sync().await?;
    let leaked: Vec<&Value> = seen
        .iter()
        .filter(|f| !(frame_type(f) == "presence" && f["user"] == "carol"))
        .collect();
    ensure!(
        leaked.is_empty(),
        "the room got frames caused by non-members: {leaked:?}"
    );
    let page = alice.history(ROOM, json!({})).await?;
    let messages = page["messages"].as_array().cloned().unwrap_or_default();
    ensure!(
        messages.len() == 1
            && messages[0]["body"] == "for members only"
            && messages[0]["from"] == "alice"
            && messages[0].get("edited_ts").is_none(),
        "only alice's message, unchanged: {page}"
    );

    // Nothing written in the room reaches a non-member.
    alice.message(ROOM, &s.id("m"), "second").await?;
    outsiders.push(carol);
    for c in &mut outsiders {
        let got = c.sync().await?;
        let from_room: Vec<&Value> = got.iter().filter(|f| f["room"] == ROOM).collect();
        ensure!(
            from_room.is_empty(),
            "{} got frames of `{ROOM}`: {from_room:?}",
            c.label()
        );
    }
    Ok(())
}

/// Only the author edits or deletes: another user, a `service` token (which may join any room)
/// and an `agent` in the room all get `FORBIDDEN`, and the same user id in another tenant gets
/// `NOT_FOUND` (its room is another room); the author's other device may. The message is
/// unchanged by every refusal.
pub async fn nobody_changes_another_users_message(d: &dyn Deployment) -> anyhow::Result<()> {
    const ROOM: &str = "lobby";
    let s = Scope::new(d, "authorship");
    let other = Scope::new(d, "authorship_other");
    let (mut alice, _) = s.member("alice", ROOM).await?;
    let ack = alice.message(ROOM, &s.id("m"), "original").await?;
    let seq = ack["seq"].as_u64().context("ack seq")?;

    let service = s.d.sign(&Claims {
        role: Role::Service,
        ..s.claims("backend", &[])
    });
    let agent = s.d.sign(&Claims {
        role: Role::Agent,
        ..s.claims("ann", &[ROOM])
    });
    let mut f = Failures::default();
    for (label, scope, user, token, code) in [
        (
            "another user",
            &s,
            "bob",
            s.token("bob", &["*"]),
            "FORBIDDEN",
        ),
        ("a service", &s, "backend", service, "FORBIDDEN"),
        ("an agent", &s, "ann", agent, "FORBIDDEN"),
        (
            "alice of another tenant",
            &other,
            "alice",
            other.token("alice", &["*"]),
            "NOT_FOUND",
        ),
    ] {
        let result = async {
            let mut c = scope.connect_in(ROOM, user, &token).await?;
            c.join(ROOM).await?;
            for (action, frame) in [
                (
                    "edit",
                    json!({"action": "edit", "room": ROOM, "seq": seq, "body": "defaced", "ref": "e"}),
                ),
                (
                    "delete",
                    json!({"action": "delete", "room": ROOM, "seq": seq, "ref": "e"}),
                ),
            ] {
                refused(&mut c, &frame, code, "e")
                    .await
                    .with_context(|| format!("{action} → {code}"))?;
            }
            anyhow::Ok(())
        };
        f.check(label, result.await);
    }
    f.finish()?;
    let page = alice.history(ROOM, json!({})).await?;
    ensure!(
        page["messages"][0]["body"] == "original" && page["messages"][0].get("edited_ts").is_none(),
        "the message is unchanged: {page}"
    );
    let (mut alice2, _) = s.member("alice", ROOM).await?;
    alice2
        .send_json(&json!({"action": "edit", "room": ROOM, "seq": seq, "body": "mine"}))
        .await?;
    let edited = alice2.expect_type("edited").await?;
    ensure!(
        edited["body"] == "mine" && edited["by"] == "alice",
        "the author's other device may edit: {edited}"
    );
    Ok(())
}

/// Two tenants with the same users in the same room: everything one tenant's users do —
/// message, edit, delete, typing, read, presence — reaches its own members (the control) and
/// never the other tenant's, and neither sees the other's members or messages.
pub async fn tenants_are_isolated_on_every_path(d: &dyn Deployment) -> anyhow::Result<()> {
    const ROOM: &str = "lobby";
    let a = Scope::new(d, "iso_a");
    let b = Scope::new(d, "iso_b");
    let (mut a_alice, _) = a.member("alice", ROOM).await?;
    let (mut a_bob, _) = a.member("bob", ROOM).await?;
    a_alice.message(ROOM, &a.id("m"), "tenant a").await?;
    let (mut b_alice, _) = b.member("alice", ROOM).await?;
    let (mut b_bob, joined) = b.member("bob", ROOM).await?;
    let members: Vec<&str> = joined["members"]
        .as_array()
        .map(|m| m.iter().filter_map(|m| m["user"].as_str()).collect())
        .unwrap_or_default();
    ensure!(
        joined["head"] == 0 && members.len() == 2,
        "tenant b's room has none of tenant a's messages or members: {joined}"
    );
    // Drain what a's members got so far (b's joins must not be among it).
    for c in [&mut a_alice, &mut a_bob] {
        let got = c.sync().await?;
        ensure!(
            got.iter().all(|f| frame_type(f) == "message"
                || (frame_type(f) == "presence" && f["user"] == "bob")),
            "{}: unexpected frames: {got:?}",
            c.label()
        );
    }
    b_alice.sync().await?;

    let ack = b_bob.message(ROOM, &b.id("m"), "tenant b").await?;
    let seq = ack["seq"].clone();
    for frame in [
        json!({"action": "typing", "room": ROOM, "state": "start"}),
        json!({"action": "read", "room": ROOM, "seq": seq}),
        json!({"action": "presence", "status": "away"}),
        json!({"action": "edit", "room": ROOM, "seq": seq, "body": "tenant b, edited"}),
        json!({"action": "delete", "room": ROOM, "seq": seq}),
    ] {
        b_bob.send_json(&frame).await?;
        // One at a time: each is processed before the next is sent.
        b_bob.ping().await?;
    }
    // The control: b's alice got every one of them.
    let got = b_alice.sync().await?;
    let types: Vec<&str> = got.iter().map(frame_type).collect();
    for want in ["message", "typing", "read", "presence", "edited", "deleted"] {
        ensure!(
            types.contains(&want),
            "tenant b's own member gets `{want}`: {got:?}"
        );
    }
    for c in [&mut a_alice, &mut a_bob] {
        let leaked = c.sync().await?;
        ensure!(
            leaked.is_empty(),
            "{} (tenant a) got tenant b's frames: {leaked:?}",
            c.label()
        );
    }
    let page = a_bob.history(ROOM, json!({})).await?;
    ensure!(
        page["messages"].as_array().map(Vec::len) == Some(1)
            && page["messages"][0]["body"] == "tenant a",
        "tenant a's history: {page}"
    );
    Ok(())
}

/// The HTTP API is tenant-isolated and checks its tokens like the upgrade: another tenant's
/// service reads its own (empty) room of the same name and publishes into it, never into this
/// tenant's; a user token not granting the room gets 403 on history, a user token 403 on
/// publish; nobody publishes into the support desk's `inbox` (403); forged Bearer tokens
/// (`alg: none`, tenant or role changed after signing, other key, expired) get 401.
pub async fn http_api_is_tenant_isolated(d: &dyn Deployment) -> anyhow::Result<()> {
    const ROOM: &str = "lobby";
    let a = Scope::new(d, "http_iso_a");
    let b = Scope::new(d, "http_iso_b");
    let base = d
        .http_url()
        .context("the deployment reports http_api but gives no http_url")?;
    let path = format!("/rooms/{ROOM}/messages");
    let (mut a_alice, _) = a.member("alice", ROOM).await?;
    a_alice.message(ROOM, &a.id("m"), "tenant a").await?;
    let a_service = a.service_token("backend");
    let b_service = b.service_token("backend");
    let bodies = |r: &Response| -> anyhow::Result<Vec<String>> {
        let page = r.json()?;
        Ok(page["messages"]
            .as_array()
            .context("messages")?
            .iter()
            .map(|m| m["body"].as_str().unwrap_or_default().to_owned())
            .collect())
    };

    let r = Request::new("GET", &path)
        .bearer(&b_service)
        .send(&base)
        .await?;
    ensure_status(&r, 200, "tenant b's service reads its own room")?;
    ensure!(
        bodies(&r)?.is_empty(),
        "tenant b sees none of tenant a's messages: {}",
        r.text()
    );
    let r = Request::new("POST", &path)
        .bearer(&b_service)
        .json(&json!({"id": b.id("svc"), "body": "tenant b"}))
        .send(&base)
        .await?;
    ensure_status(&r, 201, "tenant b's service publishes")?;
    ensure!(
        r.json()?["seq"] == 1,
        "into tenant b's own room: {}",
        r.text()
    );
    let leaked = a_alice.sync().await?;
    ensure!(
        leaked.is_empty(),
        "tenant a's member got tenant b's publish: {leaked:?}"
    );
    let r = Request::new("GET", &path)
        .bearer(&a_service)
        .send(&base)
        .await?;
    ensure_status(&r, 200, "tenant a's service reads")?;
    ensure!(
        bodies(&r)? == ["tenant a"],
        "tenant a's room holds only its message: {}",
        r.text()
    );

    let mut f = Failures::default();
    let not_granted = a.token("alice", &["orders-*"]);
    let r = Request::new("GET", &path)
        .bearer(&not_granted)
        .send(&base)
        .await?;
    f.check(
        "history with a token not granting the room",
        ensure_status(&r, 403, "not granted"),
    );
    let r = Request::new("POST", &path)
        .bearer(&a.token("alice", &["*"]))
        .json(&json!({"id": a.id("u"), "body": "x"}))
        .send(&base)
        .await?;
    f.check("publish with a user token", ensure_status(&r, 403, "user"));
    let r = Request::new("POST", "/rooms/inbox/messages")
        .bearer(&a_service)
        .json(&json!({"id": a.id("inbox"), "body": "support-1: waiting", "meta": {"kind": "status", "room": "support-1", "status": "waiting", "version": 99}}))
        .send(&base)
        .await?;
    f.check("publish into the inbox", ensure_status(&r, 403, "inbox"));

    let service_claims = Claims {
        role: Role::Service,
        ..a.claims("backend", &[])
    };
    let user_claims = a.claims("alice", &["orders-*"]);
    let mut forged = vec![
        (
            "alg none service token".to_owned(),
            alg_none(&service_claims)?,
        ),
        (
            "user token escalated to service after signing".to_owned(),
            with_claims(&d.sign(&user_claims), &service_claims)?,
        ),
        (
            "tenant b's service token moved to tenant a after signing".to_owned(),
            with_claims(
                &b_service,
                &Claims {
                    tid: Some(a.tenant.clone()),
                    ..service_claims.clone()
                },
            )?,
        ),
    ];
    forged.extend(
        forged_tokens(d, &service_claims)?
            .into_iter()
            .filter(|(what, _)| what.contains("another key") || what == "expired"),
    );
    for (what, token) in forged {
        let r = Request::new("GET", &path)
            .bearer(&token)
            .send(&base)
            .await?;
        f.check(&format!("GET, {what}"), ensure_status(&r, 401, &what));
        let r = Request::new("POST", &path)
            .bearer(&token)
            .json(&json!({"id": a.id("forged"), "body": "forged"}))
            .send(&base)
            .await?;
        f.check(&format!("POST, {what}"), ensure_status(&r, 401, &what));
    }
    f.finish()?;
    let page = a_alice.history(ROOM, json!({})).await?;
    ensure!(
        page["messages"].as_array().map(Vec::len) == Some(1),
        "no refused request stored anything in tenant a: {page}"
    );
    Ok(())
}
