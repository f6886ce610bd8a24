//! What every bench reads from its environment and command line: positive numbers, the agent
//! binary to measure, and the parts to run.

use std::path::PathBuf;

use anyhow::{Context, Result, bail};

use crate::support;

/// `key` from the environment as a positive number, `default` when it is not set.
pub fn number(key: &str, default: u64) -> Result<u64> {
    match std::env::var(key) {
        Ok(v) => v
            .trim()
            .parse()
            .ok()
            .filter(|n| *n > 0)
            .with_context(|| format!("{key}={v:?} is not a positive number")),
        Err(_) => Ok(default),
    }
}

/// `IGEL_AGENT_BIN`, else the binary cargo built beside the bench; it must exist.
pub fn agent_binary() -> Result<PathBuf> {
    let agent = std::env::var_os("IGEL_AGENT_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| support::agent::agent_bin().to_path_buf());
    if !agent.is_file() {
        bail!("IGEL_AGENT_BIN {} is not a file", agent.display());
    }
    Ok(agent)
}

/// The parts named on the command line (`cargo bench` passes `--bench`; every other argument
/// names a part), else in the environment variable `key`, separated by commas or spaces.
pub fn named_parts(key: &str) -> Vec<String> {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .collect();
    let named = if args.is_empty() {
        std::env::var(key).unwrap_or_default()
    } else {
        args.join(",")
    };
    named
        .split([',', ' '])
        .filter(|p| !p.is_empty())
        .map(str::to_string)
        .collect()
}
