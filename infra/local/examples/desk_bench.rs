//! The support desk on the local server, measured: the time from a visitor's first message to
//! an agent's console hearing of it. The agent is online in the inbox; each run a new visitor
//! connects, joins their `support-{visitor}` room and writes. Three moments are timed from the
//! send: the visitor's `ack`; the agent's inbox receiving the conversation as `waiting`; and
//! the agent's inbox receiving it `assigned` to them by auto-assignment (the console shows the
//! visitor in its list, and its notification fires, on these frames). As the baseline of the
//! same run, a plain message from a member of an ordinary room to another member.
//!
//! Starts the server in this process exactly as `roomcast-local serve` would (embedded store in
//! a fresh temporary data directory, fsync on every commit) and drives it over loopback
//! sockets. Run it optimised:
//!
//! ```text
//! cargo run --release -p roomcast-local --example desk_bench [-- RUNS]
//! ```

mod common;

use std::time::Instant;

use anyhow::ensure;
use futures::SinkExt;
use roomcast_core::auth::{Claims, Role, TokenSigner};
use roomcast_protocol_tests::scope::claims;
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

use common::{Socket, next_of, percentile, runs, start_server};

const SECRET: &str = "roomcast-desk-bench-secret-0123456789";
const TENANT: &str = "bench";

fn token(claims: &Claims) -> String {
    TokenSigner::hs256(SECRET.as_bytes()).sign(claims)
}

async fn connect(port: u16, claims: &Claims, rooms: &[&str]) -> anyhow::Result<Socket> {
    let url = format!("ws://127.0.0.1:{port}/?token={}", token(claims));
    let (mut socket, _) = tokio_tungstenite::connect_async(url).await?;
    for room in rooms {
        send(&mut socket, json!({"action": "join", "room": room})).await?;
        next_of(&mut socket, |f| f["type"] == "joined").await?;
    }
    Ok(socket)
}

async fn send(socket: &mut Socket, frame: Value) -> anyhow::Result<()> {
    socket.send(Message::text(frame.to_string())).await?;
    Ok(())
}

/// The inbox's notice of `room` at `status`.
fn notice<'a>(room: &'a str, status: &'static str) -> impl Fn(&Value) -> bool + 'a {
    move |f| f["type"] == "message" && f["meta"]["room"] == room && f["meta"]["status"] == status
}

/// One visitor: (ack, waiting in the inbox, assigned in the inbox), seconds from the send.
async fn visitor_run(port: u16, n: usize, agent: &mut Socket) -> anyhow::Result<[f64; 3]> {
    let visitor = format!("v{n}");
    let room = format!("support-{visitor}");
    let mut socket = connect(port, &claims(TENANT, &visitor, &[&room]), &[&room]).await?;
    let started = Instant::now();
    send(
        &mut socket,
        json!({"action": "message", "room": room, "id": "first", "body": "Hello, my order is late"}),
    )
    .await?;
    next_of(&mut socket, |f| f["type"] == "ack").await?;
    let acked = started.elapsed();
    next_of(agent, notice(&room, "waiting")).await?;
    let waiting = started.elapsed();
    let assigned = next_of(agent, notice(&room, "assigned")).await?;
    ensure!(
        assigned["meta"]["agent"] == "ann",
        "assigned to ann: {assigned}"
    );
    let mine = started.elapsed();
    // Close it so the agent's capacity never runs out.
    send(agent, json!({"action": "close", "room": room, "ref": room})).await?;
    next_of(agent, |f| {
        f["type"] == "status" && f["ref"] == room.as_str()
    })
    .await?;
    Ok([acked, waiting, mine].map(|d| d.as_secs_f64()))
}

/// The baseline: a plain message from one member to another, seconds.
async fn plain_run(n: usize, from: &mut Socket, to: &mut Socket) -> anyhow::Result<f64> {
    let id = format!("p{n}");
    let started = Instant::now();
    send(
        from,
        json!({"action": "message", "room": "lobby", "id": id, "body": "Hello, my order is late"}),
    )
    .await?;
    next_of(to, |f| f["type"] == "message" && f["id"] == id.as_str()).await?;
    let seen = started.elapsed().as_secs_f64();
    next_of(from, |f| f["type"] == "ack" && f["id"] == id.as_str()).await?;
    Ok(seen)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let runs = runs(50)?;
    let (port, _data) =
        start_server(SECRET, &["--rate-per-sec", "1000", "--rate-burst", "1000"]).await?;

    let ann = Claims {
        role: Role::Agent,
        ..claims(TENANT, "ann", &["inbox", "support-*"])
    };
    let mut agent = connect(port, &ann, &["inbox"]).await?;
    send(
        &mut agent,
        json!({"action": "availability", "status": "online", "capacity": 50, "ref": "a"}),
    )
    .await?;
    next_of(&mut agent, |f| f["type"] == "agent").await?;
    let mut alice = connect(port, &claims(TENANT, "alice", &["lobby"]), &["lobby"]).await?;
    let mut bob = connect(port, &claims(TENANT, "bob", &["lobby"]), &["lobby"]).await?;
    // One unmeasured run of each warms the caches, the store and the connections.
    visitor_run(port, 0, &mut agent).await?;
    plain_run(0, &mut alice, &mut bob).await?;
    let (mut ack, mut waiting, mut mine, mut plain) = (vec![], vec![], vec![], vec![]);
    for n in 1..=runs {
        let [a, w, m] = visitor_run(port, n, &mut agent).await?;
        ack.push(a);
        waiting.push(w);
        mine.push(m);
        plain.push(plain_run(n, &mut alice, &mut bob).await?);
    }
    println!("{runs} visitors, embedded store, fsync on; times from the visitor's send, ms");
    println!("| moment | median | p95 | max |");
    println!("|---|---|---|---|");
    for (what, xs) in [
        ("visitor's ack", &ack),
        ("agent's inbox: waiting", &waiting),
        ("agent's inbox: assigned to them", &mine),
        ("baseline: a plain message to another member", &plain),
    ] {
        println!(
            "| {what} | {:.1} | {:.1} | {:.1} |",
            percentile(xs, 0.5) * 1e3,
            percentile(xs, 0.95) * 1e3,
            percentile(xs, 1.0) * 1e3
        );
    }
    println!(
        "assigned / baseline, medians: {:.1}×",
        percentile(&mine, 0.5) / percentile(&plain, 0.5)
    );
    Ok(())
}
