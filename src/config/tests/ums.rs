//! `[ums]`: the channel's URLs, certificates and heartbeat.

use super::*;

#[test]
fn ums_urls_must_be_wss_unless_insecure_is_allowed() {
    let d = Dir::new();
    let ums = "[ums]\nca_certificate = \"/ca.pem\"\n";
    let err = d
        .load(&d.write("a.toml", &format!("{ums}urls = [\"ws://ums:8080/x\"]\n")))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("a.toml") && err.contains("ums.urls") && err.contains("ws://"),
        "{err}"
    );
    let err = d
        .load(&d.write("b.toml", &format!("{ums}urls = [\"https://ums/x\"]\n")))
        .unwrap_err()
        .to_string();
    assert!(err.contains("ums.urls") && err.contains("https"), "{err}");
    let s = d
        .load(&d.write(
            "c.toml",
            &format!("{ums}urls = [\"ws://ums:8080/x\"]\nallow_insecure = true\n"),
        ))
        .unwrap();
    let ums = s.ums().expect("urls given");
    assert!(ums.allow_insecure);
    assert_eq!(ums.heartbeat, std::time::Duration::from_secs(30));
}

#[test]
fn ums_needs_its_ca_and_certificate_and_key_together() {
    let d = Dir::new();
    let err = d
        .load(&d.write("a.toml", "[ums]\nurls = [\"wss://ums/x\"]\n"))
        .unwrap_err()
        .to_string();
    assert!(err.contains("ums.ca_certificate"), "{err}");
    let err = d
        .load(&d.write(
            "b.toml",
            "[ums]\nurls = [\"wss://ums/x\"]\nca_certificate = \"/ca\"\nclient_certificate = \"/c\"\n",
        ))
        .unwrap_err()
        .to_string();
    assert!(err.contains("ums.client_key"), "{err}");
    let err = d
        .load(&d.write(
            "c.toml",
            "[ums]\nurls = [\"wss://ums/x\"]\nca_certificate = \"/ca\"\nheartbeat = \"0s\"\n",
        ))
        .unwrap_err()
        .to_string();
    assert!(err.contains("ums.heartbeat"), "{err}");
    // Without URLs there is no channel, and nothing is required.
    let s = d.load(&d.write("d.toml", "[ums]\n")).unwrap();
    assert!(s.ums().is_none());
}
