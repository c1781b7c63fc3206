// The conversation list (protocol.md §15, "The conversation list"): the desk's `conversations`
// reply (visitor name and email, last message, unread count, since when waiting, status and
// agent), asked for on start, on every inbox message, after messages in the agent's rooms and
// every 10 s, with the search box's `query`. Between two replies the inbox's status changes
// (client.desk, by version) are newer and win, so an accepted conversation moves at once.

import { listConversations } from '../sdk/desk.js';
import { h } from '../ui/dom.js';
import { preview, visitorLabel, waitingFor } from './format.js';

const REFRESH_MS = 10000;

export class ConversationList {
  /**
   * @param {import('../sdk/client.js').RoomcastClient} client
   * @param {{queue: HTMLElement, mine: HTMLElement, others: HTMLElement, search: HTMLInputElement, failed: (text: string) => void, accept: (room: string, button: HTMLButtonElement) => void, open: (room: string) => void, changed: () => void}} o
   */
  constructor(client, o) {
    this.client = client;
    this.o = o;
    /** The last reply: items in the desk's order, and the agents. */
    this.items = [];
    this.agents = [];
    this.byRoom = new Map();
    this.query = '';
    this.inFlight = false;
    this.again = false;
    /** When the last reply came (ms): the agents in it are newer than an earlier `agent` reply. */
    this.at = 0;
    o.search.addEventListener('input', () => {
      clearTimeout(this.typed);
      this.typed = setTimeout(() => {
        this.query = o.search.value.trim();
        this.refresh();
      }, 250);
    });
    setInterval(() => this.refresh(), REFRESH_MS);
  }

  /** Asks again soon (coalesces bursts of inbox messages into one request). */
  soon() {
    clearTimeout(this.soonTimer);
    this.soonTimer = setTimeout(() => this.refresh(), 150);
  }

  async refresh() {
    if (this.inFlight) return void (this.again = true);
    this.inFlight = true;
    const query = this.query;
    try {
      const { items, agents } = await listConversations(this.client, { query });
      if (query === this.query) {
        this.items = items;
        this.agents = agents;
        this.listedQuery = query;
        this.at = Date.now();
        // Names are remembered beyond one search, for the panes' headers.
        for (const i of items) this.byRoom.set(i.room, i);
        this.o.changed();
      } else this.again = true;
    } catch (e) {
      if (e.code !== 'TIMEOUT') this.o.failed(`Could not list conversations: ${e.code || e.message}`);
    }
    this.inFlight = false;
    if (this.again) {
      this.again = false;
      this.refresh();
    }
  }

  /** The list entry of `room` (the last one seen), or undefined. */
  entry(room) {
    return this.byRoom.get(room);
  }

  /** Who `room`'s conversation is with (the visitor's name, else id, else the room). */
  label(room) {
    return visitorLabel(this.entry(room), room);
  }

  /** The open conversations: the last reply, with newer statuses from the inbox. */
  entries() {
    const byRoom = new Map(this.items.map((i) => [i.room, { ...i }]));
    for (const c of this.client.desk.values()) {
      const e = byRoom.get(c.room);
      if (e) {
        if (c.version != null && (e.version == null || c.version > e.version)) Object.assign(e, { status: c.status, agent: c.agent, version: c.version });
      } else if (!this.listedQuery && c.status !== 'closed') {
        // Not in the last reply yet (it changed since): shown with what the inbox says.
        byRoom.set(c.room, { waiting_since: c.ts, unread: 0, ...this.byRoom.get(c.room), room: c.room, status: c.status, agent: c.agent, version: c.version });
      }
    }
    const open = [...byRoom.values()].filter((e) => e.status === 'waiting' || e.status === 'assigned');
    // Oldest-waiting first, as the desk orders them.
    return open.sort((a, b) => (a.status === b.status ? (a.waiting_since || 0) - (b.waiting_since || 0) : a.status === 'waiting' ? -1 : 1));
  }

  render() {
    const me = this.client.user;
    const all = this.entries();
    const waiting = all.filter((e) => e.status === 'waiting');
    const mine = all.filter((e) => e.status === 'assigned' && e.agent === me);
    const others = all.filter((e) => e.status === 'assigned' && e.agent !== me);
    const now = Date.now();
    const sig = (list) => JSON.stringify(list.map((e) => [e.room, e.name, e.email, e.visitor, e.last?.body, e.unread, e.agent, e.status === 'waiting' ? waitingFor(e.waiting_since, now) : '']));
    fill(this.o.queue, sig(waiting), () => (waiting.length ? waiting.map((e) => this.item(e, now)) : [h('li', { class: 'empty' }, this.listedQuery ? 'No match is waiting.' : 'No one is waiting.')]));
    fill(this.o.mine, sig(mine), () => (mine.length ? mine.map((e) => this.item(e, now)) : [h('li', { class: 'empty' }, 'None.')]));
    fill(this.o.others, sig(others), () => (others.length ? others.map((e) => this.item(e, now)) : [h('li', { class: 'empty' }, 'None.')]));
    return { waiting, mine };
  }

  /** One conversation: who (isolated: a name may carry right-to-left text), email, last message, unread, since when or whose. */
  item(e, now) {
    const who = visitorLabel(e);
    const me = this.client.user;
    const state =
      e.status === 'waiting'
        ? h('span', { class: 'when' }, waitingFor(e.waiting_since, now))
        : e.agent === me
          ? h('span', { class: 'when' }, 'assigned to you')
          : h('span', { class: 'when' }, 'assigned to ', h('bdi', null, e.agent || '?'));
    const action =
      e.status === 'waiting'
        ? h('button', { type: 'button', class: 'accept', 'aria-label': `Accept ${who}`, onclick: (ev) => this.o.accept(e.room, ev.currentTarget) }, 'Accept')
        : e.agent === me
          ? h('button', { type: 'button', class: 'open', 'aria-label': `Open ${who}`, onclick: () => this.o.open(e.room) }, 'Open')
          : null;
    return h(
      'li',
      { 'data-room': e.room, 'data-status': e.status },
      h(
        'div',
        { class: 'conv' },
        h('div', { class: 'who' }, h('bdi', { class: 'name' }, who), e.email ? h('bdi', { class: 'email' }, e.email) : null),
        e.last?.body ? h('div', { class: 'last', dir: 'auto' }, preview(e.last.body)) : null,
        h('div', { class: 'state' }, state, e.unread ? h('span', { class: 'badge' }, String(e.unread), h('span', { class: 'sr' }, ' unread')) : null),
      ),
      action,
    );
  }
}

/** Replaces a list's children only when what it shows changed (a click must not hit a stale node). */
export function fill(list, signature, build) {
  if (list.dataset.sig === signature) return;
  list.dataset.sig = signature;
  list.replaceChildren(...build());
}
