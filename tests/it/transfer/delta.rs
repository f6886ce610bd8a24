//! Whole-process tests of delta updates (issue 14): `repo index` publishes a chunk index
//! beside each file, and a device that holds an earlier version copies what it has and fetches
//! only the missing byte ranges, with plain single-range requests, from real Apache. Every
//! test checks the installed bytes, and the access log shows what went over the wire.

use std::fs;
use std::path::Path;

use crate::support::device::{Device, RepoConf, gets};
use crate::support::{AccessEntry, Apache, pseudo_random_bytes, sha256_hex, temp_dir, write_app};

const APP: &str = "chromium";
const FILE: &str = "bin/chromium.ipkg";
const SIZE: usize = 3 * 1024 * 1024;

fn file_path(version: &str) -> String {
    format!("/{APP}/{version}/{FILE}")
}

/// `base` with a few runs of bytes changed and 10 KiB inserted: what a patch release of a
/// binary looks like to a delta.
fn patched(base: &[u8], seed: u64) -> Vec<u8> {
    let mut new = base.to_vec();
    for (i, at) in [300_000usize, 1_500_000, 2_700_000].into_iter().enumerate() {
        let run = pseudo_random_bytes(seed + i as u64, 3000);
        new[at..at + run.len()].copy_from_slice(&run);
    }
    new.splice(900_000..900_000, pseudo_random_bytes(seed + 10, 10_240));
    new
}

/// Publishes `version` with `data` in `root` and indexes the repository with the agent's own
/// `repo index` (which writes the chunk indexes).
fn publish(device: &Device, root: &Path, version: &str, data: &[u8]) {
    write_app(root, APP, version, &[(FILE, data.to_vec())], false);
    device
        .run(&["repo", "index", root.to_str().unwrap()])
        .assert_success();
    assert!(
        root.join(APP)
            .join(version)
            .join(format!("{FILE}.chunks"))
            .is_file()
    );
}

/// Runs `update` to `version` and returns the agent's stderr (its log).
fn update_to(device: &Device, version: &str) -> String {
    let idf = device.write_idf(&[(APP, version, None)]);
    let out = device.run(&["update", "--idf", idf.to_str().unwrap()]);
    out.assert_success();
    out.stderr.clone()
}

/// Body bytes the server sent for `entries`.
fn sent(entries: &[AccessEntry]) -> u64 {
    entries.iter().map(|e| e.bytes).sum()
}

#[track_caller]
fn assert_installed(device: &Device, version: &str, data: &[u8]) {
    let app = device.app_status(APP);
    assert_eq!(
        (&app["version"], &app["state"]),
        (&version.into(), &"installed".into()),
        "{app:#}"
    );
    assert_eq!(device.current(APP).as_deref(), Some(version));
    let installed = fs::read(device.installed(APP, version, FILE)).unwrap();
    assert!(
        sha256_hex(&installed) == sha256_hex(data),
        "the installed file is not version {version}"
    );
}

#[test]
fn an_update_copies_what_the_active_version_holds_and_downloads_only_ranges_of_the_rest() {
    let root = temp_dir("repo");
    let apache = Apache::builder(root.path()).start();
    let device = Device::new(&[RepoConf::new("central", &apache.url(), 100)]);
    let v1 = pseudo_random_bytes(1, SIZE);
    let v2 = patched(&v1, 100);
    publish(&device, root.path(), "1", &v1);
    update_to(&device, "1");
    publish(&device, root.path(), "2", &v2);

    let log = update_to(&device, "2");

    assert_installed(&device, "2", &v2);
    let file = gets(&apache, &file_path("2"));
    assert!(
        !file.is_empty()
            && file.iter().all(|e| e.status == 206
                && e.range
                    .as_deref()
                    .is_some_and(|r| !r.contains(',') && !r.ends_with('-'))),
        "only closed single ranges of the new file: {file:#?}"
    );
    let downloaded = sent(&file);
    assert!(
        downloaded < SIZE as u64 / 10,
        "{downloaded} bytes of the file went over the wire (changes: about 19 KB)"
    );
    let index = gets(&apache, &format!("{}.chunks", file_path("2")));
    assert_eq!(index.len(), 1, "the index is fetched once: {index:#?}");
    let app = device.app_status(APP);
    let reused = app["bytes_reused"].as_u64().unwrap();
    assert!(reused > SIZE as u64 * 9 / 10, "status: {app:#}");
    assert!(log.contains("delta update"), "{log}");
}

