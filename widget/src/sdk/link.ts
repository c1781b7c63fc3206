// The transport: one logical connection, a WebSocket replaced as needed, with its timers:
// keep-alive pings (no pong: the socket is half-open), reconnects with backoff by what the close
// meant (backoff.js), make-before-break rotation before the server's cut-off or the token's
// expiry, and sending paced under the rate limit. What travels on it is the client's business.

import { Pacer, reconnectDecision, rotateAfterMs } from './backoff.js';
import { decodeClaims } from './claims.js';
import type { RoomcastClient } from './client.js';
import type { Room } from './room.js';
import type { ClientAction } from './types.js';

/** A link's state: 'waiting' between a close and the next attempt, 'stopped' for good (until connect). */
export type LinkState = 'idle' | 'connecting' | 'open' | 'waiting' | 'stopped';
/** Why a link stopped (the client's state then). */
export type StopReason = 'unauthorized' | 'forbidden' | 'closed';
type TimerName = 'retry' | 'ping' | 'pong' | 'rotate' | 'rotateAbort';

/**
 * One logical connection with reconnects: the single socket of the local and AWS builds, or one
 * socket per room on the edge build.
 */
export class Link {
  client: RoomcastClient;
  /** '*' or, on the edge build, the room */
  key: string;
  ws: WebSocket | null = null;
  /** the replacement being opened by a rotation */
  next: WebSocket | null = null;
  state: LinkState = 'idle';
  everOpened = false;
  attempt = 0;
  rateLimited = 0;
  pacer: Pacer;
  queue: Array<[WebSocket, string]> = [];
  queueTimer: ReturnType<typeof setTimeout> | null = null;
  timers: Partial<Record<TimerName, ReturnType<typeof setTimeout> | null>> = {};
  /** The last close was 4001 (token expired): the next connect needs a fresh token. */
  afterExpiry?: boolean;
  /** Whether the current socket opened (the close then means more than a failed upgrade). */
  socketOpened?: boolean;
  openedAt = 0;
  /** The code of the server's `closing` frame on the current socket. */
  closingCode?: number | null;
  /** Rooms still to rejoin on `next` before it replaces `ws`. */
  nextWaiting?: Set<string> | null;
  retryAt = 0;
  lastReason?: string;
  stopReason?: StopReason;

  constructor(client: RoomcastClient, key: string) {
    this.client = client;
    this.key = key;
    this.pacer = new Pacer(client.opts.rate.burst, client.opts.rate.perSec, client.now);
  }

  rooms(): Room[] {
    return [...this.client.rooms.values()].filter((r) => r.state !== 'left' && this.client.linkKey(r.name) === this.key);
  }

  clear(name: TimerName): void {
    clearTimeout(this.timers[name] ?? undefined);
    clearInterval(this.timers[name] ?? undefined);
    this.timers[name] = null;
  }

  async connect(refresh = false): Promise<void> {
    this.clear('retry');
    if (this.state === 'stopped' || this.state === 'connecting' || this.state === 'open') return;
    this.state = 'connecting';
    this.client.updateState();
    const afterExpiry = this.afterExpiry;
    const before = this.client.token;
    let token: string;
    try {
      token = await this.client.getToken(refresh);
    } catch {
      if (afterExpiry) return this.stop('unauthorized', 'token refresh failed');
      return this.failed(false, 1006);
    }
    // Another connect (after a disconnect and connect while this one waited) already opened a socket.
    if (this.state !== 'connecting' || this.ws) return;
    if (afterExpiry) {
      const exp = decodeClaims(token).exp;
      if (token === before || (exp && exp * 1000 <= this.client.now())) return this.stop('unauthorized', 'no fresh token');
    }
    this.afterExpiry = false;
    try {
      this.ws = this.open(token);
    } catch {
      this.failed(false, 1006);
    }
  }

  open(token: string): WebSocket {
    const ws = this.socket(token);
    ws.onopen = () => this.opened(ws);
    ws.onmessage = (ev) => this.client.onData(ev.data, this, ws);
    ws.onclose = (ev) => this.closed(ws, ev.code);
    ws.onerror = () => {};
    return ws;
  }

