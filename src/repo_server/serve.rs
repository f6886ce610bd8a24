//! `repo serve DIR`: a read-only WebDAV repository on a TCP port (dav-server behind axum).
//!
//! Only GET, HEAD, OPTIONS and PROPFIND reach the file system; anything else gets 405. A GET
//! with `Range` is answered by [`super::partial`] (206, `multipart/byteranges`, 416), the rest
//! by dav-server, which never sees a `Range` header. With credentials configured, every
//! request needs HTTP Basic authentication; the password is kept only as a SHA-256 digest and
//! compared in constant time.
//!
//! Every request is logged once its response is sent (or abandoned), at INFO for `repo serve`
//! and at DEBUG for the demo's servers, like a web server's access log: client address,
//! method, path ([`clean`]ed), status, body bytes sent and duration. Headers are never logged,
//! so neither is `Authorization`.

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use axum::Router;
use axum::body::{Body, Bytes, HttpBody};
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::Response;
use base64::Engine;
use dav_server::fakels::FakeLs;
use dav_server::localfs::LocalFs;
use dav_server::{DavHandler, DavMethodSet};
use sha2::{Digest, Sha256};

use super::{RepoServerError, partial};
use crate::config::Secret;
use crate::report::clean;

struct Server {
    dav: DavHandler,
    /// The file system dav-server serves, for [`partial`] to open the same files.
    files: Box<LocalFs>,
    /// SHA-256 of `user:password`, the decoded form of a valid Basic `Authorization` header.
    credentials: Option<[u8; 32]>,
    /// Access lines at INFO (else DEBUG).
    access_log: bool,
}

