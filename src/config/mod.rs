//! The YAML configuration (DESIGN §3): parse strictly, validate everything, compile once.
//!
//! `load`/`parse` turn YAML text into a validated [`Config`] whose rules are already compiled
//! (matchers, regexes, header names). Every problem is reported, each as a [`ConfigError`] naming
//! the offending field (`clients[1].audiences`), so `check-config` can list them all at once.
//! The result is the plain-data [`crate::core::model`] (re-exported here). Sections with their
//! own file: `binding` (clients[].binding), `telemetry`, and [`units`] (sizes, durations).
//! This module never does network I/O; `jwks_file` contents are read later, by the snapshot
//! (`ops::state`). Layer 5: may import `core`, `outside` (URL validation, file reads), `observe`.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

// config imports neither `jwks` nor `introspect`: the types they need from the config live
// here, and URL rules come from `fetch` (one-way: config → fetch).
use crate::core::policy::{AuthMode, Condition, HostMatcher, PathMatcher, Rule, RuleMode};
use crate::core::token::TokenSource;
use crate::keys::Alg;

mod binding;
mod clients;
mod jwks;
mod listen;
mod rules;
pub(crate) mod schema;
mod telemetry;
mod token;
pub mod units;

use schema::*;

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
