//! `settings [KEY=VALUE...] [--reset [NAME...]]`: the `settings` command (IGEL registry keys)
//! from the shell, through the daemon when it runs, else on the state directory directly
//! (under its lock). Without arguments: the settings in force and what is set aside.

use std::collections::BTreeMap;
use std::process::ExitCode;

use super::job::{command_id, via_daemon};
use super::{CmdResult, Failure, Global};
use crate::config::FileAccess;
use crate::config::overrides::{Overrides, RESET_ALL, ReadProblem};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Registry keys to set: update.<key>=VALUE, update.external_binary_source<N>.<field>=VALUE
    /// (url, priority, username, password, crypt_password, certificate, auth). An empty VALUE
    /// removes the key; a certificate is PEM text or the absolute path of a PEM file.
    #[arg(value_name = "KEY=VALUE")]
    values: Vec<String>,
    /// Go back to the files: for these keys, a whole repository
    /// (update.external_binary_source<N>), or something set aside (its name as `status` shows
    /// it); without a NAME, for everything.
    #[arg(long, num_args = 0.., value_name = "NAME")]
    reset: Option<Vec<String>>,
}

pub fn run(global: &Global, args: Args) -> CmdResult {
    if args.values.is_empty() && args.reset.is_none() {
        return list(global);
    }
    let mut values = BTreeMap::new();
    for pair in &args.values {
        let (key, value) = pair.split_once('=').ok_or_else(|| {
            Failure::usage(anyhow::anyhow!(
                "{pair:?} is not KEY=VALUE (to remove a key: KEY= or --reset KEY)"
            ))
        })?;
        values.insert(key.trim().to_string(), value.to_string());
    }
    let reset = match args.reset {
        None => Vec::new(),
        Some(names) if names.is_empty() => vec![RESET_ALL.to_string()],
        Some(names) => names,
    };
    let settings = global.forwarding_settings()?;
    let rt = super::runtime()?;
    let request = serde_json::json!({
        "id": command_id("settings"),
        "command": "settings",
        "values": values,
        "reset": reset,
    });
    if let Some(result) = via_daemon(&rt, &settings, &request, false) {
        return result;
    }
    let store = crate::store::Store::open(&settings.paths)?;
    crate::daemon::settings::change(&global.config, &store, &values, &reset)
        .map_err(|e| Failure::usage(anyhow::anyhow!("settings: {e}")))?;
    errln!(
        "settings saved in {} (no daemon runs; every command uses them from now on)",
        store
            .state_dir()
            .join(crate::config::overrides::FILE)
            .display()
    );
    Ok(ExitCode::SUCCESS)
}

/// The keys in force (secrets as `***`) and what is set aside.
fn list(global: &Global) -> CmdResult {
    let settings = global.settings_with(FileAccess::Skip)?;
    let state_dir = &settings.paths.state_dir;
    let persisted = match Overrides::read(state_dir) {
        Ok(o) => o,
        Err(ReadProblem::Unreadable(reason)) => {
            return Err(Failure::failed(anyhow::anyhow!(reason)));
        }
        Err(ReadProblem::Invalid(_)) => Overrides::default(),
    };
    if persisted.is_empty() {
        outln!("No settings made by the settings command; the configuration files decide.");
    }
    let aside: Vec<&str> = settings.set_aside.iter().map(|a| a.name.as_str()).collect();
    for key in persisted.keys() {
        let value = persisted.shown(key).unwrap_or_default();
        let group =
            crate::config::registry::parse_key(key).map_or_else(|_| key.to_string(), |t| t.group());
        let note = if aside.contains(&group.as_str()) {
            "  (set aside)"
        } else {
            ""
        };
        outln!("{key}={}{note}", value.replace('\n', "\\n"));
    }
    let notices = crate::store::read_state(state_dir)
        .ok()
        .flatten()
        .map(|s| s.set_aside)
        .unwrap_or_default();
    let all: Vec<_> = settings.set_aside.iter().chain(&notices).collect();
    if !all.is_empty() {
        outln!(
            "\nSet aside (kept, not applied; `igel-update-agent settings --reset NAME` drops one):"
        );
        for item in all {
            outln!("  {}: {}", item.name, item.reason);
        }
    }
    Ok(ExitCode::SUCCESS)
}
