//! The local control socket: JSON lines over a Unix socket (mode 0660). Any peer that can
//! connect may ask for `status`; commands that change something are accepted only from root
//! or the daemon's own user (checked with `SO_PEERCRED`). Lines over 1 MiB are rejected and the
//! connection closed; a bad line never stops the daemon. At most [`MAX_CONNECTIONS`] are open
//! at once (one more is answered `busy` and closed at once), and a connection that sends
//! nothing for [`IDLE_TIMEOUT`] is closed, so idle peers cannot use up the daemon's files.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};

use super::{MAX_LINE, Rejection, Reply, Request};

/// Connections served at once.
pub const MAX_CONNECTIONS: usize = 64;
/// More connections for root and the agent's user when the others are all in use, so that
/// unprivileged peers can never lock an administrator out.
const PRIVILEGED_RESERVE: usize = 8;
/// A connection that sends no complete line for this long is closed.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    #[error("control socket {}: {reason}", path.display())]
    Bind { path: PathBuf, reason: String },
}

/// What the daemon does with a request; `privileged` says whether the peer may change state.
pub type Handler = Arc<dyn Fn(Result<Request, Rejection>, bool) -> Reply + Send + Sync>;

/// Binds the socket, replacing a stale one (a socket file nobody listens on).
pub async fn bind(path: &Path) -> Result<UnixListener, ControlError> {
    let err = |reason: String| ControlError::Bind {
        path: path.to_path_buf(),
        reason,
    };
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)
            .map_err(|e| err(format!("cannot create {}: {e}", dir.display())))?;
    }
    if path.exists() {
        if UnixStream::connect(path).await.is_ok() {
            return Err(err("another igel-update-agent is listening on it".into()));
        }
        std::fs::remove_file(path)
            .map_err(|e| err(format!("cannot remove the stale socket: {e}")))?;
    }
    let listener = UnixListener::bind(path).map_err(|e| err(e.to_string()))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o660))
        .map_err(|e| err(e.to_string()))?;
    Ok(listener)
}

/// Serves connections until the task is dropped.
pub async fn serve(
    listener: UnixListener,
    handler: Handler,
    mut shutdown: crate::shutdown::Shutdown,
) {
    let own_uid = nix::unistd::geteuid().as_raw();
    let slots = Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS));
    let reserve = Arc::new(tokio::sync::Semaphore::new(PRIVILEGED_RESERVE));
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            () = shutdown.recv() => return,
        };
        let stream = match accepted {
            Ok((stream, _)) => stream,
            Err(e) => {
                tracing::warn!("control socket: accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let privileged = stream
            .peer_cred()
            .is_ok_and(|c| c.uid() == 0 || c.uid() == own_uid);
        let slot = slots.clone().try_acquire_owned().or_else(|_| {
            if privileged {
                reserve.clone().try_acquire_owned()
            } else {
                Err(tokio::sync::TryAcquireError::NoPermits)
            }
        });
        let Ok(slot) = slot else {
            tracing::warn!(
                "control socket: {MAX_CONNECTIONS} connections are open; refused one more"
            );
            tokio::spawn(busy(stream));
            continue;
        };
        let handler = handler.clone();
        tokio::spawn(async move {
            if let Err(e) = connection(stream, handler, privileged).await {
                tracing::debug!("control connection ended: {e}");
            }
            drop(slot);
        });
    }
}

/// Answers `busy` and closes. The request is read (briefly, bounded) first, so that the peer
/// gets the answer instead of a broken pipe while it is still writing.
async fn busy(mut stream: UnixStream) {
    let reply = Reply::rejected(Rejection {
        id: None,
        error: format!("busy: {MAX_CONNECTIONS} connections are open; try again in a moment"),
    });
    let mut out = serde_json::to_vec(&reply).unwrap_or_default();
    out.push(b'\n');
    let mut sink = vec![0u8; 64 * 1024];
    let _ = tokio::time::timeout(Duration::from_millis(200), async {
        let mut total = 0usize;
        while total < MAX_LINE {
            match stream.read(&mut sink).await {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    total += n;
                    if sink[..n].contains(&b'\n') {
                        break;
                    }
                }
            }
        }
    })
    .await;
    let _ = tokio::time::timeout(Duration::from_secs(1), stream.write_all(&out)).await;
}

async fn connection(stream: UnixStream, handler: Handler, privileged: bool) -> std::io::Result<()> {
    let (read, mut write) = stream.into_split();
    let mut reader = BufReader::new(read);
    loop {
        let mut line = Vec::new();
        let mut limited = (&mut reader).take(MAX_LINE as u64 + 1);
        let Ok(n) = tokio::time::timeout(IDLE_TIMEOUT, limited.read_until(b'\n', &mut line)).await
        else {
            return Ok(());
        };
        let n = n?;
        if n == 0 {
            return Ok(());
        }
        let too_long = line.len() > MAX_LINE;
        let request = if too_long {
            Err(Rejection {
                id: None,
                error: format!("request line over the limit of {MAX_LINE} bytes"),
            })
        } else {
            super::parse(line.trim_ascii(), chrono::Utc::now())
        };
        let reply = match request {
            Ok(r) if r.command.changes_state() && !privileged => Reply::rejected(Rejection {
                id: Some(r.id),
                error: "permission denied: only root or the agent's user may change anything"
                    .into(),
            }),
            other => handler(other, privileged),
        };
        let mut out = serde_json::to_vec(&reply).unwrap_or_else(|_| b"{}".to_vec());
        out.push(b'\n');
        // A peer that does not read its answers must not hold a connection for ever.
        tokio::time::timeout(IDLE_TIMEOUT, write.write_all(&out))
            .await
            .map_err(|_| std::io::Error::other("the peer does not read its answers"))??;
        if too_long {
            // The rest of the oversized line cannot be told from the next request.
            return Ok(());
        }
    }
}
