//! The `tandem` binary: parses the command line and runs the library.

use std::net::TcpListener;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use clap::{Args, CommandFactory, FromArgMatches, Parser, Subcommand};
use tandem::config::{self, Settings};
use tandem::ids::{DocId, Revision};
use tandem::net::{self, ServerConfig};
use tandem::replay::{self, ReplayReport};
use tandem::store::SharedStore;
use tandem::store::postgres::{self, PostgresStore};
use tandem::store::sqlite::SqliteStore;

/// Tandem: a real-time collaborative code editor.
#[derive(Parser)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,

    /// How log lines are written to stderr: `text` for people, `json` (one
    /// object a line) for a log collector.
    #[arg(long, global = true, env = "TANDEM_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
}

#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

// Parsed once at start-up: the size of the `serve` variant costs nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Subcommand)]
enum Command {
    /// Run the server: the editor at http://BIND/ and the API under /api.
    Serve(ServeArgs),
    /// Print the effective settings of `serve` (the same flags, environment
    /// and --config file) as TOML, secrets masked, and check them: exits 2
    /// when one cannot work.
    Config(ServeArgs),
    /// Apply the PostgreSQL schema migrations in sql/ that are not applied yet.
    Migrate(MigrateArgs),
    /// Replay a document's op log from snapshot 0 and check it; exits 0 only
    /// when everything verified. Run it against a stopped server's store or
    /// a copy (it only reads, except `--into`).
    Replay(ReplayArgs),
    /// Write a document (snapshot 0 and every op) as JSON lines.
    Export(ExportArgs),
    /// Create a document from an export, appending its ops, and verify it.
    Import(ImportArgs),
    /// Print a token signed with the configured HS256 secret, for operators
    /// and tests (`Authorization: Bearer <token>` or `?token=<token>`).
    Token(TokenArgs),
}

#[derive(Args)]
struct TokenArgs {
    /// The user id (the token's `sub`).
    #[arg(long)]
    sub: String,

    /// Display name.
    #[arg(long)]
    name: Option<String>,

    /// A server-wide admin.
    #[arg(long)]
    admin: bool,

    /// How long it is valid: 90s, 15m, 1h, 7d.
    #[arg(long, default_value = "1h", value_parser = tandem::auth::token::parse_ttl)]
    ttl: std::time::Duration,

    #[command(flatten)]
    secret: SecretArgs,
}

#[derive(Args)]
struct SecretArgs {
    /// HS256 secret for tokens (prefer --jwt-secret-file: an environment
    /// variable does not show in `ps`).
    #[arg(long = "jwt-secret", env = "TANDEM_JWT_SECRET", hide_env_values = true)]
    jwt_secret: Option<String>,

    /// File holding the HS256 secret (trailing newline ignored).
    #[arg(long, env = "TANDEM_JWT_SECRET_FILE")]
    jwt_secret_file: Option<PathBuf>,
}

impl SecretArgs {
    fn secret(&self) -> anyhow::Result<Option<Vec<u8>>> {
        if let Some(path) = &self.jwt_secret_file {
            let bytes = std::fs::read(path)
                .with_context(|| format!("reading the JWT secret from {}", path.display()))?;
            let trimmed = bytes.strip_suffix(b"\n").unwrap_or(&bytes).to_vec();
            anyhow::ensure!(!trimmed.is_empty(), "{} is empty", path.display());
            return Ok(Some(trimmed));
        }
        Ok(self
            .jwt_secret
            .as_ref()
            .filter(|s| !s.is_empty())
            .map(|s| s.as_bytes().to_vec()))
    }
}

#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum AuthMode {
    /// No identity: every client is trusted (a local run).
    Open,
    /// JWT bearer tokens; rights per document.
    Jwt,
}

#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum DefaultPermission {
    None,
    Read,
    Write,
}

#[derive(Args)]
struct ReplayArgs {
    /// The document.
    doc: String,

    /// Replay up to this revision (default: the latest).
    #[arg(long)]
    to: Option<u64>,

    /// Also compare every stored snapshot with the replayed text (without
    /// it, only the op log is checked to apply without gaps).
    #[arg(long)]
    verify: bool,

