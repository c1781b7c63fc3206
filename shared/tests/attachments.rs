//! Attachments through the service's front door (frames and the HTTP API) over the memory
//! stores: the flow of docs/protocol.md ("Attachments") and every bad input the issue names.

#![allow(
    clippy::unwrap_used,
    reason = "tests: a failing store call or a missing frame is a test failure"
)]

use std::sync::Arc;

use futures::executor::block_on;
use roomcast_core::attachments::{ABANDONED_AFTER_MS, UPLOAD_WINDOW_MS, UploadQuota};
use roomcast_core::auth::{Claims, Role};
use roomcast_core::http::{HttpReply, HttpRequest, handle};
use roomcast_core::service::{Inbound, ServiceConfig, Upgrade};
use roomcast_core::store::memory_attachments::{MemoryAttachments, MemoryBlobs};
use roomcast_core::store::{AttachmentIndex, BlobStore, RoomRef};
use roomcast_testkit::service::TestService;
use serde_json::{Value, json};

const TENANT: &str = "acme";

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

struct World {
    ts: TestService,
    index: Arc<MemoryAttachments>,
    blobs: Arc<MemoryBlobs>,
}

impl World {
    fn new() -> Self {
        Self::with_quota(UploadQuota::default())
    }

    fn with_quota(quota: UploadQuota) -> Self {
        let (ts, index, blobs) = TestService::new(ServiceConfig::default()).with_attachments(quota);
        Self { ts, index, blobs }
    }

    fn token_in(&self, tenant: &str, user: &str, rooms: &[&str]) -> String {
        self.ts.sign(&Claims {
            sub: Some(user.into()),
            tid: Some(tenant.into()),
            rooms: rooms.iter().map(|r| (*r).to_owned()).collect(),
            exp: Some(self.ts.now() / 1000 + 3_600),
            ..Claims::default()
        })
    }

    fn token(&self, user: &str, rooms: &[&str]) -> String {
        self.token_in(TENANT, user, rooms)
    }

    fn http(&self, method: &str, path: &str, token: &str, body: &Value) -> HttpReply {
        let authorization = format!("Bearer {token}");
        let body = body.to_string();
        let request = HttpRequest {
            method,
            path,
            query: None,
            authorization: Some(&authorization),
            body: body.as_bytes(),
            origin: None,
            client_ip: None,
        };
        block_on(handle(&self.ts.service, &request, None, self.ts.now()))
    }

    /// A slot for `user` in `room`: the reply's body (201 expected by the caller).
    fn slot(&self, user: &str, room: &str, name: &str, size: usize, ty: &str) -> HttpReply {
        let token = self.token(user, &[room]);
        let body = json!({"name": name, "size": size, "type": ty});
        self.http("POST", &format!("/rooms/{room}/uploads"), &token, &body)
    }

    /// Grants and uploads `bytes`; the attachment id.
    fn uploaded(&self, user: &str, room: &str, name: &str, ty: &str, bytes: &[u8]) -> String {
        let reply = self.slot(user, room, name, bytes.len(), ty);
        assert_eq!(reply.status, 201, "{:?}", reply.body);
        let url = reply.body["upload"]["url"].as_str().unwrap();
        assert_eq!(reply.body["upload"]["method"], "PUT");
        self.blobs.upload(url, bytes, self.ts.now()).unwrap();
        reply.body["id"].as_str().unwrap().to_owned()
    }

    /// A connection of `user` joined to `room`.
    fn member(&self, user: &str, room: &str) -> String {
        let id = format!("{user}-{room}");
        let token = self.token(user, &[room]);
        let upgrade = Upgrade {
            token_param: Some(&token),
            protocols: None,
            origin: None,
        };
        block_on(self.ts.service.connect(&id, upgrade, self.ts.now())).unwrap();
        self.send(&id, &json!({"action": "join", "room": room}));
        self.ts.gateway.take(&id);
        id
    }

    fn send(&self, conn: &str, frame: &Value) -> Vec<Value> {
        let text = frame.to_string();
        block_on(
            self.ts
                .service
                .frame(conn, Inbound::Text(&text), self.ts.now()),
        );
        self.ts.gateway.take(conn)
    }

