//! One config generation, ready to serve: the validated [`Config`] plus, per client, its shared
//! [`KeySet`], an issuer index for routing, and the list of spoofable header names.
//!
//! Built once per (re)load and swapped atomically by the server; the Check path only reads it.

use std::collections::HashMap;
use std::sync::Arc;

use crate::config::{ClientConfig, Config, ConfigError, ConfigErrors, KeySource};
use crate::outside::jwks::{KeyRegistry, KeySet};

/// The header naming the routed client, always set (or removed) by us.
pub const CLIENT_HEADER: &str = "x-authz-client";

#[derive(Debug)]
pub struct Client {
    pub cfg: ClientConfig,
    pub key_set: Arc<KeySet>,
    /// RFC 7662 introspection, when the client configures it.
    pub introspector: Option<Arc<crate::outside::introspect::Introspector>>,
}

#[derive(Debug)]
pub struct Snapshot {
    pub generation: u64,
    pub config: Config,
    pub clients: Vec<Client>,
    by_issuer: HashMap<String, Vec<usize>>,
    /// Every claim-header name of every client, plus `x-authz-client`, sorted and unique.
    pub spoofable: Vec<String>,
    /// The client that accepts opaque (non-JWT) tokens through introspection, if any.
    pub opaque_client: Option<usize>,
}

impl Snapshot {
    /// Attach key sets (shared per source through `registry`) to a validated config.
    /// `jwks_file` key sets are read here; a bad file is a config error naming the client.
    pub fn build(
        config: Config,
        registry: &KeyRegistry,
        generation: u64,
    ) -> Result<Snapshot, ConfigErrors> {
        let mut errors = Vec::new();
        let mut clients = Vec::with_capacity(config.clients.len());
        for (i, c) in config.clients.iter().enumerate() {
            match registry.key_set(&c.keys, &config.jwks) {
                Ok(ks) => clients.push(Client {
                    cfg: c.clone(),
                    key_set: ks,
                    introspector: c.introspection.clone().map(|ic| {
                        Arc::new(crate::outside::introspect::Introspector::new(
                            ic,
                            &c.issuer,
                            registry.fetcher(),
                        ))
                    }),
                }),
                Err(e) => errors.push(ConfigError {
                    field: format!(
                        "clients[{i}].{}",
                        if matches!(c.keys, KeySource::File(_)) {
                            "jwks_file"
                        } else {
                            "keys"
                        }
                    ),
                    message: e.to_string(),
                }),
            }
        }
        if !errors.is_empty() {
            return Err(ConfigErrors(errors));
        }
        let mut by_issuer: HashMap<String, Vec<usize>> = HashMap::new();
        for (i, c) in clients.iter().enumerate() {
            by_issuer.entry(c.cfg.issuer.clone()).or_default().push(i);
        }
        let mut spoofable: Vec<String> = clients
            .iter()
            .flat_map(|c| c.cfg.headers.iter().map(|(h, _)| h.clone()))
            .collect();
        spoofable.push(CLIENT_HEADER.to_owned());
        spoofable.sort();
        spoofable.dedup();
        let opaque_client = clients
            .iter()
            .position(|c| c.introspector.as_ref().is_some_and(|i| i.config().opaque));
        Ok(Snapshot {
            generation,
            config,
            clients,
            by_issuer,
            spoofable,
            opaque_client,
        })
    }

    /// Clients whose issuer equals `iss` exactly.
    pub fn clients_for_issuer(&self, iss: &str) -> &[usize] {
        self.by_issuer.get(iss).map(Vec::as_slice).unwrap_or(&[])
    }

    /// Each distinct key set once.
    pub fn key_sets(&self) -> Vec<Arc<KeySet>> {
        let mut out: Vec<Arc<KeySet>> = Vec::new();
        for c in &self.clients {
            if !out.iter().any(|k| Arc::ptr_eq(k, &c.key_set)) {
                out.push(c.key_set.clone());
            }
        }
        out
    }

    /// Key sets that have never loaded (readiness is earned: empty means ready).
    pub fn not_loaded(&self) -> Vec<String> {
        self.key_sets()
            .iter()
            .filter(|k| !k.state().loaded())
            .map(|k| k.id.clone())
            .collect()
    }
}
