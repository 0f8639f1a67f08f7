//! Attribute: who holds an image. Watcher and locker addresses are
//! attributed to hosts (inventory, orchestrator node lists, reverse DNS),
//! and orphan verdicts come from comparing that with where the attachment
//! sources say images belong. The [`Attributor`] lives as long as the
//! exporter (sources, their health, the reverse-DNS cache, the last host of
//! each address); each cycle asks it for an [`Attribution`], a fixed picture
//! that analysis judges with.

pub mod inventory;
pub mod memory;
pub mod mirror;
pub mod rdns;

use crate::analysis::{
    self, Analysis, Host, HostLookup, ImageStateClassifier, Judges, OrphanClassifier, OrphanReason,
    Settings, Verdict, WatcherContext,
};
use crate::clock::{Every, now_unix};
use crate::first_seen::FirstSeenTimes;
use crate::model::{Sample, address_ip};
use crate::sources::{AttachmentReport, AttachmentSource, Expectation, ImageRef, SourceError};
use crate::status::SourceHealth;
use inventory::Inventory;
use memory::HostMemory;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Everything known about hosts and attachments at one moment: what one
/// analysis uses. Only sources whose last fetch succeeded are in it.
#[derive(Debug, Clone, Default)]
pub struct Attribution {
    /// The `--watchers.inventory` file (empty without one).
    pub inventory: Arc<Inventory>,
    /// Healthy sources' answers, by source name.
    pub sources: BTreeMap<&'static str, Arc<AttachmentReport>>,
    /// Reverse DNS names found for client addresses.
    pub dns: HashMap<IpAddr, String>,
    /// The last host of addresses that nothing above names now (a source
    /// down, DNS failing), named within `--watchers.host-retention`.
    pub remembered: HashMap<IpAddr, Host>,
}

/// What one source says about one image, for `explain`.
#[derive(Debug, Clone, serde::Serialize)]
pub struct SourceOpinion {
    /// Source name.
    pub source: &'static str,
    /// How the source names the image.
    pub image: ImageRef,
    /// What it says.
    pub expectation: Expectation,
}

impl Attribution {
    /// Analyses a sample with every verdict this attribution can give:
    /// infrastructure hosts and rbd-mirror daemons first (never orphans;
    /// the daemons are learned from the cluster), then the image's own
    /// state (deleted, trashed), then the attachment sources and inventory.
    /// `first_seen` holds the first-seen times of watchers seen before.
    pub fn analyse(
        &self,
        sample: &Sample,
        settings: &Settings,
        first_seen: &FirstSeenTimes,
    ) -> Analysis {
        let mirror = mirror::MirrorDaemons::of(sample);
        let judges = Judges {
            hosts: self,
            classifiers: &[&Infrastructure(self), &mirror, &ImageStateClassifier, self],
            first_seen,
        };
        analysis::analyse_with(sample, settings, &judges)
    }

    /// Every healthy source's opinion on an image, most specific match
    /// first: sources that name pool and namespace, then those that do not.
    pub fn opinions(&self, pool: &str, namespace: &str, image: &str) -> Vec<SourceOpinion> {
        let mut names = vec![image.to_string()];
        // Nova's other disks (`_disk.config`, `_disk.local`, `_disk.swap`)
        // belong to the same instance as `_disk`.
        if let Some(uuid) = nova_instance_of(image) {
            let disk = format!("{uuid}_disk");
            if disk != image {
                names.push(disk);
            }
        }
        let mut out = Vec::new();
        for (source, report) in &self.sources {
            for name in &names {
                for (pool, namespace) in [
                    (Some(pool), Some(namespace)),
                    (Some(pool), None),
                    (None, Some(namespace)),
                    (None, None),
                ] {
                    let key = ImageRef {
                        pool: pool.map(str::to_string),
                        namespace: namespace.map(str::to_string),
                        image: name.clone(),
                    };
                    if let Some(e) = report.images.get(&key) {
                        out.push(SourceOpinion {
                            source,
                            image: key,
                            expectation: e.clone(),
                        });
                    }
                }
            }
        }
        out
    }

