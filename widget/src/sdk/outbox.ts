// Messages not yet acknowledged, kept in storage (localStorage in a browser) so they survive a
// page reload and are resent with the same client id: the server stores an id once per
// (room, user), so a resend can never double a message. Pure over an injected storage
// (test/unit/outbox.test.js).

import type { OutboxEntry } from './types.js';

const MAX_ENTRIES = 200;

/** What the outbox needs of a storage (localStorage has it). */
export interface OutboxStorage {
  getItem(key: string): string | null;
  setItem(key: string, value: string): void;
  removeItem?(key: string): void;
}

export class Outbox {
  storage: OutboxStorage | null;
  key: string;
  /** id → entry */
  entries = new Map<string, OutboxEntry>();

  /**
   * @param storage  anything with getItem/setItem (null: memory only)
   * @param key      storage key
   */
  constructor(storage: OutboxStorage | null, key: string) {
    this.storage = storage;
    this.key = key;
    this.load();
  }

  load(): void {
    let saved: unknown = [];
    try {
      saved = JSON.parse(this.storage?.getItem(this.key) || '[]');
    } catch {
      saved = [];
    }
    if (!Array.isArray(saved)) return;
    for (const e of saved as OutboxEntry[]) {
      if (e && typeof e.id === 'string' && typeof e.room === 'string' && typeof e.body === 'string') {
        // After a reload nothing is in flight: everything unacknowledged is pending again
        // (permanent failures stay failed until the user retries).
        this.entries.set(e.id, { ...e, status: e.permanent ? 'failed' : 'pending', sentOn: undefined });
      }
    }
  }

  save(): void {
    if (!this.storage) return;
    const list = [...this.entries.values()].slice(-MAX_ENTRIES).map(({ sentOn, timer, ...keep }) => keep);
    try {
      if (list.length) this.storage.setItem(this.key, JSON.stringify(list));
      else this.storage.removeItem?.(this.key);
    } catch {
      // Storage full or disabled: the outbox still works for this page's lifetime.
    }
  }

  add(entry: Pick<OutboxEntry, 'id' | 'room' | 'body' | 'meta' | 'attachments' | 'reply_to' | 'user'>): OutboxEntry {
    const e: OutboxEntry = { status: 'pending', attempts: 0, createdAt: Date.now(), ...entry };
    this.entries.set(entry.id, e);
    this.save();
    return e;
  }

  get(id: string): OutboxEntry | undefined {
    return this.entries.get(id);
  }

  update(id: string, patch: Partial<OutboxEntry>): OutboxEntry | undefined {
    const e = this.entries.get(id);
    if (!e) return undefined;
    Object.assign(e, patch);
    this.save();
    return e;
  }

  /** Removes an acknowledged entry; returns it. */
  remove(id: string): OutboxEntry | undefined {
    const e = this.entries.get(id);
    if (e) {
      this.entries.delete(id);
      this.save();
    }
    return e;
  }

  /** Entries of `room` that `user` may send (entries of another user are never sent as this one). */
  forRoom(room: string, user: string | null | undefined): OutboxEntry[] {
    return [...this.entries.values()].filter((e) => e.room === room && (e.user == null || user == null || e.user === user));
  }
}

// ULIDs: 48-bit time + 80 random bits in Crockford base32: unique, sortable client ids.
const B32 = '0123456789ABCDEFGHJKMNPQRSTVWXYZ';

export function ulid(now: number = Date.now(), randomBytes: (n: number) => Uint8Array = defaultRandomBytes): string {
  let t = now;
  let time = '';
  for (let i = 0; i < 10; i++) {
    time = B32[t % 32] + time;
    t = Math.floor(t / 32);
  }
  const bytes = randomBytes(16);
  let rand = '';
  for (let i = 0; i < 16; i++) rand += B32[bytes[i] % 32];
  return time + rand;
}

function defaultRandomBytes(n: number): Uint8Array {
  const a = new Uint8Array(n);
  globalThis.crypto.getRandomValues(a);
  return a;
}
