//! Key sets (JWKS): fetch (through [`crate::outside::fetch`]), parse, cache, background refresh,
//! unknown-kid refetch.
//!
//! A [`KeySet`] is shared by every client whose keys come from the same place (many SSO clients
//! share one realm's keys). Readers get the current [`KeyState`] through an `ArcSwap` — no lock
//! on the Check path. Keys are parsed and turned into ready verifiers once per fetch; unusable
//! keys are skipped with a warning. Fetches are single-flight (one `tokio::sync::Mutex` per key
//! set): a Check that needs a refetch while one is in flight waits for that one (at most one
//! `timeout`) and never starts another behind it; fetches never start more often than
//! `min_refresh_interval`; a failed fetch keeps the last good keys.

use std::collections::HashSet;
use std::fmt;
use std::hash::{BuildHasher, Hasher};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, SystemTime};

use arc_swap::ArcSwap;
use tokio::time::Instant;

use crate::core::model::JwksSettings;
/// Configuration type, defined in `config` (re-exported for existing users of this path).
pub use crate::core::model::KeySource;
use crate::core::ports::{BoxFuture, KeyProvider};
use crate::outside::fetch::{self, Fetcher};
// The pure key types live in `crate::keys` (issue 12); re-exported so existing
// `jwks::Alg` / `jwks::parse_jwks` paths keep compiling.
pub use crate::core::ports::KeyState;
use crate::keys::JwksError;
pub use crate::keys::{Alg, Key, KeyType, parse_jwk, parse_jwks};
use crate::observe::metrics::Metrics;

/// Why a key set could not be (re)loaded (kept in the state for `readyz` / logs; URLs in it are
/// redacted, so it never contains secrets).
#[derive(Debug, Clone, thiserror::Error)]
pub enum FetchError {
    #[error(transparent)]
    Fetch(#[from] fetch::FetchError),
    #[error(transparent)]
    File(#[from] crate::outside::files::FileError),
    #[error("{0}")]
    Keys(String),
}

impl From<JwksError> for FetchError {
    fn from(e: JwksError) -> Self {
        FetchError::Keys(e.to_string())
    }
}

const MAX_REMEMBERED_UNKNOWN_KIDS: usize = 4096;
const MAX_CACHE_CONTROL_AGE: Duration = Duration::from_secs(24 * 3600);
const NEVER: u64 = u64::MAX;

/// The keys of one source, shared by every client using it.
pub struct KeySet {
    pub id: String,
    source: KeySource,
    settings: ArcSwap<JwksSettings>,
    state: ArcSwap<KeyState>,
    /// None for `jwks_file` key sets, which never go to the network.
    fetcher: Option<Arc<Fetcher>>,
    metrics: Arc<Metrics>,
    epoch: Instant,
    /// Milliseconds since `epoch` of the last fetch attempt (`NEVER` if none).
    last_attempt_ms: AtomicU64,
    fetch_lock: tokio::sync::Mutex<()>,
    /// Counts finished fetches: how a Check waits for the fetch in flight instead of queueing
    /// another behind it.
    fetches_done: tokio::sync::watch::Sender<u64>,
    unknown_kids: Mutex<HashSet<String>>,
    loaded_tx: tokio::sync::watch::Sender<bool>,
}

impl fmt::Debug for KeySet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeySet").field("id", &self.id).finish()
    }
}

impl KeySet {
    fn new(
        source: KeySource,
        settings: JwksSettings,
        fetcher: Option<Arc<Fetcher>>,
        metrics: Arc<Metrics>,
    ) -> Self {
        let id = source.id();
        metrics.key_set_known(&id);
        KeySet {
            id,
            source,
            settings: ArcSwap::from_pointee(settings),
            state: ArcSwap::from_pointee(KeyState::default()),
            fetcher,
            metrics,
            epoch: Instant::now(),
            last_attempt_ms: AtomicU64::new(NEVER),
            fetch_lock: tokio::sync::Mutex::new(()),
            fetches_done: tokio::sync::watch::channel(0).0,
            unknown_kids: Mutex::new(HashSet::new()),
            loaded_tx: tokio::sync::watch::channel(false).0,
        }
    }

