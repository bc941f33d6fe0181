//! One config generation, ready to serve: the validated [`Config`] plus, per client, its shared
//! key set ([`KeyProvider`]), an issuer index for routing, and the list of spoofable header names.
//!
//! Built once per (re)load and swapped atomically by the server; the Check path only reads it.

use std::collections::HashMap;
use std::sync::Arc;

use crate::core::model::{ClientConfig, Config};
use crate::core::ports::{Introspect, KeyProvider};

/// The header naming the routed client, always set (or removed) by us.
pub const CLIENT_HEADER: &str = "x-authz-client";

#[derive(Debug)]
pub struct Client {
    pub cfg: ClientConfig,
    pub key_set: Arc<dyn KeyProvider>,
    /// RFC 7662 introspection, when the client configures it.
    pub introspector: Option<Arc<dyn Introspect>>,
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
    /// One generation from a validated config and its clients (key sets and introspectors
    /// attached by `ops::state`, in config order).
    pub fn new(config: Config, clients: Vec<Client>, generation: u64) -> Snapshot {
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
        Snapshot {
            generation,
            config,
            clients,
            by_issuer,
            spoofable,
            opaque_client,
        }
    }

    /// Clients whose issuer equals `iss` exactly.
    pub fn clients_for_issuer(&self, iss: &str) -> &[usize] {
        self.by_issuer.get(iss).map(Vec::as_slice).unwrap_or(&[])
    }

    /// Each distinct key set once.
    pub fn key_sets(&self) -> Vec<Arc<dyn KeyProvider>> {
        let mut out: Vec<Arc<dyn KeyProvider>> = Vec::new();
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
            .map(|k| k.id().to_owned())
            .collect()
    }
}
