//! Attachments: `upload` grants a slot (membership, size, type, name, quotas), a message's
//! `attachments` are checked against the bytes and claimed for it, members get short-lived
//! download links, a deleted message takes its files with it, and uploads never attached are
//! swept after a day.

use std::sync::Arc;

use super::events::Entropy;
use super::{ChatService, unavailable};
use crate::attachments::{
    ABANDONED_AFTER_MS, AttachmentPolicy, AttachmentRef, AttachmentView, DOWNLOAD_LINK_MS,
    DownloadLink, QuotaExceeded, Slot, UploadGrant, UploadQuota, UploadRequest, image,
    is_attachment_id, new_attachment_id, sanitize_name, sniff,
};
use crate::auth::{Identity, Role};
use crate::protocol::{ErrorCode, Rejection, validate_name};
use crate::store::{AttachmentIndex, BlobStore, RoomRef, StoreError};

/// What the service needs for attachments.
pub struct Attachments {
    /// Slots, claims and quotas.
    pub index: Arc<dyn AttachmentIndex>,
    /// The bytes.
    pub blobs: Arc<dyn BlobStore>,
    /// What may be uploaded.
    pub policy: AttachmentPolicy,
    /// Per-day quotas.
    pub quota: UploadQuota,
    /// Randomness for attachment ids.
    pub entropy: Entropy,
}

fn disabled() -> Rejection {
    Rejection::new(
        ErrorCode::NotFound,
        "attachments are not enabled on this deployment",
    )
}

impl ChatService {
    /// Enables attachments.
    #[must_use]
    pub fn with_attachments(mut self, attachments: Attachments) -> Self {
        self.attachments = Some(attachments);
        self
    }

    /// Grants `user` of `r` an upload slot for the file `request` describes: `TOO_LARGE` over
    /// the size limit, `INVALID` for an empty file, a type not allowed or a name with nothing
    /// left once made safe, `LIMIT_EXCEEDED` past a quota. The caller checked membership.
    pub(super) async fn grant_upload(
        &self,
        r: &RoomRef,
        user: &str,
        request: UploadRequest,
        now_ms: u64,
    ) -> Result<UploadGrant, Rejection> {
        let a = self.attachments.as_ref().ok_or_else(disabled)?;
        if request.size == 0 {
            return Err(Rejection::new(ErrorCode::Invalid, "the file is empty"));
        }
        if request.size > a.policy.max_bytes {
            return Err(Rejection::new(
                ErrorCode::TooLarge,
                format!(
                    "the file is {} bytes; the limit is {}",
                    request.size, a.policy.max_bytes
                ),
            ));
        }
        let content_type = a
            .policy
            .allowed_type(&request.content_type)
            .ok_or_else(|| {
                let shown: String = request.content_type.chars().take(64).collect();
                Rejection::new(
                    ErrorCode::Invalid,
                    format!("files of type `{shown}` are not allowed"),
                )
            })?;
        let name = sanitize_name(&request.name)
            .map_err(|e| Rejection::new(ErrorCode::Invalid, e.to_string()))?;
        match a
            .index
            .charge_upload(&r.tenant, user, request.size, &a.quota, now_ms)
            .await
            .map_err(unavailable)?
        {
            Ok(()) => {}
            Err(QuotaExceeded::User) => {
                return Err(Rejection::new(
                    ErrorCode::LimitExceeded,
                    "upload quota reached: too many files or bytes today; try again tomorrow",
                ));
            }
            Err(QuotaExceeded::Tenant) => {
                return Err(Rejection::new(
                    ErrorCode::LimitExceeded,
                    "the organisation's upload quota for today is reached",
                ));
            }
        }
        let slot = Slot {
            id: new_attachment_id(&*a.entropy),
            tenant: r.tenant.clone(),
            room: r.room.clone(),
            uploader: user.to_owned(),
            name,
            size: request.size,
            content_type,
            created_at_ms: now_ms,
            claimed_by: None,
        };
        a.index.put_slot(&slot).await.map_err(unavailable)?;
        let upload = a
            .blobs
            .upload_target(&slot, now_ms)
            .await
            .map_err(unavailable)?;
        Ok(UploadGrant {
            expires_at: slot.upload_deadline_ms(),
            id: slot.id,
            room: slot.room,
            name: slot.name,
            upload,
        })
    }

