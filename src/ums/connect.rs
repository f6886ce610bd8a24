//! Opening one UMS connection: TCP, TLS (mutual), the WebSocket upgrade. Every failure says
//! what went wrong in words an administrator can act on, and whether the server should be
//! treated as down (next URL).

use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::{CertificateDer, ServerName};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::{self, http};
use url::Url;

/// Frames up to this size are read (and a command over 1 MiB answered `rejected`); a larger
/// one ends the connection. Bounds what a server can make the device allocate.
pub const MAX_MESSAGE: usize = 4 * 1024 * 1024;
/// TLS and upgrade, after the TCP connection.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

pub trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

pub type Ws = WebSocketStream<Box<dyn Io>>;

/// Why a connection could not be opened.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConnectError {
    #[error("{0}")]
    Url(String),
    #[error("cannot resolve {host}: {reason}")]
    Dns { host: String, reason: String },
    #[error("cannot connect to {addr}: {reason}")]
    Connect { addr: String, reason: String },
    #[error("TLS: {0}")]
    Tls(String),
    #[error("the server refused the device's client certificate: {0}")]
    ClientCertificate(String),
    #[error("the server answered {status} to the WebSocket upgrade{}", unavailable_note(*.status))]
    Status { status: u16 },
    #[error("{0}")]
    Protocol(String),
    #[error("no answer within {0:?}")]
    Timeout(Duration),
}

fn unavailable_note(status: u16) -> &'static str {
    match status {
        503 => " (Service Unavailable: the UMS is in update mode or overloaded)",
        401 | 403 => " (the device is not allowed: is it registered with this UMS?)",
        404 => " (wrong path in the URL?)",
        _ => "",
    }
}

/// An open connection and the certificates the server showed (empty without TLS).
pub struct Connection {
    pub ws: Ws,
    pub server_certificates: Vec<CertificateDer<'static>>,
}

/// Connects to `url` (`wss://` with `tls`, `ws://` without).
pub async fn connect(
    url: &str,
    tls: Option<Arc<rustls::ClientConfig>>,
    connect_timeout: Duration,
) -> Result<Connection, ConnectError> {
    let parsed = Url::parse(url).map_err(|e| ConnectError::Url(format!("{url}: {e}")))?;
    let host = parsed
        .host_str()
        .ok_or_else(|| ConnectError::Url(format!("{url}: no host")))?
        .trim_matches(['[', ']'])
        .to_string();
    let port = parsed
        .port_or_known_default()
        .unwrap_or(if parsed.scheme() == "ws" { 80 } else { 443 });
    let addrs: Vec<_> = tokio::net::lookup_host((host.as_str(), port))
        .await
        .map_err(|e| ConnectError::Dns {
            host: host.clone(),
            reason: e.to_string(),
        })?
        .collect();
    let tcp = connect_any(&addrs, &host, port, connect_timeout).await?;
    let _ = tcp.set_nodelay(true);
    let (stream, server_certificates): (Box<dyn Io>, _) = match (parsed.scheme(), tls) {
        ("wss", Some(config)) => {
            let name = ServerName::try_from(host.clone())
                .map_err(|e| ConnectError::Url(format!("{url}: {e}")))?;
            let connector = tokio_rustls::TlsConnector::from(config);
            let tls = tokio::time::timeout(HANDSHAKE_TIMEOUT, connector.connect(name, tcp))
                .await
                .map_err(|_| ConnectError::Timeout(HANDSHAKE_TIMEOUT))?
                .map_err(|e| classify_io(&e))?;
            let certs = tls
                .get_ref()
                .1
                .peer_certificates()
                .map(|c| c.iter().map(|c| c.clone().into_owned()).collect())
                .unwrap_or_default();
            (Box::new(tls), certs)
        }
        ("ws", _) => (Box::new(tcp), Vec::new()),
        (scheme, _) => {
            return Err(ConnectError::Url(format!(
                "{url}: scheme {scheme} without a TLS configuration"
            )));
        }
    };
    let mut request = url
        .into_client_request()
        .map_err(|e| ConnectError::Url(format!("{url}: {e}")))?;
    request.headers_mut().insert(
        http::header::USER_AGENT,
        http::HeaderValue::from_static(concat!("igel-update-agent/", env!("CARGO_PKG_VERSION"))),
    );
    let upgrade = tokio_tungstenite::client_async_with_config(request, stream, Some(ws_config()));
    let (ws, _response) = tokio::time::timeout(HANDSHAKE_TIMEOUT, upgrade)
        .await
        .map_err(|_| ConnectError::Timeout(HANDSHAKE_TIMEOUT))?
        .map_err(|e| classify_ws(&e))?;
    Ok(Connection {
        ws,
        server_certificates,
    })
}

