//! `repo serve DIR`: a read-only WebDAV repository on a TCP port (dav-server behind axum).
//!
//! Only GET, HEAD, OPTIONS and PROPFIND reach the file system (GET answers `Range` with 206);
//! anything else gets 405. With credentials configured, every request needs HTTP Basic
//! authentication; the password is kept only as a SHA-256 digest and compared in constant time.

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::Response;
use base64::Engine;
use dav_server::fakels::FakeLs;
use dav_server::localfs::LocalFs;
use dav_server::{DavHandler, DavMethodSet};
use sha2::{Digest, Sha256};

use super::RepoServerError;
use crate::config::Secret;

/// The Basic realm the server announces in `WWW-Authenticate`.
pub const REALM: &str = "igel-update-agent";

struct Server {
    dav: DavHandler,
    /// SHA-256 of `user:password`, the decoded form of a valid Basic `Authorization` header.
    credentials: Option<[u8; 32]>,
}

/// Serves `dir` read-only over WebDAV on `listen` (port 0 picks a free port) until `shutdown`
/// completes; `on_ready` receives the bound address once connections are accepted. With
/// `auth = Some((user, password))` every request needs HTTP Basic authentication.
pub async fn serve(
    dir: PathBuf,
    listen: SocketAddr,
    auth: Option<(String, Secret)>,
    shutdown: impl Future<Output = ()> + Send + 'static,
    on_ready: impl FnOnce(SocketAddr) + Send,
) -> Result<(), RepoServerError> {
    let dir =
        std::fs::canonicalize(&dir).map_err(RepoServerError::io(&dir, "open the directory"))?;
    if !dir.is_dir() {
        return Err(RepoServerError::NotADirectory { path: dir });
    }
    let listen_error = |source| RepoServerError::Listen {
        addr: listen,
        source,
    };
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .map_err(listen_error)?;
    let addr = listener.local_addr().map_err(listen_error)?;
    let dav = DavHandler::builder()
        .filesystem(LocalFs::new(&dir, false, false, false))
        .locksystem(FakeLs::new())
        .methods(DavMethodSet::WEBDAV_RO)
        .autoindex(true)
        .build_handler();
    let server = Arc::new(Server {
        dav,
        credentials: auth.map(|(user, password)| credentials_digest(&user, &password)),
    });
    let app = Router::new().fallback(handle).with_state(server.clone());
    tracing::info!(
        dir = %dir.display(),
        url = %format!("http://{addr}/"),
        auth = server.credentials.is_some(),
        "serving the repository read-only over WebDAV"
    );
    on_ready(addr);
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await
        .map_err(|source| RepoServerError::Serve { addr, source })
}

fn credentials_digest(user: &str, password: &Secret) -> [u8; 32] {
    let mut hasher = Sha256::new();
    hasher.update(user.as_bytes());
    hasher.update(b":");
    hasher.update(password.expose().as_bytes());
    hasher.finalize().into()
}

async fn handle(State(server): State<Arc<Server>>, request: Request) -> Response {
    let method = request.method().clone();
    let path = request.uri().path().to_owned();
    let response = if server.authorized(request.headers()) {
        let (parts, body) = server.dav.handle(request).await.into_parts();
        Response::from_parts(parts, Body::new(body))
    } else {
        unauthorized()
    };
    tracing::debug!(%method, %path, status = response.status().as_u16(), "repo serve request");
    response
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
            "127.0.0.1:0".parse().unwrap(),
            auth,
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
        let _ = rustls::crypto::ring::default_provider().install_default();
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
            "127.0.0.1:0".parse().unwrap(),
            None,
            async {},
            |_| panic!("must not become ready"),
        )
        .await
        .unwrap_err();
        assert!(err.to_string().contains("/nonexistent/repo"), "{err}");
    }
}