/// Serves `dir` read-only over WebDAV until `shutdown` completes, on the first address of
/// `listen` that can be bound (port 0 picks a free port); `on_ready` receives the bound
/// address once connections are accepted. With `auth = Some((user, password))` every request
/// needs HTTP Basic authentication. With `access_log` every request is logged at INFO, else at
/// DEBUG.
pub async fn serve(
    dir: PathBuf,
    listen: Vec<SocketAddr>,
    auth: Option<(String, Secret)>,
    access_log: bool,
    shutdown: impl Future<Output = ()> + Send + 'static,
    on_ready: impl FnOnce(SocketAddr) + Send,
) -> Result<(), RepoServerError> {
    let dir =
        std::fs::canonicalize(&dir).map_err(RepoServerError::io(&dir, "open the directory"))?;
    if !dir.is_dir() {
        return Err(RepoServerError::NotADirectory { path: dir });
    }
    let listener = bind(&listen).await?;
    let addr = listener
        .local_addr()
        .map_err(|source| RepoServerError::Listen {
            addr: listen[0],
            source,
        })?;
    let files = LocalFs::new(&dir, false, false, false);
    let dav = DavHandler::builder()
        .filesystem(files.clone())
        .locksystem(FakeLs::new())
        .methods(DavMethodSet::WEBDAV_RO)
        .autoindex(true)
        .build_handler();
    let server = Arc::new(Server {
        dav,
        files,
        credentials: auth.map(|(user, password)| credentials_digest(&user, &password)),
        access_log,
    });
    let app = Router::new().fallback(handle).with_state(server.clone());
    tracing::info!(
        dir = %dir.display(),
        url = %format!("http://{addr}/"),
        auth = server.credentials.is_some(),
        "serving the repository read-only over WebDAV"
    );
    on_ready(addr);
    // Without TCP_NODELAY a small response written in two parts (headers, then a short body)
    // waits for the client's delayed ACK: 40 ms per range request, which made a delta of
    // 12,000 ranges from `repo serve` take almost 8 minutes instead of seconds.
    let listener = axum::serve::ListenerExt::tap_io(listener, |tcp| {
        if let Err(e) = tcp.set_nodelay(true) {
            tracing::debug!(error = %e, "cannot set TCP_NODELAY");
        }
    });
    axum::serve(
        listener,
        app.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(shutdown)
    .await
    .map_err(|source| RepoServerError::Serve { addr, source })
}

/// A listener on the first of `addrs` that can be bound; each one that cannot is logged (when
/// another is left to try) or the error (the last one).
async fn bind(addrs: &[SocketAddr]) -> Result<tokio::net::TcpListener, RepoServerError> {
    let mut last = None;
    for (i, &addr) in addrs.iter().enumerate() {
        match tokio::net::TcpListener::bind(addr).await {
            Ok(listener) => return Ok(listener),
            Err(source) => {
                if let Some(next) = addrs.get(i + 1) {
                    tracing::warn!("cannot listen on {addr}: {source}; trying {next}");
                }
                last = Some(RepoServerError::Listen { addr, source });
            }
        }
    }
    Err(last.unwrap_or_else(|| RepoServerError::Listen {
        addr: SocketAddr::from(([127, 0, 0, 1], 0)),
        source: std::io::Error::new(std::io::ErrorKind::InvalidInput, "no address to listen on"),
    }))
}

fn credentials_digest(user: &str, password: &Secret) -> [u8; 32] {
    let mut hasher = Sha256::new();
    hasher.update(user.as_bytes());
    hasher.update(b":");
    hasher.update(password.expose().as_bytes());
    hasher.finalize().into()
}

async fn handle(
    State(server): State<Arc<Server>>,
    ConnectInfo(client): ConnectInfo<SocketAddr>,
    request: Request,
) -> Response {
    let started = Instant::now();
    let method = request.method().clone();
    let path = request.uri().path().to_owned();
    let response = if server.authorized(request.headers()) {
        match partial::answer(&server.files, request).await {
            partial::Answer::Response(response) => response,
            partial::Answer::Dav(request) => {
                let (parts, body) = server.dav.handle(request).await.into_parts();
                Response::from_parts(parts, Body::new(body))
            }
        }
    } else {
        unauthorized()
    };
    let (parts, body) = response.into_parts();
    let access = Access {
        info: server.access_log,
        started,
        client,
        method,
        path,
        status: parts.status.as_u16(),
        bytes: 0,
    };
    Response::from_parts(parts, Body::new(Logged { body, access }))
}

/// One line of the access log, written when the response body is dropped: after the last
/// byte was handed to the connection, or when the client went away before that.
struct Access {
    /// At INFO (else DEBUG).
    info: bool,
    started: Instant,
    client: SocketAddr,
    method: Method,
    path: String,
    status: u16,
    /// Body bytes handed to the connection so far.
    bytes: u64,
}

impl Drop for Access {
    fn drop(&mut self) {
        let duration_ms = self.started.elapsed().as_secs_f64() * 1000.0;
        let path = clean(&self.path);
        macro_rules! log {
            ($level:ident) => {
                tracing::$level!(
                    client = %self.client,
                    method = %self.method,
                    path = %path,
                    status = self.status,
                    bytes = self.bytes,
                    duration_ms,
                    "{} \"{} {}\" {} {} bytes {:.1} ms",
                    self.client,
                    self.method,
                    path,
                    self.status,
                    self.bytes,
                    duration_ms
                )
            };
        }
        if self.info {
            log!(info);
        } else {
            log!(debug);
        }
    }
}

/// A response body that counts the bytes it yields into its [`Access`] line.
struct Logged {
    body: Body,
    access: Access,
}

impl HttpBody for Logged {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, axum::Error>>> {
        let this = &mut *self;
        let polled = Pin::new(&mut this.body).poll_frame(cx);
        if let Poll::Ready(Some(Ok(frame))) = &polled
            && let Some(data) = frame.data_ref()
        {
            this.access.bytes += data.len() as u64;
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.body.size_hint()
    }
}

impl Server {
    fn authorized(&self, headers: &HeaderMap) -> bool {
        let Some(expected) = &self.credentials else {
            return true;
        };
        let Some(decoded) = basic_credentials(headers) else {
            return false;
        };
        let given: [u8; 32] = Sha256::digest(&decoded).into();
        // Constant time: no early exit on the first differing byte.
        given
            .iter()
            .zip(expected)
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0
    }
}

/// The decoded `user:password` bytes of a Basic `Authorization` header.
fn basic_credentials(headers: &HeaderMap) -> Option<Vec<u8>> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, encoded) = value.trim().split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .ok()
}

