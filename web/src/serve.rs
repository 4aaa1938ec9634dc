//! The node's HTTP/1.1 listener, served with hyper directly: `axum::serve` takes no settings
//! and sets no timer, so it has no header-read timeout at all (a slowloris client holds a
//! socket for ever). Here every connection has a header-read timeout (which is also the
//! keep-alive idle timeout), each request a timeout, the listener a global connection cap
//! (accept waits for a slot, so descriptors cannot run out) and a per-client cap (IPv6 by
//! /64; trusted proxies exempt), and shutdown drains within a bound.
//!
//! Near the cap, connections older than a few seconds are asked to close (idle ones close at
//! once), so thousands of idle sockets cannot lock out new clients. Each handler of a method
//! that may change state runs on its own task: a client that hangs up, or a request timeout,
//! never cancels a ledger write half way (memory moves after the commit, so a cancelled future
//! there would leave them apart). `GET` and `HEAD` handlers only read, so they run on the
//! connection's task: a task per lookup cost about a tenth of the lookup rate.

use std::collections::HashMap;
use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::pin::pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{HeaderValue, Method, Request, Response, StatusCode, header};
use futures_util::FutureExt as _;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::{Notify, Semaphore, mpsc, watch};
use tokio::task::JoinSet;
use tokio::time::Instant;
use tower::ServiceExt as _;

use axum::response::IntoResponse as _;

use crate::error::ApiError;
use crate::ratelimit::bucket_key;

/// Limits for the HTTP listener.
#[derive(Debug, Clone)]
pub struct HttpLimits {
    /// Whole request head (line + headers) must arrive within this, counted from the moment
    /// hyper starts waiting for it: connection accept for the first request, end of the
    /// previous response for later ones. So it is also the keep-alive idle timeout.
    pub header_read_timeout: Duration,
    /// From complete request head to response head (includes reading the request body).
    pub request_timeout: Duration,
    /// A connection older than this is asked to close after its current response
    /// (bounds slow readers and connections kept busy forever).
    pub max_connection_age: Duration,
    /// How long a connection asked to close (shutdown, age, shedding) may take before it is dropped.
    pub shutdown_grace: Duration,
    /// Open connections in total; at the cap, accept waits. Keep well under `ulimit -n`.
    pub max_connections: usize,
    /// Open connections per client (IPv6 by /64). 0 disables.
    pub max_connections_per_ip: usize,
    /// Peers the per-client cap does not apply to: the trusted reverse proxies, whose one
    /// address carries every client.
    pub exempt: Vec<ipnet::IpNet>,
    /// When fewer free connection slots than this remain, connections older than
    /// `shed_min_age` are asked to close (idle ones close at once).
    pub shed_below_free: usize,
    /// Connections younger than this are never shed (they have not had time to send a request).
    pub shed_min_age: Duration,
    /// Largest request head accepted (431 above it).
    pub max_header_bytes: usize,
}

impl Default for HttpLimits {
    fn default() -> Self {
        Self {
            header_read_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(30),
            max_connection_age: Duration::from_secs(300),
            shutdown_grace: Duration::from_secs(10),
            max_connections: 4096,
            max_connections_per_ip: 64,
            exempt: Vec::new(),
            shed_below_free: 256,
            shed_min_age: Duration::from_secs(2),
            max_header_bytes: 16 * 1024,
        }
    }
}

