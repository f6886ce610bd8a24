//! The command line's side of the control socket: send one request, read its reply. "No
//! daemon" (no socket, nobody listening) is its own answer, so commands can run in-process.
//! A daemon that is `busy` (all its connections in use) is asked again for a few seconds.

use std::path::Path;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::UnixStream;

use super::Reply;

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("no daemon is listening on {0}")]
    NotRunning(String),
    #[error("control socket {path}: {reason}")]
    Failed { path: String, reason: String },
}

/// How long a `busy` daemon is asked again.
const BUSY_RETRY: Duration = Duration::from_secs(5);

pub async fn request(path: &Path, request: &serde_json::Value) -> Result<Reply, ClientError> {
    let started = std::time::Instant::now();
    let mut pause = Duration::from_millis(20);
    loop {
        let reply = once(path, request).await?;
        let busy = reply.id.is_none()
            && reply
                .error
                .as_deref()
                .is_some_and(|e| e.starts_with("busy:"));
        if !busy || started.elapsed() >= BUSY_RETRY {
            return Ok(reply);
        }
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(Duration::from_millis(500));
    }
}

async fn once(path: &Path, request: &serde_json::Value) -> Result<Reply, ClientError> {
    let shown = path.display().to_string();
    let failed = |reason: String| ClientError::Failed {
        path: shown.clone(),
        reason,
    };
    let stream = match tokio::time::timeout(Duration::from_secs(5), UnixStream::connect(path)).await
    {
        Ok(Ok(s)) => s,
        Ok(Err(e))
            if matches!(
                e.kind(),
                std::io::ErrorKind::NotFound | std::io::ErrorKind::ConnectionRefused
            ) =>
        {
            return Err(ClientError::NotRunning(shown));
        }
        Ok(Err(e)) => return Err(failed(e.to_string())),
        Err(_) => return Err(failed("the daemon does not accept connections".into())),
    };
    let (read, mut write) = stream.into_split();
    let mut line = serde_json::to_vec(request).map_err(|e| failed(e.to_string()))?;
    line.push(b'\n');
    // A daemon that answers `busy` closes at once; its answer is still there to be read.
    let written = write.write_all(&line).await;
    let mut reply = String::new();
    let mut reader = BufReader::new(read);
    match tokio::time::timeout(Duration::from_secs(30), reader.read_line(&mut reply)).await {
        Ok(Ok(n)) if n > 0 => {
            serde_json::from_str(&reply).map_err(|e| failed(format!("bad reply: {e}")))
        }
        Ok(Ok(_)) => Err(failed(match written {
            Err(e) => e.to_string(),
            Ok(()) => "the daemon closed the connection".into(),
        })),
        Ok(Err(e)) => Err(failed(e.to_string())),
        Err(_) => Err(failed("no reply within 30 s".into())),
    }
}
