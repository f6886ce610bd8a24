//! The two systemd units (DESIGN 11), checked with systemd's own tools: `systemd-analyze
//! verify` on the units as they would be installed (with `ExecStart=` pointing at the binary
//! under test, since `/usr/bin/igel-update-agent` does not exist on a build machine), and
//! `systemd-analyze security --offline=true` for the exposure score that the design requires
//! (2.5 or lower, "OK"). Also the parts of the units that the contract names.
//!
//! `systemd-analyze` comes with Debian's `systemd` package; without it these tests fail (never
//! skip): `scripts/test` installs it when run as root.
//!
//! The units running under a real systemd as PID 1 are tested in [`boot`].

mod boot;
mod install;
mod lab;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const DAEMON_UNIT: &str = "igel-update-agent.service";
const ACTIVATE_UNIT: &str = "igel-update-agent-activate.service";
const INSTALLED_BINARY: &str = "/usr/bin/igel-update-agent";
const MAX_EXPOSURE: f64 = 2.5;

fn unit_path(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("systemd")
        .join(name)
}

fn unit_text(name: &str) -> String {
    let path = unit_path(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
}

/// Runs `systemd-analyze ARGS`; a missing `systemd-analyze` is a failure that says what to do.
fn systemd_analyze(args: &[&str], dir: &Path) -> Output {
    systemd_analyze_with(args, dir, &[])
}

fn systemd_analyze_with(args: &[&str], dir: &Path, env: &[(&str, &Path)]) -> Output {
    let mut command = Command::new("systemd-analyze");
    command
        .args(args)
        .current_dir(dir)
        .env("SYSTEMD_LOG_COLOR", "0")
        .env("SYSTEMD_PAGER", "");
    for (key, value) in env {
        command.env(key, value);
    }
    match command.output() {
        Ok(output) => output,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => panic!(
            "systemd-analyze is required to check the systemd units: install systemd \
             (run scripts/test as root, or: apt-get install -y systemd)"
        ),
        Err(e) => panic!("cannot run systemd-analyze: {e}"),
    }
}

fn describe(output: &Output) -> String {
    format!(
        "exit status {}\n--- stdout\n{}--- stderr\n{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// The unit's `(key, value)` pairs in `section`, comments and blank lines left out.
fn entries(text: &str, section: &str) -> Vec<(String, String)> {
    let mut current = String::new();
    let mut found = Vec::new();
    for line in text.lines().map(str::trim) {
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        if line.starts_with('[') && line.ends_with(']') {
            current = line[1..line.len() - 1].to_string();
            continue;
        }
        if current == section
            && let Some((key, value)) = line.split_once('=')
        {
            found.push((key.trim().to_string(), value.trim().to_string()));
        }
    }
    found
}

fn values(text: &str, section: &str, key: &str) -> Vec<String> {
    entries(text, section)
        .into_iter()
        .filter(|(k, _)| k == key)
        .map(|(_, v)| v)
        .collect()
}

#[track_caller]
fn assert_setting(unit: &str, section: &str, key: &str, expected: &str) {
    let text = unit_text(unit);
    let found = values(&text, section, key);
    assert!(
        found.iter().any(|v| v == expected),
        "{unit}: expected {key}={expected} in [{section}], found {found:?}"
    );
}

#[track_caller]
fn assert_present(unit: &str, section: &str, key: &str) -> String {
    let text = unit_text(unit);
    let found = values(&text, section, key);
    found
        .into_iter()
        .find(|v| !v.is_empty())
        .unwrap_or_else(|| panic!("{unit}: {key}= is missing or empty in [{section}]"))
}

/// The arguments that `ExecStart=` gives the installed binary.
fn exec_start_args(unit: &str) -> Vec<String> {
    let exec = assert_present(unit, "Service", "ExecStart");
    let rest = exec
        .strip_prefix(INSTALLED_BINARY)
        .unwrap_or_else(|| panic!("{unit}: ExecStart={exec} does not start {INSTALLED_BINARY}"));
    rest.split_whitespace().map(str::to_string).collect()
}

/// Copies both units into a temporary directory with `ExecStart=` pointing at the binary
/// under test, so that `verify` checks what would be installed rather than failing on the
/// absent `/usr/bin/igel-update-agent`.
fn units_for_verify() -> tempfile::TempDir {
    let binary = env!("CARGO_BIN_EXE_igel-update-agent");
    let quoted = if binary.contains(char::is_whitespace) {
        format!("\"{binary}\"")
    } else {
        binary.to_string()
    };
    let dir = tempfile::Builder::new()
        .prefix("systemd-units")
        .tempdir()
        .expect("cannot create a temporary directory");
    for unit in [DAEMON_UNIT, ACTIVATE_UNIT] {
        let text = unit_text(unit);
        let prefix = format!("ExecStart={INSTALLED_BINARY} ");
        let mut rewritten = 0;
        let lines: Vec<String> = text
            .lines()
            .map(|line| match line.strip_prefix(&prefix) {
                Some(args) => {
                    rewritten += 1;
                    format!("ExecStart={quoted} {args}")
                }
                None => line.to_string(),
            })
            .collect();
        assert_eq!(
            rewritten, 1,
            "{unit}: expected exactly one line starting with {prefix:?}"
        );
        std::fs::write(dir.path().join(unit), lines.join("\n") + "\n")
            .expect("cannot write the unit copy");
    }
    dir
}

#[test]
fn units_pass_systemd_analyze_verify() {
    let dir = units_for_verify();
    // verify runs `man` for every `Documentation=man:...`: the pages the package installs,
    // written here as scripts/package writes them, so a unit cannot name a page that is not.
    let man = dir.path().join("man");
    crate::support::package::write_man_pages(&man.join("man8")).assert_success();
    let output = systemd_analyze_with(
        &[
            "verify",
            &format!("./{DAEMON_UNIT}"),
            &format!("./{ACTIVATE_UNIT}"),
        ],
        dir.path(),
        &[("MANPATH", &man)],
    );
    assert!(
        output.status.success(),
        "systemd-analyze verify failed:\n{}",
        describe(&output)
    );
    // verify exits 0 on an unknown key or a value it cannot parse ("..., ignoring"): any
    // message about our units is a failure.
    let messages = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    let ours: Vec<&str> = messages
        .lines()
        .filter(|line| {
            line.contains(DAEMON_UNIT)
                || line.contains(ACTIVATE_UNIT)
                || line.contains(&*dir.path().to_string_lossy())
        })
        .collect();
    assert!(
        ours.is_empty(),
        "systemd-analyze verify complained about the units:\n{}",
        ours.join("\n")
    );
}

/// The `X.Y` of "Overall exposure level for UNIT: X.Y OK".
fn exposure(unit: &str) -> f64 {
    let path = unit_path(unit);
    let output = systemd_analyze(
        &[
            "security",
            "--offline=true",
            "--no-pager",
            &path.to_string_lossy(),
        ],
        Path::new(env!("CARGO_MANIFEST_DIR")),
    );
    assert!(
        output.status.success(),
        "systemd-analyze security failed:\n{}",
        describe(&output)
    );
    let stdout = String::from_utf8_lossy(&output.stdout);
    let marker = format!("Overall exposure level for {unit}:");
    let line = stdout
        .lines()
        .find(|line| line.contains(&marker))
        .unwrap_or_else(|| panic!("no {marker:?} line:\n{}", describe(&output)));
    let rest = &line[line.find(&marker).unwrap() + marker.len()..];
    let number = rest.split_whitespace().next().unwrap_or_default();
    number
        .parse()
        .unwrap_or_else(|e| panic!("cannot read the exposure in {line:?}: {e}"))
}

#[test]
fn daemon_unit_exposure_is_ok() {
    let score = exposure(DAEMON_UNIT);
    assert!(
        score <= MAX_EXPOSURE,
        "{DAEMON_UNIT}: overall exposure {score} is above {MAX_EXPOSURE} (DESIGN 11); \
         see `systemd-analyze security --offline=true systemd/{DAEMON_UNIT}`"
    );
}

#[test]
fn activate_unit_exposure_is_ok() {
    let score = exposure(ACTIVATE_UNIT);
    assert!(
        score <= MAX_EXPOSURE,
        "{ACTIVATE_UNIT}: overall exposure {score} is above {MAX_EXPOSURE}; \
         see `systemd-analyze security --offline=true systemd/{ACTIVATE_UNIT}`"
    );
}

#[test]
fn daemon_unit_has_what_the_design_names() {
    let unit = DAEMON_UNIT;
    assert_eq!(exec_start_args(unit), ["run"]);
    assert_setting(unit, "Service", "Type", "notify");
    assert_setting(unit, "Service", "NotifyAccess", "main");
    assert_present(unit, "Service", "WatchdogSec");
    assert_setting(unit, "Service", "ExecReload", "/bin/kill -HUP $MAINPID");
    assert_setting(unit, "Service", "Restart", "on-failure");
    assert_setting(unit, "Service", "StateDirectory", "igel-update-agent");
    assert_setting(unit, "Service", "RuntimeDirectory", "igel-update-agent");
    assert_setting(
        unit,
        "Service",
        "ConfigurationDirectory",
        "igel-update-agent",
    );
    assert_setting(unit, "Unit", "Wants", "network-online.target");
    assert_setting(unit, "Unit", "After", "network-online.target");
    assert_setting(unit, "Unit", "After", ACTIVATE_UNIT);
    assert_setting(unit, "Install", "WantedBy", "multi-user.target");
    // What `systemctl reboot` and the network need must stay open.
    let families = assert_present(unit, "Service", "RestrictAddressFamilies");
    for family in ["AF_UNIX", "AF_INET", "AF_INET6"] {
        assert!(
            families.split_whitespace().any(|f| f == family),
            "{unit}: RestrictAddressFamilies={families} must allow {family}"
        );
    }
    assert!(
        values(&unit_text(unit), "Service", "PrivateNetwork")
            .iter()
            .all(|v| v != "yes"),
        "{unit}: the daemon needs the network"
    );
    assert!(
        unit_text(unit).contains("LoadCredential="),
        "{unit}: the LoadCredential= example is missing"
    );
}

#[test]
fn activate_unit_has_what_the_design_names() {
    let unit = ACTIVATE_UNIT;
    assert_eq!(exec_start_args(unit), ["activate", "--boot"]);
    assert_setting(unit, "Service", "Type", "oneshot");
    assert_setting(unit, "Service", "RemainAfterExit", "yes");
    assert_setting(unit, "Service", "StateDirectory", "igel-update-agent");
    assert_setting(unit, "Service", "PrivateNetwork", "yes");
    assert_setting(unit, "Service", "RestrictAddressFamilies", "AF_UNIX");
    assert_setting(unit, "Unit", "DefaultDependencies", "no");
    assert_setting(unit, "Unit", "After", "local-fs.target");
    let before = values(&unit_text(unit), "Unit", "Before").join(" ");
    for target in ["display-manager.service", "multi-user.target"] {
        assert!(
            before.split_whitespace().any(|t| t == target),
            "{unit}: must be ordered before {target} (Before={before})"
        );
    }
    assert_setting(unit, "Install", "WantedBy", "multi-user.target");
}

/// The command lines in `ExecStart=` are ones the binary accepts (`--help` parses them
/// without doing anything).
#[test]
fn exec_start_command_lines_are_accepted_by_the_binary() {
    for unit in [DAEMON_UNIT, ACTIVATE_UNIT] {
        let args = exec_start_args(unit);
        let output = Command::new(env!("CARGO_BIN_EXE_igel-update-agent"))
            .args(&args)
            .arg("--help")
            .output()
            .expect("cannot run igel-update-agent");
        assert!(
            output.status.success(),
            "{unit}: `igel-update-agent {}` is not a command line the binary accepts:\n{}",
            args.join(" "),
            describe(&output)
        );
    }
}