    /// Sends a message carrying `ids`; the sender's reply frame.
    fn say_with(&self, conn: &str, room: &str, id: &str, ids: &[&str]) -> Value {
        let refs: Vec<Value> = ids.iter().map(|i| json!({"id": i})).collect();
        let frame =
            json!({"action": "message", "room": room, "id": id, "body": "", "attachments": refs});
        let frames = self.send(conn, &frame);
        // Presence of others joining may be queued before the reply.
        let mut replies = frames
            .into_iter()
            .filter(|f| f["type"] == "ack" || f["type"] == "error");
        let reply = replies.next().unwrap();
        assert!(replies.next().is_none());
        reply
    }
}

fn code(frame: &Value) -> &str {
    assert_eq!(frame["type"], "error", "{frame}");
    frame["code"].as_str().unwrap()
}

#[test]
fn an_uploaded_image_reaches_the_room_with_its_metadata_and_downloads_for_members() {
    let w = World::new();
    let alice = w.member("alice", "lobby");
    let bob = w.member("bob", "lobby");
    let bytes = png(5_000);
    let id = w.uploaded("alice", "lobby", "cat.png", "image/png", &bytes);
    let ack = w.say_with(&alice, "lobby", "m1", &[&id]);
    assert_eq!(ack["type"], "ack", "{ack}");
    let got = w.ts.gateway.take(&bob);
    let message = &got[0];
    assert_eq!(message["type"], "message");
    assert_eq!(
        message["attachments"],
        json!([{"id": id, "name": "cat.png", "size": 5000, "type": "image/png", "width": 3, "height": 2}])
    );
    let history = w.send(&bob, &json!({"action": "history", "room": "lobby"}));
    assert_eq!(history[0]["messages"][0]["attachments"][0]["id"], id);

    let link = w.http(
        "GET",
        &format!("/rooms/lobby/attachments/{id}"),
        &w.token("bob", &["lobby"]),
        &Value::Null,
    );
    assert_eq!(link.status, 200, "{:?}", link.body);
    assert_eq!(link.body["inline"], true);
    let (downloaded, headers) = w
        .blobs
        .download(link.body["url"].as_str().unwrap(), w.ts.now())
        .unwrap();
    assert_eq!(downloaded, bytes, "byte-identical");
    assert!(headers.contains(&("content-type", "image/png".to_owned())));
    w.ts.advance(roomcast_core::attachments::DOWNLOAD_LINK_MS);
    assert!(
        w.blobs
            .download(link.body["url"].as_str().unwrap(), w.ts.now())
            .is_none(),
        "an expired link is refused"
    );
}

#[test]
fn non_members_and_other_tenants_get_no_link() {
    let w = World::new();
    let alice = w.member("alice", "lobby");
    let id = w.uploaded("alice", "lobby", "a.pdf", "application/pdf", &pdf(100));
    assert_eq!(w.say_with(&alice, "lobby", "m1", &[&id])["type"], "ack");
    let path = format!("/rooms/lobby/attachments/{id}");
    let outsider = w.http("GET", &path, &w.token("eve", &["elsewhere"]), &Value::Null);
    assert_eq!(
        (outsider.status, &outsider.body["code"]),
        (403, &json!("FORBIDDEN"))
    );
    let other_tenant = w.token_in("globex", "eve", &["lobby"]);
    let foreign = w.http("GET", &path, &other_tenant, &Value::Null);
    assert_eq!(
        (foreign.status, &foreign.body["code"]),
        (404, &json!("NOT_FOUND"))
    );
    let unsigned = w.http("GET", &path, "not-a-token", &Value::Null);
    assert_eq!(unsigned.status, 401);
}