    /// A key set with fixed keys (from a `jwks_file`, or built by tests).
    pub fn from_static(id: &str, jwks: &[u8], metrics: Arc<Metrics>) -> Result<Self, FetchError> {
        let ks = KeySet::new(
            KeySource::File(PathBuf::from(id)),
            JwksSettings::default(),
            None,
            metrics,
        );
        let keys = parse_jwks(jwks, &ks.id)?;
        ks.install(keys);
        Ok(ks)
    }

    pub fn source(&self) -> &KeySource {
        &self.source
    }

    /// The current keys (lock-free).
    pub fn state(&self) -> arc_swap::Guard<Arc<KeyState>> {
        self.state.load()
    }

    pub fn settings(&self) -> Arc<JwksSettings> {
        self.settings.load_full()
    }

    /// Usable right now: loaded once, and the last good fetch is not older than `max_stale`.
    pub fn available(&self, state: &KeyState) -> bool {
        match (&self.source, state.last_success) {
            (_, None) => false,
            (KeySource::File(_), Some(_)) => true,
            (_, Some(t)) => t.elapsed() <= self.settings.load().max_stale,
        }
    }

    /// Wait until loaded once (or `timeout`). Returns whether it is loaded.
    pub async fn wait_loaded(&self, timeout: Duration) -> bool {
        let mut rx = self.loaded_tx.subscribe();
        tokio::time::timeout(timeout, rx.wait_for(|l| *l))
            .await
            .map(|r| r.is_ok())
            .unwrap_or(false)
    }

    fn now_ms(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(NEVER - 1)
    }

    fn cooldown_passed(&self) -> bool {
        let last = self.last_attempt_ms.load(Ordering::Acquire);
        if last == NEVER {
            return true;
        }
        let min = u64::try_from(self.settings.load().min_refresh_interval.as_millis())
            .unwrap_or(u64::MAX);
        self.now_ms().saturating_sub(last) >= min
    }

    /// A token named a kid we do not have. Refetch at most once per `min_refresh_interval`.
    /// Single-flight: while a fetch is in flight (a refetch or the background refresh), callers
    /// wait for that fetch — at most one `timeout` — and never start another one behind it, so a
    /// stalling IdP costs each Check one timeout, not a place in a queue. Returns true when the
    /// keys may have changed since the caller looked, so the caller should look again.
    pub async fn refetch_for_unknown_kid(&self, kid: &str, seen_generation: u64) -> bool {
        self.metrics.jwks_unknown_kid(&self.id);
        if matches!(self.source, KeySource::File(_)) {
            return false;
        }
        if self.state.load().generation != seen_generation {
            return true;
        }
        if lock(&self.unknown_kids).contains(kid) {
            return false;
        }
        // Subscribe before trying the lock: a fetch ending between the two is still seen.
        let mut done = self.fetches_done.subscribe();
        let Ok(_guard) = self.fetch_lock.try_lock() else {
            let timeout = self.settings.load().timeout;
            let _ = tokio::time::timeout(timeout, done.changed()).await;
            return self.state.load().generation != seen_generation;
        };
        if self.state.load().generation != seen_generation {
            return true; // a fetch finished between our look and the lock
        }
        if !self.cooldown_passed() {
            return false;
        }
        let ok = self.fetch_locked().await.is_ok();
        let st = self.state.load();
        if st.find(kid).is_none() {
            let mut unknown = lock(&self.unknown_kids);
            if unknown.len() < MAX_REMEMBERED_UNKNOWN_KIDS {
                unknown.insert(kid.to_owned());
            }
        }
        ok && st.generation != seen_generation
    }

    /// Fetch now (single-flight), regardless of the cooldown. Used by the refresh loop.
    pub async fn fetch(&self) -> Result<Option<Duration>, FetchError> {
        let _guard = self.fetch_lock.lock().await;
        self.fetch_locked().await
    }

