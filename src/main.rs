//! The `mcp-obs` binary: parses settings, opens the stores, starts the writer and the HTTP server,
//! and shuts everything down in order on SIGINT/SIGTERM. All real work lives in `storage` and `web`.

mod config;

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use mcp_obs_storage::meta::MetaStore;
use mcp_obs_storage::spans::{RetentionPolicy, SpanStore, SpanStoreOptions};
use mcp_obs_web::ingest::queue::IngestQueue;
use mcp_obs_web::state::AppState;
use tracing_subscriber::EnvFilter;

use config::{Cli, Command, Settings, StorageSettings};

/// Ingest allocates many small strings per span; mimalloc measured about 2x faster than the system
/// allocator on decode + normalize (docs/benchmarks.md).
#[global_allocator]
static GLOBAL: mcp_obs_storage::memory::Mimalloc = mcp_obs_storage::memory::Mimalloc;

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let args = match cli.command {
        Some(Command::Serve(args)) => merge(args, cli.serve),
        None => cli.serve,
    };
    let settings = Settings::resolve(&args)?;
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        // Colour codes only on a terminal: in a file, journald or a log shipper they are noise
        // that breaks matching lines (fail2ban on "login failed", say).
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_env_filter(EnvFilter::try_new(&settings.log).context("invalid --log filter")?)
        .init();
    mcp_obs_storage::memory::set_allocator_purge_delay_ms(
        settings.storage.allocator_purge_delay_ms,
    );
    if let Err(e) =
        mcp_obs_storage::memory::set_transparent_huge_pages(settings.storage.allocator_huge_pages)
    {
        // Only memory use and page-fault CPU depend on it: note it and go on.
        tracing::warn!(error = %e, "could not set transparent huge pages for the process");
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("mcp-obs-worker")
        .build()?;
    runtime.block_on(run(settings))
}

/// Flags given after `serve` win over the same flags given before it.
fn merge(sub: config::ServeArgs, top: config::ServeArgs) -> config::ServeArgs {
    config::ServeArgs {
        data: sub.data.or(top.data),
        listen: sub.listen.or(top.listen),
        config: sub.config.or(top.config),
        log: sub.log.or(top.log),
    }
}

async fn run(settings: Settings) -> anyhow::Result<()> {
    std::fs::create_dir_all(&settings.data)
        .with_context(|| format!("creating data directory {}", settings.data.display()))?;
    let meta =
        Arc::new(MetaStore::open(settings.data.join("meta.redb")).context("opening meta.redb")?);
    let admin_password = std::env::var("MCPOBS_ADMIN_PASSWORD")
        .ok()
        .filter(|p| !p.is_empty());
    let bootstrap = meta
        .bootstrap(admin_password.as_deref())
        .context("first-start bootstrap")?;

    let opts = SpanStoreOptions {
        block_rows_max: settings.storage.block_rows_max,
        rollup_deltas_bytes_max: settings.storage.rollup_deltas_bytes_max,
        search: settings.storage.search_options()?,
        ..SpanStoreOptions::default()
    };
    let spans = Arc::new(
        SpanStore::open(&settings.data.join("spans"), opts).context("opening span store")?,
    );
    // The search indexer starts by re-reading whatever the last run did not commit to its index.
    let (feed, indexer) = mcp_obs_storage::search::indexer::start(
        Arc::clone(&spans),
        settings.storage.indexer_options(),
    )?;
    let web = settings.web.clone();
    let (ingest, writer) = IngestQueue::start(
        Arc::clone(&spans),
        web.ingest_queue_requests_max,
        web.ingest_queue_spans_max,
        web.group_commit_spans_max,
        Some(feed),
    )?;
    let state = Arc::new(AppState::new(
        Arc::clone(&meta),
        Arc::clone(&spans),
        ingest.clone(),
        web,
    ));

    let listener = tokio::net::TcpListener::bind(settings.listen)
        .await
        .with_context(|| format!("binding {}", settings.listen))?;
    let addr = listener.local_addr()?;
    announce(addr, &settings, bootstrap.as_ref());

    let usage_task = tokio::spawn(flush_usage_periodically(Arc::clone(&state)));
    let compaction_task = tokio::spawn(compact_periodically(
        Arc::clone(&spans),
        Duration::from_millis(settings.storage.compaction_interval_ms.max(100)),
    ));
    let retention_task = tokio::spawn(retain_periodically(
        Arc::clone(&meta),
        Arc::clone(&spans),
        settings.storage.clone(),
        settings.web.retention_days,
    ));

    mcp_obs_web::server::serve(listener, Arc::clone(&state), shutdown_signal()).await;

    tracing::info!("stopped accepting; draining the ingest queue");
    usage_task.abort();
    compaction_task.abort();
    retention_task.abort();
    ingest.close();
    let writer = tokio::task::spawn_blocking(move || writer.join());
    if writer.await.is_err() {
        anyhow::bail!("span writer thread panicked");
    }
    // The writer held the last feed handle: the indexer commits what it has and exits.
    let indexer = tokio::task::spawn_blocking(move || indexer.join());
    if !matches!(indexer.await, Ok(Ok(()))) {
        tracing::warn!(
            "search indexer thread panicked; the next start re-indexes from its watermark"
        );
    }
    if let Err(e) = mcp_obs_web::auth::flush_key_usage(&state) {
        tracing::warn!(error = %e, "could not write API key usage at shutdown");
    }
    tracing::info!("shut down cleanly");
    Ok(())
}

