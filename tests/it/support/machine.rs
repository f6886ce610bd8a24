//! A machine booted by a real systemd: the host's own `/lib/systemd/systemd` runs as PID 1 in
//! fresh Linux namespaces (mount, PID, UTS, IPC, network, cgroup), with no image and no
//! container manager. The tests of `tests/it/systemd/` run the agent's units under it.
//!
//! What the machine is made of (all under one temporary directory `W`):
//! - `/` is a tmpfs; `/usr` is an overlay of `W/usr-add` (the agent's binary in `/usr/bin`)
//!   over the host's `/usr`, and `/etc` one of the host's `/etc`, both with writable upper
//!   layers of their own (a package can be installed; the host never changes);
//!   `/etc/systemd/system` is `W/units` alone, so nothing the host enabled is pulled in;
//! - `/mnt/host` is `W/share` ([`MachineBuilder::share`]): files the test hands in;
//! - `/var` is `W/var`, kept across a reboot (the journal is persistent there, so
//!   `journalctl -b -1` tells the previous boot's story), and readable from outside;
//! - a boot id of its own per boot, a machine id, a hostname, a cgroup subtree of its own
//!   (`<cgroup2>/igel-it-<pid>-<n>`, the root of its cgroup namespace), a network namespace
//!   with only loopback (servers for it run from outside with `nsenter --net`, see
//!   [`Machine::spawn_in_net`]);
//! - `/dev/console` is a plain file (`W/console.log`), so `console-getty.service` is masked.
//!
//! It is entered with `nsenter -t PID -a`. At the end of a test it is powered off, or killed
//! (`unshare --kill-child` takes PID 1 along when `unshare` gets SIGKILL; `unshare` ignores
//! SIGTERM), and its cgroup subtree is removed: no process, mount or cgroup is left behind.
//! Every wait has a timeout; a machine that cannot boot is a test failure naming the reason
//! (root, CAP_SYS_ADMIN and cgroup2 are needed), never a skip.
//!
//! Learnt the hard way (see the comments in [`STAGE2`]): `mount --make-rshared /` after
//! `pivot_root`, or `LoadCredential=` gives an empty `$CREDENTIALS_DIRECTORY`; a fresh boot id
//! bound over `/proc/sys/kernel/random/boot_id`, or the journal cannot tell boots apart; PID 1
//! exits with 130 after `poweroff` and 129 after `reboot`.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use serde_json::Value;

/// How long a boot may take before the test fails (it takes about a second here).
const BOOT_TIMEOUT: Duration = Duration::from_secs(60);
/// How long `poweroff` or `reboot` may take before PID 1 is killed.
const SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(60);
/// The exit status of PID 1 after `systemctl poweroff` in a PID namespace.
pub const EXIT_POWEROFF: i32 = 130;
/// The exit status of PID 1 after `systemctl reboot` in a PID namespace.
pub const EXIT_REBOOT: i32 = 129;

/// Runs inside the new mount/PID/UTS/IPC/network namespaces as their first process
/// (`sh STAGE2 W CGROUP`): joins its own cgroup, enters a cgroup namespace rooted there,
/// builds the root file system and `exec`s systemd as PID 1.
const STAGE2: &str = r#"set -e
W=$1; CG=$2
if [ -z "${IGEL_IT_CGNS:-}" ]; then
  # Into a cgroup of its own first: it becomes the root of the cgroup namespace.
  echo 0 > "$CG/cgroup.procs"
  IGEL_IT_CGNS=1 exec unshare -C sh "$0" "$@"
