//! A private Apache httpd for one test: WebDAV repository on a loopback port chosen at run time.
//!
//! [`ApacheBuilder`] writes a complete `httpd.conf` (no Debian `/etc/apache2` involved) into a
//! temporary state directory that also holds the logs, the password files and the DAV lock
//! database, then starts `apache2 -D FOREGROUND` as a child in its own process group. The
//! document root is a directory the test owns and fills; [`Apache`] only reads it.
//!
//! The access log uses the format `%>s %B "%r" "%{Range}i" "%{If-Range}i"` so that
//! [`Apache::access_log`] can show what the client asked for (status, bytes, Range, If-Range).
//!
//! When the tests run as root (CI), Apache's workers run as `nobody`/`nogroup`: the document
//! root and its ancestors inside the temp dir are made world-readable, and so is the state
//! directory. Apache missing is a test failure, never a silent skip (DESIGN 12).

use std::fmt::Write as _;
use std::fs;
use std::net::{TcpListener, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::tls::TlsFiles;

mod access_log;
mod files;

pub use access_log::{ACCESS_LOG_FORMAT, AccessEntry, parse_access_line};
pub use files::{make_servable, running_as_root};
use files::{prepare_state_dir, write_htdigest, write_htpasswd};

/// The httpd binary of Debian's `apache2-bin`.
pub const APACHE_BIN: &str = "/usr/sbin/apache2";
const MODULE_DIR: &str = "/usr/lib/apache2/modules";
const MISSING: &str =
    "Apache is required: run scripts/test (apt-get install apache2-bin apache2-utils)";
const START_ATTEMPTS: usize = 5;
const START_TIMEOUT: Duration = Duration::from_secs(20);
const STOP_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum AuthKind {
    None,
    Basic,
    Digest,
}

/// Configures and starts an [`Apache`].
#[derive(Clone, Debug)]
pub struct ApacheBuilder {
    root: PathBuf,
    auth: AuthKind,
    users: Vec<(String, String)>,
    realm: String,
    nonce_lifetime: Option<i64>,
    tls: Option<(PathBuf, PathBuf)>,
    rate_limit_kib: Option<u32>,
    server_config: Vec<String>,
}

impl ApacheBuilder {
    /// Serve `root` (a directory the test fills) with `Dav On`, no authentication, plain HTTP.
    pub fn new(root: impl AsRef<Path>) -> ApacheBuilder {
        ApacheBuilder {
            root: root.as_ref().to_path_buf(),
            auth: AuthKind::None,
            users: Vec::new(),
            realm: "igel-repository".to_string(),
            nonce_lifetime: None,
            tls: None,
            rate_limit_kib: None,
            server_config: Vec::new(),
        }
    }

    /// Require HTTP Basic authentication; `user` is added to the password file.
    pub fn basic_auth(mut self, user: &str, password: &str) -> ApacheBuilder {
        self.auth = AuthKind::Basic;
        self.user(user, password)
    }

    /// Require HTTP Digest authentication; `user` is added to the htdigest file.
    pub fn digest_auth(mut self, user: &str, password: &str) -> ApacheBuilder {
        self.auth = AuthKind::Digest;
        self.user(user, password)
    }

    /// One more user for the chosen authentication scheme.
    pub fn user(mut self, user: &str, password: &str) -> ApacheBuilder {
        self.users.push((user.to_string(), password.to_string()));
        self
    }

    /// The authentication realm (`AuthName`); the default is `igel-repository`.
    pub fn realm(mut self, realm: &str) -> ApacheBuilder {
        self.realm = realm.to_string();
        self
    }

    /// `AuthDigestNonceLifetime` in seconds (Apache's default is 300; negative: never expires).
    pub fn digest_nonce_lifetime(mut self, seconds: i64) -> ApacheBuilder {
        self.nonce_lifetime = Some(seconds);
        self
    }

    /// Serve HTTPS with this certificate chain and private key (PEM files).
    pub fn tls(mut self, cert: &Path, key: &Path) -> ApacheBuilder {
        self.tls = Some((cert.to_path_buf(), key.to_path_buf()));
        self
    }

    /// Serve HTTPS with the server certificate of `files`.
    pub fn tls_files(self, files: &TlsFiles) -> ApacheBuilder {
        self.tls(&files.server.cert_path, &files.server.key_path)
    }

    /// Throttle every response to about `kib_per_sec` KiB/s (`mod_ratelimit`, which sends a
    /// slice every 200 ms): a slow but real server.
    pub fn rate_limit_kib_per_sec(mut self, kib_per_sec: u32) -> ApacheBuilder {
        self.rate_limit_kib = Some(kib_per_sec);
        self
    }

    /// Extra directives for the server config (after everything else, so they win).
    pub fn server_config(mut self, snippet: &str) -> ApacheBuilder {
        self.server_config.push(snippet.to_string());
        self
    }

    /// Starts Apache and waits until it accepts connections; panics with its logs if it cannot.
    pub fn start(self) -> Apache {
        assert!(Path::new(APACHE_BIN).exists(), "{MISSING}");
        assert!(
            self.root.is_dir(),
            "document root {} is not a directory",
            self.root.display()
        );
        let state = super::temp_dir("apache");
        prepare_state_dir(state.path());
        let auth_file = self.write_auth_file(state.path());
        make_servable(&self.root);

        for attempt in 1..=START_ATTEMPTS {
            let port = free_port();
            let conf = state.path().join("httpd.conf");
            let text = self.config(state.path(), port, auth_file.as_deref());
            fs::write(&conf, text).expect("cannot write httpd.conf");
            match launch(&conf, state.path(), port) {
                Ok(child) => {
                    return Apache {
                        child: Some(child),
                        port,
                        tls: self.tls.is_some(),
                        conf,
                        state,
                    };
                }
                Err(failure) if failure.contains("Address already in use") => {
                    eprintln!("apache: port {port} taken (attempt {attempt}), retrying");
                }
                Err(failure) => panic!("Apache did not start:\n{failure}"),
            }
        }
        panic!("Apache did not start: no free port after {START_ATTEMPTS} attempts");
    }

    fn write_auth_file(&self, state: &Path) -> Option<PathBuf> {
        if self.auth == AuthKind::None {
            return None;
        }
        assert!(
            !self.users.is_empty(),
            "authentication needs at least one user"
        );
        let path = state.join("users");
        match self.auth {
            AuthKind::Basic => write_htpasswd(&path, &self.users),
            AuthKind::Digest => write_htdigest(&path, &self.realm, &self.users),
            AuthKind::None => unreachable!("checked above"),
        }
        // Workers (nobody) read the user file on every request.
        fs::set_permissions(&path, fs::Permissions::from_mode(0o644))
            .expect("cannot chmod the user file");
        Some(path)
    }

    fn config(&self, state: &Path, port: u16, auth_file: Option<&Path>) -> String {
        let s = state.display();
        let mut c = String::new();
        let _ = writeln!(c, "ServerRoot \"{s}\"\nServerName 127.0.0.1");
        let _ = writeln!(c, "Listen 127.0.0.1:{port}");
        let _ = writeln!(
            c,
            "PidFile \"{s}/httpd.pid\"\nDefaultRuntimeDir \"{s}/run\""
        );
        let _ = writeln!(c, "ErrorLog \"{s}/error.log\"\nLogLevel warn");
        let mut modules = vec![
            "mpm_event",
            "authn_core",
            "authn_file",
            "authz_core",
            "authz_user",
            "auth_basic",
            "auth_digest",
            "dav",
            "dav_fs",
        ];
        if self.tls.is_some() {
            modules.extend(["socache_shmcb", "ssl"]);
        }
        if self.rate_limit_kib.is_some() {
            modules.extend(["env", "ratelimit"]);
        }
        for m in modules {
            let _ = writeln!(c, "LoadModule {m}_module {MODULE_DIR}/mod_{m}.so");
        }
        if running_as_root() {
            c.push_str("User nobody\nGroup nogroup\n");
        }
        // Small worker pool: many instances run in parallel on a 2-core machine.
        c.push_str(
            "StartServers 1\nServerLimit 2\nThreadLimit 16\nThreadsPerChild 16\n\
             MaxRequestWorkers 32\nMinSpareThreads 4\nMaxSpareThreads 32\n\
             Timeout 60\nKeepAlive On\nKeepAliveTimeout 5\n",
        );
        let _ = writeln!(
            c,
            "CustomLog \"{s}/access.log\" \"{ACCESS_LOG_FORMAT}\"\nBufferedLogs Off"
        );
        let _ = writeln!(c, "DavLockDB \"{s}/davlock/lockdb\"");
        if let Some((cert, key)) = &self.tls {
            let _ = writeln!(
                c,
                "SSLEngine on\nSSLCertificateFile \"{}\"\nSSLCertificateKeyFile \"{}\"\n\
                 SSLSessionCache \"shmcb:{s}/run/ssl_scache(512000)\"",
                cert.display(),
                key.display()
            );
        }
        let root = self.root.display();
        let _ = writeln!(c, "DocumentRoot \"{root}\"");
        c.push_str("<Directory />\n  AllowOverride None\n  Require all denied\n</Directory>\n");
        let _ = writeln!(c, "<Directory \"{root}\">");
        c.push_str("  Dav On\n  Options None\n  AllowOverride None\n");
        c.push_str(&self.auth_directives(auth_file));
        if let Some(kib) = self.rate_limit_kib {
            let _ = writeln!(c, "  SetOutputFilter RATE_LIMIT\n  SetEnv rate-limit {kib}");
        }
        c.push_str("</Directory>\n");
        for snippet in &self.server_config {
            let _ = writeln!(c, "{snippet}");
        }
        c
    }

    fn auth_directives(&self, auth_file: Option<&Path>) -> String {
        let Some(file) = auth_file else {
            return "  Require all granted\n".to_string();
        };
        let (kind, provider) = match self.auth {
            AuthKind::Basic => ("Basic", "AuthBasicProvider"),
            _ => ("Digest", "AuthDigestProvider"),
        };
        let mut d = format!(
            "  AuthType {kind}\n  AuthName \"{}\"\n  {provider} file\n  AuthUserFile \"{}\"\n",
            self.realm,
            file.display()
        );
        if let (AuthKind::Digest, Some(secs)) = (self.auth, self.nonce_lifetime) {
            let _ = writeln!(d, "  AuthDigestNonceLifetime {secs}");
        }
        d.push_str("  Require valid-user\n");
        d
    }
}

/// A running private Apache; stopped when dropped.
pub struct Apache {
    child: Option<Child>,
    port: u16,
    tls: bool,
    conf: PathBuf,
    state: tempfile::TempDir,
}

impl Apache {
    /// Same as [`ApacheBuilder::new`].
    pub fn builder(root: impl AsRef<Path>) -> ApacheBuilder {
        ApacheBuilder::new(root)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Base URL with a trailing slash: `http://127.0.0.1:PORT/` or `https://127.0.0.1:PORT/`
    /// (the test certificates name both `127.0.0.1` and `localhost`).
    pub fn url(&self) -> String {
        let scheme = if self.tls { "https" } else { "http" };
        format!("{scheme}://127.0.0.1:{}/", self.port)
    }

    /// Every request logged so far, oldest first. Apache logs a request only after its
    /// response was sent, so a client can see the response a moment before the line exists:
    /// use [`Apache::wait_for_access_log`] right after a request.
    pub fn access_log(&self) -> Vec<AccessEntry> {
        let path = self.state.path().join("access.log");
        let text = fs::read_to_string(&path).unwrap_or_default();
        text.lines()
            .map(|line| {
                parse_access_line(line)
                    .unwrap_or_else(|| panic!("unexpected access log line: {line:?}"))
            })
            .collect()
    }

    /// Waits (up to `timeout`) until the access log satisfies `condition`, then returns it.
    pub fn wait_for_access_log(
        &self,
        timeout: Duration,
        mut condition: impl FnMut(&[AccessEntry]) -> bool,
    ) -> Vec<AccessEntry> {
        let mut entries = Vec::new();
        super::wait_until("the expected Apache access log", timeout, || {
            entries = self.access_log();
            condition(&entries)
        });
        entries
    }

    /// Access log entries whose path is `path` (exactly).
    pub fn requests_for(&self, path: &str) -> Vec<AccessEntry> {
        self.access_log()
            .into_iter()
            .filter(|entry| entry.path == path)
            .collect()
    }

    /// The error log so far.
    pub fn error_log(&self) -> String {
        fs::read_to_string(self.state.path().join("error.log")).unwrap_or_default()
    }

    /// Whether the Apache parent process is still running.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.as_mut().map(|c| c.try_wait()), Some(Ok(None)))
    }

    /// Starts Apache again on the same port with the same config (a repository coming back
    /// after [`Apache::stop`]); the access log keeps its earlier lines.
    pub fn restart(&mut self) {
        self.stop();
        match launch(&self.conf, self.state.path(), self.port) {
            Ok(child) => self.child = Some(child),
            Err(failure) => panic!("Apache did not restart on port {}:\n{failure}", self.port),
        }
    }

    /// Stops Apache now (a repository going down); idempotent, also done on drop.
    pub fn stop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        let _ = Command::new(APACHE_BIN)
            .arg("-f")
            .arg(&self.conf)
            .args(["-k", "stop"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        let deadline = Instant::now() + STOP_TIMEOUT;
        while Instant::now() < deadline {
            if let Ok(Some(_)) = child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        // Fallback: -9 to the whole process group (parent and workers). The parent is not
        // reaped yet, so its pid (the group id) cannot have been reused. The shell's builtin
        // `kill` is used because procps may be missing on a minimal machine.
        let _ = Command::new("sh")
            .args(["-c", &format!("kill -KILL -{}", child.id())])
            .stderr(Stdio::null())
            .status();
        let _ = child.wait();
    }
}

impl Drop for Apache {
    fn drop(&mut self) {
        self.stop();
        // The state dir (and its logs) goes away with us: show them when a test fails.
        if std::thread::panicking() {
            eprintln!(
                "--- Apache {} error.log ---\n{}--- access.log ---\n{}",
                self.url(),
                self.error_log(),
                fs::read_to_string(self.state.path().join("access.log")).unwrap_or_default()
            );
        }
    }
}

/// A port that was free a moment ago; Apache may still lose the race for it (then we retry).
fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("cannot bind a loopback port");
    listener.local_addr().expect("no local address").port()
}

/// Starts Apache in the foreground as our child and waits until its port accepts connections.
/// On failure returns stderr, the error log and `apache2 -t` output.
fn launch(conf: &Path, state: &Path, port: u16) -> Result<Child, String> {
    let stderr_path = state.join("stderr.log");
    let stderr = fs::File::create(&stderr_path).expect("cannot create apache stderr file");
    let mut child = Command::new(APACHE_BIN)
        .arg("-f")
        .arg(conf)
        .args(["-D", "FOREGROUND"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(stderr)
        .process_group(0)
        .spawn()
        .unwrap_or_else(|err| panic!("{MISSING} ({APACHE_BIN}: {err})"));
    let deadline = Instant::now() + START_TIMEOUT;
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            return Err(failure_report(
                conf,
                state,
                &format!("exited with {status}"),
            ));
        }
        if TcpStream::connect(("127.0.0.1", port)).is_ok() && state.join("httpd.pid").exists() {
            return Ok(child);
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            return Err(failure_report(conf, state, "did not listen in time"));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn failure_report(conf: &Path, state: &Path, what: &str) -> String {
    let syntax = Command::new(APACHE_BIN)
        .arg("-f")
        .arg(conf)
        .arg("-t")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stderr).into_owned())
        .unwrap_or_else(|err| format!("cannot run apache2 -t: {err}"));
    let read = |name: &str| fs::read_to_string(state.join(name)).unwrap_or_default();
    format!(
        "apache2 {what}\n--- stderr ---\n{}\n--- error.log ---\n{}\n--- apache2 -t ---\n{syntax}\n\
         --- {} ---\n{}",
        read("stderr.log"),
        read("error.log"),
        conf.display(),
        read("httpd.conf"),
    )
}
