// roomcast JS client SDK. See docs/widget.md.
export { RoomcastClient, Room, decodeClaims, isSystem, statusOf, SYSTEM_SENDER, INBOX_ROOM } from './client.js';
export { reconnectDecision, fullJitter, rotateAfterMs, BACKOFF } from './backoff.js';
export { Timeline } from './timeline.js';
export { Outbox, ulid } from './outbox.js';
