//! Status events for the UMS (DESIGN 10, `docs/protocol.md`): every change of an app's state
//! and of the status text becomes an event in `<state>/ums-events.json`, written right after
//! the state change itself, and stays there until the UMS channel has written it to a server.
//! The queue is bounded: when it is full the oldest event goes and a count of the dropped ones
//! is kept, which the server is told before the next event.
//!
//! Only a device with a UMS queues events (see [`Store::enable_events`]).

use std::collections::VecDeque;
use std::path::{Path, PathBuf};

use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Serialize};

use super::{AppState, State, Store, StoreError, write_atomic};
use crate::config::SetAside;

/// At most this many events wait for the UMS; older ones are dropped (and counted).
pub const EVENT_QUEUE_CAPACITY: usize = 1000;
pub const EVENTS_FILE: &str = "ums-events.json";
/// The largest event queue file read (1000 events of a few hundred bytes each).
const MAX_EVENTS_FILE: u64 = 16 * 1024 * 1024;

/// One status event, as sent: `{"event": "status", "seq", "ts", "app", "version", "state",
/// "message"}`. `app`, `version` and `state` are `null` when only the status text changed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatusEvent {
    /// Increases by one per event on this device, also across restarts: a server that gets
    /// an event twice (after a crash between sending and forgetting it) can tell.
    pub seq: u64,
    pub ts: String,
    pub app: Option<String>,
    pub version: Option<String>,
    pub state: Option<String>,
    pub message: Option<String>,
    /// After a delta update: the app's bytes so far and how many of them were copied from the
    /// device (the rest were downloaded). Absent otherwise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bytes: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bytes_reused: Option<u64>,
}

/// The persisted queue.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventQueue {
    pub next_seq: u64,
    /// Events dropped because the queue was full, not yet reported to a server.
    pub dropped: u64,
    pub events: VecDeque<StatusEvent>,
}

impl EventQueue {
    fn push(&mut self, mut event: StatusEvent) {
        event.seq = self.next_seq;
        self.next_seq += 1;
        if self.events.len() >= EVENT_QUEUE_CAPACITY {
            self.events.pop_front();
            self.dropped += 1;
        }
        self.events.push_back(event);
    }
}

/// What events are made of: each app's version and state, and the status text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Signature {
    apps: Vec<(String, String, AppState)>,
    status: Option<String>,
}

impl Signature {
    pub(super) fn of(state: &State) -> Signature {
        Signature {
            apps: state
                .apps
                .iter()
                .map(|a| (a.name.clone(), a.version.clone(), a.state))
                .collect(),
            status: state.update_status.clone(),
        }
    }
}

/// The events between two states: one per app whose version or state changed (carrying the
/// current status text), or one without an app when only the status text changed.
pub(super) fn changes(before: &Signature, after: &State, now: DateTime<Utc>) -> Vec<StatusEvent> {
    let ts = now.to_rfc3339_opts(SecondsFormat::Secs, true);
    let event = |app: Option<&crate::store::AppRecord>| {
        let reused = app.filter(|a| a.bytes_reused > 0);
        StatusEvent {
            seq: 0,
            ts: ts.clone(),
            app: app.map(|a| a.name.clone()),
            version: app.map(|a| a.version.clone()),
            state: app.map(|a| a.state.as_str().to_string()),
            message: after.update_status.clone(),
            bytes: reused.map(|a| a.bytes_done),
            bytes_reused: reused.map(|a| a.bytes_reused),
        }
    };
    let mut out: Vec<StatusEvent> = after
        .apps
        .iter()
        .filter(|a| {
            !before
                .apps
                .iter()
                .any(|(n, v, s)| *n == a.name && *v == a.version && *s == a.state)
        })
        .map(|a| event(Some(a)))
        .collect();
    if out.is_empty() && before.status != after.update_status && after.update_status.is_some() {
        out.push(event(None));
    }
    out
}

pub(super) fn path(state_dir: &Path) -> PathBuf {
    state_dir.join(EVENTS_FILE)
}

/// Reads the queue; a file that cannot be read as one is kept beside as `.corrupt` (and
/// reported, with a notice of what was set aside) and the queue starts empty, so that a bad
/// file never stops the agent.
pub(super) fn load(state_dir: &Path) -> Result<(EventQueue, Option<SetAside>), StoreError> {
    let path = path(state_dir);
    let queue = match crate::durable::read_regular(&path, MAX_EVENTS_FILE) {
        Err(e) if e.source.kind() == std::io::ErrorKind::NotFound => {
            return Ok((EventQueue::default(), None));
        }
        Err(e) => Err(e.source.to_string()),
        Ok(bytes) => serde_json::from_slice::<EventQueue>(&bytes)
            .map_err(|e| e.to_string())
            .and_then(|q| {
                (q.events.len() <= EVENT_QUEUE_CAPACITY)
                    .then_some(q)
                    .ok_or_else(|| format!("more than {EVENT_QUEUE_CAPACITY} events"))
            }),
    };
    match queue {
        Ok(queue) => Ok((queue, None)),
        Err(e) => {
            let corrupt = state_dir.join(format!("{EVENTS_FILE}.corrupt"));
            let reason = format!(
                "{}: not a valid event queue ({e}); kept as {}, the queue starts empty and seq \
                 starts again at 0",
                path.display(),
                corrupt.display()
            );
            tracing::warn!("{reason}");
            std::fs::rename(&path, &corrupt).map_err(super::io_error(&path))?;
            Ok((
                EventQueue::default(),
                Some(SetAside {
                    name: EVENTS_FILE.to_string(),
                    reason,
                }),
            ))
        }
    }
}

