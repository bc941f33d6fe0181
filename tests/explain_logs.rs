//! `oidc-authz explain` (offline and against a live server's admin gRPC API) and the logs:
//! JSON lines, one line per deny with request id / client / rule / reason / latency, and never a
//! token, an Authorization or Cookie header, or a client secret — even at trace level.

#![allow(clippy::unwrap_used)]

mod common;

use std::io::Read as _;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use oidc_authz::keys::Alg;
use oidc_authz::testkit::{TestKey, claims, jwks};
use serde_json::json;

const BIN: &str = env!("CARGO_BIN_EXE_oidc-authz");

fn static_config(dir: &std::path::Path, key: &TestKey) -> std::path::PathBuf {
    let keys = dir.join("keys.json");
    std::fs::write(&keys, jwks(&[key])).unwrap();
    let cfg = dir.join("config.yaml");
    std::fs::write(
        &cfg,
        format!(
            "clients:\n  - name: web\n    issuer: https://issuer.example.org\n    jwks_file: {}\n    audiences: [web]\n    algorithms: [ES256]\n    roles: [realm_access.roles]\n    headers: {{x-auth-subject: sub}}\nrules:\n  - {{name: names-write, match: {{prefix: /api/names, methods: [POST]}}, roles: {{all_of: [names_editor]}}}}\n  - {{name: api, match: {{prefix: /api}}}}\n",
            keys.display()
        ),
    )
    .unwrap();
    cfg
}

#[test]
fn explain_offline_says_why_and_never_prints_the_token() {
    let dir = temp_dir("explain");
    let key = TestKey::generate(Alg::ES256, "k1");
    let cfg = static_config(&dir, &key);
    let tok = key.token(&claims(
        "https://issuer.example.org",
        json!("web"),
        json!({"realm_access": {"roles": ["viewer"]}}),
    ));
    let out = Command::new(BIN)
        .args(["explain", "--config"])
        .arg(&cfg)
        .args([
            "--token",
            &tok,
            "--method",
            "POST",
            "--path",
            "/api/./names/1?x=1",
            "--host",
            "api.example.org",
            "--key-sets",
        ])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "denied → exit 1\n{text}");
    for want in [
        "path: normalised to /api/names/1",
        "rule: names-write",
        "alg ES256 kid k1",
        "route: client web",
        "roles: viewer",
        "decision: DENY 403 missing_required_roles",
        "key set: file:",
    ] {
        assert!(text.contains(want), "missing {want:?} in:\n{text}");
    }
    assert!(
        !text.contains(&tok) && !text.contains(tok.split('.').nth(2).unwrap()),
        "the token is never echoed"
    );
    // allowed → exit 0, with the headers that would be set; JSON output parses
    let out = Command::new(BIN)
        .args(["explain", "--json", "--config"])
        .arg(&cfg)
        .args(["--token", &tok, "--path", "/api/x"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["decision"], "allow");
    assert_eq!(v["set_headers"]["x-auth-subject"], "user-1");
    // no token at all
    let out = Command::new(BIN)
        .args(["explain", "--config"])
        .arg(&cfg)
        .args(["--path", "/api/x"])
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&out.stdout).contains("DENY 401 authorization_header_missing"));
}

