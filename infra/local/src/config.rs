//! The command line, resolved once into a [`ServerConfig`]. The settings every deployment
//! shares are the core's ([`roomcast_core::config`]): each of their flags maps to one of the
//! core's names, with the environment variable of that name as its fallback, and
//! `Settings::from_lookup` parses them with the same rules, defaults and errors as the Lambda
//! functions and the Worker.

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::{Args, Parser, Subcommand, ValueEnum};
use roomcast_core::auth::{Role, VerifyKey};
use roomcast_core::config::{Settings, names};
use roomcast_core::limits::DEFAULT_MAX_CONNECTIONS_PER_IP;

/// roomcast local server: the chat service on one machine, speaking the API Gateway WebSocket
/// contract (routes, `@connections`) on localhost.
#[derive(Debug, Parser)]
#[command(name = "roomcast-local", version, about)]
pub struct Cli {
    /// What to do; serving is the default.
    #[command(subcommand)]
    pub command: Option<Command>,
    /// Server options (when no subcommand is given).
    #[command(flatten)]
    pub serve: ServeArgs,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the server (the default).
    Serve(Box<ServeArgs>),
    /// Print a signed development token.
    Token(Box<TokenArgs>),
}

/// Where the embedded-mode store lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum StoreKind {
    /// Durable history in `--data-dir` (redb, fsync per commit).
    Embedded,
    /// Nothing on disk: everything is lost on exit.
    Memory,
}

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Human-readable.
    Text,
    /// One JSON object per line.
    Json,
}

/// JWT options shared by `serve` and `token`.
#[derive(Debug, Clone, Args)]
pub struct SecretArgs {
    /// Directory for the embedded store and the generated dev secret.
    #[arg(long, default_value = "roomcast-data", global = true)]
    pub data_dir: PathBuf,
    /// HS256 secret [env: ROOMCAST_JWT_SECRET]. Without it (and without a public key) a dev
    /// secret is generated and kept in DATA_DIR/jwt-secret.
    #[arg(long, global = true)]
    pub jwt_secret: Option<String>,
}

