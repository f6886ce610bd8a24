//! Whole-process tests of the daemon's commands (DESIGN 7, 8): `run` on a temporary config,
//! state directory and control socket, driven through the socket with JSON lines against a
//! real Apache repository. `status` replies, `state.json`, the `current` links, the notify
//! program's own log and Apache's access log witness what happened.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use crate::support::daemon::{
    JOB_TIMEOUT, app_state, exchange, idf, limit, publish_large, queue, queued_ids,
};
use crate::support::device::Device;
use crate::support::device::path_str;
use crate::support::lifecycle::{APP, Repo, Scripts, app_entry};
use serde_json::json;

/// Apache logs a request after answering it: time for a late line to show up.
const LOG_SETTLE: Duration = Duration::from_millis(500);

#[test]
fn update_command_activates_staged_apps() {
    let repo = Repo::start();
    let data = repo.add(APP, "1.0", false);
    let device = repo.daemon_device("activate_after_installation = false\n");
    let mut daemon = device.start();

    daemon.accepted(json!({"id": "d1", "command": "delivery", "idf": idf(&[(APP, "1.0")])}));
    daemon.wait_for_app(APP, "downloaded");
    assert_eq!(device.current(APP), None, "the delivery activated it");

    daemon.accepted(json!({"id": "u1", "command": "update", "idf": idf(&[(APP, "1.0")])}));

    let status = daemon.wait_for_app(APP, "installed");
    device.assert_installed(&status, APP, "1.0", &data);
    assert_eq!(status["update_status"], "Update successful", "{status:#}");
    std::thread::sleep(LOG_SETTLE);
    assert_eq!(
        repo.payload_gets(APP, "1.0").len(),
        1,
        "the Update command must activate the staged version, not fetch it again"
    );
}

#[test]
fn delivery_command_never_activates() {
    let repo = Repo::start();
    let data = repo.add(APP, "1.0", false);
    let device = repo.daemon_device("");
    let mut daemon = device.start();

    daemon.accepted(json!({"id": "d1", "command": "delivery", "idf": idf(&[(APP, "1.0")])}));

    let status = daemon.wait_for_app(APP, "marked-for-installation");
    let entry = app_entry(&status, APP).expect("listed");
    assert_eq!(entry["active"], false, "{status:#}");
    device.assert_staged_bytes(APP, "1.0", &data);
    // Give a wrongly queued activation its chance to show up.
    std::thread::sleep(Duration::from_secs(1));
    let status = daemon.status();
    assert_eq!(
        app_state(&status, APP).as_deref(),
        Some("marked-for-installation"),
        "{status:#}"
    );
    assert_eq!(device.current(APP), None, "the delivery activated it");
    assert!(queue(&status).is_empty(), "{status:#}");
}

/// DESIGN 7: the Update command "transfers what is missing, then activates all staged
/// versions now". The UMS sends the IDF with the delivery and a bare Update command later;
/// the delivered version must not be thrown away.
#[test]
fn update_without_an_idf_after_a_delivery_activates_the_delivered_version() {
    let repo = Repo::start();
    let data = repo.add(APP, "1.0", false);
    let device = repo.daemon_device("activate_after_installation = false\n");
    let mut daemon = device.start();
    daemon.accepted(json!({"id": "d1", "command": "delivery", "idf": idf(&[(APP, "1.0")])}));
    daemon.wait_for_app(APP, "downloaded");

    daemon.accepted(json!({"id": "u1", "command": "update"}));

    let status = daemon.wait_for("the update to end", JOB_TIMEOUT, |s| queue(s).is_empty());
    assert!(
        app_entry(&status, APP).is_some(),
        "the update removed the delivered app instead of activating it: {status:#}\n\
         --- daemon stderr ---\n{}",
        daemon.stderr()
    );
    device.assert_installed(&status, APP, "1.0", &data);
}

#[test]
fn same_id_twice_runs_once() {
    let repo = Repo::start();
    let data = repo.add(APP, "1.0", false);
    let device = repo.daemon_device("");
    let mut daemon = device.start();
    let request = json!({"id": "same", "command": "update", "idf": idf(&[(APP, "1.0")])});

    daemon.accepted(request.clone());
    daemon.accepted(request.clone());
    let status = daemon.wait_for_app(APP, "installed");
    device.assert_installed(&status, APP, "1.0", &data);
    std::thread::sleep(LOG_SETTLE);
    let seen = repo.apache.access_log();
    // Once more after it finished: still the same command.
    daemon.accepted(request);
    std::thread::sleep(Duration::from_secs(2));

    assert_eq!(repo.payload_gets(APP, "1.0").len(), 1, "{seen:#?}");
    assert_eq!(
        repo.apache.access_log(),
        seen,
        "a command sent again after it finished ran again"
    );
    let log = daemon.stderr();
    assert_eq!(
        log.matches("command same: finished").count(),
        1,
        "the command must run exactly once:\n{log}"
    );
    assert!(queue(&daemon.status()).is_empty());
}

