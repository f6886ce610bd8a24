//! Where a value of the configuration was written, and a value with its origin. Every error
//! about a value names its origin.

use std::fmt;
use std::path::PathBuf;

/// Where a value was written: `file:line`, or the IGEL registry key of a persisted setting
/// (the `settings` command), which overrides the files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    pub path: PathBuf,
    pub line: usize,
    /// The registry key, for a value that came from the `settings` command.
    pub setting: Option<String>,
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.setting {
            Some(key) => write!(f, "setting {key}"),
            None => write!(f, "{}:{}", self.path.display(), self.line),
        }
    }
}

#[derive(Debug, Clone)]
pub struct Sourced<T> {
    pub value: T,
    pub origin: Origin,
}

/// A switch as given, else `default`.
pub(super) fn flag(input: &Option<Sourced<bool>>, default: bool) -> bool {
    input.as_ref().map_or(default, |s| s.value)
}