fn announce(
    addr: std::net::SocketAddr,
    settings: &Settings,
    bootstrap: Option<&mcp_obs_storage::meta::Bootstrap>,
) {
    // Tests and scripts find the port in this exact line.
    eprintln!("mcp-obs listening on http://{addr}");
    eprintln!("  data directory: {}", settings.data.display());
    eprintln!(
        "  OTLP/HTTP traces: POST http://{addr}/v1/traces with Authorization: Bearer <api key>"
    );
    if let Some(b) = bootstrap {
        match &b.password_generated {
            Some(pw) => eprintln!(
                "  first start: created organization `default` and owner `{}` with password {pw}\n  (shown once; set MCPOBS_ADMIN_PASSWORD on first start to choose it)",
                b.username
            ),
            None => eprintln!(
                "  first start: created organization `default` and owner `{}` with the password from MCPOBS_ADMIN_PASSWORD",
                b.username
            ),
        }
    }
    eprintln!(
        "  log in: curl -si -X POST http://{addr}/api/v1/session -H 'content-type: application/json' -d '{{\"username\":\"admin\",\"password\":\"...\"}}'"
    );
}

async fn flush_usage_periodically(state: Arc<AppState>) {
    let every = Duration::from_millis(state.config.key_usage_flush_interval_ms.max(100));
    loop {
        tokio::time::sleep(every).await;
        let s = Arc::clone(&state);
        match tokio::task::spawn_blocking(move || mcp_obs_web::auth::flush_key_usage(&s)).await {
            Ok(Err(e)) => tracing::warn!(error = %e, "API key usage flush failed"),
            Err(e) => tracing::warn!(error = %e, "API key usage flush task failed"),
            Ok(Ok(_)) => {}
        }
    }
}

/// How often the compaction task checks whether rollup deltas are due for a merge (a load of
/// one atomic counter) between its full passes.
const ROLLUP_DELTAS_POLL: Duration = Duration::from_millis(200);

/// Compacts every `every`, and merges rollup deltas in between whenever `rollup_deltas_bytes_max`
/// of them are waiting.
async fn compact_periodically(spans: Arc<SpanStore>, every: Duration) {
    let mut next = tokio::time::Instant::now() + every;
    loop {
        tokio::time::sleep(ROLLUP_DELTAS_POLL.min(every)).await;
        let s = Arc::clone(&spans);
        if tokio::time::Instant::now() >= next {
            next = tokio::time::Instant::now() + every;
            match tokio::task::spawn_blocking(move || s.compact()).await {
                Ok(Err(e)) => tracing::warn!(error = %e, "compaction failed"),
                Err(e) => tracing::warn!(error = %e, "compaction task failed"),
                Ok(Ok(_)) => {}
            }
        } else if s.rollup_deltas_due() {
            match tokio::task::spawn_blocking(move || s.merge_rollup_deltas()).await {
                Ok(Err(e)) => tracing::warn!(error = %e, "rollup delta merge failed"),
                Err(e) => tracing::warn!(error = %e, "rollup delta merge task failed"),
                Ok(Ok(_)) => {}
            }
        }
    }
}

/// Applies retention now and then: each organization's `retention_days`, and the disk budget.
async fn retain_periodically(
    meta: Arc<MetaStore>,
    spans: Arc<SpanStore>,
    storage: StorageSettings,
    default_days: u32,
) {
    let every = Duration::from_millis(storage.retention_interval_ms.max(100));
    loop {
        tokio::time::sleep(every).await;
        let (m, s) = (Arc::clone(&meta), Arc::clone(&spans));
        let budget = (storage.disk_bytes_max > 0).then_some(storage.disk_bytes_max);
        let run = move || -> anyhow::Result<mcp_obs_storage::spans::RetentionStats> {
            let policy = RetentionPolicy {
                now_unix_nano: mcp_obs_storage::spans::now_unix_nano(),
                org_days: m
                    .all_orgs()?
                    .into_iter()
                    .map(|o| (o.id, o.retention_days))
                    .collect(),
                default_days,
                disk_bytes_max: budget,
            };
            Ok(s.apply_retention(&policy)?)
        };
        match tokio::task::spawn_blocking(run).await {
            Ok(Err(e)) => tracing::warn!(error = %e, "retention failed"),
            Err(e) => tracing::warn!(error = %e, "retention task failed"),
            Ok(Ok(_)) => {}
        }
    }
}

/// Resolves on SIGINT or SIGTERM.
async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => tracing::info!("SIGINT received"),
        _ = term => tracing::info!("SIGTERM received"),
    }
}
