//! The slow link of the delta benchmark: a TCP proxy on loopback in front of Apache whose
//! server-to-client direction is limited to one rate shared by all its connections (a token
//! bucket, as a branch-office link would be), so that every method is timed under the same
//! limit, including the tools without a limit option of their own (zsync, casync).
//!
//! Client-to-server bytes (the requests) are not limited. The bucket holds at most
//! [`BURST`] bytes, so no method gains more than that over the rate. Bytes are counted by
//! Apache's access log, not here: the proxy only shapes time.

use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};

/// The most the bucket holds: a burst after an idle moment is at most this.
const BURST: f64 = 64.0 * 1024.0;
/// One read from the server, forwarded after its tokens were taken.
const SLICE: usize = 16 * 1024;

/// Bytes per second granted to all connections together.
struct Bucket {
    rate: f64,
    state: Mutex<(f64, Instant)>,
}

impl Bucket {
    /// Waits until `n` bytes (at most [`BURST`]) may be sent, then takes them.
    fn take(&self, n: usize) {
        let n = n as f64;
        loop {
            let wait = {
                let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
                let (tokens, last) = &mut *state;
                let now = Instant::now();
                *tokens =
                    (*tokens + now.duration_since(*last).as_secs_f64() * self.rate).min(BURST);
                *last = now;
                if *tokens >= n {
                    *tokens -= n;
                    return;
                }
                (n - *tokens) / self.rate
            };
            std::thread::sleep(Duration::from_secs_f64(wait));
        }
    }
}

/// A running proxy; stops accepting when dropped (connections still open end with their
/// peers).
pub struct Throttle {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    acceptor: Option<JoinHandle<()>>,
}

impl Throttle {
    /// Listens on a free loopback port and forwards every connection to `upstream`, at most
    /// `bytes_per_sec` towards the clients, all connections together.
    pub fn start(upstream: SocketAddr, bytes_per_sec: u64) -> Result<Throttle> {
        let listener =
            TcpListener::bind("127.0.0.1:0").context("cannot bind the throttling proxy")?;
        let addr = listener.local_addr().context("no local address")?;
        let stop = Arc::new(AtomicBool::new(false));
        let bucket = Arc::new(Bucket {
            rate: bytes_per_sec as f64,
            state: Mutex::new((BURST, Instant::now())),
        });
        let flag = stop.clone();
        let acceptor = std::thread::spawn(move || {
            for client in listener.incoming() {
                if flag.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(client) = client else { continue };
                let bucket = bucket.clone();
                std::thread::spawn(move || {
                    if let Err(e) = relay(client, upstream, &bucket) {
                        crate::log(format!("  throttle: a connection failed: {e:#}"));
                    }
                });
            }
        });
        Ok(Throttle {
            addr,
            stop,
            acceptor: Some(acceptor),
        })
    }

    /// `http://127.0.0.1:PORT/`.
    pub fn url(&self) -> String {
        format!("http://{}/", self.addr)
    }
}

impl Drop for Throttle {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wakes the acceptor, which then sees the flag.
        let _ = TcpStream::connect(self.addr);
        if let Some(acceptor) = self.acceptor.take() {
            let _ = acceptor.join();
        }
    }
}

/// Copies one connection both ways until both sides closed: requests as they come, responses
/// through the bucket.
fn relay(client: TcpStream, upstream: SocketAddr, bucket: &Bucket) -> Result<()> {
    let server = TcpStream::connect(upstream).context("cannot connect to Apache")?;
    let _ = client.set_nodelay(true);
    let _ = server.set_nodelay(true);
    let (mut client_read, mut server_write) = (client.try_clone()?, server.try_clone()?);
    let requests = std::thread::spawn(move || {
        let _ = std::io::copy(&mut client_read, &mut server_write);
        let _ = server_write.shutdown(Shutdown::Write);
    });
    let (mut server_read, mut client_write) = (server, client);
    let mut buf = vec![0u8; SLICE];
    loop {
        let n = match server_read.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(_) => break,
        };
        bucket.take(n);
        if client_write.write_all(&buf[..n]).is_err() {
            break;
        }
    }
    let _ = client_write.shutdown(Shutdown::Write);
    let _ = server_read.shutdown(Shutdown::Read);
    let _ = requests.join();
    Ok(())
}
