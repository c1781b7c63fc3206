// The widget embedded with a publishable key (protocol.md §15, "Embedding with a publishable
// key"), on a shop page served from another origin than the chat server's, in real headless
// Chromium against the real roomcast-local binary started with ROOMCAST_EMBED_KEYS: the token
// from POST /embed/token and the first-open state; a page whose origin the key does not allow;
// name and email asked when no agent is online (and listed to agents); the rating after an agent
// closes the conversation; and close code 4003 when an agent blocks the visitor.
//
// The agent is a raw WebSocket in a blank page of the shop's origin (the key's allowlist holds
// for every upgrade that carries an Origin, as browsers' do), with a token from /dev/token.
import test from 'node:test';
import assert from 'node:assert/strict';
import { createServer } from 'node:http';
import { Server, axeViolations, launch, screenshotPath, sleep, until, widgetItems } from './harness.js';

const KEY = 'pk_test_embed_4f9a2c7e1b';
/** A key whose desk has office hours on no day: always closed. */
const AFTER_HOURS_KEY = 'pk_test_embed_after_hours';
const GREETING = 'Hi! How can we help?';

let server;
let shop;
let browser;

/** The shop: a page embedding the widget from the chat server with the key, and a blank page. */
function startShop() {
  const http = createServer((req, res) => {
    const body = req.url.startsWith('/shop')
      ? `<!doctype html><html lang="en"><head><meta charset="utf-8"><title>Shop</title></head><body><main><h1>Shop</h1></main>
<script src="${server.base}/widget.js" data-key="${req.url.includes('after-hours') ? AFTER_HOURS_KEY : KEY}"${req.url.includes('signed-in') ? ' data-name="Sam Signed" data-email="sam@example.com"' : ''}></script></body></html>`
      : '<!doctype html><html lang="en"><head><meta charset="utf-8"><title>blank</title></head><body></body></html>';
    res.writeHead(200, { 'content-type': 'text/html; charset=utf-8' }).end(body);
  });
  return new Promise((ok) => http.listen(0, '127.0.0.1', () => ok(http)));
}

test.before(async () => {
  shop = await startShop();
  const shopOrigin = `http://127.0.0.1:${shop.address().port}`;
  const keys = {
    [KEY]: { tenant: 'demo', origins: [shopOrigin], team: 'Acme support', greeting: GREETING, reply_time: 'in a few minutes', avatars: ['https://cdn.example/ann.png'] },
    [AFTER_HOURS_KEY]: { tenant: 'demo', origins: [shopOrigin], team: 'Acme support', office_hours: { utc_offset_minutes: 0, days: {} } },
  };
  server = await Server.start([], { ROOMCAST_EMBED_KEYS: JSON.stringify(keys) });
  browser = await launch();
});

test.after(async () => {
  await browser?.close();
  await server?.stop();
  shop?.close();
});

const shopUrl = (host = '127.0.0.1', path = '/shop') => `http://${host}:${shop.address().port}${path}`;
const inWidget = (page, fn, arg) => page.evaluate(({ fn, arg }) => new Function('root', 'arg', `return (${fn})(root, arg)`)(document.querySelector('#roomcast-widget').shadowRoot, arg), { fn: fn.toString(), arg });
const widgetText = (page, sel) => inWidget(page, (root, sel) => root.querySelector(sel)?.textContent ?? null, sel);
const isShown = (page, sel) => inWidget(page, (root, sel) => { const el = root.querySelector(sel); return Boolean(el && el.offsetParent !== null); }, sel);

/** A visitor: a fresh browser context on the shop page, the widget connected and open. */
async function visitor(t, path) {
  const ctx = await browser.newContext({ viewport: { width: 1000, height: 760 } });
  t.after(() => ctx.close());
  const page = await ctx.newPage();
  page.on('pageerror', (e) => console.error('[visitor page error]', e));
  await page.goto(shopUrl('127.0.0.1', path));
  await until('the widget to connect', () => page.evaluate(() => window.roomcastWidget?.client?.state === 'connected'));
  await page.click('#roomcast-widget >> .launcher');
  const room = await page.evaluate(() => window.roomcastWidget.room);
  const user = await page.evaluate(() => window.roomcastWidget.client.user);
  return { ctx, page, room, user };
}

