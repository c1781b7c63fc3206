// The support desk's conventions (protocol.md §15): the sender of the messages the service
// writes itself, the agents' inbox room, and the conversation changes those messages record.

/** The sender of the messages the service writes itself (support-desk status changes). */
export const SYSTEM_SENDER = '$system';
/** The room where agents see every conversation change of their tenant. */
export const INBOX_ROOM = 'inbox';

/** Whether a message is a service-written event (a support-desk status change). */
export function isSystem(msg) {
  return msg.from === SYSTEM_SENDER || msg.kind === 'system' || msg.meta?.kind === 'system';
}

/** The conversation change a system message records, or null. */
export function statusOf(msg) {
  const m = msg.meta || {};
  const status = m.status || msg.status;
  if (!isSystem(msg) || !status) return null;
  return { room: m.room || msg.room, status, agent: m.agent ?? msg.agent ?? null, version: m.version ?? null, ts: msg.ts };
}
