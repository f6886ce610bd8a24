//! Whole-process tests of resuming and of servers that misbehave mid-body (DESIGN 4, 9):
//! a transfer killed with -9 resumes with `Range`, and a repository failing mid-file is
//! continued by the next at the offset; a server that ignores `Range`, sends too much, too
//! little, or asks to come back later never leaves a corrupt or oversized file.
//! Real Apache where it can show the case, the mock server where only a fault can.

use std::fs;
use std::path::Path;
use std::time::{Duration, Instant, SystemTime};

use crate::support::device::{Device, RepoConf, app_json, files_with_sizes, gets, repo_with};
use crate::support::{
    AccessEntry, Apache, MockResponse, MockServer, pseudo_random_bytes, wait_until,
};

const APP: (&str, &str) = ("chromium", "120.0.1");
const FILE: &str = "chromium.ipkg";
const FILE_URL_PATH: &str = "/chromium/120.0.1/chromium.ipkg";
const APP_JSON_URL_PATH: &str = "/chromium/120.0.1/app.json";

/// A mock repository serving `app.json` for `data`, and the file with `file_responses` in
/// order (the last one repeats).
fn mock_repository(data: &[u8], file_responses: Vec<MockResponse>) -> MockServer {
    let mock = MockServer::start();
    mock.route(
        APP_JSON_URL_PATH,
        MockResponse::file(app_json(APP.0, APP.1, &[(FILE, data)])),
    );
    mock.route_sequence(FILE_URL_PATH, file_responses);
    mock
}

/// The offset `N` of a `Range: bytes=N-` header.
fn range_start(range: &str) -> u64 {
    range
        .strip_prefix("bytes=")
        .and_then(|r| r.strip_suffix('-'))
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("not an open range from an offset: {range:?}"))
}

/// Starts a delivery, kills it with -9 once the part file holds 300 KB, and returns how many
/// bytes the part file kept (after checking they are the right prefix of `data`).
fn kill_mid_transfer(device: &Device, idf: &Path, data: &[u8]) -> u64 {
    let part = device.part(APP.0, APP.1, FILE);
    let mut first = device.spawn_delivery(idf);
    wait_until("300 KB in the part file", Duration::from_secs(60), || {
        fs::metadata(&part).is_ok_and(|m| m.len() >= 300_000)
    });
    first.kill_hard();
    let kept = fs::read(&part).expect("the part file survives kill -9");
    assert!(
        kept.len() >= 300_000 && kept.len() < data.len(),
        "part file holds {} bytes",
        kept.len()
    );
    assert!(
        kept == data[..kept.len()],
        "the part file holds a wrong prefix"
    );
    kept.len() as u64
}

/// Sets the modification time of `path` (a repository file) to `now + offset_secs`.
fn set_mtime(path: &Path, offset_secs: i64) {
    let now = SystemTime::now();
    let delta = Duration::from_secs(offset_secs.unsigned_abs());
    let when = if offset_secs < 0 {
        now - delta
    } else {
        now + delta
    };
    fs::File::options()
        .write(true)
        .open(path)
        .and_then(|f| f.set_modified(when))
        .unwrap_or_else(|e| panic!("cannot set the mtime of {}: {e}", path.display()));
}

/// The one ranged GET of the file; panics unless there is exactly one.
fn resumed_request(apache: &Apache) -> AccessEntry {
    let mut ranged: Vec<_> = gets(apache, FILE_URL_PATH)
        .into_iter()
        .filter(|e| e.range.is_some())
        .collect();
    assert_eq!(ranged.len(), 1, "one resumed request expected: {ranged:#?}");
    ranged.remove(0)
}

