//! Fan-out at scale (issue 20; docs/benchmarks.md, "AWS fan-out at scale"): how long one chat
//! message takes to reach rooms of 10, 100, 1,000 and 10,000 online members on the AWS build,
//! with the Management API answering as API Gateway does.
//!
//! ```sh
//! cargo run --release -p roomcast-aws --example fanout -- \
//!   [--sizes 10,100,1000,10000] [--messages 20] [--concurrency 400] \
//!   [--latency-ms 20] [--jitter-ms 10] [--throttle aws|off|PER_SEC/BURST] \
//!   [--split both|off|on] [--invoke-latency-ms 50]
//! ```
//!
//! Each message goes through the `message` route's handler as the functions run it
//! (`roomcast_apigw::handle_event` onto the core's `ChatService`), which posts the ack and the
//! deliveries with the real Management API client (`aws-sdk-apigatewaymanagement`, SigV4, its
//! keep-alive pool, `ManagementGateway`) over loopback HTTP to the testkit's fake Management
//! API ([`management_api`]), which answers each request after the latency and jitter given and
//! throttles with API Gateway's account token bucket ([`PostTiming`]). The store is the core's
//! in-memory one behind the same service: moto, one request at a time, would take hours to
//! hold 10,000 joined connections, and its time per call is not DynamoDB's. A message's
//! DynamoDB calls (5, docs/benchmarks.md "AWS cost per message") add their own ~10–20 ms on
//! AWS, whatever the room.
//!
//! One message warms the client's connection pool first and is not counted (a warm function
//! keeps its connections). Per message: the **handler** time (the whole `handle_event` call: what Lambda bills) and the
//! **fan-out** wall time (from the event's arrival to the fake's answer to the last delivery).
//! The room's members are connected through the service and subscribed through the store (a
//! join through the service would announce each arrival to the room). With throttling on, the
//! example waits for the bucket to refill between messages: one message at a time on an
//! otherwise idle account.
//!
//! **Split** rows (`--split`): the `message` handler splits as the deployed functions do
//! (`fanout::LAMBDA_SPLIT`: above 1,000 recipients, slices of 1,000), posting the first slice
//! itself and handing the others to Lambda's Invoke API (the testkit's, over loopback HTTP
//! through the real `aws-sdk-lambda` client; it records each payload and when it arrived). On
//! AWS every `fanout` invocation has its own CPU, while this machine has two shared cores, so
//! the slices are not run together: after the handler returns, each recorded slice runs alone,
//! one after another, through the core's `deliver_handed_off` (what `Runtime::handle_fanout`
//! runs) on a fresh service, each timed. Per message: **handler** = the `message` handler's own
//! time (its slice and the Invoke calls); **fan-out** = the later of its own last delivery and,
//! for each slice, (its Invoke's arrival + the asynchronous start latency + the slice's time).
//! AWS documents no latency from an accepted asynchronous Invoke to the handler's start, so it
//! is an assumption, `--invoke-latency-ms` (default 50 ms, warm functions).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    missing_docs,
    reason = "a benchmark: a failing setup step ends it"
)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use aws_config::{BehaviorVersion, Region};
use aws_sdk_apigatewaymanagement::config::Credentials;
use roomcast_apigw::handle_event;
use roomcast_aws::fanout::{FanoutInvoker, FanoutSlice, LAMBDA_SPLIT};
use roomcast_aws::management::{MANAGEMENT_FANOUT_CONCURRENCY, ManagementGateway};
use roomcast_core::ChatService;
use roomcast_core::auth::{Claims, Role, TokenSigner};
use roomcast_core::limits::MAX_ROOMS_PER_CONNECTION;
use roomcast_core::service::{ServiceConfig, Upgrade};
use roomcast_core::store::ConnectionStore;
use roomcast_core::store::memory::{MemoryConnections, MemoryHistory};
use roomcast_testkit::aws::invoke::lambda_api;
use roomcast_testkit::aws::lambda::{PostTiming, Shared, fixture, management_api, timing_env};
use roomcast_testkit::service::{SECRET, verifier};
use serde_json::json;

struct Args {
    sizes: Vec<usize>,
    messages: usize,
    concurrency: Vec<usize>,
    timing: PostTiming,
    /// Rows without and/or with the split.
    splits: Vec<bool>,
    /// From an accepted asynchronous Invoke to the `fanout` handler's start (assumed).
    invoke_latency: Duration,
}

fn usage(problem: &str) -> ! {
    eprintln!(
        "{problem}\nusage: fanout [--sizes 10,100,1000,10000] [--messages 20] \
         [--concurrency 400] [--latency-ms 20] [--jitter-ms 10] [--throttle aws|off|R/B] \
         [--split both|off|on] [--invoke-latency-ms 50]"
    );
    std::process::exit(2)
}

