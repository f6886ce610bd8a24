//! A UMS stand-in: the server end of the device-initiated UMS channel (DESIGN 10,
//! `docs/protocol.md`), for tests only.
//!
//! [`UmsStandIn`] listens on `127.0.0.1` (port chosen by the kernel) and speaks WebSocket over
//! TLS, presenting a server certificate from a [`TestCa`] and requiring a client certificate
//! that chains to a given CA (mutual TLS), or plain `ws://` for the `allow_insecure` tests. It
//! runs on its own std thread with its own tokio runtime, so tests stay synchronous.
//!
//! Protocol: after the upgrade it waits for `{"hello": {...}}`, records it and answers
//! `{"hello_ack": {"time": <now + skew, RFC 3339>}}`; it records every frame the device sends
//! (hello, events, replies, anything else) with a timestamp; a test pushes command frames with
//! [`UmsStandIn::send`] and waits for the reply with [`UmsStandIn::wait_reply`]. A frame sent
//! while no device has been greeted waits and goes out right after the next `hello_ack`.
//!
//! Faults, settable before or while running: [`refuse`](UmsStandIn::refuse),
//! [`answer_503`](UmsStandIn::answer_503), [`close_at_once`](UmsStandIn::close_at_once),
//! [`stall`](UmsStandIn::stall), [`withhold_hello_ack`](UmsStandIn::withhold_hello_ack),
//! [`freeze`](UmsStandIn::freeze), [`send_garbage`](UmsStandIn::send_garbage),
//! [`go_away`](UmsStandIn::go_away), [`drop_connections`](UmsStandIn::drop_connections);
//! [`come_back`](UmsStandIn::come_back) undoes them all. Behaviours apply to connections
//! accepted after they were set; connections already open are changed only by `freeze`,
//! `go_away` and `drop_connections`.

mod pki;
mod serve;
mod state;

use std::net::{SocketAddr, TcpListener};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde_json::Value;
use tokio::sync::{mpsc, watch};
use tokio_rustls::TlsAcceptor;

pub use pki::{UmsPki, certs_from_pem, key_from_pem, server_config};
pub use state::Frame;

use super::tls::{CertKey, TestCa};
use serve::Control;
use state::{Behaviour, Outgoing, Shared, Signal, State};

/// The path of the device endpoint; any other path gets a 404 (recorded as a handshake error).
pub const WS_PATH: &str = "/device-connector/device/ws-connect";

/// The running stand-in; shuts down (closing every connection) when dropped.
pub struct UmsStandIn {
    addr: SocketAddr,
    tls: bool,
    shared: Arc<Shared>,
    control: mpsc::UnboundedSender<Control>,
    thread: Option<JoinHandle<()>>,
}

impl UmsStandIn {
    /// `wss://` with `pki.server`, requiring a client certificate from `pki.ca`.
    pub fn start(pki: &UmsPki) -> UmsStandIn {
        UmsStandIn::start_tls(&pki.server, &pki.ca)
    }

    /// `wss://` presenting `server` (e.g. `pki.foreign_server`), requiring a client
    /// certificate that chains to `client_ca`.
    pub fn start_tls(server: &CertKey, client_ca: &TestCa) -> UmsStandIn {
        let config = server_config(server, client_ca.cert_pem());
        UmsStandIn::launch(Some(TlsAcceptor::from(config)))
    }

    /// Plain `ws://`, no TLS (for the `allow_insecure` tests).
    pub fn start_plain() -> UmsStandIn {
        UmsStandIn::launch(None)
    }

