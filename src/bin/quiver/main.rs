//! The `quiver` command line: `serve` and `sql`.

use std::net::SocketAddr;
use std::process::ExitCode;

use clap::{Args, CommandFactory, FromArgMatches, Parser, Subcommand};
use quiver::server::{self, ServerOptions, DEFAULT_MAX_REQUEST_BYTES};
use quiver::storage::{
    parse_compression, StoreConfig, DEFAULT_ROW_GROUP_ROWS, DEFAULT_SEGMENT_MAX_ROWS,
};
use quiver::storage::{WalOptions, DEFAULT_FLUSH_BYTES, DEFAULT_FLUSH_ROWS};
use quiver::{Engine, EngineOptions, Store};

mod commands;
mod files;
mod settings;

#[derive(Parser)]
#[command(
    name = "quiver",
    version,
    about = "Vectors and scalars on object storage, queried with SQL over Arrow Flight SQL"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
    /// TOML file of settings: keys are the flags that have a QUIVER_* variable (cache-bytes = 1073741824, listen = "0.0.0.0:50051"); the environment overrides it, flags override both.
    #[arg(long, global = true, env = "QUIVER_CONFIG")]
    config: Option<std::path::PathBuf>,
    /// Log lines as text or JSON (one object per line), on stderr; RUST_LOG filters them (default info).
    #[arg(
        long,
        global = true,
        env = "QUIVER_LOG_FORMAT",
        value_enum,
        default_value = "text"
    )]
    log_format: LogFormat,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Subcommand)]
enum Command {
    /// Serve Arrow Flight SQL (grpc://127.0.0.1:50051 by default).
    Serve(Box<ServeArgs>),
    /// Run one SQL statement against a store directly and print the result.
    Sql(SqlArgs),
    /// Load Parquet, CSV, Arrow IPC or newline-delimited JSON files into a collection.
    Ingest(IngestArgs),
    /// Show manifest versions, segments, rows and deletes of a store.
    Inspect(InspectArgs),
    /// Merge small segments and drop deleted rows.
    Compact(CompactArgs),
    /// Remove files and manifest versions older than the retention window that no kept version uses.
    Gc(GcArgs),
    /// Vector indexes: build the missing index files of a collection now.
    #[command(subcommand)]
    Index(IndexCommand),
}

#[derive(clap::Subcommand)]
enum IndexCommand {
    /// Build every missing index file of a collection (of one index if named), with a progress bar; returns when done.
    Build(IndexBuildArgs),
}

#[derive(Args)]
struct IndexBuildArgs {
    #[command(flatten)]
    store: StoreArgs,
    /// The collection.
    collection: String,
    /// Only this index.
    index: Option<String>,
}

#[derive(Args)]
struct CompactArgs {
    #[command(flatten)]
    store: StoreArgs,
    /// Only this collection.
    collection: Option<String>,
}

#[derive(Args)]
struct GcArgs {
    #[command(flatten)]
    store: StoreArgs,
    /// Keep versions (and their files) that were current within this window, e.g. 30m, 1h, 2d.
    #[arg(long, env = "QUIVER_GC_RETENTION", default_value = "1h", value_parser = humantime::parse_duration)]
    retention: std::time::Duration,
}

#[derive(Args)]
struct InspectArgs {
    #[command(flatten)]
    store: StoreArgs,
    /// Only this collection.
    collection: Option<String>,
    /// Print one JSON object instead of text.
    #[arg(long)]
    json: bool,
    /// Check that every file the newest versions reference exists with its
    /// recorded size and checksum; list the problems and exit 1 if any.
    #[arg(long)]
    verify: bool,
}

