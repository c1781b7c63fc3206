// One room as this client sees it: its state, timeline, read cursors, typing users and members,
// and the view an app renders. The client updates it as frames arrive; the room only derives
// from it (unread count, "seen" ticks, the list to show).

import { SYSTEM_SENDER, isBot, isSystem, roleOf } from './desk.js';
import { Timeline } from './timeline.js';
import type { RoomcastClient } from './client.js';
import type { HistoryRequest } from './history.js';
import type { ConversationState, Presence, ViewItem } from './types.js';

/** A room's state: 'forbidden' once its join is refused, 'left' after `leave`. */
export type RoomState = 'idle' | 'joining' | 'joined' | 'forbidden' | 'left';

/** One room as this client sees it. */
export class Room {
  client: RoomcastClient;
  name: string;
  fromStart: boolean;
  timeline = new Timeline();
  state: RoomState = 'idle';
  /** user → presence (the `joined` snapshot, updated by `presence`) */
  members = new Map<string, Presence>();
  /** Connections in the room while it is above the presence threshold (protocol §17), else null */
  occupancy: number | null = null;
  /** user → read cursor of other users */
  readers = new Map<string, number>();
  myRead = 0;
  /** A read cursor moved while the room was not joined: sent on the next join. */
  readUnsent?: boolean;
  /** user → timer of a `typing start` still shown */
  typers = new Map<string, ReturnType<typeof setTimeout>>();
  /** Whether this user's `typing start` is showing to the others, since `typingAt`. */
  typingSent?: boolean;
  typingAt = 0;
  typingStop?: ReturnType<typeof setTimeout>;
  /** The support conversation, or null */
  conversation: ConversationState | null = null;
  replaying = false;
  historyQueue: HistoryRequest[] = [];
  joinTimer?: ReturnType<typeof setTimeout>;

  constructor(client: RoomcastClient, name: string, { fromStart = false }: { fromStart?: boolean } = {}) {
    this.client = client;
    this.name = name;
    this.fromStart = fromStart;
  }

  get joined(): boolean {
    return this.state === 'joined';
  }

  /** Users (other than this one) typing now. */
  get typing(): string[] {
    return [...this.typers.keys()];
  }

  get hasOlder(): boolean {
    return this.timeline.hasOlder;
  }

  get loadingOlder(): boolean {
    return this.historyQueue.some((h) => h.kind === 'older');
  }

  /** The highest seq this client knows of. */
  get lastSeq(): number {
    return Math.max(this.timeline.knownHead, this.timeline.newest);
  }

  /** Messages from others after this user's read cursor. */
  get unread(): number {
    const me = this.client.user;
    let n = 0;
    for (const m of this.timeline.list()) if (m.seq > this.myRead && m.from !== me && !isSystem(m)) n++;
    return n + Math.max(0, this.timeline.knownHead - Math.max(this.timeline.newest, this.myRead));
  }

  /** The highest read cursor of another (human) user. */
  get othersRead(): number {
    let max = 0;
    for (const [user, seq] of this.readers) if (user !== this.client.user && user !== SYSTEM_SENDER && seq > max) max = seq;
    return max;
  }

  /**
   * What to show: stored messages in seq order, then this user's unacknowledged ones in the
   * order written. Own messages carry `status`: 'pending' | 'failed' | 'sent' | 'seen'. `system`
   * marks the service's own lines (sender "$system" only), `bot` a message a service published
   * in a sender's name (`via`): never this user's own, even in their name. `author` is who wrote
   * it ('user', 'agent' or 'service': see `roleOf`).
   */
  view(): ViewItem[] {
    const me = this.client.user;
    const seen = this.othersRead;
    const items = this.timeline.list().map((m): ViewItem => {
      const bot = isBot(m);
      const mine = m.from === me && !bot;
      return {
        ...m,
        key: `s${m.seq}`,
        mine,
        bot,
        author: roleOf(m),
        system: isSystem(m),
        status: mine ? (m.seq <= seen ? 'seen' : 'sent') : undefined,
      };
    });
    for (const e of this.client.outbox.forRoom(this.name, me)) {
      items.push({
        key: `o${e.id}`,
        id: e.id,
        room: e.room,
        from: me,
        body: e.body,
        meta: e.meta,
        attachments: e.attachments,
        ts: e.createdAt,
        mine: true,
        bot: false,
        author: this.client.role || 'user',
        system: false,
        status: e.status === 'failed' ? 'failed' : 'pending',
        error: e.error,
      });
    }
    return items;
  }
}
