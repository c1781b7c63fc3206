//! Token verification and room grants. Pure: the caller passes `now`; jsonwebtoken only checks
//! the signature and the pinned algorithm, and every time-based claim is checked here.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Validation, errors::ErrorKind};
use serde::{Deserialize, Serialize};

use crate::limits::MAX_TOKEN_BYTES;
use crate::protocol::validate_name;

/// What a connection may do beyond chatting.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// A visitor or team member.
    #[default]
    User,
    /// A support agent: may assign and close conversations.
    Agent,
    /// A backend or bot: may publish over HTTP.
    Service,
}

impl Role {
    /// The role as it appears on the wire (the token's `role`, a message's `role`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::User => "user",
            Self::Agent => "agent",
            Self::Service => "service",
        }
    }
}

/// The JWT claims of protocol v1.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct Claims {
    /// User id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sub: Option<String>,
    /// Tenant id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tid: Option<String>,
    /// Rooms the user may join; an entry ending in `*` grants every room with that prefix.
    #[serde(default)]
    pub rooms: Vec<String>,
    /// Display name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Role.
    #[serde(default)]
    pub role: Role,
    /// Expiry, epoch seconds. Required.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exp: Option<u64>,
    /// Not before, epoch seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nbf: Option<u64>,
    /// Issued at, epoch seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iat: Option<u64>,
    /// Issuer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iss: Option<String>,
    /// Audience: a string or an array of strings.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aud: Option<serde_json::Value>,
}

/// Who a verified token speaks for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Identity {
    /// Tenant id.
    pub tenant: String,
    /// User id.
    pub user: String,
    /// Display name.
    pub name: Option<String>,
    /// Role.
    pub role: Role,
    /// Room grants.
    pub rooms: Vec<String>,
    /// When the token stops being accepted (`exp` plus leeway), epoch milliseconds.
    pub expires_at_ms: u64,
}

impl Identity {
    /// Whether the token grants `room`.
    pub fn may_join(&self, room: &str) -> bool {
        room_granted(&self.rooms, room)
    }
}

/// Whether `grants` (exact names, or prefixes ending in `*`) cover `room`.
pub fn room_granted(grants: &[String], room: &str) -> bool {
    grants.iter().any(|g| match g.strip_suffix('*') {
        Some(prefix) => room.starts_with(prefix),
        None => g == room,
    })
}

/// Why a token was refused. Every variant is an HTTP 401 on connect.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// No token given.
    #[error("no token")]
    Missing,
    /// Over [`MAX_TOKEN_BYTES`].
    #[error("token larger than {MAX_TOKEN_BYTES} bytes")]
    TooLarge,
    /// Not a JWT, bad base64 or JSON.
    #[error("malformed token")]
    Malformed,
    /// Signed with another algorithm than the pinned one (including `none`).
    #[error("token algorithm not allowed")]
    WrongAlgorithm,
    /// The signature does not verify.
    #[error("bad signature")]
    BadSignature,
    /// `exp` has passed.
    #[error("token expired")]
    Expired,
    /// `nbf` is in the future.
    #[error("token not yet valid")]
    NotYetValid,
    /// `iss` is not the configured issuer.
    #[error("wrong issuer")]
    WrongIssuer,
    /// `aud` does not contain the configured audience.
    #[error("wrong audience")]
    WrongAudience,
    /// A required claim is absent or invalid.
    #[error("missing or invalid claim `{0}`")]
    BadClaim(&'static str),
}

/// How tokens are verified.
#[derive(Clone, PartialEq, Eq)]
pub enum VerifyKey {
    /// HMAC-SHA256 shared secret.
    Hs256(Vec<u8>),
    /// RSA public key, PEM.
    Rs256Pem(Vec<u8>),
    /// ECDSA P-256 public key, PEM.
    Es256Pem(Vec<u8>),
    /// An RSA (RS256) or EC P-256 (ES256) public key as a JWK (RFC 7517), as identity
    /// providers publish them in a JWKS document.
    Jwk(Box<jsonwebtoken::jwk::Jwk>),
}

/// The one algorithm a public JWK verifies: RS256 for RSA, ES256 for EC P-256, and its `alg`
/// member, when present, must agree.
fn jwk_algorithm(jwk: &jsonwebtoken::jwk::Jwk) -> Result<Algorithm, KeyError> {
    use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, KeyAlgorithm};
    let (alg, named) = match &jwk.algorithm {
        AlgorithmParameters::RSA(_) => (Algorithm::RS256, KeyAlgorithm::RS256),
        AlgorithmParameters::EllipticCurve(p) if p.curve == EllipticCurve::P256 => {
            (Algorithm::ES256, KeyAlgorithm::ES256)
        }
        _ => {
            return Err(KeyError(
                "a JWK must be RSA (RS256) or EC P-256 (ES256); HS256 secrets are `oct` keys"
                    .into(),
            ));
        }
    };
    match jwk.common.key_algorithm {
        Some(given) if given != named => Err(KeyError(format!(
            "the JWK says `alg` {given:?} but its key is for {alg:?}"
        ))),
        _ => Ok(alg),
    }
}

