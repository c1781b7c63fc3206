// One conversation's view: the message log (status ticks, "Seen", scroll-back, attachments),
// the typing line and the composer (files attached with the button, dropped on the view or
// pasted). Used by the widget (one) and the agent console (several at once).

import { h } from './dom.js';
import { Tray, attachmentList } from './attachments.js';
import { MAX_BODY_BYTES, isBlank, richText, utf8Length } from './text.js';

/** The label an author's role gets next to its name ('user' gets none): protocol.md, "Who wrote a message". */
const BADGES = { agent: 'Support', service: 'Bot' };
/** The class of an agent's and a bot's message items. */
const AUTHOR_CLASSES = { agent: 'agent', service: 'bot' };

/** The reactions offered on every message, after the ones it has. */
const QUICK = ['👍', '❤️', '😂'];

const TICKS = {
  pending: ['○', 'Sending'],
  sent: ['✓', 'Sent'],
  seen: ['✓✓', 'Seen'],
  failed: ['!', 'Not sent'],
};

const time = (ts) => new Date(ts).toLocaleTimeString([], { hour: '2-digit', minute: '2-digit' });

/** "ann is typing…", "ann and bo are typing…"; with `wrap`, each name wrapped (isolated) into a list of parts. */
export function typingText(users, nameOf, wrap) {
  if (!users.length) return wrap ? [] : '';
  const names = users.map(nameOf);
  const parts = names.length === 1 ? [names[0], ' is typing…'] : [...names.slice(0, -1).flatMap((n, i) => (i ? [', ', n] : [n])), ' and ', names[names.length - 1], ' are typing…'];
  return wrap ? parts.map((p, i) => (i % 2 ? p : wrap(p))) : parts.join('');
}

/** Why the server refused a message's files (it checks the bytes when the message is sent). */
const FILE_REFUSALS = {
  INVALID: "A file's content doesn't match its type.",
  CONFLICT: 'A file is already on another message.',
  NOT_FOUND: 'A file was not uploaded.',
};
/** Why the server refused a message without files. */
const REFUSALS = {
  TOO_LARGE: 'Too long to send: shorten the message.',
  INVALID: 'Refused: the message has no visible text.',
};

let uid = 0;

