//! "Why was this request denied?" — the full decision trace for one request.
//!
//! The verdict is always [`check::decide`]'s own (so `explain` can never disagree with `serve`);
//! the trace around it re-runs the same pure steps (normalise, match, extract, parse, route) to
//! say what each saw. Never echoes the token: only its header fields and a few standard claims.
//! Used offline by `oidc-authz explain` and live by the admin gRPC `Explain` call.

use serde_json::Value;

use crate::config::DefaultAction;
use crate::core::check::{self, CheckInput, DEFAULT_RULE};
use crate::core::policy;
use crate::core::snapshot::Snapshot;
use crate::core::token;
use crate::decision::Decision;

/// The decision plus what each step saw.
#[derive(Debug, Clone)]
pub struct Explanation {
    pub decision: Decision,
    pub steps: Vec<(String, String)>,
    /// Roles found in the token under the routed client's role claim paths.
    pub roles: Vec<String>,
    pub config_generation: u64,
}

impl Explanation {
    pub fn decision_name(&self) -> &'static str {
        if self.decision.is_allow() {
            "allow"
        } else {
            "deny"
        }
    }
}

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
        std::sync::Arc::new(crate::ops::metrics::Metrics::new()),
    )
    .map_err(|e| format!("invalid config:\n{e}"))?;
    let snap = state.snapshot();
    let mut warnings = Vec::new();
    for ks in snap.key_sets() {
        let timeout = ks.settings().timeout * 2;
        if !ks.wait_loaded(timeout).await {
            warnings.push(format!(
                "key set {} did not load: {}",
                ks.id,
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

fn short(v: Option<&Value>) -> String {
    match v {
        None => "-".into(),
        Some(Value::String(s)) => s.chars().take(200).collect(),
        Some(other) => other.to_string().chars().take(200).collect(),
    }
}

/// Explain one request against `snap` at time `now` (Unix seconds).
pub async fn explain(snap: &Snapshot, input: &CheckInput<'_>, now: i64) -> Explanation {
    let decision = check::decide(snap, input, now).await;
    let mut steps: Vec<(String, String)> = Vec::new();
    let mut roles = Vec::new();
    let mut push = |s: &str, o: String| steps.push((s.to_owned(), o));
    push(
        "request",
        format!(
            "{} {} host {}",
            input.method,
            input.path.chars().take(300).collect::<String>(),
            input.host
        ),
    );
    match policy::normalize_path(input.path) {
        Err(d) => push("path", format!("invalid: {}", d.detail)),
        Ok(path) => {
            push("path", format!("normalised to {path}"));
            let host = policy::host_without_port(input.host);
            match snap
                .config
                .rules
                .find(&check::upper(input.method), &host, &path)
            {
                Some(r) => push(
                    "rule",
                    format!(
                        "{} (auth {:?}, {} condition(s))",
                        r.name,
                        r.auth,
                        r.conditions.len()
                    ),
                ),
                None => push(
                    "rule",
                    match snap.config.default {
                        DefaultAction::Deny => "no rule matched; default is deny".into(),
                        DefaultAction::Authenticated => {
                            format!("no rule matched; `{DEFAULT_RULE}`: any valid token")
                        }
                    },
                ),
            }
        }
    }
    match token::extract(
        &snap.config.token.sources,
        &input.headers,
        snap.config.token.max_bytes,
    ) {
        Err(d) => push("token", format!("unusable: {}", d.detail)),
        Ok(None) => push("token", "none in any configured source".into()),
        Ok(Some(raw)) => match token::parse(raw) {
            Err(d) => push(
                "token",
                format!("{} bytes, malformed: {}", raw.len(), d.detail),
            ),
            Ok(jwt) => {
                let c = &jwt.claims;
                push(
                    "token",
                    format!(
                        "{} bytes; alg {} kid {} typ {}; iss {} aud {} sub {} exp {} (now {now})",
                        raw.len(),
                        jwt.header.alg,
                        jwt.header.kid.as_deref().unwrap_or("-"),
                        jwt.header.typ.as_deref().unwrap_or("-"),
                        short(c.get("iss")),
                        short(c.get("aud")),
                        short(c.get("sub")),
                        short(c.get("exp")),
                    ),
                );
                match crate::core::verify::route(snap, c) {
                    Err(d) => push("route", format!("{}: {}", d.reason.code(), d.detail)),
                    Ok(i) => {
                        let client = &snap.clients[i];
                        let ks = client.key_set.state();
                        push(
                            "route",
                            format!(
                                "client {} (key set {}: {} key(s), generation {}, {})",
                                client.cfg.name,
                                client.key_set.id,
                                ks.keys.len(),
                                ks.generation,
                                if client.key_set.available(&ks) {
                                    "available"
                                } else {
                                    "NOT available"
                                }
                            ),
                        );
                        for p in &client.cfg.roles {
                            roles.extend(policy::names_in(token::claim(c, p)).map(str::to_owned));
                        }
                        push(
                            "roles",
                            if roles.is_empty() {
                                "none found".into()
                            } else {
                                roles.join(", ")
                            },
                        );
                        push("binding", binding_step(c, &client.cfg.binding));
                    }
                }
            }
        },
    }
    Explanation {
        decision,
        steps,
        roles,
        config_generation: snap.generation,
    }
}

/// What DESIGN §10 asks of this token (the checks themselves run in the decision).
fn binding_step(
    claims: &serde_json::Map<String, serde_json::Value>,
    cfg: &crate::core::binding::BindingConfig,
) -> String {
    match crate::core::binding::confirmation(claims) {
        Err(e) => format!("{}: {}", e.reason_code(), e.detail()),
        Ok(None) if cfg.require => "no cnf; binding.require is true (binding_required)".into(),
        Ok(None) => "no cnf: a bearer token".into(),
        Ok(Some(c)) => {
            let mut needs = Vec::new();
            if c.jkt.is_some() {
                needs.push("cnf.jkt: the DPoP scheme and a valid DPoP proof");
            }
            if c.x5t_s256.is_some() {
                needs.push("cnf[\"x5t#S256\"]: the bound client certificate");
            }
            format!("needs {} on every request", needs.join(" and "))
        }
    }
}
