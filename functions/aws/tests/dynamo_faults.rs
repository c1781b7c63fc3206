//! Faults between the Lambda functions and DynamoDB (issue 8, "Faults"), through
//! `roomcast_testkit::aws::fault_proxy` in front of moto: 500 `InternalServerError`, 400
//! `ThrottlingException` and `ProvisionedThroughputExceededException`, dropped connections, lost
//! responses (the write done, its outcome unknown) and latency. Under each: no `ack` without a
//! stored message, a clear `UNAVAILABLE` to the sender, a bounded number of attempts and bounded
//! time, and, once the fault stops, the same client's resend with the same id is acknowledged
//! exactly once. The room's history is then checked: every acknowledged message exactly once,
//! seqs gap-free. Run with `--nocapture` for the figures.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use roomcast_testkit::aws::fault_proxy::{Fault, FaultProxy};
use roomcast_testkit::aws::lambda::{World, member_token, world_with_faults};
use serde_json::{Value, json};

const ROOM: &str = "faults";
/// Requests one failing DynamoDB call may make: the SDK's standard retry mode makes 3 attempts.
const SDK_ATTEMPTS: u64 = 3;
/// DynamoDB calls one `message` frame makes (the connection read and its rate token's write,
/// head, append, subscribers; `functions/aws/tests/cost.rs` asserts them).
const CALLS_PER_MESSAGE: u64 = 5;
/// Longest a frame may take while every call fails: 3 attempts with the SDK's backoff (up to 1 s,
/// then 2 s) for the call that fails, plus slack for this shared machine.
const FAILING_FRAME_WITHIN: Duration = Duration::from_secs(10);

fn proxy(w: &World) -> &FaultProxy {
    w.faults.as_ref().expect("made by world_with_faults")
}

/// What the sender heard about message `id`.
#[derive(Debug, PartialEq)]
enum Heard {
    Acked { seq: u64, duplicate: bool },
    Unavailable,
}

/// Sends message `id` from `conn` and reads the sender's reply.
async fn send(w: &World, conn: &str, id: &str) -> Heard {
    w.frame(
        conn,
        "message",
        json!({"action": "message", "room": ROOM, "id": id, "body": format!("body of {id}")}),
    )
    .await;
    let frames = w.received(conn);
    let acks: Vec<&Value> = frames
        .iter()
        .filter(|f| f["type"] == "ack" && f["id"] == id)
        .collect();
    let errors: Vec<&Value> = frames.iter().filter(|f| f["type"] == "error").collect();
    match (acks.as_slice(), errors.as_slice()) {
        ([ack], []) => Heard::Acked {
            seq: ack["seq"].as_u64().expect("an ack has a seq"),
            duplicate: ack["duplicate"] == true,
        },
        ([], [error]) => {
            assert_eq!(error["code"], "UNAVAILABLE", "{error}");
            Heard::Unavailable
        }
        _ => panic!("message {id}: expected one ack or one error, got {frames:?}"),
    }
}

/// The room's history as `seq → id`, read through the `history` action (faults off).
async fn history(w: &World, conn: &str) -> BTreeMap<u64, String> {
    let mut stored = BTreeMap::new();
    let mut after = 0;
    loop {
        w.frame(
            conn,
            "$default",
            json!({"action": "history", "room": ROOM, "after": after, "limit": 100}),
        )
        .await;
        let frames = w.received(conn);
        let page = frames
            .iter()
            .find(|f| f["type"] == "history")
            .unwrap_or_else(|| panic!("no history page: {frames:?}"));
        let messages = page["messages"].as_array().expect("messages");
        for m in messages {
            let seq = m["seq"].as_u64().expect("seq");
            let id = m["id"].as_str().expect("id").to_owned();
            assert!(stored.insert(seq, id).is_none(), "seq {seq} twice");
            after = seq;
        }
        if page["more"] != true {
            return stored;
        }
    }
}

