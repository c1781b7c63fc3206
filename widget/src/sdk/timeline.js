// One room's messages: de-duplicated by seq, kept in seq order, with the resume point and the
// gaps to fill. Pure (test/unit/timeline.test.js).
//
// Seqs are gap-free per room (deletions leave tombstones), so:
// - `through` is the resume point: every seq in (anchor, through] is held. A client resumes with
//   `join {since: through}` and never skips a message it has not seen.
// - a message above through+1 reveals a gap (through, gapEnd) to fill with `history {after}`;
// - `hasOlder` is simply `oldest > 1`.

export class Timeline {
  constructor() {
    /** @type {Map<number, object>} seq → message */
    this.bySeq = new Map();
    this.sorted = null; // cache of the messages in seq order
    this.anchored = false;
    this.through = 0;
    this.knownHead = 0;
  }

  /**
   * Sets where contiguous tracking starts when nothing is held yet: `head` from the first
   * `joined` (everything up to it is older history, loaded page by page), or 0 to replay all.
   */
  anchor(seq) {
    if (this.anchored) return;
    this.anchored = true;
    this.through = Math.max(this.through, seq);
    this.advance();
  }

  /** Records the room's head as the server last reported it. */
  seeHead(head) {
    if (head > this.knownHead) this.knownHead = head;
  }

  /**
   * Adds or updates a message. Returns 'added' (new seq), 'updated' (known seq, newer state:
   * an edit or deletion seen in a replay) or 'duplicate'.
   */
  add(msg) {
    const seq = msg.seq;
    if (!Number.isSafeInteger(seq) || seq < 1) return 'duplicate';
    this.seeHead(seq);
    const old = this.bySeq.get(seq);
    if (old) {
      if ((msg.edited_ts || 0) > (old.edited_ts || 0) || (msg.deleted && !old.deleted)) {
        this.bySeq.set(seq, { ...old, ...msg });
        if (msg.deleted) {
          delete this.bySeq.get(seq).body;
          delete this.bySeq.get(seq).meta;
          delete this.bySeq.get(seq).attachments;
        }
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

  /** Applies an `edited` or `deleted` frame to a held message. */
  amend(seq, patch) {
    const old = this.bySeq.get(seq);
    if (!old) return false;
    const next = { ...old, ...patch };
    if (patch.deleted) {
      delete next.body;
      delete next.meta;
      delete next.attachments;
    }
    this.bySeq.set(seq, next);
    this.sorted = null;
    return true;
  }

  advance() {
    while (this.bySeq.has(this.through + 1)) this.through += 1;
  }

  /** The first missing range above `through`, as {after, before?}, or null when none. */
  gap() {
    if (!this.anchored) return null;
    let above = Infinity;
    for (const seq of this.bySeq.keys()) if (seq > this.through && seq < above) above = seq;
    if (above !== Infinity) return { after: this.through, before: above };
    if (this.knownHead > this.through) return { after: this.through };
    return null;
  }

  /** Messages in seq order. */
  list() {
    if (!this.sorted) this.sorted = [...this.bySeq.values()].sort((a, b) => a.seq - b.seq);
    return this.sorted;
  }

  get oldest() {
    const l = this.list();
    return l.length ? l[0].seq : this.through + 1;
  }

  get newest() {
    const l = this.list();
    return l.length ? l[l.length - 1].seq : 0;
  }

  /** Whether older messages than the ones held exist. */
  get hasOlder() {
    return this.anchored && this.oldest > 1;
  }

  get(seq) {
    return this.bySeq.get(seq);
  }
}
