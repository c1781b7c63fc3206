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

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::types::{
    AttributeDefinition, AttributeValue, BillingMode, KeySchemaElement, KeyType, PutRequest,
    ScalarAttributeType, WriteRequest,
};
use futures::StreamExt;
use roomcast_aws::dynamo::emulator_client;
use roomcast_testkit::aws::capacity::{Billed, Meter, Tally, bill, tally};
use roomcast_testkit::aws::lambda::{SECRET, World, member_token, world};
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
}

/// Lambda duration model (not measured here: moto and a local Management API are not AWS's
/// latencies). A warm `message` invocation: 20 ms including the first round of posts
/// (docs/deploy.md §6), plus 10 ms per further round. Both designs run at 256 MB.
const LAMBDA_GB: f64 = 0.25;
const BASE_MS: f64 = 20.0;
const ROUND_MS: f64 = 10.0;
/// roomcast posts 32 at a time (`limits::FANOUT_CONCURRENCY`); the sample's SDK for JavaScript
/// v3 client keeps at most 50 sockets.
const ROOMCAST_ROUND: usize = roomcast_core::limits::FANOUT_CONCURRENCY;
const SAMPLE_ROUND: usize = 50;

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
         [--cold-runs 10] [--bins target/release]"
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

    fn json(&self, api_gateway_messages: f64, round: usize, inbound: bool) -> Value {
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
        let rounds = (posts / round as f64).ceil().max(1.0);
        let lambda_ms = BASE_MS + ROUND_MS * (rounds - 1.0);
        let million = 1e6;
        let api_gateway = api_gateway_messages * price::API_GATEWAY_MESSAGE * million;
        let lambda = (price::LAMBDA_REQUEST
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
    let w = world().await;
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
                "roomcast": per.json(api_gateway, ROOMCAST_ROUND, true),
            }));
        }
        let per = measure_sample(&w.meter, &metered, &readback).await;
        let api_gateway = 1.0 + per.posts / per.messages as f64;
        samples.push(json!({
            "total_connections": total,
            "design": per.json(api_gateway, SAMPLE_ROUND, true),
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
        },
        "message_body_bytes": BODY.len(),
        "messages_per_room": args.messages,
        "scenarios": scenarios,
        "sample": samples,
        "functions": functions,
    });
    markdown(&results);
    if let Some(out) = &args.out {
        let text = serde_json::to_string_pretty(&results).expect("JSON");
        std::fs::write(out, text + "\n")
            .unwrap_or_else(|e| panic!("cannot write {}: {e}", out.display()));
        eprintln!("wrote {}", out.display());
    }
}
