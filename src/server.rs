//! HTTP: /metrics (pre-rendered), /healthz, and the pages ([`crate::pages`]:
//! the landing page, one per image, the orphans), all behind the same TLS
//! and basic auth. Neither a scrape nor a page touches the cluster.
//!
//! /metrics is gzipped for clients whose `Accept-Encoding` takes gzip (as
//! Prometheus' does), once per published exposition: the first such scrape
//! compresses it on a blocking thread, and it and every later scrape until
//! the next publish share the result ([`gzipped`]).

use crate::cycle::Published;
use crate::pages::{self, PageConfig, Reply};
use crate::webconfig::WebConfig;
use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{
    ACCEPT, ACCEPT_ENCODING, ALLOW, AUTHORIZATION, CACHE_CONTROL, CONTENT_ENCODING,
    CONTENT_SECURITY_POLICY as CONTENT_SECURITY_POLICY_HEADER, CONTENT_TYPE, HeaderValue,
    REFERRER_POLICY, VARY, WWW_AUTHENTICATE, X_CONTENT_TYPE_OPTIONS,
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
    /// The path of `--web.external-url` (see [`pages::link_prefix`]):
    /// prefixes the pages' links.
    pub link_prefix: String,
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
            link_prefix: String::new(),
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
    for (coding, q) in weighted(values) {
        let slot = if coding.eq_ignore_ascii_case("gzip") || coding.eq_ignore_ascii_case("x-gzip") {
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
    let q = gzip.or(any).unwrap_or(0.0);
    q > 0.0 && q >= identity.unwrap_or(0.0)
}

/// Whether the request's `Accept` headers prefer JSON to HTML:
/// `application/json` with a q-value above that of `text/html` (absent:
/// 0). The pages answer such a request with their JSON twin.
pub fn accept_prefers_json<'a>(values: impl IntoIterator<Item = &'a HeaderValue>) -> bool {
    let (mut json, mut html) = (0.0_f32, 0.0_f32);
    for (media, q) in weighted(values) {
        if media.eq_ignore_ascii_case("application/json") {
            json = json.max(q);
        } else if media.eq_ignore_ascii_case("text/html")
            || media.eq_ignore_ascii_case("application/xhtml+xml")
        {
            html = html.max(q);
        }
    }
    json > 0.0 && json > html
}

/// The entries of comma-separated header values (`Accept`,
/// `Accept-Encoding`), each with its q-value (1 when absent); an entry
/// with a malformed q-value is left out.
fn weighted<'a>(values: impl IntoIterator<Item = &'a HeaderValue>) -> Vec<(&'a str, f32)> {
    let mut out = Vec::new();
    for value in values {
        let Ok(value) = value.to_str() else { continue };
        for entry in value.split(',') {
            let mut parts = entry.split(';');
            let name = parts.next().unwrap_or("").trim();
            let mut q = Some(1.0);
            for param in parts {
                if let Some((k, v)) = param.split_once('=') {
                    if k.trim().eq_ignore_ascii_case("q") {
                        q = parse_qvalue(v.trim());
                    }
                }
            }
            if let Some(q) = q {
                out.push((name, q));
            }
        }
    }
    out
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
    let accept_json = accept_prefers_json(req.headers().get_all(ACCEPT));
    route(
        method,
        req.uri().path(),
        req.uri().query(),
        accept_json,
        published,
        config,
    )
}

/// Where a page may load anything from: only the exporter's own
/// stylesheet and script; no inline script or style, no frames, no forms.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

