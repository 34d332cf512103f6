//! The HTTP endpoint for `/metrics`, `/healthz` and `/readyz`: hyper's HTTP/1.1 server on
//! a current-thread tokio runtime that runs on a thread of its own, `sluice-metrics`. It is
//! never on the packet path: a scrape reads the counters the pipeline threads published.
//!
//! Why an async server for three small endpoints: a load balancer's health probe must get
//! its answer whatever other clients do. The hand-written server this replaces served one
//! connection at a time, and a client sending one byte a second held it for good (issue
//! 12). Here every limit is per connection and none of them restarts with a byte:
//!
//! - connections are served concurrently, at most `metrics.max_connections` (256) at once;
//!   one beyond that is closed as soon as it is accepted, and counted
//!   (`sluice_metrics_refused_connections_total`);
//! - a request's head (request line and headers) must arrive within [`HEADER_READ_TIMEOUT`]
//!   of the moment the server starts waiting for it, and fit in [`MAX_BUF_SIZE`] bytes
//!   (431 beyond); a keep-alive connection idle that long is closed by the same clock;
//! - any connection is asked to close after [`MAX_CONNECTION_AGE`], and dropped
//!   [`SHUTDOWN_GRACE`] later if it has not.
//!
//! Answers: `GET` and `HEAD` (same headers, no body) of the three paths, query strings
//! ignored; 404 for another path, 405 (with `Allow`) for another method. On shutdown
//! (the daemon drops [`MetricsServer`] at the end of a run) the listener closes at once,
//! responses in flight get [`SHUTDOWN_GRACE`], and the thread ends.

use std::{convert::Infallible, net::SocketAddr, sync::Arc, thread::JoinHandle, time::Duration};

use bytes::Bytes;
use http_body_util::Full;
use hyper::{
    Method, Request, Response, StatusCode,
    header::{self, HeaderValue},
    server::conn::http1,
    service::service_fn,
};
use hyper_util::rt::{TokioIo, TokioTimer};
use prometheus::{IntCounter, IntGauge, Registry};
use tokio::{
    net::{TcpListener, TcpSocket, TcpStream},
    sync::{OwnedSemaphorePermit, Semaphore, TryAcquireError, watch},
};

use super::{Metrics, Snapshot};

/// How long a client has to send a request's head, from the moment the server waits for
/// it (accept, or the end of the previous response on a keep-alive connection).
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(5);
/// Bytes buffered per connection for a request's head (hyper's minimum is 8 KiB; a
/// Prometheus scrape request is a few hundred bytes).
pub const MAX_BUF_SIZE: usize = 16 * 1024;
/// A connection is asked to close (after its current response) at this age.
pub const MAX_CONNECTION_AGE: Duration = Duration::from_secs(60);
/// Time a connection has to finish its response once asked to close (at
/// [`MAX_CONNECTION_AGE`] or shutdown) before it is dropped.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(1);
/// Pending connections the kernel queues before `accept`.
const LISTEN_BACKLOG: u32 = 1024;
/// Pause after a failed `accept` (e.g. out of file descriptors), so the loop does not spin.
const ACCEPT_ERROR_PAUSE: Duration = Duration::from_millis(500);

const TEXT: &str = "text/plain";
/// The Prometheus text exposition format.
const METRICS_TEXT: &str = "text/plain; version=0.0.4";

/// Why the metrics endpoint could not start.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// The address could not be bound (e.g. in use).
    #[error("metrics.listen {addr}: {source}")]
    Listen {
        /// The configured address.
        addr: SocketAddr,
        /// The error.
        source: std::io::Error,
    },
    /// The runtime or its thread could not be started.
    #[error("starting the metrics endpoint's thread: {source}")]
    Thread {
        /// The error.
        source: std::io::Error,
    },
}

/// The limits of one server; [`MetricsServer::start`] uses the constants above.
#[derive(Clone, Copy, Debug)]
struct Limits {
    max_connections: u32,
    header_read_timeout: Duration,
    max_connection_age: Duration,
    shutdown_grace: Duration,
}

/// The running endpoint; stops when dropped.
#[derive(Debug)]
pub struct MetricsServer {
    addr: SocketAddr,
    stop: watch::Sender<bool>,
    thread: Option<JoinHandle<()>>,
}

type SnapshotFn = Arc<dyn Fn() -> Snapshot + Send + Sync>;