#[test]
fn slots_are_refused_for_size_type_and_non_members_and_names_are_made_safe() {
    let w = World::new();
    let too_big = w.slot(
        "alice",
        "lobby",
        "big.png",
        10 * 1024 * 1024 + 1,
        "image/png",
    );
    assert_eq!(
        (too_big.status, &too_big.body["code"]),
        (413, &json!("TOO_LARGE"))
    );
    let exe = w.slot("alice", "lobby", "x.exe", 10, "application/x-msdownload");
    assert_eq!((exe.status, &exe.body["code"]), (400, &json!("INVALID")));
    let empty = w.slot("alice", "lobby", "x.txt", 0, "text/plain");
    assert_eq!(empty.status, 400);
    let token = w.token("alice", &["lobby"]);
    let elsewhere = w.http(
        "POST",
        "/rooms/staff/uploads",
        &token,
        &json!({"name": "a.png", "size": 10, "type": "image/png"}),
    );
    assert_eq!(elsewhere.status, 403);
    let sneaky = w.slot(
        "alice",
        "lobby",
        "../../etc/\u{202e}gnp.exe\0",
        10,
        "image/png",
    );
    assert_eq!(sneaky.status, 201, "{:?}", sneaky.body);
    let name = sneaky.body["name"].as_str().unwrap();
    assert!(!name.contains(['/', '\\', '\0', '\u{202e}']), "{name:?}");
    let garbage = w.http(
        "POST",
        "/rooms/lobby/uploads",
        &token,
        &json!({"name": "a"}),
    );
    assert_eq!(
        (garbage.status, &garbage.body["code"]),
        (400, &json!("BAD_FRAME"))
    );
}

#[test]
fn the_upload_action_grants_a_slot_over_the_socket() {
    let w = World::new();
    let alice = w.member("alice", "lobby");
    let reply = w.send(
        &alice,
        &json!({"action": "upload", "room": "lobby", "name": "a.txt", "size": 5, "type": "text/plain", "ref": "u1"}),
    );
    assert_eq!(reply[0]["type"], "upload", "{reply:?}");
    assert_eq!(reply[0]["ref"], "u1");
    let url = reply[0]["upload"]["url"].as_str().unwrap();
    w.blobs.upload(url, b"hello", w.ts.now()).unwrap();
    let id = reply[0]["id"].as_str().unwrap();
    assert_eq!(w.say_with(&alice, "lobby", "m1", &[id])["type"], "ack");
    let not_joined = w.send(
        &alice,
        &json!({"action": "upload", "room": "other", "name": "a.txt", "size": 5, "type": "text/plain"}),
    );
    assert_eq!(code(&not_joined[0]), "NOT_MEMBER");
}

#[test]
fn uploads_must_be_the_announced_size_and_in_time() {
    let w = World::new();
    let reply = w.slot("alice", "lobby", "a.pdf", 100, "application/pdf");
    let url = reply.body["upload"]["url"].as_str().unwrap();
    let larger = w.blobs.upload(url, &pdf(101), w.ts.now()).unwrap_err();
    assert_eq!(larger.status(), 413);
    assert_eq!(
        w.blobs
            .upload(url, &pdf(99), w.ts.now())
            .unwrap_err()
            .status(),
        400
    );
    w.ts.advance(UPLOAD_WINDOW_MS);
    let expired = w.blobs.upload(url, &pdf(100), w.ts.now()).unwrap_err();
    assert_eq!(expired.status(), 403, "an expired slot takes nothing");
    let alice = w.member("alice", "lobby");
    let id = reply.body["id"].as_str().unwrap();
    assert_eq!(
        code(&w.say_with(&alice, "lobby", "m1", &[id])),
        "INVALID",
        "not uploaded"
    );
}

