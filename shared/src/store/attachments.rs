//! The ports of attachments: [`AttachmentIndex`] (upload slots, the claim of a message on
//! them, per-day quotas), kept by each deployment's store next to its history, and
//! [`BlobStore`] (the bytes: S3, R2, files under the data directory), which only ever signs
//! transfers, answers what is stored and deletes; bytes never pass through the service except
//! the first bytes it sniffs.

use super::{RoomRef, StoreError};
use crate::MaybeSendSync;
use crate::attachments::{LinkSigner, QuotaExceeded, Slot, UploadQuota, UploadTarget};

/// Upload slots, claims and quotas. Every backend runs the same conformance suite
/// (`roomcast-testkit`'s `attachment_conformance`).
#[cfg_attr(not(target_arch = "wasm32"), async_trait::async_trait)]
#[cfg_attr(target_arch = "wasm32", async_trait::async_trait(?Send))]
pub trait AttachmentIndex: MaybeSendSync {
    /// Counts one slot of `bytes` against `user`'s and `tenant`'s quotas for the UTC day of
    /// `now_ms` ([`crate::attachments::day_of`]), both or neither, by
    /// [`UploadQuota::charge`]; `Ok(Err(_))` names the quota it would exceed.
    async fn charge_upload(
        &self,
        tenant: &str,
        user: &str,
        bytes: u64,
        quota: &UploadQuota,
        now_ms: u64,
    ) -> Result<Result<(), QuotaExceeded>, StoreError>;
    /// Stores a new slot (ids are random; one never granted twice).
    async fn put_slot(&self, slot: &Slot) -> Result<(), StoreError>;
    /// The slot `id` of `room`, if there is one (another room's or tenant's is `None`).
    async fn slot(&self, room: &RoomRef, id: &str) -> Result<Option<Slot>, StoreError>;
    /// Claims the slot for the message `claimant` ([`crate::attachments::claimant`]):
    /// succeeds when it is unclaimed or already claimed by `claimant` (a resent message),
    /// `Conflict` when another message has it, `NotFound` when there is no such slot. Two
    /// messages claiming at once cannot both win.
    async fn claim_slot(
        &self,
        room: &RoomRef,
        id: &str,
        claimant: &str,
    ) -> Result<Slot, StoreError>;
    /// Undoes `claimant`'s claim (its message was not stored after all); nothing when another
    /// holds it or there is none.
    async fn release_slot(
        &self,
        room: &RoomRef,
        id: &str,
        claimant: &str,
    ) -> Result<(), StoreError>;
    /// Forgets the slot (its message was deleted, or it was abandoned).
    async fn remove_slot(&self, room: &RoomRef, id: &str) -> Result<(), StoreError>;
    /// Up to `limit` unclaimed slots granted before `granted_before_ms`, oldest first: the
    /// sweep of abandoned uploads. A backend whose storage expires them itself (DynamoDB's
    /// TTL next to the bucket's lifecycle rule) answers none.
    async fn abandoned_slots(
        &self,
        granted_before_ms: u64,
        limit: usize,
    ) -> Result<Vec<Slot>, StoreError>;
}

/// What a [`BlobStore`] holds at a key: the size and the first bytes asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlobHead {
    /// Stored size, bytes.
    pub size: u64,
    /// Up to the bytes asked for, from the start.
    pub head: Vec<u8>,
}

/// The bytes of attachments.
#[cfg_attr(not(target_arch = "wasm32"), async_trait::async_trait)]
#[cfg_attr(target_arch = "wasm32", async_trait::async_trait(?Send))]
pub trait BlobStore: MaybeSendSync {
    /// Where and how the client uploads `slot`'s bytes: exactly its size, of its type, to its
    /// key, until its upload deadline (`now_ms` is when it is asked).
    async fn upload_target(&self, slot: &Slot, now_ms: u64) -> Result<UploadTarget, StoreError>;
    /// The size and first `max_head` bytes of the object at `key`; `None` when nothing was
    /// uploaded there.
    async fn head(&self, key: &str, max_head: usize) -> Result<Option<BlobHead>, StoreError>;
    /// A link serving `key` as `name` of `content_type` ([`crate::attachments::link::download_headers`]'s
    /// rules) until `expires_at_ms`.
    async fn download_url(
        &self,
        key: &str,
        name: &str,
        content_type: &str,
        now_ms: u64,
        expires_at_ms: u64,
    ) -> Result<String, StoreError>;
    /// Marks the object as carried by a message, where the storage expires unmarked uploads
    /// itself (S3 retags it so the abandoned-upload lifecycle rule spares it).
    async fn mark_attached(&self, key: &str) -> Result<(), StoreError>;
    /// Deletes the object (nothing when there is none).
    async fn delete(&self, key: &str) -> Result<(), StoreError>;
}

/// The bytes of a deployment that serves them itself (the local server's files, the edge's R2,
/// memory), behind links its [`LinkSigner`] signs: every such store is a [`BlobStore`] whose
/// transfers are the signed routes (`PUT /uploads/{token}`, `GET /files/{token}`) and whose
/// uploads never expire on their own (the deployment sweeps abandoned ones).
#[cfg_attr(not(target_arch = "wasm32"), async_trait::async_trait)]
#[cfg_attr(target_arch = "wasm32", async_trait::async_trait(?Send))]
pub trait LinkedBytes: MaybeSendSync {
    /// The signer of its links.
    fn signer(&self) -> &LinkSigner;
    /// [`BlobStore::head`].
    async fn head(&self, key: &str, max_head: usize) -> Result<Option<BlobHead>, StoreError>;
    /// [`BlobStore::delete`].
    async fn delete(&self, key: &str) -> Result<(), StoreError>;
}

#[cfg_attr(not(target_arch = "wasm32"), async_trait::async_trait)]
#[cfg_attr(target_arch = "wasm32", async_trait::async_trait(?Send))]
impl<T: LinkedBytes> BlobStore for T {
    async fn upload_target(&self, slot: &Slot, _now_ms: u64) -> Result<UploadTarget, StoreError> {
        Ok(self.signer().upload_target(slot))
    }

    async fn head(&self, key: &str, max_head: usize) -> Result<Option<BlobHead>, StoreError> {
        LinkedBytes::head(self, key, max_head).await
    }

    async fn download_url(
        &self,
        key: &str,
        name: &str,
        content_type: &str,
        _now_ms: u64,
        expires_at_ms: u64,
    ) -> Result<String, StoreError> {
        Ok(self
            .signer()
            .download_url(key, name, content_type, expires_at_ms))
    }

    async fn mark_attached(&self, _key: &str) -> Result<(), StoreError> {
        // Nothing expires on its own here: the deployment sweeps abandoned uploads.
        Ok(())
    }

    async fn delete(&self, key: &str) -> Result<(), StoreError> {
        LinkedBytes::delete(self, key).await
    }
}
