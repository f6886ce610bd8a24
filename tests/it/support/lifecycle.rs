//! What the whole-process lifecycle tests (`lifecycle`, and many others) share: one Apache
//! repository per test that the test fills with app versions, devices whose `[update]` table
//! names the test's scripts (activation hook, notify and reboot commands), scripts that record
//! the environment they were run with, and the checks on the `current` links, the version
//! directories and `status --json`.
//!
//! Devices are [`Device`]s (fast retries, own temporary directory), so tests run in parallel
//! without sharing anything but the machine.

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use crate::support::device::{Device, RepoConf, gets, path_str};
use crate::support::{AccessEntry, Apache, RunOutput, pseudo_random_bytes, temp_dir, write_app};

/// The app most tests install.
pub const APP: &str = "chromium";

/// One repository: a document root the test fills and the Apache that serves it.
pub struct Repo {
    /// Declared first so it is dropped first: `apache2 -k stop` needs the document root.
    pub apache: Apache,
    root: tempfile::TempDir,
}

impl Repo {
    /// An empty repository, already served; versions can be added at any time.
    pub fn start() -> Repo {
        let root = temp_dir("repo");
        let apache = Apache::builder(root.path()).start();
        Repo { apache, root }
    }

    pub fn root(&self) -> &Path {
        self.root.path()
    }

    /// Publishes `app` `version` with one payload file ([`payload_name`]) and returns its
    /// bytes; `reboot` is the app.json flag asking for a reboot after activation.
    pub fn add(&self, app: &str, version: &str, reboot: bool) -> Vec<u8> {
        let data = payload(app, version);
        write_app(
            self.root(),
            app,
            version,
            &[(&payload_name(app), data.clone())],
            reboot,
        );
        data
    }

    /// The GETs Apache logged for the payload file of `app` `version`.
    pub fn payload_gets(&self, app: &str, version: &str) -> Vec<AccessEntry> {
        gets(
            &self.apache,
            &format!("/{app}/{version}/{}", payload_name(app)),
        )
    }

    /// A device whose only repository is this one, with more `[update]` lines.
    pub fn device(&self, extra_update: &str) -> Device {
        Device::with_update(&[self.conf()], extra_update)
    }

    /// Like [`Repo::device`], with a control socket for the daemon (`run`).
    pub fn daemon_device(&self, extra_update: &str) -> Device {
        Device::builder()
            .repo(&self.conf())
            .update(extra_update)
            .control_socket()
            .build()
    }

    /// This repository as the device's `central` `[[repository]]`, priority 100.
    fn conf(&self) -> RepoConf {
        RepoConf::new("central", &self.apache.url(), 100)
    }
}

/// The name of the one file every test app has.
pub fn payload_name(app: &str) -> String {
    format!("{app}.bin")
}

/// Reproducible contents for `app` `version`: different for every version.
pub fn payload(app: &str, version: &str) -> Vec<u8> {
    // FNV-1a over the name: a stable seed without a hashing crate.
    let seed = format!("{app}/{version}")
        .bytes()
        .fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
            (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
        });
    pseudo_random_bytes(seed, 64 * 1024)
}

/// Shell scripts a test hands to the agent (hooks, notify and reboot commands) and the logs
/// they write, in one temporary directory.
pub struct Scripts {
    dir: tempfile::TempDir,
}

impl Scripts {
    pub fn new() -> Scripts {
        Scripts {
            dir: temp_dir("scripts"),
        }
    }

    /// `<dir>/<name>`, whether or not it exists.
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Writes `#!/bin/sh` and `body` to `<dir>/<name>` with `mode`. Written under a temporary
    /// name and renamed, so the agent never executes a half-written script.
    pub fn write_with_mode(&self, name: &str, body: &str, mode: u32) -> PathBuf {
        let path = self.path(name);
        let tmp = self.path(&format!(".{name}.tmp"));
        fs::write(&tmp, format!("#!/bin/sh\n{body}\n"))
            .unwrap_or_else(|e| panic!("cannot write {}: {e}", tmp.display()));
        fs::set_permissions(&tmp, fs::Permissions::from_mode(mode))
            .unwrap_or_else(|e| panic!("cannot chmod {}: {e}", tmp.display()));
        fs::rename(&tmp, &path).unwrap_or_else(|e| panic!("cannot rename to {name}: {e}"));
        path
    }

    /// An executable script (mode 0755).
    pub fn write(&self, name: &str, body: &str) -> PathBuf {
        self.write_with_mode(name, body, 0o755)
    }

    /// An activation hook that appends one line per call to `<name>.log` (see [`calls`]):
    /// its environment, where `current` pointed while it ran and which versions were on
    /// disk. `then` runs afterwards (for example a failure for one version).
    pub fn recording_hook(&self, name: &str, then: &str) -> PathBuf {
        let log = self.log(name);
        let body = format!(
            "app_root=$(dirname \"$APP_DIR\")\n\
             printf 'APP=%s\\tVERSION=%s\\tAPP_DIR=%s\\tPREVIOUS_VERSION=%s\\tCURRENT=%s\\tON_DISK=%s\\n' \
             \"$APP\" \"$VERSION\" \"$APP_DIR\" \"$PREVIOUS_VERSION\" \
             \"$(readlink \"$app_root/current\")\" \"$(ls \"$app_root\" | tr '\\n' ' ')\" >> '{}'\n\
             {then}",
            log.display()
        );
        self.write(name, &body)
    }

