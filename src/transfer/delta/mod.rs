//! Delta updates: putting a new file together from the chunks the device already holds and the
//! byte ranges it lacks (the index format is `crate::chunks`).
//!
//! 1. The file's chunk index is downloaded (under the bandwidth limit) and must match the size
//!    and SHA-256 `app.json` gives it.
//! 2. The part file keeps its whole, verified large chunks from an earlier run (an interrupted
//!    delta or full download resumes there).
//! 3. The seeds (the same app's active and kept previous versions) are cut the way the index
//!    says; a large chunk found there is copied.
//! 4. For the large chunks not found, their small-chunk lists are read by `Range` from
//!    `<file>.chunks.fine`, the seeds are searched for those small chunks, and only the small
//!    chunks found nowhere are downloaded.
//! 5. Every large chunk is hashed (SHA-256) after it is put together and before it is written;
//!    one that does not match is downloaded whole, and one that still does not match ends the
//!    delta. The whole file is checked against `app.json` at the end, as always.
//!
//! Anything that goes wrong on the way (no index, a wrong index, no repository that serves
//! ranges, too little to reuse) is a [`DeltaError::Fallback`] with its reason: the caller logs
//! it and downloads the file whole, resuming after the verified chunks already written. Only
//! a failure of the device's own disk ends the transfer.

mod local;
pub mod remote;

use std::collections::HashSet;
use std::sync::Arc;

use sha2::{Digest, Sha256};

use super::part::{PartFile, Pipeline};
use super::{Fetched, FileJob, Observer, Transfer};
use crate::chunks::{self, FINE_ENTRY_BYTES, Index, SmallChunk};
use crate::manifest::{ChunkIndexRef, sha256_hex};
use local::{Location, Seeds};
use remote::RangeReader;

/// A delta is not worth its requests when less than 1/16 of the missing bytes can be copied
/// locally; the file is then downloaded whole.
use crate::chunks::MIN_REUSE_DIVISOR;

pub enum DeltaError {
    /// The device's own disk failed: the transfer fails, as a full download would.
    Local(std::io::Error),
    /// The delta cannot go on; the file is downloaded whole instead, for this reason.
    Fallback(String),
}

impl From<std::io::Error> for DeltaError {
    fn from(e: std::io::Error) -> Self {
        DeltaError::Local(e)
    }
}

fn fallback(reason: impl Into<String>) -> DeltaError {
    DeltaError::Fallback(reason.into())
}

/// Runs blocking work off the async threads.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> std::io::Result<T> + Send + 'static,
) -> Result<T, DeltaError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| DeltaError::Local(std::io::Error::other(e)))?
        .map_err(DeltaError::Local)
}

/// What a large chunk of the new file is made of.
enum Source {
    /// A seed holds it whole.
    Local(Location),
    /// Its small chunks: from a seed, or to download (`None`).
    Pieces(Vec<(SmallChunk, Option<Location>)>),
    /// Downloaded whole.
    Remote,
}

