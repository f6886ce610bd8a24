//! The UMS channel (DESIGN 10, `docs/protocol.md`): a device-initiated WebSocket over mutual
//! TLS to the first reachable URL of `[ums] urls`. The device says hello, takes commands
//! (through the same handler as the control socket: persisted before the reply, idempotent by
//! id), sends status events as they happen and the ones queued while it was disconnected, and
//! pings every `[ums] heartbeat` (30 s). A server that refuses, answers 503 (update mode),
//! does not acknowledge the hello or closes at once is skipped; when every URL failed the next
//! round starts after an exponential backoff with full jitter (1 s to 5 min), after a lost
//! session within a second.
//!
//! What the channel last saw is kept in `<state>/ums.json` for `check`.

pub mod connect;
pub mod protocol;

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, SecondsFormat, Utc};
use futures_util::{SinkExt, StreamExt};
use rand::Rng;
use serde::{Deserialize, Serialize};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

use crate::config::settings::UmsSettings;
use crate::control;
use crate::control::server::Handler;
use crate::store::Store;
use connect::{ConnectError, Ws};
pub use protocol::read_hello_ack;
use protocol::{Event, Hello, Outgoing};

pub const BACKOFF_FIRST: Duration = Duration::from_secs(1);
pub const BACKOFF_CAP: Duration = Duration::from_secs(5 * 60);
/// A server that closes sooner after the upgrade is treated as down.
pub const CLOSES_AT_ONCE: Duration = Duration::from_secs(5);
pub const HELLO_ACK_TIMEOUT: Duration = Duration::from_secs(10);
/// Clocks further apart than this are warned about (IGEL requires them to agree).
pub const MAX_CLOCK_SKEW: Duration = Duration::from_secs(60);
pub const RECORD_FILE: &str = "ums.json";

/// The status document for `hello` (the same as `status --json` and the `status` command).
pub type StatusFn = Arc<dyn Fn() -> crate::report::Status + Send + Sync>;

pub struct Channel {
    settings: UmsSettings,
    connect_timeout: Duration,
    store: Arc<Store>,
    handler: Handler,
    status: StatusFn,
    /// Becomes `true` when the daemon stops or the channel is replaced: an open session is
    /// closed with 1001 (going away), a pending round is not started.
    stop: crate::shutdown::Shutdown,
    /// The clock difference at the last `hello_ack`, kept in the record across failures.
    clock_skew_s: Option<i64>,
}

/// How one attempt on one URL ended.
enum SessionEnd {
    /// Not connected, or closed at once: the server counts as down; next URL.
    Failed(String),
    /// A session that lasted; the next round starts at the first URL within a second.
    Ended(String),
}

/// What the channel last saw, for `check` and `status` (`<state>/ums.json`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ConnectionRecord {
    /// The URL of the open session, if any.
    pub connected: Option<String>,
    pub since: Option<String>,
    /// The server's clock minus the device's, at the last `hello_ack`, in seconds.
    pub clock_skew_s: Option<i64>,
    pub last_failure: Option<String>,
    pub last_failure_at: Option<String>,
}

impl ConnectionRecord {
    pub fn read(state_dir: &Path) -> Option<ConnectionRecord> {
        let bytes = crate::durable::read_regular(&state_dir.join(RECORD_FILE), 64 * 1024).ok()?;
        serde_json::from_slice(&bytes).ok()
    }

    /// "connected to URL since T", "not connected; last failure at T: why", or the clean
    /// close of a daemon that stopped.
    pub fn describe(&self) -> String {
        // Stored as RFC 3339 (UTC); shown in local time like every time people read.
        let at = |t: &Option<String>| match t.as_deref().map(chrono::DateTime::parse_from_rfc3339) {
            Some(Ok(t)) => t
                .with_timezone(&chrono::Local)
                .format("%Y-%m-%d %H:%M:%S")
                .to_string(),
            Some(Err(_)) => crate::report::clean(t.as_deref().unwrap_or_default()).into_owned(),
            None => "?".into(),
        };
        match (&self.connected, &self.last_failure) {
            (Some(url), _) => format!("connected to {url} since {}", at(&self.since)),
            (None, Some(reason)) => format!(
                "not connected; last failure at {}: {reason}",
                at(&self.last_failure_at)
            ),
            (None, None) => "not connected (the daemon closed the channel when it stopped)".into(),
        }
    }
}

