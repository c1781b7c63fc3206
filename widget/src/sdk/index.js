// roomcast JS client SDK. See docs/widget.md.
export { RoomcastClient } from './client.js';
export { Room } from './room.js';
export { decodeClaims } from './claims.js';
export { isBot, isSystem, statusOf, SYSTEM_SENDER, INBOX_ROOM } from './desk.js';
export { reconnectDecision, fullJitter, rotateAfterMs, BACKOFF } from './backoff.js';
export { Timeline } from './timeline.js';
export { Outbox, ulid } from './outbox.js';
