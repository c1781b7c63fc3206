//! The URL paths the Worker serves (pure, unit-tested on the host).

/// What a request path asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    /// `GET /health`.
    Health,
    /// `GET /rooms/{room}/ws`: a WebSocket bound to the room.
    Socket(String),
    /// `GET|POST /rooms/{room}/messages`: history and server-side publish.
    Messages(String),
    /// `POST /__dev/conformance`: the store conformance suites inside a Durable Object.
    DevConformance,
    /// `POST /__relay/record`: a message another room's object records here (the support
    /// desk's inbox notices). Objects serve it; the Worker never forwards it.
    Relay,
    /// A room path whose room segment is not valid percent-encoded UTF-8.
    BadRoom,
    /// Anything else.
    NotFound,
}

/// The route of `path` (the URL path, still percent-encoded).
pub fn route(path: &str) -> Route {
    let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    match segments.as_slice() {
        ["health"] => Route::Health,
        ["rooms", room, kind @ ("ws" | "messages")] => match percent_decode(room) {
            Some(room) if *kind == "ws" => Route::Socket(room),
            Some(room) => Route::Messages(room),
            None => Route::BadRoom,
        },
        ["__dev", "conformance"] => Route::DevConformance,
        ["__relay", "record"] => Route::Relay,
        _ => Route::NotFound,
    }
}

/// Decodes `%XX` escapes; `None` for a malformed escape or a result that is not UTF-8.
pub fn percent_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths() {
        assert_eq!(route("/health"), Route::Health);
        assert_eq!(route("/rooms/lobby/ws"), Route::Socket("lobby".into()));
        assert_eq!(
            route("/rooms/a%3Ab%40c/messages"),
            Route::Messages("a:b@c".into())
        );
        assert_eq!(route("/rooms/%zz/ws"), Route::BadRoom);
        assert_eq!(route("/rooms/%ff/ws"), Route::BadRoom);
        assert_eq!(route("/rooms/lobby"), Route::NotFound);
        assert_eq!(route("/rooms/a/b/ws"), Route::NotFound);
        assert_eq!(route("/__dev/conformance"), Route::DevConformance);
        assert_eq!(route("/__relay/record"), Route::Relay);
        assert_eq!(route("/"), Route::NotFound);
    }

    #[test]
    fn percent_decoding() {
        assert_eq!(percent_decode("a%2Fb").as_deref(), Some("a/b"));
        assert_eq!(percent_decode("%"), None);
        assert_eq!(percent_decode("%4"), None);
        assert_eq!(percent_decode("plain").as_deref(), Some("plain"));
    }
}