#[test]
fn killed_mid_file_resumes_with_range() {
    let data = pseudo_random_bytes(6, 2 * 1024 * 1024);
    let (root, written) = repo_with(APP.0, APP.1, &[(FILE, data.clone())]);
    // A file synced to the repository a while ago (Apache gives it a strong ETag).
    set_mtime(&written.dir.join(FILE), -3600);
    // Slow enough (about 4 s for the file) to kill the agent in the middle.
    let apache = Apache::builder(root.path())
        .rate_limit_kib_per_sec(512)
        .start();
    let device = Device::new(&[RepoConf::new("central", &apache.url(), 100)]);
    let idf = device.write_idf(&[(APP.0, APP.1, None)]);

    let kept = kill_mid_transfer(&device, &idf, &data);
    device.deliver_idf(&idf).assert_success();

    device.assert_delivered(APP, FILE, &data, "central");
    let resumed = resumed_request(&apache);
    let start = range_start(resumed.range.as_deref().unwrap_or_default());
    assert_eq!(
        start, kept,
        "the resume must start where the part file ends"
    );
    assert!(
        resumed.if_range.is_some(),
        "a resume from the same repository carries If-Range with its ETag: {resumed:?}"
    );
    assert_eq!(resumed.status, 206, "{resumed:?}");
    assert_eq!(
        resumed.bytes,
        data.len() as u64 - kept,
        "bytes fetched twice: {resumed:?}"
    );
}

#[test]
fn resume_from_a_server_with_only_weak_etags_fetches_just_the_rest() {
    let data = pseudo_random_bytes(7, 2 * 1024 * 1024);
    let (root, written) = repo_with(APP.0, APP.1, &[(FILE, data.clone())]);
    // Apache marks the ETag of a file modified less than a second before the request as weak;
    // an mtime in the future makes every ETag of this file weak. A weak ETag never matches in
    // If-Range (RFC 9110 13.1.5: a client must not send one there), so it must not be sent.
    set_mtime(&written.dir.join(FILE), 86_400);
    let apache = Apache::builder(root.path())
        .rate_limit_kib_per_sec(512)
        .start();
    let device = Device::new(&[RepoConf::new("central", &apache.url(), 100)]);
    let idf = device.write_idf(&[(APP.0, APP.1, None)]);

    let kept = kill_mid_transfer(&device, &idf, &data);
    device.deliver_idf(&idf).assert_success();

    device.assert_delivered(APP, FILE, &data, "central");
    let resumed = resumed_request(&apache);
    assert_eq!(
        range_start(resumed.range.as_deref().unwrap_or_default()),
        kept
    );
    assert!(
        !resumed
            .if_range
            .as_deref()
            .is_some_and(|v| v.starts_with("W/")),
        "If-Range carried a weak ETag, so the server resent the whole file: {resumed:?}"
    );
    assert_eq!(resumed.status, 206, "{resumed:?}");
}

#[test]
fn server_ignoring_range_restarts_from_zero_without_corruption() {
    let data = pseudo_random_bytes(10, 400_000);
    let mock = mock_repository(&data, vec![MockResponse::file(data.clone()).ignore_range()]);
    let device = Device::new(&[RepoConf::new("mock", &mock.url(), 100)]);
    // Half a part file of wrong bytes, as if from an earlier run against a broken mirror.
    let part = device.part(APP.0, APP.1, FILE);
    fs::create_dir_all(part.parent().expect("part has a parent")).expect("mkdir staging");
    let half = data.len() / 2;
    fs::write(&part, vec![0u8; half]).expect("cannot write the part file");

    device.deliver(APP.0, APP.1).assert_success();

    device.assert_delivered(APP, FILE, &data, "mock");
    let requests = mock.requests_for(FILE_URL_PATH);
    let first = requests.first().expect("the file was requested");
    assert_eq!(
        first.range(),
        Some(format!("bytes={half}-").as_str()),
        "the agent should have tried to resume the part file"
    );
}

#[test]
fn body_longer_than_declared_size_is_rejected() {
    let data = pseudo_random_bytes(11, 300_000);
    let size = data.len() as u64;
    let long = [data.clone(), pseudo_random_bytes(12, 100_000)].concat();
    let variants = [
        (
            "content-length of the long body",
            MockResponse::file(long.clone()),
        ),
        (
            "no content-length",
            MockResponse::file(long.clone()).omit_length(),
        ),
    ];
    for (case, response) in variants {
        let mock = mock_repository(&data, vec![response.ignore_range()]);
        let device = Device::new(&[RepoConf::new("mock", &mock.url(), 100)]);

        let out = device.deliver(APP.0, APP.1);

        out.assert_code(1);
        let status = device.app_status(APP.0);
        assert_eq!(status["state"], "download-failed", "{case}: {status:#}");
        let error = status["error"].as_str().unwrap_or_default();
        assert!(
            error.contains(&size.to_string()),
            "{case}: the error should name the declared size {size}: {error:?}"
        );
        for dir in ["staging", "apps"] {
            for (path, len) in files_with_sizes(&device.state_dir().join(dir)) {
                assert!(len <= size, "{case}: {} holds {len} bytes", path.display());
            }
        }
    }
}

