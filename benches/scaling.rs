//! Scaling curves: the cost of one decision (`check::decide*` on a Snapshot built from YAML with
//! `jwks_file` keys) as the configuration and the token grow.
//!
//! * clients 1 → 100, all on one issuer (the SSO pattern: routing must pick by audience); the
//!   token is for the last client. Measured: `verify::route`, and the whole decision with a warm
//!   cache (where routing is not hidden behind an RSA verification).
//! * rules 10 → 1,000; the request matches only the last rule (worst case of first-match).
//!   Measured: `Rules::find` (the index by first path segment the decision uses), the linear
//!   `policy::match_rule` it replaced, and the warm decision.
//! * token size 1 → 16 KiB (a padded claim): parse, the cold decision (SHA-256 over more bytes,
//!   a bigger JSON) and the warm decision (the cache hashes and compares the whole token).
//!
//! Concurrency (1 → 128 streams) needs a server: bench/curves.sh runs bench/loadgen.rs for it.
//!
//!     cargo bench --bench scaling ; bench/curves.sh prints the compact table

#![allow(clippy::unwrap_used)]

mod common;

use std::hint::black_box;
use std::time::Duration;

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use oidc_authz::core::cache::{CacheLimits, TokenCache};
use oidc_authz::core::check::{decide, decide_with};
use oidc_authz::core::policy::match_rule;
use oidc_authz::core::token;
use oidc_authz::core::verify;
use oidc_authz::decision::Decision;
use oidc_authz::testkit::{TestKey, now};

use common::*;

fn bench_clients(c: &mut Criterion) {
    let rt = runtime();
    let key = TestKey::rsa("k1");
    let kf = KeyFile::new(&[&key]);
    let t = now();
    let mut g = c.benchmark_group("clients");
    for n in [1usize, 10, 30, 100] {
        let st = state(
            &rt,
            &format!("{}{}", clients_yaml(n, &kf, "RS256"), rules_yaml(4)),
        );
        let snap = st.snapshot();
        let aud = format!("app-{}", n - 1);
        let tok = key.token(&claims(&aud, 0));
        let jwt = token::parse(&tok).unwrap();
        assert_eq!(verify::route(&snap, &jwt.claims).unwrap(), n - 1);
        let auth = bearer(&tok);
        let inp = input(&auth, "/api/items");
        let cache = TokenCache::new(CacheLimits::default());
        assert!(matches!(
            ready(decide_with(&snap, Some(&cache), None, &inp, t)),
            Decision::Allow(_)
        ));
        g.bench_with_input(BenchmarkId::new("route", n), &n, |b, _| {
            b.iter(|| verify::route(&snap, black_box(&jwt.claims)).unwrap())
        });
        g.bench_with_input(BenchmarkId::new("decide_warm", n), &n, |b, _| {
            b.iter(|| ready(decide_with(&snap, Some(&cache), None, black_box(&inp), t)))
        });
    }
    g.finish();
}

fn bench_rules(c: &mut Criterion) {
    let rt = runtime();
    let key = TestKey::rsa("k1");
    let kf = KeyFile::new(&[&key]);
    let t = now();
    let tok = key.token(&claims("app-0", 0));
    let auth = bearer(&tok);
    let inp = input(&auth, "/api/items");
    let mut g = c.benchmark_group("rules");
    for n in [10usize, 100, 1000] {
        let st = state(
            &rt,
            &format!("{}{}", clients_yaml(1, &kf, "RS256"), rules_yaml(n)),
        );
        let snap = st.snapshot();
        assert_eq!(snap.config.rules.len(), n);
        let rules = &snap.config.rules;
        assert_eq!(
            match_rule(rules, "GET", "bench.local", "/api/items")
                .unwrap()
                .name,
            "api"
        );
        assert_eq!(
            rules.find("GET", "bench.local", "/api/items").unwrap().name,
            "api"
        );
        let cache = TokenCache::new(CacheLimits::default());
        assert!(matches!(
            ready(decide_with(&snap, Some(&cache), None, &inp, t)),
            Decision::Allow(_)
        ));
        g.bench_with_input(BenchmarkId::new("match_rule", n), &n, |b, _| {
            b.iter(|| match_rule(rules, "GET", "bench.local", black_box("/api/items")))
        });
        g.bench_with_input(BenchmarkId::new("find", n), &n, |b, _| {
            b.iter(|| rules.find("GET", "bench.local", black_box("/api/items")))
        });
        g.bench_with_input(BenchmarkId::new("decide_warm", n), &n, |b, _| {
            b.iter(|| ready(decide_with(&snap, Some(&cache), None, black_box(&inp), t)))
        });
    }
    g.finish();
}

fn bench_token_size(c: &mut Criterion) {
    let rt = runtime();
    let key = TestKey::rsa("k1");
    let kf = KeyFile::new(&[&key]);
    let t = now();
    let st = state(
        &rt,
        &format!(
            "token: {{ max_bytes: 65536 }}\n{}{}",
            clients_yaml(1, &kf, "RS256"),
            rules_yaml(4)
        ),
    );
    let snap = st.snapshot();
    let mut g = c.benchmark_group("token_size");
    for kib in [1usize, 2, 4, 8, 16] {
        let tok = token_of_size(&key, "app-0", kib * 1024);
        let auth = bearer(&tok);
        let inp = input(&auth, "/api/items");
        let cache = TokenCache::new(CacheLimits::default());
        assert!(matches!(
            ready(decide_with(&snap, Some(&cache), None, &inp, t)),
            Decision::Allow(_)
        ));
        g.bench_with_input(BenchmarkId::new("parse", kib), &kib, |b, _| {
            b.iter(|| token::parse(black_box(&tok)).unwrap())
        });
        g.bench_with_input(BenchmarkId::new("decide_cold", kib), &kib, |b, _| {
            b.iter(|| ready(decide(&snap, black_box(&inp), t)))
        });
        g.bench_with_input(BenchmarkId::new("decide_warm", kib), &kib, |b, _| {
            b.iter(|| ready(decide_with(&snap, Some(&cache), None, black_box(&inp), t)))
        });
    }
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_secs(1))
        .sample_size(30);
    targets = bench_clients, bench_rules, bench_token_size
}
criterion_main!(benches);