    /// Fork: create this new document with the text at `--to` (at revision
    /// 0; the history is not copied). Only done when the replay verifies.
    #[arg(long)]
    into: Option<String>,

    /// Print the report as JSON instead of lines of text.
    #[arg(long)]
    json: bool,

    #[command(flatten)]
    store: StoreArgs,
}

#[derive(Args)]
struct ExportArgs {
    /// The document.
    doc: String,

    /// Write here instead of to standard output.
    #[arg(long)]
    out: Option<PathBuf>,

    #[command(flatten)]
    store: StoreArgs,
}

#[derive(Args)]
struct ImportArgs {
    /// An export written by `tandem export` (`-` for standard input).
    file: PathBuf,

    /// Create the document under this id instead of the one in the export.
    #[arg(long)]
    id: Option<String>,

    #[command(flatten)]
    store: StoreArgs,
}

#[derive(Args)]
struct MigrateArgs {
    /// PostgreSQL URL, e.g. postgres://user@host:5432/tandem.
    #[arg(long, env = "TANDEM_DATABASE_URL")]
    database_url: String,

    /// CA certificates (PEM) for sslmode=verify-full or verify-ca.
    #[arg(long, env = "TANDEM_DATABASE_CA_FILE")]
    database_ca_file: Option<PathBuf>,
}

#[derive(Args)]
struct StoreArgs {
    /// SQLite database file for the embedded store (created if missing).
    #[arg(long = "data", env = "TANDEM_DATA", default_value = "tandem.db")]
    data: PathBuf,

    /// PostgreSQL URL (postgres://user@host:5432/db). When set, documents are
    /// stored there instead of in the SQLite file, and pending migrations are
    /// applied at start-up.
    #[arg(long, env = "TANDEM_DATABASE_URL")]
    database_url: Option<String>,

    /// CA certificates (PEM) the PostgreSQL server's certificate must chain
    /// to, for `sslmode=verify-full` (or verify-ca) in the URL; the URL's
    /// `sslrootcert=` wins over it.
    #[arg(long, env = "TANDEM_DATABASE_CA_FILE")]
    database_ca_file: Option<PathBuf>,
}

/// Several nodes: Redis routes each document to one owner.
#[derive(Args)]
struct ClusterArgs {
    /// Redis URL (redis://host:6379). When set, this node is one of
    /// several: each document is served by the node holding its lease in
    /// Redis, and connections that land elsewhere are forwarded there.
    /// Needs --database-url: the nodes share one PostgreSQL.
    #[arg(long, env = "TANDEM_REDIS_URL")]
    redis_url: Option<String>,

    /// This node's id in the cluster (default: a random one).
    #[arg(long, env = "TANDEM_NODE_ID")]
    node_id: Option<String>,

    /// How the other nodes reach this one, e.g. http://10.0.0.5:8080
    /// (default: http:// and the address it listens on, when that is not a
    /// wildcard).
    #[arg(long, env = "TANDEM_ADVERTISE_URL")]
    advertise_url: Option<String>,

    /// How long a document's lease lasts, in seconds: a node that dies
    /// gives its documents up after this long; a node that cannot renew
    /// stops serving them a fifth of it earlier.
    #[arg(long, env = "TANDEM_LEASE_SECS", default_value_t = 10.0)]
    lease_secs: f64,

    /// Prefix of every Redis key (several clusters can share one Redis).
    #[arg(long, env = "TANDEM_REDIS_PREFIX", default_value = "tandem:")]
    redis_prefix: String,

    /// Close a connection for a document another node owns with 4409 and
    /// the owner's URL, instead of forwarding it there.
    #[arg(long, env = "TANDEM_CLUSTER_REDIRECT", default_value_t = false, action = clap::ArgAction::Set)]
    cluster_redirect: bool,
}

