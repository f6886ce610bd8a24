//! `man-pages DIR` (hidden): writes the manual pages, `igel-update-agent.8` and one page per
//! subcommand (`igel-update-agent-update.8`, `igel-update-agent-config-check.8`, ...), into
//! DIR. `scripts/package` runs it with the binary it is about to package.
//!
//! Why a hidden command of the binary itself: the pages must come from the same clap
//! definition the parser uses ([`super::Cli`]), and only this crate can see it. A build script
//! cannot link the crate it builds (it would need a second copy of the definition), and an
//! example or xtask would be a second build of the whole crate for the build machine, while
//! the package is made of whichever binary was built (glibc or static musl): that binary
//! describes itself. The cost is clap_mangen in the binary (a few kilobytes, see
//! docs/BENCHMARKS.md). Hidden, because it is a packaging step, not an administrator's tool;
//! and added to the parser beside [`super::Cli`] rather than inside it, because
//! clap_complete offers hidden subcommands too: the completions and the pages, both made from
//! [`super::Cli`] alone, do not mention it.
//!
//! Section 8, "System administration tools and daemons": `run` is a system daemon, and every
//! other command manages that daemon's state, needs root on a device (the state directory is
//! 0700 root) or is run by the administrator. Section 1 is for commands any user runs.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::CommandFactory;
use clap_mangen::Man;
use clap_mangen::roff::{Roff, bold, italic, roman};

use super::{Cli, CmdResult, EXIT_CODES, Failure};

/// The manual section of every page (see the module comment).
const SECTION: &str = "8";
/// The manual the pages belong to (the centre of the page footer).
const MANUAL: &str = "System Administration";

/// The name of the hidden command.
const NAME: &str = "man-pages";

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Directory the pages are written into (created if missing; existing pages replaced).
    #[arg(value_name = "DIR")]
    dir: PathBuf,
}

/// `cli` with the hidden `man-pages` command added, for parsing.
pub fn with_command(cli: clap::Command) -> clap::Command {
    let command = clap::Command::new(NAME)
        .hide(true)
        .about("Write the manual pages into DIR (a packaging step: scripts/package)");
    cli.subcommand(<Args as clap::Args>::augment_args(command))
}

/// The arguments of `man-pages` when the command line asked for it.
pub fn requested(matches: &clap::ArgMatches) -> Option<Args> {
    let (NAME, sub) = matches.subcommand()? else {
        return None;
    };
    // clap has validated the arguments against `Args` already.
    Some(<Args as clap::FromArgMatches>::from_arg_matches(sub).unwrap_or_else(|e| e.exit()))
}

pub fn run(args: Args) -> CmdResult {
    std::fs::create_dir_all(&args.dir).map_err(|e| {
        Failure::failed(anyhow::anyhow!("cannot create {}: {e}", args.dir.display()))
    })?;
    let mut command = Cli::command().disable_help_subcommand(true);
    command.build();
    let mut written = vec![write_page(&args.dir, &command, main_page(&command))?];
    for sub in visible_subcommands(&command) {
        write_subcommand_pages(&args.dir, sub, &mut written)?;
    }
    for path in written {
        outln!("{}", path.display());
    }
    Ok(ExitCode::SUCCESS)
}

fn visible_subcommands(command: &clap::Command) -> impl Iterator<Item = &clap::Command> {
    command.get_subcommands().filter(|sub| !sub.is_hide_set())
}

/// `command`'s page and those of its own subcommands (`config`, `config check`, ...).
fn write_subcommand_pages(
    dir: &Path,
    command: &clap::Command,
    written: &mut Vec<PathBuf>,
) -> Result<(), Failure> {
    let mut page = Vec::new();
    let rendered = man(command).render(&mut page);
    rendered.map_err(Failure::failed)?;
    page.extend_from_slice(see_also(&["igel-update-agent"]).as_bytes());
    written.push(write_page(dir, command, page)?);
    for sub in visible_subcommands(command) {
        write_subcommand_pages(dir, sub, written)?;
    }
    Ok(())
}

fn man(command: &clap::Command) -> Man {
    let name = command
        .get_display_name()
        .unwrap_or_else(|| command.get_name());
    Man::new(command.clone())
        .title(name.to_uppercase())
        .section(SECTION)
        .date(date())
        .manual(MANUAL)
}

