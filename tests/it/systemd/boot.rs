//! The units under a real systemd: each test boots the host's systemd as PID 1 in fresh
//! namespaces ([`Machine`]) with the binary under test as `/usr/bin/igel-update-agent` and both
//! units from `systemd/` installed and enabled, serves a repository on the machine's loopback
//! (`igel-update-agent repo serve`, started from outside in the machine's network namespace),
//! and drives the agent the way an administrator would: `systemctl`, `journalctl`, the command
//! line inside the machine, files in `/etc/igel-update-agent`.
//!
//! Run them alone with `cargo test --test it systemd::boot`. They need root with
//! CAP_SYS_ADMIN and cgroup2, and fail (never skip) without them.

use std::time::{Duration, Instant};

use serde_json::Value;

use super::lab::{
    ACTIVATE_UNIT, APP, CONFIG, PATIENCE, Repo, UNIT, agent_machine, app_status, command_id,
    follow_status_text, repository, restart_with_config, send_update,
};
use crate::support::machine::{EXIT_POWEROFF, EXIT_REBOOT};
use crate::support::write_password_file;

#[test]
fn the_daemon_is_active_only_after_ready_and_its_status_text_follows_the_update() {
    let repo = Repo::new();
    let data = repo.add(APP, "1.0", 1_500_000, false);
    let mut machine = agent_machine("").boot();
    let (_server, url) = repo.serve(&machine, None);

    assert_eq!(machine.property(UNIT, "Type"), "notify");
    assert_eq!(machine.property(UNIT, "ActiveState"), "active");
    assert_eq!(machine.property(UNIT, "StatusText"), "idle");

    // Type=notify: systemd calls the unit started only once the daemon said READY=1, which it
    // does after its state is loaded and its control socket answers.
    restart_with_config(
        &machine,
        &format!(
            "{}[update]\nbandwidth_limit_enabled = true\nbandwidth_limit = \"500KB\"\n",
            repository(&url)
        ),
    );
    let socket = machine.exec(&["test", "-S", "/run/igel-update-agent/control.sock"]);
    assert!(
        socket.status.success(),
        "right after `systemctl restart` returned, the control socket is there"
    );
    let messages = machine.messages(UNIT);
    let ready = messages
        .iter()
        .rposition(|m| m.contains("running; control socket"))
        .unwrap_or_else(|| panic!("the daemon never said it runs: {messages:#?}"));
    let started = messages
        .iter()
        .rposition(|m| m.starts_with("Started "))
        .unwrap_or_else(|| panic!("systemd never said it started the unit: {messages:#?}"));
    assert!(
        ready < started,
        "systemd said the unit started before the daemon was ready: {messages:#?}"
    );

    // STATUS= follows the update status from start to end.
    send_update(&machine, &[(APP, "1.0")], "update");
    let seen = follow_status_text(&machine, "Update successful");
    assert!(
        seen.iter()
            .any(|t| t.starts_with("Update in progress (Transfer started – ")),
        "the transfer phase was shown: {seen:?}"
    );
    assert!(
        seen.iter().all(|t| t == "idle"
            || t == "Update successful"
            || t.starts_with("Update in progress (")),
        "only status texts of DESIGN 7: {seen:?}"
    );
    let record = app_status(&machine, APP);
    assert_eq!(record["active_version"], "1.0", "{record}");
    let installed = machine
        .state_dir()
        .join("apps")
        .join(APP)
        .join("1.0")
        .join("payload.bin");
    assert_eq!(std::fs::read(&installed).ok(), Some(data));
    assert_eq!(machine.poweroff(), EXIT_POWEROFF);
}

/// A drop-in, as `systemctl edit` would write it.
fn drop_in(name: &str, text: &str) -> (String, String) {
    (format!("{UNIT}.d/{name}.conf"), text.to_string())
}

