//! The HTTP authorization API (DESIGN §9, issue 13) through a real in-process server
//! (`RunningServer`, `listen.http` on port 0), spoken as raw HTTP/1 over TCP so that every byte
//! is under the test's control: the answers of both endpoints, and bad input (issue 13 item 6) —
//! missing / duplicate / non-UTF-8 headers, absolute-form and `*` URIs (as described URIs and as the
//! door's own request target), oversized heads, HTTP/1.0, the connection cap,
//! pipelining, slow clients — each a clear 4xx or deny, never a 5xx, a hang or a panic.

#![allow(clippy::unwrap_used)]

mod common;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use oidc_authz::observe::metrics::Metrics;
use oidc_authz::ops::state::ServerState;
use oidc_authz::run::RunningServer;
use oidc_authz::testkit::{TestKey, claims};
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const ISS: &str = "https://issuer.example.org";
const CLAIM_HEADERS: [&str; 4] = [
    "x-auth-subject",
    "x-auth-roles",
    "x-auth-other",
    "x-authz-client",
];

struct Fx {
    server: RunningServer,
    http: SocketAddr,
    key: TestKey,
}

async fn fx() -> Fx {
    fx_with("header_read_timeout: 1s").await
}

/// The fixture with these `listen` settings (besides the three addresses).
async fn fx_with(listen: &str) -> Fx {
    let dir = std::env::temp_dir().join(format!(
        "oidc-authz-http-door-{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    let key = TestKey::generate(oidc_authz::keys::Alg::ES256, "k");
    let keys = dir.join("keys.json");
    std::fs::write(&keys, oidc_authz::testkit::jwks(&[&key])).unwrap();
    let other_keys = dir.join("other.json");
    std::fs::write(&other_keys, oidc_authz::testkit::jwks(&[&key])).unwrap();
    let yaml = format!(
        r#"listen: {{ grpc: 127.0.0.1:0, admin: 127.0.0.1:0, http: 127.0.0.1:0, {listen} }}
clients:
  - name: app
    issuer: {ISS}
    jwks_file: {}
    audiences: [app]
    algorithms: [ES256]
    roles: [roles]
    headers:
      x-auth-subject: sub
      x-auth-roles: roles
  - name: other
    issuer: {ISS}
    jwks_file: {}
    audiences: [other]
    algorithms: [ES256]
    headers:
      x-auth-other: sub
rules:
  - {{ name: public, match: {{ prefix: /public }}, auth: none }}
  - {{ name: write, match: {{ prefix: /api, methods: [DELETE] }}, roles: {{ all_of: [editor] }} }}
  - {{ name: api, match: {{ prefix: /api }} }}
"#,
        keys.display(),
        other_keys.display()
    );
    let cfg = oidc_authz::config::parse(&yaml).unwrap();
    let state = ServerState::new(cfg, Arc::new(Metrics::new())).unwrap();
    let any = "127.0.0.1:0".parse().unwrap();
    let server = RunningServer::start(state, any, any).await.unwrap();
    let http = server.http_addr.expect("listen.http is bound");
    Fx { server, http, key }
}

impl Fx {
    fn token(&self, roles: &[&str]) -> String {
        self.key
            .token(&claims(ISS, json!("app"), json!({"roles": roles})))
    }
}

#[derive(Debug)]
struct Resp {
    status: u16,
    headers: HashMap<String, String>,
    body: Vec<u8>,
}

impl Resp {
    fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap()
    }

    fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).map(String::as_str)
    }

    /// A deny as DESIGN §6 / §9 describe it.
    fn assert_deny(&self, status: u16, code: &str) {
        assert_eq!(self.status, status, "{self:?}");
        assert_eq!(self.header("x-authz-reason"), Some(code), "{self:?}");
        assert_eq!(
            self.header("content-type"),
            Some("application/json"),
            "{self:?}"
        );
        let body = self.json();
        assert_eq!(body["code"], code, "{self:?}");
        assert!(body["description"].as_str().is_some_and(|d| !d.is_empty()));
    }
}

