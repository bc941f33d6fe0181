//! `oidc-authz test`: policy unit tests, offline, for CI (DESIGN §11, docs/policy-tests.md).
//!
//! A tests file lists requests and what the config must answer to them. Each request runs through
//! [`crate::core::check::decide_traced`], the decision path `serve` runs, and its answer is
//! turned into the response Envoy would get by [`crate::doors::grpc::response`], so status and
//! headers are the server's own. No network: each client's key set is replaced by one throw-away
//! key ([`StaticKeys`]) that signs the test's `token.claims`; introspection is not asked.
//!
//! Output: one line per test, `N passed, M failed` last; exit 0 when all pass, 1 when any
//! fails, 2 when the config or a tests file is invalid (the error names the test and the field).
//! Tokens are never printed: a failing test shows the decision trace, which shows only a
//! token's header fields and a few standard claims.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use serde::Deserialize;
use serde_json::{Map, Value as Json};
use serde_yaml::Value as Yaml;

use crate::config::{Config, JwksSettings, KeySource};
use crate::core::check::{self, CheckInput, DEFAULT_RULE, Trace};
use crate::core::ports::{BoxFuture, KeyProvider, KeyState};
use crate::core::snapshot::{Client, Snapshot};
use crate::core::token::{Headers, TokenSource};
use crate::decision::{Decision, Reason};
use crate::keys::Alg;
use crate::testkit::TestKey;
use crate::tools::compat::Source;

/// Lifetime of a minted token when its claims give no `exp`.
const TOKEN_LIFETIME: i64 = 300;

// ---- the tests-file schema --------------------------------------------------------------------

/// `request:` — what the caller sends.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct RequestSpec {
    #[serde(default = "get")]
    pub method: String,
    pub path: String,
    #[serde(default)]
    pub host: String,
    /// `http` / `https` (default `https`): DPoP proofs and mTLS-bound tokens look at it.
    #[serde(default = "https")]
    pub scheme: String,
    #[serde(default)]
    pub headers: BTreeMap<String, Yaml>,
}

fn get() -> String {
    "GET".into()
}

fn https() -> String {
    "https".into()
}

/// `token:` as written: `client` + `claims`, or `raw`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct TokenSpec {
    client: Option<String>,
    claims: Option<Map<String, Json>>,
    raw: Option<String>,
}

/// The token a test sends, resolved against the config.
#[derive(Debug, Clone, PartialEq)]
pub enum TokenPlan {
    /// Mint a token for `clients[client]` with these claims (`iss`, `aud`, `azp` when the client
    /// lists `authorized_parties`, `iat`, `exp` filled from the client unless given).
    Claims {
        client: usize,
        claims: Map<String, Json>,
    },
    /// Send this string as it is.
    Raw(String),
}

/// `allow`, `deny`, or `audit_deny`: a `mode: audit` rule would have denied and the request is
/// allowed all the same (the labels of `oidc_authz_checks_total{decision}`).
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    Allow,
    Deny,
    AuditDeny,
}

impl Verdict {
    fn name(self) -> &'static str {
        match self {
            Verdict::Allow => "allow",
            Verdict::Deny => "deny",
            Verdict::AuditDeny => "audit_deny",
        }
    }

    fn of(d: &Decision) -> Verdict {
        match d {
            Decision::Allow(a) if a.audit.is_some() => Verdict::AuditDeny,
            Decision::Allow(_) => Verdict::Allow,
            Decision::Deny { .. } => Verdict::Deny,
        }
    }
}

/// The deny's reason, or the reason a `mode: audit` rule would have denied with.
fn reason_of(d: &Decision) -> Option<Reason> {
    match d {
        Decision::Allow(a) => a.audit.as_ref().map(|x| x.reason),
        Decision::Deny { deny, .. } => Some(deny.reason),
    }
}

/// `expect:` as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct ExpectSpec {
    decision: Verdict,
    status: Option<u16>,
    reason: Option<String>,
    rule: Option<String>,
    #[serde(default)]
    headers: BTreeMap<String, Yaml>,
}

/// What a test expects. Only what is given is compared.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Expect {
    pub decision: Verdict,
    pub status: Option<u16>,
    pub reason: Option<Reason>,
    pub rule: Option<String>,
    /// Header name (lower case) → value, or `None`: the header must not be in the answer.
    pub headers: Vec<(String, Option<String>)>,
}

/// One test, validated.
#[derive(Debug, Clone, PartialEq)]
pub struct Case {
    pub name: String,
    pub method: String,
    pub path: String,
    pub host: String,
    pub scheme: String,
    /// Lower-case names.
    pub headers: Vec<(String, String)>,
    pub token: Option<TokenPlan>,
    pub expect: Expect,
}

/// A YAML scalar as header text; `null` is `None`.
fn scalar(v: &Yaml) -> Result<Option<String>, String> {
    match v {
        Yaml::Null => Ok(None),
        Yaml::String(s) => Ok(Some(s.clone())),
        Yaml::Number(n) => Ok(Some(n.to_string())),
        Yaml::Bool(b) => Ok(Some(b.to_string())),
        _ => Err("must be a string".into()),
    }
}

