//! Who may talk to whom on the UMS channel (DESIGN 10, docs/protocol.md "UMS channel", step 1):
//! mutual TLS where the server's certificate must chain to `[ums] ca_certificate` and the
//! server demands the device's client certificate, and the `allow_insecure` escape hatch for
//! tests (`ws://`, any server certificate) that is refused unless asked for and warned about
//! at every start.
//!
//! The daemon runs as a real process against the UMS stand-in (tests/support/ums.rs); every
//! refusal is asserted on both ends: the stand-in never records a hello, and the daemon's log
//! says why in words an administrator can act on.

mod daemon_common;
mod lifecycle_common;
mod support;
mod transfer_common;

use std::time::Duration;

use daemon_common::{Daemon, Device};
use lifecycle_common::Repo;
use support::{CertKey, UmsPki, UmsStandIn};
use transfer_common::path_str;

const WAIT: Duration = Duration::from_secs(30);
const ALLOW_INSECURE_WARNING: &str = "allow_insecure = true";

/// The TLS side of an `[ums]` table; the URLs and `device_id` are added by [`ums_section`].
struct UmsTls<'a> {
    /// `ca_certificate`, if any.
    ca: Option<&'a str>,
    /// `client_certificate` and `client_key`, if any.
    client: Option<&'a CertKey>,
    allow_insecure: bool,
}

impl<'a> UmsTls<'a> {
    /// What a production device has: the UMS CA and a client certificate from it.
    fn proper(pki: &'a UmsPki) -> UmsTls<'a> {
        UmsTls {
            ca: pki.ca.cert_path().to_str(),
            client: Some(&pki.device),
            allow_insecure: false,
        }
    }
}

/// `[ums]` lines for `urls` with the TLS settings `tls`.
fn ums_section(urls: &[String], tls: &UmsTls<'_>) -> String {
    let mut text = format!("\n[ums]\nurls = {urls:?}\ndevice_id = \"device-1\"\n");
    if let Some(ca) = tls.ca {
        text += &format!("ca_certificate = {ca:?}\n");
    }
    if let Some(client) = tls.client {
        text += &format!(
            "client_certificate = {:?}\nclient_key = {:?}\n",
            path_str(&client.cert_path),
            path_str(&client.key_path)
        );
    }
    if tls.allow_insecure {
        text += "allow_insecure = true\n";
    }
    text
}

/// Waits until the daemon has given up on `url` at least once and returns its log.
#[track_caller]
fn wait_for_failure(daemon: &mut Daemon, url: &str) -> String {
    daemon.wait_for_log(&format!("UMS {url}: "), WAIT);
    daemon.wait_for_log("; trying the next server", WAIT);
    daemon.stderr()
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
    let tls = UmsTls {
        client: None,
        ..UmsTls::proper(&pki)
    };
    let device = Device::new(&repo, &ums_section(&[ums.url()], &tls));
    let mut daemon = device.start();

    daemon.wait_for_log("[ums] has no client_certificate", WAIT);
    let errors = ums.wait_handshake_errors(1, WAIT);
    assert!(
        errors.iter().all(|e| e.starts_with("tls: ")),
        "the stand-in should refuse at the TLS handshake: {errors:?}"
    );
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
    let tls = UmsTls {
        client: Some(&pki.foreign_device),
        ..UmsTls::proper(&pki)
    };
    let device = Device::new(&repo, &ums_section(&[ums.url()], &tls));
    let mut daemon = device.start();

    let errors = ums.wait_handshake_errors(1, WAIT);
    assert!(
        errors.iter().all(|e| e.starts_with("tls: ")),
        "the stand-in should refuse at the TLS handshake: {errors:?}"
    );
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
    let device = Device::new(&repo, &ums_section(&[ums.url()], &UmsTls::proper(&pki)));
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
    let device = Device::new(&repo, &ums_section(&[ums.url()], &UmsTls::proper(&pki)));

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
    let tls = UmsTls {
        ca: None,
        client: None,
        allow_insecure: true,
    };
    let device = Device::new(&repo, &ums_section(&[ums.url()], &tls));

    device
        .agent()
        .run(&["config", "check"], WAIT)
        .assert_success();
    let mut daemon = device.start();
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
    let tls = UmsTls {
        allow_insecure: true,
        ..UmsTls::proper(&pki)
    };
    let device = Device::new(&repo, &ums_section(&[ums.url()], &tls));
    let mut daemon = device.start();

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
    let device = Device::new(&repo, &ums_section(&[ums.url()], &UmsTls::proper(&pki)));
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
