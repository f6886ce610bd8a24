//! The bad-input corpus (issue 10): what an administrator, a repository, the UMS or a crash
//! can hand the agent, case by case, each answered with a clear error that names the file,
//! key, field or URL, never a panic, never a half-written state, and a device that keeps
//! working (the active version intact, the daemon starting). `docs/ROBUSTNESS.md` counts
//! the cases; each table below is one kind of input.

use std::fs;
use std::path::Path;

use crate::support::lifecycle::{APP, Repo, assert_installed, payload_name, status, update};
use crate::support::sha256_hex;
use serde_json::{Value, json};

/// Output a bad input may never produce.
#[track_caller]
fn no_panic(what: &str, out: &crate::support::RunOutput) {
    assert!(
        !out.stderr.contains("panicked") && out.code.is_some(),
        "{what}: a panic or a signal\n{}",
        out.stderr
    );
}

/// Configuration files: `config check` exits 2 naming the file, the line and the key (or
/// the value) — and so does the daemon, which never starts on a bad file.
const CONFIGS: &[(&str, &str)] = &[
    ("[update]\nsplay = \"25h\"\n", "update.splay"),
    ("[update]\nsplay = \"soon\"\n", "update.splay"),
    (
        "[update]\nreminder_interval = \"0s\"\n",
        "update.reminder_interval",
    ),
    (
        "[update]\nconnect_timeout = \"1d\"\n",
        "update.connect_timeout",
    ),
    ("[update]\nread_timeout = \"0s\"\n", "update.read_timeout"),
    (
        "[update]\nreboot_timeout = \"2d\"\n",
        "update.reboot_timeout",
    ),
    (
        "[update]\nactivate_hook_timeout = \"5h\"\n",
        "update.activate_hook_timeout",
    ),
    ("[update]\nretry_backoff = \"2m\"\n", "update.retry_backoff"),
    ("[update]\nretries = -1\n", "update.retries"),
    ("[update]\nretries = 99999999999\n", "update.retries"),
    (
        "[update]\nparallel_downloads = 0\n",
        "update.parallel_downloads",
    ),
    ("[update]\nmax_deferrals = 101\n", "update.max_deferrals"),
    (
        "[update]\nlow_speed_limit = \"fast\"\n",
        "update.low_speed_limit",
    ),
    (
        "[update]\nlow_speed_time = \"0s\"\n",
        "update.low_speed_time",
    ),
    (
        "[update]\nreboot_after_activation = \"sometimes\"\n",
        "update.reboot_after_activation",
    ),
    (
        "[update]\nactivate_after_installation = \"yes\"\n",
        "activate_after_installation",
    ),
    ("[update]\nno_such_key = 1\n", "no_such_key"),
    ("[nonsense]\nx = 1\n", "nonsense"),
    ("[update\nsplay = \"1s\"\n", "line 1"),
    (
        "[[repository]]\nname = \"a b\"\nurl = \"https://a/\"\n",
        "repository.name",
    ),
    (
        "[[repository]]\nname = \"a\"\nurl = \"ftp://a/\"\n",
        "repository.url",
    ),
    (
        "[[repository]]\nname = \"a\"\nurl = \"https://u:p@a/\"\n",
        "repository.url",
    ),
    (
        "[[repository]]\nname = \"a\"\nurl = \"https://a/?x=1\"\n",
        "repository.url",
    ),
    (
        "[[repository]]\nname = \"a\"\nurl = \"https://a/\"\npriority = -2\n",
        "repository.priority",
    ),
    (
        "[[repository]]\nname = \"a\"\nurl = \"https://a/\"\npriority = 4294967296\n",
        "repository.priority",
    ),
    (
        "[[repository]]\nname = \"a\"\nurl = \"https://a/\"\nauth = \"ntlm\"\n",
        "repository.auth",
    ),
    (
        "[[repository]]\nname = \"a\"\nurl = \"https://a/\"\nauth = \"basic\"\n",
        "repository.username",
    ),
    (
        "[[repository]]\nname = \"a\"\nurl = \"https://a/\"\nusername = \"u\"\npassword = \"x\"\n",
        "repository.password",
    ),
    (
        "[[repository]]\nname = \"a\"\nurl = \"https://a/\"\nusername = \"u\"\npassword_file = \"/nonexistent/pw\"\n",
        "repository.password_file",
    ),
    (
        "[[repository]]\nname = \"a\"\nurl = \"https://a/\"\nca_certificate = \"/nonexistent/ca.pem\"\n",
        "repository.ca_certificate",
    ),
    (
        "[[repository]]\nname = \"a\"\nurl = \"https://a/\"\n[[repository]]\nname = \"a\"\nurl = \"https://b/\"\n",
        "repository.name",
    ),
    (
        "[ums]\nurls = [\"ws://ums/x\"]\nca_certificate = \"/ca\"\n",
        "ums.urls",
    ),
    ("[ums]\nurls = [\"wss://ums/x\"]\n", "ums.ca_certificate"),
    (
        "[ums]\nurls = [\"wss://ums/x\"]\nca_certificate = \"/ca\"\nclient_key = \"/k\"\n",
        "ums.client_certificate",
    ),
    (
        "[ums]\nurls = [\"wss://ums/x\"]\nca_certificate = \"/ca\"\nheartbeat = \"2h\"\n",
        "ums.heartbeat",
    ),
    (
        "[[app]]\nname = \"Chromium\"\nversion = \"1\"\n",
        "app.name",
    ),
    (
        "[[app]]\nname = \"a\"\nversion = \"current\"\n",
        "app.version",
    ),
    (
        "[[app]]\nname = \"a\"\nversion = \"latest\"\napp_json_sha256 = \"00\"\n",
        "app.app_json_sha256",
    ),
    (
        "[[app]]\nname = \"a\"\nversion = \"1\"\n[[app]]\nname = \"a\"\nversion = \"2\"\n",
        "app.name",
    ),
];