#[test]
fn the_bytes_must_be_what_was_declared() {
    let w = World::new();
    let alice = w.member("alice", "lobby");
    let lying = w.uploaded("alice", "lobby", "cat.png", "image/png", &pdf(64));
    assert_eq!(
        code(&w.say_with(&alice, "lobby", "m1", &[&lying])),
        "INVALID"
    );
    let script = b"<svg xmlns='http://www.w3.org/2000/svg'><script>alert(1)</script></svg>";
    let svg_as_png = w.uploaded("alice", "lobby", "x.png", "image/png", script);
    assert_eq!(
        code(&w.say_with(&alice, "lobby", "m2", &[&svg_as_png])),
        "INVALID"
    );
    // Declared as what it is, an SVG is a file to download, never an image to show.
    let svg = w.uploaded("alice", "lobby", "x.svg", "image/svg+xml", script);
    assert_eq!(w.say_with(&alice, "lobby", "m3", &[&svg])["type"], "ack");
    let link = w.http(
        "GET",
        &format!("/rooms/lobby/attachments/{svg}"),
        &w.token("alice", &["lobby"]),
        &Value::Null,
    );
    assert_eq!(link.body["inline"], false);
    let (_, headers) = w
        .blobs
        .download(link.body["url"].as_str().unwrap(), w.ts.now())
        .unwrap();
    assert!(headers.contains(&("content-type", "application/octet-stream".to_owned())));
    assert!(
        headers
            .iter()
            .any(|(k, v)| *k == "content-disposition" && v.starts_with("attachment"))
    );
    assert!(headers.contains(&("x-content-type-options", "nosniff".to_owned())));
}

#[test]
fn an_attachment_goes_on_one_message_of_its_room_by_its_uploader() {
    let w = World::new();
    let alice = w.member("alice", "lobby");
    let bob = w.member("bob", "lobby");
    let id = w.uploaded("alice", "lobby", "a.pdf", "application/pdf", &pdf(50));
    assert_eq!(
        code(&w.say_with(&bob, "lobby", "b1", &[&id])),
        "FORBIDDEN",
        "another user's"
    );
    let alice_elsewhere = w.member("alice", "side");
    assert_eq!(
        code(&w.say_with(&alice_elsewhere, "side", "m0", &[&id])),
        "NOT_FOUND"
    );
    let first = w.say_with(&alice, "lobby", "m1", &[&id]);
    assert_eq!(first["type"], "ack");
    let resent = w.say_with(&alice, "lobby", "m1", &[&id]);
    assert_eq!(
        (resent["type"].as_str(), resent["duplicate"].as_bool()),
        (Some("ack"), Some(true))
    );
    assert_eq!(
        code(&w.say_with(&alice, "lobby", "m2", &[&id])),
        "CONFLICT",
        "reused"
    );
    // A failed message releases what it claimed: the good attachment is usable again.
    let good = w.uploaded("alice", "lobby", "b.pdf", "application/pdf", &pdf(50));
    assert_eq!(
        code(&w.say_with(&alice, "lobby", "m3", &[&good, &id])),
        "CONFLICT"
    );
    let reply = w.say_with(&alice, "lobby", "m4", &[&good]);
    assert_eq!(reply["type"], "ack", "{reply}");
    w.ts.gateway.take(&bob);
}

#[test]
fn an_attachment_id_of_another_tenant_is_not_found() {
    let w = World::new();
    let id = w.uploaded("alice", "lobby", "a.pdf", "application/pdf", &pdf(50));
    let token = w.token_in("globex", "alice", &["lobby"]);
    let upgrade = Upgrade {
        token_param: Some(&token),
        protocols: None,
        origin: None,
    };
    block_on(w.ts.service.connect("g1", upgrade, w.ts.now())).unwrap();
    w.send("g1", &json!({"action": "join", "room": "lobby"}));
    assert_eq!(code(&w.say_with("g1", "lobby", "m1", &[&id])), "NOT_FOUND");
}

#[test]
fn deleting_a_message_deletes_its_bytes() {
    let w = World::new();
    let alice = w.member("alice", "lobby");
    let id = w.uploaded("alice", "lobby", "a.pdf", "application/pdf", &pdf(50));
    let ack = w.say_with(&alice, "lobby", "m1", &[&id]);
    let seq = ack["seq"].as_u64().unwrap();
    let key = format!("{TENANT}/lobby/{id}");
    assert!(block_on(w.blobs.head(&key, 8)).unwrap().is_some());
    w.send(
        &alice,
        &json!({"action": "delete", "room": "lobby", "seq": seq}),
    );
    assert!(
        block_on(w.blobs.head(&key, 8)).unwrap().is_none(),
        "bytes deleted"
    );
    let room = RoomRef::new(TENANT, "lobby");
    assert_eq!(block_on(w.index.slot(&room, &id)).unwrap(), None);
    let link = w.http(
        "GET",
        &format!("/rooms/lobby/attachments/{id}"),
        &w.token("alice", &["lobby"]),
        &Value::Null,
    );
    assert_eq!(link.status, 404);
}

