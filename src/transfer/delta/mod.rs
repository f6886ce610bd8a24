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

mod assemble;
mod local;
mod remote;
mod window;

use std::collections::HashSet;
use std::sync::Arc;

use super::part::{PartFile, Pipeline};
use super::{Fetched, FileJob, Observer, Transfer};
use crate::chunks::{FINE_ENTRY_BYTES, Index, MIN_REUSE_DIVISOR};
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
