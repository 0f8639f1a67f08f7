//! HTTP: /metrics (pre-rendered), a landing page and /healthz. A scrape never
//! touches the cluster.
//!
//! /metrics is gzipped for clients whose `Accept-Encoding` takes gzip (as
//! Prometheus' does), once per published exposition: the first such scrape
//! compresses it on a blocking thread, and it and every later scrape until
//! the next publish share the result ([`gzipped`]).

use crate::clock::now_unix;
use crate::cycle::Published;
use crate::webconfig::WebConfig;
use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{
    ACCEPT_ENCODING, ALLOW, AUTHORIZATION, CONTENT_ENCODING, CONTENT_TYPE, HeaderValue, VARY,
    WWW_AUTHENTICATE,
};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use std::future::Future;
use std::io::Write;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};

/// HTTP settings.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Path that serves the metrics, e.g. `/metrics`.
    pub telemetry_path: String,
    /// Most connections served at once; more wait in the accept queue.
    pub max_connections: usize,
    /// Time a client gets to send its request headers (and to finish the
    /// TLS handshake).
    pub header_read_timeout: Duration,
    /// TLS and basic auth from `--web.config.file`.
    pub web: WebConfig,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            telemetry_path: "/metrics".into(),
            max_connections: 64,
            // Well under Prometheus' default 10 s scrape timeout, so clients
            // that hog every slot cannot lock scrapers out for long.
            header_read_timeout: Duration::from_secs(5),
            web: WebConfig::default(),
        }
    }
}

/// Serves until `shutdown` completes, then lets open requests finish.
pub async fn run(
    listener: TcpListener,
    published: watch::Receiver<Arc<Published>>,
    config: ServerConfig,
    shutdown: impl Future<Output = ()>,
) {
    let config = Arc::new(config);
    let slots = Arc::new(Semaphore::new(config.max_connections.max(1)));
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    tokio::pin!(shutdown);
    loop {
        let permit = tokio::select! {
            p = slots.clone().acquire_owned() => p.expect("semaphore never closes"),
            _ = &mut shutdown => break,
        };
        let (stream, peer) = tokio::select! {
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(e) => {
                    // E.g. EMFILE: back off instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            _ = &mut shutdown => break,
        };
        let published = published.clone();
        let config = config.clone();
        let watcher = graceful.watcher();
        tokio::spawn(async move {
            match config.web.tls.clone() {
                None => serve(TokioIo::new(stream), published, config, watcher).await,
                Some(tls) => {
                    let acceptor = tokio_rustls::TlsAcceptor::from(tls);
                    match tokio::time::timeout(config.header_read_timeout, acceptor.accept(stream))
                        .await
                    {
                        Ok(Ok(tls_stream)) => {
                            serve(TokioIo::new(tls_stream), published, config, watcher).await
                        }
                        Ok(Err(e)) => tracing::debug!(%peer, error = %e, "TLS handshake failed"),
                        Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
                    }
                }
            }
            drop(permit);
        });
    }
    drop(listener);
    tokio::select! {
        _ = graceful.shutdown() => {}
        _ = tokio::time::sleep(Duration::from_secs(5)) => {
            tracing::warn!("connections still open after 5 s; closing them");
        }
    }
}

/// Serves one connection (plain or TLS) until it closes.
async fn serve<IO>(
    io: TokioIo<IO>,
    published: watch::Receiver<Arc<Published>>,
    config: Arc<ServerConfig>,
    watcher: hyper_util::server::graceful::Watcher,
) where
    IO: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let service_config = config.clone();
    let service = service_fn(move |req: Request<Incoming>| {
        let snapshot = published.borrow().clone();
        let config = service_config.clone();
        async move { Ok::<_, std::convert::Infallible>(handle(&req, &snapshot, &config).await) }
    });
    let conn = http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(config.header_read_timeout)
        .max_buf_size(64 * 1024)
        .serve_connection(io, service);
    if let Err(e) = watcher.watch(conn).await {
        tracing::debug!(error = %e, "connection ended with an error");
    }
}

fn response(status: StatusCode, content_type: &'static str, body: Bytes) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(body));
    *r.status_mut() = status;
    r.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    r
}

/// The exposition's content type.
const EXPOSITION: &str = "text/plain; version=0.0.4; charset=utf-8";

