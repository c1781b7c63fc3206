// The README's React snippet, built as written (esbuild, React's development build, so strict
// mode runs every effect twice) and served on the real server's origin: two users chat, one
// is cut off and catches up without loss or duplicates, and history pages back. Prints the time
// from page load to the first live message shown.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Server, launch, until } from './harness.js';
import { appContext, bundleReactApp } from './react-harness.js';
import { reactSnippet } from '../readme.js';

const ROOM = 'lobby';
const OLDER = 40; // more than a page (30): the first join shows the newest 30, the rest is paged

/** The list as shown: seq (null while unacknowledged), sender, body, status. */
const shown = (page) =>
  page.$$eval('li', (lis) => lis.map((li) => ({ seq: li.dataset.seq ? Number(li.dataset.seq) : null, from: li.querySelector('b')?.textContent, body: li.childNodes[2]?.textContent, status: li.dataset.status || null })));

async function say(page, text) {
  await page.fill('input[aria-label=Message]', text);
  await page.press('input[aria-label=Message]', 'Enter');
}

test('React snippet: two users chat, a dropped one catches up, history pages back', async (t) => {
  const server = await Server.start();
  const browser = await launch();
  t.after(async () => {
    await browser.close();
    await server.stop();
  });
  const bundle = await bundleReactApp({ contents: reactSnippet() });
  const bob = await appContext(browser, server, bundle);
  const alice = await appContext(browser, server, bundle);

  // Bob writes more than a page before Alice arrives.
  await bob.page.goto(`${server.base}/app?user=bob`);
  await bob.page.waitForSelector('main[data-state=connected]');
  for (let i = 1; i <= OLDER; i++) await say(bob.page, `older ${i}`);
  await until('bob: his messages acknowledged', async () => {
    const l = await shown(bob.page);
    return l.length === OLDER && l.every((m) => m.seq && m.status !== 'pending');
  });

  // Alice opens the app; once she is connected Bob says hello: the time from her page load to the
  // message on her screen is measured in her page.
  await alice.page.addInitScript(() => {
    new MutationObserver((_, observer) => {
      if ([...document.querySelectorAll('li')].some((li) => li.textContent.includes('live hello'))) {
        window.firstLiveAt = performance.now();
        observer.disconnect();
      }
    }).observe(document, { childList: true, subtree: true });
  });
  await alice.page.goto(`${server.base}/app?user=alice`);
  await alice.page.waitForSelector('main[data-state=connected]');
  const connectedAt = await alice.page.evaluate(() => performance.now());
  await say(bob.page, 'live hello');
  const firstLiveAt = await until('alice: the live message', () => alice.page.evaluate(() => window.firstLiveAt));
  console.log(`React snippet: page load to connected ${connectedAt.toFixed(0)} ms, to the first live message shown ${firstLiveAt.toFixed(0)} ms`);

  // The newest page, then the older one on demand: every message once, in order.
  let l = await until('alice: the newest page and the live message', async () => {
    const got = await shown(alice.page);
    return got.length === 31 && got;
  });
  assert.deepEqual(
    l.map((m) => m.seq),
    Array.from({ length: 31 }, (_, i) => OLDER - 29 + i),
  );
  await alice.page.click('text=Load older');
  l = await until('alice: history paged back', async () => {
    const got = await shown(alice.page);
    return got.length === OLDER + 1 && got;
  });
  assert.deepEqual(
    l.map((m) => m.body),
    [...Array.from({ length: OLDER }, (_, i) => `older ${i + 1}`), 'live hello'],
  );
  assert.equal(await alice.page.$('text=Load older'), null, 'nothing older is left');

  // Alice answers: pending, then acknowledged, and Bob sees it.
  await say(alice.page, 'hi bob');
  await until('bob: alice answered', async () => (await shown(bob.page)).some((m) => m.body === 'hi bob' && m.from === 'alice'));
  await until('alice: her answer acknowledged', async () => (await shown(alice.page)).some((m) => m.body === 'hi bob' && m.seq && m.status === 'sent'));

  // Alice's network drops and stays down while Bob writes; she comes back and catches up.
  alice.net.refuse = true;
  alice.net.sockets.at(-1).cut();
  await alice.page.waitForSelector('main[data-state=reconnecting]');
  for (let i = 1; i <= 5; i++) await say(bob.page, `while away ${i}`);
  await until('bob: written while alice was away', async () => (await shown(bob.page)).filter((m) => m.body.startsWith('while away') && m.seq).length === 5);
  alice.net.refuse = false;
  await alice.page.waitForSelector('main[data-state=connected]', { timeout: 30000 });
  const stored = await server.history(ROOM);
  const want = stored.map((m) => ({ seq: m.seq, from: m.from, body: m.body }));
  const got = await until('alice: caught up', async () => {
    const now = await shown(alice.page);
    return now.length === want.length && now;
  });
  assert.deepEqual(
    got.map(({ seq, from, body }) => ({ seq, from, body })),
    want,
    'everything the server stored, once each, in order',
  );
  assert.equal(stored.length, OLDER + 1 + 1 + 5);

  // Strict mode ran every effect twice: still one socket at a time, and one join per socket.
  assert.equal(alice.net.sockets.length, 2, 'one socket, then one after the drop');
  assert.deepEqual(
    alice.net.sockets.map((s) => s.count('join')),
    [1, 1],
  );
  assert.deepEqual(
    bob.net.sockets.map((s) => s.count('join')),
    [1],
  );
});
