//! `run`: the daemon (DESIGN 7, 11). It loads the state, rolls back an interrupted activation,
//! binds the control socket, opens the UMS channel (`ums`), tells systemd it is ready, and then
//! runs the accepted commands one at a time in arrival order (an `update` with `at` when its
//! time has come). SIGHUP reloads the configuration (a new bandwidth limit applies to running
//! transfers; a changed `[ums]` reconnects), SIGTERM stops within seconds, partial downloads
//! kept for resume.
//!
//! The daemon decides when; what a command does is the agent's.

mod queue;
mod ums;

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use parking_lot::{Mutex, RwLock};
use rand::Rng;
use serde_json::Value;
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::Notify;
use tracing::Instrument;

use crate::agent::{Agent, AgentError, InformUser, Outcome, UpdateOptions};
use crate::bandwidth::Bandwidth;
use crate::config::{ConfigError, ConfigSource, Settings};
use crate::control::server::ControlError;
use crate::control::{self, Command, Rejection, Reply, Request, SettingsArgs};
use crate::idf::Idf;
use crate::report::Status;
use crate::store::{AppState, QueuedCommand, Store, StoreError};

#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Agent(#[from] AgentError),
    #[error(transparent)]
    Control(#[from] ControlError),
    #[error("cannot handle signals: {0}")]
    Signals(std::io::Error),
}

struct Daemon {
    source: ConfigSource,
    store: Arc<Store>,
    bandwidth: Arc<Bandwidth>,
    settings: RwLock<Settings>,
    agent: RwLock<Arc<Agent>>,
    wake: Notify,
    running: Mutex<Option<String>>,
    /// The UMS channel's task and the settings it runs with.
    ums: Mutex<Option<ums::UmsTask>>,
}

/// Runs the daemon until SIGTERM or SIGINT.
pub async fn run(source: ConfigSource, store: Arc<Store>) -> Result<(), DaemonError> {
    let settings = source.load_with_overrides(&store.snapshot().settings_overrides)?;
    for warning in &settings.warnings {
        tracing::warn!("{warning}");
    }
    let bandwidth = Bandwidth::new(settings.update.effective_limit());
    if settings.ums().is_some() {
        // Before the recovery: what it changes is news for the UMS too.
        store.enable_events()?;
    }
    let agent = Agent::new(settings.clone(), store.clone(), bandwidth.clone())?;
    agent.recover()?;
    // Signal handlers before anything can be noticed from outside: a SIGTERM or SIGHUP right
    // after the socket answers must not take the default action.
    let signals = Signals::install()?;
    let listener = control::server::bind(&settings.paths.control_socket).await?;
    let daemon = Arc::new(Daemon {
        source,
        store,
        bandwidth,
        settings: RwLock::new(settings),
        agent: RwLock::new(Arc::new(agent)),
        wake: Notify::new(),
        running: Mutex::new(None),
        ums: Mutex::new(None),
    });
    daemon.queue_boot_work()?;
    let server = tokio::spawn(control::server::serve(listener, daemon.handler()));
    let worker = tokio::spawn(daemon.clone().work());
    let notifier = tokio::spawn(daemon.clone().notify_systemd());
    daemon.start_ums();
    tracing::info!(
        "igel-update-agent {} running; control socket {}",
        env!("CARGO_PKG_VERSION"),
        daemon.settings.read().paths.control_socket.display()
    );
    let _ = sd_notify::notify(&[sd_notify::NotifyState::Ready]);
    let result = daemon.clone().signals(signals).await;
    let _ = sd_notify::notify(&[sd_notify::NotifyState::Stopping]);
    worker.abort();
    server.abort();
    notifier.abort();
    let ums = daemon.ums.lock().take();
    if let Some(ums) = ums {
        ums.stop().await;
    }
    let _ = std::fs::remove_file(&daemon.settings.read().paths.control_socket);
    tracing::info!("stopped; partial downloads are kept and resume at the next start");
    result
}

impl Daemon {
    /// Waits for SIGTERM/SIGINT (then returns) and handles SIGHUP (reload).
    async fn signals(self: Arc<Self>, mut signals: Signals) -> Result<(), DaemonError> {
        loop {
            tokio::select! {
                _ = signals.term.recv() => { tracing::info!("SIGTERM: stopping"); return Ok(()); }
                _ = signals.int.recv() => { tracing::info!("SIGINT: stopping"); return Ok(()); }
                _ = signals.hup.recv() => self.reload(),
            }
        }
    }

