//! The listeners: the gRPC Check port (Authorization + grpc.health.v1), the admin HTTP port and
//! the loopback admin gRPC port, served from already-bound sockets (so `127.0.0.1:0` works) and
//! stopped by one shutdown future: readiness drops at once, then the listeners stop accepting
//! and in-flight Checks drain.
//!
//! Each port has its own accept loop over hyper's connection builders (the same builders tonic
//! and axum use inside) so that every hostile-input limit is explicit (docs/security.md §10):
//! a connection cap (a semaphore around accept), back-off on accept errors such as EMFILE instead
//! of a hot loop, a deadline for the HTTP/2 preface or HTTP/1 request head, HTTP/2 stream and
//! buffer limits, and a decode limit on the Check message. Connection tasks live in a `JoinSet`
//! owned by the accept loop, so stopping a listener also ends every connection it accepted.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use envoy_types::ext_authz::v3::pb::AuthorizationServer;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinSet;

use crate::config::ListenLimits;
use crate::doors::grpc::AuthzService;
use crate::ops::state::ServerState;

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("gRPC server: {0}")]
    Grpc(std::io::Error),
    #[error("admin server: {0}")]
    Admin(std::io::Error),
}

/// How long in-flight Checks may take to finish after a shutdown signal.
pub const DEFAULT_DRAIN_TIMEOUT: Duration = Duration::from_secs(20);
/// After the last in-flight Check returned: time for its response to be written before the
/// remaining (idle or half-open) connections are dropped.
const FLUSH_GRACE: Duration = Duration::from_millis(500);
/// How long the admin ports get to finish their requests once the gRPC port has drained.
pub const ADMIN_SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(2);
/// Connection cap of each admin port (probes, Prometheus, `explain --server`: a handful).
pub const ADMIN_MAX_CONNECTIONS: usize = 64;
/// HTTP/2 flow-control windows: what one stream / one connection may have in flight unread.
/// A CheckRequest is a few KiB; larger ones just take more WINDOW_UPDATE round trips.
const H2_STREAM_WINDOW: u32 = 64 * 1024;
const H2_CONNECTION_WINDOW: u32 = 512 * 1024;
/// The HTTP/2 minimum (RFC 9113 §4.2): bounds what one frame makes hyper buffer.
const H2_MAX_FRAME: u32 = 16 * 1024;
/// gRPC request headers are a handful of short lines (Envoy's headers travel in the message).
const H2_MAX_HEADER_LIST: u32 = 16 * 1024;
/// HTTP/1 (admin): request line + headers; probes and scrapes send a few hundred bytes.
const H1_MAX_BUF: usize = 16 * 1024;
/// hyper's smallest allowed HTTP/1 read buffer (it panics below this).
const H1_MIN_BUF: usize = 8192;
/// The HTTP/2 client preface (RFC 9113 §3.4) that must arrive before the header read timeout.
const H2_PREFACE_LEN: usize = 24;
/// Accept-error back-off: starts here, doubles, resets on the next successful accept.
const ACCEPT_BACKOFF_MIN: Duration = Duration::from_millis(10);
const ACCEPT_BACKOFF_MAX: Duration = Duration::from_secs(1);

/// The bound sockets of one server.
pub struct Listeners {
    pub grpc: TcpListener,
    pub admin: TcpListener,
    /// The admin gRPC API (Explain, KeySets); optional (a busy loopback port only warns).
    pub admin_grpc: Option<TcpListener>,
    /// The HTTP authorization API (`listen.http`, DESIGN §9); optional.
    pub http: Option<TcpListener>,
}

