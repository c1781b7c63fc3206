//! [`S3Blobs`]: the [`BlobStore`] of attachments on one S3 bucket. The functions only sign:
//! browsers upload with a presigned POST and download with a presigned GET, so bytes never pass
//! through a function except the first bytes sniffed when a message attaches them.
//!
//! - **Upload**: an S3 POST policy (SigV4), which unlike a presigned PUT can bound the size:
//!   the exact key, `content-length-range` [size, size], the exact `Content-Type`, and a
//!   `tagging` field marking the object [`PENDING`], until the slot's upload deadline. The SDK
//!   has no POST presigner, so the policy is built here and signed with SigV4's signing key
//!   (aws-sigv4) from the function's own credentials.
//! - **Attach**: HeadObject (the size) and a ranged GetObject (the first bytes); then
//!   PutObjectTagging [`ATTACHED`], so the bucket's lifecycle rule, which expires objects still
//!   tagged [`PENDING`] a day after upload, spares it.
//! - **Download**: a presigned GetObject that overrides the response's `Content-Type`,
//!   `Content-Disposition` and `Cache-Control` with [`download_headers`] (octet-stream and
//!   `attachment` for anything not shown inline).
//! - **Delete**: DeleteObject.
//!
//! The endpoint comes from the SDK configuration (`AWS_ENDPOINT_URL_S3` for an emulator), and the
//! POST's URL from the SDK's own endpoint resolution (see [`S3Blobs::bucket_url`]).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_sdk_s3::Client;
use aws_sdk_s3::config::http::HttpResponse;
use aws_sdk_s3::config::{ProvideCredentials, SharedCredentialsProvider};
use aws_sdk_s3::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_s3::presigning::PresigningConfig;
use aws_sdk_s3::primitives::{DateTime, DateTimeFormat};
use aws_sdk_s3::types::{Tag, Tagging};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use roomcast_core::attachments::link::download_headers;
use roomcast_core::attachments::{Slot, UploadTarget};
use roomcast_core::store::{BlobHead, BlobStore, StoreError};
use serde_json::json;

/// The tag key that says whether an object is carried by a message.
pub const TAG_KEY: &str = "roomcast";
/// Its value from the upload on: the bucket's lifecycle rule expires such objects after a day.
pub const PENDING: &str = "pending";
/// Its value once a message carries the object.
pub const ATTACHED: &str = "attached";
/// The signing algorithm of the POST policy.
const ALGORITHM: &str = "AWS4-HMAC-SHA256";

/// The `tagging` form field of an upload: the object starts [`PENDING`].
pub fn pending_tagging() -> String {
    format!(
        "<Tagging><TagSet><Tag><Key>{TAG_KEY}</Key><Value>{PENDING}</Value></Tag></TagSet></Tagging>"
    )
}

/// Attachment bytes in one S3 bucket (see the module doc).
pub struct S3Blobs {
    client: Client,
    /// The credentials POST policies are signed with (the client's; its configuration does not
    /// hand them out).
    credentials: SharedCredentialsProvider,
    bucket: String,
}

/// An S3 error as a store error: throttling, 5xx, timeouts and unreachable endpoints are
/// `Unavailable` (the SDK has retried them); anything else is `Other`.
fn s3_error<E>(operation: &str, e: SdkError<E, HttpResponse>) -> StoreError
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
{
    const RETRYABLE: [&str; 4] = [
        "SlowDown",
        "RequestTimeout",
        "InternalError",
        "ServiceUnavailable",
    ];
    let server_side = e
        .raw_response()
        .is_some_and(|r| r.status().is_server_error());
    let retryable = server_side
        || matches!(e, SdkError::TimeoutError(_) | SdkError::DispatchFailure(_))
        || e.as_service_error()
            .and_then(ProvideErrorMetadata::code)
            .is_some_and(|code| RETRYABLE.contains(&code));
    let message = format!("S3 {operation}: {}", DisplayErrorContext(&e));
    if retryable {
        tracing::warn!(%message, "S3 unavailable");
        StoreError::Unavailable(message)
    } else {
        StoreError::Other(message)
    }
}

