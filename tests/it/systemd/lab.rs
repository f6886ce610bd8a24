//! What the tests under a real systemd share: a repository served inside the machine, a
//! machine with the agent installed, and the ways an administrator drives and watches the
//! agent there (the command line inside the machine, `StatusText`, `status --json`).

use std::path::PathBuf;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::support::machine::{Machine, MachineBuilder, NetProcess};
use crate::support::{pseudo_random_bytes, write_app};

pub(super) const UNIT: &str = "igel-update-agent.service";
pub(super) const ACTIVATE_UNIT: &str = "igel-update-agent-activate.service";
pub(super) const CONFIG: &str = "/etc/igel-update-agent/agent.toml";
pub(super) const APP: &str = "demo-app";
/// Long enough for anything the agent does here; a test that needs it has failed anyway.
pub(super) const PATIENCE: Duration = Duration::from_secs(60);

/// A repository directory on the host, served inside a machine.
pub(super) struct Repo {
    dir: tempfile::TempDir,
}

impl Repo {
    pub(super) fn new() -> Repo {
        Repo {
            dir: crate::support::temp_dir("machine-repo"),
        }
    }

    /// `<repo>/APP/VERSION/` with one file of `size` bytes; returns the file's contents.
    pub(super) fn add(&self, app: &str, version: &str, size: usize, reboot: bool) -> Vec<u8> {
        let data = pseudo_random_bytes(size as u64 ^ 0x5eed, size);
        write_app(
            self.dir.path(),
            app,
            version,
            &[("payload.bin", data.clone())],
            reboot,
        );
        data
    }

    /// Serves the repository on the machine's `127.0.0.1` (port chosen by the server);
    /// `auth` is `(user, password file)` for Basic authentication.
    pub(super) fn serve(
        &self,
        machine: &Machine,
        auth: Option<(&str, &PathBuf)>,
    ) -> (NetProcess, String) {
        let dir = self
            .dir
            .path()
            .to_str()
            .expect("a UTF-8 temp path")
            .to_string();
        let config = self.dir.path().join("no-config.toml");
        std::fs::write(&config, "").expect("cannot write an empty config");
        let config = config.to_str().expect("a UTF-8 temp path").to_string();
        let mut args = vec![
            "--config",
            &config,
            "--log-level",
            "warn",
            "repo",
            "serve",
            &dir,
            "--listen",
            "127.0.0.1:0",
        ];
        let password_file;
        if let Some((user, file)) = auth {
            password_file = file.to_str().expect("a UTF-8 temp path").to_string();
            args.extend(["--user", user, "--password-file", &password_file]);
        }
        let mut server = machine.spawn_in_net(crate::support::agent::agent_bin(), &args);
        let line = server.wait_for_stdout_line("serving on ");
        let url = line
            .split_whitespace()
            .find(|w| w.starts_with("http://"))
            .unwrap_or_else(|| panic!("no URL in {line:?}"))
            .to_string();
        (server, url)
    }
}

/// A machine with the agent installed and `agent.toml` = `config`.
pub(super) fn agent_machine(config: &str) -> MachineBuilder {
    Machine::builder().agent().etc_file(CONFIG, config, 0o644)
}

/// Writes `agent.toml` and restarts the daemon with it, as an administrator would once the
/// repository's address is known.
pub(super) fn restart_with_config(machine: &Machine, config: &str) {
    machine.write_file(CONFIG, config, 0o644);
    machine.systemctl(&["restart", UNIT]);
}

pub(super) fn repository(url: &str) -> String {
    format!("[[repository]]\nname = \"loopback\"\nurl = \"{url}\"\npriority = 100\n")
}

/// Writes an IDF into the machine and sends `update` to the daemon (the command line inside
/// the machine forwards it over the control socket); returns the command's output.
pub(super) fn send_update(machine: &Machine, apps: &[(&str, &str)], verb: &str) -> String {
    let idf = serde_json::json!({
        "apps": apps.iter().map(|(n, v)| serde_json::json!({"name": n, "version": v})).collect::<Vec<_>>()
    });
    machine.write_file(
        "/etc/igel-update-agent/test-idf.json",
        &idf.to_string(),
        0o644,
    );
    let argv = [
        "igel-update-agent",
        verb,
        "--idf",
        "/etc/igel-update-agent/test-idf.json",
    ];
    let out = machine.exec(&argv);
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{argv:?} failed: {said}");
    said
}

/// The id in "command ID accepted by the daemon on ..." of the command line's output.
pub(super) fn command_id(said: &str) -> String {
    said.split_whitespace()
        .skip_while(|w| *w != "command")
        .nth(1)
        .unwrap_or_else(|| panic!("no command id in {said:?}"))
        .to_string()
}

/// Polls `StatusText` until it equals `done`, recording every distinct value on the way.
pub(super) fn follow_status_text(machine: &Machine, done: &str) -> Vec<String> {
    let deadline = Instant::now() + PATIENCE;
    let mut seen: Vec<String> = Vec::new();
    loop {
        let text = machine.property(UNIT, "StatusText");
        if seen.last() != Some(&text) {
            seen.push(text.clone());
        }
        if text == done {
            return seen;
        }
        // A daemon that was killed says so at its next start, then runs the command again.
        let failed = (text.starts_with("Update failed") || text.starts_with("Delivery failed"))
            && !text.contains("interrupted");
        if failed || Instant::now() >= deadline {
            panic!(
                "StatusText never became {done:?}; seen {seen:?}\n{}",
                machine.explain(UNIT)
            );
        }
        std::thread::sleep(Duration::from_millis(30));
    }
}

/// The app's record in `status --json`, asked inside the machine.
pub(super) fn app_status(machine: &Machine, app: &str) -> Value {
    let status: Value =
        serde_json::from_str(&machine.stdout(&["igel-update-agent", "status", "--json"]))
            .expect("status --json is JSON");
    status["apps"]
        .as_array()
        .and_then(|apps| apps.iter().find(|a| a["name"] == app).cloned())
        .unwrap_or_else(|| panic!("{app} is not in the status: {status}"))
}
