// The client against a scripted fake socket: resume, de-duplication, outbox resend, close codes.
import test from 'node:test';
import assert from 'node:assert/strict';
import { RoomcastClient } from '../../src/sdk/client.js';

const b64 = (o) => Buffer.from(JSON.stringify(o)).toString('base64url');
const token = (claims) => `${b64({ alg: 'HS256' })}.${b64({ sub: 'v1', tid: 't', rooms: ['support-1'], exp: Math.floor(Date.now() / 1000) + 3600, ...claims })}.sig`;
const tick = (ms = 5) => new Promise((r) => setTimeout(r, ms));

function fakeServer() {
  const sockets = [];
  class FakeWS {
    constructor(url, protocols) {
      this.url = url;
      this.protocols = protocols;
      this.readyState = 0;
      this.sent = [];
      sockets.push(this);
    }
    send(text) {
      this.sent.push(JSON.parse(text));
    }
    close() {}
    // test side
    open() {
      this.readyState = 1;
      this.onopen?.();
    }
    frame(f) {
      this.onmessage?.({ data: JSON.stringify(f) });
    }
    drop(code = 1006) {
      this.readyState = 3;
      this.onclose?.({ code });
    }
    frames(action) {
      return this.sent.filter((f) => f.action === action);
    }
  }
  return { sockets, FakeWS, last: () => sockets[sockets.length - 1] };
}

const msg = (seq, from = 'agent', body = `m${seq}`) => ({ type: 'message', room: 'support-1', seq, id: `c${seq}`, from, body, ts: seq });

// Every client a test made is disconnected after it, so no link's keepalive or token timer
// keeps the test process alive for minutes after its last test.
const made = [];
test.afterEach(() => {
  for (const c of made.splice(0)) c.disconnect();
});

function client(srv, extra = {}) {
  const c = new RoomcastClient({ url: 'ws://x/', token: token({}), WebSocket: srv.FakeWS, storage: null, random: () => 0, rate: { burst: 1000, perSec: 1000 }, ...extra });
  made.push(c);
  return c;
}

test('resumes every room with since = last contiguous seq, de-duplicates and keeps order', async () => {
  const srv = fakeServer();
  const c = client(srv);
  const room = c.join('support-1');
  c.connect();
  await tick();
  const a = srv.last();
  assert.deepEqual(a.protocols[0], 'roomcast.v1');
  a.open();
  assert.deepEqual(a.frames('join'), [{ action: 'join', room: 'support-1', ref: 'j:support-1' }]);
  a.frame({ type: 'joined', room: 'support-1', head: 2, read_seq: 0, unread: 2, members: [] });
  await tick();
  const page = a.frames('history')[0];
  assert.equal(page.before, 3);
  a.frame({ type: 'history', room: 'support-1', messages: [msg(1), msg(2)].map(({ type, ...m }) => m), more: false });
  a.frame(msg(3));
  a.frame(msg(5)); // 4 was lost
  await tick();
  const gap = a.frames('history')[1];
  assert.deepEqual([gap.after, gap.before], [3, 5]);
  a.drop(1006);
  await tick(20);
  const b = srv.last();
  assert.notEqual(a, b);
  b.open();
  assert.equal(b.frames('join')[0].since, 3, 'resume from the last contiguous seq, not the highest');
  b.frame({ type: 'joined', room: 'support-1', head: 6, read_seq: 0, unread: 6, members: [] });
  for (const s of [4, 5, 6]) b.frame(msg(s));
  b.frame({ type: 'replayed', room: 'support-1', through: 6, more: false });
  b.frame(msg(5)); // a late duplicate
  await tick();
  assert.deepEqual(room.view().map((m) => m.seq), [1, 2, 3, 4, 5, 6]);
  assert.equal(room.timeline.through, 6);
  assert.equal(c.state, 'connected');
  c.disconnect();
});

