//! The Debian package under a real systemd: `dpkg -i` in a machine that knows the host's
//! packages, the daemon comes up enabled and started, an update from a repository on the
//! machine's loopback works, `dpkg -r` stops it and keeps the state and the configuration,
//! and `dpkg -P` removes both (DESIGN 11; issue 13, items 5 and 6).

use super::lab::{
    ACTIVATE_UNIT, APP, PATIENCE, Repo, UNIT, app_status, follow_status_text, repository,
    send_update,
};
use crate::support::machine::{EXIT_POWEROFF, Machine};

const DEB: &str = "/mnt/host/igel-update-agent.deb";

#[test]
fn the_package_installs_runs_an_update_stops_on_remove_and_is_purged() {
    let deb = crate::support::package::build_deb();
    let repo = Repo::new();
    repo.add(APP, "1.0", 200_000, false);
    let mut machine = Machine::builder()
        .host_packages()
        .share("igel-update-agent.deb", &deb)
        .boot();
    assert!(
        !machine
            .exec(&["test", "-e", "/usr/bin/igel-update-agent"])
            .status
            .success(),
        "the machine starts without the agent"
    );
    // Build containers ship /usr/sbin/policy-rc.d saying "exit 101" so that packages never
    // start services there; the machine's /usr is the host's, and a thin client has no such
    // file. Without this, deb-systemd-invoke would (rightly) not start the daemon.
    machine.stdout(&["rm", "-f", "/usr/sbin/policy-rc.d"]);

    let installed = machine.exec(&["dpkg", "-i", DEB]);
    assert!(
        installed.status.success(),
        "dpkg -i failed:\n{}{}",
        String::from_utf8_lossy(&installed.stdout),
        String::from_utf8_lossy(&installed.stderr)
    );
    // The maintainer scripts enable both units and start the daemon, the Debian way.
    machine.wait_for_property(UNIT, "ActiveState", "active", PATIENCE);
    assert_eq!(machine.property(UNIT, "UnitFileState"), "enabled");
    assert_eq!(machine.property(ACTIVATE_UNIT, "UnitFileState"), "enabled");
    assert_eq!(
        machine.property(ACTIVATE_UNIT, "ActiveState"),
        "inactive",
        "the boot-time activation is not run by an installation"
    );
    assert_eq!(machine.property(UNIT, "StatusText"), "idle");
    machine.stdout(&["test", "-d", "/etc/igel-update-agent/agent.d"]);
    let conffiles = machine.stdout(&[
        "dpkg-query",
        "-W",
        "-f",
        "${Conffiles}",
        "igel-update-agent",
    ]);
    assert!(
        conffiles.contains("/etc/igel-update-agent/agent.toml"),
        "{conffiles}"
    );
    // The shipped default configuration is valid as it is.
    machine.stdout(&["igel-update-agent", "config", "check"]);

    // A repository through a drop-in, as an administrator adds one; then an update.
    let (_server, url) = repo.serve(&machine, None);
    machine.write_file(
        "/etc/igel-update-agent/agent.d/10-loopback.toml",
        &repository(&url),
        0o644,
    );
    machine.systemctl(&["reload", UNIT]);
    machine.wait_for_message(UNIT, "SIGHUP: configuration reloaded", PATIENCE);
    send_update(&machine, &[(APP, "1.0")], "update");
    follow_status_text(&machine, "Update successful");
    assert_eq!(app_status(&machine, APP)["active_version"], "1.0");

    // Remove: the daemon stops, the state and the configuration stay.
    machine.stdout(&["dpkg", "-r", "igel-update-agent"]);
    assert_eq!(machine.property(UNIT, "ActiveState"), "inactive");
    assert!(
        machine.state_dir().join("state.json").is_file(),
        "remove keeps the state"
    );
    assert!(
        machine
            .state_dir()
            .join(format!("apps/{APP}/1.0/payload.bin"))
            .is_file(),
        "remove keeps the apps"
    );
    machine.stdout(&["test", "-f", "/etc/igel-update-agent/agent.toml"]);
    assert!(
        !machine
            .exec(&["test", "-e", "/usr/bin/igel-update-agent"])
            .status
            .success(),
        "the binary is gone"
    );

    // Purge: the state and the configuration go too.
    machine.stdout(&["dpkg", "-P", "igel-update-agent"]);
    assert!(
        !machine.state_dir().exists(),
        "purge removes /var/lib/igel-update-agent"
    );
    assert!(
        !machine
            .exec(&["test", "-e", "/etc/igel-update-agent/agent.toml"])
            .status
            .success(),
        "purge removes the conffile"
    );
    assert_eq!(machine.poweroff(), EXIT_POWEROFF);
}
