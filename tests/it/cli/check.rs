//! `check`: the health check against real Apache repositories (and the mock where a server
//! must lie about its clock). Each fault is reported as a FAIL naming the repository and the
//! check, with a hint, and the exit code is 1; a healthy device exits 0.

use std::fs;

use crate::support::device::{Device, RepoConf, repo_with};
use crate::support::{
    Apache, MockResponse, MockServer, TlsFiles, Validity, pseudo_random_bytes, write_password_file,
};

const APP: (&str, &str) = ("chromium", "120.0.1");

/// The `check --json` findings of a device, and its exit code.
fn check(device: &Device) -> (Option<i32>, Vec<serde_json::Value>) {
    let out = device.run(&["check", "--json"]);
    let doc: serde_json::Value = serde_json::from_str(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "check --json is not JSON ({e}):\n{}\n{}",
            out.stdout, out.stderr
        )
    });
    (
        out.code,
        doc["findings"].as_array().cloned().unwrap_or_default(),
    )
}

#[track_caller]
fn finding<'a>(findings: &'a [serde_json::Value], check: &str) -> &'a serde_json::Value {
    findings
        .iter()
        .find(|f| f["check"] == check)
        .unwrap_or_else(|| panic!("no {check} finding in {findings:#?}"))
}

#[test]
fn a_healthy_device_reports_ok_and_exits_0() {
    let (root, _) = repo_with(
        APP.0,
        APP.1,
        &[("chromium.ipkg", pseudo_random_bytes(1, 4096))],
    );
    let apache = Apache::builder(root.path()).start();
    let device = Device::new(&[RepoConf::new("central", &apache.url(), 100)]);
    device.deliver(APP.0, APP.1).assert_success();
    let (code, findings) = check(&device);
    assert_eq!(code, Some(0), "{findings:#?}");
    for name in ["dns", "connect", "listing", "clock", "files", "space"] {
        assert_eq!(
            finding(&findings, name)["level"],
            "OK",
            "{name}: {findings:#?}"
        );
    }
    assert_eq!(
        finding(&findings, "files")["message"],
        "1 of 1 wanted files"
    );
}

#[test]
fn an_expired_server_certificate_fails_tls_with_a_hint() {
    let (root, _) = repo_with(APP.0, APP.1, &[("chromium.ipkg", vec![1; 10])]);
    let tls = TlsFiles::localhost_expired();
    let apache = Apache::builder(root.path()).tls_files(&tls).start();
    let url = apache.url().replace("127.0.0.1", "localhost");
    let device = Device::new(&[RepoConf::new("central", &url, 100).ca_certificate(tls.ca_path())]);
    let (code, findings) = check(&device);
    assert_eq!(code, Some(1));
    let tls = finding(&findings, "tls");
    assert_eq!(tls["level"], "FAIL", "{findings:#?}");
    assert!(
        tls["message"]
            .as_str()
            .unwrap()
            .to_lowercase()
            .contains("expired"),
        "{tls}"
    );
    assert!(tls["hint"].as_str().unwrap().contains("renew"), "{tls}");
    let certificate = finding(&findings, "certificate");
    assert_eq!(certificate["level"], "FAIL", "{findings:#?}");
    assert!(
        certificate["message"]
            .as_str()
            .unwrap()
            .contains("expired on"),
        "{certificate}"
    );
    assert!(
        certificate["hint"].as_str().unwrap().contains("renew"),
        "{certificate}"
    );
}

#[test]
fn a_trusted_https_repository_reports_how_long_its_certificate_is_valid() {
    let (root, _) = repo_with(APP.0, APP.1, &[("chromium.ipkg", vec![1; 10])]);
    let tls = TlsFiles::localhost();
    let apache = Apache::builder(root.path()).tls_files(&tls).start();
    let url = apache.url().replace("127.0.0.1", "localhost");
    let device = Device::new(&[RepoConf::new("central", &url, 100).ca_certificate(tls.ca_path())]);
    let (code, findings) = check(&device);
    assert_eq!(code, Some(0), "{findings:#?}");
    assert_eq!(finding(&findings, "tls")["level"], "OK", "{findings:#?}");
    let certificate = finding(&findings, "certificate");
    assert_eq!(certificate["level"], "OK", "{findings:#?}");
    assert!(
        certificate["message"]
            .as_str()
            .unwrap()
            .contains("valid until"),
        "{certificate}"
    );
}