impl ClusterArgs {
    /// The Redis set-up, checked, or `None` for one node.
    fn redis(
        &self,
        store: &StoreArgs,
        addr: std::net::SocketAddr,
    ) -> anyhow::Result<Option<tandem::cluster::redis::RedisConfig>> {
        let Some(url) = &self.redis_url else {
            return Ok(None);
        };
        anyhow::ensure!(
            store.database_url.is_some(),
            "--redis-url needs --database-url: the nodes of a cluster share one PostgreSQL database (SQLite is one machine's file)"
        );
        anyhow::ensure!(
            self.lease_secs.is_finite() && (0.5..=3600.0).contains(&self.lease_secs),
            "--lease-secs must be between 0.5 and 3600"
        );
        let advertise_url = match &self.advertise_url {
            Some(u) => u.trim_end_matches('/').to_owned(),
            None if addr.ip().is_unspecified() => anyhow::bail!(
                "--advertise-url is needed when listening on {addr}: how do the other nodes reach this one?"
            ),
            None => format!("http://{addr}"),
        };
        anyhow::ensure!(
            advertise_url.starts_with("http://"),
            "--advertise-url must be an http:// URL: the nodes talk plain HTTP to each other, so keep them on a private network and end TLS at the load balancer"
        );
        let node_id = match &self.node_id {
            Some(id) => {
                anyhow::ensure!(
                    !id.is_empty()
                        && id.len() <= 64
                        && id
                            .bytes()
                            .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b)),
                    "--node-id must be 1-64 characters of [A-Za-z0-9._-]"
                );
                id.clone()
            }
            None => format!("node-{:08x}", rand::random::<u32>()),
        };
        Ok(Some(tandem::cluster::redis::RedisConfig {
            url: url.clone(),
            prefix: self.redis_prefix.clone(),
            node_id,
            advertise_url,
            lease_time: std::time::Duration::from_secs_f64(self.lease_secs),
        }))
    }
}

impl StoreArgs {
    async fn open(&self) -> anyhow::Result<SharedStore> {
        match &self.database_url {
            Some(url) => {
                // The URL may hold a password: it is not repeated in errors.
                let options = postgres::ConnectOptions {
                    ca_file: self.database_ca_file.clone(),
                };
                postgres::migrate_with(url, &options)
                    .await
                    .context("migrating the PostgreSQL schema")?;
                let store = PostgresStore::connect_with(url, &options)
                    .await
                    .context("connecting to PostgreSQL")?;
                Ok(Arc::new(store))
            }
            None => {
                let store = SqliteStore::open(&self.data)
                    .with_context(|| format!("opening {}", self.data.display()))?;
                Ok(Arc::new(store))
            }
        }
    }
}

#[derive(Args)]
struct ServeArgs {
    /// A TOML file of these settings, keyed by the long flags' names
    /// (`max-message-bytes = 1048576`); flags and environment win over it.
    #[arg(long, env = "TANDEM_CONFIG")]
    config: Option<PathBuf>,

    /// Address and port to listen on.
    #[arg(long, env = "TANDEM_BIND", default_value = "127.0.0.1:8080")]
    bind: String,

    /// `open` trusts every client (the default, for a local run); `jwt`
    /// requires a token or a share link and checks rights per document.
    #[arg(long, env = "TANDEM_AUTH", value_enum, default_value_t = AuthMode::Open)]
    auth: AuthMode,

    #[command(flatten)]
    secret: SecretArgs,

    /// PEM public key for RS256 or ES256 tokens (instead of the secret).
    #[arg(long, env = "TANDEM_JWT_PUBLIC_KEY")]
    jwt_public_key: Option<PathBuf>,

    /// What a signed-in user without a grant gets on a document.
    #[arg(long, env = "TANDEM_DEFAULT_PERMISSION", value_enum, default_value_t = DefaultPermission::None)]
    default_permission: DefaultPermission,

    /// Whether a signed-in user's first join (or POST) creates a document,
    /// making them its admin.
    #[arg(long, env = "TANDEM_ALLOW_CREATE", default_value_t = true, action = clap::ArgAction::Set)]
    allow_create: bool,

    #[command(flatten)]
    store: StoreArgs,

    #[command(flatten)]
    cluster: ClusterArgs,

    /// A secret that opens the admin API (`Authorization: Bearer TOKEN`)
    /// in any auth mode, from any address. Prefer the environment variable:
    /// arguments are visible to every user of the machine.
    #[arg(long, env = "TANDEM_ADMIN_TOKEN", hide_env_values = true)]
    admin_token: Option<String>,

    /// Folder of the built web app (index.html and assets/). Without it:
    /// the app embedded in the binary (a release build), else
    /// `client-js/dist` if it is there.
    #[arg(long, env = "TANDEM_STATIC")]
    static_dir: Option<PathBuf>,