fn route(
    method: &Method,
    path: &str,
    query: Option<&str>,
    accept_json: bool,
    published: &Published,
    config: &ServerConfig,
) -> Response<Full<Bytes>> {
    let own = path == config.telemetry_path || path == "/healthz";
    let page = match own {
        true => None,
        false => {
            let pc = PageConfig {
                prefix: config.link_prefix.clone(),
                metrics_path: config.telemetry_path.clone(),
            };
            pages::reply(path, query, accept_json, published, &pc)
        }
    };
    if !own && page.is_none() {
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
    match page {
        Some(p) => page_response(p),
        None if path == config.telemetry_path => metrics_response(published.metrics.clone(), false),
        None => response(
            StatusCode::OK,
            "text/plain; charset=utf-8",
            Bytes::from_static(b"ok\n"),
        ),
    }
}

/// A page's reply as HTTP, with the Content-Security-Policy and the other
/// headers every page sends.
fn page_response(reply: Reply) -> Response<Full<Bytes>> {
    const TEXT: &str = "text/plain; charset=utf-8";
    let mut r = match reply {
        Reply::Html(body) => response(
            StatusCode::OK,
            "text/html; charset=utf-8",
            Bytes::from(body),
        ),
        Reply::Json(body) => response(StatusCode::OK, "application/json", Bytes::from(body)),
        Reply::Asset { content_type, body } => {
            let mut r = response(
                StatusCode::OK,
                content_type,
                Bytes::from_static(body.as_bytes()),
            );
            r.headers_mut()
                .insert(CACHE_CONTROL, HeaderValue::from_static("max-age=300"));
            r
        }
        Reply::NotFound(body) => response(StatusCode::NOT_FOUND, TEXT, Bytes::from(body)),
        Reply::BadRequest(body) => response(StatusCode::BAD_REQUEST, TEXT, Bytes::from(body)),
        Reply::Unavailable(body) => {
            response(StatusCode::SERVICE_UNAVAILABLE, TEXT, Bytes::from(body))
        }
        Reply::NoSample => response(
            StatusCode::SERVICE_UNAVAILABLE,
            TEXT,
            Bytes::from_static(
                b"no sample yet: the pages fill in after the exporter's first sample\n",
            ),
        ),
    };
    let h = r.headers_mut();
    h.insert(
        CONTENT_SECURITY_POLICY_HEADER,
        HeaderValue::from_static(CONTENT_SECURITY_POLICY),
    );
    h.insert(X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    h.insert(REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    h.insert(VARY, HeaderValue::from_static("accept"));
    if !h.contains_key(CACHE_CONTROL) {
        h.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    r
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

    fn route_get(
        method: &Method,
        path: &str,
        p: &Published,
        c: &ServerConfig,
    ) -> Response<Full<Bytes>> {
        route(method, path, None, false, p, c)
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
        let r = route_get(&Method::GET, "/metrics", &p, &c);
        assert_eq!(r.status(), StatusCode::OK);
        assert_eq!(r.headers()[VARY], "accept-encoding");
        assert!(r.headers().get(CONTENT_ENCODING).is_none());
        assert_eq!(body(r), "ceph_rbd_exporter_up 1\n");
        assert_eq!(
            route_get(&Method::HEAD, "/metrics", &p, &c).status(),
            StatusCode::OK
        );
        assert_eq!(
            route_get(&Method::GET, "/healthz", &p, &c).status(),
            StatusCode::OK
        );
        assert_eq!(
            route_get(&Method::GET, "/nope", &p, &c).status(),
            StatusCode::NOT_FOUND
        );
        let r = route_get(&Method::POST, "/metrics", &p, &c);
        assert_eq!(r.status(), StatusCode::METHOD_NOT_ALLOWED);
        assert_eq!(r.headers()[ALLOW], "GET, HEAD");
        assert_eq!(
            route_get(&Method::DELETE, "/nope", &p, &c).status(),
            StatusCode::NOT_FOUND
        );
    }

    #[test]
    fn pages_send_the_policy_and_take_only_get_and_head() {
        let c = ServerConfig::default();
        let p = published();
        let r = route_get(&Method::GET, "/", &p, &c);
        assert_eq!(r.status(), StatusCode::OK);
        assert_eq!(r.headers()[CONTENT_TYPE], "text/html; charset=utf-8");
        assert_eq!(
            r.headers()[CONTENT_SECURITY_POLICY_HEADER],
            CONTENT_SECURITY_POLICY
        );
        assert_eq!(r.headers()[X_CONTENT_TYPE_OPTIONS], "nosniff");
        let css = route_get(&Method::GET, "/assets/pages.css", &p, &c);
        assert_eq!(css.headers()[CONTENT_TYPE], "text/css; charset=utf-8");
        assert!(css.headers().contains_key(CONTENT_SECURITY_POLICY_HEADER));
        // No sample yet: the image pages say so.
        let r = route_get(&Method::GET, "/images/a/b", &p, &c);
        assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert!(body(r).contains("no sample yet"));
        let r = route_get(&Method::POST, "/orphans", &p, &c);
        assert_eq!(r.status(), StatusCode::METHOD_NOT_ALLOWED);
        assert_eq!(
            route_get(&Method::GET, "/images/a/b/c/d", &p, &c).status(),
            StatusCode::NOT_FOUND
        );
        assert_eq!(
            route(&Method::GET, "/images", Some("image=x"), false, &p, &c).status(),
            StatusCode::BAD_REQUEST
        );
    }

    fn accepts(values: &[&str]) -> bool {
        let values: Vec<HeaderValue> = values
            .iter()
            .map(|v| HeaderValue::from_str(v).unwrap())
            .collect();
        accepts_gzip(&values)
    }

    fn prefers_json(value: &str) -> bool {
        accept_prefers_json(&[HeaderValue::from_str(value).unwrap()])
    }

    #[test]
    fn accept_negotiation() {
        assert!(prefers_json("application/json"));
        assert!(prefers_json("application/json, text/html;q=0.5"));
        assert!(!prefers_json(
            "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"
        ));
        assert!(!prefers_json("*/*"));
        assert!(!prefers_json("application/json;q=0"));
        assert!(!prefers_json("text/html, application/json"));
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
        let page = body(route_get(&Method::GET, "/", &p, &c));
        assert!(page.contains("href=\"/x&lt;y\""));
        assert!(page.contains("&lt;script&gt;"));
        assert!(page.contains("No sample yet."));
    }
}