fn parse_args() -> Args {
    let mut args = Args {
        sizes: vec![10, 100, 1_000, 10_000],
        messages: 20,
        concurrency: vec![MANAGEMENT_FANOUT_CONCURRENCY],
        timing: PostTiming {
            latency: Duration::from_millis(20),
            jitter: Duration::from_millis(10),
            throttle: Some(PostTiming::API_GATEWAY_THROTTLE),
        },
        splits: vec![false, true],
        invoke_latency: Duration::from_millis(50),
    };
    let number = |v: &str| -> usize { v.parse().unwrap_or_else(|_| usage(&format!("{v}?"))) };
    let list = |v: &str| -> Vec<usize> { v.split(',').map(number).collect() };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let value = it
            .next()
            .unwrap_or_else(|| usage(&format!("{flag} needs a value")));
        match flag.as_str() {
            "--sizes" => args.sizes = list(&value),
            "--messages" => args.messages = number(&value).max(1),
            "--concurrency" => args.concurrency = list(&value),
            "--latency-ms" => args.timing.latency = Duration::from_millis(number(&value) as u64),
            "--jitter-ms" => args.timing.jitter = Duration::from_millis(number(&value) as u64),
            "--split" => {
                args.splits = match value.as_str() {
                    "both" => vec![false, true],
                    "off" => vec![false],
                    "on" => vec![true],
                    _ => usage(&format!("--split {value}?")),
                }
            }
            "--invoke-latency-ms" => {
                args.invoke_latency = Duration::from_millis(number(&value) as u64);
            }
            "--throttle" => {
                let set = (value != "off").then_some(value);
                let lookup = |name: &str| set.clone().filter(|_| name == timing_env::THROTTLE);
                let timing = PostTiming::from_lookup(lookup).unwrap_or_else(|e| usage(&e));
                args.timing.throttle = timing.throttle;
            }
            _ => usage(&format!("unknown flag {flag}")),
        }
    }
    args
}

/// The fake Management API on a runtime of its own (its own thread), so its work is not
/// scheduled behind the handler's: its endpoint, state, and the `stat` file of its thread.
fn start_fake(timing: PostTiming) -> (String, Shared, String) {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let thread = std::fs::read_link("/proc/thread-self")
            .map(|task| format!("/proc/{}/stat", task.display()))
            .unwrap_or_default();
        runtime.block_on(async move {
            let (endpoint, shared) = management_api(timing).await;
            tx.send((endpoint, shared, thread)).unwrap();
            std::future::pending::<()>().await
        });
    });
    let (endpoint, shared, thread) = rx.recv().unwrap();
    shared.lock().unwrap().discard_frames = true;
    (endpoint, shared, thread)
}