#[derive(Args)]
struct StoreArgs {
    /// Local directory holding the store (used when --store is not given).
    #[arg(long, env = "QUIVER_DATA_DIR", default_value = "./quiver-data")]
    data_dir: String,
    /// Store URL: file:///path, s3://bucket/prefix (AWS_* variables), gs://bucket/prefix, az://container/prefix.
    #[arg(long, env = "QUIVER_STORE")]
    store: Option<String>,
    /// Parquet compression of new segments: zstd, lz4, snappy or none.
    #[arg(long, env = "QUIVER_COMPRESSION", default_value = "zstd")]
    compression: String,
    /// Rows per Parquet row group.
    #[arg(long, env = "QUIVER_ROW_GROUP_ROWS", default_value_t = DEFAULT_ROW_GROUP_ROWS)]
    row_group_rows: usize,
    /// Rows per sealed segment.
    #[arg(long, env = "QUIVER_SEGMENT_MAX_ROWS", default_value_t = DEFAULT_SEGMENT_MAX_ROWS)]
    segment_max_rows: usize,
    /// Bytes of segment-file blocks cached in memory in front of the store (0: off).
    #[arg(long, env = "QUIVER_CACHE_BYTES", default_value_t = quiver::storage::DEFAULT_CACHE_BYTES)]
    cache_bytes: u64,
    /// Size of one cached block.
    #[arg(long, env = "QUIVER_CACHE_BLOCK_BYTES", default_value_t = quiver::storage::DEFAULT_BLOCK_BYTES)]
    cache_block_bytes: u64,
    /// Bytes of decoded columns (per row group: vectors, and the key and scalar columns top-k queries read) kept in memory, so warm searches skip decoding (0: off).
    #[arg(long, env = "QUIVER_VECTOR_CACHE_BYTES", default_value_t = quiver::storage::DEFAULT_DECODED_CACHE_BYTES)]
    vector_cache_bytes: u64,
    /// Keep cached vector chunks of 2 MiB or more in memory advised for huge pages (Linux transparent huge pages), so selective searches that read scattered vectors take fewer TLB misses (false: ordinary pages).
    #[arg(long, env = "QUIVER_HUGE_PAGES", default_value_t = true, action = clap::ArgAction::Set)]
    huge_pages: bool,
    /// Retries of an object-store operation after a transient failure (network error, 5xx, a read that broke off), with exponential backoff and full jitter (0: none).
    #[arg(long, env = "QUIVER_STORE_RETRIES", default_value_t = 5)]
    store_retries: u32,
    /// No retry starts later than this after an operation's first attempt, e.g. 30s.
    #[arg(long, env = "QUIVER_STORE_RETRY_TIMEOUT", default_value = "30s", value_parser = humantime::parse_duration)]
    store_retry_timeout: std::time::Duration,
    /// Files of at least this many bytes are written with a multipart upload.
    #[arg(long, env = "QUIVER_MULTIPART_THRESHOLD_BYTES", default_value_t = quiver::storage::DEFAULT_MULTIPART_THRESHOLD_BYTES)]
    multipart_threshold_bytes: u64,
    /// Bytes per part of a multipart upload (at least 5 MiB, as S3 requires).
    #[arg(long, env = "QUIVER_MULTIPART_PART_BYTES", default_value_t = quiver::storage::DEFAULT_MULTIPART_PART_BYTES)]
    multipart_part_bytes: u64,
    /// Directory of the write-ahead log (a local disk; default: <data-dir>/_wal, also with --store).
    #[arg(long, env = "QUIVER_WAL_DIR")]
    wal_dir: Option<std::path::PathBuf>,
    /// Largest dimension of a new vector column (a FLOAT[d] row takes 4 d bytes).
    #[arg(long, env = "QUIVER_MAX_DIMENSION", default_value_t = quiver::storage::DEFAULT_MAX_DIMENSION)]
    max_dimension: usize,
    /// Segments with fewer rows get no vector-index file (they are searched exactly).
    #[arg(long, env = "QUIVER_INDEX_MIN_ROWS", default_value_t = quiver::storage::DEFAULT_INDEX_MIN_ROWS)]
    index_min_rows: u64,
    /// Threads one index build uses (default: every core).
    #[arg(long, env = "QUIVER_INDEX_BUILD_THREADS")]
    index_build_threads: Option<usize>,
    /// Bytes of loaded vector-index files kept in memory (whole files, least recently used evicted).
    #[arg(long, env = "QUIVER_INDEX_CACHE_BYTES", default_value_t = quiver::storage::DEFAULT_INDEX_CACHE_BYTES)]
    index_cache_bytes: u64,
}

