//! Whole-process tests of the Update command and the state journal (DESIGN 3, 4, 6, 7, 8): the
//! real binary runs `update` against a real Apache on loopback, and the `current` links, the
//! version directories, `status --json` and Apache's access log witness what happened.

use std::fs;
use std::time::Duration;

use crate::support::lifecycle::{
    APP, Repo, Scripts, activate_at_boot, app_entry, assert_installed, deliver, hook_config,
    payload_name, status, update, version_dirs,
};
use crate::support::sha256_hex;
use chrono::NaiveDateTime;

/// Apache logs a request after answering it: time for a late line to show up.
const LOG_SETTLE: Duration = Duration::from_millis(500);

#[test]
fn update_activates_and_reports_the_igel_status_words() {
    let repo = Repo::start();
    let data = repo.add(APP, "1.0", false);
    let device = repo.device("");

    let before = chrono::Local::now().naive_local();
    let out = update(&device, &[(APP, "1.0")], &[]);
    let after = chrono::Local::now().naive_local();

    out.assert_success();
    assert_installed(&device, APP, "1.0", &data);
    let status = status(&device);
    assert_eq!(status["update_status"], "Update successful", "{status:#}");
    assert!(status["idf_sha256"].is_string(), "{status:#}");
    assert_eq!(
        status["applied_idf_sha256"], status["idf_sha256"],
        "{status:#}"
    );
    let mut rest = out.stderr.as_str();
    for step in [
        "Transfer started",
        "Transfer completed",
        "Installation started",
        "Installation completed",
    ] {
        let needle = format!("Update in progress ({step} \u{2013} ");
        let at = rest.find(&needle).unwrap_or_else(|| {
            panic!(
                "{needle:?} missing or out of order in stderr:\n{}",
                out.stderr
            )
        });
        rest = &rest[at + needle.len()..];
        let stamp = rest.get(..19).unwrap_or_default();
        let time = NaiveDateTime::parse_from_str(stamp, "%Y-%m-%d %H:%M:%S")
            .unwrap_or_else(|e| panic!("{step}: {stamp:?} is not YYYY-MM-DD HH:MM:SS: {e}"));
        assert!(
            time >= before - Duration::from_secs(1) && time <= after + Duration::from_secs(1),
            "{step} at {time} is not local time between {before} and {after}"
        );
        assert!(rest[19..].starts_with(')'), "{step}: {:?}", &rest[..20]);
    }
    assert!(
        rest.contains("Update successful"),
        "no `Update successful` after `Installation completed`:\n{}",
        out.stderr
    );
}

#[test]
fn unchanged_idf_is_not_updated_again_unless_forced() {
    let repo = Repo::start();
    let data = repo.add(APP, "1.0", false);
    let device = repo.device("");
    update(&device, &[(APP, "1.0")], &[]).assert_success();
    std::thread::sleep(LOG_SETTLE);
    let seen = repo.apache.access_log().len();
    assert_eq!(repo.payload_gets(APP, "1.0").len(), 1);

    update(&device, &[(APP, "1.0")], &[]).assert_success();

    assert_eq!(status(&device)["update_status"], "Update not necessary");
    assert_installed(&device, APP, "1.0", &data);
    std::thread::sleep(LOG_SETTLE);
    let second: Vec<_> = repo.apache.access_log().into_iter().skip(seen).collect();
    let payload_or_other: Vec<_> = second
        .iter()
        .filter(|e| !(e.method == "PROPFIND" || e.path.ends_with("/app.json")))
        .collect();
    assert_eq!(
        payload_or_other,
        Vec::<&crate::support::AccessEntry>::new(),
        "an unchanged IDF must transfer nothing"
    );

    let forced = update(&device, &[(APP, "1.0")], &["--force"]);

    forced.assert_success();
    assert_eq!(status(&device)["update_status"], "Update successful");
    assert!(
        forced.stderr.contains("Transfer started"),
        "--force did not run the update:\n{}",
        forced.stderr
    );
    assert_installed(&device, APP, "1.0", &data);
}

#[test]
fn previous_version_is_kept_and_older_ones_removed() {
    let repo = Repo::start();
    let scripts = Scripts::new();
    let hook = scripts.recording_hook("hook", "");
    let device = repo.device(&hook_config(&hook, "2s"));
    let mut installed = Vec::new();
    for version in ["1.0", "2.0", "3.0"] {
        installed.push(repo.add(APP, version, false));
        update(&device, &[(APP, version)], &[]).assert_success();
    }

    assert_installed(&device, APP, "3.0", &installed[2]);
    assert_eq!(version_dirs(&device, APP), ["2.0", "3.0"]);
    let previous: Vec<String> = scripts
        .calls("hook")
        .iter()
        .map(|c| c["PREVIOUS_VERSION"].clone())
        .collect();
    assert_eq!(previous, ["", "1.0", "2.0"]);
    let v2 = device.installed(APP, "2.0", &payload_name(APP));
    assert_eq!(
        fs::read(&v2).map(|d| d == installed[1]).ok(),
        Some(true),
        "the previous version must stay complete for a rollback: {}",
        v2.display()
    );
}

