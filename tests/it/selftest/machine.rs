//! The systemd machine of `support::machine`: it boots, powers off with the status systemd
//! gives, reboots with a new boot id on the same `/var`, and leaves nothing behind.

use std::time::Duration;

use crate::support::machine::{EXIT_POWEROFF, EXIT_REBOOT, Machine};

/// Whether anything of the machine is still on the host: a process, its cgroup, a mount.
fn leftovers(pid: u32, cgroup: &std::path::Path, work: &std::path::Path) -> Vec<String> {
    let mut found = Vec::new();
    if std::path::Path::new(&format!("/proc/{pid}")).exists() {
        found.push(format!("process {pid}"));
    }
    if cgroup.exists() {
        found.push(format!("cgroup {}", cgroup.display()));
    }
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let work = work.to_string_lossy();
    found.extend(
        mounts
            .lines()
            .filter(|l| l.contains(work.as_ref()))
            .map(|l| format!("mount {l}")),
    );
    found
}

#[test]
fn a_machine_boots_reboots_powers_off_and_leaves_nothing_behind() {
    let mut machine = Machine::builder().boot();
    assert_eq!(machine.stdout(&["cat", "/proc/1/comm"]).trim(), "systemd");
    assert_eq!(machine.stdout(&["hostname"]).trim(), "igel-it");
    let first_boot = machine.stdout(&["cat", "/proc/sys/kernel/random/boot_id"]);
    machine.stdout(&["sh", "-c", "echo kept > /var/lib/kept"]);
    let (pid, cgroup, work) = machine.footprint();

    machine.systemctl(&["reboot"]);
    assert_eq!(machine.wait_exit(), EXIT_REBOOT);
    assert_eq!(leftovers(pid, &cgroup, &work), Vec::<String>::new());
    machine.boot_again();
    let second_boot = machine.stdout(&["cat", "/proc/sys/kernel/random/boot_id"]);
    assert_ne!(
        first_boot, second_boot,
        "every boot has a boot id of its own"
    );
    assert_eq!(machine.stdout(&["cat", "/var/lib/kept"]).trim(), "kept");
    let boots = machine.stdout(&["journalctl", "--list-boots", "--no-pager", "-q"]);
    assert_eq!(
        boots.lines().count(),
        2,
        "the journal knows both boots:\n{boots}"
    );

    let (pid, cgroup, work) = machine.footprint();
    assert_eq!(machine.poweroff(), EXIT_POWEROFF);
    assert_eq!(leftovers(pid, &cgroup, &work), Vec::<String>::new());
    assert_eq!(machine.boot_times().len(), 2);
}

#[test]
fn a_machine_dropped_while_running_is_killed_and_leaves_nothing_behind() {
    let machine = Machine::builder().boot();
    let (pid, cgroup, work) = machine.footprint();
    machine.stdout(&["systemd-run", "--unit", "lingering", "sleep", "1000"]);
    drop(machine);
    crate::support::wait_until("the machine to be gone", Duration::from_secs(10), || {
        leftovers(pid, &cgroup, &work).is_empty()
    });
    assert!(!work.exists(), "its directory is removed");
}
