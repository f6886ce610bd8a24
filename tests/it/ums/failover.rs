//! Failover on the UMS channel (DESIGN 10, docs/protocol.md "UMS channel" 2, 3, 5 and 6), end
//! to end: the daemon as a real process, one or two UMS stand-ins (tests/it/support/ums.rs) that
//! go away, answer 503, close at once, freeze or come back, and a real Apache repository for
//! the updates whose status events must reach a server in order, once, across outages and
//! restarts.

use std::time::{Duration, Instant};

use crate::support::daemon::{Daemon, JOB_TIMEOUT, STOP_TIMEOUT, idf};
use crate::support::device::Device;
use crate::support::lifecycle::{APP, Repo};
use crate::support::{Frame, UmsPki, UmsStandIn, wait_until};
use crate::ums::conf::UmsConf;
use nix::sys::signal::Signal;
use serde_json::{Value, json};

/// A wait for something that should happen at once (a hello, a log line, a reply).
const WAIT: Duration = Duration::from_secs(30);
/// A wait that may include the reconnection backoff (full jitter, doubling from 1 s): a few
/// failed rounds while the servers were down make the next pause up to a minute long.
const RECONNECT_WAIT: Duration = Duration::from_secs(150);
/// A session that ends sooner after the upgrade counts as a failed server (src/ums CLOSES_AT_ONCE).
const CLOSES_AT_ONCE: Duration = Duration::from_secs(5);
/// After a session that lasted, the device starts again at once; this allows for a slow
/// machine, not for a backoff pause.
const FAILOVER_BOUND: Duration = Duration::from_secs(15);
/// The status text of a finished update (docs/protocol.md "Status texts").
const SUCCESSFUL: &str = "Update successful";

/// How often `needle` occurs in `haystack`.
fn count(haystack: &str, needle: &str) -> usize {
    haystack.matches(needle).count()
}

/// `<state>/ums-events.json` as JSON (`Null` when there is none).
fn event_queue(device: &Device) -> Value {
    match std::fs::read(device.state_dir().join("ums-events.json")) {
        Ok(bytes) => serde_json::from_slice(&bytes).expect("ums-events.json is not JSON"),
        Err(_) => Value::Null,
    }
}

/// The events waiting in `<state>/ums-events.json`.
fn queued_events(device: &Device) -> Vec<Value> {
    event_queue(device)["events"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

/// Every event frame the stand-ins recorded, in the order they arrived.
fn all_events(servers: &[&UmsStandIn]) -> Vec<Frame> {
    let mut events: Vec<Frame> = servers.iter().flat_map(|s| s.events()).collect();
    events.sort_by_key(|frame| frame.at);
    events
}

/// Panics unless every frame is a status event and their `seq` go up by exactly one from
/// `first` (no gap, no duplicate, no reordering).
#[track_caller]
fn assert_consecutive(events: &[Frame], first: u64) {
    let seqs: Vec<Option<u64>> = events.iter().map(|e| e.json["seq"].as_u64()).collect();
    let expected: Vec<Option<u64>> = (first..).take(events.len()).map(Some).collect();
    let texts: Vec<&str> = events.iter().map(|e| e.text.as_str()).collect();
    assert_eq!(seqs, expected, "event seqs are not consecutive: {texts:#?}");
    for event in events {
        assert_eq!(
            event.json["event"], "status",
            "unexpected event {}",
            event.text
        );
    }
}

/// Panics unless the events report `APP` installed and end with the update's success.
#[track_caller]
fn assert_update_reported(events: &[Frame]) {
    let texts: Vec<&str> = events.iter().map(|e| e.text.as_str()).collect();
    let installed = events
        .iter()
        .position(|e| e.json["app"] == APP && e.json["state"] == "installed");
    assert!(
        installed.is_some(),
        "no installed event for {APP}: {texts:#?}"
    );
    let last = events.last().expect("at least one event");
    assert_eq!(last.json["message"], SUCCESSFUL, "events: {texts:#?}");
}

/// Whether the stand-in recorded an event with the final status text.
fn saw_success(ums: &UmsStandIn) -> bool {
    ums.events().iter().any(|e| e.json["message"] == SUCCESSFUL)
}

/// Whether `<state>/ums-events.json` holds an event with the final status text.
fn success_queued(device: &Device) -> bool {
    queued_events(device)
        .iter()
        .any(|e| e["message"] == SUCCESSFUL)
}

/// Waits until `ums` has greeted the device and the daemon has logged the connection to it.
fn wait_connected(daemon: &mut Daemon, ums: &UmsStandIn) {
    ums.wait_greeted(WAIT);
    daemon.wait_for_log(
        &format!("UMS: connected to {} as device-1", ums.url()),
        WAIT,
    );
}

/// The line of `log` that reports `ums` skipped; panics if there is none.
#[track_caller]
fn skipped_line<'a>(log: &'a str, ums: &UmsStandIn) -> &'a str {
    log.lines()
        .find(|l| l.contains(&format!("UMS {}: ", ums.url())))
        .unwrap_or_else(|| panic!("the skipped server is not logged:\n{log}"))
}

