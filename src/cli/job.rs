//! Running one agent job in this process (the daemon will run the same jobs): progress on
//! stderr while it runs, the outcome and the exit code at the end. Also where an IDF comes
//! from: a file, a URL, or the configuration's `[[app]]` tables.

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use super::{CmdResult, Failure};
use crate::agent::{Agent, AgentError, UpdateOptions};
use crate::bandwidth::Bandwidth;
use crate::config::Settings;
use crate::idf::Idf;
use crate::store::Store;

pub enum Job {
    Delivery(Idf),
    Update(Idf, UpdateOptions),
    ActivateAtBoot,
}

fn agent_failure(e: AgentError) -> Failure {
    match e {
        // What the configuration lacks here (a repository, a password this process cannot
        // read): exit 2, like any configuration error.
        AgentError::NoRepositories
        | AgentError::Repository(crate::repository::RepositoryError::Setup { .. }) => {
            Failure::usage(e)
        }
        other => Failure::failed(other),
    }
}

/// Runs a job and prints its outcome; shared by the commands and `demo`.
pub async fn run_job(
    settings: Settings,
    store: Arc<Store>,
    job: Job,
    show_progress: bool,
) -> CmdResult {
    let bandwidth = Bandwidth::new(settings.update.effective_limit());
    let cancel = Arc::new(crate::agent::cancel::Cancel::default());
    cancel.arm(THIS_PROCESS);
    let agent = Agent::new(settings, store.clone(), bandwidth)
        .map_err(agent_failure)?
        .with_cancel(cancel.clone());
    if !matches!(job, Job::ActivateAtBoot) {
        agent.check_ready().map_err(agent_failure)?;
    }
    agent.recover().map_err(agent_failure)?;
    // Ctrl-C or SIGTERM stops a transfer the way a cancel does, so the apps and the status say
    // it was interrupted; a boot-time activation is left to the default (its crash recovery
    // rolls back).
    let caught = Arc::new(std::sync::atomic::AtomicI32::new(0));
    let signals = match &job {
        Job::ActivateAtBoot => None,
        _ => Some(tokio::spawn(interrupt_on_signals(cancel, caught.clone())).abort_handle()),
    };
    let progress = show_progress.then(|| tokio::spawn(print_progress(store.clone())));
    let outcome = match &job {
        Job::Delivery(idf) => agent.deliver(idf).await,
        Job::Update(idf, options) => agent.update(idf, options).await,
        Job::ActivateAtBoot => agent.activate_at_boot().await,
    };
    if let Some(task) = progress {
        task.abort();
        super::output::clear_progress();
    }
    if let Some(signals) = signals {
        signals.abort();
    }
    let signal = caught.load(std::sync::atomic::Ordering::SeqCst);
    if signal != 0 && matches!(outcome, Err(AgentError::Cancelled)) {
        let status = store.snapshot().update_status.unwrap_or_default();
        errln!("{status}");
        // The shell's convention for a command ended by a signal: 128 + its number.
        return Ok(ExitCode::from(u8::try_from(128 + signal).unwrap_or(1)));
    }
    let outcome = outcome.map_err(agent_failure)?;
    // Last, once the outcome is recorded (a reboot ends this process too).
    agent.reboot_if_wanted(&outcome).await;
    // Each failure is in the log already (one line per app, and the status text); without
    // a log on stderr, say them here.
    if !super::output::errors_logged() {
        for (app, reason) in &outcome.failed {
            errln!("{app}: {}", crate::report::clean(reason));
        }
    }
    if outcome.is_success() {
        Ok(ExitCode::SUCCESS)
    } else {
        Ok(ExitCode::from(1))
    }
}

/// The id under which this process's own command can be stopped.
const THIS_PROCESS: &str = "this-process";