#[test]
fn a_repository_without_chunk_indexes_means_a_full_download_without_ranges() {
    let root = temp_dir("repo");
    let apache = Apache::builder(root.path()).start();
    let device = Device::new(&[RepoConf::new("central", &apache.url(), 100)]);
    let v1 = pseudo_random_bytes(2, SIZE);
    let v2 = patched(&v1, 200);
    write_app(root.path(), APP, "1", &[(FILE, v1.clone())], false);
    update_to(&device, "1");
    write_app(root.path(), APP, "2", &[(FILE, v2.clone())], false);

    update_to(&device, "2");

    assert_installed(&device, "2", &v2);
    let file = gets(&apache, &file_path("2"));
    assert_eq!(file.len(), 1, "{file:#?}");
    assert_eq!((file[0].status, file[0].range.clone()), (200, None));
    assert_eq!(device.app_status(APP)["bytes_reused"], 0);
}

#[test]
fn a_damaged_local_copy_is_not_reused_and_its_region_is_downloaded() {
    let root = temp_dir("repo");
    let apache = Apache::builder(root.path()).start();
    let device = Device::new(&[RepoConf::new("central", &apache.url(), 100)]);
    let v1 = pseudo_random_bytes(3, SIZE);
    let v2 = patched(&v1, 300);
    publish(&device, root.path(), "1", &v1);
    update_to(&device, "1");
    publish(&device, root.path(), "2", &v2);
    // The installed copy is damaged after it was verified (a bad disk, a stray write).
    let installed = device.installed(APP, "1", FILE);
    let mut bytes = fs::read(&installed).unwrap();
    for b in &mut bytes[2_000_000..2_000_100] {
        *b ^= 0xff;
    }
    fs::write(&installed, &bytes).unwrap();

    let log = update_to(&device, "2");

    assert_installed(&device, "2", &v2);
    assert!(log.contains("delta update"), "{log}");
    let file = gets(&apache, &file_path("2"));
    assert!(
        file.iter().any(|e| e
            .range
            .as_deref()
            .is_some_and(|r| range_covers(r, 2_010_240))),
        "the damaged region is downloaded: {file:#?}"
    );
}

/// Whether `bytes=A-B` covers `offset`.
fn range_covers(range: &str, offset: u64) -> bool {
    let Some((a, b)) = range.strip_prefix("bytes=").and_then(|r| r.split_once('-')) else {
        return false;
    };
    match (a.parse::<u64>(), b.parse::<u64>()) {
        (Ok(a), Ok(b)) => a <= offset && offset <= b,
        _ => false,
    }
}

#[test]
fn a_wrong_index_falls_back_to_a_full_download_and_says_why() {
    let root = temp_dir("repo");
    let apache = Apache::builder(root.path()).start();
    let device = Device::new(&[RepoConf::new("central", &apache.url(), 100)]);
    let v1 = pseudo_random_bytes(4, SIZE);
    let v2 = patched(&v1, 400);
    publish(&device, root.path(), "1", &v1);
    update_to(&device, "1");
    // Version 2 is published with the chunk index of another file of the same size, which
    // app.json names with its true size and SHA-256: consistent, and wrong.
    let other = patched(&v1, 401);
    publish(&device, root.path(), "2", &other);
    let dir = root.path().join(APP).join("2");
    let wrong_index = fs::read(dir.join(format!("{FILE}.chunks"))).unwrap();
    let wrong_fine = fs::read(dir.join(format!("{FILE}.chunks.fine"))).unwrap();
    publish(&device, root.path(), "2", &v2);
    fs::write(dir.join(format!("{FILE}.chunks")), &wrong_index).unwrap();
    fs::write(dir.join(format!("{FILE}.chunks.fine")), &wrong_fine).unwrap();
    let app_json = fs::read_to_string(dir.join("app.json")).unwrap();
    let mut manifest: serde_json::Value = serde_json::from_str(&app_json).unwrap();
    manifest["files"][0]["chunks"]["sha256"] = sha256_hex(&wrong_index).into();
    manifest["files"][0]["chunks"]["size"] = wrong_index.len().into();
    fs::write(dir.join("app.json"), manifest.to_string()).unwrap();

    let log = update_to(&device, "2");

    assert_installed(&device, "2", &v2);
    assert!(
        log.contains("downloading the whole file instead of its changed chunks")
            && (log.contains("do not match the chunk index") || log.contains("app.json says")),
        "the fallback names the mismatch: {log}"
    );
}

