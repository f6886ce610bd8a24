//! `check` on the UMS channel (DESIGN 8, 10): the device's identity and client certificate,
//! each URL's way in (mutual TLS, the server's certificate, the upgrade; 503 is update mode),
//! and what the daemon's channel last saw (connected, clock difference). Real UMS stand-ins
//! with certificates generated here, a real Apache repository so that only the UMS findings
//! decide the exit code.

use std::time::Duration;

use crate::support::device::Device;
use crate::support::lifecycle::{APP, Repo};
use crate::support::{CertKey, UmsPki, UmsStandIn, Validity};
use crate::ums::conf::UmsConf;
use serde_json::Value;

const WAIT: Duration = Duration::from_secs(30);

/// `check --json`: exit code and findings.
fn check(device: &Device) -> (Option<i32>, Vec<Value>) {
    let out = device.agent().run(&["check", "--json"], WAIT);
    let doc: Value = serde_json::from_str(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "check --json is not JSON ({e}):\n{}\n{}",
            out.stdout, out.stderr
        )
    });
    (
        out.code,
        doc["findings"].as_array().cloned().unwrap_or_default(),
    )
}

/// The UMS findings (subject `ums` or `ums <url>`) with this check name.
fn ums_findings<'a>(findings: &'a [Value], check: &str) -> Vec<&'a Value> {
    findings
        .iter()
        .filter(|f| {
            f["subject"].as_str().is_some_and(|s| s.starts_with("ums")) && f["check"] == check
        })
        .collect()
}

#[track_caller]
fn one<'a>(findings: &'a [Value], check: &str) -> &'a Value {
    let found = ums_findings(findings, check);
    assert_eq!(
        found.len(),
        1,
        "one UMS {check} finding expected: {findings:#?}"
    );
    found[0]
}

/// The string `key` of a finding; panics if it has none.
#[track_caller]
fn text<'a>(finding: &'a Value, key: &str) -> &'a str {
    finding[key]
        .as_str()
        .unwrap_or_else(|| panic!("no {key} in {finding}"))
}

/// A repository with `APP` 1.0 and a device on `urls` that presents `client`, as `device-7`.
fn device_with(pki: &UmsPki, client: Option<&CertKey>, urls: &[String]) -> (Repo, Device) {
    let repo = Repo::start();
    repo.add(APP, "1.0", false);
    let ums = UmsConf::new(pki, urls).client(client).device_id("device-7");
    let device = repo.daemon_device(&ums.toml());
    (repo, device)
}

#[test]
fn a_reachable_ums_and_valid_certificates_are_ok() {
    let pki = UmsPki::new();
    let ums = UmsStandIn::start(&pki);
    let (_repo, device) = device_with(&pki, Some(&pki.device), &[ums.url()]);
    let (code, findings) = check(&device);
    let connect = one(&findings, "connect");
    assert_eq!(connect["level"], "OK", "{findings:#?}");
    assert!(text(connect, "subject").contains(&ums.url()), "{connect}");
    let server = one(&findings, "certificate");
    assert_eq!(server["level"], "OK", "{findings:#?}");
    assert!(text(server, "message").contains("valid until"), "{server}");
    let client = one(&findings, "client certificate");
    assert_eq!(client["level"], "OK", "{findings:#?}");
    assert!(
        text(client, "message").contains("the device's client certificate"),
        "{client}"
    );
    assert_eq!(one(&findings, "device id")["level"], "OK");
    assert!(text(one(&findings, "device id"), "message").contains("device-7"));
    // No daemon ran: nothing recorded, a warning, not a failure.
    assert_eq!(one(&findings, "daemon")["level"], "WARN", "{findings:#?}");
    assert_eq!(code, Some(0), "{findings:#?}");
    // The probe upgrades but does not say hello: the UMS does not see a device session.
    assert!(ums.upgrades() >= 1);
    assert!(
        ums.hellos().is_empty(),
        "check said hello: {:?}",
        ums.hellos()
    );
}