fi
mount -t tmpfs -o mode=755 machine "$W/root"; cd "$W/root"
mkdir -p usr etc var run tmp proc sys dev root mnt oldroot
chmod 1777 tmp
for d in bin sbin lib lib32 lib64 libx32; do if [ -e "/$d" ]; then ln -s "usr/$d" "$d"; fi; done
mount -t overlay -o "lowerdir=$W/usr-add:/usr,upperdir=$W/usr-upper,workdir=$W/usr-work" overlay usr
mount -t overlay -o "lowerdir=/etc,upperdir=$W/etc-upper,workdir=$W/etc-work" overlay etc
mount --bind "$W/units" etc/systemd/system
mount --bind "$W/var" var
mkdir -p mnt/host; mount --bind "$W/share" mnt/host
mount -t proc proc proc
# A boot id of its own, or journalctl -b cannot tell this boot from the previous one.
cat /proc/sys/kernel/random/uuid > "$W/boot_id"
mount --bind "$W/boot_id" proc/sys/kernel/random/boot_id
mount -t sysfs -o ro sysfs sys
mount -t cgroup2 cgroup2 sys/fs/cgroup
mount -t tmpfs -o mode=755,nosuid dev dev
for n in null zero full random urandom tty; do touch "dev/$n"; mount --bind "/dev/$n" "dev/$n"; done
mkdir dev/pts dev/shm; ln -s pts/ptmx dev/ptmx; ln -s /proc/self/fd dev/fd
mount -t devpts -o newinstance,ptmxmode=0666 devpts dev/pts
touch dev/console; mount --bind "$W/console.log" dev/console
pivot_root . oldroot; umount -l /oldroot; rmdir /oldroot
# Shared, as on a real machine: without it a unit's mount namespace does not see the
# credentials PID 1 mounts for it (LoadCredential= gives an empty $CREDENTIALS_DIRECTORY).
mount --make-rshared /
exec env -i container=igel-it /lib/systemd/systemd
"#;

/// What a machine is made of before it boots.
pub struct MachineBuilder {
    work: tempfile::TempDir,
    enabled: Vec<(String, String)>,
}

impl MachineBuilder {
    /// Installs the agent as a package would: the binary under test as
    /// `/usr/bin/igel-update-agent`, both units from `systemd/` in `/etc/systemd/system`,
    /// enabled for `multi-user.target` as the units' `[Install]` sections say.
    pub fn agent(self) -> MachineBuilder {
        let bin = self.path("usr-add/bin/igel-update-agent");
        fs::copy(super::agent::agent_bin(), &bin)
            .unwrap_or_else(|e| panic!("cannot copy the agent to {}: {e}", bin.display()));
        let units = Path::new(env!("CARGO_MANIFEST_DIR")).join("systemd");
        let mut builder = self;
        for unit in [
            "igel-update-agent.service",
            "igel-update-agent-activate.service",
        ] {
            let text = fs::read_to_string(units.join(unit))
                .unwrap_or_else(|e| panic!("cannot read systemd/{unit}: {e}"));
            builder = builder.unit(unit, &text).enable(unit, "multi-user.target");
        }
        builder
    }

    /// A unit file (or a drop-in: `name` = `UNIT.d/NAME.conf`) in `/etc/systemd/system`.
    pub fn unit(self, name: &str, text: &str) -> MachineBuilder {
        write(&self.path("units").join(name), text.as_bytes(), 0o644);
        self
    }

    /// `systemctl enable` as done before the first boot: `TARGET.wants/UNIT`.
    pub fn enable(mut self, unit: &str, target: &str) -> MachineBuilder {
        self.enabled.push((unit.to_string(), target.to_string()));
        self
    }

    /// A file under `/etc` (e.g. `/etc/igel-update-agent/agent.toml`), mode 0600 for files
    /// that hold secrets and 0644 otherwise.
    pub fn etc_file(self, path: &str, contents: &str, mode: u32) -> MachineBuilder {
        let rest = path
            .strip_prefix("/etc/")
            .unwrap_or_else(|| panic!("{path} is not under /etc"));
        write(
            &self.path("etc-upper").join(rest),
            contents.as_bytes(),
            mode,
        );
        self
    }

    /// A file the machine sees as `/mnt/host/NAME` (read and write).
    pub fn share(self, name: &str, from: &Path) -> MachineBuilder {
        let to = self.path("share").join(name);
        fs::copy(from, &to)
            .unwrap_or_else(|e| panic!("cannot copy {} to {}: {e}", from.display(), to.display()));
        self
    }

    /// The host's package database (`/var/lib/dpkg`) in the machine's `/var`, so that `dpkg`
    /// in the machine knows what its `/usr` (the host's) holds and can install a package.
    pub fn host_packages(self) -> MachineBuilder {
        let to = self.path("var/lib");
        fs::create_dir_all(&to).expect("cannot create /var/lib");
        let status = Command::new("cp")
            .args(["-a", "/var/lib/dpkg"])
            .arg(&to)
            .status()
            .expect("cannot run cp");
        assert!(
            status.success(),
            "cannot copy /var/lib/dpkg into the machine"
        );
        self
    }

    fn path(&self, rest: &str) -> PathBuf {
        self.work.path().join(rest)
    }