async function say(page, text) {
  await page.fill('#roomcast-widget >> .composer textarea', text);
  await page.press('#roomcast-widget >> .composer textarea', 'Enter');
  await until(`"${text}" to be stored`, async () => (await widgetItems(page)).some((i) => i.body === text && (i.status === 'sent' || i.status === 'seen')));
}

/** An agent: a raw WebSocket (role agent, support-* and inbox) in a blank page of the shop's origin. */
async function agent(t, user = 'ann') {
  const token = await server.token({ user, role: 'agent', rooms: 'support-*,inbox' });
  const ctx = await browser.newContext();
  t.after(() => ctx.close());
  const page = await ctx.newPage();
  await page.goto(shopUrl('127.0.0.1', '/blank'));
  await page.evaluate(
    ({ url, token }) =>
      new Promise((ok, fail) => {
        window.frames_ = [];
        window.ws = new WebSocket(url, ['roomcast.v1', token]);
        ws.onmessage = (e) => frames_.push(JSON.parse(e.data));
        ws.onopen = ok;
        ws.onerror = () => fail(new Error('agent socket failed'));
      }),
    { url: `ws://127.0.0.1:${server.port}/`, token },
  );
  let n = 0;
  return {
    /** Sends `frame` with a ref; resolves with the reply carrying it (an `error` included). */
    async ask(frame) {
      const ref = `t${++n}`;
      await page.evaluate((f) => ws.send(JSON.stringify(f)), { ...frame, ref });
      return until(`the reply to ${frame.action}`, () => page.evaluate((ref) => frames_.find((f) => f.ref === ref), ref));
    },
  };
}

test('a publishable key from an allowed origin: the greeting before the first message, then the message gets through', { timeout: 90000 }, async (t) => {
  const ann = await agent(t);
  assert.equal((await ann.ask({ action: 'availability', status: 'online' })).type, 'agent');
  const { page, room, user } = await visitor(t);
  assert.match(user, /^v_[A-Za-z0-9_-]{22}$/, 'visitor id: 128 random bits, base64url');
  assert.equal(room, `support-${user}`, 'the room the answer names');
  assert.equal(await page.evaluate((k) => localStorage.getItem(`roomcast:visitor:${k}`), KEY), user, 'kept per key');
  // First-open state: team, avatars (https only, with alt text), greeting, reply time; an agent is online: no email form.
  assert.equal(await widgetText(page, '#rc-title'), 'Acme support');
  assert.equal(await widgetText(page, '.intro .greet'), GREETING);
  assert.equal(await widgetText(page, '.agent'), 'We usually reply in a few minutes');
  const avatars = await inWidget(page, (root) => [...root.querySelectorAll('.intro img')].map((i) => [i.getAttribute('src'), i.alt]));
  assert.deepEqual(avatars, [['https://cdn.example/ann.png', 'Acme support team member']]);
  assert.match(await widgetText(page, '.intro'), /Acme support usually replies in a few minutes\./);
  assert.equal(await isShown(page, '.intro form'), false, 'an agent is online: nothing asked');
  assert.deepEqual(await axeViolations(page), [], 'axe-core: the first-open state');
  await page.screenshot({ path: screenshotPath('widget-embed.png') });

  await say(page, 'Hello from the shop');
  const stored = await server.history(room);
  assert.ok(stored.some((m) => m.body === 'Hello from the shop' && m.from === user), 'stored in the visitor room');
  await until('the greeting to go after the first message', async () => !(await isShown(page, '.intro')));
  await ann.ask({ action: 'availability', status: 'offline' });
});