/// A notify command that appends one line per call to `<name>.log` (call number, time,
/// `UPDATE_*`) and exits with the `n`-th code of `codes` (the last one from then on).
fn counting_notify(scripts: &Scripts, name: &str, codes: &[i32]) -> String {
    let log = scripts.log(name);
    let counter = scripts.path(&format!("{name}.count"));
    let mut body = format!(
        "n=$(( $(cat '{counter}' 2>/dev/null || echo 0) + 1 ))\n\
         echo \"$n\" > '{counter}'\n\
         printf 'N=%s\\tAT=%s\\tUPDATE_MESSAGE=%s\\tUPDATE_TIMEOUT=%s\\tUPDATE_CAN_CANCEL=%s\\n' \
         \"$n\" \"$(date +%s.%N)\" \"$UPDATE_MESSAGE\" \"$UPDATE_TIMEOUT\" \"$UPDATE_CAN_CANCEL\" \
         >> '{log}'\n",
        counter = counter.display(),
        log = log.display()
    );
    let (last, first) = codes.split_last().expect("at least one exit code");
    for (i, code) in first.iter().enumerate() {
        body.push_str(&format!("[ \"$n\" -eq {} ] && exit {code}\n", i + 1));
    }
    body.push_str(&format!("exit {last}\n"));
    path_str(&scripts.write(name, &body))
}

/// `[update]` lines for the notify command and the deferral settings.
fn notify_config(notify: &str, max_deferrals: u32) -> String {
    format!(
        "notify_command = [{notify:?}]\nreminder_interval = \"1s\"\nmax_deferrals = {max_deferrals}\n"
    )
}

/// An update that asks the user (5 s to answer) and lets them postpone it.
fn asking_update(id: &str) -> serde_json::Value {
    json!({
        "id": id, "command": "update", "idf": idf(&[(APP, "1.0")]),
        "inform_user": {"timeout_s": 5}, "user_can_cancel": true,
    })
}

/// Waits until `id` ran to its end and returns the final status, every `update_status` seen
/// on the way and the most deferrals the queue showed.
fn follow_deferrals(
    daemon: &mut crate::support::daemon::Daemon,
    id: &str,
) -> (serde_json::Value, Vec<String>, u64) {
    let mut seen: Vec<String> = Vec::new();
    let mut deferrals = 0;
    let status = daemon.wait_for(&format!("{id} to end"), JOB_TIMEOUT, |s| {
        if let Some(text) = s["update_status"].as_str()
            && seen.last().map(String::as_str) != Some(text)
        {
            seen.push(text.to_string());
        }
        for c in queue(s) {
            deferrals = deferrals.max(c["deferrals"].as_u64().unwrap_or(0));
        }
        !queued_ids(s).iter().any(|q| q == id)
    });
    (status, seen, deferrals)
}

#[test]
fn notify_program_that_defers_twice_then_accepts() {
    let repo = Repo::start();
    let data = repo.add(APP, "1.0", false);
    let scripts = Scripts::new();
    let notify = counting_notify(&scripts, "notify", &[10, 10, 0]);
    let device = repo.daemon_device(&notify_config(&notify, 3));
    let mut daemon = device.start();

    daemon.accepted(asking_update("ask"));

    let (status, seen, deferrals) = follow_deferrals(&mut daemon, "ask");
    device.assert_installed(&status, APP, "1.0", &data);
    assert_eq!(status["update_status"], "Update successful", "{status:#}");
    assert!(
        seen.iter().any(|s| s == "Update deferred"),
        "the status never said `Update deferred`: {seen:#?}"
    );
    assert_eq!(deferrals, 2, "deferrals the queue showed");
    let calls = scripts.calls("notify");
    assert_eq!(calls.len(), 3, "asked {calls:#?}");
    for call in &calls {
        assert_eq!(call["UPDATE_CAN_CANCEL"], "1", "{calls:#?}");
        assert_eq!(call["UPDATE_TIMEOUT"], "5", "{calls:#?}");
        assert!(call["UPDATE_MESSAGE"].contains(APP), "{calls:#?}");
    }
    let times: Vec<f64> = calls.iter().map(|c| c["AT"].parse().expect("AT")).collect();
    for pair in times.windows(2) {
        assert!(
            pair[1] - pair[0] >= 0.9,
            "asked again before reminder_interval (1s): {times:?}"
        );
    }
    assert!(daemon.stderr().contains("Update deferred"));
    assert_eq!(
        repo.payload_gets(APP, "1.0").len(),
        1,
        "a deferral must not transfer the app again"
    );
}