#[test]
fn a_ums_in_update_mode_fails_and_a_second_one_answering_makes_it_a_warning() {
    let pki = UmsPki::new();
    let busy = UmsStandIn::start(&pki);
    busy.answer_503();
    let (_repo, device) = device_with(&pki, Some(&pki.device), &[busy.url()]);
    let (code, findings) = check(&device);
    let connect = one(&findings, "connect");
    assert_eq!(connect["level"], "FAIL", "{findings:#?}");
    assert!(text(connect, "message").contains("503"), "{connect}");
    assert!(text(connect, "hint").contains("update mode"), "{connect}");
    assert_eq!(code, Some(1));

    let ok = UmsStandIn::start(&pki);
    let (_repo, device) = device_with(&pki, Some(&pki.device), &[busy.url(), ok.url()]);
    let (code, findings) = check(&device);
    let connects = ums_findings(&findings, "connect");
    assert_eq!(connects.len(), 2, "{findings:#?}");
    assert_eq!(connects[0]["level"], "WARN", "{findings:#?}");
    assert_eq!(connects[1]["level"], "OK", "{findings:#?}");
    assert_eq!(code, Some(0), "{findings:#?}");
}

#[test]
fn a_server_certificate_from_another_ca_fails_naming_ca_certificate() {
    let pki = UmsPki::new();
    let foreign = UmsStandIn::start_tls(&pki.foreign_server, &pki.ca);
    let (_repo, device) = device_with(&pki, Some(&pki.device), &[foreign.url()]);
    let (code, findings) = check(&device);
    let connect = one(&findings, "connect");
    assert_eq!(connect["level"], "FAIL", "{findings:#?}");
    assert!(
        text(connect, "message").contains("not trusted"),
        "{connect}"
    );
    assert!(
        text(connect, "hint").contains("ca_certificate"),
        "{connect}"
    );
    // Its dates are still read and shown.
    assert_eq!(
        one(&findings, "certificate")["level"],
        "OK",
        "{findings:#?}"
    );
    assert_eq!(code, Some(1));
}

#[test]
fn no_client_certificate_warns_and_the_refusal_is_explained() {
    let pki = UmsPki::new();
    let ums = UmsStandIn::start(&pki);
    let (_repo, device) = device_with(&pki, None, &[ums.url()]);
    let (code, findings) = check(&device);
    assert_eq!(
        one(&findings, "client certificate")["level"],
        "WARN",
        "{findings:#?}"
    );
    let connect = one(&findings, "connect");
    assert_eq!(connect["level"], "FAIL", "{findings:#?}");
    assert!(
        text(connect, "message").contains("client certificate"),
        "{connect}"
    );
    assert_eq!(code, Some(1));
}

#[test]
fn an_expired_client_certificate_fails_saying_when() {
    let pki = UmsPki::new();
    let ums = UmsStandIn::start(&pki);
    let expired = pki.ca.server_cert(&["test-device"], Validity::EXPIRED);
    let (_repo, device) = device_with(&pki, Some(&expired), &[ums.url()]);
    let (code, findings) = check(&device);
    let client = one(&findings, "client certificate");
    assert_eq!(client["level"], "FAIL", "{findings:#?}");
    assert!(text(client, "message").contains("expired on"), "{client}");
    assert_eq!(code, Some(1));
}

#[test]
fn the_daemons_connection_and_a_skewed_ums_clock_are_reported() {
    let pki = UmsPki::new();
    let ums = UmsStandIn::start(&pki);
    ums.set_clock_skew(3600);
    let (_repo, device) = device_with(&pki, Some(&pki.device), &[ums.url()]);
    let mut daemon = device.start();
    ums.wait_hellos(1, WAIT);
    daemon.wait_for_log("ahead of", WAIT);
    let (code, findings) = check(&device);
    let view = one(&findings, "daemon");
    assert_eq!(view["level"], "OK", "{findings:#?}");
    assert!(text(view, "message").contains("connected to"), "{view}");
    let clock = one(&findings, "clock");
    assert_eq!(clock["level"], "FAIL", "{findings:#?}");
    assert!(text(clock, "message").contains("ahead of"), "{clock}");
    assert_eq!(code, Some(1));
}
