//! The decision path of one Check, from request attributes to [`Decision`]:
//! normalise path → first matching rule → find token → parse → route → verify → conditions →
//! allow (with upstream headers) or deny. Pure except for one await: a rate-limited,
//! single-flight key-set refetch when a token names an unknown `kid`.

use std::borrow::Cow;
use std::sync::Arc;

use crate::core::binding::ReplayMemory;
use crate::core::binding::enforce::{self, BindingRequest};
use crate::core::cache::{Entry, TokenCache};
use crate::core::ports::{Answer, Introspect};
use crate::observe::metrics::Metrics;

use crate::core::model::DefaultAction;
use crate::core::policy::{self, AuthMode, RuleMode};
use crate::core::snapshot::{CLIENT_HEADER, Snapshot};
use crate::core::token::{self, Headers};
use crate::core::verify::{self, Failure};
use crate::decision::{Allow, Decision, Deny, DenyKind, Reason};

/// The parts of a CheckRequest the decision needs, borrowed from it.
#[derive(Debug, Default, Clone)]
pub struct CheckInput<'a> {
    pub method: &'a str,
    /// `:authority` / `Host`, possibly with a port.
    pub host: &'a str,
    /// The request target as received (path and query, not decoded).
    pub path: &'a str,
    pub headers: Headers<'a>,
    /// The request scheme (`http` / `https`) from the Check's attributes: the `htu` of a DPoP
    /// proof is compared with scheme + host + path (DESIGN §10).
    pub scheme: &'a str,
    /// Envoy's `attributes.source.certificate` (URL-encoded PEM, empty without one), for
    /// mTLS-bound tokens in `peer` mode.
    pub peer_certificate: &'a str,
}

/// What each step of one decision saw, for `explain`. `serve` passes [`Trace::off`]: every step
/// is then one branch and nothing is formatted. `explain` passes [`Trace::collect`] and so
/// describes the very path `serve` runs, not a second walk beside it.
#[derive(Debug, Default)]
pub struct Trace {
    steps: Option<Vec<(&'static str, String)>>,
    roles: Vec<String>,
}

impl Trace {
    pub fn off() -> Self {
        Trace::default()
    }

    pub fn collect() -> Self {
        Trace {
            steps: Some(Vec::new()),
            roles: Vec::new(),
        }
    }

    #[inline]
    fn step(&mut self, name: &'static str, what: impl FnOnce() -> String) {
        if let Some(steps) = &mut self.steps {
            steps.push((name, what()));
        }
    }

