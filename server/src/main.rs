//! `shoal-server`: runs the shoal cache server, or checks one's health.

/// mimalloc rather than the system allocator: every call allocates and frees
/// buffers on whichever worker thread runs it, and mimalloc's per-thread free
/// lists make that cheaper than glibc's malloc (about 4% of the server's time
/// under unary GETs, against 11%).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
use shoal_server::config::{ClientAuth, Config, LogFormat, TlsSettings};
use shoal_server::engine::EvictionPolicy;
use shoal_server::persistence::FsyncPolicy;
use shoal_server::persistence::settings::{PersistenceMode, PersistenceSettings};

/// The shoal cache server: a sharded in-memory cache behind a gRPC API.
#[derive(Debug, Parser)]
#[command(version, about, args_conflicts_with_subcommands = true)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    serve: Args,
    /// Serve on a non-loopback address with neither tokens nor required
    /// client certificates: anyone who reaches the port may read, write and
    /// flush everything. Without it the server refuses to start so.
    #[arg(long, env = "SHOAL_INSECURE")]
    insecure: bool,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Asks a running server for its health over gRPC; exits 0 when it is
    /// SERVING, 1 otherwise. For container health checks.
    Healthcheck(HealthcheckArgs),
    /// Makes an access token: prints its secret once, then the stanza (with
    /// the secret's SHA-256, never the secret) to add to the token file.
    Token(TokenArgs),
    /// Writes a development CA, a server certificate for localhost and a
    /// client certificate to a directory, and says how to use them. Not for
    /// production.
    DevCert(DevCertArgs),
    /// Salvages what is valid in a damaged data directory, with the server
    /// stopped. Without --yes it only says what it would keep and drop and
    /// changes nothing; exits 0 when nothing needs repair or the repair is
    /// done, 1 when a dry run found damage, 2 on an error.
    Repair(RepairArgs),
}

#[derive(Debug, clap::Args)]
struct RepairArgs {
    /// The data directory to repair.
    #[arg(long)]
    data_dir: PathBuf,
    /// Carry the repair out: salvaged copies replace damaged files, and
    /// the originals are kept as NAME.damaged.
    #[arg(long)]
    yes: bool,
}

#[derive(Debug, clap::Args)]
struct TokenArgs {
    /// The token's name in logs and messages, such as the service using it.
    #[arg(long)]
    id: String,
    /// A right, as PATTERN=ROLE (a namespace glob and read, write or
    /// admin), such as 'orders*=write'; repeat for more.
    #[arg(long = "grant", value_name = "PATTERN=ROLE", value_parser = shoal_server::auth::parse_grant)]
    grants: Vec<(
        shoal_server::auth::NamespacePattern,
        shoal_server::auth::Role,
    )>,
    /// When the token stops being accepted, in RFC 3339, such as
    /// 2027-06-01T00:00:00Z [default: never].
    #[arg(long)]
    expires: Option<String>,
}

#[derive(Debug, clap::Args)]
struct DevCertArgs {
    /// Directory to write ca.pem, server.pem, server-key.pem, client.pem and
    /// client-key.pem to (made if missing; files there are replaced).
    #[arg(long)]
    out: PathBuf,
    /// Another name for the server certificate, beside localhost, 127.0.0.1
    /// and ::1: a DNS name (such as a compose service or a Kubernetes
    /// Service) or an IP address. Repeatable.
    #[arg(long = "name", value_name = "NAME")]
    names: Vec<String>,
}

