//! The HTTP listener over real sockets: slow and idle clients are cut, one client cannot hold
//! more than its share of connections, and with the listener near its cap new clients are
//! still served. Clients bind distinct loopback source addresses (127.0.0.0/8 is all local on
//! Linux), so per-client limits can be told apart from the global one.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use axum::Router;
use axum::routing::get;
use ostracon_web::serve::{HttpLimits, serve};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpSocket, TcpStream};

/// Serves a one-route router with `limits`; returns its address and the stop signal.
async fn server(limits: HttpLimits) -> (SocketAddr, tokio::sync::oneshot::Sender<()>) {
    serve_router(Router::new().route("/ok", get(|| async { "ok" })), limits).await
}

async fn serve_router(router: Router, limits: HttpLimits) -> (SocketAddr, tokio::sync::oneshot::Sender<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(serve(listener, router, limits, async move {
        let _ = stopped.await;
    }));
    (address, stop)
}

async fn connect_from(source: Ipv4Addr, server: SocketAddr) -> TcpStream {
    let socket = TcpSocket::new_v4().unwrap();
    socket.bind(SocketAddr::new(IpAddr::V4(source), 0)).unwrap();
    socket.connect(server).await.unwrap()
}

/// Sends one GET and returns the status line (empty when the server closed without answering).
async fn get_ok(stream: &mut TcpStream) -> String {
    let answer = exchange(stream, "GET", "/ok").await;
    answer.lines().next().unwrap_or_default().to_owned()
}

/// Sends one body-less request and returns the whole answer.
async fn exchange(stream: &mut TcpStream, method: &str, path: &str) -> String {
    let head = format!("{method} {path} HTTP/1.1\r\nhost: x\r\ncontent-length: 0\r\nconnection: close\r\n\r\n");
    stream.write_all(head.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(20), stream.read_to_end(&mut answer)).await;
    String::from_utf8_lossy(&answer).into_owned()
}

/// True once the server closed the connection (read returns 0 or fails) within `within`.
async fn closed_within(stream: &mut TcpStream, within: Duration) -> bool {
    let mut buffer = [0u8; 512];
    let deadline = tokio::time::Instant::now() + within;
    loop {
        match tokio::time::timeout_at(deadline, stream.read(&mut buffer)).await {
            Ok(Ok(0) | Err(_)) => return true,
            Ok(Ok(_)) => {}
            Err(_) => return false,
        }
    }
}

fn limits() -> HttpLimits {
    HttpLimits {
        header_read_timeout: Duration::from_secs(1),
        max_connections: 64,
        max_connections_per_ip: 8,
        shed_below_free: 8,
        shed_min_age: Duration::from_millis(500),
        ..HttpLimits::default()
    }
}

#[tokio::test]
async fn a_slowloris_client_is_cut_by_the_header_timeout() {
    let (address, _stop) = server(limits()).await;
    let mut silent = connect_from(Ipv4Addr::new(127, 0, 0, 2), address).await;
    let mut partial = connect_from(Ipv4Addr::new(127, 0, 0, 3), address).await;
    partial.write_all(b"GET /ok HTTP/1.1\r\nhost: x\r\n").await.unwrap();
    assert!(closed_within(&mut silent, Duration::from_secs(15)).await, "a silent connection is closed");
    assert!(closed_within(&mut partial, Duration::from_secs(15)).await, "a half-sent head is closed");
    let mut honest = connect_from(Ipv4Addr::new(127, 0, 0, 4), address).await;
    assert!(get_ok(&mut honest).await.starts_with("HTTP/1.1 200"));
}

#[tokio::test]
async fn one_client_gets_its_share_of_connections_and_no_more() {
    let (address, _stop) = server(HttpLimits { header_read_timeout: Duration::from_secs(30), ..limits() }).await;
    let greedy = Ipv4Addr::new(127, 0, 0, 5);
    let mut held = Vec::new();
    for _ in 0..8 {
        held.push(connect_from(greedy, address).await);
    }
    // Let the server account for them before the ninth arrives.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut ninth = connect_from(greedy, address).await;
    let status = get_ok(&mut ninth).await;
    assert!(status.is_empty() || status.starts_with("HTTP/1.1 503"), "over its share: {status:?}");
    let mut other = connect_from(Ipv4Addr::new(127, 0, 0, 6), address).await;
    assert!(get_ok(&mut other).await.starts_with("HTTP/1.1 200"), "another client is served");
}

#[tokio::test]
async fn with_idle_connections_filling_the_listener_new_clients_are_still_served() {
    let (address, _stop) = server(HttpLimits { header_read_timeout: Duration::from_secs(60), ..limits() }).await;
    // 64 idle connections from 16 addresses: the listener is at its cap.
    let mut idle = Vec::new();
    for n in 0..64u8 {
        idle.push(connect_from(Ipv4Addr::new(127, 0, 1, 10 + n / 4), address).await);
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    // Old idle connections are shed to make room: a newcomer gets its answer.
    for n in 0..4u8 {
        let mut newcomer = connect_from(Ipv4Addr::new(127, 0, 2, 10 + n), address).await;
        assert!(get_ok(&mut newcomer).await.starts_with("HTTP/1.1 200"), "newcomer {n}");
    }
}

async fn fails() -> &'static str {
    panic!("the handler fails")
}

/// Reads run on the connection's task and writes on their own: either way a panicking handler
/// is answered 500 in the one error shape and the listener serves on, and a write whose
/// client hangs up still runs to its end.
#[tokio::test]
async fn a_panicking_handler_is_a_500_and_a_write_outlives_its_client() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};
    let finished = Arc::new(AtomicBool::new(false));
    let flag = Arc::clone(&finished);
    let router = Router::new().route("/ok", get(|| async { "ok" })).route("/boom", get(fails).post(fails)).route(
        "/slow-write",
        axum::routing::post(move || async move {
            tokio::time::sleep(Duration::from_millis(300)).await;
            flag.store(true, Ordering::SeqCst);
            "written"
        }),
    );
    let (address, _stop) = serve_router(router, limits()).await;
    for method in ["GET", "POST"] {
        let mut stream = connect_from(Ipv4Addr::new(127, 0, 0, 30), address).await;
        let answer = exchange(&mut stream, method, "/boom").await;
        assert!(answer.starts_with("HTTP/1.1 500"), "{method}: {answer}");
        assert!(answer.contains(r#"{"error":{"code":"internal","message":"internal error"}}"#), "{method}: {answer}");
    }
    let mut stream = connect_from(Ipv4Addr::new(127, 0, 0, 31), address).await;
    stream.write_all(b"POST /slow-write HTTP/1.1\r\nhost: x\r\ncontent-length: 0\r\n\r\n").await.unwrap();
    tokio::time::sleep(Duration::from_millis(50)).await;
    drop(stream);
    let mut waited = Duration::ZERO;
    while !finished.load(Ordering::SeqCst) && waited < Duration::from_secs(10) {
        tokio::time::sleep(Duration::from_millis(20)).await;
        waited += Duration::from_millis(20);
    }
    assert!(finished.load(Ordering::SeqCst), "the write ran to its end after its client left");
    let mut honest = connect_from(Ipv4Addr::new(127, 0, 0, 32), address).await;
    assert!(get_ok(&mut honest).await.starts_with("HTTP/1.1 200"));
}
