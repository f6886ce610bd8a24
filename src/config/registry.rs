//! IGEL registry keys: what they mean for this agent. The agent's own keys are its `[update]`
//! keys under `update.`; `update.external_binary_source<N>.*` describe `[[repository]]`
//! number N, named `source<N>`. Keys arrive in two ways: `key=value` lines for
//! `config import-registry` (translated into TOML here, passwords never copied), and the UMS
//! `settings` command (persisted and applied by [`super::overrides`]).
//!
//! Only settings are reachable this way: the keys that name programs to run
//! (`notify_command`, `activate_hook`, `reboot_command`) and the paths stay in the files.

use std::collections::BTreeMap;
use std::fmt::Write;

#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error("line {line}: {reason}")]
    Line { line: usize, reason: String },
}

/// The `[update]` keys a registry key may set, with the kind of value each takes.
const UPDATE_KEYS: &[(&str, Kind)] = &[
    ("activate_after_installation", Kind::Bool),
    ("bandwidth_limit_enabled", Kind::Bool),
    ("bandwidth_limit", Kind::Text),
    ("parallel_downloads", Kind::Int),
    ("check_on_boot", Kind::Bool),
    ("splay", Kind::Text),
    ("reboot_after_activation", Kind::Text),
    ("reboot_timeout", Kind::Text),
    ("max_deferrals", Kind::Int),
    ("reminder_interval", Kind::Text),
    ("connect_timeout", Kind::Text),
    ("read_timeout", Kind::Text),
    ("retries", Kind::Int),
    ("retry_backoff", Kind::Text),
    ("low_speed_limit", Kind::Text),
    ("low_speed_time", Kind::Text),
];

/// The highest repository number a key may name (`external_binary_source0` ..).
pub const MAX_SOURCE: u32 = 255;
const SOURCE_PREFIX: &str = "update.external_binary_source";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Bool,
    Int,
    Text,
}

/// One field of `update.external_binary_source<N>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SourceField {
    Url,
    Priority,
    Username,
    Password,
    /// IGEL's name for the stored password; see `docs/protocol.md` for the accepted forms.
    CryptPassword,
    /// A PEM document (the CA the server's certificate chains to) or the path of one.
    Certificate,
    /// The agent's own addition: `digest`, `basic`, `none` (default: follow the server).
    Auth,
}

impl SourceField {
    fn parse(name: &str) -> Option<SourceField> {
        Some(match name {
            "url" => SourceField::Url,
            "priority" => SourceField::Priority,
            "username" => SourceField::Username,
            "password" => SourceField::Password,
            "crypt_password" => SourceField::CryptPassword,
            "certificate" => SourceField::Certificate,
            "auth" => SourceField::Auth,
            _ => return None,
        })
    }

    pub fn is_password(self) -> bool {
        matches!(self, SourceField::Password | SourceField::CryptPassword)
    }
}

/// What a registry key sets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// `[update] <key>`.
    Update { key: &'static str, kind: Kind },
    /// A field of repository `source<number>`.
    Source { number: u32, field: SourceField },
}

impl Target {
    /// The keys that belong together: one `[update]` key alone, or every key of one
    /// repository (`update.external_binary_source3`), which only make sense together.
    pub fn group(&self) -> String {
        match self {
            Target::Update { key, .. } => format!("update.{key}"),
            Target::Source { number, .. } => source_group(*number),
        }
    }
}

/// `update.external_binary_source<N>`: the prefix of every key of repository N.
pub fn source_group(number: u32) -> String {
    format!("{SOURCE_PREFIX}{number}")
}

/// The repository a registry source number describes.
pub fn source_name(number: u32) -> String {
    format!("source{number}")
}

/// What `key` sets, or why it is not a key this agent knows.
pub fn parse_key(key: &str) -> Result<Target, String> {
    if let Some(source) = key.strip_prefix(SOURCE_PREFIX) {
        let (n, field) = source
            .split_once('.')
            .ok_or_else(|| format!("{key:?} has no field after the source number"))?;
        let number = Some(n)
            .filter(|n| !n.is_empty() && n.len() <= 3 && n.bytes().all(|b| b.is_ascii_digit()))
            .and_then(|n| n.parse::<u32>().ok())
            .filter(|n| *n <= MAX_SOURCE)
            .ok_or_else(|| format!("{key:?}: {n:?} is not a source number (0 to {MAX_SOURCE})"))?;
        let field = SourceField::parse(field).ok_or_else(|| {
            format!(
                "{key:?}: unknown field {field:?} (url, priority, username, password, \
                 crypt_password, certificate, auth)"
            )
        })?;
        return Ok(Target::Source { number, field });
    }
    let Some(rest) = key.strip_prefix("update.") else {
        return Err(format!(
            "unknown key {key:?} (only update.* keys are known)"
        ));
    };
    UPDATE_KEYS
        .iter()
        .find(|(name, _)| *name == rest)
        .map(|(key, kind)| Target::Update { key, kind: *kind })
        .ok_or_else(|| format!("unknown key {key:?}"))
}

