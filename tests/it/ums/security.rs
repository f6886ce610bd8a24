//! Who may talk to whom on the UMS channel (DESIGN 10, docs/protocol.md "UMS channel", step 1):
//! mutual TLS where the server's certificate must chain to `[ums] ca_certificate` and the
//! server demands the device's client certificate, and the `allow_insecure` escape hatch for
//! tests (`ws://`, any server certificate) that is refused unless asked for and warned about
//! at every start.
//!
//! The daemon runs as a real process against the UMS stand-in (tests/it/support/ums.rs); every
//! refusal is asserted on both ends: the stand-in never records a hello, and the daemon's log
//! says why in words an administrator can act on.

use std::time::Duration;

use crate::support::daemon::Daemon;
use crate::support::device::path_str;
use crate::support::lifecycle::Repo;
use crate::support::{UmsPki, UmsStandIn};
use crate::ums::conf::UmsConf;

const WAIT: Duration = Duration::from_secs(30);
const ALLOW_INSECURE_WARNING: &str = "allow_insecure = true";

/// Waits until the daemon has given up on `url` at least once and returns its log.
#[track_caller]
fn wait_for_failure(daemon: &mut Daemon, url: &str) -> String {
    daemon.wait_for_log(&format!("UMS {url}: "), WAIT);
    daemon.wait_for_log("; trying the next server", WAIT);
    daemon.stderr()
}

/// Waits until the stand-in has refused the device; panics unless it refused at the TLS
/// handshake.
#[track_caller]
fn wait_tls_refusal(ums: &UmsStandIn) {
    let errors = ums.wait_handshake_errors(1, WAIT);
    assert!(
        errors.iter().all(|e| e.starts_with("tls: ")),
        "the stand-in should refuse at the TLS handshake: {errors:?}"
    );
}

/// Waits for the device's hello at `ums` and the daemon's line that it is connected; panics
/// unless the hello names `device-1`.
#[track_caller]
fn wait_connected_as_device_1(ums: &UmsStandIn, daemon: &mut Daemon) {
    let hellos = ums.wait_hellos(1, WAIT);
    assert_eq!(
        hellos[0].json["hello"]["device_id"], "device-1",
        "{}",
        hellos[0].json
    );
    daemon.wait_for_log(
        &format!("UMS: connected to {} as device-1", ums.url()),
        WAIT,
    );
}

/// The log lines that report a failed attempt on `url`.
fn failure_lines(log: &str, url: &str) -> Vec<String> {
    let prefix = format!("UMS {url}: ");
    log.lines()
        .filter(|l| l.contains(&prefix) && l.contains("trying the next server"))
        .map(str::to_string)
        .collect()
}

/// Panics unless the stand-in saw no hello and completed no upgrade, and the daemon is alive.
#[track_caller]
fn assert_never_greeted(ums: &UmsStandIn, daemon: &mut Daemon) {
    assert!(ums.hellos().is_empty(), "hellos: {:?}", ums.hellos());
    assert_eq!(ums.upgrades(), 0, "stand-in log: {:#?}", ums.log());
    assert!(
        !daemon.stderr().contains("UMS: connected to"),
        "{}",
        daemon.stderr()
    );
    assert!(
        daemon.is_running(),
        "a refused channel ended the daemon\n{}",
        daemon.stderr()
    );
}

#[test]
fn without_a_client_certificate_the_ums_refuses_the_device_and_the_log_says_why() {
    let repo = Repo::start();
    let pki = UmsPki::new();
    let ums = UmsStandIn::start(&pki);
    let conf = UmsConf::new(&pki, &[ums.url()]).client(None);
    let device = repo.daemon_device(&conf.toml());
    let mut daemon = device.start();

    daemon.wait_for_log("[ums] has no client_certificate", WAIT);
    wait_tls_refusal(&ums);
    let log = wait_for_failure(&mut daemon, &ums.url());
    let lines = failure_lines(&log, &ums.url());
    assert!(
        lines
            .iter()
            .any(|l| l.contains("client certificate")
                && l.contains("client_certificate and client_key")),
        "the failure must say the server wants a client certificate and which keys to set:\n{log}"
    );
    assert_never_greeted(&ums, &mut daemon);
}

#[test]
fn a_client_certificate_from_another_ca_is_refused_and_the_log_says_so() {
    let repo = Repo::start();
    let pki = UmsPki::new();
    let ums = UmsStandIn::start(&pki);
    let conf = UmsConf::new(&pki, &[ums.url()]).client(Some(&pki.foreign_device));
    let device = repo.daemon_device(&conf.toml());
    let mut daemon = device.start();

    wait_tls_refusal(&ums);
    let log = wait_for_failure(&mut daemon, &ums.url());
    let lines = failure_lines(&log, &ums.url());
    assert!(
        lines
            .iter()
            .any(|l| l.contains("refused the device's client certificate")),
        "the failure must say the client certificate was refused:\n{log}"
    );
    assert!(
        !log.contains("[ums] has no client_certificate"),
        "a configured client certificate was reported missing:\n{log}"
    );
    assert_never_greeted(&ums, &mut daemon);
}