#[test]
fn body_shorter_than_announced_is_retried_and_completes() {
    let data = pseudo_random_bytes(13, 500_000);
    let cut = 200_000;
    let mock = mock_repository(
        &data,
        vec![
            MockResponse::file(data.clone()).close_after(cut),
            MockResponse::file(data.clone()),
        ],
    );
    let device = Device::new(&[RepoConf::new("mock", &mock.url(), 100)]);

    device.deliver(APP.0, APP.1).assert_success();

    device.assert_delivered(APP, FILE, &data, "mock");
    let requests = mock.requests_for(FILE_URL_PATH);
    assert_eq!(
        requests.len(),
        2,
        "one cut response, one retry: {requests:#?}"
    );
    assert_eq!(requests[0].range(), None);
    let expected = format!("bytes={cut}-");
    assert_eq!(
        requests[1].range(),
        Some(expected.as_str()),
        "the retry should continue where the cut response ended"
    );
}

#[test]
fn repository_failing_mid_file_is_continued_by_the_next_at_the_offset() {
    let data = pseudo_random_bytes(16, 500_000);
    let cut = 150_000;
    // The first repository breaks off after `cut` bytes and then only answers 500.
    let broken = mock_repository(
        &data,
        vec![
            MockResponse::file(data.clone()).close_after(cut),
            MockResponse::status(500),
        ],
    );
    let (root, _) = repo_with(APP.0, APP.1, &[(FILE, data.clone())]);
    let apache = Apache::builder(root.path()).start();
    let device = Device::new(&[
        RepoConf::new("broken", &broken.url(), 200),
        RepoConf::new("central", &apache.url(), 100),
    ]);

    device.deliver(APP.0, APP.1).assert_success();

    device.assert_delivered(APP, FILE, &data, "central");
    let resumed = resumed_request(&apache);
    assert_eq!(
        resumed.range.as_deref(),
        Some(format!("bytes={cut}-").as_str()),
        "the next repository should continue at the offset: {resumed:?}"
    );
    assert_eq!(
        (resumed.status, resumed.bytes),
        (206, (data.len() - cut) as u64)
    );
}

#[test]
fn service_unavailable_with_retry_after_is_retried() {
    let data = pseudo_random_bytes(14, 100_000);
    let mock = mock_repository(
        &data,
        vec![
            MockResponse::unavailable(1),
            MockResponse::file(data.clone()),
        ],
    );
    let device = Device::new(&[RepoConf::new("mock", &mock.url(), 100)]);

    let started = Instant::now();
    device.deliver(APP.0, APP.1).assert_success();
    let took = started.elapsed();

    device.assert_delivered(APP, FILE, &data, "mock");
    assert_eq!(mock.requests_for(FILE_URL_PATH).len(), 2);
    // The configured backoff is 100 ms; only Retry-After makes the agent wait a second.
    assert!(
        took >= Duration::from_millis(900),
        "Retry-After: 1 was not honoured (took {took:?})"
    );
}

#[test]
fn service_unavailable_on_app_json_is_retried_too() {
    let data = pseudo_random_bytes(15, 100_000);
    let mock = mock_repository(&data, vec![MockResponse::file(data.clone())]);
    let manifest = app_json(APP.0, APP.1, &[(FILE, &data)]);
    mock.route_sequence(
        APP_JSON_URL_PATH,
        vec![MockResponse::unavailable(1), MockResponse::file(manifest)],
    );
    let device = Device::new(&[RepoConf::new("mock", &mock.url(), 100)]);

    // DESIGN 9: 5xx -> bounded retries honouring Retry-After; a repository that is busy for
    // a second must not fail the update just because the busy moment hit its app.json.
    device.deliver(APP.0, APP.1).assert_success();

    device.assert_delivered(APP, FILE, &data, "mock");
    assert_eq!(mock.requests_for(APP_JSON_URL_PATH).len(), 2);
}