async fn connect_any(
    addrs: &[std::net::SocketAddr],
    host: &str,
    port: u16,
    timeout: Duration,
) -> Result<TcpStream, ConnectError> {
    let mut last = ConnectError::Dns {
        host: host.to_string(),
        reason: "no address".into(),
    };
    for addr in addrs {
        match tokio::time::timeout(timeout, TcpStream::connect(addr)).await {
            Ok(Ok(stream)) => return Ok(stream),
            Ok(Err(e)) => {
                last = ConnectError::Connect {
                    addr: format!("{host}:{port} ({addr})"),
                    reason: e.to_string(),
                }
            }
            Err(_) => {
                last = ConnectError::Connect {
                    addr: format!("{host}:{port} ({addr})"),
                    reason: format!("no answer within {timeout:?}"),
                }
            }
        }
    }
    Err(last)
}

/// Small buffers: a device holds one connection, a benchmark holds hundreds.
pub fn ws_config() -> WebSocketConfig {
    WebSocketConfig::default()
        .read_buffer_size(16 * 1024)
        .write_buffer_size(0)
        .max_message_size(Some(MAX_MESSAGE))
        .max_frame_size(Some(MAX_MESSAGE))
}

pub fn classify_ws(e: &tungstenite::Error) -> ConnectError {
    match e {
        tungstenite::Error::Http(response) => ConnectError::Status {
            status: response.status().as_u16(),
        },
        tungstenite::Error::Io(io) => classify_io(io),
        tungstenite::Error::ConnectionClosed | tungstenite::Error::AlreadyClosed => {
            ConnectError::Protocol("the server closed the connection during the upgrade".into())
        }
        other => ConnectError::Protocol(other.to_string()),
    }
}

/// TLS failures arrive as IO errors wrapping a `rustls::Error`; with TLS 1.3 the server's
/// refusal of the client certificate arrives after the handshake, at the first read.
pub fn classify_io(e: &std::io::Error) -> ConnectError {
    use rustls::AlertDescription as A;
    let Some(tls) = e.get_ref().and_then(|i| i.downcast_ref::<rustls::Error>()) else {
        if e.kind() == std::io::ErrorKind::UnexpectedEof {
            return ConnectError::Protocol(
                "the server closed the connection during the handshake".into(),
            );
        }
        return ConnectError::Protocol(e.to_string());
    };
    match tls {
        rustls::Error::AlertReceived(A::CertificateRequired) => ConnectError::ClientCertificate(
            "the server requires one (set [ums] client_certificate and client_key)".into(),
        ),
        rustls::Error::AlertReceived(
            A::BadCertificate
            | A::UnknownCA
            | A::CertificateExpired
            | A::CertificateRevoked
            | A::CertificateUnknown
            | A::UnsupportedCertificate
            | A::AccessDenied,
        ) => ConnectError::ClientCertificate(format!(
            "{tls} (is client_certificate signed by the CA the UMS trusts, and still valid?)"
        )),
        rustls::Error::InvalidCertificate(cert) => ConnectError::Tls(format!(
            "the server's certificate is not trusted: {cert:?} (it must chain to [ums] ca_certificate)"
        )),
        other => ConnectError::Tls(other.to_string()),
    }
}
