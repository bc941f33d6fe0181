//! Criterion benches of the pure decision path, through the library's public API:
//! token extraction and parsing, routing, signature verification per algorithm (a pre-parsed
//! JWK key, as the key set holds it), full header + signature + claim verification, path
//! normalisation, rule matching and conditions, the whole decision (no cache = cold, with a
//! warm verified-token cache), the service's CheckRequest → CheckResponse without the network,
//! and the protobuf decode / encode the gRPC hop adds.
//!
//!     cargo bench --bench pure                 # all
//!     cargo bench --bench pure -- verify/      # one group

#![allow(clippy::unwrap_used)]

mod common;

use std::hint::black_box;
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use envoy_types::ext_authz::v3::pb::{CheckRequest, CheckResponse};
use envoy_types::pb::envoy::service::auth::v3::AttributeContext;
use envoy_types::pb::envoy::service::auth::v3::attribute_context::{HttpRequest, Request};
use oidc_authz::core::cache::{CacheLimits, TokenCache};
use oidc_authz::core::check::{decide, decide_with};
use oidc_authz::core::policy::{check_conditions, match_rule, normalize_path, token_roles};
use oidc_authz::core::token;
use oidc_authz::core::verify;
use oidc_authz::decision::Decision;
use oidc_authz::doors::grpc::{AuthzService, response};
use oidc_authz::keys::{Alg, parse_jwk};
use oidc_authz::testkit::{TestKey, now};
use prost::Message as _;

use common::*;

fn bench_token(c: &mut Criterion) {
    let key = TestKey::rsa("k1");
    let tok = key.token(&claims("app-0", 0));
    let auth = bearer(&tok);
    let inp = input(&auth, "/api/items");
    let sources = vec![token::TokenSource::Header("authorization".into())];
    let mut g = c.benchmark_group("token");
    g.bench_function(format!("extract ({} B token)", tok.len()), |b| {
        b.iter(|| token::extract(black_box(&sources), black_box(&inp.headers), 16384).unwrap())
    });
    g.bench_function(format!("parse ({} B RS256 token)", tok.len()), |b| {
        b.iter(|| token::parse(black_box(&tok)).unwrap())
    });
    g.finish();
}

fn bench_verify(c: &mut Criterion) {
    let msg = b"eyJhbGciOiJSUzI1NiIsImtpZCI6ImsxIiwidHlwIjoiSldUIn0.eyJpc3MiOiJodHRwczovL3Nzby5iZW5jaC5sb2NhbCIsInN1YiI6InVzZXItMSJ9";
    let mut g = c.benchmark_group("verify");
    for alg in [Alg::RS256, Alg::PS256, Alg::ES256, Alg::ES384, Alg::EdDSA] {
        let k = TestKey::generate(alg, "k");
        let key = parse_jwk(&k.jwk(true)).unwrap();
        let sig = k.sign_raw(alg, msg);
        assert!(key.verify(alg, msg, &sig));
        g.bench_function(format!("signature {alg}"), |b| {
            b.iter(|| key.verify(alg, black_box(msg), black_box(&sig)))
        });
    }
    // Header + signature + claim checks of a parsed token against a loaded key set.
    let rt = runtime();
    let key = TestKey::rsa("k1");
    let kf = KeyFile::new(&[&key]);
    let st = state(
        &rt,
        &format!("{}{}", clients_yaml(1, &kf, "RS256"), rules_yaml(4)),
    );
    let snap = st.snapshot();
    let tok = key.token(&claims("app-0", 0));
    let jwt = token::parse(&tok).unwrap();
    let client = &snap.clients[0];
    let ks = client.key_set.state();
    let t = now();
    verify::verify(&client.cfg, &ks, true, &jwt, t).unwrap();
    g.bench_function("verify::verify RS256 (header, signature, claims)", |b| {
        b.iter(|| verify::verify(&client.cfg, &ks, true, black_box(&jwt), t).unwrap())
    });
    g.bench_function("verify::route (1 client)", |b| {
        b.iter(|| verify::route(&snap, black_box(&jwt.claims)).unwrap())
    });
    g.finish();
}

