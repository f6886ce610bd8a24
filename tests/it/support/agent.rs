//! Running the built `igel-update-agent` binary, and writing apps into repository directories.
//!
//! [`Agent`] runs the binary with `--config` and `--state-dir` the way an administrator would:
//! to completion with a timeout ([`Agent::run`], which fails the test if it hangs), or in the
//! background ([`Agent::spawn`]) so a test can watch its output or kill -9 it mid-transfer.
//! The environment is cleaned of the agent's own variables and of systemd's, so a test never
//! picks up a developer's config or logs to the journal.
//!
//! [`write_app`] lays out `<root>/<app>/<version>/` with the files and an `app.json` as in
//! DESIGN 4; [`pseudo_random_bytes`] makes reproducible file contents.

use std::fs;
use std::io::Read;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

/// Variables that would make the agent read something other than what the test gave it.
pub const SCRUBBED_ENV: &[&str] = &[
    "IGEL_UPDATE_AGENT_CONFIG",
    "IGEL_UPDATE_AGENT_STATE_DIR",
    "CREDENTIALS_DIRECTORY",
    "NOTIFY_SOCKET",
    "WATCHDOG_USEC",
    "WATCHDOG_PID",
    "JOURNAL_STREAM",
    "INVOCATION_ID",
    "LISTEN_FDS",
    "LISTEN_PID",
];

/// Path of the binary Cargo built for this test run.
pub fn agent_bin() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_igel-update-agent"))
}

/// What a finished process left behind.
#[derive(Clone, Debug)]
pub struct RunOutput {
    /// Exit code; `None` when a signal ended the process.
    pub code: Option<i32>,
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

impl RunOutput {
    /// Panics (showing stdout and stderr) unless the exit code is `expected`.
    #[track_caller]
    pub fn assert_code(&self, expected: i32) -> &RunOutput {
        assert_eq!(
            self.code,
            Some(expected),
            "unexpected exit ({})\n--- stdout ---\n{}\n--- stderr ---\n{}",
            self.status,
            self.stdout,
            self.stderr
        );
        self
    }

    /// Panics unless the process exited with 0.
    #[track_caller]
    pub fn assert_success(&self) -> &RunOutput {
        self.assert_code(0)
    }

    /// Stdout parsed as JSON (for `--json` commands).
    #[track_caller]
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.stdout).unwrap_or_else(|err| {
            panic!(
                "stdout is not JSON ({err})\n--- stdout ---\n{}\n--- stderr ---\n{}",
                self.stdout, self.stderr
            )
        })
    }
}

/// The agent binary bound to one config file and one state directory.
#[derive(Clone, Debug)]
pub struct Agent {
    config: PathBuf,
    state_dir: PathBuf,
    env: Vec<(String, String)>,
}

impl Agent {
    pub fn new(config: impl AsRef<Path>, state_dir: impl AsRef<Path>) -> Agent {
        Agent {
            config: config.as_ref().to_path_buf(),
            state_dir: state_dir.as_ref().to_path_buf(),
            env: Vec::new(),
        }
    }

    /// Sets an environment variable for every run (for example `RUST_LOG`).
    pub fn env(mut self, key: &str, value: &str) -> Agent {
        self.env.push((key.to_string(), value.to_string()));
        self
    }

    pub fn config(&self) -> &Path {
        &self.config
    }

    pub fn state_dir(&self) -> &Path {
        &self.state_dir
    }

    /// `igel-update-agent --config C --state-dir S ARGS...`, not yet started.
    pub fn command(&self, args: &[&str]) -> Command {
        let mut cmd = bare_command();
        cmd.arg("--config").arg(&self.config);
        cmd.arg("--state-dir").arg(&self.state_dir);
        cmd.args(args);
        for (key, value) in &self.env {
            cmd.env(key, value);
        }
        cmd
    }

