// Messages not yet acknowledged, kept in storage (localStorage in a browser) so they survive a
// page reload and are resent with the same client id: the server stores an id once per
// (room, user), so a resend can never double a message. Pure over an injected storage
// (test/unit/outbox.test.js).

const MAX_ENTRIES = 200;

export class Outbox {
  /**
   * @param {Storage|null} storage  anything with getItem/setItem (null: memory only)
   * @param {string} key            storage key
   */
  constructor(storage, key) {
    this.storage = storage;
    this.key = key;
    /** @type {Map<string, object>} id → {id, room, body, meta, user, createdAt, status, attempts, error} */
    this.entries = new Map();
    this.load();
  }

  load() {
    let saved = [];
    try {
      saved = JSON.parse(this.storage?.getItem(this.key) || '[]');
    } catch {
      saved = [];
    }
    if (!Array.isArray(saved)) return;
    for (const e of saved) {
      if (e && typeof e.id === 'string' && typeof e.room === 'string' && typeof e.body === 'string') {
        // After a reload nothing is in flight: everything unacknowledged is pending again
        // (permanent failures stay failed until the user retries).
        this.entries.set(e.id, { ...e, status: e.permanent ? 'failed' : 'pending', sentOn: undefined });
      }
    }
  }

  save() {
    if (!this.storage) return;
    const list = [...this.entries.values()].slice(-MAX_ENTRIES).map(({ sentOn, timer, ...keep }) => keep);
    try {
      if (list.length) this.storage.setItem(this.key, JSON.stringify(list));
      else this.storage.removeItem?.(this.key);
    } catch {
      // Storage full or disabled: the outbox still works for this page's lifetime.
    }
  }

  add(entry) {
    this.entries.set(entry.id, { status: 'pending', attempts: 0, createdAt: Date.now(), ...entry });
    this.save();
    return this.entries.get(entry.id);
  }

  get(id) {
    return this.entries.get(id);
  }

  update(id, patch) {
    const e = this.entries.get(id);
    if (!e) return undefined;
    Object.assign(e, patch);
    this.save();
    return e;
  }

  /** Removes an acknowledged entry; returns it. */
  remove(id) {
    const e = this.entries.get(id);
    if (e) {
      this.entries.delete(id);
      this.save();
    }
    return e;
  }

  /** Entries of `room` that `user` may send (entries of another user are never sent as this one). */
  forRoom(room, user) {
    return [...this.entries.values()].filter((e) => e.room === room && (e.user == null || user == null || e.user === user));
  }
}

// ULIDs: 48-bit time + 80 random bits in Crockford base32: unique, sortable client ids.
const B32 = '0123456789ABCDEFGHJKMNPQRSTVWXYZ';

export function ulid(now = Date.now(), randomBytes = defaultRandomBytes) {
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

function defaultRandomBytes(n) {
  const a = new Uint8Array(n);
  globalThis.crypto.getRandomValues(a);
  return a;
}