#[test]
fn max_deferrals_reached_proceeds_without_cancel_choice() {
    let repo = Repo::start();
    let data = repo.add(APP, "1.0", false);
    let scripts = Scripts::new();
    let notify = counting_notify(&scripts, "notify", &[10]);
    let device = repo.daemon_device(&notify_config(&notify, 2));
    let mut daemon = device.start();

    daemon.accepted(asking_update("ask"));

    let (status, seen, _) = follow_deferrals(&mut daemon, "ask");
    device.assert_installed(&status, APP, "1.0", &data);
    assert!(seen.iter().any(|s| s == "Update deferred"), "{seen:#?}");
    let can_cancel: Vec<String> = scripts
        .calls("notify")
        .iter()
        .map(|c| c["UPDATE_CAN_CANCEL"].clone())
        .collect();
    assert_eq!(
        can_cancel,
        ["1", "1", "0"],
        "two deferrals allowed, then the user is only informed"
    );
}

/// Set in the copy of this test binary that plays the client of another user.
const PEER_SOCKET_ENV: &str = "IGEL_UPDATE_AGENT_TEST_PEER_SOCKET";
const PEER_REPLY: &str = "peer-reply: ";

/// What the other user's client sends: two commands that change something, then `status`.
fn peer_requests() -> Vec<serde_json::Value> {
    vec![
        json!({"id": "peer-update", "command": "update", "idf": idf(&[(APP, "1.0")])}),
        json!({"id": "peer-settings", "command": "settings",
               "values": {"update.bandwidth_limit": "1KB"}}),
        json!({"id": "peer-status", "command": "status"}),
    ]
}

/// The client side: one line per reply on stdout.
fn peer_client(socket: &Path) {
    for request in peer_requests() {
        let reply = exchange(socket, request.to_string().as_bytes())
            .unwrap_or_else(|e| json!({"client_error": e.to_string()}));
        println!("{PEER_REPLY}{reply}");
    }
}

#[test]
fn peer_of_another_uid_cannot_update_but_can_read_status() {
    if let Some(socket) = std::env::var_os(PEER_SOCKET_ENV) {
        // This process is the copy started below as another user.
        peer_client(Path::new(&socket));
        return;
    }
    let repo = Repo::start();
    repo.add(APP, "1.0", false);
    let device = repo.daemon_device("");
    let mut daemon = device.start();
    let before = device.state_json();

    let replies = if running_as_root() {
        replies_from_nobody(&device)
    } else {
        // Without root there is no other uid to become: the same user is the daemon's own
        // and may change state (SO_PEERCRED uid == daemon uid).
        let replies: Vec<_> = peer_requests()
            .iter()
            .map(|r| daemon.request(r.clone()))
            .collect();
        for reply in &replies {
            assert_eq!(reply["result"], "accepted", "{replies:#?}");
        }
        daemon.wait_for_app(APP, "installed");
        return;
    };

    let [update, settings, status] = &replies[..] else {
        panic!("expected three replies: {replies:#?}");
    };
    for (reply, id) in [(update, "peer-update"), (settings, "peer-settings")] {
        assert_eq!(reply["result"], "rejected", "{replies:#?}");
        assert_eq!(reply["id"], id, "{replies:#?}");
        assert!(
            reply["error"]
                .as_str()
                .is_some_and(|e| e.contains("permission denied")),
            "{replies:#?}"
        );
    }
    assert_eq!(status["result"], "accepted", "{replies:#?}");
    assert!(status["status"]["apps"].is_array(), "{replies:#?}");
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(
        device.state_json(),
        before,
        "a rejected peer changed the state"
    );
    let after = daemon.status();
    assert!(queue(&after).is_empty(), "{after:#}");
    assert_eq!(
        after["settings"]["bandwidth_limit_bytes_per_sec"],
        serde_json::Value::Null
    );
    assert!(daemon.is_running());
}

/// Runs this test binary again as `nobody` (with `setpriv` from util-linux) as the client and
/// returns the replies it printed.
fn replies_from_nobody(device: &Device) -> Vec<serde_json::Value> {
    let setpriv = ["--reuid=nobody", "--regid=nogroup", "--clear-groups"];
    let probe = std::process::Command::new("setpriv")
        .arg("--version")
        .output();
    assert!(
        probe.is_ok_and(|o| o.status.success()),
        "setpriv (util-linux) is needed to run a client as another user: \
         apt-get install util-linux"
    );
    // The daemon creates its socket with mode 0660 (root's group only), by design. For
    // `nobody` to reach the daemon at all, the test opens the socket and its directories:
    // what is under test is the daemon's SO_PEERCRED check, not the file mode.
    for dir in [device.root(), device.socket().parent().expect("socket dir")] {
        chmod(dir, 0o711);
    }
    chmod(device.socket(), 0o666);
    let exe = std::env::current_exe().expect("the test binary's path");
    let readable = std::process::Command::new("setpriv")
        .args(setpriv)
        .arg("test")
        .arg("-x")
        .arg(&exe)
        .status()
        .is_ok_and(|s| s.success());
    let copy = crate::support::temp_dir("peer-exe");
    let exe = if readable {
        exe
    } else {
        chmod(copy.path(), 0o755);
        let to = copy.path().join("peer");
        std::fs::copy(&exe, &to).expect("cannot copy the test binary");
        chmod(&to, 0o755);
        to
    };
    // The test's name as the harness knows it: its module path without the crate's name.
    let (_, module) = module_path!()
        .split_once("::")
        .expect("a test module is below the crate root");
    let name = format!("{module}::peer_of_another_uid_cannot_update_but_can_read_status");
    let mut cmd = std::process::Command::new("setpriv");
    cmd.args(setpriv)
        .arg(&exe)
        .args(["--exact", &name, "--nocapture", "--test-threads=1"])
        .env(PEER_SOCKET_ENV, device.socket());
    let out = crate::support::run_with_timeout(cmd, Duration::from_secs(60));
    out.assert_success();
    out.stdout
        .lines()
        // With --nocapture the harness may put its own words before ours on a line.
        .filter_map(|l| l.split_once(PEER_REPLY).map(|(_, reply)| reply))
        .map(|l| serde_json::from_str(l).expect("the peer prints JSON replies"))
        .collect()
}

