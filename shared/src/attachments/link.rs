//! Signed links for the deployments that serve the bytes themselves (the local server and the
//! edge Worker; AWS presigns S3 requests instead): a [`Grant`] to put or get one object until a
//! deadline, encoded as `{base64url(json)}.{base64url(HMAC-SHA256)}` in the URL path, so the
//! route that takes or serves the bytes needs no store lookup and no session.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

use super::model::{Slot, UploadTarget};
use super::policy::Disposition;

type HmacSha256 = Hmac<Sha256>;

/// Path prefix of upload links: `PUT /uploads/{token}`.
pub const UPLOAD_PATH: &str = "/uploads/";
/// Path prefix of download links: `GET /files/{token}`.
pub const DOWNLOAD_PATH: &str = "/files/";
/// Shortest signing key accepted, bytes.
pub const MIN_KEY_BYTES: usize = 32;

/// What a link allows.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "lowercase")]
pub enum Grant {
    /// Store exactly `size` bytes of `content_type` at `key`.
    Put {
        /// Object key.
        key: String,
        /// Exact size, bytes.
        size: u64,
        /// Declared type.
        #[serde(rename = "type")]
        content_type: String,
        /// Deadline, epoch milliseconds.
        exp: u64,
    },
    /// Serve the object at `key` as `name`, of `content_type`.
    Get {
        /// Object key.
        key: String,
        /// File name (safe).
        name: String,
        /// Content type.
        #[serde(rename = "type")]
        content_type: String,
        /// Deadline, epoch milliseconds.
        exp: u64,
    },
}

impl Grant {
    /// The upload grant of `slot`.
    pub fn upload(slot: &Slot) -> Self {
        Self::Put {
            key: slot.object_key(),
            size: slot.size,
            content_type: slot.content_type.clone(),
            exp: slot.upload_deadline_ms(),
        }
    }

    /// The object key it is for.
    pub fn key(&self) -> &str {
        match self {
            Self::Put { key, .. } | Self::Get { key, .. } => key,
        }
    }

    fn expires_at_ms(&self) -> u64 {
        match self {
            Self::Put { exp, .. } | Self::Get { exp, .. } => *exp,
        }
    }
}

/// Why a link was refused. Every variant is answered 403 without saying more than this.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum LinkError {
    /// Not a token, or signed with another key.
    #[error("the link is not valid")]
    Invalid,
    /// Past its deadline.
    #[error("the link has expired")]
    Expired,
}

/// The key links are signed with.
#[derive(Clone)]
pub struct LinkSigner {
    key: Vec<u8>,
}

impl std::fmt::Debug for LinkSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("LinkSigner(..)")
    }
}

impl LinkSigner {
    /// A signer over `key` (at least [`MIN_KEY_BYTES`]; `None` when shorter).
    pub fn new(key: &[u8]) -> Option<Self> {
        (key.len() >= MIN_KEY_BYTES).then(|| Self { key: key.to_vec() })
    }

    fn mac(&self) -> HmacSha256 {
        // Invariant: HMAC takes keys of any length.
        HmacSha256::new_from_slice(&self.key).expect("HMAC accepts any key length")
    }

    /// The token of `grant`.
    pub fn sign(&self, grant: &Grant) -> String {
        // Invariant: a Grant is plain strings and numbers.
        let payload = serde_json::to_vec(grant).expect("a grant serializes");
        let payload = URL_SAFE_NO_PAD.encode(payload);
        let mut mac = self.mac();
        mac.update(payload.as_bytes());
        let signature = URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes());
        format!("{payload}.{signature}")
    }

    /// The grant `token` carries, if this key signed it and it is not past its deadline at
    /// `now_ms`. The signature is checked in constant time before the payload is parsed.
    pub fn verify(&self, token: &str, now_ms: u64) -> Result<Grant, LinkError> {
        let (payload, signature) = token.split_once('.').ok_or(LinkError::Invalid)?;
        let signature = URL_SAFE_NO_PAD
            .decode(signature)
            .map_err(|_| LinkError::Invalid)?;
        let mut mac = self.mac();
        mac.update(payload.as_bytes());
        mac.verify_slice(&signature)
            .map_err(|_| LinkError::Invalid)?;
        let json = URL_SAFE_NO_PAD
            .decode(payload)
            .map_err(|_| LinkError::Invalid)?;
        let grant: Grant = serde_json::from_slice(&json).map_err(|_| LinkError::Invalid)?;
        if now_ms >= grant.expires_at_ms() {
            return Err(LinkError::Expired);
        }
        Ok(grant)
    }
}

/// Response headers: lower-case names and their values.
pub type Headers = Vec<(&'static str, String)>;

/// A verified upload: the bytes go to `key`, exactly `size` of them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdmittedUpload {
    /// Object key.
    pub key: String,
    /// Exact size, bytes.
    pub size: u64,
    /// Declared type (stored with the object).
    pub content_type: String,
}