#[test]
fn bad_configuration_files_are_named_and_never_start_a_daemon() {
    let dir = crate::support::temp_dir("bad-config");
    let config = dir.path().join("agent.toml");
    let agent = crate::support::Agent::new(&config, dir.path().join("state"));
    for (i, (text, needle)) in CONFIGS.iter().enumerate() {
        fs::write(&config, text).unwrap();
        let what = format!("config case {i} {text:?}");
        let check = agent.run(&["config", "check"], crate::support::daemon::JOB_TIMEOUT);
        no_panic(&what, &check);
        check.assert_code(2);
        assert!(
            check.stderr.contains(&config.display().to_string()) && check.stderr.contains(needle),
            "{what}: the error must name the file and {needle}\n{}",
            check.stderr
        );
        // Issue 11.10: a script reading --json gets a document naming the problem.
        let json = agent.run(
            &["config", "check", "--json"],
            crate::support::daemon::JOB_TIMEOUT,
        );
        json.assert_code(2);
        let report = json.json();
        assert_eq!(report["valid"], false, "{what}: {report}");
        assert!(
            report["errors"][0]
                .as_str()
                .is_some_and(|e| e.contains(needle)),
            "{what}: {report}"
        );
        // And a transfer refuses it the same way (exit 2), before contacting anything.
        let delivery = agent.run(&["delivery"], crate::support::daemon::JOB_TIMEOUT);
        no_panic(&what, &delivery);
        delivery.assert_code(2);
        let run = agent.run(&["run"], crate::support::daemon::JOB_TIMEOUT);
        no_panic(&what, &run);
        run.assert_code(2);
    }
}

