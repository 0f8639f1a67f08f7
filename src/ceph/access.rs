//! Reaching the cluster without a ceph.conf, as ceph-csi does: the mon
//! addresses of `--ceph.mon-host` (librados' `mon_host`) and the cephx key
//! of `--ceph.key-file` or `CEPH_RBD_EXPORTER_CEPH_KEY` (librados' `key`).
//! Both are checked here as far as they can be without the network; the
//! key is never printed (its `Debug` is redacted and no error quotes it).

use super::keytype::{KeyType, keyring_key};
use std::fmt;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::path::{Path, PathBuf};

/// The environment variable that holds the key itself (no flag, so that
/// the key is not in `ps`).
pub const KEY_ENV: &str = "CEPH_RBD_EXPORTER_CEPH_KEY";

/// A bad key file or key variable. Never quotes the key.
#[derive(Debug, thiserror::Error)]
pub enum AccessError {
    /// Both ways of giving the key were used.
    #[error(
        "--ceph.key-file (CEPH_RBD_EXPORTER_CEPH_KEY_FILE) and {KEY_ENV} are both set: give the key one way"
    )]
    KeyTwice,
    /// The key file cannot be read.
    #[error("--ceph.key-file {}: cannot read it: {source}", path.display())]
    KeyFileUnreadable {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The key variable is not UTF-8 or is empty.
    #[error("{KEY_ENV} is set but {0}: set it to the base64 cephx key, or unset it")]
    KeyEnvUnusable(&'static str),
    /// The text holds no cephx key.
    #[error(
        "{origin} holds no cephx key: give the base64 key alone (the value after `key =` in a keyring, \
         e.g. `ceph auth print-key client.USER`), or a keyring with a [client.USER] section"
    )]
    NotAKey {
        /// `--ceph.key-file PATH` or the variable's name.
        origin: String,
    },
    /// A keyring-format key file without a key for the user.
    #[error(
        "--ceph.key-file {} is a keyring without a key for {entity} (it has: {}); pass the user's own key, \
         or set --ceph.user",
        path.display(),
        if found.is_empty() { "no keys".to_string() } else { found.join(", ") }
    )]
    NoKeyForUser {
        /// The file.
        path: PathBuf,
        /// `client.USER`.
        entity: String,
        /// The entities the keyring has keys for.
        found: Vec<String>,
    },
}

/// A cephx key as base64 text. Its `Debug` never shows it, and it has no
/// `Display`.
#[derive(Clone, PartialEq, Eq)]
pub struct CephKey(String);

impl CephKey {
    /// The key text, for librados only.
    pub(super) fn expose(&self) -> &str {
        &self.0
    }

    /// A checked key: the base64 of an encoded `CryptoKey` (of any type;
    /// whether the loaded librados reads its type is `keytype.rs`' check).
    fn checked(text: &str, origin: impl FnOnce() -> String) -> Result<CephKey, AccessError> {
        let text = text.trim();
        if KeyType::of_base64(text) == KeyType::Unknown {
            return Err(AccessError::NotAKey { origin: origin() });
        }
        Ok(CephKey(text.to_string()))
    }
}

impl fmt::Debug for CephKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("CephKey(<redacted>)")
    }
}

/// Where the key is when it is given instead of a keyring.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeySource {
    /// `--ceph.key-file`: read at every connect, so that a rotated
    /// Kubernetes Secret is used from the next reconnect on.
    File(PathBuf),
    /// `CEPH_RBD_EXPORTER_CEPH_KEY`, read once at start.
    Env(CephKey),
}

impl KeySource {
    /// The key source the flag and the variable ask for: at most one of
    /// them; the variable's value is checked here.
    pub fn from_flag_and_env(
        file: Option<&Path>,
        env: Option<std::ffi::OsString>,
    ) -> Result<Option<KeySource>, AccessError> {
        match (file, env) {
            (Some(_), Some(_)) => Err(AccessError::KeyTwice),
            (Some(path), None) => Ok(Some(KeySource::File(path.to_path_buf()))),
            (None, Some(value)) => {
                let text = value
                    .into_string()
                    .map_err(|_| AccessError::KeyEnvUnusable("not UTF-8"))?;
                if text.trim().is_empty() {
                    return Err(AccessError::KeyEnvUnusable("empty"));
                }
                let key = CephKey::checked(&text, || KEY_ENV.to_string())?;
                Ok(Some(KeySource::Env(key)))
            }
            (None, None) => Ok(None),
        }
    }

