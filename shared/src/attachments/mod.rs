//! Attachments (issue 18): files shared in chat, uploaded straight to object storage. Pure, like
//! the rest of the core: what may be uploaded and how it is shown ([`policy`]), and what the
//! bytes really are ([`sniff`]); the deployments store the bytes.

pub mod policy;
pub mod sniff;

pub use policy::{AttachmentPolicy, Disposition, NameError, sanitize_name};
pub use sniff::{Sniffed, sniff};
