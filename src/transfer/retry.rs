//! How often and after how long a repository is tried again: the agent's own exponential
//! backoff with jitter, the number of retries, and the pause a failure's classification asks
//! for. Which errors are worth retrying and what `Retry-After` allows is the error's to say
//! ([`RepositoryError::retry`], beside the errors in `repository`); this module only applies it.
//!
//! [`Unreachable`] and [`retrying`] live here too, not in `repository`: both act on that
//! answer across requests (skipping a repository for the rest of a command, pausing and trying
//! a listing or an `app.json` again), and deciding which repository to try next and when is
//! `transfer`'s, never the repository client's.

use std::time::Duration;

use rand::Rng;

use crate::repository::{RepositoryError, Retry};

/// Longest pause between two attempts at one repository.
const MAX_BACKOFF: Duration = Duration::from_secs(60);

#[derive(Debug, Clone)]
pub struct RetryPolicy {
    /// Attempts after the first one that made no progress.
    pub retries: u32,
    pub base: Duration,
}

impl RetryPolicy {
    /// The pause before attempt `n` (1 = the first retry): half fixed, half random, so a fleet
    /// that failed together does not come back together.
    pub fn backoff(&self, n: u32) -> Duration {
        let exp = self
            .base
            .saturating_mul(1u32 << n.saturating_sub(1).min(16))
            .min(MAX_BACKOFF);
        let half = exp / 2;
        half + rand::rng().random_range(Duration::ZERO..=half)
    }

    /// The pause before retrying after `failures` failures in a row, or `None` when it is
    /// time to give up on this repository: the error is not worth retrying (see
    /// [`RepositoryError::retry`]) or the retries are used up.
    pub fn next_pause(&self, failures: u32, error: &RepositoryError) -> Option<Duration> {
        if failures > self.retries {
            return None;
        }
        match error.retry() {
            Retry::No => None,
            Retry::Backoff => Some(self.backoff(failures)),
            Retry::After(after) => Some(after),
        }
    }
}

/// The repositories that stayed unreachable through all their retries during one command:
/// every later request of that command (a listing, an `app.json`, a file) skips them at once,
/// so a dead mirror costs its retries once per update, not once per request.
#[derive(Debug, Default)]
pub struct Unreachable(parking_lot::Mutex<std::collections::HashMap<String, String>>);

impl Unreachable {
    /// Forgets everything (a new command starts).
    pub fn clear(&self) {
        self.0.lock().clear();
    }

    /// Why `repository` is skipped, if it is.
    pub fn skipped(&self, repository: &str) -> Option<String> {
        self.0
            .lock()
            .get(repository)
            .map(|reason| format!("skipped, unreachable earlier in this update ({reason})"))
    }

    /// Remembers `repository` as unreachable when `error` says it is (not for a 404 or a
    /// bad document: those are about one request).
    pub fn note(&self, repository: &str, error: &RepositoryError) {
        if matches!(error, RepositoryError::Connection { .. }) {
            self.0
                .lock()
                .insert(repository.to_string(), error.to_string());
        }
    }
}

/// Runs a small request (a listing, an `app.json`) with the same retry rules as a file:
/// retryable failures are tried again after a pause, up to `policy.retries` times.
pub async fn retrying<T, F, Fut>(
    policy: &RetryPolicy,
    what: &str,
    mut request: F,
) -> Result<T, RepositoryError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, RepositoryError>>,
{
    let mut failures = 0;
    loop {
        let error = match request().await {
            Ok(value) => return Ok(value),
            Err(e) => e,
        };
        failures += 1;
        let Some(pause) = policy.next_pause(failures, &error) else {
            return Err(error);
        };
        tracing::info!("{what}: {error}; retrying in {:.1}s", pause.as_secs_f64());
        tokio::time::sleep(pause).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_and_stays_bounded() {
        let p = RetryPolicy {
            retries: 5,
            base: Duration::from_secs(1),
        };
        for _ in 0..50 {
            let first = p.backoff(1);
            assert!(first >= Duration::from_millis(500) && first <= Duration::from_secs(1));
            let third = p.backoff(3);
            assert!(third >= Duration::from_secs(2) && third <= Duration::from_secs(4));
            assert!(p.backoff(40) <= MAX_BACKOFF);
        }
        let busy = |after: u64| RepositoryError::Status {
            url: url::Url::parse("http://repo/a").unwrap(),
            status: 503,
            retry_after: Some(Duration::from_secs(after)),
        };
        assert_eq!(p.next_pause(1, &busy(7)), Some(Duration::from_secs(7)));
        assert_eq!(p.next_pause(6, &busy(7)), None);
        assert_eq!(p.next_pause(1, &busy(301)), None);
    }
}