    /// A notify command that records `UPDATE_*` in `<name>.log` and exits with `code`.
    pub fn recording_notify(&self, name: &str, code: i32) -> PathBuf {
        let log = self.log(name);
        let body = format!(
            "printf 'UPDATE_MESSAGE=%s\\tUPDATE_TIMEOUT=%s\\tUPDATE_CAN_CANCEL=%s\\n' \
             \"$UPDATE_MESSAGE\" \"$UPDATE_TIMEOUT\" \"$UPDATE_CAN_CANCEL\" >> '{}'\nexit {code}",
            log.display()
        );
        self.write(name, &body)
    }

    /// A reboot command that only leaves a line in `<name>.log` (a reboot the test can see).
    pub fn recording_reboot(&self, name: &str) -> PathBuf {
        let log = self.log(name);
        self.write(name, &format!("echo rebooted >> '{}'", log.display()))
    }

    /// The log a recording script of this name writes.
    pub fn log(&self, name: &str) -> PathBuf {
        self.path(&format!("{name}.log"))
    }

    /// The calls recorded in `<name>.log`, oldest first (none if it was never called).
    pub fn calls(&self, name: &str) -> Vec<BTreeMap<String, String>> {
        let text = fs::read_to_string(self.log(name)).unwrap_or_default();
        text.lines()
            .map(|line| {
                line.split('\t')
                    .filter_map(|pair| pair.split_once('='))
                    .map(|(k, v)| (k.to_string(), v.trim().to_string()))
                    .collect()
            })
            .collect()
    }
}

/// `activate_hook = [PATH]` and `activate_hook_timeout = TIMEOUT` for `[update]`.
pub fn hook_config(hook: &Path, timeout: &str) -> String {
    format!(
        "activate_hook = [{:?}]\nactivate_hook_timeout = {timeout:?}\n",
        path_str(hook)
    )
}

/// `update --idf` for `apps` (name, version) with more arguments (`--force`, `--clean`).
#[track_caller]
pub fn update(device: &Device, apps: &[(&str, &str)], args: &[&str]) -> RunOutput {
    let idf = write_idf(device, apps);
    let mut argv = vec!["update", "--idf", &idf];
    argv.extend_from_slice(args);
    device.run(&argv)
}

/// `delivery --idf` for `apps` (name, version).
#[track_caller]
pub fn deliver(device: &Device, apps: &[(&str, &str)]) -> RunOutput {
    let idf = write_idf(device, apps);
    device.run(&["delivery", "--idf", &idf])
}

fn write_idf(device: &Device, apps: &[(&str, &str)]) -> String {
    let apps: Vec<(&str, &str, Option<&str>)> = apps.iter().map(|(n, v)| (*n, *v, None)).collect();
    path_str(&device.write_idf(&apps))
}

/// `activate --boot`, to completion.
#[track_caller]
pub fn activate_at_boot(device: &Device) -> RunOutput {
    device.run(&["activate", "--boot"])
}

/// `status --json`, which must succeed.
#[track_caller]
pub fn status(device: &Device) -> serde_json::Value {
    device.run(&["status", "--json"]).assert_success().json()
}

/// The entry of `app` in a `status --json` document, if it is listed.
pub fn app_entry(status: &serde_json::Value, app: &str) -> Option<serde_json::Value> {
    status["apps"]
        .as_array()
        .and_then(|apps| apps.iter().find(|a| a["name"] == app))
        .cloned()
}

/// The version directories under `<state>/apps/<app>/`, sorted; `current` and hidden
/// (`.removing-*`, `.current.new`) names are not versions.
pub fn version_dirs(device: &Device, app: &str) -> Vec<String> {
    let Ok(entries) = fs::read_dir(device.state_dir().join("apps").join(app)) else {
        return Vec::new();
    };
    let mut versions: Vec<String> = entries
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|name| name != "current" && !name.starts_with('.'))
        .collect();
    versions.sort();
    versions
}

/// Panics unless `app` is installed and active at `version` with exactly `expected` in its
/// payload file and the `current` link pointing at it.
#[track_caller]
pub fn assert_installed(device: &Device, app: &str, version: &str, expected: &[u8]) {
    let status = status(device);
    let entry = app_entry(&status, app)
        .unwrap_or_else(|| panic!("{app} missing from status --json: {status:#}"));
    assert_eq!(entry["version"], version, "status: {status:#}");
    assert_eq!(entry["state"], "installed", "status: {status:#}");
    assert_eq!(entry["active"], true, "status: {status:#}");
    assert_eq!(entry["active_version"], version, "status: {status:#}");
    assert!(entry["error"].is_null(), "status: {status:#}");
    assert_eq!(device.current(app).as_deref(), Some(version));
    let file = device.installed(app, version, &payload_name(app));
    let data = fs::read(&file).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
    assert!(
        data == expected,
        "{} does not hold the published bytes",
        file.display()
    );
}

/// Panics unless `status --json` lists `app` in `state` (any version).
#[track_caller]
pub fn assert_state(device: &Device, app: &str, state: &str) -> serde_json::Value {
    let status = status(device);
    let entry = app_entry(&status, app)
        .unwrap_or_else(|| panic!("{app} missing from status --json: {status:#}"));
    assert_eq!(entry["state"], state, "status: {status:#}");
    entry
}
