//! `status [--json]`: what the journal says, readable without the daemon or the lock.

use std::process::ExitCode;

use super::{CmdResult, Failure, Global};
use crate::report::Status;
use crate::store::read_state;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The DESIGN 8 JSON document instead of a table.
    #[arg(long)]
    json: bool,
}

pub fn run(global: &Global, args: Args) -> CmdResult {
    let settings = global.settings()?;
    // The daemon knows its queue too; without one, state.json tells the rest.
    let rt = super::runtime()?;
    let request = serde_json::json!({"id": super::job::command_id("status"), "command": "status"});
    if let Ok(reply) = rt.block_on(crate::control::client::request(
        &settings.paths.control_socket,
        &request,
    )) && let Some(status) = reply.status
    {
        if args.json {
            println!(
                "{}",
                serde_json::to_string_pretty(&status).map_err(Failure::failed)?
            );
            return Ok(std::process::ExitCode::SUCCESS);
        }
        if let Ok(parsed) = serde_json::from_value::<Status>(status) {
            return print_status(&parsed, false);
        }
    }
    let state = read_state(&settings.paths.state_dir)
        .map_err(Failure::failed)?
        .unwrap_or_default();
    print_status(&Status::new(&settings, &state), args.json)
}

pub fn print_status(status: &Status, json: bool) -> CmdResult {
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(status).map_err(Failure::failed)?
        );
    } else {
        print!("{}", status.to_text());
    }
    Ok(ExitCode::SUCCESS)
}
