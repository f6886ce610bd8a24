//! A raw HTTP/1.1 server on std threads for the faults a real server cannot be made to show.
//!
//! DESIGN 12 keeps mocks for what Apache cannot do on demand: ignore `Range`, send more or
//! fewer bytes than `Content-Length` says, drop the connection mid-body, stall, trickle, or
//! answer with a chosen status (503 with `Retry-After`, 404, ...). Every request is recorded
//! (method, target, headers, body) so a test can assert what the client asked for.
//!
//! Responses are configured per path ([`MockServer::route`]); a sequence of responses is
//! served in order and its last one repeats ([`MockServer::route_sequence`]). A path without a
//! route is a 404. `PROPFIND` gets a minimal `207` listing built from the routed paths.
//! The server speaks just enough HTTP for reqwest and curl: keep-alive, `Content-Length`
//! request bodies, a single `bytes=` range. It never follows the agent's rules; tests do.

use std::collections::{HashMap, VecDeque};
use std::io::{self, BufReader, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime};

mod listing;
mod wire;

use listing::listing;
use wire::{parse_range, read_request, reason};

const LAST_MODIFIED: &str = "Sat, 01 Jan 2022 00:00:00 GMT";

/// How the `Content-Length` header relates to the body actually sent.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Length {
    Exact,
    Omitted,
}

/// One configured answer. Build with [`MockResponse::file`] or [`MockResponse::status`] and
/// the fault knobs.
#[derive(Clone, Debug)]
pub struct MockResponse {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
    is_file: bool,
    honour_range: bool,
    length: Length,
    close_after: Option<usize>,
    trickle: Option<(usize, Duration)>,
}

impl MockResponse {
    /// A well-behaved file: 200, or 206 for a single `bytes=` range; `ETag`, `Last-Modified`,
    /// `Accept-Ranges`; an `If-Range` that does not match the ETag gets the full 200.
    pub fn file(body: impl Into<Vec<u8>>) -> MockResponse {
        let body = body.into();
        let etag = format!("\"{}-{}\"", body.len(), &super::sha256_hex(&body)[..16]);
        MockResponse {
            status: 200,
            headers: vec![
                ("ETag".into(), etag),
                ("Last-Modified".into(), LAST_MODIFIED.into()),
            ],
            body,
            is_file: true,
            honour_range: true,
            length: Length::Exact,
            close_after: None,
            trickle: None,
        }
    }

    /// A bare status with an empty body (add headers and a body as needed).
    pub fn status(status: u16) -> MockResponse {
        MockResponse {
            status,
            is_file: false,
            honour_range: false,
            headers: Vec::new(),
            body: Vec::new(),
            ..MockResponse::file(Vec::new())
        }
    }

    /// `404 Not Found`.
    pub fn not_found() -> MockResponse {
        MockResponse::status(404)
    }

    /// `503 Service Unavailable` with `Retry-After: <seconds>`.
    pub fn unavailable(retry_after_secs: u64) -> MockResponse {
        MockResponse::status(503).header("Retry-After", &retry_after_secs.to_string())
    }

    /// Adds a response header (a `Date` header replaces the default one).
    pub fn header(mut self, name: &str, value: &str) -> MockResponse {
        self.headers.push((name.to_string(), value.to_string()));
        self
    }

    /// Replaces the body.
    pub fn body(mut self, body: impl Into<Vec<u8>>) -> MockResponse {
        self.body = body.into();
        self
    }

    /// A server that ignores `Range`: always 200 with the full body, no `Accept-Ranges`.
    pub fn ignore_range(mut self) -> MockResponse {
        self.honour_range = false;
        self
    }

    /// No `Content-Length`: the body ends when the connection closes (`Connection: close`).
    pub fn omit_length(mut self) -> MockResponse {
        self.length = Length::Omitted;
        self
    }

    /// Announces the full length but closes the connection after `n` body bytes.
    pub fn close_after(mut self, n: usize) -> MockResponse {
        self.close_after = Some(n);
        self
    }

    /// Sends the body `chunk` bytes at a time with `interval` between chunks.
    pub fn trickle(mut self, chunk: usize, interval: Duration) -> MockResponse {
        assert!(chunk > 0, "a trickle needs a chunk size above zero");
        self.trickle = Some((chunk, interval));
        self
    }
}

