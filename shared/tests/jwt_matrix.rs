//! The JWT attack matrix (issue 8, "Attacks"): every way a token can be wrong — `alg: none`,
//! algorithm and key confusion, bad signatures, time claims, issuer and audience, missing or
//! invalid claims, oversized tokens — against verifiers pinned to each supported algorithm
//! (HS256, RS256, ES256), each refused with its specific [`AuthError`] (every `AuthError` is an
//! HTTP 401 on connect and on the HTTP API; the protocol suite's `jwt_attacks_refused_401` sends
//! the same attacks over the wire).
//!
//! The keys below were generated for this test only (`openssl genpkey`); they protect nothing.

use base64::Engine as _;
use jsonwebtoken::{Algorithm, EncodingKey};
use roomcast_core::auth::{AuthConfig, AuthError, TokenVerifier, VerifyKey};
use roomcast_core::limits::MAX_TOKEN_BYTES;
use serde_json::{Value, json};

/// The verifiers' clock.
const NOW_MS: u64 = 1_800_000_000_000;
const NOW: u64 = NOW_MS / 1000;
const ISSUER: &str = "https://issuer.example";
const AUDIENCE: &str = "roomcast";
const SECRET: &[u8] = b"the-deployment-hs256-secret-0123456789";
const OTHER_SECRET: &[u8] = b"an-attacker-hs256-secret-0123456789";

