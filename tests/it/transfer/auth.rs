//! Whole-process tests of authentication and TLS against real Apache (DESIGN 1, 5, 9): Digest
//! that outlives the server's nonce, a wrong password that fails clearly without ever being
//! shown, and HTTPS with a private CA that is trusted only when configured.

use std::fs;

use crate::support::device::{Device, RepoConf, gets, repo_with};
use crate::support::{
    Apache, TlsFiles, pseudo_random_bytes, temp_dir, write_app, write_password_file,
};

const APP: (&str, &str) = ("chromium", "120.0.1");
const FILE: &str = "chromium.ipkg";

#[test]
fn digest_auth_survives_nonce_expiry_over_a_slow_transfer() {
    let root = temp_dir("repo");
    let files: Vec<(String, Vec<u8>)> = (0..8)
        .map(|i| {
            (
                format!("part{i}.bin"),
                pseudo_random_bytes(100 + i, 128 * 1024),
            )
        })
        .collect();
    let listed: Vec<(&str, Vec<u8>)> = files.iter().map(|(p, d)| (p.as_str(), d.clone())).collect();
    write_app(root.path(), APP.0, APP.1, &listed, false);
    let apache = Apache::builder(root.path())
        .digest_auth("device", "s3cret")
        .digest_nonce_lifetime(2)
        .start();
    // 1 MiB at 256 KiB/s, one file after the other: about 4 s, twice the nonce lifetime.
    let secrets = temp_dir("secret");
    let password = write_password_file(secrets.path(), "central.pw", "s3cret");
    let device = Device::with_update(
        &[RepoConf::new("central", &apache.url(), 100).digest("device", &password)],
        "bandwidth_limit_enabled = true\nbandwidth_limit = \"256KB\"\nparallel_downloads = 1\n",
    );

    device.deliver(APP.0, APP.1).assert_success();

    for (path, data) in &files {
        device.assert_delivered(APP, path, data, "central");
    }
    let log = apache.access_log();
    let first_success = log
        .iter()
        .position(|e| e.status / 100 == 2)
        .expect("Apache logged no success");
    let later_challenges = log[first_success..]
        .iter()
        .filter(|e| e.status == 401)
        .count();
    assert!(
        later_challenges >= 1,
        "no 401 after the first success: the nonce never expired, so nothing was tested: \
         {log:#?}"
    );
    for (path, _) in &files {
        let url_path = format!("/{}/{}/{path}", APP.0, APP.1);
        assert!(
            gets(&apache, &url_path).iter().any(|e| e.status == 200),
            "{url_path} was never served: {log:#?}"
        );
    }
}

#[test]
fn wrong_password_fails_with_clear_error_without_leaking_it() {
    let data = pseudo_random_bytes(8, 50_000);
    let (root, _) = repo_with(APP.0, APP.1, &[(FILE, data)]);
    let apache = Apache::builder(root.path())
        .digest_auth("device", "s3cret")
        .start();
    let wrong = "Wr0ng-Pa55word-7f3a";
    let secrets = temp_dir("secret");
    let password = write_password_file(secrets.path(), "central.pw", wrong);
    let device =
        Device::new(&[RepoConf::new("central", &apache.url(), 100).digest("device", &password)]);

    let out = device.deliver(APP.0, APP.1);

    out.assert_code(1);
    let status = device.app_status(APP.0);
    assert_eq!(status["state"], "download-failed", "status: {status:#}");
    let error = status["error"].as_str().unwrap_or_default();
    assert!(error.contains("authentication"), "error: {error:?}");
    let status_text = device.run(&["status"]).assert_success().stdout.clone();
    let journal =
        fs::read_to_string(device.state_dir().join("state.json")).expect("state.json was written");
    for (what, text) in [
        ("stdout", &out.stdout),
        ("stderr", &out.stderr),
        ("state.json", &journal),
        ("status", &status_text),
    ] {
        assert!(
            !text.contains(wrong),
            "the password appears in {what}: {text}"
        );
    }
}

