//! JWT verification and claims handling (`auth::TokenVerifier::verify`) and the `$connect` path
//! built on it (`ChatService::connect` with the token in `?token=` or a subprotocol entry).
//!
//! Tokens are arbitrary strings, arbitrary header/payload bytes, or hostile JSON claims, and the
//! latter two are signed with HS256 and the verifier's key so the fuzzer gets past the signature
//! to the claims checks. Checked: no panic; a token over the size limit is refused unparsed; an
//! accepted token yields valid names and grants and an expiry after `now`; `$connect` answers
//! 200 exactly when the token verifies and grants something, with a 401/403 otherwise, and
//! echoes only an offered subprotocol.
#![no_main]

use std::sync::Arc;

use arbitrary::{Arbitrary, Unstructured};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, EncodingKey};
use libfuzzer_sys::fuzz_target;
use roomcast_core::auth::{AuthConfig, AuthError, Role, TokenVerifier, VerifyKey};
use roomcast_core::limits::MAX_TOKEN_BYTES;
use roomcast_core::protocol::validate_name;
use roomcast_core::service::{Inbound, SUBPROTOCOL, Upgrade};
use roomcast_core::store::memory::{MemoryConnections, MemoryHistory};
use roomcast_core::{ChatService, ServiceConfig};
use roomcast_fuzz::{Field, Json, interesting_u64, name_like};
use roomcast_testkit::gateway::RecordingGateway;
use serde_json::{Map, Value, json};

const SECRET: &[u8] = b"roomcast-fuzz-secret-0123456789abcdef";
/// 2027-01-15, epoch seconds: the clock's centre.
const NOW_S: u64 = 1_800_000_000;

#[derive(Debug)]
enum Token {
    /// Any string at all.
    Raw(String),
    /// Base64url of arbitrary header and payload bytes, then a signature.
    Parts {
        header: Vec<u8>,
        payload: Vec<u8>,
        signature: Signature,
    },
    /// A JSON header and hostile claims, signed.
    Claims {
        header: Value,
        claims: Value,
        signature: Signature,
    },
}

#[derive(Debug, Arbitrary)]
enum Signature {
    /// HS256 with the verifier's key: valid.
    Valid,
    /// HS256 with another key.
    OtherKey,
    /// Arbitrary text after the second dot.
    Raw(String),
    /// A valid signature with a byte flipped.
    Flipped(u8),
}

#[derive(Debug)]
struct Input {
    token: Token,
    now_ms: u64,
    issuer: Option<String>,
    audience: Option<String>,
    leeway_secs: u64,
    /// `Sec-WebSocket-Protocol` prefix offered before the token (None: token in `?token=`).
    protocols: Option<String>,
}

impl<'a> Arbitrary<'a> for Input {
    fn arbitrary(u: &mut Unstructured<'a>) -> arbitrary::Result<Self> {
        let token = match u.int_in_range(0..=5)? {
            0 => Token::Raw(u.arbitrary()?),
            1 => Token::Parts {
                header: u.arbitrary()?,
                payload: u.arbitrary()?,
                signature: u.arbitrary()?,
            },
            _ => Token::Claims {
                header: header(u)?,
                claims: claims(u)?,
                signature: u.arbitrary()?,
            },
        };
        let now_ms = match u.int_in_range(0..=7)? {
            0 => interesting_u64(u)?,
            _ => (NOW_S * 1000).wrapping_add_signed(i64::from(u.arbitrary::<i32>()?) * 10),
        };
        Ok(Self {
            token,
            now_ms,
            issuer: if u.arbitrary()? {
                Some(name_like(u, &["me", ""])?)
            } else {
                None
            },
            audience: if u.arbitrary()? {
                Some(name_like(u, &["chat", ""])?)
            } else {
                None
            },
            leeway_secs: if u.arbitrary()? {
                interesting_u64(u)?
            } else {
                0
            },
            protocols: u.arbitrary()?,
        })
    }
}

