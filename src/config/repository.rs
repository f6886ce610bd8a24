//! `[[repository]]`: the settings of a repository, and the validation of every table (names
//! unique; the repositories in the order they are tried). One table: name, URL (http or
//! https, no credentials, a trailing slash), priority (0..=4294967295, or -1 for hidden),
//! authentication, the password (read from a file only the agent may read or from a systemd
//! credential) and the CA certificate (it must hold at least one certificate). The files are
//! read only with [`FileAccess::Read`].

use std::path::{Path, PathBuf};

use serde::Serialize;
use url::Url;

use super::error::{ConfigError, Key, Section, invalid};
use super::inputs::RepositoryInput;
use super::origin::{Origin, Sourced};
use super::secret::{FileAccess, Password, Secret};

const MAX_PRIORITY: i64 = u32::MAX as i64;
/// Synced, but not to be used by devices yet.
const HIDDEN_PRIORITY: i64 = -1;

/// Longest password file read.
const MAX_PASSWORD_FILE: u64 = 64 * 1024;
/// Longest CA file read.
const MAX_CA_FILE: u64 = 1024 * 1024;

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "auth", rename_all = "lowercase")]
pub enum RepositoryAuth {
    None,
    Basic {
        username: String,
        password: Password,
    },
    Digest {
        username: String,
        password: Password,
    },
    /// A username without `auth`: the server's challenge decides (Digest when offered; Basic
    /// only over https).
    Auto {
        username: String,
        password: Password,
    },
}

