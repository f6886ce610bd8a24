//! Whole-process tests of activation (DESIGN 6, 7): when staged versions become active (the
//! setting "activate after installation", `activate --boot`, the Update command), the
//! activation hook and the rollback when it fails, and the reboot an app may ask for. The real
//! binary runs against a real Apache on loopback; the hooks, notify and reboot commands are
//! shell scripts that record how they were called.

use std::fs;
use std::time::{Duration, Instant};

use crate::support::device::path_str;
use crate::support::lifecycle::{
    APP, Repo, Scripts, activate_at_boot, assert_installed, assert_state, deliver, hook_config,
    update, version_dirs,
};

#[test]
fn with_activation_at_boot_on_delivery_marks_and_boot_activates() {
    let repo = Repo::start();
    let data = repo.add(APP, "1.0", false);
    let device = repo.device("");

    deliver(&device, &[(APP, "1.0")]).assert_success();

    let entry = assert_state(&device, APP, "marked-for-installation");
    assert_eq!(entry["active"], false, "{entry:#}");
    assert_eq!(device.current(APP), None, "delivery must not activate");

    activate_at_boot(&device).assert_success();

    assert_installed(&device, APP, "1.0", &data);
}

#[test]
fn background_update_waits_for_the_update_command_not_the_boot() {
    let repo = Repo::start();
    let data = repo.add(APP, "1.0", false);
    let device = repo.device("activate_after_installation = false\n");

    deliver(&device, &[(APP, "1.0")]).assert_success();
    assert_state(&device, APP, "downloaded");
    activate_at_boot(&device).assert_success();

    assert_state(&device, APP, "downloaded");
    assert_eq!(device.current(APP), None, "the boot activated it");

    update(&device, &[(APP, "1.0")], &[]).assert_success();

    assert_installed(&device, APP, "1.0", &data);
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(
        repo.payload_gets(APP, "1.0").len(),
        1,
        "the Update command must activate the staged version, not fetch it again"
    );
}

#[test]
fn switching_the_setting_back_on_makes_staged_versions_activate_at_boot() {
    let repo = Repo::start();
    let data = repo.add(APP, "1.0", false);
    let device = repo.device("activate_after_installation = false\n");
    deliver(&device, &[(APP, "1.0")]).assert_success();
    assert_state(&device, APP, "downloaded");
    let config = device.config_path().to_path_buf();
    let text = fs::read_to_string(&config).expect("agent.toml");
    let switched = text.replace(
        "activate_after_installation = false",
        "activate_after_installation = true",
    );
    assert_ne!(text, switched);
    fs::write(&config, switched).expect("cannot rewrite agent.toml");

    activate_at_boot(&device).assert_success();

    assert_installed(&device, APP, "1.0", &data);
}

#[test]
fn failing_hook_rolls_back_to_the_previous_version() {
    let repo = Repo::start();
    repo.add(APP, "1.0", false);
    let v2 = repo.add(APP, "2.0", false);
    let scripts = Scripts::new();
    let fail = scripts.path("fail-2.0");
    let hook = scripts.recording_hook(
        "hook",
        &format!(
            "if [ \"$VERSION\" = 2.0 ] && [ -e '{}' ]; then echo boom >&2; exit 4; fi",
            fail.display()
        ),
    );
    let device = repo.device(&hook_config(&hook, "2s"));
    update(&device, &[(APP, "1.0")], &[]).assert_success();
    fs::write(&fail, "").expect("cannot create the failure flag");

    update(&device, &[(APP, "2.0")], &[]).assert_code(1);

    let entry = assert_state(&device, APP, "activation-failed");
    let error = entry["error"].as_str().unwrap_or_default();
    for part in ["exited with status 4", "boom", &path_str(&hook)] {
        assert!(error.contains(part), "error {error:?} lacks {part:?}");
    }
    assert_eq!(entry["active_version"], "1.0", "{entry:#}");
    assert_eq!(device.current(APP).as_deref(), Some("1.0"));
    assert_eq!(version_dirs(&device, APP), ["1.0", "2.0"], "2.0 is kept");
    let status = crate::support::lifecycle::status(&device);
    let update_status = status["update_status"].as_str().unwrap_or_default();
    assert!(update_status.starts_with("Update failed:"), "{status:#}");
    let failed = scripts.calls("hook").pop().expect("the hook ran for 2.0");
    assert_eq!(failed["VERSION"], "2.0");
    assert_eq!(
        failed["CURRENT"], "2.0",
        "the hook runs after the link swap"
    );

    fs::remove_file(&fail).expect("cannot remove the failure flag");
    activate_at_boot(&device).assert_success();

    assert_installed(&device, APP, "2.0", &v2);
    let retried = scripts.calls("hook").pop().expect("the hook ran again");
    assert_eq!(retried["VERSION"], "2.0", "{retried:?}");
    assert_eq!(retried["PREVIOUS_VERSION"], "1.0", "{retried:?}");
    let app_dir = device.state_dir().join("apps").join(APP).join("2.0");
    assert_eq!(retried["APP_DIR"], path_str(&app_dir), "{retried:?}");
    assert_eq!(retried["APP"], APP);
}

