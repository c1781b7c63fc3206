//! AWS cost per message: measured DynamoDB units and Management API calls, priced; cold init and
//! zipped size per function. The method and the results: docs/benchmarks.md, "AWS cost per
//! message".
//!
//! ```sh
//! cargo build --release -p roomcast-aws --bins
//! cargo run --release -p roomcast-aws --all-features --example cost -- --out docs/aws-cost.json
//! ```
//!
//! 1. **Per message.** The handler test World (`tests/common`: moto as DynamoDB, a fake
//!    Management API counting its calls) with a [`Meter`] on the functions' DynamoDB client.
//!    Rooms of 2, 10 and 100 online members (connected and joined through the `$connect` and
//!    `$default` handlers); the rest of the connections, up to each total, are fillers in rooms
//!    of 10: the exact items `$connect` and `join` wrote for a template connection, copied with
//!    BatchWriteItem. `--messages` messages per room through the `message` handler
//!    (`--messages-large` above 10,000 connections: moto copies the whole table for every
//!    transaction), each billed by item size ([`bill`]) next to what moto reported.
//! 2. **The sample's design** (aws-samples/simple-websockets-chat-app, `sendmessage/app.js`):
//!    a Scan of a table of `{connectionId}` items holding every connection, then one
//!    PostToConnection per item. The Scan runs against moto on a table of the same size;
//!    the posts are counted from the items it returned.
//! 3. **Cold init.** Each function binary (`--bins`, stripped copy) started with a Lambda
//!    environment against a local Runtime API stub: time from spawn to its first
//!    `GET /2018-06-01/runtime/invocation/next`.
//! 4. **Zipped size.** The stripped binary as `bootstrap`, `zip -9`.
//! 5. **Integration events** ([`measure_events`]): what one chat message adds when webhook
//!    endpoints exist. The `events` function's handler ([`EventsFunction::handle_stream`]) on
//!    batches of stream records of real message items (the items the `message` handler put),
//!    with a metered DynamoDB client and the delivery queue on moto's SQS; then the queued
//!    deliveries through the `deliver` function's handler ([`Deliverer::handle_messages`]) in
//!    batches of 10, as its event source mapping hands them out, POSTing to a loopback
//!    receiver; each handler call timed. 1 and 3 endpoints, rooms of 2, 10 and 100 online.
//!    Priced by [`events_cost`] with the assumptions of [`EventsModel`]. `--events-only` runs
//!    just this part (and the rooms it needs).
//! 6. **Attachments** ([`measure_attachments`]): what one attachment adds. Through the `http`
//!    handler a slot (`POST /rooms/{room}/uploads`), the presigned POST to moto's S3, a message
//!    carrying it through the `message` handler (against the same message without it) and a
//!    download link (`GET /rooms/{room}/attachments/{id}`), each with the capacity meter on the
//!    functions' DynamoDB client; the S3 requests are the code's (`roomcast_aws::s3`): the
//!    browser's POST, HeadObject + a ranged GetObject + PutObjectTagging at attach, one GET per
//!    download. Priced by [`attachment_cost`] for a file of [`ATTACHMENT_BYTES`].
//!    `--attachments-only` runs just this part.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use aws_lambda_events::dynamodb::EventRecord;
use aws_lambda_events::sqs::SqsMessage;
use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::types::{
    AttributeDefinition, AttributeValue, BillingMode, KeySchemaElement, KeyType, PutRequest,
    ScalarAttributeType, WriteRequest,
};
use futures::StreamExt;
use roomcast_aws::dynamo::{ATTR_PK, ATTR_SK, MESSAGE_SK_PREFIX, emulator_client};
use roomcast_aws::events::{Deliverer, EventsFunction};
use roomcast_aws::fanout::LAMBDA_SPLIT;
use roomcast_aws::lambda::{FunctionConfig, Runtime, env};
use roomcast_core::events::registry::endpoint_id;
use roomcast_core::events::{Endpoint, EndpointSecret, Event, WebhookSecret};
use roomcast_core::split::SplitPolicy;
use roomcast_core::store::RoomRef;
use roomcast_testkit::aws::capacity::{Billed, Meter, Tally, bill, item_size, tally};
use roomcast_testkit::aws::lambda::{SECRET, World, member_token, now_ms, post_upload, world_with};
use serde_json::{Value, json};
use tokio::io::AsyncReadExt;

/// us-east-1 list prices (docs/deploy.md §6).
mod price {
    /// API Gateway WebSocket, per message (32 KB units).
    pub const API_GATEWAY_MESSAGE: f64 = 1.00e-6;
    /// Lambda, per request.
    pub const LAMBDA_REQUEST: f64 = 0.20e-6;
    /// Lambda arm64, per GB-second.
    pub const LAMBDA_GB_SECOND: f64 = 0.000_013_333_4;
    /// DynamoDB on-demand, per write request unit.
    pub const WRU: f64 = 0.625e-6;
    /// DynamoDB on-demand, per read request unit.
    pub const RRU: f64 = 0.125e-6;
    /// DynamoDB Streams read by a Lambda event source mapping (GetRecords, GetShardIterator):
    /// free ("reads from DynamoDB Streams by AWS Lambda triggers are free",
    /// aws.amazon.com/dynamodb/pricing/on-demand). Stated, so the model says it counted them.
    pub const STREAM_READ_BY_LAMBDA: f64 = 0.0;
    /// SQS standard queue, per request; each 64 KB chunk of a request's payload is billed as one
    /// request (us-east-1 list price, aws.amazon.com/sqs/pricing, as published when this model
    /// was written, 2026-11; the first million requests a month are free, not counted here).
    pub const SQS_REQUEST: f64 = 0.40e-6;
    /// The unit SQS bills a request's payload in.
    pub const SQS_CHUNK_BYTES: usize = 64 * 1024;
    /// Data transfer out from EC2/Lambda to the Internet, per GB: the first 10 TB a month
    /// (aws.amazon.com/ec2/pricing/on-demand, "Data Transfer", us-east-1, 2026-11; the first
    /// 100 GB a month of the account are free, not counted here). The webhook POSTs leave AWS.
    pub const TRANSFER_OUT_GB: f64 = 0.09;
    /// S3 Standard, per PUT, COPY, POST or LIST request (PutObjectTagging is one): $0.005 per
    /// 1,000 (aws.amazon.com/s3/pricing, "Requests & data retrievals", us-east-1, 2026-12).
    pub const S3_PUT_CLASS: f64 = 0.005e-3;
    /// S3 Standard, per GET, SELECT or other request (HeadObject is one): $0.0004 per 1,000.
    /// DeleteObject is free.
    pub const S3_GET_CLASS: f64 = 0.0004e-3;
    /// S3 Standard storage, per GB-month (the first 50 TB a month, us-east-1, 2026-12).
    pub const S3_GB_MONTH: f64 = 0.023;
    /// API Gateway HTTP API, per request up to 512 KB (the first 300 million a month,
    /// aws.amazon.com/api-gateway/pricing, us-east-1, 2026-12).
    pub const HTTP_API_REQUEST: f64 = 1.00e-6;
}

/// The file size the attachment rows are priced at (storage, downloads out of S3).
const ATTACHMENT_BYTES: u64 = 1_000_000;
/// The attachments bucket on the example's moto.
const ATTACHMENT_BUCKET: &str = "cost-attachments";

/// Lambda duration model (not measured here: moto and a local Management API are not AWS's
/// latencies). A warm `message` invocation: 20 ms including the first round of posts
/// (docs/deploy.md §6), plus 10 ms per further round. Both designs run at 256 MB.
const LAMBDA_GB: f64 = 0.25;
const BASE_MS: f64 = 20.0;
const ROUND_MS: f64 = 10.0;
/// roomcast posts 400 at a time (`management::MANAGEMENT_FANOUT_CONCURRENCY`; 32 before issue
/// 20); the sample's SDK for JavaScript v3 client keeps at most 50 sockets.
const ROOMCAST_ROUND: usize = roomcast_aws::management::MANAGEMENT_FANOUT_CONCURRENCY;
const SAMPLE_ROUND: usize = 50;

/// Lambda requests and milliseconds of one message that makes `posts` posts, `round` at a time:
/// one invocation, or, with `split` and more posts than its threshold (roomcast: above 1,000,
/// `fanout::LAMBDA_SPLIT`), the `message` invocation posting the first slice and one `fanout`
/// invocation per further slice, each modelled alike (20 ms with its first round, 10 ms per
/// further round). The Invoke calls run while the first slice is posted: no time of their own.
fn lambda_model(posts: f64, round: usize, split: Option<SplitPolicy>) -> (f64, f64) {
    let invocation_ms =
        |posts: f64| BASE_MS + ROUND_MS * ((posts / round as f64).ceil().max(1.0) - 1.0);
    match split.filter(|p| posts > p.threshold as f64) {
        None => (1.0, invocation_ms(posts)),
        Some(policy) => {
            let slice = policy.slice_len.max(1) as f64;
            let full = (posts / slice).floor();
            let rest = posts - full * slice;
            let invocations = full + f64::from(u8::from(rest > 0.0));
            let ms =
                full * invocation_ms(slice) + if rest > 0.0 { invocation_ms(rest) } else { 0.0 };
            (invocations, ms)
        }
    }
}