impl Transfer {
    /// Fetches `job`'s file by delta. `Ok` means the part file is complete and verified.
    pub(super) async fn fetch_delta(
        &self,
        job: &FileJob,
        index_ref: &ChunkIndexRef,
        observer: &dyn Observer,
    ) -> Result<Fetched, DeltaError> {
        let seeds = Arc::new(
            blocking({
                let paths = job.seeds.clone();
                move || Ok(Seeds::open(&paths))
            })
            .await?,
        );
        if seeds.is_empty() {
            return Err(fallback(
                "no earlier version of the file on the device to reuse",
            ));
        }
        let remote_index = beside(job, &index_ref.path);
        let bytes = self.fetch_index(&remote_index, index_ref).await?;
        let index = Arc::new(
            Index::parse(&bytes, job.spec.size)
                .map_err(|e| fallback(format!("{}: {e}", index_ref.path)))?,
        );
        drop(bytes);
        let n = index.large.len();
        let mut offsets = Vec::with_capacity(n + 1);
        let mut fine_offsets = Vec::with_capacity(n + 1);
        let (mut at, mut fine_at) = (0u64, 0u64);
        for e in &index.large {
            offsets.push(at);
            fine_offsets.push(fine_at);
            at += u64::from(e.len);
            fine_at += u64::from(e.small) * FINE_ENTRY_BYTES as u64;
        }
        offsets.push(at);
        fine_offsets.push(fine_at);

        // 2. What the part file holds already.
        let done = blocking({
            let (part, local, index) = (job.part.clone(), job.local.clone(), index.clone());
            move || local::verified_prefix(&part, &local, &index)
        })
        .await?;

        // 3. Large chunks the seeds hold.
        let wanted: HashSet<[u8; 32]> = index.large[done..].iter().map(|e| e.sha256).collect();
        let large = blocking({
            let (seeds, index) = (seeds.clone(), index.clone());
            move || Ok(seeds.find_large(&index, &wanted))
        })
        .await?;
        let mut sources: Vec<Source> = index.large[done..]
            .iter()
            .map(|e| {
                large
                    .get(&e.sha256)
                    .map_or(Source::Remote, |l| Source::Local(*l))
            })
            .collect();
        drop(large);

        // 4. Small chunks of the large chunks not found.
        let missing: Vec<usize> = (done..n)
            .filter(|&i| matches!(sources[i - done], Source::Remote))
            .collect();
        if !missing.is_empty() {
            self.find_pieces(
                job,
                index_ref,
                &index,
                &fine_offsets,
                &missing,
                &seeds,
                &mut sources,
                done,
            )
            .await?;
        }
        let remaining = job.spec.size - offsets[done];
        let reusable: u64 = sources
            .iter()
            .zip(&index.large[done..])
            .map(|(s, e)| match s {
                Source::Local(_) => u64::from(e.len),
                Source::Pieces(p) => p
                    .iter()
                    .filter(|(_, l)| l.is_some())
                    .map(|(s, _)| u64::from(s.len))
                    .sum(),
                Source::Remote => 0,
            })
            .sum();
        if remaining > 0 && reusable < remaining / MIN_REUSE_DIVISOR {
            return Err(fallback(format!(
                "only {} of the {} still missing are on the device",
                crate::report::human_bytes(reusable),
                crate::report::human_bytes(remaining)
            )));
        }
        tracing::info!(app = %job.app, version = %job.version,
            "{} {}: {}: delta update: {} of {} to copy from the device, {} to download",
            job.app, job.version, job.spec.path, crate::report::human_bytes(reusable),
            crate::report::human_bytes(remaining), crate::report::human_bytes(remaining - reusable));

        // 5. Put the file together in order.
        let needed = sources.iter().zip(done..n).flat_map(|(s, i)| {
            let base = offsets[i];
            let ranges: Vec<(u64, u64)> = match s {
                Source::Local(_) => Vec::new(),
                Source::Remote => vec![(base, u64::from(index.large[i].len))],
                Source::Pieces(pieces) => {
                    let mut at = base;
                    let mut out = Vec::new();
                    for (s, l) in pieces {
                        if l.is_none() {
                            out.push((at, u64::from(s.len)));
                        }
                        at += u64::from(s.len);
                    }
                    out
                }
            };
            ranges
        });
        let plan = remote::plan(needed);
        let mut reader = RangeReader::new(self, job.remote.clone(), job.spec.size, plan);
        let part = blocking({
            let (part, local, size) = (job.part.clone(), job.local.clone(), job.spec.size);
            move || PartFile::open(&part, &local, size)
        })
        .await?;
        let mut pipe = Pipeline::new(part);
        let mut progress = Progress {
            observer,
            job,
            reported: 0,
        };
        progress.add(pipe.len() as i64);
        for (source, i) in sources.into_iter().zip(done..n) {
            let entry = index.large[i];
            let (start, len) = (offsets[i], u64::from(entry.len));
            let (bytes, copied) = self
                .assemble(&seeds, source, start, &entry, &mut reader)
                .await?;
            let bytes = match bytes {
                Some(b) => b,
                None => {
                    let mut b = Vec::with_capacity(len as usize);
                    reader.read(start, len, &mut b).await.map_err(|e| {
                        fallback(format!(
                            "the chunks could not be downloaded: {}",
                            describe(&e.0)
                        ))
                    })?;
                    if Sha256::digest(&b).as_slice() != entry.sha256 {
                        return Err(fallback(format!(
                            "bytes {start}-{} from {} do not match the chunk index",
                            start + len - 1,
                            reader.repository().unwrap_or("the repository")
                        )));
                    }
                    b
                }
            };
            pipe.push(bytes.into()).await?;
            progress.add(len as i64);
            if copied > 0 {
                observer.reused(job, copied);
            }
        }
        let digest = pipe.with_part(|p| p.sync().map(|_| p.digest())).await?;
        crate::failpoint::hit("part.synced");
        if !digest.eq_ignore_ascii_case(&job.spec.sha256) {
            pipe.with_part(|p| p.reset()).await?;
            return Err(fallback(format!(
                "the file put together from its chunks has SHA-256 {digest}, app.json says {}",
                job.spec.sha256
            )));
        }
        let repository = reader
            .repository()
            .or_else(|| self.repositories.first().map(|r| r.name()))
            .unwrap_or_default()
            .to_string();
        progress.reported = 0;
        Ok(Fetched { repository })
    }