    /// HTTP worker threads; 0 means one per CPU core.
    #[arg(long, env = "TANDEM_WORKERS", default_value_t = 0)]
    workers: usize,

    /// Take a snapshot every this many revisions.
    #[arg(long, env = "TANDEM_SNAPSHOT_INTERVAL", default_value_t = config::SNAPSHOT_INTERVAL)]
    snapshot_interval: u64,

    /// Close a document this many seconds after its last client left.
    #[arg(long, env = "TANDEM_DOCUMENT_IDLE_SECS", default_value_t = config::DOCUMENT_IDLE_CLOSE.as_secs())]
    document_idle_secs: u64,

    /// Close a client that sends nothing (not even a pong) for this many seconds.
    #[arg(long, env = "TANDEM_CLIENT_IDLE_SECS", default_value_t = config::CLIENT_IDLE_TIMEOUT.as_secs())]
    client_idle_secs: u64,

    /// Largest WebSocket message, in bytes.
    #[arg(long, env = "TANDEM_MAX_MESSAGE_BYTES", default_value_t = config::MAX_MESSAGE_BYTES)]
    max_message_bytes: usize,

    /// Largest document, in characters.
    #[arg(long, env = "TANDEM_MAX_DOCUMENT_CHARS", default_value_t = config::MAX_DOCUMENT_CHARS)]
    max_document_chars: usize,

    /// Most components in one op.
    #[arg(long, env = "TANDEM_MAX_OP_COMPONENTS", default_value_t = config::MAX_OP_COMPONENTS)]
    max_op_components: usize,

    /// Most clients connected to one document.
    #[arg(long, env = "TANDEM_MAX_CLIENTS_PER_DOCUMENT", default_value_t = config::MAX_CLIENTS_PER_DOCUMENT)]
    max_clients_per_document: usize,

    /// Committed ops kept in memory per open document.
    #[arg(long, env = "TANDEM_HISTORY_WINDOW", default_value_t = config::HISTORY_WINDOW)]
    history_window: usize,

    /// Bytes of committed ops kept in memory per open document (whichever
    /// of this and --history-window is reached first).
    #[arg(long, env = "TANDEM_HISTORY_WINDOW_BYTES", default_value_t = config::HISTORY_WINDOW_BYTES)]
    history_window_bytes: usize,

    /// Most bytes of ops sent to a resuming client; beyond, it gets the text.
    #[arg(long, env = "TANDEM_MAX_CATCHUP_BYTES", default_value_t = config::MAX_CATCHUP_BYTES)]
    max_catchup_bytes: usize,

    /// How many revisions behind a client may be and still resume.
    #[arg(long, env = "TANDEM_MAX_CATCHUP_REVISIONS", default_value_t = config::MAX_CATCHUP_REVISIONS)]
    max_catchup_revisions: u64,

    /// Messages one client may send per second (presence excluded).
    #[arg(long, env = "TANDEM_RATE_LIMIT", default_value_t = config::RATE_LIMIT_PER_SEC)]
    rate_limit: u32,

    /// Ops per second one user may send over all their connections
    /// together (burst: one second's worth); 0: no limit. Not in open mode.
    #[arg(long, env = "TANDEM_RATE_LIMIT_USER_OPS", default_value_t = config::RATE_LIMIT_USER_OPS)]
    rate_limit_user_ops: u32,

    /// New WebSocket connections per second from one IP address (IPv6: a
    /// /64), burst 20 seconds' worth; more get HTTP 429. 0: no limit.
    #[arg(long, env = "TANDEM_RATE_LIMIT_IP_CONNECTIONS", default_value_t = config::RATE_LIMIT_IP_CONNECTIONS)]
    rate_limit_ip_connections: u32,

    /// New WebSocket connections per second of one user, burst 20 seconds'
    /// worth; more get HTTP 429. 0: no limit.
    #[arg(long, env = "TANDEM_RATE_LIMIT_USER_CONNECTIONS", default_value_t = config::RATE_LIMIT_USER_CONNECTIONS)]
    rate_limit_user_connections: u32,

