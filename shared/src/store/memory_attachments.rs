//! In-memory [`AttachmentIndex`] and [`BlobStore`]: the reference backends the conformance
//! suite and the service tests run, and the local server's `--store memory` mode. The blob
//! store serves signed links ([`LinkSigner`]) like the local server's file store, and takes
//! uploads through [`MemoryBlobs::upload`] with the same checks as its upload route.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Mutex, MutexGuard, PoisonError};

use super::attachments::{AttachmentIndex, BlobHead, LinkedBytes};
use super::{RoomRef, StoreError};
use crate::attachments::link::{Headers, UploadRefusal};
use crate::attachments::{LinkSigner, QuotaExceeded, Slot, UploadQuota, Usage, day_of};

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding the lock leaves plain maps behind; they stay usable.
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

#[derive(Default)]
struct Index {
    /// `tenant/room/id` → slot.
    slots: BTreeMap<String, Slot>,
    /// `(day, "u:{tenant}/{user}" | "t:{tenant}")` → usage.
    usage: HashMap<(u64, String), Usage>,
}

/// Slots, claims and quotas in memory.
#[derive(Default)]
pub struct MemoryAttachments {
    index: Mutex<Index>,
}

impl MemoryAttachments {
    /// An empty index.
    pub fn new() -> Self {
        Self::default()
    }
}

fn slot_key(room: &RoomRef, id: &str) -> String {
    format!("{}/{id}", room.key())
}

#[cfg_attr(not(target_arch = "wasm32"), async_trait::async_trait)]
#[cfg_attr(target_arch = "wasm32", async_trait::async_trait(?Send))]
impl AttachmentIndex for MemoryAttachments {
    async fn charge_upload(
        &self,
        tenant: &str,
        user: &str,
        bytes: u64,
        quota: &UploadQuota,
        now_ms: u64,
    ) -> Result<Result<(), QuotaExceeded>, StoreError> {
        let day = day_of(now_ms);
        let mut index = lock(&self.index);
        let user_key = (day, format!("u:{tenant}/{user}"));
        let tenant_key = (day, format!("t:{tenant}"));
        let used = |k| index.usage.get(k).copied().unwrap_or_default();
        match quota.charge(used(&user_key), used(&tenant_key), bytes) {
            Ok((user_usage, tenant_usage)) => {
                // Yesterday's counters are never read again.
                index.usage.retain(|(d, _), _| *d >= day);
                index.usage.insert(user_key, user_usage);
                index.usage.insert(tenant_key, tenant_usage);
                Ok(Ok(()))
            }
            Err(exceeded) => Ok(Err(exceeded)),
        }
    }

    async fn put_slot(&self, slot: &Slot) -> Result<(), StoreError> {
        lock(&self.index)
            .slots
            .insert(slot_key(&slot.room_ref(), &slot.id), slot.clone());
        Ok(())
    }

    async fn slot(&self, room: &RoomRef, id: &str) -> Result<Option<Slot>, StoreError> {
        Ok(lock(&self.index).slots.get(&slot_key(room, id)).cloned())
    }

    async fn claim_slot(
        &self,
        room: &RoomRef,
        id: &str,
        claimant: &str,
    ) -> Result<Slot, StoreError> {
        let mut index = lock(&self.index);
        let slot = index
            .slots
            .get_mut(&slot_key(room, id))
            .ok_or(StoreError::NotFound)?;
        match &slot.claimed_by {
            Some(holder) if holder != claimant => Err(StoreError::Conflict(format!(
                "{id} is attached to another message"
            ))),
            _ => {
                slot.claimed_by = Some(claimant.to_owned());
                Ok(slot.clone())
            }
        }
    }

    async fn release_slot(
        &self,
        room: &RoomRef,
        id: &str,
        claimant: &str,
    ) -> Result<(), StoreError> {
        if let Some(slot) = lock(&self.index).slots.get_mut(&slot_key(room, id))
            && slot.claimed_by.as_deref() == Some(claimant)
        {
            slot.claimed_by = None;
        }
        Ok(())
    }

    async fn remove_slot(&self, room: &RoomRef, id: &str) -> Result<(), StoreError> {
        lock(&self.index).slots.remove(&slot_key(room, id));
        Ok(())
    }

    async fn abandoned_slots(
        &self,
        granted_before_ms: u64,
        limit: usize,
    ) -> Result<Vec<Slot>, StoreError> {
        let index = lock(&self.index);
        let mut abandoned: Vec<Slot> = index
            .slots
            .values()
            .filter(|s| s.claimed_by.is_none() && s.created_at_ms < granted_before_ms)
            .cloned()
            .collect();
        abandoned.sort_by_key(|s| s.created_at_ms);
        abandoned.truncate(limit);
        Ok(abandoned)
    }
}

/// Attachment bytes in memory, behind signed links.
pub struct MemoryBlobs {
    signer: LinkSigner,
    objects: Mutex<HashMap<String, Vec<u8>>>,
}

impl MemoryBlobs {
    /// An empty store whose links `signer` signs.
    pub fn new(signer: LinkSigner) -> Self {
        Self {
            signer,
            objects: Mutex::new(HashMap::new()),
        }
    }

    /// `PUT {upload link}` with `body`, as the local server's upload route takes it: the link
    /// must be valid and the body exactly the slot's size.
    pub fn upload(&self, url: &str, body: &[u8], now_ms: u64) -> Result<(), UploadRefusal> {
        let token = url
            .strip_prefix(crate::attachments::link::UPLOAD_PATH)
            .unwrap_or(url);
        let length = u64::try_from(body.len()).unwrap_or(u64::MAX);
        let admitted = self.signer.admit_upload(token, Some(length), now_ms)?;
        lock(&self.objects).insert(admitted.key, body.to_vec());
        Ok(())
    }

    /// `GET {download link}`: the bytes and the headers they are served with.
    pub fn download(&self, url: &str, now_ms: u64) -> Option<(Vec<u8>, Headers)> {
        let token = url
            .strip_prefix(crate::attachments::link::DOWNLOAD_PATH)
            .unwrap_or(url);
        let (key, headers) = self.signer.admit_download(token, now_ms).ok()?;
        let bytes = lock(&self.objects).get(&key)?.clone();
        Some((bytes, headers))
    }
}

#[cfg_attr(not(target_arch = "wasm32"), async_trait::async_trait)]
#[cfg_attr(target_arch = "wasm32", async_trait::async_trait(?Send))]
impl LinkedBytes for MemoryBlobs {
    fn signer(&self) -> &LinkSigner {
        &self.signer
    }

    async fn head(&self, key: &str, max_head: usize) -> Result<Option<BlobHead>, StoreError> {
        Ok(lock(&self.objects).get(key).map(|bytes| BlobHead {
            size: u64::try_from(bytes.len()).unwrap_or(u64::MAX),
            head: bytes[..bytes.len().min(max_head)].to_vec(),
        }))
    }

    async fn delete(&self, key: &str) -> Result<(), StoreError> {
        lock(&self.objects).remove(key);
        Ok(())
    }
}