  /**
   * A WebSocket to this link's URL, the token in `Sec-WebSocket-Protocol` (or in the query: on
   * the edge build, and with `tokenIn: 'query'`).
   */
  socket(token: string): WebSocket {
    const c = this.client;
    let url = String(c.opts.url);
    if (c.edge) {
      url = url.includes('{room}')
        ? url.replace('{room}', encodeURIComponent(this.key))
        : `${url.replace(/\/+$/, '')}/rooms/${encodeURIComponent(this.key)}/ws`;
    }
    if (c.edge || c.opts.tokenIn === 'query') {
      url += (url.includes('?') ? '&' : '?') + 'token=' + encodeURIComponent(token);
      return new c.WebSocket(url);
    }
    return new c.WebSocket(url, ['roomcast.v1', token]);
  }

  opened(ws: WebSocket): void {
    if (ws === this.next) return this.rejoinOn(ws);
    if (ws !== this.ws) return;
    this.state = 'open';
    this.everOpened = true;
    this.socketOpened = true;
    this.openedAt = this.client.now();
    this.closingCode = null;
    this.client.linkUp(this, ws);
    this.startTimers();
    this.client.updateState();
  }

  startTimers(): void {
    const { pingIntervalMs } = this.client.opts;
    this.clear('ping');
    this.timers.ping = setInterval(() => this.ping(), pingIntervalMs);
    this.clear('rotate');
    const c = this.client.claims;
    const after = rotateAfterMs({
      maxConnectionMs: this.client.opts.maxConnectionMs,
      tokenExpMs: c.exp && this.client.tokenFn ? c.exp * 1000 : 0,
      tokenIatMs: c.iat ? c.iat * 1000 : 0,
      openedAt: this.openedAt,
    });
    if (Number.isFinite(after)) this.timers.rotate = setTimeout(() => this.rotate(), Math.min(after, 2 ** 31 - 1));
  }

  ping(): void {
    if (this.state !== 'open' || this.timers.pong) return;
    this.send({ action: 'ping' });
    this.timers.pong = setTimeout(() => this.dead(), this.client.opts.pongTimeoutMs);
  }

  /** Any frame shows the socket is alive. */
  alive(ws: WebSocket): void {
    if (ws === this.ws) this.clear('pong');
  }

  /** No pong: the socket is half-open. Drop it and reconnect. */
  dead(): void {
    const ws = this.ws;
    if (!ws) return;
    try {
      ws.close(4000, 'no pong');
    } catch {}
    this.closed(ws, 1006);
  }

  /** Make-before-break: open a new socket, resume every room on it, then retire the old one. */
  async rotate(): Promise<void> {
    if (this.state !== 'open' || this.next) return;
    const c = this.client;
    let token: string;
    try {
      const expSoon = c.claims.exp && c.claims.exp * 1000 - c.now() < 120000;
      token = await c.getToken(Boolean(expSoon));
    } catch {
      this.timers.rotate = setTimeout(() => this.rotate(), 30000);
      return;
    }
    if (this.state !== 'open' || this.next) return;
    this.next = this.open(token);
    this.nextWaiting = null;
    this.clear('rotateAbort');
    this.timers.rotateAbort = setTimeout(() => this.abandonNext(), 20000);
  }

  rejoinOn(ws: WebSocket): void {
    const rooms = this.rooms().filter((r) => r.state !== 'forbidden');
    this.nextWaiting = new Set(rooms.map((r) => r.name));
    for (const room of rooms) this.client.sendJoin(room, this, ws, true);
    if (!this.nextWaiting.size) this.swap();
  }

  joinedOn(ws: WebSocket, room: string): void {
    if (ws !== this.next || !this.nextWaiting) return;
    this.nextWaiting.delete(room);
    if (!this.nextWaiting.size) this.swap();
  }

  abandonNext(): void {
    const ws = this.next;
    if (!ws) return;
    this.next = null;
    try {
      ws.close(1000, 'rotation abandoned');
    } catch {}
    this.timers.rotate = setTimeout(() => this.rotate(), 30000);
  }

