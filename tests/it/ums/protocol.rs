//! Commands on the UMS channel (DESIGN 10, docs/protocol.md "Commands" and "UMS channel",
//! steps 4 and 7) with a connected device: what a server may send and what the device does
//! with it. Bad text frames (too large, not JSON, no id, unknown command) are answered
//! `rejected` on the same connection; a binary frame or garbage ends that connection and the
//! device comes back; none of it changes `state.json` or takes the daemon down. Commands are
//! idempotent by id, also across a reconnect, and `status` and `settings` work as on the
//! control socket.
//!
//! The daemon runs as a real process against the UMS stand-in (tests/it/support/ums.rs) and a
//! real Apache repository.

use std::time::Duration;

use crate::support::daemon::{Daemon, idf, limit, queue, queued_ids};
use crate::support::device::Device;
use crate::support::lifecycle::{APP, Repo};
use crate::support::{Frame, UmsPki, UmsStandIn, wait_until};
use crate::ums::conf::UmsConf;
use serde_json::{Value, json};

const WAIT: Duration = Duration::from_secs(30);
const MIB: usize = 1024 * 1024;
const CONNECTED: &str = "UMS: connected to";

/// A daemon connected to the stand-in, with a repository. Fields drop in order: the daemon is
/// killed before its directory and the servers go.
struct Connected {
    daemon: Daemon,
    ums: UmsStandIn,
    device: Device,
    _pki: UmsPki,
    repo: Repo,
}

impl Connected {
    /// Starts the stand-in and the daemon (with more `[update]` lines) and waits until the
    /// daemon is greeted.
    fn start(repo: Repo, extra_update: &str) -> Connected {
        let pki = UmsPki::new();
        let ums = UmsStandIn::start(&pki);
        let conf = UmsConf::new(&pki, &[ums.url()]);
        let device = repo.daemon_device(&format!("{extra_update}{}", conf.toml()));
        let daemon = device.start();
        let connected = Connected {
            daemon,
            ums,
            device,
            _pki: pki,
            repo,
        };
        connected.wait_connected(1);
        connected
    }

    /// How often the daemon logged a completed hello.
    fn connected_count(&self) -> usize {
        self.daemon.stderr().matches(CONNECTED).count()
    }

    /// Waits until the daemon got its `n`th `hello_ack`. The stand-in marks a session ready
    /// before it sends the ack, so a frame sent after this goes to that session.
    fn wait_connected(&self, n: usize) {
        wait_until(&format!("hello_ack number {n}"), WAIT, || {
            self.connected_count() >= n
        });
    }

    /// Sends with `send` and returns the next reply the stand-in records.
    fn next_reply(&self, send: impl FnOnce(&UmsStandIn)) -> Frame {
        let before = self.ums.replies().len();
        send(&self.ums);
        wait_until("a reply from the device", WAIT, || {
            self.ums.replies().len() > before
        });
        self.ums.replies().swap_remove(before)
    }

    /// A `status` command over the UMS; panics unless it is accepted with a status object.
    #[track_caller]
    fn ums_status(&self, id: &str) -> Frame {
        self.ums.send(&json!({"id": id, "command": "status"}));
        let reply = self.ums.wait_reply(id, WAIT);
        assert_eq!(reply.json["result"], "accepted", "{}", reply.json);
        assert!(reply.json["status"].is_object(), "{}", reply.json);
        reply
    }

    /// The connection of the only hello so far.
    #[track_caller]
    fn only_conn(&self) -> u64 {
        let hellos = self.ums.hellos();
        assert_eq!(hellos.len(), 1, "hellos: {hellos:#?}");
        hellos[0].conn
    }

    /// Panics if the daemon exited or panicked.
    #[track_caller]
    fn assert_daemon_alive(&mut self) {
        assert!(
            self.daemon.is_running(),
            "the daemon exited\n{}",
            self.daemon.stderr()
        );
        assert!(
            !self.daemon.stderr().contains("panicked at"),
            "{}",
            self.daemon.stderr()
        );
    }

