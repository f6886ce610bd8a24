//! Byte ranges from `repo serve` to real clients (issue 14): `curl` for single, open, suffix
//! and multi-range `GET`s, 416, and the answers that fall back to the whole file (invalid
//! syntax, too many ranges, a failed `If-Range`, `HEAD`), each checked byte for byte; and
//! `zsync`, which fetches the changed blocks of a file as multi-range requests and, against
//! the old server, asked for the same ranges forever. Both tools are required: missing, the
//! test fails (scripts/test installs them).

use std::fs;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use super::repo::{start_serve, write_file};
use crate::support::apache::Apache;
use crate::support::{RunningAgent, pseudo_random_bytes, run_with_timeout, sha256_hex, temp_dir};

const TIMEOUT: Duration = Duration::from_secs(60);
const FILE: &str = "notes/2.0/data.bin";
const LEN: usize = 1000;

/// What curl got: status, headers (names lower-case) and body.
struct Reply {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Reply {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    #[track_caller]
    fn assert_whole(&self, data: &[u8], what: &str) {
        assert_eq!(self.status, 200, "{what}: {:?}", self.headers);
        assert_eq!(self.body, data, "{what}: the whole file");
        assert_eq!(self.header("content-range"), None, "{what}");
    }

    #[track_caller]
    fn assert_part(&self, data: &[u8], start: usize, end: usize, what: &str) {
        assert_eq!(self.status, 206, "{what}: {:?}", self.headers);
        assert_eq!(
            self.header("content-range"),
            Some(format!("bytes {start}-{end}/{}", data.len()).as_str()),
            "{what}"
        );
        assert_eq!(
            self.header("content-length"),
            Some((end - start + 1).to_string().as_str()),
            "{what}"
        );
        assert_eq!(self.body, &data[start..=end], "{what}");
    }
}

/// `curl ARGS URL`, headers read from what `-D` dumps.
fn curl(url: &str, args: &[&str]) -> Reply {
    let out = Command::new("curl")
        .args(["-sS", "--max-time", "30", "-D", "/dev/stderr", "-o", "-"])
        .args(args)
        .arg(url)
        .output()
        .expect("curl is needed (apt-get install curl; scripts/test installs it)");
    let head = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "curl {args:?} {url}: {head}");
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("curl {args:?}: no status line in {head:?}"));
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    Reply {
        status,
        headers,
        body: out.stdout,
    }
}

/// A repository holding [`FILE`] (pseudo-random bytes) behind `repo serve`: the server, the
/// file's URL and its bytes.
fn serve_data(name: &str) -> (tempfile::TempDir, RunningAgent, String, Vec<u8>) {
    let dir = temp_dir(name);
    let data = pseudo_random_bytes(14, LEN);
    write_file(&dir.path().join(FILE), &data);
    let (server, url) = start_serve(dir.path(), &["--listen", "127.0.0.1:0"]);
    (dir, server, format!("{url}{FILE}"), data)
}

/// The `multipart/byteranges` body RFC 9110 14.6 describes for `parts` of `data`, with CRLF
/// lines and a CRLF before every boundary line (as Apache sends it).
fn multipart(boundary: &str, parts: &[(usize, usize)], data: &[u8]) -> Vec<u8> {
    let mut body = Vec::new();
    for &(start, end) in parts {
        body.extend_from_slice(
            format!(
                "\r\n--{boundary}\r\nContent-Type: application/octet-stream\r\n\
                 Content-Range: bytes {start}-{end}/{}\r\n\r\n",
                data.len()
            )
            .as_bytes(),
        );
        body.extend_from_slice(&data[start..=end]);
    }
    body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    body
}

#[test]
fn repo_serve_answers_curl_single_open_and_suffix_ranges_byte_for_byte() {
    let (_dir, mut server, url, data) = serve_data("ranges-single");

    curl(&url, &["-r", "0-9"]).assert_part(&data, 0, 9, "0-9");
    curl(&url, &["-r", "990-"]).assert_part(&data, 990, 999, "990-");
    curl(&url, &["-r", "-100"]).assert_part(&data, 900, 999, "-100");
    curl(&url, &["-r", "-5000"]).assert_part(&data, 0, 999, "suffix longer than the file");
    curl(&url, &["-r", "995-5000"]).assert_part(&data, 995, 999, "end past the file");

    server.wait_for_stderr(&format!("\"GET /{FILE}\" 206 1000 bytes"), TIMEOUT);
}