/// Runs the update to `APP` 1.0 through the control socket and waits until it is installed.
fn update_to_1_0(daemon: &mut Daemon, id: &str) {
    daemon.accepted(json!({"id": id, "command": "update", "idf": idf(&[(APP, "1.0")])}));
    daemon.wait_for_app(APP, "installed");
}

#[test]
fn a_server_that_goes_away_mid_session_is_replaced_by_the_next_at_once() {
    let repo = Repo::start();
    let pki = UmsPki::new();
    let first = UmsStandIn::start(&pki);
    let second = UmsStandIn::start(&pki);
    let conf = UmsConf::new(&pki, &[first.url(), second.url()]);
    let device = repo.daemon_device(&conf.toml());
    let mut daemon = device.start();

    let hello = first.wait_hellos(1, WAIT).remove(0);
    wait_connected(&mut daemon, &first);
    assert_eq!(second.connections(), 0, "the second server was tried first");
    // Let the session outlast the "closes at once" window, so losing it is not a failed
    // server but a lost connection.
    std::thread::sleep(
        (CLOSES_AT_ONCE + Duration::from_secs(1)).saturating_sub(hello.at.elapsed()),
    );
    assert_eq!(
        first.greeted_sessions(),
        1,
        "the first session ended by itself"
    );
    assert!(hello.at.elapsed() > CLOSES_AT_ONCE);

    let gone = Instant::now();
    first.go_away();
    second.wait_hellos(1, WAIT);
    let failover = gone.elapsed();
    assert!(
        failover < FAILOVER_BOUND,
        "the device said hello on the second server {failover:?} after the first went away\n{}",
        daemon.stderr()
    );
    wait_connected(&mut daemon, &second);
    let log = daemon.stderr();
    assert!(
        log.contains(&format!("UMS {}: connection lost: ", first.url())),
        "the lost session is not logged as one:\n{log}"
    );
    assert!(
        !log.contains("none of 2 server(s) reachable"),
        "the device paused before trying the second server:\n{log}"
    );
    assert_eq!(first.hellos().len(), 1, "{log}");
}

#[test]
fn a_server_in_update_mode_is_skipped() {
    let repo = Repo::start();
    let pki = UmsPki::new();
    let first = UmsStandIn::start(&pki);
    first.answer_503();
    let second = UmsStandIn::start(&pki);
    let conf = UmsConf::new(&pki, &[first.url(), second.url()]);
    let device = repo.daemon_device(&conf.toml());
    let mut daemon = device.start();

    second.wait_hellos(1, WAIT);
    wait_connected(&mut daemon, &second);

    assert!(first.connections() >= 1, "the first server was never tried");
    assert!(
        first
            .log()
            .iter()
            .any(|l| l.contains("answered the upgrade with 503")),
        "the first server did not see an upgrade request: {:#?}",
        first.log()
    );
    assert_eq!(first.upgrades(), 0);
    assert!(first.hellos().is_empty(), "{:#?}", first.hellos());
    let log = daemon.stderr();
    let skipped = skipped_line(&log, &first);
    assert!(skipped.contains("answered 503"), "{skipped}");
    assert!(skipped.ends_with("trying the next server"), "{skipped}");
    assert!(
        !log.contains("none of 2 server(s) reachable"),
        "the device paused before trying the second server:\n{log}"
    );
}

#[test]
fn a_server_that_closes_at_once_is_skipped_and_the_device_stays_on_the_next() {
    let repo = Repo::start();
    let pki = UmsPki::new();
    let first = UmsStandIn::start(&pki);
    first.close_at_once();
    let second = UmsStandIn::start(&pki);
    // A short heartbeat: the pings on the second server show time passing on its session.
    let conf = UmsConf::new(&pki, &[first.url(), second.url()]).extra("heartbeat = \"2s\"\n");
    let device = repo.daemon_device(&conf.toml());
    let mut daemon = device.start();

    second.wait_hellos(1, WAIT);
    wait_connected(&mut daemon, &second);
    assert_eq!(first.upgrades(), 1, "{:#?}", first.log());
    assert!(first.hellos().is_empty(), "{:#?}", first.hellos());
    let log = daemon.stderr();
    let skipped = skipped_line(&log, &first);
    assert!(
        skipped.contains("closed the connection") && skipped.ends_with("trying the next server"),
        "{skipped}"
    );

    // Past the "closes at once" window the device is still on the second server and has not
    // gone back to the first.
    wait_until("4 pings on the second server", WAIT, || second.pings() >= 4);
    assert_eq!(second.greeted_sessions(), 1, "{:#?}", second.log());
    assert_eq!(second.hellos().len(), 1, "{:#?}", second.log());
    assert_eq!(first.connections(), 1, "{:#?}", first.log());
    assert!(
        !daemon.stderr().contains("connection lost"),
        "{}",
        daemon.stderr()
    );
}

