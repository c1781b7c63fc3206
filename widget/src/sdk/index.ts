// roomcast JS client SDK. See docs/widget.md.
export { RoomcastClient } from './client.js';
export { Room } from './room.js';
export { decodeClaims } from './claims.js';
export { isBot, isSystem, statusOf, SYSTEM_SENDER, INBOX_ROOM } from './desk.js';
export { reconnectDecision, fullJitter, rotateAfterMs, BACKOFF } from './backoff.js';
export { Timeline, quoteOf } from './timeline.js';
export { Outbox, ulid } from './outbox.js';
export { DEFAULT_MAX_BYTES, FILE_TYPES, RASTER_TYPES, checkFile, fileType, uploadPolicy } from './uploads.js';
export { safeUrl } from './http.js';
export { embedTokens, newVisitorId, visitorFor } from './embed.js';
export { identify, rate } from './visitor.js';
export { listConversations, setAvailability, setBlocked, transfer, unassign } from './desk.js';
export type { ClientOptions, ClientState, SendOptions, UploadOptions } from './client.js';
export type { RoomState } from './room.js';
export type { Claims } from './claims.js';
export type { DownloadLink } from './downloads.js';
export type { UploadPolicy } from './uploads.js';
export type * from './types.js';