    /// `join`s per second from one IP address, burst 20 seconds' worth;
    /// more get `rate_limited`. 0: no limit.
    #[arg(long, env = "TANDEM_RATE_LIMIT_IP_JOINS", default_value_t = config::RATE_LIMIT_IP_JOINS)]
    rate_limit_ip_joins: u32,

    /// `join`s per second of one user, burst 20 seconds' worth; more get
    /// `rate_limited`. 0: no limit.
    #[arg(long, env = "TANDEM_RATE_LIMIT_USER_JOINS", default_value_t = config::RATE_LIMIT_USER_JOINS)]
    rate_limit_user_joins: u32,

    /// REST and static file requests per second from one IP address, burst
    /// 20 seconds' worth; more get HTTP 429. 0: no limit.
    #[arg(long, env = "TANDEM_RATE_LIMIT_IP_REQUESTS", default_value_t = config::RATE_LIMIT_IP_REQUESTS)]
    rate_limit_ip_requests: u32,

    /// Key the per-address limits by the last `X-Forwarded-For` entry
    /// instead of the TCP peer: only behind a reverse proxy that sets it
    /// (anyone else could claim any address).
    #[arg(long, env = "TANDEM_TRUST_FORWARDED_FOR", default_value_t = false, action = clap::ArgAction::Set)]
    trust_forwarded_for: bool,

    /// Web pages (origins) that may open WebSockets and call the API from
    /// a browser, comma-separated: `self` (a page served under the
    /// request's own Host), `scheme://host[:port]`, or `*` for any.
    /// Requests without an `Origin` (not from a browser) are always let in.
    #[arg(
        long,
        env = "TANDEM_ALLOWED_ORIGINS",
        value_delimiter = ',',
        default_value = "self"
    )]
    allowed_origins: Vec<String>,

    /// Messages queued to one client before it is disconnected as too slow.
    #[arg(long, env = "TANDEM_OUTBOUND_QUEUE", default_value_t = config::OUTBOUND_QUEUE)]
    outbound_queue: usize,

    /// Bytes queued to one client and not yet written before it is
    /// disconnected as too slow (a first frame is always taken).
    #[arg(long, env = "TANDEM_OUTBOUND_QUEUE_BYTES", default_value_t = config::OUTBOUND_QUEUE_BYTES)]
    outbound_queue_bytes: usize,

    /// Most documents open on this node at once; a join or request that
    /// would open one more is refused as unavailable.
    #[arg(long, env = "TANDEM_MAX_OPEN_DOCUMENTS", default_value_t = config::MAX_OPEN_DOCUMENTS)]
    max_open_documents: usize,

    /// Most WebSocket connections on this node at once; more get HTTP 503.
    #[arg(long, env = "TANDEM_MAX_CONNECTIONS", default_value_t = config::MAX_CONNECTIONS)]
    max_connections: usize,

    /// Burst of socket writes a document may make at once, in milliseconds
    /// of its budget of 40,000 writes a second: news of other clients goes
    /// out at once while the document stays within that budget, and is
    /// held and sent to each connection together only when it would not
    /// (0: never hold).
    #[arg(long, env = "TANDEM_OUTBOUND_COALESCE_MS", default_value_t = config::OUTBOUND_COALESCE.as_millis() as u64)]
    outbound_coalesce_ms: u64,

    /// Socket writes a second a document's fan-out may cost on average
    /// before news is held and sent to each connection together.
    #[arg(long, env = "TANDEM_OUTBOUND_WRITES_PER_SEC", default_value_t = config::DOCUMENT_WRITES_PER_SEC)]
    outbound_writes_per_sec: u32,

    /// How long appends are retried while the store is unreachable before
    /// clients are told `unavailable` and asked to reconnect.
    #[arg(long, env = "TANDEM_STORE_RETRY_SECS", default_value_t = config::STORE_RETRY_LIMIT.as_secs())]
    store_retry_secs: u64,

    /// Seconds a shutdown (SIGTERM) waits for the documents to flush after
    /// /readyz turned 503 and the sessions were closed.
    #[arg(long, env = "TANDEM_SHUTDOWN_TIMEOUT_SECS", default_value_t = net::SHUTDOWN_TIMEOUT.as_secs())]
    shutdown_timeout: u64,
}

