//! `GET` with `Range` on `repo serve`: 206 with one part or `multipart/byteranges`, or 416;
//! everything else is handed on to dav-server, always without its `Range` header.
//!
//! dav-server's own range answers are why this exists. It sent a multi-range answer without
//! `Content-Length`, so hyper framed it with chunked transfer coding, with bare-LF part headers
//! and the fixed boundary `BOUNDARY`. zsync's HTTP client reads a 206 body raw (it decodes no
//! chunks) and expects one line, then `--boundary`: it took the chunk-size line for that line,
//! found an empty line where the boundary should be, dropped the answer and asked for the same
//! ranges again, hundreds of times a second, forever. Here a multipart answer has its exact
//! `Content-Length`, CRLF lines, a random boundary, and a CRLF before every boundary line.
//!
//! Only a `GET` of a regular file with one `Range` header and no precondition but `If-Range`
//! is answered here ([`super::range::plan`] says what). The rest goes to dav-server with
//! `Range` removed, which makes it a 200 with the whole file where it would have been a range:
//! a `Range` that is invalid, asks for too much or fails its `If-Range` (RFC 9110 14.2, 13.1.5);
//! a `HEAD`, for which RFC 9110 14.2 defines no ranges (so `HEAD` is the head of that 200);
//! and a `Range` with `If-Match`, `If-None-Match`, `If-Modified-Since` or `If-Unmodified-Since`,
//! whose 304 or 412 dav-server decides (a 200 may always ignore `Range`). The `ETag` and
//! `Last-Modified` of a 206 are dav-server's values for the same file, so an `If-Range` built
//! from a 200 matches.
//!
//! Memory per request is bounded: the plan (at most [`range::MAX_RANGES`] parts, with a short
//! header each) and one read of at most [`READ_CHUNK`] bytes; the file is read as the
//! connection takes it, from the descriptor whose size the answer was planned with.

use std::collections::VecDeque;
use std::io;
use std::time::SystemTime;

use axum::body::{Body, Bytes};
use axum::extract::Request;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::Response;
use dav_server::davpath::DavPath;
use dav_server::fs::{DavFile, DavFileSystem, OpenOptions};
use dav_server::localfs::LocalFs;
use futures_util::stream;

use super::range::{self, Part, Piece, Plan};
use crate::report::clean;

/// The most bytes read from the file at once.
const READ_CHUNK: usize = 64 * 1024;

/// What [`answer`] made of a request.
pub enum Answer {
    /// A 206 or 416 to send.
    Response(Response),
    /// For dav-server; any `Range` header is gone.
    Dav(Request),
}

/// Answers `request` when it asks for ranges of a regular file under `files`; hands it back
/// otherwise (see the module comment).
pub async fn answer(files: &LocalFs, mut request: Request) -> Answer {
    let Some(range) = take_range(request.headers_mut()) else {
        return Answer::Dav(request);
    };
    if request.method() != Method::GET || other_precondition(request.headers()) {
        return Answer::Dav(request);
    }
    let Some(file) = open_regular(files, request.uri().path()).await else {
        return Answer::Dav(request);
    };
    if let Some(if_range) = request.headers().get(header::IF_RANGE) {
        let matches = if_range.to_str().is_ok_and(|value| {
            range::if_range_matches(
                value,
                file.etag.as_deref(),
                file.modified,
                SystemTime::now(),
            )
        });
        if !matches {
            return Answer::Dav(request);
        }
    }
    match range::plan(&range, file.len) {
        Plan::Whole => Answer::Dav(request),
        Plan::Unsatisfiable => Answer::Response(unsatisfiable(&file)),
        Plan::Parts(parts) => match partial_content(file, &parts) {
            Some(response) => Answer::Response(response),
            None => Answer::Dav(request),
        },
    }
}

/// Removes every `Range` header; returns the value when there was exactly one, readable.
/// Several `Range` fields are not valid syntax (RFC 9110 14.2), so they are ignored.
fn take_range(headers: &mut HeaderMap) -> Option<String> {
    let count = headers.get_all(header::RANGE).iter().count();
    let value = headers.remove(header::RANGE)?;
    let value = value.to_str().ok()?.to_owned();
    (count == 1).then_some(value)
}

fn other_precondition(headers: &HeaderMap) -> bool {
    [
        header::IF_MATCH,
        header::IF_NONE_MATCH,
        header::IF_MODIFIED_SINCE,
        header::IF_UNMODIFIED_SINCE,
    ]
    .iter()
    .any(|name| headers.contains_key(name))
}

/// An open regular file and what dav-server says about it in a 200.
struct OpenFile {
    file: Box<dyn DavFile>,
    len: u64,
    /// `ETag` value, quotes included.
    etag: Option<String>,
    modified: Option<SystemTime>,
    content_type: &'static str,
    /// The request path, for a log line.
    path: String,
}

/// The regular file at URL path `path`, resolved as dav-server resolves it; `None` for
/// anything else (dav-server then gives its 404, redirect or listing).
async fn open_regular(files: &LocalFs, path: &str) -> Option<OpenFile> {
    let dav_path = DavPath::new(path).ok()?;
    let read = OpenOptions {
        read: true,
        ..OpenOptions::default()
    };
    let mut file = files.open(&dav_path, read).await.ok()?;
    // Metadata of the open descriptor: the size the answer is planned with is the size read.
    let meta = file.metadata().await.ok()?;
    if !meta.is_file() {
        return None;
    }
    Some(OpenFile {
        file,
        len: meta.len(),
        etag: meta.etag().map(|tag| format!("\"{tag}\"")),
        modified: meta.modified().ok(),
        content_type: content_type(dav_path.file_name_bytes()),
        path: path.to_owned(),
    })
}

