//! The verified-token cache (DESIGN §4, last paragraph): a successful verification (routing,
//! signature and claim checks) is remembered until the token's `exp`, so a token seen again costs a
//! hash lookup instead of a signature verification.
//!
//! 32 shards, each a `RwLock<HashMap>` with its own share of the limits (a hit takes one
//! uncontended read lock; an insert locks one shard and evicts only there). Bounded by entries
//! and by (estimated) bytes; when a shard is full, its expired entries go first, then arbitrary
//! ones (hash order under a per-process key: an attacker cannot steer eviction). (A lock-free
//! `papaya` map was used first; under a flood of distinct tokens its remove-heavy eviction made
//! inserts allocate without bound — found by bench/run.sh — so the cache uses plain shards
//! now.) Keys are a per-process keyed hash of the whole token and every hit compares
//! the whole token, so a collision can only cost a miss. An entry is used only while the config
//! generation and the key set's generation it was verified under are still current, so a reload
//! or a key removal takes effect at once. Failed verifications are never cached.

use std::collections::HashMap;
use std::hash::BuildHasher;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};

use serde_json::{Map, Value};

/// A verified token and everything the allow path needs from it, computed once.
#[derive(Debug)]
pub struct Entry {
    token: Box<str>,
    pub client: usize,
    pub config_generation: u64,
    pub key_set_generation: u64,
    /// `exp` plus the client's leeway: unusable from this second on.
    pub expires_at: i64,
    pub claims: Map<String, Value>,
    /// The routed client's claim headers, already rendered.
    pub headers: Vec<(String, String)>,
    pub subject: Option<String>,
    /// The roles the token carries under the routed client's role claim paths.
    pub roles: Box<[Box<str>]>,
    /// The claims have a `cnf` member (DESIGN §10): decided once here, so a bearer token's
    /// Check skips the binding step's lookups.
    pub has_cnf: bool,
    cost: usize,
}

impl Entry {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        token: &str,
        client: usize,
        config_generation: u64,
        key_set_generation: u64,
        expires_at: i64,
        claims: Map<String, Value>,
        headers: Vec<(String, String)>,
        subject: Option<String>,
        roles: Box<[Box<str>]>,
    ) -> Entry {
        // What the entry really holds on the heap, walked node by node (issue 11 finding 10: a
        // per-JSON-byte guess undercounted claims such as a 5,500-element numeric array 3.3×,
        // and RSS passed the cap). Undercounting here is what lets RSS pass `max_bytes`.
        let headers_len = block(headers.capacity() * size_of::<(String, String)>())
            + headers
                .iter()
                .map(|(k, v)| block(k.capacity()) + block(v.capacity()))
                .sum::<usize>();
        let roles_len = block(size_of_val::<[Box<str>]>(&roles))
            + roles.iter().map(|r| block(r.len())).sum::<usize>();
        let cost = block(token.len())
            + map_heap_bytes(&claims)
            + headers_len
            + roles_len
            + subject.as_ref().map_or(0, |s| block(s.capacity()))
            // the Arc'd entry itself, and its slot in the shard's map (load factor ≥ 7/16)
            + block(size_of::<Entry>() + 2 * size_of::<usize>())
            + 2 * (size_of::<(u64, Arc<Entry>)>() + 1);
        let has_cnf = claims.contains_key("cnf");
        Entry {
            token: token.into(),
            client,
            config_generation,
            key_set_generation,
            expires_at,
            claims,
            headers,
            subject,
            roles,
            has_cnf,
            cost,
        }
    }
}

/// One heap block of `n` requested bytes as the allocator charges it, an upper bound for both
/// allocators the binary may run with: glibc adds an 8-byte header, rounds to 16 and never
/// hands out less than 32 bytes; mimalloc (no header) rounds up to size classes at most 1/8
/// apart. Many claims are small strings, so the minimum matters.
const fn block(n: usize) -> usize {
    if n == 0 {
        return 0;
    }
    let chunk = (n + 8).next_multiple_of(16);
    (if chunk < 32 { 32 } else { chunk }) + n / 8
}

