//! The `openstack` source: where Cinder, Nova and Glance say their RBD
//! images belong.
//!
//! Settings come from a `clouds.yaml` entry (with `secure.yaml` merged in),
//! found and read as openstacksdk does. The source authenticates against
//! Keystone v3 (password, token or application credential; a token-method
//! token lives no longer than the one it came from), takes the block-storage, compute and image endpoints from
//! the catalog, and keeps that token across fetches until shortly before it
//! expires (see [`reuse_for`]), or until a service answers it with a 401:
//! then it is renewed once and the request repeated once. Each fetch lists,
//! for all projects and every page:
//!
//! - Cinder volumes → `volume-<id>`: the hosts of their attachments;
//! - Nova servers → `<id>_disk`: their compute host, and the set of server
//!   ids (so disks of deleted servers can be told apart);
//! - Glance images → `<id>`: known, no opinion on hosts.
//!
//! Any failure fails the whole fetch: a partial list would make the images
//! it misses look abandoned. The token, password and secret never appear in
//! errors or logs.
//!
//! The cloud's `clouds.yaml` entry is read once, when the source is built:
//! the Keystone token URL, the request body (password, token or
//! application credential), the region, the endpoint interface and the TLS settings, each by its
//! own step, so a mistake is reported with the setting's path.

use super::http::{
    ClientIdentity, HttpClient, JsonResponse, TlsOptions, read_pem_file, redact_url,
};
use super::{AttachmentReport, AttachmentSource, BoxFuture, Expectation, ImageRef, SourceError};
use serde_json::{Value, json};
use serde_norway::{Mapping, Value as Yaml};
use std::collections::BTreeSet;
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use tokio::sync::Mutex;

const NAME: &str = "openstack";

/// Catalog types for the block-storage API, most preferred first.
const VOLUME_TYPES: [&str; 3] = ["volumev3", "block-storage", "volumev2"];

/// Nova statuses during which a server's disk is legitimately open on a
/// second host (migration, resize): no opinion then, rather than a false
/// page.
const NOVA_MOVING: [&str; 4] = ["MIGRATING", "RESIZE", "VERIFY_RESIZE", "REVERT_RESIZE"];

/// Glance page size; Glance caps it at its `api_limit_max` (1000 by default).
const GLANCE_PAGE: u32 = 1000;

/// Most pages followed in one listing, so a server that keeps answering
/// `next` cannot keep a fetch busy forever (1000 per page: 10 million items).
const MAX_PAGES: usize = 10_000;

/// A token is renewed this long before Keystone says it expires, so that a
/// fetch that starts just before never carries an expired one (a fetch takes
/// at most a few request timeouts); tokens living under twice this long are
/// renewed half-way instead.
const RENEW_MARGIN: Duration = Duration::from_secs(5 * 60);

/// How long a token is reused when Keystone gives no `expires_at` it can
/// read (v3 always does; a proxy might not): short next to Keystone's
/// default lifetime (1 hour), and a shorter real lifetime costs only a 401
/// and a renewal.
const UNKNOWN_EXPIRY_REUSE: Duration = Duration::from_secs(5 * 60);

/// How long a token that arrives `now` (Unix seconds) may be reused, from
/// its `token` object: until [`RENEW_MARGIN`] before `expires_at`, or until
/// half its lifetime for short-lived tokens. The lifetime is `expires_at -
/// issued_at`, both on Keystone's clock, so an exporter whose clock is off
/// still renews in time; without `issued_at`, `now` stands in. Without a
/// readable `expires_at`, [`UNKNOWN_EXPIRY_REUSE`].
fn reuse_for(token: &Value, now: f64) -> Duration {
    let stamp = |key: &str| token[key].as_str().and_then(crate::clock::parse_rfc3339);
    let Some(expires) = stamp("expires_at") else {
        return UNKNOWN_EXPIRY_REUSE;
    };
    let issued = stamp("issued_at").filter(|&i| i <= expires).unwrap_or(now);
    let lifetime = (expires - issued).max(0.0);
    let margin = RENEW_MARGIN.as_secs_f64().min(lifetime / 2.0);
    Duration::try_from_secs_f64(lifetime - margin).unwrap_or(Duration::ZERO)
}

/// A configuration error of this source.
fn config(message: impl Into<String>) -> SourceError {
    SourceError::Config {
        source_name: NAME,
        message: message.into(),
    }
}

/// Directories openstacksdk searches for `clouds.yaml` and `secure.yaml`,
/// in its order (`CONFIG_SEARCH_PATH` of its `config/loader.py`): the
/// working directory, `$XDG_CONFIG_HOME/openstack`, `~/.config/openstack`,
/// `$XDG_CONFIG_DIRS/openstack` (`/etc/xdg/openstack`) and
/// `/etc/openstack`.
fn search_dirs(env: &dyn Fn(&str) -> Option<OsString>, cwd: &Path) -> Vec<PathBuf> {
    let mut dirs = vec![cwd.to_path_buf()];
    let home = env("HOME").filter(|h| !h.is_empty()).map(PathBuf::from);
    if let Some(xdg) = env("XDG_CONFIG_HOME").filter(|x| !x.is_empty()) {
        dirs.push(PathBuf::from(xdg).join("openstack"));
    }
    if let Some(home) = &home {
        dirs.push(home.join(".config").join("openstack"));
    }
    // platformdirs' site directory: each of `$XDG_CONFIG_DIRS`, else
    // /etc/xdg.
    let site = env("XDG_CONFIG_DIRS")
        .and_then(|d| d.into_string().ok())
        .filter(|d| !d.trim().is_empty())
        .unwrap_or_else(|| "/etc/xdg".to_string());
    for dir in site.split(':').filter(|d| !d.is_empty()) {
        dirs.push(PathBuf::from(dir).join("openstack"));
    }
    dirs.push(PathBuf::from("/etc/openstack"));
    let mut seen = BTreeSet::new();
    dirs.retain(|d| seen.insert(d.clone()));
    dirs
}

/// The files openstacksdk would try for `<stem>.{yaml,yml,json}`, the
/// file named by `override_var` first.
fn candidates(
    env: &dyn Fn(&str) -> Option<OsString>,
    cwd: &Path,
    override_var: &str,
    stem: &str,
) -> Vec<PathBuf> {
    let mut out = Vec::new();
    if let Some(file) = env(override_var).filter(|f| !f.is_empty()) {
        out.push(PathBuf::from(file));
    }
    for dir in search_dirs(env, cwd) {
        for ext in ["yaml", "yml", "json"] {
            out.push(dir.join(format!("{stem}.{ext}")));
        }
    }
    out
}

/// Where openstacksdk looks for `clouds.yaml`, first match wins:
/// `$OS_CLIENT_CONFIG_FILE`, then `clouds.{yaml,yml,json}` in the working
/// directory, `$XDG_CONFIG_HOME/openstack` (or `~/.config/openstack`),
/// `/etc/xdg/openstack` and `/etc/openstack`. `env` reads an environment
/// variable (tests pass their own).
pub fn clouds_yaml_candidates(env: &dyn Fn(&str) -> Option<OsString>, cwd: &Path) -> Vec<PathBuf> {
    candidates(env, cwd, "OS_CLIENT_CONFIG_FILE", "clouds")
}

