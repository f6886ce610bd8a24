//! The device's side of a delta: what the part file already holds, which chunks the local
//! files (the seeds) hold and where, and reading them back. All blocking; the caller runs it
//! off the async threads. Nothing here trusts what it finds: a part file is kept only up to its
//! first large chunk whose SHA-256 is wrong, and every chunk read from a seed is hashed again
//! by the caller before it is written.

use std::collections::{HashMap, HashSet};
use std::fs::{File, OpenOptions};
use std::io::{self, Read};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::chunks::{self, Chunker, Index};

/// Where a chunk's bytes are on the device: a seed and an offset in it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Location {
    pub seed: usize,
    pub offset: u64,
}

/// The seeds, open for reading. A seed that cannot be opened is left out (and logged): it
/// only means less to reuse.
pub struct Seeds {
    files: Vec<(PathBuf, File)>,
}

impl Seeds {
    pub fn open(paths: &[PathBuf]) -> Seeds {
        let files = paths
            .iter()
            .filter_map(|p| match File::open(p) {
                Ok(f) => Some((p.clone(), f)),
                Err(e) => {
                    tracing::debug!(path = %p.display(), error = %e, "seed not readable; not reused");
                    None
                }
            })
            .collect();
        Seeds { files }
    }

    pub fn is_empty(&self) -> bool {
        self.files.is_empty()
    }

    /// Cuts every seed as `index` says and calls `each` with every large chunk and its seed.
    /// A seed that fails to read part-way keeps what was found before the failure.
    fn scan(&self, index: &Index, mut each: impl FnMut(usize, &chunks::LargeChunk)) {
        let chunker = Chunker::new(index.params);
        for (seed, (path, file)) in self.files.iter().enumerate() {
            let reader = io::BufReader::with_capacity(64 * 1024, ReadAt { file, at: 0 });
            if let Err(e) = chunks::chunk_reader(&chunker, reader, |c| {
                each(seed, &c);
                Ok(())
            }) {
                tracing::warn!(path = %path.display(), error = %e, "cannot read a local copy; reusing only what was read before");
            }
        }
    }

    /// The large chunks among `wanted` that a seed holds, each at its first location.
    pub fn find_large(
        &self,
        index: &Index,
        wanted: &HashSet<[u8; 32]>,
    ) -> HashMap<[u8; 32], Location> {
        let mut found = HashMap::new();
        self.scan(index, |seed, c| {
            if wanted.contains(&c.sha256) {
                found.entry(c.sha256).or_insert(Location {
                    seed,
                    offset: c.offset,
                });
            }
        });
        found
    }

    /// The small chunks among `wanted` (by id and length) that a seed holds.
    pub fn find_small(
        &self,
        index: &Index,
        wanted: &HashSet<(u64, u16)>,
    ) -> HashMap<(u64, u16), Location> {
        let mut found = HashMap::new();
        self.scan(index, |seed, c| {
            let mut offset = c.offset;
            for s in &c.small {
                if wanted.contains(&(s.id, s.len)) {
                    found
                        .entry((s.id, s.len))
                        .or_insert(Location { seed, offset });
                }
                offset += u64::from(s.len);
            }
        });
        found
    }

    /// Reads `buf.len()` bytes at `at`.
    pub fn read(&self, at: Location, buf: &mut [u8]) -> io::Result<()> {
        let (path, file) = &self.files[at.seed];
        file.read_exact_at(buf, at.offset)
            .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", path.display())))
    }
}

/// A `Read` over a file from an offset, with `pread` (seeds are shared, positions are not).
struct ReadAt<'a> {
    file: &'a File,
    at: u64,
}

impl Read for ReadAt<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.file.read_at(buf, self.at)?;
        self.at += n as u64;
        Ok(n)
    }
}

/// How many large chunks at the start of the part file at `path` are whole and right. The
/// file is cut back to their end (a crash may have left a partial or unverified chunk after
/// them), so that the transfer resumes at a chunk boundary. A finished file at `local` without
/// a part file (a commit interrupted after its rename) becomes the part file again, as in a
/// full download.
pub fn verified_prefix(path: &Path, local: &Path, index: &Index) -> io::Result<usize> {
    if !path.exists() && local.is_file() {
        std::fs::rename(local, path)?;
    }
    let file = match OpenOptions::new().read(true).write(true).open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(e),
    };
    let len = file.metadata()?.len();
    let mut buf = Vec::new();
    let (mut done, mut offset) = (0, 0u64);
    for entry in &index.large {
        let end = offset + u64::from(entry.len);
        if end > len {
            break;
        }
        buf.resize(entry.len as usize, 0);
        file.read_exact_at(&mut buf, offset)?;
        if Sha256::digest(&buf).as_slice() != entry.sha256 {
            break;
        }
        done += 1;
        offset = end;
    }
    if offset != len {
        file.set_len(offset)?;
        file.sync_all()?;
    }
    Ok(done)
}
