//! Fixtures shared by the criterion benches: keys, a `jwks_file`, a `ServerState` built from YAML
//! (as `tests/handler.rs` does), Check inputs, and a one-shot poll for `check::decide*` (it only
//! awaits on an unknown-kid refetch, which these fixtures never trigger).

#![allow(dead_code, clippy::unwrap_used)]

use std::future::Future;
use std::path::PathBuf;
use std::pin::pin;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};

use oidc_authz::core::check::CheckInput;
use oidc_authz::core::token::Headers;
use oidc_authz::observe::metrics::Metrics;
use oidc_authz::ops::state::ServerState;
use oidc_authz::testkit::TestKey;
use serde_json::{Value, json};

pub const ISS: &str = "https://sso.bench.local/realms/bench";

/// Poll a future once; the decision path must complete without waiting.
pub fn ready<F: Future>(f: F) -> F::Output {
    let mut f = pin!(f);
    match f.as_mut().poll(&mut Context::from_waker(Waker::noop())) {
        Poll::Ready(v) => v,
        Poll::Pending => panic!("the decision awaited (unknown kid refetch?)"),
    }
}

/// A temp dir holding `keys.json` with the given keys' JWKS; removed on drop.
pub struct KeyFile {
    pub dir: PathBuf,
    pub path: PathBuf,
}

impl KeyFile {
    pub fn new(keys: &[&TestKey]) -> KeyFile {
        let dir = std::env::temp_dir().join(format!(
            "oidc-authz-bench-{}-{:x}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("keys.json");
        std::fs::write(&path, oidc_authz::testkit::jwks(keys)).unwrap();
        KeyFile { dir, path }
    }
}

impl Drop for KeyFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// `ServerState::new` must run inside a tokio runtime (key sets start their refresh tasks).
pub fn state(rt: &tokio::runtime::Runtime, yaml: &str) -> Arc<ServerState> {
    let _g = rt.enter();
    let cfg = oidc_authz::config::parse(yaml).unwrap_or_else(|e| panic!("bench config: {e:?}"));
    ServerState::new(cfg, Arc::new(Metrics::new())).unwrap()
}

pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// `n` clients sharing one issuer and one key file (the SSO pattern), audiences app-0..app-{n-1}.
pub fn clients_yaml(n: usize, keys: &KeyFile, algs: &str) -> String {
    let mut y = String::from("clients:\n");
    for i in 0..n {
        y.push_str(&format!(
            "  - name: app-{i}\n    issuer: {ISS}\n    jwks_file: {}\n    audiences: [app-{i}]\n    \
             algorithms: [{algs}]\n    roles: [realm_access.roles]\n    headers: {{ x-auth-subject: sub, x-auth-email: email }}\n",
            keys.path.display()
        ));
    }
    y
}

/// `n` rules; the request path `/api/items` only matches the last one (the worst case of a
/// first-match scan), after `n - 1` prefix rules for other services.
pub fn rules_yaml(n: usize) -> String {
    let mut y =
        String::from("rules:\n  - { name: health, match: { path: /healthz }, auth: none }\n");
    for i in 0..n.saturating_sub(2) {
        y.push_str(&format!(
            "  - {{ name: svc-{i}, match: {{ prefix: /svc-{i}, methods: [GET, POST] }}, roles: {{ any_of: [svc-{i}-user] }} }}\n"
        ));
    }
    y.push_str("  - { name: api, match: { prefix: /api }, roles: { any_of: [viewer, editor] } }\ndefault: deny\n");
    y
}

/// Keycloak-like claims for client `aud`, padded with a `pad` claim to about `size` bytes of token.
pub fn claims(aud: &str, pad: usize) -> Value {
    let now = oidc_authz::testkit::now();
    let mut c = json!({
        "iss": ISS, "aud": aud, "azp": aud, "sub": "f3c1a9e2-bench-user-00000001",
        "iat": now, "exp": now + 3600, "jti": "0000000000000001",
        "email": "user1@example.org", "email_verified": true, "name": "Bench User",
        "preferred_username": "user1", "scope": "openid email profile",
        "realm_access": {"roles": ["viewer", "offline_access", "uma_authorization"]},
    });
    if pad > 0 {
        c["pad"] = json!("x".repeat(pad));
    }
    c
}

/// A token of about `size` bytes (base64 of the claims grows 4/3 per padded byte).
pub fn token_of_size(key: &TestKey, aud: &str, size: usize) -> String {
    let base = key.token(&claims(aud, 0)).len();
    let pad = size.saturating_sub(base) * 3 / 4;
    key.token(&claims(aud, pad))
}

/// The `Authorization` header value and the Check input for `GET /api/items`.
pub fn bearer(token: &str) -> String {
    format!("Bearer {token}")
}

pub fn input<'a>(authorization: &'a str, path: &'a str) -> CheckInput<'a> {
    let mut headers = Headers::with_capacity(4);
    headers.push(":authority", "bench.local");
    headers.push("authorization", authorization);
    headers.push("user-agent", "wrk");
    headers.push("x-request-id", "0000000000000001-bench");
    CheckInput {
        method: "GET",
        host: "bench.local",
        path,
        headers,
        ..Default::default()
    }
}
