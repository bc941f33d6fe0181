//! Config hot reload: the file is polled (which also sees a Kubernetes ConfigMap's `..data`
//! symlink swap, on any filesystem, with no extra dependency) and [`Reloader::trigger`] (SIGHUP)
//! forces a load. A new config is validated and compiled in full before the atomic swap; an
//! invalid one is rejected, logged with every error, counted in
//! `oidc_authz_config_reloads_total{result="error"}`, and the old snapshot keeps serving.
//!
//! What is loaded, and when (docs/configuration.md, "Reload"):
//! * each poll only `stat`s the config file and every `jwks_file` of the running config (no
//!   open, so a FIFO cannot block it); file contents are read only to load;
//! * a file replaced by a new inode (write a temp file + rename, a ConfigMap symlink swap) is
//!   loaded at the next poll;
//! * a file written in place is loaded once its writer has closed it (on Linux the kernel says so:
//!   `outside::writers`) — a writer paused between two `write()`s is never loaded half-written,
//!   however long it pauses; where the kernel cannot say (not Linux, no inotify, a write before
//!   the watch existed) it is loaded once stable: the same inode, length and mtime seen by two
//!   polls at least `settle` apart;
//! * a non-regular file (FIFO, device, directory), or one that cannot be read in time, is
//!   refused: one error line naming the file and why, one `config_reloads_total{result="error"}`
//!   per distinct problem, the old config keeps serving;
//! * all file work runs on the blocking pool with a timeout: the runtime, Checks, `/healthz` and
//!   SIGTERM never wait on a file.

use std::hash::{DefaultHasher, Hash, Hasher};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use tokio::sync::Notify;
use tokio::time::Instant;

use crate::config::{self, ConfigErrors, KeySource};
use crate::ops::state::ServerState;
use crate::outside::files::{self, FileError, Stamp};
use crate::outside::writers::{Writers, Writing};

/// How often the config file is checked for changes. Renames and closed in-place writes apply
/// within one poll; in-place writes the kernel cannot vouch for within `DEFAULT_POLL +
/// DEFAULT_SETTLE` (1.5 s, inside the 2 s contract).
pub const DEFAULT_POLL: Duration = Duration::from_millis(500);

/// How long an in-place write the kernel cannot vouch for must stay unchanged before it is
/// loaded (two polls at the default interval).
pub const DEFAULT_SETTLE: Duration = Duration::from_secs(1);

/// How long one load (read, validate, compile, swap) may take before the poller moves on.
const LOAD_TIMEOUT: Duration = Duration::from_secs(10);

/// Handle to the background reloader.
#[derive(Clone)]
pub struct Reloader {
    trigger: Arc<Notify>,
}

impl Reloader {
    /// Reload now (SIGHUP): loads whatever the file holds, stable or not.
    pub fn trigger(&self) {
        self.trigger.notify_one();
    }
}

/// Which config a reloader keeps current: the live one, or the `--shadow-config` candidate
/// (ops::shadow), which reloads the same way and never touches the answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    Live,
    Shadow,
}

/// The files a config consists of: the config itself, then every `jwks_file` it uses (static
/// keys are part of the config: a key file change reloads too).
fn files_of(path: &Path, state: &ServerState, target: Target) -> Vec<PathBuf> {
    let mut out = vec![path.to_owned()];
    let snap = match target {
        Target::Live => Some(state.snapshot()),
        Target::Shadow => state.shadow().map(|s| s.snapshot.clone()),
    };
    let Some(snap) = snap else { return out };
    for c in &snap.config.clients {
        if let KeySource::File(f) = &c.keys
            && !out.contains(f)
        {
            out.push(f.clone());
        }
    }
    out
}

/// What one poll saw: each file's identity (inode) and state (length, mtime). Blocking.
fn observe(files: &[PathBuf]) -> Result<Vec<Stamp>, FileError> {
    files.iter().map(|f| files::stat_blocking(f)).collect()
}