fn unauthorized() -> Response {
    let mut response = Response::new(Body::from("authentication required\n"));
    *response.status_mut() = StatusCode::UNAUTHORIZED;
    response.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        HeaderValue::from_static(r#"Basic realm="igel-update-agent""#),
    );
    response
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::{Method, header::RANGE};
    use std::path::Path;
    use tokio::sync::oneshot;
    use tokio::task::JoinHandle;

    struct Running {
        base: String,
        stop: oneshot::Sender<()>,
        task: JoinHandle<Result<(), RepoServerError>>,
    }

    fn fixtures() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/repo")
    }

    async fn start(dir: PathBuf, auth: Option<(&str, &str)>) -> Running {
        let auth = auth.map(|(u, p)| (u.to_owned(), Secret::new(p.to_owned())));
        let (stop, stopped) = oneshot::channel::<()>();
        let (ready, bound) = oneshot::channel();
        let task = tokio::spawn(serve(
            dir,
            vec!["127.0.0.1:0".parse().unwrap()],
            auth,
            true,
            async move {
                let _ = stopped.await;
            },
            move |addr| {
                let _ = ready.send(addr);
            },
        ));
        let addr: SocketAddr = bound.await.expect("server did not start");
        Running {
            base: format!("http://{addr}"),
            stop,
            task,
        }
    }

    impl Running {
        async fn stop(self) {
            let _ = self.stop.send(());
            self.task.await.unwrap().unwrap();
        }
    }

    fn client() -> reqwest::Client {
        // reqwest is built without a TLS provider of its own, even for plain HTTP.
        crate::tls::provider::install_default();
        reqwest::Client::builder().build().unwrap()
    }

    #[tokio::test]
    async fn get_serves_files_and_range_gives_206() {
        let server = start(fixtures(), None).await;
        let c = client();
        let url = format!("{}/demo-app/1.0.0/app.json", server.base);
        let expected = std::fs::read(fixtures().join("demo-app/1.0.0/app.json")).unwrap();

        let full = c.get(&url).send().await.unwrap();
        assert_eq!(full.status(), 200);
        assert_eq!(full.bytes().await.unwrap(), expected);

        let partial = c.get(&url).header(RANGE, "bytes=10-").send().await.unwrap();
        assert_eq!(partial.status(), 206);
        assert_eq!(partial.bytes().await.unwrap(), expected[10..]);

        let missing = c
            .get(format!("{}/nope/1/app.json", server.base))
            .send()
            .await
            .unwrap();
        assert_eq!(missing.status(), 404);
        server.stop().await;
    }

    #[tokio::test]
    async fn propfind_depth_1_lists_the_versions_of_an_app() {
        let server = start(fixtures(), None).await;
        let response = client()
            .request(
                Method::from_bytes(b"PROPFIND").unwrap(),
                format!("{}/demo-app/", server.base),
            )
            .header("Depth", "1")
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 207);
        let body = response.text().await.unwrap();
        assert!(body.contains("/demo-app/1.0.0/"), "{body}");
        assert!(body.contains("/demo-app/1.1.0/"), "{body}");
        server.stop().await;
    }

    #[tokio::test]
    async fn writes_are_rejected() {
        let repo = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(repo.path().join("app/1.0")).unwrap();
        std::fs::write(repo.path().join("app/1.0/data"), b"original").unwrap();
        let server = start(repo.path().to_owned(), None).await;
        let c = client();
        let url = format!("{}/app/1.0/data", server.base);

        let put = c.put(&url).body("changed").send().await.unwrap();
        let delete = c.delete(&url).send().await.unwrap();
        let mkcol = c
            .request(
                Method::from_bytes(b"MKCOL").unwrap(),
                format!("{}/app/2.0/", server.base),
            )
            .send()
            .await
            .unwrap();

        for response in [put, delete, mkcol] {
            assert!(
                matches!(response.status().as_u16(), 403 | 405),
                "{response:?}"
            );
        }
        assert_eq!(
            std::fs::read(repo.path().join("app/1.0/data")).unwrap(),
            b"original"
        );
        assert!(!repo.path().join("app/2.0").exists());
        server.stop().await;
    }

    #[tokio::test]
    async fn basic_auth_is_required_for_every_request() {
        let server = start(fixtures(), Some(("device", "s3cret"))).await;
        let c = client();
        let url = format!("{}/demo-app/1.0.0/app.json", server.base);

        let anonymous = c.get(&url).send().await.unwrap();
        assert_eq!(anonymous.status(), 401);
        assert_eq!(
            anonymous.headers()[header::WWW_AUTHENTICATE],
            r#"Basic realm="igel-update-agent""#
        );
        let propfind = c
            .request(
                Method::from_bytes(b"PROPFIND").unwrap(),
                format!("{}/", server.base),
            )
            .send()
            .await
            .unwrap();
        assert_eq!(propfind.status(), 401);
        for (user, password) in [
            ("device", "wrong"),
            ("other", "s3cret"),
            ("device", "s3cret "),
        ] {
            let wrong = c
                .get(&url)
                .basic_auth(user, Some(password))
                .send()
                .await
                .unwrap();
            assert_eq!(wrong.status(), 401, "{user}:{password}");
        }
        let right = c
            .get(&url)
            .basic_auth("device", Some("s3cret"))
            .send()
            .await
            .unwrap();
        assert_eq!(right.status(), 200);
        server.stop().await;
    }

    #[tokio::test]
    async fn serving_a_missing_directory_is_an_error_naming_it() {
        let err = serve(
            "/nonexistent/repo".into(),
            vec!["127.0.0.1:0".parse().unwrap()],
            None,
            true,
            async {},
            |_| panic!("must not become ready"),
        )
        .await
        .unwrap_err();
        assert!(err.to_string().contains("/nonexistent/repo"), "{err}");
    }
}
