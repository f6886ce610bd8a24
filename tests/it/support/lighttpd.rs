//! A private lighttpd on loopback serving a directory read-only: the second web server of the
//! delta-update tests (lighttpd answers `Range` on its own, differently from Apache: it
//! streams files with sendfile and merges nothing). Its access log uses the same line format
//! as the private Apache's, so [`AccessEntry`] reads both.

use std::fs;
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::apache::{AccessEntry, parse_access_line};

const LIGHTTPD_BIN: &str = "/usr/sbin/lighttpd";

pub struct Lighttpd {
    child: Child,
    port: u16,
    state: tempfile::TempDir,
}

impl Lighttpd {
    /// Serves `root`; panics (naming the package to install) when lighttpd is missing.
    pub fn start(root: &Path) -> Lighttpd {
        assert!(
            Path::new(LIGHTTPD_BIN).exists(),
            "{LIGHTTPD_BIN} is missing: install the Debian package lighttpd (scripts/test does)"
        );
        let state = super::temp_dir("lighttpd");
        let s = state.path().display();
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("cannot find a free loopback port")
            .port();
        let conf = state.path().join("lighttpd.conf");
        fs::write(
            &conf,
            format!(
                "server.document-root = \"{}\"\nserver.bind = \"127.0.0.1\"\nserver.port = {port}\n\
                 server.modules = (\"mod_accesslog\")\nserver.errorlog = \"{s}/error.log\"\n\
                 accesslog.filename = \"{s}/access.log\"\n\
                 accesslog.format = \"%>s %b \\\"%r\\\" \\\"%{{Range}}i\\\" \\\"%{{If-Range}}i\\\"\"\n\
                 mimetype.assign = (\"\" => \"application/octet-stream\")\n",
                root.display()
            ),
        )
        .expect("cannot write lighttpd.conf");
        let child = Command::new(LIGHTTPD_BIN)
            .args(["-D", "-f"])
            .arg(&conf)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("cannot start lighttpd");
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "lighttpd did not listen on {port}: {}",
                fs::read_to_string(state.path().join("error.log")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        Lighttpd { child, port, state }
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}/", self.port)
    }

    /// Stops the server (SIGTERM, so that it writes out its buffered access log) and returns
    /// every request it logged.
    pub fn stop(mut self) -> Vec<AccessEntry> {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let _ = self.child.wait();
        self.access_log()
    }

    fn access_log(&self) -> Vec<AccessEntry> {
        fs::read_to_string(self.state.path().join("access.log"))
            .unwrap_or_default()
            .lines()
            .map(|l| parse_access_line(l).unwrap_or_else(|| panic!("unexpected line {l:?}")))
            .collect()
    }
}

impl Drop for Lighttpd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