#[derive(Debug, clap::Args)]
struct HealthcheckArgs {
    /// Address of the server's gRPC listener.
    #[arg(long, default_value = "127.0.0.1:50051")]
    addr: String,
    /// Longest to wait for the connection, and again for the answer, in
    /// milliseconds.
    #[arg(long, default_value_t = 2000)]
    timeout_ms: u64,
    /// CA certificate (PEM) to verify a TLS server with; implies https.
    #[arg(long, env = "SHOAL_TLS_CA")]
    tls_ca: Option<PathBuf>,
    /// Client certificate (PEM) for a server that requires one. Its
    /// variable is not SHOAL_TLS_CERT, which is the server's own
    /// certificate.
    #[arg(long, env = "SHOAL_CLIENT_CERT", requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// The client certificate's private key (PEM).
    #[arg(long, env = "SHOAL_CLIENT_KEY", requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// The name to verify the server's certificate against, when the
    /// address does not carry it (such as 127.0.0.1 for a certificate of
    /// shoal.example.com).
    #[arg(long, env = "SHOAL_TLS_DOMAIN")]
    tls_domain: Option<String>,
}

/// Address of the admin listener, or `off`.
#[derive(Debug, Clone, Copy)]
struct AdminListen(Option<SocketAddr>);

impl std::str::FromStr for AdminListen {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        shoal_server::config::parse_admin_listen(text).map(AdminListen)
    }
}

/// Serving flags; each overrides the configuration file.
#[derive(Debug, clap::Args)]
struct Args {
    /// TOML configuration file (see server/config/shoal.example.toml).
    #[arg(long, env = "SHOAL_CONFIG")]
    config: Option<PathBuf>,
    /// Address for the gRPC API [default: 127.0.0.1:50051].
    #[arg(long, env = "SHOAL_LISTEN")]
    listen: Option<std::net::SocketAddr>,
    /// Largest value accepted, in bytes [default: 16777216].
    #[arg(long, env = "SHOAL_MAX_VALUE_BYTES")]
    max_value_bytes: Option<usize>,
    /// Memory budget for entries, with K/M/G or KiB/MiB/GiB units, or a share
    /// of the container's memory limit (else of RAM) such as 75%; 0 for no
    /// limit [default: 0].
    #[arg(long, env = "SHOAL_MAX_MEMORY", value_parser = shoal_server::config::parse_memory_budget)]
    max_memory: Option<u64>,
    /// Most keys across namespaces; 0 for no limit [default: 0].
    #[arg(long, env = "SHOAL_MAX_KEYS")]
    max_keys: Option<u64>,
    /// What to evict at a limit: s3fifo, tinylfu, lru, lfu or noeviction [default: tinylfu].
    #[arg(long, env = "SHOAL_EVICTION_POLICY")]
    eviction_policy: Option<EvictionPolicy>,
    /// Let the kernel back the cache with transparent huge pages: fewer TLB
    /// misses, but RSS runs above the memory figure [default: false].
    #[arg(long, env = "SHOAL_TRANSPARENT_HUGE_PAGES")]
    transparent_huge_pages: Option<bool>,
    /// Token file: with it, every call needs a token or a listed client
    /// certificate, held to its grants [default: none, auth off].
    #[arg(long, env = "SHOAL_TOKEN_FILE")]
    token_file: Option<PathBuf>,
    /// Log format [default: text]. The level comes from RUST_LOG.
    #[arg(long, env = "SHOAL_LOG_FORMAT")]
    log_format: Option<LogFormat>,
    /// Address of the admin HTTP listener (/metrics, /healthz, /readyz), or
    /// `off` [default: 127.0.0.1:9464].
    #[arg(long, env = "SHOAL_ADMIN_LISTEN")]
    admin_listen: Option<AdminListen>,
    /// OTLP/gRPC endpoint to export traces to, such as
    /// http://localhost:4317 [default: none, no export].
    #[arg(long, env = "OTEL_EXPORTER_OTLP_ENDPOINT")]
    otlp_endpoint: Option<String>,
    /// service.name of exported traces [default: shoal].
    #[arg(long, env = "OTEL_SERVICE_NAME")]
    otel_service_name: Option<String>,
    /// Fraction of new traces recorded, 0 to 1; calls whose caller recorded
    /// its trace always are [default: 1].
    #[arg(long, env = "OTEL_TRACES_SAMPLER_ARG")]
    trace_sampling_ratio: Option<f64>,
    #[command(flatten)]
    tls: TlsArgs,
    #[command(flatten)]
    persistence: PersistenceArgs,
    #[command(flatten)]
    cluster: ClusterArgs,
}