impl std::fmt::Debug for VerifyKey {
    /// Names the algorithm and the key's length, never the key (a secret must not reach logs).
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (alg, key) = match self {
            Self::Hs256(k) => ("HS256", k),
            Self::Rs256Pem(k) => ("RS256", k),
            Self::Es256Pem(k) => ("ES256", k),
            // A public key: nothing secret in it.
            Self::Jwk(jwk) => return write!(f, "JWK({:?})", jwk.common.key_id),
        };
        write!(f, "{alg}({} bytes)", key.len())
    }
}

/// Auth configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthConfig {
    /// The key and, with it, the one algorithm accepted, for tokens without a `kid` header or
    /// with one no key of [`AuthConfig::keys_by_kid`] has.
    pub key: VerifyKey,
    /// Further keys, each for the tokens whose `kid` header names it (each pins its own
    /// algorithm): the next key of a rotation, or the local server's development key.
    pub keys_by_kid: Vec<(String, VerifyKey)>,
    /// Required `iss`, when set.
    pub issuer: Option<String>,
    /// Required `aud` member, when set.
    pub audience: Option<String>,
    /// Clock skew tolerated on `exp` and `nbf`, seconds.
    pub leeway_secs: u64,
}

/// A key that could not be loaded.
#[derive(Debug, thiserror::Error)]
#[error("invalid verification key: {0}")]
pub struct KeyError(String);

/// One key with its pinned algorithm.
#[derive(Clone)]
struct PinnedKey {
    key: DecodingKey,
    /// The one algorithm accepted with this key.
    alg: Algorithm,
    validation: Validation,
}

impl PinnedKey {
    fn new(key: &VerifyKey) -> Result<Self, KeyError> {
        let (key, alg) = match key {
            VerifyKey::Hs256(secret) => (DecodingKey::from_secret(secret), Algorithm::HS256),
            VerifyKey::Rs256Pem(pem) => (
                DecodingKey::from_rsa_pem(pem).map_err(|e| KeyError(e.to_string()))?,
                Algorithm::RS256,
            ),
            VerifyKey::Es256Pem(pem) => (
                DecodingKey::from_ec_pem(pem).map_err(|e| KeyError(e.to_string()))?,
                Algorithm::ES256,
            ),
            VerifyKey::Jwk(jwk) => (
                DecodingKey::from_jwk(jwk).map_err(|e| KeyError(e.to_string()))?,
                jwk_algorithm(jwk)?,
            ),
        };
        let mut validation = Validation::new(alg);
        // Time, issuer and audience are checked by `verify` with the caller's clock.
        validation.validate_exp = false;
        validation.validate_nbf = false;
        validation.validate_aud = false;
        validation.required_spec_claims.clear();
        Ok(Self {
            key,
            alg,
            validation,
        })
    }

    /// The token's claims when its signature verifies with this key and algorithm.
    fn decode(&self, token: &str) -> Result<Claims, AuthError> {
        jsonwebtoken::decode::<Claims>(token, &self.key, &self.validation)
            .map(|data| data.claims)
            .map_err(|e| match e.kind() {
                ErrorKind::InvalidSignature => AuthError::BadSignature,
                ErrorKind::InvalidAlgorithm | ErrorKind::InvalidAlgorithmName => {
                    AuthError::WrongAlgorithm
                }
                // jsonwebtoken cannot parse a header naming an algorithm it does not know
                // (`none`, `None`, …): that is a wrong algorithm, not a malformed token.
                _ if header(token).is_some_and(|h| h.alg.parse() != Ok(self.alg)) => {
                    AuthError::WrongAlgorithm
                }
                _ => AuthError::Malformed,
            })
    }
}

/// Verifies tokens: each against the one key its `kid` header chooses (the default key when
/// it names none), with that key's one pinned algorithm.
#[derive(Clone)]
pub struct TokenVerifier {
    default_key: PinnedKey,
    keys_by_kid: Vec<(String, PinnedKey)>,
    issuer: Option<String>,
    audience: Option<String>,
    leeway_secs: u64,
}

