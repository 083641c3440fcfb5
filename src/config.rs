//! The binary's settings: command-line flags, environment variables and the TOML config file, merged
//! with the precedence flag > environment > file > default.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use mcp_obs_storage::search::analyzer::QUERY_TERMS_LIMIT;
use mcp_obs_storage::search::indexer::IndexerOptions;
use mcp_obs_storage::search::{SearchOptions, WRITER_BYTES_MIN};
use mcp_obs_web::WebConfig;
use serde::{Deserialize, Serialize};

pub const DEFAULT_DATA_DIR: &str = "./mcp-obs-data";
pub const DEFAULT_LISTEN: &str = "127.0.0.1:4318";

const SETTINGS_HELP: &str = "\
CONFIG FILE (TOML, --config / MCPOBS_CONFIG). Every key is optional; shown with its default.

  data = \"./mcp-obs-data\"           # same as --data
  listen = \"127.0.0.1:4318\"         # same as --listen
  log = \"info\"                      # same as --log

  [web]
  body_bytes_max = 20971520         # largest OTLP body, on the wire and after gzip (413 above)
  api_body_bytes_max = 65536        # largest JSON API body (413 above)
  spans_per_request_max = 10000     # most spans in one OTLP request (413 above)
  attributes_per_span_max = 128     # extra attributes are dropped and counted
  attribute_value_bytes_max = 8192  # longer values are truncated and marked (mcpobs.truncated)
  events_per_span_max = 128         # extra events are dropped and counted
  links_per_span_max = 128          # extra links are dropped and counted
  ingest_queue_requests_max = 256   # waiting OTLP requests before 429 + Retry-After
  ingest_queue_spans_max = 200000   # waiting spans before 429 + Retry-After
  group_commit_spans_max = 50000    # most spans stored by one commit
  retry_after_secs = 1              # Retry-After sent with 429/503
  connections_max = 1024            # open TCP connections at once
  session_ttl_secs = 604800         # dashboard/API session lifetime
  retention_days = 90               # spans older than this (or than their organization's
                                    # retention) are rejected at ingest
  future_skew_secs = 3600           # spans further in the future are rejected
  key_usage_flush_interval_ms = 5000  # how often API key usage is written
  cookie_secure = false             # mark the session cookie Secure (behind HTTPS)
  trusted_proxies = []              # reverse proxies, e.g. [\"127.0.0.1\", \"10.0.0.0/8\"], whose
                                    # X-Forwarded-For names the client for the login throttle
                                    # (ignored from any other peer)

  [storage]
  block_rows_max = 8192             # rows per compacted column block
  compaction_interval_ms = 10000    # how often small recent blocks are merged
  rollup_deltas_bytes_max = 1048576 # rollup deltas of recent appends merged into their minutes
                                    # once this many bytes are waiting (sooner than compaction)
  retention_interval_ms = 600000    # how often retention runs (organizations' retention_days)
  disk_bytes_max = 0                # span store budget in bytes, oldest days dropped first; 0: none
  search_query_bytes_max = 512      # longest search query `q` and suggestion prefix (400 above)
  search_query_terms_max = 16       # most words in one search query (400 above)
  search_suggest_limit_max = 100    # most values one /suggest request returns
  search_writer_bytes_max = 16000000  # search index writer memory per open day (>= 15000000)
  search_commit_interval_ms = 1000  # how often the search index commits (its lag, about 1-2x this)
  search_queue_spans_max = 200000   # spans waiting for the indexer before it re-reads them from disk
  search_candidates_per_day_max = 200000  # index hits of one day beyond which a search scans that day
  search_open_days_max = 100        # day search indexes kept open; least recently used ones close
  allocator_purge_delay_ms = 10     # how long freed memory stays with the allocator before it goes
                                    # back to the OS: 0 saves ~20 MB RSS more for ~15% ingest CPU;
                                    # 250 takes ~10-15% off ingest CPU for ~40 MB more at peak;
                                    # mimalloc's own default, 1000, keeps ~50-90 MB more resident
  allocator_huge_pages = false      # let the allocator's memory be transparent huge pages: each
                                    # page taken back after a purge is then zeroed 2 MB at a time
                                    # and purges free less (~30 MB more RSS while ingesting)

