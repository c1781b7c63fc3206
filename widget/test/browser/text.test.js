// Text in the widget (issue 19) in real Chromium against the real server: links are clickable
// only for http/https (noopener noreferrer, a new tab); a right-to-left override in one message
// cannot reorder the next; a body of invisible characters is not sent; the byte counter near the
// limit; the composer grows with its text; the offline banner comes and goes; axe-core stays clean.
import test from 'node:test';
import assert from 'node:assert/strict';
import { Server, axeViolations, launch, until, widgetItems } from './harness.js';

const page = (attrs) => `<!doctype html><html lang="en"><meta charset="utf-8"><title>test</title><body><main><h1>Shop</h1></main><script src="/widget.js" ${attrs}></script></body></html>`;

test('links, bidi isolation, invisible bodies, the counter, the growing composer and the offline banner', { timeout: 120000 }, async (t) => {
  const server = await Server.start();
  const browser = await launch();
  t.after(async () => {
    await browser.close();
    await server.stop();
  });
  const ctx = await browser.newContext();
  await ctx.grantPermissions(['local-network-access'], { origin: server.base });
  await ctx.route('**/shop', (r) =>
    r.fulfill({ contentType: 'text/html', body: page('data-token-url="/dev/token?user=visitor-{visitor}&amp;rooms=support-{visitor}" data-room="support-{visitor}" data-open="true"') }),
  );
  const p = await ctx.newPage();
  p.on('pageerror', (e) => console.error('[page error]', e));
  await p.goto(`${server.base}/shop`);
  await until('the widget to connect', async () => (await p.evaluate(() => window.roomcastWidget.client.state)) === 'connected');
  const ta = '#roomcast-widget >> textarea';
  const send = async (body) => {
    await p.fill(ta, body);
    await p.press(ta, 'Enter');
  };
  const hint = () => p.evaluate(() => { const el = document.querySelector('#roomcast-widget').shadowRoot.querySelector('.hint'); return el.hidden ? '' : el.textContent; });

  // Links: https is a link to a new tab without opener or referrer; javascript: and data: stay text.
  await send('docs: https://example.com/help?a=1. Not javascript:alert(document.domain) nor data:text/html,<script>alert(1)</script>');
  await send('\u202Eevil override');
  await send('hello after');
  await until('the three messages sent', async () => (await widgetItems(p)).filter((i) => i.status === 'sent').length === 3);
  const links = await p.evaluate(() =>
    [...document.querySelector('#roomcast-widget').shadowRoot.querySelectorAll('.bubble a')].map((a) => ({ href: a.getAttribute('href'), rel: a.rel, target: a.target, text: a.textContent })),
  );
  assert.deepEqual(links, [{ href: 'https://example.com/help?a=1', rel: 'noopener noreferrer', target: '_blank', text: 'https://example.com/help?a=1' }]);
  const items = (await widgetItems(p)).filter((i) => !i.system);
  assert.ok(items[0].body.includes('javascript:alert(document.domain)') && items[0].body.includes('<script>alert(1)</script>'), 'the rest is shown as text');
  assert.equal(await p.evaluate(() => document.querySelector('#roomcast-widget').shadowRoot.querySelectorAll('.bubble script').length), 0);

  // Bidi: each bubble is isolated; the override does not reorder the next message.
  const bidi = await p.evaluate(() => {
    const bubbles = [...document.querySelector('#roomcast-widget').shadowRoot.querySelectorAll('.bubble')];
    const next = bubbles[2];
    const x = (i) => {
      const r = document.createRange();
      r.setStart(next.firstChild, i);
      r.setEnd(next.firstChild, i + 1);
      return r.getBoundingClientRect().left;
    };
    return { dirs: bubbles.map((b) => b.getAttribute('dir')), isolate: getComputedStyle(bubbles[1]).unicodeBidi, text: next.textContent, ltr: x(0) < x(next.textContent.length - 1) };
  });
  assert.deepEqual(bidi.dirs, ['auto', 'auto', 'auto']);
  assert.equal(bidi.isolate, 'isolate');
  assert.equal(bidi.text, 'hello after');
  assert.ok(bidi.ltr, 'the message after an override still reads left to right');

  // A body of invisible characters only: not sent, and said so.
  await send('\u200b\u202e\u2066');
  assert.match(await hint(), /invisible/);
  assert.equal((await widgetItems(p)).filter((i) => !i.system).length, 3, 'nothing sent');

  // The counter from 90 % of 16384 bytes; over the limit nothing is sent.
  await p.fill(ta, 'a'.repeat(100));
  assert.equal(await hint(), '', 'no counter far from the limit');
  await p.fill(ta, 'é'.repeat(7500)); // 15000 bytes
  assert.equal(await hint(), '1384 bytes left.');
  await p.fill(ta, 'a'.repeat(16390));
  assert.match(await hint(), /^Too long: 6 bytes over/);
  await p.press(ta, 'Enter');
  assert.equal((await widgetItems(p)).filter((i) => !i.system).length, 3, 'a body over the limit is not sent');
  assert.equal((await p.inputValue(ta)).length, 16390, 'and the text is kept');

  // The composer grows with its lines, up to a maximum.
  await p.fill(ta, 'one');
  const h1 = await p.evaluate(() => document.querySelector('#roomcast-widget').shadowRoot.querySelector('textarea').offsetHeight);
  await p.fill(ta, 'one\ntwo\nthree');
  const h3 = await p.evaluate(() => document.querySelector('#roomcast-widget').shadowRoot.querySelector('textarea').offsetHeight);
  await p.fill(ta, 'x\n'.repeat(40));
  const hMax = await p.evaluate(() => document.querySelector('#roomcast-widget').shadowRoot.querySelector('textarea').offsetHeight);
  assert.ok(h3 > h1, `grows: ${h1} → ${h3}`);
  assert.ok(hMax <= 122 && hMax >= h3, `up to a maximum: ${hMax}`);
  await p.fill(ta, '');

  // Offline: a banner that says so, gone when back online.
  const banner = () => p.evaluate(() => { const b = document.querySelector('#roomcast-widget').shadowRoot.querySelector('.banner'); return b.hidden ? '' : b.textContent; });
  await ctx.setOffline(true);
  await until('the offline banner', async () => /offline/.test(await banner()));
  assert.deepEqual(await axeViolations(p), [], 'axe-core: the widget offline, with links');
  await ctx.setOffline(false);
  await until('the banner gone once back online', async () => (await banner()) === '');
});

test('the console: the token leaves the address bar, no favicon request, errors inline', { timeout: 60000 }, async (t) => {
  const server = await Server.start();
  const browser = await launch();
  t.after(async () => {
    await browser.close();
    await server.stop();
  });
  const ctx = await browser.newContext();
  const p = await ctx.newPage();
  const missing = [];
  p.on('response', (r) => r.status() === 404 && missing.push(r.url()));
  const dialogs = [];
  p.on('dialog', (d) => dialogs.push(d.message()) && d.dismiss());
  const token = await server.token({ user: 'ann', role: 'agent', rooms: 'support-*,inbox' });
  await p.goto(`${server.base}/console#token=${token}`);
  await until('the console to connect', async () => (await p.evaluate(() => window.roomcastConsole.client.state)) === 'connected');
  assert.equal(await p.evaluate(() => location.hash), '', 'the token is gone from the URL');
  assert.equal(await p.evaluate(() => location.pathname), '/console');
  assert.deepEqual(missing, [], 'no 404 (favicon included)');
  assert.equal(await p.locator('link[rel=icon]').count(), 1);
  assert.deepEqual(dialogs, []);
});