/// `serde_json::Map` is a `BTreeMap<String, Value>` (the `preserve_order` feature is off):
/// nodes of up to 11 entries; every node but the root holds at least 5.
const BTREE_CAPACITY: usize = 11;
const BTREE_LEAF: usize =
    size_of::<usize>() + BTREE_CAPACITY * (size_of::<String>() + size_of::<Value>()) + 8;
const BTREE_INTERNAL: usize = BTREE_LEAF + (BTREE_CAPACITY + 1) * size_of::<usize>();

/// Heap bytes held by a claims object: its B-tree nodes, every key, and every value's own heap.
pub fn map_heap_bytes(m: &Map<String, Value>) -> usize {
    let n = m.len();
    let nodes = match n {
        0 => 0,
        1..=BTREE_CAPACITY => block(BTREE_LEAF),
        _ => {
            // every node but the root holds at least 5 entries: nodes ≤ (n - 1) / 5 + 1; every
            // internal node but the root has at least 6 children: internal ≤ (nodes + 3) / 6
            let nodes = (n - 1) / 5 + 1;
            let internal = (nodes + 3) / 6;
            nodes * block(BTREE_LEAF) + internal * (block(BTREE_INTERNAL) - block(BTREE_LEAF))
        }
    };
    nodes
        + m.iter()
            .map(|(k, v)| block(k.capacity()) + value_heap_bytes(v))
            .sum::<usize>()
}

/// Heap bytes held by one JSON value beyond its own `size_of::<Value>()` (which its parent
/// counts): a string's buffer, an array's buffer (by capacity) and its elements, an object's map.
/// Depth is bounded by the JSON parser's recursion limit (128).
pub fn value_heap_bytes(v: &Value) -> usize {
    match v {
        Value::Null | Value::Bool(_) | Value::Number(_) => 0,
        Value::String(s) => block(s.capacity()),
        Value::Array(a) => {
            block(a.capacity() * size_of::<Value>()) + a.iter().map(value_heap_bytes).sum::<usize>()
        }
        Value::Object(m) => map_heap_bytes(m),
    }
}

/// Cache limits (config `cache`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CacheLimits {
    pub max_entries: usize,
    pub max_bytes: usize,
}

impl Default for CacheLimits {
    fn default() -> Self {
        CacheLimits {
            max_entries: 100_000,
            max_bytes: 64 * 1024 * 1024,
        }
    }
}

/// One independently locked part of the cache, with its own share of the limits.
#[derive(Default)]
struct ShardMap {
    map: HashMap<u64, Arc<Entry>>,
    bytes: usize,
}

type Shard = RwLock<ShardMap>;

/// Number of independently locked shards (a power of two).
const SHARDS: usize = 32;

/// Fewer shards for small limits, so each shard still holds a useful number of entries (at least
/// 8, and 64 KiB): per-shard limits would otherwise refuse every entry under a small `max_bytes`.
fn shard_count(limits: CacheLimits) -> usize {
    let mut n = SHARDS;
    while n > 1 && (limits.max_bytes / n < 64 * 1024 || limits.max_entries / n < 8) {
        n /= 2;
    }
    n
}

pub struct TokenCache {
    shards: Box<[Shard]>,
    /// Seeded per process: a keyed hash of the whole token (foldhash: ~10× faster than SipHash
    /// on a 1 KiB token, and the key is secret, so tokens cannot be chosen to collide).
    keys: foldhash::fast::RandomState,
    limits: CacheLimits,
    /// Each shard's share of `limits` (entries, bytes).
    shard_limits: (usize, usize),
    bytes: AtomicUsize,
    entries: AtomicUsize,
}

impl std::fmt::Debug for TokenCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenCache")
            .field("entries", &self.len())
            .field("bytes", &self.bytes())
            .finish()
    }
}

