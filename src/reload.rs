//! Config hot reload: the file is re-read when its content changes (polled, which also sees a
//! Kubernetes ConfigMap's `..data` symlink swap, on any filesystem, with no extra dependency) and
//! whenever [`Reloader::trigger`] is called (SIGHUP). A new config is validated and compiled in
//! full before the atomic swap; an invalid one is rejected, logged with every error, counted in
//! `oidc_authz_config_reloads_total{result="error"}`, and the old snapshot keeps serving.

use std::hash::{DefaultHasher, Hash, Hasher};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Notify;

use crate::config::{self, ConfigErrors};
use crate::state::ServerState;

/// How often the config file is checked for changes (new rules apply within this plus the
/// reload time; the contract is 2 s).
pub const DEFAULT_POLL: Duration = Duration::from_millis(500);

/// Handle to the background reloader.
#[derive(Clone)]
pub struct Reloader {
    trigger: Arc<Notify>,
}

impl Reloader {
    /// Reload now (SIGHUP).
    pub fn trigger(&self) {
        self.trigger.notify_one();
    }
}

/// The config file's content plus that of every `jwks_file` the current config uses (static
/// keys are part of the config: a key file change reloads too).
fn fingerprint(path: &Path, state: &ServerState) -> Option<u64> {
    let bytes = std::fs::read(path).ok()?;
    let mut h = DefaultHasher::new();
    bytes.hash(&mut h);
    for c in &state.snapshot().config.clients {
        if let crate::jwks::KeySource::File(f) = &c.keys {
            std::fs::read(f).ok().hash(&mut h);
        }
    }
    Some(h.finish())
}

/// Load, validate and swap. Logs the outcome; returns the new generation.
pub fn reload_now(state: &ServerState, path: &Path) -> Result<u64, ConfigErrors> {
    let result = match config::load(path) {
        Ok(cfg) => state.reload(cfg), // counts ok / error itself
        Err(e) => {
            state.metrics.config_reload(false);
            Err(e)
        }
    };
    match &result {
        Ok(generation) => tracing::info!(config = %path.display(), generation, "config reloaded"),
        Err(errors) => {
            for e in &errors.0 {
                tracing::error!(config = %path.display(), field = %e.field, error = %e.message, "config reload rejected; the previous config keeps serving");
            }
        }
    }
    result
}

/// Start watching `path`. The task ends when `state` is dropped by everyone else.
pub fn spawn(state: Arc<ServerState>, path: PathBuf, poll: Duration) -> Reloader {
    let trigger = Arc::new(Notify::new());
    let weak = Arc::downgrade(&state);
    let notify = trigger.clone();
    // Fingerprint now, not in the task: a change between here and the task's first poll must count.
    let mut last = fingerprint(&path, &state);
    drop(state);
    tokio::spawn(async move {
        loop {
            let forced = tokio::select! {
                _ = notify.notified() => true,
                _ = tokio::time::sleep(poll) => false,
            };
            let Some(state) = weak.upgrade() else { return };
            let now = fingerprint(&path, &state);
            if forced || (now.is_some() && now != last) {
                let _ = reload_now(&state, &path);
                // after the reload: the new config may name other key files
                last = fingerprint(&path, &state).or(now);
            }
        }
    });
    Reloader { trigger }
}
