//! The UMS stand-in (tests/it/support/ums.rs) proven against a minimal WebSocket client written
//! here (tokio-tungstenite `client_async` over tokio-rustls with a client certificate), so the
//! agent's UMS tests can trust what the stand-in records.

use std::io;
use std::sync::Arc;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use rustls::pki_types::ServerName;
use rustls::{ClientConfig, RootCertStore};
use serde_json::{Value, json};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio::runtime::Runtime;
use tokio_rustls::TlsConnector;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};

use crate::support::ums::{certs_from_pem, key_from_pem};
use crate::support::{CertKey, TestCa, UmsPki, UmsStandIn};

const WAIT: Duration = Duration::from_secs(10);

trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

#[derive(Debug)]
enum ConnectError {
    Tcp(io::Error),
    Tls(io::Error),
    Ws(WsError),
    TimedOut,
}

/// How the test client does TLS: trust `ca`, present `identity` (or no certificate).
struct ClientTls<'a> {
    ca: &'a TestCa,
    identity: Option<&'a CertKey>,
}

struct Client {
    runtime: Runtime,
    ws: WebSocketStream<Box<dyn Io>>,
}

fn runtime() -> Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("cannot build a tokio runtime")
}

fn client_config(tls: &ClientTls) -> Arc<ClientConfig> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = RootCertStore::empty();
    for cert in certs_from_pem(tls.ca.cert_pem()) {
        roots.add(cert).expect("the test CA is usable");
    }
    let builder = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("ring supports the default versions")
        .with_root_certificates(roots);
    let config = match tls.identity {
        Some(id) => builder
            .with_client_auth_cert(certs_from_pem(&id.cert_pem), key_from_pem(&id.key_pem))
            .expect("the client certificate is usable"),
        None => builder.with_no_client_auth(),
    };
    Arc::new(config)
}

/// TCP to the stand-in's port, TLS when `tls` is given, then the WebSocket upgrade on `url`.
fn connect(standin: &UmsStandIn, tls: Option<ClientTls>) -> Result<Client, ConnectError> {
    connect_to(standin, &standin.url(), tls)
}

fn connect_to(
    standin: &UmsStandIn,
    url: &str,
    tls: Option<ClientTls>,
) -> Result<Client, ConnectError> {
    let runtime = runtime();
    let addr = standin.addr();
    let ws = runtime.block_on(async {
        let attempt = async {
            let tcp = TcpStream::connect(addr).await.map_err(ConnectError::Tcp)?;
            let stream: Box<dyn Io> = match &tls {
                None => Box::new(tcp),
                Some(tls) => {
                    let connector = TlsConnector::from(client_config(tls));
                    let name = ServerName::try_from("localhost").expect("a valid name");
                    let stream = connector
                        .connect(name, tcp)
                        .await
                        .map_err(ConnectError::Tls)?;
                    Box::new(stream)
                }
            };
            let (ws, response) = tokio_tungstenite::client_async(url, stream)
                .await
                .map_err(ConnectError::Ws)?;
            assert_eq!(response.status(), 101);
            Ok(ws)
        };
        tokio::time::timeout(Duration::from_secs(2), attempt)
            .await
            .unwrap_or(Err(ConnectError::TimedOut))
    })?;
    Ok(Client { runtime, ws })
}

fn device(pki: &UmsPki) -> Option<ClientTls<'_>> {
    Some(ClientTls {
        ca: &pki.ca,
        identity: Some(&pki.device),
    })
}

impl Client {
    fn send(&mut self, frame: &Value) {
        self.send_message(Message::text(frame.to_string()));
    }

    fn send_message(&mut self, message: Message) {
        self.runtime
            .block_on(self.ws.send(message))
            .expect("the client cannot send");
    }

    /// The next message (`None` when the stream ended), or `Err` when `within` passed first.
    fn next_within(
        &mut self,
        within: Duration,
    ) -> Result<Option<Result<Message, WsError>>, tokio::time::error::Elapsed> {
        let ws = &mut self.ws;
        self.runtime
            .block_on(async { tokio::time::timeout(within, ws.next()).await })
    }

    /// The next message, or `None` when the stream ended; panics after 5 s.
    fn next(&mut self) -> Option<Result<Message, WsError>> {
        self.next_within(Duration::from_secs(5))
            .expect("no message from the stand-in within 5 s")
    }

    fn next_json(&mut self) -> Value {
        match self.next() {
            Some(Ok(Message::Text(text))) => serde_json::from_str(&text).expect("JSON"),
            other => panic!("expected a text frame, got {other:?}"),
        }
    }

    /// Sends the hello and returns the `hello_ack`'s `time`.
    fn hello(&mut self, device_id: &str) -> String {
        let hello = json!({"hello": {
            "device_id": device_id,
            "agent_version": "0.1.0",
            "status": {"update_status": "Update not necessary"},
        }});
        self.send(&hello);
        let ack = self.next_json();
        ack["hello_ack"]["time"]
            .as_str()
            .unwrap_or_else(|| panic!("not a hello_ack: {ack}"))
            .to_string()
    }
}