#[derive(Args)]
struct FlushArgs {
    /// Flush the growing segment into a sealed segment at this many rows.
    #[arg(long, env = "QUIVER_FLUSH_ROWS", default_value_t = DEFAULT_FLUSH_ROWS)]
    flush_rows: usize,
    /// ... or at this many bytes of in-memory data; a single write larger than this skips the log and is sealed directly.
    #[arg(long, env = "QUIVER_FLUSH_BYTES", default_value_t = DEFAULT_FLUSH_BYTES)]
    flush_bytes: usize,
    /// ... or this long after its first write, e.g. 60s, 5m.
    #[arg(long, env = "QUIVER_FLUSH_AGE", default_value = "60s", value_parser = humantime::parse_duration)]
    flush_age: std::time::Duration,
}

impl StoreArgs {
    fn wal_dir(&self) -> std::path::PathBuf {
        self.wal_dir.clone().unwrap_or_else(|| {
            std::path::Path::new(&self.data_dir).join(quiver::storage::wal::WAL_DIR_NAME)
        })
    }

    /// Opens the store with its write-ahead log (replayed first), for a
    /// process that writes: `serve` and `sql`.
    async fn open_logged(&self, flush: &FlushArgs) -> quiver::Result<std::sync::Arc<Store>> {
        if flush.flush_rows == 0 || flush.flush_bytes == 0 {
            return Err(quiver::Error::Config(
                "--flush-rows and --flush-bytes must be positive".into(),
            ));
        }
        let opts = WalOptions {
            flush_rows: flush.flush_rows,
            flush_bytes: flush.flush_bytes,
            flush_age: flush.flush_age,
            ..WalOptions::new(self.wal_dir())
        };
        Store::open_with_wal(&self.url(), self.config()?, opts).await
    }

    fn url(&self) -> String {
        self.store.clone().unwrap_or_else(|| self.data_dir.clone())
    }

    /// Opens the store without taking its write-ahead log (for tools that
    /// run beside a server: inspect, compact, gc).
    async fn open(&self) -> quiver::Result<std::sync::Arc<Store>> {
        Store::open(&self.url(), self.config()?).await
    }

    fn config(&self) -> quiver::Result<StoreConfig> {
        if self.row_group_rows == 0 || self.segment_max_rows == 0 {
            return Err(quiver::Error::Config(
                "--row-group-rows and --segment-max-rows must be positive".into(),
            ));
        }
        if self.max_dimension == 0 {
            return Err(quiver::Error::Config(
                "--max-dimension must be positive".into(),
            ));
        }
        if self.multipart_part_bytes < quiver::storage::MIN_MULTIPART_PART_BYTES {
            return Err(quiver::Error::Config(format!(
                "--multipart-part-bytes must be at least {} (5 MiB, the smallest part S3 accepts), not {}",
                quiver::storage::MIN_MULTIPART_PART_BYTES,
                self.multipart_part_bytes
            )));
        }
        Ok(StoreConfig {
            retry: quiver::storage::RetryPolicy {
                max_retries: self.store_retries,
                timeout: self.store_retry_timeout,
                ..Default::default()
            },
            multipart_threshold_bytes: self.multipart_threshold_bytes,
            multipart_part_bytes: self.multipart_part_bytes,
            row_group_rows: self.row_group_rows,
            segment_max_rows: self.segment_max_rows,
            compression: parse_compression(&self.compression)?,
            cache_bytes: self.cache_bytes,
            cache_block_bytes: self.cache_block_bytes,
            decoded_cache_bytes: self.vector_cache_bytes,
            huge_pages: self.huge_pages,
            max_dimension: self.max_dimension,
            index_min_rows: self.index_min_rows,
            index_build_threads: self
                .index_build_threads
                .unwrap_or(StoreConfig::default().index_build_threads)
                .max(1),
            index_cache_bytes: self.index_cache_bytes,
            ..StoreConfig::default()
        })
    }
}

