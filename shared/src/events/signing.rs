//! Standard Webhooks signatures (<https://www.standardwebhooks.com/>): every delivery carries
//! `webhook-id`, `webhook-timestamp` (epoch seconds) and `webhook-signature`, a space-separated
//! list of `v1,<base64 HMAC-SHA256 of "{id}.{timestamp}.{body}">`, one per secret in use, so a
//! receiver keeps verifying while a secret is rotated. Secrets are `whsec_` and the base64 of
//! the key bytes.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, Mac};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

/// The prefix of a secret's text form.
pub const SECRET_PREFIX: &str = "whsec_";
/// Fewest key bytes a secret may have (the specification's lower bound).
pub const MIN_SECRET_BYTES: usize = 24;
/// Most key bytes a secret may have (the specification's upper bound).
pub const MAX_SECRET_BYTES: usize = 64;
/// How far a receiver lets `webhook-timestamp` be from its clock (the libraries' default).
pub const TIMESTAMP_TOLERANCE_S: u64 = 5 * 60;

/// Header names.
pub mod headers {
    /// The event id; the same on every attempt of one delivery.
    pub const ID: &str = "webhook-id";
    /// When this attempt was signed, epoch seconds.
    pub const TIMESTAMP: &str = "webhook-timestamp";
    /// `v1,<base64>` signatures, space-separated.
    pub const SIGNATURE: &str = "webhook-signature";
}

/// Why a secret was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SecretError {
    /// The text after `whsec_` is not standard base64.
    #[error("the secret is not base64")]
    NotBase64,
    /// The key is shorter or longer than the specification allows.
    #[error("the secret has {0} bytes; {MIN_SECRET_BYTES} to {MAX_SECRET_BYTES} are allowed")]
    Length(usize),
}

/// An endpoint's signing key. `Debug` never shows it.
#[derive(Clone, PartialEq, Eq)]
pub struct WebhookSecret {
    key: Vec<u8>,
}

impl std::fmt::Debug for WebhookSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("WebhookSecret(…)")
    }
}

impl WebhookSecret {
    /// A secret from its text form, `whsec_<base64>` (the prefix is optional, as the official
    /// verifiers accept both).
    pub fn parse(text: &str) -> Result<Self, SecretError> {
        let encoded = text.strip_prefix(SECRET_PREFIX).unwrap_or(text);
        let key = STANDARD
            .decode(encoded)
            .map_err(|_| SecretError::NotBase64)?;
        Self::from_bytes(key)
    }

    /// A secret from key bytes (a new secret: 32 random bytes from the caller's generator).
    pub fn from_bytes(key: Vec<u8>) -> Result<Self, SecretError> {
        if !(MIN_SECRET_BYTES..=MAX_SECRET_BYTES).contains(&key.len()) {
            return Err(SecretError::Length(key.len()));
        }
        Ok(Self { key })
    }

    /// The text form, `whsec_<base64>`, to show the endpoint's owner once.
    pub fn expose(&self) -> String {
        format!("{SECRET_PREFIX}{}", STANDARD.encode(&self.key))
    }

    fn mac(&self, id: &str, timestamp_s: u64, body: &[u8]) -> HmacSha256 {
        // Invariant: HMAC takes keys of any length; `new_from_slice` cannot fail for it.
        let mut mac = HmacSha256::new_from_slice(&self.key).expect("HMAC accepts any key length");
        mac.update(id.as_bytes());
        mac.update(b".");
        mac.update(timestamp_s.to_string().as_bytes());
        mac.update(b".");
        mac.update(body);
        mac
    }

    /// One `v1,<base64>` signature.
    pub fn sign(&self, id: &str, timestamp_s: u64, body: &[u8]) -> String {
        let tag = self.mac(id, timestamp_s, body).finalize().into_bytes();
        format!("v1,{}", STANDARD.encode(tag))
    }
}

/// The three headers of one delivery attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedHeaders {
    /// `webhook-id`: the event id.
    pub id: String,
    /// `webhook-timestamp`: epoch seconds.
    pub timestamp: String,
    /// `webhook-signature`: one `v1,…` per secret, space-separated.
    pub signature: String,
}

impl SignedHeaders {
    /// `(name, value)` pairs, in the order above.
    pub fn pairs(&self) -> [(&'static str, &str); 3] {
        [
            (headers::ID, self.id.as_str()),
            (headers::TIMESTAMP, self.timestamp.as_str()),
            (headers::SIGNATURE, self.signature.as_str()),
        ]
    }
}

/// Signs one attempt with every secret in `secrets` (the new one first during a rotation; an
/// endpoint always has at least one, and with none the signature header is empty).
pub fn sign(secrets: &[WebhookSecret], id: &str, now_ms: u64, body: &[u8]) -> SignedHeaders {
    let timestamp_s = now_ms / 1000;
    let signature = secrets
        .iter()
        .map(|s| s.sign(id, timestamp_s, body))
        .collect::<Vec<_>>()
        .join(" ");
    SignedHeaders {
        id: id.into(),
        timestamp: timestamp_s.to_string(),
        signature,
    }
}

/// Why a delivery did not verify.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    /// `webhook-timestamp` is not a number of seconds.
    #[error("the timestamp is not a number")]
    BadTimestamp,
    /// `webhook-timestamp` is further from now than the tolerance (a replay, or a bad clock).
    #[error("the timestamp is outside the tolerance")]
    Stale,
    /// No `v1` signature matches.
    #[error("no signature matches")]
    NoMatch,
}