/// One bad `app.json` per case: (how it is written, the field the error must name).
fn bad_manifests(data: &[u8]) -> Vec<(String, &'static str)> {
    let sha = sha256_hex(data);
    let file =
        |path: &str, size: usize, sha: &str| json!({"path": path, "size": size, "sha256": sha});
    let manifest = |name: &str, version: &str, files: Value| {
        json!({"name": name, "version": version, "files": files}).to_string()
    };
    let len = data.len();
    vec![
        ("{not json".to_string(), "not valid JSON"),
        ("[]".to_string(), "not valid JSON"),
        (manifest("other", "1.0", json!([file("f.bin", len, &sha)])), "describes other 1.0"),
        (manifest(APP, "2.0", json!([file("f.bin", len, &sha)])), "describes chromium 2.0"),
        (manifest("../x", "1.0", json!([])), "field `name`"),
        (manifest(APP, "current", json!([])), "field `version`"),
        (manifest(APP, "1.0", json!([file("../../etc/passwd", len, &sha)])), "files[0].path"),
        (manifest(APP, "1.0", json!([file("/etc/passwd", len, &sha)])), "files[0].path"),
        (manifest(APP, "1.0", json!([file("a/./b", len, &sha)])), "files[0].path"),
        (manifest(APP, "1.0", json!([file("a/b/c/d/e", len, &sha)])), "files[0].path"),
        (manifest(APP, "1.0", json!([file(".hidden", len, &sha)])), "files[0].path"),
        (manifest(APP, "1.0", json!([file("f.part", len, &sha)])), "files[0].path"),
        (manifest(APP, "1.0", json!([file("app.json", len, &sha)])), "files[0].path"),
        (manifest(APP, "1.0", json!([file("f.bin", len, &sha), file("f.bin", len, &sha)])), "files[1].path"),
        (manifest(APP, "1.0", json!([file("f.bin", len, "xyz")])), "files[0].sha256"),
        (manifest(APP, "1.0", json!([file("f.bin", len, &"g".repeat(64))])), "files[0].sha256"),
        (
            json!({"name": APP, "version": "1.0", "files": [{"path": "f.bin", "size": 68719476737u64, "sha256": sha}]}).to_string(),
            "files[0].size",
        ),
        (
            json!({"name": APP, "version": "1.0", "files": [{"path": "f.bin", "size": -1, "sha256": sha}]}).to_string(),
            "not valid JSON",
        ),
        (
            json!({"name": APP, "version": "1.0", "files": [], "extra": 1}).to_string(),
            "not valid JSON",
        ),
        (" ".repeat(1024 * 1024 + 1), "larger than the limit"),
    ]
}

#[test]
fn bad_app_json_from_a_repository_is_named_and_the_active_version_stays() {
    let repo = Repo::start();
    let good = repo.add(APP, "0.9", false);
    let device = repo.device("");
    update(&device, &[(APP, "0.9")], &[]).assert_success();
    let data = b"payload".to_vec();
    let dir = repo.root().join(APP).join("1.0");
    fs::create_dir_all(&dir).unwrap();
    fs::write(dir.join("f.bin"), &data).unwrap();
    for (i, (text, needle)) in bad_manifests(&data).into_iter().enumerate() {
        fs::write(dir.join("app.json"), &text).unwrap();
        crate::support::apache::make_servable(repo.root());
        let what = format!("app.json case {i}");
        let out = update(&device, &[(APP, "1.0")], &[]);
        no_panic(&what, &out);
        out.assert_code(1);
        let entry = crate::support::lifecycle::app_entry(&status(&device), APP).unwrap();
        let error = entry["error"].as_str().unwrap_or_default().to_string();
        assert!(
            error.contains(needle) && error.contains("/chromium/1.0/app.json"),
            "{what}: the error must name {needle} and the URL: {error}"
        );
        assert_eq!(device.current(APP).as_deref(), Some("0.9"), "{what}");
        assert!(
            !device
                .state_dir()
                .join("apps")
                .join(APP)
                .join("1.0")
                .exists(),
            "{what}"
        );
    }
    update(&device, &[(APP, "0.9")], &["--force"]).assert_success();
    assert_installed(&device, APP, "0.9", &good);
}