/// Why an upload was refused before its body was read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UploadRefusal {
    /// A bad or expired link, or a download link.
    #[error("{0}")]
    Link(LinkError),
    /// `Content-Length` is not the size the slot was granted for.
    #[error("the slot is for exactly {expected} bytes, not {announced}")]
    WrongSize {
        /// The slot's size.
        expected: u64,
        /// What the request announced.
        announced: u64,
    },
}

impl UploadRefusal {
    /// 403 for the link, 413 for a body larger than the slot, 400 for a smaller one.
    pub fn status(&self) -> u16 {
        match self {
            Self::Link(_) => 403,
            Self::WrongSize {
                expected,
                announced,
            } if announced > expected => 413,
            Self::WrongSize { .. } => 400,
        }
    }

    /// The error code of the reply body.
    pub fn code(&self) -> &'static str {
        match self {
            Self::Link(_) => "FORBIDDEN",
            Self::WrongSize { .. } if self.status() == 413 => "TOO_LARGE",
            Self::WrongSize { .. } => "INVALID",
        }
    }
}

impl LinkSigner {
    /// Checks `PUT {UPLOAD_PATH}{token}` before its body is read: a put link, not expired, and
    /// a `Content-Length` (when sent) equal to the slot's size. The route then reads at most
    /// `size` bytes, refusing a body that runs longer (413) or ends shorter (400), and stores
    /// them atomically.
    pub fn admit_upload(
        &self,
        token: &str,
        content_length: Option<u64>,
        now_ms: u64,
    ) -> Result<AdmittedUpload, UploadRefusal> {
        match self.verify(token, now_ms).map_err(UploadRefusal::Link)? {
            Grant::Put {
                key,
                size,
                content_type,
                ..
            } => match content_length {
                Some(announced) if announced != size => Err(UploadRefusal::WrongSize {
                    expected: size,
                    announced,
                }),
                _ => Ok(AdmittedUpload {
                    key,
                    size,
                    content_type,
                }),
            },
            Grant::Get { .. } => Err(UploadRefusal::Link(LinkError::Invalid)),
        }
    }

    /// Checks `GET {DOWNLOAD_PATH}{token}`: the key to serve and the headers to serve it with.
    pub fn admit_download(&self, token: &str, now_ms: u64) -> Result<(String, Headers), LinkError> {
        match self.verify(token, now_ms)? {
            Grant::Get {
                key,
                name,
                content_type,
                ..
            } => {
                let headers = download_headers(&name, &content_type);
                Ok((key, headers))
            }
            Grant::Put { .. } => Err(LinkError::Invalid),
        }
    }

    /// The upload target of `slot`: `PUT {UPLOAD_PATH}{token}` with its type.
    pub fn upload_target(&self, slot: &Slot) -> UploadTarget {
        UploadTarget {
            method: "PUT".to_owned(),
            url: format!("{UPLOAD_PATH}{}", self.sign(&Grant::upload(slot))),
            fields: Vec::new(),
            headers: vec![("content-type".to_owned(), slot.content_type.clone())],
        }
    }

    /// A download link for `key`: `{DOWNLOAD_PATH}{token}`.
    pub fn download_url(&self, key: &str, name: &str, content_type: &str, exp: u64) -> String {
        let grant = Grant::Get {
            key: key.to_owned(),
            name: name.to_owned(),
            content_type: content_type.to_owned(),
            exp,
        };
        format!("{DOWNLOAD_PATH}{}", self.sign(&grant))
    }
}

/// The response headers a download is served with: its type (`application/octet-stream` for
/// anything not shown inline, so a browser never renders it), `Content-Disposition` with the
/// name (RFC 6266, `filename*` for non-ASCII), `nosniff`, a CSP that runs nothing even if the
/// bytes were opened as a document, and private caching until the link expires.
pub fn download_headers(name: &str, content_type: &str) -> Headers {
    let disposition = Disposition::of(content_type);
    let (served_type, kind) = match disposition {
        Disposition::Inline => (content_type.to_owned(), "inline"),
        Disposition::Download => ("application/octet-stream".to_owned(), "attachment"),
    };
    vec![
        ("content-type", served_type),
        ("content-disposition", content_disposition(kind, name)),
        ("x-content-type-options", "nosniff".to_owned()),
        (
            "content-security-policy",
            "default-src 'none'; img-src 'self'; sandbox".to_owned(),
        ),
        ("cache-control", "private, max-age=300".to_owned()),
        ("cross-origin-resource-policy", "cross-origin".to_owned()),
    ]
}