  swap(): void {
    const old = this.ws;
    this.clear('rotateAbort');
    this.ws = this.next;
    this.next = null;
    this.nextWaiting = null;
    this.openedAt = this.client.now();
    this.closingCode = null;
    this.client.stats.rotations += 1;
    this.clear('pong');
    this.startTimers();
    // Acks still in flight on the old socket get a moment; whatever it did not acknowledge is
    // resent on the new one (same ids: never doubled).
    setTimeout(() => {
      try {
        old?.close(1000, 'replaced');
      } catch {}
      this.client.delivery.resendAll(this);
    }, 1000);
  }

  closed(ws: WebSocket, wsCode: number): void {
    if (ws === this.next) {
      this.next = null;
      this.clear('rotateAbort');
      this.timers.rotate = setTimeout(() => this.rotate(), 30000);
      return;
    }
    if (ws !== this.ws) return; // a retired socket
    ws.onopen = ws.onmessage = ws.onclose = null;
    const opened = this.socketOpened;
    const code = this.closingCode ?? wsCode;
    this.ws = null;
    this.socketOpened = false;
    for (const name of ['ping', 'pong', 'rotate', 'rotateAbort'] as const) this.clear(name);
    this.queue.length = 0;
    this.client.linkDown(this);
    if (this.state === 'stopped') return;
    this.failed(opened, code);
  }

  failed(opened: boolean | undefined, code: number): void {
    const c = this.client;
    if (opened && c.now() - this.openedAt > 5000) this.attempt = 0;
    const d = reconnectDecision(
      { code, opened, attempt: this.attempt, rateLimited: this.rateLimited, canRefresh: Boolean(c.tokenFn) },
      c.random,
    );
    c.stats.closes.push(code);
    if (code === 4008) this.rateLimited += 1;
    else if (opened) this.rateLimited = 0;
    if (d.action === 'stop') {
      const why = code === 4001 ? 'unauthorized' : code === 4003 ? 'forbidden' : 'closed';
      return this.stop(why, d.reason);
    }
    this.attempt += 1;
    this.afterExpiry = opened && code === 4001;
    this.state = 'waiting';
    this.retryAt = c.now() + d.delayMs;
    this.lastReason = d.reason;
    this.timers.retry = setTimeout(() => this.connect(d.action === 'refresh'), d.delayMs);
    c.updateState();
  }

  stop(why: StopReason, reason: string): void {
    this.state = 'stopped';
    this.stopReason = why;
    this.lastReason = reason;
    for (const k of Object.keys(this.timers) as TimerName[]) this.clear(k);
    this.client.updateState();
    this.client.emit('stopped', { why, reason });
  }

  /** Reconnect now (network back, user asked). */
  wake(): void {
    if (this.state === 'waiting') this.connect();
  }

  shutdown(): void {
    this.state = 'stopped';
    this.stopReason = 'closed';
    for (const k of Object.keys(this.timers) as TimerName[]) this.clear(k);
    for (const ws of [this.ws, this.next]) {
      if (!ws) continue;
      ws.onclose = ws.onmessage = ws.onopen = null;
      try {
        ws.close(1000, 'client closed');
      } catch {}
    }
    this.ws = this.next = null;
  }

  /** Queues a frame on the current (or given) socket, paced under the rate limit. */
  send(frame: ClientAction, ws: WebSocket | null = this.ws): boolean {
    if (!ws || (ws === this.ws && this.state !== 'open')) return false;
    this.queue.push([ws, JSON.stringify(frame)]);
    this.pump();
    return true;
  }

  pump(): void {
    if (this.queueTimer) return;
    while (this.queue.length) {
      const wait = this.pacer.take();
      if (wait > 0) {
        this.queueTimer = setTimeout(() => {
          this.queueTimer = null;
          this.pump();
        }, wait);
        return;
      }
      const [ws, text] = this.queue.shift()!; // the loop runs while the queue is not empty
      if (ws.readyState === 1) ws.send(text);
    }
  }
}
