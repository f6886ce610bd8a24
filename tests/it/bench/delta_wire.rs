//! Bytes over the wire, as Apache counts them: a second access log of the benchmark's Apache
//! in the format [`WIRE_FORMAT`], with `%O` (bytes sent, headers included: `mod_logio`) and
//! `%I` (bytes received), one line per request.
//!
//! A measured run lies between two marks: a request for `/.mark-N` (a 404) sent straight to
//! Apache by the benchmark itself, and awaited in the log. Apache logs a request after its
//! response was sent, so once the closing mark is there (and a moment more has passed), every
//! request of the run is in the log too.

use std::fs;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

/// `LogFormat` of the wire log: status, bytes sent, bytes received, request line, Range.
pub const WIRE_FORMAT: &str = r#"%>s %O %I \"%r\" \"%{Range}i\""#;
const MARK_PREFIX: &str = "/.mark-";
const MARK_TIMEOUT: Duration = Duration::from_secs(10);
/// After the closing mark: time for a log line still being written by another worker.
const SETTLE: Duration = Duration::from_millis(150);

/// The Apache directives that add the wire log at `path`.
pub fn apache_directives(path: &Path) -> String {
    format!(
        "<IfModule !logio_module>\n\
         LoadModule logio_module /usr/lib/apache2/modules/mod_logio.so\n\
         </IfModule>\n\
         LogFormat \"{WIRE_FORMAT}\" wire\nCustomLog \"{}\" wire",
        path.display()
    )
}

/// One request of a run.
#[derive(Clone, Debug)]
pub struct Request {
    pub status: u16,
    pub sent: u64,
    pub received: u64,
    pub line: String,
    pub range: Option<String>,
}

/// What a run cost on the wire.
#[derive(Clone, Debug, Default)]
pub struct Tally {
    pub requests: Vec<Request>,
}

impl Tally {
    /// Bytes Apache sent, headers included.
    pub fn sent(&self) -> u64 {
        self.requests.iter().map(|r| r.sent).sum()
    }

    pub fn received(&self) -> u64 {
        self.requests.iter().map(|r| r.received).sum()
    }

    /// The requests answered with neither 200 nor 206, as logged.
    pub fn unusual(&self) -> Vec<String> {
        self.requests
            .iter()
            .filter(|r| r.status != 200 && r.status != 206)
            .map(|r| format!("{} {} (Range {:?})", r.status, r.line, r.range))
            .collect()
    }

    /// A one-line account: requests by status, how many carried a Range, and how many
    /// ranges they named.
    pub fn summary(&self) -> String {
        let mut statuses = std::collections::BTreeMap::new();
        for r in &self.requests {
            *statuses.entry(r.status).or_insert(0usize) += 1;
        }
        let with_range = self.requests.iter().filter(|r| r.range.is_some()).count();
        let ranges: usize = self
            .requests
            .iter()
            .filter_map(|r| r.range.as_deref())
            .map(|r| r.split(',').count())
            .sum();
        let statuses: Vec<_> = statuses.iter().map(|(s, n)| format!("{n}× {s}")).collect();
        format!(
            "{} requests ({}), {with_range} with Range naming {ranges} ranges, {} bytes of \
             requests",
            self.requests.len(),
            statuses.join(", "),
            self.received()
        )
    }
}

/// The wire log of one Apache.
pub struct Wire {
    path: PathBuf,
    apache: SocketAddr,
    marks: AtomicU64,
}

impl Wire {
    /// The log at `path` (as given to [`apache_directives`]) of the Apache at `apache`.
    pub fn new(path: PathBuf, apache: SocketAddr) -> Wire {
        Wire {
            path,
            apache,
            marks: AtomicU64::new(0),
        }
    }

    /// Sets a mark; what [`Wire::since`] counts from.
    pub fn mark(&self) -> Result<String> {
        let n = self.marks.fetch_add(1, Ordering::SeqCst);
        let target = format!("{MARK_PREFIX}{n}");
        let mut stream = TcpStream::connect(self.apache).context("cannot reach Apache")?;
        write!(
            stream,
            "GET {target} HTTP/1.0\r\nHost: 127.0.0.1\r\nUser-Agent: bench-mark\r\n\r\n"
        )?;
        let mut sink = Vec::new();
        stream.read_to_end(&mut sink)?;
        let deadline = Instant::now() + MARK_TIMEOUT;
        while !self.lines()?.iter().any(|l| is_mark(l, &target)) {
            if Instant::now() > deadline {
                bail!(
                    "the mark {target} did not reach {} in {MARK_TIMEOUT:?}",
                    self.path.display()
                );
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        Ok(target)
    }

    /// Sets a closing mark and returns the requests logged between `start` (a mark) and it,
    /// the marks left out.
    pub fn since(&self, start: &str) -> Result<Tally> {
        let end = self.mark()?;
        std::thread::sleep(SETTLE);
        let lines = self.lines()?;
        let first = lines
            .iter()
            .position(|l| is_mark(l, start))
            .with_context(|| format!("mark {start} not in the wire log"))?;
        let mut requests = Vec::new();
        for line in &lines[first + 1..] {
            if is_mark(line, &end) {
                break;
            }
            if line.contains(&format!("\"GET {MARK_PREFIX}")) {
                continue;
            }
            requests.push(parse(line).with_context(|| format!("wire log line {line:?}"))?);
        }
        Ok(Tally { requests })
    }

    fn lines(&self) -> Result<Vec<String>> {
        let text = fs::read_to_string(&self.path).unwrap_or_default();
        Ok(text.lines().map(str::to_string).collect())
    }
}

fn is_mark(line: &str, target: &str) -> bool {
    line.contains(&format!("\"GET {target} HTTP/1.0\""))
}

/// `%>s %O %I "%r" "%{Range}i"`.
fn parse(line: &str) -> Option<Request> {
    let mut words = line.splitn(4, ' ');
    let status = words.next()?.parse().ok()?;
    let sent = words.next()?.parse().ok()?;
    let received = words.next()?.parse().ok()?;
    let rest = words.next()?;
    let rest = rest.strip_prefix('"')?;
    let (request, rest) = rest.split_once("\" \"")?;
    let range = rest.strip_suffix('"')?;
    Some(Request {
        status,
        sent,
        received,
        line: request.to_string(),
        range: (range != "-").then(|| range.to_string()),
    })
}