#[test]
fn repo_serve_answers_curl_multi_range_as_multipart_byteranges_with_its_exact_length() {
    let (_dir, mut server, url, data) = serve_data("ranges-multi");

    for (asked, parts) in [
        ("0-9,20-29", vec![(0, 9), (20, 29)]),
        // The last 3 bytes merge into the range after them; order is kept.
        ("500-509,-3,100-", vec![(500, 509), (100, 999)]),
        // Overlapping and adjacent ranges are merged into the part before them.
        ("0-9,5-19,20-29,40-49", vec![(0, 29), (40, 49)]),
    ] {
        let reply = curl(&url, &["-r", asked]);
        assert_eq!(reply.status, 206, "{asked}: {:?}", reply.headers);
        let content_type = reply.header("content-type").unwrap_or_default();
        let boundary = content_type
            .strip_prefix("multipart/byteranges; boundary=")
            .unwrap_or_else(|| panic!("{asked}: Content-Type {content_type:?}"));
        let expected = multipart(boundary, &parts, &data);
        assert!(
            reply.body == expected,
            "{asked}: got\n{}\nexpected\n{}",
            String::from_utf8_lossy(&reply.body),
            String::from_utf8_lossy(&expected)
        );
        assert_eq!(
            reply.header("content-length"),
            Some(reply.body.len().to_string().as_str()),
            "{asked}: sent with its length, not chunked"
        );
        assert_eq!(reply.header("transfer-encoding"), None, "{asked}");
        server.wait_for_stderr(
            &format!("\"GET /{FILE}\" 206 {} bytes", reply.body.len()),
            TIMEOUT,
        );
    }
    // Merged into one part, it is a plain 206.
    curl(&url, &["-r", "0-9,10-19"]).assert_part(&data, 0, 19, "adjacent");
}

#[test]
fn repo_serve_answers_416_past_the_end_and_the_whole_file_for_bad_or_too_many_ranges() {
    let (_dir, _server, url, data) = serve_data("ranges-416");

    for asked in ["1000-", "1000-2000,5000-", "18446744073709551615-"] {
        let reply = curl(&url, &["-r", asked]);
        assert_eq!(reply.status, 416, "{asked}: {:?}", reply.headers);
        assert_eq!(
            reply.header("content-range"),
            Some("bytes */1000"),
            "{asked}"
        );
    }

    let many: Vec<String> = (0..201)
        .map(|i| format!("{}-{}", i * 3, i * 3 + 1))
        .collect();
    let too_many = format!("Range: bytes={}", many.join(","));
    curl(&url, &["-H", &too_many]).assert_whole(&data, "201 ranges");
    let at_most: Vec<String> = (0..200)
        .map(|i| format!("{}-{}", i * 3, i * 3 + 1))
        .collect();
    let reply = curl(
        &url,
        &["-H", &format!("Range: bytes={}", at_most.join(","))],
    );
    assert_eq!(reply.status, 206, "200 ranges are served");

    for invalid in [
        "bytes=9-1",
        "bytes=abc",
        "bytes=0-9,x",
        "lines=0-9",
        "bytes=0-99999999999999999999999999999999",
    ] {
        curl(&url, &["-H", &format!("Range: {invalid}")]).assert_whole(&data, invalid);
    }
}

#[test]
fn repo_serve_honours_if_range_and_answers_head_as_the_whole_file() {
    let (_dir, _server, url, data) = serve_data("ranges-if-range");
    let whole = curl(&url, &[]);
    whole.assert_whole(&data, "plain GET");
    let etag = whole.header("etag").expect("an ETag").to_string();
    let modified = whole
        .header("last-modified")
        .expect("Last-Modified")
        .to_string();
    assert!(etag.starts_with('"'), "a strong ETag: {etag}");

    // The agent's resume: an open range with the ETag of an earlier answer.
    let resume = curl(&url, &["-r", "600-", "-H", &format!("If-Range: {etag}")]);
    resume.assert_part(&data, 600, 999, "If-Range with the ETag");
    assert_eq!(resume.header("etag"), Some(etag.as_str()));
    assert_eq!(resume.header("last-modified"), Some(modified.as_str()));
    let multi = curl(
        &url,
        &["-r", "0-9,20-29", "-H", &format!("If-Range: {etag}")],
    );
    assert_eq!(multi.status, 206, "several ranges with If-Range");

    for other in [
        "\"another-tag\"",
        &format!("W/{etag}"),
        "Thu, 01 Jan 1970 00:00:00 GMT",
    ] {
        curl(&url, &["-r", "600-", "-H", &format!("If-Range: {other}")]).assert_whole(&data, other);
    }
    // The file was written more than a second ago by now: its date is a strong validator.
    std::thread::sleep(Duration::from_millis(1100));
    curl(
        &url,
        &["-r", "600-", "-H", &format!("If-Range: {modified}")],
    )
    .assert_part(&data, 600, 999, "If-Range with the date");

    // HEAD defines no ranges (RFC 9110 14.2): the head of the 200.
    let head = curl(&url, &["-I", "-r", "0-9,20-29"]);
    assert_eq!(head.status, 200, "{:?}", head.headers);
    assert_eq!(head.header("content-length"), Some("1000"));
    assert_eq!(head.header("etag"), Some(etag.as_str()));
}

