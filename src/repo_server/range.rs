//! Byte ranges of a `GET` (RFC 9110 14): which parts of a file a `Range` header asks for
//! ([`plan`]), whether an `If-Range` lets the ranges through ([`if_range_matches`]), and the
//! bytes around the parts of a `multipart/byteranges` body ([`multipart`]). Pure: no I/O, no
//! clock, no async; [`super::partial`] does the serving.
//!
//! Every answer is bounded, whatever the client sends. At most [`MAX_RANGES`] ranges are read
//! (Apache's `MaxRanges` default); a number has at most 30 digits, and one beyond `u64` means
//! "to the end"; all arithmetic is checked. The parts are served in the order asked, and a
//! range that overlaps or touches the part before it is merged into that part. The `Range` is
//! ignored, and the whole file goes out with 200 as Apache does, when it is not valid `bytes=`
//! syntax, has too many ranges or too long a number, or when its parts would still add up to
//! more bytes than the file has (ranges that overlap out of order). So a 206 is never longer
//! than the file plus one short header per part.
//!
//! Why this is written here: parsing is `http-range-header`'s (no dependencies, the strict RFC
//! 9110 grammar, bounded as above), but no well-kept crate plans and lays out a
//! `multipart/byteranges` answer streamed from a file. tower-http's `ServeFile` answers several
//! ranges with 416; `http-serve` 0.3 is built on http 0.2 (0.4 exists only as release
//! candidates), reads any number of ranges and overflows on `bytes=0-18446744073709551615`;
//! dav-server's own GET, which [`super::partial`] replaces for ranges, is what made zsync loop.

use std::num::NonZeroUsize;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http_range_header::SyntacticallyCorrectRange as Spec;

/// The most ranges one request may ask for; with more the whole file is sent (200).
pub const MAX_RANGES: usize = 200;
/// Checked when compiling.
const MAX_RANGES_NONZERO: NonZeroUsize = NonZeroUsize::new(MAX_RANGES).expect("MAX_RANGES > 0");

/// Bytes `start..=end` of a file; `end` is below the file's length.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Part {
    pub start: u64,
    pub end: u64,
}

impl Part {
    /// Cannot overflow: `start <= end < file length <= u64::MAX`.
    pub fn len(self) -> u64 {
        self.end - self.start + 1
    }
}

/// What to answer a `GET` with a `Range` header.
#[derive(Debug, PartialEq, Eq)]
pub enum Plan {
    /// Ignore the `Range`: 200 with the whole file.
    Whole,
    /// 416 with `Content-Range: bytes */LEN`: no range overlaps the file.
    Unsatisfiable,
    /// 206 with these parts in this order: one is a plain 206, more a `multipart/byteranges`.
    Parts(Vec<Part>),
}

/// What `Range: header` asks of a file of `len` bytes.
pub fn plan(header: &str, len: u64) -> Plan {
    let max = MAX_RANGES_NONZERO;
    let Ok(parsed) = http_range_header::parse_range_header_with_max_ranges(header, max) else {
        return Plan::Whole;
    };
    let specs = parsed.into_ranges();
    let mut parts: Vec<Part> = Vec::with_capacity(specs.len());
    for part in specs.iter().filter_map(|&spec| resolve(spec, len)) {
        match parts.last_mut() {
            Some(last) if touches(*last, part) => {
                *last = Part {
                    start: last.start.min(part.start),
                    end: last.end.max(part.end),
                };
            }
            _ => parts.push(part),
        }
    }
    if parts.is_empty() {
        // RFC 9110 14.1.2: a suffix is satisfiable on an empty file; it selects nothing.
        let empty_suffix = len == 0
            && specs
                .iter()
                .any(|s| matches!(s, Spec::FromLast(n) if *n > 0));
        return if empty_suffix {
            Plan::Whole
        } else {
            Plan::Unsatisfiable
        };
    }
    let total = parts
        .iter()
        .try_fold(0u64, |sum, part| sum.checked_add(part.len()));
    match total {
        Some(total) if total <= len => Plan::Parts(parts),
        _ => Plan::Whole,
    }
}