/// `serve` options.
#[derive(Debug, Clone, Args)]
pub struct ServeArgs {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1")]
    pub host: IpAddr,
    /// Port to listen on (0 picks a free one; the bound address is printed).
    #[arg(long, default_value_t = 3001)]
    pub port: u16,
    /// JWT secret and data directory.
    #[command(flatten)]
    pub secret: SecretArgs,
    /// Verify RS256/ES256 tokens with this PEM public key file instead of an HS256 secret
    /// [env: ROOMCAST_JWT_PUBLIC_KEY, the PEM text itself].
    #[arg(long)]
    pub jwt_public_key: Option<PathBuf>,
    /// Token algorithm: HS256, RS256 or ES256 [env: ROOMCAST_JWT_ALG; default: HS256 with a
    /// secret, RS256 with a public key].
    #[arg(long)]
    pub jwt_alg: Option<String>,
    /// Further verification keys chosen by the token's `kid`, for key rotation: a JWKS file
    /// (`{"keys": [...]}` of `oct`, `RSA` and `EC` P-256 keys, each with its `kid`) [env:
    /// ROOMCAST_JWT_JWKS, the JSON itself].
    #[arg(long)]
    pub jwt_jwks: Option<PathBuf>,
    /// Required `iss` claim [env: ROOMCAST_JWT_ISSUER].
    #[arg(long)]
    pub jwt_issuer: Option<String>,
    /// Required `aud` claim [env: ROOMCAST_JWT_AUDIENCE].
    #[arg(long)]
    pub jwt_audience: Option<String>,
    /// Clock skew tolerated on `exp` and `nbf`, seconds [env: ROOMCAST_JWT_LEEWAY_SECS;
    /// default: 0].
    #[arg(long)]
    pub jwt_leeway_secs: Option<String>,
    /// Store backend.
    #[arg(long, value_enum, default_value = "embedded")]
    pub store: StoreKind,
    /// Close connections with no inbound data for this long, seconds [env:
    /// ROOMCAST_IDLE_TIMEOUT_SECS; default: 600, as API Gateway].
    #[arg(long)]
    pub idle_timeout_secs: Option<String>,
    /// Close every connection after this long, seconds [env: ROOMCAST_MAX_CONNECTION_SECS;
    /// default: 7200, as API Gateway].
    #[arg(long)]
    pub max_connection_secs: Option<String>,
    /// Frames per second a connection may send, sustained [env: ROOMCAST_RATE_PER_SEC;
    /// default: 10].
    #[arg(long)]
    pub rate_per_sec: Option<String>,
    /// Frames a connection may send in a burst [env: ROOMCAST_RATE_BURST; default: 30].
    #[arg(long)]
    pub rate_burst: Option<String>,
    /// Live connections allowed per user [env: ROOMCAST_MAX_CONNECTIONS_PER_USER; default: 20].
    #[arg(long)]
    pub max_connections_per_user: Option<String>,
    /// Most connections a room holds with the presence of individuals; a bigger room announces
    /// its occupancy instead [env: ROOMCAST_PRESENCE_MAX_CONNECTIONS; default: 100].
    #[arg(long)]
    pub presence_max_connections: Option<String>,
    /// Live WebSocket connections allowed per client address (more: the upgrade is refused
    /// with 429 before the token is checked).
    #[arg(long, default_value_t = DEFAULT_MAX_CONNECTIONS_PER_IP)]
    pub max_connections_per_ip: usize,
    /// Keep everything in DynamoDB at this endpoint (DynamoDB Local, moto, or
    /// `https://dynamodb.REGION.amazonaws.com`) instead of the embedded store: the same store
    /// and table the Lambda functions use. Needs a build with `--features dynamodb`.
    #[arg(long)]
    pub dynamodb_endpoint: Option<String>,
    /// DynamoDB table (created when missing).
    #[arg(long, default_value = "roomcast")]
    pub table: String,
    /// Forward route events to Lambda functions at this Lambda Invoke API endpoint (e.g.
    /// `http://127.0.0.1:9000` for `cargo lambda watch`) instead of running them in-process.
    #[arg(long)]
    pub lambda_endpoint: Option<String>,
    /// Stage name in events (`requestContext.stage`).
    #[arg(long, default_value = "local")]
    pub stage: String,
    /// Log format.
    #[arg(long, value_enum, default_value = "text")]
    pub log_format: LogFormat,
    /// Log level: error, warn, info, debug or trace [env: ROOMCAST_LOG; default: info];
    /// `RUST_LOG`, when set, filters instead.
    #[arg(long)]
    pub log_level: Option<String>,
    /// Serve `GET /dev/token`, which signs development tokens for the widget demo page (`/demo`)
    /// and the agent console (`/console`). Loopback callers only; never for production. The
    /// tokens are signed with a key made for this process (`kid` `roomcast-dev`), not with the
    /// server's secret, so they stop working when it exits.
    #[arg(long)]
    pub dev_tokens: bool,
    /// An operator-wide webhook endpoint: every tenant's integration events are POSTed here,
    /// signed with the `whsec_` secret in ROOMCAST_WEBHOOK_SECRET (environment only, so it
    /// stays out of the process list) [env: ROOMCAST_WEBHOOK_URL]. Tenants add their own
    /// endpoints over the HTTP API (`/events/endpoints`, role `service`).
    #[arg(long)]
    pub webhook_url: Option<String>,
    /// The operator endpoint's event types, comma-separated [env: ROOMCAST_WEBHOOK_TYPES;
    /// default: every type].
    #[arg(long)]
    pub webhook_types: Option<String>,
    /// Let webhook endpoints be loopback or private addresses (development only: in
    /// production a tenant could reach your network) [env: ROOMCAST_WEBHOOK_ALLOW_PRIVATE].
    #[arg(long)]
    pub webhook_allow_private: bool,
    /// A webhook attempt without an answer within this is a timeout, milliseconds [env:
    /// ROOMCAST_WEBHOOK_TIMEOUT_MS; default: 15000].
    #[arg(long)]
    pub webhook_timeout_ms: Option<String>,
    /// Backoff after a delivery's first failure, milliseconds, doubling after each further one
    /// up to two hours [env: ROOMCAST_WEBHOOK_FIRST_RETRY_MS; default: 5000].
    #[arg(long)]
    pub webhook_first_retry_ms: Option<String>,
    /// How long a delivery is retried before it is dead-lettered, seconds [env:
    /// ROOMCAST_WEBHOOK_RETRY_FOR_SECS; default: 86400].
    #[arg(long)]
    pub webhook_retry_for_secs: Option<String>,
    /// Serve the API Gateway Management API (`POST|GET|DELETE /@connections/{id}`) on this
    /// address (port 0 picks one; the bound address is printed), and nowhere else. Off by
    /// default: whoever reaches it can send any frame to any connection or close it, so bind it
    /// where only your backends reach it. Needed with `--lambda-endpoint` (the functions post
    /// their replies there).
    #[arg(long)]
    pub management_listen: Option<SocketAddr>,
    /// A reverse proxy whose `X-Forwarded-For` names the client (comma-separated or repeated).
    /// Requests from other addresses are taken to come from their peer address, whatever they
    /// say; a request that says it was forwarded but does not come from a trusted proxy gets no
    /// development token.
    #[arg(long, value_delimiter = ',')]
    pub trusted_proxy: Vec<IpAddr>,
    /// Require `Authorization: Bearer METRICS_TOKEN` on `GET /metrics` [env:
    /// ROOMCAST_METRICS_TOKEN; default: /metrics is open].
    #[arg(long, env = "ROOMCAST_METRICS_TOKEN", hide_env = true)]
    pub metrics_token: Option<String>,
}

