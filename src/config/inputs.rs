//! Step two of configuration: merge the fragments into one set of inputs. A later file
//! overrides an earlier one key by key; `[[repository]]` and `[[app]]` tables are collected
//! from every file. Each value remembers the file and line it came from.

use std::path::PathBuf;

use toml::Spanned;

use super::fragments::{Fragment, RawLimit};
use super::origin::{Origin, Sourced};

#[derive(Debug, Default)]
pub struct UpdateInputs {
    pub activate_after_installation: Option<Sourced<bool>>,
    pub bandwidth_limit_enabled: Option<Sourced<bool>>,
    pub bandwidth_limit: Option<Sourced<RawLimit>>,
    pub parallel_downloads: Option<Sourced<i64>>,
    pub check_on_boot: Option<Sourced<bool>>,
    pub splay: Option<Sourced<String>>,
    pub reboot_after_activation: Option<Sourced<String>>,
    pub reboot_timeout: Option<Sourced<String>>,
    pub reboot_command: Option<Sourced<Vec<String>>>,
    pub notify_command: Option<Sourced<Vec<String>>>,
    pub max_deferrals: Option<Sourced<i64>>,
    pub reminder_interval: Option<Sourced<String>>,
    pub activate_hook: Option<Sourced<Vec<String>>>,
    pub activate_hook_timeout: Option<Sourced<String>>,
    pub connect_timeout: Option<Sourced<String>>,
    pub read_timeout: Option<Sourced<String>>,
    pub retries: Option<Sourced<i64>>,
    pub retry_backoff: Option<Sourced<String>>,
    pub low_speed_limit: Option<Sourced<RawLimit>>,
    pub low_speed_time: Option<Sourced<String>>,
}

#[derive(Debug)]
pub struct RepositoryInput {
    pub origin: Origin,
    pub name: Sourced<String>,
    pub url: Sourced<String>,
    pub priority: Option<Sourced<i64>>,
    pub auth: Option<Sourced<String>>,
    pub username: Option<Sourced<String>>,
    pub password: Option<Origin>,
    pub password_file: Option<Sourced<PathBuf>>,
    pub credential: Option<Sourced<String>>,
    pub ca_certificate: Option<Sourced<PathBuf>>,
}

#[derive(Debug)]
pub struct UmsInputs {
    pub origin: Origin,
    pub urls: Vec<Sourced<String>>,
    pub ca_certificate: Option<Sourced<PathBuf>>,
    pub client_certificate: Option<Sourced<PathBuf>>,
    pub client_key: Option<Sourced<PathBuf>>,
    pub device_id: Option<Sourced<String>>,
    pub allow_insecure: Option<Sourced<bool>>,
    pub heartbeat: Option<Sourced<String>>,
}

#[derive(Debug)]
pub struct AppInput {
    pub origin: Origin,
    pub name: Sourced<String>,
    pub version: Sourced<String>,
    pub app_json_sha256: Option<Sourced<String>>,
}

#[derive(Debug, Default)]
pub struct Inputs {
    pub files: Vec<PathBuf>,
    pub state_dir: Option<Sourced<PathBuf>>,
    pub apps_dir: Option<Sourced<PathBuf>>,
    pub control_socket: Option<Sourced<PathBuf>>,
    pub update: UpdateInputs,
    pub repositories: Vec<RepositoryInput>,
    pub ums: Option<UmsInputs>,
    pub apps: Vec<AppInput>,
}

struct Reader<'a>(&'a Fragment);

impl Reader<'_> {
    fn origin(&self, offset: usize) -> Origin {
        Origin {
            path: self.0.path.clone(),
            line: self.0.line_of(offset),
            setting: None,
        }
    }
    fn src<T: Clone>(&self, s: &Spanned<T>) -> Sourced<T> {
        Sourced {
            value: s.get_ref().clone(),
            origin: self.origin(s.span().start),
        }
    }
    fn opt<T: Clone>(&self, s: &Option<Spanned<T>>) -> Option<Sourced<T>> {
        s.as_ref().map(|s| self.src(s))
    }
}

