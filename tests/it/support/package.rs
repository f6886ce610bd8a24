//! The Debian package of the binary under test, built once per test run.
//!
//! [`build_deb`] runs `scripts/package --binary <this test build's binary> --fast` (the same
//! script that makes release packages, minus the release build: it strips the binary, writes
//! the manual pages with `examples/man-pages.rs` ([`write_man_pages`]) and the completions
//! with the binary, runs `cargo deb --no-build` and lintian), so a test of the package costs
//! no second build of the crate. The first caller builds, the others
//! wait and get the same file. Tests that install the package (`dpkg -i`) use [`build_deb`];
//! [`package`] also has what lintian said.
//!
//! `cargo-deb` and `lintian` come from `scripts/test` (or `scripts/package` itself, as root);
//! without them the build fails and says what to install.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::Duration;

use super::agent::{RunOutput, agent_bin, run_with_timeout};

/// Strip, pages, completions, xz, lintian: well under a minute on an idle machine.
const BUILD_TIMEOUT: Duration = Duration::from_secs(900);

/// A built package and what `scripts/package` reported about it.
#[derive(Debug)]
pub struct Package {
    /// The `.deb` file.
    pub deb: PathBuf,
    /// lintian's tags (`E: ...`, `W: ...`), one per line.
    pub lintian: Vec<String>,
    /// Everything `scripts/package` printed, for failure messages.
    pub log: String,
}

/// `cargo run --example man-pages -- DIR`: the manual pages, as `scripts/package` writes them.
pub fn write_man_pages(dir: &Path) -> RunOutput {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.current_dir(repo_root())
        .args(["run", "--locked", "--quiet", "--example", "man-pages", "--"])
        .arg(dir);
    run_with_timeout(cmd, BUILD_TIMEOUT)
}

/// The `.deb` of the binary under test (built at the first call).
pub fn build_deb() -> PathBuf {
    package().deb.clone()
}

/// The package of the binary under test, with lintian's verdict (built at the first call).
pub fn package() -> &'static Package {
    static PACKAGE: OnceLock<Package> = OnceLock::new();
    PACKAGE.get_or_init(build)
}

fn repo_root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn build() -> Package {
    // Under Cargo's directory for test scratch files: cargo-deb treats it as its target dir.
    let work_dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("package");
    let mut cmd = Command::new(repo_root().join("scripts/package"));
    cmd.arg("--binary")
        .arg(agent_bin())
        .arg("--work-dir")
        .arg(&work_dir)
        .arg("--fast");
    let out = run_with_timeout(cmd, BUILD_TIMEOUT);
    let log = format!(
        "scripts/package exited {:?}\n--- stdout\n{}--- stderr\n{}",
        out.code, out.stdout, out.stderr
    );
    // Exit 1 with a package is lintian finding errors: the package exists, lintian's test
    // says what is wrong; without a package line the build itself failed.
    let deb = out
        .stdout
        .lines()
        .find_map(|l| l.strip_prefix("package: "))
        .map(PathBuf::from)
        .unwrap_or_else(|| panic!("scripts/package made no package\n{log}"));
    assert!(
        out.code == Some(0) || out.code == Some(1),
        "scripts/package failed\n{log}"
    );
    let lintian = out
        .stdout
        .lines()
        .skip_while(|l| *l != "lintian:")
        .skip(1)
        .take_while(|l| !l.starts_with("package: "))
        .filter(|l| l.len() > 2 && l.as_bytes()[1] == b':')
        .map(str::to_string)
        .collect();
    Package { deb, lintian, log }
}
