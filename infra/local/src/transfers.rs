//! The routes behind signed attachment links, which the core leaves to the deployment because
//! they move bytes ([`roomcast_core::http::BlobRoute`]): `PUT /uploads/{token}` streams a body
//! of exactly the slot's size into the [`FileBlobs`], `GET /files/{token}` streams a file back
//! with the headers the link sets. The token is the whole authorization (no session, no
//! cookie), so any origin may use them: their CORS is the whole API's ([`crate::http::cors`]).

use std::net::SocketAddr;
use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::extract::{ConnectInfo, Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use futures::Stream;
use roomcast_core::http::HttpReply;
use roomcast_core::protocol::{ErrorCode, Rejection};
use roomcast_core::store::LinkedBytes;
use tokio::io::AsyncReadExt;

use crate::app::{App, now_ms};
use crate::blobs::{FileBlobs, UploadError};
use crate::client_ip::client_ip;
use crate::http::{over_rate, reply};

/// Bytes read from a file per chunk of a download.
const DOWNLOAD_CHUNK: usize = 64 * 1024;

/// `PUT /uploads/{token}`: 204 once the bytes are stored, or `{code, message}` with 403 for a
/// bad or expired link, 413 for a body longer than the slot (announced or sent), 400 for a
/// shorter one, 409 when the slot's bytes are there already.
pub(crate) async fn upload(
    State(app): State<Arc<App>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Path(token): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let now = now_ms();
    match over_rate(
        &app,
        client_ip(peer.ip(), &headers, &app.config.trusted_proxies),
        now,
    ) {
        Some(refused) => refused,
        None => match &app.blobs {
            None => not_enabled(),
            Some(blobs) => store_upload(blobs, &token, &headers, body, now).await,
        },
    }
}

async fn store_upload(
    blobs: &FileBlobs,
    token: &str,
    headers: &HeaderMap,
    body: Body,
    now: u64,
) -> Response {
    let announced = match headers.get(header::CONTENT_LENGTH) {
        None => None,
        Some(value) => match value.to_str().ok().and_then(|v| v.parse().ok()) {
            Some(length) => Some(length),
            None => return error(ErrorCode::Invalid, "Content-Length is not a number"),
        },
    };
    let admitted = match blobs.signer().admit_upload(token, announced, now) {
        Ok(admitted) => admitted,
        Err(refusal) => {
            return reply(HttpReply::error(
                refusal.status(),
                refusal.code(),
                &refusal.to_string(),
            ));
        }
    };
    match blobs
        .store(&admitted.key, admitted.size, body.into_data_stream())
        .await
    {
        Ok(()) => StatusCode::NO_CONTENT.into_response(),
        Err(e) => {
            let code = match &e {
                UploadError::TooLong(_) => ErrorCode::TooLarge,
                UploadError::TooShort { .. } | UploadError::Body(_) => ErrorCode::Invalid,
                UploadError::Exists => ErrorCode::Conflict,
                UploadError::Io(io) => {
                    tracing::error!(key = %admitted.key, error = %io, "upload not stored");
                    ErrorCode::Unavailable
                }
            };
            error(code, e.to_string())
        }
    }
}

/// `GET /files/{token}`: the file with the link's headers; 403 for a bad or expired link, 404
/// when the file is gone (its message was deleted).
pub(crate) async fn download(
    State(app): State<Arc<App>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Path(token): Path<String>,
    headers: HeaderMap,
) -> Response {
    let now = now_ms();
    match over_rate(
        &app,
        client_ip(peer.ip(), &headers, &app.config.trusted_proxies),
        now,
    ) {
        Some(refused) => refused,
        None => match &app.blobs {
            None => not_enabled(),
            Some(blobs) => serve_file(blobs, &token, now).await,
        },
    }
}

async fn serve_file(blobs: &FileBlobs, token: &str, now: u64) -> Response {
    let (key, link_headers) = match blobs.signer().admit_download(token, now) {
        Ok(admitted) => admitted,
        Err(e) => return error(ErrorCode::Forbidden, e.to_string()),
    };
    let (file, size) = match blobs.open_object(&key).await {
        Ok(Some(found)) => found,
        Ok(None) => return error(ErrorCode::NotFound, "the file is gone"),
        Err(e) => {
            tracing::error!(%key, error = %e, "download not served");
            return error(ErrorCode::Unavailable, "the file cannot be read now");
        }
    };
    let mut response = Body::from_stream(file_chunks(file)).into_response();
    let out = response.headers_mut();
    for (name, value) in link_headers {
        // The link's headers are ASCII by construction (the name is percent-encoded).
        if let Ok(value) = HeaderValue::from_str(&value) {
            out.insert(name, value);
        }
    }
    out.insert(header::CONTENT_LENGTH, HeaderValue::from(size));
    response
}

/// The file as a stream of chunks, read as the client takes them.
fn file_chunks(file: tokio::fs::File) -> impl Stream<Item = std::io::Result<Bytes>> {
    futures::stream::unfold(Some(file), |file| async move {
        let mut file = file?;
        let mut chunk = Vec::with_capacity(DOWNLOAD_CHUNK);
        match (&mut file)
            .take(DOWNLOAD_CHUNK as u64)
            .read_to_end(&mut chunk)
            .await
        {
            Ok(0) => None,
            Ok(_) => Some((Ok(Bytes::from(chunk)), Some(file))),
            // The error ends the body (the client sees a cut-off response); nothing follows.
            Err(e) => Some((Err(e), None)),
        }
    })
}

fn not_enabled() -> Response {
    error(
        ErrorCode::NotFound,
        "attachments are not enabled on this server",
    )
}

fn error(code: ErrorCode, message: impl Into<String>) -> Response {
    reply(HttpReply::rejection(Rejection::new(code, message)))
}
