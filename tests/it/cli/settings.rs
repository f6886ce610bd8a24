//! The `settings` command as an administrator meets it (issue 9): a setting holds for every
//! command, also after a reboot and without the daemon; a change is validated as a whole
//! before anything is saved; passwords and certificates from registry keys live in
//! `<state>/credentials/` and never anywhere else; values have bounds; the queue is bounded;
//! and whatever persisted item no longer validates is set aside, never a daemon that cannot
//! start. All against real Apache servers and the real daemon.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use crate::support::daemon::{JOB_TIMEOUT, STOP_TIMEOUT, app_state, idf, queue};
use crate::support::device::Device;
use crate::support::device::path_str;
use crate::support::lifecycle::{APP, Repo};
use crate::support::{Apache, TlsFiles, temp_dir};
use base64::Engine;
use nix::sys::signal::Signal;
use serde_json::{Value, json};

/// Runs a CLI command of `device` to completion.
#[track_caller]
fn cli(device: &Device, args: &[&str]) -> crate::support::RunOutput {
    device.agent().run(args, JOB_TIMEOUT)
}

fn settings(id: &str, values: Value) -> Value {
    json!({"id": id, "command": "settings", "values": values})
}

/// Every file under `dir` except the credential files, the apps and partial downloads, as
/// text: where a secret must never appear.
fn everything_but_credentials(dir: &Path) -> String {
    let mut text = String::new();
    let Ok(entries) = fs::read_dir(dir) else {
        return text;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let name = entry.file_name().to_string_lossy().into_owned();
        if ["credentials", "apps", "staging"].contains(&name.as_str()) {
            continue;
        }
        if path.is_dir() {
            text.push_str(&everything_but_credentials(&path));
        } else if let Ok(bytes) = fs::read(&path) {
            text.push_str(&String::from_utf8_lossy(&bytes));
        }
    }
    text
}

/// A repository root with `APP` 1.0 (and the payload's bytes), for an Apache of the test's
/// own making.
fn published() -> (tempfile::TempDir, Vec<u8>) {
    let root = temp_dir("repo");
    let data = crate::support::lifecycle::payload(APP, "1.0");
    crate::support::write_app(
        root.path(),
        APP,
        "1.0",
        &[(&crate::support::lifecycle::payload_name(APP), data.clone())],
        false,
    );
    (root, data)
}

fn credential_files(state_dir: &Path) -> Vec<std::path::PathBuf> {
    fs::read_dir(state_dir.join("credentials"))
        .map(|entries| entries.flatten().map(|e| e.path()).collect())
        .unwrap_or_default()
}

#[test]
fn a_reboot_does_not_activate_what_the_settings_command_said_waits_for_the_update_command() {
    let repo = Repo::start();
    repo.add(APP, "1.0", false);
    let device = repo.daemon_device("");
    let mut daemon = device.start();
    daemon.accepted(settings(
        "s1",
        json!({"update.activate_after_installation": "false"}),
    ));
    daemon.accepted(json!({"id": "a1", "command": "assign", "idf": idf(&[(APP, "1.0")])}));
    daemon.wait_for_app(APP, "downloaded");
    daemon.signal(Signal::SIGTERM);
    daemon.wait_exit(STOP_TIMEOUT).assert_success();

    // The boot: the setting the UMS made holds without the daemon.
    cli(&device, &["activate", "--boot"]).assert_success();
    assert_eq!(device.current(APP), None, "activated at boot");
    let status = cli(&device, &["status", "--json"]).assert_success().json();
    assert_eq!(status["settings"]["activate_after_installation"], false);
    assert_eq!(app_state(&status, APP).as_deref(), Some("downloaded"));

    // Switched back on from the shell (no daemon): the next boot activates.
    cli(
        &device,
        &["settings", "update.activate_after_installation=true"],
    )
    .assert_success();
    cli(&device, &["activate", "--boot"]).assert_success();
    assert_eq!(device.current(APP).as_deref(), Some("1.0"));
}

