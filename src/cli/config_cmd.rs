//! `config check`, `config import-registry` and `repos`.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Subcommand;
use serde::Serialize;

use super::{CmdResult, Failure, Global};
use crate::config::registry;

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Validate and print the effective configuration (secrets as ***).
    Check {
        /// A JSON document (valid, warnings, overridden, set_aside, settings) instead of TOML.
        #[arg(long)]
        json: bool,
    },
    /// Print the TOML for a file of IGEL registry keys (key=value lines).
    ImportRegistry {
        /// The registry keys: update.<key>=VALUE and update.external_binary_source<N>.<field>=VALUE
        /// lines (# comments allowed); passwords are not copied.
        file: PathBuf,
    },
}

pub fn run(global: &Global, cmd: Command) -> CmdResult {
    match cmd {
        Command::Check { json } => check(global, json),
        Command::ImportRegistry { file } => import_registry(&file),
    }
}

fn check(global: &Global, json: bool) -> CmdResult {
    let mut settings = match global.settings() {
        Ok(settings) => settings,
        // A script reading --json gets a document either way; the exit code stays 2.
        Err(failure) if json => {
            let report = serde_json::json!({
                "valid": false,
                "errors": [crate::report::clean(&failure.to_string())],
            });
            outln!(
                "{}",
                serde_json::to_string_pretty(&report).map_err(Failure::failed)?
            );
            return Err(failure);
        }
        Err(failure) => return Err(failure),
    };
    let state = crate::store::read_state(&settings.paths.state_dir)
        .ok()
        .flatten();
    let wanted = crate::check::files::wanted(&settings, state.as_ref()).map(|(idf, _)| idf);
    for (repo, warning) in crate::check::plain_http(&settings, wanted.as_ref()) {
        let warning =
            format!("repository {repo:?}: {warning}; use https:// or pin app.json in the IDF");
        tracing::warn!("{warning}");
        settings.warnings.push(warning);
    }
    // A credential outside systemd is no configuration error, but worth saying.
    for repo in &settings.repositories {
        if let Some(crate::config::Password::Unavailable(reason)) = repo.auth.password() {
            let warning = format!("repository {:?}: {reason}", repo.name);
            tracing::warn!("{warning}");
            settings.warnings.push(warning);
        }
    }
    if json {
        #[derive(Serialize)]
        struct Report<'a> {
            valid: bool,
            errors: [&'a str; 0],
            warnings: &'a [String],
            /// Registry keys of the `settings` command in force.
            overridden: &'a [String],
            set_aside: &'a [crate::config::SetAside],
            settings: &'a crate::config::Settings,
        }
        let report = Report {
            valid: true,
            errors: [],
            warnings: &settings.warnings,
            overridden: &settings.overridden,
            set_aside: &settings.set_aside,
            settings: &settings,
        };
        outln!(
            "{}",
            serde_json::to_string_pretty(&report).map_err(Failure::failed)?
        );
    } else {
        let text = toml::to_string_pretty(&settings).map_err(Failure::failed)?;
        outln!("{text}");
        let files: Vec<String> = settings
            .files
            .iter()
            .map(|f| f.display().to_string())
            .collect();
        errln!(
            "configuration is valid ({})",
            if files.is_empty() {
                "no file: defaults".to_string()
            } else {
                files.join(", ")
            }
        );
        if !settings.overridden.is_empty() {
            errln!(
                "settings made by the `settings` command (in {}): {}",
                settings
                    .paths
                    .state_dir
                    .join(crate::config::overrides::FILE)
                    .display(),
                settings.overridden.join(", ")
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn import_registry(file: &std::path::Path) -> CmdResult {
    let text = std::fs::read_to_string(file)
        .map_err(|e| Failure::usage(anyhow::anyhow!("cannot read {}: {e}", file.display())))?;
    let toml = registry::to_toml(&text, "/etc/igel-update-agent")
        .map_err(|e| Failure::usage(anyhow::anyhow!("{}: {e}", file.display())))?;
    out!("{toml}");
    Ok(ExitCode::SUCCESS)
}

pub fn repos(global: &Global, json: bool) -> CmdResult {
    let settings = global.settings_with(crate::config::FileAccess::Skip)?;
    #[derive(Serialize)]
    struct Row<'a> {
        order: Option<usize>,
        name: &'a str,
        url: &'a str,
        priority: i64,
        auth: &'static str,
        hidden: bool,
    }
    let mut order = 0;
    let rows: Vec<Row> = settings
        .repositories
        .iter()
        .map(|r| Row {
            order: (!r.hidden()).then(|| {
                order += 1;
                order
            }),
            name: &r.name,
            url: r.url.as_str(),
            priority: r.priority,
            auth: r.auth.name(),
            hidden: r.hidden(),
        })
        .collect();
    if json {
        outln!(
            "{}",
            serde_json::to_string_pretty(&rows).map_err(Failure::failed)?
        );
        return Ok(ExitCode::SUCCESS);
    }
    if rows.is_empty() {
        outln!("No repositories configured.");
    }
    for r in &rows {
        let pos = r.order.map_or_else(|| "-".to_string(), |o| format!("{o}."));
        let note = if r.hidden {
            "  (hidden: synced, not used by devices yet)"
        } else {
            ""
        };
        outln!(
            "{pos:>3} {:<20} priority {:<10} {:<6} {}{note}",
            r.name,
            r.priority,
            r.auth,
            r.url
        );
    }
    Ok(ExitCode::SUCCESS)
}
