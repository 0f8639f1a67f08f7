//! The `--watchers.inventory` file: which host (and role) an address
//! belongs to, and which networks RBD clients may come from.
//!
//! ```yaml
//! client_networks: [10.0.0.0/16, "fd00::/64"]   # optional
//! infrastructure_roles: [rbd-mirror, backup]     # optional, this is the default
//! hosts:
//!   - name: compute-1
//!     role: compute
//!     addresses: [10.0.1.11, 10.0.2.0/28]
//! ```
//!
//! Parsing takes two steps: the YAML as written (`RawInventory`, every
//! scalar read as text), then each value checked, so every error names the
//! file, the host and the field. [`Inventory::new`] then builds the index.
//!
//! Lookups are longest-prefix matches over every host's addresses: one hash
//! probe per distinct prefix length in the file, whatever the number of
//! hosts.

pub use ipnet::IpNet;
use serde::Deserialize;
use std::collections::hash_map::Entry;
use std::collections::{BTreeSet, HashMap};
use std::fmt;
use std::net::IpAddr;
use std::path::Path;

/// Roles whose watchers are never orphans when the file does not say.
pub const DEFAULT_INFRASTRUCTURE_ROLES: [&str; 2] = ["rbd-mirror", "backup"];

/// Why a string is not a network ([`parse_net`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IpNetError {
    /// Neither an address nor `address/prefix`.
    #[error("{0:?} is not an IP address or CIDR")]
    Syntax(String),
    /// The prefix length is not a number or too long for the family.
    #[error("{0:?}: prefix length must be 0-{1}")]
    Prefix(String, u8),
    /// Bits below the prefix are set, e.g. `10.0.1.11/24`.
    #[error(
        "{text:?} has host bits set (the network is {network}; for one address, leave out the prefix)"
    )]
    HostBits {
        /// What was written.
        text: String,
        /// The network it would be with the host bits cleared.
        network: IpNet,
    },
}

/// Parses `a.b.c.d`, `a.b.c.d/n`, `x::y` or `x::/n` (surrounding blanks
/// ignored) into a network whose host bits are zero; a bare address is a
/// /32 (IPv4) or /128 (IPv6). The address is read by the standard library,
/// the prefix by `ipnet` (decimal, no sign, at most 2 digits for IPv4 and
/// 3 for IPv6).
pub fn parse_net(s: &str) -> Result<IpNet, IpNetError> {
    let text = s.trim();
    let net = match text.split_once('/') {
        None => text
            .parse::<IpAddr>()
            .map(IpNet::from)
            .map_err(|_| IpNetError::Syntax(s.to_string()))?,
        Some((a, _)) => {
            let addr: IpAddr = a.parse().map_err(|_| IpNetError::Syntax(s.to_string()))?;
            text.parse::<IpNet>().map_err(|_| {
                IpNetError::Prefix(s.to_string(), IpNet::from(addr).max_prefix_len())
            })?
        }
    };
    let network = net.trunc();
    if network != net {
        return Err(IpNetError::HostBits {
            text: s.to_string(),
            network,
        });
    }
    Ok(net)
}

/// True if `ip` is inside `net`. IPv4-mapped IPv6 addresses
/// (`::ffff:10.0.0.1`) count as their IPv4 address, so an IPv6 network
/// never holds them.
pub fn contains(net: &IpNet, ip: IpAddr) -> bool {
    net.contains(&ip.to_canonical())
}

/// A longest-prefix-match table: the networks in a hash map, and per family
/// the prefix lengths present. A lookup truncates the address to each
/// present length, longest first, and probes the map: at most 33 (IPv4) or
/// 129 (IPv6) probes and usually a handful, independent of the number of
/// entries.
#[derive(Debug, Clone, Default)]
struct PrefixTable<T> {
    /// IPv4 prefix lengths present, longest first.
    v4: Vec<u8>,
    /// IPv6 prefix lengths present, longest first.
    v6: Vec<u8>,
    /// Network (host bits cleared) -> value.
    nets: HashMap<IpNet, T>,
}

impl<T> PrefixTable<T> {
    /// Inserts `net` (host bits cleared); returns the value already there,
    /// if any, unchanged.
    fn insert(&mut self, net: IpNet, value: T) -> Option<&T> {
        let net = net.trunc();
        let lengths = match net {
            IpNet::V4(_) => &mut self.v4,
            IpNet::V6(_) => &mut self.v6,
        };
        let prefix = net.prefix_len();
        // Longest prefix first.
        if let Err(i) = lengths.binary_search_by(|p| prefix.cmp(p)) {
            lengths.insert(i, prefix);
        }
        match self.nets.entry(net) {
            Entry::Occupied(e) => Some(&*e.into_mut()),
            Entry::Vacant(e) => {
                e.insert(value);
                None
            }
        }
    }

    /// The value of the longest prefix holding `ip`; IPv4-mapped IPv6
    /// addresses are looked up as IPv4.
    fn lookup(&self, ip: IpAddr) -> Option<&T> {
        let ip = ip.to_canonical();
        let lengths = match ip {
            IpAddr::V4(_) => &self.v4,
            IpAddr::V6(_) => &self.v6,
        };
        lengths.iter().find_map(|&p| {
            let net = IpNet::new(ip, p).ok()?.trunc();
            self.nets.get(&net)
        })
    }

