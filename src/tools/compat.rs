//! flask-jwt-oidc compatibility mode: a config derived from the `JWT_OIDC_*` environment.
//!
//! Owns the mapping from the Python library's settings (and the multi-audience fork's suffixed
//! sets `JWT_OIDC_WELL_KNOWN_CONFIG_<NAME>` + `JWT_OIDC_AUDIENCE_<NAME>`) to oidc-authz's schema.
//! It produces YAML *text*, which then goes through [`config::parse_with_env`] like any file:
//! the derived config is validated exactly like a file, and `check-config --print` shows the
//! user that file to keep and edit. Validation errors name the variable they came from.
//!
//! Pure: the environment comes in as a lookup function plus the list of variable names (tests
//! never touch the process environment); only [`Source`] reads the real one. The client secret
//! is read only to note that it was set: its value never enters the YAML, a note, an error or a
//! log line, and is stored nowhere.

use std::collections::BTreeSet;
use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use serde::Serialize;

use crate::config::{self, Config, ConfigError, ConfigErrors};

/// What the discovery URL must end with: oidc-authz derives the issuer by cutting it off.
pub const WELL_KNOWN_SUFFIX: &str = "/.well-known/openid-configuration";
/// Name of the client built from the unsuffixed variables.
pub const DEFAULT_CLIENT: &str = "default";
/// Claim path of the roles when `JWT_OIDC_ROLES_CLAIM` is not set (Keycloak realm roles).
pub const DEFAULT_ROLES_CLAIM: &str = "realm_access.roles";
/// flask-jwt-oidc's default `JWT_OIDC_ALGORITHMS`.
pub const DEFAULT_ALGORITHMS: &str = "RS256";
/// Listen addresses in compatibility mode (there is no file to hold them).
pub const GRPC_ADDR_VAR: &str = "OIDC_AUTHZ_GRPC_ADDR";
pub const ADMIN_ADDR_VAR: &str = "OIDC_AUTHZ_ADMIN_ADDR";
const DEFAULT_GRPC: &str = "0.0.0.0:9001";
const DEFAULT_ADMIN: &str = "0.0.0.0:9002";

const PREFIX: &str = "JWT_OIDC_";

// Per-client settings: `JWT_OIDC_<KEY>` for the default client, `JWT_OIDC_<KEY>_<NAME>` for more.
const WELL_KNOWN: &str = "WELL_KNOWN_CONFIG";
const AUDIENCE: &str = "AUDIENCE";
const ALGORITHMS: &str = "ALGORITHMS";
const JWKS_URI: &str = "JWKS_URI";
const ISSUER: &str = "ISSUER";
const ROLES_CLAIM: &str = "ROLES_CLAIM";
const CLIENT_SECRET: &str = "CLIENT_SECRET";
const PER_CLIENT: [&str; 7] = [
    WELL_KNOWN,
    AUDIENCE,
    ALGORITHMS,
    JWKS_URI,
    ISSUER,
    ROLES_CLAIM,
    CLIENT_SECRET,
];
/// Unsuffixed settings that define the default client (the others are only defaults for all).
const DEFINES_DEFAULT: [&str; 4] = [WELL_KNOWN, AUDIENCE, JWKS_URI, ISSUER];

// Settings shared by every client.
const JWKS_CACHE_TIMEOUT: &str = "JWT_OIDC_JWKS_CACHE_TIMEOUT";
const AUTH_COOKIE_NAME: &str = "JWT_OIDC_AUTH_COOKIE_NAME";
const PUBLIC_PATHS: &str = "JWT_OIDC_PUBLIC_PATHS";
const CACHING_ENABLED: &str = "JWT_OIDC_CACHING_ENABLED";
const GLOBAL: [&str; 4] = [
    JWKS_CACHE_TIMEOUT,
    AUTH_COOKIE_NAME,
    PUBLIC_PATHS,
    CACHING_ENABLED,
];

/// The rule every non-public path falls to: a valid token of any client (`@requires_auth`).
pub const REQUIRES_AUTH_RULE: &str = "requires-auth";

/// A config derived from the environment.
#[derive(Debug, Clone)]
pub struct Derived {
    /// The equivalent config file: what is validated and what `check-config --print` prints.
    /// Holds no secret (a set client secret appears only as `<redacted>` in a comment).
    pub yaml: String,
    /// Settings accepted but not carried over, or whose meaning changed; shown as warnings.
    /// Names variables, never their values.
    pub notes: Vec<String>,
}

/// Is compatibility mode asked for: is `JWT_OIDC_WELL_KNOWN_CONFIG` or `JWT_OIDC_JWKS_URI`
/// (or a suffixed one of them) set to something non-empty?
pub fn wanted(env: &dyn Fn(&str) -> Option<String>, names: &[String]) -> bool {
    names.iter().any(|n| {
        let Some(rest) = n.strip_prefix(PREFIX) else {
            return false;
        };
        matches!(split_per_client(rest), Some((WELL_KNOWN | JWKS_URI, _)))
            && value(env, n).is_some()
    })
}

/// Derive the config YAML from `env` (a lookup) and `names` (every variable name set).
pub fn derive(
    env: &dyn Fn(&str) -> Option<String>,
    names: &[String],
) -> Result<Derived, ConfigErrors> {
    Builder::new(env).build(names).map(|(derived, _)| derived)
}

