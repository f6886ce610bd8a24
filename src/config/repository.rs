//! Validation of one `[[repository]]` table: name, URL (http or https, no credentials, a
//! trailing slash), priority (0..=4294967295, or -1 for hidden), authentication, and the
//! password, read from a file only the agent may read or from a systemd credential.

use std::path::Path;

use url::Url;

use super::inputs::{Origin, RepositoryInput, Sourced};
use super::settings::{HIDDEN_PRIORITY, MAX_PRIORITY, RepositoryAuth, RepositorySettings, invalid};
use super::{ConfigError, Secret};

pub(super) fn validate_repository(
    input: &RepositoryInput,
    warnings: &mut Vec<String>,
    secrets: bool,
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
    let scheme = match &input.auth {
        None if input.username.is_some() => "digest",
        None => "none",
        Some(a) => match a.value.as_str() {
            s @ ("digest" | "basic" | "none") => s,
            other => {
                return Err(invalid(
                    &a.origin,
                    "repository.auth",
                    format!("{other:?} is not one of \"digest\", \"basic\", \"none\""),
                ));
            }
        },
    };
    let auth = if scheme == "none" {
        RepositoryAuth::None
    } else {
        let username = input
            .username
            .as_ref()
            .map(|u| u.value.clone())
            .ok_or_else(|| {
                invalid(
                    &input.origin,
                    "repository.username",
                    format!("auth = {scheme:?} needs a username"),
                )
            })?;
        let password = if secrets {
            read_password(input, scheme)?
        } else {
            Secret::new(String::new())
        };
        if url.scheme() == "http" {
            warnings.push(format!(
                "{}: repository {:?} sends its password over plain http; use https",
                input.url.origin, name.value
            ));
        }
        if scheme == "basic" {
            RepositoryAuth::Basic { username, password }
        } else {
            RepositoryAuth::Digest { username, password }
        }
    };
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

fn read_password(input: &RepositoryInput, scheme: &str) -> Result<Secret, ConfigError> {
    if let Some(file) = &input.password_file {
        return read_secret_file(&file.value, &file.origin, true);
    }
    if let Some(name) = &input.credential {
        let dir = std::env::var_os("CREDENTIALS_DIRECTORY").ok_or_else(|| {
            invalid(&name.origin, "repository.credential", format!(
                "credential {:?} needs $CREDENTIALS_DIRECTORY (systemd LoadCredential=), which is not set", name.value
            ))
        })?;
        if name.value.contains('/') || name.value.is_empty() {
            return Err(invalid(
                &name.origin,
                "repository.credential",
                format!("{:?} is not a credential name", name.value),
            ));
        }
        return read_secret_file(&Path::new(&dir).join(&name.value), &name.origin, false);
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
    let text = std::fs::read_to_string(path)
        .map_err(|e| invalid(origin, key, format!("cannot read {}: {e}", path.display())))?;
    let password = text.trim_end_matches(['\n', '\r']).to_string();
    if password.is_empty() {
        return Err(invalid(origin, key, format!("{} is empty", path.display())));
    }
    Ok(Secret::new(password))
}
