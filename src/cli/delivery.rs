//! `delivery [--idf FILE|URL] [--wait]`: transfer and stage only, never activate. Until the
//! daemon exists (it comes with the control socket) this always runs in this process and waits.

use std::sync::Arc;

use super::job::{Job, load_idf, run_job};
use super::{CmdResult, Global};
use crate::store::Store;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// IDF as a JSON file or an http(s) URL; default: the [[app]] tables of the configuration.
    #[arg(long, value_name = "FILE|URL")]
    idf: Option<String>,
    /// Wait until the transfer ends (always the case when no daemon runs).
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
    rt.block_on(run_job(settings, store, Job::Delivery(idf), show_progress))
}
