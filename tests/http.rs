//! Hostile HTTP clients against the real server (no cluster needed): garbage,
//! slowloris, oversized requests, too many connections and unknown methods
//! must not disturb /metrics for well-behaved scrapers.

use ceph_rbd_exporter::cycle::Published;
use ceph_rbd_exporter::server::{self, ServerConfig};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::{Duration, Instant};

const BODY: &str =
    "# HELP ceph_rbd_exporter_up x\n# TYPE ceph_rbd_exporter_up gauge\nceph_rbd_exporter_up 1\n";

/// A server on an ephemeral port, in its own runtime thread; stopped on drop.
struct TestServer {
    addr: SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl TestServer {
    fn start(config: ServerConfig) -> TestServer {
        let (addr_tx, addr_rx) = std::sync::mpsc::channel();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Runtime::new().unwrap();
            rt.block_on(async move {
                let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
                addr_tx.send(listener.local_addr().unwrap()).unwrap();
                let published = Published {
                    metrics: bytes::Bytes::from_static(BODY.as_bytes()),
                    ..Default::default()
                };
                let (_tx, rx) = tokio::sync::watch::channel(Arc::new(published));
                server::run(listener, rx, config, async {
                    let _ = stopped.await;
                })
                .await;
            });
        });
        TestServer {
            addr: addr_rx.recv_timeout(Duration::from_secs(10)).unwrap(),
            stop: Some(stop),
            thread: Some(thread),
        }
    }

    fn connect(&self) -> TcpStream {
        let s = TcpStream::connect(self.addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        s
    }

    /// One well-behaved request; returns status, body and how long it took.
    fn request(&self, method: &str, path: &str) -> (u16, String, Duration) {
        let t0 = Instant::now();
        let mut s = self.connect();
        write!(
            s,
            "{method} {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"
        )
        .unwrap();
        let mut buf = Vec::new();
        let _ = s.read_to_end(&mut buf);
        let text = String::from_utf8_lossy(&buf).to_string();
        let status = text
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        let body = text
            .split_once("\r\n\r\n")
            .map(|(_, b)| b.to_string())
            .unwrap_or_default();
        (status, body, t0.elapsed())
    }

    /// One request with extra header lines; returns status, the response
    /// head (lowercased) and the raw body.
    fn request_with(&self, method: &str, path: &str, headers: &str) -> (u16, String, Vec<u8>) {
        let mut s = self.connect();
        write!(
            s,
            "{method} {path} HTTP/1.1\r\nHost: t\r\n{headers}Connection: close\r\n\r\n"
        )
        .unwrap();
        let mut buf = Vec::new();
        let _ = s.read_to_end(&mut buf);
        let end = buf
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .expect("a complete response head");
        let head = String::from_utf8_lossy(&buf[..end]).to_lowercase();
        let status = head
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        (status, head, buf[end + 4..].to_vec())
    }

    fn scrape_ok(&self) -> Duration {
        let (status, body, took) = self.request("GET", "/metrics");
        assert_eq!(status, 200);
        assert_eq!(body, BODY);
        took
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn quick() -> ServerConfig {
    ServerConfig {
        header_read_timeout: Duration::from_secs(1),
        max_connections: 16,
        ..Default::default()
    }
}

/// Reads until the server closes the connection (or 10 s pass).
fn closed_within(mut s: TcpStream, limit: Duration) -> Option<(Duration, Vec<u8>)> {
    let t0 = Instant::now();
    s.set_read_timeout(Some(limit)).unwrap();
    let mut buf = Vec::new();
    match s.read_to_end(&mut buf) {
        Ok(_) => Some((t0.elapsed(), buf)),
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => Some((t0.elapsed(), buf)),
        Err(_) => None,
    }
}

#[test]
fn only_get_and_head_on_known_paths() {
    let srv = TestServer::start(quick());
    assert_eq!(srv.request("GET", "/metrics").0, 200);
    let (status, body, _) = srv.request("HEAD", "/metrics");
    assert_eq!(status, 200);
    assert!(body.is_empty(), "HEAD must have no body");
    assert_eq!(srv.request("GET", "/").0, 200);
    assert_eq!(srv.request("GET", "/healthz").0, 200);
    for method in ["POST", "PUT", "DELETE", "PATCH", "OPTIONS", "TRACE"] {
        assert_eq!(srv.request(method, "/metrics").0, 405, "{method}");
    }
    assert_eq!(srv.request("GET", "/metrics/../etc/passwd").0, 404);
    assert_eq!(srv.request("GET", "/favicon.ico").0, 404);
    assert_eq!(srv.request("BREW", "/coffee").0, 404);
}

#[test]
fn garbage_gets_an_error_and_the_server_keeps_serving() {
    let srv = TestServer::start(quick());
    for garbage in [
        &b"\x00\x01\x02\x03\xff\xfe garbage\r\n\r\n"[..],
        b"GET\r\n\r\n",
        b"GET /metrics HTTP/9.9\r\n\r\n",
        b"GET /metrics HTTP/1.1\r\nHost: t\r\nContent-Length: -5\r\n\r\n",
        b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03", // a TLS ClientHello
    ] {
        let mut s = srv.connect();
        s.write_all(garbage).unwrap();
        let (_, reply) =
            closed_within(s, Duration::from_secs(5)).expect("server should answer or close");
        let text = String::from_utf8_lossy(&reply);
        assert!(reply.is_empty() || text.starts_with("HTTP/1.1 4"), "{text}");
        srv.scrape_ok();
    }
}

#[test]
fn oversized_headers_are_refused() {
    let srv = TestServer::start(quick());
    let mut s = srv.connect();
    let huge = "x".repeat(256 * 1024);
    let _ = write!(
        s,
        "GET /metrics HTTP/1.1\r\nHost: t\r\nX-Big: {huge}\r\n\r\n"
    );
    let (_, reply) = closed_within(s, Duration::from_secs(5)).expect("server should close");
    let text = String::from_utf8_lossy(&reply);
    assert!(
        reply.is_empty() || text.starts_with("HTTP/1.1 431") || text.starts_with("HTTP/1.1 400"),
        "{text}"
    );
    srv.scrape_ok();
}

#[test]
fn slowloris_is_cut_off_and_does_not_delay_scrapes() {
    let srv = TestServer::start(quick());
    // Several clients that trickle their headers a byte at a time.
    let mut slow: Vec<TcpStream> = (0..8).map(|_| srv.connect()).collect();
    for s in &mut slow {
        s.write_all(b"GET /metrics HTTP/1.1\r\nX-").unwrap();
    }
    let t0 = Instant::now();
    while t0.elapsed() < Duration::from_millis(600) {
        for s in &mut slow {
            let _ = s.write_all(b"a");
        }
        let took = srv.scrape_ok();
        assert!(
            took < Duration::from_millis(500),
            "scrape took {took:?} during slowloris"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    // The header-read timeout (1 s here) closes them.
    for s in slow {
        let (after, _) = closed_within(s, Duration::from_secs(5)).expect("slow client not cut off");
        assert!(
            after < Duration::from_secs(3),
            "cut off only after {after:?}"
        );
    }
}

#[test]
fn idle_connections_beyond_the_cap_do_not_lock_scrapers_out() {
    let srv = TestServer::start(quick());
    // Fill every connection slot with clients that send nothing.
    let idle: Vec<TcpStream> = (0..40).map(|_| srv.connect()).collect();
    std::thread::sleep(Duration::from_millis(200));
    // A scraper gets through once the header timeout frees slots.
    let took = srv.scrape_ok();
    assert!(
        took < Duration::from_secs(4),
        "scrape took {took:?} with idle connections hogging slots"
    );
    drop(idle);
    assert!(srv.scrape_ok() < Duration::from_secs(1));
}

#[test]
fn fifty_concurrent_scrapers_all_succeed() {
    let srv = Arc::new(TestServer::start(ServerConfig::default()));
    let threads: Vec<_> = (0..50)
        .map(|_| {
            let srv = srv.clone();
            std::thread::spawn(move || {
                for _ in 0..10 {
                    srv.scrape_ok();
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
}

/// A response head's value of `name` (lowercase), if it has one.
fn header<'a>(head: &'a str, name: &str) -> Option<&'a str> {
    head.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(':'))
        .map(str::trim)
}

fn gunzip(body: &[u8]) -> String {
    let mut out = String::new();
    flate2::read::GzDecoder::new(body)
        .read_to_string(&mut out)
        .expect("a gzip body");
    out
}

#[test]
fn metrics_are_gzipped_for_clients_that_accept_gzip() {
    let srv = TestServer::start(quick());
    // As Prometheus asks.
    for accept in [
        "Accept-Encoding: gzip\r\n",
        "Accept-Encoding: deflate, gzip;q=0.9, *;q=0.1\r\n",
        "Accept-Encoding: *\r\n",
    ] {
        let (status, head, body) = srv.request_with("GET", "/metrics", accept);
        assert_eq!(status, 200, "{accept}");
        assert_eq!(header(&head, "content-encoding"), Some("gzip"), "{accept}");
        assert_eq!(header(&head, "vary"), Some("accept-encoding"));
        assert_eq!(
            header(&head, "content-length"),
            Some(body.len().to_string().as_str())
        );
        assert_eq!(gunzip(&body), BODY, "{accept}");
    }
    // HEAD: the same head, no body.
    let (_, get_head, get_body) = srv.request_with("GET", "/metrics", "Accept-Encoding: gzip\r\n");
    let (status, head, body) = srv.request_with("HEAD", "/metrics", "Accept-Encoding: gzip\r\n");
    assert_eq!(status, 200);
    assert!(body.is_empty(), "HEAD must have no body");
    assert_eq!(header(&head, "content-encoding"), Some("gzip"));
    assert_eq!(
        header(&head, "content-length"),
        Some(get_body.len().to_string().as_str())
    );
    assert_eq!(
        header(&get_head, "content-length"),
        header(&head, "content-length")
    );
}

#[test]
fn metrics_are_plain_without_gzip_in_accept_encoding() {
    let srv = TestServer::start(quick());
    for accept in [
        "",
        "Accept-Encoding: gzip;q=0\r\n",
        "Accept-Encoding: gzip;q=0, identity\r\n",
        "Accept-Encoding: br, deflate\r\n",
        "Accept-Encoding: identity\r\n",
        "Accept-Encoding: *;q=0\r\n",
    ] {
        let (status, head, body) = srv.request_with("GET", "/metrics", accept);
        assert_eq!(status, 200, "{accept}");
        assert_eq!(header(&head, "content-encoding"), None, "{accept}");
        assert_eq!(header(&head, "vary"), Some("accept-encoding"));
        assert_eq!(
            header(&head, "content-length"),
            Some(BODY.len().to_string().as_str())
        );
        assert_eq!(body, BODY.as_bytes(), "{accept}");
    }
}

#[test]
fn other_pages_and_errors_are_never_gzipped() {
    let srv = TestServer::start(quick());
    for (method, path, status) in [
        ("GET", "/", 200),
        ("GET", "/healthz", 200),
        ("GET", "/nope", 404),
        ("POST", "/metrics", 405),
    ] {
        let (got, head, body) = srv.request_with(method, path, "Accept-Encoding: gzip\r\n");
        assert_eq!(got, status, "{method} {path}");
        assert_eq!(header(&head, "content-encoding"), None, "{method} {path}");
        assert!(!body.is_empty());
    }
}

#[test]
fn fifty_concurrent_gzip_scrapers_all_get_the_exposition() {
    let srv = Arc::new(TestServer::start(ServerConfig::default()));
    let threads: Vec<_> = (0..50)
        .map(|_| {
            let srv = srv.clone();
            std::thread::spawn(move || {
                for _ in 0..4 {
                    let (status, _, body) =
                        srv.request_with("GET", "/metrics", "Accept-Encoding: gzip\r\n");
                    assert_eq!(status, 200);
                    assert_eq!(gunzip(&body), BODY);
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
}