/// The first existing [`clouds_yaml_candidates`] entry, or an error that
/// lists where it looked.
pub fn find_clouds_yaml(
    env: &dyn Fn(&str) -> Option<OsString>,
    cwd: &Path,
) -> Result<PathBuf, SourceError> {
    let all = clouds_yaml_candidates(env, cwd);
    all.iter().find(|p| p.is_file()).cloned().ok_or_else(|| {
        let looked: Vec<String> = all.iter().map(|p| p.display().to_string()).collect();
        config(format!(
            "no clouds.yaml found (looked in {})",
            looked.join(", ")
        ))
    })
}

/// The `clouds.yaml` to read and the `secure.yaml` merged into it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CloudsFiles {
    /// The `clouds.yaml` (or `.yml`, `.json`).
    pub clouds: PathBuf,
    /// The `secure.yaml` whose settings override it, if one was found.
    pub secure: Option<PathBuf>,
}

/// The files openstacksdk would read: `clouds_file` (given by flag, like
/// `$OS_CLIENT_CONFIG_FILE`) or the first existing
/// [`clouds_yaml_candidates`] entry, and the first existing `secure.yaml`
/// found the same way (`$OS_CLIENT_SECURE_FILE` first). openstacksdk merges
/// a secure.yaml into whichever clouds.yaml it reads, so this does too.
pub fn find_clouds_files(
    env: &dyn Fn(&str) -> Option<OsString>,
    cwd: &Path,
    clouds_file: Option<&Path>,
) -> Result<CloudsFiles, SourceError> {
    let clouds = match clouds_file {
        Some(path) => path.to_path_buf(),
        None => find_clouds_yaml(env, cwd)?,
    };
    let secure = candidates(env, cwd, "OS_CLIENT_SECURE_FILE", "secure")
        .into_iter()
        .find(|p| p.is_file());
    Ok(CloudsFiles { clouds, secure })
}

impl CloudsFiles {
    /// Both files read and merged, and how errors name them.
    fn load(&self) -> Result<(Yaml, String), SourceError> {
        let mut doc = read_yaml(&self.clouds)?;
        let mut origin = self.clouds.display().to_string();
        if let Some(secure) = &self.secure {
            match read_yaml(secure)? {
                // openstacksdk skips an empty secure.yaml.
                Yaml::Null => {}
                over @ Yaml::Mapping(_) => {
                    if doc.is_null() {
                        doc = Yaml::Mapping(Mapping::new());
                    }
                    merge(&mut doc, over);
                    origin = format!("{origin} (merged with {})", secure.display());
                }
                _ => {
                    return Err(config(format!(
                        "{}: must be a mapping with a clouds: entry",
                        secure.display()
                    )));
                }
            }
        }
        Ok((doc, origin))
    }
}

/// Merges `over` into `base`, recursing into mappings (secure.yaml over
/// clouds.yaml, as openstacksdk does).
fn merge(base: &mut Yaml, over: Yaml) {
    match (base, over) {
        (Yaml::Mapping(b), Yaml::Mapping(o)) => {
            for (k, v) in o {
                match b.get_mut(&k) {
                    Some(existing) => merge(existing, v),
                    None => {
                        b.insert(k, v);
                    }
                }
            }
        }
        (b, o) => *b = o,
    }
}

/// Reads and parses a YAML file; errors name the path.
fn read_yaml(path: &Path) -> Result<Yaml, SourceError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| config(format!("{}: cannot read: {e}", path.display())))?;
    serde_norway::from_str(&text).map_err(|e| config(format!("{}: {e}", path.display())))
}

/// One `clouds.<name>` entry, with the path for error messages.
struct CloudEntry<'a> {
    /// The entry's settings.
    map: &'a Mapping,
    /// `clouds.yaml path: clouds.<name>` for error messages.
    origin: String,
}

impl CloudEntry<'_> {
    /// A scalar setting as text (YAML may have made `project_id: 1234` a
    /// number). `section` is `None` for the entry itself, `Some("auth")`
    /// for its `auth` mapping.
    fn text(&self, section: Option<&str>, key: &str) -> Result<Option<String>, SourceError> {
        let map = match section {
            None => self.map,
            Some(s) => match self.map.get(s) {
                None | Some(Yaml::Null) => return Ok(None),
                Some(Yaml::Mapping(m)) => m,
                Some(_) => return Err(config(format!("{}.{s} must be a mapping", self.origin))),
            },
        };
        let field = match section {
            None => key.to_string(),
            Some(s) => format!("{s}.{key}"),
        };
        match map.get(key) {
            None | Some(Yaml::Null) => Ok(None),
            Some(Yaml::String(s)) if s.is_empty() => Ok(None),
            Some(Yaml::String(s)) => Ok(Some(s.clone())),
            Some(Yaml::Number(n)) => Ok(Some(n.to_string())),
            Some(Yaml::Bool(b)) => Ok(Some(b.to_string())),
            Some(_) => Err(config(format!("{}.{field} must be a string", self.origin))),
        }
    }

    /// An `auth.<key>` setting as text. The settings openstacksdk moves
    /// into `auth` (see [`spellings`]) may also sit on the entry itself or
    /// carry an old name; as there, the last spelling set wins, and the
    /// entry's own level wins over `auth`.
    fn auth(&self, key: &str) -> Result<Option<String>, SourceError> {
        let Some(spellings) = spellings(key) else {
            return self.text(Some("auth"), key);
        };
        let mut found = None;
        for spelling in spellings {
            if let Some(v) = self.text(Some("auth"), spelling)? {
                found = Some(v);
            }
            if let Some(v) = self.text(None, spelling)? {
                found = Some(v);
            }
        }
        Ok(found)
    }

    /// `auth_type`, or its old name `auth_plugin`; `password` when unset.
    fn auth_type(&self) -> Result<String, SourceError> {
        let plugin = self.text(None, "auth_plugin")?;
        Ok(self
            .text(None, "auth_type")?
            .or(plugin)
            .unwrap_or_else(|| "password".to_string()))
    }

    /// The region: `region_name`, else the first of `regions` (a name or
    /// a mapping with `name`), as openstacksdk picks; `None` for any.
    fn region(&self) -> Result<Option<String>, SourceError> {
        if let Some(region) = self.text(None, "region_name")? {
            return Ok(Some(region));
        }
        let first = match self.map.get("regions") {
            None | Some(Yaml::Null) => return Ok(None),
            Some(Yaml::Sequence(list)) => match list.first() {
                None => return Ok(None),
                Some(first) => first,
            },
            Some(_) => {
                return Err(config(format!(
                    "{}.regions must be a list of region names",
                    self.origin
                )));
            }
        };
        let name = match first {
            Yaml::Mapping(m) => m.get("name"),
            other => Some(other),
        };
        match name {
            Some(Yaml::String(s)) if !s.is_empty() => Ok(Some(s.clone())),
            _ => Err(config(format!(
                "{}.regions[0] must be a region name or have a name: field",
                self.origin
            ))),
        }
    }

    /// An `auth.<key>` setting that must be set; `why` says what for.
    fn required_auth(&self, key: &str, why: &str) -> Result<String, SourceError> {
        self.auth(key)?
            .ok_or_else(|| config(format!("{}.auth.{key} is missing ({why})", self.origin)))
    }

    /// A boolean setting; YAML `false` or the strings `false`/`no`/`0`.
    fn flag(&self, key: &str) -> Result<Option<bool>, SourceError> {
        match self.text(None, key)? {
            None => Ok(None),
            Some(v) => match v.to_ascii_lowercase().as_str() {
                "true" | "yes" | "1" => Ok(Some(true)),
                "false" | "no" | "0" => Ok(Some(false)),
                _ => Err(config(format!(
                    "{}.{key} must be true or false, not {v:?}",
                    self.origin
                ))),
            },
        }
    }
}