/// Parse and validate a tests file against `config`: every test, or every error found, each
/// naming the test (`tests[i] "name"`) and the field.
pub fn parse(text: &str, config: &Config) -> Result<Vec<Case>, Vec<String>> {
    let doc: Yaml = serde_yaml::from_str(text).map_err(|e| {
        let near = e
            .location()
            .and_then(|l| test_near_line(text, l.line()))
            .map(|(i, name)| format!("tests[{i}] \"{name}\": "))
            .unwrap_or_default();
        vec![format!("{near}not valid YAML: {e}")]
    })?;
    let Yaml::Mapping(top) = doc else {
        return Err(vec![
            "the file must be a mapping with a `tests` list".to_owned(),
        ]);
    };
    let mut errors = Vec::new();
    let mut list = None;
    for (k, v) in &top {
        match k.as_str() {
            Some("tests") => list = Some(v),
            _ => errors.push(format!(
                "unknown top-level field `{}` (expected `tests`)",
                key_text(k)
            )),
        }
    }
    let tests = match list {
        Some(Yaml::Sequence(s)) if !s.is_empty() => s,
        Some(Yaml::Sequence(_)) => {
            errors.push("tests: the list is empty".into());
            return Err(errors);
        }
        Some(_) => {
            errors.push("tests: must be a list".into());
            return Err(errors);
        }
        None => {
            errors.push("tests: missing".into());
            return Err(errors);
        }
    };
    let mut cases = Vec::with_capacity(tests.len());
    let mut seen = std::collections::HashSet::new();
    for (i, t) in tests.iter().enumerate() {
        match parse_case(t, config) {
            Ok(c) => {
                if !seen.insert(c.name.clone()) {
                    errors.push(format!(
                        "tests[{i}] \"{}\": name: a test of that name comes earlier",
                        c.name
                    ));
                }
                cases.push(c);
            }
            Err((name, field, msg)) => {
                let who = match name {
                    Some(n) => format!("tests[{i}] \"{n}\""),
                    None => format!("tests[{i}]"),
                };
                errors.push(format!("{who}: {field}: {msg}"));
            }
        }
    }
    if errors.is_empty() {
        Ok(cases)
    } else {
        Err(errors)
    }
}

/// The test a broken file was in at `line` (1-based), going by its `- name:` lines: (index,
/// name). A guess for the error message only.
fn test_near_line(text: &str, line: usize) -> Option<(usize, String)> {
    let mut found = None;
    let mut i = 0;
    for l in text.lines().take(line) {
        if let Some(rest) = l.trim_start().strip_prefix("- name:") {
            let name = rest.trim().trim_matches(|c| c == '"' || c == '\'');
            found = Some((i, name.to_owned()));
            i += 1;
        }
    }
    found
}

fn key_text(k: &Yaml) -> String {
    match k {
        Yaml::String(s) => s.clone(),
        other => serde_yaml::to_string(other)
            .unwrap_or_default()
            .trim()
            .to_owned(),
    }
}

/// One test; on error (test name if known, field, message).
fn parse_case(t: &Yaml, config: &Config) -> Result<Case, (Option<String>, String, String)> {
    let Yaml::Mapping(m) = t else {
        return Err((
            None,
            "test".into(),
            "must be a mapping with name, request, token, expect".into(),
        ));
    };
    let name = match m.get("name") {
        Some(Yaml::String(s)) if !s.trim().is_empty() => Some(s.clone()),
        Some(_) => {
            return Err((None, "name".into(), "must be a non-empty string".into()));
        }
        None => None,
    };
    let err = |field: &str, msg: String| (name.clone(), field.to_owned(), msg);
    for k in m.keys() {
        if !matches!(k.as_str(), Some("name" | "request" | "token" | "expect")) {
            return Err(err(
                &key_text(k),
                "unknown field (expected name, request, token, expect)".into(),
            ));
        }
    }
    let Some(name) = name.clone() else {
        return Err(err("name", "missing".into()));
    };
    let request: RequestSpec = match m.get("request") {
        Some(v) => serde_yaml::from_value(v.clone()).map_err(|e| err("request", e.to_string()))?,
        None => return Err(err("request", "missing".into())),
    };
    let mut headers = Vec::with_capacity(request.headers.len());
    for (k, v) in &request.headers {
        match scalar(v) {
            Ok(Some(s)) => headers.push((k.to_ascii_lowercase(), s)),
            Ok(None) => return Err(err(&format!("request.headers.{k}"), "no value".into())),
            Err(e) => return Err(err(&format!("request.headers.{k}"), e)),
        }
    }
    let token = match m.get("token") {
        None | Some(Yaml::Null) => None,
        Some(v) => {
            let spec: TokenSpec =
                serde_yaml::from_value(v.clone()).map_err(|e| err("token", e.to_string()))?;
            Some(token_plan(spec, config).map_err(|(f, msg)| err(&f, msg))?)
        }
    };
    let spec: ExpectSpec = match m.get("expect") {
        Some(v) => serde_yaml::from_value(v.clone()).map_err(|e| err("expect", e.to_string()))?,
        None => return Err(err("expect", "missing".into())),
    };
    let expect = expectation(spec).map_err(|(f, msg)| err(&f, msg))?;
    if let Some(rule) = &expect.rule
        && rule != DEFAULT_RULE
        && !config.rules.as_slice().iter().any(|r| r.name == *rule)
    {
        return Err(err(
            "expect.rule",
            format!("the config has no rule `{rule}`"),
        ));
    }
    Ok(Case {
        name,
        method: request.method,
        path: request.path,
        host: request.host,
        scheme: request.scheme,
        headers,
        token,
        expect,
    })
}