    fn reload(self: &Arc<Self>) {
        let _ = sd_notify::notify(&[sd_notify::NotifyState::Reloading]);
        match self
            .source
            .load_with_overrides(&self.store.snapshot().settings_overrides)
        {
            Ok(settings) => {
                for warning in &settings.warnings {
                    tracing::warn!("{warning}");
                }
                match self.reconfigure(settings) {
                    Ok(()) => tracing::info!("SIGHUP: configuration reloaded"),
                    Err(e) => tracing::error!("SIGHUP: {e}; keeping the previous configuration"),
                }
            }
            Err(e) => tracing::error!("SIGHUP: {e}; keeping the previous configuration"),
        }
        let _ = sd_notify::notify(&[sd_notify::NotifyState::Ready]);
    }

    /// New settings for the next commands; a new bandwidth limit at once, also for running
    /// transfers.
    fn reconfigure(self: &Arc<Self>, settings: Settings) -> Result<(), AgentError> {
        let agent = Agent::new(settings.clone(), self.store.clone(), self.bandwidth.clone())?;
        agent.apply_policy()?;
        self.bandwidth.set_limit(settings.update.effective_limit());
        tracing::info!(
            "bandwidth limit: {}",
            settings
                .update
                .effective_limit()
                .map_or("none".to_string(), |b| format!(
                    "{}/s",
                    crate::report::human_bytes(b)
                ))
        );
        *self.agent.write() = Arc::new(agent);
        *self.settings.write() = settings;
        self.wake.notify_one();
        self.start_ums();
        Ok(())
    }

    /// [`Daemon::handle`] for the control socket and the UMS channel.
    fn handler(self: &Arc<Self>) -> control::server::Handler {
        let daemon = self.clone();
        Arc::new(move |request, _privileged| daemon.handle(request))
    }

    /// Answers one request; queued commands are persisted before the reply.
    fn handle(self: &Arc<Self>, request: Result<Request, Rejection>) -> Reply {
        let request = match request {
            Ok(r) => r,
            Err(rejection) => {
                tracing::warn!("control: rejected a request: {}", rejection.error);
                return Reply::rejected(rejection);
            }
        };
        let id = request.id.clone();
        let result = match &request.command {
            Command::Status => {
                let mut reply = Reply::accepted(&id);
                reply.status = Some(self.status());
                return reply;
            }
            Command::Cancel(c) => {
                let running = self.running.lock().clone();
                queue::cancel(&self.store, &c.target, running.as_deref(), &id)
                    .map(|()| tracing::info!(command_id = %id, "command {}: cancelled by {id}", c.target))
            }
            Command::Settings(s) => self.change_settings(&id, s),
            _ => self.enqueue(&request),
        };
        match result {
            Ok(()) => Reply::accepted(&id),
            Err(rejection) => {
                tracing::warn!(command_id = %id, "command {id} rejected: {}", rejection.error);
                Reply::rejected(rejection)
            }
        }
    }

    fn enqueue(&self, request: &Request) -> Result<(), Rejection> {
        let not_before = match &request.command {
            Command::Update(u) => u.at,
            // "Downloads start after splay": spread a fleet that got the same assignment.
            Command::Assign(_) => self.splayed(),
            _ => None,
        };
        let added = queue::push(&self.store, request, not_before)
            .map_err(|e| reject(&request.id, e.to_string()))?;
        self.accepted(request, added)
    }

    /// Now plus a random part of `splay`, or `None` without a splay.
    fn splayed(&self) -> Option<DateTime<Utc>> {
        let splay = self.settings.read().update.splay;
        if splay.is_zero() {
            return None;
        }
        let delay = rand::rng().random_range(Duration::ZERO..=splay);
        Some(Utc::now() + chrono::Duration::from_std(delay).unwrap_or_default())
    }

    fn accepted(&self, request: &Request, added: bool) -> Result<(), Rejection> {
        let name = request
            .raw
            .get("command")
            .and_then(Value::as_str)
            .unwrap_or("?");
        if added {
            tracing::info!(command_id = %request.id, "command {}: {name} accepted", request.id);
            self.wake.notify_one();
        } else {
            tracing::info!(command_id = %request.id, "command {}: {name} already known; not run again", request.id);
        }
        Ok(())
    }