/// Derive the config and validate it exactly as a file would be: through
/// [`config::parse_with_env`]. Validation errors name the variable they came from
/// (`JWT_OIDC_ALGORITHMS (clients[0].algorithms): ...`).
pub fn load(
    env: &dyn Fn(&str) -> Option<String>,
    names: &[String],
) -> Result<(Config, Derived), ConfigErrors> {
    let (derived, origins) = Builder::new(env).build(names)?;
    match config::parse_with_env(&derived.yaml, env) {
        Ok(c) => Ok((c, derived)),
        Err(errs) => Err(ConfigErrors(
            errs.0.into_iter().map(|e| origins.name(e)).collect(),
        )),
    }
}

/// A non-empty, trimmed value (flask-jwt-oidc treats an empty setting as unset).
fn value(env: &dyn Fn(&str) -> Option<String>, name: &str) -> Option<String> {
    env(name)
        .map(|v| v.trim().to_owned())
        .filter(|v| !v.is_empty())
}

/// `WELL_KNOWN_CONFIG` → (key, None); `WELL_KNOWN_CONFIG_BCMI` → (key, Some("BCMI")).
fn split_per_client(rest: &str) -> Option<(&'static str, Option<&str>)> {
    PER_CLIENT.iter().find_map(|&key| {
        if rest == key {
            Some((key, None))
        } else {
            rest.strip_prefix(key)
                .and_then(|r| r.strip_prefix('_'))
                .filter(|s| !s.is_empty())
                .map(|s| (key, Some(s)))
        }
    })
}

fn var(key: &str, suffix: Option<&str>) -> String {
    match suffix {
        None => format!("{PREFIX}{key}"),
        Some(s) => format!("{PREFIX}{key}_{s}"),
    }
}

/// Values land in fields the config expands `${VAR}` in: keep a literal `${` literal.
fn escape(s: &str) -> String {
    s.replace("${", "$${")
}

/// `300` → `5m`, `90` → `90s`, `7200` → `2h` (the config's duration syntax).
fn fmt_duration(d: Duration) -> String {
    let s = d.as_secs();
    if d.subsec_nanos() != 0 {
        format!("{}ms", d.as_millis())
    } else if s != 0 && s.is_multiple_of(3600) {
        format!("{}h", s / 3600)
    } else if s != 0 && s.is_multiple_of(60) {
        format!("{}m", s / 60)
    } else {
        format!("{s}s")
    }
}

// ---------------------------------------------------------------------------------------------
// The YAML written out: field names and order as in DESIGN §3 / `config`'s raw schema.

#[derive(Serialize)]
struct YConfig {
    listen: YListen,
    token: YToken,
    jwks: YJwks,
    clients: Vec<YClient>,
    rules: Vec<YRule>,
    default: &'static str,
}

#[derive(Serialize)]
struct YListen {
    grpc: String,
    admin: String,
}

#[derive(Serialize)]
struct YToken {
    sources: Vec<YSource>,
}

#[derive(Serialize)]
struct YSource {
    #[serde(skip_serializing_if = "Option::is_none")]
    header: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    cookie: Option<String>,
}

#[derive(Serialize)]
struct YJwks {
    refresh_interval: String,
    min_refresh_interval: String,
    max_stale: String,
    timeout: String,
}

#[derive(Serialize)]
struct YClient {
    name: String,
    issuer: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    jwks_uri: Option<String>,
    audiences: Vec<String>,
    algorithms: Vec<String>,
    roles: Vec<String>,
    /// Ordered (subject, email, username, roles), hence a YAML mapping rather than a BTreeMap.
    headers: serde_yaml::Mapping,
}

#[derive(Serialize)]
struct YRule {
    name: String,
    #[serde(rename = "match")]
    matcher: YMatch,
    #[serde(skip_serializing_if = "Option::is_none")]
    auth: Option<&'static str>,
}

#[derive(Serialize)]
struct YMatch {
    prefix: String,
}

// ---------------------------------------------------------------------------------------------

/// Which variable each config field came from, to name it in validation errors.
#[derive(Debug, Default)]
struct Origins(Vec<(String, String)>);

impl Origins {
    fn add(&mut self, field: impl Into<String>, var: impl Into<String>) {
        self.0.push((field.into(), var.into()));
    }

    /// `clients[1].algorithms: …` → `JWT_OIDC_ALGORITHMS_BCMI (clients[1].algorithms): …`.
    fn name(&self, mut e: ConfigError) -> ConfigError {
        let best = self
            .0
            .iter()
            .filter(|(f, _)| {
                e.field == *f
                    || e.field
                        .strip_prefix(f.as_str())
                        .is_some_and(|r| r.starts_with('.') || r.starts_with('['))
            })
            .max_by_key(|(f, _)| f.len());
        if let Some((_, v)) = best {
            e.field = format!("{v} ({})", e.field);
        }
        e
    }
}

struct Builder<'e> {
    env: &'e dyn Fn(&str) -> Option<String>,
    errors: Vec<ConfigError>,
    notes: Vec<String>,
    origins: Origins,
    /// Names of the client-secret variables that are set (their values are never read further).
    secrets: Vec<String>,
}

impl<'e> Builder<'e> {
    fn new(env: &'e dyn Fn(&str) -> Option<String>) -> Self {
        Builder {
            env,
            errors: Vec::new(),
            notes: Vec::new(),
            origins: Origins::default(),
            secrets: Vec::new(),
        }
    }

    fn get(&self, name: &str) -> Option<String> {
        value(self.env, name)
    }

