// Request/reply over a link: a frame with a `ref` that the server answers with a frame carrying
// the same ref (a `status`, or an `error`), settled once, by that reply or by a timeout. Requests
// asked while their link is down, or lost with its socket, are sent once it is up again (the
// desk's actions are idempotent).

export class Requests {
  constructor() {
    /** ref → {frame, link, resolve, reject, sent, timer} */
    this.pending = new Map();
    this.count = 0;
  }

  /** A ref no other frame of this client carries: `r:…` requests, `h:…` history pages. */
  nextRef(kind) {
    return `${kind}:${++this.count}`;
  }

  /**
   * Sends `frame` with a fresh ref on `link`. Resolves with the reply; rejects with the `error`
   * reply (its `code` kept) or, after `timeoutMs`, with code TIMEOUT.
   */
  send(link, frame, { reply = true, timeoutMs = 15000 } = {}) {
    const ref = this.nextRef('r');
    const full = { ...frame, ref };
    return new Promise((resolve, reject) => {
      const p = { frame: full, link, resolve, reject, sent: false };
      p.timer = setTimeout(() => {
        this.pending.delete(ref);
        reject(Object.assign(new Error('no reply'), { code: 'TIMEOUT' }));
      }, timeoutMs);
      this.pending.set(ref, p);
      p.sent = link.send(full);
      if (!reply) {
        // edit/delete answer with a room-wide frame, not a reply: settle when it is queued.
        setTimeout(() => {
          if (this.pending.delete(ref)) {
            clearTimeout(p.timer);
            resolve(undefined);
          }
        }, 2000);
      }
    });
  }

  has(ref) {
    return this.pending.has(ref);
  }

  /** Settles the request `ref` with the server's `error` frame, else with `value`. */
  settle(ref, error, value) {
    const p = this.pending.get(ref);
    if (!p) return;
    this.pending.delete(ref);
    clearTimeout(p.timer);
    if (error) p.reject(Object.assign(new Error(error.message), { code: error.code }));
    else p.resolve(value);
  }

  /** `link` is up: sends its requests asked while it was down or lost with the last socket. */
  sendUnsent(link) {
    for (const p of this.pending.values()) if (p.link === link && !p.sent) p.sent = link.send(p.frame);
  }

  /** `link` went down: its requests go again once it is up. */
  markUnsent(link) {
    for (const p of this.pending.values()) if (p.link === link) p.sent = false;
  }
}