#[test]
fn an_update_copies_from_the_kept_previous_version_too() {
    let root = temp_dir("repo");
    let apache = Apache::builder(root.path()).start();
    let device = Device::new(&[RepoConf::new("central", &apache.url(), 100)]);
    let v1 = pseudo_random_bytes(5, SIZE);
    let v2 = pseudo_random_bytes(6, SIZE);
    // Version 3 goes back to what version 1 was, with a few changes: only the kept previous
    // version has those bytes.
    let v3 = patched(&v1, 500);
    publish(&device, root.path(), "1", &v1);
    update_to(&device, "1");
    publish(&device, root.path(), "2", &v2);
    let log = update_to(&device, "2");
    assert!(
        log.contains("downloading the whole file instead of its changed chunks"),
        "nothing of version 1 is in version 2: {log}"
    );
    assert!(
        device.installed(APP, "1", FILE).is_file(),
        "version 1 is kept"
    );
    publish(&device, root.path(), "3", &v3);

    update_to(&device, "3");

    assert_installed(&device, "3", &v3);
    let downloaded = sent(&gets(&apache, &file_path("3")));
    assert!(
        downloaded < SIZE as u64 / 10,
        "{downloaded} bytes downloaded"
    );
}

#[test]
fn a_server_that_ignores_range_gets_a_full_download_after_one_answer() {
    let root = temp_dir("repo");
    // mod_headers drops the Range header before Apache sees it: a server without ranges.
    let apache = Apache::builder(root.path())
        .server_config(
            "LoadModule headers_module /usr/lib/apache2/modules/mod_headers.so\n\
             RequestHeader unset Range early",
        )
        .start();
    let device = Device::new(&[RepoConf::new("central", &apache.url(), 100)]);
    let v1 = pseudo_random_bytes(7, SIZE);
    let v2 = patched(&v1, 700);
    publish(&device, root.path(), "1", &v1);
    update_to(&device, "1");
    publish(&device, root.path(), "2", &v2);

    let log = update_to(&device, "2");

    assert_installed(&device, "2", &v2);
    assert!(
        log.contains("answers range requests with the whole file"),
        "{log}"
    );
    // The index asked for by range got a 200 and was not used; then one whole download.
    let file = gets(&apache, &file_path("2"));
    assert_eq!(file.len(), 1, "{file:#?}");
    assert_eq!(file[0].status, 200);
}

/// `base` with 40 runs of 10 KB changed, evenly spread: a delta that takes seconds at a
/// limit of 200 KB/s.
fn widely_patched(base: &[u8], seed: u64) -> Vec<u8> {
    let mut new = base.to_vec();
    for i in 0..40usize {
        let at = 30_000 + i * (SIZE - 60_000) / 40;
        new[at..at + 10_000].copy_from_slice(&pseudo_random_bytes(seed + i as u64, 10_000));
    }
    new
}

#[test]
fn a_delta_killed_midway_resumes_after_the_chunks_it_wrote() {
    let root = temp_dir("repo");
    let apache = Apache::builder(root.path()).start();
    let device = Device::builder()
        .repo(&RepoConf::new("central", &apache.url(), 100))
        .update("bandwidth_limit_enabled = true\nbandwidth_limit = \"200KB\"")
        .build();
    let v1 = pseudo_random_bytes(8, SIZE);
    let v2 = widely_patched(&v1, 800);
    publish(&device, root.path(), "1", &v1);
    update_to(&device, "1");
    publish(&device, root.path(), "2", &v2);
    let idf = device.write_idf(&[(APP, "2", None)]);
    let part = device.part(APP, "2", FILE);
    let mut first = device.spawn_delivery(&idf);
    crate::support::wait_until(
        "half of the file in the part file",
        std::time::Duration::from_secs(60),
        || fs::metadata(&part).is_ok_and(|m| m.len() >= SIZE as u64 / 2),
    );
    first.kill_hard();
    let kept = fs::metadata(&part).unwrap().len();
    let before = apache.access_log().len();

    let second = device.deliver_idf(&idf);
    second.assert_success();

    device.assert_delivered((APP, "2"), FILE, &v2, "central");
    assert!(
        second.stderr.contains("delta update"),
        "the second run is a delta too: {}",
        second.stderr
    );
    let later: Vec<AccessEntry> = apache.access_log()[before..]
        .iter()
        .filter(|e| e.path == file_path("2"))
        .cloned()
        .collect();
    assert!(!later.is_empty());
    assert!(
        later
            .iter()
            .all(|e| e.status == 206 && e.range.as_deref().is_some_and(|r| !r.ends_with('-'))),
        "only closed ranges after the resume: {later:#?}"
    );
    assert!(
        sent(&later) < SIZE as u64 / 4,
        "{} bytes after the resume",
        sent(&later)
    );
    for e in &later {
        let start: u64 = e
            .range
            .as_deref()
            .and_then(|r| r.strip_prefix("bytes="))
            .and_then(|r| r.split('-').next())
            .and_then(|n| n.parse().ok())
            .unwrap_or(0);
        // The resume starts at the last whole large chunk (at most 512 KiB back).
        assert!(
            start + 512 * 1024 >= kept,
            "{start} is refetched (the part file held {kept}): {later:#?}"
        );
    }
}

