//! A partial download on disk, at the path its job names, hashed as it grows, never longer
//! than the size the manifest declares. Resuming re-reads the existing prefix once to rebuild
//! the hash. Where part files live is not decided here (the store names them).
//!
//! Writes go through [`Pipeline`], which keeps one write in flight on a blocking thread while
//! the next piece arrives from the network, so hashing and disk I/O overlap the transfer.
//! Every few MiB the written range is handed to the kernel for write-back and dropped from the
//! page cache, so a 1 GB file neither waits for one huge fsync at the end nor fills memory.

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::Path;

use bytes::Bytes;
use nix::fcntl::{PosixFadviseAdvice, posix_fadvise};
use sha2::{Digest, Sha256};

const WRITEBACK_EVERY: u64 = 8 * 1024 * 1024;

pub struct PartFile {
    file: File,
    len: u64,
    hasher: Sha256,
    written_back: u64,
}

impl PartFile {
    /// Opens (or creates) the part file `path` of `final_path`, keeping what an earlier run
    /// wrote. A finished file left by a crash between its rename and the commit becomes a part
    /// file again (it is re-verified like any other). Anything longer than `size` starts over.
    pub fn open(path: &Path, final_path: &Path, size: u64) -> io::Result<PartFile> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        reclaim_finished(path, final_path)?;
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)?;
        let mut part = PartFile {
            len: 0,
            hasher: Sha256::new(),
            written_back: 0,
            file: file.try_clone()?,
        };
        let existing = file.metadata()?.len();
        if existing > size {
            part.reset()?;
            return Ok(part);
        }
        let mut buf = vec![0u8; 1024 * 1024];
        loop {
            let n = file.read(&mut buf)?;
            if n == 0 {
                break;
            }
            part.hasher.update(&buf[..n]);
            part.len += n as u64;
        }
        part.file.seek(SeekFrom::Start(part.len))?;
        Ok(part)
    }

    pub fn len(&self) -> u64 {
        self.len
    }

    pub fn append(&mut self, data: &[u8]) -> io::Result<()> {
        self.file.write_all(data)?;
        self.hasher.update(data);
        self.len += data.len() as u64;
        if self.len - self.written_back >= WRITEBACK_EVERY {
            // Starts write-back of what is written and drops it from the page cache; only a
            // hint, so a failure changes nothing.
            let _ = posix_fadvise(
                &self.file,
                0,
                self.len as i64,
                PosixFadviseAdvice::POSIX_FADV_DONTNEED,
            );
            self.written_back = self.len;
        }
        Ok(())
    }

    /// Throws away everything written so far.
    pub fn reset(&mut self) -> io::Result<()> {
        self.file.set_len(0)?;
        self.file.seek(SeekFrom::Start(0))?;
        self.hasher = Sha256::new();
        self.len = 0;
        self.written_back = 0;
        Ok(())
    }

    /// SHA-256 of the bytes so far, lower-case hex.
    pub fn digest(&self) -> String {
        hex::encode(self.hasher.clone().finalize())
    }

    /// Makes the bytes durable.
    pub fn sync(&self) -> io::Result<()> {
        self.file.sync_all()
    }
}

/// A finished file at `final_path` without its part file `path` (a crash between the rename
/// and the commit) becomes the part file again, to be verified like any other.
pub fn reclaim_finished(path: &Path, final_path: &Path) -> io::Result<()> {
    if !path.exists() && final_path.is_file() {
        std::fs::rename(final_path, path)?;
    }
    Ok(())
}

/// Writes pieces on a blocking thread, one in flight while the caller fetches the next.
pub struct Pipeline {
    part: Option<PartFile>,
    in_flight: Option<tokio::task::JoinHandle<(PartFile, io::Result<()>)>>,
    len: u64,
}

impl Pipeline {
    pub fn new(part: PartFile) -> Pipeline {
        Pipeline {
            len: part.len(),
            part: Some(part),
            in_flight: None,
        }
    }