#[tokio::test]
async fn explain_against_a_live_server_and_its_key_sets() {
    let key = TestKey::generate(Alg::ES256, "live-1");
    let idp = Idp::start(&[&key]).await;
    let yaml = format!(
        "listen: {{grpc: 127.0.0.1:0, admin: 127.0.0.1:0}}\nclients:\n  - {{name: web, issuer: \"{}\", audiences: [web], algorithms: [ES256]}}\n  - {{name: api, issuer: \"{}\", audiences: [api], algorithms: [ES256]}}\ndefault: authenticated\n",
        idp.issuer, idp.issuer
    );
    let server = start_server(&yaml).await;
    wait_loaded(&server, "/realms/test").await;
    let expired = key.token(&claims(&idp.issuer, json!("api"), json!({"exp": 1000})));
    let addr = server.admin_grpc_addr.to_string();
    let out = tokio::task::spawn_blocking(move || {
        Command::new(BIN)
            .args([
                "explain",
                "--server",
                &addr,
                "--token",
                &expired,
                "--path",
                "/x",
                "--key-sets",
            ])
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(1),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("decision: DENY 401 token_expired"), "{text}");
    assert!(text.contains("route: client api"), "{text}");
    assert!(
        text.contains("kids [\"live-1\"]") && text.contains("[web,api]"),
        "one shared key set for both clients:\n{text}"
    );
    // an unreachable server is a clear error, not a panic
    let out = Command::new(BIN)
        .args(["explain", "--server", "127.0.0.1:1", "--path", "/x"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot reach the admin gRPC API"));
}

#[tokio::test]
async fn logs_are_json_lines_with_one_line_per_deny_and_never_leak_credentials() {
    let key = TestKey::generate(Alg::ES256, "k");
    let idp = Idp::start(&[&key]).await;
    let dir = temp_dir("logs");
    let [grpc, admin, admin_grpc] = free_ports();
    let cfg = dir.join("config.yaml");
    let write_cfg = |rule: &str| {
        std::fs::write(
            &cfg,
            format!(
                "listen: {{grpc: 127.0.0.1:{grpc}, admin: 127.0.0.1:{admin}, admin_grpc: 127.0.0.1:{admin_grpc}}}\ntoken: {{sources: [{{header: authorization}}, {{cookie: session}}]}}\nclients:\n  - {{name: web, issuer: \"{}\", audiences: [\"${{AUDIENCE_FROM_ENV}}\"], algorithms: [ES256], headers: {{x-auth-subject: sub}}}}\nrules:\n  - {{name: {rule}, match: {{prefix: /api}}, roles: {{all_of: [admin]}}}}\n  - {{name: open, match: {{prefix: /open}}}}\n",
                idp.issuer
            ),
        )
        .unwrap()
    };
    write_cfg("admins");
    let log_path = dir.join("stderr.log");
    let mut child = Command::new(BIN)
        .args(["serve", "--config"])
        .arg(&cfg)
        .env("RUST_LOG", "trace")
        .env("AUDIENCE_FROM_ENV", "web")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log_path).unwrap())
        .spawn()
        .unwrap();
    let ready = format!("http://127.0.0.1:{admin}/readyz");
    let t = Instant::now();
    while reqwest::get(&ready)
        .await
        .map(|r| r.status() != 200)
        .unwrap_or(true)
    {
        assert!(t.elapsed() < Duration::from_secs(15), "server not ready");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let mut c = envoy_types::pb::envoy::service::auth::v3::authorization_client::AuthorizationClient::connect(format!("http://127.0.0.1:{grpc}")).await.unwrap();
    let tok = key.token(&claims(&idp.issuer, json!("web"), json!({})));
    let cookie_tok = key.token(&claims(
        &idp.issuer,
        json!("web"),
        json!({"sub": "cookie-user"}),
    ));
    let b = bearer(&tok);
    let cookie = format!("session={cookie_tok}");
    assert!(
        check(
            &mut c,
            request(
                "GET",
                "h",
                "/open/x",
                &[("authorization", &b), ("x-request-id", "req-allow-1")]
            )
        )
        .await
        .allowed()
    );
    assert!(
        !check(
            &mut c,
            request(
                "GET",
                "h",
                "/api/x",
                &[("authorization", &b), ("x-request-id", "req-deny-1")]
            )
        )
        .await
        .allowed()
    );
    assert!(
        check(
            &mut c,
            request("GET", "h", "/open/y", &[("cookie", &cookie)])
        )
        .await
        .allowed()
    );
    assert!(
        !check(
            &mut c,
            request(
                "GET",
                "h",
                "/api/x",
                &[
                    ("authorization", "Bearer garbage.token.value"),
                    ("x-request-id", "req-deny-2")
                ]
            )
        )
        .await
        .allowed()
    );
    // reload through the file watch, then through SIGHUP, then an invalid reload
    // (no fixed sleeps: wait, with a deadline, until /metrics counts each reload outcome)
    let metrics = format!("http://127.0.0.1:{admin}/metrics");
    let reloads = |result: &'static str| {
        let metrics = metrics.clone();
        async move {
            let body = reqwest::get(&metrics).await.unwrap().text().await.unwrap();
            let prefix = format!("oidc_authz_config_reloads_total{{result=\"{result}\"}} ");
            body.lines()
                .find_map(|l| l.strip_prefix(&prefix))
                .map_or(0.0, |v| v.trim().parse::<f64>().unwrap())
        }
    };
    let wait_for = |result: &'static str, at_least: f64| {
        let reloads = &reloads;
        async move {
            let t = Instant::now();
            while reloads(result).await < at_least {
                assert!(
                    t.elapsed() < Duration::from_secs(20),
                    "no config reload counted as {result}"
                );
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    };
    let ok0 = reloads("ok").await;
    write_cfg("admins-v2");
    wait_for("ok", ok0 + 1.0).await;
    Command::new("kill")
        .args(["-HUP", &child.id().to_string()])
        .status()
        .unwrap();
    wait_for("ok", ok0 + 2.0).await;
    std::fs::write(&cfg, "clients: [{name: Bad}]").unwrap();
    wait_for("error", 1.0).await;
    assert!(
        !check(
            &mut c,
            request(
                "GET",
                "h",
                "/api/x",
                &[("authorization", &b), ("x-request-id", "req-deny-3")]
            )
        )
        .await
        .allowed()
    );
    Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    let t = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(
            t.elapsed() < Duration::from_secs(25),
            "no exit after SIGTERM"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(status.code(), Some(0), "SIGTERM → drain → exit 0");
    let mut logs = String::new();
    std::fs::File::open(&log_path)
        .unwrap()
        .read_to_string(&mut logs)
        .unwrap();
    assert!(logs.lines().count() > 20, "trace level really logged");
    // credentials never appear, in whole or in part
    for secret in [
        tok.as_str(),
        cookie_tok.as_str(),
        tok.split('.').nth(2).unwrap(),
        cookie_tok.split('.').nth(2).unwrap(),
        tok.split('.').nth(1).unwrap(),
        "garbage.token.value",
        "Bearer ",
    ] {
        assert!(!logs.contains(secret), "leaked {secret:?} into the logs");
    }
    // JSON lines
    let lines: Vec<serde_json::Value> = logs
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not a JSON line ({e}): {l}")))
        .collect();
    let denies: Vec<&serde_json::Value> = lines.iter().filter(|l| l["message"] == "deny").collect();
    assert_eq!(denies.len(), 3, "one line per deny");
    let d1 = denies
        .iter()
        .find(|d| d["request_id"] == "req-deny-1")
        .expect("deny line with the x-request-id");
    assert_eq!(d1["client"], "web");
    assert_eq!(d1["rule"], "admins");
    assert_eq!(d1["reason"], "missing_required_roles");
    assert!(d1["latency_us"].is_u64());
    let d2 = denies
        .iter()
        .find(|d| d["request_id"] == "req-deny-2")
        .unwrap();
    assert_eq!(d2["reason"], "token_malformed");
    let d3 = denies
        .iter()
        .find(|d| d["request_id"] == "req-deny-3")
        .unwrap();
    assert_eq!(
        d3["rule"], "admins-v2",
        "the reload applied; the invalid one did not"
    );
    assert!(lines.iter().any(|l| l["message"] == "config reloaded"));
    assert!(
        lines
            .iter()
            .any(|l| l["message"] == "SIGHUP: reloading the config")
    );
    assert!(lines.iter().any(|l| {
        l["message"]
            .as_str()
            .unwrap_or("")
            .starts_with("config reload rejected")
            && l["field"] == "clients[0]"
            || l["field"] == "config"
    }));
}
