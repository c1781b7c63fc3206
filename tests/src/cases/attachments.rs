//! Attachments (docs/protocol.md, "Attachments"): a slot from `POST /rooms/{room}/uploads`,
//! the bytes straight to the upload target (a `PUT` to the deployment's signed route, or an S3
//! presigned `POST` form), the message naming them, a short-lived link for members, and the
//! bad inputs that must be refused.

use anyhow::{Context, ensure};
use serde_json::{Value, json};

use super::http_api::ensure_status;
use crate::client::{Client, frame_type};
use crate::deployment::Deployment;
use crate::http::{Request, Response};
use crate::scope::{Failures, Scope};

fn base(d: &dyn Deployment) -> anyhow::Result<String> {
    d.http_url()
        .context("the deployment reports attachments but gives no http_url")
}

/// A 3×2 PNG header followed by filler up to `len` bytes.
fn png(len: usize) -> Vec<u8> {
    let mut bytes = b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR".to_vec();
    bytes.extend_from_slice(&3u32.to_be_bytes());
    bytes.extend_from_slice(&2u32.to_be_bytes());
    bytes.resize(len, 0x5a);
    bytes
}

fn pdf(len: usize) -> Vec<u8> {
    let mut bytes = b"%PDF-1.7\n%roomcast test\n".to_vec();
    bytes.resize(len, b'x');
    bytes
}

/// `POST /rooms/{room}/uploads` as `token`.
async fn request_slot(
    d: &dyn Deployment,
    token: &str,
    room: &str,
    name: &str,
    size: usize,
    content_type: &str,
) -> anyhow::Result<Response> {
    Request::new("POST", &format!("/rooms/{room}/uploads"))
        .bearer(token)
        .json(&json!({"name": name, "size": size, "type": content_type}))
        .send(&base(d)?)
        .await
}

/// The base URL and path of `url`: absolute (`http://host:port/path`) or relative to the
/// deployment's HTTP API.
fn split_url(d: &dyn Deployment, url: &str) -> anyhow::Result<(String, String)> {
    match url.strip_prefix("http://") {
        Some(rest) => {
            let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
            Ok((format!("http://{authority}"), format!("/{path}")))
        }
        None => Ok((base(d)?, url.to_owned())),
    }
}

/// Sends `bytes` to an upload target as its method says: a `PUT` of the raw bytes with the
/// target's headers, or a `multipart/form-data` `POST` with its fields in order, then `file`.
async fn upload_to(d: &dyn Deployment, target: &Value, bytes: &[u8]) -> anyhow::Result<Response> {
    let url = target["url"].as_str().context("upload.url")?;
    let (base, path) = split_url(d, url)?;
    match target["method"].as_str() {
        Some("PUT") => {
            let mut request = Request::new("PUT", &path).body(bytes.to_vec());
            for header in target["headers"].as_array().into_iter().flatten() {
                if let (Some(name), Some(value)) = (header[0].as_str(), header[1].as_str())
                    && name.eq_ignore_ascii_case("content-type")
                {
                    request.headers.push(("Content-Type", value.to_owned()));
                }
            }
            request.send(&base).await
        }
        Some("POST") => {
            let boundary = "roomcast-test-boundary-7d1f";
            let mut body = Vec::new();
            for field in target["fields"].as_array().into_iter().flatten() {
                let (Some(name), Some(value)) = (field[0].as_str(), field[1].as_str()) else {
                    continue;
                };
                body.extend_from_slice(
                    format!(
                        "--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"\r\n\r\n{value}\r\n"
                    )
                    .as_bytes(),
                );
            }
            body.extend_from_slice(
                format!(
                    "--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"upload\"\r\nContent-Type: application/octet-stream\r\n\r\n"
                )
                .as_bytes(),
            );
            body.extend_from_slice(bytes);
            body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
            let mut request = Request::new("POST", &path).body(body);
            request.headers.push((
                "Content-Type",
                format!("multipart/form-data; boundary={boundary}"),
            ));
            request.send(&base).await
        }
        other => anyhow::bail!("unknown upload method {other:?}"),
    }
}