    /// Where the key is, for messages: `--ceph.key-file PATH` or the
    /// variable's name.
    pub fn origin(&self) -> String {
        match self {
            KeySource::File(path) => format!("--ceph.key-file {}", path.display()),
            KeySource::Env(_) => KEY_ENV.to_string(),
        }
    }

    /// The key of `client.<user>`. A key file holds the bare base64 key
    /// (what a Kubernetes Secret mounted as a file gives, and the keyfile
    /// ceph-csi passes to librados; surrounding whitespace is ignored) or
    /// a keyring, whose `[client.<user>]` key is taken.
    pub fn load(&self, user: &str) -> Result<CephKey, AccessError> {
        let path = match self {
            KeySource::Env(key) => return Ok(key.clone()),
            KeySource::File(path) => path,
        };
        let text = read_key_file(path)?;
        if !text.trim_start().starts_with('[') {
            return CephKey::checked(&text, || self.origin());
        }
        let entity = format!("client.{user}");
        match keyring_key(&text, &entity) {
            Some(key) => CephKey::checked(&key, || format!("{} ([{entity}])", self.origin())),
            None => Err(AccessError::NoKeyForUser {
                path: path.clone(),
                entity,
                found: super::keytype::keyring_keys(&text)
                    .into_iter()
                    .map(|(e, _)| e)
                    .collect(),
            }),
        }
    }
}

/// The first 64 KiB of a key file, as text.
fn read_key_file(path: &Path) -> Result<String, AccessError> {
    use std::io::Read as _;
    let unreadable = |source| AccessError::KeyFileUnreadable {
        path: path.to_path_buf(),
        source,
    };
    let mut bytes = Vec::new();
    std::fs::File::open(path)
        .map_err(unreadable)?
        .take(64 << 10)
        .read_to_end(&mut bytes)
        .map_err(unreadable)?;
    Ok(String::from_utf8_lossy(&bytes).into_owned())
}

/// Mon addresses, checked, as librados' `mon_host` takes them.
///
/// Ceph's syntax (`MonMap::build_initial`, `parse_ip_port_vec` and
/// `resolve_addrs` in ceph `src/mon/MonMap.cc` and
/// `src/common/addr_parsing.c`): entries separated by `,`, `;` or spaces;
/// an entry is an address (`10.0.0.1`, `10.0.0.1:6789`, `v2:10.0.0.1:3300`,
/// `[::1]:3300`, `::1`), an address vector (`[v2:10.0.0.1:3300,v1:10.0.0.1:6789]`)
/// or a host name (`mon-a.example.com:6789`). With a host name anywhere,
/// librados resolves the whole list and takes neither `v1:`/`v2:` nor
/// vectors, so these are refused together.
///
/// Also Rook's form: the `data` of the `rook-ceph-mon-endpoints` ConfigMap,
/// `a=10.0.0.1:6789,b=10.0.0.2:6789` (Rook's `FlattenMonEndpoints` writes
/// `<mon-name>=<endpoint>` joined by `,`, and `ParseMonEndpoints` reads it
/// back; rook `pkg/operator/ceph/cluster/mon/endpoint.go` and `config.go`,
/// `EndpointConfigMapName = "rook-ceph-mon-endpoints"`,
/// `EndpointDataKey = "data"`). Each `name=` is taken off.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MonHost {
    /// The entries, without Rook's `name=`.
    entries: Vec<String>,
}

impl MonHost {
    /// Parses and checks `--ceph.mon-host`; the error says what is wrong
    /// with which entry (clap adds the flag's name).
    pub fn parse(text: &str) -> Result<MonHost, String> {
        let tokens = split_top_level(text)?;
        if tokens.is_empty() {
            return Err("no mon address given (e.g. `10.0.0.1:6789,10.0.0.2:6789`, \
                 `[v2:10.0.0.1:3300,v1:10.0.0.1:6789]` or Rook's `a=10.0.0.1:6789`)"
                .into());
        }
        let mut entries = Vec::new();
        let mut names = false;
        let mut typed = false;
        for token in tokens {
            let entry = strip_rook_name(token)?;
            match check_entry(entry).map_err(|why| format!("mon address {entry:?}: {why}"))? {
                Entry::Name => names = true,
                Entry::Typed => typed = true,
                Entry::Plain => {}
            }
            entries.push(entry.to_string());
        }
        if names && typed {
            return Err(
                "host names cannot be mixed with `v1:`/`v2:` addresses or `[...]` \
                 vectors (librados then resolves every entry as a host name): use IP addresses"
                    .into(),
            );
        }
        Ok(MonHost { entries })
    }