ENVIRONMENT
  MCPOBS_DATA, MCPOBS_LISTEN, MCPOBS_CONFIG, MCPOBS_LOG as the flags above;
  MCPOBS_ADMIN_PASSWORD  password of the `admin` user created on first start (else a random one is
                         printed once to stderr).";

/// mcp-obs: a self-hosted observability appliance for MCP servers. It receives OpenTelemetry traces
/// over OTLP/HTTP, stores them, and serves the JSON API (and dashboard) on the same port.
#[derive(Debug, Parser)]
#[command(name = "mcp-obs", version, after_long_help = SETTINGS_HELP, after_help = "Run `mcp-obs --help` for every config-file setting.")]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    #[command(flatten)]
    pub serve: ServeArgs,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the appliance (the default when no subcommand is given).
    Serve(ServeArgs),
}

#[derive(Debug, Clone, Args, Default)]
pub struct ServeArgs {
    /// Data directory (created if missing) [default: ./mcp-obs-data]
    #[arg(long, env = "MCPOBS_DATA", global = true)]
    pub data: Option<PathBuf>,
    /// Address for OTLP, the API and the dashboard; port 0 picks a free port [default: 127.0.0.1:4318]
    #[arg(long, env = "MCPOBS_LISTEN", global = true)]
    pub listen: Option<SocketAddr>,
    /// TOML config file with the settings listed below
    #[arg(long, env = "MCPOBS_CONFIG", global = true)]
    pub config: Option<PathBuf>,
    /// Log filter for stderr, e.g. `info` or `mcp_obs=debug,warn` [default: info]
    #[arg(long, env = "MCPOBS_LOG", global = true)]
    pub log: Option<String>,
}

/// The `[storage]` section of the config file.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StorageSettings {
    pub block_rows_max: usize,
    pub compaction_interval_ms: u64,
    pub rollup_deltas_bytes_max: u64,
    pub retention_interval_ms: u64,
    /// 0 = no budget.
    pub disk_bytes_max: u64,
    pub search_query_bytes_max: usize,
    pub search_query_terms_max: usize,
    pub search_suggest_limit_max: usize,
    pub search_writer_bytes_max: usize,
    pub search_commit_interval_ms: u64,
    pub search_queue_spans_max: usize,
    pub search_candidates_per_day_max: usize,
    pub search_open_days_max: usize,
    pub allocator_purge_delay_ms: u32,
    pub allocator_huge_pages: bool,
}

impl Default for StorageSettings {
    fn default() -> Self {
        let search = SearchOptions::default();
        let indexer = IndexerOptions::default();
        StorageSettings {
            block_rows_max: 8192,
            compaction_interval_ms: 10_000,
            rollup_deltas_bytes_max: mcp_obs_storage::spans::ROLLUP_DELTAS_BYTES_MAX_DEFAULT,
            retention_interval_ms: 600_000,
            disk_bytes_max: 0,
            search_query_bytes_max: search.query_bytes_max,
            search_query_terms_max: search.query_terms_max,
            search_suggest_limit_max: search.suggest_limit_max,
            search_writer_bytes_max: search.writer_bytes_max,
            search_commit_interval_ms: indexer.commit_interval_ms,
            search_queue_spans_max: indexer.queue_spans_max,
            search_candidates_per_day_max: search.candidates_per_day_max,
            search_open_days_max: search.open_days_max,
            allocator_purge_delay_ms: 10,
            allocator_huge_pages: false,
        }
    }
}

impl StorageSettings {
    /// The store's search options; refuses values the index cannot work with.
    pub fn search_options(&self) -> anyhow::Result<SearchOptions> {
        if self.search_writer_bytes_max < WRITER_BYTES_MIN {
            anyhow::bail!("[storage] search_writer_bytes_max must be at least {WRITER_BYTES_MIN}");
        }
        if self.search_query_terms_max == 0 || self.search_query_terms_max > QUERY_TERMS_LIMIT {
            anyhow::bail!(
                "[storage] search_query_terms_max must be between 1 and {QUERY_TERMS_LIMIT}"
            );
        }
        Ok(SearchOptions {
            query_bytes_max: self.search_query_bytes_max,
            query_terms_max: self.search_query_terms_max,
            suggest_limit_max: self.search_suggest_limit_max.max(1),
            writer_bytes_max: self.search_writer_bytes_max,
            candidates_per_day_max: self.search_candidates_per_day_max.max(1),
            open_days_max: self.search_open_days_max.max(1),
        })
    }

