//! The deploy templates (terraform/ and infra/template.yaml) against the code: this fails when
//! they disagree.
//!
//! - every function binary is deployed by both, on the route its `main` serves;
//! - the table is the one `DynamoStore::ensure_table` creates (keys, indexes, TTL attribute),
//!   read back from a real DynamoDB (moto);
//! - every function gets exactly the environment variables the code's deployments set
//!   (`env::DEPLOYED`), and never a plain-text key;
//! - each function's IAM grants exactly the DynamoDB actions its code calls, and the Management
//!   API only to functions that call it. What the code calls is observed, not declared: each
//!   function's events (every action a route carries, with a vanished client so the 410 clean-up
//!   runs too) are played through the Lambda runtime on moto while an SDK interceptor records
//!   every DynamoDB operation and the Management API fake counts its requests;
//! - no IAM action is a wildcard;
//! - (big rooms' fan-out) the `fanout` function is deployed by both with the DynamoDB actions
//!   its handler is observed to call (a slice with a vanished recipient), only `message` and
//!   `http` may invoke it (`InvokeFanout`, on it alone), and `ROOMCAST_FANOUT_FUNCTION` names it;
//! - (integration events) the functions no API Gateway route invokes, `events` (the table's
//!   stream) and `deliver` (the deliveries queue), have their binaries and are deployed by both
//!   with the DynamoDB actions [`EVENT_FUNCTIONS`] states (not observed: their handlers are not
//!   driven here), and the two templates agree, reference for reference, on the table's stream,
//!   the queues (encryption, retention, visibility, redrive, TLS-only policies), the event source
//!   mappings and every setting of theirs (the stream's filter patterns are the code's
//!   `STREAM_FILTER_PATTERNS`, compared parsed), every function's IAM statements (the queue,
//!   stream and secret ones checked against [`extra_statements`]), the alarms, the webhook
//!   variables and the queue outputs; the values are the ones docs/deploy.md and docs/events.md
//!   promise;
//! - (`deploy_properties`) the deployment properties docs/deploy.md promises: table deletion
//!   protection a variable on by default; no auto-deploy, and deployments replaced when routes or
//!   integrations change (Terraform triggers; SAM's hash in the logical ID); the SAM stage's
//!   conditional wait on the API Gateway account; `manage_api_gateway_account` off; the JWT key
//!   parameter read at plan; AWS provider 6 without deprecated attributes; no hard-coded
//!   `amazonaws.com`; `required_version` equal to the newest feature used; API Gateway alarms and
//!   execution logs; SAM deploying Terraform's zips; `--region` on every AWS command of the doc.
//!
//! The templates are parsed by `scripts/deploy_model.py` (python-hcl2 and PyYAML, in the venv the
//! test command installs; `ROOMCAST_DEPLOY_PYTHON` names its interpreter).
#![allow(
    clippy::unwrap_used,
    reason = "test code: a failing call is a test failure"
)]

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

use roomcast_aws::dynamo::STREAM_FILTER_PATTERNS;
use roomcast_aws::dynamo::{ATTR_PK, ATTR_SK, ATTR_TTL};
use roomcast_aws::lambda::env;
use roomcast_aws::s3::{PENDING, TAG_KEY};
use roomcast_core::auth::{Claims, Role, TokenSigner};
use roomcast_core::http::{self, HttpRequest};
use roomcast_testkit::aws::lambda::{SECRET, World, post_upload, world_with};
use serde_json::{Value, json};

/// The HTTP API's routes (shared/src/http.rs serves these and answers 404 to anything else).
const HTTP_ROUTES: &[&str] = &[
    "GET /health",
    "GET /rooms/{room}/messages",
    "POST /rooms/{room}/messages",
    "POST /rooms/{room}/uploads",
    "GET /rooms/{room}/attachments/{id}",
    "POST /embed/token",
];

/// The functions event source mappings invoke (no API Gateway route) and the DynamoDB actions
/// their code calls: `events` reads the endpoints (Query, GetItem) and writes or removes the
/// operator's endpoint item at cold start (PutItem, DeleteItem); `deliver` reads the endpoint
/// (GetItem) and writes attempt records and dead letters (PutItem). Stated, not observed: the
/// deploy test does not drive their handlers (the handler tests do).
const EVENT_FUNCTIONS: &[(&str, &[&str])] = &[
    ("deliver", &["GetItem", "PutItem"]),
    (
        "events",
        &[
            "BatchWriteItem",
            "DeleteItem",
            "GetItem",
            "PutItem",
            "Query",
        ],
    ),
];

/// The DynamoDB Streams actions the events function's event source mapping needs (only in its
/// `ReadStream` and `ListStreams` statements: [`extra_statements`]).
const IAM_DYNAMODB_STREAM_ACTIONS: &[&str] = &[
    "DescribeStream",
    "GetRecords",
    "GetShardIterator",
    "ListStreams",
];

/// DynamoDB IAM actions that exist. `TransactWriteItems` is not one: DynamoDB authorizes each
/// item of a transaction by its own action.
const IAM_DYNAMODB_ACTIONS: &[&str] = &[
    "BatchGetItem",
    "BatchWriteItem",
    "ConditionCheckItem",
    "DeleteItem",
    "GetItem",
    "PutItem",
    "Query",
    "Scan",
    "UpdateItem",
];

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The names of the binaries in src/bin.
fn binary_names() -> BTreeSet<String> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/bin");
    std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| {
            let path = e.unwrap().path();
            path.file_stem().unwrap().to_str().unwrap().to_owned()
        })
        .collect()
}

/// Every API function's binary in src/bin and the route its `main` serves (`None`: the HTTP
/// API); the [`EVENT_FUNCTIONS`] aside.
fn binaries() -> BTreeMap<String, Option<String>> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/bin");
    let mut out = BTreeMap::new();
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_stem().unwrap().to_str().unwrap().to_owned();
        if EVENT_FUNCTIONS.iter().any(|(f, _)| *f == name) {
            continue;
        }
        let source = read(&path);
        let route = if let Some(rest) = source.split("run_websocket_function(\"").nth(1) {
            Some(rest.split('"').next().unwrap().to_owned())
        } else {
            assert!(
                source.contains("run_http_function()") || source.contains("run_fanout_function()"),
                "{name} runs neither a WebSocket, the HTTP nor the fanout function"
            );
            None
        };
        out.insert(name, route);
    }
    out
}

/// The actions a transaction's items need: the item kinds the store (src/dynamo/) puts in
/// TransactWriteItems.
fn transaction_item_actions() -> BTreeSet<String> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/dynamo");
    let source: String = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|entry| read(&entry.unwrap().path()))
        .collect();
    [
        ("Put::builder()", "PutItem"),
        ("Update::builder()", "UpdateItem"),
        ("Delete::builder()", "DeleteItem"),
        ("ConditionCheck::builder()", "ConditionCheckItem"),
    ]
    .into_iter()
    .filter(|(builder, _)| source.contains(builder))
    .map(|(_, action)| action.to_owned())
    .collect()
}

/// The IAM actions needed for the recorded operations.
fn iam_actions(operations: &BTreeSet<String>) -> BTreeSet<String> {
    let mut actions = BTreeSet::new();
    for op in operations {
        if op == "TransactWriteItems" {
            actions.extend(transaction_item_actions());
        } else {
            actions.insert(op.clone());
        }
    }
    actions
}

/// What a function was seen to call: DynamoDB operations and whether the Management API.
#[derive(Debug, Default)]
struct Observed {
    operations: BTreeSet<String>,
    management: bool,
}

fn signed(user: &str, role: Role, rooms: &[&str]) -> String {
    let claims = Claims {
        sub: Some(user.into()),
        tid: Some("acme".into()),
        rooms: rooms.iter().map(|r| (*r).to_owned()).collect(),
        role,
        exp: Some(roomcast_testkit::aws::lambda::now_ms() / 1000 + 3600),
        ..Claims::default()
    };
    TokenSigner::hs256(SECRET.as_bytes()).sign(&claims)
}

