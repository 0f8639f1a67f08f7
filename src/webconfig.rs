//! `--web.config.file`: TLS, mutual TLS and basic auth, in the format of the
//! Prometheus exporter-toolkit, so the same file works for every exporter on
//! a host:
//!
//! ```yaml
//! tls_server_config:
//!   cert_file: server.crt
//!   key_file: server.key
//!   client_auth_type: RequireAndVerifyClientCert
//!   client_ca_file: ca.crt
//!   min_version: TLS12
//! basic_auth_users:
//!   prometheus: $2y$10$...   # bcrypt
//! ```
//!
//! Relative paths are relative to the file's directory. Secrets are never
//! logged.

use crate::error::Error;
use base64::Engine as _;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use serde::Deserialize;
use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    tls_server_config: Option<TlsFile>,
    #[serde(default)]
    basic_auth_users: BTreeMap<String, String>,
    // Accepted for compatibility; HTTP/2 is not served.
    #[allow(dead_code)]
    http_server_config: Option<serde_norway::Value>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct TlsFile {
    cert_file: Option<String>,
    key_file: Option<String>,
    client_auth_type: Option<String>,
    client_ca_file: Option<String>,
    min_version: Option<String>,
    max_version: Option<String>,
    // Accepted for compatibility with exporter-toolkit files; rustls picks
    // safe suites and curves itself.
    #[allow(dead_code)]
    cipher_suites: Option<serde_norway::Value>,
    #[allow(dead_code)]
    curve_preferences: Option<serde_norway::Value>,
    #[allow(dead_code)]
    prefer_server_cipher_suites: Option<bool>,
}

/// A loaded web configuration.
#[derive(Clone, Default)]
pub struct WebConfig {
    /// TLS settings, when HTTPS is on.
    pub tls: Option<Arc<rustls::ServerConfig>>,
    /// Basic-auth users and their bcrypt hashes; empty means no auth.
    users: Arc<BTreeMap<String, String>>,
    /// `Authorization` values already checked, so bcrypt (slow on purpose)
    /// runs once per credential, not once per scrape.
    verified: Arc<Mutex<HashSet<String>>>,
}

impl std::fmt::Debug for WebConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebConfig")
            .field("tls", &self.tls.is_some())
            .field("users", &self.users.keys().collect::<Vec<_>>())
            .finish()
    }
}

fn bad(path: &Path, what: impl std::fmt::Display) -> Error {
    Error::Config(format!("--web.config.file {}: {what}", path.display()))
}

impl WebConfig {
    /// Reads and checks the file: certificates parse, the key matches, the
    /// hashes are bcrypt.
    pub fn load(path: &Path) -> Result<WebConfig, Error> {
        let text =
            std::fs::read_to_string(path).map_err(|e| bad(path, format!("cannot read: {e}")))?;
        let file: File = if text.trim().is_empty() {
            File::default()
        } else {
            serde_norway::from_str(&text).map_err(|e| bad(path, e))?
        };
        let base = path.parent().unwrap_or(Path::new("."));
        for (user, hash) in &file.basic_auth_users {
            if hash.parse::<bcrypt::HashParts>().is_err() {
                return Err(bad(
                    path,
                    format!(
                        "basic_auth_users.{user}: the password is not a bcrypt hash (make one with `htpasswd -nBC 10 \"\" | tr -d ':\\n'`)"
                    ),
                ));
            }
        }
        let tls = match file.tls_server_config {
            None => None,
            Some(t) => Some(Arc::new(tls_config(path, base, t)?)),
        };
        Ok(WebConfig {
            tls,
            users: Arc::new(file.basic_auth_users),
            verified: Arc::default(),
        })
    }

    /// True when requests must carry basic-auth credentials.
    pub fn requires_auth(&self) -> bool {
        !self.users.is_empty()
    }

    /// The fast path: no auth configured, or credentials verified before.
    pub fn known_good(&self, header: Option<&str>) -> bool {
        self.users.is_empty()
            || header.is_some_and(|v| {
                self.verified
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .contains(v)
            })
    }

