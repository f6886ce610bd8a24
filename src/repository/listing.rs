//! WebDAV listings: the PROPFIND request body and a parser for the 207 multistatus answer.
//! Only what the agent needs is read: each member's name and whether it is a collection.

use quick_xml::Reader;
use quick_xml::events::Event;

/// A PROPFIND body that asks only for the resource type.
pub const PROPFIND_BODY: &str = r#"<?xml version="1.0" encoding="utf-8"?><propfind xmlns="DAV:"><prop><resourcetype/></prop></propfind>"#;

/// Largest listing the agent reads.
pub const MAX_LISTING_BYTES: usize = 4 * 1024 * 1024;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub name: String,
    pub is_dir: bool,
}

/// Parses a multistatus body. `dir_path` is the URL path that was listed (ending in `/`); it
/// and anything not directly below it are left out.
pub fn parse(xml: &[u8], dir_path: &str) -> Result<Vec<Entry>, String> {
    let mut reader = Reader::from_reader(xml);
    reader.config_mut().trim_text(true);
    let mut entries = Vec::new();
    let (mut in_response, mut in_href) = (false, false);
    let (mut href, mut is_dir) = (String::new(), false);
    let mut buf = Vec::new();
    // A listing is complete only when its multistatus root was opened and closed: a body cut
    // off between two responses is still well-formed XML up to that point.
    let (mut opened, mut closed) = (false, false);
    loop {
        match reader.read_event_into(&mut buf) {
            Err(e) => {
                return Err(format!(
                    "malformed listing at byte {}: {e}",
                    reader.buffer_position()
                ));
            }
            Ok(Event::Eof) => break,
            Ok(Event::Start(e)) if e.local_name().as_ref() == b"multistatus" => opened = true,
            Ok(Event::End(e)) if e.local_name().as_ref() == b"multistatus" => closed = true,
            Ok(Event::Text(t)) if !opened && !t.iter().all(u8::is_ascii_whitespace) => {
                return Err("the answer is not a WebDAV multistatus document".into());
            }
            Ok(Event::Start(e)) => match e.local_name().as_ref() {
                b"response" => {
                    in_response = true;
                    href.clear();
                    is_dir = false;
                }
                b"href" if in_response => in_href = true,
                b"collection" if in_response => is_dir = true,
                _ => {}
            },
            Ok(Event::Empty(e)) if in_response && e.local_name().as_ref() == b"collection" => {
                is_dir = true
            }
            Ok(Event::Text(t)) if in_href => {
                let text = t.decode().map_err(|e| format!("malformed href: {e}"))?;
                href.push_str(&text);
            }
            Ok(Event::GeneralRef(r)) if in_href => {
                // Entity references such as &amp; inside an href.
                let name = r.decode().map_err(|e| format!("malformed href: {e}"))?;
                href.push_str(match name.as_ref() {
                    "amp" => "&",
                    "lt" => "<",
                    "gt" => ">",
                    "quot" => "\"",
                    "apos" => "'",
                    _ => "",
                });
            }
            Ok(Event::End(e)) => match e.local_name().as_ref() {
                b"href" => in_href = false,
                b"response" => {
                    in_response = false;
                    if let Some(name) = member_name(&href, dir_path) {
                        entries.push(Entry { name, is_dir });
                    }
                }
                _ => {}
            },
            Ok(_) => {}
        }
        buf.clear();
    }
    if !opened {
        return Err("the answer is not a WebDAV multistatus document".into());
    }
    if !closed || in_response {
        return Err("the listing ends before its multistatus element is closed (cut off?)".into());
    }
    Ok(entries)
}

/// The member's own name if `href` names something directly inside `dir_path`.
fn member_name(href: &str, dir_path: &str) -> Option<String> {
    // An href is a path or a full URL; keep the path.
    let path = match href.find("://") {
        Some(i) => href[i + 3..].find('/').map_or("/", |j| &href[i + 3 + j..]),
        None => href,
    };
    let path = percent_decode(path);
    let dir = percent_decode(dir_path);
    let rest = path.strip_prefix(dir.as_str())?.trim_end_matches('/');
    (!rest.is_empty() && !rest.contains('/')).then(|| rest.to_string())
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        if bytes[i] == b'%'
            && i + 2 < bytes.len()
            && let (Some(h), Some(l)) = (hex(bytes[i + 1]), hex(bytes[i + 2]))
        {
            out.push((h * 16 + l) as u8);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    const APACHE: &str = r#"<?xml version="1.0" encoding="utf-8"?>
<D:multistatus xmlns:D="DAV:" xmlns:ns0="DAV:">
<D:response><D:href>/repo/chromium/</D:href><D:propstat><D:prop><D:resourcetype><D:collection/></D:resourcetype></D:prop></D:propstat></D:response>
<D:response><D:href>/repo/chromium/120.0.1/</D:href><D:propstat><D:prop><D:resourcetype><D:collection/></D:resourcetype></D:prop></D:propstat></D:response>
<D:response><D:href>http://host:8080/repo/chromium/99.5/</D:href><D:propstat><D:prop><D:resourcetype><D:collection/></D:resourcetype></D:prop></D:propstat></D:response>
<D:response><D:href>/repo/chromium/notes%20v2.txt</D:href><D:propstat><D:prop><D:resourcetype/></D:prop></D:propstat></D:response>
</D:multistatus>"#;

    #[test]
    fn members_are_named_relative_to_the_listed_directory() {
        let entries = parse(APACHE.as_bytes(), "/repo/chromium/").unwrap();
        assert_eq!(
            entries,
            vec![
                Entry {
                    name: "120.0.1".into(),
                    is_dir: true
                },
                Entry {
                    name: "99.5".into(),
                    is_dir: true
                },
                Entry {
                    name: "notes v2.txt".into(),
                    is_dir: false
                },
            ]
        );
    }

    #[test]
    fn malformed_listing_is_an_error_not_a_panic() {
        assert!(
            parse(
                b"<D:multistatus><D:response><D:href>/a/</D:multistatus>",
                "/"
            )
            .is_err()
        );
        assert!(parse(b"\xff\xfe<<<", "/").is_err());
        assert!(parse(b"}{ this is not a listing <<< >>", "/").is_err());
    }

    #[test]
    fn a_listing_cut_off_between_responses_is_an_error() {
        let cut = &APACHE[..APACHE.find("<D:response><D:href>http://").unwrap()];
        let err = parse(cut.as_bytes(), "/repo/chromium/").unwrap_err();
        assert!(err.contains("cut off"), "{err}");
    }
}
