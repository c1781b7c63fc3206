#!/usr/bin/env node
// Minting roomcast tokens in a Node backend, with jsonwebtoken (package.json pins it).
//
// Your backend authenticates its user, decides what they may join, and hands the browser a
// short-lived token; roomcast only verifies it (docs/deploy.md, "Production tokens"). Use
// `mintToken` behind your own token endpoint (the widget's `data-token-url`), e.g.
//
//   app.get('/api/chat-token', requireLogin, (req, res) => res.json({ token: mintToken({
//     user: req.user.id, tenant: req.user.orgId, rooms: [`support-${req.user.id}`],
//     name: req.user.displayName, issuer: process.env.ROOMCAST_JWT_ISSUER,
//     audience: process.env.ROOMCAST_JWT_AUDIENCE, key: hs256FromEnv() }) }));
//
// Keys:
// - HS256: the secret is the UTF-8 bytes of the string exactly as stored in ROOMCAST_JWT_SECRET
//   (the value put in SSM / `wrangler secret put` / `--jwt-secret`), leading and trailing white
//   space removed. It is NOT base64-decoded, even when it came from `openssl rand -base64 48`.
//   At least 32 bytes.
// - RS256: a PEM private key (PKCS#8 or PKCS#1, RSA 2048 bits or more); the deployment holds
//   its public key.
//
// Command line (prints the token):
//   ROOMCAST_JWT_SECRET=... node mint.mjs --user alice --tenant acme --rooms 'support-*' \
//     [--role user|agent|service] [--name Alice] [--ttl 3600] [--kid KID] \
//     [--issuer https://auth.example.com/] [--audience roomcast] [--private-key key.pem]
// --issuer and --audience default to ROOMCAST_JWT_ISSUER and ROOMCAST_JWT_AUDIENCE;
// --private-key (or ROOMCAST_JWT_PRIVATE_KEY_FILE) signs RS256 instead of HS256.

import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { fileURLToPath } from 'node:url';
import jwt from 'jsonwebtoken';

/** The shortest HS256 secret roomcast accepts, bytes. */
const MIN_SECRET_BYTES = 32;

/**
 * The HS256 key from ROOMCAST_JWT_SECRET: the string's own bytes, trimmed, never decoded.
 * @returns {{alg: 'HS256', secret: Buffer}}
 */
export function hs256FromEnv(env = process.env) {
  const secret = Buffer.from((env.ROOMCAST_JWT_SECRET ?? '').trim(), 'utf8');
  if (secret.length < MIN_SECRET_BYTES) {
    throw new Error(
      `ROOMCAST_JWT_SECRET must hold at least ${MIN_SECRET_BYTES} bytes (it has ${secret.length})`,
    );
  }
  return { alg: 'HS256', secret };
}

/**
 * The RS256 key from a PEM private key file.
 * @returns {{alg: 'RS256', secret: string}}
 */
export function rs256FromFile(path) {
  return { alg: 'RS256', secret: readFileSync(path, 'utf8') };
}

/**
 * A signed roomcast token.
 * @param {object} o
 * @param {string} o.user `sub`: the user id (1-128 of A-Z a-z 0-9 _ - . : @)
 * @param {string} o.tenant `tid`: the tenant id (same characters)
 * @param {string[]} o.rooms room grants; `support-*` grants a prefix
 * @param {'user'|'agent'|'service'} [o.role] default `user`
 * @param {string} [o.name] display name
 * @param {number} [o.ttlSeconds] lifetime, default one hour
 * @param {string} [o.issuer] `iss`: the deployment's jwt_issuer
 * @param {string} [o.audience] `aud`: the deployment's jwt_audience
 * @param {string} [o.kid] `kid` header: which of the deployment's keys verifies it (rotation)
 * @param {{alg: 'HS256'|'RS256', secret: Buffer|string}} o.key from hs256FromEnv / rs256FromFile
 */
export function mintToken({ user, tenant, rooms, role = 'user', name, ttlSeconds = 3600, issuer, audience, kid, key }) {
  const now = Math.floor(Date.now() / 1000);
  const claims = { sub: user, tid: tenant, rooms, role, iat: now, exp: now + ttlSeconds };
  if (name) claims.name = name;
  if (issuer) claims.iss = issuer;
  if (audience) claims.aud = audience;
  // No `nbf`: a backend clock a little ahead of the deployment's would make fresh tokens
  // "not yet valid".
  const options = { algorithm: key.alg };
  if (kid) options.keyid = kid;
  return jwt.sign(claims, key.secret, options);
}

function main(argv) {
  const { values } = parseArgs({
    args: argv,
    options: {
      user: { type: 'string' },
      tenant: { type: 'string' },
      rooms: { type: 'string' },
      role: { type: 'string', default: 'user' },
      name: { type: 'string' },
      ttl: { type: 'string', default: '3600' },
      issuer: { type: 'string', default: process.env.ROOMCAST_JWT_ISSUER },
      audience: { type: 'string', default: process.env.ROOMCAST_JWT_AUDIENCE },
      kid: { type: 'string' },
      'private-key': { type: 'string', default: process.env.ROOMCAST_JWT_PRIVATE_KEY_FILE },
    },
  });
  if (!values.user || !values.tenant || !values.rooms) {
    throw new Error('usage: node mint.mjs --user U --tenant T --rooms R[,R…] [--role user|agent|service] ' +
      '[--name N] [--ttl SECS] [--issuer I] [--audience A] [--kid K] [--private-key FILE]');
  }
  const ttlSeconds = Number(values.ttl);
  if (!Number.isInteger(ttlSeconds) || ttlSeconds <= 0) throw new Error(`--ttl ${values.ttl}: a positive number of seconds`);
  const key = values['private-key'] ? rs256FromFile(values['private-key']) : hs256FromEnv();
  const token = mintToken({
    user: values.user,
    tenant: values.tenant,
    rooms: values.rooms.split(',').filter(Boolean),
    role: values.role,
    name: values.name,
    ttlSeconds,
    issuer: values.issuer,
    audience: values.audience,
    kid: values.kid,
    key,
  });
  process.stdout.write(`${token}\n`);
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  try {
    main(process.argv.slice(2));
  } catch (e) {
    process.stderr.write(`mint.mjs: ${e.message}\n`);
    process.exit(2);
  }
}
