// Download links of attachments (`GET /rooms/{room}/attachments/{id}`, members only): each kept
// until shortly before it expires, so rendering a message again, or many viewers of one image,
// ask the server once per link lifetime.

import { getJson, safeUrl, apiError } from './http.js';

/** A link is fetched again this long before its expiry, so one handed out still works when used. */
const EXPIRY_MARGIN_MS = 30000;

export class Downloads {
  constructor(client) {
    this.client = client;
    /** `room\0id` → {promise, expiresAt} */
    this.cache = new Map();
  }

  /**
   * `{id, url, inline, expires_at}` for attachment `id` of `room`, `url` absolute and http(s).
   * Rejects with the server's code (FORBIDDEN for a room not granted, NOT_FOUND).
   */
  link(room, id) {
    const key = `${room}\u0000${id}`;
    const held = this.cache.get(key);
    if (held && held.expiresAt - EXPIRY_MARGIN_MS > this.client.now()) return held.promise;
    const entry = { expiresAt: Infinity };
    entry.promise = getJson(this.client, `/rooms/${encodeURIComponent(room)}/attachments/${encodeURIComponent(id)}`)
      .then((l) => {
        const url = safeUrl(l.url, this.client.httpUrl);
        if (!url) throw apiError('INVALID', 'the download link is not http(s)');
        entry.expiresAt = Number(l.expires_at) || 0;
        return { ...l, url };
      })
      .catch((e) => {
        // A refusal or failure is not kept: the next render asks again.
        if (this.cache.get(key) === entry) this.cache.delete(key);
        throw e;
      });
    this.cache.set(key, entry);
    return entry.promise;
  }
}