    fn err(&mut self, field: impl Into<String>, message: impl Into<String>) {
        self.errors.push(ConfigError {
            field: field.into(),
            message: message.into(),
        });
    }

    fn build(mut self, names: &[String]) -> Result<(Derived, Origins), ConfigErrors> {
        let names: BTreeSet<&str> = names.iter().map(String::as_str).collect();
        let mut has_default = false;
        let mut suffixes = BTreeSet::new();
        for &name in &names {
            let Some(rest) = name.strip_prefix(PREFIX) else {
                continue;
            };
            if self.get(name).is_none() || GLOBAL.contains(&name) {
                continue;
            }
            match split_per_client(rest) {
                Some((key, None)) => has_default |= DEFINES_DEFAULT.contains(&key),
                Some((_, Some(suffix))) => {
                    suffixes.insert(suffix);
                }
                None => self.notes.push(format!(
                    "{name} is not a flask-jwt-oidc setting oidc-authz understands; it is ignored"
                )),
            }
        }
        if self.get(CACHING_ENABLED).is_some() {
            self.notes.push(format!(
                "{CACHING_ENABLED} is not needed: oidc-authz always caches the keys and refreshes them every jwks.refresh_interval ({JWKS_CACHE_TIMEOUT})"
            ));
        }

        let mut sets: Vec<Option<&str>> = Vec::new();
        if has_default {
            sets.push(None);
        }
        sets.extend(suffixes.iter().map(|s| Some(*s)));
        if sets.is_empty() {
            self.err(
                var(WELL_KNOWN, None),
                format!(
                    "must be set ({{issuer}}{WELL_KNOWN_SUFFIX}), or {} and {}, together with {}",
                    var(JWKS_URI, None),
                    var(ISSUER, None),
                    var(AUDIENCE, None)
                ),
            );
        }
        let clients: Vec<YClient> = sets
            .iter()
            .enumerate()
            .map(|(i, s)| self.client(i, *s))
            .collect();
        // The default client's secret may be set without the default client (a stray setting).
        if !has_default && self.get(&var(CLIENT_SECRET, None)).is_some() {
            self.secrets.push(var(CLIENT_SECRET, None));
        }

        let token = self.token();
        let jwks = self.jwks();
        let listen = YListen {
            grpc: self.listen(GRPC_ADDR_VAR, "listen.grpc", DEFAULT_GRPC),
            admin: self.listen(ADMIN_ADDR_VAR, "listen.admin", DEFAULT_ADMIN),
        };
        let rules = self.rules();

        if !self.errors.is_empty() {
            return Err(ConfigErrors(self.errors));
        }
        let body = serde_yaml::to_string(&YConfig {
            listen,
            token,
            jwks,
            clients,
            rules,
            default: "deny",
        })
        .map_err(|e| {
            ConfigErrors(vec![ConfigError {
                field: "config".into(),
                message: format!("cannot write the derived YAML: {e}"),
            }])
        })?;
        let mut yaml = String::from(
            "# oidc-authz config derived from flask-jwt-oidc environment variables\n\
             # (`oidc-authz check-config --print`). Keep it as a file, edit it, and run\n\
             # `oidc-authz serve --config FILE`: the JWT_OIDC_* variables are then not read.\n",
        );
        for s in &self.secrets {
            yaml.push_str(&format!(
                "# {s}: <redacted> (accepted, not used: verifying a token needs only the issuer's public keys)\n"
            ));
        }
        for n in &self.notes {
            yaml.push_str(&format!("# note: {n}\n"));
        }
        yaml.push_str(&body);
        Ok((
            Derived {
                yaml,
                notes: self.notes,
            },
            self.origins,
        ))
    }