/// What the deploy test asks of the handler tests' world.
trait Observing {
    /// What ran since the last look.
    fn observed(&self) -> Observed;
    /// A fresh connection of `user` in `rooms`, then forgets everything recorded.
    async fn member(&self, conn: &str, user: &str, role: Role, rooms: &[&str]);
    /// A member of `support-1` with two connections, one of whose clients then vanishes: the
    /// next fan-out meets a 410 and cleans it up, while the user stays online.
    async fn vanishing_member(&self, conn: &str);
}

impl Observing for World {
    /// What ran since the last look.
    fn observed(&self) -> Observed {
        let mut c = self.connections.lock().unwrap();
        let management = c.calls > 0;
        c.calls = 0;
        Observed {
            operations: self.operations.take(),
            management,
        }
    }

    /// A fresh connection of `user` in `rooms`, then forgets everything recorded.
    async fn member(&self, conn: &str, user: &str, role: Role, rooms: &[&str]) {
        let grants: Vec<&str> = rooms.iter().copied().chain(["support-*"]).collect();
        assert_eq!(
            self.connect(conn, &signed(user, role, &grants))
                .await
                .status_code,
            200
        );
        for room in rooms {
            self.frame(conn, "$default", json!({"action": "join", "room": room}))
                .await;
        }
        self.observed();
    }

    /// A member of `support-1` with two connections, one of whose clients then vanishes: the
    /// next fan-out meets a 410 and cleans it up, while the user stays online.
    async fn vanishing_member(&self, conn: &str) {
        let user = format!("user-{conn}");
        self.member(&format!("{conn}-stays"), &user, Role::User, &["support-1"])
            .await;
        self.member(conn, &user, Role::User, &["support-1"]).await;
        self.vanish(conn);
    }
}

/// The attachments bucket of the observed functions, on the world's moto.
const BUCKET: &str = "deploy-attachments";

/// Creates [`BUCKET`] on the world's moto.
async fn attachments_bucket(w: &World) {
    let config = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .region(aws_config::Region::new("us-east-1"))
        .endpoint_url(&w.dynamo.endpoint)
        .credentials_provider(aws_sdk_s3::config::Credentials::new(
            "test", "test", None, None, "test",
        ))
        .load()
        .await;
    aws_sdk_s3::Client::new(&config)
        .create_bucket()
        .bucket(BUCKET)
        .send()
        .await
        .unwrap();
}

/// A slot `conn` asks for with the `upload` action (on `$default`), with a PDF uploaded to it:
/// the attachment id.
async fn uploaded(w: &World, conn: &str) -> String {
    let mut pdf = b"%PDF-1.7\n".to_vec();
    pdf.resize(300, b'x');
    w.frame(
        conn,
        "$default",
        json!({"action": "upload", "room": "support-1", "name": "a.pdf", "size": pdf.len(), "type": "application/pdf"}),
    )
    .await;
    let reply = w
        .received(conn)
        .into_iter()
        .find(|f| f["type"] == "upload")
        .expect("an upload slot");
    assert!((200..300).contains(&post_upload(&reply["upload"], &pdf).await));
    reply["id"].as_str().unwrap().to_owned()
}

/// Plays every function's events and records what each called.
async fn observe_functions(w: &World) -> BTreeMap<&'static str, Observed> {
    let mut seen = BTreeMap::new();
    w.member("agent", "ann", Role::Agent, &["inbox", "support-1"])
        .await;
    w.member("bob", "bob", Role::User, &["support-1"]).await;

    // $connect: accepted (user, agent) and refused (bad token).
    w.connect("alice", &signed("alice", Role::User, &["support-*"]))
        .await;
    w.connect("ann-2", &signed("ann", Role::Agent, &["support-*"]))
        .await;
    w.connect("mallory", "not-a-token").await;
    seen.insert("connect", w.observed());
    w.frame(
        "alice",
        "$default",
        json!({"action": "join", "room": "support-1"}),
    )
    .await;
    let attachment = uploaded(w, "alice").await;
    w.observed();

    // message: new (opens the support conversation), resent, refused; a vanished recipient.
    w.vanishing_member("ghost-m").await;
    for body in [
        json!({"action": "message", "room": "support-1", "id": "m1", "body": "hello?"}),
        json!({"action": "message", "room": "support-1", "id": "m1", "body": "hello?"}),
        json!({"action": "message", "room": "elsewhere", "id": "m2", "body": "x"}),
        // With an attachment: the slot read, the claim (the S3 calls are not DynamoDB's).
        json!({"action": "message", "room": "support-1", "id": "m3", "body": "", "attachments": [{"id": attachment}]}),
        json!({"action": "message", "room": "support-1", "id": "m4", "body": "", "attachments": [{"id": "att_missing0000000000000000"}]}),
    ] {
        w.frame("alice", "message", body).await;
    }
    seen.insert("message", w.observed());

    // typing, with a vanished recipient.
    w.vanishing_member("ghost-t").await;
    w.frame(
        "alice",
        "typing",
        json!({"action": "typing", "room": "support-1", "state": "start"}),
    )
    .await;
    seen.insert("typing", w.observed());

    // $default: every other action, with a vanished recipient, and a frame on a connection
    // the store no longer knows.
    w.vanishing_member("ghost-d").await;
    for (conn, body) in [
        (
            "bob",
            json!({"action": "join", "room": "support-1", "since": 0}),
        ),
        (
            "bob",
            json!({"action": "read", "room": "support-1", "seq": 1}),
        ),
        (
            "bob",
            json!({"action": "history", "room": "support-1", "limit": 10}),
        ),
        ("bob", json!({"action": "presence", "status": "away"})),
        (
            "bob",
            json!({"action": "upload", "room": "support-1", "name": "b.png", "size": 10, "type": "image/png"}),
        ),
        (
            "bob",
            json!({"action": "message", "room": "support-1", "id": "b1", "body": "hi"}),
        ),
        (
            "bob",
            json!({"action": "edit", "room": "support-1", "seq": 3, "body": "hey"}),
        ),
        (
            "bob",
            json!({"action": "delete", "room": "support-1", "seq": 3}),
        ),
        ("agent", json!({"action": "assign", "room": "support-1"})),
        ("agent", json!({"action": "close", "room": "support-1"})),
        ("bob", json!({"action": "leave", "room": "support-1"})),
        ("bob", json!({"action": "ping"})),
        ("bob", json!({"action": "fly"})),
        ("bob", json!("not an object")),
        ("unknown-conn", json!({"action": "ping"})),
    ] {
        w.frame(conn, "$default", body).await;
    }
    seen.insert("default", w.observed());

    // $disconnect: of one of a user's two connections, of a user's last connection (its offline
    // notice meets a vanished member), of an unknown connection.
    w.vanishing_member("ghost-x").await;
    w.member("alice-2", "alice", Role::User, &["support-1"])
        .await;
    w.disconnect("alice-2").await;
    w.disconnect("alice").await;
    w.disconnect("never-connected").await;
    seen.insert("disconnect", w.observed());

    // The HTTP API: health, history, publish (a vanished recipient), refusals.
    w.vanishing_member("ghost-h").await;
    let service = format!("Bearer {}", signed("bot", Role::Service, &[]));
    let reader = format!("Bearer {}", signed("bob", Role::User, &["support-*"]));
    let publish = json!({"id": "p1", "body": "from the bot"}).to_string();
    let rt = &w.runtime;
    rt.handle_http(&HttpRequest {
        method: "GET",
        path: "/health",
        authorization: None,
        query: None,
        body: b"",
        origin: None,
        client_ip: None,
    })
    .await;
    rt.handle_http(&HttpRequest {
        method: "GET",
        path: "/rooms/support-1/messages",
        authorization: Some(&reader),
        query: Some("limit=5"),
        body: b"",
        origin: None,
        client_ip: None,
    })
    .await;
    for auth in [&service, &reader] {
        rt.handle_http(&HttpRequest {
            method: "POST",
            path: "/rooms/support-1/messages",
            authorization: Some(auth),
            query: None,
            body: publish.as_bytes(),
            origin: None,
            client_ip: None,
        })
        .await;
    }
    let slot = json!({"name": "c.pdf", "size": 10, "type": "application/pdf"}).to_string();
    rt.handle_http(&HttpRequest {
        method: "POST",
        path: "/rooms/support-1/uploads",
        authorization: Some(&reader),
        query: None,
        body: slot.as_bytes(),
        origin: None,
        client_ip: None,
    })
    .await;
    rt.handle_http(&HttpRequest {
        method: "GET",
        path: &format!("/rooms/support-1/attachments/{attachment}"),
        authorization: Some(&reader),
        query: None,
        body: b"",
        origin: None,
        client_ip: None,
    })
    .await;
    seen.insert("http", w.observed());

    // fanout: a slice handed off by message or http, one of whose recipients vanished.
    w.vanishing_member("ghost-f").await;
    let slice = json!({
        "frame": {"type": "message", "room": "support-1", "seq": 1, "body": "slice"},
        "connections": ["bob", "ghost-f"],
    });
    w.runtime
        .handle_fanout(serde_json::from_value(slice).unwrap())
        .await
        .unwrap();
    seen.insert("fanout", w.observed());
    seen
}