/// A /metrics response: `body` is the exposition, gzipped if `gzip`.
fn metrics_response(body: Bytes, gzip: bool) -> Response<Full<Bytes>> {
    // hyper sets Content-Length from the body, also for HEAD (and sends
    // no body then).
    let mut r = response(StatusCode::OK, EXPOSITION, body);
    let headers = r.headers_mut();
    headers.insert(VARY, HeaderValue::from_static("accept-encoding"));
    if gzip {
        headers.insert(CONTENT_ENCODING, HeaderValue::from_static("gzip"));
    }
    r
}

/// Whether a response may be gzipped, by the request's `Accept-Encoding`
/// headers (RFC 9110 12.5.3): gzip (or x-gzip), else `*`, with a q-value
/// above 0 and not below that of an explicit `identity`. No header, or
/// one that does not name gzip or `*`, means the plain body; so does
/// `gzip;q=0`. An entry with a malformed q-value is ignored.
pub fn accepts_gzip<'a>(values: impl IntoIterator<Item = &'a HeaderValue>) -> bool {
    let (mut gzip, mut any, mut identity) = (None::<f32>, None::<f32>, None::<f32>);
    for value in values {
        let Ok(value) = value.to_str() else { continue };
        for entry in value.split(',') {
            let mut parts = entry.split(';');
            let coding = parts.next().unwrap_or("").trim();
            let mut q = Some(1.0);
            for param in parts {
                if let Some((k, v)) = param.split_once('=') {
                    if k.trim().eq_ignore_ascii_case("q") {
                        q = parse_qvalue(v.trim());
                    }
                }
            }
            let Some(q) = q else { continue };
            let slot =
                if coding.eq_ignore_ascii_case("gzip") || coding.eq_ignore_ascii_case("x-gzip") {
                    &mut gzip
                } else if coding == "*" {
                    &mut any
                } else if coding.eq_ignore_ascii_case("identity") {
                    &mut identity
                } else {
                    continue;
                };
            *slot = Some(slot.map_or(q, |old| old.max(q)));
        }
    }
    let q = gzip.or(any).unwrap_or(0.0);
    q > 0.0 && q >= identity.unwrap_or(0.0)
}

/// A q-value, 0 to 1 with at most three decimals; `None` if malformed.
fn parse_qvalue(v: &str) -> Option<f32> {
    let ok = v.len() <= 5
        && v.bytes().all(|b| b.is_ascii_digit() || b == b'.')
        && (v.starts_with('0') || v.starts_with('1'));
    let q: f32 = if ok { v.parse().ok()? } else { return None };
    (0.0..=1.0).contains(&q).then_some(q)
}

/// `body` gzipped at the fastest level: the exposition repeats itself so
/// much that level 1 already shrinks it about tenfold, at a fraction of
/// the time of the default level.
pub fn gzip(body: &[u8]) -> Bytes {
    let mut e = flate2::write::GzEncoder::new(
        Vec::with_capacity(body.len() / 8 + 64),
        flate2::Compression::fast(),
    );
    e.write_all(body).expect("writing to memory cannot fail");
    Bytes::from(e.finish().expect("writing to memory cannot fail"))
}

/// The published exposition gzipped: compressed once per publish, on a
/// blocking thread so that the runtime keeps serving meanwhile (tens of
/// MiB with `--metrics.all-images` at 100,000 images). Scrapes that come
/// while it runs wait for it (on blocking threads too) and share it; it
/// finishes and is kept even if the scrape that started it goes away.
/// `None` only if the compression panicked; the plain body is served then.
pub async fn gzipped(published: &Arc<Published>) -> Option<Bytes> {
    if let Some(body) = published.metrics_gzip.get() {
        return Some(body.clone());
    }
    let p = published.clone();
    tokio::task::spawn_blocking(move || p.metrics_gzip.get_or_init(|| gzip(&p.metrics)).clone())
        .await
        .ok()
}