/// Every fault kind, one after the other, on one room: fail, then recover with a resend.
#[tokio::test(flavor = "multi_thread")]
async fn dynamodb_faults_never_ack_an_unstored_message_and_recovery_loses_nothing() {
    let w = world_with_faults().await;
    for (conn, user) in [("alice=", "alice"), ("bob=", "bob")] {
        assert_eq!(
            w.connect(conn, &member_token(user, &[ROOM]))
                .await
                .status_code,
            200
        );
        w.frame(conn, "$default", json!({"action": "join", "room": ROOM}))
            .await;
    }
    w.received("alice=");
    w.received("bob=");
    // Acknowledged ids with their seqs: what history must hold at the end, exactly.
    let mut acked: BTreeMap<String, u64> = BTreeMap::new();
    let mut ack = |id: &str, heard: Heard| match heard {
        Heard::Acked { seq, .. } => {
            if let Some(first) = acked.insert(id.to_owned(), seq) {
                assert_eq!(first, seq, "{id}: acknowledged twice with different seqs");
            }
        }
        Heard::Unavailable => panic!("{id}: refused with the faults off"),
    };
    ack("before", send(&w, "alice=", "before").await);
    w.received("bob=");

    let mut figures = Vec::new();
    for fault in [
        Fault::ServerError,
        Fault::Throttling,
        Fault::ThroughputExceeded,
        Fault::Drop,
    ] {
        let id = format!("{fault:?}").to_lowercase();
        let (requests, injected) = (proxy(&w).requests(), proxy(&w).injected());
        proxy(&w).set(fault);
        let started = Instant::now();
        let heard = send(&w, "alice=", &id).await;
        let took = started.elapsed();
        proxy(&w).clear();
        let attempts = proxy(&w).requests() - requests;
        assert_eq!(
            heard,
            Heard::Unavailable,
            "{fault:?}: a clear error, no ack"
        );
        assert!(
            (1..=SDK_ATTEMPTS * CALLS_PER_MESSAGE).contains(&attempts),
            "{fault:?}: {attempts} requests for one frame: retries are bounded"
        );
        assert!(took < FAILING_FRAME_WITHIN, "{fault:?}: took {took:?}");
        assert!(
            w.received("bob=").is_empty(),
            "{fault:?}: nothing reached the room"
        );
        // The fault is over: the client resends with the same id.
        let resent = send(&w, "alice=", &id).await;
        assert!(
            matches!(
                resent,
                Heard::Acked {
                    duplicate: false,
                    ..
                }
            ),
            "{fault:?}: the resend is the first time it is stored: {resent:?}"
        );
        ack(&id, resent);
        let to_bob = w.received("bob=");
        assert_eq!(
            to_bob.iter().filter(|f| f["id"] == id.as_str()).count(),
            1,
            "{fault:?}: delivered once: {to_bob:?}"
        );
        figures.push(format!(
            "{fault:?}: {attempts} requests ({} injected) in {took:.1?}",
            proxy(&w).injected() - injected
        ));
    }

    // The append transaction lands but its response is lost (every attempt): the function
    // cannot know the outcome. The sender hears UNAVAILABLE, or an ack if a retry settled it;
    // its resend after the fault must name the seq the message was stored under, never make a
    // second one.
    proxy(&w).set_for(Fault::LoseResponse, "TransactWriteItems");
    let heard = send(&w, "alice=", "lost-response").await;
    proxy(&w).clear();
    let resent = send(&w, "alice=", "lost-response").await;
    let resent_seq = format!("{resent:?}");
    let Heard::Acked { seq, .. } = resent else {
        panic!("the resend after the fault is acknowledged: {resent:?}")
    };
    if let Heard::Acked { seq: first, .. } = heard {
        assert_eq!(first, seq, "the resend names the stored seq");
    }
    ack("lost-response", resent);
    figures.push(format!(
        "LoseResponse on TransactWriteItems: first send heard {heard:?}, the resend {resent_seq} \
         (stored once)"
    ));

    // Latency: slower, not failed.
    proxy(&w).set(Fault::Latency(Duration::from_millis(150)));
    let started = Instant::now();
    let heard = send(&w, "alice=", "slow").await;
    let took = started.elapsed();
    proxy(&w).clear();
    assert!(
        matches!(heard, Heard::Acked { .. }),
        "latency is not an error: {heard:?}"
    );
    assert!(took >= Duration::from_millis(150 * CALLS_PER_MESSAGE));
    ack("slow", heard);
    figures.push(format!("Latency 150 ms per call: acked in {took:.1?}"));

    // Intermittent: every third request fails. The client resends on UNAVAILABLE until acked.
    proxy(&w).set_one_in(Fault::ServerError, 3);
    let mut unavailable = 0;
    for n in 0..10 {
        let id = format!("flaky-{n}");
        loop {
            match send(&w, "alice=", &id).await {
                Heard::Unavailable => unavailable += 1,
                acked_now @ Heard::Acked { .. } => {
                    ack(&id, acked_now);
                    break;
                }
            }
        }
    }
    proxy(&w).clear();
    figures.push(format!(
        "one in 3 requests failing: 10 messages acked, {unavailable} UNAVAILABLE on the way"
    ));

    let stored = history(&w, "alice=").await;
    let seqs: Vec<u64> = stored.keys().copied().collect();
    let expected: Vec<u64> = (1..=seqs.len() as u64).collect();
    assert_eq!(seqs, expected, "seqs are gap-free");
    let by_id: BTreeMap<String, u64> = stored.iter().map(|(s, id)| (id.clone(), *s)).collect();
    assert_eq!(by_id.len(), stored.len(), "no message stored twice");
    assert_eq!(
        by_id, acked,
        "history holds exactly the acknowledged messages"
    );
    eprintln!(
        "dynamodb faults: {} requests, {} forwarded, {} faults injected, {} messages checked",
        proxy(&w).requests(),
        proxy(&w).forwarded(),
        proxy(&w).injected(),
        stored.len()
    );
    for line in figures {
        eprintln!("  {line}");
    }
}
