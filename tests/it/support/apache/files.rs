//! Files a private Apache reads besides its config: the user files for Basic and Digest
//! authentication, and the permissions its workers need when they run as `nobody`.

use std::fmt::Write as _;
use std::fs;
use std::io::Write as _;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::process::{Command, Stdio};

use super::MISSING;

/// Makes `path` readable by Apache's workers (`nobody`): adds `o+rx` to directories and `o+r`
/// to files below it, and `o+rx` to its ancestors inside the system temp dir. Call it for
/// files written after [`super::ApacheBuilder::start`] with a restrictive umask; `write_app`
/// needs no help. Panics (as root) when an ancestor outside the temp dir is not searchable,
/// since Apache would then answer 403 for everything.
pub fn make_servable(path: &Path) {
    add_mode_recursive(path);
    let tmp = std::env::temp_dir()
        .canonicalize()
        .unwrap_or_else(|_| std::env::temp_dir());
    let full = path.canonicalize().unwrap_or_else(|_| path.to_path_buf());
    for ancestor in full.ancestors().skip(1) {
        if ancestor.starts_with(&tmp) && ancestor != tmp {
            add_mode(ancestor, 0o755);
        } else if running_as_root() {
            let mode = fs::metadata(ancestor).map_or(0o755, |m| m.permissions().mode());
            assert!(
                mode & 0o001 != 0,
                "Apache's workers (nobody) cannot reach {}: {} is not world-searchable; put \
                 the document root under {}",
                path.display(),
                ancestor.display(),
                tmp.display()
            );
        }
    }
}

fn add_mode_recursive(path: &Path) {
    let Ok(meta) = fs::symlink_metadata(path) else {
        return;
    };
    if meta.is_dir() {
        add_mode(path, 0o755);
        for entry in fs::read_dir(path).into_iter().flatten().flatten() {
            add_mode_recursive(&entry.path());
        }
    } else if meta.is_file() {
        add_mode(path, 0o644);
    }
}

fn add_mode(path: &Path, bits: u32) {
    if let Ok(meta) = fs::metadata(path) {
        let mode = meta.permissions().mode();
        if mode & bits != bits {
            let _ = fs::set_permissions(path, fs::Permissions::from_mode(mode | bits));
        }
    }
}

/// Whether this process runs as root, read from the owner of `/proc/self` (its effective
/// uid), so no `libc` dependency is needed.
pub fn running_as_root() -> bool {
    fs::metadata("/proc/self")
        .map(|m| m.uid() == 0)
        .unwrap_or(false)
}

pub(super) fn prepare_state_dir(state: &Path) {
    fs::set_permissions(state, fs::Permissions::from_mode(0o755))
        .expect("cannot chmod the Apache state dir");
    for (dir, mode) in [("run", 0o777), ("davlock", 0o777)] {
        let path = state.join(dir);
        fs::create_dir(&path).expect("cannot create Apache state subdirectory");
        // Workers (nobody) write the DAV lock database and the runtime mutex files.
        fs::set_permissions(&path, fs::Permissions::from_mode(mode))
            .expect("cannot chmod Apache state subdirectory");
    }
}

pub(super) fn write_htpasswd(path: &Path, users: &[(String, String)]) {
    for (i, (user, password)) in users.iter().enumerate() {
        // -c creates the file for the first user; -b takes the password from the command line.
        let flags = if i == 0 { "-cb" } else { "-b" };
        let out = Command::new("htpasswd")
            .arg(flags)
            .arg(path)
            .args([user, password])
            .output()
            .unwrap_or_else(|err| panic!("{MISSING} (htpasswd: {err})"));
        assert!(
            out.status.success(),
            "htpasswd failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

/// htdigest format `user:realm:md5hex(user:realm:password)`; `htdigest` itself only reads the
/// password from a terminal, so the hash comes from coreutils' `md5sum`.
pub(super) fn write_htdigest(path: &Path, realm: &str, users: &[(String, String)]) {
    let mut text = String::new();
    for (user, password) in users {
        let hash = md5_hex(format!("{user}:{realm}:{password}").as_bytes());
        let _ = writeln!(text, "{user}:{realm}:{hash}");
    }
    fs::write(path, text).expect("cannot write the htdigest file");
}

fn md5_hex(data: &[u8]) -> String {
    let mut child = Command::new("md5sum")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("md5sum (coreutils) is needed to write an htdigest file");
    child
        .stdin
        .take()
        .expect("stdin is piped")
        .write_all(data)
        .expect("cannot feed md5sum");
    let out = child.wait_with_output().expect("md5sum failed");
    let text = String::from_utf8(out.stdout).expect("md5sum printed non-UTF-8");
    text.split_whitespace()
        .next()
        .expect("md5sum printed nothing")
        .to_string()
}
