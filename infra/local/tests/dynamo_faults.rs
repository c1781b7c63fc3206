//! Faults between the local server in DynamoDB mode (`--dynamodb-endpoint`) and DynamoDB
//! (issue 8, "Faults"): the real binary talks to moto through `roomcast_testkit::aws::fault_proxy`, real
//! WebSocket clients send. Under 500s, throttling and dropped connections a message is never
//! acknowledged without being stored and its sender gets `UNAVAILABLE`; with one request in four
//! failing, three clients sending at once resend until acknowledged; when the faults stop, the
//! server serves as before and the room's history holds every acknowledged message exactly once,
//! gap-free. Run with `--nocapture` for the figures.
#![cfg(all(unix, feature = "dynamodb"))]

mod process;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::{Context, bail, ensure};
use process::{Server, Target};
use roomcast_protocol_tests::client::{Client, frame_type};
use roomcast_testkit::aws::fault_proxy::{Fault, FaultProxy};
use serde_json::{Value, json};

const ROOM: &str = "faults";
const SENDERS: [&str; 3] = ["alice", "bob", "carol"];
/// Messages each sender sends while one DynamoDB request in four fails.
const EACH: usize = 8;
/// Most DynamoDB requests one refused frame may cost: the SDK's 3 attempts for each of the 5
/// calls a `message` can make. More would mean retries without bound.
const MAX_REQUESTS_PER_REFUSAL: u64 = 3 * 5;
/// How long a refusal may take: each of those requests may wait out the SDK's backoff (up to
/// about a second between attempts) before the frame is answered `UNAVAILABLE`. Usually it takes
/// 1–4 s; on a loaded machine a chain of dropped connections took over 5 s (the default wait).
const REFUSAL_WAIT: Duration = Duration::from_secs(30);

/// What a sender heard about one message.
#[derive(Debug)]
enum Heard {
    Acked { seq: u64, duplicate: bool },
    Unavailable,
}

/// Sends message `id` and reads until its ack or an error.
async fn send(client: &mut Client, id: &str) -> anyhow::Result<Heard> {
    client
        .send_json(&json!({"action": "message", "room": ROOM, "id": id, "body": id}))
        .await?;
    let (_, reply) = client
        .take_until(&format!("ack or error for {id}"), |f| {
            (frame_type(f) == "ack" && f["id"] == id) || frame_type(f) == "error"
        })
        .await?;
    match frame_type(&reply) {
        "ack" => Ok(Heard::Acked {
            seq: reply["seq"].as_u64().context("ack seq")?,
            duplicate: reply["duplicate"] == true,
        }),
        _ if reply["code"] == "UNAVAILABLE" => Ok(Heard::Unavailable),
        _ => bail!("{id}: unexpected {reply}"),
    }
}

/// Sends `id` until it is acknowledged; returns its seq and how many tries said UNAVAILABLE.
async fn send_until_acked(client: &mut Client, id: &str) -> anyhow::Result<(u64, usize)> {
    for refused in 0..20 {
        if let Heard::Acked { seq, .. } = send(client, id).await? {
            return Ok((seq, refused));
        }
    }
    bail!("{id}: still UNAVAILABLE after 20 tries")
}

