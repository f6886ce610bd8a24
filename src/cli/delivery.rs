//! `delivery [--idf FILE|URL] [--wait]`: transfer and stage only, never activate. Goes to the
//! daemon when one runs (`--wait` follows it to the end), else runs in this process.

use super::job::{Job, command_id, idf_fields, load_idf, run_here, via_daemon};
use super::{CmdResult, Failure, Global};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// IDF as a JSON file or an https URL; default: the IDF last assigned, else the [[app]]
    /// tables of the configuration, else the versions on the device (`status` says which).
    #[arg(long, value_name = "FILE|URL")]
    idf: Option<String>,
    /// With a daemon: wait until the transfer ends (without one the command always waits).
    #[arg(long)]
    wait: bool,
}

pub fn run(global: &Global, args: Args) -> CmdResult {
    // Forwarding to the daemon needs no password (see `update`).
    let settings = global.forwarding_settings()?;
    let rt = super::runtime()?;
    let mut request = idf_fields(args.idf.as_deref())?;
    if let Some(url) = request
        .remove("idf_url")
        .and_then(|u| u.as_str().map(String::from))
    {
        // The delivery command has no idf_url: fetch it here.
        let idf = rt.block_on(load_idf(&url, &settings))?;
        request.insert(
            "idf".into(),
            serde_json::to_value(idf).map_err(Failure::failed)?,
        );
    }
    request.insert("id".into(), command_id("delivery").into());
    request.insert("command".into(), "delivery".into());
    let request = serde_json::Value::Object(request);
    if let Some(result) = via_daemon(&rt, &settings, &request, args.wait) {
        return result;
    }
    let settings = global.settings()?;
    run_here(&rt, settings, &request, args.idf.as_deref(), Job::Delivery)
}
