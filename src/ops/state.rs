//! Process state shared by the gRPC service and the admin port: the current [`Snapshot`]
//! (swapped atomically on reload), the metrics, the key-set registry and the draining flag.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Instant;

use arc_swap::{ArcSwap, ArcSwapOption};

use crate::config::{Config, ConfigError, ConfigErrors, KeySource};
use crate::core::binding::ReplayMemory;
use crate::core::cache::TokenCache;
use crate::core::ports::{Introspect, KeyProvider};
use crate::core::snapshot::{Client, Snapshot};
use crate::observe::metrics::Metrics;
use crate::outside::introspect::Introspector;
use crate::outside::jwks::KeyRegistry;

/// At most this many DPoP proofs are remembered per replica (about 8 MiB at most). A proof is
/// kept for `max_age + leeway` (90 s by default), so this allows ~2,900 DPoP requests/s per
/// replica sustained; beyond that a proof is refused (`invalid_dpop_proof`, fail closed).
pub const REPLAY_CAPACITY: usize = 1 << 18;
const REPLAY_SHARDS: usize = 64;

pub struct ServerState {
    snapshot: ArcSwap<Snapshot>,
    /// Verified tokens; replaced only when a reload changes its limits.
    cache: ArcSwap<crate::core::cache::TokenCache>,
    pub metrics: Arc<Metrics>,
    pub registry: KeyRegistry,
    /// This replica's memory of recent DPoP proof `jti`s (DESIGN §10: per replica, bounded;
    /// kept across reloads so a reload does not reopen a replay window).
    pub replay: crate::core::binding::ReplayMemory,
    /// The `--shadow-config` candidate, if any (ops::shadow): decided beside the live config,
    /// never answered from.
    shadow: ArcSwapOption<Shadow>,
    draining: AtomicBool,
    generation: AtomicU64,
}

/// Readiness, as `/readyz` reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Readiness {
    pub ready: bool,
    pub draining: bool,
    /// Key sets that have never loaded.
    pub waiting_for: Vec<String>,
}

impl ServerState {
    /// Build the first snapshot. Must run inside a tokio runtime (key sets start their
    /// background refresh at once).
    pub fn new(config: Config, metrics: Arc<Metrics>) -> Result<Arc<Self>, ConfigErrors> {
        let registry =
            KeyRegistry::new(metrics.clone(), config.jwks.ca_file.as_deref()).map_err(|m| {
                ConfigErrors(vec![crate::config::ConfigError {
                    field: "jwks.ca_file".into(),
                    message: m,
                }])
            })?;
        let cache = crate::core::cache::TokenCache::new(config.cache);
        let snap = build_snapshot(config, &registry, 1)?;
        metrics.config_reload(true);
        Ok(Arc::new(ServerState {
            snapshot: ArcSwap::from_pointee(snap),
            cache: ArcSwap::from_pointee(cache),
            metrics,
            registry,
            replay: crate::core::binding::ReplayMemory::new(REPLAY_CAPACITY, REPLAY_SHARDS),
            shadow: ArcSwapOption::const_empty(),
            draining: AtomicBool::new(false),
            generation: AtomicU64::new(1),
        }))
    }

