//! Whole-process tests of delta updates (issue 14): `repo index` publishes a chunk index
//! beside each file, and a device that holds an earlier version copies what it has and fetches
//! only the missing byte ranges, with plain single-range requests, from real Apache. Every
//! test checks the installed bytes, and the access log shows what went over the wire.

use std::fs;
use std::path::Path;

use crate::support::device::{Device, RepoConf, gets};
use crate::support::{AccessEntry, Apache, pseudo_random_bytes, sha256_hex, temp_dir, write_app};

const APP: &str = "chromium";
const FILE: &str = "chromium.ipkg";
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

/// Body bytes Apache sent for `path` in `entries`.
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
fn a_damaged_local_chunk_is_downloaded_instead_of_copied() {
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
    fs::write(dir.join("app.json"), manifest.to_string()).unwrap();

    let log = update_to(&device, "2");

    assert_installed(&device, "2", &v2);
    assert!(
        log.contains("downloading the whole file instead of its changed chunks"),
        "{log}"
    );
}
