// Getting the outbox's messages stored (outbox.js keeps them): each is sent once its room is
// joined, and again with the same id after every rejoin or rotation and on a refusal worth
// retrying, until its ack or the message itself comes back; without an ack in `failAfterMs` it
// shows as failed. The server stores an id once per (room, user): a resend never doubles it.

// Refusals worth sending the message again with the same id.
import type { RoomcastClient } from './client.js';
import type { Link } from './link.js';
import type { Room } from './room.js';
import type { ClientAction, OutboxEntry } from './types.js';

const TRANSIENT = new Set(['RATE_LIMITED', 'UNAVAILABLE', 'NOT_MEMBER']);

export class Delivery {
  client: RoomcastClient;

  constructor(client: RoomcastClient) {
    this.client = client;
  }

  /** Shows `e` as failed when no ack comes within `failAfterMs`. */
  arm(e: OutboxEntry): void {
    const c = this.client;
    clearTimeout(e.timer);
    if (e.status === 'failed') return;
    e.timer = setTimeout(() => {
      if (c.outbox.get(e.id) && e.status !== 'failed') {
        // Shown as failed; still resent automatically on the next (re)join.
        c.outbox.update(e.id, { status: 'failed' });
        c.changed(e.room);
      }
    }, c.opts.failAfterMs);
  }

  /** Sends `e` if its room is joined (and it is this user's: another user's waits for them). */
  flush(e: OutboxEntry): void {
    const c = this.client;
    const room = c.rooms.get(e.room);
    if (e.permanent || !room || !room.joined) return;
    if (e.user == null) e.user = c.user;
    if (e.user !== c.user) return;
    const link = c.link(e.room);
    const frame: Extract<ClientAction, { action: 'message' }> = { action: 'message', room: e.room, id: e.id, body: e.body };
    if (e.meta) frame.meta = e.meta;
    // The server knows the files by id; name, size and type are kept for showing the message.
    if (e.attachments) frame.attachments = e.attachments.map((a) => ({ id: a.id }));
    if (e.reply_to) frame.reply_to = e.reply_to;
    if (link.send(frame)) {
      e.attempts = (e.attempts || 0) + 1;
      if (e.status !== 'failed') e.status = 'sending';
      c.outbox.save();
    }
  }

  /** Sends every message of `room` not yet acknowledged. */
  flushRoom(room: Room): void {
    for (const e of this.client.outbox.forRoom(room.name, this.client.user)) this.flush(e);
  }

  /** Sends again everything unacknowledged in the joined rooms of `link`. */
  resendAll(link: Link): void {
    for (const room of link.rooms()) if (room.joined) this.flushRoom(room);
  }

  /** `link` went down: what was in flight on it is pending again. */
  linkDown(link: Link): void {
    const c = this.client;
    for (const e of c.outbox.entries.values()) {
      if (e.status === 'sending' && c.linkKey(e.room) === link.key) e.status = 'pending';
    }
  }

  /** Message `id` is stored (acknowledged, or seen in its room): it leaves the outbox. */
  stored(id: string): OutboxEntry | undefined {
    const e = this.client.outbox.remove(id);
    if (e) clearTimeout(e.timer);
    return e;
  }

  /** The server refused `e`: sent again shortly if the refusal is transient, else failed until retried. */
  refused(e: OutboxEntry, code: string): void {
    const c = this.client;
    if (TRANSIENT.has(code)) {
      e.status = 'pending';
      setTimeout(() => this.flush(e), 1000 + c.random() * 2000);
    } else {
      clearTimeout(e.timer);
      c.outbox.update(e.id, { status: 'failed', permanent: true, error: code });
    }
    c.changed(e.room);
  }
}