impl<'a> CloudEntry<'a> {
    /// The `clouds.<cloud>` entry of `doc`; an error lists the clouds
    /// there are when it is missing.
    fn find(doc: &'a Yaml, cloud: &str, origin: &str) -> Result<CloudEntry<'a>, SourceError> {
        let clouds = match doc.get("clouds") {
            Some(Yaml::Mapping(m)) => m,
            Some(_) => return Err(config(format!("{origin}: clouds must be a mapping"))),
            None => return Err(config(format!("{origin}: no clouds: mapping"))),
        };
        let map = match clouds.get(cloud) {
            Some(Yaml::Mapping(m)) => m,
            Some(_) => {
                return Err(config(format!(
                    "{origin}: clouds.{cloud} must be a mapping"
                )));
            }
            None => {
                let known: Vec<&str> = clouds.keys().filter_map(|k| k.as_str()).collect();
                return Err(config(format!(
                    "{origin}: no cloud {cloud:?} (clouds: {})",
                    if known.is_empty() {
                        "none".to_string()
                    } else {
                        known.join(", ")
                    }
                )));
            }
        };
        Ok(CloudEntry {
            map,
            origin: format!("{origin}: clouds.{cloud}"),
        })
    }

    /// Keystone's `…/v3/auth/tokens` from `auth.auth_url`, with or without
    /// its `/v3`; v2.0 is refused.
    fn token_url(&self) -> Result<String, SourceError> {
        let auth_url = self.required_auth("auth_url", "the Keystone URL")?;
        let base = auth_url.trim_end_matches('/');
        if base.ends_with("/v2.0") {
            return Err(config(format!(
                "{}.auth.auth_url {}: Keystone v2.0 is not supported, use v3",
                self.origin,
                redact_url(&auth_url)
            )));
        }
        Ok(if base.ends_with("/v3") {
            format!("{base}/auth/tokens")
        } else {
            format!("{base}/v3/auth/tokens")
        })
    }

    /// The endpoint interface: `interface` or `endpoint_type`, `public` by
    /// default; old spellings such as `publicURL` accepted.
    fn interface(&self) -> Result<String, SourceError> {
        let interface = self
            .text(None, "interface")?
            .or(self.text(None, "endpoint_type")?)
            .unwrap_or_else(|| "public".to_string());
        // Old settings say `publicURL`.
        let interface = interface.trim_end_matches("URL").to_ascii_lowercase();
        if !["public", "internal", "admin"].contains(&interface.as_str()) {
            return Err(config(format!(
                "{}.interface {interface:?}: must be public, internal or admin",
                self.origin
            )));
        }
        Ok(interface)
    }

    /// TLS settings: `verify`/`insecure`, `cacert`, and `cert`/`key`.
    fn tls_options(&self) -> Result<TlsOptions, SourceError> {
        let verify = self.flag("verify")?;
        let insecure = self.flag("insecure")?;
        let mut tls = TlsOptions {
            insecure: verify == Some(false) || insecure == Some(true),
            ..TlsOptions::default()
        };
        if let Some(cacert) = self.text(None, "cacert")? {
            tls.ca_pem = Some(read_pem_file(
                NAME,
                &format!("{}.cacert", self.origin),
                Path::new(&cacert),
            )?);
        }
        tls.client_identity = self.client_identity()?;
        Ok(tls)
    }

    /// The client certificate (`cert`) and key (`key`, or the certificate
    /// file when unset, as openstacksdk allows); a key alone is refused.
    fn client_identity(&self) -> Result<Option<ClientIdentity>, SourceError> {
        match (self.text(None, "cert")?, self.text(None, "key")?) {
            (None, None) => Ok(None),
            (Some(cert), key) => {
                let cert_pem =
                    read_pem_file(NAME, &format!("{}.cert", self.origin), Path::new(&cert))?;
                let key_pem = match key {
                    Some(key) => {
                        read_pem_file(NAME, &format!("{}.key", self.origin), Path::new(&key))?
                    }
                    None => cert_pem.clone(),
                };
                Ok(Some(ClientIdentity { cert_pem, key_pem }))
            }
            (None, Some(_)) => Err(config(format!("{}.key is set without cert", self.origin))),
        }
    }
}

/// The other spellings openstacksdk accepts for an `auth` setting, in the
/// order of its `_fix_backwards_auth` (the last one set wins); `None` for
/// settings it takes only as `auth.<key>`.
fn spellings(key: &str) -> Option<&'static [&'static str]> {
    Some(match key {
        "project_id" => &["tenant_id", "tenant-id", "project_id", "project-id"],
        "project_name" => &["tenant_name", "tenant-name", "project_name", "project-name"],
        "domain_id" => &["domain_id", "domain-id"],
        "domain_name" => &["domain_name", "domain-name"],
        "user_domain_id" => &["user_domain_id", "user-domain-id"],
        "user_domain_name" => &["user_domain_name", "user-domain-name"],
        "project_domain_id" => &["project_domain_id", "project-domain-id"],
        "project_domain_name" => &["project_domain_name", "project-domain-name"],
        "token" => &["auth-token", "auth_token", "token"],
        _ => return None,
    })
}

/// Keystone v3 `{"id": …}` or `{"name": …, "domain": …}` for a user or
/// project, from `<prefix>_id`, `<prefix>_name` and the domain settings.
fn named(
    entry: &CloudEntry<'_>,
    prefix: &str,
    domain_prefix: &str,
) -> Result<Option<Value>, SourceError> {
    if let Some(id) = entry.auth(&format!("{prefix}_id"))? {
        return Ok(Some(json!({ "id": id })));
    }
    let name_key = if prefix == "user" {
        "username".to_string()
    } else {
        format!("{prefix}_name")
    };
    let Some(name) = entry.auth(&name_key)? else {
        return Ok(None);
    };
    // `domain_id`/`domain_name` stand in for both user and project domain,
    // as in openstacksdk.
    let domain = if let Some(id) = entry.auth(&format!("{domain_prefix}_domain_id"))? {
        json!({ "id": id })
    } else if let Some(name) = entry.auth(&format!("{domain_prefix}_domain_name"))? {
        json!({ "name": name })
    } else if let Some(id) = entry.auth("domain_id")? {
        json!({ "id": id })
    } else if let Some(name) = entry.auth("domain_name")? {
        json!({ "name": name })
    } else if let Some(id) = entry.auth("default_domain_id")? {
        // keystoneauth's generic plugins: the domain of both when unset.
        json!({ "id": id })
    } else if let Some(name) = entry.auth("default_domain_name")? {
        json!({ "name": name })
    } else {
        return Err(config(format!(
            "{}.auth.{domain_prefix}_domain_name (or _id) is missing: Keystone v3 needs the domain of {name_key}",
            entry.origin
        )));
    };
    Ok(Some(json!({ "name": name, "domain": domain })))
}

