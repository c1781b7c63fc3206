// React bindings for the SDK: a provider holding one RoomcastClient (its socket connected while
// the provider is mounted) and hooks reading a room, each re-rendering only when that room
// changes. A hook naming a room joins it while mounted; the room is left once no mounted hook
// names it, a tick later, so that React's strict mode (mount, unmount, mount again) and two
// components on one room share one join.

import { createContext, createElement, useCallback, useContext, useEffect, useMemo, useRef, useSyncExternalStore } from 'react';
import type { ReactElement, ReactNode } from 'react';
import { INBOX_ROOM, listConversations, setAvailability, setBlocked, transfer, unassign } from '../sdk/index.js';
import type { RoomcastClient, ClientState, ConversationState, Presence, Room, SendOptions, ViewItem } from '../sdk/index.js';

const ClientContext = createContext<RoomcastClient | null>(null);

/**
 * Makes `client` available to the hooks below and keeps it connected while mounted. Create the
 * client once (outside the component, or in a `useState` initializer), not on every render.
 */
export function RoomcastProvider({ client, children }: { client: RoomcastClient; children?: ReactNode }): ReactElement {
  useEffect(() => {
    cancelPending(client, '');
    client.connect();
    return () => later(client, '', () => client.disconnect());
  }, [client]);
  return createElement(ClientContext.Provider, { value: client }, children);
}

/** The provider's client. */
export function useRoomcast(): RoomcastClient {
  const client = useContext(ClientContext);
  if (!client) throw new Error('useRoomcast: no <RoomcastProvider> above this component');
  return client;
}

// ---- joining while mounted ----

/** Per client: how many mounted hooks name each room, and the leaves (or the disconnect, key '') not yet done. */
const holds = new WeakMap<RoomcastClient, { count: Map<string, number>; pending: Map<string, ReturnType<typeof setTimeout>> }>();

function holdsOf(client: RoomcastClient) {
  let h = holds.get(client);
  if (!h) holds.set(client, (h = { count: new Map(), pending: new Map() }));
  return h;
}

function cancelPending(client: RoomcastClient, key: string): void {
  const h = holdsOf(client);
  clearTimeout(h.pending.get(key));
  h.pending.delete(key);
}

/** Runs `action` a tick later unless a mount in between cancels it (strict mode remounts at once). */
function later(client: RoomcastClient, key: string, action: () => void): void {
  const h = holdsOf(client);
  clearTimeout(h.pending.get(key));
  h.pending.set(
    key,
    setTimeout(() => {
      h.pending.delete(key);
      action();
    }, 0),
  );
}

function useJoined(client: RoomcastClient, name: string, fromStart: boolean): void {
  useEffect(() => {
    const h = holdsOf(client);
    cancelPending(client, `room:${name}`);
    h.count.set(name, (h.count.get(name) || 0) + 1);
    client.join(name, { fromStart });
    return () => {
      const left = (h.count.get(name) || 1) - 1;
      if (left) h.count.set(name, left);
      else h.count.delete(name);
      if (!left) later(client, `room:${name}`, () => !h.count.has(name) && client.leave(name));
    };
  }, [client, name, fromStart]);
}

// ---- reading a room ----

/**
 * `read(room)` for room `name`, recomputed only after the client reports a change of that room
 * (the SDK batches its changes: one per task). The room is joined while the component is mounted.
 */
function useRoomValue<T>(name: string, read: (room: Room | undefined) => T, { fromStart = false }: { fromStart?: boolean } = {}): T {
  const client = useRoomcast();
  useJoined(client, name, fromStart);
  const cache = useRef<{ client: RoomcastClient; name: string; version: number; value: T } | null>(null);
  const version = useRef(0);
  const readRef = useRef(read);
  readRef.current = read;
  const subscribe = useCallback(
    (notify: () => void) =>
      client.on('change', (rooms: string[]) => {
        if (!rooms.includes(name)) return;
        version.current += 1;
        notify();
      }),
    [client, name],
  );
  const snapshot = (): T => {
    const held = cache.current;
    if (held && held.client === client && held.name === name && held.version === version.current) return held.value;
    const value = readRef.current(client.room(name));
    cache.current = { client, name, version: version.current, value };
    return value;
  };
  return useSyncExternalStore(subscribe, snapshot, snapshot);
}

/** A room's messages, oldest first, with this user's unacknowledged ones last (see `Room.view()`). */
export interface MessagesView {
  /** Own messages carry `status`: 'pending' | 'failed' | 'sent' | 'seen'. */
  messages: ViewItem[];
  /** 'joining' until the server confirms (again after every reconnect), then 'joined'. */
  state: Room['state'] | 'idle';
  hasOlder: boolean;
  loadingOlder: boolean;
  /** Loads the page before the oldest message shown; false when there is none to load now. */
  loadOlder: (limit?: number) => boolean;
}

/**
 * A room's messages. Live ones arrive as they are stored; after a reconnect the room resumes
 * from the last one held (nothing missed, nothing twice); `loadOlder` pages back through history.
 */