    /// Checks an `Authorization` header value (bcrypt: slow on purpose, so
    /// call it off the async threads).
    pub fn authorized(&self, header: Option<&str>) -> bool {
        if self.known_good(header) {
            return true;
        }
        let Some(value) = header else { return false };
        let Some((user, password)) = decode_basic(value) else {
            return false;
        };
        let ok = self
            .users
            .get(&user)
            .is_some_and(|hash| bcrypt::verify(&password, hash).unwrap_or(false));
        if ok {
            let mut cache = self.verified.lock().unwrap_or_else(|e| e.into_inner());
            // Bounded: a handful of scrapers use a handful of credentials.
            if cache.len() > 64 {
                cache.clear();
            }
            cache.insert(value.to_string());
        }
        ok
    }
}

/// `Basic dXNlcjpwYXNz` to ("user", "pass").
fn decode_basic(value: &str) -> Option<(String, String)> {
    let encoded = value
        .strip_prefix("Basic ")
        .or_else(|| value.strip_prefix("basic "))?;
    let bytes = base64_decode(encoded.trim())?;
    let text = String::from_utf8(bytes).ok()?;
    let (user, password) = text.split_once(':')?;
    Some((user.to_string(), password.to_string()))
}

/// Standard alphabet, no padding (it is stripped first), and non-zero
/// trailing bits accepted: lenient the way Basic credentials are in practice.
const BASIC_BASE64: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    GeneralPurposeConfig::new()
        .with_decode_padding_mode(DecodePaddingMode::RequireNone)
        .with_decode_allow_trailing_bits(true),
);

/// Decodes the credentials of a Basic `Authorization` value: any number of
/// trailing `=` is ignored; other characters outside the standard alphabet,
/// an impossible length, or more than 8192 characters give `None`.
fn base64_decode(s: &str) -> Option<Vec<u8>> {
    let s = s.trim_end_matches('=');
    if s.len() > 8192 {
        return None;
    }
    BASIC_BASE64.decode(s).ok()
}

fn resolve(base: &Path, p: &str) -> PathBuf {
    let p = Path::new(p);
    if p.is_absolute() {
        p.to_path_buf()
    } else {
        base.join(p)
    }
}

/// The certificates in the PEM file of setting `field`; none is an error.
fn read_certs(
    path: &Path,
    base: &Path,
    field: &str,
    file: &str,
) -> Result<Vec<CertificateDer<'static>>, Error> {
    let full = resolve(base, file);
    let at = format!("tls_server_config.{field} {}", full.display());
    let pem = std::fs::read(&full).map_err(|e| bad(path, format!("{at}: cannot read: {e}")))?;
    let certs: Vec<_> = rustls_pemfile::certs(&mut pem.as_slice())
        .collect::<Result<_, _>>()
        .map_err(|e| bad(path, format!("{at}: {e}")))?;
    if certs.is_empty() {
        return Err(bad(path, format!("{at}: holds no PEM certificate")));
    }
    Ok(certs)
}

/// The private key in a PEM file.
fn read_key(path: &Path, base: &Path, file: &str) -> Result<PrivateKeyDer<'static>, Error> {
    let key_path = resolve(base, file);
    let at = format!("tls_server_config.key_file {}", key_path.display());
    let key_pem =
        std::fs::read(&key_path).map_err(|e| bad(path, format!("{at}: cannot read: {e}")))?;
    rustls_pemfile::private_key(&mut key_pem.as_slice())
        .map_err(|e| bad(path, format!("{at}: {e}")))?
        .ok_or_else(|| bad(path, format!("{at}: holds no PEM private key")))
}

fn tls_config(path: &Path, base: &Path, t: TlsFile) -> Result<rustls::ServerConfig, Error> {
    let cert_file = t
        .cert_file
        .ok_or_else(|| bad(path, "tls_server_config.cert_file is missing"))?;
    let key_file = t
        .key_file
        .ok_or_else(|| bad(path, "tls_server_config.key_file is missing"))?;
    let certs = read_certs(path, base, "cert_file", &cert_file)?;
    let key = read_key(path, base, &key_file)?;

    let versions = tls_versions(path, t.min_version.as_deref(), t.max_version.as_deref())?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&versions)
        .map_err(|e| {
            bad(
                path,
                format!("tls_server_config.min_version/max_version: {e}"),
            )
        })?;
    let auth_type = t.client_auth_type.as_deref().unwrap_or("NoClientCert");
    let ca_file = t.client_ca_file.as_deref();
    let builder = client_auth(path, base, builder, auth_type, ca_file, provider)?;
    let mut config = builder.with_single_cert(certs, key).map_err(|e| {
        bad(
            path,
            format!("tls_server_config.cert_file and key_file do not fit: {e}"),
        )
    })?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}

