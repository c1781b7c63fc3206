// What the server sends, applied to the client: each frame decoded and dispatched by type to
// the room it names (timeline, cursors, typing, members), the outbox (acks, refusals), the
// pending requests, presence and the support desk. Protocol: docs/protocol.md.

import { INBOX_ROOM, isSystem, statusOf } from './desk.js';
import { quoteOf } from './timeline.js';
import type { RoomcastClient } from './client.js';
import type { Link } from './link.js';
import type { Room } from './room.js';
import type { ConversationState, ConversationStatus, Message, ServerFrame } from './types.js';

/** A server frame of one `type`. */
type FrameOf<T extends ServerFrame['type']> = Extract<ServerFrame, { type: T }>;
/** What a conversation change carries, from `joined`, a system message or a `status` reply. */
interface ConversationChange {
  status?: ConversationStatus;
  agent?: string | null;
  version?: number | null;
  ts?: number;
  since?: number;
}

/** Decodes one WebSocket message from `ws`, one of `link`'s sockets, and applies it. */
export function receive(client: RoomcastClient, data: string, link: Link, ws: WebSocket): void {
  let f: ServerFrame;
  try {
    f = JSON.parse(data);
  } catch {
    return;
  }
  link.alive(ws);
  onFrame(client, f, link, ws);
}

function onFrame(client: RoomcastClient, f: ServerFrame, link: Link, ws: WebSocket): void {
  // Frames of a newer protocol may name a room too: read it whatever the type.
  const named = (f as { room?: string | null }).room;
  const room = named != null ? client.rooms.get(named) : undefined;
  switch (f.type) {
    case 'joined':
      return room && onJoined(client, room, f, link, ws);
    case 'replayed':
      if (!room) return;
      room.replaying = false;
      room.timeline.seeHead(f.through);
      client.history.checkGap(room);
      return client.changed(room.name);
    case 'message':
      return room && onMessage(client, room, f, true);
    case 'history': {
      if (!room) return;
      client.history.answered(room);
      for (const m of f.messages || []) onMessage(client, room, { ...m, room: room.name }, false);
      client.history.checkGap(room);
      return client.changed(room.name);
    }
    case 'ack':
      return onAck(client, f);
    case 'edited':
      room?.timeline.amend(f.seq, { body: f.body, edited_ts: f.edited_ts });
      return room && client.changed(room.name);
    case 'deleted':
      room?.timeline.amend(f.seq, { deleted: true, edited_ts: client.now() });
      return room && client.changed(room.name);
    case 'reaction':
      // Live to the room, and the reply to this client's own `react`/`unreact`.
      if (room?.timeline.react(f.seq, f)) client.changed(room.name);
      if (f.ref) client.requests.settle(f.ref, null, f);
      return;
    case 'typing':
      return room && onTyping(client, room, f);
    case 'read':
      if (!room) return;
      if (f.user === client.user) room.myRead = Math.max(room.myRead, f.seq);
      else room.readers.set(f.user, Math.max(room.readers.get(f.user) || 0, f.seq));
      return client.changed(room.name);
    case 'presence':
      return onPresence(client, f, link);
    case 'occupancy':
      if (!room) return;
      room.occupancy = f.connections;
      return client.changed(room.name);
    case 'upload':
      // The slot an `upload` request asked for.
      if (f.ref) client.requests.settle(f.ref, null, f);
      return;
    case 'status':
      applyConversation(client, f.room, f);
      if (f.ref) client.requests.settle(f.ref, null, f);
      return;
    case 'error':
      return onError(client, f, link);
    case 'closing':
      if (ws === link.ws) link.closingCode = f.code;
      return;
    case 'pong':
    case 'left':
      return;
    default: {
      // Other replies to a request (`agent`, `conversations`, `blocked`, …) settle it whole.
      const ref = (f as { ref?: string | null }).ref;
      if (ref && client.requests.has(ref)) client.requests.settle(ref, null, f);
      return;
    }
  }
}

/** The join of `room` is confirmed: members, cursors and head; then gaps are filled and the outbox sent. */
function onJoined(client: RoomcastClient, room: Room, f: FrameOf<'joined'>, link: Link, ws: WebSocket): void {
  if (room.state === 'left') return;
  clearTimeout(room.joinTimer);
  const first = !room.timeline.anchored;
  room.state = 'joined';
  room.timeline.seeHead(f.head || 0);
  room.timeline.anchor(room.fromStart ? 0 : f.head || 0);
  room.myRead = Math.max(room.myRead, f.read_seq || 0);
  room.members = new Map((f.members || []).map((m) => [m.user, m]));
  room.occupancy = f.occupancy ?? null;
  for (const m of f.members || []) client.presence.set(m.user, m);
  if (f.conversation) applyConversation(client, room.name, f.conversation);
  if (first && !room.fromStart && f.head > 0) client.history.request(room, 'older', { before: f.head + 1, limit: client.opts.pageSize });
  if (room.readUnsent) {
    room.readUnsent = false;
    link.send({ action: 'read', room: room.name, seq: room.myRead });
  }
  link.joinedOn(ws, room.name);
  client.history.checkGap(room);
  client.delivery.flushRoom(room);
  client.changed(room.name);
}