#[test]
fn app_leaving_the_idf_is_removed_at_the_next_activation() {
    let repo = Repo::start();
    let alpha = repo.add("alpha", "1.0", false);
    repo.add("beta", "1.0", false);
    let device = repo.device("");
    update(&device, &[("alpha", "1.0"), ("beta", "1.0")], &[]).assert_success();
    assert_eq!(device.current("beta").as_deref(), Some("1.0"));

    update(&device, &[("alpha", "1.0")], &[]).assert_success();

    let apps = device.state_dir().join("apps");
    assert!(
        !apps.join("beta").exists(),
        "beta's directory is still there"
    );
    let leftovers: Vec<_> = fs::read_dir(&apps)
        .expect("apps/ exists")
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(leftovers, ["alpha"], "only alpha may remain under apps/");
    let status = status(&device);
    assert!(app_entry(&status, "beta").is_none(), "{status:#}");
    assert_eq!(status["update_status"], "Update successful", "{status:#}");
    assert_installed(&device, "alpha", "1.0", &alpha);
}

#[test]
fn clean_deletes_inactive_versions_and_partials_but_never_the_active_one() {
    let repo = Repo::start();
    let v1 = repo.add(APP, "1.0", false);
    let v2 = repo.add(APP, "2.0", false);
    let scripts = Scripts::new();
    let hook = scripts.recording_hook("hook", "");
    let device = repo.device(&hook_config(&hook, "2s"));
    update(&device, &[(APP, "1.0")], &[]).assert_success();
    deliver(&device, &[(APP, "2.0")]).assert_success();
    assert_eq!(version_dirs(&device, APP), ["1.0", "2.0"]);
    assert_eq!(device.current(APP).as_deref(), Some("1.0"));
    let ghost = device.part("ghost", "3.0", "ghost.bin");
    fs::create_dir_all(ghost.parent().expect("a part has a directory")).expect("mkdir staging");
    fs::write(&ghost, b"half a download").expect("cannot write the stray part file");

    update(&device, &[(APP, "2.0")], &["--clean"]).assert_success();

    let staging = device.state_dir().join("staging");
    let staged: Vec<_> = fs::read_dir(&staging)
        .map(|d| d.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    assert_eq!(staged, Vec::<std::path::PathBuf>::new(), "staging/ kept");
    std::thread::sleep(LOG_SETTLE);
    assert_eq!(
        repo.payload_gets(APP, "2.0").len(),
        2,
        "--clean must delete the staged 2.0, so the update fetches it again"
    );
    assert_eq!(
        repo.payload_gets(APP, "1.0").len(),
        1,
        "the active 1.0 must survive --clean, not be fetched again"
    );
    assert_installed(&device, APP, "2.0", &v2);
    let activation = scripts.calls("hook").pop().expect("the hook ran for 2.0");
    assert_eq!(activation["VERSION"], "2.0");
    assert_eq!(activation["PREVIOUS_VERSION"], "1.0", "{activation:?}");
    let kept = device.installed(APP, "1.0", &payload_name(APP));
    assert_eq!(
        fs::read(&kept).ok().as_deref(),
        Some(v1.as_slice()),
        "the version active during --clean is the rollback target and stays intact"
    );
}

#[test]
fn pinned_app_json_sha256_is_enforced_by_update() {
    let repo = Repo::start();
    let v1 = repo.add(APP, "1.0", false);
    repo.add(APP, "2.0", false);
    let device = repo.device("");
    update(&device, &[(APP, "1.0")], &[]).assert_success();
    let wrong_pin = sha256_hex(b"an app.json no repository serves");
    let idf = device.write_idf(&[(APP, "2.0", Some(&wrong_pin))]);

    let out = device.run(&["update", "--idf", &crate::support::device::path_str(&idf)]);

    out.assert_code(1);
    assert_eq!(device.current(APP).as_deref(), Some("1.0"));
    assert_eq!(version_dirs(&device, APP), ["1.0"]);
    std::thread::sleep(LOG_SETTLE);
    assert_eq!(repo.payload_gets(APP, "2.0"), [], "2.0 was transferred");
    let status = status(&device);
    let update_status = status["update_status"].as_str().unwrap_or_default();
    assert!(
        update_status.starts_with("Update failed:") && update_status.contains(&wrong_pin),
        "{status:#}"
    );
    let entry = app_entry(&status, APP).expect("the app stays listed");
    assert_eq!(entry["active_version"], "1.0", "{status:#}");
    let file = device.installed(APP, "1.0", &payload_name(APP));
    assert_eq!(fs::read(file).ok(), Some(v1));
}

#[test]
fn corrupt_state_json_is_kept_aside_and_the_state_rebuilt_from_disk() {
    let repo = Repo::start();
    let data = repo.add(APP, "1.0", false);
    let device = repo.device("");
    update(&device, &[(APP, "1.0")], &[]).assert_success();
    let journal = device.state_dir().join("state.json");
    let kept = device.state_dir().join("state.json.corrupt");

    // Garbage: status says what is wrong, the next update rebuilds the journal.
    fs::write(&journal, "this is not a state journal {{{").expect("cannot overwrite");
    assert_unreadable_journal_is_reported(&device.run(&["status", "--json"]), "");
    update(&device, &[(APP, "1.0")], &[]).assert_success();
    assert_eq!(
        fs::read_to_string(&kept).ok().as_deref(),
        Some("this is not a state journal {{{")
    );
    assert_installed(&device, APP, "1.0", &data);

    // Truncated (a torn write on a filesystem without atomic rename): the boot recovers.
    let whole = fs::read_to_string(&journal).expect("state.json was rebuilt");
    let half = &whole[..whole.len() / 2];
    fs::write(&journal, half).expect("cannot truncate");
    assert_unreadable_journal_is_reported(&device.run(&["status", "--json"]), "");
    activate_at_boot(&device).assert_success();
    assert_eq!(fs::read_to_string(&kept).ok().as_deref(), Some(half));
    assert_installed(&device, APP, "1.0", &data);
}

#[test]
fn a_bad_app_record_is_set_aside_named_and_rebuilt_from_disk() {
    let repo = Repo::start();
    let data = repo.add(APP, "1.0", false);
    let device = repo.device("");
    update(&device, &[(APP, "1.0")], &[]).assert_success();
    let journal = device.state_dir().join("state.json");
    let mut state: serde_json::Value =
        serde_json::from_slice(&fs::read(&journal).expect("state.json")).expect("JSON");
    state["apps"][0]["state"] = serde_json::json!("exploded");
    fs::write(&journal, state.to_string()).expect("cannot rewrite state.json");

    // The rest of the journal still counts; the bad record is named, with the way out.
    let out = device.run(&["status", "--json"]);
    out.assert_success();
    let doc = out.json();
    assert_eq!(doc["update_status"], "Update successful", "{doc:#}");
    let aside = &doc["set_aside"][0];
    assert_eq!(aside["name"], format!("app:{APP}"), "{doc:#}");
    assert!(
        aside["reason"].as_str().unwrap_or("").contains("exploded"),
        "{doc:#}"
    );
    let text = device.run(&["status"]);
    assert!(
        text.stdout.contains("settings --reset") && text.stdout.contains(&format!("app:{APP}")),
        "{}",
        text.stdout
    );

    // The first process that takes the lock rebuilds the record from the `current` link.
    activate_at_boot(&device).assert_success();
    assert!(!device.state_dir().join("state.json.corrupt").exists());
    assert_installed(&device, APP, "1.0", &data);
    // The notice stays until someone forgets it.
    device
        .run(&["settings", "--reset", &format!("app:{APP}")])
        .assert_success();
    assert_eq!(status(&device)["set_aside"], serde_json::json!([]));
}

#[test]
fn update_restores_an_active_version_that_vanished_from_disk() {
    let repo = Repo::start();
    let data = repo.add(APP, "1.0", false);
    let device = repo.device("");
    update(&device, &[(APP, "1.0")], &[]).assert_success();
    fs::remove_dir_all(device.state_dir().join("apps").join(APP).join("1.0"))
        .expect("cannot delete the active version");

    update(&device, &[(APP, "1.0")], &[]).assert_success();

    // `current` dangles: the app is not in place, whatever the IDF digest says.
    assert_eq!(status(&device)["update_status"], "Update successful");
    assert_installed(&device, APP, "1.0", &data);
}

/// `status` on a journal it cannot read: no panic, exit 1, a message naming `state.json` and
/// what is wrong with it (`detail`, if not empty).
#[track_caller]
fn assert_unreadable_journal_is_reported(out: &crate::support::RunOutput, detail: &str) {
    out.assert_code(1);
    assert!(!out.stderr.contains("panicked"), "{}", out.stderr);
    assert!(
        out.stderr.contains("state.json") && out.stderr.contains("not a valid state journal"),
        "stderr: {}",
        out.stderr
    );
    assert!(out.stderr.contains(detail), "stderr: {}", out.stderr);
}

/// Appends `[[app]]` tables to the device's configuration.
fn add_config_apps(device: &crate::support::device::Device, apps: &[(&str, &str)]) {
    let path = device.config_path().to_path_buf();
    let mut text = fs::read_to_string(&path).expect("cannot read agent.toml");
    for (name, version) in apps {
        text.push_str(&format!(
            "\n[[app]]\nname = {name:?}\nversion = {version:?}\n"
        ));
    }
    fs::write(&path, text).expect("cannot write agent.toml");
}

/// Issue 11.6: one rule for which IDF applies. `[[app]]` applies until an IDF is assigned,
/// `status` says where the wanted apps come from and when `[[app]]` is not used, an update
/// without an IDF in its own process follows the assigned IDF like the daemon does, and
/// `update --apps-from-config` assigns `[[app]]` explicitly.
#[test]
fn status_and_every_command_follow_one_rule_for_which_idf_applies() {
    const OTHER: &str = "zoom";
    let repo = Repo::start();
    let first = repo.add(APP, "1.0", false);
    let other = repo.add(OTHER, "2.0", false);
    let device = repo.device("");
    add_config_apps(&device, &[(OTHER, "2.0")]);

    // A fresh state directory: the configuration's apps are wanted, and status says so.
    let st = status(&device);
    assert_eq!(st["wanted"]["source"], "configuration", "{st:#}");
    assert_eq!(st["wanted"]["apps"][0]["name"], OTHER, "{st:#}");
    let text = device.run(&["status"]).assert_success().stdout.clone();
    assert!(
        text.contains("Wanted (from the [[app]] tables of the configuration): zoom 2.0"),
        "{text}"
    );
    assert!(!text.contains("No apps assigned"), "{text}");

    // An IDF assigned by update --idf replaces [[app]] for every later command.
    update(&device, &[(APP, "1.0")], &[]).assert_success();
    let st = status(&device);
    assert_eq!(st["wanted"]["source"], "assigned_idf", "{st:#}");
    assert!(
        st["wanted"]["note"]
            .as_str()
            .is_some_and(|n| n.contains("--apps-from-config")),
        "{st:#}"
    );
    let out = device.run(&["update"]);
    out.assert_success();
    assert!(
        out.stderr
            .contains("the [[app]] tables of the configuration are not used"),
        "{}",
        out.stderr
    );
    assert_installed(&device, APP, "1.0", &first);
    assert_eq!(
        app_entry(&status(&device), OTHER),
        None,
        "[[app]] was applied"
    );

    // --apps-from-config assigns [[app]]: zoom comes, the app only the old IDF wanted leaves.
    device
        .run(&["update", "--apps-from-config"])
        .assert_success();
    assert_installed(&device, OTHER, "2.0", &other);
    let st = status(&device);
    assert_eq!(st["wanted"]["source"], "assigned_idf", "{st:#}");
    assert!(st["wanted"]["note"].is_null(), "{st:#}");
    assert_ne!(
        app_entry(&st, APP).map(|a| a["state"].clone()),
        Some(serde_json::json!("installed")),
        "{st:#}"
    );
}

/// Issue 11.7: the columns of the plain `status` table line up whatever the cells hold (a
/// long state such as `marked-for-installation (active: 1.0)`, names of different lengths).
#[test]
fn the_status_table_keeps_its_columns_aligned() {
    let repo = Repo::start();
    repo.add(APP, "1.0", false);
    repo.add(APP, "2.0", false);
    repo.add("a-much-longer-app-name-than-usual", "10.20.30", false);
    let device = repo.device("");
    update(&device, &[(APP, "1.0")], &[]).assert_success();
    deliver(
        &device,
        &[
            (APP, "2.0"),
            ("a-much-longer-app-name-than-usual", "10.20.30"),
        ],
    )
    .assert_success();

    let text = device.run(&["status"]).assert_success().stdout.clone();
    let header = text
        .lines()
        .find(|l| l.starts_with("APP"))
        .unwrap_or_else(|| panic!("no table:\n{text}"));
    let rows: Vec<&str> = text.lines().filter(|l| l.ends_with("central")).collect();
    assert_eq!(rows.len(), 2, "{text}");
    assert!(rows.iter().any(|r| r.contains("(active: 1.0)")), "{text}");
    for column in ["VERSION", "STATE", "REPOSITORY"] {
        let at = header.find(column).expect("a column");
        for row in &rows {
            let before = &row[..at];
            assert!(
                before.ends_with("  ") || column == "REPOSITORY" && before.ends_with(' '),
                "{column} does not start at column {at} in {row:?}:\n{text}"
            );
            assert_ne!(row.as_bytes()[at], b' ', "{column} in {row:?}:\n{text}");
        }
    }
}
