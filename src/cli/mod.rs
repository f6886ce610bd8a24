//! The command line (DESIGN 8): parsing, logging set-up, and the exit codes every command
//! shares: 0 success, 1 the operation failed, 2 bad usage, config or input, 3 another
//! instance holds the lock. One command per file.

#[macro_use]
mod output;

mod activate;
mod cancel;
mod check;
mod completions;
mod config_cmd;
mod delivery;
mod demo;
mod job;
mod logging;
mod repo_cmd;
mod run;
mod settings;
mod status;
mod update;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::config::{ConfigSource, FileAccess, Settings};
use crate::store::{Store, StoreError};

/// The exit codes, at the end of the top-level `--help`.
const EXIT_CODES: &str = "\
Exit codes:
  0        success
  1        the operation failed
  2        bad usage, configuration or input
  3        another instance holds the lock
  130/143  interrupted by SIGINT/SIGTERM (update and delivery running in their own process)

Documentation: README.md, docs/protocol.md (commands, status texts, UMS channel),
docs/systemd.md, examples/agent.toml (every configuration key).";

/// What `--help` and the manual page's DESCRIPTION (examples/man-pages.rs) say the program
/// does.
const LONG_ABOUT: &str = "\
On-device update agent for IGEL OS thin clients.

It learns which apps, in which versions, the device must have (the IDF) from the management \
server (UMS) or from its configuration, downloads them from prioritized WebDAV repositories \
under one device-wide bandwidth limit, verifies every file's SHA-256, stages complete versions \
next to the active ones and activates them at the next boot (igel-update-agent-activate.service) \
or when the Update command arrives. `run` is the daemon (igel-update-agent.service); the other \
commands inspect and steer it, and work without it.";

#[derive(Debug, Parser)]
#[command(
    name = "igel-update-agent",
    version,
    about = "On-device update agent for IGEL OS thin clients",
    long_about = LONG_ABOUT,
    after_help = EXIT_CODES
)]
pub struct Cli {
    /// Main configuration file (default /etc/igel-update-agent/agent.toml); drop-ins are read
    /// from <name>.d/*.toml beside it (agent.toml: agent.d/).
    #[arg(
        long,
        global = true,
        env = "IGEL_UPDATE_AGENT_CONFIG",
        value_name = "PATH"
    )]
    config: Option<PathBuf>,
    /// State directory (journal, staging, apps, lock); default: [paths] state_dir, else
    /// /var/lib/igel-update-agent.
    #[arg(
        long,
        global = true,
        env = "IGEL_UPDATE_AGENT_STATE_DIR",
        value_name = "DIR"
    )]
    state_dir: Option<PathBuf>,
    /// Log level on stderr or in the journal: off, error, warn, info (default), debug or trace.
    #[arg(long, global = true, value_name = "LEVEL")]
    log_level: Option<String>,
    /// Only errors and results: no progress, no log below warn (unless --log-level says
    /// otherwise), no notes about where a command went.
    #[arg(short, long, global = true)]
    quiet: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// The daemon (systemd ExecStart).
    Run,
    /// The Update command: transfer what is missing, then activate every staged version now.
    Update(update::Args),
    /// Transfer and stage the apps of an IDF; never activates.
    Delivery(delivery::Args),
    /// Boot-time activation of the versions marked for installation.
    Activate(activate::Args),
    /// Apps with state, version, bytes, repository and error (reads state.json).
    Status(status::Args),
    /// Health check: repositories (DNS, connection, TLS, authentication, clock, files), space.
    Check(check::Args),
    /// Cancel a scheduled command, or stop the running one's transfers; through the daemon
    /// when it runs.
    Cancel(cancel::Args),
    /// Change the settings the UMS `settings` command changes (IGEL registry keys), or
    /// list them; through the daemon when it runs.
    Settings(settings::Args),
    /// Repositories in the order they are tried; hidden ones marked.
    Repos {
        /// A JSON array (order, name, url, priority, auth, hidden) instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Validate and print the configuration, or translate IGEL registry keys.
    #[command(subcommand)]
    Config(config_cmd::Command),
    /// Tools for repositories: index a directory, serve it over WebDAV.
    #[command(subcommand)]
    Repo(repo_cmd::Command),
    /// Serve the built-in demo repository on loopback and deliver it into a temporary state dir.
    Demo(demo::Args),
    /// Print the completion script for bash, zsh or fish on stdout.
    Completions(completions::Args),
}

/// A failed command: the message for stderr and the exit code.
#[derive(Debug)]
pub struct Failure {
    code: u8,
    error: anyhow::Error,
}

impl Failure {
    pub fn new(code: u8, error: impl Into<anyhow::Error>) -> Failure {
        Failure {
            code,
            error: error.into(),
        }
    }
    /// Exit 1: the operation failed.
    pub fn failed(error: impl Into<anyhow::Error>) -> Failure {
        Failure::new(1, error)
    }
    /// Exit 2: bad usage, configuration or input.
    pub fn usage(error: impl Into<anyhow::Error>) -> Failure {
        Failure::new(2, error)
    }
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.error)
    }
}