    /// Reads the small-chunk lists of the `missing` large chunks and looks for their small
    /// chunks on the device. A list that cannot be read or is not right leaves its large
    /// chunk to be downloaded whole.
    #[allow(clippy::too_many_arguments)]
    async fn find_pieces(
        &self,
        job: &FileJob,
        index_ref: &ChunkIndexRef,
        index: &Arc<Index>,
        fine_offsets: &[u64],
        missing: &[usize],
        seeds: &Arc<Seeds>,
        sources: &mut [Source],
        done: usize,
    ) -> Result<(), DeltaError> {
        let remote_fine = beside(job, &index_ref.fine_path());
        let ranges = missing
            .iter()
            .map(|&i| (fine_offsets[i], fine_offsets[i + 1] - fine_offsets[i]));
        let mut reader =
            RangeReader::new(self, remote_fine, index.fine_bytes(), remote::plan(ranges));
        let mut lists: Vec<(usize, Vec<SmallChunk>)> = Vec::with_capacity(missing.len());
        let mut buf = Vec::new();
        for &i in missing {
            buf.clear();
            let (start, len) = (fine_offsets[i], fine_offsets[i + 1] - fine_offsets[i]);
            if let Err(e) = reader.read(start, len, &mut buf).await {
                tracing::info!(app = %job.app, version = %job.version,
                    "{} {}: {}: small-chunk lists not available ({}); the chunks missing are downloaded whole",
                    job.app, job.version, job.spec.path, describe(&e.0));
                break;
            }
            if let Some(list) = chunks::parse_fine_list(&buf, &index.params, index.large[i].len) {
                lists.push((i, list));
            }
        }
        let wanted: HashSet<(u64, u16)> = lists
            .iter()
            .flat_map(|(_, l)| l.iter().map(|s| (s.id, s.len)))
            .collect();
        if wanted.is_empty() {
            return Ok(());
        }
        let found = blocking({
            let (seeds, index) = (seeds.clone(), index.clone());
            move || Ok(seeds.find_small(&index, &wanted))
        })
        .await?;
        for (i, list) in lists {
            let pieces: Vec<(SmallChunk, Option<Location>)> = list
                .into_iter()
                .map(|s| (s, found.get(&(s.id, s.len)).copied()))
                .collect();
            if pieces.iter().any(|(_, l)| l.is_some()) {
                sources[i - done] = Source::Pieces(pieces);
            }
        }
        Ok(())
    }

