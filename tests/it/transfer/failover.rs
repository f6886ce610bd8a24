//! Whole-process tests of choosing and failing over between repositories (DESIGN 4, 5, 9):
//! the real binary runs `delivery` against real Apache instances on loopback, one per
//! repository, and each Apache's access log witnesses what the agent asked for.

use std::fs;
use std::net::TcpListener;
use std::time::{Duration, Instant};

use crate::support::device::{Device, RepoConf, find_named, gets, repo_with};
use crate::support::{Apache, pseudo_random_bytes, sha256_hex, temp_dir, write_app};

const APP: (&str, &str) = ("chromium", "120.0.1");
const FILE: &str = "chromium.ipkg";
const FILE_URL_PATH: &str = "/chromium/120.0.1/chromium.ipkg";

#[test]
fn higher_priority_repository_is_used_first() {
    let data = pseudo_random_bytes(1, 200_000);
    let (root_a, _) = repo_with(APP.0, APP.1, &[(FILE, data.clone())]);
    let (root_b, _) = repo_with(APP.0, APP.1, &[(FILE, data.clone())]);
    let low = Apache::builder(root_a.path()).start();
    let high = Apache::builder(root_b.path()).start();
    // Listed low first, so only the priority can put "branch" in front.
    let device = Device::new(&[
        RepoConf::new("central", &low.url(), 100),
        RepoConf::new("branch", &high.url(), 200),
    ]);

    device.deliver(APP.0, APP.1).assert_success();

    device.assert_delivered(APP, FILE, &data, "branch");
    let served = gets(&high, FILE_URL_PATH);
    assert!(
        served.iter().any(|e| e.status == 200),
        "branch served nothing: {served:#?}"
    );
    assert_eq!(
        gets(&low, FILE_URL_PATH),
        [],
        "central must not be asked for the file"
    );
}

#[test]
fn hidden_repository_is_never_contacted() {
    let data = pseudo_random_bytes(2, 100_000);
    let (root_hidden, _) = repo_with(APP.0, APP.1, &[(FILE, data.clone())]);
    let (root_visible, _) = repo_with(APP.0, APP.1, &[(FILE, data.clone())]);
    let hidden = Apache::builder(root_hidden.path()).start();
    let visible = Apache::builder(root_visible.path()).start();
    let device = Device::new(&[
        RepoConf::new("staged-mirror", &hidden.url(), -1),
        RepoConf::new("central", &visible.url(), 100),
    ]);

    device.deliver(APP.0, APP.1).assert_success();

    device.assert_delivered(APP, FILE, &data, "central");
    // Apache logs a request after answering it: give a stray one time to show up.
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(
        hidden.access_log(),
        [],
        "the hidden repository was contacted"
    );
    let repos = device.run(&["repos", "--json"]).assert_success().json();
    let listed = repos
        .as_array()
        .and_then(|rows| rows.iter().find(|r| r["name"] == "staged-mirror"))
        .unwrap_or_else(|| panic!("repos --json does not list the hidden one: {repos:#}"));
    assert_eq!(listed["hidden"], true, "repos --json: {repos:#}");
    assert_eq!(listed["priority"], -1, "repos --json: {repos:#}");
}

#[test]
fn missing_file_on_first_repository_falls_over_to_second() {
    let data = pseudo_random_bytes(3, 150_000);
    let (root_first, first_app) = repo_with(APP.0, APP.1, &[(FILE, data.clone())]);
    fs::remove_file(first_app.dir.join(FILE)).expect("cannot remove the file from the first repo");
    let (root_second, _) = repo_with(APP.0, APP.1, &[(FILE, data.clone())]);
    let first = Apache::builder(root_first.path()).start();
    let second = Apache::builder(root_second.path()).start();
    let device = Device::new(&[
        RepoConf::new("first", &first.url(), 200),
        RepoConf::new("second", &second.url(), 100),
    ]);

    device.deliver(APP.0, APP.1).assert_success();

    device.assert_delivered(APP, FILE, &data, "second");
    let asked_first = gets(&first, FILE_URL_PATH);
    assert!(
        !asked_first.is_empty() && asked_first.iter().all(|e| e.status == 404),
        "the first repository should have answered 404: {asked_first:#?}"
    );
    let asked_second = gets(&second, FILE_URL_PATH);
    assert!(
        asked_second.iter().any(|e| e.status == 200),
        "the second repository served nothing: {asked_second:#?}"
    );
}

