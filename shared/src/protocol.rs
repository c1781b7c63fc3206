//! Protocol v1 wire types: client frames (`action`), server frames (`type`), error codes, close
//! codes and input validation. Pure: no I/O, no clock. docs/protocol.md is the prose contract.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::attachments::{AttachmentRef, AttachmentView, UploadGrant};
use crate::auth::Role;
use crate::limits::{
    MAX_BODY_BYTES, MAX_CLIENT_ID_LEN, MAX_EMOJI_BYTES, MAX_EMOJI_CHARS, MAX_HISTORY_LIMIT,
    MAX_MEMBERS_PAGE, MAX_META_BYTES, MAX_NAME_LEN, REPLY_PREVIEW_CHARS,
};
use crate::support::listing::{ConversationEntry, ListFilter};
use crate::support::roster::Availability;

/// WebSocket close codes roomcast uses. 1xxx are RFC 6455's; 4xxx are ours.
pub mod close {
    /// Normal closure (a client closing, or the server's `DELETE @connections/{id}`).
    pub const NORMAL: u16 = 1000;
    /// Server shutting down, idle timeout or 2-hour maximum: reconnect and resume.
    pub const GOING_AWAY: u16 = 1001;
    /// A binary frame: the protocol is JSON text only.
    pub const UNSUPPORTED_DATA: u16 = 1003;
    /// A frame or message above the size limits.
    pub const TOO_BIG: u16 = 1009;

    /// The token expired during the connection: fetch a new token, then reconnect.
    pub const TOKEN_EXPIRED: u16 = 4001;
    /// Not allowed here any more: the visitor was blocked by the support team, or the page's
    /// origin is not on the tenant's allowlist. Do not reconnect with the same token.
    pub const FORBIDDEN: u16 = 4003;

    /// Sustained flooding after `RATE_LIMITED` errors: reconnect only after a long backoff.
    pub const RATE_LIMITED: u16 = 4008;
    /// The client did not read its frames fast enough: reconnect and resume with `since`.
    pub const SLOW_CONSUMER: u16 = 4009;
}

/// Stable error codes carried by `error` frames.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ErrorCode {
    /// Not JSON, not an object, a missing or mistyped field.
    BadFrame,
    /// `action` names no action of protocol v1.
    UnknownAction,
    /// A body, meta or token over its limit.
    TooLarge,
    /// A field has a value outside its domain (room name, id, limit, …).
    Invalid,
    /// The connection has not joined the room it acts on.
    NotMember,
    /// The token does not allow this (room not granted, not the author, wrong role).
    Forbidden,
    /// Over the connection's rate limit; the frame was dropped.
    RateLimited,
    /// No such message.
    NotFound,
    /// A per-connection limit was reached (e.g. rooms joined).
    LimitExceeded,
    /// Storage failed; nothing was stored. Retry with the same `id`.
    Unavailable,
    /// The request contradicts the current state (a conversation assigned to another agent, or
    /// closed).
    Conflict,
}

impl ErrorCode {
    /// The code as it appears on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::BadFrame => "BAD_FRAME",
            Self::UnknownAction => "UNKNOWN_ACTION",
            Self::TooLarge => "TOO_LARGE",
            Self::Invalid => "INVALID",
            Self::NotMember => "NOT_MEMBER",
            Self::Forbidden => "FORBIDDEN",
            Self::RateLimited => "RATE_LIMITED",
            Self::NotFound => "NOT_FOUND",
            Self::LimitExceeded => "LIMIT_EXCEEDED",
            Self::Unavailable => "UNAVAILABLE",
            Self::Conflict => "CONFLICT",
        }
    }
}

/// A rejected client frame: the code, a human-readable reason and the frame's reference.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    /// Stable code.
    pub code: ErrorCode,
    /// Why, for people.
    pub message: String,
}

impl Rejection {
    /// A rejection with `code` and `message`.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
        }
    }
}

/// `typing` state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "snake_case")]
pub enum TypingState {
    /// The user started (or is still) typing.
    Start,
    /// The user stopped typing.
    Stop,
}

/// A status a user can choose. Offline is not chosen: it is having no connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "snake_case")]
pub enum PresenceStatus {
    /// Available (the default on connect).
    #[default]
    Online,
    /// Connected but away.
    Away,
    /// Connected, do not disturb.
    Busy,
}

/// Presence as other users see it: a chosen status, or offline.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "snake_case")]
pub enum VisibleStatus {
    /// See [`PresenceStatus::Online`].
    Online,
    /// See [`PresenceStatus::Away`].
    Away,
    /// See [`PresenceStatus::Busy`].
    Busy,
    /// No live connection.
    Offline,
}

impl From<PresenceStatus> for VisibleStatus {
    fn from(s: PresenceStatus) -> Self {
        match s {
            PresenceStatus::Online => Self::Online,
            PresenceStatus::Away => Self::Away,
            PresenceStatus::Busy => Self::Busy,
        }
    }
}