/// Client certificates as `client_auth_type` and `client_ca_file` ask.
fn client_auth(
    path: &Path,
    base: &Path,
    builder: rustls::ConfigBuilder<rustls::ServerConfig, rustls::WantsVerifier>,
    auth_type: &str,
    ca_file: Option<&str>,
    provider: Arc<rustls::crypto::CryptoProvider>,
) -> Result<rustls::ConfigBuilder<rustls::ServerConfig, rustls::server::WantsServerCert>, Error> {
    Ok(match auth_type {
        "NoClientCert" | "RequestClientCert" | "RequireAnyClientCert" if ca_file.is_none() => {
            if auth_type == "RequireAnyClientCert" {
                return Err(bad(
                    path,
                    "tls_server_config.client_auth_type RequireAnyClientCert needs tls_server_config.client_ca_file here",
                ));
            }
            builder.with_no_client_auth()
        }
        "RequireAndVerifyClientCert"
        | "VerifyClientCertIfGiven"
        | "RequireAnyClientCert"
        | "RequestClientCert"
        | "NoClientCert" => {
            let ca_file = ca_file.ok_or_else(|| {
                bad(
                    path,
                    format!(
                        "tls_server_config.client_auth_type {auth_type} needs tls_server_config.client_ca_file"
                    ),
                )
            })?;
            let mut roots = rustls::RootCertStore::empty();
            for c in read_certs(path, base, "client_ca_file", ca_file)? {
                roots
                    .add(c)
                    .map_err(|e| bad(path, format!("tls_server_config.client_ca_file: {e}")))?;
            }
            let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
                Arc::new(roots),
                provider,
            );
            let verifier = match auth_type {
                "RequireAndVerifyClientCert" | "RequireAnyClientCert" => verifier,
                _ => verifier.allow_unauthenticated(),
            }
            .build()
            .map_err(|e| bad(path, format!("tls_server_config.client_ca_file: {e}")))?;
            builder.with_client_cert_verifier(verifier)
        }
        other => {
            return Err(bad(
                path,
                format!(
                    "tls_server_config.client_auth_type {other:?} is unknown (use NoClientCert, RequestClientCert, RequireAnyClientCert, VerifyClientCertIfGiven or RequireAndVerifyClientCert)"
                ),
            ));
        }
    })
}