    /// `POST /rooms/{room}/uploads`: a slot for a room the token grants.
    pub async fn upload_slot(
        &self,
        identity: &Identity,
        room: &str,
        request: UploadRequest,
        now_ms: u64,
    ) -> Result<UploadGrant, Rejection> {
        let r = self.granted_room(identity, room)?;
        self.grant_upload(&r, &identity.user, request, now_ms).await
    }

    /// The attachments a message names, checked and claimed for it (`claim`, its
    /// [`crate::attachments::claimant`]): each must be a slot of this room granted to `uploader`, uploaded with
    /// exactly the declared size, its bytes sniffing as the declared type, and not carried by
    /// another message. On any refusal the claims this call made are undone.
    pub(super) async fn attach(
        &self,
        r: &RoomRef,
        uploader: &str,
        claim: &str,
        refs: &[AttachmentRef],
        now_ms: u64,
    ) -> Result<Vec<AttachmentView>, Rejection> {
        if refs.is_empty() {
            return Ok(Vec::new());
        }
        let a = self.attachments.as_ref().ok_or_else(disabled)?;
        let mut views = Vec::with_capacity(refs.len());
        let mut claimed = Vec::new();
        for reference in refs {
            match self
                .attach_one(a, r, uploader, claim, &reference.id, now_ms)
                .await
            {
                Ok((view, newly_claimed)) => {
                    if newly_claimed {
                        claimed.push(view.id.clone());
                    }
                    views.push(view);
                }
                Err(rejection) => {
                    for id in &claimed {
                        if let Err(e) = a.index.release_slot(r, id, claim).await {
                            tracing::warn!(attachment = %id, error = %e, "claim not released");
                        }
                    }
                    return Err(rejection);
                }
            }
        }
        Ok(views)
    }

    /// Checks and claims one attachment; whether this call made the claim.
    async fn attach_one(
        &self,
        a: &Attachments,
        r: &RoomRef,
        uploader: &str,
        claim: &str,
        id: &str,
        now_ms: u64,
    ) -> Result<(AttachmentView, bool), Rejection> {
        let not_found = || {
            Rejection::new(
                ErrorCode::NotFound,
                format!("no attachment {id} in this room"),
            )
        };
        if !is_attachment_id(id) {
            return Err(not_found());
        }
        let slot = a
            .index
            .slot(r, id)
            .await
            .map_err(unavailable)?
            .ok_or_else(not_found)?;
        if slot.uploader != uploader {
            return Err(Rejection::new(
                ErrorCode::Forbidden,
                format!("attachment {id} was granted to another user"),
            ));
        }
        let resent = slot.claimed_by.as_deref() == Some(claim);
        if slot.claimed_by.is_some() && !resent {
            return Err(Rejection::new(
                ErrorCode::Conflict,
                format!("attachment {id} is already on another message"),
            ));
        }
        if slot.is_abandoned(now_ms) {
            return Err(Rejection::new(
                ErrorCode::NotFound,
                format!("attachment {id} expired unused"),
            ));
        }
        let key = slot.object_key();
        let stored = a
            .blobs
            .head(&key, image::HEADER_BYTES)
            .await
            .map_err(unavailable)?
            .ok_or_else(|| {
                Rejection::new(
                    ErrorCode::Invalid,
                    format!("attachment {id} has not been uploaded"),
                )
            })?;
        if stored.size != slot.size {
            return Err(Rejection::new(
                ErrorCode::Invalid,
                format!(
                    "attachment {id} is {} bytes, not the {} announced",
                    stored.size, slot.size
                ),
            ));
        }
        if !sniff(&stored.head).matches(&slot.content_type) {
            return Err(Rejection::new(
                ErrorCode::Invalid,
                format!("attachment {id}'s bytes are not {}", slot.content_type),
            ));
        }
        let slot = match a.index.claim_slot(r, id, claim).await {
            Ok(slot) => slot,
            Err(StoreError::Conflict(_)) => {
                return Err(Rejection::new(
                    ErrorCode::Conflict,
                    format!("attachment {id} is already on another message"),
                ));
            }
            Err(e) => return Err(unavailable(e)),
        };
        if let Err(e) = a.blobs.mark_attached(&key).await {
            if !resent {
                let _ = a.index.release_slot(r, id, claim).await;
            }
            return Err(unavailable(e));
        }
        let size = image::dimensions(&slot.content_type, &stored.head);
        Ok((
            AttachmentView {
                id: slot.id,
                name: slot.name,
                size: slot.size,
                content_type: slot.content_type,
                width: size.map(|(w, _)| w),
                height: size.map(|(_, h)| h),
            },
            !resent,
        ))
    }