/// `{kind}; filename="ascii"; filename*=UTF-8''percent-encoded` (RFC 6266, RFC 8187).
pub fn content_disposition(kind: &str, name: &str) -> String {
    let ascii: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_graphic() && c != '"' && c != '\\' || c == ' ' {
                c
            } else {
                '_'
            }
        })
        .collect();
    let mut encoded = String::with_capacity(name.len() * 3);
    for b in name.bytes() {
        if b.is_ascii_alphanumeric() || b"!#$&+-.^_`|~".contains(&b) {
            encoded.push(char::from(b));
        } else {
            encoded.push_str(&format!("%{b:02X}"));
        }
    }
    format!("{kind}; filename=\"{ascii}\"; filename*=UTF-8''{encoded}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn signer() -> LinkSigner {
        LinkSigner::new(&[7u8; 32]).expect("32 bytes")
    }

    #[test]
    fn a_signed_grant_verifies_until_its_deadline() {
        let grant = Grant::Put {
            key: "t/r/att_1".into(),
            size: 5,
            content_type: "image/png".into(),
            exp: 1_000,
        };
        let token = signer().sign(&grant);
        assert_eq!(signer().verify(&token, 999), Ok(grant));
        assert_eq!(signer().verify(&token, 1_000), Err(LinkError::Expired));
    }

    #[test]
    fn a_changed_payload_or_another_key_is_refused() {
        let grant = Grant::Get {
            key: "t/r/att_1".into(),
            name: "a.pdf".into(),
            content_type: "application/pdf".into(),
            exp: 1_000,
        };
        let token = signer().sign(&grant);
        let other = LinkSigner::new(&[8u8; 32]).expect("32 bytes");
        assert_eq!(other.verify(&token, 0), Err(LinkError::Invalid));
        let (_, signature) = token.split_once('.').expect("two parts");
        let forged = Grant::Get {
            key: "t/other/att_1".into(),
            name: "a.pdf".into(),
            content_type: "application/pdf".into(),
            exp: 1_000,
        };
        let forged_payload = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&forged).expect("json"));
        let forged_token = format!("{forged_payload}.{signature}");
        assert_eq!(signer().verify(&forged_token, 0), Err(LinkError::Invalid));
        assert_eq!(signer().verify("garbage", 0), Err(LinkError::Invalid));
        assert!(LinkSigner::new(&[1u8; 31]).is_none());
    }

    #[test]
    fn uploads_need_a_put_link_and_the_granted_size() {
        let put = signer().sign(&Grant::Put {
            key: "t/r/att_1".into(),
            size: 10,
            content_type: "text/plain".into(),
            exp: 1_000,
        });
        assert_eq!(
            signer().admit_upload(&put, Some(10), 0).map(|u| u.size),
            Ok(10)
        );
        let larger = signer()
            .admit_upload(&put, Some(11), 0)
            .expect_err("too large");
        assert_eq!((larger.status(), larger.code()), (413, "TOO_LARGE"));
        assert_eq!(
            signer()
                .admit_upload(&put, Some(9), 0)
                .map_err(|e| e.status()),
            Err(400)
        );
        assert_eq!(
            signer()
                .admit_upload(&put, None, 1_000)
                .map_err(|e| e.status()),
            Err(403)
        );
        let get = signer().download_url("t/r/att_1", "a.txt", "text/plain", 1_000);
        let get_token = get.strip_prefix(DOWNLOAD_PATH).expect("download path");
        assert_eq!(
            signer()
                .admit_upload(get_token, Some(10), 0)
                .map_err(|e| e.status()),
            Err(403),
            "a download link uploads nothing"
        );
        let put_token = put.as_str();
        assert_eq!(
            signer().admit_download(put_token, 0).map(|_| ()),
            Err(LinkError::Invalid)
        );
        assert_eq!(
            signer().admit_download(get_token, 0).map(|(key, _)| key),
            Ok("t/r/att_1".to_owned())
        );
    }

    #[test]
    fn only_raster_images_are_served_inline() {
        let header = |name, ty| {
            download_headers(name, ty)
                .into_iter()
                .map(|(k, v)| format!("{k}: {v}"))
                .collect::<Vec<_>>()
        };
        let png = header("a.png", "image/png");
        assert!(png.contains(&"content-type: image/png".to_owned()));
        assert!(
            png.iter()
                .any(|h| h.starts_with("content-disposition: inline"))
        );
        let svg = header("x.svg", "image/svg+xml");
        assert!(svg.contains(&"content-type: application/octet-stream".to_owned()));
        assert!(
            svg.iter()
                .any(|h| h.starts_with("content-disposition: attachment"))
        );
        assert!(svg.contains(&"x-content-type-options: nosniff".to_owned()));
        assert_eq!(
            content_disposition("attachment", "résumé \"x\".pdf"),
            "attachment; filename=\"r_sum_ _x_.pdf\"; filename*=UTF-8''r%C3%A9sum%C3%A9%20%22x%22.pdf"
        );
    }
}