    async fn fetch_locked(&self) -> Result<Option<Duration>, FetchError> {
        self.last_attempt_ms.store(self.now_ms(), Ordering::Release);
        let span = crate::observe::spans::call_span("oidc_authz.jwks_fetch", "key_set", &self.id);
        let result = self.fetch_inner().await;
        span.end(result.as_ref().err().map(|e| e.to_string().into()));
        match &result {
            Ok((keys, _)) => {
                self.metrics.jwks_fetch(&self.id, true);
                tracing::info!(key_set = %self.id, keys = keys.len(), "key set fetched");
            }
            Err(e) => {
                self.metrics.jwks_fetch(&self.id, false);
                tracing::warn!(key_set = %self.id, error = %e, "key set fetch failed; keeping the last good keys");
                let old = self.state.load();
                self.state.store(Arc::new(KeyState {
                    keys: old.keys.clone(),
                    generation: old.generation,
                    last_success: old.last_success,
                    last_success_wall: old.last_success_wall,
                    last_error: Some(e.to_string()),
                }));
            }
        }
        let result = result.map(|(keys, max_age)| {
            self.install(keys);
            max_age
        });
        self.fetches_done.send_modify(|n| *n = n.wrapping_add(1));
        result
    }

    fn install(&self, keys: Vec<Key>) {
        let old = self.state.load();
        let changed = old.keys.len() != keys.len()
            || old
                .keys
                .iter()
                .zip(keys.iter())
                .any(|(a, b)| a.kid != b.kid || a.material != b.material);
        let generation = if changed {
            old.generation + 1
        } else {
            old.generation
        };
        self.metrics.jwks_loaded(&self.id, keys.len());
        self.state.store(Arc::new(KeyState {
            keys: Arc::from(keys),
            generation,
            last_success: Some(Instant::now()),
            last_success_wall: Some(SystemTime::now()),
            last_error: None,
        }));
        lock(&self.unknown_kids).clear();
        self.loaded_tx.send_replace(true);
    }

    async fn fetch_inner(&self) -> Result<(Vec<Key>, Option<Duration>), FetchError> {
        let timeout = self.settings.load().timeout;
        let fetcher = match (&self.source, &self.fetcher) {
            (KeySource::File(p), _) => {
                let bytes =
                    crate::outside::files::read(p, crate::outside::files::READ_TIMEOUT).await?;
                return Ok((parse_jwks(&bytes, &self.id)?, None));
            }
            (_, Some(f)) => f,
            (_, None) => {
                return Err(FetchError::Keys(
                    "no HTTP client for a remote key set".into(),
                ));
            }
        };
        // One deadline for discovery and the key fetch together: what a waiting Check is
        // bounded by (`refetch_for_unknown_kid`).
        let work = async {
            let (url, issuer) = match &self.source {
                KeySource::Discovery { issuer } => {
                    let d = fetcher.discover(issuer, timeout).await?;
                    match &d.jwks_uri {
                        Ok(u) => (u.clone(), Some(issuer)),
                        Err(e) => {
                            // Maybe fixed at the IdP by the next attempt: do not cache the error.
                            fetcher.forget_discovery(issuer);
                            return Err(FetchError::Fetch(e.clone()));
                        }
                    }
                }
                // Validated at load; parsed again here by the same parser, and this parsed URL
                // is the one fetched.
                KeySource::Uri(u) => (fetch::validate_url(u)?, None),
                KeySource::File(_) => return Err(FetchError::Keys("not a remote key set".into())),
            };
            let resp = fetcher.get(&url, timeout, fetch::MAX_DOCUMENT_BYTES).await;
            if let (Err(fetch::FetchError::Status { status: 404, .. }), Some(iss)) = (&resp, issuer)
            {
                // The IdP may have moved its keys: discover again next time.
                fetcher.forget_discovery(iss);
            }
            Ok::<_, FetchError>(resp?)
        };
        let resp = tokio::time::timeout(timeout, work)
            .await
            .map_err(|_| fetch::FetchError::Timeout {
                url: self.id.clone(),
                timeout,
            })
            .map_err(FetchError::Fetch)??;
        Ok((parse_jwks(&resp.body, &self.id)?, resp.max_age))
    }

