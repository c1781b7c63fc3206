import test from 'node:test';
import assert from 'node:assert/strict';
import { Outbox, ulid } from '../../src/sdk/outbox.js';

class MemoryStorage {
  constructor() {
    this.map = new Map();
  }
  getItem(k) {
    return this.map.has(k) ? this.map.get(k) : null;
  }
  setItem(k, v) {
    this.map.set(k, String(v));
  }
  removeItem(k) {
    this.map.delete(k);
  }
}

test('unsent messages survive a reload with their ids, pending again', () => {
  const storage = new MemoryStorage();
  const a = new Outbox(storage, 'k');
  a.add({ id: 'A', room: 'r', body: 'one', user: 'v' });
  a.add({ id: 'B', room: 'r', body: 'two', user: 'v' });
  a.update('A', { status: 'sending' });
  a.add({ id: 'C', room: 'r', body: 'bad', user: 'v' });
  a.update('C', { status: 'failed', permanent: true });
  const b = new Outbox(storage, 'k');
  assert.deepEqual([...b.entries.keys()], ['A', 'B', 'C']);
  assert.deepEqual([...b.entries.values()].map((e) => e.status), ['pending', 'pending', 'failed']);
  b.remove('A');
  b.remove('B');
  b.remove('C');
  assert.equal(storage.getItem('k'), null);
  assert.equal(new Outbox(storage, 'k').entries.size, 0);
});

test("another user's entries are never offered for sending", () => {
  const o = new Outbox(new MemoryStorage(), 'k');
  o.add({ id: 'A', room: 'r', body: 'x', user: 'alice' });
  o.add({ id: 'B', room: 'r', body: 'y', user: 'bob' });
  o.add({ id: 'C', room: 's', body: 'z', user: 'bob' });
  o.add({ id: 'D', room: 'r', body: 'w' });
  assert.deepEqual(o.forRoom('r', 'bob').map((e) => e.id), ['B', 'D']);
});

test('corrupt or unavailable storage does not break the outbox', () => {
  const s = new MemoryStorage();
  s.setItem('k', '{not json');
  assert.equal(new Outbox(s, 'k').entries.size, 0);
  const throwing = { getItem() { throw new Error('denied'); }, setItem() { throw new Error('quota'); } };
  const o = new Outbox(throwing, 'k');
  o.add({ id: 'A', room: 'r', body: 'x' });
  assert.equal(o.get('A').body, 'x');
  const none = new Outbox(null, 'k');
  none.add({ id: 'A', room: 'r', body: 'x' });
  assert.equal(none.entries.size, 1);
});

test('ulids are 26 Crockford characters, time-sortable and unique', () => {
  const a = ulid(1_700_000_000_000);
  const b = ulid(1_700_000_000_001);
  assert.match(a, /^[0-9A-HJKMNP-TV-Z]{26}$/);
  assert.ok(a.slice(0, 10) < b.slice(0, 10));
  const ids = new Set(Array.from({ length: 1000 }, () => ulid()));
  assert.equal(ids.size, 1000);
});