/// The deployment's RSA key (RS256).
const RSA_PRIVATE: &str = r"-----BEGIN PRIVATE KEY-----
MIIEvQIBADANBgkqhkiG9w0BAQEFAASCBKcwggSjAgEAAoIBAQCr2uj03BuYR1FP
Sg3iewpULdlPtDgNlt9PvqQtN2El+r+6O0CgPbtnetpEJRfZ1Fmbx8o6zVUEWN+B
4e1FOm88Q+c0dcb5sw/v81ZTGk4QaoUuIy5tm/ZgNxS2WT8nRcrZCcTju2QApilE
K76IE2BWpz26Zv/xuN4tj7D2S/hLmcMQAjCzAR8TcpKKgzAPiJLAwoeqGViCIVLe
nQkxxIcHdVA1d1MDzhZe0ar8FVxhMFNz7oKtazwtz6kLTjkRr22nLsEp9LLkG0ud
xM8Wj2sSOcBdSAspY0vCoiiRrAjLgEt4KEbTsA5Hz0+7xSAWAFRY7lBWjl2//KLk
MlFjClPfAgMBAAECggEABQbElzDUOnUk4CxQJqZ8TAUBR6RY8AYl0ZfHsS40UF+P
+bBKThraydvdLsQPpAaNeRHJYkSSLtaInFcRe7EKAtm7lUcNQvgP8xqLalJ+eQVx
5W0QVRK24ePf3mDS3jZbiKiRUoCEcW5quOc3Tenp1e79+Qnn2i09i63vD5fI6IZy
PM1dApaK36ZmkbvplE4OPgECqq0gMLTgJzg7T2B/DF/qAn50gXaYDgqP5wRPOpau
6sH3OCm6dLBkhUKa2h4gcz/YGDkARWiOsBNsT/8fC3XxI9tCtdKAVny28J7pSBoi
12ZUt/3g8wQWJhMnAoItIlXQxv0pXAkZPMavAq2NXQKBgQDwTVKqd4ufdiLRGEvU
x7vFKFjDatHsajxQfmbMEogwgo3ctVyU47CTNjVL4XFxEOh9daEoK+SXG28vUklZ
oXj6WH5poaT9FdSFNyQzimyHTFzU45988rOFRgPhAtmy0MJ53RY0sLq+HL7SF1hc
6p7xtx/2NQK3csTRkO2oKdh/0wKBgQC3FOs/dJGBXpgASZLpBMKlkNsbyfUmFtE9
ZNAFkku05Fr9kAY4UM303IlTS9lJGqX322py84sO9/QXS6qZDFFDbDWaz/M5oqCZ
ZdVgTgrvALHyVeyAzXwir1EvLyDKFIzyGVhCfADUMzTXAzreakgUgGykgIKh+rWz
NBJcsYSgRQKBgAvJz0dbi/brpbOaPIYYskZuv0P+5oNxhrnwKXzTX+j5TppIL12C
efQO0biCO71vNeiJr7k3xgP/rYmlwMFr4XJuiu0FqAFeY8mRNe5tWPueLGOpMva/
NT1RfPk52ZIjGZc+2EsHbHHNGTNXP9d3DwsOj7vVR+fV8n/RW0dHnj5PAoGBAKpj
+7WpBarDoO/Tibj4xzdUI7gvM8tpPP/IjZpB19fZF54ZptBO0//qKJyvYOCavpB5
Uw78/xTFTBVKRNIAFrmLQjB9DT88zf82OWpR9/cMTJDfyybtF3UoeYRSdk/c5HiF
ghEOW68ioTDjPqy1ebQq+fH38JxUOzs3YUeHp4mJAoGANc8HjP6+Cjr8swObxrii
K2BNp8TifXrv7rGyo6/pZaaoyCz7iRoUSChaIgeuQMJ2n/jmDakcJ1NyJx6m8Cvj
mYTcTzG7cOuzSWq4dWzIXjq/pzaDvIepoa4X4KLwitWMcORf7JhFq0jIU7LXLSsd
/8XH5Xw5yBMNXNaoeSltBDw=
-----END PRIVATE KEY-----
";
/// Its public half: what the verifier is configured with, and what an attacker knows.
const RSA_PUBLIC: &str = r"-----BEGIN PUBLIC KEY-----
MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEAq9ro9NwbmEdRT0oN4nsK
VC3ZT7Q4DZbfT76kLTdhJfq/ujtAoD27Z3raRCUX2dRZm8fKOs1VBFjfgeHtRTpv
PEPnNHXG+bMP7/NWUxpOEGqFLiMubZv2YDcUtlk/J0XK2QnE47tkAKYpRCu+iBNg
Vqc9umb/8bjeLY+w9kv4S5nDEAIwswEfE3KSioMwD4iSwMKHqhlYgiFS3p0JMcSH
B3VQNXdTA84WXtGq/BVcYTBTc+6CrWs8Lc+pC045Ea9tpy7BKfSy5BtLncTPFo9r
EjnAXUgLKWNLwqIokawIy4BLeChG07AOR89Pu8UgFgBUWO5QVo5dv/yi5DJRYwpT
3wIDAQAB
-----END PUBLIC KEY-----
";
/// An attacker's RSA key.
const OTHER_RSA_PRIVATE: &str = r"-----BEGIN PRIVATE KEY-----
MIIEvgIBADANBgkqhkiG9w0BAQEFAASCBKgwggSkAgEAAoIBAQDNoVpi2jVC4U5V
EPYMuq0Gx4v9rfcpLuz5MrMt0ykDROaqbV31ui3QSFNeeLTmf5L+hCEam9nPATS9
zdfkghhGKCEZ3OC3A9jMRP4pOt+zwlGKwx2Y9pr3eMfyP/P2qkSBgNpgkUJlHD0a
eMQ9ilR27dAiTWh82Ch4qITWkS/KIJLY5JzfNjtgaICRR1zHfUy8po17HcHJsIxh
8OJHSUliAIdvc2PPQnqWMKjxgxaYtSgnSmtYErgzUq2INxnJ43usgJL0RbKzD/wb
F4f3KNgWSE3Gc+ozk9Ca/Qk2s2XbRxc5Vsxc+Q+kfIad1JxPpVuBo0Hjgt/rJ3r5
6pgXBNOZAgMBAAECggEAM5vyJApRQNJshxQlNQerQp7Vp1tAw9DXwCm15+PuELh7
zj15ziEmu3ZTmkvgV1OgkImYB2YjUf2i/5pIu7zdG8qZmDSkH7ry8D3GrpFssOCt
945GAOyv8zmYsVfUws10OS6eYItEpzzhpyG1Wx67WUgRq3JTLbZQ3gupn3K8FFYK
QMwzshf64IanqaMxoBj58PtvLW4i3dJTGyg7pOBhV4yG62PzndeAX4bjDNUtFzPw
aFwT39X3Z5jKktK9BkF8cdA4yR0L5eLbUzikwd5GZz+EEVPj05UJNRbFIEODFAKF
xmWYdql5kglzX4Y9MmB8VjMLvhYBZ4ABQI0Z55hJWwKBgQDx1WJl9q7+DX3GDA73
6MxMg0x8eDa+QGz0JnBzg+SdOC1TMxWNa0l7nF6ep5dKSUlCry7r7jwLdylIz9un
pqdFqyNI4p7u6teJe2aRZ+V8FhfBgt6NJtVV923qX0J7lbLjSsJgZAvSxl8Fh73A
IoU02ZhWzvuKJwZ/PjJ4NDKdrwKBgQDZrQ2GiRi21HARYoHzr5gPNGuIxMBlRO+x
FIhZlE4IG3I4GswvJ1egvqybtH19yQs0eUpdPp7eBD33Tis3WoB4aT3vRdDdTsPV
Te19pRM/ZutWwCQArfKQ/ImJm7SQuby78dOqypYvq16P4UeiIyd4bOT/h2SU1IzM
EYg6VWH9NwKBgQCaDShFc8M9qzJ3uq6+Vdnu06UhlSKqRzggv2va6iXz0RluaphM
IhAJYi8UOgYyGEVG6XmmaXhuhVYTP/XY8lyUENTFVTeRUqBCwA0yi1CwnxI6/zbu
C9LSlG+8YTpkp5PxHmp8JL8zYZKeXz4M6vCYHhThF7E87GdDH0ffMsEbmQKBgQDI
2KogNqN9HusAv3nUlXKipOWL3q7/Qeo/5AgjT3nodRqgteksoQpzoTu2t4UK6NPT
6Q46lysTA6sBYzjw7CqZ79Fb03lymdiMGklFo2jtGVOQSd1uWxHzwXBObkLfPuHs
MKfzcNW+ykqIS39DFVi3/xIUzKJ7yNrY+FxQJrQxZQKBgF4+ydDhI9D1V+NhoGUD
sniBMTG7ofHry9RNVVhV1x+helLVuH3Zr19CinMfysYgcKuYLMe78XzqJd752CKj
qBr+/POKMZ+gaI3hR2cDP1U9PMQMor5RlqC7Bla+nB6xrAF+31v8wn/UgaAhthiN
hYdwjg5DM0+tdWiNfWAFPlS9
-----END PRIVATE KEY-----
";
/// The deployment's P-256 key (ES256).
const EC_PRIVATE: &str = r"-----BEGIN PRIVATE KEY-----
MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQg2u5A7Ww83vZZr+7o
e/zIpjQ6v+YWn5OKhYoLi2UvNWihRANCAAQm4B71PwQAEIBX1PxbX7jK6NFtzKBt
YN3UtleePGjKfUVPXJ7mrZj2pT4Bge0BP5MPtqx6ytXq18Z3JoG4ELVa
-----END PRIVATE KEY-----
";
/// Its public half.
const EC_PUBLIC: &str = r"-----BEGIN PUBLIC KEY-----
MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEJuAe9T8EABCAV9T8W1+4yujRbcyg
bWDd1LZXnjxoyn1FT1ye5q2Y9qU+AYHtAT+TD7asesrV6tfGdyaBuBC1Wg==
-----END PUBLIC KEY-----
";
/// An attacker's P-256 key.
const OTHER_EC_PRIVATE: &str = r"-----BEGIN PRIVATE KEY-----
MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQgcyNQC6BsCDS+V302
PbvIhEvbzht1fGLONpTDxym4jvuhRANCAASPm+mKgEztRrbGcpzjuX3th/E1BlH7
vgNBz8VxJZPkW0iXwz30ERhiYnphPPiL11xpm7mp7yIKRZ8LVmkLGdbI
-----END PRIVATE KEY-----
";

