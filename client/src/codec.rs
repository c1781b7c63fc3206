//! Frames to and from the text of WebSocket messages: the one place the client (and anything
//! else speaking protocol v1 in Rust: the black-box suite, the load generator) turns the core's
//! typed frames into JSON and back.

use roomcast_core::protocol::{ClientFrame, MessageView, ServerFrame};

/// How every server frame opens: the servers write the tag `type` first.
const TYPE_OPENING: &str = r#"{"type":""#;

/// A server frame this client cannot read: not JSON, or a frame type or shape it does not know
/// (a later protocol version may add frames; clients ignore what they do not know).
#[derive(Debug, thiserror::Error)]
#[error("not a protocol v1 server frame: {0}")]
pub struct DecodeError(#[from] serde_json::Error);

/// `frame` as the text of a WebSocket message, with `ref: reference` when given (an `error`
/// answering it names it).
pub fn encode(frame: &ClientFrame, reference: Option<&str>) -> String {
    // Invariant: client frames hold strings, numbers, enums and JSON values only.
    let mut text = serde_json::to_string(frame).expect("client frames always serialize");
    if let Some(reference) = reference {
        // Spliced into the object rather than through a `Value`: a frame is encoded for every
        // message sent, and the load generator sends tens of thousands a second.
        debug_assert!(text.ends_with('}'), "a tagged frame is a JSON object");
        text.pop();
        text.push_str(r#","ref":"#);
        // Invariant: a string always serializes.
        text.push_str(&serde_json::to_string(reference).expect("a string always serializes"));
        text.push('}');
    }
    text
}

/// The `type` of a server frame, read from its opening without parsing the rest: a receiver
/// that wants only some frames skips the others for next to nothing. `None` when the text does
/// not open as the servers write frames (`{"type":"…"`, with no escapes in the name): then
/// [`decode`] tells.
pub fn frame_type(text: &str) -> Option<&str> {
    let rest = text.strip_prefix(TYPE_OPENING)?;
    let (name, _) = rest.split_once('"')?;
    (!name.contains('\\')).then_some(name)
}

/// The server frame in the text of a WebSocket message.
pub fn decode(text: &str) -> Result<ServerFrame, DecodeError> {
    // `message` is most of what a client receives. The tagged enum first buffers every field
    // into an intermediate tree to find `type`; with the type known from the opening, the view
    // is read straight from the text (its fields ignore `type`), without that tree.
    if frame_type(text) == Some("message") {
        return Ok(ServerFrame::Message(serde_json::from_str::<MessageView>(
            text,
        )?));
    }
    Ok(serde_json::from_str(text)?)
}

#[cfg(test)]
mod tests {
    use roomcast_core::auth::Role;
    use roomcast_core::protocol::{
        ErrorCode, PresenceStatus, ReactionView, ReplyView, TypingState, parse_client_frame,
    };
    use serde_json::json;

    use super::*;
    use crate::Outgoing;

    #[test]
    fn the_server_reads_the_frames_the_client_writes_with_their_reference() {
        let room = || "r-1".to_owned();
        let frames = [
            ClientFrame::Join {
                room: room(),
                since: None,
            },
            ClientFrame::Join {
                room: room(),
                since: Some(4),
            },
            ClientFrame::Leave { room: room() },
            ClientFrame::History {
                room: room(),
                before: Some(9),
                after: None,
                limit: Some(20),
            },
            ClientFrame::Typing {
                room: room(),
                state: TypingState::Start,
            },
            ClientFrame::Read {
                room: room(),
                seq: 3,
            },
            ClientFrame::Presence {
                status: PresenceStatus::Busy,
            },
            ClientFrame::Ping,
        ];
        for frame in frames {
            for reference in ["r7", "a \"quoted\" ref"] {
                let parsed = parse_client_frame(&encode(&frame, Some(reference)))
                    .unwrap_or_else(|e| panic!("{frame:?}: {e:?}"));
                assert_eq!(parsed.frame, frame);
                assert_eq!(parsed.reference.as_deref(), Some(reference));
            }
            let parsed = parse_client_frame(&encode(&frame, None))
                .unwrap_or_else(|e| panic!("{frame:?}: {e:?}"));
            assert_eq!((parsed.frame, parsed.reference), (frame, None));
        }
        let message = Outgoing {
            room: room(),
            id: "m-1".into(),
            body: "hi".into(),
            meta: Some(json!({"order": "A-17"})),
            reply_to: Some(3),
        };
        let parsed =
            parse_client_frame(&encode(&message.frame(), None)).unwrap_or_else(|e| panic!("{e:?}"));
        assert_eq!(parsed.frame, message.frame());
        assert_eq!(
            parsed.reference.as_deref(),
            Some("m-1"),
            "a message is named by its id"
        );
    }

    fn message_view() -> MessageView {
        MessageView {
            room: "r-1".into(),
            seq: 7,
            id: "m-7".into(),
            from: "ann".into(),
            name: Some("Ann".into()),
            role: Some(Role::Agent),
            via: None,
            body: Some("hi \"there\"".into()),
            meta: Some(json!({"k": [1, 2]})),
            ts: 1_700_000_000_000,
            edited_ts: None,
            deleted: false,
            attachments: Vec::new(),
            reply_to: Some(Box::new(ReplyView {
                seq: 3,
                from: "bo".into(),
                preview: Some("where is my order?".into()),
                deleted: false,
            })),
            reactions: vec![ReactionView {
                emoji: "👍".into(),
                count: 2,
                users: vec!["bo".into(), "cy".into()],
            }],
        }
    }

    #[test]
    fn server_frames_decode_as_the_server_wrote_them() {
        let frames = [
            ServerFrame::Message(message_view()),
            ServerFrame::Ack {
                id: "m-7".into(),
                room: "r-1".into(),
                seq: 7,
                ts: 1,
                duplicate: true,
            },
            ServerFrame::Error {
                code: ErrorCode::NotMember,
                message: "join first".into(),
                reference: Some("r3".into()),
            },
            ServerFrame::History {
                room: "r-1".into(),
                messages: vec![message_view()],
                more: false,
            },
        ];
        for frame in frames {
            let text = serde_json::to_string(&frame).unwrap_or_else(|e| panic!("{e}"));
            let decoded = decode(&text).unwrap_or_else(|e| panic!("{text}: {e}"));
            assert_eq!(decoded, frame, "{text}");
        }
    }

    #[test]
    fn a_message_decodes_the_same_by_its_shortcut_and_by_the_tagged_enum() {
        let text = serde_json::to_string(&ServerFrame::Message(message_view()))
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            frame_type(&text),
            Some("message"),
            "the server writes `type` first: {text}"
        );
        let tagged: ServerFrame = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}"));
        let shortcut = decode(&text).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(shortcut, tagged);
    }

    #[test]
    fn the_type_is_read_from_the_opening_only() {
        let ack = ServerFrame::Ack {
            id: "m".into(),
            room: "r".into(),
            seq: 1,
            ts: 2,
            duplicate: false,
        };
        let text = serde_json::to_string(&ack).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(frame_type(&text), Some("ack"));
        assert_eq!(
            frame_type(r#"{"type":"presence","user":"#),
            Some("presence")
        );
        for text in [
            r#"{"user":"u","type":"presence"}"#,
            r#"{"type":"mess\"age"}"#,
            r#"{"type":"unterminated"#,
            r#"["type"]"#,
        ] {
            assert_eq!(frame_type(text), None, "{text}");
        }
    }

    #[test]
    fn what_is_not_a_server_frame_does_not_decode() {
        for text in [
            "",
            "not json",
            "[]",
            r#"{"type":"no_such_frame"}"#,
            r#"{"type":"message","room":"r-1"}"#,
            r#"{"type":"ack","id":"m"}"#,
        ] {
            assert!(decode(text).is_err(), "{text:?} decoded");
        }
    }
}
