//! Shared test harness: a controllable local IdP (discovery + JWKS over HTTP on 127.0.0.1:0,
//! keys the test generates, hit counters, failure modes), the real server on port 0, and a real
//! tonic client.
#![allow(dead_code)]

use std::collections::HashMap;
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::get;
use envoy_types::pb::envoy::config::core::v3::{HeaderMap, HeaderValue};
use envoy_types::pb::envoy::service::auth::v3::attribute_context::{HttpRequest, Request};
use envoy_types::pb::envoy::service::auth::v3::authorization_client::AuthorizationClient;
use envoy_types::pb::envoy::service::auth::v3::check_response::HttpResponse;
use envoy_types::pb::envoy::service::auth::v3::{AttributeContext, CheckRequest, CheckResponse};
use oidc_authz::config;
use oidc_authz::observe::metrics::Metrics;
use oidc_authz::ops::state::ServerState;
use oidc_authz::run::RunningServer;
use oidc_authz::testkit::TestKey;

pub const MODE_UP: u8 = 0;
pub const MODE_500: u8 = 1;
pub const MODE_GARBAGE: u8 = 2;
pub const MODE_SLOW: u8 = 3;
pub const MODE_404: u8 = 4;
/// `/certs` redirects to the same server under another host name (`localhost`).
pub const MODE_REDIRECT_OFF_HOST: u8 = 5;
/// Discovery names a plain-http, non-loopback `jwks_uri`.
pub const MODE_INSECURE_JWKS_URI: u8 = 6;

pub struct IdpState {
    pub jwks: Mutex<String>,
    pub jwks_hits: AtomicU64,
    pub discovery_hits: AtomicU64,
    pub mode: AtomicU8,
    pub issuer: Mutex<String>,
    pub cache_control: Mutex<Option<String>>,
    /// RFC 7662: token → answer (absent: `{"active": false}`).
    pub introspection: Mutex<HashMap<String, serde_json::Value>>,
    /// The `Authorization` header the introspection endpoint requires.
    pub introspection_auth: Mutex<String>,
    pub introspection_hits: AtomicU64,
    pub introspection_down: std::sync::atomic::AtomicBool,
}

/// A local OIDC issuer: `{base}/.well-known/openid-configuration` and `{base}/certs`.
pub struct Idp {
    pub issuer: String,
    pub state: Arc<IdpState>,
    _task: tokio::task::JoinHandle<()>,
}