    /// True if nothing was inserted.
    fn is_empty(&self) -> bool {
        self.nets.is_empty()
    }
}

/// One host of the inventory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InventoryHost {
    /// Host name, as attachment sources name hosts (Nova compute host,
    /// Kubernetes node name).
    pub name: String,
    /// Free-text role: `compute`, `k8s-node`, `rbd-mirror`, `backup`, ...
    pub role: Option<String>,
    /// Its addresses and networks.
    pub addresses: Vec<IpNet>,
}

/// The parsed inventory, indexed for lookups. Build it with
/// [`Inventory::load`], [`Inventory::parse`] or [`Inventory::new`] (the
/// public fields are a read-only view: the index is built from them once).
#[derive(Debug, Clone)]
pub struct Inventory {
    /// Hosts, in file order.
    pub hosts: Vec<InventoryHost>,
    /// Networks RBD clients may come from; empty means "not configured".
    pub client_networks: Vec<IpNet>,
    /// Roles whose watchers are never orphans, lower-cased.
    pub infrastructure_roles: BTreeSet<String>,
    /// Index into `hosts` by each host's addresses and networks.
    by_address: PrefixTable<usize>,
    /// Index into `hosts` by lower-cased name.
    by_name: HashMap<String, usize>,
    /// The client networks, for membership tests.
    clients: PrefixTable<()>,
}

impl Default for Inventory {
    /// No hosts, no client networks, the default infrastructure roles.
    fn default() -> Inventory {
        Inventory {
            hosts: Vec::new(),
            client_networks: Vec::new(),
            infrastructure_roles: DEFAULT_INFRASTRUCTURE_ROLES
                .iter()
                .map(|r| r.to_string())
                .collect(),
            by_address: PrefixTable::default(),
            by_name: HashMap::new(),
            clients: PrefixTable::default(),
        }
    }
}

/// Why the inventory cannot be used. Every message names the file (or
/// origin) and, for bad content, the host and field.
#[derive(Debug, thiserror::Error)]
pub enum InventoryError {
    /// The file cannot be read.
    #[error("{path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// What went wrong.
        #[source]
        source: std::io::Error,
    },
    /// Not YAML, or not the expected shape (unknown field, wrong type).
    #[error("{origin}: {message}")]
    Syntax {
        /// File name or other origin.
        origin: String,
        /// The YAML parser's message, with its path and line.
        message: String,
    },
    /// A value is wrong: bad address, duplicate or empty name, ...
    #[error("{origin}: {field}: {message}")]
    Invalid {
        /// File name or other origin.
        origin: String,
        /// Where: `hosts[2] (compute-3): addresses[0]`, `client_networks[1]`.
        field: String,
        /// What is wrong.
        message: String,
    },
}

/// A YAML scalar taken as text, so `name: 1234` or an unquoted number in an
/// address list gives a message about the value, not about its YAML type.
#[derive(Debug, Clone)]
struct Text(
    /// The scalar as written (numbers and booleans in their usual form).
    String,
);

impl<'de> Deserialize<'de> for Text {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Text, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = Text;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Text, E> {
                Ok(Text(v.to_string()))
            }
            fn visit_string<E: serde::de::Error>(self, v: String) -> Result<Text, E> {
                Ok(Text(v))
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<Text, E> {
                Ok(Text(v.to_string()))
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<Text, E> {
                Ok(Text(v.to_string()))
            }
            fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<Text, E> {
                Ok(Text(v.to_string()))
            }
            fn visit_bool<E: serde::de::Error>(self, v: bool) -> Result<Text, E> {
                Ok(Text(v.to_string()))
            }
        }
        d.deserialize_any(V)
    }
}

/// The inventory file as written, before any value is checked.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawInventory {
    /// `client_networks`: addresses or networks.
    #[serde(default)]
    client_networks: Option<Vec<Text>>,
    /// `infrastructure_roles`; absent means the default roles.
    #[serde(default)]
    infrastructure_roles: Option<Vec<Text>>,
    /// `hosts`, in file order.
    #[serde(default)]
    hosts: Option<Vec<RawHost>>,
}

/// One `hosts` entry as written, before any value is checked.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawHost {
    /// `name`; required and non-empty once checked.
    name: Option<Text>,
    /// `role`; non-empty when present.
    #[serde(default)]
    role: Option<Text>,
    /// `addresses`: addresses or networks.
    #[serde(default)]
    addresses: Option<Vec<Text>>,
}

/// An [`InventoryError::Syntax`] from `origin`.
fn syntax(origin: &str, message: String) -> InventoryError {
    InventoryError::Syntax {
        origin: origin.to_string(),
        message,
    }
}

/// An [`InventoryError::Invalid`] from `origin` about `field`.
fn invalid(origin: &str, field: String, message: String) -> InventoryError {
    InventoryError::Invalid {
        origin: origin.to_string(),
        field,
        message,
    }
}