    fn launch(tls: Option<TlsAcceptor>) -> UmsStandIn {
        let listener = TcpListener::bind("127.0.0.1:0").expect("ums stand-in: cannot bind");
        let addr = listener
            .local_addr()
            .expect("ums stand-in: no local address");
        let (signal, _) = watch::channel(Signal::default());
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                listening: true,
                ..State::default()
            }),
            signal,
            started: Instant::now(),
        });
        let (control, control_rx) = mpsc::unbounded_channel();
        let is_tls = tls.is_some();
        let runtime_shared = shared.clone();
        let thread = std::thread::Builder::new()
            .name(format!("ums-standin-{}", addr.port()))
            .spawn(move || {
                let runtime = tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(2)
                    .enable_all()
                    .build()
                    .expect("ums stand-in: cannot build a tokio runtime");
                runtime.block_on(serve::control_loop(
                    runtime_shared,
                    tls,
                    listener,
                    control_rx,
                ));
                runtime.shutdown_timeout(Duration::from_secs(2));
            })
            .expect("ums stand-in: cannot spawn its thread");
        UmsStandIn {
            addr,
            tls: is_tls,
            shared,
            control,
            thread: Some(thread),
        }
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// `127.0.0.1:PORT`
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `wss://localhost:PORT/device-connector/device/ws-connect` (`ws://` when plain).
    pub fn url(&self) -> String {
        let scheme = if self.tls { "wss" } else { "ws" };
        format!("{scheme}://localhost:{}{WS_PATH}", self.addr.port())
    }

    // ---- behaviours ----

    /// Closes the listener: new connections are refused (`ECONNREFUSED`); open sessions stay.
    pub fn refuse(&self) {
        if std::mem::replace(&mut self.shared.lock().listening, false) {
            let (ack, done) = std::sync::mpsc::channel();
            self.control(Control::Stop(ack), done);
        }
    }

    /// Answers every upgrade with `503 Service Unavailable` (UMS update mode).
    pub fn answer_503(&self) {
        self.set_behaviour(Behaviour::Answer503);
    }

    /// Completes the upgrade, then sends a close frame (1001) and closes.
    pub fn close_at_once(&self) {
        self.set_behaviour(Behaviour::CloseAtOnce);
    }

    /// Accepts TCP and never answers the TLS handshake (or the upgrade, when plain).
    pub fn stall(&self) {
        self.set_behaviour(Behaviour::Stall);
    }

    /// Records hellos but never answers them (the device should give up after 10 s).
    pub fn withhold_hello_ack(&self) {
        self.set_behaviour(Behaviour::WithholdAck);
    }

    /// Open sessions stop reading and writing (pings go unanswered); the TCP connection stays.
    pub fn freeze(&self) {
        self.shared
            .signal
            .send_modify(|signal| signal.frozen = true);
    }

    /// Sends a non-JSON text frame, then a binary frame (to the greeted sessions, or after the
    /// next `hello_ack`).
    pub fn send_garbage(&self) {
        self.push(Outgoing::Text("this is not JSON {".into()));
        self.push(Outgoing::Binary(vec![0xde, 0xad, 0xbe, 0xef]));
    }

    /// The server goes down: refuses new connections and drops every open one without a
    /// close frame or TLS `close_notify` (as a crash would). Returns when they are closed.
    pub fn go_away(&self) {
        self.refuse();
        self.drop_connections();
    }

    /// Drops every open connection (as [`go_away`](Self::go_away)) but keeps listening.
    pub fn drop_connections(&self) {
        let newest = self.shared.lock().next_id;
        self.shared.signal.send_modify(|signal| signal.epoch += 1);
        super::wait_until(
            "the stand-in to drop its connections",
            Duration::from_secs(5),
            || self.shared.lock().live.range(..=newest).next().is_none(),
        );
    }

    /// Back to normal: listening again on the same port, normal behaviour, not frozen.
    pub fn come_back(&self) {
        self.set_behaviour(Behaviour::Normal);
        self.shared
            .signal
            .send_modify(|signal| signal.frozen = false);
        if self.shared.lock().listening {
            return;
        }
        let listener = TcpListener::bind(self.addr).unwrap_or_else(|err| {
            panic!("ums stand-in: cannot listen on {} again: {err}", self.addr)
        });
        let (ack, done) = std::sync::mpsc::channel();
        self.control(Control::Listen(listener, ack), done);
        self.shared.lock().listening = true;
    }

    /// `hello_ack` times are `now + secs` (negative: the server is behind the device).
    pub fn set_clock_skew(&self, secs: i64) {
        self.shared.lock().skew_secs = secs;
    }

    fn set_behaviour(&self, behaviour: Behaviour) {
        self.shared.lock().behaviour = behaviour;
    }

    fn control(&self, message: Control, done: std::sync::mpsc::Receiver<()>) {
        self.control
            .send(message)
            .expect("ums stand-in: its runtime is gone");
        done.recv_timeout(Duration::from_secs(5))
            .expect("ums stand-in: no acknowledgement from its runtime");
    }

    // ---- sending ----

    /// Sends `frame` (a command) to every greeted session; with none, it waits for the next
    /// `hello_ack`. Returns how many sessions it went to (0: queued).
    pub fn send(&self, frame: &Value) -> usize {
        self.push(Outgoing::Text(frame.to_string()))
    }

    /// Sends a raw text frame, like [`send`](Self::send).
    pub fn send_text(&self, text: &str) -> usize {
        self.push(Outgoing::Text(text.to_string()))
    }

    /// Sends a binary frame, like [`send`](Self::send).
    pub fn send_binary(&self, bytes: &[u8]) -> usize {
        self.push(Outgoing::Binary(bytes.to_vec()))
    }

    fn push(&self, out: Outgoing) -> usize {
        let mut state = self.shared.lock();
        let ready: Vec<_> = state
            .sessions
            .values()
            .filter(|session| session.ready)
            .map(|session| session.tx.clone())
            .collect();
        if ready.is_empty() {
            state.pending.push_back(out);
            return 0;
        }
        let (text, binary) = match out {
            Outgoing::Text(text) => (Some(text), Vec::new()),
            Outgoing::Binary(bytes) => (None, bytes),
        };
        for tx in &ready {
            let copy = match &text {
                Some(text) => Outgoing::Text(text.clone()),
                None => Outgoing::Binary(binary.clone()),
            };
            let _ = tx.send(copy);
        }
        ready.len()
    }

    // ---- records ----

    /// Every frame the device sent, oldest first.
    pub fn frames(&self) -> Vec<Frame> {
        self.shared.lock().frames.clone()
    }

    /// The `{"hello": ...}` frames.
    pub fn hellos(&self) -> Vec<Frame> {
        self.frames_where(Frame::is_hello)
    }

    /// The `{"event": ...}` frames.
    pub fn events(&self) -> Vec<Frame> {
        self.frames_where(Frame::is_event)
    }

    /// The replies (frames with `result`).
    pub fn replies(&self) -> Vec<Frame> {
        self.frames_where(Frame::is_reply)
    }

    /// The replies whose `id` is `id`.
    pub fn replies_for(&self, id: &str) -> Vec<Frame> {
        self.frames_where(|frame| frame.is_reply() && frame.id() == Some(id))
    }

    fn frames_where(&self, keep: impl Fn(&Frame) -> bool) -> Vec<Frame> {
        let state = self.shared.lock();
        state.frames.iter().filter(|f| keep(f)).cloned().collect()
    }

    /// TCP connections accepted so far, whatever happened to them next.
    pub fn connections(&self) -> usize {
        self.shared.lock().connections
    }

    /// WebSocket upgrades completed so far.
    pub fn upgrades(&self) -> usize {
        self.shared.lock().upgrades
    }

    /// Sessions open now that got their `hello_ack`.
    pub fn greeted_sessions(&self) -> usize {
        let state = self.shared.lock();
        state.sessions.values().filter(|s| s.ready).count()
    }

    /// WebSocket pings received.
    pub fn pings(&self) -> usize {
        self.shared.lock().pings
    }

    /// Why connections were refused, as rustls or tungstenite said it, prefixed `tls: ` or
    /// `websocket: ` (e.g. `tls: peer sent no certificates`).
    pub fn handshake_errors(&self) -> Vec<String> {
        self.shared.lock().handshake_errors.clone()
    }

    /// What happened to each connection, for diagnostics (printed when a test panics).
    pub fn log(&self) -> Vec<String> {
        self.shared.lock().log.clone()
    }

    // ---- waiting ----

    /// Waits for the `n`th hello and returns all of them.
    pub fn wait_hellos(&self, n: usize, timeout: Duration) -> Vec<Frame> {
        let what = format!("{n} hello(s) at {}", self.url());
        super::wait_until(&what, timeout, || self.hellos().len() >= n);
        self.hellos()
    }

    /// Waits until a session is open and greeted.
    pub fn wait_greeted(&self, timeout: Duration) {
        let what = format!("a greeted session at {}", self.url());
        super::wait_until(&what, timeout, || self.greeted_sessions() > 0);
    }

    /// Waits for `n` events and returns all of them.
    pub fn wait_events(&self, n: usize, timeout: Duration) -> Vec<Frame> {
        let what = format!("{n} event(s) at {}", self.url());
        super::wait_until(&what, timeout, || self.events().len() >= n);
        self.events()
    }

    /// Waits for the first reply with `id` and returns it.
    pub fn wait_reply(&self, id: &str, timeout: Duration) -> Frame {
        self.wait_replies(id, 1, timeout).remove(0)
    }

    /// Waits for `n` replies with `id` (a replayed command) and returns all of them.
    pub fn wait_replies(&self, id: &str, n: usize, timeout: Duration) -> Vec<Frame> {
        let what = format!("{n} reply(ies) to {id:?} at {}", self.url());
        super::wait_until(&what, timeout, || self.replies_for(id).len() >= n);
        self.replies_for(id)
    }

    /// Waits for the `n`th handshake error and returns all of them.
    pub fn wait_handshake_errors(&self, n: usize, timeout: Duration) -> Vec<String> {
        let what = format!("{n} handshake error(s) at {}", self.url());
        super::wait_until(&what, timeout, || self.handshake_errors().len() >= n);
        self.handshake_errors()
    }
}

impl Drop for UmsStandIn {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("--- ums stand-in {} ---", self.url());
            for line in self.log() {
                eprintln!("{line}");
            }
            for frame in self.frames() {
                eprintln!("#{} <- {}", frame.conn, frame.text);
            }
        }
        let _ = self.control.send(Control::Shutdown);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
