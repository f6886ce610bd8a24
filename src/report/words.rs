//! IGEL's status texts (DESIGN 7) as one type. Every producer (the agent, the daemon, the
//! record of an interruption) builds a [`StatusText`]; every reader (`--wait`, `status` on a
//! journal that no process holds, the recovery at start) parses one. What is stored in
//! `state.json`, logged, sent to the UMS and shown is its text, byte for byte as before:
//!
//! `Update in progress (Transfer started – 2026-11-22 16:35:00)` (local time, en dash), the
//! steps Transfer started/completed and Installation started/completed, then `Update
//! successful`, `Update failed: <app>: <reason>`, `Update deferred`, `Update not necessary`.
//! A Delivery (and the transfer of an assigned IDF) says `Delivery` where an Update says
//! `Update`, and ends with `Delivery successful` or `Delivery failed: ...`.

use std::fmt;

use super::clean;

/// The steps of an update, each with its IGEL words.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    TransferStarted,
    TransferCompleted,
    InstallationStarted,
    InstallationCompleted,
}

impl Phase {
    const ALL: [Phase; 4] = [
        Phase::TransferStarted,
        Phase::TransferCompleted,
        Phase::InstallationStarted,
        Phase::InstallationCompleted,
    ];

    fn words(self) -> &'static str {
        match self {
            Phase::TransferStarted => "Transfer started",
            Phase::TransferCompleted => "Transfer completed",
            Phase::InstallationStarted => "Installation started",
            Phase::InstallationCompleted => "Installation completed",
        }
    }
}

/// Which command the status texts speak of. An Update ends with `Update successful`; a
/// Delivery, or the transfer of an assigned IDF, ends with `Delivery successful`, so that a
/// transfer that has ended never reads as one that runs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Command {
    #[default]
    Update,
    Delivery,
}

impl Command {
    const ALL: [Command; 2] = [Command::Update, Command::Delivery];

    pub fn word(self) -> &'static str {
        match self {
            Command::Update => "Update",
            Command::Delivery => "Delivery",
        }
    }
}

/// One status text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StatusText {
    /// `Update in progress (<phase> – <local time>)`.
    InProgress {
        command: Command,
        phase: Phase,
        /// Local time, `%Y-%m-%d %H:%M:%S`.
        at: String,
    },
    /// `Update successful`, `Delivery successful`.
    Successful(Command),
    /// `Update failed: <app>: <reason>`, or `Update failed: <reason>` for a failure that
    /// concerns no single app. The reason is [`clean`]ed when written.
    Failed {
        command: Command,
        app: Option<String>,
        reason: String,
    },
    /// `Update not necessary`: the IDF has not changed and every app is in place.
    NotNecessary,
    /// `Update deferred`: the user postponed the installation.
    Deferred,
}

impl StatusText {
    /// A step of `command`, stamped now.
    pub fn in_progress(command: Command, phase: Phase) -> StatusText {
        StatusText::InProgress {
            command,
            phase,
            at: chrono::Local::now().format("%Y-%m-%d %H:%M:%S").to_string(),
        }
    }

    /// `command` failed for `app`.
    pub fn app_failed(command: Command, app: &str, reason: &str) -> StatusText {
        StatusText::Failed {
            command,
            app: Some(app.to_string()),
            reason: reason.to_string(),
        }
    }

    /// `command` failed, for no single app (cancelled, interrupted, an IDF that did not come).
    pub fn failed(command: Command, reason: &str) -> StatusText {
        StatusText::Failed {
            command,
            app: None,
            reason: reason.to_string(),
        }
    }

    /// Reads a stored text back; `None` for a text that is none of these (an older agent's,
    /// or a file changed by hand). A failure's app and reason are not told apart again: the
    /// rest of the text is the reason.
    pub fn parse(text: &str) -> Option<StatusText> {
        match text {
            "Update not necessary" => return Some(StatusText::NotNecessary),
            "Update deferred" => return Some(StatusText::Deferred),
            _ => {}
        }
        for command in Command::ALL {
            let word = command.word();
            let Some(rest) = text.strip_prefix(word) else {
                continue;
            };
            if rest == " successful" {
                return Some(StatusText::Successful(command));
            }
            if let Some(reason) = rest.strip_prefix(" failed: ") {
                return Some(StatusText::failed(command, reason));
            }
            let inner = rest.strip_prefix(" in progress (")?.strip_suffix(')')?;
            let (step, at) = inner.split_once(" \u{2013} ")?;
            let phase = Phase::ALL.into_iter().find(|p| p.words() == step)?;
            return Some(StatusText::InProgress {
                command,
                phase,
                at: at.to_string(),
            });
        }
        None
    }