/// PROPFIND answers for `latest`: (body, what the error must say).
const LISTINGS: &[(&str, &str)] = &[
    ("", "not a WebDAV multistatus"),
    ("<html>nope</html>", "not a WebDAV multistatus"),
    (
        "<?xml version=\"1.0\"?><D:multistatus xmlns:D=\"DAV:\">",
        "cut off",
    ),
    (
        "<?xml version=\"1.0\"?><D:multistatus xmlns:D=\"DAV:\"><D:response></D:resp>",
        "malformed listing",
    ),
    // Nothing usable listed (a mirror without the app yet): not an error, the next one
    // resolves `latest`.
    (
        "<?xml version=\"1.0\"?><D:multistatus xmlns:D=\"DAV:\"><D:response><D:href>%zz</D:href></D:response></D:multistatus>",
        "listed by central",
    ),
    (
        "<?xml version=\"1.0\"?><D:multistatus xmlns:D=\"DAV:\"></D:multistatus>",
        "listed by central",
    ),
    (
        "<?xml version=\"1.0\"?><D:multistatus xmlns:D=\"DAV:\"><D:response><D:href>/chromium/current/</D:href><D:propstat><D:prop><D:resourcetype><D:collection/></D:resourcetype></D:prop></D:propstat></D:response></D:multistatus>",
        "listed by central",
    ),
    (
        "<?xml version=\"1.0\"?><!DOCTYPE x [<!ENTITY a \"aaaa\">]><D:multistatus xmlns:D=\"DAV:\">&a;&a;</D:multistatus>",
        "chromium",
    ),
];

#[test]
fn bad_listings_are_named_and_the_active_version_stays() {
    let repo = Repo::start();
    let good = repo.add(APP, "0.9", false);
    let mock = crate::support::MockServer::start();
    let device = crate::support::device::Device::new(&[
        crate::support::device::RepoConf::new("mirror", &mock.url(), 200),
        crate::support::device::RepoConf::new("central", &repo.apache.url(), 100),
    ]);
    update(&device, &[(APP, "0.9")], &[]).assert_success();
    let oversized = format!(
        "<?xml version=\"1.0\"?><D:multistatus xmlns:D=\"DAV:\">{}</D:multistatus>",
        " ".repeat(4 * 1024 * 1024 + 1)
    );
    let mut cases: Vec<(String, &str)> =
        LISTINGS.iter().map(|(b, n)| (b.to_string(), *n)).collect();
    cases.push((oversized, "larger than the limit"));
    for (i, (body, needle)) in cases.into_iter().enumerate() {
        mock.route_method(
            "PROPFIND",
            &format!("/{APP}/"),
            crate::support::MockResponse::status(207).body(body),
        );
        // central has no other version: `latest` must come from the first repository that
        // lists one, and a broken mirror is named in the reason.
        let what = format!("listing case {i}");
        let out = update(&device, &[(APP, "latest")], &["--force"]);
        no_panic(&what, &out);
        let text = format!("{}{}", out.stderr, status(&device));
        assert!(text.contains(needle), "{what}: must say {needle:?}\n{text}");
        assert_eq!(device.current(APP).as_deref(), Some("0.9"), "{what}");
    }
    assert_installed(&device, APP, "0.9", &good);
}

/// IDF files (`update --idf FILE`): (text, the field named).
const IDFS: &[(&str, &str)] = &[
    ("", "not valid JSON"),
    ("{", "not valid JSON"),
    ("[]", "not valid JSON"),
    ("{\"apps\": 1}", "not valid JSON"),
    ("{\"apps\": [], \"extra\": 1}", "not valid JSON"),
    ("{\"apps\": [{\"name\": \"a\"}]}", "not valid JSON"),
    (
        "{\"apps\": [{\"name\": \"../a\", \"version\": \"1\"}]}",
        "apps[0].name",
    ),
    (
        "{\"apps\": [{\"name\": \"A\", \"version\": \"1\"}]}",
        "apps[0].name",
    ),
    (
        "{\"apps\": [{\"name\": \"a\", \"version\": \"1/2\"}]}",
        "apps[0].version",
    ),
    (
        "{\"apps\": [{\"name\": \"a\", \"version\": \"current\"}]}",
        "apps[0].version",
    ),
    (
        "{\"apps\": [{\"name\": \"a\", \"version\": \".1\"}]}",
        "apps[0].version",
    ),
    (
        "{\"apps\": [{\"name\": \"a\", \"version\": \"1\", \"app_json_sha256\": \"xx\"}]}",
        "apps[0].app_json_sha256",
    ),
    (
        "{\"apps\": [{\"name\": \"a\", \"version\": \"latest\", \"app_json_sha256\": \"e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855\"}]}",
        "apps[0].app_json_sha256",
    ),
    (
        "{\"apps\": [{\"name\": \"a\", \"version\": \"1\"}, {\"name\": \"a\", \"version\": \"2\"}]}",
        "apps[1].name",
    ),
    (
        "{\"apps\": [{\"name\": \"a\", \"version\": \"1\", \"x\": 1}]}",
        "not valid JSON",
    ),
];

