//! What the local server's benchmark examples share: the run count from the command line, the
//! server started in the example's process exactly as `roomcast-local serve` would (embedded
//! store in a fresh temporary data directory, fsync on every commit), waiting for a frame, and
//! percentiles.

use std::time::Duration;

use anyhow::{Context, bail, ensure};
use clap::Parser;
use futures::StreamExt;
use roomcast_local::app::App;
use roomcast_local::config::Cli;
use serde_json::Value;
use tokio_tungstenite::tungstenite::Message;

/// A client's WebSocket.
pub type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// `RUNS`, the first argument (`default` without one); at least 1.
pub fn runs(default: usize) -> anyhow::Result<usize> {
    let runs = std::env::args()
        .nth(1)
        .map(|r| r.parse())
        .transpose()
        .context("RUNS is a number")?
        .unwrap_or(default);
    ensure!(runs > 0, "RUNS must be positive");
    Ok(runs)
}

/// A server on a loopback port with `secret` and the `extra` flags of `roomcast-local serve`:
/// its port, and the data directory (removed when dropped).
pub async fn start_server(
    secret: &str,
    extra: &[&str],
) -> anyhow::Result<(u16, tempfile::TempDir)> {
    let data = tempfile::tempdir()?;
    let data_dir = data
        .path()
        .to_str()
        .context("a UTF-8 temporary directory")?;
    let mut args = vec![
        "roomcast-local",
        "--port",
        "0",
        "--data-dir",
        data_dir,
        "--jwt-secret",
        secret,
    ];
    args.extend_from_slice(extra);
    let cli = Cli::try_parse_from(args)?;
    let (mut config, _) = cli.serve.resolve()?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    config.listen = listener.local_addr()?;
    let port = config.listen.port();
    let app = App::build(config).await?;
    // The service's own deadlines (a held message's turn, a big room's count), as `serve` runs.
    roomcast_local::deadlines::start(&app);
    tokio::spawn(roomcast_local::router::serve(
        listener,
        app,
        std::future::pending(),
    ));
    Ok((port, data))
}

/// The next frame `wanted` accepts (others are skipped); an `error` frame fails.
pub async fn next_of(
    socket: &mut Socket,
    wanted: impl Fn(&Value) -> bool,
) -> anyhow::Result<Value> {
    tokio::time::timeout(Duration::from_secs(30), async {
        while let Some(frame) = socket.next().await {
            if let Message::Text(text) = frame? {
                let frame: Value = serde_json::from_str(&text)?;
                if frame["type"] == "error" {
                    bail!("error frame: {frame}");
                }
                if wanted(&frame) {
                    return Ok(frame);
                }
            }
        }
        bail!("the socket closed")
    })
    .await
    .context("no frame within 30 s")?
}

/// The `p` quantile (0 to 1) of `xs`, nearest rank; `xs` must not be empty.
pub fn percentile(xs: &[f64], p: f64) -> f64 {
    let mut xs = xs.to_vec();
    xs.sort_by(f64::total_cmp);
    xs[((xs.len() - 1) as f64 * p).round() as usize]
}
