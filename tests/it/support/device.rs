//! The device under test, for every test that runs the real binary on a configuration of
//! its own: config, state directory, IDFs and (for the daemon) the control socket in one
//! temporary directory, so tests run in parallel without sharing anything but the machine.
//!
//! One builder ([`Device::builder`]) covers what the tests vary: the `[[repository]]` tables
//! ([`RepoConf`] or TOML text), more `[update]` lines (which may also open further tables,
//! such as `[ums]`), a control socket for `run`, or no `agent.toml` at all (tests that write
//! the whole file, [`Device::write_config`]). The agent gets short timeouts and one quick
//! retry so that failures fail over fast; time bounds in the tests stay generous because the machine is
//! small and shared.
//!
//! Also here: the `[[repository]]` tables and the checks on what ended up on disk.

use std::fmt::Write as _;
use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::Value;

use crate::support::lifecycle::{app_entry, payload_name};
use crate::support::{
    AccessEntry, Agent, Apache, RunOutput, RunningAgent, WrittenApp, sha256_hex, temp_dir,
    write_app,
};

/// Longest a delivery may take before the test fails; transfers here last seconds.
pub const RUN_TIMEOUT: Duration = Duration::from_secs(120);

/// `[update]` keys that keep failovers fast: one retry, short backoff and timeouts.
const FAST_UPDATE: &str = "retries = 1\nretry_backoff = \"100ms\"\n\
                           connect_timeout = \"2s\"\nread_timeout = \"5s\"\n";

/// One `[[repository]]` table.
#[derive(Clone, Debug)]
pub struct RepoConf {
    name: String,
    url: String,
    priority: i64,
    /// `auth` (none: not written, the server's challenge decides).
    auth: Option<String>,
    credentials: Option<(String, PathBuf)>,
    ca_certificate: Option<PathBuf>,
}

impl RepoConf {
    pub fn new(name: &str, url: &str, priority: i64) -> RepoConf {
        RepoConf {
            name: name.to_string(),
            url: url.to_string(),
            priority,
            auth: None,
            credentials: None,
            ca_certificate: None,
        }
    }

    /// `auth = "digest"` with `username` and a `password_file` (mode 0600).
    pub fn digest(self, username: &str, password_file: &Path) -> RepoConf {
        self.user(username, password_file).auth("digest")
    }

    /// `username` and a `password_file` (mode 0600), without `auth`.
    pub fn user(mut self, username: &str, password_file: &Path) -> RepoConf {
        self.credentials = Some((username.to_string(), password_file.to_path_buf()));
        self
    }

    pub fn auth(mut self, auth: &str) -> RepoConf {
        self.auth = Some(auth.to_string());
        self
    }

    pub fn ca_certificate(mut self, path: &Path) -> RepoConf {
        self.ca_certificate = Some(path.to_path_buf());
        self
    }

    fn toml(&self) -> String {
        let mut t = format!(
            "\n[[repository]]\nname = {:?}\nurl = {:?}\npriority = {}\n",
            self.name, self.url, self.priority
        );
        if let Some(auth) = &self.auth {
            let _ = writeln!(t, "auth = {auth:?}");
        }
        if let Some((user, file)) = &self.credentials {
            let _ = writeln!(
                t,
                "username = {user:?}\npassword_file = {:?}",
                file.display().to_string()
            );
        }
        if let Some(ca) = &self.ca_certificate {
            let _ = writeln!(t, "ca_certificate = {:?}", ca.display().to_string());
        }
        t
    }
}

/// What a device's `agent.toml` is made of; [`Device::build`] writes it, and
/// [`Device::reconfigure`] writes it again with other `[update]` lines.
#[must_use]
#[derive(Clone, Debug)]
pub struct DeviceBuilder {
    /// Write `agent.toml` at all (`false`: the test writes it, see [`Device::write_config`]).
    config: bool,
    /// More `[update]` lines.
    update: String,
    /// `[paths] control_socket` in the device's directory, for `run`.
    control_socket: bool,
    /// The `[[repository]]` tables as TOML.
    repositories: String,
}

impl DeviceBuilder {
    /// Adds a `[[repository]]` table.
    pub fn repo(mut self, repo: &RepoConf) -> DeviceBuilder {
        self.repositories.push_str(&repo.toml());
        self
    }

