//! Is a watched file still being written in place?
//!
//! `stat` cannot tell a writer that paused between two `write()`s from one that finished: both
//! leave a file whose length and mtime hold still. The kernel can. On Linux each watched file
//! gets an inotify watch for `IN_MODIFY` and `IN_CLOSE_WRITE`: a modification not yet followed by
//! a close of a writable descriptor means a write is unfinished, and its content must not be
//! loaded however long the writer pauses; a close means the writer has published what it wrote.
//!
//! The events are drained without blocking when asked ([`Writers::state`]): the kernel queues
//! `IN_MODIFY` before `write()` returns, so a change that `stat` shows has its event queued by the
//! time it is asked for.
//!
//! Where the kernel cannot say — not Linux, inotify refused (instance or watch limits), a file
//! watched only after its last write, an event queue overflow — the answer is
//! [`Writing::Unknown`] and the caller falls back to timing (ops/reload's settle time).

use std::path::PathBuf;

use crate::outside::files::Stamp;

/// What the kernel says of a watched file's writers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Writing {
    /// Modified, and no writable descriptor of it has been closed since: a write is unfinished.
    Open,
    /// A writer closed it after its last modification: what was written is published.
    Closed,
    /// The kernel cannot say (see the module documentation).
    Unknown,
}

#[cfg(target_os = "linux")]
mod imp {
    use std::collections::HashMap;
    use std::path::PathBuf;

    use inotify::{EventMask, Inotify, WatchDescriptor, WatchMask};

    use super::Writing;
    use crate::outside::files::Stamp;

    struct Watched {
        path: PathBuf,
        inode: (u64, u64),
        /// `None`: the watch could not be added (the file is timed instead).
        wd: Option<WatchDescriptor>,
    }

    pub struct Writers {
        inotify: Option<Inotify>,
        watched: Vec<Watched>,
        /// Per watched inode, the last thing its writers did; absent until something happened.
        last: HashMap<WatchDescriptor, Writing>,
    }

    impl Writers {
        pub fn new() -> Self {
            let inotify = match Inotify::init() {
                Ok(i) => Some(i),
                Err(e) => {
                    tracing::warn!(error = %e, "inotify unavailable: in-place config writes are loaded once they hold still (settle time)");
                    None
                }
            };
            Writers {
                inotify,
                watched: Vec::new(),
                last: HashMap::new(),
            }
        }

        pub fn watch(&mut self, files: &[PathBuf], stamps: &[Stamp]) {
            let Some(inotify) = &mut self.inotify else {
                return;
            };
            let mut old = std::mem::take(&mut self.watched);
            for (path, s) in files.iter().zip(stamps) {
                let inode = (s.dev, s.ino);
                // The same file, same inode: keep its watch and what is known of its writers.
                if let Some(i) = old.iter().position(|w| &w.path == path && w.inode == inode) {
                    self.watched.push(old.swap_remove(i));
                    continue;
                }
                let wd = match inotify
                    .watches()
                    .add(path, WatchMask::MODIFY | WatchMask::CLOSE_WRITE)
                {
                    Ok(wd) => Some(wd),
                    Err(e) => {
                        // e.g. fs.inotify.max_user_watches reached
                        tracing::warn!(file = %path.display(), error = %e, "cannot watch the file for writers; in-place writes to it are loaded once they hold still");
                        None
                    }
                };
                self.watched.push(Watched {
                    path: path.clone(),
                    inode,
                    wd,
                });
            }
            // Watches no longer used go (one of a deleted inode is gone already: its removal
            // error is expected), and so does what was known of them.
            for w in old {
                if let Some(wd) = w.wd
                    && !self.watched.iter().any(|n| n.wd.as_ref() == Some(&wd))
                {
                    self.last.remove(&wd);
                    let _ = inotify.watches().remove(wd);
                }
            }
        }

        pub fn state(&mut self) -> Vec<Writing> {
            let Some(inotify) = &mut self.inotify else {
                return vec![Writing::Unknown; self.watched.len()];
            };
            let mut buf = [0u8; 4096];
            let mut lost = false;
            loop {
                match inotify.read_events(&mut buf) {
                    Ok(events) => {
                        for e in events {
                            if e.mask.contains(EventMask::Q_OVERFLOW) {
                                lost = true;
                            } else if e.mask.contains(EventMask::CLOSE_WRITE) {
                                self.last.insert(e.wd, Writing::Closed);
                            } else if e.mask.contains(EventMask::MODIFY) {
                                self.last.insert(e.wd, Writing::Open);
                            }
                        }
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                    Err(e) => {
                        tracing::warn!(error = %e, "reading inotify events failed; in-place writes are timed instead");
                        lost = true;
                        break;
                    }
                }
            }
            if lost {
                // Events were lost: nothing known is trustworthy any more.
                self.last.clear();
            }
            self.watched
                .iter()
                .map(|w| {
                    w.wd.as_ref()
                        .and_then(|wd| self.last.get(wd).copied())
                        .unwrap_or(Writing::Unknown)
                })
                .collect()
        }
    }
}

#[cfg(not(target_os = "linux"))]
mod imp {
    use std::path::PathBuf;

