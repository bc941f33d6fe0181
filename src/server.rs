//! Serving: the gRPC listener (Authorization + grpc.health.v1) and the admin listener, started
//! from already-bound sockets so tests can use `127.0.0.1:0`, and stopped by one shutdown
//! future: readiness drops at once, then both servers stop accepting and drain.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use envoy_types::ext_authz::v3::pb::AuthorizationServer;
use tokio::net::TcpListener;
use tonic::transport::server::TcpIncoming;

use crate::service::AuthzService;
use crate::state::ServerState;

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("gRPC server: {0}")]
    Grpc(#[from] tonic::transport::Error),
    #[error("admin server: {0}")]
    Admin(std::io::Error),
}

/// How long in-flight Checks may take to finish after a shutdown signal.
pub const DEFAULT_DRAIN_TIMEOUT: Duration = Duration::from_secs(20);

/// Serve until `shutdown` completes, then drain in-flight Checks (at most `drain_timeout`) and
/// return. Shutdown order: `/readyz` and gRPC health report not-serving at once; the gRPC server
/// stops accepting and finishes in-flight Checks; only then does the admin port close, so
/// probes see 503 (not a refused connection) while draining.
pub async fn run(
    state: Arc<ServerState>,
    grpc: TcpListener,
    admin: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServeError> {
    run_with(state, grpc, admin, None, shutdown, DEFAULT_DRAIN_TIMEOUT).await
}

pub async fn run_with(
    state: Arc<ServerState>,
    grpc: TcpListener,
    admin: TcpListener,
    admin_grpc: Option<TcpListener>,
    shutdown: impl Future<Output = ()> + Send + 'static,
    drain_timeout: Duration,
) -> Result<(), ServeError> {
    let (health, health_service) = tonic_health::server::health_reporter();
    health
        .set_serving::<AuthorizationServer<AuthzService>>()
        .await;
    let (grpc_stop_tx, mut grpc_stop_rx) = tokio::sync::watch::channel(false);
    let (admin_stop_tx, mut admin_stop_rx) = tokio::sync::watch::channel(false);

    let drain_state = state.clone();
    tokio::spawn(async move {
        shutdown.await;
        // Readiness first, so load balancers stop sending before we stop accepting.
        drain_state.start_draining();
        health
            .set_not_serving::<AuthorizationServer<AuthzService>>()
            .await;
        health
            .set_service_status("", tonic_health::ServingStatus::NotServing)
            .await;
        tracing::info!("draining: not ready, finishing in-flight Checks");
        let _ = grpc_stop_tx.send(true);
    });

    let authz = AuthorizationServer::new(AuthzService::new(state.clone()));
    let mut stop_seen = grpc_stop_rx.clone();
    let grpc_task = tokio::spawn(
        tonic::transport::Server::builder()
            // (tcp_nodelay on the builder is ignored with an incoming stream: set on TcpIncoming)
            .http2_keepalive_interval(Some(Duration::from_secs(30)))
            .http2_keepalive_timeout(Some(Duration::from_secs(10)))
            .add_service(health_service)
            .add_service(authz)
            .serve_with_incoming_shutdown(
                TcpIncoming::from(grpc).with_nodelay(Some(true)),
                async move {
                    let _ = grpc_stop_rx.wait_for(|s| *s).await;
                },
            ),
    );
    let admin_task = tokio::spawn(
        axum::serve(admin, crate::admin::router(state.clone()))
            .with_graceful_shutdown(async move {
                let _ = admin_stop_rx.wait_for(|s| *s).await;
            })
            .into_future(),
    );

    // The admin gRPC API (Explain, KeySets) on its loopback listener; stops with the admin port.
    let admin_grpc_task = admin_grpc.map(|listener| {
        let mut rx = admin_stop_tx.subscribe();
        tokio::spawn(
            tonic::transport::Server::builder()
                .add_service(crate::admin_grpc::AdminService::server(state.clone()))
                .serve_with_incoming_shutdown(
                    TcpIncoming::from(listener).with_nodelay(Some(true)),
                    async move {
                        let _ = rx.wait_for(|s| *s).await;
                    },
                ),
        )
    });

    // Until the shutdown signal, a server that fails on its own ends the run.
    let mut grpc_task = grpc_task;
    let grpc_result = tokio::select! {
        r = &mut grpc_task => Some(r),
        _ = stop_seen.wait_for(|s| *s) => None,
    };
    let grpc_result = match grpc_result {
        Some(r) => r,
        None => match tokio::time::timeout(drain_timeout, &mut grpc_task).await {
            Ok(r) => r,
            Err(_) => {
                tracing::warn!(
                    timeout_s = drain_timeout.as_secs(),
                    "drain timeout: abandoning in-flight Checks"
                );
                grpc_task.abort();
                Ok(Ok(()))
            }
        },
    };
    let _ = admin_stop_tx.send(true);
    let admin_result = admin_task.await;
    if let Some(t) = admin_grpc_task
        && let Ok(Err(e)) = t.await
    {
        tracing::warn!(error = %e, "admin gRPC server ended with an error");
    }
    grpc_result.map_err(|e| ServeError::Admin(std::io::Error::other(e)))??;
    admin_result
        .map_err(|e| ServeError::Admin(std::io::Error::other(e)))?
        .map_err(ServeError::Admin)?;
    Ok(())
}

/// A server running in the background (tests, demo).
pub struct RunningServer {
    pub grpc_addr: SocketAddr,
    pub admin_addr: SocketAddr,
    /// The admin gRPC API, always on 127.0.0.1 (a free port).
    pub admin_grpc_addr: SocketAddr,
    pub state: Arc<ServerState>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    join: tokio::task::JoinHandle<Result<(), ServeError>>,
}

impl RunningServer {
    /// Bind both listeners (use port 0 for tests) and serve in the background.
    pub async fn start(
        state: Arc<ServerState>,
        grpc: SocketAddr,
        admin: SocketAddr,
    ) -> std::io::Result<Self> {
        let grpc = TcpListener::bind(grpc).await?;
        let admin = TcpListener::bind(admin).await?;
        let admin_grpc = TcpListener::bind("127.0.0.1:0").await?;
        let (grpc_addr, admin_addr, admin_grpc_addr) = (
            grpc.local_addr()?,
            admin.local_addr()?,
            admin_grpc.local_addr()?,
        );
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let stop = async move {
            let _ = rx.await;
        };
        let join = tokio::spawn(run_with(
            state.clone(),
            grpc,
            admin,
            Some(admin_grpc),
            stop,
            DEFAULT_DRAIN_TIMEOUT,
        ));
        Ok(RunningServer {
            grpc_addr,
            admin_addr,
            admin_grpc_addr,
            state,
            stop: Some(tx),
            join,
        })
    }

    /// Trigger the graceful shutdown and wait for it.
    pub async fn shutdown(mut self) -> Result<(), ServeError> {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        match self.join.await {
            Ok(r) => r,
            Err(e) => Err(ServeError::Admin(std::io::Error::other(e))),
        }
    }
}
