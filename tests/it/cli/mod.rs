//! The command line as an administrator meets it: configuration (`config check`, global
//! options), the repository commands (and the byte ranges `repo serve` answers real clients),
//! `check`, `settings`, and the README and `--help`.

mod check;
mod completions;
mod config;
mod readme;
mod repo;
mod repo_ranges;
mod settings;