fn client_names(config: &Config) -> String {
    config
        .clients
        .iter()
        .map(|c| c.name.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

fn token_plan(spec: TokenSpec, config: &Config) -> Result<TokenPlan, (String, String)> {
    match (spec.claims, spec.raw) {
        (Some(_), Some(_)) => Err((
            "token".into(),
            "give either `claims` or `raw`, not both".into(),
        )),
        (None, None) => Err((
            "token".into(),
            "give `client` and `claims` (a minted token) or `raw` (a literal string)".into(),
        )),
        (None, Some(raw)) => match spec.client {
            Some(_) => Err((
                "token.client".into(),
                "goes with `claims`; a `raw` token is sent as it is".into(),
            )),
            None => Ok(TokenPlan::Raw(raw)),
        },
        (Some(claims), None) => {
            let client = match spec.client {
                Some(c) => config
                    .clients
                    .iter()
                    .position(|x| x.name == c)
                    .ok_or_else(|| {
                        (
                            "token.client".to_owned(),
                            format!(
                                "unknown client `{c}` (the config's clients: {})",
                                client_names(config)
                            ),
                        )
                    })?,
                None if config.clients.len() == 1 => 0,
                None => {
                    return Err((
                        "token.client".into(),
                        format!(
                            "missing: which client's key signs the token? ({})",
                            client_names(config)
                        ),
                    ));
                }
            };
            Ok(TokenPlan::Claims { client, claims })
        }
    }
}

fn expectation(spec: ExpectSpec) -> Result<Expect, (String, String)> {
    let reason = match &spec.reason {
        None => None,
        Some(code) => Some(
            Reason::ALL
                .iter()
                .copied()
                .find(|r| r.code() == code)
                .ok_or_else(|| {
                    (
                        "expect.reason".to_owned(),
                        format!("unknown reason `{code}` (docs/configuration.md lists them)"),
                    )
                })?,
        ),
    };
    if spec.decision == Verdict::Allow && reason.is_some() {
        return Err((
            "expect.reason".into(),
            "an allow has no reason (expect `decision: deny` or `audit_deny`?)".into(),
        ));
    }
    if let Some(s) = spec.status
        && !(100..=599).contains(&s)
    {
        return Err(("expect.status".into(), format!("{s} is not an HTTP status")));
    }
    let mut headers = Vec::with_capacity(spec.headers.len());
    for (k, v) in &spec.headers {
        let v = scalar(v).map_err(|e| (format!("expect.headers.{k}"), e))?;
        headers.push((k.to_ascii_lowercase(), v));
    }
    Ok(Expect {
        decision: spec.decision,
        status: spec.status,
        reason,
        rule: spec.rule,
        headers,
    })
}

// ---- offline key sets -------------------------------------------------------------------------

/// A key set that holds one throw-away key and never fetches: it stands in for a client's real
/// key set in `oidc-authz test`.
#[derive(Debug)]
pub struct StaticKeys {
    id: String,
    source: KeySource,
    settings: Arc<JwksSettings>,
    state: ArcSwap<KeyState>,
}

impl StaticKeys {
    /// A loaded key set holding `key`'s public JWK.
    pub fn new(
        id: String,
        source: KeySource,
        settings: JwksSettings,
        key: &TestKey,
    ) -> Result<StaticKeys, String> {
        let keys = crate::keys::parse_jwks(crate::testkit::jwks(&[key]).as_bytes(), &id)
            .map_err(|e| format!("the throw-away key of {id}: {e}"))?;
        Ok(StaticKeys {
            id,
            source,
            settings: Arc::new(settings),
            state: ArcSwap::from_pointee(KeyState {
                keys: keys.into(),
                generation: 1,
                last_success: Some(tokio::time::Instant::now()),
                last_success_wall: Some(std::time::SystemTime::now()),
                last_error: None,
            }),
        })
    }
}

impl KeyProvider for StaticKeys {
    fn id(&self) -> &str {
        &self.id
    }
    fn source(&self) -> &KeySource {
        &self.source
    }
    fn settings(&self) -> Arc<JwksSettings> {
        self.settings.clone()
    }
    fn state(&self) -> arc_swap::Guard<Arc<KeyState>> {
        self.state.load()
    }
    fn available(&self, _state: &KeyState) -> bool {
        true
    }
    fn refetch_for_unknown_kid<'a>(
        &'a self,
        _kid: &'a str,
        _seen_generation: u64,
    ) -> BoxFuture<'a, bool> {
        Box::pin(async { false })
    }
    fn wait_loaded(&self, _timeout: Duration) -> BoxFuture<'_, bool> {
        Box::pin(async { true })
    }
    fn note_kidless_refused(&self) {}
}

/// The config as `serve` would run it, with one throw-away signing key per client in place of
/// its key set, and no introspection.
pub struct Harness {
    snap: Snapshot,
    keys: Vec<TestKey>,
}

/// The algorithm of a client's throw-away key: ES256 when the client accepts it (fast to make),
/// else the first it accepts.
fn key_alg(accepted: &[Alg]) -> Alg {
    if accepted.contains(&Alg::ES256) {
        Alg::ES256
    } else {
        accepted.first().copied().unwrap_or(Alg::RS256)
    }
}

impl Harness {
    pub fn new(config: Config) -> Result<Harness, String> {
        let mut keys = Vec::with_capacity(config.clients.len());
        let mut clients = Vec::with_capacity(config.clients.len());
        for c in &config.clients {
            let key = TestKey::try_generate(key_alg(&c.algorithms), &format!("test-{}", c.name))
                .map_err(|_| format!("cannot make a key for client {}", c.name))?;
            let ks = StaticKeys::new(
                format!("test:{}", c.name),
                c.keys.clone(),
                config.jwks.clone(),
                &key,
            )?;
            clients.push(Client {
                cfg: c.clone(),
                key_set: Arc::new(ks) as Arc<dyn KeyProvider>,
                introspector: None,
            });
            keys.push(key);
        }
        Ok(Harness {
            snap: Snapshot::new(config, clients, 1),
            keys,
        })
    }

    pub fn config(&self) -> &Config {
        &self.snap.config
    }

