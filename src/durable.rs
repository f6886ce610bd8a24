//! Files that must survive a crash or a power cut whole or not at all: written under a
//! temporary name, fsynced, renamed over the old one, and the directory fsynced (DESIGN 3).
//! `store` keeps the state journal this way, `config` the persisted settings and the secrets
//! that came with them. And the other half: what the agent reads back or is pointed at (a
//! journal, a password file, a CA) is read only from a regular file and only up to a bound,
//! so that a FIFO or a device put in its place cannot make a command or the daemon hang.
//!
//! This module only moves bytes where it is told; it never decides what or where.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

/// A file operation that failed, with the file it was about.
#[derive(Debug, thiserror::Error)]
#[error("{}: {source}", path.display())]
pub struct FileError {
    pub path: PathBuf,
    pub source: std::io::Error,
}

fn at(path: &Path) -> impl FnOnce(std::io::Error) -> FileError + '_ {
    move |source| FileError {
        path: path.to_path_buf(),
        source,
    }
}

/// Writes `bytes` to `path` crash-safely (readable as the umask allows).
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), FileError> {
    write_with_mode(path, bytes, 0o666)
}

/// Like [`write_atomic`], for a secret: the file is mode 0600 from its first byte on.
pub fn write_private(path: &Path, bytes: &[u8]) -> Result<(), FileError> {
    write_with_mode(path, bytes, 0o600)
}

fn write_with_mode(path: &Path, bytes: &[u8], mode: u32) -> Result<(), FileError> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let mut tmp_name = path.file_name().unwrap_or_default().to_os_string();
    tmp_name.push(".tmp");
    let tmp = dir.join(tmp_name);
    // A leftover of a crash may have another mode: start from nothing.
    match std::fs::remove_file(&tmp) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(at(&tmp)(e)),
    }
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(&tmp)
        .map_err(at(&tmp))?;
    file.write_all(bytes).map_err(at(&tmp))?;
    file.sync_all().map_err(at(&tmp))?;
    crate::failpoint::hit("write_atomic.before_rename");
    std::fs::rename(&tmp, path).map_err(at(path))?;
    crate::failpoint::hit("write_atomic.after_rename");
    sync_dir(dir)
}

/// Reads a regular file of at most `limit` bytes. Anything else (a FIFO, a device, a
/// directory, a larger file) is an error that says so, without blocking.
pub fn read_regular(path: &Path, limit: u64) -> Result<Vec<u8>, FileError> {
    use std::io::Read;
    use std::os::unix::fs::OpenOptionsExt as _;
    let file = OpenOptions::new()
        .read(true)
        .custom_flags(nix::fcntl::OFlag::O_NONBLOCK.bits())
        .open(path)
        .map_err(at(path))?;
    let meta = file.metadata().map_err(at(path))?;
    if !meta.is_file() {
        return Err(at(path)(std::io::Error::other("not a regular file")));
    }
    if meta.len() > limit {
        return Err(at(path)(std::io::Error::other(format!(
            "{} bytes, more than the {limit} allowed",
            meta.len()
        ))));
    }
    let mut bytes = Vec::with_capacity(meta.len() as usize);
    file.take(limit + 1)
        .read_to_end(&mut bytes)
        .map_err(at(path))?;
    if bytes.len() as u64 > limit {
        return Err(at(path)(std::io::Error::other(format!(
            "more than the {limit} bytes allowed"
        ))));
    }
    Ok(bytes)
}

/// Makes the entries of `dir` (a rename, a removal) durable.
pub fn sync_dir(dir: &Path) -> Result<(), FileError> {
    File::open(dir).and_then(|d| d.sync_all()).map_err(at(dir))
}

/// Creates `dir` (and its parents) if needed, mode 0700 for a new one.
pub fn create_private_dir(dir: &Path) -> Result<(), FileError> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(at(dir))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn a_private_file_is_mode_600_and_replaces_the_old_one() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("secret");
        write_private(&path, b"one").unwrap();
        write_private(&path, b"two").unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"two");
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        assert!(!dir.path().join("secret.tmp").exists());
    }

    #[test]
    fn only_regular_files_within_the_bound_are_read() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("fifo");
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
        let err = read_regular(&fifo, 10).unwrap_err().to_string();
        assert!(err.contains("not a regular file"), "{err}");
        assert!(read_regular(dir.path(), 10).is_err());
        let file = dir.path().join("f");
        std::fs::write(&file, b"12345").unwrap();
        assert_eq!(read_regular(&file, 5).unwrap(), b"12345");
        assert!(read_regular(&file, 4).is_err());
    }

    #[test]
    fn a_leftover_temporary_file_does_not_stop_a_write() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("f.tmp"), b"half").unwrap();
        write_atomic(&dir.path().join("f"), b"whole").unwrap();
        assert_eq!(std::fs::read(dir.path().join("f")).unwrap(), b"whole");
    }
}