impl ServeArgs {
    fn auth(&self) -> anyhow::Result<tandem::auth::Auth> {
        use tandem::auth::token::TokenVerifier;
        use tandem::auth::{Auth, Mode, Permission};
        let mode = match self.auth {
            AuthMode::Open => Mode::Open,
            AuthMode::Jwt => {
                let verifier = match (&self.jwt_public_key, self.secret.secret()?) {
                    (Some(path), _) => {
                        let pem = std::fs::read(path)
                            .with_context(|| format!("reading {}", path.display()))?;
                        TokenVerifier::public_key(&pem)
                            .with_context(|| format!("{}", path.display()))?
                    }
                    (None, Some(secret)) => TokenVerifier::hs256(&secret)?,
                    (None, None) => anyhow::bail!(
                        "--auth jwt needs TANDEM_JWT_SECRET, --jwt-secret-file or --jwt-public-key"
                    ),
                };
                Mode::Jwt(Box::new(verifier))
            }
        };
        Ok(Auth {
            mode,
            default_permission: match self.default_permission {
                DefaultPermission::None => None,
                DefaultPermission::Read => Some(Permission::Read),
                DefaultPermission::Write => Some(Permission::Write),
            },
            allow_create: self.allow_create,
        })
    }

    fn settings(&self) -> Settings {
        let mut s = Settings {
            cluster_redirect: self.cluster.cluster_redirect,
            ..Settings::default()
        };
        s.limits.max_message_bytes = self.max_message_bytes;
        s.limits.max_document_chars = self.max_document_chars;
        s.limits.max_op_components = self.max_op_components;
        s.limits.max_clients_per_document = self.max_clients_per_document;
        s.limits.history_window = self.history_window;
        s.limits.history_window_bytes = self.history_window_bytes;
        s.limits.max_catchup_bytes = self.max_catchup_bytes;
        s.limits.max_catchup_revisions = self.max_catchup_revisions;
        s.limits.rate_limit_per_sec = self.rate_limit;
        s.limits.outbound_queue = self.outbound_queue;
        s.limits.outbound_queue_bytes = self.outbound_queue_bytes;
        s.limits.max_open_documents = self.max_open_documents;
        s.limits.max_connections = self.max_connections;
        s.timing.store_retry_limit = std::time::Duration::from_secs(self.store_retry_secs);
        s.timing.snapshot_interval = self.snapshot_interval;
        s.timing.document_idle_close = std::time::Duration::from_secs(self.document_idle_secs);
        s.timing.client_idle_timeout = std::time::Duration::from_secs(self.client_idle_secs);
        s.timing.ping_interval = s.timing.client_idle_timeout / 3;
        s.timing.outbound_coalesce = std::time::Duration::from_millis(self.outbound_coalesce_ms);
        s.timing.outbound_writes_per_sec = self.outbound_writes_per_sec;
        s.rate = config::RateLimits {
            user_ops: self.rate_limit_user_ops,
            ip_connections: self.rate_limit_ip_connections,
            user_connections: self.rate_limit_user_connections,
            ip_joins: self.rate_limit_ip_joins,
            user_joins: self.rate_limit_user_joins,
            ip_requests: self.rate_limit_ip_requests,
            trust_forwarded_for: self.trust_forwarded_for,
        };
        s
    }
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = ctrl_c => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = ctrl_c.await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
}

/// Where a development checkout's web app is built, relative to the
/// repository: served when no `--static-dir` is given and the binary
/// carries no app of its own.
const DEV_STATIC_DIR: &str = "client-js/dist";

/// Open files the server needs besides its sockets: the database, its WAL,
/// PostgreSQL and Redis connections, the web app's files, logs.
const OTHER_FILES: u64 = 1_024;

/// Raises this process's open-file limit to its hard limit, so that
/// `--max-connections` sockets fit (each is a file descriptor), and says so
/// when even the hard limit is too low: connections past it would be
/// refused by the OS (EMFILE) instead of with a clear 503.
fn raise_open_files(max_connections: usize) {
    let needed = max_connections as u64 + OTHER_FILES;
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(limit) if limit < needed => tracing::warn!(
            limit,
            needed,
            "the open-file limit is below --max-connections plus {OTHER_FILES}; raise it (ulimit -n, LimitNOFILE= in the systemd unit) or lower --max-connections"
        ),
        Ok(limit) => tracing::debug!(limit, "open-file limit"),
        Err(e) => tracing::warn!(error = %e, "could not read or raise the open-file limit"),
    }
}

