//! Per-replica memory of recently used DPoP proof `jti`s (RFC 9449 §11.1), so a captured proof
//! cannot be replayed while its `iat` is still inside the acceptance window.
//!
//! * Keyed by the first 128 bits of `SHA-256(len(jkt) || jkt || jti)`: a fixed 16 bytes per
//!   entry however long the `jti`, and one key's `jti`s never collide with another key's
//!   (`jti` is capped at [`MAX_JTI_BYTES`] anyway). The stored value is the entry's expiry.
//! * An entry lives until `expires_at` — the last second its proof could still pass the `iat`
//!   check, `iat + max_age + leeway`, computed by the caller ([`super::dpop::verify`]) so one
//!   memory serves clients with different windows. Expired entries are dropped lazily, only
//!   when a shard is full and something in it has expired (each shard tracks its earliest
//!   expiry, so a full shard of live entries is not rescanned on every Check).
//! * Bounded: at most `capacity` entries in total (split evenly over the shards). **When a shard
//!   is full of unexpired entries, new proofs are refused** ([`BindingError::ReplayMemoryFull`],
//!   `invalid_dpop_proof`) rather than forgetting a live `jti`: evicting one would let that
//!   exact proof be replayed for the rest of its window, a silent hole, whereas refusing is
//!   visible and fails closed. Only proofs that passed every other check (signature by the key
//!   the verified token is bound to, `htm`/`htu`/`ath`, `iat`) reach the memory, so filling it
//!   takes valid bound tokens; size `capacity` for peak proofs per second × (max_age + leeway).
//! * Sharded `Mutex`es (a power of two, chosen by the caller): concurrent Checks contend only
//!   when their keys land on the same shard, and each critical section is one hash lookup.
//! * Per replica by design (DESIGN §10): a proof replayed to another replica is not caught
//!   here; `max_age` bounds that exposure, and server nonces shorten it further.

use std::collections::HashMap;
use std::sync::Mutex;

use aws_lc_rs::digest;

use super::BindingError;

/// The longest `jti` accepted (bytes). Longer → [`BindingError::ProofJtiTooLong`].
pub const MAX_JTI_BYTES: usize = 256;

type Key = [u8; 16];

struct Shard {
    entries: HashMap<Key, i64, foldhash::fast::RandomState>,
    /// No entry expires before this (a lower bound; `i64::MAX` when empty).
    earliest: i64,
}

/// The replay memory. Share one per replica (e.g. in an `Arc`).
pub struct ReplayMemory {
    shards: Box<[Mutex<Shard>]>,
    per_shard: usize,
}

impl std::fmt::Debug for ReplayMemory {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReplayMemory")
            .field("shards", &self.shards.len())
            .field("per_shard", &self.per_shard)
            .finish()
    }
}

impl ReplayMemory {
    /// At most `capacity` remembered proofs (at least one per shard) over `shards` locks
    /// (rounded up to a power of two, at least 1).
    pub fn new(capacity: usize, shards: usize) -> Self {
        let shards = shards.clamp(1, 1 << 12).next_power_of_two();
        let per_shard = capacity.div_ceil(shards).max(1);
        let shards = (0..shards)
            .map(|_| {
                Mutex::new(Shard {
                    entries: HashMap::with_hasher(foldhash::fast::RandomState::default()),
                    earliest: i64::MAX,
                })
            })
            .collect();
        ReplayMemory { shards, per_shard }
    }

    /// The most entries this memory holds.
    pub fn capacity(&self) -> usize {
        self.per_shard * self.shards.len()
    }

