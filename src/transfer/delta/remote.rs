//! Reading byte ranges of one remote file, in increasing order, with plain single-range
//! requests (DESIGN 9 for everything else): the repositories in priority order, retries with
//! backoff, stall detection, the one device-wide bandwidth limit for every byte received
//! (the bytes of a merged gap included).
//!
//! The ranges to be read are known in advance ([`plan`]): neighbours and small gaps are
//! merged into one request of bounded size, and a read
//! inside a planned request is served from the open response. A read outside the plan (a local
//! chunk that turned out to be damaged) gets a request of its own.
//!
//! A repository that answers a range request with `200` cannot serve this update by ranges:
//! the response is dropped unread (closing its connection), the repository is remembered as
//! such for the rest of the update ([`NoRanges`], shared by every file) and the next one is
//! asked.
//! A `206` must be exactly the range asked for (`download_range`); a validator from the first
//! answer is sent in `If-Range` on the later requests to that repository, so a file replaced
//! in the middle of the update is noticed (`200`) instead of spliced.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;

use super::super::Transfer;
use crate::bandwidth::Meter;
use crate::repository::stall::SpeedWindow;
use crate::repository::{self, Repository, RepositoryError};
use crate::repository::{Download, RangeAnswer};

/// The repositories found to answer range requests with the whole file, for one update.
#[derive(Default)]
pub struct NoRanges(parking_lot::Mutex<HashSet<String>>);

impl NoRanges {
    fn contains(&self, repository: &str) -> bool {
        self.0.lock().contains(repository)
    }

    fn note(&self, repository: &str) {
        self.0.lock().insert(repository.to_string());
    }
}

const NO_RANGES: &str = "answers range requests with the whole file (200); it cannot serve a delta";

/// Why the ranges could not be read: every repository's reason.
pub struct Exhausted(pub Vec<(String, String)>);

struct Open {
    download: Box<Download>,
    /// File offset of the next byte of `pending`, then of the body.
    pos: u64,
    end: u64,
    pending: Bytes,
}

pub struct RangeReader<'a> {
    transfer: &'a Transfer,
    remote: String,
    size: u64,
    plan: Vec<(u64, u64)>,
    next: usize,
    open: Option<Open>,
    repo: usize,
    failures: u32,
    meter: Meter,
    validators: HashMap<String, String>,
    reasons: Vec<(String, String)>,
    /// The speed of the repository being read, over all its requests: a server that sends
    /// each small range slowly is a stall too.
    window: SpeedWindow,
}

impl<'a> RangeReader<'a> {
    pub fn new(transfer: &'a Transfer, remote: String, size: u64) -> Self {
        RangeReader {
            transfer,
            remote,
            size,
            plan: Vec::new(),
            next: 0,
            open: None,
            repo: 0,
            failures: 0,
            meter: Meter::default(),
            validators: HashMap::new(),
            reasons: Vec::new(),
            window: SpeedWindow::new(),
        }
    }

    /// The ranges the next reads fall in (see [`crate::chunks::plan`]), in increasing order;
    /// replaces the plan before, keeping what is known of the repositories.
    pub fn set_plan(&mut self, plan: Vec<(u64, u64)>) {
        self.plan = plan;
        self.next = 0;
        self.open = None;
    }

    /// The repository the last bytes came from.
    pub fn repository(&self) -> Option<&str> {
        self.transfer.repositories.get(self.repo).map(|r| r.name())
    }

    /// Reads bytes `start..start + len` into `out` (appended).
    pub async fn read(&mut self, start: u64, len: u64, out: &mut Vec<u8>) -> Result<(), Exhausted> {
        let end = start + len;
        let mut at = start;
        while at < end {
            let Some(repo) = self.transfer.repositories.get(self.repo).cloned() else {
                return Err(Exhausted(std::mem::take(&mut self.reasons)));
            };
            if let Some(reason) = self.transfer.down.skipped(repo.name()) {
                self.next_repository(&repo, reason);
                continue;
            }
            if self.transfer.no_ranges.contains(repo.name()) {
                self.next_repository(&repo, NO_RANGES.into());
                continue;
            }
            match self.step(&repo, at, end, out).await {
                Ok(n) => {
                    at += n;
                    if n > 0 {
                        self.failures = 0;
                    }
                }
                Err(Step::NoRanges) => {
                    self.transfer.no_ranges.note(repo.name());
                    self.next_repository(&repo, NO_RANGES.into());
                }
                Err(Step::Failed(e)) => {
                    self.open = None;
                    if e.is_retryable() {
                        self.failures += 1;
                        if let Some(pause) = self.transfer.policy.next_pause(self.failures, &e) {
                            tracing::info!(
                                "{}: {}: {e}; retrying in {:.1}s",
                                repo.name(),
                                self.remote,
                                pause.as_secs_f64()
                            );
                            tokio::time::sleep(pause).await;
                            continue;
                        }
                        self.transfer.down.note(repo.name(), &e);
                    }
                    self.next_repository(&repo, e.to_string());
                }
            }
        }
        Ok(())
    }

