//! What the whole-process transfer tests (`tests/transfer*.rs`) share: a device (config file,
//! state directory, IDF) that runs the real binary, the `[[repository]]` tables it is given,
//! and the checks on what ended up on disk.
//!
//! Every device lives in its own temporary directory, so tests run in parallel. The agent gets
//! short timeouts and one quick retry so that failures fail over fast; time bounds in the tests
//! stay generous because the machine is small and shared.
#![allow(dead_code)]

use std::fmt::Write as _;
use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

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

/// A device under test: its config, state directory and IDFs in one temporary directory.
pub struct Device {
    root: tempfile::TempDir,
    agent: Agent,
}

impl Device {
    /// A device with `repos` and the fast retry settings.
    pub fn new(repos: &[RepoConf]) -> Device {
        Device::with_update(repos, "")
    }

    /// Like [`Device::new`], with more `[update]` lines (e.g. a bandwidth limit).
    pub fn with_update(repos: &[RepoConf], extra_update: &str) -> Device {
        let root = temp_dir("device");
        let mut config = format!("[update]\n{FAST_UPDATE}{extra_update}\n");
        for repo in repos {
            config.push_str(&repo.toml());
        }
        let config_path = root.path().join("agent.toml");
        fs::write(&config_path, config).expect("cannot write agent.toml");
        let agent = Agent::new(&config_path, root.path().join("state"));
        Device { root, agent }
    }

    /// The device's temporary directory (config, state, IDFs).
    pub fn root(&self) -> &Path {
        self.root.path()
    }

    pub fn state_dir(&self) -> &Path {
        self.agent.state_dir()
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