    pub fn repos(self, repos: &[RepoConf]) -> DeviceBuilder {
        repos.iter().fold(self, DeviceBuilder::repo)
    }

    /// `[[repository]]` tables written out as TOML (maybe none: `settings` can add them).
    pub fn repositories_toml(mut self, toml: &str) -> DeviceBuilder {
        self.repositories.push_str(toml);
        self
    }

    /// More `[update]` lines, each ending in a newline (they may also open further tables).
    pub fn update(mut self, lines: &str) -> DeviceBuilder {
        self.update.push_str(lines);
        self
    }

    /// A control socket in the device's directory (`[paths] control_socket`), for `run`.
    pub fn control_socket(mut self) -> DeviceBuilder {
        self.control_socket = true;
        self
    }

    /// No `agent.toml`: the test writes it with [`Device::write_config`].
    pub fn without_config(mut self) -> DeviceBuilder {
        self.config = false;
        self
    }

    pub fn build(self) -> Device {
        let root = temp_dir("device");
        fs::create_dir_all(root.path().join("etc")).expect("cannot create etc/");
        let agent = Agent::new(
            root.path().join("etc").join("agent.toml"),
            root.path().join("state"),
        );
        let socket = self
            .control_socket
            .then(|| root.path().join("run").join("control.sock"));
        let device = Device {
            root,
            agent,
            socket,
            conf: self,
        };
        if device.conf.config {
            device.write_built_config(&device.conf.update);
        }
        device
    }
}

/// A device under test in one temporary directory: `etc/agent.toml`, `etc/agent.d/`,
/// `state/`, the IDFs and (with a control socket) `run/control.sock`.
pub struct Device {
    root: tempfile::TempDir,
    agent: Agent,
    socket: Option<PathBuf>,
    conf: DeviceBuilder,
}

impl Device {
    /// A device with the fast retry settings and nothing else; see [`DeviceBuilder`].
    pub fn builder() -> DeviceBuilder {
        DeviceBuilder {
            config: true,
            update: String::new(),
            control_socket: false,
            repositories: String::new(),
        }
    }

    /// A device with `repos` and the fast retry settings.
    pub fn new(repos: &[RepoConf]) -> Device {
        Device::builder().repos(repos).build()
    }

    /// Like [`Device::new`], with more `[update]` lines (e.g. a bandwidth limit).
    pub fn with_update(repos: &[RepoConf], extra_update: &str) -> Device {
        Device::builder().repos(repos).update(extra_update).build()
    }

    /// A device without `agent.toml` (`etc/` exists): the test writes its configuration.
    pub fn unconfigured() -> Device {
        Device::builder().without_config().build()
    }

    /// (Re)writes `agent.toml` as built but with these `[update]` lines instead; a running
    /// daemon sees it at the next SIGHUP.
    pub fn reconfigure(&self, extra_update: &str) {
        self.write_built_config(extra_update);
    }

    /// Writes `agent.toml` from the builder's parts (with `update` as the more `[update]`
    /// lines), under a temporary name and renamed, so a running daemon never reads a
    /// half-written file.
    fn write_built_config(&self, update: &str) {
        let conf = &self.conf;
        let mut text = String::from("[update]\n");
        text.push_str(FAST_UPDATE);
        text.push_str(update);
        text.push('\n');
        if let Some(socket) = &self.socket {
            let _ = write!(text, "[paths]\ncontrol_socket = {:?}\n\n", path_str(socket));
        }
        text.push_str(&conf.repositories);
        let tmp = self.etc().join(".agent.toml.tmp");
        fs::write(&tmp, text).expect("cannot write agent.toml");
        fs::rename(&tmp, self.config_path()).expect("cannot rename agent.toml into place");
    }

    /// Writes `text` as the whole `agent.toml` and returns its path.
    pub fn write_config(&self, text: &str) -> PathBuf {
        let path = self.config_path().to_path_buf();
        fs::write(&path, text).expect("cannot write agent.toml");
        path
    }

    /// Writes `etc/agent.d/<name>` and returns its path.
    pub fn write_drop_in(&self, name: &str, text: &str) -> PathBuf {
        let dir = self.etc().join("agent.d");
        fs::create_dir_all(&dir).expect("cannot create agent.d/");
        let path = dir.join(name);
        fs::write(&path, text).expect("cannot write a drop-in");
        path
    }