    /// Boots the machine and waits until systemd says it is `running` (or `degraded`, which
    /// the test then explains from the journal).
    pub fn boot(self) -> Machine {
        for (unit, target) in &self.enabled {
            let wants = self.path("units").join(format!("{target}.wants"));
            fs::create_dir_all(&wants).expect("cannot create a .wants directory");
            let link = wants.join(unit);
            if !link.exists() {
                std::os::unix::fs::symlink(format!("/etc/systemd/system/{unit}"), &link)
                    .expect("cannot enable a unit");
            }
        }
        let mut machine = Machine {
            work: self.work,
            cgroup: new_cgroup(),
            unshare: None,
            pid: 0,
            boots: Vec::new(),
        };
        machine.start();
        machine
    }
}

/// A running (or powered-off) machine; dropped, it is killed and leaves nothing behind.
pub struct Machine {
    work: tempfile::TempDir,
    cgroup: PathBuf,
    unshare: Option<Child>,
    pid: u32,
    boots: Vec<Duration>,
}

impl Machine {
    /// An empty machine: systemd and the host's `/usr`, nothing enabled.
    pub fn builder() -> MachineBuilder {
        let work = tempfile::Builder::new()
            .prefix("igel-test-machine-")
            .tempdir_in(machine_parent())
            .expect("cannot create the machine's directory");
        fs::set_permissions(work.path(), fs::Permissions::from_mode(0o755))
            .expect("cannot chmod the machine's directory");
        for dir in [
            "root",
            "etc-upper",
            "etc-work",
            "units",
            "usr-add/bin",
            "usr-upper",
            "usr-work",
            "share",
            "var/log/journal",
        ] {
            fs::create_dir_all(work.path().join(dir)).expect("cannot lay out the machine");
        }
        std::os::unix::fs::symlink("../run", work.path().join("var/run"))
            .expect("cannot link /var/run");
        let builder = MachineBuilder {
            work,
            enabled: Vec::new(),
        };
        write(&builder.path("console.log"), b"", 0o644);
        write(&builder.path("etc-upper/fstab"), b"", 0o644);
        write(&builder.path("etc-upper/hostname"), b"igel-it\n", 0o644);
        let machine_id = format!("{:032x}", rand_u128());
        write(
            &builder.path("etc-upper/machine-id"),
            format!("{machine_id}\n").as_bytes(),
            0o444,
        );
        // /dev/console is a plain file here: a getty on it would only spin.
        std::os::unix::fs::symlink("/dev/null", builder.path("units/console-getty.service"))
            .expect("cannot mask console-getty.service");
        builder
    }

