// A tiny event emitter: the base of RoomcastClient's `on('change' | 'message' | …)`.

// Handlers take whatever their event carries; RoomcastClient's `on` overloads name the payloads.
type Handler = (...args: any[]) => void;

export class Emitter {
  handlers = new Map<string, Set<Handler>>();

  /** Subscribes; returns the unsubscribe function. */
  on(type: string, fn: Handler): () => boolean {
    let set = this.handlers.get(type);
    if (!set) this.handlers.set(type, (set = new Set()));
    set.add(fn);
    return () => set.delete(fn);
  }

  /** Calls every handler of `type`; one that throws is logged and does not stop the others. */
  emit(type: string, ...args: unknown[]): void {
    for (const fn of this.handlers.get(type) || []) {
      try {
        fn(...args);
      } catch (e) {
        console.error(e);
      }
    }
  }
}