    fn client(&mut self, i: usize, suffix: Option<&str>) -> YClient {
        let v = |key: &str| var(key, suffix);
        let f = |k: &str| format!("clients[{i}].{k}");
        let name = match suffix {
            None => DEFAULT_CLIENT.to_owned(),
            Some(s) => s.to_ascii_lowercase().replace('_', "-"),
        };
        self.origins.add(
            f("name"),
            match suffix {
                None => format!("{PREFIX}*"),
                Some(s) => format!("{PREFIX}*_{s}"),
            },
        );

        let well_known = self.get(&v(WELL_KNOWN));
        let jwks_uri = self.get(&v(JWKS_URI));
        let issuer = self.get(&v(ISSUER));
        let (issuer, jwks_uri) = match (well_known, jwks_uri, issuer) {
            (Some(wk), uri, iss) => {
                let base = match wk.strip_suffix(WELL_KNOWN_SUFFIX) {
                    Some(b) if !b.is_empty() => b.to_owned(),
                    _ => {
                        self.err(
                            v(WELL_KNOWN),
                            format!(
                                "`{wk}` must be {{issuer}}{WELL_KNOWN_SUFFIX} (the issuer is derived from it); for another discovery URL set {} and {} instead",
                                v(ISSUER),
                                v(JWKS_URI)
                            ),
                        );
                        String::new()
                    }
                };
                if uri.is_some() {
                    self.notes.push(format!(
                        "{} is ignored because {} is set (as flask-jwt-oidc does): the keys are found through discovery",
                        v(JWKS_URI),
                        v(WELL_KNOWN)
                    ));
                }
                // An issuer with a trailing slash (e.g. Auth0) cannot be derived from the
                // discovery URL: JWT_OIDC_ISSUER may then say it exactly.
                let issuer = match iss {
                    Some(i) if !base.is_empty() && i.trim_end_matches('/') == base => {
                        self.origins.add(f("issuer"), v(ISSUER));
                        i
                    }
                    Some(i) if !base.is_empty() => {
                        self.err(
                            v(ISSUER),
                            format!("`{i}` is not the issuer of {} (`{base}`)", v(WELL_KNOWN)),
                        );
                        base
                    }
                    _ => {
                        self.origins.add(f("issuer"), v(WELL_KNOWN));
                        base
                    }
                };
                (issuer, None)
            }
            (None, Some(uri), Some(iss)) => {
                self.origins.add(f("issuer"), v(ISSUER));
                self.origins.add(f("jwks_uri"), v(JWKS_URI));
                (iss, Some(escape(&uri)))
            }
            (None, Some(_), None) => {
                self.err(
                    v(ISSUER),
                    format!(
                        "must be set together with {} (or set {} instead of both)",
                        v(JWKS_URI),
                        v(WELL_KNOWN)
                    ),
                );
                (String::new(), None)
            }
            (None, None, _) => {
                self.err(
                    v(WELL_KNOWN),
                    format!(
                        "must be set for client `{name}` ({{issuer}}{WELL_KNOWN_SUFFIX}), or {} and {}",
                        v(JWKS_URI),
                        v(ISSUER)
                    ),
                );
                (String::new(), None)
            }
        };

        let audiences = match self.get(&v(AUDIENCE)) {
            Some(a) => {
                self.origins.add(f("audiences"), v(AUDIENCE));
                vec![escape(&a)]
            }
            None => {
                self.err(
                    v(AUDIENCE),
                    format!(
                        "must be set for client `{name}`: the client id that tokens carry in `aud`"
                    ),
                );
                Vec::new()
            }
        };

        // Suffixed sets fall back to the unsuffixed setting, then to the library's default.
        let (algorithms, alg_var) = self.inherited(ALGORITHMS, suffix, DEFAULT_ALGORITHMS);
        let algorithms: Vec<String> = algorithms
            .split(',')
            .map(|a| a.replace(' ', ""))
            .filter(|a| !a.is_empty())
            .collect();
        if let Some(av) = alg_var {
            self.origins.add(f("algorithms"), av);
        }
        let (roles_claim, roles_var) = self.inherited(ROLES_CLAIM, suffix, DEFAULT_ROLES_CLAIM);
        if let Some(rv) = roles_var {
            self.origins.add(f("roles"), rv.clone());
            self.origins.add(f("headers.x-auth-roles"), rv);
        }
        if self.get(&v(CLIENT_SECRET)).is_some() {
            self.secrets.push(v(CLIENT_SECRET));
        }

        let mut headers = serde_yaml::Mapping::new();
        for (h, claim) in [
            ("x-auth-subject", "sub"),
            ("x-auth-email", "email"),
            ("x-auth-username", "preferred_username"),
            ("x-auth-roles", roles_claim.as_str()),
        ] {
            headers.insert(h.into(), claim.into());
        }
        YClient {
            name,
            issuer: escape(&issuer),
            jwks_uri,
            audiences,
            algorithms,
            roles: vec![roles_claim.clone()],
            headers,
        }
    }

    /// The client's own setting, else the unsuffixed one, else `default`; with the variable used.
    fn inherited(
        &self,
        key: &str,
        suffix: Option<&str>,
        default: &str,
    ) -> (String, Option<String>) {
        let own = var(key, suffix);
        if let Some(x) = self.get(&own) {
            return (x, Some(own));
        }
        let shared = var(key, None);
        match self.get(&shared) {
            Some(x) => (x, Some(shared)),
            None => (default.to_owned(), None),
        }
    }

    fn token(&mut self) -> YToken {
        let mut sources = vec![YSource {
            header: Some("authorization".into()),
            cookie: None,
        }];
        if let Some(c) = self.get(AUTH_COOKIE_NAME) {
            self.origins.add("token.sources", AUTH_COOKIE_NAME);
            sources.push(YSource {
                header: None,
                cookie: Some(c),
            });
        }
        YToken { sources }
    }

    fn jwks(&mut self) -> YJwks {
        let d = config::JwksSettings::default();
        let refresh = match self.get(JWKS_CACHE_TIMEOUT) {
            None => d.refresh_interval,
            Some(t) => {
                self.origins.add("jwks", JWKS_CACHE_TIMEOUT);
                let parsed = t
                    .parse::<u64>()
                    .map(Duration::from_secs)
                    .or_else(|_| config::parse_duration(&t));
                match parsed {
                    Ok(x) => x,
                    Err(_) => {
                        self.err(
                            JWKS_CACHE_TIMEOUT,
                            format!("`{t}` is not a number of seconds"),
                        );
                        d.refresh_interval
                    }
                }
            }
        };
        YJwks {
            refresh_interval: fmt_duration(refresh),
            // The unknown-kid refetch cooldown must not exceed the refresh interval.
            min_refresh_interval: fmt_duration(d.min_refresh_interval.min(refresh)),
            max_stale: fmt_duration(d.max_stale.max(refresh)),
            timeout: fmt_duration(d.timeout),
        }
    }

    fn listen(&mut self, name: &str, field: &str, default: &str) -> String {
        match self.get(name) {
            Some(a) => {
                self.origins.add(field, name);
                escape(&a)
            }
            None => default.to_owned(),
        }
    }