/// The `Content-Type` dav-server sends for a file named `name`: by the extension after its
/// last dot.
fn content_type(name: &[u8]) -> &'static str {
    name.iter()
        .rposition(|&b| b == b'.')
        .and_then(|dot| std::str::from_utf8(&name[dot + 1..]).ok())
        .and_then(|ext| mime_guess::from_ext(ext).first_raw())
        .unwrap_or("application/octet-stream")
}

/// 416 with `Content-Range: bytes */LEN` (RFC 9110 15.5.17).
fn unsatisfiable(file: &OpenFile) -> Response {
    let mut response = Response::new(Body::empty());
    *response.status_mut() = StatusCode::RANGE_NOT_SATISFIABLE;
    let headers = response.headers_mut();
    validators(headers, file);
    insert(
        headers,
        header::CONTENT_RANGE,
        format!("bytes */{}", file.len),
    );
    headers.insert(header::CONTENT_LENGTH, HeaderValue::from_static("0"));
    response
}

/// 206 with one part, or with several as `multipart/byteranges`; `None` if its length does
/// not fit a `u64`.
fn partial_content(file: OpenFile, parts: &[Part]) -> Option<Response> {
    let mut headers = HeaderMap::new();
    validators(&mut headers, &file);
    let (pieces, length) = match parts {
        [part] => {
            insert(
                &mut headers,
                header::CONTENT_RANGE,
                range::content_range(*part, file.len),
            );
            headers.insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static(file.content_type),
            );
            (vec![Piece::File(*part)], part.len())
        }
        _ => {
            let boundary = hex::encode(rand::random::<[u8; 16]>());
            insert(
                &mut headers,
                header::CONTENT_TYPE,
                format!("multipart/byteranges; boundary={boundary}"),
            );
            range::multipart(parts, file.len, file.content_type, &boundary)?
        }
    };
    insert(&mut headers, header::CONTENT_LENGTH, length.to_string());
    let mut response = Response::new(body(file, pieces));
    *response.status_mut() = StatusCode::PARTIAL_CONTENT;
    *response.headers_mut() = headers;
    Some(response)
}

/// `ETag`, `Last-Modified` and `Accept-Ranges`, as dav-server sends them with a 200.
fn validators(headers: &mut HeaderMap, file: &OpenFile) {
    if let Some(modified) = file.modified {
        insert(
            headers,
            header::LAST_MODIFIED,
            httpdate::fmt_http_date(modified),
        );
    }
    if let Some(etag) = &file.etag {
        insert(headers, header::ETAG, etag.clone());
    }
    headers.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
}

/// Inserts a header built here from digits, dates, tags and tokens; a value that is somehow
/// not a valid header value is left out rather than sent broken.
fn insert(headers: &mut HeaderMap, name: header::HeaderName, value: String) {
    if let Ok(value) = HeaderValue::try_from(value) {
        headers.insert(name, value);
    }
}

/// The body: `pieces` in order, file parts read from `file` as the connection takes them.
fn body(file: OpenFile, pieces: Vec<Piece>) -> Body {
    let reader = Reader {
        file: file.file,
        path: file.path,
        position: None,
        pieces: pieces.into(),
    };
    Body::from_stream(stream::unfold(reader, |mut reader| async move {
        let next = reader.next().await?;
        if next.is_err() {
            reader.pieces.clear();
        }
        Some((next, reader))
    }))
}

struct Reader {
    file: Box<dyn DavFile>,
    path: String,
    /// Where the file's read position is, when known.
    position: Option<u64>,
    pieces: VecDeque<Piece>,
}

impl Reader {
    /// The next bytes of the body; `None` at its end. An error ends the response early, and the
    /// client sees fewer bytes than `Content-Length` promised.
    async fn next(&mut self) -> Option<io::Result<Bytes>> {
        match self.pieces.pop_front()? {
            Piece::Text(text) => Some(Ok(text)),
            Piece::File(part) => Some(self.read(part).await),
        }
    }

    /// Up to [`READ_CHUNK`] bytes from the start of `part`; what is left of it is put back.
    async fn read(&mut self, part: Part) -> io::Result<Bytes> {
        if self.position != Some(part.start) {
            self.file
                .seek(io::SeekFrom::Start(part.start))
                .await
                .map_err(|e| self.failed("seek in", io::Error::other(e)))?;
        }
        let want = usize::try_from(part.len()).map_or(READ_CHUNK, |len| len.min(READ_CHUNK));
        let bytes = self
            .file
            .read_bytes(want)
            .await
            .map_err(|e| self.failed("read", io::Error::other(e)))?;
        let got = u64::try_from(bytes.len()).unwrap_or(u64::MAX);
        if got == 0 {
            // Shrunk while being served: no made-up bytes, the response is cut short.
            return Err(self.failed("read", io::ErrorKind::UnexpectedEof.into()));
        }
        let next = part.start.checked_add(got);
        self.position = next;
        if let Some(start) = next.filter(|&start| start <= part.end) {
            self.pieces.push_front(Piece::File(Part {
                start,
                end: part.end,
            }));
        }
        Ok(bytes)
    }

    fn failed(&self, action: &str, error: io::Error) -> io::Error {
        tracing::warn!(
            "{}: cannot {action} the file while answering a range request ({error}); the \
             response was cut short",
            clean(&self.path)
        );
        error
    }
}
