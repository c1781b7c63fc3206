import test from 'node:test';
import assert from 'node:assert/strict';
import { BACKOFF, Pacer, fullJitter, reconnectDecision, rotateAfterMs } from '../../src/sdk/backoff.js';

const max = () => 0.999999;
const min = () => 0;

test('full jitter grows exponentially up to the cap and never exceeds it', () => {
  assert.equal(fullJitter(0, 500, 30000, min), 0);
  assert.equal(fullJitter(0, 500, 30000, max), 499);
  assert.equal(fullJitter(3, 500, 30000, max), 3999);
  assert.equal(fullJitter(10, 500, 30000, max), 29999);
  assert.equal(fullJitter(1000, 500, 30000, max), 29999);
  // Uniform over the window: the mean of many draws is about half the ceiling.
  let sum = 0;
  for (let i = 0; i < 2000; i++) sum += fullJitter(2, 500, 30000);
  assert.ok(Math.abs(sum / 2000 - 1000) < 100, `mean ${sum / 2000}`);
});

test('a failed upgrade is retried with backoff; a token refresh after repeated failures', () => {
  const d0 = reconnectDecision({ code: 1006, opened: false, attempt: 0, canRefresh: true }, max);
  assert.deepEqual([d0.action, d0.delayMs], ['retry', 499]);
  const d2 = reconnectDecision({ code: 1006, opened: false, attempt: 2, canRefresh: true }, max);
  assert.deepEqual([d2.action, d2.delayMs], ['refresh', 1999]);
  assert.equal(reconnectDecision({ code: 1006, opened: false, attempt: 5, canRefresh: false }, max).action, 'retry');
});

test('close codes: 4001 refreshes or stops, 4003 and 1000 stop, 4008 waits long, 1001 at once', () => {
  const d = (code, extra = {}) => reconnectDecision({ code, opened: true, attempt: 4, canRefresh: true, ...extra }, max);
  assert.equal(d(4001).action, 'refresh');
  assert.ok(d(4001).delayMs < 250);
  assert.equal(d(4001, { canRefresh: false }).action, 'stop');
  assert.equal(d(4003).action, 'stop');
  assert.equal(d(1000).action, 'stop');
  const limited = [0, 1, 2, 6].map((n) => reconnectDecision({ code: 4008, opened: true, attempt: 0, rateLimited: n }, min).delayMs);
  assert.deepEqual(limited, [BACKOFF.rateLimitedMinMs, BACKOFF.rateLimitedMinMs, BACKOFF.rateLimitedMinMs, BACKOFF.rateLimitedMinMs]);
  const longest = reconnectDecision({ code: 4008, opened: true, attempt: 0, rateLimited: 20 }, max).delayMs;
  assert.ok(longest <= BACKOFF.rateLimitedCapMs && longest > 200000, `${longest}`);
  assert.ok(d(1001).delayMs < BACKOFF.goingAwayJitterMs);
  assert.ok(d(4009).delayMs < BACKOFF.goingAwayJitterMs);
  assert.deepEqual([d(1006).action, d(1006).delayMs], ['retry', 7999]);
});

test('connections are replaced before the 2-hour cut-off and before the token expires', () => {
  const twoHours = 7200000;
  const at = rotateAfterMs({ maxConnectionMs: twoHours, openedAt: 0 }, min);
  assert.equal(at, twoHours - 300000);
  assert.ok(rotateAfterMs({ maxConnectionMs: twoHours, openedAt: 0 }, max) >= twoHours - 600000);
  // A token expiring in 10 minutes (issued an hour ago) wins over the age limit.
  const now = 1_000_000;
  const byToken = rotateAfterMs({ maxConnectionMs: twoHours, tokenExpMs: now + 600000, tokenIatMs: now - 3000000, openedAt: now }, min);
  assert.equal(byToken, 540000);
  // A short token (10 s) is replaced at 80% of its life.
  assert.equal(rotateAfterMs({ maxConnectionMs: Infinity, tokenExpMs: now + 10000, tokenIatMs: now, openedAt: now }), 8000);
});

test('the pacer lets a burst through, then spaces frames', () => {
  let t = 0;
  const p = new Pacer(3, 10, () => t);
  assert.deepEqual([p.take(), p.take(), p.take()], [0, 0, 0]);
  assert.equal(p.take(), 100);
  t = 100;
  assert.equal(p.take(), 0);
});
