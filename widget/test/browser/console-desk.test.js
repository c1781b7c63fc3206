// The agent side of the support desk (protocol.md §15, "Routing, agents and visitors") in the
// console: two agents (ann, bob) in two browser contexts of real headless Chromium, online with
// capacity 1 each, and three visitors (raw WebSockets with dev tokens, from a third context)
// against the real roomcast-local binary. Round-robin assignment, the third visitor waiting in
// both consoles, transfer, unassign, block (confirmed inline), moderation delete, notifications
// (desktop, counted by wrapping window.Notification; the title count), names isolated, axe-core.
import test from 'node:test';
import assert from 'node:assert/strict';
import { Server, axeViolations, launch, screenshotPath, until } from './harness.js';


/** Before the console loads: capacity 1, and every desktop notification recorded. */
function consoleInit([agent, status]) {
  const key = `roomcast:console:${agent}:availability`;
  if (!localStorage.getItem(key)) localStorage.setItem(key, JSON.stringify({ status, capacity: 1 }));
  window.__notes = [];
  const Real = window.Notification;
  class Recorded extends Real {
    constructor(title, o) {
      super(title, o);
      window.__notes.push({ title, body: o?.body });
    }
  }
  Object.defineProperty(Recorded, 'permission', { get: () => Real.permission });
  Recorded.requestPermission = (...a) => Real.requestPermission(...a);
  window.Notification = Recorded;
}

/** In the visitors' page: a raw WebSocket visitor that identifies, joins its room and writes. */
function visitorScript() {
  window.visitors = {};
  window.visit = (user, token, name, email) =>
    new Promise((ok, fail) => {
      const ws = new WebSocket(`ws://${location.host}/`, ['roomcast.v1', token]);
      const v = { ws, frames: [], closed: null, n: 0 };
      window.visitors[user] = v;
      ws.onmessage = (e) => v.frames.push(JSON.parse(e.data));
      ws.onclose = (e) => (v.closed = e.code);
      ws.onerror = () => fail(new Error('socket error'));
      ws.onopen = () => {
        ws.send(JSON.stringify({ action: 'identify', name, email, ref: 'i1' }));
        ws.send(JSON.stringify({ action: 'join', room: `support-${user}`, ref: 'j1' }));
        ok();
      };
    });
  window.say = (user, body) =>
    new Promise((ok, fail) => {
      const v = window.visitors[user];
      const id = `${user}-${++v.n}-${Date.now()}`;
      v.ws.send(JSON.stringify({ action: 'message', room: `support-${user}`, id, body }));
      const t0 = Date.now();
      const poll = setInterval(() => {
        const f = v.frames.find((f) => (f.type === 'ack' && f.id === id) || (f.type === 'error' && f.ref === id));
        if (f || Date.now() - t0 > 10000) {
          clearInterval(poll);
          f?.type === 'ack' ? ok(f.seq) : fail(new Error(`not acknowledged: ${JSON.stringify(f)}`));
        }
      }, 50);
    });
}

const consoleState = (page) => page.evaluate(() => window.roomcastConsole.client.state);
const agentState = (page) => page.textContent('#agent-state');
/** Whose the pane of `room` is in this console: 'mine', 'other', 'none' (no pane). */
const paneOf = (page, room) =>
  page.evaluate((room) => {
    const p = document.querySelector(`.pane[data-room="${room}"]`);
    return p ? (p.hasAttribute('data-mine') ? 'mine' : `other:${p.dataset.status}`) : 'none';
  }, room);
const inQueue = (page, room) => page.locator(`#queue li[data-room="${room}"]`).count();
const notes = (page) => page.evaluate(() => window.__notes);