fn header(u: &mut Unstructured<'_>) -> arbitrary::Result<Value> {
    let mut map = Map::new();
    Field::arbitrary_with(u, |u| {
        Ok(Value::String(name_like(
            u,
            &["HS256", "HS256", "none", "HS384", "RS256", "ES256", "hs256"],
        )?))
    })?
    .put(&mut map, "alg");
    Field::arbitrary_with(u, |u| Ok(Value::String(name_like(u, &["JWT"])?)))?.put(&mut map, "typ");
    for key in ["kid", "crit", "jku", "cty", "b64"] {
        if u.ratio(1, 8)? {
            map.insert(key.to_owned(), u.arbitrary::<Json>()?.0);
        }
    }
    Ok(Value::Object(map))
}

fn claims(u: &mut Unstructured<'_>) -> arbitrary::Result<Value> {
    let mut map = Map::new();
    let names = ["alice", "acme", "", "a/b", "*", "$system"];
    Field::arbitrary_with(u, |u| Ok(Value::String(name_like(u, &names)?)))?.put(&mut map, "sub");
    Field::arbitrary_with(u, |u| Ok(Value::String(name_like(u, &names)?)))?.put(&mut map, "tid");
    Field::arbitrary_with(u, |u| {
        let n = u.int_in_range(0..=4)?;
        let grants = ["support-*", "lobby", "*", "**", "", "a/b*", "inbox"];
        (0..n)
            .map(|_| Ok(Value::String(name_like(u, &grants)?)))
            .collect::<arbitrary::Result<Vec<_>>>()
            .map(Value::Array)
    })?
    .put(&mut map, "rooms");
    Field::arbitrary_with(u, |u| Ok(Value::String(u.arbitrary()?)))?.put(&mut map, "name");
    Field::arbitrary_with(u, |u| {
        Ok(Value::String(name_like(
            u,
            &["user", "agent", "service", "admin"],
        )?))
    })?
    .put(&mut map, "role");
    for key in ["exp", "nbf", "iat"] {
        Field::arbitrary_with(u, |u| {
            Ok(match u.int_in_range(0..=3)? {
                0 => Value::from(interesting_u64(u)?),
                _ => Value::from(NOW_S.wrapping_add_signed(i64::from(u.arbitrary::<i16>()?))),
            })
        })?
        .put(&mut map, key);
    }
    Field::arbitrary_with(u, |u| Ok(Value::String(name_like(u, &["me"])?)))?.put(&mut map, "iss");
    Field::arbitrary_with(u, |u| {
        Ok(if u.arbitrary()? {
            json!([name_like(u, &["chat", "x"])?, name_like(u, &["chat"])?])
        } else {
            Value::String(name_like(u, &["chat"])?)
        })
    })?
    .put(&mut map, "aud");
    Ok(Value::Object(map))
}

fn sign(header: &[u8], payload: &[u8], signature: &Signature) -> String {
    let input = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header),
        URL_SAFE_NO_PAD.encode(payload)
    );
    let hs256 = |key: &[u8]| {
        jsonwebtoken::crypto::sign(
            input.as_bytes(),
            &EncodingKey::from_secret(key),
            Algorithm::HS256,
        )
        .expect("HS256 signing does not fail")
    };
    let sig = match signature {
        Signature::Valid => hs256(SECRET),
        Signature::OtherKey => hs256(b"another key"),
        Signature::Raw(s) => s.clone(),
        Signature::Flipped(at) => {
            let mut raw = URL_SAFE_NO_PAD.decode(hs256(SECRET)).expect("own base64");
            let i = usize::from(*at) % raw.len();
            raw[i] ^= 1;
            URL_SAFE_NO_PAD.encode(raw)
        }
    };
    format!("{input}.{sig}")
}

