//! Integration events on the local server, beyond the black-box cases every deployment runs:
//! endpoint URLs to private addresses refused outside development mode (SSRF), the
//! operator-wide endpoint from the configuration, 1,000 messages in 10 rooms delivered through
//! an endpoint that keeps flapping, none lost, and an endpoint down (connection refused) for a
//! while, its secret rotated meanwhile, then back: every event arrives, signed with both.
#![cfg(unix)]

mod process;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use anyhow::{Context, ensure};
use process::{Server, runtime};
use roomcast_core::auth::{Claims, Role};
use roomcast_protocol_tests::Deployment;
use roomcast_protocol_tests::client::Client;
use roomcast_protocol_tests::http::Request;
use roomcast_protocol_tests::scope::claims;
use roomcast_protocol_tests::webhook::{Answer, Receiver, accepted_events, assert_all_verify};
use serde_json::json;

const TENANT: &str = "acme";

fn service_token(server: &Server, tenant: &str) -> String {
    server.target().sign(&Claims {
        role: Role::Service,
        ..claims(tenant, "ops", &[])
    })
}

#[test]
fn private_endpoint_urls_refused_outside_development() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let server = Server::start(dir.path(), 0, &[])?;
    runtime().block_on(async {
        let base = format!("http://127.0.0.1:{}", server.port);
        let token = service_token(&server, TENANT);
        for url in [
            "http://127.0.0.1:9/hook",
            "http://localhost:9/hook",
            "http://2130706433/hook",
            "http://[::1]:9/hook",
            "http://10.1.2.3/hook",
            "http://192.168.0.10/hook",
            "http://169.254.169.254/latest/meta-data",
            "http://[fd00::1]/hook",
            "http://100.64.0.1/hook",
            "http://0.0.0.0:9/hook",
        ] {
            let r = Request::new("POST", "/events/endpoints")
                .bearer(&token)
                .json(&json!({"url": url}))
                .send(&base)
                .await?;
            ensure!(r.status == 400, "{url}: HTTP {} {}", r.status, r.text());
            let body = r.json()?;
            ensure!(body["code"] == "INVALID", "{url}: {body}");
            ensure!(
                body["message"]
                    .as_str()
                    .is_some_and(|m| m.contains("refused")),
                "{url}: {body}"
            );
        }
        let listed = Request::new("GET", "/events/endpoints")
            .bearer(&token)
            .send(&base)
            .await?
            .json()?;
        ensure!(
            listed["endpoints"] == json!([]),
            "nothing was created: {listed}"
        );
        Ok(())
    })
}

#[test]
fn operator_endpoint_hears_every_tenant() -> anyhow::Result<()> {
    let rt = runtime();
    let receiver = rt.block_on(Receiver::start())?;
    let secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    let dir = tempfile::tempdir()?;
    // The secret through the environment only, as documented.
    let server = Server::start_with_env(
        dir.path(),
        &[
            "--webhook-url",
            &receiver.url(),
            "--webhook-types",
            "message.created",
            "--webhook-allow-private",
        ],
        &[("ROOMCAST_WEBHOOK_SECRET", secret)],
    )?;
    rt.block_on(async {
        let target = server.target();
        for tenant in ["acme", "globex"] {
            let token = target.sign(&claims(tenant, "alice", &["*"]));
            let mut alice = Client::connect(&target, &token, tenant).await?;
            alice.join("lobby").await?;
            alice
                .message("lobby", "m1", &format!("hello from {tenant}"))
                .await?;
        }
        let deliveries = receiver
            .wait_for(Duration::from_secs(10), "both tenants' messages", |r| {
                accepted_events(r).is_ok_and(|e| e.len() == 2)
            })
            .await?;
        assert_all_verify(secret, &deliveries).await?;
        let tenants: BTreeSet<String> = receiver
            .events()?
            .iter()
            .map(|e| e["tenant"].as_str().unwrap_or_default().to_owned())
            .collect();
        ensure!(tenants == BTreeSet::from(["acme".into(), "globex".into()]));
        // Not a tenant's endpoint: no tenant sees or changes it.
        let listed = Request::new("GET", "/events/endpoints")
            .bearer(&service_token(&server, "acme"))
            .send(&format!("http://127.0.0.1:{}", server.port))
            .await?
            .json()?;
        ensure!(listed["endpoints"] == json!([]), "{listed}");
        let delivered = process::metric_labeled(
            server.port,
            "roomcast_webhook_attempts_total",
            "outcome=\"delivered\"",
        )
        .await?;
        ensure!(delivered >= 2, "metrics count deliveries: {delivered}");
        Ok(())
    })
}

