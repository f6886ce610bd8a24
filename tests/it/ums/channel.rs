//! The UMS channel (DESIGN 10, docs/protocol.md) end to end: the daemon as a real process,
//! the UMS stand-in (tests/it/support/ums.rs) with certificates generated here, and a real
//! Apache repository for the commands that transfer.

use std::time::Duration;

use crate::support::daemon::idf;
use crate::support::lifecycle::{APP, Repo};
use crate::support::{UmsPki, UmsStandIn};
use crate::ums::conf::UmsConf;
use serde_json::json;

const WAIT: Duration = Duration::from_secs(30);

#[test]
fn the_device_says_hello_takes_a_command_and_reports_events() {
    let repo = Repo::start();
    repo.add(APP, "1.0", false);
    let pki = UmsPki::new();
    let ums = UmsStandIn::start(&pki);
    let device = repo.daemon_device(&UmsConf::new(&pki, &[ums.url()]).toml());
    let _daemon = device.start();

    let hellos = ums.wait_hellos(1, WAIT);
    let hello = &hellos[0].json;
    assert_eq!(hello["hello"]["device_id"], "device-1", "{hello}");
    assert!(hello["hello"]["status"]["apps"].is_array(), "{hello}");

    ums.send(&json!({"id": "u1", "command": "update", "idf": idf(&[(APP, "1.0")])}));
    let reply = ums.wait_reply("u1", WAIT);
    assert_eq!(reply.json["result"], "accepted", "{}", reply.json);
    crate::support::wait_until("an installed event", WAIT, || {
        ums.events()
            .iter()
            .any(|e| e.json["app"] == APP && e.json["state"] == "installed")
    });
}

#[test]
fn a_stopping_daemon_closes_its_session_with_going_away() {
    let repo = Repo::start();
    let pki = UmsPki::new();
    let ums = UmsStandIn::start(&pki);
    let device = repo.daemon_device(&UmsConf::new(&pki, &[ums.url()]).toml());
    let mut daemon = device.start();
    ums.wait_hellos(1, WAIT);
    daemon.wait_for_log("UMS: connected to", WAIT);
    let status = device.agent().run(&["status"], WAIT);
    assert!(
        status
            .stdout
            .contains(&format!("UMS: connected to {} since ", ums.url())),
        "{}",
        status.stdout
    );

    daemon.signal(nix::sys::signal::Signal::SIGTERM);
    let out = daemon.wait_exit(WAIT);
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    let status = device.agent().run(&["status"], WAIT);
    assert!(
        status
            .stdout
            .contains("UMS: not connected (the daemon closed"),
        "{}",
        status.stdout
    );
    crate::support::wait_until("the close frame", WAIT, || {
        ums.log()
            .iter()
            .any(|l| l.contains("close frame from the device") && l.contains("Away"))
    });
}
