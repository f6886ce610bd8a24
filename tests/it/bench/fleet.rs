//! The agents under load: one `igel-update-agent run` process per simulated device, each with
//! its own configuration, state directory and control socket in one temporary directory.
//!
//! [`Fleet`] owns the processes and ends them however the benchmark ends: SIGTERM, a grace
//! period, then SIGKILL, in [`Fleet::stop`] and again in its `Drop`. Every agent is also
//! started with the parent-death signal SIGKILL, so not even a benchmark that was killed
//! leaves agents behind. The fleet never talks to the stand-in: it knows processes, files and
//! `/proc`, like an administrator watching the devices.

use std::fs;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use serde_json::Value;

use crate::support::agent::SCRUBBED_ENV;

/// SIGTERM must end the daemon within a few seconds; 200 of them on two cores get longer.
const STOP_GRACE: Duration = Duration::from_secs(15);

/// The `[ums]` table of one device.
pub struct UmsSection<'a> {
    pub url: &'a str,
    pub ca: &'a Path,
    pub cert: &'a Path,
    pub key: &'a Path,
    pub device_id: &'a str,
}

/// Memory of one process, from `/proc/<pid>/status` (KiB), and its CPU time so far.
#[derive(Clone, Copy, Debug)]
pub struct Usage {
    pub rss_kib: u64,
    pub anon_kib: u64,
    pub cpu_ms: u64,
}

/// One agent process and its files.
pub struct AgentProcess {
    pub name: String,
    pub state_dir: PathBuf,
    pub socket: PathBuf,
    pub stderr_path: PathBuf,
    child: Child,
    exit: Option<ExitStatus>,
}

impl AgentProcess {
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// `None` once the process has exited (then see [`AgentProcess::exit_status`]).
    pub fn usage(&self) -> Option<Usage> {
        let pid = self.pid();
        let status = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
        let field = |name: &str| -> Option<u64> {
            let line = status.lines().find(|l| l.starts_with(name))?;
            line[name.len()..].split_whitespace().next()?.parse().ok()
        };
        let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        // Fields after the parenthesised name (which may hold spaces): state is field 3,
        // utime and stime are fields 14 and 15, in USER_HZ (100 per second on Linux).
        let rest = stat.rsplit_once(')')?.1;
        let fields: Vec<&str> = rest.split_whitespace().collect();
        let ticks: u64 =
            fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
        Some(Usage {
            rss_kib: field("VmRSS:")?,
            anon_kib: field("RssAnon:")?,
            cpu_ms: ticks * 10,
        })
    }

    /// Whether the process has exited; remembers how.
    pub fn exit_status(&mut self) -> Option<ExitStatus> {
        if self.exit.is_none() {
            self.exit = self.child.try_wait().ok().flatten();
        }
        self.exit
    }

    /// The agent's log so far.
    pub fn stderr(&self) -> String {
        fs::read_to_string(&self.stderr_path).unwrap_or_default()
    }

    /// Whether the control socket answers a `status` request.
    pub fn answers(&self) -> bool {
        let request = format!(
            "{{\"id\":\"bench-status-{}\",\"command\":\"status\"}}\n",
            self.pid()
        );
        let exchange = || -> std::io::Result<bool> {
            let mut stream = UnixStream::connect(&self.socket)?;
            stream.set_read_timeout(Some(Duration::from_secs(5)))?;
            stream.write_all(request.as_bytes())?;
            let mut reply = String::new();
            BufReader::new(&stream).read_line(&mut reply)?;
            Ok(reply.contains("\"accepted\""))
        };
        exchange().unwrap_or(false)
    }

    /// Whether `state.json` shows `app` installed and active at `version`.
    pub fn installed(&self, app: &str, version: &str) -> bool {
        let Ok(bytes) = fs::read(self.state_dir.join("state.json")) else {
            return false;
        };
        let Ok(state) = serde_json::from_slice::<Value>(&bytes) else {
            return false;
        };
        state["apps"].as_array().is_some_and(|apps| {
            apps.iter().any(|a| {
                a["name"] == app
                    && a["version"] == version
                    && a["state"] == "installed"
                    && a["active_version"] == version
            })
        })
    }
}

