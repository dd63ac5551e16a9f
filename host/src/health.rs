//! The operations endpoint: one loopback HTTP/1.1 listener for whoever watches the worker.
//!
//! - `GET /metrics`: every metric in the Prometheus text format.
//! - `GET /health`: `200 alive` while the process runs (liveness).
//! - `GET /ready`: `200 ready` once the sinks are connected and the worker holds leases or
//!   is taking them (its lease table answers), `503` with the reason otherwise — also
//!   while it drains at shutdown (readiness).
//!
//! Three fixed routes, no request body: a few lines over a tokio `TcpListener` instead of
//! an HTTP framework. Each connection is served on its own task with a read deadline, so
//! a slow client cannot hold the others up.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

/// The longest a client may take to send its request line and headers.
const READ_TIMEOUT: Duration = Duration::from_secs(5);
/// Requests larger than this are refused (we only serve GETs without bodies).
const MAX_REQUEST: usize = 8 * 1024;

/// What readiness depends on; set by the parts that know.
#[derive(Debug, Default)]
pub struct Readiness {
    sinks_connected: AtomicBool,
    leasing: AtomicBool,
    draining: AtomicBool,
}

impl Readiness {
    /// Every sink is connected.
    pub fn sinks_connected(&self) {
        self.sinks_connected.store(true, Relaxed);
    }

    /// The worker read its lease table and holds or takes leases.
    pub fn leasing(&self) {
        self.leasing.store(true, Relaxed);
    }

    /// Shutdown started: the worker drains and hands its leases over.
    pub fn draining(&self) {
        self.draining.store(true, Relaxed);
    }

    /// Marks the worker draining once `shutdown` is cancelled (on a task of its own, done
    /// then).
    pub fn drain_at(&'static self, shutdown: CancellationToken) -> tokio::task::JoinHandle<()> {
        tokio::spawn(async move {
            shutdown.cancelled().await;
            self.draining();
        })
    }

    /// `Ok` when ready, else why not.
    pub fn check(&self) -> Result<(), &'static str> {
        if self.draining.load(Relaxed) {
            Err("shutting down")
        } else if !self.sinks_connected.load(Relaxed) {
            Err("sinks not connected")
        } else if !self.leasing.load(Relaxed) {
            Err("lease table not read yet")
        } else {
            Ok(())
        }
    }
}

/// The process's readiness.
pub fn readiness() -> &'static Readiness {
    static R: std::sync::OnceLock<Readiness> = std::sync::OnceLock::new();
    R.get_or_init(Readiness::default)
}

/// Why the endpoint cannot start.
#[derive(Debug, thiserror::Error)]
#[error("metrics.listen: cannot listen on {addr}: {source}")]
pub struct ListenError {
    pub addr: SocketAddr,
    pub source: std::io::Error,
}