/// A slot for `token`'s user in `room`, with `bytes` uploaded to it: the attachment id.
async fn uploaded(
    d: &dyn Deployment,
    token: &str,
    room: &str,
    name: &str,
    content_type: &str,
    bytes: &[u8],
) -> anyhow::Result<String> {
    let slot = request_slot(d, token, room, name, bytes.len(), content_type).await?;
    ensure_status(&slot, 201, "upload slot")?;
    let grant = slot.json()?;
    let put = upload_to(d, &grant["upload"], bytes).await?;
    ensure!(
        (200..300).contains(&put.status),
        "upload of {name}: HTTP {} `{}`",
        put.status,
        put.text()
    );
    Ok(grant["id"].as_str().context("grant id")?.to_owned())
}

/// Sends a message carrying `ids`; the reply (`ack` or `error`).
async fn say_with(
    client: &mut Client,
    room: &str,
    id: &str,
    ids: &[&str],
) -> anyhow::Result<Value> {
    let refs: Vec<Value> = ids.iter().map(|i| json!({"id": i})).collect();
    client
        .send_json(
            &json!({"action": "message", "room": room, "id": id, "body": "", "attachments": refs}),
        )
        .await?;
    client
        .expect(&format!("ack or error for {id}"), |f| {
            (frame_type(f) == "ack" && f["id"] == id)
                || (frame_type(f) == "error" && f["ref"] == id)
        })
        .await
}

/// `GET /rooms/{room}/attachments/{id}` as `token`.
async fn link(d: &dyn Deployment, token: &str, room: &str, id: &str) -> anyhow::Result<Response> {
    Request::new("GET", &format!("/rooms/{room}/attachments/{id}"))
        .bearer(token)
        .send(&base(d)?)
        .await
}

/// Follows a download link.
async fn download(d: &dyn Deployment, url: &str) -> anyhow::Result<Response> {
    let (base, path) = split_url(d, url)?;
    Request::new("GET", &path).send(&base).await
}

/// An image and a PDF go up, onto one message, to the other member with their metadata, and
/// come back byte-identical through members' links: the image inline, the PDF as a download.
pub async fn attachments_reach_members_byte_identical(d: &dyn Deployment) -> anyhow::Result<()> {
    let s = Scope::new(d, "attachments_flow");
    let room = "files";
    let (mut alice, _) = s.member("alice", room).await?;
    let (mut bob, _) = s.member("bob", room).await?;
    let token = s.token("alice", &[room]);
    let image = png(40_000);
    let document = pdf(70_000);
    let image_id = uploaded(d, &token, room, "cat.png", "image/png", &image).await?;
    let pdf_id = uploaded(d, &token, room, "report.pdf", "application/pdf", &document).await?;
    let id = s.id("m");
    let ack = say_with(&mut alice, room, &id, &[&image_id, &pdf_id]).await?;
    ensure!(frame_type(&ack) == "ack", "the message is accepted: {ack}");
    let message = bob.expect_message(room).await?;
    ensure!(
        message["attachments"]
            == json!([
                {"id": image_id, "name": "cat.png", "size": 40_000, "type": "image/png", "width": 3, "height": 2},
                {"id": pdf_id, "name": "report.pdf", "size": 70_000, "type": "application/pdf"},
            ]),
        "the attachments as stored: {message}"
    );
    let bob_token = s.token("bob", &[room]);
    let mut f = Failures::default();
    for (id, bytes, inline) in [(&image_id, &image, true), (&pdf_id, &document, false)] {
        let result = async {
            let r = link(d, &bob_token, room, id).await?;
            ensure_status(&r, 200, "download link")?;
            let link = r.json()?;
            ensure!(link["inline"] == inline, "inline {inline}: {link}");
            let got = download(d, link["url"].as_str().context("url")?).await?;
            ensure_status(&got, 200, "download")?;
            ensure!(got.body == *bytes, "{id}: the bytes differ");
            let disposition = got.header("content-disposition").unwrap_or_default();
            let wanted = if inline { "inline" } else { "attachment" };
            ensure!(
                disposition.starts_with(wanted),
                "{id}: Content-Disposition `{disposition}`"
            );
            if !inline {
                ensure!(
                    got.header("content-type") == Some("application/octet-stream"),
                    "{id}: a download is never served as a type a browser renders: {:?}",
                    got.header("content-type")
                );
            }
            Ok(())
        };
        f.check(id, result.await);
    }
    f.finish()
}

