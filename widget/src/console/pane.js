// One conversation's pane: who it is with (the visitor's name, isolated, and the room), presence
// and status, the chat view, and what the assigned agent may do: transfer to another agent,
// unassign (back to the queue), block the visitor (confirmed inline), delete any message
// (moderation, protocol.md §15), close. Errors go to the console's inline error line.

import { setBlocked, transfer, unassign } from '../sdk/desk.js';
import { ChatView } from '../ui/chat.js';
import { h } from '../ui/dom.js';

export class Pane {
  /**
   * @param {import('../sdk/client.js').RoomcastClient} client
   * @param {string} room
   * @param {{list: import('./list.js').ConversationList, failed: (text: string) => void, changed: () => void, dismissed: (room: string) => void}} o
   */
  constructor(client, room, o) {
    this.client = client;
    this.room = room;
    this.o = o;
    client.join(room);
    const button = (cls, text, onclick, label) => h('button', { type: 'button', class: cls, onclick, 'aria-label': label }, text);
    this.name = h('bdi', { class: 'name' });
    this.status = h('span', { class: 'status' });
    this.presence = h('span', { class: 'presence' });
    this.transferTo = h('select', { class: 'transfer-to', 'aria-label': 'Transfer to agent' });
    this.transferBtn = button('transfer', 'Transfer', () => this.act(this.transferBtn, () => transfer(client, room, this.transferTo.value), 'transfer'));
    this.unassignBtn = button('unassign', 'Unassign', () => this.act(this.unassignBtn, () => unassign(client, room), 'unassign'), 'Unassign: back to the queue');
    this.blockBtn = button('block', 'Block visitor', () => this.askBlock());
    this.closeBtn = button('close-conv', 'Close conversation', () => this.act(this.closeBtn, () => client.close(room), 'close'));
    this.dismiss = button('dismiss', 'Remove', () => this.remove(), `Remove ${room}`);
    this.confirmText = h('span', null);
    this.confirmYes = button('block-yes', 'Block', () => this.block());
    this.confirmNo = button('block-no', 'Cancel', () => this.hideConfirm());
    this.confirm = h('div', { class: 'confirm', role: 'group', 'aria-label': 'Confirm block', hidden: true }, this.confirmText, this.confirmYes, this.confirmNo);
    this.tools = h('div', { class: 'tools' }, this.transferTo, this.transferBtn, this.unassignBtn, this.blockBtn);
    this.el = h(
      'section',
      { class: 'pane', 'data-room': room, 'aria-label': `Conversation ${room}` },
      h(
        'header',
        null,
        h('div', { class: 'title' }, h('h3', null, this.name, ' ', h('span', { class: 'room' }, room)), h('p', null, this.presence, ' · ', this.status)),
        h('div', { class: 'ends' }, this.closeBtn, this.dismiss),
        this.tools,
        this.confirm,
      ),
    );
    this.view = new ChatView(client, room, this.el, {
      placeholder: 'Reply…',
      // The visitor by the name they gave (their token may carry none).
      nameOf: (user) => {
        const entry = this.o.list.entry(room);
        return entry?.name && user === entry.visitor ? entry.name : user;
      },
      actions: (m) => this.deleteControl(m),
    });
  }

  /** A delete button on every stored message (shown while the conversation is this agent's). */
  deleteControl(m) {
    if (m.seq == null || m.system || m.deleted) return null;
    return h(
      'button',
      {
        type: 'button',
        class: 'del',
        'aria-label': 'Delete message',
        title: 'Delete message',
        onclick: (e) => this.act(e.currentTarget, () => this.client.remove(this.room, m.seq), 'delete'),
      },
      'Delete',
    );
  }

  /** Runs a request for a button: disabled meanwhile, a refusal said inline. */
  async act(button, request, what) {
    button.disabled = true;
    try {
      await request();
    } catch (e) {
      this.o.failed(`Could not ${what} `, h('bdi', null, this.o.list.label(this.room)), `: ${e.code || e.message}`);
    }
    button.disabled = false;
    this.o.changed();
  }