/** A message of `room`, from a `message` frame (`live`, replays included) or a history page. */
function onMessage(client: RoomcastClient, room: Room, m: Message, live: boolean): void {
  const outcome = room.timeline.add(m);
  const mine = client.outbox.get(m.id);
  // Our own message, stored although its ack was lost (or sent from another tab).
  if (mine && m.from === client.user && mine.room === room.name) client.delivery.stored(m.id);
  const t = room.typers.get(m.from);
  if (t) {
    clearTimeout(t);
    room.typers.delete(m.from);
  }
  if (!room.members.has(m.from) && !isSystem(m)) {
    room.members.set(m.from, client.presence.get(m.from) || { user: m.from, status: 'online', last_seen: m.ts });
  }
  const status = statusOf(m);
  if (status) applyConversation(client, status.room || room.name, status);
  if (outcome === 'added') {
    if (live) client.history.checkGap(room);
    client.emit('message', m, { room: room.name, live });
  }
  client.changed(room.name);
}

function onAck(client: RoomcastClient, f: FrameOf<'ack'>): void {
  const room = client.rooms.get(f.room);
  const e = client.delivery.stored(f.id);
  if (!room) return;
  if (e) {
    // An ack answers this connection's own message: its token names the user.
    const m: Message = { room: f.room, seq: f.seq, id: f.id, from: client.user as string, body: e.body, ts: f.ts };
    if (client.claims.name) m.name = client.claims.name;
    if (e.meta) m.meta = e.meta;
    if (e.attachments) m.attachments = e.attachments;
    const original = e.reply_to && room.timeline.get(e.reply_to);
    if (original) m.reply_to = quoteOf(original);
    room.timeline.add(m);
  } else room.timeline.seeHead(f.seq);
  client.history.checkGap(room);
  client.emit('ack', f);
  client.changed(room.name);
}

function onTyping(client: RoomcastClient, room: Room, f: FrameOf<'typing'>): void {
  clearTimeout(room.typers.get(f.user));
  room.typers.delete(f.user);
  if (f.state === 'start' && f.user !== client.user) {
    room.typers.set(
      f.user,
      setTimeout(() => {
        room.typers.delete(f.user);
        client.changed(room.name);
      }, f.ttl_ms || 5000),
    );
  }
  client.changed(room.name);
}

function onPresence(client: RoomcastClient, f: FrameOf<'presence'>, link: Link): void {
  client.presence.set(f.user, { user: f.user, status: f.status, last_seen: f.last_seen });
  // Presence frames name no room: update the rooms that list the user (on the edge build
  // presence is per room, and the frame came on that room's own socket).
  for (const room of client.rooms.values()) {
    if (client.edge && room.name !== link.key) continue;
    if (room.members.has(f.user)) {
      room.members.set(f.user, { user: f.user, status: f.status, last_seen: f.last_seen });
      client.changed(room.name);
    }
  }
}

/** An error, matched by its ref to the message, request, join or history page it answers. */
function onError(client: RoomcastClient, f: FrameOf<'error'>, link: Link): void {
  const ref = f.ref;
  const e = ref ? client.outbox.get(ref) : null;
  if (e) {
    client.delivery.refused(e, f.code);
  } else if (ref && client.requests.has(ref)) {
    client.requests.settle(ref, f);
  } else if (ref?.startsWith('j:')) {
    const room = client.rooms.get(ref.slice(2));
    if (room && f.code === 'FORBIDDEN') {
      room.state = 'forbidden';
      clearTimeout(room.joinTimer);
      client.changed(room.name);
    } else if (room && client.edge && f.code !== 'RATE_LIMITED' && f.code !== 'UNAVAILABLE') {
      // The edge build joins the URL's room implicitly: resume by paging.
      room.state = 'joined';
      room.replaying = false;
      room.timeline.anchor(0);
      client.history.checkGap(room);
      client.delivery.flushRoom(room);
    }
  } else if (ref?.startsWith('h:')) {
    client.history.refused(ref);
  } else if (f.code === 'RATE_LIMITED') {
    // Dropped before parsing, so unknown which frame: resend what is unacknowledged.
    setTimeout(() => client.delivery.resendAll(link), 1500 + client.random() * 1500);
  }
  client.emit('error', f);
}

/**
 * A conversation's status, from `joined`, a system message or a `status` reply: the room's and
 * the desk's, unless what is held has a newer version.
 */
function applyConversation(client: RoomcastClient, name: string | undefined, c: ConversationChange | null | undefined): void {
  if (!name || !c?.status) return;
  const conv: ConversationState = { room: name, status: c.status, agent: c.agent ?? null, version: c.version ?? null, ts: c.ts ?? c.since ?? client.now() };
  const newer = (old: ConversationState | null | undefined) => !old || conv.version == null || old.version == null || conv.version >= old.version;
  const room = client.rooms.get(name);
  if (room && newer(room.conversation)) {
    room.conversation = conv;
    client.changed(name);
  }
  if (newer(client.desk.get(name))) {
    client.desk.set(name, conv);
    client.changed(INBOX_ROOM);
    client.emit('desk', conv);
  }
}