async fn joined(target: &Target, user: &str) -> anyhow::Result<Client> {
    let mut client = target.connect(user).await?;
    client.join(ROOM).await?;
    Ok(client)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_server_on_dynamodb_survives_faults_and_loses_nothing() -> anyhow::Result<()> {
    let moto = roomcast_testkit::aws::moto::dynamo();
    let proxy = FaultProxy::start(&moto.endpoint).await?;
    let dir = tempfile::tempdir()?;
    let (endpoint, table) = (
        proxy.endpoint.clone(),
        format!("faults-{}", std::process::id()),
    );
    let path = dir.path().to_owned();
    // Blocking (it waits for the server's first line), while the proxy serves its table setup.
    let server = tokio::task::spawn_blocking(move || {
        Server::start(
            &path,
            0,
            &[
                "--dynamodb-endpoint",
                &endpoint,
                "--table",
                &table,
                "--rate-per-sec",
                "1000",
                "--rate-burst",
                "1000",
            ],
        )
    })
    .await??;
    let target = server.target();
    let mut clients = Vec::new();
    for user in SENDERS {
        let mut client = joined(&target, user).await?;
        client.set_timeout(REFUSAL_WAIT);
        clients.push(client);
    }
    let mut acked: BTreeMap<String, u64> = BTreeMap::new();
    let mut figures = Vec::new();

    // Every request failing, one kind at a time: a clear error, then a resend when it is over.
    for fault in [Fault::ServerError, Fault::Throttling, Fault::Drop] {
        let id = format!("{fault:?}").to_lowercase();
        let requests = proxy.requests();
        proxy.set(fault);
        let started = Instant::now();
        let heard = send(&mut clients[0], &id).await?;
        let took = started.elapsed();
        proxy.clear();
        let spent = proxy.requests() - requests;
        ensure!(
            matches!(heard, Heard::Unavailable),
            "{fault:?}: expected UNAVAILABLE, got {heard:?}"
        );
        ensure!(
            spent <= MAX_REQUESTS_PER_REFUSAL,
            "{fault:?}: {spent} requests for one refused frame"
        );
        let Heard::Acked { seq, duplicate } = send(&mut clients[0], &id).await? else {
            bail!("{fault:?}: the resend after the fault was refused");
        };
        ensure!(!duplicate, "{fault:?}: nothing was stored under the fault");
        acked.insert(id.clone(), seq);
        figures.push(format!(
            "{fault:?}: UNAVAILABLE after {spent} requests in {took:.1?}"
        ));
    }

    // Intermittent faults while every client sends at once.
    let injected = proxy.injected();
    proxy.set_one_in(Fault::ServerError, 4);
    let started = Instant::now();
    let tasks: Vec<_> = clients
        .into_iter()
        .zip(SENDERS)
        .map(|(mut client, user)| {
            tokio::spawn(async move {
                let mut mine = Vec::new();
                let mut refused = 0;
                for n in 0..EACH {
                    let id = format!("{user}-{n}");
                    let (seq, tries) = send_until_acked(&mut client, &id).await?;
                    refused += tries;
                    mine.push((id, seq));
                }
                anyhow::Ok((client, mine, refused))
            })
        })
        .collect();
    let mut refused = 0;
    let mut clients = Vec::new();
    for task in tasks {
        let (client, mine, tries) = task.await??;
        clients.push(client);
        refused += tries;
        for (id, seq) in mine {
            ensure!(acked.insert(id.clone(), seq).is_none(), "{id} acked twice");
        }
    }
    proxy.clear();
    figures.push(format!(
        "one request in 4 failing, {} senders at once: {} messages acked in {:.1?}, {refused} \
         UNAVAILABLE resent, {} faults injected",
        SENDERS.len(),
        SENDERS.len() * EACH,
        started.elapsed(),
        proxy.injected() - injected
    ));

    // Over: the server serves a newcomer, and history is exactly what was acknowledged.
    let mut auditor = joined(&target, "auditor").await?;
    let page: Value = auditor
        .history(ROOM, json!({"after": 0, "limit": 100}))
        .await?;
    let messages = page["messages"].as_array().context("messages")?;
    let stored: BTreeMap<u64, String> = messages
        .iter()
        .map(|m| {
            Ok((
                m["seq"].as_u64().context("seq")?,
                m["id"].as_str().context("id")?.to_owned(),
            ))
        })
        .collect::<anyhow::Result<_>>()?;
    ensure!(stored.len() == messages.len(), "a seq appears twice");
    let seqs: Vec<u64> = stored.keys().copied().collect();
    ensure!(
        seqs == (1..=seqs.len() as u64).collect::<Vec<_>>(),
        "seqs have a gap: {seqs:?}"
    );
    let by_id: BTreeMap<String, u64> = stored.into_iter().map(|(s, id)| (id, s)).collect();
    ensure!(by_id.len() == messages.len(), "an id is stored twice");
    ensure!(
        by_id == acked,
        "history differs from the acknowledged messages:\n{by_id:?}\n{acked:?}"
    );
    // Everyone who was connected through the faults is still connected.
    for client in &mut clients {
        client.sync().await?;
    }
    eprintln!(
        "local server on DynamoDB: {} requests, {} forwarded, {} faults injected, {} messages \
         checked",
        proxy.requests(),
        proxy.forwarded(),
        proxy.injected(),
        messages.len()
    );
    for line in figures {
        eprintln!("  {line}");
    }
    Ok(())
}
