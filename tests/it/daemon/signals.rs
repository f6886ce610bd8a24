//! Whole-process tests of the daemon across time and process life (DESIGN 5, 7, 11):
//! scheduled commands, restarts, SIGKILL right after `accepted`, SIGHUP with a new bandwidth
//! limit mid-transfer, SIGTERM mid-transfer and the resume after it, and the single-instance
//! lock. The real binary runs against a real Apache on loopback; `state.json`, the part
//! files and Apache's access log witness what happened.

use std::fs;
use std::os::unix::net::UnixDatagram;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crate::support::daemon::{
    JOB_TIMEOUT, STOP_TIMEOUT, app_state, idf, limit, publish_large, queue, queued_ids,
    throttled_delivery,
};
use crate::support::device::Device;
use crate::support::lifecycle::{APP, Repo, app_entry, payload_name};
use crate::support::wait_until;
use chrono::{DateTime, SecondsFormat, Utc};
use nix::sys::signal::Signal;
use serde_json::json;

/// The ids of the commands `state.json` keeps queued.
fn persisted_ids(device: &Device) -> Vec<String> {
    device.state_json()["commands"]
        .as_array()
        .map(|c| {
            c.iter()
                .filter_map(|c| c["id"].as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

/// The time stamp (local time, as the daemon logs it on stderr) of the first line containing
/// `needle`, in UTC.
fn logged_at(log: &str, needle: &str) -> DateTime<Utc> {
    use chrono::TimeZone;
    let line = log
        .lines()
        .find(|l| l.contains(needle))
        .unwrap_or_else(|| panic!("no {needle:?} in the log:\n{log}"));
    let stamp = line.get(..23).unwrap_or_default();
    let local = chrono::NaiveDateTime::parse_from_str(stamp, "%Y-%m-%d %H:%M:%S%.3f")
        .unwrap_or_else(|e| panic!("{stamp:?} in {line:?} is not a local time stamp: {e}"));
    chrono::Local
        .from_local_datetime(&local)
        .earliest()
        .unwrap_or_else(|| panic!("{stamp:?} does not exist in the local time zone"))
        .with_timezone(&Utc)
}

#[test]
fn scheduled_update_survives_a_restart_and_runs_at_its_time() {
    let repo = Repo::start();
    let data = repo.add(APP, "1.0", false);
    let device = repo.daemon_device("");
    let mut daemon = device.start();
    let at = Utc::now() + chrono::Duration::seconds(4);
    let at_text = at.to_rfc3339_opts(SecondsFormat::Millis, true);

    daemon.accepted(json!({
        "id": "later", "command": "update", "idf": idf(&[(APP, "1.0")]), "at": at_text,
    }));
    daemon.signal(Signal::SIGTERM);
    daemon.wait_exit(STOP_TIMEOUT).assert_success();
    assert_eq!(
        persisted_ids(&device),
        ["later"],
        "{:#}",
        device.state_json()
    );
    let mut daemon = device.start();

    while Utc::now() < at - chrono::Duration::milliseconds(300) {
        let status = daemon.status();
        assert_eq!(queued_ids(&status), ["later"], "{status:#}");
        assert!(app_entry(&status, APP).is_none(), "ran early: {status:#}");
        assert_eq!(device.current(APP), None, "ran early");
        std::thread::sleep(Duration::from_millis(50));
    }
    let status = daemon.wait_for_app(APP, "installed");

    device.assert_installed(&status, APP, "1.0", &data);
    let started = logged_at(&daemon.stderr(), "Transfer started");
    assert!(
        started >= at && started <= at + chrono::Duration::seconds(10),
        "the update started at {started}, scheduled for {at_text}"
    );
}

#[test]
fn the_command_line_shows_the_queue_and_cancels_with_or_without_the_daemon() {
    let repo = Repo::start();
    repo.add(APP, "1.0", false);
    let device = repo.daemon_device("");
    let mut daemon = device.start();
    let at = (Utc::now() + chrono::Duration::hours(1)).to_rfc3339();
    for id in ["first", "second"] {
        daemon.accepted(
            json!({"id": id, "command": "update", "idf": idf(&[(APP, "1.0")]), "at": at}),
        );
    }
    let cli = |args: &[&str]| device.agent().run(args, JOB_TIMEOUT);
    let text = cli(&["status"]);
    assert!(
        text.stdout.contains("Queue (2 commands):")
            && text
                .stdout
                .lines()
                .any(|l| l.contains("first") && l.contains("waits until")),
        "{}",
        text.stdout
    );
    cli(&["cancel", "first"]).assert_success();
    assert_eq!(queued_ids(&daemon.status()), ["second"]);
    let unknown = cli(&["cancel", "first"]);
    unknown.assert_code(2);
    assert!(
        unknown.stderr.contains("no scheduled command"),
        "{}",
        unknown.stderr
    );
    // Without the daemon: the command waiting in state.json goes too.
    daemon.signal(Signal::SIGTERM);
    daemon.wait_exit(STOP_TIMEOUT).assert_success();
    cli(&["cancel", "second"]).assert_success();
    assert!(
        persisted_ids(&device).is_empty(),
        "{:?}",
        persisted_ids(&device)
    );
}

#[test]
fn cancelled_scheduled_update_never_runs() {
    let repo = Repo::start();
    repo.add(APP, "1.0", false);
    let device = repo.daemon_device("");
    let daemon = device.start();
    let at = Utc::now() + chrono::Duration::seconds(2);
    daemon.accepted(json!({
        "id": "later", "command": "update", "idf": idf(&[(APP, "1.0")]),
        "at": at.to_rfc3339_opts(SecondsFormat::Millis, true),
    }));

    daemon.accepted(json!({"id": "stop-it", "command": "cancel", "target": "later"}));

    assert!(queue(&daemon.status()).is_empty());
    std::thread::sleep(Duration::from_secs(3));
    let status = daemon.status();
    assert!(app_entry(&status, APP).is_none(), "{status:#}");
    assert!(repo.payload_gets(APP, "1.0").is_empty());
    let again = daemon.request(json!({"id": "stop-it-2", "command": "cancel", "target": "later"}));
    assert_eq!(again["result"], "rejected", "{again}");
}

#[test]
fn command_accepted_just_before_sigkill_still_runs_after_restart() {
    let repo = Repo::start();
    let data = repo.add(APP, "1.0", false);
    let device = repo.daemon_device("");
    let mut daemon = device.start();

    daemon.accepted(json!({"id": "u1", "command": "update", "idf": idf(&[(APP, "1.0")])}));
    daemon.kill_hard();

    assert_eq!(
        persisted_ids(&device),
        ["u1"],
        "`accepted` came before the command was persisted: {:#}",
        device.state_json()
    );
    let mut daemon = device.start();
    let status = daemon.wait_for_app(APP, "installed");
    device.assert_installed(&status, APP, "1.0", &data);
}

#[test]
fn sighup_changes_the_limit_mid_transfer() {
    let repo = Repo::start();
    // 3 MiB: about 12 s at 256 KiB/s, under a second at 4 MiB/s.
    let (device, mut daemon, data, started) = throttled_delivery(&repo);

    std::thread::sleep(Duration::from_secs(1));
    let before = daemon.status();
    device.reconfigure(&limit("4MB"));
    daemon.signal(Signal::SIGHUP);
    let changed = started.elapsed();

    let status = daemon.wait_for_app(APP, "marked-for-installation");
    let took = started.elapsed();
    device.assert_staged_bytes(APP, "1.0", &data);
    assert_eq!(
        app_state(&before, APP).as_deref(),
        Some("downloading"),
        "the transfer was not throttled before the change: {before:#}"
    );
    assert!(changed >= Duration::from_millis(800), "{changed:?}");
    assert!(
        took < Duration::from_secs(8),
        "3 MiB took {took:?} with the limit raised to 4MB after {changed:?}; \
         256KB alone would need about 12 s\n--- daemon stderr ---\n{}",
        daemon.stderr()
    );
    assert_eq!(
        status["settings"]["bandwidth_limit_bytes_per_sec"],
        4 * 1024 * 1024,
        "{status:#}"
    );
    assert!(daemon.stderr().contains("SIGHUP"), "{}", daemon.stderr());
}

#[test]
fn sigterm_keeps_the_part_and_next_start_resumes() {
    let repo = Repo::start();
    // 2 MiB: about 8 s at 256 KiB/s.
    let data = publish_large(&repo, APP, "1.0", 2 * 1024 * 1024);
    let device = repo.daemon_device(&limit("256KB"));
    let mut daemon = device.start();
    // `assign` (not `update`): the new start re-queues it through check_on_boot.
    daemon.accepted(json!({"id": "a1", "command": "assign", "idf": idf(&[(APP, "1.0")])}));
    let part = device.part(APP, "1.0", &payload_name(APP));
    let part_len = || fs::metadata(&part).map_or(0, |m| m.len());
    wait_until("the part file to grow past 256 KiB", JOB_TIMEOUT, || {
        part_len() >= 256 * 1024
    });

    let stopping = Instant::now();
    daemon.signal(Signal::SIGTERM);
    let out = daemon.wait_exit(STOP_TIMEOUT);
    let stopped = stopping.elapsed();

    out.assert_success();
    let kept = part_len();
    assert!(
        kept >= 256 * 1024 && kept < data.len() as u64,
        "{} holds {kept} bytes after SIGTERM ({stopped:?})",
        part.display()
    );
    let mut daemon = device.start();
    daemon.wait_for_app(APP, "marked-for-installation");
    device.assert_staged_bytes(APP, "1.0", &data);
    assert!(!part.exists(), "{} left behind", part.display());
    std::thread::sleep(Duration::from_millis(500));
    let gets = repo.payload_gets(APP, "1.0");
    let resumed = gets
        .iter()
        .find(|g| g.range.is_some())
        .unwrap_or_else(|| panic!("no Range request after the restart: {gets:#?}"));
    assert_eq!(resumed.status, 206, "{gets:#?}");
    let offset: u64 = resumed
        .range
        .as_deref()
        .and_then(|r| r.strip_prefix("bytes="))
        .and_then(|r| r.split('-').next())
        .and_then(|o| o.parse().ok())
        .unwrap_or_else(|| panic!("unexpected Range: {resumed:?}"));
    assert!(
        offset > 0 && offset <= kept,
        "resumed at {offset}, {kept} were kept"
    );
}

#[test]
fn settings_command_overrides_the_file_and_survives_a_restart() {
    let repo = Repo::start();
    let device = repo.daemon_device(&limit("4MB"));
    let mut daemon = device.start();

    daemon.accepted(json!({
        "id": "s1", "command": "settings", "values": {"update.bandwidth_limit": "512KB"},
    }));

    let limit_now = |daemon: &crate::support::daemon::Daemon| {
        daemon.status()["settings"]["bandwidth_limit_bytes_per_sec"].clone()
    };
    assert_eq!(limit_now(&daemon), 512 * 1024);
    daemon.signal(Signal::SIGHUP);
    daemon.wait_for_log("SIGHUP: configuration reloaded", JOB_TIMEOUT);
    assert_eq!(
        limit_now(&daemon),
        512 * 1024,
        "the file won over the setting"
    );
    daemon.signal(Signal::SIGTERM);
    daemon.wait_exit(STOP_TIMEOUT).assert_success();
    let daemon = device.start();
    assert_eq!(
        limit_now(&daemon),
        512 * 1024,
        "the setting was not persisted"
    );
}

#[test]
fn second_daemon_on_the_same_state_dir_exits_3() {
    let repo = Repo::start();
    let device = repo.daemon_device("");
    let mut first = device.start();

    let second = device.agent().run(&["run"], Duration::from_secs(30));

    second.assert_code(3);
    let pid = first.pid();
    assert!(
        second
            .stderr
            .contains(&format!("the daemon (pid {pid}) holds")),
        "{}",
        second.stderr
    );
    assert!(first.is_running());
    let status = first.status();
    assert!(status["apps"].is_array(), "{status:#}");
}

/// A daemon that answers on its socket (or told systemd `READY=1`) may get `systemctl reload`
/// or `stop` at once; those signals must be handled, not kill it. A notify socket whose queue
/// is full (systemd busy for a moment) holds the daemon right at `READY=1`, which makes the
/// moment between "answers" and "handles signals" long enough to hit every time.
#[test]
fn signals_right_after_the_daemon_answers_are_handled() {
    let repo = Repo::start();
    let device = repo.daemon_device("");
    let notify_path = device.root().join("notify.sock");
    let notify = UnixDatagram::bind(&notify_path).expect("cannot bind the notify socket");
    let filler = UnixDatagram::unbound().expect("cannot create a datagram socket");
    filler.set_nonblocking(true).expect("nonblocking");
    while filler.send_to(b"X=1\n", &notify_path).is_ok() {}

    let mut daemon =
        device.start_with_env(&[("NOTIFY_SOCKET", notify_path.to_str().expect("UTF-8"))]);
    daemon.signal(Signal::SIGHUP);
    std::thread::sleep(Duration::from_millis(500));
    let alive = daemon.is_running();
    // systemd reads its messages again.
    let stop = Arc::new(AtomicBool::new(false));
    let drain = {
        let stop = stop.clone();
        notify
            .set_read_timeout(Some(Duration::from_millis(100)))
            .expect("read timeout");
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while !stop.load(Ordering::Relaxed) {
                let _ = notify.recv(&mut buf);
            }
        })
    };

    assert!(alive, "SIGHUP killed the daemon:\n{}", daemon.stderr());
    daemon.wait_for_log("SIGHUP: configuration reloaded", JOB_TIMEOUT);
    daemon.signal(Signal::SIGTERM);
    daemon.wait_exit(STOP_TIMEOUT).assert_success();
    stop.store(true, Ordering::Relaxed);
    drain.join().expect("the drain thread panicked");
}
