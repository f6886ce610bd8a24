//! The repository side of the protocol, for labs, demos and tests (DESIGN 8, `repo index` and
//! `repo serve`): [`index`] writes the `app.json` of every `DIR/<app>/<version>/`, and [`serve`]
//! publishes such a directory as a read-only WebDAV repository (optionally behind HTTP Basic),
//! with byte ranges answered by [`partial`] as [`range`] plans them.
//!
//! It owns nothing of the device: it never touches the agent's state, store or configuration,
//! never writes anything but `app.json` files (and only through [`index`]), never accepts a
//! write over HTTP, and never logs or returns a password.

mod compare;
mod index;
mod partial;
/// Reached by [`crate::fuzz::range`] too.
pub(crate) mod range;
mod serve;

use std::io;
use std::net::SocketAddr;
use std::path::PathBuf;

use crate::manifest::ManifestError;

pub use compare::compare;
pub use index::index;
pub use serve::serve;

/// What can go wrong while indexing or serving a repository directory; every variant names
/// the path or address it is about.
#[derive(Debug, thiserror::Error)]
pub enum RepoServerError {
    #[error("{}: cannot {action}: {source}", path.display())]
    Io {
        path: PathBuf,
        action: &'static str,
        source: io::Error,
    },
    #[error("{}: {reason}; rename it", path.display())]
    BadName { path: PathBuf, reason: String },
    #[error(
        "{}: is a symbolic link; a repository must hold real files and directories (replace the link with a copy)",
        path.display()
    )]
    Symlink { path: PathBuf },
    #[error("{}: is neither a regular file nor a directory; remove it", path.display())]
    NotRegular { path: PathBuf },
    #[error("{}: is not a directory; give the repository's top directory", path.display())]
    NotADirectory { path: PathBuf },
    #[error("{}: the app.json for this directory would be invalid: {source}", path.display())]
    Manifest {
        path: PathBuf,
        source: ManifestError,
    },
    /// Every name below the directory that does not fit the repository layout; nothing was
    /// indexed.
    #[error(
        "{}: {} in the repository layout, nothing was indexed: {}",
        dir.display(),
        count_problems(problems.len()),
        join_problems(problems)
    )]
    Layout {
        dir: PathBuf,
        problems: Vec<RepoServerError>,
    },
    #[error(
        "{}: nothing to index: no <app>/<version>/ directory below it; {hint}. `repo index` \
         expects the repository's top directory, laid out as {}/<app>/<version>/<files>",
        dir.display(),
        dir.display()
    )]
    NothingToIndex { dir: PathBuf, hint: String },
    #[error("cannot listen on {addr}: {source}")]
    Listen { addr: SocketAddr, source: io::Error },
    #[error("WebDAV server on {addr} stopped: {source}")]
    Serve { addr: SocketAddr, source: io::Error },
}

/// `1 problem`, `3 problems`.
fn count_problems(n: usize) -> String {
    if n == 1 {
        "1 problem".into()
    } else {
        format!("{n} problems")
    }
}

fn join_problems(problems: &[RepoServerError]) -> String {
    problems
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}

impl RepoServerError {
    fn io(path: impl Into<PathBuf>, action: &'static str) -> impl FnOnce(io::Error) -> Self {
        let path = path.into();
        move |source| RepoServerError::Io {
            path,
            action,
            source,
        }
    }
}