    /// `settings`: IGEL registry keys, validated with the files, persisted, applied.
    fn change_settings(self: &Arc<Self>, id: &str, args: &SettingsArgs) -> Result<(), Rejection> {
        let mut overrides = self.store.snapshot().settings_overrides;
        for (key, value) in &args.values {
            // Each key and value is one registry line: nothing may smuggle in another line.
            if key.is_empty() || key.contains(['=', '#']) || key.contains(char::is_control) {
                return Err(reject(
                    id,
                    format!("settings: {key:?} is not a registry key"),
                ));
            }
            let text = match value {
                Value::String(s) => s.clone(),
                Value::Bool(b) => b.to_string(),
                Value::Number(n) => n.to_string(),
                other => {
                    return Err(reject(
                        id,
                        format!("settings: {key}: {other} is not a string, number or boolean"),
                    ));
                }
            };
            if text.contains(char::is_control) {
                return Err(reject(
                    id,
                    format!("settings: {key}: the value must be a single line"),
                ));
            }
            overrides.insert(key.clone(), text);
        }
        let settings = self
            .source
            .load_with_overrides(&overrides)
            .map_err(|e| reject(id, format!("settings: {e}")))?;
        self.store
            .update(|s| s.settings_overrides = overrides.clone())
            .map_err(|e| reject(id, e.to_string()))?;
        self.reconfigure(settings)
            .map_err(|e| reject(id, e.to_string()))?;
        tracing::info!(command_id = %id, "command {id}: settings changed ({})", args.values.keys().cloned().collect::<Vec<_>>().join(", "));
        Ok(())
    }

    fn status(&self) -> Value {
        let state = self.store.snapshot();
        let mut status =
            serde_json::to_value(Status::new(&self.settings.read(), &state)).unwrap_or(Value::Null);
        let running = self.running.lock().clone();
        let commands: Vec<Value> = state
            .commands
            .iter()
            .map(|c| {
                serde_json::json!({
                    "id": c.id,
                    "command": c.request.get("command"),
                    "not_before": c.not_before,
                    "running": running.as_deref() == Some(c.id.as_str()),
                    "deferrals": c.deferrals,
                })
            })
            .collect();
        status["commands"] = Value::from(commands);
        status
    }

    /// At start: an assignment that has not arrived yet is tried again (`check_on_boot`), and
    /// the configuration's `[[app]]` tables count when nobody assigned anything.
    fn queue_boot_work(&self) -> Result<(), StoreError> {
        let settings = self.settings.read().clone();
        let state = self.store.snapshot();
        let idf = match &state.idf {
            Some(idf) => {
                let missing = state.apps.iter().any(|a| a.state.awaits_transfer());
                if !settings.update.check_on_boot || !missing {
                    return Ok(());
                }
                idf.clone()
            }
            None if !settings.apps.is_empty() => Idf {
                apps: settings.apps.clone(),
            },
            None => return Ok(()),
        };
        let id = format!("boot-{}", Utc::now().format("%Y%m%dT%H%M%S%.3f"));
        let raw = serde_json::json!({"id": id, "command": "assign", "idf": idf});
        self.store.update(|s| {
            s.commands.push(QueuedCommand {
                id: id.clone(),
                request: raw,
                not_before: self.splayed(),
                deferrals: 0,
            })
        })?;
        tracing::info!(command_id = %id, "check_on_boot: the assigned apps are not all in place; transfer queued");
        Ok(())
    }

    /// Runs queued commands one at a time, each when its time has come.
    async fn work(self: Arc<Self>) {
        loop {
            let now = Utc::now();
            match queue::next(&self.store.snapshot(), now) {
                Ok(command) => {
                    let span = tracing::info_span!("command", command_id = %command.id);
                    self.execute(command).instrument(span).await;
                }
                Err(next_due) => {
                    let wait = next_due
                        .map(|t| (t - now).to_std().unwrap_or_default())
                        .unwrap_or(Duration::from_secs(3600));
                    tokio::select! {
                        _ = self.wake.notified() => {}
                        _ = tokio::time::sleep(wait) => {}
                    }
                }
            }
        }
    }

    async fn execute(&self, command: QueuedCommand) {
        *self.running.lock() = Some(command.id.clone());
        let bytes = serde_json::to_vec(&command.request).unwrap_or_default();
        let outcome = match control::parse(&bytes, DateTime::<Utc>::MIN_UTC) {
            Ok(request) => self.run_command(&request, &command).await,
            Err(e) => Err(format!("stored command is no longer valid: {}", e.error)),
        };
        let id = &command.id;
        let settings = self.settings.read().clone();
        let result = match outcome {
            Ok(o) if o.deferred => {
                let when = Utc::now()
                    + chrono::Duration::from_std(settings.update.reminder_interval)
                        .unwrap_or_default();
                tracing::info!(command_id = %id, "command {id}: deferred by the user; asking again at {}", when.to_rfc3339());
                queue::defer(&self.store, id, when)
            }
            Ok(o) => {
                tracing::info!(command_id = %id, "command {id}: finished: {}", o.status);
                queue::finish(&self.store, id)
            }
            Err(reason) => {
                tracing::error!(command_id = %id, "command {id}: {reason}");
                queue::finish(&self.store, id)
            }
        };
        if let Err(e) = result {
            tracing::error!(command_id = %id, "command {id}: cannot update the queue: {e}");
            tokio::time::sleep(Duration::from_secs(5)).await;
        }
        *self.running.lock() = None;
    }