/// Unpadded base64url, as JWT segments are.
fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// A token with exactly this header and payload text, signed with `key` under `alg`.
fn hand_signed(header: &str, payload: &str, key: &EncodingKey, alg: Algorithm) -> String {
    let message = format!("{}.{}", b64(header.as_bytes()), b64(payload.as_bytes()));
    let signature = jsonwebtoken::crypto::sign(message.as_bytes(), key, alg)
        .unwrap_or_else(|e| panic!("signing with {alg:?}: {e}"));
    format!("{message}.{signature}")
}

/// A token with `claims`, header `{"alg": alg, "typ": "JWT"}`, signed with `key` under `alg`.
fn signed(claims: &Value, key: &EncodingKey, alg: Algorithm) -> String {
    let header = json!({"alg": format!("{alg:?}"), "typ": "JWT"}).to_string();
    hand_signed(&header, &claims.to_string(), key, alg)
}

/// An unsigned token: `alg` as given, an empty signature.
fn unsigned(alg: &str, claims: &Value) -> String {
    let header = json!({"alg": alg, "typ": "JWT"}).to_string();
    format!(
        "{}.{}.",
        b64(header.as_bytes()),
        b64(claims.to_string().as_bytes())
    )
}

/// The three segments of a token.
fn parts(token: &str) -> (&str, &str, &str) {
    let mut it = token.splitn(3, '.');
    let (Some(h), Some(p), Some(s)) = (it.next(), it.next(), it.next()) else {
        panic!("not a JWT: {token}");
    };
    (h, p, s)
}

/// Claims every verifier below accepts at [`NOW_MS`].
fn good_claims() -> Value {
    json!({
        "sub": "alice",
        "tid": "acme",
        "rooms": ["support-*", "lobby"],
        "name": "Alice",
        "role": "user",
        "iss": ISSUER,
        "aud": AUDIENCE,
        "iat": NOW - 10,
        "nbf": NOW - 10,
        "exp": NOW + 600,
    })
}

/// `good_claims` with `changes` applied: a `null` value removes the claim.
fn with(changes: Value) -> Value {
    let mut claims = good_claims();
    if let (Some(c), Some(changes)) = (claims.as_object_mut(), changes.as_object()) {
        for (k, v) in changes {
            if v.is_null() {
                c.remove(k);
            } else {
                c.insert(k.clone(), v.clone());
            }
        }
    }
    claims
}

/// One pinned-algorithm configuration under attack.
struct Setup {
    alg: Algorithm,
    /// The deployment's signing key.
    key: EncodingKey,
    /// Another key of the same kind (an attacker's).
    attacker: EncodingKey,
    /// The verification key as published (public PEM), for asymmetric algorithms.
    public_pem: Option<&'static str>,
    verify: VerifyKey,
}

fn pem_key(alg: Algorithm, pem: &str) -> EncodingKey {
    match alg {
        Algorithm::ES256 => EncodingKey::from_ec_pem(pem.as_bytes()),
        _ => EncodingKey::from_rsa_pem(pem.as_bytes()),
    }
    .unwrap_or_else(|e| panic!("test key for {alg:?}: {e}"))
}