fn system_time(ms: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_millis(ms)
}

/// `2026-12-05T06:44:02Z` of `ms` (whole seconds).
fn iso8601(ms: u64) -> Result<String, StoreError> {
    let secs = i64::try_from(ms / 1000).unwrap_or(i64::MAX);
    DateTime::from_secs(secs)
        .fmt(DateTimeFormat::DateTime)
        .map_err(|e| StoreError::Other(format!("time {ms} out of range: {e}")))
}

impl S3Blobs {
    /// Attachments in `bucket` through `client` (built once per cold start), POST policies
    /// signed with `credentials` (the SDK configuration's, which the client was built from).
    pub fn new(
        client: Client,
        credentials: SharedCredentialsProvider,
        bucket: impl Into<String>,
    ) -> Self {
        Self {
            client,
            credentials,
            bucket: bucket.into(),
        }
    }

    /// The bucket's URL, where a POST upload goes: the URL the SDK resolves for `key` (virtual
    /// host or path style, endpoint overrides, FIPS and dual-stack settings included), without
    /// the key and the query. Presigning is local: no request is sent.
    async fn bucket_url(&self, key: &str) -> Result<String, StoreError> {
        let config = PresigningConfig::expires_in(Duration::from_secs(60))
            .map_err(|e| StoreError::Other(format!("presigning: {e}")))?;
        let presigned = self
            .client
            .head_object()
            .bucket(&self.bucket)
            .key(key)
            .presigned(config)
            .await
            .map_err(|e| s3_error("HeadObject presign", e))?;
        let unexpected =
            || StoreError::Other(format!("unexpected S3 URL for {key}: {}", presigned.uri()));
        let mut url = url::Url::parse(presigned.uri()).map_err(|_| unexpected())?;
        let segments: Vec<String> = url
            .path_segments()
            .ok_or_else(unexpected)?
            .map(str::to_owned)
            .collect();
        let keep = segments
            .len()
            .checked_sub(key.split('/').count())
            .ok_or_else(unexpected)?;
        url.set_path(&segments[..keep].join("/"));
        url.set_query(None);
        Ok(url.as_str().trim_end_matches('/').to_owned())
    }
}

#[async_trait::async_trait]
impl BlobStore for S3Blobs {
    async fn upload_target(&self, slot: &Slot, now_ms: u64) -> Result<UploadTarget, StoreError> {
        let key = slot.object_key();
        let url = self.bucket_url(&key).await?;
        let region = self
            .client
            .config()
            .region()
            .ok_or_else(|| StoreError::Other("the S3 client has no region".into()))?
            .to_string();
        let credentials = self
            .credentials
            .provide_credentials()
            .await
            .map_err(|e| StoreError::Unavailable(format!("credentials: {e}")))?;
        let amz_date = iso8601(now_ms)?.replace(['-', ':'], "");
        let date = amz_date.get(..8).unwrap_or_default();
        let credential = format!(
            "{}/{date}/{region}/s3/aws4_request",
            credentials.access_key_id()
        );
        let mut fields = vec![
            ("key".to_owned(), key.clone()),
            ("Content-Type".to_owned(), slot.content_type.clone()),
            ("tagging".to_owned(), pending_tagging()),
            ("x-amz-algorithm".to_owned(), ALGORITHM.to_owned()),
            ("x-amz-credential".to_owned(), credential),
            ("x-amz-date".to_owned(), amz_date),
        ];
        if let Some(token) = credentials.session_token() {
            fields.push(("x-amz-security-token".to_owned(), token.to_owned()));
        }
        let mut conditions = vec![
            json!({"bucket": self.bucket}),
            json!(["content-length-range", slot.size, slot.size]),
        ];
        conditions.extend(fields.iter().map(|(name, value)| json!({ name: value })));
        let policy = json!({
            "expiration": iso8601(slot.upload_deadline_ms())?,
            "conditions": conditions,
        });
        let policy = STANDARD.encode(policy.to_string());
        let signing_key = aws_sigv4::sign::v4::generate_signing_key(
            credentials.secret_access_key(),
            system_time(now_ms),
            &region,
            "s3",
        );
        let signature = aws_sigv4::sign::v4::calculate_signature(signing_key, policy.as_bytes());
        fields.push(("policy".to_owned(), policy));
        fields.push(("x-amz-signature".to_owned(), signature));
        Ok(UploadTarget {
            method: "POST".to_owned(),
            url,
            fields,
            headers: Vec::new(),
        })
    }

