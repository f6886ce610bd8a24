//! `cargo run --example man-pages -- DIR`: writes the manual pages of igel-update-agent,
//! `igel-update-agent.8` and one page per command (`igel-update-agent-update.8`,
//! `igel-update-agent-config-check.8`, ...), into DIR and prints their paths.
//! `scripts/package` runs it before `cargo deb`; the tests run it too.
//!
//! The pages are made from the parser's own definition (`igel_update_agent::cli::Cli`), so
//! there is no second copy of the command line to drift. Why a program beside the agent and not
//! a hidden command in it: clap_mangen in the agent made the static musl binary 77,824 bytes
//! larger and pushed it over its 6 MiB budget (docs/BENCHMARKS.md), for pages that only the
//! build machine writes. An example is built from the same library with no second build of the
//! agent, and clap_mangen stays a dev-dependency. The definition does not depend on the target,
//! so pages written on the build machine describe the glibc and the musl binary alike.
//!
//! Section 8, "System administration tools and daemons": `run` is a system daemon, and the other
//! commands manage that daemon's state as root (the state directory is 0700 root) or are run by
//! the administrator. Section 1 is for commands any user runs.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::CommandFactory;
use clap_mangen::Man;
use clap_mangen::roff::{Roff, bold, italic, roman};
use igel_update_agent::cli::Cli;

/// The manual section of every page (see the module comment).
const SECTION: &str = "8";
/// The manual the pages belong to (the centre of the page header).
const MANUAL: &str = "System Administration";

fn main() -> ExitCode {
    let mut args = std::env::args_os().skip(1);
    let (Some(dir), None) = (args.next(), args.next()) else {
        eprintln!("usage: cargo run --example man-pages -- DIR");
        return ExitCode::from(2);
    };
    match write_pages(Path::new(&dir)) {
        Ok(written) => {
            for path in written {
                println!("{}", path.display());
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("man-pages: {e}");
            ExitCode::FAILURE
        }
    }
}

fn write_pages(dir: &Path) -> Result<Vec<PathBuf>, String> {
    std::fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    let mut command = Cli::command().disable_help_subcommand(true);
    command.build();
    let mut written = vec![write_page(dir, &command, main_page(&command))?];
    for sub in command.get_subcommands() {
        write_subcommand_pages(dir, sub, &mut written)?;
    }
    Ok(written)
}

/// `command`'s page and those of its own subcommands (`config`, `config check`, ...).
fn write_subcommand_pages(
    dir: &Path,
    command: &clap::Command,
    written: &mut Vec<PathBuf>,
) -> Result<(), String> {
    let mut page = Vec::new();
    // Writing into a Vec cannot fail.
    let _ = man(command).render(&mut page);
    page.extend_from_slice(see_also(&["igel-update-agent"]).as_bytes());
    written.push(write_page(dir, command, page)?);
    for sub in command.get_subcommands() {
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

fn write_page(dir: &Path, command: &clap::Command, page: Vec<u8>) -> Result<PathBuf, String> {
    let path = dir.join(man(command).get_filename());
    let written = std::fs::File::create(&path).and_then(|mut file| file.write_all(&page));
    written.map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    Ok(path)
}

/// The top page: clap_mangen's sections, but the exit codes (the `--help` epilogue) under
/// EXIT STATUS instead of its generic EXTRA heading, and the files and units an administrator
/// looks for.
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
        let _ = render(&man, &mut page);
    }
    let mut roff = Roff::new();
    roff.control("SH", ["EXIT STATUS"]);
    roff.control("nf", []);
    let epilogue = command
        .get_after_help()
        .map(|help| help.to_string())
        .unwrap_or_default();
    // "Exit codes:" and its lines, up to the blank line before "Documentation:".
    for line in epilogue.lines().skip(1).take_while(|l| !l.is_empty()) {
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