    /// How long to wait before the next background refresh after a fetch.
    fn next_delay(&self, result: &Result<Option<Duration>, FetchError>, failures: u32) -> Duration {
        let s = self.settings.load();
        match result {
            Ok(max_age) => match max_age {
                Some(age) => (*age).clamp(s.min_refresh_interval, MAX_CACHE_CONTROL_AGE),
                None => s.refresh_interval,
            },
            Err(_) => {
                // Exponential backoff from 1s, capped at refresh_interval, with ±20% jitter.
                let base = Duration::from_secs(1u64 << failures.min(16)).min(s.refresh_interval);
                jitter(base)
            }
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn jitter(d: Duration) -> Duration {
    let r = std::collections::hash_map::RandomState::new()
        .build_hasher()
        .finish();
    let factor = 0.8 + (r % 1000) as f64 / 2500.0; // 0.8 ..= 1.2
    d.mul_f64(factor)
}

impl KeyProvider for KeySet {
    fn id(&self) -> &str {
        &self.id
    }
    fn source(&self) -> &KeySource {
        KeySet::source(self)
    }
    fn settings(&self) -> Arc<JwksSettings> {
        KeySet::settings(self)
    }
    fn state(&self) -> arc_swap::Guard<Arc<KeyState>> {
        KeySet::state(self)
    }
    fn available(&self, state: &KeyState) -> bool {
        KeySet::available(self, state)
    }
    fn refetch_for_unknown_kid<'a>(
        &'a self,
        kid: &'a str,
        seen_generation: u64,
    ) -> BoxFuture<'a, bool> {
        Box::pin(KeySet::refetch_for_unknown_kid(self, kid, seen_generation))
    }
    fn wait_loaded(&self, timeout: Duration) -> BoxFuture<'_, bool> {
        Box::pin(KeySet::wait_loaded(self, timeout))
    }
    fn note_kidless_refused(&self) {
        self.metrics.kidless_refused(&self.id);
    }
}

/// All key sets of the running process, keyed by source, kept across config reloads so that a
/// reload does not refetch (or forget) keys that did not change.
pub struct KeyRegistry {
    fetcher: Arc<Fetcher>,
    metrics: Arc<Metrics>,
    sets: Mutex<Vec<Weak<KeySet>>>,
}

impl KeyRegistry {
    /// The outbound HTTP client (shared with introspection, discovery cache included).
    pub fn fetcher(&self) -> Arc<Fetcher> {
        self.fetcher.clone()
    }

    pub fn new(metrics: Arc<Metrics>, ca_file: Option<&std::path::Path>) -> Result<Self, String> {
        let pem = ca_file
            .map(crate::outside::files::read_blocking)
            .transpose()
            .map_err(|e| e.to_string())?;
        Ok(KeyRegistry {
            fetcher: Arc::new(Fetcher::new(pem.as_deref()).map_err(|e| e.to_string())?),
            metrics,
            sets: Mutex::new(Vec::new()),
        })
    }

    /// The remote key sets still in use (for tests and tools that drive a fetch themselves).
    pub fn remote_sets(&self) -> Vec<Arc<KeySet>> {
        lock(&self.sets).iter().filter_map(Weak::upgrade).collect()
    }

    /// The key set for `source`, shared if one exists. Remote key sets start their background
    /// refresh task (which fetches at once); file key sets are read now (an error is returned).
    /// Called on start-up and, on reload, from the blocking pool (`reload`): the file read
    /// blocks, but never on a FIFO or device (`files`).
    pub fn key_set(
        &self,
        source: &KeySource,
        settings: &JwksSettings,
    ) -> Result<Arc<KeySet>, FetchError> {
        if let KeySource::File(p) = source {
            let bytes = crate::outside::files::read_blocking(p)?;
            let ks = KeySet::new(source.clone(), settings.clone(), None, self.metrics.clone());
            ks.install(parse_jwks(&bytes, &ks.id)?);
            return Ok(Arc::new(ks));
        }
        let mut sets = lock(&self.sets);
        sets.retain(|w| w.strong_count() > 0);
        if let Some(existing) = sets
            .iter()
            .filter_map(Weak::upgrade)
            .find(|k| &k.source == source)
        {
            existing.settings.store(Arc::new(settings.clone()));
            return Ok(existing);
        }
        let ks = Arc::new(KeySet::new(
            source.clone(),
            settings.clone(),
            Some(self.fetcher.clone()),
            self.metrics.clone(),
        ));
        sets.push(Arc::downgrade(&ks));
        tokio::spawn(refresh_loop(Arc::downgrade(&ks)));
        Ok(ks)
    }
}

