// The agent console (/console): the inbox of waiting conversations, accept, chat in several at
// once, close. Token: `#token=<JWT>` in the URL (role agent, rooms `support-*` and `inbox`), else
// the page's data-token-url (the local server's dev endpoint, with --dev-tokens).

import { RoomcastClient } from '../sdk/client.js';
import { ChatView, bannerText } from '../ui/chat.js';
import { h } from '../ui/dom.js';

const script = document.currentScript;
const params = new URLSearchParams(location.search);
const fragment = new URLSearchParams(location.hash.slice(1));
const agentName = params.get('agent') || 'agent';
const tokenUrl = (script?.dataset.tokenUrl || '').replaceAll('{agent}', encodeURIComponent(agentName));
const url = `${location.protocol === 'https:' ? 'wss:' : 'ws:'}//${location.host}/`;

const client = new RoomcastClient({
  url,
  token:
    fragment.get('token') ||
    (async () => {
      const r = await fetch(tokenUrl, { cache: 'no-store' });
      if (!r.ok) throw new Error(`token endpoint: ${r.status}`);
      return (await r.json()).token;
    }),
  storageKey: `roomcast:console:${agentName}`,
});
window.roomcastConsole = { client };
// The token is not left in the address bar (history, screenshots, shared links).
if (fragment.has('token')) history.replaceState(null, '', location.pathname + location.search);

const $ = (sel) => document.querySelector(sel);
const queue = $('#queue');
const mine = $('#mine');
const chats = $('#chats');
const banner = $('#banner');
const errorLine = h('p', { class: 'error', role: 'alert', hidden: true });
banner.after(errorLine);
/** An error said inline (never alert()), until the next one or 10 s. */
function failed(text) {
  errorLine.textContent = text;
  errorLine.hidden = false;
  clearTimeout(failed.t);
  failed.t = setTimeout(() => (errorLine.hidden = true), 10000);
}
const who = $('#who');
const panes = new Map();

function openPane(room) {
  if (panes.has(room)) return panes.get(room);
  client.join(room);
  const status = h('span', { class: 'status' });
  const presence = h('span', { class: 'presence' });
  const closeBtn = h('button', { type: 'button', class: 'close-conv' }, 'Close conversation');
  const dismiss = h('button', { type: 'button', class: 'dismiss', hidden: true, 'aria-label': `Remove ${room}` }, 'Remove');
  const pane = h(
    'section',
    { class: 'pane', 'data-room': room, 'aria-label': `Conversation ${room}` },
    h('header', null, h('div', null, h('h3', null, room), h('p', null, presence, ' · ', status)), h('div', null, closeBtn, dismiss)),
  );
  const view = new ChatView(client, room, pane, { placeholder: 'Reply…' });
  closeBtn.addEventListener('click', async () => {
    closeBtn.disabled = true;
    try {
      await client.close(room);
    } catch (e) {
      failed(`Could not close: ${e.code || e.message}`);
    }
    closeBtn.disabled = false;
    render();
  });
  dismiss.addEventListener('click', () => {
    client.leave(room);
    pane.remove();
    panes.delete(room);
    dismissed.add(room);
    render();
  });
  chats.append(pane);
  const p = { pane, view, status, presence, closeBtn, dismiss };
  panes.set(room, p);
  return p;
}

const dismissed = new Set();

async function accept(room, button) {
  button.disabled = true;
  try {
    await client.assign(room);
    openPane(room).view.input.focus();
  } catch (e) {
    button.disabled = false;
    failed(`Could not accept ${room}: ${e.code || e.message}`);
  }
  render();
}

const ago = (ts) => {
  const m = Math.round((Date.now() - ts) / 60000);
  return m < 1 ? 'just now' : `${m} min ago`;
};

/** Replaces a list's children only when what it shows changed (a click must not hit a stale node). */
function fill(list, signature, build) {
  if (list.dataset.sig === signature) return;
  list.dataset.sig = signature;
  list.replaceChildren(...build());
}

function render() {
  const info = client.stateInfo();
  const text = bannerText(info);
  banner.hidden = !text;
  banner.textContent = text;
  banner.dataset.state = info.state;
  who.textContent = client.user ? `${client.user} (${client.role})` : agentName;
  const waiting = client.inbox('waiting');
  fill(queue, JSON.stringify(waiting.map((c) => [c.room, ago(c.ts)])), () =>
    waiting.length
      ? waiting.map((c) =>
          h(
            'li',
            { 'data-room': c.room },
            h('span', { class: 'room' }, c.room),
            h('span', { class: 'when' }, ago(c.ts)),
            h('button', { type: 'button', class: 'accept', onclick: (e) => accept(c.room, e.currentTarget) }, 'Accept'),
          ),
        )
      : [h('li', { class: 'empty' }, 'No one is waiting.')],
  );
  $('#waiting-count').textContent = String(waiting.length);
  const assigned = client.inbox('assigned').filter((c) => c.agent === client.user);
  for (const c of assigned) if (!dismissed.has(c.room)) openPane(c.room);
  const unreadOf = (room) => client.room(room)?.unread || 0;
  fill(mine, JSON.stringify(assigned.map((c) => [c.room, unreadOf(c.room)])), () =>
    assigned.length
      ? assigned.map((c) => {
          const unread = unreadOf(c.room);
          return h('li', { 'data-room': c.room }, h('a', { href: '#', onclick: (e) => (e.preventDefault(), openPane(c.room).view.input.focus()) }, c.room), unread ? h('span', { class: 'badge' }, String(unread)) : null);
        })
      : [h('li', { class: 'empty' }, 'None.')],
  );
  for (const [room, p] of panes) {
    const r = client.room(room);
    const conv = r?.conversation || client.desk.get(room);
    p.status.textContent = conv ? (conv.status === 'assigned' ? `assigned to ${conv.agent}` : conv.status) : '…';
    p.pane.dataset.status = conv?.status || '';
    const visitor = r && [...r.members.values()].find((m) => m.user !== client.user);
    p.presence.textContent = visitor ? `${visitor.user}: ${visitor.status}` : 'visitor';
    const closed = conv?.status === 'closed';
    p.closeBtn.hidden = closed;
    p.dismiss.hidden = !closed;
    p.view.render();
  }
}

client.on('change', render);
setInterval(render, 1000);
client.watchInbox();
client.connect();
render();