    /// Gives up on the repository the last bytes came from (they were wrong), and starts
    /// over from the plan's beginning with the next.
    pub fn skip_repository(&mut self, reason: String) {
        if let Some(repo) = self.transfer.repositories.get(self.repo).cloned() {
            self.next_repository(&repo, reason);
        }
        self.next = 0;
    }

    fn next_repository(&mut self, repo: &Repository, reason: String) {
        self.open = None;
        self.failures = 0;
        self.window = SpeedWindow::new();
        if let Some(next) = self.transfer.repositories.get(self.repo + 1) {
            tracing::warn!(
                repository = repo.name(),
                "{}: {} failed for a delta: {reason}; going on with {}",
                self.remote,
                repo.name(),
                next.name()
            );
        }
        self.reasons.push((repo.name().to_string(), reason));
        self.repo += 1;
    }

    /// Moves the open response to `at` (or opens one that starts there) and appends what it
    /// has of `at..end` to `out`; returns how many bytes were appended.
    async fn step(
        &mut self,
        repo: &Arc<Repository>,
        at: u64,
        end: u64,
        out: &mut Vec<u8>,
    ) -> Result<u64, Step> {
        if !self
            .open
            .as_ref()
            .is_some_and(|o| o.pos <= at && at < o.end)
        {
            self.open = None;
            while self.plan.get(self.next).is_some_and(|p| p.1 <= at) {
                self.next += 1;
            }
            let until = match self.plan.get(self.next) {
                Some(&(s, e)) if s <= at => e.max(end),
                _ => end,
            };
            self.open = Some(self.request(repo, at, until).await?);
        }
        let open = self.open.as_mut().expect("opened above");
        if open.pending.is_empty() {
            let asked = Instant::now();
            let Some(piece) = repository::next_chunk(&mut open.download).await? else {
                let url = open.download.url.clone();
                return Err(Step::Failed(RepositoryError::Connection {
                    url,
                    kind: repository::FailureKind::Body,
                    message: format!("the response ended at byte {} of {}", open.pos, open.end),
                }));
            };
            // Charged as it arrives, whatever happens to it next.
            self.transfer
                .bandwidth
                .charge(&mut self.meter, piece.len())
                .await;
            if let Some(rate) = self
                .window
                .read(&self.transfer.stall, asked.elapsed(), piece.len())
            {
                let url = open.download.url.clone();
                return Err(Step::Failed(RepositoryError::stalled(
                    url,
                    rate,
                    &self.transfer.stall,
                )));
            }
            let room = (open.end - open.pos) as usize;
            if piece.len() > room {
                let url = open.download.url.clone();
                return Err(Step::Failed(RepositoryError::Protocol {
                    url,
                    reason: "the server sent more than the range asked for".into(),
                }));
            }
            open.pending = piece;
        }
        // Skip a merged gap, then take what is wanted.
        let skip = (at - open.pos).min(open.pending.len() as u64) as usize;
        let _ = open.pending.split_to(skip);
        open.pos += skip as u64;
        if open.pos < at {
            return Ok(0);
        }
        let take = ((end - at) as usize).min(open.pending.len());
        out.extend_from_slice(&open.pending.split_to(take));
        open.pos += take as u64;
        if open.pos == open.end {
            // Read the end of the body, so that the connection goes back to the pool for the
            // next range instead of being closed as unfinished.
            if open.pending.is_empty() {
                let _ = repository::next_chunk(&mut open.download).await;
            }
            self.open = None;
        }
        Ok(take as u64)
    }

    async fn request(
        &mut self,
        repo: &Arc<Repository>,
        start: u64,
        end: u64,
    ) -> Result<Open, Step> {
        let validator = self.validators.get(repo.name()).cloned();
        let answer = repo
            .download_range(
                &self.remote,
                start,
                end - 1,
                self.size,
                validator.as_deref(),
            )
            .await?;
        match answer {
            RangeAnswer::Whole => Err(Step::NoRanges),
            RangeAnswer::Partial(download) => {
                if let Some(v) = &download.validator {
                    self.validators
                        .entry(repo.name().to_string())
                        .or_insert_with(|| v.clone());
                }
                Ok(Open {
                    download,
                    pos: start,
                    end,
                    pending: Bytes::new(),
                })
            }
        }
    }
}

enum Step {
    NoRanges,
    Failed(RepositoryError),
}

impl From<RepositoryError> for Step {
    fn from(e: RepositoryError) -> Self {
        Step::Failed(e)
    }
}