impl MetricsServer {
    /// Binds `addr` and serves `metrics`, refreshed from `snapshot` on each scrape, to at
    /// most `max_connections` connections at once.
    ///
    /// # Errors
    /// [`ServerError`] when the address cannot be bound or the thread cannot start.
    pub fn start(
        addr: SocketAddr,
        max_connections: u32,
        metrics: Metrics,
        snapshot: SnapshotFn,
    ) -> Result<Self, ServerError> {
        let limits = Limits {
            max_connections,
            header_read_timeout: HEADER_READ_TIMEOUT,
            max_connection_age: MAX_CONNECTION_AGE,
            shutdown_grace: SHUTDOWN_GRACE,
        };
        Self::start_with(addr, limits, metrics, snapshot)
    }

    fn start_with(
        addr: SocketAddr,
        limits: Limits,
        metrics: Metrics,
        snapshot: SnapshotFn,
    ) -> Result<Self, ServerError> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_io()
            .enable_time()
            .build()
            .map_err(|source| ServerError::Thread { source })?;
        let listener = {
            // The listener registers with this runtime's reactor.
            let _entered = runtime.enter();
            listen(addr).map_err(|source| ServerError::Listen { addr, source })?
        };
        let bound = listener
            .local_addr()
            .map_err(|source| ServerError::Listen { addr, source })?;
        let mut http = http1::Builder::new();
        http.timer(TokioTimer::new())
            .header_read_timeout(limits.header_read_timeout)
            .max_buf_size(MAX_BUF_SIZE)
            // A probe may shut its side once the request is sent (`printf .. | nc -N`);
            // it still gets its answer.
            .half_close(true)
            .keep_alive(true);
        let endpoint = Arc::new(Endpoint {
            metrics,
            snapshot,
            http,
            slots: Arc::new(Semaphore::new(limits.max_connections as usize)),
            limits,
        });
        let (stop, stopped) = watch::channel(false);
        let thread = std::thread::Builder::new()
            .name("sluice-metrics".into())
            .spawn(move || {
                runtime.block_on(serve(listener, endpoint, stopped));
                // Dropping the runtime drops the connections still open after the grace.
            })
            .map_err(|source| ServerError::Thread { source })?;
        tracing::info!(
            addr = %bound,
            max_connections = limits.max_connections,
            "metrics endpoint listening"
        );
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
        // Fails only when the thread already ended (it holds the receiver).
        let _ = self.stop.send(true);
        if let Some(thread) = self.thread.take()
            && thread.join().is_err()
        {
            tracing::error!("the metrics endpoint's thread panicked");
        }
    }
}

/// A listening socket with a backlog for bursts of probes and scrapes.
fn listen(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    // As std's `TcpListener::bind`: a restart may bind while old connections linger.
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(LISTEN_BACKLOG)
}

/// The endpoint's own counters, registered with the others by [`Metrics::new`].
pub(super) struct ConnectionCounters {
    accepted: IntCounter,
    refused: IntCounter,
    open: IntGauge,
}

impl ConnectionCounters {
    pub(super) fn register(registry: &Registry) -> prometheus::Result<Self> {
        let accepted = IntCounter::new(
            "sluice_metrics_accepted_connections_total",
            "Connections the metrics endpoint accepted and served.",
        )?;
        let refused = IntCounter::new(
            "sluice_metrics_refused_connections_total",
            "Connections the metrics endpoint closed at once: metrics.max_connections were open.",
        )?;
        let open = IntGauge::new(
            "sluice_metrics_open_connections",
            "Connections the metrics endpoint has open.",
        )?;
        registry.register(Box::new(accepted.clone()))?;
        registry.register(Box::new(refused.clone()))?;
        registry.register(Box::new(open.clone()))?;
        Ok(Self {
            accepted,
            refused,
            open,
        })
    }
}

/// What every connection task shares (all on the one runtime thread).
struct Endpoint {
    metrics: Metrics,
    snapshot: SnapshotFn,
    http: http1::Builder,
    /// One permit per open connection.
    slots: Arc<Semaphore>,
    limits: Limits,
}

/// An open connection's place under the cap: gives it back, and the gauge, when dropped.
struct Slot {
    _permit: OwnedSemaphorePermit,
    open: IntGauge,
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.open.dec();
    }
}