/// The page date, `YYYY-MM-DD`: from `SOURCE_DATE_EPOCH` (reproducible builds; scripts/package
/// sets it to the last commit's time), else today. clap_mangen's default, an empty date,
/// shifts the footer's fields (it writes no `""` for it).
fn date() -> String {
    let epoch = std::env::var("SOURCE_DATE_EPOCH").ok();
    let when = epoch
        .and_then(|s| s.trim().parse::<i64>().ok())
        .and_then(|secs| chrono::DateTime::from_timestamp(secs, 0))
        .unwrap_or_else(chrono::Utc::now);
    when.format("%Y-%m-%d").to_string()
}

fn write_page(dir: &Path, command: &clap::Command, page: Vec<u8>) -> Result<PathBuf, Failure> {
    let path = dir.join(man(command).get_filename());
    let written = std::fs::File::create(&path).and_then(|mut file| file.write_all(&page));
    written
        .map_err(|e| Failure::failed(anyhow::anyhow!("cannot write {}: {e}", path.display())))?;
    Ok(path)
}

/// The top page: clap_mangen's sections, but the exit codes (the `--help` epilogue) under
/// EXIT STATUS instead of its generic EXTRA heading, and the files and units an
/// administrator looks for.
fn main_page(command: &clap::Command) -> Vec<u8> {
    let man = man(command);
    let mut page = Vec::new();
    let sections = [
        Man::render_title,
        Man::render_name_section,
        Man::render_synopsis_section,
        Man::render_description_section,
        Man::render_options_section,
        Man::render_subcommands_section,
    ];
    for render in sections {
        // Writing into a Vec cannot fail.
        let _ = render(&man, &mut page);
    }
    let mut roff = Roff::new();
    roff.control("SH", ["EXIT STATUS"]);
    roff.control("nf", []);
    for line in EXIT_CODES.lines().skip(1).take_while(|l| !l.is_empty()) {
        roff.text([roman(line.trim_start())]);
    }
    roff.control("fi", []);
    roff.control("SH", ["FILES"]);
    for (path, what) in FILES {
        roff.control("TP", []);
        roff.text([italic(*path)]);
        roff.text([roman(*what)]);
    }
    page.extend_from_slice(roff.to_roff().as_bytes());
    page.extend_from_slice(see_also(&["systemctl", "journalctl", "systemd.exec"]).as_bytes());
    let _ = man.render_version_section(&mut page);
    page
}

const FILES: &[(&str, &str)] = &[
    (
        "/etc/igel-update-agent/agent.toml",
        "The main configuration (--config, IGEL_UPDATE_AGENT_CONFIG). Every key is explained \
         in /usr/share/doc/igel-update-agent/examples/agent.toml.",
    ),
    (
        "/etc/igel-update-agent/agent.d/*.toml",
        "Drop-ins, merged in name order after the main file.",
    ),
    (
        "/var/lib/igel-update-agent",
        "The state: state.json, staging/ (partial downloads), apps/<app>/<version>/ and the \
         current links, the lock, settings.json and credentials/ (--state-dir).",
    ),
    (
        "/run/igel-update-agent/control.sock",
        "The daemon's control socket.",
    ),
    (
        "/usr/lib/systemd/system/igel-update-agent.service",
        "The daemon (run); reload rereads the configuration.",
    ),
    (
        "/usr/lib/systemd/system/igel-update-agent-activate.service",
        "Boot-time activation (activate --boot) of the staged versions.",
    ),
];

/// A SEE ALSO section naming section-8 pages of this package and others' pages.
fn see_also(pages: &[&str]) -> String {
    let mut roff = Roff::new();
    roff.control("SH", ["SEE ALSO"]);
    let mut inlines = Vec::new();
    for (i, page) in pages.iter().enumerate() {
        if i > 0 {
            inlines.push(roman(", "));
        }
        let section = match *page {
            "systemd.exec" => "5",
            "systemctl" | "journalctl" => "1",
            _ => SECTION,
        };
        inlines.push(bold(*page));
        inlines.push(roman(format!("({section})")));
    }
    roff.text(inlines);
    roff.to_roff()
}