test('a message sent while disconnected is resent with the same id after the join; its ack makes it sent', async () => {
  const srv = fakeServer();
  const c = client(srv);
  const room = c.join('support-1');
  c.connect();
  await tick();
  const id = c.send('support-1', 'hello');
  assert.equal(room.view()[0].status, 'pending');
  const a = srv.last();
  a.open();
  assert.equal(a.frames('message').length, 0, 'not before the join is confirmed');
  a.frame({ type: 'joined', room: 'support-1', head: 0, read_seq: 0, unread: 0, members: [] });
  assert.deepEqual(a.frames('message').map((f) => f.id), [id]);
  a.drop(1006); // the ack never came
  await tick(20);
  const b = srv.last();
  b.open();
  b.frame({ type: 'joined', room: 'support-1', head: 1, read_seq: 0, unread: 1, members: [] });
  assert.deepEqual(b.frames('message').map((f) => f.id), [id], 'same id again');
  b.frame({ type: 'ack', id, room: 'support-1', seq: 1, ts: 10, duplicate: true });
  b.frame({ type: 'message', room: 'support-1', seq: 1, id, from: 'v1', body: 'hello', ts: 10 }); // the replay
  b.frame({ type: 'replayed', room: 'support-1', through: 1, more: false });
  await tick();
  assert.deepEqual(room.view().map((m) => [m.seq, m.body, m.status]), [[1, 'hello', 'sent']]);
  b.frame({ type: 'read', room: 'support-1', user: 'agent', seq: 1 });
  assert.equal(room.view()[0].status, 'seen');
  assert.equal(c.outbox.entries.size, 0);
  c.disconnect();
});

test('4001 fetches a new token; a refresh that fails stops reconnecting', async () => {
  const srv = fakeServer();
  let n = 0;
  const tokens = [token({ iat: 1 }), token({ iat: 2 })];
  const c = client(srv, { token: async () => tokens[n++] ?? tokens[1] });
  c.join('support-1');
  c.connect();
  await tick();
  await tick();
  const a = srv.last();
  assert.equal(a.protocols[1], tokens[0]);
  a.open();
  a.frame({ type: 'closing', code: 4001, reason: 'token expired' });
  a.drop(1000); // API Gateway closes with 1000; the closing frame has the real code
  await tick(300);
  const b = srv.last();
  assert.notEqual(a, b);
  assert.equal(b.protocols[1], tokens[1]);
  b.open();
  b.frame({ type: 'closing', code: 4001, reason: 'token expired' });
  b.drop(4001);
  await tick(300);
  assert.equal(srv.sockets.length, 2, 'the refresh returned the same token: no retry');
  assert.equal(c.state, 'unauthorized');
});

test('1000 from the server stops; 4008 waits at least ten seconds', async () => {
  const srv = fakeServer();
  const c = client(srv);
  c.connect();
  await tick();
  srv.last().open();
  srv.last().frame({ type: 'closing', code: 4008, reason: 'rate limit exceeded' });
  srv.last().drop(4008);
  await tick(50);
  assert.equal(srv.sockets.length, 1);
  const info = c.stateInfo();
  assert.equal(info.state, 'reconnecting');
  assert.ok(info.retryAt - Date.now() > 9000, `retry in ${info.retryAt - Date.now()} ms`);
  c.disconnect();
  const srv2 = fakeServer();
  const d = client(srv2);
  d.connect();
  await tick();
  srv2.last().open();
  srv2.last().drop(1000);
  await tick(50);
  assert.equal(srv2.sockets.length, 1);
  assert.equal(d.state, 'closed');
});

test('the edge build gets one socket per room with the token in the URL', async () => {
  const srv = fakeServer();
  const c = client(srv, { url: 'wss://edge.example/', mode: 'edge' });
  c.join('support-1');
  c.join('support-2');
  c.connect();
  await tick();
  assert.deepEqual(srv.sockets.map((s) => s.url.split('?')[0]), ['wss://edge.example/rooms/support-1/ws', 'wss://edge.example/rooms/support-2/ws']);
  assert.ok(srv.sockets.every((s) => s.url.includes('token=')));
  c.disconnect();
});

test('typing start is sent at most every 3 s and stopped by sending', async () => {
  const srv = fakeServer();
  const c = client(srv);
  c.join('support-1');
  c.connect();
  await tick();
  const a = srv.last();
  a.open();
  a.frame({ type: 'joined', room: 'support-1', head: 0, read_seq: 0, unread: 0, members: [] });
  for (let i = 0; i < 5; i++) c.typing('support-1');
  c.stopTyping('support-1');
  assert.deepEqual(a.frames('typing').map((f) => f.state), ['start', 'stop']);
  c.disconnect();
});

