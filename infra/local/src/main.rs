//! `roomcast-local`: serve (the default) or mint a development token.

use std::net::SocketAddr;
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::Context;
use clap::Parser;
use roomcast_core::auth::TokenSigner;
use roomcast_local::app::App;
use roomcast_local::config::{Cli, Command, LogFormat, ServeArgs, TokenArgs};
use roomcast_local::dev_token::DevToken;
use roomcast_local::router::{serve, serve_management};
use tracing_subscriber::EnvFilter;

/// Why jemalloc: docs/benchmarks.md, "s2 with jemalloc".
#[cfg(unix)]
#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Some(Command::Token(args)) => token(&args),
        Some(Command::Serve(args)) => run(&args),
        None => run(&cli.serve),
    }
}

fn token(args: &TokenArgs) -> anyhow::Result<()> {
    let signer = token_signer(args)?;
    let now = SystemTime::now().duration_since(UNIX_EPOCH)?.as_secs();
    let request = DevToken {
        user: args.user.clone(),
        tenant: args.tenant.clone(),
        rooms: args.rooms.clone(),
        name: args.name.clone(),
        role: args.role.into(),
        ttl_secs: args.ttl_secs,
        issuer: args.issuer.clone(),
        audience: args.audience.clone(),
    };
    let (token, _) = request.mint(&signer, now).map_err(anyhow::Error::msg)?;
    println!("{token}");
    Ok(())
}

/// The `token` command's signer: the PEM private key with RS256 (default) or ES256, else the
/// HS256 secret the server would use; named `--kid` when given.
fn token_signer(args: &TokenArgs) -> anyhow::Result<TokenSigner> {
    let alg = args.alg.as_deref().map(str::to_ascii_uppercase);
    let signer = match (&args.private_key, alg.as_deref()) {
        (Some(path), alg) => {
            let pem = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
            match alg {
                None | Some("RS256") => TokenSigner::rs256_pem(&pem)?,
                Some("ES256") => TokenSigner::es256_pem(&pem)?,
                Some(other) => anyhow::bail!("--alg {other} with --private-key: RS256 or ES256"),
            }
        }
        (None, None | Some("HS256")) => {
            let (secret, generated) = args.secret.resolve(&|name| std::env::var(name).ok())?;
            roomcast_core::config::check_hs256_secret(&secret)?;
            if generated {
                eprintln!(
                    "generated a dev JWT secret in {}",
                    args.secret.secret_path().display()
                );
            }
            TokenSigner::hs256(&secret)
        }
        (None, Some(other)) => anyhow::bail!("--alg {other} needs --private-key FILE"),
    };
    Ok(match &args.kid {
        Some(kid) => signer.with_kid(kid.clone()),
        None => signer,
    })
}

#[tokio::main]
async fn run(args: &ServeArgs) -> anyhow::Result<()> {
    let (config, generated) = args.resolve()?;
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new(config.settings.log.as_str()));
    match args.log_format {
        LogFormat::Text => tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_writer(std::io::stderr)
            .init(),
        LogFormat::Json => tracing_subscriber::fmt()
            .json()
            .with_env_filter(filter)
            .with_writer(std::io::stderr)
            .init(),
    }
    if generated {
        // Printed once, when it is made; afterwards it is in the file (0600).
        if let roomcast_core::auth::VerifyKey::Hs256(secret) = &config.settings.auth.key {
            eprintln!(
                "generated a dev JWT secret, kept in {}: {}",
                args.secret.secret_path().display(),
                String::from_utf8_lossy(secret)
            );
        }
    }
    // Both listeners are bound before the service is built, so the addresses webhook
    // endpoints may not point at are the real ones (port 0 is picked at bind).
    let mut config = config;
    let listener = tokio::net::TcpListener::bind(SocketAddr::new(args.host, args.port))
        .await
        .with_context(|| format!("binding {}:{}", args.host, args.port))?;
    let addr = listener.local_addr()?;
    config.listen = addr;
    let management_listener = match config.management_listen {
        Some(at) => {
            let listener = tokio::net::TcpListener::bind(at)
                .await
                .with_context(|| format!("binding the Management API to {at}"))?;
            config.management_listen = Some(listener.local_addr()?);
            Some(listener)
        }
        None => None,
    };
    let app = App::build(config).await.context("opening the store")?;
    app.start_webhooks().context("starting webhook delivery")?;
    app.start_sweeping();
    roomcast_local::deadlines::start(&app);
    println!("roomcast-local listening on http://{addr}");
    eprintln!(
        "connect: ws://{addr}/?token=$(roomcast-local token --user alice --rooms 'support-*')"
    );
    tracing::info!(%addr, store = ?args.store, data_dir = %args.secret.data_dir.display(), "serving");
    // One signal ends both listeners.
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let until_stopped = move || {
        let mut stopped = stopped.clone();
        async move {
            // An error means the sender is gone, which is a stop too.
            let _ = stopped.wait_for(|s| *s).await;
        }
    };
    let management = match management_listener {
        Some(listener) => {
            println!(
                "roomcast-local Management API on http://{}",
                listener.local_addr()?
            );
            Some(tokio::spawn(serve_management(
                listener,
                app.clone(),
                until_stopped(),
            )))
        }
        None => None,
    };
    tokio::spawn(async move {
        shutdown_signal().await;
        let _ = stop.send(true);
    });
    serve(listener, app, until_stopped()).await?;
    if let Some(management) = management {
        management.await??;
    }
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = terminate => {},
    }
}