export class ChatView {
  /**
   * @param {import('../sdk/client.js').RoomcastClient} client
   * @param {string} room
   * @param {HTMLElement} host  where the view is built
   * @param {{nameOf?: (user: string) => string, placeholder?: string, isOpen?: () => boolean, actions?: (m: object) => Node|null}} o
   *   `actions`: extra controls in a message's meta line (the console's moderation delete)
   */
  constructor(client, room, host, o = {}) {
    this.client = client;
    this.room = room;
    this.o = o;
    this.nameOf = o.nameOf || ((u) => u);
    this.items = new Map();
    const id = `rc-input-${++uid}`;
    this.older = h('button', { class: 'older', type: 'button', onclick: () => this.loadOlder() });
    this.list = h('ol', { class: 'list' });
    // role=log is a polite live region: new messages are announced, the rest is not re-read.
    this.log = h('div', { class: 'log', role: 'log', 'aria-live': 'polite', 'aria-relevant': 'additions', 'aria-label': 'Messages', tabindex: '0' }, this.older, this.list);
    this.typingLine = h('div', { class: 'typing', 'aria-live': 'polite' });
    this.input = h('textarea', { id, rows: '1', placeholder: o.placeholder || 'Write a message…', autocomplete: 'off', 'aria-label': 'Message' });
    this.tray = new Tray(client, room, () => this.trayChanged());
    this.picker = h('input', { type: 'file', multiple: true, hidden: true, accept: client.uploadPolicy.types.join(',') });
    this.sendButton = h('button', { type: 'submit', class: 'send' }, 'Send');
    this.hint = h('div', { class: 'hint', 'aria-live': 'polite', hidden: true });
    this.replying = h('div', { class: 'replying', hidden: true });
    this.form = h(
      'form',
      { class: 'composer' },
      h('button', { type: 'button', class: 'attach', 'aria-label': 'Attach files', title: 'Attach files', onclick: () => this.picker.click() }, '+'),
      this.picker,
      this.input,
      this.sendButton,
    );
    host.append(this.log, this.typingLine, this.tray.el, this.hint, this.replying, this.form);
    this.tray.changed();
    this.picker.addEventListener('change', () => {
      this.tray.add([...this.picker.files]);
      this.picker.value = '';
    });
    // Files dropped anywhere on the conversation, or pasted into the composer (a screenshot).
    host.addEventListener('dragover', (e) => {
      if (!e.dataTransfer?.types.includes('Files')) return;
      e.preventDefault();
      host.classList.add('dropping');
    });
    host.addEventListener('dragleave', (e) => !host.contains(e.relatedTarget) && host.classList.remove('dropping'));
    host.addEventListener('drop', (e) => {
      host.classList.remove('dropping');
      if (!e.dataTransfer?.files.length) return;
      e.preventDefault();
      this.tray.add([...e.dataTransfer.files]);
    });
    this.input.addEventListener('paste', (e) => {
      const files = [...(e.clipboardData?.files || [])];
      if (!files.length) return;
      // Text copied together with an image (from a web page) still pastes as text.
      if (!e.clipboardData.getData('text/plain')) e.preventDefault();
      this.tray.add(files);
    });
    this.form.addEventListener('submit', (e) => {
      e.preventDefault();
      this.submit();
    });
    this.input.addEventListener('keydown', (e) => {
      if (e.key === 'Enter' && !e.shiftKey && !e.isComposing) {
        e.preventDefault();
        this.submit();
      }
    });
    this.input.addEventListener('input', () => {
      if (this.input.value.trim()) this.client.typing(this.room);
      else this.client.stopTyping(this.room);
      this.composed();
    });
    this.log.addEventListener('scroll', () => {
      if (this.log.scrollTop < 40) this.loadOlder();
      this.markRead();
    });
    // A message's buttons: Retry, a reaction (toggles this user's), Reply.
    this.list.addEventListener('click', (e) => {
      const b = e.target.closest?.('button');
      const d = b?.dataset || {};
      const seq = +b?.closest('li').dataset.seq;
      if (d.retry) this.client.retry(d.retry);
      else if (d.emoji) this.client[b.getAttribute('aria-pressed') === 'true' ? 'unreact' : 'react'](this.room, seq, d.emoji).catch((err) => this.composed(err.message));
      else if (d.reply != null) this.reply(seq);
    });
  }

  /** Sets the message the next one answers (shown above the composer), or clears it. */
  reply(seq) {
    const m = seq && this.client.room(this.room)?.timeline.get(seq);
    this.replyTo = m ? seq : undefined;
    this.replying.hidden = !m;
    if (!m) return;
    this.replying.replaceChildren(
      h('span', null, 'Replying to ', h('bdi', null, m.name || this.nameOf(m.from))),
      h('button', { type: 'button', class: 'unattach', 'aria-label': 'Cancel reply', onclick: () => this.reply() }, '×'),
    );
    this.input.focus();
  }

  /** Sends the text and the uploaded files; with uploads still going, once they are done. */
  submit() {
    this.sendWhenReady = this.tray.busy;
    this.sendButton.disabled = this.sendWhenReady;
    this.sendButton.textContent = this.sendWhenReady ? 'Uploading…' : 'Send';
    if (this.sendWhenReady) return;
    const body = this.input.value.trim();
    const files = this.tray.ready().length;
    if (!body && !files) return;
    if (body && isBlank(body) && !files) return this.composed("Nothing to send: the message has only invisible characters.");
    if (utf8Length(body) > MAX_BODY_BYTES) return this.composed();
    this.client.sendMessage(this.room, body, { attachments: this.tray.take(), replyTo: this.replyTo });
    this.reply();
    this.input.value = '';
    this.composed();
    this.stick = true;
    this.render();
  }

