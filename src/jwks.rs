//! Key sets (JWKS): discovery, fetch, parse, cache, background refresh, unknown-kid refetch.
//!
//! The only module that makes outbound HTTP requests. A [`KeySet`] is shared by every client
//! whose keys come from the same place (many SSO clients share one realm's keys). Readers get the
//! current [`KeyState`] through an `ArcSwap` — no lock on the Check path. Keys are parsed and
//! turned into ready verifiers once per fetch; unusable keys are skipped with a warning.
//! Fetches are single-flight (one `tokio::sync::Mutex` per key set) and never more often than
//! `min_refresh_interval`; a failed fetch keeps the last good keys.

use std::collections::HashSet;
use std::fmt;
use std::hash::{BuildHasher, Hasher};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, SystemTime};

use arc_swap::ArcSwap;
use serde_json::Value;
use tokio::time::Instant;

use crate::config::{JwksSettings, check_fetch_url};
// The pure key types moved to `crate::keys` (issue 12); re-exported so existing
// `jwks::Alg` / `jwks::parse_jwks` paths keep compiling.
use crate::keys::JwksError;
pub use crate::keys::{Alg, Key, KeyType, parse_jwk, parse_jwks, parse_max_age};
use crate::metrics::Metrics;

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
    /// The key set's name in metrics and logs (bounded by config).
    pub fn id(&self) -> String {
        match self {
            KeySource::Discovery { issuer } => issuer.clone(),
            KeySource::Uri(u) => u.clone(),
            KeySource::File(p) => format!("file:{}", p.display()),
        }
    }
}

/// A key set's keys at one moment. Replaced whole on every change (readers never lock).
#[derive(Debug)]
pub struct KeyState {
    pub keys: Arc<[Key]>,
    /// Bumped whenever the usable keys change (cache keys include it).
    pub generation: u64,
    /// When the last successful fetch finished (None: never loaded).
    pub last_success: Option<Instant>,
    pub last_success_wall: Option<SystemTime>,
    pub last_error: Option<String>,
}

impl Default for KeyState {
    fn default() -> Self {
        KeyState {
            keys: Arc::from(Vec::new()),
            generation: 0,
            last_success: None,
            last_success_wall: None,
            last_error: None,
        }
    }
}

impl KeyState {
    pub fn find(&self, kid: &str) -> Option<&Key> {
        self.keys.iter().find(|k| k.kid.as_deref() == Some(kid))
    }

    pub fn loaded(&self) -> bool {
        self.last_success.is_some()
    }
}

/// Why a fetch failed (kept in the state for `readyz` / logs; never contains secrets).
#[derive(Debug, Clone, thiserror::Error)]
pub enum FetchError {
    #[error("request to {url} failed: {message}")]
    Http { url: String, message: String },
    #[error("{url} answered HTTP {status}")]
    Status { url: String, status: u16 },
    #[error("{url}: {message}")]
    Body { url: String, message: String },
    #[error("discovery document issuer `{found}` does not equal the configured issuer")]
    IssuerMismatch { found: String },
    #[error("{0}")]
    Keys(String),
}

impl From<JwksError> for FetchError {
    fn from(e: JwksError) -> Self {
        FetchError::Keys(e.to_string())
    }
}

const MAX_BODY_BYTES: usize = 1024 * 1024;
const MAX_REMEMBERED_UNKNOWN_KIDS: usize = 4096;
const MAX_CACHE_CONTROL_AGE: Duration = Duration::from_secs(24 * 3600);
const NEVER: u64 = u64::MAX;

