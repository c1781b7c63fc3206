#!/usr/bin/env python3
"""Minting roomcast tokens in a Python backend, with PyJWT (requirements.txt pins it).

Your backend authenticates its user, decides what they may join, and hands the browser a
short-lived token; roomcast only verifies it (docs/deploy.md, "Production tokens"). Use
``mint_token`` behind your own token endpoint (the widget's ``data-token-url``), e.g. in Flask::

    @app.get("/api/chat-token")
    @login_required
    def chat_token():
        return {"token": mint_token(
            user=current_user.id, tenant=current_user.org_id,
            rooms=[f"support-{current_user.id}"], name=current_user.display_name,
            issuer=os.environ["ROOMCAST_JWT_ISSUER"],
            audience=os.environ["ROOMCAST_JWT_AUDIENCE"], key=hs256_from_env())}

Keys:

- HS256: the secret is the UTF-8 bytes of the string exactly as stored in ROOMCAST_JWT_SECRET
  (the value put in SSM / ``wrangler secret put`` / ``--jwt-secret``), leading and trailing
  white space removed. It is NOT base64-decoded, even when it came from
  ``openssl rand -base64 48``. At least 32 bytes.
- RS256: a PEM private key (PKCS#8 or PKCS#1, RSA 2048 bits or more); the deployment holds its
  public key.

Command line (prints the token)::

    ROOMCAST_JWT_SECRET=... python mint.py --user alice --tenant acme --rooms 'support-*' \\
      [--role user|agent|service] [--name Alice] [--ttl 3600] [--kid KID] \\
      [--issuer https://auth.example.com/] [--audience roomcast] [--private-key key.pem]

--issuer and --audience default to ROOMCAST_JWT_ISSUER and ROOMCAST_JWT_AUDIENCE;
--private-key (or ROOMCAST_JWT_PRIVATE_KEY_FILE) signs RS256 instead of HS256.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from typing import Optional, Sequence

import jwt

#: The shortest HS256 secret roomcast accepts, bytes.
MIN_SECRET_BYTES = 32


def hs256_from_env(env=os.environ) -> tuple[str, bytes]:
    """The HS256 key from ROOMCAST_JWT_SECRET: the string's own bytes, trimmed, never decoded."""
    secret = env.get("ROOMCAST_JWT_SECRET", "").strip().encode("utf-8")
    if len(secret) < MIN_SECRET_BYTES:
        raise ValueError(
            f"ROOMCAST_JWT_SECRET must hold at least {MIN_SECRET_BYTES} bytes "
            f"(it has {len(secret)})"
        )
    return ("HS256", secret)


def rs256_from_file(path: str) -> tuple[str, bytes]:
    """The RS256 key from a PEM private key file."""
    with open(path, "rb") as f:
        return ("RS256", f.read())


def mint_token(
    *,
    user: str,
    tenant: str,
    rooms: Sequence[str],
    key: tuple[str, bytes],
    role: str = "user",
    name: Optional[str] = None,
    ttl_seconds: int = 3600,
    issuer: Optional[str] = None,
    audience: Optional[str] = None,
    kid: Optional[str] = None,
) -> str:
    """A signed roomcast token.

    ``user`` (``sub``) and ``tenant`` (``tid``) are 1-128 of A-Z a-z 0-9 _ - . : @; ``rooms``
    are grants (``support-*`` grants a prefix); ``issuer`` and ``audience`` are the deployment's
    jwt_issuer and jwt_audience; ``kid`` names which of its keys verifies the token (rotation);
    ``key`` comes from :func:`hs256_from_env` or :func:`rs256_from_file`.
    """
    now = int(time.time())
    claims = {
        "sub": user,
        "tid": tenant,
        "rooms": list(rooms),
        "role": role,
        "iat": now,
        "exp": now + ttl_seconds,
    }
    # No `nbf`: a backend clock a little ahead of the deployment's would make fresh tokens
    # "not yet valid".
    if name:
        claims["name"] = name
    if issuer:
        claims["iss"] = issuer
    if audience:
        claims["aud"] = audience
    alg, secret = key
    headers = {"kid": kid} if kid else None
    return jwt.encode(claims, secret, algorithm=alg, headers=headers)


def main(argv: Sequence[str]) -> int:
    p = argparse.ArgumentParser(description="Print a roomcast token.")
    p.add_argument("--user", required=True)
    p.add_argument("--tenant", required=True)
    p.add_argument("--rooms", required=True, help="comma-separated grants, e.g. 'support-*'")
    p.add_argument("--role", default="user", choices=["user", "agent", "service"])
    p.add_argument("--name")
    p.add_argument("--ttl", type=int, default=3600, help="lifetime, seconds")
    p.add_argument("--issuer", default=os.environ.get("ROOMCAST_JWT_ISSUER"))
    p.add_argument("--audience", default=os.environ.get("ROOMCAST_JWT_AUDIENCE"))
    p.add_argument("--kid")
    p.add_argument("--private-key", default=os.environ.get("ROOMCAST_JWT_PRIVATE_KEY_FILE"))
    a = p.parse_args(argv)
    if a.ttl <= 0:
        p.error("--ttl must be positive")
    try:
        key = rs256_from_file(a.private_key) if a.private_key else hs256_from_env()
    except (OSError, ValueError) as e:
        print(f"mint.py: {e}", file=sys.stderr)
        return 2
    print(
        mint_token(
            user=a.user,
            tenant=a.tenant,
            rooms=[r for r in a.rooms.split(",") if r],
            key=key,
            role=a.role,
            name=a.name,
            ttl_seconds=a.ttl,
            issuer=a.issuer,
            audience=a.audience,
            kid=a.kid,
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