/// Parse every response in `raw` (pipelined answers follow each other; bodies have a length).
fn parse_all(mut raw: &[u8]) -> Vec<Resp> {
    let mut out = Vec::new();
    while let Some(end) = raw.windows(4).position(|w| w == b"\r\n\r\n") {
        let head = String::from_utf8_lossy(&raw[..end]).into_owned();
        let mut lines = head.split("\r\n");
        let status: u16 = lines
            .next()
            .unwrap()
            .split(' ')
            .nth(1)
            .unwrap()
            .parse()
            .unwrap();
        let mut headers = HashMap::new();
        for l in lines {
            let (k, v) = l.split_once(':').unwrap();
            headers.insert(k.trim().to_ascii_lowercase(), v.trim().to_owned());
        }
        let len: usize = headers
            .get("content-length")
            .map_or(0, |v| v.parse().unwrap());
        let body = raw[end + 4..end + 4 + len].to_vec();
        raw = &raw[end + 4 + len..];
        out.push(Resp {
            status,
            headers,
            body,
        });
    }
    out
}

/// Send `bytes`, read until the server closes (bounded by a deadline: a hang fails the test).
async fn exchange(addr: SocketAddr, bytes: &[u8]) -> Vec<u8> {
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    // The server may answer and close before reading everything (an oversized head): a failed
    // write is not the test's concern, what comes back is.
    let _ = tcp.write_all(bytes).await;
    let mut buf = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), tcp.read_to_end(&mut buf))
        .await
        .expect("the door answers and closes, never hangs")
        .ok();
    buf
}

/// One HTTP/1.1 request (`Connection: close`) with these headers.
async fn send(addr: SocketAddr, method: &str, target: &str, headers: &[(&str, &[u8])]) -> Resp {
    let mut req =
        format!("{method} {target} HTTP/1.1\r\nhost: door.example\r\nconnection: close\r\n")
            .into_bytes();
    for (k, v) in headers {
        req.extend_from_slice(k.as_bytes());
        req.extend_from_slice(b": ");
        req.extend_from_slice(v);
        req.extend_from_slice(b"\r\n");
    }
    req.extend_from_slice(b"\r\n");
    let raw = exchange(addr, &req).await;
    let mut all = parse_all(&raw);
    assert_eq!(all.len(), 1, "{}", String::from_utf8_lossy(&raw));
    all.remove(0)
}

async fn forward_auth(fx: &Fx, method: &str, uri: &str, token: Option<&str>) -> Resp {
    let bearer = token.map(|t| format!("Bearer {t}"));
    let mut h: Vec<(&str, &[u8])> = vec![
        ("x-forwarded-method", method.as_bytes()),
        ("x-forwarded-uri", uri.as_bytes()),
    ];
    if let Some(b) = &bearer {
        h.push(("authorization", b.as_bytes()));
    }
    send(fx.http, "GET", "/forward-auth", &h).await
}

fn removed(r: &Resp) -> Vec<String> {
    let mut v: Vec<String> = r
        .header("x-envoy-auth-headers-to-remove")
        .unwrap_or("")
        .split(',')
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty())
        .collect();
    v.sort();
    v
}

#[tokio::test]
async fn forward_auth_allow_answers_200_with_the_claim_headers() {
    let fx = fx().await;
    let tok = fx.token(&["editor", "viewer"]);
    let r = forward_auth(&fx, "GET", "/api/x?y=1", Some(&tok)).await;
    assert_eq!(r.status, 200, "{r:?}");
    assert!(r.body.is_empty());
    assert_eq!(r.header("x-auth-subject"), Some("user-1"));
    assert_eq!(r.header("x-auth-roles"), Some("editor,viewer"));
    assert_eq!(r.header("x-authz-client"), Some("app"));
    assert_eq!(r.header("x-auth-other"), None);
    // the Envoy list is for /ext-authz only
    assert_eq!(r.header("x-envoy-auth-headers-to-remove"), None);
    // any method on the door, and the path alone matters (Caddy appends the original query)
    for m in ["POST", "HEAD", "PUT"] {
        let bearer = format!("Bearer {tok}");
        let r = send(
            fx.http,
            m,
            "/forward-auth?next=/public",
            &[
                ("x-original-method", b"GET"),
                ("x-original-uri", b"/api/x"),
                ("authorization", bearer.as_bytes()),
            ],
        )
        .await;
        assert_eq!(r.status, 200, "{m}: {r:?}");
    }
    fx.server.shutdown().await.unwrap();
}

