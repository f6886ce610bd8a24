//! Answering requests from the control socket and the UMS channel (one path for both):
//! `status` at once, `cancel` and `settings` at once, everything else persisted in the queue
//! before the reply.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use rand::Rng;

use super::{Daemon, queue};
use crate::control::{self, Command, Rejection, Reply, Request, SettingsArgs};
use crate::report::{QueuedStatus, Status};

impl Daemon {
    /// [`Daemon::handle`] for the control socket and the UMS channel.
    pub(super) fn handler(self: &Arc<Self>) -> control::server::Handler {
        let daemon = self.clone();
        Arc::new(move |request, _privileged| daemon.handle(request))
    }

    /// Answers one request; queued commands are persisted before the reply.
    fn handle(self: &Arc<Self>, request: Result<Request, Rejection>) -> Reply {
        let request = match request {
            Ok(r) => r,
            Err(rejection) => {
                tracing::warn!(
                    "control: rejected a request: {}",
                    crate::report::clean(&rejection.error)
                );
                return Reply::rejected(rejection);
            }
        };
        let id = request.id.clone();
        let result = match &request.command {
            Command::Status => {
                let mut reply = Reply::accepted(&id);
                reply.status = Some(Box::new(self.status()));
                return reply;
            }
            Command::Cancel(c) => self.cancel(&id, &c.target),
            Command::Settings(s) => self.change_settings(&id, s),
            _ => self.enqueue(&request),
        };
        match result {
            Ok(()) => Reply::accepted(&id),
            Err(rejection) => {
                tracing::warn!(command_id = %id, "command {id} rejected: {}", crate::report::clean(&rejection.error));
                Reply::rejected(rejection)
            }
        }
    }

    /// `cancel`: a waiting command leaves the queue; the running one stops its planning or
    /// transfers (not an installation that has started).
    fn cancel(&self, id: &str, target: &str) -> Result<(), Rejection> {
        use crate::agent::cancel::Refused;
        match self.cancel.request(target) {
            Ok(()) => {
                tracing::info!(command_id = %id, "command {target}: cancelling at the request of {id}");
                return Ok(());
            }
            Err(e @ Refused::TooLate) => {
                return Err(reject(id, format!("command {target:?}: {e}")));
            }
            // Waiting (or just picked: the worker checks that it is still queued once armed).
            Err(Refused::NotRunning) => {}
        }
        queue::cancel(&self.store, target, id)?;
        tracing::info!(command_id = %id, "command {target}: cancelled by {id}");
        Ok(())
    }

    fn enqueue(&self, request: &Request) -> Result<(), Rejection> {
        if let Command::Update(u) = &request.command
            && let Some(url) = &u.idf_url
        {
            crate::repository::document::check_idf_url(url, &self.settings.read())
                .map_err(|e| reject(&request.id, format!("update: idf_url {e}")))?;
        }
        let not_before = match &request.command {
            Command::Update(u) => u.at,
            // "Downloads start after splay": spread a fleet that got the same assignment.
            Command::Assign(_) => self.splayed(),
            _ => None,
        };
        let added = queue::push(&self.store, request, not_before)
            .map_err(|e| reject(&request.id, e.to_string()))?;
        let name = match &request.command {
            Command::Assign(_) => "assign",
            Command::Delivery(_) => "delivery",
            _ => "update",
        };
        if added {
            tracing::info!(command_id = %request.id, "command {}: {name} accepted", request.id);
            self.wake.notify_one();
        } else {
            tracing::info!(command_id = %request.id, "command {}: {name} already known; not run again", request.id);
        }
        Ok(())
    }

    /// Now plus a random part of `splay`, or `None` without a splay.
    pub(super) fn splayed(&self) -> Option<DateTime<Utc>> {
        let splay = self.settings.read().update.splay;
        if splay.is_zero() {
            return None;
        }
        let delay = rand::rng().random_range(Duration::ZERO..=splay);
        Utc::now().checked_add_signed(chrono::Duration::from_std(delay).ok()?)
    }

    /// `settings`: IGEL registry keys, validated as a whole with the files, persisted,
    /// applied at once (as a SIGHUP would).
    fn change_settings(self: &Arc<Self>, id: &str, args: &SettingsArgs) -> Result<(), Rejection> {
        let values = args.texts().map_err(|e| reject(id, e))?;
        let _changing = self.reconfiguring.lock();
        let prepared = super::settings::prepare(&self.source, &self.store, &values, &args.reset)
            .map_err(|e| reject(id, format!("settings: {e}")))?;
        let agent = match self.agent_for(&prepared.settings) {
            Ok(agent) => agent,
            Err(e) => {
                prepared.abandon();
                return Err(reject(id, format!("settings: {e}")));
            }
        };
        let settings = prepared
            .commit(&self.store)
            .map_err(|e| reject(id, format!("settings: {e}")))?;
        self.install(settings, agent);
        let mut keys: Vec<&str> = values.keys().map(String::as_str).collect();
        keys.extend(args.reset.iter().map(|k| k.as_str()));
        tracing::info!(command_id = %id, "command {id}: settings changed ({})", keys.join(", "));
        Ok(())
    }

    /// The `status --json` document with the queue.
    pub(super) fn status(&self) -> Status {
        let state = self.store.snapshot();
        let running = self.running.lock().clone();
        let mut status = Status::new(&self.settings.read(), &state);
        status.commands = Some(
            state
                .commands
                .iter()
                .map(|c| QueuedStatus::new(c, running.as_deref() == Some(c.id.as_str())))
                .collect(),
        );
        status
    }
}

pub(super) fn reject(id: &str, error: String) -> Rejection {
    Rejection {
        id: Some(id.to_string()),
        error,
    }
}
