// The SDK's own shapes: what it keeps and hands to apps. What travels on the wire is in
// generated/frames.ts (from docs/schema); these build on it.

import type { AttachmentView, ConversationStatus, MessageView, ReactionView, ReplyView, VisibleStatus } from './generated/frames.js';

export type * from './generated/frames.js';

/** A stored message as the client holds it (live, replayed, paged, or made from its own ack). */
export type Message = MessageView;

/** A file as a message the client sends carries it (the server needs the id; the rest is for showing it). */
export interface AttachmentInfo {
  id: string;
  name: string;
  size: number;
  type: string;
}

/** A message written here and not yet acknowledged (outbox.ts keeps it, delivery.ts sends it). */
export interface OutboxEntry {
  id: string;
  room: string;
  body: string;
  meta?: Record<string, unknown>;
  attachments?: AttachmentInfo[];
  /** The seq of the message it answers. */
  reply_to?: number;
  /** Who wrote it: another user's entry (same browser, other login) is never sent as this one. */
  user?: string | null;
  createdAt: number;
  /** 'sending': on a socket, waiting for its ack. */
  status: 'pending' | 'sending' | 'failed';
  attempts: number;
  /** Refused for good (not resent until `retry`). */
  permanent?: boolean;
  /** The refusal's code. */
  error?: string;
  /** The failAfterMs timer (not stored). */
  timer?: ReturnType<typeof setTimeout>;
  /** Kept by older versions of the outbox: dropped on load, never stored again. */
  sentOn?: unknown;
}

/** A user's presence as the client knows it. */
export interface Presence {
  user: string;
  status: VisibleStatus;
  last_seen: number;
}

/** A support conversation's state, for a room and in the desk (`client.desk`). */
export interface ConversationState {
  room: string;
  status: ConversationStatus;
  agent: string | null;
  version: number | null;
  ts: number;
}

/** Delivery state of a message in `Room.view()`: own messages only. */
export type SendStatus = 'pending' | 'failed' | 'sent' | 'seen';

/** One line of `Room.view()`: a stored message, or one of this user's unacknowledged ones. */
export interface ViewItem {
  key: string;
  id: string;
  room: string;
  from: string | null;
  seq?: number;
  body?: string | null;
  name?: string | null;
  meta?: Record<string, unknown>;
  attachments?: Array<AttachmentInfo | AttachmentView>;
  ts: number;
  deleted?: boolean;
  edited_ts?: number | null;
  via?: string | null;
  role?: Message['role'];
  /** One entry per emoji, in the order first used; "you reacted" is `client.user` being in `users`. */
  reactions?: ReactionView[];
  /** The message it answers, as it is now. */
  reply_to?: ReplyView | null;
  mine: boolean;
  bot: boolean;
  author: string;
  system: boolean;
  status?: SendStatus;
  error?: string;
}
