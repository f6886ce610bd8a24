//! `repo index DIR` and `repo serve DIR`: tools to build and serve a repository.

use std::net::{Ipv4Addr, SocketAddr, ToSocketAddrs};
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Subcommand;

use super::{CmdResult, Failure, Global};
use crate::config::Secret;
use crate::repo_server::{self, RepoServerError};

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Write app.json for every DIR/<app>/<version>/.
    ///
    /// Every regular file below a version directory is listed with its size and SHA-256; the
    /// `reboot` flag of an existing app.json is kept. Prints the app.json files written.
    ///
    /// All or nothing: the whole tree is checked first. Every name that does not fit the
    /// layout (a badly named app or version directory, a file name an app cannot have, a
    /// symbolic link, a special file, a path more than four levels deep) is reported, each
    /// with its path, and then nothing is indexed (exit 2).
    ///
    /// Exit status: 0 app.json written for every version directory; 1 nothing was indexed
    /// because DIR holds no <app>/<version>/ directory (for example DIR is an app or a
    /// version directory itself: the message says which it looks like), or a file could not
    /// be read or written; 2 bad names, as above.
    Index {
        /// The repository's top directory, laid out as DIR/<app>/<version>/<files>.
        #[arg(value_name = "DIR")]
        dir: PathBuf,
    },
    /// Estimate what a delta update from OLD to NEW costs, before rolling it out.
    ///
    /// OLD and NEW are two version directories (DIR/<app>/<version>/) or two files. For every
    /// file of NEW, decides as a device holding OLD would: what it copies from OLD, what it
    /// reads of the chunk index, what it downloads, in how many range requests, and what that
    /// is against a full download. Files under 256 KiB, and files of which less than 1/16 can
    /// be reused, are downloaded whole. Reads both versions once; writes nothing.
    Compare {
        /// The version a device has.
        #[arg(value_name = "OLD")]
        old: PathBuf,
        /// The version to roll out.
        #[arg(value_name = "NEW")]
        new: PathBuf,
    },
    /// Serve DIR as a read-only WebDAV repository.
    ///
    /// Answers GET (with Range), HEAD, OPTIONS and PROPFIND; anything else gets 405. Prints
    /// `serving on http://ADDR/` once it accepts connections, and runs until Ctrl-C.
    ///
    /// Every request is logged on stderr at info level (hidden by --log-level warn), like a
    /// web server's access log: client address, "METHOD PATH", status, body bytes sent and
    /// duration. Request headers, and so credentials, are never logged.
    Serve {
        /// The repository's top directory, laid out as DIR/<app>/<version>/ (see `repo
        /// index`).
        #[arg(value_name = "DIR")]
        dir: PathBuf,
        /// Address to listen on: IP:PORT, [IPv6]:PORT, HOST:PORT, or a bare PORT, which means
        /// 127.0.0.1:PORT. The default and a bare port are loopback only; give 0.0.0.0:PORT or
        /// [::]:PORT to serve other machines. A HOST name is resolved and the first of its
        /// addresses that can be bound is used. Port 0 picks a free port (see the printed
        /// address).
        #[arg(
            long,
            value_name = "ADDR",
            default_value = "127.0.0.1:8080",
            value_parser = parse_listen
        )]
        listen: Listen,
        /// Require HTTP Basic authentication with this user name on every request (needs
        /// --password-file).
        #[arg(long, value_name = "USER", requires = "password_file")]
        user: Option<String>,
        /// File holding the password for --user (a trailing newline is ignored); the password
        /// is never printed or logged.
        #[arg(long, value_name = "PATH", requires = "user")]
        password_file: Option<PathBuf>,
    },
}

/// The addresses a `--listen` value stands for, in the order they are tried.
#[derive(Clone, Debug)]
pub struct Listen(Vec<SocketAddr>);

const LISTEN_FORMS: &str = "expected IP:PORT, [IPv6]:PORT, HOST:PORT or a bare PORT \
                            (for example 127.0.0.1:8080, [::1]:8080, localhost:8080 or 8080)";

/// `--listen`: an IP address with port, a bare port (on 127.0.0.1), or a host name with port,
/// resolved here so that a name that does not resolve is a usage error naming it.
fn parse_listen(value: &str) -> Result<Listen, String> {
    if let Ok(addr) = value.parse::<SocketAddr>() {
        return Ok(Listen(vec![addr]));
    }
    if !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()) {
        let port: u16 = value
            .parse()
            .map_err(|_| format!("port {value} is out of range (0-65535)"))?;
        return Ok(Listen(vec![SocketAddr::from((Ipv4Addr::LOCALHOST, port))]));
    }
    let Some((host, port)) = value.rsplit_once(':') else {
        return Err(LISTEN_FORMS.into());
    };
    let port: u16 = port
        .parse()
        .map_err(|_| format!("{port:?} is not a port (0-65535); {LISTEN_FORMS}"))?;
    if host.is_empty() {
        return Err(format!("no host before the port; {LISTEN_FORMS}"));
    }
    if host.contains(':') || host.starts_with('[') {
        return Err(format!(
            "{host:?} is not an IP address; an IPv6 address goes in brackets before the port, \
             as in [::1]:8080"
        ));
    }
    let mut addrs: Vec<SocketAddr> = Vec::new();
    let resolved = (host, port)
        .to_socket_addrs()
        .map_err(|e| format!("cannot resolve {host:?}: {e}"))?;
    for addr in resolved {
        if !addrs.contains(&addr) {
            addrs.push(addr);
        }
    }
    if addrs.is_empty() {
        return Err(format!("{host:?} has no address"));
    }
    Ok(Listen(addrs))
}

