// The roomcast client an app uses, RoomcastClient: connect, rooms, sending, typing, read cursors,
// presence, history, attachments and the support desk; and the wiring of the parts doing the
// work: link.js (the sockets), room.js (each room), frames.js (what the server sends),
// delivery.js (the outbox), history.js (paging), requests.js (request/reply), uploads.js and
// downloads.js (files, over http.js).
// Protocol: docs/protocol.md. Guide: docs/widget.md.

import { Outbox, ulid } from './outbox.js';
import { Emitter } from './emitter.js';
import { decodeClaims } from './claims.js';
import { INBOX_ROOM } from './desk.js';
import { Room } from './room.js';
import { Link } from './link.js';
import { Requests } from './requests.js';
import { Delivery } from './delivery.js';
import { History } from './history.js';
import { receive } from './frames.js';
import { httpBase } from './http.js';
import { checkFile, fileType, uploadFile, uploadPolicy } from './uploads.js';
import { Downloads } from './downloads.js';
import type { DownloadLink } from './downloads.js';
import type { Claims } from './claims.js';
import type { OutboxStorage } from './outbox.js';
import type { UploadPolicy, FileLike } from './uploads.js';
import type { CodedError } from './requests.js';
import type { ReconnectDecision } from './backoff.js';
import type { AttachmentInfo, ClientAction, ConversationState, Message, Presence, PresenceStatus, ServerFrame } from './types.js';

/** The client's overall state (see `updateState`). */
export type ClientState = 'idle' | 'connecting' | 'connected' | 'reconnecting' | 'unauthorized' | 'forbidden' | 'closed';

/** How to reach and authenticate to a roomcast deployment, and the client's timings. */
export interface ClientOptions {
  /**
   * `ws://host:port/` (local), `wss://{api}.execute-api.{region}.amazonaws.com/{stage}` (AWS),
   * or the edge build's base URL with `mode: 'edge'` (or a template containing `{room}`)
   */
  url: string | URL;
  /** a token, or a function fetching a fresh one */
  token: string | (() => Promise<string>);
  mode?: 'auto' | 'local' | 'aws' | 'edge';
  /** token in `Sec-WebSocket-Protocol` (default) or `?token=` */
  tokenIn?: 'protocol' | 'query';
  /** the HTTP API's base URL (default: `url` with http(s); AWS: the stack's `HttpApiUrl`) */
  httpUrl?: string;
  /** what the deployment accepts, checked before uploading (default: the server's defaults) */
  uploads?: { maxBytes?: number; types?: string[] };
  maxConnectionMs?: number;
  pingIntervalMs?: number;
  pongTimeoutMs?: number;
  /** A message not acknowledged this long shows as failed (and is still resent on rejoin). */
  failAfterMs?: number;
  pageSize?: number;
  /** The outbox is kept in `storage` under `{storageKey}:outbox`. */
  storageKey?: string;
  rate?: { burst: number; perSec: number };
  /** localStorage by default; null keeps the outbox in memory. */
  storage?: OutboxStorage | null;
  // For tests and other runtimes:
  now?: () => number;
  random?: () => number;
  WebSocket?: typeof WebSocket;
  fetch?: typeof fetch;
  XMLHttpRequest?: typeof XMLHttpRequest;
}

type Settings = Required<Pick<ClientOptions, 'mode' | 'tokenIn' | 'maxConnectionMs' | 'pingIntervalMs' | 'pongTimeoutMs' | 'failAfterMs' | 'pageSize' | 'storageKey' | 'rate'>> &
  ClientOptions;

/** A reply frame of one `type`. */
type Reply<T extends ServerFrame['type']> = Extract<ServerFrame, { type: T }>;

/**
 * The client.
 *
 * ```js
 * const client = new RoomcastClient({ url: 'ws://127.0.0.1:3001/', token: () => fetchToken() });
 * const room = client.join('support-42');
 * client.on('change', () => render(room.view()));
 * client.send('support-42', 'hello');
 * ```
 */
