//! What the stand-in knows: behaviour, records, open sessions; shared by the test thread and
//! the connection tasks.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::{Mutex, MutexGuard};
use std::time::Instant;

use serde_json::Value;
use tokio::sync::{mpsc, watch};
use tokio_tungstenite::tungstenite::Message;

/// How the stand-in treats connections accepted from now on.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(super) enum Behaviour {
    #[default]
    Normal,
    Answer503,
    CloseAtOnce,
    Stall,
    WithholdAck,
}

/// A frame the device sent, as the stand-in received it.
#[derive(Clone, Debug)]
pub struct Frame {
    /// The connection it came on (1, 2, ... in accept order).
    pub conn: u64,
    pub at: Instant,
    /// The text as received (`<binary frame, N bytes>` for a binary frame).
    pub text: String,
    /// The parsed text; `Value::Null` when it was not JSON or was binary.
    pub json: Value,
}

impl Frame {
    /// `{"hello": {...}}`
    pub fn is_hello(&self) -> bool {
        self.json.get("hello").is_some()
    }

    /// `{"event": ...}`
    pub fn is_event(&self) -> bool {
        self.json.get("event").is_some()
    }

    /// A reply: an object with `result` (with or without `id`).
    pub fn is_reply(&self) -> bool {
        self.json.get("result").is_some()
    }

    /// The `id` field, if it is a string.
    pub fn id(&self) -> Option<&str> {
        self.json.get("id").and_then(Value::as_str)
    }
}

pub(super) enum Outgoing {
    Text(String),
    Binary(Vec<u8>),
}

impl Outgoing {
    pub(super) fn into_message(self) -> Message {
        match self {
            Outgoing::Text(text) => Message::text(text),
            Outgoing::Binary(bytes) => Message::binary(bytes),
        }
    }
}

/// Broadcast to every connection task.
#[derive(Clone, Copy, Debug, Default)]
pub(super) struct Signal {
    /// Connections accepted before the epoch moved are dropped.
    pub(super) epoch: u64,
    /// Open sessions neither read nor write.
    pub(super) frozen: bool,
}

pub(super) struct Session {
    pub(super) tx: mpsc::UnboundedSender<Outgoing>,
    /// `hello_ack` sent: frames go straight to it.
    pub(super) ready: bool,
}

#[derive(Default)]
pub(super) struct State {
    pub(super) behaviour: Behaviour,
    pub(super) skew_secs: i64,
    pub(super) listening: bool,
    pub(super) next_id: u64,
    pub(super) connections: usize,
    pub(super) upgrades: usize,
    pub(super) pings: usize,
    pub(super) live: BTreeSet<u64>,
    pub(super) sessions: BTreeMap<u64, Session>,
    pub(super) pending: VecDeque<Outgoing>,
    pub(super) frames: Vec<Frame>,
    pub(super) handshake_errors: Vec<String>,
    pub(super) log: Vec<String>,
}

pub(super) struct Shared {
    pub(super) state: Mutex<State>,
    pub(super) signal: watch::Sender<Signal>,
    pub(super) started: Instant,
}

impl Shared {
    pub(super) fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().expect("ums stand-in state poisoned")
    }

    pub(super) fn note(&self, id: u64, message: String) {
        let at = self.started.elapsed().as_secs_f64();
        self.lock().log.push(format!("{at:8.3}s #{id} {message}"));
    }

    pub(super) fn handshake_error(&self, id: u64, message: String) {
        self.note(id, format!("refused: {message}"));
        self.lock().handshake_errors.push(message);
    }

    pub(super) fn accepted(&self) -> (u64, Behaviour) {
        let mut state = self.lock();
        state.next_id += 1;
        state.connections += 1;
        let id = state.next_id;
        state.live.insert(id);
        let behaviour = state.behaviour;
        drop(state);
        self.note(id, format!("accepted ({behaviour:?})"));
        (id, behaviour)
    }

    pub(super) fn gone(&self, id: u64) {
        let mut state = self.lock();
        state.live.remove(&id);
        state.sessions.remove(&id);
    }

    pub(super) fn upgraded(&self, id: u64) {
        self.lock().upgrades += 1;
        self.note(id, "upgraded".into());
    }

    pub(super) fn session_opened(&self, id: u64, tx: mpsc::UnboundedSender<Outgoing>) {
        let session = Session { tx, ready: false };
        self.lock().sessions.insert(id, session);
    }

    /// Marks the session greeted and hands it the frames that waited for one.
    pub(super) fn session_ready(&self, id: u64) -> Vec<Outgoing> {
        let mut state = self.lock();
        if let Some(session) = state.sessions.get_mut(&id) {
            session.ready = true;
        }
        state.pending.drain(..).collect()
    }

    /// Records a frame; returns whether it is a hello.
    pub(super) fn record(&self, id: u64, text: &str, binary: bool) -> bool {
        let json = if binary {
            Value::Null
        } else {
            serde_json::from_str(text).unwrap_or(Value::Null)
        };
        let frame = Frame {
            conn: id,
            at: Instant::now(),
            text: text.to_string(),
            json,
        };
        let is_hello = frame.is_hello();
        self.lock().frames.push(frame);
        is_hello
    }

    pub(super) fn pinged(&self) {
        self.lock().pings += 1;
    }

    pub(super) fn ack_time(&self) -> String {
        let skew = chrono::Duration::seconds(self.lock().skew_secs);
        (chrono::Utc::now() + skew).to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
    }
}
