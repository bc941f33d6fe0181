//! The `oidc-authz` command line: parse arguments, set up logging, call the library, and map
//! errors to exit codes (0 ok, 1 runtime failure, 2 invalid config or usage).
#![forbid(unsafe_code)]

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};

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
            match oidc_authz::tools::compat::Source::choose(config) {
                Ok(source) => check_config(&source, print),
                Err(msg) => usage_error(&msg),
            }
        }
        Command::Explain(args) => explain_cmd(args),
        Command::Serve { config } => match oidc_authz::tools::compat::Source::choose(config) {
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

fn check_config(source: &oidc_authz::tools::compat::Source, print: bool) -> ExitCode {
    match oidc_authz::run::check_config(source) {
        Ok((loaded, summary)) => {
            for n in &loaded.notes {
                eprintln!("note: {n}");
            }
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
        }
        Err(errors) => {
            for e in &errors {
                eprintln!("{e}");
            }
            eprintln!("{source}: {} error(s)", errors.len());
            ExitCode::from(2)
        }
    }
}

fn serve(source: oidc_authz::tools::compat::Source) -> ExitCode {
    match oidc_authz::run::serve_blocking(source) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %e, "server failed");
            ExitCode::from(e.exit_code())
        }
    }
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
    let req = match oidc_authz::tools::explain::cli_request(
        a.token.as_deref(),
        a.token_file.as_deref(),
        a.method,
        a.path,
        a.host,
        &a.headers,
    ) {
        Ok(r) => r,
        Err(msg) => return usage_error(&msg),
    };
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => return usage_error(&format!("cannot start the runtime: {e}")),
    };
    let result = runtime.block_on(async {
        match &a.server {
            Some(addr) => oidc_authz::tools::explain::explain_remote(addr, req, a.key_sets).await,
            None => {
                let source = oidc_authz::tools::compat::Source::choose(a.config)?;
                let (resp, ks, warnings) =
                    oidc_authz::tools::explain::explain_offline(&source, &req, a.key_sets).await?;
                for w in warnings {
                    eprintln!("warning: {w}");
                }
                Ok((resp, ks))
            }
        }
    });
    let (resp, ks) = match result {
        Ok(r) => r,
        Err(msg) => return usage_error(&msg),
    };
    if a.json {
        println!(
            "{:#}",
            oidc_authz::tools::explain::render_json(&resp, ks.as_ref())
        );
    } else {
        print!(
            "{}",
            oidc_authz::tools::explain::render_text(&resp, ks.as_ref())
        );
    }
    if resp.decision == "allow" {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}