  /** After the text changed: the composer's height, the byte counter near the limit, a hint. */
  composed(say) {
    const i = this.input;
    i.style.height = 'auto';
    if (i.value) i.style.height = `${Math.min(i.scrollHeight + 2, 120)}px`;
    const used = utf8Length(i.value.trim());
    const over = used > MAX_BODY_BYTES;
    const text = say || (used >= MAX_BODY_BYTES * 0.9 ? (over ? `Too long: ${used - MAX_BODY_BYTES} bytes over the limit of ${MAX_BODY_BYTES}.` : `${MAX_BODY_BYTES - used} bytes left.`) : '');
    this.hint.hidden = !text;
    this.hint.className = over || say ? 'hint err' : 'hint';
    if (this.hint.textContent !== text) this.hint.textContent = text;
    i.toggleAttribute('aria-invalid', over);
  }

  trayChanged() {
    if (this.sendWhenReady && !this.tray.busy) this.submit();
  }

  loadOlder() {
    const r = this.client.room(this.room);
    if (!r?.hasOlder || r.loadingOlder) return;
    this.anchorHeight = this.log.scrollHeight - this.log.scrollTop;
    this.client.loadOlder(this.room);
  }

  atBottom() {
    return this.log.scrollHeight - this.log.scrollTop - this.log.clientHeight < 30;
  }

  visible() {
    return (this.o.isOpen ? this.o.isOpen() : true) && document.visibilityState === 'visible';
  }

  markRead() {
    if (this.visible() && this.atBottom()) this.client.markRead(this.room);
  }

  render() {
    const r = this.client.room(this.room);
    if (!r) return;
    const stick = this.stick || this.atBottom();
    this.stick = false;
    const prepend = this.anchorHeight;
    const view = r.view();
    const lastSeen = [...view].reverse().find((m) => m.status === 'seen');
    const keep = new Set();
    let prev = null;
    let prevSender = null;
    for (const m of view) {
      const key = `${m.from}\u0000${m.id}`;
      keep.add(key);
      // A bot writing in a person's name is not that person: its lines are grouped apart.
      const sender = m.system ? null : `${m.from}\u0000${m.via || ''}\u0000${m.author}`;
      const sameSender = sender !== null && sender === prevSender;
      const sig = [m.body, m.status, m.deleted, m.edited_ts, m === lastSeen, sameSender, m.attachments?.length, JSON.stringify([m.reactions, m.reply_to])].join('|');
      let entry = this.items.get(key);
      if (!entry || entry.sig !== sig) {
        const li = this.item(m, m === lastSeen, sameSender);
        if (entry) entry.li.replaceWith(li);
        entry = { li, sig };
        this.items.set(key, entry);
      }
      const want = prev ? prev.nextSibling : this.list.firstChild;
      if (want !== entry.li) this.list.insertBefore(entry.li, want);
      prev = entry.li;
      prevSender = sender;
    }
    for (const [key, entry] of this.items) {
      if (!keep.has(key)) {
        entry.li.remove();
        this.items.delete(key);
      }
    }
    this.older.hidden = !r.hasOlder;
    this.older.disabled = r.loadingOlder;
    this.older.textContent = r.loadingOlder ? 'Loading…' : 'Load earlier messages';
    const typing = typingText(r.typing, this.nameOf);
    if (this.typingLine.textContent !== typing) this.typingLine.replaceChildren(...typingText(r.typing, this.nameOf, (n) => h('bdi', null, n)));
    if (prepend && !r.loadingOlder) {
      this.log.scrollTop = this.log.scrollHeight - prepend;
      this.anchorHeight = 0;
    } else if (stick) this.log.scrollTop = this.log.scrollHeight;
    this.markRead();
  }

