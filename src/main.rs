//! The `oidc-authz` command line: parse arguments, set up logging, call the library, and map
//! errors to exit codes (0 ok, 1 runtime failure, 2 invalid config or usage).
#![forbid(unsafe_code)]

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};
use oidc_authz::metrics::Metrics;
use oidc_authz::state::ServerState;

/// mimalloc instead of glibc malloc: a Check allocates a few dozen small objects across two
/// runtime threads, where glibc's arena locks and consolidation showed up at ~20% of a warm
/// Check's CPU (perf). Measured in docs/performance.md; the allow-all reference server in
/// bench/ uses the same allocator so the ratios compare like with like.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

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
        /// Config file (DESIGN §3 YAML). Without it, the config is derived from flask-jwt-oidc's
        /// JWT_OIDC_* environment variables (compatibility mode).
        #[arg(long, env = "OIDC_AUTHZ_CONFIG")]
        config: Option<PathBuf>,
    },
    /// Validate a config file (or the config derived from JWT_OIDC_* variables): exit 0, or
    /// non-zero listing every error.
    CheckConfig {
        #[arg(long, env = "OIDC_AUTHZ_CONFIG")]
        config: Option<PathBuf>,
        /// Print the effective config YAML on stdout (secrets redacted), e.g. to keep the config
        /// derived from JWT_OIDC_* variables as a file.
        #[arg(long)]
        print: bool,
    },
    /// Explain the decision for one request: offline from a config file (key sets are fetched
    /// as `serve` would), or against a live server's admin gRPC API with --server.
    Explain(ExplainArgs),
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
            .with_span_list(false)
            .init(),
        LogFormat::Text => builder.init(),
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::CheckConfig { config, print } => {
            match oidc_authz::compat::Source::choose(config) {
                Ok(source) => check_config(&source, print),
                Err(msg) => usage_error(&msg),
            }
        }
        Command::Explain(args) => explain_cmd(args),
        Command::Serve { config } => match oidc_authz::compat::Source::choose(config) {
            Ok(source) => {
                init_tracing(cli.log_format);
                serve(source)
            }
            Err(msg) => usage_error(&msg),
        },
    }
}

fn usage_error(msg: &str) -> ExitCode {
    eprintln!("oidc-authz: {msg}");
    ExitCode::from(2)
}

fn check_config(source: &oidc_authz::compat::Source, print: bool) -> ExitCode {
    match source.load() {
        Ok(loaded) => {
            for n in &loaded.notes {
                eprintln!("note: {n}");
            }
            let c = loaded.config;
            // jwks_file contents are part of the config: read them too.
            let mut errors = Vec::new();
            for (i, client) in c.clients.iter().enumerate() {
                if let oidc_authz::config::KeySource::File(p) = &client.keys {
                    let r = oidc_authz::files::read_blocking(p)
                        .map_err(|e| e.to_string())
                        .and_then(|b| {
                            oidc_authz::jwks::parse_jwks(&b, "check").map_err(|e| e.to_string())
                        });
                    if let Err(e) = r {
                        errors.push(format!("clients[{i}].jwks_file: {}: {e}", p.display()));
                    }
                }
            }
            if errors.is_empty() {
                let summary = format!(
                    "{source}: ok ({} clients, {} rules)",
                    c.clients.len(),
                    c.rules.len()
                );
                if print {
                    // stdout is the YAML alone (`--print > config.yaml`); the summary goes aside.
                    print!("{}", oidc_authz::config::redact_secrets(&loaded.yaml));
                    if !loaded.yaml.ends_with('\n') {
                        println!();
                    }
                    eprintln!("{summary}");
                } else {
                    println!("{summary}");
                }
                ExitCode::SUCCESS
            } else {
                for e in &errors {
                    eprintln!("{e}");
                }
                eprintln!("{source}: {} error(s)", errors.len());
                ExitCode::from(2)
            }
        }
        Err(errs) => {
            for e in &errs.0 {
                eprintln!("{e}");
            }
            eprintln!("{source}: {} error(s)", errs.0.len());
            ExitCode::from(2)
        }
    }
}