    fn rules(&mut self) -> Vec<YRule> {
        let mut rules = Vec::new();
        if let Some(paths) = self.get(PUBLIC_PATHS) {
            for p in paths.split(',').map(str::trim).filter(|p| !p.is_empty()) {
                self.origins
                    .add(format!("rules[{}]", rules.len()), PUBLIC_PATHS);
                rules.push(YRule {
                    name: format!("public-{}", rules.len() + 1),
                    matcher: YMatch {
                        prefix: p.to_owned(),
                    },
                    auth: Some("none"),
                });
            }
        }
        rules.push(YRule {
            name: REQUIRES_AUTH_RULE.into(),
            matcher: YMatch { prefix: "/".into() },
            auth: None,
        });
        rules
    }
}

// ---------------------------------------------------------------------------------------------

/// Where `serve` and `check-config` take their config from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// `--config FILE` / `OIDC_AUTHZ_CONFIG`.
    File(PathBuf),
    /// Compatibility mode: derived from the process's `JWT_OIDC_*` variables.
    Environment,
}

/// A validated config with the YAML it came from.
#[derive(Debug, Clone)]
pub struct Loaded {
    pub config: Config,
    /// The file's text, or the derived YAML: what `check-config --print` prints. A file is
    /// printed as written, so `${VAR}` references (secrets) stay unexpanded.
    pub yaml: String,
    /// Warnings to show (compatibility notes; `JWT_OIDC_*` set but overridden by a file).
    pub notes: Vec<String>,
}

/// The process environment as the pure functions above take it.
fn process_env() -> (Vec<String>, impl Fn(&str) -> Option<String>) {
    let names = std::env::vars_os()
        .filter_map(|(k, _)| k.into_string().ok())
        .collect();
    (names, |k: &str| std::env::var(k).ok())
}

impl Source {
    /// `--config` when given; else compatibility mode when `JWT_OIDC_WELL_KNOWN_CONFIG` or
    /// `JWT_OIDC_JWKS_URI` is set; else an error message for the user.
    pub fn choose(config: Option<PathBuf>) -> Result<Source, String> {
        if let Some(p) = config {
            return Ok(Source::File(p));
        }
        let (names, env) = process_env();
        if wanted(&env, &names) {
            Ok(Source::Environment)
        } else {
            Err(format!(
                "no config: pass --config FILE (or set OIDC_AUTHZ_CONFIG), or set {PREFIX}{WELL_KNOWN} (or {PREFIX}{JWKS_URI} + {PREFIX}{ISSUER}) and {PREFIX}{AUDIENCE} to derive one from flask-jwt-oidc's settings"
            ))
        }
    }

    /// Read and validate.
    pub fn load(&self) -> Result<Loaded, ConfigErrors> {
        let (names, env) = process_env();
        match self {
            Source::File(path) => {
                let text = crate::outside::files::read_blocking(path)
                    .map_err(|e| e.to_string())
                    .and_then(|b| {
                        String::from_utf8(b).map_err(|_| format!("{}: not UTF-8", path.display()))
                    })
                    .map_err(|e| {
                        ConfigErrors(vec![ConfigError {
                            field: "config".into(),
                            message: format!("cannot read {e}"),
                        }])
                    })?;
                let config = config::parse_with_env(&text, &env)?;
                let mut notes = Vec::new();
                if wanted(&env, &names) {
                    notes.push(format!(
                        "{PREFIX}* variables are set but not used: the config file {} takes precedence",
                        path.display()
                    ));
                }
                Ok(Loaded {
                    config,
                    yaml: text,
                    notes,
                })
            }
            Source::Environment => {
                let (config, derived) = load(&env, &names)?;
                Ok(Loaded {
                    config,
                    yaml: derived.yaml,
                    notes: derived.notes,
                })
            }
        }
    }
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Source::File(p) => write!(f, "{}", p.display()),
            Source::Environment => f.write_str("environment (flask-jwt-oidc compatibility)"),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;
    use crate::core::token::TokenSource;
    use crate::keys::Alg;
    use crate::outside::jwks::KeySource;

    const ISS: &str = "https://sso.example.org/auth/realms/standard";

    fn env_of(pairs: &[(&str, &str)]) -> (HashMap<String, String>, Vec<String>) {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let names = map.keys().cloned().collect();
        (map, names)
    }

    fn run(pairs: &[(&str, &str)]) -> Result<(Config, Derived), Vec<String>> {
        let (map, names) = env_of(pairs);
        load(&|k| map.get(k).cloned(), &names)
            .map_err(|e| e.0.iter().map(ToString::to_string).collect())
    }

    fn ok(pairs: &[(&str, &str)]) -> (Config, Derived) {
        match run(pairs) {
            Ok(x) => x,
            Err(e) => panic!("{e:?}"),
        }
    }

    fn err(pairs: &[(&str, &str)], want: &str) {
        match run(pairs) {
            Ok((_, d)) => panic!("want error {want:?}, got\n{}", d.yaml),
            Err(e) => assert!(e.iter().any(|x| x.contains(want)), "want {want:?} in {e:?}"),
        }
    }

    fn wk(iss: &str) -> String {
        format!("{iss}{WELL_KNOWN_SUFFIX}")
    }