    /// A signed token for `clients[client]` (standard claims filled in where not given).
    fn mint(&self, client: usize, claims: &Map<String, Json>, now: i64) -> String {
        let c = &self.snap.clients[client].cfg;
        let key = &self.keys[client];
        let mut all = claims.clone();
        all.entry("iss")
            .or_insert_with(|| Json::from(c.issuer.clone()));
        if let Some(aud) = c.audiences.first() {
            all.entry("aud").or_insert_with(|| Json::from(aud.clone()));
        }
        if let Some(azp) = c.authorized_parties.as_ref().and_then(|a| a.first()) {
            all.entry("azp").or_insert_with(|| Json::from(azp.clone()));
        }
        all.entry("iat").or_insert_with(|| Json::from(now));
        all.entry("exp")
            .or_insert_with(|| Json::from(now + TOKEN_LIFETIME));
        let mut header = jsonwebtoken::Header::new(crate::testkit::jwt_alg(key.alg));
        header.kid = Some(key.kid.clone());
        if let Some(typ) = &c.require_typ {
            header.typ = Some(typ.clone());
        }
        key.token_with(&header, &Json::Object(all))
    }

    /// Run one test at `now`.
    pub fn run(&self, case: &Case, now: i64) -> Outcome {
        let started = Instant::now();
        let token = case.token.as_ref().map(|t| match t {
            TokenPlan::Claims { client, claims } => self.mint(*client, claims, now),
            TokenPlan::Raw(raw) => raw.clone(),
        });
        let mut owned = case.headers.clone();
        if let Some(t) = token {
            place_token(&self.snap.config.token.sources, &mut owned, t);
        }
        let mut headers = Headers::with_capacity(owned.len());
        for (k, v) in &owned {
            headers.push(k, v);
        }
        let input = CheckInput {
            method: &case.method,
            host: &case.host,
            path: &case.path,
            headers,
            scheme: &case.scheme,
            peer_certificate: "",
        };
        let mut trace = Trace::collect();
        let decision = match tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        {
            Ok(rt) => rt.block_on(check::decide_traced(&self.snap, &input, now, &mut trace)),
            Err(e) => {
                return Outcome {
                    name: case.name.clone(),
                    failures: vec![format!("cannot start the runtime: {e}")],
                    got: String::new(),
                    rule: None,
                    reason: None,
                    trace: Vec::new(),
                    duration: started.elapsed(),
                };
            }
        };
        let answer = Answer::of(&decision);
        let failures = compare(&case.expect, &decision, &answer);
        Outcome {
            name: case.name.clone(),
            failures,
            got: answer.summary(&decision),
            rule: rule_of(&decision),
            reason: reason_of(&decision),
            trace: trace
                .steps()
                .iter()
                .map(|(s, o)| format!("{s}: {o}"))
                .collect(),
            duration: started.elapsed(),
        }
    }
}

/// Put the token where the config's first token source looks for it.
fn place_token(sources: &[TokenSource], headers: &mut Vec<(String, String)>, token: String) {
    match sources.first() {
        Some(TokenSource::Cookie(name)) => {
            let pair = format!("{name}={token}");
            match headers.iter_mut().find(|(k, _)| k == "cookie") {
                Some((_, v)) => {
                    v.push_str("; ");
                    v.push_str(&pair);
                }
                None => headers.push(("cookie".into(), pair)),
            }
        }
        Some(TokenSource::Header(name)) if name != "authorization" => {
            headers.push((name.clone(), token));
        }
        _ => headers.push(("authorization".into(), format!("Bearer {token}"))),
    }
}

/// The rule that decided (the first matching rule, or `default`), if any.
fn rule_of(d: &Decision) -> Option<String> {
    match d {
        Decision::Allow(a) => Some(a.rule.clone()),
        Decision::Deny { rule, .. } => rule.clone(),
    }
}

/// The answer Envoy gets, as the gRPC door builds it: HTTP status and headers (on an allow, the
/// headers set on the upstream request).
struct Answer {
    status: u16,
    headers: Vec<(String, String)>,
}

impl Answer {
    fn of(decision: &Decision) -> Answer {
        use envoy_types::ext_authz::v3::pb::{HeaderValueOption, HttpResponse};
        let resp = crate::doors::grpc::response(decision.clone());
        let pairs = |hs: &[HeaderValueOption]| {
            hs.iter()
                .filter_map(|h| h.header.as_ref())
                .map(|h| (h.key.to_ascii_lowercase(), h.value.clone()))
                .collect::<Vec<_>>()
        };
        match resp.http_response {
            Some(HttpResponse::OkResponse(ok)) => Answer {
                status: 200,
                headers: pairs(&ok.headers),
            },
            Some(HttpResponse::DeniedResponse(d)) => Answer {
                status: d
                    .status
                    .and_then(|s| u16::try_from(s.code).ok())
                    .unwrap_or(403),
                headers: pairs(&d.headers),
            },
            // the gRPC door never answers with an error response
            _ => Answer {
                status: if decision.is_allow() { 200 } else { 403 },
                headers: Vec::new(),
            },
        }
    }

    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    fn summary(&self, d: &Decision) -> String {
        let rule = rule_of(d).unwrap_or_else(|| "-".into());
        match d {
            Decision::Allow(a) => format!(
                "{} {}{} (rule {rule}, client {})",
                Verdict::of(d).name(),
                self.status,
                a.audit
                    .as_ref()
                    .map(|x| format!(" {}", x.reason.code()))
                    .unwrap_or_default(),
                a.client.as_deref().unwrap_or("-")
            ),
            Decision::Deny { deny, client, .. } => format!(
                "deny {} {} (rule {rule}, client {})",
                self.status,
                deny.reason.code(),
                client.as_deref().unwrap_or("-")
            ),
        }
    }
}