#[tokio::test]
async fn forward_auth_denies_as_design_section_6() {
    let fx = fx().await;
    let r = forward_auth(&fx, "GET", "/api/x", None).await;
    r.assert_deny(401, "authorization_header_missing");
    assert_eq!(
        r.header("www-authenticate"),
        Some(r#"Bearer realm="oidc-authz""#)
    );
    let r = forward_auth(&fx, "GET", "/api/x", Some("a.b.c")).await;
    r.assert_deny(401, "token_malformed");
    assert!(
        r.header("www-authenticate")
            .unwrap()
            .contains(r#"error="invalid_token""#)
    );
    // the method comes from the proxy's header
    let tok = fx.token(&["viewer"]);
    let r = forward_auth(&fx, "DELETE", "/api/x", Some(&tok)).await;
    r.assert_deny(403, "missing_required_roles");
    assert!(
        r.header("www-authenticate")
            .unwrap()
            .contains(r#"error="insufficient_scope""#)
    );
    forward_auth(&fx, "GET", "/elsewhere", Some(&tok))
        .await
        .assert_deny(403, "no_matching_rule");
    // the query is not part of the matched path
    forward_auth(&fx, "GET", "/api/x?p=/public", None)
        .await
        .assert_deny(401, "authorization_header_missing");
    fx.server.shutdown().await.unwrap();
}

#[tokio::test]
async fn ext_authz_uses_the_request_itself_and_lists_headers_to_remove() {
    let fx = fx().await;
    let tok = fx.token(&["viewer"]);
    let bearer = format!("Bearer {tok}");
    let r = send(
        fx.http,
        "GET",
        "/ext-authz/api/x?q=1",
        &[("authorization", bearer.as_bytes())],
    )
    .await;
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.header("x-auth-subject"), Some("user-1"));
    assert_eq!(r.header("x-authz-client"), Some("app"));
    // every configured claim header it does not set, none it sets
    assert_eq!(removed(&r), vec!["x-auth-other".to_owned()]);
    // X-Forwarded-* / X-Original-* are ignored here
    let r = send(
        fx.http,
        "GET",
        "/ext-authz/api/x",
        &[
            ("x-forwarded-uri", b"/public/x"),
            ("x-original-uri", b"/public/x"),
        ],
    )
    .await;
    r.assert_deny(401, "authorization_header_missing");
    // the request's own method
    send(
        fx.http,
        "DELETE",
        "/ext-authz/api/x",
        &[("authorization", bearer.as_bytes())],
    )
    .await
    .assert_deny(403, "missing_required_roles");
    // anonymous allow: nothing set, every claim header listed
    let r = send(
        fx.http,
        "GET",
        "/ext-authz/public/x",
        &[("x-auth-subject", b"admin")],
    )
    .await;
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.header("x-auth-subject"), None);
    let mut all: Vec<String> = CLAIM_HEADERS.iter().map(|s| (*s).to_owned()).collect();
    all.sort();
    assert_eq!(removed(&r), all);
    // path handling is the gRPC Check's: encoded slash, no path at all
    send(fx.http, "GET", "/ext-authz/api%2Fx", &[])
        .await
        .assert_deny(400, "invalid_path");
    send(fx.http, "GET", "/ext-authz?x=1", &[])
        .await
        .assert_deny(400, "invalid_path");
    // absolute-form request target: the path is what counts
    let r = send(
        fx.http,
        "GET",
        "http://door.example/ext-authz/public/y",
        &[],
    )
    .await;
    assert_eq!(r.status, 200, "{r:?}");
    fx.server.shutdown().await.unwrap();
}

#[tokio::test]
async fn forward_auth_bad_input_is_a_clear_400() {
    let fx = fx().await;
    let tok = fx.token(&["viewer"]);
    let bearer = format!("Bearer {tok}");
    let auth: (&str, &[u8]) = ("authorization", bearer.as_bytes());
    // missing method or URI header
    for h in [
        vec![auth],
        vec![auth, ("x-forwarded-method", &b"GET"[..])],
        vec![auth, ("x-original-uri", &b"/api/x"[..])],
        vec![
            auth,
            ("x-forwarded-method", &b""[..]),
            ("x-forwarded-uri", &b"/api/x"[..]),
        ],
    ] {
        send(fx.http, "GET", "/forward-auth", &h)
            .await
            .assert_deny(400, "invalid_request");
    }
    // the same describing header twice, or not UTF-8
    send(
        fx.http,
        "GET",
        "/forward-auth",
        &[
            auth,
            ("x-forwarded-method", b"GET"),
            ("x-forwarded-uri", b"/api/x"),
            ("x-forwarded-uri", b"/public/x"),
        ],
    )
    .await
    .assert_deny(400, "invalid_request");
    send(
        fx.http,
        "GET",
        "/forward-auth",
        &[
            auth,
            ("x-forwarded-method", b"GET"),
            ("x-forwarded-uri", b"/api/\xff\xfe"),
        ],
    )
    .await
    .assert_deny(400, "invalid_request");
    // absolute-form, `*`, relative, encoded slash, spaces and non-ASCII: invalid_path
    for uri in [
        "http://evil.example/api/x",
        "*",
        "api/x",
        "/api%2Fx",
        "/api/x y",
        "/api/\u{e9}",
    ] {
        send(
            fx.http,
            "GET",
            "/forward-auth",
            &[
                auth,
                ("x-forwarded-method", b"GET"),
                ("x-forwarded-uri", uri.as_bytes()),
            ],
        )
        .await
        .assert_deny(400, "invalid_path");
    }
    // a non-UTF-8 Authorization value is never a token
    send(
        fx.http,
        "GET",
        "/forward-auth",
        &[
            ("authorization", b"Bearer \xff\xfe"),
            ("x-forwarded-method", b"GET"),
            ("x-forwarded-uri", b"/api/x"),
        ],
    )
    .await
    .assert_deny(401, "token_malformed");
    // not an endpoint of the door
    assert_eq!(
        send(fx.http, "GET", "/forward-authx", &[]).await.status,
        404
    );
    assert_eq!(send(fx.http, "OPTIONS", "*", &[]).await.status, 404);
    fx.server.shutdown().await.unwrap();
}

#[tokio::test]
async fn oversized_heads_http10_pipelining_and_slow_clients() {
    let fx = fx().await;
    // over listen.max_request_bytes (64 KiB): a JSON deny
    let big = "x".repeat(70 * 1024);
    send(
        fx.http,
        "GET",
        "/forward-auth",
        &[
            ("x-forwarded-method", b"GET"),
            ("x-forwarded-uri", b"/public/x"),
            ("x-big", big.as_bytes()),
        ],
    )
    .await
    .assert_deny(400, "request_too_large");
    // far over it (more than twice the limit: hyper's head buffer): 431 and the connection is closed
    let huge = "x".repeat(200 * 1024);
    let raw = exchange(
        fx.http,
        format!("GET /forward-auth HTTP/1.1\r\nhost: h\r\nx-huge: {huge}\r\n\r\n").as_bytes(),
    )
    .await;
    let r = parse_all(&raw);
    assert_eq!(
        r.first().map(|r| r.status),
        Some(431),
        "{}",
        String::from_utf8_lossy(&raw[..raw.len().min(200)])
    );
    // HTTP/1.0
    let raw = exchange(
        fx.http,
        b"GET /forward-auth HTTP/1.0\r\nx-forwarded-method: GET\r\nx-forwarded-uri: /public/x\r\n\r\n",
    )
    .await;
    let r = parse_all(&raw);
    assert_eq!(r.len(), 1);
    assert_eq!(r[0].status, 200, "{r:?}");
    // pipelining: two requests in one write, two answers in order
    let raw = exchange(
        fx.http,
        b"GET /forward-auth HTTP/1.1\r\nhost: h\r\nx-forwarded-method: GET\r\nx-forwarded-uri: /api/x\r\n\r\n\
          GET /forward-auth HTTP/1.1\r\nhost: h\r\nx-forwarded-method: GET\r\nx-forwarded-uri: /public/x\r\nconnection: close\r\n\r\n",
    )
    .await;
    let r = parse_all(&raw);
    assert_eq!(r.len(), 2, "{}", String::from_utf8_lossy(&raw));
    r[0].assert_deny(401, "authorization_header_missing");
    assert_eq!(r[1].status, 200);
    // a request with a body: the body is not read, the answer still comes
    let raw = exchange(
        fx.http,
        b"POST /forward-auth HTTP/1.1\r\nhost: h\r\nx-forwarded-method: GET\r\nx-forwarded-uri: /public/x\r\ncontent-length: 5\r\nconnection: close\r\n\r\nhello",
    )
    .await;
    assert_eq!(parse_all(&raw)[0].status, 200);
    // a slow client (half a head, then nothing) is dropped after header_read_timeout (1 s)
    let started = Instant::now();
    let mut tcp = TcpStream::connect(fx.http).await.unwrap();
    tcp.write_all(b"GET /forward-auth HTTP/1.1\r\nx-forw")
        .await
        .unwrap();
    let mut buf = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), tcp.read_to_end(&mut buf))
        .await
        .expect("a slow client is closed after header_read_timeout")
        .ok();
    assert!(started.elapsed() < Duration::from_secs(5));
    if let Some(r) = parse_all(&buf).first() {
        assert!((400..500).contains(&r.status), "{r:?}");
    }
    // the door still serves
    assert_eq!(
        forward_auth(&fx, "GET", "/public/x", None).await.status,
        200
    );
    fx.server.shutdown().await.unwrap();
}