#[test]
fn uploads_never_attached_are_swept_after_a_day() {
    let w = World::new();
    let alice = w.member("alice", "lobby");
    let kept = w.uploaded("alice", "lobby", "a.pdf", "application/pdf", &pdf(50));
    assert_eq!(w.say_with(&alice, "lobby", "m1", &[&kept])["type"], "ack");
    let abandoned = w.uploaded("alice", "lobby", "b.pdf", "application/pdf", &pdf(50));
    w.ts.advance(ABANDONED_AFTER_MS - 1);
    assert_eq!(
        block_on(w.ts.service.sweep_abandoned_uploads(w.ts.now(), 100)),
        0
    );
    w.ts.advance(1);
    assert_eq!(
        block_on(w.ts.service.sweep_abandoned_uploads(w.ts.now(), 100)),
        1
    );
    let room = RoomRef::new(TENANT, "lobby");
    let abandoned_key = format!("{TENANT}/lobby/{abandoned}");
    assert!(block_on(w.blobs.head(&abandoned_key, 8)).unwrap().is_none());
    assert_eq!(block_on(w.index.slot(&room, &abandoned)).unwrap(), None);
    let kept_key = format!("{TENANT}/lobby/{kept}");
    assert!(
        block_on(w.blobs.head(&kept_key, 8)).unwrap().is_some(),
        "attached ones stay"
    );
}

#[test]
fn thousands_of_slot_requests_hit_the_quota() {
    let w = World::with_quota(UploadQuota {
        user_count: 50,
        ..UploadQuota::default()
    });
    let token = w.token("alice", &["lobby"]);
    let body = json!({"name": "a.png", "size": 10, "type": "image/png"});
    let statuses: Vec<u16> = (0..2_000)
        .map(|_| w.http("POST", "/rooms/lobby/uploads", &token, &body))
        .map(|r| {
            if r.status == 429 {
                assert!(
                    matches!(
                        r.body["code"].as_str(),
                        Some("LIMIT_EXCEEDED" | "RATE_LIMITED")
                    ),
                    "{:?}",
                    r.body
                );
            }
            r.status
        })
        .collect();
    let granted = statuses.iter().filter(|s| **s == 201).count();
    assert!(granted <= 50, "{granted} slots granted past the quota");
    let limit = w.http("POST", "/rooms/lobby/uploads", &token, &body);
    assert_eq!(limit.status, 429);
    let bob = w.slot("bob", "lobby", "a.png", 10, "image/png");
    assert_eq!(bob.status, 201, "another user's quota is their own");
}

#[test]
fn a_service_publishes_with_its_own_uploads() {
    let w = World::new();
    let bot = w.ts.sign(&Claims {
        sub: Some("backend".into()),
        tid: Some(TENANT.into()),
        role: Role::Service,
        exp: Some(w.ts.now() / 1000 + 3_600),
        ..Claims::default()
    });
    let reply = w.http(
        "POST",
        "/rooms/lobby/uploads",
        &bot,
        &json!({"name": "r.csv", "size": 6, "type": "text/csv"}),
    );
    assert_eq!(reply.status, 201, "{:?}", reply.body);
    w.blobs
        .upload(
            reply.body["upload"]["url"].as_str().unwrap(),
            b"a,b\n1,",
            w.ts.now(),
        )
        .unwrap();
    let id = reply.body["id"].as_str().unwrap();
    let published = w.http(
        "POST",
        "/rooms/lobby/messages",
        &bot,
        &json!({"id": "p1", "from": "bot", "attachments": [{"id": id}]}),
    );
    assert_eq!(published.status, 201, "{:?}", published.body);
}