    #[test]
    fn minimal_flask_settings() {
        let w = wk(ISS);
        let (c, d) = ok(&[
            ("JWT_OIDC_WELL_KNOWN_CONFIG", &w),
            ("JWT_OIDC_AUDIENCE", " example "),
        ]);
        assert_eq!(c.clients.len(), 1);
        let cl = &c.clients[0];
        assert_eq!(cl.name, "default");
        assert_eq!(cl.issuer, ISS);
        assert_eq!(cl.keys, KeySource::Discovery { issuer: ISS.into() });
        assert_eq!(cl.audiences, vec!["example"]);
        assert_eq!(cl.algorithms, vec![Alg::RS256]);
        assert_eq!(cl.roles, vec![DEFAULT_ROLES_CLAIM]);
        let h: HashMap<_, _> = cl.headers.iter().cloned().collect();
        assert_eq!(h["x-auth-subject"], "sub");
        assert_eq!(h["x-auth-email"], "email");
        assert_eq!(h["x-auth-username"], "preferred_username");
        assert_eq!(h["x-auth-roles"], "realm_access.roles");
        assert_eq!(
            c.token.sources,
            vec![TokenSource::Header("authorization".into())]
        );
        assert_eq!(c.listen.grpc.to_string(), "0.0.0.0:9001");
        assert_eq!(c.listen.admin.to_string(), "0.0.0.0:9002");
        assert_eq!(c.jwks, config::JwksSettings::default());
        assert_eq!(c.rules.len(), 1);
        assert_eq!(c.rules[0].name, REQUIRES_AUTH_RULE);
        assert!(c.rules[0].path.matches("/anything/at/all"));
        assert_eq!(c.rules[0].auth, crate::core::policy::AuthMode::Required);
        assert!(d.notes.is_empty(), "{:?}", d.notes);
    }

    #[test]
    fn every_setting_maps_and_the_printed_yaml_is_an_equivalent_file() {
        let w = wk(ISS);
        let pairs = [
            ("JWT_OIDC_WELL_KNOWN_CONFIG", w.as_str()),
            ("JWT_OIDC_AUDIENCE", "core-web-4414"),
            ("JWT_OIDC_ALGORITHMS", "RS256, ES256"),
            ("JWT_OIDC_CLIENT_SECRET", "s3cr3t-default"),
            ("JWT_OIDC_JWKS_CACHE_TIMEOUT", "60"),
            ("JWT_OIDC_AUTH_COOKIE_NAME", "custom-jwt-cookie"),
            ("JWT_OIDC_ROLES_CLAIM", "roles"),
            ("JWT_OIDC_PUBLIC_PATHS", "/api/public, /healthz,"),
            ("JWT_OIDC_WELL_KNOWN_CONFIG_BC_MI", w.as_str()),
            ("JWT_OIDC_AUDIENCE_BC_MI", "bcmi-1234"),
            ("JWT_OIDC_ROLES_CLAIM_BC_MI", "client_roles"),
            ("JWT_OIDC_CLIENT_SECRET_BC_MI", "s3cr3t-bcmi"),
            ("JWT_OIDC_JWKS_URI_OTHER", "https://other.example.org/certs"),
            ("JWT_OIDC_ISSUER_OTHER", "https://other.example.org"),
            ("JWT_OIDC_AUDIENCE_OTHER", "other-app"),
            ("JWT_OIDC_ALGORITHMS_OTHER", "ES384"),
            ("OIDC_AUTHZ_GRPC_ADDR", "127.0.0.1:7001"),
            ("OIDC_AUTHZ_ADMIN_ADDR", "127.0.0.1:7002"),
            ("UNRELATED", "x"),
        ];
        let (c, d) = ok(&pairs);
        let names: Vec<_> = c.clients.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(names, ["default", "bc-mi", "other"]);
        assert_eq!(c.clients[0].algorithms, vec![Alg::RS256, Alg::ES256]);
        // suffixed sets inherit the unsuffixed algorithms / roles claim unless they set their own
        assert_eq!(c.clients[1].algorithms, vec![Alg::RS256, Alg::ES256]);
        assert_eq!(c.clients[2].algorithms, vec![Alg::ES384]);
        assert_eq!(c.clients[0].roles, vec!["roles"]);
        assert_eq!(c.clients[1].roles, vec!["client_roles"]);
        assert_eq!(c.clients[2].roles, vec!["roles"]);
        assert_eq!(
            c.clients[2].keys,
            KeySource::Uri("https://other.example.org/certs".into())
        );
        assert_eq!(c.clients[2].issuer, "https://other.example.org");
        assert_eq!(
            c.token.sources,
            vec![
                TokenSource::Header("authorization".into()),
                TokenSource::Cookie("custom-jwt-cookie".into())
            ]
        );
        assert_eq!(c.jwks.refresh_interval, Duration::from_secs(60));
        assert!(c.jwks.min_refresh_interval <= c.jwks.refresh_interval);
        assert_eq!(c.listen.grpc.to_string(), "127.0.0.1:7001");
        let rules: Vec<_> = c.rules.iter().map(|r| (r.name.as_str(), r.auth)).collect();
        use crate::core::policy::AuthMode;
        assert_eq!(
            rules,
            [
                ("public-1", AuthMode::None),
                ("public-2", AuthMode::None),
                (REQUIRES_AUTH_RULE, AuthMode::Required)
            ]
        );
        assert!(c.rules[0].path.matches("/api/public/x"));
        assert!(!c.rules[0].path.matches("/api/publicity"));

        // secrets: never in the YAML, only named and redacted
        assert!(!d.yaml.contains("s3cr3t"), "{}", d.yaml);
        assert!(d.yaml.contains("# JWT_OIDC_CLIENT_SECRET: <redacted>"));
        assert!(
            d.yaml
                .contains("# JWT_OIDC_CLIENT_SECRET_BC_MI: <redacted>")
        );
        assert!(!d.notes.iter().any(|n| n.contains("s3cr3t")));

        // the printed YAML, read back as a file with an empty environment, is the same config
        let again = config::parse_with_env(&d.yaml, &|_| None).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(again.clients, c.clients);
        assert_eq!(again.token, c.token);
        assert_eq!(again.jwks, c.jwks);
        assert_eq!(again.listen, c.listen);
        assert_eq!(again.rules.len(), c.rules.len());
    }