/// The door's own request target in absolute form (RFC 9112 §3.2.2: a server must accept it)
/// names the endpoint by its path, so the answer is the origin form's; the asterisk form
/// (`GET *`, `OPTIONS *`) is no endpoint of the door: 404, never a decision or a 5xx.
#[tokio::test]
async fn absolute_and_asterisk_form_request_targets() {
    let fx = fx().await;
    let bearer = format!("Bearer {}", fx.token(&["viewer"]));
    let auth: (&str, &[u8]) = ("authorization", bearer.as_bytes());
    let target = "http://door.example/ext-authz/api/x?q=1";
    send(fx.http, "GET", target, &[])
        .await
        .assert_deny(401, "authorization_header_missing");
    let r = send(fx.http, "GET", target, &[auth]).await;
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.header("x-authz-client"), Some("app"), "{r:?}");
    let described: [(&str, &[u8]); 2] = [
        ("x-forwarded-method", b"DELETE"),
        ("x-forwarded-uri", b"/api/x"),
    ];
    let h = [described[0], described[1], auth];
    send(fx.http, "GET", "http://door.example/forward-auth", &h)
        .await
        .assert_deny(403, "missing_required_roles");
    for method in ["GET", "OPTIONS"] {
        assert_eq!(send(fx.http, method, "*", &[auth]).await.status, 404);
    }
    fx.server.shutdown().await.unwrap();
}

