//! The local server's attachment files, against the real binary over real sockets: what only
//! this deployment promises beyond the suite's attachment cases (`protocol.rs`): uploads are
//! durable and atomic across `kill -9`, the upload route holds a body to its slot's size
//! however it is sent, signed links expire, the routes answer cross-origin preflights, and
//! `--store memory` leaves no files in the data directory.
#![cfg(unix)]

mod common;

use std::path::{Path, PathBuf};

use anyhow::{Context, ensure};
use common::{Local, start};
use roomcast_core::attachments::{Grant, LinkSigner};
use roomcast_protocol_tests::client::{Client, frame_type};
use roomcast_protocol_tests::deployment::Deployment;
use roomcast_protocol_tests::http::{Request, Response};
use roomcast_protocol_tests::scope::{Scope, now_ms};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// The default size limit: the largest upload a slot is granted for.
const TEN_MB: usize = 10 * 1024 * 1024;

/// A 3×2 PNG header, then filler that varies so a misplaced chunk would show, up to `len`.
fn png(len: usize) -> Vec<u8> {
    let mut bytes = b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR".to_vec();
    bytes.extend_from_slice(&3u32.to_be_bytes());
    bytes.extend_from_slice(&2u32.to_be_bytes());
    let start = bytes.len();
    bytes.extend((start..len).map(|i| (i % 251) as u8));
    bytes
}

fn base(d: &Local) -> String {
    format!("http://127.0.0.1:{}", d.port())
}

/// A slot for `bytes.len()` bytes of `image/png`: the grant.
async fn slot(d: &Local, token: &str, room: &str, len: usize) -> anyhow::Result<Value> {
    let r = Request::new("POST", &format!("/rooms/{room}/uploads"))
        .bearer(token)
        .json(&json!({"name": "cat.png", "size": len, "type": "image/png"}))
        .send(&base(d))
        .await?;
    ensure!(r.status == 201, "slot: HTTP {} `{}`", r.status, r.text());
    r.json()
}

fn upload_path(grant: &Value) -> anyhow::Result<String> {
    let target = &grant["upload"];
    ensure!(target["method"] == "PUT", "a PUT target: {target}");
    Ok(target["url"].as_str().context("upload.url")?.to_owned())
}

async fn put(d: &Local, path: &str, bytes: Vec<u8>) -> anyhow::Result<Response> {
    let mut request = Request::new("PUT", path).body(bytes);
    request.headers.push(("Content-Type", "image/png".into()));
    request.send(&base(d)).await
}

/// `PUT path` with a chunked body (no `Content-Length`): the status line's code.
async fn put_chunked(d: &Local, path: &str, bytes: &[u8]) -> anyhow::Result<u16> {
    let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", d.port())).await?;
    let mut request = format!(
        "PUT {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\
         Content-Type: image/png\r\nTransfer-Encoding: chunked\r\n\r\n"
    )
    .into_bytes();
    for chunk in bytes.chunks(1_000) {
        request.extend_from_slice(format!("{:x}\r\n", chunk.len()).as_bytes());
        request.extend_from_slice(chunk);
        request.extend_from_slice(b"\r\n");
    }
    request.extend_from_slice(b"0\r\n\r\n");
    // The server may answer and close before taking the whole body: a failed write is fine.
    let _ = stream.write_all(&request).await;
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer).await;
    let answer = String::from_utf8_lossy(&answer);
    answer
        .split(' ')
        .nth(1)
        .and_then(|code| code.parse().ok())
        .with_context(|| format!("no status line in `{answer}`"))
}

/// Sends a message carrying `id`; the `ack` or `error` answering it.
async fn say_with(client: &mut Client, room: &str, msg: &str, id: &str) -> anyhow::Result<Value> {
    client
        .send_json(&json!({"action": "message", "room": room, "id": msg, "body": "", "attachments": [{"id": id}]}))
        .await?;
    client
        .expect(&format!("ack or error for {msg}"), |f| {
            (frame_type(f) == "ack" && f["id"] == msg)
                || (frame_type(f) == "error" && f["ref"] == msg)
        })
        .await
}

/// Every file under `dir`.
fn files_under(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut found = Vec::new();
    for path in entries.filter_map(|e| e.ok().map(|e| e.path())) {
        if path.is_dir() {
            found.extend(files_under(&path));
        } else {
            found.push(path);
        }
    }
    found
}