/// The content of all the files (to tell a real change from a `touch`). Blocking.
fn content_hash(files: &[PathBuf]) -> Result<u64, FileError> {
    let mut h = DefaultHasher::new();
    for f in files {
        files::read_blocking(f)?.hash(&mut h);
    }
    Ok(h.finish())
}

/// Load, validate and swap. Logs the outcome; returns the new generation. Blocking (reads the
/// config and key files): async callers run it on the blocking pool.
pub fn reload_now(state: &ServerState, path: &Path) -> Result<u64, ConfigErrors> {
    reload_target(state, path, Target::Live)
}

/// [`reload_now`] for either config. Only the live config counts in
/// `config_reloads_total`; a shadow config's outcome is logged.
pub fn reload_target(
    state: &ServerState,
    path: &Path,
    target: Target,
) -> Result<u64, ConfigErrors> {
    let result = match (config::load(path), target) {
        (Ok(cfg), Target::Live) => state.reload(cfg), // counts ok / error itself
        (Ok(cfg), Target::Shadow) => state.set_shadow(cfg),
        (Err(e), Target::Live) => {
            state.metrics.config_reload(false);
            Err(e)
        }
        (Err(e), Target::Shadow) => Err(e),
    };
    let which = match target {
        Target::Live => "config",
        Target::Shadow => "shadow config",
    };
    match &result {
        Ok(generation) => {
            tracing::info!(config = %path.display(), generation, "{which} reloaded")
        }
        Err(errors) => {
            for e in &errors.0 {
                tracing::error!(config = %path.display(), field = %e.field, error = %e.message, "{which} reload rejected; the previous one stays in use");
            }
        }
    }
    result
}

/// What the running config was loaded from.
#[derive(Clone, PartialEq, Eq)]
struct Loaded {
    files: Vec<PathBuf>,
    stamps: Vec<Stamp>,
    hash: u64,
}

/// Blocking: the files of the running config, their stamps and content.
fn current(path: &Path, state: &ServerState, target: Target) -> Result<Loaded, FileError> {
    let files = files_of(path, state, target);
    let stamps = observe(&files)?;
    let hash = content_hash(&files)?;
    Ok(Loaded {
        files,
        stamps,
        hash,
    })
}

/// The writers' tracker is used by the poller and the loads it starts (one at a time).
fn lock(w: &Mutex<Writers>) -> MutexGuard<'_, Writers> {
    w.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Poll decisions, kept apart from the I/O so that they are easy to follow.
struct Watch {
    settle: Duration,
    loaded: Option<Loaded>,
    /// The last observation that differs from `loaded`, and when it was first seen.
    pending: Option<(Vec<Stamp>, Instant)>,
    /// The last file problem reported (each distinct problem is logged and counted once).
    last_problem: Option<String>,
}

enum Next {
    Nothing,
    Load,
}

impl Watch {
    /// One poll: the files' `stamps` and what the kernel says of their `writers` (same order).
    fn on_observation(&mut self, stamps: Vec<Stamp>, writers: &[Writing], now: Instant) -> Next {
        self.last_problem = None;
        if self.loaded.as_ref().is_some_and(|l| l.stamps == stamps) {
            self.pending = None;
            return Next::Nothing;
        }
        let previous = match (&self.pending, &self.loaded) {
            (Some((p, _)), _) => Some(p),
            (None, Some(l)) => Some(&l.stamps),
            (None, None) => None,
        };
        // A new inode is a complete file put in place by rename or symlink swap: load now.
        let replaced = previous.is_some_and(|p| {
            p.len() != stamps.len()
                || p.iter()
                    .zip(&stamps)
                    .any(|(a, b)| (a.dev, a.ino) != (b.dev, b.ino))
        });
        if replaced {
            self.pending = None;
            return Next::Load;
        }
        // Written in place. What the kernel says of the files that changed since the load:
        let loaded = self.loaded.as_ref().map(|l| &l.stamps);
        let changed = stamps
            .iter()
            .enumerate()
            .filter(|(i, s)| loaded.is_none_or(|l| l.get(*i) != Some(*s)));
        let says: Vec<Writing> = changed
            .map(|(i, _)| writers.get(i).copied().unwrap_or(Writing::Unknown))
            .collect();
        if says.contains(&Writing::Open) {
            // A writer has not closed the file yet: wait, however long it pauses.
            self.pending = Some((stamps, now));
            return Next::Nothing;
        }
        if !says.is_empty() && says.iter().all(|w| *w == Writing::Closed) {
            // Every writer closed what it wrote: the content is complete.
            self.pending = None;
            return Next::Load;
        }
        // The kernel cannot say: load once the files hold still for `settle`.
        match &self.pending {
            Some((p, since)) if *p == stamps => {
                if now.duration_since(*since) >= self.settle {
                    self.pending = None;
                    Next::Load
                } else {
                    Next::Nothing
                }
            }
            _ => {
                // Written in place (or still being written): wait until it holds still.
                self.pending = Some((stamps, now));
                Next::Nothing
            }
        }
    }

