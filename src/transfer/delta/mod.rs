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
//!    chunks found nowhere are downloaded. This goes in windows of at most
//!    [`SMALL_BUDGET`] small chunks, so that memory stays bounded whatever the file: each
//!    window costs one more read of the seeds.
//! 5. Every large chunk is hashed (SHA-256) after it is put together and before it is written;
//!    one that does not match (or whose local bytes cannot be read) is downloaded whole, and
//!    one that still does not match ends the delta. The whole file is checked against
//!    `app.json` at the end, as always.
//!
//! Before reading every small-chunk list, a device that found little at the large level
//! (less than 1/16 of what is missing) reads a sample of 64 lists: if the sample says the
//! device holds too little, the file is downloaded whole, and the lists cost next to nothing.
//!
//! Anything that goes wrong on the way (no index, a wrong index, no repository that serves
//! ranges, too little to reuse) is a [`DeltaError::Fallback`] with its reason: the caller logs
//! it and downloads the file whole, resuming after the verified chunks already written. Only
//! a failure of the part file (the device's own disk) ends the transfer.

mod local;
mod remote;

use std::collections::HashSet;
use std::sync::Arc;

use sha2::{Digest, Sha256};

use super::part::{PartFile, Pipeline};
use super::{Fetched, FileJob, Observer, Transfer};
use crate::chunks::{self, FINE_ENTRY_BYTES, Index, MIN_REUSE_DIVISOR, SmallChunk};
use crate::manifest::{ChunkIndexRef, sha256_hex};
use crate::report::human_bytes;
use local::{Location, Seeds};
use remote::RangeReader;

pub use remote::NoRanges;

/// The most small chunks looked up at once (ids, locations and lists: 26 bytes each, about
/// 2.5 MB). With it, a 1 GiB delta peaks at about 16 MB of RSS (`docs/BENCHMARKS.md`).
const SMALL_BUDGET: usize = 96 * 1024;
/// How many small-chunk lists a device reads to decide whether a delta is worth it, when it
/// found little at the large level.
const SAMPLE_LISTS: usize = 64;