#[test]
fn events_made_while_every_server_is_down_arrive_in_order_once_one_comes_back() {
    let repo = Repo::start();
    repo.add(APP, "1.0", false);
    let pki = UmsPki::new();
    let first = UmsStandIn::start(&pki);
    let second = UmsStandIn::start(&pki);
    let conf = UmsConf::new(&pki, &[first.url(), second.url()]);
    let device = repo.daemon_device(&conf.toml());
    let mut daemon = device.start();
    first.wait_greeted(WAIT);

    second.refuse();
    first.go_away();
    daemon.wait_for_log("UMS: none of 2 server(s) reachable", WAIT);
    update_to_1_0(&mut daemon, "u-down");
    wait_until("the update's success queued", WAIT, || {
        success_queued(&device)
    });
    let queued = queued_events(&device);
    assert!(
        queued
            .iter()
            .any(|e| e["app"] == APP && e["state"] == "installed"),
        "{queued:#?}"
    );

    second.come_back();
    wait_until(
        "the update's success at the second server",
        RECONNECT_WAIT,
        || saw_success(&second),
    );
    let events = all_events(&[&first, &second]);
    assert_consecutive(&events, 0);
    assert_update_reported(&events);
    for event in &queued {
        assert!(
            second
                .events()
                .iter()
                .any(|e| e.json["seq"] == event["seq"]),
            "queued event {event} did not reach the second server"
        );
    }
    // Sent after the hello_ack, on the session that said hello.
    let frames = second.frames();
    let hello = frames.iter().position(Frame::is_hello).expect("a hello");
    let first_event = frames.iter().position(Frame::is_event).expect("an event");
    assert!(hello < first_event, "an event came before the hello");
    wait_until("ums-events.json to be emptied", WAIT, || {
        queued_events(&device).is_empty()
    });
    assert_eq!(
        event_queue(&device)["dropped"],
        0,
        "{}",
        event_queue(&device)
    );
}

#[test]
fn queued_events_survive_a_daemon_restart() {
    let repo = Repo::start();
    repo.add(APP, "1.0", false);
    let pki = UmsPki::new();
    let ums = UmsStandIn::start(&pki);
    ums.refuse();
    let device = repo.daemon_device(&UmsConf::new(&pki, &[ums.url()]).toml());

    let mut daemon = device.start();
    daemon.wait_for_log("UMS: none of 1 server(s) reachable", WAIT);
    update_to_1_0(&mut daemon, "u-before-restart");
    wait_until("the update's success queued", WAIT, || {
        success_queued(&device)
    });
    daemon.signal(Signal::SIGTERM);
    daemon.wait_exit(STOP_TIMEOUT * 3);
    let queued = queued_events(&device);
    assert!(
        queued
            .iter()
            .any(|e| e["app"] == APP && e["state"] == "installed"),
        "{queued:#?}"
    );
    assert_eq!(ums.connections(), 0, "{:#?}", ums.log());

    ums.come_back();
    let daemon = device.start();
    wait_until("the update's success at the server", WAIT, || {
        saw_success(&ums)
    });
    let events = ums.events();
    assert_consecutive(&events, 0);
    assert_update_reported(&events);
    assert!(events.len() >= queued.len(), "{events:#?}");
    for (sent, kept) in events.iter().zip(&queued) {
        let mut expected = kept.clone();
        expected["event"] = json!("status");
        assert_eq!(
            sent.json, expected,
            "the event sent differs from the one queued"
        );
    }
    wait_until("ums-events.json to be emptied", WAIT, || {
        queued_events(&device).is_empty()
    });

    // The numbering goes on where the first run left it.
    repo.add(APP, "2.0", false);
    let delivered = events.len();
    daemon.accepted(
        json!({"id": "u-after-restart", "command": "update", "idf": idf(&[(APP, "2.0")])}),
    );
    wait_until(
        "the second update's success at the server",
        JOB_TIMEOUT,
        || {
            ums.events()[delivered..]
                .iter()
                .any(|e| e.json["message"] == SUCCESSFUL)
        },
    );
    let events = ums.events();
    assert_consecutive(&events, 0);
    assert!(
        events[delivered..].iter().any(|e| e.json["app"] == APP
            && e.json["version"] == "2.0"
            && e.json["state"] == "installed"),
        "no installed event for {APP} 2.0"
    );
}