/// A set of agents sharing one binary and one repository.
pub struct Fleet {
    bin: PathBuf,
    repo_url: String,
    root: tempfile::TempDir,
    pub agents: Vec<AgentProcess>,
}

impl Fleet {
    pub fn new(bin: &Path, repo_url: &str, prefix: &str) -> Result<Fleet> {
        Ok(Fleet {
            bin: bin.to_path_buf(),
            repo_url: repo_url.to_string(),
            root: tempfile::TempDir::with_prefix(format!("igel-bench-{prefix}-"))
                .context("cannot create a temporary directory")?,
            agents: Vec::new(),
        })
    }

    /// Writes the configuration of agent `name` and starts `run` on it.
    pub fn spawn(&mut self, name: &str, ums: Option<&UmsSection>) -> Result<()> {
        let dir = self.root.path().join(name);
        fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
        let socket = dir.join("run").join("control.sock");
        let config = dir.join("agent.toml");
        fs::write(&config, self.config_text(&socket, ums))
            .with_context(|| format!("cannot write {}", config.display()))?;
        let state_dir = dir.join("state");
        let stderr_path = dir.join("stderr.log");
        let stderr = fs::File::create(&stderr_path)
            .with_context(|| format!("cannot create {}", stderr_path.display()))?;
        let mut cmd = Command::new(&self.bin);
        for key in SCRUBBED_ENV {
            cmd.env_remove(key);
        }
        cmd.arg("--config")
            .arg(&config)
            .arg("--state-dir")
            .arg(&state_dir)
            .arg("run")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr);
        // SAFETY: prctl(2) is async-signal-safe, and the closure touches no memory of the
        // parent. The spawning thread is the main thread, which lives as long as the process,
        // so the signal comes only when the benchmark itself is gone.
        unsafe {
            cmd.pre_exec(|| {
                nix::sys::prctl::set_pdeathsig(Signal::SIGKILL).map_err(std::io::Error::from)
            });
        }
        let child = cmd
            .spawn()
            .with_context(|| format!("cannot start {}", self.bin.display()))?;
        self.agents.push(AgentProcess {
            name: name.to_string(),
            state_dir,
            socket,
            stderr_path,
            child,
            exit: None,
        });
        Ok(())
    }

    fn config_text(&self, socket: &Path, ums: Option<&UmsSection>) -> String {
        let mut text = format!(
            "[paths]\ncontrol_socket = {:?}\n\n[[repository]]\nname = \"bench\"\nurl = {:?}\npriority = 100\n",
            socket.display().to_string(),
            self.repo_url
        );
        if let Some(u) = ums {
            text.push_str(&format!(
                "\n[ums]\nurls = [{:?}]\nca_certificate = {:?}\nclient_certificate = {:?}\nclient_key = {:?}\ndevice_id = {:?}\n",
                u.url,
                u.ca.display().to_string(),
                u.cert.display().to_string(),
                u.key.display().to_string(),
                u.device_id
            ));
        }
        text
    }

    /// Names and exit statuses of the agents that have exited.
    pub fn exited(&mut self) -> Vec<(String, ExitStatus)> {
        self.agents
            .iter_mut()
            .filter_map(|a| a.exit_status().map(|s| (a.name.clone(), s)))
            .collect()
    }

    /// SIGTERM to every agent still running, up to [`STOP_GRACE`] for them to exit, then
    /// SIGKILL. Returns how many had to be killed.
    pub fn stop(&mut self) -> usize {
        for agent in &mut self.agents {
            if agent.exit_status().is_none() {
                let _ = kill(Pid::from_raw(agent.pid() as i32), Signal::SIGTERM);
            }
        }
        let deadline = Instant::now() + STOP_GRACE;
        while Instant::now() < deadline && self.agents.iter_mut().any(|a| a.exit_status().is_none())
        {
            std::thread::sleep(Duration::from_millis(50));
        }
        let mut killed = 0;
        for agent in &mut self.agents {
            if agent.exit_status().is_none() {
                killed += 1;
                let _ = agent.child.kill();
                agent.exit = agent.child.wait().ok();
            }
        }
        killed
    }
}

impl Drop for Fleet {
    fn drop(&mut self) {
        self.stop();
    }
}