/// A frame from a client, after parsing and validation.
// Serialize: the Rust client sends these. The fields of the frames sent most (join, message)
// are left out when absent; elsewhere an absent optional field goes out as `null`, which the
// server reads as absent.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[cfg_attr(feature = "schema", schemars(transform = crate::spec::client_frame_rules))]
#[serde(tag = "action", rename_all = "snake_case")]
pub enum ClientFrame {
    /// Subscribe to a room; with `since`, replay every message after that seq.
    Join {
        /// Room name.
        room: String,
        /// Last seq the client has; replay starts after it.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        since: Option<u64>,
    },
    /// Unsubscribe from a room.
    Leave {
        /// Room name.
        room: String,
    },
    /// Send a message; `id` is the client's idempotency key.
    Message {
        /// Room name.
        room: String,
        /// Client-chosen unique id (a ULID is ideal).
        id: String,
        /// Text.
        body: String,
        /// Application data stored and delivered with the message.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        meta: Option<Value>,
        /// Uploaded files to carry (each granted by `upload` in this room), at most
        /// [`crate::attachments::MAX_ATTACHMENTS_PER_MESSAGE`]; with some, `body` may be empty.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        attachments: Vec<AttachmentRef>,
        /// Protocol 1.1: the seq of an earlier message of the room this one answers.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reply_to: Option<u64>,
    },
    /// Ask for an upload slot: the reply is an `upload` frame with where to send the bytes.
    Upload {
        /// Room name.
        room: String,
        /// The file's name.
        name: String,
        /// Its size, bytes.
        size: u64,
        /// Its content type.
        #[serde(rename = "type")]
        content_type: String,
    },
    /// Replace the body of one's own message.
    Edit {
        /// Room name.
        room: String,
        /// The message's seq.
        seq: u64,
        /// New text.
        body: String,
    },
    /// Delete one's own message (a tombstone stays so seqs stay gap-free).
    Delete {
        /// Room name.
        room: String,
        /// The message's seq.
        seq: u64,
    },
    /// Protocol 1.1: add an emoji reaction to a message (nothing changes when the user has it
    /// already).
    React {
        /// Room name.
        room: String,
        /// The message's seq.
        seq: u64,
        /// The emoji: 1 to 8 characters (at most 32 bytes), no white space or control characters.
        emoji: String,
    },
    /// Protocol 1.1: remove one's emoji reaction from a message (nothing changes when the user
    /// has none).
    Unreact {
        /// Room name.
        room: String,
        /// The message's seq.
        seq: u64,
        /// The emoji.
        emoji: String,
    },
    /// Typing indicator; never stored.
    Typing {
        /// Room name.
        room: String,
        /// Start or stop.
        state: TypingState,
    },
    /// Move the user's read cursor forward.
    Read {
        /// Room name.
        room: String,
        /// Last seq the user has seen.
        seq: u64,
    },
    /// Choose a presence status.
    Presence {
        /// The status.
        status: PresenceStatus,
    },
    /// Page through stored messages.
    History {
        /// Room name.
        room: String,
        /// Only messages with seq < before (the newest page when absent).
        #[serde(default)]
        before: Option<u64>,
        /// Only messages with seq > after, oldest first (for gap filling).
        #[serde(default)]
        after: Option<u64>,
        /// Page size, 1..=100 (default 50).
        #[serde(default)]
        limit: Option<u32>,
    },
    /// Page through the users connected to a room, in user id order (protocol.md §17).
    Members {
        /// Room name.
        room: String,
        /// Only users after this one (the `next` of the previous page).
        #[serde(default)]
        cursor: Option<String>,
        /// Page size, 1..=100 (default 100).
        #[serde(default)]
        limit: Option<u32>,
    },
    /// Support desk, role `agent`: take a waiting conversation.
    Assign {
        /// The conversation's room.
        room: String,
    },
    /// Support desk, role `agent`: close a conversation.
    Close {
        /// The conversation's room.
        room: String,
    },
    /// Support desk, role `agent` assigned the conversation: hand it to another agent.
    Transfer {
        /// The conversation's room.
        room: String,
        /// The agent taking it.
        to: String,
    },
    /// Support desk, role `agent` assigned the conversation: put it back in the queue.
    Unassign {
        /// The conversation's room.
        room: String,
    },
    /// Support desk, the visitor: a name and email agents see (and may answer by, later).
    Identify {
        /// Their name.
        #[serde(default)]
        name: Option<String>,
        /// Their email address.
        #[serde(default)]
        email: Option<String>,
    },
    /// Support desk, the visitor, once the conversation is closed: how it went.
    Rate {
        /// The conversation's room.
        room: String,
        /// 1 (bad) to 5 (great).
        score: u8,
        /// What they want to add.
        #[serde(default)]
        comment: Option<String>,
    },
    /// Support desk, role `agent`: whether they take conversations, how many at once, and
    /// whether their console notifies them.
    Availability {
        /// Online (auto-assigned up to capacity), away or offline.
        status: Availability,
        /// Conversations at once, 1..=50 (unchanged when absent).
        #[serde(default)]
        capacity: Option<u32>,
        /// Notifications off (unchanged when absent).
        #[serde(default)]
        muted: Option<bool>,
    },
    /// Support desk, role `agent`: the conversation list and the agents.
    Conversations {
        /// Which ones (default: waiting and assigned).
        #[serde(default)]
        filter: ListFilter,
        /// Only those whose visitor name, email, id or room contains this.
        #[serde(default)]
        query: Option<String>,
    },
    /// Support desk, role `agent`: refuse a visitor's tokens in this tenant until unblocked.
    Block {
        /// The visitor's user id.
        user: String,
    },
    /// Support desk, role `agent`: lift a block.
    Unblock {
        /// The visitor's user id.
        user: String,
    },
    /// Liveness check (also resets the idle timer).
    Ping,
}

impl ClientFrame {
    /// The frame's `action`, as the client wrote it.
    pub fn action(&self) -> &'static str {
        match self {
            ClientFrame::Join { .. } => "join",
            ClientFrame::Leave { .. } => "leave",
            ClientFrame::Message { .. } => "message",
            ClientFrame::Upload { .. } => "upload",
            ClientFrame::Edit { .. } => "edit",
            ClientFrame::Delete { .. } => "delete",
            ClientFrame::React { .. } => "react",
            ClientFrame::Unreact { .. } => "unreact",
            ClientFrame::Typing { .. } => "typing",
            ClientFrame::Read { .. } => "read",
            ClientFrame::Presence { .. } => "presence",
            ClientFrame::History { .. } => "history",
            ClientFrame::Members { .. } => "members",
            ClientFrame::Assign { .. } => "assign",
            ClientFrame::Close { .. } => "close",
            ClientFrame::Transfer { .. } => "transfer",
            ClientFrame::Unassign { .. } => "unassign",
            ClientFrame::Identify { .. } => "identify",
            ClientFrame::Rate { .. } => "rate",
            ClientFrame::Availability { .. } => "availability",
            ClientFrame::Conversations { .. } => "conversations",
            ClientFrame::Block { .. } => "block",
            ClientFrame::Unblock { .. } => "unblock",
            ClientFrame::Ping => "ping",
        }
    }
}

/// The sender of messages the service writes itself (support-desk status changes). `$` cannot
/// appear in a user id, so no token or publish can impersonate it.
pub const SYSTEM_SENDER: &str = "$system";

/// Longest comment of a `rate`, bytes.
pub const MAX_RATING_COMMENT_BYTES: usize = 2000;

