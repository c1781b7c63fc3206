//! A webhook receiver on loopback for the integration-event cases: a real HTTP/1.1 server that
//! records every delivery and answers as a case scripts it (accept, fail with a status, answer
//! late, or drop the connection), and the signature check by the official Standard Webhooks
//! verifier (the `standardwebhooks` package from PyPI, run in a venv).

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::process::Stdio;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use anyhow::{Context, anyhow, bail};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};

/// How the receiver answers a delivery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    /// 200.
    Accept,
    /// This status, with `Retry-After` when given.
    Status(u16, Option<String>),
    /// 200 after this long (past the sender's timeout: a slow endpoint).
    Late(Duration),
    /// Close the connection without answering.
    Drop,
}

/// One delivery as received.
#[derive(Debug, Clone)]
pub struct Delivery {
    /// Headers, names lower-cased.
    pub headers: Vec<(String, String)>,
    /// The body as sent.
    pub body: String,
    /// When it arrived.
    pub at: Instant,
    /// How it was answered.
    pub answered: Answer,
}

impl Delivery {
    /// A header's value.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// The body as JSON.
    pub fn event(&self) -> anyhow::Result<Value> {
        serde_json::from_str(&self.body).context("a delivery body is JSON")
    }

    /// Whether it was answered 2xx.
    pub fn accepted(&self) -> bool {
        matches!(self.answered, Answer::Accept | Answer::Late(_))
    }
}

#[derive(Default)]
struct State {
    /// Answers to give next, in order; then `fallback`.
    script: VecDeque<Answer>,
    fallback: Option<Answer>,
    received: Vec<Delivery>,
}