async fn serve(args: ServeArgs) -> anyhow::Result<()> {
    let origins = net::origin::Origins::parse(&args.allowed_origins)
        .map_err(anyhow::Error::msg)
        .context("--allowed-origins")?;
    raise_open_files(args.max_connections);
    let listener =
        TcpListener::bind(&args.bind).with_context(|| format!("binding {}", args.bind))?;
    let addr = listener.local_addr()?;
    let redis = args.cluster.redis(&args.store, addr)?;
    let store = args.store.open().await?;
    // A folder given is used as it is; without one, the embedded app,
    // else the repository's build (a development checkout).
    let dev_app = PathBuf::from(DEV_STATIC_DIR);
    let (static_dir, app_at) = match &args.static_dir {
        Some(dir) => (Some(dir.clone()), Some(dir.clone())),
        None if net::webapp::is_embedded() => (None, None),
        None => (Some(dev_app.clone()), Some(dev_app)),
    };
    // Tests and scripts read this line to learn the port.
    println!("tandem listening on http://{addr}");
    match &app_at {
        // A log line, not a bare print: with --log-format json every line
        // on stderr is one JSON object.
        Some(dir) if !dir.join("index.html").is_file() => tracing::info!(
            dir = %dir.display(),
            "no web app here; the API works, the editor needs `npm run build` in client-js/ (or a release build, scripts/release)"
        ),
        Some(dir) => tracing::info!(folder = %dir.display(), "serving the web app from a folder"),
        None => tracing::info!("serving the web app embedded in this binary"),
    }
    let auth = args.auth()?;
    if auth.is_open() && !addr.ip().is_loopback() {
        tracing::warn!(
            %addr,
            "--auth open trusts every client, and this address is reachable beyond this machine: use --auth jwt to serve a team"
        );
    }
    let config = ServerConfig {
        store,
        auth,
        settings: args.settings(),
        static_dir,
        workers: args.workers,
        origins,
        redis,
        admin_token: args.admin_token.clone().filter(|t| !t.is_empty()),
        readiness: Vec::new(),
        shutdown_timeout: std::time::Duration::from_secs(args.shutdown_timeout),
    };
    net::run(listener, config, shutdown_signal()).await?;
    Ok(())
}

async fn migrate(args: MigrateArgs) -> anyhow::Result<()> {
    let options = postgres::ConnectOptions {
        ca_file: args.database_ca_file,
    };
    let applied = postgres::migrate_with(&args.database_url, &options)
        .await
        .context("migrating the PostgreSQL schema")?;
    if applied.is_empty() {
        println!("schema is up to date");
    } else {
        let versions: Vec<String> = applied.iter().map(i64::to_string).collect();
        println!("applied migrations: {}", versions.join(", "));
    }
    Ok(())
}

fn parse_doc(raw: &str) -> anyhow::Result<DocId> {
    DocId::parse(raw).with_context(|| format!("bad document id {raw:?}"))
}

fn print_report(report: &ReplayReport, json: bool) -> anyhow::Result<()> {
    if json {
        println!("{}", serde_json::to_string_pretty(report)?);
        return Ok(());
    }
    println!(
        "{}: replayed {} ops (revision 0 to {} of {}) in {:.1} ms ({:.0} ops/s); {} snapshots checked",
        report.id,
        report.ops_replayed,
        report.to,
        report.latest,
        report.elapsed_ms,
        report.ops_per_sec,
        report.snapshots_checked
    );
    for m in &report.mismatches {
        println!("mismatch at revision {} ({}): {}", m.rev, m.kind, m.detail);
    }
    println!("{}", if report.ok { "ok" } else { "FAILED" });
    Ok(())
}