/// Accepts until `stop`, then waits up to the grace for the open connections to finish.
async fn serve(listener: TcpListener, endpoint: Arc<Endpoint>, mut stop: watch::Receiver<bool>) {
    loop {
        let accepted = tokio::select! {
            // A send or the sender's drop: either way, stop.
            _ = stop.changed() => break,
            accepted = listener.accept() => accepted,
        };
        let stream = match accepted {
            Ok((stream, _peer)) => stream,
            Err(e) => {
                tracing::warn!(error = %e, "metrics endpoint: accept failed");
                tokio::time::sleep(ACCEPT_ERROR_PAUSE).await;
                continue;
            }
        };
        let permit = match Arc::clone(&endpoint.slots).try_acquire_owned() {
            Ok(permit) => permit,
            Err(TryAcquireError::NoPermits | TryAcquireError::Closed) => {
                refuse(&endpoint, stream);
                continue;
            }
        };
        endpoint.metrics.connections.accepted.inc();
        endpoint.metrics.connections.open.inc();
        let slot = Slot {
            _permit: permit,
            open: endpoint.metrics.connections.open.clone(),
        };
        tokio::spawn(serve_connection(
            stream,
            slot,
            Arc::clone(&endpoint),
            stop.clone(),
        ));
    }
    drop(listener);
    let limits = endpoint.limits;
    // Every permit back means every connection task has ended.
    let all = endpoint.slots.acquire_many(limits.max_connections);
    if tokio::time::timeout(limits.shutdown_grace, all)
        .await
        .is_err()
    {
        tracing::debug!("metrics endpoint: closing connections still open after the grace");
    }
}

/// Closes a connection beyond the cap at once, unread (a FIN, or a reset if it had sent).
fn refuse(endpoint: &Endpoint, stream: TcpStream) {
    endpoint.metrics.connections.refused.inc();
    let refused = endpoint.metrics.connections.refused.get();
    if refused == 1 {
        tracing::warn!(
            max_connections = endpoint.limits.max_connections,
            "metrics endpoint: metrics.max_connections connections open; closing new ones \
             (counted in sluice_metrics_refused_connections_total)"
        );
    } else {
        tracing::debug!(refused, "metrics endpoint: connection refused, at the cap");
    }
    drop(stream);
}

/// Serves one connection until the client closes it, a limit closes it, or shutdown.
async fn serve_connection(
    stream: TcpStream,
    slot: Slot,
    endpoint: Arc<Endpoint>,
    mut stop: watch::Receiver<bool>,
) {
    let limits = endpoint.limits;
    let service = service_fn(|request: Request<hyper::body::Incoming>| {
        std::future::ready(Ok::<_, Infallible>(respond(&endpoint, &request)))
    });
    let connection = endpoint
        .http
        .serve_connection(TokioIo::new(stream), service);
    let mut connection = std::pin::pin!(connection);
    let result = tokio::select! {
        result = connection.as_mut() => result,
        _ = stop.changed() => {
            connection.as_mut().graceful_shutdown();
            tokio::time::timeout(limits.shutdown_grace, connection.as_mut()).await.unwrap_or(Ok(()))
        }
        () = tokio::time::sleep(limits.max_connection_age) => {
            connection.as_mut().graceful_shutdown();
            tokio::time::timeout(limits.shutdown_grace, connection.as_mut()).await.unwrap_or(Ok(()))
        }
    };
    if let Err(e) = result {
        // Header timeouts, oversized heads, resets: the client's doing, not ours.
        tracing::debug!(error = %e, "metrics endpoint: connection ended");
    }
    drop(slot);
}

/// The answer to one request; `HEAD` gets `GET`'s (hyper sends its headers only).
fn respond<B>(endpoint: &Endpoint, request: &Request<B>) -> Response<Full<Bytes>> {
    if !matches!(*request.method(), Method::GET | Method::HEAD) {
        let mut response = text(StatusCode::METHOD_NOT_ALLOWED, TEXT, "GET or HEAD only\n");
        response
            .headers_mut()
            .insert(header::ALLOW, HeaderValue::from_static("GET, HEAD"));
        return response;
    }
    // `path()` leaves the query string out: `/metrics?x=1` is `/metrics`.
    match request.uri().path() {
        "/metrics" => {
            endpoint.metrics.update(&(endpoint.snapshot)());
            text(StatusCode::OK, METRICS_TEXT, endpoint.metrics.render())
        }
        "/healthz" => text(StatusCode::OK, TEXT, "ok\n"),
        "/readyz" if (endpoint.snapshot)().ready => text(StatusCode::OK, TEXT, "ready\n"),
        "/readyz" => text(StatusCode::SERVICE_UNAVAILABLE, TEXT, "not ready\n"),
        _ => text(StatusCode::NOT_FOUND, TEXT, "not found\n"),
    }
}

fn text(
    status: StatusCode,
    content_type: &'static str,
    body: impl Into<Bytes>,
) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(body.into()));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    response
}

#[cfg(test)]
mod tests;