/// Every way the answer differs from the expectation (empty: the test passes).
fn compare(e: &Expect, d: &Decision, a: &Answer) -> Vec<String> {
    let mut out = Vec::new();
    let got = Verdict::of(d);
    if e.decision != got {
        out.push(format!(
            "decision: expected {}, got {}",
            e.decision.name(),
            got.name()
        ));
    }
    if let Some(s) = e.status
        && s != a.status
    {
        out.push(format!("status: expected {s}, got {}", a.status));
    }
    if let Some(r) = e.reason
        && reason_of(d) != Some(r)
    {
        out.push(format!(
            "reason: expected {}, got {}",
            r.code(),
            reason_of(d).map_or("none (allowed)", Reason::code)
        ));
    }
    if let Some(r) = &e.rule {
        let got = rule_of(d);
        if got.as_deref() != Some(r.as_str()) {
            out.push(format!(
                "rule: expected {r}, got {}",
                got.as_deref().unwrap_or("none")
            ));
        }
    }
    for (name, want) in &e.headers {
        let got = a.header(name);
        if got != want.as_deref() {
            out.push(format!(
                "header {name}: expected {}, got {}",
                want.as_deref()
                    .map_or("none".to_owned(), |v| format!("`{v}`")),
                got.map_or("none".to_owned(), |v| format!("`{v}`"))
            ));
        }
    }
    out
}

/// The result of one test.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub name: String,
    /// Empty when the test passed.
    pub failures: Vec<String>,
    /// What the config answered, in one line.
    pub got: String,
    pub rule: Option<String>,
    /// The deny's reason (`None`: allowed).
    pub reason: Option<Reason>,
    /// The decision trace (shown for failed tests).
    pub trace: Vec<String>,
    pub duration: Duration,
}

impl Outcome {
    pub fn passed(&self) -> bool {
        self.failures.is_empty()
    }
}

// ---- reports ----------------------------------------------------------------------------------

/// Each rule's hit count, in config order, then `default` (no rule matched), for `--coverage`.
pub fn coverage<'a>(config: &Config, outcomes: impl Iterator<Item = &'a Outcome>) -> String {
    let rules = config.rules.as_slice();
    let mut hits = vec![0usize; rules.len()];
    let mut default_hits = 0usize;
    for o in outcomes {
        match o.rule.as_deref() {
            Some(r) => match rules.iter().position(|x| x.name == r) {
                Some(i) => hits[i] += 1,
                None => default_hits += 1,
            },
            // no rule matched under `default: deny` (or the path was invalid)
            None if o.reason == Some(Reason::NoMatchingRule) => default_hits += 1,
            None => {}
        }
    }
    let reached = hits.iter().filter(|h| **h > 0).count();
    let mut out = format!(
        "coverage: {reached} of {} rules reached by a test\n",
        rules.len()
    );
    let width = rules.iter().map(|r| r.name.len()).max().unwrap_or(0).max(7);
    for (r, h) in rules.iter().zip(&hits) {
        let _ = writeln!(
            out,
            "  {:<width$}  {h:>4} test(s){}",
            r.name,
            if *h == 0 { "  NOT REACHED" } else { "" }
        );
    }
    let _ = writeln!(
        out,
        "  {:<width$}  {default_hits:>4} test(s)  (no rule matched: default {})",
        DEFAULT_RULE,
        match config.default {
            crate::config::DefaultAction::Deny => "deny",
            crate::config::DefaultAction::Authenticated => "authenticated",
        }
    );
    let missed: Vec<&str> = rules
        .iter()
        .zip(&hits)
        .filter(|(_, h)| **h == 0)
        .map(|(r, _)| r.name.as_str())
        .collect();
    if missed.is_empty() {
        out.push_str("every rule is reached by a test\n");
    } else {
        let _ = writeln!(out, "not reached by any test: {}", missed.join(", "));
    }
    out
}

/// Text fit for XML content and attribute values (escaped; characters XML 1.0 forbids dropped).
fn xml(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            '\t' | '\n' | '\r' => out.push(c),
            c if (c as u32) < 0x20 || c == '\u{fffe}' || c == '\u{ffff}' => {}
            c => out.push(c),
        }
    }
    out
}

/// JUnit XML: one `<testsuite>` per tests file, one `<testcase>` per test, a `<failure>` with
/// the differences and the decision trace for each failed test.
pub fn junit(results: &[(String, Vec<Outcome>)]) -> String {
    let total: usize = results.iter().map(|(_, o)| o.len()).sum();
    let failed: usize = results
        .iter()
        .map(|(_, o)| o.iter().filter(|x| !x.passed()).count())
        .sum();
    let secs = |d: Duration| format!("{:.3}", d.as_secs_f64());
    let mut out = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    let _ = writeln!(
        out,
        "<testsuites name=\"oidc-authz test\" tests=\"{total}\" failures=\"{failed}\" errors=\"0\">"
    );
    for (file, outcomes) in results {
        let time: Duration = outcomes.iter().map(|o| o.duration).sum();
        let _ = writeln!(
            out,
            "  <testsuite name=\"{}\" tests=\"{}\" failures=\"{}\" errors=\"0\" skipped=\"0\" time=\"{}\">",
            xml(file),
            outcomes.len(),
            outcomes.iter().filter(|o| !o.passed()).count(),
            secs(time)
        );
        for o in outcomes {
            let head = format!(
                "    <testcase name=\"{}\" classname=\"{}\" time=\"{}\"",
                xml(&o.name),
                xml(file),
                secs(o.duration)
            );
            if o.passed() {
                let _ = writeln!(out, "{head}/>");
            } else {
                let _ = writeln!(
                    out,
                    "{head}>\n      <failure message=\"{}\" type=\"expectation\">{}\ngot: {}\n{}</failure>\n    </testcase>",
                    xml(&o.failures.join("; ")),
                    xml(&o.failures.join("\n")),
                    xml(&o.got),
                    xml(&o.trace.join("\n"))
                );
            }
        }
        out.push_str("  </testsuite>\n");
    }
    out.push_str("</testsuites>\n");
    out
}

// ---- the command ------------------------------------------------------------------------------