    /// The current snapshot (an `Arc`, so it may be held across an await).
    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.snapshot.load_full()
    }

    /// Validate-then-swap: on error the old snapshot keeps serving.
    pub fn reload(&self, config: Config) -> Result<u64, ConfigErrors> {
        let generation = self.generation.fetch_add(1, Ordering::AcqRel) + 1;
        let limits = config.cache;
        match build_snapshot(config, &self.registry, generation) {
            Ok(snap) => {
                if self.cache.load().limits() != limits {
                    self.cache
                        .store(Arc::new(crate::core::cache::TokenCache::new(limits)));
                }
                self.snapshot.store(Arc::new(snap));
                self.metrics.config_reload(true);
                Ok(generation)
            }
            Err(e) => {
                self.metrics.config_reload(false);
                Err(e)
            }
        }
    }

    /// Validate the candidate config and put it beside the live one (`--shadow-config`, and
    /// its reloads). It shares key sets with the live config where the source is the same.
    pub fn set_shadow(&self, config: Config) -> Result<u64, ConfigErrors> {
        let generation = self.generation.fetch_add(1, Ordering::AcqRel) + 1;
        let shadow = Shadow::build(config, &self.registry, generation)?;
        self.shadow.store(Some(Arc::new(shadow)));
        Ok(generation)
    }

    /// The shadow config, if one is set (one atomic load).
    pub fn shadow(&self) -> Option<Arc<Shadow>> {
        self.shadow.load_full()
    }

    /// The verified-token cache (an `Arc`, so it may be held across an await).
    pub fn cache(&self) -> Arc<crate::core::cache::TokenCache> {
        self.cache.load_full()
    }

    pub fn start_draining(&self) {
        self.draining.store(true, Ordering::Release);
    }

    pub fn readiness(&self) -> Readiness {
        let draining = self.draining.load(Ordering::Acquire);
        let waiting_for = self.snapshot().not_loaded();
        Readiness {
            ready: !draining && waiting_for.is_empty(),
            draining,
            waiting_for,
        }
    }
}

/// Attach key sets (shared per source through `registry`) and introspectors to a validated
/// config. `jwks_file` key sets are read here; a bad file is a config error naming the client.
pub fn build_snapshot(
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
                key_set: ks as Arc<dyn KeyProvider>,
                introspector: c.introspection.clone().map(|ic| {
                    Arc::new(Introspector::new(ic, &c.issuer, registry.fetcher()))
                        as Arc<dyn Introspect>
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
    Ok(Snapshot::new(config, clients, generation))
}

/// At most one disagreement line per this many milliseconds (the counter counts them all).
const LOG_EVERY_MS: u64 = 1000;

/// The `--shadow-config` candidate, ready to decide (`ops::shadow` decides with it).
pub struct Shadow {
    pub snapshot: Arc<Snapshot>,
    cache: TokenCache,
    replay: ReplayMemory,
    epoch: Instant,
    /// Milliseconds since `epoch` of the last line logged (`u64::MAX`: none yet).
    last_log_ms: AtomicU64,
    /// Disagreements not logged since the last line.
    suppressed: AtomicU64,
}

impl Shadow {
    /// Validate-and-build, key sets shared through `registry`.
    pub fn build(
        config: Config,
        registry: &KeyRegistry,
        generation: u64,
    ) -> Result<Self, ConfigErrors> {
        let cache = TokenCache::new(config.cache);
        let snapshot = build_snapshot(config, registry, generation)?;
        Ok(Shadow {
            snapshot: Arc::new(snapshot),
            cache,
            replay: ReplayMemory::new(REPLAY_CAPACITY, 64),
            epoch: Instant::now(),
            last_log_ms: AtomicU64::new(u64::MAX),
            suppressed: AtomicU64::new(0),
        })
    }

    /// Its own token cache (entries are per config).
    pub fn cache(&self) -> &TokenCache {
        &self.cache
    }

    /// Its own DPoP replay memory (the live decision has just recorded the proof).
    pub fn replay(&self) -> &ReplayMemory {
        &self.replay
    }

    /// True when this disagreement may be logged (one per `LOG_EVERY_MS`); returns how many
    /// were suppressed since the last line.
    pub fn may_log(&self) -> Option<u64> {
        let now = u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX - 1);
        let last = self.last_log_ms.load(Ordering::Relaxed);
        if last != u64::MAX && now.saturating_sub(last) < LOG_EVERY_MS {
            self.suppressed.fetch_add(1, Ordering::Relaxed);
            return None;
        }
        self.last_log_ms
            .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
            .ok()
            .map(|_| self.suppressed.swap(0, Ordering::Relaxed))
    }
}
