//! Attachment sources against in-test API servers on 127.0.0.1: the
//! exporter's real client talks HTTP and HTTPS (certificates made here with
//! openssl) to hyper servers that answer with the OpenStack and Kubernetes
//! responses in `tests/data/sources/` (shaped after the official API
//! references; `{{BASE}}` in the Keystone catalog becomes the server's own
//! address). No cluster, no network beyond loopback; a few seconds.

use bytes::Bytes;
use ceph_rbd_exporter::sources::file::FileSource;
use ceph_rbd_exporter::sources::http::{HttpClient, TlsOptions};
use ceph_rbd_exporter::sources::kubernetes::KubernetesSource;
use ceph_rbd_exporter::sources::openstack::{
    CloudsFiles, OpenStackSource, clouds_yaml_candidates, find_clouds_files, find_clouds_yaml,
};
use ceph_rbd_exporter::sources::{
    AttachmentReport, AttachmentSource, Expectation, ImageRef, SourceError,
};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{HeaderMap, Request, Response};
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use std::collections::BTreeSet;
use std::convert::Infallible;
use std::ffi::OsString;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};
use tokio::net::TcpListener;

const TIMEOUT: Duration = Duration::from_secs(5);
const TOKEN: &str = "gAAAAABnKeystoneTestToken-not-a-secret";
const PROJECT: &str = "a6944d763bf64ee6a275f1263fae0352";

// ---------------------------------------------------------------- helpers

fn scratch(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!(
        "rbd-exporter-sources-{}-{name}",
        std::process::id()
    ));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).expect("scratch dir");
    d
}

fn fixture(name: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/sources")
        .join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn openssl(args: &[&str], dir: &Path) {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("openssl runs");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A CA, a server certificate for 127.0.0.1 and a client certificate, made
/// once per test process (EC keys: instant).
fn pki() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = scratch("pki");
        let ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1"];
        let mut args = vec!["req", "-x509"];
        args.extend(ec);
        args.extend([
            "-nodes",
            "-days",
            "2",
            "-subj",
            "/CN=test ca",
            "-keyout",
            "ca.key",
            "-out",
            "ca.crt",
        ]);
        openssl(&args, &dir);
        std::fs::write(
            dir.join("server.ext"),
            "subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n",
        )
        .expect("ext");
        std::fs::write(dir.join("client.ext"), "extendedKeyUsage=clientAuth\n").expect("ext");
        for name in ["server", "client"] {
            let subj = format!("/CN={name}");
            let (key, csr, crt, ext) = (
                format!("{name}.key"),
                format!("{name}.csr"),
                format!("{name}.crt"),
                format!("{name}.ext"),
            );
            let mut args = vec!["req"];
            args.extend(ec);
            args.extend(["-nodes", "-subj", &subj, "-keyout", &key, "-out", &csr]);
            openssl(&args, &dir);
            openssl(
                &[
                    "x509",
                    "-req",
                    "-in",
                    &csr,
                    "-CA",
                    "ca.crt",
                    "-CAkey",
                    "ca.key",
                    "-CAcreateserial",
                    "-days",
                    "2",
                    "-extfile",
                    &ext,
                    "-out",
                    &crt,
                ],
                &dir,
            );
        }
        dir
    })
}

fn server_tls(require_client_cert: bool) -> Arc<rustls::ServerConfig> {
    let dir = pki();
    let certs: Vec<_> = rustls_pemfile::certs(
        &mut std::fs::read(dir.join("server.crt"))
            .expect("crt")
            .as_slice(),
    )
    .collect::<Result<_, _>>()
    .expect("certs");
    let key = rustls_pemfile::private_key(
        &mut std::fs::read(dir.join("server.key"))
            .expect("key")
            .as_slice(),
    )
    .expect("key")
    .expect("a key");
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .expect("versions");
    let builder = if require_client_cert {
        let mut roots = rustls::RootCertStore::empty();
        for ca in
            rustls_pemfile::certs(&mut std::fs::read(dir.join("ca.crt")).expect("ca").as_slice())
        {
            roots.add(ca.expect("ca")).expect("add ca");
        }
        let verifier =
            rustls::server::WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                .build()
                .expect("verifier");
        builder.with_client_cert_verifier(verifier)
    } else {
        builder.with_no_client_auth()
    };
    Arc::new(builder.with_single_cert(certs, key).expect("server cert"))
}

/// One request as the server saw it.
#[derive(Debug, Clone)]
struct Recorded {
    method: String,
    path: String,
    query: String,
    headers: HeaderMap,
    body: Vec<u8>,
    // Only the Kubernetes tests checked it; they have their own server now.
    #[allow(dead_code)]
    client_cert: bool,
}

/// What the server answers.
struct Reply {
    status: u16,
    headers: Vec<(&'static str, String)>,
    body: String,
}

fn reply(status: u16, body: impl Into<String>) -> Reply {
    Reply {
        status,
        headers: vec![("content-type", "application/json".to_string())],
        body: body.into(),
    }
}

type Handler = Arc<dyn Fn(&Recorded, &str) -> Reply + Send + Sync>;

/// A hyper server on 127.0.0.1:0 answering with `handler`; records every
/// request. Stops when dropped.
struct Server {
    base: String,
    requests: Arc<Mutex<Vec<Recorded>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Server {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Server {
    async fn start(tls: Option<Arc<rustls::ServerConfig>>, handler: Handler) -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let scheme = if tls.is_some() { "https" } else { "http" };
        let base = format!("{scheme}://127.0.0.1:{port}");
        let requests = Arc::new(Mutex::new(Vec::new()));
        let (rec, b) = (requests.clone(), base.clone());
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let (handler, rec, base, tls) =
                    (handler.clone(), rec.clone(), b.clone(), tls.clone());
                tokio::spawn(async move {
                    match tls {
                        None => serve_conn(stream, false, handler, rec, base).await,
                        Some(cfg) => {
                            // A client that fails the handshake just goes.
                            if let Ok(s) = tokio_rustls::TlsAcceptor::from(cfg).accept(stream).await
                            {
                                let cert = s.get_ref().1.peer_certificates().is_some();
                                serve_conn(s, cert, handler, rec, base).await;
                            }
                        }
                    }
                });
            }
        });
        Server {
            base,
            requests,
            task,
        }
    }

    fn requests(&self) -> Vec<Recorded> {
        self.requests.lock().expect("lock").clone()
    }
}

async fn serve_conn<IO>(
    io: IO,
    client_cert: bool,
    handler: Handler,
    rec: Arc<Mutex<Vec<Recorded>>>,
    base: String,
) where
    IO: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let service = hyper::service::service_fn(move |req: Request<Incoming>| {
        let (handler, rec, base) = (handler.clone(), rec.clone(), base.clone());
        async move {
            let (parts, body) = req.into_parts();
            let body = body
                .collect()
                .await
                .map(|b| b.to_bytes().to_vec())
                .unwrap_or_default();
            let recorded = Recorded {
                method: parts.method.to_string(),
                path: parts.uri.path().to_string(),
                query: parts.uri.query().unwrap_or("").to_string(),
                headers: parts.headers,
                body,
                client_cert,
            };
            let answer = handler(&recorded, &base);
            rec.lock().expect("lock").push(recorded);
            let mut response = Response::builder().status(answer.status);
            for (k, v) in answer.headers {
                response = response.header(k, v);
            }
            Ok::<_, Infallible>(
                response
                    .body(Full::new(Bytes::from(answer.body)))
                    .expect("response"),
            )
        }
    });
    let _ = hyper::server::conn::http1::Builder::new()
        .serve_connection(TokioIo::new(io), service)
        .await;
}

fn header<'a>(r: &'a Recorded, name: &str) -> Option<&'a str> {
    r.headers.get(name).and_then(|v| v.to_str().ok())
}

fn hosts(names: &[&str]) -> Option<BTreeSet<String>> {
    Some(names.iter().map(|s| s.to_string()).collect())
}

fn any_pool(image: &str) -> ImageRef {
    ImageRef {
        pool: None,
        namespace: None,
        image: image.to_string(),
    }
}

fn expectation<'a>(report: &'a AttachmentReport, image: &ImageRef) -> &'a Expectation {
    report
        .images
        .get(image)
        .unwrap_or_else(|| panic!("{image:?} not in {:#?}", report.images.keys()))
}

/// A configuration error of `source`: it says so, names everything in
/// `want`, and never shows `secret`.
fn assert_config_error(err: &str, source: &str, want: &[&str], secret: &str) {
    assert!(
        err.starts_with(&format!("{source}: configuration: ")),
        "{err}"
    );
    for w in want {
        assert!(err.contains(w), "{err:?} lacks {w:?}");
    }
    assert!(!err.contains(secret), "{err}");
}

/// What a report must say about one image: its hosts (`None`: no opinion),
/// and `multi_attach` and `owner` where given; `why` goes with the failure.
struct Expected {
    image: ImageRef,
    hosts: Option<&'static [&'static str]>,
    multi_attach: Option<bool>,
    owner: Option<&'static str>,
    why: &'static str,
}

fn check_expected(report: &AttachmentReport, cases: &[Expected]) {
    for c in cases {
        let e = expectation(report, &c.image);
        let image = &c.image.image;
        assert_eq!(
            e.hosts,
            c.hosts.and_then(hosts),
            "{image}: hosts: {}",
            c.why
        );
        if let Some(multi_attach) = c.multi_attach {
            assert_eq!(
                e.multi_attach, multi_attach,
                "{image}: multi_attach: {}",
                c.why
            );
        }
        if let Some(owner) = c.owner {
            assert_eq!(e.owner, owner, "{image}: owner");
        }
    }
}

// -------------------------------------------------------------- OpenStack

