// One room as this client sees it: its state, timeline, read cursors, typing users and members,
// and the view an app renders. The client updates it as frames arrive; the room only derives
// from it (unread count, "seen" ticks, the list to show).

import { SYSTEM_SENDER, isBot, isSystem, roleOf } from './desk.js';
import { Timeline } from './timeline.js';

/** One room as this client sees it. */
export class Room {
  constructor(client, name, { fromStart = false } = {}) {
    this.client = client;
    this.name = name;
    this.fromStart = fromStart;
    this.timeline = new Timeline();
    /** 'idle' | 'joining' | 'joined' | 'forbidden' | 'left' */
    this.state = 'idle';
    /** user → {user, status, last_seen} (the `joined` snapshot, updated by `presence`) */
    this.members = new Map();
    /** Connections in the room while it is above the presence threshold (protocol §17), else null */
    this.occupancy = null;
    /** user → read cursor of other users */
    this.readers = new Map();
    this.myRead = 0;
    /** user → timer of a `typing start` still shown */
    this.typers = new Map();
    /** {status, agent, version} of a support conversation, or null */
    this.conversation = null;
    this.replaying = false;
    this.historyQueue = [];
    this.joinTimer = null;
  }

  get joined() {
    return this.state === 'joined';
  }

  /** Users (other than this one) typing now. */
  get typing() {
    return [...this.typers.keys()];
  }

  get hasOlder() {
    return this.timeline.hasOlder;
  }

  get loadingOlder() {
    return this.historyQueue.some((h) => h.kind === 'older');
  }

  /** The highest seq this client knows of. */
  get lastSeq() {
    return Math.max(this.timeline.knownHead, this.timeline.newest);
  }

  /** Messages from others after this user's read cursor. */
  get unread() {
    const me = this.client.user;
    let n = 0;
    for (const m of this.timeline.list()) if (m.seq > this.myRead && m.from !== me && !isSystem(m)) n++;
    return n + Math.max(0, this.timeline.knownHead - Math.max(this.timeline.newest, this.myRead));
  }

  /** The highest read cursor of another (human) user. */
  get othersRead() {
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
  view() {
    const me = this.client.user;
    const seen = this.othersRead;
    const items = this.timeline.list().map((m) => {
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