    /// The source that says a Nova disk's instance is gone, if one does.
    pub fn deleted_instance(&self, image: &str) -> Option<&'static str> {
        let uuid = nova_instance_of(image)?;
        self.sources.iter().find_map(|(name, report)| {
            let instances = report.instances.as_ref()?;
            let exists = instances.iter().any(|i| i.eq_ignore_ascii_case(uuid));
            (!exists).then_some(*name)
        })
    }
}

impl HostLookup for Attribution {
    fn host(&self, ip: &str) -> Option<Host> {
        let ip: IpAddr = ip.parse().ok()?;
        self.named(ip).or_else(|| self.remembered.get(&ip).cloned())
    }
}

impl Attribution {
    /// The host the inventory, a healthy source or reverse DNS names now.
    fn named(&self, ip: IpAddr) -> Option<Host> {
        if let Some(h) = self.inventory.lookup(ip) {
            return Some(Host {
                name: h.name.clone(),
                role: h.role.clone(),
                via: "inventory",
            });
        }
        for (source, report) in &self.sources {
            if let Some(name) = report.host_addresses.get(&ip) {
                return Some(Host {
                    name: name.clone(),
                    role: None,
                    via: source,
                });
            }
        }
        self.dns.get(&ip).map(|name| Host {
            name: name.clone(),
            role: None,
            via: "reverse_dns",
        })
    }
}

/// Watchers from infrastructure hosts (rbd-mirror, backup) are never
/// orphans, whatever the image's state or the sources say.
pub struct Infrastructure<'a>(pub &'a Attribution);

impl OrphanClassifier for Infrastructure<'_> {
    fn classify(&self, ctx: &WatcherContext<'_>) -> Option<Verdict> {
        let role = ctx.host?.role.as_deref()?;
        self.0
            .inventory
            .is_infrastructure_role(role)
            .then_some(Verdict::Legitimate)
    }
}

impl OrphanClassifier for Attribution {
    fn classify(&self, ctx: &WatcherContext<'_>) -> Option<Verdict> {
        let orphan = |r| Some(Verdict::Orphan(r));
        if self.deleted_instance(&ctx.image.name).is_some() {
            return orphan(OrphanReason::DeletedInstance);
        }
        let opinions = self.opinions(ctx.pool, ctx.namespace, &ctx.image.name);
        let placed: Vec<&BTreeSet<String>> = opinions
            .iter()
            .filter_map(|o| o.expectation.hosts.as_ref())
            .collect();
        if !placed.is_empty() {
            let hosts: BTreeSet<&String> = placed.into_iter().flatten().collect();
            if hosts.is_empty() {
                return orphan(OrphanReason::Detached);
            }
            // A watcher whose host we cannot name gets no verdict here: we
            // cannot tell it from a legitimate one.
            if let Some(host) = ctx.host {
                if !hosts.iter().any(|h| same_host(h, &host.name)) {
                    return orphan(OrphanReason::UnexpectedHost);
                }
                return None;
            }
        }
        // A host the inventory names is known, whatever network it is on.
        let ip: IpAddr = ctx.watcher.ip().parse().ok()?;
        (self.inventory.lookup(ip).is_none() && self.inventory.allows_client(ip) == Some(false))
            .then_some(Verdict::Orphan(OrphanReason::UnknownClient))
    }
}

/// Host names as orchestrators and inventories write them: case does not
/// matter, and a short name matches its fully qualified form.
pub fn same_host(a: &str, b: &str) -> bool {
    if a.eq_ignore_ascii_case(b) {
        return true;
    }
    let short = |s: &str| s.split('.').next().unwrap_or(s).to_ascii_lowercase();
    let (sa, sb) = (short(a), short(b));
    // Only compare short names when one side is short: `a.x` and `a.y`
    // are different hosts.
    (!a.contains('.') || !b.contains('.')) && sa == sb
}

/// The instance uuid of a Nova disk (`<uuid>_disk`, `<uuid>_disk.config`,
/// `<uuid>_disk.local`, `<uuid>_disk.swap`, ...).
pub fn nova_instance_of(image: &str) -> Option<&str> {
    let i = image.find("_disk")?;
    let (uuid, rest) = image.split_at(i);
    let rest = &rest["_disk".len()..];
    if !(rest.is_empty() || rest.starts_with('.')) || !is_uuid(uuid) {
        return None;
    }
    Some(uuid)
}