impl std::fmt::Debug for TokenVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kids: Vec<&str> = self.keys_by_kid.iter().map(|(k, _)| k.as_str()).collect();
        f.debug_struct("TokenVerifier")
            .field("alg", &self.default_key.alg)
            .field("kids", &kids)
            .finish()
    }
}

impl TokenVerifier {
    /// A verifier for `config`.
    pub fn new(config: &AuthConfig) -> Result<Self, KeyError> {
        let keys_by_kid = config
            .keys_by_kid
            .iter()
            .map(|(kid, key)| Ok((kid.clone(), PinnedKey::new(key)?)))
            .collect::<Result<_, KeyError>>()?;
        Ok(Self {
            default_key: PinnedKey::new(&config.key)?,
            keys_by_kid,
            issuer: config.issuer.clone(),
            audience: config.audience.clone(),
            leeway_secs: config.leeway_secs,
        })
    }

    /// Verifies `token` at `now_ms` (epoch milliseconds).
    pub fn verify(&self, token: &str, now_ms: u64) -> Result<Identity, AuthError> {
        if token.is_empty() {
            return Err(AuthError::Missing);
        }
        if token.len() > MAX_TOKEN_BYTES {
            return Err(AuthError::TooLarge);
        }
        let kid = header(token).and_then(|h| h.kid);
        let key = kid
            .and_then(|kid| {
                self.keys_by_kid
                    .iter()
                    .find(|(k, _)| *k == kid)
                    .map(|(_, key)| key)
            })
            .unwrap_or(&self.default_key);
        let claims = key.decode(token)?;
        self.check_claims(claims, now_ms)
    }

    fn check_claims(&self, c: Claims, now_ms: u64) -> Result<Identity, AuthError> {
        let now = now_ms / 1000;
        let exp = c.exp.ok_or(AuthError::BadClaim("exp"))?;
        if now >= exp.saturating_add(self.leeway_secs) {
            return Err(AuthError::Expired);
        }
        if let Some(nbf) = c.nbf
            && now.saturating_add(self.leeway_secs) < nbf
        {
            return Err(AuthError::NotYetValid);
        }
        if let Some(want) = &self.issuer
            && c.iss.as_deref() != Some(want.as_str())
        {
            return Err(AuthError::WrongIssuer);
        }
        if let Some(want) = &self.audience {
            let ok = match &c.aud {
                Some(serde_json::Value::String(a)) => a == want,
                Some(serde_json::Value::Array(list)) => {
                    list.iter().any(|a| a.as_str() == Some(want))
                }
                _ => false,
            };
            if !ok {
                return Err(AuthError::WrongAudience);
            }
        }
        let user = c
            .sub
            .filter(|s| validate_name("sub", s).is_ok())
            .ok_or(AuthError::BadClaim("sub"))?;
        let tenant = c
            .tid
            .filter(|s| validate_name("tid", s).is_ok())
            .ok_or(AuthError::BadClaim("tid"))?;
        if c.rooms
            .iter()
            .any(|g| validate_name("room", g.strip_suffix('*').unwrap_or(g)).is_err() && g != "*")
        {
            return Err(AuthError::BadClaim("rooms"));
        }
        Ok(Identity {
            tenant,
            user,
            name: c.name,
            role: c.role,
            rooms: c.rooms,
            // The moment the token stops verifying, so connections close exactly then.
            expires_at_ms: exp.saturating_add(self.leeway_secs).saturating_mul(1000),
        })
    }
}

/// What a token's header says: its `alg` and `kid`.
#[derive(Deserialize)]
struct Header {
    alg: String,
    #[serde(default)]
    kid: Option<String>,
}

/// The header of a token, trusting nothing in it but for choosing a key; `None` when the header
/// is not base64url JSON with a string `alg`.
fn header(token: &str) -> Option<Header> {
    // JWT segments are unpadded base64url (RFC 7515 §2): padding or `+`/`/` is not a header.
    let json = URL_SAFE_NO_PAD.decode(token.split('.').next()?).ok()?;
    serde_json::from_slice::<Header>(&json).ok()
}

/// Signs tokens: the `token` command's, the local server's development tokens, and tests'.
#[derive(Clone)]
pub struct TokenSigner {
    key: EncodingKey,
    alg: Algorithm,
    /// The `kid` header of every token signed, when set.
    kid: Option<String>,
}

impl TokenSigner {
    /// A signer with an HS256 `secret`.
    pub fn hs256(secret: &[u8]) -> Self {
        Self {
            key: EncodingKey::from_secret(secret),
            alg: Algorithm::HS256,
            kid: None,
        }
    }

