//! The device's side of a delta: what the part file already holds, which chunks the local
//! files (the seeds) hold and where, and reading them back. All blocking; the caller runs it
//! off the async threads. Nothing here trusts what it finds: a part file is kept only up to its
//! first large chunk whose SHA-256 is wrong, and every chunk read from a seed is hashed again
//! by the caller before it is written. It never writes to a seed.

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
    pub seed: u8,
    pub offset: u64,
}

/// A [`Location`] in one `u64` (seed in the top 8 bits), `NOWHERE` for none: the small-chunk
/// lookups hold one per wanted id.
pub const NOWHERE: u64 = u64::MAX;

impl Location {
    fn pack(self) -> u64 {
        (u64::from(self.seed) << 56) | self.offset
    }

    pub fn unpack(packed: u64) -> Option<Location> {
        (packed != NOWHERE).then_some(Location {
            seed: (packed >> 56) as u8,
            offset: packed & ((1 << 56) - 1),
        })
    }
}

/// The seeds (at most 8), open for reading, each with the length it had when opened: a seed
/// that grows meanwhile is read no further. A seed that cannot be opened is left out (and
/// logged): it only means less to reuse.
pub struct Seeds {
    files: Vec<(PathBuf, File, u64)>,
}

impl Seeds {
    pub fn open(paths: &[PathBuf]) -> Seeds {
        let files = paths
            .iter()
            .take(8)
            .filter_map(|p| {
                let opened = File::open(p).and_then(|f| f.metadata().map(|m| (f, m.len())));
                match opened {
                    Ok((f, len)) => Some((p.clone(), f, len)),
                    Err(e) => {
                        tracing::debug!(path = %p.display(), error = %e, "seed not readable; not reused");
                        None
                    }
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
    fn scan(&self, index: &Index, mut each: impl FnMut(u8, &chunks::LargeChunk)) {
        let chunker = Chunker::new(index.params);
        for (seed, (path, file, len)) in self.files.iter().enumerate() {
            let reader = ReadAt {
                file,
                at: 0,
                end: *len,
            };
            if let Err(e) = chunks::chunk_reader(&chunker, reader, |c| {
                each(seed as u8, &c);
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

    /// For each id of `wanted` (sorted, without duplicates), where a seed holds a small chunk
    /// with that id, packed (see [`NOWHERE`]). The id alone is the key: another chunk with the
    /// same 64-bit id only fails its large chunk's SHA-256 and is downloaded.
    pub fn find_small(&self, index: &Index, wanted: &[u64]) -> Vec<u64> {
        let mut found = vec![NOWHERE; wanted.len()];
        self.scan(index, |seed, c| {
            let mut offset = c.offset;
            for s in &c.small {
                if let Ok(i) = wanted.binary_search(&s.id)
                    && found[i] == NOWHERE
                {
                    found[i] = Location { seed, offset }.pack();
                }
                offset += u64::from(s.len);
            }
        });
        found
    }

    /// Reads `buf.len()` bytes at `at`.
    pub fn read(&self, at: Location, buf: &mut [u8]) -> io::Result<()> {
        let (path, file, _) = &self.files[usize::from(at.seed)];
        file.read_exact_at(buf, at.offset)
            .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", path.display())))
    }
}

/// A `Read` over a file up to `end`, with `pread` (seeds are shared, positions are not).
struct ReadAt<'a> {
    file: &'a File,
    at: u64,
    end: u64,
}

impl Read for ReadAt<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let room = (self.end - self.at).min(buf.len() as u64) as usize;
        let n = self.file.read_at(&mut buf[..room], self.at)?;
        self.at += n as u64;
        Ok(n)
    }
}

/// How many large chunks at the start of the part file at `path` are whole and right. The
/// file is cut back to their end (a crash may have left a partial or unverified chunk after
/// them), so that the transfer resumes at a chunk boundary.
pub fn verified_prefix(path: &Path, local: &Path, index: &Index) -> io::Result<usize> {
    crate::transfer::part::reclaim_finished(path, local)?;
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