    pub fn indexer_options(&self) -> IndexerOptions {
        IndexerOptions {
            commit_interval_ms: self.search_commit_interval_ms.max(10),
            queue_spans_max: self.search_queue_spans_max,
            ..IndexerOptions::default()
        }
    }
}

/// The config file as written on disk.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FileConfig {
    pub data: Option<PathBuf>,
    pub listen: Option<SocketAddr>,
    pub log: Option<String>,
    pub web: WebConfig,
    pub storage: StorageSettings,
}

/// Everything the server needs, merged from all sources.
#[derive(Clone, Debug)]
pub struct Settings {
    pub data: PathBuf,
    pub listen: SocketAddr,
    pub log: String,
    pub web: WebConfig,
    pub storage: StorageSettings,
}

impl Settings {
    pub fn resolve(args: &ServeArgs) -> anyhow::Result<Settings> {
        let file = match &args.config {
            Some(path) => load_file(path)?,
            None => FileConfig::default(),
        };
        Ok(Settings {
            data: args
                .data
                .clone()
                .or(file.data)
                .unwrap_or_else(|| DEFAULT_DATA_DIR.into()),
            listen: match args.listen.or(file.listen) {
                Some(a) => a,
                None => DEFAULT_LISTEN.parse()?,
            },
            log: args
                .log
                .clone()
                .or(file.log)
                .unwrap_or_else(|| "info".into()),
            web: file.web,
            storage: file.storage,
        })
    }
}

fn load_file(path: &Path) -> anyhow::Result<FileConfig> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading config file {}", path.display()))?;
    toml::from_str(&text).with_context(|| format!("parsing config file {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `--help` must document every setting: each key of the default config appears in the text.
    #[test]
    fn help_lists_every_setting() {
        let defaults = toml::to_string(&FileConfig::default()).unwrap();
        let value: toml::Value = toml::from_str(&defaults).unwrap();
        let mut keys = Vec::new();
        for (k, v) in value.as_table().unwrap() {
            match v.as_table() {
                Some(t) => keys.extend(t.keys().cloned()),
                None => keys.push(k.clone()),
            }
        }
        keys.extend(["data", "listen", "log"].map(String::from));
        for key in keys {
            assert!(
                SETTINGS_HELP.contains(&format!("{key} =")),
                "setting `{key}` missing from --help"
            );
        }
    }

    #[test]
    fn file_values_apply_and_flags_win() {
        let dir = std::env::temp_dir().join(format!("mcpobs-cfg-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("c.toml");
        std::fs::write(
            &path,
            "listen = \"127.0.0.1:9999\"\n[web]\nbody_bytes_max = 1234\n",
        )
        .unwrap();
        let args = ServeArgs {
            config: Some(path.clone()),
            ..Default::default()
        };
        let s = Settings::resolve(&args).unwrap();
        assert_eq!(s.listen.port(), 9999);
        assert_eq!(s.web.body_bytes_max, 1234);
        let args = ServeArgs {
            config: Some(path.clone()),
            listen: Some("127.0.0.1:1".parse().unwrap()),
            ..Default::default()
        };
        assert_eq!(Settings::resolve(&args).unwrap().listen.port(), 1);
        std::fs::write(&path, "[web]\nbody_bytes_maxx = 1\n").unwrap();
        assert!(Settings::resolve(&ServeArgs {
            config: Some(path),
            ..Default::default()
        })
        .is_err());
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn trusted_proxies_parse_or_name_the_bad_entry() {
        let file: FileConfig =
            toml::from_str("[web]\ntrusted_proxies = [\"127.0.0.1\", \"10.0.0.0/8\"]\n").unwrap();
        assert!(file
            .web
            .trusted_proxies
            .contains("10.9.8.7".parse().unwrap()));
        assert!(!file
            .web
            .trusted_proxies
            .contains("11.0.0.1".parse().unwrap()));
        let err = toml::from_str::<FileConfig>("[web]\ntrusted_proxies = [\"nginx\"]\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("\"nginx\" is neither an IP address"), "{err}");
    }
}
