//! Attachments: files shared in chat, uploaded straight to object storage and checked before a
//! message may carry them. Pure, like the rest of the core: what may be uploaded and how it is
//! shown ([`policy`]), what the bytes really are ([`sniff`], [`image`]), the slot a member is
//! granted and what a message carries ([`model`]), per-day quotas ([`quota`]) and the signed
//! links of the deployments that serve the bytes themselves ([`link`]). The stores are ports:
//! [`crate::store::AttachmentIndex`] (slots, claims, quotas) and [`crate::store::BlobStore`]
//! (the bytes); the flow is the service's (`service::attachments`).

pub mod image;
pub mod link;
pub mod model;
pub mod policy;
pub mod quota;
pub mod sniff;

pub use link::{Grant, LinkError, LinkSigner};
pub use model::{
    ABANDONED_AFTER_MS, AttachmentRef, AttachmentView, DOWNLOAD_LINK_MS, DownloadLink,
    MAX_ATTACHMENTS_PER_MESSAGE, Slot, UPLOAD_WINDOW_MS, UploadGrant, UploadRequest, UploadTarget,
    base32, claimant, is_attachment_id, new_attachment_id, object_key,
};
pub use policy::{AttachmentPolicy, Disposition, NameError, sanitize_name};
pub use quota::{QuotaExceeded, UploadQuota, Usage, day_of};
pub use sniff::{Sniffed, sniff};