#[test]
fn a_stopped_daemon_is_killed_by_the_watchdog_and_the_restarted_one_converges() {
    let repo = Repo::new();
    let data = repo.add(APP, "1.0", 2_000_000, false);
    // The unit says 60 s; a site may shorten it in a drop-in, and so does this test.
    let (name, text) = drop_in("watchdog", "[Service]\nWatchdogSec=3\nRestartSec=1\n");
    let mut machine = agent_machine("").unit(&name, &text).boot();
    let (_server, url) = repo.serve(&machine, None);
    restart_with_config(
        &machine,
        &format!(
            "{}[update]\nbandwidth_limit_enabled = true\nbandwidth_limit = \"400KB\"\n",
            repository(&url)
        ),
    );
    assert_eq!(machine.property(UNIT, "WatchdogUSec"), "3s");
    let first = machine.property(UNIT, "MainPID");

    let id = command_id(&send_update(&machine, &[(APP, "1.0")], "update"));
    machine.wait_for_message(UNIT, "Transfer started", PATIENCE);
    machine.stdout(&["kill", "-STOP", &first]);

    machine.wait_for_property(UNIT, "NRestarts", "1", PATIENCE);
    machine.wait_for_property(UNIT, "ActiveState", "active", PATIENCE);
    let messages = machine.messages(UNIT);
    assert!(
        messages.iter().any(|m| m.contains("Watchdog timeout")),
        "systemd says why it killed the daemon: {messages:#?}"
    );
    assert!(
        messages
            .iter()
            .any(|m| m.contains("Failed with result 'watchdog'")),
        "{messages:#?}"
    );
    assert_ne!(machine.property(UNIT, "MainPID"), first);
    // The command was persisted before it was accepted: the new daemon runs it to the end.
    follow_status_text(&machine, "Update successful");
    machine.wait_for_message(
        UNIT,
        &format!("command {id}: finished: Update successful"),
        PATIENCE,
    );
    assert_eq!(app_status(&machine, APP)["active_version"], "1.0");
    let installed = machine
        .state_dir()
        .join(format!("apps/{APP}/1.0/payload.bin"));
    assert_eq!(std::fs::read(&installed).ok(), Some(data));
    assert_eq!(machine.property(UNIT, "NRestarts"), "1");
    assert_eq!(machine.poweroff(), EXIT_POWEROFF);
}

#[test]
fn systemctl_reload_applies_a_new_bandwidth_limit_to_the_running_transfer() {
    let repo = Repo::new();
    let size = 4_000_000;
    repo.add(APP, "1.0", size, false);
    let mut machine = agent_machine("").boot();
    let (_server, url) = repo.serve(&machine, None);
    let config = |limit: &str| {
        format!(
            "{}[update]\nbandwidth_limit_enabled = true\nbandwidth_limit = \"{limit}\"\n",
            repository(&url)
        )
    };
    restart_with_config(&machine, &config("100KB"));

    let started = Instant::now();
    send_update(&machine, &[(APP, "1.0")], "update");
    let part = machine
        .state_dir()
        .join(format!("staging/{APP}/1.0/payload.bin.part"));
    crate::support::wait_until("the transfer to be under way", PATIENCE, || {
        std::fs::metadata(&part).is_ok_and(|m| m.len() > 0)
    });
    machine.write_file(CONFIG, &config("50MB"), 0o644);
    machine.systemctl(&["reload", UNIT]);
    machine.wait_for_message(UNIT, "SIGHUP: configuration reloaded", PATIENCE);
    machine.wait_for_message(UNIT, "bandwidth limit: 50.0 MiB/s", PATIENCE);
    follow_status_text(&machine, "Update successful");
    // At the old limit the file needs 4,000,000 / 102,400 = 39 s; at the new one a fraction
    // of a second. Only the running transfer taking the new limit ends it this early.
    let took = started.elapsed();
    assert!(
        took < Duration::from_secs(25),
        "the transfer kept the old limit after the reload: {took:?}"
    );
    assert_eq!(machine.property(UNIT, "NRestarts"), "0");
    assert_eq!(machine.poweroff(), EXIT_POWEROFF);
}

