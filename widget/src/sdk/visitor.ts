// The visitor's side of the support desk (protocol.md §15, "Visitors" and "Rating"): saying who
// they are, so agents can answer by email, and rating a closed conversation. Both go over the
// client's request API (requests.js): queued while the connection is down, sent once it is up.

import type { RoomcastClient } from './client.js';
import type { ClientAction, ServerFrame } from './types.js';

/**
 * `identify {name?, email?}` (role `user`), sent on `room`'s connection: resolves with the
 * `identified` reply (what agents now see), rejects with `{code}` (INVALID: no plausible email).
 */
export function identify(client: RoomcastClient, room: string, { name, email }: { name?: string; email?: string } = {}): Promise<ServerFrame> {
  const frame: Extract<ClientAction, { action: 'identify' }> = { action: 'identify' };
  if (name?.trim()) frame.name = name.trim();
  if (email?.trim()) frame.email = email.trim();
  return client.requests.send(client.link(room), frame);
}

/**
 * `rate {room, score 1..5, comment?}` once the conversation is closed: resolves with the `ack`
 * of the stored rating (`rating-{version}`; a repeat is answered with the first's), rejects with
 * `{code}` (CONFLICT: not closed). The ack carries no `ref`, so it settles the request here.
 */
export function rate(client: RoomcastClient, room: string, score: number, comment?: string): Promise<ServerFrame> {
  const off = client.on('ack', (f: Extract<ServerFrame, { type: 'ack' }>) => {
    if (f.room !== room || !String(f.id).startsWith('rating-')) return;
    for (const [ref, p] of client.requests.pending) if (p.frame.action === 'rate' && p.frame.room === room) client.requests.settle(ref, null, f);
  });
  const frame: Extract<ClientAction, { action: 'rate' }> = { action: 'rate', room, score };
  if (comment?.trim()) frame.comment = comment.trim();
  return client.request(frame).finally(off);
}