/// Later values override earlier ones.
fn set<T>(slot: &mut Option<T>, value: Option<T>) {
    if value.is_some() {
        *slot = value;
    }
}

pub fn merge(fragments: &[Fragment]) -> Inputs {
    let mut inputs = Inputs::default();
    for fragment in fragments {
        let r = Reader(fragment);
        inputs.files.push(fragment.path.clone());
        if let Some(p) = &fragment.raw.paths {
            set(&mut inputs.state_dir, r.opt(&p.state_dir));
            set(&mut inputs.apps_dir, r.opt(&p.apps_dir));
            set(&mut inputs.control_socket, r.opt(&p.control_socket));
        }
        if let Some(u) = &fragment.raw.update {
            merge_update(&mut inputs.update, u, &r);
        }
        for repo in &fragment.raw.repository {
            let raw = repo.get_ref();
            inputs.repositories.push(RepositoryInput {
                origin: r.origin(repo.span().start),
                name: r.src(&raw.name),
                url: r.src(&raw.url),
                priority: r.opt(&raw.priority),
                auth: r.opt(&raw.auth),
                username: r.opt(&raw.username),
                password: raw.password.as_ref().map(|p| r.origin(p.span().start)),
                password_file: r.opt(&raw.password_file),
                credential: r.opt(&raw.credential),
                ca_certificate: r.opt(&raw.ca_certificate),
            });
        }
        if let Some(ums) = &fragment.raw.ums {
            let raw = ums.get_ref();
            inputs.ums = Some(UmsInputs {
                origin: r.origin(ums.span().start),
                urls: raw.urls.iter().map(|u| r.src(u)).collect(),
                ca_certificate: r.opt(&raw.ca_certificate),
                client_certificate: r.opt(&raw.client_certificate),
                client_key: r.opt(&raw.client_key),
                device_id: r.opt(&raw.device_id),
                allow_insecure: r.opt(&raw.allow_insecure),
                heartbeat: r.opt(&raw.heartbeat),
            });
        }
        for app in &fragment.raw.app {
            let raw = app.get_ref();
            inputs.apps.push(AppInput {
                origin: r.origin(app.span().start),
                name: r.src(&raw.name),
                version: r.src(&raw.version),
                app_json_sha256: r.opt(&raw.app_json_sha256),
            });
        }
    }
    inputs
}

fn merge_update(into: &mut UpdateInputs, u: &super::fragments::RawUpdate, r: &Reader<'_>) {
    set(
        &mut into.activate_after_installation,
        r.opt(&u.activate_after_installation),
    );
    set(
        &mut into.bandwidth_limit_enabled,
        r.opt(&u.bandwidth_limit_enabled),
    );
    set(&mut into.bandwidth_limit, r.opt(&u.bandwidth_limit));
    set(&mut into.parallel_downloads, r.opt(&u.parallel_downloads));
    set(&mut into.check_on_boot, r.opt(&u.check_on_boot));
    set(&mut into.splay, r.opt(&u.splay));
    set(
        &mut into.reboot_after_activation,
        r.opt(&u.reboot_after_activation),
    );
    set(&mut into.reboot_timeout, r.opt(&u.reboot_timeout));
    set(&mut into.reboot_command, r.opt(&u.reboot_command));
    set(&mut into.notify_command, r.opt(&u.notify_command));
    set(&mut into.max_deferrals, r.opt(&u.max_deferrals));
    set(&mut into.reminder_interval, r.opt(&u.reminder_interval));
    set(&mut into.activate_hook, r.opt(&u.activate_hook));
    set(
        &mut into.activate_hook_timeout,
        r.opt(&u.activate_hook_timeout),
    );
    set(&mut into.connect_timeout, r.opt(&u.connect_timeout));
    set(&mut into.read_timeout, r.opt(&u.read_timeout));
    set(&mut into.retries, r.opt(&u.retries));
    set(&mut into.retry_backoff, r.opt(&u.retry_backoff));
    set(&mut into.low_speed_limit, r.opt(&u.low_speed_limit));
    set(&mut into.low_speed_time, r.opt(&u.low_speed_time));
}