export class RoomcastClient extends Emitter {
  opts: Settings;
  now: () => number;
  random: () => number;
  WebSocket: typeof WebSocket;
  fetch: typeof fetch;
  XHR: typeof XMLHttpRequest;
  tokenFn: (() => Promise<string>) | null;
  token: string | null;
  claims: Claims;
  edge: boolean;
  httpUrl: string;
  uploadPolicy: UploadPolicy;
  downloads: Downloads;
  outbox: Outbox;
  rooms: Map<string, Room>;
  links: Map<string, Link>;
  /** user → presence */
  presence: Map<string, Presence>;
  /** room → the support desk's conversation, as the inbox tells it */
  desk: Map<string, ConversationState>;
  requests: Requests;
  delivery: Delivery;
  history: History;
  state: ClientState;
  stats: { rotations: number; closes: number[]; states: ClientState[] };
  dirty: Set<string>;
  readTimers: Map<string, ReturnType<typeof setTimeout>>;
  started?: boolean;
  flushing?: boolean;
  myStatus?: PresenceStatus;

  constructor(o: ClientOptions) {
    super();
    this.opts = {
      mode: 'auto',
      tokenIn: 'protocol',
      maxConnectionMs: 2 * 3600 * 1000,
      pingIntervalMs: 4 * 60 * 1000,
      pongTimeoutMs: 15000,
      failAfterMs: 20000,
      pageSize: 30,
      storageKey: 'roomcast',
      rate: { burst: 20, perSec: 8 },
      ...o,
    };
    this.now = o.now || (() => Date.now());
    this.random = o.random || Math.random;
    this.WebSocket = o.WebSocket || globalThis.WebSocket;
    this.fetch = o.fetch || ((...args) => globalThis.fetch(...args));
    this.XHR = o.XMLHttpRequest || globalThis.XMLHttpRequest;
    this.tokenFn = typeof o.token === 'function' ? o.token : null;
    this.token = typeof o.token === 'string' ? o.token : null;
    this.claims = this.token ? decodeClaims(this.token) : {};
    const url = String(o.url);
    this.edge = this.opts.mode === 'edge' || url.includes('{room}');
    this.httpUrl = String(o.httpUrl || httpBase(url)).replace(/\/+$/, '');
    this.uploadPolicy = uploadPolicy(o.uploads);
    this.downloads = new Downloads(this);
    const storage = o.storage === undefined ? safeLocalStorage() : o.storage;
    this.outbox = new Outbox(storage, `${this.opts.storageKey}:outbox`);
    this.rooms = new Map();
    this.links = new Map();
    this.presence = new Map();
    this.desk = new Map();
    this.requests = new Requests();
    this.delivery = new Delivery(this);
    this.history = new History(this);
    this.state = 'idle';
    this.stats = { rotations: 0, closes: [], states: [] };
    this.dirty = new Set();
    this.readTimers = new Map();
    for (const e of this.outbox.entries.values()) this.delivery.arm(e);
    if (typeof addEventListener === 'function') {
      // Back online, or back to the tab: do not wait out the backoff.
      addEventListener('online', () => this.links.forEach((l) => l.wake()));
      globalThis.document?.addEventListener('visibilitychange', () => {
        if (document.visibilityState === 'visible') this.links.forEach((l) => l.wake());
      });
    }
  }

  /** The user id (`sub`) of the current token. */
  get user(): string | null {
    return this.claims.sub ?? null;
  }

  get role(): string {
    return this.claims.role || 'user';
  }

  setToken(token: string): void {
    this.token = token;
    this.claims = decodeClaims(token);
  }

  async getToken(refresh?: boolean): Promise<string> {
    if (this.tokenFn) {
      const exp = this.claims.exp ? this.claims.exp * 1000 : Infinity;
      if (refresh || !this.token || exp - this.now() < 30000) {
        const t = await this.tokenFn();
        if (typeof t !== 'string' || !t) throw new Error('no token');
        this.setToken(t);
      }
    }
    if (!this.token) throw new Error('no token');
    return this.token;
  }

  linkKey(room: string): string {
    return this.edge ? room : '*';
  }

  link(room: string): Link {
    const key = this.linkKey(room);
    let link = this.links.get(key);
    if (!link) {
      link = new Link(this, key);
      this.links.set(key, link);
      if (this.started) link.connect();
    }
    return link;
  }

  /** Starts connecting (rooms joined before or after are resumed on every connection). */
  connect(): this {
    this.started = true;
    if (!this.edge) this.link('*');
    for (const link of this.links.values()) {
      if (link.state === 'stopped') {
        link.state = 'idle';
        link.attempt = 0;
      }
      link.connect();
    }
    this.updateState();
    return this;
  }

  /** Closes every socket; nothing reconnects until connect(). */
  disconnect(): void {
    this.started = false;
    for (const link of this.links.values()) link.shutdown();
    this.updateState();
  }

