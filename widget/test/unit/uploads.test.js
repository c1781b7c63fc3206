// Attachments in the SDK: the checks before a slot is asked for, the upload to PUT and POST
// targets (progress, cancel, the server's refusals), the `upload` request over a scripted
// socket, messages carrying attachments, and download links (cached until they expire).
import test from 'node:test';
import assert from 'node:assert/strict';
import { RoomcastClient } from '../../src/sdk/client.js';
import { checkFile, fileType, uploadFile, uploadPolicy } from '../../src/sdk/uploads.js';
import { httpBase, safeUrl } from '../../src/sdk/http.js';

const b64 = (o) => Buffer.from(JSON.stringify(o)).toString('base64url');
const token = (claims = {}) => `${b64({ alg: 'HS256' })}.${b64({ sub: 'v1', tid: 't', rooms: ['support-1'], exp: Math.floor(Date.now() / 1000) + 3600, ...claims })}.sig`;
const tick = (ms = 5) => new Promise((r) => setTimeout(r, ms));
const file = (name, size, type = '') => new File([new Uint8Array(size)], name, { type });

/** A scripted XMLHttpRequest: records what was sent; the test answers. */
class FakeXHR {
  constructor() {
    FakeXHR.last = this;
    this.upload = {};
    this.headers = [];
    this.status = 0;
    this.responseText = '';
  }
  open(method, url) {
    this.method = method;
    this.url = url;
  }
  setRequestHeader(k, v) {
    this.headers.push([k, v]);
  }
  send(body) {
    this.body = body;
  }
  abort() {
    this.aborted = true;
    this.onabort?.();
  }
  // test side
  progress(loaded, total) {
    this.upload.onprogress?.({ lengthComputable: true, loaded, total });
  }
  respond(status, text = '') {
    this.status = status;
    this.responseText = text;
    this.onload?.();
  }
}

const put = { id: 'att_a', upload: { method: 'PUT', url: '/uploads/tok', headers: [['Content-Type', 'image/png']] } };

test('files over the limit, empty or of a type not allowed are refused before asking; the extension names a missing type', () => {
  const policy = uploadPolicy();
  assert.equal(checkFile(file('big.png', 10 * 1024 * 1024 + 1, 'image/png'), policy).code, 'TOO_LARGE');
  assert.equal(checkFile(file('ok.png', 10 * 1024 * 1024, 'image/png'), policy), null);
  assert.equal(checkFile(file('empty.txt', 0, 'text/plain'), policy).code, 'INVALID');
  assert.equal(checkFile(file('page.html', 10, 'text/html'), policy).code, 'INVALID');
  assert.equal(checkFile(file('run.exe', 10, ''), policy).code, 'INVALID');
  assert.equal(fileType(file('report.DOCX', 10, ''), policy), 'application/vnd.openxmlformats-officedocument.wordprocessingml.document');
  assert.equal(fileType(file('data.csv', 10, 'application/vnd.ms-excel'), policy), 'text/csv');
  assert.equal(fileType(file('a.png', 10, 'image/PNG; x=1'), policy), 'image/png');
  assert.equal(checkFile(file('small.png', 2000, 'image/png'), uploadPolicy({ maxBytes: 1000 })).code, 'TOO_LARGE');
});

test('a PUT target gets the raw file with its headers, relative URLs resolved against the HTTP base; progress is reported', async () => {
  const f = file('a.png', 100, 'image/png');
  const seen = [];
  const done = uploadFile(put, f, { base: 'http://127.0.0.1:3001', onProgress: (p) => seen.push(p), XHR: FakeXHR });
  const x = FakeXHR.last;
  assert.equal(x.method, 'PUT');
  assert.equal(x.url, 'http://127.0.0.1:3001/uploads/tok');
  assert.deepEqual(x.headers, [['Content-Type', 'image/png']]);
  assert.equal(x.body, f);
  x.progress(50, 100);
  x.respond(200);
  await done;
  assert.deepEqual(seen, [0.5, 1]);
});

test('a POST target (S3) gets a multipart form: the fields in order, then the file as `file`', async () => {
  const f = file('doc.pdf', 10, 'application/pdf');
  const grant = { upload: { method: 'POST', url: 'https://bucket.s3.amazonaws.com/', fields: [['key', 't/r/att_a'], ['Content-Type', 'application/pdf'], ['policy', 'p'], ['x-amz-signature', 's']] } };
  const done = uploadFile(grant, f, { base: 'http://api', XHR: FakeXHR });
  const x = FakeXHR.last;
  assert.equal(x.url, 'https://bucket.s3.amazonaws.com/');
  assert.deepEqual(x.headers, [], 'the form sets its own content type');
  const entries = [...x.body.entries()];
  assert.deepEqual(entries.map(([k]) => k), ['key', 'Content-Type', 'policy', 'x-amz-signature', 'file']);
  assert.equal(entries[4][1].name, 'doc.pdf');
  x.respond(204);
  await done;
});

