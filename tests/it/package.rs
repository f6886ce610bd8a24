//! The Debian package (`scripts/package`, `[package.metadata.deb]` in Cargo.toml), checked
//! the way `dpkg` and lintian see it, without installing it: which files it ships with which
//! owner and mode, that they are the repository's (units, the default configuration) or the
//! binary's own (manual pages, completions), the conffiles, the control fields, the maintainer
//! scripts (deb-systemd-helper and deb-systemd-invoke as debhelper writes them, the state
//! removed on purge only), and lintian's verdict. The package is built once per run from the
//! binary under test ([`crate::support::package`]); installing it under a real systemd is a
//! test of its own.
//!
//! Also here, without a package: the commented default `/etc/igel-update-agent/agent.toml`
//! (`packaging/agent.toml`) is a valid configuration, and so is every key it shows once
//! uncommented.

use std::collections::BTreeSet;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::support::package::{build_deb, package, write_man_pages};
use crate::support::{
    Agent, TestCa, agent_command, run_with_timeout, temp_dir, write_password_file,
};

const TIMEOUT: Duration = Duration::from_secs(60);
const DAEMON_UNIT: &str = "igel-update-agent.service";
const ACTIVATE_UNIT: &str = "igel-update-agent-activate.service";

fn repo_file(relative: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(relative)
}

/// Runs `dpkg-deb ARGS` and returns its stdout; fails the test with its stderr otherwise.
fn dpkg_deb(args: &[&str]) -> String {
    let output = Command::new("dpkg-deb")
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run dpkg-deb (Debian's dpkg package): {e}"));
    crate::support::assert_process_success(&output, &format!("dpkg-deb {}", args.join(" ")));
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// The package file, built once per run ([`build_deb`], what an install test takes too).
fn deb() -> String {
    build_deb().to_str().expect("a UTF-8 path").to_string()
}

/// One line of `dpkg-deb --contents`: `-rw-r--r-- 0/0  3810 2026-11-30 00:00 ./etc/...`.
#[derive(Debug)]
struct Entry {
    mode: String,
    owner: String,
    /// Without the leading `.`: `/etc/igel-update-agent/agent.toml`.
    path: String,
}

fn contents() -> Vec<Entry> {
    dpkg_deb(&["--contents", &deb()])
        .lines()
        .map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            assert_eq!(fields.len(), 6, "unexpected line: {line}");
            Entry {
                mode: fields[0].to_string(),
                owner: fields[1].to_string(),
                path: fields[5]
                    .trim_start_matches('.')
                    .trim_end_matches('/')
                    .to_string(),
            }
        })
        .collect()
}

/// The package unpacked (`dpkg-deb -x`) into a temporary directory.
fn unpacked() -> tempfile::TempDir {
    let dir = temp_dir("deb-data");
    dpkg_deb(&["-x", &deb(), dir.path().to_str().expect("a UTF-8 path")]);
    dir
}

/// The control area (`dpkg-deb -e`): control, conffiles, postinst, prerm, postrm.
fn control_area() -> tempfile::TempDir {
    let dir = temp_dir("deb-control");
    let target = dir.path().join("DEBIAN");
    dpkg_deb(&["-e", &deb(), target.to_str().expect("a UTF-8 path")]);
    dir
}

#[test]
fn lintian_finds_no_errors() {
    let package = package();
    let errors: Vec<&String> = package
        .lintian
        .iter()
        .filter(|tag| tag.starts_with("E:"))
        .collect();
    assert!(
        errors.is_empty(),
        "lintian errors: {errors:#?}\n{}",
        package.log
    );
}

