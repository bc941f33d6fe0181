//! The raw schema: exactly what the YAML may contain (DESIGN §3). Unknown keys are errors
//! (`deny_unknown_fields`). The one declaration of the file format: `config` reads it and
//! validates it into `core::model`; compat mode (`tools::compat`) builds it from JWT_OIDC_*
//! variables and writes it out (`check-config --print`), so both always agree on the format.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawConfig {
    #[serde(default)]
    pub(crate) listen: RawListen,
    #[serde(default)]
    pub(crate) token: RawToken,
    #[serde(default)]
    pub(crate) jwks: RawJwks,
    pub(crate) clients: Vec<RawClient>,
    #[serde(default)]
    pub(crate) rules: Vec<RawRule>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) default: Option<String>,
    #[serde(default, skip_serializing_if = "RawCache::is_unset")]
    pub(crate) cache: RawCache,
    #[serde(default)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) telemetry: Option<super::telemetry::RawTelemetry>,
}

#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawCache {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) max_entries: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) max_bytes: Option<RawBytes>,
}

impl RawCache {
    fn is_unset(&self) -> bool {
        self.max_entries.is_none() && self.max_bytes.is_none()
    }
}

/// A size: an integer number of bytes, or `64MiB`, `512KiB`, `1GiB`.
#[derive(Debug, Deserialize, Serialize)]
#[serde(untagged)]
pub(crate) enum RawBytes {
    Bytes(usize),
    Text(String),
}

#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawListen {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) grpc: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) admin: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) admin_grpc: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) http: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) max_connections: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) max_concurrent_streams: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) max_request_bytes: Option<RawBytes>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) header_read_timeout: Option<RawDuration>,
}

#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawToken {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) sources: Option<Vec<RawSource>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) max_bytes: Option<usize>,
}

#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawSource {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) header: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) cookie: Option<String>,
}

#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawJwks {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) refresh_interval: Option<RawDuration>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) min_refresh_interval: Option<RawDuration>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) max_stale: Option<RawDuration>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) timeout: Option<RawDuration>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) ca_file: Option<String>,
}

#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawClient {
    pub(crate) name: String,
    pub(crate) issuer: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) jwks_uri: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) jwks_file: Option<String>,
    pub(crate) audiences: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) authorized_parties: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) algorithms: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) leeway: Option<RawDuration>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) require_typ: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) roles: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) headers: Option<BTreeMap<String, String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) introspection: Option<RawIntrospection>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) binding: Option<super::binding::RawBinding>,
}

#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawIntrospection {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) endpoint: Option<String>,
    pub(crate) client_id: String,
    pub(crate) client_secret: String,
    #[serde(default)]
    pub(crate) opaque: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) check_jwts: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) cache_ttl: Option<RawDuration>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) timeout: Option<RawDuration>,
}

#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawRule {
    pub(crate) name: String,
    #[serde(rename = "match")]
    pub(crate) matcher: RawMatch,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) auth: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) roles: Option<RawAnyAll>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) scopes: Option<RawAnyAll>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) claims: Option<BTreeMap<String, serde_yaml::Value>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) clients: Option<Vec<String>>,
    /// `enforce` (default) or `audit` (DESIGN §11).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) mode: Option<String>,
}

#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawMatch {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) path: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) prefix: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) glob: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) regex: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) methods: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) hosts: Option<Vec<String>>,
}

#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawAnyAll {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) any_of: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) all_of: Option<Vec<String>>,
}

/// A duration written as `30s`, `5m`, `1h30m`, `250ms`, or a bare integer number of seconds.
#[derive(Debug, Deserialize, Serialize)]
#[serde(untagged)]
pub(crate) enum RawDuration {
    Text(String),
    Seconds(u64),
}