fn setups() -> Vec<Setup> {
    vec![
        Setup {
            alg: Algorithm::HS256,
            key: EncodingKey::from_secret(SECRET),
            attacker: EncodingKey::from_secret(OTHER_SECRET),
            public_pem: None,
            verify: VerifyKey::Hs256(SECRET.to_vec()),
        },
        Setup {
            alg: Algorithm::RS256,
            key: pem_key(Algorithm::RS256, RSA_PRIVATE),
            attacker: pem_key(Algorithm::RS256, OTHER_RSA_PRIVATE),
            public_pem: Some(RSA_PUBLIC),
            verify: VerifyKey::Rs256Pem(RSA_PUBLIC.as_bytes().to_vec()),
        },
        Setup {
            alg: Algorithm::ES256,
            key: pem_key(Algorithm::ES256, EC_PRIVATE),
            attacker: pem_key(Algorithm::ES256, OTHER_EC_PRIVATE),
            public_pem: Some(EC_PUBLIC),
            verify: VerifyKey::Es256Pem(EC_PUBLIC.as_bytes().to_vec()),
        },
    ]
}

fn verifier(setup: &Setup, leeway_secs: u64) -> TokenVerifier {
    TokenVerifier::new(&AuthConfig {
        key: setup.verify.clone(),
        keys_by_kid: Vec::new(),
        issuer: Some(ISSUER.into()),
        audience: Some(AUDIENCE.into()),
        leeway_secs,
    })
    .expect("the test keys load")
}

type Row = (String, String, Result<(), AuthError>);