#[test]
fn every_file_is_shipped_with_its_mode_and_owned_by_root() {
    let entries = contents();
    let expected = [
        ("/usr/bin/igel-update-agent", "-rwxr-xr-x"),
        (
            "/usr/lib/systemd/system/igel-update-agent.service",
            "-rw-r--r--",
        ),
        (
            "/usr/lib/systemd/system/igel-update-agent-activate.service",
            "-rw-r--r--",
        ),
        ("/etc/igel-update-agent/agent.toml", "-rw-r--r--"),
        ("/usr/share/man/man8/igel-update-agent.8.gz", "-rw-r--r--"),
        (
            "/usr/share/bash-completion/completions/igel-update-agent",
            "-rw-r--r--",
        ),
        (
            "/usr/share/zsh/vendor-completions/_igel-update-agent",
            "-rw-r--r--",
        ),
        (
            "/usr/share/fish/vendor_completions.d/igel-update-agent.fish",
            "-rw-r--r--",
        ),
        ("/usr/share/doc/igel-update-agent/copyright", "-rw-r--r--"),
        (
            "/usr/share/doc/igel-update-agent/changelog.Debian.gz",
            "-rw-r--r--",
        ),
        (
            "/usr/share/doc/igel-update-agent/examples/agent.toml",
            "-rw-r--r--",
        ),
    ];
    let mut problems = Vec::new();
    for (path, mode) in expected {
        match entries.iter().find(|e| e.path == path) {
            None => problems.push(format!("{path} is missing")),
            Some(entry) if entry.mode != mode => {
                problems.push(format!("{path} has mode {}, not {mode}", entry.mode))
            }
            Some(_) => {}
        }
    }
    for entry in &entries {
        if entry.owner != "0/0" {
            problems.push(format!("{} is owned by {}", entry.path, entry.owner));
        }
        // Nothing writable by group or others; directories 0755.
        let bits = entry.mode.as_bytes();
        if bits[5] == b'w' || bits[8] == b'w' {
            problems.push(format!("{} is {}", entry.path, entry.mode));
        }
        if entry.mode.starts_with('d') && entry.mode != "drwxr-xr-x" {
            problems.push(format!("directory {} is {}", entry.path, entry.mode));
        }
    }
    assert!(problems.is_empty(), "{}\n{entries:#?}", problems.join("\n"));
}

#[test]
fn there_is_one_section_8_manual_page_per_command() {
    let written = temp_dir("deb-man");
    let out = write_man_pages(written.path());
    out.assert_success();
    let wanted: BTreeSet<String> = out
        .stdout
        .lines()
        .map(|l| {
            let name = Path::new(l).file_name().expect("a page file name");
            format!("/usr/share/man/man8/{}.gz", name.to_string_lossy())
        })
        .collect();
    assert!(wanted.len() > 10, "{wanted:?}");
    let shipped: BTreeSet<String> = contents()
        .into_iter()
        .map(|e| e.path)
        .filter(|p| {
            p.starts_with("/usr/share/man/") && !p.ends_with("/man") && !p.ends_with("/man8")
        })
        .collect();
    assert_eq!(shipped, wanted);
}

#[test]
fn the_shipped_files_are_the_repository_s_and_the_binary_s_own() {
    let root = unpacked();
    let at = |path: &str| root.path().join(path.trim_start_matches('/'));
    let read = |path: &Path| {
        fs::read(path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
    };
    for (shipped, source) in [
        (
            "/usr/lib/systemd/system/igel-update-agent.service",
            "systemd/igel-update-agent.service",
        ),
        (
            "/usr/lib/systemd/system/igel-update-agent-activate.service",
            "systemd/igel-update-agent-activate.service",
        ),
        ("/etc/igel-update-agent/agent.toml", "packaging/agent.toml"),
        (
            "/usr/share/doc/igel-update-agent/examples/agent.toml",
            "examples/agent.toml",
        ),
    ] {
        assert!(
            read(&at(shipped)) == read(&repo_file(source)),
            "{shipped} differs from {source}"
        );
    }
    for (shipped, shell) in [
        (
            "/usr/share/bash-completion/completions/igel-update-agent",
            "bash",
        ),
        (
            "/usr/share/zsh/vendor-completions/_igel-update-agent",
            "zsh",
        ),
        (
            "/usr/share/fish/vendor_completions.d/igel-update-agent.fish",
            "fish",
        ),
    ] {
        let out = run_with_timeout(agent_command(&["completions", shell]), TIMEOUT);
        out.assert_success();
        assert!(
            read(&at(shipped)) == out.stdout.as_bytes(),
            "{shipped} is not `completions {shell}`"
        );
    }
    // The packaged (stripped) binary runs.
    let output = Command::new(at("/usr/bin/igel-update-agent"))
        .arg("--version")
        .output()
        .expect("cannot run the packaged binary");
    crate::support::assert_process_success(&output, "igel-update-agent --version");
    assert!(String::from_utf8_lossy(&output.stdout).starts_with("igel-update-agent "));
}

#[test]
fn the_configuration_file_is_the_only_conffile() {
    let control = control_area();
    let conffiles = fs::read_to_string(control.path().join("DEBIAN/conffiles"))
        .expect("the package has no conffiles");
    let listed: Vec<&str> = conffiles
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    assert_eq!(listed, ["/etc/igel-update-agent/agent.toml"]);
}

#[test]
fn control_names_the_package_version_and_dependencies() {
    let field = |name: &str| dpkg_deb(&["--field", &deb(), name]).trim().to_string();
    assert_eq!(field("Package"), "igel-update-agent");
    assert_eq!(field("Version"), format!("{}-1", env!("CARGO_PKG_VERSION")));
    assert_eq!(field("Architecture"), "amd64");
    assert_eq!(field("Section"), "admin");
    // The glibc build links libc dynamically (the static musl package has no Depends).
    assert!(field("Depends").contains("libc6"), "{}", field("Depends"));
    assert!(field("Maintainer").contains('@'), "{}", field("Maintainer"));
}

/// A maintainer script's text; checks that it is there, executable and valid `sh`.
fn maintainer_script(control: &Path, name: &str) -> String {
    let path = control.join("DEBIAN").join(name);
    let mode = fs::metadata(&path)
        .unwrap_or_else(|e| panic!("the package has no {name}: {e}"))
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o755, "{name} has mode {mode:o}");
    let output = Command::new("sh")
        .arg("-n")
        .arg(&path)
        .output()
        .expect("cannot run sh");
    crate::support::assert_process_success(&output, &format!("sh -n {name}"));
    fs::read_to_string(&path).expect("a text script")
}

