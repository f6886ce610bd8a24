//! `update [--idf FILE|URL] [--clean] [--force] [--wait]`: the Update command. Transfers what
//! is missing, then activates every staged version now. Until the daemon exists this runs in
//! this process and waits.

use std::sync::Arc;

use super::job::{Job, load_idf, run_job};
use super::{CmdResult, Global};
use crate::agent::{InformUser, UpdateOptions};
use crate::store::Store;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// IDF as a JSON file or an http(s) URL; default: the [[app]] tables of the configuration.
    #[arg(long, value_name = "FILE|URL")]
    idf: Option<String>,
    /// First delete every inactive version and partial download ("format system partition").
    #[arg(long)]
    clean: bool,
    /// Update even if the IDF has not changed.
    #[arg(long)]
    force: bool,
    /// Run at this time (RFC 3339, e.g. 2026-11-23T02:00:00+01:00) instead of now.
    #[arg(long, value_name = "TIME")]
    at: Option<String>,
    /// Ask the user through notify_command before activating; SECS to answer (0: until answered).
    #[arg(long, value_name = "SECS")]
    inform_user: Option<u64>,
    /// With --inform-user: the user may postpone the installation.
    #[arg(long, requires = "inform_user")]
    user_can_cancel: bool,
    /// Wait until the update ends (always the case when no daemon runs).
    #[arg(long)]
    wait: bool,
}

pub fn run(global: &Global, args: Args) -> CmdResult {
    let settings = global.settings()?;
    let rt = super::runtime()?;
    let idf = rt.block_on(load_idf(args.idf.as_deref(), &settings))?;
    let _ = args.wait;
    let store = Arc::new(Store::open(&settings.paths)?);
    let show_progress = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let options = UpdateOptions {
        clean: args.clean,
        force: args.force,
        stage_only: false,
        inform_user: args.inform_user.map(|timeout_s| InformUser {
            timeout_s,
            can_cancel: args.user_can_cancel,
        }),
    };
    rt.block_on(run_job(
        settings,
        store,
        Job::Update(idf, options),
        show_progress,
    ))
}