    /// Deletes the bytes and slots of a deleted message's attachments. Failures are logged:
    /// the message is deleted either way.
    pub(super) async fn discard_attachments(&self, r: &RoomRef, attachments: &[AttachmentView]) {
        let Some(a) = self.attachments.as_ref() else {
            return;
        };
        for view in attachments {
            let key = crate::attachments::object_key(&r.tenant, &r.room, &view.id);
            if let Err(e) = a.blobs.delete(&key).await {
                tracing::warn!(%key, error = %e, "attachment bytes not deleted");
                continue;
            }
            if let Err(e) = a.index.remove_slot(r, &view.id).await {
                tracing::warn!(%key, error = %e, "attachment slot not removed");
            }
        }
    }

    /// `GET /rooms/{room}/attachments/{id}`: a short-lived link for a member of the room (or
    /// a service), to an attachment a message carries or that they uploaded themselves.
    pub async fn download_link(
        &self,
        identity: &Identity,
        room: &str,
        id: &str,
        now_ms: u64,
    ) -> Result<DownloadLink, Rejection> {
        let r = self.granted_room(identity, room)?;
        let a = self.attachments.as_ref().ok_or_else(disabled)?;
        let not_found = || Rejection::new(ErrorCode::NotFound, format!("no attachment {id}"));
        if !is_attachment_id(id) {
            return Err(not_found());
        }
        let slot = a
            .index
            .slot(&r, id)
            .await
            .map_err(unavailable)?
            .filter(|s| s.claimed_by.is_some() || s.uploader == identity.user)
            .ok_or_else(not_found)?;
        let expires_at = now_ms.saturating_add(DOWNLOAD_LINK_MS);
        let url = a
            .blobs
            .download_url(
                &slot.object_key(),
                &slot.name,
                &slot.content_type,
                now_ms,
                expires_at,
            )
            .await
            .map_err(unavailable)?;
        Ok(DownloadLink {
            id: slot.id,
            inline: crate::attachments::Disposition::of(&slot.content_type)
                == crate::attachments::Disposition::Inline,
            url,
            expires_at,
        })
    }

    /// Removes up to `limit` uploads never attached a day after their slot was granted, with
    /// their bytes; returns how many. Deployments whose storage expires them itself (S3's
    /// lifecycle rule, DynamoDB's TTL) need not call it.
    pub async fn sweep_abandoned_uploads(&self, now_ms: u64, limit: usize) -> usize {
        let Some(a) = self.attachments.as_ref() else {
            return 0;
        };
        let before = now_ms.saturating_sub(ABANDONED_AFTER_MS);
        let slots = match a
            .index
            .abandoned_slots(before.saturating_add(1), limit)
            .await
        {
            Ok(slots) => slots,
            Err(e) => {
                tracing::warn!(error = %e, "abandoned uploads not listed");
                return 0;
            }
        };
        let mut removed = 0;
        for slot in slots {
            let key = slot.object_key();
            if let Err(e) = a.blobs.delete(&key).await {
                tracing::warn!(%key, error = %e, "abandoned upload not deleted");
                continue;
            }
            match a.index.remove_slot(&slot.room_ref(), &slot.id).await {
                Ok(()) => removed += 1,
                Err(e) => tracing::warn!(%key, error = %e, "abandoned slot not removed"),
            }
        }
        removed
    }

    /// The room `identity` may use over HTTP: a valid name the token grants (any room of the
    /// tenant for a service).
    pub(super) fn granted_room(
        &self,
        identity: &Identity,
        room: &str,
    ) -> Result<RoomRef, Rejection> {
        validate_name("room", room)?;
        if !(identity.role == Role::Service || identity.may_join(room)) {
            return Err(Rejection::new(
                ErrorCode::Forbidden,
                format!("the token does not grant room `{room}`"),
            ));
        }
        Ok(RoomRef::new(&identity.tenant, room))
    }
}