    async fn run_command(
        &self,
        request: &Request,
        queued: &QueuedCommand,
    ) -> Result<Outcome, String> {
        let agent = self.agent.read().clone();
        let settings = self.settings.read().clone();
        // Without an IDF in the command: the last assigned one, else the configuration's
        // [[app]] tables, else what is on the device (so that an Update after a Delivery
        // activates the delivered versions instead of removing them).
        let fallback_idf = || {
            let state = self.store.snapshot();
            state.idf.unwrap_or_else(|| {
                if !settings.apps.is_empty() {
                    return Idf {
                        apps: settings.apps.clone(),
                    };
                }
                Idf {
                    apps: state
                        .apps
                        .iter()
                        .filter(|a| !a.version.is_empty() && a.state != AppState::MarkedForRemoval)
                        .map(|a| crate::idf::WantedApp {
                            name: a.name.clone(),
                            version: a.version.clone(),
                            app_json_sha256: None,
                        })
                        .collect(),
                }
            })
        };
        let result = match &request.command {
            Command::Assign(a) => {
                let options = UpdateOptions {
                    stage_only: true,
                    ..UpdateOptions::default()
                };
                agent.update(&a.idf, &options).await
            }
            Command::Delivery(d) => {
                agent
                    .deliver(d.idf.as_ref().unwrap_or(&fallback_idf()))
                    .await
            }
            Command::Update(u) => {
                let idf = match (&u.idf, &u.idf_url) {
                    (Some(idf), _) => idf.clone(),
                    (None, Some(url)) => {
                        let bytes =
                            crate::repository::fetch_document(url, crate::idf::MAX_IDF_BYTES)
                                .await
                                .map_err(|e| format!("IDF {url}: {e}"))?;
                        Idf::parse(&bytes).map_err(|e| format!("IDF {url}: {e}"))?
                    }
                    (None, None) => fallback_idf(),
                };
                let can_cancel =
                    u.user_can_cancel && queued.deferrals < settings.update.max_deferrals;
                let options = UpdateOptions {
                    clean: u.clean,
                    force: u.force,
                    stage_only: false,
                    inform_user: u.inform_user.as_ref().map(|i| InformUser {
                        timeout_s: i.timeout_s,
                        can_cancel,
                    }),
                };
                agent.update(&idf, &options).await
            }
            other => return Err(format!("{other:?} is not a queued command")),
        };
        result.map_err(|e| e.to_string())
    }

    /// `STATUS=` with the update status, and watchdog pings while the daemon lives.
    async fn notify_systemd(self: Arc<Self>) {
        let watchdog = sd_notify::watchdog_enabled();
        let tick = watchdog.map_or(Duration::from_secs(1), |w| {
            (w / 2).min(Duration::from_secs(1))
        });
        let mut last = String::new();
        loop {
            let status = self
                .store
                .snapshot()
                .update_status
                .unwrap_or_else(|| "idle".into());
            if status != last {
                let _ = sd_notify::notify(&[sd_notify::NotifyState::Status(&status)]);
                last = status;
            }
            if watchdog.is_some() {
                let _ = sd_notify::notify(&[sd_notify::NotifyState::Watchdog]);
            }
            tokio::time::sleep(tick).await;
        }
    }
}

struct Signals {
    term: tokio::signal::unix::Signal,
    int: tokio::signal::unix::Signal,
    hup: tokio::signal::unix::Signal,
}

impl Signals {
    fn install() -> Result<Signals, DaemonError> {
        let install = |kind| signal(kind).map_err(DaemonError::Signals);
        Ok(Signals {
            term: install(SignalKind::terminate())?,
            int: install(SignalKind::interrupt())?,
            hup: install(SignalKind::hangup())?,
        })
    }
}

fn reject(id: &str, error: String) -> Rejection {
    Rejection {
        id: Some(id.to_string()),
        error,
    }
}