#[test]
fn a_repository_failing_midway_through_a_delta_is_continued_by_the_next() {
    let root = temp_dir("repo");
    let mut slow = Apache::builder(root.path())
        .rate_limit_kib_per_sec(100)
        .start();
    let fast = Apache::builder(root.path()).start();
    let device = Device::builder()
        .repos(&[
            RepoConf::new("branch", &slow.url(), 200),
            RepoConf::new("central", &fast.url(), 100),
        ])
        .build();
    let v1 = pseudo_random_bytes(9, SIZE);
    let v2 = widely_patched(&v1, 900);
    publish(&device, root.path(), "1", &v1);
    update_to(&device, "1");
    publish(&device, root.path(), "2", &v2);
    let idf = device.write_idf(&[(APP, "2", None)]);
    let mut running = device.spawn_delivery(&idf);
    crate::support::wait_until(
        "the branch serving ranges of the file",
        std::time::Duration::from_secs(60),
        || gets(&slow, &file_path("2")).len() >= 2,
    );
    slow.stop();

    let out = running.wait(std::time::Duration::from_secs(120));
    out.assert_success();
    assert!(
        out.stderr.contains("branch failed for a delta")
            && out.stderr.contains("going on with central"),
        "the failover is in the log: {}",
        out.stderr
    );

    device.assert_delivered((APP, "2"), FILE, &v2, "central");
    let continued = gets(&fast, &file_path("2"));
    assert!(
        !continued.is_empty()
            && continued
                .iter()
                .all(|e| e.status == 206 && e.range.as_deref().is_some_and(|r| !r.ends_with('-'))),
        "central continues the delta by closed ranges: {continued:#?}"
    );
    assert!(sent(&continued) < SIZE as u64 / 2);
}

#[test]
fn lighttpd_serves_a_delta_update_too() {
    let root = temp_dir("repo");
    let server = crate::support::lighttpd::Lighttpd::start(root.path());
    let device = Device::new(&[RepoConf::new("central", &server.url(), 100)]);
    let v1 = pseudo_random_bytes(10, SIZE);
    let v2 = patched(&v1, 1000);
    publish(&device, root.path(), "1", &v1);
    update_to(&device, "1");
    publish(&device, root.path(), "2", &v2);

    let log = update_to(&device, "2");

    assert_installed(&device, "2", &v2);
    assert!(log.contains("delta update"), "{log}");
    // lighttpd writes its access log when it stops.
    let log_lines = server.stop();
    let file: Vec<AccessEntry> = log_lines
        .into_iter()
        .filter(|e| e.path == file_path("2"))
        .collect();
    assert!(
        !file.is_empty() && file.iter().all(|e| e.status == 206),
        "{file:#?}"
    );
    assert!(sent(&file) < SIZE as u64 / 10);
}

#[test]
fn repo_compare_estimates_a_delta_before_it_is_rolled_out() {
    let root = temp_dir("repo");
    let device = Device::new(&[]);
    let v1 = pseudo_random_bytes(11, SIZE);
    publish(&device, root.path(), "1", &v1);
    publish(&device, root.path(), "2", &patched(&v1, 1100));
    publish(&device, root.path(), "3", &pseudo_random_bytes(12, SIZE));
    let dir = |v: &str| root.path().join(APP).join(v).to_str().unwrap().to_string();

    let related = device.run(&["repo", "compare", &dir("1"), &dir("2")]);
    let unrelated = device.run(&["repo", "compare", &dir("1"), &dir("3")]);

    related.assert_success();
    let row = related
        .stdout
        .lines()
        .find(|l| l.starts_with(FILE))
        .unwrap_or_else(|| panic!("{}", related.stdout));
    assert!(!row.contains("whole"), "{row}");
    // 3.0 MiB in size, most of it reused; the index and the ranges are a few per cent.
    let share: f64 = row
        .split('(')
        .nth(1)
        .and_then(|r| r.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("{row}"));
    assert!(share < 10.0, "{row}");
    unrelated.assert_success();
    assert!(
        unrelated
            .stdout
            .lines()
            .any(|l| l.starts_with(FILE) && l.contains("(whole)")),
        "{}",
        unrelated.stdout
    );
    assert!(!related.stdout.contains("app.json") && !related.stdout.contains(".chunks"));
}