/// Every action the protocol knows (1.1), for telling `UNKNOWN_ACTION` from `BAD_FRAME`.
pub const ACTIONS: &[&str] = &[
    "join",
    "leave",
    "message",
    "upload",
    "edit",
    "delete",
    "react",
    "unreact",
    "typing",
    "read",
    "presence",
    "history",
    "members",
    "assign",
    "close",
    "transfer",
    "unassign",
    "identify",
    "rate",
    "availability",
    "conversations",
    "block",
    "unblock",
    "ping",
];

/// A parsed frame with the client's reference (its `id`, else its `ref`) for error replies.
#[derive(Debug, Clone, PartialEq)]
pub struct Parsed {
    /// The frame.
    pub frame: ClientFrame,
    /// The reference echoed in replies.
    pub reference: Option<String>,
}

/// A frame that failed to parse, with whatever reference could be recovered.
#[derive(Debug, Clone, PartialEq)]
pub struct ParseFailure {
    /// Why.
    pub rejection: Rejection,
    /// The frame's `id` or `ref`, when it had one.
    pub reference: Option<String>,
}

fn reference_of(v: &Value) -> Option<String> {
    let r = v.get("id").or_else(|| v.get("ref"))?;
    match r {
        Value::String(s) if s.len() <= MAX_CLIENT_ID_LEN => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// Longest detail from the JSON parser kept in a rejection: serde's messages quote the offending
/// value (`invalid type: string "…"`), and the error frame must not echo a 128 KB frame back.
const MAX_PARSER_DETAIL_BYTES: usize = 200;

/// `detail` cut to [`MAX_PARSER_DETAIL_BYTES`] at a character boundary, marked with `…`.
fn bounded(detail: String) -> String {
    if detail.len() <= MAX_PARSER_DETAIL_BYTES {
        return detail;
    }
    let mut end = MAX_PARSER_DETAIL_BYTES;
    while !detail.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &detail[..end])
}

/// Parses and validates one client text frame.
pub fn parse_client_frame(text: &str) -> Result<Parsed, ParseFailure> {
    let fail = |code, msg: String, reference| ParseFailure {
        rejection: Rejection::new(code, msg),
        reference,
    };
    let value: Value = serde_json::from_str(text)
        .map_err(|e| fail(ErrorCode::BadFrame, bounded(format!("not JSON: {e}")), None))?;
    let Some(object) = value.as_object() else {
        return Err(fail(
            ErrorCode::BadFrame,
            "a frame is a JSON object".into(),
            None,
        ));
    };
    let reference = reference_of(&value);
    let action = match object.get("action") {
        Some(Value::String(a)) => a.as_str(),
        Some(_) => {
            return Err(fail(
                ErrorCode::BadFrame,
                "`action` must be a string".into(),
                reference,
            ));
        }
        None => {
            return Err(fail(
                ErrorCode::BadFrame,
                "missing `action`".into(),
                reference,
            ));
        }
    };
    if !ACTIONS.contains(&action) {
        let shown: String = action.chars().take(32).collect();
        return Err(fail(
            ErrorCode::UnknownAction,
            format!("unknown action `{shown}`"),
            reference,
        ));
    }
    let frame = ClientFrame::deserialize(&value).map_err(|e| {
        fail(
            ErrorCode::BadFrame,
            bounded(format!("bad `{action}` frame: {e}")),
            reference.clone(),
        )
    })?;
    validate(&frame).map_err(|rejection| ParseFailure {
        rejection,
        reference: reference.clone(),
    })?;
    Ok(Parsed { frame, reference })
}

fn validate(frame: &ClientFrame) -> Result<(), Rejection> {
    match frame {
        ClientFrame::Join { room, .. }
        | ClientFrame::Leave { room }
        | ClientFrame::Typing { room, .. }
        | ClientFrame::Read { room, .. }
        | ClientFrame::Delete { room, .. }
        | ClientFrame::Assign { room }
        | ClientFrame::Close { room }
        | ClientFrame::Unassign { room } => validate_name("room", room),
        ClientFrame::Transfer { room, to } => {
            validate_name("room", room)?;
            validate_name("to", to)
        }
        ClientFrame::Block { user } | ClientFrame::Unblock { user } => validate_name("user", user),
        ClientFrame::Rate {
            room,
            score,
            comment,
        } => {
            validate_name("room", room)?;
            if !(1..=5).contains(score) {
                return Err(Rejection::new(ErrorCode::Invalid, "score must be 1 to 5"));
            }
            match comment {
                Some(c) if c.len() > MAX_RATING_COMMENT_BYTES => Err(Rejection::new(
                    ErrorCode::TooLarge,
                    format!("comment is over {MAX_RATING_COMMENT_BYTES} bytes"),
                )),
                _ => Ok(()),
            }
        }
        ClientFrame::Conversations { query, .. } => match query {
            Some(q) if q.len() > MAX_NAME_LEN => Err(Rejection::new(
                ErrorCode::Invalid,
                format!("query is over {MAX_NAME_LEN} bytes"),
            )),
            _ => Ok(()),
        },
        ClientFrame::Identify { .. } | ClientFrame::Availability { .. } => Ok(()),
        ClientFrame::React { room, emoji, .. } | ClientFrame::Unreact { room, emoji, .. } => {
            validate_name("room", room)?;
            validate_emoji(emoji)
        }
        ClientFrame::Message {
            room,
            id,
            body,
            meta,
            attachments,
            ..
        } => {
            validate_name("room", room)?;
            validate_client_id(id)?;
            validate_attachment_refs(attachments)?;
            validate_message_body(body, !attachments.is_empty())?;
            validate_meta(meta.as_ref())
        }
        ClientFrame::Upload { room, .. } => validate_name("room", room),
        ClientFrame::Edit { room, body, .. } => {
            validate_name("room", room)?;
            validate_body(body)
        }
        ClientFrame::History { room, limit, .. } => {
            validate_name("room", room)?;
            match limit {
                Some(l) if *l == 0 || *l > MAX_HISTORY_LIMIT => Err(Rejection::new(
                    ErrorCode::Invalid,
                    format!("limit must be 1..={MAX_HISTORY_LIMIT}"),
                )),
                _ => Ok(()),
            }
        }
        ClientFrame::Members {
            room,
            cursor,
            limit,
        } => {
            validate_name("room", room)?;
            if let Some(cursor) = cursor {
                validate_name("cursor", cursor)?;
            }
            match limit {
                Some(l) if *l == 0 || *l > MAX_MEMBERS_PAGE => Err(Rejection::new(
                    ErrorCode::Invalid,
                    format!("limit must be 1..={MAX_MEMBERS_PAGE}"),
                )),
                _ => Ok(()),
            }
        }
        ClientFrame::Presence { .. } | ClientFrame::Ping => Ok(()),
    }
}

/// Validates a room name, tenant id or user id: 1..=128 of `A-Z a-z 0-9 _ - . : @`.
/// `/` separates tenant from room in storage keys and `*` is the grant wildcard, so neither may
/// appear.
pub fn validate_name(what: &str, name: &str) -> Result<(), Rejection> {
    let ok = !name.is_empty()
        && name.len() <= MAX_NAME_LEN
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_-.:@".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(Rejection::new(
            ErrorCode::Invalid,
            format!("{what} must be 1-{MAX_NAME_LEN} characters of A-Z a-z 0-9 _ - . : @"),
        ))
    }
}