/// The bytes of a file of `len` bytes that `spec` selects; `None` when it selects none.
fn resolve(spec: Spec, len: u64) -> Option<Part> {
    let last = len.checked_sub(1)?;
    match spec {
        Spec::FromStart(start) => (start <= last).then_some(Part { start, end: last }),
        Spec::FromLast(0) => None,
        Spec::FromLast(suffix) => Some(Part {
            start: len - suffix.min(len),
            end: last,
        }),
        Spec::Indexed(start, end) => (start <= last).then_some(Part {
            start,
            end: end.min(last),
        }),
    }
}

/// Whether `a` and `b` overlap or are adjacent, so that one part can carry both.
fn touches(a: Part, b: Part) -> bool {
    a.start <= b.end.saturating_add(1) && b.start <= a.end.saturating_add(1)
}

/// Whether `If-Range: value` lets the ranges through for a file whose `ETag` (quotes
/// included) is `etag` and whose modification time is `modified`, at `now` (RFC 9110 13.1.5).
///
/// An entity tag matches only strongly: the same strong tag. A date matches only when it is
/// exactly the file's `Last-Modified` and that is a strong validator, that is the file is at
/// least a second older than `now` (a second change within the same second would keep it).
pub fn if_range_matches(
    value: &str,
    etag: Option<&str>,
    modified: Option<SystemTime>,
    now: SystemTime,
) -> bool {
    let value = value.trim();
    if value.starts_with("W/") {
        return false;
    }
    if value.starts_with('"') {
        return etag == Some(value);
    }
    let (Ok(date), Some(modified)) = (httpdate::parse_http_date(value), modified) else {
        return false;
    };
    let Ok(since_epoch) = modified.duration_since(UNIX_EPOCH) else {
        return false;
    };
    let whole_seconds = UNIX_EPOCH + Duration::from_secs(since_epoch.as_secs());
    let strong = now
        .duration_since(modified)
        .is_ok_and(|age| age >= Duration::from_secs(1));
    date == whole_seconds && strong
}

/// One piece of a 206 body: text of the multipart framing, or bytes of the file.
#[derive(Debug, PartialEq, Eq)]
pub enum Piece {
    Text(Bytes),
    File(Part),
}

/// The body of a `multipart/byteranges` 206 (RFC 9110 14.6) for `parts` of a file of `len`
/// bytes, each part labelled `content_type`, and its exact length; `None` if that length does
/// not fit a `u64`. `boundary` must not occur in the file: a random one does not, in practice.
///
/// Lines end in CRLF, and a CRLF comes before every boundary line, the first one too, as
/// Apache and nginx send it: zsync reads one line before each boundary and expects that one.
pub fn multipart(
    parts: &[Part],
    len: u64,
    content_type: &str,
    boundary: &str,
) -> Option<(Vec<Piece>, u64)> {
    let mut pieces = Vec::with_capacity(parts.len() * 2 + 1);
    let mut total = 0u64;
    for part in parts {
        let head = format!(
            "\r\n--{boundary}\r\nContent-Type: {content_type}\r\nContent-Range: {}\r\n\r\n",
            content_range(*part, len)
        );
        total = total
            .checked_add(u64::try_from(head.len()).ok()?)?
            .checked_add(part.len())?;
        pieces.push(Piece::Text(Bytes::from(head)));
        pieces.push(Piece::File(*part));
    }
    let tail = format!("\r\n--{boundary}--\r\n");
    total = total.checked_add(u64::try_from(tail.len()).ok()?)?;
    pieces.push(Piece::Text(Bytes::from(tail)));
    Some((pieces, total))
}

