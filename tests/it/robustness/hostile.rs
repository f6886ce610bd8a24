//! A repository is an untrusted mirror (DESIGN 4, 9; issue 10): whatever it serves, the
//! device stays at a good version and keeps working. Whole-process regression tests against
//! real Apache (and the mock server where a real one cannot misbehave in the needed way).

use std::fs;

use crate::support::lifecycle::{
    APP, Repo, activate_at_boot, assert_installed, status, update, version_dirs,
};
use crate::support::sha256_hex;

/// An `app.json` written by hand (the project's `repo index` refuses reserved names).
fn publish_by_hand(repo: &Repo, app: &str, version: &str, data: &[u8]) {
    let dir = repo.root().join(app).join(version);
    fs::create_dir_all(&dir).unwrap();
    fs::write(dir.join("payload.bin"), data).unwrap();
    let manifest = serde_json::json!({"name": app, "version": version, "files": [
        {"path": "payload.bin", "size": data.len(), "sha256": sha256_hex(data)}]});
    fs::write(dir.join("app.json"), manifest.to_string()).unwrap();
    crate::support::apache::make_servable(repo.root());
}

#[test]
fn a_version_named_current_is_never_staged_and_latest_skips_it() {
    let repo = Repo::start();
    let data = repo.add(APP, "1.0", false);
    // `current` sorts above every number: a repository that serves it must not win `latest`.
    publish_by_hand(&repo, APP, "current", b"not a version");
    let device = repo.device("");
    update(&device, &[(APP, "latest")], &[]).assert_success();
    assert_installed(&device, APP, "1.0", &data);
    assert_eq!(version_dirs(&device, APP), ["1.0"]);

    // Asked for by name: refused, naming the field, and nothing changes.
    let out = update(&device, &[(APP, "current")], &[]);
    out.assert_code(2);
    assert!(
        out.stderr.contains("apps[0].version") && out.stderr.contains("reserved"),
        "{}",
        out.stderr
    );
    assert_installed(&device, APP, "1.0", &data);

    // `repo index` refuses to describe it.
    let index = device.run(&[
        "repo",
        "index",
        &crate::support::device::path_str(repo.root()),
    ]);
    index.assert_code(2);
    assert!(
        index.stderr.contains("current") && index.stderr.contains("reserved"),
        "{}",
        index.stderr
    );
}

#[test]
fn a_current_directory_left_by_an_earlier_version_is_repaired_not_an_exit_loop() {
    let repo = Repo::start();
    let data = repo.add(APP, "1.0", false);
    let data2 = repo.add(APP, "2.0", false);
    let device = repo.device("");
    update(&device, &[(APP, "1.0")], &[]).assert_success();
    // What an earlier version left: `current` staged as a real version directory, and a
    // journal that wants it activated.
    let app_dir = device.state_dir().join("apps").join(APP);
    fs::remove_file(app_dir.join("current")).unwrap();
    fs::create_dir_all(app_dir.join("current")).unwrap();
    fs::write(app_dir.join("current").join("app.json"), "{}").unwrap();
    let journal = device.state_dir().join("state.json");
    let mut state: serde_json::Value =
        serde_json::from_slice(&fs::read(&journal).unwrap()).unwrap();
    state["apps"][0]["version"] = "current".into();
    state["apps"][0]["state"] = "marked-for-installation".into();
    state["apps"][0]["activating"] = serde_json::json!({"previous": "1.0"});
    fs::write(&journal, state.to_string()).unwrap();

    let boot = activate_at_boot(&device);
    boot.assert_success();
    assert!(boot.stderr.contains("not a link"), "{}", boot.stderr);
    // The record was set aside and rebuilt from the complete version on disk.
    assert_installed(&device, APP, "1.0", &data);
    // Twice: no loop.
    activate_at_boot(&device).assert_success();
    update(&device, &[(APP, "2.0")], &[]).assert_success();
    assert_installed(&device, APP, "2.0", &data2);
    let st = status(&device);
    assert!(
        st["set_aside"]
            .as_array()
            .is_some_and(|a| a.iter().any(|n| n["name"] == format!("app:{APP}"))),
        "{st:#}"
    );
}

