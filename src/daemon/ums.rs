//! The daemon's side of the UMS channel: started with the daemon when `[ums] urls` is set,
//! restarted when a reload changes `[ums]`, closed (1001) when the daemon stops. Commands
//! from the UMS go through [`Daemon::handle`], the same path as the control socket.

use std::sync::Arc;
use std::time::Duration;

use super::Daemon;
use crate::config::settings::UmsSettings;

/// The running UMS channel: its settings, its task, and the flag that stops it.
pub(super) struct UmsTask {
    settings: UmsSettings,
    task: tokio::task::JoinHandle<()>,
    stop: crate::shutdown::Trigger,
}

impl UmsTask {
    /// Asks the channel to close its session (1001, going away) and gives it a moment.
    pub(super) async fn stop(self) {
        self.stop.fire();
        let mut task = self.task;
        if tokio::time::timeout(Duration::from_secs(1), &mut task)
            .await
            .is_err()
        {
            task.abort();
        }
    }
}

impl Daemon {
    /// (Re)starts the UMS channel when `[ums]` changed; stops it when it is gone.
    pub(super) fn start_ums(self: &Arc<Self>) {
        let settings = self.settings.read().clone();
        let wanted = settings.ums().cloned();
        let mut current = self.ums.lock();
        if current.as_ref().map(|t| &t.settings) == wanted.as_ref() {
            return;
        }
        if let Some(old) = current.take() {
            tracing::info!("UMS: [ums] changed; reconnecting");
            tokio::spawn(old.stop());
        }
        let Some(ums) = wanted else {
            return;
        };
        if let Err(e) = self.store.enable_events() {
            tracing::error!("UMS: cannot read the event queue: {e}");
        }
        let status: crate::ums::StatusFn = {
            let daemon = self.clone();
            Arc::new(move || daemon.status())
        };
        let (stop, stop_rx) = crate::shutdown::channel();
        let channel = crate::ums::Channel::new(
            ums.clone(),
            settings.update.connect_timeout,
            self.store.clone(),
            self.handler(),
            status,
            stop_rx,
        );
        *current = Some(UmsTask {
            settings: ums,
            task: tokio::spawn(channel.run()),
            stop,
        });
    }
}
