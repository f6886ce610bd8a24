//! The HTTP/1.1 wire details of the mock: reading a request head and body, the `Range`
//! header, reason phrases. Nothing here decides what to answer.

use std::io::{self, BufRead};

use super::RecordedRequest;

const MAX_HEAD: usize = 64 * 1024;

pub(super) fn read_request(reader: &mut impl BufRead) -> io::Result<Option<RecordedRequest>> {
    let mut head = Vec::new();
    let mut line = String::new();
    loop {
        line.clear();
        if reader.read_line(&mut line)? == 0 {
            return Ok(None);
        }
        if line == "\r\n" || line == "\n" {
            if head.is_empty() {
                continue;
            }
            break;
        }
        head.push(line.trim_end().to_string());
        if head.iter().map(String::len).sum::<usize>() > MAX_HEAD {
            return Ok(None);
        }
    }
    let mut parts = head[0].split_whitespace();
    let method = parts.next().unwrap_or_default().to_string();
    let path = parts.next().unwrap_or_default().to_string();
    let headers: Vec<(String, String)> = head[1..]
        .iter()
        .filter_map(|h| h.split_once(':'))
        .map(|(n, v)| (n.trim().to_string(), v.trim().to_string()))
        .collect();
    let mut request = RecordedRequest {
        method,
        path,
        headers,
        body: Vec::new(),
    };
    if let Some(len) = request
        .header("Content-Length")
        .and_then(|v| v.parse().ok())
    {
        let mut body = vec![0; len];
        reader.read_exact(&mut body)?;
        request.body = body;
    }
    Ok(Some(request))
}

/// `bytes=a-b`, `bytes=a-`, `bytes=-n`: `None` if unparseable (ignored, as servers do),
/// `Some(None)` if unsatisfiable, else the inclusive byte span.
pub(super) fn parse_range(value: &str, total: u64) -> Option<Option<(u64, u64)>> {
    let spec = value.trim().strip_prefix("bytes=")?;
    if spec.contains(',') {
        return None;
    }
    let (first, last) = spec.split_once('-')?;
    let span = match (first.trim(), last.trim()) {
        ("", n) => {
            let n: u64 = n.parse().ok()?;
            (n > 0 && total > 0).then(|| (total.saturating_sub(n), total - 1))
        }
        (a, "") => {
            let a: u64 = a.parse().ok()?;
            (a < total).then(|| (a, total - 1))
        }
        (a, b) => {
            let (a, b): (u64, u64) = (a.parse().ok()?, b.parse().ok()?);
            if b < a {
                return None;
            }
            (a < total).then(|| (a, b.min(total - 1)))
        }
    };
    Some(span)
}

pub(super) fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        206 => "Partial Content",
        207 => "Multi-Status",
        301 => "Moved Permanently",
        302 => "Found",
        304 => "Not Modified",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        416 => "Range Not Satisfiable",
        429 => "Too Many Requests",
        500 => "Internal Server Error",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        _ => "Status",
    }
}