#[test]
fn file_names_an_agent_uses_for_itself_are_refused_in_app_json() {
    let repo = Repo::start();
    // `f` and `f.part` in one app.json would overwrite each other in staging.
    let dir = repo.root().join(APP).join("1.0");
    fs::create_dir_all(&dir).unwrap();
    fs::write(dir.join("f"), b"one").unwrap();
    fs::write(dir.join("f.part"), b"two").unwrap();
    let manifest = serde_json::json!({"name": APP, "version": "1.0", "files": [
        {"path": "f", "size": 3, "sha256": sha256_hex(b"one")},
        {"path": "f.part", "size": 3, "sha256": sha256_hex(b"two")}]});
    fs::write(dir.join("app.json"), manifest.to_string()).unwrap();
    crate::support::apache::make_servable(repo.root());
    let device = repo.device("");
    let out = update(&device, &[(APP, "1.0")], &[]);
    out.assert_code(1);
    let entry = crate::support::lifecycle::app_entry(&status(&device), APP).unwrap();
    let error = entry["error"].as_str().unwrap_or_default();
    assert!(
        error.contains("files[1].path") && error.contains(".part"),
        "{error}"
    );
    assert_eq!(device.current(APP), None);
}

#[test]
fn server_text_never_reaches_a_terminal_or_the_journal_raw() {
    let mock = crate::support::MockServer::start();
    // A listing whose malformed end tag carries escape sequences (clear screen, red) and a
    // line break that could forge a log line.
    let listing = "<?xml version=\"1.0\"?><D:multistatus xmlns:D=\"DAV:\"><D:response>\
                   </D:resp\u{1b}[2J\u{1b}[31monse>\nINFO forged</D:multistatus>";
    mock.route_method(
        "PROPFIND",
        &format!("/{APP}/"),
        crate::support::MockResponse::status(207).body(listing),
    );
    let device = crate::support::device::Device::new(&[crate::support::device::RepoConf::new(
        "central",
        &mock.url(),
        100,
    )]);
    let out = update(&device, &[(APP, "latest")], &[]);
    out.assert_code(1);
    let text = device.run(&["status"]);
    let json = device.run(&["status", "--json"]);
    let check = device.run(&["check"]);
    let journal = fs::read_to_string(device.state_dir().join("state.json")).unwrap();
    for (what, output) in [
        ("update's stderr", out.stderr.as_str()),
        ("status", text.stdout.as_str()),
        ("status --json", json.stdout.as_str()),
        ("check", check.stdout.as_str()),
        ("state.json", journal.as_str()),
    ] {
        assert!(
            !output.contains('\u{1b}'),
            "a raw escape in {what}:\n{output}"
        );
    }
    let error = crate::support::lifecycle::app_entry(&json.json(), APP).unwrap()["error"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(
        error.contains("\\u{1b}[2J"),
        "the escape is shown, not lost: {error}"
    );
}

#[test]
fn idle_connections_cannot_stall_the_control_socket() {
    use std::io::Read;
    use std::os::unix::net::UnixStream;
    let repo = Repo::start();
    let device = repo.daemon_device("");
    let daemon = device.start();
    // 300 idle peers (what once made accept fail with EMFILE and commands stall).
    let idle: Vec<UnixStream> = (0..300)
        .filter_map(|_| UnixStream::connect(device.socket()).ok())
        .collect();
    assert!(idle.len() >= 64, "{} connections", idle.len());
    let started = std::time::Instant::now();
    let reply =
        crate::support::daemon::exchange(device.socket(), br#"{"id":"s1","command":"status"}"#)
            .unwrap();
    assert_eq!(reply["result"], "rejected", "{reply}");
    assert!(
        reply["error"]
            .as_str()
            .unwrap_or_default()
            .starts_with("busy: 64 connections"),
        "{reply}"
    );
    assert!(started.elapsed() < std::time::Duration::from_secs(5));
    drop(idle);
    crate::support::wait_until(
        "the socket to serve again",
        std::time::Duration::from_secs(10),
        || {
            crate::support::daemon::exchange(device.socket(), br#"{"id":"s2","command":"status"}"#)
                .is_ok_and(|r| r["result"] == "accepted")
        },
    );
    // A peer that says nothing is closed after the idle timeout (10 s).
    let mut silent = UnixStream::connect(device.socket()).unwrap();
    silent
        .set_read_timeout(Some(std::time::Duration::from_secs(30)))
        .unwrap();
    let started = std::time::Instant::now();
    let mut buf = [0u8; 16];
    assert_eq!(silent.read(&mut buf).unwrap(), 0, "closed without a word");
    let waited = started.elapsed();
    assert!(
        waited >= std::time::Duration::from_secs(9) && waited < std::time::Duration::from_secs(25),
        "{waited:?}"
    );
    assert!(daemon.status().is_object());
}

#[test]
fn programs_the_agent_starts_get_a_clean_environment() {
    let repo = Repo::start();
    repo.add(APP, "1.0", false);
    let scripts = crate::support::lifecycle::Scripts::new();
    let log = scripts.log("env");
    let hook = scripts.write("hook", &format!("env > '{}'", log.display()));
    let device = repo.daemon_device(&crate::support::lifecycle::hook_config(&hook, "30s"));
    let credentials = crate::support::temp_dir("creds");
    let mut daemon = device.start_with_env(&[
        (
            "CREDENTIALS_DIRECTORY",
            &crate::support::device::path_str(credentials.path()),
        ),
        ("NOTIFY_SOCKET", "/nonexistent/notify"),
        ("IGEL_TEST_SECRET", "s3cret-in-env"),
        ("LANG", "C.UTF-8"),
    ]);
    daemon.accepted(serde_json::json!({"id": "u1", "command": "update",
        "idf": crate::support::daemon::idf(&[(APP, "1.0")])}));
    daemon.wait_for_app(APP, "installed");
    let env = fs::read_to_string(&log).unwrap();
    for gone in [
        "CREDENTIALS_DIRECTORY",
        "NOTIFY_SOCKET",
        "IGEL_TEST_SECRET",
        "WATCHDOG_",
    ] {
        assert!(!env.contains(gone), "the hook saw {gone}:\n{env}");
    }
    for kept in [
        "APP=chromium",
        "VERSION=1.0",
        "APP_DIR=",
        "PATH=",
        "LANG=C.UTF-8",
    ] {
        assert!(env.contains(kept), "the hook did not get {kept}:\n{env}");
    }
}

#[test]
fn the_agent_cannot_be_dumped_or_traced_by_its_user() {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    // A process that is not dumpable has its /proc files owned by root, whoever runs it.
    let dir = crate::support::temp_dir("dumpable");
    fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o755)).unwrap();
    let exe = dir.path().join("igel-update-agent");
    fs::copy(env!("CARGO_BIN_EXE_igel-update-agent"), &exe).unwrap();
    let served = dir.path().join("repo");
    fs::create_dir(&served).unwrap();
    fs::set_permissions(&served, fs::Permissions::from_mode(0o755)).unwrap();
    let mut child = std::process::Command::new("setpriv")
        .args(["--reuid=nobody", "--regid=nogroup", "--clear-groups"])
        .arg(&exe)
        .args([
            "repo",
            "serve",
            &crate::support::device::path_str(&served),
            "--listen",
            "127.0.0.1:0",
        ])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("setpriv (util-linux) runs the agent as nobody");
    let proc_dir = std::path::PathBuf::from(format!("/proc/{}", child.id()));
    // Until setpriv has exec'd the agent, the process is setpriv's (owned by nobody); right
    // after the exec it is the agent's before its first instruction makes it non-dumpable.
    // Once it runs, its /proc files must belong to root; they never do if it stays dumpable.
    let mut owner = None;
    let started = std::time::Instant::now();
    while started.elapsed() < std::time::Duration::from_secs(10) {
        let exe_now = fs::read_link(proc_dir.join("exe")).ok();
        if exe_now.as_deref() == Some(exe.as_path()) {
            owner = fs::metadata(proc_dir.join("environ")).ok().map(|m| m.uid());
            if owner == Some(0) {
                break;
            }
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let _ = child.kill();
    let _ = child.wait();
    assert_eq!(
        owner,
        Some(0),
        "its /proc files belong to its user: it can be dumped"
    );
}

#[test]
fn partial_downloads_of_versions_no_longer_planned_are_removed() {
    let repo = Repo::start();
    let data = repo.add(APP, "2.0", false);
    let device = repo.device("");
    // What a transfer of 1.0 cut off by a power failure leaves, and an app that left the IDF.
    let stale = device.state_dir().join("staging").join(APP).join("1.0");
    fs::create_dir_all(&stale).unwrap();
    fs::write(stale.join("chromium.bin.part"), vec![7u8; 50_000]).unwrap();
    let gone = device
        .state_dir()
        .join("staging")
        .join("old-app")
        .join("3.1");
    fs::create_dir_all(&gone).unwrap();
    fs::write(gone.join("x.part"), b"xx").unwrap();
    update(&device, &[(APP, "2.0")], &[]).assert_success();
    assert_installed(&device, APP, "2.0", &data);
    assert!(!stale.exists(), "the partial 1.0 is still there");
    assert!(
        !gone.exists(),
        "the partial of an app outside the IDF is still there"
    );
}

#[test]
fn an_idf_comes_over_https_from_its_own_server_only() {
    let repo = Repo::start();
    let data = repo.add(APP, "1.0", false);
    // The IDF server: HTTPS with a private CA, which the device trusts as [ums] ca_certificate.
    let tls = crate::support::TlsFiles::localhost();
    let idf_root = crate::support::temp_dir("idf-server");
    fs::write(
        idf_root.path().join("idf.json"),
        crate::support::daemon::idf(&[(APP, "1.0")]).to_string(),
    )
    .unwrap();
    let other = crate::support::Apache::builder(idf_root.path()).start();
    let idf_server = crate::support::Apache::builder(idf_root.path())
        .tls_files(&tls)
        .server_config(&format!(
            "LoadModule alias_module /usr/lib/apache2/modules/mod_alias.so\n\
             Redirect /moved.json {}idf.json",
            other.url()
        ))
        .start();
    crate::support::apache::make_servable(idf_root.path());
    let ums = format!(
        "\n[ums]\nca_certificate = {:?}\n",
        crate::support::device::path_str(tls.ca_path())
    );
    let device = repo.device(&ums);

    let https = format!("{}idf.json", idf_server.url());
    device.run(&["update", "--idf", &https]).assert_success();
    assert_installed(&device, APP, "1.0", &data);

    let plain = format!("{}idf.json", other.url());
    let out = device.run(&["update", "--idf", &plain]);
    out.assert_code(2);
    assert!(
        out.stderr.contains("must come over https://"),
        "{}",
        out.stderr
    );
    let out = device.run(&["delivery", "--idf", &plain]);
    out.assert_code(2);

    let moved = format!("{}moved.json", idf_server.url());
    let out = device.run(&["update", "--idf", &moved, "--force"]);
    out.assert_code(1);
    assert!(
        out.stderr.contains("redirect to") && out.stderr.contains("refused"),
        "{}",
        out.stderr
    );
    assert!(other.access_log().is_empty(), "the redirect was followed");
}

#[test]
fn plain_http_repositories_are_warned_about_unless_every_app_is_pinned() {
    let repo = Repo::start();
    let written =
        crate::support::write_app(repo.root(), APP, "1.0", &[("f.bin", vec![1; 100])], false);
    let device = repo.device(&format!("\n[[app]]\nname = {APP:?}\nversion = \"1.0\"\n"));
    let config = device.run(&["config", "check"]);
    config.assert_success();
    assert!(
        config.stderr.contains("repository \"central\": plain http"),
        "{}",
        config.stderr
    );
    let check = device.run(&["check"]);
    assert!(
        check
            .stdout
            .contains("WARN repository central transport: plain http"),
        "{}",
        check.stdout
    );
    let pinned = repo.device(&format!(
        "\n[[app]]\nname = {APP:?}\nversion = \"1.0\"\napp_json_sha256 = {:?}\n",
        written.app_json_sha256
    ));
    let config = pinned.run(&["config", "check"]);
    assert!(!config.stderr.contains("plain http"), "{}", config.stderr);
    let check = pinned.run(&["check"]);
    assert!(!check.stdout.contains("transport"), "{}", check.stdout);
}

/// A mirror of priority 200 that serves `app.json` and trickles the payload (or, with
/// `trickle_manifest`, the app.json itself) at 1 byte every 1.5 s, and a good central one.
fn trickling_mirror(trickle_manifest: bool) -> (crate::support::MockServer, Repo, Vec<u8>) {
    let central = Repo::start();
    let data = central.add(APP, "1.0", false);
    let manifest = fs::read(central.root().join(APP).join("1.0").join("app.json")).unwrap();
    let mirror = crate::support::MockServer::start();
    let slow = |body: Vec<u8>| {
        crate::support::MockResponse::file(body).trickle(1, std::time::Duration::from_millis(1500))
    };
    let manifest_response = if trickle_manifest {
        slow(manifest)
    } else {
        crate::support::MockResponse::file(manifest)
    };
    mirror.route(&format!("/{APP}/1.0/app.json"), manifest_response);
    mirror.route(
        &format!(
            "/{APP}/1.0/{}",
            crate::support::lifecycle::payload_name(APP)
        ),
        slow(data.clone()),
    );
    (mirror, central, data)
}

#[test]
fn a_trickling_mirror_is_left_for_the_next_repository() {
    for trickle_manifest in [false, true] {
        let (mirror, central, data) = trickling_mirror(trickle_manifest);
        let device = crate::support::device::Device::with_update(
            &[
                crate::support::device::RepoConf::new("mirror", &mirror.url(), 200),
                crate::support::device::RepoConf::new("central", &central.apache.url(), 100),
            ],
            "low_speed_time = \"3s\"\n",
        );
        let started = std::time::Instant::now();
        let out = update(&device, &[(APP, "1.0")], &[]);
        out.assert_success();
        assert!(
            started.elapsed() < std::time::Duration::from_secs(40),
            "took {:?}",
            started.elapsed()
        );
        assert_installed(&device, APP, "1.0", &data);
        assert!(out.stderr.contains("stalled:"), "{}", out.stderr);
        assert_eq!(
            crate::support::lifecycle::app_entry(&status(&device), APP).unwrap()["repository"],
            "central"
        );
    }
}

#[test]
fn the_devices_own_bandwidth_limit_is_never_a_stall() {
    let repo = Repo::start();
    let data = crate::support::daemon::publish_large(&repo, APP, "1.0", 400 * 1024);
    // The device allows 64 KiB/s; the stall limit is higher, over a short window.
    let device = repo.device(
        "bandwidth_limit_enabled = true\nbandwidth_limit = \"64KB\"\n\
         low_speed_limit = \"200KB\"\nlow_speed_time = \"2s\"\n",
    );
    let out = update(&device, &[(APP, "1.0")], &[]);
    out.assert_success();
    assert!(!out.stderr.contains("stalled:"), "{}", out.stderr);
    assert_installed(&device, APP, "1.0", &data);
}

#[test]
fn the_running_command_can_be_cancelled_until_its_installation_starts() {
    let repo = Repo::start();
    let (device, mut daemon, _data, _) = crate::support::daemon::throttled_delivery(&repo);
    daemon.accepted(serde_json::json!({"id": "c1", "command": "cancel", "target": "d1"}));
    let st = daemon.wait_for(
        "the delivery to stop",
        crate::support::daemon::JOB_TIMEOUT,
        |s| crate::support::daemon::queue(s).is_empty(),
    );
    assert_eq!(st["update_status"], "Delivery failed: cancelled", "{st:#}");
    let app = crate::support::lifecycle::app_entry(&st, APP).unwrap();
    assert_eq!(app["state"], "download-failed", "{st:#}");
    assert_eq!(app["error"], "cancelled", "{st:#}");
    let part = device.part(APP, "1.0", &crate::support::lifecycle::payload_name(APP));
    assert!(part.exists(), "the partial download is kept for a resume");

    // The next command runs, and resumes.
    daemon.accepted(serde_json::json!({"id": "d2", "command": "delivery",
        "idf": crate::support::daemon::idf(&[(APP, "1.0")])}));
    daemon.wait_for_log("Transfer started", crate::support::daemon::JOB_TIMEOUT);

    // An installation that started runs to its end.
    let scripts = crate::support::lifecycle::Scripts::new();
    let hook = scripts.write("hook", "sleep 3");
    let repo2 = Repo::start();
    repo2.add(APP, "1.0", false);
    let device2 = repo2.daemon_device(&crate::support::lifecycle::hook_config(&hook, "30s"));
    let mut daemon2 = device2.start();
    daemon2.accepted(serde_json::json!({"id": "u1", "command": "update",
        "idf": crate::support::daemon::idf(&[(APP, "1.0")])}));
    daemon2.wait_for_log("activating", crate::support::daemon::JOB_TIMEOUT);
    let reply =
        daemon2.request(serde_json::json!({"id": "c2", "command": "cancel", "target": "u1"}));
    assert_eq!(reply["result"], "rejected", "{reply}");
    assert!(
        reply["error"]
            .as_str()
            .unwrap_or_default()
            .contains("installation has started"),
        "{reply}"
    );
    daemon2.wait_for_app(APP, "installed");
}

/// Two repositories with different bytes under the same version `1.0`: what a compromised or
/// misconfigured mirror serves, and what the IDF pins.
fn two_contents() -> (Repo, Repo, Vec<u8>, Vec<u8>, String) {
    let mirror = Repo::start();
    let central = Repo::start();
    let evil = b"what the compromised mirror serves".repeat(100);
    let good = b"what the IDF pins".repeat(200);
    let name = crate::support::lifecycle::payload_name(APP);
    crate::support::write_app(mirror.root(), APP, "1.0", &[(&name, evil.clone())], false);
    let pinned =
        crate::support::write_app(central.root(), APP, "1.0", &[(&name, good.clone())], false);
    (mirror, central, evil, good, pinned.app_json_sha256)
}

fn device_for(mirror: &Repo, central: &Repo, update: &str) -> crate::support::device::Device {
    crate::support::device::Device::with_update(
        &[
            crate::support::device::RepoConf::new("mirror", &mirror.apache.url(), 200),
            crate::support::device::RepoConf::new("central", &central.apache.url(), 100),
        ],
        update,
    )
}

/// What `apps/chromium/1.0/chromium.bin` holds now.
fn live_payload(device: &crate::support::device::Device) -> Vec<u8> {
    let version = device.state_dir().join("apps").join(APP).join("1.0");
    fs::read(version.join(crate::support::lifecycle::payload_name(APP))).unwrap()
}

fn pinned_update(device: &crate::support::device::Device, pin: &str) -> crate::support::RunOutput {
    let idf = device.write_idf(&[(APP, "1.0", Some(pin))]);
    device.run(&["update", "--idf", &crate::support::device::path_str(&idf)])
}

#[test]
fn a_pinned_app_json_replaces_other_content_under_the_same_version() {
    let (mirror, central, evil, good, pin) = two_contents();
    let device = device_for(&mirror, &central, "");
    // Unpinned first: the mirror's bytes are installed as 1.0.
    update(&device, &[(APP, "1.0")], &[]).assert_success();
    assert_installed(&device, APP, "1.0", &evil);

    // Now the IDF pins central's app.json: the same version name must not count as in place.
    let out = pinned_update(&device, &pin);
    out.assert_success();
    assert_installed(&device, APP, "1.0", &good);
    assert_eq!(version_dirs(&device, APP), ["1.0"]);
    assert!(
        !device.state_dir().join("staging").join(APP).exists(),
        "the replaced content is not cleaned up"
    );
    // And it stays: the next update with the same pin changes nothing.
    let again = pinned_update(&device, &pin);
    again.assert_success();
    assert!(
        again.stderr.contains("Update not necessary"),
        "{}",
        again.stderr
    );
    assert_installed(&device, APP, "1.0", &good);
}

#[test]
fn a_failed_hook_puts_the_replaced_content_back() {
    let (mirror, central, evil, good, pin) = two_contents();
    let scripts = crate::support::lifecycle::Scripts::new();
    let hook = scripts.write(
        "hook",
        "grep -q 'what the IDF pins' \"$APP_DIR/chromium.bin\" && exit 7; exit 0",
    );
    let device = device_for(
        &mirror,
        &central,
        &crate::support::lifecycle::hook_config(&hook, "30s"),
    );
    update(&device, &[(APP, "1.0")], &[]).assert_success();
    assert_installed(&device, APP, "1.0", &evil);
    pinned_update(&device, &pin).assert_code(1);
    // Still the old content, complete, under `current`.
    assert_eq!(live_payload(&device), evil);
    assert_eq!(device.current(APP).as_deref(), Some("1.0"));
    let entry = crate::support::lifecycle::app_entry(&status(&device), APP).unwrap();
    assert_eq!(entry["state"], "activation-failed", "{entry:#}");
    // Once the hook agrees, the next Update swaps it in.
    scripts.write("hook", "exit 0");
    pinned_update(&device, &pin).assert_success();
    assert_installed(&device, APP, "1.0", &good);
}

#[test]
fn a_crash_around_the_swap_leaves_one_content_or_the_other() {
    let (mirror, central, evil, good, pin) = two_contents();
    let points = igel_update_agent::failpoint::REPLACE_POINTS
        .iter()
        .chain(&["activate.after_swap"]);
    for point in points {
        let device = device_for(&mirror, &central, "");
        update(&device, &[(APP, "1.0")], &[]).assert_success();
        let idf = device.write_idf(&[(APP, "1.0", Some(&pin))]);
        let out = device
            .agent()
            .clone()
            .env("IGEL_UPDATE_AGENT_CRASH_AT", point)
            .run(
                &["update", "--idf", &crate::support::device::path_str(&idf)],
                std::time::Duration::from_secs(60),
            );
        assert!(
            out.stderr.contains("crash point"),
            "{point}: {}",
            out.stderr
        );
        let live = live_payload(&device);
        assert!(
            live == evil || live == good,
            "{point}: neither content is whole"
        );
        assert_eq!(device.current(APP).as_deref(), Some("1.0"), "{point}");
        // The next run converges on the pinned content.
        pinned_update(&device, &pin).assert_success();
        assert_installed(&device, APP, "1.0", &good);
    }
}

#[test]
fn an_idf_url_that_fails_is_reported_as_a_failure() {
    let repo = Repo::start();
    repo.add(APP, "1.0", false);
    // Plain http for the IDF only with allow_insecure (a test set-up).
    let device = repo.daemon_device("\n[ums]\nallow_insecure = true\n");
    let daemon = device.start();
    let missing = format!("{}nope.json", repo.apache.url());
    let out = device.agent().run(
        &["update", "--idf", &missing, "--wait"],
        crate::support::daemon::JOB_TIMEOUT,
    );
    out.assert_code(1);
    assert!(out.stderr.contains("Update failed"), "{}", out.stderr);
    let status = daemon.status();
    let text = status["update_status"].as_str().unwrap_or_default();
    assert!(
        text.starts_with("Update failed: IDF") && text.contains("404"),
        "{status:#}"
    );
}

#[test]
fn a_staged_replacement_the_plan_no_longer_wants_is_never_swapped_in() {
    let (mirror, central, evil, _good, pin) = two_contents();
    let device = device_for(&mirror, &central, "");
    update(&device, &[(APP, "1.0")], &[]).assert_success();
    assert_installed(&device, APP, "1.0", &evil);
    // A delivery pins central's content: staged beside the active one, not activated.
    let idf = device.write_idf(&[(APP, "1.0", Some(&pin))]);
    device
        .run(&["delivery", "--idf", &crate::support::device::path_str(&idf)])
        .assert_success();
    assert!(
        device
            .state_dir()
            .join("staging")
            .join(APP)
            .join("1.0")
            .join("app.json")
            .exists()
    );
    // Then the wanted state goes back to the mirror's content: what was staged is dropped,
    // and neither the next update nor a boot swaps it in.
    let mirror_pin =
        sha256_hex(&fs::read(mirror.root().join(APP).join("1.0").join("app.json")).unwrap());
    let back = device.write_idf(&[(APP, "1.0", Some(&mirror_pin))]);
    device
        .run(&[
            "update",
            "--idf",
            &crate::support::device::path_str(&back),
            "--force",
        ])
        .assert_success();
    activate_at_boot(&device).assert_success();
    assert_installed(&device, APP, "1.0", &evil);
    assert!(
        !device
            .state_dir()
            .join("staging")
            .join(APP)
            .join("1.0")
            .exists()
    );
}
