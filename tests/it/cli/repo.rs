//! Whole-process tests of the repository side of the command line (DESIGN 8) and of the bad
//! input a repository can send (DESIGN 4, 9).
//!
//! `repo index`, `repo serve` and `demo` run as an administrator would run them; `repo serve`
//! is then the server a real `delivery` installs from. What Apache cannot be made to serve (a
//! broken or oversized listing, an oversized or invalid `app.json`, a redirect to another
//! host) comes from the mock server. Every run against the mock uses Basic authentication
//! and checks that the credentials appear in no output and not in `state.json`.

use std::fs;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use crate::support::device::Device;
use crate::support::{
    Agent, MockResponse, MockServer, RunOutput, agent_command, pseudo_random_bytes,
    run_with_timeout, sha256_hex, temp_dir, wait_until, write_password_file,
};
use base64::Engine;
use serde_json::Value;

const TIMEOUT: Duration = Duration::from_secs(60);
const USER: &str = "device";
const PASSWORD: &str = "mock-Pa55word-never-shown";
const MIB: usize = 1024 * 1024;

pub(super) fn write_file(path: &Path, contents: &[u8]) {
    fs::create_dir_all(path.parent().expect("a file has a parent")).expect("mkdir");
    fs::write(path, contents).unwrap_or_else(|e| panic!("cannot write {}: {e}", path.display()));
}

