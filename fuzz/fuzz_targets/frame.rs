//! Client frame parsing and validation (`protocol::parse_client_frame`) and API Gateway route
//! selection (`roomcast_apigw::select_route`) on arbitrary text.
//!
//! Input: UTF-8 text is one frame as a client sends it (the seed corpus is readable frames).
//! An input starting with a NUL byte is instead decoded with `arbitrary` into a JSON object with
//! a known `action` and hostile fields, so validation is reached without guessing JSON.
//!
//! Checked for every frame: no panic; parsing is deterministic; a parsed frame satisfies every
//! validation rule of docs/protocol.md; the route agrees with the parsed action; an error's
//! reference and message are bounded (the error frame is echoed to the client) and the error
//! frame round-trips through JSON.
#![no_main]

use arbitrary::Unstructured;
use libfuzzer_sys::fuzz_target;
use roomcast_apigw::{ROUTES, select_route};
use roomcast_core::limits::{
    MAX_BODY_BYTES, MAX_CLIENT_ID_LEN, MAX_EMOJI_BYTES, MAX_HISTORY_LIMIT, MAX_MEMBERS_PAGE,
    MAX_META_BYTES,
};
use roomcast_core::protocol::{
    ACTIONS, ClientFrame, ServerFrame, parse_client_frame, validate_client_id, validate_name,
};
use roomcast_fuzz::{Field, Json, interesting_u64, name_like};
use serde_json::{Map, Value};

/// An error message is shown to the client; it must not grow with the frame.
const MAX_ERROR_MESSAGE_BYTES: usize = 512;

fuzz_target!(|data: &[u8]| {
    if let Some(structured) = data.strip_prefix(&[0]) {
        if let Ok(text) = structured_frame(&mut Unstructured::new(structured)) {
            check(&text);
        }
    } else if let Ok(text) = std::str::from_utf8(data) {
        check(text);
    }
});

fn structured_frame(u: &mut Unstructured<'_>) -> arbitrary::Result<String> {
    let mut map = Map::new();
    let action = Field::arbitrary_with(u, |u| Ok(Value::String((*u.choose(ACTIONS)?).to_owned())))?;
    action.put(&mut map, "action");
    let rooms = ["r1", "support-1", "inbox", "", "a/b", "x*"];
    Field::arbitrary_with(u, |u| Ok(Value::String(name_like(u, &rooms)?)))?.put(&mut map, "room");
    Field::arbitrary_with(u, |u| Ok(Value::String(name_like(u, &rooms)?)))?.put(&mut map, "cursor");
    Field::arbitrary_with(u, |u| {
        Ok(Value::String(name_like(u, &["m-1", "01J0", " "])?))
    })?
    .put(&mut map, "id");
    Field::arbitrary_with(u, |u| {
        let body: String = u.arbitrary()?;
        let repeat = if u.ratio(1, 8)? {
            MAX_BODY_BYTES / body.len().max(1) + usize::from(u.arbitrary::<bool>()?)
        } else {
            1
        };
        Ok(Value::String(body.repeat(repeat)))
    })?
    .put(&mut map, "body");
    Field::arbitrary_with(u, |u| Ok(u.arbitrary::<Json>()?.0))?.put(&mut map, "meta");
    for key in ["seq", "since", "before", "after", "limit"] {
        Field::arbitrary_with(u, |u| Ok(Value::from(interesting_u64(u)?)))?.put(&mut map, key);
    }
    Field::arbitrary_with(u, |u| Ok(Value::String(name_like(u, &["start", "stop"])?)))?
        .put(&mut map, "state");
    Field::arbitrary_with(u, |u| {
        Ok(Value::String(name_like(
            u,
            &["online", "away", "busy", "offline"],
        )?))
    })?
    .put(&mut map, "status");
    Field::arbitrary_with(u, |u| Ok(u.arbitrary::<Json>()?.0))?.put(&mut map, "ref");
    Ok(Value::Object(map).to_string())
}