const ROOM_SIZES: [usize; 3] = [2, 10, 100];
/// Above this many connections, `--messages-large` messages per room instead of `--messages`.
const LARGE: usize = 10_000;
const FUNCTIONS: [&str; 6] = [
    "connect",
    "disconnect",
    "message",
    "typing",
    "default",
    "http",
];
/// The template filler: its id, user and room are replaced in copies of its items.
const TEMPLATE_CONN: &str = "FillerTemplate0=";
const TEMPLATE_USER: &str = "fillertpl";
const TEMPLATE_ROOM: &str = "chat-fillertpl";
/// A chat message of typical length (94 bytes).
const BODY: &str = "Hi! Could you check order 4417 for me? It shipped on Tuesday, but tracking hasn't moved since.";

struct Args {
    out: Option<PathBuf>,
    messages: usize,
    messages_large: usize,
    totals: Vec<usize>,
    cold_runs: usize,
    bins: PathBuf,
    events_only: bool,
    attachments_only: bool,
    events_batch: usize,
    events_batches: usize,
}

fn args() -> Args {
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let mut a = Args {
        out: None,
        messages: 50,
        messages_large: 3,
        totals: vec![1_000, 100_000],
        cold_runs: 10,
        bins: workspace.join("target/release"),
        events_only: false,
        attachments_only: false,
        events_batch: EventsModel::DEFAULT.messages_per_events_batch,
        events_batches: 3,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || {
            it.next()
                .unwrap_or_else(|| usage(&format!("{flag} needs a value")))
        };
        match flag.as_str() {
            "--out" => a.out = Some(PathBuf::from(value())),
            "--messages" => a.messages = number(&value()),
            "--messages-large" => a.messages_large = number(&value()),
            "--totals" => a.totals = value().split(',').map(number).collect(),
            "--cold-runs" => a.cold_runs = number(&value()),
            "--bins" => a.bins = PathBuf::from(value()),
            "--events-only" => a.events_only = true,
            "--attachments-only" => a.attachments_only = true,
            "--events-batch" => a.events_batch = number(&value()).max(1),
            "--events-batches" => a.events_batches = number(&value()).max(1),
            _ => usage(&format!("unknown flag {flag}")),
        }
    }
    a.totals.sort_unstable();
    a
}

fn number(s: &str) -> usize {
    s.trim()
        .parse()
        .unwrap_or_else(|_| usage(&format!("`{s}` is not a number")))
}

fn usage(problem: &str) -> ! {
    eprintln!(
        "{problem}\nusage: cost [--out FILE.json] [--messages 50] [--messages-large 3] \
         [--totals 1000,100000] \
         [--cold-runs 10] [--bins target/release] [--events-only] [--events-batch 10] \
         [--events-batches 3]"
    );
    std::process::exit(2)
}

/// Connects `conn` as `user` and joins `room`, through the handlers.
async fn online(w: &World, conn: &str, user: &str, room: &str) {
    let connected = w.connect(conn, &member_token(user, &["chat-*"])).await;
    assert_eq!(connected.status_code, 200, "connect {conn}");
    w.frame(conn, "$default", json!({"action": "join", "room": room}))
        .await;
    w.received(conn);
}

type Item = HashMap<String, AttributeValue>;

/// Every item of partition `pk` (strongly consistent).
async fn partition(client: &Client, table: &str, pk: &str) -> Vec<Item> {
    client
        .query()
        .table_name(table)
        .key_condition_expression("pk = :pk")
        .expression_attribute_values(":pk", AttributeValue::S(pk.into()))
        .consistent_read(true)
        .send()
        .await
        .expect("query a partition")
        .items
        .unwrap_or_default()
}

/// The items `$connect` and `join` wrote for the template connection: the connection, the
/// user's index and status items, the room's subscription and member items.
async fn template_items(w: &World, client: &Client) -> Vec<Item> {
    online(w, TEMPLATE_CONN, TEMPLATE_USER, TEMPLATE_ROOM).await;
    let table = w.runtime.store().table();
    let mut items = partition(client, table, &format!("C#{TEMPLATE_CONN}")).await;
    items.extend(partition(client, table, &format!("U#acme#{TEMPLATE_USER}")).await);
    items.extend(partition(client, table, &format!("R#acme/{TEMPLATE_ROOM}")).await);
    assert_eq!(items.len(), 5, "connect + join wrote {items:?}");
    items
}

fn substitute(v: &AttributeValue, from: &[(&str, &str)]) -> AttributeValue {
    let replace = |s: &str| {
        from.iter()
            .fold(s.to_owned(), |s, (old, new)| s.replace(old, new))
    };
    match v {
        AttributeValue::S(s) => AttributeValue::S(replace(s)),
        AttributeValue::L(l) => AttributeValue::L(l.iter().map(|e| substitute(e, from)).collect()),
        other => other.clone(),
    }
}

async fn batch_put(client: &Client, table: &str, items: Vec<Item>) {
    let requests: Vec<WriteRequest> = items
        .into_iter()
        .map(|item| {
            WriteRequest::builder()
                .put_request(
                    PutRequest::builder()
                        .set_item(Some(item))
                        .build()
                        .expect("a put request"),
                )
                .build()
        })
        .collect();
    let batches: Vec<Vec<WriteRequest>> = requests.chunks(25).map(<[_]>::to_vec).collect();
    let sent = futures::stream::iter(batches)
        .map(|batch| async move {
            let out = client
                .batch_write_item()
                .request_items(table, batch)
                .send()
                .await
                .expect("BatchWriteItem");
            let left = out
                .unprocessed_items
                .and_then(|mut u| u.remove(table))
                .map_or(0, |l| l.len());
            assert_eq!(left, 0, "moto left items unprocessed");
        })
        .buffer_unordered(4)
        .collect::<Vec<()>>();
    sent.await;
}

/// Filler connection `i`: 16-character id, its own user, rooms of 10.
fn filler_items(template: &[Item], i: usize) -> Vec<Item> {
    let conn = format!("F{i:014}=");
    let user = format!("f{i}");
    let room = format!("chat-f{}", i / 10);
    let from = [
        (TEMPLATE_CONN, conn.as_str()),
        (TEMPLATE_ROOM, room.as_str()),
        (TEMPLATE_USER, user.as_str()),
    ];
    template
        .iter()
        .map(|item| {
            item.iter()
                .map(|(k, v)| (k.clone(), substitute(v, &from)))
                .collect()
        })
        .collect()
}

/// The sample's table: `connectionId` (S) hash key, one item per connection.
const SAMPLE_TABLE: &str = "simple-websockets-chat-app";

async fn create_sample_table(client: &Client) {
    client
        .create_table()
        .table_name(SAMPLE_TABLE)
        .billing_mode(BillingMode::PayPerRequest)
        .attribute_definitions(
            AttributeDefinition::builder()
                .attribute_name("connectionId")
                .attribute_type(ScalarAttributeType::S)
                .build()
                .expect("attribute"),
        )
        .key_schema(
            KeySchemaElement::builder()
                .attribute_name("connectionId")
                .key_type(KeyType::Hash)
                .build()
                .expect("key"),
        )
        .send()
        .await
        .expect("create the sample's table");
}

/// Per-message figures of one scenario.
#[derive(Default)]
struct PerMessage {
    ops: BTreeMap<String, Tally>,
    posts: f64,
    messages: usize,
}

impl PerMessage {
    fn add(&mut self, billed: &[Billed], posts: u64) {
        for (op, t) in tally(billed) {
            let entry = self.ops.entry(op).or_default();
            entry.calls += t.calls;
            entry.items += t.items;
            entry.bytes += t.bytes;
            entry.read += t.read;
            entry.write += t.write;
            entry.reported_read += t.reported_read;
            entry.reported_write += t.reported_write;
        }
        self.posts += posts as f64;
        self.messages += 1;
    }

    fn per(&self, f: impl Fn(&Tally) -> f64) -> f64 {
        self.ops.values().map(f).sum::<f64>() / self.messages as f64
    }