/// Serves `router` on `listener` until `shutdown` resolves, then drains within `shutdown_grace`.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    limits: HttpLimits,
    shutdown: impl Future<Output = ()> + Send,
) -> io::Result<()> {
    assert!(limits.max_connections > 0, "max_connections must be at least 1");
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    let per_ip = Arc::new(PerIp::default());
    let shed = Arc::new(Notify::new());
    let mut last_shed: Option<Instant> = None;
    let (stop_tx, stop_rx) = watch::channel(false);
    // Every spawned handler holds a clone; `recv()` returns `None` once all are gone.
    let (inflight_tx, mut inflight_rx) = mpsc::channel::<Infallible>(1);

    let mut h1 = http1::Builder::new();
    h1.timer(TokioTimer::new()) // without a timer the header timeout is silently off
        .header_read_timeout(limits.header_read_timeout)
        .keep_alive(true)
        .max_header_size(limits.max_header_bytes)
        .max_buf_size(64 * 1024);
    let h1 = Arc::new(h1);

    let mut connections = JoinSet::new();
    let mut shutdown = pin!(shutdown);

    'accept: loop {
        while connections.try_join_next().is_some() {}

        // 1. A free slot first (so an fd is only taken when we can afford it). While at the
        //    cap, keep asking old connections to close: the ones that were too young to shed
        //    at the last signal may be old enough now.
        let permit = loop {
            if let Ok(permit) = Arc::clone(&slots).try_acquire_owned() {
                break permit;
            }
            shed_now(&shed, &mut last_shed);
            tokio::select! {
                biased;
                () = &mut shutdown => break 'accept,
                permit = Arc::clone(&slots).acquire_owned() => break permit.expect("the semaphore is never closed"),
                () = tokio::time::sleep(SHED_EVERY) => {}
            }
        };
        if slots.available_permits() < limits.shed_below_free {
            shed_now(&shed, &mut last_shed);
        }

        // 2. Then a connection.
        let (stream, remote) = tokio::select! {
            biased;
            () = &mut shutdown => break 'accept,
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(error) => {
                    accept_error(error).await;
                    continue 'accept;
                }
            },
        };

        // 3. Per-client cap.
        let ip_slot = if limits.max_connections_per_ip == 0
            || limits.exempt.iter().any(|net| net.contains(&remote.ip().to_canonical()))
        {
            None
        } else {
            match per_ip.acquire(bucket_key(remote.ip()), limits.max_connections_per_ip) {
                Some(slot) => Some(slot),
                None => {
                    tracing::debug!(%remote, "refusing connection: too many from this client");
                    // Best effort, never blocks; the socket closes when `stream` drops.
                    let _ = stream.try_write(
                        b"HTTP/1.1 503 Service Unavailable\r\nconnection: close\r\nretry-after: 5\r\ncontent-length: 0\r\n\r\n",
                    );
                    continue 'accept;
                }
            }
        };
        let _ = stream.set_nodelay(true);

        // 4. One task per connection.
        let h1 = Arc::clone(&h1);
        let router = router.clone();
        let inflight = inflight_tx.clone();
        let mut stop = stop_rx.clone();
        let shed = Arc::clone(&shed);
        let request_timeout = limits.request_timeout;
        let max_age = limits.max_connection_age;
        let grace = limits.shutdown_grace;
        let shed_min_age = limits.shed_min_age;
        connections.spawn(async move {
            let _held = (permit, ip_slot); // released when the connection task ends
            let service = service_fn(move |request: Request<Incoming>| {
                handle(router.clone(), remote, request, request_timeout, inflight.clone())
            });
            let mut conn = pin!(h1.serve_connection(TokioIo::new(stream), service));

            let started = Instant::now();
            let mut age = pin!(tokio::time::sleep(max_age));
            let mut hard = pin!(tokio::time::sleep(max_age + grace));
            let mut shed_signal = pin!(shed.notified());
            let mut draining = false;
            loop {
                let begin_drain = tokio::select! {
                    result = conn.as_mut() => {
                        if let Err(error) = result {
                            // Header timeouts, resets, parse errors: normal on the internet.
                            tracing::debug!(%remote, %error, timeout = error.is_timeout(), "HTTP connection ended");
                        }
                        break;
                    }
                    () = &mut hard => {
                        tracing::debug!(%remote, "HTTP connection dropped at its deadline");
                        break;
                    }
                    _ = stop.changed(), if !draining => true,
                    () = &mut age, if !draining => true,
                    () = shed_signal.as_mut(), if !draining => {
                        if started.elapsed() >= shed_min_age {
                            true
                        } else {
                            shed_signal.set(shed.notified());
                            false
                        }
                    }
                };
                if begin_drain {
                    // Idle or never-used connections close now; busy ones after this response.
                    conn.as_mut().graceful_shutdown();
                    draining = true;
                    hard.as_mut().reset(Instant::now() + grace);
                }
            }
        });
    }

    // Shutdown: stop accepting, ask every connection to finish, wait at most `shutdown_grace`.
    drop(listener);
    let deadline = Instant::now() + limits.shutdown_grace + Duration::from_millis(500);
    let _ = stop_tx.send(true);
    let drained = tokio::time::timeout_at(deadline, async { while connections.join_next().await.is_some() {} }).await;
    if drained.is_err() {
        tracing::warn!(left = connections.len(), "aborting HTTP connections still open after the grace period");
        connections.shutdown().await;
    }
    drop(inflight_tx);
    if tokio::time::timeout_at(deadline, inflight_rx.recv()).await.is_err() {
        tracing::warn!("HTTP handlers still running after the grace period");
    }
    Ok(())
}

