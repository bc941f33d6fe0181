//! "Why was this request denied?" — the full decision trace for one request.
//!
//! The verdict is always [`check::decide`]'s own (so `explain` can never disagree with `serve`);
//! the trace around it re-runs the same pure steps (normalise, match, extract, parse, route) to
//! say what each saw. Never echoes the token: only its header fields and a few standard claims.
//! Used offline by `oidc-authz explain` and live by the admin gRPC `Explain` call.

use serde_json::Value;

use crate::check::{self, CheckInput, DEFAULT_RULE};
use crate::config::DefaultAction;
use crate::decision::Decision;
use crate::policy;
use crate::snapshot::Snapshot;
use crate::token;

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

    /// Human-readable, one step per line.
    pub fn render_text(&self) -> String {
        let mut out = String::new();
        for (step, outcome) in &self.steps {
            out.push_str(&format!("{step:>10}: {outcome}\n"));
        }
        match &self.decision {
            Decision::Allow(a) => {
                out.push_str(&format!(
                    "  decision: ALLOW (rule {}, client {})\n",
                    a.rule,
                    a.client.as_deref().unwrap_or("-")
                ));
                for (k, v) in &a.set_headers {
                    out.push_str(&format!("   set hdr: {k}: {v}\n"));
                }
                if !a.remove_headers.is_empty() {
                    out.push_str(&format!("remove hdr: {}\n", a.remove_headers.join(", ")));
                }
            }
            Decision::Deny {
                deny, rule, client, ..
            } => out.push_str(&format!(
                "  decision: DENY {} {} — {} (rule {}, client {})\n",
                deny.reason.http_status(),
                deny.reason.code(),
                deny.detail,
                rule.as_deref().unwrap_or("-"),
                client.as_deref().unwrap_or("-")
            )),
        }
        out
    }
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
                match crate::verify::route(snap, c) {
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