#[test]
fn tampered_file_is_rejected_and_taken_from_the_next_repository() {
    let data = pseudo_random_bytes(4, 300_000);
    let (root_bad, bad_app) = repo_with(APP.0, APP.1, &[(FILE, data.clone())]);
    // Right size, right app.json, wrong bytes: only the SHA-256 can tell.
    let tampered = pseudo_random_bytes(40, data.len());
    fs::write(bad_app.dir.join(FILE), &tampered).expect("cannot tamper with the file");
    let (root_good, _) = repo_with(APP.0, APP.1, &[(FILE, data.clone())]);
    let bad = Apache::builder(root_bad.path()).start();
    let good = Apache::builder(root_good.path()).start();
    let device = Device::new(&[
        RepoConf::new("compromised", &bad.url(), 200),
        RepoConf::new("central", &good.url(), 100),
    ]);

    device.deliver(APP.0, APP.1).assert_success();

    device.assert_delivered(APP, FILE, &data, "central");
    assert!(
        gets(&bad, FILE_URL_PATH).iter().any(|e| e.status == 200),
        "the tampered copy was never downloaded, so nothing was rejected"
    );
}

#[test]
fn refused_connection_falls_over_to_next() {
    let data = pseudo_random_bytes(5, 100_000);
    let (root, _) = repo_with(APP.0, APP.1, &[(FILE, data.clone())]);
    let apache = Apache::builder(root.path()).start();
    let dead = format!("http://127.0.0.1:{}/", closed_port());
    let device = Device::new(&[
        RepoConf::new("dead", &dead, 200),
        RepoConf::new("alive", &apache.url(), 100),
    ]);

    let started = Instant::now();
    device.deliver(APP.0, APP.1).assert_success();

    device.assert_delivered(APP, FILE, &data, "alive");
    assert!(
        started.elapsed() < Duration::from_secs(60),
        "a refused connection must not wait for long timeouts ({:?})",
        started.elapsed()
    );
}

/// Issue 11.4: with the highest-priority mirror down, one delivery of two apps (each `latest`,
/// each with two files) needs two listings, two `app.json` and four files. The mirror must cost
/// its retries once for all of them, not once per request.
#[test]
fn a_dead_mirror_costs_its_retries_once_per_delivery() {
    let root = temp_dir("repo");
    let mut wanted = Vec::new();
    for (seed, app) in [(70, "firefox"), (80, "zoom")] {
        let files = [
            ("a.bin", pseudo_random_bytes(seed, 40_000)),
            ("b.bin", pseudo_random_bytes(seed + 1, 50_000)),
        ];
        write_app(root.path(), app, "1.0", &files, false);
        wanted.push((app, files));
    }
    let apache = Apache::builder(root.path()).start();
    let port = closed_port();
    let device = Device::new(&[
        RepoConf::new("dead", &format!("http://127.0.0.1:{port}/"), 200),
        RepoConf::new("alive", &apache.url(), 100),
    ]);

    let idf = device.write_idf(&[("firefox", "latest", None), ("zoom", "latest", None)]);
    let run = device.deliver_idf(&idf);
    run.assert_success();

    for (app, files) in &wanted {
        for (path, data) in files {
            device.assert_delivered((app, "1.0"), path, data, "alive");
        }
    }
    // retries = 1: the first request to fail logs one retry, and no later request tries again.
    let retries: Vec<&str> = run
        .stderr
        .lines()
        .filter(|l| l.contains("retrying in"))
        .collect();
    assert_eq!(
        retries.len(),
        1,
        "the dead mirror was retried more than once:\n{}",
        run.stderr
    );
    assert!(
        retries[0].contains("dead"),
        "the retry is not the dead mirror's: {}",
        retries[0]
    );
}

