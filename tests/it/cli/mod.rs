//! The command line as an administrator meets it: configuration (`config check`, global
//! options), the repository commands, `check`, `settings`, and the README and `--help`.

mod check;
mod completions;
mod config;
mod readme;
mod repo;
mod settings;
