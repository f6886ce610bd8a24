//! What the agent tells people: IGEL's status texts (DESIGN 7), the `status` view of the
//! journal (DESIGN 8, `--json` shape), and human-readable sizes. Reads state; changes nothing.

use std::fmt::Write;

use serde::Serialize;

use crate::config::{SetAside, Settings};
use crate::store::{QueuedCommand, State};

mod words;
pub use words::{Command, Phase, StatusText};

/// Text that came from outside (a server's answer in an error, a listing, a header) made safe
/// to store, print, log and send: control characters and the invisible bidirectional marks
/// become visible escapes (`\u{1b}`), so nothing a server sends can move a terminal's cursor,
/// forge a log line or reorder what an administrator reads.
pub fn clean(text: &str) -> std::borrow::Cow<'_, str> {
    let unsafe_char = |c: char| {
        c.is_control()
            || matches!(c, '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
    };
    if !text.chars().any(unsafe_char) {
        return std::borrow::Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        if unsafe_char(c) {
            out.extend(c.escape_unicode());
        } else {
            out.push(c);
        }
    }
    std::borrow::Cow::Owned(out)
}

pub fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = n as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize)]
pub struct StatusSettings {
    pub activate_after_installation: bool,
    pub bandwidth_limit_bytes_per_sec: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize)]
pub struct AppStatus {
    pub name: String,
    pub version: String,
    pub state: String,
    pub active: bool,
    /// The version in use now, whatever the state of the wanted one.
    pub active_version: Option<String>,
    pub bytes_done: u64,
    pub bytes_total: u64,
    /// Of `bytes_done`, how many a delta update copied from the device instead of
    /// downloading them.
    #[serde(default)]
    pub bytes_reused: u64,
    pub repository: Option<String>,
    pub error: Option<String>,
}

/// ` (2.9 MiB reused)` when a delta update copied bytes from the device, else nothing.
pub fn reused_note(bytes: u64) -> String {
    if bytes > 0 {
        format!(" ({} reused)", human_bytes(bytes))
    } else {
        String::new()
    }
}

/// One waiting command, as `status` shows the queue.
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize)]
pub struct QueuedStatus {
    pub id: String,
    pub command: String,
    pub not_before: Option<chrono::DateTime<chrono::Utc>>,
    pub running: bool,
    pub deferrals: u32,
}

impl QueuedStatus {
    pub fn new(c: &QueuedCommand, running: bool) -> QueuedStatus {
        QueuedStatus {
            id: c.id.clone(),
            command: c.command.name().to_string(),
            not_before: c.not_before,
            running,
            deferrals: c.deferrals,
        }
    }
}

/// The `status --json` document.
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize)]
pub struct Status {
    pub agent_version: String,
    pub settings: StatusSettings,
    pub idf_sha256: Option<String>,
    pub applied_idf_sha256: Option<String>,
    pub update_status: Option<String>,
    pub apps: Vec<AppStatus>,
    /// Persisted settings and journal entries that did not validate and are not applied;
    /// `settings --reset NAME` drops one.
    #[serde(default)]
    pub set_aside: Vec<SetAside>,
    /// The daemon's queue (from `state.json` when no daemon answers).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub commands: Option<Vec<QueuedStatus>>,
    /// The state directory this status is of (absolute).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state_dir: Option<std::path::PathBuf>,
    /// What an Update or Delivery without an IDF applies, and where that comes from
    /// (`agent::wanted`); none when there is nothing to apply.
    #[serde(default)]
    pub wanted: Option<WantedStatus>,
}

/// The wanted apps and their source, as `status` shows them.
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize)]
pub struct WantedStatus {
    pub source: crate::agent::wanted::Source,
    pub apps: Vec<crate::idf::WantedApp>,
    /// Set when the `[[app]]` tables are not what applies.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

impl WantedStatus {
    fn new(settings: &Settings, state: &State) -> Option<WantedStatus> {
        let (idf, source) = crate::agent::wanted::wanted_in(settings, state)?;
        Some(WantedStatus {
            note: crate::agent::wanted::unused_config_apps(settings, source, &idf),
            source,
            apps: idf.apps,
        })
    }
}

impl Status {
    pub fn new(settings: &Settings, state: &State) -> Status {
        Status {
            agent_version: env!("CARGO_PKG_VERSION").to_string(),
            settings: StatusSettings {
                activate_after_installation: settings.update.activate_after_installation,
                bandwidth_limit_bytes_per_sec: settings.update.effective_limit(),
            },
            idf_sha256: state.idf_sha256.clone(),
            applied_idf_sha256: state.applied_idf_sha256.clone(),
            update_status: state.update_status.clone(),
            apps: state
                .apps
                .iter()
                .map(|a| AppStatus {
                    name: a.name.clone(),
                    version: a.version.clone(),
                    state: a.state.as_str().to_string(),
                    active: a.active_version.as_deref() == Some(a.version.as_str()),
                    active_version: a.active_version.clone(),
                    bytes_done: a.bytes_done,
                    bytes_total: a.bytes_total,
                    bytes_reused: a.bytes_reused,
                    repository: a.repository.clone(),
                    error: a.error.clone(),
                })
                .collect(),
            set_aside: settings
                .set_aside
                .iter()
                .chain(&state.set_aside)
                .cloned()
                .collect(),
            commands: None,
            state_dir: std::path::absolute(&settings.paths.state_dir).ok(),
            wanted: WantedStatus::new(settings, state),
        }
    }