/// curl's HTTP status for `url`, with `user:password` when given.
fn curl_status(url: &str, credentials: Option<&str>) -> String {
    let mut cmd = Command::new("curl");
    cmd.args([
        "-sS",
        "--max-time",
        "30",
        "-o",
        "/dev/null",
        "-w",
        "%{http_code}",
    ]);
    if let Some(credentials) = credentials {
        cmd.args(["-u", credentials]);
    }
    let out = cmd
        .arg(url)
        .output()
        .expect("curl is needed (apt-get install curl)");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A file of an app version: its path and contents.
type AppFile<'a> = (&'a str, &'a [u8]);

#[test]
fn repo_index_writes_app_json_with_the_size_and_sha256_of_every_file() {
    let repo = temp_dir("index");
    let ipkg = pseudo_random_bytes(1, 300_000);
    let lib = pseudo_random_bytes(2, 1234);
    write_file(&repo.path().join("chromium/120.0.1/chromium.ipkg"), &ipkg);
    write_file(&repo.path().join("chromium/120.0.1/lib/libx.so"), &lib);
    write_file(&repo.path().join("notes/2.0/README"), b"read me\n");
    write_file(&repo.path().join("notes/2.0/empty"), b"");

    let out = run_with_timeout(
        agent_command(&["repo", "index", repo.path().to_str().expect("UTF-8")]),
        TIMEOUT,
    );
    out.assert_success();

    let expected: [(&str, &str, Vec<AppFile>); 2] = [
        (
            "chromium",
            "120.0.1",
            vec![("chromium.ipkg", &ipkg), ("lib/libx.so", &lib)],
        ),
        (
            "notes",
            "2.0",
            vec![("README", b"read me\n"), ("empty", b"")],
        ),
    ];
    for (app, version, files) in expected {
        let path = repo.path().join(app).join(version).join("app.json");
        assert!(
            out.stdout.contains(&path.display().to_string()),
            "the written file is named: {}",
            out.stdout
        );
        let text = fs::read_to_string(&path).expect("app.json was written");
        let manifest: Value = serde_json::from_str(&text).expect("app.json is JSON");
        assert_eq!(manifest["name"], app);
        assert_eq!(manifest["version"], version);
        let mut listed: Vec<(String, u64, String)> = manifest["files"]
            .as_array()
            .expect("files is a list")
            .iter()
            .map(|f| {
                (
                    f["path"].as_str().expect("path").to_string(),
                    f["size"].as_u64().expect("size"),
                    f["sha256"].as_str().expect("sha256").to_string(),
                )
            })
            .collect();
        listed.sort();
        let wanted: Vec<(String, u64, String)> = files
            .iter()
            .map(|(p, data)| (p.to_string(), data.len() as u64, sha256_hex(data)))
            .collect();
        assert_eq!(listed, wanted, "{app} {version}");
    }
}

#[test]
fn repo_index_refuses_a_badly_named_app_directory_naming_it() {
    let repo = temp_dir("index");
    write_file(&repo.path().join("Chromium Beta/1.0/file.bin"), b"x");
    let out = run_with_timeout(
        agent_command(&["repo", "index", repo.path().to_str().expect("UTF-8")]),
        TIMEOUT,
    );
    out.assert_code(2);
    assert!(out.stderr.contains("Chromium Beta"), "{}", out.stderr);
    assert!(!repo.path().join("Chromium Beta/1.0/app.json").exists());
}

/// `repo serve` printed `serving on http://ADDR/`: the base URL.
fn served_url(stdout: &str) -> Option<String> {
    let line = stdout
        .lines()
        .find(|l| l.starts_with("serving on http://"))?;
    let url = line.trim_start_matches("serving on ").trim();
    url.ends_with('/').then(|| url.to_string())
}

#[test]
fn repo_serve_with_basic_auth_serves_a_repository_that_delivery_installs() {
    const SERVE_PASSWORD: &str = "serve-Pa55word-value";
    let dir = temp_dir("serve");
    let repo = dir.path().join("repo");
    let payload = pseudo_random_bytes(5, 700_000);
    write_file(&repo.join("notes/1.9/bin/notes"), b"old");
    write_file(&repo.join("notes/2.0/bin/notes"), &payload);
    write_file(&repo.join("notes/2.0/README"), b"notes 2.0\n");
    run_with_timeout(
        agent_command(&["repo", "index", repo.to_str().expect("UTF-8")]),
        TIMEOUT,
    )
    .assert_success();
    let secrets = dir.path().join("secrets");
    fs::create_dir_all(&secrets).expect("mkdir secrets");
    let server_pw = write_password_file(&secrets, "serve.pw", SERVE_PASSWORD);
    let agent_pw = write_password_file(&secrets, "agent.pw", SERVE_PASSWORD);

    let server_side = Agent::new(dir.path().join("unused.toml"), dir.path().join("unused"));
    let mut server = server_side.spawn(&[
        "repo",
        "serve",
        repo.to_str().expect("UTF-8"),
        "--listen",
        "127.0.0.1:0",
        "--user",
        "demo",
        "--password-file",
        server_pw.to_str().expect("UTF-8"),
    ]);
    wait_until("repo serve to print its address", TIMEOUT, || {
        assert!(
            server.is_running(),
            "repo serve exited: {}",
            server.stderr()
        );
        served_url(&server.stdout()).is_some()
    });
    let url = served_url(&server.stdout()).expect("the address was printed");

    let app_json = format!("{url}notes/2.0/app.json");
    assert_eq!(curl_status(&app_json, None), "401");
    assert_eq!(curl_status(&app_json, Some("demo:wrong")), "401");
    let good = format!("demo:{SERVE_PASSWORD}");
    assert_eq!(curl_status(&app_json, Some(&good)), "200");

    let config = dir.path().join("agent.toml");
    fs::write(
        &config,
        format!(
            "[update]\nretries = 0\n\n[[repository]]\nname = \"lab\"\nurl = {url:?}\nauth = \"basic\"\n\
             username = \"demo\"\npassword_file = {:?}\n\n[[app]]\nname = \"notes\"\nversion = \"latest\"\n",
            agent_pw.display().to_string()
        ),
    )
    .expect("cannot write agent.toml");
    let state = dir.path().join("state");
    let agent = Agent::new(&config, &state);
    let out = agent.run(&["delivery"], TIMEOUT);
    out.assert_success();

    let installed = state.join("apps/notes/2.0");
    assert_eq!(
        fs::read(installed.join("bin/notes")).expect("staged"),
        payload
    );
    assert_eq!(
        fs::read(installed.join("README")).expect("staged"),
        b"notes 2.0\n"
    );
    let status = agent
        .run(&["status", "--json"], TIMEOUT)
        .assert_success()
        .json();
    let app = &status["apps"][0];
    assert_eq!(
        (&app["name"], &app["version"], &app["state"]),
        (
            &"notes".into(),
            &"2.0".into(),
            &"marked-for-installation".into()
        ),
        "{status}"
    );
    assert_eq!(app["repository"], "lab");
    assert_eq!(app["bytes_done"], app["bytes_total"]);

    let state_json = fs::read_to_string(state.join("state.json")).expect("state.json");
    for (what, text) in [
        ("delivery stdout", out.stdout.as_str()),
        ("delivery stderr", &out.stderr),
        ("state.json", &state_json),
        ("repo serve stdout", &server.stdout()),
        ("repo serve stderr", &server.stderr()),
    ] {
        assert!(
            !text.contains(SERVE_PASSWORD),
            "{what} shows the password:\n{text}"
        );
    }
}

/// `repo serve DIR ARGS...` in the background, once it printed its address: the process and
/// the base URL.
pub(super) fn start_serve(dir: &Path, args: &[&str]) -> (crate::support::RunningAgent, String) {
    let unused = dir.join("unused");
    let mut all = vec!["repo", "serve", dir.to_str().expect("UTF-8")];
    all.extend_from_slice(args);
    let mut server = Agent::new(unused.join("agent.toml"), &unused).spawn(&all);
    wait_until("repo serve to print its address", TIMEOUT, || {
        assert!(
            server.is_running(),
            "repo serve exited: {}",
            server.stderr()
        );
        served_url(&server.stdout()).is_some()
    });
    let url = served_url(&server.stdout()).expect("the address was printed");
    (server, url)
}

#[test]
fn repo_serve_logs_one_access_line_per_request_and_never_the_credentials() {
    const SERVE_PASSWORD: &str = "access-Pa55word-value";
    let dir = temp_dir("serve-log");
    let repo = dir.path().join("repo");
    write_file(&repo.join("notes/2.0/README"), b"notes 2.0\n");
    run_with_timeout(
        agent_command(&["repo", "index", repo.to_str().expect("UTF-8")]),
        TIMEOUT,
    )
    .assert_success();
    let app_json_len = fs::read(repo.join("notes/2.0/app.json"))
        .expect("app.json")
        .len();
    let pw = write_password_file(dir.path(), "serve.pw", SERVE_PASSWORD);
    let (mut server, url) = start_serve(
        &repo,
        &[
            "--listen",
            "127.0.0.1:0",
            "--user",
            "demo",
            "--password-file",
            pw.to_str().expect("UTF-8"),
        ],
    );
    let good = format!("demo:{SERVE_PASSWORD}");

    assert_eq!(
        curl_status(&format!("{url}notes/2.0/app.json"), None),
        "401"
    );
    server.wait_for_stderr("\"GET /notes/2.0/app.json\" 401 ", TIMEOUT);
    assert_eq!(
        curl_status(&format!("{url}notes/2.0/app.json"), Some(&good)),
        "200"
    );
    let ok_line = format!("\"GET /notes/2.0/app.json\" 200 {app_json_len} bytes");
    server.wait_for_stderr(&ok_line, TIMEOUT);
    assert_eq!(curl_status(&format!("{url}nope/1.0/x"), Some(&good)), "404");
    server.wait_for_stderr("\"GET /nope/1.0/x\" 404 ", TIMEOUT);

    let stderr = server.stderr();
    let access: Vec<&str> = stderr.lines().filter(|l| l.contains(" \"GET /")).collect();
    assert_eq!(access.len(), 3, "one line per request:\n{stderr}");
    for line in &access {
        assert!(line.contains(" INFO "), "logged at info: {line}");
        assert!(line.contains("127.0.0.1:"), "the client address: {line}");
        assert!(line.trim_end().ends_with(" ms"), "the duration: {line}");
    }
    assert!(
        access.iter().any(|l| l.contains(&ok_line)),
        "bytes sent: {access:?}"
    );
    let basic = base64::engine::general_purpose::STANDARD.encode(&good);
    assert!(
        !stderr.contains(SERVE_PASSWORD) && !stderr.contains(&basic),
        "the credentials are logged:\n{stderr}"
    );
    assert!(!stderr.contains("Basic "), "{stderr}");
}

#[test]
fn repo_serve_listens_on_a_bare_port_on_loopback_and_on_a_host_name() {
    let dir = temp_dir("serve-listen");
    write_file(&dir.path().join("notes/2.0/README"), b"notes 2.0\n");
    for listen in ["0", "localhost:0"] {
        let (mut server, url) = start_serve(dir.path(), &["--listen", listen]);
        assert!(
            url.starts_with("http://127.0.0.1:"),
            "--listen {listen}: loopback, got {url}"
        );
        assert_eq!(
            curl_status(&format!("{url}notes/2.0/README"), None),
            "200",
            "--listen {listen}"
        );
        server.wait_for_stderr("\"GET /notes/2.0/README\" 200 10 bytes", TIMEOUT);
    }
}

#[test]
fn repo_serve_refuses_a_bad_listen_value_naming_it() {
    let dir = temp_dir("serve-listen");
    for bad in ["nonsense", "127.0.0.1:99999", "::1", "localhost"] {
        let out = run_with_timeout(
            agent_command(&[
                "repo",
                "serve",
                dir.path().to_str().expect("UTF-8"),
                "--listen",
                bad,
            ]),
            TIMEOUT,
        );
        out.assert_code(2);
        assert!(
            out.stderr.contains(&format!("'{bad}'")) && out.stderr.contains("--listen"),
            "{bad}: {}",
            out.stderr
        );
        assert!(!out.stdout.contains("serving on"), "{bad}: {}", out.stdout);
    }
}

#[test]
fn repo_index_that_finds_nothing_to_index_says_so_and_exits_1() {
    let repo = temp_dir("index-nothing");
    let empty = repo.path().join("empty");
    fs::create_dir_all(&empty).expect("mkdir");
    write_file(&repo.path().join("notes/2.0/README"), b"read me\n");
    let notes = repo.path().join("notes");
    let version = notes.join("2.0");
    for (dir, looks_like) in [
        (&empty, "empty"),
        (&notes, "looks like an app directory"),
        (&version, "looks like a version directory"),
    ] {
        let dir_text = dir.to_str().expect("UTF-8");
        let out = run_with_timeout(agent_command(&["repo", "index", dir_text]), TIMEOUT);
        out.assert_code(1);
        for wanted in [dir_text, "<app>/<version>/", looks_like] {
            assert!(
                out.stderr.contains(wanted),
                "{dir_text}: {wanted:?} missing:\n{}",
                out.stderr
            );
        }
        assert_eq!(out.stdout, "", "{dir_text}: nothing was written");
    }
    assert!(!version.join("app.json").exists());
}

#[test]
fn repo_index_reports_every_bad_name_and_indexes_nothing() {
    let repo = temp_dir("index-bad");
    write_file(&repo.path().join("good/1.0/file.bin"), b"x");
    write_file(&repo.path().join("Chromium Beta/1.0/file.bin"), b"x");
    write_file(&repo.path().join("notes/-2/file.bin"), b"x");
    std::os::unix::fs::symlink("good", repo.path().join("alias")).expect("symlink");

    let out = run_with_timeout(
        agent_command(&["repo", "index", repo.path().to_str().expect("UTF-8")]),
        TIMEOUT,
    );

    out.assert_code(2);
    for bad in ["Chromium Beta", "notes/-2", "alias"] {
        let path = repo.path().join(bad).display().to_string();
        assert!(
            out.stderr.lines().any(|l| l.contains(&path)),
            "{bad} is not reported:\n{}",
            out.stderr
        );
    }
    assert!(out.stderr.contains("nothing was indexed"), "{}", out.stderr);
    assert!(!repo.path().join("good/1.0/app.json").exists());
    assert_eq!(out.stdout, "");
}

/// The argument or option lines of `--help` each followed by a description.
#[track_caller]
fn assert_described(help: &str, items: &[&str]) {
    let lines: Vec<&str> = help.lines().collect();
    for item in items {
        let at = lines
            .iter()
            .position(|l| l.trim() == *item || l.trim().starts_with(&format!("{item}  ")))
            .unwrap_or_else(|| panic!("{item} is not in the help:\n{help}"));
        let described = lines[at].trim() != *item
            || lines
                .get(at + 1)
                .is_some_and(|next| next.starts_with("      ") && !next.trim().is_empty());
        assert!(described, "{item} has no description:\n{help}");
    }
}

#[test]
fn repo_help_describes_every_argument_and_option_and_the_exit_codes() {
    let help = |cmd: &str| {
        let out = run_with_timeout(agent_command(&["repo", cmd, "--help"]), TIMEOUT);
        out.assert_success();
        out.stdout.clone()
    };
    // Help is wrapped to the terminal's width: compare words, not line breaks.
    let flat = |text: &str| text.split_whitespace().collect::<Vec<_>>().join(" ");
    let index = help("index");
    assert_described(&index, &["<DIR>"]);
    assert!(
        flat(&index).contains("nothing is indexed") && index.contains("Exit status"),
        "{index}"
    );
    let serve = help("serve");
    assert_described(
        &serve,
        &[
            "<DIR>",
            "--listen <ADDR>",
            "--user <USER>",
            "--password-file <PATH>",
        ],
    );
    assert!(
        flat(&serve).contains("bare PORT, which means 127.0.0.1:PORT"),
        "{serve}"
    );
}

#[test]
fn demo_delivers_and_activates_both_apps_within_a_minute_and_prints_the_status_table() {
    let out = run_with_timeout(agent_command(&["demo"]), TIMEOUT);
    out.assert_success();
    for app in ["demo-app", "notes-viewer"] {
        let row = out
            .stdout
            .lines()
            .rfind(|l| l.starts_with(&format!("{app} ")))
            .unwrap_or_else(|| panic!("no status row for {app}:\n{}", out.stdout));
        assert!(row.contains("installed (active)"), "{app}: {row}");
    }
}

// ---- bad input from a repository (mock server) ----

/// A device that delivers from one mock repository with Basic authentication; `version` is
/// the `[[app]]` version of `demo-app` (`latest` makes the agent list).
fn mock_device(mock: &MockServer, version: &str) -> Device {
    let device = Device::unconfigured();
    let pw = write_password_file(&device.etc(), "repo.pw", PASSWORD);
    device.write_config(&format!(
        "[update]\nretries = 1\nretry_backoff = \"10ms\"\nconnect_timeout = \"5s\"\nread_timeout = \"20s\"\n\n\
         [[repository]]\nname = \"mock\"\nurl = \"{}\"\nauth = \"basic\"\nusername = \"{USER}\"\n\
         password_file = {:?}\n\n[[app]]\nname = \"demo-app\"\nversion = \"{version}\"\n",
        mock.url(),
        pw.display().to_string()
    ));
    device
}

/// `delivery`, checked for the things every bad-input run must show: exit 1, no panic, no
/// credentials anywhere.
#[track_caller]
fn deliver_and_fail(device: &Device) -> RunOutput {
    let out = device.agent().run(&["delivery"], TIMEOUT);
    out.assert_code(1);
    assert!(!out.stderr.contains("panicked"), "{}", out.stderr);
    assert_no_credentials(&out, device.state_dir());
    out
}

#[track_caller]
fn assert_no_credentials(out: &RunOutput, state_dir: &Path) {
    let basic = base64::engine::general_purpose::STANDARD.encode(format!("{USER}:{PASSWORD}"));
    let state = fs::read_to_string(state_dir.join("state.json")).unwrap_or_default();
    for (what, text) in [
        ("stdout", out.stdout.as_str()),
        ("stderr", &out.stderr),
        ("state.json", &state),
    ] {
        assert!(
            !text.contains(PASSWORD) && !text.contains(&basic),
            "{what} shows the credentials:\n{text}"
        );
    }
}

/// Every request the mock got carried the Basic credentials (so the test proves they were in
/// play, and that the other assertions are not vacuous).
#[track_caller]
fn assert_sent_credentials(mock: &MockServer) {
    let basic = base64::engine::general_purpose::STANDARD.encode(format!("{USER}:{PASSWORD}"));
    let requests = mock.requests();
    assert!(!requests.is_empty(), "the agent never asked the repository");
    for r in requests {
        assert_eq!(
            r.header("Authorization"),
            Some(format!("Basic {basic}").as_str()),
            "{} {}",
            r.method,
            r.path
        );
    }
}

fn multistatus(hrefs: &[String]) -> String {
    let mut xml = String::from(
        "<?xml version=\"1.0\" encoding=\"utf-8\"?>\n<D:multistatus xmlns:D=\"DAV:\">\n",
    );
    for href in hrefs {
        xml.push_str(&format!(
            "<D:response><D:href>{href}</D:href><D:propstat><D:prop><D:resourcetype><D:collection/>\
             </D:resourcetype></D:prop><D:status>HTTP/1.1 200 OK</D:status></D:propstat></D:response>\n"
        ));
    }
    xml.push_str("</D:multistatus>\n");
    xml
}

fn listing(body: impl Into<Vec<u8>>) -> MockResponse {
    MockResponse::status(207)
        .header("Content-Type", "application/xml; charset=utf-8")
        .body(body)
}

/// Delivers `latest` from a mock whose PROPFIND of `/demo-app/` answers 207 with `body`, and
/// checks the failure names the listing's URL and no version from it was used.
fn assert_listing_refused(what: &str, body: String) {
    let mock = MockServer::start();
    mock.route_method("PROPFIND", "/demo-app/", listing(body));
    let device = mock_device(&mock, "latest");

    let out = deliver_and_fail(&device);
    let used: Vec<String> = mock
        .requests()
        .into_iter()
        .filter(|r| r.method != "PROPFIND")
        .map(|r| format!("{} {}", r.method, r.path))
        .collect();
    assert!(
        used.is_empty(),
        "{what}: a version from the listing was used: {used:?}"
    );
    let url = format!("{}demo-app/", mock.url());
    assert!(
        out.stderr.contains(&url),
        "{what}: the error must name {url}\n{}",
        out.stderr
    );
    assert_sent_credentials(&mock);
}

#[test]
fn a_propfind_listing_with_mismatched_tags_fails_the_delivery_naming_the_url() {
    assert_listing_refused(
        "mismatched end tag",
        "<?xml version=\"1.0\"?><D:multistatus xmlns:D=\"DAV:\"><D:response>\
         <D:href>/demo-app/1.0/</D:propstat></D:response></D:multistatus>"
            .to_string(),
    );
}

#[test]
fn a_propfind_answer_that_is_not_xml_fails_the_delivery_naming_the_url() {
    assert_listing_refused("not XML", "}{ this is not a listing <<< >>".to_string());
}

/// A listing cut off after `1.0` (the server or a proxy broke off, with a matching
/// `Content-Length`) must not make `1.0` the latest version: `2.0` may be what was cut.
#[test]
fn a_propfind_listing_cut_off_mid_document_is_refused_not_read_as_complete() {
    let complete = multistatus(&["/demo-app/".into(), "/demo-app/1.0/".into()]);
    let cut = complete.replace("</D:multistatus>\n", "<D:response><D:href>/demo-app/2.");
    assert_listing_refused("cut off", cut);
}

#[test]
fn a_propfind_listing_over_4_mib_is_refused_naming_the_url() {
    let entry_len = multistatus(&["/demo-app/1.0.0/".into()]).len() - multistatus(&[]).len();
    let hrefs: Vec<String> = (0..(4 * MIB / entry_len + 100))
        .map(|n| format!("/demo-app/1.0.{n}/"))
        .collect();
    let body = multistatus(&hrefs);
    assert!(body.len() > 4 * MIB, "{}", body.len());
    for (what, response) in [
        ("with Content-Length", listing(body.clone())),
        (
            "without Content-Length",
            listing(body.clone()).omit_length(),
        ),
    ] {
        let mock = MockServer::start();
        mock.route_method("PROPFIND", "/demo-app/", response);
        let device = mock_device(&mock, "latest");

        let out = deliver_and_fail(&device);
        let url = format!("{}demo-app/", mock.url());
        assert!(
            out.stderr.contains(&url),
            "{what}: the error must name {url}\n{}",
            out.stderr
        );
        assert!(
            out.stderr.contains("limit") || out.stderr.contains("large"),
            "{what}: the error must say the listing is too large\n{}",
            out.stderr
        );
        let asked_for_manifest = mock.requests().iter().any(|r| r.path.ends_with("app.json"));
        assert!(
            !asked_for_manifest,
            "{what}: a version from the listing was used"
        );
    }
}

fn manifest(files: Value) -> String {
    serde_json::json!({"name": "demo-app", "version": "1.0", "files": files, "reboot": false})
        .to_string()
}

#[test]
fn an_app_json_over_1_mib_is_refused_with_a_clear_error() {
    let data = b"payload".to_vec();
    let valid = manifest(serde_json::json!([
        {"path": "f.bin", "size": data.len(), "sha256": sha256_hex(&data)}
    ]));
    // Still valid JSON: only the size is wrong with it.
    let oversized = format!("{valid}{}", " ".repeat(MIB));
    for (what, response) in [
        ("with Content-Length", MockResponse::file(oversized.clone())),
        (
            "without Content-Length",
            MockResponse::file(oversized.clone()).omit_length(),
        ),
    ] {
        let mock = MockServer::start();
        mock.route("/demo-app/1.0/app.json", response);
        mock.route("/demo-app/1.0/f.bin", MockResponse::file(data.clone()));
        let device = mock_device(&mock, "1.0");

        let out = deliver_and_fail(&device);
        assert!(out.stderr.contains("app.json"), "{what}: {}", out.stderr);
        assert!(
            out.stderr.contains("limit") || out.stderr.contains("large"),
            "{what}: the error must say app.json is too large\n{}",
            out.stderr
        );
        assert!(
            mock.requests_for("/demo-app/1.0/f.bin").is_empty(),
            "{what}"
        );
        assert_sent_credentials(&mock);
    }
}

#[test]
fn app_json_with_a_bad_field_is_rejected_naming_the_field() {
    let sha = sha256_hex(b"payload");
    let cases = [
        (
            "files[0].size",
            serde_json::json!([{"path": "f.bin", "size": 64u64 * 1024 * 1024 * 1024 + 1, "sha256": sha}]),
        ),
        (
            "files[0].sha256",
            serde_json::json!([{"path": "f.bin", "size": 7, "sha256": "not-a-digest"}]),
        ),
        (
            "files[0].path",
            serde_json::json!([{"path": "/etc/passwd", "size": 7, "sha256": sha}]),
        ),
    ];
    for (field, files) in cases {
        let mock = MockServer::start();
        mock.route(
            "/demo-app/1.0/app.json",
            MockResponse::file(manifest(files)),
        );
        mock.route(
            "/demo-app/1.0/f.bin",
            MockResponse::file(b"payload".to_vec()),
        );
        let device = mock_device(&mock, "1.0");

        let out = deliver_and_fail(&device);
        assert!(
            out.stderr.contains(field),
            "the error must name {field}\n{}",
            out.stderr
        );
        let fetched_files: Vec<String> = mock
            .requests()
            .into_iter()
            .filter(|r| !r.path.ends_with("app.json"))
            .map(|r| format!("{} {}", r.method, r.path))
            .collect();
        assert!(fetched_files.is_empty(), "{field}: {fetched_files:?}");
        let status = device
            .agent()
            .run(&["status", "--json"], TIMEOUT)
            .assert_success()
            .json();
        assert_eq!(status["apps"][0]["state"], "download-failed", "{status}");
        assert!(
            status["apps"][0]["error"]
                .as_str()
                .is_some_and(|e| e.contains(field)),
            "{status}"
        );
    }
}

#[test]
fn a_redirect_to_another_host_is_refused_and_the_other_host_gets_no_request() {
    let data = pseudo_random_bytes(9, 10_000);
    let app_json = manifest(serde_json::json!([
        {"path": "f.bin", "size": data.len(), "sha256": sha256_hex(&data)}
    ]));
    for redirected in ["/demo-app/1.0/f.bin", "/demo-app/1.0/app.json"] {
        let elsewhere = MockServer::start();
        elsewhere.route("/demo-app/1.0/f.bin", MockResponse::file(data.clone()));
        elsewhere.route(
            "/demo-app/1.0/app.json",
            MockResponse::file(app_json.clone()),
        );
        let repo = MockServer::start();
        repo.route(
            "/demo-app/1.0/app.json",
            MockResponse::file(app_json.clone()),
        );
        repo.route("/demo-app/1.0/f.bin", MockResponse::file(data.clone()));
        let location = format!("http://127.0.0.1:{}{redirected}", elsewhere.port());
        repo.route(
            redirected,
            MockResponse::status(302).header("Location", &location),
        );
        let device = mock_device(&repo, "1.0");

        let out = deliver_and_fail(&device);
        assert!(
            out.stderr.to_lowercase().contains("redirect"),
            "{redirected}: the error must mention the redirect\n{}",
            out.stderr
        );
        assert_eq!(
            elsewhere.requests().len(),
            0,
            "{redirected}: the other host was contacted: {:?}",
            elsewhere.requests()
        );
        assert!(!repo.requests_for(redirected).is_empty(), "{redirected}");
        assert_sent_credentials(&repo);
        assert!(
            !device.state_dir().join("apps/demo-app/1.0/f.bin").exists(),
            "{redirected}: nothing may be staged"
        );
    }
}

/// A reader that goes away (`demo | head -1`, `2>&1 | head -1`) ends the printing, not the
/// command: no panic, the exit code of the work, the temporary directory removed.
#[test]
fn a_closed_pipe_ends_the_output_quietly_and_the_demo_still_cleans_up() {
    use std::io::{BufRead, BufReader};
    use std::process::{Command, Stdio};
    for both in [false, true] {
        let tmp = temp_dir("epipe");
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_igel-update-agent"));
        cmd.arg("demo")
            .env("TMPDIR", tmp.path())
            .stdin(Stdio::null())
            .stdout(Stdio::piped());
        if both {
            // stderr into the same closed pipe, through a shell.
            cmd = Command::new("sh");
            cmd.arg("-c")
                .arg(format!(
                    "exec '{}' demo 2>&1",
                    env!("CARGO_BIN_EXE_igel-update-agent")
                ))
                .env("TMPDIR", tmp.path())
                .stdin(Stdio::null())
                .stdout(Stdio::piped());
        } else {
            cmd.stderr(Stdio::piped());
        }
        let mut child = cmd.spawn().unwrap();
        let mut first = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut first)
            .unwrap();
        // The reader is gone now.
        let deadline = std::time::Instant::now() + Duration::from_secs(120);
        let status = loop {
            if let Some(status) = child.try_wait().unwrap() {
                break status;
            }
            if std::time::Instant::now() > deadline {
                let _ = child.kill();
                panic!("both={both}: the demo did not end after its reader went away");
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        let stderr = child
            .stderr
            .take()
            .map(|mut e| {
                let mut s = String::new();
                let _ = std::io::Read::read_to_string(&mut e, &mut s);
                s
            })
            .unwrap_or_default();
        assert!(!stderr.contains("panicked"), "{stderr}");
        assert_eq!(status.code(), Some(0), "both={both}: {status}\n{stderr}");
        let left: Vec<_> = fs::read_dir(tmp.path()).unwrap().flatten().collect();
        assert!(left.is_empty(), "both={both}: left behind: {left:?}");
    }
}