/// Cluster flags; each overrides the `[cluster]` section of the file.
#[derive(Debug, clap::Args)]
struct ClusterArgs {
    /// Every member of the cluster, this one included, as id=host:port
    /// (comma-separated); keys are placed over them [default: none, a
    /// single server].
    #[arg(long, env = "SHOAL_PEERS", value_delimiter = ',')]
    peers: Option<Vec<String>>,
    /// This server's id among --peers [default: the host name].
    #[arg(long, env = "SHOAL_NODE_ID")]
    node_id: Option<String>,
    /// CA bundle that signs the members' certificates, for TLS between
    /// members [default: tls.client_ca when the listener has TLS].
    #[arg(long, env = "SHOAL_CLUSTER_TLS_CA")]
    cluster_tls_ca: Option<PathBuf>,
    /// Where the members come from: the --peers list, the addresses of
    /// --dns-name, or the EndpointSlices of --kubernetes-service
    /// [default: static].
    #[arg(long, env = "SHOAL_MEMBERSHIP", value_parser = ["static", "dns", "kubernetes"])]
    membership: Option<String>,
    /// With --membership kubernetes: the Service whose endpoints are the
    /// members [default: shoal-headless].
    #[arg(long, env = "SHOAL_KUBERNETES_SERVICE")]
    kubernetes_service: Option<String>,
    /// With --membership dns: the host:port whose addresses are the
    /// members.
    #[arg(long, env = "SHOAL_DNS_NAME")]
    dns_name: Option<String>,
    /// With --membership dns: this server's ip:port as --dns-name resolves
    /// it, its id among the members [default: --node-id].
    #[arg(long, env = "SHOAL_ADVERTISE")]
    advertise: Option<String>,
}

impl ClusterArgs {
    fn apply(
        self,
        cluster: &mut shoal_server::cluster::ClusterSettings,
    ) -> Result<(), shoal_server::config::ConfigError> {
        if let Some(peers) = self.peers {
            cluster.peers = peers
                .into_iter()
                .filter(|peer| !peer.trim().is_empty())
                .collect();
        }
        if let Some(id) = self.node_id {
            cluster.node_id = Some(id);
        }
        if let Some(ca) = self.cluster_tls_ca {
            cluster.tls_ca = Some(ca);
        }
        if let Some(membership) = self.membership {
            cluster.membership = Some(membership.parse()?);
        }
        if let Some(service) = self.kubernetes_service {
            cluster.kubernetes_service = service;
        }
        if let Some(name) = self.dns_name {
            cluster.dns_name = Some(name);
        }
        if let Some(address) = self.advertise {
            cluster.advertise = Some(address);
        }
        Ok(())
    }
}

/// Persistence flags; each overrides the `[persistence]` section of the file.
#[derive(Debug, clap::Args)]
#[command(next_help_heading = "Persistence")]
struct PersistenceArgs {
    /// What survives a restart: off, snapshot (snapshots only; a restart
    /// loses the writes since the last one) or log (every acknowledged
    /// write) [default: off].
    #[arg(long, env = "SHOAL_PERSISTENCE", value_parser = ["off", "snapshot", "log"])]
    persistence: Option<String>,
    /// When the log reaches the disk: always (before each write is
    /// answered), everysec or no (when the kernel writes back) [default:
    /// everysec].
    #[arg(long, env = "SHOAL_FSYNC", value_parser = ["always", "everysec", "no"])]
    fsync: Option<String>,
    /// Directory of the log and snapshots, made if missing and locked
    /// against a second server; required unless persistence is off.
    #[arg(long, env = "SHOAL_DATA_DIR")]
    data_dir: Option<PathBuf>,
    /// Time between snapshots, such as 30s, 5m or 1h; 0 for none on a
    /// timer [default: 5m].
    #[arg(long, env = "SHOAL_SNAPSHOT_INTERVAL", value_parser = shoal_server::persistence::settings::parse_interval)]
    snapshot_interval: Option<Duration>,
    /// Log bytes since the last snapshot that trigger the next one; 0 for
    /// none on log growth [default: 268435456].
    #[arg(long, env = "SHOAL_SNAPSHOT_LOG_BYTES")]
    snapshot_log_bytes: Option<u64>,
}