    #[test]
    fn cache_timeout_keeps_the_refetch_cooldown_below_it() {
        let w = wk(ISS);
        let base = [
            ("JWT_OIDC_WELL_KNOWN_CONFIG", w.as_str()),
            ("JWT_OIDC_AUDIENCE", "a"),
        ];
        for (t, refresh, min) in [("5", 5, 5), ("300", 300, 15), ("10m", 600, 15)] {
            let mut p = base.to_vec();
            p.push(("JWT_OIDC_JWKS_CACHE_TIMEOUT", t));
            let (c, _) = ok(&p);
            assert_eq!(c.jwks.refresh_interval, Duration::from_secs(refresh), "{t}");
            assert_eq!(c.jwks.min_refresh_interval, Duration::from_secs(min), "{t}");
        }
        let (c, _) = ok(&[
            ("JWT_OIDC_WELL_KNOWN_CONFIG", w.as_str()),
            ("JWT_OIDC_AUDIENCE", "a"),
            ("JWT_OIDC_JWKS_CACHE_TIMEOUT", "86400"),
        ]);
        assert!(c.jwks.max_stale >= c.jwks.refresh_interval);
        let mut p = base.to_vec();
        p.push(("JWT_OIDC_JWKS_CACHE_TIMEOUT", "soon"));
        err(&p, "JWT_OIDC_JWKS_CACHE_TIMEOUT: `soon` is not a number");
        let mut p = base.to_vec();
        p.push(("JWT_OIDC_JWKS_CACHE_TIMEOUT", "0"));
        err(
            &p,
            "JWT_OIDC_JWKS_CACHE_TIMEOUT (jwks.refresh_interval): must be greater than zero",
        );
    }

    #[test]
    fn errors_name_the_variable() {
        let w = wk(ISS);
        let w = w.as_str();
        err(
            &[("JWT_OIDC_WELL_KNOWN_CONFIG", w)],
            "JWT_OIDC_AUDIENCE: must be set",
        );
        err(
            &[
                (
                    "JWT_OIDC_WELL_KNOWN_CONFIG",
                    "https://sso.example.org/oidc/config",
                ),
                ("JWT_OIDC_AUDIENCE", "a"),
            ],
            "JWT_OIDC_WELL_KNOWN_CONFIG: `https://sso.example.org/oidc/config` must be {issuer}/.well-known/openid-configuration",
        );
        err(
            &[
                ("JWT_OIDC_JWKS_URI", "https://sso.example.org/certs"),
                ("JWT_OIDC_AUDIENCE", "a"),
            ],
            "JWT_OIDC_ISSUER: must be set together with JWT_OIDC_JWKS_URI",
        );
        err(
            &[("JWT_OIDC_ISSUER", ISS), ("JWT_OIDC_AUDIENCE", "a")],
            "JWT_OIDC_WELL_KNOWN_CONFIG: must be set for client `default`",
        );
        err(
            &[
                ("JWT_OIDC_WELL_KNOWN_CONFIG", w),
                ("JWT_OIDC_ISSUER", "https://elsewhere.example.org"),
                ("JWT_OIDC_AUDIENCE", "a"),
            ],
            "JWT_OIDC_ISSUER: `https://elsewhere.example.org` is not the issuer of JWT_OIDC_WELL_KNOWN_CONFIG",
        );
        err(
            &[
                ("JWT_OIDC_WELL_KNOWN_CONFIG", w),
                ("JWT_OIDC_AUDIENCE", "a"),
                ("JWT_OIDC_ALGORITHMS", "RS256,HS256"),
            ],
            "JWT_OIDC_ALGORITHMS (clients[0].algorithms): `HS256`",
        );
        err(
            &[
                ("JWT_OIDC_WELL_KNOWN_CONFIG", w),
                ("JWT_OIDC_AUDIENCE", "a"),
                ("JWT_OIDC_AUDIENCE_X", "b"),
            ],
            "JWT_OIDC_WELL_KNOWN_CONFIG_X: must be set for client `x`",
        );
        err(
            &[
                ("JWT_OIDC_WELL_KNOWN_CONFIG", w),
                ("JWT_OIDC_AUDIENCE", "a"),
                ("JWT_OIDC_WELL_KNOWN_CONFIG_X", w),
                ("JWT_OIDC_AUDIENCE_X", "a"),
            ],
            "JWT_OIDC_AUDIENCE_X (clients[1].audiences): audience `a`",
        );
        err(
            &[
                ("JWT_OIDC_WELL_KNOWN_CONFIG", w),
                ("JWT_OIDC_AUDIENCE", "a"),
                ("JWT_OIDC_WELL_KNOWN_CONFIG_DEFAULT", w),
                ("JWT_OIDC_AUDIENCE_DEFAULT", "b"),
            ],
            "JWT_OIDC_*_DEFAULT (clients[1].name): duplicate client name",
        );
        err(
            &[
                ("JWT_OIDC_WELL_KNOWN_CONFIG", w),
                ("JWT_OIDC_AUDIENCE", "a"),
                ("JWT_OIDC_PUBLIC_PATHS", "/ok,api/public"),
            ],
            "JWT_OIDC_PUBLIC_PATHS (rules[1].match.prefix)",
        );
        err(
            &[
                ("JWT_OIDC_WELL_KNOWN_CONFIG", w),
                ("JWT_OIDC_AUDIENCE", "a"),
                ("JWT_OIDC_AUTH_COOKIE_NAME", "bad;name"),
            ],
            "JWT_OIDC_AUTH_COOKIE_NAME (token.sources[1])",
        );
        err(
            &[
                (
                    "JWT_OIDC_WELL_KNOWN_CONFIG",
                    "http://sso.example.org/r/.well-known/openid-configuration",
                ),
                ("JWT_OIDC_AUDIENCE", "a"),
            ],
            "JWT_OIDC_WELL_KNOWN_CONFIG (clients[0].issuer): `http://sso.example.org/r` must use https",
        );
        err(
            &[
                ("JWT_OIDC_WELL_KNOWN_CONFIG", w),
                ("JWT_OIDC_AUDIENCE", "a"),
                ("OIDC_AUTHZ_GRPC_ADDR", "localhost:http"),
            ],
            "OIDC_AUTHZ_GRPC_ADDR (listen.grpc)",
        );
        err(
            &[("UNRELATED", "x")],
            "JWT_OIDC_WELL_KNOWN_CONFIG: must be set",
        );
    }

