//! What the tests of the daemon share (the `daemon`, `ums` and some `robustness` and `cli`
//! tests): the daemon (`run`) started as a real process on a device built with a control
//! socket (`DeviceBuilder::control_socket`), a small JSON-lines client for the socket, and
//! waits on what the daemon reports.
//!
//! The client is deliberately plain (`std::os::unix::net::UnixStream`, one request per
//! connection, the reply line parsed as JSON): it is what a UMS channel or a script sees, and
//! it does not share code with the agent's own client.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use serde_json::{Value, json};

use crate::support::device::Device;
use crate::support::lifecycle::{APP, Repo, app_entry, payload_name};
use crate::support::{RunOutput, RunningAgent, pseudo_random_bytes, write_app};

/// How long a daemon may take to answer on its socket after `run` started.
pub const START_TIMEOUT: Duration = Duration::from_secs(30);
/// Longest a command may take; transfers here last seconds, the machine is small and shared.
pub const JOB_TIMEOUT: Duration = Duration::from_secs(120);
/// SIGTERM must end the daemon "within a few seconds" (it gives transfers 3 s).
pub const STOP_TIMEOUT: Duration = Duration::from_secs(5);
/// Longest wait for one reply on the socket.
const REPLY_TIMEOUT: Duration = Duration::from_secs(30);

/// The daemon of a device built with `DeviceBuilder::control_socket`.
impl Device {
    /// `run` in the background; returns once the daemon answers `status` on its socket.
    #[track_caller]
    pub fn start(&self) -> Daemon {
        self.start_with_env(&[])
    }