#[test]
fn flapping_endpoint_loses_no_event() -> anyhow::Result<()> {
    const ROOMS: usize = 10;
    const PER_ROOM: usize = 100;
    let rt = runtime();
    let receiver = rt.block_on(Receiver::start())?;
    let dir = tempfile::tempdir()?;
    let server = Server::start(
        dir.path(),
        0,
        &[
            "--rate-per-sec",
            "1000",
            "--rate-burst",
            "1000",
            "--webhook-allow-private",
            "--webhook-first-retry-ms",
            "100",
            "--webhook-timeout-ms",
            "1000",
        ],
    )?;
    rt.block_on(async {
        let base = format!("http://127.0.0.1:{}", server.port);
        let created = Request::new("POST", "/events/endpoints")
            .bearer(&service_token(&server, TENANT))
            .json(&json!({"url": receiver.url(), "types": ["message.created"]}))
            .send(&base)
            .await?;
        ensure!(created.status == 201, "{}", created.text());
        let secret = created.json()?["secret"]
            .as_str()
            .context("secret")?
            .to_owned();

        // The endpoint flaps: up 300 ms, then down 300 ms (503, or the connection dropped).
        let flapping = {
            let receiver = &receiver;
            async move {
                for round in 0.. {
                    let down = if round % 2 == 0 {
                        Answer::Status(503, None)
                    } else {
                        Answer::Drop
                    };
                    receiver.script([], Answer::Accept);
                    tokio::time::sleep(Duration::from_millis(300)).await;
                    receiver.script([], down);
                    tokio::time::sleep(Duration::from_millis(300)).await;
                }
            }
        };
        let target = server.target();
        let sending = async {
            let mut senders = Vec::new();
            for r in 0..ROOMS {
                let target = &target;
                senders.push(async move {
                    let room = format!("room-{r}");
                    let token = target.sign(&claims(TENANT, &format!("user-{r}"), &["*"]));
                    let mut c = Client::connect(target, &token, &room).await?;
                    c.join(&room).await?;
                    for i in 0..PER_ROOM {
                        c.message(&room, &format!("m{i}"), &format!("{room} {i}"))
                            .await?;
                    }
                    anyhow::Ok(())
                });
            }
            futures::future::try_join_all(senders).await
        };
        tokio::select! {
            sent = sending => { sent?; }
            () = flapping => unreachable!("flapping never ends"),
        }
        let flap_more = async {
            // Keep flapping while the backlog drains, then stay up.
            for _ in 0..4 {
                receiver.script([], Answer::Status(503, None));
                tokio::time::sleep(Duration::from_millis(300)).await;
                receiver.script([], Answer::Accept);
                tokio::time::sleep(Duration::from_millis(300)).await;
            }
        };
        flap_more.await;
        let deliveries = receiver
            .wait_for(Duration::from_secs(60), "every event", |r| {
                accepted_events(r).is_ok_and(|e| e.len() == ROOMS * PER_ROOM)
            })
            .await?;
        // Duplicates only ever carry the same id and the same body.
        let mut bodies: BTreeMap<String, String> = BTreeMap::new();
        for d in deliveries.iter().filter(|d| d.accepted()) {
            let id = d.header("webhook-id").context("webhook-id")?.to_owned();
            if let Some(seen) = bodies.insert(id.clone(), d.body.clone()) {
                ensure!(seen == d.body, "event {id} delivered with two bodies");
            }
        }
        let mut seqs: BTreeMap<String, BTreeSet<u64>> = BTreeMap::new();
        for e in receiver.events()? {
            seqs.entry(e["room"].as_str().unwrap_or_default().to_owned())
                .or_default()
                .insert(e["seq"].as_u64().unwrap_or_default());
        }
        ensure!(seqs.len() == ROOMS, "{} rooms", seqs.len());
        for (room, s) in &seqs {
            let want: BTreeSet<u64> = (1..=PER_ROOM as u64).collect();
            ensure!(*s == want, "{room}: seqs {s:?}");
        }
        let refused = deliveries.iter().filter(|d| !d.accepted()).count();
        ensure!(refused > 0, "the endpoint did flap");
        let sample: Vec<_> = deliveries
            .iter()
            .filter(|d| d.accepted())
            .take(50)
            .cloned()
            .collect();
        assert_all_verify(&secret, &sample).await?;
        eprintln!(
            "flapping endpoint: {} deliveries for {} events ({refused} refused or dropped)",
            deliveries.len(),
            ROOMS * PER_ROOM
        );
        Ok(())
    })
}