/// Validates a reaction's emoji: 1 to [`MAX_EMOJI_CHARS`] characters and at most
/// [`MAX_EMOJI_BYTES`] bytes (a flag or a skin-toned family is several code points), none of
/// them white space or a control character, so it shows as one short label.
pub fn validate_emoji(emoji: &str) -> Result<(), Rejection> {
    let ok = !emoji.is_empty()
        && emoji.len() <= MAX_EMOJI_BYTES
        && emoji.chars().count() <= MAX_EMOJI_CHARS
        && !emoji.chars().any(|c| c.is_whitespace() || c.is_control());
    if ok {
        Ok(())
    } else {
        Err(Rejection::new(
            ErrorCode::Invalid,
            format!(
                "emoji must be 1-{MAX_EMOJI_CHARS} characters (at most {MAX_EMOJI_BYTES} bytes) \
                 without white space or control characters"
            ),
        ))
    }
}

/// Validates a client message id.
pub fn validate_client_id(id: &str) -> Result<(), Rejection> {
    let ok =
        !id.is_empty() && id.len() <= MAX_CLIENT_ID_LEN && id.bytes().all(|b| b.is_ascii_graphic());
    if ok {
        Ok(())
    } else {
        Err(Rejection::new(
            ErrorCode::Invalid,
            format!("id must be 1-{MAX_CLIENT_ID_LEN} printable ASCII characters"),
        ))
    }
}

/// Validates the attachments named on a message: at most
/// [`crate::attachments::MAX_ATTACHMENTS_PER_MESSAGE`], each an attachment id, none twice.
pub fn validate_attachment_refs(refs: &[AttachmentRef]) -> Result<(), Rejection> {
    use crate::attachments::{MAX_ATTACHMENTS_PER_MESSAGE, is_attachment_id};
    if refs.len() > MAX_ATTACHMENTS_PER_MESSAGE {
        return Err(Rejection::new(
            ErrorCode::Invalid,
            format!("at most {MAX_ATTACHMENTS_PER_MESSAGE} attachments per message"),
        ));
    }
    for (i, r) in refs.iter().enumerate() {
        if !is_attachment_id(&r.id) {
            return Err(Rejection::new(
                ErrorCode::Invalid,
                "attachment ids are `att_` and 16-64 letters or digits",
            ));
        }
        if refs[..i].iter().any(|earlier| earlier.id == r.id) {
            return Err(Rejection::new(
                ErrorCode::Invalid,
                format!("attachment {} is named twice", r.id),
            ));
        }
    }
    Ok(())
}

/// Validates the body of a new message: it may be empty when the message carries attachments.
pub fn validate_message_body(body: &str, has_attachments: bool) -> Result<(), Rejection> {
    if body.is_empty() && has_attachments {
        Ok(())
    } else {
        validate_body(body)
    }
}

/// Validates a message body: not blank ([`crate::text::is_blank`]: a body of white space,
/// zero-width or bidi characters shows nothing), within the size limit.
pub fn validate_body(body: &str) -> Result<(), Rejection> {
    if crate::text::is_blank(body) {
        return Err(Rejection::new(
            ErrorCode::Invalid,
            "body must not be empty (white space and invisible characters alone count as empty)",
        ));
    }
    if body.len() > MAX_BODY_BYTES {
        return Err(Rejection::new(
            ErrorCode::TooLarge,
            format!(
                "body is {} bytes; the limit is {MAX_BODY_BYTES}",
                body.len()
            ),
        ));
    }
    Ok(())
}

/// `meta` keys only the service writes: the desk's system messages carry `kind` (`"status"`),
/// and clients have used it to tell system lines from people's messages. A message from a
/// `user` or `agent` naming one is refused, so no client can pass for the service.
pub const RESERVED_META_KEYS: &[&str] = &["kind"];

/// Refuses `meta` naming a [`RESERVED_META_KEYS`] key (for senders other than services).
pub fn refuse_reserved_meta(meta: Option<&Value>) -> Result<(), Rejection> {
    let Some(object) = meta.and_then(Value::as_object) else {
        return Ok(());
    };
    match RESERVED_META_KEYS.iter().find(|k| object.contains_key(**k)) {
        Some(key) => Err(Rejection::new(
            ErrorCode::Invalid,
            format!("meta key `{key}` is reserved for the service"),
        )),
        None => Ok(()),
    }
}

/// Validates message meta.
pub fn validate_meta(meta: Option<&Value>) -> Result<(), Rejection> {
    let Some(meta) = meta else { return Ok(()) };
    if !meta.is_object() && !meta.is_null() {
        return Err(Rejection::new(ErrorCode::Invalid, "meta must be an object"));
    }
    let size = serde_json::to_string(meta)
        .map(|s| s.len())
        .unwrap_or(usize::MAX);
    if size > MAX_META_BYTES {
        return Err(Rejection::new(
            ErrorCode::TooLarge,
            format!("meta is {size} bytes; the limit is {MAX_META_BYTES}"),
        ));
    }
    Ok(())
}