/// `token` options.
#[derive(Debug, Clone, Args)]
pub struct TokenArgs {
    /// User id (`sub`).
    #[arg(long)]
    pub user: String,
    /// Tenant id (`tid`).
    #[arg(long, default_value = "demo")]
    pub tenant: String,
    /// Rooms granted (comma-separated; `support-*` grants a prefix, `*` every room of the
    /// tenant). Required: a token grants only what was asked for.
    #[arg(long, value_delimiter = ',', required = true)]
    pub rooms: Vec<String>,
    /// Display name.
    #[arg(long)]
    pub name: Option<String>,
    /// Role.
    #[arg(long, value_enum, default_value = "user")]
    pub role: RoleArg,
    /// Lifetime in seconds.
    #[arg(long, default_value_t = 24 * 3600)]
    pub ttl_secs: u64,
    /// `iss` claim: what the server's `--jwt-issuer` (`ROOMCAST_JWT_ISSUER`) requires.
    #[arg(long)]
    pub issuer: Option<String>,
    /// `aud` claim: what the server's `--jwt-audience` (`ROOMCAST_JWT_AUDIENCE`) requires.
    #[arg(long)]
    pub audience: Option<String>,
    /// Algorithm: HS256 (with the secret; the default) or RS256 / ES256 (with
    /// `--private-key`; RS256 is the default there).
    #[arg(long)]
    pub alg: Option<String>,
    /// Sign with this PEM private key (RSA for RS256, EC P-256 for ES256) instead of the
    /// secret.
    #[arg(long)]
    pub private_key: Option<PathBuf>,
    /// `kid` header: which of the server's keys verifies the token (`--jwt-jwks`).
    #[arg(long)]
    pub kid: Option<String>,
    /// JWT secret and data directory.
    #[command(flatten)]
    pub secret: SecretArgs,
}

/// `--role` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum RoleArg {
    /// A visitor or team member.
    User,
    /// A support agent.
    Agent,
    /// A backend or bot.
    Service,
}

impl From<RoleArg> for Role {
    fn from(r: RoleArg) -> Self {
        match r {
            RoleArg::User => Role::User,
            RoleArg::Agent => Role::Agent,
            RoleArg::Service => Role::Service,
        }
    }
}

/// Everything the server needs, resolved.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// The settings every deployment shares (token verification, service tunables, the
    /// connection lifecycle).
    pub settings: Settings,
    /// Store backend (when not on DynamoDB).
    pub store: StoreKind,
    /// DynamoDB endpoint and table, when the store is DynamoDB.
    pub dynamodb: Option<(String, String)>,
    /// Data directory.
    pub data_dir: PathBuf,
    /// Most live WebSocket connections per client address.
    pub max_connections_per_ip: usize,
    /// Stage name.
    pub stage: String,
    /// Lambda Invoke API endpoint to forward route events to.
    pub lambda_endpoint: Option<String>,
    /// The key `GET /dev/token` signs development tokens with (made for this process; the
    /// verifier knows it by [`DEV_TOKEN_KID`]), when they are served.
    pub dev_token_key: Option<Vec<u8>>,
    /// Where the Management API is served, when it is.
    pub management_listen: Option<SocketAddr>,
    /// Proxies whose `X-Forwarded-For` is believed.
    pub trusted_proxies: Vec<IpAddr>,
    /// The bearer token `GET /metrics` requires, when set.
    pub metrics_token: Option<String>,
    /// Where the server listens (port 0: picked when bound), so webhook endpoints cannot
    /// point back at it.
    pub listen: SocketAddr,
}

