//! The one startup path, shared by `oidc-authz serve` and every test that starts a server
//! ([`crate::run::RunningServer`]): crypto self-test, state from an already-loaded config,
//! file-descriptor limit, listeners (from the config's addresses unless overridden; port 0
//! works), hot reload when the config came from a file, signals (SIGHUP → reload, SIGTERM /
//! Ctrl-C → drain) and the drain itself.

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;

use crate::config::{Config, ConfigErrors, ListenLimits};
use crate::observe::metrics::Metrics;
use crate::ops::state::ServerState;
use crate::server::{Listeners, ServeError};

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(transparent)]
    SelfTest(#[from] crate::ops::selftest::SelfTestError),
    #[error("invalid config:\n{0}")]
    Config(#[from] ConfigErrors),
    #[error("cannot bind {what} {addr}: {source}")]
    Bind {
        what: &'static str,
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error(transparent)]
    Serve(#[from] ServeError),
    #[error("cannot start the runtime: {0}")]
    Runtime(std::io::Error),
}

impl RunError {
    /// The process exit code: 2 for an invalid config, 1 for anything else.
    pub fn exit_code(&self) -> u8 {
        match self {
            RunError::Config(_) => 2,
            _ => 1,
        }
    }
}

/// How to run; `Default` is what `serve` uses.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// The file the config came from: watched, and reloaded on change and on SIGHUP.
    pub config_path: Option<PathBuf>,
    /// `--shadow-config`: a candidate config decided beside the live one (ops::shadow),
    /// watched and reloaded like it.
    pub shadow_config: Option<PathBuf>,
    /// How often the config file is checked for changes.
    pub reload_poll: Duration,
    pub drain_timeout: Duration,
    /// Handle SIGHUP / SIGTERM / Ctrl-C (the binary). Off in tests: a handler would keep
    /// Ctrl-C from ending the test process.
    pub signals: bool,
    /// Listen addresses instead of the config's `listen.*` (tests: `127.0.0.1:0`).
    pub grpc: Option<SocketAddr>,
    pub admin: Option<SocketAddr>,
    pub admin_grpc: Option<SocketAddr>,
    /// The HTTP door's address instead of `listen.http` (serves it even when that is absent).
    pub http: Option<SocketAddr>,
}

impl Default for RunOptions {
    fn default() -> Self {
        RunOptions {
            config_path: None,
            shadow_config: None,
            reload_poll: crate::ops::reload::DEFAULT_POLL,
            drain_timeout: crate::server::DEFAULT_DRAIN_TIMEOUT,
            signals: false,
            grpc: None,
            admin: None,
            admin_grpc: None,
            http: None,
        }
    }
}

/// Run the server until `shutdown` completes (or, with `options.signals`, SIGTERM / Ctrl-C),
/// then drain and return. Must run inside a multi-threaded tokio runtime.
pub async fn run(
    config: Config,
    options: RunOptions,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), RunError> {
    Started::new(config, options).await?.serve(shutdown).await
}

/// `oidc-authz serve`: load the config from `source` (logging every error and note), then run
/// on a new multi-threaded runtime with reload (for a file) and signal handling until SIGTERM /
/// Ctrl-C.
pub fn serve_blocking(
    source: crate::tools::compat::Source,
    shadow_config: Option<PathBuf>,
) -> Result<(), RunError> {
    let loaded = source.load().inspect_err(|errs| {
        for e in &errs.0 {
            tracing::error!(field = %e.field, error = %e.message, "invalid config");
        }
    })?;
    for n in &loaded.notes {
        tracing::warn!(note = %n, "config");
    }
    tracing::info!(config = %source, "starting");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(RunError::Runtime)?;
    let options = RunOptions {
        config_path: match source {
            crate::tools::compat::Source::File(p) => Some(p),
            crate::tools::compat::Source::Environment => None,
        },
        shadow_config,
        signals: true,
        ..RunOptions::default()
    };
    runtime.block_on(run(loaded.config, options, std::future::pending()))
}

/// A server whose state exists and whose sockets are bound, not yet serving.
pub struct Started {
    pub state: Arc<ServerState>,
    pub grpc_addr: SocketAddr,
    pub admin_addr: SocketAddr,
    /// `None` when the admin gRPC port could not be bound (it is optional).
    pub admin_grpc_addr: Option<SocketAddr>,
    /// The HTTP door (`listen.http`), when configured.
    pub http_addr: Option<SocketAddr>,
    listeners: Listeners,
    limits: ListenLimits,
    options: RunOptions,
    /// Traces, when `telemetry.otlp_endpoint` is set: flushed after the drain.
    telemetry: Option<crate::ops::telemetry::Guard>,
}

impl Started {
    /// Self-test, state from `config`, bind.
    pub async fn new(config: Config, options: RunOptions) -> Result<Self, RunError> {
        crate::ops::selftest::run()?;
        let metrics = Arc::new(Metrics::new());
        let telemetry = config
            .telemetry
            .as_ref()
            .and_then(|t| crate::ops::telemetry::install(t, metrics.clone()));
        let state = ServerState::new(config, metrics)?;
        let mut started = Self::from_state(state, options).await?;
        started.telemetry = telemetry;
        Ok(started)
    }

    /// Bind the listeners for an existing state (tests that build or reload the state
    /// themselves).
    pub async fn from_state(
        state: Arc<ServerState>,
        options: RunOptions,
    ) -> Result<Self, RunError> {
        if let Some(path) = &options.shadow_config {
            // An invalid candidate at start is an invalid config (exit 2), named as the shadow.
            let shadow = crate::config::load(path).and_then(|c| state.set_shadow(c));
            shadow.map_err(|errs| {
                ConfigErrors(
                    errs.0
                        .into_iter()
                        .map(|e| crate::config::ConfigError {
                            field: format!("--shadow-config {}: {}", path.display(), e.field),
                            message: e.message,
                        })
                        .collect(),
                )
            })?;
            tracing::info!(shadow_config = %path.display(), "deciding every Check against the shadow config too");
        }
        let listen = state.snapshot().config.listen;
        raise_fd_limit(listen.limits.max_connections);
        let bind = |what: &'static str, addr: SocketAddr| async move {
            TcpListener::bind(addr)
                .await
                .map_err(|source| RunError::Bind { what, addr, source })
        };
        let grpc = bind("listen.grpc", options.grpc.unwrap_or(listen.grpc)).await?;
        let admin = bind("listen.admin", options.admin.unwrap_or(listen.admin)).await?;
        // The admin gRPC API (explain --server) is optional: a busy loopback port only warns.
        let admin_grpc_at = options.admin_grpc.unwrap_or(listen.admin_grpc);
        let admin_grpc = match bind("listen.admin_grpc", admin_grpc_at).await {
            Ok(l) => Some(l),
            Err(e) => {
                tracing::warn!(error = %e, "admin gRPC API not served");
                None
            }
        };
        let http_at = options.http.or(listen.http);
        let http = match http_at {
            Some(addr) => Some(bind("listen.http", addr).await?),
            None => None,
        };
        let local = |l: &TcpListener, what: &'static str, addr: SocketAddr| {
            l.local_addr()
                .map_err(|source| RunError::Bind { what, addr, source })
        };
        Ok(Started {
            grpc_addr: local(&grpc, "listen.grpc", listen.grpc)?,
            admin_addr: local(&admin, "listen.admin", listen.admin)?,
            admin_grpc_addr: admin_grpc.as_ref().and_then(|l| l.local_addr().ok()),
            http_addr: match (&http, http_at) {
                (Some(l), Some(at)) => Some(local(l, "listen.http", at)?),
                _ => None,
            },
            state,
            listeners: Listeners {
                grpc,
                admin,
                admin_grpc,
                http,
            },
            limits: listen.limits,
            options,
            telemetry: None,
        })
    }

    /// Serve (with reload and signals as configured) until shutdown, then drain.
    pub async fn serve(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), RunError> {
        match self.http_addr {
            Some(http) => {
                tracing::info!(grpc = %self.grpc_addr, admin = %self.admin_addr, http = %http, "serving")
            }
            None => tracing::info!(grpc = %self.grpc_addr, admin = %self.admin_addr, "serving"),
        }
        // Hot reload: content changes of the config file (ConfigMap symlink swaps included)
        // and SIGHUP. A rejected config is logged and counted; the old one keeps serving.
        // A config from the environment (or given in memory) cannot change while we run.
        let reloader = self.options.config_path.clone().map(|path| {
            crate::ops::reload::spawn(self.state.clone(), path, self.options.reload_poll)
        });
        let shadow_reloader = self.options.shadow_config.clone().map(|path| {
            crate::ops::reload::spawn_with_settle(
                self.state.clone(),
                path,
                self.options.reload_poll,
                crate::ops::reload::DEFAULT_SETTLE,
                crate::ops::reload::Target::Shadow,
            )
        });
        let signals = self.options.signals;
        if signals {
            spawn_sighup(reloader.clone(), shadow_reloader);
        }
        let shutdown = async move {
            if signals {
                tokio::select! {
                    _ = shutdown => {}
                    _ = termination() => {}
                }
            } else {
                shutdown.await;
            }
        };
        crate::server::serve(
            self.state,
            self.listeners,
            self.limits,
            shutdown,
            self.options.drain_timeout,
        )
        .await?;
        drop(reloader);
        if let Some(t) = self.telemetry {
            t.shutdown().await;
        }
        tracing::info!("stopped");
        Ok(())
    }
}