/// `listen.max_connections` bounds the door's connections as it does the Check port's: with
/// the cap reached a new connection waits (it is not served), and it is served as soon as one
/// closes.
#[tokio::test]
async fn at_the_connection_cap_a_new_connection_waits_and_the_door_recovers() {
    let fx = fx_with("max_connections: 3, header_read_timeout: 60s").await;
    let request = b"GET /forward-auth HTTP/1.1\r\nhost: h\r\nx-forwarded-method: GET\r\nx-forwarded-uri: /public/x\r\n\r\n";
    let mut holders = Vec::new();
    for _ in 0..3 {
        // One answered keep-alive request each: the connection is accepted and stays open.
        let mut tcp = TcpStream::connect(fx.http).await.unwrap();
        tcp.write_all(request).await.unwrap();
        let mut status = [0u8; 12];
        tokio::time::timeout(Duration::from_secs(5), tcp.read_exact(&mut status))
            .await
            .expect("a connection under the cap is served")
            .unwrap();
        assert_eq!(&status, b"HTTP/1.1 200");
        holders.push(tcp);
    }
    let addr = fx.http;
    let waiting = tokio::spawn(async move {
        exchange(
            addr,
            b"GET /forward-auth HTTP/1.1\r\nhost: h\r\nx-forwarded-method: GET\r\nx-forwarded-uri: /public/x\r\nconnection: close\r\n\r\n",
        )
        .await
    });
    let raw = common::served_only_once_a_slot_frees(&mut holders, waiting).await;
    assert_eq!(parse_all(&raw)[0].status, 200);
    drop(holders);
    fx.server.shutdown().await.unwrap();
}

#[tokio::test]
async fn metrics_and_the_grpc_door_share_one_decision_path() {
    let fx = fx().await;
    let tok = fx.token(&["viewer"]);
    forward_auth(&fx, "GET", "/api/x", Some(&tok)).await;
    send(fx.http, "GET", "/forward-auth", &[]).await;
    send(fx.http, "GET", "/ext-authz/api/x", &[]).await;
    let text = reqwest::get(format!("http://{}/metrics", fx.server.admin_addr))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for want in [
        r#"oidc_authz_checks_total{api="forward_auth",client="app",decision="allow",reason="",rule="api"} 1"#,
        r#"oidc_authz_checks_total{api="forward_auth",client="",decision="deny",reason="invalid_request",rule=""} 1"#,
        r#"oidc_authz_checks_total{api="envoy_http",client="",decision="deny",reason="authorization_header_missing",rule="api"} 1"#,
        r#"oidc_authz_check_duration_seconds_count{api="forward_auth"} 2"#,
        r#"oidc_authz_check_duration_seconds_count{api="envoy_http"} 1"#,
    ] {
        assert!(text.contains(want), "missing {want}\n{text}");
    }
    // the same request through the gRPC door: the same decision (one path, one answer builder)
    let snap = fx.server.state.snapshot();
    let bearer = format!("Bearer {tok}");
    let mut headers = oidc_authz::core::token::Headers::new();
    headers.push("authorization", &bearer);
    let input = oidc_authz::core::check::CheckInput {
        method: "GET",
        host: "door.example",
        path: "/api/x",
        headers,
        ..Default::default()
    };
    let d = oidc_authz::core::check::decide(&snap, &input, oidc_authz::testkit::now()).await;
    let oidc_authz::decision::Answer::Allow(a) = d.into_answer() else {
        panic!("allow expected")
    };
    let r = send(
        fx.http,
        "GET",
        "/ext-authz/api/x",
        &[("authorization", bearer.as_bytes())],
    )
    .await;
    for (k, v) in &a.set_headers {
        assert_eq!(r.header(k), Some(v.as_str()), "{k}");
    }
    let mut want = a.remove_headers.clone();
    want.sort();
    assert_eq!(removed(&r), want);
    fx.server.shutdown().await.unwrap();
}