    async fn head(&self, key: &str, max_head: usize) -> Result<Option<BlobHead>, StoreError> {
        let size = match self
            .client
            .head_object()
            .bucket(&self.bucket)
            .key(key)
            .send()
            .await
        {
            Ok(out) => u64::try_from(out.content_length().unwrap_or(0)).unwrap_or(0),
            Err(e) if e.as_service_error().is_some_and(|e| e.is_not_found()) => return Ok(None),
            Err(e) => return Err(s3_error("HeadObject", e)),
        };
        if size == 0 || max_head == 0 {
            return Ok(Some(BlobHead {
                size,
                head: Vec::new(),
            }));
        }
        let read = self
            .client
            .get_object()
            .bucket(&self.bucket)
            .key(key)
            .range(format!("bytes=0-{}", max_head - 1))
            .send()
            .await;
        let body = match read {
            Ok(out) => out.body,
            Err(e) if e.as_service_error().is_some_and(|e| e.is_no_such_key()) => return Ok(None),
            Err(e) => return Err(s3_error("GetObject", e)),
        };
        let mut head = body
            .collect()
            .await
            .map_err(|e| StoreError::Unavailable(format!("S3 GetObject body: {e}")))?
            .to_vec();
        head.truncate(max_head);
        Ok(Some(BlobHead { size, head }))
    }

    async fn download_url(
        &self,
        key: &str,
        name: &str,
        content_type: &str,
        now_ms: u64,
        expires_at_ms: u64,
    ) -> Result<String, StoreError> {
        let config = PresigningConfig::builder()
            .start_time(system_time(now_ms))
            .expires_in(Duration::from_millis(
                expires_at_ms.saturating_sub(now_ms).max(1000),
            ))
            .build()
            .map_err(|e| StoreError::Other(format!("presigning: {e}")))?;
        let mut request = self.client.get_object().bucket(&self.bucket).key(key);
        for (header, value) in download_headers(name, content_type) {
            request = match header {
                "content-type" => request.response_content_type(value),
                "content-disposition" => request.response_content_disposition(value),
                "cache-control" => request.response_cache_control(value),
                // S3 cannot set the others on a response; the type and disposition are what
                // keep a browser from rendering the bytes.
                _ => request,
            };
        }
        let presigned = request
            .presigned(config)
            .await
            .map_err(|e| s3_error("GetObject presign", e))?;
        Ok(presigned.uri().to_owned())
    }

    async fn mark_attached(&self, key: &str) -> Result<(), StoreError> {
        let tag = Tag::builder()
            .key(TAG_KEY)
            .value(ATTACHED)
            .build()
            .map_err(|e| StoreError::Other(format!("tag: {e}")))?;
        let tagging = Tagging::builder()
            .tag_set(tag)
            .build()
            .map_err(|e| StoreError::Other(format!("tagging: {e}")))?;
        self.client
            .put_object_tagging()
            .bucket(&self.bucket)
            .key(key)
            .tagging(tagging)
            .send()
            .await
            .map_err(|e| s3_error("PutObjectTagging", e))?;
        Ok(())
    }

    async fn delete(&self, key: &str) -> Result<(), StoreError> {
        self.client
            .delete_object()
            .bucket(&self.bucket)
            .key(key)
            .send()
            .await
            .map_err(|e| s3_error("DeleteObject", e))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_are_whole_seconds_in_utc() {
        assert_eq!(iso8601(1_733_382_242_999).unwrap(), "2024-12-05T07:04:02Z");
    }
}