    /// Bytes handed to the pipeline (written, or being written).
    pub fn len(&self) -> u64 {
        self.len
    }

    pub async fn push(&mut self, data: Bytes) -> io::Result<()> {
        let mut part = self.settle().await?;
        self.len += data.len() as u64;
        self.in_flight = Some(tokio::task::spawn_blocking(move || {
            let result = part.append(&data);
            (part, result)
        }));
        Ok(())
    }

    /// Waits for the write in flight and gives access to the file.
    pub async fn settle(&mut self) -> io::Result<PartFile> {
        if let Some(handle) = self.in_flight.take() {
            let (part, result) = handle.await.map_err(io::Error::other)?;
            self.part = Some(part);
            result?;
        }
        self.part
            .take()
            .ok_or_else(|| io::Error::other("part file lost after a failed write"))
    }

    /// Returns the file after [`settle`](Self::settle).
    pub fn put_back(&mut self, part: PartFile) {
        self.len = part.len();
        self.part = Some(part);
    }

    /// Waits for all writes, then runs `f` on the file off the async threads.
    pub async fn with_part<T: Send + 'static>(
        &mut self,
        f: impl FnOnce(&mut PartFile) -> io::Result<T> + Send + 'static,
    ) -> io::Result<T> {
        let mut part = self.settle().await?;
        let (part, result) = tokio::task::spawn_blocking(move || {
            let r = f(&mut part);
            (part, r)
        })
        .await
        .map_err(io::Error::other)?;
        self.put_back(part);
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    /// A file and a part file for it (any name: the store chooses the real ones).
    fn paths(dir: &Path, name: &str) -> (PathBuf, PathBuf) {
        (dir.join(name), dir.join(format!("{name}.partial")))
    }

    #[test]
    fn resume_rebuilds_the_hash_of_the_existing_prefix() {
        let dir = tempfile::tempdir().unwrap();
        let (target, path) = paths(dir.path(), "app/1/file.bin");
        let mut part = PartFile::open(&path, &target, 10).unwrap();
        part.append(b"hello").unwrap();
        drop(part);
        let mut part = PartFile::open(&path, &target, 10).unwrap();
        assert_eq!(part.len(), 5);
        part.append(b"world").unwrap();
        assert_eq!(part.digest(), crate::manifest::sha256_hex(b"helloworld"));
        assert_eq!(std::fs::read(&path).unwrap(), b"helloworld");
    }

    #[test]
    fn a_part_longer_than_the_declared_size_starts_over() {
        let dir = tempfile::tempdir().unwrap();
        let (target, path) = paths(dir.path(), "f");
        std::fs::write(&path, b"0123456789").unwrap();
        let part = PartFile::open(&path, &target, 4).unwrap();
        assert_eq!(part.len(), 0);
        assert_eq!(std::fs::metadata(&path).unwrap().len(), 0);
    }

    #[test]
    fn a_finished_file_from_a_crashed_commit_becomes_a_part_again() {
        let dir = tempfile::tempdir().unwrap();
        let (target, path) = paths(dir.path(), "f");
        std::fs::write(&target, b"done").unwrap();
        let part = PartFile::open(&path, &target, 4).unwrap();
        assert_eq!(part.len(), 4);
        assert!(!target.exists());
        assert_eq!(std::fs::read(&path).unwrap(), b"done");
    }

    #[tokio::test]
    async fn pipeline_writes_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let (target, path) = paths(dir.path(), "f");
        let mut pipe = Pipeline::new(PartFile::open(&path, &target, 100).unwrap());
        for piece in [&b"ab"[..], b"cd", b"ef"] {
            pipe.push(Bytes::copy_from_slice(piece)).await.unwrap();
        }
        let digest = pipe.with_part(|p| Ok(p.digest())).await.unwrap();
        assert_eq!(digest, crate::manifest::sha256_hex(b"abcdef"));
        assert_eq!(pipe.len(), 6);
    }
}