#[test]
fn load_credential_in_a_drop_in_gives_a_repository_its_password() {
    let repo = Repo::new();
    repo.add(APP, "1.0", 100_000, false);
    let secret = "s3cret-from-systemd-credential";
    let host_secrets = crate::support::temp_dir("machine-secret");
    let password_file = write_password_file(host_secrets.path(), "repo.pw", secret);
    let (name, text) = drop_in(
        "credential",
        "[Service]\nLoadCredential=branch-office:/etc/igel-update-agent/branch.pw\n",
    );
    let mut machine = agent_machine("")
        .etc_file("/etc/igel-update-agent/branch.pw", secret, 0o600)
        .unit(&name, &text)
        .boot();
    let (_server, url) = repo.serve(&machine, Some(("device", &password_file)));
    restart_with_config(
        &machine,
        &format!(
            "{}auth = \"basic\"\nusername = \"device\"\ncredential = \"branch-office\"\n",
            repository(&url)
        ),
    );
    send_update(&machine, &[(APP, "1.0")], "update");
    follow_status_text(&machine, "Update successful");
    assert_eq!(app_status(&machine, APP)["active_version"], "1.0");
    let journal = machine.stdout(&["journalctl", "-b", "--no-pager", "-o", "verbose"]);
    assert!(
        !journal.contains(secret),
        "the password never reaches the journal"
    );
    assert_eq!(machine.poweroff(), EXIT_POWEROFF);
}

#[test]
fn the_hardening_holds_and_the_activation_hook_still_works() {
    let repo = Repo::new();
    repo.add(APP, "1.0", 100_000, false);
    let hook = r#"#!/bin/sh
report=/var/lib/igel-update-agent/hook-report
{
  for p in /usr/probe /etc/probe /etc/igel-update-agent/probe /var/probe /var/lib/probe \
           /run/probe /root/probe /run/igel-update-agent/probe \
           /var/lib/igel-update-agent/probe /tmp/probe; do
    if touch "$p" 2>/dev/null; then echo "writable $p"; rm -f "$p"; else echo "read-only $p"; fi
  done
  grep -E '^(CapEff|CapBnd|CapAmb|NoNewPrivs):' /proc/self/status
  if [ -e /proc/sys/kernel ]; then echo "proc/sys visible"; else echo "proc/sys hidden"; fi
  echo "activated $APP $VERSION"
} > "$report"
"#;
    let mut machine = agent_machine("")
        .etc_file("/etc/igel-update-agent/hooks/activate", hook, 0o755)
        .boot();
    let (_server, url) = repo.serve(&machine, None);
    restart_with_config(&machine, &repository(&url));
    send_update(&machine, &[(APP, "1.0")], "update");
    follow_status_text(&machine, "Update successful");
    assert_eq!(app_status(&machine, APP)["active_version"], "1.0");

    let report = std::fs::read_to_string(machine.state_dir().join("hook-report"))
        .expect("the activation hook ran and wrote its report");
    let lines: Vec<&str> = report.lines().collect();
    for expected in [
        "read-only /usr/probe",
        "read-only /etc/probe",
        "read-only /etc/igel-update-agent/probe",
        "read-only /var/probe",
        "read-only /var/lib/probe",
        "read-only /run/probe",
        "read-only /root/probe",
        "writable /run/igel-update-agent/probe",
        "writable /var/lib/igel-update-agent/probe",
        "writable /tmp/probe",
        "CapEff:\t0000000000000000",
        "CapBnd:\t0000000000000000",
        "CapAmb:\t0000000000000000",
        "NoNewPrivs:\t1",
        "proc/sys hidden",
        "activated demo-app 1.0",
    ] {
        assert!(
            lines.contains(&expected),
            "{expected:?} not in the hook's report:\n{report}"
        );
    }
    // The daemon itself, seen from inside the machine.
    let pid = machine.property(UNIT, "MainPID");
    let status = machine.stdout(&["cat", &format!("/proc/{pid}/status")]);
    assert!(
        status.contains("CapEff:\t0000000000000000"),
        "the daemon runs without capabilities:\n{status}"
    );
    assert_eq!(machine.poweroff(), EXIT_POWEROFF);
}

