//! The frames of the UMS channel (`docs/protocol.md`), one type each, in both directions:
//! what the device sends (`hello`, status events, `dropped`, the reply to a command) and what
//! it reads besides commands (`hello_ack`). Commands themselves are the control socket's
//! (`control::parse`), so both ways in share one parser. The store keeps the events; only
//! this module says how they look on the wire, and the channel only moves frames.

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::Value;

use crate::control::Reply;
use crate::report::Status;
use crate::store::StatusEvent;

/// `{"hello": {"device_id", "agent_version", "status"}}`: the first frame of a session.
#[derive(Debug, Serialize)]
pub struct Hello<'a> {
    hello: HelloBody<'a>,
}

#[derive(Debug, Serialize)]
struct HelloBody<'a> {
    device_id: &'a str,
    agent_version: &'static str,
    status: &'a Status,
}

impl<'a> Hello<'a> {
    pub fn new(device_id: &'a str, status: &'a Status) -> Hello<'a> {
        Hello {
            hello: HelloBody {
                device_id,
                agent_version: env!("CARGO_PKG_VERSION"),
                status,
            },
        }
    }
}

/// `{"event": "status", "seq", "ts", "app", "version", "state", "message"}` and
/// `{"event": "dropped", "count"}` (events the full queue dropped, told before the next one).
#[derive(Debug, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Event<'a> {
    Status(&'a StatusEvent),
    Dropped { count: u64 },
}

/// A frame the device sends.
pub enum Outgoing<'a> {
    Hello(Hello<'a>),
    Event(Event<'a>),
    Reply(&'a Reply),
}

impl Outgoing<'_> {
    /// The frame's text (JSON, one object).
    pub fn text(&self) -> String {
        let value = match self {
            Outgoing::Hello(hello) => serde_json::to_string(hello),
            Outgoing::Event(event) => serde_json::to_string(event),
            Outgoing::Reply(reply) => serde_json::to_string(reply),
        };
        // Plain data without maps of non-string keys: serialising cannot fail.
        value.unwrap_or_default()
    }
}

/// A frame read while waiting for `hello_ack`: `None` when it is no `hello_ack` (then it is a
/// command), else its time or why it is unusable.
pub fn read_hello_ack(text: &str) -> Option<Result<DateTime<Utc>, String>> {
    let value: Value = serde_json::from_str(text).ok()?;
    let ack = value.get("hello_ack")?;
    let time = ack
        .get("time")
        .and_then(Value::as_str)
        .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
        .map(|t| t.with_timezone(&Utc));
    Some(time.ok_or_else(|| {
        let shown = crate::report::clean(&ack.to_string())
            .chars()
            .take(200)
            .collect::<String>();
        format!("hello_ack without an RFC 3339 `time`: {shown}")
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_look_as_the_protocol_says() {
        let event = StatusEvent {
            seq: 7,
            ts: "2026-11-30T14:00:00Z".into(),
            app: Some("zoom".into()),
            version: Some("1.0".into()),
            state: Some("installed".into()),
            message: None,
            bytes: None,
            bytes_reused: None,
        };
        let sent: Value =
            serde_json::from_str(&Outgoing::Event(Event::Status(&event)).text()).expect("JSON");
        assert_eq!(
            sent,
            serde_json::json!({"event": "status", "seq": 7, "ts": "2026-11-30T14:00:00Z",
                "app": "zoom", "version": "1.0", "state": "installed", "message": null})
        );
        let dropped: Value =
            serde_json::from_str(&Outgoing::Event(Event::Dropped { count: 3 }).text())
                .expect("JSON");
        assert_eq!(dropped, serde_json::json!({"event": "dropped", "count": 3}));
    }

    #[test]
    fn hello_ack_needs_a_time() {
        assert!(read_hello_ack(r#"{"id": "x", "command": "status"}"#).is_none());
        assert!(matches!(
            read_hello_ack(r#"{"hello_ack": {"time": "2026-11-30T14:00:00Z"}}"#),
            Some(Ok(_))
        ));
        assert!(matches!(
            read_hello_ack(r#"{"hello_ack": {}}"#),
            Some(Err(_))
        ));
    }
}
