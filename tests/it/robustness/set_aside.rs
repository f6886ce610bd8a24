//! The daemon always starts (DESIGN 7, issue 9): for every item the agent persists, a value
//! that no longer validates (a hand edit, a file removed under it, an older format) is set
//! aside with a warning naming it, listed by `status`, reported by `check` as a failure with
//! the way out, and the rest runs. `settings --reset NAME` is that way out.

use std::fs;
use std::path::Path;

use crate::support::daemon::{JOB_TIMEOUT, app_state, idf};
use crate::support::device::Device;
use crate::support::device::path_str;
use crate::support::lifecycle::{APP, Repo};
use crate::support::{TlsFiles, sha256_hex};
use serde_json::{Value, json};

/// Stores `idf` as the agent does (`<state>/idf/<sha256>.json`) and returns its name.
fn store_idf(state_dir: &Path, idf: &Value) -> String {
    let bytes = serde_json::to_vec(idf).unwrap();
    let name = sha256_hex(&bytes);
    fs::create_dir_all(state_dir.join("idf")).unwrap();
    fs::write(state_dir.join("idf").join(format!("{name}.json")), bytes).unwrap();
    name
}

fn write_state(state_dir: &Path, state: &Value) {
    fs::create_dir_all(state_dir).unwrap();
    fs::write(state_dir.join("state.json"), state.to_string()).unwrap();
}

fn write_settings(state_dir: &Path, text: &str) {
    fs::create_dir_all(state_dir).unwrap();
    fs::write(state_dir.join("settings.json"), text).unwrap();
}

/// One bad item: how to write it, and the name it is set aside under.
struct Case {
    what: &'static str,
    name: &'static str,
    write: Box<dyn Fn(&Device)>,
}

fn cases() -> Vec<Case> {
    vec![
        Case {
            what: "a setting out of its bound",
            name: "update.splay",
            write: Box::new(|d| {
                write_settings(
                    d.state_dir(),
                    r#"{"format":1,"values":{"update.splay":"100000000years"}}"#,
                )
            }),
        },
        Case {
            what: "a settings file that is not JSON",
            name: "settings.json",
            write: Box::new(|d| write_settings(d.state_dir(), "{half a file")),
        },
        Case {
            what: "a password whose credential file is gone",
            name: "update.external_binary_source1",
            write: Box::new(|d| {
                write_settings(
                    d.state_dir(),
                    r#"{"format":1,"values":{
                        "update.external_binary_source1.url":"https://localhost:1/",
                        "update.external_binary_source1.username":"device",
                        "update.external_binary_source1.password":
                            {"credential":"source1.password.0123456789abcdef"}}}"#,
                )
            }),
        },
        Case {
            what: "a certificate file removed under the setting",
            name: "update.external_binary_source2",
            write: Box::new(|d| {
                let tls = TlsFiles::localhost();
                let ca = d.root().join("removed-ca.pem");
                fs::copy(tls.ca_path(), &ca).unwrap();
                d.agent()
                    .run(
                        &[
                            "settings",
                            "update.external_binary_source2.url=https://localhost:1/",
                            &format!(
                                "update.external_binary_source2.certificate={}",
                                path_str(&ca)
                            ),
                        ],
                        JOB_TIMEOUT,
                    )
                    .assert_success();
                fs::remove_file(&ca).unwrap();
            }),
        },
        Case {
            what: "a queued command with a field of the wrong type",
            name: "command:bad-type",
            write: Box::new(|d| {
                write_state(
                    d.state_dir(),
                    &json!({"format": 2, "commands": [
                        {"id": "bad-type", "command": "update", "force": "very"}]}),
                )
            }),
        },
        Case {
            what: "a queued command whose IDF document is gone",
            name: "command:no-idf",
            write: Box::new(|d| {
                write_state(
                    d.state_dir(),
                    &json!({"format": 2, "commands": [
                        {"id": "no-idf", "command": "assign", "idf": "ab".repeat(32)}]}),
                )
            }),
        },
        Case {
            what: "a queued command whose IDF document was changed on disk",
            name: "command:changed-idf",
            write: Box::new(|d| {
                let name = store_idf(d.state_dir(), &idf(&[("other", "2.0")]));
                let doc = d.state_dir().join("idf").join(format!("{name}.json"));
                fs::write(&doc, idf(&[(APP, "6.6.6")]).to_string()).unwrap();
                write_state(
                    d.state_dir(),
                    &json!({"format": 2, "commands": [
                        {"id": "changed-idf", "command": "assign", "idf": name}]}),
                )
            }),
        },
        Case {
            what: "an app record with an unknown state",
            name: "app:chromium",
            write: Box::new(|d| {
                write_state(
                    d.state_dir(),
                    &json!({"format": 2, "apps": [
                        {"name": APP, "version": "1.0", "state": "exploded"}]}),
                )
            }),
        },
        Case {
            what: "an assigned IDF whose document is gone",
            name: "idf",
            write: Box::new(|d| {
                write_state(d.state_dir(), &json!({"format": 2, "idf": "cd".repeat(32)}))
            }),
        },
        Case {
            what: "a status text that is not text",
            name: "state:update_status",
            write: Box::new(|d| {
                write_state(d.state_dir(), &json!({"format": 2, "update_status": 42}))
            }),
        },
        Case {
            what: "a command queue that is not a list",
            name: "state:commands",
            write: Box::new(|d| {
                write_state(d.state_dir(), &json!({"format": 2, "commands": {"a": 1}}))
            }),
        },
    ]
}

