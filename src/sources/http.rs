//! A small JSON-over-HTTP(S) client for the attachment sources, on hyper 1
//! and rustls (ring).
//!
//! One connection per request: a fetch is a handful of requests per sample
//! interval, so pooling buys nothing, and a fresh connection cannot inherit
//! a half-read answer from a request that timed out. Every request has one
//! deadline covering connect, TLS, headers and body, and a body cap, so a
//! stuck or hostile API can delay a source by at most the timeout and cost
//! at most the cap in memory.
//!
//! Errors name the URL (with any `user:password@` removed) and what went
//! wrong; header values (tokens) never appear in errors or logs.

use super::SourceError;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::header::{
    ACCEPT, CONTENT_LENGTH, CONTENT_TYPE, HOST, HeaderName, HeaderValue, USER_AGENT,
};
use hyper::{HeaderMap, Method, Request, Uri};
use hyper_util::rt::TokioIo;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use std::path::Path;
use std::sync::{Arc, OnceLock};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;

/// Largest response body accepted. A Nova `servers/detail` page of 1000
/// servers is a few MiB; anything near this is not an answer we can use.
pub const DEFAULT_MAX_BODY: usize = 64 << 20;

/// How many bytes of an error body are quoted in a `BadResponse`.
const ERROR_SNIPPET: usize = 200;

/// A client certificate and its key, both PEM, for mutual TLS (clouds.yaml's
/// `cert` and `key`).
#[derive(Clone)]
pub struct ClientIdentity {
    /// Certificate chain, PEM, leaf first.
    pub cert_pem: Vec<u8>,
    /// Private key, PEM (PKCS#8, PKCS#1 or SEC1).
    pub key_pem: Vec<u8>,
}

impl std::fmt::Debug for ClientIdentity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The key is a secret: never print it.
        f.debug_struct("ClientIdentity")
            .field("cert_pem", &format_args!("{} bytes", self.cert_pem.len()))
            .field("key_pem", &"<redacted>")
            .finish()
    }
}

/// How to check the server and who to be towards it.
#[derive(Debug, Clone, Default)]
pub struct TlsOptions {
    /// CA certificates (PEM) to trust instead of the system roots, as
    /// openstacksdk's `cacert` does.
    pub ca_pem: Option<Vec<u8>>,
    /// Accept any server certificate (`verify: false`). Handshake signatures
    /// are still checked.
    pub insecure: bool,
    /// Client certificate for mutual TLS.
    pub client_identity: Option<ClientIdentity>,
}

/// A parsed 2xx answer.
#[derive(Debug, Clone)]
pub struct JsonResponse {
    /// HTTP status code.
    pub status: u16,
    /// Response headers (Keystone's token is in `X-Subject-Token`).
    pub headers: HeaderMap,
    /// The body, parsed.
    pub body: serde_json::Value,
}

/// The client. Cheap to share; holds the TLS configuration built once.
#[derive(Clone)]
pub struct HttpClient {
    /// Source name put in every error.
    source_name: &'static str,
    /// Built once from the [`TlsOptions`].
    tls: Arc<rustls::ClientConfig>,
    /// Deadline for one whole request.
    timeout: Duration,
    /// Largest body accepted, in bytes.
    max_body: usize,
}

impl std::fmt::Debug for HttpClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpClient")
            .field("source_name", &self.source_name)
            .field("timeout", &self.timeout)
            .field("max_body", &self.max_body)
            .finish_non_exhaustive()
    }
}

/// Reads a PEM file named in a source's settings; the error names `what`
/// (e.g. `cacert`) and the path.
pub fn read_pem_file(
    source_name: &'static str,
    what: &str,
    path: &Path,
) -> Result<Vec<u8>, SourceError> {
    std::fs::read(path).map_err(|e| SourceError::Config {
        source_name,
        message: format!("{what} {}: {e}", path.display()),
    })
}

