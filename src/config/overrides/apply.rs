//! Applying persisted registry keys to the merged inputs of the files: `[update]` keys
//! replace the files' values, the keys of `update.external_binary_source<N>` change the
//! repository named `source<N>` or add it. Every value keeps the registry key as its origin,
//! so a validation error names the key.

use std::path::{Path, PathBuf};

use super::super::error::{ConfigError, Key, Section, invalid};
use super::super::fragments::RawLimit;
use super::super::inputs::{Inputs, RepositoryInput, UpdateInputs};
use super::super::origin::{Origin, Sourced};
use super::super::registry::{self, Kind, SourceField, Target};
use super::{CREDENTIALS_DIR, FILE, Stored};

type SourceFields<'a> = Vec<(&'a str, SourceField, &'a Stored)>;

/// Applies one group of persisted keys to the merged inputs of the files.
pub(in crate::config) fn apply(
    group: &[(&str, &Stored)],
    inputs: &mut Inputs,
    state_dir: &Path,
) -> Result<(), ConfigError> {
    let mut source: Option<(u32, SourceFields<'_>)> = None;
    for (key, stored) in group {
        let origin = setting_origin(key);
        let target = registry::parse_key(key)
            .map_err(|reason| invalid(&origin, setting_key(key), reason))?;
        match target {
            Target::Update { key: name, kind } => {
                let text = text_of(key, stored)?;
                set_update(&mut inputs.update, name, kind, text, &origin)?;
            }
            Target::Source { number, field } => {
                source
                    .get_or_insert_with(|| (number, Vec::new()))
                    .1
                    .push((key, field, stored));
            }
        }
    }
    if let Some((number, fields)) = source {
        apply_source(number, &fields, inputs, state_dir)?;
    }
    Ok(())
}

fn text_of<'a>(key: &str, stored: &'a Stored) -> Result<&'a str, ConfigError> {
    match stored {
        Stored::Text(t) => Ok(t),
        Stored::Credential { .. } => Err(invalid(
            &setting_origin(key),
            setting_key(key),
            "a credential file where a value belongs",
        )),
    }
}

fn set_update(
    u: &mut UpdateInputs,
    name: &'static str,
    kind: Kind,
    text: &str,
    origin: &Origin,
) -> Result<(), ConfigError> {
    let key = Key::of(Section::Update, name);
    match kind {
        Kind::Bool => {
            let value = registry::parse_bool(text)
                .ok_or_else(|| invalid(origin, key, format!("{text:?} is not true or false")))?;
            let slot = match name {
                "activate_after_installation" => &mut u.activate_after_installation,
                "bandwidth_limit_enabled" => &mut u.bandwidth_limit_enabled,
                _ => &mut u.check_on_boot,
            };
            *slot = Some(at(value, origin));
        }
        Kind::Int => {
            let value: i64 = text
                .parse()
                .map_err(|_| invalid(origin, key, format!("{text:?} is not a whole number")))?;
            let slot = match name {
                "parallel_downloads" => &mut u.parallel_downloads,
                "max_deferrals" => &mut u.max_deferrals,
                _ => &mut u.retries,
            };
            *slot = Some(at(value, origin));
        }
        Kind::Text if name == "low_speed_limit" => {
            u.low_speed_limit = Some(at(RawLimit::Text(text.to_string()), origin));
        }
        Kind::Text if name == "bandwidth_limit" => {
            u.bandwidth_limit = Some(at(RawLimit::Text(text.to_string()), origin));
        }
        Kind::Text => {
            let slot = match name {
                "splay" => &mut u.splay,
                "reboot_after_activation" => &mut u.reboot_after_activation,
                "reboot_timeout" => &mut u.reboot_timeout,
                "reminder_interval" => &mut u.reminder_interval,
                "connect_timeout" => &mut u.connect_timeout,
                "read_timeout" => &mut u.read_timeout,
                "low_speed_time" => &mut u.low_speed_time,
                _ => &mut u.retry_backoff,
            };
            *slot = Some(at(text.to_string(), origin));
        }
    }
    Ok(())
}