#[derive(Debug, thiserror::Error)]
pub enum DeltaError {
    /// The part file failed: the transfer fails, as a full download would.
    #[error("{0}")]
    Local(#[from] std::io::Error),
    /// The delta cannot go on; the file is downloaded whole instead, for this reason.
    #[error("{0}")]
    Fallback(String),
}

fn fallback(reason: impl Into<String>) -> DeltaError {
    DeltaError::Fallback(reason.into())
}

fn download_failed(reasons: &[(String, String)]) -> DeltaError {
    fallback(format!(
        "the chunks could not be downloaded: {}",
        describe(reasons)
    ))
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

/// Where a large chunk of the new file comes from.
#[derive(Clone, Copy)]
enum ChunkSource {
    /// A seed holds it whole.
    Local(Location),
    /// To be put together from small chunks, or downloaded.
    Missing,
}

/// The small-chunk lists of one window's missing large chunks, and where the seeds hold
/// their small chunks.
#[derive(Default)]
struct Window {
    /// The raw `.chunks.fine` entries of the lists read, back to back.
    lists: Vec<u8>,
    /// Per large chunk (by index), where its list starts in `lists`, when it was read and is
    /// right.
    at: std::collections::HashMap<usize, usize>,
    /// Ids of the small chunks wanted, sorted, and where a seed holds each (packed).
    ids: Vec<u64>,
    found: Vec<u64>,
}

impl Window {
    /// The small chunks of large chunk `i` with where a seed holds each, if its list is known.
    fn pieces(&self, i: usize, small: u16) -> Option<Vec<(SmallChunk, Option<Location>)>> {
        let start = *self.at.get(&i)?;
        let raw = &self.lists[start..start + usize::from(small) * FINE_ENTRY_BYTES];
        Some(
            raw.chunks_exact(FINE_ENTRY_BYTES)
                .map(|e| {
                    let s = SmallChunk {
                        len: u16::from_le_bytes([e[0], e[1]]),
                        id: u64::from_le_bytes(e[2..10].try_into().expect("8 bytes")),
                    };
                    let at = self
                        .ids
                        .binary_search(&s.id)
                        .ok()
                        .and_then(|k| Location::unpack(self.found[k]));
                    (s, at)
                })
                .collect(),
        )
    }

    /// Bytes of large chunk `i` the seeds hold (0 without a list).
    fn reusable(&self, i: usize, small: u16) -> u64 {
        self.pieces(i, small).map_or(0, |p| {
            p.iter()
                .filter(|(_, l)| l.is_some())
                .map(|(s, _)| u64::from(s.len))
                .sum()
        })
    }
}

/// One delta in progress: the index, where each large chunk starts in the file and in the
/// small-chunk lists, the seeds, and the readers of the two remote files.
struct Delta<'a> {
    transfer: &'a Transfer,
    job: &'a FileJob,
    index: Arc<Index>,
    offsets: Vec<u64>,
    fine_offsets: Vec<u64>,
    seeds: Arc<Seeds>,
    fine: RangeReader<'a>,
    data: RangeReader<'a>,
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
        let bytes = self
            .fetch_index(&beside(job, &index_ref.path), index_ref)
            .await?;
        let index = Arc::new(
            Index::parse(&bytes, job.spec.size)
                .map_err(|e| fallback(format!("{}: {e}", index_ref.path)))?,
        );
        drop(bytes);
        let (mut offsets, mut fine_offsets) = (vec![0u64], vec![0u64]);
        for e in &index.large {
            offsets.push(offsets[offsets.len() - 1] + u64::from(e.len));
            fine_offsets.push(
                fine_offsets[fine_offsets.len() - 1] + u64::from(e.small) * FINE_ENTRY_BYTES as u64,
            );
        }
        let mut delta = Delta {
            transfer: self,
            job,
            fine: RangeReader::new(
                self,
                beside(job, &index_ref.fine_path()),
                index.fine_bytes(),
            ),
            data: RangeReader::new(self, beside(job, &job.spec.path), job.spec.size),
            index,
            offsets,
            fine_offsets,
            seeds,
        };
        delta.run(observer).await
    }

    /// Downloads a chunk index whole (it is small: about 0.1 % of its file) from the
    /// repositories in order, under the bandwidth limit, and checks it against `app.json`.
    async fn fetch_index(
        &self,
        remote: &str,
        index_ref: &ChunkIndexRef,
    ) -> Result<Vec<u8>, DeltaError> {
        let size = index_ref.size;
        let mut reader = RangeReader::new(self, remote.to_string(), size);
        reader.set_plan(vec![(0, size)]);
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

impl Delta<'_> {
    async fn run(&mut self, observer: &dyn Observer) -> Result<Fetched, DeltaError> {
        let (job, n) = (self.job, self.index.large.len());
        // What the part file holds already.
        let done = blocking({
            let (part, local, index) = (job.part.clone(), job.local.clone(), self.index.clone());
            move || local::verified_prefix(&part, &local, &index)
        })
        .await?;
        // Large chunks the seeds hold.
        let wanted: HashSet<[u8; 32]> = self.index.large[done..].iter().map(|e| e.sha256).collect();
        let large = blocking({
            let (seeds, index) = (self.seeds.clone(), self.index.clone());
            move || Ok(seeds.find_large(&index, &wanted))
        })
        .await?;
        let sources: Vec<ChunkSource> = self.index.large[done..]
            .iter()
            .map(|e| {
                large
                    .get(&e.sha256)
                    .map_or(ChunkSource::Missing, |l| ChunkSource::Local(*l))
            })
            .collect();
        drop(large);
        let remaining = job.spec.size - self.offsets[done];
        let large_reused: u64 = (done..n)
            .filter(|&i| matches!(sources[i - done], ChunkSource::Local(_)))
            .map(|i| u64::from(self.index.large[i].len))
            .sum();
        let missing: Vec<usize> = (done..n)
            .filter(|&i| matches!(sources[i - done], ChunkSource::Missing))
            .collect();
        if remaining > 0 && large_reused < remaining / MIN_REUSE_DIVISOR {
            self.sample(&missing, large_reused, remaining).await?;
        }
        tracing::info!(app = %job.app, version = %job.version,
            "{} {}: {}: delta update: {} of {} found on the device in whole chunks, the rest from its small chunks and ranges",
            job.app, job.version, job.spec.path, human_bytes(large_reused), human_bytes(remaining));

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
            reused: 0,
        };
        progress.add(pipe.len() as i64, 0);
        let result = self
            .assemble(&sources, done, &mut pipe, &mut progress)
            .await;
        // No write may still be running when the caller falls back and reopens the file.
        let settled = pipe.with_part(|p| p.sync().map(|_| p.digest())).await;
        result?;
        let digest = settled?;
        crate::failpoint::hit("part.synced");
        if !digest.eq_ignore_ascii_case(&job.spec.sha256) {
            pipe.with_part(|p| p.reset()).await?;
            return Err(fallback(format!(
                "the file put together from its chunks has SHA-256 {digest}, app.json says {}",
                job.spec.sha256
            )));
        }
        progress.keep();
        let repository = self
            .data
            .repository()
            .or_else(|| self.transfer.repositories.first().map(|r| r.name()))
            .unwrap_or_default()
            .to_string();
        Ok(Fetched { repository })
    }

