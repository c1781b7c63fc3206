// examples/support-bot against the real roomcast-local binary (with --webhook-allow-private, so
// the bot's loopback endpoint is accepted) and real headless Chromium: a visitor asks in the
// widget and the bot answers; asks for a person and the bot hands off; the agent console shows
// the conversation waiting; the agent accepts; the visitor writes again and the bot says nothing
// more. The bot runs as its README says (a service token from `roomcast-local token`, the
// Python of a venv made from examples/support-bot/requirements.txt: ROOMCAST_SUPPORT_BOT_PYTHON,
// which scripts/widget.sh sets). Bot and agent messages are labelled in both UIs, and axe-core
// finds no accessibility violation in either.
import test from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { createServer } from 'node:net';
import { join } from 'node:path';
import { Server, axeViolations, cliToken, launch, repo, screenshotPath, sleep, until } from './harness.js';

const PYTHON = process.env.ROOMCAST_SUPPORT_BOT_PYTHON;

/** A free loopback port (the bot binds it just after). */
function freePort() {
  return new Promise((ok, fail) => {
    const probe = createServer();
    probe.once('error', fail);
    probe.listen(0, '127.0.0.1', () => {
      const { port } = probe.address();
      probe.close(() => ok(port));
    });
  });
}

/** Starts the bot; resolves once its endpoint is registered. `log()` is what it has printed. */
async function startBot(env) {
  const child = spawn(PYTHON, [join(repo, 'examples/support-bot/bot.py')], { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
  process.on('exit', () => child.kill('SIGKILL'));
  let out = '';
  child.stdout.on('data', (d) => (out += d));
  child.stderr.on('data', (d) => (out += d));
  const exited = new Promise((r) => child.once('exit', r));
  await until('the bot to register its endpoint', async () => {
    if (child.exitCode !== null) throw new Error(`the bot exited (${child.exitCode}): ${out}`);
    return out.includes('listening on');
  });
  return {
    log: () => out,
    /** SIGTERM: the bot deletes its endpoint and exits. */
    stop: async () => {
      if (child.exitCode === null) child.kill('SIGTERM');
      await exited;
    },
  };
}

/** The widget's messages with who wrote them, from its shadow root. */
const widgetMessages = (page) =>
  page.evaluate(() =>
    [...document.querySelector('#roomcast-widget').shadowRoot.querySelectorAll('.list li.msg')].map((li) => ({
      author: li.dataset.author,
      mine: li.classList.contains('me'),
      badge: li.querySelector('.who .tag')?.textContent ?? null,
      body: li.querySelector('.bubble')?.textContent,
      background: getComputedStyle(li.querySelector('.bubble')).backgroundColor,
    })),
  );

/** The console pane's messages for `room`, with who wrote them. */
const paneMessages = (page, room) =>
  page.evaluate(
    (room) =>
      [...document.querySelectorAll(`.pane[data-room="${room}"] .list li.msg`)].map((li) => ({
        author: li.dataset.author,
        badge: li.querySelector('.who .tag')?.textContent ?? null,
        body: li.querySelector('.bubble')?.textContent,
      })),
    room,
  );

test('the support bot answers in the widget, hands off to a person, and goes quiet once an agent accepts', { timeout: 180000 }, async (t) => {
  assert.ok(PYTHON, 'ROOMCAST_SUPPORT_BOT_PYTHON: a Python with the packages of examples/support-bot/requirements.txt (scripts/widget.sh makes one)');
  const server = await Server.start(['--webhook-allow-private']);
  const browser = await launch();
  let bot = null;
  t.after(async () => {
    await bot?.stop();
    await browser.close();
    await server.stop();
  });
  // As examples/support-bot/README.md runs it: a service token of the demo tenant.
  const token = cliToken(['--user', 'support-bot', '--tenant', 'demo', '--role', 'service', '--rooms', 'support-*']);
  const port = await freePort();
  bot = await startBot({ ROOMCAST_URL: server.base, ROOMCAST_SERVICE_TOKEN: token, BOT_LISTEN: `127.0.0.1:${port}` });

  const agent = await (await browser.newContext({ viewport: { width: 1200, height: 760 } })).newPage();
  const visitor = await (await browser.newContext({ viewport: { width: 1000, height: 760 } })).newPage();
  for (const [name, page] of [['agent', agent], ['visitor', visitor]]) page.on('pageerror', (e) => console.error(`[${name} page error]`, e));
  // The agent is away: no conversation is auto-assigned (protocol.md §15), so it waits until accepted.
  await agent.addInitScript(() => localStorage.setItem('roomcast:console:ann:availability', JSON.stringify({ status: 'away', capacity: 3 })));
  await agent.goto(`${server.base}/console?agent=ann`);
  await until('the console to connect', () => agent.evaluate(() => window.roomcastConsole.client.state === 'connected'));
  await visitor.goto(`${server.base}/demo`);
  await until('the widget to connect', () => visitor.evaluate(() => window.roomcastWidget.client.state === 'connected'));
  const room = await visitor.evaluate(() => window.roomcastWidget.room);

  const say = async (text) => {
    await visitor.fill('#roomcast-widget >> textarea', text);
    await visitor.press('#roomcast-widget >> textarea', 'Enter');
  };
  const botLines = async () => (await widgetMessages(visitor)).filter((m) => m.author === 'service');

  // A question the bot knows: its answer shows as a bot's.
  await visitor.click('#roomcast-widget >> .launcher');
  await say('Hi, where is my order?');
  const [answer] = await until('the bot to answer in the widget', async () => {
    const lines = await botLines();
    return lines.length === 1 && lines;
  });
  assert.match(answer.body, /Orders ship within 1 business day/);
  assert.equal(answer.badge, 'Bot', 'the answer is labelled as a bot');
  assert.equal(answer.mine, false);
  const mine = (await widgetMessages(visitor)).find((m) => m.mine);
  assert.notEqual(answer.background, mine.background, "a bot's bubble looks unlike the visitor's");

  // Asking for a person: the bot says so once; the conversation waits for an agent.
  await say('Can I talk to a human, please?');
  await until('the hand-off', async () => (await botLines()).some((m) => /getting a person/.test(m.body)));
  await until('the widget header', () => visitor.evaluate(() => document.querySelector('#roomcast-widget').shadowRoot.querySelector('.agent').textContent === 'Waiting for an agent…'));
  const queued = agent.locator(`#queue li[data-room="${room}"]`);
  await queued.waitFor({ timeout: 20000 });
  await visitor.screenshot({ path: screenshotPath('widget-bot.png') });
  assert.deepEqual(await axeViolations(visitor), [], 'axe-core: the widget with bot messages');

  // The agent accepts: the pane shows the bot's lines as a bot's.
  await queued.locator('button.accept').click();
  await until('the pane to be assigned', async () => (await agent.getAttribute(`.pane[data-room="${room}"]`, 'data-status')) === 'assigned');
  await until('the bot lines in the pane', async () => (await paneMessages(agent, room)).filter((m) => m.author === 'service').length === 2);
  const paneBot = (await paneMessages(agent, room)).find((m) => m.author === 'service');
  assert.equal(paneBot.badge, 'Bot', 'the console labels the bot too');

  // The visitor writes again: the agent hears it, the bot stays silent.
  await say('Thanks! My order number is A-17.');
  await until('the message at the agent', async () => (await paneMessages(agent, room)).some((m) => m.body === 'Thanks! My order number is A-17.'));
  await until('the bot to see an agent has the conversation', () => bot.log().includes(`${room}: an agent has the conversation; staying quiet`));
  const paneInput = agent.locator(`.pane[data-room="${room}"] textarea`);
  await paneInput.fill('Hi, Ann here: A-17 left our warehouse today.');
  await paneInput.press('Enter');
  const agentLine = await until('the agent reply in the widget', async () => (await widgetMessages(visitor)).find((m) => m.author === 'agent'));
  assert.equal(agentLine.badge, 'Support', "the agent's reply is labelled");
  await sleep(1000);
  assert.equal((await botLines()).length, 2, 'nothing more from the bot in the widget');
  const stored = await server.history(room);
  const roles = stored.map((m) => [m.from === '$system' ? '$system' : m.role, m.from === 'helpbot' ? 'bot' : m.from === '$system' ? m.meta.status : m.body]);
  assert.deepEqual(
    roles,
    [
      ['user', 'Hi, where is my order?'],
      ['$system', 'waiting'],
      ['service', 'bot'],
      ['user', 'Can I talk to a human, please?'],
      ['service', 'bot'],
      ['$system', 'assigned'],
      ['user', 'Thanks! My order number is A-17.'],
      ['agent', 'Hi, Ann here: A-17 left our warehouse today.'],
    ],
    'the stored conversation: two bot answers, none after the agent took over',
  );
  await agent.screenshot({ path: screenshotPath('console-bot.png') });
  assert.deepEqual(await axeViolations(agent), [], 'axe-core: the console with bot and agent messages');
});