/// A stored message as clients see it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct MessageView {
    /// Room name.
    pub room: String,
    /// Per-room sequence number, from 1, gap-free.
    pub seq: u64,
    /// The sender's client id.
    pub id: String,
    /// The sender's user id.
    pub from: String,
    /// The sender's display name, when its token had one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// The author's role: `user` (a visitor or team member), `agent`, or `service` (a bot or
    /// backend, and the desk's `$system` lines). `None` on messages stored before roles were
    /// recorded; clients treat those as `user`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<Role>,
    /// The service user that published it over the HTTP API, naming `from` as the sender (a
    /// bot, say): `from` did not write it, so nobody may change it over the WebSocket.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub via: Option<String>,
    /// Text; absent once deleted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body: Option<String>,
    /// Application data.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub meta: Option<Value>,
    /// When it was stored, epoch milliseconds.
    pub ts: u64,
    /// When it was last edited, epoch milliseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub edited_ts: Option<u64>,
    /// True once deleted.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub deleted: bool,
    /// Files it carries (gone once deleted).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub attachments: Vec<AttachmentView>,
    /// Protocol 1.1: the message it answers, as that message stands now.
    // Boxed: most messages answer none, and every event and frame carrying a message would
    // grow by the reference otherwise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reply_to: Option<Box<ReplyView>>,
    /// Protocol 1.1: its reactions, one entry per emoji in the order first used (absent when
    /// none; gone once deleted).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub reactions: Vec<ReactionView>,
}

/// The message a reply answers ([`MessageView::reply_to`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct ReplyView {
    /// Its seq.
    pub seq: u64,
    /// Its sender.
    pub from: String,
    /// The start of its text (at most [`REPLY_PREVIEW_CHARS`] characters); absent once it is
    /// deleted (or when it carries files only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub preview: Option<String>,
    /// True once it is deleted.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub deleted: bool,
}

impl ReplyView {
    /// The reference to `original` a reply carries: its sender and the start of its text.
    pub fn of(original: &MessageView) -> Self {
        let preview = original
            .body
            .as_deref()
            .filter(|body| !body.is_empty())
            .map(|body| match body.char_indices().nth(REPLY_PREVIEW_CHARS) {
                Some((cut, _)) => format!("{}…", &body[..cut]),
                None => body.to_owned(),
            });
        Self {
            seq: original.seq,
            from: original.from.clone(),
            preview: if original.deleted { None } else { preview },
            deleted: original.deleted,
        }
    }
}

/// One emoji's reactions on a message ([`MessageView::reactions`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct ReactionView {
    /// The emoji.
    pub emoji: String,
    /// How many users reacted with it (the length of `users`).
    pub count: u32,
    /// Every user who reacted with it, first reaction first (a message holds at most
    /// [`crate::limits::MAX_REACTIONS_PER_MESSAGE`] reactions, so the list is bounded): "you
    /// reacted" is the client's own id being in it.
    pub users: Vec<String>,
}

/// Where a support conversation stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "snake_case")]
pub enum ConversationStatus {
    /// A visitor wrote; no agent has taken it.
    Waiting,
    /// An agent took it.
    Assigned,
    /// An agent closed it; the visitor's next message reopens it as `waiting`.
    Closed,
}

impl ConversationStatus {
    /// The status as it appears on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Waiting => "waiting",
            Self::Assigned => "assigned",
            Self::Closed => "closed",
        }
    }
}

/// A room's support conversation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct Conversation {
    /// Where it stands.
    pub status: ConversationStatus,
    /// The agent it is (or, once closed, was) assigned to.
    pub agent: Option<String>,
    /// Counts changes from 1: every change writes `version + 1` only over `version`.
    pub version: u64,
    /// When it last changed, epoch milliseconds.
    pub since: u64,
    /// The agent who had it when it was last closed: a reopened conversation goes back to
    /// them when they are available.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous_agent: Option<String>,
}

/// An agent as the conversation list shows them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct AgentView {
    /// User id.
    pub user: String,
    /// Their availability.
    pub status: Availability,
    /// Conversations at once.
    pub capacity: u32,
    /// Conversations assigned now.
    pub load: usize,
    /// Notifications off.
    pub muted: bool,
}

/// One room member as listed in `joined`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct MemberView {
    /// User id.
    pub user: String,
    /// Current status.
    pub status: VisibleStatus,
    /// Last time the user was seen in the room, epoch milliseconds.
    pub last_seen: u64,
}

/// One user connected to a room, as a `members` page lists them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct PresentMember {
    /// User id.
    pub user: String,
    /// Their status (never `offline`: they are connected).
    pub status: VisibleStatus,
}