/// `bytes START-END/LEN`, the `Content-Range` of `part`.
pub fn content_range(part: Part, len: u64) -> String {
    format!("bytes {}-{}/{len}", part.start, part.end)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parts(list: &[(u64, u64)]) -> Plan {
        Plan::Parts(
            list.iter()
                .map(|&(start, end)| Part { start, end })
                .collect(),
        )
    }

    #[test]
    fn single_open_suffix_and_closed_ranges_select_what_rfc_9110_says() {
        assert_eq!(plan("bytes=0-9", 100), parts(&[(0, 9)]));
        assert_eq!(plan("bytes=90-", 100), parts(&[(90, 99)]));
        assert_eq!(plan("bytes=-10", 100), parts(&[(90, 99)]));
        assert_eq!(plan("bytes=-1000", 100), parts(&[(0, 99)]), "suffix > len");
        assert_eq!(
            plan("bytes=95-1000", 100),
            parts(&[(95, 99)]),
            "end clipped"
        );
        assert_eq!(plan("bytes=99-99", 100), parts(&[(99, 99)]));
        assert_eq!(plan("BYTES=0-0", 100), parts(&[(0, 0)]), "unit case");
    }

    #[test]
    fn several_ranges_stay_in_the_order_asked() {
        assert_eq!(plan("bytes=0-9,20-29", 100), parts(&[(0, 9), (20, 29)]));
        assert_eq!(plan("bytes=50-59, 0-9", 100), parts(&[(50, 59), (0, 9)]));
    }

    #[test]
    fn overlapping_or_adjacent_ranges_merge_into_the_part_before() {
        assert_eq!(plan("bytes=0-9,10-19", 100), parts(&[(0, 19)]));
        assert_eq!(
            plan("bytes=0-9,5-14,30-39", 100),
            parts(&[(0, 14), (30, 39)])
        );
        assert_eq!(plan("bytes=10-19,0-9", 100), parts(&[(0, 19)]));
        assert_eq!(plan("bytes=0-9,0-9,0-9", 100), parts(&[(0, 9)]));
        assert_eq!(plan("bytes=-10,0-", 100), parts(&[(0, 99)]));
    }

    #[test]
    fn overlapping_ranges_never_send_more_than_the_file() {
        // The "Apache killer": the same bytes asked for again and again.
        let killer = format!("bytes={}", ["0-", "5-9"].repeat(100).join(","));
        assert_eq!(plan(&killer, 100), parts(&[(0, 99)]));
        let spread: Vec<String> = (0..MAX_RANGES)
            .map(|i| format!("{}-{}", i % 7, 90 + i % 5))
            .collect();
        assert_eq!(
            plan(&format!("bytes={}", spread.join(",")), 100),
            parts(&[(0, 94)])
        );
        // Out of order, they cannot merge: the whole file instead.
        assert_eq!(plan("bytes=0-59,70-79,40-99", 100), Plan::Whole);
    }

    #[test]
    fn unsatisfiable_ranges_are_dropped_and_none_left_is_416() {
        assert_eq!(plan("bytes=100-", 100), Plan::Unsatisfiable);
        assert_eq!(plan("bytes=100-200,-0", 100), Plan::Unsatisfiable);
        assert_eq!(plan("bytes=0-9,100-200", 100), parts(&[(0, 9)]));
        assert_eq!(plan("bytes=0-0", 0), Plan::Unsatisfiable);
        assert_eq!(plan("bytes=-5", 0), Plan::Whole, "an empty file's suffix");
    }

    #[test]
    fn invalid_syntax_is_ignored_and_the_whole_file_sent() {
        for header in [
            "bytes=9-0",
            "bytes=abc",
            "bytes=0-9,abc",
            "bytes=",
            "bytes=--5",
            "bytes=+1-2",
            "bytes=-",
            "items=0-9",
            "0-9",
            "",
            "bytes=0-9 ",
        ] {
            assert_eq!(plan(header, 100), Plan::Whole, "{header:?}");
        }
    }

    #[test]
    fn huge_numbers_are_bounded_and_never_panic() {
        let max = u64::MAX;
        assert_eq!(plan(&format!("bytes={max}-"), 100), Plan::Unsatisfiable);
        assert_eq!(plan(&format!("bytes={max}-"), max), Plan::Unsatisfiable);
        let last = max - 1;
        assert_eq!(plan(&format!("bytes={last}-"), max), parts(&[(last, last)]));
        assert_eq!(plan(&format!("bytes=0-{max}"), max), parts(&[(0, max - 1)]));
        assert_eq!(plan(&format!("bytes=-{max}"), max), parts(&[(0, max - 1)]));
        assert_eq!(
            plan("bytes=0-99999999999999999999999", 100),
            parts(&[(0, 99)])
        );
        assert_eq!(
            plan("bytes=99999999999999999999999-", 100),
            Plan::Unsatisfiable
        );
        assert_eq!(
            plan(&format!("bytes=0-{}", "9".repeat(31)), 100),
            Plan::Whole
        );
        // Two parts of almost u64::MAX bytes each: their sum overflows.
        assert_eq!(plan("bytes=2-,0-0,0-", max), Plan::Whole);
    }

    #[test]
    fn more_than_max_ranges_get_the_whole_file() {
        let specs = |n: u64| -> String {
            let list: Vec<String> = (0..n)
                .map(|i| format!("{}-{}", i * 10, i * 10 + 1))
                .collect();
            format!("bytes={}", list.join(","))
        };
        let at_max = plan(&specs(MAX_RANGES as u64), 1_000_000);
        assert!(
            matches!(&at_max, Plan::Parts(p) if p.len() == MAX_RANGES),
            "{at_max:?}"
        );
        assert_eq!(plan(&specs(MAX_RANGES as u64 + 1), 1_000_000), Plan::Whole);
        assert_eq!(plan(&specs(100_000), 1_000_000), Plan::Whole);
    }

    #[test]
    fn if_range_matches_only_the_strong_etag_or_the_exact_old_enough_date() {
        let modified = UNIX_EPOCH + Duration::from_millis(1_700_000_000_250);
        let date = httpdate::fmt_http_date(modified);
        let later = modified + Duration::from_secs(5);
        let etag = Some("\"1-2-3\"");
        assert!(if_range_matches("\"1-2-3\"", etag, Some(modified), later));
        assert!(!if_range_matches("\"1-2-4\"", etag, Some(modified), later));
        assert!(!if_range_matches(
            "W/\"1-2-3\"",
            etag,
            Some(modified),
            later
        ));
        assert!(!if_range_matches("\"1-2-3\"", None, Some(modified), later));
        assert!(if_range_matches(&date, etag, Some(modified), later));
        let other = httpdate::fmt_http_date(modified + Duration::from_secs(1));
        assert!(!if_range_matches(&other, etag, Some(modified), later));
        assert!(
            !if_range_matches(&date, etag, Some(modified), modified),
            "modified this second: the date is weak"
        );
        assert!(!if_range_matches("yesterday", etag, Some(modified), later));
        assert!(!if_range_matches(&date, etag, None, later));
    }

    #[test]
    fn multipart_body_has_crlf_framing_and_its_exact_length() {
        let ps = [Part { start: 0, end: 9 }, Part { start: 20, end: 29 }];
        let (pieces, total) = multipart(&ps, 100, "text/plain", "XYZ").unwrap();
        let file: Vec<u8> = (0..100).collect();
        let mut body = Vec::new();
        for piece in &pieces {
            match piece {
                Piece::Text(text) => body.extend_from_slice(text),
                Piece::File(p) => body.extend_from_slice(&file[p.start as usize..=p.end as usize]),
            }
        }
        let mut expected =
            b"\r\n--XYZ\r\nContent-Type: text/plain\r\nContent-Range: bytes 0-9/100\r\n\r\n"
                .to_vec();
        expected.extend_from_slice(&file[0..10]);
        expected.extend_from_slice(
            b"\r\n--XYZ\r\nContent-Type: text/plain\r\nContent-Range: bytes 20-29/100\r\n\r\n",
        );
        expected.extend_from_slice(&file[20..30]);
        expected.extend_from_slice(b"\r\n--XYZ--\r\n");
        assert_eq!(body, expected);
        assert_eq!(total, expected.len() as u64);
    }

    #[test]
    fn multipart_length_that_overflows_is_none() {
        let max = u64::MAX;
        let ps = [Part {
            start: 0,
            end: max - 2,
        }];
        assert_eq!(multipart(&ps, max, "a/b", "X"), None);
    }
}
