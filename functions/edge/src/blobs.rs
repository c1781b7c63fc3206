//! Attachment bytes in R2 (the `ATTACHMENTS` bucket binding): [`R2Blobs`], the core's
//! [`BlobStore`], used by the `ChatRoom` objects, and the Worker's two routes behind the core's
//! signed links ([`LinkSigner`]), which need no object and no store lookup:
//!
//! - `PUT /uploads/{token}`: the link admitted (a put link, not expired, a `Content-Length`
//!   equal to the slot's size), then the body streamed into R2 through a stream of exactly the
//!   slot's size, counted on the way: one byte more and the upload stops (413), fewer and it
//!   fails (400); R2 stores nothing from a failed put. 204 when stored.
//!   409 when the slot's bytes are there already (they are checked when a message names them,
//!   so they are never replaced).
//! - `GET /files/{token}`: the link admitted, the object streamed from R2 with the headers the
//!   link says (`admit_download`): 403 for a bad or expired link, 404 once it is gone.
//!
//! The token is the whole authorization (no session, no cookie), so any origin may use them:
//! the Worker answers their CORS preflight and adds the CORS headers as for the whole HTTP API
//! ([`roomcast_core::http::cors`]).

use std::cell::Cell;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll};

use roomcast_core::attachments::LinkSigner;
use roomcast_core::attachments::link::UploadRefusal;
use roomcast_core::http::{BlobRoute, HttpReply};
use roomcast_core::store::{BlobHead, LinkedBytes, StoreError};
use worker::{
    Bucket, ByteStream, Env, FixedLengthStream, Headers, HttpMetadata, Method, Range, Request,
    Response,
};

use crate::config::EdgeConfig;
use crate::now_ms;
use crate::room::json_reply;

/// The R2 bucket binding (wrangler.toml).
pub const BUCKET_BINDING: &str = "ATTACHMENTS";

/// The attachments bucket of `env`.
pub fn bucket(env: &Env) -> worker::Result<Bucket> {
    env.bucket(BUCKET_BINDING)
}

fn r2_error(what: &'static str) -> impl Fn(worker::Error) -> StoreError {
    move |e| StoreError::Other(format!("r2 {what}: {e}"))
}

/// Attachment bytes in R2, behind signed links the Worker serves.
pub struct R2Blobs {
    bucket: Bucket,
    signer: LinkSigner,
}

impl R2Blobs {
    /// The store over `bucket`, its links signed by `signer`.
    pub fn new(bucket: Bucket, signer: LinkSigner) -> Self {
        Self { bucket, signer }
    }
}

#[async_trait::async_trait(?Send)]
impl LinkedBytes for R2Blobs {
    fn signer(&self) -> &LinkSigner {
        &self.signer
    }

    async fn head(&self, key: &str, max_head: usize) -> Result<Option<BlobHead>, StoreError> {
        let Some(object) = self
            .bucket
            .get(key)
            .range(Range::Prefix {
                length: max_head as u64,
            })
            .execute()
            .await
            .map_err(r2_error("get"))?
        else {
            return Ok(None);
        };
        // The object's whole size, whatever range was read.
        let size = object.size();
        let head = match object.body() {
            Some(body) => body.bytes().await.map_err(r2_error("read"))?,
            None => Vec::new(),
        };
        Ok(Some(BlobHead {
            size,
            head: head.into_iter().take(max_head).collect(),
        }))
    }

    async fn delete(&self, key: &str) -> Result<(), StoreError> {
        self.bucket.delete(key).await.map_err(r2_error("delete"))
    }
}

/// `PUT /uploads/{token}` and `GET /files/{token}`, answered by the Worker.
pub async fn serve(
    req: Request,
    env: &Env,
    config: &EdgeConfig,
    route: BlobRoute,
) -> worker::Result<Response> {
    let signer = match config.settings.attachments.link_signer() {
        Ok(signer) => signer,
        Err(e) => {
            tracing::error!(error = %e, "attachment links cannot be checked");
            return json_reply(&HttpReply::error(
                500,
                "INTERNAL",
                "attachments are not configured",
            ));
        }
    };
    let bucket = bucket(env)?;
    match (route, req.method()) {
        (BlobRoute::Upload(token), Method::Put) => upload(req, &bucket, &signer, &token).await,
        (BlobRoute::Download(token), Method::Get) => download(&bucket, &signer, &token).await,
        (BlobRoute::Upload(_), _) => method_not_allowed("PUT"),
        (BlobRoute::Download(_), _) => method_not_allowed("GET"),
    }
}

