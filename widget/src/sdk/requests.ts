// Request/reply over a link: a frame with a `ref` that the server answers with a frame carrying
// the same ref (a `status`, or an `error`), settled once, by that reply or by a timeout. Requests
// asked while their link is down, or lost with its socket, are sent once it is up again (the
// desk's actions are idempotent).

import type { Link } from './link.js';
import type { ClientAction, ServerFrame } from './types.js';

/** A request as sent: a client action and its ref. */
export type RequestFrame = ClientAction & { ref: string };

/** A request waiting for its reply. */
export interface PendingRequest {
  frame: RequestFrame;
  link: Link;
  resolve: (reply: ServerFrame | undefined) => void;
  reject: (error: Error) => void;
  /** Whether it is on the current socket (else it goes once the link is up). */
  sent: boolean;
  timer?: ReturnType<typeof setTimeout>;
}

/** An Error carrying the protocol's `code` (the server's, or TIMEOUT). */
export type CodedError = Error & { code?: string };

export class Requests {
  /** ref → the request */
  pending = new Map<string, PendingRequest>();
  count = 0;

  /** A ref no other frame of this client carries: `r:…` requests, `h:…` history pages. */
  nextRef(kind: string): string {
    return `${kind}:${++this.count}`;
  }

  /**
   * Sends `frame` with a fresh ref on `link`. Resolves with the reply; rejects with the `error`
   * reply (its `code` kept) or, after `timeoutMs`, with code TIMEOUT.
   */
  send<R extends ServerFrame | undefined = ServerFrame>(
    link: Link,
    frame: ClientAction,
    { reply = true, timeoutMs = 15000 }: { reply?: boolean; timeoutMs?: number } = {},
  ): Promise<R> {
    const ref = this.nextRef('r');
    const full = { ...frame, ref } as RequestFrame;
    return new Promise<R>((resolve, reject) => {
      // Replies are told apart by `ref` only: the caller names the reply it expects.
      const p: PendingRequest = { frame: full, link, resolve: resolve as (reply: ServerFrame | undefined) => void, reject, sent: false };
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
            p.resolve(undefined);
          }
        }, 2000);
      }
    });
  }

  has(ref: string): boolean {
    return this.pending.has(ref);
  }

  /** Settles the request `ref` with the server's `error` frame, else with `value`. */
  settle(ref: string, error: { code: string; message: string } | null, value?: ServerFrame): void {
    const p = this.pending.get(ref);
    if (!p) return;
    this.pending.delete(ref);
    clearTimeout(p.timer);
    if (error) p.reject(Object.assign(new Error(error.message), { code: error.code }));
    else p.resolve(value);
  }

  /** `link` is up: sends its requests asked while it was down or lost with the last socket. */
  sendUnsent(link: Link): void {
    for (const p of this.pending.values()) if (p.link === link && !p.sent) p.sent = link.send(p.frame);
  }

  /** `link` went down: its requests go again once it is up. */
  markUnsent(link: Link): void {
    for (const p of this.pending.values()) if (p.link === link) p.sent = false;
  }
}