/// A 10 MB upload (the whole default limit) is taken, survives `kill -9` of the server right
/// after its 204, and is then attached and downloaded byte-identical; no partial or temporary
/// file is ever left.
#[tokio::test(flavor = "multi_thread")]
async fn an_upload_survives_kill_9_and_comes_back_byte_identical() -> anyhow::Result<()> {
    let d = start(&[]);
    let s = Scope::new(&d, "att_kill");
    let room = "files";
    let token = s.token("alice", &[room]);
    let image = png(TEN_MB);
    let grant = slot(&d, &token, room, image.len()).await?;
    let id = grant["id"].as_str().context("grant id")?.to_owned();
    let stored = put(&d, &upload_path(&grant)?, image.clone()).await?;
    ensure!(
        stored.status == 204,
        "upload: HTTP {} `{}`",
        stored.status,
        stored.text()
    );
    ensure!(
        stored.header("access-control-allow-origin") == Some("*"),
        "the widget's origin may read the answer"
    );

    d.restart().await?;
    let attachments = d.data_dir().join("attachments");
    let files = files_under(&attachments);
    ensure!(
        files.len() == 1 && files[0].starts_with(attachments.join("objects")),
        "exactly the one object, nothing in incoming/: {files:?}"
    );

    let (mut alice, _) = s.member("alice", room).await?;
    let (mut bob, _) = s.member("bob", room).await?;
    let ack = say_with(&mut alice, room, &s.id("m"), &id).await?;
    ensure!(
        frame_type(&ack) == "ack",
        "attached after the restart: {ack}"
    );
    let message = bob.expect_message(room).await?;
    ensure!(
        message["attachments"][0]["id"] == id.as_str() && message["attachments"][0]["width"] == 3,
        "{message}"
    );
    let link = Request::new("GET", &format!("/rooms/{room}/attachments/{id}"))
        .bearer(&s.token("bob", &[room]))
        .send(&base(&d))
        .await?;
    ensure!(
        link.status == 200,
        "link: HTTP {} `{}`",
        link.status,
        link.text()
    );
    let url = link.json()?["url"].as_str().context("url")?.to_owned();
    let got = Request::new("GET", &url).send(&base(&d)).await?;
    ensure!(got.status == 200, "download: HTTP {}", got.status);
    ensure!(
        got.body == image,
        "the bytes differ ({} bytes back)",
        got.body.len()
    );
    for (name, value) in [
        ("content-type", "image/png"),
        ("x-content-type-options", "nosniff"),
        ("cross-origin-resource-policy", "cross-origin"),
    ] {
        ensure!(
            got.header(name) == Some(value),
            "{name}: {:?}",
            got.header(name)
        );
    }
    ensure!(
        got.header("content-disposition")
            .is_some_and(|v| v.starts_with("inline")),
        "{:?}",
        got.header("content-disposition")
    );
    ensure!(
        got.header("content-security-policy")
            .is_some_and(|v| v.contains("sandbox"))
    );
    Ok(())
}

/// A body longer than the slot is refused 413 whether announced (`Content-Length`) or found
/// while streaming (chunked), a shorter one 400; none of them stores anything, the slot still
/// takes the right bytes afterwards, and only once (409).
#[tokio::test(flavor = "multi_thread")]
async fn an_upload_longer_than_its_slot_is_refused_and_leaves_nothing() -> anyhow::Result<()> {
    let d = start(&[]);
    let s = Scope::new(&d, "att_long");
    let room = "files";
    let token = s.token("alice", &[room]);
    let grant = slot(&d, &token, room, 1_000).await?;
    let path = upload_path(&grant)?;
    let id = grant["id"].as_str().context("grant id")?.to_owned();

    let announced = put(&d, &path, png(5_000)).await?;
    ensure!(
        announced.status == 413 && announced.json()?["code"] == "TOO_LARGE",
        "announced too long: HTTP {} `{}`",
        announced.status,
        announced.text()
    );
    ensure!(
        put_chunked(&d, &path, &png(50_000)).await? == 413,
        "streamed too long"
    );
    ensure!(
        put_chunked(&d, &path, &png(999)).await? == 400,
        "streamed too short"
    );
    let objects = d.data_dir().join("attachments");
    ensure!(
        files_under(&objects).is_empty(),
        "{:?}",
        files_under(&objects)
    );

    let (mut alice, _) = s.member("alice", room).await?;
    let refused = say_with(&mut alice, room, &s.id("early"), &id).await?;
    ensure!(
        frame_type(&refused) == "error" && refused["code"] == "INVALID",
        "nothing uploaded yet: {refused}"
    );
    ensure!(
        put_chunked(&d, &path, &png(1_000)).await? == 204,
        "exact, chunked"
    );
    let again = put(&d, &path, png(1_000)).await?;
    ensure!(
        again.status == 409 && again.json()?["code"] == "CONFLICT",
        "an object is never replaced: HTTP {} `{}`",
        again.status,
        again.text()
    );
    let ack = say_with(&mut alice, room, &s.id("m"), &id).await?;
    ensure!(frame_type(&ack) == "ack", "{ack}");
    Ok(())
}