/// Run `oidc-authz test` and print the results; the exit code: 0 all passed, 1 some failed, 2
/// invalid config, tests file or `--junit` path.
pub fn cli(source: &Source, files: &[PathBuf], with_coverage: bool, junit_to: Option<&Path>) -> u8 {
    let loaded = match source.load() {
        Ok(l) => l,
        Err(errs) => {
            for e in &errs.0 {
                eprintln!("{e}");
            }
            eprintln!("{source}: {} error(s)", errs.0.len());
            return 2;
        }
    };
    for n in &loaded.notes {
        eprintln!("note: {n}");
    }
    let config = loaded.config;
    let mut suites = Vec::with_capacity(files.len());
    let mut errors = Vec::new();
    for f in files {
        let text = match std::fs::read_to_string(f) {
            Ok(t) => t,
            Err(e) => {
                errors.push(format!("{}: cannot read: {e}", f.display()));
                continue;
            }
        };
        match parse(&text, &config) {
            Ok(cases) => suites.push((f.display().to_string(), cases)),
            Err(es) => errors.extend(es.into_iter().map(|e| format!("{}: {e}", f.display()))),
        }
    }
    if !errors.is_empty() {
        for e in &errors {
            eprintln!("{e}");
        }
        eprintln!(
            "{} error(s) in the tests file(s); no test was run",
            errors.len()
        );
        return 2;
    }
    let harness = match Harness::new(config) {
        Ok(h) => h,
        Err(e) => {
            eprintln!("oidc-authz: {e}");
            return 2;
        }
    };
    let now = crate::testkit::now();
    let several = suites.len() > 1;
    let mut results = Vec::with_capacity(suites.len());
    for (file, cases) in &suites {
        let mut outcomes = Vec::with_capacity(cases.len());
        for case in cases {
            let o = harness.run(case, now);
            let name = if several {
                format!("{file}: {}", o.name)
            } else {
                o.name.clone()
            };
            if o.passed() {
                println!("ok   {name}");
            } else {
                println!("FAIL {name}: {} (got {})", o.failures.join("; "), o.got);
                for step in &o.trace {
                    println!("       {step}");
                }
            }
            outcomes.push(o);
        }
        results.push((file.clone(), outcomes));
    }
    let all = || results.iter().flat_map(|(_, o)| o.iter());
    let passed = all().filter(|o| o.passed()).count();
    let failed = all().count() - passed;
    if with_coverage {
        print!("{}", coverage(harness.config(), all()));
    }
    if let Some(path) = junit_to
        && let Err(e) = std::fs::write(path, junit(&results))
    {
        eprintln!("oidc-authz: --junit {}: {e}", path.display());
        println!("{passed} passed, {failed} failed");
        return 2;
    }
    println!("{passed} passed, {failed} failed");
    if failed == 0 { 0 } else { 1 }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> Config {
        crate::config::parse(
            "clients:\n  - {name: web, issuer: https://idp.example.org, audiences: [web], jwks_uri: https://idp.example.org/keys, roles: [roles], headers: {x-auth-subject: sub}}\n  - {name: admin, issuer: https://idp.example.org, audiences: [admin], jwks_uri: https://idp.example.org/keys}\nrules:\n  - {name: health, match: {path: /healthz, methods: [GET]}, auth: none}\n  - {name: write, match: {prefix: /api, methods: [POST]}, roles: {all_of: [editor]}}\n  - {name: api, match: {prefix: /api}}\ndefault: deny\n",
        )
        .unwrap_or_else(|e| panic!("{e}"))
    }

    fn errors(yaml: &str) -> Vec<String> {
        match parse(yaml, &config()) {
            Ok(c) => panic!("parsed: {c:?}"),
            Err(e) => e,
        }
    }

    fn one_error(yaml: &str) -> String {
        let e = errors(yaml);
        assert_eq!(e.len(), 1, "{e:?}");
        e[0].clone()
    }

    #[test]
    fn the_design_example_parses() {
        let cases = parse(
            "tests:\n  - name: editors can write\n    request: { method: POST, path: /api/names, host: api.example.org, headers: {X-Trace: 1} }\n    token: { client: web, claims: { sub: alice, roles: [editor] } }\n    expect: { decision: allow, headers: { x-auth-subject: alice, x-authz-client: web, x-gone: null } }\n  - name: no token\n    request: { path: /api/names }\n    expect: { decision: deny, status: 401, reason: authorization_header_missing, rule: api }\n  - name: raw\n    request: { path: /api }\n    token: { raw: not-a-jwt }\n    expect: { decision: deny }\n",
            &config(),
        )
        .unwrap_or_else(|e| panic!("{e:?}"));
        assert_eq!(cases.len(), 3);
        assert_eq!(cases[0].headers, vec![("x-trace".into(), "1".into())]);
        assert_eq!(cases[1].method, "GET");
        assert_eq!(cases[1].scheme, "https");
        assert_eq!(
            cases[1].expect.reason,
            Some(Reason::AuthorizationHeaderMissing)
        );
        assert!(matches!(
            cases[0].token,
            Some(TokenPlan::Claims { client: 0, .. })
        ));
        assert_eq!(cases[2].token, Some(TokenPlan::Raw("not-a-jwt".into())));
        assert!(cases[0].expect.headers.contains(&("x-gone".into(), None)));
    }

    #[test]
    fn an_unknown_client_names_the_test_and_the_field() {
        let e = one_error(
            "tests:\n  - name: t1\n    request: { path: / }\n    token: { client: nobody, claims: {} }\n    expect: { decision: allow }\n",
        );
        assert!(
            e.starts_with("tests[0] \"t1\": token.client: unknown client `nobody`"),
            "{e}"
        );
        assert!(e.contains("web, admin"), "{e}");
    }

    #[test]
    fn unknown_fields_name_the_test_and_the_field_at_every_level() {
        let e = one_error(
            "tests:\n  - name: ok\n    request: { path: / }\n    expect: { decision: deny }\n  - name: t2\n    request: { path: / }\n    token: { client: web, clams: {} }\n    expect: { decision: allow }\n",
        );
        assert!(
            e.starts_with("tests[1] \"t2\": token: unknown field `clams`"),
            "{e}"
        );
        let e = one_error(
            "tests:\n  - name: t\n    request: { pth: / }\n    expect: { decision: allow }\n",
        );
        assert!(
            e.starts_with("tests[0] \"t\": request: unknown field `pth`"),
            "{e}"
        );
        let e = one_error(
            "tests:\n  - name: t\n    request: { path: / }\n    expect: { decision: allow, header: {} }\n",
        );
        assert!(
            e.starts_with("tests[0] \"t\": expect: unknown field `header`"),
            "{e}"
        );
        let e = one_error(
            "tests:\n  - name: t\n    request: { path: / }\n    expected: { decision: allow }\n",
        );
        assert!(
            e.starts_with("tests[0] \"t\": expected: unknown field"),
            "{e}"
        );
        let e = errors("test:\n  - name: t\n");
        assert_eq!(
            e,
            vec![
                "unknown top-level field `test` (expected `tests`)".to_owned(),
                "tests: missing".to_owned()
            ]
        );
    }

    #[test]
    fn bad_values_are_named() {
        let e = one_error(
            "tests:\n  - name: t\n    request: { path: / }\n    expect: { decision: maybe }\n",
        );
        assert!(
            e.starts_with("tests[0] \"t\": expect: unknown variant `maybe`"),
            "{e}"
        );
        let e = one_error(
            "tests:\n  - name: t\n    request: { path: / }\n    expect: { decision: deny, reason: nope }\n",
        );
        assert!(
            e.starts_with("tests[0] \"t\": expect.reason: unknown reason `nope`"),
            "{e}"
        );
        let e = one_error(
            "tests:\n  - name: t\n    request: { path: / }\n    expect: { decision: allow, reason: token_expired }\n",
        );
        assert!(e.contains("expect.reason: an allow has no reason"), "{e}");
        let e = one_error(
            "tests:\n  - name: t\n    request: { path: / }\n    expect: { decision: deny, rule: nope }\n",
        );
        assert!(
            e.contains("expect.rule: the config has no rule `nope`"),
            "{e}"
        );
        let e = one_error(
            "tests:\n  - name: t\n    request: { path: / }\n    token: { client: web, claims: {}, raw: x }\n    expect: { decision: deny }\n",
        );
        assert!(e.contains("token: give either `claims` or `raw`"), "{e}");
        let e = one_error(
            "tests:\n  - name: t\n    request: { path: / }\n    token: { claims: {} }\n    expect: { decision: deny }\n",
        );
        assert!(e.contains("token.client: missing"), "{e}");
        let e = one_error("tests:\n  - request: { path: / }\n    expect: { decision: deny }\n");
        assert!(e.starts_with("tests[0]: name: missing"), "{e}");
        let e = one_error("tests:\n  - name: t\n    expect: { decision: deny }\n");
        assert!(e.starts_with("tests[0] \"t\": request: missing"), "{e}");
        let e = one_error(
            "tests:\n  - name: t\n    request: { path: / }\n    expect: { decision: deny }\n  - name: t\n    request: { path: / }\n    expect: { decision: deny }\n",
        );
        assert!(
            e.starts_with("tests[1] \"t\": name: a test of that name"),
            "{e}"
        );
        assert!(one_error("tests: []\n").contains("the list is empty"));
    }

    #[test]
    fn every_bad_test_is_reported_not_only_the_first() {
        let e = errors(
            "tests:\n  - name: a\n    request: { path: / }\n    expect: { decision: nope }\n  - name: b\n    request: { path: / }\n    token: { client: x, claims: {} }\n    expect: { decision: deny }\n",
        );
        assert_eq!(e.len(), 2, "{e:?}");
    }

    #[test]
    fn bad_yaml_says_where() {
        let e = one_error("tests:\n  - name: [unclosed\n");
        assert!(
            e.starts_with("tests[0] \"[unclosed\": not valid YAML"),
            "{e}"
        );
        assert!(e.contains("line"), "{e}");
        let e = one_error(
            "tests:\n  - name: first\n    request: { path: / }\n    expect: { decision: deny }\n  - name: second\n    request: { path: / \n    expect: { decision: deny }\n",
        );
        assert!(e.starts_with("tests[1] \"second\": not valid YAML"), "{e}");
        let e = one_error("tests: [\n");
        assert!(e.starts_with("not valid YAML"), "{e}");
    }

    fn run(yaml: &str) -> Vec<Outcome> {
        let h = Harness::new(config()).unwrap();
        let cases = parse(yaml, h.config()).unwrap_or_else(|e| panic!("{e:?}"));
        let now = crate::testkit::now();
        cases.iter().map(|c| h.run(c, now)).collect()
    }

    #[test]
    fn minted_tokens_run_through_the_real_decision() {
        let out = run(
            "tests:\n  - name: editor writes\n    request: { method: POST, path: /api/x }\n    token: { client: web, claims: { sub: alice, roles: [editor] } }\n    expect: { decision: allow, status: 200, rule: write, headers: { x-auth-subject: alice, x-authz-client: web } }\n  - name: reader cannot write\n    request: { method: POST, path: /api/x }\n    token: { client: web, claims: { sub: bob } }\n    expect: { decision: deny, status: 403, reason: missing_required_roles, headers: { x-authz-reason: missing_required_roles } }\n  - name: expired\n    request: { path: /api/x }\n    token: { client: admin, claims: { exp: 1000 } }\n    expect: { decision: deny, status: 401, reason: token_expired }\n  - name: garbage\n    request: { path: /api/x }\n    token: { raw: abc }\n    expect: { decision: deny, reason: token_malformed }\n  - name: nothing matches\n    request: { path: /other }\n    expect: { decision: deny, status: 403, reason: no_matching_rule }\n",
        );
        for o in &out {
            assert!(o.passed(), "{}: {:?} (got {})", o.name, o.failures, o.got);
        }
    }

    #[test]
    fn minted_tokens_carry_azp_and_typ_when_the_client_demands_them() {
        let config = crate::config::parse(
            "clients:\n  - {name: m2m, issuer: https://idp.example.org, audiences: [api], jwks_uri: https://idp.example.org/keys, authorized_parties: [svc-a], require_typ: at+jwt, algorithms: [EdDSA]}\nrules:\n  - {name: api, match: {prefix: /api}}\n",
        )
        .unwrap_or_else(|e| panic!("{e}"));
        let h = Harness::new(config).unwrap();
        let cases = parse(
            "tests:\n  - name: filled in\n    request: { path: /api }\n    token: { claims: { sub: svc } }\n    expect: { decision: allow, headers: { x-authz-client: m2m } }\n  - name: another party\n    request: { path: /api }\n    token: { claims: { azp: svc-b } }\n    expect: { decision: deny, status: 401 }\n",
            h.config(),
        )
        .unwrap_or_else(|e| panic!("{e:?}"));
        let now = crate::testkit::now();
        for c in &cases {
            let o = h.run(c, now);
            assert!(o.passed(), "{}: {:?} (got {})", o.name, o.failures, o.got);
        }
    }

    #[test]
    fn audit_rules_answer_audit_deny_with_their_real_reason() {
        let config = crate::config::parse(
            "clients:\n  - {name: web, issuer: https://idp.example.org, audiences: [web], jwks_uri: https://idp.example.org/keys, roles: [roles]}\nrules:\n  - {name: new, match: {prefix: /api}, roles: {all_of: [editor]}, mode: audit}\n",
        )
        .unwrap_or_else(|e| panic!("{e}"));
        let h = Harness::new(config).unwrap();
        let cases = parse(
            "tests:\n  - name: would deny\n    request: { path: /api }\n    token: { claims: { sub: bob } }\n    expect: { decision: audit_deny, status: 200, reason: missing_required_roles, rule: new }\n  - name: passes\n    request: { path: /api }\n    token: { claims: { sub: alice, roles: [editor] } }\n    expect: { decision: allow, status: 200 }\n  - name: wrong\n    request: { path: /api }\n    token: { claims: { sub: bob } }\n    expect: { decision: allow }\n",
            h.config(),
        )
        .unwrap_or_else(|e| panic!("{e:?}"));
        let now = crate::testkit::now();
        let out: Vec<Outcome> = cases.iter().map(|c| h.run(c, now)).collect();
        assert!(
            out[0].passed(),
            "{:?} (got {})",
            out[0].failures,
            out[0].got
        );
        assert!(
            out[1].passed(),
            "{:?} (got {})",
            out[1].failures,
            out[1].got
        );
        assert_eq!(
            out[2].failures,
            vec!["decision: expected allow, got audit_deny".to_owned()]
        );
        assert!(
            out[2]
                .got
                .starts_with("audit_deny 200 missing_required_roles"),
            "{}",
            out[2].got
        );
    }

    #[test]
    fn a_wrong_expectation_fails_and_says_why() {
        let out = run(
            "tests:\n  - name: wrong\n    request: { method: POST, path: /api/x }\n    token: { client: web, claims: { sub: bob } }\n    expect: { decision: allow, status: 200, headers: { x-auth-subject: alice } }\n",
        );
        assert!(!out[0].passed());
        let f = out[0].failures.join("\n");
        assert!(f.contains("decision: expected allow, got deny"), "{f}");
        assert!(f.contains("status: expected 200, got 403"), "{f}");
        assert!(
            f.contains("header x-auth-subject: expected `alice`, got none"),
            "{f}"
        );
        assert!(
            out[0].got.contains("missing_required_roles"),
            "{}",
            out[0].got
        );
    }

    #[test]
    fn coverage_counts_hits_and_names_unreached_rules() {
        let out = run(
            "tests:\n  - name: h\n    request: { path: /healthz }\n    expect: { decision: allow }\n  - name: h2\n    request: { path: /healthz }\n    expect: { decision: allow }\n  - name: none\n    request: { path: /zzz }\n    expect: { decision: deny }\n",
        );
        let c = coverage(&config(), out.iter());
        assert!(c.starts_with("coverage: 1 of 3 rules reached"), "{c}");
        let count = |rule: &str| {
            c.lines()
                .find(|l| l.split_whitespace().next() == Some(rule))
                .and_then(|l| l.split_whitespace().nth(1))
                .map(str::to_owned)
        };
        assert_eq!(count("health").as_deref(), Some("2"), "{c}");
        assert_eq!(count("write").as_deref(), Some("0"), "{c}");
        assert_eq!(count("default").as_deref(), Some("1"), "{c}");
        assert!(c.contains("write       0 test(s)  NOT REACHED"), "{c}");
        assert!(c.contains("not reached by any test: write, api"), "{c}");
    }

    #[test]
    fn junit_escapes_what_it_quotes() {
        let o = Outcome {
            name: "a <b> & \"c\"".into(),
            failures: vec!["x\u{1}y".into()],
            got: "deny".into(),
            rule: None,
            reason: None,
            trace: vec![],
            duration: Duration::from_millis(2),
        };
        let x = junit(&[("f.yaml".into(), vec![o])]);
        assert!(
            x.contains("name=\"a &lt;b&gt; &amp; &quot;c&quot;\""),
            "{x}"
        );
        assert!(x.contains("failures=\"1\""));
        assert!(!x.contains('\u{1}'));
    }
}