    /// Reads up to [`SAMPLE_LISTS`] small-chunk lists spread over the `missing` large chunks
    /// and falls back when they say the device holds too little of the file.
    async fn sample(
        &mut self,
        missing: &[usize],
        large_reused: u64,
        remaining: u64,
    ) -> Result<(), DeltaError> {
        let step = missing.len().div_ceil(SAMPLE_LISTS).max(1);
        let sample: Vec<usize> = missing.iter().step_by(step).copied().collect();
        let window = self.window(&sample).await?;
        let (mut bytes, mut reusable) = (0u64, 0u64);
        for &i in &sample {
            let e = self.index.large[i];
            bytes += u64::from(e.len);
            reusable += window.reusable(i, e.small);
        }
        let missing_bytes = remaining - large_reused;
        let estimate = large_reused
            + (u128::from(reusable) * u128::from(missing_bytes) / u128::from(bytes.max(1))) as u64;
        if estimate < remaining / MIN_REUSE_DIVISOR {
            return Err(fallback(format!(
                "about {} of the {} still missing are on the device",
                human_bytes(estimate),
                human_bytes(remaining)
            )));
        }
        Ok(())
    }

    /// Reads the small-chunk lists of the large chunks `chunks` (in increasing order) and
    /// looks for their small chunks in the seeds. A list that cannot be read or is not right
    /// leaves its large chunk to be downloaded whole.
    async fn window(&mut self, chunks: &[usize]) -> Result<Window, DeltaError> {
        let fo = &self.fine_offsets;
        self.fine.set_plan(chunks::plan(
            chunks.iter().map(|&i| (fo[i], fo[i + 1] - fo[i])),
        ));
        let mut window = Window::default();
        let mut buf = Vec::new();
        for &i in chunks {
            buf.clear();
            let (start, len) = (fo[i], fo[i + 1] - fo[i]);
            if let Err(e) = self.fine.read(start, len, &mut buf).await {
                let job = self.job;
                tracing::info!(app = %job.app, version = %job.version,
                    "{} {}: {}: small-chunk lists not available ({}); the chunks missing are downloaded whole",
                    job.app, job.version, job.spec.path, describe(&e.0));
                break;
            }
            let last = i + 1 == self.index.large.len();
            let entry = self.index.large[i];
            if let Some(list) = chunks::parse_fine_list(&buf, &self.index.params, entry.len, last) {
                window.at.insert(i, window.lists.len());
                window.lists.extend_from_slice(&buf);
                window.ids.extend(list.iter().map(|s| s.id));
            }
        }
        window.ids.sort_unstable();
        window.ids.dedup();
        if !window.ids.is_empty() {
            let ids = std::mem::take(&mut window.ids);
            let (found, ids) = blocking({
                let (seeds, index) = (self.seeds.clone(), self.index.clone());
                move || Ok((seeds.find_small(&index, &ids), ids))
            })
            .await?;
            window.ids = ids;
            window.found = found;
        }
        Ok(window)
    }

