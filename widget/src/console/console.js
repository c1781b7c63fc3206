// The agent console (/console): the conversation list (waiting, mine, others', with search),
// the agent's availability, accept, chat in several conversations at once, transfer, unassign,
// block, delete, close; notifications (tone, desktop, title count) with mute.
// Token: `#token=<JWT>` in the URL (role agent, rooms `support-*` and `inbox`), else the page's
// data-token-url (the local server's dev endpoint, with --dev-tokens).
// Parts: list.js (the list), pane.js (a conversation), availability.js, notify.js, format.js.

import { RoomcastClient } from '../sdk/client.js';
import { INBOX_ROOM, isSystem, statusOf } from '../sdk/desk.js';
import { bannerText } from '../ui/chat.js';
import { h } from '../ui/dom.js';
import { AvailabilityControl } from './availability.js';
import { isolate, preview } from './format.js';
import { ConversationList } from './list.js';
import { Notifier } from './notify.js';
import { Pane } from './pane.js';

const script = document.currentScript;
const params = new URLSearchParams(location.search);
const fragment = new URLSearchParams(location.hash.slice(1));
const agentName = params.get('agent') || 'agent';
const tokenUrl = (script?.dataset.tokenUrl || '').replaceAll('{agent}', encodeURIComponent(agentName));
const url = `${location.protocol === 'https:' ? 'wss:' : 'ws:'}//${location.host}/`;
const storageKey = `roomcast:console:${agentName}`;

const client = new RoomcastClient({
  url,
  token:
    fragment.get('token') ||
    (async () => {
      const r = await fetch(tokenUrl, { cache: 'no-store' });
      if (!r.ok) throw new Error(`token endpoint: ${r.status}`);
      return (await r.json()).token;
    }),
  storageKey,
});
// The token is not left in the address bar (history, screenshots, shared links).
if (fragment.has('token')) history.replaceState(null, '', location.pathname + location.search);

const $ = (sel) => document.querySelector(sel);
const chats = $('#chats');
const banner = $('#banner');
const who = $('#who');
const errorLine = h('p', { class: 'error', role: 'alert', hidden: true });
banner.after(errorLine);
/** An error said inline (never alert()), until the next one or 10 s: text, or parts with names in <bdi>. */
function failed(...parts) {
  errorLine.replaceChildren(...parts);
  errorLine.hidden = false;
  clearTimeout(failed.t);
  failed.t = setTimeout(() => (errorLine.hidden = true), 10000);
}
let storage = null;
try {
  storage = localStorage;
} catch {
  // Storage disabled: choices last until the page is reloaded.
}

/** room → Pane; rooms whose pane the agent removed stay closed until they come back to them. */
const panes = new Map();
const dismissed = new Set();

function openPane(room) {
  dismissed.delete(room);
  let pane = panes.get(room);
  if (!pane) {
    pane = new Pane(client, room, { list, failed, changed: render, dismissed: (r) => (panes.delete(r), dismissed.add(r), render()) });
    panes.set(room, pane);
    chats.append(pane.el);
  }
  return pane;
}

async function accept(room, button) {
  button.disabled = true;
  try {
    await client.assign(room);
    openPane(room).view.input.focus();
  } catch (e) {
    button.disabled = false;
    failed('Could not accept ', h('bdi', null, list.label(room)), `: ${e.code || e.message}`);
  }
  render();
}

const list = new ConversationList(client, {
  queue: $('#queue'),
  mine: $('#mine'),
  others: $('#others'),
  search: $('#search'),
  failed,
  accept,
  open: (room) => openPane(room).view.input.focus(),
  changed: () => render(),
});

const notifier = new Notifier({
  storage,
  key: `${storageKey}:muted`,
  enable: $('#notify'),
  mute: $('#mute'),
  onMute: () => availability.send(),
});

const availability = new AvailabilityControl(client, {
  storage,
  key: `${storageKey}:availability`,
  status: $('#availability'),
  capacity: $('#capacity'),
  shown: $('#agent-state'),
  muted: () => (notifier.chosen ? notifier.muted : undefined),
  failed,
});

/** `room`'s conversation as last changed: the room's (joined, its messages) or the inbox's, by version. */
function conversationOf(room) {
  const a = client.room(room)?.conversation;
  const b = client.desk.get(room);
  if (!a || !b) return a || b;
  return (b.version ?? 0) > (a.version ?? 0) ? b : a;
}

/** Whether `room`'s conversation is this agent's now. */
const isMine = (room) => {
  const c = conversationOf(room);
  return c?.status === 'assigned' && c.agent === client.user;
};

// A conversation waiting for a while (one the desk gives someone at once is not news), one given
// to this agent, and a visitor's message in one of theirs: tone, desktop notification.
const announced = new Set();
function announce(s) {
  const key = `${s.room}/${s.version}`;
  if (announced.has(key)) return;
  announced.add(key);
  if (s.status === 'waiting') {
    setTimeout(() => {
      if (client.desk.get(s.room)?.status === 'waiting') notifier.notify('A visitor is waiting', isolate(list.label(s.room)), `waiting:${s.room}`, () => openPane(s.room));
    }, 1500);
  } else if (s.status === 'assigned' && s.agent === client.user && s.by !== client.user) {
    notifier.notify('New conversation for you', isolate(list.label(s.room)), `mine:${s.room}`, () => openPane(s.room).view.input.focus());
  }
}

client.on('message', (m, { room, live }) => {
  if (!live || client.room(room)?.replaying) return;
  if (room === INBOX_ROOM) {
    list.soon();
    const s = statusOf(m);
    if (s) announce({ ...s, by: m.meta?.by });
    return;
  }
  if (isSystem(m) || m.from === client.user) return;
  list.soon();
  if (isMine(room)) notifier.notify(`Message from ${isolate(list.label(room))}`, preview(m.body || 'sent a file'), `msg:${room}`, () => openPane(room).view.input.focus());
});

client.on('state', (s) => {
  if (s !== 'connected') return;
  availability.send().then(() => availability.agent && notifier.follow(availability.agent.muted));
  list.refresh();
});

function render() {
  const info = client.stateInfo();
  const text = bannerText(info);
  banner.hidden = !text;
  banner.textContent = text;
  banner.dataset.state = info.state;
  const me = client.user || agentName;
  if (who.dataset.user !== me) {
    who.dataset.user = me;
    who.replaceChildren(h('bdi', null, me), client.user ? ` (${client.role})` : '');
  }
  const { waiting, mine } = list.render();
  $('#waiting-count').textContent = String(waiting.length);
  // The list's view of this agent (their load changes with every assignment), unless the
  // `agent` reply came after that list.
  const listed = list.agents.find((a) => a.user === client.user);
  if (listed && list.at > availability.at) availability.show(listed);
  for (const c of client.inbox('assigned')) if (c.agent === client.user && !dismissed.has(c.room)) openPane(c.room);
  let unread = 0;
  for (const e of mine) if (client.room(e.room)?.unread) unread++;
  notifier.count(waiting.length + unread);
  for (const [room, pane] of panes) pane.render(conversationOf(room));
}

window.roomcastConsole = { client, list, notifier, availability, panes };
client.on('change', render);
setInterval(render, 1000);
client.watchInbox();
client.connect();
render();