/// The Keystone request, built once; holds a password or secret, so it
/// is never printed.
struct AuthRequest(
    /// The JSON body.
    Value,
);

impl std::fmt::Debug for AuthRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let method = self.0["auth"]["identity"]["methods"][0]
            .as_str()
            .unwrap_or("?");
        write!(f, "AuthRequest({method}, <redacted>)")
    }
}

impl AuthRequest {
    /// A failed token request as this source reports it. With the token
    /// method, Keystone answers a token it no longer knows (expired,
    /// revoked) with a 404 "Could not find token: <token>": that is a
    /// refusal like a 401, and the token never reaches an error.
    fn refused(&self, e: SourceError) -> SourceError {
        let Some(token) = self.0["auth"]["identity"]["token"]["id"].as_str() else {
            return e;
        };
        match e {
            SourceError::BadResponse {
                source_name,
                url,
                message,
            } => {
                if message.starts_with("HTTP 404") {
                    SourceError::Auth {
                        source_name,
                        url,
                        status: 404,
                    }
                } else {
                    SourceError::BadResponse {
                        source_name,
                        url,
                        message: message.replace(token, "<token>"),
                    }
                }
            }
            other => other,
        }
    }
}

/// The `auth_type`s this source speaks, as keystoneauth names them.
const AUTH_TYPES: &str = "password (v3password), token (v3token) or v3applicationcredential";

/// Builds the `POST /v3/auth/tokens` body for the entry's `auth_type`
/// (keystoneauth's plugin names; the generic `password` and `token` are
/// their v3 ones, since v2.0 is refused).
fn auth_request(entry: &CloudEntry<'_>) -> Result<AuthRequest, SourceError> {
    let auth_type = entry.auth_type()?;
    let body = match auth_type.as_str() {
        "password" | "v3password" => password_auth(entry)?,
        "token" | "v3token" => json!({
            "auth": {
                "identity": {
                    "methods": ["token"],
                    "token": { "id": entry.required_auth("token", "auth_type token")? },
                },
                "scope": scope(entry, "auth_type token")?,
            }
        }),
        "v3applicationcredential" | "applicationcredential" | "application_credential" => {
            application_credential_auth(entry)?
        }
        "v2password" | "v2token" => {
            return Err(config(format!(
                "{}.auth_type {auth_type:?}: Keystone v2.0 is not supported, use {AUTH_TYPES}",
                entry.origin
            )));
        }
        other => {
            return Err(config(format!(
                "{}.auth_type {other:?} is not supported (use {AUTH_TYPES})",
                entry.origin
            )));
        }
    };
    Ok(AuthRequest(body))
}

/// The scope of a password or token request: the project, or the whole
/// system with `auth.system_scope`. `why` names the auth type.
fn scope(entry: &CloudEntry<'_>, why: &str) -> Result<Value, SourceError> {
    if let Some(project) = named(entry, "project", "project")? {
        Ok(json!({ "project": project }))
    } else if entry.auth("system_scope")?.is_some() {
        Ok(json!({ "system": { "all": true } }))
    } else {
        Err(config(format!(
            "{}.auth.project_name (or project_id) is missing ({why}): listing all projects' volumes needs a scoped token",
            entry.origin
        )))
    }
}

/// The `password` method's body.
fn password_auth(entry: &CloudEntry<'_>) -> Result<Value, SourceError> {
    let mut user = named(entry, "user", "user")?.ok_or_else(|| {
        config(format!(
            "{}.auth.username (or user_id) is missing (auth_type password)",
            entry.origin
        ))
    })?;
    user["password"] = Value::String(entry.required_auth("password", "auth_type password")?);
    Ok(json!({
        "auth": {
            "identity": { "methods": ["password"], "password": { "user": user } },
            "scope": scope(entry, "auth_type password")?,
        }
    }))
}

/// The `application_credential` method's body (the credential carries its
/// scope).
fn application_credential_auth(entry: &CloudEntry<'_>) -> Result<Value, SourceError> {
    let secret = entry.required_auth(
        "application_credential_secret",
        "auth_type v3applicationcredential",
    )?;
    let credential = if let Some(id) = entry.auth("application_credential_id")? {
        json!({ "id": id, "secret": secret })
    } else if let Some(name) = entry.auth("application_credential_name")? {
        let user = named(entry, "user", "user")?.ok_or_else(|| {
            config(format!(
                "{}.auth.username (or user_id) is missing: an application credential given by name needs its user",
                entry.origin
            ))
        })?;
        json!({ "name": name, "user": user, "secret": secret })
    } else {
        return Err(config(format!(
            "{}.auth.application_credential_id (or application_credential_name) is missing",
            entry.origin
        )));
    };
    Ok(json!({
        "auth": {
            "identity": {
                "methods": ["application_credential"],
                "application_credential": credential,
            }
        }
    }))
}

/// Cinder, Nova and Glance from OpenStack APIs.
pub struct OpenStackSource {
    /// HTTP client with the cloud's TLS settings.
    client: HttpClient,
    /// Keystone `…/v3/auth/tokens`.
    token_url: String,
    /// The Keystone request body.
    auth: AuthRequest,
    /// `region_name`; any region when unset (and the catalog has one).
    region: Option<String>,
    /// `public`, `internal` or `admin`.
    interface: String,
    /// The token in use and its catalog, once there is one. Held while
    /// authenticating, so that requests refused at once renew it once.
    session: Mutex<Option<Session>>,
}

/// A Keystone token kept across fetches; never printed.
struct Session {
    /// The `X-Subject-Token`.
    token: String,
    /// The endpoints of the catalog that came with it.
    endpoints: Endpoints,
    /// From then on a fetch asks for a new token ([`reuse_for`]).
    renew_at: Instant,
}

impl std::fmt::Debug for OpenStackSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // An auth_url may carry `user:password@`.
        f.debug_struct("OpenStackSource")
            .field("client", &self.client)
            .field("token_url", &redact_url(&self.token_url))
            .field("auth", &self.auth)
            .field("region", &self.region)
            .field("interface", &self.interface)
            .finish()
    }
}

impl OpenStackSource {
    /// The source for `cloud` in `clouds_file`, or, when that is `None`, in
    /// the `clouds.yaml` openstacksdk would find, merged with the
    /// `secure.yaml` it would find (see [`find_clouds_files`]). `timeout`
    /// bounds each HTTP request.
    pub fn from_clouds_yaml(
        cloud: &str,
        clouds_file: Option<&Path>,
        timeout: Duration,
    ) -> Result<OpenStackSource, SourceError> {
        let env = |k: &str| std::env::var_os(k);
        let cwd = std::env::current_dir().unwrap_or_else(|_| PathBuf::from("."));
        let files = find_clouds_files(&env, &cwd, clouds_file)?;
        OpenStackSource::from_files(cloud, &files, timeout)
    }

    /// The source for `cloud` in `files.clouds` merged with
    /// `files.secure`.
    pub fn from_files(
        cloud: &str,
        files: &CloudsFiles,
        timeout: Duration,
    ) -> Result<OpenStackSource, SourceError> {
        let (doc, origin) = files.load()?;
        OpenStackSource::from_config(cloud, &doc, &origin, timeout)
    }