/// Raise the soft RLIMIT_NOFILE to the hard limit: each connection is a descriptor, and a soft
/// limit of 1024 (a common default) is below `listen.max_connections`' default plus the admin
/// ports and outbound key fetches. Where the limit cannot be raised, say so once.
fn raise_fd_limit(max_connections: usize) {
    let wanted = max_connections as u64 + 2 * crate::server::ADMIN_MAX_CONNECTIONS as u64 + 64;
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(limit) if limit < wanted => tracing::warn!(
            limit,
            wanted,
            "the open-file limit is below listen.max_connections plus headroom; raise the hard limit (ulimit -Hn) or lower listen.max_connections"
        ),
        Ok(limit) => tracing::debug!(limit, "open-file limit"),
        Err(e) => tracing::warn!(error = %e, "cannot read or raise the open-file limit"),
    }
}

async fn termination() {
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

/// SIGHUP → reload the config now. Installed in every mode: SIGHUP's default action would
/// terminate the process.
fn spawn_sighup(
    reloader: Option<crate::ops::reload::Reloader>,
    shadow: Option<crate::ops::reload::Reloader>,
) {
    #[cfg(unix)]
    tokio::spawn(async move {
        let Ok(mut hup) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
        else {
            tracing::warn!("cannot listen for SIGHUP; the config file is still watched");
            return;
        };
        while hup.recv().await.is_some() {
            if let Some(s) = &shadow {
                s.trigger();
            }
            match &reloader {
                Some(r) => {
                    tracing::info!("SIGHUP: reloading the config");
                    r.trigger();
                }
                None => tracing::info!(
                    "SIGHUP: the config does not come from a file; nothing to reload"
                ),
            }
        }
    });
    #[cfg(not(unix))]
    drop((reloader, shadow));
}

/// Logs on stderr: JSON lines (`json`, the default) or human-readable text; `RUST_LOG` filters
/// (default `info`).
pub fn init_logging(json: bool) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if json {
        builder
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .with_span_list(false)
            .init();
    } else {
        builder.init();
    }
}