    /// The value of librados' `mon_host`.
    pub fn conf_value(&self) -> String {
        self.entries.join(",")
    }
}

impl fmt::Display for MonHost {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.conf_value())
    }
}

/// The entries of a mon list: split at `,`, `;` and whitespace outside
/// brackets; empty entries dropped.
fn split_top_level(text: &str) -> Result<Vec<&str>, String> {
    let mut tokens = Vec::new();
    let (mut depth, mut start) = (0u32, 0usize);
    for (i, c) in text.char_indices() {
        match c {
            // An address vector may hold bracketed IPv6 addresses.
            '[' if depth >= 2 => return Err(format!("`[` nested too deep at byte {i}")),
            '[' => depth += 1,
            ']' if depth == 0 => return Err(format!("`]` without `[` at byte {i}")),
            ']' => depth -= 1,
            ',' | ';' | ' ' | '\t' | '\n' if depth == 0 => {
                tokens.push(&text[start..i]);
                start = i + c.len_utf8();
            }
            _ => {}
        }
    }
    if depth > 0 {
        return Err("`[` without `]`".into());
    }
    tokens.push(&text[start..]);
    Ok(tokens.into_iter().filter(|t| !t.is_empty()).collect())
}

/// An entry without Rook's `name=` (a mon name: letters, digits, `-`,
/// `_`, `.`).
fn strip_rook_name(token: &str) -> Result<&str, String> {
    let Some((name, rest)) = token.split_once('=') else {
        return Ok(token);
    };
    let name_ok = !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if !name_ok || rest.is_empty() || rest.contains('=') {
        return Err(format!(
            "{token:?} is not Rook's `name=address` (as in rook-ceph-mon-endpoints: `a=10.0.0.1:6789`)"
        ));
    }
    Ok(rest)
}

/// What kind of entry a mon address is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Entry {
    /// An IP address, with or without a port.
    Plain,
    /// A `v1:`/`v2:`/`any:` address or an address vector.
    Typed,
    /// A host name, with or without a port.
    Name,
}

/// Checks one mon entry.
fn check_entry(entry: &str) -> Result<Entry, String> {
    if let Some(inner) = entry.strip_prefix('[').filter(|i| has_type_prefix(i)) {
        let inner = inner
            .strip_suffix(']')
            .ok_or("an address vector `[v2:...,v1:...]` must end with `]`")?;
        for member in inner.split(',') {
            check_typed(member.trim())?;
        }
        return Ok(Entry::Typed);
    }
    if has_type_prefix(entry) {
        check_typed(entry)?;
        return Ok(Entry::Typed);
    }
    check_address(entry)
}

fn has_type_prefix(s: &str) -> bool {
    ["v1:", "v2:", "any:"].iter().any(|p| s.starts_with(p))
}

/// A `v1:`, `v2:` or `any:` address: an IP, not a host name.
fn check_typed(member: &str) -> Result<(), String> {
    let rest = ["v1:", "v2:", "any:"]
        .iter()
        .find_map(|p| member.strip_prefix(p))
        .ok_or_else(|| format!("{member:?} in an address vector needs `v1:` or `v2:`"))?;
    match check_address(rest)? {
        Entry::Name => Err(format!(
            "{rest:?} is no IP address; `v1:`/`v2:` take IP addresses only"
        )),
        _ => Ok(()),
    }
}

