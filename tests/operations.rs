//! Operations (DESIGN §5, §7): hot reload under load, graceful drain, IdP outages, slow IdPs,
//! unknown-kid floods, redirects, and the metrics exposition.

#![allow(clippy::unwrap_used)]

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use common::*;
use oidc_authz::decision::Reason;
use oidc_authz::doors::grpc::AuthzService;
use oidc_authz::keys::Alg;
use oidc_authz::observe::metrics::Metrics;
use oidc_authz::ops::state::ServerState;
use oidc_authz::run::RunningServer;
use oidc_authz::testkit::{TestKey, claims, jwks};
use serde_json::json;

/// A config with one client (static keys) whose header and rule names carry `tag`, so every
/// response shows which generation decided it.
fn tagged_config(keys: &std::path::Path, tag: &str) -> String {
    format!(
        "listen: {{grpc: 127.0.0.1:0, admin: 127.0.0.1:0}}\nclients:\n  - name: app\n    issuer: https://issuer.example.org\n    jwks_file: {}\n    audiences: [app]\n    algorithms: [ES256]\n    headers: {{ x-auth-{tag}: sub }}\nrules:\n  - {{ name: rule-{tag}, match: {{ prefix: /api }} }}\n",
        keys.display()
    )
}

/// The start of every reload test: a new temp dir, an ES256 key set, a config file tagged "a"
/// over it, and the state serving that config.
struct Tagged {
    dir: std::path::PathBuf,
    key: TestKey,
    keys: std::path::PathBuf,
    cfg_path: std::path::PathBuf,
    metrics: Arc<Metrics>,
    state: Arc<ServerState>,
}

fn tagged(name: &str) -> Tagged {
    let dir = temp_dir(name);
    let key = TestKey::generate(Alg::ES256, "k");
    let keys = dir.join("keys.json");
    std::fs::write(&keys, jwks(&[&key])).unwrap();
    let cfg_path = dir.join("config.yaml");
    std::fs::write(&cfg_path, tagged_config(&keys, "a")).unwrap();
    let metrics = Arc::new(Metrics::new());
    let state = ServerState::new(
        oidc_authz::config::load(&cfg_path).unwrap(),
        metrics.clone(),
    )
    .unwrap();
    Tagged {
        dir,
        key,
        keys,
        cfg_path,
        metrics,
        state,
    }
}