/// How queries are planned.
#[derive(Args)]
struct QueryArgs {
    /// Run `ORDER BY <distance>(vector, <constant>) LIMIT k` as the fused
    /// VectorTopKExec (false: DataFusion's own sort, for comparison).
    #[arg(long, env = "QUIVER_FUSED_TOPK", default_value_t = true, action = clap::ArgAction::Set)]
    fused_topk: bool,
    /// Memory all running queries may hold for sorts, joins and aggregations, in bytes (0: unbounded); beyond it sorts spill to disk and other operators fail with "Resources exhausted".
    #[arg(long, env = "QUIVER_QUERY_MEMORY_BYTES", default_value_t = quiver::query::DEFAULT_QUERY_MEMORY_BYTES)]
    query_memory_bytes: usize,
    /// Optimized query plans kept for reuse, keyed by the SQL text with query vectors taken out (0: off): a search run again with another vector skips parsing, SQL planning, logical optimization and (for a fused top-k) physical planning.
    #[arg(long, env = "QUIVER_PLAN_CACHE_ENTRIES", default_value_t = quiver::query::DEFAULT_PLAN_CACHE_ENTRIES)]
    plan_cache_entries: u64,
    /// Joins and unnests give their thread back every 2 ms, so a cancelled query stops at once and other queries are not held up behind it (false: they run until their next input, for comparison).
    #[arg(long, env = "QUIVER_TIME_SLICES", default_value_t = true, action = clap::ArgAction::Set)]
    time_slices: bool,
    /// Whether `ORDER BY <distance> LIMIT k` searches through a vector index whose column and metric match: auto (when one does), exact (never), ann (always; an error when none matches).
    #[arg(long, env = "QUIVER_VECTOR_SEARCH", default_value = "auto", value_parser = parse_vector_search)]
    vector_search: quiver::query::VectorSearch,
    /// IVF lists a search probes at least (0: a thirty-second of the lists, at least 8); more lists, higher recall, slower.
    #[arg(long, env = "QUIVER_IVF_PROBES", default_value_t = 0)]
    ivf_probes: usize,
    /// Candidate-list size of an HNSW search (0: 64); larger, higher recall, slower.
    #[arg(long, env = "QUIVER_HNSW_EF_SEARCH", default_value_t = 0)]
    hnsw_ef_search: usize,
    /// Candidates per result row re-ranked exactly from the full vectors (0: 4 for ivf_sq8, 1 for ivf and hnsw).
    #[arg(long, env = "QUIVER_REFINE_FACTOR", default_value_t = 0)]
    refine_factor: usize,
}

fn parse_vector_search(s: &str) -> Result<quiver::query::VectorSearch, String> {
    quiver::query::VectorSearch::parse(s).ok_or_else(|| format!("'{s}' is not auto, exact or ann"))
}

impl QueryArgs {
    fn engine(&self, store: std::sync::Arc<Store>) -> quiver::Result<Engine> {
        Engine::with_options(
            store,
            EngineOptions {
                fused_topk: self.fused_topk,
                query_memory_bytes: self.query_memory_bytes,
                plan_cache_entries: self.plan_cache_entries,
                time_slices: self.time_slices,
                vector_search: quiver::query::SearchSettings {
                    mode: self.vector_search,
                    ivf_probes: self.ivf_probes,
                    hnsw_ef_search: self.hnsw_ef_search,
                    refine_factor: self.refine_factor,
                },
                ..Default::default()
            },
        )
    }
}

