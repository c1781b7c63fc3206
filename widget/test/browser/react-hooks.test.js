// Every hook of roomcast/react in real Chromium against the real server (apps/hooks.tsx, in
// strict mode): a visitor and an agent; the desk's queue and accept, typing, presence, unread
// counts and "seen", reactions and a reply, and a room's view unmounted (left, listeners gone)
// and mounted again.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Server, launch, until } from './harness.js';
import { appContext, bundleReactApp } from './react-harness.js';

const here = dirname(fileURLToPath(import.meta.url));
const ROOM = 'support-v1';

const text = (page, selector) => page.textContent(selector);
const items = (page, selector) => page.$$eval(selector, (lis) => lis.map((li) => ({ ...li.dataset, text: li.textContent })));

test('React hooks: desk, typing, presence, read state, reactions and replies, unmount and remount', async (t) => {
  const server = await Server.start();
  const browser = await launch();
  t.after(async () => {
    await browser.close();
    await server.stop();
  });
  const bundle = await bundleReactApp({ contents: readFileSync(join(here, 'apps/hooks.tsx'), 'utf8') });
  const agent = await appContext(browser, server, bundle);
  const visitor = await appContext(browser, server, bundle);

  // The agent (offline at the desk, so nothing is auto-assigned) watches the inbox and the room.
  await agent.page.goto(`${server.base}/app?user=ann&role=agent&rooms=support-*,inbox&room=${ROOM}`);
  await agent.page.waitForSelector('main[data-state=connected]');
  await visitor.page.goto(`${server.base}/app?user=v1&role=user&rooms=${ROOM}&room=${ROOM}`);
  await visitor.page.waitForSelector('main[data-state=connected]');

  // useSend and useDesk: the visitor's message puts the conversation in the queue; accepted.
  await visitor.page.fill('#compose', 'help please');
  await visitor.page.press('#compose', 'Enter');
  await until('the conversation waiting on the desk', async () => (await items(agent.page, '#desk li')).some((c) => c.room === ROOM && c.status === 'waiting'));
  await agent.page.click(`#desk li[data-room="${ROOM}"] button`);
  await until('accepted', async () => (await items(agent.page, '#desk li')).some((c) => c.room === ROOM && c.status === 'assigned'));

  // useTyping: the visitor types, the agent sees who.
  await visitor.page.fill('#compose', 'one more thin');
  await until('the agent sees the visitor typing', async () => (await text(agent.page, '#typing')) === 'v1');

  // usePresence: the visitor's room lists the agent, online.
  await until('the agent among the members', async () => (await text(visitor.page, '#members')).split(',').includes('ann:online'));

  // useReadState: unread for the agent until read; then the visitor's message shows as seen.
  await until('unread for the agent', async () => Number(await text(agent.page, '#unread')) >= 1);
  await agent.page.click('#read');
  await until('read', async () => (await text(agent.page, '#unread')) === '0');
  await until('"seen" on the visitor\'s side', async () => (await items(visitor.page, 'section li')).some((m) => m.text === 'help please' && m.status === 'seen'));

  // useReactions: the visitor reacts to their message, the agent sees the count live and adds
  // theirs; the visitor takes theirs back. useSend with replyTo: the agent's reply quotes it.
  const first = (page) => items(page, 'section li').then((l) => l.find((m) => m.text === 'help please'));
  await visitor.page.click('#react');
  await until('the agent sees the visitor\'s 👍', async () => (await first(agent.page))?.reactions === '👍:1:v1');
  await agent.page.click('#react');
  await until('the visitor sees both', async () => (await first(visitor.page))?.reactions === '👍:2:v1+ann');
  await visitor.page.click('#unreact');
  await until('the agent sees the visitor\'s taken back', async () => (await first(agent.page))?.reactions === '👍:1:ann');
  await agent.page.click('#reply');
  await until('the visitor sees the reply with its quote', async () => (await items(visitor.page, 'section li')).some((m) => m.text === 'on it' && m.reply === 'v1:help please'));

  // Unmounting the room's view leaves the room and drops its listeners; mounting it again
  // rejoins and shows each message once.
  const listeners = () => visitor.page.evaluate(() => window.client.handlers.get('change')?.size ?? 0);
  const mounted = await listeners();
  await visitor.page.click('#toggle');
  await until('the room left', () => visitor.page.evaluate((room) => window.client.room(room).state === 'left', ROOM));
  const socket = visitor.net.sockets.at(-1);
  assert.equal(socket.count('leave', ROOM), 1);
  assert.ok((await listeners()) < mounted, 'the room view\'s listeners are gone');
  await agent.page.fill('#compose', 'are you there?');
  await agent.page.press('#compose', 'Enter');
  await visitor.page.click('#toggle');
  const shown = await until('back in the room, caught up', async () => {
    const l = await items(visitor.page, 'section li');
    return l.some((m) => m.text === 'are you there?') && l;
  });
  const seqs = shown.map((m) => Number(m.seq));
  assert.deepEqual(seqs, [...new Set(seqs)].sort((a, b) => a - b), 'each message once, in order');
  assert.equal(await listeners(), mounted);
  // Strict mode ran every effect twice: one join on mount, one on remount, nothing doubled.
  assert.equal(socket.count('join', ROOM), 2);
  assert.equal(agent.net.sockets.length, 1);
  assert.equal(agent.net.sockets[0].count('join', 'inbox'), 1);
  assert.equal(agent.net.sockets[0].count('join', ROOM), 1);
});