impl PersistenceArgs {
    fn apply(self, settings: &mut PersistenceSettings) {
        if let Some(mode) = self.persistence {
            settings.mode = match mode.as_str() {
                "snapshot" => PersistenceMode::Snapshot,
                "log" => PersistenceMode::Log,
                _ => PersistenceMode::Off,
            };
        }
        if let Some(fsync) = self.fsync {
            settings.fsync = match fsync.as_str() {
                "always" => FsyncPolicy::Always,
                "no" => FsyncPolicy::No,
                _ => FsyncPolicy::Everysec,
            };
        }
        if let Some(dir) = self.data_dir {
            settings.data_dir = Some(dir);
        }
        if let Some(interval) = self.snapshot_interval {
            settings.snapshot_interval = interval;
        }
        if let Some(bytes) = self.snapshot_log_bytes {
            settings.snapshot_log_bytes = bytes;
        }
    }
}

/// TLS flags; each overrides the `[tls]` section of the file.
#[derive(Debug, clap::Args)]
#[command(next_help_heading = "TLS")]
struct TlsArgs {
    /// Server certificate chain (PEM); with --tls-key, turns TLS on
    /// [default: none, plaintext].
    #[arg(long, env = "SHOAL_TLS_CERT")]
    tls_cert: Option<PathBuf>,
    /// The certificate's private key (PEM).
    #[arg(long, env = "SHOAL_TLS_KEY")]
    tls_key: Option<PathBuf>,
    /// CA bundle (PEM) that client certificates must chain to.
    #[arg(long, env = "SHOAL_TLS_CLIENT_CA")]
    tls_client_ca: Option<PathBuf>,
    /// Client certificates: off, optional or required [default: off].
    #[arg(long, env = "SHOAL_TLS_CLIENT_AUTH")]
    tls_client_auth: Option<ClientAuth>,
    /// Seconds a new connection has to finish its TLS handshake [default: 10].
    #[arg(long, env = "SHOAL_TLS_HANDSHAKE_TIMEOUT_SECS")]
    tls_handshake_timeout_secs: Option<u64>,
    /// TLS handshakes in progress at once, per listener [default: 1024].
    #[arg(long, env = "SHOAL_TLS_MAX_HANDSHAKES")]
    tls_max_handshakes: Option<usize>,
    /// TLS on the admin listener too, with the same certificate [default: true].
    #[arg(long, env = "SHOAL_ADMIN_TLS")]
    admin_tls: Option<bool>,
}

impl TlsArgs {
    fn apply(self, tls: &mut TlsSettings) {
        if let Some(cert) = self.tls_cert {
            tls.cert = Some(cert);
        }
        if let Some(key) = self.tls_key {
            tls.key = Some(key);
        }
        if let Some(client_ca) = self.tls_client_ca {
            tls.client_ca = Some(client_ca);
            // A CA alone asks for certificates: requiring them is then the
            // safe reading.
            if tls.client_auth == ClientAuth::Off && self.tls_client_auth.is_none() {
                tls.client_auth = ClientAuth::Required;
            }
        }
        if let Some(auth) = self.tls_client_auth {
            tls.client_auth = auth;
        }
        if let Some(secs) = self.tls_handshake_timeout_secs {
            tls.handshake_timeout_secs = secs;
        }
        if let Some(max) = self.tls_max_handshakes {
            tls.max_handshakes = max;
        }
        if let Some(admin) = self.admin_tls {
            tls.admin = admin;
        }
    }
}

