//! What a file's first bytes say it is, never what its name or the client says: the upload is
//! accepted only when this agrees with the declared type ([`Sniffed::matches`]).

/// What the bytes are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sniffed {
    /// PNG.
    Png,
    /// JPEG.
    Jpeg,
    /// GIF (87a or 89a).
    Gif,
    /// WebP (RIFF with a `WEBP` form).
    Webp,
    /// PDF.
    Pdf,
    /// A ZIP container: the office formats (docx, xlsx, pptx, odt) are ZIP files.
    Zip,
    /// SVG, HTML or XML: markup a browser may run scripts in.
    Markup,
    /// UTF-8 text without markup.
    Text,
    /// None of the above.
    Unknown,
}

/// How many leading bytes [`sniff`] looks at.
pub const SNIFF_BYTES: usize = 512;

/// The kind of `head`, the first bytes of a file (up to [`SNIFF_BYTES`] are looked at).
pub fn sniff(head: &[u8]) -> Sniffed {
    let head = &head[..head.len().min(SNIFF_BYTES)];
    let starts = |magic: &[u8]| head.starts_with(magic);
    if starts(b"\x89PNG\r\n\x1a\n") {
        Sniffed::Png
    } else if starts(b"\xff\xd8\xff") {
        Sniffed::Jpeg
    } else if starts(b"GIF87a") || starts(b"GIF89a") {
        Sniffed::Gif
    } else if head.len() >= 12 && starts(b"RIFF") && &head[8..12] == b"WEBP" {
        Sniffed::Webp
    } else if starts(b"%PDF-") {
        Sniffed::Pdf
    } else if starts(b"PK\x03\x04") {
        Sniffed::Zip
    } else if is_markup(head) {
        Sniffed::Markup
    } else if is_text(head) {
        Sniffed::Text
    } else {
        Sniffed::Unknown
    }
}

/// Markup a browser would parse: after a byte-order mark and white space, `<` followed by a
/// tag, a declaration, a comment or a processing instruction (SVG, HTML, XML).
fn is_markup(head: &[u8]) -> bool {
    let text = head.strip_prefix(b"\xef\xbb\xbf").unwrap_or(head);
    let text = text.trim_ascii_start();
    match text {
        [b'<', next, ..] => next.is_ascii_alphabetic() || matches!(next, b'!' | b'?'),
        _ => false,
    }
}

/// UTF-8 without NUL or other control characters than tab, line feed, carriage return and
/// form feed; a multi-byte character cut off at the end of `head` still counts.
fn is_text(head: &[u8]) -> bool {
    let valid = match std::str::from_utf8(head) {
        Ok(text) => text,
        Err(e) if e.error_len().is_none() => {
            // Invariant: `valid_up_to` is a character boundary of `head`.
            std::str::from_utf8(&head[..e.valid_up_to()]).unwrap_or_default()
        }
        Err(_) => return false,
    };
    valid
        .chars()
        .all(|c| !c.is_control() || matches!(c, '\t' | '\n' | '\r' | '\x0c'))
}

impl Sniffed {
    /// Whether bytes of this kind may be declared as `content_type` (a lower-case MIME type
    /// without parameters). Markup matches only the markup types (SVG, HTML, XML), which are
    /// served as downloads: an SVG or HTML file cannot pass for an image or for text.
    pub fn matches(self, content_type: &str) -> bool {
        match self {
            Self::Png => content_type == "image/png",
            Self::Jpeg => content_type == "image/jpeg",
            Self::Gif => content_type == "image/gif",
            Self::Webp => content_type == "image/webp",
            Self::Pdf => content_type == "application/pdf",
            Self::Zip => super::policy::OFFICE_TYPES.contains(&content_type),
            Self::Text => matches!(content_type, "text/plain" | "text/csv"),
            Self::Markup => super::policy::MARKUP_TYPES.contains(&content_type),
            Self::Unknown => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn magic_bytes_name_the_kind() {
        assert_eq!(sniff(b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR"), Sniffed::Png);
        assert_eq!(sniff(b"\xff\xd8\xff\xe0\0\x10JFIF"), Sniffed::Jpeg);
        assert_eq!(sniff(b"GIF89a\x01\0"), Sniffed::Gif);
        assert_eq!(sniff(b"RIFF\x24\0\0\0WEBPVP8 "), Sniffed::Webp);
        assert_eq!(sniff(b"%PDF-1.7\n"), Sniffed::Pdf);
        assert_eq!(sniff(b"PK\x03\x04\x14\0"), Sniffed::Zip);
        assert_eq!(sniff(b"name,count\nalice,3\n"), Sniffed::Text);
        assert_eq!(sniff(b"\0\x01\x02binary"), Sniffed::Unknown);
        assert_eq!(sniff(b""), Sniffed::Text, "an empty file is empty text");
    }

    /// Markup is caught however it starts, and never passes for another type.
    #[test]
    fn markup_is_never_an_image_or_text() {
        for svg in [
            &b"<svg xmlns='http://www.w3.org/2000/svg'><script>alert(1)</script></svg>"[..],
            b"\xef\xbb\xbf  \n<?xml version='1.0'?><svg/>",
            b"<!DOCTYPE html><html>",
            b"\t<html><body onload=alert(1)>",
            b"<!-- a comment --><svg/>",
        ] {
            assert_eq!(
                sniff(svg),
                Sniffed::Markup,
                "{:?}",
                String::from_utf8_lossy(svg)
            );
            for declared in ["image/png", "image/gif", "text/plain", "application/pdf"] {
                assert!(!sniff(svg).matches(declared), "{declared}");
            }
            assert!(sniff(svg).matches("image/svg+xml"));
        }
        assert_eq!(
            sniff(b"1 < 2 and 3 > 2"),
            Sniffed::Text,
            "a `<` in prose is text"
        );
    }

    #[test]
    fn declared_types_must_agree_with_the_bytes() {
        assert!(Sniffed::Png.matches("image/png"));
        assert!(
            !Sniffed::Png.matches("image/jpeg"),
            "a PNG declared as JPEG"
        );
        assert!(
            !Sniffed::Pdf.matches("image/png"),
            "a PDF declared as an image"
        );
        assert!(
            Sniffed::Zip
                .matches("application/vnd.openxmlformats-officedocument.wordprocessingml.document")
        );
        assert!(
            !Sniffed::Zip.matches("application/zip"),
            "archives are not on the list"
        );
        assert!(!Sniffed::Unknown.matches("application/octet-stream"));
    }

    #[test]
    fn text_cut_inside_a_character_is_still_text() {
        let text = "héllo wörld".as_bytes();
        assert_eq!(sniff(&text[..2]), Sniffed::Text);
        assert_eq!(sniff(b"ok\xff\xfe"), Sniffed::Unknown, "invalid UTF-8");
    }
}