    /// The source for `cloud` in an already-parsed `clouds.yaml` document;
    /// `origin` names it in errors.
    pub fn from_config(
        cloud: &str,
        doc: &Yaml,
        origin: &str,
        timeout: Duration,
    ) -> Result<OpenStackSource, SourceError> {
        let entry = CloudEntry::find(doc, cloud, origin)?;
        let token_url = entry.token_url()?;
        let auth = auth_request(&entry)?;
        let interface = entry.interface()?;
        let tls = entry.tls_options()?;
        Ok(OpenStackSource {
            client: HttpClient::new(NAME, &tls, timeout)?,
            token_url,
            auth,
            region: entry.region()?,
            interface,
            session: Mutex::new(None),
        })
    }

    /// The token and endpoints to fetch with: the kept ones while they may
    /// be reused, else new ones from Keystone.
    async fn session(&self) -> Result<(String, Endpoints), SourceError> {
        let mut held = self.session.lock().await;
        if let Some(s) = held.as_ref() {
            if Instant::now() < s.renew_at {
                return Ok((s.token.clone(), s.endpoints.clone()));
            }
        }
        let fresh = self.authenticate().await?;
        let out = (fresh.token.clone(), fresh.endpoints.clone());
        *held = Some(fresh);
        Ok(out)
    }

    /// A token to replace `refused`, which a service answered with a 401:
    /// the one kept if another request has renewed it already, else a new
    /// one from Keystone (the refused one is dropped first).
    async fn renew(&self, refused: &str) -> Result<String, SourceError> {
        let mut held = self.session.lock().await;
        if let Some(s) = held.as_ref() {
            if s.token != refused {
                return Ok(s.token.clone());
            }
        }
        *held = None;
        let fresh = self.authenticate().await?;
        let token = fresh.token.clone();
        *held = Some(fresh);
        Ok(token)
    }

    /// Authenticates: a new token, its endpoints, and when to renew it.
    async fn authenticate(&self) -> Result<Session, SourceError> {
        let response = self
            .client
            .post_json(&self.token_url, &[], &self.auth.0)
            .await
            .map_err(|e| self.auth.refused(e))?;
        let bad = |m: String| self.client.bad_response(&self.token_url, m);
        let token = response
            .headers
            .get("x-subject-token")
            .ok_or_else(|| bad("no X-Subject-Token header".to_string()))?
            .to_str()
            .map_err(|_| bad("X-Subject-Token is not text".to_string()))?
            .to_string();
        let catalog = response.body["token"]["catalog"]
            .as_array()
            .ok_or_else(|| {
                bad("token.catalog is missing (is the token scoped to a project?)".to_string())
            })?;
        let find = |types: &[&str]| self.endpoint(catalog, types);
        let endpoints = Endpoints {
            volume: find(&VOLUME_TYPES).map_err(bad)?,
            compute: find(&["compute"]).map_err(bad)?,
            image: find(&["image"]).map_err(bad)?,
        };
        let reuse = reuse_for(&response.body["token"], crate::clock::now_unix());
        tracing::debug!(
            source = NAME,
            reuse_seconds = reuse.as_secs(),
            "new Keystone token"
        );
        Ok(Session {
            token,
            endpoints,
            renew_at: Instant::now() + reuse,
        })
    }

    /// `GET url` with `token`. A 401 renews the token (see [`Self::renew`])
    /// and repeats the request once, with `token` updated; a second 401 is
    /// the answer.
    async fn get_authed(&self, url: &str, token: &mut String) -> Result<JsonResponse, SourceError> {
        match self.client.get_json(url, &[("X-Auth-Token", token)]).await {
            Err(SourceError::Auth { status: 401, .. }) => {}
            other => return other,
        }
        *token = self.renew(token).await?;
        tracing::debug!(source = NAME, url = %redact_url(url), "401: token renewed, asking again");
        self.client.get_json(url, &[("X-Auth-Token", token)]).await
    }

    /// The URL of the first of `types` in the catalog with our interface
    /// and region.
    fn endpoint(&self, catalog: &[Value], types: &[&str]) -> Result<String, String> {
        for wanted in types {
            let Some(service) = catalog.iter().find(|s| s["type"].as_str() == Some(wanted)) else {
                continue;
            };
            let endpoints = service["endpoints"]
                .as_array()
                .ok_or_else(|| format!("token.catalog[type={wanted}].endpoints is missing"))?;
            let matching: Vec<&Value> = endpoints
                .iter()
                .filter(|e| e["interface"].as_str() == Some(self.interface.as_str()))
                .filter(|e| match &self.region {
                    None => true,
                    Some(r) => {
                        e["region_id"].as_str() == Some(r.as_str())
                            || e["region"].as_str() == Some(r.as_str())
                    }
                })
                .collect();
            let regions: BTreeSet<&str> = matching
                .iter()
                .filter_map(|e| e["region_id"].as_str().or(e["region"].as_str()))
                .collect();
            if self.region.is_none() && regions.len() > 1 {
                return Err(format!(
                    "{wanted} has {} endpoints in regions {}: set region_name",
                    self.interface,
                    regions.into_iter().collect::<Vec<_>>().join(", ")
                ));
            }
            let Some(first) = matching.first() else {
                continue;
            };
            let url = first["url"].as_str().ok_or_else(|| {
                format!("token.catalog[type={wanted}].endpoints[].url is missing")
            })?;
            return Ok(url.trim_end_matches('/').to_string());
        }
        Err(format!(
            "token.catalog has no {} endpoint (interface {}, region {})",
            types.join(" or "),
            self.interface,
            self.region.as_deref().unwrap_or("any")
        ))
    }

    /// Every item of a paginated list: `list_key` holds the items, and the
    /// next page is named by `next(body)`. The next page's query is applied
    /// to `base` rather than its link followed, so the token only goes to
    /// catalog endpoints even when a service builds links from an internal
    /// host name.
    async fn list(
        &self,
        token: &str,
        base: &str,
        first_query: &str,
        list_key: &str,
        next: fn(&Value) -> Option<String>,
    ) -> Result<Vec<(String, Value)>, SourceError> {
        let mut url = format!("{base}?{first_query}");
        let mut items = Vec::new();
        let mut seen_queries = BTreeSet::new();
        let mut token = token.to_string();
        for _ in 0..MAX_PAGES {
            let JsonResponse { body, .. } = self.get_authed(&url, &mut token).await?;
            let page = body
                .get(list_key)
                .and_then(Value::as_array)
                .ok_or_else(|| {
                    self.client
                        .bad_response(&url, format!("missing field `{list_key}` (a list)"))
                })?;
            items.extend(page.iter().map(|item| (url.clone(), item.clone())));
            let Some(link) = next(&body) else {
                return Ok(items);
            };
            let mut query = link
                .split_once('?')
                .map(|(_, q)| q)
                .unwrap_or("")
                .to_string();
            if query.is_empty() {
                return Err(self
                    .client
                    .bad_response(&url, format!("next link {link:?} has no query")));
            }
            // Keep every project in view whatever the link kept.
            for param in first_query.split('&') {
                let key = param.split('=').next().unwrap_or(param);
                if !query.split('&').any(|p| p.split('=').next() == Some(key)) {
                    query.push('&');
                    query.push_str(param);
                }
            }
            if !seen_queries.insert(query.clone()) {
                return Err(self
                    .client
                    .bad_response(&url, format!("pagination repeats page {link:?}")));
            }
            url = format!("{base}?{query}");
        }
        Err(self
            .client
            .bad_response(&url, format!("more than {MAX_PAGES} pages")))
    }