    /// A file could not be used: report it once (log + metric), keep serving the old config.
    fn on_problem(&mut self, state: &ServerState, e: &FileError) {
        let text = e.to_string();
        if self.last_problem.as_deref() != Some(text.as_str()) {
            tracing::error!(error = %text, "config reload refused: a config file cannot be used; the previous config keeps serving");
            state.metrics.config_reload(false);
            self.last_problem = Some(text);
        }
    }
}

/// Start watching `path` with the default settle time. The task ends when `state` is dropped by
/// everyone else.
pub fn spawn(state: Arc<ServerState>, path: PathBuf, poll: Duration) -> Reloader {
    spawn_with_settle(state, path, poll, DEFAULT_SETTLE, Target::Live)
}

/// [`spawn`] with an explicit settle time for in-place writes.
pub fn spawn_with_settle(
    state: Arc<ServerState>,
    path: PathBuf,
    poll: Duration,
    settle: Duration,
    target: Target,
) -> Reloader {
    let trigger = Arc::new(Notify::new());
    let weak = Arc::downgrade(&state);
    let notify = trigger.clone();
    // Observe now, not in the task: a change between here and the task's first poll must count.
    // (stat and read of regular files only: this cannot hang on a FIFO.)
    let loaded = current(&path, &state, target).ok();
    let writers = Arc::new(Mutex::new(Writers::new()));
    if let Some(l) = &loaded {
        lock(&writers).watch(&l.files, &l.stamps);
    }
    let mut watch = Watch {
        settle,
        loaded,
        pending: None,
        last_problem: None,
    };
    drop(state);
    tokio::spawn(async move {
        loop {
            let forced = tokio::select! {
                _ = notify.notified() => true,
                _ = tokio::time::sleep(poll) => false,
            };
            let Some(state) = weak.upgrade() else { return };
            if !forced {
                let files = files_of(&path, &state, target);
                let w = writers.clone();
                let seen = files::run_blocking(&path, files::READ_TIMEOUT, move || {
                    let stamps = observe(&files)?;
                    let mut w = lock(&w);
                    w.watch(&files, &stamps);
                    Ok((stamps, w.state()))
                })
                .await;
                match seen {
                    Err(e) => {
                        watch.on_problem(&state, &e);
                        continue;
                    }
                    Ok((stamps, says)) => {
                        if let Next::Nothing = watch.on_observation(stamps, &says, Instant::now()) {
                            continue;
                        }
                    }
                }
            }
            let (st, p, w) = (state.clone(), path.clone(), writers.clone());
            let known = watch.loaded.as_ref().map(|l| l.hash);
            let outcome = files::run_blocking(&path, LOAD_TIMEOUT, move || {
                // Stamps taken before any read: a write during or after the load changes them,
                // so the next poll sees it and loads the complete file.
                let files = files_of(&p, &st, target);
                let stamps = observe(&files)?;
                if !forced && lock(&w).state().contains(&Writing::Open) {
                    return Ok(None); // a writer started since the poll: wait for it to close
                }
                // A `touch` (new mtime, same content) is not a reload.
                let hash = content_hash(&files)?;
                if forced || Some(hash) != known {
                    let _ = reload_target(&st, &p, target);
                }
                // After the load: the new config may name other key files.
                if files_of(&p, &st, target) != files {
                    return current(&p, &st, target).map(Some);
                }
                Ok(Some(Loaded {
                    files,
                    stamps,
                    hash,
                }))
            })
            .await;
            match outcome {
                Ok(Some(now)) => {
                    lock(&writers).watch(&now.files, &now.stamps);
                    watch.loaded = Some(now);
                }
                Ok(None) => {}
                Err(e) => watch.on_problem(&state, &e),
            }
        }
    });
    Reloader { trigger }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stamp(ino: u64, len: u64) -> Stamp {
        Stamp {
            dev: 1,
            ino,
            len,
            mtime: None,
        }
    }

    use Writing::{Closed as C, Open as O, Unknown as U};

    /// Where the kernel cannot say, in-place writes wait for `settle`; a new inode loads at once.
    #[tokio::test(start_paused = true)]
    async fn stable_or_replaced_content_only() {
        let mut w = Watch {
            settle: Duration::from_secs(1),
            loaded: Some(Loaded {
                files: vec![],
                stamps: vec![stamp(1, 10)],
                hash: 0,
            }),
            pending: None,
            last_problem: None,
        };
        let t0 = Instant::now();
        assert!(matches!(
            w.on_observation(vec![stamp(1, 10)], &[U], t0),
            Next::Nothing
        ));
        // first half written in place
        assert!(matches!(
            w.on_observation(vec![stamp(1, 5)], &[U], t0),
            Next::Nothing
        ));
        let t = t0 + Duration::from_millis(500);
        assert!(matches!(
            w.on_observation(vec![stamp(1, 5)], &[U], t),
            Next::Nothing
        ));
        // second half, before settle
        let t = t0 + Duration::from_millis(900);
        assert!(matches!(
            w.on_observation(vec![stamp(1, 20)], &[U], t),
            Next::Nothing
        ));
        let t = t0 + Duration::from_millis(1400);
        assert!(matches!(
            w.on_observation(vec![stamp(1, 20)], &[U], t),
            Next::Nothing
        ));
        let t = t0 + Duration::from_millis(1900);
        assert!(matches!(
            w.on_observation(vec![stamp(1, 20)], &[U], t),
            Next::Load
        ));
        // a rename swap: new inode, loaded at the first sight
        assert!(matches!(
            w.on_observation(vec![stamp(2, 20)], &[U], t),
            Next::Load
        ));
    }

    /// Where the kernel says, an in-place write loads when its writer closed the file, at once,
    /// and never while it is open, however long the writer pauses.
    #[tokio::test(start_paused = true)]
    async fn closed_writes_load_at_once_open_ones_never() {
        let mut w = Watch {
            settle: Duration::from_secs(1),
            loaded: Some(Loaded {
                files: vec![],
                stamps: vec![stamp(1, 10), stamp(2, 10)],
                hash: 0,
            }),
            pending: None,
            last_problem: None,
        };
        let t0 = Instant::now();
        let t = |ms| t0 + Duration::from_millis(ms);
        // first half written, writer still open: held back far beyond `settle`
        for ms in [0, 500, 1500, 10_000] {
            assert!(matches!(
                w.on_observation(vec![stamp(1, 5), stamp(2, 10)], &[O, U], t(ms)),
                Next::Nothing
            ));
        }
        // closed: loaded at once (the unchanged key file's unknown history does not matter)
        assert!(matches!(
            w.on_observation(vec![stamp(1, 20), stamp(2, 10)], &[C, U], t(10_001)),
            Next::Load
        ));
        // a changed file the kernel cannot vouch for falls back to `settle`
        assert!(matches!(
            w.on_observation(vec![stamp(1, 20), stamp(2, 11)], &[C, U], t(10_002)),
            Next::Nothing
        ));
        assert!(matches!(
            w.on_observation(vec![stamp(1, 20), stamp(2, 11)], &[C, U], t(11_002)),
            Next::Load
        ));
    }
}