impl RawInventory {
    /// The document's fields, or `None` for an empty or comment-only
    /// document (a YAML null: nothing configured). Anything but a mapping
    /// is a syntax error.
    fn from_yaml(text: &str, origin: &str) -> Result<Option<RawInventory>, InventoryError> {
        let value: serde_norway::Value =
            serde_norway::from_str(text).map_err(|e| syntax(origin, e.to_string()))?;
        if value.is_null() {
            return Ok(None);
        }
        if !value.is_mapping() {
            return Err(syntax(
                origin,
                "expected a mapping with hosts, client_networks, infrastructure_roles".into(),
            ));
        }
        serde_norway::from_str(text)
            .map(Some)
            .map_err(|e| syntax(origin, name_the_host(&e.to_string(), &value)))
    }
}

/// A YAML parser message in the form of the other errors: the host's name
/// after its index, and `: ` before the field. `hosts[0]: unknown field
/// `rack`, ...` becomes `hosts[0] (compute-1): unknown field `rack`, ...`,
/// and `hosts[0].addresses: invalid type ...` becomes
/// `hosts[0] (compute-1): addresses: invalid type ...`. A host without a
/// usable name keeps its index alone; messages about anything but a host
/// are unchanged.
fn name_the_host(message: &str, doc: &serde_norway::Value) -> String {
    let named = || -> Option<String> {
        let rest = message.strip_prefix("hosts[")?;
        let (index, rest) = rest.split_once(']')?;
        let i: usize = index.parse().ok()?;
        let name = match doc.get("hosts").and_then(|h| h.get(i)?.get("name")) {
            Some(serde_norway::Value::String(s)) => s.trim().to_string(),
            Some(serde_norway::Value::Number(n)) => n.to_string(),
            Some(serde_norway::Value::Bool(b)) => b.to_string(),
            _ => String::new(),
        };
        let entry = if name.is_empty() {
            format!("hosts[{i}]")
        } else {
            format!("hosts[{i}] ({name})")
        };
        let rest = match rest.strip_prefix('.') {
            Some(field) => format!(": {field}"),
            None => rest.to_string(),
        };
        Some(format!("{entry}{rest}"))
    };
    named().unwrap_or_else(|| message.to_string())
}

impl RawHost {
    /// Checks `hosts[i]`: a non-empty name, a non-empty role if any, and
    /// addresses that parse (repeats within the host dropped).
    fn into_host(self, i: usize, origin: &str) -> Result<InventoryHost, InventoryError> {
        let name = self.name.map(|t| t.0).unwrap_or_default();
        let name = name.trim().to_string();
        if name.is_empty() {
            return Err(invalid(
                origin,
                format!("hosts[{i}]"),
                "name is missing or empty".into(),
            ));
        }
        let at = format!("hosts[{i}] ({name})");
        let role = match self.role {
            None => None,
            Some(Text(r)) if r.trim().is_empty() => {
                return Err(invalid(
                    origin,
                    format!("{at}: role"),
                    "is empty (leave the field out for no role)".into(),
                ));
            }
            Some(Text(r)) => Some(r.trim().to_string()),
        };
        let mut addresses = Vec::new();
        for (j, a) in self.addresses.unwrap_or_default().into_iter().enumerate() {
            let net = parse_net(&a.0)
                .map_err(|e| invalid(origin, format!("{at}: addresses[{j}]"), e.to_string()))?;
            if !addresses.contains(&net) {
                addresses.push(net);
            }
        }
        Ok(InventoryHost {
            name,
            role,
            addresses,
        })
    }
}

/// The `client_networks` list, each entry an address or network.
fn parse_client_networks(
    raw: Option<Vec<Text>>,
    origin: &str,
) -> Result<Vec<IpNet>, InventoryError> {
    raw.unwrap_or_default()
        .into_iter()
        .enumerate()
        .map(|(j, a)| {
            parse_net(&a.0)
                .map_err(|e| invalid(origin, format!("client_networks[{j}]"), e.to_string()))
        })
        .collect()
}

/// The `infrastructure_roles` list, lower-cased; the default roles when
/// the field is absent, none when it is an empty list.
fn parse_infrastructure_roles(
    raw: Option<Vec<Text>>,
    origin: &str,
) -> Result<BTreeSet<String>, InventoryError> {
    let Some(roles) = raw else {
        return Ok(Inventory::default().infrastructure_roles);
    };
    let mut set = BTreeSet::new();
    for (j, Text(r)) in roles.into_iter().enumerate() {
        let r = r.trim();
        if r.is_empty() {
            return Err(invalid(
                origin,
                format!("infrastructure_roles[{j}]"),
                "is empty".into(),
            ));
        }
        set.insert(r.to_lowercase());
    }
    Ok(set)
}

impl Inventory {
    /// Reads and parses the inventory file.
    pub fn load(path: &Path) -> Result<Inventory, InventoryError> {
        let text = std::fs::read_to_string(path).map_err(|source| InventoryError::Read {
            path: path.display().to_string(),
            source,
        })?;
        Inventory::parse(&text, &path.display().to_string())
    }

