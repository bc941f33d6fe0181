//! The `oidc-authz` command line: parse arguments, set up logging, call the library, and map
//! errors to exit codes (0 ok, 1 runtime failure, 2 invalid config or usage).
#![forbid(unsafe_code)]

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};
use oidc_authz::tools::compat::Source;

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
        /// A candidate config decided beside the live one for every Check; disagreements are
        /// counted and logged, the answer comes from the live config only (DESIGN §11).
        #[arg(long, env = "OIDC_AUTHZ_SHADOW_CONFIG")]
        shadow_config: Option<PathBuf>,
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
        /// Treat policy lint warnings (shadowed rules, anonymous writes, unreachable clients) as
        /// errors: exit 2.
        #[arg(long)]
        strict: bool,
    },
    /// Explain the decision for one request: offline from a config file (key sets are fetched
    /// as `serve` would), or against a live server's admin gRPC API with --server.
    Explain(oidc_authz::tools::explain::Cli),
    /// Run policy tests (DESIGN §11, docs/policy-tests.md) offline against a config: exit 0 when
    /// all pass, 1 when any fails, 2 on an invalid config or tests file.
    Test {
        #[arg(long, env = "OIDC_AUTHZ_CONFIG")]
        config: Option<PathBuf>,
        /// Tests files (YAML, `tests: [...]`).
        #[arg(required = true)]
        tests: Vec<PathBuf>,
        /// Also list each rule's hit count and the rules no test reached.
        #[arg(long)]
        coverage: bool,
        /// Write the results as JUnit XML to this file.
        #[arg(long)]
        junit: Option<PathBuf>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::CheckConfig {
            config,
            print,
            strict,
        } => match Source::choose(config) {
            Ok(source) => {
                ExitCode::from(oidc_authz::tools::check_config::cli(&source, print, strict))
            }
            Err(msg) => usage_error(&msg),
        },
        Command::Explain(a) => ExitCode::from(oidc_authz::tools::explain::cli(a)),
        Command::Test {
            config,
            tests,
            coverage,
            junit,
        } => match Source::choose(config) {
            Ok(source) => ExitCode::from(oidc_authz::tools::policy_test::cli(
                &source,
                &tests,
                coverage,
                junit.as_deref(),
            )),
            Err(msg) => usage_error(&msg),
        },
        Command::Serve {
            config,
            shadow_config,
        } => match Source::choose(config) {
            Ok(source) => {
                oidc_authz::run::init_logging(matches!(cli.log_format, LogFormat::Json));
                serve(source, shadow_config)
            }
            Err(msg) => usage_error(&msg),
        },
    }
}

fn usage_error(msg: &str) -> ExitCode {
    eprintln!("oidc-authz: {msg}");
    ExitCode::from(2)
}

fn serve(source: Source, shadow_config: Option<PathBuf>) -> ExitCode {
    match oidc_authz::run::serve_blocking(source, shadow_config) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %e, "server failed");
            ExitCode::from(e.exit_code())
        }
    }
}
