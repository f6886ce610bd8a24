//! Test support for the whole-process tests (the `it` binary, and the benches beside it,
//! `tests/it/ums_load.rs` and `tests/it/transfer_bench.rs`): real servers, the agent binary
//! and the device it runs on.
//!
//! Each submodule owns one kind of counterpart a test needs:
//! - [`apache`]: a private Apache httpd (WebDAV, Basic/Digest auth, TLS) on a loopback port
//!   chosen at run time, with its access log as a witness of what the client asked for;
//! - [`tls`]: a throw-away CA and server/client certificates (valid or expired) as PEM files;
//! - [`mock`]: a raw HTTP/1.1 server for the faults a real server cannot be made to show;
//! - [`ums`]: the UMS stand-in (`wss://`, mutual TLS) and its certificates;
//! - [`term`]: running a command in a pseudo-terminal;
//! - [`agent`]: running the built `igel-update-agent` binary with a timeout, and writing apps
//!   into a repository directory;
//! - [`device`]: the device under test, one builder for every configuration a test needs;
//! - [`daemon`]: `run` on a device and a client for its control socket;
//! - [`machine`]: a machine booted by a real systemd as PID 1 in namespaces, for the units;
//! - [`lifecycle`]: a repository the test fills, hook and notify scripts, and the checks on
//!   what is installed and active;
//! - [`package`]: the Debian package of the binary under test ([`package::build_deb`]).
//!
//! This module never knows anything about the agent's internals: it talks to the binary only
//! through its command line, files and the network, like an administrator would.

pub mod agent;
pub mod apache;
pub mod daemon;
pub mod device;
pub mod lifecycle;
pub mod lighttpd;
pub mod machine;
pub mod mock;
pub mod package;
pub mod term;
pub mod tls;
pub mod ums;

use std::time::{Duration, Instant};

pub use agent::{
    Agent, RunOutput, RunningAgent, WrittenApp, agent_command, pseudo_random_bytes,
    run_with_timeout, sha256_hex, write_app, write_password_file,
};
pub use apache::{AccessEntry, Apache};
pub use mock::{MockResponse, MockServer};
pub use tls::{CertKey, TestCa, TlsFiles, Validity};
pub use ums::{Frame, UmsPki, UmsStandIn};

/// Polls `condition` every 20 ms until it holds; panics naming `what` after `timeout`.
///
/// Tests wait for observable effects (a log line, a file, a state) instead of sleeping for a
/// fixed time, so they are fast when the machine is fast and still pass when it is slow.
pub fn wait_until(what: &str, timeout: Duration, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    loop {
        if condition() {
            return;
        }
        if Instant::now() >= deadline {
            panic!("timed out after {timeout:?} waiting for {what}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// `<state>/apps/<app>/<version>/<path>`: where a complete version's file lives (DESIGN 3).
pub fn installed_path(
    state_dir: &std::path::Path,
    app: &str,
    version: &str,
    path: &str,
) -> std::path::PathBuf {
    state_dir.join("apps").join(app).join(version).join(path)
}

/// `<state>/staging/<app>/<version>/<path>.part`: a partial download (DESIGN 3).
pub fn part_path(
    state_dir: &std::path::Path,
    app: &str,
    version: &str,
    path: &str,
) -> std::path::PathBuf {
    state_dir
        .join("staging")
        .join(app)
        .join(version)
        .join(format!("{path}.part"))
}

/// Panics unless a finished tool (`Command::output`) succeeded, with its status and what it
/// printed; `what` names it.
#[track_caller]
pub fn assert_process_success(output: &std::process::Output, what: &str) {
    assert!(
        output.status.success(),
        "{what}: {}\n--- stdout\n{}--- stderr\n{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

/// A fresh temporary directory whose name starts with `igel-test-<prefix>`, so leftovers of a
/// crashed test are easy to recognise under the temp dir.
pub fn temp_dir(prefix: &str) -> tempfile::TempDir {
    tempfile::TempDir::with_prefix(format!("igel-test-{prefix}-"))
        .expect("cannot create a temporary directory under the system temp dir")
}
