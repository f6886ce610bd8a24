//! `activate --boot`: run early at boot by `igel-update-agent-activate.service`. Activates the
//! versions marked for installation (and retries failed activations), removes apps marked for
//! removal; leaves alone what waits for the Update command. Never touches the network.

use super::job::{Job, run_job};
use super::{CmdResult, Failure, Global};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Boot-time activation (the only mode there is; required so the intent is explicit).
    #[arg(long)]
    boot: bool,
}

pub fn run(global: &Global, args: Args) -> CmdResult {
    if !args.boot {
        return Err(Failure::usage(anyhow::anyhow!(
            "activate needs --boot (activation at other times is the Update command: `update`)"
        )));
    }
    // Activation never contacts a repository: it must not fail on a password (or a systemd
    // credential) that only the daemon's unit provides.
    let settings = global.settings_with(crate::config::FileAccess::Skip)?;
    let rt = super::runtime()?;
    let store = super::open_store(&settings)?;
    rt.block_on(run_job(settings, store, Job::ActivateAtBoot, false))
}