/// The pause before round `n` (1 = after the first failed round): random in `[0, cap]` with
/// `cap = 1 s * 2^(n-1)`, at most 5 min ("full jitter": a fleet that lost its UMS together
/// does not come back together).
pub fn backoff(n: u32) -> Duration {
    let cap = BACKOFF_FIRST
        .saturating_mul(1u32 << n.saturating_sub(1).min(16))
        .min(BACKOFF_CAP);
    rand::rng().random_range(Duration::ZERO..=cap)
}

/// `[ums] device_id`, else `/etc/machine-id`.
pub fn device_id(settings: &UmsSettings) -> Result<String, String> {
    if let Some(id) = &settings.device_id {
        return Ok(id.clone());
    }
    let path = "/etc/machine-id";
    match std::fs::read_to_string(path) {
        Ok(id) if !id.trim().is_empty() => Ok(id.trim().to_string()),
        Ok(_) => Err(format!("{path} is empty; set [ums] device_id")),
        Err(e) => Err(format!("cannot read {path} ({e}); set [ums] device_id")),
    }
}

impl Channel {
    pub fn new(
        settings: UmsSettings,
        connect_timeout: Duration,
        store: Arc<Store>,
        handler: Handler,
        status: StatusFn,
        stop: crate::shutdown::Shutdown,
    ) -> Channel {
        // What an earlier run saw stays in the record until the next hello_ack.
        let clock_skew_s = ConnectionRecord::read(store.state_dir()).and_then(|r| r.clock_skew_s);
        Channel {
            settings,
            connect_timeout,
            store,
            handler,
            status,
            stop,
            clock_skew_s,
        }
    }

    /// Runs until `stop` (or the task is dropped).
    pub async fn run(mut self) {
        if self.settings.allow_insecure {
            tracing::warn!(
                "[ums] allow_insecure = true: the UMS server's identity is NOT checked and ws:// is allowed; for tests only"
            );
        }
        if self.settings.client_certificate.is_none() {
            tracing::warn!(
                "[ums] has no client_certificate: a UMS that requires mutual TLS will refuse this device"
            );
        }
        let device_id = match device_id(&self.settings) {
            Ok(id) => id,
            Err(e) => {
                tracing::error!("UMS channel not started: {e}");
                self.record_failure(&e);
                return;
            }
        };
        let mut failed_rounds = 0u32;
        loop {
            let mut lasted = false;
            for url in self.settings.urls.clone() {
                if self.stop.is_shutdown() {
                    return;
                }
                let end = self.session(&url, &device_id).await;
                if self.stop.is_shutdown() {
                    // Closed on purpose: nothing failed.
                    self.record(ConnectionRecord::default());
                    return;
                }
                match end {
                    SessionEnd::Failed(reason) => {
                        self.record_failure(&format!("{url}: {reason}"));
                        tracing::warn!("UMS {url}: {reason}; trying the next server");
                    }
                    SessionEnd::Ended(reason) => {
                        self.record_failure(&format!("{url}: {reason}"));
                        tracing::warn!("UMS {url}: connection lost: {reason}; reconnecting");
                        lasted = true;
                        break;
                    }
                }
            }
            let pause = if lasted {
                // A fleet that lost its server together must not come back in the same
                // instant: the first step of the backoff (at most 1 s), then the first URL again.
                failed_rounds = 0;
                backoff(1)
            } else {
                failed_rounds = failed_rounds.saturating_add(1);
                let pause = backoff(failed_rounds);
                tracing::warn!(
                    "UMS: none of {} server(s) reachable; next attempt in {:.1}s",
                    self.settings.urls.len(),
                    pause.as_secs_f64()
                );
                pause
            };
            tokio::select! {
                () = tokio::time::sleep(pause) => {}
                () = self.stop.recv() => return,
            }
        }
    }