#[test]
fn every_command_uses_the_persisted_settings() {
    let repo = Repo::start();
    let data = repo.add(APP, "1.0", false);
    // No repository in the files: only the settings command names one.
    let device = Device::builder().control_socket().build();
    cli(
        &device,
        &[
            "settings",
            &format!("update.external_binary_source0.url={}", repo.apache.url()),
            "update.external_binary_source0.priority=150",
            "update.bandwidth_limit_enabled=true",
            "update.bandwidth_limit=512KB",
        ],
    )
    .assert_success();

    let repos = cli(&device, &["repos", "--json"]).assert_success().json();
    assert_eq!(repos[0]["name"], "source0", "{repos:#}");
    assert_eq!(repos[0]["priority"], 150, "{repos:#}");

    let config = cli(&device, &["config", "check", "--json"])
        .assert_success()
        .json();
    assert_eq!(config["settings"]["update"]["bandwidth_limit"], "512KB");
    assert_eq!(config["settings"]["repository"][0]["name"], "source0");
    assert!(
        config["overridden"]
            .as_array()
            .is_some_and(|k| k.contains(&json!("update.bandwidth_limit"))),
        "{config:#}"
    );

    let status = cli(&device, &["status", "--json"]).assert_success().json();
    assert_eq!(
        status["settings"]["bandwidth_limit_bytes_per_sec"],
        512 * 1024
    );

    let check = cli(&device, &["check"]);
    assert!(
        check
            .stdout
            .contains("OK   repository source0 listing: the top directory lists"),
        "{}",
        check.stdout
    );

    let idf_file = device.root().join("idf.json");
    fs::write(&idf_file, idf(&[(APP, "1.0")]).to_string()).unwrap();
    cli(&device, &["delivery", "--idf", &path_str(&idf_file)]).assert_success();
    let status = cli(&device, &["status", "--json"]).assert_success().json();
    assert_eq!(status["apps"][0]["repository"], "source0", "{status:#}");
    cli(&device, &["update", "--idf", &path_str(&idf_file)]).assert_success();
    assert_eq!(device.current(APP).as_deref(), Some("1.0"));
    device.assert_staged_bytes(APP, "1.0", &data);

    // The daemon, started later, has them too.
    let daemon = device.start();
    assert_eq!(
        daemon.status()["settings"]["bandwidth_limit_bytes_per_sec"],
        512 * 1024
    );
}

#[test]
fn a_rejected_settings_command_changes_nothing_and_the_daemon_still_starts() {
    let repo = Repo::start();
    let device = repo.daemon_device("");
    let mut daemon = device.start();
    let before = fs::read(device.state_dir().join("state.json")).ok();
    // A FIFO where a certificate should be: refused, not waited on for ever.
    let fifo = device.root().join("ca-fifo.pem");
    nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o644)).unwrap();
    for (values, needle) in [
        (
            json!({"update.external_binary_source3.url": "https://localhost:1/",
                   "update.external_binary_source3.certificate":
                       "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"}),
            "update.external_binary_source3",
        ),
        (
            json!({"update.external_binary_source3.url": "https://localhost:1/",
                   "update.external_binary_source3.certificate": "/nonexistent/ca.pem"}),
            "/nonexistent/ca.pem",
        ),
        (json!({"update.splay": "100000000years"}), "0s..=24h"),
        (json!({"update.retries": "1000"}), "0..=10"),
        (json!({"update.reminder_interval": "0s"}), "1s..=7days"),
        (json!({"update.notify_command": "/bin/sh"}), "unknown key"),
        (
            json!({"update.external_binary_source1.password": ["hunter2-in-a-list"]}),
            "the value is a list",
        ),
        (
            json!({"update.external_binary_source3.url": "https://localhost:1/",
                   "update.external_binary_source3.certificate": path_str(&fifo)}),
            "not a regular file",
        ),
    ] {
        let reply = daemon.request(settings("bad", values.clone()));
        assert_eq!(reply["result"], "rejected", "{values}: {reply}");
        let error = reply["error"].as_str().unwrap_or_default();
        assert!(error.contains(needle), "{values}: {error}");
    }
    for (request, needle) in [
        (
            json!({"id": "u1", "command": "update",
                   "inform_user": {"timeout_s": 18446744073709551615u64}}),
            "bound",
        ),
        (
            json!({"id": "u2", "command": "update", "at":
                   (chrono::Utc::now() + chrono::Duration::days(800)).to_rfc3339()}),
            "366 days",
        ),
    ] {
        let reply = daemon.request(request.clone());
        assert_eq!(reply["result"], "rejected", "{request}: {reply}");
        assert!(
            reply["error"].as_str().unwrap_or_default().contains(needle),
            "{reply}"
        );
    }
    assert!(!device.state_dir().join("settings.json").exists());
    assert!(credential_files(device.state_dir()).is_empty());
    assert!(!daemon.stderr().contains("hunter2"), "{}", daemon.stderr());
    assert_eq!(fs::read(device.state_dir().join("state.json")).ok(), before);
    assert!(daemon.is_running());

    daemon.signal(Signal::SIGTERM);
    daemon.wait_exit(STOP_TIMEOUT).assert_success();
    let daemon = device.start();
    assert_eq!(daemon.status()["set_aside"], json!([]));
}