    /// The bytes of one large chunk from its source, verified, and how many of them were
    /// copied from the device; `None` when they must be downloaded whole.
    async fn assemble(
        &self,
        seeds: &Arc<Seeds>,
        source: Source,
        start: u64,
        entry: &chunks::LargeEntry,
        reader: &mut RangeReader<'_>,
    ) -> Result<(Option<Vec<u8>>, u64), DeltaError> {
        let len = entry.len as usize;
        let expected = entry.sha256;
        let (buf, copied) = match source {
            Source::Remote => return Ok((None, 0)),
            Source::Local(at) => {
                let seeds = seeds.clone();
                let buf = blocking(move || {
                    let mut buf = vec![0u8; len];
                    seeds.read(at, &mut buf)?;
                    Ok(buf)
                })
                .await?;
                (buf, len as u64)
            }
            Source::Pieces(pieces) => {
                // The downloaded pieces first, in order, then the local ones in one go.
                let mut buf = vec![0u8; len];
                let mut at = 0usize;
                let mut local = Vec::new();
                let mut scratch = Vec::new();
                for (s, l) in &pieces {
                    let n = usize::from(s.len);
                    match l {
                        Some(l) => local.push((*l, at, n)),
                        None => {
                            scratch.clear();
                            reader
                                .read(start + at as u64, n as u64, &mut scratch)
                                .await
                                .map_err(|e| {
                                    fallback(format!(
                                        "the chunks could not be downloaded: {}",
                                        describe(&e.0)
                                    ))
                                })?;
                            buf[at..at + n].copy_from_slice(&scratch);
                        }
                    }
                    at += n;
                }
                let copied = local.iter().map(|(_, _, n)| *n as u64).sum();
                let seeds = seeds.clone();
                let buf = blocking(move || {
                    for (l, at, n) in local {
                        seeds.read(l, &mut buf[at..at + n])?;
                    }
                    Ok(buf)
                })
                .await?;
                (buf, copied)
            }
        };
        let (buf, ok) = blocking(move || {
            let ok = Sha256::digest(&buf).as_slice() == expected;
            Ok((buf, ok))
        })
        .await?;
        if ok {
            return Ok((Some(buf), copied));
        }
        tracing::warn!(
            "bytes {start}-{} put together from the device do not match their SHA-256 (a local copy changed?); downloading them",
            start + len as u64 - 1
        );
        Ok((None, 0))
    }

    /// Downloads a chunk index whole (it is small: about 0.1 % of its file) from the
    /// repositories in order, under the bandwidth limit, and checks it against `app.json`.
    async fn fetch_index(
        &self,
        remote: &str,
        index_ref: &ChunkIndexRef,
    ) -> Result<Vec<u8>, DeltaError> {
        let size = index_ref.size;
        let mut reader = RangeReader::new(self, remote.to_string(), size, vec![(0, size)]);
        loop {
            let mut bytes = Vec::with_capacity(size as usize);
            if let Err(e) = reader.read(0, size, &mut bytes).await {
                return Err(fallback(format!(
                    "no usable chunk index: {}",
                    describe(&e.0)
                )));
            }
            if sha256_hex(&bytes).eq_ignore_ascii_case(&index_ref.sha256) {
                return Ok(bytes);
            }
            reader.skip_repository(format!(
                "{} does not match the SHA-256 in app.json",
                index_ref.path
            ));
        }
    }
}

/// The remote path of `path` (relative to the version directory, as `app.json` gives it) of
/// `job`'s version: `job.remote` is `<app>/<version>/<file path>`.
fn beside(job: &FileJob, path: &str) -> String {
    let dir = job
        .remote
        .strip_suffix(job.spec.path.as_str())
        .unwrap_or_default();
    format!("{dir}{path}")
}

/// The progress a delta reported, taken back if it gives up (the full download that follows
/// reports the part file's bytes again).
struct Progress<'a> {
    observer: &'a dyn Observer,
    job: &'a FileJob,
    reported: i64,
}

impl Progress<'_> {
    fn add(&mut self, bytes: i64) {
        self.observer.progress(self.job, bytes);
        self.reported += bytes;
    }
}

impl Drop for Progress<'_> {
    fn drop(&mut self) {
        if self.reported != 0 {
            self.observer.progress(self.job, -self.reported);
        }
    }
}

fn describe(reasons: &[(String, String)]) -> String {
    let list: Vec<String> = reasons
        .iter()
        .map(|(r, why)| format!("{r}: {why}"))
        .collect();
    if list.is_empty() {
        "no repository to ask".into()
    } else {
        list.join("; ")
    }
}