    use super::Writing;
    use crate::outside::files::Stamp;

    /// How many files are watched (none really: every answer is `Unknown`).
    pub struct Writers(usize);

    impl Writers {
        pub fn new() -> Self {
            Writers(0)
        }
        pub fn watch(&mut self, files: &[PathBuf], _stamps: &[Stamp]) {
            self.0 = files.len();
        }
        pub fn state(&mut self) -> Vec<Writing> {
            vec![Writing::Unknown; self.0]
        }
    }
}

/// The writers of a set of files, as the kernel reports them.
pub struct Writers(imp::Writers);

impl Writers {
    pub fn new() -> Self {
        Writers(imp::Writers::new())
    }

    /// Watch exactly `files` (whose current identities are `stamps`). A file whose inode changed
    /// is watched anew; watching forgets what was known of the previous inodes.
    pub fn watch(&mut self, files: &[PathBuf], stamps: &[Stamp]) {
        self.0.watch(files, stamps);
    }

    /// For each watched file, in the order given to [`Writers::watch`], what its writers did
    /// last, up to now. Does not block.
    pub fn state(&mut self) -> Vec<Writing> {
        self.0.state()
    }
}

impl Default for Writers {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
#[cfg(target_os = "linux")]
mod tests {
    use std::io::Write;
    use std::path::Path;

    use super::*;
    use crate::outside::files::stat_blocking;

    fn watch(w: &mut Writers, paths: &[&Path]) {
        let files: Vec<PathBuf> = paths.iter().map(|p| p.to_path_buf()).collect();
        let stamps: Vec<Stamp> = paths.iter().map(|p| stat_blocking(p).unwrap()).collect();
        w.watch(&files, &stamps);
    }

    fn open_for_write(path: &Path) -> std::fs::File {
        std::fs::OpenOptions::new()
            .write(true)
            .truncate(true)
            .open(path)
            .unwrap()
    }

    #[test]
    fn a_write_is_open_until_its_writer_closes_the_file() {
        use Writing::*;
        let dir = std::env::temp_dir().join(format!("writers-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let (path, keys) = (dir.join("c.yaml"), dir.join("keys.json"));
        std::fs::write(&path, "a: 1\n").unwrap();
        std::fs::write(&keys, "{}").unwrap();
        let mut w = Writers::new();
        watch(&mut w, &[&path, &keys]);
        // watched, never written since: the kernel has nothing to say
        assert_eq!(w.state(), [Unknown, Unknown]);

        let mut f = open_for_write(&path);
        assert_eq!(
            w.state(),
            [Open, Unknown],
            "the truncation is a modification"
        );
        f.write_all(b"a: 2\n").unwrap();
        std::thread::sleep(std::time::Duration::from_millis(50));
        assert_eq!(w.state(), [Open, Unknown], "a pause is not a close");
        drop(f);
        assert_eq!(w.state(), [Closed, Unknown]);

        // write + close in one go (std::fs::write), on the other file
        std::fs::write(&keys, "{ }").unwrap();
        assert_eq!(w.state(), [Closed, Closed]);

        // a writer that opens for writing but has not written yet changed nothing
        let f = std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap();
        assert_eq!(w.state(), [Closed, Closed]);
        drop(f);

        // a replaced file is watched anew: unknown until written again; the other keeps its state
        let tmp = dir.join("c.yaml.tmp");
        std::fs::write(&tmp, "a: 4\n").unwrap();
        std::fs::rename(&tmp, &path).unwrap();
        watch(&mut w, &[&path, &keys]);
        assert_eq!(w.state(), [Unknown, Closed]);
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap();
        f.write_all(b"b: 1\n").unwrap();
        assert_eq!(w.state(), [Open, Closed]);
        drop(f);
        assert_eq!(w.state(), [Closed, Closed]);

        // a file no longer watched is no longer reported
        watch(&mut w, &[&keys]);
        let _ = open_for_write(&path);
        assert_eq!(w.state(), [Closed]);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