/// Refused: slots over the size limit or of a type not allowed, names with paths, NUL or bidi
/// overrides kept out; bytes that are not what was declared (an SVG posing as a PNG, a PDF as
/// a PNG), larger than announced, another room's or tenant's attachment, one attachment on two
/// messages, and links for non-members.
pub async fn attachment_bad_inputs_are_refused(d: &dyn Deployment) -> anyhow::Result<()> {
    let s = Scope::new(d, "attachments_bad");
    let room = "files";
    let (mut alice, _) = s.member("alice", room).await?;
    let token = s.token("alice", &[room]);
    let mut f = Failures::default();

    let r = request_slot(
        d,
        &token,
        room,
        "big.png",
        10 * 1024 * 1024 + 1,
        "image/png",
    )
    .await?;
    f.check("too large", ensure_code(&r, 413, "TOO_LARGE"));
    let r = request_slot(d, &token, room, "x.exe", 10, "application/x-msdownload").await?;
    f.check("type not allowed", ensure_code(&r, 400, "INVALID"));
    let r = request_slot(
        d,
        &s.token("alice", &["other"]),
        room,
        "a.png",
        10,
        "image/png",
    )
    .await?;
    f.check("room not granted", ensure_code(&r, 403, "FORBIDDEN"));
    let r = request_slot(
        d,
        &token,
        room,
        "../../etc/\u{202e}gnp.exe\u{0}",
        10,
        "image/png",
    )
    .await?;
    f.check(
        "a name with a path, a bidi override and NUL",
        (|| {
            ensure_status(&r, 201, "slot")?;
            let name = r.json()?["name"].as_str().unwrap_or_default().to_owned();
            ensure!(
                !name.contains(['/', '\\', '\0', '\u{202e}']) && !name.is_empty(),
                "unsafe name kept: {name:?}"
            );
            Ok(())
        })(),
    );

    let script = b"<svg xmlns='http://www.w3.org/2000/svg'><script>alert(1)</script></svg>";
    let svg_as_png = uploaded(d, &token, room, "x.png", "image/png", script).await?;
    let reply = say_with(&mut alice, room, &s.id("svg"), &[&svg_as_png]).await?;
    f.check("an SVG declared as PNG", ensure_error(&reply, "INVALID"));
    let pdf_as_png = uploaded(d, &token, room, "y.png", "image/png", &pdf(500)).await?;
    let reply = say_with(&mut alice, room, &s.id("lie"), &[&pdf_as_png]).await?;
    f.check("a PDF declared as PNG", ensure_error(&reply, "INVALID"));

    // Larger than announced: the upload target refuses it, or (where the store cannot) the
    // message naming it is refused. Either way nothing lands.
    let slot = request_slot(d, &token, room, "z.pdf", 1_000, "application/pdf").await?;
    ensure_status(&slot, 201, "slot")?;
    let grant = slot.json()?;
    let put = upload_to(d, &grant["upload"], &pdf(5_000)).await?;
    if (200..300).contains(&put.status) {
        let id = grant["id"].as_str().unwrap_or_default();
        let reply = say_with(&mut alice, room, &s.id("larger"), &[id]).await?;
        f.check("larger than announced", ensure_error(&reply, "INVALID"));
    } else {
        let refused = if matches!(put.status, 400 | 403 | 413) {
            Ok(())
        } else {
            Err(anyhow::anyhow!(
                "refused with a client error, not {}",
                put.status
            ))
        };
        f.check("larger than announced", refused);
    }

    let good = uploaded(d, &token, room, "ok.pdf", "application/pdf", &pdf(300)).await?;
    let (mut alice_side, _) = s.member("alice", "side").await?;
    let reply = say_with(&mut alice_side, "side", &s.id("side"), &[&good]).await?;
    f.check(
        "another room's attachment",
        ensure_error(&reply, "NOT_FOUND"),
    );
    let other_tenant = Scope::new(d, "attachments_other");
    let (mut mallory, _) = other_tenant.member("alice", room).await?;
    let reply = say_with(&mut mallory, room, &other_tenant.id("x"), &[&good]).await?;
    f.check(
        "another tenant's attachment",
        ensure_error(&reply, "NOT_FOUND"),
    );
    let first = say_with(&mut alice, room, &s.id("first"), &[&good]).await?;
    f.check("first use", ensure_ack(&first));
    let reply = say_with(&mut alice, room, &s.id("second"), &[&good]).await?;
    f.check(
        "reuse on a second message",
        ensure_error(&reply, "CONFLICT"),
    );

    let r = link(d, &s.token("eve", &["elsewhere"]), room, &good).await?;
    f.check("a non-member's link", ensure_code(&r, 403, "FORBIDDEN"));
    let r = link(d, &other_tenant.token("alice", &[room]), room, &good).await?;
    f.check("another tenant's link", ensure_code(&r, 404, "NOT_FOUND"));
    f.finish()
}