/// Checks credentials, then routes one request.
pub async fn handle(
    req: &Request<Incoming>,
    published: &Arc<Published>,
    config: &ServerConfig,
) -> Response<Full<Bytes>> {
    let auth = req
        .headers()
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    if !config.web.known_good(auth.as_deref()) {
        let web = config.web.clone();
        let ok = tokio::task::spawn_blocking(move || web.authorized(auth.as_deref()))
            .await
            .unwrap_or(false);
        if !ok {
            let mut r = response(
                StatusCode::UNAUTHORIZED,
                "text/plain; charset=utf-8",
                Bytes::from_static(b"unauthorized\n"),
            );
            r.headers_mut().insert(
                WWW_AUTHENTICATE,
                HeaderValue::from_static("Basic realm=\"ceph-rbd-exporter\""),
            );
            return r;
        }
    }
    let method = req.method();
    if req.uri().path() == config.telemetry_path
        && (method == Method::GET || method == Method::HEAD)
        && accepts_gzip(req.headers().get_all(ACCEPT_ENCODING))
    {
        if let Some(body) = gzipped(published).await {
            return metrics_response(body, true);
        }
    }
    route(method, req.uri().path(), published, config)
}

fn route(
    method: &Method,
    path: &str,
    published: &Published,
    config: &ServerConfig,
) -> Response<Full<Bytes>> {
    let known = path == config.telemetry_path || path == "/" || path == "/healthz";
    if !known {
        return response(
            StatusCode::NOT_FOUND,
            "text/plain; charset=utf-8",
            Bytes::from_static(b"not found\n"),
        );
    }
    if method != Method::GET && method != Method::HEAD {
        let mut r = response(
            StatusCode::METHOD_NOT_ALLOWED,
            "text/plain; charset=utf-8",
            Bytes::from_static(b"method not allowed\n"),
        );
        r.headers_mut()
            .insert(ALLOW, HeaderValue::from_static("GET, HEAD"));
        return r;
    }
    if path == config.telemetry_path {
        metrics_response(published.metrics.clone(), false)
    } else if path == "/healthz" {
        response(
            StatusCode::OK,
            "text/plain; charset=utf-8",
            Bytes::from_static(b"ok\n"),
        )
    } else {
        response(
            StatusCode::OK,
            "text/html; charset=utf-8",
            Bytes::from(landing_page(published, &config.telemetry_path)),
        )
    }
}

fn html_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&#39;")
}