#[test]
fn a_certificate_expiring_within_30_days_warns_without_failing() {
    let (root, _) = repo_with(APP.0, APP.1, &[("chromium.ipkg", vec![1; 10])]);
    let tls = TlsFiles::localhost_with(Validity::expiring_in(10));
    let apache = Apache::builder(root.path()).tls_files(&tls).start();
    let url = apache.url().replace("127.0.0.1", "localhost");
    let device = Device::new(&[RepoConf::new("central", &url, 100).ca_certificate(tls.ca_path())]);
    let (code, findings) = check(&device);
    assert_eq!(code, Some(0), "{findings:#?}");
    let certificate = finding(&findings, "certificate");
    assert_eq!(certificate["level"], "WARN", "{findings:#?}");
    let message = certificate["message"].as_str().unwrap();
    assert!(message.contains("expires on"), "{certificate}");
    assert!(
        message.ends_with("in 9 days") || message.ends_with("in 10 days"),
        "{certificate}"
    );
}

#[test]
fn a_wrong_password_fails_authentication_without_showing_it() {
    let (root, _) = repo_with(APP.0, APP.1, &[("chromium.ipkg", vec![1; 10])]);
    let apache = Apache::builder(root.path())
        .digest_auth("device", "right-password")
        .start();
    let device = Device::new(&[]);
    let pw = write_password_file(device.root(), "pw", "wrong-password-xyz");
    let device = Device::new(&[RepoConf::new("central", &apache.url(), 100).digest("device", &pw)]);
    let out = device.run(&["check"]);
    assert_eq!(out.code, Some(1), "{}", out.stdout);
    let line = out
        .stdout
        .lines()
        .find(|l| l.contains("authentication"))
        .unwrap_or_else(|| panic!("{}", out.stdout));
    assert!(
        line.starts_with("FAIL repository central authentication:"),
        "{line}"
    );
    assert!(
        !out.stdout.contains("wrong-password-xyz") && !out.stderr.contains("wrong-password-xyz")
    );
}

#[test]
fn a_file_missing_from_the_repository_fails_naming_it() {
    let (root, written) = repo_with(
        APP.0,
        APP.1,
        &[("a.bin", vec![1; 10]), ("b.bin", vec![2; 10])],
    );
    let apache = Apache::builder(root.path()).start();
    let device = Device::new(&[RepoConf::new("central", &apache.url(), 100)]);
    device.deliver(APP.0, APP.1).assert_success();
    fs::remove_file(written.dir.join("b.bin")).unwrap();
    let (code, findings) = check(&device);
    assert_eq!(code, Some(1));
    let repo = finding(&findings, "files");
    assert_eq!(repo["subject"], "repository central", "{findings:#?}");
    assert_eq!(repo["level"], "WARN", "{findings:#?}");
    assert!(
        repo["message"]
            .as_str()
            .unwrap()
            .starts_with("1 of 2 wanted files; 1 on no usable repository"),
        "{repo}"
    );
    let nowhere = findings
        .iter()
        .find(|f| f["subject"] == "wanted" && f["check"] == "files")
        .unwrap_or_else(|| panic!("{findings:#?}"));
    assert_eq!(nowhere["level"], "FAIL");
    assert_eq!(
        nowhere["message"],
        format!("{} {} b.bin is on no usable repository", APP.0, APP.1)
    );
}

#[test]
fn a_server_clock_an_hour_behind_fails() {
    let mock = MockServer::start();
    let hour_ago = httpdate_of(std::time::SystemTime::now() - std::time::Duration::from_secs(3600));
    let listing = "<?xml version=\"1.0\"?><D:multistatus xmlns:D=\"DAV:\"><D:response><D:href>/</D:href>\
                   <D:propstat><D:prop><D:resourcetype><D:collection/></D:resourcetype></D:prop></D:propstat>\
                   </D:response></D:multistatus>";
    mock.route_method(
        "PROPFIND",
        "/",
        MockResponse::status(207)
            .body(listing)
            .header("Date", &hour_ago),
    );
    let device = Device::new(&[RepoConf::new("central", &mock.url(), 100)]);
    let (code, findings) = check(&device);
    assert_eq!(code, Some(1), "{findings:#?}");
    let clock = finding(&findings, "clock");
    assert_eq!(clock["level"], "FAIL", "{findings:#?}");
    assert!(
        clock["message"].as_str().unwrap().contains("behind"),
        "{clock}"
    );
}

fn httpdate_of(t: std::time::SystemTime) -> String {
    httpdate::fmt_http_date(t)
}

/// `[[app]]` lines for the configuration.
fn app_tables(apps: &[(&str, &str)]) -> String {
    apps.iter()
        .map(|(name, version)| format!("\n[[app]]\nname = {name:?}\nversion = {version:?}\n"))
        .collect()
}

/// The `check` line of `subject`'s `files` finding.
#[track_caller]
fn files_line<'a>(out: &'a str, subject: &str) -> &'a str {
    out.lines()
        .find(|l| l.contains(&format!(" {subject} files: ")))
        .unwrap_or_else(|| panic!("no files line for {subject}:\n{out}"))
}