/// `url` without any `user:password@` part, for error messages.
pub fn redact_url(url: &str) -> String {
    let Some(scheme_end) = url.find("://") else {
        return url.to_string();
    };
    let rest = &url[scheme_end + 3..];
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    match rest[..authority_end].rfind('@') {
        Some(at) => format!("{}{}", &url[..scheme_end + 3], &rest[at + 1..]),
        None => url.to_string(),
    }
}

/// `e` and its causes, `outer: inner: innermost`, since hyper's own
/// message ("client error (Connect)") hides the useful part.
fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut cur = e.source();
    while let Some(inner) = cur {
        let text = inner.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        cur = inner.source();
    }
    out
}

/// The system trust anchors, loaded once per process.
fn system_roots() -> &'static [CertificateDer<'static>] {
    static ROOTS: OnceLock<Vec<CertificateDer<'static>>> = OnceLock::new();
    ROOTS.get_or_init(|| {
        let found = rustls_native_certs::load_native_certs();
        for e in &found.errors {
            tracing::warn!("loading system CA certificates: {e}");
        }
        if found.certs.is_empty() {
            tracing::warn!(
                "no system CA certificates found: HTTPS sources need a CA file or insecure"
            );
        }
        found.certs
    })
}

/// Accepts any certificate, for `insecure`; still checks that the server
/// holds the key of the certificate it sent.
#[derive(Debug)]
struct AcceptAnyCert(Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for AcceptAnyCert {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

fn tls_config(
    source_name: &'static str,
    opts: &TlsOptions,
) -> Result<rustls::ClientConfig, SourceError> {
    let config_err = |message: String| SourceError::Config {
        source_name,
        message,
    };
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| config_err(format!("TLS: {e}")))?;
    let builder = if opts.insecure {
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AcceptAnyCert(provider)))
    } else {
        let mut roots = rustls::RootCertStore::empty();
        match &opts.ca_pem {
            Some(pem) => {
                let certs = rustls_pemfile::certs(&mut pem.as_slice())
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(|e| config_err(format!("CA certificates: {e}")))?;
                if certs.is_empty() {
                    return Err(config_err(
                        "CA certificates: no PEM certificate found".to_string(),
                    ));
                }
                for cert in certs {
                    roots
                        .add(cert)
                        .map_err(|e| config_err(format!("CA certificate: {e}")))?;
                }
            }
            None => {
                // Bad entries in the system store are skipped, as every
                // other TLS client on the host does.
                let _ = roots.add_parsable_certificates(system_roots().iter().cloned());
            }
        }
        builder.with_root_certificates(roots)
    };
    let mut config = match &opts.client_identity {
        None => builder.with_no_client_auth(),
        Some(id) => {
            let certs = rustls_pemfile::certs(&mut id.cert_pem.as_slice())
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| config_err(format!("client certificate: {e}")))?;
            if certs.is_empty() {
                return Err(config_err(
                    "client certificate: no PEM certificate found".to_string(),
                ));
            }
            let key: PrivateKeyDer<'static> =
                rustls_pemfile::private_key(&mut id.key_pem.as_slice())
                    .map_err(|e| config_err(format!("client key: {e}")))?
                    .ok_or_else(|| {
                        config_err("client key: no PEM private key found".to_string())
                    })?;
            builder
                .with_client_auth_cert(certs, key)
                .map_err(|e| config_err(format!("client certificate and key: {e}")))?
        }
    };
    // HTTP/1.1 only: that is all this client speaks.
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}

/// Where to connect, taken apart from a URL.
struct Target {
    /// TLS or not.
    https: bool,
    /// Host to connect to, without IPv6 brackets.
    host: String,
    /// Port, defaulted from the scheme.
    port: u16,
    /// `host[:port]` for the Host header.
    authority: String,
    /// Request target, `/` at least.
    path_and_query: String,
}

impl HttpClient {
    /// A client for `source_name` (used in errors) with the given TLS
    /// options and per-request deadline.
    pub fn new(
        source_name: &'static str,
        tls: &TlsOptions,
        timeout: Duration,
    ) -> Result<HttpClient, SourceError> {
        Ok(HttpClient {
            source_name,
            tls: Arc::new(tls_config(source_name, tls)?),
            timeout,
            max_body: DEFAULT_MAX_BODY,
        })
    }