fn chmod(path: &Path, mode: u32) {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .unwrap_or_else(|e| panic!("cannot chmod {}: {e}", path.display()));
}

#[test]
fn two_hundred_concurrent_status_requests_during_a_transfer_are_all_answered() {
    const CLIENTS: usize = 200;
    let repo = Repo::start();
    // 3 MiB at 256 KiB/s: about 12 s of transfer to ask during.
    let data = publish_large(&repo, APP, "1.0", 3 * 1024 * 1024);
    let device = repo.daemon_device(&limit("256KB"));
    let mut daemon = device.start();
    daemon.accepted(json!({"id": "d1", "command": "delivery", "idf": idf(&[(APP, "1.0")])}));
    daemon.wait_for("the transfer to be under way", JOB_TIMEOUT, |s| {
        app_state(s, APP).as_deref() == Some("downloading")
    });

    let barrier = Arc::new(Barrier::new(CLIENTS));
    let started = Instant::now();
    let clients: Vec<_> = (0..CLIENTS)
        .map(|i| {
            let barrier = barrier.clone();
            let socket = device.socket().to_path_buf();
            std::thread::spawn(move || {
                let request = json!({"id": format!("many-{i}"), "command": "status"});
                barrier.wait();
                // At most 64 connections at once: a client told `busy` asks again, as the
                // agent's own client does.
                loop {
                    let reply = exchange(&socket, request.to_string().as_bytes());
                    match &reply {
                        Ok(r) if r["error"].as_str().is_some_and(|e| e.starts_with("busy:")) => {
                            std::thread::sleep(Duration::from_millis(20));
                        }
                        _ => return reply,
                    }
                }
            })
        })
        .collect();
    let replies: Vec<_> = clients
        .into_iter()
        .map(|c| c.join().expect("a client thread panicked"))
        .collect();
    let took = started.elapsed();
    let during = daemon.status();

    for (i, reply) in replies.into_iter().enumerate() {
        let reply = reply.unwrap_or_else(|e| panic!("client {i} got no reply: {e}"));
        assert_eq!(reply["result"], "accepted", "client {i}: {reply}");
        assert_eq!(reply["id"], format!("many-{i}"), "client {i}: {reply}");
        assert!(reply["status"]["apps"].is_array(), "client {i}: {reply}");
        assert!(
            reply["status"]["commands"].is_array(),
            "client {i}: {reply}"
        );
    }
    assert_eq!(
        app_state(&during, APP).as_deref(),
        Some("downloading"),
        "the answers ({took:?}) did not come during the transfer: {during:#}"
    );
    daemon.wait_for_app(APP, "marked-for-installation");
    device.assert_staged_bytes(APP, "1.0", &data);
}