test('a page whose origin the key does not allow: the token request is refused (403) and the widget says so', { timeout: 60000 }, async (t) => {
  const ctx = await browser.newContext();
  t.after(() => ctx.close());
  const page = await ctx.newPage();
  const refusals = [];
  page.on('response', (r) => r.url().endsWith('/embed/token') && refusals.push(r.status()));
  let sockets = 0;
  page.on('websocket', () => sockets++);
  // localhost and 127.0.0.1 are different origins: only the latter is on the allowlist.
  await page.goto(shopUrl('localhost'));
  await until('the token request', () => refusals.length === 1);
  assert.deepEqual(refusals, [403]);
  await page.click('#roomcast-widget >> .launcher');
  await until('the refusal in the banner', async () => (await widgetText(page, '.banner > span')) === 'This chat is not available.');
  assert.equal(await page.evaluate(() => window.roomcastWidget.client), undefined, 'no client, no socket');
  await sleep(1500);
  assert.equal(sockets, 0);
  assert.equal(refusals.length, 1, 'not asked again');
  assert.deepEqual(await axeViolations(page), [], 'axe-core: the refused widget');
});

test('no agent online: the visitor leaves name and email, which agents see in the conversation list', { timeout: 90000 }, async (t) => {
  const { page, room, user } = await visitor(t);
  assert.equal(await widgetText(page, '.agent'), "We'll reply by email");
  assert.ok(await isShown(page, '.intro form'), 'the form is shown');
  assert.match(await widgetText(page, '.intro'), /We'll reply by email\. Leave your name and email address:/);
  assert.deepEqual(await axeViolations(page), [], 'axe-core: the email form');
  // An implausible address is refused by the server, in words.
  await page.fill('#roomcast-widget >> #rc-name', 'Zoë Ünal');
  await page.fill('#roomcast-widget >> #rc-email', 'zoe@localhost');
  await page.click('#roomcast-widget >> .who button');
  await until('the refusal in words', async () => (await widgetText(page, '.who .err')) === 'Please check the email address.');
  await page.fill('#roomcast-widget >> #rc-email', 'Zoe@Example.COM');
  await page.click('#roomcast-widget >> .who button');
  await until('the address in the widget', async () => (await widgetText(page, '.intro'))?.includes("We'll reply by email to Zoe@example.com."));
  assert.equal(await isShown(page, '.intro form'), false, 'not asked again');
  await say(page, 'Is the tent waterproof?');
  await page.screenshot({ path: screenshotPath('widget-email.png') });

  const ann = await agent(t);
  const list = await until('the visitor in the list', async () => {
    const r = await ann.ask({ action: 'conversations', filter: 'all', query: 'zoe' });
    return r.items?.find((i) => i.room === room) && r;
  });
  const item = list.items.find((i) => i.room === room);
  assert.equal(item.visitor, user);
  assert.equal(item.name, 'Zoë Ünal');
  assert.equal(item.email, 'Zoe@example.com');

  // After a reload the desk still has them: nothing is asked again.
  await page.reload();
  await until('the widget to connect again', () => page.evaluate(() => window.roomcastWidget?.client?.state === 'connected'));
  assert.equal(await isShown(page, '.intro form'), false);
});

test('outside office hours the reply comes by email, even with an agent online', { timeout: 60000 }, async (t) => {
  const ann = await agent(t);
  await ann.ask({ action: 'availability', status: 'online' });
  const { page } = await visitor(t, '/shop?after-hours');
  assert.equal(await widgetText(page, '.agent'), "We'll reply by email");
  assert.ok(await isShown(page, '.intro form'), 'name and email asked');
  await ann.ask({ action: 'availability', status: 'offline' });
});

test('a signed-in page passes name and email: the desk gets them without asking', { timeout: 60000 }, async (t) => {
  const { page, room } = await visitor(t, '/shop?signed-in');
  assert.equal(await isShown(page, '.intro form'), false);
  assert.match(await widgetText(page, '.intro'), /We'll reply by email to sam@example\.com\./);
  await say(page, 'Hello, signed in');
  const ann = await agent(t);
  const item = await until('the signed-in visitor in the list', async () => (await ann.ask({ action: 'conversations', filter: 'all' })).items?.find((i) => i.room === room && i.email));
  assert.deepEqual([item.name, item.email], ['Sam Signed', 'sam@example.com']);
  // And the page can tell it later.
  const reply = await page.evaluate(() => window.RoomcastWidget.identify({ name: 'Sam S.' }));
  assert.equal(reply.name, 'Sam S.');
});

test('an agent closes the conversation: the visitor rates it, is thanked, and starts a new one', { timeout: 90000 }, async (t) => {
  const { page, room, user } = await visitor(t);
  await say(page, 'My stove is broken');
  const ann = await agent(t);
  assert.equal((await ann.ask({ action: 'assign', room })).status, 'assigned');
  assert.equal((await ann.ask({ action: 'close', room })).status, 'closed');
  await until('the close in the widget', async () => (await widgetText(page, '.agent')) === 'Conversation closed');
  await until('the rating prompt', () => isShown(page, '.rate'));
  assert.equal(await widgetText(page, '#rc-rate'), 'How was this conversation?');
  const scores = await inWidget(page, (root) => [...root.querySelectorAll('.rate [role=group] button')].map((b) => b.getAttribute('aria-label')));
  assert.deepEqual(scores, [1, 2, 3, 4, 5].map((n) => `Rate ${n} out of 5`));
  assert.deepEqual(await axeViolations(page), [], 'axe-core: the rating prompt');

  await page.getByRole('button', { name: 'Rate 4 out of 5' }).click();
  assert.equal(await page.getByRole('button', { name: 'Rate 4 out of 5' }).getAttribute('aria-pressed'), 'true');
  await page.getByLabel('Comment (optional)').fill('Quick and kind');
  await page.screenshot({ path: screenshotPath('widget-rating.png') });
  await page.getByRole('button', { name: 'Send rating' }).click();
  await until('the thanks', async () => (await widgetText(page, '.rate [role=status]')) === 'Thank you for your feedback!');
  const rating = (await server.history(room)).find((m) => m.from === '$system' && m.meta?.kind === 'rating');
  assert.equal(rating.meta.score, 4);
  assert.equal(rating.meta.comment, 'Quick and kind');
  assert.equal(rating.meta.by, user);

  // "Start a new conversation": the prompt goes, the composer has focus, the next message reopens.
  await page.getByRole('button', { name: 'Start a new conversation' }).click();
  assert.equal(await isShown(page, '.rate'), false);
  assert.equal(await inWidget(page, (root) => root.activeElement?.getAttribute('aria-label')), 'Message');
  await say(page, 'One more question');
  await until('the conversation to reopen', async () => (await widgetText(page, '.agent')) !== 'Conversation closed');
  assert.equal(await isShown(page, '.rate'), false);
  const statuses = (await server.history(room)).filter((m) => m.from === '$system' && m.meta?.kind === 'status').map((m) => m.meta.status);
  assert.equal(statuses.at(-1) === 'waiting' || statuses.at(-1) === 'assigned', true, `reopened: ${statuses}`);
});

test('an agent blocks the visitor: close code 4003, the chat says it is no longer available and does not reconnect', { timeout: 90000 }, async (t) => {
  const { page, user } = await visitor(t);
  let sockets = 0;
  page.on('websocket', () => sockets++);
  await say(page, 'spam spam spam');
  const ann = await agent(t);
  const reply = await ann.ask({ action: 'block', user });
  assert.deepEqual([reply.type, reply.user, reply.blocked], ['blocked', user, true]);
  await until('the widget to stop', () => page.evaluate(() => window.roomcastWidget.client.state === 'forbidden'));
  assert.ok((await page.evaluate(() => window.roomcastWidget.client.stats.closes)).includes(4003));
  await until('the banner', async () => (await widgetText(page, '.banner > span')) === 'This chat is no longer available.');
  assert.equal(await isShown(page, '.composer'), false, 'nothing to write in');
  assert.equal(await isShown(page, '.banner button'), false, 'no "Reconnect now"');
  await sleep(3000);
  assert.equal(sockets, 0, 'no reconnect');
  await page.screenshot({ path: screenshotPath('widget-blocked.png') });
  // A reload asks for a token again: refused (403), said the same way.
  const refusals = [];
  page.on('response', (r) => r.url().endsWith('/embed/token') && refusals.push(r.status()));
  await page.reload();
  await until('the refused token', () => refusals.length === 1);
  assert.deepEqual(refusals, [403]);
  await until('the refusal in the banner', async () => (await widgetText(page, '.banner > span')) === 'This chat is not available.');
});