/// The `kid` header of development tokens, which selects the process's development key.
pub const DEV_TOKEN_KID: &str = "roomcast-dev";

const SECRET_FILE: &str = "jwt-secret";

impl SecretArgs {
    /// The HS256 secret: the flag, else the environment's, else the one kept in the data
    /// directory (generated on first use). The bool says whether it was generated now.
    pub fn resolve(&self, env: &dyn Fn(&str) -> Option<String>) -> anyhow::Result<(Vec<u8>, bool)> {
        let given = self
            .jwt_secret
            .clone()
            .or_else(|| env(names::JWT_SECRET))
            .filter(|s| !s.trim().is_empty());
        if let Some(s) = given {
            return Ok((s.trim().as_bytes().to_vec(), false));
        }
        let path = self.data_dir.join(SECRET_FILE);
        match std::fs::read_to_string(&path) {
            Ok(s) if s.trim().is_empty() => anyhow::bail!(
                "{} is empty: delete it to have a secret generated, or write one of at least {} \
                 bytes",
                path.display(),
                roomcast_core::config::MIN_HS256_SECRET_BYTES
            ),
            Ok(s) => Ok((s.trim().as_bytes().to_vec(), false)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let secret = generate_secret();
                write_private(&path, &secret)
                    .with_context(|| format!("writing {}", path.display()))?;
                Ok((secret.into_bytes(), true))
            }
            Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
        }
    }

    /// Where a generated secret is kept.
    pub fn secret_path(&self) -> PathBuf {
        self.data_dir.join(SECRET_FILE)
    }
}

fn generate_secret() -> String {
    random_key().iter().map(|b| format!("{b:02x}")).collect()
}

/// 32 random bytes: an HS256 key of the length RFC 7518 asks for.
fn random_key() -> Vec<u8> {
    use rand::RngCore;
    let mut bytes = vec![0u8; roomcast_core::config::MIN_HS256_SECRET_BYTES];
    rand::rng().fill_bytes(&mut bytes);
    bytes
}

/// Creates `dir` (and its parents) if missing, readable by the server's user only (0700): it
/// holds the dev secret and every tenant's history.
pub fn private_dir(dir: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    owner_only(dir)
}

/// Restricts `path` to the server's user: 0700 for a directory, 0600 for a file.
pub fn owner_only(path: &Path) -> std::io::Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = if path.is_dir() { 0o700 } else { 0o600 };
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))?;
    }
    Ok(())
}

fn write_private(path: &Path, contents: &str) -> std::io::Result<()> {
    if let Some(dir) = path.parent() {
        private_dir(dir)?;
    }
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    use std::io::Write;
    let mut f = options.open(path)?;
    f.write_all(contents.as_bytes())?;
    f.sync_all()
}

