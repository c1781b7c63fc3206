//! Attachments on AWS end to end against moto (DynamoDB and S3): a slot granted through the
//! functions' HTTP API, the presigned POST performed by a real HTTP client (multipart/form-data,
//! the fields in order, then `file`), the message that attaches it, the presigned GET that
//! downloads it byte for byte, and the refusals.
//!
//! moto's S3 does not check POST policies: it takes any form, whatever its signature, size,
//! type or expiry, and ignores the `tagging` field. So the policy is checked here as a document
//! (what S3 enforces), and the uploads moto lets through that S3 would refuse (another size,
//! bytes of another type) show the second line: the core's check of size and sniffed type when
//! a message attaches the file.
#![allow(
    clippy::unwrap_used,
    clippy::panic,
    reason = "test code: a failing call is a test failure"
)]

use aws_sdk_s3::Client;
use base64::Engine;
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper_util::client::legacy::Client as HttpClient;
use hyper_util::rt::TokioExecutor;
use roomcast_aws::lambda::env;
use roomcast_aws::s3::{ATTACHED, PENDING, TAG_KEY, pending_tagging};
use roomcast_core::auth::Role;
use roomcast_core::http::HttpRequest;
use roomcast_testkit::aws::lambda::{World, member_token, now_ms, post_upload, world_with};
use serde_json::{Value, json};

/// A 3×2 PNG header with some pixel bytes after it.
fn png(len: usize) -> Vec<u8> {
    let mut bytes = b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR".to_vec();
    bytes.extend_from_slice(&3u32.to_be_bytes());
    bytes.extend_from_slice(&2u32.to_be_bytes());
    bytes.resize(len, 7);
    bytes
}

fn pdf(len: usize) -> Vec<u8> {
    let mut bytes = b"%PDF-1.7\n".to_vec();
    bytes.resize(len, b'x');
    bytes
}

/// A world whose functions keep attachments in a new bucket on the world's moto.
async fn world_with_bucket() -> (World, Client, String) {
    let bucket = format!("attachments-{}-{}", std::process::id(), now_ms());
    let w = world_with(&[(env::ATTACHMENT_BUCKET, &bucket)]).await;
    let config = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .region(aws_config::Region::new("us-east-1"))
        .endpoint_url(&w.dynamo.endpoint)
        .credentials_provider(aws_sdk_s3::config::Credentials::new(
            "test", "test", None, None, "test",
        ))
        .load()
        .await;
    let s3 = Client::new(&config);
    s3.create_bucket().bucket(&bucket).send().await.unwrap();
    (w, s3, bucket)
}

async fn http(w: &World, method: &str, path: &str, token: &str, body: &Value) -> (u16, Value) {
    let authorization = format!("Bearer {token}");
    let body = if body.is_null() {
        Vec::new()
    } else {
        body.to_string().into_bytes()
    };
    let reply = w
        .runtime
        .handle_http(&HttpRequest {
            method,
            path,
            query: None,
            authorization: Some(&authorization),
            body: &body,
            origin: None,
            client_ip: None,
        })
        .await;
    (reply.status, reply.body)
}

/// A slot for `name`, `size` bytes of `content_type`, in `room`.
async fn grant(
    w: &World,
    token: &str,
    room: &str,
    name: &str,
    size: usize,
    content_type: &str,
) -> Value {
    let (status, grant) = http(
        w,
        "POST",
        &format!("/rooms/{room}/uploads"),
        token,
        &json!({"name": name, "size": size, "type": content_type}),
    )
    .await;
    assert_eq!(status, 201, "{grant}");
    grant
}

/// The form fields of an upload target, in order.
fn fields(grant: &Value) -> Vec<(String, String)> {
    serde_json::from_value(grant["upload"]["fields"].clone()).unwrap()
}

/// Sends `grant`'s POST upload with `bytes` as `file`, as a browser's form does; the status.
async fn upload(grant: &Value, bytes: &[u8]) -> u16 {
    post_upload(&grant["upload"], bytes).await
}

/// GET `url`: status, headers, body.
async fn download(url: &str) -> (u16, hyper::HeaderMap, Vec<u8>) {
    let client = HttpClient::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
    let response = client.get(url.parse().unwrap()).await.unwrap();
    let (parts, body) = response.into_parts();
    let bytes = body.collect().await.unwrap().to_bytes().to_vec();
    (parts.status.as_u16(), parts.headers, bytes)
}

/// Sends a message with `ids` attached from `conn`; its `ack` or `error` frame.
async fn attach(w: &World, conn: &str, room: &str, message_id: &str, ids: &[&str]) -> Value {
    let refs: Vec<Value> = ids.iter().map(|id| json!({"id": id})).collect();
    w.frame(
        conn,
        "message",
        json!({"action": "message", "room": room, "id": message_id, "body": "", "attachments": refs}),
    )
    .await;
    w.received(conn)
        .into_iter()
        .find(|f| f["type"] == "ack" || f["type"] == "error")
        .unwrap_or_else(|| panic!("no reply to {message_id}"))
}

