//! Cancelling the command that runs (DESIGN 7 `cancel`): while versions are planned and
//! transferred, a cancel stops it at once (the transfers are dropped, their part files kept for
//! a later resume, the apps `download-failed` with the reason, the status `Update failed:
//! cancelled`). Once the installation has started it runs to its end: a half-done activation
//! is exactly what the agent never leaves behind.

use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};

use tokio::sync::Notify;

/// Shared by the daemon (which asks) and the agent (which stops).
#[derive(Debug, Default)]
pub struct Cancel {
    requested: AtomicBool,
    installing: AtomicBool,
    notify: Notify,
}

/// Why a cancel was refused.
#[derive(Debug, thiserror::Error)]
#[error("the installation has started and runs to its end; it cannot be cancelled")]
pub struct TooLate;

impl Cancel {
    /// A new command starts: nothing is requested yet.
    pub fn arm(&self) {
        self.installing.store(false, Ordering::SeqCst);
        self.requested.store(false, Ordering::SeqCst);
    }

    /// Asks the running command to stop.
    pub fn request(&self) -> Result<(), TooLate> {
        if self.installing.load(Ordering::SeqCst) {
            return Err(TooLate);
        }
        self.requested.store(true, Ordering::SeqCst);
        self.notify.notify_waiters();
        Ok(())
    }

    /// From here on the command cannot be cancelled. `false` when a cancel came first.
    pub(super) fn enter_installation(&self) -> bool {
        self.installing.store(true, Ordering::SeqCst);
        !self.requested.load(Ordering::SeqCst)
    }

    fn is_requested(&self) -> bool {
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
