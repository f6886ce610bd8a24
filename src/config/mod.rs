//! Configuration in three steps, each its own file: `fragments` reads the main file and the
//! drop-ins as raw TOML, `inputs` merges them, `settings` validates the result into typed
//! [`Settings`]. Nothing downstream re-validates. `registry` translates IGEL registry keys;
//! `overrides` keeps the settings the `settings` command persisted and applies them to the
//! merged inputs; `source` ([`ConfigSource`]) runs the steps and sets aside a persisted
//! setting that no longer validates.
//!
//! `settings` only orchestrates: each section validates itself in its own module — `paths`,
//! `update`, `repository`, `ums`, `apps` — and `settings` hands each its inputs and assembles
//! [`Settings`]. An invalid value is a [`ConfigError::Invalid`] that carries its [`Origin`]
//! and its [`Key`] (section, table index, field) as values.
//!
//! Secrets are read here and held in [`Secret`], which never prints its value.
//!
//! Dependencies point one way, down this list (a module uses only modules below it; `mod.rs`
//! declares and re-exports):
//!
//! ```text
//! source      the effective configuration: the files, then the persisted keys
//! settings    orchestration: `Settings` from `Inputs`
//! paths  update  repository  ums  apps     one section each
//! overrides   persisted registry keys, applied to `Inputs`
//! bounds      the bounds of durations and counts, and their readers
//! inputs      the merged fragments
//! fragments   the raw TOML of each file
//! error       ConfigError, Key, Section
//! origin  secret  registry  bandwidth      leaves: no `super::` import
//! ```

mod apps;
pub mod bandwidth;
pub mod bounds;
mod error;
pub mod fragments;
pub mod inputs;
mod origin;
pub mod overrides;
mod paths;
pub mod registry;
mod repository;
mod secret;
pub mod settings;
mod source;
mod ums;
mod update;

pub use error::ConfigError;
pub use overrides::{Overrides, SetAside};
pub use repository::{RepositoryAuth, RepositorySettings};
pub use secret::{FileAccess, Password, Secret};
pub use settings::Settings;
pub use source::ConfigSource;
pub use update::RebootPolicy;

#[cfg(test)]
mod tests;
