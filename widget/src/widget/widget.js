// The support chat widget: one <script> tag.
//
//   <script src="https://chat.example/widget.js"
//           data-key="pk_…"                             (a publishable key: tokens from POST /embed/token, no backend)
//           data-url="wss://chat.example/"              (default: the script's own host)
//           data-http-url="https://api.chat.example"    (the HTTP API, for files and tokens; default: data-url's host)
//           data-token-url="/api/chat-token"            (instead of a key: GET → {"token": "…"} or the JWT as text)
//           data-room="support-{visitor}"               ({visitor}: a random id kept in localStorage)
//           data-name="…" data-email="…"                (a signed-in visitor: told to the desk with `identify`)
//           data-title="Support"></script>
//
// See docs/widget.md.

import { RoomcastClient } from '../sdk/client.js';
import { decodeClaims } from '../sdk/claims.js';
import { httpBase } from '../sdk/http.js';
import { embedTokens } from '../sdk/embed.js';
import { identify, rate } from '../sdk/visitor.js';
import { CSS, ChatView, bannerText } from '../ui/chat.js';
import { h } from '../ui/dom.js';
import { byEmail, intro } from './intro.js';
import { rating } from './rating.js';

const WIDGET_CSS = `
:host{all:initial;font:14px/1.4 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;color:#111827}
.launcher{position:fixed;right:16px;bottom:16px;z-index:2147483000;display:flex;align-items:center;gap:8px;font-weight:600;background:#1d4ed8;color:#fff;border:0;border-radius:999px;padding:12px 18px;box-shadow:0 6px 20px rgba(0,0,0,.25)}
.badge{background:#dc2626;color:#fff;border-radius:999px;font-size:12px;min-width:20px;padding:1px 6px;text-align:center}
.panel{position:fixed;right:16px;bottom:80px;z-index:2147483000;width:min(370px,calc(100vw - 16px));height:min(560px,calc(100vh - 96px));display:flex;flex-direction:column;background:#fff;border-radius:14px;box-shadow:0 12px 40px rgba(0,0,0,.3);overflow:hidden}
header{padding:10px 12px;background:#1d4ed8;color:#fff}
h2{margin:0;font-size:16px}
.agent{margin:2px 0 0;font-size:12px;opacity:.95;display:flex;align-items:center;gap:6px}
.dot{width:8px;height:8px;border-radius:50%;background:#9ca3af;display:inline-block}
.dot.online{background:#22c55e}.dot.away,.dot.busy{background:#f59e0b}
.intro,.rate{padding:8px 12px;border-bottom:1px solid #e5e7eb;font-size:13px;max-height:50%;overflow-y:auto}
.intro p,.rate p{margin:2px 0}
.intro img{width:32px;height:32px;border-radius:50%;margin-right:-6px;border:2px solid #fff;background:#e5e7eb;overflow:hidden}
.greet{font-size:15px;font-weight:600}
.who,.rate form{display:grid;gap:3px}
input{padding:5px 8px;border:1px solid #9ca3af;border-radius:8px}
.rate button,.who button{margin:2px;padding:4px 10px;border:1px solid #1d4ed8;border-radius:8px;background:#fff;color:#1d4ed8;justify-self:start}
.rate [aria-pressed=true]{background:#1d4ed8;color:#fff}
.x{font-size:22px;line-height:1;background:none;border:0;color:#fff;padding:4px 8px;border-radius:8px}
@media (max-width:480px){.panel{right:0;left:0;bottom:0;top:0;width:100%;height:100%;border-radius:0}.launcher{right:12px;bottom:12px}}
${CSS}`;

function ago(ms) {
  const m = Math.round((Date.now() - ms) / 60000);
  return m < 1 ? 'just now' : m < 60 ? `${m} min ago` : `${Math.round(m / 60)} h ago`;
}

function visitorId() {
  try {
    let v = localStorage.getItem('roomcast:visitor');
    if (!v) {
      const a = new Uint8Array(12);
      crypto.getRandomValues(a);
      v = [...a].map((b) => b.toString(16).padStart(2, '0')).join('');
      localStorage.setItem('roomcast:visitor', v);
    }
    return v;
  } catch {
    return 'anon';
  }
}

/**
 * localStorage (sessionStorage with `session`), quietly (storage disabled, sandboxed frames):
 * `kept(k)` reads, `kept(k, v)` writes.
 */
function kept(k, v, session) {
  try {
    const store = session ? sessionStorage : localStorage;
    if (v === undefined) return store.getItem(k);
    store.setItem(k, v);
  } catch {}
  return null;
}

