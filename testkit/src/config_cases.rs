//! One table of configurations every deployment's loader is fed, so a parity test per
//! deployment can assert its loader answers exactly what the core's `Settings::from_lookup`
//! answers — the same settings, or the same error — and `shared/tests/config.rs` can assert
//! what the core answers.

use std::collections::HashMap;

use roomcast_core::config::names;

/// An ECDSA P-256 public key (PEM) for the cases that need a loadable public key.
pub const EC_PUBLIC_KEY: &str = "-----BEGIN PUBLIC KEY-----
MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEx8T9XhREHK582FU9sw4T/1zC978d
sm9j/BwjKsNHHSNR95usFvSqGCSxekybYg4byHKQ3vnPs9WVrDNbSnlxtA==
-----END PUBLIC KEY-----";

/// An HS256 secret long enough to be accepted.
pub const SECRET: &str = "config-cases-hs256-secret-0123456789abcdef";

/// The cases: each a set of (setting name, value).
pub const CASES: &[&[(&str, &str)]] = &[
    &[],
    // 31 bytes: one short of an HS256 key's minimum.
    &[(names::JWT_SECRET, "a-thirty-one-byte-secret-000000")],
    &[(names::JWT_SECRET, SECRET)],
    &[(names::JWT_SECRET, "  ")],
    &[
        (names::JWT_SECRET, SECRET),
        (names::JWT_PUBLIC_KEY, EC_PUBLIC_KEY),
    ],
    &[(names::JWT_SECRET, SECRET), (names::JWT_ALG, "HS512")],
    &[(names::JWT_SECRET, SECRET), (names::JWT_ALG, "RS256")],
    &[
        (names::JWT_PUBLIC_KEY, EC_PUBLIC_KEY),
        (names::JWT_ALG, "es256"),
    ],
    &[
        (names::JWT_PUBLIC_KEY, EC_PUBLIC_KEY),
        (names::JWT_ALG, "HS256"),
    ],
    // No algorithm with a public key: RS256, which this EC key does not load as.
    &[(names::JWT_PUBLIC_KEY, EC_PUBLIC_KEY)],
    &[
        (names::JWT_PUBLIC_KEY, "not a key"),
        (names::JWT_ALG, "ES256"),
    ],
    &[
        (names::JWT_SECRET, SECRET),
        (names::JWT_ISSUER, "https://issuer"),
        (names::JWT_AUDIENCE, " chat "),
        (names::JWT_LEEWAY_SECS, "30"),
    ],
    &[(names::JWT_SECRET, SECRET), (names::JWT_LEEWAY_SECS, "-1")],
    &[
        (names::JWT_SECRET, SECRET),
        (names::RATE_PER_SEC, "50"),
        (names::RATE_BURST, "500"),
    ],
    &[(names::JWT_SECRET, SECRET), (names::RATE_BURST, "-1")],
    &[(names::JWT_SECRET, SECRET), (names::RATE_PER_SEC, "0")],
    &[
        (names::JWT_SECRET, SECRET),
        (names::RATE_BURST, "99999999999"),
    ],
    &[
        (names::JWT_SECRET, SECRET),
        (names::MAX_CONNECTIONS_PER_USER, "3"),
    ],
    &[
        (names::JWT_SECRET, SECRET),
        (names::MAX_CONNECTIONS_PER_USER, "x"),
    ],
    &[
        (names::JWT_SECRET, SECRET),
        (names::PRESENCE_MAX_CONNECTIONS, "5"),
    ],
    &[
        (names::JWT_SECRET, SECRET),
        (names::PRESENCE_MAX_CONNECTIONS, "0"),
    ],
    &[
        (names::JWT_SECRET, SECRET),
        (names::IDLE_TIMEOUT_SECS, "2"),
        (names::MAX_CONNECTION_SECS, "4"),
    ],
    &[(names::JWT_SECRET, SECRET), (names::IDLE_TIMEOUT_SECS, "0")],
    &[
        (names::JWT_SECRET, SECRET),
        (names::MAX_CONNECTION_SECS, "1.5"),
    ],
    &[(names::JWT_SECRET, SECRET), (names::LOG, "DEBUG")],
    &[(names::JWT_SECRET, SECRET), (names::LOG, "verbose")],
];

/// A lookup answering the case's values (and nothing else).
pub fn lookup(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> + use<> {
    let map: HashMap<String, String> = pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    move |name| map.get(name).cloned()
}