  item(m, lastSeen, sameSender) {
    if (m.system) return h('li', { class: 'sys', 'data-seq': m.seq }, m.body || '');
    const [tick, label] = TICKS[m.status] || [];
    const body = m.deleted ? h('em', null, 'Message deleted') : m.body && richText(m.body);
    // An agent's and a bot's messages say so: a badge by the name, their own bubble colours, and
    // for screen readers the badge again on lines grouped under the name.
    const badge = m.mine ? null : BADGES[m.author];
    const badgeTitle = m.author === 'service' ? (m.via ? `Sent by ${m.via}` : 'Automated message') : 'Support team';
    const refusal = m.status === 'failed' && (m.attachments?.length ? FILE_REFUSALS : REFUSALS)[m.error];
    const quote = m.reply_to;
    const ts = m.ts || Date.now();
    // Reactions and replies need the stored message.
    const stored = m.seq != null && !m.deleted;
    return h(
      'li',
      { class: `msg ${m.mine ? 'me' : 'them'}${badge ? ` ${AUTHOR_CLASSES[m.author]}` : ''}`, 'data-seq': m.seq, 'data-id': m.id, 'data-status': m.status, 'data-author': m.author },
      !m.mine && !sameSender ? h('div', { class: 'who' }, h('bdi', null, m.name || this.nameOf(m.from)), badge ? h('span', { class: 'tag', title: badgeTitle }, badge) : null) : null,
      badge && sameSender ? h('span', { class: 'sr' }, `${badge}: `) : null,
      quote ? h('div', { class: 'quote', dir: 'auto' }, h('bdi', null, this.nameOf(quote.from)), quote.deleted ? ': message deleted' : `: ${quote.preview || ''}`) : null,
      body ? h('div', { class: 'bubble', dir: 'auto' }, ...[body].flat()) : null,
      m.attachments?.length && !m.deleted ? attachmentList(this.client, this.room, m.attachments, m.seq != null) : null,
      stored
        ? h(
            'div',
            { class: 'reacts' },
            ...[...new Set([...(m.reactions || []).map((r) => r.emoji), ...QUICK])].map((e) => {
              const r = m.reactions?.find((r) => r.emoji === e);
              return h('button', { type: 'button', 'data-emoji': e, 'aria-pressed': String(!!r?.users.includes(this.client.user)) }, r ? `${e} ${r.count}` : e);
            }),
            h('button', { type: 'button', 'data-reply': true, 'aria-label': 'Reply' }, '↩'),
          )
        : null,
      h(
        'div',
        { class: 'meta' },
        h('time', { datetime: new Date(ts).toISOString() }, time(ts)),
        tick ? h('span', { class: `tick ${m.status}`, title: label, 'aria-label': label, role: 'img' }, tick) : null,
        lastSeen ? h('span', { class: 'seen' }, 'Seen') : null,
        refusal ? h('span', { class: 'err' }, refusal) : null,
        m.status === 'failed' ? h('button', { type: 'button', class: 'retry', 'data-retry': m.id }, 'Retry') : null,
        this.o.actions?.(m),
      ),
    );
  }
}

/** Connection banner text for a client state, or '' when connected. */
export function bannerText(info, now = Date.now()) {
  switch (info.state) {
    case 'connected':
    case 'idle':
      return '';
    case 'connecting':
    case 'reconnecting': {
      const secs = info.retryAt ? Math.max(0, Math.ceil((info.retryAt - now) / 1000)) : 0;
      const lead = info.state === 'connecting' ? (info.retryAt ? 'Cannot reach the chat.' : 'Connecting…') : 'Connection lost.';
      if (lead === 'Connecting…') return lead;
      return secs > 1 ? `${lead} Reconnecting in ${secs} s…` : `${lead} Reconnecting…`;
    }
    case 'unauthorized':
      return 'Your session has expired. Reconnect to sign in again.';
    case 'forbidden':
      return 'This chat is not available.';
    default:
      return 'The chat was closed.';
  }
}