    /// The steps in order, `(step, what it saw)`.
    pub fn steps(&self) -> &[(&'static str, String)] {
        self.steps.as_deref().unwrap_or_default()
    }

    /// Roles found in a verified token under the routed client's role claim paths.
    pub fn roles(&self) -> &[String] {
        &self.roles
    }
}

/// Name used for metrics and logs when no rule matched and `default: authenticated` applies.
pub const DEFAULT_RULE: &str = "default";

/// Longest claim value copied into an upstream header.
const MAX_HEADER_VALUE: usize = 8192;

fn deny(deny: Deny, rule: Option<&str>, client: Option<&str>, token_presented: bool) -> Decision {
    Decision::Deny {
        deny,
        rule: rule.map(str::to_owned),
        client: client.map(str::to_owned),
        token_presented,
    }
}

/// Decide one request without the token cache. `now` is Unix seconds.
pub async fn decide(snap: &Snapshot, input: &CheckInput<'_>, now: i64) -> Decision {
    decide_with(snap, None, None, input, now).await
}

/// [`decide`], recording what each step saw in `trace` (`explain`).
pub async fn decide_traced(
    snap: &Snapshot,
    input: &CheckInput<'_>,
    now: i64,
    trace: &mut Trace,
) -> Decision {
    let mut decision = decide_inner(snap, None, None, &FALLBACK_REPLAY, input, now, trace).await;
    advertise_dpop(snap, &mut decision);
    decision
}

/// Decide one request, using (and filling) the verified-token cache when given. DPoP proof
/// `jti`s go to a process-wide replay memory; the server passes its own to [`decide_bound`].
pub async fn decide_with(
    snap: &Snapshot,
    cache: Option<&TokenCache>,
    metrics: Option<&Metrics>,
    input: &CheckInput<'_>,
    now: i64,
) -> Decision {
    decide_bound(snap, cache, metrics, None, input, now).await
}

/// Replay memory for callers that have none of their own (`explain`, benches, tests).
static FALLBACK_REPLAY: std::sync::LazyLock<ReplayMemory> =
    std::sync::LazyLock::new(|| ReplayMemory::new(16 * 1024, 16));

/// [`decide_with`] with this replica's DPoP replay memory. Every 401 of a routed client that
/// has `binding.dpop` configured carries the `DPoP algs="…"` challenge alongside `Bearer`.
pub async fn decide_bound(
    snap: &Snapshot,
    cache: Option<&TokenCache>,
    metrics: Option<&Metrics>,
    replay: Option<&ReplayMemory>,
    input: &CheckInput<'_>,
    now: i64,
) -> Decision {
    let replay = replay.unwrap_or(&FALLBACK_REPLAY);
    let mut trace = Trace::off();
    let mut decision = decide_inner(snap, cache, metrics, replay, input, now, &mut trace).await;
    advertise_dpop(snap, &mut decision);
    decision
}

/// Every 401 of a routed client with `binding.dpop` configured carries the `DPoP algs="…"`
/// challenge alongside `Bearer`.
fn advertise_dpop(snap: &Snapshot, decision: &mut Decision) {
    if let Decision::Deny {
        deny,
        client: Some(name),
        ..
    } = decision
        && deny.dpop.is_none()
        && deny.reason.kind() == DenyKind::Unauthenticated
        && let Some(c) = snap
            .clients
            .iter()
            .find(|c| c.cfg.name == *name && c.cfg.binding.dpop_configured)
    {
        deny.dpop = Some(Box::new(enforce::advertise(&c.cfg.binding)));
    }
}

async fn decide_inner(
    snap: &Snapshot,
    cache: Option<&TokenCache>,
    metrics: Option<&Metrics>,
    replay: &ReplayMemory,
    input: &CheckInput<'_>,
    now: i64,
    trace: &mut Trace,
) -> Decision {
    trace.step("request", || {
        format!(
            "{} {} host {}",
            input.method,
            input.path.chars().take(300).collect::<String>(),
            input.host
        )
    });
    let path = match policy::normalize_path(input.path) {
        Ok(p) => p,
        Err(d) => {
            trace.step("path", || format!("invalid: {}", d.detail));
            return deny(d, None, None, false);
        }
    };
    trace.step("path", || format!("normalised to {path}"));
    let host = policy::host_without_port(input.host);
    // Methods are matched upper-case: a framework that treats `post` as POST must not let
    // `post` skip a `methods: [POST]` rule.
    let method = upper(input.method);
    let (rule_name, auth, rule) = match snap.config.rules.find(&method, &host, &path) {
        Some(r) => {
            trace.step("rule", || {
                format!(
                    "{} (auth {:?}, {} condition(s){})",
                    r.name,
                    r.auth,
                    r.conditions.len(),
                    if r.mode == RuleMode::Audit {
                        ", mode audit"
                    } else {
                        ""
                    }
                )
            });
            (r.name.as_str(), r.auth, Some(r))
        }
        None => match snap.config.default {
            DefaultAction::Deny => {
                trace.step("rule", || "no rule matched; default is deny".into());
                return deny(
                    Deny::new(
                        Reason::NoMatchingRule,
                        "no rule matched and default is deny",
                    ),
                    None,
                    None,
                    false,
                );
            }
            DefaultAction::Authenticated => {
                trace.step("rule", || {
                    format!("no rule matched; `{DEFAULT_RULE}`: any valid token")
                });
                (DEFAULT_RULE, AuthMode::Required, None)
            }
        },
    };
    let audit = rule.is_some_and(|r| r.mode == RuleMode::Audit);
    let matched = Matched {
        name: rule_name,
        auth,
        rule,
        audit,
    };
    match decide_rule(snap, cache, metrics, replay, input, now, trace, &matched).await {
        // `mode: audit`: the deny is the outcome to log and count; the request passes with no
        // claim headers (a valid token's headers are set in `decide_rule`).
        Decision::Deny { deny, client, .. } if audit => {
            trace.step("audit", || audit_line(&deny));
            Decision::Allow(Allow {
                rule: rule_name.to_owned(),
                client,
                subject: None,
                set_headers: Vec::new(),
                remove_headers: snap.spoofable.clone(),
                audit: Some(Box::new(deny)),
            })
        }
        d => d,
    }
}

/// The rule a request matched (or the implicit `default` rule).
struct Matched<'s> {
    name: &'s str,
    auth: AuthMode,
    rule: Option<&'s policy::Rule>,
    /// `mode: audit`.
    audit: bool,
}

fn audit_line(deny: &Deny) -> String {
    format!(
        "mode: audit — would deny {} {} ({}); allowed",
        deny.reason.http_status(),
        deny.reason.code(),
        deny.detail
    )
}

#[allow(clippy::too_many_arguments)]
async fn decide_rule(
    snap: &Snapshot,
    cache: Option<&TokenCache>,
    metrics: Option<&Metrics>,
    replay: &ReplayMemory,
    input: &CheckInput<'_>,
    now: i64,
    trace: &mut Trace,
    matched: &Matched<'_>,
) -> Decision {
    let (rule_name, auth, rule) = (matched.name, matched.auth, matched.rule);
    if auth == AuthMode::None {
        trace.step("token", || "not looked at: the rule's auth is none".into());
        return anonymous(snap, rule_name);
    }
    let (raw, auth_scheme) = match token::extract_with_scheme(
        &snap.config.token.sources,
        &input.headers,
        snap.config.token.max_bytes,
    ) {
        Ok(Some(t)) => t,
        Ok(None) if auth == AuthMode::Optional => {
            trace.step("token", || "none; the rule's auth is optional".into());
            return anonymous(snap, rule_name);
        }
        Ok(None) => {
            trace.step("token", || "none in any configured source".into());
            return deny(
                Deny::new(
                    Reason::AuthorizationHeaderMissing,
                    "no token in any configured source",
                ),
                Some(rule_name),
                None,
                false,
            );
        }
        Err(d) => {
            trace.step("token", || format!("unusable: {}", d.detail));
            return deny(d, Some(rule_name), None, true);
        }
    };
    let cached = cache.and_then(|c| {
        c.get(
            raw,
            snap.generation,
            |i| {
                snap.clients
                    .get(i)
                    .map_or(u64::MAX, |c| c.key_set.state().generation)
            },
            now,
        )
    });
    let entry = match cached {
        Some(hit) => {
            if let Some(m) = metrics {
                m.token_cache_hit.inc();
            }
            crate::observe::spans::note_cache_hit();
            trace.step("token", || "found in the verified-token cache".into());
            // A cached token still needs usable keys: past max_stale we fail closed as for any token.
            let client = &snap.clients[hit.client];
            if !client.key_set.available(&client.key_set.state()) {
                return deny(
                    Deny::new(
                        Reason::KeysUnavailable,
                        "the key set is older than max_stale",
                    ),
                    Some(rule_name),
                    Some(&client.cfg.name),
                    true,
                );
            }
            hit
        }
        None => {
            if let (Some(_), Some(m)) = (cache, metrics) {
                m.token_cache_miss.inc();
            }
            match verify_fresh(snap, raw, rule_name, now, trace).await {
                Ok(e) => {
                    let e = Arc::new(e);
                    if let Some(c) = cache {
                        c.insert(e.clone(), now);
                    }
                    e
                }
                Err(d) => return d,
            }
        }
    };
    let client = &snap.clients[entry.client];
    let name = client.cfg.name.as_str();
    if trace.steps.is_some() {
        trace.roles = entry.roles.iter().map(|r| r.to_string()).collect();
        let roles = &trace.roles;
        let shown = if roles.is_empty() {
            "none found".to_owned()
        } else {
            roles.join(", ")
        };
        trace.step("roles", || shown);
        trace.step("binding", || {
            binding_step(&entry.claims, &client.cfg.binding)
        });
    }
    // DESIGN §10, per request (a cached token included): the token's cnf against the proof
    // and the certificate this request carries. A token without cnf (decided when it was
    // cached) needs only the scheme check.
    let binding = if entry.has_cnf {
        let mut dpop_headers = input.headers.get_all("dpop");
        let (first, second) = (dpop_headers.next(), dpop_headers.next());
        let proofs = [first.unwrap_or_default(), second.unwrap_or_default()];
        let n = usize::from(first.is_some()) + usize::from(second.is_some());
        let bound = BindingRequest {
            auth_scheme,
            access_token: raw,
            proofs: &proofs[..n],
            method: input.method,
            scheme: input.scheme,
            authority: input.host,
            path: input.path,
            peer_certificate: input.peer_certificate,
            xfcc: input
                .headers
                .get_one("x-forwarded-client-cert")
                .map_err(|_| ()),
            now,
        };
        enforce::enforce(&entry.claims, &bound, &client.cfg.binding, replay)
    } else {
        enforce::enforce_unbound(auth_scheme, &client.cfg.binding)
    };
    if let Err(e) = binding {
        return deny(
            enforce::deny(e, &client.cfg.binding, now),
            Some(rule_name),
            Some(name),
            true,
        );
    }
    let mut audit = None;
    if let Some(rule) = rule
        && let Err(d) = policy::check_conditions(rule, &entry.claims, &entry.roles, entry.client)
    {
        if !matched.audit {
            return deny(d, Some(rule_name), Some(name), true);
        }
        // `mode: audit` with a valid token: allowed as the rule would allow it, headers set.
        trace.step("audit", || audit_line(&d));
        audit = Some(Box::new(d));
    }
    // Allow: set the routed client's claim headers, remove every other spoofable header.
    let mut set_headers = Vec::with_capacity(entry.headers.len() + 1);
    set_headers.extend(entry.headers.iter().cloned());
    set_headers.push((CLIENT_HEADER.to_owned(), name.to_owned()));
    let remove_headers = snap
        .spoofable
        .iter()
        .filter(|h| !set_headers.iter().any(|(s, _)| s == *h))
        .cloned()
        .collect();
    Decision::Allow(Allow {
        rule: rule_name.to_owned(),
        client: Some(name.to_owned()),
        subject: entry.subject.clone(),
        set_headers,
        remove_headers,
        audit,
    })
}

/// Parse, route and verify a token that is not cached; on success, everything the allow path
/// needs (claims, rendered headers) in a cache entry.
async fn verify_fresh(
    snap: &Snapshot,
    raw: &str,
    rule_name: &str,
    now: i64,
    trace: &mut Trace,
) -> Result<Entry, Decision> {
    let jwt = match token::parse(raw) {
        Ok(j) => j,
        // Not a JWS: an opaque token, if one client takes those through introspection.
        Err(d) => {
            return match snap.opaque_client {
                Some(i) => {
                    trace.step("token", || {
                        format!(
                            "{} bytes, not a JWT: asked the introspection endpoint of client {}",
                            raw.len(),
                            snap.clients[i].cfg.name
                        )
                    });
                    verify_opaque(snap, i, raw, rule_name, now).await
                }
                None => {
                    trace.step("token", || {
                        format!("{} bytes, malformed: {}", raw.len(), d.detail)
                    });
                    Err(deny(d, Some(rule_name), None, true))
                }
            };
        }
    };
    trace.step("token", || {
        let c = &jwt.claims;
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
        )
    });
    let idx = match verify::route(snap, &jwt.claims) {
        Ok(i) => i,
        Err(d) => {
            trace.step("route", || format!("{}: {}", d.reason.code(), d.detail));
            return Err(deny(d, Some(rule_name), None, true));
        }
    };
    let client = &snap.clients[idx];
    let name = client.cfg.name.as_str();
    let ks = &client.key_set;
    trace.step("route", || {
        let st = ks.state();
        format!(
            "client {} (key set {}: {} key(s), generation {}, {})",
            name,
            ks.id(),
            st.keys.len(),
            st.generation,
            if ks.available(&st) {
                "available"
            } else {
                "NOT available"
            }
        )
    });
    let mut refetched = false;
    let key_set_generation = loop {
        let state = ks.state();
        let available = ks.available(&state);
        match verify::verify(&client.cfg, &state, available, &jwt, now) {
            Ok(()) => break state.generation,
            Err(Failure::Deny(d)) => return Err(deny(d, Some(rule_name), Some(name), true)),
            Err(Failure::KidRequired) => {
                ks.note_kidless_refused();
                return Err(deny(
                    Deny::new(Reason::UnknownKey, verify::KID_REQUIRED),
                    Some(rule_name),
                    Some(name),
                    true,
                ));
            }
            Err(Failure::UnknownKid { generation }) => {
                drop(state);
                let kid = jwt.header.kid.as_deref().unwrap_or_default();
                if refetched || !ks.refetch_for_unknown_kid(kid, generation).await {
                    return Err(deny(
                        Deny::new(
                            Reason::UnknownKey,
                            "the kid is not in the key set (after a refetch, if one was allowed)",
                        ),
                        Some(rule_name),
                        Some(name),
                        true,
                    ));
                }
                refetched = true;
            }
        }
    };
    let mut headers = Vec::with_capacity(client.cfg.headers.len());
    for (header, path) in &client.cfg.headers {
        if let Some(v) = token::claim(&jwt.claims, path).and_then(token::claim_header_value)
            && v.len() <= MAX_HEADER_VALUE
            && v.bytes().all(|b| b == b'\t' || (b >= 0x20 && b != 0x7f))
        {
            headers.push((header.clone(), v));
        }
    }
    let subject = jwt
        .claims
        .get("sub")
        .and_then(|v| v.as_str())
        .map(str::to_owned);
    // verified: exp is an integer here
    let exp = jwt
        .claims
        .get("exp")
        .and_then(serde_json::Value::as_i64)
        .unwrap_or(now);
    let leeway = i64::try_from(client.cfg.leeway.as_secs()).unwrap_or(0);
    let mut expires_at = exp.saturating_add(leeway);
    // Revocation check (RFC 7662) after local verification; the cached result is reused for at
    // most cache_ttl, so a revocation is seen within that bound.
    if let Some(intro) = &client.introspector
        && intro.config().check_jwts
    {
        ask(intro.as_ref(), raw, Some(exp), now, rule_name, name).await?;
        let ttl = i64::try_from(intro.config().cache_ttl.as_secs()).unwrap_or(0);
        expires_at = expires_at.min(now.saturating_add(ttl));
    }
    let roles = policy::token_roles(&jwt.claims, &client.cfg.roles);
    Ok(Entry::new(
        raw,
        idx,
        snap.generation,
        key_set_generation,
        expires_at,
        jwt.claims,
        headers,
        subject,
        roles,
    ))
}