impl Idp {
    pub async fn start(keys: &[&TestKey]) -> Idp {
        let state = Arc::new(IdpState {
            jwks: Mutex::new(oidc_authz::testkit::jwks(keys)),
            jwks_hits: AtomicU64::new(0),
            discovery_hits: AtomicU64::new(0),
            mode: AtomicU8::new(MODE_UP),
            issuer: Mutex::new(String::new()),
            cache_control: Mutex::new(None),
            introspection: Mutex::new(HashMap::new()),
            introspection_auth: Mutex::new(String::new()),
            introspection_hits: AtomicU64::new(0),
            introspection_down: std::sync::atomic::AtomicBool::new(false),
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let issuer = format!("http://{addr}/realms/test");
        *state.issuer.lock().unwrap() = issuer.clone();
        let app = Router::new()
            .route(
                "/realms/test/.well-known/openid-configuration",
                get(discovery),
            )
            .route("/realms/test/certs", get(certs))
            .route("/realms/test/introspect", axum::routing::post(introspect))
            .with_state(state.clone());
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Idp {
            issuer,
            state,
            _task: task,
        }
    }

    pub fn set_keys(&self, keys: &[&TestKey]) {
        *self.state.jwks.lock().unwrap() = oidc_authz::testkit::jwks(keys);
    }

    pub fn set_mode(&self, mode: u8) {
        self.state.mode.store(mode, Ordering::SeqCst);
    }

    pub fn jwks_hits(&self) -> u64 {
        self.state.jwks_hits.load(Ordering::SeqCst)
    }

    pub fn set_introspection(&self, token: &str, answer: serde_json::Value) {
        self.state
            .introspection
            .lock()
            .unwrap()
            .insert(token.to_owned(), answer);
    }

    pub fn introspection_hits(&self) -> u64 {
        self.state.introspection_hits.load(Ordering::SeqCst)
    }

    pub fn discovery_hits(&self) -> u64 {
        self.state.discovery_hits.load(Ordering::SeqCst)
    }
}

async fn discovery(State(s): State<Arc<IdpState>>) -> impl IntoResponse {
    s.discovery_hits.fetch_add(1, Ordering::SeqCst);
    if s.mode.load(Ordering::SeqCst) == MODE_500 {
        return (StatusCode::INTERNAL_SERVER_ERROR, String::new());
    }
    let iss = s.issuer.lock().unwrap().clone();
    let jwks_uri = if s.mode.load(Ordering::SeqCst) == MODE_INSECURE_JWKS_URI {
        "http://idp.example.org/certs".to_string()
    } else {
        format!("{iss}/certs")
    };
    (
        StatusCode::OK,
        serde_json::json!({"issuer": iss, "jwks_uri": jwks_uri, "token_endpoint": format!("{iss}/token"),
                           "introspection_endpoint": format!("{iss}/introspect")})
            .to_string(),
    )
}

async fn introspect(
    State(s): State<Arc<IdpState>>,
    headers: axum::http::HeaderMap,
    body: String,
) -> axum::response::Response {
    s.introspection_hits.fetch_add(1, Ordering::SeqCst);
    if s.introspection_down.load(Ordering::SeqCst) {
        return (StatusCode::SERVICE_UNAVAILABLE, "down").into_response();
    }
    let auth = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if auth != s.introspection_auth.lock().unwrap().as_str() {
        return (StatusCode::UNAUTHORIZED, "bad client credentials").into_response();
    }
    let token = body
        .split('&')
        .find_map(|kv| kv.strip_prefix("token="))
        .map(|t| {
            t.replace("%2B", "+")
                .replace("%2F", "/")
                .replace("%3D", "=")
        })
        .unwrap_or_default();
    let answer = s
        .introspection
        .lock()
        .unwrap()
        .get(&token)
        .cloned()
        .unwrap_or(serde_json::json!({"active": false}));
    (StatusCode::OK, answer.to_string()).into_response()
}

async fn certs(State(s): State<Arc<IdpState>>) -> axum::response::Response {
    s.jwks_hits.fetch_add(1, Ordering::SeqCst);
    match s.mode.load(Ordering::SeqCst) {
        MODE_500 => (StatusCode::INTERNAL_SERVER_ERROR, "boom").into_response(),
        MODE_404 => (StatusCode::NOT_FOUND, "gone").into_response(),
        MODE_GARBAGE => (StatusCode::OK, "{not json").into_response(),
        MODE_REDIRECT_OFF_HOST => {
            let iss = s.issuer.lock().unwrap().replace("127.0.0.1", "localhost");
            (
                StatusCode::FOUND,
                [("location", format!("{iss}/certs"))],
                "",
            )
                .into_response()
        }
        MODE_SLOW => {
            tokio::time::sleep(Duration::from_secs(30)).await;
            (StatusCode::OK, s.jwks.lock().unwrap().clone()).into_response()
        }
        _ => {
            let body = s.jwks.lock().unwrap().clone();
            match s.cache_control.lock().unwrap().clone() {
                Some(cc) => (StatusCode::OK, [("cache-control", cc)], body).into_response(),
                None => (StatusCode::OK, body).into_response(),
            }
        }
    }
}

/// Start the real server (gRPC + admin on 127.0.0.1:0) with this config text.
pub async fn start_server(yaml: &str) -> RunningServer {
    let cfg = config::parse(yaml).unwrap_or_else(|e| panic!("config: {e}"));
    let state =
        ServerState::new(cfg, Arc::new(Metrics::new())).unwrap_or_else(|e| panic!("state: {e}"));
    let any = "127.0.0.1:0".parse().unwrap();
    RunningServer::start(state, any, any).await.unwrap()
}

/// Wait until every key set of the current snapshot whose id contains `needle` has loaded.
pub async fn wait_loaded(server: &RunningServer, needle: &str) {
    for ks in server.state.snapshot().key_sets() {
        if ks.id().contains(needle) {
            assert!(
                ks.wait_loaded(Duration::from_secs(10)).await,
                "key set {} did not load",
                ks.id()
            );
        }
    }
}

pub async fn client(server: &RunningServer) -> AuthorizationClient<tonic::transport::Channel> {
    AuthorizationClient::connect(format!("http://{}", server.grpc_addr))
        .await
        .unwrap()
}

/// A CheckRequest as Envoy sends it (headers map; lower-case names).
pub fn request(method: &str, host: &str, path: &str, headers: &[(&str, &str)]) -> CheckRequest {
    let headers: HashMap<String, String> = headers
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    CheckRequest {
        attributes: Some(AttributeContext {
            request: Some(Request {
                http: Some(HttpRequest {
                    id: "req-1".into(),
                    method: method.into(),
                    host: host.into(),
                    path: path.into(),
                    headers,
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        }),
    }
}

/// The same, as Envoy sends it with `encode_raw_headers: true` (repeated names kept apart).
pub fn raw_request(method: &str, host: &str, path: &str, headers: &[(&str, &str)]) -> CheckRequest {
    let mut r = request(method, host, path, &[]);
    let http = r
        .attributes
        .as_mut()
        .unwrap()
        .request
        .as_mut()
        .unwrap()
        .http
        .as_mut()
        .unwrap();
    http.header_map = Some(HeaderMap {
        headers: headers
            .iter()
            .map(|(k, v)| HeaderValue {
                key: k.to_string(),
                value: String::new(),
                raw_value: v.as_bytes().to_vec(),
            })
            .collect(),
    });
    r
}

pub fn bearer(token: &str) -> String {
    format!("Bearer {token}")
}

/// What a CheckResponse says, flattened for assertions.
#[derive(Debug)]
pub struct Outcome {
    pub grpc_code: i32,
    pub http_status: u16,
    pub reason: Option<String>,
    pub body: serde_json::Value,
    pub headers: HashMap<String, String>,
    pub removed: Vec<String>,
    pub metadata: HashMap<String, String>,
}

impl Outcome {
    pub fn allowed(&self) -> bool {
        self.grpc_code == 0
    }
}

pub fn outcome(resp: &CheckResponse) -> Outcome {
    let grpc_code = resp.status.as_ref().map(|s| s.code).unwrap_or(-1);
    let mut headers = HashMap::new();
    let mut removed = Vec::new();
    let mut http_status = 200;
    let mut body = serde_json::Value::Null;
    match &resp.http_response {
        Some(HttpResponse::OkResponse(ok)) => {
            for h in &ok.headers {
                let hv = h.header.as_ref().unwrap();
                headers.insert(hv.key.clone(), hv.value.clone());
            }
            removed = ok.headers_to_remove.clone();
        }
        Some(HttpResponse::DeniedResponse(d)) => {
            http_status = d.status.as_ref().map(|s| s.code as u16).unwrap_or(0);
            for h in &d.headers {
                let hv = h.header.as_ref().unwrap();
                headers.insert(hv.key.clone(), hv.value.clone());
            }
            body = serde_json::from_str(&d.body).expect("deny body is JSON");
        }
        other => panic!("unexpected http_response {other:?}"),
    }
    let metadata = resp
        .dynamic_metadata
        .as_ref()
        .map(|m| {
            m.fields
                .iter()
                .filter_map(|(k, v)| match &v.kind {
                    Some(envoy_types::pb::google::protobuf::value::Kind::StringValue(s)) => {
                        Some((k.clone(), s.clone()))
                    }
                    _ => None,
                })
                .collect()
        })
        .unwrap_or_default();
    let reason = headers.get("x-authz-reason").cloned();
    Outcome {
        grpc_code,
        http_status,
        reason,
        body,
        headers,
        removed,
        metadata,
    }
}

pub async fn check(
    client: &mut AuthorizationClient<tonic::transport::Channel>,
    req: CheckRequest,
) -> Outcome {
    let resp = client
        .check(req)
        .await
        .expect("Check never fails at the transport level")
        .into_inner();
    outcome(&resp)
}

/// A fresh directory under the system temp dir.
pub fn temp_dir(tag: &str) -> std::path::PathBuf {
    use std::hash::{BuildHasher, Hasher};
    let r = std::collections::hash_map::RandomState::new()
        .build_hasher()
        .finish();
    let d = std::env::temp_dir().join(format!("oidc-authz-{tag}-{}-{r:x}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// `N` distinct loopback ports that were free a moment ago (for the binary, which binds its own
/// sockets). Held together while chosen: ports taken one at a time can come back equal.
pub fn free_ports<const N: usize>() -> [u16; N] {
    let held: [std::net::TcpListener; N] =
        std::array::from_fn(|_| std::net::TcpListener::bind("127.0.0.1:0").unwrap());
    held.map(|l| l.local_addr().unwrap().port())
}

/// The connection-cap check, for any listener: `waiting` (a request on a connection beyond the
/// cap, every slot taken by `holders`) is not served while the slots stay taken, and is served
/// once one holder lets go. Returns what `waiting` returned.
pub async fn served_only_once_a_slot_frees<H, T>(
    holders: &mut Vec<H>,
    waiting: tokio::task::JoinHandle<T>,
) -> T {
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        !waiting.is_finished(),
        "a connection beyond the connection cap was served"
    );
    holders.pop();
    tokio::time::timeout(Duration::from_secs(10), waiting)
        .await
        .expect("served once a slot is free")
        .unwrap()
}

/// Poll `cond` every 10 ms until it holds; panic with `what` after `deadline`. The way to wait for
/// something that happens on its own time: no fixed sleep that a slow machine outruns.
pub async fn wait_until(what: &str, deadline: Duration, mut cond: impl FnMut() -> bool) {
    let t = std::time::Instant::now();
    while !cond() {
        assert!(
            t.elapsed() < deadline,
            "timed out after {deadline:?}: {what}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// The fixture the end-to-end suites share: a local IdP, an RS256 key (`rsa`) and an ES256 key
/// (`ec`, kid `ec-1`), the real server on port 0 with a config the suite names, and a client.
pub struct Fx {
    pub idp: Idp,
    pub rsa: TestKey,
    pub ec: TestKey,
    pub server: RunningServer,
    pub client: AuthorizationClient<tonic::transport::Channel>,
}

/// How a suite's [`Fx`] differs.
pub struct FxSpec<'a> {
    /// The server's YAML; `ISS` stands for the local IdP's issuer.
    pub config: &'a str,
    /// The RS256 key's `kid`.
    pub rsa_kid: &'a str,
    /// Whether the IdP publishes the ES256 key too.
    pub publish_ec: bool,
}

/// Requests through [`Fx`] go to this host.
pub const FX_HOST: &str = "api.example.org";

impl Fx {
    pub async fn start(spec: FxSpec<'_>) -> Fx {
        let rsa = TestKey::generate(oidc_authz::keys::Alg::RS256, spec.rsa_kid);
        let ec = TestKey::generate(oidc_authz::keys::Alg::ES256, "ec-1");
        let idp = if spec.publish_ec {
            Idp::start(&[&rsa, &ec]).await
        } else {
            Idp::start(&[&rsa]).await
        };
        let server = start_server(&spec.config.replace("ISS", &idp.issuer)).await;
        wait_loaded(&server, "/realms/test").await;
        let client = client(&server).await;
        Fx {
            idp,
            rsa,
            ec,
            server,
            client,
        }
    }

    /// `GET path` with this bearer token, if any.
    pub async fn get(&mut self, path: &str, auth: Option<&str>) -> Outcome {
        self.call("GET", path, auth).await
    }

    /// `method path` with this bearer token, if any.
    pub async fn call(&mut self, method: &str, path: &str, auth: Option<&str>) -> Outcome {
        let b = auth.map(bearer);
        let mut h = vec![];
        if let Some(b) = &b {
            h.push(("authorization", b.as_str()));
        }
        self.get_with_method(method, path, &h).await
    }

    /// `GET path` with these headers.
    pub async fn get_with(&mut self, path: &str, headers: &[(&str, &str)]) -> Outcome {
        self.get_with_method("GET", path, headers).await
    }

    async fn get_with_method(
        &mut self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
    ) -> Outcome {
        check(&mut self.client, request(method, FX_HOST, path, headers)).await
    }

    /// `GET /api/x` with this raw Authorization header value.
    pub async fn with_authorization(&mut self, value: &str) -> Outcome {
        self.get_with("/api/x", &[("authorization", value)]).await
    }

    /// Any CheckRequest.
    pub async fn send(&mut self, req: CheckRequest) -> Outcome {
        check(&mut self.client, req).await
    }
}