/// A frame from the server.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ServerFrame {
    /// Reply to `join`.
    Joined {
        /// Room name.
        room: String,
        /// Highest seq stored in the room (0 when empty).
        head: u64,
        /// The user's read cursor in the room.
        read_seq: u64,
        /// `head - read_seq`.
        unread: u64,
        /// Users who have joined the room, with presence; empty in a room above the presence
        /// threshold, which sends `occupancy` instead.
        members: Vec<MemberView>,
        /// Connections in the room, when it is above the presence threshold (protocol.md §17):
        /// then no `presence` frames come from it, `occupancy` frames do.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        occupancy: Option<u64>,
        /// The room's support conversation, when it is a support room that has one.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        conversation: Option<Conversation>,
    },
    /// After the replay that follows `join {since}`: the last seq replayed, and whether more
    /// remain (then page with `history {after: through}`).
    Replayed {
        /// Room name.
        room: String,
        /// Last seq replayed (or `since` when nothing was).
        through: u64,
        /// More messages follow `through`.
        more: bool,
    },
    /// The sender's message is durably stored.
    Ack {
        /// The client id.
        id: String,
        /// Room name.
        room: String,
        /// Its seq.
        seq: u64,
        /// Its timestamp.
        ts: u64,
        /// True when this id was already stored (nothing new was stored).
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        duplicate: bool,
    },
    /// A message, live or replayed.
    Message(MessageView),
    /// A message's body changed.
    Edited {
        /// Room name.
        room: String,
        /// The message.
        seq: u64,
        /// New text.
        body: String,
        /// Who edited it.
        by: String,
        /// When.
        edited_ts: u64,
    },
    /// A message was deleted.
    Deleted {
        /// Room name.
        room: String,
        /// The message.
        seq: u64,
        /// Who deleted it.
        by: String,
    },
    /// Someone is typing (never stored). Treat as stopped after `ttl_ms` without a refresh.
    Typing {
        /// Room name.
        room: String,
        /// Who.
        user: String,
        /// Start or stop.
        state: TypingState,
        /// How long a start holds.
        ttl_ms: u64,
    },
    /// A user's read cursor moved.
    Read {
        /// Room name.
        room: String,
        /// Whose.
        user: String,
        /// The new cursor.
        seq: u64,
    },
    /// A user's presence changed.
    Presence {
        /// Whose.
        user: String,
        /// New status.
        status: VisibleStatus,
        /// Last seen, epoch milliseconds.
        last_seen: u64,
    },
    /// How many connections a room above the presence threshold holds: sent when the count
    /// changed, at most once per [`crate::limits::OCCUPANCY_INTERVAL_MS`] per room.
    Occupancy {
        /// Room name.
        room: String,
        /// Connections in the room.
        connections: u64,
    },
    /// Reply to `members`: a page of the users connected to the room, in user id order.
    Members {
        /// Room name.
        room: String,
        /// The users, with their status.
        members: Vec<PresentMember>,
        /// The cursor of the next page; absent on the last.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        next: Option<String>,
        /// The frame's reference.
        #[serde(rename = "ref")]
        reference: Option<String>,
    },
    /// A page of history, oldest first.
    History {
        /// Room name.
        room: String,
        /// The messages.
        messages: Vec<MessageView>,
        /// More exist beyond this page in the direction paged.
        more: bool,
    },
    /// Reply to `leave`.
    Left {
        /// Room name.
        room: String,
    },
    /// The server is about to close the connection with `code` (sent first because some
    /// gateways, API Gateway among them, cannot put a close code on the wire).
    Closing {
        /// The close code (see [`close`]).
        code: u16,
        /// Why.
        reason: String,
    },
    /// Reply to `assign` and `close`: the conversation as it now stands. The change itself
    /// reaches every member as a stored `message` from [`SYSTEM_SENDER`].
    Status {
        /// The conversation's room.
        room: String,
        /// Where it stands.
        status: ConversationStatus,
        /// Its agent.
        agent: Option<String>,
        /// Its version.
        version: u64,
        /// The seq of the system message that recorded this version.
        seq: u64,
        /// The `ref` of the request.
        #[serde(rename = "ref")]
        reference: Option<String>,
    },
    /// Reply to `identify`: what agents now see.
    Identified {
        /// The name.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        name: Option<String>,
        /// The email address.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        email: Option<String>,
        /// The frame's reference.
        #[serde(rename = "ref")]
        reference: Option<String>,
    },
    /// Reply to `conversations`: the list, oldest-waiting first, and the agents.
    Conversations {
        /// The conversations.
        items: Vec<ConversationEntry>,
        /// Every agent with a record, by id.
        agents: Vec<AgentView>,
        /// The frame's reference.
        #[serde(rename = "ref")]
        reference: Option<String>,
    },
    /// Reply to `availability`: the agent's record as it stands.
    Agent {
        /// The agent.
        agent: AgentView,
        /// The frame's reference.
        #[serde(rename = "ref")]
        reference: Option<String>,
    },
    /// Reply to `block` and `unblock`.
    Blocked {
        /// The visitor.
        user: String,
        /// Whether they are blocked now.
        blocked: bool,
        /// The frame's reference.
        #[serde(rename = "ref")]
        reference: Option<String>,
    },
    /// Reply to `upload`: the slot granted and where to send the bytes.
    Upload {
        /// The grant.
        #[serde(flatten)]
        grant: UploadGrant,
        /// The `ref` of the request.
        #[serde(rename = "ref")]
        reference: Option<String>,
    },
    /// Protocol 1.1: a reaction was added or removed: to every member connection, and (with
    /// `ref`) as the reply to the `react` or `unreact` that did it, `duplicate` when that
    /// changed nothing (and nobody else was told). `count` and `users` are the emoji's
    /// reactions after the change.
    Reaction {
        /// Room name.
        room: String,
        /// The message.
        seq: u64,
        /// The emoji.
        emoji: String,
        /// Who reacted or took the reaction back.
        by: String,
        /// Added (`react`) or removed (`unreact`).
        added: bool,
        /// Users now reacting with this emoji.
        count: u32,
        /// Those users, first reaction first.
        users: Vec<String>,
        /// Only in the reply to the one who asked: nothing changed.
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        duplicate: bool,
        /// Only in the reply to the one who asked: the frame's reference.
        #[serde(rename = "ref", default, skip_serializing_if = "Option::is_none")]
        reference: Option<String>,
    },
    /// Reply to `ping`.
    Pong {
        /// Server time, epoch milliseconds.
        ts: u64,
    },
    /// A frame was rejected; the connection stays open.
    Error {
        /// Stable code.
        code: ErrorCode,
        /// Why.
        message: String,
        /// The rejected frame's `id` or `ref`.
        #[serde(rename = "ref")]
        reference: Option<String>,
    },
}

impl ServerFrame {
    /// The frame as JSON text.
    pub fn to_json(&self) -> String {
        // Invariant: every field is a string, number, bool, enum or `Value`; none can fail.
        serde_json::to_string(self).expect("server frames always serialize")
    }

