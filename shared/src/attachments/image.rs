//! Image dimensions from the header bytes (PNG, GIF, JPEG, WebP), so clients can lay out a
//! thumbnail before it loads. Best effort: `None` when the header is not within the bytes read.

/// How many leading bytes [`dimensions`] is given: enough for a JPEG's frame header after
/// typical EXIF data.
pub const HEADER_BYTES: usize = 64 * 1024;

/// `(width, height)` of the image whose first bytes are `head`, for the types shown inline.
pub fn dimensions(content_type: &str, head: &[u8]) -> Option<(u32, u32)> {
    let le16 = |at: usize| {
        Some(u32::from(u16::from_le_bytes([
            *head.get(at)?,
            *head.get(at + 1)?,
        ])))
    };
    let be32 = |at: usize| Some(u32::from_be_bytes(head.get(at..at + 4)?.try_into().ok()?));
    let le24 = |at: usize| {
        let b = head.get(at..at + 3)?;
        Some(u32::from(b[0]) | u32::from(b[1]) << 8 | u32::from(b[2]) << 16)
    };
    let size = match content_type {
        // The IHDR chunk comes first: width and height at 16 and 20.
        "image/png" if head.get(12..16) == Some(b"IHDR") => (be32(16)?, be32(20)?),
        "image/gif" => (le16(6)?, le16(8)?),
        "image/jpeg" => jpeg(head)?,
        "image/webp" => match head.get(12..16)? {
            b"VP8 " => (le16(26)? & 0x3fff, le16(28)? & 0x3fff),
            b"VP8L" => {
                let bits = u32::from_le_bytes(head.get(21..25)?.try_into().ok()?);
                ((bits & 0x3fff) + 1, ((bits >> 14) & 0x3fff) + 1)
            }
            b"VP8X" => (le24(24)? + 1, le24(27)? + 1),
            _ => return None,
        },
        _ => return None,
    };
    (size.0 > 0 && size.1 > 0).then_some(size)
}

/// Walks a JPEG's segments to its first start-of-frame marker.
fn jpeg(head: &[u8]) -> Option<(u32, u32)> {
    let mut at = 2;
    loop {
        if *head.get(at)? != 0xff {
            return None;
        }
        let marker = *head.get(at + 1)?;
        let length = usize::from(u16::from_be_bytes([*head.get(at + 2)?, *head.get(at + 3)?]));
        let is_frame = matches!(marker, 0xc0..=0xcf) && !matches!(marker, 0xc4 | 0xc8 | 0xcc);
        if is_frame {
            let height = u16::from_be_bytes([*head.get(at + 5)?, *head.get(at + 6)?]);
            let width = u16::from_be_bytes([*head.get(at + 7)?, *head.get(at + 8)?]);
            return Some((u32::from(width), u32::from(height)));
        }
        at = at.checked_add(2 + length)?;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_give_dimensions() {
        let mut png = b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR".to_vec();
        png.extend_from_slice(&640u32.to_be_bytes());
        png.extend_from_slice(&480u32.to_be_bytes());
        assert_eq!(dimensions("image/png", &png), Some((640, 480)));
        assert_eq!(
            dimensions("image/gif", b"GIF89a\x20\x00\x10\x00"),
            Some((32, 16))
        );
        // SOI, an APP0 segment of 16 bytes, then SOF0 with height 300 and width 400.
        let mut jpeg = vec![0xff, 0xd8, 0xff, 0xe0, 0x00, 0x10];
        jpeg.extend_from_slice(&[0; 14]);
        jpeg.extend_from_slice(&[0xff, 0xc0, 0x00, 0x11, 0x08, 0x01, 0x2c, 0x01, 0x90]);
        assert_eq!(dimensions("image/jpeg", &jpeg), Some((400, 300)));
        assert_eq!(dimensions("image/jpeg", &jpeg[..10]), None);
        assert_eq!(dimensions("application/pdf", b"%PDF-1.7"), None);
    }
}