/// The first SIGINT or SIGTERM stops the command that runs (as `interrupted by SIGINT`) unless
/// its installation has started, which runs to its end; a second one ends the process at once
/// (a cut activation is rolled back at the next start).
async fn interrupt_on_signals(
    cancel: Arc<crate::agent::cancel::Cancel>,
    caught: Arc<std::sync::atomic::AtomicI32>,
) {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut int), Ok(mut term)) = (
        signal(SignalKind::interrupt()),
        signal(SignalKind::terminate()),
    ) else {
        return;
    };
    loop {
        let (name, number) = tokio::select! {
            _ = int.recv() => ("SIGINT", nix::sys::signal::Signal::SIGINT as i32),
            _ = term.recv() => ("SIGTERM", nix::sys::signal::Signal::SIGTERM as i32),
        };
        if caught.swap(number, std::sync::atomic::Ordering::SeqCst) != 0 {
            errln!("\n{name} again: stopping now");
            std::process::exit(128 + number);
        }
        let reason = format!(
            "interrupted by {name} (partial downloads are kept and resume at the next run)"
        );
        match cancel.request_because(THIS_PROCESS, &reason) {
            Ok(()) => errln!("\n{name}: stopping the transfers"),
            Err(e) => errln!("\n{name}: {e}; {name} again stops at once"),
        }
    }
}

/// One progress line: redrawn in place on a terminal, a plain line a second otherwise.
async fn print_progress(store: Arc<Store>) {
    use std::io::Write;
    let terminal = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let every = Duration::from_millis(if terminal { 250 } else { 1000 });
    loop {
        tokio::time::sleep(every).await;
        let state = store.snapshot();
        let (done, total): (u64, u64) = state.apps.iter().fold((0u64, 0u64), |(d, t), a| {
            (
                d.saturating_add(a.bytes_done),
                t.saturating_add(a.bytes_total),
            )
        });
        let pct = done.saturating_mul(100).checked_div(total).unwrap_or(0);
        let line = state
            .apps
            .iter()
            .map(|a| {
                format!(
                    "{} {}%",
                    a.name,
                    a.bytes_done
                        .saturating_mul(100)
                        .checked_div(a.bytes_total)
                        .unwrap_or(0)
                )
            })
            .collect::<Vec<_>>()
            .join("  ");
        let text = format!(
            "[{pct:>3}%] {} / {}  {line}",
            crate::report::human_bytes(done),
            crate::report::human_bytes(total)
        );
        if terminal {
            super::output::progress(&text);
        } else {
            errln!("{text}");
        }
        let _ = std::io::stderr().flush();
    }
}

/// Reads the IDF from a file or URL.
pub async fn load_idf(source: &str, settings: &Settings) -> Result<Idf, Failure> {
    if !is_url(source) {
        return read_idf_file(source);
    }
    crate::repository::document::check_idf_url(source, settings)
        .map_err(|e| Failure::usage(anyhow::anyhow!("IDF {e}")))?;
    crate::repository::fetch_idf(source, settings)
        .await
        .map_err(|e| Failure::failed(anyhow::anyhow!("IDF {source}: {e}")))
}

fn is_url(source: &str) -> bool {
    source.starts_with("http://") || source.starts_with("https://")
}

fn read_idf_file(path: &str) -> Result<Idf, Failure> {
    let bytes = std::fs::read(path)
        .map_err(|e| Failure::usage(anyhow::anyhow!("cannot read IDF {path}: {e}")))?;
    Idf::parse(&bytes).map_err(|e| Failure::usage(anyhow::anyhow!("{path}: {e}")))
}

/// Runs a command in this process (no daemon): takes the IDF the request already carries (so
/// a file is not read twice, a URL not fetched twice) or loads it, takes the state lock, runs
/// the job with progress on a terminal.
pub fn run_here(
    rt: &tokio::runtime::Runtime,
    settings: Settings,
    request: &serde_json::Value,
    idf_source: Option<&str>,
    job: impl FnOnce(Idf) -> Job,
) -> CmdResult {
    let idf = match (request.get("idf"), idf_source) {
        (Some(idf), _) => Some(serde_json::from_value(idf.clone()).map_err(Failure::failed)?),
        (None, Some(source)) => Some(rt.block_on(load_idf(source, &settings))?),
        (None, None) => None,
    };
    let store = super::open_store(&settings)?;
    // No IDF in the command: the same rule as the daemon's (`agent::wanted`).
    let idf = match idf {
        Some(idf) => idf,
        None => {
            let (idf, source) =
                crate::agent::wanted::wanted(store.assigned_idf(), &settings, &store.snapshot())
                    .ok_or_else(|| {
                        Failure::usage(anyhow::anyhow!(
                            "no IDF: pass --idf FILE|URL or add [[app]] tables to the \
                             configuration (no IDF is assigned and no app is on the device)"
                        ))
                    })?;
            tracing::info!("no IDF given: applying {}", source.describe());
            if let Some(note) = crate::agent::wanted::unused_config_apps(&settings, source, &idf) {
                tracing::warn!("{note}");
            }
            idf
        }
    };
    let show_progress =
        std::io::IsTerminal::is_terminal(&std::io::stderr()) && !super::output::quiet();
    rt.block_on(run_job(settings, store, job(idf), show_progress))
}