#[derive(Args)]
struct ServeArgs {
    #[command(flatten)]
    store: StoreArgs,
    #[command(flatten)]
    flush: FlushArgs,
    #[command(flatten)]
    query: QueryArgs,
    /// Address to listen on (port 0 picks a free port).
    #[arg(long, env = "QUIVER_LISTEN", default_value = "127.0.0.1:50051")]
    listen: SocketAddr,
    /// Largest request message in bytes (1 GiB); bulk ingest sends one record batch per message.
    #[arg(long, env = "QUIVER_MAX_REQUEST_BYTES", default_value_t = DEFAULT_MAX_REQUEST_BYTES)]
    max_request_bytes: usize,
    /// How often to compact collections in the background (0s: never), e.g. 10m.
    #[arg(long, env = "QUIVER_COMPACT_INTERVAL", default_value = "10m", value_parser = humantime::parse_duration)]
    compact_interval: std::time::Duration,
    /// How often to collect garbage in the background (0s: never).
    #[arg(long, env = "QUIVER_GC_INTERVAL", default_value = "1h", value_parser = humantime::parse_duration)]
    gc_interval: std::time::Duration,
    /// Retention window of background garbage collection.
    #[arg(long, env = "QUIVER_GC_RETENTION", default_value = "1h", value_parser = humantime::parse_duration)]
    gc_retention: std::time::Duration,
    /// Stop a query that runs longer than this, e.g. 30s, 15m (0s: no limit; a client's grpc-timeout applies too).
    #[arg(long, env = "QUIVER_QUERY_TIMEOUT", default_value = "15m", value_parser = humantime::parse_duration)]
    query_timeout: std::time::Duration,
    /// Largest Flight data message of a result, in bytes (the ADBC driver refuses messages over 16 MiB).
    #[arg(long, env = "QUIVER_MAX_RESPONSE_MESSAGE_BYTES", default_value_t = quiver::flight::MAX_FLIGHT_DATA_BYTES)]
    max_response_message_bytes: usize,
    /// Print the effective settings (file, environment, flags, defaults) as TOML with where each came from, passwords redacted, and exit.
    #[arg(long)]
    print_config: bool,
    /// Log queries that take at least this long (warn, with their SQL and a plan summary), e.g. 500ms (0s: off).
    #[arg(long, env = "QUIVER_SLOW_QUERY", default_value = "1s", value_parser = humantime::parse_duration)]
    slow_query: std::time::Duration,
    /// Serve Prometheus metrics at http://ADDR/metrics (and /health, /ready), e.g. 127.0.0.1:9090 (port 0 picks one).
    #[arg(long, env = "QUIVER_METRICS_LISTEN")]
    metrics_listen: Option<SocketAddr>,
    /// Threads that run queries apart from the threads that serve requests, so a heavy scan does not hold up the reply to a light query (default: one per core; 0: queries run on the serving threads).
    #[arg(long, env = "QUIVER_QUERY_THREADS")]
    query_threads: Option<usize>,
    #[command(flatten)]
    security: SecurityArgs,
}

/// Who may connect, and TLS.
#[derive(Args)]
struct SecurityArgs {
    /// User name clients log in with (Flight handshake, Basic auth; ADBC: db_kwargs username/password).
    #[arg(long, env = "QUIVER_USERNAME", requires = "password")]
    username: Option<String>,
    /// Password of --username (prefer the environment variable: arguments show in `ps`).
    #[arg(
        long,
        env = "QUIVER_PASSWORD",
        hide_env_values = true,
        requires = "username"
    )]
    password: Option<String>,
    /// File of users, one `name:password` per line (`#` starts a comment); with or instead of --username.
    #[arg(long, env = "QUIVER_USERS_FILE")]
    users_file: Option<std::path::PathBuf>,
    /// How long a bearer token from the handshake stays valid, e.g. 30m, 12h.
    #[arg(long, env = "QUIVER_TOKEN_TTL", default_value = "1h", value_parser = humantime::parse_duration)]
    token_ttl: std::time::Duration,
    /// Serve without credentials on a non-loopback address (without users, quiver only listens on loopback).
    #[arg(long, env = "QUIVER_ALLOW_UNAUTHENTICATED")]
    allow_unauthenticated: bool,
    /// TLS certificate chain (PEM); with --tls-key, the server speaks grpc+tls.
    #[arg(long, env = "QUIVER_TLS_CERT", requires = "tls_key")]
    tls_cert: Option<std::path::PathBuf>,
    /// TLS private key (PEM).
    #[arg(long, env = "QUIVER_TLS_KEY", requires = "tls_cert")]
    tls_key: Option<std::path::PathBuf>,
    /// CA certificate (PEM) that client certificates must be signed by (mutual TLS).
    #[arg(long, env = "QUIVER_TLS_CLIENT_CA", requires = "tls_cert")]
    tls_client_ca: Option<std::path::PathBuf>,
}

