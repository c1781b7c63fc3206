//! What may be uploaded (type allowlist, size limit) and how a stored file is served
//! ([`Disposition`]), and file names made safe to show and to put in a header
//! ([`sanitize_name`]).

/// Default largest upload: 10 MB.
pub const DEFAULT_MAX_BYTES: u64 = 10 * 1024 * 1024;
/// Longest file name kept, in bytes (a common file system limit).
pub const MAX_NAME_BYTES: usize = 255;

/// Raster image types: the only ones shown inline.
pub const RASTER_IMAGE_TYPES: &[&str] = &["image/png", "image/jpeg", "image/gif", "image/webp"];
/// The office formats (ZIP containers).
pub const OFFICE_TYPES: &[&str] = &[
    "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
    "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
    "application/vnd.openxmlformats-officedocument.presentationml.presentation",
    "application/vnd.oasis.opendocument.text",
    "application/vnd.oasis.opendocument.spreadsheet",
];
/// The other types allowed by default. SVG is among them as a file to download: it is never
/// shown inline ([`Disposition::of`]), so its scripts never run in a viewer's page.
pub const DOCUMENT_TYPES: &[&str] = &["application/pdf", "text/plain", "text/csv", "image/svg+xml"];
/// Markup types: a browser runs scripts in them, so they are only ever served as downloads, and
/// only these may carry markup bytes ([`super::sniff::Sniffed::matches`]).
pub const MARKUP_TYPES: &[&str] = &["image/svg+xml", "text/html", "application/xml", "text/xml"];

/// How a stored file is served.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Disposition {
    /// Shown in the page (raster images only).
    Inline,
    /// Always downloaded (`Content-Disposition: attachment`): everything else, SVG and HTML
    /// included, so nothing active runs in the viewer's origin.
    Download,
}

impl Disposition {
    /// How files of `content_type` are served.
    pub fn of(content_type: &str) -> Self {
        if RASTER_IMAGE_TYPES.contains(&content_type) {
            Self::Inline
        } else {
            Self::Download
        }
    }
}

/// What uploads a deployment accepts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttachmentPolicy {
    /// Largest file, bytes.
    pub max_bytes: u64,
    /// Allowed content types (lower case, no parameters).
    pub types: Vec<String>,
}

impl Default for AttachmentPolicy {
    /// 10 MB; raster images, PDF, plain text, CSV, SVG (as a download), and the office formats.
    fn default() -> Self {
        Self {
            max_bytes: DEFAULT_MAX_BYTES,
            types: RASTER_IMAGE_TYPES
                .iter()
                .chain(DOCUMENT_TYPES)
                .chain(OFFICE_TYPES)
                .map(|t| (*t).to_owned())
                .collect(),
        }
    }
}

impl AttachmentPolicy {
    /// Whether `content_type` (as a client declares it: any case, maybe with parameters) is
    /// allowed; the normalized type when it is.
    pub fn allowed_type(&self, content_type: &str) -> Option<String> {
        let bare = content_type
            .split(';')
            .next()
            .unwrap_or_default()
            .trim()
            .to_ascii_lowercase();
        self.types.contains(&bare).then_some(bare)
    }
}

/// Why a file name was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NameError {
    /// Nothing is left once made safe.
    Empty,
}

impl std::fmt::Display for NameError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Empty => f.write_str("the file name is empty once made safe"),
        }
    }
}

/// A client's file name made safe to store, show and put in a header: the last path segment
/// only (`/` and `\` both separate), without control, bidi-reordering or zero-width
/// characters, without leading dots or surrounding white space, at most [`MAX_NAME_BYTES`]
/// bytes (cut at a character boundary, the extension kept when short).
pub fn sanitize_name(name: &str) -> Result<String, NameError> {
    let last = name.rsplit(['/', '\\']).next().unwrap_or_default();
    let kept: String = last
        .chars()
        .filter(|c| !c.is_control() && !crate::text::is_invisible_or_reordering(*c))
        .collect();
    let kept = kept.trim().trim_start_matches('.').trim();
    if kept.is_empty() {
        return Err(NameError::Empty);
    }
    if kept.len() <= MAX_NAME_BYTES {
        return Ok(kept.to_owned());
    }
    let extension = kept
        .rsplit_once('.')
        .map(|(_, e)| e)
        .filter(|e| !e.is_empty() && e.len() <= 16);
    let room = MAX_NAME_BYTES - extension.map_or(0, |e| e.len() + 1);
    let mut cut = room;
    while !kept.is_char_boundary(cut) {
        cut -= 1;
    }
    let stem = kept[..cut].trim_end();
    Ok(match extension {
        Some(e) => format!("{stem}.{e}"),
        None => stem.to_owned(),
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]

    use super::*;

    #[test]
    fn names_lose_paths_controls_and_reordering() {
        assert_eq!(sanitize_name("report.pdf").unwrap(), "report.pdf");
        assert_eq!(sanitize_name("../../etc/passwd").unwrap(), "passwd");
        assert_eq!(sanitize_name("C:\\Users\\me\\cv.docx").unwrap(), "cv.docx");
        assert_eq!(sanitize_name("a\0b\r\n.txt").unwrap(), "ab.txt");
        // "invoice\u{202e}fdp.exe" shows as "invoiceexe.pdf" without the override.
        assert_eq!(
            sanitize_name("invoice\u{202e}fdp.exe").unwrap(),
            "invoicefdp.exe"
        );
        assert_eq!(sanitize_name("x\u{200b}y\u{2066}.png").unwrap(), "xy.png");
        assert_eq!(sanitize_name(".htaccess").unwrap(), "htaccess");
        assert_eq!(sanitize_name("..").unwrap_err(), NameError::Empty);
        assert_eq!(sanitize_name("dir/").unwrap_err(), NameError::Empty);
        assert_eq!(sanitize_name(" \u{202e} ").unwrap_err(), NameError::Empty);
    }

    #[test]
    fn long_names_are_cut_at_a_character_keeping_the_extension() {
        let long = format!("{}.pdf", "é".repeat(300));
        let safe = sanitize_name(&long).unwrap();
        assert!(safe.len() <= MAX_NAME_BYTES, "{}", safe.len());
        assert!(safe.ends_with("é.pdf"), "{safe}");
        let no_extension = "x".repeat(400);
        assert_eq!(sanitize_name(&no_extension).unwrap().len(), MAX_NAME_BYTES);
    }

    #[test]
    fn types_by_allowlist_and_only_raster_images_inline() {
        let policy = AttachmentPolicy::default();
        assert_eq!(
            policy.allowed_type("Image/PNG; charset=binary").as_deref(),
            Some("image/png")
        );
        assert_eq!(
            policy.allowed_type("image/svg+xml").as_deref(),
            Some("image/svg+xml")
        );
        assert_eq!(policy.allowed_type("text/html"), None);
        assert_eq!(policy.allowed_type("application/x-msdownload"), None);
        assert_eq!(Disposition::of("image/webp"), Disposition::Inline);
        for active in [
            "image/svg+xml",
            "text/html",
            "application/pdf",
            "text/plain",
        ] {
            assert_eq!(Disposition::of(active), Disposition::Download, "{active}");
        }
    }
}
