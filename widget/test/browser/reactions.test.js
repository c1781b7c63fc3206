// Reactions and replies (protocol 1.1) in real Chromium against the real server: two widget
// users (a reply with its quote, a reaction seen live, a chip clicked to add one's own, the
// counts and the quote again after a reload, the quote shown deleted once its original is), and
// the agent console reacting and replying to a visitor, with axe-core clean on both sides.
import test from 'node:test';
import assert from 'node:assert/strict';
import { Server, axeViolations, launch, until } from './harness.js';

const page = (attrs) => `<!doctype html><html lang="en"><meta charset="utf-8"><title>test</title><body><main><h1>Shop</h1></main><script src="/widget.js" ${attrs}></script></body></html>`;

/**
 * A message as shown (`scope`: the widget, or a console pane): its text, its quote, and its
 * reaction buttons as "emoji count" with whether they are pressed.
 */
function shown(p, scope, text) {
  return p.evaluate(
    ([scope, text]) => {
      const root = scope === 'widget' ? document.querySelector('#roomcast-widget').shadowRoot : document.querySelector(scope);
      const li = [...root.querySelectorAll('li.msg')].find((l) => l.querySelector('.bubble')?.textContent === text);
      if (!li) return null;
      return {
        seq: Number(li.dataset.seq),
        quote: li.querySelector('.quote')?.textContent ?? null,
        reactions: [...li.querySelectorAll('.reacts [data-emoji]')].map((b) => `${b.textContent}${b.getAttribute('aria-pressed') === 'true' ? ' (mine)' : ''}`),
      };
    },
    [scope, text],
  );
}

/** A page with the widget open for `user` in `room`. */
async function widgetPage(browser, server, user, room) {
  const ctx = await browser.newContext();
  await ctx.grantPermissions(['local-network-access'], { origin: server.base });
  await ctx.route('**/shop', (r) => r.fulfill({ contentType: 'text/html', body: page(`data-token-url="/dev/token?user=${user}&amp;rooms=${room}" data-room="${room}" data-open="true"`) }));
  const p = await ctx.newPage();
  p.on('pageerror', (e) => console.error(`[${user} page error]`, e));
  await p.goto(`${server.base}/shop`);
  await until(`${user}'s widget to connect`, async () => (await p.evaluate(() => window.roomcastWidget.client?.state)) === 'connected');
  return p;
}

const W = '#roomcast-widget';

test('two widget users: a reply quoted, a reaction live, a chip toggled, after a reload, the original deleted', { timeout: 120000 }, async (t) => {
  const server = await Server.start();
  const browser = await launch();
  t.after(async () => {
    await browser.close();
    await server.stop();
  });
  const room = 'chat-1';
  const alice = await widgetPage(browser, server, 'alice', room);
  const bob = await widgetPage(browser, server, 'bob', room);

  await alice.fill(`${W} textarea`, 'Lunch at noon?');
  await alice.press(`${W} textarea`, 'Enter');
  const original = await until('bob sees alice\'s message', () => shown(bob, 'widget', 'Lunch at noon?'));
  assert.deepEqual(original.reactions, ['👍', '❤️', '😂'], 'the quick picks, none used yet');

  // Bob replies: the bar above the composer names alice; alice sees the quote.
  await bob.click(`${W} li[data-seq="${original.seq}"] button[aria-label="Reply"]`);
  assert.equal(await bob.textContent(`${W} .replying span`), 'Replying to alice');
  await bob.fill(`${W} textarea`, 'Yes, noon works.');
  await bob.press(`${W} textarea`, 'Enter');
  assert.ok(await bob.locator(`${W} .replying`).isHidden(), 'the bar goes once the reply is sent');
  await until('alice sees the reply quoting her', async () => (await shown(alice, 'widget', 'Yes, noon works.'))?.quote === 'alice: Lunch at noon?');
  await until('bob sees his own reply quoting her', async () => (await shown(bob, 'widget', 'Yes, noon works.'))?.quote === 'alice: Lunch at noon?');
  const sent = await server.history(room);
  assert.deepEqual(sent[1].reply_to, { seq: original.seq, from: 'alice', preview: 'Lunch at noon?' });

  // Bob reacts 👍: alice sees the count live; she clicks the chip to add hers.
  await bob.click(`${W} li[data-seq="${original.seq}"] button[data-emoji="👍"]`);
  await until('alice sees bob\'s 👍', async () => (await shown(alice, 'widget', 'Lunch at noon?')).reactions[0] === '👍 1');
  await alice.click(`${W} li[data-seq="${original.seq}"] button[data-emoji="👍"]`);
  await until('alice\'s own 👍 counted and highlighted', async () => (await shown(alice, 'widget', 'Lunch at noon?')).reactions[0] === '👍 2 (mine)');
  await until('bob sees both, his highlighted', async () => (await shown(bob, 'widget', 'Lunch at noon?')).reactions[0] === '👍 2 (mine)');
  assert.deepEqual(await axeViolations(alice), [], 'axe-core: the widget with reactions and a reply');

  // After a reload, the history shows the counts and the quote.
  await alice.reload();
  await until('alice\'s history shows the counts', async () => (await shown(alice, 'widget', 'Lunch at noon?'))?.reactions.join() === '👍 2 (mine),❤️,😂');
  assert.equal((await shown(alice, 'widget', 'Yes, noon works.')).quote, 'alice: Lunch at noon?');

  // Alice deletes the original: the quote says so, live and in a fresh history.
  await alice.evaluate(([r, seq]) => window.roomcastWidget.client.remove(r, seq), [room, original.seq]);
  await until('bob sees the quote deleted, live', async () => (await shown(bob, 'widget', 'Yes, noon works.')).quote === 'alice: message deleted');
  await bob.reload();
  await until('bob\'s fresh history shows the quote deleted', async () => (await shown(bob, 'widget', 'Yes, noon works.'))?.quote === 'alice: message deleted');
  assert.equal(await bob.locator(`${W} li[data-seq="${original.seq}"] .reacts`).count(), 0, 'a deleted message has no reactions to show or add');
});

