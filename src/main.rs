//! The `oidc-authz` command line: parse arguments, set up logging, call the library, and map
//! errors to exit codes (0 ok, 1 runtime failure, 2 invalid config or usage).
#![forbid(unsafe_code)]

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};
use oidc_authz::config;
use oidc_authz::metrics::Metrics;
use oidc_authz::state::ServerState;

#[derive(Parser)]
#[command(
    name = "oidc-authz",
    version,
    about = "Envoy / Istio ext_authz server for OIDC bearer tokens"
)]
struct Cli {
    /// Log format: JSON lines (default) or human-readable text.
    #[arg(long, value_enum, default_value_t = LogFormat::Json, global = true)]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, ValueEnum)]
enum LogFormat {
    Json,
    Text,
}

#[derive(Subcommand)]
enum Command {
    /// Serve ext_authz Check (gRPC) and the admin port until SIGTERM / Ctrl-C.
    Serve {
        /// Config file (DESIGN §3 YAML).
        #[arg(long, env = "OIDC_AUTHZ_CONFIG")]
        config: PathBuf,
    },
    /// Validate a config file: exit 0, or non-zero listing every error.
    CheckConfig {
        #[arg(long, env = "OIDC_AUTHZ_CONFIG")]
        config: PathBuf,
    },
}

fn init_tracing(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .init(),
        LogFormat::Text => builder.init(),
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::CheckConfig { config } => check_config(&config),
        Command::Serve { config } => {
            init_tracing(cli.log_format);
            serve(config)
        }
    }
}

fn check_config(path: &std::path::Path) -> ExitCode {
    match config::load(path) {
        Ok(c) => {
            // jwks_file contents are part of the config: read them too.
            let mut errors = Vec::new();
            for (i, client) in c.clients.iter().enumerate() {
                if let oidc_authz::jwks::KeySource::File(p) = &client.keys {
                    let r = std::fs::read(p).map_err(|e| e.to_string()).and_then(|b| {
                        oidc_authz::jwks::parse_jwks(&b, "check").map_err(|e| e.to_string())
                    });
                    if let Err(e) = r {
                        errors.push(format!("clients[{i}].jwks_file: {}: {e}", p.display()));
                    }
                }
            }
            if errors.is_empty() {
                println!(
                    "{}: ok ({} clients, {} rules)",
                    path.display(),
                    c.clients.len(),
                    c.rules.len()
                );
                ExitCode::SUCCESS
            } else {
                for e in &errors {
                    eprintln!("{e}");
                }
                eprintln!("{}: {} error(s)", path.display(), errors.len());
                ExitCode::from(2)
            }
        }
        Err(errs) => {
            for e in &errs.0 {
                eprintln!("{e}");
            }
            eprintln!("{}: {} error(s)", path.display(), errs.0.len());
            ExitCode::from(2)
        }
    }
}

fn serve(path: PathBuf) -> ExitCode {
    if let Err(e) = oidc_authz::selftest::run() {
        tracing::error!(error = %e, "refusing to start");
        return ExitCode::from(1);
    }
    let cfg = match config::load(&path) {
        Ok(c) => c,
        Err(errs) => {
            for e in &errs.0 {
                tracing::error!(field = %e.field, error = %e.message, "invalid config");
            }
            return ExitCode::from(2);
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            tracing::error!(error = %e, "cannot start the runtime");
            return ExitCode::from(1);
        }
    };
    runtime.block_on(async move {
        let (grpc_addr, admin_addr) = (cfg.listen.grpc, cfg.listen.admin);
        let state = match ServerState::new(cfg, std::sync::Arc::new(Metrics::new())) {
            Ok(s) => s,
            Err(errs) => {
                for e in &errs.0 {
                    tracing::error!(field = %e.field, error = %e.message, "invalid config");
                }
                return ExitCode::from(2);
            }
        };
        let (grpc, admin) = match (
            tokio::net::TcpListener::bind(grpc_addr).await,
            tokio::net::TcpListener::bind(admin_addr).await,
        ) {
            (Ok(g), Ok(a)) => (g, a),
            (Err(e), _) | (_, Err(e)) => {
                tracing::error!(error = %e, %grpc_addr, %admin_addr, "cannot bind");
                return ExitCode::from(1);
            }
        };
        tracing::info!(grpc = %grpc_addr, admin = %admin_addr, config = %path.display(), "serving");
        // Hot reload: content changes of the config file (ConfigMap symlink swaps included)
        // and SIGHUP. A rejected config is logged and counted; the old one keeps serving.
        let reloader = oidc_authz::reload::spawn(
            state.clone(),
            path.clone(),
            oidc_authz::reload::DEFAULT_POLL,
        );
        spawn_sighup(reloader);
        match oidc_authz::server::run(state, grpc, admin, shutdown_signal()).await {
            Ok(()) => {
                tracing::info!("stopped");
                ExitCode::SUCCESS
            }
            Err(e) => {
                tracing::error!(error = %e, "server failed");
                ExitCode::from(1)
            }
        }
    })
}

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
        _ = ctrl_c => tracing::info!("interrupt: draining"),
        _ = term => tracing::info!("SIGTERM: draining"),
    }
}

/// SIGHUP → reload the config now.
fn spawn_sighup(reloader: oidc_authz::reload::Reloader) {
    #[cfg(unix)]
    tokio::spawn(async move {
        let Ok(mut hup) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
        else {
            tracing::warn!("cannot listen for SIGHUP; the config file is still watched");
            return;
        };
        while hup.recv().await.is_some() {
            tracing::info!("SIGHUP: reloading the config");
            reloader.trigger();
        }
    });
    #[cfg(not(unix))]
    drop(reloader);
}