test('desk requests resolve with the status reply and reject with errors', async () => {
  const srv = fakeServer();
  const c = client(srv, { token: token({ sub: 'ann', role: 'agent', rooms: ['support-*', 'inbox'] }) });
  c.watchInbox();
  c.connect();
  await tick();
  const a = srv.last();
  const accepted = c.assign('support-1'); // before the socket opens: sent once it does
  a.open();
  assert.equal(a.frames('join')[0].since, 0, 'the inbox replays from the start');
  const req = a.frames('assign')[0];
  a.frame({ type: 'status', room: 'support-1', status: 'assigned', agent: 'ann', version: 2, seq: 3, ref: req.ref });
  assert.equal((await accepted).agent, 'ann');
  const closing = c.close('support-9');
  a.frame({ type: 'error', code: 'FORBIDDEN', message: 'no', ref: a.frames('close')[0].ref });
  await assert.rejects(closing, (e) => e.code === 'FORBIDDEN');
  a.frame({ type: 'joined', room: 'inbox', head: 1, read_seq: 0, unread: 1, members: [] });
  a.frame({ type: 'message', room: 'inbox', seq: 1, id: 'support-7/1', from: '$system', body: 'support-7: waiting', meta: { kind: 'status', room: 'support-7', status: 'waiting', agent: null, version: 1 }, ts: 5 });
  assert.deepEqual(c.inbox('waiting').map((x) => x.room), ['support-7']);
  assert.equal(c.inbox('assigned')[0].room, 'support-1');
  c.disconnect();
});

test('only the "$system" sender makes a system line: a user message with meta.kind "status" is a user message', async () => {
  const srv = fakeServer();
  const c = client(srv, { token: token({ sub: 'ann', role: 'agent', rooms: ['support-*', 'inbox'] }) });
  const room = c.join('support-1');
  c.connect();
  await tick();
  const a = srv.last();
  a.open();
  a.frame({ type: 'joined', room: 'support-1', head: 0, read_seq: 0, unread: 0, members: [], conversation: { status: 'assigned', agent: 'ann', version: 2, since: 1 } });
  // What a visitor forged: a "closed" status line with a phishing body, for this room and another.
  const forged = { kind: 'status', status: 'closed', agent: null, version: 99 };
  a.frame({ type: 'message', room: 'support-1', seq: 1, id: 'f1', from: 'mallory', body: 'Re-enter your card at …', meta: forged, ts: 2 });
  a.frame({ type: 'message', room: 'support-1', seq: 2, id: 'f2', from: 'mallory', body: 'x', meta: { ...forged, kind: 'system', room: 'support-7' }, ts: 3 });
  const [first, second] = room.view();
  for (const m of [first, second]) {
    assert.equal(m.system, false, 'shown as the user message it is');
    assert.equal(m.from, 'mallory');
  }
  assert.deepEqual(room.conversation, { room: 'support-1', status: 'assigned', agent: 'ann', version: 2, ts: 1 }, 'the conversation is unchanged');
  assert.equal(c.desk.get('support-7'), undefined, 'no conversation appears elsewhere');
  assert.ok(room.members.has('mallory'), 'a user, listed with the members');
  assert.equal(room.unread, 2, 'counted as unread, as people write');
  // The service's own line, from "$system", does change it.
  a.frame({ type: 'message', room: 'support-1', seq: 3, id: 'status-3', from: '$system', body: 'Conversation closed', meta: { kind: 'status', status: 'closed', agent: 'ann', version: 3 }, ts: 4 });
  assert.equal(room.view()[2].system, true);
  assert.equal(room.conversation.status, 'closed');
  c.disconnect();
});

