//! The allow-all reference ext_authz server for bench/run.sh: answers `OK` to every Check and
//! does no work at all. Its Checks/s (directly, and through Envoy) is the ceiling the gRPC hop
//! itself sets; oidc-authz is measured as a ratio of it. Same tonic settings as
//! `oidc_authz::server` intends (TCP_NODELAY, default multi-thread runtime) so only the decision
//! differs. Note that `Server::tcp_nodelay` is ignored by `serve_with_incoming*` (tonic docs): the
//! option is set on the `TcpIncoming` instead.
//!
//! Options (after the address): `--no-nodelay` leaves Nagle on, for comparison; `--rich` answers
//! like oidc-authz does for the bench's client (two headers to set, `{client, rule, sub}` dynamic
//! metadata) while still doing no work, to measure what the answer's content costs Envoy.
//! `--http`: the HTTP counterpart instead, for the HTTP door (`listen.http`) — HTTP/1.1, an axum
//! `Router` served by hyper's http1 connection builder with TCP_NODELAY, as oidc-authz serves its
//! door (src/server.rs), answering `200` with an empty body to every request on any path.
//!
//!     cargo run --release --example allow_all -- 127.0.0.1:9101 [--no-nodelay] [--rich] [--http]

use std::collections::HashMap;

use envoy_types::ext_authz::v3::pb::{
    Authorization, AuthorizationServer, CheckRequest, CheckResponse, HeaderAppendAction,
    HeaderValue, HeaderValueOption, HttpResponse, OkHttpResponse,
};
use envoy_types::pb::google::protobuf::{Struct, Value, value::Kind};
use envoy_types::pb::google::rpc;
use tonic::transport::server::TcpIncoming;

/// The same allocator as oidc-authz (src/main.rs), so only the decision differs.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

struct AllowAll {
    /// The answer, built once (`--rich`: shaped like oidc-authz's allow).
    answer: CheckResponse,
}

#[tonic::async_trait]
impl Authorization for AllowAll {
    async fn check(
        &self,
        _request: tonic::Request<CheckRequest>,
    ) -> Result<tonic::Response<CheckResponse>, tonic::Status> {
        Ok(tonic::Response::new(self.answer.clone()))
    }
}

fn plain() -> CheckResponse {
    CheckResponse {
        status: Some(rpc::Status::default()), // code 0 = OK
        http_response: Some(HttpResponse::OkResponse(OkHttpResponse::default())),
        dynamic_metadata: None,
    }
}

/// What oidc-authz answers for the bench's client (`headers: {x-auth-subject: sub}`).
fn rich() -> CheckResponse {
    let header = |k: &str, v: &str| HeaderValueOption {
        header: Some(HeaderValue {
            key: k.into(),
            value: v.into(),
            raw_value: Vec::new(),
        }),
        append_action: HeaderAppendAction::OverwriteIfExistsOrAdd as i32,
        ..Default::default()
    };
    let string = |s: &str| Value {
        kind: Some(Kind::StringValue(s.into())),
    };
    let fields = HashMap::from([
        ("rule".to_owned(), string("api")),
        ("client".to_owned(), string("bench-app")),
        ("sub".to_owned(), string("f3c1a9e2-bench-user-00000001")),
    ]);
    CheckResponse {
        status: Some(rpc::Status::default()),
        http_response: Some(HttpResponse::OkResponse(OkHttpResponse {
            headers: vec![
                header("x-auth-subject", "f3c1a9e2-bench-user-00000001"),
                header("x-authz-client", "bench-app"),
            ],
            ..Default::default()
        })),
        dynamic_metadata: Some(Struct { fields }),
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:9101".into());
    let flags: Vec<String> = std::env::args().skip(2).collect();
    let nodelay = !flags.iter().any(|f| f == "--no-nodelay");
    let answer = if flags.iter().any(|f| f == "--rich") {
        rich()
    } else {
        plain()
    };
    let listener = tokio::net::TcpListener::bind(&addr).await?;
    if flags.iter().any(|f| f == "--http") {
        return serve_http(listener, nodelay).await;
    }
    eprintln!(
        "allow-all ext_authz server on {} (TCP_NODELAY {nodelay}, {} answer)",
        listener.local_addr()?,
        if answer.dynamic_metadata.is_some() {
            "rich"
        } else {
            "empty"
        }
    );
    let incoming = TcpIncoming::from(listener).with_nodelay(Some(nodelay));
    tonic::transport::Server::builder()
        .add_service(AuthorizationServer::new(AllowAll { answer }))
        .serve_with_incoming(incoming)
        .await?;
    Ok(())
}

/// `--http`: 200 to every request, one task per connection (the door's shape, minus its limits).
async fn serve_http(
    listener: tokio::net::TcpListener,
    nodelay: bool,
) -> Result<(), Box<dyn std::error::Error>> {
    use hyper_util::rt::{TokioIo, TokioTimer};
    use hyper_util::service::TowerToHyperService;

    eprintln!(
        "allow-all HTTP server on {} (TCP_NODELAY {nodelay}, 200 to everything)",
        listener.local_addr()?
    );
    let router = axum::Router::new().fallback(|| async { axum::http::StatusCode::OK });
    let service = TowerToHyperService::new(router);
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder.timer(TokioTimer::new());
    let builder = std::sync::Arc::new(builder);
    loop {
        let (tcp, _peer) = listener.accept().await?;
        let _ = tcp.set_nodelay(nodelay);
        let (builder, service) = (builder.clone(), service.clone());
        tokio::spawn(async move {
            let _ = builder.serve_connection(TokioIo::new(tcp), service).await;
        });
    }
}