/// The receiver. Dropping it stops listening.
pub struct Receiver {
    addr: SocketAddr,
    state: Arc<Mutex<State>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn lock(state: &Mutex<State>) -> std::sync::MutexGuard<'_, State> {
    state.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Receiver {
    /// Listens on a free loopback port, accepting everything.
    pub async fn start() -> anyhow::Result<Self> {
        Self::start_on(0).await
    }

    /// Listens on `port` (0: any).
    pub async fn start_on(port: u16) -> anyhow::Result<Self> {
        let listener = TcpListener::bind(("127.0.0.1", port)).await?;
        let addr = listener.local_addr()?;
        let state = Arc::new(Mutex::new(State {
            fallback: Some(Answer::Accept),
            ..State::default()
        }));
        let task = tokio::spawn({
            let state = state.clone();
            async move {
                while let Ok((stream, _)) = listener.accept().await {
                    tokio::spawn(serve(stream, state.clone()));
                }
            }
        });
        Ok(Self { addr, state, task })
    }

    /// Its URL.
    pub fn url(&self) -> String {
        format!("http://{}/hooks", self.addr)
    }

    /// Its port.
    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// Answers the next deliveries with `answers`, in order, then with `then`.
    pub fn script(&self, answers: impl IntoIterator<Item = Answer>, then: Answer) {
        let mut state = lock(&self.state);
        state.script = answers.into_iter().collect();
        state.fallback = Some(then);
    }

    /// Every delivery so far.
    pub fn received(&self) -> Vec<Delivery> {
        lock(&self.state).received.clone()
    }

    /// Waits until `done` holds for the deliveries received, or `within` passes.
    pub async fn wait_for(
        &self,
        within: Duration,
        what: &str,
        done: impl Fn(&[Delivery]) -> bool,
    ) -> anyhow::Result<Vec<Delivery>> {
        let deadline = Instant::now() + within;
        loop {
            let received = self.received();
            if done(&received) {
                return Ok(received);
            }
            if Instant::now() >= deadline {
                let types: Vec<String> = received
                    .iter()
                    .map(|d| {
                        d.event()
                            .map(|e| format!("{}", e["type"]))
                            .unwrap_or_default()
                    })
                    .collect();
                bail!(
                    "webhook receiver: {what} not within {within:?}; received {} deliveries: {types:?}",
                    received.len()
                );
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// The events of accepted deliveries, de-duplicated by `id` (the consumer's rule), in
    /// arrival order.
    pub fn events(&self) -> anyhow::Result<Vec<Value>> {
        accepted_events(&self.received())
    }
}

/// The events of `deliveries` that were accepted, de-duplicated by `id`, in arrival order.
pub fn accepted_events(deliveries: &[Delivery]) -> anyhow::Result<Vec<Value>> {
    let mut seen = std::collections::HashSet::new();
    let mut out = Vec::new();
    for d in deliveries.iter().filter(|d| d.accepted()) {
        let event = d.event()?;
        let id = event["id"]
            .as_str()
            .context("events have an id")?
            .to_owned();
        if seen.insert(id) {
            out.push(event);
        }
    }
    Ok(out)
}

/// Reads one request, records it, answers as scripted, closes.
async fn serve(stream: TcpStream, state: Arc<Mutex<State>>) {
    let mut reader = BufReader::new(stream);
    let mut line = String::new();
    let mut headers = Vec::new();
    // Request line, then headers until the blank line.
    if reader.read_line(&mut line).await.is_err() {
        return;
    }
    loop {
        line.clear();
        match reader.read_line(&mut line).await {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
        let trimmed = line.trim_end();
        if trimmed.is_empty() {
            break;
        }
        if let Some((name, value)) = trimmed.split_once(':') {
            headers.push((name.trim().to_ascii_lowercase(), value.trim().to_owned()));
        }
    }
    let length: usize = headers
        .iter()
        .find(|(k, _)| k == "content-length")
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0);
    let mut body = vec![0; length.min(1 << 20)];
    if reader.read_exact(&mut body).await.is_err() {
        return;
    }
    let answer = {
        let mut s = lock(&state);
        let answer = s
            .script
            .pop_front()
            .or_else(|| s.fallback.clone())
            .unwrap_or(Answer::Accept);
        s.received.push(Delivery {
            headers,
            body: String::from_utf8_lossy(&body).into_owned(),
            at: Instant::now(),
            answered: answer.clone(),
        });
        answer
    };
    let mut stream = reader.into_inner();
    let (status, extra) = match &answer {
        Answer::Accept => (200, String::new()),
        Answer::Late(delay) => {
            tokio::time::sleep(*delay).await;
            (200, String::new())
        }
        Answer::Status(code, retry_after) => (
            *code,
            retry_after
                .as_ref()
                .map(|r| format!("Retry-After: {r}\r\n"))
                .unwrap_or_default(),
        ),
        Answer::Drop => return,
    };
    let response =
        format!("HTTP/1.1 {status} X\r\n{extra}Content-Length: 2\r\nConnection: close\r\n\r\nok");
    let _ = stream.write_all(response.as_bytes()).await;
    let _ = stream.shutdown().await;
}

/// The Python with the `standardwebhooks` package: `ROOMCAST_WEBHOOKS_PYTHON`, else a venv
/// under `~/.cache/roomcast/webhooks-venv`, made from PyPI on first use.
fn verifier_python() -> anyhow::Result<String> {
    if let Ok(python) = std::env::var("ROOMCAST_WEBHOOKS_PYTHON") {
        return Ok(python);
    }
    let home = std::env::var("HOME").context("HOME is set")?;
    let venv = format!("{home}/.cache/roomcast/webhooks-venv");
    let python = format!("{venv}/bin/python");
    let ready = std::process::Command::new(&python)
        .args(["-c", "import standardwebhooks"])
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !ready {
        let run = |program: &str, args: &[&str]| -> anyhow::Result<()> {
            let status = std::process::Command::new(program).args(args).status()?;
            anyhow::ensure!(status.success(), "{program} {args:?} failed");
            Ok(())
        };
        run("python3", &["-m", "venv", &venv])?;
        run(
            &format!("{venv}/bin/pip"),
            &[
                "install",
                "--quiet",
                "--disable-pip-version-check",
                "standardwebhooks>=1.0.0,<2",
            ],
        )?;
    }
    Ok(python)
}

/// The verifier: reads `[{secret, headers, body}]`, prints one line per item, `ok` or the
/// verifier's error.
const VERIFY_PY: &str = r#"
import json, sys
from standardwebhooks.webhooks import Webhook
for item in json.load(sys.stdin):
    try:
        Webhook(item["secret"]).verify(item["body"], item["headers"])
        print("ok")
    except Exception as e:
        print(type(e).__name__ + ": " + str(e).replace("\n", " "))
"#;

/// What the official verifier says about each delivery under `secret`: `ok` or its error.
pub async fn verify_with_official_library(
    secret: &str,
    deliveries: &[Delivery],
) -> anyhow::Result<Vec<String>> {
    let items: Vec<Value> = deliveries
        .iter()
        .map(|d| {
            let headers: serde_json::Map<String, Value> = d
                .headers
                .iter()
                .map(|(k, v)| (k.clone(), json!(v)))
                .collect();
            json!({"secret": secret, "headers": headers, "body": d.body})
        })
        .collect();
    let python = tokio::task::spawn_blocking(verifier_python).await??;
    let mut child = tokio::process::Command::new(python)
        .args(["-c", VERIFY_PY])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .context("running the standardwebhooks verifier")?;
    let mut stdin = child.stdin.take().context("stdin is piped")?;
    stdin
        .write_all(Value::Array(items).to_string().as_bytes())
        .await?;
    drop(stdin);
    let out = child.wait_with_output().await?;
    if !out.status.success() {
        return Err(anyhow!(
            "verifier failed: {}",
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    let lines: Vec<String> = String::from_utf8(out.stdout)?
        .lines()
        .map(str::to_owned)
        .collect();
    anyhow::ensure!(lines.len() == deliveries.len(), "one verdict per delivery");
    Ok(lines)
}

/// Every delivery verifies under `secret` with the official library, and a tampered copy of
/// the first does not (so the check can fail).
pub async fn assert_all_verify(secret: &str, deliveries: &[Delivery]) -> anyhow::Result<()> {
    anyhow::ensure!(!deliveries.is_empty(), "no deliveries to verify");
    let mut tampered = deliveries[0].clone();
    tampered.body = tampered.body.replacen('{', "{ ", 1);
    let mut all = deliveries.to_vec();
    all.push(tampered);
    let verdicts = verify_with_official_library(secret, &all).await?;
    let (last, rest) = verdicts.split_last().context("verdicts")?;
    for (verdict, d) in rest.iter().zip(deliveries) {
        anyhow::ensure!(
            verdict == "ok",
            "standardwebhooks refused a delivery: {verdict}; body {}",
            d.body
        );
    }
    anyhow::ensure!(last != "ok", "the verifier accepted a tampered body");
    Ok(())
}