/// Every attack on `setup`, with the rejection it must get (a few controls must pass).
fn matrix(setup: &Setup) -> Vec<Row> {
    let alg = setup.alg;
    let sign = |claims: &Value| signed(claims, &setup.key, alg);
    let good = sign(&good_claims());
    let (good_h, good_p, good_s) = parts(&good);
    let mut rows: Vec<Row> = Vec::new();
    let mut row = |label: &str, token: String, want: Result<(), AuthError>| {
        rows.push((label.to_owned(), token, want));
    };
    use AuthError::*;

    row("control: a good token", good.clone(), Ok(()));
    row(
        "control: aud as an array containing the audience",
        sign(&with(json!({"aud": ["other", AUDIENCE]}))),
        Ok(()),
    );

    // `alg: none` and its spellings, unsigned or carrying a valid signature.
    for none in ["none", "None", "NONE", "nOnE"] {
        row(
            &format!("alg `{none}`, no signature"),
            unsigned(none, &good_claims()),
            Err(WrongAlgorithm),
        );
    }
    let none_header = b64(br#"{"alg":"none","typ":"JWT"}"#);
    row(
        "alg `none` with a valid signature of another header",
        format!("{none_header}.{good_p}.{good_s}"),
        Err(WrongAlgorithm),
    );
    row(
        "alg `none`, forged claims (role service, every room)",
        unsigned(
            "none",
            &with(json!({"role": "service", "rooms": ["*"], "sub": "mallory"})),
        ),
        Err(WrongAlgorithm),
    );
    row(
        "alg missing from the header",
        format!("{}.{good_p}.{good_s}", b64(br#"{"typ":"JWT"}"#)),
        Err(Malformed),
    );
    row(
        "alg given twice (`HS256` then `none`)",
        format!(
            "{}.{good_p}.{good_s}",
            b64(br#"{"alg":"HS256","alg":"none"}"#)
        ),
        Err(Malformed),
    );
    for other in ["HS256X", "EdDSA", "hs256", ""] {
        row(
            &format!("alg `{other}`"),
            format!(
                "{}.{good_p}.{good_s}",
                b64(json!({"alg": other}).to_string().as_bytes())
            ),
            Err(WrongAlgorithm),
        );
    }

    // Algorithm confusion: every other algorithm, including HMAC keyed with the public key.
    let rsa = pem_key(Algorithm::RS256, RSA_PRIVATE);
    let ec = pem_key(Algorithm::ES256, EC_PRIVATE);
    let mut foreign: Vec<(String, EncodingKey, Algorithm)> = vec![
        ("RS384".into(), rsa.clone(), Algorithm::RS384),
        ("RS512".into(), rsa.clone(), Algorithm::RS512),
        ("PS256".into(), rsa.clone(), Algorithm::PS256),
        (
            "HS384 (same secret)".into(),
            EncodingKey::from_secret(SECRET),
            Algorithm::HS384,
        ),
        (
            "HS512 (same secret)".into(),
            EncodingKey::from_secret(SECRET),
            Algorithm::HS512,
        ),
    ];
    if alg != Algorithm::RS256 {
        foreign.push(("RS256".into(), rsa.clone(), Algorithm::RS256));
    }
    if alg != Algorithm::ES256 {
        foreign.push(("ES256".into(), ec.clone(), Algorithm::ES256));
    }
    if let Some(pem) = setup.public_pem {
        // The classic: the verifier's public key, which anyone may have, as an HMAC secret.
        for hs in [Algorithm::HS256, Algorithm::HS384, Algorithm::HS512] {
            foreign.push((
                format!("{hs:?} keyed with the public key PEM"),
                EncodingKey::from_secret(pem.as_bytes()),
                hs,
            ));
        }
        foreign.push((
            "HS256 keyed with the public key PEM, trimmed".into(),
            EncodingKey::from_secret(pem.trim().as_bytes()),
            Algorithm::HS256,
        ));
    }
    for (label, key, foreign_alg) in &foreign {
        row(
            &format!("key confusion: {label}"),
            signed(&good_claims(), key, *foreign_alg),
            Err(WrongAlgorithm),
        );
    }
    if let Some(pem) = setup.public_pem {
        // The header names the pinned algorithm, but the signature is an HMAC with the public key.
        let header = json!({"alg": format!("{alg:?}"), "typ": "JWT"}).to_string();
        let message = format!("{}.{good_p}", b64(header.as_bytes()));
        let mac = jsonwebtoken::crypto::sign(
            message.as_bytes(),
            &EncodingKey::from_secret(pem.as_bytes()),
            Algorithm::HS256,
        )
        .expect("HMAC signing does not fail");
        row(
            "pinned alg in the header, HMAC-with-public-key signature",
            format!("{message}.{mac}"),
            Err(BadSignature),
        );
    }

    // Signatures.
    row(
        "signed with another key",
        signed(&good_claims(), &setup.attacker, alg),
        Err(BadSignature),
    );
    let forged = with(json!({"sub": "mallory", "rooms": ["*"], "role": "service"}));
    row(
        "claims changed after signing (privilege escalation)",
        format!("{good_h}.{}.{good_s}", b64(forged.to_string().as_bytes())),
        Err(BadSignature),
    );
    let other_tenant = with(json!({"tid": "globex"}));
    row(
        "tenant changed after signing",
        format!(
            "{good_h}.{}.{good_s}",
            b64(other_tenant.to_string().as_bytes())
        ),
        Err(BadSignature),
    );
    row(
        "header changed after signing (`kid` added)",
        format!(
            "{}.{good_p}.{good_s}",
            b64(
                json!({"alg": format!("{alg:?}"), "typ": "JWT", "kid": "../../dev/null"})
                    .to_string()
                    .as_bytes()
            )
        ),
        Err(BadSignature),
    );
    row(
        "a key offered in the header (`jku`, `jwk`), signed with the attacker's key",
        hand_signed(
            &json!({"alg": format!("{alg:?}"), "jku": "https://attacker.example/jwks.json", "jwk": {"kty": "oct", "k": b64(OTHER_SECRET)}}).to_string(),
            &good_claims().to_string(),
            &setup.attacker,
            alg,
        ),
        Err(BadSignature),
    );
    row(
        "signature removed",
        format!("{good_h}.{good_p}."),
        Err(BadSignature),
    );
    row(
        "signature truncated",
        format!("{good_h}.{good_p}.{}", &good_s[..good_s.len() / 8 * 4]),
        Err(BadSignature),
    );
    let other = sign(&with(json!({"sub": "bob"})));
    row(
        "signature of another valid token",
        format!("{good_h}.{good_p}.{}", parts(&other).2),
        Err(BadSignature),
    );
    row(
        "signature not base64url",
        format!("{good_h}.{good_p}.***"),
        Err(Malformed),
    );

    // Time.
    row(
        "expired: exp = now",
        sign(&with(json!({"exp": NOW}))),
        Err(Expired),
    );
    row(
        "expired an hour ago",
        sign(&with(json!({"exp": NOW - 3600}))),
        Err(Expired),
    );
    row("exp = 0", sign(&with(json!({"exp": 0}))), Err(Expired));
    row(
        "control: exp one second from now",
        sign(&with(json!({"exp": NOW + 1}))),
        Ok(()),
    );
    row(
        "nbf one second in the future",
        sign(&with(json!({"nbf": NOW + 1}))),
        Err(NotYetValid),
    );
    row(
        "nbf a year in the future",
        sign(&with(
            json!({"nbf": NOW + 365 * 86_400, "exp": NOW + 400 * 86_400}),
        )),
        Err(NotYetValid),
    );
    row(
        "control: nbf = now",
        sign(&with(json!({"nbf": NOW}))),
        Ok(()),
    );

    // Issuer and audience.
    row(
        "wrong iss",
        sign(&with(json!({"iss": "https://attacker.example"}))),
        Err(WrongIssuer),
    );
    row(
        "iss differing in case",
        sign(&with(json!({"iss": ISSUER.to_uppercase()}))),
        Err(WrongIssuer),
    );
    row(
        "iss with a suffix",
        sign(&with(json!({"iss": format!("{ISSUER}.attacker.example")}))),
        Err(WrongIssuer),
    );
    row(
        "iss missing",
        sign(&with(json!({"iss": null}))),
        Err(WrongIssuer),
    );
    row(
        "wrong aud",
        sign(&with(json!({"aud": "another-service"}))),
        Err(WrongAudience),
    );
    row(
        "aud with a prefix of the audience",
        sign(&with(json!({"aud": "roomcast-admin"}))),
        Err(WrongAudience),
    );
    row(
        "aud array without the audience",
        sign(&with(json!({"aud": ["a", "b"]}))),
        Err(WrongAudience),
    );
    row(
        "aud a number",
        sign(&with(json!({"aud": 7}))),
        Err(WrongAudience),
    );
    row(
        "aud missing",
        sign(&with(json!({"aud": null}))),
        Err(WrongAudience),
    );

    // Missing or invalid claims.
    for claim in ["exp", "sub", "tid"] {
        row(
            &format!("{claim} missing"),
            sign(&with(json!({claim: null}))),
            Err(BadClaim(match claim {
                "exp" => "exp",
                "sub" => "sub",
                _ => "tid",
            })),
        );
    }
    let long = "a".repeat(129);
    for sub in [
        "",
        "a/b",
        "*",
        "$system",
        "alice bob",
        "alice\u{0}",
        long.as_str(),
    ] {
        row(
            &format!("sub {sub:?}"),
            sign(&with(json!({"sub": sub}))),
            Err(BadClaim("sub")),
        );
    }
    for tid in ["", "acme/support-1", "*", "acme\n"] {
        row(
            &format!("tid {tid:?}"),
            sign(&with(json!({"tid": tid}))),
            Err(BadClaim("tid")),
        );
    }
    for rooms in [
        json!(["a/b"]),
        json!([""]),
        json!(["**"]),
        json!(["lobby", "x y"]),
    ] {
        row(
            &format!("rooms {rooms}"),
            sign(&with(json!({"rooms": rooms}))),
            Err(BadClaim("rooms")),
        );
    }
    for (label, change) in [
        ("role `admin`", json!({"role": "admin"})),
        ("exp a string", json!({"exp": "tomorrow"})),
        ("exp negative", json!({"exp": -1})),
        ("exp fractional", json!({"exp": (NOW + 600) as f64 + 0.5})),
        (
            "tid an array of tenants",
            json!({"tid": ["acme", "globex"]}),
        ),
        ("sub a number", json!({"sub": 42})),
        ("rooms a string", json!({"rooms": "*"})),
    ] {
        row(label, sign(&with(change)), Err(Malformed));
    }
    // Parsers disagree on which duplicate wins; this one must refuse.
    let duplicate = good_claims().to_string().replacen(
        "\"tid\":\"acme\"",
        "\"tid\":\"acme\",\"tid\":\"globex\"",
        1,
    );
    assert!(duplicate.contains("globex"), "the duplicate was inserted");
    row(
        "tid given twice",
        hand_signed(
            &json!({"alg": format!("{alg:?}")}).to_string(),
            &duplicate,
            &setup.key,
            alg,
        ),
        Err(Malformed),
    );
    row(
        "claims not a JSON object",
        hand_signed(
            &json!({"alg": format!("{alg:?}")}).to_string(),
            "[1,2]",
            &setup.key,
            alg,
        ),
        Err(Malformed),
    );

    // Not a JWT at all.
    row("empty", String::new(), Err(Missing));
    for junk in ["abc", "a.b", "..", "a.b.c.d", "not.a.jwt"] {
        row(&format!("{junk:?}"), junk.to_owned(), Err(Malformed));
    }
    row(
        "a good token with a leading space",
        format!(" {good}"),
        Err(Malformed),
    );

    // Size: a validly signed token at the limit passes, one byte class over it does not.
    let (fits, over) = around_the_limit(|n| sign(&with(json!({"name": "x".repeat(n)}))));
    row("control: a signed token at the size limit", fits, Ok(()));
    row("a signed token over the size limit", over, Err(TooLarge));
    row("1 MB of junk", "a".repeat(1024 * 1024), Err(TooLarge));
    rows
}

/// The largest token `make(n)` yields within [`MAX_TOKEN_BYTES`] and the smallest over it
/// (`make`'s length grows with `n`; a binary search keeps RSA signing in a debug build quick).
fn around_the_limit(make: impl Fn(usize) -> String) -> (String, String) {
    let (mut lo, mut hi) = (0, MAX_TOKEN_BYTES);
    assert!(make(lo).len() <= MAX_TOKEN_BYTES && make(hi).len() > MAX_TOKEN_BYTES);
    while hi - lo > 1 {
        let mid = lo + (hi - lo) / 2;
        if make(mid).len() > MAX_TOKEN_BYTES {
            hi = mid;
        } else {
            lo = mid;
        }
    }
    let (fits, over) = (make(lo), make(hi));
    assert!(
        fits.len() > MAX_TOKEN_BYTES - 8,
        "close to the limit: {}",
        fits.len()
    );
    (fits, over)
}

fn run(setup: &Setup, leeway_secs: u64, rows: Vec<Row>) {
    let v = verifier(setup, leeway_secs);
    let mut failures = Vec::new();
    let count = rows.len();
    for (label, token, want) in rows {
        let got = v.verify(&token, NOW_MS).map(|identity| {
            assert!(
                identity.tenant == "acme" && identity.user == "alice",
                "{label}: a passing control speaks for alice of acme: {identity:?}"
            );
        });
        if got != want {
            failures.push(format!("{label}: expected {want:?}, got {got:?}"));
        }
    }
    assert!(
        failures.is_empty(),
        "{:?}: {} of {count} rows failed:\n  - {}",
        setup.alg,
        failures.len(),
        failures.join("\n  - ")
    );
    eprintln!("{:?}: {count} rows as expected", setup.alg);
}

#[test]
fn hs256_refuses_every_attack() {
    let setup = setups().remove(0);
    run(&setup, 0, matrix(&setup));
}

#[test]
fn rs256_refuses_every_attack() {
    let setup = setups().remove(1);
    run(&setup, 0, matrix(&setup));
}

#[test]
fn es256_refuses_every_attack() {
    let setup = setups().remove(2);
    run(&setup, 0, matrix(&setup));
}

/// Leeway tolerates skew on `exp` and `nbf` up to its value and not a second more, for every
/// algorithm; it never excuses a bad signature.
#[test]
fn leeway_is_exact_and_excuses_nothing_else() {
    const LEEWAY: u64 = 30;
    for setup in setups() {
        let sign = |claims: &Value| signed(claims, &setup.key, setup.alg);
        let rows: Vec<Row> = vec![
            (
                "exp within leeway".into(),
                sign(&with(json!({"exp": NOW - LEEWAY + 1}))),
                Ok(()),
            ),
            (
                "exp at leeway".into(),
                sign(&with(json!({"exp": NOW - LEEWAY}))),
                Err(AuthError::Expired),
            ),
            (
                "nbf within leeway".into(),
                sign(&with(json!({"nbf": NOW + LEEWAY}))),
                Ok(()),
            ),
            (
                "nbf past leeway".into(),
                sign(&with(json!({"nbf": NOW + LEEWAY + 1}))),
                Err(AuthError::NotYetValid),
            ),
            (
                "another key, within leeway".into(),
                signed(&with(json!({"exp": NOW - 1})), &setup.attacker, setup.alg),
                Err(AuthError::BadSignature),
            ),
        ];
        run(&setup, LEEWAY, rows);
    }
}

/// A token is only ever for the tenant its signed `tid` names: the identity carries exactly
/// that tenant (every store key is scoped by it), and no other claim moves it.
#[test]
fn the_tenant_is_the_signed_tid_and_nothing_else() {
    for setup in setups() {
        let v = verifier(&setup, 0);
        let globex = signed(
            &with(json!({"tid": "globex", "name": "acme", "rooms": ["acme-*"]})),
            &setup.key,
            setup.alg,
        );
        let identity = v.verify(&globex, NOW_MS).expect("a good globex token");
        assert_eq!(
            (identity.tenant.as_str(), identity.user.as_str()),
            ("globex", "alice"),
            "{:?}",
            setup.alg
        );
        assert!(identity.may_join("acme-1") && !identity.may_join("lobby"));
    }
}

/// A JWK (with `kid`) of the public half of `private_pem`, as an identity provider publishes it.
fn public_jwk(alg: Algorithm, private_pem: &str, kid: &str) -> Value {
    let jwk = jsonwebtoken::jwk::Jwk::from_encoding_key(&pem_key(alg, private_pem), alg)
        .unwrap_or_else(|e| panic!("JWK of the {alg:?} test key: {e}"));
    let mut v = serde_json::to_value(jwk).unwrap_or_else(|e| panic!("JWK to JSON: {e}"));
    v["kid"] = json!(kid);
    v
}

/// A JWKS `oct` key (HS256) with `kid`.
fn oct_jwk(secret: &[u8], kid: &str) -> Value {
    let k = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(secret);
    json!({"kty": "oct", "kid": kid, "k": k})
}

/// Settings from `ROOMCAST_JWT_SECRET` and `ROOMCAST_JWT_JWKS` (and the issuer and audience the
/// good claims carry).
fn rotation_settings(jwks: &Value) -> Result<roomcast_core::config::Settings, String> {
    use roomcast_core::config::names;
    let values = [
        (
            names::JWT_SECRET,
            String::from_utf8_lossy(SECRET).into_owned(),
        ),
        (names::JWT_JWKS, jwks.to_string()),
        (names::JWT_ISSUER, ISSUER.to_owned()),
        (names::JWT_AUDIENCE, AUDIENCE.to_owned()),
    ];
    roomcast_core::config::Settings::from_lookup(|name| {
        values
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v.clone())
    })
    .map_err(|e| e.to_string())
}

fn signed_with_kid(alg: Algorithm, key: &EncodingKey, kid: Option<&str>) -> String {
    let mut header = jsonwebtoken::Header::new(alg);
    header.kid = kid.map(str::to_owned);
    jsonwebtoken::encode(&header, &good_claims(), key).unwrap_or_else(|e| panic!("signing: {e}"))
}

/// Key rotation (`ROOMCAST_JWT_JWKS`): tokens naming a key's `kid` verify with that key and its
/// algorithm only; tokens without a `kid` still verify with the deployment's key; a key never
/// verifies another kid's tokens, and a JWK's algorithm cannot be swapped (HS256 keyed with the
/// published RSA key is refused).
#[test]
fn keys_rotate_by_kid_from_a_jwks_document() {
    const NEXT_SECRET: &[u8] = b"the-next-hs256-secret-of-the-rotation-0123";
    let jwks = json!({"keys": [
        oct_jwk(NEXT_SECRET, "hs-next"),
        public_jwk(Algorithm::RS256, RSA_PRIVATE, "rsa-1"),
        public_jwk(Algorithm::ES256, EC_PRIVATE, "ec-1"),
    ]});
    let settings = rotation_settings(&jwks).unwrap_or_else(|e| panic!("{e}"));
    let v = settings.verifier().unwrap_or_else(|e| panic!("{e}"));
    let rsa = pem_key(Algorithm::RS256, RSA_PRIVATE);
    let ec = pem_key(Algorithm::ES256, EC_PRIVATE);
    let accepted = [
        (
            "the old key, no kid",
            signed_with_kid(Algorithm::HS256, &EncodingKey::from_secret(SECRET), None),
        ),
        (
            "the next secret",
            signed_with_kid(
                Algorithm::HS256,
                &EncodingKey::from_secret(NEXT_SECRET),
                Some("hs-next"),
            ),
        ),
        (
            "the RSA key",
            signed_with_kid(Algorithm::RS256, &rsa, Some("rsa-1")),
        ),
        (
            "the EC key",
            signed_with_kid(Algorithm::ES256, &ec, Some("ec-1")),
        ),
    ];
    for (what, token) in accepted {
        assert!(
            v.verify(&token, NOW_MS).is_ok(),
            "{what}: {:?}",
            v.verify(&token, NOW_MS)
        );
    }
    let rsa_public_as_secret = EncodingKey::from_secret(RSA_PUBLIC.as_bytes());
    let refused = [
        (
            "the RSA key under the EC kid",
            signed_with_kid(Algorithm::RS256, &rsa, Some("ec-1")),
        ),
        (
            "the next secret without its kid",
            signed_with_kid(
                Algorithm::HS256,
                &EncodingKey::from_secret(NEXT_SECRET),
                None,
            ),
        ),
        (
            "HS256 keyed with the published RSA key",
            signed_with_kid(Algorithm::HS256, &rsa_public_as_secret, Some("rsa-1")),
        ),
        (
            "an attacker's RSA key",
            signed_with_kid(
                Algorithm::RS256,
                &pem_key(Algorithm::RS256, OTHER_RSA_PRIVATE),
                Some("rsa-1"),
            ),
        ),
    ];
    for (what, token) in refused {
        assert!(v.verify(&token, NOW_MS).is_err(), "{what} was accepted");
    }
}

#[test]
fn a_jwks_document_that_cannot_work_stops_the_deployment() {
    let cases = [
        (json!({"keys": [{"kty": "oct", "k": "AAAA"}]}), "`kid`"),
        (
            json!({"keys": [oct_jwk(&[7; 31], "short")]}),
            "at least 32 bytes",
        ),
        (
            json!({"keys": [oct_jwk(&[7; 32], "twice"), oct_jwk(&[8; 32], "twice")]}),
            "twice",
        ),
        (json!([1, 2]), "not a JWKS document"),
        (
            json!({"keys": [{"kty": "RSA", "kid": "bad", "n": "AQAB", "e": "AQAB", "alg": "ES256"}]}),
            "ROOMCAST_JWT_JWKS",
        ),
    ];
    for (jwks, expected) in cases {
        let err = rotation_settings(&jwks)
            .err()
            .unwrap_or_else(|| panic!("{jwks} accepted"));
        assert!(err.contains(expected), "{jwks}: {err}");
    }
}

/// The `token` command's RS256 and ES256 signers make tokens the matching public key verifies.
#[test]
fn pem_signers_sign_what_the_public_key_verifies() {
    use roomcast_core::auth::{Claims, TokenSigner};
    let claims = Claims {
        sub: Some("alice".into()),
        tid: Some("acme".into()),
        rooms: vec!["lobby".into()],
        exp: Some(NOW + 60),
        ..Claims::default()
    };
    let cases = [
        (
            TokenSigner::rs256_pem(RSA_PRIVATE.as_bytes()),
            VerifyKey::Rs256Pem(RSA_PUBLIC.as_bytes().to_vec()),
        ),
        (
            TokenSigner::es256_pem(EC_PRIVATE.as_bytes()),
            VerifyKey::Es256Pem(EC_PUBLIC.as_bytes().to_vec()),
        ),
    ];
    for (signer, key) in cases {
        let signer = signer.unwrap_or_else(|e| panic!("{e}"));
        let v = TokenVerifier::new(&AuthConfig {
            key,
            keys_by_kid: Vec::new(),
            issuer: None,
            audience: None,
            leeway_secs: 0,
        })
        .unwrap_or_else(|e| panic!("{e}"));
        assert!(v.verify(&signer.sign(&claims), NOW_MS).is_ok());
    }
    assert!(TokenSigner::rs256_pem(b"not a key").is_err());
}
