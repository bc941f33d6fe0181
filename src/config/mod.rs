//! The YAML configuration (DESIGN §3): parse strictly, validate everything, compile once.
//!
//! `load`/`parse` turn YAML text into a validated [`Config`] whose rules are already compiled
//! (matchers, regexes, header names). Every problem is reported, each as a [`ConfigError`] naming
//! the offending field (`clients[1].audiences`), so `check-config` can list them all at once.
//! The result is the plain-data [`crate::core::model`] (re-exported here). Sections with their
//! own file: `binding` (clients[].binding), `telemetry`, and [`units`] (sizes, durations).
//! This module never does network I/O; `jwks_file` contents are read later, by the snapshot
//! (`ops::state`). Layer 5: may import `core`, `outside` (URL validation, file reads), `observe`.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

// config imports neither `jwks` nor `introspect`: the types they need from the config live
// here, and URL rules come from `fetch` (one-way: config → fetch).
use crate::core::policy::{AuthMode, Condition, HostMatcher, PathMatcher, Rule};
use crate::core::token::TokenSource;
use crate::keys::Alg;

mod binding;
mod telemetry;
pub mod units;

pub use units::{parse_duration, parse_size};

pub use crate::core::model::{
    ClientConfig, Config, DEFAULT_MAX_BYTES, DefaultAction, IntrospectionConfig, JwksSettings,
    KeySource, Listen, ListenLimits, Secret, TelemetryConfig, TokenConfig,
};
use crate::outside::fetch::validate_url;

/// One problem in a config file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// Where: `clients[0].audiences`, `rules[2].match.regex`, or `config` for the whole file.
    pub field: String,
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.field, self.message)
    }
}

/// Every problem found in a config file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl ConfigErrors {
    fn one(field: impl Into<String>, message: impl Into<String>) -> Self {
        ConfigErrors(vec![ConfigError {
            field: field.into(),
            message: message.into(),
        }])
    }
}

const MAX_MAX_BYTES: usize = 1024 * 1024;
const MAX_LEEWAY: Duration = Duration::from_secs(600);

// ---------------------------------------------------------------------------------------------
// Raw schema: exactly what YAML may contain. Unknown keys are errors.

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    #[serde(default)]
    listen: RawListen,
    #[serde(default)]
    token: RawToken,
    #[serde(default)]
    jwks: RawJwks,
    clients: Vec<RawClient>,
    #[serde(default)]
    rules: Vec<RawRule>,
    default: Option<String>,
    #[serde(default)]
    cache: RawCache,
    #[serde(default)]
    telemetry: Option<telemetry::RawTelemetry>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCache {
    max_entries: Option<usize>,
    max_bytes: Option<RawBytes>,
}

