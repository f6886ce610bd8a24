//! The stand-in's runtime side: the accept loop (driven by control messages from the test
//! thread) and one task per connection (TLS, upgrade, hello, frames).

use std::sync::Arc;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::json;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};
use tokio_rustls::TlsAcceptor;
use tokio_tungstenite::tungstenite::handshake::server::{ErrorResponse, Request, Response};
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};

use super::WS_PATH;
use super::state::{Behaviour, Outgoing, Shared, Signal};

/// How long a client may take for the TLS handshake and for the upgrade request, each.
const HANDSHAKE_LIMIT: Duration = Duration::from_secs(10);

/// Messages from the test thread to the accept loop; each carries an acknowledgement so the
/// caller returns only when the listener is really open or closed.
pub(super) enum Control {
    Listen(std::net::TcpListener, std::sync::mpsc::Sender<()>),
    Stop(std::sync::mpsc::Sender<()>),
    Shutdown,
}

pub(super) async fn control_loop(
    shared: Arc<Shared>,
    tls: Option<TlsAcceptor>,
    listener: std::net::TcpListener,
    mut control: mpsc::UnboundedReceiver<Control>,
) {
    let mut listener = Some(to_tokio(listener));
    loop {
        tokio::select! {
            msg = control.recv() => match msg {
                None | Some(Control::Shutdown) => return,
                Some(Control::Listen(std_listener, ack)) => {
                    listener = Some(to_tokio(std_listener));
                    let _ = ack.send(());
                }
                Some(Control::Stop(ack)) => {
                    listener = None;
                    let _ = ack.send(());
                }
            },
            accepted = accept(listener.as_ref()) => match accepted {
                Ok(stream) => {
                    let (id, behaviour) = shared.accepted();
                    let (shared, tls) = (shared.clone(), tls.clone());
                    tokio::spawn(connection(shared, tls, stream, id, behaviour));
                }
                Err(err) => {
                    shared.note(0, format!("accept failed: {err}"));
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            },
        }
    }
}

fn to_tokio(listener: std::net::TcpListener) -> TcpListener {
    listener
        .set_nonblocking(true)
        .expect("ums stand-in: cannot make the listener non-blocking");
    TcpListener::from_std(listener).expect("ums stand-in: cannot register the listener")
}

async fn accept(listener: Option<&TcpListener>) -> std::io::Result<TcpStream> {
    match listener {
        Some(listener) => listener.accept().await.map(|(stream, _)| stream),
        None => std::future::pending().await,
    }
}

/// Removes the connection from the live set however its task ends (also when cancelled).
struct LiveGuard(Arc<Shared>, u64);

impl Drop for LiveGuard {
    fn drop(&mut self) {
        self.0.gone(self.1);
    }
}

async fn connection(
    shared: Arc<Shared>,
    tls: Option<TlsAcceptor>,
    stream: TcpStream,
    id: u64,
    behaviour: Behaviour,
) {
    let _guard = LiveGuard(shared.clone(), id);
    let mut signal = shared.signal.subscribe();
    let epoch = signal.borrow_and_update().epoch;
    let work = async {
        if behaviour == Behaviour::Stall {
            shared.note(
                id,
                "stalling: TCP accepted, TLS and upgrade never answered".into(),
            );
            std::future::pending::<()>().await;
        }
        match tls {
            None => upgrade(&shared, id, behaviour, stream).await,
            Some(acceptor) => {
                match tokio::time::timeout(HANDSHAKE_LIMIT, acceptor.accept(stream)).await {
                    Ok(Ok(stream)) => upgrade(&shared, id, behaviour, stream).await,
                    Ok(Err(err)) => shared.handshake_error(id, format!("tls: {err}")),
                    Err(_) => shared.handshake_error(id, "tls: no handshake within 10 s".into()),
                }
            }
        }
    };
    tokio::select! {
        () = work => {}
        () = killed(&mut signal, epoch) => shared.note(id, "dropped by the stand-in".into()),
    }
}

/// Resolves when the kill epoch moves past `epoch` (go_away, drop_connections).
async fn killed(signal: &mut watch::Receiver<Signal>, epoch: u64) {
    loop {
        if signal.borrow_and_update().epoch != epoch {
            return;
        }
        if signal.changed().await.is_err() {
            std::future::pending::<()>().await;
        }
    }
}

fn error_response(status: u16, body: &str) -> ErrorResponse {
    // tungstenite writes the body after the headers but adds no length: say it ourselves.
    Response::builder()
        .status(status)
        .header("Content-Type", "text/plain")
        .header("Content-Length", body.len().to_string())
        .header("Connection", "close")
        .body(Some(body.to_string()))
        .expect("a valid error response")
}

async fn upgrade<S>(shared: &Arc<Shared>, id: u64, behaviour: Behaviour, stream: S)
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    // The callback's signature (an `http::Response` as the error) is tungstenite's.
    #[allow(clippy::result_large_err)]
    let callback = |request: &Request, response: Response| {
        let path = request.uri().path();
        if path != WS_PATH {
            return Err(error_response(
                404,
                &format!("no WebSocket endpoint at {path}"),
            ));
        }
        if behaviour == Behaviour::Answer503 {
            return Err(error_response(503, "UMS is in update mode"));
        }
        Ok(response)
    };
    let upgraded = tokio::time::timeout(
        HANDSHAKE_LIMIT,
        tokio_tungstenite::accept_hdr_async(stream, callback),
    )
    .await;
    let ws = match upgraded {
        Ok(Ok(ws)) => ws,
        Ok(Err(WsError::Http(response))) if response.status() == 503 => {
            return shared.note(id, "answered the upgrade with 503".into());
        }
        Ok(Err(err)) => return shared.handshake_error(id, format!("websocket: {err}")),
        Err(_) => {
            return shared.handshake_error(id, "websocket: no upgrade within 10 s".into());
        }
    };
    shared.upgraded(id);
    if behaviour == Behaviour::CloseAtOnce {
        shared.note(id, "closing at once after the upgrade".into());
        let mut ws = ws;
        let frame = CloseFrame {
            code: CloseCode::Away,
            reason: "closing at once".into(),
        };
        let _ = ws.close(Some(frame)).await;
        return;
    }
    session(shared, id, behaviour, ws).await;
}