impl RepositoryAuth {
    pub fn name(&self) -> &'static str {
        match self {
            RepositoryAuth::None => "none",
            RepositoryAuth::Basic { .. } => "basic",
            RepositoryAuth::Digest { .. } => "digest",
            RepositoryAuth::Auto { .. } => "auto",
        }
    }

    pub fn password(&self) -> Option<&Password> {
        match self {
            RepositoryAuth::None => None,
            RepositoryAuth::Basic { password, .. }
            | RepositoryAuth::Digest { password, .. }
            | RepositoryAuth::Auto { password, .. } => Some(password),
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct RepositorySettings {
    pub name: String,
    pub url: Url,
    pub priority: i64,
    #[serde(flatten)]
    pub auth: RepositoryAuth,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ca_certificate: Option<PathBuf>,
    #[serde(skip)]
    pub origin: Origin,
}

impl RepositorySettings {
    /// Synced, but not to be used by devices yet (priority -1).
    pub fn hidden(&self) -> bool {
        self.priority == HIDDEN_PRIORITY
    }
}

/// Field `field` of the `index`th `[[repository]]` table.
fn key(index: usize, field: &'static str) -> Key {
    Key::at(Section::Repository, index, field)
}

/// Validates every `[[repository]]` table (names unique) and puts them in the order they are
/// tried.
pub(super) fn validate(
    inputs: &[RepositoryInput],
    warnings: &mut Vec<String>,
    access: FileAccess,
) -> Result<Vec<RepositorySettings>, ConfigError> {
    let mut repositories: Vec<RepositorySettings> = Vec::new();
    for (index, input) in inputs.iter().enumerate() {
        let repo = validate_one(input, index, warnings, access)?;
        if let Some(first) = repositories.iter().find(|r| r.name == repo.name) {
            return Err(invalid(
                &input.name.origin,
                key(index, "name"),
                format!(
                    "repository {:?} is already defined at {}",
                    repo.name, first.origin
                ),
            ));
        }
        repositories.push(repo);
    }
    sort_in_try_order(&mut repositories);
    Ok(repositories)
}

/// Larger priority first; ties by name so the order is the same on every device.
fn sort_in_try_order(repositories: &mut [RepositorySettings]) {
    repositories.sort_by(|a, b| {
        b.priority
            .cmp(&a.priority)
            .then_with(|| a.name.cmp(&b.name))
    });
}

fn validate_one(
    input: &RepositoryInput,
    index: usize,
    warnings: &mut Vec<String>,
    access: FileAccess,
) -> Result<RepositorySettings, ConfigError> {
    let name = &input.name;
    if name.value.is_empty()
        || !name
            .value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
    {
        return Err(invalid(
            &name.origin,
            key(index, "name"),
            format!("{:?} is not a name (A-Z a-z 0-9 . _ -)", name.value),
        ));
    }
    let url = parse_repository_url(&input.url, index)?;
    let priority = match &input.priority {
        None => 100,
        Some(p) if p.value == HIDDEN_PRIORITY || (0..=MAX_PRIORITY).contains(&p.value) => p.value,
        Some(p) => {
            return Err(invalid(
                &p.origin,
                key(index, "priority"),
                format!("{} is outside 0..=4294967295 (or -1 for hidden)", p.value),
            ));
        }
    };
    if let Some(origin) = &input.password {
        return Err(invalid(
            origin,
            key(index, "password"),
            "passwords are not written into the configuration; put it in a file readable only by \
             the agent and set password_file, or use credential = \"NAME\" with systemd LoadCredential=",
        ));
    }
    let username = input.username.as_ref().filter(|u| !u.value.is_empty());
    let scheme = match &input.auth {
        None if username.is_some() => "auto",
        None => "none",
        Some(a) => match a.value.as_str() {
            s @ ("digest" | "basic" | "none" | "auto") => s,
            other => {
                return Err(invalid(
                    &a.origin,
                    key(index, "auth"),
                    format!(
                        "{other:?} is not one of \"digest\", \"basic\", \"none\" (or \"auto\": \
                         follow the server's challenge, the default with a username)"
                    ),
                ));
            }
        },
    };
    let auth = if scheme == "none" {
        RepositoryAuth::None
    } else {
        let username = username.map(|u| u.value.clone()).ok_or_else(|| {
            invalid(
                &input.origin,
                key(index, "username"),
                format!("auth = {scheme:?} needs a username"),
            )
        })?;
        let password = match access {
            FileAccess::Read => read_password(input, index, scheme)?,
            FileAccess::Skip => Password::NotRead,
        };
        if url.scheme() == "http" && scheme != "auto" {
            warnings.push(format!(
                "{}: repository {:?} sends its password over plain http; use https",
                input.url.origin, name.value
            ));
        }
        match scheme {
            "basic" => RepositoryAuth::Basic { username, password },
            "digest" => RepositoryAuth::Digest { username, password },
            _ => RepositoryAuth::Auto { username, password },
        }
    };
    if let (Some(ca), FileAccess::Read) = (&input.ca_certificate, access) {
        check_ca(&ca.value, &ca.origin, index)?;
    }
    Ok(RepositorySettings {
        name: name.value.clone(),
        url,
        priority,
        auth,
        ca_certificate: input.ca_certificate.as_ref().map(|s| s.value.clone()),
        origin: input.origin.clone(),
    })
}

fn parse_repository_url(input: &Sourced<String>, index: usize) -> Result<Url, ConfigError> {
    let mut url = Url::parse(&input.value).map_err(|e| {
        invalid(
            &input.origin,
            key(index, "url"),
            format!("{:?} is not a URL: {e}", input.value),
        )
    })?;
    if !matches!(url.scheme(), "http" | "https") || url.host().is_none() {
        return Err(invalid(
            &input.origin,
            key(index, "url"),
            format!("{:?} is not an http(s) URL", input.value),
        ));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(invalid(
            &input.origin,
            key(index, "url"),
            "the URL must not carry credentials; use username and password_file",
        ));
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(invalid(
            &input.origin,
            key(index, "url"),
            "the URL must not have a query or fragment",
        ));
    }
    if !url.path().ends_with('/') {
        let path = format!("{}/", url.path());
        url.set_path(&path);
    }
    Ok(url)
}

/// A CA file must be readable and hold at least one PEM certificate.
fn check_ca(path: &Path, origin: &Origin, index: usize) -> Result<(), ConfigError> {
    let fail = |reason: String| invalid(origin, key(index, "ca_certificate"), reason);
    let bytes = read_bounded(path, MAX_CA_FILE)
        .map_err(|e| fail(format!("cannot read {}: {e}", path.display())))?;
    let certs = crate::tls::files::pem_certificates(&bytes)
        .map_err(|e| fail(format!("{} is not PEM: {e}", path.display())))?;
    if certs.is_empty() {
        return Err(fail(format!(
            "{} holds no certificate (-----BEGIN CERTIFICATE-----)",
            path.display()
        )));
    }
    for (i, cert) in certs.iter().enumerate() {
        crate::tls::validity(cert).map_err(|e| {
            fail(format!(
                "{}: certificate {} is not an X.509 certificate ({e})",
                path.display(),
                i + 1
            ))
        })?;
    }
    Ok(())
}

fn read_bounded(path: &Path, limit: u64) -> std::io::Result<Vec<u8>> {
    crate::durable::read_regular(path, limit).map_err(|e| e.source)
}

fn read_password(
    input: &RepositoryInput,
    index: usize,
    scheme: &str,
) -> Result<Password, ConfigError> {
    if let Some(file) = &input.password_file {
        return read_secret_file(&file.value, &file.origin, index, true).map(Password::Loaded);
    }
    if let Some(name) = &input.credential {
        if name.value.contains('/') || name.value.is_empty() || name.value.starts_with('.') {
            return Err(invalid(
                &name.origin,
                key(index, "credential"),
                format!("{:?} is not a credential name", name.value),
            ));
        }
        let Some(dir) = std::env::var_os("CREDENTIALS_DIRECTORY") else {
            return Ok(Password::Unavailable(format!(
                "the password is systemd credential {:?} ({}), and $CREDENTIALS_DIRECTORY is \
                 not set in this process: let the daemon do it (systemctl start \
                 igel-update-agent; `update` and `delivery` go to it when it runs), or set \
                 CREDENTIALS_DIRECTORY to a directory holding a file {:?} with the password",
                name.value, name.origin, name.value
            )));
        };
        return read_secret_file(
            &Path::new(&dir).join(&name.value),
            &name.origin,
            index,
            false,
        )
        .map(Password::Loaded);
    }
    Err(invalid(
        &input.origin,
        key(index, "password_file"),
        format!("auth = {scheme:?} needs password_file or credential"),
    ))
}

fn read_secret_file(
    path: &Path,
    origin: &Origin,
    index: usize,
    check_mode: bool,
) -> Result<Secret, ConfigError> {
    use std::os::unix::fs::MetadataExt;
    let field = if check_mode {
        "password_file"
    } else {
        "credential"
    };
    let fail = |reason: String| invalid(origin, key(index, field), reason);
    let meta = std::fs::metadata(path)
        .map_err(|e| fail(format!("cannot read {}: {e}", path.display())))?;
    if check_mode && meta.mode() & 0o077 != 0 {
        return Err(fail(format!(
            "{} is readable by group or others (mode {:o}); run chmod 600 on it",
            path.display(),
            meta.mode() & 0o777
        )));
    }
    let bytes = read_bounded(path, MAX_PASSWORD_FILE)
        .map_err(|e| fail(format!("cannot read {}: {e}", path.display())))?;
    let text = String::from_utf8(bytes)
        .map_err(|_| fail(format!("{} is not UTF-8 text", path.display())))?;
    let password = text.trim_end_matches(['\n', '\r']).to_string();
    if password.is_empty() {
        return Err(fail(format!("{} is empty", path.display())));
    }
    Ok(Secret::new(password))
}
