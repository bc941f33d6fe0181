//! The allow-all reference ext_authz server for bench/run.sh: answers `OK` to every Check and
//! does no work at all. Its Checks/s (directly, and through Envoy) is the ceiling the gRPC hop
//! itself sets; oidc-authz is measured as a ratio of it. Same tonic settings as
//! `oidc_authz::server` intends (TCP_NODELAY, default multi-thread runtime) so only the decision
//! differs. Note that `Server::tcp_nodelay` is ignored by `serve_with_incoming*` (tonic docs): the
//! option is set on the `TcpIncoming` instead. `--no-nodelay` leaves Nagle on, for comparison.
//!
//!     cargo run --release --example allow_all -- 127.0.0.1:9101 [--no-nodelay]

use envoy_types::ext_authz::v3::pb::{
    Authorization, AuthorizationServer, CheckRequest, CheckResponse, HttpResponse, OkHttpResponse,
};
use envoy_types::pb::google::rpc;
use tonic::transport::server::TcpIncoming;

struct AllowAll;

#[tonic::async_trait]
impl Authorization for AllowAll {
    async fn check(
        &self,
        _request: tonic::Request<CheckRequest>,
    ) -> Result<tonic::Response<CheckResponse>, tonic::Status> {
        Ok(tonic::Response::new(CheckResponse {
            status: Some(rpc::Status::default()), // code 0 = OK
            http_response: Some(HttpResponse::OkResponse(OkHttpResponse::default())),
            dynamic_metadata: None,
        }))
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:9101".into());
    let nodelay = std::env::args().nth(2).as_deref() != Some("--no-nodelay");
    let listener = tokio::net::TcpListener::bind(&addr).await?;
    eprintln!(
        "allow-all ext_authz server on {} (TCP_NODELAY {nodelay})",
        listener.local_addr()?
    );
    let incoming = TcpIncoming::from(listener).with_nodelay(Some(nodelay));
    tonic::transport::Server::builder()
        .add_service(AuthorizationServer::new(AllowAll))
        .serve_with_incoming(incoming)
        .await?;
    Ok(())
}