  /** The visitor's id: the list's, else the room's member who is not an agent (not this one). */
  visitor() {
    const listed = this.o.list.entry(this.room)?.visitor;
    if (listed) return listed;
    const r = this.client.room(this.room);
    return r && [...r.members.keys()].find((u) => u !== this.client.user && !this.o.list.agents.some((a) => a.user === u));
  }

  askBlock() {
    if (this.blocked) return this.act(this.blockBtn, () => this.setBlocked(false), 'unblock');
    this.confirmText.replaceChildren('Block ', h('bdi', null, this.o.list.label(this.room)), '? Their connections close and they cannot write until unblocked. ');
    this.confirm.hidden = false;
    this.confirmYes.focus();
  }

  hideConfirm() {
    this.confirm.hidden = true;
    this.blockBtn.focus();
  }

  async block() {
    this.confirm.hidden = true;
    await this.act(this.blockBtn, () => this.setBlocked(true), 'block');
    this.blockBtn.focus();
  }

  async setBlocked(blocked) {
    const user = this.visitor();
    if (!user) throw new Error('visitor not known yet');
    const r = await setBlocked(this.client, user, blocked);
    this.blocked = r.blocked;
  }

  remove() {
    this.client.leave(this.room);
    this.el.remove();
    this.o.dismissed(this.room);
  }

  /** Shows the current state: `conv` from the room or the inbox, the list's names and agents. */
  render(conv) {
    const me = this.client.user;
    const mine = conv?.status === 'assigned' && conv.agent === me;
    const label = this.o.list.label(this.room);
    if (this.name.textContent !== label) {
      this.name.textContent = label;
      // The visitor's name came (or changed): the message lines drawn before are drawn again.
      for (const item of this.view.items.values()) item.sig = null;
    }
    this.el.setAttribute('aria-label', `Conversation with ${label}`);
    const status = conv ? (conv.status === 'assigned' ? (mine ? 'assigned to you' : `assigned to ${conv.agent}`) : conv.status) : '…';
    if (this.status.dataset.text !== status) {
      this.status.dataset.text = status;
      this.status.replaceChildren(...(conv?.status === 'assigned' && !mine ? ['assigned to ', h('bdi', null, conv.agent)] : [status]));
    }
    this.el.dataset.status = conv?.status || '';
    this.el.toggleAttribute('data-mine', mine);
    const r = this.client.room(this.room);
    const visitor = this.visitor();
    const member = visitor && r?.members.get(visitor);
    this.presence.textContent = member ? `visitor ${member.status}` : 'visitor';
    // Closing is for the agent who has it (or a waiting one); a pane no longer this agent's can go.
    this.closeBtn.hidden = !conv || conv.status === 'closed' || (conv.status === 'assigned' && !mine);
    this.dismiss.hidden = !conv || mine;
    this.tools.hidden = !mine;
    if (!mine) this.confirm.hidden = true;
    this.blockBtn.textContent = this.blocked ? 'Unblock visitor' : 'Block visitor';
    this.agentOptions();
    this.view.render();
  }

  /** The agents to transfer to: the last list's, but this one. */
  agentOptions() {
    const others = this.o.list.agents.filter((a) => a.user !== this.client.user);
    const sig = JSON.stringify(others);
    if (this.transferTo.dataset.sig === sig) return;
    this.transferTo.dataset.sig = sig;
    const chosen = this.transferTo.value;
    this.transferTo.replaceChildren(...(others.length ? others.map((a) => h('option', { value: a.user, selected: a.user === chosen }, `${a.user} (${a.status}, ${a.load ?? 0}/${a.capacity})`)) : [h('option', { value: '' }, 'No other agent')]));
    this.transferTo.disabled = !others.length;
    this.transferBtn.disabled = !others.length;
  }
}