#[test]
fn a_server_that_stops_answering_pings_is_given_up_and_reconnected() {
    let repo = Repo::start();
    let pki = UmsPki::new();
    let ums = UmsStandIn::start(&pki);
    let conf = UmsConf::new(&pki, &[ums.url()]).extra("heartbeat = \"1s\"\n");
    let device = repo.daemon_device(&conf.toml());
    let mut daemon = device.start();
    ums.wait_greeted(WAIT);
    // Pings answered for longer than the "closes at once" window.
    wait_until("6 pings", WAIT, || ums.pings() >= 6);
    assert!(
        !daemon.stderr().contains("no answer to a ping"),
        "{}",
        daemon.stderr()
    );

    let frozen = Instant::now();
    ums.freeze();
    daemon.wait_for_log("no answer to a ping within 1s", WAIT);
    let noticed = frozen.elapsed();
    // The ping after the freeze goes unanswered until the next one is due: two heartbeats.
    assert!(
        noticed < Duration::from_secs(10),
        "a frozen server was noticed after {noticed:?}"
    );
    let log = daemon.stderr();
    assert!(
        log.contains(&format!(
            "UMS {}: connection lost: no answer to a ping within 1s; reconnecting",
            ums.url()
        )),
        "{log}"
    );

    ums.come_back();
    ums.wait_hellos(2, RECONNECT_WAIT);
    wait_until("a second connected line", RECONNECT_WAIT, || {
        count(&daemon.stderr(), "UMS: connected to") >= 2
    });
    ums.wait_greeted(WAIT);
    let pings = ums.pings();
    wait_until("pings on the new session", WAIT, || {
        ums.pings() >= pings + 2
    });
}

#[test]
fn a_server_clock_an_hour_ahead_is_warned_about() {
    let repo = Repo::start();
    let pki = UmsPki::new();
    let ums = UmsStandIn::start(&pki);
    ums.set_clock_skew(3600);
    let device = repo.daemon_device(&UmsConf::new(&pki, &[ums.url()]).toml());
    let mut daemon = device.start();

    daemon.wait_for_log("UMS: connected to", WAIT);
    let log = daemon.stderr();
    let warning = log
        .lines()
        .find(|l| l.contains("the server's clock is"))
        .unwrap_or_else(|| panic!("no clock warning:\n{log}"));
    assert!(warning.contains("WARN"), "{warning}");
    assert!(warning.contains("ahead of this device's"), "{warning}");
    let secs: i64 = warning
        .split("the server's clock is ")
        .nth(1)
        .and_then(|rest| rest.split('s').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no seconds in {warning}"));
    assert!((3590..=3610).contains(&secs), "{warning}");
    let report: Value = serde_json::from_slice(
        &std::fs::read(device.state_dir().join("ums.json")).expect("ums.json"),
    )
    .expect("ums.json is JSON");
    let skew = report["clock_skew_s"].as_i64().expect("clock_skew_s");
    assert!((3590..=3610).contains(&skew), "{report}");
}

#[test]
fn a_server_clock_within_a_minute_is_not_warned_about() {
    let repo = Repo::start();
    let pki = UmsPki::new();
    let ums = UmsStandIn::start(&pki);
    ums.set_clock_skew(-30);
    let device = repo.daemon_device(&UmsConf::new(&pki, &[ums.url()]).toml());
    let mut daemon = device.start();

    // The warning comes before the "connected" line.
    daemon.wait_for_log("UMS: connected to", WAIT);
    assert!(
        !daemon.stderr().contains("the server's clock is"),
        "{}",
        daemon.stderr()
    );
}

#[test]
fn a_server_that_never_acknowledges_hello_is_skipped_for_the_next() {
    let repo = Repo::start();
    let pki = UmsPki::new();
    let first = UmsStandIn::start(&pki);
    first.withhold_hello_ack();
    let second = UmsStandIn::start(&pki);
    let conf = UmsConf::new(&pki, &[first.url(), second.url()]);
    let device = repo.daemon_device(&conf.toml());
    let mut daemon = device.start();

    // docs/protocol.md, UMS channel 3: "No hello_ack within 10 s: next URL."
    first.wait_hellos(1, WAIT);
    second.wait_hellos(1, WAIT);
    wait_connected(&mut daemon, &second);
    assert_eq!(first.hellos().len(), 1, "{}", daemon.stderr());
}