    /// Runs to completion; panics with the output so far if it takes longer than `timeout`.
    #[track_caller]
    pub fn run(&self, args: &[&str], timeout: Duration) -> RunOutput {
        run_with_timeout(self.command(args), timeout)
    }

    /// Starts in the background with stdout and stderr going to files.
    pub fn spawn(&self, args: &[&str]) -> RunningAgent {
        RunningAgent::spawn(self.command(args))
    }
}

/// The binary with `args` only (no `--config`/`--state-dir`), for `--help` and the like.
pub fn agent_command(args: &[&str]) -> Command {
    let mut cmd = bare_command();
    cmd.args(args);
    cmd
}

fn bare_command() -> Command {
    let mut cmd = Command::new(agent_bin());
    for key in SCRUBBED_ENV {
        cmd.env_remove(key);
    }
    cmd.stdin(Stdio::null());
    cmd
}

/// Runs `cmd` with captured output; kills it and panics after `timeout`.
#[track_caller]
pub fn run_with_timeout(cmd: Command, timeout: Duration) -> RunOutput {
    let mut running = RunningAgent::spawn(cmd);
    running.wait(timeout)
}

/// A process started in the background; killed (-9) when dropped if still running.
pub struct RunningAgent {
    child: Child,
    program: String,
    output_dir: tempfile::TempDir,
}