async fn session<S>(
    shared: &Arc<Shared>,
    id: u64,
    behaviour: Behaviour,
    mut ws: tokio_tungstenite::WebSocketStream<S>,
) where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let (tx, mut rx) = mpsc::unbounded_channel::<Outgoing>();
    shared.session_opened(id, tx);
    let mut signal = shared.signal.subscribe();
    let mut acked = false;
    loop {
        if signal.borrow_and_update().frozen {
            // Neither read nor write: pings go unanswered, queued frames wait.
            if signal.changed().await.is_err() {
                std::future::pending::<()>().await;
            }
            continue;
        }
        // Biased: a freeze set before a frame arrived is seen before that frame is read.
        tokio::select! {
            biased;
            changed = signal.changed() => {
                if changed.is_err() {
                    std::future::pending::<()>().await;
                }
            }
            out = rx.recv() => {
                let Some(out) = out else { return };
                if let Err(err) = ws.send(out.into_message()).await {
                    return shared.note(id, format!("send failed: {err}"));
                }
            }
            msg = ws.next() => match msg {
                None => return shared.note(id, "closed (end of stream)".into()),
                Some(Err(err)) => return shared.note(id, format!("websocket error: {err}")),
                Some(Ok(Message::Text(text))) => {
                    let is_hello = shared.record(id, text.as_str(), false);
                    if is_hello && !acked && behaviour != Behaviour::WithholdAck {
                        acked = true;
                        let ack = json!({"hello_ack": {"time": shared.ack_time()}});
                        let mut out = vec![Outgoing::Text(ack.to_string())];
                        out.extend(shared.session_ready(id));
                        for frame in out {
                            if let Err(err) = ws.send(frame.into_message()).await {
                                return shared.note(id, format!("send failed: {err}"));
                            }
                        }
                    }
                }
                Some(Ok(Message::Binary(bytes))) => {
                    shared.record(id, &format!("<binary frame, {} bytes>", bytes.len()), true);
                }
                Some(Ok(Message::Ping(_))) => shared.pinged(),
                Some(Ok(Message::Close(frame))) => {
                    // tungstenite answers the close; the stream ends with the next read.
                    shared.note(id, format!("close frame from the device: {frame:?}"));
                }
                Some(Ok(Message::Pong(_) | Message::Frame(_))) => {}
            },
        }
    }
}
