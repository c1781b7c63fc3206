//! Tokens the load generators present: HS256 JWTs with roomcast's claims (protocol.md §3).

use std::time::{SystemTime, UNIX_EPOCH};

use serde::Serialize;

/// Token claims (protocol.md §3).
#[derive(Serialize)]
struct Claims<'a> {
    sub: &'a str,
    tid: &'a str,
    rooms: Vec<String>,
    role: &'a str,
    exp: u64,
    iat: u64,
}

/// A token for `user` of `tenant` granting `rooms` with `role` (`user`, `agent`, `service`),
/// valid for two days, signed with `secret`.
pub fn sign_hs256(
    secret: &str,
    tenant: &str,
    user: &str,
    rooms: Vec<String>,
    role: &str,
) -> String {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let claims = Claims {
        sub: user,
        tid: tenant,
        rooms,
        role,
        exp: now + 48 * 3600,
        iat: now,
    };
    let key = jsonwebtoken::EncodingKey::from_secret(secret.as_bytes());
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &claims,
        &key,
    )
    // HS256 signing of a serialisable struct with a byte secret has no failure path.
    .expect("HS256 signing cannot fail")
}