fn seconds_from_now(rfc3339: &str) -> i64 {
    let time = chrono::DateTime::parse_from_rfc3339(rfc3339).expect("RFC 3339");
    (time.with_timezone(&chrono::Utc) - chrono::Utc::now()).num_seconds()
}

#[test]
fn hello_gets_a_hello_ack_with_the_time_and_is_recorded() {
    let pki = UmsPki::new();
    let standin = UmsStandIn::start(&pki);
    assert!(standin.url().starts_with("wss://localhost:"));
    assert!(
        standin
            .url()
            .ends_with("/device-connector/device/ws-connect")
    );

    let mut client = connect(&standin, device(&pki)).expect("connect");
    let time = client.hello("dev-1");
    assert!(time.ends_with('Z'), "{time}");
    assert!(seconds_from_now(&time).abs() <= 5, "{time}");

    let hellos = standin.wait_hellos(1, WAIT);
    assert_eq!(hellos[0].json["hello"]["device_id"], "dev-1");
    assert_eq!(hellos[0].conn, 1);
    assert_eq!((standin.connections(), standin.upgrades()), (1, 1));
    standin.wait_greeted(WAIT);

    // A skewed clock shows in the next session's hello_ack.
    standin.set_clock_skew(-3600);
    let mut client = connect(&standin, device(&pki)).expect("connect again");
    let time = client.hello("dev-1");
    assert!((seconds_from_now(&time) + 3600).abs() <= 5, "{time}");
}

#[test]
fn commands_reach_the_device_and_replies_and_events_are_recorded() {
    let pki = UmsPki::new();
    let standin = UmsStandIn::start(&pki);
    // Sent before any device is connected: waits for the next hello_ack.
    assert_eq!(
        standin.send(&json!({"id": "early", "command": "status"})),
        0
    );

    let mut client = connect(&standin, device(&pki)).expect("connect");
    client.hello("dev-1");
    assert_eq!(client.next_json()["id"], "early");
    standin.wait_greeted(WAIT);

    let command = json!({"id": "u-1", "command": "update", "force": true});
    assert_eq!(standin.send(&command), 1);
    assert_eq!(client.next_json(), command);
    client.send(
        &json!({"event": "status", "ts": "2026-11-22T16:35:00Z", "app": "chromium",
        "version": "120.0.1", "state": "installed", "message": "Update successful"}),
    );
    client.send(&json!({"id": "u-1", "result": "accepted"}));
    client.send(&json!({"id": "u-1", "result": "accepted"}));

    let reply = standin.wait_reply("u-1", WAIT);
    assert_eq!(reply.json["result"], "accepted");
    assert_eq!(standin.wait_replies("u-1", 2, WAIT).len(), 2);
    let events = standin.wait_events(1, WAIT);
    assert_eq!(events[0].json["message"], "Update successful");
    assert!(events[0].at <= reply.at);
    assert_eq!(standin.frames().len(), 4, "hello, event, two replies");
}

#[test]
fn a_device_without_a_client_certificate_is_refused_and_the_reason_recorded() {
    let pki = UmsPki::new();
    let standin = UmsStandIn::start(&pki);
    let no_cert = Some(ClientTls {
        ca: &pki.ca,
        identity: None,
    });
    // With TLS 1.3 the client finishes its side of the handshake before the server has
    // checked the (missing) certificate: the refusal reaches it during the upgrade, as a
    // rustls alert inside a tungstenite I/O error.
    let err = connect(&standin, no_cert).err().expect("refused");
    assert!(
        matches!(&err, ConnectError::Ws(WsError::Io(e)) if e.to_string().contains("CertificateRequired")),
        "{err:?}"
    );
    let errors = standin.wait_handshake_errors(1, WAIT);
    assert_eq!(errors, ["tls: peer sent no certificates"]);

    let foreign = Some(ClientTls {
        ca: &pki.ca,
        identity: Some(&pki.foreign_device),
    });
    let err = connect(&standin, foreign).err().expect("refused");
    assert!(format!("{err:?}").contains("UnknownCA"), "{err:?}");
    let errors = standin.wait_handshake_errors(2, WAIT);
    assert!(
        errors[1].starts_with("tls: invalid peer certificate"),
        "{errors:?}"
    );
    assert!(errors[1].contains("UnknownIssuer"), "{errors:?}");
    assert_eq!((standin.connections(), standin.upgrades()), (2, 0));
}

#[test]
fn a_server_certificate_from_another_ca_fails_the_clients_verification() {
    let pki = UmsPki::new();
    let standin = UmsStandIn::start_tls(&pki.foreign_server, &pki.ca);
    let err = connect(&standin, device(&pki)).err().expect("refused");
    assert!(
        matches!(&err, ConnectError::Tls(e) if e.to_string().contains("UnknownIssuer")),
        "{err:?}"
    );
}

