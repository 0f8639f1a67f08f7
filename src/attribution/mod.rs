//! Who holds an image: watcher addresses attributed to hosts (inventory,
//! orchestrator node lists, reverse DNS), and orphan verdicts from
//! comparing that with where the attachment sources say images belong.

pub mod inventory;
pub mod rdns;

use crate::analysis::{
    self, Analysis, Host, HostLookup, ImageStateClassifier, OrphanClassifier, OrphanReason,
    Settings, Verdict, WatcherContext,
};
use crate::metrics::SourceHealth;
use crate::model::{Sample, address_ip};
use crate::sources::{AttachmentReport, AttachmentSource, Expectation, ImageRef, SourceError};
use inventory::Inventory;
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
    /// infrastructure hosts first (never orphans), then the image's own
    /// state (deleted, trashed), then the attachment sources and inventory.
    pub fn analyse(&self, sample: &Sample, settings: &Settings) -> Analysis {
        analysis::analyse_with(
            sample,
            settings,
            &[&Infrastructure(self), &ImageStateClassifier, self],
            self,
        )
    }

    /// The host behind an address as Ceph prints it (`10.0.0.5:0/123`).
    pub fn host_of_address(&self, address: &str) -> Option<Host> {
        self.host(address_ip(address))
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
        let ip: IpAddr = ctx.watcher.ip().parse().ok()?;
        (self.inventory.allows_client(ip) == Some(false))
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
    inventory: Arc<Inventory>,
    sources: Vec<Box<dyn AttachmentSource>>,
    states: Mutex<SourceStates>,
    rdns: Option<NameResolver>,
    /// Most time reverse DNS may add to a sample.
    rdns_budget: Duration,
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
            sources,
            states: Mutex::new(SourceStates {
                reports: BTreeMap::new(),
                health,
            }),
            rdns,
            rdns_budget,
        }
    }

    /// True when any attachment source is configured.
    pub fn has_sources(&self) -> bool {
        !self.sources.is_empty()
    }

    /// Fetches every source once, concurrently, and records the outcome.
    /// A failed source drops out of the verdicts until it answers again.
    pub async fn refresh(&self, now: f64) {
        let fetches = self.sources.iter().map(|s| async move {
            let result = s.fetch().await;
            (s.name(), result)
        });
        let results: Vec<(&'static str, Result<AttachmentReport, SourceError>)> =
            futures_join_all(fetches).await;
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

    /// An attribution for analysing `sample`: the healthy sources' latest
    /// answers, and reverse DNS names of its client addresses (at most the
    /// reverse DNS budget is spent waiting for them).
    pub async fn attribution(&self, sample: &Sample) -> Attribution {
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
        Attribution {
            inventory: self.inventory.clone(),
            sources,
            dns,
        }
    }

    /// Fetches the sources every `interval` until `shutdown` turns true.
    pub async fn refresh_loop(
        self: Arc<Self>,
        interval: Duration,
        mut shutdown: tokio::sync::watch::Receiver<bool>,
    ) {
        if self.sources.is_empty() {
            return;
        }
        let mut ticker = tokio::time::interval(interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = ticker.tick() => {}
                _ = shutdown.changed() => return,
            }
            tokio::select! {
                _ = self.refresh(crate::sampler::now_unix()) => {}
                _ = shutdown.changed() => return,
            }
        }
    }
}

/// Client addresses in a sample (watchers and lockers) that the inventory
/// does not already name: the ones worth a reverse lookup.
fn client_ips(sample: &Sample, inventory: &Inventory) -> Vec<IpAddr> {
    let mut ips = BTreeSet::new();
    for (_, ns) in sample.namespaces() {
        for image in ns.images.values() {
            let addresses = image
                .watchers
                .iter()
                .map(|w| w.address.as_str())
                .chain(image.locks.iter().map(|l| l.address.as_str()));
            for a in addresses {
                if let Ok(ip) = address_ip(a).parse::<IpAddr>()
                    && inventory.lookup(ip).is_none()
                {
                    ips.insert(ip);
                }
            }
        }
    }
    ips.into_iter().collect()
}

/// Awaits futures concurrently, keeping their order (a tiny `join_all`, to
/// avoid a dependency for one call).
async fn futures_join_all<F, T>(futures: impl IntoIterator<Item = F>) -> Vec<T>
where
    F: std::future::Future<Output = T>,
{
    let mut set: Vec<std::pin::Pin<Box<F>>> = futures.into_iter().map(Box::pin).collect();
    let mut out: Vec<Option<T>> = set.iter().map(|_| None).collect();
    std::future::poll_fn(|cx| {
        let mut pending = false;
        for (i, f) in set.iter_mut().enumerate() {
            if out[i].is_none() {
                match f.as_mut().poll(cx) {
                    std::task::Poll::Ready(v) => out[i] = Some(v),
                    std::task::Poll::Pending => pending = true,
                }
            }
        }
        if pending {
            std::task::Poll::Pending
        } else {
            std::task::Poll::Ready(())
        }
    })
    .await;
    out.into_iter().flatten().collect()
}
