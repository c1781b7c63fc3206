// The support desk's conventions (protocol.md §15): the sender of the messages the service
// writes itself, the agents' inbox room, and the conversation changes those messages record.
//
// Only the sender tells a system message: `from` is "$system", which no token or publish can
// use. `meta` is the sender's to fill, so nothing in it (not `meta.kind`, not `meta.status`)
// makes a message a system line or changes a conversation.

import type { RoomcastClient } from './client.js';
import type { AgentView, Availability, ClientAction, ConversationEntry, ConversationStatus, ListFilter, Role, ServerFrame } from './types.js';

/** What the desk helpers read of a message. */
interface MessageLike {
  from?: string | null;
  room?: string;
  ts?: number;
  via?: string | null;
  role?: Role | null;
  meta?: Record<string, unknown>;
}

/** The sender of the messages the service writes itself (support-desk status changes). */
export const SYSTEM_SENDER = '$system';
/** The room where agents see every conversation change of their tenant. */
export const INBOX_ROOM = 'inbox';

/** Whether a message is a service-written event (a support-desk status change). */
export function isSystem(msg: MessageLike): boolean {
  return msg.from === SYSTEM_SENDER;
}

/** The conversation change a system message records, or null (for every other message). */
export function statusOf(
  msg: MessageLike,
): { room: string | undefined; status: ConversationStatus; agent: string | null; version: number | null; ts: number | undefined } | null {
  // Only the service writes `$system` messages: their meta has the shape protocol.md §15 gives.
  const m = msg.meta as { room?: string; status?: ConversationStatus; agent?: string | null; version?: number | null } | undefined;
  if (!isSystem(msg) || !m?.status) return null;
  return { room: m.room || msg.room, status: m.status, agent: m.agent ?? null, version: m.version ?? null, ts: msg.ts };
}

/** Whether a service published the message in its sender's name (a bot): it names the service in `via`. */
export function isBot(msg: MessageLike): boolean {
  return typeof msg.via === 'string';
}

/**
 * Who wrote a message (protocol.md, "Who wrote a message"): 'user', 'agent' or 'service' (a bot
 * or backend, and the desk's own lines). Only the server sets `role`; messages stored before it
 * did have none and count as a user's, unless a service published them (`via`).
 */
export function roleOf(msg: MessageLike): Role {
  if (msg.role === 'agent' || msg.role === 'service') return msg.role;
  return isBot(msg) ? 'service' : 'user';
}

// ---- agents' requests (protocol.md §15, "Routing, agents and visitors") ----
// Each sends `{action, …, ref}` and settles on the reply with that ref, or rejects with the
// `error` (its `code` kept). Requests naming no room go on the inbox's link (on the edge build
// every room has its own socket; the inbox's is the one a console always has).

/** A desk request as sent (its `ref` is added by requests.ts). */
type DeskAction = Extract<ClientAction, { action: 'availability' | 'conversations' | 'transfer' | 'unassign' | 'block' | 'unblock' }>;
/** A server frame of one `type`. */
type Reply<T extends ServerFrame['type']> = Extract<ServerFrame, { type: T }>;

function agentRequest(client: RoomcastClient, frame: DeskAction): Promise<ServerFrame> {
  return client.requests.send(client.link(('room' in frame && frame.room) || INBOX_ROOM), frame);
}

/** The agent's availability: `status` online|away|offline, `capacity` 1..50, `muted`. Resolves with `agent {user, status, capacity, load, muted}`. */
export function setAvailability(
  client: RoomcastClient,
  { status, capacity, muted }: { status: Availability; capacity?: number | null; muted?: boolean | null },
): Promise<AgentView> {
  const frame: DeskAction & { action: 'availability' } = { action: 'availability', status };
  if (capacity != null) frame.capacity = capacity;
  if (muted != null) frame.muted = muted;
  return agentRequest(client, frame).then((r) => (r as Reply<'agent'>).agent);
}

/** The conversation list: `filter` open|waiting|assigned|closed|all, `query` a search. Resolves with `{items, agents}`. */
export function listConversations(
  client: RoomcastClient,
  { filter, query }: { filter?: ListFilter; query?: string } = {},
): Promise<{ items: ConversationEntry[]; agents: AgentView[] }> {
  const frame: DeskAction & { action: 'conversations' } = { action: 'conversations' };
  if (filter) frame.filter = filter;
  if (query) frame.query = query;
  return agentRequest(client, frame).then((r) => {
    const list = r as Partial<Reply<'conversations'>>;
    return { items: list.items || [], agents: list.agents || [] };
  });
}

/** Hands an assigned conversation to agent `to` (the assigned agent only). Resolves with the `status` reply. */
export function transfer(client: RoomcastClient, room: string, to: string): Promise<ServerFrame> {
  return agentRequest(client, { action: 'transfer', room, to });
}

/** Puts an assigned conversation back in the queue (the assigned agent only). */
export function unassign(client: RoomcastClient, room: string): Promise<ServerFrame> {
  return agentRequest(client, { action: 'unassign', room });
}

/** Blocks (`blocked` true) or unblocks a visitor in the tenant. Resolves with `{user, blocked}`. */
export function setBlocked(client: RoomcastClient, user: string, blocked = true): Promise<ServerFrame> {
  return agentRequest(client, { action: blocked ? 'block' : 'unblock', user });
}