/// Links past their deadline, forged, or of the other kind are refused 403; a link to a file
/// that is gone is 404; both routes answer CORS preflights.
#[tokio::test(flavor = "multi_thread")]
async fn links_expire_and_are_checked() -> anyhow::Result<()> {
    let d = start(&[]);
    let signer = d.link_signer();
    let now = now_ms();
    let key = "acme/files/att_aaaaaaaaaaaaaaaaaaaaaaaaaa";
    let get = |exp| signer.download_url(key, "a.png", "image/png", exp);
    let put_link = |exp| {
        let token = signer.sign(&Grant::Put {
            key: key.to_owned(),
            size: 10,
            content_type: "image/png".to_owned(),
            exp,
        });
        format!("/uploads/{token}")
    };
    let forged = LinkSigner::new(&[9u8; 32])
        .context("32 bytes is a valid link key")?
        .download_url(key, "a.png", "image/png", now + 60_000);
    let cases = [
        ("an expired download", "GET", get(now - 1), 403),
        ("a forged download", "GET", forged, 403),
        (
            "an upload link used to download",
            "GET",
            put_link(now + 60_000).replace("/uploads/", "/files/"),
            403,
        ),
        ("a download of nothing", "GET", get(now + 60_000), 404),
        ("an expired upload", "PUT", put_link(now - 1), 403),
        (
            "a download link used to upload",
            "PUT",
            get(now + 60_000).replace("/files/", "/uploads/"),
            403,
        ),
    ];
    for (what, method, path, status) in cases {
        let mut request = Request::new(method, &path);
        if method == "PUT" {
            request = request.body(vec![0; 10]);
        }
        let r = request.send(&base(&d)).await?;
        ensure!(
            r.status == status,
            "{what}: HTTP {} `{}`",
            r.status,
            r.text()
        );
        ensure!(
            r.json().is_ok_and(|b| b["code"].is_string()),
            "{what}: `{}`",
            r.text()
        );
    }
    for path in ["/uploads/x", "/files/x"] {
        let mut preflight = Request::new("OPTIONS", path);
        preflight
            .headers
            .push(("Origin", "https://shop.example".into()));
        preflight
            .headers
            .push(("Access-Control-Request-Method", "PUT".into()));
        preflight
            .headers
            .push(("Access-Control-Request-Headers", "content-type".into()));
        let r = preflight.send(&base(&d)).await?;
        ensure!(
            r.status == 204
                && r.header("access-control-allow-origin") == Some("*")
                && r.header("access-control-allow-methods")
                    .is_some_and(|m| m.contains("PUT"))
                && r.header("access-control-allow-headers")
                    .is_some_and(|h| h.contains("content-type")),
            "{path} preflight: HTTP {} {:?}",
            r.status,
            r.headers
        );
    }
    Ok(())
}

/// `--store memory` keeps attachments working and writes none of them to the data directory.
#[tokio::test(flavor = "multi_thread")]
async fn the_memory_store_keeps_files_out_of_the_data_dir() -> anyhow::Result<()> {
    let d = start(&["--store", "memory"]);
    let s = Scope::new(&d, "att_memory");
    let room = "files";
    let token = s.token("alice", &[room]);
    let image = png(20_000);
    let grant = slot(&d, &token, room, image.len()).await?;
    let stored = put(&d, &upload_path(&grant)?, image).await?;
    ensure!(stored.status == 204, "upload: HTTP {}", stored.status);
    let (mut alice, _) = s.member("alice", room).await?;
    let id = grant["id"].as_str().context("grant id")?;
    let ack = say_with(&mut alice, room, &s.id("m"), id).await?;
    ensure!(frame_type(&ack) == "ack", "{ack}");
    ensure!(
        !d.data_dir().join("attachments").exists(),
        "files went to the data directory"
    );
    Ok(())
}
