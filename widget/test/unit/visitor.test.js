// The visitor's desk requests (sdk/visitor.js) against a scripted socket: identify settles on the
// `identified` reply and on errors; rate settles on the rating's `ack` (which has no ref) and
// on errors; both are sent once the socket is up when asked before.
import test from 'node:test';
import assert from 'node:assert/strict';
import { RoomcastClient } from '../../src/sdk/client.js';
import { identify, rate } from '../../src/sdk/visitor.js';

const b64 = (o) => Buffer.from(JSON.stringify(o)).toString('base64url');
const token = `${b64({ alg: 'HS256' })}.${b64({ sub: 'v_x', tid: 't', rooms: ['support-v_x'], exp: Math.floor(Date.now() / 1000) + 3600 })}.sig`;
const tick = (ms = 5) => new Promise((r) => setTimeout(r, ms));
const ROOM = 'support-v_x';

// Every client a test made is disconnected after it, so no link's keepalive or token timer
// keeps the test process alive for minutes after its last test.
const made = [];
test.afterEach(() => {
  for (const c of made.splice(0)) c.disconnect();
});

function setup() {
  const sockets = [];
  class FakeWS {
    constructor() {
      this.readyState = 0;
      this.sent = [];
      sockets.push(this);
    }
    send(text) {
      this.sent.push(JSON.parse(text));
    }
    close() {}
  }
  const c = new RoomcastClient({ url: 'ws://x/', token, WebSocket: FakeWS, storage: null, random: () => 0, rate: { burst: 1000, perSec: 1000 } });
  made.push(c);
  c.join(ROOM);
  c.connect();
  const ws = () => sockets[sockets.length - 1];
  const open = () => {
    ws().readyState = 1;
    ws().onopen();
    frame({ type: 'joined', room: ROOM, head: 0, read_seq: 0, unread: 0, members: [] });
  };
  const frame = (f) => ws().onmessage({ data: JSON.stringify(f) });
  const sent = (action) => ws().sent.filter((f) => f.action === action);
  return { c, open, frame, sent };
}

test('identify: sent once connected, with only what is given (trimmed); settles on identified or error', async () => {
  const s = setup();
  const asked = identify(s.c, ROOM, { name: '  Zoë ', email: '' });
  await tick();
  s.open();
  await tick();
  const [f] = s.sent('identify');
  assert.deepEqual({ ...f, ref: undefined }, { action: 'identify', name: 'Zoë', ref: undefined });
  s.frame({ type: 'identified', name: 'Zoë', ref: f.ref });
  assert.deepEqual(await asked, { type: 'identified', name: 'Zoë', ref: f.ref });

  const bad = identify(s.c, ROOM, { email: 'zoe@localhost' });
  await tick();
  s.frame({ type: 'error', code: 'INVALID', message: 'not an email address', ref: s.sent('identify')[1].ref });
  await assert.rejects(bad, { code: 'INVALID' });
});

test('rate: settles on the ack of the stored rating; CONFLICT before the close', async () => {
  const s = setup();
  await tick();
  s.open();
  const early = rate(s.c, ROOM, 5);
  await tick();
  s.frame({ type: 'error', code: 'CONFLICT', message: 'a conversation is rated once it is closed', ref: s.sent('rate')[0].ref });
  await assert.rejects(early, { code: 'CONFLICT' });

  const rated = rate(s.c, ROOM, 4, ' Quick and kind ');
  await tick();
  const f = s.sent('rate')[1];
  assert.deepEqual([f.room, f.score, f.comment], [ROOM, 4, 'Quick and kind']);
  s.frame({ type: 'ack', id: '01JH0000000000000000000001', room: ROOM, seq: 2, ts: 1 }); // another message's ack
  s.frame({ type: 'ack', id: 'rating-3', room: ROOM, seq: 9, ts: 2 });
  assert.equal((await rated).id, 'rating-3');
  assert.equal(s.c.requests.pending.size, 0, 'nothing left pending (not resent on a reconnect)');
  assert.equal('comment' in s.sent('rate')[0], false, 'no comment: none sent');
});