#[test]
fn the_activate_unit_at_boot_activates_marked_versions_and_leaves_downloaded_ones() {
    let repo = Repo::new();
    let one = repo.add(APP, "1.0", 100_000, false);
    repo.add(APP, "2.0", 120_000, false);
    let mut machine = agent_machine("").boot();
    let (server, url) = repo.serve(&machine, None);
    restart_with_config(&machine, &repository(&url));

    // "Activate after installation" on: a delivery leaves the version for the next boot.
    send_update(&machine, &[(APP, "1.0")], "delivery");
    follow_status_text(&machine, "Delivery successful");
    let record = app_status(&machine, APP);
    assert_eq!(record["state"], "marked-for-installation", "{record}");
    assert_eq!(record["active_version"], Value::Null, "{record}");
    machine.systemctl(&["reboot"]);
    assert_eq!(machine.wait_exit(), EXIT_REBOOT);
    drop(server);

    machine.boot_again();
    assert_eq!(machine.property(ACTIVATE_UNIT, "ActiveState"), "active");
    assert_eq!(machine.property(ACTIVATE_UNIT, "Result"), "success");
    let record = app_status(&machine, APP);
    assert_eq!(record["state"], "installed", "{record}");
    assert_eq!(record["active_version"], "1.0", "{record}");
    let current = machine
        .state_dir()
        .join(format!("apps/{APP}/current/payload.bin"));
    assert_eq!(std::fs::read(&current).ok(), Some(one));
    let activate = machine.messages(ACTIVATE_UNIT);
    assert!(
        activate
            .iter()
            .any(|m| m.contains("demo-app 1.0: installed")),
        "{activate:#?}"
    );

    // Background update: "activate after installation" off, the version waits for the
    // Update command and a reboot does not touch it.
    let (_server, url) = repo.serve(&machine, None);
    machine.write_file(
        CONFIG,
        &format!(
            "{}[update]\nactivate_after_installation = false\n",
            repository(&url)
        ),
        0o644,
    );
    machine.systemctl(&["reload", UNIT]);
    machine.wait_for_message(UNIT, "SIGHUP: configuration reloaded", PATIENCE);
    send_update(&machine, &[(APP, "2.0")], "delivery");
    follow_status_text(&machine, "Delivery successful");
    assert_eq!(app_status(&machine, APP)["state"], "downloaded");
    machine.systemctl(&["reboot"]);
    assert_eq!(machine.wait_exit(), EXIT_REBOOT);
    machine.boot_again();
    assert_eq!(machine.property(ACTIVATE_UNIT, "Result"), "success");
    let record = app_status(&machine, APP);
    assert_eq!(record["state"], "downloaded", "{record}");
    assert_eq!(record["version"], "2.0", "{record}");
    assert_eq!(record["active_version"], "1.0", "{record}");
    let activate = machine.messages(ACTIVATE_UNIT);
    assert!(
        !activate.iter().any(|m| m.contains("2.0: activating")),
        "a downloaded version is not activated at boot: {activate:#?}"
    );
    assert_eq!(machine.poweroff(), EXIT_POWEROFF);
}