/// A request as the mock received it.
#[derive(Clone, Debug)]
pub struct RecordedRequest {
    pub method: String,
    /// The request target as sent (path and query).
    pub path: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl RecordedRequest {
    /// The first header named `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The `Range` header, if any.
    pub fn range(&self) -> Option<&str> {
        self.header("Range")
    }
}

#[derive(Default)]
struct State {
    routes: HashMap<(Option<String>, String), VecDeque<MockResponse>>,
    requests: Vec<RecordedRequest>,
}

impl State {
    fn next_response(&mut self, method: &str, path: &str) -> Option<MockResponse> {
        let path = path.split('?').next().unwrap_or(path).to_string();
        let specific = (Some(method.to_string()), path.clone());
        let key = if self.routes.contains_key(&specific) {
            specific
        } else {
            (None, path)
        };
        let queue = self.routes.get_mut(&key)?;
        if queue.len() > 1 {
            queue.pop_front()
        } else {
            queue.front().cloned()
        }
    }
}

/// The running mock; stops accepting when dropped.
pub struct MockServer {
    addr: SocketAddr,
    state: Arc<Mutex<State>>,
    stop: Arc<AtomicBool>,
    acceptor: Option<JoinHandle<()>>,
}

impl MockServer {
    /// Starts a mock on `127.0.0.1` with a port chosen by the kernel.
    pub fn start() -> MockServer {
        let listener = TcpListener::bind("127.0.0.1:0").expect("mock: cannot bind loopback");
        let addr = listener.local_addr().expect("mock: no local address");
        let state = Arc::new(Mutex::new(State::default()));
        let stop = Arc::new(AtomicBool::new(false));
        let (st, sp) = (state.clone(), stop.clone());
        let acceptor = std::thread::spawn(move || accept_loop(listener, st, sp));
        MockServer {
            addr,
            state,
            stop,
            acceptor: Some(acceptor),
        }
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// `http://127.0.0.1:PORT/`
    pub fn url(&self) -> String {
        format!("http://{}/", self.addr)
    }

    /// Answers every method on `path` (e.g. `/app/1.0/file.bin`) with `response`.
    pub fn route(&self, path: &str, response: MockResponse) {
        self.route_sequence(path, vec![response]);
    }

    /// Answers `path` with `responses` in order; the last one repeats.
    pub fn route_sequence(&self, path: &str, responses: Vec<MockResponse>) {
        self.insert(None, path, responses);
    }

    /// Answers only `method` on `path` (checked before the method-agnostic routes).
    pub fn route_method(&self, method: &str, path: &str, response: MockResponse) {
        self.insert(Some(method.to_string()), path, vec![response]);
    }

    fn insert(&self, method: Option<String>, path: &str, responses: Vec<MockResponse>) {
        assert!(!responses.is_empty(), "a route needs at least one response");
        assert!(path.starts_with('/'), "mock paths start with '/': {path}");
        let mut state = self.state.lock().expect("mock state poisoned");
        state
            .routes
            .insert((method, path.to_string()), responses.into());
    }

    /// Every request received so far, oldest first.
    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.state
            .lock()
            .expect("mock state poisoned")
            .requests
            .clone()
    }

    /// Requests whose target (without query) is `path`.
    pub fn requests_for(&self, path: &str) -> Vec<RecordedRequest> {
        self.requests()
            .into_iter()
            .filter(|r| r.path.split('?').next() == Some(path))
            .collect()
    }
}

impl Drop for MockServer {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("--- mock {} requests ---", self.url());
            for r in self.requests() {
                eprintln!("{} {} range={:?}", r.method, r.path, r.range());
            }
        }
        self.stop.store(true, Ordering::SeqCst);
        // Wake the blocking accept so the thread sees the flag.
        let _ = TcpStream::connect(self.addr);
        if let Some(handle) = self.acceptor.take() {
            let _ = handle.join();
        }
    }
}

