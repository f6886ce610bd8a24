//! The daemon's worker: the queued commands, one at a time, each when its time has come; and
//! at start the work `check_on_boot` asks for.

use std::time::Duration;

use chrono::Utc;
use tracing::Instrument;

use super::{Daemon, queue};
use crate::agent::{InformUser, Outcome, UpdateOptions};
use crate::idf::Idf;
use crate::store::{IdfRef, Queued, QueuedCommand, StoreError};

/// The longest the worker sleeps before it looks at the queue again (the clock may jump).
const MAX_NAP: Duration = Duration::from_secs(3600);

impl Daemon {
    /// At start: an assignment that has not arrived yet is tried again (`check_on_boot`), and
    /// the configuration's `[[app]]` tables count when nobody assigned anything.
    pub(super) fn queue_boot_work(&self) -> Result<(), StoreError> {
        let settings = self.settings.read().clone();
        let state = self.store.snapshot();
        let (idf, why) = match state.idf {
            Some(_) => {
                let missing = state.apps.iter().any(|a| a.state.awaits_transfer());
                if !settings.update.check_on_boot || !missing {
                    return Ok(());
                }
                match self.store.assigned_idf() {
                    Some(idf) => (
                        idf,
                        "check_on_boot: the assigned apps are not all in place; transfer queued",
                    ),
                    None => return Ok(()),
                }
            }
            // Whatever check_on_boot says: until an IDF is assigned, [[app]] is the device's
            // own list, and it is brought in place at start.
            None if !settings.apps.is_empty() => (
                Idf {
                    apps: settings.apps.clone(),
                },
                "no IDF assigned: the [[app]] tables of the configuration are transferred; \
                 transfer queued",
            ),
            None => return Ok(()),
        };
        let id = format!("boot-{}", Utc::now().format("%Y%m%dT%H%M%S%.3f"));
        let not_before = self.splayed();
        self.store.update_with_document(Some(&idf), |s, stored| {
            if let Some(idf) = stored {
                s.commands.push(QueuedCommand {
                    id: id.clone(),
                    command: Queued::Assign { idf },
                    not_before,
                    deferrals: 0,
                });
            }
        })?;
        tracing::info!(command_id = %id, "{why}");
        Ok(())
    }

    /// Runs queued commands one at a time, each when its time has come.
    /// Ends when `shutdown` says so; a command that runs then is dropped where it waits (it
    /// stays queued, its partial files stay).
    pub(super) async fn work(self: std::sync::Arc<Self>, mut shutdown: crate::shutdown::Shutdown) {
        loop {
            if shutdown.is_shutdown() {
                return;
            }
            let now = Utc::now();
            match queue::next(&self.store.snapshot(), now) {
                Ok(command) => {
                    let span = tracing::info_span!("command", command_id = %command.id);
                    tokio::select! {
                        () = self.execute(command).instrument(span) => {}
                        () = shutdown.recv() => return,
                    }
                }
                Err(next_due) => {
                    let wait = next_due
                        .and_then(|t| t.signed_duration_since(now).to_std().ok())
                        .unwrap_or(MAX_NAP)
                        .min(MAX_NAP);
                    tokio::select! {
                        _ = self.wake.notified() => {}
                        _ = tokio::time::sleep(wait) => {}
                        () = shutdown.recv() => return,
                    }
                }
            }
        }
    }