/// True for a canonical UUID (`8-4-4-4-12` hex digits).
pub fn is_uuid(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() == 36
        && b.iter().enumerate().all(|(i, c)| match i {
            8 | 13 | 18 | 23 => *c == b'-',
            _ => c.is_ascii_hexdigit(),
        })
}

/// Names client addresses: given addresses and a time budget, the names
/// found within it (reverse DNS; a seam so tests need no DNS).
pub type NameResolver = Box<
    dyn Fn(
            Vec<IpAddr>,
            Duration,
        ) -> crate::sources::BoxFuture<'static, HashMap<IpAddr, Option<String>>>
        + Send
        + Sync,
>;

/// The sources' latest answers and health, shared between the refresh loop
/// and the sampler.
#[derive(Debug, Default)]
struct SourceStates {
    /// Latest good answer of each healthy source.
    reports: BTreeMap<&'static str, Arc<AttachmentReport>>,
    /// Health of every configured source.
    health: BTreeMap<&'static str, SourceHealth>,
}

/// Builds [`Attribution`]s: holds the inventory, the sources and the
/// reverse DNS cache for the exporter's lifetime.
pub struct Attributor {
    /// The `--watchers.inventory` file (empty without one).
    inventory: Arc<Inventory>,
    /// The configured attachment sources.
    sources: Vec<Arc<dyn AttachmentSource>>,
    /// Their latest answers and health.
    states: Mutex<SourceStates>,
    /// Reverse DNS, with `--watchers.reverse-dns`.
    rdns: Option<NameResolver>,
    /// Most time reverse DNS may add to a sample.
    rdns_budget: Duration,
    /// The last host of each address, for when nothing names it.
    memory: Mutex<HostMemory>,
}

impl Attributor {
    /// An attributor; sources start unhealthy until their first fetch.
    pub fn new(
        inventory: Inventory,
        sources: Vec<Box<dyn AttachmentSource>>,
        rdns: Option<NameResolver>,
        rdns_budget: Duration,
    ) -> Attributor {
        let health = sources
            .iter()
            .map(|s| (s.name(), SourceHealth::default()))
            .collect();
        Attributor {
            inventory: Arc::new(inventory),
            sources: sources.into_iter().map(Arc::from).collect(),
            states: Mutex::new(SourceStates {
                reports: BTreeMap::new(),
                health,
            }),
            rdns,
            rdns_budget,
            memory: Mutex::new(HostMemory::default()),
        }
    }

    /// Keeps the last host of an address for `retention` after nothing
    /// names it any more (default [`memory::DEFAULT_RETENTION`]; zero keeps
    /// nothing).
    pub fn with_host_retention(self, retention: Duration) -> Attributor {
        Attributor {
            memory: Mutex::new(HostMemory::new(retention)),
            ..self
        }
    }