  /**
   * Overall state: 'idle' | 'connecting' | 'connected' | 'reconnecting' | 'unauthorized' |
   * 'forbidden' | 'closed'. `stateInfo()` adds when the next attempt is due.
   */
  updateState(): void {
    const links = [...this.links.values()];
    let s: ClientState;
    const stopped = links.find((l) => l.state === 'stopped');
    if (!this.started) s = 'idle';
    else if (stopped) s = stopped.stopReason || 'closed';
    else if (links.length && links.every((l) => l.state === 'open')) s = 'connected';
    else if (links.some((l) => l.everOpened)) s = 'reconnecting';
    else s = 'connecting';
    if (s !== this.state) {
      this.state = s;
      this.stats.states.push(s);
      this.emit('state', s);
    }
    this.changed(null);
  }

  stateInfo(): { state: ClientState; retryAt: number | null; reason: string | undefined } {
    const waiting = [...this.links.values()].filter((l) => l.state === 'waiting');
    const retryAt = waiting.length ? Math.min(...waiting.map((l) => l.retryAt)) : null;
    return { state: this.state, retryAt, reason: waiting[0]?.lastReason || [...this.links.values()][0]?.lastReason };
  }

  /** Reconnects at once, also after a stop. */
  reconnectNow(): void {
    if (!this.started) {
      this.connect();
      return;
    }
    for (const link of this.links.values()) {
      if (link.state === 'stopped') {
        link.state = 'idle';
        link.connect(true);
      } else link.wake();
    }
  }

  /** Marks a room as changed; listeners get one 'change' per task with the rooms that changed. */
  changed(room: string | null): void {
    if (room) this.dirty.add(room);
    if (this.flushing) return;
    this.flushing = true;
    queueMicrotask(() => {
      this.flushing = false;
      const rooms = [...this.dirty];
      this.dirty.clear();
      this.emit('change', rooms);
    });
  }

  // ---- rooms ----

  /**
   * Joins a room (now, and again on every reconnect, resuming from the last seq held). The
   * first join loads the newest page; `fromStart` replays the room from seq 1 instead.
   */
  join(name: string, { fromStart = false }: { fromStart?: boolean } = {}): Room {
    let room = this.rooms.get(name);
    if (room && room.state !== 'left') return room;
    if (!room) {
      room = new Room(this, name, { fromStart });
      this.rooms.set(name, room);
    }
    room.state = 'joining';
    const link = this.link(name);
    if (link.state === 'open') this.sendJoin(room, link, link.ws);
    this.changed(name);
    return room;
  }

  room(name: string): Room | undefined {
    return this.rooms.get(name);
  }

  leave(name: string): void {
    const room = this.rooms.get(name);
    if (!room) return;
    room.state = 'left';
    const link = this.links.get(this.linkKey(name));
    if (this.edge && link) {
      link.shutdown();
      this.links.delete(name);
    } else link?.send({ action: 'leave', room: name });
    this.changed(name);
  }

  /** Loads the page before the oldest message held. */
  loadOlder(name: string, limit: number = this.opts.pageSize): boolean {
    const room = this.rooms.get(name);
    if (!room) return false;
    return this.history.loadOlder(room, limit);
  }

  sendJoin(room: Room, link: Link, ws: WebSocket | null, rotation = false): void {
    const frame: Extract<ClientAction, { action: 'join' }> = { action: 'join', room: room.name, ref: `j:${room.name}` };
    if (room.timeline.anchored) frame.since = room.timeline.through;
    else if (room.fromStart) frame.since = 0;
    if (!rotation) {
      room.state = 'joining';
      room.replaying = frame.since !== undefined;
      this.history.reset(room);
    }
    link.send(frame, ws);
    clearTimeout(room.joinTimer);
    // A join dropped unanswered (rate limited before parsing) is sent again.
    if (!rotation) room.joinTimer = setTimeout(() => room.state === 'joining' && link.state === 'open' && this.sendJoin(room, link, link.ws), 10000);
  }

  // ---- what the links report ----

  /** One WebSocket message on one of `link`'s sockets. */
  onData(data: string, link: Link, ws: WebSocket): void {
    receive(this, data, link, ws);
  }

  /** A link's socket opened: join its rooms, and send the requests made while it was down. */
  linkUp(link: Link, ws: WebSocket): void {
    for (const room of link.rooms()) this.sendJoin(room, link, ws);
    this.requests.sendUnsent(link);
  }