/// The keys of one source, shared by every client using it.
pub struct KeySet {
    pub id: String,
    source: KeySource,
    settings: ArcSwap<JwksSettings>,
    state: ArcSwap<KeyState>,
    http: reqwest::Client,
    metrics: Arc<Metrics>,
    epoch: Instant,
    /// Milliseconds since `epoch` of the last fetch attempt (`NEVER` if none).
    last_attempt_ms: AtomicU64,
    fetch_lock: tokio::sync::Mutex<()>,
    unknown_kids: Mutex<HashSet<String>>,
    discovered_uri: Mutex<Option<String>>,
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
        http: reqwest::Client,
        metrics: Arc<Metrics>,
    ) -> Self {
        KeySet {
            id: source.id(),
            source,
            settings: ArcSwap::from_pointee(settings),
            state: ArcSwap::from_pointee(KeyState::default()),
            http,
            metrics,
            epoch: Instant::now(),
            last_attempt_ms: AtomicU64::new(NEVER),
            fetch_lock: tokio::sync::Mutex::new(()),
            unknown_kids: Mutex::new(HashSet::new()),
            discovered_uri: Mutex::new(None),
            loaded_tx: tokio::sync::watch::channel(false).0,
        }
    }

    /// A key set with fixed keys (from a `jwks_file`, or built by tests).
    pub fn from_static(id: &str, jwks: &[u8], metrics: Arc<Metrics>) -> Result<Self, FetchError> {
        let ks = KeySet::new(
            KeySource::File(PathBuf::from(id)),
            JwksSettings::default(),
            reqwest::Client::new(),
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

    /// A token named a kid we do not have. Refetch at most once per `min_refresh_interval`
    /// (single-flight: concurrent callers wait for the same fetch). Returns true when the keys
    /// may have changed since the caller looked, so the caller should look again.
    pub async fn refetch_for_unknown_kid(&self, kid: &str, seen_generation: u64) -> bool {
        self.metrics.jwks_unknown_kid(&self.id);
        if matches!(self.source, KeySource::File(_)) {
            return false;
        }
        if self.state.load().generation != seen_generation {
            return true;
        }
        if lock(&self.unknown_kids).contains(kid) || !self.cooldown_passed() {
            return false;
        }
        let _guard = self.fetch_lock.lock().await;
        if self.state.load().generation != seen_generation {
            return true; // another request's fetch finished while we waited
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
        let result = self.fetch_inner().await;
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
        result.map(|(keys, max_age)| {
            self.install(keys);
            max_age
        })
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
        let settings = self.settings.load_full();
        let uri = match &self.source {
            KeySource::Uri(u) => u.clone(),
            KeySource::Discovery { issuer } => {
                let cached = lock(&self.discovered_uri).clone();
                match cached {
                    Some(u) => u,
                    None => {
                        let u = self.discover(issuer, settings.timeout).await?;
                        *lock(&self.discovered_uri) = Some(u.clone());
                        u
                    }
                }
            }
            KeySource::File(p) => {
                let bytes = std::fs::read(p)
                    .map_err(|e| FetchError::Keys(format!("{}: {e}", p.display())))?;
                return Ok((parse_jwks(&bytes, &self.id)?, None));
            }
        };
        let (body, max_age) = match self.get(&uri, settings.timeout).await {
            Err(FetchError::Status { status: 404, url }) => {
                // The IdP may have moved its keys: discover again next time.
                *lock(&self.discovered_uri) = None;
                return Err(FetchError::Status { status: 404, url });
            }
            other => other?,
        };
        Ok((parse_jwks(&body, &self.id)?, max_age))
    }

    async fn discover(&self, issuer: &str, timeout: Duration) -> Result<String, FetchError> {
        let url = format!(
            "{}/.well-known/openid-configuration",
            issuer.trim_end_matches('/')
        );
        let (body, _) = self.get(&url, timeout).await?;
        let doc = crate::token::strict_object(&body).map_err(|e| FetchError::Body {
            url: url.clone(),
            message: format!("not a JSON object: {e}"),
        })?;
        let found = doc.get("issuer").and_then(Value::as_str).unwrap_or("");
        if found != issuer {
            return Err(FetchError::IssuerMismatch {
                found: found.chars().take(200).collect(),
            });
        }
        let jwks_uri =
            doc.get("jwks_uri")
                .and_then(Value::as_str)
                .ok_or_else(|| FetchError::Body {
                    url: url.clone(),
                    message: "no jwks_uri".into(),
                })?;
        check_fetch_url(jwks_uri).map_err(|m| FetchError::Body {
            url,
            message: format!("jwks_uri: {m}"),
        })?;
        Ok(jwks_uri.to_owned())
    }

    /// GET with a timeout, a body cap, and the Cache-Control max-age if any.
    async fn get(
        &self,
        url: &str,
        timeout: Duration,
    ) -> Result<(Vec<u8>, Option<Duration>), FetchError> {
        let http_err = |e: reqwest::Error| FetchError::Http {
            url: url.to_owned(),
            message: error_chain(&e),
        };
        let mut resp = self
            .http
            .get(url)
            .header("accept", "application/json")
            .timeout(timeout)
            .send()
            .await
            .map_err(http_err)?;
        let status = resp.status().as_u16();
        if status != 200 {
            return Err(FetchError::Status {
                url: url.to_owned(),
                status,
            });
        }
        let max_age = resp
            .headers()
            .get("cache-control")
            .and_then(|v| v.to_str().ok())
            .and_then(parse_max_age);
        let mut body = Vec::new();
        while let Some(chunk) = tokio::time::timeout(timeout, resp.chunk())
            .await
            .map_err(|_| FetchError::Http {
                url: url.to_owned(),
                message: "timed out reading the body".into(),
            })?
            .map_err(http_err)?
        {
            if body.len() + chunk.len() > MAX_BODY_BYTES {
                return Err(FetchError::Body {
                    url: url.to_owned(),
                    message: "body larger than 1 MiB".into(),
                });
            }
            body.extend_from_slice(&chunk);
        }
        Ok((body, max_age))
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

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(inner) = src {
        s.push_str(": ");
        s.push_str(&inner.to_string());
        src = inner.source();
    }
    s
}

fn jitter(d: Duration) -> Duration {
    let r = std::collections::hash_map::RandomState::new()
        .build_hasher()
        .finish();
    let factor = 0.8 + (r % 1000) as f64 / 2500.0; // 0.8 ..= 1.2
    d.mul_f64(factor)
}

/// All key sets of the running process, keyed by source, kept across config reloads so that a
/// reload does not refetch (or forget) keys that did not change.
pub struct KeyRegistry {
    http: reqwest::Client,
    metrics: Arc<Metrics>,
    sets: Mutex<Vec<Weak<KeySet>>>,
}

impl KeyRegistry {
    /// The outbound HTTP client (https-only rules, same-host redirects, optional extra CA).
    pub fn http(&self) -> reqwest::Client {
        self.http.clone()
    }

    pub fn new(metrics: Arc<Metrics>, ca_file: Option<&std::path::Path>) -> Result<Self, String> {
        Ok(KeyRegistry {
            http: http_client(ca_file)?,
            metrics,
            sets: Mutex::new(Vec::new()),
        })
    }

    /// The key set for `source`, shared if one exists. Remote key sets start their background
    /// refresh task (which fetches at once); file key sets are read now (an error is returned).
    pub fn key_set(
        &self,
        source: &KeySource,
        settings: &JwksSettings,
    ) -> Result<Arc<KeySet>, FetchError> {
        if let KeySource::File(p) = source {
            let bytes =
                std::fs::read(p).map_err(|e| FetchError::Keys(format!("{}: {e}", p.display())))?;
            let ks = KeySet::new(
                source.clone(),
                settings.clone(),
                self.http.clone(),
                self.metrics.clone(),
            );
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
            self.http.clone(),
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

fn http_client(ca_file: Option<&std::path::Path>) -> Result<reqwest::Client, String> {
    // Redirects only within the same scheme, host and port; never to another host.
    let policy = reqwest::redirect::Policy::custom(|attempt| {
        let first = attempt.previous().first();
        let same = first.is_some_and(|f| {
            f.scheme() == attempt.url().scheme()
                && f.host_str() == attempt.url().host_str()
                && f.port_or_known_default() == attempt.url().port_or_known_default()
        });
        if same && attempt.previous().len() < 5 {
            attempt.follow()
        } else {
            attempt.stop()
        }
    });
    let mut b = reqwest::Client::builder()
        .redirect(policy)
        .no_proxy()
        .user_agent(concat!("oidc-authz/", env!("CARGO_PKG_VERSION")))
        .connect_timeout(Duration::from_secs(5));
    if let Some(path) = ca_file {
        let pem =
            std::fs::read(path).map_err(|e| format!("jwks.ca_file {}: {e}", path.display()))?;
        let certs = reqwest::Certificate::from_pem_bundle(&pem)
            .map_err(|e| format!("jwks.ca_file {}: {e}", path.display()))?;
        b = b.tls_certs_merge(certs);
    }
    b.build()
        .map_err(|e| format!("cannot build the HTTP client: {}", error_chain(&e)))
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
            reqwest::Client::new(),
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