#[test]
fn reboot_immediately_reboots_and_the_next_boot_converges_with_the_story_in_the_journal() {
    let repo = Repo::new();
    let data = repo.add(APP, "1.0", 100_000, true);
    let mut machine = agent_machine("").boot();
    let (server, url) = repo.serve(&machine, None);
    restart_with_config(
        &machine,
        &format!(
            "{}[update]\nreboot_after_activation = \"immediately\"\n",
            repository(&url)
        ),
    );
    send_update(&machine, &[(APP, "1.0")], "update");
    // The agent activates and calls `systemctl reboot`: PID 1 ends with the reboot status.
    assert_eq!(machine.wait_exit(), EXIT_REBOOT);
    drop(server);

    machine.boot_again();
    machine.wait_for_property(UNIT, "ActiveState", "active", PATIENCE);
    let record = app_status(&machine, APP);
    assert_eq!(record["state"], "installed", "{record}");
    assert_eq!(record["active_version"], "1.0", "{record}");
    let current = machine
        .state_dir()
        .join(format!("apps/{APP}/current/payload.bin"));
    assert_eq!(std::fs::read(&current).ok(), Some(data));
    let status = machine.property(UNIT, "StatusText");
    assert_eq!(status, "Update successful");

    let previous: Vec<String> = machine
        .journal_args(&["-b", "-1", "-u", UNIT])
        .iter()
        .filter_map(|e| e["MESSAGE"].as_str().map(str::to_string))
        .collect();
    let position = |needle: &str| {
        previous
            .iter()
            .position(|m| m.contains(needle))
            .unwrap_or_else(|| panic!("journalctl -b -1 has no {needle:?}: {previous:#?}"))
    };
    let accepted = position("update accepted");
    let activating = position("demo-app 1.0: activating");
    let installed = position("demo-app 1.0: installed");
    let finished = position("finished: Update successful");
    let rebooting = position("rebooting for");
    assert!(
        accepted < activating
            && activating < installed
            && installed < finished
            && finished < rebooting,
        "the previous boot's journal tells the story in order: {previous:#?}"
    );
    assert_eq!(machine.boot_times().len(), 2);
    assert_eq!(machine.poweroff(), EXIT_POWEROFF);
}

#[test]
fn the_journal_carries_the_structured_fields() {
    let repo = Repo::new();
    let data = repo.add(APP, "1.0", 300_000, false);
    let mut machine = agent_machine("").boot();
    let (_server, url) = repo.serve(&machine, None);
    restart_with_config(&machine, &repository(&url));
    let reply = send_update(&machine, &[(APP, "1.0")], "update");
    follow_status_text(&machine, "Update successful");
    let entries = machine.journal(UNIT);
    let ours: Vec<&Value> = entries
        .iter()
        .filter(|e| e["SYSLOG_IDENTIFIER"] == "igel-update-agent")
        .collect();
    let field = |e: &Value, name: &str| e[name].as_str().map(str::to_string);
    let has = |pred: &dyn Fn(&Value) -> bool, what: &str| {
        assert!(
            ours.iter().any(|e| pred(e)),
            "no journal entry with {what}: {}",
            serde_json::to_string_pretty(&ours).unwrap_or_default()
        );
    };
    // A file arrived: the app, the version, the repository it came from and its bytes.
    has(
        &|e| {
            field(e, "APP").as_deref() == Some(APP)
                && field(e, "VERSION").as_deref() == Some("1.0")
                && field(e, "REPOSITORY").as_deref() == Some("loopback")
                && field(e, "BYTES") == Some(data.len().to_string())
        },
        "APP, VERSION, REPOSITORY and BYTES",
    );
    // A state change names the state.
    has(
        &|e| {
            field(e, "APP").as_deref() == Some(APP)
                && field(e, "STATE").as_deref() == Some("installed")
        },
        "APP and STATE=installed",
    );
    // The command's lines name it.
    let id = command_id(&reply);
    has(
        &|e| field(e, "COMMAND_ID").as_deref() == Some(id.as_str()),
        "COMMAND_ID",
    );
    assert_eq!(machine.poweroff(), EXIT_POWEROFF);
}