fn read<T>(l: &RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    l.read().unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn write<T>(l: &RwLock<T>) -> std::sync::RwLockWriteGuard<'_, T> {
    l.write().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl TokenCache {
    pub fn new(limits: CacheLimits) -> TokenCache {
        TokenCache {
            shards: (0..shard_count(limits))
                .map(|_| RwLock::default())
                .collect(),
            keys: foldhash::fast::RandomState::default(),
            limits,
            shard_limits: (
                (limits.max_entries / shard_count(limits)).max(1),
                limits.max_bytes / shard_count(limits),
            ),
            bytes: AtomicUsize::new(0),
            entries: AtomicUsize::new(0),
        }
    }

    fn key(&self, token: &str) -> u64 {
        self.keys.hash_one(token)
    }

    fn shard(&self, key: u64) -> &Shard {
        // the low bits pick the shard; the map hashes the whole key again (cheap, and safe)
        &self.shards[(key as usize) & (self.shards.len() - 1)]
    }

    /// A usable entry for `token`: same token, same generations, not expired.
    pub fn get(
        &self,
        token: &str,
        config_generation: u64,
        key_set_generation: impl Fn(usize) -> u64,
        now: i64,
    ) -> Option<Arc<Entry>> {
        let key = self.key(token);
        let e = read(self.shard(key)).map.get(&key).cloned()?;
        (*e.token == *token
            && e.config_generation == config_generation
            && e.expires_at > now
            && e.key_set_generation == key_set_generation(e.client))
        .then_some(e)
    }

    /// Remember a verified token (evicting first if the limits would be exceeded).
    ///
    /// Each shard holds at most its share of the limits, and evicts only within itself: an
    /// insert locks one shard, and a full shard frees an eighth of its share at once so the
    /// scan is amortised over many inserts (a Check that fills the cache never waits for the
    /// whole cache to be swept).
    pub fn insert(&self, entry: Arc<Entry>, now: i64) {
        let (max_n, max_b) = self.shard_limits;
        if self.limits.max_entries == 0 || entry.cost > max_b / 2 {
            return; // disabled, or one entry would take an unreasonable share of its shard
        }
        let key = self.key(&entry.token);
        let cost = entry.cost;
        let mut shard = write(self.shard(key));
        if let Some(old) = shard.map.remove(&key) {
            shard.bytes -= old.cost;
            self.entries.fetch_sub(1, Ordering::Relaxed);
            self.bytes.fetch_sub(old.cost, Ordering::Relaxed);
        }
        if shard.map.len() >= max_n
            || shard.bytes + cost > max_b
            || self.entries.load(Ordering::Relaxed) >= self.limits.max_entries
            || self.bytes.load(Ordering::Relaxed) + cost > self.limits.max_bytes
        {
            self.evict(&mut shard, now, cost);
            if shard.map.len() >= max_n || shard.bytes + cost > max_b {
                return; // nothing left to evict here (the other shards hold the rest)
            }
        }
        shard.map.insert(key, entry);
        shard.bytes += cost;
        self.entries.fetch_add(1, Ordering::Relaxed);
        self.bytes.fetch_add(cost, Ordering::Relaxed);
    }

    /// Make room in one (locked) shard: drop its expired entries, then arbitrary ones (hash
    /// order under the per-process key: an attacker cannot steer it) until an eighth of its
    /// share is free.
    fn evict(&self, shard: &mut ShardMap, now: i64, incoming: usize) {
        let (max_n, max_b) = self.shard_limits;
        let target_n = max_n - (max_n / 8).max(1);
        let target_b = (max_b - max_b / 8).saturating_sub(incoming);
        let (mut n, mut b) = (0usize, 0usize);
        shard.map.retain(|_, e| {
            let keep = e.expires_at > now;
            if !keep {
                n += 1;
                b += e.cost;
            }
            keep
        });
        let victims: Vec<u64> = {
            let (mut len, mut bytes) = (shard.map.len(), shard.bytes - b);
            shard
                .map
                .iter()
                .take_while(|(_, e)| {
                    let over = len > target_n || bytes > target_b;
                    if over {
                        len -= 1;
                        bytes -= e.cost;
                    }
                    over
                })
                .map(|(k, _)| *k)
                .collect()
        };
        for k in victims {
            if let Some(old) = shard.map.remove(&k) {
                n += 1;
                b += old.cost;
            }
        }
        shard.bytes -= b;
        self.entries.fetch_sub(n, Ordering::Relaxed);
        self.bytes.fetch_sub(b, Ordering::Relaxed);
    }

    pub fn len(&self) -> usize {
        self.entries.load(Ordering::Relaxed)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn bytes(&self) -> usize {
        self.bytes.load(Ordering::Relaxed)
    }

    pub fn limits(&self) -> CacheLimits {
        self.limits
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(token: &str, exp: i64) -> Entry {
        Entry::new(
            token,
            0,
            1,
            1,
            exp,
            Map::new(),
            vec![("x-auth-subject".into(), "u".into())],
            Some("u".into()),
            Box::new([]),
        )
    }

    #[test]
    fn hits_need_the_same_token_generations_and_time() {
        let c = TokenCache::new(CacheLimits::default());
        c.insert(Arc::new(entry("a.b.c", 100)), 0);
        assert!(c.get("a.b.c", 1, |_| 1, 50).is_some());
        assert!(c.get("a.b.d", 1, |_| 1, 50).is_none());
        assert!(c.get("a.b.c", 2, |_| 1, 50).is_none(), "config reloaded");
        assert!(c.get("a.b.c", 1, |_| 2, 50).is_none(), "keys changed");
        assert!(c.get("a.b.c", 1, |_| 1, 100).is_none(), "expired");
    }

    #[test]
    fn bounded_by_entries_and_bytes() {
        let c = TokenCache::new(CacheLimits {
            max_entries: 1000,
            max_bytes: 1 << 30,
        });
        for i in 0..10_000 {
            c.insert(Arc::new(entry(&format!("tok-{i}"), 1_000)), 0);
        }
        assert!(c.len() <= 1000, "{}", c.len());
        let c = TokenCache::new(CacheLimits {
            max_entries: 1 << 20,
            max_bytes: 200_000,
        });
        for i in 0..10_000 {
            c.insert(Arc::new(entry(&format!("tok-{i}"), 1_000)), 0);
        }
        assert!(c.bytes() <= 200_000, "{}", c.bytes());
        assert!(c.len() > 100, "still caching: {}", c.len());
        // expired entries are evicted first: a full cache of expired tokens keeps every new one
        let c = TokenCache::new(CacheLimits {
            max_entries: 3_200,
            max_bytes: 1 << 30,
        });
        for i in 0..10_000 {
            c.insert(Arc::new(entry(&format!("old-{i}"), 10)), 0);
        }
        assert!(c.len() <= 3_200, "{}", c.len());
        for i in 0..640 {
            c.insert(Arc::new(entry(&format!("fresh-{i}"), 1_000)), 20);
        }
        for i in 0..640 {
            assert!(c.get(&format!("fresh-{i}"), 1, |_| 1, 20).is_some(), "{i}");
        }
        assert!(c.len() <= 3_200, "{}", c.len());
    }

    #[test]
    fn a_flood_of_distinct_tokens_stays_within_the_limits() {
        let c = TokenCache::new(CacheLimits {
            max_entries: 5_000,
            max_bytes: 4 << 20,
        });
        let started = std::time::Instant::now();
        for i in 0..300_000 {
            c.insert(
                Arc::new(entry(
                    &format!("flood-token-{i:08}-{}", "x".repeat(64)),
                    1_000,
                )),
                0,
            );
            assert!(c.len() <= 5_000, "{} entries at {i}", c.len());
            assert!(c.bytes() <= 4 << 20, "{} bytes at {i}", c.bytes());
        }
        let total: usize = c.shards.iter().map(|s| read(s).map.len()).sum();
        let bytes: usize = c.shards.iter().map(|s| read(s).bytes).sum();
        assert_eq!(bytes, c.bytes(), "the byte counters match");
        assert_eq!(total, c.len(), "the counters match the maps");
        assert!(c.len() > 1_000, "still caching: {}", c.len());
        assert!(
            started.elapsed() < std::time::Duration::from_secs(30),
            "{:?}",
            started.elapsed()
        );
    }

    #[test]
    fn small_limits_still_cache_realistic_entries() {
        // ~4.5 KiB per entry (a ~1 KiB token); a 128 KiB cap must still hold some of them
        let c = TokenCache::new(CacheLimits {
            max_entries: 100_000,
            max_bytes: 128 * 1024,
        });
        let big = |i: usize| {
            let mut e = entry(&format!("tok-{i}-{}", "x".repeat(1000)), 1_000);
            e.cost = 4_600;
            e
        };
        for i in 0..100 {
            c.insert(Arc::new(big(i)), 0);
        }
        assert!(c.len() >= 10, "{} entries", c.len());
        assert!(c.bytes() <= 128 * 1024, "{}", c.bytes());
    }

    fn claims_entry(token: &str, claims_json: &str) -> Entry {
        let claims = crate::core::token::strict_object(claims_json.as_bytes()).unwrap();
        Entry::new(
            token,
            0,
            1,
            1,
            1_000,
            claims,
            Vec::new(),
            None,
            Box::new([]),
        )
    }

    /// A lower bound of what a claims tree holds that needs no estimate: each array's buffer
    /// (`capacity × size_of::<Value>()`), each string's and key's bytes, and for each object one
    /// B-tree node per 11 entries.
    fn floor(v: &Value) -> usize {
        match v {
            Value::String(s) => s.capacity(),
            Value::Array(a) => {
                a.capacity() * size_of::<Value>() + a.iter().map(floor).sum::<usize>()
            }
            Value::Object(m) => {
                m.len().div_ceil(BTREE_CAPACITY) * BTREE_LEAF
                    + m.iter()
                        .map(|(k, v)| k.capacity() + floor(v))
                        .sum::<usize>()
            }
            _ => 0,
        }
    }

    /// Issue 11 finding 10: tokens carrying a 5,500-element numeric array held ~3.3× what the
    /// per-JSON-byte guess charged for them. The cost must cover every node, whatever the shape.
    #[test]
    fn the_cost_covers_the_claims_tree_whatever_its_shape() {
        let numbers: Vec<u32> = (0..5_500).map(|i| i % 10).collect();
        let objs: Vec<Value> = (0..500).map(|i| serde_json::json!({ "k": i })).collect();
        let many: Map<String, Value> = (0..2_000)
            .map(|i| (format!("c{i}"), Value::from(i)))
            .collect();
        let shapes = [
            serde_json::json!({"sub": "u", "exp": 1, "n": numbers}),
            serde_json::json!({"sub": "u", "exp": 1, "deep": [[[[[[[[[[[[1]]]]]]]]]]]]}),
            serde_json::json!({"sub": "u", "objs": objs}),
            serde_json::json!({"sub": "u", "many": many}),
            serde_json::json!({"sub": "u", "s": "x".repeat(20_000)}),
        ];
        for claims in shapes {
            let json = claims.to_string();
            let e = claims_entry("t", &json);
            let tree = Value::Object(e.claims.clone());
            let floor = floor(&tree);
            assert!(
                e.cost >= floor,
                "cost {} < {} held for claims of {} JSON bytes",
                e.cost,
                floor,
                json.len()
            );
            assert!(
                e.cost <= 4 * floor + 4096,
                "cost {} ≫ {floor}: wildly high",
                e.cost
            );
        }
    }

    /// A Keycloak-like token (bench/bench_tokens.rs) costs about what was measured against RSS
    /// with mimalloc (~4.4 KiB per entry): honest, not so high that the cache holds few tokens.
    #[test]
    fn a_keycloak_like_entry_costs_about_what_rss_measured() {
        let claims = serde_json::json!({
            "iss": "https://sso.example.org/realms/r", "aud": "web", "azp": "web",
            "sub": "f3c1a9e2-bench-user-00000001", "jti": "0000000000000001",
            "iat": 1_800_000_000, "exp": 1_800_000_300,
            "typ": "Bearer", "session_state": "s-000000000001",
            "email": "user1@example.org", "email_verified": true,
            "name": "Bench User", "preferred_username": "user1",
            "realm_access": {"roles": ["viewer", "offline_access", "uma_authorization"]},
            "scope": "openid email profile",
        });
        let e = claims_entry(&"t".repeat(620), &claims.to_string());
        assert!((2_500..=6_000).contains(&e.cost), "{}", e.cost);
    }

    #[test]
    fn disabled_with_zero_entries() {
        let c = TokenCache::new(CacheLimits {
            max_entries: 0,
            max_bytes: 1 << 20,
        });
        c.insert(Arc::new(entry("a", 100)), 0);
        assert!(c.is_empty());
    }
}