/// One request: `ConnectInfo` for the router's middleware, the handler of a state-changing
/// method on its own task (so a client disconnect or the timeout never cancels it half way),
/// and the request timeout.
async fn handle(
    router: Router,
    remote: SocketAddr,
    mut request: Request<Incoming>,
    timeout: Duration,
    inflight: mpsc::Sender<Infallible>,
) -> Result<Response<Body>, Infallible> {
    request.extensions_mut().insert(ConnectInfo(remote));
    let finished = if matches!(*request.method(), Method::GET | Method::HEAD) {
        // Reads: nothing to leave half done if the client goes or the timeout fires.
        let work = std::panic::AssertUnwindSafe(router.oneshot(request)).catch_unwind();
        tokio::time::timeout(timeout, work).await.map(|ran| ran.map_err(|_panic| "a read handler panicked".to_owned()))
    } else {
        let work = tokio::spawn(async move {
            let _inflight = inflight;
            router.oneshot(request).await
        });
        tokio::time::timeout(timeout, work).await.map(|ran| ran.map_err(|join_error| join_error.to_string()))
    };
    Ok(match finished {
        Ok(Ok(Ok(response))) => response,
        Ok(Ok(Err(never))) => match never {},
        Ok(Err(error)) => {
            tracing::error!(%remote, %error, "HTTP handler panicked");
            error_response(StatusCode::INTERNAL_SERVER_ERROR, "internal", "internal error")
        }
        Err(_elapsed) => error_response(StatusCode::SERVICE_UNAVAILABLE, "timeout", "the request took too long"),
    })
}

/// The one error shape; `connection: close` makes hyper close the connection after it.
fn error_response(status: StatusCode, code: &'static str, message: &'static str) -> Response<Body> {
    let mut response = ApiError::new(status, code, message).into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONNECTION, HeaderValue::from_static("close"));
    headers.insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
    response
}

/// Shedding wakes every connection task, so it runs at most this often (2,000 wake-ups are not
/// free on 2 cores).
const SHED_EVERY: Duration = Duration::from_millis(250);

fn shed_now(shed: &Notify, last: &mut Option<Instant>) {
    let now = Instant::now();
    if last.is_none_or(|at| now.duration_since(at) >= SHED_EVERY) {
        *last = Some(now);
        shed.notify_waiters();
    }
}

async fn accept_error(error: io::Error) {
    match error.kind() {
        io::ErrorKind::ConnectionAborted
        | io::ErrorKind::ConnectionReset
        | io::ErrorKind::ConnectionRefused
        | io::ErrorKind::Interrupted => {}
        // EMFILE/ENFILE/ENOBUFS: retrying at once would spin.
        _ => {
            tracing::error!(%error, "accept failed; pausing");
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }
}

/// Open connections per client. At most one entry per open connection, so it is bounded by
/// `max_connections`.
#[derive(Debug, Default)]
struct PerIp(Mutex<HashMap<IpAddr, usize>>);

#[derive(Debug)]
struct IpSlot {
    table: Arc<PerIp>,
    key: IpAddr,
}

impl PerIp {
    fn acquire(self: &Arc<Self>, key: IpAddr, max: usize) -> Option<IpSlot> {
        let mut map = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        let count = map.entry(key).or_insert(0);
        if *count >= max {
            return None;
        }
        *count += 1;
        Some(IpSlot { table: Arc::clone(self), key })
    }
}

impl Drop for IpSlot {
    fn drop(&mut self) {
        let mut map = self.table.0.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(count) = map.get_mut(&self.key) {
            *count -= 1;
            if *count == 0 {
                map.remove(&self.key);
            }
        }
    }
}
