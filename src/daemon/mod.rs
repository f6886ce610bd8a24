//! `run`: the daemon (DESIGN 7, 11). It loads the state (setting aside what no longer
//! validates), rolls back an interrupted activation, binds the control socket, opens the UMS
//! channel (`ums`), tells systemd it is ready, and then runs the accepted commands one at a
//! time in arrival order (`work`; an `update` with `at` when its time has come) and keeps
//! systemd informed (`notify`). Requests are answered in `handle`; the `settings` command is
//! `settings`. SIGHUP reloads the configuration (a new bandwidth limit applies to running transfers; a changed `[ums]`
//! reconnects), SIGTERM stops within seconds, partial downloads kept for resume.
//!
//! The daemon decides when; what a command does is the agent's.

mod handle;
mod notify;
mod queue;
pub mod settings;
mod ums;
mod work;

use std::sync::Arc;

use parking_lot::{Mutex, RwLock};
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::Notify;

use crate::agent::{Agent, AgentError};
use crate::bandwidth::Bandwidth;
use crate::config::{ConfigError, ConfigSource, Settings};
use crate::control::server::ControlError;
use crate::store::{Store, StoreError};

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
    /// Held while the configuration changes (a `settings` command, a SIGHUP), so that two
    /// changes never interleave.
    reconfiguring: Mutex<()>,
    running: Mutex<Option<String>>,
    /// Stops the running command's planning and transfers (`cancel` of its id).
    cancel: Arc<crate::agent::cancel::Cancel>,
    /// The UMS channel's task and the settings it runs with.
    ums: Mutex<Option<ums::UmsTask>>,
}

/// Runs the daemon until SIGTERM or SIGINT.
pub async fn run(source: ConfigSource, store: Arc<Store>) -> Result<(), DaemonError> {
    let settings = source.load()?;
    log_findings(&settings, &store);
    if let Ok(persisted) = crate::config::Overrides::read(store.state_dir()) {
        // Credential files a crash left behind, named by nothing.
        crate::config::overrides::collect_garbage(store.state_dir(), &persisted);
    }
    let bandwidth = Bandwidth::new(settings.update.effective_limit());
    if settings.ums().is_some() {
        // Before the recovery: what it changes is news for the UMS too.
        store.enable_events()?;
    }
    let cancel = Arc::new(crate::agent::cancel::Cancel::default());
    let agent =
        Agent::new(settings.clone(), store.clone(), bandwidth.clone())?.with_cancel(cancel.clone());
    agent.recover()?;
    // Signal handlers before anything can be noticed from outside: a SIGTERM or SIGHUP right
    // after the socket answers must not take the default action.
    let signals = Signals::install()?;
    let listener = control::bind(&settings.paths.control_socket).await?;
    let daemon = Arc::new(Daemon {
        source,
        store,
        bandwidth,
        settings: RwLock::new(settings),
        agent: RwLock::new(Arc::new(agent)),
        wake: Notify::new(),
        reconfiguring: Mutex::new(()),
        running: Mutex::new(None),
        cancel,
        ums: Mutex::new(None),
    });
    daemon.queue_boot_work()?;
    let (stop, shutdown) = crate::shutdown::channel();
    let server = tokio::spawn(control::serve(listener, daemon.handler(), shutdown.clone()));
    let worker = tokio::spawn(daemon.clone().work(shutdown.clone()));
    let notifier = tokio::spawn(notify::follow(
        daemon.store.watch_status(),
        sd_notify::watchdog_enabled(),
        shutdown,
    ));
    daemon.start_ums();
    tracing::info!(
        "igel-update-agent {} running; control socket {}",
        env!("CARGO_PKG_VERSION"),
        daemon.settings.read().paths.control_socket.display()
    );
    let _ = sd_notify::notify(&[sd_notify::NotifyState::Ready]);
    let result = daemon.clone().signals(signals).await;
    let _ = sd_notify::notify(&[sd_notify::NotifyState::Stopping]);
    // Every task ends itself; a running command is dropped where it waits (its partial files
    // stay), stays queued and runs again at the next start. Until then nothing may say it is
    // in progress.
    stop.fire();
    let _ = tokio::join!(worker, server, notifier);
    let reason = "interrupted: the daemon stopped; the command runs again at its next start \
                  (partial downloads are kept and resume)";
    if let Err(e) = daemon.agent.read().clone().record_interruption(reason) {
        tracing::error!("cannot record the interruption: {e}");
    }
    let ums = daemon.ums.lock().take();
    if let Some(ums) = ums {
        ums.stop().await;
    }
    let _ = std::fs::remove_file(&daemon.settings.read().paths.control_socket);
    tracing::info!("stopped; partial downloads are kept and resume at the next start");
    result
}

use crate::control::server as control;

/// Warnings of the configuration, and everything set aside, each with the way out.
fn log_findings(settings: &Settings, store: &Store) {
    for warning in &settings.warnings {
        tracing::warn!("{warning}");
    }
    for repo in &settings.repositories {
        if let Some(crate::config::Password::Unavailable(reason)) = repo.auth.password() {
            tracing::warn!(
                "repository {:?}: {reason}; its downloads will fail",
                repo.name
            );
        }
    }
    let notices = store.snapshot().set_aside;
    for item in settings.set_aside.iter().chain(&notices) {
        tracing::warn!(
            "set aside (not applied): {}: {}; `igel-update-agent settings --reset {}` drops it",
            item.name,
            item.reason,
            item.name
        );
    }
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
        let _changing = self.reconfiguring.lock();
        match self.source.load() {
            Ok(settings) => {
                log_findings(&settings, &self.store);
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
        let agent = self.agent_for(&settings)?;
        self.install(settings, agent);
        Ok(())
    }

    fn agent_for(&self, settings: &Settings) -> Result<Agent, AgentError> {
        Ok(
            Agent::new(settings.clone(), self.store.clone(), self.bandwidth.clone())?
                .with_cancel(self.cancel.clone()),
        )
    }

    /// Puts settings and the agent built from them in force. Cannot fail: what could fail
    /// was done before (a staged app that cannot move to the new policy is logged).
    fn install(self: &Arc<Self>, settings: Settings, agent: Agent) {
        if let Err(e) = agent.apply_policy() {
            tracing::error!("cannot move the staged versions to the new activation setting: {e}");
        }
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
