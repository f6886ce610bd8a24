//! Moving one file from the repositories onto the disk (DESIGN 9): repositories in priority
//! order, 404 -> next at once; connection failures, timeouts and 5xx -> bounded retries with
//! backoff, then next; a repository failing mid-file -> the next continues at the byte offset;
//! SHA-256 computed while streaming; never more bytes than the manifest declares; a mismatch
//! at the end restarts the file once from zero when its bytes came from more than one source
//! (or partly from an earlier run). A repository that sends slower than `low_speed_limit` for
//! `low_speed_time` is left for the next one (curl's low-speed limit); only the time spent
//! waiting for the network counts, never the time the device's own bandwidth limit holds
//! the transfer back.
//!
//! `transfer` never decides what to download or when to activate; it gets a file and a list of
//! repositories and returns a verified file or the reason each repository failed. It knows
//! nothing of the store: a [`FileJob`] carries the paths to write (the agent gets them from the
//! store), and what the transfer learns of a source goes to its [`Observer`] as a [`Source`],
//! which the agent turns into what the store keeps.

mod delta;
mod part;
pub mod retry;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;

use crate::bandwidth::{Bandwidth, Meter};
use crate::manifest::FileSpec;
use crate::repository::stall::SpeedWindow;
pub use crate::repository::stall::Stall;
use crate::repository::{self, Repository, RepositoryError};
use part::{PartFile, Pipeline};
pub use retry::RetryPolicy;

#[derive(Debug, thiserror::Error)]
pub enum TransferError {
    #[error("{file}: {}", describe_reasons(reasons))]
    Exhausted {
        file: String,
        reasons: Vec<(String, String)>,
    },
    #[error("{}: {source}", path.display())]
    Local {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{file}: no repository to download from (none configured, or all hidden)")]
    NoRepository { file: String },
}

fn describe_reasons(reasons: &[(String, String)]) -> String {
    let list: Vec<String> = reasons
        .iter()
        .map(|(repo, why)| format!("{repo}: {why}"))
        .collect();
    format!("every repository failed ({})", list.join("; "))
}

/// One file to fetch, and where it goes.
#[derive(Debug, Clone)]
pub struct FileJob {
    pub app: String,
    pub version: String,
    pub spec: FileSpec,
    /// Path of the file below the repository root: `<app>/<version>/<path>`.
    pub remote: String,
    /// Where the bytes grow, kept across runs to resume from (a finished file left at
    /// `local` by an interrupted commit is moved back here and verified again).
    pub part: PathBuf,
    /// Where the verified file is expected once the caller commits it.
    pub local: PathBuf,
    /// What an earlier run learned of the copy the part file came from, if anything.
    pub if_range: Option<IfRange>,
    /// Local files that may hold much of this file's content (the same file of the app's
    /// active and previous versions): with a chunk index, only what they lack is downloaded.
    pub seeds: Vec<PathBuf>,
}

/// The validator an earlier run got from `repository` for the bytes already in the part
/// file: sent in `If-Range` when resuming from that same repository only.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IfRange {
    pub repository: String,
    pub validator: String,
}

/// What a transfer learned of the repository its bytes now come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Source {
    pub repository: String,
    /// Strong ETag of that repository's copy, for a later [`IfRange`].
    pub validator: Option<String>,
    /// The size of that copy, when the server said (it matched the manifest's).
    pub size: Option<u64>,
}

/// What the transfer tells its caller as it goes.
pub trait Observer: Send + Sync {
    /// Bytes are now coming from `source.repository`; its validator lets a later run resume
    /// with `If-Range`.
    fn source(&self, job: &FileJob, source: &Source);
    /// The part file grew (or, negative, was thrown away).
    fn progress(&self, job: &FileJob, delta: i64);
    /// A repository failed for this file (`not_found`: it does not have it) and the next is
    /// tried.
    fn failover(&self, job: &FileJob, repository: &str, reason: &str, not_found: bool);
    /// `bytes` of the part file's growth were copied from the device, not downloaded (or,
    /// negative, such bytes were thrown away).
    fn reused(&self, job: &FileJob, bytes: i64);
    /// The delta path gave up for `reason`; the file is downloaded whole.
    fn delta_fallback(&self, job: &FileJob, reason: &str);
}

/// A verified file: which repository completed it.
#[derive(Debug, Clone)]
pub struct Fetched {
    pub repository: String,
}