impl SecurityArgs {
    fn users(&self) -> quiver::Result<Vec<(String, String)>> {
        let mut users = Vec::new();
        if let (Some(u), Some(p)) = (&self.username, &self.password) {
            if u.is_empty() || u.contains(':') {
                return Err(quiver::Error::Config(
                    "--username must be non-empty and must not contain ':'".into(),
                ));
            }
            users.push((u.clone(), p.clone()));
        }
        if let Some(path) = &self.users_file {
            let text = std::fs::read_to_string(path).map_err(|e| {
                quiver::Error::Config(format!("cannot read --users-file {}: {e}", path.display()))
            })?;
            for (n, line) in text.lines().enumerate() {
                let line = line.trim();
                if line.is_empty() || line.starts_with('#') {
                    continue;
                }
                match line.split_once(':') {
                    Some((u, p)) if !u.is_empty() => users.push((u.to_string(), p.to_string())),
                    _ => {
                        return Err(quiver::Error::Config(format!(
                            "{} line {}: expected name:password",
                            path.display(),
                            n + 1
                        )))
                    }
                }
            }
            if users.is_empty() {
                return Err(quiver::Error::Config(format!(
                    "--users-file {} lists no users",
                    path.display()
                )));
            }
        }
        Ok(users)
    }

    fn tls(&self) -> quiver::Result<Option<server::TlsOptions>> {
        match (&self.tls_cert, &self.tls_key) {
            (Some(cert), Some(key)) => Ok(Some(server::TlsOptions::from_files(
                cert,
                key,
                self.tls_client_ca.as_deref(),
            )?)),
            _ => Ok(None),
        }
    }
}

#[derive(Args)]
struct SqlArgs {
    #[command(flatten)]
    store: StoreArgs,
    #[command(flatten)]
    flush: FlushArgs,
    #[command(flatten)]
    query: QueryArgs,
    /// The SQL statement.
    sql: String,
    /// How to print the result.
    #[arg(long, value_enum, default_value = "table")]
    format: files::OutputFormat,
    /// Write the result to this file instead of standard output.
    #[arg(long)]
    output: Option<std::path::PathBuf>,
}