#[test]
fn bad_idf_files_are_named_and_change_nothing() {
    let repo = Repo::start();
    let good = repo.add(APP, "0.9", false);
    let device = repo.device("");
    update(&device, &[(APP, "0.9")], &[]).assert_success();
    let journal = fs::read(device.state_dir().join("state.json")).unwrap();
    let idf = device.root().join("bad-idf.json");
    for (i, (text, needle)) in IDFS.iter().enumerate() {
        fs::write(&idf, text).unwrap();
        for command in ["update", "delivery"] {
            let what = format!("IDF case {i} ({command}) {text:?}");
            let out = device.run(&[command, "--idf", &crate::support::device::path_str(&idf)]);
            no_panic(&what, &out);
            out.assert_code(2);
            assert!(
                out.stderr.contains(needle) && out.stderr.contains("bad-idf.json"),
                "{what}: must name {needle} and the file\n{}",
                out.stderr
            );
        }
    }
    assert_eq!(
        fs::read(device.state_dir().join("state.json")).unwrap(),
        journal
    );
    assert_installed(&device, APP, "0.9", &good);
}

/// Lines on the control socket: (line, what the rejection names).
fn bad_commands() -> Vec<(String, &'static str)> {
    let later = (chrono::Utc::now() + chrono::Duration::days(2)).to_rfc3339();
    let s = |v: Value| v.to_string();
    vec![
        ("{not json".into(), "not JSON"),
        ("[1,2]".into(), "JSON object"),
        ("\"update\"".into(), "JSON object"),
        (s(json!({"command": "status"})), "`id` is missing"),
        (s(json!({"id": "", "command": "status"})), "`id`"),
        (
            s(json!({"id": "x".repeat(129), "command": "status"})),
            "`id`",
        ),
        (s(json!({"id": "a\u{1b}b", "command": "status"})), "`id`"),
        (s(json!({"id": 5, "command": "status"})), "`id`"),
        (s(json!({"id": "b1"})), "`command`"),
        (
            s(json!({"id": "b2", "command": "reboot"})),
            "unknown command",
        ),
        (
            s(json!({"id": "b3", "command": "update", "bogus": 1})),
            "unknown field",
        ),
        (
            s(json!({"id": "b4", "command": "update", "at": "tomorrow"})),
            "RFC 3339",
        ),
        (
            s(json!({"id": "b5", "command": "update", "at": "2001-01-01T00:00:00Z"})),
            "in the past",
        ),
        (
            s(json!({"id": "b6", "command": "update", "at": "9999-01-01T00:00:00Z"})),
            "366 days",
        ),
        (
            s(json!({"id": "b7", "command": "update", "inform_user": {"timeout_s": 86401}})),
            "86400",
        ),
        (
            s(json!({"id": "b8", "command": "update", "inform_user": {"timeout_s": -1}})),
            "timeout_s",
        ),
        (
            s(json!({"id": "b9", "command": "update", "idf_url": "ftp://x/idf"})),
            "idf_url",
        ),
        (
            s(json!({"id": "b10", "command": "update", "idf_url": "http://127.0.0.1:1/idf.json"})),
            "https://",
        ),
        (
            s(
                json!({"id": "b11", "command": "update", "idf_url": format!("https://x/{}", "a".repeat(3000))}),
            ),
            "idf_url",
        ),
        (
            s(
                json!({"id": "b12", "command": "update", "idf": {"apps": []}, "idf_url": "https://x/"}),
            ),
            "not both",
        ),
        (s(json!({"id": "b13", "command": "assign"})), "idf"),
        (
            s(
                json!({"id": "b14", "command": "assign", "idf": {"apps": [{"name": "../x", "version": "1"}]}}),
            ),
            "apps[0].name",
        ),
        (
            s(
                json!({"id": "b15", "command": "delivery", "idf": {"apps": [{"name": "a", "version": "latest", "app_json_sha256": "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"}]}}),
            ),
            "apps[0].app_json_sha256",
        ),
        (s(json!({"id": "b16", "command": "cancel"})), "target"),
        (
            s(json!({"id": "b17", "command": "cancel", "target": "nobody"})),
            "no scheduled command",
        ),
        (
            s(json!({"id": "b18", "command": "settings", "values": {"update.splay": "2d"}})),
            "update.splay",
        ),
        (
            s(json!({"id": "b19", "command": "settings", "values": {"update.splay": null}})),
            "null",
        ),
        (
            s(
                json!({"id": "b20", "command": "settings", "values": {"update.retries": "1\nupdate.splay=1h"}}),
            ),
            "single line",
        ),
        (
            s(
                json!({"id": "b21", "command": "settings", "values": {"update.external_binary_source999.url": "https://x/"}}),
            ),
            "source number",
        ),
        (
            s(json!({"id": "b22", "command": "settings", "reset": ["no.such.thing"]})),
            "nothing to reset",
        ),
        (
            s(
                json!({"id": "b23", "command": "settings", "values": {"update.external_binary_source1.password": "a", "update.external_binary_source1.crypt_password": "b"}}),
            ),
            "not both",
        ),
        (
            s(json!({"id": "b24", "command": "status", "x": 1})),
            "status",
        ),
        (
            s(json!({"id": "b25", "command": "update", "at": later, "force": "yes"})),
            "force",
        ),
    ]
}