    /// Writes large chunks `done..` in order, a window of missing chunks at a time.
    async fn assemble(
        &mut self,
        sources: &[ChunkSource],
        done: usize,
        pipe: &mut Pipeline,
        progress: &mut Progress<'_>,
    ) -> Result<(), DeltaError> {
        let n = self.index.large.len();
        let mut start = done;
        while start < n {
            // The window: chunks start..end, with at most SMALL_BUDGET small chunks missing.
            let (mut end, mut small) = (start, 0usize);
            let mut missing = Vec::new();
            while end < n {
                if let ChunkSource::Missing = sources[end - done] {
                    let count = usize::from(self.index.large[end].small);
                    if small + count > SMALL_BUDGET && !missing.is_empty() {
                        break;
                    }
                    small += count;
                    missing.push(end);
                }
                end += 1;
            }
            let window = self.window(&missing).await?;
            self.data.set_plan(self.data_plan(&missing, &window));
            for i in start..end {
                let entry = self.index.large[i];
                let (bytes, copied) = match sources[i - done] {
                    ChunkSource::Local(at) => self.copy(at, i).await?,
                    ChunkSource::Missing => match window.pieces(i, entry.small) {
                        Some(pieces) => self.put_together(i, pieces).await?,
                        None => (None, 0),
                    },
                };
                let bytes = match bytes {
                    Some(b) => b,
                    None => self.download_whole(i).await?,
                };
                pipe.push(bytes.into()).await?;
                progress.add(i64::from(entry.len), copied);
            }
            start = end;
        }
        Ok(())
    }

    /// The byte ranges of the file to download for the `missing` chunks of a window: the
    /// small chunks no seed holds, or the whole large chunk without a usable list.
    fn data_plan(&self, missing: &[usize], window: &Window) -> Vec<(u64, u64)> {
        let mut needed = Vec::new();
        for &i in missing {
            let entry = self.index.large[i];
            match window.pieces(i, entry.small) {
                Some(pieces) if pieces.iter().any(|(_, l)| l.is_some()) => {
                    let mut at = self.offsets[i];
                    for (s, l) in pieces {
                        if l.is_none() {
                            needed.push((at, u64::from(s.len)));
                        }
                        at += u64::from(s.len);
                    }
                }
                _ => needed.push((self.offsets[i], u64::from(entry.len))),
            }
        }
        chunks::plan(needed)
    }

    /// Large chunk `i` from a seed, verified; `None` when the bytes are not right.
    async fn copy(&self, at: Location, i: usize) -> Result<(Option<Vec<u8>>, u64), DeltaError> {
        let len = self.index.large[i].len as usize;
        let seeds = self.seeds.clone();
        let read = blocking(move || {
            let mut buf = vec![0u8; len];
            Ok(seeds.read(at, &mut buf).map(|()| buf))
        })
        .await?;
        self.verified(i, read, len as u64).await
    }

