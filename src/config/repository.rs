//! Validation of one `[[repository]]` table: name, URL (http or https, no credentials, a
//! trailing slash), priority (0..=4294967295, or -1 for hidden), authentication, the
//! password (read from a file only the agent may read or from a systemd credential) and the
//! CA certificate (it must hold at least one certificate). The files are read only with
//! [`FileAccess::Read`].

use std::path::Path;

use url::Url;

use super::inputs::{Origin, RepositoryInput, Sourced};
use super::settings::{HIDDEN_PRIORITY, MAX_PRIORITY, RepositoryAuth, RepositorySettings, invalid};
use super::{ConfigError, FileAccess, Password, Secret};

/// Longest password file read.
const MAX_PASSWORD_FILE: u64 = 64 * 1024;
/// Longest CA file read.
const MAX_CA_FILE: u64 = 1024 * 1024;

pub(super) fn validate_repository(
    input: &RepositoryInput,
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
            "repository.name",
            format!("{:?} is not a name (A-Z a-z 0-9 . _ -)", name.value),
        ));
    }
    let url = parse_repository_url(&input.url)?;
    let priority = match &input.priority {
        None => 100,
        Some(p) if p.value == HIDDEN_PRIORITY || (0..=MAX_PRIORITY).contains(&p.value) => p.value,
        Some(p) => {
            return Err(invalid(
                &p.origin,
                "repository.priority",
                format!("{} is outside 0..=4294967295 (or -1 for hidden)", p.value),
            ));
        }
    };
    if let Some(origin) = &input.password {
        return Err(invalid(
            origin,
            "repository.password",
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
                    "repository.auth",
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
                "repository.username",
                format!("auth = {scheme:?} needs a username"),
            )
        })?;
        let password = match access {
            FileAccess::Read => read_password(input, scheme)?,
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
        check_ca(&ca.value, &ca.origin)?;
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

fn parse_repository_url(input: &Sourced<String>) -> Result<Url, ConfigError> {
    let mut url = Url::parse(&input.value).map_err(|e| {
        invalid(
            &input.origin,
            "repository.url",
            format!("{:?} is not a URL: {e}", input.value),
        )
    })?;
    if !matches!(url.scheme(), "http" | "https") || url.host().is_none() {
        return Err(invalid(
            &input.origin,
            "repository.url",
            format!("{:?} is not an http(s) URL", input.value),
        ));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(invalid(
            &input.origin,
            "repository.url",
            "the URL must not carry credentials; use username and password_file",
        ));
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(invalid(
            &input.origin,
            "repository.url",
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
fn check_ca(path: &Path, origin: &Origin) -> Result<(), ConfigError> {
    let key = "repository.ca_certificate";
    let bytes = read_bounded(path, MAX_CA_FILE)
        .map_err(|e| invalid(origin, key, format!("cannot read {}: {e}", path.display())))?;
    let certs = crate::tls::files::pem_certificates(&bytes)
        .map_err(|e| invalid(origin, key, format!("{} is not PEM: {e}", path.display())))?;
    if certs.is_empty() {
        return Err(invalid(
            origin,
            key,
            format!(
                "{} holds no certificate (-----BEGIN CERTIFICATE-----)",
                path.display()
            ),
        ));
    }
    for (i, cert) in certs.iter().enumerate() {
        crate::tls::validity(cert).map_err(|e| {
            invalid(
                origin,
                key,
                format!(
                    "{}: certificate {} is not an X.509 certificate ({e})",
                    path.display(),
                    i + 1
                ),
            )
        })?;
    }
    Ok(())
}

fn read_bounded(path: &Path, limit: u64) -> std::io::Result<Vec<u8>> {
    crate::durable::read_regular(path, limit).map_err(|e| e.source)
}

fn read_password(input: &RepositoryInput, scheme: &str) -> Result<Password, ConfigError> {
    if let Some(file) = &input.password_file {
        return read_secret_file(&file.value, &file.origin, true).map(Password::Loaded);
    }
    if let Some(name) = &input.credential {
        if name.value.contains('/') || name.value.is_empty() || name.value.starts_with('.') {
            return Err(invalid(
                &name.origin,
                "repository.credential",
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
        return read_secret_file(&Path::new(&dir).join(&name.value), &name.origin, false)
            .map(Password::Loaded);
    }
    Err(invalid(
        &input.origin,
        "repository.password_file",
        format!("auth = {scheme:?} needs password_file or credential"),
    ))
}

fn read_secret_file(path: &Path, origin: &Origin, check_mode: bool) -> Result<Secret, ConfigError> {
    use std::os::unix::fs::MetadataExt;
    let key = if check_mode {
        "repository.password_file"
    } else {
        "repository.credential"
    };
    let meta = std::fs::metadata(path)
        .map_err(|e| invalid(origin, key, format!("cannot read {}: {e}", path.display())))?;
    if check_mode && meta.mode() & 0o077 != 0 {
        return Err(invalid(
            origin,
            key,
            format!(
                "{} is readable by group or others (mode {:o}); run chmod 600 on it",
                path.display(),
                meta.mode() & 0o777
            ),
        ));
    }
    let bytes = read_bounded(path, MAX_PASSWORD_FILE)
        .map_err(|e| invalid(origin, key, format!("cannot read {}: {e}", path.display())))?;
    let text = String::from_utf8(bytes)
        .map_err(|_| invalid(origin, key, format!("{} is not UTF-8 text", path.display())))?;
    let password = text.trim_end_matches(['\n', '\r']).to_string();
    if password.is_empty() {
        return Err(invalid(origin, key, format!("{} is empty", path.display())));
    }
    Ok(Secret::new(password))
}