test('refusals carry the server code, else the status says it; a cancel aborts the request; only http(s) targets are used', async () => {
  let done = uploadFile(put, file('a.png', 1), { base: 'http://h', XHR: FakeXHR });
  FakeXHR.last.respond(400, '{"code":"INVALID","message":"the bytes are not image/png"}');
  await assert.rejects(done, (e) => e.code === 'INVALID' && /not image\/png/.test(e.message) && e.status === 400);
  done = uploadFile(put, file('a.png', 1), { base: 'http://h', XHR: FakeXHR });
  FakeXHR.last.respond(413, '<Error>EntityTooLarge</Error>');
  await assert.rejects(done, (e) => e.code === 'TOO_LARGE');
  done = uploadFile(put, file('a.png', 1), { base: 'http://h', XHR: FakeXHR });
  FakeXHR.last.onerror();
  await assert.rejects(done, (e) => e.code === 'NETWORK');

  const cancel = new AbortController();
  done = uploadFile(put, file('a.png', 1), { base: 'http://h', signal: cancel.signal, XHR: FakeXHR });
  const x = FakeXHR.last;
  cancel.abort();
  assert.ok(x.aborted);
  await assert.rejects(done, (e) => e.code === 'ABORTED');
  FakeXHR.last = null;
  await assert.rejects(uploadFile(put, file('a.png', 1), { base: 'http://h', signal: cancel.signal, XHR: FakeXHR }), (e) => e.code === 'ABORTED');
  assert.equal(FakeXHR.last, null, 'an already cancelled upload opens no request');

  for (const url of ['javascript:alert(1)', 'data:text/html,x', 'blob:http://h/x']) {
    await assert.rejects(uploadFile({ upload: { method: 'PUT', url } }, file('a', 1), { base: 'http://h', XHR: FakeXHR }), (e) => e.code === 'INVALID');
  }
  await assert.rejects(uploadFile({ upload: { method: 'GET', url: '/x' } }, file('a', 1), { base: 'http://h', XHR: FakeXHR }), (e) => e.code === 'INVALID');
});

test('the HTTP base is the WebSocket URL with http(s); links resolve against it and only http(s) is kept', () => {
  assert.equal(httpBase('ws://127.0.0.1:3001/'), 'http://127.0.0.1:3001');
  assert.equal(httpBase('wss://chat.example.com/edge/'), 'https://chat.example.com/edge');
  assert.equal(httpBase('wss://chat.example.com/rooms/{room}/ws'), 'https://chat.example.com/rooms');
  assert.equal(safeUrl('/files/t', 'http://h:1'), 'http://h:1/files/t');
  assert.equal(safeUrl('/files/t', 'https://api.example/prod'), 'https://api.example/prod/files/t', 'relative to the base, stage included');
  assert.equal(safeUrl('https://s3/x?sig=1', 'http://h'), 'https://s3/x?sig=1');
  assert.equal(safeUrl('javascript:alert(1)', 'http://h'), null);
  assert.equal(safeUrl('//evil.example/x', 'http://h'), null);
  assert.equal(safeUrl('data:image/png;base64,AAAA', 'http://h'), null);
});

function fakeSocket() {
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
    open() {
      this.readyState = 1;
      this.onopen?.();
    }
    frame(f) {
      this.onmessage?.({ data: JSON.stringify(f) });
    }
    frames(action) {
      return this.sent.filter((f) => f.action === action);
    }
  }
  return { FakeWS, last: () => sockets[sockets.length - 1] };
}

function client(extra = {}) {
  const srv = fakeSocket();
  const c = new RoomcastClient({ url: 'ws://127.0.0.1:3001/', token: token(), WebSocket: srv.FakeWS, XMLHttpRequest: FakeXHR, storage: null, random: () => 0, rate: { burst: 1000, perSec: 1000 }, ...extra });
  return { c, srv };
}

async function joined(c, srv) {
  c.join('support-1');
  c.connect();
  await tick();
  const ws = srv.last();
  ws.open();
  ws.frame({ type: 'joined', room: 'support-1', head: 0, read_seq: 0, unread: 0, members: [] });
  return ws;
}

test('attach asks for a slot with the `upload` action, uploads to its target, and the message names it by id', async () => {
  const { c, srv } = client();
  const ws = await joined(c, srv);
  const f = file('photo.png', 3, 'image/png');
  const attached = c.attach('support-1', f);
  await tick();
  const [ask] = ws.frames('upload');
  assert.deepEqual({ ...ask, ref: undefined }, { action: 'upload', room: 'support-1', name: 'photo.png', size: 3, type: 'image/png', ref: undefined });
  ws.frame({ type: 'upload', id: 'att_abc', room: 'support-1', name: 'photo.png', upload: { method: 'PUT', url: '/uploads/tok' }, expires_at: Date.now() + 900000, ref: ask.ref });
  await tick();
  assert.equal(FakeXHR.last.url, 'http://127.0.0.1:3001/uploads/tok');
  FakeXHR.last.respond(200);
  const a = await attached;
  assert.deepEqual(a, { id: 'att_abc', name: 'photo.png', size: 3, type: 'image/png' });

  const id = c.sendMessage('support-1', '', { attachments: [a] });
  await tick();
  const [sent] = ws.frames('message');
  assert.deepEqual(sent, { action: 'message', room: 'support-1', id, body: '', attachments: [{ id: 'att_abc' }] });
  assert.deepEqual(c.room('support-1').view()[0].attachments, [a], 'shown while pending');
  ws.frame({ type: 'ack', id, room: 'support-1', seq: 1, ts: 9 });
  const [shown] = c.room('support-1').view();
  assert.equal(shown.status, 'sent');
  assert.deepEqual(shown.attachments, [a], 'kept once stored');
  c.disconnect();
});

