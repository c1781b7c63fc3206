// Embedding with a publishable key (protocol.md §15, "Embedding with a publishable key"): a page
// with no backend to sign tokens gets short-lived visitor tokens from `POST /embed/token`, for a
// visitor id the browser makes and keeps, together with what the desk shows before the first
// message (team, greeting, reply time, avatars, whether anyone is there to answer).

import { apiError } from './http.js';

/** What `visitorFor` needs of a storage (localStorage has it). */
export interface VisitorStorage {
  getItem(key: string): string | null;
  setItem(key: string, value: string): void;
}

/** The answer of `POST /embed/token`. */
export interface EmbedAnswer {
  token: string;
  visitor: string;
  room: string;
  expires_at: number;
  desk?: Record<string, unknown>;
  [field: string]: unknown;
}

/** A visitor id: 128 random bits, base64url, prefixed `v_` (24 characters). */
export function newVisitorId(getRandomValues: (a: Uint8Array<ArrayBuffer>) => Uint8Array<ArrayBuffer> = (a) => crypto.getRandomValues(a)): string {
  const bytes = getRandomValues(new Uint8Array(16));
  return `v_${btoa(String.fromCharCode(...bytes)).replace(/\+/g, '-').replace(/\//g, '_').replace(/=+$/, '')}`;
}

/**
 * The visitor id for `key`, made once and kept in `storage` ({getItem, setItem}, e.g.
 * localStorage; it must not throw) under the key's name: the id is the visitor's credential for
 * their room, so it stays in this browser. Without storage every page load is a new visitor.
 */
export function visitorFor(key: string, storage?: VisitorStorage | null): string {
  const name = `roomcast:visitor:${key}`;
  let id = storage?.getItem(name);
  if (!id || !/^v_[\w-]{22}$/.test(id)) {
    id = newVisitorId();
    storage?.setItem(name, id);
  }
  return id;
}

/**
 * Visitor tokens for a publishable key.
 * - `load()` asks `{httpUrl}/embed/token` and resolves with the answer `{token, visitor, room,
 *   expires_at, desk}`; it rejects with an apiError carrying the server's `code` and the HTTP
 *   `status` (403 FORBIDDEN: the key, the page's origin or a blocked visitor; none: the network).
 * - `token()` is the client's token callback: the answer already loaded while it has more than
 *   2 minutes left, otherwise a new one (the client asks only when it needs a fresh token, and
 *   replaces its connection before `expires_at`).
 */
export function embedTokens({
  httpUrl,
  key,
  name,
  storage,
  fetch = (...a) => globalThis.fetch(...a),
  now = Date.now,
}: {
  httpUrl: string;
  key: string;
  name?: string;
  storage?: VisitorStorage | null;
  fetch?: typeof globalThis.fetch;
  now?: () => number;
}): { visitor: string; load: () => Promise<EmbedAnswer>; token: () => Promise<string> } {
  const visitor = visitorFor(key, storage);
  let unused: EmbedAnswer | null = null;
  const load = async (): Promise<EmbedAnswer> => {
    const r = await fetch(`${httpUrl}/embed/token`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ key, visitor, name }) }).catch((e) => {
      throw apiError('NETWORK', (e as Error).message);
    });
    const body = (await r.json().catch(() => null)) || {};
    if (!r.ok) throw apiError(body.code || 'UNAVAILABLE', body.message, r.status);
    return (unused = body);
  };
  const token = async () => {
    const a = unused && unused.expires_at - now() > 120000 ? unused : await load();
    unused = null;
    return a.token;
  };
  return { visitor, load, token };
}