#[tokio::test]
async fn reloads_under_load_are_atomic_and_apply_within_two_seconds() {
    let Tagged {
        key,
        keys,
        cfg_path,
        state,
        ..
    } = tagged("reload");
    let any = "127.0.0.1:0".parse().unwrap();
    // The reload wiring of `serve`: a config file path given to the startup path.
    let options = oidc_authz::RunOptions {
        config_path: Some(cfg_path.clone()),
        ..Default::default()
    };
    let server = RunningServer::start_with(state.clone(), any, any, options)
        .await
        .unwrap();
    let tok = key.token(&claims(
        "https://issuer.example.org",
        json!("app"),
        json!({}),
    ));

    let stop = Arc::new(AtomicBool::new(false));
    let checks = Arc::new(AtomicU64::new(0));
    let mut workers = Vec::new();
    for _ in 0..4 {
        let mut c = client(&server).await;
        let (stop, checks, tok) = (stop.clone(), checks.clone(), tok.clone());
        workers.push(tokio::spawn(async move {
            let b = bearer(&tok);
            while !stop.load(Ordering::Relaxed) {
                let o = check(
                    &mut c,
                    request("GET", "h", "/api/x", &[("authorization", &b)]),
                )
                .await;
                assert!(o.allowed(), "no Check fails during reloads: {o:?}");
                let tag = o.metadata["rule"].strip_prefix("rule-").unwrap().to_owned();
                // never half-applied: the rule and the header map come from the same generation
                let other = if tag == "a" { "b" } else { "a" };
                assert_eq!(
                    o.headers.get(&format!("x-auth-{tag}")).map(String::as_str),
                    Some("user-1"),
                    "{o:?}"
                );
                assert!(!o.headers.contains_key(&format!("x-auth-{other}")), "{o:?}");
                checks.fetch_add(1, Ordering::Relaxed);
            }
        }));
    }
    let mut c = client(&server).await;
    let b = bearer(&tok);
    for round in 0..8 {
        let tag = if round % 2 == 0 { "b" } else { "a" };
        std::fs::write(&cfg_path, tagged_config(&keys, tag)).unwrap();
        let written = Instant::now();
        loop {
            let o = check(
                &mut c,
                request("GET", "h", "/api/x", &[("authorization", &b)]),
            )
            .await;
            if o.metadata["rule"] == format!("rule-{tag}") {
                break;
            }
            assert!(
                written.elapsed() < Duration::from_secs(2),
                "round {round}: new rules not applied within 2 s"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    stop.store(true, Ordering::Relaxed);
    for w in workers {
        w.await.unwrap();
    }
    assert!(checks.load(Ordering::Relaxed) > 50, "the load really ran");
    server.shutdown().await.unwrap();
}

#[tokio::test]
async fn an_invalid_reload_is_rejected_and_the_old_config_keeps_serving() {
    let Tagged {
        key,
        keys,
        cfg_path,
        metrics,
        state,
        ..
    } = tagged("bad-reload");
    std::fs::write(
        &cfg_path,
        tagged_config(&keys, "a").replace("audiences: [app]", "audiences: []"),
    )
    .unwrap();
    let errors = oidc_authz::ops::reload::reload_now(&state, &cfg_path).unwrap_err();
    assert!(
        errors.0.iter().any(|e| e.field == "clients[0].audiences"),
        "{errors}"
    );
    std::fs::write(&cfg_path, "clients: [").unwrap();
    assert!(oidc_authz::ops::reload::reload_now(&state, &cfg_path).is_err());
    std::fs::write(
        &cfg_path,
        tagged_config(&std::path::PathBuf::from("/nonexistent.json"), "a"),
    )
    .unwrap();
    let errors = oidc_authz::ops::reload::reload_now(&state, &cfg_path).unwrap_err();
    assert!(
        errors.0.iter().any(|e| e.field == "clients[0].jwks_file"),
        "{errors}"
    );
    let text = metrics.render();
    assert!(
        text.contains("oidc_authz_config_reloads_total{result=\"error\"} 3"),
        "{text}"
    );
    assert!(
        text.contains("oidc_authz_config_last_reload_success 0"),
        "{text}"
    );
    assert_eq!(
        state.snapshot().generation,
        1,
        "the old snapshot keeps serving"
    );
    let svc = AuthzService::new(state.clone());
    let tok = key.token(&claims(
        "https://issuer.example.org",
        json!("app"),
        json!({}),
    ));
    let b = bearer(&tok);
    let d = svc
        .decide(&request("GET", "h", "/api/x", &[("authorization", &b)]))
        .await;
    assert!(d.is_allow(), "{d:?}");
    // a good config afterwards is taken, and the gauge recovers
    std::fs::write(&cfg_path, tagged_config(&keys, "b")).unwrap();
    oidc_authz::ops::reload::reload_now(&state, &cfg_path).unwrap();
    assert!(
        metrics
            .render()
            .contains("oidc_authz_config_last_reload_success 1")
    );
}

#[tokio::test]
async fn a_configmap_symlink_swap_is_picked_up() {
    // Kubernetes mounts: config.yaml -> ..data/config.yaml, ..data -> ..2026_11_22_1/
    let dir = temp_dir("configmap");
    let key = TestKey::generate(Alg::ES256, "k");
    let keys = dir.join("keys.json");
    std::fs::write(&keys, jwks(&[&key])).unwrap();
    let v1 = dir.join("..v1");
    let v2 = dir.join("..v2");
    std::fs::create_dir_all(&v1).unwrap();
    std::fs::create_dir_all(&v2).unwrap();
    std::fs::write(v1.join("config.yaml"), tagged_config(&keys, "a")).unwrap();
    std::fs::write(v2.join("config.yaml"), tagged_config(&keys, "b")).unwrap();
    std::os::unix::fs::symlink("..v1", dir.join("..data")).unwrap();
    std::os::unix::fs::symlink("..data/config.yaml", dir.join("config.yaml")).unwrap();
    let cfg_path = dir.join("config.yaml");
    let state = ServerState::new(
        oidc_authz::config::load(&cfg_path).unwrap(),
        Arc::new(Metrics::new()),
    )
    .unwrap();
    let _r =
        oidc_authz::ops::reload::spawn(state.clone(), cfg_path.clone(), Duration::from_millis(100));
    assert_eq!(state.snapshot().config.rules[0].name, "rule-a");
    // atomic swap of ..data, as the kubelet does
    std::os::unix::fs::symlink("..v2", dir.join("..data_tmp")).unwrap();
    std::fs::rename(dir.join("..data_tmp"), dir.join("..data")).unwrap();
    let t = Instant::now();
    while state.snapshot().config.rules[0].name != "rule-b" {
        assert!(t.elapsed() < Duration::from_secs(2), "swap not picked up");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn shutdown_drops_readiness_at_once_and_drains_in_flight_checks() {
    let key = TestKey::generate(Alg::RS256, "k");
    let idp = Idp::start(&[&key]).await;
    let yaml = format!(
        "listen: {{grpc: 127.0.0.1:0, admin: 127.0.0.1:0}}\njwks: {{min_refresh_interval: 1s, refresh_interval: 5m, timeout: 2s}}\nclients:\n  - {{name: a, issuer: \"{}\", audiences: [a]}}\ndefault: authenticated\n",
        idp.issuer
    );
    let server = start_server(&yaml).await;
    wait_loaded(&server, "/realms/test").await;
    tokio::time::sleep(Duration::from_millis(1100)).await; // cooldown of the startup fetch
    let admin = format!("http://{}/readyz", server.admin_addr);
    assert_eq!(reqwest::get(&admin).await.unwrap().status(), 200);
    // An in-flight Check: an unknown kid whose refetch hits a slow IdP (bounded by the 2 s timeout).
    idp.set_mode(MODE_SLOW);
    let tok = key.sign(
        &json!({"alg": "RS256", "kid": "rotated"}),
        &claims(&idp.issuer, json!("a"), json!({})),
    );
    let mut c = client(&server).await;
    let hits_before = idp.jwks_hits();
    let in_flight = tokio::spawn(async move {
        let b = bearer(&tok);
        check(&mut c, request("GET", "h", "/x", &[("authorization", &b)])).await
    });
    // in flight: its refetch has reached the slow IdP (which holds it)
    wait_until(
        "the Check's refetch reaches the IdP",
        Duration::from_secs(10),
        || idp.jwks_hits() > hits_before,
    )
    .await;
    assert!(!in_flight.is_finished(), "the Check is still in flight");
    let state = server.state.clone();
    let started = Instant::now();
    let stopping = tokio::spawn(server.shutdown());
    wait_until("shutdown marks draining", Duration::from_secs(5), || {
        state.readiness().draining
    })
    .await;
    assert_eq!(
        reqwest::get(&admin).await.unwrap().status(),
        503,
        "/readyz is 503 while draining"
    );
    let o = in_flight.await.unwrap();
    assert_deny(&o, Reason::UnknownKey); // answered, not dropped
    stopping.await.unwrap().unwrap();
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "exit within the bound"
    );
    assert!(
        reqwest::get(&admin).await.is_err(),
        "the admin port is closed after the drain"
    );
}

fn assert_deny(o: &Outcome, reason: Reason) {
    assert!(!o.allowed(), "expected {reason}, got {o:?}");
    assert_eq!(o.reason.as_deref(), Some(reason.code()), "{o:?}");
}

#[tokio::test]
async fn idp_down_at_startup_fails_that_client_closed_and_others_are_unaffected() {
    let good_key = TestKey::generate(Alg::ES256, "g");
    let bad_key = TestKey::generate(Alg::ES256, "b");
    let good = Idp::start(&[&good_key]).await;
    let bad = Idp::start(&[&bad_key]).await;
    bad.set_mode(MODE_500);
    let yaml = format!(
        "listen: {{grpc: 127.0.0.1:0, admin: 127.0.0.1:0}}\njwks: {{min_refresh_interval: 1s, refresh_interval: 1m, max_stale: 1h, timeout: 1s}}\nclients:\n  - {{name: good, issuer: \"{}\", audiences: [good], algorithms: [ES256]}}\n  - {{name: bad, issuer: \"{}\", audiences: [bad], algorithms: [ES256]}}\ndefault: authenticated\n",
        good.issuer, bad.issuer
    );
    let server = start_server(&yaml).await;
    wait_loaded(&server, &good.issuer).await;
    let mut c = client(&server).await;
    let g = bearer(&good_key.token(&claims(&good.issuer, json!("good"), json!({}))));
    let b = bearer(&bad_key.token(&claims(&bad.issuer, json!("bad"), json!({}))));
    assert!(
        check(&mut c, request("GET", "h", "/x", &[("authorization", &g)]))
            .await
            .allowed()
    );
    let o = check(&mut c, request("GET", "h", "/x", &[("authorization", &b)])).await;
    assert_deny(&o, Reason::KeysUnavailable);
    assert_eq!(o.http_status, 503);
    let readyz = format!("http://{}/readyz", server.admin_addr);
    assert_eq!(reqwest::get(&readyz).await.unwrap().status(), 503);
    bad.set_mode(MODE_UP);
    let t = Instant::now();
    while reqwest::get(&readyz).await.unwrap().status() != 200 {
        assert!(
            t.elapsed() < Duration::from_secs(10),
            "ready on its own once the IdP returns (backoff retries)"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        check(&mut c, request("GET", "h", "/x", &[("authorization", &b)]))
            .await
            .allowed()
    );
    assert!(
        check(&mut c, request("GET", "h", "/x", &[("authorization", &g)]))
            .await
            .allowed()
    );
}

#[tokio::test]
async fn idp_down_after_startup_keeps_last_good_keys_until_max_stale_then_fails_closed() {
    let key = TestKey::generate(Alg::ES256, "k");
    let idp = Idp::start(&[&key]).await;
    let yaml = format!(
        "listen: {{grpc: 127.0.0.1:0, admin: 127.0.0.1:0}}\njwks: {{min_refresh_interval: 1s, refresh_interval: 1s, max_stale: 3s, timeout: 1s}}\nclients:\n  - {{name: a, issuer: \"{}\", audiences: [a], algorithms: [ES256]}}\ndefault: authenticated\n",
        idp.issuer
    );
    let server = start_server(&yaml).await;
    wait_loaded(&server, "/realms/test").await;
    idp.set_mode(MODE_500);
    let ks = server.state.snapshot().clients[0].key_set.clone();
    let loaded_at = ks.state().last_success.expect("loaded");
    let max_stale = Duration::from_secs(3);
    let mut c = client(&server).await;
    let b = bearer(&key.token(&claims(&idp.issuer, json!("a"), json!({}))));
    // No timing assumed: each Check is bracketed by the age of the last good keys (the server's
    // own clock), so an allow is checked against the age before it and a deny against the age
    // after it, however slow the machine.
    let mut allowed_while_failing = 0;
    let deadline = Instant::now() + Duration::from_secs(20);
    let o = loop {
        assert!(Instant::now() < deadline, "never failed closed");
        let failing = server.state.metrics.jwks_fetch_count(&idp.issuer, false) >= 1;
        let age_before = loaded_at.elapsed();
        let o = check(&mut c, request("GET", "h", "/x", &[("authorization", &b)])).await;
        let age_after = loaded_at.elapsed();
        if o.allowed() {
            assert!(
                age_before <= max_stale,
                "allowed with keys {age_before:?} old, past max_stale"
            );
            if failing {
                allowed_while_failing += 1;
            }
        } else {
            assert!(
                age_after >= max_stale,
                "failed closed at {age_after:?}, before max_stale: {o:?}"
            );
            break o;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_deny(&o, Reason::KeysUnavailable);
    assert_eq!(o.http_status, 503);
    assert!(
        allowed_while_failing > 0,
        "stale keys served while refreshes were failing, within max_stale"
    );
}

#[tokio::test]
async fn a_slow_idp_never_blocks_checks_whose_keys_are_cached() {
    let key = TestKey::generate(Alg::ES256, "k");
    let idp = Idp::start(&[&key]).await;
    let yaml = format!(
        "listen: {{grpc: 127.0.0.1:0, admin: 127.0.0.1:0}}\njwks: {{min_refresh_interval: 1s, timeout: 5s}}\nclients:\n  - {{name: a, issuer: \"{}\", audiences: [a], algorithms: [ES256]}}\ndefault: authenticated\n",
        idp.issuer
    );
    let server = start_server(&yaml).await;
    wait_loaded(&server, "/realms/test").await;
    idp.set_mode(MODE_SLOW);
    let ks = server.state.registry.remote_sets()[0].clone();
    let hits_before = idp.jwks_hits();
    let fetching = tokio::spawn(async move { ks.fetch().await }); // holds the fetch lock for 5 s
    wait_until(
        "the fetch reaches the slow IdP",
        Duration::from_secs(10),
        || idp.jwks_hits() > hits_before,
    )
    .await;
    let mut c = client(&server).await;
    let b = bearer(&key.token(&claims(&idp.issuer, json!("a"), json!({}))));
    for _ in 0..20 {
        let t = Instant::now();
        assert!(
            check(&mut c, request("GET", "h", "/x", &[("authorization", &b)]))
                .await
                .allowed()
        );
        assert!(
            t.elapsed() < Duration::from_millis(500),
            "a cached-key Check waited on the IdP: {:?}",
            t.elapsed()
        );
    }
    assert!(
        !fetching.is_finished(),
        "the slow fetch was really in progress"
    );
    fetching.abort();
}

#[tokio::test]
async fn ten_thousand_random_unknown_kids_cost_at_most_one_fetch_per_cooldown() {
    let key = TestKey::generate(Alg::ES256, "k");
    let idp = Idp::start(&[&key]).await;
    let yaml = format!(
        "listen: {{grpc: 127.0.0.1:0, admin: 127.0.0.1:0}}\njwks: {{min_refresh_interval: 1s, refresh_interval: 1m}}\nclients:\n  - {{name: a, issuer: \"{}\", audiences: [a], algorithms: [ES256]}}\ndefault: authenticated\n",
        idp.issuer
    );
    let cfg = oidc_authz::config::parse(&yaml).unwrap();
    let state = ServerState::new(cfg, Arc::new(Metrics::new())).unwrap();
    let ks = state.snapshot().clients[0].key_set.clone();
    assert!(ks.wait_loaded(Duration::from_secs(5)).await);
    let svc = AuthzService::new(state.clone());
    let started = Instant::now();
    let hits_before = idp.jwks_hits();
    let body = claims(&idp.issuer, json!("a"), json!({}));
    let mut handles = Vec::new();
    for batch in 0..20 {
        let svc = svc.clone();
        let body = body.clone();
        handles.push(tokio::spawn(async move {
            let mut denied = 0;
            for i in 0..500 {
                use base64::Engine as _;
                let e = |v: &serde_json::Value| {
                    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string())
                };
                let tok = format!(
                    "{}.{}.AAAA",
                    e(&json!({"alg": "ES256", "kid": format!("kid-{batch}-{i}")})),
                    e(&body)
                );
                let b = bearer(&tok);
                let d = svc
                    .decide(&request("GET", "h", "/x", &[("authorization", &b)]))
                    .await;
                assert_eq!(d.reason(), Some(Reason::UnknownKey));
                denied += 1;
            }
            denied
        }));
    }
    let mut total = 0;
    for h in handles {
        total += h.await.unwrap();
    }
    assert_eq!(total, 10_000);
    let elapsed = started.elapsed();
    let fetches = idp.jwks_hits() - hits_before;
    let allowed = 1 + elapsed.as_secs();
    assert!(
        fetches <= allowed,
        "{fetches} fetches in {elapsed:?} (at most one per 1 s cooldown = {allowed})"
    );
    eprintln!("10,000 unknown kids in {elapsed:?}: {fetches} JWKS fetches");
}

#[tokio::test]
async fn a_404_reruns_discovery_and_redirects_never_leave_the_host() {
    let key = TestKey::generate(Alg::ES256, "k");
    let idp = Idp::start(&[&key]).await;
    let yaml = format!(
        "listen: {{grpc: 127.0.0.1:0, admin: 127.0.0.1:0}}\nclients:\n  - {{name: a, issuer: \"{}\", audiences: [a], algorithms: [ES256]}}\ndefault: authenticated\n",
        idp.issuer
    );
    let server = start_server(&yaml).await;
    wait_loaded(&server, "/realms/test").await;
    let ks = server.state.registry.remote_sets()[0].clone();
    assert_eq!(idp.discovery_hits(), 1);
    assert!(ks.fetch().await.is_ok());
    assert_eq!(idp.discovery_hits(), 1, "the discovered jwks_uri is reused");
    idp.set_mode(MODE_404);
    assert!(ks.fetch().await.is_err());
    idp.set_mode(MODE_UP);
    assert!(ks.fetch().await.is_ok());
    assert_eq!(
        idp.discovery_hits(),
        2,
        "a 404 makes the next fetch discover again"
    );
    // a redirect to another host is not followed
    idp.set_mode(MODE_REDIRECT_OFF_HOST);
    let hits = idp.jwks_hits();
    let err = ks.fetch().await.unwrap_err().to_string();
    assert_eq!(
        idp.jwks_hits(),
        hits + 1,
        "the redirect target (same server, other host name) was never requested"
    );
    assert!(err.contains("302"), "{err}");
    // discovery naming a plain-http, non-loopback jwks_uri is refused
    idp.set_mode(MODE_404);
    let _ = ks.fetch().await; // forget the discovered uri
    idp.set_mode(MODE_INSECURE_JWKS_URI);
    let err = ks.fetch().await.unwrap_err().to_string();
    assert!(err.contains("must use https"), "{err}");
    assert!(ks.state().loaded(), "the last good keys are still there");
}

#[tokio::test]
async fn metrics_pass_promtool_and_move_with_the_scenario() {
    let key = TestKey::generate(Alg::ES256, "k");
    let idp = Idp::start(&[&key]).await;
    let yaml = format!(
        "listen: {{grpc: 127.0.0.1:0, admin: 127.0.0.1:0}}\nclients:\n  - {{name: web, issuer: \"{}\", audiences: [web], algorithms: [ES256]}}\nrules:\n  - {{name: api, match: {{prefix: /api}}}}\n",
        idp.issuer
    );
    let server = start_server(&yaml).await;
    wait_loaded(&server, "/realms/test").await;
    let mut c = client(&server).await;
    let good = bearer(&key.token(&claims(&idp.issuer, json!("web"), json!({}))));
    let expired = bearer(&key.token(&claims(&idp.issuer, json!("web"), json!({"exp": 1000}))));
    for _ in 0..3 {
        check(
            &mut c,
            request("GET", "h", "/api/x", &[("authorization", &good)]),
        )
        .await;
    }
    check(
        &mut c,
        request("GET", "h", "/api/x", &[("authorization", &expired)]),
    )
    .await;
    check(&mut c, request("GET", "h", "/nope", &[])).await;
    let text = reqwest::get(format!("http://{}/metrics", server.admin_addr))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for want in [
        r#"oidc_authz_checks_total{api="grpc",client="web",decision="allow",reason="",rule="api"} 3"#.to_string(),
        r#"oidc_authz_checks_total{api="grpc",client="web",decision="deny",reason="token_expired",rule="api"} 1"#.to_string(),
        r#"oidc_authz_checks_total{api="grpc",client="",decision="deny",reason="no_matching_rule",rule=""} 1"#.to_string(),
        r#"oidc_authz_check_duration_seconds_count{api="grpc"} 5"#.to_string(),
        format!(r#"oidc_authz_jwks_fetches_total{{key_set="{}",result="ok"}} 1"#, idp.issuer),
        format!(r#"oidc_authz_jwks_keys{{key_set="{}"}} 1"#, idp.issuer),
        format!(r#"oidc_authz_jwks_last_success_timestamp_seconds{{key_set="{}"}}"#, idp.issuer),
        format!(r#"oidc_authz_jwks_age_seconds{{key_set="{}"}}"#, idp.issuer),
        r#"oidc_authz_config_reloads_total{result="ok"} 1"#.to_string(),
        "oidc_authz_config_last_reload_success 1".to_string(),
        r#"oidc_authz_build_info{version=""#.to_string(),
        "# TYPE oidc_authz_token_cache_requests_total counter".to_string(),
    ] {
        assert!(text.contains(&want), "missing {want}\n{text}");
    }
    // the exposition format, checked by Prometheus' own linter
    match std::process::Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
    {
        Ok(mut child) => {
            use std::io::Write as _;
            child
                .stdin
                .take()
                .unwrap()
                .write_all(text.as_bytes())
                .unwrap();
            let out = child.wait_with_output().unwrap();
            let report = String::from_utf8_lossy(&out.stdout).to_string()
                + &String::from_utf8_lossy(&out.stderr);
            assert!(
                out.status.success(),
                "promtool check metrics failed:\n{report}"
            );
        }
        Err(e) => panic!(
            "promtool could not be run ({e}): the exposition format cannot be linted; \
             install promtool: apt-get install prometheus"
        ),
    }
}

#[tokio::test]
async fn a_jwks_file_change_alone_reloads_the_keys() {
    let dir = temp_dir("jwks-file");
    let old = TestKey::generate(Alg::ES256, "old");
    let new = TestKey::generate(Alg::ES256, "new");
    let keys = dir.join("keys.json");
    std::fs::write(&keys, jwks(&[&old])).unwrap();
    let cfg_path = dir.join("config.yaml");
    std::fs::write(&cfg_path, tagged_config(&keys, "a")).unwrap();
    let state = ServerState::new(
        oidc_authz::config::load(&cfg_path).unwrap(),
        Arc::new(Metrics::new()),
    )
    .unwrap();
    let _r =
        oidc_authz::ops::reload::spawn(state.clone(), cfg_path.clone(), Duration::from_millis(100));
    let svc = AuthzService::new(state.clone());
    let b = bearer(&new.token(&claims(
        "https://issuer.example.org",
        json!("app"),
        json!({}),
    )));
    let req = request("GET", "h", "/api/x", &[("authorization", &b)]);
    assert_eq!(svc.decide(&req).await.reason(), Some(Reason::UnknownKey));
    std::fs::write(&keys, jwks(&[&new])).unwrap(); // the config file itself is unchanged
    let t = Instant::now();
    while !svc.decide(&req).await.is_allow() {
        assert!(
            t.elapsed() < Duration::from_secs(2),
            "a key file change was not picked up"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// `serve --shadow-config`: the candidate is watched and reloaded like the live config, and
/// every Check is decided against whatever it holds now; answers come from the live config.
#[tokio::test]
async fn the_shadow_config_reloads_like_the_live_one() {
    let Tagged {
        dir,
        key,
        keys,
        cfg_path,
        state,
        ..
    } = tagged("shadow");
    let shadow_path = dir.join("candidate.yaml");
    // the candidate agrees at first (same rule), then drops the /api rule: every Check differs
    std::fs::write(&shadow_path, tagged_config(&keys, "a")).unwrap();
    let any = "127.0.0.1:0".parse().unwrap();
    let options = oidc_authz::RunOptions {
        config_path: Some(cfg_path.clone()),
        shadow_config: Some(shadow_path.clone()),
        reload_poll: Duration::from_millis(50),
        ..Default::default()
    };
    let server = RunningServer::start_with(state.clone(), any, any, options)
        .await
        .unwrap();
    let tok = key.token(&claims(
        "https://issuer.example.org",
        json!("app"),
        json!({}),
    ));
    let b = bearer(&tok);
    let mut c = client(&server).await;
    let get = request("GET", "h", "/api/x", &[("authorization", &b)]);
    assert!(check(&mut c, get.clone()).await.allowed());
    let disagreements = || {
        state
            .metrics
            .shadow_disagreements_count("allow", "deny", "rule-a")
    };
    assert_eq!(disagreements(), 0, "the same config agrees");
    let other = tagged_config(&keys, "b").replace("prefix: /api", "prefix: /other");
    let tmp = dir.join(".candidate.tmp");
    std::fs::write(&tmp, other).unwrap();
    std::fs::rename(&tmp, &shadow_path).unwrap();
    let written = Instant::now();
    while disagreements() == 0 {
        let o = check(&mut c, get.clone()).await;
        assert!(o.allowed(), "the live config still answers: {o:?}");
        assert!(
            written.elapsed() < Duration::from_secs(5),
            "the new shadow config was not applied within 5 s"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let o = check(&mut c, get).await;
    assert_eq!(
        o.metadata["rule"], "rule-a",
        "the live rule answered: {o:?}"
    );
    server.shutdown().await.unwrap();
}