/// Ask the introspection endpoint; a deny for inactive or unanswerable tokens.
async fn ask(
    intro: &dyn Introspect,
    raw: &str,
    exp: Option<i64>,
    now: i64,
    rule_name: &str,
    client: &str,
) -> Result<Arc<Answer>, Decision> {
    match intro.introspect(raw, exp, now).await {
        Ok(a) => match &*a {
            Answer::Inactive => Err(deny(
                Deny::new(
                    Reason::TokenInactive,
                    "the introspection endpoint answered active: false",
                ),
                Some(rule_name),
                Some(client),
                true,
            )),
            Answer::Active(_) => Ok(a),
        },
        Err(e) => {
            tracing::warn!(client, error = %e, "introspection failed; denying (fail closed)");
            Err(deny(
                Deny::new(
                    Reason::IntrospectionUnavailable,
                    "the introspection endpoint gave no usable answer",
                ),
                Some(rule_name),
                Some(client),
                true,
            ))
        }
    }
}

/// An opaque token, validated only by the opaque client's introspection endpoint. The answer's
/// members are the claims; `exp`, `iss` and `aud` are checked when present.
async fn verify_opaque(
    snap: &Snapshot,
    idx: usize,
    raw: &str,
    rule_name: &str,
    now: i64,
) -> Result<Entry, Decision> {
    let client = &snap.clients[idx];
    let name = client.cfg.name.as_str();
    let Some(intro) = &client.introspector else {
        return Err(deny(
            Deny::new(Reason::TokenMalformed, "not a JWT"),
            Some(rule_name),
            None,
            true,
        ));
    };
    let answer = ask(intro.as_ref(), raw, None, now, rule_name, name).await?;
    let Answer::Active(claims) = &*answer else {
        return Err(deny(
            Deny::new(Reason::TokenInactive, "inactive"),
            Some(rule_name),
            Some(name),
            true,
        ));
    };
    let fail = |reason, detail| deny(Deny::new(reason, detail), Some(rule_name), Some(name), true);
    let exp = match claims.get("exp") {
        None => None,
        Some(v) => match v.as_i64() {
            Some(e) => Some(e),
            None => {
                return Err(fail(
                    Reason::InvalidClaims,
                    "the introspection exp is not an integer",
                ));
            }
        },
    };
    if exp.is_some_and(|e| e <= now) {
        return Err(fail(
            Reason::TokenExpired,
            "the introspection exp is in the past",
        ));
    }
    if claims
        .get("iss")
        .is_some_and(|i| i.as_str() != Some(client.cfg.issuer.as_str()))
    {
        return Err(fail(
            Reason::InvalidClaims,
            "the introspection iss is not the client's issuer",
        ));
    }
    let aud_ok = match claims.get("aud") {
        None => true,
        Some(serde_json::Value::String(a)) => client.cfg.audiences.iter().any(|c| c == a),
        Some(serde_json::Value::Array(list)) => list.iter().any(|a| {
            a.as_str()
                .is_some_and(|a| client.cfg.audiences.iter().any(|c| c == a))
        }),
        Some(_) => false,
    };
    if !aud_ok {
        return Err(fail(
            Reason::UnknownAudience,
            "the introspection aud names none of the client's audiences",
        ));
    }
    let mut headers = Vec::with_capacity(client.cfg.headers.len());
    for (header, path) in &client.cfg.headers {
        if let Some(v) = token::claim(claims, path).and_then(token::claim_header_value)
            && v.len() <= MAX_HEADER_VALUE
            && v.bytes().all(|b| b == b'\t' || (b >= 0x20 && b != 0x7f))
        {
            headers.push((header.clone(), v));
        }
    }
    let ttl = i64::try_from(intro.config().cache_ttl.as_secs()).unwrap_or(0);
    let expires_at = exp.unwrap_or(i64::MAX).min(now.saturating_add(ttl));
    let subject = claims
        .get("sub")
        .and_then(|v| v.as_str())
        .map(str::to_owned);
    Ok(Entry::new(
        raw,
        idx,
        snap.generation,
        client.key_set.state().generation,
        expires_at,
        claims.clone(),
        headers,
        subject,
        policy::token_roles(claims, &client.cfg.roles),
    ))
}

/// Anonymous allow: every spoofable header is removed, none is set.
fn anonymous(snap: &Snapshot, rule: &str) -> Decision {
    Decision::Allow(Allow {
        rule: rule.to_owned(),
        client: None,
        subject: None,
        set_headers: Vec::new(),
        remove_headers: snap.spoofable.clone(),
        audit: None,
    })
}

/// Upper-case, borrowing when it already is.
pub fn upper(s: &str) -> Cow<'_, str> {
    if s.bytes().any(|b| b.is_ascii_lowercase()) {
        Cow::Owned(s.to_ascii_uppercase())
    } else {
        Cow::Borrowed(s)
    }
}

/// Borrow-or-own helper for callers that build headers from owned strings.
pub fn lower_name(name: &str) -> Cow<'_, str> {
    if name.bytes().any(|b| b.is_ascii_uppercase()) {
        Cow::Owned(name.to_ascii_lowercase())
    } else {
        Cow::Borrowed(name)
    }
}

/// A claim, shortened for a trace line.
fn short(v: Option<&serde_json::Value>) -> String {
    match v {
        None => "-".into(),
        Some(serde_json::Value::String(s)) => s.chars().take(200).collect(),
        Some(other) => other.to_string().chars().take(200).collect(),
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
