//! `cancel ID`: the `cancel` command from the shell. Through the daemon when it runs (a
//! waiting command leaves the queue, the running one stops its transfers); without one, a
//! command left waiting in `state.json` is removed under the state lock.

use std::process::ExitCode;

use super::job::{command_id, via_daemon};
use super::{CmdResult, Failure, Global};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The id of the command to cancel, as `status` lists it.
    #[arg(value_name = "ID")]
    target: String,
}

pub fn run(global: &Global, args: Args) -> CmdResult {
    let settings = global.forwarding_settings()?;
    let rt = super::runtime()?;
    let request = serde_json::json!({
        "id": command_id("cancel"),
        "command": "cancel",
        "target": args.target,
    });
    if let Some(result) = via_daemon(&rt, &settings, &request, false) {
        return result;
    }
    let store = crate::store::Store::open(&settings.paths)?;
    let removed = store.update(|s| {
        let before = s.commands.len();
        s.commands.retain(|c| c.id != args.target);
        before != s.commands.len()
    })?;
    if !removed {
        return Err(Failure::usage(anyhow::anyhow!(
            "no scheduled command has the id {:?} (`status` lists the queue)",
            args.target
        )));
    }
    errln!(
        "command {} cancelled (no daemon runs; it was waiting in {})",
        args.target,
        store.state_dir().join("state.json").display()
    );
    Ok(ExitCode::SUCCESS)
}