impl ServeArgs {
    /// The value of the shared setting `name`: its flag when given, else `env`'s. A public key
    /// flag names a file; its contents are the value.
    fn setting(
        &self,
        name: &str,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> anyhow::Result<Option<String>> {
        let flag = match name {
            names::JWT_SECRET => self.secret.jwt_secret.clone(),
            names::JWT_PUBLIC_KEY => match &self.jwt_public_key {
                Some(path) => Some(
                    std::fs::read_to_string(path)
                        .with_context(|| format!("reading {}", path.display()))?,
                ),
                None => None,
            },
            names::JWT_ALG => self.jwt_alg.clone(),
            names::JWT_JWKS => match &self.jwt_jwks {
                Some(path) => Some(
                    std::fs::read_to_string(path)
                        .with_context(|| format!("reading {}", path.display()))?,
                ),
                None => None,
            },
            names::JWT_ISSUER => self.jwt_issuer.clone(),
            names::JWT_AUDIENCE => self.jwt_audience.clone(),
            names::JWT_LEEWAY_SECS => self.jwt_leeway_secs.clone(),
            names::RATE_PER_SEC => self.rate_per_sec.clone(),
            names::RATE_BURST => self.rate_burst.clone(),
            names::MAX_CONNECTIONS_PER_USER => self.max_connections_per_user.clone(),
            names::PRESENCE_MAX_CONNECTIONS => self.presence_max_connections.clone(),
            names::IDLE_TIMEOUT_SECS => self.idle_timeout_secs.clone(),
            names::MAX_CONNECTION_SECS => self.max_connection_secs.clone(),
            names::LOG => self.log_level.clone(),
            names::WEBHOOK_URL => self.webhook_url.clone(),
            names::WEBHOOK_TYPES => self.webhook_types.clone(),
            names::WEBHOOK_ALLOW_PRIVATE => self.webhook_allow_private.then(|| "true".to_owned()),
            names::WEBHOOK_TIMEOUT_MS => self.webhook_timeout_ms.clone(),
            names::WEBHOOK_FIRST_RETRY_MS => self.webhook_first_retry_ms.clone(),
            names::WEBHOOK_RETRY_FOR_SECS => self.webhook_retry_for_secs.clone(),
            _ => None,
        };
        Ok(flag.or_else(|| env(name)))
    }

    /// The shared settings from the flags over `env` (the process environment in production).
    /// Without a key of any kind, the data directory's dev secret is used (generated on first
    /// use: the bool says whether it was generated now).
    pub fn settings(
        &self,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> anyhow::Result<(Settings, bool)> {
        let mut values = std::collections::HashMap::new();
        for name in names::ALL {
            if let Some(value) = self.setting(name, env)? {
                values.insert(*name, value);
            }
        }
        let keyless = [names::JWT_SECRET, names::JWT_PUBLIC_KEY]
            .iter()
            .all(|n| values.get(n).is_none_or(|v| v.trim().is_empty()));
        let mut generated = false;
        if keyless {
            let (secret, fresh) = self.secret.resolve(env)?;
            generated = fresh;
            values.insert(
                names::JWT_SECRET,
                String::from_utf8(secret).context("the dev secret is not UTF-8")?,
            );
        }
        let settings = Settings::from_lookup(|name| values.get(name).cloned())?;
        Ok((settings, generated))
    }

    /// Resolves the arguments over the process environment; the bool says whether a dev
    /// secret was generated now.
    pub fn resolve(&self) -> anyhow::Result<(ServerConfig, bool)> {
        self.resolve_with(&|name| std::env::var(name).ok())
    }

    /// Resolves the arguments over `env`.
    pub fn resolve_with(
        &self,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> anyhow::Result<(ServerConfig, bool)> {
        let (mut settings, generated) = self.settings(env)?;
        anyhow::ensure!(
            self.max_connections_per_ip > 0,
            "--max-connections-per-ip must be positive"
        );
        anyhow::ensure!(
            self.lambda_endpoint.is_none() || self.management_listen.is_some(),
            "--lambda-endpoint needs --management-listen: the functions post their replies to \
             the Management API"
        );
        anyhow::ensure!(
            self.metrics_token
                .as_deref()
                .is_none_or(|t| !t.trim().is_empty()),
            "--metrics-token (ROOMCAST_METRICS_TOKEN) is empty: unset it to leave /metrics open"
        );
        let dev_token_key = self.dev_tokens.then(random_key);
        if let Some(key) = &dev_token_key {
            settings
                .auth
                .keys_by_kid
                .push((DEV_TOKEN_KID.to_owned(), VerifyKey::Hs256(key.clone())));
        }
        let config = ServerConfig {
            settings,
            store: self.store,
            dynamodb: self
                .dynamodb_endpoint
                .clone()
                .map(|e| (e, self.table.clone())),
            data_dir: self.secret.data_dir.clone(),
            max_connections_per_ip: self.max_connections_per_ip,
            stage: self.stage.clone(),
            lambda_endpoint: self.lambda_endpoint.clone(),
            dev_token_key,
            management_listen: self.management_listen,
            trusted_proxies: self.trusted_proxy.clone(),
            metrics_token: self.metrics_token.clone(),
            listen: SocketAddr::new(self.host, self.port),
        };
        Ok((config, generated))
    }
}