/// The transfers of one update. A repository that stays unreachable through all its retries
/// is remembered as down, so the files after it do not each wait through the same retries.
pub struct Transfer {
    repositories: Vec<Arc<Repository>>,
    bandwidth: Arc<Bandwidth>,
    policy: RetryPolicy,
    stall: Stall,
    down: Arc<retry::Unreachable>,
    /// Repositories that answered a range request with the whole file in this update.
    no_ranges: delta::NoRanges,
}

enum Attempt {
    Repo(RepositoryError),
    Local(std::io::Error),
    Down(String),
}

impl From<RepositoryError> for Attempt {
    fn from(e: RepositoryError) -> Self {
        Attempt::Repo(e)
    }
}

impl Transfer {
    /// `repositories` in the order to try, hidden ones already left out.
    pub fn new(
        repositories: Vec<Arc<Repository>>,
        bandwidth: Arc<Bandwidth>,
        policy: RetryPolicy,
        stall: Stall,
        down: Arc<retry::Unreachable>,
    ) -> Transfer {
        Transfer {
            repositories,
            bandwidth,
            policy,
            stall,
            down,
            no_ranges: delta::NoRanges::default(),
        }
    }

    pub async fn fetch(
        &self,
        job: &FileJob,
        observer: &dyn Observer,
    ) -> Result<Fetched, TransferError> {
        let local = |source| TransferError::Local {
            path: job.local.clone(),
            source,
        };
        if self.repositories.is_empty() {
            return Err(TransferError::NoRepository {
                file: job.remote.clone(),
            });
        }
        if let Some(index) = &job.spec.chunks {
            if job.seeds.is_empty() {
                tracing::debug!(app = %job.app, "{}: nothing on the device to reuse; downloading it whole", job.spec.path);
            } else {
                match self.fetch_delta(job, index, observer).await {
                    Ok(fetched) => return Ok(fetched),
                    Err(delta::DeltaError::Local(e)) => return Err(local(e)),
                    Err(delta::DeltaError::Fallback(reason)) => {
                        observer.delta_fallback(job, &reason)
                    }
                }
            }
        }
        let (part, target, size) = (job.part.clone(), job.local.clone(), job.spec.size);
        let part = tokio::task::spawn_blocking(move || PartFile::open(&part, &target, size))
            .await
            .map_err(|e| local(std::io::Error::other(e)))?
            .map_err(local)?;
        observer.progress(job, part.len() as i64);
        let mut pipe = Pipeline::new(part);
        // Bytes from an earlier run may come from a copy that has changed since (not every
        // server gives a strong ETag for If-Range): a mismatch then restarts the file once.
        let mut mixed = pipe.len() > 0;
        let mut restarted = false;
        let mut reasons = Vec::new();
        let mut index = 0;
        while let Some(repo) = self.repositories.get(index) {
            let result = match self.down.skipped(repo.name()) {
                Some(reason) => Err(Attempt::Down(reason)),
                None => self.fetch_from(repo, job, &mut pipe, observer).await,
            };
            let not_found = matches!(&result, Err(Attempt::Repo(e)) if e.is_not_found());
            let reason = match result {
                Err(Attempt::Down(reason)) => reason,
                Err(Attempt::Local(e)) => return Err(local(e)),
                Err(Attempt::Repo(e)) => format!("{e}"),
                Ok(()) => {
                    let digest = pipe
                        .with_part(|p| p.sync().map(|_| p.digest()))
                        .await
                        .map_err(local)?;
                    crate::failpoint::hit("part.synced");
                    if digest.eq_ignore_ascii_case(&job.spec.sha256) {
                        return Ok(Fetched {
                            repository: repo.name().to_string(),
                        });
                    }
                    let written = pipe.len();
                    pipe.with_part(|p| p.reset()).await.map_err(local)?;
                    observer.progress(job, -(written as i64));
                    let reason = format!(
                        "SHA-256 mismatch (got {digest}, app.json says {})",
                        job.spec.sha256
                    );
                    if std::mem::take(&mut mixed) && !restarted {
                        // The bytes came from several sources or an earlier run: which one was bad is unknown.
                        restarted = true;
                        observer.failover(
                            job,
                            repo.name(),
                            &format!("{reason}; restarting the file from zero"),
                            false,
                        );
                        continue;
                    }
                    reason
                }
            };
            observer.failover(job, repo.name(), &reason, not_found);
            reasons.push((repo.name().to_string(), reason));
            if pipe.len() > 0 {
                mixed = true;
            }
            index += 1;
        }
        Err(TransferError::Exhausted {
            file: job.remote.clone(),
            reasons,
        })
    }