    /// A table for people.
    pub fn to_text(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "Update status: {}",
            self.update_status.as_deref().unwrap_or("no update yet")
        );
        let limit = self
            .settings
            .bandwidth_limit_bytes_per_sec
            .map_or_else(|| "none".to_string(), |b| format!("{}/s", human_bytes(b)));
        let _ = writeln!(
            out,
            "Activate after installation: {}   Bandwidth limit: {limit}",
            if self.settings.activate_after_installation {
                "on"
            } else {
                "off"
            }
        );
        if !self.set_aside.is_empty() {
            let _ = writeln!(
                out,
                "Set aside (kept, not applied; `igel-update-agent settings --reset NAME` drops one):"
            );
            for item in &self.set_aside {
                let _ = writeln!(out, "  {}: {}", item.name, item.reason);
            }
        }
        match &self.wanted {
            Some(w) => {
                let apps: Vec<String> = w
                    .apps
                    .iter()
                    .map(|a| format!("{} {}", a.name, a.version))
                    .collect();
                let _ = writeln!(
                    out,
                    "Wanted (from {}): {}",
                    w.source.describe(),
                    apps.join(", ")
                );
                if let Some(note) = &w.note {
                    let _ = writeln!(out, "Note: {note}");
                }
            }
            None => out.push_str(
                "Wanted: nothing (no IDF assigned, no [[app]] tables in the configuration)\n",
            ),
        }
        if self.apps.is_empty() {
            if self.wanted.is_some() {
                out.push_str(
                    "No app on the device yet: the next update or delivery brings them.\n",
                );
            }
            out.push_str(&self.queue_text());
            return out;
        }
        // Columns as wide as their widest cell, so rows line up whatever the names, states
        // and sizes are; an app's error goes on its own line below it.
        let rows: Vec<[String; 5]> = self
            .apps
            .iter()
            .map(|a| {
                let state = match (&a.active_version, a.active) {
                    (_, true) => format!("{} (active)", a.state),
                    (Some(v), false) => format!("{} (active: {v})", a.state),
                    (None, false) => a.state.clone(),
                };
                [
                    a.name.clone(),
                    a.version.clone(),
                    state,
                    format!(
                        "{} / {}{}",
                        human_bytes(a.bytes_done),
                        human_bytes(a.bytes_total),
                        reused_note(a.bytes_reused)
                    ),
                    a.repository.clone().unwrap_or_else(|| "-".into()),
                ]
            })
            .collect();
        let header = ["APP", "VERSION", "STATE", "BYTES", "REPOSITORY"].map(String::from);
        let mut widths = header.clone().map(|h| h.chars().count());
        for row in &rows {
            for (w, cell) in widths.iter_mut().zip(row) {
                *w = (*w).max(cell.chars().count());
            }
        }
        let line = |row: &[String; 5]| {
            let mut text = String::new();
            for (i, (cell, w)) in row.iter().zip(widths).enumerate() {
                let pad = " ".repeat(w - cell.chars().count());
                match i {
                    3 => text.push_str(&format!("{pad}{cell}  ")),
                    4 => text.push_str(cell),
                    _ => text.push_str(&format!("{cell}{pad}  ")),
                }
            }
            text
        };
        let _ = writeln!(out, "{}", line(&header));
        for (a, row) in self.apps.iter().zip(&rows) {
            let _ = writeln!(out, "{}", line(row));
            if let Some(e) = &a.error {
                let _ = writeln!(out, "    error: {e}");
            }
        }
        out.push_str(&self.queue_text());
        out
    }

    /// The daemon's queue, one line per command (nothing when it is empty).
    fn queue_text(&self) -> String {
        let Some(commands) = self.commands.as_ref().filter(|c| !c.is_empty()) else {
            return String::new();
        };
        let mut out = format!("Queue ({} commands):\n", commands.len());
        for c in commands {
            let when = match (c.running, c.not_before) {
                (true, _) => "running".to_string(),
                (false, Some(t)) => format!(
                    "waits until {}",
                    t.with_timezone(&chrono::Local).format("%Y-%m-%d %H:%M:%S")
                ),
                (false, None) => "waiting".to_string(),
            };
            let deferred = if c.deferrals > 0 {
                format!(", deferred {} times", c.deferrals)
            } else {
                String::new()
            };
            let _ = writeln!(out, "  {:<40} {:<9} {when}{deferred}", c.id, c.command);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_from_servers_cannot_reach_a_terminal_raw() {
        assert_eq!(clean("plain: 404"), "plain: 404");
        assert_eq!(
            clean("bad \u{1b}[2J\r\nINFO forged"),
            "bad \\u{1b}[2J\\u{d}\\u{a}INFO forged"
        );
        assert_eq!(clean("a\u{202e}b"), "a\\u{202e}b");
    }

    #[test]
    fn sizes_are_human() {
        assert_eq!(human_bytes(12), "12 B");
        assert_eq!(human_bytes(1536), "1.5 KiB");
        assert_eq!(human_bytes(3 * 1024 * 1024 * 1024), "3.0 GiB");
    }
}
