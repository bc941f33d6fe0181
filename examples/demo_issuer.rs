//! A tiny local OIDC issuer for the demo (never for production): it generates an RS256 key at
//! start, serves `/.well-known/openid-configuration` and `/certs` like a real IdP, and mints
//! tokens at `GET /mint?aud=…&roles=a,b&sub=…&ttl=…` so the demo can show allow and deny
//! without any external IdP.
//!
//!     cargo run --release --example demo_issuer -- 127.0.0.1:8180

use std::collections::HashMap;
use std::sync::Arc;

use axum::Router;
use axum::extract::{RawQuery, State};
use axum::routing::get;
use oidc_authz::keys::Alg;
use oidc_authz::testkit::{TestKey, jwks, now};
use serde_json::json;

struct Issuer {
    url: String,
    key: TestKey,
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:8180".into());
    let listener = tokio::net::TcpListener::bind(&addr).await?;
    let url = format!("http://{}", listener.local_addr()?);
    let issuer = Arc::new(Issuer {
        url: url.clone(),
        key: TestKey::generate(Alg::RS256, "demo-key-1"),
    });
    let app = Router::new()
        .route(
            "/.well-known/openid-configuration",
            get(|State(s): State<Arc<Issuer>>| async move {
                json!({"issuer": s.url, "jwks_uri": format!("{}/certs", s.url)}).to_string()
            }),
        )
        .route(
            "/certs",
            get(|State(s): State<Arc<Issuer>>| async move { jwks(&[&s.key]) }),
        )
        .route("/mint", get(mint))
        .with_state(issuer);
    eprintln!("demo issuer: {url} (discovery, /certs, /mint)");
    axum::serve(listener, app).await?;
    Ok(())
}

async fn mint(State(s): State<Arc<Issuer>>, RawQuery(raw): RawQuery) -> String {
    // Demo values are plain words; no percent-decoding needed.
    let q: HashMap<String, String> = raw
        .unwrap_or_default()
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
    let t = now();
    let ttl: i64 = q.get("ttl").and_then(|v| v.parse().ok()).unwrap_or(300);
    let roles: Vec<&str> = q
        .get("roles")
        .map(|r| r.split(',').filter(|x| !x.is_empty()).collect())
        .unwrap_or_default();
    let claims = json!({
        "iss": s.url,
        "aud": q.get("aud").map(String::as_str).unwrap_or("core-web"),
        "sub": q.get("sub").map(String::as_str).unwrap_or("demo-user"),
        "email": q.get("email").map(String::as_str).unwrap_or("demo@example.org"),
        "realm_access": {"roles": roles},
        "iat": t,
        "exp": t + ttl,
    });
    s.key.token(&claims)
}