impl Args {
    fn into_config(self) -> Result<Config, shoal_server::config::ConfigError> {
        let mut config = match &self.config {
            Some(path) => Config::from_file(path)?,
            None => Config::default(),
        };
        if let Some(listen) = self.listen {
            config.listen = listen;
        }
        if let Some(max_value_bytes) = self.max_value_bytes {
            config.engine.max_value_bytes = max_value_bytes;
        }
        if let Some(max_memory) = self.max_memory {
            config.memory.max_memory = max_memory;
        }
        if let Some(max_keys) = self.max_keys {
            config.memory.max_keys = max_keys;
        }
        if let Some(policy) = self.eviction_policy {
            config.memory.eviction_policy = policy;
        }
        if let Some(allowed) = self.transparent_huge_pages {
            config.memory.transparent_huge_pages = allowed;
        }
        if let Some(path) = self.token_file {
            config.auth.token_file = Some(path);
        }
        if let Some(format) = self.log_format {
            config.log.format = format;
        }
        if let Some(AdminListen(listen)) = self.admin_listen {
            config.admin.listen = listen;
        }
        if let Some(endpoint) = self.otlp_endpoint {
            config.telemetry.otlp_endpoint = endpoint;
        }
        if let Some(name) = self.otel_service_name {
            config.telemetry.service_name = name;
        }
        if let Some(ratio) = self.trace_sampling_ratio {
            config.telemetry.sampling_ratio = ratio;
        }
        self.tls.apply(&mut config.tls);
        self.persistence.apply(&mut config.persistence);
        self.cluster.apply(&mut config.cluster)?;
        config.validate()?;
        Ok(config)
    }
}

/// Completes on SIGINT or SIGTERM.
async fn shutdown_signal() {
    let interrupt = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut terminate = match tokio::signal::unix::signal(
            tokio::signal::unix::SignalKind::terminate(),
        ) {
            Ok(signal) => signal,
            Err(error) => {
                tracing::warn!(%error, "cannot listen for SIGTERM; only SIGINT stops the server");
                let _ = interrupt.await;
                return;
            }
        };
        tokio::select! {
            _ = interrupt => {},
            _ = terminate.recv() => {},
        }
    }
    #[cfg(not(unix))]
    let _ = interrupt.await;
}

/// Makes a token and prints its secret and stanza.
fn make_token(args: TokenArgs) -> ExitCode {
    let token = match shoal_server::auth::generate_token() {
        Ok(token) => token,
        Err(error) => {
            eprintln!("error: cannot read the system's random number generator: {error}");
            return ExitCode::FAILURE;
        }
    };
    match shoal_server::auth::token_stanza(
        &args.id,
        &token.digest,
        &args.grants,
        args.expires.as_deref(),
    ) {
        Ok(stanza) => {
            let text = format!(
                "{}\n\n\
                 # The line above is the secret: give it to the client now, it is not kept.\n\
                 # Add this to the token file (the server reloads it on change or SIGHUP):\n\
                 {stanza}",
                token.secret
            );
            match write_stdout(&text) {
                Ok(()) => ExitCode::SUCCESS,
                Err(error) => {
                    // The secret exists nowhere else: say it was not delivered.
                    eprintln!("error: cannot write the token: {error}");
                    ExitCode::FAILURE
                }
            }
        }
        Err(error) => {
            eprintln!("error: {error}");
            ExitCode::from(2)
        }
    }
}

/// Writes `text` to standard output at once. An error (such as a reader
/// that closed the pipe early) is returned rather than a panic, which is
/// what `println!` does.
fn write_stdout(text: &str) -> std::io::Result<()> {
    use std::io::Write as _;
    let mut out = std::io::stdout().lock();
    out.write_all(text.as_bytes())?;
    out.flush()
}