#[test]
fn tls_with_private_ca_works_and_without_it_fails_clearly() {
    let data = pseudo_random_bytes(9, 80_000);
    let (root, _) = repo_with(APP.0, APP.1, &[(FILE, data.clone())]);
    let tls = TlsFiles::localhost();
    let apache = Apache::builder(root.path()).tls_files(&tls).start();
    assert!(apache.url().starts_with("https://"));

    let trusting =
        Device::new(&[RepoConf::new("central", &apache.url(), 100).ca_certificate(tls.ca_path())]);
    trusting.deliver(APP.0, APP.1).assert_success();
    trusting.assert_delivered(APP, FILE, &data, "central");

    let untrusting = Device::new(&[RepoConf::new("central", &apache.url(), 100)]);
    let out = untrusting.deliver(APP.0, APP.1);
    out.assert_code(1);
    let status = untrusting.app_status(APP.0);
    assert_eq!(status["state"], "download-failed", "status: {status:#}");
    let error = status["error"].as_str().unwrap_or_default();
    assert!(
        error.contains("certificate") || error.contains("UnknownIssuer"),
        "the error should say the certificate is not trusted: {error:?}"
    );
    assert!(
        !out.stderr.contains("retrying in"),
        "an untrusted certificate is not worth retrying:\n{}",
        out.stderr
    );
    assert!(
        !untrusting.installed(APP.0, APP.1, FILE).exists(),
        "a file was installed over an untrusted connection"
    );
}

/// The `check` line of the repository's authentication finding.
#[track_caller]
fn authentication_line(device: &Device) -> String {
    let out = device.run(&["check"]);
    out.stdout
        .lines()
        .find(|l| l.contains("repository central authentication:"))
        .unwrap_or_else(|| panic!("no authentication finding:\n{}", out.stdout))
        .to_string()
}

#[test]
fn a_username_without_auth_follows_the_servers_challenge() {
    let data = pseudo_random_bytes(21, 20_000);
    let secrets = temp_dir("secrets");
    let password = write_password_file(secrets.path(), "pw", "s3cret");

    // Digest offered over plain http: Digest.
    let (root, _) = repo_with(APP.0, APP.1, &[(FILE, data.clone())]);
    let digest = Apache::builder(root.path())
        .digest_auth("device", "s3cret")
        .start();
    let device =
        Device::new(&[RepoConf::new("central", &digest.url(), 100).user("device", &password)]);
    device.deliver(APP.0, APP.1).assert_success();
    device.assert_delivered(APP, FILE, &data, "central");
    assert!(
        authentication_line(&device)
            .starts_with("OK   repository central authentication: Digest (offered by the server"),
        "{}",
        authentication_line(&device)
    );

    // Basic offered over plain http: refused (the password would cross the network readable).
    let (root, _) = repo_with(APP.0, APP.1, &[(FILE, data.clone())]);
    let basic = Apache::builder(root.path())
        .basic_auth("device", "s3cret")
        .start();
    let device =
        Device::new(&[RepoConf::new("central", &basic.url(), 100).user("device", &password)]);
    device.deliver(APP.0, APP.1).assert_code(1);
    let error = device.app_status(APP.0)["error"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(
        error.contains("only Basic") && error.contains("auth = \"basic\""),
        "{error}"
    );
    assert!(
        basic.access_log().iter().all(|e| e.status == 401),
        "the server accepted a request, so the password was sent: {:?}",
        basic.access_log()
    );
    // ... unless the administrator says so.
    let device = Device::new(&[RepoConf::new("central", &basic.url(), 100)
        .user("device", &password)
        .auth("basic")]);
    device.deliver(APP.0, APP.1).assert_success();

    // Basic offered over https: Basic.
    let (root, _) = repo_with(APP.0, APP.1, &[(FILE, data.clone())]);
    let tls = TlsFiles::localhost();
    let https = Apache::builder(root.path())
        .tls_files(&tls)
        .basic_auth("device", "s3cret")
        .start();
    let device = Device::new(&[RepoConf::new("central", &https.url(), 100)
        .user("device", &password)
        .ca_certificate(tls.ca_path())]);
    device.deliver(APP.0, APP.1).assert_success();
    device.assert_delivered(APP, FILE, &data, "central");
    assert!(
        authentication_line(&device)
            .starts_with("OK   repository central authentication: Basic (offered by the server"),
        "{}",
        authentication_line(&device)
    );
}