    /// Tries one repository until the file is complete or the retries are used up.
    async fn fetch_from(
        &self,
        repo: &Repository,
        job: &FileJob,
        pipe: &mut Pipeline,
        observer: &dyn Observer,
    ) -> Result<(), Attempt> {
        let mut failures = 0;
        loop {
            if pipe.len() == job.spec.size {
                return Ok(());
            }
            let before = pipe.len();
            let error = match self.attempt(repo, job, pipe, observer).await {
                Ok(()) => continue,
                Err(Attempt::Repo(e)) if e.is_retryable() => e,
                Err(other) => return Err(other),
            };
            failures = if pipe.len() > before { 1 } else { failures + 1 };
            let Some(pause) = self.policy.next_pause(failures, &error) else {
                // Unreachable or too slow: the files after this one need not find out again.
                self.down.note(repo.name(), &error);
                return Err(Attempt::Repo(error));
            };
            tracing::info!(
                app = %job.app, version = %job.version, repository = repo.name(),
                "{}: {}: {error}; retrying in {:.1}s", repo.name(), job.spec.path, pause.as_secs_f64()
            );
            tokio::time::sleep(pause).await;
        }
    }

    /// One request: from the current offset to the end of the file or the first error.
    async fn attempt(
        &self,
        repo: &Repository,
        job: &FileJob,
        pipe: &mut Pipeline,
        observer: &dyn Observer,
    ) -> Result<(), Attempt> {
        let offset = pipe.len();
        let validator = job
            .if_range
            .as_ref()
            .filter(|r| r.repository == repo.name())
            .map(|r| r.validator.clone());
        // If-Range only with a validator of this same repository: another mirror's
        // would never match, and the SHA-256 check guards against mixed copies anyway.
        let mut download = repo
            .download(&job.remote, offset, validator.as_deref())
            .await?;
        let size = job.spec.size;
        if let Some(total) = download.total
            && total != size
        {
            return Err(Attempt::Repo(RepositoryError::Protocol {
                url: download.url,
                reason: format!("the server has {total} bytes, app.json says {size}"),
            }));
        }
        observer.source(
            job,
            &Source {
                repository: repo.name().to_string(),
                validator: download.validator.clone(),
                size: download.total,
            },
        );
        if download.start == 0 && offset > 0 {
            // The server ignored Range (or its copy changed): start over, never splice.
            pipe.with_part(|p| p.reset())
                .await
                .map_err(Attempt::Local)?;
            observer.progress(job, -(offset as i64));
        }
        let mut meter = Meter::default();
        let mut window = SpeedWindow::new();
        loop {
            let asked = Instant::now();
            let Some(chunk) = repository::next_chunk(&mut download).await? else {
                break;
            };
            if let Some(rate) = window.read(&self.stall, asked.elapsed(), chunk.len()) {
                return Err(Attempt::Repo(RepositoryError::stalled(
                    download.url,
                    rate,
                    &self.stall,
                )));
            }
            let room = size - pipe.len();
            let overflow = chunk.len() as u64 > room;
            let chunk = if overflow {
                chunk.slice(..room as usize)
            } else {
                chunk
            };
            self.write_limited(job, pipe, &mut meter, chunk, observer)
                .await?;
            if overflow {
                return Err(Attempt::Repo(RepositoryError::Protocol {
                    url: download.url,
                    reason: format!("the server sent more than the {size} bytes app.json declares"),
                }));
            }
        }
        if pipe.len() < size {
            return Err(Attempt::Repo(RepositoryError::Connection {
                url: download.url,
                kind: repository::FailureKind::Body,
                message: format!("the response ended after {} of {size} bytes", pipe.len()),
            }));
        }
        Ok(())
    }

    /// Passes a chunk on in pieces of at most one burst, each after the bandwidth allows it.
    async fn write_limited(
        &self,
        job: &FileJob,
        pipe: &mut Pipeline,
        meter: &mut Meter,
        mut chunk: Bytes,
        observer: &dyn Observer,
    ) -> Result<(), Attempt> {
        while !chunk.is_empty() {
            let piece = chunk.split_to(self.bandwidth.piece_size().min(chunk.len()));
            self.bandwidth.charge(meter, piece.len()).await;
            let n = piece.len() as i64;
            pipe.push(piece).await.map_err(Attempt::Local)?;
            observer.progress(job, n);
        }
        Ok(())
    }
}