/// debhelper's snippets, one per `# Automatically added` section, plus what is around them.
fn snippets(script: &str) -> Vec<&str> {
    script.split("# Automatically added by cargo-deb").collect()
}

/// Every snippet that calls systemctl or deb-systemd-invoke runs them only where systemd runs.
#[track_caller]
fn assert_guarded(name: &str, script: &str) {
    for snippet in snippets(script) {
        let calls = snippet
            .lines()
            .map(str::trim)
            .filter(|l| !l.starts_with('#'))
            .any(|l| l.contains("deb-systemd-invoke") || l.starts_with("systemctl"));
        assert!(
            !calls || snippet.contains("[ -d /run/systemd/system ]"),
            "{name}: unguarded call:\n{snippet}"
        );
    }
}

/// The code lines (no comments) of `script` that mention `word`.
fn lines_with<'a>(script: &'a str, word: &str) -> Vec<&'a str> {
    script
        .lines()
        .map(str::trim)
        .filter(|l| !l.starts_with('#') && l.contains(word))
        .collect()
}

#[test]
fn maintainer_scripts_enable_and_start_the_units_the_debian_way() {
    let control = control_area();
    let postinst = maintainer_script(control.path(), "postinst");
    let prerm = maintainer_script(control.path(), "prerm");
    let postrm = maintainer_script(control.path(), "postrm");
    for (name, script) in [
        ("postinst", &postinst),
        ("prerm", &prerm),
        ("postrm", &postrm),
    ] {
        assert_guarded(name, script);
    }

    // postinst: both enabled through deb-systemd-helper; the daemon started (restarted on an
    // upgrade); the activate unit never started or restarted outside a boot.
    for unit in [DAEMON_UNIT, ACTIVATE_UNIT] {
        let enable = format!("deb-systemd-helper enable {unit}");
        assert!(
            postinst.contains(&enable),
            "postinst lacks `{enable}`:\n{postinst}"
        );
    }
    let invoked = lines_with(&postinst, "deb-systemd-invoke");
    assert_eq!(
        invoked,
        [format!(
            "deb-systemd-invoke $_dh_action {DAEMON_UNIT} >/dev/null || true"
        )],
        "{postinst}"
    );
    assert!(postinst.contains("_dh_action=start") && postinst.contains("_dh_action=restart"));
    assert!(
        postinst.contains("mkdir -m 0755 /etc/igel-update-agent/agent.d"),
        "postinst does not make the drop-in directory:\n{postinst}"
    );

    // prerm: stopped on remove only (on an upgrade postinst restarts the daemon).
    for unit in [DAEMON_UNIT, ACTIVATE_UNIT] {
        let stop = format!("deb-systemd-invoke stop {unit}");
        let snippet = snippets(&prerm)
            .into_iter()
            .find(|s| s.contains(&stop))
            .unwrap_or_else(|| panic!("prerm lacks `{stop}`:\n{prerm}"));
        assert!(snippet.contains("[ \"$1\" = remove ]"), "{snippet}");
    }

    // postrm: purge forgets the enablement; the state goes on purge and only then.
    for unit in [DAEMON_UNIT, ACTIVATE_UNIT] {
        let purge = format!("deb-systemd-helper purge {unit}");
        assert!(postrm.contains(&purge), "postrm lacks `{purge}`:\n{postrm}");
    }
    let removals = lines_with(&postrm, "rm -rf");
    assert_eq!(removals, ["rm -rf /var/lib/igel-update-agent"], "{postrm}");
    assert_eq!(
        enclosing_condition(&postrm, "rm -rf /var/lib/igel-update-agent"),
        Some("if [ \"$1\" = \"purge\" ]; then"),
        "{postrm}"
    );
}