/// A server running in the background (tests, demo), started through [`crate::run`] exactly as
/// the binary starts it (listeners, reload, drain), on the addresses given.
pub struct RunningServer {
    pub grpc_addr: SocketAddr,
    pub admin_addr: SocketAddr,
    /// The admin gRPC API, always on 127.0.0.1 (a free port).
    pub admin_grpc_addr: SocketAddr,
    /// The HTTP door, when the config sets `listen.http` (port 0 works).
    pub http_addr: Option<SocketAddr>,
    pub state: Arc<ServerState>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    join: tokio::task::JoinHandle<Result<(), RunError>>,
}

impl RunningServer {
    /// Bind both listeners (use port 0 for tests) and serve in the background.
    pub async fn start(
        state: Arc<ServerState>,
        grpc: SocketAddr,
        admin: SocketAddr,
    ) -> std::io::Result<Self> {
        Self::start_with(state, grpc, admin, RunOptions::default()).await
    }

    /// The same with options: `config_path` (reload), `drain_timeout`, ...
    pub async fn start_with(
        state: Arc<ServerState>,
        grpc: SocketAddr,
        admin: SocketAddr,
        mut options: RunOptions,
    ) -> std::io::Result<Self> {
        options.grpc = Some(grpc);
        options.admin = Some(admin);
        options.admin_grpc = Some(SocketAddr::from(([127, 0, 0, 1], 0)));
        let started = Started::from_state(state, options)
            .await
            .map_err(std::io::Error::other)?;
        let (grpc_addr, admin_addr) = (started.grpc_addr, started.admin_addr);
        let admin_grpc_addr = started
            .admin_grpc_addr
            .ok_or_else(|| std::io::Error::other("admin gRPC port not bound"))?;
        let http_addr = started.http_addr;
        let state = started.state.clone();
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let join = tokio::spawn(started.serve(async move {
            let _ = rx.await;
        }));
        Ok(RunningServer {
            grpc_addr,
            admin_addr,
            admin_grpc_addr,
            http_addr,
            state,
            stop: Some(tx),
            join,
        })
    }

    /// Trigger the graceful shutdown and wait for it.
    pub async fn shutdown(mut self) -> Result<(), crate::server::ServeError> {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        match self.join.await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(crate::server::ServeError::Grpc(std::io::Error::other(e))),
            Err(e) => Err(crate::server::ServeError::Grpc(std::io::Error::other(e))),
        }
    }
}