    fn json(
        &self,
        api_gateway_messages: f64,
        round: usize,
        split: Option<SplitPolicy>,
        inbound: bool,
    ) -> Value {
        let n = self.messages as f64;
        let ops: BTreeMap<&String, Value> = self
            .ops
            .iter()
            .map(|(op, t)| {
                (
                    op,
                    json!({
                        "calls": t.calls as f64 / n,
                        "items": t.items as f64 / n,
                        "bytes": t.bytes as f64 / n,
                        "rru": t.read / n,
                        "wru": t.write / n,
                        "moto_rru": t.reported_read / n,
                        "moto_wru": t.reported_write / n,
                    }),
                )
            })
            .collect();
        let (rru, wru) = (self.per(|t| t.read), self.per(|t| t.write));
        let posts = self.posts / n;
        let (lambda_requests, lambda_ms) = lambda_model(posts, round, split);
        let million = 1e6;
        let api_gateway = api_gateway_messages * price::API_GATEWAY_MESSAGE * million;
        let lambda = (lambda_requests * price::LAMBDA_REQUEST
            + LAMBDA_GB * lambda_ms / 1000.0 * price::LAMBDA_GB_SECOND)
            * million;
        let dynamodb = (rru * price::RRU + wru * price::WRU) * million;
        let moto_dynamodb = (self.per(|t| t.reported_read) * price::RRU
            + self.per(|t| t.reported_write) * price::WRU)
            * million;
        json!({
            "messages_measured": self.messages,
            "dynamodb_calls": self.per(|t| t.calls as f64),
            "ops": ops,
            "rru": rru,
            "wru": wru,
            "moto_rru": self.per(|t| t.reported_read),
            "moto_wru": self.per(|t| t.reported_write),
            "management_api_posts": posts,
            "api_gateway_messages": api_gateway_messages,
            "inbound_message_counted": inbound,
            "lambda_ms_model": lambda_ms,
            "lambda_requests_model": lambda_requests,
            "cost_per_million_messages_usd": {
                "api_gateway": api_gateway,
                "lambda": lambda,
                "dynamodb": dynamodb,
                "total": api_gateway + lambda + dynamodb,
                "dynamodb_if_billed_as_moto_reports": moto_dynamodb,
            },
        })
    }
}

/// `messages` messages in a room of `members` through the `message` handler, each billed.
async fn measure_room(
    w: &World,
    readback: &Client,
    room: &str,
    members: &[String],
    messages: usize,
    next_id: &mut u64,
) -> PerMessage {
    let mut per = PerMessage::default();
    for m in 0..messages {
        let sender = &members[m % members.len()];
        *next_id += 1;
        let id = format!("01J{:023}", *next_id);
        w.meter.take();
        let before = w.connections.lock().expect("connections").calls;
        w.frame(
            sender,
            "message",
            json!({"action": "message", "room": room, "id": id, "body": BODY}),
        )
        .await;
        let calls = w.meter.take();
        let posts = w.connections.lock().expect("connections").calls - before;
        // The benchmark counts only what a real delivery costs: check that it was one.
        for member in members {
            let got = w.received(member);
            let want = if member == sender { "ack" } else { "message" };
            assert!(
                got.len() == 1 && got[0]["type"] == want,
                "{member} in {room} got {got:?}"
            );
        }
        per.add(&bill(&calls, readback).await, posts);
    }
    per
}

/// The sample's `sendmessage`: Scan every connection (paginated here, so every connection is
/// reached), one post per item returned.
async fn measure_sample(meter: &Meter, metered: &Client, readback: &Client) -> PerMessage {
    let mut per = PerMessage::default();
    for _ in 0..3 {
        meter.take();
        let mut start = None;
        let mut posts = 0u64;
        loop {
            let out = metered
                .scan()
                .table_name(SAMPLE_TABLE)
                .projection_expression("connectionId")
                .set_exclusive_start_key(start)
                .send()
                .await
                .expect("Scan");
            posts += out.items().len() as u64;
            match out.last_evaluated_key {
                Some(next) if !next.is_empty() => start = Some(next),
                _ => break,
            }
        }
        per.add(&bill(&meter.take(), readback).await, posts);
    }
    per
}

