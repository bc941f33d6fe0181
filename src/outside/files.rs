//! Every read of a config or key file (the config, `jwks_file`, `jwks.ca_file`).
//!
//! A file read can block: opening a FIFO waits for a writer, a device never ends, a hung network
//! filesystem stalls. On a tokio worker that stalls every Check, `/healthz` and SIGTERM with it.
//! So: non-regular files are refused before any byte is read (opened with `O_NONBLOCK` and
//! checked with `fstat` on the open handle, so a swap between a check and the open cannot slip a
//! FIFO in), reads are capped in size, and async callers read on the blocking pool with a timeout.

use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

/// Config and key files are small; anything bigger is a mistake (or `/dev/zero` behind a link).
pub const MAX_FILE_BYTES: u64 = 8 * 1024 * 1024;

/// How long an async caller waits for one file read.
pub const READ_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FileError {
    #[error("{path}: not a regular file ({kind}); refusing to read it")]
    NotRegular { path: PathBuf, kind: &'static str },
    #[error("{path}: {message}")]
    Io { path: PathBuf, message: String },
    #[error("{path}: larger than {limit} bytes")]
    TooLarge { path: PathBuf, limit: u64 },
    #[error("{path}: reading took longer than {timeout:?}")]
    Timeout { path: PathBuf, timeout: Duration },
}

/// Which file, as the filesystem sees it now: a new inode means the file was replaced (rename,
/// symlink swap), an unchanged one with a new mtime or length means it was written in place.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Stamp {
    pub dev: u64,
    pub ino: u64,
    pub len: u64,
    pub mtime: Option<SystemTime>,
}

fn kind_of(ft: std::fs::FileType) -> &'static str {
    use std::os::unix::fs::FileTypeExt;
    if ft.is_dir() {
        "a directory"
    } else if ft.is_fifo() {
        "a FIFO"
    } else if ft.is_char_device() {
        "a character device"
    } else if ft.is_block_device() {
        "a block device"
    } else if ft.is_socket() {
        "a socket"
    } else {
        "not a regular file"
    }
}

fn io_err(path: &Path, e: &std::io::Error) -> FileError {
    FileError::Io {
        path: path.to_owned(),
        message: e.to_string(),
    }
}

fn stamp_of(path: &Path, m: &std::fs::Metadata) -> Result<Stamp, FileError> {
    use std::os::unix::fs::MetadataExt;
    if !m.file_type().is_file() {
        return Err(FileError::NotRegular {
            path: path.to_owned(),
            kind: kind_of(m.file_type()),
        });
    }
    Ok(Stamp {
        dev: m.dev(),
        ino: m.ino(),
        len: m.len(),
        mtime: m.modified().ok(),
    })
}

/// `stat` (following symlinks) without opening: never blocks on a FIFO. Refuses non-regular files.
pub fn stat_blocking(path: &Path) -> Result<Stamp, FileError> {
    let m = std::fs::metadata(path).map_err(|e| io_err(path, &e))?;
    stamp_of(path, &m)
}

/// Open without blocking on a FIFO: `O_NONBLOCK` makes `open` return at once; it has no effect
/// on reads of the regular files we go on to accept.
fn open_nonblocking(path: &Path) -> std::io::Result<File> {
    let mut o = std::fs::OpenOptions::new();
    o.read(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        o.custom_flags(libc::O_NONBLOCK);
    }
    o.open(path)
}

/// Read a whole file (blocking): regular files only, at most [`MAX_FILE_BYTES`]. Also returns
/// the stamp of the file that was read (from the open handle, not a second lookup).
pub fn read_blocking_stamped(path: &Path) -> Result<(Vec<u8>, Stamp), FileError> {
    // A cheap refusal first (a path naming a FIFO is never opened at all) ...
    stat_blocking(path)?;
    let mut f = open_nonblocking(path).map_err(|e| io_err(path, &e))?;
    // ... and the decisive check on what was actually opened.
    let stamp = stamp_of(path, &f.metadata().map_err(|e| io_err(path, &e))?)?;
    if stamp.len > MAX_FILE_BYTES {
        return Err(FileError::TooLarge {
            path: path.to_owned(),
            limit: MAX_FILE_BYTES,
        });
    }
    let mut buf = Vec::with_capacity(usize::try_from(stamp.len).unwrap_or(0));
    (&mut f)
        .take(MAX_FILE_BYTES + 1)
        .read_to_end(&mut buf)
        .map_err(|e| io_err(path, &e))?;
    if buf.len() as u64 > MAX_FILE_BYTES {
        return Err(FileError::TooLarge {
            path: path.to_owned(),
            limit: MAX_FILE_BYTES,
        });
    }
    Ok((buf, stamp))
}

/// Read a whole file (blocking). For start-up and `check-config`, and inside [`run_blocking`].
pub fn read_blocking(path: &Path) -> Result<Vec<u8>, FileError> {
    read_blocking_stamped(path).map(|(b, _)| b)
}

/// Read a whole file from async code: on the blocking pool, waiting at most `timeout`.
pub async fn read(path: &Path, timeout: Duration) -> Result<Vec<u8>, FileError> {
    let p = path.to_owned();
    run_blocking(path, timeout, move || read_blocking(&p)).await
}

/// Run blocking file work on tokio's blocking pool, waiting at most `timeout` for it. On a
/// timeout the caller goes on (the work may finish later, unobserved); the runtime never stalls.
pub async fn run_blocking<T, F>(path: &Path, timeout: Duration, work: F) -> Result<T, FileError>
where
    T: Send + 'static,
    F: FnOnce() -> Result<T, FileError> + Send + 'static,
{
    match tokio::time::timeout(timeout, tokio::task::spawn_blocking(work)).await {
        Ok(Ok(r)) => r,
        Ok(Err(join)) => Err(FileError::Io {
            path: path.to_owned(),
            message: format!("the read task failed: {join}"),
        }),
        Err(_) => Err(FileError::Timeout {
            path: path.to_owned(),
            timeout,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dir(tag: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("oidc-authz-files-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn regular_files_only() {
        let d = dir("kinds");
        let f = d.join("a");
        std::fs::write(&f, b"hello").unwrap();
        assert_eq!(read_blocking(&f).unwrap(), b"hello");
        let e = read_blocking(&d).unwrap_err();
        assert!(e.to_string().contains("a directory"), "{e}");
        let e = read_blocking(Path::new("/dev/null")).unwrap_err();
        assert!(e.to_string().contains("character device"), "{e}");
        assert!(matches!(
            read_blocking(&d.join("missing")),
            Err(FileError::Io { .. })
        ));
    }
}
