//! What the decision core asks of the outside world, as traits the core owns and `outside`
//! implements: a client's key set ([`KeyProvider`]) and its RFC 7662 introspection endpoint
//! ([`Introspect`]). The core calls them; it never knows HTTP, files or timers.
//!
//! Both are called on the Check path: [`KeyProvider::state`] on every uncached Check (one
//! lock-free load), the async methods only when a token names an unknown `kid` or a client
//! introspects.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use serde_json::{Map, Value};

use std::time::{Duration, SystemTime};

use tokio::time::Instant;

use crate::core::model::{IntrospectionConfig, JwksSettings, KeySource};
use crate::keys::Key;

/// A future the core awaits (boxed: these are the rare, I/O-bound calls).
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

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

/// The keys of one source, shared by every client using it.
pub trait KeyProvider: Send + Sync + fmt::Debug {
    /// The key set's name in metrics, logs and the admin API (redacted, bounded by config).
    fn id(&self) -> &str;
    fn source(&self) -> &KeySource;
    fn settings(&self) -> Arc<JwksSettings>;
    /// The current keys (lock-free).
    fn state(&self) -> arc_swap::Guard<Arc<KeyState>>;
    /// Usable right now: loaded once, and the last good fetch is not older than `max_stale`.
    fn available(&self, state: &KeyState) -> bool;
    /// A token named `kid`, not in the keys at `seen_generation`: refetch if allowed (rate
    /// limited, single-flight). True when the keys may have changed: look again.
    fn refetch_for_unknown_kid<'a>(
        &'a self,
        kid: &'a str,
        seen_generation: u64,
    ) -> BoxFuture<'a, bool>;
    /// Wait until loaded once (or `timeout`); whether it is loaded.
    fn wait_loaded(&self, timeout: Duration) -> BoxFuture<'_, bool>;
    /// A token without `kid` was refused because the set holds several candidate keys.
    fn note_kidless_refused(&self);
}

/// What an introspection endpoint said.
#[derive(Debug)]
pub enum Answer {
    /// `active: true`, with the response members (RFC 7662 §2.2) as claims.
    Active(Map<String, Value>),
    Inactive,
}

/// Why no answer was had: fit to log (URLs redacted; never the secret or the token).
pub type IntrospectFailure = Box<dyn std::error::Error + Send + Sync>;

/// A client's RFC 7662 introspection endpoint.
pub trait Introspect: Send + Sync + fmt::Debug {
    fn config(&self) -> &IntrospectionConfig;
    /// Ask about `token` (answers may be cached). `token_exp`: the JWT's verified `exp`.
    fn introspect<'a>(
        &'a self,
        token: &'a str,
        token_exp: Option<i64>,
        now: i64,
    ) -> BoxFuture<'a, Result<Arc<Answer>, IntrospectFailure>>;
}