    /// Takes the kept token (or a new one), lists volumes, servers and
    /// images together, and turns them into one report.
    async fn fetch_now(&self) -> Result<AttachmentReport, SourceError> {
        let (token, endpoints) = self.session().await?;
        let volume_base = format!("{}/volumes/detail", endpoints.volume);
        let server_base = format!("{}/servers/detail", endpoints.compute);
        // `visibility=all`: community images are left out otherwise, even
        // for admins, and their RBD images would look unknown.
        let glance_query = format!("limit={GLANCE_PAGE}&visibility=all");
        let volumes = self.list(&token, &volume_base, "all_tenants=1", "volumes", |b| {
            link_next(b, "volumes_links")
        });
        let servers = self.list(&token, &server_base, "all_tenants=1", "servers", |b| {
            link_next(b, "servers_links")
        });
        let image_base = if endpoints.image.ends_with("/v2") {
            format!("{}/images", endpoints.image)
        } else {
            format!("{}/v2/images", endpoints.image)
        };
        let images = self.list(&token, &image_base, &glance_query, "images", |b| {
            b["next"].as_str().map(str::to_string)
        });
        let (volumes, servers, images) = tokio::try_join!(volumes, servers, images)?;

        let mut report = AttachmentReport {
            instances: Some(BTreeSet::new()),
            ..AttachmentReport::default()
        };
        for (index, (url, v)) in volumes.iter().enumerate() {
            let (image, expectation) = volume(v).map_err(|m| {
                self.client
                    .bad_response(url, format!("volumes[{index}]: {m}"))
            })?;
            report.images.insert(image, expectation);
        }
        let mut ids = BTreeSet::new();
        for (index, (url, s)) in servers.iter().enumerate() {
            let (id, image, expectation) = server(s).map_err(|m| {
                self.client
                    .bad_response(url, format!("servers[{index}]: {m}"))
            })?;
            ids.insert(id);
            report.images.insert(image, expectation);
        }
        report.instances = Some(ids);
        for (index, (url, i)) in images.iter().enumerate() {
            let (image, expectation) = glance_image(i).map_err(|m| {
                self.client
                    .bad_response(url, format!("images[{index}]: {m}"))
            })?;
            report.images.insert(image, expectation);
        }
        Ok(report)
    }
}

/// The three service endpoints from the catalog.
#[derive(Clone)]
struct Endpoints {
    /// Cinder, e.g. `https://cinder:8776/v3/<project>`.
    volume: String,
    /// Nova, e.g. `https://nova:8774/v2.1`.
    compute: String,
    /// Glance, e.g. `https://glance:9292`.
    image: String,
}

/// The `rel: next` href of a Cinder or Nova `*_links` list.
fn link_next(body: &Value, key: &str) -> Option<String> {
    body.get(key)?
        .as_array()?
        .iter()
        .find(|l| l["rel"].as_str() == Some("next"))
        .and_then(|l| l["href"].as_str())
        .map(str::to_string)
}

/// A string field that must be present and non-empty.
fn string_field<'a>(item: &'a Value, key: &str) -> Result<&'a str, String> {
    match item.get(key) {
        Some(Value::String(s)) if !s.is_empty() => Ok(s),
        Some(Value::String(_)) => Err(format!("field `{key}` is empty")),
        Some(_) => Err(format!("field `{key}` is not a string")),
        None => Err(format!("missing field `{key}`")),
    }
}

/// A nullable string field that must be present: `Ok(None)` for null.
fn nullable_field<'a>(item: &'a Value, key: &str) -> Result<Option<&'a str>, String> {
    match item.get(key) {
        Some(Value::String(s)) => Ok(Some(s)),
        Some(Value::Null) => Ok(None),
        Some(_) => Err(format!("field `{key}` is not a string")),
        None => Err(format!("missing field `{key}`")),
    }
}

/// An image named without pool or namespace (OpenStack does not say).
fn image_ref(image: String) -> ImageRef {
    ImageRef {
        pool: None,
        namespace: None,
        image,
    }
}

/// A Cinder volume: `volume-<id>` on the hosts of its attachments. Only
/// `available` and `in-use` volumes get an opinion: in other states
/// (attaching, detaching, uploading, backing-up, migrating…) a host that
/// is no attachment may hold the image for a moment.
fn volume(v: &Value) -> Result<(ImageRef, Expectation), String> {
    let id = string_field(v, "id")?;
    let context = |m: String| format!("(id {id}) {m}");
    let status = string_field(v, "status").map_err(context)?;
    let name = nullable_field(v, "name").map_err(context)?.unwrap_or("");
    let multi_attach = match v.get("multiattach") {
        // Older releases leave it out; the attachments still name every host.
        None | Some(Value::Null) => false,
        Some(Value::Bool(b)) => *b,
        Some(_) => return Err(context("field `multiattach` is not a boolean".to_string())),
    };
    let attachments = v
        .get("attachments")
        .and_then(Value::as_array)
        .ok_or_else(|| context("missing field `attachments` (a list)".to_string()))?;
    let mut hosts = BTreeSet::new();
    let mut all_hosts_known = true;
    let mut described = Vec::new();
    for (i, a) in attachments.iter().enumerate() {
        let server = nullable_field(a, "server_id")
            .map_err(|m| context(format!("attachments[{i}]: {m}")))?
            .unwrap_or("?");
        let host = match a.get("host_name") {
            Some(Value::String(h)) if !h.is_empty() => Some(h.as_str()),
            Some(Value::String(_)) | Some(Value::Null) | None => None,
            Some(_) => {
                return Err(context(format!(
                    "attachments[{i}]: field `host_name` is not a string"
                )));
            }
        };
        match host {
            Some(h) => {
                hosts.insert(h.to_string());
            }
            None => all_hosts_known = false,
        }
        described.push(format!(
            ", attached to server {server} on {}",
            host.unwrap_or("an unknown host")
        ));
    }
    let settled = status == "available" || status == "in-use";
    let expectation = Expectation {
        hosts: (settled && all_hosts_known).then_some(hosts),
        multi_attach,
        owner: format!(
            "cinder volume {id} \"{name}\" ({status}{})",
            described.concat()
        ),
    };
    Ok((image_ref(format!("volume-{id}")), expectation))
}

/// A Nova server: `<id>_disk` on its compute host.
fn server(s: &Value) -> Result<(String, ImageRef, Expectation), String> {
    let id = string_field(s, "id")?;
    let context = |m: String| format!("(id {id}) {m}");
    let status = string_field(s, "status").map_err(context)?;
    let name = nullable_field(s, "name").map_err(context)?.unwrap_or("");
    // Only admins see the host; without it every disk would look misplaced.
    let host = nullable_field(s, "OS-EXT-SRV-ATTR:host")
        .map_err(|m| context(format!("{m} (listing hosts needs an admin token)")))?
        .filter(|h| !h.is_empty());
    let hosts: BTreeSet<String> = host.iter().map(|h| h.to_string()).collect();
    let expectation = Expectation {
        hosts: (!NOVA_MOVING.contains(&status)).then_some(hosts),
        multi_attach: false,
        owner: format!(
            "nova server {id} \"{name}\" ({status}) on {}",
            host.unwrap_or("no host")
        ),
    };
    Ok((id.to_string(), image_ref(format!("{id}_disk")), expectation))
}

