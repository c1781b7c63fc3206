//! The API Gateway Management API (`@connections`) status codes.

use anyhow::{Context, ensure};
use roomcast_core::limits::MAX_WS_MESSAGE_BYTES;

use crate::deployment::Deployment;
use crate::http::Request;
use crate::scope::{Failures, unique};

fn base(d: &dyn Deployment) -> anyhow::Result<String> {
    d.management_url()
        .context("the deployment reports management_api but gives no management_url")
}

/// A connection id no server issued (URL-encoded like real ids, which end in `=`).
fn unknown_id() -> String {
    format!("{}%3D", unique("nosuchconn"))
}

/// `POST`, `GET` and `DELETE /@connections/{id}` for an unknown id answer 410 Gone.
pub async fn management_unknown_connection_gone_410(d: &dyn Deployment) -> anyhow::Result<()> {
    let base = base(d)?;
    let path = format!("/@connections/{}", unknown_id());
    let mut f = Failures::default();
    for method in ["POST", "GET", "DELETE"] {
        let mut request = Request::new(method, &path);
        if method == "POST" {
            request = request.body(b"{\"type\":\"hello\"}".to_vec());
        }
        let r = request.send(&base).await?;
        f.check(
            method,
            if r.status == 410 {
                Ok(())
            } else {
                Err(anyhow::anyhow!(
                    "expected 410, got {} `{}`",
                    r.status,
                    r.text()
                ))
            },
        );
    }
    f.finish()
}

/// The public endpoint serves no `@connections`: a client cannot post a frame to another
/// connection, or close it, by knowing its id.
pub async fn management_api_is_not_public(d: &dyn Deployment) -> anyhow::Result<()> {
    let public = d
        .http_url()
        .context("the deployment reports management_api but gives no http_url")?;
    let mut f = Failures::default();
    for path in [
        format!("/@connections/{}", unknown_id()),
        format!("/prod/@connections/{}", unknown_id()),
    ] {
        for method in ["POST", "GET", "DELETE"] {
            let r = Request::new(method, &path).send(&public).await?;
            f.check(
                &format!("{method} {path}"),
                if r.status == 404 {
                    Ok(())
                } else {
                    Err(anyhow::anyhow!(
                        "expected 404, got {} `{}`",
                        r.status,
                        r.text()
                    ))
                },
            );
        }
    }
    f.finish()
}

/// `POST /@connections/{id}` with more than 128 KiB answers 413.
pub async fn management_oversized_post_413(d: &dyn Deployment) -> anyhow::Result<()> {
    let base = base(d)?;
    let path = format!("/@connections/{}", unknown_id());
    let r = Request::new("POST", &path)
        .body(vec![b'x'; MAX_WS_MESSAGE_BYTES + 1])
        .send(&base)
        .await?;
    ensure!(
        r.status == 413,
        "expected 413, got {} `{}`",
        r.status,
        r.text()
    );
    Ok(())
}
