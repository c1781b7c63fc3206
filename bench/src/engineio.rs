//! Socket.IO v4 over its websocket transport: Engine.IO v4 packets (one per WebSocket text
//! frame) carrying Socket.IO v5 packets, the subset the load generator needs.
//!
//! Engine.IO: `0{open json}`, `1` close, `2` ping (answered with `3` pong), `4<socket.io packet>`,
//! `6` noop. Socket.IO (inside `4`): `<type>[<namespace>,][<ack id>][<json>]` with type `0`
//! connect, `1` disconnect, `2` event, `3` ack, `4` connect error. Only the default namespace
//! `/` is used, so no namespace appears on the wire; binary attachments are not used.

/// A packet the generator could not understand.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PacketError {
    /// An empty WebSocket frame.
    #[error("empty Engine.IO packet")]
    Empty,
    /// An Engine.IO or Socket.IO type the generator does not know.
    #[error("unknown packet type `{0}`")]
    UnknownType(char),
    /// An ack without an id.
    #[error("ack packet without an id")]
    AckWithoutId,
}

/// One Engine.IO packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EnginePacket<'a> {
    /// `0{...}`: the handshake (sid, pingInterval, pingTimeout, maxPayload).
    Open(&'a str),
    /// `1`: the server closes the session.
    Close,
    /// `2`: a heartbeat the client must answer with [`PONG`].
    Ping,
    /// `3`: an answer to a client ping.
    Pong,
    /// `4...`: a Socket.IO packet.
    Message(&'a str),
    /// `6`: nothing.
    Noop,
}

/// Engine.IO pong, the answer to the server's ping.
pub const PONG: &str = "3";

/// Parses one Engine.IO packet (one WebSocket text frame).
pub fn parse_engine(frame: &str) -> Result<EnginePacket<'_>, PacketError> {
    let mut chars = frame.chars();
    let kind = chars.next().ok_or(PacketError::Empty)?;
    let rest = chars.as_str();
    Ok(match kind {
        '0' => EnginePacket::Open(rest),
        '1' => EnginePacket::Close,
        '2' => EnginePacket::Ping,
        '3' => EnginePacket::Pong,
        '4' => EnginePacket::Message(rest),
        '6' => EnginePacket::Noop,
        other => return Err(PacketError::UnknownType(other)),
    })
}

/// One Socket.IO packet of the default namespace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SocketPacket<'a> {
    /// `0{...}`: connected (data holds the sid).
    Connect(&'a str),
    /// `1`: disconnected by the server.
    Disconnect,
    /// `2[<ack id>][...]`: an event; `payload` is the JSON array `["name", args...]`.
    Event {
        /// The id to acknowledge, when the sender wants an ack.
        ack_id: Option<u64>,
        /// The JSON array.
        payload: &'a str,
    },
    /// `3<ack id>[...]`: the answer to an event the client sent with that id.
    Ack {
        /// The id the client gave.
        ack_id: u64,
        /// The JSON array of the ack's arguments.
        payload: &'a str,
    },
    /// `4{...}`: the connection was refused (a middleware error).
    ConnectError(&'a str),
}

/// Parses a Socket.IO packet (the part after Engine.IO's `4`).
pub fn parse_socket(packet: &str) -> Result<SocketPacket<'_>, PacketError> {
    let mut chars = packet.chars();
    let kind = chars.next().ok_or(PacketError::Empty)?;
    let mut rest = chars.as_str();
    // A namespace other than `/` would come first as `/name,`.
    if rest.starts_with('/')
        && let Some(comma) = rest.find(',')
    {
        rest = &rest[comma + 1..];
    }
    let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
    let ack_id = rest[..digits].parse::<u64>().ok();
    let payload = &rest[digits..];
    Ok(match kind {
        '0' => SocketPacket::Connect(payload),
        '1' => SocketPacket::Disconnect,
        '2' => SocketPacket::Event { ack_id, payload },
        '3' => SocketPacket::Ack {
            ack_id: ack_id.ok_or(PacketError::AckWithoutId)?,
            payload,
        },
        '4' => SocketPacket::ConnectError(payload),
        other => return Err(PacketError::UnknownType(other)),
    })
}

/// The Engine.IO + Socket.IO frame that connects to the default namespace with `auth`.
pub fn connect_frame(auth_json: &str) -> String {
    format!("40{auth_json}")
}

/// The frame emitting an event (`payload` is the JSON array `["name", args...]`), asking for an
/// ack with `ack_id` when given.
pub fn event_frame(ack_id: Option<u64>, payload: &str) -> String {
    match ack_id {
        Some(id) => format!("42{id}{payload}"),
        None => format!("42{payload}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn engine_packets_are_told_apart() {
        assert_eq!(
            parse_engine(r#"0{"sid":"x","pingInterval":25000}"#),
            Ok(EnginePacket::Open(r#"{"sid":"x","pingInterval":25000}"#))
        );
        assert_eq!(parse_engine("2"), Ok(EnginePacket::Ping));
        assert_eq!(parse_engine("3"), Ok(EnginePacket::Pong));
        assert_eq!(parse_engine("1"), Ok(EnginePacket::Close));
        assert_eq!(parse_engine("6"), Ok(EnginePacket::Noop));
        assert_eq!(parse_engine("40"), Ok(EnginePacket::Message("0")));
        assert_eq!(parse_engine(""), Err(PacketError::Empty));
        assert_eq!(parse_engine("9"), Err(PacketError::UnknownType('9')));
    }

    #[test]
    fn socket_packets_carry_ack_ids_and_payloads() {
        assert_eq!(
            parse_socket(r#"0{"sid":"abc"}"#),
            Ok(SocketPacket::Connect(r#"{"sid":"abc"}"#))
        );
        assert_eq!(
            parse_socket(r#"2["message",{"seq":1}]"#),
            Ok(SocketPacket::Event {
                ack_id: None,
                payload: r#"["message",{"seq":1}]"#
            })
        );
        assert_eq!(
            parse_socket(r#"217["join","r1"]"#),
            Ok(SocketPacket::Event {
                ack_id: Some(17),
                payload: r#"["join","r1"]"#
            })
        );
        assert_eq!(
            parse_socket(r#"3123[{"seq":5}]"#),
            Ok(SocketPacket::Ack {
                ack_id: 123,
                payload: r#"[{"seq":5}]"#
            })
        );
        assert_eq!(
            parse_socket(r#"3/chat,7[{}]"#),
            Ok(SocketPacket::Ack {
                ack_id: 7,
                payload: "[{}]"
            })
        );
        assert_eq!(parse_socket("3[{}]"), Err(PacketError::AckWithoutId));
        assert_eq!(
            parse_socket(r#"4{"message":"unauthorized"}"#),
            Ok(SocketPacket::ConnectError(r#"{"message":"unauthorized"}"#))
        );
        assert_eq!(parse_socket("1"), Ok(SocketPacket::Disconnect));
    }

    #[test]
    fn frames_are_encoded_as_socket_io_expects() {
        assert_eq!(connect_frame(r#"{"token":"t"}"#), r#"40{"token":"t"}"#);
        assert_eq!(
            event_frame(Some(9), r#"["message",{}]"#),
            r#"429["message",{}]"#
        );
        assert_eq!(event_frame(None, r#"["x"]"#), r#"42["x"]"#);
    }
}