async fn replay_cmd(args: ReplayArgs) -> anyhow::Result<bool> {
    let doc = parse_doc(&args.doc)?;
    let into = args.into.as_deref().map(parse_doc).transpose()?;
    let store = args.store.open().await?;
    let report = replay::replay_with(
        store.as_ref(),
        &doc,
        args.to.map(Revision),
        None,
        args.verify || into.is_some(),
    )
    .await?;
    print_report(&report, args.json)?;
    if !report.ok {
        return Ok(false);
    }
    if let (Some(new), Some(text)) = (into, &report.text) {
        let meta = store
            .document(&doc)
            .await?
            .context("document disappeared")?;
        store.create_document(&new, &meta.language, text).await?;
        eprintln!("forked {doc}@{} into {new} (at revision 0)", report.to);
    }
    Ok(true)
}

async fn export_cmd(args: ExportArgs) -> anyhow::Result<()> {
    let doc = parse_doc(&args.doc)?;
    let store = args.store.open().await?;
    let summary = match &args.out {
        Some(path) => {
            let file = std::fs::File::create(path)
                .with_context(|| format!("creating {}", path.display()))?;
            let mut out = std::io::BufWriter::new(file);
            replay::export(store.as_ref(), &doc, &mut out).await?
        }
        None => {
            let mut out = std::io::BufWriter::new(std::io::stdout().lock());
            replay::export(store.as_ref(), &doc, &mut out).await?
        }
    };
    eprintln!("exported {} at revision {}", summary.id, summary.rev);
    Ok(())
}

async fn import_cmd(args: ImportArgs) -> anyhow::Result<()> {
    let id = args.id.as_deref().map(parse_doc).transpose()?;
    let store = args.store.open().await?;
    let summary = if args.file.as_os_str() == "-" {
        let mut input = std::io::stdin().lock();
        replay::import(store.as_ref(), &mut input, id).await?
    } else {
        let file = std::fs::File::open(&args.file)
            .with_context(|| format!("opening {}", args.file.display()))?;
        let mut input = std::io::BufReader::new(file);
        replay::import(store.as_ref(), &mut input, id).await?
    };
    println!(
        "imported {} at revision {} ({} ops), verified",
        summary.id, summary.rev, summary.ops
    );
    Ok(())
}

fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("TANDEM_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let fmt = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => fmt.init(),
        LogFormat::Json => fmt.json().init(),
    }
}

/// Says what is wrong with the configuration and exits 2 (a usage error,
/// as clap's own).
fn config_error(e: &dyn std::fmt::Display) -> ! {
    eprintln!("error: {e}");
    std::process::exit(2)
}

fn main() -> anyhow::Result<()> {
    // The settings file's values become the defaults of serve's flags
    // (src/settings_file.rs); a bad file or setting exits 2, as clap does.
    let parsed =
        tandem::settings_file::parse(Cli::command(), &["serve", "config"], std::env::args_os())
            .unwrap_or_else(|e| config_error(&e));
    let cli = Cli::from_arg_matches(&parsed.matches).unwrap_or_else(|e| e.exit());
    init_logging(cli.log_format);
    match cli.command {
        Command::Serve(args) => {
            if let Err(e) = tandem::settings_check::check(&args.settings()) {
                config_error(&e);
            }
            actix_web::rt::System::new().block_on(serve(args))
        }
        Command::Config(args) => {
            print!("{}", tandem::settings_file::render(&parsed, "config"));
            if let Err(e) = tandem::settings_check::check(&args.settings()) {
                config_error(&e);
            }
            Ok(())
        }
        Command::Migrate(args) => actix_web::rt::System::new().block_on(migrate(args)),
        Command::Replay(args) => {
            let ok = actix_web::rt::System::new().block_on(replay_cmd(args))?;
            if !ok {
                std::process::exit(1);
            }
            Ok(())
        }
        Command::Export(args) => actix_web::rt::System::new().block_on(export_cmd(args)),
        Command::Import(args) => actix_web::rt::System::new().block_on(import_cmd(args)),
        Command::Token(args) => {
            let secret = args.secret.secret()?.context(
                "no secret: set TANDEM_JWT_SECRET or --jwt-secret-file (the server's HS256 secret)",
            )?;
            let signer = tandem::auth::token::TokenSigner::hs256(&secret)?;
            println!(
                "{}",
                signer.issue(&args.sub, args.name.as_deref(), args.admin, args.ttl)?
            );
            Ok(())
        }
    }
}
