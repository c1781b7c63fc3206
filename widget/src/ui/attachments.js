// Files in the chat view: the composer's tray of files being uploaded (progress, cancel,
// errors said in words), and the attachments of a message: raster images as thumbnails that
// open full size, everything else (PDF, office files, SVG) as a chip with name, size and a
// download link. Names are only ever text; links only http(s) (the SDK's safeUrl), opened with
// rel="noopener noreferrer".

import { RASTER_TYPES, checkFile, fileType } from '../sdk/uploads.js';
import { h } from './dom.js';

/** Most files on one message (the server's limit). */
const MAX_FILES = 10;
/** The box a thumbnail fits in, CSS pixels. */
const THUMB = { w: 200, h: 160 };

/** "512 B", "1.4 KB", "10 MB". */
export function humanSize(bytes) {
  if (bytes < 1024) return `${bytes} B`;
  const [n, unit] = bytes < 1024 * 1024 ? [bytes / 1024, 'KB'] : [bytes / (1024 * 1024), 'MB'];
  return `${n < 10 ? Math.round(n * 10) / 10 : Math.round(n)} ${unit}`;
}

/** What went wrong with `file`, in words (`e`: the SDK's error with the server's or its own code). */
export function uploadError(file, e, policy) {
  const name = file.name || 'The file';
  switch (e.code) {
    case 'TOO_LARGE':
      // The deployment's limit may be lower than the one this client knows.
      return file.size > policy.maxBytes ? `${name} is too large (${humanSize(file.size)}; the limit is ${humanSize(policy.maxBytes)}).` : `${name} is too large for this chat (${humanSize(file.size)}).`;
    case 'INVALID':
      if (!file.size) return `${name} is empty.`;
      if (!policy.types.includes(fileType(file, policy))) return `${name}: files of this type can't be sent.`;
      return `${name} can't be sent: ${e.message}`;
    case 'LIMIT_EXCEEDED':
      return `Daily upload limit reached: ${name} was not sent. Try again tomorrow.`;
    case 'FORBIDDEN':
      return `Files can't be sent in this conversation.`;
    case 'RATE_LIMITED':
      return `Too many files at once: try ${name} again in a moment.`;
    default:
      return `${name} could not be uploaded. Check your connection and try again.`;
  }
}

/**
 * The files picked, dropped or pasted for the next message: each uploads at once; `ready()`
 * lists the uploaded ones, `busy` says whether any is still going. Calls `onChange` after
 * every step.
 */
export class Tray {
  constructor(client, room, onChange) {
    this.client = client;
    this.room = room;
    this.onChange = onChange;
    this.items = [];
    this.el = h('ul', { class: 'tray', 'aria-label': 'Files to send' });
  }

  get busy() {
    return this.items.some((i) => i.state === 'uploading');
  }

  ready() {
    return this.items.filter((i) => i.state === 'ready').map((i) => i.attachment);
  }

  add(files) {
    const policy = this.client.uploadPolicy;
    for (const file of files) {
      const item = { file, state: 'uploading', progress: 0, cancel: new AbortController() };
      const taken = this.items.filter((i) => i.state !== 'error').length;
      const refused = taken >= MAX_FILES ? { code: 'MANY' } : checkFile(file, policy);
      if (refused) {
        item.state = 'error';
        item.error = refused.code === 'MANY' ? `At most ${MAX_FILES} files per message: ${file.name} was left out.` : uploadError(file, refused, policy);
      } else {
        this.client
          .attach(this.room, file, {
            signal: item.cancel.signal,
            onProgress: (p) => {
              item.progress = p;
              if (item.bar) item.bar.value = p;
            },
          })
          .then(
            (attachment) => Object.assign(item, { state: 'ready', attachment }),
            (e) => (e.code === 'ABORTED' ? this.drop(item) : Object.assign(item, { state: 'error', error: uploadError(file, e, policy) })),
          )
          .then(() => this.changed());
      }
      this.items.push(item);
    }
    this.changed();
  }

  /** Takes the uploaded files out (they go with the message being sent). */
  take() {
    const ready = this.ready();
    this.items = this.items.filter((i) => i.state !== 'ready');
    this.changed();
    return ready;
  }

  /** Cancels (aborting the upload) or removes an item. */
  drop(item) {
    item.cancel.abort();
    this.items = this.items.filter((i) => i !== item);
    this.changed();
  }

  changed() {
    this.el.replaceChildren(...this.items.map((i) => this.row(i)));
    this.el.hidden = !this.items.length;
    this.onChange();
  }

  row(item) {
    const name = item.file.name;
    item.bar = item.state === 'uploading' ? h('progress', { max: '1', value: String(item.progress), 'aria-label': `Uploading ${name}` }) : null;
    const label = item.state === 'uploading' ? `Cancel upload of ${name}` : `Remove ${name}`;
    return h(
      'li',
      { class: 'up', 'data-state': item.state },
      h('span', { class: 'fname' }, name),
      h('span', { class: 'fsize' }, humanSize(item.file.size)),
      item.bar,
      h('button', { type: 'button', class: 'unattach', 'aria-label': label, title: label, onclick: () => this.drop(item) }, '×'),
      item.error ? h('span', { class: 'err', role: 'alert' }, item.error) : null,
    );
  }
}

/**
 * A message's attachments. Stored messages (`stored`) get their links from the server as they
 * are shown; a pending message's files are shown without one.
 */
export function attachmentList(client, room, attachments, stored) {
  return h('div', { class: 'files' }, ...attachments.map((a) => (RASTER_TYPES.includes(a.type) ? thumbnail(client, room, a, stored) : chip(client, room, a, stored))));
}

function thumbnail(client, room, a, stored) {
  const scale = a.width && a.height ? Math.min(1, THUMB.w / a.width, THUMB.h / a.height) : 0;
  const img = h('img', { alt: a.name, ...(scale ? { width: Math.round(a.width * scale), height: Math.round(a.height * scale) } : {}) });
  const link = h('a', { class: 'thumb', target: '_blank', rel: 'noopener noreferrer', title: `${a.name} (${humanSize(a.size)}): open full size` }, img);
  if (stored) {
    linkTo(client, room, a, link, (l) => {
      // Only what the server serves for showing in the page is shown: never SVG or HTML.
      if (l.inline) img.src = l.url;
    });
  }
  return link;
}

function chip(client, room, a, stored) {
  const link = h('a', { class: 'file', download: a.name, rel: 'noopener noreferrer' }, h('span', { class: 'fname' }, a.name), h('span', { class: 'fsize' }, humanSize(a.size)));
  link.setAttribute('aria-label', `Download ${a.name}, ${humanSize(a.size)}`);
  if (stored) linkTo(client, room, a, link);
  return link;
}

/**
 * Points `anchor` at the attachment's link once the server gives it. Links expire after a few
 * minutes: a click on an expired one fetches a fresh link first and then follows it.
 */
function linkTo(client, room, a, anchor, then) {
  let expires = 0;
  const apply = (l) => {
    anchor.href = l.url;
    expires = l.expires_at;
    then?.(l);
  };
  const fail = () => anchor.classList.add('unavailable');
  client.attachmentLink(room, a.id).then(apply, fail);
  anchor.addEventListener('click', (e) => {
    if (expires - client.now() > 5000) return;
    e.preventDefault();
    client.attachmentLink(room, a.id).then((l) => {
      apply(l);
      anchor.click();
    }, fail);
  });
}
