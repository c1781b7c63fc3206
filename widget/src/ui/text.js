// Text from other people, shown safely: links (http/https only) and isolation of names, so
// bidi controls in one name or message cannot reorder the rest of the UI. Pure where it can be.

import { h } from './dom.js';

/** The server's limit on a message body, in UTF-8 bytes. */
export const MAX_BODY_BYTES = 16384;

// shared/src/text.rs, is_invisible_or_reordering, plus white space and control characters.
const BLANK = /^[\s\p{Cc}\u00ad\u034f\u061c\u115f\u1160\u3164\uffa0\u180e\u200b-\u200f\u202a-\u202e\u2060-\u2064\u2066-\u2069\u2800\ufeff]*$/u;

/** Whether a body shows nothing once invisible and reordering characters are set aside (the server refuses it: INVALID). */
export const isBlank = (text) => BLANK.test(text);

/** UTF-8 length in bytes. */
export const utf8Length = (text) => new TextEncoder().encode(text).length;

/** A name (or any short text) in an isolate: FSI … PDI, for use inside a sentence. */
export const isolate = (text) => `\u2068${text}\u2069`;

/**
 * Splits text into plain strings and links: only http: and https: URLs become {href, text};
 * anything else (javascript:, data:, …) stays text. Trailing punctuation stays out of a link.
 */
export function linkify(text) {
  const out = [];
  let last = 0;
  for (const m of text.matchAll(/\bhttps?:\/\/[^\s<>"]+/gi)) {
    let url = m[0].replace(/[.,;:!?'*]+$/, '');
    // A closing bracket belongs to the link only when it opened one inside it.
    while (/[)\]}]$/.test(url) && (url.match(/[([{]/g) || []).length < (url.match(/[)\]}]/g) || []).length) url = url.slice(0, -1);
    let href;
    try {
      href = new URL(url);
    } catch {
      continue;
    }
    if (!/^https?:$/.test(href.protocol) || !href.host) continue;
    if (m.index > last) out.push(text.slice(last, m.index));
    out.push({ href: href.href, text: url });
    last = m.index + url.length;
  }
  if (last < text.length) out.push(text.slice(last));
  return out;
}

/** A message body as nodes: text and safe links (never parsed as HTML). */
export const richText = (text) =>
  linkify(text).map((t) => (typeof t === 'string' ? t : h('a', { href: t.href, target: '_blank', rel: 'noopener noreferrer' }, t.text)));