/// A unique id for a command sent from this command line.
pub fn command_id(kind: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    format!("cli-{kind}-{}-{nanos}", std::process::id())
}

/// Sends `request` to the daemon when one listens on the control socket; `None` when none
/// runs (the caller then runs the command in this process). With `wait`, follows the command
/// until it leaves the daemon's queue and reports how the update ended.
pub fn via_daemon(
    rt: &tokio::runtime::Runtime,
    settings: &Settings,
    request: &serde_json::Value,
    wait: bool,
) -> Option<CmdResult> {
    use crate::control::client::{ClientError, request as send};
    let socket = &settings.paths.control_socket;
    let id = request["id"].as_str().unwrap_or_default().to_string();
    match daemon_state_dir(rt, settings) {
        Err(ClientError::NotRunning(_)) => return None,
        Err(e) => return Some(Err(Failure::failed(e))),
        Ok(Some(theirs))
            if Some(&theirs) != std::path::absolute(&settings.paths.state_dir).ok().as_ref() =>
        {
            return Some(Err(Failure::usage(anyhow::anyhow!(
                "the daemon on {} manages {}, not {}: stop it, or name its state directory \
                 (or another control_socket for a second device)",
                socket.display(),
                theirs.display(),
                settings.paths.state_dir.display()
            ))));
        }
        Ok(_) => {}
    }
    let reply = match rt.block_on(send(socket, request)) {
        Err(ClientError::NotRunning(_)) => return None,
        Err(e) => return Some(Err(Failure::failed(e))),
        Ok(reply) => reply,
    };
    if !reply.is_accepted() {
        let error = reply.error.unwrap_or_default();
        return Some(Err(Failure::usage(anyhow::anyhow!(
            "the daemon rejected the command: {error}"
        ))));
    }
    if !super::output::quiet() {
        errln!(
            "command {id} accepted by the daemon on {} ({})",
            socket.display(),
            settings.paths.state_dir.display()
        );
    }
    if !wait {
        return Some(Ok(ExitCode::SUCCESS));
    }
    Some(rt.block_on(async {
        loop {
            tokio::time::sleep(Duration::from_millis(500)).await;
            let status = serde_json::json!({"id": command_id("status"), "command": "status"});
            let reply = send(socket, &status).await.map_err(Failure::failed)?;
            let Some(status) = reply.status else {
                return Err(Failure::failed(anyhow::anyhow!(
                    "the daemon sent no status"
                )));
            };
            let pending = status
                .commands
                .as_ref()
                .is_some_and(|c| c.iter().any(|c| c.id == id));
            if !pending {
                let text = status.update_status.clone().unwrap_or_default();
                errln!("{text}");
                let failed =
                    crate::report::StatusText::parse(&text).is_some_and(|s| s.is_failure());
                return Ok(if failed {
                    ExitCode::from(1)
                } else {
                    ExitCode::SUCCESS
                });
            }
        }
    }))
}

/// The state directory of the daemon that answers on the control socket (`Ok(None)` when it
/// does not say).
pub fn daemon_state_dir(
    rt: &tokio::runtime::Runtime,
    settings: &Settings,
) -> Result<Option<std::path::PathBuf>, crate::control::client::ClientError> {
    let request = serde_json::json!({"id": command_id("status"), "command": "status"});
    let reply = rt.block_on(crate::control::client::request(
        &settings.paths.control_socket,
        &request,
    ))?;
    Ok(reply.status.and_then(|s| s.state_dir))
}

/// The IDF part of a request: a URL stays a URL for the daemon to fetch, a file is read here
/// (the daemon may not be allowed to read it), none means the daemon's own.
pub fn idf_fields(
    source: Option<&str>,
) -> Result<serde_json::Map<String, serde_json::Value>, Failure> {
    let mut fields = serde_json::Map::new();
    match source {
        None => {}
        Some(url) if is_url(url) => {
            fields.insert("idf_url".into(), url.into());
        }
        Some(file) => {
            let idf = read_idf_file(file)?;
            fields.insert(
                "idf".into(),
                serde_json::to_value(idf).map_err(Failure::failed)?,
            );
        }
    }
    Ok(fields)
}