    async fn session(&mut self, url: &str, device_id: &str) -> SessionEnd {
        let tls = if url.starts_with("wss:") {
            match crate::tls::ums_client_config(&self.settings) {
                Ok(c) => Some(c),
                Err(e) => return SessionEnd::Failed(e),
            }
        } else {
            None
        };
        let connection = match connect::connect(url, tls, self.connect_timeout).await {
            Ok(c) => c,
            Err(e) => return SessionEnd::Failed(e.to_string()),
        };
        let mut ws = connection.ws;
        let upgraded = Instant::now();
        let mut greeted = false;
        let end = self.converse(&mut ws, url, device_id, &mut greeted).await;
        let reason = match end {
            Ok(reason) => reason,
            Err(e) => e.to_string(),
        };
        if !self.stop.is_shutdown() {
            // Best effort: the server may be gone already. (Stopping sent its close already.)
            let _ = tokio::time::timeout(Duration::from_secs(1), ws.close(None)).await;
        }
        if !greeted {
            // No hello_ack (however long it took): the server is of no use; next URL.
            SessionEnd::Failed(reason)
        } else if upgraded.elapsed() < CLOSES_AT_ONCE {
            SessionEnd::Failed(format!(
                "{reason} within {:.1}s of connecting",
                upgraded.elapsed().as_secs_f64()
            ))
        } else {
            SessionEnd::Ended(reason)
        }
    }

    /// Hello, then commands, events and heartbeats until the connection ends; returns why.
    async fn converse(
        &mut self,
        ws: &mut Ws,
        url: &str,
        device_id: &str,
        greeted: &mut bool,
    ) -> Result<String, ConnectError> {
        let status = (self.status)();
        send(ws, Outgoing::Hello(Hello::new(device_id, &status))).await?;
        let server_time = match tokio::time::timeout(HELLO_ACK_TIMEOUT, self.hello_ack(ws)).await {
            Ok(Ok(Some(time))) => time,
            Ok(Ok(None)) => return Ok("the server closed the connection before hello_ack".into()),
            Ok(Err(e)) => return Err(e),
            Err(_) => return Ok(format!("no hello_ack within {HELLO_ACK_TIMEOUT:?}")),
        };
        *greeted = true;
        let skew = server_time.signed_duration_since(Utc::now()).num_seconds();
        self.clock_skew_s = Some(skew);
        // Recorded before it is logged: whoever reads the log line finds the file up to date.
        self.record(ConnectionRecord {
            connected: Some(url.to_string()),
            since: Some(now_text()),
            clock_skew_s: Some(skew),
            ..ConnectionRecord::default()
        });
        if skew.unsigned_abs() > MAX_CLOCK_SKEW.as_secs() {
            tracing::warn!(
                "UMS {url}: the server's clock is {}s {} this device's (more than {}s: check NTP)",
                skew.abs(),
                if skew > 0 { "ahead of" } else { "behind" },
                MAX_CLOCK_SKEW.as_secs()
            );
        }
        tracing::info!("UMS: connected to {url} as {device_id}");
        self.flush_events(ws).await?;
        let every = self.settings.heartbeat;
        let mut heartbeat = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
        let mut awaiting_pong = false;
        loop {
            tokio::select! {
                frame = ws.next() => {
                    let Some(frame) = frame else {
                        return Ok("the server closed the connection".into());
                    };
                    match frame.map_err(|e| connect::classify_ws(&e))? {
                        Message::Text(text) => {
                            awaiting_pong = false;
                            self.answer(ws, text.as_bytes()).await?;
                        }
                        Message::Binary(_) => {
                            let _ = ws.send(Message::Close(Some(CloseFrame {
                                code: CloseCode::Unsupported,
                                reason: "text frames only".into(),
                            }))).await;
                            return Ok("the server sent a binary frame (protocol error)".into());
                        }
                        Message::Close(frame) => {
                            return Ok(match frame {
                                Some(f) if !f.reason.is_empty() => format!("the server closed the connection ({}: {})", f.code, crate::report::clean(&f.reason)),
                                Some(f) => format!("the server closed the connection ({})", f.code),
                                None => "the server closed the connection".into(),
                            });
                        }
                        // Pings are answered by the WebSocket layer.
                        Message::Pong(_) | Message::Ping(_) | Message::Frame(_) => awaiting_pong = false,
                    }
                }
                () = self.store.events_added() => self.flush_events(ws).await?,
                () = self.stop.recv() => {
                    let _ = ws.send(Message::Close(Some(CloseFrame {
                        code: CloseCode::Away,
                        reason: "the agent is stopping".into(),
                    }))).await;
                    return Ok("the agent is stopping".into());
                }
                _ = heartbeat.tick() => {
                    if awaiting_pong {
                        return Ok(format!("no answer to a ping within {every:?}"));
                    }
                    awaiting_pong = true;
                    ws.send(Message::Ping(Default::default())).await.map_err(|e| connect::classify_ws(&e))?;
                    // A safety net: events whose notification was missed go out now.
                    self.flush_events(ws).await?;
                }
            }
        }
    }

