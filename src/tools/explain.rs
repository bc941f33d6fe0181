//! `oidc-authz explain`: "why was this request denied?" — the request from the command line,
//! the decision trace from [`crate::core::explain`] (offline, against a config file) or from the
//! admin gRPC `Explain` call of a running server (`--server`), rendered as text or JSON. Never
//! echoes the token: the trace shows only its header fields and a few standard claims.

use serde_json::Value;

/// `oidc-authz explain` output, human-readable: one step per line, the decision, and the key sets
/// when asked. The one rendering of an explanation; the offline and `--server` modes both come
/// through [`crate::doors::admin_grpc::pb::ExplainResponse`].
pub fn render_text(
    resp: &crate::doors::admin_grpc::pb::ExplainResponse,
    key_sets: Option<&crate::doors::admin_grpc::pb::KeySetsResponse>,
) -> String {
    use std::fmt::Write as _;
    let dash = |s: &str| {
        if s.is_empty() {
            "-".to_owned()
        } else {
            s.to_owned()
        }
    };
    let mut out = String::new();
    for s in &resp.steps {
        let _ = writeln!(out, "{:>10}: {}", s.step, s.outcome);
    }
    if resp.decision == "allow" {
        let _ = writeln!(
            out,
            "  decision: ALLOW (rule {}, client {})",
            resp.rule,
            dash(&resp.client)
        );
        let mut set: Vec<_> = resp.set_headers.iter().collect();
        set.sort();
        for (k, v) in set {
            let _ = writeln!(out, "   set hdr: {k}: {v}");
        }
        if !resp.remove_headers.is_empty() {
            let _ = writeln!(out, "remove hdr: {}", resp.remove_headers.join(", "));
        }
    } else {
        let _ = writeln!(
            out,
            "  decision: DENY {} {} — {} (rule {}, client {})",
            resp.http_status,
            resp.reason,
            resp.detail,
            dash(&resp.rule),
            dash(&resp.client)
        );
    }
    for s in key_sets.map(|k| k.key_sets.as_slice()).unwrap_or_default() {
        let _ = writeln!(
            out,
            "   key set: {} [{}] kids {:?}, age {:.0}s, {}{}",
            s.id,
            s.clients.join(","),
            s.kids,
            s.age_seconds,
            if s.available {
                "available"
            } else {
                "NOT available"
            },
            if s.last_error.is_empty() {
                String::new()
            } else {
                format!(", last error: {}", s.last_error)
            }
        );
    }
    out
}

/// `oidc-authz explain --json` output.
pub fn render_json(
    resp: &crate::doors::admin_grpc::pb::ExplainResponse,
    key_sets: Option<&crate::doors::admin_grpc::pb::KeySetsResponse>,
) -> Value {
    serde_json::json!({
        "decision": resp.decision, "reason": resp.reason, "http_status": resp.http_status,
        "detail": resp.detail, "rule": resp.rule, "client": resp.client,
        "steps": resp.steps.iter().map(|s| serde_json::json!({"step": s.step, "outcome": s.outcome})).collect::<Vec<_>>(),
        "roles": resp.roles, "set_headers": resp.set_headers, "remove_headers": resp.remove_headers,
        "config_generation": resp.config_generation,
        "key_sets": key_sets.map(|k| k.key_sets.iter().map(|s| serde_json::json!({
            "id": s.id, "kids": s.kids, "loaded": s.loaded, "available": s.available,
            "age_seconds": s.age_seconds, "last_error": s.last_error, "clients": s.clients})).collect::<Vec<_>>()),
    })
}

/// The ExplainRequest of `oidc-authz explain`'s arguments: the token from `--token` or
/// `--token-file` (trimmed), `--header "name: value"` lines (names lower-cased).
pub fn cli_request(
    token: Option<&str>,
    token_file: Option<&std::path::Path>,
    method: String,
    path: String,
    host: String,
    header_lines: &[String],
) -> Result<crate::doors::admin_grpc::pb::ExplainRequest, String> {
    let token = match (token, token_file) {
        (Some(t), _) => t.trim().to_owned(),
        (None, Some(f)) => std::fs::read_to_string(f)
            .map_err(|e| format!("--token-file {}: {e}", f.display()))?
            .trim()
            .to_owned(),
        (None, None) => String::new(),
    };
    let mut headers = std::collections::HashMap::new();
    for h in header_lines {
        let (k, v) = h
            .split_once(':')
            .ok_or_else(|| format!("--header `{h}`: expected `name: value`"))?;
        headers.insert(k.trim().to_ascii_lowercase(), v.trim().to_owned());
    }
    Ok(crate::doors::admin_grpc::pb::ExplainRequest {
        method,
        path,
        host,
        headers,
        token,
    })
}