/// What `/metrics` answers, made at each request: its content type and body (the
/// metrics exporters pass the Prometheus page).
pub type MetricsPage = fn() -> (&'static str, String);

/// Binds `addr` (port 0: any free port) and serves until `shutdown`; returns the bound
/// address.
pub async fn serve(
    addr: SocketAddr,
    metrics: MetricsPage,
    shutdown: CancellationToken,
) -> Result<SocketAddr, ListenError> {
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|source| ListenError { addr, source })?;
    let bound = listener
        .local_addr()
        .map_err(|source| ListenError { addr, source })?;
    tokio::spawn(async move {
        loop {
            let conn = tokio::select! {
                c = listener.accept() => c,
                _ = shutdown.cancelled() => return,
            };
            match conn {
                Ok((stream, _)) => {
                    tokio::spawn(handle(stream, metrics));
                }
                Err(e) => {
                    tracing::warn!(component = "metrics", error = %e, "cannot accept a connection");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
    });
    Ok(bound)
}

async fn handle(mut stream: TcpStream, metrics: MetricsPage) {
    let mut buf = Vec::with_capacity(1024);
    let head = tokio::time::timeout(READ_TIMEOUT, async {
        let mut chunk = [0u8; 1024];
        loop {
            let n = stream.read(&mut chunk).await.ok()?;
            if n == 0 {
                return None;
            }
            buf.extend_from_slice(&chunk[..n]);
            if buf.windows(4).any(|w| w == b"\r\n\r\n") || buf.windows(2).any(|w| w == b"\n\n") {
                return Some(());
            }
            if buf.len() > MAX_REQUEST {
                return None;
            }
        }
    })
    .await;
    if !matches!(head, Ok(Some(()))) {
        return;
    }
    let line =
        String::from_utf8_lossy(buf.split(|b| *b == b'\n').next().unwrap_or_default()).into_owned();
    let mut parts = line.split_whitespace();
    let (method, target) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let path = target.split('?').next().unwrap_or("");
    let (status, content_type, body) = respond(method, path, metrics);
    let head = format!(
        "HTTP/1.1 {status}\r\ncontent-type: {content_type}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
        body.len()
    );
    let _ = stream.write_all(head.as_bytes()).await;
    if method != "HEAD" {
        let _ = stream.write_all(body.as_bytes()).await;
    }
    let _ = stream.shutdown().await;
}

fn respond(method: &str, path: &str, metrics: MetricsPage) -> (&'static str, &'static str, String) {
    const TEXT: &str = "text/plain; charset=utf-8";
    if method != "GET" && method != "HEAD" {
        return ("405 Method Not Allowed", TEXT, "only GET\n".into());
    }
    match path {
        "/metrics" => {
            let (content_type, body) = metrics();
            ("200 OK", content_type, body)
        }
        "/health" => ("200 OK", TEXT, "alive\n".into()),
        "/ready" => match readiness().check() {
            Ok(()) => ("200 OK", TEXT, "ready\n".into()),
            Err(why) => (
                "503 Service Unavailable",
                TEXT,
                format!("not ready: {why}\n"),
            ),
        },
        _ => (
            "404 Not Found",
            TEXT,
            "routes: /metrics /health /ready\n".into(),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn readiness_needs_sinks_and_leases_and_ends_at_shutdown() {
        let r = Readiness::default();
        assert_eq!(r.check(), Err("sinks not connected"));
        r.sinks_connected();
        assert_eq!(r.check(), Err("lease table not read yet"));
        r.leasing();
        assert_eq!(r.check(), Ok(()));
        r.draining();
        assert_eq!(r.check(), Err("shutting down"));
    }

    #[tokio::test]
    async fn readiness_turns_to_draining_when_shutdown_begins() {
        let r: &'static Readiness = Box::leak(Box::default());
        r.sinks_connected();
        r.leasing();
        let shutdown = CancellationToken::new();
        let marked = r.drain_at(shutdown.clone());
        assert_eq!(r.check(), Ok(()));
        shutdown.cancel();
        marked.await.expect("the task ends");
        assert_eq!(r.check(), Err("shutting down"));
    }

    #[tokio::test]
    async fn serves_the_three_routes() {
        let stop = CancellationToken::new();
        fn page() -> (&'static str, String) {
            ("text/plain; version=0.0.4", "# no metrics\n".into())
        }
        let addr = serve("127.0.0.1:0".parse().expect("addr"), page, stop.clone())
            .await
            .expect("listens");
        let get = |path: &'static str| async move {
            let mut s = TcpStream::connect(addr).await.expect("connect");
            s.write_all(format!("GET {path} HTTP/1.1\r\nhost: x\r\n\r\n").as_bytes())
                .await
                .expect("write");
            let mut out = String::new();
            s.read_to_string(&mut out).await.expect("read");
            out
        };
        assert!(get("/health").await.starts_with("HTTP/1.1 200 OK\r\n"));
        assert!(get("/metrics")
            .await
            .contains("content-type: text/plain; version=0.0.4"));
        assert!(get("/nope").await.starts_with("HTTP/1.1 404"));
        stop.cancel();
    }
}