    /// Like [`Device::start`], with more environment variables (e.g. `NOTIFY_SOCKET`).
    #[track_caller]
    pub fn start_with_env(&self, env: &[(&str, &str)]) -> Daemon {
        let agent = env
            .iter()
            .fold(self.agent().clone(), |agent, (key, value)| {
                agent.env(key, value)
            });
        let mut daemon = Daemon {
            socket: self.socket().to_path_buf(),
            process: agent.spawn(&["run"]),
        };
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if exchange(self.socket(), &status_request()).is_ok() {
                return daemon;
            }
            if !daemon.process.is_running() {
                panic!(
                    "the daemon exited before it answered on {}\n--- stderr ---\n{}",
                    self.socket().display(),
                    daemon.process.stderr()
                );
            }
            if Instant::now() >= deadline {
                panic!(
                    "the daemon did not answer on {} within {START_TIMEOUT:?}\n--- stderr ---\n{}",
                    self.socket().display(),
                    daemon.process.stderr()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// A running `igel-update-agent run`; killed (-9) when dropped, its stderr shown if the test
/// failed.
pub struct Daemon {
    socket: PathBuf,
    process: RunningAgent,
}

impl Daemon {
    pub fn pid(&self) -> u32 {
        self.process.pid()
    }

    /// The daemon's log so far.
    pub fn stderr(&self) -> String {
        self.process.stderr()
    }

    pub fn is_running(&mut self) -> bool {
        self.process.is_running()
    }

    /// Sends one request and returns the reply; panics if there is none.
    #[track_caller]
    pub fn request(&self, request: Value) -> Value {
        let line = serde_json::to_vec(&request).expect("a JSON value serializes");
        self.send(&line)
    }

    /// Sends `line` (a newline is added) and returns the reply; panics if there is none.
    #[track_caller]
    pub fn send(&self, line: &[u8]) -> Value {
        exchange(&self.socket, line).unwrap_or_else(|e| {
            panic!(
                "no reply on {}: {e}\n--- daemon stderr ---\n{}",
                self.socket.display(),
                self.stderr()
            )
        })
    }

    /// Sends `request` and panics unless it is accepted.
    #[track_caller]
    pub fn accepted(&self, request: Value) -> Value {
        let reply = self.request(request.clone());
        assert_eq!(
            reply["result"],
            "accepted",
            "request {request} got {reply}\n--- daemon stderr ---\n{}",
            self.stderr()
        );
        assert_eq!(reply["id"], request["id"], "reply {reply} to {request}");
        reply
    }

    /// The `status` document (with the queue under `commands`).
    #[track_caller]
    pub fn status(&self) -> Value {
        let reply = self.send(&status_request());
        assert_eq!(reply["result"], "accepted", "status reply: {reply}");
        assert!(reply["status"].is_object(), "status reply: {reply}");
        reply["status"].clone()
    }

    /// Polls `status` every 20 ms until `condition` holds and returns that status; panics
    /// naming `what` (with the last status and the daemon's log) after `timeout` or if the
    /// daemon exits.
    #[track_caller]
    pub fn wait_for(
        &mut self,
        what: &str,
        timeout: Duration,
        mut condition: impl FnMut(&Value) -> bool,
    ) -> Value {
        let deadline = Instant::now() + timeout;
        loop {
            if !self.process.is_running() {
                panic!(
                    "the daemon exited while waiting for {what}\n--- stderr ---\n{}",
                    self.stderr()
                );
            }
            // A panic is a bug wherever it happens; a panicked worker task never finishes
            // anything, so waiting on would only hide it.
            if self.stderr().contains("panicked at") {
                panic!(
                    "the daemon panicked while waiting for {what}\n--- stderr ---\n{}",
                    self.stderr()
                );
            }
            let status = self.status();
            if condition(&status) {
                return status;
            }
            if Instant::now() >= deadline {
                panic!(
                    "timed out after {timeout:?} waiting for {what}\nlast status: {status:#}\n\
                     --- daemon stderr ---\n{}",
                    self.stderr()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Waits until the queue is empty and `app` is in `state`.
    #[track_caller]
    pub fn wait_for_app(&mut self, app: &str, state: &str) -> Value {
        self.wait_for(&format!("{app} {state}, queue empty"), JOB_TIMEOUT, |s| {
            queue(s).is_empty() && app_state(s, app).as_deref() == Some(state)
        })
    }

    /// Waits until stderr contains `needle` (panics after `timeout` or if the daemon exits).
    #[track_caller]
    pub fn wait_for_log(&mut self, needle: &str, timeout: Duration) {
        self.process.wait_for_stderr(needle, timeout);
    }

    pub fn signal(&self, signal: Signal) {
        let pid = i32::try_from(self.pid()).expect("pids fit in i32");
        kill(Pid::from_raw(pid), signal)
            .unwrap_or_else(|e| panic!("cannot send {signal} to the daemon: {e}"));
    }

    /// Waits for the exit (panics with the log after `timeout`).
    #[track_caller]
    pub fn wait_exit(&mut self, timeout: Duration) -> RunOutput {
        self.process.wait(timeout)
    }

    /// SIGKILL now and reap.
    pub fn kill_hard(&mut self) -> RunOutput {
        self.process.kill_hard()
    }
}

/// `{"id": ..., "command": "status"}` as a line.
fn status_request() -> Vec<u8> {
    json!({"id": format!("status-{}", unique()), "command": "status"})
        .to_string()
        .into_bytes()
}

/// A number that differs between calls in this process (for ids nobody cares about).
pub fn unique() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

/// One request on a fresh connection: `line` and a newline out, one line back as JSON.
pub fn exchange(socket: &Path, line: &[u8]) -> std::io::Result<Value> {
    let mut stream = UnixStream::connect(socket)?;
    stream.set_read_timeout(Some(REPLY_TIMEOUT))?;
    stream.set_write_timeout(Some(REPLY_TIMEOUT))?;
    let mut out = line.to_vec();
    out.push(b'\n');
    // The daemon may answer (and hang up) before it read all of an oversized line; what it
    // answered is still waiting to be read.
    let written = stream.write_all(&out);
    let mut reply = String::new();
    BufReader::new(&stream).read_line(&mut reply)?;
    if reply.is_empty() {
        written?;
        return Err(std::io::Error::other("the daemon closed without a reply"));
    }
    serde_json::from_str(&reply)
        .map_err(|e| std::io::Error::other(format!("reply {reply:?} is not JSON: {e}")))
}

/// An IDF object for `apps` (name, version).
pub fn idf(apps: &[(&str, &str)]) -> Value {
    let apps: Vec<Value> = apps
        .iter()
        .map(|(name, version)| json!({"name": name, "version": version}))
        .collect();
    json!({ "apps": apps })
}

/// The pending commands of a `status` document.
pub fn queue(status: &Value) -> Vec<Value> {
    status["commands"].as_array().cloned().unwrap_or_default()
}

/// The ids of the pending commands of a `status` document.
pub fn queued_ids(status: &Value) -> Vec<String> {
    queue(status)
        .iter()
        .filter_map(|c| c["id"].as_str().map(str::to_string))
        .collect()
}

/// The state word of `app` in a `status` document, if it is listed.
pub fn app_state(status: &Value, app: &str) -> Option<String> {
    app_entry(status, app).and_then(|a| a["state"].as_str().map(str::to_string))
}

/// Publishes `app` `version` with one payload file of `len` bytes (like `Repo::add`, but as
/// large as a throttled transfer needs to last a while) and returns its bytes.
pub fn publish_large(repo: &Repo, app: &str, version: &str, len: usize) -> Vec<u8> {
    let data = pseudo_random_bytes(0xda7a ^ len as u64, len);
    write_app(
        repo.root(),
        app,
        version,
        &[(&payload_name(app), data.clone())],
        false,
    );
    data
}

/// `[update]` lines for a bandwidth limit.
pub fn limit(value: &str) -> String {
    format!("bandwidth_limit_enabled = true\nbandwidth_limit = {value:?}\n")
}

/// A daemon under a 256KB limit in the middle of delivering 3 MiB (about 12 s at that rate):
/// the device, the daemon, the published bytes, and when the transfer started. For tests that
/// change the limit while it runs.
pub fn throttled_delivery(repo: &Repo) -> (Device, Daemon, Vec<u8>, Instant) {
    let data = publish_large(repo, APP, "1.0", 3 * 1024 * 1024);
    let device = repo.daemon_device(&limit("256KB"));
    let mut daemon = device.start();
    daemon.accepted(json!({"id": "d1", "command": "delivery", "idf": idf(&[(APP, "1.0")])}));
    daemon.wait_for_log("Transfer started", JOB_TIMEOUT);
    (device, daemon, data, Instant::now())
}
