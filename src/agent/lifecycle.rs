//! The life of an app version (DESIGN 6), every transition in one place:
//!
//! ```text
//! assigned -> downloading -> downloaded ------------------> installed
//!                  |              ^  | (setting on/off)        ^
//!                  v              |  v                         |
//!           download-failed    marked-for-installation --------+
//!                                         |            activation fails
//!                                         v
//!                                 activation-failed (retried at boot / Update)
//! any state -> marked-for-removal (the app left the IDF) -> removed at the next activation
//! ```
//!
//! Pure logic: no files, no network. A transition that may not start from the current state is
//! an error naming both, so a bug shows up as a clear message instead of a silent wrong state.

use crate::store::AppState;

/// What happened to an app version.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event {
    /// Its transfer began (or resumed).
    TransferStarted,
    /// Every repository failed for one of its files.
    TransferFailed,
    /// All files are verified and staged; `at_boot`: the setting "activate after installation".
    Staged { at_boot: bool },
    /// The setting "activate after installation" is now on (`true`) or off (`false`).
    PolicyChanged { at_boot: bool },
    /// The `current` link points at it and the hook succeeded.
    Activated,
    /// The hook failed; `current` was put back.
    ActivationFailed,
    /// The app is no longer in the IDF.
    LeftIdf,
    /// The app is in the IDF again before it was removed.
    Reassigned,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("state {} does not allow {event:?}", from.as_str())]
pub struct InvalidTransition {
    pub from: AppState,
    pub event: Event,
}

impl AppState {
    /// The state after `event`, or an error if `event` cannot happen in this state.
    pub fn on(self, event: Event) -> Result<AppState, InvalidTransition> {
        use AppState::*;
        let next = match (self, event) {
            (Assigned | Downloading | DownloadFailed, Event::TransferStarted) => Downloading,
            (Assigned | Downloading | DownloadFailed, Event::TransferFailed) => DownloadFailed,
            (Assigned | Downloading | DownloadFailed, Event::Staged { at_boot }) => staged(at_boot),
            (Downloaded | MarkedForInstallation, Event::PolicyChanged { at_boot }) => {
                staged(at_boot)
            }
            (Downloaded | MarkedForInstallation | ActivationFailed, Event::Activated) => Installed,
            (Downloaded | MarkedForInstallation | ActivationFailed, Event::ActivationFailed) => {
                ActivationFailed
            }
            (_, Event::LeftIdf) => MarkedForRemoval,
            (MarkedForRemoval, Event::Reassigned) => Assigned,
            (from, event) => return Err(InvalidTransition { from, event }),
        };
        Ok(next)
    }

    /// Not yet transferred and staged: a transfer can start (again) from here.
    pub fn awaits_transfer(self) -> bool {
        matches!(
            self,
            AppState::Assigned | AppState::Downloading | AppState::DownloadFailed
        )
    }

    /// Waiting to be activated (by the Update command, at boot, or as a retry).
    pub fn is_staged(self) -> bool {
        matches!(
            self,
            AppState::Downloaded | AppState::MarkedForInstallation | AppState::ActivationFailed
        )
    }
}

fn staged(at_boot: bool) -> AppState {
    if at_boot {
        AppState::MarkedForInstallation
    } else {
        AppState::Downloaded
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use AppState::*;

    #[test]
    fn the_setting_decides_where_a_staged_version_waits() {
        assert_eq!(
            Downloading.on(Event::Staged { at_boot: true }),
            Ok(MarkedForInstallation)
        );
        assert_eq!(
            Downloading.on(Event::Staged { at_boot: false }),
            Ok(Downloaded)
        );
        assert_eq!(
            Downloaded.on(Event::PolicyChanged { at_boot: true }),
            Ok(MarkedForInstallation)
        );
        assert_eq!(
            MarkedForInstallation.on(Event::PolicyChanged { at_boot: false }),
            Ok(Downloaded)
        );
    }

    #[test]
    fn only_staged_versions_can_be_activated() {
        for from in [Downloaded, MarkedForInstallation, ActivationFailed] {
            assert_eq!(from.on(Event::Activated), Ok(Installed));
            assert_eq!(from.on(Event::ActivationFailed), Ok(ActivationFailed));
        }
        for from in [
            Assigned,
            Downloading,
            DownloadFailed,
            Installed,
            MarkedForRemoval,
        ] {
            assert!(from.on(Event::Activated).is_err(), "{from:?}");
        }
    }

    #[test]
    fn a_failed_download_is_retried_only_by_a_new_transfer() {
        assert_eq!(DownloadFailed.on(Event::TransferStarted), Ok(Downloading));
        assert!(
            DownloadFailed
                .on(Event::PolicyChanged { at_boot: true })
                .is_err()
        );
        assert!(Installed.on(Event::TransferStarted).is_err());
    }

    #[test]
    fn any_state_can_leave_the_idf_and_come_back() {
        for from in [
            Assigned,
            Downloading,
            Downloaded,
            Installed,
            ActivationFailed,
        ] {
            assert_eq!(from.on(Event::LeftIdf), Ok(MarkedForRemoval));
        }
        assert_eq!(MarkedForRemoval.on(Event::Reassigned), Ok(Assigned));
        let err = Installed.on(Event::Reassigned).unwrap_err();
        assert_eq!(err.to_string(), "state installed does not allow Reassigned");
    }
}