export function useMessages(name: string, o?: { fromStart?: boolean }): MessagesView {
  const client = useRoomcast();
  const loadOlder = useCallback((limit?: number) => client.loadOlder(name, limit), [client, name]);
  const view = useRoomValue(
    name,
    (room) => ({ messages: room ? room.view() : [], state: room?.state ?? 'idle', hasOlder: Boolean(room?.hasOlder), loadingOlder: Boolean(room?.loadingOlder) }),
    o,
  );
  return useMemo(() => ({ ...view, loadOlder }), [view, loadOlder]);
}

/**
 * Sending to a room: `send` returns the message's id (`{replyTo: seq}` answers a message); the
 * message shows in `useMessages` as 'pending', then 'sent' (and 'seen'), or 'failed', when
 * `retry(id)` sends it again with the same id (never stored twice) and `discard(id)` gives up on it.
 */
export function useSend(name: string): {
  send: (body: string, o?: SendOptions) => string;
  retry: (id: string) => boolean;
  discard: (id: string) => void;
} {
  const client = useRoomcast();
  useJoined(client, name, false);
  return useMemo(
    () => ({
      send: (body, o) => client.sendMessage(name, body, o),
      retry: (id) => client.retry(id),
      discard: (id) => client.discard(id),
    }),
    [client, name],
  );
}

/**
 * Reacting in a room: `react(seq, emoji)` and `unreact(seq, emoji)` resolve with the server's
 * `reaction` reply (reject with its `code`); the counts show in `useMessages`' `reactions`, live.
 */
export function useReactions(name: string): {
  react: (seq: number, emoji: string) => ReturnType<RoomcastClient['react']>;
  unreact: (seq: number, emoji: string) => ReturnType<RoomcastClient['unreact']>;
} {
  const client = useRoomcast();
  useJoined(client, name, false);
  return useMemo(() => ({ react: (seq, emoji) => client.react(name, seq, emoji), unreact: (seq, emoji) => client.unreact(name, seq, emoji) }), [client, name]);
}

/** Who else is typing in a room, and `typing()` to call on every keystroke (throttled by the SDK). */
export function useTyping(name: string): { typing: string[]; notifyTyping: () => void; stopTyping: () => void } {
  const client = useRoomcast();
  const typing = useRoomValue(name, (room) => room?.typing ?? []);
  return useMemo(() => ({ typing, notifyTyping: () => client.typing(name), stopTyping: () => client.stopTyping(name) }), [typing, client, name]);
}

/** A room's members with their presence, or, in a room above the presence threshold, its connection count. */
export function usePresence(name: string): { members: Presence[]; occupancy: number | null } {
  return useRoomValue(name, (room) => ({ members: room ? [...room.members.values()] : [], occupancy: room?.occupancy ?? null }));
}

/** This user's unread count in a room, the furthest any other user has read, and `markRead`. */
export function useReadState(name: string): { unread: number; myRead: number; othersRead: number; markRead: (seq?: number) => void } {
  const client = useRoomcast();
  const read = useRoomValue(name, (room) => ({ unread: room?.unread ?? 0, myRead: room?.myRead ?? 0, othersRead: room?.othersRead ?? 0 }));
  const markRead = useCallback((seq?: number) => client.markRead(name, seq), [client, name]);
  return useMemo(() => ({ ...read, markRead }), [read, markRead]);
}

/** The client's connection state ('connected', 'reconnecting', …), when it retries, and `reconnectNow`. */
export function useConnection(): { state: ClientState; retryAt: number | null; reconnectNow: () => void } {
  const client = useRoomcast();
  const subscribe = useCallback((notify: () => void) => client.on('state', notify), [client]);
  const state = useSyncExternalStore(subscribe, () => client.state, () => client.state);
  return useMemo(() => ({ state, retryAt: client.stateInfo().retryAt, reconnectNow: () => client.reconnectNow() }), [client, state]);
}

/**
 * The support desk for agents (protocol.md §15): the tenant's conversations as the inbox tells
 * them (joined while mounted), optionally of one status, newest change first, and the desk's actions.
 */
export function useDesk(status?: ConversationState['status']): {
  conversations: ConversationState[];
  assign: (room: string) => ReturnType<RoomcastClient['assign']>;
  close: (room: string) => ReturnType<RoomcastClient['close']>;
  transfer: (room: string, to: string) => ReturnType<typeof transfer>;
  unassign: (room: string) => ReturnType<typeof unassign>;
  setBlocked: (user: string, blocked?: boolean) => ReturnType<typeof setBlocked>;
  setAvailability: (a: Parameters<typeof setAvailability>[1]) => ReturnType<typeof setAvailability>;
  listConversations: (o?: Parameters<typeof listConversations>[1]) => ReturnType<typeof listConversations>;
} {
  const client = useRoomcast();
  const all = useRoomValue(INBOX_ROOM, () => client.inbox(), { fromStart: true });
  const conversations = useMemo(() => (status ? all.filter((c) => c.status === status) : all), [all, status]);
  return useMemo(
    () => ({
      conversations,
      assign: (room) => client.assign(room),
      close: (room) => client.close(room),
      transfer: (room, to) => transfer(client, room, to),
      unassign: (room) => unassign(client, room),
      setBlocked: (user, blocked) => setBlocked(client, user, blocked),
      setAvailability: (a) => setAvailability(client, a),
      listConversations: (o) => listConversations(client, o),
    }),
    [client, conversations],
  );
}