#[test]
fn wanted_files_are_counted_on_every_repository_before_anything_was_applied() {
    let files = |seed: u64| -> Vec<(&'static str, Vec<u8>)> {
        vec![
            ("a.bin", pseudo_random_bytes(seed, 3000)),
            ("b.bin", pseudo_random_bytes(seed + 1, 3000)),
            ("c.bin", pseudo_random_bytes(seed + 2, 3000)),
        ]
    };
    // central has everything (and a newer version), branch only a.bin, staging (hidden)
    // everything of 1.0.
    let (central_root, central_10) = repo_with("demo", "1.0", &files(1));
    crate::support::write_app(central_root.path(), "demo", "1.1", &files(7), false);
    let (branch_root, branch_10) = repo_with("demo", "1.0", &files(1));
    fs::remove_file(branch_10.dir.join("b.bin")).unwrap();
    fs::remove_file(branch_10.dir.join("c.bin")).unwrap();
    let (staging_root, _) = repo_with("demo", "1.0", &files(1));
    let central = Apache::builder(central_root.path()).start();
    let branch = Apache::builder(branch_root.path()).start();
    let staging = Apache::builder(staging_root.path()).start();
    let device = crate::support::device::Device::with_update(
        &[
            RepoConf::new("branch", &branch.url(), 200),
            RepoConf::new("central", &central.url(), 100),
            RepoConf::new("staging", &staging.url(), -1),
        ],
        &app_tables(&[("demo", "latest")]),
    );

    // A fresh device: nothing applied yet, the [[app]] tables say what is wanted. `latest`
    // is what the first usable repository lists (branch: 1.0).
    let out = device.run(&["check"]);
    assert_eq!(out.code, Some(0), "{}", out.stdout);
    assert!(
        out.stdout
            .contains("OK   wanted apps: 1 app from the [[app]] tables of the configuration"),
        "{}",
        out.stdout
    );
    let line = files_line(&out.stdout, "repository branch");
    assert!(
        line.starts_with(
            "WARN repository branch files: 1 of 3 wanted files; the rest from central"
        ),
        "{line}"
    );
    assert!(line.contains("demo 1.0 b.bin is missing"), "{line}");
    assert_eq!(
        files_line(&out.stdout, "repository central"),
        "OK   repository central files: 3 of 3 wanted files; its latest demo is 1.1, the \
         device takes 1.0"
    );
    assert_eq!(
        files_line(&out.stdout, "repository staging"),
        "OK   repository staging files: hidden; 3 of 3 wanted files: complete, its priority \
         can be raised"
    );
    // Hidden repositories are still never used for downloads: check only asked HEAD.
    assert!(
        staging.access_log().iter().all(|e| e.method != "GET"),
        "{:?}",
        staging.access_log()
    );

    // A file that only the hidden repository has: a failure (it is not used for downloads).
    fs::remove_file(central_10.dir.join("c.bin")).unwrap();
    let out = device.run(&["check"]);
    assert_eq!(out.code, Some(1), "{}", out.stdout);
    assert!(
        out.stdout
            .contains("FAIL wanted files: demo 1.0 c.bin is on no usable repository"),
        "{}",
        out.stdout
    );
    fs::write(central_10.dir.join("c.bin"), &files(1)[2].1).unwrap();

    // Same size, other bytes: only --deep sees it, reading the file.
    let mut b = files(1)[1].1.clone();
    b[100] ^= 0xff;
    fs::write(central_10.dir.join("b.bin"), &b).unwrap();
    let out = device.run(&["check"]);
    assert_eq!(out.code, Some(0), "{}", out.stdout);
    let out = device.run(&["check", "--deep"]);
    assert_eq!(out.code, Some(1), "{}", out.stdout);
    let line = files_line(&out.stdout, "repository central");
    assert!(
        line.starts_with("WARN repository central files: 2 of 3 wanted files")
            && line.contains("demo 1.0 b.bin: the SHA-256 differs from app.json"),
        "{line}"
    );
    assert!(
        out.stdout
            .contains("FAIL wanted files: demo 1.0 b.bin is on no usable repository"),
        "{}",
        out.stdout
    );
    assert!(
        !central
            .requests_for("/demo/1.0/b.bin")
            .iter()
            .all(|e| e.method != "GET")
    );

    // A hidden repository that is not complete yet says so.
    fs::remove_file(staging_root.path().join("demo/1.0/a.bin")).unwrap();
    let out = device.run(&["check"]);
    let line = files_line(&out.stdout, "repository staging");
    assert!(
        line.starts_with(
            "WARN repository staging files: hidden; 2 of 3 wanted files: not complete yet"
        ),
        "{line}"
    );
}
