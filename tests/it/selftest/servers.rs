//! Proves the test harness in `tests/it/support/` works, without the agent: private Apache
//! instances (plain, Basic, Digest, TLS, WebDAV listing, throttled), the fault mock, the
//! throw-away PKI, and the process and repository helpers. curl plays the client.

use std::process::Command;
use std::time::{Duration, Instant};

use crate::support::agent::{agent_command, run_with_timeout, write_password_file};
use crate::support::apache::parse_access_line;
use crate::support::{
    AccessEntry, Apache, MockResponse, MockServer, TlsFiles, pseudo_random_bytes, sha256_hex,
    temp_dir, write_app,
};

const LOG_WAIT: Duration = Duration::from_secs(5);

/// What curl did: its exit code, the body it received and its stderr.
struct Curl {
    code: i32,
    body: Vec<u8>,
    stderr: String,
}

fn curl(args: &[&str]) -> Curl {
    let out = Command::new("curl")
        .args(["-sS", "--max-time", "30"])
        .args(args)
        .output()
        .expect("curl is needed by the harness self-test (apt-get install curl)");
    Curl {
        code: out.status.code().unwrap_or(-1),
        body: out.stdout,
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// curl printing only the HTTP status (`-w %{http_code}`), body discarded.
fn curl_status(args: &[&str]) -> String {
    let mut all = vec!["-o", "/dev/null", "-w", "%{http_code}"];
    all.extend_from_slice(args);
    let out = curl(&all);
    String::from_utf8(out.body).expect("curl printed a non-UTF-8 status")
}

/// A repository root with one app version whose file is 1000 pseudo-random bytes.
fn repo_with_demo_app() -> (tempfile::TempDir, Vec<u8>) {
    let root = temp_dir("repo");
    let data = pseudo_random_bytes(7, 1000);
    write_app(
        root.path(),
        "demo-app",
        "1.0.0",
        &[("demo.bin", data.clone())],
        false,
    );
    (root, data)
}

const FILE: &str = "demo-app/1.0.0/demo.bin";

#[test]
fn apache_serves_a_range_over_plain_http_and_logs_it() {
    let (root, data) = repo_with_demo_app();
    let apache = Apache::builder(root.path()).start();
    let got = curl(&["-r", "10-19", &format!("{}{FILE}", apache.url())]);
    assert_eq!(got.code, 0, "curl failed: {}", got.stderr);
    assert_eq!(got.body, &data[10..20]);

    let log = apache.wait_for_access_log(LOG_WAIT, |log| !log.is_empty());
    let expected = AccessEntry {
        status: 206,
        bytes: 10,
        method: "GET".into(),
        path: format!("/{FILE}"),
        range: Some("bytes=10-19".into()),
        if_range: None,
    };
    assert_eq!(
        log,
        vec![expected],
        "the readiness probe must not be logged"
    );
}

#[test]
fn apache_basic_auth_admits_only_the_right_password() {
    let (root, data) = repo_with_demo_app();
    let apache = Apache::builder(root.path())
        .basic_auth("device", "s3cret")
        .start();
    let url = format!("{}{FILE}", apache.url());
    assert_eq!(curl_status(&[&url]), "401");
    assert_eq!(curl_status(&["-u", "device:wrong", &url]), "401");
    let got = curl(&["-f", "-u", "device:s3cret", &url]);
    assert_eq!(got.code, 0, "curl failed: {}", got.stderr);
    assert_eq!(got.body, data);
}

#[test]
fn apache_digest_auth_admits_curl_digest_and_logs_the_challenge() {
    let (root, data) = repo_with_demo_app();
    let apache = Apache::builder(root.path())
        .digest_auth("device", "s3cret")
        .realm("branch-office")
        .digest_nonce_lifetime(2)
        .start();
    let url = format!("{}{FILE}", apache.url());
    assert_eq!(
        curl_status(&["--basic", "-u", "device:s3cret", &url]),
        "401"
    );
    let got = curl(&["-f", "--digest", "-u", "device:s3cret", "-r", "0-99", &url]);
    assert_eq!(got.code, 0, "curl failed: {}", got.stderr);
    assert_eq!(got.body, &data[..100]);

    let log = apache.wait_for_access_log(LOG_WAIT, |log| log.len() >= 3);
    let statuses: Vec<u16> = log.iter().map(|e| e.status).collect();
    assert_eq!(statuses, [401, 401, 206], "log: {log:#?}");
}

#[test]
fn apache_serves_https_with_the_generated_ca() {
    let (root, data) = repo_with_demo_app();
    let tls = TlsFiles::localhost();
    let apache = Apache::builder(root.path()).tls_files(&tls).start();
    assert!(apache.url().starts_with("https://127.0.0.1:"));
    let ca = tls.ca_path().to_str().expect("UTF-8 temp path");

    let url = format!("{}{FILE}", apache.url());
    let got = curl(&["--cacert", ca, "-r", "10-19", &url]);
    assert_eq!(got.code, 0, "curl failed: {}", got.stderr);
    assert_eq!(got.body, &data[10..20]);
    // The certificate also names localhost.
    let by_name = format!("https://localhost:{}/{FILE}", apache.port());
    let got = curl(&["--cacert", ca, &by_name]);
    assert_eq!(got.code, 0, "curl via localhost failed: {}", got.stderr);
    assert_eq!(got.body, data);
    // Without the private CA the chain is untrusted (curl exit 60).
    assert_eq!(curl(&[&url]).code, 60);

    let log = apache.wait_for_access_log(LOG_WAIT, |log| log.len() >= 2);
    assert_eq!(log[0].range.as_deref(), Some("bytes=10-19"));
    assert_eq!((log[0].status, log[0].bytes), (206, 10));
}

#[test]
fn apache_with_an_expired_certificate_is_refused_by_curl() {
    let (root, _) = repo_with_demo_app();
    let tls = TlsFiles::localhost_expired();
    let apache = Apache::builder(root.path()).tls_files(&tls).start();
    let ca = tls.ca_path().to_str().expect("UTF-8 temp path");
    let got = curl(&["--cacert", ca, &format!("{}{FILE}", apache.url())]);
    assert_eq!(got.code, 60, "expected a certificate error: {}", got.stderr);
    assert!(got.stderr.contains("expired"), "curl said: {}", got.stderr);
}

#[test]
fn apache_propfind_depth_one_lists_the_versions() {
    let root = temp_dir("repo");
    for version in ["1.0.0", "1.1.0"] {
        write_app(
            root.path(),
            "demo-app",
            version,
            &[("a.bin", vec![1; 10])],
            false,
        );
    }
    let apache = Apache::builder(root.path())
        .digest_auth("device", "pw")
        .start();
    let got = curl(&[
        "--digest",
        "-u",
        "device:pw",
        "-X",
        "PROPFIND",
        "-H",
        "Depth: 1",
        "-w",
        "\n%{http_code}",
        &format!("{}demo-app/", apache.url()),
    ]);
    let text = String::from_utf8(got.body).expect("PROPFIND answer is UTF-8");
    assert!(text.ends_with("\n207"), "PROPFIND answered: {text}");
    for href in [
        "<D:href>/demo-app/</D:href>",
        "<D:href>/demo-app/1.0.0/</D:href>",
        "<D:href>/demo-app/1.1.0/</D:href>",
    ] {
        assert!(text.contains(href), "{href} missing from: {text}");
    }
}

#[test]
fn apache_stop_refuses_connections_until_restart() {
    let (root, _) = repo_with_demo_app();
    let mut apache = Apache::builder(root.path()).start();
    let url = format!("{}{FILE}", apache.url());
    assert_eq!(curl_status(&[&url]), "200");
    apache.stop();
    assert!(!apache.is_running());
    assert_eq!(curl(&[&url]).code, 7, "curl exit 7 = connection refused");
    apache.restart();
    assert_eq!(curl_status(&[&url]), "200");
}

#[test]
fn apache_rate_limit_slows_a_download() {
    let root = temp_dir("repo");
    write_app(
        root.path(),
        "big",
        "1",
        &[("f", pseudo_random_bytes(1, 256 * 1024))],
        false,
    );
    let apache = Apache::builder(root.path())
        .rate_limit_kib_per_sec(128)
        .start();
    let started = Instant::now();
    let got = curl(&["-f", &format!("{}big/1/f", apache.url())]);
    assert_eq!(got.code, 0, "curl failed: {}", got.stderr);
    assert_eq!(got.body.len(), 256 * 1024);
    // 256 KiB at 128 KiB/s: about 2 s; a generous lower bound only proves the filter is on.
    assert!(
        started.elapsed() >= Duration::from_millis(1200),
        "took {:?}",
        started.elapsed()
    );
}

#[test]
fn access_log_lines_parse_with_apache_escapes() {
    let entry = parse_access_line(r#"206 10 "GET /a%20b HTTP/1.1" "bytes=0-9" "\"abc\"""#)
        .expect("line parses");
    assert_eq!(entry.path, "/a%20b");
    assert_eq!(entry.if_range.as_deref(), Some("\"abc\""));
    let entry = parse_access_line(r#"408 0 "-" "-" "-""#).expect("a request-less line parses");
    assert_eq!(
        (entry.status, entry.method.as_str(), entry.range),
        (408, "-", None)
    );
}

#[test]
fn mock_ignoring_range_returns_200_with_the_full_body() {
    let mock = MockServer::start();
    let data = pseudo_random_bytes(3, 500);
    mock.route("/f.bin", MockResponse::file(data.clone()).ignore_range());
    let got = curl(&["-r", "10-19", "-D", "-", &format!("{}f.bin", mock.url())]);
    assert_eq!(got.code, 0, "curl failed: {}", got.stderr);
    let text = String::from_utf8_lossy(&got.body);
    assert!(text.starts_with("HTTP/1.1 200 OK\r\n"), "answer: {text}");
    assert!(got.body.ends_with(&data));
    let requests = mock.requests_for("/f.bin");
    assert_eq!(requests.len(), 1);
    assert_eq!(requests[0].range(), Some("bytes=10-19"));
}

#[test]
fn mock_honours_range_and_if_range() {
    let mock = MockServer::start();
    let data = pseudo_random_bytes(4, 100);
    mock.route("/f.bin", MockResponse::file(data.clone()));
    let url = format!("{}f.bin", mock.url());
    let got = curl(&["-f", "-r", "90-", &url]);
    assert_eq!(got.body, &data[90..]);
    // A stale validator gets the whole file again.
    let got = curl(&["-f", "-r", "90-", "-H", "If-Range: \"stale\"", &url]);
    assert_eq!(got.body, data);
    assert_eq!(curl_status(&["-r", "100-", &url]), "416");
    // Two requests on one kept-alive connection.
    let twice = curl(&["-f", &url, &url]);
    assert_eq!(twice.body, [data.clone(), data.clone()].concat());
    assert!(twice.stderr.is_empty(), "curl: {}", twice.stderr);
    assert_eq!(curl_status(&[&format!("{}nothing", mock.url())]), "404");
}

#[test]
fn mock_faults_short_body_overlong_body_and_status_sequence() {
    let mock = MockServer::start();
    let data = pseudo_random_bytes(5, 4000);
    mock.route("/short", MockResponse::file(data.clone()).close_after(1000));
    mock.route("/long", MockResponse::file(data.clone()).omit_length());
    mock.route_sequence(
        "/flaky",
        vec![
            MockResponse::unavailable(1),
            MockResponse::file(data.clone()),
        ],
    );
    let got = curl(&[&format!("{}short", mock.url())]);
    assert_eq!(got.code, 18, "curl exit 18 = partial file");
    assert_eq!(got.body, &data[..1000]);
    assert_eq!(curl(&[&format!("{}long", mock.url())]).body, data);

    let flaky = format!("{}flaky", mock.url());
    let first = curl(&["-D", "-", &flaky]);
    let head = String::from_utf8_lossy(&first.body);
    assert!(head.starts_with("HTTP/1.1 503"), "answer: {head}");
    assert!(head.contains("Retry-After: 1\r\n"), "answer: {head}");
    assert_eq!(curl(&[&flaky]).body, data, "the last response repeats");
    assert_eq!(curl(&[&flaky]).body, data);
}

#[test]
fn mock_trickles_and_lists_routes_for_propfind() {
    let mock = MockServer::start();
    mock.route(
        "/app/1.0/f.bin",
        MockResponse::file(vec![9; 40]).trickle(10, Duration::from_millis(100)),
    );
    let started = Instant::now();
    let got = curl(&[&format!("{}app/1.0/f.bin", mock.url())]);
    assert_eq!(got.body, vec![9; 40]);
    assert!(
        started.elapsed() >= Duration::from_millis(300),
        "{:?}",
        started.elapsed()
    );

    let got = curl(&[
        "-X",
        "PROPFIND",
        "-H",
        "Depth: 1",
        &format!("{}app/", mock.url()),
    ]);
    let text = String::from_utf8(got.body).expect("listing is UTF-8");
    assert!(
        text.contains("<D:href>/app/1.0/</D:href>"),
        "listing: {text}"
    );
    assert!(!text.contains("f.bin"), "depth 1 only: {text}");
}

#[test]
fn write_app_writes_a_manifest_that_matches_the_files() {
    let root = temp_dir("repo");
    let data = pseudo_random_bytes(11, 3000);
    let app = write_app(
        root.path(),
        "chromium",
        "120.0.1",
        &[("chromium.ipkg", data.clone()), ("lib/x.so", vec![])],
        true,
    );
    let manifest: serde_json::Value =
        serde_json::from_str(&app.app_json).expect("app.json is JSON");
    assert_eq!(manifest["name"], "chromium");
    assert_eq!(manifest["version"], "120.0.1");
    assert_eq!(manifest["reboot"], true);
    assert_eq!(manifest["files"][0]["size"], 3000);
    assert_eq!(manifest["files"][0]["sha256"], sha256_hex(&data));
    assert_eq!(manifest["files"][1]["path"], "lib/x.so");
    let on_disk = std::fs::read(app.dir.join("app.json")).expect("app.json was written");
    assert_eq!(sha256_hex(&on_disk), app.app_json_sha256);
    assert_eq!(std::fs::read(app.dir.join("chromium.ipkg")).unwrap(), data);
}

#[test]
fn pseudo_random_bytes_are_reproducible_and_seed_dependent() {
    assert_eq!(pseudo_random_bytes(1, 1001), pseudo_random_bytes(1, 1001));
    assert_ne!(pseudo_random_bytes(1, 64), pseudo_random_bytes(2, 64));
    assert_eq!(pseudo_random_bytes(0, 13).len(), 13);
}

#[test]
fn password_files_are_private() {
    use std::os::unix::fs::PermissionsExt;
    let dir = temp_dir("secret");
    let path = write_password_file(dir.path(), "repo.pw", "pw");
    let mode = std::fs::metadata(&path).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
}

#[test]
fn run_with_timeout_captures_exit_code_and_output() {
    let mut cmd = Command::new("sh");
    cmd.args(["-c", "echo out; echo err >&2; exit 3"]);
    let out = run_with_timeout(cmd, Duration::from_secs(10));
    out.assert_code(3);
    assert_eq!(
        (out.stdout.as_str(), out.stderr.as_str()),
        ("out\n", "err\n")
    );
}

#[test]
#[should_panic(expected = "did not finish within")]
fn run_with_timeout_kills_a_hanging_process() {
    let mut cmd = Command::new("sleep");
    cmd.arg("30");
    run_with_timeout(cmd, Duration::from_millis(300));
}

#[test]
#[should_panic(expected = "Invalid command 'NoSuchDirective'")]
fn apache_with_a_broken_config_fails_loudly_with_its_diagnostics() {
    let root = temp_dir("repo");
    Apache::builder(root.path())
        .server_config("NoSuchDirective on")
        .start();
}

#[test]
fn the_built_agent_binary_runs_under_the_harness() {
    let out = run_with_timeout(agent_command(&["--help"]), Duration::from_secs(30));
    out.assert_success();
    assert!(out.stdout.contains("Usage"), "help text: {}", out.stdout);
}