    /// An `error` frame.
    pub fn error(rejection: Rejection, reference: Option<String>) -> Self {
        Self::Error {
            code: rejection.code,
            message: rejection.message,
            reference,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn code_of(text: &str) -> ErrorCode {
        parse_client_frame(text)
            .expect_err("must be rejected")
            .rejection
            .code
    }

    #[test]
    fn parses_every_action() {
        let frames = [
            r#"{"action":"join","room":"r1","since":4}"#,
            r#"{"action":"leave","room":"r1"}"#,
            r#"{"action":"message","room":"r1","id":"01J","body":"hi","meta":{"k":1}}"#,
            r#"{"action":"upload","room":"r1","name":"a.png","size":10,"type":"image/png","ref":"u1"}"#,
            r#"{"action":"edit","room":"r1","seq":1,"body":"x"}"#,
            r#"{"action":"delete","room":"r1","seq":1}"#,
            r#"{"action":"react","room":"r1","seq":1,"emoji":"👍"}"#,
            r#"{"action":"unreact","room":"r1","seq":1,"emoji":"👍"}"#,
            r#"{"action":"typing","room":"r1","state":"start"}"#,
            r#"{"action":"read","room":"r1","seq":3}"#,
            r#"{"action":"presence","status":"away"}"#,
            r#"{"action":"history","room":"r1","before":10,"limit":20}"#,
            r#"{"action":"members","room":"r1","cursor":"u7","limit":50}"#,
            r#"{"action":"assign","room":"support-1","ref":"a"}"#,
            r#"{"action":"close","room":"support-1"}"#,
            r#"{"action":"transfer","room":"support-1","to":"bo"}"#,
            r#"{"action":"unassign","room":"support-1"}"#,
            r#"{"action":"identify","name":"Zoë","email":"zoe@example.com"}"#,
            r#"{"action":"rate","room":"support-1","score":5,"comment":"great"}"#,
            r#"{"action":"availability","status":"online","capacity":2,"muted":false}"#,
            r#"{"action":"conversations","filter":"waiting","query":"zoe"}"#,
            r#"{"action":"block","user":"v1"}"#,
            r#"{"action":"unblock","user":"v1"}"#,
            r#"{"action":"ping"}"#,
        ];
        for f in frames {
            parse_client_frame(f).unwrap_or_else(|e| panic!("{f}: {e:?}"));
        }
        assert_eq!(frames.len(), ACTIONS.len());
    }

    #[test]
    fn members_pages_are_bounded() {
        for (frame, code) in [
            (
                r#"{"action":"members","room":"r","limit":0}"#,
                ErrorCode::Invalid,
            ),
            (
                r#"{"action":"members","room":"r","limit":101}"#,
                ErrorCode::Invalid,
            ),
            (
                r#"{"action":"members","room":"r","cursor":"a/b"}"#,
                ErrorCode::Invalid,
            ),
            (
                r#"{"action":"members","room":"r","cursor":""}"#,
                ErrorCode::Invalid,
            ),
            (
                r#"{"action":"members","room":"r","limit":-1}"#,
                ErrorCode::BadFrame,
            ),
            (
                r#"{"action":"members","room":"r","cursor":7}"#,
                ErrorCode::BadFrame,
            ),
            (r#"{"action":"members"}"#, ErrorCode::BadFrame),
        ] {
            assert_eq!(code_of(frame), code, "{frame}");
        }
        let parsed = parse_client_frame(r#"{"action":"members","room":"r"}"#).map(|p| p.frame);
        assert_eq!(
            parsed,
            Ok(ClientFrame::Members {
                room: "r".into(),
                cursor: None,
                limit: None
            })
        );
    }

    #[test]
    fn desk_frames_are_validated() {
        assert_eq!(
            code_of(r#"{"action":"rate","room":"support-1","score":0}"#),
            ErrorCode::Invalid
        );
        assert_eq!(
            code_of(r#"{"action":"rate","room":"support-1","score":6}"#),
            ErrorCode::Invalid
        );
        let long = "x".repeat(MAX_RATING_COMMENT_BYTES + 1);
        assert_eq!(
            code_of(&format!(
                r#"{{"action":"rate","room":"support-1","score":3,"comment":"{long}"}}"#
            )),
            ErrorCode::TooLarge
        );
        assert_eq!(
            code_of(r#"{"action":"availability","status":"busy"}"#),
            ErrorCode::BadFrame
        );
        assert_eq!(
            code_of(r#"{"action":"transfer","room":"support-1","to":"a b"}"#),
            ErrorCode::Invalid
        );
        assert_eq!(
            code_of(r#"{"action":"conversations","filter":"mine"}"#),
            ErrorCode::BadFrame
        );
    }

    #[test]
    fn attachments_are_bounded_and_allow_an_empty_body() {
        use serde_json::json;
        let id = |i: usize| format!("att_{i:026}");
        let with = |ids: Vec<String>, body: &str| {
            let refs: Vec<_> = ids.iter().map(|i| json!({"id": i})).collect();
            json!({"action": "message", "room": "r", "id": "m", "body": body, "attachments": refs})
                .to_string()
        };
        assert!(parse_client_frame(&with(vec![id(1)], "")).is_ok());
        assert_eq!(code_of(&with(vec![], "")), ErrorCode::Invalid);
        let eleven = (0..=crate::attachments::MAX_ATTACHMENTS_PER_MESSAGE)
            .map(id)
            .collect();
        assert_eq!(code_of(&with(eleven, "x")), ErrorCode::Invalid);
        assert_eq!(code_of(&with(vec![id(1), id(1)], "x")), ErrorCode::Invalid);
        assert_eq!(
            code_of(&with(vec!["../etc/passwd".into()], "x")),
            ErrorCode::Invalid
        );
        let extra = r#"{"action":"message","room":"r","id":"m","body":"x","attachments":[{"id":"att_00000000000000000000000001","url":"x"}]}"#;
        assert_eq!(code_of(extra), ErrorCode::BadFrame);
    }

    #[test]
    fn rejects_with_stable_codes() {
        assert_eq!(code_of("not json"), ErrorCode::BadFrame);
        assert_eq!(code_of("[1,2]"), ErrorCode::BadFrame);
        assert_eq!(code_of(r#"{"room":"r"}"#), ErrorCode::BadFrame);
        assert_eq!(code_of(r#"{"action":7}"#), ErrorCode::BadFrame);
        assert_eq!(code_of(r#"{"action":"fly"}"#), ErrorCode::UnknownAction);
        assert_eq!(code_of(r#"{"action":"join"}"#), ErrorCode::BadFrame);
        assert_eq!(
            code_of(r#"{"action":"join","room":"a/b"}"#),
            ErrorCode::Invalid
        );
        assert_eq!(
            code_of(r#"{"action":"join","room":""}"#),
            ErrorCode::Invalid
        );
        assert_eq!(
            code_of(r#"{"action":"read","room":"r","seq":-1}"#),
            ErrorCode::BadFrame
        );
        assert_eq!(
            code_of(r#"{"action":"typing","room":"r","state":"maybe"}"#),
            ErrorCode::BadFrame
        );
        assert_eq!(
            code_of(r#"{"action":"history","room":"r","limit":101}"#),
            ErrorCode::Invalid
        );
        assert_eq!(
            code_of(r#"{"action":"message","room":"r","id":"","body":"x"}"#),
            ErrorCode::Invalid
        );
        assert_eq!(
            code_of(r#"{"action":"message","room":"r","id":"a","body":""}"#),
            ErrorCode::Invalid
        );
        assert_eq!(
            code_of(r#"{"action":"message","room":"r","id":"a","body":"x","meta":3}"#),
            ErrorCode::Invalid
        );
        let big = "x".repeat(MAX_BODY_BYTES + 1);
        let frame = format!(r#"{{"action":"message","room":"r","id":"a","body":"{big}"}}"#);
        assert_eq!(code_of(&frame), ErrorCode::TooLarge);
        let meta = "y".repeat(MAX_META_BYTES);
        let frame = format!(
            r#"{{"action":"message","room":"r","id":"a","body":"b","meta":{{"k":"{meta}"}}}}"#
        );
        assert_eq!(code_of(&frame), ErrorCode::TooLarge);
    }

    /// Found by the `frame` fuzz target: serde quotes a mistyped value in its message, so the
    /// error frame echoed the whole (up to 128 KB) frame back.
    #[test]
    fn rejections_do_not_echo_long_values() {
        let long = r"\u0000".repeat(20_000);
        for frame in [
            format!(r#"{{"action":"typing","room":"r","state":"{long}"}}"#),
            format!(r#"{{"action":"read","room":"r","seq":"{long}"}}"#),
            format!(
                r#"{{"action":"presence","status":"é{}"}}"#,
                "é".repeat(5_000)
            ),
        ] {
            let f = parse_client_frame(&frame).expect_err("mistyped");
            assert_eq!(f.rejection.code, ErrorCode::BadFrame);
            assert!(f.rejection.message.len() <= 256, "{}", f.rejection.message);
        }
    }

    #[test]
    fn failures_keep_the_reference() {
        let f = parse_client_frame(r#"{"action":"message","room":"r","id":"m-1","body":""}"#)
            .unwrap_err();
        assert_eq!(f.reference.as_deref(), Some("m-1"));
        let f = parse_client_frame(r#"{"action":"nope","ref":"q9"}"#).unwrap_err();
        assert_eq!(f.reference.as_deref(), Some("q9"));
    }

    #[test]
    fn server_frames_have_the_documented_shape() {
        let ack = ServerFrame::Ack {
            id: "a".into(),
            room: "r".into(),
            seq: 3,
            ts: 9,
            duplicate: false,
        };
        assert_eq!(
            ack.to_json(),
            r#"{"type":"ack","id":"a","room":"r","seq":3,"ts":9}"#
        );
        let err = ServerFrame::error(
            Rejection::new(ErrorCode::NotMember, "join first"),
            Some("x".into()),
        );
        assert_eq!(
            err.to_json(),
            r#"{"type":"error","code":"NOT_MEMBER","message":"join first","ref":"x"}"#
        );
        let msg = ServerFrame::Message(MessageView {
            room: "r".into(),
            seq: 1,
            id: "c".into(),
            from: "u".into(),
            name: None,
            role: Some(Role::Agent),
            via: None,
            body: Some("hi".into()),
            meta: None,
            ts: 5,
            edited_ts: None,
            deleted: false,
            attachments: Vec::new(),
            reply_to: None,
            reactions: Vec::new(),
        });
        assert_eq!(
            msg.to_json(),
            r#"{"type":"message","room":"r","seq":1,"id":"c","from":"u","role":"agent","body":"hi","ts":5}"#
        );
    }

    #[test]
    fn emoji_are_short_visible_labels() {
        for fine in ["👍", "🇫🇷", "👨‍👩‍👧‍👦", "+1", ":party:"] {
            assert_eq!(validate_emoji(fine), Ok(()), "{fine}");
        }
        for bad in ["", "a b", "👍\n", "\u{7}", "123456789", &"é".repeat(17)] {
            assert_eq!(
                validate_emoji(bad).map_err(|r| r.code),
                Err(ErrorCode::Invalid),
                "{bad:?}"
            );
        }
        assert_eq!(
            code_of(r#"{"action":"react","room":"r","seq":1,"emoji":" "}"#),
            ErrorCode::Invalid
        );
        assert_eq!(
            code_of(r#"{"action":"unreact","room":"r","seq":1}"#),
            ErrorCode::BadFrame
        );
    }

    #[test]
    fn reply_previews_are_cut_and_deleted_originals_show_none() {
        let mut original: MessageView = serde_json::from_str(
            r#"{"room":"r","seq":4,"id":"c","from":"ann","body":"hi","ts":5}"#,
        )
        .unwrap();
        let reply = ReplyView::of(&original);
        assert_eq!(reply.preview.as_deref(), Some("hi"));
        original.body = Some("é".repeat(REPLY_PREVIEW_CHARS + 5));
        let cut = ReplyView::of(&original).preview.unwrap();
        assert_eq!(cut.chars().count(), REPLY_PREVIEW_CHARS + 1);
        assert!(cut.ends_with('…'));
        original.body = None;
        original.deleted = true;
        assert_eq!(
            serde_json::to_string(&ReplyView::of(&original)).unwrap(),
            r#"{"seq":4,"from":"ann","deleted":true}"#
        );
    }

    #[test]
    fn messages_stored_before_roles_read_without_one() {
        // What a store keeping `MessageView` as JSON (the embedded store) holds from before
        // roles were recorded: it reads back with no role and is written out without one.
        let old = r#"{"room":"r","seq":1,"id":"c","from":"u","body":"hi","ts":5}"#;
        let message: MessageView = serde_json::from_str(old).unwrap();
        assert_eq!(message.role, None);
        assert_eq!(serde_json::to_string(&message).unwrap(), old);
    }

    #[test]
    fn reserved_meta_keys_are_named_in_the_refusal() {
        let refused = refuse_reserved_meta(Some(&serde_json::json!({"kind": "status"})));
        assert_eq!(
            refused,
            Err(Rejection::new(
                ErrorCode::Invalid,
                "meta key `kind` is reserved for the service"
            ))
        );
        for fine in [
            None,
            Some(serde_json::json!({"order": "A-17", "status": "x"})),
        ] {
            assert_eq!(refuse_reserved_meta(fine.as_ref()), Ok(()));
        }
    }
}