fn serve(source: oidc_authz::compat::Source) -> ExitCode {
    if let Err(e) = oidc_authz::selftest::run() {
        tracing::error!(error = %e, "refusing to start");
        return ExitCode::from(1);
    }
    let cfg = match source.load() {
        Ok(loaded) => {
            for n in &loaded.notes {
                tracing::warn!(note = %n, "config");
            }
            loaded.config
        }
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
        let (grpc_addr, admin_addr, admin_grpc_addr) =
            (cfg.listen.grpc, cfg.listen.admin, cfg.listen.admin_grpc);
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
        tracing::info!(grpc = %grpc_addr, admin = %admin_addr, config = %source, "serving");
        // Hot reload: content changes of the config file (ConfigMap symlink swaps included)
        // and SIGHUP. A rejected config is logged and counted; the old one keeps serving.
        // A config derived from the environment cannot change while the process runs.
        match &source {
            oidc_authz::compat::Source::File(path) => {
                let reloader = oidc_authz::reload::spawn(
                    state.clone(),
                    path.clone(),
                    oidc_authz::reload::DEFAULT_POLL,
                );
                spawn_sighup(Some(reloader));
            }
            // SIGHUP must not terminate the process (its default action) in any mode.
            _ => spawn_sighup(None),
        }
        // The admin gRPC API (explain --server) is optional: a busy loopback port only warns.
        let admin_grpc = match tokio::net::TcpListener::bind(admin_grpc_addr).await {
            Ok(l) => Some(l),
            Err(e) => {
                tracing::warn!(error = %e, %admin_grpc_addr, "admin gRPC API not served");
                None
            }
        };
        match oidc_authz::server::run_with(
            state,
            grpc,
            admin,
            admin_grpc,
            shutdown_signal(),
            oidc_authz::server::DEFAULT_DRAIN_TIMEOUT,
        )
        .await
        {
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
fn spawn_sighup(reloader: Option<oidc_authz::reload::Reloader>) {
    #[cfg(unix)]
    tokio::spawn(async move {
        let Ok(mut hup) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
        else {
            tracing::warn!("cannot listen for SIGHUP; the config file is still watched");
            return;
        };
        while hup.recv().await.is_some() {
            match &reloader {
                Some(r) => {
                    tracing::info!("SIGHUP: reloading the config");
                    r.trigger();
                }
                None => tracing::info!(
                    "SIGHUP: the config comes from the environment; nothing to reload"
                ),
            }
        }
    });
    #[cfg(not(unix))]
    drop(reloader);
}

#[derive(clap::Args)]
struct ExplainArgs {
    #[arg(long, env = "OIDC_AUTHZ_CONFIG", conflicts_with = "server")]
    config: Option<PathBuf>,
    /// A live server's admin gRPC address (listen.admin_grpc), e.g. 127.0.0.1:9003.
    #[arg(long)]
    server: Option<String>,
    /// The bearer token (or use --token-file; never logged).
    #[arg(long)]
    token: Option<String>,
    #[arg(long, conflicts_with = "token")]
    token_file: Option<PathBuf>,
    #[arg(long, default_value = "GET")]
    method: String,
    #[arg(long)]
    path: String,
    #[arg(long, default_value = "")]
    host: String,
    /// Extra request headers, `name: value` (repeatable).
    #[arg(long = "header")]
    headers: Vec<String>,
    /// Print the answer as JSON.
    #[arg(long)]
    json: bool,
    /// Also list the key sets (kids, age, last fetch result).
    #[arg(long)]
    key_sets: bool,
}

/// `oidc-authz explain`: exit 0 when allowed, 1 when denied, 2 on usage / config errors.
fn explain_cmd(a: ExplainArgs) -> ExitCode {
    use oidc_authz::admin_grpc::pb;
    let token = match (&a.token, &a.token_file) {
        (Some(t), _) => t.trim().to_owned(),
        (None, Some(f)) => match std::fs::read_to_string(f) {
            Ok(t) => t.trim().to_owned(),
            Err(e) => return usage_error(&format!("--token-file {}: {e}", f.display())),
        },
        (None, None) => String::new(),
    };
    let mut headers = std::collections::HashMap::new();
    for h in &a.headers {
        let Some((k, v)) = h.split_once(':') else {
            return usage_error(&format!("--header `{h}`: expected `name: value`"));
        };
        headers.insert(k.trim().to_ascii_lowercase(), v.trim().to_owned());
    }
    let req = pb::ExplainRequest {
        method: a.method,
        path: a.path,
        host: a.host,
        headers,
        token,
    };
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => return usage_error(&format!("cannot start the runtime: {e}")),
    };
    let result: Result<(pb::ExplainResponse, Option<pb::KeySetsResponse>), String> = runtime
        .block_on(async {
            if let Some(addr) = &a.server {
                let url = if addr.contains("://") {
                    addr.clone()
                } else {
                    format!("http://{addr}")
                };
                let mut client = pb::admin_client::AdminClient::connect(url.clone())
                    .await
                    .map_err(|e| format!("cannot reach the admin gRPC API at {url}: {e}"))?;
                let resp = client
                    .explain(req)
                    .await
                    .map_err(|e| format!("Explain: {e}"))?
                    .into_inner();
                let ks = if a.key_sets {
                    Some(
                        client
                            .key_sets(pb::KeySetsRequest {})
                            .await
                            .map_err(|e| format!("KeySets: {e}"))?
                            .into_inner(),
                    )
                } else {
                    None
                };
                Ok((resp, ks))
            } else {
                let source = oidc_authz::compat::Source::choose(a.config)?;
                let loaded = source.load().map_err(|e| format!("invalid config:\n{e}"))?;
                let state = ServerState::new(loaded.config, std::sync::Arc::new(Metrics::new()))
                    .map_err(|e| format!("invalid config:\n{e}"))?;
                let snap = state.snapshot();
                // Offline, but with real keys: wait for every key set's first fetch (bounded).
                for ks in snap.key_sets() {
                    let timeout = ks.settings().timeout * 2;
                    if !ks.wait_loaded(timeout).await {
                        eprintln!(
                            "warning: key set {} did not load: {}",
                            ks.id,
                            ks.state().last_error.clone().unwrap_or_default()
                        );
                    }
                }
                let resp = oidc_authz::admin_grpc::explain_request(&snap, &req).await;
                let ks = a.key_sets.then(|| oidc_authz::admin_grpc::key_sets(&snap));
                Ok((resp, ks))
            }
        });
    let (resp, ks) = match result {
        Ok(r) => r,
        Err(msg) => return usage_error(&msg),
    };
    if a.json {
        let v = serde_json::json!({
            "decision": resp.decision, "reason": resp.reason, "http_status": resp.http_status,
            "detail": resp.detail, "rule": resp.rule, "client": resp.client,
            "steps": resp.steps.iter().map(|s| serde_json::json!({"step": s.step, "outcome": s.outcome})).collect::<Vec<_>>(),
            "roles": resp.roles, "set_headers": resp.set_headers, "remove_headers": resp.remove_headers,
            "config_generation": resp.config_generation,
            "key_sets": ks.as_ref().map(|k| k.key_sets.iter().map(|s| serde_json::json!({
                "id": s.id, "kids": s.kids, "loaded": s.loaded, "available": s.available,
                "age_seconds": s.age_seconds, "last_error": s.last_error, "clients": s.clients})).collect::<Vec<_>>()),
        });
        println!("{v:#}");
    } else {
        for s in &resp.steps {
            println!("{:>10}: {}", s.step, s.outcome);
        }
        if resp.decision == "allow" {
            println!(
                "  decision: ALLOW (rule {}, client {})",
                resp.rule,
                if resp.client.is_empty() {
                    "-"
                } else {
                    &resp.client
                }
            );
            let mut set: Vec<_> = resp.set_headers.iter().collect();
            set.sort();
            for (k, v) in set {
                println!("   set hdr: {k}: {v}");
            }
            if !resp.remove_headers.is_empty() {
                println!("remove hdr: {}", resp.remove_headers.join(", "));
            }
        } else {
            println!(
                "  decision: DENY {} {} — {} (rule {}, client {})",
                resp.http_status,
                resp.reason,
                resp.detail,
                if resp.rule.is_empty() {
                    "-"
                } else {
                    &resp.rule
                },
                if resp.client.is_empty() {
                    "-"
                } else {
                    &resp.client
                }
            );
        }
        if let Some(ks) = &ks {
            for s in &ks.key_sets {
                println!(
                    "   key set: {} [{}] kids {:?}, age {:.0}s, {}{}",
                    s.id,
                    s.clients.join(","),
                    s.kids,
                    s.age_seconds,
                    if s.available {
                        "available"
                    } else {
                        "NOT available"
                    },
                    if s.last_error.is_empty() {
                        String::new()
                    } else {
                        format!(", last error: {}", s.last_error)
                    }
                );
            }
        }
    }
    if resp.decision == "allow" {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}