    /// Entries currently held, expired or not (for metrics and tests).
    pub fn len(&self) -> usize {
        self.shards
            .iter()
            .map(|s| s.lock().unwrap_or_else(|e| e.into_inner()).entries.len())
            .sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Refuse a `(jkt, jti)` seen before whose entry has not expired; otherwise remember it
    /// until `expires_at` (inclusive). `expires_at < now`: the proof is outside its window and
    /// is refused as too old (the `iat` check should already have caught it).
    pub fn check_and_remember(
        &self,
        jkt: &str,
        jti: &str,
        expires_at: i64,
        now: i64,
    ) -> Result<(), BindingError> {
        if jti.is_empty() {
            return Err(BindingError::ProofJtiMissing);
        }
        if jti.len() > MAX_JTI_BYTES {
            return Err(BindingError::ProofJtiTooLong);
        }
        if expires_at < now {
            return Err(BindingError::ProofTooOld);
        }
        let key = key(jkt, jti);
        let index = usize::from(key[0]) | (usize::from(key[1]) << 8);
        let shard = &self.shards[index & (self.shards.len() - 1)];
        let mut shard = shard.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(&until) = shard.entries.get(&key)
            && until >= now
        {
            return Err(BindingError::ProofReplayed);
        }
        if shard.entries.len() >= self.per_shard && !shard.entries.contains_key(&key) {
            if shard.earliest < now {
                let mut earliest = i64::MAX;
                shard.entries.retain(|_, until| {
                    let keep = *until >= now;
                    if keep {
                        earliest = earliest.min(*until);
                    }
                    keep
                });
                shard.earliest = earliest;
            }
            if shard.entries.len() >= self.per_shard {
                return Err(BindingError::ReplayMemoryFull);
            }
        }
        shard.entries.insert(key, expires_at);
        shard.earliest = shard.earliest.min(expires_at);
        Ok(())
    }
}

fn key(jkt: &str, jti: &str) -> Key {
    let mut ctx = digest::Context::new(&digest::SHA256);
    ctx.update(&(jkt.len() as u64).to_be_bytes());
    ctx.update(jkt.as_bytes());
    ctx.update(jti.as_bytes());
    let d = ctx.finish();
    let mut k = [0u8; 16];
    k.copy_from_slice(&d.as_ref()[..16]);
    k
}

#[cfg(test)]
mod tests {
    use super::*;

    const JKT: &str = "0ZcOCORZNYy-DWpqq30jZyJGHTN0d2HglBV3uiguA4I";
    const T: i64 = 1_800_000_000;

    #[test]
    fn a_jti_is_accepted_once_until_it_expires() {
        let m = ReplayMemory::new(100, 4);
        assert_eq!(m.check_and_remember(JKT, "a", T + 60, T), Ok(()));
        assert_eq!(
            m.check_and_remember(JKT, "a", T + 60, T + 1),
            Err(BindingError::ProofReplayed)
        );
        assert_eq!(
            m.check_and_remember(JKT, "a", T + 60, T + 60),
            Err(BindingError::ProofReplayed)
        );
        // the same jti under another key is a different proof
        assert_eq!(m.check_and_remember("other", "a", T + 60, T), Ok(()));
        // once expired, the entry no longer blocks (the iat check refuses such proofs anyway)
        assert_eq!(m.check_and_remember(JKT, "a", T + 200, T + 61), Ok(()));
    }

    #[test]
    fn full_memory_refuses_instead_of_forgetting_live_jtis() {
        let m = ReplayMemory::new(4, 1);
        for jti in ["1", "2", "3", "4"] {
            assert_eq!(m.check_and_remember(JKT, jti, T + 60, T), Ok(()));
        }
        assert_eq!(
            m.check_and_remember(JKT, "5", T + 60, T),
            Err(BindingError::ReplayMemoryFull)
        );
        // every remembered jti is still refused
        for jti in ["1", "2", "3", "4"] {
            assert_eq!(
                m.check_and_remember(JKT, jti, T + 60, T + 1),
                Err(BindingError::ProofReplayed)
            );
        }
        // after they expire, space is reclaimed
        assert_eq!(m.check_and_remember(JKT, "5", T + 200, T + 61), Ok(()));
        assert_eq!(m.len(), 1);
        assert!(m.capacity() >= 4);
    }

    #[test]
    fn jti_length_is_capped_and_memory_per_entry_is_fixed() {
        let m = ReplayMemory::new(10, 2);
        let long = "x".repeat(MAX_JTI_BYTES + 1);
        assert_eq!(
            m.check_and_remember(JKT, &long, T + 60, T),
            Err(BindingError::ProofJtiTooLong)
        );
        let max = "x".repeat(MAX_JTI_BYTES);
        assert_eq!(m.check_and_remember(JKT, &max, T + 60, T), Ok(()));
        assert_eq!(
            m.check_and_remember(JKT, "", T + 60, T),
            Err(BindingError::ProofJtiMissing)
        );
        assert_eq!(
            m.check_and_remember(JKT, "late", T - 1, T),
            Err(BindingError::ProofTooOld)
        );
    }

    #[test]
    fn concurrent_checks_accept_each_jti_exactly_once() {
        let m = std::sync::Arc::new(ReplayMemory::new(10_000, 16));
        let handles: Vec<_> = (0..4)
            .map(|_| {
                let m = m.clone();
                std::thread::spawn(move || {
                    (0..500)
                        .filter(|i| m.check_and_remember(JKT, &i.to_string(), T + 60, T).is_ok())
                        .count()
                })
            })
            .collect();
        let accepted: usize = handles.into_iter().map(|h| h.join().unwrap()).sum();
        assert_eq!(accepted, 500);
    }
}