fn check(text: &str) {
    let result = parse_client_frame(text);
    assert_eq!(result, parse_client_frame(text), "parsing is deterministic");
    let route = select_route(text);
    assert!(route == "$default" || ROUTES.contains(&route), "{route}");
    match result {
        Ok(parsed) => {
            if let Some(r) = &parsed.reference {
                assert!(
                    r.len() <= MAX_CLIENT_ID_LEN,
                    "reference too long: {}",
                    r.len()
                );
            }
            check_valid(&parsed.frame);
            // A frame naming `action` twice is parsed by its last one (as a JSON object) and
            // routed to `$default` (route selection refuses duplicate keys): both are served by
            // the same `ChatService::frame`, so only a named route has to match.
            let action = parsed.frame.action();
            assert!(
                route == "$default" || route == action,
                "`{action}` frame routed to {route}"
            );
            if ROUTES.contains(&action) && !text.contains("\\") {
                let actions = text.matches("\"action\"").count();
                assert!(
                    route == action || actions != 1,
                    "`{action}` frame routed to {route}"
                );
            }
        }
        Err(failure) => {
            if let Some(r) = &failure.reference {
                assert!(
                    r.len() <= MAX_CLIENT_ID_LEN,
                    "reference too long: {}",
                    r.len()
                );
            }
            assert!(
                failure.rejection.message.len() <= MAX_ERROR_MESSAGE_BYTES,
                "error message of {} bytes echoes the frame",
                failure.rejection.message.len()
            );
            if route != "$default" {
                let v: Value = serde_json::from_str(text).expect("a routed frame is JSON");
                assert_eq!(v.get("action").and_then(Value::as_str), Some(route));
            }
            let frame = ServerFrame::error(failure.rejection, failure.reference);
            let json = frame.to_json();
            let back: ServerFrame = serde_json::from_str(&json).expect("error frames parse back");
            assert_eq!(back, frame);
        }
    }
}

fn check_valid(frame: &ClientFrame) {
    let room = match frame {
        ClientFrame::Join { room, .. }
        | ClientFrame::Leave { room }
        | ClientFrame::Message { room, .. }
        | ClientFrame::Upload { room, .. }
        | ClientFrame::Edit { room, .. }
        | ClientFrame::Delete { room, .. }
        | ClientFrame::React { room, .. }
        | ClientFrame::Unreact { room, .. }
        | ClientFrame::Typing { room, .. }
        | ClientFrame::Read { room, .. }
        | ClientFrame::History { room, .. }
        | ClientFrame::Members { room, .. }
        | ClientFrame::Assign { room }
        | ClientFrame::Close { room }
        | ClientFrame::Transfer { room, .. }
        | ClientFrame::Unassign { room }
        | ClientFrame::Rate { room, .. } => Some(room),
        ClientFrame::Block { user } | ClientFrame::Unblock { user } => {
            assert!(validate_name("user", user).is_ok(), "user {user:?}");
            None
        }
        ClientFrame::Presence { .. }
        | ClientFrame::Ping
        | ClientFrame::Identify { .. }
        | ClientFrame::Availability { .. }
        | ClientFrame::Conversations { .. } => None,
    };
    if let Some(room) = room {
        assert!(validate_name("room", room).is_ok(), "room {room:?}");
        assert!(!room.contains('/') && !room.contains('*'));
    }
    match frame {
        ClientFrame::Members { cursor, limit, .. } => {
            if let Some(cursor) = cursor {
                assert!(validate_name("cursor", cursor).is_ok(), "cursor {cursor:?}");
            }
            assert!(
                limit.is_none_or(|l| (1..=MAX_MEMBERS_PAGE).contains(&l)),
                "limit {limit:?}"
            );
        }
        ClientFrame::Message {
            id,
            body,
            meta,
            attachments,
            ..
        } => {
            assert!(validate_client_id(id).is_ok(), "id {id:?}");
            // Blank only as the empty caption of a message carrying files.
            assert!(
                !roomcast_core::text::is_blank(body)
                    || (body.is_empty() && !attachments.is_empty()),
                "body {body:?}"
            );
            assert!(body.len() <= MAX_BODY_BYTES);
            assert!(attachments.len() <= roomcast_core::attachments::MAX_ATTACHMENTS_PER_MESSAGE);
            assert!(
                attachments
                    .iter()
                    .all(|a| roomcast_core::attachments::is_attachment_id(&a.id)),
                "{attachments:?}"
            );
            if let Some(meta) = meta {
                assert!(meta.is_object() || meta.is_null(), "meta {meta}");
                assert!(meta.to_string().len() <= MAX_META_BYTES);
            }
        }
        ClientFrame::Edit { body, .. } => {
            assert!(!roomcast_core::text::is_blank(body) && body.len() <= MAX_BODY_BYTES);
        }
        ClientFrame::React { emoji, .. } | ClientFrame::Unreact { emoji, .. } => {
            assert!(
                !emoji.is_empty()
                    && emoji.len() <= MAX_EMOJI_BYTES
                    && !emoji.chars().any(|c| c.is_whitespace() || c.is_control()),
                "emoji {emoji:?}"
            );
        }
        ClientFrame::History { limit: Some(l), .. } => {
            assert!((1..=MAX_HISTORY_LIMIT).contains(l), "limit {l}");
        }
        ClientFrame::Transfer { to, .. } => {
            assert!(validate_name("to", to).is_ok(), "to {to:?}");
        }
        ClientFrame::Rate { score, comment, .. } => {
            assert!((1..=5).contains(score), "score {score}");
            assert!(
                comment
                    .as_ref()
                    .is_none_or(|c| c.len() <= roomcast_core::protocol::MAX_RATING_COMMENT_BYTES)
            );
        }
        _ => {}
    }
}
