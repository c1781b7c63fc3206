// A visitor (the widget on /demo) and an agent (/console), in two browser contexts of real
// headless Chromium, against the real roomcast-local binary.
import test from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { Server, launch, repo, screenshotPath, sleep, until, widgetItems } from './harness.js';

/** The console pane's list items for `room`. */
function paneItems(page, room) {
  return page.evaluate(
    (room) =>
      [...document.querySelectorAll(`.pane[data-room="${room}"] .list li`)].map((li) => ({
        seq: li.dataset.seq ? Number(li.dataset.seq) : null,
        status: li.dataset.status || null,
        system: li.classList.contains('sys'),
        mine: li.classList.contains('me'),
        body: li.classList.contains('sys') ? li.textContent : li.querySelector('.bubble')?.textContent,
      })),
    room,
  );
}

const widgetText = (page, sel) => page.evaluate((sel) => document.querySelector('#roomcast-widget').shadowRoot.querySelector(sel)?.textContent ?? null, sel);
const widgetState = (page) => page.evaluate(() => window.roomcastWidget.client.state);
const consoleState = (page) => page.evaluate(() => window.roomcastConsole.client.state);
const bodiesOf = (items) => items.filter((i) => !i.system).map((i) => i.body);

/** Seqs strictly increasing, each body once. */
function assertOrderedUnique(items, where) {
  const seqs = items.filter((i) => i.seq != null).map((i) => i.seq);
  for (let i = 1; i < seqs.length; i++) assert.ok(seqs[i] > seqs[i - 1], `${where}: seqs out of order or doubled: ${seqs}`);
  const bodies = bodiesOf(items);
  assert.equal(new Set(bodies).size, bodies.length, `${where}: a message is shown twice: ${JSON.stringify(bodies)}`);
}