    /// Fetches every source once, concurrently, and records the outcome.
    /// A failed source drops out of the verdicts until it answers again.
    pub async fn refresh(&self, now: f64) {
        let mut fetches = tokio::task::JoinSet::new();
        for s in &self.sources {
            let s = s.clone();
            fetches.spawn(async move {
                let result = s.fetch().await;
                (s.name(), result)
            });
        }
        let mut results: Vec<(&'static str, Result<AttachmentReport, SourceError>)> = Vec::new();
        while let Some(joined) = fetches.join_next().await {
            match joined {
                Ok(r) => results.push(r),
                // A bug in a source must not stop the others; it keeps its
                // last state.
                Err(e) => tracing::error!(error = %e, "attachment source fetch panicked"),
            }
        }
        let mut states = self.states.lock().unwrap_or_else(|e| e.into_inner());
        for (name, result) in results {
            let health = states.health.entry(name).or_default();
            match result {
                Ok(report) => {
                    health.up = true;
                    health.last_success_timestamp_seconds = now;
                    health.last_error = None;
                    health.images = report.images.len() as u64;
                    tracing::debug!(
                        source = name,
                        images = report.images.len(),
                        "source refreshed"
                    );
                    states.reports.insert(name, Arc::new(report));
                }
                Err(e) => {
                    if health.up || health.last_error.is_none() {
                        tracing::warn!(source = name, error = %e, "attachment source failed; no verdicts from it until it answers");
                    }
                    health.up = false;
                    *health
                        .errors_total
                        .entry(e.metric_label().to_string())
                        .or_default() += 1;
                    health.last_error = Some(e.to_string());
                    states.reports.remove(name);
                }
            }
        }
    }

    /// Health of every configured source.
    pub fn health(&self) -> BTreeMap<String, SourceHealth> {
        let states = self.states.lock().unwrap_or_else(|e| e.into_inner());
        states
            .health
            .iter()
            .map(|(k, v)| (k.to_string(), v.clone()))
            .collect()
    }

    /// An attribution for analysing `sample` at `now`: the healthy sources'
    /// latest answers, reverse DNS names of its client addresses (at most
    /// the reverse DNS budget is spent waiting for them), and the last host
    /// of the addresses none of them names now.
    pub async fn attribution(&self, sample: &Sample, now: f64) -> Attribution {
        let sources = {
            let states = self.states.lock().unwrap_or_else(|e| e.into_inner());
            states.reports.clone()
        };
        let mut dns = HashMap::new();
        if let Some(rdns) = &self.rdns {
            let ips = client_ips(sample, &self.inventory);
            if !ips.is_empty() {
                for (ip, name) in rdns(ips, self.rdns_budget).await {
                    if let Some(name) = name {
                        dns.insert(ip, name);
                    }
                }
            }
        }
        let mut attribution = Attribution {
            inventory: self.inventory.clone(),
            sources,
            dns,
            remembered: HashMap::new(),
        };
        let (mut named, mut unnamed) = (Vec::new(), Vec::new());
        for ip in sample_ips(sample) {
            match attribution.named(ip) {
                Some(host) => named.push((ip, host)),
                None => unnamed.push(ip),
            }
        }
        let mut memory = self.memory.lock().unwrap_or_else(|e| e.into_inner());
        attribution.remembered = memory.recall(named, unnamed, now);
        attribution
    }

    /// Fetches the sources every `interval` until `shutdown` turns true.
    pub async fn refresh_loop(
        self: Arc<Self>,
        interval: Duration,
        shutdown: tokio::sync::watch::Receiver<bool>,
    ) {
        if self.sources.is_empty() {
            return;
        }
        let mut every = Every::new(interval, shutdown);
        while every.tick().await {
            if every.run(self.refresh(now_unix())).await.is_none() {
                return;
            }
        }
    }
}

/// Client addresses in a sample (watchers and lockers) that the inventory
/// does not already name: the ones worth a reverse lookup.
fn client_ips(sample: &Sample, inventory: &Inventory) -> Vec<IpAddr> {
    sample_ips(sample)
        .into_iter()
        .filter(|ip| inventory.lookup(*ip).is_none())
        .collect()
}

/// Every client address in a sample (watchers and lockers).
fn sample_ips(sample: &Sample) -> BTreeSet<IpAddr> {
    let mut ips = BTreeSet::new();
    for s in sample.images() {
        let addresses = s
            .image
            .watchers
            .iter()
            .map(|w| w.address.as_str())
            .chain(s.image.locks.iter().map(|l| l.address.as_str()));
        ips.extend(addresses.filter_map(|a| address_ip(a).parse::<IpAddr>().ok()));
    }
    ips
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::analysis::fixtures::*;
    use crate::model::Sample;
    use crate::sources::BoxFuture;

    const INVENTORY: &str = "
client_networks: [10.0.0.0/16]
hosts:
  - {name: compute-1, role: compute, addresses: [10.0.1.11]}
  - {name: compute-2.example.org, role: compute, addresses: [10.0.1.12]}
  - {name: mirror-1, role: rbd-mirror, addresses: [10.0.9.5]}
";

    fn expect(hosts: Option<&[&str]>, multi: bool) -> Expectation {
        Expectation {
            hosts: hosts.map(|h| h.iter().map(|s| s.to_string()).collect()),
            multi_attach: multi,
            owner: "test".into(),
        }
    }

    fn any_pool(image: &str) -> ImageRef {
        ImageRef {
            pool: None,
            namespace: None,
            image: image.into(),
        }
    }

    const DELETED_VM: &str = "11111111-2222-3333-4444-555555555555";
    const LIVE_VM: &str = "aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee";

    fn openstack() -> AttachmentReport {
        let mut r = AttachmentReport::default();
        r.images
            .insert(any_pool("volume-detached"), expect(Some(&[]), false));
        r.images
            .insert(any_pool("volume-on-1"), expect(Some(&["compute-1"]), false));
        r.images.insert(
            any_pool("volume-multi"),
            expect(Some(&["compute-1", "compute-2"]), true),
        );
        r.images
            .insert(any_pool("glance-image"), expect(None, false));
        r.images.insert(
            any_pool(&format!("{LIVE_VM}_disk")),
            expect(Some(&["COMPUTE-2"]), false),
        );
        r.instances = Some([LIVE_VM.to_string()].into());
        r
    }

    fn kubernetes() -> AttachmentReport {
        let mut r = AttachmentReport::default();
        r.images.insert(
            ImageRef {
                pool: Some("k8s".into()),
                namespace: Some("tenant-a".into()),
                image: "csi-vol-1".into(),
            },
            expect(Some(&["node-a"]), false),
        );
        r.host_addresses
            .insert("10.0.2.21".parse().unwrap(), "node-a".into());
        r.host_addresses
            .insert("10.0.2.22".parse().unwrap(), "node-b".into());
        r
    }

    fn attribution(sources: &[(&'static str, AttachmentReport)]) -> Attribution {
        Attribution {
            inventory: Arc::new(Inventory::parse(INVENTORY, "test").unwrap()),
            sources: sources
                .iter()
                .map(|(n, r)| (*n, Arc::new(r.clone())))
                .collect(),
            dns: [("10.0.3.3".parse().unwrap(), "db-1.example.org".to_string())].into(),
            remembered: HashMap::new(),
        }
    }

    /// One image per (pool, namespace, name, watcher IPs).
    fn sample_of(images: &[(&str, &str, &str, &[&str])]) -> Sample {
        let mut pools: BTreeMap<&str, BTreeMap<&str, Vec<crate::model::Image>>> = BTreeMap::new();
        for (i, (pool, ns, name, ips)) in images.iter().enumerate() {
            let mut img = image(&format!("id{i}"), name);
            for (j, ip) in ips.iter().enumerate() {
                img.watchers
                    .push(watcher(100 + j as u64, ip, (i * 10 + j) as u64));
            }
            pools
                .entry(pool)
                .or_default()
                .entry(ns)
                .or_default()
                .push(img);
        }
        sample(
            pools
                .into_iter()
                .enumerate()
                .map(|(i, (pool, nss))| {
                    (
                        i as i64 + 1,
                        pool,
                        nss.into_iter()
                            .map(|(ns, imgs)| namespace(ns, imgs))
                            .collect(),
                    )
                })
                .collect(),
        )
    }

    /// The verdict on every watcher, as `image ip -> reason label`.
    fn verdicts(a: &Attribution, s: &Sample) -> BTreeMap<String, String> {
        let analysis = a.analyse(s, &Settings::default(), &FirstSeenTimes::default());
        let mut out = BTreeMap::new();
        for img in s.images() {
            for w in &analysis.findings(&img.key()).watchers {
                let reason = w.orphan_reason().map_or("-", |r| r.label());
                out.insert(
                    format!("{} {}", img.image.name, w.watcher.ip()),
                    reason.to_string(),
                );
            }
        }
        out
    }

    #[test]
    fn orphan_reasons_from_sources_and_inventory() {
        let s = sample_of(&[
            ("volumes", "", "volume-detached", &["10.0.1.11"]),
            ("volumes", "", "volume-on-1", &["10.0.1.11", "10.0.1.12"]),
            ("volumes", "", "volume-multi", &["10.0.1.11", "10.0.1.12"]),
            ("images", "", "glance-image", &["10.0.1.12"]),
            ("vms", "", &format!("{DELETED_VM}_disk"), &["10.0.1.11"]),
            (
                "vms",
                "",
                &format!("{DELETED_VM}_disk.config"),
                &["10.0.1.11"],
            ),
            ("vms", "", &format!("{LIVE_VM}_disk"), &["10.0.1.12"]),
            ("vms", "", &format!("{LIVE_VM}_disk.config"), &["10.0.1.11"]),
            (
                "volumes",
                "",
                "unknown-to-sources",
                &["10.0.1.11", "192.168.7.7"],
            ),
            ("volumes", "", "volume-detached-mirrored", &["10.0.9.5"]),
            ("k8s", "tenant-a", "csi-vol-1", &["10.0.2.21", "10.0.2.22"]),
            ("k8s", "", "csi-vol-1", &["10.0.2.22"]),
            (
                "volumes",
                "",
                "volume-gone.deleted",
                &["10.0.9.5", "10.0.1.11"],
            ),
        ]);
        let mut os = openstack();
        os.images.insert(
            any_pool("volume-detached-mirrored"),
            expect(Some(&[]), false),
        );
        let a = attribution(&[("openstack", os), ("kubernetes", kubernetes())]);
        let v = verdicts(&a, &s);
        let want: BTreeMap<String, String> = [
            ("volume-detached 10.0.1.11", "detached"),
            ("volume-on-1 10.0.1.11", "-"),
            ("volume-on-1 10.0.1.12", "unexpected_host"),
            ("volume-multi 10.0.1.11", "-"),
            // compute-2.example.org in the inventory is compute-2 to Cinder.
            ("volume-multi 10.0.1.12", "-"),
            ("glance-image 10.0.1.12", "-"),
            (&*format!("{DELETED_VM}_disk 10.0.1.11"), "deleted_instance"),
            (
                &*format!("{DELETED_VM}_disk.config 10.0.1.11"),
                "deleted_instance",
            ),
            (&*format!("{LIVE_VM}_disk 10.0.1.12"), "-"),
            // _disk.config follows its instance's host.
            (
                &*format!("{LIVE_VM}_disk.config 10.0.1.11"),
                "unexpected_host",
            ),
            ("unknown-to-sources 10.0.1.11", "-"),
            ("unknown-to-sources 192.168.7.7", "unknown_client"),
            ("volume-detached-mirrored 10.0.9.5", "-"),
            // Kubernetes names pool and namespace: node-b is wrong in
            // tenant-a; the same name in the default namespace is unknown.
            ("csi-vol-1 10.0.2.21", "-"),
            ("csi-vol-1 10.0.2.22", "unexpected_host"),
            ("volume-gone.deleted 10.0.9.5", "-"),
            ("volume-gone.deleted 10.0.1.11", "image_deleted"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        // The default-namespace csi-vol-1 shares its key with tenant-a's in
        // this map; check it separately.
        let mut v = v;
        let mut want = want;
        v.remove("csi-vol-1 10.0.2.22");
        want.remove("csi-vol-1 10.0.2.22");
        assert_eq!(v, want);

        let analysis = a.analyse(&s, &Settings::default(), &FirstSeenTimes::default());
        let reasons: Vec<(String, &str)> = s
            .images()
            .filter(|i| i.image.name == "csi-vol-1")
            .map(|i| {
                let r = analysis
                    .findings(&i.key())
                    .watchers
                    .iter()
                    .find(|w| w.watcher.ip() == "10.0.2.22")
                    .and_then(|w| w.orphan_reason())
                    .map_or("-", |r| r.label());
                (i.namespace.namespace.clone(), r)
            })
            .collect();
        assert_eq!(
            reasons,
            vec![
                (String::new(), "-"),
                ("tenant-a".to_string(), "unexpected_host")
            ]
        );
    }

    #[test]
    fn an_unhealthy_source_gives_no_verdicts() {
        let s = sample_of(&[
            ("volumes", "", "volume-detached", &["10.0.1.11"]),
            ("vms", "", &format!("{DELETED_VM}_disk"), &["10.0.1.11"]),
        ]);
        // Only the inventory: it knows the hosts but not the attachments.
        let a = attribution(&[]);
        assert!(verdicts(&a, &s).values().all(|r| r == "-"));
    }

    #[test]
    fn hosts_come_from_inventory_then_sources_then_dns() {
        let a = attribution(&[("kubernetes", kubernetes())]);
        let h = a.host("10.0.1.11").unwrap();
        assert_eq!(
            (h.name.as_str(), h.role.as_deref(), h.via),
            ("compute-1", Some("compute"), "inventory")
        );
        let h = a.host("10.0.2.21").unwrap();
        assert_eq!((h.name.as_str(), h.via), ("node-a", "kubernetes"));
        let h = a.host("10.0.3.3").unwrap();
        assert_eq!(
            (h.name.as_str(), h.via),
            ("db-1.example.org", "reverse_dns")
        );
        assert!(a.host("10.0.3.4").is_none());
        assert!(a.host("not-an-ip").is_none());
        assert_eq!(
            a.host(address_ip("10.0.1.11:0/3412345")).unwrap().name,
            "compute-1"
        );
    }

    #[test]
    fn host_names_and_nova_disks() {
        assert!(same_host("compute-1", "COMPUTE-1"));
        assert!(same_host("compute-1", "compute-1.example.org"));
        assert!(!same_host("compute-1.a.org", "compute-1.b.org"));
        assert!(!same_host("compute-1", "compute-10"));
        assert_eq!(nova_instance_of(&format!("{LIVE_VM}_disk")), Some(LIVE_VM));
        assert_eq!(
            nova_instance_of(&format!("{LIVE_VM}_disk.swap")),
            Some(LIVE_VM)
        );
        assert_eq!(nova_instance_of(&format!("{LIVE_VM}_diskette")), None);
        assert_eq!(nova_instance_of("not-a-uuid_disk"), None);
        assert!(is_uuid(LIVE_VM));
        assert!(!is_uuid("aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeeg"));
    }

    struct Flaky {
        fail: std::sync::atomic::AtomicBool,
        report: AttachmentReport,
    }

    impl AttachmentSource for Flaky {
        fn name(&self) -> &'static str {
            "file"
        }
        fn fetch(&self) -> BoxFuture<'_, Result<AttachmentReport, SourceError>> {
            let fail = self.fail.load(std::sync::atomic::Ordering::SeqCst);
            Box::pin(async move {
                if fail {
                    Err(SourceError::Unreachable {
                        source_name: "file",
                        url: "x".into(),
                        message: "down".into(),
                    })
                } else {
                    Ok(self.report.clone())
                }
            })
        }
    }

    struct Shared(Arc<Flaky>);

    impl AttachmentSource for Shared {
        fn name(&self) -> &'static str {
            self.0.name()
        }
        fn fetch(&self) -> BoxFuture<'_, Result<AttachmentReport, SourceError>> {
            self.0.fetch()
        }
    }

    #[tokio::test]
    async fn a_failing_source_drops_out_and_comes_back() {
        let source = Arc::new(Flaky {
            fail: false.into(),
            report: openstack(),
        });
        let attributor = Attributor::new(
            Inventory::parse(INVENTORY, "test").unwrap(),
            vec![Box::new(Shared(source.clone()))],
            None,
            Duration::from_secs(1),
        );
        let s = sample_of(&[("volumes", "", "volume-detached", &["10.0.1.11"])]);
        assert!(
            !attributor.health()["file"].up,
            "unhealthy before the first fetch"
        );
        attributor.refresh(100.0).await;
        let a = attributor.attribution(&s, 0.0).await;
        assert_eq!(verdicts(&a, &s)["volume-detached 10.0.1.11"], "detached");
        let h = &attributor.health()["file"];
        assert!(h.up);
        assert_eq!(h.last_success_timestamp_seconds, 100.0);

        source.fail.store(true, std::sync::atomic::Ordering::SeqCst);
        attributor.refresh(200.0).await;
        let a = attributor.attribution(&s, 0.0).await;
        assert_eq!(verdicts(&a, &s)["volume-detached 10.0.1.11"], "-");
        let h = &attributor.health()["file"];
        assert!(!h.up);
        assert_eq!(h.last_success_timestamp_seconds, 100.0);
        assert_eq!(h.errors_total["unreachable"], 1);

        source
            .fail
            .store(false, std::sync::atomic::Ordering::SeqCst);
        attributor.refresh(300.0).await;
        let a = attributor.attribution(&s, 0.0).await;
        assert_eq!(verdicts(&a, &s)["volume-detached 10.0.1.11"], "detached");
    }

    /// The host of `ip` in an attribution, as the `host` label has it.
    fn host_label(a: &Attribution, ip: &str) -> String {
        a.host(ip).map(|h| h.name).unwrap_or_default()
    }

    #[tokio::test]
    async fn a_host_outlives_its_source_for_the_retention_only() {
        let source = Arc::new(Flaky {
            fail: false.into(),
            report: kubernetes(),
        });
        let attributor = Attributor::new(
            Inventory::default(),
            vec![Box::new(Shared(source.clone()))],
            None,
            Duration::from_secs(1),
        )
        .with_host_retention(Duration::from_secs(600));
        // A watcher on node-a, a locker nobody ever named.
        let mut s = sample_of(&[("k8s", "tenant-a", "csi-vol-1", &["10.0.2.21"])]);
        let img = s.pools.get_mut(&1).unwrap().outcome.as_mut().unwrap()[0]
            .images
            .get_mut("id0")
            .map(std::sync::Arc::make_mut)
            .unwrap();
        img.locks.push(advisory_lock(9, "10.0.7.7", "c"));
        attributor.refresh(1000.0).await;
        let a = attributor.attribution(&s, 1000.0).await;
        assert_eq!(host_label(&a, "10.0.2.21"), "node-a");

        // The source fails: the host stays, sample after sample.
        source.fail.store(true, std::sync::atomic::Ordering::SeqCst);
        for t in [1060.0, 1300.0, 1600.0] {
            attributor.refresh(t).await;
            let a = attributor.attribution(&s, t).await;
            assert!(a.sources.is_empty(), "no verdicts from a failed source");
            let h = a.host("10.0.2.21").unwrap();
            assert_eq!((h.name.as_str(), h.via), ("node-a", "file"), "at {t}");
            let analysis = a.analyse(&s, &Settings::default(), &FirstSeenTimes::default());
            let w = &analysis.notable.values().next().unwrap().watchers[0];
            assert_eq!(w.host_name(), "node-a");
            assert_eq!(
                host_label(&a, "10.0.7.7"),
                "",
                "never named, never remembered"
            );
        }
        // Past the retention (last named at 1000): unknown.
        let a = attributor.attribution(&s, 1600.5).await;
        assert_eq!(host_label(&a, "10.0.2.21"), "");

        // The source answers again: named again.
        source
            .fail
            .store(false, std::sync::atomic::Ordering::SeqCst);
        attributor.refresh(1700.0).await;
        let a = attributor.attribution(&s, 1700.0).await;
        assert_eq!(host_label(&a, "10.0.2.21"), "node-a");
    }

    #[tokio::test]
    async fn reverse_dns_names_addresses_the_inventory_does_not() {
        let asked = Arc::new(Mutex::new(Vec::new()));
        let seen = asked.clone();
        let resolver: NameResolver = Box::new(move |ips, _budget| {
            seen.lock().unwrap().extend(ips.clone());
            Box::pin(async move {
                ips.into_iter()
                    .map(|ip| (ip, Some(format!("host-{ip}"))))
                    .collect()
            })
        });
        let attributor = Attributor::new(
            Inventory::parse(INVENTORY, "test").unwrap(),
            Vec::new(),
            Some(resolver),
            Duration::from_secs(1),
        );
        let s = sample_of(&[("volumes", "", "v", &["10.0.1.11", "10.0.4.4"])]);
        let a = attributor.attribution(&s, 0.0).await;
        assert_eq!(
            *asked.lock().unwrap(),
            vec!["10.0.4.4".parse::<IpAddr>().unwrap()]
        );
        assert_eq!(a.host("10.0.4.4").unwrap().name, "host-10.0.4.4");
        assert_eq!(a.host("10.0.1.11").unwrap().via, "inventory");
    }
}