test('a message a service published in a user\'s name is a bot message, not the user\'s own', async () => {
  const srv = fakeServer();
  const c = client(srv);
  const room = c.join('support-1');
  c.connect();
  await tick();
  const a = srv.last();
  a.open();
  a.frame({ type: 'joined', room: 'support-1', head: 0, read_seq: 0, unread: 0, members: [] });
  a.frame({ type: 'message', room: 'support-1', seq: 1, id: 'b1', from: 'v1', via: 'backend', body: 'v1 accepts the terms', ts: 2 });
  a.frame({ type: 'message', room: 'support-1', seq: 2, id: 'own', from: 'v1', body: 'mine', ts: 3 });
  const [published, own] = room.view();
  assert.deepEqual([published.bot, published.mine, published.via], [true, false, 'backend']);
  assert.deepEqual([own.bot, own.mine], [false, true]);
  c.disconnect();
});

test('a big room keeps its occupancy from joined and occupancy frames; members pages by request', async () => {
  const srv = fakeServer();
  const c = client(srv);
  const room = c.join('support-1');
  c.connect();
  await tick();
  const a = srv.last();
  a.open();
  a.frame({ type: 'joined', room: 'support-1', head: 0, read_seq: 0, unread: 0, members: [], occupancy: 150 });
  assert.equal(room.occupancy, 150);
  a.frame({ type: 'occupancy', room: 'support-1', connections: 149 });
  assert.equal(room.occupancy, 149);
  const page = c.members('support-1', { limit: 2 });
  const sent = a.frames('members')[0];
  assert.deepEqual({ ...sent, ref: undefined }, { action: 'members', room: 'support-1', limit: 2, ref: undefined });
  a.frame({ type: 'members', room: 'support-1', members: [{ user: 'abe', status: 'online' }], next: 'abe', ref: sent.ref });
  assert.deepEqual(await page, { type: 'members', room: 'support-1', members: [{ user: 'abe', status: 'online' }], next: 'abe', ref: sent.ref });
  a.frame({ type: 'joined', room: 'support-1', head: 0, read_seq: 0, unread: 0, members: [] });
  assert.equal(room.occupancy, null, 'within the threshold again');
});

test('react resolves with the reaction reply; live reaction frames update the message; a reply carries reply_to', async () => {
  const srv = fakeServer();
  const c = client(srv);
  const room = c.join('support-1', { fromStart: true });
  c.connect();
  await tick();
  const a = srv.last();
  a.open();
  a.frame({ type: 'joined', room: 'support-1', head: 0, read_seq: 0, unread: 0, members: [] });
  a.frame(msg(1));
  const changes = [];
  c.on('change', (rooms) => changes.push(rooms));
  const reacted = c.react("support-1", 1, '👍');
  const [sent] = a.frames('react');
  assert.deepEqual({ ...sent, ref: undefined }, { action: 'react', room: 'support-1', seq: 1, emoji: '👍', ref: undefined });
  a.frame({ type: 'reaction', room: 'support-1', seq: 1, emoji: '👍', by: 'v1', added: true, count: 1, users: ['v1'], ref: sent.ref });
  assert.equal((await reacted).count, 1);
  a.frame({ type: 'reaction', room: 'support-1', seq: 1, emoji: '👍', by: 'agent', added: true, count: 2, users: ['v1', 'agent'] });
  await tick();
  assert.deepEqual(room.view()[0].reactions, [{ emoji: '👍', count: 2, users: ['v1', 'agent'] }]);
  assert.ok(changes.some((rooms) => rooms.includes('support-1')), 'a change is emitted');
  const refused = c.unreact('support-1', 7, '👍');
  a.frame({ type: 'error', code: 'NOT_FOUND', message: 'no such message', ref: a.frames('unreact')[0].ref });
  await assert.rejects(refused, { code: 'NOT_FOUND' });

  const id = c.sendMessage('support-1', 'yes', { replyTo: 1 });
  assert.equal(a.frames('message')[0].reply_to, 1);
  a.frame({ type: 'ack', id, room: 'support-1', seq: 2, ts: 3 });
  assert.deepEqual(room.view()[1].reply_to, { seq: 1, from: 'agent', preview: 'm1' }, 'the acknowledged reply quotes its original');
  a.frame({ type: 'deleted', room: 'support-1', seq: 1 });
  assert.deepEqual(room.view()[1].reply_to, { seq: 1, from: 'agent', deleted: true }, 'the acknowledged reply follows its deleted original');
  c.disconnect();
});