/// Serve until `shutdown` completes, then drain (at most `drain_timeout`) and return.
///
/// Shutdown order: `/readyz` and gRPC health report not-serving at once; the gRPC port stops
/// accepting and sends GOAWAY; the drain waits for in-flight *Checks* (not for connections: an
/// idle or half-open connection holds none); then the admin ports close, with a deadline, so
/// probes see 503 (not a refused connection) while draining.
pub async fn serve(
    state: Arc<ServerState>,
    listeners: Listeners,
    limits: ListenLimits,
    shutdown: impl Future<Output = ()> + Send + 'static,
    drain_timeout: Duration,
) -> Result<(), ServeError> {
    let (health, health_service) = tonic_health::server::health_reporter();
    health
        .set_serving::<AuthorizationServer<AuthzService>>()
        .await;
    let (grpc_stop_tx, grpc_stop_rx) = watch::channel(false);
    let (admin_stop_tx, admin_stop_rx) = watch::channel(false);

    let service = AuthzService::new(state.clone());
    let inflight = service.inflight();
    let decode_limit = service.max_decoding_message_size();
    let authz = AuthorizationServer::new(service)
        // tonic reserves the length a gRPC message prefix announces: without this cap one
        // stream could make it allocate 4 MiB (its default) without sending a byte of it.
        .max_decoding_message_size(decode_limit);
    let grpc_routes = tonic::service::Routes::new(health_service).add_service(authz);
    let grpc_task = tokio::spawn(accept_loop(
        listeners.grpc,
        limits.max_connections,
        grpc_stop_rx.clone(),
        h2_handler(grpc_routes, limits, limits.max_concurrent_streams),
    ));

    // The HTTP door: same connection cap and head deadline as the Check port, stopped and
    // drained with it (its Checks count in the same in-flight counter).
    let http_task = listeners.http.map(|listener| {
        let router = crate::doors::http::router(state.clone(), inflight.clone());
        tokio::spawn(accept_loop(
            listener,
            limits.max_connections,
            grpc_stop_rx.clone(),
            h1_handler(router, limits, crate::doors::http::max_head_bytes(&limits)),
        ))
    });

    let admin_task = tokio::spawn(accept_loop(
        listeners.admin,
        ADMIN_MAX_CONNECTIONS,
        admin_stop_rx.clone(),
        h1_handler(
            crate::doors::admin::router(state.clone()),
            limits,
            H1_MAX_BUF,
        ),
    ));
    let admin_grpc_task = listeners.admin_grpc.map(|listener| {
        let routes = tonic::service::Routes::new(crate::doors::admin_grpc::AdminService::server(
            state.clone(),
        ));
        tokio::spawn(accept_loop(
            listener,
            ADMIN_MAX_CONNECTIONS,
            admin_stop_rx.clone(),
            h2_handler(routes, limits, 16),
        ))
    });

    shutdown.await;
    // Readiness first, so load balancers stop sending before we stop accepting.
    state.start_draining();
    health
        .set_not_serving::<AuthorizationServer<AuthzService>>()
        .await;
    health
        .set_service_status("", tonic_health::ServingStatus::NotServing)
        .await;
    tracing::info!(
        in_flight = inflight.count(),
        "draining: not ready, finishing in-flight Checks"
    );
    let _ = grpc_stop_tx.send(true);

    let mut grpc_task = grpc_task;
    let drained = async {
        loop {
            tokio::select! {
                // Every connection closed after its GOAWAY: nothing left at all.
                _ = &mut grpc_task => return,
                _ = inflight.wait_idle() => {
                    // No Check running: let the last responses reach the wire (connections
                    // close on their own once their streams are done), then drop the idle
                    // ones, unless a Check whose request was already arriving started meanwhile.
                    if tokio::time::timeout(FLUSH_GRACE, &mut grpc_task).await.is_ok()
                        || inflight.count() == 0
                    {
                        return;
                    }
                }
            }
        }
    };
    if tokio::time::timeout(drain_timeout, drained).await.is_err() {
        tracing::warn!(
            timeout_s = drain_timeout.as_secs(),
            in_flight = inflight.count(),
            "drain timeout: abandoning in-flight Checks"
        );
    }
    // Dropping the accept loop's JoinSet ends the connections that are left.
    grpc_task.abort();
    if let Some(mut t) = http_task {
        // Its Checks are drained above; give idle keep-alive connections their close.
        let _ = tokio::time::timeout(FLUSH_GRACE, &mut t).await;
        t.abort();
    }

    let _ = admin_stop_tx.send(true);
    let mut admin_tasks: Vec<_> = std::iter::once(admin_task).chain(admin_grpc_task).collect();
    let admin_done = async {
        for t in &mut admin_tasks {
            let _ = t.await;
        }
    };
    if tokio::time::timeout(ADMIN_SHUTDOWN_TIMEOUT, admin_done)
        .await
        .is_err()
    {
        tracing::warn!("admin connections still open at the shutdown deadline: closed");
    }
    // A timed-out JoinHandle only detaches its task: end the accept loops (and so their
    // connections) explicitly.
    for t in &admin_tasks {
        t.abort();
    }
    Ok(())
}

/// Serves one accepted connection until it ends or `stop` turns true (then gracefully).
type Handler = Arc<
    dyn Fn(TcpStream, watch::Receiver<bool>) -> Pin<Box<dyn Future<Output = ()> + Send>>
        + Send
        + Sync,
>;

/// Accept up to `max_connections` at a time until `stop`; then stop accepting (the socket is
/// closed) and wait for the accepted connections. Aborting this task ends them all.
async fn accept_loop(
    listener: TcpListener,
    max_connections: usize,
    mut stop: watch::Receiver<bool>,
    handler: Handler,
) {
    let slots = Arc::new(Semaphore::new(max_connections));
    let mut conns = JoinSet::new();
    let mut backoff = ACCEPT_BACKOFF_MIN;
    loop {
        // At the cap, further connections wait in the kernel's backlog rather than taking a
        // file descriptor each.
        let permit = tokio::select! {
            p = slots.clone().acquire_owned() => match p {
                Ok(p) => p,
                Err(_) => break,
            },
            _ = stopped(&mut stop) => break,
        };
        let accepted = tokio::select! {
            r = listener.accept() => r,
            _ = stopped(&mut stop) => break,
        };
        while conns.try_join_next().is_some() {}
        match accepted {
            Ok((tcp, _peer)) => {
                backoff = ACCEPT_BACKOFF_MIN;
                let _ = tcp.set_nodelay(true);
                let serve = handler(tcp, stop.clone());
                conns.spawn(async move {
                    serve.await;
                    drop(permit);
                });
            }
            // The peer gave up before we accepted: nothing wrong with us.
            Err(e) if is_connection_error(&e) => {}
            Err(e) => {
                // EMFILE / ENFILE / ENOBUFS: accepting again at once fails again and spins a
                // core; wait (doubling) so running connections can finish and free descriptors.
                tracing::warn!(error = %e, backoff_ms = backoff.as_millis() as u64, "accept failed; backing off");
                tokio::select! {
                    _ = tokio::time::sleep(backoff) => {}
                    _ = stopped(&mut stop) => break,
                }
                backoff = (backoff * 2).min(ACCEPT_BACKOFF_MAX);
            }
        }
    }
    drop(listener);
    while conns.join_next().await.is_some() {}
}

