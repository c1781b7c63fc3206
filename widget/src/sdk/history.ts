// A room's history, paged with `history` requests: the newest page on the first join, older
// pages on scroll-back, and the missing ranges that a replay, a `joined` head or a live message
// reveals (timeline.js finds them), until the timeline is whole again.

import type { RoomcastClient } from './client.js';
import type { Room } from './room.js';

/** A history request in flight: 'older' (scroll-back) or 'gap' (a missing range). */
export interface HistoryRequest {
  kind: 'older' | 'gap';
  ref: string;
  timer?: ReturnType<typeof setTimeout>;
}

export class History {
  client: RoomcastClient;

  constructor(client: RoomcastClient) {
    this.client = client;
  }

  /** Loads the page before the oldest message held; false when there is none to load now. */
  loadOlder(room: Room, limit: number): boolean {
    if (!room.joined || room.loadingOlder || (room.timeline.anchored && !room.hasOlder)) return false;
    this.request(room, 'older', { before: room.timeline.oldest, limit });
    return true;
  }

  /** Asks for a page: `kind` 'older' (scroll-back) or 'gap' (a missing range). */
  request(room: Room, kind: HistoryRequest['kind'], range: { after?: number; before?: number; limit: number }): void {
    const c = this.client;
    const link = c.link(room.name);
    const ref = c.requests.nextRef('h');
    if (!link.send({ action: 'history', room: room.name, ...range, ref })) return;
    const entry: HistoryRequest = { kind, ref };
    entry.timer = setTimeout(() => {
      room.historyQueue = room.historyQueue.filter((h) => h !== entry);
      this.checkGap(room);
    }, 15000);
    room.historyQueue.push(entry);
    c.changed(room.name);
  }

  /** Fills the first missing range above the resume point. */
  checkGap(room: Room): void {
    if (!room.joined || room.replaying || room.historyQueue.some((h) => h.kind === 'gap')) return;
    const gap = room.timeline.gap();
    if (gap) this.request(room, 'gap', { ...gap, limit: 100 });
  }

  /** A page of `room` arrived: it answers the oldest request in flight. */
  answered(room: Room): void {
    const done = room.historyQueue.shift();
    if (done) clearTimeout(done.timer);
  }

  /** The request `ref` was refused: it is no longer in flight. */
  refused(ref: string): void {
    for (const room of this.client.rooms.values()) {
      const h = room.historyQueue.find((x) => x.ref === ref);
      if (h) {
        clearTimeout(h.timer);
        room.historyQueue = room.historyQueue.filter((x) => x !== h);
      }
    }
  }

  /** A join of `room` starts over from its resume point: the pages in flight are forgotten. */
  reset(room: Room): void {
    room.historyQueue.forEach((h) => clearTimeout(h.timer));
    room.historyQueue = [];
  }
}