    /// Waits for `hello_ack`; commands that come first are answered. `None`: closed.
    async fn hello_ack(&self, ws: &mut Ws) -> Result<Option<DateTime<Utc>>, ConnectError> {
        while let Some(frame) = ws.next().await {
            match frame.map_err(|e| connect::classify_ws(&e))? {
                Message::Text(text) => {
                    if let Some(ack) = read_hello_ack(&text) {
                        return ack.map(Some).map_err(ConnectError::Protocol);
                    }
                    self.answer(ws, text.as_bytes()).await?;
                }
                Message::Close(_) => return Ok(None),
                Message::Binary(_) => {
                    return Err(ConnectError::Protocol(
                        "the server sent a binary frame".into(),
                    ));
                }
                _ => {}
            }
        }
        Ok(None)
    }

    /// Answers one command frame with its reply frame, through the daemon's handler.
    async fn answer(&self, ws: &mut Ws, frame: &[u8]) -> Result<(), ConnectError> {
        let request = control::parse(frame, Utc::now());
        if let Err(rejection) = &request {
            tracing::warn!(
                "UMS: rejected a frame of {} bytes: {}",
                frame.len(),
                crate::report::clean(&rejection.error)
            );
        }
        let reply = (self.handler)(request, true);
        send(ws, Outgoing::Reply(&reply)).await
    }

    /// Sends what is queued, oldest first; each event leaves the queue once its frame was
    /// written.
    async fn flush_events(&self, ws: &mut Ws) -> Result<(), ConnectError> {
        let pending = self.store.pending_events();
        if pending.dropped == 0 && pending.events.is_empty() {
            return Ok(());
        }
        let mut dropped_sent = 0;
        let mut last_sent = None;
        let mut result = Ok(());
        if pending.dropped > 0 {
            let dropped = Event::Dropped {
                count: pending.dropped,
            };
            result = send(ws, Outgoing::Event(dropped)).await;
            if result.is_ok() {
                tracing::warn!(
                    "UMS: {} status events were dropped while disconnected (queue full)",
                    pending.dropped
                );
                dropped_sent = pending.dropped;
            }
        }
        if result.is_ok() {
            for event in &pending.events {
                result = send(ws, Outgoing::Event(Event::Status(event))).await;
                if result.is_err() {
                    break;
                }
                last_sent = Some(event.seq);
            }
        }
        if (dropped_sent > 0 || last_sent.is_some())
            && let Err(e) = self.store.events_sent(dropped_sent, last_sent)
        {
            tracing::warn!("UMS: cannot record sent events: {e}");
        }
        result
    }

    fn record(&self, record: ConnectionRecord) {
        let path = self.store.state_dir().join(RECORD_FILE);
        if let Ok(bytes) = serde_json::to_vec(&record)
            && let Err(e) = crate::store::write_atomic(&path, &bytes)
        {
            tracing::debug!("cannot write {}: {e}", path.display());
        }
    }

    fn record_failure(&self, reason: &str) {
        self.record(ConnectionRecord {
            connected: None,
            since: None,
            clock_skew_s: self.clock_skew_s,
            last_failure: Some(reason.to_string()),
            last_failure_at: Some(now_text()),
        });
    }
}

async fn send(ws: &mut Ws, frame: Outgoing<'_>) -> Result<(), ConnectError> {
    ws.send(Message::text(frame.text()))
        .await
        .map_err(|e| connect::classify_ws(&e))
}

fn now_text() -> String {
    Utc::now().to_rfc3339_opts(SecondsFormat::Secs, true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_is_full_jitter_doubling_to_five_minutes() {
        for _ in 0..200 {
            assert!(backoff(1) <= Duration::from_secs(1));
            assert!(backoff(3) <= Duration::from_secs(4));
            assert!(backoff(40) <= BACKOFF_CAP);
        }
        // Full jitter: short pauses happen even late.
        assert!((0..200).any(|_| backoff(40) < Duration::from_secs(60)));
    }
}