/// Verifies a delivery as a receiver does (for tests, the example bot and the test-event
/// endpoint): some `v1` signature in `signature_header` is `secret`'s, and the timestamp is
/// within [`TIMESTAMP_TOLERANCE_S`] of `now_ms`. Comparison is constant-time.
pub fn verify(
    secret: &WebhookSecret,
    id: &str,
    timestamp: &str,
    signature_header: &str,
    body: &[u8],
    now_ms: u64,
) -> Result<(), VerifyError> {
    let timestamp_s: u64 = timestamp.parse().map_err(|_| VerifyError::BadTimestamp)?;
    if (now_ms / 1000).abs_diff(timestamp_s) > TIMESTAMP_TOLERANCE_S {
        return Err(VerifyError::Stale);
    }
    let matched = signature_header
        .split(' ')
        .filter_map(|s| s.strip_prefix("v1,"))
        .filter_map(|b64| STANDARD.decode(b64).ok())
        .any(|tag| secret.mac(id, timestamp_s, body).verify_slice(&tag).is_ok());
    if matched {
        Ok(())
    } else {
        Err(VerifyError::NoMatch)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]

    use super::*;

    // The specification's published vector (standard-webhooks, the libraries' `sign` tests).
    const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    const ID: &str = "msg_p5jXN8AQM9LWM0D4loKWxJek";
    const TS: u64 = 1_614_265_330;
    const BODY: &str = r#"{"test": 2432232314}"#;
    const EXPECTED: &str = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=";

    #[test]
    fn signs_the_published_test_vector() {
        let secret = WebhookSecret::parse(SECRET).unwrap();
        assert_eq!(secret.sign(ID, TS, BODY.as_bytes()), EXPECTED);
        let headers = sign(&[secret], ID, TS * 1000 + 999, BODY.as_bytes());
        assert_eq!(headers.timestamp, "1614265330");
        assert_eq!(headers.signature, EXPECTED);
        assert_eq!(headers.pairs()[0], ("webhook-id", ID));
    }

    #[test]
    fn secrets_parse_with_or_without_the_prefix_and_hide_in_debug() {
        let with = WebhookSecret::parse(SECRET).unwrap();
        let without = WebhookSecret::parse(&SECRET[SECRET_PREFIX.len()..]).unwrap();
        assert_eq!(with, without);
        assert_eq!(with.expose(), SECRET);
        assert_eq!(format!("{with:?}"), "WebhookSecret(…)");
        assert_eq!(
            WebhookSecret::parse("whsec_!!"),
            Err(SecretError::NotBase64)
        );
        assert_eq!(
            WebhookSecret::parse("whsec_c2hvcnQ="),
            Err(SecretError::Length(5))
        );
        assert_eq!(
            WebhookSecret::from_bytes(vec![0; 65]),
            Err(SecretError::Length(65))
        );
    }

    #[test]
    fn rotation_signs_with_every_secret_and_either_verifies() {
        let old = WebhookSecret::parse(SECRET).unwrap();
        let new = WebhookSecret::from_bytes(vec![7; 32]).unwrap();
        let now_ms = TS * 1000;
        let headers = sign(&[new.clone(), old.clone()], ID, now_ms, BODY.as_bytes());
        let parts: Vec<&str> = headers.signature.split(' ').collect();
        assert_eq!(parts.len(), 2);
        assert_eq!(parts[1], EXPECTED);
        for secret in [&old, &new] {
            verify(
                secret,
                ID,
                &headers.timestamp,
                &headers.signature,
                BODY.as_bytes(),
                now_ms,
            )
            .unwrap();
        }
        let other = WebhookSecret::from_bytes(vec![8; 32]).unwrap();
        assert_eq!(
            verify(
                &other,
                ID,
                &headers.timestamp,
                &headers.signature,
                BODY.as_bytes(),
                now_ms
            ),
            Err(VerifyError::NoMatch)
        );
    }

    #[test]
    fn verification_refuses_tampering_and_stale_timestamps() {
        let secret = WebhookSecret::parse(SECRET).unwrap();
        let now_ms = TS * 1000;
        let ok = |id: &str, ts: &str, sig: &str, body: &str, now_ms: u64| {
            verify(&secret, id, ts, sig, body.as_bytes(), now_ms)
        };
        assert_eq!(ok(ID, "1614265330", EXPECTED, BODY, now_ms), Ok(()));
        // Among unknown versions and junk, the valid one is found (the libraries' multi-sig case).
        let many =
            format!("v2,abc v1,!!! {EXPECTED} v1,Ceo5qEr07ixe2NLpvHk3FH9bwy/WavXrAFQ/9tdO6mc=");
        assert_eq!(ok(ID, "1614265330", &many, BODY, now_ms), Ok(()));
        let tampered_body = r#"{"test": 2432232315}"#;
        assert_eq!(
            ok(ID, "1614265330", EXPECTED, tampered_body, now_ms),
            Err(VerifyError::NoMatch)
        );
        assert_eq!(
            ok("msg_other", "1614265330", EXPECTED, BODY, now_ms),
            Err(VerifyError::NoMatch)
        );
        assert_eq!(
            ok(
                ID,
                "1614265330",
                "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OA=",
                BODY,
                now_ms
            ),
            Err(VerifyError::NoMatch)
        );
        assert_eq!(
            ok(ID, "hello", EXPECTED, BODY, now_ms),
            Err(VerifyError::BadTimestamp)
        );
        let late = now_ms + (TIMESTAMP_TOLERANCE_S + 1) * 1000;
        assert_eq!(
            ok(ID, "1614265330", EXPECTED, BODY, late),
            Err(VerifyError::Stale)
        );
        let early = now_ms - (TIMESTAMP_TOLERANCE_S + 1) * 1000;
        assert_eq!(
            ok(ID, "1614265330", EXPECTED, BODY, early),
            Err(VerifyError::Stale)
        );
    }
}
