//! `winmdm` command line: wiring only (config, tracing, app, server).

use std::path::PathBuf;
use std::sync::Arc;

use clap::{Parser, Subcommand};
use winmdm::app::App;
use winmdm::config::{LogFormat, ServeOptions};
use winmdm::http::Server;

/// jemalloc rather than glibc's malloc: with the rounds spread over many threads, glibc kept the
/// memory that the store's page cache and the rounds freed in its per-thread arenas, and a
/// 4-minute soak at 600 sessions/s grew from 151 to 578 MiB (jemalloc: 169 → 293 MiB, level
/// once the command retention runs). README "Load, soak and crash figures".
#[cfg(not(target_env = "msvc"))]
#[global_allocator]
static ALLOC: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// winmdm: a Windows MDM server (MS-MDE2 enrollment, built-in CA, OMA-DM management).
#[derive(Parser)]
#[command(version, about)]
struct Cli {
    /// Admin client options (for the subcommands other than `serve`).
    #[command(flatten)]
    client: winmdm::cli::ClientArgs,
    #[command(subcommand)]
    cmd: Cmd,
}

// Parsed once at start-up: the size of the `Serve` variant does not matter.
#[derive(Subcommand)]
enum Cmd {
    /// Run the server (creates the data directory, CA and TLS certificate on first start).
    Serve {
        /// TOML file with the same keys as the flags (snake_case); flags and env override it.
        #[arg(long, env = "WINMDM_CONFIG")]
        config: Option<PathBuf>,
        #[command(flatten)]
        opts: Box<ServeOptions>,
    },
    /// Copy a stopped server's embedded store into an empty PostgreSQL database (then run
    /// `serve --database-url` with the same data directory for the CA and TLS files).
    Migrate {
        /// The data directory of the stopped server.
        #[arg(long, value_name = "DATA_DIR")]
        from: PathBuf,
        /// The empty target database: postgres://user@host[:port]/database.
        #[arg(long, value_name = "postgres://…")]
        to: String,
    },
    /// Back up a server into one archive: a consistent snapshot of its store and its key
    /// files (through the running server's admin API, or `--data-dir` of a stopped one).
    Backup(winmdm::cli::backup::BackupArgs),
    /// Rebuild a data directory (new or empty) from a backup archive; the server stopped.
    Restore(winmdm::cli::backup::RestoreArgs),
    /// Admin client subcommands (talk to a running server's /api/v1).
    #[command(flatten)]
    Admin(winmdm::cli::Command),
}

/// Threads of the server's blocking pool (tokio's default is 512). Enrollments, admin requests
/// and, on PostgreSQL, management rounds run on them, and their store writes wait for the group
/// commit there (on the embedded store a management round holds none: it runs on its request's
/// task and awaits its commit); beyond this many, further ones queue instead of each getting a
/// thread. Measured (README, "Load, soak and crash figures"): the in-process soak with 64 kept
/// its rate with a p99 of 16–34 ms where 512 had 70–750 ms, and the reused-connection runs were
/// as fast with 64 or 128 as with 512.
const SERVE_BLOCKING_THREADS: usize = 128;

/// The log writer's thread: `main` drops it last, which writes out the lines still queued.
static LOG_WRITER: std::sync::Mutex<Option<tracing_appender::non_blocking::WorkerGuard>> =
    std::sync::Mutex::new(None);

/// Installs the log subscriber (stderr, `RUST_LOG` filter, default `info`).
///
/// A request formats its lines; a logging thread writes them to stderr, several lines per
/// `write` when they come faster than one at a time (a management round logs one line, and at
/// a few thousand rounds per second the write calls cost the round as much as its SyncML
/// parsing). Nothing is dropped: a request waits when 128k lines are queued. Colours only when
/// stderr is a terminal (files and journald get plain text).
fn init_logging(format: LogFormat) {
    use std::io::IsTerminal;
    let filter = || {
        tracing_subscriber::EnvFilter::try_from_default_env()
            .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"))
    };
    let ansi = std::io::stderr().is_terminal();
    let (writer, guard) = tracing_appender::non_blocking::NonBlockingBuilder::default()
        .lossy(false)
        .thread_name("winmdm-log")
        .finish(std::io::BufWriter::with_capacity(
            64 * 1024,
            std::io::stderr(),
        ));
    *LOG_WRITER.lock().unwrap_or_else(|p| p.into_inner()) = Some(guard);
    match format {
        LogFormat::Text => tracing_subscriber::fmt()
            .with_writer(writer)
            .with_ansi(ansi)
            .with_env_filter(filter())
            .init(),
        // One object per line: the event's fields at the top level, the innermost span's fields
        // under "span" and every enclosing span under "spans".
        LogFormat::Json => tracing_subscriber::fmt()
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .with_span_list(true)
            .with_writer(writer)
            .with_ansi(false)
            .with_env_filter(filter())
            .init(),
    }
}