/// Reloads the TLS certificates on every SIGHUP, for ever.
#[cfg(unix)]
async fn reload_on_hangup() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut hangups = match signal(SignalKind::hangup()) {
        Ok(hangups) => hangups,
        Err(error) => {
            tracing::warn!(%error, "cannot listen for SIGHUP; certificates reload only when their files change");
            return;
        }
    };
    while hangups.recv().await.is_some() {
        tracing::info!("SIGHUP: reloading TLS certificates");
        shoal_server::tls::reload_certificates();
    }
}

/// Writes development certificates and says how to use them.
fn dev_cert(args: &DevCertArgs) -> ExitCode {
    let files = match shoal_server::tls::dev_cert::write_with_names(&args.out, &args.names) {
        Ok(files) => files,
        Err(error) => {
            eprintln!("error: {error}");
            return ExitCode::FAILURE;
        }
    };
    use std::fmt::Write as _;
    let dir = args.out.display();
    let mut text = String::new();
    let _ = writeln!(
        text,
        "wrote a development CA and certificates to {dir} (not for production):"
    );
    let _ = writeln!(
        text,
        "  {}  CA certificate: clients trust it",
        files.ca.display()
    );
    let mut names = shoal_server::tls::dev_cert::DEV_SERVER_NAMES
        .map(String::from)
        .to_vec();
    names.extend(args.names.iter().cloned());
    let _ = writeln!(
        text,
        "  {}, {}  server certificate for {} (key mode 0600)",
        files.server_cert.display(),
        files.server_key.display(),
        names.join(", ")
    );
    let _ = writeln!(
        text,
        "  {}, {}  client certificate {} / {} (key mode 0600)",
        files.client_cert.display(),
        files.client_key.display(),
        shoal_server::tls::dev_cert::DEV_CLIENT_URI,
        shoal_server::tls::dev_cert::DEV_CLIENT_DNS
    );
    let _ = writeln!(text);
    let _ = writeln!(text, "TLS:");
    let _ = writeln!(
        text,
        "  shoal-server --tls-cert {dir}/server.pem --tls-key {dir}/server-key.pem"
    );
    let _ = writeln!(
        text,
        "  shoal --addr https://localhost:50051 --tls-ca {dir}/ca.pem get greeting"
    );
    let _ = writeln!(text, "  grpcurl -cacert {dir}/ca.pem localhost:50051 list");
    let _ = writeln!(text, "mTLS (client certificates required):");
    let _ = writeln!(
        text,
        "  shoal-server --tls-cert {dir}/server.pem --tls-key {dir}/server-key.pem --tls-client-ca {dir}/ca.pem"
    );
    let _ = writeln!(
        text,
        "  shoal --addr https://localhost:50051 --tls-ca {dir}/ca.pem --tls-cert {dir}/client.pem --tls-key {dir}/client-key.pem get greeting"
    );
    // The files are written; a reader that stopped early lost only advice.
    if let Err(error) = write_stdout(&text)
        && error.kind() != std::io::ErrorKind::BrokenPipe
    {
        eprintln!("error: cannot write to standard output: {error}");
    }
    ExitCode::SUCCESS
}

