//! `--web.config.file`: TLS, mutual TLS and basic auth, checked with curl and
//! certificates made here with openssl. No cluster is needed: the exporter
//! serves `ceph_rbd_exporter_up 0` against a mon address where nothing
//! listens.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

const BIN: &str = env!("CARGO_BIN_EXE_ceph-rbd-exporter");

fn scratch(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("rbd-exporter-web-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn run(cmd: &str, args: &[&str], dir: &Path) {
    let out = Command::new(cmd)
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{cmd} {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A CA, a server certificate for 127.0.0.1 and a client certificate, plus a
/// rogue CA with its own client certificate.
fn make_pki(dir: &Path) {
    for ca in ["ca", "rogue"] {
        run(
            "openssl",
            &[
                "req",
                "-x509",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-days",
                "2",
                "-subj",
                &format!("/CN=test {ca}"),
                "-keyout",
                &format!("{ca}.key"),
                "-out",
                &format!("{ca}.crt"),
            ],
            dir,
        );
    }
    std::fs::write(
        dir.join("san.ext"),
        "subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth\n",
    )
    .unwrap();
    std::fs::write(dir.join("client.ext"), "extendedKeyUsage=clientAuth\n").unwrap();
    for (name, ca, ext) in [
        ("server", "ca", "san.ext"),
        ("client", "ca", "client.ext"),
        ("rogue-client", "rogue", "client.ext"),
    ] {
        run(
            "openssl",
            &[
                "req",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-subj",
                &format!("/CN={name}"),
                "-keyout",
                &format!("{name}.key"),
                "-out",
                &format!("{name}.csr"),
            ],
            dir,
        );
        run(
            "openssl",
            &[
                "x509",
                "-req",
                "-in",
                &format!("{name}.csr"),
                "-CA",
                &format!("{ca}.crt"),
                "-CAkey",
                &format!("{ca}.key"),
                "-CAcreateserial",
                "-days",
                "2",
                "-extfile",
                ext,
                "-out",
                &format!("{name}.crt"),
            ],
            dir,
        );
    }
}

/// A ceph.conf whose mon is unreachable, with a keyring that exists.
fn down_cluster_conf(dir: &Path) -> PathBuf {
    std::fs::write(
        dir.join("keyring"),
        "[client.admin]\n\tkey = AQBSdFhjAAAAABAAhSmw1uU1nqzOq6W3W6gG8A==\n",
    )
    .unwrap();
    let conf = dir.join("ceph.conf");
    std::fs::write(
        &conf,
        format!(
            "[global]\nmon host = v2:127.0.0.1:1\nkeyring = {}\nms bind ipv6 = false\nadmin socket = \nlog file = /dev/null\n",
            dir.join("keyring").display()
        ),
    )
    .unwrap();
    conf
}

struct Exporter {
    child: Child,
    addr: String,
    stderr: std::sync::Arc<std::sync::Mutex<String>>,
}

impl Exporter {
    fn start(dir: &Path, web_config: &Path) -> Exporter {
        let conf = down_cluster_conf(dir);
        let mut child = Command::new(BIN)
            .args([
                "--ceph.config",
                conf.to_str().unwrap(),
                "--ceph.op-timeout",
                "1s",
            ])
            .args([
                "--web.listen-address",
                "127.0.0.1:0",
                "--web.config.file",
                web_config.to_str().unwrap(),
            ])
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stderr = child.stderr.take().unwrap();
        let log = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
        let (tx, rx) = std::sync::mpsc::channel();
        let sink = log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if line.contains("serving metrics") {
                    let addr = line
                        .split("address=")
                        .nth(1)
                        .unwrap()
                        .split_whitespace()
                        .next()
                        .unwrap()
                        .to_string();
                    let _ = tx.send(addr);
                }
                sink.lock().unwrap().push_str(&line);
                sink.lock().unwrap().push('\n');
            }
        });
        let addr = rx
            .recv_timeout(Duration::from_secs(30))
            .expect("exporter did not start");
        Exporter {
            child,
            addr,
            stderr: log,
        }
    }

    /// curl's HTTP status for a request, or None when the connection or
    /// handshake failed.
    fn curl(&self, scheme: &str, dir: &Path, extra: &[&str]) -> Option<u16> {
        self.curl_path(scheme, "/metrics", dir, extra)
    }

    /// [`Exporter::curl`] for another path.
    fn curl_path(&self, scheme: &str, path: &str, dir: &Path, extra: &[&str]) -> Option<u16> {
        let url = format!("{scheme}://{}{path}", self.addr);
        let out = Command::new("curl")
            .args([
                "-s",
                "-o",
                "/dev/null",
                "-w",
                "%{http_code}",
                "--max-time",
                "10",
            ])
            .args(extra)
            .arg(&url)
            .current_dir(dir)
            .output()
            .unwrap();
        let code: u16 = String::from_utf8_lossy(&out.stdout)
            .trim()
            .parse()
            .unwrap_or(0);
        (out.status.success() && code != 0).then_some(code)
    }
}