fn failure(e: RepoServerError) -> Failure {
    match e {
        RepoServerError::BadName { .. }
        | RepoServerError::Symlink { .. }
        | RepoServerError::NotRegular { .. }
        | RepoServerError::NotADirectory { .. } => Failure::usage(e),
        RepoServerError::Layout { dir, problems } => {
            // One line each: the report would be unreadable (and `clean` escapes newlines).
            for problem in &problems {
                errln!(
                    "igel-update-agent: {}",
                    crate::report::clean(&problem.to_string())
                );
            }
            let n = problems.len();
            Failure::usage(anyhow::anyhow!(
                "{}: nothing was indexed: {} above; fix {} and run `repo index` again",
                dir.display(),
                if n == 1 {
                    "1 problem".to_string()
                } else {
                    format!("{n} problems")
                },
                if n == 1 { "it" } else { "them all" }
            ))
        }
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
        Command::Compare { old, new } => {
            let rows = repo_server::compare(&old, &new).map_err(failure)?;
            outln!("{}", compare_table(&rows));
            Ok(ExitCode::SUCCESS)
        }
        Command::Serve {
            dir,
            listen: Listen(listen),
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
                repo_server::serve(dir, listen, auth, true, shutdown, |addr| {
                    outln!("serving on http://{addr}/");
                })
                .await
                .map_err(failure)
            })?;
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// The rows of `repo compare` and their total, in aligned columns.
fn compare_table(rows: &[(String, crate::chunks::Estimate)]) -> String {
    use crate::report::human_bytes;
    let mut total = crate::chunks::Estimate::default();
    let mut lines = vec![
        [
            "FILE",
            "SIZE",
            "REUSED",
            "INDEX",
            "DOWNLOAD",
            "OVER THE WIRE",
            "REQUESTS",
        ]
        .map(String::from),
    ];
    let row = |name: &str, e: &crate::chunks::Estimate| {
        let share = if e.size > 0 {
            e.over_the_wire() as f64 * 100.0 / e.size as f64
        } else {
            0.0
        };
        [
            name.to_string(),
            human_bytes(e.size),
            human_bytes(e.reused),
            human_bytes(e.index),
            human_bytes(e.download) + if e.whole { " (whole)" } else { "" },
            format!("{} ({share:.1} %)", human_bytes(e.over_the_wire())),
            e.requests.to_string(),
        ]
    };
    for (name, e) in rows {
        lines.push(row(name, e));
        total.size += e.size;
        total.reused += e.reused;
        total.index += e.index;
        total.download += e.download;
        total.requests += e.requests;
    }
    lines.push(row("total", &total));
    let mut widths = [0usize; 7];
    for l in &lines {
        for (w, c) in widths.iter_mut().zip(l) {
            *w = (*w).max(c.chars().count());
        }
    }
    lines
        .iter()
        .map(|l| {
            l.iter()
                .zip(widths)
                .enumerate()
                .map(|(i, (c, w))| {
                    if i == 0 {
                        format!("{c:<w$}")
                    } else {
                        format!("{c:>w$}")
                    }
                })
                .collect::<Vec<_>>()
                .join("  ")
                .trim_end()
                .to_string()
        })
        .collect::<Vec<_>>()
        .join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listen_accepts_addresses_names_and_a_bare_port() {
        let one = |v: &str| parse_listen(v).unwrap().0;
        assert_eq!(one("127.0.0.1:8080"), ["127.0.0.1:8080".parse().unwrap()]);
        assert_eq!(one("[::1]:8080"), ["[::1]:8080".parse().unwrap()]);
        assert_eq!(one("8080"), ["127.0.0.1:8080".parse().unwrap()]);
        assert_eq!(one("0"), ["127.0.0.1:0".parse().unwrap()]);
        let local = one("localhost:8080");
        assert!(!local.is_empty());
        assert!(
            local
                .iter()
                .all(|a| a.ip().is_loopback() && a.port() == 8080)
        );
    }

    #[test]
    fn listen_refuses_what_is_no_address() {
        for bad in [
            "",
            "nonsense",
            "65536",
            ":8080",
            "::1",
            "[::1]",
            "127.0.0.1:http",
            "1.2.3.4:99999",
        ] {
            assert!(parse_listen(bad).is_err(), "{bad:?}");
        }
    }
}