/// Background refresh: fetch now, then every refresh interval (or max-age), with backoff on
/// failure. Ends when the key set is no longer used by any config.
async fn refresh_loop(weak: Weak<KeySet>) {
    let mut failures: u32 = 0;
    loop {
        let delay = {
            let Some(ks) = weak.upgrade() else { return };
            let result = ks.fetch().await;
            failures = if result.is_ok() {
                0
            } else {
                failures.saturating_add(1)
            };
            ks.next_delay(&result, failures.saturating_sub(1))
        };
        tokio::time::sleep(delay).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Timing with tokio's paused clock: max_stale, the refetch cooldown, backoff and max-age.
    #[tokio::test(start_paused = true)]
    async fn timing_follows_the_clock() {
        use crate::testkit::{TestKey, jwks};
        let settings = JwksSettings {
            refresh_interval: Duration::from_secs(300),
            min_refresh_interval: Duration::from_secs(15),
            max_stale: Duration::from_secs(3600),
            timeout: Duration::from_secs(5),
            ca_file: None,
        };
        let ks = KeySet::new(
            KeySource::Uri("https://idp.example.org/certs".into()),
            settings,
            None,
            Arc::new(Metrics::new()),
        );
        assert!(!ks.available(&ks.state()), "never loaded: unavailable");
        let key = TestKey::generate(Alg::ES256, "k");
        ks.install(parse_jwks(jwks(&[&key]).as_bytes(), "t").unwrap());
        assert!(ks.available(&ks.state()));
        tokio::time::advance(Duration::from_secs(3599)).await;
        assert!(ks.available(&ks.state()), "within max_stale");
        tokio::time::advance(Duration::from_secs(2)).await;
        assert!(
            !ks.available(&ks.state()),
            "older than max_stale: fail closed"
        );

        ks.last_attempt_ms.store(ks.now_ms(), Ordering::Release);
        assert!(!ks.cooldown_passed());
        tokio::time::advance(Duration::from_secs(14)).await;
        assert!(!ks.cooldown_passed());
        tokio::time::advance(Duration::from_secs(1)).await;
        assert!(ks.cooldown_passed());

        let err: Result<Option<Duration>, FetchError> = Err(FetchError::Keys("down".into()));
        let mut previous_base = Duration::ZERO;
        for failures in 0..20u32 {
            let base = Duration::from_secs(1u64 << failures.min(16)).min(Duration::from_secs(300));
            let d = ks.next_delay(&err, failures);
            assert!(
                d >= base.mul_f64(0.8) && d <= base.mul_f64(1.2),
                "{failures}: {d:?} vs {base:?}"
            );
            assert!(base >= previous_base, "backoff never shrinks");
            previous_base = base;
        }
        assert_eq!(ks.next_delay(&Ok(None), 0), Duration::from_secs(300));
        assert_eq!(
            ks.next_delay(&Ok(Some(Duration::from_secs(1))), 0),
            Duration::from_secs(15),
            "max-age below the floor"
        );
        assert_eq!(
            ks.next_delay(&Ok(Some(Duration::from_secs(600))), 0),
            Duration::from_secs(600),
            "max-age honoured"
        );
        assert_eq!(
            ks.next_delay(&Ok(Some(Duration::from_secs(10_000_000))), 0),
            MAX_CACHE_CONTROL_AGE
        );
    }
}
