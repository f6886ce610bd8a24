//! One way to stop a task (the pattern of mini-redis's `shutdown.rs`): whoever starts tasks
//! keeps the [`Trigger`], every task gets a [`Shutdown`] and ends itself when told, at a
//! point where ending loses nothing (between commands, between connections, after a UMS
//! close frame). The daemon has one for all its tasks; the UMS channel has its own as well,
//! so that a reload can replace it without stopping the rest.
//!
//! Built on `tokio::sync::watch`: a task that starts after the trigger fired sees it at
//! once, and a trigger that is dropped counts as fired (nobody is left to keep the task).

use tokio::sync::watch;

/// Fires the stop; kept by whoever started the tasks.
#[derive(Debug)]
pub struct Trigger(watch::Sender<bool>);

/// Tells a task to stop; one clone per task.
#[derive(Debug, Clone)]
pub struct Shutdown(watch::Receiver<bool>);

/// A new pair: nothing is stopping yet.
pub fn channel() -> (Trigger, Shutdown) {
    let (tx, rx) = watch::channel(false);
    (Trigger(tx), Shutdown(rx))
}

impl Trigger {
    /// Every [`Shutdown`] of this pair now says stop (and keeps saying it).
    pub fn fire(&self) {
        let _ = self.0.send(true);
    }
}

impl Shutdown {
    /// Whether the stop has been asked for.
    pub fn is_shutdown(&self) -> bool {
        *self.0.borrow() || self.0.has_changed().is_err()
    }

    /// Returns once the stop is asked for (at once if it was already).
    pub async fn recv(&mut self) {
        let _ = self.0.wait_for(|stop| *stop).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn every_clone_sees_the_stop_and_keeps_seeing_it() {
        let (trigger, shutdown) = channel();
        let (mut a, mut b) = (shutdown.clone(), shutdown);
        assert!(!a.is_shutdown());
        let waiter = tokio::spawn(async move {
            a.recv().await;
            a.is_shutdown()
        });
        trigger.fire();
        assert!(waiter.await.unwrap());
        b.recv().await;
        b.recv().await;
        assert!(b.is_shutdown());
    }

    #[tokio::test]
    async fn a_dropped_trigger_counts_as_fired() {
        let (trigger, mut shutdown) = channel();
        drop(trigger);
        shutdown.recv().await;
        assert!(shutdown.is_shutdown());
    }
}
