//! What an attachment is at each step: the [`Slot`] a member is granted (an object key the
//! server chose, with what the client declared), the [`UploadTarget`] the client sends the bytes
//! to, and the [`AttachmentView`] a message carries once the bytes checked out.

use serde::{Deserialize, Serialize};

use super::policy::Disposition;
use crate::store::RoomRef;

/// Most attachments on one message.
pub const MAX_ATTACHMENTS_PER_MESSAGE: usize = 10;
/// How long a slot takes uploads, milliseconds: a slow 10 MB upload fits, a leaked target
/// does not stay usable.
pub const UPLOAD_WINDOW_MS: u64 = 15 * 60 * 1000;
/// Uploads never attached to a message are removed this long after their slot was granted,
/// milliseconds (one day).
pub const ABANDONED_AFTER_MS: u64 = 24 * 60 * 60 * 1000;
/// How long a download link works, milliseconds.
pub const DOWNLOAD_LINK_MS: u64 = 5 * 60 * 1000;
/// Prefix of attachment ids.
pub const ID_PREFIX: &str = "att_";

/// An upload slot: granted to one member for one room, for one file of a declared name, size
/// and type. Kept by [`crate::store::AttachmentIndex`] until the message that carries it is
/// deleted, or a day after it was granted if no message does.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Slot {
    /// `att_` and 26 random base32 characters.
    pub id: String,
    /// Tenant.
    pub tenant: String,
    /// Room.
    pub room: String,
    /// The user it was granted to: only they can attach it.
    pub uploader: String,
    /// The file name, made safe ([`super::sanitize_name`]).
    pub name: String,
    /// Declared size, bytes: the upload must be exactly this.
    pub size: u64,
    /// Declared type, normalized and allowed: the bytes must sniff as it.
    pub content_type: String,
    /// When it was granted, epoch milliseconds.
    pub created_at_ms: u64,
    /// The message that carries it, once attached: `{sender}/{client id}`, so a resent message
    /// claims it again and any other is refused.
    pub claimed_by: Option<String>,
}

impl Slot {
    /// The room it belongs to.
    pub fn room_ref(&self) -> RoomRef {
        RoomRef::new(&self.tenant, &self.room)
    }

    /// Where its bytes are stored: chosen by the server, never by the client.
    pub fn object_key(&self) -> String {
        object_key(&self.tenant, &self.room, &self.id)
    }

    /// Until when the bytes may be uploaded, epoch milliseconds.
    pub fn upload_deadline_ms(&self) -> u64 {
        self.created_at_ms.saturating_add(UPLOAD_WINDOW_MS)
    }

    /// Whether it is unattached and old enough to be removed with its bytes at `now_ms`.
    pub fn is_abandoned(&self, now_ms: u64) -> bool {
        self.claimed_by.is_none() && now_ms >= self.created_at_ms.saturating_add(ABANDONED_AFTER_MS)
    }
}

/// The object key of attachment `id` in `tenant`'s `room`: `{tenant}/{room}/{id}`. Names are
/// `A-Z a-z 0-9 _ - . : @` and ids `att_` and base32, so a key has exactly three segments; a
/// file store that maps keys to paths must still encode the segments (a room may be `..`).
pub fn object_key(tenant: &str, room: &str, id: &str) -> String {
    format!("{tenant}/{room}/{id}")
}

/// The claim of a message on its attachments: `{sender}/{client id}` (a sender cannot contain
/// `/`).
pub fn claimant(from: &str, message_id: &str) -> String {
    format!("{from}/{message_id}")
}

/// Whether `id` has the shape of an attachment id (so a malformed one is `INVALID`, not a
/// store lookup).
pub fn is_attachment_id(id: &str) -> bool {
    id.strip_prefix(ID_PREFIX).is_some_and(|rest| {
        (16..=64).contains(&rest.len()) && rest.bytes().all(|b| b.is_ascii_alphanumeric())
    })
}

/// A fresh attachment id from 16 random bytes (`entropy` fills them).
pub fn new_attachment_id(entropy: &dyn Fn(&mut [u8])) -> String {
    let mut bytes = [0u8; 16];
    entropy(&mut bytes);
    format!("{ID_PREFIX}{}", base32(&bytes))
}