function start(script) {
  const d = script.dataset;
  const src = new URL(script.src, location.href);
  const url = d.url || `${src.protocol === 'https:' ? 'wss:' : 'ws:'}//${src.host}/`;
  let client = null;
  let view = null;
  let room = null;
  /** Why there is no chat (the key or the page refused): said in the banner, nothing is retried. */
  let refused = '';
  /** What the desk was told: {name, email}, from data-name/data-email, identify() or the form. */
  let who = d.name || d.email ? { name: d.name, email: d.email } : null;

  const host = h('div', { id: 'roomcast-widget' });
  const shadow = host.attachShadow({ mode: 'open' });
  const badge = h('span', { class: 'badge', hidden: true, 'aria-label': 'unread messages' });
  const launcher = h('button', { class: 'launcher', type: 'button', 'aria-expanded': 'false', 'aria-controls': 'rc-panel' }, h('span', null, d.label || 'Chat with us'), badge);
  const title = h('h2', { id: 'rc-title' }, d.title || 'Support');
  const dot = h('span', { class: 'dot', 'aria-hidden': 'true' });
  const agentText = h('span');
  const closeBtn = h('button', { class: 'x', type: 'button', 'aria-label': 'Close chat' }, '×');
  const bannerMsg = h('span');
  const bannerBtn = h('button', { type: 'button', hidden: true, onclick: () => client?.reconnectNow() }, 'Reconnect now');
  const banner = h('div', { class: 'banner', role: 'status', hidden: true }, bannerMsg, bannerBtn);
  const panel = h(
    'section',
    { id: 'rc-panel', class: 'panel', role: 'dialog', 'aria-modal': 'false', 'aria-labelledby': 'rc-title', hidden: true },
    h('header', null, h('div', null, title, h('p', { class: 'agent' }, dot, agentText)), closeBtn),
    banner,
  );
  shadow.append(h('style', null, WIDGET_CSS), launcher, panel);
  let open = false;
  /** What the page gets (window.RoomcastWidget): client, room and view are set once connected. */
  const w = { element: host, open: () => setOpen(true), close: () => setOpen(false), identify: (next) => tell(next) };

  /** Tells the desk who the visitor is (kept per room, so the form is not shown again). */
  function tell(next) {
    const asked = { ...who, ...next };
    // Before the chat starts: told once it does.
    if (!client) return Promise.resolve((who = asked));
    return identify(client, room, asked).then((r) => {
      // As the desk keeps them (the email's domain lower-cased).
      kept(`roomcast:who:${room}`, JSON.stringify((who = { name: r.name, email: r.email })));
      render();
      return r;
    });
  }
  let desk = {};
  let first = null;
  const after = rating(
    (score, comment) => rate(client, room, score, comment),
    () => view.input.focus(),
    (v) => kept(`roomcast:rated:${room}`, v),
  );

  /** The chat, once its token source and room are known. */
  function connect(token, name, profile) {
    room = name;
    desk = profile;
    const known = kept(`roomcast:who:${room}`);
    if (!who && known) who = JSON.parse(known);
    first = intro(desk, tell);
    if (!d.title && desk.team) title.textContent = desk.team;
    client = new RoomcastClient({
      url,
      token,
      mode: d.mode || 'auto',
      httpUrl: d.httpUrl,
      storageKey: `roomcast:${room}`,
      ...(d.maxConnectionSecs ? { maxConnectionMs: Number(d.maxConnectionSecs) * 1000 } : {}),
    });
    view = new ChatView(client, room, panel, { isOpen: () => open });
    view.log.before(first.el);
    view.form.before(after.el);
    Object.assign(w, { client, room, view });
    client.on('change', render);
    client.join(room);
    client.connect();
    if (who && !known) tell({}).catch(() => {});
    render();
  }

  /**
   * A token request refused for good (400, 403: the key, this page's origin, a blocked visitor):
   * said, and nothing is retried. 429, 5xx and the network: asked again later (false).
   */
  function refuse(e) {
    if (!(e.status < 429)) return false;
    refused = 'This chat is not available.';
    // After the link has handled the failed token (it would schedule a retry).
    setTimeout(() => client?.disconnect());
    render();
    return true;
  }

  if (d.key) {
    // A publishable key: the token (and the room) from POST /embed/token.
    const tokens = embedTokens({ httpUrl: (d.httpUrl || httpBase(url)).replace(/\/+$/, ''), key: d.key, name: d.name, storage: { getItem: kept, setItem: kept } });
    const load = () =>
      tokens.load().then(
        (a) =>
          connect(
            () =>
              tokens.token().catch((e) => {
                refuse(e);
                throw e;
              }),
            a.room,
            a.desk || {},
          ),
        (e) => refuse(e) || setTimeout(load, 5000),
      );
    load();
  } else {
    const visitor = visitorId();
    const fill = (s) => s && s.replaceAll('{visitor}', visitor);
    const tokenUrl = fill(d.tokenUrl);
    const token = d.token
      ? d.token
      : async () => {
          const r = await fetch(new URL(tokenUrl, location.href), { credentials: 'same-origin', cache: 'no-store' });
          if (!r.ok) throw new Error(`token endpoint: ${r.status}`);
          const text = (await r.text()).trim();
          return text.startsWith('{') ? JSON.parse(text).token : text;
        };
    let name = fill(d.room);
    if (!name && d.token) name = (decodeClaims(d.token).rooms || []).find((r) => !r.includes('*'));
    if (!name) throw new Error('roomcast widget: data-room is required');
    // A signed token says nothing about the desk: the page may, with attributes.
    connect(token, name, { team: d.team, greeting: d.greeting, reply_time: d.replyTime });
  }

  function setOpen(next, focus = true) {
    open = next;
    panel.hidden = !open;
    launcher.setAttribute('aria-expanded', String(open));
    kept('roomcast:open', open ? '1' : '', true);
    if (open) {
      if (view) view.stick = true;
      render();
      if (focus) view?.input.focus();
    } else if (focus) launcher.focus();
  }
  launcher.addEventListener('click', () => setOpen(!open));
  closeBtn.addEventListener('click', () => setOpen(false));
  panel.addEventListener('keydown', (e) => {
    if (e.key === 'Escape') setOpen(false);
  });
  document.addEventListener('visibilitychange', () => view?.markRead());
  // (Back online, the client reconnects at once by itself.)
  addEventListener('online', render);
  addEventListener('offline', render);

  function render() {
    const r = client?.room(room);
    const info = client ? client.stateInfo() : { state: 'connecting' };
    // 4003: an agent blocked the visitor; the client does not reconnect.
    let text = refused || (info.state === 'forbidden' ? 'This chat is no longer available.' : bannerText(r?.state === 'forbidden' ? { state: 'forbidden' } : info));
    const offline = !navigator.onLine;
    if (offline && !refused) text = "You're offline. Messages will be sent when you're back online.";
    banner.hidden = !text;
    if (bannerMsg.textContent !== text) bannerMsg.textContent = text;
    banner.dataset.state = refused ? 'refused' : offline ? 'offline' : info.state;
    bannerBtn.hidden = Boolean(refused) || offline || !(info.retryAt || ['unauthorized', 'closed'].includes(info.state));
    const gone = Boolean(refused) || info.state === 'forbidden' || r?.state === 'forbidden';
    // The agent: the conversation's, else the last person (not a bot) other than the visitor who wrote.
    const conv = r?.conversation;
    let agent = conv?.status === 'assigned' ? conv.agent : null;
    if (!agent && r && conv?.status !== 'closed' && conv?.status !== 'waiting') {
      agent = [...r.view()].reverse().find((m) => !m.mine && !m.system && m.author !== 'service')?.from;
    }
    const p = agent && (client.presence.get(agent) || r.members.get(agent));
    const status = p?.status || 'offline';
    dot.className = `dot ${agent ? status : ''}`;
    const rest = agent && (status === 'offline' ? ` was last seen ${ago(p?.last_seen || Date.now())}` : ` is ${status}`);
    const line = agent
      ? agent + rest
      : conv?.status === 'closed'
        ? 'Conversation closed'
        : byEmail(desk)
          ? "We'll reply by email"
          : conv?.status === 'waiting'
            ? 'Waiting for an agent…'
            : `We usually reply ${desk.reply_time || 'in a few minutes'}`;
    if (agentText.textContent !== line) agentText.replaceChildren(...(agent ? [h('bdi', null, agent), rest] : [line]));
    const unread = r ? r.unread : 0;
    badge.hidden = open || !unread;
    badge.textContent = String(unread);
    if (first) {
      first.update(!r?.view().some((m) => !m.system), who, conv?.status === 'closed');
      first.el.hidden ||= gone;
    }
    after.update(gone ? null : conv);
    if (view) view.form.hidden = gone;
    if (open) view?.render();
  }

  setInterval(render, 1000); // countdowns, "last seen"
  (document.body || document.documentElement).append(host);
  if (kept('roomcast:open', undefined, true) === '1' || d.open === 'true') setOpen(true, false);
  render();
  return w;
}

const script = document.currentScript;
if (script) {
  const go = () => {
    window.roomcastWidget = window.RoomcastWidget = start(script);
  };
  if (document.body) go();
  else document.addEventListener('DOMContentLoaded', go);
}