    /// The same client with another body cap (tests use a small one).
    pub fn with_max_body(mut self, max_body: usize) -> HttpClient {
        self.max_body = max_body;
        self
    }

    /// The per-request deadline.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// The source name errors carry.
    pub fn source_name(&self) -> &'static str {
        self.source_name
    }

    /// A `BadResponse` for `url` from this client's source; for callers that
    /// find a field missing in an answer.
    pub fn bad_response(&self, url: &str, message: impl Into<String>) -> SourceError {
        SourceError::BadResponse {
            source_name: self.source_name,
            url: redact_url(url),
            message: message.into(),
        }
    }

    /// `GET url` with extra headers; a 2xx JSON answer or an error.
    pub async fn get_json(
        &self,
        url: &str,
        headers: &[(&str, &str)],
    ) -> Result<JsonResponse, SourceError> {
        self.request(Method::GET, url, headers, None).await
    }

    /// `POST url` with a JSON body and extra headers; a 2xx JSON answer or
    /// an error. The body is never put in errors (it may hold a password).
    pub async fn post_json(
        &self,
        url: &str,
        headers: &[(&str, &str)],
        body: &serde_json::Value,
    ) -> Result<JsonResponse, SourceError> {
        let bytes = serde_json::to_vec(body).map_err(|e| SourceError::Config {
            source_name: self.source_name,
            message: format!("{}: cannot encode request: {e}", redact_url(url)),
        })?;
        self.request(Method::POST, url, headers, Some(bytes)).await
    }

    /// One request under the deadline. 401 and 403 are `Auth`, other
    /// non-2xx statuses and non-JSON bodies `BadResponse`, network failures
    /// and the deadline `Unreachable`.
    pub async fn request(
        &self,
        method: Method,
        url: &str,
        headers: &[(&str, &str)],
        body: Option<Vec<u8>>,
    ) -> Result<JsonResponse, SourceError> {
        let shown = redact_url(url);
        let target = self.target(url, &shown)?;
        let request = self.build_request(method, &target, &shown, headers, body)?;
        match tokio::time::timeout(self.timeout, self.exchange(&target, &shown, request)).await {
            Ok(result) => result,
            Err(_) => Err(SourceError::Unreachable {
                source_name: self.source_name,
                url: shown,
                message: format!(
                    "no complete answer within {}s (timeout)",
                    self.timeout.as_secs_f64()
                ),
            }),
        }
    }

    fn config_error(&self, message: String) -> SourceError {
        SourceError::Config {
            source_name: self.source_name,
            message,
        }
    }

    fn unreachable(&self, shown: &str, message: String) -> SourceError {
        SourceError::Unreachable {
            source_name: self.source_name,
            url: shown.to_string(),
            message,
        }
    }

    fn target(&self, url: &str, shown: &str) -> Result<Target, SourceError> {
        let uri: Uri = url
            .parse()
            .map_err(|e| self.config_error(format!("bad URL {shown:?}: {e}")))?;
        let https = match uri.scheme_str() {
            Some("https") => true,
            Some("http") => false,
            _ => {
                return Err(
                    self.config_error(format!("bad URL {shown:?}: scheme must be http or https"))
                );
            }
        };
        let authority = uri
            .authority()
            .ok_or_else(|| self.config_error(format!("bad URL {shown:?}: no host")))?;
        let host = authority
            .host()
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_string();
        let port = authority.port_u16().unwrap_or(if https { 443 } else { 80 });
        // The Host header never carries `user:password@`.
        let authority = match authority.as_str().rfind('@') {
            Some(at) => authority.as_str()[at + 1..].to_string(),
            None => authority.as_str().to_string(),
        };
        let path_and_query = uri
            .path_and_query()
            .map(|p| p.as_str().to_string())
            .filter(|p| !p.is_empty())
            .unwrap_or_else(|| "/".to_string());
        Ok(Target {
            https,
            host,
            port,
            authority,
            path_and_query,
        })
    }

    fn build_request(
        &self,
        method: Method,
        target: &Target,
        shown: &str,
        headers: &[(&str, &str)],
        body: Option<Vec<u8>>,
    ) -> Result<Request<Full<Bytes>>, SourceError> {
        let mut builder = Request::builder()
            .method(method)
            .uri(target.path_and_query.as_str())
            .header(HOST, target.authority.as_str())
            .header(ACCEPT, "application/json")
            .header(
                USER_AGENT,
                concat!("ceph-rbd-exporter/", env!("CARGO_PKG_VERSION")),
            );
        if body.is_some() {
            builder = builder.header(CONTENT_TYPE, "application/json");
        }
        for (name, value) in headers {
            let name = HeaderName::from_bytes(name.as_bytes())
                .map_err(|_| self.config_error(format!("{shown}: bad header name {name:?}")))?;
            // The value may be a token: say which header, never what it holds.
            let mut value = HeaderValue::from_str(value).map_err(|_| {
                self.config_error(format!(
                    "{shown}: header {name} has characters HTTP forbids"
                ))
            })?;
            value.set_sensitive(true);
            builder = builder.header(name, value);
        }
        builder
            .body(Full::new(Bytes::from(body.unwrap_or_default())))
            .map_err(|e| self.config_error(format!("{shown}: cannot build request: {e}")))
    }

    async fn exchange(
        &self,
        target: &Target,
        shown: &str,
        request: Request<Full<Bytes>>,
    ) -> Result<JsonResponse, SourceError> {
        let tcp = TcpStream::connect((target.host.as_str(), target.port))
            .await
            .map_err(|e| self.unreachable(shown, format!("connect: {e}")))?;
        let _ = tcp.set_nodelay(true);
        if !target.https {
            return self.send(tcp, shown, request).await;
        }
        let name = ServerName::try_from(target.host.clone()).map_err(|e| {
            self.config_error(format!("{shown}: host is not a TLS server name: {e}"))
        })?;
        let tls = tokio_rustls::TlsConnector::from(self.tls.clone())
            .connect(name, tcp)
            .await
            .map_err(|e| self.unreachable(shown, format!("TLS: {}", error_chain(&e))))?;
        self.send(tls, shown, request).await
    }

    async fn send<IO>(
        &self,
        io: IO,
        shown: &str,
        request: Request<Full<Bytes>>,
    ) -> Result<JsonResponse, SourceError>
    where
        IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(io))
            .await
            .map_err(|e| self.unreachable(shown, format!("HTTP: {}", error_chain(&e))))?;
        // The connection is driven here rather than spawned, so that the
        // deadline dropping this future also closes the socket.
        let exchange = async {
            let response = sender
                .send_request(request)
                .await
                .map_err(|e| self.unreachable(shown, format!("HTTP: {}", error_chain(&e))))?;
            self.read_response(shown, response).await
        };
        tokio::pin!(conn);
        tokio::pin!(exchange);
        tokio::select! {
            result = &mut exchange => result,
            // The connection ended first; whatever it delivered (or the
            // error) reaches the exchange.
            _ = &mut conn => exchange.await,
        }
    }

    async fn read_response(
        &self,
        shown: &str,
        response: hyper::Response<hyper::body::Incoming>,
    ) -> Result<JsonResponse, SourceError> {
        let status = response.status();
        if status.as_u16() == 401 || status.as_u16() == 403 {
            return Err(SourceError::Auth {
                source_name: self.source_name,
                url: shown.to_string(),
                status: status.as_u16(),
            });
        }
        let (parts, mut body) = response.into_parts();
        let declared = parts
            .headers
            .get(CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        let too_big = || {
            self.bad_response(
                shown,
                format!(
                    "HTTP {}: body larger than the {} byte cap",
                    status.as_u16(),
                    self.max_body
                ),
            )
        };
        if declared.is_some_and(|n| n > self.max_body as u64) {
            return Err(too_big());
        }
        let mut buf: Vec<u8> = Vec::new();
        while let Some(frame) = body.frame().await {
            let frame = frame.map_err(|e| {
                self.unreachable(shown, format!("reading body: {}", error_chain(&e)))
            })?;
            if let Ok(data) = frame.into_data() {
                if buf.len() + data.len() > self.max_body {
                    return Err(too_big());
                }
                buf.extend_from_slice(&data);
            }
        }
        if !status.is_success() {
            return Err(self.bad_response(
                shown,
                format!("HTTP {}: {}", status.as_u16(), snippet(&buf)),
            ));
        }
        let body: serde_json::Value = serde_json::from_slice(&buf).map_err(|e| {
            let content_type = parts
                .headers
                .get(CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("none");
            self.bad_response(
                shown,
                format!(
                    "HTTP {}: body is not JSON (content-type {content_type}): {e}: {}",
                    status.as_u16(),
                    snippet(&buf)
                ),
            )
        })?;
        Ok(JsonResponse {
            status: status.as_u16(),
            headers: parts.headers,
            body,
        })
    }
}

/// The start of a body, printable, for error messages.
fn snippet(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(&body[..body.len().min(ERROR_SNIPPET)]);
    let mut out: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    if body.len() > ERROR_SNIPPET {
        out.push('…');
    }
    if out.trim().is_empty() {
        "(empty body)".to_string()
    } else {
        out.trim().to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redact_url_drops_userinfo_only() {
        assert_eq!(
            redact_url("https://user:secret@keystone:5000/v3?x=a@b"),
            "https://keystone:5000/v3?x=a@b"
        );
        assert_eq!(redact_url("http://host/p@q"), "http://host/p@q");
        assert_eq!(redact_url("not a url"), "not a url");
    }

    #[test]
    fn snippet_is_short_and_printable() {
        assert_eq!(snippet(b""), "(empty body)");
        assert_eq!(snippet(b"a\nb"), "a b");
        let long = vec![b'x'; 1000];
        assert_eq!(snippet(&long).chars().count(), ERROR_SNIPPET + 1);
    }

    #[test]
    fn bad_tls_material_is_a_config_error() {
        let opts = TlsOptions {
            ca_pem: Some(b"not pem".to_vec()),
            ..TlsOptions::default()
        };
        let err = HttpClient::new("test", &opts, Duration::from_secs(1)).unwrap_err();
        assert!(matches!(err, SourceError::Config { .. }), "{err}");
        assert!(err.to_string().contains("CA certificates"), "{err}");

        let opts = TlsOptions {
            client_identity: Some(ClientIdentity {
                cert_pem: b"x".to_vec(),
                key_pem: b"y".to_vec(),
            }),
            ..TlsOptions::default()
        };
        let err = HttpClient::new("test", &opts, Duration::from_secs(1)).unwrap_err();
        assert!(err.to_string().contains("client certificate"), "{err}");
    }

    #[tokio::test]
    async fn bad_urls_are_config_errors() {
        let client = HttpClient::new("test", &TlsOptions::default(), Duration::from_secs(1))
            .expect("client");
        for url in ["ftp://host/", "no scheme", "http:///path"] {
            let err = client.get_json(url, &[]).await.unwrap_err();
            assert!(matches!(err, SourceError::Config { .. }), "{url}: {err}");
        }
    }

    #[tokio::test]
    async fn refused_connection_is_unreachable_and_names_the_url() {
        // Bind then drop, so the port is (almost certainly) closed.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("bind")
            .port();
        let client = HttpClient::new("test", &TlsOptions::default(), Duration::from_secs(5))
            .expect("client");
        let url = format!("http://u:pw@127.0.0.1:{port}/x");
        let err = client.get_json(&url, &[]).await.unwrap_err();
        assert!(matches!(err, SourceError::Unreachable { .. }), "{err}");
        let text = err.to_string();
        assert!(
            text.contains(&format!("http://127.0.0.1:{port}/x")),
            "{text}"
        );
        assert!(!text.contains("pw"), "{text}");
    }
}