fn accept_loop(listener: TcpListener, state: Arc<Mutex<State>>, stop: Arc<AtomicBool>) {
    for conn in listener.incoming() {
        if stop.load(Ordering::SeqCst) {
            return;
        }
        let Ok(stream) = conn else { continue };
        let (state, stop) = (state.clone(), stop.clone());
        std::thread::spawn(move || serve_connection(stream, state, stop));
    }
}

fn serve_connection(stream: TcpStream, state: Arc<Mutex<State>>, stop: Arc<AtomicBool>) {
    let _ = stream.set_read_timeout(Some(Duration::from_secs(30)));
    let Ok(read_half) = stream.try_clone() else {
        return;
    };
    let mut reader = BufReader::new(read_half);
    let mut writer = stream;
    while !stop.load(Ordering::SeqCst) {
        let Ok(Some(request)) = read_request(&mut reader) else {
            return;
        };
        let response = {
            let mut state = state.lock().expect("mock state poisoned");
            state.requests.push(request.clone());
            if request.method == "PROPFIND" {
                state
                    .next_response("PROPFIND", &request.path)
                    .or_else(|| Some(listing(&state, &request)))
            } else {
                state.next_response(&request.method, &request.path)
            }
        };
        let response = response.unwrap_or_else(MockResponse::not_found);
        let close_requested = request
            .header("Connection")
            .is_some_and(|v| v.eq_ignore_ascii_case("close"));
        match send(&mut writer, &request, &response) {
            Ok(true) if !close_requested => continue,
            _ => {
                let _ = writer.shutdown(Shutdown::Both);
                return;
            }
        }
    }
}

/// Writes the response; returns whether the connection may be reused.
fn send(
    out: &mut TcpStream,
    request: &RecordedRequest,
    response: &MockResponse,
) -> io::Result<bool> {
    let (status, body, mut headers) = select_body(request, response);
    match response.length {
        Length::Exact => headers.push(("Content-Length".into(), body.len().to_string())),
        Length::Omitted => headers.push(("Connection".into(), "close".into())),
    }
    if !headers.iter().any(|(n, _)| n.eq_ignore_ascii_case("Date")) {
        headers.push(("Date".into(), httpdate::fmt_http_date(SystemTime::now())));
    }
    let mut head = format!("HTTP/1.1 {status} {}\r\n", reason(status));
    for (name, value) in &headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("\r\n");
    out.write_all(head.as_bytes())?;
    if request.method == "HEAD" {
        out.flush()?;
        return Ok(response.length == Length::Exact);
    }
    let limit = response
        .close_after
        .map_or(body.len(), |n| n.min(body.len()));
    let (chunk, interval) = response.trickle.unwrap_or((64 * 1024, Duration::ZERO));
    for (i, piece) in body[..limit].chunks(chunk).enumerate() {
        if i > 0 && !interval.is_zero() {
            std::thread::sleep(interval);
        }
        out.write_all(piece)?;
        out.flush()?;
    }
    Ok(response.close_after.is_none() && response.length == Length::Exact)
}

/// Status, body slice and headers after applying Range / If-Range semantics.
fn select_body<'a>(
    request: &RecordedRequest,
    response: &'a MockResponse,
) -> (u16, &'a [u8], Vec<(String, String)>) {
    let mut headers = response.headers.clone();
    let full = response.body.as_slice();
    if !response.is_file || !response.honour_range {
        return (response.status, full, headers);
    }
    headers.push(("Accept-Ranges".into(), "bytes".into()));
    let validator_matches = request.header("If-Range").is_none_or(|wanted| {
        response
            .headers
            .iter()
            .any(|(n, v)| (n == "ETag" || n == "Last-Modified") && v == wanted)
    });
    let Some(range) = request.range().filter(|_| validator_matches) else {
        return (response.status, full, headers);
    };
    let total = full.len() as u64;
    match parse_range(range, total) {
        Some(Some((start, end))) => {
            headers.push((
                "Content-Range".into(),
                format!("bytes {start}-{end}/{total}"),
            ));
            (206, &full[start as usize..=end as usize], headers)
        }
        Some(None) => {
            headers.push(("Content-Range".into(), format!("bytes */{total}")));
            (416, &[], headers)
        }
        None => (response.status, full, headers),
    }
}
