//! `run`: the daemon, as systemd starts it (`ExecStart=igel-update-agent run`).

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use super::{CmdResult, Failure, Global};
use crate::daemon::{self, DaemonError};
use crate::store::Store;

pub fn run(global: &Global) -> CmdResult {
    let settings = global.settings()?;
    let store = Arc::new(Store::open(&settings.paths)?);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .max_blocking_threads(8)
        .enable_all()
        .build()
        .map_err(Failure::failed)?;
    let result = rt.block_on(daemon::run(global.config.clone(), store));
    // Transfers still writing on blocking threads get a moment, then the process ends; their
    // part files stay for the resume.
    rt.shutdown_timeout(Duration::from_secs(3));
    match result {
        Ok(()) => Ok(ExitCode::SUCCESS),
        Err(e @ DaemonError::Config(_)) => Err(Failure::usage(e)),
        Err(e) => Err(Failure::failed(e)),
    }
}