// ---- sender-constrained tokens through the HTTP door (DESIGN §9 + §10) ----------------------

/// A DPoP key and the proofs it makes (RFC 9449 §4.2).
struct Holder {
    key: TestKey,
}

impl Holder {
    fn public_jwk(&self) -> serde_json::Value {
        let mut jwk = self.key.jwk(false);
        let m = jwk.as_object_mut().unwrap();
        m.remove("kid");
        m.remove("use");
        jwk
    }

    fn jkt(&self) -> String {
        let jwk = self.public_jwk();
        URL_SAFE_NO_PAD.encode(
            oidc_authz::core::binding::dpop::jwk_thumbprint(jwk.as_object().unwrap()).unwrap(),
        )
    }

    fn proof(&self, method: &str, htu: &str, token: &str) -> String {
        static JTI: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let jti = JTI.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let ath = String::from_utf8(oidc_authz::core::binding::dpop::ath(token).to_vec()).unwrap();
        self.key.sign(
            &json!({"typ": "dpop+jwt", "alg": self.key.alg.name(), "jwk": self.public_jwk()}),
            &json!({"jti": format!("jti-{jti}"), "htm": method, "htu": htu,
                    "iat": oidc_authz::testkit::now(), "ath": ath}),
        )
    }
}

const SECRET: &str = "http-door-test-nonce-secret-0123456789abcdef";