test('a refused slot rejects with its code; a file over the limit is refused without asking', async () => {
  const { c, srv } = client();
  const ws = await joined(c, srv);
  const quota = c.requestUpload('support-1', file('a.pdf', 5, 'application/pdf'));
  await tick();
  ws.frame({ type: 'error', code: 'LIMIT_EXCEEDED', message: 'upload quota reached', ref: ws.frames('upload')[0].ref });
  await assert.rejects(quota, (e) => e.code === 'LIMIT_EXCEEDED');
  await assert.rejects(c.requestUpload('support-1', file('big.pdf', 11 * 1024 * 1024, 'application/pdf')), (e) => e.code === 'TOO_LARGE');
  await assert.rejects(c.requestUpload('support-1', file('x.svgz', 5, 'image/svg+xml-compressed')), (e) => e.code === 'INVALID');
  assert.equal(ws.frames('upload').length, 1, 'refused files never reach the server');
  c.disconnect();
});

test('a deleted message loses its attachments', async () => {
  const { c, srv } = client();
  const ws = await joined(c, srv);
  ws.frame({ type: 'message', room: 'support-1', seq: 1, id: 'm1', from: 'ann', body: '', attachments: [{ id: 'att_x', name: 'a.png', size: 1, type: 'image/png' }], ts: 1 });
  assert.equal(c.room('support-1').view()[0].attachments.length, 1);
  ws.frame({ type: 'deleted', room: 'support-1', seq: 1 });
  assert.equal(c.room('support-1').view()[0].attachments, undefined);
  c.disconnect();
});

test('download links carry the Bearer token, are kept until shortly before they expire, and refusals are not kept', async () => {
  let now = 1_000_000;
  const calls = [];
  let answer = () => ({ status: 200, body: { id: 'att_x', url: '/files/t1', inline: true, expires_at: now + 300000 } });
  const fetch = async (url, init) => {
    calls.push({ url, auth: init.headers.authorization });
    const { status, body } = answer();
    return { status, ok: status < 300, json: async () => body };
  };
  const t = token();
  const { c } = client({ token: t, fetch, now: () => now });
  const link = await c.attachmentLink('support 1', 'att_x');
  assert.deepEqual(calls, [{ url: 'http://127.0.0.1:3001/rooms/support%201/attachments/att_x', auth: `Bearer ${t}` }]);
  assert.equal(link.url, 'http://127.0.0.1:3001/files/t1');
  assert.equal(link.inline, true);
  await c.attachmentLink('support 1', 'att_x');
  assert.equal(calls.length, 1, 'cached');
  now += 290000;
  await c.attachmentLink('support 1', 'att_x');
  assert.equal(calls.length, 2, 'fetched again 30 s before it expires');

  answer = () => ({ status: 403, body: { code: 'FORBIDDEN', message: 'the token does not grant this room' } });
  await assert.rejects(c.attachmentLink('support-2', 'att_y'), (e) => e.code === 'FORBIDDEN' && e.status === 403);
  await assert.rejects(c.attachmentLink('support-2', 'att_y'), (e) => e.code === 'FORBIDDEN');
  assert.equal(calls.length, 4, 'a refusal is asked again');

  answer = () => ({ status: 200, body: { id: 'att_z', url: 'javascript:alert(1)', inline: false, expires_at: now + 300000 } });
  await assert.rejects(c.attachmentLink('support-1', 'att_z'), (e) => e.code === 'INVALID');
});

test('a 401 on a link fetches a fresh token and asks once more', async () => {
  const tokens = [token({ n: 1 }), token({ n: 2 })];
  let issued = 0;
  const seen = [];
  const fetch = async (url, init) => {
    seen.push(init.headers.authorization);
    const ok = init.headers.authorization === `Bearer ${tokens[1]}`;
    return { status: ok ? 200 : 401, ok, json: async () => (ok ? { id: 'att_x', url: '/files/t', inline: false, expires_at: Date.now() + 300000 } : { code: 'UNAUTHORIZED' }) };
  };
  const { c } = client({ token: async () => tokens[issued++], fetch });
  const link = await c.attachmentLink('support-1', 'att_x');
  assert.equal(link.url, 'http://127.0.0.1:3001/files/t');
  assert.deepEqual(seen, [`Bearer ${tokens[0]}`, `Bearer ${tokens[1]}`]);
});