/// The templates, as `scripts/deploy_model.py` reads them.
fn templates() -> Value {
    let python = std::env::var("ROOMCAST_DEPLOY_PYTHON").unwrap_or_else(|_| {
        let cache = std::env::var("XDG_CACHE_HOME")
            .unwrap_or_else(|_| format!("{}/.cache", std::env::var("HOME").unwrap()));
        format!("{cache}/roomcast/deploy-venv/bin/python")
    });
    let root = repo();
    let out = Command::new(&python)
        .arg(root.join("scripts/deploy_model.py"))
        .arg(root.join("terraform"))
        .arg(root.join("infra/template.yaml"))
        .output()
        .unwrap_or_else(|e| {
            panic!("cannot run {python} (run scripts/test.sh, which installs it): {e}")
        });
    assert!(
        out.status.success(),
        "deploy_model.py failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

fn strings(v: &Value) -> BTreeSet<String> {
    v.as_array()
        .unwrap_or_else(|| panic!("a list: {v}"))
        .iter()
        .map(|s| s.as_str().unwrap().to_owned())
        .collect()
}

/// The table `ensure_table` creates, described by DynamoDB itself.
async fn code_table(w: &World) -> Value {
    let client = roomcast_aws::dynamo::emulator_client(&w.dynamo.endpoint).await;
    let table = w.runtime.store().table().to_owned();
    let described = client
        .describe_table()
        .table_name(&table)
        .send()
        .await
        .unwrap()
        .table
        .unwrap();
    let keys: BTreeMap<String, String> = described
        .key_schema()
        .iter()
        .map(|k| {
            (
                k.key_type().as_str().to_owned(),
                k.attribute_name().to_owned(),
            )
        })
        .collect();
    let attributes: Vec<Value> = described
        .attribute_definitions()
        .iter()
        .map(|a| json!([a.attribute_name(), a.attribute_type().as_str()]))
        .collect();
    let mut indexes: Vec<String> = described
        .global_secondary_indexes()
        .iter()
        .filter_map(|g| g.index_name().map(str::to_owned))
        .collect();
    indexes.extend(
        described
            .local_secondary_indexes()
            .iter()
            .filter_map(|l| l.index_name().map(str::to_owned)),
    );
    let ttl = client
        .describe_time_to_live()
        .table_name(&table)
        .send()
        .await
        .unwrap()
        .time_to_live_description
        .and_then(|t| t.attribute_name)
        .unwrap();
    let mut attributes = attributes;
    attributes.sort_by_key(ToString::to_string);
    json!({
        "hash_key": keys["HASH"],
        "range_key": keys["RANGE"],
        "attributes": attributes,
        "ttl_attribute": ttl,
        "indexes": indexes,
    })
}

/// The statements a function's role has beyond the ones every function has (`OwnLogs`,
/// `ChatTable`, `JwtKey`, `StackKey`, `Tracing`, the conditional `JwtKeyParameterKey`) and
/// `ManageConnections`: Sid → (actions, resources, conditional), in the model's reference names.
fn extra_statements(function: &str) -> Value {
    let enqueue = json!({
        "EnqueueDeliveries": {"actions": ["sqs:SendMessage"], "resources": ["queue:deliveries"], "conditional": false},
        "QueueKey": {"actions": ["kms:GenerateDataKey"], "resources": ["stack-key"], "conditional": false},
    });
    // Attachments: the functions that run them (the upload action and messages over
    // WebSocket; uploads, links and publish over HTTP) sign POSTs and GETs, read an upload's
    // first bytes, retag and delete objects in the bucket, and a presigned upload encrypts with
    // the stack key as its signer.
    let attachments = json!({
        "AttachmentObjects": {"actions": ["s3:DeleteObject", "s3:GetObject", "s3:PutObject", "s3:PutObjectTagging"], "resources": ["bucket/*"], "conditional": false},
        "AttachmentKey": {"actions": ["kms:GenerateDataKey"], "resources": ["stack-key"], "conditional": false},
    });
    // Big rooms' slices go to the fanout function (src/fanout.rs): only the functions that
    // split (the message route and the HTTP API's publish) may invoke it, and only it.
    let invoke_fanout = json!({
        "InvokeFanout": {"actions": ["lambda:InvokeFunction"], "resources": ["function:fanout"], "conditional": false},
    });
    let with = |mut a: Value, b: &Value| {
        a.as_object_mut()
            .unwrap()
            .extend(b.as_object().unwrap().clone());
        a
    };
    match function {
        "message" => with(attachments, &invoke_fanout),
        "default" => attachments,
        // The endpoints API's test event and dead-letter replay queue a delivery.
        "http" => with(with(enqueue, &attachments), &invoke_fanout),
        // Its code queues deliveries and reads the operator's secret; its event source mapping
        // reads the stream and sends a failed batch's record to events-failures.
        "events" => {
            let mut s = enqueue;
            s.as_object_mut().unwrap().extend(
                json!({
                    "ReadStream": {"actions": ["dynamodb:DescribeStream", "dynamodb:GetRecords", "dynamodb:GetShardIterator"], "resources": ["table-stream"], "conditional": false},
                    "ListStreams": {"actions": ["dynamodb:ListStreams"], "resources": ["table/stream/*"], "conditional": false},
                    "StreamFailures": {"actions": ["sqs:SendMessage"], "resources": ["queue:events-failures"], "conditional": false},
                    "WebhookSecret": {"actions": ["ssm:GetParameter"], "resources": ["ssm:webhook-secret"], "conditional": true},
                })
                .as_object()
                .unwrap()
                .clone(),
            );
            s
        }
        // Its mapping receives and deletes; its code changes a message's visibility (a retry).
        "deliver" => json!({
            "ConsumeDeliveries": {"actions": ["sqs:ChangeMessageVisibility", "sqs:DeleteMessage", "sqs:GetQueueAttributes", "sqs:ReceiveMessage"], "resources": ["queue:deliveries"], "conditional": false},
        }),
        _ => json!({}),
    }
}

/// Patterns in one order (their JSON text's).
fn sorted(mut patterns: Vec<Value>) -> Vec<Value> {
    patterns.sort_by_key(Value::to_string);
    patterns
}

/// [`STREAM_FILTER_PATTERNS`], parsed, [`sorted`].
fn stream_filter_patterns() -> Vec<Value> {
    sorted(
        STREAM_FILTER_PATTERNS
            .iter()
            .map(|p| serde_json::from_str(p).unwrap())
            .collect(),
    )
}

/// The integration-event pipeline: Terraform and SAM agree on every part, and the parts are
/// what the docs promise.
fn check_pipeline(model: &Value, check: &mut impl FnMut(bool, String)) {
    let tf = &model["terraform"]["pipeline"];
    let sam = &model["sam"]["pipeline"];
    for part in [
        "stream",
        "queues",
        "mappings",
        "alarms",
        "statements",
        "attachments",
        "http_cors",
    ] {
        let (a, b) = (
            tf[part].as_object().unwrap(),
            sam[part].as_object().unwrap(),
        );
        for key in a.keys().chain(b.keys()).collect::<BTreeSet<_>>() {
            check(
                a.get(key) == b.get(key),
                format!(
                    "{part} {key}: terraform {} but sam {}",
                    a.get(key).unwrap_or(&Value::Null),
                    b.get(key).unwrap_or(&Value::Null)
                ),
            );
        }
    }
    // The attachments bucket: private, encrypted with the stack key, TLS only, browsers' POST
    // uploads and GET downloads from the configured origins, unversioned (a deleted message's
    // file is gone), uploads still tagged as the code tags them expire when their slot does.
    let abandoned_days = roomcast_core::attachments::ABANDONED_AFTER_MS / 86_400_000;
    let bucket = json!({
        "public_access_block": [true, true, true, true],
        "ownership": "BucketOwnerEnforced",
        "encryption": {"algorithm": "aws:kms", "key": "stack-key", "bucket_key": true},
        "lifecycle": [
            {"id": "abort-incomplete-multipart-uploads", "enabled": true, "tag": null, "expire_days": null, "abort_multipart_days": 1},
            {"id": "expire-pending-uploads", "enabled": true, "tag": [TAG_KEY, PENDING], "expire_days": abandoned_days, "abort_multipart_days": null},
        ],
        "cors": {"methods": ["GET", "POST"], "origins": "param:attachmentallowedorigins"},
        "tls_only": true,
        "versioned": false,
    });
    check(
        tf["attachments"] == bucket,
        format!(
            "the attachments bucket is {}, not {bucket}",
            tf["attachments"]
        ),
    );
    // The HTTP API's CORS is the core's (`http::cors`): API Gateway answers the preflights.
    let header = |headers: &[(&str, &str)], name: &str| -> Vec<String> {
        let value = headers
            .iter()
            .find(|(n, _)| *n == name)
            .map_or("", |(_, v)| v);
        let mut listed: Vec<String> = value.split(", ").map(str::to_owned).collect();
        listed.sort();
        listed
    };
    let (preflight, response) = (http::cors::PREFLIGHT, http::cors::RESPONSE);
    let cors = json!({
        "allow_origins": header(preflight, "access-control-allow-origin"),
        "allow_methods": header(preflight, "access-control-allow-methods"),
        "allow_headers": header(preflight, "access-control-allow-headers"),
        "expose_headers": header(response, "access-control-expose-headers"),
        "max_age": header(preflight, "access-control-max-age")[0].parse::<u64>().unwrap(),
    });
    check(
        tf["http_cors"] == cors,
        format!(
            "the HTTP API's CORS is {}, the core's {cors}",
            tf["http_cors"]
        ),
    );
    check(
        tf["environment"]["ROOMCAST_ATTACHMENT_BUCKET"] == "bucket-name"
            && sam["environment"]["ROOMCAST_ATTACHMENT_BUCKET"] == "bucket-name",
        "ROOMCAST_ATTACHMENT_BUCKET must name the attachments bucket".to_owned(),
    );
    check(
        tf["stream"] == json!({"enabled": true, "view_type": "NEW_AND_OLD_IMAGES"}),
        format!(
            "the table's stream must carry NEW_AND_OLD_IMAGES: {}",
            tf["stream"]
        ),
    );

    // Timeouts: deliver's batch of 10 concurrent attempts, the queue's visibility six times it.
    for name in ["events", "deliver"] {
        check(
            tf["timeouts"][name] == sam["timeouts"][name] && tf["timeouts"][name].is_u64(),
            format!(
                "{name}'s timeout: terraform {}, sam {}",
                tf["timeouts"][name], sam["timeouts"][name]
            ),
        );
    }
    let deliver_timeout = tf["timeouts"]["deliver"].as_u64().unwrap_or(0);
    check(
        deliver_timeout >= 30,
        format!(
            "deliver's timeout must hold a batch of 10 attempts of up to 20 s: {deliver_timeout}"
        ),
    );

    // Queues: KMS with the stack key, TLS only; deliveries redrives to its DLQ after 50 receives.
    let queue = |retention: u64, redrive: Value| json!({"retention": retention, "kms_key": "stack-key", "redrive": redrive, "tls_only": true});
    let expected = [
        (
            "deliveries",
            queue(
                345_600,
                json!({"target": "queue:deliveries-dlq", "max_receive": 50}),
            ),
        ),
        ("deliveries-dlq", queue(1_209_600, Value::Null)),
        ("events-failures", queue(1_209_600, Value::Null)),
    ];
    let queues = tf["queues"].as_object().unwrap();
    check(
        queues.keys().map(String::as_str).collect::<Vec<_>>()
            == ["deliveries", "deliveries-dlq", "events-failures"],
        format!("the queues are {:?}", queues.keys()),
    );
    for (name, want) in expected {
        let mut got = queues.get(name).cloned().unwrap_or(Value::Null);
        let visibility = got
            .as_object_mut()
            .and_then(|q| q.remove("visibility"))
            .and_then(|v| v.as_u64())
            .unwrap_or(0);
        check(got == want, format!("queue {name}: {got}, expected {want}"));
        if name == "deliveries" {
            check(
                visibility >= 6 * deliver_timeout,
                format!(
                    "the deliveries queue's visibility timeout {visibility} s must be at least six times deliver's timeout ({deliver_timeout} s)"
                ),
            );
        }
    }

    // The event source mappings and every setting of theirs.
    let expected = json!({
        "events": {
            "source": "table-stream", "starting_position": "TRIM_HORIZON", "batch_size": 100,
            "batching_window": 1, "bisect": true, "response_types": ["ReportBatchItemFailures"],
            "retries": -1, "max_record_age": 86400, "on_failure": "queue:events-failures",
            "max_concurrency": null, "filters": stream_filter_patterns(),
        },
        "deliver": {
            "source": "queue:deliveries", "starting_position": null, "batch_size": 10,
            "batching_window": 0, "bisect": false, "response_types": ["ReportBatchItemFailures"],
            "retries": null, "max_record_age": null, "on_failure": null,
            "max_concurrency": "param:delivermaxconcurrency", "filters": [],
        },
    });
    // The stream's filters are the code's, parsed (in any order: Lambda ORs them), in both.
    for (deploy, m) in [("terraform", tf), ("sam", sam)] {
        let filters = m["mappings"]["events"]["filters"].clone();
        let got = filters.as_array().map(|f| sorted(f.clone()));
        check(
            got.as_ref() == Some(&stream_filter_patterns()),
            format!(
                "{deploy}: the events mapping's filter patterns are {filters}, expected roomcast_aws::dynamo::STREAM_FILTER_PATTERNS {}",
                Value::Array(stream_filter_patterns())
            ),
        );
    }
    let mut tf_mappings = tf["mappings"].clone();
    if let Some(filters) = tf_mappings["events"]["filters"].as_array().cloned() {
        tf_mappings["events"]["filters"] = Value::Array(sorted(filters));
    }
    check(
        tf_mappings == expected,
        format!(
            "event source mappings: {}, expected {expected}",
            tf["mappings"]
        ),
    );

    // Every function's statements: the common ones, ManageConnections where granted, the extras.
    for (name, statements) in tf["statements"].as_object().unwrap() {
        let mut want: BTreeSet<String> = [
            "OwnLogs",
            "ChatTable",
            "JwtKey",
            "StackKey",
            "Tracing",
            "JwtKeyParameterKey",
        ]
        .map(str::to_owned)
        .into();
        if model["terraform"]["functions"][name]["manages_websocket"] == json!(true) {
            want.insert("ManageConnections".into());
        }
        let extra = extra_statements(name);
        want.extend(extra.as_object().unwrap().keys().cloned());
        let got: BTreeSet<String> = statements.as_object().unwrap().keys().cloned().collect();
        check(
            got == want,
            format!("{name}'s role has statements {got:?}, expected {want:?}"),
        );
        for (sid, s) in extra.as_object().unwrap() {
            check(
                &statements[sid] == s,
                format!(
                    "{name}'s statement {sid} is {}, expected {s}",
                    statements[sid]
                ),
            );
        }
        check(
            statements["OwnLogs"]["resources"] == json!([format!("log-group:{name}")])
                && statements["StackKey"]
                    == json!({"actions": ["kms:Decrypt"], "resources": ["stack-key"], "conditional": false}),
            format!(
                "{name}: OwnLogs on its own log group, kms:Decrypt on the stack key: {statements}"
            ),
        );
    }

    // Alarms: errors and throttles of every function; the pipeline's four.
    let alarms = tf["alarms"].as_object().unwrap();
    for name in tf["statements"].as_object().unwrap().keys() {
        for kind in ["errors", "throttles"] {
            check(
                alarms.contains_key(&format!("{name}-{kind}")),
                format!("no alarm {name}-{kind}"),
            );
        }
    }
    for (alarm, metric, dimension, statistic, threshold) in [
        (
            "events-iterator-age",
            "IteratorAge",
            json!({"FunctionName": "function:events"}),
            "Maximum",
            60_000,
        ),
        (
            "events-failures-depth",
            "ApproximateNumberOfMessagesVisible",
            json!({"QueueName": "queue-name:events-failures"}),
            "Maximum",
            0,
        ),
        (
            "deliveries-dlq-depth",
            "ApproximateNumberOfMessagesVisible",
            json!({"QueueName": "queue-name:deliveries-dlq"}),
            "Maximum",
            0,
        ),
        (
            "deliveries-age",
            "ApproximateAgeOfOldestMessage",
            json!({"QueueName": "queue-name:deliveries"}),
            "Maximum",
            3600,
        ),
    ] {
        let a = &tf["alarms"][alarm];
        check(
            a["metric"] == json!(metric)
                && a["dimensions"] == dimension
                && a["statistic"] == json!(statistic)
                && a["threshold"] == json!(threshold)
                && a["comparison"] == json!("GreaterThanThreshold")
                && a["notifies"] == json!(true),
            format!("alarm {alarm}: {a}"),
        );
    }

    // The fanout function's name, as each template names the function.
    for (deploy, m, expected) in [
        ("terraform", tf, "param:name-fanout"),
        ("sam", sam, "${AWS::StackName}-fanout"),
    ] {
        check(
            m["environment"]["ROOMCAST_FANOUT_FUNCTION"] == json!(expected),
            format!(
                "{deploy}: ROOMCAST_FANOUT_FUNCTION is {}, expected {expected}",
                m["environment"]["ROOMCAST_FANOUT_FUNCTION"]
            ),
        );
    }

    // The webhook settings: the variables (parameters) and the queue, alike in both.
    for (variable, value) in [
        ("ROOMCAST_DELIVERY_QUEUE_URL", "queue-url:deliveries"),
        ("ROOMCAST_WEBHOOK_URL", "param:webhookurl"),
        ("ROOMCAST_WEBHOOK_TYPES", "param:webhooktypes"),
        (
            "ROOMCAST_WEBHOOK_SECRET_PARAMETER",
            "param:webhooksecretparametername",
        ),
        ("ROOMCAST_WEBHOOK_TIMEOUT_MS", "param:webhooktimeoutms"),
        (
            "ROOMCAST_WEBHOOK_FIRST_RETRY_MS",
            "param:webhookfirstretryms",
        ),
        (
            "ROOMCAST_WEBHOOK_RETRY_FOR_SECS",
            "param:webhookretryforsecs",
        ),
    ] {
        for (deploy, m) in [("terraform", tf), ("sam", sam)] {
            check(
                m["environment"][variable] == json!(value),
                format!(
                    "{deploy}: {variable} is {}, expected {value}",
                    m["environment"][variable]
                ),
            );
        }
    }

    // The queue outputs.
    for output in [
        "deliveriesqueueurl",
        "deliveriesqueuearn",
        "deliveriesdlqurl",
        "eventsfailuresqueueurl",
    ] {
        for (deploy, m) in [("terraform", tf), ("sam", sam)] {
            check(
                strings(&m["outputs"]).contains(output),
                format!("{deploy}: no output {output}"),
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn deploy_templates_match_the_code() {
    let w = world_with(&[(env::ATTACHMENT_BUCKET, BUCKET)]).await;
    attachments_bucket(&w).await;
    let table = code_table(&w).await;
    assert_eq!(
        (
            table["hash_key"].as_str(),
            table["range_key"].as_str(),
            table["ttl_attribute"].as_str()
        ),
        (Some(ATTR_PK), Some(ATTR_SK), Some(ATTR_TTL)),
        "ensure_table and the key constants"
    );
    let observed = observe_functions(&w).await;
    let bins = binaries();
    let served: BTreeSet<&str> = bins.values().flatten().map(String::as_str).collect();
    let routes: BTreeSet<&str> = ["$connect", "$disconnect", "$default"]
        .into_iter()
        .chain(roomcast_apigw::ROUTES.iter().copied())
        .collect();
    assert_eq!(served, routes, "one function binary per API Gateway route");
    assert_eq!(
        observed.keys().map(|k| (*k).to_owned()).collect::<Vec<_>>(),
        bins.keys().cloned().collect::<Vec<_>>(),
        "every binary is observed"
    );
    let model = templates();
    let mut failures = Vec::new();
    let mut check = |ok: bool, what: String| {
        if !ok {
            failures.push(what);
        }
    };

    let names = binary_names();
    for (name, _) in EVENT_FUNCTIONS {
        check(
            names.contains(*name),
            format!("functions/aws/src/bin/{name}.rs is missing: both templates deploy it"),
        );
    }
    let functions: BTreeSet<String> = bins
        .keys()
        .cloned()
        .chain(EVENT_FUNCTIONS.iter().map(|(f, _)| (*f).to_owned()))
        .collect();
    for deploy in ["terraform", "sam"] {
        let m = &model[deploy];
        let deployed: BTreeSet<String> = m["functions"]
            .as_object()
            .unwrap()
            .keys()
            .cloned()
            .collect();
        check(
            deployed == functions,
            format!("{deploy}: deploys {deployed:?}, the functions are {functions:?}"),
        );
        for (name, actions) in EVENT_FUNCTIONS {
            let f = &m["functions"][name];
            let granted = strings(&f["dynamodb_actions"]);
            let stated: BTreeSet<String> = actions.iter().map(|a| (*a).to_owned()).collect();
            check(
                f["route"].is_null() && f["manages_websocket"] == json!(false),
                format!("{deploy}: {name} must have no route and no ManageConnections: {f}"),
            );
            check(
                granted == stated,
                format!(
                    "{deploy}: {name} is granted DynamoDB {granted:?}; its code calls {stated:?}"
                ),
            );
        }
        for (name, route) in &bins {
            let f = &m["functions"][name];
            check(
                f["route"].as_str() == route.as_deref(),
                format!(
                    "{deploy}: {name} serves {} but its main runs {route:?}",
                    f["route"]
                ),
            );
            let seen = &observed[name.as_str()];
            let needed = iam_actions(&seen.operations);
            let granted = strings(&f["dynamodb_actions"]);
            check(
                granted == needed,
                format!(
                    "{deploy}: {name} is granted DynamoDB {granted:?}; its code calls {:?}, which needs exactly {needed:?}",
                    seen.operations
                ),
            );
            check(
                f["manages_websocket"].as_bool() == Some(seen.management),
                format!(
                    "{deploy}: {name} ManageConnections granted = {}, but the code {} the Management API",
                    f["manages_websocket"],
                    if seen.management {
                        "calls"
                    } else {
                        "never calls"
                    }
                ),
            );
        }
        for action in strings(&m["iam_actions"]) {
            let (service, name) = action.split_once(':').unwrap_or(("", &action));
            check(
                !name.contains('*') && !service.is_empty(),
                format!("{deploy}: wildcard or malformed IAM action `{action}`"),
            );
            if service == "dynamodb" {
                check(
                    (IAM_DYNAMODB_ACTIONS.contains(&name) && name != "Scan")
                        || IAM_DYNAMODB_STREAM_ACTIONS.contains(&name),
                    format!("{deploy}: `{action}` is not a DynamoDB action the code may use"),
                );
            }
        }
        let environment = strings(&m["environment"]);
        let expected: BTreeSet<String> = env::DEPLOYED.iter().map(|v| (*v).to_owned()).collect();
        check(
            environment == expected,
            format!("{deploy}: sets {environment:?}; the code's deployments set {expected:?}"),
        );
        for key in env::PLAINTEXT_KEYS {
            check(
                !environment.contains(*key),
                format!("{deploy}: sets the plain-text key {key}"),
            );
        }
        let t = &m["table"];
        for field in [
            "hash_key",
            "range_key",
            "attributes",
            "ttl_attribute",
            "indexes",
        ] {
            check(
                t[field] == table[field],
                format!(
                    "{deploy}: table {field} is {}, the code's is {}",
                    t[field], table[field]
                ),
            );
        }
        check(
            t["ttl_enabled"] == json!(true)
                && t["billing_mode"] == json!("PAY_PER_REQUEST")
                && t["point_in_time_recovery"] == json!(true)
                && t["encrypted"] == json!(true),
            format!("{deploy}: the table must have TTL on, on-demand billing, PITR, SSE: {t}"),
        );
        check(
            m["wiring"]["lambda_runtime"] == json!("provided.al2023")
                && m["wiring"]["lambda_architectures"] == json!(["arm64"]),
            format!(
                "{deploy}: functions must be provided.al2023 on arm64: {}",
                m["wiring"]
            ),
        );
    }

    // Terraform derives every resource from locals.functions: check the resources really do.
    let wiring = &model["terraform"]["wiring"];
    for (field, expected) in [
        ("lambda_for_each", "${local.functions}"),
        (
            "lambda_artifact",
            "${var.artifacts_dir}/${each.key}/bootstrap.zip",
        ),
        ("lambda_environment", "${local.environment}"),
        ("route_for_each", "${local.websocket_functions}"),
        ("route_key", "${each.value.route}"),
        (
            "table_actions",
            "${[for action in each.value.dynamodb_actions : \"dynamodb:${action}\"]}",
        ),
    ] {
        check(
            wiring[field] == json!(expected),
            format!(
                "terraform: {field} is {}, expected {expected}",
                wiring[field]
            ),
        );
    }
    check_pipeline(&model, &mut check);
    let sam_http = strings(&model["sam"]["functions"]["http"]["http_events"]);
    check(
        sam_http == HTTP_ROUTES.iter().map(|r| (*r).to_owned()).collect(),
        format!("sam: the http function's events are {sam_http:?}"),
    );
    for route in HTTP_ROUTES {
        check(
            read(&repo().join("terraform/api.tf")).contains(&format!("\"{route}\"")),
            format!("terraform: no HTTP API route {route}"),
        );
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn every_variable_the_functions_read_is_deployed_or_accounted_for() {
    let read: BTreeSet<&str> = env::ALL.iter().chain(env::AWS).copied().collect();
    for v in &read {
        let deployed = env::DEPLOYED.contains(v);
        let plaintext = env::PLAINTEXT_KEYS.contains(v);
        let fixed = env::FIXED_BY_API_GATEWAY.contains(v);
        let development = env::DEVELOPMENT_ONLY.contains(v);
        assert_eq!(
            u8::from(deployed) + u8::from(plaintext) + u8::from(fixed) + u8::from(development),
            1,
            "{v} must be exactly one of: deployed, a plain-text key, fixed by API Gateway, \
             development only"
        );
    }
    for v in env::DEPLOYED {
        assert!(
            read.contains(v),
            "{v} is deployed but the functions never read it"
        );
    }
}

/// What `deploy_properties` reads from the templates: python-hcl2 and PyYAML through
/// `scripts/deploy_model.py`'s readers, plus the SAM deployment hash. Parsing only.
const PROPERTIES_PY: &str = r#"
import hashlib, json, sys
sys.path.insert(0, sys.argv[1] + "/scripts")
import deploy_model as dm
import yaml
tf = dm.load_terraform(sys.argv[1] + "/terraform")
variables = {}
import glob, hcl2
for path in sorted(glob.glob(sys.argv[1] + "/terraform/*.tf")):
    with open(path) as f:
        doc = dm.unquote(hcl2.load(f))
    for block in doc.get("variable", []):
        variables.update(block)
    for block in doc.get("terraform", []):
        variables["__terraform__"] = block
with open(sys.argv[1] + "/infra/template.yaml") as f:
    sam = yaml.load(f, Loader=dm.CfnLoader)
res = sam["Resources"]
routes = {k: v for k, v in sorted(res.items())
          if v.get("Type") in ("AWS::ApiGatewayV2::Route", "AWS::ApiGatewayV2::Integration")
          and v.get("Properties", {}).get("ApiId") == {"Ref": "WebSocketApi"}}
digest = hashlib.sha256(json.dumps(routes, sort_keys=True, separators=(",", ":")).encode()).hexdigest()[:10]
def strings(v):
    if isinstance(v, str): yield v
    elif isinstance(v, list):
        for x in v: yield from strings(x)
    elif isinstance(v, dict):
        for k, x in v.items(): yield from strings(k); yield from strings(x)
json.dump({
    "terraform": {"resource": tf["resource"], "data": tf["data"], "variables": variables},
    "sam": {
        "parameters": sam.get("Parameters", {}),
        "conditions": sam.get("Conditions", {}),
        "resources": res,
        "deployment_id": "WebSocketDeployment" + digest.upper(),
        "hashed": sorted(routes),
        "amazonaws": sorted({s for s in strings(sam) if "amazonaws.com" in s}),
    },
}, sys.stdout)
"#;

fn properties() -> Value {
    let python = std::env::var("ROOMCAST_DEPLOY_PYTHON").unwrap_or_else(|_| {
        let cache = std::env::var("XDG_CACHE_HOME")
            .unwrap_or_else(|_| format!("{}/.cache", std::env::var("HOME").unwrap()));
        format!("{cache}/roomcast/deploy-venv/bin/python")
    });
    let out = Command::new(&python)
        .arg("-c")
        .arg(PROPERTIES_PY)
        .arg(repo())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {python}: {e}"));
    assert!(
        out.status.success(),
        "reading the templates failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// Every `.tf` file of terraform/ (and the examples), by name.
fn terraform_texts() -> BTreeMap<String, String> {
    std::fs::read_dir(repo().join("terraform"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            let name = p.file_name().unwrap().to_str().unwrap();
            name.ends_with(".tf") || name.ends_with(".tf.example")
        })
        .map(|p| {
            (
                p.file_name().unwrap().to_str().unwrap().to_owned(),
                read(&p),
            )
        })
        .collect()
}

/// `1.10.0` as (1, 10, 0).
fn version(v: &str) -> (u32, u32, u32) {
    let mut parts = v.trim().split('.').map(|p| p.parse::<u32>().unwrap());
    (
        parts.next().unwrap(),
        parts.next().unwrap_or(0),
        parts.next().unwrap_or(0),
    )
}

/// The `region = "…"` of a tfvars or TOML file.
fn region_setting(text: &str) -> Option<String> {
    text.lines().find_map(|l| {
        let (key, value) = l.split_once('=')?;
        (key.trim() == "region").then(|| value.trim().trim_matches('"').to_owned())
    })
}

/// The `aws …` and AWS-facing `sam …` commands in docs/deploy.md's shell blocks, continuation
/// lines joined, comments dropped; each cut at the end of its command (`)`, `|`, `;`, `&&`).
fn documented_aws_commands(doc: &str) -> Vec<String> {
    let mut commands = Vec::new();
    let mut in_block = false;
    let mut joined = String::new();
    for line in doc.lines() {
        if line.trim_start().starts_with("```") {
            in_block = !in_block && line.trim_start().len() > 3;
            continue;
        }
        if !in_block {
            continue;
        }
        let code = match line.find(" #") {
            Some(i) if !line[..i].contains('"') || line[..i].matches('"').count() % 2 == 0 => {
                &line[..i]
            }
            _ => line,
        };
        let code = if code.trim_start().starts_with('#') {
            ""
        } else {
            code
        };
        if let Some(head) = code.trim_end().strip_suffix('\\') {
            joined.push_str(head);
            joined.push(' ');
            continue;
        }
        joined.push_str(code);
        let text = std::mem::take(&mut joined);
        let bytes = text.as_bytes();
        for (i, _) in text.match_indices("aws ").chain(text.match_indices("sam ")) {
            let before = if i == 0 { b' ' } else { bytes[i - 1] };
            if before.is_ascii_alphanumeric() || b"/:-_.".contains(&before) {
                continue;
            }
            let rest = &text[i..];
            let end = [")", "|", ";", "&&"]
                .iter()
                .filter_map(|t| rest.find(t))
                .min()
                .unwrap_or(rest.len());
            let command = rest[..end].trim().to_owned();
            let local_sam = command.starts_with("sam ")
                && !["sam deploy", "sam delete", "sam sync", "sam logs"]
                    .iter()
                    .any(|c| command.starts_with(c));
            if !local_sam {
                commands.push(command);
            }
        }
    }
    commands
}

#[test]
fn deploy_properties() {
    let p = properties();
    let tf = &p["terraform"];
    let sam = &p["sam"];
    let texts = terraform_texts();
    let mut failures = Vec::new();
    let mut check = |ok: bool, what: String| {
        if !ok {
            failures.push(what);
        }
    };

    // Deletion protection: a variable (parameter), on by default, and what the table uses.
    let var = &tf["variables"]["table_deletion_protection"];
    check(
        var["default"] == json!(true) && var["type"].as_str().is_some_and(|t| t.contains("bool")),
        format!("terraform: table_deletion_protection must be a bool defaulting to true: {var}"),
    );
    check(
        tf["resource"]["aws_dynamodb_table.chat"]["deletion_protection_enabled"]
            == json!("${var.table_deletion_protection}"),
        "terraform: the table's deletion_protection_enabled must be var.table_deletion_protection"
            .into(),
    );
    let table = sam["resources"]
        .as_object()
        .unwrap()
        .values()
        .find(|r| r["Type"] == "AWS::DynamoDB::Table")
        .unwrap();
    check(
        sam["parameters"]["TableDeletionProtection"]["Default"] == json!("true")
            && sam["conditions"]["TableProtected"]
                == json!({"Fn::Equals": [{"Ref": "TableDeletionProtection"}, "true"]})
            && table["Properties"]["DeletionProtectionEnabled"]
                == json!({"Fn::If": ["TableProtected", true, false]}),
        format!(
            "sam: DeletionProtectionEnabled must follow TableDeletionProtection (default \"true\"): {}",
            table["Properties"]["DeletionProtectionEnabled"]
        ),
    );

    // The region's API Gateway account setting: off unless asked for.
    check(
        tf["variables"]["manage_api_gateway_account"]["default"] == json!(false),
        "terraform: manage_api_gateway_account must default to false".into(),
    );
    check(
        sam["parameters"]["ManageApiGatewayAccount"]["Default"] == json!("false"),
        "sam: ManageApiGatewayAccount must default to \"false\"".into(),
    );

    // Terraform: explicit deployments, replaced when routes or integrations change.
    let resources = tf["resource"].as_object().unwrap();
    for (name, stage) in resources
        .iter()
        .filter(|(k, _)| k.starts_with("aws_apigatewayv2_stage."))
    {
        check(
            stage.get("auto_deploy").is_none(),
            format!("terraform: {name} sets auto_deploy"),
        );
        let deployment = stage["deployment_id"]
            .as_str()
            .and_then(|d| d.strip_prefix("${"))
            .and_then(|d| d.strip_suffix(".id}"))
            .unwrap_or("");
        let api = name.rsplit('.').next().unwrap();
        let d = &tf["resource"][deployment];
        let trigger = d["triggers"]["redeployment"].as_str().unwrap_or("");
        check(
            deployment.starts_with("aws_apigatewayv2_deployment.")
                && trigger.starts_with("${sha1(jsonencode([")
                && trigger.contains(&format!("aws_apigatewayv2_route.{api}"))
                && trigger.contains(&format!("aws_apigatewayv2_integration.{api}"))
                && d["lifecycle"][0]["create_before_destroy"] == json!(true),
            format!(
                "terraform: {name} must use an aws_apigatewayv2_deployment with triggers = {{ redeployment = sha1(jsonencode([routes, integrations])) }} and create_before_destroy: {d}"
            ),
        );
    }
    let ws = &tf["resource"]["aws_apigatewayv2_stage.websocket"];
    check(
        ws["default_route_settings"][0]["logging_level"]
            == json!("${var.websocket_execution_log_level}")
            && ws["default_route_settings"][0]["data_trace_enabled"] == json!(false)
            && tf["variables"]["websocket_execution_log_level"]["default"] == json!("ERROR"),
        "terraform: the WebSocket stage must log execution at var.websocket_execution_log_level (ERROR), never data traces".into(),
    );
    check(
        resources.values().any(|r| {
            r["name"].as_str().is_some_and(|n| {
                n.starts_with("API-Gateway-Execution-Logs_${aws_apigatewayv2_api.websocket.id}/")
            })
        }),
        "terraform: no log group for the WebSocket stage's execution logs".into(),
    );

    // Terraform: the JWT key parameter is read at plan, and the functions' grant is on it.
    let ssm = &tf["data"]["aws_ssm_parameter.jwt_key"];
    check(
        ssm["name"] == json!("${var.jwt_key_parameter_name}")
            && ssm["with_decryption"] == json!(false),
        format!(
            "terraform: data.aws_ssm_parameter.jwt_key must read the key parameter without decryption: {ssm}"
        ),
    );
    check(
        texts["lambda.tf"].contains("resources = [data.aws_ssm_parameter.jwt_key.arn]"),
        "terraform: the JwtKey statement must be on data.aws_ssm_parameter.jwt_key.arn".into(),
    );

    // Terraform: provider 6, nothing deprecated, the partition's DNS suffix, the version floor.
    for (file, text) in &texts {
        for (deprecated, instead) in [
            (
                "data.aws_region.current.name",
                "data.aws_region.current.region",
            ),
            ("managed_policy_arns", "aws_iam_role_policy_attachment"),
            ("reset_on_delete", "(removed in provider 6)"),
        ] {
            check(
                !text.contains(deprecated),
                format!("terraform/{file}: `{deprecated}` is deprecated; use {instead}"),
            );
        }
        check(
            !text.contains("amazonaws.com"),
            format!(
                "terraform/{file}: hard-coded amazonaws.com (use data.aws_partition.current.dns_suffix or data.aws_service_principal)"
            ),
        );
    }
    let terraform_block = &tf["variables"]["__terraform__"];
    check(
        terraform_block["required_providers"][0]["aws"]["version"] == json!("~> 6.0"),
        format!(
            "terraform: the AWS provider must be \"~> 6.0\": {}",
            terraform_block["required_providers"]
        ),
    );
    let floor = terraform_block["required_version"]
        .as_str()
        .and_then(|v| v.strip_prefix(">= "))
        .map(version);
    let features = [
        ("use_lockfile", "1.10.0"),
        ("removed {", "1.7.0"),
        ("check \"", "1.5.0"),
        ("import {", "1.5.0"),
        ("terraform_data", "1.4.0"),
        ("optional(", "1.3.0"),
        ("precondition {", "1.2.0"),
        ("postcondition {", "1.2.0"),
        ("moved {", "1.1.0"),
    ];
    let newest = features
        .iter()
        .filter(|(f, _)| texts.values().any(|t| t.contains(f)))
        .map(|(f, v)| (version(v), *f))
        .max();
    check(
        floor.is_some() && floor == newest.map(|(v, _)| v),
        format!(
            "terraform: required_version {} must be \">= \" the newest feature used, {newest:?}",
            terraform_block["required_version"]
        ),
    );
    check(
        texts
            .get("backend.tf.example")
            .is_some_and(|t| t.contains("backend \"s3\"")),
        "terraform: backend.tf.example with a backend \"s3\" block is missing".into(),
    );

    // API Gateway alarms on both templates.
    let tf_alarms: BTreeSet<String> = resources
        .values()
        .filter(|r| r["namespace"] == json!("AWS/ApiGateway"))
        .map(|r| r["metric_name"].as_str().unwrap().to_owned())
        .collect();
    let sam_alarms: BTreeSet<String> = sam["resources"]
        .as_object()
        .unwrap()
        .values()
        .filter(|r| r["Properties"]["Namespace"] == json!("AWS/ApiGateway"))
        .map(|r| r["Properties"]["MetricName"].as_str().unwrap().to_owned())
        .collect();
    let wanted: BTreeSet<String> = ["IntegrationError", "ExecutionError", "5xx"]
        .map(str::to_owned)
        .into();
    check(
        tf_alarms == wanted && sam_alarms == wanted,
        format!(
            "API Gateway alarms must be {wanted:?}: terraform {tf_alarms:?}, sam {sam_alarms:?}"
        ),
    );

    // SAM: the deployment's logical ID carries the hash of the routes and integrations; the
    // stage uses it, never AutoDeploy, and waits for the account setting when there is one.
    let res = sam["resources"].as_object().unwrap();
    let expected = sam["deployment_id"].as_str().unwrap();
    let deployments: Vec<&String> = res
        .iter()
        .filter(|(_, r)| {
            r["Type"] == "AWS::ApiGatewayV2::Deployment"
                && r["Properties"]["ApiId"] == json!({"Ref": "WebSocketApi"})
        })
        .map(|(k, _)| k)
        .collect();
    check(
        deployments == [expected] && strings(&sam["hashed"]).len() == 10,
        format!(
            "sam: the WebSocket deployment must be named {expected} (a hash of {}): it is {deployments:?}; rename it (and the stage's DeploymentId)",
            sam["hashed"]
        ),
    );
    let stage = &res["WebSocketStage"];
    check(
        stage["Properties"].get("AutoDeploy").is_none()
            && stage["Properties"]["DeploymentId"] == json!({"Ref": expected}),
        format!("sam: WebSocketStage must deploy {expected}, without AutoDeploy"),
    );
    check(
        stage["Properties"]["DefaultRouteSettings"]["LoggingLevel"]
            == json!({"Ref": "WebSocketExecutionLogLevel"})
            && stage["Properties"]["DefaultRouteSettings"]["DataTraceEnabled"] == json!(false),
        "sam: WebSocketStage must log execution at WebSocketExecutionLogLevel, never data traces"
            .into(),
    );
    let account_condition = res["ApiGatewayAccount"]["Condition"].as_str().unwrap_or("");
    let waits = stage["DependsOn"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|d| res.get(d.as_str().unwrap()))
        .any(|gate| {
            gate.get("Condition").is_none()
                && gate["Metadata"]
                    .as_object()
                    .into_iter()
                    .flat_map(|m| m.values())
                    .any(|v| {
                        v["Fn::If"][0] == json!(account_condition)
                            && v["Fn::If"][1] == json!({"Ref": "ApiGatewayAccount"})
                    })
        });
    check(
        !account_condition.is_empty() && waits,
        "sam: WebSocketStage must depend on an unconditional resource that refers to ApiGatewayAccount under its condition".into(),
    );

    // SAM deploys the zips Terraform deploys; no hard-coded amazonaws.com but service principals.
    for (logical, r) in res
        .iter()
        .filter(|(_, r)| r["Type"] == "AWS::Serverless::Function")
    {
        let binary = r["Metadata"]["BuildProperties"]["Binary"].as_str().unwrap();
        check(
            r["Properties"]["CodeUri"] == json!(format!("../target/lambda/{binary}/bootstrap.zip"))
                && r["Metadata"].get("BuildMethod").is_none(),
            format!(
                "sam: {logical} must deploy ../target/lambda/{binary}/bootstrap.zip (scripts/build-lambdas.sh), not build itself"
            ),
        );
    }
    for s in strings(&sam["amazonaws"]) {
        check(
            ["lambda.amazonaws.com", "apigateway.amazonaws.com"].contains(&s.as_str()),
            format!("sam: hard-coded amazonaws.com in `{s}` (use ${{AWS::URLSuffix}})"),
        );
    }

    // docs/deploy.md: every AWS command names the region the examples deploy to.
    let region = region_setting(&read(&repo().join("terraform/terraform.tfvars.example")));
    check(
        region.is_some()
            && region == region_setting(&read(&repo().join("samconfig.toml")))
            && region
                == tf["variables"]["region"]["default"]
                    .as_str()
                    .map(str::to_owned),
        format!("the tfvars example, samconfig.toml and variable region disagree: {region:?}"),
    );
    let region = region.unwrap_or_default();
    let commands = documented_aws_commands(&read(&repo().join("docs/deploy.md")));
    check(
        commands.len() >= 5,
        format!("docs/deploy.md: too few aws commands found: {commands:?}"),
    );
    for command in commands {
        check(
            command.contains(&format!("--region {region}")),
            format!("docs/deploy.md: `{command}` does not say --region {region}"),
        );
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// Big rooms' occupancy, coalesced through the table (functions/aws/src/dynamo/occupancy.rs:
/// an announcement now, one held and taken at the interval's end), needs no DynamoDB action
/// beyond what the functions that join and leave rooms are granted.
#[tokio::test(flavor = "multi_thread")]
async fn big_rooms_need_no_dynamodb_action_beyond_the_granted() {
    let w = world_with(&[(env::PRESENCE_MAX_CONNECTIONS, "1")]).await;
    for user in ["big-a", "big-b", "big-c", "big-d"] {
        w.connect(user, &signed(user, Role::User, &["hall"])).await;
    }
    w.observed();
    let mut seen = BTreeMap::new();
    // The room is big from its second connection: the second join announces, the third holds
    // the rest of the interval, the fourth leaves it to the third.
    for user in ["big-a", "big-b", "big-c", "big-d"] {
        w.frame(user, "$default", json!({"action": "join", "room": "hall"}))
            .await;
    }
    seen.insert("default", w.observed());
    w.disconnect("big-d").await;
    w.disconnect("big-c").await;
    seen.insert("disconnect", w.observed());
    let model = templates();
    for deploy in ["terraform", "sam"] {
        for (name, observed) in &seen {
            let granted = strings(&model[deploy]["functions"][name]["dynamodb_actions"]);
            let needed = iam_actions(&observed.operations);
            assert!(
                needed.is_subset(&granted),
                "{deploy}: {name} in a big room calls {:?}, which needs {needed:?}; granted {granted:?}",
                observed.operations
            );
            assert!(
                observed.operations.contains("UpdateItem"),
                "{name}: the occupancy record is written"
            );
        }
    }
}