fn bench_policy(c: &mut Criterion) {
    let rt = runtime();
    let key = TestKey::rsa("k1");
    let kf = KeyFile::new(&[&key]);
    let st = state(
        &rt,
        &format!(
            "{}rules:\n  - {{ name: health, match: {{ path: /healthz }}, auth: none }}\n  \
             - {{ name: admin, match: {{ prefix: /admin }}, roles: {{ all_of: [admin] }} }}\n  \
             - {{ name: reports, match: {{ glob: \"/api/*/reports/**\", methods: [GET] }}, roles: {{ any_of: [auditor] }} }}\n  \
             - {{ name: api, match: {{ prefix: /api }}, roles: {{ any_of: [viewer, editor] }} }}\ndefault: deny\n",
            clients_yaml(1, &kf, "RS256")
        ),
    );
    let snap = st.snapshot();
    let rules = &snap.config.rules;
    let tok = key.token(&claims("app-0", 0));
    let jwt = token::parse(&tok).unwrap();
    let api = match_rule(rules, "GET", "bench.local", "/api/items/42").unwrap();
    assert_eq!(api.name, "api");
    let mut g = c.benchmark_group("policy");
    g.bench_function("normalize_path (clean, with query)", |b| {
        b.iter(|| normalize_path(black_box("/api/v1/items/42?expand=owner")).unwrap())
    });
    g.bench_function("normalize_path (dot segments, //)", |b| {
        b.iter(|| normalize_path(black_box("/api/./v1//items/../items/42")).unwrap())
    });
    g.bench_function("match_rule (4 rules, 4th matches)", |b| {
        b.iter(|| match_rule(rules, "GET", "bench.local", black_box("/api/items/42")).unwrap())
    });
    g.bench_function("match_rule (glob)", |b| {
        b.iter(|| {
            match_rule(
                rules,
                "GET",
                "bench.local",
                black_box("/api/v2/reports/q3/x"),
            )
            .unwrap()
        })
    });
    let roles = token_roles(&jwt.claims, &snap.clients[0].cfg.roles);
    g.bench_function("check_conditions (roles any_of)", |b| {
        b.iter(|| check_conditions(api, black_box(&jwt.claims), &roles, 0).unwrap())
    });
    g.finish();
}

fn check_request(authorization: &str) -> CheckRequest {
    let headers = [
        (":authority", "bench.local"),
        (":method", "GET"),
        (":path", "/api/items"),
        (":scheme", "http"),
        ("authorization", authorization),
        ("user-agent", "wrk"),
        ("x-forwarded-proto", "http"),
        ("x-request-id", "0000000000000001-bench"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect();
    CheckRequest {
        attributes: Some(AttributeContext {
            request: Some(Request {
                http: Some(HttpRequest {
                    id: "1".into(),
                    method: "GET".into(),
                    path: "/api/items".into(),
                    host: "bench.local".into(),
                    scheme: "http".into(),
                    protocol: "HTTP/1.1".into(),
                    headers,
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        }),
    }
}

fn bench_decide(c: &mut Criterion) {
    let rt = runtime();
    let key = TestKey::rsa("k1");
    let kf = KeyFile::new(&[&key]);
    let st = state(
        &rt,
        &format!("{}{}", clients_yaml(1, &kf, "RS256"), rules_yaml(4)),
    );
    let snap = st.snapshot();
    let tok = key.token(&claims("app-0", 0));
    let auth = bearer(&tok);
    let inp = input(&auth, "/api/items");
    let t = now();
    let cache = TokenCache::new(CacheLimits::default());
    assert!(matches!(
        ready(decide_with(&snap, Some(&cache), None, &inp, t)),
        Decision::Allow(_)
    ));
    let mut g = c.benchmark_group("decide");
    g.bench_function("cold (no cache: parse, route, RS256 verify, rules)", |b| {
        b.iter(|| ready(decide(&snap, black_box(&inp), t)))
    });
    g.bench_function("warm (verified-token cache hit)", |b| {
        b.iter(|| ready(decide_with(&snap, Some(&cache), None, black_box(&inp), t)))
    });
    // The service without the network: CheckRequest → decision → CheckResponse (cache as served).
    let svc = AuthzService::new(st.clone());
    let req = check_request(&auth);
    let _ = ready(svc.decide(&req));
    g.bench_function(
        "AuthzService::decide + response (CheckRequest → CheckResponse)",
        |b| b.iter(|| response(ready(svc.decide(black_box(&req))))),
    );
    g.finish();

    // What the gRPC hop adds in protobuf work on the server: decode the request, encode the answer.
    let bytes = req.encode_to_vec();
    let allow = response(ready(svc.decide(&req)));
    let mut g = c.benchmark_group("grpc");
    g.bench_function(format!("decode CheckRequest ({} B)", bytes.len()), |b| {
        b.iter(|| CheckRequest::decode(black_box(bytes.as_slice())).unwrap())
    });
    g.bench_function(
        format!("encode allow CheckResponse ({} B)", allow.encoded_len()),
        |b| b.iter(|| black_box(&allow).encode_to_vec()),
    );
    let ok = CheckResponse::default();
    g.bench_function("encode empty CheckResponse (allow-all)", |b| {
        b.iter(|| black_box(&ok).encode_to_vec())
    });
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
        .sample_size(40);
    targets = bench_token, bench_verify, bench_policy, bench_decide
}
criterion_main!(benches);
