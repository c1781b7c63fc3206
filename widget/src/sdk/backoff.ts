// Reconnect policy: exponential backoff with full jitter, and what each close code means.
// Pure: randomness and time are passed in, so the rules are unit-tested (test/unit/backoff.test.js).

/** Defaults for {@link reconnectDecision}. */
export const BACKOFF = {
  baseMs: 500,
  capMs: 15000,
  // 4008 (rate limited): at least this long, growing to rateLimitedCapMs.
  rateLimitedMinMs: 10000,
  rateLimitedCapMs: 300000,
  // 1001 / 4009: reconnect at once, spread over this window (a server shutdown drops everyone).
  goingAwayJitterMs: 1000,
};

/** Full jitter: a uniform delay in [0, min(cap, base * 2^attempt)). */
export function fullJitter(attempt: number, baseMs: number, capMs: number, random: () => number = Math.random): number {
  const ceiling = Math.min(capMs, baseMs * 2 ** Math.min(Math.max(attempt, 0), 30));
  return Math.floor(random() * ceiling);
}

/** What {@link reconnectDecision} decides. */
export interface ReconnectDecision {
  /** `refresh`: get a new token, then reconnect after delayMs; `stop`: do not reconnect. */
  action: 'retry' | 'refresh' | 'stop';
  delayMs: number;
  reason: string;
}

/**
 * What to do after a socket ended.
 *
 * @param e.code     close code: the `closing` frame's code when one came (API Gateway
 *                            closes with 1000 and only tells the real code in that frame), else
 *                            the WebSocket's
 * @param e.opened  whether the socket ever opened (false: the upgrade failed, which a
 *                            browser cannot tell from a network error)
 * @param e.attempt  failures in a row so far (0 for the first)
 * @param e.rateLimited 4008 closes in a row so far
 * @param e.canRefresh whether a token callback exists
 */
export function reconnectDecision(
  { code, opened, attempt, rateLimited = 0, canRefresh }: { code: number; opened?: boolean; attempt: number; rateLimited?: number; canRefresh: boolean },
  random: () => number = Math.random,
  b: typeof BACKOFF = BACKOFF,
): ReconnectDecision {
  const backoff = () => fullJitter(attempt, b.baseMs, b.capMs, random);
  if (!opened) {
    // 401/403/429/5xx and network errors look alike to a browser. After two failures in a row a
    // new token is worth fetching (the old one may be expired or revoked); keep retrying, as the
    // server may simply be down.
    const refresh = canRefresh && attempt >= 2;
    return { action: refresh ? 'refresh' : 'retry', delayMs: backoff(), reason: 'connect failed' };
  }
  switch (code) {
    case 1000:
      // A backend ended the session (@connections DELETE).
      return { action: 'stop', delayMs: 0, reason: 'closed by the server' };
    case 1001:
    case 4009:
      return { action: 'retry', delayMs: Math.floor(random() * b.goingAwayJitterMs), reason: code === 1001 ? 'going away' : 'slow consumer' };
    case 4001:
      return canRefresh
        ? { action: 'refresh', delayMs: Math.floor(random() * 250), reason: 'token expired' }
        : { action: 'stop', delayMs: 0, reason: 'token expired' };
    case 4003:
      return { action: 'stop', delayMs: 0, reason: 'forbidden' };
    case 4008:
      return {
        action: 'retry',
        delayMs: b.rateLimitedMinMs + fullJitter(rateLimited, b.rateLimitedMinMs, b.rateLimitedCapMs - b.rateLimitedMinMs, random),
        reason: 'rate limited',
      };
    default:
      // 1006 (network, process killed), 1003, 1009, 1011, …: back off and resume.
      return { action: 'retry', delayMs: backoff(), reason: `closed (${code})` };
  }
}

/**
 * When to replace a connection before the server cuts it: API Gateway closes every connection
 * after 2 h, and the token stops working at `exp`. Returns ms after `openedAt`, or Infinity.
 */
export function rotateAfterMs(
  { maxConnectionMs, tokenExpMs, tokenIatMs, openedAt }: { maxConnectionMs: number; tokenExpMs: number; tokenIatMs: number; openedAt: number },
  random: () => number = Math.random,
): number {
  const byAge = Number.isFinite(maxConnectionMs)
    ? maxConnectionMs - Math.min(300000, maxConnectionMs * 0.1) * (1 + random())
    : Infinity;
  let byToken = Infinity;
  if (tokenExpMs) {
    const life = tokenIatMs ? tokenExpMs - tokenIatMs : 3600000;
    byToken = tokenExpMs - Math.min(60000, Math.max(life, 0) * 0.2) - openedAt;
  }
  return Math.max(0, Math.min(byAge, byToken));
}

/** A token bucket for outgoing frames, so a client stays under the server's rate limit. */
export class Pacer {
  burst: number;
  perSec: number;
  now: () => number;
  tokens: number;
  at: number;

  constructor(burst: number, perSec: number, now: () => number) {
    this.burst = burst;
    this.perSec = perSec;
    this.now = now;
    this.tokens = burst;
    this.at = now();
  }

  /** ms until a frame may go (0: now; the token is taken). */
  take(): number {
    const t = this.now();
    this.tokens = Math.min(this.burst, this.tokens + ((t - this.at) * this.perSec) / 1000);
    this.at = t;
    if (this.tokens >= 1) {
      this.tokens -= 1;
      return 0;
    }
    return Math.ceil(((1 - this.tokens) * 1000) / this.perSec);
  }
}