/// IGEL's words for a boolean.
pub fn parse_bool(value: &str) -> Option<bool> {
    match value {
        "true" | "1" | "yes" | "on" => Some(true),
        "false" | "0" | "no" | "off" => Some(false),
        _ => None,
    }
}

/// Checks a value against the kind of its key; the error names the key.
pub fn check_kind(key: &str, kind: Kind, value: &str) -> Result<(), String> {
    match kind {
        Kind::Bool if parse_bool(value).is_none() => {
            Err(format!("{key}: {value:?} is not true or false"))
        }
        Kind::Int if value.parse::<i64>().is_err() => {
            Err(format!("{key}: {value:?} is not a whole number"))
        }
        _ => Ok(()),
    }
}

/// One `key=value` line.
#[derive(Debug, Clone)]
pub struct Entry {
    pub target: Target,
    pub value: String,
}

/// Parses `key=value` lines (`#` comments, blank lines and quotes around values allowed).
pub fn parse_lines(text: &str) -> Result<Vec<Entry>, RegistryError> {
    let mut entries = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let line = i + 1;
        let raw = raw.trim();
        if raw.is_empty() || raw.starts_with('#') {
            continue;
        }
        let err = |reason: String| RegistryError::Line { line, reason };
        let (key, value) = raw
            .split_once('=')
            .ok_or_else(|| err(format!("{raw:?} is not key=value")))?;
        let (key, value) = (key.trim(), unquote(value.trim()));
        let target = parse_key(key).map_err(err)?;
        if let Target::Update { kind, .. } = target {
            check_kind(key, kind, value).map_err(err)?;
        }
        entries.push(Entry {
            target,
            value: value.to_string(),
        });
    }
    Ok(entries)
}

fn unquote(value: &str) -> &str {
    value
        .strip_prefix('"')
        .and_then(|v| v.strip_suffix('"'))
        .unwrap_or(value)
}

#[derive(Debug, Default)]
struct Source {
    url: Option<String>,
    priority: Option<String>,
    username: Option<String>,
    auth: Option<String>,
    has_password: bool,
    certificate: Option<String>,
}

/// Translates registry lines into a TOML document for `config import-registry`. Passwords
/// are not copied: the output names a file under `password_dir` to put them in.
pub fn to_toml(text: &str, password_dir: &str) -> Result<String, RegistryError> {
    let mut update = BTreeMap::new();
    let mut sources: BTreeMap<u32, Source> = BTreeMap::new();
    for entry in parse_lines(text)? {
        let value = entry.value;
        match entry.target {
            Target::Update { key, kind } => {
                let rendered = match kind {
                    Kind::Bool => parse_bool(&value).unwrap_or_default().to_string(),
                    Kind::Int => value.parse::<i64>().unwrap_or_default().to_string(),
                    Kind::Text => toml_string(&value),
                };
                update.insert(key, rendered);
            }
            Target::Source { number, field } => {
                let s = sources.entry(number).or_default();
                match field {
                    SourceField::Url => s.url = Some(value),
                    SourceField::Priority => s.priority = Some(value),
                    SourceField::Username => s.username = Some(value),
                    SourceField::Auth => s.auth = Some(value),
                    SourceField::Password | SourceField::CryptPassword => {
                        s.has_password |= !value.is_empty()
                    }
                    SourceField::Certificate => s.certificate = Some(value),
                }
            }
        }
    }
    Ok(render(&update, &sources, password_dir))
}

fn toml_string(value: &str) -> String {
    toml::Value::String(value.to_string()).to_string()
}