#[test]
fn bad_commands_are_rejected_naming_the_field_and_change_nothing() {
    let repo = Repo::start();
    repo.add(APP, "0.9", false);
    let device = repo.daemon_device("");
    let mut daemon = device.start();
    daemon.accepted(
        json!({"id": "u0", "command": "update", "idf": crate::support::daemon::idf(&[(APP, "0.9")])}),
    );
    daemon.wait_for_app(APP, "installed");
    let journal = fs::read(device.state_dir().join("state.json")).unwrap();
    for (i, (line, needle)) in bad_commands().into_iter().enumerate() {
        let reply = daemon.send(line.as_bytes());
        let what = format!("command case {i} {line:.80}");
        assert_eq!(reply["result"], "rejected", "{what}: {reply}");
        let error = reply["error"].as_str().unwrap_or_default();
        assert!(
            error.contains(needle),
            "{what}: must name {needle:?}: {error}"
        );
        assert!(daemon.is_running(), "{what}: the daemon stopped");
    }
    assert!(!daemon.stderr().contains("panicked"), "{}", daemon.stderr());
    assert_eq!(
        fs::read(device.state_dir().join("state.json")).unwrap(),
        journal
    );
}

/// Registry lines for `config import-registry`: (text, the line and what it names).
const REGISTRY: &[(&str, &str)] = &[
    ("update.nonsense=1\n", "line 1"),
    ("system.foo=1\n", "only update"),
    ("update.retries=many\n", "whole number"),
    ("update.check_on_boot=maybe\n", "true or false"),
    ("update.external_binary_source.url=x\n", "source number"),
    (
        "update.external_binary_source1.colour=red\n",
        "unknown field",
    ),
    ("# ok\nupdate.splay\n", "line 2"),
    ("update.activate_hook=/bin/sh\n", "unknown key"),
];