/// Plans a repair of a data directory, prints it, and carries it out with
/// `--yes`.
fn repair(args: &RepairArgs) -> ExitCode {
    use shoal_server::persistence::{OsFileSystem, apply_repair, lock_data_dir, plan_repair};
    // Held until the repair is done: a server on the directory would change
    // the files under it, and one started meanwhile must wait.
    let _lock = if args.data_dir.is_dir() {
        match lock_data_dir(&args.data_dir) {
            Ok(lock) => Some(lock),
            Err(error) => {
                eprintln!("error: {error}");
                return ExitCode::from(2);
            }
        }
    } else {
        None
    };
    let plan = match plan_repair(&OsFileSystem, &args.data_dir) {
        Ok(plan) => plan,
        Err(error) => {
            eprintln!("error: {error}");
            return ExitCode::from(2);
        }
    };
    print!("{plan}");
    if !plan.needs_repair() {
        println!("nothing to repair in {}", args.data_dir.display());
        return ExitCode::SUCCESS;
    }
    if !args.yes {
        println!("dry run: nothing changed; run again with --yes to repair");
        return ExitCode::FAILURE;
    }
    match apply_repair(&OsFileSystem, &plan) {
        Ok(()) => {
            println!(
                "repaired {}; the damaged originals are kept as *.damaged",
                args.data_dir.display()
            );
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("error: {error}");
            ExitCode::from(2)
        }
    }
}

/// Runs one health check and says what it found.
async fn healthcheck(args: HealthcheckArgs) -> ExitCode {
    let tls = match shoal_server::healthcheck::ProbeTls::from_files(
        args.tls_ca.as_deref(),
        args.tls_cert.as_deref().zip(args.tls_key.as_deref()),
        args.tls_domain.as_deref(),
    ) {
        Ok(tls) => tls,
        Err(error) => {
            eprintln!("unhealthy: {error}");
            return ExitCode::FAILURE;
        }
    };
    let probe = shoal_server::healthcheck::probe_with(
        &args.addr,
        Duration::from_millis(args.timeout_ms),
        tls.as_ref(),
    )
    .await;
    if probe.is_serving() {
        println!("{probe}");
        ExitCode::SUCCESS
    } else {
        eprintln!("unhealthy: {probe}");
        ExitCode::FAILURE
    }
}

fn main() -> ExitCode {
    shoal_server::process::allocator::purge_at_once();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .on_thread_park(shoal_server::process::allocator::collect_when_idle)
        .build();
    match runtime {
        Ok(runtime) => runtime.block_on(serve()),
        Err(error) => {
            eprintln!("error: cannot start the runtime: {error}");
            ExitCode::FAILURE
        }
    }
}

async fn serve() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Some(Command::Healthcheck(args)) => return healthcheck(args).await,
        Some(Command::Token(args)) => return make_token(args),
        Some(Command::DevCert(args)) => return dev_cert(&args),
        Some(Command::Repair(args)) => return repair(&args),
        None => {}
    }
    let config = match cli.serve.into_config() {
        Ok(config) => config,
        Err(error) => {
            eprintln!("error: {error}");
            return ExitCode::from(2);
        }
    };
    if !cli.insecure
        && let Some(exposure) = config.unprotected_exposure()
    {
        eprintln!(
            "error: refusing to serve {exposure}; set auth.token_file (--token-file) or \
             tls.client_auth = \"required\", or pass --insecure (SHOAL_INSECURE=true) to serve it \
             open"
        );
        return ExitCode::from(2);
    }
    let telemetry = match shoal_server::observe::telemetry::init(&config) {
        Ok(telemetry) => telemetry,
        Err(error) => {
            eprintln!("error: {error}");
            return ExitCode::from(2);
        }
    };
    if !config.memory.transparent_huge_pages
        && let Err(error) = shoal_server::process::huge_pages::disable()
    {
        tracing::warn!(%error, "could not turn transparent huge pages off; RSS may run above the memory figure");
    }
    tokio::spawn(shoal_server::process::allocator::wake_workers());
    #[cfg(unix)]
    tokio::spawn(reload_on_hangup());
    let result = shoal_server::run(config, shutdown_signal()).await;
    // Shutting the exporter down blocks until the last spans are sent.
    let _ = tokio::task::spawn_blocking(move || telemetry.shutdown()).await;
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!(%error, "shoal-server failed");
            eprintln!("error: {error}");
            ExitCode::FAILURE
        }
    }
}