/// `IP`, `IP:PORT`, `[IPv6]`, `[IPv6]:PORT`, a bare IPv6 address, or a
/// host name with an optional port; IPs may end in `/NONCE`.
fn check_address(addr: &str) -> Result<Entry, String> {
    if addr.is_empty() {
        return Err("empty address".into());
    }
    let (addr, nonce) = match addr.rsplit_once('/') {
        Some((a, n)) => (a, Some(n)),
        None => (addr, None),
    };
    if let Some(n) = nonce {
        if n.is_empty() || !n.chars().all(|c| c.is_ascii_digit()) {
            return Err(format!("bad nonce {n:?} after `/`"));
        }
    }
    if let Some(inner) = addr.strip_prefix('[') {
        let (ip, after) = inner.split_once(']').ok_or("`[` without `]`")?;
        ip.parse::<Ipv6Addr>()
            .map_err(|_| format!("{ip:?} in brackets is no IPv6 address"))?;
        if !after.is_empty() {
            let port = after
                .strip_prefix(':')
                .ok_or_else(|| format!("{after:?} after `]`"))?;
            check_port(port)?;
        }
        return Ok(Entry::Plain);
    }
    if addr.parse::<Ipv6Addr>().is_ok() {
        return Ok(Entry::Plain);
    }
    let (host, port) = match addr.split_once(':') {
        Some((h, p)) if p.contains(':') => {
            return Err(format!(
                "{h}:{p:?} is no address; put an IPv6 address with a port in brackets: [ADDR]:PORT"
            ));
        }
        Some((h, p)) => (h, Some(p)),
        None => (addr, None),
    };
    if let Some(p) = port {
        check_port(p)?;
    }
    if host.parse::<Ipv4Addr>().is_ok() {
        return Ok(Entry::Plain);
    }
    if nonce.is_some() {
        return Err("a `/NONCE` needs an IP address".into());
    }
    check_host_name(host)?;
    Ok(Entry::Name)
}

fn check_port(port: &str) -> Result<(), String> {
    match port.parse::<u16>() {
        Ok(p) if p > 0 => Ok(()),
        _ => Err(format!("port {port:?} is not 1-65535")),
    }
}

