//! HTTP: /metrics (pre-rendered), a landing page and /healthz. A scrape never
//! touches the cluster.

use crate::clock::now_unix;
use crate::cycle::Published;
use crate::webconfig::WebConfig;
use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{ALLOW, AUTHORIZATION, CONTENT_TYPE, HeaderValue, WWW_AUTHENTICATE};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use std::future::Future;
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

/// Checks credentials, then routes one request.
pub async fn handle(
    req: &Request<Incoming>,
    published: &Published,
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
    route(req.method(), req.uri().path(), published, config)
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
    // hyper drops the body of HEAD responses itself and keeps Content-Length.
    if path == config.telemetry_path {
        response(
            StatusCode::OK,
            "text/plain; version=0.0.4; charset=utf-8",
            published.metrics.clone(),
        )
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