fn main() -> std::process::ExitCode {
    let code = run(Cli::parse());
    // Writes out the queued log lines (and stops the logging thread) before the process exits.
    drop(LOG_WRITER.lock().unwrap_or_else(|p| p.into_inner()).take());
    code
}

fn run(cli: Cli) -> std::process::ExitCode {
    if !matches!(cli.cmd, Cmd::Serve { .. }) {
        init_logging(LogFormat::Text);
    }
    match cli.cmd {
        Cmd::Serve { config, opts } => match serve(config, *opts) {
            Ok(()) => std::process::ExitCode::SUCCESS,
            Err(e) => {
                tracing::error!("{e}");
                eprintln!("winmdm: {e}");
                std::process::ExitCode::FAILURE
            }
        },
        Cmd::Migrate { from, to } => {
            match winmdm::cli::migrate::run(&from, &to, &mut std::io::stdout()) {
                Ok(_) => std::process::ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("winmdm migrate: {e}");
                    std::process::ExitCode::FAILURE
                }
            }
        }
        Cmd::Backup(a) => {
            match winmdm::cli::backup::backup(&cli.client, &a, &mut std::io::stdout()) {
                Ok(_) => std::process::ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("winmdm backup: {e}");
                    std::process::ExitCode::FAILURE
                }
            }
        }
        Cmd::Restore(a) => match winmdm::cli::backup::restore(&a, &mut std::io::stdout()) {
            Ok(_) => std::process::ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("winmdm restore: {e}");
                std::process::ExitCode::FAILURE
            }
        },
        Cmd::Admin(cmd) => {
            let code = winmdm::cli::execute(
                &cli.client,
                cmd,
                &mut std::io::stdout(),
                &mut std::io::stderr(),
            );
            std::process::ExitCode::from(code as u8)
        }
    }
}

fn serve(
    config: Option<PathBuf>,
    mut opts: ServeOptions,
) -> Result<(), Box<dyn std::error::Error>> {
    // Secrets come from the environment only (not a flag, not the config file).
    opts.smtp_password = std::env::var("WINMDM_SMTP_PASSWORD").ok();
    opts.webhook_secret = std::env::var("WINMDM_WEBHOOK_SECRET").ok();
    let opts = match config
        .map(|path| ServeOptions::from_file(&path))
        .transpose()
    {
        Ok(Some(file)) => opts.or(file),
        Ok(None) => opts,
        Err(e) => {
            init_logging(LogFormat::Text);
            return Err(e.into());
        }
    };
    // The log format is known once flags, environment and file are merged.
    match opts.log_format.as_deref().map(str::parse::<LogFormat>) {
        Some(Ok(f)) => init_logging(f),
        None => init_logging(LogFormat::Text),
        Some(Err(e)) => {
            init_logging(LogFormat::Text);
            return Err(e.into());
        }
    }
    let cfg = opts.resolve()?;
    let app = Arc::new(App::open(cfg, std::env::var("WINMDM_ADMIN_TOKEN").ok())?);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .max_blocking_threads(SERVE_BLOCKING_THREADS)
        .build()?;
    rt.block_on(async move {
        let server = Server::bind(app.clone()).await?;
        tracing::info!(
            public_url = %app.cfg.public_url.base,
            data_dir = %app.cfg.data_dir.display(),
            discovery = %app.cfg.public_url.join(winmdm::config::paths::DISCOVERY),
            "winmdm ready"
        );
        server.run(shutdown_signal()).await;
        Ok::<_, Box<dyn std::error::Error>>(())
    })
}

async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = match signal(SignalKind::terminate()) {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!(error = %e, "cannot watch SIGTERM; stop with Ctrl-C");
            let _ = tokio::signal::ctrl_c().await;
            return;
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => tracing::info!("SIGINT received"),
        _ = term.recv() => tracing::info!("SIGTERM received"),
    }
}
