//! Rejected frames: each gets its stable error code and reference, and the connection lives on.

use anyhow::ensure;
use roomcast_core::limits::{MAX_BODY_BYTES, MAX_META_BYTES};
use serde_json::json;

use crate::client::Client;
use crate::deployment::Deployment;
use crate::scope::{Failures, Scope};

/// Sends `text`; the reply must be `error {code, message, ref}` and the connection must still
/// answer a ping.
async fn rejected(
    c: &mut Client,
    text: &str,
    code: &str,
    reference: Option<&str>,
) -> anyhow::Result<()> {
    c.send_text(text).await?;
    let error = c.expect_error(code).await?;
    ensure!(
        error["message"].as_str().is_some_and(|m| !m.is_empty()),
        "an error explains itself: {error}"
    );
    match reference {
        Some(r) => ensure!(error["ref"] == r, "expected ref {r}: {error}"),
        None => ensure!(error["ref"].is_null(), "expected no ref: {error}"),
    }
    c.ping().await?;
    Ok(())
}

/// Every client-caused error code (`RATE_LIMITED`, `LIMIT_EXCEEDED` and `FORBIDDEN` for
/// authorship have their own cases) on one connection, which survives each.
pub async fn rejected_frames_get_stable_error_codes(d: &dyn Deployment) -> anyhow::Result<()> {
    let s = Scope::new(d, "errors");
    let mut c = s
        .connect_with("alice", &s.token("alice", &["lobby", "elsewhere"]))
        .await?;
    c.join("lobby").await?;
    let big_body = "x".repeat(MAX_BODY_BYTES + 1);
    let big_meta = "y".repeat(MAX_META_BYTES);
    let rows: Vec<(&str, String, &str, Option<&str>)> = vec![
        ("not JSON", "hello".into(), "BAD_FRAME", None),
        ("a JSON array", "[1,2]".into(), "BAD_FRAME", None),
        ("no action", json!({"room": "lobby", "ref": "r1"}).to_string(), "BAD_FRAME", Some("r1")),
        ("a non-string action", json!({"action": 7}).to_string(), "BAD_FRAME", None),
        ("join without room", json!({"action": "join", "ref": "r2"}).to_string(), "BAD_FRAME", Some("r2")),
        (
            "read with a negative seq",
            json!({"action": "read", "room": "lobby", "seq": -1}).to_string(),
            "BAD_FRAME",
            None,
        ),
        (
            "typing with an unknown state",
            json!({"action": "typing", "room": "lobby", "state": "maybe"}).to_string(),
            "BAD_FRAME",
            None,
        ),
        ("an unknown action", json!({"action": "fly", "ref": "q1"}).to_string(), "UNKNOWN_ACTION", Some("q1")),
        (
            "a body over the limit",
            json!({"action": "message", "room": "lobby", "id": "big-1", "body": big_body}).to_string(),
            "TOO_LARGE",
            Some("big-1"),
        ),
        (
            "meta over the limit",
            json!({"action": "message", "room": "lobby", "id": "meta-1", "body": "b", "meta": {"k": big_meta}})
                .to_string(),
            "TOO_LARGE",
            Some("meta-1"),
        ),
        ("an invalid room name", json!({"action": "join", "room": "a/b"}).to_string(), "INVALID", None),
        (
            "an empty body",
            json!({"action": "message", "room": "lobby", "id": "empty-1", "body": ""}).to_string(),
            "INVALID",
            Some("empty-1"),
        ),
        (
            "a body of white space, zero-width and bidi characters only",
            json!({"action": "message", "room": "lobby", "id": "blank-1", "body": " \u{200b}\u{202e}\u{2066}\n"}).to_string(),
            "INVALID",
            Some("blank-1"),
        ),
        (
            "meta that is not an object",
            json!({"action": "message", "room": "lobby", "id": "meta-2", "body": "b", "meta": 3}).to_string(),
            "INVALID",
            Some("meta-2"),
        ),
        (
            "a message to a granted room not joined",
            json!({"action": "message", "room": "elsewhere", "id": "nm-1", "body": "b"}).to_string(),
            "NOT_MEMBER",
            Some("nm-1"),
        ),
        (
            "joining a room the token does not grant",
            json!({"action": "join", "room": "secret", "ref": "f1"}).to_string(),
            "FORBIDDEN",
            Some("f1"),
        ),
        (
            "editing a message that does not exist",
            json!({"action": "edit", "room": "lobby", "seq": 42, "body": "b", "ref": "e1"}).to_string(),
            "NOT_FOUND",
            Some("e1"),
        ),
    ];
    let mut f = Failures::default();
    for (label, text, code, reference) in rows {
        f.check(label, rejected(&mut c, &text, code, reference).await);
    }
    f.finish()?;
    let joined = c.join("lobby").await?;
    ensure!(
        joined["head"] == 0,
        "no rejected frame stored anything: {joined}"
    );
    Ok(())
}