    /// Parses inventory YAML; `origin` (usually the file name) starts every
    /// error message. An empty document is an empty inventory.
    pub fn parse(text: &str, origin: &str) -> Result<Inventory, InventoryError> {
        let Some(raw) = RawInventory::from_yaml(text, origin)? else {
            return Ok(Inventory::default());
        };
        let hosts = raw
            .hosts
            .unwrap_or_default()
            .into_iter()
            .enumerate()
            .map(|(i, h)| h.into_host(i, origin))
            .collect::<Result<Vec<_>, _>>()?;
        let client_networks = parse_client_networks(raw.client_networks, origin)?;
        let infrastructure_roles = parse_infrastructure_roles(raw.infrastructure_roles, origin)?;
        Inventory::new(hosts, client_networks, infrastructure_roles).map_err(|e| match e {
            InventoryError::Invalid { field, message, .. } => invalid(origin, field, message),
            other => other,
        })
    }

    /// Builds an inventory from parts (e.g. merged from several places) and
    /// checks it: names non-empty and unique (case-insensitively), no
    /// network listed by two hosts. Roles are compared case-insensitively.
    pub fn new(
        hosts: Vec<InventoryHost>,
        client_networks: Vec<IpNet>,
        infrastructure_roles: BTreeSet<String>,
    ) -> Result<Inventory, InventoryError> {
        let invalid = |field: String, message: String| InventoryError::Invalid {
            origin: "inventory".to_string(),
            field,
            message,
        };
        let mut by_name: HashMap<String, usize> = HashMap::with_capacity(hosts.len());
        let mut by_address = PrefixTable::default();
        for (i, h) in hosts.iter().enumerate() {
            if h.name.trim().is_empty() {
                return Err(invalid(format!("hosts[{i}]"), "name is empty".into()));
            }
            let at = format!("hosts[{i}] ({})", h.name);
            if let Some(&first) = by_name.get(&h.name.to_lowercase()) {
                return Err(invalid(
                    format!("{at}: name"),
                    format!("duplicate host name, also hosts[{first}]"),
                ));
            }
            by_name.insert(h.name.to_lowercase(), i);
            for (j, net) in h.addresses.iter().enumerate() {
                if let Some(other) = by_address
                    .insert(*net, i)
                    .copied()
                    .filter(|&other| other != i)
                {
                    return Err(invalid(
                        format!("{at}: addresses[{j}]"),
                        format!(
                            "{net} is already listed by hosts[{other}] ({})",
                            hosts[other].name
                        ),
                    ));
                }
            }
        }
        let mut clients = PrefixTable::default();
        for net in &client_networks {
            clients.insert(*net, ());
        }
        Ok(Inventory {
            hosts,
            client_networks,
            infrastructure_roles: infrastructure_roles
                .into_iter()
                .map(|r| r.to_lowercase())
                .collect(),
            by_address,
            by_name,
            clients,
        })
    }

    /// The host whose address or network holds `ip` most specifically
    /// (longest prefix), if any.
    pub fn lookup(&self, ip: IpAddr) -> Option<&InventoryHost> {
        self.by_address.lookup(ip).map(|&i| &self.hosts[i])
    }

    /// The host named `name` (case-insensitive).
    pub fn host(&self, name: &str) -> Option<&InventoryHost> {
        self.by_name
            .get(&name.to_lowercase())
            .map(|&i| &self.hosts[i])
    }

    /// Whether `ip` is inside one of the client networks; `None` when no
    /// client networks are configured (then nobody is an unknown client).
    pub fn allows_client(&self, ip: IpAddr) -> Option<bool> {
        if self.clients.is_empty() {
            return None;
        }
        Some(self.clients.lookup(ip).is_some())
    }

    /// True if watchers of hosts with this role are never orphans
    /// (case-insensitive).
    pub fn is_infrastructure_role(&self, role: &str) -> bool {
        let role = role.trim();
        self.infrastructure_roles
            .iter()
            .any(|r| r.eq_ignore_ascii_case(role) || *r == role.to_lowercase())
    }

