//! Named limits. The WebSocket ones are API Gateway's, so the local server, the Lambda build and
//! the edge build reject the same inputs in the same way.

/// Largest WebSocket frame accepted (API Gateway: 32 KB). Larger: close 1009.
pub const MAX_FRAME_BYTES: usize = 32 * 1024;
/// Largest reassembled WebSocket message accepted (API Gateway: 128 KB). Larger: close 1009.
pub const MAX_WS_MESSAGE_BYTES: usize = 128 * 1024;
/// Largest message `body` (UTF-8 bytes). Larger: `TOO_LARGE` error, connection kept.
pub const MAX_BODY_BYTES: usize = 16 * 1024;
/// Largest serialized `meta` object attached to a message. Larger: `TOO_LARGE`.
pub const MAX_META_BYTES: usize = 2 * 1024;
/// Longest client message id (`id`): room for a ULID, UUID or app-specific key.
pub const MAX_CLIENT_ID_LEN: usize = 64;
/// Longest room name, tenant id or user id.
pub const MAX_NAME_LEN: usize = 128;
/// Largest JWT accepted on connect; larger tokens are refused without parsing.
pub const MAX_TOKEN_BYTES: usize = 8 * 1024;
/// Most messages one `history` frame returns.
pub const MAX_HISTORY_LIMIT: u32 = 100;
/// Default `history` page size when the client names none.
pub const DEFAULT_HISTORY_LIMIT: u32 = 50;
/// Largest frame the server sends (API Gateway's Management API accepts 128 KB per post).
/// `history` pages are cut to fit, with `more` set.
pub const MAX_SERVER_FRAME_BYTES: usize = 128 * 1024;
/// Most bytes of messages (each one's JSON and a separator) one `history` page, HTTP history
/// page or replay after `join {since}` carries: a page within one [`MAX_SERVER_FRAME_BYTES`]
/// frame with room for its own fields. Past it the page is cut, with `more`.
pub const MAX_PAGE_BYTES: usize = MAX_SERVER_FRAME_BYTES - 512;
/// Most messages replayed after `join {since}`; past that the client pages with `history`.
pub const MAX_REPLAY: u32 = 100;
/// Bytes of messages sent in a replay or a history page that one rate-limit token pays for (the
/// largest message body). The frame's (or request's) own token pays for the first; each further
/// one started costs another, so a full page costs 8 tokens and replaying is throttled like
/// sending.
pub const RATE_TOKEN_BYTES: usize = MAX_BODY_BYTES;
/// Most rooms one connection may have joined at once.
pub const MAX_ROOMS_PER_CONNECTION: usize = 100;
/// Most members listed in a `joined` frame.
pub const MAX_MEMBERS_LISTED: usize = 100;
/// Default most connections a room may hold with the presence of individuals (`presence` frames
/// to every member, `joined` listing members); above it the room announces its occupancy
/// instead (protocol.md §17).
pub const DEFAULT_PRESENCE_MAX_CONNECTIONS: usize = 100;
/// Shortest time between two `occupancy` frames of one room: changes within it are coalesced
/// into one frame at its end.
pub const OCCUPANCY_INTERVAL_MS: u64 = 1_000;
/// Most members one `members` page lists (and its default size).
pub const MAX_MEMBERS_PAGE: u32 = 100;
/// Default most concurrent connections of one user (more: the upgrade is refused with 429).
pub const DEFAULT_MAX_CONNECTIONS_PER_USER: usize = 20;
/// Default most concurrent WebSocket connections from one client address on the local server
/// (more: the upgrade is refused with 429 before the token is looked at). One address may be a
/// NAT holding many users, so it is generous; it stops one host from taking every socket (and
/// file descriptor) of the server. A load generator spreading 10,000 connections over 8
/// loopback addresses stays under it.
pub const DEFAULT_MAX_CONNECTIONS_PER_IP: usize = 2_000;
/// How long a receiver shows "typing" after a `typing start` without a refresh or stop.
pub const TYPING_TTL_MS: u64 = 5_000;
/// API Gateway closes a connection with no data for 10 minutes.
pub const DEFAULT_IDLE_TIMEOUT_MS: u64 = 10 * 60 * 1000;
/// API Gateway closes every connection after 2 hours.
pub const DEFAULT_MAX_CONNECTION_MS: u64 = 2 * 60 * 60 * 1000;
/// Fan-out sends in flight at once for one broadcast (bounded so one big room cannot exhaust
/// sockets or the Management API's rate).
pub const FANOUT_CONCURRENCY: usize = 32;
/// Frames queued for one connection before it is closed as a slow consumer (4009).
pub const OUTBOUND_QUEUE_FRAMES: usize = 1024;
/// Bytes queued for one connection before it is closed as a slow consumer (4009), whichever of
/// this and [`OUTBOUND_QUEUE_FRAMES`] comes first. Frames may be up to
/// [`MAX_SERVER_FRAME_BYTES`], so the frame bound alone would let one connection that never
/// reads hold 128 MB; this keeps it to 8 MB, still room for a `join {since}` replay of
/// [`MAX_REPLAY`] messages of the largest size at once.
pub const OUTBOUND_QUEUE_BYTES: usize = 8 * 1024 * 1024;
/// Longest reaction emoji, bytes (a family or flag emoji is several code points).
pub const MAX_EMOJI_BYTES: usize = 32;
/// Longest reaction emoji, characters (Unicode scalar values).
pub const MAX_EMOJI_CHARS: usize = 8;
/// Most distinct emoji one user may have on one message.
pub const MAX_REACTIONS_PER_USER: usize = 20;
/// Most reactions (user and emoji pairs) one message holds: bounds the stored message (a
/// DynamoDB item is at most 400 KB) and the `reactions` it is sent with.
pub const MAX_REACTIONS_PER_MESSAGE: usize = 256;
/// Characters of the replied-to message a reply's `reply_to.preview` carries.
pub const REPLY_PREVIEW_CHARS: usize = 100;
