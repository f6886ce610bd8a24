//! `repo index DIR` and `repo serve DIR`: tools to build and serve a repository.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Subcommand;

use super::{CmdResult, Failure, Global};
use crate::config::Secret;
use crate::repo_server::{self, RepoServerError};

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Write app.json for every DIR/<app>/<version>/.
    Index { dir: PathBuf },
    /// Serve DIR as a read-only WebDAV repository.
    Serve {
        dir: PathBuf,
        /// Address to listen on (port 0: any free port; the address is printed).
        #[arg(long, default_value = "127.0.0.1:8080")]
        listen: SocketAddr,
        /// Require HTTP Basic authentication with this user.
        #[arg(long, requires = "password_file")]
        user: Option<String>,
        /// File holding the password for --user.
        #[arg(long, requires = "user")]
        password_file: Option<PathBuf>,
    },
}

fn failure(e: RepoServerError) -> Failure {
    match e {
        RepoServerError::BadName { .. }
        | RepoServerError::Symlink { .. }
        | RepoServerError::NotADirectory { .. } => Failure::usage(e),
        other => Failure::failed(other),
    }
}

pub fn run(_global: &Global, cmd: Command) -> CmdResult {
    match cmd {
        Command::Index { dir } => {
            for path in repo_server::index(&dir).map_err(failure)? {
                outln!("{}", path.display());
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Serve {
            dir,
            listen,
            user,
            password_file,
        } => {
            let auth = match (user, password_file) {
                (Some(user), Some(file)) => {
                    let text = std::fs::read_to_string(&file).map_err(|e| {
                        Failure::usage(anyhow::anyhow!("cannot read {}: {e}", file.display()))
                    })?;
                    Some((
                        user,
                        Secret::new(text.trim_end_matches(['\r', '\n']).to_string()),
                    ))
                }
                _ => None,
            };
            let rt = super::runtime()?;
            rt.block_on(async {
                let shutdown = async {
                    let _ = tokio::signal::ctrl_c().await;
                };
                repo_server::serve(dir, listen, auth, shutdown, |addr| {
                    outln!("serving on http://{addr}/");
                })
                .await
                .map_err(failure)
            })?;
            Ok(ExitCode::SUCCESS)
        }
    }
}