/// Keystone, Cinder, Nova and Glance as the fixtures say; GETs need the
/// token; pages follow markers.
fn openstack_api() -> Handler {
    Arc::new(|r: &Recorded, base: &str| {
        if r.method == "POST" && r.path == "/identity/v3/auth/tokens" {
            let mut answer = reply(
                201,
                fixture("keystone-token.json").replace("{{BASE}}", base),
            );
            answer.headers.push(("x-subject-token", TOKEN.to_string()));
            return answer;
        }
        if r.method != "GET" {
            return reply(405, "{}");
        }
        if header(r, "x-auth-token") != Some(TOKEN) {
            return reply(401, r#"{"error": {"code": 401, "title": "Unauthorized"}}"#);
        }
        let all_tenants = r.query.split('&').any(|p| p == "all_tenants=1");
        let volumes = format!("/volume/v3/{PROJECT}/volumes/detail");
        match r.path.as_str() {
            p if p == volumes && all_tenants => {
                if r.query
                    .contains("marker=2b955850-f177-45f7-9f49-ecb2c256d161")
                {
                    reply(200, fixture("cinder-volumes-page2.json"))
                } else {
                    reply(200, fixture("cinder-volumes-page1.json"))
                }
            }
            "/compute/v2.1/servers/detail" if all_tenants => {
                if r.query
                    .contains("marker=f5dc173b-6804-445a-a6d8-c705dad5b5eb")
                {
                    reply(200, fixture("nova-servers-page2.json"))
                } else {
                    reply(200, fixture("nova-servers-page1.json"))
                }
            }
            "/image/v2/images" => reply(200, fixture("glance-images.json")),
            _ => reply(404, r#"{"itemNotFound": {"code": 404}}"#),
        }
    })
}

/// `openstack_api` with some answers replaced.
fn openstack_api_but(
    replace: impl Fn(&Recorded, &str) -> Option<Reply> + Send + Sync + 'static,
) -> Handler {
    let inner = openstack_api();
    Arc::new(move |r: &Recorded, base: &str| replace(r, base).unwrap_or_else(|| inner(r, base)))
}

const PASSWORD_AUTH: &str = "    auth:
      auth_url: {{BASE}}/identity
      username: rbd-exporter
      password: s3cr3t-pw
      project_name: admin
      user_domain_name: Default
      project_domain_id: default
";

/// A clouds.yaml with cloud `test` pointing at `base`.
fn clouds_yaml(dir: &Path, base: &str, auth: &str, extra: &str) -> PathBuf {
    let path = dir.join("clouds.yaml");
    let text = format!(
        "clouds:\n  test:\n    region_name: RegionOne\n{extra}{}",
        auth.replace("{{BASE}}", base)
    );
    std::fs::write(&path, text).expect("clouds.yaml");
    path
}

async fn openstack_fetch(
    dir: &Path,
    base: &str,
    auth: &str,
    extra: &str,
    timeout: Duration,
) -> Result<AttachmentReport, SourceError> {
    let file = clouds_yaml(dir, base, auth, extra);
    let source = OpenStackSource::from_clouds_yaml("test", Some(&file), timeout)?;
    assert_eq!(source.name(), "openstack");
    source.fetch().await
}

fn check_openstack_report(report: &AttachmentReport) {
    check_expected(
        report,
        &[
            Expected {
                image: any_pool("volume-6edbc2f4-1507-44f8-ac0d-eed1d2608d38"),
                hosts: Some(&[]),
                multi_attach: Some(false),
                owner: Some(
                    "cinder volume 6edbc2f4-1507-44f8-ac0d-eed1d2608d38 \"db-data\" (available)",
                ),
                why: "available, no attachments",
            },
            Expected {
                image: any_pool("volume-2b955850-f177-45f7-9f49-ecb2c256d161"),
                hosts: Some(&["compute-1"]),
                multi_attach: None,
                owner: Some(
                    "cinder volume 2b955850-f177-45f7-9f49-ecb2c256d161 \"web-root\" (in-use, attached to server f5dc173b-6804-445a-a6d8-c705dad5b5eb on compute-1)",
                ),
                why: "in-use",
            },
            Expected {
                image: any_pool("volume-e3d5a0bc-55c1-4d0e-9f2a-1b7f2c3d4e5f"),
                hosts: Some(&["compute-1", "compute-2"]),
                multi_attach: Some(true),
                owner: None,
                why: "from the second Cinder page",
            },
            Expected {
                image: any_pool("f5dc173b-6804-445a-a6d8-c705dad5b5eb_disk"),
                hosts: Some(&["compute-1"]),
                multi_attach: None,
                owner: Some(
                    "nova server f5dc173b-6804-445a-a6d8-c705dad5b5eb \"web-1\" (ACTIVE) on compute-1",
                ),
                why: "web-1",
            },
            Expected {
                image: any_pool("9168b536-cd40-4630-b43f-b259807c6e87_disk"),
                hosts: Some(&["compute-2"]),
                multi_attach: None,
                owner: None,
                why: "from the second Nova page",
            },
            Expected {
                image: any_pool("c7a2d4f1-3b8e-4f5a-9d6c-2e1f0a9b8c7d_disk"),
                hosts: Some(&[]),
                multi_attach: None,
                owner: None,
                why: "shelved offloaded: on no host",
            },
            Expected {
                image: any_pool("1bea47ed-f6a9-463b-b423-14b9cca9ad27"),
                hosts: None,
                multi_attach: None,
                owner: Some(
                    "glance image 1bea47ed-f6a9-463b-b423-14b9cca9ad27 \"cirros-0.3.2-x86_64-disk\" (active)",
                ),
                why: "Glance has no opinion on hosts",
            },
        ],
    );

    assert_eq!(
        report.instances,
        hosts(&[
            "f5dc173b-6804-445a-a6d8-c705dad5b5eb",
            "9168b536-cd40-4630-b43f-b259807c6e87",
            "c7a2d4f1-3b8e-4f5a-9d6c-2e1f0a9b8c7d",
        ])
    );

    assert!(
        report
            .images
            .contains_key(&any_pool("781b3762-9469-4cec-b58d-3349e5de4e9c"))
    );
    assert_eq!(report.images.len(), 8, "{:#?}", report.images.keys());
    assert!(report.host_addresses.is_empty());
}

#[tokio::test]
async fn openstack_password_auth_lists_every_page_of_every_project() {
    let server = Server::start(None, openstack_api()).await;
    let dir = scratch("os-password");
    let report = openstack_fetch(&dir, &server.base, PASSWORD_AUTH, "", TIMEOUT)
        .await
        .expect("fetch");
    check_openstack_report(&report);

    let requests = server.requests();
    let post = &requests[0];
    assert_eq!(
        (post.method.as_str(), post.path.as_str()),
        ("POST", "/identity/v3/auth/tokens")
    );
    assert_eq!(header(post, "content-type"), Some("application/json"));
    let body: Value = serde_json::from_slice(&post.body).expect("JSON auth body");
    assert_eq!(
        body,
        json!({"auth": {
            "identity": {
                "methods": ["password"],
                "password": {"user": {
                    "name": "rbd-exporter",
                    "domain": {"name": "Default"},
                    "password": "s3cr3t-pw"
                }}
            },
            "scope": {"project": {"name": "admin", "domain": {"id": "default"}}}
        }})
    );
    let gets: Vec<&Recorded> = requests.iter().filter(|r| r.method == "GET").collect();
    assert_eq!(
        gets.len(),
        5,
        "2 Cinder pages, 2 Nova pages, 1 Glance page: {gets:#?}"
    );
    for get in &gets {
        assert_eq!(header(get, "x-auth-token"), Some(TOKEN), "{get:?}");
    }
    // The next pages come from the catalog endpoint, with the link's marker,
    // not from the internal host the link names.
    let volume_pages: Vec<&str> = gets
        .iter()
        .filter(|r| r.path.ends_with("/volumes/detail"))
        .map(|r| r.query.as_str())
        .collect();
    assert_eq!(volume_pages.len(), 2, "{volume_pages:?}");
    assert!(
        volume_pages.iter().any(|q| q.contains("marker=2b955850")),
        "{volume_pages:?}"
    );
    assert!(
        volume_pages.iter().all(|q| q.contains("all_tenants=1")),
        "{volume_pages:?}"
    );
    let server_pages = gets
        .iter()
        .filter(|r| r.path.ends_with("/servers/detail"))
        .count();
    assert_eq!(server_pages, 2);
    let glance = gets
        .iter()
        .find(|r| r.path == "/image/v2/images")
        .expect("glance");
    assert!(glance.query.contains("visibility=all"), "{}", glance.query);
}

#[tokio::test]
async fn openstack_application_credential_over_https_with_cacert() {
    let server = Server::start(Some(server_tls(false)), openstack_api()).await;
    let dir = scratch("os-appcred");
    let auth = "    auth_type: v3applicationcredential
    auth:
      auth_url: {{BASE}}/identity/v3/
      application_credential_id: 423f19a4ac1e4f48bbb4180756e6eb6c
      application_credential_secret: rEaqvJka48mpv
";
    let cacert = format!("    cacert: {}\n", pki().join("ca.crt").display());
    let report = openstack_fetch(&dir, &server.base, auth, &cacert, TIMEOUT)
        .await
        .expect("fetch over TLS with the CA");
    check_openstack_report(&report);
    let requests = server.requests();
    let body: Value = serde_json::from_slice(&requests[0].body).expect("JSON");
    assert_eq!(
        body,
        json!({"auth": {"identity": {
            "methods": ["application_credential"],
            "application_credential": {
                "id": "423f19a4ac1e4f48bbb4180756e6eb6c",
                "secret": "rEaqvJka48mpv"
            }
        }}})
    );

    // By name: the user is needed too.
    let auth = "    auth_type: v3applicationcredential
    auth:
      auth_url: {{BASE}}/identity
      application_credential_name: monitoring
      username: rbd-exporter
      user_domain_id: default
      application_credential_secret: rEaqvJka48mpv
";
    openstack_fetch(&dir, &server.base, auth, &cacert, TIMEOUT)
        .await
        .expect("fetch by name");
    let requests = server.requests();
    let post = requests
        .iter()
        .rev()
        .find(|r| r.method == "POST")
        .expect("post");
    let body: Value = serde_json::from_slice(&post.body).expect("JSON");
    assert_eq!(
        body["auth"]["identity"]["application_credential"],
        json!({
            "name": "monitoring",
            "user": {"name": "rbd-exporter", "domain": {"id": "default"}},
            "secret": "rEaqvJka48mpv"
        })
    );
}

#[tokio::test]
async fn openstack_tls_unknown_ca_is_refused_and_verify_false_accepts() {
    let server = Server::start(Some(server_tls(false)), openstack_api()).await;
    let dir = scratch("os-tls");
    let err = openstack_fetch(&dir, &server.base, PASSWORD_AUTH, "", TIMEOUT)
        .await
        .expect_err("the test CA is not a system root");
    assert!(matches!(err, SourceError::Unreachable { .. }), "{err}");
    let text = err.to_string();
    assert!(text.contains("certificate"), "{text}");
    assert!(text.contains("/identity/v3/auth/tokens"), "{text}");
    assert!(!text.contains("s3cr3t"), "{text}");

    let report = openstack_fetch(
        &dir,
        &server.base,
        PASSWORD_AUTH,
        "    verify: false\n",
        TIMEOUT,
    )
    .await
    .expect("insecure accepts any certificate");
    check_openstack_report(&report);
}

#[tokio::test]
async fn openstack_errors_have_the_right_kind_and_say_where() {
    let dir = scratch("os-errors");

    // What goes wrong (an answer replaced), and what the error must say.
    type Check = fn(&SourceError);
    let cases: Vec<(&str, Handler, Check)> = vec![
        (
            "Keystone refuses the password",
            openstack_api_but(|r, _| {
                (r.method == "POST").then(|| reply(401, r#"{"error": {"code": 401}}"#))
            }),
            |err| {
                match err {
                    SourceError::Auth { status, url, .. } => {
                        assert_eq!(*status, 401);
                        assert!(url.ends_with("/identity/v3/auth/tokens"), "{url}");
                    }
                    other => panic!("expected Auth, got {other}"),
                }
                assert_eq!(err.metric_label(), "auth");
            },
        ),
        (
            "Cinder forbids listing all projects",
            openstack_api_but(|r, _| {
                r.path
                    .ends_with("/volumes/detail")
                    .then(|| reply(403, "{}"))
            }),
            |err| {
                assert!(
                    matches!(err, SourceError::Auth { status: 403, .. }),
                    "{err}"
                );
            },
        ),
        (
            "garbage instead of JSON from Nova",
            openstack_api_but(|r, _| {
                r.path.ends_with("/servers/detail").then(|| Reply {
                    status: 200,
                    headers: vec![("content-type", "text/html".to_string())],
                    body: "<html><body>502 Bad Gateway</body></html>".to_string(),
                })
            }),
            |err| {
                assert!(matches!(err, SourceError::BadResponse { .. }), "{err}");
                let text = err.to_string();
                assert!(text.contains("/compute/v2.1/servers/detail"), "{text}");
                assert!(text.contains("not JSON"), "{text}");
            },
        ),
        (
            "Keystone answers without a token header",
            openstack_api_but(|r, base| {
                (r.method == "POST").then(|| {
                    reply(
                        201,
                        fixture("keystone-token.json").replace("{{BASE}}", base),
                    )
                })
            }),
            |err| {
                assert!(err.to_string().contains("X-Subject-Token"), "{err}");
            },
        ),
        (
            "a non-admin token: Nova leaves out the host; the field is named",
            openstack_api_but(|r, _| {
                r.path.ends_with("/servers/detail").then(|| {
                    reply(
                        200,
                        fixture("nova-servers-page2.json")
                            .replace("\"OS-EXT-SRV-ATTR:host\"", "\"x\""),
                    )
                })
            }),
            |err| {
                let text = err.to_string();
                assert!(matches!(err, SourceError::BadResponse { .. }), "{text}");
                assert!(text.contains("servers[0]"), "{text}");
                assert!(text.contains("OS-EXT-SRV-ATTR:host"), "{text}");
            },
        ),
        (
            "a Cinder page without its list",
            openstack_api_but(|r, _| {
                r.path
                    .ends_with("/volumes/detail")
                    .then(|| reply(200, r#"{"volume": []}"#))
            }),
            |err| {
                assert!(err.to_string().contains("missing field `volumes`"), "{err}");
            },
        ),
    ];
    for (what, handler, check) in cases {
        let server = Server::start(None, handler).await;
        let err = openstack_fetch(&dir, &server.base, PASSWORD_AUTH, "", TIMEOUT)
            .await
            .expect_err(what);
        check(&err);
        drop(server);
    }

    // Without region_name, two regions in the catalog are ambiguous.
    let server = Server::start(None, openstack_api()).await;
    let file = dir.join("no-region.yaml");
    std::fs::write(
        &file,
        format!(
            "clouds:\n  test:\n{}",
            PASSWORD_AUTH.replace("{{BASE}}", &server.base)
        ),
    )
    .expect("write");
    let source = OpenStackSource::from_clouds_yaml("test", Some(&file), TIMEOUT).expect("source");
    let err = source.fetch().await.expect_err("ambiguous");
    assert!(err.to_string().contains("RegionOne, RegionTwo"), "{err}");
    assert!(err.to_string().contains("set region_name"), "{err}");
}

/// Keystone handing out `token-1`, `token-2`, … (their `token` object
/// changed by `stamp`) in front of the fixture services, which take only
/// the tokens `accepted` says and answer the others with a 401.
fn numbered_tokens_api(stamp: fn(&mut Value), accepted: fn(&str) -> bool) -> Handler {
    let issued = Arc::new(AtomicUsize::new(0));
    let inner = openstack_api();
    Arc::new(move |r: &Recorded, base: &str| {
        if r.method == "POST" {
            let n = issued.fetch_add(1, Ordering::SeqCst) + 1;
            let mut body: Value =
                serde_json::from_str(&fixture("keystone-token.json").replace("{{BASE}}", base))
                    .expect("fixture");
            stamp(&mut body["token"]);
            let mut answer = reply(201, body.to_string());
            answer
                .headers
                .push(("x-subject-token", format!("token-{n}")));
            return answer;
        }
        match header(r, "x-auth-token") {
            Some(t) if accepted(t) => {
                let mut known = r.clone();
                known.headers.insert(
                    "x-auth-token",
                    hyper::header::HeaderValue::from_static(TOKEN),
                );
                inner(&known, base)
            }
            _ => reply(401, r#"{"error": {"code": 401, "title": "Unauthorized"}}"#),
        }
    })
}

/// Keystone's token requests so far, and the token of every other request.
fn token_traffic(server: &Server) -> (usize, Vec<String>) {
    let requests = server.requests();
    let posts = requests.iter().filter(|r| r.method == "POST").count();
    let used = requests
        .iter()
        .filter(|r| r.method == "GET")
        .map(|r| header(r, "x-auth-token").unwrap_or("none").to_string())
        .collect();
    (posts, used)
}

fn openstack_source(dir: &Path, server: &Server) -> OpenStackSource {
    let file = clouds_yaml(dir, &server.base, PASSWORD_AUTH, "");
    OpenStackSource::from_clouds_yaml("test", Some(&file), TIMEOUT).expect("source")
}

#[tokio::test]
async fn openstack_reuses_its_token_across_fetches() {
    // The fixture's token lives an hour: one token for every fetch.
    let server = Server::start(None, openstack_api()).await;
    let source = openstack_source(&scratch("os-reuse"), &server);
    for _ in 0..4 {
        check_openstack_report(&source.fetch().await.expect("fetch"));
    }
    let (posts, used) = token_traffic(&server);
    assert_eq!(posts, 1, "one Keystone token for four fetches");
    assert_eq!(used.len(), 4 * 5);
    assert!(used.iter().all(|t| t == TOKEN), "{used:?}");

    // No expires_at (or one that cannot be read): still reused, for a
    // bounded time.
    for stamp in [
        (|t: &mut Value| {
            t.as_object_mut().expect("token").remove("expires_at");
        }) as fn(&mut Value),
        |t: &mut Value| t["expires_at"] = json!("next tuesday"),
    ] {
        let server = Server::start(None, numbered_tokens_api(stamp, |_| true)).await;
        let source = openstack_source(&scratch("os-reuse-no-expiry"), &server);
        for _ in 0..3 {
            check_openstack_report(&source.fetch().await.expect("fetch"));
        }
        let (posts, used) = token_traffic(&server);
        assert_eq!(posts, 1);
        assert!(used.iter().all(|t| t == "token-1"), "{used:?}");
    }
}

#[tokio::test]
async fn openstack_renews_a_token_near_its_expiry() {
    // Three seconds to live: reused for half of it, then renewed.
    let server = Server::start(
        None,
        numbered_tokens_api(
            |t| {
                t["issued_at"] = json!("2030-11-07T02:58:40.000000Z");
                t["expires_at"] = json!("2030-11-07T02:58:43.000000Z");
            },
            |_| true,
        ),
    )
    .await;
    let source = openstack_source(&scratch("os-renew"), &server);
    source.fetch().await.expect("first fetch");
    source.fetch().await.expect("second fetch, at once");
    assert_eq!(token_traffic(&server).0, 1, "reused within its first half");
    tokio::time::sleep(Duration::from_millis(1600)).await;
    check_openstack_report(&source.fetch().await.expect("third fetch"));
    let (posts, used) = token_traffic(&server);
    assert_eq!(posts, 2, "renewed past half its life");
    assert_eq!(used[..10], vec!["token-1".to_string(); 10]);
    assert_eq!(used[10..], vec!["token-2".to_string(); 5]);

    // Expiring as it is issued: renewed for every fetch.
    let server = Server::start(
        None,
        numbered_tokens_api(|t| t["issued_at"] = t["expires_at"].clone(), |_| true),
    )
    .await;
    let source = openstack_source(&scratch("os-renew-now"), &server);
    for _ in 0..3 {
        source.fetch().await.expect("fetch");
    }
    assert_eq!(token_traffic(&server).0, 3);
}

#[tokio::test]
async fn openstack_401_renews_the_token_once_and_asks_again() {
    // Keystone's first token is refused everywhere (revoked, or expired
    // early): one renewal serves the three listings that were refused.
    let server = Server::start(None, numbered_tokens_api(|_| {}, |t| t != "token-1")).await;
    let source = openstack_source(&scratch("os-401"), &server);
    check_openstack_report(&source.fetch().await.expect("fetch after renewal"));
    let (posts, used) = token_traffic(&server);
    assert_eq!(posts, 2, "exactly one renewal: {used:?}");
    assert_eq!(
        used.iter().filter(|t| *t == "token-1").count(),
        3,
        "{used:?}"
    );
    assert_eq!(
        used.iter().filter(|t| *t == "token-2").count(),
        5,
        "{used:?}"
    );
    // Each refused request was asked again once, with the new token.
    let requests = server.requests();
    for refused in requests
        .iter()
        .filter(|r| header(r, "x-auth-token") == Some("token-1"))
    {
        let again: Vec<_> = requests
            .iter()
            .filter(|r| r.path == refused.path && r.query == refused.query)
            .map(|r| header(r, "x-auth-token"))
            .collect();
        assert_eq!(
            again,
            [Some("token-1"), Some("token-2")],
            "{}",
            refused.path
        );
    }
    // The renewed token is kept.
    source.fetch().await.expect("next fetch");
    let (posts, used) = token_traffic(&server);
    assert_eq!((posts, used.len()), (2, 13));
}

#[tokio::test]
async fn openstack_persistent_401_is_an_auth_error() {
    let server = Server::start(None, numbered_tokens_api(|_| {}, |_| false)).await;
    let source = openstack_source(&scratch("os-401-always"), &server);
    for fetch in 1..=2 {
        let err = source.fetch().await.expect_err("refused twice");
        assert_eq!(err.metric_label(), "auth");
        match &err {
            SourceError::Auth { status, url, .. } => {
                assert_eq!(*status, 401);
                assert!(!url.contains("/auth/tokens"), "a service refused: {url}");
            }
            other => panic!("expected Auth, got {other}"),
        }
        let text = err.to_string();
        assert!(
            !text.contains("token-") && !text.contains("s3cr3t"),
            "{text}"
        );
        // The first fetch gets a token and one renewal; the next one
        // renews the refused token it kept: one renewal per fetch, and no
        // request asked more than twice.
        let (posts, _) = token_traffic(&server);
        assert_eq!(posts, fetch + 1, "fetch {fetch}");
    }
    // Requests a failed fetch gave up on may reach the server late.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut asked = std::collections::BTreeMap::new();
    for r in server.requests().iter().filter(|r| r.method == "GET") {
        *asked.entry((r.path.clone(), r.query.clone())).or_insert(0) += 1;
    }
    assert!(
        asked.values().all(|&n| n <= 4),
        "twice per fetch: {asked:?}"
    );
}

#[tokio::test]
async fn openstack_refused_token_takes_the_source_down_and_its_verdicts_with_it() {
    use ceph_rbd_exporter::attribution::Attributor;
    use ceph_rbd_exporter::attribution::inventory::Inventory;
    use ceph_rbd_exporter::model::Sample;
    use std::sync::atomic::AtomicBool;
    static REFUSE: AtomicBool = AtomicBool::new(false);
    let server = Server::start(
        None,
        numbered_tokens_api(|_| {}, |_| !REFUSE.load(Ordering::SeqCst)),
    )
    .await;
    let source = openstack_source(&scratch("os-down"), &server);
    let attributor = Attributor::new(
        Inventory::default(),
        vec![Box::new(source)],
        None,
        Duration::from_secs(1),
    );
    let sample = Sample::default();
    attributor.refresh(100.0).await;
    assert!(attributor.health()["openstack"].up);
    let a = attributor.attribution(&sample, 100.0).await;
    assert!(a.sources.contains_key("openstack"));

    // Every token refused: down, counted as auth, no verdicts.
    REFUSE.store(true, Ordering::SeqCst);
    attributor.refresh(200.0).await;
    let h = &attributor.health()["openstack"];
    assert!(!h.up);
    assert_eq!(h.errors_total.get("auth"), Some(&1), "{h:?}");
    let why = h.last_error.as_deref().unwrap_or("");
    assert!(why.contains("authentication failed: HTTP 401"), "{why}");
    assert_eq!(h.last_success_timestamp_seconds, 100.0);
    let a = attributor.attribution(&sample, 200.0).await;
    assert!(
        a.sources.is_empty(),
        "a source that is down gives no verdicts"
    );

    // Accepted again: back, with the token it renewed.
    REFUSE.store(false, Ordering::SeqCst);
    attributor.refresh(300.0).await;
    assert!(attributor.health()["openstack"].up);
    let a = attributor.attribution(&sample, 300.0).await;
    assert!(a.sources.contains_key("openstack"));
    assert_eq!(token_traffic(&server).0, 2, "one renewal, on the refusal");
}

#[tokio::test]
async fn a_server_that_never_answers_is_unreachable_within_the_timeout() {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = listener.local_addr().expect("addr").port();
    // Accept and hold connections, never answering.
    let holder = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((stream, _)) = listener.accept().await {
            held.push(stream);
        }
    });
    let dir = scratch("os-timeout");
    let started = Instant::now();
    let err = openstack_fetch(
        &dir,
        &format!("http://127.0.0.1:{port}"),
        PASSWORD_AUTH,
        "",
        Duration::from_secs(1),
    )
    .await
    .expect_err("no answer");
    let elapsed = started.elapsed();
    holder.abort();
    assert!(matches!(err, SourceError::Unreachable { .. }), "{err}");
    assert!(err.to_string().contains("timeout"), "{err}");
    assert!(elapsed < Duration::from_secs(10), "took {elapsed:?}");

    // Same for Kubernetes, over TLS that never completes.
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let holder = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((stream, _)) = listener.accept().await {
            held.push(stream);
        }
    });
    let kubeconfig = write_kubeconfig(
        &dir,
        &format!("https://127.0.0.1:{port}"),
        "    insecure-skip-tls-verify: true\n",
        "    token: abc\n",
    );
    let source =
        KubernetesSource::from_kubeconfig(&kubeconfig, Duration::from_secs(1)).expect("source");
    let started = Instant::now();
    let err = source.fetch().await.expect_err("no answer");
    holder.abort();
    assert!(matches!(err, SourceError::Unreachable { .. }), "{err}");
    assert!(started.elapsed() < Duration::from_secs(10));
}

#[tokio::test]
async fn http_client_caps_bodies_and_reports_statuses() {
    let server = Server::start(
        None,
        Arc::new(|r: &Recorded, _: &str| match r.path.as_str() {
            "/big" => reply(200, format!("[\"{}\"]", "x".repeat(4096))),
            "/small" => reply(200, r#"{"ok": true}"#),
            "/echo" => reply(200, String::from_utf8_lossy(&r.body).to_string()),
            _ => reply(500, "internal error\nwith a trace"),
        }),
    )
    .await;
    let client = HttpClient::new("test", &TlsOptions::default(), TIMEOUT)
        .expect("client")
        .with_max_body(1024);
    let err = client
        .get_json(&format!("{}/big", server.base), &[])
        .await
        .expect_err("too big");
    assert!(matches!(err, SourceError::BadResponse { .. }), "{err}");
    assert!(err.to_string().contains("1024 byte cap"), "{err}");

    let ok = client
        .get_json(&format!("{}/small", server.base), &[("X-Custom", "1")])
        .await
        .expect("small");
    assert_eq!(ok.status, 200);
    assert_eq!(ok.body, json!({"ok": true}));
    assert_eq!(
        ok.headers.get("content-type").and_then(|v| v.to_str().ok()),
        Some("application/json")
    );

    let echoed = client
        .post_json(&format!("{}/echo", server.base), &[], &json!({"a": [1, 2]}))
        .await
        .expect("post");
    assert_eq!(echoed.body, json!({"a": [1, 2]}));

    let err = client
        .get_json(&format!("{}/fail", server.base), &[])
        .await
        .expect_err("500");
    assert!(matches!(err, SourceError::BadResponse { .. }), "{err}");
    assert!(
        err.to_string()
            .contains("HTTP 500: internal error with a trace"),
        "{err}"
    );
    assert_eq!(
        server.requests()[1]
            .headers
            .get("x-custom")
            .map(|v| v.as_bytes()),
        Some(&b"1"[..])
    );
}

#[test]
fn clouds_yaml_is_found_where_openstacksdk_looks() {
    let root = scratch("os-lookup");
    let (cwd, xdg, home, explicit) = (
        root.join("cwd"),
        root.join("xdg"),
        root.join("home"),
        root.join("elsewhere/my-clouds.yaml"),
    );
    for d in [
        &cwd,
        &xdg.join("openstack"),
        &home.join(".config/openstack"),
        &root.join("elsewhere"),
    ] {
        std::fs::create_dir_all(d).expect("mkdir");
    }
    let write = |p: &Path| std::fs::write(p, "clouds: {}\n").expect("write");
    let vars = |pairs: Vec<(&'static str, PathBuf)>| {
        move |k: &str| -> Option<OsString> {
            pairs
                .iter()
                .find(|(n, _)| *n == k)
                .map(|(_, v)| v.clone().into_os_string())
        }
    };
    let all = vec![
        ("OS_CLIENT_CONFIG_FILE", explicit.clone()),
        ("XDG_CONFIG_HOME", xdg.clone()),
        ("HOME", home.clone()),
    ];
    let system_has_one = ["/etc/xdg/openstack", "/etc/openstack"]
        .iter()
        .any(|d| Path::new(d).join("clouds.yaml").exists());

    // Nothing anywhere: the error lists where it looked.
    if !system_has_one {
        let err = find_clouds_yaml(&vars(all.clone()), &cwd)
            .expect_err("none")
            .to_string();
        assert!(err.contains(&explicit.display().to_string()), "{err}");
        assert!(
            err.contains(&cwd.join("clouds.yaml").display().to_string()),
            "{err}"
        );
        assert!(err.contains("/etc/openstack/clouds.yaml"), "{err}");
    }

    let home_file = home.join(".config/openstack/clouds.yaml");
    write(&home_file);
    assert_eq!(
        find_clouds_yaml(&vars(all.clone()), &cwd).expect("home"),
        home_file
    );

    let xdg_file = xdg.join("openstack/clouds.yaml");
    write(&xdg_file);
    assert_eq!(
        find_clouds_yaml(&vars(all.clone()), &cwd).expect("xdg"),
        xdg_file
    );
    // Without XDG_CONFIG_HOME, ~/.config/openstack.
    let no_xdg = vec![("HOME", home.clone())];
    assert_eq!(
        find_clouds_yaml(&vars(no_xdg), &cwd).expect("home"),
        home_file
    );

    let cwd_file = cwd.join("clouds.yml");
    write(&cwd_file);
    assert_eq!(
        find_clouds_yaml(&vars(all.clone()), &cwd).expect("cwd"),
        cwd_file
    );

    write(&explicit);
    assert_eq!(
        find_clouds_yaml(&vars(all.clone()), &cwd).expect("env"),
        explicit
    );
}

#[test]
fn bad_clouds_yaml_errors_name_the_problem() {
    let dir = scratch("os-bad");
    let file = dir.join("clouds.yaml");
    let at = |rest: &str| format!("{}: {rest}", file.display());
    let ok_auth = "auth: {auth_url: 'http://k', user_id: u, password: s3cr3t, project_id: p}";
    // Each bad clouds.yaml, and what its error must say: the file, then the
    // entry and the field.
    let cases: Vec<(String, Vec<String>)> = vec![
        ("clouds: [unclosed\n".into(), vec![at("")]),
        ("clouds: []\n".into(), vec![at("clouds must be a mapping")]),
        ("other: {}\n".into(), vec![at("no clouds: mapping")]),
        (
            "clouds:\n  prod: {auth: {auth_url: 'http://k'}}\n  lab: {}\n".into(),
            vec![at("no cloud \"test\" (clouds: prod, lab)")],
        ),
        ("clouds:\n  test: [x]\n".into(), vec![at("clouds.test must be a mapping")]),
        ("clouds:\n  test: {auth: [x]}\n".into(), vec![at("clouds.test.auth must be a mapping")]),
        (
            "clouds:\n  test: {auth: {username: u, password: s3cr3t}}\n".into(),
            vec![at("clouds.test.auth.auth_url is missing")],
        ),
        (
            "clouds:\n  test:\n    auth: {auth_url: 'http://k', username: u, password: s3cr3t, user_domain_name: D}\n".into(),
            vec![at("clouds.test.auth.project_name (or project_id) is missing")],
        ),
        (
            "clouds:\n  test:\n    auth: {auth_url: 'http://k', username: u, password: s3cr3t, project_id: p}\n".into(),
            vec![at("clouds.test.auth.user_domain_name (or _id) is missing")],
        ),
        (
            "clouds:\n  test:\n    auth: {auth_url: 'http://k', user_id: u, password: [s3cr3t], project_id: p}\n".into(),
            vec![at("clouds.test.auth.password must be a string")],
        ),
        (
            "clouds:\n  test:\n    auth_type: v3oidcpassword\n    auth: {auth_url: 'http://k'}\n".into(),
            vec![at("clouds.test.auth_type \"v3oidcpassword\" is not supported")],
        ),
        (
            "clouds:\n  test:\n    auth_type: token\n    auth: {auth_url: 'http://k', project_id: p}\n".into(),
            vec![at("clouds.test.auth.token is missing")],
        ),
        (
            "clouds:\n  test:\n    auth_type: v3applicationcredential\n    auth: {auth_url: 'http://k', application_credential_secret: s3cr3t}\n".into(),
            vec![at("clouds.test.auth.application_credential_id (or application_credential_name) is missing")],
        ),
        (
            format!("clouds:\n  test:\n    interface: private\n    {ok_auth}\n"),
            vec![at("clouds.test.interface \"private\"")],
        ),
        (
            format!("clouds:\n  test:\n    verify: perhaps\n    {ok_auth}\n"),
            vec![at("clouds.test.verify must be true or false")],
        ),
        (
            format!("clouds:\n  test:\n    cacert: /nonexistent/ca.pem\n    {ok_auth}\n"),
            vec![at("clouds.test.cacert /nonexistent/ca.pem")],
        ),
        (
            format!("clouds:\n  test:\n    key: /nonexistent/key.pem\n    {ok_auth}\n"),
            vec![at("clouds.test.key is set without cert")],
        ),
        (
            format!("clouds:\n  test:\n    regions: {{a: b}}\n    {ok_auth}\n"),
            vec![at("clouds.test.regions must be a list")],
        ),
    ];
    for (text, want) in &cases {
        std::fs::write(&file, text).expect("write");
        let err = OpenStackSource::from_clouds_yaml("test", Some(&file), TIMEOUT)
            .expect_err(text)
            .to_string();
        let want: Vec<&str> = want.iter().map(String::as_str).collect();
        assert_config_error(&err, "openstack", &want, "s3cr3t");
    }
    let missing = dir.join("absent.yaml");
    let err = OpenStackSource::from_clouds_yaml("test", Some(&missing), TIMEOUT)
        .expect_err("absent")
        .to_string();
    assert!(err.contains(&missing.display().to_string()), "{err}");
}

/// Keystone taking only `auth.token` `user-token` with the token method
/// (answering it, once `expired` is set, with Keystone's 404 that names
/// the token) and handing out `token-1`, `token-2`, …; the services take
/// the handed-out tokens until `expired` is set.
fn token_method_api(expired: Arc<std::sync::atomic::AtomicBool>) -> Handler {
    let inner = numbered_tokens_api(|_| {}, |_| true);
    Arc::new(move |r: &Recorded, base: &str| {
        let gone = expired.load(Ordering::SeqCst);
        if r.method == "POST" {
            let body: Value = serde_json::from_slice(&r.body).unwrap_or_default();
            let identity = &body["auth"]["identity"];
            if identity["methods"] != json!(["token"]) || identity["token"]["id"] != "user-token" {
                return reply(401, r#"{"error": {"code": 401}}"#);
            }
            if gone {
                return reply(
                    404,
                    r#"{"error": {"code": 404, "message": "Could not find token: user-token."}}"#,
                );
            }
        } else if gone {
            return reply(401, r#"{"error": {"code": 401}}"#);
        }
        inner(r, base)
    })
}

#[tokio::test]
async fn openstack_token_auth_is_reused_and_an_expired_token_is_an_auth_error() {
    let expired = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let server = Server::start(None, token_method_api(expired.clone())).await;
    let auth = "    auth_type: token
    auth:
      auth_url: {{BASE}}/identity/v3
      auth_token: user-token
      project_id: a6944d763bf64ee6a275f1263fae0352
";
    let file = clouds_yaml(&scratch("os-token"), &server.base, auth, "");
    let source = OpenStackSource::from_clouds_yaml("test", Some(&file), TIMEOUT).expect("source");
    assert!(!format!("{source:?}").contains("user-token"));
    for _ in 0..3 {
        check_openstack_report(&source.fetch().await.expect("fetch"));
    }
    let (posts, used) = token_traffic(&server);
    assert_eq!(posts, 1, "one Keystone token for three fetches");
    assert!(used.iter().all(|t| t == "token-1"), "{used:?}");
    let body: Value = serde_json::from_slice(&server.requests()[0].body).expect("JSON");
    assert_eq!(
        body,
        json!({"auth": {
            "identity": {"methods": ["token"], "token": {"id": "user-token"}},
            "scope": {"project": {"id": PROJECT}}
        }})
    );

    // The token it came from expires (and the derived one with it):
    // Keystone's 404 is a refusal, and the user's token is shown nowhere.
    expired.store(true, Ordering::SeqCst);
    for _ in 0..2 {
        let err = source.fetch().await.expect_err("refused");
        assert_eq!(err.metric_label(), "auth", "{err}");
        match &err {
            SourceError::Auth { status, url, .. } => {
                assert_eq!(*status, 404);
                assert!(url.ends_with("/identity/v3/auth/tokens"), "{url}");
            }
            other => panic!("expected Auth, got {other}"),
        }
        assert!(!err.to_string().contains("user-token"), "{err}");
    }
}

#[tokio::test]
async fn openstack_secure_yaml_is_merged_as_openstacksdk_does() {
    let server = Server::start(None, openstack_api()).await;
    let root = scratch("os-secure");
    let (cwd, home) = (root.join("cwd"), root.join("home"));
    let home_dir = home.join(".config/openstack");
    for d in [&cwd, &home_dir, &root.join("vault")] {
        std::fs::create_dir_all(d).expect("mkdir");
    }
    let without_password = PASSWORD_AUTH.replace("      password: s3cr3t-pw\n", "");
    let clouds = clouds_yaml(&home_dir, &server.base, &without_password, "");
    let write = |p: &Path, text: &str| std::fs::write(p, text).expect("write");
    let (secure_cwd, secure_env) = (cwd.join("secure.yaml"), root.join("vault/s.yaml"));
    write(
        &secure_cwd,
        "clouds:\n  test:\n    auth:\n      password: s3cr3t-pw\n",
    );
    write(
        &secure_env,
        "clouds:\n  test:\n    auth:\n      password: [s3cr3t-pw]\n",
    );
    let env = |secure_file: Option<&Path>| {
        let (home, secure_file) = (home.clone(), secure_file.map(Path::to_path_buf));
        move |k: &str| -> Option<OsString> {
            match k {
                "HOME" => Some(home.clone().into_os_string()),
                "OS_CLIENT_SECURE_FILE" => secure_file.clone().map(PathBuf::into_os_string),
                "XDG_CONFIG_DIRS" => Some(root_site().into_os_string()),
                _ => None,
            }
        }
    };
    let files = find_clouds_files(&env(None), &cwd, None).expect("found");
    assert_eq!(
        files,
        CloudsFiles {
            clouds: clouds.clone(),
            secure: Some(secure_cwd.clone())
        },
        "clouds.yaml from ~/.config/openstack, secure.yaml from the working directory"
    );
    check_openstack_report(
        &OpenStackSource::from_files("test", &files, TIMEOUT)
            .expect("source")
            .fetch()
            .await
            .expect("fetch"),
    );
    let body: Value = serde_json::from_slice(&server.requests()[0].body).expect("JSON");
    assert_eq!(
        body["auth"]["identity"]["password"]["user"]["password"],
        "s3cr3t-pw"
    );
    // --openstack.clouds-file gets the secure.yaml too, as
    // OS_CLIENT_CONFIG_FILE does.
    let files = find_clouds_files(&env(None), &cwd, Some(&clouds)).expect("found");
    assert_eq!(files.secure.as_deref(), Some(secure_cwd.as_path()));

    // OS_CLIENT_SECURE_FILE comes first; an error in it names both files,
    // the entry and the field, and never the secret.
    let files = find_clouds_files(&env(Some(&secure_env)), &cwd, None).expect("found");
    assert_eq!(files.secure.as_deref(), Some(secure_env.as_path()));
    let err = OpenStackSource::from_files("test", &files, TIMEOUT)
        .expect_err("bad secure.yaml")
        .to_string();
    let both = format!(
        "{} (merged with {}): clouds.test.auth.password must be a string",
        clouds.display(),
        secure_env.display()
    );
    assert_config_error(&err, "openstack", &[&both], "s3cr3t");

    // An empty secure.yaml is skipped; one that is no mapping is named.
    write(&secure_env, "");
    let files = find_clouds_files(&env(Some(&secure_env)), &cwd, None).expect("found");
    let err = OpenStackSource::from_files("test", &files, TIMEOUT)
        .expect_err("no password")
        .to_string();
    assert_config_error(
        &err,
        "openstack",
        &[&format!(
            "{}: clouds.test.auth.password is missing",
            clouds.display()
        )],
        "s3cr3t",
    );
    write(&secure_env, "- password\n");
    let err = OpenStackSource::from_files("test", &files, TIMEOUT)
        .expect_err("a list")
        .to_string();
    assert_config_error(
        &err,
        "openstack",
        &[&format!("{}: must be a mapping", secure_env.display())],
        "s3cr3t",
    );
}

/// A site directory nobody writes to, for `XDG_CONFIG_DIRS`.
fn root_site() -> PathBuf {
    scratch("os-site-none")
}

#[test]
fn clouds_yaml_is_found_in_xdg_config_dirs() {
    let root = scratch("os-xdg-dirs");
    let (cwd, first, second) = (root.join("cwd"), root.join("a"), root.join("b"));
    for d in [&cwd, &first.join("openstack"), &second.join("openstack")] {
        std::fs::create_dir_all(d).expect("mkdir");
    }
    let file = second.join("openstack/clouds.yaml");
    std::fs::write(&file, "clouds: {}\n").expect("write");
    let dirs: OsString = format!("{}:{}", first.display(), second.display()).into();
    let env = move |k: &str| (k == "XDG_CONFIG_DIRS").then(|| dirs.clone());
    assert_eq!(find_clouds_yaml(&env, &cwd).expect("found"), file);
    let candidates = clouds_yaml_candidates(&env, &cwd);
    assert!(
        !candidates.contains(&PathBuf::from("/etc/xdg/openstack/clouds.yaml")),
        "XDG_CONFIG_DIRS replaces /etc/xdg: {candidates:?}"
    );
    assert!(candidates.contains(&PathBuf::from("/etc/openstack/clouds.yaml")));
}

// ------------------------------------------------------------- Kubernetes

const CONTINUE: &str =
    "eyJ2IjoibWV0YS5rOHMuaW8vdjEiLCJydiI6MjAwMDEsInN0YXJ0IjoicHZjLWluLXRyZWVcdTAwMDAifQ+/==";
const PVS: &str = "/api/v1/persistentvolumes";
const VAS: &str = "/apis/storage.k8s.io/v1/volumeattachments";
const NODES: &str = "/api/v1/nodes";
const UNAUTHORIZED: &str = r#"{"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure","message":"Unauthorized","reason":"Unauthorized","code":401}"#;

/// How the fake Kubernetes API answers everything.
#[derive(Debug, Clone, Copy, PartialEq)]
enum ApiMode {
    /// As the API does.
    Normal,
    /// 200 with a body that is not JSON.
    Garbage,
    /// 503 with a JSON body that is no Status (a proxy or load balancer in
    /// front of the API server, say).
    Unavailable,
}

/// One request the fake Kubernetes API saw.
#[derive(Debug, Clone)]
struct ApiRequest {
    path: String,
    query: Vec<(String, String)>,
    bearer: Option<String>,
    client_cert: bool,
}

impl ApiRequest {
    fn param(&self, name: &str) -> Option<&str> {
        self.query
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    fn is_watch(&self) -> bool {
        self.param("watch") == Some("true")
    }
}

/// The objects of the fake Kubernetes API and its event log.
struct ApiState {
    /// The last resourceVersion given out.
    rv: u64,
    /// (collection path, object), in creation order.
    objects: Vec<(&'static str, Value)>,
    /// (resourceVersion, collection path, event line).
    log: Vec<(u64, &'static str, String)>,
    /// The bearer token required, if any.
    token: Option<String>,
    mode: ApiMode,
    /// Collections whose open watches are to end with 410 Gone.
    expire: BTreeSet<&'static str>,
    requests: Vec<ApiRequest>,
}

/// A fake Kubernetes API server: lists (PVs in two pages) and watches
/// (`?watch=true&resourceVersion=N`, newline-delimited events, a BOOKMARK
/// first) of PersistentVolumes, VolumeAttachments and Nodes, starting with
/// the objects of the fixtures. It can be stopped and started again on the
/// same port.
struct FakeApi {
    base: String,
    port: u16,
    tls: Option<Arc<rustls::ServerConfig>>,
    state: Arc<Mutex<ApiState>>,
    changed: Arc<tokio::sync::Notify>,
    tasks: Arc<Mutex<Vec<tokio::task::AbortHandle>>>,
}

impl Drop for FakeApi {
    fn drop(&mut self) {
        self.stop();
    }
}

fn items(fixture_name: &str) -> Vec<Value> {
    let list: Value = serde_json::from_str(&fixture(fixture_name)).expect("fixture");
    list["items"].as_array().expect("items").clone()
}

fn object_name(object: &Value) -> &str {
    object["metadata"]["name"].as_str().unwrap_or_default()
}

fn api_kind(path: &str) -> (&'static str, &'static str) {
    match path {
        PVS => ("v1", "PersistentVolume"),
        VAS => ("storage.k8s.io/v1", "VolumeAttachment"),
        _ => ("v1", "Node"),
    }
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            if let Ok(b) = u8::from_str_radix(&s[i + 1..i + 3], 16) {
                out.push(b);
                i += 3;
                continue;
            }
        }
        out.push(if bytes[i] == b'+' { b' ' } else { bytes[i] });
        i += 1;
    }
    String::from_utf8(out).expect("utf-8")
}

type ApiBody = http_body_util::combinators::BoxBody<Bytes, Infallible>;

fn api_reply(status: u16, body: impl Into<String>) -> Response<ApiBody> {
    Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body.into())).boxed())
        .expect("response")
}

impl FakeApi {
    async fn start(tls: Option<Arc<rustls::ServerConfig>>, token: Option<&str>) -> FakeApi {
        let mut objects = Vec::new();
        for (path, name) in [
            (PVS, "k8s-persistentvolumes-page1.json"),
            (PVS, "k8s-persistentvolumes-page2.json"),
            (VAS, "k8s-volumeattachments.json"),
            (NODES, "k8s-nodes.json"),
        ] {
            objects.extend(items(name).into_iter().map(|o| (path, o)));
        }
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let scheme = if tls.is_some() { "https" } else { "http" };
        let api = FakeApi {
            base: format!("{scheme}://127.0.0.1:{port}"),
            port,
            tls,
            state: Arc::new(Mutex::new(ApiState {
                rv: 20003,
                objects,
                log: Vec::new(),
                token: token.map(str::to_string),
                mode: ApiMode::Normal,
                expire: BTreeSet::new(),
                requests: Vec::new(),
            })),
            changed: Arc::new(tokio::sync::Notify::new()),
            tasks: Arc::new(Mutex::new(Vec::new())),
        };
        api.serve(listener);
        api
    }

    /// Listens again on the same port after [`FakeApi::stop`].
    async fn restart(&self) {
        // The stopped listener goes when the runtime drops its task.
        for _ in 0..100 {
            if let Ok(listener) = TcpListener::bind(("127.0.0.1", self.port)).await {
                return self.serve(listener);
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!("port {} stays taken", self.port);
    }

    /// Closes the port and every connection (open watches end).
    fn stop(&self) {
        for task in self.tasks.lock().expect("lock").drain(..) {
            task.abort();
        }
    }

    fn serve(&self, listener: TcpListener) {
        let (state, changed, tasks, tls) = (
            self.state.clone(),
            self.changed.clone(),
            self.tasks.clone(),
            self.tls.clone(),
        );
        let accept = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let (state, changed, tls) = (state.clone(), changed.clone(), tls.clone());
                let conn = tokio::spawn(async move {
                    match tls {
                        None => serve_api_conn(stream, false, state, changed).await,
                        Some(cfg) => {
                            if let Ok(s) = tokio_rustls::TlsAcceptor::from(cfg).accept(stream).await
                            {
                                let cert = s.get_ref().1.peer_certificates().is_some();
                                serve_api_conn(s, cert, state, changed).await;
                            }
                        }
                    }
                });
                tasks.lock().expect("lock").push(conn.abort_handle());
            }
        });
        self.tasks.lock().expect("lock").push(accept.abort_handle());
    }

    fn with_state<T>(&self, f: impl FnOnce(&mut ApiState) -> T) -> T {
        let out = f(&mut self.state.lock().expect("lock"));
        self.changed.notify_waiters();
        out
    }

    /// Adds or replaces (by name) an object, with a new resourceVersion.
    fn apply(&self, path: &'static str, mut object: Value) {
        self.with_state(|s| {
            s.rv += 1;
            object["metadata"]["resourceVersion"] = json!(s.rv.to_string());
            let name = object_name(&object).to_string();
            let existing = s
                .objects
                .iter_mut()
                .find(|(p, o)| *p == path && object_name(o) == name);
            let kind = match existing {
                Some((_, o)) => {
                    *o = object.clone();
                    "MODIFIED"
                }
                None => {
                    s.objects.push((path, object.clone()));
                    "ADDED"
                }
            };
            let line = json!({"type": kind, "object": object}).to_string();
            s.log.push((s.rv, path, line));
        });
    }

    fn delete(&self, path: &'static str, name: &str) {
        self.with_state(|s| {
            let at = s
                .objects
                .iter()
                .position(|(p, o)| *p == path && object_name(o) == name)
                .expect("object to delete");
            let (_, mut object) = s.objects.remove(at);
            s.rv += 1;
            object["metadata"]["resourceVersion"] = json!(s.rv.to_string());
            let line = json!({"type": "DELETED", "object": object}).to_string();
            s.log.push((s.rv, path, line));
        });
    }

    fn object(&self, path: &str, name: &str) -> Value {
        self.with_state(|s| {
            s.objects
                .iter()
                .find(|(p, o)| *p == path && object_name(o) == name)
                .map(|(_, o)| o.clone())
                .expect("object")
        })
    }

    fn requests(&self) -> Vec<ApiRequest> {
        self.with_state(|s| s.requests.clone())
    }

    /// (list requests, watch requests) for `path`.
    fn counts(&self, path: &str) -> (usize, usize) {
        let requests = self.requests();
        let of = |watch: bool| {
            requests
                .iter()
                .filter(|r| r.path == path && r.is_watch() == watch)
                .count()
        };
        (of(false), of(true))
    }
}

async fn serve_api_conn<IO>(
    io: IO,
    client_cert: bool,
    state: Arc<Mutex<ApiState>>,
    changed: Arc<tokio::sync::Notify>,
) where
    IO: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let service = hyper::service::service_fn(move |req: Request<Incoming>| {
        let request = ApiRequest {
            path: req.uri().path().to_string(),
            query: req
                .uri()
                .query()
                .unwrap_or("")
                .split('&')
                .filter(|p| !p.is_empty())
                .map(|p| {
                    let (k, v) = p.split_once('=').unwrap_or((p, ""));
                    (k.to_string(), percent_decode(v))
                })
                .collect(),
            bearer: header_of(req.headers(), "authorization"),
            client_cert,
        };
        let answer = answer_api(&state, &changed, request);
        async move { Ok::<_, Infallible>(answer) }
    });
    let _ = hyper::server::conn::http1::Builder::new()
        .serve_connection(TokioIo::new(io), service)
        .await;
}

fn header_of(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
}

fn answer_api(
    state: &Arc<Mutex<ApiState>>,
    changed: &Arc<tokio::sync::Notify>,
    request: ApiRequest,
) -> Response<ApiBody> {
    let mut s = state.lock().expect("lock");
    s.requests.push(request.clone());
    if s.mode == ApiMode::Garbage {
        return api_reply(200, "this is not JSON");
    }
    if s.mode == ApiMode::Unavailable {
        return api_reply(503, r#"{"error": "maintenance"}"#);
    }
    let wanted = s.token.as_ref().map(|t| format!("Bearer {t}"));
    if wanted.is_some() && request.bearer != wanted {
        return api_reply(401, UNAUTHORIZED);
    }
    let Some(path) = [PVS, VAS, NODES].into_iter().find(|p| *p == request.path) else {
        return api_reply(
            404,
            r#"{"kind":"Status","apiVersion":"v1","status":"Failure","reason":"NotFound","code":404}"#,
        );
    };
    if request.is_watch() {
        let from = request
            .param("resourceVersion")
            .and_then(|v| v.parse().ok())
            .unwrap_or(s.rv);
        drop(s);
        return watch_stream(state.clone(), changed.clone(), path, from);
    }
    let all: Vec<Value> = s
        .objects
        .iter()
        .filter(|(p, _)| *p == path)
        .map(|(_, o)| o.clone())
        .collect();
    // PersistentVolumes come in two pages, the first of three.
    let (page, next) = match (path, request.param("continue")) {
        (PVS, None) => (all[..3.min(all.len())].to_vec(), Some(CONTINUE)),
        (PVS, Some(c)) if c == CONTINUE => (all[3.min(all.len())..].to_vec(), None),
        (_, None) => (all, None),
        _ => return api_reply(410, r#"{"kind":"Status","code":410,"reason":"Expired"}"#),
    };
    let (api_version, kind) = api_kind(path);
    let mut metadata = json!({"resourceVersion": s.rv.to_string()});
    if let Some(next) = next {
        metadata["continue"] = json!(next);
    }
    let list = json!({"kind": format!("{kind}List"), "apiVersion": api_version,
                      "metadata": metadata, "items": page});
    api_reply(200, list.to_string())
}

/// A watch from resourceVersion `from`: a BOOKMARK, then every event of
/// `path` after `from` as it happens; a 410 ERROR event when the
/// collection is expired.
fn watch_stream(
    state: Arc<Mutex<ApiState>>,
    changed: Arc<tokio::sync::Notify>,
    path: &'static str,
    from: u64,
) -> Response<ApiBody> {
    let (tx, rx) = tokio::sync::mpsc::channel::<Bytes>(64);
    tokio::spawn(async move {
        let mut cursor = from;
        let (api_version, kind) = api_kind(path);
        let mut first = true;
        loop {
            let wake = changed.notified();
            let (lines, end) = {
                let mut s = state.lock().expect("lock");
                let mut lines: Vec<String> = s
                    .log
                    .iter()
                    .filter(|(rv, p, _)| *p == path && *rv > cursor)
                    .map(|(_, _, line)| line.clone())
                    .collect();
                if first {
                    lines.push(
                        json!({"type": "BOOKMARK", "object": {"kind": kind, "apiVersion": api_version,
                               "metadata": {"resourceVersion": s.rv.to_string()}}})
                        .to_string(),
                    );
                    first = false;
                }
                cursor = s.rv;
                let end = s.expire.remove(path);
                if end {
                    lines.push(
                        json!({"type": "ERROR", "object": {"kind": "Status", "apiVersion": "v1",
                        "metadata": {}, "status": "Failure", "message": "too old resource version",
                        "reason": "Expired", "code": 410}})
                        .to_string(),
                    );
                }
                (lines, end)
            };
            for line in lines {
                if tx.send(Bytes::from(line + "\n")).await.is_err() {
                    return;
                }
            }
            if end {
                return;
            }
            tokio::select! {
                _ = wake => {}
                _ = tx.closed() => return,
            }
        }
    });
    let body = futures::stream::unfold(rx, |mut rx| async move {
        rx.recv()
            .await
            .map(|b| (Ok::<_, Infallible>(hyper::body::Frame::data(b)), rx))
    });
    Response::builder()
        .status(200)
        .header("content-type", "application/json")
        .body(http_body_util::StreamBody::new(body).boxed())
        .expect("response")
}

fn write_kubeconfig(dir: &Path, server: &str, cluster_extra: &str, user: &str) -> PathBuf {
    let path = dir.join("kubeconfig");
    std::fs::write(
        &path,
        format!(
            "apiVersion: v1
kind: Config
preferences: {{}}
current-context: admin@test
contexts:
- name: other
  context: {{cluster: nowhere, user: nobody}}
- name: admin@test
  context:
    cluster: test
    user: admin
    namespace: default
clusters:
- name: test
  cluster:
    server: {server}
{cluster_extra}users:
- name: admin
  user:
{user}"
        ),
    )
    .expect("kubeconfig");
    path
}

fn csi(pool: &str, namespace: &str, image: &str) -> ImageRef {
    ImageRef {
        pool: Some(pool.to_string()),
        namespace: Some(namespace.to_string()),
        image: image.to_string(),
    }
}

fn check_kubernetes_report(report: &AttachmentReport) {
    check_expected(
        report,
        &[
            Expected {
                image: csi(
                    "kubernetes",
                    "tenant-a",
                    "csi-vol-5f4e3d2c-1b0a-4f9e-8d7c-6b5a49382716",
                ),
                hosts: Some(&["node-1"]),
                multi_attach: Some(false),
                owner: Some(
                    "kubernetes pv pvc-0a1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d (claim shop/data-postgres-0)",
                ),
                why: "attached by a VolumeAttachment",
            },
            Expected {
                image: csi(
                    "kube",
                    "",
                    "kubernetes-dynamic-pvc-8f2e6a1c-0b3d-11ef-9a5e-0242ac110002",
                ),
                hosts: None,
                multi_attach: None,
                owner: Some("kubernetes pv pvc-in-tree (claim legacy/legacy-data)"),
                why: "in-tree rbd: no VolumeAttachments, no opinion",
            },
            Expected {
                image: csi(
                    "kubernetes",
                    "",
                    "csi-vol-7a8b9c0d-1e2f-4a3b-8c4d-5e6f7a8b9c0d",
                ),
                hosts: Some(&["node-2", "node-3"]),
                multi_attach: Some(true),
                owner: None,
                why: "from the second page; ReadWriteMany",
            },
            Expected {
                image: csi(
                    "kubernetes",
                    "",
                    "csi-vol-9c0d1e2f-3a4b-4c5d-8e6f-7a8b9c0d1e2f",
                ),
                hosts: Some(&[]),
                multi_attach: None,
                owner: None,
                why: "attached: false counts for nothing",
            },
            Expected {
                image: csi(
                    "ocs-storagecluster-cephblockpool",
                    "",
                    "csi-vol-0d1e2f3a-4b5c-4d6e-9f7a-8b9c0d1e2f3a",
                ),
                hosts: Some(&[]),
                multi_attach: None,
                owner: None,
                why: "a pool with a prefix",
            },
        ],
    );
    assert_eq!(
        report.images.len(),
        5,
        "the NFS PV is not RBD: {:#?}",
        report.images
    );

    let addr = |s: &str| s.parse::<IpAddr>().expect("ip");
    assert_eq!(
        report.host_addresses.len(),
        4,
        "{:?}",
        report.host_addresses
    );
    for (ip, node) in [
        ("10.0.1.11", "node-1"),
        ("10.0.1.12", "node-2"),
        ("fd00::12", "node-2"),
        ("10.0.1.13", "node-3"),
    ] {
        assert_eq!(report.host_addresses[&addr(ip)], node, "{ip}");
    }
    assert!(
        !report.host_addresses.contains_key(&addr("203.0.113.11")),
        "ExternalIP"
    );
    assert_eq!(report.instances, None);
}

fn b64(path: &Path) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(std::fs::read(path).expect("read"))
}

/// A source for `kubeconfig`, with the test timeout.
fn kubernetes_source(kubeconfig: &Path) -> KubernetesSource {
    KubernetesSource::from_kubeconfig(kubeconfig, TIMEOUT).expect("source")
}

/// Fetches once from a new source for `kubeconfig`.
async fn kubernetes_fetch(kubeconfig: &Path) -> Result<AttachmentReport, SourceError> {
    kubernetes_source(kubeconfig).fetch().await
}

/// Fetches until `done` accepts the result, for at most `within`; the last
/// result and how long it took.
async fn fetch_until(
    source: &KubernetesSource,
    within: Duration,
    done: impl Fn(&Result<AttachmentReport, SourceError>) -> bool,
) -> (Result<AttachmentReport, SourceError>, Duration) {
    let start = Instant::now();
    loop {
        let result = source.fetch().await;
        if done(&result) || start.elapsed() > within {
            return (result, start.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The kubeconfig for `api` with a bearer token and the CA inline.
fn token_kubeconfig(dir: &Path, api: &FakeApi, token: &str) -> PathBuf {
    write_kubeconfig(
        dir,
        &format!("{}/", api.base),
        &format!(
            "    certificate-authority-data: {}\n",
            b64(&pki().join("ca.crt"))
        ),
        &format!("    token: {token}\n"),
    )
}

#[tokio::test]
async fn kubernetes_bearer_token_with_ca_data_lists_every_page() {
    let api = FakeApi::start(Some(server_tls(false)), Some("kube-token-123")).await;
    let dir = scratch("k8s-token");
    let source = kubernetes_source(&token_kubeconfig(&dir, &api, "kube-token-123"));
    assert_eq!(source.name(), "kubernetes");
    let report = source.fetch().await.expect("fetch");
    check_kubernetes_report(&report);
    assert_eq!(api.counts(PVS).0, 2, "2 PV pages");
    assert_eq!(api.counts(VAS).0, 1);
    assert_eq!(api.counts(NODES).0, 1);
    let requests = api.requests();
    let second_page = requests
        .iter()
        .find(|r| r.param("continue").is_some())
        .expect("a second page");
    assert_eq!(second_page.param("continue"), Some(CONTINUE));
    for r in &requests {
        assert_eq!(r.bearer.as_deref(), Some("Bearer kube-token-123"));
        assert!(!r.client_cert);
    }

    // A wrong token is an authentication failure.
    let kubeconfig = write_kubeconfig(
        &dir,
        &api.base,
        "    insecure-skip-tls-verify: true\n",
        "    token: wrong\n",
    );
    let err = kubernetes_fetch(&kubeconfig).await.expect_err("401");
    assert!(
        matches!(err, SourceError::Auth { status: 401, .. }),
        "{err}"
    );
    assert!(!err.to_string().contains("wrong"), "{err}");
}

#[tokio::test]
async fn kubernetes_client_certificate_over_mutual_tls() {
    let api = FakeApi::start(Some(server_tls(true)), None).await;
    let dir = scratch("k8s-mtls");
    for f in ["ca.crt", "client.crt", "client.key"] {
        std::fs::copy(pki().join(f), dir.join(f)).expect("copy");
    }
    // Relative file names are relative to the kubeconfig.
    let kubeconfig = write_kubeconfig(
        &dir,
        &api.base,
        "    certificate-authority: ca.crt\n",
        "    client-certificate: client.crt\n    client-key: client.key\n",
    );
    let report = kubernetes_fetch(&kubeconfig)
        .await
        .expect("fetch with a client certificate");
    check_kubernetes_report(&report);
    assert!(api.requests().iter().all(|r| r.client_cert));

    // The same inline.
    let kubeconfig = write_kubeconfig(
        &dir,
        &api.base,
        &format!(
            "    certificate-authority-data: {}\n",
            b64(&dir.join("ca.crt"))
        ),
        &format!(
            "    client-certificate-data: {}\n    client-key-data: {}\n",
            b64(&dir.join("client.crt")),
            b64(&dir.join("client.key"))
        ),
    );
    kubernetes_fetch(&kubeconfig)
        .await
        .expect("fetch with inline certificate");

    // Without one, the server refuses the handshake.
    let kubeconfig = write_kubeconfig(
        &dir,
        &api.base,
        "    certificate-authority: ca.crt\n",
        "    token: abc\n",
    );
    let err = kubernetes_fetch(&kubeconfig)
        .await
        .expect_err("no client certificate");
    assert!(matches!(err, SourceError::Unreachable { .. }), "{err}");
}

#[tokio::test]
async fn kubernetes_tls_unknown_ca_is_refused_and_insecure_accepts() {
    let api = FakeApi::start(Some(server_tls(false)), None).await;
    let dir = scratch("k8s-tls");
    let kubeconfig = write_kubeconfig(&dir, &api.base, "", "    token: abc\n");
    let err = kubernetes_fetch(&kubeconfig).await.expect_err("unknown CA");
    assert!(matches!(err, SourceError::Unreachable { .. }), "{err}");
    assert!(err.to_string().contains("certificate"), "{err}");

    let kubeconfig = write_kubeconfig(
        &dir,
        &api.base,
        "    insecure-skip-tls-verify: true\n",
        "    token: abc\n",
    );
    let report = kubernetes_fetch(&kubeconfig).await.expect("insecure");
    check_kubernetes_report(&report);
}

#[tokio::test]
async fn kubernetes_exec_plugin_gives_the_token() {
    let api = FakeApi::start(Some(server_tls(false)), Some("exec-token-1")).await;
    let dir = scratch("k8s-exec");
    let plugin = dir.join("credential-plugin");
    let runs = dir.join("runs");
    std::fs::write(
        &plugin,
        format!(
            "#!/bin/sh\necho run >> '{}'\necho '{{\"apiVersion\": \"client.authentication.k8s.io/v1beta1\", \"kind\": \"ExecCredential\", \"status\": {{\"token\": \"exec-token-1\"}}}}'\n",
            runs.display()
        ),
    )
    .expect("plugin");
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&plugin, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let kubeconfig = write_kubeconfig(
        &dir,
        &api.base,
        &format!(
            "    certificate-authority-data: {}\n",
            b64(&pki().join("ca.crt"))
        ),
        &format!(
            "    exec:\n      apiVersion: client.authentication.k8s.io/v1beta1\n      command: {}\n      interactiveMode: Never\n",
            plugin.display()
        ),
    );
    check_kubernetes_report(&kubernetes_fetch(&kubeconfig).await.expect("fetch"));
    assert!(
        api.requests()
            .iter()
            .all(|r| r.bearer.as_deref() == Some("Bearer exec-token-1"))
    );
    assert!(std::fs::read_to_string(&runs).expect("ran").contains("run"));

    // A plugin that fails is a configuration error naming the user.
    std::fs::write(
        &plugin,
        "#!/bin/sh\necho 'no credentials for you' >&2\nexit 3\n",
    )
    .expect("plugin");
    let err = KubernetesSource::from_kubeconfig(&kubeconfig, TIMEOUT)
        .expect_err("failing plugin")
        .to_string();
    assert_config_error(
        &err,
        "kubernetes",
        &["user \"admin\"", "exec"],
        "exec-token-1",
    );
}

/// `old` with `changes` merged in (objects only; `null` deletes).
fn patched(mut old: Value, changes: &Value) -> Value {
    if let (Some(o), Some(c)) = (old.as_object_mut(), changes.as_object()) {
        for (k, v) in c {
            let merged = patched(o.get(k).cloned().unwrap_or(Value::Null), v);
            o.insert(k.clone(), merged);
        }
        return old;
    }
    changes.clone()
}

#[tokio::test]
async fn kubernetes_watches_follow_changes_without_listing_again() {
    let api = FakeApi::start(Some(server_tls(false)), Some("t")).await;
    let dir = scratch("k8s-watch");
    let source = kubernetes_source(&token_kubeconfig(&dir, &api, "t"));
    check_kubernetes_report(&source.fetch().await.expect("first fetch"));
    let lists: Vec<usize> = [PVS, VAS, NODES].map(|p| api.counts(p).0).to_vec();

    // A new PV, a VolumeAttachment moved from node-1 to node-3, a PV gone.
    let pv = api.object(PVS, "pvc-0a1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d");
    api.apply(
        PVS,
        patched(
            pv,
            &json!({"metadata": {"name": "pvc-new"}, "spec": {"claimRef": {"name": "new-claim"},
                "csi": {"volumeAttributes": {"imageName": "csi-vol-new"}}}}),
        ),
    );
    let va_name = "csi-1f0e9d8c7b6a59483726150493827160f1e2d3c4b5a69788796a5b4c3d2e1f00";
    let va = api.object(VAS, va_name);
    api.apply(VAS, patched(va, &json!({"spec": {"nodeName": "node-3"}})));
    api.delete(PVS, "pvc-in-tree");

    let moved = csi(
        "kubernetes",
        "tenant-a",
        "csi-vol-5f4e3d2c-1b0a-4f9e-8d7c-6b5a49382716",
    );
    let added = csi("kubernetes", "tenant-a", "csi-vol-new");
    let in_tree = csi(
        "kube",
        "",
        "kubernetes-dynamic-pvc-8f2e6a1c-0b3d-11ef-9a5e-0242ac110002",
    );
    let (result, took) = fetch_until(&source, Duration::from_secs(5), |r| {
        r.as_ref().is_ok_and(|r| {
            r.images.contains_key(&added)
                && !r.images.contains_key(&in_tree)
                && r.images.get(&moved).and_then(|e| e.hosts.clone()) == hosts(&["node-3"])
        })
    })
    .await;
    let report = result.expect("fetch");
    assert!(took < Duration::from_secs(5), "{:#?}", report.images);
    let e = expectation(&report, &added);
    assert_eq!(e.owner, "kubernetes pv pvc-new (claim shop/new-claim)");
    assert_eq!(e.hosts, hosts(&[]));
    assert_eq!(report.images.len(), 5);
    assert_eq!(
        [PVS, VAS, NODES].map(|p| api.counts(p).0).to_vec(),
        lists,
        "no list after the first"
    );
    for path in [PVS, VAS, NODES] {
        assert!(api.counts(path).1 >= 1, "{path} is watched");
    }
    let watch = api
        .requests()
        .into_iter()
        .find(|r| r.is_watch())
        .expect("a watch");
    assert_eq!(watch.param("allowWatchBookmarks"), Some("true"));
    assert_eq!(watch.param("timeoutSeconds"), Some("50"));
    assert!(watch.param("resourceVersion").is_some(), "{watch:?}");
}

#[tokio::test]
async fn kubernetes_watch_gone_lists_again() {
    let api = FakeApi::start(None, None).await;
    let dir = scratch("k8s-gone");
    let kubeconfig = write_kubeconfig(&dir, &api.base, "", "    token: abc\n");
    let source = kubernetes_source(&kubeconfig);
    check_kubernetes_report(&source.fetch().await.expect("first fetch"));
    assert_eq!(api.counts(NODES).0, 1);
    // Wait for the watch, then end it with 410 Gone; what happens
    // meanwhile is only in the new list.
    let _ = fetch_until(&source, TIMEOUT, |_| api.counts(NODES).1 >= 1).await;
    let node = api.object(NODES, "node-3");
    api.with_state(|s| {
        s.expire.insert(NODES);
        s.objects
            .retain(|(p, o)| !(*p == NODES && object_name(o) == "node-3"));
    });
    let node_3: IpAddr = "10.0.1.13".parse().expect("ip");
    let (result, took) = fetch_until(&source, Duration::from_secs(10), |r| {
        r.as_ref()
            .is_ok_and(|r| !r.host_addresses.contains_key(&node_3))
    })
    .await;
    let report = result.expect("recovered");
    assert!(!report.host_addresses.contains_key(&node_3), "{took:?}");
    assert_eq!(api.counts(NODES).0, 2, "listed again after 410");
    assert_eq!(api.counts(PVS).0, 2, "the other watches carry on");
    drop(node);
}

#[tokio::test]
async fn kubernetes_server_down_then_back() {
    let api = FakeApi::start(Some(server_tls(false)), Some("t")).await;
    let dir = scratch("k8s-down");
    let source = kubernetes_source(&token_kubeconfig(&dir, &api, "t"));
    check_kubernetes_report(&source.fetch().await.expect("first fetch"));
    let lists = api.counts(PVS).0;

    api.stop();
    let (result, took) = fetch_until(&source, Duration::from_secs(5), Result::is_err).await;
    let err = result.expect_err("down");
    assert!(matches!(err, SourceError::Unreachable { .. }), "{err}");
    assert!(took < Duration::from_secs(3), "{took:?}");

    api.restart().await;
    let (result, took) = fetch_until(&source, Duration::from_secs(20), Result::is_ok).await;
    check_kubernetes_report(&result.expect("back"));
    eprintln!("back after {took:?}");
    assert_eq!(api.counts(PVS).0, lists, "watches resume without a list");
}

#[tokio::test]
async fn kubernetes_unauthorized_then_back() {
    let api = FakeApi::start(Some(server_tls(false)), Some("t")).await;
    let dir = scratch("k8s-401");
    let source = kubernetes_source(&token_kubeconfig(&dir, &api, "t"));
    check_kubernetes_report(&source.fetch().await.expect("first fetch"));

    let _ = fetch_until(&source, TIMEOUT, |_| {
        [PVS, VAS, NODES].iter().all(|p| api.counts(p).1 >= 1)
    })
    .await;
    // The token is revoked; watches are cut and come back to a 401.
    api.with_state(|s| s.token = Some("other".to_string()));
    api.stop();
    api.restart().await;
    let (result, took) = fetch_until(&source, Duration::from_secs(5), |r| {
        matches!(r, Err(SourceError::Auth { .. }))
    })
    .await;
    let err = result.expect_err("401");
    assert!(
        matches!(err, SourceError::Auth { status: 401, .. }),
        "{err}"
    );
    assert!(took < Duration::from_secs(3), "{took:?}");

    api.with_state(|s| s.token = Some("t".to_string()));
    let (result, _) = fetch_until(&source, Duration::from_secs(20), Result::is_ok).await;
    check_kubernetes_report(&result.expect("back"));
}

#[tokio::test]
async fn kubernetes_garbage_and_missing_fields_are_bad_responses() {
    let dir = scratch("k8s-garbage");
    let api = FakeApi::start(None, None).await;
    api.with_state(|s| {
        for (p, o) in s.objects.iter_mut() {
            if *p == NODES && object_name(o) == "node-2" {
                o["status"]["addresses"][0]["address"] = json!("not-an-ip");
            }
        }
    });
    let kubeconfig = write_kubeconfig(&dir, &api.base, "", "    token: abc\n");
    let source = kubernetes_source(&kubeconfig);
    let err = source.fetch().await.expect_err("bad address");
    assert!(matches!(err, SourceError::BadResponse { .. }), "{err}");
    let text = err.to_string();
    assert!(text.contains("/api/v1/nodes"), "{text}");
    assert!(text.contains("node node-2"), "{text}");
    assert!(text.contains("\"not-an-ip\""), "{text}");

    // A ceph-csi PV without its pool, named with the field.
    let pv = api.object(PVS, "pvc-0a1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d");
    let mut broken = pv.clone();
    broken["spec"]["csi"]["volumeAttributes"]
        .as_object_mut()
        .expect("attributes")
        .remove("pool");
    api.apply(PVS, broken);
    let node = api.object(NODES, "node-2");
    api.apply(NODES, patched(node, &json!({"status": {"addresses": []}})));
    let (result, _) = fetch_until(&source, Duration::from_secs(5), |r| {
        r.as_ref()
            .is_err_and(|e| e.to_string().contains("persistentvolumes"))
    })
    .await;
    let text = result.expect_err("no pool").to_string();
    assert!(
        text.contains("pv pvc-0a1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d: missing field `spec.csi.volumeAttributes.pool`"),
        "{text}"
    );
    api.apply(PVS, pv);
    let (result, _) = fetch_until(&source, Duration::from_secs(5), Result::is_ok).await;
    result.expect("fixed");

    // The API answering garbage: the first lists fail, and a source that
    // was up goes down.
    api.with_state(|s| s.mode = ApiMode::Garbage);
    let err = kubernetes_fetch(&kubeconfig).await.expect_err("garbage");
    assert!(matches!(err, SourceError::BadResponse { .. }), "{err}");
    assert_eq!(err.metric_label(), "bad_response");
    api.stop();
    api.restart().await;
    let (result, took) = fetch_until(&source, Duration::from_secs(5), |r| {
        matches!(r, Err(SourceError::BadResponse { .. }))
    })
    .await;
    let err = result.expect_err("garbage watch");
    assert!(matches!(err, SourceError::BadResponse { .. }), "{err}");
    assert!(took < Duration::from_secs(3), "{took:?}");
    api.with_state(|s| s.mode = ApiMode::Normal);
    let (result, _) = fetch_until(&source, Duration::from_secs(20), Result::is_ok).await;
    result.expect("back");

    // Behind a proxy that answers 503 with a JSON body of its own (no
    // Status): the watches are cut and made again against it, and the
    // source goes down with what the proxy said, then comes back.
    api.with_state(|s| s.mode = ApiMode::Unavailable);
    api.stop();
    api.restart().await;
    let (result, _) = fetch_until(&source, Duration::from_secs(20), |r| {
        r.as_ref()
            .is_err_and(|e| e.to_string().contains("maintenance"))
    })
    .await;
    let err = result.expect_err("503");
    assert!(matches!(err, SourceError::BadResponse { .. }), "{err}");
    api.with_state(|s| s.mode = ApiMode::Normal);
    let (result, _) = fetch_until(&source, Duration::from_secs(40), Result::is_ok).await;
    result.expect("back after the 503s");
}

/// An HTTP CONNECT proxy on 127.0.0.1; records the targets asked for.
async fn connect_proxy() -> (String, Arc<Mutex<Vec<String>>>, tokio::task::JoinHandle<()>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("addr"));
    let targets = Arc::new(Mutex::new(Vec::new()));
    let seen = targets.clone();
    let task = tokio::spawn(async move {
        while let Ok((mut client, _)) = listener.accept().await {
            let seen = seen.clone();
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut byte = [0u8; 1];
                while !head.ends_with(b"\r\n\r\n") {
                    if client.read_exact(&mut byte).await.is_err() {
                        return;
                    }
                    head.push(byte[0]);
                }
                let head = String::from_utf8_lossy(&head).to_string();
                let mut words = head.split_whitespace();
                let (Some("CONNECT"), Some(target)) = (words.next(), words.next()) else {
                    let _ = client
                        .write_all(b"HTTP/1.1 405 Method Not Allowed\r\n\r\n")
                        .await;
                    return;
                };
                seen.lock().expect("lock").push(target.to_string());
                let Ok(mut upstream) = tokio::net::TcpStream::connect(target).await else {
                    let _ = client.write_all(b"HTTP/1.1 502 Bad Gateway\r\n\r\n").await;
                    return;
                };
                if client.write_all(b"HTTP/1.1 200 OK\r\n\r\n").await.is_ok() {
                    let _ = tokio::io::copy_bidirectional(&mut client, &mut upstream).await;
                }
            });
        }
    });
    (url, targets, task)
}

#[tokio::test]
async fn kubernetes_through_a_proxy() {
    let api = FakeApi::start(Some(server_tls(false)), Some("t")).await;
    let (proxy, targets, task) = connect_proxy().await;
    let dir = scratch("k8s-proxy");
    let kubeconfig = write_kubeconfig(
        &dir,
        &api.base,
        &format!(
            "    certificate-authority-data: {}\n    proxy-url: {proxy}\n",
            b64(&pki().join("ca.crt"))
        ),
        "    token: t\n",
    );
    check_kubernetes_report(&kubernetes_fetch(&kubeconfig).await.expect("via the proxy"));
    let targets = targets.lock().expect("lock").clone();
    let direct = format!("127.0.0.1:{}", api.port);
    assert!(!targets.is_empty(), "the proxy was used");
    assert!(targets.iter().all(|t| *t == direct), "{targets:?}");

    // A proxy that is not there: the source is unreachable.
    task.abort();
    let _ = task.await;
    let err = kubernetes_fetch(&kubeconfig).await.expect_err("no proxy");
    assert!(matches!(err, SourceError::Unreachable { .. }), "{err}");
}

#[tokio::test]
async fn kubernetes_in_cluster_rereads_the_rotated_token() {
    // kube reads a token file again once it is 50 s old (it caches it for
    // a minute and refreshes 10 s early), so this test takes a minute.
    let api = FakeApi::start(Some(server_tls(false)), Some("first")).await;
    let dir = scratch("k8s-in-cluster");
    std::fs::copy(pki().join("ca.crt"), dir.join("ca.crt")).expect("ca");
    // Written as the kubelet does, without a newline: kube, unlike
    // client-go, does not trim a token file.
    std::fs::write(dir.join("token"), "first").expect("token");
    let port = api.port.to_string();
    let source =
        KubernetesSource::in_cluster_at("127.0.0.1", &port, &dir, TIMEOUT).expect("source");
    check_kubernetes_report(&source.fetch().await.expect("first fetch"));
    let read = Instant::now();
    // The watches start right after the lists.
    let _ = fetch_until(&source, TIMEOUT, |_| {
        [PVS, VAS, NODES].iter().all(|p| api.counts(p).1 >= 1)
    })
    .await;

    std::fs::write(dir.join("token"), "second").expect("token");
    api.with_state(|s| s.token = Some("second".to_string()));
    // Open watches carry on; new requests need the new token.
    tokio::time::sleep(Duration::from_secs(51).saturating_sub(read.elapsed())).await;
    api.stop();
    api.restart().await;
    let (result, took) = fetch_until(&source, Duration::from_secs(15), |r| {
        r.is_ok() && api.counts(NODES).1 >= 2
    })
    .await;
    check_kubernetes_report(&result.expect("after rotation"));
    assert!(api.counts(NODES).1 >= 2, "watched again after {took:?}");
    let seen: BTreeSet<String> = api
        .requests()
        .iter()
        .filter_map(|r| r.bearer.clone())
        .collect();
    assert!(seen.contains("Bearer first"), "{seen:?}");
    assert!(seen.contains("Bearer second"), "{seen:?}");
}

#[tokio::test]
async fn kubernetes_token_file_in_a_kubeconfig() {
    let api = FakeApi::start(Some(server_tls(false)), Some("from-file")).await;
    let dir = scratch("k8s-token-file");
    std::fs::write(dir.join("token"), "from-file").expect("token");
    let kubeconfig = write_kubeconfig(
        &dir,
        &api.base,
        &format!(
            "    certificate-authority-data: {}\n",
            b64(&pki().join("ca.crt"))
        ),
        "    tokenFile: token\n",
    );
    check_kubernetes_report(&kubernetes_fetch(&kubeconfig).await.expect("fetch"));

    // kube sends a token file as it is: a newline is refused at start.
    std::fs::write(dir.join("token"), "from-file\n").expect("token");
    let err = KubernetesSource::from_kubeconfig(&kubeconfig, TIMEOUT)
        .expect_err("newline")
        .to_string();
    let token = dir.join("token").display().to_string();
    assert_config_error(&err, "kubernetes", &[&token, "newline"], "from-file");
}

#[test]
fn bad_kubeconfig_errors_name_the_problem() {
    let dir = scratch("k8s-bad");
    let check = |text: &str, want: &[&str]| {
        let path = dir.join("kubeconfig");
        std::fs::write(&path, text).expect("write");
        let err = KubernetesSource::from_kubeconfig(&path, TIMEOUT)
            .expect_err(text)
            .to_string();
        assert_config_error(&err, "kubernetes", want, "sekret");
    };
    let shown = dir.join("kubeconfig").display().to_string();
    let cluster = "clusters:\n- name: c\n  cluster: {server: 'https://127.0.0.1:6443'}\n";
    check("apiVersion: v1\nclusters: {}\n", &[&shown]);
    check(
        &format!("{cluster}contexts: []\n"),
        &[&shown, "current-context is not set"],
    );
    check(
        &format!("current-context: x\n{cluster}contexts: []\n"),
        &[&shown, "current-context \"x\" is not in contexts"],
    );
    check(
        "current-context: x\ncontexts:\n- {name: x, context: {cluster: gone, user: u}}\nusers:\n- {name: u, user: {}}\n",
        &[
            &shown,
            "cluster \"gone\" (of context \"x\") is not in clusters",
        ],
    );
    check(
        &format!(
            "current-context: x\n{cluster}contexts:\n- {{name: x, context: {{cluster: c, user: u}}}}\n"
        ),
        &[&shown, "user \"u\" (of context \"x\") is not in users"],
    );
    let ctx = "current-context: x\ncontexts:\n- {name: x, context: {cluster: c, user: u}}\n";
    check(
        &format!(
            "{ctx}clusters:\n- name: c\n  cluster: {{server: 'https://h', proxy-url: 'http://[bad'}}\nusers:\n- name: u\n  user: {{token: sekret}}\n"
        ),
        &[&shown, "cluster \"c\": proxy-url"],
    );
    check(
        &format!(
            "{ctx}clusters:\n- name: c\n  cluster: {{insecure-skip-tls-verify: true}}\nusers:\n- name: u\n  user: {{token: sekret}}\n"
        ),
        &[&shown, "cluster \"c\": server"],
    );
    check(
        &format!(
            "{ctx}{cluster}users:\n- name: u\n  user:\n    token: sekret\n    client-certificate-data: '!!notbase64'\n    client-key-data: '!!notbase64'\n"
        ),
        &[&shown, "user \"u\": client-certificate-data is not base64"],
    );
    check(
        &format!(
            "{ctx}{cluster}users:\n- name: u\n  user:\n    client-certificate: /nonexistent/c.crt\n    client-key: /nonexistent/c.key\n"
        ),
        &[&shown, "user \"u\": client-certificate /nonexistent/c.crt"],
    );
    check(
        &format!(
            "{ctx}clusters:\n- name: c\n  cluster: {{server: 'https://h', certificate-authority: ca.pem}}\nusers:\n- name: u\n  user: {{token: sekret}}\n"
        ),
        &[
            &shown,
            "cluster \"c\": certificate-authority",
            &dir.join("ca.pem").display().to_string(),
        ],
    );
    check(
        &format!("{ctx}{cluster}users:\n- name: u\n  user: {{tokenFile: /nonexistent/token}}\n"),
        &[&shown, "user \"u\"", "/nonexistent/token"],
    );
    let err = KubernetesSource::from_kubeconfig(&dir.join("absent"), TIMEOUT)
        .expect_err("absent")
        .to_string();
    assert!(
        err.contains(&dir.join("absent").display().to_string()),
        "{err}"
    );
}

// ------------------------------------------------------------------ file

#[tokio::test]
async fn file_source_rereads_the_file_and_names_bad_entries() {
    let dir = scratch("file");
    let path = dir.join("expected.yaml");
    std::fs::write(
        &path,
        "# expected attachments\nimages:\n  - image: volume-1234\n    pool: volumes\n    namespace: \"\"\n    hosts: [compute-1]\n    owner: CMDB asset 42\n",
    )
    .expect("write");
    let source = FileSource::new(&path);
    assert_eq!(source.name(), "file");
    let report = source.fetch().await.expect("fetch");
    let e = expectation(&report, &csi("volumes", "", "volume-1234"));
    assert_eq!(e.hosts, hosts(&["compute-1"]));
    assert_eq!(e.owner, "CMDB asset 42");

    std::fs::write(&path, "images:\n  - image: volume-5678\n    hosts: []\n").expect("write");
    let report = source.fetch().await.expect("fetch again");
    assert_eq!(report.images.len(), 1);
    assert_eq!(
        expectation(&report, &any_pool("volume-5678")).hosts,
        hosts(&[])
    );

    std::fs::write(
        &path,
        "images:\n  - image: a\n  - image: b\n    host: [x]\n",
    )
    .expect("write");
    let err = source.fetch().await.expect_err("unknown field").to_string();
    assert!(err.contains(&path.display().to_string()), "{err}");
    assert!(err.contains("images[1]") && err.contains("host"), "{err}");
}