  /** A link's socket closed: its rooms rejoin, and what was in flight on it goes again once it is back. */
  linkDown(link: Link): void {
    for (const room of link.rooms()) {
      if (room.state === 'joined') room.state = 'joining';
      room.typers.forEach((t) => clearTimeout(t));
      room.typers.clear();
      room.typingSent = false;
      this.changed(room.name);
    }
    this.delivery.linkDown(link);
    this.requests.markUnsent(link);
    this.updateState();
  }

  // ---- sending ----

  /** Sends a message; returns its client id. It is kept in the outbox until acknowledged. */
  send(name: string, body: string, meta?: Record<string, unknown>): string {
    return this.sendMessage(name, body, { meta });
  }

  /**
   * Sends a message, with files uploaded by `attach` (at most 10; `body` may then be empty),
   * `replyTo` the seq of the message it answers; returns its client id. It is kept in the outbox
   * until acknowledged.
   */
  sendMessage(name: string, body: string, { meta, attachments, replyTo }: SendOptions = {}): string {
    const room = this.join(name);
    const entry = this.outbox.add({ id: ulid(this.now()), room: name, body, meta, attachments: attachments?.length ? attachments : undefined, reply_to: replyTo, user: this.user });
    this.stopTyping(name, false);
    this.delivery.arm(entry);
    this.delivery.flush(entry);
    this.changed(room.name);
    return entry.id;
  }

  /** Sends a failed or pending message again, with the same id. */
  retry(id: string): boolean {
    const e = this.outbox.update(id, { status: 'pending', permanent: false, error: undefined });
    if (!e) return false;
    this.delivery.arm(e);
    this.delivery.flush(e);
    this.changed(e.room);
    return true;
  }

  /** Gives up on an unsent message. */
  discard(id: string): void {
    const e = this.outbox.remove(id);
    if (e) this.changed(e.room);
  }

  /** Call on every keystroke: sends `typing start` at most every 3 s, `stop` after 4 s idle. */
  typing(name: string): void {
    const room = this.rooms.get(name);
    if (!room?.joined) return;
    const now = this.now();
    if (!room.typingSent || now - room.typingAt > 3000) {
      if (this.link(name).send({ action: 'typing', room: name, state: 'start' })) {
        room.typingSent = true;
        room.typingAt = now;
      }
    }
    clearTimeout(room.typingStop);
    room.typingStop = setTimeout(() => this.stopTyping(name), 4000);
  }

  /** Stops the typing indicator (`notify` false: a message is being sent, which clears it anyway). */
  stopTyping(name: string, notify = true): void {
    const room = this.rooms.get(name);
    if (!room) return;
    clearTimeout(room.typingStop);
    if (room.typingSent && notify && room.joined) this.link(name).send({ action: 'typing', room: name, state: 'stop' });
    room.typingSent = false;
  }

  /** Moves this user's read cursor (default: to the newest message held). Sends at most every 300 ms. */
  markRead(name: string, seq?: number): void {
    const room = this.rooms.get(name);
    if (!room) return;
    const to = Math.min(seq ?? room.lastSeq, room.lastSeq);
    if (to <= room.myRead) return;
    room.myRead = to;
    this.changed(name);
    if (this.readTimers.has(name)) return;
    this.readTimers.set(
      name,
      setTimeout(() => {
        this.readTimers.delete(name);
        if (room.joined) this.link(name).send({ action: 'read', room: name, seq: room.myRead });
        else room.readUnsent = true;
      }, 300),
    );
  }

  /** Sets this user's presence: 'online' | 'away' | 'busy'. */
  setPresence(status: PresenceStatus): void {
    this.myStatus = status;
    for (const link of this.links.values()) link.send({ action: 'presence', status });
  }

  edit(name: string, seq: number, body: string): Promise<undefined> {
    return this.request<undefined>({ action: 'edit', room: name, seq, body }, { reply: false });
  }

  remove(name: string, seq: number): Promise<undefined> {
    return this.request<undefined>({ action: 'delete', room: name, seq }, { reply: false });
  }

  /**
   * Adds this user's `emoji` to message `seq` (idempotent). Resolves with the `reaction` reply
   * (the emoji's new count and users); rejects with `{code}`: NOT_FOUND, INVALID,
   * LIMIT_EXCEEDED, NOT_MEMBER, FORBIDDEN.
   */
  react(name: string, seq: number, emoji: string): Promise<Reply<'reaction'>> {
    return this.request<Reply<'reaction'>>({ action: 'react', room: name, seq, emoji });
  }