    #[test]
    fn a_trailing_slash_issuer_can_be_given_exactly() {
        let w = wk("https://tenant.example.org");
        let (c, _) = ok(&[
            ("JWT_OIDC_WELL_KNOWN_CONFIG", &w),
            ("JWT_OIDC_ISSUER", "https://tenant.example.org/"),
            ("JWT_OIDC_AUDIENCE", "a"),
        ]);
        assert_eq!(c.clients[0].issuer, "https://tenant.example.org/");
    }

    #[test]
    fn values_are_literal_never_expanded() {
        let w = wk(ISS);
        let (c, d) = ok(&[
            ("JWT_OIDC_WELL_KNOWN_CONFIG", &w),
            ("JWT_OIDC_AUDIENCE", "app-${HOME}"),
            ("HOME", "/root"),
        ]);
        assert_eq!(c.clients[0].audiences, vec!["app-${HOME}"]);
        let again = config::parse_with_env(&d.yaml, &|_| None).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(again.clients, c.clients);
    }

    #[test]
    fn ignored_settings_are_noted_by_name_only() {
        let w = wk(ISS);
        let (_, d) = ok(&[
            ("JWT_OIDC_WELL_KNOWN_CONFIG", &w),
            ("JWT_OIDC_AUDIENCE", "a"),
            ("JWT_OIDC_JWKS_URI", "https://sso.example.org/certs"),
            ("JWT_OIDC_CACHING_ENABLED", "True"),
            (
                "JWT_OIDC_TEST_PRIVATE_KEY_PEM",
                "-----BEGIN PRIVATE KEY----- zzz",
            ),
            ("JWT_OIDC_EMPTY_IS_UNSET", ""),
        ]);
        let all = d.notes.join("\n");
        assert!(all.contains("JWT_OIDC_JWKS_URI is ignored because JWT_OIDC_WELL_KNOWN_CONFIG"));
        assert!(all.contains("JWT_OIDC_CACHING_ENABLED is not needed"));
        assert!(all.contains("JWT_OIDC_TEST_PRIVATE_KEY_PEM is not a flask-jwt-oidc setting"));
        assert!(!all.contains("EMPTY_IS_UNSET"));
        assert!(!all.contains("zzz") && !d.yaml.contains("zzz"));
        assert!(d.yaml.contains("# note: JWT_OIDC_CACHING_ENABLED"));
    }

    #[test]
    fn compat_mode_is_wanted_only_with_a_key_source() {
        let w = |pairs: &[(&str, &str)]| {
            let (map, names) = env_of(pairs);
            wanted(&|k| map.get(k).cloned(), &names)
        };
        assert!(w(&[("JWT_OIDC_WELL_KNOWN_CONFIG", "x")]));
        assert!(w(&[("JWT_OIDC_JWKS_URI", "x")]));
        assert!(w(&[("JWT_OIDC_WELL_KNOWN_CONFIG_BCMI", "x")]));
        assert!(!w(&[("JWT_OIDC_WELL_KNOWN_CONFIG", " ")]));
        assert!(!w(&[("JWT_OIDC_AUDIENCE", "a"), ("OTHER", "x")]));
        assert!(!w(&[]));
    }

    #[test]
    fn durations_print_in_config_syntax() {
        assert_eq!(fmt_duration(Duration::from_secs(300)), "5m");
        assert_eq!(fmt_duration(Duration::from_secs(90)), "90s");
        assert_eq!(fmt_duration(Duration::from_secs(7200)), "2h");
        assert_eq!(fmt_duration(Duration::ZERO), "0s");
        assert_eq!(fmt_duration(Duration::from_millis(1500)), "1500ms");
    }
}
