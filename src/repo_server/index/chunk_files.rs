//! The chunk index of every file of at least [`MIN_INDEXED_BYTES`] (see `crate::chunks`):
//! `<file>.chunks` and `<file>.chunks.fine` beside it, written while the file is read once for
//! its SHA-256 as well, and named in its `app.json` entry.

use std::collections::HashSet;
use std::fs::{self, File};
use std::io::{BufWriter, Read, Write};
use std::path::Path;

use sha2::{Digest, Sha256};

use super::{RepoServerError, hash_file, persist, temp_file_in, write_atomically};
use crate::chunks::{self, Chunker, FINE_SUFFIX, INDEX_SUFFIX, Index, MAX_INDEX_BYTES, Params};
use crate::manifest::{ChunkIndexRef, FileSpec, sha256_hex};

/// Smaller files are always downloaded whole: what a delta could save there is less than
/// what its requests cost.
pub const MIN_INDEXED_BYTES: u64 = 256 * 1024;

/// Whether `path`, found in a version directory holding `all`, is a chunk index rather than a
/// file of the app: `X.chunks` that starts with the index's magic bytes (whether or not `X`
/// is still there), or `X.chunks.fine` beside such an index, or beside `X` when `X.chunks` is
/// missing (a run interrupted between the two). Anything else is the app's own file, and
/// [`describe`] refuses to overwrite it.
pub(super) fn is_index_file(dir: &Path, path: &str, all: &HashSet<&str>) -> bool {
    if let Some(base) = path.strip_suffix(FINE_SUFFIX) {
        let index = dir.join(format!("{base}{INDEX_SUFFIX}"));
        return starts_with_magic(&index) || (!index.exists() && all.contains(base));
    }
    path.ends_with(INDEX_SUFFIX) && starts_with_magic(&dir.join(path))
}

fn starts_with_magic(path: &Path) -> bool {
    let mut head = [0u8; 8];
    File::open(path)
        .and_then(|mut f| f.read_exact(&mut head))
        .is_ok_and(|()| &head == chunks::MAGIC)
}

/// Reads `dir/rel` once: its size and SHA-256, and for a large enough file its chunk index,
/// written beside it.
pub(super) fn describe(dir: &Path, rel: &str) -> Result<FileSpec, RepoServerError> {
    let path = dir.join(rel);
    let size = fs::metadata(&path)
        .map_err(RepoServerError::io(&path, "read the file"))?
        .len();
    if size < MIN_INDEXED_BYTES {
        let (size, sha256) = hash_file(&path)?;
        return Ok(FileSpec {
            path: rel.to_owned(),
            size,
            sha256,
            chunks: None,
        });
    }
    let index_rel = format!("{rel}{INDEX_SUFFIX}");
    let taken = dir.join(&index_rel);
    if taken.exists() && !starts_with_magic(&taken) {
        return Err(RepoServerError::BadName {
            path: taken,
            reason: format!(
                "this is where the chunk index of {rel} goes, and it is not one (an app file \
                 of that name would be overwritten)"
            ),
        });
    }
    let parent = path.parent().unwrap_or(dir);
    let mut fine = temp_file_in(parent)?;
    let fine_path = fine.path().to_owned();
    let mut reader = Hashing {
        inner: File::open(&path).map_err(RepoServerError::io(&path, "open the file"))?,
        hasher: Sha256::new(),
    };
    let mut index = Index::new(Params::DEFAULT);
    let mut writer = BufWriter::new(fine.as_file_mut());
    let mut entries = Vec::new();
    let mut write_failed = false;
    let read = chunks::chunk_reader(&Chunker::new(Params::DEFAULT), &mut reader, |chunk| {
        index.push(&chunk);
        entries.clear();
        chunks::fine_entries(&chunk.small, &mut entries);
        writer
            .write_all(&entries)
            .inspect_err(|_| write_failed = true)
    });
    let size = read.map_err(|e| {
        let (at, action) = if write_failed {
            (&fine_path, "write the temporary file")
        } else {
            (&path, "read the file")
        };
        RepoServerError::io(at, action)(e)
    })?;
    writer
        .flush()
        .map_err(RepoServerError::io(&fine_path, "write the temporary file"))?;
    drop(writer);
    let sha256 = hex::encode(reader.hasher.finalize());
    let bytes = index.encode();
    if bytes.len() as u64 > MAX_INDEX_BYTES {
        tracing::warn!(path = %path.display(), "the chunk index would be {} bytes, over the limit of {MAX_INDEX_BYTES}; this file will always be downloaded whole", bytes.len());
        return Ok(FileSpec {
            path: rel.to_owned(),
            size,
            sha256,
            chunks: None,
        });
    }
    let fine_target = dir.join(format!("{rel}{FINE_SUFFIX}"));
    persist(fine, parent, &fine_target)?;
    write_atomically(parent, &dir.join(&index_rel), &bytes)?;
    Ok(FileSpec {
        path: rel.to_owned(),
        size,
        sha256,
        chunks: Some(ChunkIndexRef {
            path: index_rel,
            size: bytes.len() as u64,
            sha256: sha256_hex(&bytes),
        }),
    })
}

/// A reader that hashes what passes through it.
struct Hashing<R> {
    inner: R,
    hasher: Sha256,
}

impl<R: Read> Read for Hashing<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }
}