impl From<StoreError> for Failure {
    fn from(e: StoreError) -> Failure {
        let code = if matches!(e, StoreError::Locked { .. }) {
            3
        } else {
            1
        };
        Failure::new(code, e)
    }
}

pub type CmdResult = Result<ExitCode, Failure>;

/// Global options every command gets.
pub struct Global {
    pub config: ConfigSource,
}

impl Global {
    /// A state directory that is a file (or under one) is a usage error named as such, before
    /// anything tries to read `settings.json` or `state.json` in it.
    pub fn check_state_dir(&self) -> Result<(), Failure> {
        let dir = self.config.paths_only().state_dir;
        let problem = match std::fs::metadata(&dir) {
            Ok(meta) if meta.is_dir() => return Ok(()),
            Ok(_) => "it exists and is not a directory".to_string(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) if e.raw_os_error() == Some(nix::libc::ENOTDIR) => {
                "a part of its path is a file, not a directory".to_string()
            }
            Err(e) => format!("cannot be read: {e}"),
        };
        Err(Failure::usage(anyhow::anyhow!(
            "state directory {}: {problem} (set by --state-dir, IGEL_UPDATE_AGENT_STATE_DIR or \
             [paths] state_dir)",
            dir.display()
        )))
    }

    /// The effective configuration (files, drop-ins, persisted settings), reading the files
    /// it names; warnings and what is set aside go to the log.
    pub fn settings(&self) -> Result<Settings, Failure> {
        self.settings_with(FileAccess::Read)
    }

    /// The configuration for a command that may only forward to the daemon: no password is
    /// read, nothing is logged yet (the command that runs here logs it).
    pub fn forwarding_settings(&self) -> Result<Settings, Failure> {
        self.config
            .with_access(FileAccess::Skip)
            .load()
            .map_err(Failure::usage)
    }

    /// Like [`Global::settings`]; with [`FileAccess::Skip`] for a command that never contacts
    /// a repository (it must work as any user and outside systemd).
    pub fn settings_with(&self, access: FileAccess) -> Result<Settings, Failure> {
        self.check_state_dir()?;
        let settings = self
            .config
            .with_access(access)
            .load()
            .map_err(Failure::usage)?;
        for warning in &settings.warnings {
            tracing::warn!("{warning}");
        }
        for item in &settings.set_aside {
            tracing::warn!(
                "setting set aside (not applied): {}: {}; `igel-update-agent settings --reset {}` drops it",
                item.name,
                item.reason,
                item.name
            );
        }
        Ok(settings)
    }
}

pub fn main() -> ExitCode {
    // No core dump and no ptrace by other users: this process holds repository passwords and
    // the UMS client key in memory.
    let _ = nix::sys::prctl::set_dumpable(false);
    let cli = Cli::parse();
    output::set_quiet(cli.quiet);
    let level = cli
        .log_level
        .as_deref()
        .unwrap_or(if cli.quiet { "warn" } else { "info" });
    if let Err(e) = logging::init(level) {
        errln!("igel-update-agent: {e}");
        return ExitCode::from(2);
    }
    let global = Global {
        config: ConfigSource::new(cli.config.as_deref(), cli.state_dir.as_deref())
            .verified_by(crate::repository::verify),
    };
    let result = match cli.command {
        Command::Run => run::run(&global),
        Command::Update(args) => update::run(&global, args),
        Command::Delivery(args) => delivery::run(&global, args),
        Command::Activate(args) => activate::run(&global, args),
        Command::Status(args) => status::run(&global, args),
        Command::Check(args) => check::run(&global, args),
        Command::Settings(args) => settings::run(&global, args),
        Command::Cancel(args) => cancel::run(&global, args),
        Command::Repos { json } => config_cmd::repos(&global, json),
        Command::Config(cmd) => config_cmd::run(&global, cmd),
        Command::Repo(cmd) => repo_cmd::run(&global, cmd),
        Command::Demo(args) => demo::run(args),
        Command::Completions(args) => completions::run(args),
    };
    match result {
        Ok(code) => code,
        Err(failure) => {
            // Every error of this crate already says what caused it; the chain would repeat it.
            errln!(
                "igel-update-agent: {}",
                crate::report::clean(&failure.error.to_string())
            );
            ExitCode::from(failure.code)
        }
    }
}

/// A runtime for one command: the current thread drives the network, a small blocking pool
/// does disk writes and hashing.
/// The state directory for a job run in this process. A device with a UMS queues status events
/// for it also when the daemon does not run (the daemon sends them when it connects).
pub fn open_store(settings: &Settings) -> Result<std::sync::Arc<Store>, StoreError> {
    let store = Store::open(&settings.paths)?;
    if settings.ums().is_some() {
        store.enable_events()?;
    }
    Ok(std::sync::Arc::new(store))
}

pub fn runtime() -> Result<tokio::runtime::Runtime, Failure> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .max_blocking_threads(8)
        .build()
        .map_err(Failure::failed)
}