#[test]
fn bad_input_is_rejected_with_a_reason_and_changes_nothing() {
    let repo = Repo::start();
    repo.add(APP, "1.0", false);
    let device = repo.daemon_device("");
    let mut daemon = device.start();
    // Something in every part of the state: an app, a finished and a waiting command.
    daemon.accepted(json!({"id": "d1", "command": "delivery", "idf": idf(&[(APP, "1.0")])}));
    daemon.wait_for_app(APP, "marked-for-installation");
    let later = (chrono::Utc::now() + chrono::Duration::hours(1)).to_rfc3339();
    daemon.accepted(json!({"id": "later", "command": "update", "at": later}));
    let before = device.state_json();
    assert_eq!(queued_ids(&daemon.status()), ["later"]);

    let oversized = format!(
        r#"{{"id":"big","command":"status","pad":"{}"}}"#,
        "x".repeat(1024 * 1024 + 100)
    );
    let cases: Vec<(String, &str)> = [
        ("{not json", "not JSON"),
        ("", "not JSON"),
        ("[1, 2]", "JSON object"),
        (r#"{"command":"status"}"#, "`id`"),
        (r#"{"id":7,"command":"status"}"#, "`id`"),
        (r#"{"id":"b1"}"#, "`command`"),
        (r#"{"id":"b2","command":"reboot-now"}"#, "unknown command"),
        (
            r#"{"id":"b3","command":"update","at":"2001-01-01T00:00:00Z"}"#,
            "in the past",
        ),
        (r#"{"id":"b4","command":"update","at":"next tuesday"}"#, "update"),
        (r#"{"id":"b5","command":"update","force":"yes"}"#, "boolean"),
        (r#"{"id":"b6","command":"update","bogus":1}"#, "bogus"),
        (r#"{"id":"b7","command":"cancel","target":"nobody-knows"}"#, "nobody-knows"),
        (r#"{"id":"b8","command":"cancel"}"#, "target"),
        (
            r#"{"id":"b9","command":"settings","values":{"update.nonsense":"1"}}"#,
            "update.nonsense",
        ),
        (
            r#"{"id":"b10","command":"settings","values":{"system.foo":"1"}}"#,
            "system.foo",
        ),
        (
            r#"{"id":"b11","command":"settings","values":{"update.bandwidth_limit_enabled":"maybe"}}"#,
            "bandwidth_limit_enabled",
        ),
        (
            r#"{"id":"b12","command":"settings","values":{"update.max_deferrals":"many"}}"#,
            "max_deferrals",
        ),
        (
            r#"{"id":"b13","command":"settings","values":{"update.bandwidth_limit":{"MB":1}}}"#,
            "bandwidth_limit",
        ),
        (r#"{"id":"b14","command":"settings","values":"x"}"#, "settings"),
        (
            r#"{"id":"b15","command":"assign","idf":{"apps":[{"name":"../etc","version":"1"}]}}"#,
            "name",
        ),
        (oversized.as_str(), "over the limit"),
    ]
    .into_iter()
    .map(|(line, needle)| (line.to_string(), needle))
    .collect();

    for (line, needle) in &cases {
        let reply = daemon.send(line.as_bytes());
        let shown: String = line.chars().take(120).collect();
        assert_eq!(reply["result"], "rejected", "{shown}: {reply}");
        let error = reply["error"].as_str().unwrap_or_default();
        assert!(error.contains(needle), "{shown}: {needle:?} not in {reply}");
    }

    assert!(daemon.is_running());
    let status = daemon.status();
    assert_eq!(queued_ids(&status), ["later"], "{status:#}");
    assert_eq!(
        device.state_json(),
        before,
        "a rejected request changed state.json"
    );
}

/// The `settings` command names its keys; a value must not be able to set another one.
#[test]
fn settings_value_with_a_line_break_cannot_set_another_key() {
    let repo = Repo::start();
    let device = repo.daemon_device("");
    let daemon = device.start();
    let before = device.state_json();

    let reply = daemon.request(json!({
        "id": "smuggle", "command": "settings",
        "values": {"update.bandwidth_limit": "1MB\nupdate.activate_after_installation=false"},
    }));

    let status = daemon.status();
    assert_eq!(
        status["settings"]["activate_after_installation"], true,
        "a value set a key the command did not name (reply {reply}): {status:#}"
    );
    assert_eq!(reply["result"], "rejected", "{reply}");
    assert_eq!(device.state_json(), before);
}

#[test]
fn cli_update_and_status_go_to_the_running_daemon() {
    let repo = Repo::start();
    let data = repo.add(APP, "1.0", false);
    let device = repo.daemon_device("");
    let daemon = device.start();
    let idf_file = device.root().join("idf.json");
    std::fs::write(&idf_file, idf(&[(APP, "1.0")]).to_string()).expect("cannot write the IDF");

    // In this process the update could not even take the lock the daemon holds (exit 3).
    let out = device.agent().run(
        &["update", "--idf", &path_str(&idf_file), "--wait"],
        JOB_TIMEOUT,
    );

    out.assert_success();
    assert!(
        out.stderr.contains("accepted by the daemon"),
        "{}",
        out.stderr
    );
    assert!(out.stderr.contains("Update successful"), "{}", out.stderr);
    assert!(
        daemon.stderr().contains("update accepted"),
        "{}",
        daemon.stderr()
    );
    device.assert_installed(&daemon.status(), APP, "1.0", &data);
    let status = device
        .agent()
        .run(&["status", "--json"], JOB_TIMEOUT)
        .assert_success()
        .json();
    assert!(
        status["commands"].is_array(),
        "`status --json` did not come from the daemon: {status:#}"
    );
}

fn running_as_root() -> bool {
    nix::unistd::geteuid().is_root()
}

/// Which daemon a command goes to is never a surprise (issue 11.3), and `status` answers even
/// when the configuration cannot be read whole (issue 11.2).
#[test]
fn commands_name_the_daemon_and_never_act_on_another_state_directory() {
    let repo = Repo::start();
    repo.add(APP, "1.0", false);
    let device = repo.daemon_device("");
    let mut daemon = device.start();
    daemon.accepted(json!({"id": "u1", "command": "update", "idf": idf(&[(APP, "1.0")])}));
    daemon.wait_for_app(APP, "installed");
    let other_state = device.root().join("state2");
    let other = crate::support::Agent::new(device.agent().config(), &other_state);
    let idf_file = device.root().join("idf.json");
    std::fs::write(&idf_file, idf(&[(APP, "1.0")]).to_string()).unwrap();
    let out = other.run(
        &["update", "--idf", idf_file.to_str().unwrap()],
        JOB_TIMEOUT,
    );
    out.assert_code(2);
    assert!(
        out.stderr.contains("manages") && out.stderr.contains("state2"),
        "{}",
        out.stderr
    );
    assert!(!other_state.join("state.json").exists());
    let status = other.run(&["status", "--json"], JOB_TIMEOUT);
    status.assert_success();
    assert_eq!(status.json()["apps"], json!([]), "{}", status.stdout);
    assert!(status.stderr.contains("manages"), "{}", status.stderr);
    // The right state directory goes to the daemon, and says so.
    let ok = device.agent().run(
        &["update", "--idf", idf_file.to_str().unwrap()],
        JOB_TIMEOUT,
    );
    ok.assert_success();
    assert!(
        ok.stderr.contains("accepted by the daemon on"),
        "{}",
        ok.stderr
    );

    // A typo the daemon survived (it keeps its configuration until a good SIGHUP): status
    // still shows what the daemon does.
    let config = std::fs::read_to_string(device.agent().config()).unwrap();
    std::fs::write(
        device.agent().config(),
        config.replace("[update]\n", "[update]\nsplay = \"forever\"\n"),
    )
    .unwrap();
    let status = device.agent().run(&["status", "--json"], JOB_TIMEOUT);
    status.assert_success();
    assert!(status.stderr.contains("update.splay"), "{}", status.stderr);
    assert_eq!(
        status.json()["apps"][0]["state"],
        "installed",
        "{}",
        status.stdout
    );
}

/// The IDF file for `APP` 1.0 in the device's directory.
fn idf_file(device: &Device) -> String {
    let path = device.root().join("idf.json");
    std::fs::write(&path, idf(&[(APP, "1.0")]).to_string()).expect("cannot write the IDF");
    path_str(&path)
}

/// `status --json` run as a command (from the daemon when it runs, else from state.json).
fn cli_status(device: &Device) -> serde_json::Value {
    device
        .agent()
        .run(&["status", "--json"], JOB_TIMEOUT)
        .assert_success()
        .json()
}

/// Issue 11.5: a finished delivery has an outcome of its own; nothing says it still runs.
#[test]
fn a_delivery_ends_with_its_own_outcome_through_the_daemon() {
    let repo = Repo::start();
    repo.add(APP, "1.0", false);
    let device = repo.daemon_device("");
    let _daemon = device.start();
    let idf_path = idf_file(&device);

    let out = device
        .agent()
        .run(&["delivery", "--idf", &idf_path, "--wait"], JOB_TIMEOUT);

    out.assert_success();
    assert!(out.stderr.contains("Delivery successful"), "{}", out.stderr);
    assert!(!out.stderr.contains("in progress"), "{}", out.stderr);
    assert_eq!(cli_status(&device)["update_status"], "Delivery successful");

    // An app no repository has: the delivery fails, and says so with its exit code.
    let missing = device.root().join("missing.json");
    std::fs::write(&missing, idf(&[("nosuchapp", "1.0")]).to_string()).expect("cannot write");
    let out = device.agent().run(
        &["delivery", "--idf", &path_str(&missing), "--wait"],
        JOB_TIMEOUT,
    );
    out.assert_code(1);
    assert!(
        out.stderr.contains("Delivery failed: nosuchapp"),
        "{}",
        out.stderr
    );
}

/// Issue 11.5: a daemon stopped during a transfer leaves a journal that says so, and the
/// command runs again (and completes) at its next start.
#[test]
fn a_daemon_stopped_mid_transfer_records_the_interruption_and_resumes_at_start() {
    let repo = Repo::start();
    let (device, mut daemon, data, _) = crate::support::daemon::throttled_delivery(&repo);
    daemon.signal(nix::sys::signal::Signal::SIGTERM);
    daemon.wait_exit(JOB_TIMEOUT);

    let status = cli_status(&device);
    let text = status["update_status"].as_str().unwrap_or_default();
    assert!(
        text.starts_with("Delivery failed: interrupted: the daemon stopped"),
        "{status:#}"
    );
    let entry = app_entry(&status, APP).expect("listed");
    assert_eq!(entry["state"], "download-failed", "{status:#}");

    device.reconfigure("");
    let mut daemon = device.start();
    let status = daemon.wait_for("the delivery to run again", JOB_TIMEOUT, |s| {
        s["update_status"] == "Delivery successful"
    });
    assert_eq!(
        app_state(&status, APP).as_deref(),
        Some("marked-for-installation"),
        "{status:#}"
    );
    device.assert_staged_bytes(APP, "1.0", &data);
    assert!(daemon.is_running());
}

/// A delivery in this process (no daemon) under a 256KB limit, well into its transfer.
fn slow_delivery_here(repo: &Repo) -> (Device, crate::support::RunningAgent, Vec<u8>) {
    let data = publish_large(repo, APP, "1.0", 3 * 1024 * 1024);
    let device = repo.daemon_device(&limit("256KB"));
    let idf = idf_file(&device);
    let mut running = device.agent().spawn(&["delivery", "--idf", &idf]);
    running.wait_for_stderr("Transfer started", JOB_TIMEOUT);
    std::thread::sleep(Duration::from_millis(800));
    (device, running, data)
}

/// Issue 11.5: Ctrl-C of a delivery in this process records what happened (not
/// `downloading` and `Transfer started` until the next run), keeps the partial file and exits
/// 130; the next run resumes and completes.
#[test]
fn ctrl_c_of_a_delivery_here_records_the_interruption() {
    let repo = Repo::start();
    let (device, mut running, data) = slow_delivery_here(&repo);
    let pid = nix::unistd::Pid::from_raw(i32::try_from(running.pid()).expect("pid"));
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGINT).expect("cannot send SIGINT");

    let out = running.wait(JOB_TIMEOUT);
    out.assert_code(130);
    assert!(
        out.stderr
            .contains("Delivery failed: interrupted by SIGINT"),
        "{}",
        out.stderr
    );
    let status = cli_status(&device);
    let entry = app_entry(&status, APP).expect("listed");
    assert_eq!(entry["state"], "download-failed", "{status:#}");
    let error = entry["error"].as_str().unwrap_or_default();
    assert!(error.starts_with("interrupted by SIGINT"), "{status:#}");
    let part = device.part(APP, "1.0", &crate::support::lifecycle::payload_name(APP));
    let kept = std::fs::metadata(&part).map(|m| m.len()).unwrap_or(0);
    assert!(kept > 0, "no partial download kept at {}", part.display());

    device.reconfigure("");
    let idf = idf_file(&device);
    device
        .agent()
        .run(&["delivery", "--idf", &idf], JOB_TIMEOUT)
        .assert_success();
    device.assert_staged_bytes(APP, "1.0", &data);
    assert_eq!(cli_status(&device)["update_status"], "Delivery successful");
}

/// Issue 11.5: after a kill nothing can record, `status` does not claim a transfer that no
/// process runs: it shows what the next start records.
#[test]
fn status_after_a_killed_delivery_says_it_was_interrupted() {
    let repo = Repo::start();
    let (device, mut running, _data) = slow_delivery_here(&repo);
    running.kill_hard();

    let status = cli_status(&device);
    let text = status["update_status"].as_str().unwrap_or_default();
    assert!(
        text.starts_with("Delivery failed: interrupted: the agent stopped"),
        "{status:#}"
    );
    let entry = app_entry(&status, APP).expect("listed");
    assert_eq!(entry["state"], "download-failed", "{status:#}");
    let plain = device
        .agent()
        .run(&["status"], JOB_TIMEOUT)
        .assert_success()
        .stdout
        .clone();
    assert!(!plain.contains("in progress"), "{plain}");
}

/// Issue 11.7: `status --watch` on a narrow terminal: every line fits (nothing wraps), each
/// redraw covers the last one (one drawing on the screen, no fragments), and the rate shows
/// only while the app transfers.
#[test]
fn status_watch_fits_a_narrow_terminal_and_leaves_no_fragments() {
    let repo = Repo::start();
    let (device, _daemon, _data, _) = crate::support::daemon::throttled_delivery(&repo);
    const COLS: usize = 50;

    let watch = device.agent().command(&["status", "--watch"]);
    let bytes = crate::support::term::run_in_terminal(&watch, COLS, Duration::from_secs(4));

    let screen = crate::support::term::Screen::replay(&bytes, COLS);
    assert_eq!(
        screen.wrapped,
        0,
        "a line wrapped:\n{}",
        screen.lines.join("\n")
    );
    let drawings = screen
        .lines
        .iter()
        .filter(|l| l.starts_with("Update status:"))
        .count();
    assert_eq!(
        drawings,
        1,
        "fragments of earlier drawings:\n{}",
        screen.lines.join("\n")
    );
    let app = screen
        .lines
        .iter()
        .find(|l| l.starts_with(APP))
        .unwrap_or_else(|| panic!("no line for {APP}:\n{}", screen.lines.join("\n")));
    assert!(app.contains('%'), "{app}");

    // Into a pipe or a file: plain lines, no cursor movements or erasures.
    let mut piped = device.agent().spawn(&["status", "--watch"]);
    std::thread::sleep(Duration::from_secs(2));
    piped.kill_hard();
    let text = piped.stdout();
    assert!(text.contains("Update status:"), "{text}");
    assert!(!text.contains('\x1b'), "{text:?}");
}

/// Issue 11.7: the progress line of a delivery in this process and the log lines written
/// while it is drawn never share a line, the progress line fits the terminal, and it is gone
/// when the command ends.
#[test]
fn progress_and_log_lines_never_share_a_line_on_a_terminal() {
    let repo = Repo::start();
    let big = publish_large(&repo, APP, "1.0", 1024 * 1024);
    // A second app whose file has the right size and the wrong bytes: it fails (a log line)
    // once its download is complete, while the first one is still in progress.
    let bad = crate::support::write_app(
        repo.root(),
        "broken",
        "1.0",
        &[(
            "broken.bin",
            crate::support::pseudo_random_bytes(7, 300 * 1024),
        )],
        false,
    );
    std::fs::write(
        bad.dir.join("broken.bin"),
        crate::support::pseudo_random_bytes(8, 300 * 1024),
    )
    .expect("cannot tamper with the file");
    let device = repo.daemon_device(&limit("256KB"));
    let path = device.root().join("two.json");
    std::fs::write(&path, idf(&[(APP, "1.0"), ("broken", "1.0")]).to_string())
        .expect("cannot write the IDF");
    const COLS: usize = 60;

    let delivery = device
        .agent()
        .command(&["delivery", "--idf", &path_str(&path)]);
    let bytes = crate::support::term::run_in_terminal(&delivery, COLS, JOB_TIMEOUT);

    let screen = crate::support::term::Screen::replay(&bytes, COLS);
    let text = screen.lines.join("\n");
    assert!(
        text.contains("broken"),
        "the failure was not logged:\n{text}"
    );
    for line in &screen.lines {
        assert!(
            !line.contains("%]"),
            "a progress line was left behind: {line:?}\n{text}"
        );
        if ["INFO", "WARN", "ERROR"].iter().any(|l| line.contains(l)) {
            assert!(
                line.starts_with("20"),
                "a log line glued to another: {line:?}\n{text}"
            );
        }
    }
    device.assert_staged_bytes(APP, "1.0", &big);
}

/// Issue 11.9: `--quiet` prints nothing on success (in this process or through the daemon)
/// and still the failure and its exit code.
#[test]
fn quiet_prints_nothing_on_success_and_the_failure_on_failure() {
    let repo = Repo::start();
    repo.add(APP, "1.0", false);
    let device = repo.daemon_device("");
    let idf_path = idf_file(&device);

    let here = device
        .agent()
        .run(&["--quiet", "delivery", "--idf", &idf_path], JOB_TIMEOUT);
    here.assert_success();
    assert_eq!(here.stderr, "", "in this process");

    let _daemon = device.start();
    let there = device
        .agent()
        .run(&["-q", "delivery", "--idf", &idf_path], JOB_TIMEOUT);
    there.assert_success();
    assert_eq!(there.stderr, "", "through the daemon");

    let missing = device.root().join("missing.json");
    std::fs::write(&missing, idf(&[("nosuchapp", "1.0")]).to_string()).expect("cannot write");
    let failed = device.agent().run(
        &["-q", "delivery", "--idf", &path_str(&missing), "--wait"],
        JOB_TIMEOUT,
    );
    failed.assert_code(1);
    assert!(
        failed.stderr.contains("Delivery failed: nosuchapp"),
        "{}",
        failed.stderr
    );
}

/// Issue 13.4: with `check_on_boot = false` and no IDF assigned, the start brings the
/// `[[app]]` tables in place and says so, instead of naming check_on_boot.
#[test]
fn the_start_says_why_it_transfers_the_configured_apps() {
    let repo = Repo::start();
    let data = repo.add(APP, "1.0", false);
    let repositories = format!(
        "[[repository]]\nname = \"central\"\nurl = {:?}\npriority = 100\n\n\
         [[app]]\nname = {APP:?}\nversion = \"1.0\"\n",
        repo.apache.url()
    );
    let device = Device::builder()
        .repositories_toml(&repositories)
        .update("check_on_boot = false\n")
        .control_socket()
        .build();
    let mut daemon = device.start();

    daemon.wait_for_app(APP, "marked-for-installation");
    device.assert_staged_bytes(APP, "1.0", &data);
    let log = daemon.stderr();
    assert!(
        log.contains("no IDF assigned: the [[app]] tables of the configuration are transferred"),
        "{log}"
    );
    assert!(!log.contains("check_on_boot:"), "{log}");
}