fn tls_versions(
    path: &Path,
    min: Option<&str>,
    max: Option<&str>,
) -> Result<Vec<&'static rustls::SupportedProtocolVersion>, Error> {
    let rank = |field: &str, v: &str| -> Result<u8, Error> {
        match v {
            "TLS10" | "TLS11" => Err(bad(
                path,
                format!("tls_server_config.{field} {v} is not supported; use TLS12 or TLS13"),
            )),
            "TLS12" => Ok(2),
            "TLS13" => Ok(3),
            other => Err(bad(
                path,
                format!(
                    "tls_server_config.{field} {other:?} is not a TLS version (use TLS12 or TLS13)"
                ),
            )),
        }
    };
    let lo = min
        .map(|v| rank("min_version", v))
        .transpose()?
        .unwrap_or(2);
    let hi = max
        .map(|v| rank("max_version", v))
        .transpose()?
        .unwrap_or(3);
    if lo > hi {
        return Err(bad(
            path,
            "tls_server_config.min_version is above tls_server_config.max_version",
        ));
    }
    let mut out = Vec::new();
    if lo <= 2 && hi >= 2 {
        out.push(&rustls::version::TLS12);
    }
    if hi >= 3 {
        out.push(&rustls::version::TLS13);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
        let p = dir.join(name);
        std::fs::write(&p, text).unwrap();
        p
    }

    fn tmp(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("webconfig-unit-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn base64_round_trips_basic_credentials() {
        assert_eq!(
            decode_basic("Basic YWxpY2U6c2VjcmV0"),
            Some(("alice".into(), "secret".into()))
        );
        assert_eq!(
            decode_basic("Basic YTpiOmM="),
            Some(("a".into(), "b:c".into()))
        );
        assert_eq!(decode_basic("Bearer x"), None);
        assert_eq!(decode_basic("Basic !!!!"), None);
        assert_eq!(decode_basic("Basic QQ"), None); // "A" with no colon
    }

    #[test]
    fn base64_edges_padding_invalid_characters_and_length() {
        let ok = |s: &str| base64_decode(s).map(|b| String::from_utf8(b).unwrap());
        // Padding: canonical, missing, or any number of trailing `=`.
        assert_eq!(ok("YWI="), Some("ab".into()));
        assert_eq!(ok("YWI"), Some("ab".into()));
        assert_eq!(ok("YWI=="), Some("ab".into()));
        assert_eq!(ok("YQ"), Some("a".into()));
        assert_eq!(ok("YQ="), Some("a".into()));
        assert_eq!(ok("YQ==="), Some("a".into()));
        assert_eq!(ok(""), Some(String::new()));
        assert_eq!(ok("===="), Some(String::new()));
        // Non-zero trailing bits are tolerated ("QR" and "QQ" are both "A").
        assert_eq!(ok("QR"), Some("A".into()));
        // A lone symbol after full quads cannot be decoded.
        assert_eq!(base64_decode("YWJjZ"), None);
        assert_eq!(base64_decode("Y"), None);
        // `=` inside, the URL-safe alphabet, blanks and non-ASCII are invalid.
        assert_eq!(base64_decode("YQ==YQ=="), None);
        assert_eq!(base64_decode("YW=j"), None);
        assert_eq!(base64_decode("a-_b"), None);
        assert_eq!(base64_decode("YW Jj"), None);
        assert_eq!(base64_decode("YWJ\u{e9}"), None);
        assert_eq!(decode_basic("Basic YW\njZDpl"), None);
        // At most 8192 characters before the padding.
        let long = "QUJD".repeat(2048);
        assert_eq!(base64_decode(&long).map(|b| b.len()), Some(6144));
        assert_eq!(
            base64_decode(&format!("{long}==")).map(|b| b.len()),
            Some(6144)
        );
        assert_eq!(base64_decode(&format!("{long}QQ")), None);
        // Both `Basic ` spellings; blanks around the token are trimmed.
        assert_eq!(decode_basic("basic  YTpi "), Some(("a".into(), "b".into())));
        assert_eq!(decode_basic("BASIC YTpi"), None);
        // Credentials must be UTF-8.
        assert_eq!(decode_basic("Basic /w=="), None);
    }

    #[test]
    fn basic_auth_checks_bcrypt_and_caches_successes() {
        let d = tmp("auth");
        let hash = bcrypt::hash("secret", 4).unwrap();
        let p = write(
            &d,
            "web.yml",
            &format!("basic_auth_users:\n  alice: {hash}\n"),
        );
        let c = WebConfig::load(&p).unwrap();
        assert!(c.requires_auth());
        assert!(c.authorized(Some("Basic YWxpY2U6c2VjcmV0")));
        assert!(c.authorized(Some("Basic YWxpY2U6c2VjcmV0")));
        assert!(!c.authorized(Some("Basic YWxpY2U6d3Jvbmc="))); // alice:wrong
        assert!(!c.authorized(None));
        assert!(
            !format!("{c:?}").contains(&hash),
            "hashes must not be printed"
        );
    }

    #[test]
    fn bad_files_are_named_and_explained() {
        let d = tmp("bad");
        let err = |text: &str| {
            WebConfig::load(&write(&d, "web.yml", text))
                .unwrap_err()
                .to_string()
        };
        assert!(err("basic_auth_users:\n  bob: plaintext\n").contains("not a bcrypt hash"));
        assert!(
            err("tls_server_config:\n  cert_file: nope.crt\n  key_file: nope.key\n")
                .contains("nope.crt")
        );
        assert!(err("tls_server_config:\n  key_file: x\n").contains("cert_file"));
        assert!(err("surprise: 1\n").contains("unknown field"));
        assert!(err(": : :\n").contains("web.yml"));
        let missing = WebConfig::load(&d.join("absent.yml"))
            .unwrap_err()
            .to_string();
        assert!(missing.contains("absent.yml") && missing.contains("cannot read"));
        assert!(
            !WebConfig::load(&write(&d, "empty.yml", ""))
                .unwrap()
                .requires_auth()
        );
    }
}