/// Deleting a message deletes its attachment: its link is refused from then on.
pub async fn deleted_message_takes_its_attachment(d: &dyn Deployment) -> anyhow::Result<()> {
    let s = Scope::new(d, "attachments_delete");
    let room = "files";
    let (mut alice, _) = s.member("alice", room).await?;
    let token = s.token("alice", &[room]);
    let id = uploaded(d, &token, room, "a.pdf", "application/pdf", &pdf(2_000)).await?;
    let ack = say_with(&mut alice, room, &s.id("m"), &[&id]).await?;
    ensure!(frame_type(&ack) == "ack", "{ack}");
    let seq = ack["seq"].as_u64().context("seq")?;
    let before = link(d, &token, room, &id).await?;
    ensure_status(&before, 200, "link before the delete")?;
    let url = before.json()?["url"].as_str().context("url")?.to_owned();
    alice
        .send_json(&json!({"action": "delete", "room": room, "seq": seq}))
        .await?;
    alice.expect_type("deleted").await?;
    let after = link(d, &token, room, &id).await?;
    ensure_code(&after, 404, "NOT_FOUND")?;
    let bytes = download(d, &url).await?;
    ensure!(
        bytes.status == 404 || bytes.status == 403,
        "the bytes are gone: HTTP {}",
        bytes.status
    );
    Ok(())
}

/// Thousands of slot requests: the user's daily quota answers `LIMIT_EXCEEDED` (429) before
/// the thousandth, and another user of the tenant is not held back by it.
pub async fn upload_slots_are_held_to_a_quota(d: &dyn Deployment) -> anyhow::Result<()> {
    let s = Scope::new(d, "attachments_quota");
    let room = "files";
    let token = s.token("alice", &[room]);
    let mut granted = 0;
    let mut limited = None;
    for _ in 0..1_000 {
        let r = request_slot(d, &token, room, "a.png", 10, "image/png").await?;
        match (r.status, r.json().ok()) {
            (201, _) => granted += 1,
            (429, Some(body)) if body["code"] == "LIMIT_EXCEEDED" => {
                limited = Some(body);
                break;
            }
            // The request rate may refuse first; slow down and go on.
            (429, _) => tokio::time::sleep(std::time::Duration::from_millis(100)).await,
            (status, _) => anyhow::bail!("slot request: HTTP {status} `{}`", r.text()),
        }
    }
    ensure!(limited.is_some(), "no LIMIT_EXCEEDED after {granted} slots");
    let other = request_slot(d, &s.token("bob", &[room]), room, "a.png", 10, "image/png").await?;
    ensure_status(&other, 201, "another user's slot")
}

fn ensure_code(r: &Response, status: u16, code: &str) -> anyhow::Result<()> {
    ensure_status(r, status, code)?;
    let body = r.json()?;
    ensure!(body["code"] == code, "expected {code}: {body}");
    Ok(())
}

fn ensure_ack(reply: &Value) -> anyhow::Result<()> {
    ensure!(frame_type(reply) == "ack", "expected an ack, got {reply}");
    Ok(())
}

fn ensure_error(reply: &Value, code: &str) -> anyhow::Result<()> {
    ensure!(
        frame_type(reply) == "error" && reply["code"] == code,
        "expected error {code}, got {reply}"
    );
    Ok(())
}
