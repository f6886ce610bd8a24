//! Cancelling the command that runs (DESIGN 7 `cancel`): while versions are planned and
//! transferred, a cancel stops it at once (the transfers are dropped, their part files kept for
//! a later resume, the apps `download-failed` with the reason, the status `Update failed:
//! cancelled` or `Delivery failed: cancelled`). Ctrl-C of a command running in its own process
//! goes the same way with its own reason (`interrupted by SIGINT`). Once the installation has
//! started it runs to its end: a half-done activation is exactly what the agent never leaves
//! behind.

use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};

use parking_lot::Mutex;
use tokio::sync::Notify;

/// Shared by the daemon (which asks) and the agent (which stops).
#[derive(Debug, Default)]
pub struct Cancel {
    /// The id of the command that runs: a cancel names it, so a cancel meant for a command
    /// that just ended never stops the next one.
    armed: Mutex<Option<String>>,
    requested: AtomicBool,
    /// What the stopped command reports: `cancelled`, or the signal that interrupted it.
    reason: Mutex<String>,
    installing: AtomicBool,
    notify: Notify,
}

/// Why a cancel was refused.
#[derive(Debug, thiserror::Error)]
pub enum Refused {
    #[error("the installation has started and runs to its end; it cannot be cancelled")]
    TooLate,
    /// The target is not the command that runs now.
    #[error("not running")]
    NotRunning,
}

impl Cancel {
    /// Command `id` starts: nothing is requested yet.
    pub fn arm(&self, id: &str) {
        let mut armed = self.armed.lock();
        self.installing.store(false, Ordering::SeqCst);
        self.requested.store(false, Ordering::SeqCst);
        *armed = Some(id.to_string());
    }

    /// The command ended.
    pub fn disarm(&self) {
        *self.armed.lock() = None;
    }

    /// Asks command `target` to stop, if it is the one that runs.
    pub fn request(&self, target: &str) -> Result<(), Refused> {
        self.request_because(target, "cancelled")
    }

    /// Asks command `target` to stop for `reason` (what its apps and status then say).
    pub fn request_because(&self, target: &str, reason: &str) -> Result<(), Refused> {
        let armed = self.armed.lock();
        if armed.as_deref() != Some(target) {
            return Err(Refused::NotRunning);
        }
        if self.installing.load(Ordering::SeqCst) {
            return Err(Refused::TooLate);
        }
        *self.reason.lock() = reason.to_string();
        self.requested.store(true, Ordering::SeqCst);
        self.notify.notify_waiters();
        Ok(())
    }

    /// From here on the command cannot be cancelled. `false` when a cancel came first.
    pub(super) fn enter_installation(&self) -> bool {
        self.installing.store(true, Ordering::SeqCst);
        !self.requested.load(Ordering::SeqCst)
    }

    /// Why the command was stopped.
    pub(super) fn reason(&self) -> String {
        let reason = self.reason.lock();
        if reason.is_empty() {
            "cancelled".to_string()
        } else {
            reason.clone()
        }
    }

    pub(super) fn is_requested(&self) -> bool {
        self.requested.load(Ordering::SeqCst)
    }

    async fn requested(&self) {
        loop {
            let notified = self.notify.notified();
            if self.is_requested() {
                return;
            }
            notified.await;
        }
    }

    /// Runs `work` unless a cancel comes first (then `None`, and `work` is dropped).
    pub(super) async fn run<T>(&self, work: impl Future<Output = T>) -> Option<T> {
        if self.is_requested() {
            return None;
        }
        tokio::select! {
            out = work => Some(out),
            () = self.requested() => None,
        }
    }
}