/// A size: an integer number of bytes, or `64MiB`, `512KiB`, `1GiB`.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum RawBytes {
    Bytes(usize),
    Text(String),
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawListen {
    grpc: Option<String>,
    admin: Option<String>,
    admin_grpc: Option<String>,
    http: Option<String>,
    max_connections: Option<usize>,
    max_concurrent_streams: Option<u32>,
    max_request_bytes: Option<RawBytes>,
    header_read_timeout: Option<RawDuration>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawToken {
    sources: Option<Vec<RawSource>>,
    max_bytes: Option<usize>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSource {
    header: Option<String>,
    cookie: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawJwks {
    refresh_interval: Option<RawDuration>,
    min_refresh_interval: Option<RawDuration>,
    max_stale: Option<RawDuration>,
    timeout: Option<RawDuration>,
    ca_file: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawClient {
    name: String,
    issuer: String,
    jwks_uri: Option<String>,
    jwks_file: Option<String>,
    audiences: Vec<String>,
    authorized_parties: Option<Vec<String>>,
    algorithms: Option<Vec<String>>,
    leeway: Option<RawDuration>,
    require_typ: Option<String>,
    roles: Option<Vec<String>>,
    headers: Option<BTreeMap<String, String>>,
    introspection: Option<RawIntrospection>,
    binding: Option<binding::RawBinding>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawIntrospection {
    endpoint: Option<String>,
    client_id: String,
    client_secret: String,
    #[serde(default)]
    opaque: bool,
    check_jwts: Option<bool>,
    cache_ttl: Option<RawDuration>,
    timeout: Option<RawDuration>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRule {
    name: String,
    #[serde(rename = "match")]
    matcher: RawMatch,
    auth: Option<String>,
    roles: Option<RawAnyAll>,
    scopes: Option<RawAnyAll>,
    claims: Option<BTreeMap<String, serde_yaml::Value>>,
    clients: Option<Vec<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawMatch {
    path: Option<String>,
    prefix: Option<String>,
    glob: Option<String>,
    regex: Option<String>,
    methods: Option<Vec<String>>,
    hosts: Option<Vec<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAnyAll {
    any_of: Option<Vec<String>>,
    all_of: Option<Vec<String>>,
}

/// A duration written as `30s`, `5m`, `1h30m`, `250ms`, or a bare integer number of seconds.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum RawDuration {
    Text(String),
    Seconds(u64),
}

// ---------------------------------------------------------------------------------------------

/// Read and validate a config file.
pub fn load(path: &Path) -> Result<Config, ConfigErrors> {
    // Regular files only, size-capped (`files`): a FIFO or device here must not hang a reload.
    let bytes = crate::outside::files::read_blocking(path)
        .map_err(|e| ConfigErrors::one("config", format!("cannot read {e}")))?;
    let text = String::from_utf8(bytes)
        .map_err(|_| ConfigErrors::one("config", format!("{} is not UTF-8", path.display())))?;
    parse(&text)
}

/// Validate config text, expanding `${VAR}` from the process environment.
pub fn parse(text: &str) -> Result<Config, ConfigErrors> {
    parse_with_env(text, &|name| std::env::var(name).ok())
}

/// Validate config text with an explicit environment (tests).
pub fn parse_with_env(
    text: &str,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Config, ConfigErrors> {
    let raw: RawConfig = serde_yaml::from_str(text).map_err(|e| {
        // yaml_serde errors already name the path (`clients[0]: unknown field ...`).
        ConfigErrors::one("config", e.to_string())
    })?;
    let mut v = Validator {
        errors: Vec::new(),
        env,
        expansion_failed: false,
    };
    let config = v.config(raw);
    if v.errors.is_empty() {
        Ok(config)
    } else {
        Err(ConfigErrors(v.errors))
    }
}

struct Validator<'e> {
    errors: Vec<ConfigError>,
    env: &'e dyn Fn(&str) -> Option<String>,
    /// Set when a `${VAR}` could not be expanded: checks of that value would only repeat it.
    expansion_failed: bool,
}

impl Validator<'_> {
    fn err(&mut self, field: impl Into<String>, message: impl Into<String>) {
        self.errors.push(ConfigError {
            field: field.into(),
            message: message.into(),
        });
    }

    /// Expand `${VAR}` (and `$${` → literal `${`). An unset variable is an error naming it.
    fn expand(&mut self, field: &str, s: &str) -> String {
        if !s.contains('$') {
            return s.to_owned();
        }
        match expand_env(s, self.env) {
            Ok(v) => v,
            Err(msg) => {
                self.err(field, msg);
                self.expansion_failed = true;
                s.to_owned()
            }
        }
    }

    fn duration(&mut self, field: &str, raw: Option<RawDuration>, default: Duration) -> Duration {
        match raw {
            None => default,
            Some(RawDuration::Seconds(s)) => Duration::from_secs(s),
            Some(RawDuration::Text(t)) => match parse_duration(&t) {
                Ok(d) => d,
                Err(m) => {
                    self.err(field, m);
                    default
                }
            },
        }
    }

    fn config(&mut self, raw: RawConfig) -> Config {
        let listen = self.listen(raw.listen);
        let token = self.token(raw.token);
        let jwks = self.jwks(raw.jwks);
        let clients = self.clients(raw.clients);
        let rules = self.rules(raw.rules, &clients);
        let default = match raw.default.as_deref() {
            None | Some("deny") => DefaultAction::Deny,
            Some("authenticated") => DefaultAction::Authenticated,
            Some(other) => {
                self.err(
                    "default",
                    format!("must be `deny` or `authenticated`, not `{other}`"),
                );
                DefaultAction::Deny
            }
        };
        let cache = self.cache(raw.cache);
        let telemetry = raw.telemetry.and_then(|mut t| {
            let endpoint = t
                .otlp_endpoint
                .take()
                .map(|e| self.expand("telemetry.otlp_endpoint", &e));
            telemetry::validate(t, endpoint, &mut |f, m| self.err(f, m))
        });
        Config {
            listen,
            token,
            jwks,
            clients,
            rules: rules.into(),
            default,
            cache,
            telemetry,
        }
    }

    fn cache(&mut self, raw: RawCache) -> crate::core::cache::CacheLimits {
        let d = crate::core::cache::CacheLimits::default();
        let max_bytes = match raw.max_bytes {
            None => d.max_bytes,
            Some(RawBytes::Bytes(b)) => b,
            Some(RawBytes::Text(t)) => match parse_size(&t) {
                Some(b) => b,
                None => {
                    self.err(
                        "cache.max_bytes",
                        format!("`{t}` is not a size (use bytes, or e.g. 64MiB)"),
                    );
                    d.max_bytes
                }
            },
        };
        if max_bytes > 16 * 1024 * 1024 * 1024 {
            self.err("cache.max_bytes", "must be at most 16GiB");
        }
        crate::core::cache::CacheLimits {
            max_entries: raw.max_entries.unwrap_or(d.max_entries),
            max_bytes,
        }
    }

    fn listen(&mut self, mut raw: RawListen) -> Listen {
        let mut addr = |field: &str, v: Option<String>, default: &str| -> SocketAddr {
            let text = v
                .map(|s| self.expand(field, &s))
                .unwrap_or_else(|| default.to_owned());
            match text.parse::<SocketAddr>() {
                Ok(a) => a,
                Err(_) => {
                    self.err(
                        field,
                        format!("`{text}` is not an address like 0.0.0.0:9001"),
                    );
                    SocketAddr::from(([0, 0, 0, 0], 0))
                }
            }
        };
        let grpc = addr("listen.grpc", raw.grpc.take(), "0.0.0.0:9001");
        let admin = addr("listen.admin", raw.admin.take(), "0.0.0.0:9002");
        let admin_grpc = addr("listen.admin_grpc", raw.admin_grpc.take(), "127.0.0.1:9003");
        let http = raw
            .http
            .take()
            .map(|v| addr("listen.http", Some(v), "0.0.0.0:9004"));
        if grpc == admin && grpc.port() != 0 {
            self.err("listen.admin", "must differ from listen.grpc");
        }
        if let Some(h) = http
            && h.port() != 0
            && (h == grpc || h == admin || h == admin_grpc)
        {
            self.err(
                "listen.http",
                "must differ from listen.grpc, listen.admin and listen.admin_grpc",
            );
        }
        if !admin_grpc.ip().is_loopback() {
            self.err(
                "listen.admin_grpc",
                "must be a loopback address (it explains decisions and lists keys; reach it with kubectl port-forward)",
            );
        }
        let limits = self.listen_limits(raw);
        Listen {
            grpc,
            admin,
            admin_grpc,
            http,
            limits,
        }
    }

    fn listen_limits(&mut self, raw: RawListen) -> ListenLimits {
        let d = ListenLimits::default();
        let max_connections = raw.max_connections.unwrap_or(d.max_connections);
        if !(1..=1_000_000).contains(&max_connections) {
            self.err("listen.max_connections", "must be between 1 and 1000000");
        }
        let max_concurrent_streams = raw
            .max_concurrent_streams
            .unwrap_or(d.max_concurrent_streams);
        if !(1..=10_000).contains(&max_concurrent_streams) {
            self.err(
                "listen.max_concurrent_streams",
                "must be between 1 and 10000",
            );
        }
        let max_request_bytes = match raw.max_request_bytes {
            None => d.max_request_bytes,
            Some(RawBytes::Bytes(b)) => b,
            Some(RawBytes::Text(t)) => parse_size(&t).unwrap_or_else(|| {
                self.err(
                    "listen.max_request_bytes",
                    format!("`{t}` is not a size (use bytes, or e.g. 64KiB)"),
                );
                d.max_request_bytes
            }),
        };
        // 4 KiB: below that even a plain Envoy CheckRequest with a JWT does not fit. 16 MiB: the
        // transport accepts twice this per stream, and tonic reserves the announced size.
        if !(4 * 1024..=16 * 1024 * 1024).contains(&max_request_bytes) {
            self.err("listen.max_request_bytes", "must be between 4KiB and 16MiB");
        }
        let header_read_timeout = self.duration(
            "listen.header_read_timeout",
            raw.header_read_timeout,
            d.header_read_timeout,
        );
        if header_read_timeout < Duration::from_millis(100)
            || header_read_timeout > Duration::from_secs(300)
        {
            self.err("listen.header_read_timeout", "must be between 100ms and 5m");
        }
        ListenLimits {
            max_connections,
            max_concurrent_streams,
            max_request_bytes,
            header_read_timeout,
        }
    }

    fn token(&mut self, raw: RawToken) -> TokenConfig {
        let max_bytes = raw.max_bytes.unwrap_or(DEFAULT_MAX_BYTES);
        if max_bytes == 0 || max_bytes > MAX_MAX_BYTES {
            self.err(
                "token.max_bytes",
                format!("must be between 1 and {MAX_MAX_BYTES}"),
            );
        }
        let sources = match raw.sources {
            None => vec![TokenSource::Header("authorization".into())],
            Some(list) => {
                if list.is_empty() {
                    self.err("token.sources", "must list at least one source");
                }
                let mut out = Vec::new();
                for (i, s) in list.into_iter().enumerate() {
                    let field = format!("token.sources[{i}]");
                    match (s.header, s.cookie) {
                        (Some(h), None) => {
                            let h = h.to_ascii_lowercase();
                            if !is_header_name(&h) {
                                self.err(field, format!("`{h}` is not a valid header name"));
                            }
                            out.push(TokenSource::Header(h));
                        }
                        (None, Some(c)) => {
                            if c.is_empty() || !c.bytes().all(is_cookie_name_byte) {
                                self.err(field, format!("`{c}` is not a valid cookie name"));
                            }
                            out.push(TokenSource::Cookie(c));
                        }
                        _ => self.err(field, "must have exactly one of `header` or `cookie`"),
                    }
                }
                out
            }
        };
        TokenConfig { sources, max_bytes }
    }

    fn jwks(&mut self, raw: RawJwks) -> JwksSettings {
        let d = JwksSettings::default();
        let s = JwksSettings {
            refresh_interval: self.duration(
                "jwks.refresh_interval",
                raw.refresh_interval,
                d.refresh_interval,
            ),
            min_refresh_interval: self.duration(
                "jwks.min_refresh_interval",
                raw.min_refresh_interval,
                d.min_refresh_interval,
            ),
            max_stale: self.duration("jwks.max_stale", raw.max_stale, d.max_stale),
            timeout: self.duration("jwks.timeout", raw.timeout, d.timeout),
            ca_file: raw
                .ca_file
                .map(|c| PathBuf::from(self.expand("jwks.ca_file", &c))),
        };
        if s.refresh_interval.is_zero() {
            self.err("jwks.refresh_interval", "must be greater than zero");
        }
        if s.refresh_interval < s.min_refresh_interval {
            self.err(
                "jwks.refresh_interval",
                "must not be shorter than jwks.min_refresh_interval",
            );
        }
        if s.timeout.is_zero() || s.timeout > Duration::from_secs(60) {
            self.err("jwks.timeout", "must be greater than zero and at most 60s");
        }
        let mut s = s;
        if s.timeout > s.min_refresh_interval && !s.min_refresh_interval.is_zero() {
            // A fetch may not outlast the cooldown between fetches: otherwise unknown-kid
            // refetches against a stalling IdP follow each other back to back. Clamped (not an
            // error) so that existing configs with a short cooldown keep loading.
            tracing::warn!(
                timeout = ?s.timeout,
                min_refresh_interval = ?s.min_refresh_interval,
                "jwks.timeout is longer than jwks.min_refresh_interval; using min_refresh_interval as the timeout"
            );
            s.timeout = s.min_refresh_interval;
        }
        if s.max_stale < s.refresh_interval {
            self.err(
                "jwks.max_stale",
                "must not be shorter than jwks.refresh_interval",
            );
        }
        if let Some(ca) = &s.ca_file {
            match crate::outside::files::read_blocking(ca) {
                Err(e) => self.err("jwks.ca_file", e.to_string()),
                Ok(pem) => match reqwest::Certificate::from_pem_bundle(&pem) {
                    Ok(certs) if !certs.is_empty() => {}
                    _ => self.err(
                        "jwks.ca_file",
                        format!("{} holds no PEM certificate", ca.display()),
                    ),
                },
            }
        }
        s
    }

    fn clients(&mut self, raw: Vec<RawClient>) -> Vec<ClientConfig> {
        if raw.is_empty() {
            self.err("clients", "must list at least one client");
        }
        let mut names = HashSet::new();
        let mut out: Vec<ClientConfig> = Vec::new();
        for (i, c) in raw.into_iter().enumerate() {
            let f = |k: &str| format!("clients[{i}].{k}");
            if c.name.is_empty()
                || !c
                    .name
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            {
                self.err(f("name"), format!("`{}` must match [a-z0-9-]+", c.name));
            }
            if !names.insert(c.name.clone()) {
                self.err(f("name"), format!("duplicate client name `{}`", c.name));
            }
            self.expansion_failed = false;
            let issuer = self.expand(&f("issuer"), &c.issuer);
            let issuer_unexpanded = std::mem::take(&mut self.expansion_failed);
            if issuer.is_empty() {
                self.err(f("issuer"), "must not be empty");
            }
            let keys = match (c.jwks_uri, c.jwks_file) {
                (Some(_), Some(_)) => {
                    self.err(f("jwks_uri"), "set at most one of jwks_uri and jwks_file");
                    KeySource::Discovery {
                        issuer: issuer.clone(),
                    }
                }
                (Some(uri), None) => {
                    let uri = self.expand(&f("jwks_uri"), &uri);
                    if let Err(m) = validate_url(&uri) {
                        self.err(f("jwks_uri"), m.to_string());
                    }
                    KeySource::Uri(uri)
                }
                (None, Some(file)) => {
                    let file = self.expand(&f("jwks_file"), &file);
                    if file.is_empty() {
                        self.err(f("jwks_file"), "must not be empty");
                    }
                    KeySource::File(PathBuf::from(file))
                }
                (None, None) => {
                    if let (false, Err(m)) = (issuer_unexpanded, validate_url(&issuer)) {
                        self.err(f("issuer"), format!("{m} (discovery fetches {{issuer}}/.well-known/openid-configuration)"));
                    }
                    KeySource::Discovery {
                        issuer: issuer.clone(),
                    }
                }
            };
            let remote = !matches!(keys, KeySource::File(_));
            let audiences: Vec<String> = c
                .audiences
                .iter()
                .map(|a| self.expand(&f("audiences"), a))
                .collect();
            if audiences.is_empty() {
                self.err(f("audiences"), "must list at least one audience");
            }
            if audiences.iter().any(String::is_empty) {
                self.err(f("audiences"), "an audience must not be empty");
            }
            let authorized_parties = c.authorized_parties.map(|list| {
                if list.is_empty() {
                    self.err(
                        f("authorized_parties"),
                        "when set, must list at least one party",
                    );
                }
                list.iter()
                    .map(|a| self.expand(&f("authorized_parties"), a))
                    .collect::<Vec<_>>()
            });
            let algorithms = match c.algorithms {
                None => vec![Alg::RS256],
                Some(list) => {
                    if list.is_empty() {
                        self.err(f("algorithms"), "must list at least one algorithm");
                    }
                    let mut algs = Vec::new();
                    for a in &list {
                        match Alg::parse(a) {
                            Some(alg) => {
                                if !algs.contains(&alg) {
                                    algs.push(alg)
                                }
                            }
                            None if a.to_ascii_uppercase().starts_with("HS") => self.err(
                                f("algorithms"),
                                if remote {
                                    format!("`{a}`: HMAC algorithms cannot be used with keys fetched from an issuer")
                                } else {
                                    format!("`{a}`: HMAC (shared-secret) algorithms are not supported")
                                },
                            ),
                            None => self.err(
                                f("algorithms"),
                                format!("`{a}` is not supported (use RS256/384/512, PS256/384/512, ES256/384, EdDSA)"),
                            ),
                        }
                    }
                    algs
                }
            };
            let leeway = self.duration(&f("leeway"), c.leeway, Duration::from_secs(30));
            if leeway > MAX_LEEWAY {
                self.err(f("leeway"), "must be at most 10m");
            }
            if let Some(t) = &c.require_typ
                && t.is_empty()
            {
                self.err(f("require_typ"), "must not be empty");
            }
            let roles = c.roles.unwrap_or_default();
            for (j, r) in roles.iter().enumerate() {
                if r.is_empty() {
                    self.err(
                        format!("clients[{i}].roles[{j}]"),
                        "a claim path must not be empty",
                    );
                }
            }
            let mut headers = Vec::new();
            for (name, claim) in c.headers.unwrap_or_default() {
                let lname = name.to_ascii_lowercase();
                let field = format!("clients[{i}].headers.{name}");
                if !is_header_name(&lname) {
                    self.err(&field, format!("`{name}` is not a valid header name"));
                } else if is_reserved_header(&lname) {
                    self.err(&field, format!("`{name}` cannot be set from a claim"));
                }
                if claim.is_empty() {
                    self.err(&field, "the claim path must not be empty");
                }
                headers.push((lname, claim));
            }
            // Two clients of one issuer sharing an audience: a token could route to both.
            for other in &out {
                if other.issuer == issuer
                    && let Some(a) = audiences.iter().find(|a| other.audiences.contains(a))
                {
                    self.err(
                        f("audiences"),
                        format!(
                            "audience `{a}` of issuer {issuer} is also used by client `{}`",
                            other.name
                        ),
                    );
                }
            }
            let introspection = c.introspection.map(|ri| {
                let fi = |k: &str| format!("clients[{i}].introspection.{k}");
                let endpoint = ri.endpoint.map(|e| self.expand(&fi("endpoint"), &e));
                match &endpoint {
                    Some(e) => {
                        if let Err(m) = validate_url(e) {
                            self.err(fi("endpoint"), m.to_string());
                        }
                    }
                    None if !matches!(keys, KeySource::Discovery { .. }) => self.err(
                        fi("endpoint"),
                        "required when the client does not use discovery (jwks_uri / jwks_file)",
                    ),
                    None => {}
                }
                let client_id = self.expand(&fi("client_id"), &ri.client_id);
                if client_id.is_empty() {
                    self.err(fi("client_id"), "must not be empty");
                }
                let secret = self.expand(&fi("client_secret"), &ri.client_secret);
                if secret.is_empty() {
                    self.err(fi("client_secret"), "must not be empty");
                }
                let cache_ttl =
                    self.duration(&fi("cache_ttl"), ri.cache_ttl, Duration::from_secs(60));
                if cache_ttl > Duration::from_secs(3600) {
                    self.err(
                        fi("cache_ttl"),
                        "must be at most 1h (it bounds how late a revocation is seen)",
                    );
                }
                let timeout = self.duration(&fi("timeout"), ri.timeout, Duration::from_secs(2));
                if timeout.is_zero() || timeout > Duration::from_secs(30) {
                    self.err(fi("timeout"), "must be greater than zero and at most 30s");
                }
                IntrospectionConfig {
                    endpoint,
                    client_id,
                    client_secret: Secret::new(secret),
                    opaque: ri.opaque,
                    check_jwts: ri.check_jwts.unwrap_or(true),
                    cache_ttl,
                    timeout,
                }
            });
            let (binding, binding_errors) =
                binding::compile(c.binding, &f("binding"), leeway, |field, s| {
                    self.expansion_failed = false;
                    let v = self.expand(field, s);
                    (!std::mem::take(&mut self.expansion_failed)).then_some(v)
                });
            for (field, message) in binding_errors {
                self.err(field, message);
            }
            out.push(ClientConfig {
                name: c.name,
                issuer,
                keys,
                audiences,
                authorized_parties,
                algorithms,
                leeway,
                require_typ: c.require_typ,
                roles,
                headers,
                introspection,
                binding,
            });
        }
        let opaque: Vec<&str> = out
            .iter()
            .filter(|c| c.introspection.as_ref().is_some_and(|i| i.opaque))
            .map(|c| c.name.as_str())
            .collect();
        if opaque.len() > 1 {
            self.err(
                "clients",
                format!(
                    "at most one client may accept opaque tokens (introspection.opaque), not {}",
                    opaque.join(", ")
                ),
            );
        }
        out
    }

    fn rules(&mut self, raw: Vec<RawRule>, clients: &[ClientConfig]) -> Vec<Rule> {
        let client_index: HashMap<&str, usize> = clients
            .iter()
            .enumerate()
            .map(|(i, c)| (c.name.as_str(), i))
            .collect();
        let mut names = HashSet::new();
        let mut out = Vec::new();
        for (i, r) in raw.into_iter().enumerate() {
            let f = |k: &str| format!("rules[{i}].{k}");
            if r.name.is_empty() || !r.name.bytes().all(|b| b.is_ascii_graphic()) {
                self.err(
                    f("name"),
                    "must be non-empty printable ASCII without spaces",
                );
            }
            if !names.insert(r.name.clone()) {
                self.err(f("name"), format!("duplicate rule name `{}`", r.name));
            }
            let m = r.matcher;
            let given = [&m.path, &m.prefix, &m.glob, &m.regex]
                .iter()
                .filter(|x| x.is_some())
                .count();
            let path = if given != 1 {
                self.err(
                    f("match"),
                    "must have exactly one of path, prefix, glob, regex",
                );
                PathMatcher::Prefix("/".into())
            } else {
                let built = if let Some(p) = m.path {
                    PathMatcher::exact(&p).map_err(|e| ("match.path", e))
                } else if let Some(p) = m.prefix {
                    PathMatcher::prefix(&p).map_err(|e| ("match.prefix", e))
                } else if let Some(g) = m.glob {
                    PathMatcher::glob(&g).map_err(|e| ("match.glob", e))
                } else {
                    PathMatcher::regex(m.regex.as_deref().unwrap_or_default())
                        .map_err(|e| ("match.regex", e))
                };
                match built {
                    Ok(p) => p,
                    Err((k, e)) => {
                        self.err(f(k), e);
                        PathMatcher::Prefix("/".into())
                    }
                }
            };
            let methods = m.methods.map(|list| {
                if list.is_empty() {
                    self.err(
                        f("match.methods"),
                        "when set, must list at least one method",
                    );
                }
                list.iter()
                    .map(|mm| {
                        let up = mm.to_ascii_uppercase();
                        if up.is_empty() || !up.bytes().all(|b| b.is_ascii_uppercase() || b == b'-')
                        {
                            self.err(f("match.methods"), format!("`{mm}` is not an HTTP method"));
                        }
                        up
                    })
                    .collect::<Vec<_>>()
            });
            let hosts = m.hosts.map(|list| {
                if list.is_empty() {
                    self.err(f("match.hosts"), "when set, must list at least one host");
                }
                list.iter()
                    .filter_map(|h| match HostMatcher::parse(h) {
                        Ok(hm) => Some(hm),
                        Err(e) => {
                            self.err(f("match.hosts"), e);
                            None
                        }
                    })
                    .collect::<Vec<_>>()
            });
            let auth = match r.auth.as_deref() {
                None | Some("required") => AuthMode::Required,
                Some("optional") => AuthMode::Optional,
                Some("none") => AuthMode::None,
                Some(other) => {
                    self.err(
                        f("auth"),
                        format!("must be required, optional or none, not `{other}`"),
                    );
                    AuthMode::Required
                }
            };
            let mut conditions = Vec::new();
            // `clients` first: a token of the wrong client is `client_not_allowed`, whatever
            // roles it lacks.
            if let Some(list) = r.clients {
                if list.is_empty() {
                    self.err(f("clients"), "when set, must list at least one client");
                }
                let mut idx = Vec::new();
                for c in &list {
                    match client_index.get(c.as_str()) {
                        Some(&n) => idx.push(n),
                        None => self.err(f("clients"), format!("unknown client `{c}`")),
                    }
                }
                conditions.push(Condition::Clients(idx));
            }
            if let Some(ra) = r.roles {
                self.any_all(
                    &f("roles"),
                    ra,
                    &mut conditions,
                    Condition::RolesAll,
                    Condition::RolesAny,
                );
            }
            if let Some(sa) = r.scopes {
                self.any_all(
                    &f("scopes"),
                    sa,
                    &mut conditions,
                    Condition::ScopesAll,
                    Condition::ScopesAny,
                );
            }
            if let Some(claims) = r.claims {
                for (path, value) in claims {
                    let field = format!("rules[{i}].claims.{path}");
                    match yaml_to_claim_values(&value) {
                        Some(vals) if !vals.is_empty() && !path.is_empty() => {
                            conditions.push(Condition::Claim { path, values: vals })
                        }
                        _ => self.err(
                            field,
                            "must be a string, number or boolean, or a non-empty list of them",
                        ),
                    }
                }
            }
            if auth != AuthMode::Required && !conditions.is_empty() {
                self.err(
                    f("auth"),
                    "roles, scopes, claims and clients conditions need `auth: required` (they can only hold for a verified token)",
                );
            }
            out.push(Rule {
                name: r.name,
                path,
                methods,
                hosts,
                auth,
                conditions,
            });
        }
        out
    }

    fn any_all(
        &mut self,
        field: &str,
        ra: RawAnyAll,
        out: &mut Vec<Condition>,
        all: fn(Vec<String>) -> Condition,
        any: fn(Vec<String>) -> Condition,
    ) {
        if ra.all_of.is_none() && ra.any_of.is_none() {
            self.err(field, "must have any_of and/or all_of");
        }
        if let Some(l) = ra.all_of {
            if l.is_empty() || l.iter().any(String::is_empty) {
                self.err(
                    format!("{field}.all_of"),
                    "must be a non-empty list of non-empty names",
                );
            }
            out.push(all(l));
        }
        if let Some(l) = ra.any_of {
            if l.is_empty() || l.iter().any(String::is_empty) {
                self.err(
                    format!("{field}.any_of"),
                    "must be a non-empty list of non-empty names",
                );
            }
            out.push(any(l));
        }
    }
}

fn yaml_to_claim_values(v: &serde_yaml::Value) -> Option<Vec<serde_json::Value>> {
    fn scalar(v: &serde_yaml::Value) -> Option<serde_json::Value> {
        match v {
            serde_yaml::Value::String(s) => Some(serde_json::Value::String(s.clone())),
            serde_yaml::Value::Bool(b) => Some(serde_json::Value::Bool(*b)),
            serde_yaml::Value::Number(n) => {
                if let Some(i) = n.as_i64() {
                    Some(serde_json::Value::from(i))
                } else if let Some(u) = n.as_u64() {
                    Some(serde_json::Value::from(u))
                } else {
                    n.as_f64()
                        .and_then(serde_json::Number::from_f64)
                        .map(serde_json::Value::Number)
                }
            }
            _ => None,
        }
    }
    match v {
        serde_yaml::Value::Sequence(items) => items.iter().map(scalar).collect(),
        other => scalar(other).map(|s| vec![s]),
    }
}

/// Config text for display (`check-config --print`): every literal `client_secret` value is
/// replaced by `<redacted>`; `${VAR}` references are kept (they are not secrets).
pub fn redact_secrets(text: &str) -> String {
    static RE: std::sync::OnceLock<Option<regex::Regex>> = std::sync::OnceLock::new();
    let Some(re) = RE
        .get_or_init(|| regex::Regex::new(r#"(client_secret\s*:\s*)(\$\{[A-Za-z0-9_]*\}|"[^"\n]*"|'[^'\n]*'|[^,}\s#][^,}\n#]*)"#).ok())
        .as_ref()
    else {
        return String::from("# (config not shown: redaction unavailable)\n");
    };
    re.replace_all(text, |c: &regex::Captures<'_>| {
        let v = c[2].trim_matches(|ch| ch == '"' || ch == '\'');
        if v.starts_with("${") && v.ends_with('}') {
            c[0].to_owned()
        } else {
            format!("{}\"<redacted>\"", &c[1])
        }
    })
    .into_owned()
}

/// `${VAR}` expansion; `$${` is a literal `${`.
pub fn expand_env(s: &str, env: &dyn Fn(&str) -> Option<String>) -> Result<String, String> {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(pos) = rest.find('$') {
        out.push_str(&rest[..pos]);
        let after = &rest[pos..];
        if let Some(tail) = after.strip_prefix("$${") {
            out.push_str("${");
            rest = tail;
        } else if let Some(tail) = after.strip_prefix("${") {
            let end = tail
                .find('}')
                .ok_or_else(|| "unterminated ${...}".to_string())?;
            let name = &tail[..end];
            if name.is_empty()
                || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
                || name.as_bytes()[0].is_ascii_digit()
            {
                return Err(format!(
                    "`${{{name}}}` is not a valid environment variable reference"
                ));
            }
            match env(name) {
                Some(v) => out.push_str(&v),
                None => return Err(format!("environment variable {name} is not set")),
            }
            rest = &tail[end + 1..];
        } else {
            out.push('$');
            rest = &after[1..];
        }
    }
    out.push_str(rest);
    Ok(out)
}

/// RFC 9110 token characters, lower case only (Envoy sends lower-case names).
pub fn is_header_name(s: &str) -> bool {
    !s.is_empty()
        && s.bytes().all(|b| {
            b.is_ascii_lowercase() || b.is_ascii_digit() || b"!#$%&'*+-.^_`|~".contains(&b)
        })
}

/// Headers a claim must never set: pseudo-headers, hop-by-hop, credentials, framing, routing,
/// and our own `x-authz-client`.
fn is_reserved_header(name: &str) -> bool {
    matches!(
        name,
        "host"
            | "authorization"
            | "cookie"
            | "content-length"
            | "content-type"
            | "transfer-encoding"
            | "connection"
            | "keep-alive"
            | "upgrade"
            | "te"
            | "trailer"
            | "proxy-authorization"
            | "x-authz-client"
            | "x-envoy-original-path"
    ) || name.starts_with("x-envoy-")
}

fn is_cookie_name_byte(b: u8) -> bool {
    b.is_ascii_graphic() && !b"()<>@,;:\\\"/[]?={}".contains(&b)
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
listen: { grpc: 127.0.0.1:9001, admin: 127.0.0.1:9002 }
token:
  sources: [ { header: authorization }, { cookie: oidc-jwt } ]
  max_bytes: 8192
jwks: { refresh_interval: 5m, min_refresh_interval: 15s, max_stale: 12h, timeout: 5s }
clients:
  - name: core-web
    issuer: https://sso.example.org/auth/realms/standard
    audiences: [core-web-4414]
    roles: [realm_access.roles]
    headers: { x-auth-subject: sub, X-Auth-Roles: realm_access.roles }
  - name: bcmi
    issuer: https://sso.example.org/auth/realms/standard
    jwks_uri: https://sso.example.org/auth/realms/standard/protocol/openid-connect/certs
    audiences: [bcmi-1234]
    algorithms: [RS256, ES256, EdDSA]
    leeway: 1m
    require_typ: at+jwt
    authorized_parties: [bcmi-1234]
rules:
  - { name: health, match: { path: /healthz }, auth: none }
  - { name: names-write, match: { prefix: /api/names, methods: [post, PUT] }, roles: { all_of: [names_editor] } }
  - name: reports
    match: { glob: "/api/*/reports/**", hosts: [api.example.org, "*.example.net"] }
    roles: { any_of: [viewer, auditor] }
    scopes: { all_of: [read] }
    claims: { email_verified: true, "realm_access.roles": [a, b] }
    clients: [core-web]
  - { name: re, match: { regex: "/v[0-9]+/items" }, auth: optional }
  - { name: api, match: { prefix: /api } }
default: authenticated
"#;

    fn errors(text: &str) -> Vec<String> {
        match parse_with_env(text, &|_| None) {
            Ok(_) => vec![],
            Err(e) => e.0.iter().map(|e| e.to_string()).collect(),
        }
    }

    #[test]
    fn the_design_example_parses_and_compiles() {
        let c = parse_with_env(GOOD, &|_| None).unwrap();
        assert_eq!(c.listen.grpc.port(), 9001);
        assert_eq!(c.token.max_bytes, 8192);
        assert_eq!(c.token.sources.len(), 2);
        assert_eq!(c.clients.len(), 2);
        assert!(matches!(c.clients[0].keys, KeySource::Discovery { .. }));
        assert!(matches!(c.clients[1].keys, KeySource::Uri(_)));
        assert_eq!(c.clients[0].algorithms, vec![Alg::RS256]);
        assert_eq!(c.clients[0].leeway, Duration::from_secs(30));
        assert_eq!(c.clients[0].headers[0].0, "x-auth-roles");
        assert_eq!(c.rules.len(), 5);
        assert_eq!(
            c.rules[1].methods.as_deref(),
            Some(&["POST".to_string(), "PUT".to_string()][..])
        );
        assert_eq!(c.default, DefaultAction::Authenticated);
    }

    fn with(replace: &str, by: &str) -> String {
        assert!(GOOD.contains(replace), "{replace}");
        GOOD.replacen(replace, by, 1)
    }

    #[test]
    fn each_invalid_config_names_its_field() {
        let cases: Vec<(String, &str)> = vec![
            (
                with("max_bytes: 8192", "max_bytes: 8192\n  bogus: 1"),
                "unknown field `bogus`",
            ),
            (
                with("name: bcmi", "name: core-web"),
                "clients[1].name: duplicate client name",
            ),
            (with("name: bcmi", "name: Bad_Name"), "clients[1].name"),
            (
                with("audiences: [bcmi-1234]", "audiences: []"),
                "clients[1].audiences: must list",
            ),
            (
                with("audiences: [bcmi-1234]", "audiences: [core-web-4414]"),
                "clients[1].audiences: audience `core-web-4414`",
            ),
            (
                with("[RS256, ES256, EdDSA]", "[RS256, HS256]"),
                "clients[1].algorithms: `HS256`: HMAC algorithms cannot be used with keys fetched",
            ),
            (
                with("[RS256, ES256, EdDSA]", "[RS1]"),
                "clients[1].algorithms: `RS1` is not supported",
            ),
            (
                with("clients: [core-web]", "clients: [nope]"),
                "rules[2].clients: unknown client `nope`",
            ),
            (with("leeway: 1m", "leeway: 1 minute"), "clients[1].leeway"),
            (with("timeout: 5s", "timeout: soon"), "jwks.timeout"),
            (
                with("regex: \"/v[0-9]+/items\"", "regex: \"/v[0-9+/items\""),
                "rules[3].match.regex",
            ),
            (
                with("glob: \"/api/*/reports/**\"", "glob: \"api/**x\""),
                "rules[2].match.glob",
            ),
            (
                with("prefix: /api/names", "prefix: /api/../names"),
                "rules[1].match.prefix",
            ),
            (
                with("x-auth-subject: sub", "\"bad header\": sub"),
                "clients[0].headers.bad header",
            ),
            (
                with("x-auth-subject: sub", "authorization: sub"),
                "clients[0].headers.authorization",
            ),
            (
                with("grpc: 127.0.0.1:9001", "grpc: localhost:http"),
                "listen.grpc",
            ),
            (
                with("name: health", "name: api"),
                "rules[4].name: duplicate rule name",
            ),
            (
                with("{ path: /healthz }", "{ path: /healthz, prefix: /x }"),
                "rules[0].match: must have exactly one",
            ),
            (
                with("default: authenticated", "default: allow"),
                "default: must be",
            ),
            (with("auth: optional", "auth: maybe"), "rules[3].auth"),
            (
                with("{ all_of: [names_editor] }", "{ all_of: [] }"),
                "rules[1].roles.all_of",
            ),
            (
                with("methods: [post, PUT]", "methods: [\"GE T\"]"),
                "rules[1].match.methods",
            ),
            (
                with("hosts: [api.example.org", "hosts: [\"api.exa mple.org\""),
                "rules[2].match.hosts",
            ),
            (
                with(
                    "issuer: https://sso.example.org/auth/realms/standard\n    audiences: [core",
                    "issuer: http://sso.example.org/realm\n    audiences: [core",
                ),
                "clients[0].issuer: `http://sso.example.org/realm` must use https",
            ),
            (
                with("jwks_uri: https://", "jwks_uri: ftp://"),
                "clients[1].jwks_uri",
            ),
            (with("max_bytes: 8192", "max_bytes: 0"), "token.max_bytes"),
            (
                with("{ cookie: oidc-jwt }", "{ cookie: a, header: b }"),
                "token.sources[1]",
            ),
            (
                with("auth: none", "auth: none, roles: { any_of: [x] }"),
                "rules[0].auth: roles",
            ),
            (
                with(
                    "claims: { email_verified: true",
                    "claims: { email_verified: {a: 1}",
                ),
                "rules[2].claims.email_verified",
            ),
            (
                with("refresh_interval: 5m", "refresh_interval: 1s"),
                "jwks.refresh_interval: must not be shorter",
            ),
            (
                with(
                    "issuer: https://sso.example.org/auth/realms/standard\n    audiences: [core",
                    "issuer: ${NOPE}\n    audiences: [core",
                ),
                "clients[0].issuer: environment variable NOPE is not set",
            ),
        ];
        for (text, want) in cases {
            let errs = errors(&text);
            assert!(
                errs.iter().any(|e| e.contains(want)),
                "want {want:?} in {errs:?}"
            );
        }
    }

    #[test]
    fn listen_http_is_optional_and_validated() {
        let c = parse_with_env(GOOD, &|_| None).unwrap();
        assert_eq!(c.listen.http, None);
        let listen = "listen: { grpc: 127.0.0.1:9001, admin: 127.0.0.1:9002 }";
        let c = parse_with_env(
            &with(
                listen,
                "listen: { grpc: 127.0.0.1:9001, admin: 127.0.0.1:9002, http: 127.0.0.1:9004 }",
            ),
            &|_| None,
        )
        .unwrap();
        assert_eq!(c.listen.http, Some("127.0.0.1:9004".parse().unwrap()));
        for http in ["nope", "127.0.0.1:9001", "127.0.0.1:9002"] {
            let errs = errors(&with(
                listen,
                &format!("listen: {{ grpc: 127.0.0.1:9001, admin: 127.0.0.1:9002, http: {http} }}"),
            ));
            assert!(
                errs.iter().any(|e| e.contains("listen.http")),
                "{http}: {errs:?}"
            );
        }
    }

    #[test]
    fn listen_limits_have_defaults_and_are_validated() {
        let c = parse_with_env(GOOD, &|_| None).unwrap();
        assert_eq!(c.listen.limits, ListenLimits::default());
        let listen = "listen: { grpc: 127.0.0.1:9001, admin: 127.0.0.1:9002 }";
        let c = parse_with_env(
            &with(
                listen,
                "listen: { grpc: 127.0.0.1:9001, admin: 127.0.0.1:9002, max_connections: 10, max_concurrent_streams: 20, max_request_bytes: 32KiB, header_read_timeout: 2s }",
            ),
            &|_| None,
        )
        .unwrap();
        assert_eq!(
            c.listen.limits,
            ListenLimits {
                max_connections: 10,
                max_concurrent_streams: 20,
                max_request_bytes: 32 * 1024,
                header_read_timeout: Duration::from_secs(2),
            }
        );
        for (extra, field) in [
            ("max_connections: 0", "listen.max_connections"),
            ("max_concurrent_streams: 0", "listen.max_concurrent_streams"),
            ("max_request_bytes: 1KiB", "listen.max_request_bytes"),
            ("max_request_bytes: 1GiB", "listen.max_request_bytes"),
            ("max_request_bytes: lots", "listen.max_request_bytes"),
            ("header_read_timeout: 1ms", "listen.header_read_timeout"),
            ("header_read_timeout: 1h", "listen.header_read_timeout"),
        ] {
            let text = with(
                listen,
                &format!("listen: {{ grpc: 127.0.0.1:9001, admin: 127.0.0.1:9002, {extra} }}"),
            );
            let errs = errors(&text);
            assert!(
                errs.iter().any(|e| e.starts_with(field)),
                "{extra}: {errs:?}"
            );
        }
    }

    #[test]
    fn all_errors_are_reported_at_once() {
        let text = with("audiences: [bcmi-1234]", "audiences: []")
            .replace("default: authenticated", "default: x");
        assert!(errors(&text).len() >= 2);
    }

    #[test]
    fn env_expansion() {
        let env = |k: &str| (k == "AUD").then(|| "from-env".to_string());
        let text = with("audiences: [bcmi-1234]", "audiences: [\"${AUD}\"]");
        let c = parse_with_env(&text, &env).unwrap();
        assert_eq!(c.clients[1].audiences, vec!["from-env"]);
        assert_eq!(expand_env("a$${b}c$d", &env).unwrap(), "a${b}c$d");
        assert!(expand_env("${AUD", &env).is_err());
        assert!(expand_env("${1X}", &env).is_err());
    }

    #[test]
    fn printed_configs_never_show_a_literal_secret() {
        let text = "a:\n  client_secret: hunter2\n  x: {client_id: a, client_secret: \"p@ss, word\"}\n  y: {client_secret: '${SECRET}'}\n  client_secret: ${ALSO_OK}\n";
        let out = redact_secrets(text);
        assert!(!out.contains("hunter2") && !out.contains("p@ss"), "{out}");
        assert!(
            out.contains("${SECRET}") && out.contains("${ALSO_OK}"),
            "{out}"
        );
        assert_eq!(out.matches("<redacted>").count(), 2, "{out}");
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("250ms").unwrap(), Duration::from_millis(250));
        assert_eq!(parse_duration("1h30m").unwrap(), Duration::from_secs(5400));
        assert_eq!(parse_duration("2d").unwrap(), Duration::from_secs(172800));
        for bad in ["", "5", "m", "5x", "-1s", "1.5s", "99999999999999999999s"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
    }
}