#[test]
fn a_server_certificate_from_another_ca_is_not_trusted() {
    let repo = Repo::start();
    let pki = UmsPki::new();
    let ums = UmsStandIn::start_tls(&pki.foreign_server, &pki.ca);
    let device = repo.daemon_device(&UmsConf::new(&pki, &[ums.url()]).toml());
    let mut daemon = device.start();

    let log = wait_for_failure(&mut daemon, &ums.url());
    let lines = failure_lines(&log, &ums.url());
    assert!(
        lines
            .iter()
            .any(|l| l.contains("not trusted") && l.contains("ca_certificate")),
        "the failure must say the server is not trusted and name ca_certificate:\n{log}"
    );
    // The device aborts the handshake itself; the stand-in sees it fail.
    ums.wait_handshake_errors(1, WAIT);
    assert_never_greeted(&ums, &mut daemon);
}

#[test]
fn a_ws_url_without_allow_insecure_is_a_configuration_error() {
    let repo = Repo::start();
    let pki = UmsPki::new();
    let ums = UmsStandIn::start_plain();
    let device = repo.daemon_device(&UmsConf::new(&pki, &[ums.url()]).toml());

    let check = device.agent().run(&["config", "check"], WAIT);
    check.assert_code(2);
    for needle in ["ums.urls", "ws://", &path_str(device.agent().config())] {
        assert!(
            check.stderr.contains(needle),
            "`config check` must name {needle:?}:\n{}",
            check.stderr
        );
    }

    let run = device.agent().run(&["run"], WAIT);
    run.assert_code(2);
    assert!(
        run.stderr.contains("ums.urls") && run.stderr.contains("ws://"),
        "`run` must say why it did not start:\n{}",
        run.stderr
    );
    assert_eq!(ums.connections(), 0, "stand-in log: {:#?}", ums.log());
}

#[test]
fn allow_insecure_permits_plain_ws_and_is_warned_at_start() {
    let repo = Repo::start();
    let ums = UmsStandIn::start_plain();
    let conf = UmsConf::without_certificates(&[ums.url()]).extra("allow_insecure = true\n");
    let device = repo.daemon_device(&conf.toml());

    device
        .agent()
        .run(&["config", "check"], WAIT)
        .assert_success();
    let mut daemon = device.start();
    wait_connected_as_device_1(&ums, &mut daemon);
    assert!(
        daemon.stderr().contains(ALLOW_INSECURE_WARNING),
        "allow_insecure must be warned about at start:\n{}",
        daemon.stderr()
    );
}

#[test]
fn allow_insecure_accepts_a_server_certificate_from_another_ca_and_is_warned_at_start() {
    let repo = Repo::start();
    let pki = UmsPki::new();
    let ums = UmsStandIn::start_tls(&pki.foreign_server, &pki.ca);
    let conf = UmsConf::new(&pki, &[ums.url()]).extra("allow_insecure = true\n");
    let device = repo.daemon_device(&conf.toml());
    let mut daemon = device.start();

    wait_connected_as_device_1(&ums, &mut daemon);
    let log = daemon.stderr();
    assert!(
        log.contains(ALLOW_INSECURE_WARNING),
        "allow_insecure must be warned about at start:\n{log}"
    );
    assert!(
        failure_lines(&log, &ums.url()).is_empty(),
        "verification is off, yet an attempt failed:\n{log}"
    );
    assert!(
        ums.handshake_errors().is_empty(),
        "{:?}",
        ums.handshake_errors()
    );
}

#[test]
fn with_the_ums_ca_and_its_client_certificate_the_device_connects_without_warnings() {
    // The counterpart of the refusals above: with the proper CA and client certificate the
    // device connects, and nothing warns about insecurity or a missing client certificate.
    let repo = Repo::start();
    let pki = UmsPki::new();
    let ums = UmsStandIn::start(&pki);
    let device = repo.daemon_device(&UmsConf::new(&pki, &[ums.url()]).toml());
    let mut daemon = device.start();

    ums.wait_hellos(1, WAIT);
    daemon.wait_for_log(
        &format!("UMS: connected to {} as device-1", ums.url()),
        WAIT,
    );
    let log = daemon.stderr();
    assert!(!log.contains(ALLOW_INSECURE_WARNING), "{log}");
    assert!(!log.contains("[ums] has no client_certificate"), "{log}");
    assert!(
        ums.handshake_errors().is_empty(),
        "{:?}",
        ums.handshake_errors()
    );
}
