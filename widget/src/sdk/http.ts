// The HTTP API next to the WebSocket (protocol.md §12): its base URL, the URLs it hands out
// (relative ones resolve against that base; only http(s) is ever used), and requests made with
// the client's Bearer token.

import type { RoomcastClient } from './client.js';

/** An Error carrying the protocol's `code` (and the HTTP `status` when there was one). */
export type ApiError = Error & { code: string; status?: number };

/**
 * The HTTP API's base URL for a WebSocket URL: the same host and path with `ws(s)` made
 * `http(s)` (the local server and the edge build serve both on one origin). AWS serves its HTTP
 * API elsewhere: pass `httpUrl` there.
 */
export function httpBase(wsUrl: string | URL): string {
  const u = new URL(String(wsUrl).split('{room}')[0]);
  u.protocol = u.protocol === 'wss:' ? 'https:' : 'http:';
  u.search = u.hash = '';
  return u.href.replace(/\/+$/, '');
}

/**
 * `url` as the server gave it, made absolute: a path is relative to the HTTP API's base (which
 * may have a path of its own, an API Gateway stage), so it is appended to it. Null unless the
 * result is http(s) (never `javascript:`, `data:`, `blob:`) or when it is protocol-relative.
 */
export function safeUrl(url: unknown, base: string): string | null {
  const s = String(url);
  if (s.startsWith('//')) return null;
  try {
    const u = new URL(/^[a-z][a-z0-9+.-]*:/i.test(s) ? s : `${base}${s.startsWith('/') ? '' : '/'}${s}`);
    return u.protocol === 'https:' || u.protocol === 'http:' ? u.href : null;
  } catch {
    return null;
  }
}

/** An {@link ApiError}. */
export function apiError(code: string, message?: string, status?: number): ApiError {
  return Object.assign(new Error(message || code), { code, status });
}

/**
 * `GET {base}{path}` with the Bearer token; the JSON answer, or an apiError with the server's
 * `{code, message}`. A 401 fetches a fresh token (when there is a callback) and asks once more.
 */
export async function getJson<T = Record<string, unknown>>(client: RoomcastClient, path: string): Promise<T> {
  for (let refresh = false; ; refresh = true) {
    const token = await client.getToken(refresh);
    let r: Response;
    try {
      r = await client.fetch(`${client.httpUrl}${path}`, { headers: { authorization: `Bearer ${token}` }, cache: 'no-store' });
    } catch (e) {
      throw apiError('NETWORK', (e as Error).message);
    }
    if (r.status === 401 && !refresh && client.tokenFn) continue;
    const body = await r.json().catch(() => ({}));
    if (!r.ok) throw apiError(body.code || 'UNAVAILABLE', body.message, r.status);
    return body;
  }
}
