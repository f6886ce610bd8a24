//! The access log of a private Apache: its line format and the parser behind
//! [`super::Apache::access_log`].
//!
//! The format records what the client asked for (Range, If-Range) next to what Apache
//! answered (status, body bytes), so a test can prove a resume asked for the right offset.

/// The `LogFormat` of the access log; [`parse_access_line`] reads exactly this.
pub const ACCESS_LOG_FORMAT: &str = r#"%>s %B \"%r\" \"%{Range}i\" \"%{If-Range}i\""#;

/// One line of the access log: what a client asked for and what Apache answered.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AccessEntry {
    pub status: u16,
    /// Body bytes sent (`%B`).
    pub bytes: u64,
    pub method: String,
    /// The request target as sent (percent-encoding kept).
    pub path: String,
    pub range: Option<String>,
    pub if_range: Option<String>,
}

/// Parses `%>s %B "%r" "%{Range}i" "%{If-Range}i"`; `-` means the header was absent.
pub fn parse_access_line(line: &str) -> Option<AccessEntry> {
    let (status, rest) = line.split_once(' ')?;
    let (bytes, mut rest) = rest.split_once(' ')?;
    let mut quoted = Vec::new();
    for _ in 0..3 {
        let (value, tail) = take_quoted(rest.trim_start())?;
        quoted.push(value);
        rest = tail;
    }
    let mut request = quoted[0].splitn(3, ' ');
    let method = request.next().unwrap_or_default().to_string();
    let path = request.next().unwrap_or_default().to_string();
    let header = |value: &String| (value != "-").then(|| value.clone());
    Some(AccessEntry {
        status: status.parse().ok()?,
        bytes: bytes.parse().ok()?,
        method,
        path,
        range: header(&quoted[1]),
        if_range: header(&quoted[2]),
    })
}

/// A `"..."` field with Apache's escapes (`\"`, `\\`, `\xhh`); returns it and the rest.
fn take_quoted(text: &str) -> Option<(String, &str)> {
    let body = text.strip_prefix('"')?;
    let mut out = Vec::new();
    let bytes = body.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'"' => return Some((String::from_utf8_lossy(&out).into_owned(), &body[i + 1..])),
            b'\\' if bytes.get(i + 1) == Some(&b'x') => {
                let hex = body.get(i + 2..i + 4)?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 4;
            }
            b'\\' => {
                out.push(*bytes.get(i + 1)?);
                i += 2;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    None
}