/// The Management API client as `lambda::Runtime` builds it: from the loaded SDK configuration,
/// with the endpoint.
async fn management_client(endpoint: &str) -> aws_sdk_apigatewaymanagement::Client {
    let sdk = aws_config::defaults(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .credentials_provider(Credentials::new("test", "test", None, None, "test"))
        .load()
        .await;
    let config = aws_sdk_apigatewaymanagement::config::Builder::from(&sdk)
        .endpoint_url(endpoint)
        .build();
    aws_sdk_apigatewaymanagement::Client::from_conf(config)
}

fn now_ms() -> u64 {
    roomcast_testkit::aws::lambda::now_ms()
}

/// `k` members of `room` (distinct users), connected through the service and subscribed
/// through the store; their connection ids.
async fn online_room(
    service: &ChatService,
    store: &MemoryConnections,
    shared: &Shared,
    room: &str,
    k: usize,
) -> Vec<String> {
    let signer = TokenSigner::hs256(SECRET);
    let mut members = Vec::with_capacity(k);
    for i in 0..k {
        let conn = format!("F{k:05}m{i:09}=");
        let token = signer.sign(&Claims {
            sub: Some(format!("u{k}-{i}")),
            tid: Some("acme".into()),
            rooms: vec!["chat-*".into()],
            role: Role::User,
            exp: Some(now_ms() / 1000 + 3600),
            ..Claims::default()
        });
        let protocols = format!("roomcast.v1, {token}");
        let upgrade = Upgrade {
            protocols: Some(&protocols),
            ..Upgrade::default()
        };
        service
            .connect(&conn, upgrade, now_ms())
            .await
            .unwrap_or_else(|e| panic!("connect {conn}: {e:?}"));
        store
            .join_room(&conn, room, MAX_ROOMS_PER_CONNECTION)
            .await
            .unwrap();
        members.push(conn);
    }
    shared.lock().unwrap().live.extend(members.iter().cloned());
    members
}

/// CPU time (user + system) from a `stat` file: `/proc/self/stat` for the process, the fake's
/// thread's for the fake (Linux; zero elsewhere).
fn cpu_time(stat: &str) -> Duration {
    let stat = std::fs::read_to_string(stat).unwrap_or_default();
    // The fields after the command name (which may hold spaces) in parentheses.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map_or(Vec::new(), |(_, rest)| rest.split_whitespace().collect());
    // utime and stime are fields 14 and 15 of the line, 12 and 13 after the name, in ticks of
    // 1/100 s (USER_HZ).
    let ticks: u64 = [11, 12]
        .iter()
        .filter_map(|&i| fields.get(i)?.parse::<u64>().ok())
        .sum();
    Duration::from_millis(ticks * 10)
}

/// Nearest-rank percentile of sorted `samples`, in milliseconds.
fn percentile(sorted: &[Duration], p: f64) -> f64 {
    let rank = ((p / 100.0) * sorted.len() as f64).ceil().max(1.0) as usize;
    sorted[rank.min(sorted.len()) - 1].as_secs_f64() * 1000.0
}

struct Row {
    size: usize,
    concurrency: usize,
    split: bool,
    fanout: Vec<Duration>,
    handler: Vec<Duration>,
    /// The slowest handed-off slice of each message, alone.
    slowest_slice: Vec<Duration>,
    /// Slices handed off per message.
    invocations: usize,
    throttled: u64,
    /// CPU time per post of the `message` handler (the process's but the fake's thread's), of
    /// the slices run alone, and of the fake.
    cpu_per_post: Duration,
    slice_cpu_per_post: Duration,
    fake_cpu_per_post: Duration,
}

/// CPU time of the process and of the fake's thread, now.
fn cpu_now(fake_thread: &str) -> (Duration, Duration) {
    (cpu_time("/proc/self/stat"), cpu_time(fake_thread))
}

/// CPU used since `before`: (the process's but the fake's, the fake's).
fn cpu_since(before: (Duration, Duration), fake_thread: &str) -> (Duration, Duration) {
    let (process, fake) = cpu_now(fake_thread);
    let fake_used = fake.saturating_sub(before.1);
    (
        process.saturating_sub(before.0).saturating_sub(fake_used),
        fake_used,
    )
}

fn per_post(cpu: Duration, posts: u64) -> Duration {
    cpu / u32::try_from(posts.max(1)).unwrap_or(u32::MAX)
}

async fn measure(args: &Args, size: usize, concurrency: usize, split: bool) -> Row {
    let (endpoint, shared, fake_thread) = start_fake(PostTiming::default());
    let client = management_client(&endpoint).await;
    let (lambda_endpoint, lambda) = lambda_api().await;
    let invoker = FanoutInvoker::new(lambda_client(&lambda_endpoint).await, "fanout".into());
    let store = Arc::new(MemoryConnections::new());
    let history = Arc::new(MemoryHistory::new());
    // One service per invocation over the same stores and clients, as `lambda::Runtime` makes;
    // the `message` function's splits when asked, a `fanout` invocation's never does.
    let service = |splits: bool| {
        let gateway = ManagementGateway::with_concurrency(client.clone(), concurrency);
        let gateway = if splits {
            gateway.with_hand_off(invoker.clone(), LAMBDA_SPLIT)
        } else {
            gateway
        };
        ChatService::new(
            verifier(),
            store.clone(),
            history.clone(),
            Arc::new(gateway),
            ServiceConfig::default(),
        )
    };
    let room = format!("chat-{size}");
    let members = online_room(&service(false), &store, &shared, &room, size).await;
    shared.lock().unwrap().timing = args.timing;
    let refill = args.timing.throttle.map_or(Duration::ZERO, |p| {
        Duration::from_secs_f64(f64::from(p.burst) / f64::from(p.per_sec.max(1)))
    });
    let mut row = Row {
        size,
        concurrency,
        split,
        fanout: Vec::new(),
        handler: Vec::new(),
        slowest_slice: Vec::new(),
        invocations: 0,
        throttled: 0,
        cpu_per_post: Duration::ZERO,
        slice_cpu_per_post: Duration::ZERO,
        fake_cpu_per_post: Duration::ZERO,
    };
    let (mut cpu, mut slice_cpu, mut fake_cpu) = (Duration::ZERO, Duration::ZERO, Duration::ZERO);
    let (mut handler_posts, mut slice_posts) = (0, 0);
    // One message first, not counted: a warm function has its keep-alive pool open.
    for i in 0..=args.messages {
        tokio::time::sleep(refill).await;
        let sender = &members[i % size];
        let mut event = fixture("message");
        event.request_context.connection_id = sender.clone();
        event.request_context.request_time_epoch = now_ms();
        event.body = Some(
            json!({"action": "message", "room": room, "id": format!("m{i}"), "body": "x".repeat(94)})
                .to_string(),
        );
        shared.lock().unwrap().delivered = 0;
        lambda.lock().unwrap().accepted.clear();
        let before = cpu_now(&fake_thread);
        let started = Instant::now();
        let routed = handle_event(&service(split), &event).await;
        let handler = started.elapsed();
        let (handler_cpu, handler_fake_cpu) = cpu_since(before, &fake_thread);
        assert_eq!(routed.response.status_code, 200);
        let (own_posts, own_last) = {
            let mut s = shared.lock().unwrap();
            let last = s.last_delivery.take().expect("a delivery");
            (s.delivered, last.duration_since(started))
        };
        // Each handed-off slice alone, as its own invocation would run it.
        let invocations = std::mem::take(&mut lambda.lock().unwrap().accepted);
        let mut fanout = own_last;
        let mut slowest = Duration::ZERO;
        let before = cpu_now(&fake_thread);
        for invocation in &invocations {
            let slice: FanoutSlice = serde_json::from_str(&invocation.payload.to_string()).unwrap();
            let slice_started = Instant::now();
            service(false)
                .deliver_handed_off(slice.connections, slice.frame.get(), now_ms())
                .await;
            let took = slice_started.elapsed();
            slowest = slowest.max(took);
            let starts = invocation.at.duration_since(started) + args.invoke_latency;
            fanout = fanout.max(starts + took);
        }
        let (slices_cpu, slices_fake_cpu) = cpu_since(before, &fake_thread);
        let mut s = shared.lock().unwrap();
        // The ack to the sender and the message to every other member, each once.
        assert_eq!(
            s.delivered, size as u64,
            "room of {size}: {} throttled",
            s.throttled
        );
        if i > 0 {
            row.fanout.push(fanout);
            row.handler.push(handler);
            row.slowest_slice.push(slowest);
            row.invocations = invocations.len();
            row.throttled = s.throttled;
            cpu += handler_cpu;
            slice_cpu += slices_cpu;
            fake_cpu += handler_fake_cpu + slices_fake_cpu;
            handler_posts += own_posts;
            slice_posts += s.delivered - own_posts;
        }
        s.last_delivery = None;
    }
    row.fanout.sort();
    row.handler.sort();
    row.slowest_slice.sort();
    row.cpu_per_post = per_post(cpu, handler_posts);
    row.slice_cpu_per_post = per_post(slice_cpu, slice_posts);
    row.fake_cpu_per_post = per_post(fake_cpu, handler_posts + slice_posts);
    row
}

/// The Lambda client as `lambda::Runtime` builds it, pointed at `endpoint`.
async fn lambda_client(endpoint: &str) -> aws_sdk_lambda::Client {
    let sdk = aws_config::defaults(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .credentials_provider(Credentials::new("test", "test", None, None, "test"))
        .load()
        .await;
    let config = aws_sdk_lambda::config::Builder::from(&sdk)
        .endpoint_url(endpoint)
        .build();
    aws_sdk_lambda::Client::from_conf(config)
}

#[tokio::main(flavor = "multi_thread")]
async fn main() {
    let args = parse_args();
    let t = &args.timing;
    println!(
        "post latency {} ms + up to {} ms jitter; throttle {}; {} messages per room",
        t.latency.as_millis(),
        t.jitter.as_millis(),
        t.throttle.map_or("off".into(), |p| format!(
            "{}/s, burst {}",
            p.per_sec, p.burst
        )),
        args.messages
    );
    println!(
        "asynchronous Invoke to handler start: {} ms (assumed)",
        args.invoke_latency.as_millis()
    );
    println!(
        "\n| members | split | posts in flight | invocations | fan-out p50 | fan-out p99 | handler p50 | handler p99 | slowest slice p50 | p99 | 429s | handler CPU per post | slice CPU per post | fake CPU per post |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|");
    let ms = |samples: &[Duration], p: f64| {
        if samples.is_empty() {
            "–".to_owned()
        } else {
            format!("{:.0} ms", percentile(samples, p))
        }
    };
    for &size in &args.sizes {
        for &concurrency in &args.concurrency {
            for &split in &args.splits {
                let row = measure(&args, size, concurrency, split).await;
                let slices = if row.invocations == 0 {
                    Vec::new()
                } else {
                    row.slowest_slice.clone()
                };
                println!(
                    "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} µs | {} µs | {} µs |",
                    row.size,
                    if row.split { "after" } else { "before" },
                    row.concurrency,
                    row.invocations,
                    ms(&row.fanout, 50.0),
                    ms(&row.fanout, 99.0),
                    ms(&row.handler, 50.0),
                    ms(&row.handler, 99.0),
                    ms(&slices, 50.0),
                    ms(&slices, 99.0),
                    row.throttled,
                    row.cpu_per_post.as_micros(),
                    row.slice_cpu_per_post.as_micros(),
                    row.fake_cpu_per_post.as_micros()
                );
            }
        }
    }
}