/// A Glance image: `<id>`, no opinion on hosts.
fn glance_image(i: &Value) -> Result<(ImageRef, Expectation), String> {
    let id = string_field(i, "id")?;
    let context = |m: String| format!("(id {id}) {m}");
    let status = string_field(i, "status").map_err(context)?;
    let name = match i.get("name") {
        Some(Value::String(s)) => s.as_str(),
        _ => "",
    };
    Ok((
        image_ref(id.to_string()),
        Expectation {
            hosts: None,
            multi_attach: false,
            owner: format!("glance image {id} \"{name}\" ({status})"),
        },
    ))
}

impl AttachmentSource for OpenStackSource {
    fn name(&self) -> &'static str {
        NAME
    }

    fn fetch(&self) -> BoxFuture<'_, Result<AttachmentReport, SourceError>> {
        Box::pin(self.fetch_now())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn source(yaml: &str) -> Result<OpenStackSource, SourceError> {
        let doc: Yaml = serde_norway::from_str(yaml).expect("yaml");
        OpenStackSource::from_config("c", &doc, "clouds.yaml", Duration::from_secs(1))
    }

    fn err(yaml: &str) -> String {
        source(yaml).unwrap_err().to_string()
    }

    #[test]
    fn password_auth_body() {
        let s = source(
            "clouds:\n  c:\n    auth:\n      auth_url: https://k:5000\n      username: admin\n      password: pw\n      project_name: admin\n      domain_name: Default\n",
        )
        .expect("source");
        assert_eq!(s.token_url, "https://k:5000/v3/auth/tokens");
        assert_eq!(
            s.auth.0,
            json!({"auth": {
                "identity": {"methods": ["password"], "password": {"user": {
                    "name": "admin", "domain": {"name": "Default"}, "password": "pw"}}},
                "scope": {"project": {"name": "admin", "domain": {"name": "Default"}}}
            }})
        );
        assert!(!format!("{s:?}").contains("pw\""), "{s:?}");
        assert_eq!(s.interface, "public");
    }

    #[test]
    fn numbers_and_ids_are_text() {
        let s = source(
            "clouds:\n  c:\n    interface: internalURL\n    auth:\n      auth_url: https://k/identity/v3/\n      user_id: 42\n      password: 1234\n      project_id: 7\n",
        )
        .expect("source");
        assert_eq!(s.token_url, "https://k/identity/v3/auth/tokens");
        assert_eq!(
            s.auth.0["auth"]["identity"]["password"]["user"],
            json!({"id": "42", "password": "1234"})
        );
        assert_eq!(s.auth.0["auth"]["scope"], json!({"project": {"id": "7"}}));
        assert_eq!(s.interface, "internal");
    }

    #[test]
    fn config_errors_name_the_field() {
        let e = err("clouds:\n  other: {}\n");
        assert!(e.contains("no cloud \"c\" (clouds: other)"), "{e}");
        let e = err("clouds:\n  c:\n    auth: {username: u, password: p}\n");
        assert!(e.contains("clouds.c.auth.auth_url is missing"), "{e}");
        let e = err(
            "clouds:\n  c:\n    auth: {auth_url: 'http://k', username: u, password: p, project_name: p}\n",
        );
        assert!(e.contains("user_domain_name"), "{e}");
        let e = err("clouds:\n  c:\n    auth: {auth_url: 'http://k', user_id: u, password: p}\n");
        assert!(e.contains("project_name (or project_id) is missing"), "{e}");
        let e =
            err("clouds:\n  c:\n    auth_type: v3oidcpassword\n    auth: {auth_url: 'http://k'}\n");
        assert!(
            e.contains("clouds.yaml: clouds.c.auth_type \"v3oidcpassword\" is not supported (use password (v3password), token (v3token) or v3applicationcredential)"),
            "{e}"
        );
        let e = err("clouds:\n  c:\n    auth_type: v2password\n    auth: {auth_url: 'http://k'}\n");
        assert!(
            e.contains("clouds.c.auth_type \"v2password\": Keystone v2.0 is not supported"),
            "{e}"
        );
        let e = err(
            "clouds:\n  c:\n    auth_type: token\n    auth: {auth_url: 'http://k', project_id: p}\n",
        );
        assert!(
            e.contains("clouds.yaml: clouds.c.auth.token is missing (auth_type token)"),
            "{e}"
        );
        let e = err(
            "clouds:\n  c:\n    auth_type: token\n    auth: {auth_url: 'http://k', token: t}\n",
        );
        assert!(
            e.contains("clouds.c.auth.project_name (or project_id) is missing (auth_type token)"),
            "{e}"
        );
        let e = err("clouds:\n  c:\n    auth_type: [token]\n    auth: {auth_url: 'http://k'}\n");
        assert!(e.contains("clouds.c.auth_type must be a string"), "{e}");
        let e = err(
            "clouds:\n  c:\n    tenant_name: [x]\n    auth: {auth_url: 'http://k', user_id: u, password: p}\n",
        );
        assert!(e.contains("clouds.c.tenant_name must be a string"), "{e}");
        let e = err(
            "clouds:\n  c:\n    auth_type: v3applicationcredential\n    auth: {auth_url: 'http://k', application_credential_id: x}\n",
        );
        assert!(
            e.contains("application_credential_secret is missing"),
            "{e}"
        );
        let e = err(
            "clouds:\n  c:\n    auth: {auth_url: 'http://k/v2.0', user_id: u, password: p, project_id: x}\n",
        );
        assert!(e.contains("v2.0 is not supported"), "{e}");
        let e = err(
            "clouds:\n  c:\n    verify: maybe\n    auth: {auth_url: 'http://k', user_id: u, password: p, project_id: x}\n",
        );
        assert!(e.contains("clouds.c.verify must be true or false"), "{e}");
        let e = err(
            "clouds:\n  c:\n    cacert: /nonexistent/ca.pem\n    auth: {auth_url: 'http://k', user_id: u, password: p, project_id: x}\n",
        );
        assert!(e.contains("clouds.c.cacert /nonexistent/ca.pem"), "{e}");
        let e = err("clouds:\n  c:\n    auth: {auth_url: [x]}\n");
        assert!(e.contains("clouds.c.auth.auth_url must be a string"), "{e}");
        let e = err("clouds: []\n");
        assert!(e.contains("clouds must be a mapping"), "{e}");
    }

    #[test]
    fn token_auth_body_and_spellings() {
        for auth_type in ["token", "v3token"] {
            let s = source(&format!(
                "clouds:\n  c:\n    auth_type: {auth_type}\n    auth:\n      auth_url: https://k:5000/v3\n      token: tok-123\n      project_id: p1\n"
            ))
            .expect("source");
            assert_eq!(
                s.auth.0,
                json!({"auth": {
                    "identity": {"methods": ["token"], "token": {"id": "tok-123"}},
                    "scope": {"project": {"id": "p1"}}
                }})
            );
            assert!(!format!("{s:?}").contains("tok-123"), "{s:?}");
        }
        // openstacksdk's other spellings: auth_plugin, auth_token,
        // tenant_name, settings on the entry itself (which win over auth),
        // and keystoneauth's default_domain_id.
        let s = source(
            "clouds:\n  c:\n    auth_plugin: token\n    project_name: ops\n    auth:\n      auth_url: https://k\n      auth_token: tok\n      tenant_name: old\n      project_name: overridden\n      default_domain_id: default\n",
        )
        .expect("source");
        assert_eq!(s.auth.0["auth"]["identity"]["token"], json!({"id": "tok"}));
        assert_eq!(
            s.auth.0["auth"]["scope"],
            json!({"project": {"name": "ops", "domain": {"id": "default"}}})
        );
        let s = source(
            "clouds:\n  c:\n    auth_type: v3password\n    project_id: 9\n    auth: {auth_url: 'https://k', user_id: u, password: p}\n",
        )
        .expect("source");
        assert_eq!(s.auth.0["auth"]["scope"], json!({"project": {"id": "9"}}));
        // With tenant_name and project_name both set, project_name wins.
        let s = source(
            "clouds:\n  c:\n    auth: {auth_url: 'https://k', user_id: u, password: p, project_name: new, tenant_name: old, domain_name: D}\n",
        )
        .expect("source");
        assert_eq!(s.auth.0["auth"]["scope"]["project"]["name"], json!("new"));
    }

    #[test]
    fn region_from_region_name_or_the_first_of_regions() {
        let auth = "    auth: {auth_url: 'https://k', user_id: u, password: p, project_id: x}\n";
        let region =
            |extra: &str| source(&format!("clouds:\n  c:\n{extra}{auth}")).map(|s| s.region);
        assert_eq!(region("").expect("none"), None);
        assert_eq!(
            region("    region_name: R2\n    regions: [R1, R2]\n").expect("name"),
            Some("R2".to_string())
        );
        assert_eq!(
            region("    regions: [R1, R2]\n").expect("list"),
            Some("R1".to_string())
        );
        assert_eq!(
            region("    regions:\n      - name: R3\n        values: {}\n").expect("map"),
            Some("R3".to_string())
        );
        let e = region("    regions: R1\n").unwrap_err().to_string();
        assert!(
            e.contains("clouds.yaml: clouds.c.regions must be a list"),
            "{e}"
        );
        let e = region("    regions: [{values: {}}]\n")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("clouds.yaml: clouds.c.regions[0] must be"),
            "{e}"
        );
    }

    #[test]
    fn volume_expectations() {
        let (image, e) = volume(&json!({
            "id": "v1", "name": null, "status": "available", "attachments": [], "multiattach": false
        }))
        .expect("volume");
        assert_eq!(image.image, "volume-v1");
        assert_eq!(e.hosts, Some(BTreeSet::new()));
        assert_eq!(e.owner, "cinder volume v1 \"\" (available)");
        let (_, e) = volume(&json!({
            "id": "v2", "name": "n", "status": "detaching", "attachments": [
                {"server_id": "s", "host_name": "h"}]
        }))
        .expect("volume");
        assert_eq!(e.hosts, None);
        assert_eq!(
            e.owner,
            "cinder volume v2 \"n\" (detaching, attached to server s on h)"
        );
        let (_, e) = volume(&json!({
            "id": "v3", "name": "n", "status": "in-use", "attachments": [
                {"server_id": "s", "host_name": null}]
        }))
        .expect("volume");
        assert_eq!(e.hosts, None, "an attachment without host: no opinion");
        let m = volume(&json!({"id": "v4", "status": "in-use", "name": "x"})).unwrap_err();
        assert!(m.contains("(id v4) missing field `attachments`"), "{m}");
    }

    #[test]
    fn server_expectations() {
        let (id, image, e) = server(&json!({
            "id": "s1", "name": "vm", "status": "MIGRATING", "OS-EXT-SRV-ATTR:host": "c1"
        }))
        .expect("server");
        assert_eq!((id.as_str(), image.image.as_str()), ("s1", "s1_disk"));
        assert_eq!(e.hosts, None, "a migrating disk may be open on two hosts");
        let m = server(&json!({"id": "s2", "name": "vm", "status": "ACTIVE"})).unwrap_err();
        assert!(
            m.contains("OS-EXT-SRV-ATTR:host") && m.contains("admin"),
            "{m}"
        );
    }

    #[test]
    fn merge_overrides_nested_keys() {
        let mut base: Yaml = serde_norway::from_str(
            "clouds: {c: {auth: {username: u, password: old}, region_name: r}}",
        )
        .expect("yaml");
        merge(
            &mut base,
            serde_norway::from_str("clouds: {c: {auth: {password: new}}}").expect("yaml"),
        );
        assert_eq!(base["clouds"]["c"]["auth"]["password"], Yaml::from("new"));
        assert_eq!(base["clouds"]["c"]["auth"]["username"], Yaml::from("u"));
        assert_eq!(base["clouds"]["c"]["region_name"], Yaml::from("r"));
    }

    #[test]
    fn tokens_are_reused_until_a_margin_before_expiry() {
        let secs = |token: Value, now: f64| reuse_for(&token, now).as_secs_f64();
        let expires = "2030-11-07T02:58:43.578887Z";
        let at = crate::clock::parse_rfc3339(expires).expect("stamp");
        // Keystone's default hour: reused for 55 minutes, whatever the
        // exporter's clock says, since issued_at is on Keystone's.
        let hour = json!({"issued_at": "2030-11-07T01:58:43.578887Z", "expires_at": expires});
        assert_eq!(secs(hour.clone(), at - 3600.0), 3300.0);
        assert_eq!(secs(hour.clone(), 0.0), 3300.0);
        assert_eq!(secs(hour, at + 86_400.0), 3300.0);
        // Short-lived tokens: half their life.
        let short = json!({"issued_at": "2030-11-07T02:54:43.578887Z", "expires_at": expires});
        assert_eq!(secs(short, 0.0), 120.0);
        let zero = json!({"issued_at": expires, "expires_at": expires});
        assert_eq!(secs(zero, 0.0), 0.0);
        // Without issued_at (or a usable one) the exporter's clock counts.
        let no_issued = json!({"expires_at": expires});
        assert_eq!(secs(no_issued.clone(), at - 3600.0), 3300.0);
        assert_eq!(secs(no_issued.clone(), at - 1.0), 0.5);
        assert_eq!(secs(no_issued, at + 10.0), 0.0, "expired already");
        let issued_late = json!({"issued_at": "2031-01-01T00:00:00Z", "expires_at": expires});
        assert_eq!(secs(issued_late, at - 600.0), 300.0);
        // No readable expiry: a bounded reuse.
        for token in [
            json!({}),
            json!({"expires_at": null}),
            json!({"expires_at": "2030-11-07 soon"}),
            json!({"expires_at": 1_920_250_723}),
        ] {
            assert_eq!(reuse_for(&token, at), UNKNOWN_EXPIRY_REUSE, "{token}");
        }
    }
}