impl RunningAgent {
    fn spawn(mut cmd: Command) -> RunningAgent {
        let output_dir = super::temp_dir("agent-out");
        let create = |name: &str| {
            fs::File::create(output_dir.path().join(name))
                .expect("cannot create an output capture file")
        };
        cmd.stdout(create("stdout")).stderr(create("stderr"));
        let program = format!("{cmd:?}");
        let child = cmd
            .spawn()
            .unwrap_or_else(|err| panic!("cannot start {program}: {err}"));
        RunningAgent {
            child,
            program,
            output_dir,
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Stdout written so far.
    pub fn stdout(&self) -> String {
        self.read("stdout")
    }

    /// Stderr written so far (the agent's log when not under systemd).
    pub fn stderr(&self) -> String {
        self.read("stderr")
    }

    fn read(&self, name: &str) -> String {
        let mut text = Vec::new();
        if let Ok(mut file) = fs::File::open(self.output_dir.path().join(name)) {
            let _ = file.read_to_end(&mut text);
        }
        String::from_utf8_lossy(&text).into_owned()
    }

    /// Whether the process has not exited yet.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Waits until stderr contains `needle`; panics (with stderr) after `timeout` or if the
    /// process exits first.
    #[track_caller]
    pub fn wait_for_stderr(&mut self, needle: &str, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        while !self.stderr().contains(needle) {
            if !self.is_running() {
                panic!(
                    "process exited before printing {needle:?}\n--- stderr ---\n{}",
                    self.stderr()
                );
            }
            if Instant::now() >= deadline {
                panic!(
                    "timed out after {timeout:?} waiting for {needle:?}\n--- stderr ---\n{}",
                    self.stderr()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Waits for the exit; kills the process and panics with its output after `timeout`.
    #[track_caller]
    pub fn wait(&mut self, timeout: Duration) -> RunOutput {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait().expect("cannot poll the child") {
                return self.output(status);
            }
            if Instant::now() >= deadline {
                let _ = self.child.kill();
                let status = self.child.wait().expect("cannot reap the killed child");
                let out = self.output(status);
                panic!(
                    "{} did not finish within {timeout:?}; killed\n--- stdout ---\n{}\n\
                     --- stderr ---\n{}",
                    self.program, out.stdout, out.stderr
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGKILL now (a power cut as far as the agent can tell) and reap the process.
    pub fn kill_hard(&mut self) -> RunOutput {
        let _ = self.child.kill();
        let status = self.child.wait().expect("cannot reap the killed child");
        self.output(status)
    }

    fn output(&self, status: ExitStatus) -> RunOutput {
        RunOutput {
            code: status.code(),
            status,
            stdout: self.stdout(),
            stderr: self.stderr(),
        }
    }
}

impl Drop for RunningAgent {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        // The capture files go away with us: show them when a test fails.
        if std::thread::panicking() {
            eprintln!(
                "--- {} stdout ---\n{}--- stderr ---\n{}",
                self.program,
                self.stdout(),
                self.stderr()
            );
        }
    }
}

/// Writes `password` (no newline) to `dir/name` with mode 0600, as the agent demands of a
/// `password_file` (DESIGN 5), and returns the path.
pub fn write_password_file(dir: &Path, name: &str, password: &str) -> PathBuf {
    let path = dir.join(name);
    fs::write(&path, password)
        .unwrap_or_else(|err| panic!("cannot write {}: {err}", path.display()));
    fs::set_permissions(&path, fs::Permissions::from_mode(0o600))
        .unwrap_or_else(|err| panic!("cannot chmod {}: {err}", path.display()));
    path
}

/// What [`write_app`] wrote.
#[derive(Clone, Debug)]
pub struct WrittenApp {
    /// `<root>/<app>/<version>`
    pub dir: PathBuf,
    /// The `app.json` text exactly as written.
    pub app_json: String,
    /// SHA-256 of `app.json` (for an IDF's `app_json_sha256`).
    pub app_json_sha256: String,
}

/// Writes `<root>/<app>/<version>/` with `files` (paths may contain `/`) and an `app.json`
/// (DESIGN 4) listing them in the given order with size and SHA-256. Directories get 0755 and
/// files 0644 so that Apache's workers can serve them.
pub fn write_app(
    root: &Path,
    app: &str,
    version: &str,
    files: &[(&str, Vec<u8>)],
    reboot: bool,
) -> WrittenApp {
    let dir = root.join(app).join(version);
    let mut listed = Vec::new();
    for (path, contents) in files {
        write_servable(&dir.join(path), contents);
        listed.push(serde_json::json!({
            "path": path,
            "size": contents.len(),
            "sha256": sha256_hex(contents),
        }));
    }
    let manifest = serde_json::json!({
        "name": app,
        "version": version,
        "files": listed,
        "reboot": reboot,
    });
    let app_json =
        serde_json::to_string_pretty(&manifest).expect("a JSON value always serializes") + "\n";
    write_servable(&dir.join("app.json"), app_json.as_bytes());
    super::apache::make_servable(root);
    WrittenApp {
        dir,
        app_json_sha256: sha256_hex(app_json.as_bytes()),
        app_json,
    }
}

fn write_servable(path: &Path, contents: &[u8]) {
    let parent = path.parent().expect("a file path has a parent");
    fs::create_dir_all(parent)
        .unwrap_or_else(|err| panic!("cannot create {}: {err}", parent.display()));
    fs::write(path, contents)
        .unwrap_or_else(|err| panic!("cannot write {}: {err}", path.display()));
    fs::set_permissions(path, fs::Permissions::from_mode(0o644))
        .unwrap_or_else(|err| panic!("cannot chmod {}: {err}", path.display()));
}

/// Lower-case hex SHA-256 of `data`.
pub fn sha256_hex(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}

/// `len` reproducible bytes for `seed` (xorshift64*): the same seed always gives the same
/// file, different seeds give different files, and nothing compresses it away.
pub fn pseudo_random_bytes(seed: u64, len: usize) -> Vec<u8> {
    // A zero state would stay zero forever; mixing in a constant avoids it for every seed.
    let mut state = seed ^ 0x9E37_79B9_7F4A_7C15;
    if state == 0 {
        state = 1;
    }
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        state ^= state >> 12;
        state ^= state << 25;
        state ^= state >> 27;
        out.extend_from_slice(&state.wrapping_mul(0x2545_F491_4F6C_DD1D).to_le_bytes());
    }
    out.truncate(len);
    out
}