test('two agents, three visitors: round-robin, waiting, transfer, unassign, block, delete, notifications, isolated names, axe', { timeout: 180000 }, async (t) => {
  const server = await Server.start();
  const browser = await launch();
  t.after(async () => {
    await browser.close();
    await server.stop();
  });
  const pages = {};
  for (const agent of ['ann', 'bob']) {
    const ctx = await browser.newContext({ viewport: { width: 1280, height: 800 } });
    await ctx.grantPermissions(['notifications'], { origin: server.base });
    await ctx.addInitScript(consoleInit, [agent, 'online']);
    const page = await ctx.newPage();
    page.on('pageerror', (e) => console.error(`[${agent} page error]`, e));
    page.on('console', (m) => m.type() === 'error' && console.error(`[${agent} console]`, m.text()));
    page.on('dialog', (d) => assert.fail(`a dialog was opened: ${d.message()}`));
    await page.goto(`${server.base}/console?agent=${agent}`);
    pages[agent] = page;
  }
  const { ann, bob } = pages;
  for (const [agent, page] of Object.entries(pages)) {
    await until(`${agent}'s console to connect`, async () => (await consoleState(page)) === 'connected');
    await until(`${agent} online with capacity 1`, async () => (await agentState(page)) === 'online · 0 of 1 conversations');
    assert.equal(await page.inputValue('#capacity'), '1');
    assert.equal(await page.inputValue('#availability'), 'online');
    assert.ok(await page.locator('#notify').isHidden(), 'notifications already allowed: no "Enable" button');
  }

  const visitorCtx = await browser.newContext();
  const visitors = await visitorCtx.newPage();
  await visitors.goto(`${server.base}/health`);
  await visitors.evaluate(visitorScript);
  // v1's name is right-to-left (Hebrew) and v2's carries a zero-width space and an override,
  // which the desk strips: each must sit isolated in a <bdi> wherever it is shown.
  const who = {
    v1: ['שרה כהן', 'sara@example.com'],
    v2: ['Zo\u200Bë \u202Eevil', 'zoe@example.com'],
    v3: ['Vic Three', 'vic@example.com'],
  };
  for (const [user, [name, email]] of Object.entries(who)) {
    const token = await server.token({ user, role: 'user', rooms: `support-${user}` });
    await visitors.evaluate(([u, tk, n, e]) => window.visit(u, tk, n, e), [user, token, name, email]);
  }

  // Visitor 1 writes: auto-assigned to one agent; visitor 2: to the other (round-robin).
  await visitors.evaluate(() => window.say('v1', 'Hello from visitor one'));
  const owner1 = await until('v1 assigned to an agent', async () => ((await paneOf(ann, 'support-v1')) === 'mine' ? 'ann' : (await paneOf(bob, 'support-v1')) === 'mine' ? 'bob' : null));
  const [x, y] = owner1 === 'ann' ? [ann, bob] : [bob, ann];
  const [xName, yName] = owner1 === 'ann' ? ['ann', 'bob'] : ['bob', 'ann'];
  await visitors.evaluate(() => window.say('v2', 'Hello from visitor two'));
  await until('v2 assigned to the other agent', async () => (await paneOf(y, 'support-v2')) === 'mine');
  assert.notEqual(await paneOf(x, 'support-v2'), 'mine');
  await until('both at capacity', async () => (await agentState(x)) === 'online · 1 of 1 conversations' && (await agentState(y)) === 'online · 1 of 1 conversations');

  // Visitor 3 writes: nobody can take it, so it waits, listed in both consoles, with a
  // notification and the count in the title.
  await visitors.evaluate(() => window.say('v3', 'Hello from visitor three'));
  for (const page of [ann, bob]) {
    await until('v3 waiting in the list', async () => (await inQueue(page, 'support-v3')) === 1);
    const item = page.locator('#queue li[data-room="support-v3"]');
    await until('the list entry details', async () => (await item.locator('.name').textContent()) === 'Vic Three');
    assert.equal(await item.locator('.email').textContent(), 'vic@example.com');
    assert.equal(await item.locator('.last').textContent(), 'Hello from visitor three');
    assert.match(await item.locator('.when').textContent(), /^waiting <1 min$/);
    assert.equal(await item.locator('.badge').textContent(), '1 unread');
    assert.equal(await page.textContent('#waiting-count'), '1');
    await until('a desktop notification for the waiting visitor', async () => (await notes(page)).some((n) => n.title === 'A visitor is waiting' && n.body === '\u2068Vic Three\u2069'));
    await until('the title count', async () => (await page.title()).startsWith('(1) roomcast agent console'));
  }
  // Search: the query narrows the list (the desk filters it).
  await x.fill('#search', 'vic@');
  await until('only v3 matches', async () => (await x.locator('#queue li[data-room]').count()) === 1 && (await x.locator('#mine li[data-room]').count()) === 0);
  await x.fill('#search', '');
  await until('the list back', async () => (await x.locator('#mine li[data-room]').count()) === 1);

  // Names isolated in the list, the pane headers, the message lines.
  const v1Name = await x.locator('#mine li[data-room="support-v1"] .name');
  assert.equal(await v1Name.evaluate((el) => el.tagName), 'BDI');
  assert.equal(await v1Name.textContent(), 'שרה כהן');
  const header = x.locator('.pane[data-room="support-v1"] h3 bdi');
  assert.equal(await header.textContent(), 'שרה כהן');
  assert.equal(await x.textContent('.pane[data-room="support-v1"] h3 .room'), 'support-v1');
  await until('the message line named by the visitor\'s name', async () => (await x.locator('.pane[data-room="support-v1"] li.msg .who bdi').first().textContent()) === 'שרה כהן');
  const v2Name = y.locator('.pane[data-room="support-v2"] h3 bdi');
  await until('v2 named in its pane', async () => (await v2Name.textContent()).startsWith('Zo'));
  assert.ok(!/[\u200B\u202E]/.test(await v2Name.textContent()), 'invisible and override characters are not shown');
  assert.equal(await y.locator('#mine li[data-room="support-v2"] .name').evaluate((el) => el.tagName), 'BDI');

  // A visitor's message in an agent's own conversation notifies that agent.
  await visitors.evaluate(() => window.say('v1', 'Are you there?'));
  await until('a notification for the message', async () => (await notes(x)).some((n) => n.title === 'Message from \u2068שרה כהן\u2069' && n.body === 'Are you there?'));
  assert.ok(!(await notes(y)).some((n) => n.body === 'Are you there?'), 'not the other agent');

  // Transfer v1 to the other agent: now theirs (over their capacity); this agent's place frees
  // and the waiting v3 is given to them.
  const pane1 = x.locator('.pane[data-room="support-v1"]');
  await until('the other agent offered', async () => (await pane1.locator('select.transfer-to option').allTextContents()).some((o) => o.startsWith(yName)));
  await pane1.locator('select.transfer-to').selectOption(yName);
  await pane1.locator('button.transfer').click();
  await until('v1 now the other agent\'s', async () => (await paneOf(y, 'support-v1')) === 'mine');
  await until('v1 no longer this agent\'s', async () => (await paneOf(x, 'support-v1')) === 'other:assigned');
  await until('the pane names the new agent, isolated', async () => (await x.textContent('.pane[data-room="support-v1"] .status bdi')) === yName);
  await until('v3 given to the freed agent', async () => (await paneOf(x, 'support-v3')) === 'mine');
  await until('nobody waiting', async () => (await inQueue(ann, 'support-v3')) + (await inQueue(bob, 'support-v3')) === 0);
  await until('a notification for the conversation given', async () => (await notes(x)).some((n) => n.title === 'New conversation for you' && n.body === '\u2068Vic Three\u2069'));
  await until('a notification for the transfer', async () => (await notes(y)).some((n) => n.title === 'New conversation for you' && n.body === '\u2068שרה כהן\u2069'));

  // Unassign: back to the queue, waiting in both consoles (both agents are at capacity).
  await y.locator('.pane[data-room="support-v1"] button.unassign').click();
  for (const page of [ann, bob]) await until('v1 waiting again', async () => (await inQueue(page, 'support-v1')) === 1);
  assert.equal(await paneOf(y, 'support-v1'), 'other:waiting');
  await until('the title count again', async () => (await x.title()).startsWith('(1) '));

  // Moderation: the agent deletes the visitor's message in their conversation.
  const pane3 = x.locator('.pane[data-room="support-v3"]');
  const msg3 = pane3.locator('li.msg', { hasText: 'Hello from visitor three' });
  const seq3 = Number(await msg3.getAttribute('data-seq'));
  await msg3.locator('button.del').click();
  await until('the tombstone', async () => (await pane3.locator(`li.msg[data-seq="${seq3}"] em`).count()) === 1);
  const stored = (await server.history('support-v3')).find((m) => m.seq === seq3);
  assert.equal(stored?.meta?.deleted_by, xName, `the tombstone names the agent: ${JSON.stringify(stored)}`);

  // Block, confirmed inline: the visitor's socket closes with 4003.
  await pane3.locator('button.block').click();
  const confirm = pane3.locator('.confirm');
  assert.ok(await confirm.isVisible());
  assert.match(await confirm.textContent(), /^Block Vic Three\?/);
  await pane3.locator('button.block-yes').click();
  await until('the visitor disconnected', async () => (await visitors.evaluate(() => window.visitors.v3.closed)) === 4003);
  await until('the button offers to unblock', async () => (await pane3.locator('button.block').textContent()) === 'Unblock visitor');
  assert.ok(await x.locator('p.error').isHidden(), 'no error shown');

  // A refusal is said inline: unassigning a conversation that is no longer this agent's.
  // (The button is hidden once the conversation is not theirs; clicked from script.)
  await y.evaluate(() => document.querySelector('.pane[data-room="support-v1"] button.unassign').click());
  await until('the inline error', async () => (await y.textContent('p.error')) === 'Could not unassign שרה כהן: CONFLICT');
  assert.equal(await y.textContent('p.error bdi'), 'שרה כהן', 'the name isolated in the error too');

  // Mute: persisted, told to the desk (shown back), and no tone or desktop notification after.
  await x.click('#mute');
  assert.equal(await x.getAttribute('#mute', 'aria-pressed'), 'true');
  await until('muted at the desk', async () => (await agentState(x)).endsWith(' · muted'));
  assert.equal(await x.evaluate((k) => localStorage.getItem(k), `roomcast:console:${xName}:muted`), '1');
  // The same agent in another browser (nothing stored there) follows the desk's choice.
  const elsewhereCtx = await browser.newContext();
  await elsewhereCtx.addInitScript(consoleInit, [xName, 'online']);
  const elsewhere = await elsewhereCtx.newPage();
  await elsewhere.goto(`${server.base}/console?agent=${xName}`);
  await until('muted there too', async () => (await elsewhere.getAttribute('#mute', 'aria-pressed')) === 'true');
  await elsewhereCtx.close();
  // The agent accepts v1 by hand (over their capacity: manual assignment still works).
  await x.locator('#queue li[data-room="support-v1"] button.accept').click();
  await until('v1 this agent\'s again', async () => (await paneOf(x, 'support-v1')) === 'mine');
  const heard = (await notes(x)).length;
  await visitors.evaluate(() => window.say('v1', 'Still there?'));
  await until('the message in the pane', async () => (await x.locator('.pane[data-room="support-v1"] .bubble', { hasText: 'Still there?' }).count()) === 1);
  await new Promise((r) => setTimeout(r, 500));
  assert.equal((await notes(x)).length, heard, 'muted: no desktop notification');

  // Capacity from the control: sent, shown back, remembered over a reload.
  await y.fill('#capacity', '2');
  await y.press('#capacity', 'Enter');
  await until('capacity 2 at the desk', async () => (await agentState(y)) === 'online · 1 of 2 conversations');
  await y.reload();
  await until('the console back', async () => (await consoleState(y)) === 'connected');
  assert.equal(await y.inputValue('#capacity'), '2');
  await until('the desk still says 2', async () => (await agentState(y)) === 'online · 1 of 2 conversations');

  await x.screenshot({ path: screenshotPath('console-desk.png') });
  for (const page of [ann, bob]) assert.deepEqual(await axeViolations(page), [], 'axe-core: the console');

  // A console whose notifications are not allowed yet offers to enable them (a user gesture).
  const carlCtx = await browser.newContext({ viewport: { width: 1000, height: 760 } });
  await carlCtx.addInitScript(consoleInit, ['carl', 'away']);
  const carl = await carlCtx.newPage();
  await carl.goto(`${server.base}/console?agent=carl`);
  await until('carl away', async () => (await agentState(carl)) === 'away · 0 of 1 conversations');
  assert.ok(await carl.getByRole('button', { name: 'Enable notifications' }).isVisible());
  await until('the waiting visitor is none', async () => (await carl.textContent('#waiting-count')) === '0');
  assert.equal(await carl.title(), 'roomcast agent console', 'nothing to count');
  assert.deepEqual(await axeViolations(carl), [], 'axe-core: the console with the enable button');
});