/// `bytes` in lower-case base32 (RFC 4648's alphabet, no padding): letters and digits only,
/// the same in any case, so it is also a safe file name for any segment of a key.
pub fn base32(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 32] = b"abcdefghijklmnopqrstuvwxyz234567";
    let mut out = String::with_capacity(bytes.len().div_ceil(5) * 8);
    let mut acc: u32 = 0;
    let mut bits = 0;
    for &b in bytes {
        acc = (acc << 8) | u32::from(b);
        bits += 8;
        while bits >= 5 {
            bits -= 5;
            out.push(char::from(ALPHABET[((acc >> bits) & 31) as usize]));
        }
    }
    if bits > 0 {
        out.push(char::from(ALPHABET[((acc << (5 - bits)) & 31) as usize]));
    }
    out
}

/// What a client names on a message: `{"id": "att_…"}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct AttachmentRef {
    /// The slot's id.
    pub id: String,
}

/// An attachment as a message carries it, in history and live frames.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct AttachmentView {
    /// Attachment id: download it with `GET /rooms/{room}/attachments/{id}`.
    pub id: String,
    /// File name (made safe).
    pub name: String,
    /// Size, bytes.
    pub size: u64,
    /// Content type, as sniffed from the bytes.
    #[serde(rename = "type")]
    pub content_type: String,
    /// Pixel width, for images whose header says it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub width: Option<u32>,
    /// Pixel height, for images whose header says it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub height: Option<u32>,
}

impl AttachmentView {
    /// Whether clients may show it in the page (raster images only).
    pub fn inline(&self) -> bool {
        Disposition::of(&self.content_type) == Disposition::Inline
    }
}

/// `POST /rooms/{room}/uploads` body (and the `upload` action's fields).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct UploadRequest {
    /// The file's name.
    pub name: String,
    /// Its size, bytes.
    pub size: u64,
    /// Its content type.
    #[serde(rename = "type")]
    pub content_type: String,
}

/// Where and how the client sends the bytes of a slot.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct UploadTarget {
    /// `PUT` (the body is the file) or `POST` (a `multipart/form-data` form: `fields` in order,
    /// then the file as `file`, as S3 wants it).
    pub method: String,
    /// Absolute (S3), or relative to the HTTP API's base URL (the local server, the edge).
    pub url: String,
    /// Form fields of a `POST`, in order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub fields: Vec<(String, String)>,
    /// Headers to send with a `PUT`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub headers: Vec<(String, String)>,
}

/// A granted slot as the client sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct UploadGrant {
    /// Attachment id, for `attachments: [{id}]`.
    pub id: String,
    /// Room.
    pub room: String,
    /// The safe name the file will be shown with.
    pub name: String,
    /// Where to send the bytes.
    pub upload: UploadTarget,
    /// Upload before this, epoch milliseconds.
    pub expires_at: u64,
}

/// A download link.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct DownloadLink {
    /// Attachment id.
    pub id: String,
    /// Absolute (S3), or relative to the HTTP API's base URL.
    pub url: String,
    /// Whether it is served for showing in the page (raster images) or as a download.
    pub inline: bool,
    /// The link stops working at, epoch milliseconds.
    pub expires_at: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_prefixed_base32_and_recognized() {
        let id = new_attachment_id(&|b: &mut [u8]| b.fill(0xa5));
        assert_eq!(id.len(), ID_PREFIX.len() + 26);
        assert!(is_attachment_id(&id), "{id}");
        assert!(!is_attachment_id("att_../../etc"));
        assert!(!is_attachment_id("evt_abcdefghijklmnopqrstuvwxyz"));
        assert_ne!(id, new_attachment_id(&|b: &mut [u8]| b.fill(0x5a)));
    }

    #[test]
    fn base32_is_rfc_4648_lower_case_unpadded() {
        assert_eq!(base32(b""), "");
        assert_eq!(base32(b"f"), "my");
        assert_eq!(base32(b"foobar"), "mzxw6ytboi");
    }

    #[test]
    fn a_slot_is_abandoned_a_day_after_it_was_granted_unless_claimed() {
        let mut slot = Slot {
            id: "att_x".into(),
            tenant: "t".into(),
            room: "r".into(),
            uploader: "u".into(),
            name: "a.png".into(),
            size: 1,
            content_type: "image/png".into(),
            created_at_ms: 1_000,
            claimed_by: None,
        };
        assert_eq!(slot.object_key(), "t/r/att_x");
        assert!(!slot.is_abandoned(1_000 + ABANDONED_AFTER_MS - 1));
        assert!(slot.is_abandoned(1_000 + ABANDONED_AFTER_MS));
        slot.claimed_by = Some(claimant("u", "m1"));
        assert!(!slot.is_abandoned(u64::MAX));
    }
}