/// Spawns `bin` with a Lambda environment and times its first `invocation/next`.
async fn cold_init(bin: &Path, name: &str, moto: &str) -> Duration {
    let stub = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("a loopback port");
    let api = stub.local_addr().expect("bound").to_string();
    let started = Instant::now();
    let mut child = Command::new(bin)
        .env_clear()
        .envs([
            ("AWS_LAMBDA_RUNTIME_API", api.as_str()),
            ("AWS_LAMBDA_FUNCTION_NAME", &format!("roomcast-{name}")),
            ("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "256"),
            ("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST"),
            (
                "AWS_LAMBDA_LOG_GROUP_NAME",
                &format!("/aws/lambda/roomcast-{name}"),
            ),
            ("AWS_LAMBDA_LOG_STREAM_NAME", "2026/11/22/[$LATEST]cost"),
            ("AWS_REGION", "us-east-1"),
            ("AWS_DEFAULT_REGION", "us-east-1"),
            ("AWS_ACCESS_KEY_ID", "cost"),
            ("AWS_SECRET_ACCESS_KEY", "cost"),
            ("AWS_SESSION_TOKEN", "cost"),
            ("AWS_ENDPOINT_URL", moto),
            ("AWS_EC2_METADATA_DISABLED", "true"),
            ("ROOMCAST_TABLE", "roomcast"),
            ("ROOMCAST_JWT_SECRET", SECRET),
            ("ROOMCAST_MANAGEMENT_ENDPOINT", "http://127.0.0.1:9"),
            ("RUST_LOG", "info"),
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {}: {e}", bin.display()));
    let accepted = tokio::time::timeout(Duration::from_secs(20), async {
        let (mut socket, _) = stub.accept().await.expect("accept");
        let mut head = Vec::new();
        let mut buf = [0u8; 1024];
        while !head.windows(4).any(|w| w == b"\r\n\r\n") {
            let n = socket.read(&mut buf).await.expect("read the request");
            assert!(n > 0, "{name} closed before asking for an event");
            head.extend_from_slice(&buf[..n]);
        }
        (
            started.elapsed(),
            String::from_utf8_lossy(&head).into_owned(),
        )
    })
    .await;
    // Only this process, which this harness started.
    let _ = child.kill();
    let _ = child.wait();
    let (elapsed, head) = accepted.unwrap_or_else(|_| panic!("{name} never asked for an event"));
    assert!(
        head.starts_with("GET /2018-06-01/runtime/invocation/next "),
        "{name} asked {head}"
    );
    elapsed
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    // Nearest rank.
    let rank = ((p / 100.0) * sorted.len() as f64).ceil().max(1.0) as usize;
    sorted[rank.min(sorted.len()) - 1]
}

fn run(cmd: &mut Command) {
    let status = cmd.status().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(status.success(), "{cmd:?}: {status}");
}

/// Stripped `bootstrap` and its `zip -9`, per function; then cold init of the stripped binary.
async fn functions(args: &Args, moto: &str) -> Vec<Value> {
    let dir = std::env::temp_dir().join(format!("roomcast-cost-{}", std::process::id()));
    let mut out = Vec::new();
    let mut stripped = Vec::new();
    for name in FUNCTIONS {
        let built = args.bins.join(name);
        assert!(
            built.exists(),
            "{} is missing: cargo build --release -p roomcast-aws --bins",
            built.display()
        );
        let fdir = dir.join(name);
        std::fs::create_dir_all(&fdir).expect("a temporary directory");
        let bootstrap = fdir.join("bootstrap");
        std::fs::copy(&built, &bootstrap).expect("copy the binary");
        run(Command::new("strip").arg(&bootstrap));
        let zip = fdir.join("bootstrap.zip");
        run(Command::new("zip")
            .args(["-9", "-q", "-j"])
            .arg(&zip)
            .arg(&bootstrap));
        let size = |p: &Path| std::fs::metadata(p).expect("a file").len();
        out.push(json!({
            "function": name,
            "built": built.display().to_string(),
            "unstripped_bytes": size(&built),
            "stripped_bytes": size(&bootstrap),
            "zipped_bytes": size(&zip),
        }));
        stripped.push(bootstrap);
    }
    let mut times: Vec<Vec<f64>> = vec![Vec::new(); FUNCTIONS.len()];
    // Interleaved, so a noisy moment on the machine spreads over every function.
    for _ in 0..args.cold_runs {
        for (i, name) in FUNCTIONS.iter().enumerate() {
            let t = cold_init(&stripped[i], name, moto).await;
            times[i].push(t.as_secs_f64() * 1000.0);
        }
    }
    for (entry, mut runs) in out.iter_mut().zip(times) {
        let raw = runs.clone();
        runs.sort_by(f64::total_cmp);
        entry["cold_init_ms"] = json!({
            "runs": raw,
            "median": percentile(&runs, 50.0),
            "p90": percentile(&runs, 90.0),
            "min": runs.first(),
            "max": runs.last(),
        });
    }
    let _ = std::fs::remove_dir_all(&dir);
    out
}

// ---------------------------------------------------------------------------------------------
// Integration events: what a chat message adds when webhook endpoints exist.

/// The assumptions the integration-event figures rest on; everything else is measured.
#[derive(Debug, Clone, Copy)]
pub(crate) struct EventsModel {
    /// Message records per `events` invocation. The stream's mapping waits up to 1 s for up to
    /// 100 records (terraform/events.tf, infra/template.yaml); at 10 messages a second on a
    /// stream shard a batch is that second's 10 messages (from 100 a second on, 100).
    pub messages_per_events_batch: usize,
    /// Memory of `events` and `deliver`: 256 MB arm64, as the templates deploy every function.
    pub lambda_gb: f64,
    /// How long an endpoint takes to answer a POST, ms. `deliver` POSTs its batch of 10 at
    /// once, so an invocation lasts its own work (measured here against moto and a loopback
    /// receiver that answers at once) plus about one POST: 250 ms stands for a TLS connection
    /// to a receiver elsewhere on the Internet and its handling. Not measured: it is the
    /// endpoint's.
    pub post_ms: f64,
    /// Bytes out per delivery besides the HTTP request the receiver saw (measured): a new TLS
    /// 1.3 connection per POST (ClientHello, Finished, record framing) and TCP/IP headers.
    /// Conservative: a warm function keeps its connection to an endpoint.
    pub tls_bytes_per_delivery: f64,
}

impl EventsModel {
    pub(crate) const DEFAULT: EventsModel = EventsModel {
        messages_per_events_batch: 10,
        lambda_gb: 0.25,
        post_ms: 250.0,
        tls_bytes_per_delivery: 1024.0,
    };
}

/// What the `events` and `deliver` handlers did for `messages` messages (measured).
#[derive(Debug, Clone, Default)]
pub(crate) struct EventsMeasured {
    pub room_online: usize,
    pub endpoints: usize,
    /// `message.created` records handled.
    pub messages: usize,
    /// Items the `message` handler wrote per message: the stream records it makes (the
    /// mapping's filter passes only the message's to `events`).
    pub table_writes_per_message: f64,
    /// Duration of each `events` invocation (one per batch), ms.
    pub events_ms: Vec<f64>,
    /// DynamoDB calls of `events`, billed by item size.
    pub events_ops: BTreeMap<String, Tally>,
    /// Deliveries queued (one SQS message each).
    pub deliveries: usize,
    /// Bytes of the queued message bodies.
    pub queued_bytes: u64,
    /// SQS requests as billed (64 KB chunks): SendMessageBatch by `events`, ReceiveMessage and
    /// DeleteMessageBatch by `deliver`'s event source mapping.
    pub sqs_send: f64,
    pub sqs_receive: f64,
    pub sqs_delete: f64,
    /// Duration of each `deliver` invocation (one per batch of up to 10), ms, against a
    /// receiver that answers at once.
    pub deliver_ms: Vec<f64>,
    /// DynamoDB calls of `deliver` (endpoint reads, attempt records), billed by item size.
    pub deliver_ops: BTreeMap<String, Tally>,
    /// POSTs the receiver got, and their bytes (request line, headers, body).
    pub posts: u64,
    pub post_bytes: u64,
}

/// Dollars per million chat messages that integration events add.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct EventsCost {
    /// `events` invocations (a share of one per batch) and GB-seconds.
    pub events_lambda: f64,
    /// `events`'s DynamoDB reads (endpoints per batch, members and connections per message).
    pub events_dynamodb: f64,
    /// DynamoDB Streams reads by the mapping: free.
    pub stream_reads: f64,
    /// SQS requests.
    pub sqs: f64,
    /// `deliver` invocations and GB-seconds, with the POST's wait.
    pub deliver_lambda: f64,
    /// `deliver`'s DynamoDB units (endpoint reads, attempt records).
    pub deliver_dynamodb: f64,
    /// The POSTs leaving AWS.
    pub transfer: f64,
}

impl EventsCost {
    pub(crate) fn total(&self) -> f64 {
        self.events_lambda
            + self.events_dynamodb
            + self.stream_reads
            + self.sqs
            + self.deliver_lambda
            + self.deliver_dynamodb
            + self.transfer
    }
}

fn add_tally(into: &mut BTreeMap<String, Tally>, billed: &[Billed]) {
    for (op, t) in tally(billed) {
        let entry = into.entry(op).or_default();
        entry.calls += t.calls;
        entry.items += t.items;
        entry.bytes += t.bytes;
        entry.read += t.read;
        entry.write += t.write;
        entry.reported_read += t.reported_read;
        entry.reported_write += t.reported_write;
    }
}

fn units(ops: &BTreeMap<String, Tally>) -> (f64, f64) {
    (
        ops.values().map(|t| t.read).sum(),
        ops.values().map(|t| t.write).sum(),
    )
}

/// Prices what was measured (see [`EventsModel`] for what was not), per million messages.
pub(crate) fn events_cost(m: &EventsMeasured, model: &EventsModel) -> EventsCost {
    let n = m.messages.max(1) as f64;
    let million = 1e6;
    // Lambda bills each invocation's duration rounded up to the millisecond.
    let lambda = |durations: &[f64], extra_ms: f64| {
        durations
            .iter()
            .map(|ms| {
                price::LAMBDA_REQUEST
                    + model.lambda_gb * (ms + extra_ms).ceil() / 1000.0 * price::LAMBDA_GB_SECOND
            })
            .sum::<f64>()
            / n
            * million
    };
    let dynamodb = |ops: &BTreeMap<String, Tally>| {
        let (read, write) = units(ops);
        (read * price::RRU + write * price::WRU) / n * million
    };
    let bytes_out = m.post_bytes as f64 + m.deliveries as f64 * model.tls_bytes_per_delivery;
    EventsCost {
        events_lambda: lambda(&m.events_ms, 0.0),
        events_dynamodb: dynamodb(&m.events_ops),
        stream_reads: m.messages as f64 * price::STREAM_READ_BY_LAMBDA / n * million,
        sqs: (m.sqs_send + m.sqs_receive + m.sqs_delete) * price::SQS_REQUEST / n * million,
        deliver_lambda: lambda(&m.deliver_ms, model.post_ms),
        deliver_dynamodb: dynamodb(&m.deliver_ops),
        transfer: bytes_out / 1e9 * price::TRANSFER_OUT_GB / n * million,
    }
}

/// Requests SQS bills for a request carrying `bytes` of messages.
fn sqs_requests(bytes: usize) -> f64 {
    bytes.div_ceil(price::SQS_CHUNK_BYTES).max(1) as f64
}

#[derive(Debug, Default)]
struct Received {
    posts: u64,
    bytes: u64,
}

/// A webhook receiver on loopback: answers every request 204 at once, counting its bytes.
async fn receive(
    axum::extract::State(seen): axum::extract::State<Arc<Mutex<Received>>>,
    request: axum::extract::Request,
) -> axum::http::StatusCode {
    let (parts, body) = request.into_parts();
    let body = axum::body::to_bytes(body, 1 << 20)
        .await
        .map_or(0, |b| b.len());
    let head = format!("{} {} HTTP/1.1\r\n", parts.method, parts.uri).len()
        + parts
            .headers
            .iter()
            .map(|(k, v)| k.as_str().len() + 2 + v.len() + 2)
            .sum::<usize>()
        + 2;
    let mut seen = seen
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    seen.posts += 1;
    seen.bytes += (head + body) as u64;
    axum::http::StatusCode::NO_CONTENT
}

/// The `events` and `deliver` functions' runtime on the world's moto (its table, a delivery
/// queue on moto's SQS), with its own meter, and the loopback receiver.
pub(crate) struct EventsRig {
    runtime: Runtime,
    meter: Meter,
    readback: Client,
    sqs: aws_sdk_sqs::Client,
    queue_url: String,
    queue_arn: String,
    receiver: Arc<Mutex<Received>>,
    receiver_url: String,
    endpoints: usize,
    sequence: u64,
    /// Messages sent so far (their ids, apart from the chat scenarios').
    messages: u64,
}

impl EventsRig {
    pub(crate) async fn start(w: &World) -> Self {
        use aws_sdk_dynamodb::config::{BehaviorVersion, Credentials, Region};
        let moto = &w.dynamo.endpoint;
        let sdk = aws_config::defaults(BehaviorVersion::latest())
            .region(Region::new("us-east-1"))
            .endpoint_url(moto)
            .credentials_provider(Credentials::new("cost", "cost", None, None, "cost"))
            .load()
            .await;
        let sqs = aws_sdk_sqs::Client::new(&sdk);
        let queue_url = sqs
            .create_queue()
            .queue_name(format!("cost-deliveries-{}", std::process::id()))
            .attributes(
                aws_sdk_sqs::types::QueueAttributeName::VisibilityTimeout,
                "180",
            )
            .send()
            .await
            .expect("CreateQueue")
            .queue_url
            .expect("a queue URL");
        let queue_arn = format!(
            "arn:aws:sqs:us-east-1:123456789012:cost-deliveries-{}",
            std::process::id()
        );
        let meter = Meter::default();
        let dynamodb = Client::from_conf(
            aws_sdk_dynamodb::config::Builder::from(&sdk)
                .interceptor(meter.clone())
                .build(),
        );
        let table = w.runtime.store().table().to_owned();
        let vars: HashMap<&str, String> = HashMap::from([
            (env::JWT_SECRET, SECRET.to_owned()),
            (env::TABLE, table),
            (env::MANAGEMENT_ENDPOINT, "http://127.0.0.1:9".to_owned()),
            (env::DELIVERY_QUEUE_URL, queue_url.clone()),
            // The receiver is on loopback.
            (env::WEBHOOK_ALLOW_PRIVATE, "true".to_owned()),
        ]);
        let config =
            FunctionConfig::from_env(|k| vars.get(k).cloned()).expect("the functions' config");
        let runtime = Runtime::with_dynamodb(config, dynamodb, sdk).expect("a runtime");
        let receiver = Arc::new(Mutex::new(Received::default()));
        let app = axum::Router::new()
            .fallback(receive)
            .with_state(receiver.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("a loopback port");
        let receiver_url = format!("http://{}", listener.local_addr().expect("bound"));
        tokio::spawn(async move { axum::serve(listener, app).await });
        Self {
            runtime,
            meter,
            readback: emulator_client(moto).await,
            sqs,
            queue_url,
            queue_arn,
            receiver,
            receiver_url,
            endpoints: 0,
            sequence: 0,
            messages: 0,
        }
    }

    /// Tenant `acme`'s endpoints, every event type, up to `n` (created now: they receive the
    /// events of changes from now on).
    pub(crate) async fn endpoints(&mut self, n: usize) {
        for i in self.endpoints..n {
            let endpoint = Endpoint {
                id: endpoint_id([u8::try_from(i + 1).unwrap_or(u8::MAX); 12]),
                tenant: Some("acme".into()),
                url: format!("{}/hooks/{i}", self.receiver_url),
                types: Vec::new(),
                enabled: true,
                description: None,
                secrets: vec![EndpointSecret {
                    secret: WebhookSecret::from_bytes(vec![7; 32])
                        .expect("a secret")
                        .expose(),
                    expires_at: None,
                }],
                created_at: now_ms(),
            };
            self.runtime
                .store()
                .put_endpoint(&endpoint)
                .await
                .expect("put an endpoint");
        }
        self.endpoints = self.endpoints.max(n);
        self.meter.take();
    }

    /// The stream record (`NEW_AND_OLD_IMAGES`) of the insert of `item` (DynamoDB JSON).
    fn stream_record(&mut self, item: &Value) -> EventRecord {
        self.sequence += 1;
        let size = item.as_object().map_or(0, item_size);
        serde_json::from_value(json!({
            "eventID": format!("{:032x}", self.sequence),
            "eventName": "INSERT",
            "eventVersion": "1.1",
            "eventSource": "aws:dynamodb",
            "awsRegion": "us-east-1",
            "dynamodb": {
                "ApproximateCreationDateTime": now_ms() / 1000,
                "Keys": {ATTR_PK: item[ATTR_PK], ATTR_SK: item[ATTR_SK]},
                "NewImage": item,
                "SequenceNumber": format!("{:021}", self.sequence),
                "SizeBytes": size,
                "StreamViewType": "NEW_AND_OLD_IMAGES",
            },
            "eventSourceARN": "arn:aws:dynamodb:us-east-1:123456789012:table/roomcast/stream/cost",
        }))
        .expect("a stream record")
    }

    /// Every message in the queue (short polls until one comes back empty).
    async fn receive_all(&self) -> Vec<aws_sdk_sqs::types::Message> {
        let mut all = Vec::new();
        loop {
            let got = self
                .sqs
                .receive_message()
                .queue_url(&self.queue_url)
                .max_number_of_messages(10)
                .wait_time_seconds(0)
                .message_system_attribute_names(aws_sdk_sqs::types::MessageSystemAttributeName::All)
                .send()
                .await
                .expect("ReceiveMessage")
                .messages
                .unwrap_or_default();
            if got.is_empty() {
                return all;
            }
            all.extend(got);
        }
    }

    /// The queue message as the SQS event source mapping hands it to `deliver`.
    fn sqs_message(&self, message: &aws_sdk_sqs::types::Message) -> SqsMessage {
        let attributes: serde_json::Map<String, Value> = message
            .attributes()
            .into_iter()
            .flatten()
            .map(|(name, value)| (name.as_str().to_owned(), json!(value)))
            .collect();
        serde_json::from_value(json!({
            "messageId": message.message_id(),
            "receiptHandle": message.receipt_handle(),
            "body": message.body(),
            "attributes": attributes,
            "messageAttributes": {},
            "md5OfBody": message.md5_of_body(),
            "eventSource": "aws:sqs",
            "eventSourceARN": self.queue_arn,
            "awsRegion": "us-east-1",
        }))
        .expect("an SQS event record")
    }

    /// What the mapping does with the messages `deliver` did not report: DeleteMessageBatch.
    async fn delete(&self, messages: &[aws_sdk_sqs::types::Message]) {
        let entries = messages
            .iter()
            .enumerate()
            .map(|(i, m)| {
                aws_sdk_sqs::types::DeleteMessageBatchRequestEntry::builder()
                    .id(i.to_string())
                    .receipt_handle(m.receipt_handle().unwrap_or_default())
                    .build()
                    .expect("a delete entry")
            })
            .collect();
        let out = self
            .sqs
            .delete_message_batch()
            .queue_url(&self.queue_url)
            .set_entries(Some(entries))
            .send()
            .await
            .expect("DeleteMessageBatch");
        assert!(out.failed().is_empty(), "deletes failed: {out:?}");
    }

    /// The `deliver` function on `queued`, in batches of 10 as its mapping hands them out.
    async fn deliver(
        &self,
        deliverer: &Deliverer,
        queued: &[aws_sdk_sqs::types::Message],
        m: &mut EventsMeasured,
    ) {
        for batch in queued.chunks(10) {
            let messages: Vec<SqsMessage> = batch.iter().map(|q| self.sqs_message(q)).collect();
            let bytes: usize = batch.iter().map(|q| q.body().map_or(0, str::len)).sum();
            self.meter.take();
            let started = Instant::now();
            let response = deliverer.handle_messages(&messages).await;
            m.deliver_ms.push(started.elapsed().as_secs_f64() * 1000.0);
            assert!(
                response.batch_item_failures.is_empty(),
                "deliveries to the loopback receiver failed: {response:?}"
            );
            add_tally(
                &mut m.deliver_ops,
                &bill(&self.meter.take(), &self.readback).await,
            );
            self.delete(batch).await;
            m.sqs_receive += sqs_requests(bytes);
            m.sqs_delete += 1.0;
        }
    }
}

/// The message item (DynamoDB JSON) the `message` handler put in `calls`' transaction.
fn message_item(calls: &[roomcast_testkit::aws::capacity::Call]) -> Value {
    calls
        .iter()
        .filter(|c| c.operation == "TransactWriteItems")
        .flat_map(|c| {
            c.request["TransactItems"]
                .as_array()
                .cloned()
                .unwrap_or_default()
        })
        .map(|action| action["Put"]["Item"].clone())
        .find(|item| {
            item[ATTR_SK]["S"]
                .as_str()
                .is_some_and(|sk| sk.starts_with(MESSAGE_SK_PREFIX))
        })
        .expect("the message handler put a message item")
}

/// `batches` batches of `batch` messages in `room` (sent through the `message` handler) through
/// `events` with `endpoints` endpoints, and their deliveries through `deliver` (module doc, 5).
pub(crate) async fn measure_events(
    w: &World,
    rig: &mut EventsRig,
    room: &str,
    members: &[String],
    endpoints: usize,
    batch: usize,
    batches: usize,
) -> EventsMeasured {
    rig.endpoints(endpoints).await;
    let function: EventsFunction = rig.runtime.events_function().expect("events are on");
    let deliverer = rig
        .runtime
        .deliverer()
        .expect("a webhook client")
        .expect("events are on");
    let mut m = EventsMeasured {
        room_online: members.len(),
        endpoints,
        ..EventsMeasured::default()
    };
    let mut writes = 0;
    for _ in 0..batches {
        let mut records = Vec::new();
        for i in 0..batch {
            let sender = &members[i % members.len()];
            rig.messages += 1;
            let id = format!("01JEV{:021}", rig.messages);
            w.meter.take();
            w.frame(
                sender,
                "message",
                json!({"action": "message", "room": room, "id": id, "body": BODY}),
            )
            .await;
            let calls = w.meter.take();
            writes += tally(&bill(&calls, &rig.readback).await)
                .values()
                .filter(|t| t.write > 0.0)
                .map(|t| t.items)
                .sum::<u64>();
            records.push(rig.stream_record(&message_item(&calls)));
            for member in members {
                w.received(member);
            }
        }
        rig.meter.take();
        let started = Instant::now();
        let response = function.handle_stream(&records, now_ms()).await;
        m.events_ms.push(started.elapsed().as_secs_f64() * 1000.0);
        assert!(
            response.batch_item_failures.is_empty(),
            "events failed: {response:?}"
        );
        add_tally(
            &mut m.events_ops,
            &bill(&rig.meter.take(), &rig.readback).await,
        );
        m.messages += records.len();
        let queued = rig.receive_all().await;
        assert_eq!(
            queued.len(),
            batch * endpoints,
            "one delivery per message and endpoint"
        );
        let sizes: Vec<usize> = queued
            .iter()
            .map(|q| q.body().map_or(0, str::len))
            .collect();
        m.deliveries += queued.len();
        m.queued_bytes += sizes.iter().sum::<usize>() as u64;
        // `events` sends them ten to a SendMessageBatch.
        m.sqs_send += sizes
            .chunks(10)
            .map(|c| sqs_requests(c.iter().sum()))
            .sum::<f64>();
        let before = {
            let r = rig
                .receiver
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            (r.posts, r.bytes)
        };
        rig.deliver(&deliverer, &queued, &mut m).await;
        let r = rig
            .receiver
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        m.posts += r.posts - before.0;
        m.post_bytes += r.bytes - before.1;
    }
    m.table_writes_per_message = writes as f64 / m.messages.max(1) as f64;
    m
}

/// One member event (`member.joined`) as the service writes it with endpoints on: "does any
/// endpoint exist" (one Query, remembered 10 s by a warm function) and the `EV#` item
/// (BatchWriteItem), then its stream record through `events` alone in a batch.
pub(crate) async fn measure_member_event(rig: &mut EventsRig, room: &str) -> Value {
    let function = rig.runtime.events_function().expect("events are on");
    rig.meter.take();
    assert!(rig.runtime.store().any_endpoint().await.expect("Query"));
    let event = Event::member_joined(&RoomRef::new("acme", room), "newcomer", now_ms());
    rig.runtime
        .store()
        .put_member_events(std::slice::from_ref(&event))
        .await
        .expect("BatchWriteItem");
    let calls = rig.meter.take();
    let item = calls
        .iter()
        .find(|c| c.operation == "BatchWriteItem")
        .and_then(|c| {
            c.request["RequestItems"]
                .as_object()?
                .values()
                .next()?
                .get(0)
                .map(|r| r["PutRequest"]["Item"].clone())
        })
        .expect("the member event item");
    let service = tally(&bill(&calls, &rig.readback).await);
    let record = rig.stream_record(&item);
    let response = function.handle_stream(&[record], now_ms()).await;
    assert!(response.batch_item_failures.is_empty(), "{response:?}");
    let events = tally(&bill(&rig.meter.take(), &rig.readback).await);
    let queued = rig.receive_all().await;
    assert_eq!(queued.len(), rig.endpoints, "one delivery per endpoint");
    for batch in queued.chunks(10) {
        rig.delete(batch).await;
    }
    let (write_rru, write_wru) = units(&BTreeMap::from([(
        "BatchWriteItem".to_owned(),
        service.get("BatchWriteItem").cloned().unwrap_or_default(),
    )]));
    let query = service.get("Query").cloned().unwrap_or_default();
    json!({
        "endpoints": rig.endpoints,
        "any_endpoint_query": {"calls": query.calls, "rru": query.read},
        "member_event_item": {"bytes": item.as_object().map_or(0, item_size), "rru": write_rru, "wru": write_wru},
        "events_calls_alone_in_a_batch": events,
        "deliveries": queued.len(),
        "cost_per_million_joins_usd": {
            "member_event_write": write_wru * price::WRU * 1e6,
            "any_endpoint_query_at_most": query.read * price::RRU * 1e6,
        },
    })
}

fn events_json(m: &EventsMeasured, model: &EventsModel) -> Value {
    let n = m.messages.max(1) as f64;
    let per_op = |ops: &BTreeMap<String, Tally>| -> BTreeMap<String, Value> {
        ops.iter()
            .map(|(op, t)| {
                (
                    op.clone(),
                    json!({
                        "calls": t.calls as f64 / n,
                        "items": t.items as f64 / n,
                        "bytes": t.bytes as f64 / n,
                        "rru": t.read / n,
                        "wru": t.write / n,
                    }),
                )
            })
            .collect()
    };
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len().max(1) as f64;
    let (er, ew) = units(&m.events_ops);
    let (dr, dw) = units(&m.deliver_ops);
    let c = events_cost(m, model);
    json!({
        "room_online": m.room_online,
        "endpoints": m.endpoints,
        "messages_measured": m.messages,
        "events_invocations": m.events_ms.len(),
        "table_writes_per_message": m.table_writes_per_message,
        "per_message": {
            "events_invocations": m.events_ms.len() as f64 / n,
            "events_dynamodb": per_op(&m.events_ops),
            "events_rru": er / n,
            "events_wru": ew / n,
            "deliveries": m.deliveries as f64 / n,
            "sqs_send_requests": m.sqs_send / n,
            "sqs_receive_requests": m.sqs_receive / n,
            "sqs_delete_requests": m.sqs_delete / n,
            "deliver_invocations": m.deliver_ms.len() as f64 / n,
            "deliver_dynamodb": per_op(&m.deliver_ops),
            "deliver_rru": dr / n,
            "deliver_wru": dw / n,
            "post_bytes": m.post_bytes as f64 / n,
        },
        "queued_message_bytes": m.queued_bytes as f64 / m.deliveries.max(1) as f64,
        "events_ms_measured": {"runs": m.events_ms, "mean": mean(&m.events_ms)},
        "deliver_ms_measured_without_post": {"runs": m.deliver_ms, "mean": mean(&m.deliver_ms)},
        "cost_per_million_messages_usd": {
            "events_lambda": c.events_lambda,
            "events_dynamodb": c.events_dynamodb,
            "stream_reads": c.stream_reads,
            "sqs": c.sqs,
            "deliver_lambda": c.deliver_lambda,
            "deliver_dynamodb": c.deliver_dynamodb,
            "transfer_out": c.transfer,
            "total": c.total(),
        },
    })
}

/// Section 5 of the module doc, every room with 1 and then 3 endpoints.
async fn integration_events(
    args: &Args,
    w: &World,
    rooms: &[(usize, String, Vec<String>)],
) -> Value {
    let model = EventsModel {
        messages_per_events_batch: args.events_batch,
        ..EventsModel::DEFAULT
    };
    let mut rig = EventsRig::start(w).await;
    let mut runs = Vec::new();
    for endpoints in [1, 3] {
        for (k, room, members) in rooms {
            let started = Instant::now();
            let m = measure_events(
                w,
                &mut rig,
                room,
                members,
                endpoints,
                model.messages_per_events_batch,
                args.events_batches,
            )
            .await;
            eprintln!(
                "  events: room of {k}, {endpoints} endpoint(s): {} messages in {:.1} s",
                m.messages,
                started.elapsed().as_secs_f64()
            );
            runs.push(events_json(&m, &model));
        }
    }
    let member_event = measure_member_event(&mut rig, &rooms[0].1).await;
    json!({
        "model": {
            "messages_per_events_batch": model.messages_per_events_batch,
            "deliveries_per_deliver_batch": 10,
            "lambda_memory_gb": model.lambda_gb,
            "post_ms": model.post_ms,
            "tls_bytes_per_delivery": model.tls_bytes_per_delivery,
            "events_duration": "measured: the handler against moto (DynamoDB, SQS) on loopback",
            "deliver_duration": "measured against moto and a loopback receiver, plus post_ms",
        },
        "prices_usd": {
            "sqs_per_million_requests": price::SQS_REQUEST * 1e6,
            "sqs_request_chunk_bytes": price::SQS_CHUNK_BYTES,
            "dynamodb_stream_reads_by_lambda": price::STREAM_READ_BY_LAMBDA,
            "transfer_out_per_gb": price::TRANSFER_OUT_GB,
        },
        "runs": runs,
        "member_event": member_event,
    })
}

fn events_markdown(events: &Value) {
    let f = |v: &Value| v.as_f64().unwrap_or(f64::NAN);
    println!(
        "\n| room online | endpoints | events: DynamoDB per message | SQS requests per message | deliver: DynamoDB per message | events ms per batch (measured) | events Lambda | DynamoDB (events + deliver) | SQS | deliver Lambda | transfer out | **added per million messages** |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|---|---|");
    for r in events["runs"].as_array().into_iter().flatten() {
        let p = &r["per_message"];
        let c = &r["cost_per_million_messages_usd"];
        println!(
            "| {} | {} | {:.2} RRU ({:.1} Query) | {:.2} | {:.2} RRU + {:.0} WRU | {:.1} | ${:.3} | ${:.2} | ${:.2} | ${:.2} | ${:.2} | **${:.2}** |",
            r["room_online"],
            r["endpoints"],
            f(&p["events_rru"]),
            f(&p["events_dynamodb"]["Query"]["calls"]),
            f(&p["sqs_send_requests"])
                + f(&p["sqs_receive_requests"])
                + f(&p["sqs_delete_requests"]),
            f(&p["deliver_rru"]),
            f(&p["deliver_wru"]),
            f(&r["events_ms_measured"]["mean"]),
            f(&c["events_lambda"]),
            f(&c["events_dynamodb"]) + f(&c["deliver_dynamodb"]),
            f(&c["sqs"]),
            f(&c["deliver_lambda"]),
            f(&c["transfer_out"]),
            f(&c["total"]),
        );
    }
    let me = &events["member_event"];
    println!(
        "\nmember event: EV# item {} bytes = {} WRU; any-endpoint Query {} RRU (at most once per 10 s per warm function); events alone in a batch: {}",
        me["member_event_item"]["bytes"],
        me["member_event_item"]["wru"],
        me["any_endpoint_query"]["rru"],
        me["events_calls_alone_in_a_batch"],
    );
}

fn markdown(results: &Value) {
    let f = |v: &Value| v.as_f64().unwrap_or(f64::NAN);
    println!(
        "\n| total connections | online in the room | DynamoDB calls | RRU (size) | WRU (size) | RRU (moto) | WRU (moto) | posts | API Gateway | Lambda | DynamoDB | **per million messages** |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|---|---|");
    for s in results["scenarios"].as_array().into_iter().flatten() {
        let pm = &s["roomcast"];
        let c = &pm["cost_per_million_messages_usd"];
        println!(
            "| {} | {} | {} | {} | {} | {} | {} | {} | ${:.2} | ${:.2} | ${:.2} | **${:.2}** |",
            s["total_connections"],
            s["room_online"],
            f(&pm["dynamodb_calls"]),
            f(&pm["rru"]),
            f(&pm["wru"]),
            f(&pm["moto_rru"]),
            f(&pm["moto_wru"]),
            f(&pm["management_api_posts"]),
            f(&c["api_gateway"]),
            f(&c["lambda"]),
            f(&c["dynamodb"]),
            f(&c["total"]),
        );
    }
    println!("\nsample design:");
    for s in results["sample"].as_array().into_iter().flatten() {
        let c = &s["design"]["cost_per_million_messages_usd"];
        println!(
            "| {} | scan calls {} | RRU {} (moto {}) | bytes {} | posts {} | apigw ${:.2} | lambda ${:.2} | dynamodb ${:.2} | **${:.2}** |",
            s["total_connections"],
            f(&s["design"]["dynamodb_calls"]),
            f(&s["design"]["rru"]),
            f(&s["design"]["moto_rru"]),
            f(&s["design"]["ops"]["Scan"]["bytes"]),
            f(&s["design"]["management_api_posts"]),
            f(&c["api_gateway"]),
            f(&c["lambda"]),
            f(&c["dynamodb"]),
            f(&c["total"]),
        );
    }
    println!("\n| function | zipped | stripped | cold init median | p90 |");
    println!("|---|---|---|---|---|");
    for fun in results["functions"].as_array().into_iter().flatten() {
        println!(
            "| `{}` | {:.2} MB | {:.2} MB | {:.1} ms | {:.1} ms |",
            fun["function"].as_str().unwrap_or_default(),
            f(&fun["zipped_bytes"]) / 1e6,
            f(&fun["stripped_bytes"]) / 1e6,
            f(&fun["cold_init_ms"]["median"]),
            f(&fun["cold_init_ms"]["p90"]),
        );
    }
}

#[tokio::main(flavor = "multi_thread")]
async fn main() {
    let args = args();
    let w = world_with(&[(env::ATTACHMENT_BUCKET, ATTACHMENT_BUCKET)]).await;
    let moto = w.dynamo.endpoint.clone();
    let readback = emulator_client(&moto).await;
    let metered = Client::from_conf(
        aws_sdk_dynamodb::Config::builder()
            .behavior_version(aws_sdk_dynamodb::config::BehaviorVersion::latest())
            .region(aws_sdk_dynamodb::config::Region::new("us-east-1"))
            .endpoint_url(&moto)
            .credentials_provider(aws_sdk_dynamodb::config::Credentials::new(
                "cost", "cost", None, None, "cost",
            ))
            .interceptor(w.meter.clone())
            .build(),
    );
    let table = w.runtime.store().table().to_owned();
    eprintln!("moto at {moto}, table {table}");

    // Online members, through the handlers.
    let mut rooms = Vec::new();
    for k in ROOM_SIZES {
        let room = format!("chat-{k}");
        let mut members = Vec::new();
        for i in 0..k {
            let conn = format!("On{k:03}m{i:09}=");
            online(&w, &conn, &format!("u{k}-{i}"), &room).await;
            members.push(conn);
        }
        rooms.push((k, room, members));
    }
    // Drop the presence frames the joins broadcast: from here on, every frame is measured.
    for (_, _, members) in &rooms {
        for conn in members {
            w.received(conn);
        }
    }
    eprintln!("attachments");
    let attachments = measure_attachments(&w, &readback).await;
    attachments_markdown(&attachments);
    if args.attachments_only {
        write(&args, &json!({"attachments": attachments}));
        return;
    }
    eprintln!(
        "integration events ({} batches of {} messages per room and endpoint count)",
        args.events_batches, args.events_batch
    );
    let events = integration_events(&args, &w, &rooms).await;
    if args.events_only {
        events_markdown(&events);
        write(&args, &json!({"integration_events": events}));
        return;
    }
    let template = template_items(&w, &readback).await;
    let mut connections = ROOM_SIZES.iter().sum::<usize>() + 1;
    create_sample_table(&readback).await;
    let mut sample_connections = 0;

    let mut scenarios = Vec::new();
    let mut samples = Vec::new();
    let mut next_id = 0;
    for &total in &args.totals {
        let started = Instant::now();
        let fillers: Vec<Item> = (connections..total)
            .flat_map(|i| filler_items(&template, i))
            .collect();
        let added = total.saturating_sub(connections);
        batch_put(&readback, &table, fillers).await;
        connections = connections.max(total);
        let sample_items: Vec<Item> = (sample_connections..total)
            .map(|i| {
                HashMap::from([(
                    "connectionId".to_owned(),
                    AttributeValue::S(format!("S{i:014}=")),
                )])
            })
            .collect();
        batch_put(&readback, SAMPLE_TABLE, sample_items).await;
        sample_connections = sample_connections.max(total);
        eprintln!(
            "{total} connections ({added} fillers added, {:.1} s)",
            started.elapsed().as_secs_f64()
        );
        // moto copies the whole table for every TransactWriteItems (its rollback), so a message
        // takes minutes at 100,000 connections; the units per message are the same every time.
        let messages = if total > LARGE {
            args.messages_large
        } else {
            args.messages
        };
        for (k, room, members) in &rooms {
            let started = Instant::now();
            let per = measure_room(&w, &readback, room, members, messages, &mut next_id).await;
            // One inbound message, then the ack and the deliveries (one post each).
            let api_gateway = 1.0 + per.posts / per.messages as f64;
            eprintln!(
                "  room of {k}: {} messages in {:.1} s",
                per.messages,
                started.elapsed().as_secs_f64()
            );
            scenarios.push(json!({
                "total_connections": total,
                "room_online": k,
                "roomcast": per.json(api_gateway, ROOMCAST_ROUND, Some(LAMBDA_SPLIT), true),
            }));
        }
        let per = measure_sample(&w.meter, &metered, &readback).await;
        let api_gateway = 1.0 + per.posts / per.messages as f64;
        samples.push(json!({
            "total_connections": total,
            "design": per.json(api_gateway, SAMPLE_ROUND, None, true),
        }));
    }

    eprintln!("cold init and sizes ({} runs per function)", args.cold_runs);
    let functions = functions(&args, &moto).await;
    let results = json!({
        "what": "AWS cost per message (docs/benchmarks.md); units per message are means over the measured messages",
        "prices_usd": {
            "api_gateway_per_million_messages": price::API_GATEWAY_MESSAGE * 1e6,
            "lambda_per_million_requests": price::LAMBDA_REQUEST * 1e6,
            "lambda_per_gb_second": price::LAMBDA_GB_SECOND,
            "dynamodb_per_million_wru": price::WRU * 1e6,
            "dynamodb_per_million_rru": price::RRU * 1e6,
        },
        "lambda_model": {
            "memory_gb": LAMBDA_GB,
            "base_ms": BASE_MS,
            "per_extra_round_of_posts_ms": ROUND_MS,
            "roomcast_posts_per_round": ROOMCAST_ROUND,
            "sample_posts_per_round": SAMPLE_ROUND,
            "roomcast_split_above_posts": LAMBDA_SPLIT.threshold,
            "roomcast_posts_per_fanout_invocation": LAMBDA_SPLIT.slice_len,
        },
        "message_body_bytes": BODY.len(),
        "messages_per_room": args.messages,
        "scenarios": scenarios,
        "sample": samples,
        "functions": functions,
        "integration_events": events,
        "attachments": attachments,
    });
    markdown(&results);
    events_markdown(&results["integration_events"]);
    write(&args, &results);
}

fn write(args: &Args, results: &Value) {
    if let Some(out) = &args.out {
        let text = serde_json::to_string_pretty(results).expect("JSON");
        std::fs::write(out, text + "\n")
            .unwrap_or_else(|e| panic!("cannot write {}: {e}", out.display()));
        eprintln!("wrote {}", out.display());
    }
}

/// DynamoDB units of some calls: (calls, RRU, WRU).
async fn units_of(
    calls: &[roomcast_testkit::aws::capacity::Call],
    readback: &Client,
) -> (f64, f64, f64) {
    let billed = bill(calls, readback).await;
    let (read, write) = units(&tally(&billed));
    (calls.len() as f64, read, write)
}

/// `method path` through the `http` handler as `token`; the reply's body.
async fn http_call(w: &World, method: &str, path: &str, token: &str, body: &Value) -> Value {
    let authorization = format!("Bearer {token}");
    let body = if body.is_null() {
        Vec::new()
    } else {
        body.to_string().into_bytes()
    };
    let reply = w
        .runtime
        .handle_http(&roomcast_core::http::HttpRequest {
            method,
            path,
            query: None,
            authorization: Some(&authorization),
            body: &body,
            origin: None,
            client_ip: None,
        })
        .await;
    assert!(
        reply.status < 300,
        "{method} {path}: {} {}",
        reply.status,
        reply.body
    );
    reply.body
}

/// Section 6 of the doc: the DynamoDB units of a slot, of attaching it to a message (the
/// message with it less the same message without) and of a download link, averaged over a few
/// rounds, and the S3 requests of the code.
async fn measure_attachments(w: &World, readback: &Client) -> Value {
    const ROUNDS: usize = 5;
    let s3 = aws_sdk_s3::Client::from_conf(
        aws_sdk_s3::Config::builder()
            .behavior_version(aws_sdk_s3::config::BehaviorVersion::latest())
            .region(aws_sdk_s3::config::Region::new("us-east-1"))
            .endpoint_url(&w.dynamo.endpoint)
            .force_path_style(true)
            .credentials_provider(aws_sdk_s3::config::Credentials::new(
                "cost", "cost", None, None, "cost",
            ))
            .build(),
    );
    s3.create_bucket()
        .bucket(ATTACHMENT_BUCKET)
        .send()
        .await
        .expect("bucket");
    let room = "chat-files";
    let conn = "Files0000000001=";
    online(w, conn, "uploader", room).await;
    let token = member_token("uploader", &["chat-*"]);
    // A 3×2 PNG header, then filler: the bytes the sniffer accepts as image/png.
    let mut png = b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR\0\0\0\x03\0\0\0\x02".to_vec();
    png.resize(4_096, 0x5a);
    let mut sums = [[0.0f64; 3]; 4];
    for round in 0..ROUNDS {
        w.meter.take();
        let grant = http_call(
            w,
            "POST",
            &format!("/rooms/{room}/uploads"),
            &token,
            &json!({"name": "photo.png", "size": png.len(), "type": "image/png"}),
        )
        .await;
        let slot = units_of(&w.meter.take(), readback).await;
        let status = post_upload(&grant["upload"], &png).await;
        assert!((200..300).contains(&status), "upload: {status}");
        let id = grant["id"].as_str().expect("id").to_owned();
        // The same caption with and without the file: the difference is the attachment's.
        let send = async |message: &str, attachments: Value| {
            w.meter.take();
            w.frame(
                conn,
                "message",
                json!({"action": "message", "room": room, "id": message, "body": "a photo", "attachments": attachments}),
            )
            .await;
            let frames = w.received(conn);
            assert!(frames.iter().any(|f| f["type"] == "ack"), "{frames:?}");
            units_of(&w.meter.take(), readback).await
        };
        let with = send(&format!("att-{round}"), json!([{"id": id}])).await;
        let without = send(&format!("plain-{round}"), json!([])).await;
        w.meter.take();
        http_call(
            w,
            "GET",
            &format!("/rooms/{room}/attachments/{id}"),
            &token,
            &Value::Null,
        )
        .await;
        let link = units_of(&w.meter.take(), readback).await;
        for (sum, part) in sums.iter_mut().zip([slot, with, without, link]) {
            sum[0] += part.0;
            sum[1] += part.1;
            sum[2] += part.2;
        }
    }
    let mean = |i: usize| {
        let [calls, read, write] = sums[i].map(|v| v / ROUNDS as f64);
        json!({"calls": calls, "rru": read, "wru": write})
    };
    let attach = json!({
        "calls": (sums[1][0] - sums[2][0]) / ROUNDS as f64,
        "rru": (sums[1][1] - sums[2][1]) / ROUNDS as f64,
        "wru": (sums[1][2] - sums[2][2]) / ROUNDS as f64,
    });
    let measured = json!({
        "slot": mean(0),
        "attach": attach,
        "download_link": mean(3),
        "s3_requests": {"upload_post": 1, "attach_get_class": 2, "attach_put_class": 1, "per_download_get_class": 1},
        "file_bytes": ATTACHMENT_BYTES,
    });
    json!({"measured": measured, "cost_per_million_usd": attachment_cost(&measured)})
}

/// Prices one attachment per million: the slot (an HTTP API request, an `http` invocation, its
/// DynamoDB units), the browser's POST, the attach (two GET-class and one PUT-class S3 request,
/// the extra DynamoDB units), a month of storage, and each download (an HTTP API request and
/// invocation for the link, its units, one S3 GET and the bytes out).
fn attachment_cost(m: &Value) -> Value {
    let million = 1e6;
    let f = |v: &Value| v.as_f64().unwrap_or(0.0);
    let dynamodb = |part: &Value| f(&part["rru"]) * price::RRU + f(&part["wru"]) * price::WRU;
    let invocation = price::LAMBDA_REQUEST + LAMBDA_GB * BASE_MS / 1000.0 * price::LAMBDA_GB_SECOND;
    let gb = f(&m["file_bytes"]) / 1e9;
    let slot = price::HTTP_API_REQUEST + invocation + dynamodb(&m["slot"]);
    let upload = price::S3_PUT_CLASS;
    let attach = 2.0 * price::S3_GET_CLASS + price::S3_PUT_CLASS + dynamodb(&m["attach"]);
    let storage_month = gb * price::S3_GB_MONTH;
    let download = price::HTTP_API_REQUEST
        + invocation
        + dynamodb(&m["download_link"])
        + price::S3_GET_CLASS
        + gb * price::TRANSFER_OUT_GB;
    json!({
        "slot": slot * million,
        "upload": upload * million,
        "attach": attach * million,
        "storage_per_month": storage_month * million,
        "per_download": download * million,
        "one_attachment_one_month_two_downloads": (slot + upload + attach + storage_month + 2.0 * download) * million,
    })
}

fn attachments_markdown(a: &Value) {
    let f = |v: &Value| v.as_f64().unwrap_or(f64::NAN);
    let (m, c) = (&a["measured"], &a["cost_per_million_usd"]);
    let units = |p: &Value| {
        format!(
            "{:.1} RRU + {:.1} WRU ({:.1} calls)",
            f(&p["rru"]),
            f(&p["wru"]),
            f(&p["calls"])
        )
    };
    println!("\n| step | DynamoDB | S3 requests | per million |");
    println!("|---|---|---|---|");
    println!(
        "| slot (`POST …/uploads`) | {} | – | ${:.2} |",
        units(&m["slot"]),
        f(&c["slot"])
    );
    println!(
        "| upload (presigned POST) | – | 1 PUT-class | ${:.2} |",
        f(&c["upload"])
    );
    println!(
        "| attach (on a message) | {} | 2 GET-class + 1 PUT-class | ${:.2} |",
        units(&m["attach"]),
        f(&c["attach"])
    );
    println!(
        "| storage, a month ({:.1} MB) | – | – | ${:.2} |",
        f(&m["file_bytes"]) / 1e6,
        f(&c["storage_per_month"])
    );
    println!(
        "| each download (link + GET + bytes out) | {} | 1 GET-class | ${:.2} |",
        units(&m["download_link"]),
        f(&c["per_download"])
    );
    println!(
        "| **one attachment, a month, 2 downloads** | | | **${:.2}** |",
        f(&c["one_attachment_one_month_two_downloads"])
    );
}