fn render(
    update: &BTreeMap<&str, String>,
    sources: &BTreeMap<u32, Source>,
    password_dir: &str,
) -> String {
    let mut out = String::from("# generated by `igel-update-agent config import-registry`\n");
    if !update.is_empty() {
        out.push_str("\n[update]\n");
        for (k, v) in update {
            let _ = writeln!(out, "{k} = {v}");
        }
    }
    for (n, s) in sources {
        out.push_str("\n[[repository]]\n");
        let _ = writeln!(out, "name = {}", toml_string(&source_name(*n)));
        let _ = writeln!(out, "url = {}", toml_string(s.url.as_deref().unwrap_or("")));
        if let Some(p) = &s.priority {
            match p.parse::<i64>() {
                Ok(p) => {
                    let _ = writeln!(out, "priority = {p}");
                }
                Err(_) => {
                    let _ = writeln!(
                        out,
                        "# priority {:?} was not a number; default 100 applies",
                        p
                    );
                }
            }
        }
        if let Some(auth) = &s.auth {
            let _ = writeln!(out, "auth = {}", toml_string(auth));
        }
        match &s.username {
            Some(u) if !u.is_empty() => {
                let _ = writeln!(out, "username = {}", toml_string(u));
                let file = format!("{password_dir}/source{n}.pw");
                if s.has_password {
                    let _ = writeln!(
                        out,
                        "# the registry held a password: write it to this file, mode 600"
                    );
                }
                let _ = writeln!(out, "password_file = {}", toml_string(&file));
            }
            _ if s.auth.is_none() => out.push_str("auth = \"none\"\n"),
            _ => {}
        }
        if let Some(c) = &s.certificate {
            if c.starts_with("-----BEGIN") {
                let _ = writeln!(
                    out,
                    "# the registry held a PEM certificate: save it and name the file here"
                );
                let _ = writeln!(
                    out,
                    "ca_certificate = {}",
                    toml_string(&format!("{password_dir}/source{n}-ca.pem"))
                );
            } else if !c.is_empty() {
                let _ = writeln!(out, "ca_certificate = {}", toml_string(c));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sources_become_repositories_without_passwords() {
        let text = "update.external_binary_source0.url=https://dav.example/apps/\n\
                    update.external_binary_source0.priority=200\n\
                    update.external_binary_source0.username=device\n\
                    update.external_binary_source0.password=s3cret-value\n\
                    update.activate_after_installation=false\n\
                    update.bandwidth_limit=512KB\n";
        let toml = to_toml(text, "/etc/igel-update-agent").unwrap();
        assert!(!toml.contains("s3cret-value"), "{toml}");
        let doc: toml::Table = toml.parse().unwrap();
        let repo = &doc["repository"].as_array().unwrap()[0];
        assert_eq!(repo["url"].as_str(), Some("https://dav.example/apps/"));
        assert_eq!(repo["priority"].as_integer(), Some(200));
        assert_eq!(
            repo["password_file"].as_str(),
            Some("/etc/igel-update-agent/source0.pw")
        );
        assert!(
            repo.get("auth").is_none(),
            "a username alone follows the server's challenge: {toml}"
        );
        assert_eq!(
            doc["update"]["activate_after_installation"].as_bool(),
            Some(false)
        );
        assert_eq!(doc["update"]["bandwidth_limit"].as_str(), Some("512KB"));
    }

    #[test]
    fn unknown_keys_name_the_line() {
        let err = to_toml("# comment\nupdate.nonsense=1\n", "/x").unwrap_err();
        assert!(err.to_string().starts_with("line 2:"), "{err}");
        let err = to_toml("system.foo=1", "/x").unwrap_err();
        assert!(err.to_string().contains("line 1"), "{err}");
    }

    #[test]
    fn keys_are_typed_and_grouped_by_repository() {
        assert_eq!(
            parse_key("update.external_binary_source12.crypt_password").unwrap(),
            Target::Source {
                number: 12,
                field: SourceField::CryptPassword
            }
        );
        assert_eq!(
            parse_key("update.external_binary_source12.url")
                .unwrap()
                .group(),
            "update.external_binary_source12"
        );
        assert_eq!(parse_key("update.splay").unwrap().group(), "update.splay");
        for bad in [
            "update.external_binary_source.url",
            "update.external_binary_source256.url",
            "update.external_binary_source-1.url",
            "update.external_binary_source1.colour",
            "update.external_binary_source1",
            "update.notify_command",
            "update.activate_hook",
            "update.reboot_command",
            "paths.state_dir",
        ] {
            assert!(parse_key(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn values_are_checked_against_their_key() {
        assert!(check_kind("update.retries", Kind::Int, "3").is_ok());
        assert!(check_kind("update.retries", Kind::Int, "three").is_err());
        assert!(check_kind("update.check_on_boot", Kind::Bool, "maybe").is_err());
        assert!(check_kind("update.check_on_boot", Kind::Bool, "off").is_ok());
    }
}
