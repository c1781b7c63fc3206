// Test harness: the real roomcast-local binary (kill -9 and restart on the same port and data
// directory) and Debian's Chromium driven by playwright-core.
import { execFileSync, spawn } from 'node:child_process';
import { mkdtempSync, rmSync, mkdirSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

const here = dirname(fileURLToPath(import.meta.url));
export const repo = resolve(here, '../../..');
export const BIN = process.env.ROOMCAST_BIN || join(repo, 'target/debug/roomcast-local');
export const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';
const SECRET = 'widget-browser-test-secret-0123456789abcdef';

// Servers die with this process, however it ends (a timeout's SIGTERM included).
const live = new Set();
process.on('exit', () => live.forEach((c) => c.kill('SIGKILL')));
for (const signal of ['SIGINT', 'SIGTERM']) process.once(signal, () => process.exit(130));

/** Where screenshots go: ROOMCAST_SCREENSHOTS (docs/img with `widget.sh --screenshots`), else target/. */
export function screenshotPath(name) {
  const dir = process.env.ROOMCAST_SCREENSHOTS || join(repo, 'target/widget-screenshots');
  mkdirSync(dir, { recursive: true });
  return join(dir, name);
}

export class Server {
  constructor(dataDir, flags, env) {
    this.dataDir = dataDir;
    this.flags = flags;
    this.env = env;
    this.port = 0;
    this.child = null;
  }

  /** `env`: ROOMCAST_* settings on top of this process's environment. */
  static async start(flags = [], env = {}) {
    const s = new Server(mkdtempSync(join(tmpdir(), 'roomcast-widget-')), flags, env);
    await s.run();
    return s;
  }

  get base() {
    return `http://127.0.0.1:${this.port}`;
  }

  run() {
    const args = ['serve', '--host', '127.0.0.1', '--port', String(this.port), '--data-dir', this.dataDir, '--jwt-secret', SECRET, '--dev-tokens', ...this.flags];
    const child = spawn(BIN, args, { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, ...this.env } });
    this.child = child;
    live.add(child);
    child.once('exit', () => live.delete(child));
    let err = '';
    child.stderr.on('data', (d) => (err = (err + d).slice(-4000)));
    return new Promise((ok, fail) => {
      const timer = setTimeout(() => fail(new Error(`server did not start: ${err}`)), 30000);
      let out = '';
      child.stdout.on('data', (d) => {
        out += d;
        const m = out.match(/listening on http:\/\/127\.0\.0\.1:(\d+)/);
        if (m) {
          clearTimeout(timer);
          this.port = Number(m[1]);
          ok(this);
        }
      });
      child.on('exit', (code) => {
        clearTimeout(timer);
        fail(new Error(`server exited (${code}): ${err}`));
      });
    });
  }

  /** SIGKILL: no shutdown, no close frames; sockets just die. */
  async kill9() {
    const child = this.child;
    if (!child || child.exitCode !== null) return;
    const gone = new Promise((r) => child.once('exit', r));
    child.kill('SIGKILL');
    await gone;
  }

  /** Starts again on the same port and data directory (retrying while the port is released). */
  async restart() {
    for (let i = 0; ; i++) {
      try {
        return await this.run();
      } catch (e) {
        if (i >= 20) throw e;
        await sleep(100);
      }
    }
  }

  async stop() {
    await this.kill9();
    rmSync(this.dataDir, { recursive: true, force: true });
  }

  async token(params) {
    const r = await fetch(`${this.base}/dev/token?${new URLSearchParams(params)}`);
    if (!r.ok) throw new Error(`dev token: ${r.status}`);
    return (await r.json()).token;
  }

  /** Every stored message of a room, over the HTTP API. */
  async history(room) {
    const token = await this.token({ user: 'auditor', role: 'agent', rooms: `${room},inbox` });
    const all = [];
    let after = 0;
    for (;;) {
      const r = await fetch(`${this.base}/rooms/${room}/messages?after=${after}&limit=100`, { headers: { authorization: `Bearer ${token}` } });
      if (!r.ok) throw new Error(`history: ${r.status}`);
      const page = await r.json();
      all.push(...page.messages);
      if (!page.more || !page.messages.length) return all;
      after = page.messages[page.messages.length - 1].seq;
    }
  }

  async metrics() {
    return (await fetch(`${this.base}/metrics`)).text();
  }
}

export function launch() {
  return chromium.launch({
    executablePath: CHROMIUM,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  });
}

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** Polls `fn` until it returns a truthy value; fails with `what` and the last value. */
export async function until(what, fn, timeoutMs = 20000) {
  const deadline = Date.now() + timeoutMs;
  let last;
  for (;;) {
    try {
      last = await fn();
      if (last) return last;
    } catch (e) {
      last = e;
    }
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what} (last: ${last instanceof Error ? last.message : JSON.stringify(last)})`);
    await sleep(100);
  }
}

/** The widget's list items, read from its shadow root. */
export function widgetItems(page) {
  return page.evaluate(() =>
    [...document.querySelector('#roomcast-widget').shadowRoot.querySelectorAll('.list li')].map((li) => ({
      seq: li.dataset.seq ? Number(li.dataset.seq) : null,
      status: li.dataset.status || null,
      system: li.classList.contains('sys'),
      mine: li.classList.contains('me'),
      body: li.classList.contains('sys') ? li.textContent : li.querySelector('.bubble')?.textContent,
      seen: Boolean(li.querySelector('.seen')),
    })),
  );
}

/** Mints a token with the server binary's `token` command (e.g. role service, which /dev/token refuses). */
export function cliToken(args) {
  return execFileSync(BIN, ['token', '--jwt-secret', SECRET, ...args], { encoding: 'utf8' }).trim();
}

const AXE = readFileSync(join(repo, 'widget/node_modules/axe-core/axe.min.js'), 'utf8');

/**
 * axe-core's violations on `page`, as "rule: help (targets)" (the widget's open shadow root
 * included). Evaluated through the DevTools protocol, so the pages' CSP (this origin's scripts
 * only) does not apply to the checker.
 */
export async function axeViolations(page) {
  await page.evaluate(AXE);
  const result = await page.evaluate(() => window.axe.run(document, { resultTypes: ['violations'] }));
  return result.violations.map((v) => `${v.id}: ${v.help} (${v.nodes.map((n) => n.target.join(' ')).join('; ')})`);
}
