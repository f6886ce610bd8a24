//! The minimal WebDAV listing of the mock: a `207 Multi-Status` for `PROPFIND`, built from
//! the routed paths, with just the properties a client needs (type, length, last-modified).

use super::{LAST_MODIFIED, MockResponse, RecordedRequest, State};

/// A minimal `207 Multi-Status` for `PROPFIND` on a routed path or a prefix of routed paths.
pub(super) fn listing(state: &State, request: &RecordedRequest) -> MockResponse {
    let target = request.path.split('?').next().unwrap_or("/");
    let mut files: Vec<(String, usize)> = Vec::new();
    for ((method, path), responses) in &state.routes {
        if method.is_none() {
            let size = responses.front().map_or(0, |r| r.body.len());
            files.push((path.clone(), size));
        }
    }
    let dir = format!("{}/", target.trim_end_matches('/'));
    let mut entries: Vec<(String, Option<usize>)> = Vec::new();
    if let Some((_, size)) = files.iter().find(|(p, _)| p == target) {
        entries.push((target.to_string(), Some(*size)));
    } else if dir == "/" || files.iter().any(|(p, _)| p.starts_with(&dir)) {
        entries.push((dir.clone(), None));
        if request.header("Depth") != Some("0") {
            let mut children: Vec<(String, Option<usize>)> = Vec::new();
            for (path, size) in files.iter().filter(|(p, _)| p.starts_with(&dir)) {
                let child = match path[dir.len()..].split_once('/') {
                    Some((name, _)) => (format!("{dir}{name}/"), None),
                    None => (path.clone(), Some(*size)),
                };
                if !children.contains(&child) {
                    children.push(child);
                }
            }
            children.sort();
            entries.extend(children);
        }
    } else {
        return MockResponse::not_found();
    }
    let mut xml = String::from(
        "<?xml version=\"1.0\" encoding=\"utf-8\"?>\n<D:multistatus xmlns:D=\"DAV:\">\n",
    );
    for (href, size) in entries {
        let kind = match size {
            Some(n) => format!("<D:resourcetype/><D:getcontentlength>{n}</D:getcontentlength>"),
            None => "<D:resourcetype><D:collection/></D:resourcetype>".to_string(),
        };
        xml.push_str(&format!(
            "<D:response><D:href>{href}</D:href><D:propstat><D:prop>{kind}\
             <D:getlastmodified>{LAST_MODIFIED}</D:getlastmodified></D:prop>\
             <D:status>HTTP/1.1 200 OK</D:status></D:propstat></D:response>\n"
        ));
    }
    xml.push_str("</D:multistatus>\n");
    MockResponse::status(207)
        .header("Content-Type", "application/xml; charset=utf-8")
        .body(xml)
}
