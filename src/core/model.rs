//! The compiled configuration: plain data, built by `config` from YAML (after validation) and
//! read by everything else. No parsing and no I/O here; a value of these types is always valid.

use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use crate::core::token::TokenSource;
use crate::keys::Alg;
use crate::observe::spans::Sample;

/// A validated, compiled configuration.
#[derive(Debug, Clone)]
pub struct Config {
    pub listen: Listen,
    pub token: TokenConfig,
    pub jwks: JwksSettings,
    pub clients: Vec<ClientConfig>,
    /// In order (first match wins), indexed by first path segment.
    pub rules: crate::core::policy::Rules,
    pub default: DefaultAction,
    /// Verified-token cache limits.
    pub cache: crate::core::cache::CacheLimits,
    /// Traces (DESIGN §12); `None`: off. Read at start only (not reloaded).
    pub telemetry: Option<TelemetryConfig>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Listen {
    pub grpc: SocketAddr,
    pub admin: SocketAddr,
    /// The admin gRPC API (Explain, KeySets); loopback only.
    pub admin_grpc: SocketAddr,
    /// The HTTP authorization API (`/forward-auth`, `/ext-authz/…`, DESIGN §9); absent = off.
    pub http: Option<SocketAddr>,
    /// Transport limits of the gRPC Check port (docs/configuration.md, docs/security.md §10).
    pub limits: ListenLimits,
}

/// Hostile-input limits on the listeners. Worst-case buffered request memory on the Check port is
/// about `max_connections × max_concurrent_streams × 2 × max_request_bytes`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ListenLimits {
    /// Open connections on the gRPC port; more wait in the kernel backlog until one closes.
    pub max_connections: usize,
    /// HTTP/2 SETTINGS_MAX_CONCURRENT_STREAMS on the gRPC port.
    pub max_concurrent_streams: u32,
    /// The largest CheckRequest answered with a decision; up to twice this is denied with
    /// `request_too_large`, beyond that the transport refuses (gRPC OUT_OF_RANGE).
    pub max_request_bytes: usize,
    /// How long a new connection may take to send the HTTP/2 preface (gRPC) or a request head
    /// (admin) before it is closed.
    pub header_read_timeout: Duration,
}

impl Default for ListenLimits {
    fn default() -> Self {
        ListenLimits {
            max_connections: 1024,
            max_concurrent_streams: 100,
            max_request_bytes: 64 * 1024,
            header_read_timeout: Duration::from_secs(10),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenConfig {
    pub sources: Vec<TokenSource>,
    pub max_bytes: usize,
}

/// Defaults for every key set (DESIGN §5).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JwksSettings {
    pub refresh_interval: Duration,
    pub min_refresh_interval: Duration,
    pub max_stale: Duration,
    pub timeout: Duration,
    pub ca_file: Option<PathBuf>,
}

impl Default for JwksSettings {
    fn default() -> Self {
        JwksSettings {
            refresh_interval: Duration::from_secs(300),
            min_refresh_interval: Duration::from_secs(15),
            max_stale: Duration::from_secs(12 * 3600),
            timeout: Duration::from_secs(5),
            ca_file: None,
        }
    }
}

/// Where a client's keys come from.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum KeySource {
    /// `{issuer}/.well-known/openid-configuration` → `jwks_uri`.
    Discovery {
        issuer: String,
    },
    Uri(String),
    /// Static keys, read when the config is loaded.
    File(PathBuf),
}

impl KeySource {
    /// The key set's name in metrics, logs and the admin API (bounded by config). URLs are
    /// redacted: a `user:${PASSWORD}@` or a query secret never becomes a label.
    pub fn id(&self) -> String {
        match self {
            KeySource::Discovery { issuer } => crate::observe::redact(issuer),
            KeySource::Uri(u) => crate::observe::redact(u),
            KeySource::File(p) => format!("file:{}", p.display()),
        }
    }
}

/// A secret from the config: usable, never printed.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(s: String) -> Self {
        Secret(s)
    }
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

/// A client's `introspection` settings (RFC 7662).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IntrospectionConfig {
    /// None: from the issuer's discovery document.
    pub endpoint: Option<String>,
    pub client_id: String,
    pub client_secret: Secret,
    /// Accept opaque (non-JWT) tokens for this client.
    pub opaque: bool,
    /// Also ask about verified JWTs (revocation).
    pub check_jwts: bool,
    pub cache_ttl: Duration,
    pub timeout: Duration,
}

/// One OIDC client (one audience family) of one issuer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientConfig {
    pub name: String,
    pub issuer: String,
    pub keys: KeySource,
    pub audiences: Vec<String>,
    pub authorized_parties: Option<Vec<String>>,
    pub algorithms: Vec<Alg>,
    pub leeway: Duration,
    pub require_typ: Option<String>,
    /// Claim paths whose values are roles.
    pub roles: Vec<String>,
    /// (upstream header name, claim path), header names lower case.
    pub headers: Vec<(String, String)>,
    /// RFC 7662 introspection, if configured.
    pub introspection: Option<IntrospectionConfig>,
    /// Sender-constrained tokens (DESIGN §10); the defaults when `binding` is absent.
    pub binding: crate::core::binding::BindingConfig,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DefaultAction {
    /// No rule matched: 403 `no_matching_rule`.
    Deny,
    /// No rule matched: any valid token of any client passes.
    Authenticated,
}

pub const DEFAULT_MAX_BYTES: usize = 16 * 1024;

/// The validated `telemetry` section.
#[derive(Debug, Clone, PartialEq)]
pub struct TelemetryConfig {
    /// `http://host:port` of an OTLP/gRPC receiver (a collector).
    pub otlp_endpoint: String,
    pub service_name: String,
    pub sample: Sample,
}