/// The `if` line whose block holds the line containing `needle` (by indentation and `fi`).
fn enclosing_condition<'a>(script: &'a str, needle: &str) -> Option<&'a str> {
    let lines: Vec<&str> = script.lines().collect();
    let at = lines.iter().position(|l| l.contains(needle))?;
    let mut depth = 0;
    for line in lines[..at].iter().rev().map(|l| l.trim()) {
        if line == "fi" {
            depth += 1;
        } else if line.starts_with("if ") {
            if depth == 0 {
                return Some(line);
            }
            depth -= 1;
        }
    }
    None
}

/// `packaging/agent.toml` in a device directory of its own.
fn default_config_device(config_text: &str) -> (tempfile::TempDir, Agent) {
    let dir = temp_dir("default-config");
    let config = dir.path().join("agent.toml");
    fs::write(&config, config_text).expect("cannot write the configuration");
    let agent = Agent::new(&config, dir.path().join("state"));
    (dir, agent)
}

#[test]
fn the_default_configuration_is_all_comments_and_valid() {
    let text = fs::read_to_string(repo_file("packaging/agent.toml")).expect("packaging/agent.toml");
    for (i, line) in text.lines().enumerate() {
        assert!(
            line.is_empty() || line.starts_with('#'),
            "packaging/agent.toml:{}: not a comment: {line}",
            i + 1
        );
    }
    let (_dir, agent) = default_config_device(&text);
    let out = agent.run(&["config", "check", "--json"], TIMEOUT);
    out.assert_success();
    let report = out.json();
    assert_eq!(report["valid"], true, "{report:#}");
    let settings = &report["settings"];
    assert_eq!(
        settings["repository"],
        serde_json::json!([]),
        "{settings:#}"
    );
    assert_eq!(settings["app"], serde_json::json!([]), "{settings:#}");
    assert_eq!(settings["update"]["activate_after_installation"], true);
    assert_eq!(settings["update"]["bandwidth_limit_enabled"], false);
}

/// `packaging/agent.toml` with every commented table header and `key = value` line
/// uncommented, and `/etc/igel-update-agent/` moved to `dir`.
fn uncommented_default(dir: &Path) -> String {
    let is_toml = |rest: &str| {
        let key_value = rest.split_once(" = ").is_some_and(|(key, _)| {
            !key.is_empty() && key.bytes().all(|b| b.is_ascii_lowercase() || b == b'_')
        });
        let header = rest.starts_with('[') && rest.contains(']');
        key_value || header
    };
    let text = fs::read_to_string(repo_file("packaging/agent.toml")).expect("packaging/agent.toml");
    let etc = format!("{}/", dir.display());
    text.lines()
        .map(|line| match line.strip_prefix("# ") {
            Some(rest) if is_toml(rest) => rest,
            _ => line,
        })
        .map(|line| line.replace("/etc/igel-update-agent/", &etc) + "\n")
        .collect()
}

#[test]
fn every_key_the_default_configuration_shows_is_valid_uncommented() {
    let files = temp_dir("default-config-files");
    let dir = files.path();
    write_password_file(dir, "branch-office.pw", "secret");
    let ca = TestCa::new("default-config CA");
    fs::write(dir.join("branch-ca.pem"), ca.cert_pem()).expect("write CA");
    fs::write(dir.join("ums-ca.pem"), ca.cert_pem()).expect("write CA");
    let device = ca.client_cert("device");
    fs::write(dir.join("device.pem"), &device.cert_pem).expect("write certificate");
    write_password_file(dir, "device.key", &device.key_pem);

    let (_device_dir, agent) = default_config_device(&uncommented_default(dir));
    // [paths] names the real state directory; the test's own wins (--state-dir).
    let out = agent.run(&["config", "check", "--json"], TIMEOUT);
    out.assert_success();
    let report = out.json();
    let settings = &report["settings"];
    assert_eq!(report["valid"], true, "{report:#}");
    assert_eq!(
        settings["repository"][0]["name"], "branch-office",
        "{settings:#}"
    );
    assert_eq!(settings["app"][0]["name"], "chromium", "{settings:#}");
    assert_eq!(
        settings["ums"]["urls"].as_array().map(Vec::len),
        Some(1),
        "{settings:#}"
    );
}
