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
        AgentError::NoRepositories => Failure::usage(e),
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
    let agent = Agent::new(settings, store.clone(), bandwidth).map_err(agent_failure)?;
    agent.recover().map_err(agent_failure)?;
    let progress = show_progress.then(|| tokio::spawn(print_progress(store.clone())));
    let outcome = match &job {
        Job::Delivery(idf) => agent.deliver(idf).await,
        Job::Update(idf, options) => agent.update(idf, options).await,
        Job::ActivateAtBoot => agent.activate_at_boot().await,
    };
    if let Some(task) = progress {
        task.abort();
        if std::io::IsTerminal::is_terminal(&std::io::stderr()) {
            eprintln!();
        }
    }
    let outcome = outcome.map_err(agent_failure)?;
    for (app, reason) in &outcome.failed {
        eprintln!("{app}: {reason}");
    }
    if outcome.is_success() {
        Ok(ExitCode::SUCCESS)
    } else {
        Ok(ExitCode::from(1))
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
        let (done, total): (u64, u64) = state
            .apps
            .iter()
            .fold((0, 0), |(d, t), a| (d + a.bytes_done, t + a.bytes_total));
        let pct = (done * 100).checked_div(total).unwrap_or(0);
        let line = state
            .apps
            .iter()
            .map(|a| {
                format!(
                    "{} {}%",
                    a.name,
                    (a.bytes_done * 100).checked_div(a.bytes_total).unwrap_or(0)
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
            eprint!("\r\x1b[2K{text}");
        } else {
            eprintln!("{text}");
        }
        let _ = std::io::stderr().flush();
    }
}

/// Reads the IDF from a file or URL, or takes the configuration's `[[app]]` tables.
pub async fn load_idf(source: Option<&str>, settings: &Settings) -> Result<Idf, Failure> {
    let Some(source) = source else {
        if settings.apps.is_empty() {
            return Err(Failure::usage(anyhow::anyhow!(
                "no IDF: pass --idf FILE|URL or add [[app]] tables to the configuration"
            )));
        }
        let idf = Idf {
            apps: settings.apps.clone(),
        };
        return Ok(idf);
    };
    let bytes = if source.starts_with("http://") || source.starts_with("https://") {
        crate::repository::fetch_document(source, crate::idf::MAX_IDF_BYTES)
            .await
            .map_err(|e| Failure::failed(anyhow::anyhow!("IDF {source}: {e}")))?
    } else {
        std::fs::read(source)
            .map_err(|e| Failure::usage(anyhow::anyhow!("cannot read IDF {source}: {e}")))?
    };
    Idf::parse(&bytes).map_err(|e| Failure::usage(anyhow::anyhow!("{source}: {e}")))
}