export const CSS = `
*{box-sizing:border-box}
[hidden]{display:none!important}
button,input,textarea{font:inherit}
button{cursor:pointer}
:focus-visible{outline:3px solid #2563eb;outline-offset:2px}
.sr{position:absolute;width:1px;height:1px;overflow:hidden;clip:rect(0 0 0 0);white-space:nowrap}
.log{flex:1;overflow-y:auto;padding:8px 12px;background:#f6f7f9;min-height:0}
.list{list-style:none;margin:0;padding:0;display:flex;flex-direction:column;gap:6px}
.older{display:block;margin:4px auto 8px;font-size:13px;background:none;border:0;color:#1d4ed8;text-decoration:underline}
.msg{max-width:82%;display:flex;flex-direction:column}
.me{align-self:flex-end;align-items:flex-end}
.them{align-self:flex-start}
.who,.hint,.sys,.typing,.quote,.replying{font-size:12px;color:#4b5563}
.who{margin:4px 0 2px}
.tag{margin-left:6px;padding:0 5px;border-radius:6px;background:#e0e7ff;color:#3730a3;font-size:10px;font-weight:600;text-transform:uppercase}
.bot .tag{background:#d1fae5;color:#065f46}
.bubble a{color:inherit;text-decoration:underline}
.hint{padding:2px 12px;background:#fff}
.hint.err{flex-basis:auto}
.bubble{unicode-bidi:isolate;padding:8px 11px;border-radius:14px;white-space:pre-wrap;overflow-wrap:anywhere;line-height:1.35}
.me .bubble{background:#1d4ed8;color:#fff;border-bottom-right-radius:4px}
.them .bubble{background:#fff;border:1px solid #e5e7eb;border-bottom-left-radius:4px}
.them.agent .bubble{background:#eef2ff;border-color:#c7d2fe}
.them.bot .bubble{background:#ecfdf5;border-color:#6ee7b7;border-left:3px solid #059669}
.meta{font-size:11px;color:#6b7280;margin-top:2px;display:flex;gap:4px;align-items:center}
.seen{color:#15803d;font-weight:600}
.tick.failed{color:#b91c1c;font-weight:700}
.retry{font-size:11px;border:1px solid #b91c1c;color:#b91c1c;background:#fff;border-radius:8px;padding:0 6px}
.sys{align-self:center;background:#e5e7eb;border-radius:10px;padding:3px 10px;text-align:center}
.typing{min-height:20px;padding:0 12px;font-style:italic;background:#f6f7f9}
.composer{display:flex;gap:8px;padding:8px;border-top:1px solid #e5e7eb;background:#fff}
.attach{font-size:24px;line-height:1;color:#1d4ed8;background:none;border:1px solid #9ca3af;border-radius:10px;min-width:40px}
.dropping .log{outline:3px dashed #2563eb;outline-offset:-6px}
.tray{list-style:none;margin:0;padding:6px 8px 0;border-top:1px solid #e5e7eb;background:#fff;display:flex;flex-direction:column;gap:4px;max-height:140px;overflow-y:auto}
.up{display:flex;flex-wrap:wrap;align-items:center;gap:6px;font-size:13px}
.up .fname{flex:1;min-width:0}
.up .fname,.quote,.replying span{overflow:hidden;text-overflow:ellipsis;white-space:nowrap}
.up progress{width:80px}
.unattach{font-size:16px;line-height:1;background:none;border:0;color:#4b5563;padding:2px 6px;border-radius:6px}
.err{color:#b91c1c;font-size:12px;flex-basis:100%}
.fsize{color:#6b7280;font-size:12px;white-space:nowrap}
.files,.reacts{display:flex;flex-wrap:wrap;gap:6px;margin-top:4px}
.me .files,.me .reacts{justify-content:flex-end}
.thumb{display:block;border-radius:10px;overflow:hidden;border:1px solid #e5e7eb;background:#fff;line-height:0}
.thumb img{display:block;max-width:200px;max-height:160px;object-fit:cover}
.file{display:flex;flex-direction:column;max-width:220px;padding:6px 10px;border:1px solid #d1d5db;border-radius:10px;background:#fff;color:#1d4ed8;text-decoration:none;font-size:13px}
.file .fname{overflow-wrap:anywhere;text-decoration:underline}
.unavailable{opacity:.6}
.composer textarea{flex:1;resize:none;padding:8px 10px;border:1px solid #9ca3af;border-radius:10px;min-height:40px;max-height:120px}
.send{font-weight:600;background:#1d4ed8;color:#fff;border:0;border-radius:10px;padding:0 14px;min-height:40px}
header,.banner{display:flex;gap:8px;align-items:center;justify-content:space-between}
.banner{padding:6px 12px;font-size:13px;background:#fef3c7;color:#78350f}
.quote{border-left:3px solid #9ca3af;padding-left:6px;max-width:100%}
.reacts button{font-size:12px;border:1px solid #d1d5db;border-radius:10px;background:#fff}
.reacts [aria-pressed=true]{background:#dbeafe;border-color:#1d4ed8}
.replying{display:flex;padding:2px 12px;background:#eef2ff}
.replying span{flex:1}
.banner button{font-size:12px;background:#fff;border:1px solid #92400e;color:#78350f;border-radius:8px;padding:2px 8px}
`;