#[test]
fn latest_resolves_to_the_highest_version_of_the_highest_priority_repository() {
    let root_a = temp_dir("repo");
    let v19 = pseudo_random_bytes(19, 50_000);
    let v110 = pseudo_random_bytes(110, 60_000);
    write_app(root_a.path(), "demo", "1.9", &[("demo.bin", v19)], false);
    write_app(
        root_a.path(),
        "demo",
        "1.10",
        &[("demo.bin", v110.clone())],
        false,
    );
    let (root_b, _) = repo_with(
        "demo",
        "2.0",
        &[("demo.bin", pseudo_random_bytes(20, 70_000))],
    );
    let a = Apache::builder(root_a.path()).start();
    let b = Apache::builder(root_b.path()).start();
    let device = Device::new(&[
        RepoConf::new("branch", &a.url(), 200),
        RepoConf::new("central", &b.url(), 100),
    ]);

    device.deliver("demo", "latest").assert_success();

    // 1.10 > 1.9 as versions, though not as strings; central's 2.0 is not considered.
    device.assert_delivered(("demo", "1.10"), "demo.bin", &v110, "branch");
    let apps = device.state_dir().join("apps").join("demo");
    for absent in ["1.9", "2.0"] {
        assert!(!apps.join(absent).exists(), "{absent} was delivered too");
    }
    let asked_b: Vec<_> = b
        .access_log()
        .into_iter()
        .filter(|e| e.method == "GET")
        .collect();
    assert_eq!(asked_b, [], "central was asked for a file");
}

#[test]
fn pinned_app_json_makes_a_mirror_unable_to_change_what_is_installed() {
    let good = pseudo_random_bytes(6, 120_000);
    // The mirror serves a valid app.json for the same version, describing other bytes of the
    // same size. It may still serve the file (repositories are mirrors), but only the bytes
    // that the pinned app.json describes can be installed.
    let evil = pseudo_random_bytes(60, good.len());
    let (root_mirror, _) = repo_with(APP.0, APP.1, &[(FILE, evil)]);
    let (root_origin, origin_app) = repo_with(APP.0, APP.1, &[(FILE, good.clone())]);
    let mirror = Apache::builder(root_mirror.path()).start();
    let origin = Apache::builder(root_origin.path()).start();
    let device = Device::new(&[
        RepoConf::new("mirror", &mirror.url(), 200),
        RepoConf::new("origin", &origin.url(), 100),
    ]);
    let idf = device.write_idf(&[(APP.0, APP.1, Some(&origin_app.app_json_sha256))]);

    device.deliver_idf(&idf).assert_success();

    device.assert_delivered(APP, FILE, &good, "origin");
    let staged_manifest = fs::read(device.installed(APP.0, APP.1, "app.json"))
        .expect("the staged version has its app.json");
    assert_eq!(sha256_hex(&staged_manifest), origin_app.app_json_sha256);
    assert!(
        !gets(&mirror, "/chromium/120.0.1/app.json").is_empty(),
        "the mirror's app.json was never fetched, so the pin was not tested"
    );
}

#[test]
fn path_traversal_in_app_json_is_rejected_and_nothing_is_written_outside_the_state_dir() {
    let root = temp_dir("repo");
    let payload = b"#!/bin/sh\necho owned\n".to_vec();
    let manifest = serde_json::json!({
        "name": "demo", "version": "1.0", "reboot": false,
        "files": [{"path": "../../evil", "size": payload.len(), "sha256": sha256_hex(&payload)}],
    });
    let dir = root.path().join("demo").join("1.0");
    fs::create_dir_all(&dir).expect("cannot create the app dir");
    fs::write(dir.join("app.json"), manifest.to_string()).expect("cannot write app.json");
    // What a naive client would fetch for that path; it must never be asked for.
    fs::write(root.path().join("evil"), &payload).expect("cannot write the payload");
    let apache = Apache::builder(root.path()).start();
    let device = Device::new(&[RepoConf::new("central", &apache.url(), 100)]);

    let out = device.deliver("demo", "1.0");

    out.assert_code(1);
    let status = device.app_status("demo");
    assert_eq!(status["state"], "download-failed", "status: {status:#}");
    let error = status["error"].as_str().unwrap_or_default();
    assert!(error.contains("files[0].path"), "error: {error:?}");
    assert!(
        out.stderr.contains("files[0].path"),
        "stderr: {}",
        out.stderr
    );
    assert_eq!(
        find_named(device.root(), "evil"),
        Vec::<std::path::PathBuf>::new()
    );
    let evil_requests: Vec<_> = apache
        .access_log()
        .into_iter()
        .filter(|e| e.path.contains("evil"))
        .collect();
    assert_eq!(evil_requests, [], "the agent asked for the traversing path");
}

/// A loopback port that nothing listens on (bound a moment ago, then released).
fn closed_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("cannot bind a loopback port");
    listener.local_addr().expect("no local address").port()
}