    /// A signer with an RSA private key (PEM, PKCS#1 or PKCS#8): RS256.
    pub fn rs256_pem(pem: &[u8]) -> Result<Self, KeyError> {
        Ok(Self {
            key: EncodingKey::from_rsa_pem(pem).map_err(|e| KeyError(e.to_string()))?,
            alg: Algorithm::RS256,
            kid: None,
        })
    }

    /// A signer with an EC P-256 private key (PEM, PKCS#8): ES256.
    pub fn es256_pem(pem: &[u8]) -> Result<Self, KeyError> {
        Ok(Self {
            key: EncodingKey::from_ec_pem(pem).map_err(|e| KeyError(e.to_string()))?,
            alg: Algorithm::ES256,
            kid: None,
        })
    }

    /// This signer, naming its key `kid` in every token's header.
    #[must_use]
    pub fn with_kid(mut self, kid: impl Into<String>) -> Self {
        self.kid = Some(kid.into());
        self
    }

    /// Signs `claims`.
    pub fn sign(&self, claims: &Claims) -> String {
        let mut header = jsonwebtoken::Header::new(self.alg);
        header.kid.clone_from(&self.kid);
        // Invariant: the key was loaded for this algorithm by the constructor, and the claims
        // serialize (plain strings and numbers), so signing cannot fail.
        jsonwebtoken::encode(&header, claims, &self.key).expect("signing with a loaded key")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW_MS: u64 = 1_800_000_000_000;
    const NOW: u64 = NOW_MS / 1000;

    fn claims() -> Claims {
        Claims {
            sub: Some("alice".into()),
            tid: Some("acme".into()),
            rooms: vec!["support-*".into(), "lobby".into()],
            exp: Some(NOW + 60),
            ..Claims::default()
        }
    }

    fn verifier(issuer: Option<&str>, audience: Option<&str>) -> TokenVerifier {
        TokenVerifier::new(&AuthConfig {
            key: VerifyKey::Hs256(b"secret".to_vec()),
            keys_by_kid: Vec::new(),
            issuer: issuer.map(Into::into),
            audience: audience.map(Into::into),
            leeway_secs: 0,
        })
        .unwrap()
    }

    fn sign(c: &Claims) -> String {
        TokenSigner::hs256(b"secret").sign(c)
    }

    #[test]
    fn accepts_a_good_token() {
        let id = verifier(None, None)
            .verify(&sign(&claims()), NOW_MS)
            .unwrap();
        assert_eq!((id.tenant.as_str(), id.user.as_str()), ("acme", "alice"));
        assert_eq!(id.expires_at_ms, (NOW + 60) * 1000);
        assert!(id.may_join("support-42") && id.may_join("lobby"));
        assert!(!id.may_join("lobby2") && !id.may_join("sales"));
    }

    #[test]
    fn rejects_each_bad_token_with_its_reason() {
        let v = verifier(Some("me"), Some("chat"));
        let good = Claims {
            iss: Some("me".into()),
            aud: Some("chat".into()),
            ..claims()
        };
        assert!(v.verify(&sign(&good), NOW_MS).is_ok());
        let arr = Claims {
            aud: Some(serde_json::json!(["x", "chat"])),
            ..good.clone()
        };
        assert!(v.verify(&sign(&arr), NOW_MS).is_ok());
        let cases: Vec<(Claims, AuthError)> = vec![
            (
                Claims {
                    exp: Some(NOW),
                    ..good.clone()
                },
                AuthError::Expired,
            ),
            (
                Claims {
                    exp: None,
                    ..good.clone()
                },
                AuthError::BadClaim("exp"),
            ),
            (
                Claims {
                    nbf: Some(NOW + 5),
                    ..good.clone()
                },
                AuthError::NotYetValid,
            ),
            (
                Claims {
                    iss: Some("other".into()),
                    ..good.clone()
                },
                AuthError::WrongIssuer,
            ),
            (
                Claims {
                    aud: None,
                    ..good.clone()
                },
                AuthError::WrongAudience,
            ),
            (
                Claims {
                    sub: None,
                    ..good.clone()
                },
                AuthError::BadClaim("sub"),
            ),
            (
                Claims {
                    tid: Some("a/b".into()),
                    ..good.clone()
                },
                AuthError::BadClaim("tid"),
            ),
            (
                Claims {
                    rooms: vec!["x/y".into()],
                    ..good.clone()
                },
                AuthError::BadClaim("rooms"),
            ),
        ];
        for (c, want) in cases {
            assert_eq!(v.verify(&sign(&c), NOW_MS), Err(want.clone()), "{c:?}");
        }
        let other_key = TokenSigner::hs256(b"other").sign(&good);
        assert_eq!(v.verify(&other_key, NOW_MS), Err(AuthError::BadSignature));
        assert_eq!(v.verify("", NOW_MS), Err(AuthError::Missing));
        assert_eq!(v.verify("a.b.c", NOW_MS), Err(AuthError::Malformed));
        assert_eq!(
            v.verify(&"a".repeat(MAX_TOKEN_BYTES + 1), NOW_MS),
            Err(AuthError::TooLarge)
        );
    }

    #[test]
    fn alg_none_and_other_algorithms_are_refused() {
        let b64 = |bytes: &[u8]| URL_SAFE_NO_PAD.encode(bytes);
        let header = b64(br#"{"alg":"none","typ":"JWT"}"#);
        let body = b64(serde_json::to_string(&claims()).unwrap().as_bytes());
        let none = format!("{header}.{body}.");
        assert_eq!(
            verifier(None, None).verify(&none, NOW_MS),
            Err(AuthError::WrongAlgorithm)
        );
        let no_alg = format!("{}.{body}.", b64(br#"{"typ":"JWT"}"#));
        assert_eq!(
            verifier(None, None).verify(&no_alg, NOW_MS),
            Err(AuthError::Malformed)
        );
        let hs384 = jsonwebtoken::encode(
            &jsonwebtoken::Header::new(Algorithm::HS384),
            &claims(),
            &EncodingKey::from_secret(b"secret"),
        )
        .unwrap();
        assert_eq!(
            verifier(None, None).verify(&hs384, NOW_MS),
            Err(AuthError::WrongAlgorithm)
        );
    }

    #[test]
    fn header_alg_reads_only_an_unpadded_base64url_json_header() {
        let none = URL_SAFE_NO_PAD.encode(br#"{"alg":"none"}"#);
        assert_eq!(
            header(&format!("{none}.x.y")).map(|h| h.alg).as_deref(),
            Some("none")
        );
        assert_eq!(header("not base64!.x.y").map(|h| h.alg), None);
        let padded = base64::engine::general_purpose::URL_SAFE.encode(br#"{"alg":"none"}"#);
        assert!(padded.ends_with('='), "the test needs padding");
        assert_eq!(header(&format!("{padded}.x.y")).map(|h| h.alg), None);
        let standard =
            base64::engine::general_purpose::STANDARD_NO_PAD.encode(br#"{"alg":"HS256??>"}"#);
        assert!(
            standard.contains(['+', '/']),
            "the test needs the standard alphabet"
        );
        assert_eq!(header(&format!("{standard}.x.y")).map(|h| h.alg), None);
        let no_alg = URL_SAFE_NO_PAD.encode(br#"{"typ":"JWT"}"#);
        assert_eq!(header(&format!("{no_alg}.x.y")).map(|h| h.alg), None);
    }

    #[test]
    fn leeway_tolerates_small_skew() {
        let v = TokenVerifier::new(&AuthConfig {
            key: VerifyKey::Hs256(b"secret".to_vec()),
            keys_by_kid: Vec::new(),
            issuer: None,
            audience: None,
            leeway_secs: 30,
        })
        .unwrap();
        let c = Claims {
            exp: Some(NOW - 10),
            nbf: Some(NOW + 10),
            ..claims()
        };
        assert!(v.verify(&sign(&c), NOW_MS).is_ok());
    }

    #[test]
    fn the_kid_header_chooses_the_key() {
        let next = b"the-next-key-of-a-rotation-0123456789".to_vec();
        let v = TokenVerifier::new(&AuthConfig {
            key: VerifyKey::Hs256(b"secret".to_vec()),
            keys_by_kid: vec![("next".into(), VerifyKey::Hs256(next.clone()))],
            issuer: None,
            audience: None,
            leeway_secs: 0,
        })
        .unwrap();
        let by_next = TokenSigner::hs256(&next).with_kid("next");
        assert!(v.verify(&by_next.sign(&claims()), NOW_MS).is_ok());
        // Unknown kids fall back to the default key.
        let by_default = TokenSigner::hs256(b"secret").with_kid("old");
        assert!(v.verify(&by_default.sign(&claims()), NOW_MS).is_ok());
        assert!(v.verify(&sign(&claims()), NOW_MS).is_ok());
        // A key never verifies another kid's tokens.
        let wrong = TokenSigner::hs256(b"secret").with_kid("next");
        assert_eq!(
            v.verify(&wrong.sign(&claims()), NOW_MS),
            Err(AuthError::BadSignature)
        );
        let wrong = TokenSigner::hs256(&next);
        assert_eq!(
            v.verify(&wrong.sign(&claims()), NOW_MS),
            Err(AuthError::BadSignature)
        );
    }
}