async fn tag_of(s3: &Client, bucket: &str, key: &str) -> Vec<(String, String)> {
    let tags = s3
        .get_object_tagging()
        .bucket(bucket)
        .key(key)
        .send()
        .await
        .unwrap();
    tags.tag_set()
        .iter()
        .map(|t| (t.key().to_owned(), t.value().to_owned()))
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn presigned_post_upload_attach_and_presigned_get_download() {
    let (w, s3, bucket) = world_with_bucket().await;
    let alice = member_token("alice", &["support-*"]);
    let room = "support-att";
    assert_eq!(w.connect("c-alice", &alice).await.status_code, 200);
    w.frame(
        "c-alice",
        "$default",
        json!({"action": "join", "room": room}),
    )
    .await;
    w.received("c-alice");

    let bytes = png(5_000);
    let grant = grant(&w, &alice, room, "cat.png", bytes.len(), "image/png").await;
    let id = grant["id"].as_str().unwrap().to_owned();
    let key = format!("acme/{room}/{id}");
    let url = grant["upload"]["url"].as_str().unwrap();
    assert!(
        url.ends_with(&format!("/{bucket}")),
        "path style on moto: {url}"
    );

    // The policy S3 would enforce: this key, exactly this size and type, tagged pending, until
    // the slot's deadline, signed with SigV4 by the function's credentials.
    let form = fields(&grant);
    let names: Vec<&str> = form.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        names,
        [
            "key",
            "Content-Type",
            "tagging",
            "x-amz-algorithm",
            "x-amz-credential",
            "x-amz-date",
            "policy",
            "x-amz-signature"
        ]
    );
    let field = |name: &str| form.iter().find(|(n, _)| n == name).unwrap().1.clone();
    assert_eq!(field("key"), key);
    assert_eq!(field("tagging"), pending_tagging());
    assert!(field("tagging").contains(&format!("<Key>{TAG_KEY}</Key><Value>{PENDING}</Value>")));
    assert!(field("x-amz-credential").starts_with("test/"));
    assert!(field("x-amz-credential").ends_with("/us-east-1/s3/aws4_request"));
    assert_eq!(field("x-amz-signature").len(), 64);
    let policy: Value = serde_json::from_slice(
        &base64::engine::general_purpose::STANDARD
            .decode(field("policy"))
            .unwrap(),
    )
    .unwrap();
    let conditions = policy["conditions"].as_array().unwrap();
    for expected in [
        json!({"bucket": bucket}),
        json!(["content-length-range", 5000, 5000]),
        json!({"key": key}),
        json!({"Content-Type": "image/png"}),
        json!({"tagging": pending_tagging()}),
        json!({"x-amz-algorithm": "AWS4-HMAC-SHA256"}),
        json!({"x-amz-date": field("x-amz-date")}),
    ] {
        assert!(conditions.contains(&expected), "{expected} not in {policy}");
    }
    let deadline = roomcast_core::attachments::UPLOAD_WINDOW_MS / 1000;
    let expiration = policy["expiration"].as_str().unwrap();
    let expires_at = aws_sdk_s3::primitives::DateTime::from_str(
        expiration,
        aws_sdk_s3::primitives::DateTimeFormat::DateTime,
    )
    .unwrap()
    .secs();
    assert_eq!(
        u64::try_from(expires_at).unwrap(),
        grant["expires_at"].as_u64().unwrap() / 1000,
        "{expiration}"
    );
    assert!(grant["expires_at"].as_u64().unwrap() / 1000 <= now_ms() / 1000 + deadline);

    // Nothing uploaded yet: a message cannot carry it.
    let early = attach(&w, "c-alice", room, "m0", &[&id]).await;
    assert_eq!(early["code"], "INVALID", "{early}");

    assert!((200..300).contains(&upload(&grant, &bytes).await));
    let ack = attach(&w, "c-alice", room, "m1", &[&id]).await;
    assert_eq!(ack["type"], "ack", "{ack}");
    assert_eq!(
        tag_of(&s3, &bucket, &key).await,
        [(TAG_KEY.to_owned(), ATTACHED.to_owned())]
    );

    // History carries it, with the sniffed size; the link downloads the same bytes.
    let (status, history) = http(
        &w,
        "GET",
        &format!("/rooms/{room}/messages"),
        &alice,
        &Value::Null,
    )
    .await;
    assert_eq!(status, 200, "{history}");
    let attached = &history["messages"][0]["attachments"][0];
    assert_eq!(attached["id"], id.as_str());
    assert_eq!(
        (attached["width"].as_u64(), attached["height"].as_u64()),
        (Some(3), Some(2))
    );
    let (status, link) = http(
        &w,
        "GET",
        &format!("/rooms/{room}/attachments/{id}"),
        &alice,
        &Value::Null,
    )
    .await;
    assert_eq!(status, 200, "{link}");
    assert_eq!(link["inline"], true);
    let (status, headers, downloaded) = download(link["url"].as_str().unwrap()).await;
    assert_eq!(status, 200);
    assert_eq!(downloaded, bytes, "byte-identical");
    assert_eq!(headers["content-type"], "image/png");
    assert!(
        headers["content-disposition"]
            .to_str()
            .unwrap()
            .starts_with("inline;")
    );

    // Another member downloads it too; a token of another tenant does not see it.
    let bob = member_token("bob", &["support-*"]);
    let (status, _) = http(
        &w,
        "GET",
        &format!("/rooms/{room}/attachments/{id}"),
        &bob,
        &Value::Null,
    )
    .await;
    assert_eq!(status, 200);
    let other =
        roomcast_core::auth::TokenSigner::hs256(roomcast_testkit::aws::lambda::SECRET.as_bytes())
            .sign(&roomcast_core::auth::Claims {
                sub: Some("eve".into()),
                tid: Some("other".into()),
                rooms: vec!["*".into()],
                role: Role::User,
                exp: Some(now_ms() / 1000 + 600),
                ..Default::default()
            });
    let (status, _) = http(
        &w,
        "GET",
        &format!("/rooms/{room}/attachments/{id}"),
        &other,
        &Value::Null,
    )
    .await;
    assert_eq!(status, 404);

    // A second message cannot take it; deleting the message deletes the bytes.
    let again = attach(&w, "c-alice", room, "m2", &[&id]).await;
    assert_eq!(again["code"], "CONFLICT", "{again}");
    w.frame(
        "c-alice",
        "$default",
        json!({"action": "delete", "room": room, "seq": 1}),
    )
    .await;
    w.received("c-alice");
    assert!(
        s3.head_object()
            .bucket(&bucket)
            .key(&key)
            .send()
            .await
            .is_err(),
        "bytes deleted"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn uploads_that_s3_would_refuse_are_refused_when_attached() {
    let (w, s3, bucket) = world_with_bucket().await;
    let alice = member_token("alice", &["support-*"]);
    let room = "support-bad";
    assert_eq!(w.connect("c-alice", &alice).await.status_code, 200);
    w.frame(
        "c-alice",
        "$default",
        json!({"action": "join", "room": room}),
    )
    .await;
    w.received("c-alice");

    // Another size than declared (S3: content-length-range; moto takes it).
    let short = grant(&w, &alice, room, "a.pdf", 2_000, "application/pdf").await;
    assert!((200..300).contains(&upload(&short, &pdf(1_999)).await));
    let refused = attach(&w, "c-alice", room, "m1", &[short["id"].as_str().unwrap()]).await;
    assert_eq!(refused["code"], "INVALID", "{refused}");

    // Bytes of another type than declared (markup posing as an image).
    let fake = grant(&w, &alice, room, "x.png", 64, "image/png").await;
    let mut html = b"<html><script>alert(1)</script>".to_vec();
    html.resize(64, b' ');
    assert!((200..300).contains(&upload(&fake, &html).await));
    let refused = attach(&w, "c-alice", room, "m2", &[fake["id"].as_str().unwrap()]).await;
    assert_eq!(refused["code"], "INVALID", "{refused}");
    let fake_key = format!("acme/{room}/{}", fake["id"].as_str().unwrap());
    assert_ne!(
        tag_of(&s3, &bucket, &fake_key).await,
        [(TAG_KEY.to_owned(), ATTACHED.to_owned())],
        "a refused upload is never marked attached (the lifecycle rule expires it)"
    );

    // A PDF is served as a download, never rendered: octet-stream and `attachment`.
    let doc = grant(&w, &alice, room, "report.pdf", 3_000, "application/pdf").await;
    assert!((200..300).contains(&upload(&doc, &pdf(3_000)).await));
    let id = doc["id"].as_str().unwrap();
    assert_eq!(
        attach(&w, "c-alice", room, "m3", &[id]).await["type"],
        "ack"
    );
    let (_, link) = http(
        &w,
        "GET",
        &format!("/rooms/{room}/attachments/{id}"),
        &alice,
        &Value::Null,
    )
    .await;
    assert_eq!(link["inline"], false);
    let (status, headers, bytes) = download(link["url"].as_str().unwrap()).await;
    assert_eq!(status, 200);
    assert_eq!(bytes, pdf(3_000));
    assert_eq!(headers["content-type"], "application/octet-stream");
    assert_eq!(
        headers["content-disposition"],
        "attachment; filename=\"report.pdf\"; filename*=UTF-8''report.pdf"
    );

    // Grants refused before anything is signed: too large, a type not allowed, an empty file.
    for (body, code) in [
        (
            json!({"name": "big.pdf", "size": 11 * 1024 * 1024, "type": "application/pdf"}),
            "TOO_LARGE",
        ),
        (
            json!({"name": "x.html", "size": 10, "type": "text/html"}),
            "INVALID",
        ),
        (
            json!({"name": "e.pdf", "size": 0, "type": "application/pdf"}),
            "INVALID",
        ),
    ] {
        let (status, reply) =
            http(&w, "POST", &format!("/rooms/{room}/uploads"), &alice, &body).await;
        assert!(status >= 400, "{reply}");
        assert_eq!(reply["code"], code, "{reply}");
    }
}