/// A DNS name: labels of letters, digits and `-` (not at either end),
/// at most 253 characters; not all digits and dots (a mistyped IPv4
/// address).
fn check_host_name(host: &str) -> Result<(), String> {
    let label_ok = |l: &str| {
        !l.is_empty()
            && l.len() <= 63
            && !l.starts_with('-')
            && !l.ends_with('-')
            && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
    };
    let host_part = host.strip_suffix('.').unwrap_or(host);
    if host.len() > 253 || !host_part.split('.').all(label_ok) {
        return Err(format!("{host:?} is neither an IP address nor a host name"));
    }
    if host_part.chars().all(|c| c.is_ascii_digit() || c == '.') {
        return Err(format!("{host:?} is no IPv4 address"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(text: &str) -> String {
        MonHost::parse(text)
            .unwrap_or_else(|e| panic!("{text:?}: {e}"))
            .conf_value()
    }

    #[test]
    fn takes_cephs_mon_host_syntax() {
        assert_eq!(ok("10.0.0.1"), "10.0.0.1");
        assert_eq!(ok("10.0.0.1,10.0.0.2:6789"), "10.0.0.1,10.0.0.2:6789");
        assert_eq!(
            ok("10.0.0.1; 10.0.0.2 10.0.0.3"),
            "10.0.0.1,10.0.0.2,10.0.0.3"
        );
        assert_eq!(
            ok("[v2:10.0.0.1:3300,v1:10.0.0.1:6789],[v2:10.0.0.2:3300/0,v1:10.0.0.2:6789/0]"),
            "[v2:10.0.0.1:3300,v1:10.0.0.1:6789],[v2:10.0.0.2:3300/0,v1:10.0.0.2:6789/0]"
        );
        assert_eq!(ok("v2:127.0.0.1:30841"), "v2:127.0.0.1:30841");
        assert_eq!(ok("[::1]:6789,[fd00::2]"), "[::1]:6789,[fd00::2]");
        assert_eq!(ok("fd00::1"), "fd00::1");
        assert_eq!(
            ok("[v2:[fd00::1]:3300,v1:[fd00::1]:6789]"),
            "[v2:[fd00::1]:3300,v1:[fd00::1]:6789]"
        );
        assert_eq!(
            ok("mon-a.example.com:6789,mon-b"),
            "mon-a.example.com:6789,mon-b"
        );
        assert_eq!(ok("mon.ceph.svc., 10.0.0.1"), "mon.ceph.svc.,10.0.0.1");
    }

    #[test]
    fn takes_rooks_mon_endpoints_data() {
        assert_eq!(
            ok("a=10.0.0.1:6789,b=10.0.0.2:6789,c=10.0.0.3:6789"),
            "10.0.0.1:6789,10.0.0.2:6789,10.0.0.3:6789"
        );
        assert_eq!(ok("a=[fd00::1]:3300"), "[fd00::1]:3300");
        assert_eq!(ok("a=v2:127.0.0.1:30841"), "v2:127.0.0.1:30841");
        assert_eq!(ok("rook-ceph-mon-a=10.0.0.1:3300"), "10.0.0.1:3300");
    }

    #[test]
    fn refuses_what_cannot_work() {
        for bad in [
            "",
            " , ;",
            "10.0.0.1:99999",
            "10.0.0.1:0",
            "10.0.0.1:port",
            "10.0.0.1:6789:1",
            "fd00::1:6789:x",
            "[fd00::1",
            "fd00::1]",
            "[nope]:6789",
            "[v2:10.0.0.1:3300,10.0.0.1:6789]",
            "[v2:10.0.0.1:3300]x",
            "v2:mon-a:3300",
            "mon-a,[v2:10.0.0.1:3300]",
            "mon!",
            "-mon",
            "10.0.0.300",
            "999.1.1.1:6789",
            "=10.0.0.1",
            "a=",
            "a!=10.0.0.1",
            "a=b=10.0.0.1",
            "10.0.0.1/x",
            "mon-a/0",
            "[[::1]]",
        ] {
            assert!(MonHost::parse(bad).is_err(), "{bad:?} was taken");
        }
    }

    #[test]
    fn key_debug_is_redacted_and_errors_never_quote_it() {
        let key = "AQBSdFhjAAAAABAAhSmw1uU1nqzOq6W3W6gG8A==";
        let src = KeySource::from_flag_and_env(None, Some(key.into()))
            .unwrap()
            .unwrap();
        assert!(!format!("{src:?}").contains("AQBS"), "{src:?}");
        assert_eq!(src.load("admin").unwrap().expose(), key);
        let err = KeySource::from_flag_and_env(None, Some("AQBSnotakey!".into())).unwrap_err();
        assert!(
            err.to_string().contains(KEY_ENV) && !err.to_string().contains("AQBS"),
            "{err}"
        );
        let err =
            KeySource::from_flag_and_env(Some(Path::new("/k")), Some(key.into())).unwrap_err();
        assert!(
            err.to_string().contains("--ceph.key-file") && err.to_string().contains(KEY_ENV),
            "{err}"
        );
        assert!(KeySource::from_flag_and_env(None, Some(" \n".into())).is_err());
        assert_eq!(KeySource::from_flag_and_env(None, None).unwrap(), None);
    }

    #[test]
    fn key_files_hold_a_bare_key_or_a_keyring() {
        let key = "AQBSdFhjAAAAABAAhSmw1uU1nqzOq6W3W6gG8A==";
        let dir = std::env::temp_dir().join(format!("rbd-exporter-access-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let write = |name: &str, text: &str| {
            let p = dir.join(name);
            std::fs::write(&p, text).unwrap();
            KeySource::File(p)
        };
        assert_eq!(
            write("bare", &format!("{key}\n"))
                .load("x")
                .unwrap()
                .expose(),
            key
        );
        let ring = write(
            "ring",
            &format!("[client.other]\n\tkey = AQAA\n[client.x]\n\tkey = \"{key}\"\n"),
        );
        assert_eq!(ring.load("x").unwrap().expose(), key);
        let err = ring.load("y").unwrap_err().to_string();
        assert!(
            err.contains("client.y") && err.contains("client.other, client.x"),
            "{err}"
        );
        let err = write("junk", "AQBS-not-a-key\n")
            .load("x")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("--ceph.key-file") && !err.contains("AQBS"),
            "{err}"
        );
        let err = write("empty", "").load("x").unwrap_err().to_string();
        assert!(err.contains("no cephx key"), "{err}");
        let missing = KeySource::File(dir.join("missing"));
        let err = missing.load("x").unwrap_err().to_string();
        assert!(
            err.contains("--ceph.key-file") && err.contains("missing"),
            "{err}"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }
}