#[test]
fn endpoint_down_then_back_with_a_rotation_in_flight() -> anyhow::Result<()> {
    let rt = runtime();
    // A port with nothing listening: the endpoint is down (connection refused) until the
    // receiver starts on it.
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let dir = tempfile::tempdir()?;
    let server = Server::start(
        dir.path(),
        0,
        &[
            "--webhook-allow-private",
            "--webhook-first-retry-ms",
            "200",
            "--webhook-timeout-ms",
            "1000",
        ],
    )?;
    rt.block_on(async {
        let base = format!("http://127.0.0.1:{}", server.port);
        let token = service_token(&server, TENANT);
        let created = Request::new("POST", "/events/endpoints")
            .bearer(&token)
            .json(&json!({"url": format!("http://127.0.0.1:{port}/hooks"), "types": ["message.created"]}))
            .send(&base)
            .await?;
        ensure!(created.status == 201, "{}", created.text());
        let created = created.json()?;
        let id = created["id"].as_str().context("id")?.to_owned();
        let old = created["secret"].as_str().context("secret")?.to_owned();

        let target = server.target();
        let mut alice = Client::connect(&target, &target.token("alice", &["*"]), "alice").await?;
        alice.join("down").await?;
        for i in 0..5 {
            alice.message("down", &format!("d{i}"), "while down").await?;
        }
        // Attempts fail for a while; the secret is rotated with the deliveries still pending.
        tokio::time::sleep(Duration::from_millis(1500)).await;
        let attempts = Request::new("GET", &format!("/events/endpoints/{id}/attempts"))
            .bearer(&token)
            .send(&base)
            .await?
            .json()?;
        let failed = attempts["attempts"].as_array().map_or(0, Vec::len);
        ensure!(failed >= 5, "attempts while down: {attempts}");
        ensure!(
            attempts["attempts"][0]["error"] == "unreachable",
            "refused connections are recorded as unreachable: {attempts}"
        );
        let rotated = Request::new("POST", &format!("/events/endpoints/{id}/rotate"))
            .bearer(&token)
            .send(&base)
            .await?
            .json()?;
        let new = rotated["secret"].as_str().context("new secret")?.to_owned();

        let receiver = Receiver::start_on(port).await?;
        let deliveries = receiver
            .wait_for(Duration::from_secs(30), "the five events once the endpoint is back", |r| {
                accepted_events(r).is_ok_and(|e| e.len() == 5)
            })
            .await?;
        // Signed after the rotation: both secrets verify every delivery.
        assert_all_verify(&new, &deliveries).await?;
        assert_all_verify(&old, &deliveries).await?;
        Ok(())
    })
}