#[test]
fn hook_that_hangs_is_killed_and_rolled_back() {
    let repo = Repo::start();
    repo.add(APP, "1.0", false);
    repo.add(APP, "2.0", false);
    let scripts = Scripts::new();
    let hook = scripts.recording_hook("hook", "[ \"$VERSION\" = 2.0 ] && exec sleep 30\nexit 0");
    let device = repo.device(&hook_config(&hook, "1s"));
    update(&device, &[(APP, "1.0")], &[]).assert_success();

    let started = Instant::now();
    update(&device, &[(APP, "2.0")], &[]).assert_code(1);

    assert!(
        started.elapsed() < Duration::from_secs(20),
        "the hook was waited for ({:?})",
        started.elapsed()
    );
    let entry = assert_state(&device, APP, "activation-failed");
    let error = entry["error"].as_str().unwrap_or_default();
    assert!(
        error.contains(&path_str(&hook)) && error.contains("did not finish within"),
        "error: {error:?}"
    );
    assert_eq!(device.current(APP).as_deref(), Some("1.0"));
}

#[test]
fn missing_or_not_executable_hook_is_a_clear_activation_failure() {
    let repo = Repo::start();
    repo.add(APP, "1.0", false);
    let scripts = Scripts::new();
    let missing = scripts.path("no-such-hook");
    let not_executable = scripts.write_with_mode("plain-file", "exit 0", 0o644);

    for (hook, says) in [
        (missing, "does not exist"),
        (not_executable, "not executable"),
    ] {
        let device = repo.device(&hook_config(&hook, "2s"));

        let out = update(&device, &[(APP, "1.0")], &[]);

        out.assert_code(1);
        let entry = assert_state(&device, APP, "activation-failed");
        let error = entry["error"].as_str().unwrap_or_default();
        assert!(
            error.contains(&path_str(&hook)) && error.contains(says),
            "error: {error:?}"
        );
        assert!(out.stderr.contains(says), "stderr: {}", out.stderr);
        assert_eq!(device.current(APP), None, "a failed first activation");
        assert_eq!(version_dirs(&device, APP), ["1.0"], "kept for the retry");
    }
}

#[test]
fn app_asking_for_reboot_follows_the_reboot_policy() {
    let repo = Repo::start();
    repo.add(APP, "1.0", true);
    repo.add("quiet", "1.0", false);
    let scripts = Scripts::new();
    let reboot = scripts.recording_reboot("reboot");
    let cases = [
        // (app, reboot_after_activation, notify exit code, reboot expected)
        (APP, "immediately", None, true),
        (APP, "never", None, false),
        (APP, "ask", Some(10), false),
        (APP, "ask", Some(0), true),
        ("quiet", "immediately", None, false),
    ];
    for (app, policy, answer, expected) in cases {
        let _ = fs::remove_file(scripts.log("reboot"));
        let _ = fs::remove_file(scripts.log("notify"));
        let mut config = format!(
            "reboot_after_activation = {policy:?}\nreboot_command = [{:?}]\n",
            path_str(&reboot)
        );
        if let Some(code) = answer {
            let notify = scripts.recording_notify("notify", code);
            config.push_str(&format!("notify_command = [{:?}]\n", path_str(&notify)));
        }
        let device = repo.device(&config);

        let out = update(&device, &[(app, "1.0")], &[]);

        out.assert_success();
        let case = format!("{app} with {policy:?}, notify answers {answer:?}");
        assert_state(&device, app, "installed");
        assert_eq!(
            !scripts.calls("reboot").is_empty(),
            expected,
            "{case}: reboot expected: {expected}\n{}",
            out.stderr
        );
        let asked = scripts.calls("notify");
        if answer.is_some() {
            assert_eq!(asked.len(), 1, "{case}: the user must be asked once");
            assert_eq!(asked[0]["UPDATE_CAN_CANCEL"], "1", "{case}: {asked:?}");
            assert!(!asked[0]["UPDATE_MESSAGE"].is_empty(), "{case}: {asked:?}");
        }
    }
}