    /// The command this text says is running, if it says one is.
    pub fn running(&self) -> Option<Command> {
        match self {
            StatusText::InProgress { command, .. } => Some(*command),
            _ => None,
        }
    }

    pub fn is_failure(&self) -> bool {
        matches!(self, StatusText::Failed { .. })
    }
}

impl fmt::Display for StatusText {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StatusText::InProgress { command, phase, at } => write!(
                f,
                "{} in progress ({} \u{2013} {at})",
                command.word(),
                phase.words()
            ),
            StatusText::Successful(command) => write!(f, "{} successful", command.word()),
            StatusText::Failed {
                command,
                app: Some(app),
                reason,
            } => write!(f, "{} failed: {app}: {}", command.word(), clean(reason)),
            StatusText::Failed {
                command,
                app: None,
                reason,
            } => write!(f, "{} failed: {}", command.word(), clean(reason)),
            StatusText::NotNecessary => f.write_str("Update not necessary"),
            StatusText::Deferred => f.write_str("Update deferred"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_texts_use_the_igel_words_and_an_en_dash() {
        let text = StatusText::in_progress(Command::Update, Phase::TransferStarted).to_string();
        assert!(
            text.starts_with("Update in progress (Transfer started \u{2013} "),
            "{text}"
        );
        assert!(text.ends_with(')'));
        // "YYYY-MM-DD HH:MM:SS" between the dash and the parenthesis.
        let stamp = &text["Update in progress (Transfer started \u{2013} ".len()..text.len() - 1];
        assert_eq!(stamp.len(), 19, "{stamp}");
        assert!(
            chrono::NaiveDateTime::parse_from_str(stamp, "%Y-%m-%d %H:%M:%S").is_ok(),
            "{stamp}"
        );
    }

    #[test]
    fn every_text_reads_back_as_itself() {
        let texts = [
            StatusText::in_progress(Command::Update, Phase::TransferStarted),
            StatusText::in_progress(Command::Delivery, Phase::TransferCompleted),
            StatusText::in_progress(Command::Update, Phase::InstallationStarted),
            StatusText::in_progress(Command::Update, Phase::InstallationCompleted),
            StatusText::Successful(Command::Update),
            StatusText::Successful(Command::Delivery),
            StatusText::failed(Command::Update, "cancelled"),
            StatusText::failed(Command::Delivery, "interrupted: the daemon stopped"),
            StatusText::NotNecessary,
            StatusText::Deferred,
        ];
        for text in texts {
            let written = text.to_string();
            let read = StatusText::parse(&written).unwrap_or_else(|| panic!("{written}"));
            assert_eq!(read, text, "{written}");
            assert_eq!(read.to_string(), written);
        }
        // An app's failure reads back as a failure with the same text.
        let failed = StatusText::app_failed(Command::Delivery, "zoom", "404");
        let read = StatusText::parse(&failed.to_string()).unwrap();
        assert!(read.is_failure());
        assert_eq!(read.to_string(), "Delivery failed: zoom: 404");
        assert_eq!(StatusText::parse("idle"), None);
        assert_eq!(
            StatusText::parse("Update in progress (Lunch \u{2013} now)"),
            None
        );
    }

    #[test]
    fn a_delivery_has_its_own_words_and_outcome() {
        let text = StatusText::in_progress(Command::Delivery, Phase::TransferStarted);
        assert!(
            text.to_string()
                .starts_with("Delivery in progress (Transfer started")
        );
        assert_eq!(text.running(), Some(Command::Delivery));
        for ended in [
            StatusText::Successful(Command::Delivery),
            StatusText::Successful(Command::Update),
            StatusText::NotNecessary,
        ] {
            assert_eq!(ended.running(), None, "{ended}");
            assert!(!ended.is_failure(), "{ended}");
        }
        let failed = StatusText::app_failed(Command::Delivery, "zoom", "404\n");
        assert_eq!(failed.to_string(), "Delivery failed: zoom: 404\\u{a}");
        assert!(failed.is_failure());
    }
}