    async fn execute(&self, command: QueuedCommand) {
        self.cancel.arm(&command.id);
        // A cancel that came between picking and arming removed it from the queue.
        if !queue::knows_waiting(&self.store.snapshot(), &command.id) {
            self.cancel.disarm();
            tracing::info!(command_id = %command.id, "command {}: cancelled before it started", command.id);
            return;
        }
        *self.running.lock() = Some(command.id.clone());
        let outcome = self.run_command(&command).await;
        let id = &command.id;
        let reminder = self.settings.read().update.reminder_interval;
        let mut reboot = None;
        let result = match outcome {
            Ok(o) if o.deferred => {
                let when = chrono::Duration::from_std(reminder)
                    .ok()
                    .and_then(|d| Utc::now().checked_add_signed(d))
                    .unwrap_or_else(Utc::now);
                tracing::info!(command_id = %id, "command {id}: deferred by the user; asking again at {}", when.to_rfc3339());
                queue::defer(&self.store, id, when)
            }
            Ok(o) => {
                tracing::info!(command_id = %id, "command {id}: finished: {}", o.status);
                let finished = queue::finish(&self.store, id);
                reboot = Some(o);
                finished
            }
            Err(reason) => {
                let reason = crate::report::clean(&reason).into_owned();
                tracing::error!(command_id = %id, "command {id}: {reason}");
                // A command that failed before the agent could say so (an IDF URL that does not
                // answer, an unreadable stored IDF) must not leave an older outcome standing.
                let words = match command.command {
                    Queued::Update(_) => crate::report::Command::Update,
                    Queued::Delivery { .. } | Queued::Assign { .. } => {
                        crate::report::Command::Delivery
                    }
                };
                let status = crate::report::StatusText::failed(words, &reason).to_string();
                if let Err(e) = self.store.update(|s| s.update_status = Some(status)) {
                    tracing::error!(command_id = %id, "command {id}: cannot record the failure: {e}");
                }
                queue::finish(&self.store, id)
            }
        };
        self.cancel.disarm();
        if let Err(e) = result {
            tracing::error!(command_id = %id, "command {id}: cannot update the queue: {e}");
            tokio::time::sleep(Duration::from_secs(5)).await;
        }
        *self.running.lock() = None;
        // Last: once the command is off the queue and its status recorded, a reboot loses
        // nothing (the daemon is stopped within moments of `systemctl reboot`).
        if let Some(outcome) = reboot {
            let agent = self.agent.read().clone();
            agent.reboot_if_wanted(&outcome).await;
        }
    }

    fn stored_idf(&self, r: &IdfRef) -> Result<Idf, String> {
        self.store
            .idf(r)
            .map_err(|e| format!("the command's IDF cannot be read: {e}"))
    }

    /// Without an IDF in the command: the rule of `agent::wanted` (the last assigned one, else
    /// the `[[app]]` tables, else what is on the device).
    fn fallback_idf(&self) -> Idf {
        let settings = self.settings.read();
        crate::agent::wanted::wanted(self.store.assigned_idf(), &settings, &self.store.snapshot())
            .map_or(Idf { apps: Vec::new() }, |(idf, _)| idf)
    }

    async fn run_command(&self, queued: &QueuedCommand) -> Result<Outcome, String> {
        let agent = self.agent.read().clone();
        let max_deferrals = self.settings.read().update.max_deferrals;
        let result = match &queued.command {
            Queued::Assign { idf } => {
                let options = UpdateOptions {
                    stage_only: true,
                    ..UpdateOptions::default()
                };
                agent.update(&self.stored_idf(idf)?, &options).await
            }
            Queued::Delivery { idf } => {
                let idf = match idf {
                    Some(r) => self.stored_idf(r)?,
                    None => self.fallback_idf(),
                };
                agent.deliver(&idf).await
            }
            Queued::Update(u) => {
                let idf = match (&u.idf, &u.idf_url) {
                    (Some(r), _) => self.stored_idf(r)?,
                    (None, Some(url)) => {
                        let settings = self.settings.read().clone();
                        crate::repository::fetch_idf(url, &settings)
                            .await
                            .map_err(|e| format!("IDF {url}: {e}"))?
                    }
                    (None, None) => self.fallback_idf(),
                };
                let can_cancel = u.user_can_cancel && queued.deferrals < max_deferrals;
                let options = UpdateOptions {
                    clean: u.clean,
                    force: u.force,
                    stage_only: false,
                    inform_user: u.inform_user.map(|timeout_s| InformUser {
                        timeout_s,
                        can_cancel,
                    }),
                };
                agent.update(&idf, &options).await
            }
        };
        result.map_err(|e| e.to_string())
    }
}