    /// Panics if the daemon exited or panicked, or if `state.json` is no longer `before`;
    /// `cause` (what the server sent) names the culprit.
    #[track_caller]
    fn assert_unharmed(&mut self, before: &Value, cause: &str) {
        self.assert_daemon_alive();
        assert_eq!(
            &self.device.state_json(),
            before,
            "{cause} changed state.json"
        );
    }
}

/// Panics unless `reply` is `rejected` with `id` and an error containing `needle`.
#[track_caller]
fn assert_rejected(reply: &Frame, id: Option<&str>, needle: &str) {
    assert_eq!(reply.json["result"], "rejected", "{}", reply.json);
    assert_eq!(reply.id(), id, "{}", reply.json);
    if id.is_none() {
        assert_eq!(reply.json["id"], Value::Null, "{}", reply.json);
    }
    let error = reply.json["error"].as_str().unwrap_or_default();
    assert!(error.contains(needle), "{needle:?} not in {}", reply.json);
}

#[test]
fn a_command_over_1_mib_is_rejected_and_the_connection_stays_open() {
    let mut c = Connected::start(Repo::start(), "");
    let conn = c.only_conn();
    let before = c.device.state_json();

    let padding = "x".repeat(MIB + MIB / 5);
    let oversized = json!({"id": "big-1", "command": "status", "padding": padding});
    let reply = c.next_reply(|ums| {
        ums.send(&oversized);
    });
    assert_rejected(&reply, None, "over the limit");
    assert_eq!(reply.conn, conn, "the reply came on another connection");

    let status = c.ums_status("after-big");
    assert_eq!(status.conn, conn, "the connection was not kept open");
    assert_eq!(c.ums.hellos().len(), 1, "the device reconnected");
    assert_eq!(c.ums.connections(), 1, "stand-in log: {:#?}", c.ums.log());
    assert!(
        c.ums.frames().iter().all(|f| f.conn == conn),
        "frames on another connection: {:#?}",
        c.ums.frames()
    );
    c.assert_unharmed(&before, "a rejected frame");
}

/// The device reads at most a few MiB of one message (a server must not make it allocate
/// without bound); whether it answers a larger one or drops the connection, it must survive
/// and be reachable again.
#[test]
fn a_frame_too_large_to_read_does_not_bring_the_device_down() {
    let mut c = Connected::start(Repo::start(), "");
    let before = c.device.state_json();
    let replies = c.ums.replies().len();

    c.ums.send_text(&"x".repeat(5 * MIB));
    wait_until("a rejection or a reconnect", WAIT, || {
        c.ums.replies().len() > replies || c.ums.hellos().len() >= 2
    });
    if let Some(reply) = c.ums.replies().get(replies) {
        assert_rejected(reply, None, "over the limit");
    }
    c.wait_connected(c.ums.hellos().len());
    let status = c.ums_status("after-huge");
    assert_eq!(status.conn, c.ums.hellos().last().map_or(0, |h| h.conn));
    c.assert_unharmed(&before, "a huge frame");
}