test('the agent console reacts and replies to a visitor', { timeout: 120000 }, async (t) => {
  const server = await Server.start();
  const browser = await launch();
  t.after(async () => {
    await browser.close();
    await server.stop();
  });
  const room = 'support-v1';
  const ctx = await browser.newContext({ viewport: { width: 1280, height: 800 } });
  const agent = await ctx.newPage();
  agent.on('pageerror', (e) => console.error('[agent page error]', e));
  await agent.goto(`${server.base}/console?agent=ann`);
  await until('the console to connect', () => agent.evaluate(() => window.roomcastConsole?.client?.state === 'connected'));
  const visitor = await widgetPage(browser, server, 'v1', room);
  await visitor.fill(`${W} textarea`, 'My order is late');
  await visitor.press(`${W} textarea`, 'Enter');

  // Online with room to spare: the desk gives ann the conversation and its pane opens.
  const pane = `.pane[data-room="${room}"]`;
  const asked = await until('the visitor\'s message in ann\'s pane', () => shown(agent, pane, 'My order is late'));
  await agent.click(`${pane} li[data-seq="${asked.seq}"] button[data-emoji="❤️"]`);
  await until('the visitor sees ann\'s ❤️', async () => (await shown(visitor, 'widget', 'My order is late')).reactions[0] === '❤️ 1');
  await until('ann sees hers highlighted', async () => (await shown(agent, pane, 'My order is late')).reactions[0] === '❤️ 1 (mine)');

  await agent.click(`${pane} li[data-seq="${asked.seq}"] button[aria-label="Reply"]`);
  await agent.fill(`${pane} textarea`, 'Checking it now.');
  await agent.press(`${pane} textarea`, 'Enter');
  await until('the visitor sees the reply quoting them', async () => (await shown(visitor, 'widget', 'Checking it now.'))?.quote === 'v1: My order is late');

  // The visitor reacts to the reply; ann sees it; clicking her chip again takes hers back.
  const reply = await shown(visitor, 'widget', 'Checking it now.');
  await visitor.click(`${W} li[data-seq="${reply.seq}"] button[data-emoji="👍"]`);
  await until('ann sees the visitor\'s 👍', async () => (await shown(agent, pane, 'Checking it now.')).reactions[0] === '👍 1');
  await agent.click(`${pane} li[data-seq="${asked.seq}"] button[data-emoji="❤️"]`);
  await until('the visitor sees ann\'s ❤️ taken back', async () => (await shown(visitor, 'widget', 'My order is late')).reactions.join() === '👍,❤️,😂');
  assert.deepEqual(await axeViolations(agent), [], 'axe-core: the console with reactions and a reply');
});