    fn start(&mut self) {
        assert!(self.unshare.is_none(), "the machine is already running");
        fs::create_dir(&self.cgroup).unwrap_or_else(|e| {
            panic!(
                "cannot create the cgroup {}: {e} (the systemd tests need root and cgroup2)",
                self.cgroup.display()
            )
        });
        let stage2 = self.work.path().join("stage2");
        write(&stage2, STAGE2.as_bytes(), 0o755);
        let boot_log =
            fs::File::create(self.work.path().join("boot.log")).expect("cannot create boot.log");
        let started = Instant::now();
        let child = Command::new("unshare")
            .args(["--mount", "--pid", "--fork", "--uts", "--ipc", "--net"])
            .arg("--kill-child")
            .arg("sh")
            .arg(&stage2)
            .arg(self.work.path())
            .arg(&self.cgroup)
            .stdin(Stdio::null())
            .stdout(boot_log.try_clone().expect("cannot dup boot.log"))
            .stderr(boot_log)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run unshare (util-linux): {e}"));
        let unshare_pid = child.id();
        self.unshare = Some(child);
        // The child of unshare becomes systemd once stage 2 has exec'd it.
        let deadline = Instant::now() + BOOT_TIMEOUT;
        self.pid = loop {
            if let Some(pid) = child_named(unshare_pid, "systemd") {
                break pid;
            }
            if let Some(status) = self.exited() {
                panic!(
                    "the machine did not boot: unshare exited with {status}; boot.log:\n{}\n\
                     (the systemd tests need root with CAP_SYS_ADMIN and cgroup2)",
                    self.boot_log()
                );
            }
            if Instant::now() >= deadline {
                panic!(
                    "systemd did not start within {BOOT_TIMEOUT:?}; boot.log:\n{}",
                    self.boot_log()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        while !self
            .exec(&["test", "-S", "/run/systemd/private"])
            .status
            .success()
        {
            if Instant::now() >= deadline {
                panic!(
                    "systemd (pid {}) never opened /run/systemd/private; boot.log:\n{}",
                    self.pid,
                    self.boot_log()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let state = self.exec(&[
            "timeout",
            &BOOT_TIMEOUT.as_secs().to_string(),
            "systemctl",
            "is-system-running",
            "--wait",
        ]);
        let state = String::from_utf8_lossy(&state.stdout).trim().to_string();
        if state != "running" {
            panic!(
                "the machine booted into {state:?}, not \"running\"; failed units:\n{}\njournal:\n{}",
                self.stdout(&["systemctl", "--failed", "--no-legend", "--plain"]),
                self.stdout(&["journalctl", "-b", "--no-pager", "-n", "100"])
            );
        }
        let took = started.elapsed();
        eprintln!(
            "machine {}: boot {} running after {} ms",
            self.work.path().display(),
            self.boots.len() + 1,
            took.as_millis()
        );
        self.boots.push(took);
    }

    /// How long each boot took until `running`.
    pub fn boot_times(&self) -> &[Duration] {
        &self.boots
    }

    /// What the machine holds on the host while it runs: PID 1 as the host sees it, its
    /// cgroup and its directory (every mount of the machine is under it or in its own
    /// namespace). For the check that nothing is left behind.
    pub fn footprint(&self) -> (u32, PathBuf, PathBuf) {
        (
            self.pid,
            self.cgroup.clone(),
            self.work.path().to_path_buf(),
        )
    }

    /// `/var` of the machine, seen from the host (it outlives a reboot).
    pub fn var(&self) -> PathBuf {
        self.work.path().join("var")
    }

    /// `/var/lib/igel-update-agent`, seen from the host.
    pub fn state_dir(&self) -> PathBuf {
        self.var().join("lib/igel-update-agent")
    }

    /// Runs `argv` inside every namespace of the machine.
    pub fn exec(&self, argv: &[&str]) -> Output {
        self.command(argv)
            .output()
            .unwrap_or_else(|e| panic!("cannot run nsenter: {e}"))
    }

    /// `argv` inside the machine as a command to adjust before running.
    pub fn command(&self, argv: &[&str]) -> Command {
        let mut cmd = Command::new("nsenter");
        cmd.arg("-t")
            .arg(self.pid.to_string())
            .arg("-a")
            .arg("--")
            .args(argv)
            .env("SYSTEMD_PAGER", "")
            .env("SYSTEMD_COLORS", "0")
            .stdin(Stdio::null());
        cmd
    }

    /// Runs `argv` inside the machine; it must succeed. Returns its stdout.
    #[track_caller]
    pub fn stdout(&self, argv: &[&str]) -> String {
        let out = self.exec(argv);
        assert!(
            out.status.success(),
            "{argv:?} in the machine failed with {}:\n{}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// `systemctl ARGS` inside the machine; it must succeed.
    #[track_caller]
    pub fn systemctl(&self, args: &[&str]) -> String {
        let mut argv = vec!["systemctl"];
        argv.extend_from_slice(args);
        self.stdout(&argv)
    }

    /// One property of a unit (`systemctl show -P`).
    pub fn property(&self, unit: &str, property: &str) -> String {
        self.systemctl(&["show", "-P", property, unit])
            .trim_end_matches('\n')
            .to_string()
    }

    /// Waits until a unit's property has the value `expected`; panics with the unit's status
    /// and journal otherwise.
    #[track_caller]
    pub fn wait_for_property(&self, unit: &str, property: &str, expected: &str, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        let mut seen = Vec::new();
        loop {
            let value = self.property(unit, property);
            if value == expected {
                return;
            }
            if seen.last() != Some(&value) {
                seen.push(value);
            }
            if Instant::now() >= deadline {
                panic!(
                    "{unit}: {property} did not become {expected:?} within {timeout:?} (seen: \
                     {seen:?})\n{}",
                    self.explain(unit)
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// `systemctl status` and the unit's journal, for a failure message.
    pub fn explain(&self, unit: &str) -> String {
        let status = self.exec(&["systemctl", "status", "--no-pager", "-n", "0", unit]);
        let journal = self.exec(&["journalctl", "-b", "--no-pager", "-u", unit, "-n", "60"]);
        format!(
            "--- systemctl status {unit}\n{}--- journalctl -u {unit}\n{}",
            String::from_utf8_lossy(&status.stdout),
            String::from_utf8_lossy(&journal.stdout)
        )
    }

    /// The journal entries of `unit` in this boot (`journalctl -o json`), oldest first.
    pub fn journal(&self, unit: &str) -> Vec<Value> {
        self.journal_args(&["-b", "-u", unit])
    }

    /// `journalctl -o json ARGS`, one value per entry.
    pub fn journal_args(&self, args: &[&str]) -> Vec<Value> {
        let mut argv = vec!["journalctl", "--no-pager", "-o", "json"];
        argv.extend_from_slice(args);
        let out = self.exec(&argv);
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|line| serde_json::from_str(line).ok())
            .collect()
    }

    /// The messages of `unit` in this boot.
    pub fn messages(&self, unit: &str) -> Vec<String> {
        self.journal(unit)
            .iter()
            .filter_map(|e| e["MESSAGE"].as_str().map(str::to_string))
            .collect()
    }

    /// Waits until a message of `unit` in this boot contains `needle`.
    #[track_caller]
    pub fn wait_for_message(&self, unit: &str, needle: &str, timeout: Duration) -> String {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(found) = self.messages(unit).into_iter().find(|m| m.contains(needle)) {
                return found;
            }
            if Instant::now() >= deadline {
                panic!(
                    "{unit} never logged {needle:?} within {timeout:?}\n{}",
                    self.explain(unit)
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Writes a file inside the machine (as root, through its own mount namespace).
    #[track_caller]
    pub fn write_file(&self, path: &str, contents: &str, mode: u32) {
        let script = format!(
            "mkdir -p \"$(dirname '{path}')\" && cat > '{path}' && chmod {mode:o} '{path}'"
        );
        let mut child = self
            .command(&["sh", "-c", &script])
            .stdin(Stdio::piped())
            .spawn()
            .expect("cannot run nsenter");
        use std::io::Write;
        child
            .stdin
            .take()
            .expect("stdin is piped")
            .write_all(contents.as_bytes())
            .expect("cannot write to the machine");
        let status = child.wait().expect("cannot wait for nsenter");
        assert!(status.success(), "cannot write {path} in the machine");
    }

    /// Starts `cmd` (a server for the machine) in the machine's network namespace only: it
    /// sees the host's files and the machine's loopback. It is killed when the returned value
    /// is dropped (before the machine is: declare it after the machine).
    pub fn spawn_in_net(&self, program: &Path, args: &[&str]) -> NetProcess {
        let child = Command::new("nsenter")
            .arg("-t")
            .arg(self.pid.to_string())
            .arg("--net")
            .arg("--")
            .arg(program)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run nsenter: {e}"));
        NetProcess { child }
    }

    /// `systemctl poweroff`, then waits for PID 1 to exit; returns its exit status.
    pub fn poweroff(&mut self) -> i32 {
        // PID 1 may be gone before systemctl gets its answer: its status does not matter.
        let _ = self.exec(&["systemctl", "poweroff"]);
        self.wait_exit()
    }

    /// Waits for PID 1 to exit (after a poweroff or reboot it started itself); kills it after
    /// [`SHUTDOWN_TIMEOUT`]. Returns its exit status (`EXIT_REBOOT`, `EXIT_POWEROFF`).
    pub fn wait_exit(&mut self) -> i32 {
        let deadline = Instant::now() + SHUTDOWN_TIMEOUT;
        loop {
            if let Some(status) = self.exited() {
                self.cleanup();
                // As a shell reports it: systemd ends the namespace with a signal (SIGINT
                // after poweroff, SIGHUP after reboot), which takes `unshare` along.
                use std::os::unix::process::ExitStatusExt;
                return status
                    .code()
                    .or(status.signal().map(|signal| 128 + signal))
                    .unwrap_or(-1);
            }
            if Instant::now() >= deadline {
                self.kill();
                panic!(
                    "the machine did not shut down within {SHUTDOWN_TIMEOUT:?}; killed. \
                     console:\n{}",
                    fs::read_to_string(self.work.path().join("console.log")).unwrap_or_default()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Boots the machine again on the same `/etc` and `/var` (after it shut down).
    pub fn boot_again(&mut self) {
        assert!(self.unshare.is_none(), "boot_again on a running machine");
        self.start();
    }

    fn exited(&mut self) -> Option<ExitStatus> {
        let child = self.unshare.as_mut()?;
        child.try_wait().expect("cannot wait for unshare")
    }

    fn boot_log(&self) -> String {
        fs::read_to_string(self.work.path().join("boot.log")).unwrap_or_default()
    }

    /// SIGKILL to `unshare`, which takes PID 1 (and so the whole PID namespace) along.
    fn kill(&mut self) {
        if let Some(mut child) = self.unshare.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        if self.pid != 0 {
            // In case unshare was gone already and PID 1 was not.
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(self.pid as i32),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
        self.cleanup();
    }

    /// Removes the machine's cgroup subtree once its processes are gone.
    fn cleanup(&mut self) {
        self.unshare = None;
        self.pid = 0;
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.cgroup.exists() {
            if remove_cgroup_tree(&self.cgroup).is_ok() || Instant::now() >= deadline {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Machine {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A server running in a machine's network namespace; killed when dropped.
pub struct NetProcess {
    child: Child,
}

impl NetProcess {
    /// Reads its stdout until a line contains `needle`; returns that line.
    pub fn wait_for_stdout_line(&mut self, needle: &str) -> String {
        use std::io::BufRead;
        let stdout = self.child.stdout.take().expect("stdout is piped");
        let mut lines = std::io::BufReader::new(stdout).lines();
        for line in lines.by_ref() {
            let line = line.expect("cannot read the server's stdout");
            if line.contains(needle) {
                // Keep draining in the background so the server never blocks on a full pipe.
                std::thread::spawn(move || lines.for_each(drop));
                return line;
            }
        }
        panic!("the server ended before printing {needle:?}");
    }
}

impl Drop for NetProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Where machines are made: not on a tmpfs /tmp that a test may fill, but any local directory
/// works (overlay upper layers are fine on tmpfs too).
fn machine_parent() -> PathBuf {
    std::env::temp_dir()
}

/// The host's cgroup2 mount (unified, or the `unified` part of a hybrid layout).
fn cgroup2_root() -> PathBuf {
    for candidate in ["/sys/fs/cgroup", "/sys/fs/cgroup/unified"] {
        if nix::sys::statfs::statfs(candidate)
            .is_ok_and(|s| s.filesystem_type() == nix::sys::statfs::CGROUP2_SUPER_MAGIC)
        {
            return PathBuf::from(candidate);
        }
    }
    panic!(
        "no cgroup2 file system at /sys/fs/cgroup or /sys/fs/cgroup/unified: systemd cannot \
         run as PID 1 in a namespace without it"
    );
}

fn new_cgroup() -> PathBuf {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    cgroup2_root().join(format!(
        "igel-it-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    ))
}

/// `rmdir` of a cgroup tree, deepest first (a cgroup with children or processes is busy).
fn remove_cgroup_tree(dir: &Path) -> std::io::Result<()> {
    if let Ok(entries) = fs::read_dir(dir) {
        for entry in entries.flatten() {
            if entry.file_type().is_ok_and(|t| t.is_dir()) {
                remove_cgroup_tree(&entry.path())?;
            }
        }
    }
    fs::remove_dir(dir)
}

/// The pid of a child of `parent` whose command name is `name` (from `/proc/*/stat`, as
/// `pgrep -P` finds it).
fn child_named(parent: u32, name: &str) -> Option<u32> {
    fs::read_dir("/proc").ok()?.flatten().find_map(|entry| {
        let pid: u32 = entry.file_name().to_str()?.parse().ok()?;
        let stat = fs::read_to_string(entry.path().join("stat")).ok()?;
        // pid (comm) state ppid ...: comm may hold spaces and parentheses.
        let (head, tail) = stat.rsplit_once(") ")?;
        let comm = head.split_once(" (")?.1;
        let ppid: u32 = tail.split_whitespace().nth(1)?.parse().ok()?;
        (ppid == parent && comm == name).then_some(pid)
    })
}

fn write(path: &Path, contents: &[u8], mode: u32) {
    if let Some(parent) = path.parent() {
        fs::create_dir_all(parent)
            .unwrap_or_else(|e| panic!("cannot create {}: {e}", parent.display()));
    }
    fs::write(path, contents).unwrap_or_else(|e| panic!("cannot write {}: {e}", path.display()));
    fs::set_permissions(path, fs::Permissions::from_mode(mode))
        .unwrap_or_else(|e| panic!("cannot chmod {}: {e}", path.display()));
}

fn rand_u128() -> u128 {
    let mut bytes = [0u8; 16];
    let mut file = fs::File::open("/dev/urandom").expect("cannot open /dev/urandom");
    std::io::Read::read_exact(&mut file, &mut bytes).expect("cannot read /dev/urandom");
    u128::from_le_bytes(bytes)
}