/// A server whose clients bind tokens: `dpop` (DPoP), `peer` (cnf honoured with the defaults:
/// mTLS certificate from the peer), `xfcc` (certificate from x-forwarded-client-cert),
/// `strict` (binding.require), `nonce` (DPoP with server nonces).
async fn bound_fx() -> (RunningServer, SocketAddr, TestKey) {
    let dir = std::env::temp_dir().join(format!(
        "oidc-authz-http-door-bound-{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    let key = TestKey::generate(oidc_authz::keys::Alg::ES256, "k");
    let keys = dir.join("keys.json");
    std::fs::write(&keys, oidc_authz::testkit::jwks(&[&key])).unwrap();
    let f = keys.display();
    let yaml = format!(
        r#"listen: {{ grpc: 127.0.0.1:0, admin: 127.0.0.1:0, http: 127.0.0.1:0 }}
clients:
  - {{ name: dpop, issuer: {ISS}, jwks_file: {f}, audiences: [dpop], algorithms: [ES256], headers: {{ x-auth-subject: sub }}, binding: {{ dpop: {{ algorithms: [ES256] }} }} }}
  - {{ name: peer, issuer: {ISS}, jwks_file: {f}, audiences: [peer], algorithms: [ES256] }}
  - {{ name: xfcc, issuer: {ISS}, jwks_file: {f}, audiences: [xfcc], algorithms: [ES256], binding: {{ mtls: {{ certificate: xfcc }} }} }}
  - {{ name: strict, issuer: {ISS}, jwks_file: {f}, audiences: [strict], algorithms: [ES256], binding: {{ require: true }} }}
  - {{ name: nonce, issuer: {ISS}, jwks_file: {f}, audiences: [nonce], algorithms: [ES256], binding: {{ dpop: {{ algorithms: [ES256], nonce: true, nonce_secret: "${{NONCE_SECRET}}" }} }} }}
rules:
  - {{ name: all, match: {{ prefix: / }} }}
"#
    );
    let cfg = oidc_authz::config::parse_with_env(&yaml, &|v| {
        (v == "NONCE_SECRET").then(|| SECRET.to_owned())
    })
    .unwrap();
    let state = ServerState::new(cfg, Arc::new(Metrics::new())).unwrap();
    let any = "127.0.0.1:0".parse().unwrap();
    let server = RunningServer::start(state, any, any).await.unwrap();
    let http = server.http_addr.unwrap();
    (server, http, key)
}

#[tokio::test]
async fn dpop_htu_is_checked_against_the_forwarded_scheme_host_and_path() {
    let (server, http, issuer) = bound_fx().await;
    let holder = Holder {
        key: TestKey::generate(oidc_authz::keys::Alg::ES256, "holder"),
    };
    let token = issuer.token(&claims(
        ISS,
        json!("dpop"),
        json!({"cnf": {"jkt": holder.jkt()}}),
    ));
    let auth = format!("DPoP {token}");
    let fa = |proof: String, proto: Option<&'static str>| {
        let auth = auth.clone();
        async move {
            let mut h: Vec<(&str, Vec<u8>)> = vec![
                ("x-forwarded-method", b"POST".to_vec()),
                ("x-forwarded-uri", b"/orders/7?page=2".to_vec()),
                ("x-forwarded-host", b"App.Example:443".to_vec()),
                ("authorization", auth.into_bytes()),
                ("dpop", proof.into_bytes()),
            ];
            if let Some(p) = proto {
                h.push(("x-forwarded-proto", p.as_bytes().to_vec()));
            }
            let h: Vec<(&str, &[u8])> = h.iter().map(|(k, v)| (*k, v.as_slice())).collect();
            send(http, "GET", "/forward-auth", &h).await
        }
    };
    // /forward-auth: scheme from X-Forwarded-Proto, host from X-Forwarded-Host (case and
    // default port ignored), path from X-Forwarded-Uri (query ignored)
    let ok = fa(
        holder.proof("POST", "https://app.example/orders/7", &token),
        Some("https"),
    )
    .await;
    assert_eq!(ok.status, 200, "{ok:?}");
    assert!(ok.header("x-auth-subject").is_some(), "{ok:?}");
    // the proof was made for http://, the proxy says https: refused
    let r = fa(
        holder.proof("POST", "http://app.example/orders/7", &token),
        Some("https"),
    )
    .await;
    r.assert_deny(401, "invalid_dpop_proof");
    let www = r.header("www-authenticate").unwrap();
    assert!(
        www.contains("DPoP realm=\"oidc-authz\"") && www.contains("error=\"invalid_dpop_proof\""),
        "{www}"
    );
    // no X-Forwarded-Proto: the scheme is http (an https proof does not fit)
    fa(
        holder.proof("POST", "https://app.example/orders/7", &token),
        None,
    )
    .await
    .assert_deny(401, "invalid_dpop_proof");
    // wrong method in the proof (the proxy's method header is the request's method)
    fa(
        holder.proof("GET", "https://app.example/orders/7", &token),
        Some("https"),
    )
    .await
    .assert_deny(401, "invalid_dpop_proof");
    // the downgrade: a DPoP-bound token as Bearer
    let bearer = format!("Bearer {token}");
    send(
        http,
        "GET",
        "/forward-auth",
        &[
            ("x-forwarded-method", b"GET"),
            ("x-forwarded-uri", b"/orders"),
            ("authorization", bearer.as_bytes()),
        ],
    )
    .await
    .assert_deny(401, "binding_mismatch");

    // /ext-authz: the request's own method, Host and path; scheme from X-Forwarded-Proto
    let ext = |proof: String| {
        let auth = auth.clone();
        async move {
            let raw = format!(
                "DELETE /ext-authz/orders/7?x=1 HTTP/1.1\r\nhost: app.example\r\nx-forwarded-proto: https\r\n\
                 authorization: {auth}\r\ndpop: {proof}\r\nconnection: close\r\n\r\n"
            );
            let mut all = parse_all(&exchange(http, raw.as_bytes()).await);
            assert_eq!(all.len(), 1);
            all.remove(0)
        }
    };
    let ok = ext(holder.proof("DELETE", "https://app.example/orders/7", &token)).await;
    assert_eq!(ok.status, 200, "{ok:?}");
    ext(holder.proof("DELETE", "https://other.example/orders/7", &token))
        .await
        .assert_deny(401, "invalid_dpop_proof");
    server.shutdown().await.unwrap();
}

#[tokio::test]
async fn mtls_nonce_and_required_bindings_through_the_http_door() {
    let (server, http, issuer) = bound_fx().await;
    let der: &[u8] = b"\x30\x82\x01\x0a the client certificate of this test";
    let x5t = URL_SAFE_NO_PAD.encode(oidc_authz::core::binding::mtls::der_thumbprint(der));
    let hash: String = oidc_authz::core::binding::mtls::der_thumbprint(der)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let other: String = oidc_authz::core::binding::mtls::der_thumbprint(b"another certificate")
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let fa = |aud: &'static str, cnf: serde_json::Value, xfcc: Option<String>| {
        let token = issuer.token(&claims(ISS, json!(aud), json!({ "cnf": cnf })));
        async move {
            let bearer = format!("Bearer {token}");
            let mut h: Vec<(&str, Vec<u8>)> = vec![
                ("x-forwarded-method", b"GET".to_vec()),
                ("x-forwarded-uri", b"/x".to_vec()),
                ("authorization", bearer.into_bytes()),
            ];
            if let Some(x) = xfcc {
                h.push(("x-forwarded-client-cert", x.into_bytes()));
            }
            let h: Vec<(&str, &[u8])> = h.iter().map(|(k, v)| (*k, v.as_slice())).collect();
            send(http, "GET", "/forward-auth", &h).await
        }
    };
    let bound = json!({ "x5t#S256": x5t });
    // certificate: peer — the HTTP door never sees the peer certificate, and a caller's XFCC
    // is not a substitute: fail closed
    fa("peer", bound.clone(), None)
        .await
        .assert_deny(401, "binding_mismatch");
    fa("peer", bound.clone(), Some(format!("Hash={hash}")))
        .await
        .assert_deny(401, "binding_mismatch");
    // certificate: xfcc — the proxy's x-forwarded-client-cert (last element) is read
    let ok = fa("xfcc", bound.clone(), Some(format!("Hash={hash}"))).await;
    assert_eq!(ok.status, 200, "{ok:?}");
    fa("xfcc", bound.clone(), Some(format!("Hash={other}")))
        .await
        .assert_deny(401, "binding_mismatch");
    fa("xfcc", bound.clone(), None)
        .await
        .assert_deny(401, "binding_mismatch");
    // binding.require: an unbound token is refused
    let plain = issuer.token(&claims(ISS, json!("strict"), json!({})));
    let bearer = format!("Bearer {plain}");
    send(
        http,
        "GET",
        "/forward-auth",
        &[
            ("x-forwarded-method", b"GET"),
            ("x-forwarded-uri", b"/x"),
            ("authorization", bearer.as_bytes()),
        ],
    )
    .await
    .assert_deny(401, "binding_required");
    // nonce: the 401 carries a fresh DPoP-Nonce header, and a proof with it is accepted
    let holder = Holder {
        key: TestKey::generate(oidc_authz::keys::Alg::ES256, "holder"),
    };
    let token = issuer.token(&claims(
        ISS,
        json!("nonce"),
        json!({"cnf": {"jkt": holder.jkt()}}),
    ));
    let auth = format!("DPoP {token}");
    let proof = holder.proof("GET", "http://door.example/x", &token);
    let h: [(&str, &[u8]); 4] = [
        ("x-forwarded-method", b"GET"),
        ("x-forwarded-uri", b"/x"),
        ("authorization", auth.as_bytes()),
        ("dpop", proof.as_bytes()),
    ];
    let r = send(http, "GET", "/forward-auth", &h).await;
    r.assert_deny(401, "use_dpop_nonce");
    let nonce = r
        .header("dpop-nonce")
        .expect("a fresh DPoP-Nonce")
        .to_owned();
    assert!(
        r.header("www-authenticate")
            .is_some_and(|w| w.contains("error=\"use_dpop_nonce\"")),
        "{r:?}"
    );
    let ath = String::from_utf8(oidc_authz::core::binding::dpop::ath(&token).to_vec()).unwrap();
    let proof = holder.key.sign(
        &json!({"typ": "dpop+jwt", "alg": "ES256", "jwk": holder.public_jwk()}),
        &json!({"jti": "with-nonce", "htm": "GET", "htu": "http://door.example/x",
                "iat": oidc_authz::testkit::now(), "ath": ath, "nonce": nonce}),
    );
    let h: [(&str, &[u8]); 4] = [
        ("x-forwarded-method", b"GET"),
        ("x-forwarded-uri", b"/x"),
        ("authorization", auth.as_bytes()),
        ("dpop", proof.as_bytes()),
    ];
    let ok = send(http, "GET", "/forward-auth", &h).await;
    assert_eq!(ok.status, 200, "{ok:?}");
    server.shutdown().await.unwrap();
}