#[test]
fn a_repository_configured_the_igel_way_authenticates_with_secrets_from_the_ums() {
    const PASSWORD: &str = "Ums-Secret-9x7";
    let tls = TlsFiles::localhost();
    let (root, data) = published();
    let apache = Apache::builder(root.path())
        .tls_files(&tls)
        .digest_auth("device", PASSWORD)
        .start();
    let device = Device::builder().control_socket().build();
    let mut daemon = device.start();
    let encoded = base64::engine::general_purpose::STANDARD.encode(PASSWORD);
    daemon.accepted(settings(
        "s1",
        json!({
            "update.external_binary_source0.url": apache.url().replace("127.0.0.1", "localhost"),
            "update.external_binary_source0.priority": 200,
            "update.external_binary_source0.username": "device",
            "update.external_binary_source0.crypt_password": format!("base64:{encoded}"),
            "update.external_binary_source0.certificate": tls.ca.cert_pem(),
        }),
    ));
    daemon.accepted(json!({"id": "a1", "command": "assign", "idf": idf(&[(APP, "1.0")])}));
    let status = daemon.wait_for_app(APP, "marked-for-installation");
    assert_eq!(status["apps"][0]["repository"], "source0", "{status:#}");
    device.assert_staged_bytes(APP, "1.0", &data);

    // The secrets are files of their own, 0600 in a 0700 directory, and nowhere else.
    let files = credential_files(device.state_dir());
    assert_eq!(files.len(), 2, "{files:?}");
    for file in &files {
        let mode = fs::metadata(file).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "{}", file.display());
    }
    let dir_mode = fs::metadata(device.state_dir().join("credentials"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(dir_mode & 0o777, 0o700);
    let config = cli(&device, &["config", "check"]);
    let check = cli(&device, &["check"]);
    let listing = cli(&device, &["settings"]);
    for (what, text) in [
        (
            "the state directory",
            everything_but_credentials(device.state_dir()),
        ),
        ("status", daemon.status().to_string()),
        (
            "config check",
            format!("{}{}", config.stdout, config.stderr),
        ),
        ("check", format!("{}{}", check.stdout, check.stderr)),
        ("settings", listing.stdout.clone()),
        ("the daemon's log", daemon.stderr()),
    ] {
        assert!(
            !text.contains(PASSWORD),
            "the password is in {what}:\n{text}"
        );
        assert!(
            !text.contains(&encoded),
            "the encoded password is in {what}:\n{text}"
        );
    }
    assert!(
        listing
            .stdout
            .contains("update.external_binary_source0.crypt_password=***"),
        "{}",
        listing.stdout
    );
    assert!(
        check
            .stdout
            .contains("OK   repository source0 authentication: Digest (offered by the server"),
        "{}",
        check.stdout
    );

    // The certificate as a path keeps working, and its PEM copy goes.
    daemon.accepted(settings(
        "s2",
        json!({"update.external_binary_source0.certificate": path_str(tls.ca_path())}),
    ));
    assert_eq!(credential_files(device.state_dir()).len(), 1);
    let check = cli(&device, &["check"]);
    assert!(
        check.stdout.contains("OK   repository source0 tls"),
        "{}",
        check.stdout
    );

    // Removing the repository removes its secrets.
    daemon.accepted(json!({"id": "s3", "command": "settings",
                           "reset": ["update.external_binary_source0"]}));
    assert!(credential_files(device.state_dir()).is_empty());
    let repos = cli(&device, &["repos", "--json"]).assert_success().json();
    assert_eq!(repos, json!([]));
}

#[test]
fn a_systemd_credential_is_needed_only_by_a_transfer_in_this_process() {
    const PASSWORD: &str = "cred-pass-4411";
    let (root, _) = published();
    let apache = Apache::builder(root.path())
        .digest_auth("device", PASSWORD)
        .start();
    let device = Device::builder()
        .repositories_toml(&format!(
            "[[repository]]\nname = \"central\"\nurl = {:?}\nauth = \"digest\"\n\
             username = \"device\"\ncredential = \"central-password\"\n",
            apache.url()
        ))
        .control_socket()
        .build();
    // A shell has no $CREDENTIALS_DIRECTORY: what needs no password works.
    cli(&device, &["status"]).assert_success();
    cli(&device, &["repos"]).assert_success();
    let config = cli(&device, &["config", "check"]);
    config.assert_success();
    assert!(
        config.stderr.contains("CREDENTIALS_DIRECTORY"),
        "{}",
        config.stderr
    );
    // Activation and settings never contact a repository.
    cli(&device, &["activate", "--boot"]).assert_success();
    cli(&device, &["settings", "update.splay=1m"]).assert_success();
    let idf_file = device.root().join("idf.json");
    fs::write(&idf_file, idf(&[(APP, "1.0")]).to_string()).unwrap();
    let here = cli(&device, &["delivery", "--idf", &path_str(&idf_file)]);
    here.assert_code(2);
    assert!(
        here.stderr.contains("CREDENTIALS_DIRECTORY") && here.stderr.contains("daemon"),
        "{}",
        here.stderr
    );

    // The daemon has the credential (as systemd's LoadCredential= gives it); the shell's
    // commands only forward to it.
    let credentials = temp_dir("creds");
    crate::support::write_password_file(credentials.path(), "central-password", PASSWORD);
    let mut daemon =
        device.start_with_env(&[("CREDENTIALS_DIRECTORY", &path_str(credentials.path()))]);
    let out = cli(
        &device,
        &["update", "--idf", &path_str(&idf_file), "--wait"],
    );
    out.assert_success();
    assert!(out.stderr.contains("Update successful"), "{}", out.stderr);
    daemon.wait_for_app(APP, "installed");
}

#[test]
fn the_queue_is_bounded_and_stores_each_idf_once() {
    let repo = Repo::start();
    let device = repo.daemon_device("");
    let daemon = device.start();
    let later = (chrono::Utc::now() + chrono::Duration::hours(1)).to_rfc3339();
    // An IDF of about 875 KB (the size that made state.json 54 MB before).
    let big = |salt: usize| {
        let apps: Vec<(String, String)> = (0..21_000)
            .map(|i| (format!("app-{salt}-{i:05}"), "1.0.0".to_string()))
            .collect();
        let apps: Vec<(&str, &str)> = apps.iter().map(|(a, v)| (a.as_str(), v.as_str())).collect();
        idf(&apps)
    };
    let same = big(0);
    let size = same.to_string().len();
    assert!((800_000..1_000_000).contains(&size), "{size}");
    for i in 0..40 {
        daemon.accepted(json!({"id": format!("u{i}"), "command": "update",
                               "idf": same, "at": later}));
    }
    let documents = fs::read_dir(device.state_dir().join("idf"))
        .unwrap()
        .count();
    assert_eq!(documents, 1, "one IDF, stored once");
    let journal = fs::metadata(device.state_dir().join("state.json"))
        .unwrap()
        .len();
    assert!(journal < 64 * 1024, "state.json is {journal} bytes");

    // Bytes: distinct IDFs fill the 16 MiB before the count does.
    let mut full = None;
    for i in 1..30 {
        let reply = daemon.request(json!({"id": format!("d{i}"), "command": "update",
                                          "idf": big(i), "at": later}));
        if reply["result"] == "rejected" {
            full = Some((i, reply["error"].as_str().unwrap_or_default().to_string()));
            break;
        }
    }
    let (at, error) = full.expect("distinct IDFs of 875 KB never filled the queue");
    assert!(
        error.starts_with("queue full") && error.contains("16.0 MiB"),
        "{error}"
    );
    assert!(at < 20, "rejected only at {at}");
    let bytes: u64 = fs::read_dir(device.state_dir().join("idf"))
        .unwrap()
        .flatten()
        .map(|e| e.metadata().unwrap().len())
        .sum();
    assert!(bytes <= 16 * 1024 * 1024, "{bytes}");

    // Count: small commands up to 100, then `queue full`.
    let waiting = queue(&daemon.status()).len();
    for i in waiting..100 {
        daemon.accepted(json!({"id": format!("s{i}"), "command": "update", "at": later}));
    }
    let reply = daemon.request(json!({"id": "one-more", "command": "update", "at": later}));
    assert_eq!(reply["result"], "rejected");
    assert!(
        reply["error"]
            .as_str()
            .unwrap_or_default()
            .contains("100 commands"),
        "{reply}"
    );
    // Cancelling makes room again, and the cancelled commands' IDFs go.
    for i in 1..at {
        daemon.accepted(json!({"id": format!("c{i}"), "command": "cancel",
                               "target": format!("d{i}")}));
    }
    let documents = fs::read_dir(device.state_dir().join("idf"))
        .unwrap()
        .count();
    assert_eq!(documents, 1);
    daemon.accepted(json!({"id": "one-more", "command": "update", "at": later}));
}

#[test]
fn an_accepted_setting_applies_at_once_also_to_the_running_transfer() {
    let repo = Repo::start();
    let (device, mut daemon, data, started) = crate::support::daemon::throttled_delivery(&repo);
    std::thread::sleep(std::time::Duration::from_secs(1));
    assert_eq!(
        app_state(&daemon.status(), APP).as_deref(),
        Some("downloading")
    );
    daemon.accepted(settings("s1", json!({"update.bandwidth_limit": "4MB"})));
    daemon.wait_for_app(APP, "marked-for-installation");
    let took = started.elapsed();
    device.assert_staged_bytes(APP, "1.0", &data);
    assert!(
        took < std::time::Duration::from_secs(8),
        "3 MiB took {took:?} after the limit went to 4MB; 256KB alone needs about 12 s"
    );
}
