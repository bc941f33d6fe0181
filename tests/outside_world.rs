//! The outside world (issue 12, issue 11 findings 2, 4, 5, 9, 11): URLs are checked by the parser
//! that fetches them, printed URLs are redacted, unknown-kid refetches never queue, and config
//! files are read off the runtime, only when regular and only when stable.
//!
//! Local servers listen on 127.0.0.1 only. `0.0.0.0` below is a *destination*: connecting to it
//! reaches the local 127.0.0.1 listener, which lets a test observe a request that the https-only
//! rule should have stopped (0.0.0.0 is not a loopback address, so plain http to it is refused).

#![allow(clippy::unwrap_used)]

mod common;

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::routing::get;
use common::*;
use oidc_authz::config::{self, JwksSettings, KeySource};
use oidc_authz::doors::grpc::AuthzService;
use oidc_authz::observe::metrics::Metrics;
use oidc_authz::ops::state::ServerState;
use oidc_authz::outside::jwks::{Alg, KeyRegistry};
use oidc_authz::testkit::{TestKey, jwks};
use tokio::time::Instant;

// ---------------------------------------------------------------------------------------------
// helpers

/// Every log line of this test binary (each test looks for its own unique strings).
#[derive(Clone, Default)]
struct LogBuf(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for LogBuf {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for LogBuf {
    type Writer = LogBuf;
    fn make_writer(&'a self) -> LogBuf {
        self.clone()
    }
}

fn logs() -> String {
    static LOGS: OnceLock<LogBuf> = OnceLock::new();
    let buf = LOGS.get_or_init(|| {
        let buf = LogBuf::default();
        let sub = tracing_subscriber::fmt()
            .with_writer(buf.clone())
            .with_ansi(false)
            .with_max_level(tracing::Level::INFO)
            .finish();
        let _ = tracing::subscriber::set_global_default(sub);
        buf
    });
    String::from_utf8_lossy(&buf.0.lock().unwrap()).into_owned()
}

/// A local server that answers discovery with a document the test writes, serves keys, and
/// records every other request (with its Authorization header).
struct Capture {
    port: u16,
    issuer: String,
    doc: Arc<Mutex<serde_json::Value>>,
    /// Requests other than discovery and the keys: what must never happen.
    stray: Arc<Mutex<Vec<(String, String)>>>,
}

#[derive(Clone)]
struct CaptureState {
    doc: Arc<Mutex<serde_json::Value>>,
    keys: Arc<Mutex<String>>,
    stray: Arc<Mutex<Vec<(String, String)>>>,
}

async fn capture(key: &TestKey) -> Capture {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let issuer = format!("http://127.0.0.1:{port}/realms/x");
    let st = CaptureState {
        doc: Arc::new(Mutex::new(serde_json::json!({}))),
        keys: Arc::new(Mutex::new(jwks(&[key]))),
        stray: Arc::new(Mutex::new(Vec::new())),
    };
    let app = Router::new()
        .route(
            "/realms/x/.well-known/openid-configuration",
            get(|State(s): State<CaptureState>| async move { s.doc.lock().unwrap().to_string() }),
        )
        .route(
            "/realms/x/certs",
            get(|State(s): State<CaptureState>| async move { s.keys.lock().unwrap().clone() }),
        )
        .fallback(
            |State(s): State<CaptureState>, uri: axum::http::Uri, headers: HeaderMap| async move {
                let auth = headers
                    .get("authorization")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("")
                    .to_owned();
                s.stray.lock().unwrap().push((uri.to_string(), auth));
                r#"{"active": true, "keys": []}"#
            },
        )
        .with_state(st.clone());
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    Capture {
        port,
        issuer,
        doc: st.doc,
        stray: st.stray,
    }
}

impl Capture {
    fn stray(&self) -> Vec<(String, String)> {
        self.stray.lock().unwrap().clone()
    }
    /// `http://0.0.0.0:PORT\@127.0.0.1/…`: a hand-written validator takes the host after the
    /// last `@` (loopback: http allowed); the fetching parser ends the host at `\` (0.0.0.0).
    fn smuggled(&self, path: &str) -> String {
        format!("http://0.0.0.0:{}\\@127.0.0.1{path}", self.port)
    }
}

/// Poll `cond` until it holds, failing after `limit`.
async fn until(limit: Duration, what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for: {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn reload_errors(state: &ServerState) -> u64 {
    let text = state.metrics.render();
    text.lines()
        .find_map(|l| l.strip_prefix(r#"oidc_authz_config_reloads_total{result="error"} "#))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0)
}

fn keys_file(dir: &Path, key: &TestKey) -> PathBuf {
    let keys = dir.join("keys.json");
    std::fs::write(&keys, jwks(&[key])).unwrap();
    keys
}

fn file_config(keys: &Path, rules: &str) -> String {
    format!(
        "listen: {{grpc: 127.0.0.1:0, admin: 127.0.0.1:0}}\nclients:\n  - name: app\n    issuer: https://issuer.example.org\n    jwks_file: {}\n    audiences: [app]\n    algorithms: [ES256]\ndefault: authenticated\n{rules}",
        keys.display()
    )
}

// ---------------------------------------------------------------------------------------------
// finding 4: the https-only rule and the backslash

/// check-config: a configured `jwks_uri` or introspection `endpoint` written with a backslash
/// is refused (the old validator read `127.0.0.1` as the host and accepted both).
#[test]
fn a_backslash_url_is_refused_by_check_config() {
    let client = |extra: &str| {
        format!(
            "clients:\n  - name: a\n    issuer: http://127.0.0.1:1/realms/x\n    audiences: [a]\n    algorithms: [ES256]\n{extra}default: authenticated\n"
        )
    };
    for (field, text) in [
        (
            "clients[0].jwks_uri",
            client("    jwks_uri: \"http://idp.example.org:80\\\\@127.0.0.1/jwks\"\n"),
        ),
        (
            "clients[0].introspection.endpoint",
            client(
                "    introspection: {endpoint: \"http://idp.example.org\\\\@127.0.0.1/introspect\", client_id: a, client_secret: b}\n",
            ),
        ),
    ] {
        assert!(
            text.contains(r"\\@127"),
            "YAML escapes one backslash: {text}"
        );
        let errors = config::parse(&text).expect_err(field).0;
        assert!(
            errors
                .iter()
                .any(|e| e.field == field && e.message.contains("backslash")),
            "{field}: {errors:?}"
        );
    }
}

/// A discovery document's `jwks_uri` goes through the same rule: the key set does not load
/// and no request leaves for the smuggled host.
#[tokio::test]
async fn a_discovered_backslash_jwks_uri_is_never_fetched() {
    let key = TestKey::generate(Alg::ES256, "k");
    let idp = capture(&key).await;
    *idp.doc.lock().unwrap() = serde_json::json!({
        "issuer": idp.issuer, "jwks_uri": idp.smuggled("/certs"),
    });
    let yaml = format!(
        "clients:\n  - {{name: a, issuer: \"{}\", audiences: [a], algorithms: [ES256]}}\ndefault: authenticated\n",
        idp.issuer
    );
    let server = start_server(&yaml).await;
    let ks = server.state.snapshot().clients[0].key_set.clone();
    until(Duration::from_secs(10), "a fetch attempt", || {
        ks.state().last_error.is_some()
    })
    .await;
    let err = ks.state().last_error.clone().unwrap();
    assert!(err.contains("backslash"), "{err}");
    assert!(!ks.state().loaded());
    assert_eq!(idp.stray(), vec![], "a request went to the smuggled host");
}

/// The introspection endpoint from discovery goes through the same rule: the client secret is
/// never sent (the old code POSTed `Authorization: Basic …` over plain http to 0.0.0.0).
#[tokio::test]
async fn a_discovered_backslash_introspection_endpoint_never_gets_the_secret() {
    let key = TestKey::generate(Alg::ES256, "k");
    let idp = capture(&key).await;
    *idp.doc.lock().unwrap() = serde_json::json!({
        "issuer": idp.issuer,
        "jwks_uri": format!("{}/certs", idp.issuer),
        "introspection_endpoint": idp.smuggled("/introspect"),
    });
    let yaml = format!(
        "clients:\n  - name: a\n    issuer: \"{}\"\n    audiences: [a]\n    algorithms: [ES256]\n    introspection: {{client_id: a, client_secret: top-secret-value, opaque: true, timeout: 1s}}\ndefault: authenticated\n",
        idp.issuer
    );
    let server = start_server(&yaml).await;
    wait_loaded(&server, "/realms/x").await;
    let svc = AuthzService::new(server.state.clone());
    let b = bearer("an-opaque-token-value");
    let d = svc
        .decide(&request("GET", "h", "/x", &[("authorization", &b)]))
        .await;
    assert!(!d.is_allow(), "fail closed");
    assert_eq!(
        idp.stray(),
        vec![],
        "credentials were sent to the smuggled host"
    );
}

// ---------------------------------------------------------------------------------------------
// finding 9: credentials in a key URL never reach labels, logs or the admin API

#[tokio::test]
async fn credentials_in_a_key_url_are_redacted_everywhere() {
    const PW: &str = "pw-7f3a9c-never-print";
    let _ = logs();
    let text = "jwks: {timeout: 1s, min_refresh_interval: 1s}\nclients:\n  - {name: a, issuer: https://issuer.example.org, jwks_uri: \"https://user:${JWKS_PASSWORD}@127.0.0.1:1/certs?api_key=${JWKS_PASSWORD}\", audiences: [a], algorithms: [ES256]}\ndefault: authenticated\n";
    let cfg =
        config::parse_with_env(text, &|n| (n == "JWKS_PASSWORD").then(|| PW.to_owned())).unwrap();
    assert!(matches!(&cfg.clients[0].keys, KeySource::Uri(u) if u.contains(PW)));
    let state = ServerState::new(cfg, Arc::new(Metrics::new())).unwrap();
    let ks = state.snapshot().clients[0].key_set.clone();
    until(Duration::from_secs(10), "a fetch attempt", || {
        ks.state().last_error.is_some()
    })
    .await;
    // the fetch failed (nothing listens on port 1): the failure is logged and counted
    until(Duration::from_secs(5), "the log line", || {
        logs().contains("key set fetch failed") && logs().contains("127.0.0.1:1/certs")
    })
    .await;
    let snap = state.snapshot();
    let admin = oidc_authz::doors::admin_grpc::key_sets(&snap);
    for (what, shown) in [
        ("key set id", ks.id().to_owned()),
        ("last_error", ks.state().last_error.clone().unwrap()),
        ("metrics", state.metrics.render()),
        ("admin KeySets", format!("{admin:?}")),
        ("logs", logs()),
    ] {
        assert!(!shown.contains(PW), "{what} shows the password: {shown}");
    }
    assert!(
        ks.id().contains("127.0.0.1:1/certs"),
        "still names the URL: {}",
        ks.id()
    );
    assert!(state.metrics.render().contains(ks.id()));
}

// ---------------------------------------------------------------------------------------------
// finding 11: unknown-kid refetches wait for the fetch in flight, bounded by one timeout

/// A stalling IdP (accepts, never answers), `timeout` (2 s) longer than `min_refresh_interval`
/// (0.5 s, set directly: config clamps it), Checks with unknown kids arriving every 0.7 s. The
/// old code queued each behind the previous fetch and then fetched again: 3.3 s and more.
#[tokio::test(start_paused = true)]
async fn unknown_kid_checks_wait_at_most_one_timeout_on_a_stalling_idp() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((sock, _)) = listener.accept().await {
            held.push(sock); // never answer
        }
    });
    let timeout = Duration::from_secs(2);
    let settings = JwksSettings {
        refresh_interval: Duration::from_secs(300),
        min_refresh_interval: Duration::from_millis(500),
        max_stale: Duration::from_secs(3600),
        timeout,
        ca_file: None,
    };
    let registry = KeyRegistry::new(Arc::new(Metrics::new()), None).unwrap();
    let ks = registry
        .key_set(&KeySource::Uri(format!("http://{addr}/certs")), &settings)
        .unwrap(); // the background fetch starts now and stalls
    let mut checks = Vec::new();
    for i in 1..=5u32 {
        let ks = ks.clone();
        checks.push(tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(700) * i).await;
            let t = Instant::now();
            let _ = ks.refetch_for_unknown_kid(&format!("kid-{i}"), 0).await;
            t.elapsed()
        }));
    }
    for (i, c) in checks.into_iter().enumerate() {
        let waited = c.await.unwrap();
        assert!(
            waited <= timeout + Duration::from_millis(10),
            "Check {} waited {waited:?} (> one timeout)",
            i + 1
        );
    }
}