    /// The device's temporary directory (config, state, IDFs).
    pub fn root(&self) -> &Path {
        self.root.path()
    }

    /// `etc/`, where `agent.toml` and `agent.d/` are.
    pub fn etc(&self) -> PathBuf {
        self.root().join("etc")
    }

    pub fn config_path(&self) -> &Path {
        self.agent.config()
    }

    pub fn state_dir(&self) -> &Path {
        self.agent.state_dir()
    }

    /// The control socket; panics unless the device was built with one.
    pub fn socket(&self) -> &Path {
        self.socket
            .as_deref()
            .expect("a device built without DeviceBuilder::control_socket has no socket")
    }

    /// The binary bound to this device's config and state directory.
    pub fn agent(&self) -> &Agent {
        &self.agent
    }

    /// Writes an IDF for `apps` (name, version, optional pinned `app_json_sha256`).
    pub fn write_idf(&self, apps: &[(&str, &str, Option<&str>)]) -> PathBuf {
        let apps: Vec<serde_json::Value> = apps
            .iter()
            .map(|(name, version, pin)| {
                let mut app = serde_json::json!({"name": name, "version": version});
                if let Some(pin) = pin {
                    app["app_json_sha256"] = serde_json::json!(pin);
                }
                app
            })
            .collect();
        let path = self.root.path().join("idf.json");
        let text = serde_json::json!({ "apps": apps }).to_string();
        fs::write(&path, text).expect("cannot write the IDF");
        path
    }

    /// `delivery --idf` for one app version, to completion.
    #[track_caller]
    pub fn deliver(&self, app: &str, version: &str) -> RunOutput {
        self.deliver_idf(&self.write_idf(&[(app, version, None)]))
    }

    #[track_caller]
    pub fn deliver_idf(&self, idf: &Path) -> RunOutput {
        self.agent
            .run(&["delivery", "--idf", &path_str(idf)], RUN_TIMEOUT)
    }

    /// `delivery --idf` in the background (to be killed mid-transfer).
    pub fn spawn_delivery(&self, idf: &Path) -> RunningAgent {
        self.agent.spawn(&["delivery", "--idf", &path_str(idf)])
    }

    /// Any other command of this device, to completion.
    #[track_caller]
    pub fn run(&self, args: &[&str]) -> RunOutput {
        self.agent.run(args, RUN_TIMEOUT)
    }

    /// `config check --json`, which must succeed.
    #[track_caller]
    pub fn check_json(&self) -> serde_json::Value {
        self.run(&["config", "check", "--json"])
            .assert_success()
            .json()
    }

    /// The entry of `app` in `status --json`.
    #[track_caller]
    pub fn app_status(&self, app: &str) -> serde_json::Value {
        let status = self.run(&["status", "--json"]).assert_success().json();
        status["apps"]
            .as_array()
            .and_then(|apps| apps.iter().find(|a| a["name"] == app))
            .cloned()
            .unwrap_or_else(|| panic!("{app} missing from status --json: {status:#}"))
    }

    /// `<state>/apps/<app>/<version>/<path>`
    pub fn installed(&self, app: &str, version: &str, path: &str) -> PathBuf {
        crate::support::installed_path(self.state_dir(), app, version, path)
    }

    /// `<state>/staging/<app>/<version>/<path>.part`
    pub fn part(&self, app: &str, version: &str, path: &str) -> PathBuf {
        crate::support::part_path(self.state_dir(), app, version, path)
    }

    /// `state.json` as the daemon left it (`Null` when there is none yet).
    pub fn state_json(&self) -> Value {
        match fs::read(self.state_dir().join("state.json")) {
            Ok(bytes) => serde_json::from_slice(&bytes).expect("state.json is not JSON"),
            Err(_) => Value::Null,
        }
    }

    /// Where `<state>/apps/<app>/current` points (`None`: no link).
    pub fn current(&self, app: &str) -> Option<String> {
        let link = self.state_dir().join("apps").join(app).join("current");
        fs::read_link(link)
            .ok()
            .map(|target| target.to_string_lossy().into_owned())
    }