pub(super) fn save(state_dir: &Path, queue: &EventQueue) -> Result<(), StoreError> {
    let path = path(state_dir);
    let bytes = serde_json::to_vec(queue).map_err(|e| StoreError::Corrupt {
        path: path.clone(),
        reason: e.to_string(),
    })?;
    write_atomic(&path, &bytes)
}

/// What is waiting for the UMS: the count of dropped events and the events, oldest first.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Pending {
    pub dropped: u64,
    pub events: Vec<StatusEvent>,
}

impl Store {
    /// From now on, state changes are queued as events for the UMS (only a device with a UMS
    /// wants them). Reads what an earlier run left.
    pub fn enable_events(&self) -> Result<(), StoreError> {
        if self.events_enabled() {
            return Ok(());
        }
        let (queue, problem) = load(&self.state_dir)?;
        *self.events.lock() = Some(queue);
        if let Some(notice) = problem {
            self.note_set_aside(notice)?;
        }
        Ok(())
    }

    pub(super) fn events_enabled(&self) -> bool {
        self.events.lock().is_some()
    }

    /// Resolves when events may have been added since the last call (for the UMS channel).
    pub async fn events_added(&self) {
        self.events_added.notified().await;
    }

    /// The events waiting for the UMS (empty when events are not enabled).
    pub fn pending_events(&self) -> Pending {
        self.events
            .lock()
            .as_ref()
            .map(|q| Pending {
                dropped: q.dropped,
                events: q.events.iter().cloned().collect(),
            })
            .unwrap_or_default()
    }

    /// Forgets what a server has been sent: `dropped` reported drops and the events up to and
    /// including `seq`.
    pub fn events_sent(&self, dropped: u64, seq: Option<u64>) -> Result<(), StoreError> {
        let mut guard = self.events.lock();
        let Some(queue) = guard.as_mut() else {
            return Ok(());
        };
        queue.dropped = queue.dropped.saturating_sub(dropped);
        if let Some(seq) = seq {
            while queue.events.front().is_some_and(|e| e.seq <= seq) {
                queue.events.pop_front();
            }
        }
        save(&self.state_dir, queue)
    }

    /// Called with the state lock held, after the state was written: queues the events of
    /// the change.
    pub(super) fn record_events(&self, before: &Signature, after: &State) {
        let mut guard = self.events.lock();
        let Some(queue) = guard.as_mut() else {
            return;
        };
        let new = changes(before, after, Utc::now());
        if new.is_empty() {
            return;
        }
        for event in new {
            queue.push(event);
        }
        if let Err(e) = save(&self.state_dir, queue) {
            // The events stay queued in memory and are written with the next change.
            tracing::warn!("cannot persist the UMS event queue: {e}");
        }
        drop(guard);
        self.events_added.notify_one();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::AppRecord;

    fn state(apps: &[(&str, &str, AppState)], status: Option<&str>) -> State {
        State {
            apps: apps
                .iter()
                .map(|(n, v, s)| {
                    let mut a = AppRecord::new(n, v);
                    a.state = *s;
                    a
                })
                .collect(),
            update_status: status.map(str::to_string),
            ..State::default()
        }
    }

    #[test]
    fn one_event_per_changed_app_with_the_status_text() {
        let before = state(
            &[
                ("a", "1", AppState::Downloading),
                ("b", "2", AppState::Installed),
            ],
            Some("x"),
        );
        let after = state(
            &[
                ("a", "1", AppState::Downloaded),
                ("b", "2", AppState::Installed),
                ("c", "3", AppState::Assigned),
            ],
            Some("y"),
        );
        let events = changes(&Signature::of(&before), &after, Utc::now());
        let got: Vec<_> = events
            .iter()
            .map(|e| {
                (
                    e.app.as_deref().unwrap(),
                    e.state.as_deref().unwrap(),
                    e.message.as_deref(),
                )
            })
            .collect();
        assert_eq!(
            got,
            [("a", "downloaded", Some("y")), ("c", "assigned", Some("y"))]
        );
    }

    #[test]
    fn a_new_status_text_alone_is_an_event_without_app() {
        let before = state(&[("a", "1", AppState::Installed)], Some("x"));
        let after = state(&[("a", "1", AppState::Installed)], Some("y"));
        let events = changes(&Signature::of(&before), &after, Utc::now());
        assert_eq!(events.len(), 1);
        assert_eq!(events[0].app, None);
        assert_eq!(events[0].message.as_deref(), Some("y"));
        assert!(changes(&Signature::of(&after), &after, Utc::now()).is_empty());
    }

    #[test]
    fn a_full_queue_drops_the_oldest_and_counts_them() {
        let mut queue = EventQueue::default();
        let event = StatusEvent {
            seq: 0,
            ts: String::new(),
            app: None,
            version: None,
            state: None,
            message: None,
            bytes: None,
            bytes_reused: None,
        };
        for _ in 0..EVENT_QUEUE_CAPACITY + 5 {
            queue.push(event.clone());
        }
        assert_eq!(queue.events.len(), EVENT_QUEUE_CAPACITY);
        assert_eq!(queue.dropped, 5);
        assert_eq!(queue.events.front().unwrap().seq, 5);
        assert_eq!(
            queue.events.back().unwrap().seq,
            EVENT_QUEUE_CAPACITY as u64 + 4
        );
    }
}