  /** Takes this user's `emoji` back from message `seq` (idempotent); settles like `react`. */
  unreact(name: string, seq: number, emoji: string): Promise<Reply<'reaction'>> {
    return this.request<Reply<'reaction'>>({ action: 'unreact', room: name, seq, emoji });
  }

  // ---- attachments ----

  /**
   * Asks for an upload slot for `file` in `room` (the `upload` action). Resolves with the
   * grant `{id, room, name, upload, expires_at}`; rejects with `{code}`: TOO_LARGE or INVALID
   * (checked here first against `uploads`), LIMIT_EXCEEDED, FORBIDDEN, RATE_LIMITED.
   */
  requestUpload(name: string, file: FileLike): Promise<Reply<'upload'>> {
    const refused = checkFile(file, this.uploadPolicy);
    if (refused) return Promise.reject(refused);
    return this.request<Reply<'upload'>>({ action: 'upload', room: name, name: file.name, size: file.size, type: fileType(file, this.uploadPolicy) });
  }

  /** Sends `file`'s bytes to a grant's target (uploads.js): `onProgress(fraction)`, `signal` cancels. */
  upload(grant: Reply<'upload'>, file: Blob, { onProgress, signal }: UploadOptions = {}): Promise<void> {
    return uploadFile(grant, file, { base: this.httpUrl, onProgress, signal, XHR: this.XHR });
  }

  /** Slot and upload in one: resolves with the attachment to pass to `sendMessage`. */
  async attach(name: string, file: File, o?: UploadOptions): Promise<AttachmentInfo> {
    const grant = await this.requestUpload(name, file);
    await this.upload(grant, file, o);
    return { id: grant.id, name: grant.name, size: file.size, type: fileType(file, this.uploadPolicy) };
  }

  /** A download link `{url, inline, expires_at}` for an attachment of `room` (kept until shortly before it expires). */
  attachmentLink(name: string, id: string): Promise<DownloadLink> {
    return this.downloads.link(name, id);
  }

  // ---- support desk ----

  /** Takes a waiting conversation (role `agent`). Resolves with the `status` reply. */
  assign(name: string): Promise<Reply<'status'>> {
    return this.request<Reply<'status'>>({ action: 'assign', room: name });
  }

  /** Closes a conversation (role `agent`). */
  close(name: string): Promise<Reply<'status'>> {
    return this.request<Reply<'status'>>({ action: 'close', room: name });
  }

  /** Joins the tenant's inbox (agents): every conversation change, replayed from the start. */
  watchInbox(): Room {
    return this.join(INBOX_ROOM, { fromStart: true });
  }

  /** Conversations by status, newest change first: `inbox('waiting')`. */
  inbox(status?: ConversationState['status']): ConversationState[] {
    return [...this.desk.values()].filter((c) => !status || c.status === status).sort((a, b) => (b.ts || 0) - (a.ts || 0));
  }

  /** A page of the users connected to room `name`, in id order: `{members, next}` (protocol §17). */
  members(name: string, { cursor, limit }: { cursor?: string; limit?: number } = {}): Promise<Reply<'members'>> {
    return this.request<Reply<'members'>>({ action: 'members', room: name, cursor, limit });
  }

  /** Sends `frame` on its room's link; settles on the reply (requests.js). */
  request<R extends ServerFrame | undefined = ServerFrame>(frame: ClientAction & { room: string }, options?: { reply?: boolean; timeoutMs?: number }): Promise<R> {
    return this.requests.send<R>(this.link(frame.room), frame, options);
  }

}

/** What `sendMessage` may add to the text. */
export interface SendOptions {
  meta?: Record<string, unknown>;
  attachments?: AttachmentInfo[];
  /** The seq of the message this one answers (shown with a quote of it). */
  replyTo?: number;
}

/** Upload progress and cancel. */
export interface UploadOptions {
  onProgress?: (fraction: number) => void;
  signal?: AbortSignal;
}

/** localStorage, or null where using it throws (storage disabled, sandboxed frames). */
function safeLocalStorage(): OutboxStorage | null {
  try {
    const s = globalThis.localStorage;
    s?.getItem('roomcast-probe');
    return s || null;
  } catch {
    return null;
  }
}
