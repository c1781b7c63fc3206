// A tiny event emitter: the base of RoomcastClient's `on('change' | 'message' | …)`.

export class Emitter {
  constructor() {
    this.handlers = new Map();
  }

  /** Subscribes; returns the unsubscribe function. */
  on(type, fn) {
    if (!this.handlers.has(type)) this.handlers.set(type, new Set());
    this.handlers.get(type).add(fn);
    return () => this.handlers.get(type).delete(fn);
  }

  /** Calls every handler of `type`; one that throws is logged and does not stop the others. */
  emit(type, ...args) {
    for (const fn of this.handlers.get(type) || []) {
      try {
        fn(...args);
      } catch (e) {
        console.error(e);
      }
    }
  }
}