fuzz_target!(|input: Input| {
    let token = match &input.token {
        Token::Raw(s) => s.clone(),
        Token::Parts {
            header,
            payload,
            signature,
        } => sign(header, payload, signature),
        Token::Claims {
            header,
            claims,
            signature,
        } => sign(
            header.to_string().as_bytes(),
            claims.to_string().as_bytes(),
            signature,
        ),
    };
    let config = AuthConfig {
        key: VerifyKey::Hs256(SECRET.to_vec()),
        keys_by_kid: Vec::new(),
        issuer: input.issuer.clone(),
        audience: input.audience.clone(),
        leeway_secs: input.leeway_secs,
    };
    let verifier = TokenVerifier::new(&config).expect("an HS256 key always loads");
    let verdict = verifier.verify(&token, input.now_ms);
    assert_eq!(
        verdict,
        verifier.verify(&token, input.now_ms),
        "deterministic"
    );
    if token.is_empty() {
        assert_eq!(verdict, Err(AuthError::Missing));
    }
    if token.len() > MAX_TOKEN_BYTES {
        assert_eq!(verdict, Err(AuthError::TooLarge));
    }
    if let Ok(id) = &verdict {
        assert!(validate_name("sub", &id.user).is_ok(), "{id:?}");
        assert!(validate_name("tid", &id.tenant).is_ok(), "{id:?}");
        for g in &id.rooms {
            let prefix = g.strip_suffix('*').unwrap_or(g);
            assert!(
                g == "*" || validate_name("room", prefix).is_ok(),
                "grant {g:?}"
            );
        }
        assert!(
            id.expires_at_ms > input.now_ms || id.expires_at_ms == u64::MAX,
            "accepted at {} but expires at {}",
            input.now_ms,
            id.expires_at_ms
        );
        assert!(
            matches!(
                &input.token,
                Token::Claims {
                    signature: Signature::Valid,
                    ..
                } | Token::Parts {
                    signature: Signature::Valid,
                    ..
                } | Token::Raw(_)
            ),
            "accepted without a valid signature"
        );
    }
    connect(&input, &token, &verifier, &verdict);
});

/// `$connect` through the service's front door, with the token in the query or in the
/// subprotocols.
fn connect(
    input: &Input,
    token: &str,
    verifier: &TokenVerifier,
    verdict: &Result<roomcast_core::auth::Identity, AuthError>,
) {
    let gateway = Arc::new(RecordingGateway::new());
    let service = ChatService::new(
        verifier.clone(),
        Arc::new(MemoryConnections::new()),
        Arc::new(MemoryHistory::new()),
        gateway.clone(),
        ServiceConfig::default(),
    );
    let offered = input.protocols.as_ref().map(|p| format!("{p}, {token}"));
    let upgrade = match &offered {
        None => Upgrade {
            token_param: Some(token),
            ..Upgrade::default()
        },
        Some(list) => Upgrade {
            protocols: Some(list),
            ..Upgrade::default()
        },
    };
    let token_usable = offered.is_none();
    let result = futures::executor::block_on(service.connect("c1", upgrade, input.now_ms));
    let status = result.as_ref().map_or_else(|r| r.status, |_| 200);
    assert!(matches!(status, 200 | 401 | 403), "status {status}");
    if let (Some(list), Ok(accepted)) = (&offered, &result)
        && let Some(echo) = &accepted.subprotocol
    {
        assert!(
            list.split(',').map(str::trim).any(|p| p == echo),
            "echoed {echo:?} of {list:?}"
        );
        assert!(!echo.contains(','));
        if list.split(',').map(str::trim).any(|p| p == SUBPROTOCOL) {
            assert_eq!(echo, SUBPROTOCOL);
        }
    }
    if token_usable {
        let want = match verdict {
            Ok(id) if id.role == Role::User && id.rooms.is_empty() => 403,
            Ok(_) => 200,
            Err(_) => 401,
        };
        assert_eq!(status, want, "{verdict:?} {:?}", result.err());
    }
    if status == 200 {
        // The connection works until the token expires: a ping is answered or closed with 4001.
        let ping = Inbound::Text(r#"{"action":"ping"}"#);
        let outcome = futures::executor::block_on(service.frame("c1", ping, input.now_ms));
        let frames = gateway.take_raw("c1");
        assert_eq!(frames.len(), 1, "{frames:?}");
        assert!(
            outcome.closed.is_none() || input.now_ms == u64::MAX,
            "{frames:?}"
        );
        futures::executor::block_on(service.disconnect("c1", input.now_ms));
    }
}
