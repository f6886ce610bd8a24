//! The manual pages as `scripts/package` writes them ([`write_man_pages`]).

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use super::agent::{RunOutput, run_with_timeout};

/// Building the example (when the test build has not) and writing the pages.
const BUILD_TIMEOUT: Duration = Duration::from_secs(900);

fn repo_root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
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