/// Explain offline: load `source` as `serve` would, wait (bounded) for every key set's first
/// fetch, and explain `req`; `with_key_sets` also lists the key sets. Returns the warnings
/// (key sets that did not load) alongside.
pub async fn explain_offline(
    source: &crate::tools::compat::Source,
    req: &crate::doors::admin_grpc::pb::ExplainRequest,
    with_key_sets: bool,
) -> Result<
    (
        crate::doors::admin_grpc::pb::ExplainResponse,
        Option<crate::doors::admin_grpc::pb::KeySetsResponse>,
        Vec<String>,
    ),
    String,
> {
    let loaded = source.load().map_err(|e| format!("invalid config:\n{e}"))?;
    let state = crate::ops::state::ServerState::new(
        loaded.config,
        std::sync::Arc::new(crate::observe::metrics::Metrics::new()),
    )
    .map_err(|e| format!("invalid config:\n{e}"))?;
    let snap = state.snapshot();
    let mut warnings = Vec::new();
    for ks in snap.key_sets() {
        let timeout = ks.settings().timeout * 2;
        if !ks.wait_loaded(timeout).await {
            warnings.push(format!(
                "key set {} did not load: {}",
                ks.id(),
                ks.state().last_error.clone().unwrap_or_default()
            ));
        }
    }
    let resp = crate::doors::admin_grpc::explain_request(&snap, req).await;
    let ks = with_key_sets.then(|| crate::doors::admin_grpc::key_sets(&snap));
    Ok((resp, ks, warnings))
}

/// Explain against a live server's admin gRPC API (`listen.admin_grpc`).
pub async fn explain_remote(
    addr: &str,
    req: crate::doors::admin_grpc::pb::ExplainRequest,
    with_key_sets: bool,
) -> Result<
    (
        crate::doors::admin_grpc::pb::ExplainResponse,
        Option<crate::doors::admin_grpc::pb::KeySetsResponse>,
    ),
    String,
> {
    use crate::doors::admin_grpc::pb;
    let url = if addr.contains("://") {
        addr.to_owned()
    } else {
        format!("http://{addr}")
    };
    let mut client = pb::admin_client::AdminClient::connect(url.clone())
        .await
        .map_err(|e| format!("cannot reach the admin gRPC API at {url}: {e}"))?;
    let resp = client
        .explain(req)
        .await
        .map_err(|e| format!("Explain: {e}"))?
        .into_inner();
    let ks = if with_key_sets {
        Some(
            client
                .key_sets(pb::KeySetsRequest {})
                .await
                .map_err(|e| format!("KeySets: {e}"))?
                .into_inner(),
        )
    } else {
        None
    };
    Ok((resp, ks))
}

/// `oidc-authz explain` as typed on the command line.
#[derive(Debug, Default, clap::Args)]
pub struct Cli {
    #[arg(long, env = "OIDC_AUTHZ_CONFIG", conflicts_with = "server")]
    pub config: Option<std::path::PathBuf>,
    /// A live server's admin gRPC address (listen.admin_grpc), e.g. 127.0.0.1:9003.
    #[arg(long)]
    pub server: Option<String>,
    /// The bearer token (or use --token-file; never logged).
    #[arg(long)]
    pub token: Option<String>,
    #[arg(long, conflicts_with = "token")]
    pub token_file: Option<std::path::PathBuf>,
    #[arg(long, default_value = "GET")]
    pub method: String,
    #[arg(long)]
    pub path: String,
    #[arg(long, default_value = "")]
    pub host: String,
    /// Extra request headers, `name: value` (repeatable).
    #[arg(long = "header")]
    pub headers: Vec<String>,
    /// Print the answer as JSON.
    #[arg(long)]
    pub json: bool,
    /// Also list the key sets (kids, age, last fetch result).
    #[arg(long)]
    pub key_sets: bool,
}

/// Run `explain` and print the answer; the exit code: 0 allowed, 1 denied, 2 usage or config
/// error.
pub fn cli(a: Cli) -> u8 {
    let usage = |msg: &str| {
        eprintln!("oidc-authz: {msg}");
        2
    };
    let req = match cli_request(
        a.token.as_deref(),
        a.token_file.as_deref(),
        a.method,
        a.path,
        a.host,
        &a.headers,
    ) {
        Ok(r) => r,
        Err(msg) => return usage(&msg),
    };
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => return usage(&format!("cannot start the runtime: {e}")),
    };
    let result = runtime.block_on(async {
        match &a.server {
            Some(addr) => explain_remote(addr, req, a.key_sets).await,
            None => {
                let source = crate::tools::compat::Source::choose(a.config)?;
                let (resp, ks, warnings) = explain_offline(&source, &req, a.key_sets).await?;
                for w in warnings {
                    eprintln!("warning: {w}");
                }
                Ok((resp, ks))
            }
        }
    });
    let (resp, ks) = match result {
        Ok(r) => r,
        Err(msg) => return usage(&msg),
    };
    if a.json {
        println!("{:#}", render_json(&resp, ks.as_ref()));
    } else {
        print!("{}", render_text(&resp, ks.as_ref()));
    }
    if resp.decision == "allow" { 0 } else { 1 }
}