#[test]
fn every_persisted_item_that_no_longer_validates_is_set_aside_and_the_daemon_starts() {
    let repo = Repo::start();
    repo.add(APP, "1.0", false);
    for case in cases() {
        let device = repo.daemon_device("");
        (case.write)(&device);
        // A good command beside the bad item still runs.
        let good = store_idf(device.state_dir(), &idf(&[(APP, "1.0")]));
        let mut state: Value = fs::read(device.state_dir().join("state.json"))
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_else(|| json!({"format": 2}));
        if state["commands"].is_array() || state["commands"].is_null() {
            let mut commands = state["commands"].as_array().cloned().unwrap_or_default();
            commands.push(json!({"id": "good", "command": "assign", "idf": good}));
            state["commands"] = Value::from(commands);
        }
        write_state(device.state_dir(), &state);

        let mut daemon = device.start();
        let status = daemon.status();
        let names: Vec<&str> = status["set_aside"]
            .as_array()
            .map(|a| a.iter().filter_map(|n| n["name"].as_str()).collect())
            .unwrap_or_default();
        assert!(
            names.contains(&case.name),
            "{}: {:?} not set aside: {status:#}\n{}",
            case.what,
            case.name,
            daemon.stderr()
        );
        assert!(
            daemon.stderr().contains(case.name) && daemon.stderr().contains("WARN"),
            "{}: no warning naming {}:\n{}",
            case.what,
            case.name,
            daemon.stderr()
        );
        if case.name != "state:commands" {
            daemon.wait_for_app(APP, "marked-for-installation");
        }

        let check = device.agent().run(&["check"], JOB_TIMEOUT);
        check.assert_code(1);
        let line = check
            .stdout
            .lines()
            .find(|l| l.starts_with(&format!("FAIL {} set aside:", case.name)))
            .unwrap_or_else(|| panic!("{}: check:\n{}", case.what, check.stdout));
        assert!(
            line.contains(&format!("settings --reset {}", case.name)),
            "{line}"
        );

        // The way out.
        device
            .agent()
            .run(&["settings", "--reset", case.name], JOB_TIMEOUT)
            .assert_success();
        let status = daemon.status();
        assert!(
            !status["set_aside"]
                .as_array()
                .is_some_and(|a| a.iter().any(|n| n["name"] == case.name)),
            "{}: still set aside after the reset: {status:#}",
            case.what
        );
        drop(daemon);
    }
}

#[test]
fn settings_an_earlier_version_kept_in_state_json_move_to_their_own_files() {
    const PASSWORD: &str = "kept-in-clear-1";
    let repo = Repo::start();
    let device = repo.daemon_device("");
    write_state(
        device.state_dir(),
        &json!({"format": 1, "apps": [], "settings_overrides": {
            "update.activate_after_installation": "false",
            "update.no_longer_known": "1",
            "update.external_binary_source5.url": repo.apache.url(),
            "update.external_binary_source5.username": "device",
            "update.external_binary_source5.password": PASSWORD,
            "update.external_binary_source5.crypt_password": "base64:!!not base64",
        }}),
    );
    // Before the move, the listing does not show the password either.
    let listing = device.agent().run(&["settings"], JOB_TIMEOUT);
    assert!(
        !listing.stdout.contains(PASSWORD) && listing.stdout.contains("password=***"),
        "{}",
        listing.stdout
    );
    let daemon = device.start();
    let status = daemon.status();
    assert_eq!(status["settings"]["activate_after_installation"], false);
    // One key this version refuses costs that key alone.
    assert_eq!(
        status["set_aside"][0]["name"], "update.no_longer_known",
        "{status:#}"
    );
    let journal = fs::read_to_string(device.state_dir().join("state.json")).unwrap();
    let settings = fs::read_to_string(device.state_dir().join("settings.json")).unwrap();
    assert!(!journal.contains(PASSWORD) && !settings.contains(PASSWORD));
    assert!(!journal.contains("settings_overrides"), "{journal}");
    let kept: Vec<String> = fs::read_dir(device.state_dir().join("credentials"))
        .unwrap()
        .flatten()
        .map(|e| fs::read_to_string(e.path()).unwrap())
        .collect();
    assert_eq!(kept, [PASSWORD]);
    let repos = device
        .agent()
        .run(&["repos", "--json"], JOB_TIMEOUT)
        .assert_success()
        .json();
    assert!(
        repos
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["name"] == "source5"),
        "{repos:#}"
    );
}

#[test]
fn a_corrupt_event_queue_is_kept_aside_and_named() {
    let repo = Repo::start();
    // A UMS that is not there: the channel retries in the background.
    let ums = "\n[ums]\nurls = [\"ws://127.0.0.1:9/ws\"]\nallow_insecure = true\n";
    let device = repo.daemon_device(ums);
    fs::create_dir_all(device.state_dir()).unwrap();
    fs::write(device.state_dir().join("ums-events.json"), "[not a queue").unwrap();
    let daemon = device.start();
    let status = daemon.status();
    assert_eq!(
        status["set_aside"][0]["name"], "ums-events.json",
        "{status:#}"
    );
    assert!(device.state_dir().join("ums-events.json.corrupt").exists());
    assert_eq!(app_state(&status, APP), None);
}