#[derive(Args)]
struct IngestArgs {
    #[command(flatten)]
    store: StoreArgs,
    #[command(flatten)]
    flush: FlushArgs,
    /// The collection to write.
    #[arg(long)]
    collection: String,
    /// Primary key column of a new collection (default: `id` if there is one, else a generated hidden key `_id`: rows append).
    #[arg(long)]
    primary_key: Option<String>,
    /// append: upsert into the collection, creating it if missing; create: the collection must not exist; replace: replace what it holds.
    #[arg(long, value_enum, default_value = "append")]
    mode: IngestModeArg,
    /// Files to load, each committed as one write: .parquet, .csv (with a header), .arrow/.arrows/.ipc, .json/.ndjson/.jsonl (one object per line; arrays of numbers become vectors).
    #[arg(required = true)]
    files: Vec<std::path::PathBuf>,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum IngestModeArg {
    Append,
    Create,
    Replace,
}

fn main() -> ExitCode {
    let args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    let cmd = Cli::command();
    // The config file becomes environment variables before clap reads them
    // (and before any thread starts).
    if let Err(e) = settings::load(&cmd, &args) {
        eprintln!("error: {e}");
        return ExitCode::FAILURE;
    }
    // clap reads a variable when its argument is built: build again.
    let cmd = Cli::command();
    let matches = cmd.clone().get_matches_from(&args);
    let cli = match Cli::from_arg_matches(&matches) {
        Ok(cli) => cli,
        Err(e) => e.exit(),
    };
    if let (Some(("serve", sub)), Some(serve)) =
        (matches.subcommand(), cmd.find_subcommand("serve"))
    {
        if sub.get_flag("print_config") {
            print!("{}", settings::render(serve, sub));
            return ExitCode::SUCCESS;
        }
    }
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let logs = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(filter);
    match cli.log_format {
        LogFormat::Text => logs.init(),
        LogFormat::Json => logs
            .json()
            .with_current_span(true)
            .with_span_list(true)
            .init(),
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

/// The runtime of `--query-threads`, shut down without waiting when
/// dropped (a runtime cannot be dropped in async code otherwise, and an
/// error on the way out of `serve` drops it there).
struct QueryRuntime(Option<tokio::runtime::Runtime>);

impl Drop for QueryRuntime {
    fn drop(&mut self) {
        if let Some(rt) = self.0.take() {
            rt.shutdown_background();
        }
    }
}

async fn run(cli: Cli) -> quiver::Result<()> {
    match cli.command {
        Command::Serve(args) => {
            let users = args.security.users()?;
            if users.is_empty()
                && !args.listen.ip().is_loopback()
                && !args.security.allow_unauthenticated
            {
                return Err(quiver::Error::Config(format!(
                    "refusing to serve {} without credentials: set --username and --password \
                     (QUIVER_USERNAME, QUIVER_PASSWORD) or --users-file, listen on 127.0.0.1, \
                     or pass --allow-unauthenticated",
                    args.listen
                )));
            }
            let tls = args.security.tls()?;
            if args.max_response_message_bytes < 1024 {
                return Err(quiver::Error::Config(
                    "--max-response-message-bytes must be at least 1024".into(),
                ));
            }
            let store = args.store.open_logged(&args.flush).await?;
            let mut engine = args.query.engine(store.clone())?;
            let listener = server::bind(args.listen).await?;
            let addr = listener.local_addr()?;
            tracing::info!(
                store = store.url(),
                collections = store.collection_names().len(),
                "store opened"
            );
            let query_threads = args
                .query_threads
                .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
            let query_runtime = if query_threads == 0 {
                None
            } else {
                let rt = tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(query_threads)
                    .thread_name("quiver-query")
                    .enable_all()
                    .build()
                    .map_err(|e| {
                        quiver::Error::Config(format!(
                            "cannot start {query_threads} query threads (--query-threads): {e}"
                        ))
                    })?;
                engine = engine.with_query_runtime(rt.handle().clone());
                Some(QueryRuntime(Some(rt)))
            };
            let metrics_stop = tokio_util::sync::CancellationToken::new();
            if let Some(addr) = args.metrics_listen {
                let handle = quiver::server::exporter::install()?;
                let listener = quiver::server::exporter::bind(addr).await?;
                println!(
                    "quiver serving metrics on http://{}/metrics",
                    listener.local_addr()?
                );
                let stop = metrics_stop.clone();
                let store = store.clone();
                tokio::spawn(async move {
                    let stopped = async move { stop.cancelled().await };
                    if let Err(e) =
                        quiver::server::exporter::serve(listener, handle, store, stopped).await
                    {
                        tracing::error!(error = %e, "metrics endpoint stopped");
                    }
                });
            }
            // One line on stdout tells scripts (and tests using port 0) where to connect.
            let scheme = if tls.is_some() { "grpc+tls" } else { "grpc" };
            println!("quiver serving Flight SQL on {scheme}://{addr}");
            use std::io::Write;
            let _ = std::io::stdout().flush();
            let options = ServerOptions {
                max_request_bytes: args.max_request_bytes,
                compact_interval: args.compact_interval,
                gc_interval: args.gc_interval,
                gc_retention: args.gc_retention,
                auth: (!users.is_empty()).then(|| {
                    std::sync::Arc::new(quiver::flight::auth::Auth::new(
                        users,
                        args.security.token_ttl,
                    ))
                }),
                tls,
                limits: quiver::flight::FlightLimits {
                    query_timeout: args.query_timeout,
                    max_message_bytes: args.max_response_message_bytes,
                    slow_query: args.slow_query,
                },
            };
            let served = server::serve(engine, listener, options, server::shutdown_signal()).await;
            metrics_stop.cancel();
            // The server has finished its requests: no query is left to
            // wait for.
            drop(query_runtime);
            served?;
            // Seal what is still in the growing segments; the log would
            // replay it anyway, this just leaves a tidy store.
            store.flush_all().await?;
            tracing::info!("stopped");
            Ok(())
        }
        Command::Inspect(args) if args.verify => {
            let store = args.store.open().await?;
            let mut problems = quiver::admin::verify::verify(&store).await?;
            problems.extend(quiver::admin::verify::verify_wal(&args.store.wal_dir()));
            if args.json {
                println!("{}", serde_json::json!({ "problems": problems }));
            } else {
                for p in &problems {
                    println!("{}: {}", p.path, p.problem);
                }
                if problems.is_empty() {
                    println!("ok: every referenced file is present and matches its checksum");
                }
            }
            if problems.is_empty() {
                Ok(())
            } else {
                Err(quiver::Error::Corrupt {
                    path: store.url().to_string(),
                    reason: format!("{} problem(s) found", problems.len()),
                })
            }
        }
        Command::Inspect(args) => {
            let store = args.store.open().await?;
            let engine = Engine::new(store)?;
            let wal_dir = args.store.wal_dir();
            let report =
                quiver::admin::inspect::store(&engine, args.collection.as_deref(), Some(&wal_dir))
                    .await?;
            if args.json {
                println!("{report}");
            } else {
                print!("{}", quiver::admin::inspect::render(&report)?);
            }
            Ok(())
        }
        Command::Compact(args) => {
            let store = args.store.open().await?;
            let engine = Engine::new(store)?;
            for r in quiver::admin::compact::compact(&engine, args.collection.as_deref()).await? {
                match r.version {
                    Some(v) => println!(
                        "{}: merged {} segments ({} rows) into {} ({} live rows), dropped {} delete logs, version {v}",
                        r.collection, r.merged_segments, r.rows_before, r.written_segments, r.rows_after, r.dropped_delete_logs
                    ),
                    None => println!("{}: nothing to compact", r.collection),
                }
            }
            Ok(())
        }
        Command::Index(IndexCommand::Build(args)) => commands::build_index(args).await,
        Command::Gc(args) => {
            let store = args.store.open().await?;
            for r in quiver::admin::gc::gc(&store, args.retention).await? {
                println!(
                    "{}: removed {} files ({} bytes) and {} manifest versions, kept {} versions",
                    r.collection,
                    r.removed_files,
                    r.removed_bytes,
                    r.removed_manifests,
                    r.kept_versions
                );
            }
            Ok(())
        }
        Command::Ingest(args) => commands::ingest(args).await,
        Command::Sql(args) => {
            let store = match args.store.open_logged(&args.flush).await {
                Ok(store) => store,
                // A server holds the log: a query can still read the
                // committed data beside it; a write must go to the server.
                Err(quiver::Error::Config(msg)) if msg.contains("in use by another") => {
                    let engine = args.query.engine(args.store.open().await?)?;
                    if !engine.plan(&args.sql).await?.is_query() {
                        return Err(quiver::Error::Config(msg));
                    }
                    tracing::warn!(
                        "a running server holds the write-ahead log: showing committed data only \
                         (rows still in its growing segment are not included)"
                    );
                    let batches = engine.sql(&args.sql).await?;
                    return commands::print_result(&engine, &args, &batches).await;
                }
                Err(e) => return Err(e),
            };
            let engine = args.query.engine(store.clone())?;
            let result = engine.sql(&args.sql).await;
            store.flush_all().await?;
            commands::print_result(&engine, &args, &result?).await
        }
    }
}