test('visitor and agent converse; the server is killed and restarted; nothing is lost or doubled', { timeout: 240000 }, async (t) => {
  const server = await Server.start();
  const browser = await launch();
  t.after(async () => {
    await browser.close();
    await server.stop();
  });
  const agentCtx = await browser.newContext({ viewport: { width: 1200, height: 760 } });
  const visitorCtx = await browser.newContext({ viewport: { width: 1000, height: 760 } });
  // The offline reload below serves the page through Playwright, with no IP address: Chromium
  // then treats it as a public page and asks before it may reach loopback. Say yes up front.
  await visitorCtx.grantPermissions(['local-network-access'], { origin: server.base });
  // The visitor's sockets pass through this proxy to the real server, so the test can lose an
  // acknowledgement together with the connection (the message is stored, the client never hears).
  let loseNextAck = false;
  const lostAcks = [];
  await visitorCtx.routeWebSocket(/.*/, (ws) => {
    const upstream = ws.connectToServer();
    ws.onMessage((m) => upstream.send(m));
    upstream.onMessage((m) => {
      if (loseNextAck && JSON.parse(m).type === 'ack') {
        loseNextAck = false;
        lostAcks.push(JSON.parse(m));
        upstream.close();
        ws.close({ code: 1011, reason: 'network drop' });
        return;
      }
      ws.send(m);
    });
    ws.onClose(() => upstream.close());
    upstream.onClose((code, reason) => ws.close({ code, reason }));
  });
  const agent = await agentCtx.newPage();
  const visitor = await visitorCtx.newPage();
  for (const [name, page] of [['agent', agent], ['visitor', visitor]]) {
    page.on('pageerror', (e) => console.error(`[${name} page error]`, e));
  }

  // The agent is away: no conversation is auto-assigned (protocol.md §15), so it waits until accepted.
  await agent.addInitScript(() => localStorage.setItem('roomcast:console:ann:availability', JSON.stringify({ status: 'away', capacity: 3 })));
  await agent.goto(`${server.base}/console?agent=ann`);
  await until('the console to connect', async () => (await consoleState(agent)) === 'connected');
  await visitor.goto(`${server.base}/demo`);
  await until('the widget to connect', async () => (await widgetState(visitor)) === 'connected');
  const room = await visitor.evaluate(() => window.roomcastWidget.room);
  assert.match(room, /^support-[0-9a-f]{24}$/);

  // The visitor opens the widget and writes: the conversation is waiting in the agent's inbox.
  await visitor.click('#roomcast-widget >> .launcher');
  assert.equal(await visitor.evaluate(() => document.querySelector('#roomcast-widget').shadowRoot.activeElement?.tagName), 'TEXTAREA', 'focus moves to the composer');
  await visitor.fill('#roomcast-widget >> textarea', 'Hello, my order A-17 is late');
  await visitor.press('#roomcast-widget >> textarea', 'Enter');
  await until('the first message to be acknowledged', async () => (await widgetItems(visitor)).some((i) => i.mine && i.status === 'sent'));
  const queued = agent.locator(`#queue li[data-room="${room}"]`);
  await queued.waitFor({ timeout: 20000 });

  // The agent accepts: the pane opens with the visitor's message, and the visitor sees the agent.
  await queued.locator('button.accept').click();
  await until('the pane to show the visitor message', async () => bodiesOf(await paneItems(agent, room)).includes('Hello, my order A-17 is late'));
  await until('the pane status to be assigned', async () => (await agent.getAttribute(`.pane[data-room="${room}"]`, 'data-status')) === 'assigned');
  await until('the visitor to see the assignment', async () => (await widgetItems(visitor)).some((i) => i.system && i.body === 'ann joined the conversation'));
  await until('the agent presence in the widget header', async () => (await widgetText(visitor, '.agent')) === 'ann is online');
  // The agent's pane is open and scrolled down: the message is read, and the visitor sees "Seen".
  await until('"Seen" under the visitor message', async () => {
    const items = await widgetItems(visitor);
    return items.some((i) => i.mine && i.status === 'seen' && i.seen);
  });

  // Typing shows on the other side, and goes away when the message arrives.
  const paneInput = agent.locator(`.pane[data-room="${room}"] textarea`);
  await paneInput.pressSequentially('Let me check that for you', { delay: 20 });
  await until('the visitor to see the agent typing', async () => (await widgetText(visitor, '.typing')) === 'ann is typing…');
  await paneInput.press('Enter');
  await until('the agent reply in the widget', async () => bodiesOf(await widgetItems(visitor)).includes('Let me check that for you'));
  await until('the typing line to clear', async () => (await widgetText(visitor, '.typing')) === '');
  await visitor.locator('#roomcast-widget >> textarea').pressSequentially('Thanks', { delay: 20 });
  const visitorUser = await visitor.evaluate(() => window.roomcastWidget.client.user);
  await until('the agent to see the visitor typing', async () => (await agent.textContent(`.pane[data-room="${room}"] .typing`)) === `${visitorUser} is typing…`);
  // "Thanks" is stored, but its ack is lost with the connection: the widget reconnects, resends
  // it with the same id, and the server answers with a duplicate ack instead of storing it again.
  loseNextAck = true;
  await visitor.press('#roomcast-widget >> textarea', 'Enter');
  await until('the ack to be lost', async () => lostAcks.length === 1);
  await until('"Thanks" at the agent', async () => bodiesOf(await paneItems(agent, room)).includes('Thanks'));
  await until('"Thanks" acknowledged after the reconnect', async () => (await widgetItems(visitor)).some((i) => i.body === 'Thanks' && i.seq === lostAcks[0].seq));
  await visitor.screenshot({ path: screenshotPath('widget.png') });

  // kill -9 mid-conversation. Both sides write while it is down; the visitor even reloads the
  // page (served from elsewhere meanwhile: the outbox must survive in localStorage).
  await server.kill9();
  await until('the widget banner', async () => (await widgetText(visitor, '.banner'))?.startsWith('Connection lost'));
  await until('the console banner', async () => (await agent.textContent('#banner'))?.startsWith('Connection lost'));
  await visitor.fill('#roomcast-widget >> textarea', 'Are you still there?');
  await visitor.press('#roomcast-widget >> textarea', 'Enter');
  await paneInput.fill('Found it: it ships tomorrow');
  await paneInput.press('Enter');
  await until('pending ticks on both sides', async () => {
    const v = (await widgetItems(visitor)).find((i) => i.body === 'Are you still there?');
    const a = (await paneItems(agent, room)).find((i) => i.body === 'Found it: it ships tomorrow');
    return v?.status === 'pending' && a?.status === 'pending';
  });
  const dist = join(repo, 'widget/dist');
  await visitorCtx.route('**/demo', (r) => r.fulfill({ contentType: 'text/html', body: readFileSync(join(dist, 'demo.html')) }));
  await visitorCtx.route('**/widget.js', (r) => r.fulfill({ contentType: 'text/javascript', body: readFileSync(join(dist, 'widget.js')) }));
  await visitor.reload();
  await until('the unsent message to be back after the reload', async () => {
    const v = (await widgetItems(visitor)).find((i) => i.body === 'Are you still there?');
    return v && (v.status === 'pending' || v.status === 'failed');
  });
  await visitor.screenshot({ path: screenshotPath('widget-offline.png') });
  await visitorCtx.unrouteAll();

  await server.restart();
  await until('the widget to resume', async () => (await widgetState(visitor)) === 'connected', 45000);
  await until('the console to resume', async () => (await consoleState(agent)) === 'connected', 45000);
  await until('the widget banner to go', async () => (await widgetText(visitor, '.banner')) === '' || (await visitor.evaluate(() => document.querySelector('#roomcast-widget').shadowRoot.querySelector('.banner').hidden)));
  const expected = ['Hello, my order A-17 is late', 'Let me check that for you', 'Thanks', 'Are you still there?', 'Found it: it ships tomorrow'];
  await until('both offline messages on both sides, acknowledged', async () => {
    const v = await widgetItems(visitor);
    const a = await paneItems(agent, room);
    return [v, a].every((items) => expected.every((b) => items.some((i) => i.body === b && i.seq != null)));
  });
  // And the conversation goes on.
  await visitor.fill('#roomcast-widget >> textarea', 'Great, thank you!');
  await visitor.press('#roomcast-widget >> textarea', 'Enter');
  await until('the last message at the agent', async () => bodiesOf(await paneItems(agent, room)).includes('Great, thank you!'));
  expected.push('Great, thank you!');

  // Nothing lost, nothing doubled: the DOM on both sides and the server's history agree.
  await sleep(500);
  const stored = await server.history(room);
  const storedSeqs = stored.map((m) => m.seq);
  assert.deepEqual(storedSeqs, storedSeqs.map((_, i) => i + 1), 'stored seqs are gap-free');
  const storedBodies = stored.filter((m) => m.from !== '$system').map((m) => m.body);
  assert.deepEqual([...storedBodies].sort(), [...expected].sort(), 'every message stored exactly once');
  for (const [where, items] of [['widget', await widgetItems(visitor)], ['console', await paneItems(agent, room)]]) {
    assertOrderedUnique(items, where);
    assert.deepEqual(
      items.map((i) => [i.seq, i.system ? null : i.body]),
      stored.map((m) => [m.seq, m.from === '$system' ? null : m.body]),
      `${where} shows exactly the stored history, in order`,
    );
  }

  // The agent closes the conversation.
  await agent.screenshot({ path: screenshotPath('console.png') });
  await agent.click(`.pane[data-room="${room}"] button.close-conv`);
  await until('the visitor to see the close', async () => (await widgetItems(visitor)).some((i) => i.system && i.body === 'Conversation closed'));
  await until('the widget header', async () => (await widgetText(visitor, '.agent')) === 'Conversation closed');
  assert.equal(await agent.getAttribute(`.pane[data-room="${room}"]`, 'data-status'), 'closed');
  assert.equal(await agent.locator(`#queue li[data-room="${room}"]`).count(), 0, 'no longer waiting');
  const statuses = (await server.history(room)).filter((m) => m.from === '$system').map((m) => m.meta.status);
  assert.deepEqual(statuses, ['waiting', 'assigned', 'closed']);
});