fn method_not_allowed(allowed: &str) -> worker::Result<Response> {
    let mut response = json_reply(&HttpReply::error(
        405,
        "INVALID",
        &format!("method not allowed: use {allowed}"),
    ))?;
    response.headers_mut().set("allow", allowed)?;
    Ok(response)
}

fn refused(refusal: &UploadRefusal) -> worker::Result<Response> {
    json_reply(&HttpReply::error(
        refusal.status(),
        refusal.code(),
        &refusal.to_string(),
    ))
}

async fn upload(
    mut req: Request,
    bucket: &Bucket,
    signer: &LinkSigner,
    token: &str,
) -> worker::Result<Response> {
    let content_length = match req.headers().get("content-length")? {
        None => None,
        Some(n) => match n.trim().parse::<u64>() {
            Ok(n) => Some(n),
            Err(_) => {
                return json_reply(&HttpReply::error(
                    400,
                    "INVALID",
                    "Content-Length is not a number",
                ));
            }
        },
    };
    let admitted = match signer.admit_upload(token, content_length, now_ms()) {
        Ok(admitted) => admitted,
        Err(refusal) => return refused(&refusal),
    };
    if bucket.head(&admitted.key).await?.is_some() {
        return json_reply(&HttpReply::error(
            409,
            "CONFLICT",
            "the file was uploaded already",
        ));
    }
    let seen = Rc::new(Cell::new(0u64));
    // An empty body is a short one: the stream below ends at once.
    let body = req.stream().ok().map(Box::pin);
    let counted = Counted {
        inner: body,
        seen: seen.clone(),
        limit: admitted.size,
    };
    let stored = bucket
        .put(
            &admitted.key,
            FixedLengthStream::wrap(counted, admitted.size),
        )
        .http_metadata(HttpMetadata {
            content_type: Some(admitted.content_type.clone()),
            ..HttpMetadata::default()
        })
        .execute()
        .await;
    let announced = seen.get();
    match stored {
        Ok(_) if announced == admitted.size => Ok(Response::empty()?.with_status(204)),
        // A failed or short stream: R2 stored nothing.
        result => {
            if let Err(e) = result {
                tracing::debug!(error = %e, key = %admitted.key, bytes = announced, "upload not stored");
            }
            if announced != admitted.size {
                return refused(&UploadRefusal::WrongSize {
                    expected: admitted.size,
                    announced,
                });
            }
            json_reply(&HttpReply::error(
                503,
                "UNAVAILABLE",
                "the upload was not stored; try again",
            ))
        }
    }
}

/// The request body, counted, ending in an error one byte past `limit` (so no more is read).
struct Counted {
    inner: Option<Pin<Box<ByteStream>>>,
    seen: Rc<Cell<u64>>,
    limit: u64,
}

impl futures_core::Stream for Counted {
    type Item = worker::Result<Vec<u8>>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let Some(inner) = self.inner.as_mut() else {
            return Poll::Ready(None);
        };
        match inner.as_mut().poll_next(cx) {
            Poll::Ready(Some(Ok(chunk))) => {
                let seen = self.seen.get().saturating_add(chunk.len() as u64);
                self.seen.set(seen);
                if seen > self.limit {
                    self.inner = None;
                    return Poll::Ready(Some(Err(worker::Error::RustError(
                        "the body is larger than the slot".into(),
                    ))));
                }
                Poll::Ready(Some(Ok(chunk)))
            }
            other => other,
        }
    }
}

async fn download(bucket: &Bucket, signer: &LinkSigner, token: &str) -> worker::Result<Response> {
    let (key, served) = match signer.admit_download(token, now_ms()) {
        Ok(admitted) => admitted,
        Err(e) => return json_reply(&HttpReply::error(403, "FORBIDDEN", &e.to_string())),
    };
    let Some(body) = bucket.get(&key).execute().await?.and_then(|object| {
        let size = object.size();
        object.body().map(|body| (size, body.response_body()))
    }) else {
        return json_reply(&HttpReply::error(404, "NOT_FOUND", "the file is gone"));
    };
    let (size, stream) = body;
    let headers = Headers::new();
    for (name, value) in served {
        headers.set(name, &value)?;
    }
    headers.set("content-length", &size.to_string())?;
    Ok(Response::from_body(stream?)?.with_headers(headers))
}