    /// Large chunk `i` from its small chunks: the downloaded ones first, in order, then the
    /// local ones in one go; verified. `None` when the bytes are not right.
    async fn put_together(
        &mut self,
        i: usize,
        pieces: Vec<(SmallChunk, Option<Location>)>,
    ) -> Result<(Option<Vec<u8>>, u64), DeltaError> {
        if pieces.iter().all(|(_, l)| l.is_none()) {
            return Ok((None, 0));
        }
        let len = self.index.large[i].len as usize;
        let start = self.offsets[i];
        let mut buf = Vec::with_capacity(len);
        let mut local = Vec::new();
        for (s, l) in &pieces {
            let n = u64::from(s.len);
            match l {
                Some(l) => {
                    local.push((*l, buf.len(), n as usize));
                    buf.resize(buf.len() + n as usize, 0);
                }
                None => {
                    let at = start + buf.len() as u64;
                    self.data
                        .read(at, n, &mut buf)
                        .await
                        .map_err(|e| download_failed(&e.0))?;
                }
            }
        }
        let copied: u64 = local.iter().map(|(_, _, n)| *n as u64).sum();
        let seeds = self.seeds.clone();
        let read = blocking(move || {
            let mut buf = buf;
            for (l, at, n) in local {
                if let Err(e) = seeds.read(l, &mut buf[at..at + n]) {
                    return Ok(Err(e));
                }
            }
            Ok(Ok(buf))
        })
        .await?;
        self.verified(i, read, copied).await
    }

    /// `read` if it is large chunk `i`'s bytes, with `copied` (the bytes that came from the
    /// device); else `None`, logged.
    async fn verified(
        &self,
        i: usize,
        read: std::io::Result<Vec<u8>>,
        copied: u64,
    ) -> Result<(Option<Vec<u8>>, u64), DeltaError> {
        let (start, entry) = (self.offsets[i], self.index.large[i]);
        let end = start + u64::from(entry.len) - 1;
        let buf = match read {
            Ok(buf) => buf,
            Err(e) => {
                tracing::warn!(app = %self.job.app, "{}: bytes {start}-{end}: a local copy cannot be read ({e}); downloading them", self.job.spec.path);
                return Ok((None, 0));
            }
        };
        let (buf, ok) = blocking(move || {
            let ok = Sha256::digest(&buf).as_slice() == entry.sha256;
            Ok((buf, ok))
        })
        .await?;
        if ok {
            return Ok((Some(buf), copied));
        }
        tracing::warn!(app = %self.job.app,
            "{}: bytes {start}-{end} put together from the device do not match their SHA-256 (a local copy changed?); downloading them",
            self.job.spec.path);
        Ok((None, 0))
    }

    /// Large chunk `i` downloaded in one piece and verified; a mismatch ends the delta.
    async fn download_whole(&mut self, i: usize) -> Result<Vec<u8>, DeltaError> {
        let (start, entry) = (self.offsets[i], self.index.large[i]);
        let len = u64::from(entry.len);
        let mut b = Vec::with_capacity(len as usize);
        self.data
            .read(start, len, &mut b)
            .await
            .map_err(|e| download_failed(&e.0))?;
        if Sha256::digest(&b).as_slice() != entry.sha256 {
            return Err(fallback(format!(
                "bytes {start}-{} from {} do not match the chunk index",
                start + len - 1,
                self.data.repository().unwrap_or("the repository")
            )));
        }
        Ok(b)
    }
}

/// The remote path of `path` (relative to the version directory, as `app.json` gives it) of
/// `job`'s version.
fn beside(job: &FileJob, path: &str) -> String {
    format!("{}/{}/{path}", job.app, job.version)
}

/// The progress (and reuse) a delta reported, taken back if it gives up before the end: the
/// full download that follows reports the part file's bytes again.
struct Progress<'a> {
    observer: &'a dyn Observer,
    job: &'a FileJob,
    reported: i64,
    reused: u64,
}

impl Progress<'_> {
    fn add(&mut self, bytes: i64, reused: u64) {
        self.observer.progress(self.job, bytes);
        self.reported += bytes;
        if reused > 0 {
            self.observer.reused(self.job, reused as i64);
            self.reused += reused;
        }
    }

    /// The file is complete: what was reported stands.
    fn keep(&mut self) {
        self.reported = 0;
        self.reused = 0;
    }
}

impl Drop for Progress<'_> {
    fn drop(&mut self) {
        if self.reported != 0 {
            self.observer.progress(self.job, -self.reported);
        }
        if self.reused != 0 {
            self.observer.reused(self.job, -(self.reused as i64));
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