/// The keys of repository `source<N>`: they change the repository of that name when the files
/// define one, else they add it (then `url` is required).
fn apply_source(
    number: u32,
    fields: &[(&str, SourceField, &Stored)],
    inputs: &mut Inputs,
    state_dir: &Path,
) -> Result<(), ConfigError> {
    let name = registry::source_name(number);
    let group = registry::source_group(number);
    let index = match inputs
        .repositories
        .iter()
        .position(|r| r.name.value == name)
    {
        Some(i) => i,
        None => {
            let (url_key, url) = fields
                .iter()
                .find(|(_, f, _)| *f == SourceField::Url)
                .map(|(k, _, v)| (*k, *v))
                .ok_or_else(|| {
                    invalid(
                        &setting_origin(&group),
                        Key::Setting(format!("{group}.url")),
                        format!(
                            "no [[repository]] is named {name:?} in the files, and adding one \
                             needs {group}.url"
                        ),
                    )
                })?;
            let origin = setting_origin(&group);
            inputs.repositories.push(RepositoryInput {
                origin: origin.clone(),
                name: Sourced {
                    value: name.clone(),
                    origin,
                },
                url: Sourced {
                    value: text_of(url_key, url)?.to_string(),
                    origin: setting_origin(url_key),
                },
                priority: None,
                auth: None,
                username: None,
                password: None,
                password_file: None,
                credential: None,
                ca_certificate: None,
            });
            inputs.repositories.len() - 1
        }
    };
    let repo = &mut inputs.repositories[index];
    for (key, field, stored) in fields {
        let origin = setting_origin(key);
        match field {
            SourceField::Url => repo.url = at(text_of(key, stored)?.to_string(), &origin),
            SourceField::Priority => {
                let text = text_of(key, stored)?;
                let value = text.trim().parse::<i64>().map_err(|_| {
                    invalid(
                        &origin,
                        setting_key(key),
                        format!("{text:?} is not a whole number"),
                    )
                })?;
                repo.priority = Some(at(value, &origin));
            }
            SourceField::Username => {
                repo.username = Some(at(text_of(key, stored)?.to_string(), &origin))
            }
            SourceField::Auth => repo.auth = Some(at(text_of(key, stored)?.to_string(), &origin)),
            SourceField::Password | SourceField::CryptPassword => {
                let Stored::Credential { credential } = stored else {
                    return Err(invalid(
                        &origin,
                        setting_key(key),
                        "kept in clear by an earlier version; the daemon moves it to \
                         credentials/ when it starts, or send the key again",
                    ));
                };
                repo.password_file =
                    Some(at(credential_path(state_dir, key, credential)?, &origin));
                repo.credential = None;
                repo.password = None;
            }
            SourceField::Certificate => {
                let path = match stored {
                    Stored::Credential { credential } => {
                        credential_path(state_dir, key, credential)?
                    }
                    Stored::Text(path) => PathBuf::from(path),
                };
                repo.ca_certificate = Some(at(path, &origin));
            }
        }
    }
    Ok(())
}

/// Where a value the `settings` command persisted under registry key `key` was written.
fn setting_origin(key: &str) -> Origin {
    Origin {
        path: PathBuf::from(FILE),
        line: 0,
        setting: Some(key.to_string()),
    }
}

/// A registry key that is wrong as such (before it is any field).
fn setting_key(key: &str) -> Key {
    Key::Setting(key.to_string())
}

fn at<T>(value: T, origin: &Origin) -> Sourced<T> {
    Sourced {
        value,
        origin: origin.clone(),
    }
}

fn credential_path(state_dir: &Path, key: &str, name: &str) -> Result<PathBuf, ConfigError> {
    if name.is_empty() || name.starts_with('.') || name.contains('/') {
        return Err(invalid(
            &setting_origin(key),
            setting_key(key),
            format!("{name:?} is not a credential file name"),
        ));
    }
    Ok(state_dir.join(CREDENTIALS_DIR).join(name))
}