    /// True if there are no hosts and no client networks.
    pub fn is_empty(&self) -> bool {
        self.hosts.is_empty() && self.client_networks.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn net(s: &str) -> IpNet {
        parse_net(s).unwrap()
    }

    const EXAMPLE: &str = r#"
# Networks RBD clients may come from.
client_networks: [10.0.0.0/16, "fd00::/64"]
infrastructure_roles: [rbd-mirror, backup]
hosts:
  - name: compute-1
    role: compute            # free text
    addresses: [10.0.1.11, 10.0.2.0/28]
  - name: mirror-1
    role: rbd-mirror
    addresses: [10.0.9.5]
  - name: v6-host
    addresses: ["fd00::11", fd00::12]
"#;

    #[test]
    fn ipnet_parses_and_prints() {
        assert_eq!(net("10.0.1.11").to_string(), "10.0.1.11/32");
        assert_eq!(net("10.0.1.11").prefix_len(), 32);
        assert_eq!(net(" 10.0.0.0/8 ").to_string(), "10.0.0.0/8");
        assert_eq!(net("0.0.0.0/0").prefix_len(), 0);
        assert_eq!(net("fd00::/64").to_string(), "fd00::/64");
        assert_eq!(net("::1").prefix_len(), 128);
        assert_eq!(net("::/0").prefix_len(), 0);
        for bad in [
            "10.0.0.300",
            "10.0.0",
            "10.0.0.0/33",
            "10.0.0.0/",
            "10.0.0.0/-1",
            "10.0.0.0/+8",
            "10.0.0.0/8/8",
            "fd00::/129",
            "",
            "host.example",
            "10.0.0.1/0024",
        ] {
            assert!(parse_net(bad).is_err(), "{bad:?} parsed");
        }
        let e = parse_net("10.0.1.11/24").unwrap_err();
        assert_eq!(
            e.to_string(),
            "\"10.0.1.11/24\" has host bits set (the network is 10.0.1.0/24; for one address, leave out the prefix)"
        );
        assert_eq!(
            parse_net("10.0.0.300").unwrap_err().to_string(),
            "\"10.0.0.300\" is not an IP address or CIDR"
        );
        // ipnet's own constructor keeps host bits; parse_net refuses them.
        assert!(parse_net("10.0.0.1/24").is_err());
        assert_eq!(IpNet::new(ip("10.0.0.0"), 24).unwrap(), net("10.0.0.0/24"));
        assert_eq!(
            IpNet::new(ip("10.0.0.1"), 24).unwrap().trunc(),
            net("10.0.0.0/24")
        );
        assert!(IpNet::new(ip("10.0.0.1"), 99).is_err());
        assert_eq!(IpNet::from(ip("10.0.0.1")), net("10.0.0.1"));
    }

    #[test]
    fn ipnet_contains() {
        assert!(contains(&net("10.0.0.0/16"), ip("10.0.255.1")));
        assert!(!contains(&net("10.0.0.0/16"), ip("10.1.0.1")));
        assert!(contains(&net("0.0.0.0/0"), ip("192.0.2.1")));
        assert!(!contains(&net("0.0.0.0/0"), ip("::1")));
        assert!(contains(&net("10.0.1.11"), ip("10.0.1.11")));
        assert!(!contains(&net("10.0.1.11"), ip("10.0.1.12")));
        assert!(contains(&net("fd00::/64"), ip("fd00::abcd")));
        assert!(!contains(&net("fd00::/64"), ip("fd00:0:0:1::1")));
        assert!(contains(&net("::/0"), ip("2001:db8::1")));
        // IPv4-mapped IPv6 is the IPv4 address.
        assert!(contains(&net("10.0.0.0/16"), ip("::ffff:10.0.3.4")));
    }

    #[test]
    fn parses_the_documented_example() {
        let inv = Inventory::parse(EXAMPLE, "inventory.yaml").unwrap();
        assert_eq!(inv.hosts.len(), 3);
        assert_eq!(inv.hosts[0].name, "compute-1");
        assert_eq!(inv.hosts[0].role.as_deref(), Some("compute"));
        assert_eq!(
            inv.hosts[0].addresses,
            vec![net("10.0.1.11"), net("10.0.2.0/28")]
        );
        assert_eq!(inv.hosts[2].role, None);
        assert_eq!(
            inv.client_networks,
            vec![net("10.0.0.0/16"), net("fd00::/64")]
        );
        assert_eq!(inv.lookup(ip("10.0.1.11")).unwrap().name, "compute-1");
        assert_eq!(inv.lookup(ip("10.0.2.15")).unwrap().name, "compute-1");
        assert!(inv.lookup(ip("10.0.2.16")).is_none());
        assert_eq!(inv.lookup(ip("10.0.9.5")).unwrap().name, "mirror-1");
        assert_eq!(inv.lookup(ip("fd00::12")).unwrap().name, "v6-host");
        assert_eq!(inv.lookup(ip("::ffff:10.0.9.5")).unwrap().name, "mirror-1");
        assert_eq!(inv.host("MIRROR-1").unwrap().name, "mirror-1");
        assert!(inv.host("nope").is_none());
        assert_eq!(inv.allows_client(ip("10.0.200.1")), Some(true));
        assert_eq!(inv.allows_client(ip("10.1.0.1")), Some(false));
        assert_eq!(inv.allows_client(ip("fd00::99")), Some(true));
        assert_eq!(inv.allows_client(ip("fd01::99")), Some(false));
        assert!(inv.is_infrastructure_role("rbd-mirror"));
        assert!(inv.is_infrastructure_role("RBD-Mirror"));
        assert!(inv.is_infrastructure_role("backup"));
        assert!(!inv.is_infrastructure_role("compute"));
    }

    #[test]
    fn defaults() {
        let inv = Inventory::default();
        assert!(inv.is_empty());
        assert!(inv.is_infrastructure_role("rbd-mirror"));
        assert!(inv.is_infrastructure_role("Backup"));
        assert_eq!(inv.allows_client(ip("1.2.3.4")), None);
        assert!(inv.lookup(ip("1.2.3.4")).is_none());

        for empty in ["", "# nothing here\n", "---\n"] {
            let inv = Inventory::parse(empty, "x.yaml").unwrap();
            assert!(inv.is_empty(), "{empty:?}");
            assert!(inv.is_infrastructure_role("rbd-mirror"));
        }
        // Absent client networks, or an empty list: nobody is unknown.
        let inv = Inventory::parse("hosts: []\nclient_networks: []\n", "x.yaml").unwrap();
        assert_eq!(inv.allows_client(ip("1.2.3.4")), None);
        // An explicit empty role list: nothing is infrastructure.
        let inv = Inventory::parse("infrastructure_roles: []\n", "x.yaml").unwrap();
        assert!(!inv.is_infrastructure_role("rbd-mirror"));
        // Custom roles replace the default.
        let inv = Inventory::parse("infrastructure_roles: [Ceph-Backup]\n", "x.yaml").unwrap();
        assert!(inv.is_infrastructure_role("ceph-backup"));
        assert!(!inv.is_infrastructure_role("rbd-mirror"));
    }

    #[test]
    fn longest_prefix_wins() {
        let inv = Inventory::parse(
            r#"
hosts:
  - {name: rack, addresses: [10.0.0.0/16]}
  - {name: subnet, addresses: [10.0.5.0/24]}
  - {name: one, role: backup, addresses: [10.0.5.7]}
  - {name: everything, addresses: ["0.0.0.0/0"]}
"#,
            "x.yaml",
        )
        .unwrap();
        assert_eq!(inv.lookup(ip("10.0.5.7")).unwrap().name, "one");
        assert_eq!(inv.lookup(ip("10.0.5.8")).unwrap().name, "subnet");
        assert_eq!(inv.lookup(ip("10.0.6.8")).unwrap().name, "rack");
        assert_eq!(inv.lookup(ip("192.0.2.1")).unwrap().name, "everything");
        assert!(inv.lookup(ip("fd00::1")).is_none());
    }

    #[test]
    fn edge_prefixes() {
        // /0 holds the whole family and loses to anything longer.
        let inv = Inventory::parse(
            r#"
hosts:
  - {name: all4, addresses: ["0.0.0.0/0"]}
  - {name: all6, addresses: ["::/0"]}
  - {name: one4, addresses: [192.0.2.1/32]}
  - {name: one6, addresses: ["2001:db8::1/128"]}
  - {name: net6, addresses: ["2001:db8::/32"]}
"#,
            "x.yaml",
        )
        .unwrap();
        // /32 and /128 written out are the same as the bare address.
        assert_eq!(inv.hosts[2].addresses, vec![net("192.0.2.1")]);
        assert_eq!(inv.hosts[3].addresses, vec![net("2001:db8::1")]);
        assert_eq!(net("192.0.2.1").prefix_len(), 32);
        assert_eq!(net("2001:db8::1").prefix_len(), 128);
        assert_eq!(inv.lookup(ip("192.0.2.1")).unwrap().name, "one4");
        assert_eq!(inv.lookup(ip("192.0.2.2")).unwrap().name, "all4");
        assert_eq!(inv.lookup(ip("255.255.255.255")).unwrap().name, "all4");
        assert_eq!(inv.lookup(ip("2001:db8::1")).unwrap().name, "one6");
        assert_eq!(inv.lookup(ip("2001:db8::2")).unwrap().name, "net6");
        assert_eq!(inv.lookup(ip("fd00::1")).unwrap().name, "all6");
        // IPv4-mapped IPv6 is looked up as IPv4, never in the IPv6 /0.
        assert_eq!(inv.lookup(ip("::ffff:192.0.2.1")).unwrap().name, "one4");
        assert_eq!(inv.lookup(ip("::ffff:10.0.0.1")).unwrap().name, "all4");
        // Beyond the family's length, or not a plain decimal prefix.
        for bad in ["192.0.2.1/33", "2001:db8::1/129", "10.0.0.0/024", "::/0128"] {
            assert!(
                matches!(parse_net(bad), Err(IpNetError::Prefix(..))),
                "{bad:?}"
            );
        }
        assert_eq!(
            parse_net("2001:db8::1/129").unwrap_err().to_string(),
            r#""2001:db8::1/129": prefix length must be 0-128"#
        );
        assert_eq!(
            parse_net("2001:db8::1/64").unwrap_err().to_string(),
            r#""2001:db8::1/64" has host bits set (the network is 2001:db8::/64; for one address, leave out the prefix)"#
        );
    }

    #[test]
    fn ipv4_mapped_entries_stay_ipv6() {
        // As before ipnet: an entry written as IPv4-mapped IPv6 is an IPv6
        // network, and lookups of mapped addresses go to IPv4, so it never
        // matches. Write the IPv4 address instead.
        let inv = Inventory::parse(
            "hosts:\n  - {name: m, addresses: [\"::ffff:10.0.0.1\", \"::ffff:10.1.0.0/112\"]}\n",
            "x.yaml",
        )
        .unwrap();
        assert_eq!(inv.hosts[0].addresses[0], net("::ffff:10.0.0.1"));
        assert!(matches!(inv.hosts[0].addresses[0], IpNet::V6(_)));
        assert!(inv.lookup(ip("::ffff:10.0.0.1")).is_none());
        assert!(inv.lookup(ip("10.0.0.1")).is_none());
        assert!(inv.lookup(ip("10.1.2.3")).is_none());
        assert!(!contains(&net("::ffff:10.1.0.0/112"), ip("10.1.2.3")));
    }

    #[test]
    fn new_clears_host_bits() {
        // ipnet::IpNet can carry host bits; Inventory::new indexes the network.
        let host = InventoryHost {
            name: "a".into(),
            role: None,
            addresses: vec![IpNet::new(ip("10.0.0.9"), 24).unwrap()],
        };
        let inv = Inventory::new(
            vec![host],
            vec![IpNet::new(ip("10.0.0.9"), 8).unwrap()],
            BTreeSet::new(),
        )
        .unwrap();
        assert_eq!(inv.lookup(ip("10.0.0.200")).unwrap().name, "a");
        assert_eq!(inv.allows_client(ip("10.200.0.1")), Some(true));
    }

    fn err(text: &str) -> String {
        Inventory::parse(text, "inventory.yaml")
            .unwrap_err()
            .to_string()
    }

    #[test]
    fn errors_name_origin_host_and_field() {
        assert_eq!(
            err(r#"
hosts:
  - {name: compute-1, addresses: [10.0.0.1]}
  - {name: compute-2, addresses: [10.0.0.2]}
  - {name: compute-3, addresses: [10.0.0.300]}
"#),
            r#"inventory.yaml: hosts[2] (compute-3): addresses[0]: "10.0.0.300" is not an IP address or CIDR"#
        );
        assert_eq!(
            err("hosts:\n  - {name: a, addresses: [10.0.0.1, 7]}\n"),
            r#"inventory.yaml: hosts[0] (a): addresses[1]: "7" is not an IP address or CIDR"#
        );
        assert_eq!(
            err("hosts:\n  - {name: a, addresses: [10.0.0.1/24]}\n"),
            r#"inventory.yaml: hosts[0] (a): addresses[0]: "10.0.0.1/24" has host bits set (the network is 10.0.0.0/24; for one address, leave out the prefix)"#
        );
        assert_eq!(
            err("client_networks: [10.0.0.0/16, 10.0.0.0/33]\n"),
            r#"inventory.yaml: client_networks[1]: "10.0.0.0/33": prefix length must be 0-32"#
        );
        assert_eq!(
            err("hosts:\n  - {name: a}\n  - {name: b}\n  - {name: A}\n"),
            "inventory.yaml: hosts[2] (A): name: duplicate host name, also hosts[0]"
        );
        assert_eq!(
            err("hosts:\n  - {name: a}\n  - {name: '  ', addresses: [10.0.0.1]}\n"),
            "inventory.yaml: hosts[1]: name is missing or empty"
        );
        assert_eq!(
            err("hosts:\n  - {addresses: [10.0.0.1]}\n"),
            "inventory.yaml: hosts[0]: name is missing or empty"
        );
        assert_eq!(
            err("hosts:\n  - {name: a, role: ''}\n"),
            "inventory.yaml: hosts[0] (a): role: is empty (leave the field out for no role)"
        );
        assert_eq!(
            err("infrastructure_roles: [backup, '']\n"),
            "inventory.yaml: infrastructure_roles[1]: is empty"
        );
        assert_eq!(
            err(
                "hosts:\n  - {name: a, addresses: [10.0.0.0/24]}\n  - {name: b, addresses: [10.0.1.1, 10.0.0.0/24]}\n"
            ),
            "inventory.yaml: hosts[1] (b): addresses[1]: 10.0.0.0/24 is already listed by hosts[0] (a)"
        );
        // Unknown fields, at the top and in a host, name the field and line.
        let e = err("hosts: []\nclient_network: [10.0.0.0/8]\n");
        assert!(
            e.starts_with("inventory.yaml: ") && e.contains("unknown field `client_network`"),
            "{e}"
        );
        let e = err("hosts:\n  - name: a\n    adresses: [10.0.0.1]\n");
        assert!(
            e.starts_with("inventory.yaml: ")
                && e.contains("unknown field `adresses`")
                && e.contains("line 3"),
            "{e}"
        );
        // Errors from the YAML parser inside a host name the host too.
        assert_eq!(
            err("hosts:\n  - name: compute-1\n    rack: r1\n"),
            "inventory.yaml: hosts[0] (compute-1): unknown field `rack`, expected one of `name`, `role`, `addresses` at line 3 column 5"
        );
        assert_eq!(
            err("hosts:\n  - {name: a}\n  - {rack: r1, name: b}\n"),
            "inventory.yaml: hosts[1] (b): unknown field `rack`, expected one of `name`, `role`, `addresses` at line 3 column 6"
        );
        assert_eq!(
            err("hosts:\n  - name: a\n    addresses: {x: 1}\n"),
            "inventory.yaml: hosts[0] (a): addresses: invalid type: map, expected a sequence at line 3 column 16"
        );
        assert_eq!(
            err("hosts:\n  - name: a\n    addresses: [10.0.0.1, [x]]\n"),
            "inventory.yaml: hosts[0] (a): addresses[1]: invalid type: sequence, expected a string at line 3 column 27"
        );
        assert_eq!(
            err("hosts:\n  - name: 1234\n    rack: r1\n"),
            "inventory.yaml: hosts[0] (1234): unknown field `rack`, expected one of `name`, `role`, `addresses` at line 3 column 5"
        );
        // Without a name, the index names the host.
        assert_eq!(
            err("hosts:\n  - rack: r1\n"),
            "inventory.yaml: hosts[0]: unknown field `rack`, expected one of `name`, `role`, `addresses` at line 2 column 5"
        );
        assert_eq!(
            err("hosts:\n  - {name: [x], rack: r1}\n"),
            "inventory.yaml: hosts[0]: name: invalid type: sequence, expected a string at line 2 column 12"
        );
        let e = err("hosts: {name: a}\n");
        assert!(e.starts_with("inventory.yaml: "), "{e}");
        let e = err("- 10.0.0.1\n");
        assert!(e.starts_with("inventory.yaml: expected a mapping"), "{e}");
        let e = err("hosts: [\n");
        assert!(e.starts_with("inventory.yaml: "), "{e}");
    }

    #[test]
    fn same_address_twice_in_one_host_is_fine() {
        let inv = Inventory::parse(
            "hosts:\n  - {name: a, addresses: [10.0.0.1, 10.0.0.1]}\n",
            "x",
        )
        .unwrap();
        assert_eq!(inv.hosts[0].addresses, vec![net("10.0.0.1")]);
    }

    #[test]
    fn load_names_the_path() {
        let dir = std::env::temp_dir().join(format!("inventory-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let missing = dir.join("missing.yaml");
        let e = Inventory::load(&missing).unwrap_err().to_string();
        assert!(e.starts_with(&format!("{}: ", missing.display())), "{e}");
        let bad = dir.join("bad.yaml");
        std::fs::write(&bad, "hosts:\n  - {name: x, addresses: [nope]}\n").unwrap();
        let e = Inventory::load(&bad).unwrap_err().to_string();
        assert_eq!(
            e,
            format!(
                "{}: hosts[0] (x): addresses[0]: \"nope\" is not an IP address or CIDR",
                bad.display()
            )
        );
        std::fs::write(&bad, "hosts:\n  - name: x\n    rack: r1\n").unwrap();
        let e = Inventory::load(&bad).unwrap_err().to_string();
        assert_eq!(
            e,
            format!(
                "{}: hosts[0] (x): unknown field `rack`, expected one of `name`, `role`, `addresses` at line 3 column 5",
                bad.display()
            )
        );
        let good = dir.join("good.yaml");
        std::fs::write(&good, EXAMPLE).unwrap();
        assert_eq!(Inventory::load(&good).unwrap().hosts.len(), 3);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn new_checks_what_parse_checks() {
        let h = |name: &str, a: &str| InventoryHost {
            name: name.into(),
            role: None,
            addresses: vec![net(a)],
        };
        assert!(
            Inventory::new(
                vec![h("a", "10.0.0.1"), h("b", "10.0.0.1")],
                vec![],
                BTreeSet::new()
            )
            .is_err()
        );
        assert!(Inventory::new(vec![h("", "10.0.0.1")], vec![], BTreeSet::new()).is_err());
        let inv = Inventory::new(
            vec![h("a", "10.0.0.1")],
            vec![net("10.0.0.0/8")],
            ["Backup".to_string()].into(),
        )
        .unwrap();
        assert!(inv.is_infrastructure_role("BACKUP"));
        assert_eq!(inv.lookup(ip("10.0.0.1")).unwrap().name, "a");
    }

    /// Ten thousand hosts with a mix of single addresses and small networks,
    /// and fifty thousand lookups: the index answers each with a few hash
    /// probes (one per distinct prefix length), never a scan of the hosts.
    #[test]
    fn ten_thousand_hosts() {
        let mut yaml = String::from("client_networks: [10.0.0.0/8]\nhosts:\n");
        for i in 0..10_000u32 {
            let a = Ipv4Addr::from(0x0a00_0000 + i * 16);
            if i % 2 == 0 {
                yaml.push_str(&format!(
                    "  - {{name: h{i}, role: compute, addresses: [{a}]}}\n"
                ));
            } else {
                yaml.push_str(&format!("  - {{name: h{i}, addresses: [{a}/28]}}\n"));
            }
        }
        let inv = Inventory::parse(&yaml, "big.yaml").unwrap();
        assert_eq!(inv.hosts.len(), 10_000);
        // Two prefix lengths, so two probes at most per lookup.
        assert_eq!(inv.by_address.v4.len(), 2);
        let mut found = 0;
        for k in 0..50_000u32 {
            let i = k % 10_000;
            let base = 0x0a00_0000 + i * 16;
            let probe = IpAddr::V4(Ipv4Addr::from(base + (k % 3)));
            let hit = inv.lookup(probe);
            if i % 2 == 0 {
                // A /32: only the address itself.
                if k % 3 == 0 {
                    assert_eq!(hit.unwrap().name, format!("h{i}"));
                    found += 1;
                } else {
                    assert!(hit.is_none());
                }
            } else {
                assert_eq!(hit.unwrap().name, format!("h{i}"));
                found += 1;
            }
            assert_eq!(inv.allows_client(probe), Some(true));
        }
        assert!(found > 30_000);
    }
}
