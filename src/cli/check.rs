//! `check [--json]`: the health check (see `crate::check`); exit 1 when anything fails.

use std::process::ExitCode;

use super::{CmdResult, Failure, Global};
use crate::check::{self, Level};
use crate::store::read_state;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The findings as JSON: {"ok": bool, "findings": [...]}.
    #[arg(long)]
    json: bool,
    /// Also read every wanted file from every repository (under the bandwidth limit) and
    /// compare its SHA-256 with app.json.
    #[arg(long)]
    deep: bool,
}

pub fn run(global: &Global, args: Args) -> CmdResult {
    let settings = global.settings()?;
    let state = match read_state(&settings.paths.state_dir) {
        Ok(state) => state,
        Err(e) => {
            tracing::warn!("{e}");
            None
        }
    };
    let rt = super::runtime()?;
    let findings = rt.block_on(check::run(&settings, state.as_ref(), args.deep));
    let failed = findings.iter().any(|f| f.level == Level::Fail);
    if args.json {
        let doc = serde_json::json!({"ok": !failed, "findings": findings});
        outln!(
            "{}",
            serde_json::to_string_pretty(&doc).map_err(Failure::failed)?
        );
    } else {
        for finding in &findings {
            outln!("{}", finding.line());
        }
    }
    Ok(if failed {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}
