//! Command line and configuration, parsed once into typed structs.

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use clap::{Args, Parser, Subcommand, ValueEnum};
use roomcast_core::auth::{AuthConfig, Role, VerifyKey};
use roomcast_core::limits::{
    DEFAULT_IDLE_TIMEOUT_MS, DEFAULT_MAX_CONNECTION_MS, DEFAULT_MAX_CONNECTIONS_PER_IP,
    DEFAULT_MAX_CONNECTIONS_PER_USER,
};
use roomcast_core::ratelimit::RatePolicy;
use roomcast_core::service::ServiceConfig;

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
    Serve(ServeArgs),
    /// Print a signed development token.
    Token(TokenArgs),
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

/// Algorithm for `--jwt-public-key`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum PublicKeyAlg {
    /// RSA PKCS#1 v1.5 with SHA-256.
    Rs256,
    /// ECDSA P-256 with SHA-256.
    Es256,
}

/// JWT options shared by `serve` and `token`.
#[derive(Debug, Clone, Args)]
pub struct SecretArgs {
    /// Directory for the embedded store and the generated dev secret.
    #[arg(long, default_value = "roomcast-data", global = true)]
    pub data_dir: PathBuf,
    /// HS256 secret. Without it (and without --jwt-public-key) a dev secret is generated and
    /// kept in DATA_DIR/jwt-secret.
    #[arg(
        long,
        env = "ROOMCAST_JWT_SECRET",
        hide_env_values = true,
        global = true
    )]
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
    /// Verify RS256/ES256 tokens with this PEM public key instead of an HS256 secret.
    #[arg(long)]
    pub jwt_public_key: Option<PathBuf>,
    /// Algorithm of --jwt-public-key.
    #[arg(long, value_enum, default_value = "rs256")]
    pub jwt_alg: PublicKeyAlg,
    /// Required `iss` claim.
    #[arg(long)]
    pub jwt_issuer: Option<String>,
    /// Required `aud` claim.
    #[arg(long)]
    pub jwt_audience: Option<String>,
    /// Clock skew tolerated on `exp` and `nbf`, seconds.
    #[arg(long, default_value_t = 0)]
    pub jwt_leeway_secs: u64,
    /// Store backend.
    #[arg(long, value_enum, default_value = "embedded")]
    pub store: StoreKind,
    /// Close connections with no inbound data for this long (API Gateway: 600).
    #[arg(long, default_value_t = DEFAULT_IDLE_TIMEOUT_MS / 1000)]
    pub idle_timeout_secs: u64,
    /// Close every connection after this long (API Gateway: 7200).
    #[arg(long, default_value_t = DEFAULT_MAX_CONNECTION_MS / 1000)]
    pub max_connection_secs: u64,
    /// Frames per second a connection may send, sustained.
    #[arg(long, default_value_t = RatePolicy::default().per_sec)]
    pub rate_per_sec: u32,
    /// Frames a connection may send in a burst.
    #[arg(long, default_value_t = RatePolicy::default().burst)]
    pub rate_burst: u32,
    /// Live connections allowed per user.
    #[arg(long, default_value_t = DEFAULT_MAX_CONNECTIONS_PER_USER)]
    pub max_connections_per_user: usize,
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
    /// Serve `GET /dev/token`, which signs development tokens for the widget demo page (`/demo`)
    /// and the agent console (`/console`). Loopback callers only; never for production.
    #[arg(long)]
    pub dev_tokens: bool,
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
    /// Rooms granted (comma-separated; `support-*` grants a prefix).
    #[arg(long, value_delimiter = ',', default_value = "*")]
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
#[derive(Clone)]
pub struct ServerConfig {
    /// Token verification.
    pub auth: AuthConfig,
    /// Chat service tunables.
    pub service: ServiceConfig,
    /// Store backend (when not on DynamoDB).
    pub store: StoreKind,
    /// DynamoDB endpoint and table, when the store is DynamoDB.
    pub dynamodb: Option<(String, String)>,
    /// Data directory.
    pub data_dir: PathBuf,
    /// Idle timeout.
    pub idle_timeout: Duration,
    /// Maximum connection age.
    pub max_connection_age: Duration,
    /// Most live WebSocket connections per client address.
    pub max_connections_per_ip: usize,
    /// Stage name.
    pub stage: String,
    /// Lambda Invoke API endpoint to forward route events to.
    pub lambda_endpoint: Option<String>,
    /// Whether `GET /dev/token` signs development tokens.
    pub dev_tokens: bool,
}

const SECRET_FILE: &str = "jwt-secret";

impl SecretArgs {
    /// The HS256 secret: the flag or env, else the one kept in the data directory (generated
    /// on first use). The bool says whether it was generated now.
    pub fn resolve(&self) -> anyhow::Result<(Vec<u8>, bool)> {
        if let Some(s) = &self.jwt_secret {
            return Ok((s.as_bytes().to_vec(), false));
        }
        let path = self.data_dir.join(SECRET_FILE);
        match std::fs::read_to_string(&path) {
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
    use rand::RngCore;
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn write_private(path: &Path, contents: &str) -> std::io::Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
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
    /// Resolves the arguments; the bool says whether a dev secret was generated now.
    pub fn resolve(&self) -> anyhow::Result<(ServerConfig, bool)> {
        let (key, generated) = match &self.jwt_public_key {
            Some(path) => {
                let pem =
                    std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
                let key = match self.jwt_alg {
                    PublicKeyAlg::Rs256 => VerifyKey::Rs256Pem(pem),
                    PublicKeyAlg::Es256 => VerifyKey::Es256Pem(pem),
                };
                (key, false)
            }
            None => {
                let (secret, generated) = self.secret.resolve()?;
                (VerifyKey::Hs256(secret), generated)
            }
        };
        anyhow::ensure!(
            self.rate_per_sec > 0 && self.rate_burst > 0,
            "rate limits must be positive"
        );
        anyhow::ensure!(
            self.idle_timeout_secs > 0 && self.max_connection_secs > 0,
            "timeouts must be positive"
        );
        anyhow::ensure!(
            self.max_connections_per_ip > 0,
            "--max-connections-per-ip must be positive"
        );
        let config = ServerConfig {
            auth: AuthConfig {
                key,
                issuer: self.jwt_issuer.clone(),
                audience: self.jwt_audience.clone(),
                leeway_secs: self.jwt_leeway_secs,
            },
            service: ServiceConfig {
                rate: RatePolicy {
                    burst: self.rate_burst,
                    per_sec: self.rate_per_sec,
                    ..RatePolicy::default()
                },
                max_connections_per_user: self.max_connections_per_user,
                ..ServiceConfig::default()
            },
            store: self.store,
            dynamodb: self
                .dynamodb_endpoint
                .clone()
                .map(|e| (e, self.table.clone())),
            data_dir: self.secret.data_dir.clone(),
            idle_timeout: Duration::from_secs(self.idle_timeout_secs),
            max_connection_age: Duration::from_secs(self.max_connection_secs),
            max_connections_per_ip: self.max_connections_per_ip,
            stage: self.stage.clone(),
            lambda_endpoint: self.lambda_endpoint.clone(),
            dev_tokens: self.dev_tokens,
        };
        Ok((config, generated))
    }
}
