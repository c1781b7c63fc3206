// One room's messages: de-duplicated by seq, kept in seq order, with the resume point and the
// gaps to fill. Pure (test/unit/timeline.test.js).
//
// Seqs are gap-free per room (deletions leave tombstones), so:
// - `through` is the resume point: every seq in (anchor, through] is held. A client resumes with
//   `join {since: through}` and never skips a message it has not seen.
// - a message above through+1 reveals a gap (through, gapEnd) to fill with `history {after}`;
// - `hasOlder` is simply `oldest > 1`.

import type { Message, ReactionView, ReplyView } from './types.js';

/** A message as held: deleted ones lose their content. */
type Held = Message & { deleted?: boolean };

export class Timeline {
  /** seq → message */
  bySeq = new Map<number, Held>();
  /** cache of the messages in seq order */
  sorted: Held[] | null = null;
  anchored = false;
  through = 0;
  knownHead = 0;

  /**
   * Sets where contiguous tracking starts when nothing is held yet: `head` from the first
   * `joined` (everything up to it is older history, loaded page by page), or 0 to replay all.
   */
  anchor(seq: number): void {
    if (this.anchored) return;
    this.anchored = true;
    this.through = Math.max(this.through, seq);
    this.advance();
  }

  /** Records the room's head as the server last reported it. */
  seeHead(head: number): void {
    if (head > this.knownHead) this.knownHead = head;
  }

  /**
   * Adds or updates a message. Returns 'added' (new seq), 'updated' (known seq, newer state:
   * an edit or deletion seen in a replay) or 'duplicate'.
   */
  add(msg: Held): 'added' | 'updated' | 'duplicate' {
    const seq = msg.seq;
    if (!Number.isSafeInteger(seq) || seq < 1) return 'duplicate';
    this.seeHead(seq);
    const old = this.bySeq.get(seq);
    if (old) {
      if ((msg.edited_ts || 0) > (old.edited_ts || 0) || (msg.deleted && !old.deleted)) {
        this.bySeq.set(seq, merged(old, msg));
        this.sorted = null;
        return 'updated';
      }
      return 'duplicate';
    }
    this.bySeq.set(seq, msg);
    this.sorted = null;
    if (this.anchored && seq === this.through + 1) this.advance();
    return 'added';
  }

  /** Applies an `edited` or `deleted` frame to a held message (a deletion also to the replies quoting it). */
  amend(seq: number, patch: Partial<Held>): boolean {
    // A reply quotes its original as it stood when the reply was read: shown deleted from now on
    // (protocol.md §18), also when the original itself is not held. (An edit shows in the quote
    // once the reply is read again.)
    for (const m of this.bySeq.values()) if (patch.deleted && m.reply_to?.seq === seq) this.bySeq.set(m.seq, { ...m, reply_to: { seq, from: m.reply_to.from, deleted: true } });
    this.sorted = null;
    const old = this.bySeq.get(seq);
    if (!old) return false;
    this.bySeq.set(seq, merged(old, patch));
    this.sorted = null;
    return true;
  }

  /** Applies a `reaction` frame: the emoji's new aggregate replaces its entry, which goes at 0. */
  react(seq: number, { emoji, count, users }: ReactionView): boolean {
    // (Never for a deleted message: the server refuses those with NOT_FOUND.)
    const old = this.bySeq.get(seq);
    if (!old) return false;
    const entry = { emoji, count, users };
    const reactions = (old.reactions || []).map((r) => (r.emoji === emoji ? entry : r));
    if (!reactions.includes(entry)) reactions.push(entry);
    return this.amend(seq, { reactions: reactions.filter((r) => r.count) });
  }

  advance(): void {
    while (this.bySeq.has(this.through + 1)) this.through += 1;
  }

  /** The first missing range above `through`, as {after, before?}, or null when none. */
  gap(): { after: number; before?: number } | null {
    if (!this.anchored) return null;
    let above = Infinity;
    for (const seq of this.bySeq.keys()) if (seq > this.through && seq < above) above = seq;
    if (above !== Infinity) return { after: this.through, before: above };
    if (this.knownHead > this.through) return { after: this.through };
    return null;
  }

  /** Messages in seq order. */
  list(): Held[] {
    if (!this.sorted) this.sorted = [...this.bySeq.values()].sort((a, b) => a.seq - b.seq);
    return this.sorted;
  }

  get oldest(): number {
    const l = this.list();
    return l.length ? l[0].seq : this.through + 1;
  }

  get newest(): number {
    const l = this.list();
    return l.length ? l[l.length - 1].seq : 0;
  }

  /** Whether older messages than the ones held exist. */
  get hasOlder(): boolean {
    return this.anchored && this.oldest > 1;
  }

  get(seq: number): Held | undefined {
    return this.bySeq.get(seq);
  }
}

/** `old` with `patch` applied: a deleted message loses its content and reactions. */
function merged(old: Held, patch: Partial<Held>): Held {
  const next: Held = { ...old, ...patch };
  if (patch.deleted) {
    delete next.body;
    delete next.meta;
    delete next.attachments;
    delete next.reactions;
  }
  return next;
}

/** How many characters of the original a reply quotes (the server's `REPLY_PREVIEW_CHARS`). */
const PREVIEW_CHARS = 100;

/** The `reply_to` a reply to `original` carries, as the server builds it (`ReplyView::of`). */
export function quoteOf(original: Pick<Held, 'seq' | 'from' | 'body' | 'deleted'>): ReplyView {
  const quote: ReplyView = { seq: original.seq, from: original.from };
  const chars = [...(original.body || '')];
  if (original.deleted) quote.deleted = true;
  else if (chars.length) quote.preview = chars.length > PREVIEW_CHARS ? `${chars.slice(0, PREVIEW_CHARS).join('')}…` : original.body;
  return quote;
}