#[test]
fn bad_text_frames_are_rejected_with_the_id_when_it_can_be_read() {
    let mut c = Connected::start(Repo::start(), "");
    let conn = c.only_conn();
    let before = c.device.state_json();

    let cases: [(&str, Option<&str>, &str); 6] = [
        ("{this is not json", None, "not JSON"),
        ("", None, "not JSON"),
        ("[1, 2]", None, "object"),
        (r#"{"command":"status"}"#, None, "`id`"),
        (
            r#"{"id":"x1","command":"reboot-now"}"#,
            Some("x1"),
            "reboot-now",
        ),
        (
            r#"{"id":"x2","command":"update","bogus":1}"#,
            Some("x2"),
            "bogus",
        ),
    ];
    for (text, id, needle) in cases {
        let reply = c.next_reply(|ums| {
            ums.send_text(text);
        });
        assert_rejected(&reply, id, needle);
        assert_eq!(
            reply.conn, conn,
            "{text}: the reply came on another connection"
        );
    }

    let status = c.ums_status("after-bad");
    assert_eq!(status.conn, conn, "the connection was not kept open");
    assert_eq!(c.ums.hellos().len(), 1, "the device reconnected");
    assert!(queue(&status.json["status"]).is_empty(), "{}", status.json);
    c.assert_unharmed(&before, "a rejected frame");
}

#[test]
fn a_binary_frame_closes_the_connection_and_the_device_reconnects() {
    let mut c = Connected::start(Repo::start(), "");
    let first = c.only_conn();
    let before = c.device.state_json();

    c.ums.send_binary(&[0x01, 0x02, 0x03]);

    let hellos = c.ums.wait_hellos(2, WAIT);
    let second = hellos[1].conn;
    assert!(second > first, "hellos: {hellos:#?}");
    wait_until(
        "the device's close frame on the first connection",
        WAIT,
        || {
            c.ums
                .log()
                .iter()
                .any(|l| l.contains(&format!("#{first} close frame from the device")))
        },
    );
    assert!(
        c.daemon.stderr().contains("binary frame"),
        "the log must say why the connection ended:\n{}",
        c.daemon.stderr()
    );
    c.wait_connected(2);
    let status = c.ums_status("after-binary");
    assert_eq!(status.conn, second, "not answered on the new connection");
    c.assert_unharmed(&before, "a binary frame");
}

#[test]
fn garbage_from_the_server_does_not_bring_the_device_down() {
    let mut c = Connected::start(Repo::start(), "");
    let first = c.only_conn();
    let before = c.device.state_json();

    // A non-JSON text frame (answered), then a binary frame (the connection ends).
    let reply = c.next_reply(UmsStandIn::send_garbage);
    assert_rejected(&reply, None, "not JSON");
    assert_eq!(reply.conn, first);

    let hellos = c.ums.wait_hellos(2, WAIT);
    assert!(hellos[1].conn > first, "hellos: {hellos:#?}");
    c.wait_connected(2);
    let status = c.ums_status("after-garbage");
    assert_eq!(status.conn, hellos[1].conn);
    c.assert_unharmed(&before, "garbage");
}

/// How many log lines of the daemon contain `needle`.
fn log_count(daemon: &Daemon, needle: &str) -> usize {
    daemon
        .stderr()
        .lines()
        .filter(|l| l.contains(needle))
        .count()
}

#[test]
fn a_command_sent_twice_with_the_same_id_runs_once() {
    let repo = Repo::start();
    repo.add(APP, "1.0", false);
    let mut c = Connected::start(repo, "");

    let update = json!({"id": "u1", "command": "update", "idf": idf(&[(APP, "1.0")])});
    c.ums.send(&update);
    c.ums.send(&update);
    let replies = c.ums.wait_replies("u1", 2, WAIT);
    for reply in &replies {
        assert_eq!(reply.json["result"], "accepted", "{}", reply.json);
    }
    c.daemon.wait_for_app(APP, "installed");

    assert_eq!(
        log_count(&c.daemon, "command u1: update accepted"),
        1,
        "{}",
        c.daemon.stderr()
    );
    assert_eq!(
        log_count(&c.daemon, "command u1: update already known; not run again"),
        1,
        "{}",
        c.daemon.stderr()
    );
    assert_eq!(c.repo.payload_gets(APP, "1.0").len(), 1);
    assert!(queue(&c.daemon.status()).is_empty());
    c.assert_daemon_alive();
}

#[test]
fn a_command_replayed_after_a_reconnect_runs_once() {
    let repo = Repo::start();
    repo.add(APP, "1.0", false);
    let mut c = Connected::start(repo, "");
    let first = c.only_conn();

    let update = json!({"id": "u1", "command": "update", "idf": idf(&[(APP, "1.0")])});
    c.ums.send(&update);
    assert_eq!(c.ums.wait_reply("u1", WAIT).json["result"], "accepted");
    c.daemon.wait_for_app(APP, "installed");
    let installed = c.device.state_json();

    // The server lost the connection (and, as far as it knows, the reply): it sends again.
    c.ums.drop_connections();
    c.ums.send(&update);
    let replies = c.ums.wait_replies("u1", 2, WAIT);
    assert_eq!(replies[1].json["result"], "accepted", "{}", replies[1].json);
    let hellos = c.ums.hellos();
    assert!(hellos.len() >= 2, "hellos: {hellos:#?}");
    assert!(
        replies[1].conn > first,
        "the replay was answered on the old connection"
    );

    c.daemon
        .wait_for_log("command u1: update already known; not run again", WAIT);
    let status = c.daemon.status();
    assert!(queue(&status).is_empty(), "{status:#}");
    assert_eq!(
        log_count(&c.daemon, "command u1: update accepted"),
        1,
        "{}",
        c.daemon.stderr()
    );
    assert_eq!(c.repo.payload_gets(APP, "1.0").len(), 1);
    assert_eq!(
        c.device.state_json()["apps"],
        installed["apps"],
        "the replay changed the apps"
    );
    c.assert_daemon_alive();
}

#[test]
fn status_over_the_ums_shows_the_apps_and_the_queue() {
    let repo = Repo::start();
    repo.add(APP, "1.0", false);
    let c = Connected::start(repo, "");

    let later = (chrono::Utc::now() + chrono::Duration::hours(1))
        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    c.ums.send(&json!({
        "id": "later", "command": "update", "idf": idf(&[(APP, "1.0")]), "at": later,
    }));
    assert_eq!(c.ums.wait_reply("later", WAIT).json["result"], "accepted");

    let reply = c.ums_status("st1");
    let status = &reply.json["status"];
    assert_eq!(reply.json["id"], "st1", "{}", reply.json);
    assert!(status["apps"].is_array(), "{status:#}");
    assert!(status["commands"].is_array(), "{status:#}");
    assert_eq!(queued_ids(status), ["later"], "{status:#}");
    // The same document as on the control socket.
    assert_eq!(
        queued_ids(&c.daemon.status()),
        queued_ids(status),
        "{status:#}"
    );
}

#[test]
fn settings_over_the_ums_are_applied_and_an_unknown_key_is_rejected() {
    let mut c = Connected::start(Repo::start(), &limit("4MB"));
    let limit_of = |status: &Value| status["settings"]["bandwidth_limit_bytes_per_sec"].clone();
    assert_eq!(limit_of(&c.daemon.status()), 4 * MIB);

    c.ums.send(&json!({
        "id": "s1", "command": "settings", "values": {"update.bandwidth_limit": "1MB"},
    }));
    let reply = c.ums.wait_reply("s1", WAIT);
    assert_eq!(reply.json["result"], "accepted", "{}", reply.json);
    let status = c.ums_status("st-after-s1");
    assert_eq!(limit_of(&status.json["status"]), MIB, "{}", status.json);
    assert_eq!(limit_of(&c.daemon.status()), MIB);
    let applied = c.device.state_json();

    c.ums.send(&json!({
        "id": "s2", "command": "settings", "values": {"update.nonsense": "1"},
    }));
    let reply = c.ums.wait_reply("s2", WAIT);
    assert_rejected(&reply, Some("s2"), "update.nonsense");
    assert_eq!(limit_of(&c.ums_status("st-after-s2").json["status"]), MIB);
    assert_eq!(
        c.device.state_json(),
        applied,
        "a rejected settings command changed state.json"
    );
    c.assert_daemon_alive();
}