/// `old` with 40 changed stretches and one insertion, so that zsync needs more ranges than
/// it puts into one request (20).
fn modified_copy(old: &[u8]) -> Vec<u8> {
    let mut new = old.to_vec();
    let noise = pseudo_random_bytes(99, 40 * 700);
    for (i, chunk) in noise.chunks(700).enumerate() {
        let at = 1000 + i * (old.len() / 41);
        new[at..at + chunk.len()].copy_from_slice(chunk);
    }
    let middle = new.len() / 2;
    new.splice(middle..middle, pseudo_random_bytes(100, 5000));
    new
}

/// Runs `zsync` in `client` against `control_url` with `old.bin` as the seed; returns the
/// SHA-256 of what it built.
fn zsync(client: &Path, control_url: &str) -> String {
    let out_file = client.join("out.bin");
    let _ = fs::remove_file(&out_file);
    let mut cmd = Command::new("zsync");
    cmd.current_dir(client)
        .args(["-q", "-i", "old.bin", "-o", "out.bin"])
        .arg(control_url);
    let started = Instant::now();
    run_with_timeout(cmd, TIMEOUT).assert_success();
    eprintln!("zsync {control_url}: {:?}", started.elapsed());
    sha256_hex(&fs::read(&out_file).expect("zsync wrote out.bin"))
}

/// `count()` once it has stopped changing for a moment: a server logs a request only after
/// its answer went out, and the client may be done a moment before that.
fn settled(mut count: impl FnMut() -> usize) -> usize {
    let deadline = Instant::now() + TIMEOUT;
    let mut last = count();
    loop {
        std::thread::sleep(Duration::from_millis(300));
        let now = count();
        if (now == last && now > 0) || Instant::now() > deadline {
            return now;
        }
        last = now;
    }
}

#[test]
fn zsync_updates_a_modified_copy_through_repo_serve_in_as_few_requests_as_through_apache() {
    let dir = temp_dir("ranges-zsync");
    let repo = dir.path().join("repo");
    let client = dir.path().join("client");
    fs::create_dir_all(&client).expect("mkdir client");
    let old = pseudo_random_bytes(41, 8 * 1024 * 1024);
    let new = modified_copy(&old);
    fs::write(client.join("old.bin"), &old).expect("write old.bin");
    write_file(&repo.join("app/2.0/new.bin"), &new);
    let mut make = Command::new("zsyncmake");
    make.current_dir(repo.join("app/2.0")).args([
        "-u",
        "new.bin",
        "-o",
        "new.bin.zsync",
        "new.bin",
    ]);
    let made = make
        .output()
        .expect("zsyncmake is needed (apt-get install zsync; scripts/test installs it)");
    assert!(made.status.success(), "zsyncmake: {made:?}");
    let expected = sha256_hex(&new);

    let (server, url) = start_serve(&repo, &["--listen", "127.0.0.1:0"]);
    assert_eq!(
        zsync(&client, &format!("{url}app/2.0/new.bin.zsync")),
        expected
    );
    let served = settled(|| {
        server
            .stderr()
            .matches("\"GET /app/2.0/new.bin\" 206 ")
            .count()
    });
    let stderr = server.stderr();
    assert!(
        !stderr.contains("\"GET /app/2.0/new.bin\" 200 "),
        "zsync got no whole file:\n{stderr}"
    );

    let apache = Apache::builder(&repo).start();
    assert_eq!(
        zsync(&client, &format!("{}app/2.0/new.bin.zsync", apache.url())),
        expected
    );
    let apache_count = settled(|| apache.requests_for("/app/2.0/new.bin").len());

    eprintln!("range requests for zsync: repo serve {served}, Apache {apache_count}");
    assert!(served >= 2, "more ranges than fit one request:\n{stderr}");
    assert!(
        served <= apache_count,
        "repo serve needed {served} requests, Apache {apache_count}:\n{stderr}"
    );
}
