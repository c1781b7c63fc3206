// The agents' requests (sdk/desk.js) against a scripted socket, and the console's words (console/format.js).
import test from 'node:test';
import assert from 'node:assert/strict';
import { RoomcastClient } from '../../src/sdk/client.js';
import { listConversations, setAvailability, setBlocked, transfer, unassign } from '../../src/sdk/desk.js';
import { agentText, isolate, preview, storedAvailability, titleWithCount, visitorLabel, waitingFor } from '../../src/console/format.js';

const b64 = (o) => Buffer.from(JSON.stringify(o)).toString('base64url');
const token = `${b64({ alg: 'HS256' })}.${b64({ sub: 'ann', role: 'agent', tid: 't', rooms: ['support-*', 'inbox'], exp: Math.floor(Date.now() / 1000) + 3600 })}.sig`;
const tick = (ms = 5) => new Promise((r) => setTimeout(r, ms));

class FakeWS {
  static last = null;
  constructor() {
    this.readyState = 0;
    this.sent = [];
    FakeWS.last = this;
  }
  send(text) {
    this.sent.push(JSON.parse(text));
  }
  close() {}
  open() {
    this.readyState = 1;
    this.onopen?.();
  }
  frame(f) {
    this.onmessage?.({ data: JSON.stringify(f) });
  }
  sentFor(action) {
    return this.sent.filter((f) => f.action === action);
  }
}

test('agent requests: sent with a ref (queued until connected), settled by their replies or errors', async () => {
  const c = new RoomcastClient({ url: 'ws://x/', token, WebSocket: FakeWS, storage: null, random: () => 0 });
  c.watchInbox();
  c.connect();
  await tick();
  const ws = FakeWS.last;
  const availability = setAvailability(c, { status: 'online', capacity: 2, muted: false });
  ws.open();
  const [a] = ws.sentFor('availability');
  assert.deepEqual({ ...a, ref: undefined }, { action: 'availability', status: 'online', capacity: 2, muted: false, ref: undefined });
  ws.frame({ type: 'agent', agent: { user: 'ann', status: 'online', capacity: 2, load: 0, muted: false }, ref: a.ref });
  assert.deepEqual(await availability, { user: 'ann', status: 'online', capacity: 2, load: 0, muted: false });

  const listed = listConversations(c, { query: 'zoë' });
  const [l] = ws.sentFor('conversations');
  assert.equal(l.query, 'zoë');
  assert.equal(l.filter, undefined, 'the default filter (open) is the desk’s');
  const item = { room: 'support-9', visitor: 'v9', name: 'Zoë', status: 'waiting', version: 1, waiting_since: 1, since: 1, unread: 1 };
  ws.frame({ type: 'conversations', items: [item], agents: [{ user: 'ann' }], ref: l.ref });
  assert.deepEqual(await listed, { items: [item], agents: [{ user: 'ann' }] });

  const moved = transfer(c, 'support-9', 'bob');
  const [t] = ws.sentFor('transfer');
  assert.deepEqual([t.room, t.to], ['support-9', 'bob']);
  ws.frame({ type: 'status', room: 'support-9', status: 'assigned', agent: 'bob', version: 3, ref: t.ref });
  assert.equal((await moved).agent, 'bob');
  assert.equal(c.desk.get('support-9').agent, 'bob', 'the desk follows the reply');

  const back = unassign(c, 'support-9');
  ws.frame({ type: 'error', code: 'CONFLICT', message: 'not yours', ref: ws.sentFor('unassign')[0].ref });
  await assert.rejects(back, (e) => e.code === 'CONFLICT');

  const blocked = setBlocked(c, 'v9');
  const unblocked = setBlocked(c, 'v9', false);
  ws.frame({ type: 'blocked', user: 'v9', blocked: true, ref: ws.sentFor('block')[0].ref });
  ws.frame({ type: 'blocked', user: 'v9', blocked: false, ref: ws.sentFor('unblock')[0].ref });
  assert.equal((await blocked).blocked, true);
  assert.equal((await unblocked).blocked, false);
  c.disconnect();
});

test('the console’s words: waiting time, title count, previews, labels, stored availability', () => {
  const now = 10 * 3600 * 1000;
  assert.equal(waitingFor(now - 20 * 1000, now), 'waiting <1 min');
  assert.equal(waitingFor(now - 3 * 60000 - 5000, now), 'waiting 3 min');
  assert.equal(waitingFor(now - 125 * 60000, now), 'waiting 2 h 5 min');
  assert.equal(waitingFor(now + 5000, now), 'waiting <1 min', 'a clock ahead of ours is not negative');
  assert.equal(titleWithCount(0, 'roomcast agent console'), 'roomcast agent console');
  assert.equal(titleWithCount(2, 'roomcast agent console'), '(2) roomcast agent console');
  assert.equal(preview('  two\nlines  '), 'two lines');
  assert.equal(preview('x'.repeat(100), 10), `${'x'.repeat(9)}…`);
  assert.equal(visitorLabel({ name: 'Zoë', visitor: 'v9' }), 'Zoë');
  assert.equal(isolate('\u202Eevil'), '\u2068\u202Eevil\u2069', 'an override ends with the name');
  assert.equal(visitorLabel({ visitor: 'v9' }), 'v9');
  assert.equal(visitorLabel(undefined, 'support-9'), 'support-9');
  assert.deepEqual(storedAvailability(null), { status: 'online', capacity: 3 });
  assert.deepEqual(storedAvailability('{"status":"away","capacity":1}'), { status: 'away', capacity: 1 });
  assert.deepEqual(storedAvailability('{"status":"gone","capacity":99}'), { status: 'online', capacity: 3 });
  assert.deepEqual(storedAvailability('not json'), { status: 'online', capacity: 3 });
  assert.equal(agentText({ status: 'online', capacity: 3, load: 1, muted: true }), 'online · 1 of 3 conversations · muted');
});