/// `jwks.timeout` longer than `jwks.min_refresh_interval` is clamped to it.
#[test]
fn a_jwks_timeout_longer_than_the_cooldown_is_clamped() {
    let text = "jwks: {timeout: 5s, min_refresh_interval: 1s}\nclients:\n  - {name: a, issuer: https://issuer.example.org, audiences: [a], algorithms: [ES256]}\ndefault: authenticated\n";
    let c = config::parse(text).unwrap();
    assert_eq!(c.jwks.timeout, Duration::from_secs(1));
}

// ---------------------------------------------------------------------------------------------
// finding 2: a FIFO (or device, or directory) never stalls the server

/// A FIFO held open for reading and writing (which never blocks): a reader stuck on it (the old
/// code) sees end-of-file when this is dropped, so a failing test ends instead of hanging.
struct Fifo(#[allow(dead_code)] std::fs::File);

fn mkfifo(path: &Path) -> Fifo {
    assert!(
        std::process::Command::new("mkfifo")
            .arg(path)
            .status()
            .unwrap()
            .success()
    );
    Fifo(
        std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(path)
            .unwrap(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_config_replaced_by_a_fifo_is_refused_and_the_server_keeps_serving() {
    let _ = logs();
    let dir = temp_dir("fifo");
    let key = TestKey::generate(Alg::ES256, "k");
    let keys = keys_file(&dir, &key);
    let cfg_path = dir.join("config.yaml");
    let good = file_config(&keys, "rules:\n  - {name: api, match: {prefix: /api}}\n");
    std::fs::write(&cfg_path, &good).unwrap();
    let state =
        ServerState::new(config::load(&cfg_path).unwrap(), Arc::new(Metrics::new())).unwrap();
    let errors_before = reload_errors(&state);
    let reloader =
        oidc_authz::ops::reload::spawn(state.clone(), cfg_path.clone(), Duration::from_millis(50));

    let fifo = dir.join("fifo");
    let _held = mkfifo(&fifo);
    std::fs::rename(&fifo, &cfg_path).unwrap();
    reloader.trigger(); // SIGHUP too

    let svc = AuthzService::new(state.clone());
    let b = bearer(&key.token(&oidc_authz::testkit::claims(
        "https://issuer.example.org",
        serde_json::json!("app"),
        serde_json::json!({}),
    )));
    let deadline = Instant::now() + Duration::from_secs(10);
    while reload_errors(&state) == errors_before {
        assert!(
            Instant::now() < deadline,
            "the FIFO was never refused (no config_reloads_total error)"
        );
        // Checks keep being answered at once meanwhile.
        let d = tokio::time::timeout(
            Duration::from_secs(2),
            svc.decide(&request("GET", "h", "/api/x", &[("authorization", &b)])),
        )
        .await
        .expect("a Check stalled");
        assert!(d.is_allow());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    until(Duration::from_secs(5), "a log line naming the file", || {
        logs().contains(&format!(
            "{}: not a regular file (a FIFO)",
            cfg_path.display()
        ))
    })
    .await;
    assert_eq!(
        state.snapshot().generation,
        1,
        "the old config keeps serving"
    );

    // Put a regular file back (rename): it is loaded, the server recovered.
    let next = dir.join("next.yaml");
    std::fs::write(
        &next,
        file_config(&keys, "rules:\n  - {name: api2, match: {prefix: /api}}\n"),
    )
    .unwrap();
    std::fs::rename(&next, &cfg_path).unwrap();
    until(Duration::from_secs(5), "the regular file is loaded", || {
        state.snapshot().generation > 1
    })
    .await;
}

/// Files that are not regular are refused by every reader, at once.
#[tokio::test]
async fn non_regular_files_are_refused_without_blocking() {
    let dir = temp_dir("kinds");
    let fifo = dir.join("fifo");
    let _held = mkfifo(&fifo);
    for p in [fifo.as_path(), dir.as_path(), Path::new("/dev/zero")] {
        let e = oidc_authz::outside::files::read(p, Duration::from_secs(5))
            .await
            .unwrap_err();
        assert!(e.to_string().contains("not a regular file"), "{e}");
        let p2 = p.to_owned();
        let loaded = tokio::time::timeout(
            Duration::from_secs(5),
            tokio::task::spawn_blocking(move || config::load(&p2)),
        )
        .await
        .expect("config::load blocked")
        .unwrap();
        assert!(loaded.is_err());
    }
}

// ---------------------------------------------------------------------------------------------
// finding 5: only stable content is loaded

/// A config file (with `rules`) and its key file, loaded, and a live reloader polling every
/// 50 ms with the given settle time.
struct Watched {
    dir: PathBuf,
    key: TestKey,
    keys: PathBuf,
    cfg_path: PathBuf,
    state: Arc<ServerState>,
    _reloader: oidc_authz::ops::reload::Reloader,
}

fn watched(name: &str, rules: &str, settle: Duration) -> Watched {
    let dir = temp_dir(name);
    let key = TestKey::generate(Alg::ES256, "k");
    let keys = keys_file(&dir, &key);
    let cfg_path = dir.join("config.yaml");
    std::fs::write(&cfg_path, file_config(&keys, rules)).unwrap();
    let state =
        ServerState::new(config::load(&cfg_path).unwrap(), Arc::new(Metrics::new())).unwrap();
    let _reloader = oidc_authz::ops::reload::spawn_with_settle(
        state.clone(),
        cfg_path.clone(),
        Duration::from_millis(50),
        settle,
        oidc_authz::ops::reload::Target::Live,
    );
    Watched {
        dir,
        key,
        keys,
        cfg_path,
        state,
        _reloader,
    }
}

/// The finding: the config is rewritten in place in two writes 1.5 s apart (longer than the
/// settle time); the first half is a valid config on its own (no rules: every valid token allowed
/// everywhere). It must never be loaded; the complete file is, within 2 s of its writer closing it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_config_written_in_place_in_two_writes_is_loaded_only_when_complete() {
    let Watched {
        keys,
        cfg_path,
        state,
        ..
    } = watched(
        "half",
        "rules:\n  - {name: old, match: {prefix: /api}}\n",
        oidc_authz::ops::reload::DEFAULT_SETTLE,
    );
    let first = file_config(&keys, "");
    let second = "rules:\n  - {name: admin, match: {prefix: /admin}, roles: {all_of: [admin]}}\n";
    assert!(config::parse(&first).is_ok(), "the first half is valid");
    tokio::time::sleep(Duration::from_millis(200)).await;

    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .truncate(true)
        .open(&cfg_path)
        .unwrap();
    f.write_all(first.as_bytes()).unwrap();
    let written = Instant::now();
    while written.elapsed() < Duration::from_millis(1500) {
        assert_eq!(
            state.snapshot().generation,
            1,
            "the half-written config was loaded"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    f.write_all(second.as_bytes()).unwrap();
    drop(f);
    until(Duration::from_secs(2), "the complete config", || {
        state.snapshot().generation > 1
    })
    .await;
    let snap = state.snapshot();
    assert_eq!(snap.generation, 2, "loaded once, complete");
    assert_eq!(snap.config.rules.len(), 1);
}

/// A config written in place and closed (`std::fs::write`, `cp`) is complete: on Linux the
/// kernel says its writer closed it, so it loads at the next poll, without the settle time.
#[cfg(target_os = "linux")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_config_written_in_place_and_closed_is_loaded_at_once() {
    let Watched {
        key,
        keys,
        cfg_path,
        state,
        ..
    } = watched("closed", "", Duration::from_secs(30));
    let rules = "rules:\n  - {name: api, match: {prefix: /api}}\n";
    std::fs::write(&cfg_path, file_config(&keys, rules)).unwrap();
    until(
        Duration::from_secs(10),
        "the closed in-place write (settle is 30 s)",
        || state.snapshot().generation > 1,
    )
    .await;
    // the jwks_file too: a key file written in place and closed reloads the config at once
    let other = TestKey::generate(Alg::ES256, "k2");
    std::fs::write(&keys, jwks(&[&key, &other])).unwrap();
    until(Duration::from_secs(10), "the rewritten key file", || {
        state.snapshot().generation > 2
    })
    .await;
}

/// A rename (new inode) is complete by construction: loaded at the next poll, without waiting
/// for the settle time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_renamed_config_is_loaded_at_once() {
    let Watched {
        dir,
        keys,
        cfg_path,
        state,
        ..
    } = watched("rename", "", Duration::from_secs(30));
    let tmp = dir.join(".config.yaml.tmp");
    std::fs::write(
        &tmp,
        file_config(&keys, "rules:\n  - {name: api, match: {prefix: /api}}\n"),
    )
    .unwrap();
    std::fs::rename(&tmp, &cfg_path).unwrap();
    until(
        Duration::from_secs(10),
        "the renamed config (settle is 30 s)",
        || state.snapshot().generation > 1,
    )
    .await;
}
