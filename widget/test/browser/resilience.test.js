// The SDK's connection management in real Chromium against the real server: connections are
// replaced before the server's maximum connection age and tokens before they expire, without the
// app noticing; history scroll-back pages through a long conversation.
import test from 'node:test';
import assert from 'node:assert/strict';
import { Server, cliToken, launch, sleep, until, widgetItems } from './harness.js';

const page = (attrs) => `<!doctype html><meta charset="utf-8"><title>test</title><body><script src="/widget.js" ${attrs}></script></body>`;

test('connections are replaced before the 2-hour-style cut-off and before token expiry, unnoticed', { timeout: 120000 }, async (t) => {
  // The server cuts every connection after 8 s (API Gateway: 2 h); tokens live 6 s.
  const server = await Server.start(['--max-connection-secs', '8']);
  const browser = await launch();
  t.after(async () => {
    await browser.close();
    await server.stop();
  });
  const ctx = await browser.newContext();
  await ctx.grantPermissions(['local-network-access'], { origin: server.base });
  await ctx.route('**/rotating', (r) =>
    r.fulfill({
      contentType: 'text/html',
      body: page('data-token-url="/dev/token?user=visitor-{visitor}&amp;rooms=support-{visitor}&amp;ttl=6" data-room="support-{visitor}" data-max-connection-secs="5" data-open="true"'),
    }),
  );
  const p = await ctx.newPage();
  p.on('pageerror', (e) => console.error('[page error]', e));
  await p.goto(`${server.base}/rotating`);
  await until('the widget to connect', async () => (await p.evaluate(() => window.roomcastWidget.client.state)) === 'connected');
  const room = await p.evaluate(() => window.roomcastWidget.room);
  const sent = [];
  for (let i = 1; i <= 8; i++) {
    const body = `message ${i}`;
    await p.fill('#roomcast-widget >> textarea', body);
    await p.press('#roomcast-widget >> textarea', 'Enter');
    sent.push(body);
    await sleep(2000);
  }
  await until('every message acknowledged', async () => {
    const items = await widgetItems(p);
    return sent.every((b) => items.some((i) => i.body === b && i.status === 'sent'));
  });
  const stats = await p.evaluate(() => {
    const c = window.roomcastWidget.client;
    return { rotations: c.stats.rotations, states: c.stats.states, closes: c.stats.closes, token: c.claims };
  });
  assert.ok(stats.rotations >= 3, `connections replaced: ${stats.rotations}`);
  assert.deepEqual(stats.states, ['connecting', 'connected'], 'the app never saw the connection drop');
  assert.deepEqual(stats.closes, [], 'no connection was lost');
  assert.ok(stats.token.exp * 1000 > Date.now(), 'the token in use is a fresh one');
  const metrics = await server.metrics();
  const cut = metrics.split('\n').find((l) => l.startsWith('roomcast_server_closes_total{code="1001"}'));
  assert.ok(!cut || cut.endsWith(' 0'), `the server never had to cut a connection at its maximum age: ${cut}`);
  const stored = (await server.history(room)).filter((m) => m.from !== '$system').map((m) => m.body);
  assert.deepEqual(stored, sent, 'each message stored once, in order');
});

test('history scroll-back pages through a long conversation in order', { timeout: 120000 }, async (t) => {
  // The bot seeds 75 messages at once: more than the default rate of one user's HTTP requests.
  const server = await Server.start(['--rate-per-sec', '1000', '--rate-burst', '1000']);
  const browser = await launch();
  t.after(async () => {
    await browser.close();
    await server.stop();
  });
  const visitor = 'paging0123456789abcdef01';
  const room = `support-${visitor}`;
  const bot = cliToken(['--user', 'bot', '--tenant', 'demo', '--role', 'service', '--rooms', '*']);
  for (let i = 1; i <= 75; i++) {
    const r = await fetch(`${server.base}/rooms/${room}/messages`, {
      method: 'POST',
      headers: { authorization: `Bearer ${bot}`, 'content-type': 'application/json' },
      body: JSON.stringify({ id: `seed-${i}`, body: `older message ${i}`, from: 'ann' }),
    });
    assert.equal(r.status, 201);
  }
  const ctx = await browser.newContext({ viewport: { width: 420, height: 700 } });
  await ctx.addInitScript((v) => {
    localStorage.setItem('roomcast:visitor', v);
    sessionStorage.setItem('roomcast:open', '1');
  }, visitor);
  const p = await ctx.newPage();
  p.on('pageerror', (e) => console.error('[page error]', e));
  await p.goto(`${server.base}/demo`);
  await until('the newest page', async () => (await widgetItems(p)).length === 30);
  const seqs = async () => (await widgetItems(p)).map((i) => i.seq);
  assert.deepEqual(await seqs(), Array.from({ length: 30 }, (_, i) => 46 + i), 'the newest 30, oldest first');
  const tags = await p.evaluate(() => [...document.querySelector('#roomcast-widget').shadowRoot.querySelectorAll('.list li.bot .who .tag')].map((tag) => tag.textContent));
  assert.ok(tags.length && tags.every((tag) => tag === 'Bot'), `a service's messages in ann's name are labelled a bot's: ${tags}`);
  const older = p.locator('#roomcast-widget >> .older');
  assert.ok(await older.isVisible(), 'older messages are offered');
  const log = p.locator('#roomcast-widget >> .log');
  assert.ok(await log.evaluate((el) => el.scrollHeight - el.scrollTop - el.clientHeight < 30), 'opened at the newest message');
  for (const expected of [60, 75]) {
    await log.evaluate((el) => (el.scrollTop = 0));
    await until(`${expected} messages`, async () => (await widgetItems(p)).length === expected);
    assert.ok(await log.evaluate((el) => el.scrollTop > 0), 'the reading position is kept after older messages load');
  }
  assert.deepEqual(await seqs(), Array.from({ length: 75 }, (_, i) => 1 + i), 'the whole conversation, in order, once');
  await until('no more to load', async () => !(await older.isVisible()));
});