#[test]
fn bad_registry_lines_are_named() {
    let dir = crate::support::temp_dir("registry");
    let file = dir.path().join("registry.txt");
    for (i, (text, needle)) in REGISTRY.iter().enumerate() {
        fs::write(&file, text).unwrap();
        let what = format!("registry case {i} {text:?}");
        let out = crate::support::run_with_timeout(
            crate::support::agent_command(&[
                "config",
                "import-registry",
                &crate::support::device::path_str(&file),
            ]),
            crate::support::daemon::JOB_TIMEOUT,
        );
        no_panic(&what, &out);
        out.assert_code(2);
        assert!(
            out.stderr.contains(needle) && out.stderr.contains("registry.txt"),
            "{what}: must name {needle}\n{}",
            out.stderr
        );
    }
}

/// State files an earlier version, a crash or a hand edit left: the daemon starts, and what
/// does not validate is set aside under its name. (file, content, the name set aside)
fn bad_state_files(state_dir: &Path) -> Vec<(&'static str, String, &'static str)> {
    let _ = state_dir;
    vec![
        ("state.json", json!({"format": 2, "apps": [{"name": APP, "version": "1.0", "state": "installed", "bytes_done": u64::MAX}]}).to_string(), "app:chromium"),
        ("state.json", json!({"format": 2, "apps": [{"name": APP, "version": "1.0", "state": "installed", "files": {"../x": {"repository": "r", "validator": null}}}]}).to_string(), "app:chromium"),
        ("state.json", json!({"format": 2, "apps": [{"name": APP, "version": "1.0", "state": "installed"}, {"name": APP, "version": "1.0", "state": "installed"}]}).to_string(), "app:chromium"),
        ("state.json", json!({"format": 2, "commands": [{"id": "x", "command": "update", "not_before": "9999-01-01T00:00:00Z"}]}).to_string(), "command:x"),
        ("state.json", json!({"format": 2, "commands": [{"id": "y", "command": "update", "deferrals": 99999}]}).to_string(), "command:y"),
        ("state.json", json!({"format": 2, "commands": [{"id": "z", "command": "update", "inform_user": 99999999}]}).to_string(), "command:z"),
        ("state.json", json!({"format": 2, "commands": [{"id": "w", "command": "reboot"}]}).to_string(), "command:w"),
        ("state.json", json!({"format": 2, "idf_sha256": "not-a-digest"}).to_string(), "state:idf_sha256"),
        ("state.json", json!({"format": 2, "apps": "many"}).to_string(), "state:apps"),
        ("state.json", json!({"format": 2, "set_aside": 7}).to_string(), "state:set_aside"),
        ("settings.json", json!({"format": 9, "values": {}}).to_string(), "settings.json"),
        ("settings.json", json!({"format": 1, "values": {"update.retries": "11"}}).to_string(), "update.retries"),
        ("settings.json", json!({"format": 1, "values": {"update.external_binary_source2.url": "ftp://x/"}}).to_string(), "update.external_binary_source2"),
        ("settings.json", json!({"format": 1, "values": {"update.external_binary_source2.url": "https://x/", "update.external_binary_source2.certificate": {"credential": "../../etc/shadow"}}}).to_string(), "update.external_binary_source2"),
        ("settings.json", json!({"format": 1, "values": {"update.unknown": "1"}}).to_string(), "update.unknown"),
    ]
}

#[test]
fn bad_state_files_are_set_aside_by_name_and_the_daemon_starts() {
    let repo = Repo::start();
    for (i, (file, text, name)) in bad_state_files(Path::new("")).into_iter().enumerate() {
        let device = repo.daemon_device("");
        fs::create_dir_all(device.state_dir()).unwrap();
        fs::write(device.state_dir().join(file), &text).unwrap();
        let daemon = device.start();
        let status = daemon.status();
        let names: Vec<&str> = status["set_aside"]
            .as_array()
            .map(|a| a.iter().filter_map(|n| n["name"].as_str()).collect())
            .unwrap_or_default();
        assert!(
            names.contains(&name),
            "state case {i} ({file} {text:.100}): {name} not set aside: {names:?}\n{}",
            daemon.stderr()
        );
        assert!(!daemon.stderr().contains("panicked"), "{}", daemon.stderr());
        let _ = payload_name;
    }
}
