// Publishable-key embedding (sdk/embed.js): the visitor id, kept per key, and the token source
// over a scripted fetch: the answer's token once, a new one when the client asks again or the
// answer is close to expiring, refusals with the server's code and the HTTP status.
import test from 'node:test';
import assert from 'node:assert/strict';
import { embedTokens, newVisitorId, visitorFor } from '../../src/sdk/embed.js';

function memoryStorage() {
  const m = new Map();
  return { getItem: (k) => m.get(k) ?? null, setItem: (k, v) => m.set(k, String(v)), m };
}

test('a visitor id is v_ and 128 random bits in base64url (22 characters)', () => {
  const id = newVisitorId();
  assert.match(id, /^v_[A-Za-z0-9_-]{22}$/);
  assert.notEqual(newVisitorId(), id);
  assert.equal(newVisitorId((a) => a.fill(255)), `v_${'_'.repeat(21)}w`);
  assert.equal(newVisitorId((a) => a.fill(0)), `v_${'A'.repeat(22)}`);
});

test('the visitor id is kept per key; a malformed kept value is replaced', () => {
  const s = memoryStorage();
  const a = visitorFor('pk_a', s);
  assert.equal(visitorFor('pk_a', s), a);
  assert.notEqual(visitorFor('pk_b', s), a);
  assert.equal(s.m.get('roomcast:visitor:pk_a'), a);
  s.setItem('roomcast:visitor:pk_a', 'short');
  assert.match(visitorFor('pk_a', s), /^v_[\w-]{22}$/);
  assert.match(visitorFor('pk_a', null), /^v_[\w-]{22}$/, 'no storage: a new visitor');
});

function scriptedFetch(answers) {
  const calls = [];
  const fetch = async (url, init) => {
    calls.push({ url, init, body: JSON.parse(init.body) });
    const a = answers.shift();
    if (a instanceof Error) throw a;
    return { ok: a.status < 400, status: a.status, json: async () => a.body };
  };
  return { fetch, calls };
}

test('load posts {key, visitor, name}; token() uses the loaded answer once, then asks again', async () => {
  let now = 1_000_000;
  const answer = (n, ttl = 3600_000) => ({ status: 200, body: { token: `t${n}`, visitor: 'v', room: 'support-v', expires_at: now + ttl, desk: { open: true, agents_online: 1 } } });
  const f = scriptedFetch([answer(1), answer(2), answer(3, 60_000), answer(4)]);
  const t = embedTokens({ httpUrl: 'http://chat.test', key: 'pk_k', name: 'Zoë', storage: memoryStorage(), fetch: f.fetch, now: () => now });
  const a = await t.load();
  assert.equal(a.room, 'support-v');
  assert.equal(f.calls[0].url, 'http://chat.test/embed/token');
  assert.equal(f.calls[0].init.method, 'POST');
  assert.deepEqual(f.calls[0].body, { key: 'pk_k', visitor: t.visitor, name: 'Zoë' });
  assert.equal(await t.token(), 't1', 'the loaded token, not another request');
  assert.equal(f.calls.length, 1);
  assert.equal(await t.token(), 't2', 'asked again: a fresh one');
  await t.load(); // t3 expires in a minute: not used
  assert.equal(await t.token(), 't4');
  assert.equal(f.calls.length, 4);
  assert.equal(f.calls[3].body.visitor, t.visitor, 'the same visitor every time');
});

test('refusals carry the server code and the HTTP status; network failures NETWORK', async () => {
  const f = scriptedFetch([
    { status: 403, body: { code: 'FORBIDDEN', message: "this page's origin is not allowed to use the key" } },
    { status: 502, body: null },
    new TypeError('Failed to fetch'),
  ]);
  const t = embedTokens({ httpUrl: 'http://chat.test', key: 'pk_k', storage: null, fetch: f.fetch });
  await assert.rejects(t.load(), { code: 'FORBIDDEN', status: 403, message: "this page's origin is not allowed to use the key" });
  await assert.rejects(t.token(), { code: 'UNAVAILABLE', status: 502 });
  await assert.rejects(t.token(), { code: 'NETWORK' });
  assert.equal('name' in f.calls[0].body, false, 'no name: none sent');
});