#[test]
fn hook_that_leaves_a_background_process_running_still_succeeds() {
    // A hook that (re)starts something in the background and exits 0 at once: the background
    // process inherits the hook's stderr, but the hook itself has finished successfully.
    let repo = Repo::start();
    let data = repo.add(APP, "1.0", false);
    let scripts = Scripts::new();
    let hook = scripts.recording_hook("hook", "sleep 5 &\nexit 0");
    let device = repo.device(&hook_config(&hook, "2s"));

    let out = update(&device, &[(APP, "1.0")], &[]);

    out.assert_success();
    assert_installed(&device, APP, "1.0", &data);
}

#[test]
fn hung_hook_is_killed_with_everything_it_started() {
    // The usual hook is a shell script whose command hangs; killing only the shell would leave
    // the hung command running next to the rolled-back version.
    const MARK: &str = "41.75";
    let repo = Repo::start();
    repo.add(APP, "1.0", false);
    let scripts = Scripts::new();
    let hook = scripts.recording_hook("hook", &format!("sleep {MARK}\nexit 0"));
    let device = repo.device(&hook_config(&hook, "1s"));

    update(&device, &[(APP, "1.0")], &[]).assert_code(1);

    assert_state(&device, APP, "activation-failed");
    std::thread::sleep(Duration::from_millis(300));
    let survivors = processes_with_cmdline(&["sleep", MARK]);
    for pid in &survivors {
        // Our own leftovers (started by this test's agent): do not let them linger.
        let _ = std::process::Command::new("sh")
            .args(["-c", &format!("kill -KILL {pid}")])
            .status();
    }
    assert_eq!(
        survivors,
        Vec::<u32>::new(),
        "the hook's `sleep {MARK}` outlived the timeout"
    );
}

/// Pids of the processes whose command line is exactly `argv`.
fn processes_with_cmdline(argv: &[&str]) -> Vec<u32> {
    let wanted: Vec<u8> = argv
        .iter()
        .flat_map(|a| [a.as_bytes(), b"\0"].concat())
        .collect();
    let Ok(entries) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|c| c == wanted))
        .collect()
}

#[test]
fn activation_cut_short_by_a_crash_is_rolled_back_and_redone_at_boot() {
    let repo = Repo::start();
    repo.add(APP, "1.0", false);
    let v2 = repo.add(APP, "2.0", false);
    for point in [
        "current.after_rename",
        "activate.after_swap",
        "activate.after_hook",
    ] {
        let scripts = Scripts::new();
        let hook = scripts.recording_hook("hook", "");
        let device = repo.device(&hook_config(&hook, "2s"));
        update(&device, &[(APP, "1.0")], &[]).assert_success();
        let idf = device.write_idf(&[(APP, "2.0", None)]);
        let crashing = device
            .agent()
            .clone()
            .env("IGEL_UPDATE_AGENT_CRASH_AT", point);

        let out = crashing.run(
            &["update", "--idf", &path_str(&idf)],
            Duration::from_secs(120),
        );

        assert_eq!(out.code, None, "{point}: no crash\n{}", out.stderr);
        let linked = device.current(APP).unwrap_or_default();
        assert!(
            device.installed(APP, &linked, "app.json").is_file(),
            "{point}: current -> {linked:?} is not a complete version"
        );

        activate_at_boot(&device).assert_success();

        assert_installed(&device, APP, "2.0", &v2);
        let last = scripts.calls("hook").pop().expect("the hook ran");
        assert_eq!(last["VERSION"], "2.0", "{point}: {last:?}");
        assert_eq!(last["PREVIOUS_VERSION"], "1.0", "{point}: {last:?}");
    }
}
