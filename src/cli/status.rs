//! `status [--json] [--watch]`: what the daemon (or, without one, the journal) says. Works
//! without the daemon and without the lock. `--watch` redraws progress bars (bytes, rate,
//! ETA per app) on a terminal, and prints plain lines when something changed otherwise.

use std::collections::HashMap;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use super::{CmdResult, Failure, Global};
use crate::config::Settings;
use crate::report::{Status, human_bytes};
use crate::store::read_state;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The status as one JSON document instead of a table (its fields: docs/protocol.md).
    #[arg(long)]
    json: bool,
    /// Follow the progress until interrupted.
    #[arg(long, conflicts_with = "json")]
    watch: bool,
}

pub fn run(global: &Global, args: Args) -> CmdResult {
    // Status reads state and asks the daemon: no password or credential is needed, and a
    // configuration that cannot be read whole (a typo the daemon survived with its previous
    // one) must not hide what the device is doing.
    global.check_state_dir()?;
    let settings = match global.settings_with(crate::config::FileAccess::Skip) {
        Ok(settings) => settings,
        Err(failure) => {
            let paths = global.config.paths_only();
            errln!(
                "igel-update-agent: warning: {}; showing the status of the daemon on {} or of \
                 {} without the configuration",
                crate::report::clean(&failure.to_string()),
                paths.control_socket.display(),
                paths.state_dir.display()
            );
            crate::config::Settings::defaults(paths)
        }
    };
    let rt = super::runtime()?;
    if args.watch {
        return watch(&rt, &settings);
    }
    let status = current(&rt, &settings)?;
    if args.json {
        // Through a `Value`: its keys come out sorted, as they always have.
        let value = serde_json::to_value(&status).map_err(Failure::failed)?;
        outln!(
            "{}",
            serde_json::to_string_pretty(&value).map_err(Failure::failed)?
        );
    } else {
        out!("{}", status.to_text());
        if let Some(line) = ums_line(&settings) {
            outln!("{line}");
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// One line on the UMS channel, from what the daemon last recorded (`<state>/ums.json`).
fn ums_line(settings: &Settings) -> Option<String> {
    settings.ums()?;
    Some(
        match crate::ums::ConnectionRecord::read(&settings.paths.state_dir) {
            Some(record) if record.connected.is_none() && record.last_failure.is_some() => {
                format!("UMS: {} (see `check`)", record.describe())
            }
            Some(record) => format!("UMS: {}", record.describe()),
            None => "UMS: no connection recorded yet (is the daemon running?)".into(),
        },
    )
}

/// The daemon's status (with its queue) when it runs, else what state.json says.
fn current(rt: &tokio::runtime::Runtime, settings: &Settings) -> Result<Status, Failure> {
    let request = serde_json::json!({"id": super::job::command_id("status"), "command": "status"});
    if let Ok(reply) = rt.block_on(crate::control::client::request(
        &settings.paths.control_socket,
        &request,
    )) && let Some(status) = reply.status
    {
        let ours = std::path::absolute(&settings.paths.state_dir).ok();
        match status.state_dir.clone() {
            Some(theirs) if Some(&theirs) != ours.as_ref() => {
                static SAID: std::sync::Once = std::sync::Once::new();
                SAID.call_once(|| {
                    tracing::warn!(
                        "the daemon on {} manages {}; showing {} from its state.json instead",
                        settings.paths.control_socket.display(),
                        theirs.display(),
                        settings.paths.state_dir.display()
                    )
                });
            }
            _ => return Ok(*status),
        }
    }
    let mut state = read_state(&settings.paths.state_dir)
        .map_err(Failure::failed)?
        .unwrap_or_default();
    if !crate::store::lock_held(&settings.paths.state_dir) {
        state = state.into_interrupted(crate::agent::INTERRUPTED);
    }
    let mut status = Status::new(settings, &state);
    status.commands = Some(
        state
            .commands
            .iter()
            .map(|c| crate::report::QueuedStatus::new(c, false))
            .collect(),
    );
    Ok(status)
}

fn watch(rt: &tokio::runtime::Runtime, settings: &Settings) -> CmdResult {
    let terminal = std::io::IsTerminal::is_terminal(&std::io::stdout());
    let mut last: HashMap<String, (u64, Instant)> = HashMap::new();
    let mut rates: HashMap<String, f64> = HashMap::new();
    let (mut drawn, mut previous_text) = (0, String::new());
    loop {
        let status = current(rt, settings)?;
        let now = Instant::now();
        let mut lines = vec![format!(
            "Update status: {}",
            status.update_status.as_deref().unwrap_or("no update yet")
        )];
        let name_width = status
            .apps
            .iter()
            .map(|a| a.name.chars().count() + 1 + a.version.chars().count())
            .max()
            .unwrap_or(0);
        for app in &status.apps {
            if let Some((bytes, when)) = last.get(&app.name) {
                let secs = now.duration_since(*when).as_secs_f64();
                if secs > 0.0 && app.bytes_done >= *bytes {
                    let sample = (app.bytes_done - bytes) as f64 / secs;
                    let rate = rates.entry(app.name.clone()).or_insert(sample);
                    *rate = 0.7 * *rate + 0.3 * sample;
                }
            }
            last.insert(app.name.clone(), (app.bytes_done, now));
            // A rate belongs to a transfer that runs; a finished app shows none.
            let rate = if app.state == "downloading" {
                rates.get(&app.name).copied().unwrap_or(0.0)
            } else {
                rates.remove(&app.name);
                0.0
            };
            lines.push(progress_line(app, rate, name_width));
        }
        let text = lines.join("\n");
        if terminal {
            // Every line cut to the terminal's width (read again each time: it may have been
            // resized), so none wraps and the redraw covers exactly what was drawn.
            let width = super::output::terminal_width(&std::io::stdout()).unwrap_or(80);
            if drawn > 0 {
                out!("\x1b[{drawn}A\r");
            }
            for line in &lines {
                outln!(
                    "\x1b[2K{}",
                    super::output::fit(line, width.saturating_sub(1))
                );
            }
            // Lines of apps that are gone since the last drawing.
            out!("\x1b[J");
            drawn = lines.len();
        } else if text != previous_text {
            outln!("{text}");
        }
        previous_text = text;
        if super::output::stdout_gone() {
            return Ok(ExitCode::SUCCESS);
        }
        std::thread::sleep(Duration::from_secs(1));
    }
}

/// `name version [#####-----]  42%  1.2 MiB / 3.0 MiB  256.0 KiB/s  ETA 7s  downloading`: the
/// state first after the bar would move with the sizes, so it comes last.
fn progress_line(app: &crate::report::AppStatus, rate: f64, name_width: usize) -> String {
    const WIDTH: u64 = 20;
    let filled = app
        .bytes_done
        .saturating_mul(WIDTH)
        .checked_div(app.bytes_total)
        .unwrap_or(0)
        .min(WIDTH) as usize;
    let pct = app
        .bytes_done
        .saturating_mul(100)
        .checked_div(app.bytes_total)
        .unwrap_or(0);
    let eta = if rate > 1.0 && app.bytes_done < app.bytes_total {
        format!(
            "ETA {}s",
            ((app.bytes_total - app.bytes_done) as f64 / rate).ceil() as u64
        )
    } else {
        String::new()
    };
    let rate = if rate > 1.0 {
        format!("{}/s", human_bytes(rate as u64))
    } else {
        String::new()
    };
    format!(
        "{:<name_width$}  [{}{}] {pct:>3}% {:>10} / {:<10} {:>12} {:<9} {}{}",
        format!("{} {}", app.name, app.version),
        "#".repeat(filled),
        "-".repeat(WIDTH as usize - filled),
        human_bytes(app.bytes_done),
        human_bytes(app.bytes_total),
        rate,
        eta,
        app.state,
        crate::report::reused_note(app.bytes_reused)
    )
}
