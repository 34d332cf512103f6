//! A minimal HTTP/1.1 server for `/metrics`, `/healthz` and `/readyz`, on a thread of its
//! own (std only: three GET endpoints scraped every few seconds do not need an async
//! runtime). Each connection gets a bounded read, one response, and is closed.

use std::{
    io::{Read as _, Write as _},
    net::{SocketAddr, TcpListener, TcpStream},
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    thread::JoinHandle,
    time::Duration,
};

use super::{Metrics, Snapshot};

/// Why the metrics endpoint could not start.
#[derive(Debug, thiserror::Error)]
#[error("metrics.listen {addr}: {source}")]
pub struct ServerError {
    /// The configured address.
    pub addr: SocketAddr,
    /// The error (e.g. address in use).
    pub source: std::io::Error,
}

/// The running endpoint; stops when dropped.
#[derive(Debug)]
pub struct MetricsServer {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

type SnapshotFn = Arc<dyn Fn() -> Snapshot + Send + Sync>;

impl MetricsServer {
    /// Binds `addr` and serves `metrics`, refreshed from `snapshot` on each scrape.
    pub fn start(
        addr: SocketAddr,
        metrics: Metrics,
        snapshot: SnapshotFn,
    ) -> Result<Self, ServerError> {
        let err = |source| ServerError { addr, source };
        let listener = TcpListener::bind(addr).map_err(err)?;
        listener.set_nonblocking(true).map_err(err)?;
        let bound = listener.local_addr().map_err(err)?;
        let stop = Arc::new(AtomicBool::new(false));
        let stopping = Arc::clone(&stop);
        let thread = std::thread::Builder::new()
            .name("sluice-metrics".into())
            .spawn(move || serve(&listener, &metrics, &*snapshot, &stopping))
            .map_err(err)?;
        tracing::info!(addr = %bound, "metrics endpoint listening");
        Ok(Self {
            addr: bound,
            stop,
            thread: Some(thread),
        })
    }

    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }
}

impl Drop for MetricsServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn serve(
    listener: &TcpListener,
    metrics: &Metrics,
    snapshot: &(dyn Fn() -> Snapshot + Send + Sync),
    stop: &AtomicBool,
) {
    while !stop.load(Ordering::Relaxed) {
        match listener.accept() {
            Ok((stream, _)) => {
                if let Err(e) = respond(stream, metrics, snapshot) {
                    tracing::debug!(error = %e, "metrics request failed");
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                std::thread::sleep(Duration::from_millis(20));
            }
            Err(e) => {
                tracing::warn!(error = %e, "metrics accept failed");
                std::thread::sleep(Duration::from_millis(100));
            }
        }
    }
}

fn respond(
    mut stream: TcpStream,
    metrics: &Metrics,
    snapshot: &(dyn Fn() -> Snapshot + Send + Sync),
) -> std::io::Result<()> {
    stream.set_nonblocking(false)?;
    stream.set_read_timeout(Some(Duration::from_secs(2)))?;
    stream.set_write_timeout(Some(Duration::from_secs(5)))?;
    let mut request = [0u8; 2048];
    let mut len = 0;
    // Only the request line matters; read until it is complete or the buffer is full.
    while len < request.len() && !request[..len].windows(2).any(|w| w == b"\r\n") {
        let n = stream.read(&mut request[len..])?;
        if n == 0 {
            break;
        }
        len += n;
    }
    let line = String::from_utf8_lossy(&request[..len]);
    let mut parts = line.split_whitespace();
    let method = parts.next().unwrap_or_default();
    let path = parts.next().unwrap_or_default();
    let (status, content_type, body) = match (method, path) {
        ("GET", "/metrics") => {
            metrics.update(&snapshot());
            ("200 OK", "text/plain; version=0.0.4", metrics.render())
        }
        ("GET", "/healthz") => ("200 OK", "text/plain", b"ok\n".to_vec()),
        ("GET", "/readyz") => {
            if snapshot().ready {
                ("200 OK", "text/plain", b"ready\n".to_vec())
            } else {
                (
                    "503 Service Unavailable",
                    "text/plain",
                    b"not ready\n".to_vec(),
                )
            }
        }
        ("GET", _) => ("404 Not Found", "text/plain", b"not found\n".to_vec()),
        _ => (
            "405 Method Not Allowed",
            "text/plain",
            b"GET only\n".to_vec(),
        ),
    };
    let head = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes())?;
    stream.write_all(&body)?;
    stream.flush()
}

#[cfg(test)]
mod tests {
    use std::net::{IpAddr, Ipv4Addr};

    use super::*;

    fn get(addr: SocketAddr, path: &str) -> String {
        let mut s = TcpStream::connect(addr).expect("connect");
        write!(s, "GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").expect("send");
        let mut out = String::new();
        s.read_to_string(&mut out).expect("read");
        out
    }

    #[test]
    fn serves_metrics_health_and_readiness() {
        let metrics = Metrics::new(&[("raw".into(), vec![])], &[]).expect("metrics");
        let ready = Arc::new(AtomicBool::new(false));
        let r = Arc::clone(&ready);
        let snapshot: SnapshotFn = Arc::new(move || Snapshot {
            seen: 3,
            ready: r.load(Ordering::Relaxed),
            ..Snapshot::default()
        });
        let server = MetricsServer::start(
            SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 0),
            metrics,
            snapshot,
        )
        .expect("start");
        let addr = server.addr();
        assert!(get(addr, "/healthz").starts_with("HTTP/1.1 200 OK\r\n"));
        assert!(get(addr, "/readyz").starts_with("HTTP/1.1 503 "));
        ready.store(true, Ordering::Relaxed);
        assert!(get(addr, "/readyz").starts_with("HTTP/1.1 200 OK\r\n"));
        let body = get(addr, "/metrics");
        assert!(
            body.lines().any(|l| l == "sluice_seen_packets_total 3"),
            "{body}"
        );
        assert!(get(addr, "/nope").starts_with("HTTP/1.1 404 "));
        drop(server);
        assert!(TcpStream::connect(addr).is_err());
    }
}