#[test]
fn answer_503_fails_the_upgrade_and_come_back_restores_it() {
    let pki = UmsPki::new();
    let standin = UmsStandIn::start(&pki);
    standin.answer_503();
    match connect(&standin, device(&pki)).err() {
        Some(ConnectError::Ws(WsError::Http(response))) => assert_eq!(response.status(), 503),
        other => panic!("expected an HTTP 503, got {other:?}"),
    }
    assert_eq!((standin.connections(), standin.upgrades()), (1, 0));

    standin.come_back();
    connect(&standin, device(&pki))
        .expect("connect")
        .hello("dev-1");
}

#[test]
fn close_at_once_upgrades_then_closes() {
    let pki = UmsPki::new();
    let standin = UmsStandIn::start(&pki);
    standin.close_at_once();
    let mut client = connect(&standin, device(&pki)).expect("the upgrade succeeds");
    match client.next() {
        Some(Ok(Message::Close(Some(frame)))) => assert_eq!(u16::from(frame.code), 1001),
        other => panic!("expected a close frame, got {other:?}"),
    }
    assert_eq!(standin.upgrades(), 1);
    assert!(standin.hellos().is_empty());
}

#[test]
fn plain_ws_mode_speaks_the_same_protocol() {
    let standin = UmsStandIn::start_plain();
    assert!(standin.url().starts_with("ws://localhost:"));
    let mut client = connect(&standin, None).expect("connect");
    client.hello("dev-plain");
    standin.send(&json!({"id": "s-1", "command": "status"}));
    assert_eq!(client.next_json()["id"], "s-1");
    client.send(&json!({"id": "s-1", "result": "accepted", "status": {}}));
    standin.wait_reply("s-1", WAIT);
}

#[test]
fn refuse_go_away_and_come_back() {
    let pki = UmsPki::new();
    let standin = UmsStandIn::start(&pki);
    standin.refuse();
    assert!(matches!(
        connect(&standin, device(&pki)),
        Err(ConnectError::Tcp(e)) if e.kind() == io::ErrorKind::ConnectionRefused
    ));
    standin.come_back();
    let mut client = connect(&standin, device(&pki)).expect("listening again, same port");
    client.hello("dev-1");
    standin.wait_greeted(WAIT);

    standin.go_away();
    assert!(
        matches!(client.next(), None | Some(Err(_))),
        "dropped without a close frame"
    );
    assert_eq!(standin.greeted_sessions(), 0);
    assert!(matches!(
        connect(&standin, device(&pki)),
        Err(ConnectError::Tcp(_))
    ));
    standin.come_back();
    connect(&standin, device(&pki))
        .expect("back")
        .hello("dev-1");
}

#[test]
fn stall_never_answers_the_tls_handshake() {
    let pki = UmsPki::new();
    let standin = UmsStandIn::start(&pki);
    standin.stall();
    assert!(matches!(
        connect(&standin, device(&pki)),
        Err(ConnectError::TimedOut)
    ));
    assert_eq!((standin.connections(), standin.upgrades()), (1, 0));
}

#[test]
fn garbage_is_a_non_json_text_frame_then_a_binary_frame() {
    let pki = UmsPki::new();
    let standin = UmsStandIn::start(&pki);
    let mut client = connect(&standin, device(&pki)).expect("connect");
    client.hello("dev-1");
    standin.wait_greeted(WAIT);
    standin.send_garbage();
    match client.next() {
        Some(Ok(Message::Text(text))) => {
            assert!(serde_json::from_str::<Value>(&text).is_err(), "{text}")
        }
        other => panic!("expected a text frame, got {other:?}"),
    }
    assert!(matches!(client.next(), Some(Ok(Message::Binary(_)))));
}

#[test]
fn withhold_hello_ack_and_freeze() {
    let pki = UmsPki::new();
    let standin = UmsStandIn::start(&pki);
    standin.withhold_hello_ack();
    let mut client = connect(&standin, device(&pki)).expect("connect");
    client.send(&json!({"hello": {"device_id": "dev-1"}}));
    standin.wait_hellos(1, WAIT);
    let silence = client.next_within(Duration::from_millis(300));
    assert!(silence.is_err(), "no hello_ack: {silence:?}");

    standin.come_back();
    let mut client = connect(&standin, device(&pki)).expect("connect");
    client.hello("dev-1");
    standin.freeze();
    client.send_message(Message::Ping(b"hb".to_vec().into()));
    let silence = client.next_within(Duration::from_millis(300));
    assert!(silence.is_err(), "no pong: {silence:?}");
    assert_eq!(standin.pings(), 0);
    standin.come_back();
    assert!(matches!(client.next(), Some(Ok(Message::Pong(_)))));
    assert_eq!(standin.pings(), 1);
}

#[test]
fn a_wrong_path_gets_404_and_is_recorded() {
    let pki = UmsPki::new();
    let standin = UmsStandIn::start(&pki);
    let url = format!("wss://localhost:{}/elsewhere", standin.port());
    match connect_to(&standin, &url, device(&pki)).err() {
        Some(ConnectError::Ws(WsError::Http(response))) => assert_eq!(response.status(), 404),
        other => panic!("expected an HTTP 404, got {other:?}"),
    }
    let errors = standin.wait_handshake_errors(1, WAIT);
    assert!(errors[0].starts_with("websocket: "), "{errors:?}");
}