test('the widget works on a 360-px screen and from the keyboard', { timeout: 120000 }, async (t) => {
  const server = await Server.start();
  const browser = await launch();
  t.after(async () => {
    await browser.close();
    await server.stop();
  });
  const ctx = await browser.newContext({ viewport: { width: 360, height: 640 }, isMobile: true, hasTouch: true });
  const page = await ctx.newPage();
  page.on('pageerror', (e) => console.error('[page error]', e));
  await page.goto(`${server.base}/demo`);
  await until('the widget to connect', async () => (await widgetState(page)) === 'connected');
  const active = () => page.evaluate(() => {
    const host = document.querySelector('#roomcast-widget');
    if (document.activeElement !== host) return document.activeElement?.tagName;
    const el = host.shadowRoot.activeElement;
    return el ? `${el.tagName}.${el.className}` : 'host';
  });
  for (let i = 0; i < 10 && (await active()) !== 'BUTTON.launcher'; i++) await page.keyboard.press('Tab');
  assert.equal(await active(), 'BUTTON.launcher', 'the launcher is reachable with Tab');
  await page.keyboard.press('Enter');
  assert.equal(await active(), 'TEXTAREA.', 'Enter opens the chat with focus in the composer');
  assert.equal(await page.getAttribute('#roomcast-widget >> .launcher', 'aria-expanded'), 'true');
  const log = page.locator('#roomcast-widget >> .log');
  assert.equal(await log.getAttribute('role'), 'log');
  assert.equal(await log.getAttribute('aria-live'), 'polite');
  await page.keyboard.type('Typed with the keyboard only');
  await page.keyboard.press('Enter');
  await until('the message to be sent', async () => (await widgetItems(page)).some((i) => i.body === 'Typed with the keyboard only' && i.status === 'sent'));
  const box = await page.locator('#roomcast-widget >> .panel').boundingBox();
  assert.ok(box.x >= 0 && box.x + box.width <= 360 && box.width >= 340, `panel fits: ${JSON.stringify(box)}`);
  const composer = await page.locator('#roomcast-widget >> .send').boundingBox();
  assert.ok(composer.x + composer.width <= 360, 'send button on screen');
  assert.ok(await page.evaluate(() => document.documentElement.scrollWidth <= 360), 'no horizontal scrolling');
  await page.screenshot({ path: screenshotPath('widget-360.png') });
  await page.keyboard.press('Escape');
  assert.equal(await page.getAttribute('#roomcast-widget >> .launcher', 'aria-expanded'), 'false');
  assert.equal(await active(), 'BUTTON.launcher', 'Escape closes and returns focus to the launcher');
});