fn landing_page(p: &Published, metrics_path: &str) -> String {
    let mut rows = String::new();
    let mut totals = [0u64; 6];
    if let Some(a) = &p.analysed {
        for ((pool_id, ns), s) in &a.analysis.namespaces {
            let pool = a.sample.pool_name(*pool_id);
            let name = if ns.is_empty() {
                pool
            } else {
                format!("{pool}/{ns}")
            };
            rows.push_str(&format!(
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>\n",
                html_escape(&name),
                s.images,
                s.watchers,
                s.orphaned_watchers,
                s.stale_locks,
                s.flatten_pending_images,
                s.max_clone_depth
            ));
            for (t, v) in totals.iter_mut().zip([
                s.images,
                s.watchers,
                s.orphaned_watchers,
                s.stale_locks,
                s.flatten_pending_images,
                s.trash_images,
            ]) {
                *t += v;
            }
        }
    }
    let last = match p.analysed.as_ref().map(|a| &a.sample) {
        Some(s) => format!(
            "Last sample finished {:.0} s ago and took {:.2} s.",
            (now_unix() - s.finished_at).max(0.0),
            s.finished_at - s.started_at
        ),
        None => "No sample yet.".to_string(),
    };
    let error = p
        .last_error
        .as_ref()
        .map(|e| format!("<p><b>Last attempt failed:</b> {}</p>", html_escape(e)))
        .unwrap_or_default();
    let up = if p.status.up {
        "reachable"
    } else {
        "NOT reachable"
    };
    let m = html_escape(metrics_path);
    format!(
        "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>Ceph RBD exporter</title></head><body>\n\
<h1>Ceph RBD exporter</h1>\n<p><a href=\"{m}\">Metrics</a> · <a href=\"/healthz\">Health</a></p>\n\
<p>Cluster {up}. {last}</p>\n{error}\
<p>{} images, {} watchers, <b>{} orphaned watchers</b>, <b>{} stale locks</b>, {} images pending flatten, {} in trash.</p>\n\
<table border=\"1\" cellpadding=\"4\"><tr><th>pool/namespace</th><th>images</th><th>watchers</th><th>orphaned</th><th>stale locks</th><th>flatten pending</th><th>max clone depth</th></tr>\n{rows}</table>\n\
</body></html>\n",
        totals[0], totals[1], totals[2], totals[3], totals[4], totals[5]
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;

    fn body(r: Response<Full<Bytes>>) -> String {
        let b = futures_lite_block_on(r.into_body().collect())
            .unwrap()
            .to_bytes();
        String::from_utf8(b.to_vec()).unwrap()
    }

    fn futures_lite_block_on<F: Future>(f: F) -> F::Output {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap()
            .block_on(f)
    }

    fn published() -> Published {
        Published {
            metrics: Bytes::from_static(b"ceph_rbd_exporter_up 1\n"),
            ..Default::default()
        }
    }

    #[test]
    fn routes_known_paths_and_methods() {
        let c = ServerConfig::default();
        let p = published();
        let r = route(&Method::GET, "/metrics", &p, &c);
        assert_eq!(r.status(), StatusCode::OK);
        assert_eq!(r.headers()[VARY], "accept-encoding");
        assert!(r.headers().get(CONTENT_ENCODING).is_none());
        assert_eq!(body(r), "ceph_rbd_exporter_up 1\n");
        assert_eq!(
            route(&Method::HEAD, "/metrics", &p, &c).status(),
            StatusCode::OK
        );
        assert_eq!(
            route(&Method::GET, "/healthz", &p, &c).status(),
            StatusCode::OK
        );
        assert_eq!(
            route(&Method::GET, "/nope", &p, &c).status(),
            StatusCode::NOT_FOUND
        );
        let r = route(&Method::POST, "/metrics", &p, &c);
        assert_eq!(r.status(), StatusCode::METHOD_NOT_ALLOWED);
        assert_eq!(r.headers()[ALLOW], "GET, HEAD");
        assert_eq!(
            route(&Method::DELETE, "/nope", &p, &c).status(),
            StatusCode::NOT_FOUND
        );
    }

    fn accepts(values: &[&str]) -> bool {
        let values: Vec<HeaderValue> = values
            .iter()
            .map(|v| HeaderValue::from_str(v).unwrap())
            .collect();
        accepts_gzip(&values)
    }

    #[test]
    fn gzip_is_negotiated_by_accept_encoding() {
        for yes in [
            &["gzip"][..],
            &["gzip"],
            &["GZip;q=0.5"],
            &["deflate, gzip;q=1.0, *;q=0.5"],
            &["identity;q=0.5, gzip;q=0.8"],
            &["*"],
            &["br", "gzip"],
            &["x-gzip"],
            &["gzip ; q=0.001"],
        ] {
            assert!(accepts(yes), "{yes:?}");
        }
        for no in [
            &[][..],
            &[""],
            &["identity"],
            &["br, deflate"],
            &["gzip;q=0"],
            &["gzip;q=0.000"],
            &["gzip;q=0, *"],
            &["*;q=0"],
            &["gzip;q=0.5, identity"],
            &["gzip;q=2"],
            &["gzip;q=nope"],
            &["gzip;q=.5"],
        ] {
            assert!(!accepts(no), "{no:?}");
        }
    }

    #[test]
    fn gzip_round_trips() {
        use std::io::Read;
        let body = "ceph_rbd_exporter_up 1\n".repeat(1000);
        let z = gzip(body.as_bytes());
        assert!(z.len() < body.len() / 10, "{} of {}", z.len(), body.len());
        let mut back = String::new();
        flate2::read::GzDecoder::new(&z[..])
            .read_to_string(&mut back)
            .unwrap();
        assert_eq!(back, body);
    }

    #[test]
    fn gzipped_is_compressed_once_per_publish() {
        let p = Arc::new(published());
        let first = futures_lite_block_on(gzipped(&p)).unwrap();
        let second = futures_lite_block_on(gzipped(&p)).unwrap();
        // The same buffer, not a second compression.
        assert_eq!(first.as_ptr(), second.as_ptr());
        assert_eq!(p.metrics_gzip.get().unwrap().as_ptr(), first.as_ptr());
    }

    #[test]
    fn landing_page_links_metrics_and_escapes() {
        let c = ServerConfig {
            telemetry_path: "/x<y".into(),
            ..Default::default()
        };
        let p = Published {
            last_error: Some("<script>".into()),
            ..published()
        };
        let page = body(route(&Method::GET, "/", &p, &c));
        assert!(page.contains("href=\"/x&lt;y\""));
        assert!(page.contains("&lt;script&gt;"));
        assert!(page.contains("No sample yet."));
    }
}