impl Drop for Exporter {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn basic_auth_accepts_only_valid_credentials() {
    let dir = scratch("basic");
    let hash = bcrypt::hash("s3cret-pass", 6).unwrap();
    let web = dir.join("web.yml");
    std::fs::write(&web, format!("basic_auth_users:\n  prometheus: {hash}\n")).unwrap();
    let e = Exporter::start(&dir, &web);
    assert_eq!(e.curl("http", &dir, &[]), Some(401));
    assert_eq!(e.curl("http", &dir, &["-u", "prometheus:wrong"]), Some(401));
    assert_eq!(
        e.curl("http", &dir, &["-u", "nobody:s3cret-pass"]),
        Some(401)
    );
    assert_eq!(
        e.curl("http", &dir, &["-u", "prometheus:s3cret-pass"]),
        Some(200)
    );
    assert_eq!(
        e.curl("http", &dir, &["-u", "prometheus:s3cret-pass"]),
        Some(200)
    );
    // The pages sit behind the same basic auth (the cluster of this test is
    // down, so the image pages have no sample: 503 once authorised).
    for (path, authorised) in [
        ("/", 200),
        ("/orphans", 503),
        ("/images/volumes/v", 503),
        ("/images?pool=volumes&image=v&format=json", 503),
        ("/image-ids/volumes/1234", 503),
        ("/assets/pages.js", 200),
        ("/healthz", 200),
    ] {
        assert_eq!(e.curl_path("http", path, &dir, &[]), Some(401), "{path}");
        assert_eq!(
            e.curl_path("http", path, &dir, &["-u", "prometheus:wrong"]),
            Some(401),
            "{path}"
        );
        assert_eq!(
            e.curl_path("http", path, &dir, &["-u", "prometheus:s3cret-pass"]),
            Some(authorised),
            "{path}"
        );
    }
    let log = e.stderr.lock().unwrap().clone();
    assert!(
        !log.contains("s3cret") && !log.contains(&hash) && !log.contains("AQBSdFhj"),
        "secrets in the log:\n{log}"
    );
}

#[test]
fn tls_serves_https_with_the_configured_certificate() {
    let dir = scratch("tls");
    make_pki(&dir);
    let web = dir.join("web.yml");
    // Relative paths: resolved against the config file's directory.
    std::fs::write(
        &web,
        "tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n",
    )
    .unwrap();
    let e = Exporter::start(&dir, &web);
    assert_eq!(e.curl("https", &dir, &["--cacert", "ca.crt"]), Some(200));
    assert_eq!(
        e.curl("https", &dir, &[]),
        None,
        "an unknown CA must fail verification"
    );
    assert_eq!(e.curl("https", &dir, &["--cacert", "rogue.crt"]), None);
    // The pages are served on the same TLS listener, and only there.
    for path in ["/", "/assets/pages.css"] {
        assert_eq!(
            e.curl_path("https", path, &dir, &["--cacert", "ca.crt"]),
            Some(200),
            "{path}"
        );
        assert_ne!(e.curl_path("http", path, &dir, &[]), Some(200), "{path}");
    }
    assert_ne!(
        e.curl("http", &dir, &[]),
        Some(200),
        "plain HTTP must not be served on the TLS port"
    );
    assert_eq!(
        e.curl("https", &dir, &["--cacert", "ca.crt", "--tls-max", "1.1"]),
        None,
        "TLS 1.1 must be refused"
    );
}

#[test]
fn mutual_tls_requires_a_client_certificate_from_the_ca() {
    let dir = scratch("mtls");
    make_pki(&dir);
    let hash = bcrypt::hash("pw", 4).unwrap();
    let web = dir.join("web.yml");
    std::fs::write(
        &web,
        format!(
            "tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n  client_auth_type: RequireAndVerifyClientCert\n  client_ca_file: ca.crt\n  min_version: TLS12\nbasic_auth_users:\n  scraper: {hash}\n"
        ),
    )
    .unwrap();
    let e = Exporter::start(&dir, &web);
    let ca = ["--cacert", "ca.crt"];
    assert_eq!(e.curl("https", &dir, &ca), None, "no client certificate");
    let rogue = [
        "--cacert",
        "ca.crt",
        "--cert",
        "rogue-client.crt",
        "--key",
        "rogue-client.key",
    ];
    assert_eq!(
        e.curl("https", &dir, &rogue),
        None,
        "client certificate from another CA"
    );
    let good = [
        "--cacert",
        "ca.crt",
        "--cert",
        "client.crt",
        "--key",
        "client.key",
    ];
    assert_eq!(
        e.curl("https", &dir, &good),
        Some(401),
        "certificate alone is not enough with basic auth on"
    );
    let mut with_auth = good.to_vec();
    with_auth.extend(["-u", "scraper:pw"]);
    assert_eq!(e.curl("https", &dir, &with_auth), Some(200));
}

#[test]
fn bad_web_config_is_one_line_and_exit_2() {
    let dir = scratch("bad");
    let conf = down_cluster_conf(&dir);
    for (text, expect) in [
        ("basic_auth_users:\n  bob: plaintext\n", "bcrypt"),
        (
            "tls_server_config:\n  cert_file: missing.crt\n  key_file: missing.key\n",
            "missing.crt",
        ),
        (
            "tls_server_config:\n  cert_file: x\n  key_file: y\n  client_auth_type: Sometimes\n",
            "x",
        ),
        ("nonsense_key: 1\n", "unknown field"),
    ] {
        let web = dir.join("web.yml");
        std::fs::write(&web, text).unwrap();
        let out = Command::new(BIN)
            .args([
                "--ceph.config",
                conf.to_str().unwrap(),
                "--web.listen-address",
                "127.0.0.1:0",
            ])
            .args(["--web.config.file", web.to_str().unwrap()])
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{text}: {err}");
        assert!(
            err.contains("--web.config.file") && err.contains(expect),
            "{text}: {err}"
        );
        assert_eq!(err.trim().lines().count(), 1, "{err}");
    }
}

#[test]
fn bad_web_config_errors_name_the_file_the_entry_and_the_field() {
    use ceph_rbd_exporter::webconfig::WebConfig;
    let dir = scratch("table");
    make_pki(&dir);
    std::fs::write(dir.join("junk.pem"), "not a certificate\n").unwrap();
    let web = dir.join("web.yml");
    let tls = |extra: &str| {
        format!("tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n{extra}")
    };
    // Each bad file, and what its error must say after the file: the
    // entry and the field.
    let cases: Vec<(String, &[&str])> = vec![
        (": : :\n".into(), &["while parsing"]),
        ("surprise: 1\n".into(), &["unknown field `surprise`"]),
        (
            "basic_auth_users: [bob]\n".into(),
            &["basic_auth_users: invalid type"],
        ),
        (
            "basic_auth_users:\n  bob: plaintext\n".into(),
            &[
                "basic_auth_users.bob: the password is not a bcrypt hash",
                "htpasswd",
            ],
        ),
        (
            "tls_server_config: [x]\n".into(),
            &["tls_server_config: invalid type"],
        ),
        (
            "tls_server_config:\n  key_file: server.key\n".into(),
            &["tls_server_config.cert_file is missing"],
        ),
        (
            "tls_server_config:\n  cert_file: server.crt\n".into(),
            &["tls_server_config.key_file is missing"],
        ),
        (
            tls("  bogus: 1\n"),
            &["tls_server_config: unknown field `bogus`"],
        ),
        (
            "tls_server_config:\n  cert_file: nope.crt\n  key_file: server.key\n".into(),
            &["tls_server_config.cert_file", "nope.crt: cannot read"],
        ),
        (
            "tls_server_config:\n  cert_file: junk.pem\n  key_file: server.key\n".into(),
            &[
                "tls_server_config.cert_file",
                "junk.pem: holds no PEM certificate",
            ],
        ),
        (
            "tls_server_config:\n  cert_file: server.crt\n  key_file: nope.key\n".into(),
            &["tls_server_config.key_file", "nope.key: cannot read"],
        ),
        (
            "tls_server_config:\n  cert_file: server.crt\n  key_file: server.crt\n".into(),
            &["tls_server_config.key_file", "holds no PEM private key"],
        ),
        (
            "tls_server_config:\n  cert_file: server.crt\n  key_file: client.key\n".into(),
            &["tls_server_config.cert_file and key_file do not fit"],
        ),
        (
            tls("  min_version: TLS10\n"),
            &["tls_server_config.min_version TLS10 is not supported"],
        ),
        (
            tls("  max_version: TLS99\n"),
            &["tls_server_config.max_version \"TLS99\" is not a TLS version"],
        ),
        (
            tls("  min_version: TLS13\n  max_version: TLS12\n"),
            &["tls_server_config.min_version is above tls_server_config.max_version"],
        ),
        (
            tls("  client_auth_type: Sometimes\n"),
            &["tls_server_config.client_auth_type \"Sometimes\" is unknown"],
        ),
        (
            tls("  client_auth_type: RequireAndVerifyClientCert\n"),
            &[
                "tls_server_config.client_auth_type RequireAndVerifyClientCert needs tls_server_config.client_ca_file",
            ],
        ),
        (
            tls("  client_auth_type: RequireAnyClientCert\n"),
            &["tls_server_config.client_auth_type RequireAnyClientCert needs"],
        ),
        (
            tls("  client_ca_file: nope-ca.crt\n"),
            &[
                "tls_server_config.client_ca_file",
                "nope-ca.crt: cannot read",
            ],
        ),
        (
            tls("  client_ca_file: junk.pem\n"),
            &[
                "tls_server_config.client_ca_file",
                "holds no PEM certificate",
            ],
        ),
    ];
    for (text, want) in &cases {
        std::fs::write(&web, text).unwrap();
        let err = WebConfig::load(&web).expect_err(text).to_string();
        let file = format!("--web.config.file {}: ", web.display());
        assert!(err.contains(&file), "{text}: {err}");
        for w in *want {
            assert!(err.contains(w), "{text}: {err:?} lacks {w:?}");
        }
    }
}