/// Resolves when the stop flag turns true (without holding the watch's read guard).
async fn stopped(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|s| *s).await;
}

fn is_connection_error(e: &std::io::Error) -> bool {
    use std::io::ErrorKind::*;
    matches!(
        e.kind(),
        ConnectionRefused | ConnectionAborted | ConnectionReset
    )
}

/// HTTP/2 (gRPC) connections with bounded streams and buffers.
fn h2_handler(
    routes: tonic::service::Routes,
    limits: ListenLimits,
    max_concurrent_streams: u32,
) -> Handler {
    let mut builder = hyper::server::conn::http2::Builder::new(TokioExecutor::new());
    builder
        .timer(TokioTimer::new())
        .max_concurrent_streams(max_concurrent_streams)
        .initial_stream_window_size(H2_STREAM_WINDOW)
        .initial_connection_window_size(H2_CONNECTION_WINDOW)
        .max_frame_size(H2_MAX_FRAME)
        .max_header_list_size(H2_MAX_HEADER_LIST)
        // Detects dead peers; a live idle peer (Envoy keeps its connection) answers the PINGs.
        .keep_alive_interval(Duration::from_secs(30))
        .keep_alive_timeout(Duration::from_secs(10));
    let builder = Arc::new(builder);
    let service = TowerToHyperService::new(routes);
    let preface_timeout = limits.header_read_timeout;
    Arc::new(move |tcp, mut stop| {
        let io = TokioIo::new(FirstBytesDeadline::new(
            tcp,
            H2_PREFACE_LEN,
            preface_timeout,
        ));
        let conn = builder.serve_connection(io, service.clone());
        Box::pin(async move {
            tokio::pin!(conn);
            let result = tokio::select! {
                r = conn.as_mut() => r,
                _ = stopped(&mut stop) => {
                    conn.as_mut().graceful_shutdown();
                    conn.await
                }
            };
            if let Err(e) = result {
                tracing::debug!(error = %e, "gRPC connection ended with an error");
            }
        })
    })
}

/// HTTP/1 (admin, HTTP door) connections with a request-head deadline and a bounded head
/// buffer of `max_buf` bytes (a longer head is answered 431 by hyper).
fn h1_handler(router: axum::Router, limits: ListenLimits, max_buf: usize) -> Handler {
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .max_buf_size(max_buf.max(H1_MIN_BUF));
    let builder = Arc::new(builder);
    let service = TowerToHyperService::new(router);
    Arc::new(move |tcp, mut stop| {
        let conn = builder.serve_connection(TokioIo::new(tcp), service.clone());
        Box::pin(async move {
            tokio::pin!(conn);
            let result = tokio::select! {
                r = conn.as_mut() => r,
                _ = stopped(&mut stop) => {
                    conn.as_mut().graceful_shutdown();
                    conn.await
                }
            };
            if let Err(e) = result {
                tracing::debug!(error = %e, "admin connection ended with an error");
            }
        })
    })
}

/// An IO that fails with `TimedOut` unless its first `needed` bytes arrive within `timeout`.
/// hyper's HTTP/2 server has no handshake timeout: a peer that sends nothing (or half the
/// preface) would otherwise hold its descriptor forever, and GOAWAY cannot reach it either.
struct FirstBytesDeadline<T> {
    inner: T,
    needed: usize,
    deadline: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl<T> FirstBytesDeadline<T> {
    fn new(inner: T, needed: usize, timeout: Duration) -> Self {
        FirstBytesDeadline {
            inner,
            needed,
            deadline: Some(Box::pin(tokio::time::sleep(timeout))),
        }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for FirstBytesDeadline<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        if let Some(d) = self.deadline.as_mut()
            && d.as_mut().poll(cx).is_ready()
        {
            return Poll::Ready(Err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                "no protocol preface within listen.header_read_timeout",
            )));
        }
        let before = buf.filled().len();
        let r = Pin::new(&mut self.inner).poll_read(cx, buf);
        if let Poll::Ready(Ok(())) = r
            && self.deadline.is_some()
        {
            let got = buf.filled().len() - before;
            self.needed = self.needed.saturating_sub(got);
            if self.needed == 0 {
                self.deadline = None;
            }
        }
        r
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for FirstBytesDeadline<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}