    /// Panics unless the version's payload file holds exactly `expected`.
    #[track_caller]
    pub fn assert_staged_bytes(&self, app: &str, version: &str, expected: &[u8]) {
        let file = self.installed(app, version, &payload_name(app));
        let data = fs::read(&file).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
        assert!(
            data == expected,
            "{} does not hold the published bytes ({} bytes, expected {})",
            file.display(),
            data.len(),
            expected.len()
        );
    }

    /// Panics unless `status` shows `app` installed and active at `version`, the `current`
    /// link points at it and its payload holds exactly `expected`.
    #[track_caller]
    pub fn assert_installed(&self, status: &Value, app: &str, version: &str, expected: &[u8]) {
        let entry = app_entry(status, app)
            .unwrap_or_else(|| panic!("{app} missing from the status: {status:#}"));
        assert_eq!(entry["version"], version, "status: {status:#}");
        assert_eq!(entry["state"], "installed", "status: {status:#}");
        assert_eq!(entry["active"], true, "status: {status:#}");
        assert!(entry["error"].is_null(), "status: {status:#}");
        assert_eq!(self.current(app).as_deref(), Some(version));
        self.assert_staged_bytes(app, version, expected);
    }

    /// Panics unless `app` `version` is staged with `file` holding exactly `expected`, and
    /// `status --json` says `marked-for-installation` (staged for the next boot, the default
    /// setting) from `repository` without an error.
    #[track_caller]
    pub fn assert_delivered(
        &self,
        (app, version): (&str, &str),
        file: &str,
        expected: &[u8],
        repository: &str,
    ) {
        let path = self.installed(app, version, file);
        let data = fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        assert_eq!(
            sha256_hex(&data),
            sha256_hex(expected),
            "{} does not verify ({} bytes, expected {})",
            path.display(),
            data.len(),
            expected.len()
        );
        let status = self.app_status(app);
        assert_eq!(status["version"], version, "status: {status:#}");
        assert_eq!(
            status["state"], "marked-for-installation",
            "status: {status:#}"
        );
        assert_eq!(status["repository"], repository, "status: {status:#}");
        assert!(status["error"].is_null(), "status: {status:#}");
    }
}

pub fn path_str(path: &Path) -> String {
    path.to_str().expect("temp paths are UTF-8").to_string()
}

/// A repository root holding `app` `version` with the given files.
pub fn repo_with(
    app: &str,
    version: &str,
    files: &[(&str, Vec<u8>)],
) -> (tempfile::TempDir, WrittenApp) {
    let root = temp_dir("repo");
    let written = write_app(root.path(), app, version, files, false);
    (root, written)
}

/// The `GET`s Apache logged for `path` (e.g. `/app/1.0/f.bin`).
pub fn gets(apache: &Apache, path: &str) -> Vec<AccessEntry> {
    apache
        .requests_for(path)
        .into_iter()
        .filter(|e| e.method == "GET")
        .collect()
}

/// Every regular file below `dir` whose name is `name`.
pub fn find_named(dir: &Path, name: &str) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let Ok(entries) = fs::read_dir(dir) else {
        return found;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() && !path.is_symlink() {
            found.extend(find_named(&path, name));
        } else if entry.file_name() == name {
            found.push(path);
        }
    }
    found
}

/// Every regular file below `dir` with its size.
pub fn files_with_sizes(dir: &Path) -> Vec<(PathBuf, u64)> {
    let mut found = Vec::new();
    let Ok(entries) = fs::read_dir(dir) else {
        return found;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() && !path.is_symlink() {
            found.extend(files_with_sizes(&path));
        } else if let Ok(meta) = fs::metadata(&path) {
            found.push((path, meta.len()));
        }
    }
    found
}

/// The `app.json` text for `app` `version` listing `files` (for a mock repository).
pub fn app_json(app: &str, version: &str, files: &[(&str, &[u8])]) -> String {
    let files: Vec<serde_json::Value> = files
        .iter()
        .map(|(path, data)| {
            serde_json::json!({"path": path, "size": data.len(), "sha256": sha256_hex(data)})
        })
        .collect();
    serde_json::json!({"name": app, "version": version, "files": files, "reboot": false})
        .to_string()
}
