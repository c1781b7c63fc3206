// Download links of attachments (`GET /rooms/{room}/attachments/{id}`, members only): each kept
// until shortly before it expires, so rendering a message again, or many viewers of one image,
// ask the server once per link lifetime.

import type { RoomcastClient } from './client.js';
import { getJson, safeUrl, apiError } from './http.js';

/** A link is fetched again this long before its expiry, so one handed out still works when used. */
const EXPIRY_MARGIN_MS = 30000;

/** A download link of an attachment. */
export interface DownloadLink {
  id: string;
  url: string;
  inline: boolean;
  expires_at: number;
}

interface CachedLink {
  promise?: Promise<DownloadLink>;
  expiresAt: number;
}

export class Downloads {
  client: RoomcastClient;
  /** `room\0id` → the link's promise and expiry */
  cache = new Map<string, CachedLink>();

  constructor(client: RoomcastClient) {
    this.client = client;
  }

  /**
   * `{id, url, inline, expires_at}` for attachment `id` of `room`, `url` absolute and http(s).
   * Rejects with the server's code (FORBIDDEN for a room not granted, NOT_FOUND).
   */
  link(room: string, id: string): Promise<DownloadLink> {
    const key = `${room}\u0000${id}`;
    const held = this.cache.get(key);
    if (held?.promise && held.expiresAt - EXPIRY_MARGIN_MS > this.client.now()) return held.promise;
    const entry: CachedLink = { expiresAt: Infinity };
    const promise = getJson<DownloadLink>(this.client, `/rooms/${encodeURIComponent(room)}/attachments/${encodeURIComponent(id)}`)
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
    entry.promise = promise;
    this.cache.set(key, entry);
    return promise;
  }
}
